//! Verification: the destination's digests of what it loaded are compared by the source before
//! it commits; a byte changed in transit makes the source resume its guest and the destination
//! stay stopped, with the changed range named.

mod common;

use std::time::Duration;

use common::{bios_signature, migrate_damaged, Damage, DestVm, SourceVm};
use vmstate_migration::{MigrationError, Origin, ReceiveSettings, Report, Result, Settings};

fn run(flip: Option<Vec<u8>>) -> (SourceVm, Result<Report>, DestVm, Result<Report>) {
    let settings = Settings {
        verify: true,
        ..Settings::default()
    };
    let receive = ReceiveSettings {
        verify: true,
        ..ReceiveSettings::default()
    };
    let o = migrate_damaged(
        settings,
        receive,
        flip.map(|s| (s, Damage::Flip { at: 100 })),
    );
    (o.src, o.r, o.dst, o.dr)
}

#[test]
fn equal_digests_commit() {
    let (src, r, dst, dr) = run(None);
    let (r, dr) = (r.expect("source"), dr.expect("destination"));
    assert!(r.verify_time > Duration::ZERO && dr.verify_time > Duration::ZERO);
    let names: Vec<&str> = r.critical_path.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        ["stop", "last-pages", "devices", "loaded", "verify", "go"]
    );
    assert_eq!((src.stops, src.resumes), (1, 0));
    assert!(dst.resumed);
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    eprintln!(
        "8 MiB + ROMs: digests took {:?} on the source, {:?} on the destination",
        r.verify_time, dr.verify_time
    );
}

#[test]
fn a_byte_changed_in_transit_is_found_and_nothing_commits() {
    let (src, r, dst, dr) = run(Some(bios_signature()));
    let err = r.unwrap_err();
    let MigrationError::Verify(diffs) = &err else {
        panic!("{err}");
    };
    assert_eq!(diffs.len(), 1, "{err}");
    assert_eq!(err.origin(), Origin::Damage);
    assert_eq!(
        diffs[0],
        "RAM block `pc.bios`: bytes 0x0..0x10000 (pages 0..16) differ from what was sent"
    );
    assert!(err
        .to_string()
        .contains("the source resumed its guest, the destination does not start"));
    // The source was stopped and resumed: its guest runs again; the destination never started.
    assert_eq!((src.stops, src.resumes), (1, 1));
    let p = src.ctl.progress.load(std::sync::atomic::Ordering::SeqCst);
    src.wait_progress(p + 500);
    assert!(!dst.resumed);
    let derr = dr.unwrap_err();
    assert_eq!(derr.origin(), Origin::Damage);
    let derr = derr.to_string();
    assert!(
        derr.contains(
            "the source found the loaded state differs from what it sent: RAM block `pc.bios`"
        ),
        "{derr}"
    );
}

/// A section digest covers exactly the section's payload (not its header, whose section id may
/// differ between the two sides' saves): it equals the digest of the bytes `save_payload` writes.
#[test]
fn section_digests_cover_the_payload() {
    use std::hash::Hasher;
    let src = SourceVm::new(1, false);
    let dev = src.dev.lock().unwrap().clone();
    let (_, payload, _) = vmstate_runtime::save_payload(&dev, &src.machine).unwrap();
    let mut h = std::hash::DefaultHasher::new();
    h.write(&payload);
    for first_id in [3, 40] {
        let (bytes, save) = src
            .registry
            .save_sections_to_vec(&src.machine, first_id)
            .unwrap();
        let d = vmstate_migration::verify::section_digests(&bytes, &save);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].idstr.as_str(), d[0].digest), ("testdev", h.finish()));
    }
}

//! The stream's integrity check: a transport that flips or drops bytes inside a RAM page or a
//! device section is caught as the damaged unit arrives, named by block and page range or by
//! section; the source keeps (or gets back) its running guest, the destination never starts.

mod common;

use std::sync::atomic::Ordering;

use common::{bios_signature, migrate_damaged, Damage, Outcome};
use vmstate_migration::{MigrationError, Origin, ReceiveSettings, Settings};
use vmstate_runtime::ErrorKind;

fn run(integrity: bool, require: bool, damage: Option<(Vec<u8>, Damage)>) -> Outcome {
    let settings = Settings {
        integrity,
        ..Settings::default()
    };
    let receive = ReceiveSettings {
        require_integrity: require,
        ..ReceiveSettings::default()
    };
    migrate_damaged(settings, receive, damage)
}

/// The destination's error is an integrity mismatch naming `what`; the source reports the
/// destination's reason.
fn assert_damage_named(o: &Outcome, what: &str) {
    let derr = o.dr.as_ref().unwrap_err();
    let MigrationError::Stream(e) = derr else {
        panic!("destination: {derr}");
    };
    let ErrorKind::IntegrityMismatch { what: w, .. } = e.kind() else {
        panic!("destination: not an integrity error: {e}");
    };
    assert!(w.starts_with(what), "destination names {w:?}, not {what:?}");
    assert!(
        derr.to_string()
            .contains("the transport changed or lost bytes"),
        "{derr}"
    );
    let serr = o.r.as_ref().unwrap_err();
    eprintln!("destination: {derr}\nsource: {serr}");
    assert!(matches!(serr, MigrationError::Remote(_)), "source: {serr}");
    // Who broke: the transport, as both sides say.
    assert_eq!(
        (derr.origin(), serr.origin()),
        (Origin::Damage, Origin::Damage)
    );
    assert!(serr.to_string().contains(what), "source: {serr}");
    assert!(!o.dst.resumed);
}

/// The source's guest runs: it never stopped, or was resumed once.
fn assert_source_runs(o: &Outcome) {
    assert_eq!(
        o.src.stops, o.src.resumes,
        "stops {} resumes {}",
        o.src.stops, o.src.resumes
    );
    let p = o.src.ctl.progress.load(Ordering::SeqCst);
    o.src.wait_progress(p + 500);
}

#[test]
fn integrity_round_trip_checks_every_unit() {
    let o = run(true, true, None);
    let r = o.r.as_ref().expect("source");
    let dr = o.dr.as_ref().expect("destination");
    // RAM block list, pass-0 runs (8 MiB of pc.ram = 8 runs of 256 pages, pc.rom, pc.bios),
    // later passes, the section end and one device section at least.
    assert!(r.integrity_units >= 12, "{} units", r.integrity_units);
    assert_eq!(dr.integrity_units, r.integrity_units);
    assert!(o.dst.resumed);
    assert_eq!(o.dst.ram.snapshot().unwrap(), o.src.ram.snapshot().unwrap());
    assert_eq!(*o.dst.dev.lock().unwrap(), *o.src.dev.lock().unwrap());
}

#[test]
fn without_the_check_no_unit_is_checked() {
    let o = run(false, false, None);
    assert_eq!(o.r.as_ref().expect("source").integrity_units, 0);
    assert_eq!(o.dr.as_ref().expect("destination").integrity_units, 0);
    assert!(o.dst.resumed);
}

/// Saved to a file: without the check the stream has no `vmstate/integrity` section (QEMU's
/// stream; QEMU loading ours is `file.rs`'s needs_qemu test); with it, the file has one and
/// loads back through `receive` with every unit checked.
#[test]
fn a_saved_stream_has_the_section_only_with_the_check() {
    use vmstate_migration::{migrate, receive, FileTransport};
    let dir = std::env::temp_dir().join(format!("vmstate-integrity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for integrity in [false, true] {
        let path = dir.join(format!("stream-{integrity}.bin"));
        let mut src = common::SourceVm::new(2, false);
        let settings = Settings {
            integrity,
            ..Settings::default()
        };
        let mut t = FileTransport(std::fs::File::create(&path).unwrap());
        let r = migrate(&mut src, &mut t, &settings).unwrap();
        drop(t);
        let bytes = std::fs::read(&path).unwrap();
        let has = bytes.windows(17).any(|w| w == b"vmstate/integrity");
        assert_eq!(has, integrity, "integrity {integrity}");
        let mut dst = common::DestVm::new(2);
        let mut t = FileTransport(std::fs::File::open(&path).unwrap());
        let receive_settings = ReceiveSettings {
            require_integrity: integrity,
            ..ReceiveSettings::default()
        };
        let d = receive(&mut dst, &mut t, &receive_settings).unwrap();
        assert_eq!(d.integrity_units, r.integrity_units);
        assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_flipped_page_byte_is_named_by_block_and_pages() {
    let o = run(
        true,
        false,
        Some((bios_signature(), Damage::Flip { at: 100 })),
    );
    assert_damage_named(&o, "RAM block `pc.bios` pages 0x0..=0xf (16 records)");
    assert_source_runs(&o);
}

#[test]
fn dropped_page_bytes_are_named_by_block_and_pages() {
    for n in [1, 7, 4096] {
        let o = run(
            true,
            false,
            Some((bios_signature(), Damage::Drop { at: 100, n })),
        );
        assert_damage_named(&o, "RAM block `pc.bios` pages 0x0..=0xf (16 records)");
        assert_source_runs(&o);
    }
}

#[test]
fn a_flipped_device_byte_is_named_before_the_device_sees_it() {
    // The section's counted idstr, instance id and version (16 bytes), then its payload: the
    // flip lands in the second byte of `ctrl` (after the 8 bytes of `ticks`).
    let o = run(
        true,
        false,
        Some((b"\x07testdev".to_vec(), Damage::Flip { at: 16 + 8 + 1 })),
    );
    let derr = o.dr.as_ref().unwrap_err().to_string();
    if !derr.contains("section `testdev` instance 0") {
        panic!("{derr}");
    }
    assert!(derr.contains("nothing of it was loaded"), "{derr}");
    assert_eq!(*o.dst.dev.lock().unwrap(), common::dest_sentinel());
    assert_source_runs(&o);
}

#[test]
fn a_destination_that_requires_the_check_refuses_before_the_first_page() {
    let o = run(false, true, None);
    let derr = o.dr.as_ref().unwrap_err().to_string();
    assert!(
        derr.contains("section `ram` arrived but the source sends no integrity checksums"),
        "{derr}"
    );
    let serr = o.r.as_ref().unwrap_err().to_string();
    assert!(
        serr.contains("enable Settings::integrity on the source"),
        "{serr}"
    );
    // Not one page was written on the destination.
    assert!(o
        .dst
        .ram
        .snapshot()
        .unwrap()
        .iter()
        .all(|(_, b)| b.iter().all(|&x| x == 0)));
    assert_source_runs(&o);
}

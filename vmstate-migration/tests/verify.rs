//! Verification: the destination's digests of what it loaded are compared by the source before
//! it commits; a byte changed in transit makes the source resume its guest and the destination
//! stay stopped, with the changed range named.

mod common;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{DestVm, SourceVm};
use vmstate_migration::{
    migrate, receive, MigrationError, Origin, ReceiveSettings, Settings, Transport,
};

/// A socket that flips one byte of what is written through it (a bad NIC, a buggy proxy): the
/// 100th byte of the first page that starts with `signature`. The stream stays well-formed, its
/// content does not.
struct Flipper {
    s: UnixStream,
    signature: Option<Vec<u8>>,
}

impl Read for Flipper {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.s.read(buf)
    }
}

impl Write for Flipper {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut v = buf.to_vec();
        if let Some(sig) = &self.signature {
            if let Some(i) = v.windows(sig.len()).position(|w| w == sig.as_slice()) {
                if i + 100 < v.len() {
                    v[i + 100] ^= 0x40;
                    self.signature = None;
                }
            }
        }
        self.s.write_all(&v)?;
        Ok(v.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
}

impl Transport for Flipper {
    fn finish_stream(&mut self) -> io::Result<()> {
        self.s.finish_stream()
    }
    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        Transport::set_timeout(&mut self.s, timeout)
    }
}

fn run(
    flip: Option<Vec<u8>>,
) -> (
    SourceVm,
    vmstate_migration::Result<vmstate_migration::Report>,
    DestVm,
    vmstate_migration::Result<vmstate_migration::Report>,
) {
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut src = SourceVm::new(8, true);
    src.wait_progress(2000);
    let dest = std::thread::spawn(move || {
        let mut dst = DestVm::new(8);
        let settings = ReceiveSettings {
            verify: true,
            read_timeout: Some(Duration::from_secs(10)),
            ..ReceiveSettings::default()
        };
        let r = receive(&mut dst, &mut b, &settings);
        (dst, r)
    });
    let settings = Settings {
        verify: true,
        downtime: Duration::from_millis(20),
        ack_timeout: Duration::from_secs(10),
        ..Settings::default()
    };
    let mut t = Flipper {
        s: a,
        signature: flip,
    };
    let r = migrate(&mut src, &mut t, &settings);
    drop(t);
    let (dst, dr) = dest.join().unwrap();
    (src, r, dst, dr)
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
    // pc.bios (written once, never dirtied, so sent in pass 0 only) starts with these bytes
    // (tests/common: byte i is i * 7 + 3).
    let bios: Vec<u8> = (0..32u32).map(|i| (i * 7 + 3) as u8).collect();
    let (src, r, dst, dr) = run(Some(bios));
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

//! The stream's integrity check: a transport that flips or drops bytes inside a RAM page or a
//! device section is caught as the damaged unit arrives, named by block and page range or by
//! section; the source keeps (or gets back) its running guest, the destination never starts.

mod common;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{DestVm, SourceVm};
use vmstate_migration::{
    migrate, receive, MigrationError, Origin, ReceiveSettings, Settings, Transport,
};
use vmstate_runtime::ErrorKind;

/// What the damaging transport does once, at the first write holding `signature`: flip the
/// byte `at` bytes after its start, or drop `n` bytes from there.
#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip { at: usize },
    Drop { at: usize, n: usize },
}

/// A socket that damages what is written through it (a bad NIC, a buggy proxy).
struct Damaging {
    s: UnixStream,
    signature: Option<Vec<u8>>,
    damage: Damage,
}

impl Read for Damaging {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.s.read(buf)
    }
}

impl Write for Damaging {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut v = buf.to_vec();
        if let Some(sig) = &self.signature {
            if let Some(i) = v.windows(sig.len()).position(|w| w == sig.as_slice()) {
                let at = i + match self.damage {
                    Damage::Flip { at } | Damage::Drop { at, .. } => at,
                };
                if at < v.len() {
                    match self.damage {
                        Damage::Flip { .. } => v[at] ^= 0x40,
                        Damage::Drop { n, .. } => {
                            v.drain(at..(at + n).min(v.len()));
                        }
                    }
                    self.signature = None;
                }
            }
        }
        self.s.write_all(&v)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
}

impl Transport for Damaging {
    fn finish_stream(&mut self) -> io::Result<()> {
        self.s.finish_stream()
    }
    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        Transport::set_timeout(&mut self.s, timeout)
    }
}

struct Outcome {
    src: SourceVm,
    r: vmstate_migration::Result<vmstate_migration::Report>,
    dst: DestVm,
    dr: vmstate_migration::Result<vmstate_migration::Report>,
}

fn run(integrity: bool, require: bool, damage: Option<(Vec<u8>, Damage)>) -> Outcome {
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut src = SourceVm::new(8, true);
    src.wait_progress(2000);
    let dest = std::thread::spawn(move || {
        let mut dst = DestVm::new(8);
        let settings = ReceiveSettings {
            require_integrity: require,
            read_timeout: Some(Duration::from_secs(10)),
            ..ReceiveSettings::default()
        };
        let r = receive(&mut dst, &mut b, &settings);
        (dst, r)
    });
    let settings = Settings {
        integrity,
        downtime: Duration::from_millis(20),
        ack_timeout: Duration::from_secs(10),
        ..Settings::default()
    };
    let (signature, damage) = match damage {
        Some((s, d)) => (Some(s), d),
        None => (None, Damage::Flip { at: 0 }),
    };
    let mut t = Damaging {
        s: a,
        signature,
        damage,
    };
    let r = migrate(&mut src, &mut t, &settings);
    drop(t);
    let (dst, dr) = dest.join().unwrap();
    Outcome { src, r, dst, dr }
}

/// pc.bios (written once, never dirtied, so sent in pass 0 only) starts with these bytes
/// (tests/common: byte i is i * 7 + 3).
fn bios() -> Vec<u8> {
    (0..32u32).map(|i| (i * 7 + 3) as u8).collect()
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
fn without_the_check_the_stream_is_unchanged() {
    let o = run(false, false, None);
    assert_eq!(o.r.as_ref().expect("source").integrity_units, 0);
    assert_eq!(o.dr.as_ref().expect("destination").integrity_units, 0);
    assert!(o.dst.resumed);
}

#[test]
fn a_flipped_page_byte_is_named_by_block_and_pages() {
    let o = run(true, false, Some((bios(), Damage::Flip { at: 100 })));
    assert_damage_named(&o, "RAM block `pc.bios` pages 0x0..=0xf (16 records)");
    assert_source_runs(&o);
}

#[test]
fn dropped_page_bytes_are_named_by_block_and_pages() {
    for n in [1, 7, 4096] {
        let o = run(true, false, Some((bios(), Damage::Drop { at: 100, n })));
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

#[test]
fn the_check_with_page_channels_is_refused_up_front() {
    let (mut a, _b) = UnixStream::pair().unwrap();
    let mut src = SourceVm::new(1, false);
    let settings = Settings {
        integrity: true,
        channels: 2,
        ..Settings::default()
    };
    let err = migrate(&mut src, &mut a, &settings).unwrap_err();
    assert!(matches!(err, MigrationError::Unsupported(_)), "{err}");
    assert_eq!((src.stops, src.resumes), (0, 0));
}

//! Live migration of a running software guest over loopback TCP and a Unix socket pair.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{check_pattern, spawn_receive, DestVm, SourceVm};
use vmstate_migration::{migrate, Report, Settings, Transport};

/// Migrates a source of `ram_mib` MiB whose guest runs (and made `progress` page writes first)
/// over `src_t` into a destination receiving on `dst_t`; both ends must succeed.
fn migrate_running<T: Transport + Send + 'static>(
    ram_mib: usize,
    progress: u64,
    settings: &Settings,
    mut src_t: T,
    dst_t: T,
) -> (SourceVm, Report, DestVm, Report) {
    let mut src = SourceVm::new(ram_mib, true);
    src.wait_progress(progress);
    let dest = spawn_receive(DestVm::new(ram_mib), dst_t);
    let report = migrate(&mut src, &mut src_t, settings).expect("migration");
    let (dst, dres) = dest.join().unwrap();
    (src, report, dst, dres.expect("destination"))
}

fn run_live<T: Transport + Send + 'static>(src_t: T, dst_t: T) {
    let settings = Settings {
        downtime: Duration::from_millis(20),
        max_passes: 8,
        ..Settings::default()
    };
    let (src, report, dst, dreport) = migrate_running(8, 5000, &settings, src_t, dst_t);

    // Source: stopped once, never resumed; destination started exactly after the ack.
    assert_eq!((src.stops, src.resumes), (1, 0));
    assert!(dst.resumed);
    assert!(!report.passes.is_empty() && report.passes.len() <= 8);
    assert_eq!(
        report.passes[0].pages + report.passes[0].zero_pages,
        src.ram.total_bytes() / 4096
    );
    assert_eq!(report.passes[0].zero_pages, 32, "pc.rom is all zero pages");
    for p in &report.passes {
        eprintln!(
            "pass {}: {} pages, {} zero, {} dirty left, {:.0} pages/s dirtied, {:.1} MB/s, expected downtime {:?}, throttle {}",
            p.pass, p.pages, p.zero_pages, p.dirty_left, p.dirty_rate, p.bandwidth / 1e6, p.expected_downtime, p.throttle
        );
    }
    eprintln!(
        "total {:?}, downtime {:?}, {} bytes, final {} pages; destination read {} bytes",
        report.total_time, report.downtime, report.bytes, report.final_pages.pages, dreport.bytes
    );
    assert_eq!(report.bytes, dreport.bytes);
    assert_eq!(dreport.device_sections, 1);

    // The critical path, step by step on both sides; the source's steps lie within its downtime.
    let names = |r: &vmstate_migration::Report| -> Vec<&str> {
        r.critical_path.iter().map(|p| p.name).collect()
    };
    assert_eq!(
        names(&report),
        ["stop", "last-pages", "devices", "loaded", "go"]
    );
    assert_eq!(names(&dreport), ["go-wait", "resume"]);
    let steps: Duration = report.critical_path.iter().map(|p| p.took).sum();
    assert!(
        steps <= report.downtime,
        "{steps:?} > {:?}",
        report.downtime
    );

    // The destination holds exactly the source's memory and devices at stop time.
    let want = src.ram.snapshot().unwrap();
    assert_eq!(dst.ram.snapshot().unwrap(), want);
    check_pattern(&dst.ram);
    assert_eq!(*dst.dev.lock().unwrap(), *src.dev.lock().unwrap());
    assert!(
        src.dev.lock().unwrap().ticks > 0,
        "the guest made progress during migration"
    );
}

#[test]
fn live_over_loopback_tcp() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    run_live(c, s);
}

#[test]
fn live_over_unix_socket() {
    let (a, b) = UnixStream::pair().unwrap();
    run_live(a, b);
}

#[test]
fn auto_converge_throttles_a_guest_that_does_not_converge() {
    let (a, b) = UnixStream::pair().unwrap();
    let settings = Settings {
        bandwidth_limit: Some(100 << 20),
        downtime: Duration::from_micros(1),
        max_passes: 5,
        ..Settings::default()
    };
    let (src, report, dst, _) = migrate_running(4, 2000, &settings, a, b);
    assert_eq!(report.passes.len(), 5, "stopped by max_passes");
    // Throttle rises on every pass (after the first two) that did not shrink the dirty set, is
    // recorded in that pass's statistics, and is lifted at the end.
    let mut expect = Vec::new();
    let mut t = 0u8;
    for (i, p) in report.passes.iter().enumerate() {
        let last = i + 1 == report.passes.len();
        if i >= 1 && !last && p.dirty_left >= report.passes[i - 1].dirty_left {
            t = if t == 0 { 20 } else { (t + 10).min(99) };
            expect.push(t);
        }
        assert_eq!(p.throttle, t, "pass {i}");
    }
    if !expect.is_empty() {
        expect.push(0);
    }
    assert_eq!(src.throttles, expect);
    // The bandwidth limit holds over the migration (bursts are at most 10 ms or 1 MiB).
    let rate = report.bytes as f64 / report.total_time.as_secs_f64();
    assert!(rate < 1.1 * (100 << 20) as f64, "{rate} B/s");
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    check_pattern(&dst.ram);
}

//! The switchover handshake (`LOADED` → `GO`) through a proxy that loses one of its lines: the
//! VM never runs on both sides. A lost `LOADED` makes the source time out and resume while the
//! destination never starts; a lost `GO` leaves the source committed (stopped) and the
//! destination not started; the normal path starts the destination only.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{check_pattern, spawn_receive_accepting, DestVm, SourceVm};
use vmstate_migration::{migrate, MigrationError, MigrationSource, Report, Result, Settings};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Lose {
    Nothing,
    /// The destination's `LOADED` line is swallowed; the connections stay open.
    Loaded,
    /// Everything the source sends after `LOADED` (its `GO`) is swallowed.
    Go,
}

/// Relays source ↔ destination, losing what `drop` says; closes each direction when its
/// sender closes.
fn proxy(listener: TcpListener, dest: std::net::SocketAddr, drop: Lose) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let (from_src, _) = listener.accept().unwrap();
        let to_dst = TcpStream::connect(dest).unwrap();
        let loaded = Arc::new(AtomicBool::new(false));
        let back = {
            let mut r = to_dst.try_clone().unwrap();
            let mut w = from_src.try_clone().unwrap();
            let loaded = Arc::clone(&loaded);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut line = Vec::new();
                while let Ok(n @ 1..) = r.read(&mut buf) {
                    // The destination sends one line; relay it whole (or not at all).
                    line.extend_from_slice(&buf[..n]);
                    if !line.ends_with(b"\n") {
                        continue;
                    }
                    if line.starts_with(b"LOADED") {
                        loaded.store(true, Ordering::SeqCst);
                        if drop == Lose::Loaded {
                            line.clear();
                            continue;
                        }
                    }
                    let sent = w.write_all(&line);
                    line.clear();
                    if sent.is_err() {
                        break;
                    }
                }
                let _ = w.shutdown(Shutdown::Write);
            })
        };
        let mut r = from_src;
        let mut w = to_dst;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = r.read(&mut buf) {
            if drop == Lose::Go && loaded.load(Ordering::SeqCst) {
                continue;
            }
            if w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = w.shutdown(Shutdown::Write);
        back.join().unwrap();
    })
}

struct Outcome {
    src: SourceVm,
    dst: DestVm,
    res: Result<Report>,
    dres: Result<Report>,
}

fn run(drop: Lose) -> Outcome {
    let mut src = SourceVm::new(2, false);
    src.wait_progress(500);
    let dst_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dst_addr = dst_listener.local_addr().unwrap();
    let proxy_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap();
    let dest = spawn_receive_accepting(dst_listener, 2, Duration::from_secs(2));
    let p = proxy(proxy_listener, dst_addr, drop);
    let mut conn = TcpStream::connect(proxy_addr).unwrap();
    let settings = Settings {
        downtime: Duration::from_millis(20),
        max_passes: 3,
        ack_timeout: Duration::from_millis(700),
        ..Settings::default()
    };
    let res = migrate(&mut src, &mut conn, &settings);
    // The source is done with the connection either way.
    std::mem::drop(conn);
    let (dst, dres) = dest.join().unwrap();
    p.join().unwrap();
    let out = Outcome {
        src,
        dst,
        res,
        dres,
    };
    assert_never_both_running(&out);
    out
}

fn source_running(src: &SourceVm) -> bool {
    src.resumes == src.stops
}

fn assert_never_both_running(o: &Outcome) {
    assert!(
        !(source_running(&o.src) && o.dst.resumed),
        "both sides run: source {:?}, destination {:?}",
        o.res.as_ref().err().map(ToString::to_string),
        o.dres.as_ref().err().map(ToString::to_string)
    );
    assert!(source_running(&o.src) || o.src.stops == o.src.resumes + 1);
}

#[test]
fn normal_path_starts_the_destination_only() {
    let o = run(Lose::Nothing);
    let report = o.res.expect("source");
    assert!(report.go_error.is_none());
    o.dres.expect("destination");
    assert!(o.dst.resumed);
    assert!(!source_running(&o.src));
    check_pattern(&o.dst.ram);
    assert_eq!(o.dst.ram.snapshot().unwrap(), o.src.ram.snapshot().unwrap());
}

#[test]
fn lost_loaded_source_resumes_destination_never_starts() {
    let t0 = Instant::now();
    let mut o = run(Lose::Loaded);
    let err = o.res.expect_err("the source must give up without LOADED");
    assert!(matches!(err, MigrationError::Timeout(_)), "{err}");
    assert!(source_running(&o.src));
    let derr = o
        .dres
        .expect_err("the destination must not start without GO");
    assert!(matches!(derr, MigrationError::NoGo(_)), "{derr}");
    assert!(!o.dst.resumed);
    assert!(t0.elapsed() >= Duration::from_millis(700));
    o.src.wait_progress(500);
    o.src.shutdown();
}

#[test]
fn lost_go_nobody_runs() {
    let mut o = run(Lose::Go);
    // The source committed on LOADED: success, guest stays stopped.
    o.res.expect("the source committed");
    assert!(!source_running(&o.src));
    let derr = o
        .dres
        .expect_err("the destination must not start without GO");
    assert!(matches!(derr, MigrationError::NoGo(_)), "{derr}");
    assert!(!o.dst.resumed);
    // Paused on both sides; management picks one (here: the source).
    o.src.resume_vcpus();
    o.src.wait_progress(500);
    o.src.shutdown();
}

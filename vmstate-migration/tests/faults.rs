//! Fault injection: a proxy between source and destination cuts the connection at 50+ byte
//! offsets spread over the stream, including inside the device section at its end. Every time,
//! the source returns an error with its guest running and its state unchanged, and the
//! destination returns an error, applies no device state and does not start; then a clean
//! attempt through the same proxy succeeds. Two more cuts fall inside the switchover handshake:
//! a dropped `LOADED` (the source resumes, the destination never starts) and a dropped `GO` (the
//! source stays committed and stopped, the destination never starts).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use vmstate_migration::MigrationSource;

use common::{check_pattern, dest_sentinel, spawn_receive_accepting, SourceVm};
use vmstate_migration::{migrate, MigrationError, Settings};

const MARKER: &[u8] = b"\x07testdev";

#[derive(Clone, Copy, Debug)]
enum Cut {
    /// After this many stream bytes.
    At(u64),
    /// This many bytes after the start of the device section's idstr.
    AfterMarker(u64),
    /// The destination's `LOADED` is not relayed: both connections are shut down instead.
    Loaded,
    /// The source's `GO` (everything after `LOADED` was relayed) is not relayed: both connections
    /// are shut down instead.
    Go,
    Never,
}

/// Forwards source → destination until the cut, then shuts both connections down; relays the
/// destination's answer back otherwise.
fn proxy(
    listener: &TcpListener,
    dest_addr: std::net::SocketAddr,
    cut: Cut,
) -> std::thread::JoinHandle<bool> {
    let (mut from_src, _) = listener.accept().unwrap();
    let mut to_dst = TcpStream::connect(dest_addr).unwrap();
    std::thread::spawn(move || {
        let mut back_src = from_src.try_clone().unwrap();
        let mut back_dst = to_dst.try_clone().unwrap();
        let loaded_seen = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&loaded_seen);
        let relay = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut dropped = false;
            loop {
                let n = match back_dst.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if buf[..n].starts_with(b"LOADED") {
                    if let Cut::Loaded = cut {
                        dropped = true;
                        let _ = back_dst.shutdown(Shutdown::Both);
                        break;
                    }
                    seen.store(true, AtomicOrdering::SeqCst);
                }
                if back_src.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = back_src.shutdown(Shutdown::Both);
            dropped
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        let mut marker_at: Option<u64> = None;
        let mut cut_done = false;
        loop {
            let n = match from_src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if matches!(cut, Cut::Go) && loaded_seen.load(AtomicOrdering::SeqCst) {
                cut_done = true;
                break;
            }
            if marker_at.is_none() {
                let base = sent - tail.len() as u64;
                tail.extend_from_slice(&buf[..n]);
                if let Some(i) = tail.windows(MARKER.len()).position(|w| w == MARKER) {
                    marker_at = Some(base + i as u64);
                }
                let keep = tail.len().saturating_sub(MARKER.len());
                tail.drain(..keep);
            }
            let limit = match cut {
                Cut::At(x) => Some(x),
                Cut::AfterMarker(k) => marker_at.map(|m| m + k),
                Cut::Loaded | Cut::Go | Cut::Never => None,
            };
            let mut take = n as u64;
            if let Some(l) = limit {
                if sent + take >= l {
                    take = l.saturating_sub(sent);
                    cut_done = true;
                }
            }
            let take = usize::try_from(take).unwrap();
            if to_dst.write_all(&buf[..take]).is_err() {
                break;
            }
            sent += take as u64;
            if cut_done {
                break;
            }
        }
        if cut_done {
            let _ = to_dst.shutdown(Shutdown::Both);
            let _ = from_src.shutdown(Shutdown::Both);
        } else {
            let _ = to_dst.shutdown(Shutdown::Write);
        }
        let dropped = relay.join().unwrap();
        cut_done || dropped
    })
}

#[test]
fn cut_connections_leave_both_sides_unchanged_then_a_clean_attempt_succeeds() {
    let mut src = SourceVm::new(4, false);
    src.wait_progress(1000);
    let dev_before = src.dev.lock().unwrap().clone();
    let ram_bytes = src.ram.total_bytes();
    // Device section tail: from the counted idstr to the end of the vmdesc.
    let (dev_stream, _) = src.registry.save_to_vec(&src.machine).unwrap();
    let m = dev_stream
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .unwrap() as u64;
    let tail = dev_stream.len() as u64 - m;

    let mut cuts: Vec<Cut> = [0u64, 1, 4, 7, 8, 12, 20, 40, 60, 75, 100, 4096, 5000]
        .into_iter()
        .map(Cut::At)
        .collect();
    cuts.extend((1..=30).map(|i| Cut::At(ram_bytes * i / 31)));
    let tail_offsets: Vec<u64> = (0..tail)
        .step_by((tail / 14).max(1) as usize)
        .chain([tail - 1])
        .collect();
    cuts.extend(tail_offsets.into_iter().map(Cut::AfterMarker));
    // Inside the handshake.
    cuts.extend([Cut::Loaded, Cut::Go]);
    assert!(cuts.len() >= 50, "{} cuts", cuts.len());

    let settings = Settings {
        downtime: Duration::from_millis(5),
        max_passes: 3,
        ack_timeout: Duration::from_secs(10),
        ..Settings::default()
    };
    let dst_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dst_addr = dst_listener.local_addr().unwrap();
    let proxy_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap();

    for (i, cut) in cuts.iter().copied().chain([Cut::Never]).enumerate() {
        let dest = spawn_receive_accepting(
            dst_listener.try_clone().unwrap(),
            4,
            Duration::from_secs(10),
        );
        let mut conn = TcpStream::connect(proxy_addr).unwrap();
        let p = proxy(&proxy_listener, dst_addr, cut);
        let stops = src.stops;
        let res = migrate(&mut src, &mut conn, &settings);
        drop(conn);
        let cut_happened = p.join().unwrap();
        let (dst, dres) = dest.join().unwrap();
        if let Cut::Never = cut {
            let report = res.expect("clean attempt");
            dres.expect("clean attempt on the destination");
            assert!(dst.resumed);
            assert_eq!(*dst.dev.lock().unwrap(), dev_before);
            assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
            check_pattern(&dst.ram);
            eprintln!(
                "{} failed attempts, then success: {} bytes",
                cuts.len(),
                report.bytes
            );
            continue;
        }
        assert!(
            cut_happened,
            "attempt {i} ({cut:?}): the stream ended before the cut"
        );
        if let Cut::Loaded | Cut::Go = cut {
            let derr = dres.expect_err(&format!("attempt {i} ({cut:?}): no GO arrives"));
            assert!(
                matches!(derr, MigrationError::NoGo(_)),
                "attempt {i}: {derr}"
            );
            assert!(
                !dst.resumed,
                "attempt {i}: destination started after {derr}"
            );
            if let Cut::Loaded = cut {
                // LOADED lost: the source gives up and runs again, unchanged.
                let err = res.expect_err(&format!("attempt {i} ({cut:?}) must fail"));
                assert!(
                    matches!(err, MigrationError::Io(_) | MigrationError::Timeout(_)),
                    "attempt {i}: {err}"
                );
                assert_eq!(src.resumes, src.stops, "attempt {i}");
            } else {
                // GO lost: the source committed and stays stopped; paused on both sides.
                res.expect("the source committed on LOADED");
                assert_eq!(src.resumes + 1, src.stops, "attempt {i}");
                // Management resolves it by resuming the source.
                src.resume_vcpus();
            }
            src.wait_progress(500);
            assert_eq!(*src.dev.lock().unwrap(), dev_before, "attempt {i}");
            continue;
        }
        let err = res.expect_err(&format!("attempt {i} ({cut:?}) must fail on the source"));
        assert!(
            matches!(
                err,
                MigrationError::Io(_) | MigrationError::Remote(_) | MigrationError::Timeout(_)
            ),
            "attempt {i}: {err}"
        );
        let derr = dres.expect_err(&format!(
            "attempt {i} ({cut:?}) must fail on the destination"
        ));
        // The destination applied nothing and did not start.
        assert!(
            !dst.resumed,
            "attempt {i}: destination started after {derr}"
        );
        assert_eq!(*dst.dev.lock().unwrap(), dest_sentinel(), "attempt {i}");
        // The source guest runs again (resumed iff it had been stopped), state unchanged.
        assert_eq!(src.resumes, src.stops, "attempt {i}");
        assert!(src.stops == stops || src.stops == stops + 1);
        src.wait_progress(500);
        assert_eq!(*src.dev.lock().unwrap(), dev_before, "attempt {i}");
        assert_eq!(src.throttles.last().copied().unwrap_or(0), 0);
        src.ctl
            .pause
            .store(true, std::sync::atomic::Ordering::SeqCst);
        while !src.ctl.parked.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::yield_now();
        }
        check_pattern(&src.ram);
        src.ctl
            .parked
            .store(false, std::sync::atomic::Ordering::SeqCst);
        src.ctl
            .pause
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

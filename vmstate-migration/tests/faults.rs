//! Fault injection: a proxy between source and destination cuts the connection at 50+ byte
//! offsets spread over the stream, including inside the device section at its end; for a
//! migration over 2 page channels it cuts each connection (main and both page channels) in turn
//! at offsets spread over its bytes. Every time,
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
use vmstate_migration::{migrate, MigrationError, Origin, Settings};

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

/// How much of `n` bytes read after `sent` a proxy relays before a cut at stream offset
/// `limit`, and whether the cut falls here.
fn clip(sent: u64, n: usize, limit: Option<u64>) -> (usize, bool) {
    match limit {
        Some(l) if sent + n as u64 >= l => (usize::try_from(l.saturating_sub(sent)).unwrap(), true),
        _ => (n, false),
    }
}

/// Finds the stream offset of the first [`MARKER`] in a stream fed chunk by chunk (a marker may
/// straddle two chunks).
#[derive(Default)]
struct MarkerFinder {
    tail: Vec<u8>,
    at: Option<u64>,
}

impl MarkerFinder {
    /// Feeds `chunk`, which starts at stream offset `sent`; the marker's offset once seen.
    fn feed(&mut self, sent: u64, chunk: &[u8]) -> Option<u64> {
        if self.at.is_none() {
            let base = sent - self.tail.len() as u64;
            self.tail.extend_from_slice(chunk);
            if let Some(i) = self.tail.windows(MARKER.len()).position(|w| w == MARKER) {
                self.at = Some(base + i as u64);
            }
            let keep = self.tail.len().saturating_sub(MARKER.len());
            self.tail.drain(..keep);
        }
        self.at
    }
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
        let mut marker = MarkerFinder::default();
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
            let marker_at = marker.feed(sent, &buf[..n]);
            let limit = match cut {
                Cut::At(x) => Some(x),
                Cut::AfterMarker(k) => marker_at.map(|m| m + k),
                Cut::Loaded | Cut::Go | Cut::Never => None,
            };
            let (take, now) = clip(sent, n, limit);
            cut_done |= now;
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
            assert_eq!(derr.origin(), Origin::Closed, "attempt {i}: {derr}");
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
                assert_eq!(err.origin(), Origin::Closed, "attempt {i}: {err}");
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
        // Who broke: both sides say the connection was closed under them (neither blames
        // itself; the source never sees the destination's reason through a cut connection, or
        // sees "the source or the network went away").
        assert_eq!(derr.origin(), Origin::Closed, "attempt {i}: {derr}");
        assert_eq!(err.origin(), Origin::Closed, "attempt {i}: {err}");
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

/// Relays every connection made to `listener` to `dest_addr` (the first is the main channel,
/// the next ones the page channels in index order) until `stop`; connection `conn` is cut after
/// `at` bytes from the source (or, for the main channel with `after_marker`, `at` bytes after
/// the device section's idstr); with `patch`, the bytes of connection `conn` at stream offset
/// `patch.0` are replaced by `patch.1` (a hostile source) instead of a cut. Returns whether the
/// cut happened.
fn multi_proxy(
    listener: TcpListener,
    dest_addr: std::net::SocketAddr,
    conn: usize,
    at: u64,
    after_marker: bool,
    stop: Arc<AtomicBool>,
    patch: Option<(u64, Vec<u8>)>,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut socks = Vec::new();
        let mut k = 0usize;
        while !stop.load(AtomicOrdering::SeqCst) {
            let mut from_src = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            from_src.set_nonblocking(false).unwrap();
            let Ok(mut to_dst) = TcpStream::connect(dest_addr) else {
                continue;
            };
            socks.push(from_src.try_clone().unwrap());
            socks.push(to_dst.try_clone().unwrap());
            let target = k == conn;
            k += 1;
            let mut back_src = from_src.try_clone().unwrap();
            let mut back_dst = to_dst.try_clone().unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = back_dst.read(&mut buf) {
                    if n == 0 || back_src.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = back_src.shutdown(Shutdown::Both);
            }));
            let cut = Arc::clone(&cut);
            let patch = patch.clone().filter(|_| target);
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0u64;
                let mut marker = MarkerFinder::default();
                loop {
                    let n = match from_src.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let marker_at = if target && after_marker {
                        marker.feed(sent, &buf[..n])
                    } else {
                        None
                    };
                    if let Some((p, bytes)) = &patch {
                        for (k, b) in bytes.iter().enumerate() {
                            let abs = p + k as u64;
                            if abs >= sent && abs < sent + n as u64 {
                                buf[usize::try_from(abs - sent).unwrap()] = *b;
                            }
                        }
                    }
                    let limit = match (target, after_marker) {
                        _ if patch.is_some() => None,
                        (false, _) => None,
                        (true, false) => Some(at),
                        (true, true) => marker_at.map(|m| m + at),
                    };
                    let (take, now) = clip(sent, n, limit);
                    if to_dst.write_all(&buf[..take]).is_err() {
                        break;
                    }
                    sent += take as u64;
                    if now {
                        cut.store(true, AtomicOrdering::SeqCst);
                        let _ = to_dst.shutdown(Shutdown::Both);
                        let _ = from_src.shutdown(Shutdown::Both);
                        return;
                    }
                }
                let _ = to_dst.shutdown(Shutdown::Write);
            }));
        }
        // The attempt is over: whatever is still open (e.g. a page channel the destination never
        // accepted) is closed.
        for s in &socks {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in threads {
            t.join().unwrap();
        }
        cut.load(AtomicOrdering::SeqCst)
    })
}

#[test]
fn cuts_on_every_channel_of_a_two_channel_migration() {
    let mut src = SourceVm::new(4, false);
    src.wait_progress(1000);
    let dev_before = src.dev.lock().unwrap().clone();
    // Each page channel carries about half of pass 0's pages (the split is fixed: every other
    // packet), so offsets up to 40 % of the guest fall inside every page channel's stream.
    let per_channel = src.ram.total_bytes() * 2 / 5;
    let (dev_stream, _) = src.registry.save_to_vec(&src.machine).unwrap();
    let m = dev_stream
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .unwrap() as u64;
    let tail = dev_stream.len() as u64 - m;

    // (connection, offset, counted from the device section's idstr)
    let mut cuts: Vec<(usize, u64, bool)> = Vec::new();
    for c in [0usize, 1, 2] {
        let mut offs = vec![0u64, 1, 8, 16, 20, 31, 32, 40, 100];
        if c > 0 {
            offs.extend((1..=8).map(|i| per_channel * i / 8));
        } else {
            // The main channel: the prefix, the channels section, the sync points …
            offs.extend([200, 300, 400]);
        }
        cuts.extend(offs.into_iter().map(|o| (c, o, false)));
    }
    // … and the device section at its end.
    cuts.extend(
        (0..tail)
            .step_by((tail / 6).max(1) as usize)
            .chain([tail - 1])
            .map(|o| (0, o, true)),
    );
    assert!(cuts.len() >= 40, "{} cuts", cuts.len());

    let settings = Settings {
        channels: 2,
        downtime: Duration::from_millis(5),
        max_passes: 3,
        // A page channel whose destination is gone is noticed when its OK does not come.
        ack_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    let never = (usize::MAX, 0, false);
    for (i, (conn, at, after_marker)) in cuts.iter().copied().chain([never]).enumerate() {
        let stops = src.stops;
        let (res, dst, dres, cut_happened) =
            channel_attempt(&mut src, &settings, conn, at, after_marker, None);
        let what =
            format!("attempt {i}: connection {conn} cut at {at} (after marker: {after_marker})");
        if conn == usize::MAX {
            res.expect("clean attempt");
            dres.expect("clean attempt on the destination");
            assert!(dst.resumed);
            assert_eq!(*dst.dev.lock().unwrap(), dev_before);
            assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
            check_pattern(&dst.ram);
            continue;
        }
        assert!(cut_happened, "{what}: the connection ended before the cut");
        let err = res.expect_err(&format!("{what}: must fail on the source"));
        let derr = dres.expect_err(&format!("{what}: must fail on the destination ({err})"));
        assert!(!dst.resumed, "{what}: destination started after {derr}");
        assert_eq!(*dst.dev.lock().unwrap(), dest_sentinel(), "{what}");
        assert_eq!(src.resumes, src.stops, "{what}");
        assert!(src.stops == stops || src.stops == stops + 1);
        src.wait_progress(200);
        assert_eq!(*src.dev.lock().unwrap(), dev_before, "{what}");
        assert_eq!(src.throttles.last().copied().unwrap_or(0), 0);
        eprintln!("{what}: source: {err}; destination: {derr}");
    }
}

/// A hostile source on a page channel: a page offset beyond its block, an unknown flag, a block
/// index out of range, an oversized page count and an unknown packet kind are each refused with
/// an error naming the channel and its byte offset; nothing is applied, the destination does not
/// start, and the source runs on.
#[test]
fn hostile_page_channel_packets_are_refused() {
    let mut src = SourceVm::new(4, false);
    src.wait_progress(500);
    let settings = Settings {
        channels: 2,
        ack_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    // Page channel 1 (connection 2): 32 handshake bytes, then the first packet's header
    // (kind, block, count, pass) and its first page offset.
    let cases: [(u64, Vec<u8>, &str); 5] = [
        (
            48,
            0x0040_0000u64.to_be_bytes().to_vec(),
            "outside block `pc.ram`",
        ),
        (
            48,
            0x0000_1002u64.to_be_bytes().to_vec(),
            "unknown page flags 0x2",
        ),
        (
            36,
            7u32.to_be_bytes().to_vec(),
            "block index 7 out of range",
        ),
        (40, 4096u32.to_be_bytes().to_vec(), "4096 pages in a packet"),
        (32, 9u32.to_be_bytes().to_vec(), "unknown packet kind 9"),
    ];
    for (at, bytes, want) in cases {
        let (res, dst, dres, _) =
            channel_attempt(&mut src, &settings, 2, 0, false, Some((at, bytes)));
        let derr = dres.expect_err(want).to_string();
        assert!(
            derr.contains(want) && derr.contains("page channel 1, byte"),
            "{want}: {derr}"
        );
        res.expect_err(want);
        assert!(!dst.resumed);
        assert_eq!(*dst.dev.lock().unwrap(), dest_sentinel());
        assert_eq!(src.resumes, src.stops);
        src.wait_progress(200);
    }
}

/// The stream's integrity check over page channels: every packet ends with a CRC-32, so a byte
/// changed inside a page on a page channel (the packet stays well-formed) is caught there,
/// named by channel, block and page range, before the page is used; a clean attempt with the
/// check on then migrates exactly.
#[test]
fn integrity_check_names_a_damaged_page_channel_packet() {
    let mut src = SourceVm::new(4, false);
    src.wait_progress(500);
    let dev_before = src.dev.lock().unwrap().clone();
    let settings = Settings {
        channels: 2,
        integrity: true,
        ack_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    // Page channel 0 (connection 1): 32 handshake bytes, the first packet's 16-byte header and
    // 128 page offsets (1,024 bytes), then its pages, each holding one 8-byte counter and
    // zeros: byte 2,000 of the third page's zeros becomes 0xff.
    let at = 32 + 16 + 1024 + 2 * 4096 + 2000;
    for patch in [Some((at, vec![0xffu8])), None] {
        // Connection 1 is patched; the clean attempt's proxy touches none.
        let conn = if patch.is_some() { 1 } else { usize::MAX };
        let (res, dst, dres, _) =
            channel_attempt(&mut src, &settings, conn, 0, false, patch.clone());
        if patch.is_none() {
            let r = res.expect("a clean attempt with the check on");
            assert!(r.integrity_units > 0);
            dres.expect("the destination of the clean attempt");
            assert!(dst.resumed);
            assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
            assert_eq!(*dst.dev.lock().unwrap(), dev_before);
            continue;
        }
        let derr = dres.expect_err("a damaged page");
        let msg = derr.to_string();
        assert!(
            msg.contains("page channel 0, byte 0: integrity check failed: RAM block `pc.ram` pages 0x0..=0x7f (128 records) arrived damaged"),
            "{msg}"
        );
        assert_eq!(derr.origin(), Origin::Damage, "{msg}");
        // The source shows the destination's reason, read from the damaged channel.
        let err = res.expect_err("the source of a damaged attempt");
        eprintln!("source: {err}\ndestination: {msg}");
        assert!(
            matches!(&err, MigrationError::Remote(m) if m.contains("integrity check failed: RAM block `pc.ram`")),
            "{err}"
        );
        assert_eq!(err.origin(), Origin::Damage, "{err}");
        assert!(!dst.resumed);
        assert_eq!(*dst.dev.lock().unwrap(), dest_sentinel());
        assert_eq!(src.resumes, src.stops);
        src.wait_progress(200);
    }
}

/// One migration of `src` with `settings` into a fresh 4 MiB destination (its own listener:
/// page channels of a failed attempt that were never accepted are refused with it) through a
/// fresh proxy (its own listener too: a page channel a failed attempt opened late is never
/// taken as this attempt's main connection). The proxy cuts connection `conn` after `at` bytes
/// (counted from the device section's idstr with `after_marker`), or patches it with `patch`.
/// Returns the source's result, the destination and its result, and whether the cut happened.
fn channel_attempt(
    src: &mut SourceVm,
    settings: &Settings,
    conn: usize,
    at: u64,
    after_marker: bool,
    patch: Option<(u64, Vec<u8>)>,
) -> (
    vmstate_migration::Result<vmstate_migration::Report>,
    common::DestVm,
    vmstate_migration::Result<vmstate_migration::Report>,
    bool,
) {
    let proxy_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap();
    let dst_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dst_addr = dst_listener.local_addr().unwrap();
    let dest = spawn_receive_accepting(dst_listener, 4, Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let p = multi_proxy(
        proxy_listener,
        dst_addr,
        conn,
        at,
        after_marker,
        Arc::clone(&stop),
        patch,
    );
    let mut t = TcpStream::connect(proxy_addr).unwrap();
    let res = migrate(src, &mut t, settings);
    drop(t);
    let (dst, dres) = dest.join().unwrap();
    stop.store(true, AtomicOrdering::SeqCst);
    let cut_happened = p.join().unwrap();
    (res, dst, dres, cut_happened)
}

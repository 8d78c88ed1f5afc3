//! The return path: the source reports success only on the destination's `LOADED`; a destination
//! error, a silent destination (timeout) or a cancel leave the source guest running, unchanged.

mod common;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{check_pattern, spawn_receive, DestVm, SourceVm};
use vmstate_migration::{migrate, receive, MigrationError, Origin, ReceiveSettings, Settings};
use vmstate_runtime::Registry;

fn settings() -> Settings {
    Settings {
        downtime: Duration::from_millis(20),
        max_passes: 3,
        ack_timeout: Duration::from_millis(500),
        ..Settings::default()
    }
}

/// A 2 MiB source whose guest runs, and its device state before any migration.
fn running_source() -> (SourceVm, common::TestDev) {
    let src = SourceVm::new(2, false);
    src.wait_progress(500);
    let before = src.dev.lock().unwrap().clone();
    (src, before)
}

fn assert_source_running_unchanged(src: &SourceVm, before: &common::TestDev) {
    assert_eq!(src.resumes, src.stops);
    src.wait_progress(500);
    assert_eq!(*src.dev.lock().unwrap(), *before);
}

#[test]
fn destination_error_is_reported_to_the_source() {
    let (a, b) = UnixStream::pair().unwrap();
    let (mut src, before) = running_source();
    // A destination without the device: the device section is unknown there.
    let mut dst = DestVm::new(2);
    dst.registry = Registry::new();
    let dest = spawn_receive(dst, b);
    let mut t = a;
    let err = migrate(&mut src, &mut t, &settings()).unwrap_err();
    let (dst, derr) = dest.join().unwrap();
    let derr = derr.unwrap_err();
    assert!(!dst.resumed);
    match &err {
        MigrationError::Remote(msg) => {
            assert!(msg.contains("testdev"), "{msg}");
            assert_eq!(*msg, derr.to_string());
        }
        other => panic!("expected the destination's error, got {other}"),
    }
    // Who broke: the destination's own check, as both sides say.
    assert_eq!(err.origin(), Origin::Peer);
    assert_eq!(derr.origin(), Origin::Local);
    assert_eq!(src.stops, 1);
    assert_source_running_unchanged(&src, &before);
}

#[test]
fn silent_destination_is_a_timeout() {
    let (a, b) = UnixStream::pair().unwrap();
    let (mut src, before) = running_source();
    // Reads the whole stream, never answers, keeps the connection open.
    let sink = std::thread::spawn(move || {
        let mut b = b;
        let mut v = Vec::new();
        b.read_to_end(&mut v).unwrap();
        std::thread::sleep(Duration::from_millis(800));
        v.len()
    });
    let mut t = a;
    let t0 = Instant::now();
    let err = migrate(&mut src, &mut t, &settings()).unwrap_err();
    assert!(matches!(err, MigrationError::Timeout(_)), "{err}");
    assert_eq!(err.origin(), Origin::Silent);
    assert!(t0.elapsed() >= Duration::from_millis(500));
    // The source keeps the connection open until it commits or gives up.
    drop(t);
    assert!(sink.join().unwrap() > 2 << 20);
    assert_source_running_unchanged(&src, &before);
}

#[test]
fn stalled_source_is_a_timeout_on_the_destination() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut dst = DestVm::new(2);
    let mut t = b;
    let err = receive(
        &mut dst,
        &mut t,
        &ReceiveSettings {
            read_timeout: Some(Duration::from_millis(200)),
            ..ReceiveSettings::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, MigrationError::Timeout(_)), "{err}");
    assert_eq!(err.origin(), Origin::Silent);
    assert!(!dst.resumed);
    drop(a);
}

#[test]
fn cancel_leaves_the_guest_running() {
    let (a, b) = UnixStream::pair().unwrap();
    let (mut src, before) = running_source();
    let dest = spawn_receive(DestVm::new(2), b);
    let s = settings();
    s.cancel.store(true, Ordering::SeqCst);
    let cancel = Arc::clone(&s.cancel);
    let mut t = a;
    let err = migrate(&mut src, &mut t, &s).unwrap_err();
    assert!(matches!(err, MigrationError::Cancelled), "{err}");
    assert!(cancel.load(Ordering::SeqCst));
    drop(t);
    let (dst, r) = dest.join().unwrap();
    // The destination sees the stream end: the source (or the network) went away.
    assert!(matches!(r, Err(MigrationError::SourceGone { .. })), "{r:?}");
    assert!(!dst.resumed);
    assert_source_running_unchanged(&src, &before);
    src.ctl.pause.store(true, Ordering::SeqCst);
    while !src.ctl.parked.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    check_pattern(&src.ram);
}

/// Migrates a running 32 MiB source (more than the socket buffers hold) into `conn`, whose peer
/// never reads, with a 500 ms write timeout; on its own thread so that a hang fails the test
/// instead of hanging it.
fn migrate_into_a_peer_that_never_reads<T>(conn: T) -> (SourceVm, common::TestDev, MigrationError)
where
    T: vmstate_migration::Transport + 'static,
{
    let src = SourceVm::new(32, false);
    src.wait_progress(500);
    let before = src.dev.lock().unwrap().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut src = src;
        let mut conn = conn;
        let s = Settings {
            write_timeout: Duration::from_millis(500),
            ..settings()
        };
        let r = migrate(&mut src, &mut conn, &s);
        let _ = tx.send((src, r));
    });
    let (src, r) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the source hangs writing to a peer that never reads");
    (src, before, r.expect_err("nobody read the stream"))
}

fn assert_write_timeout(err: &MigrationError) {
    assert!(
        matches!(err, MigrationError::Timeout(w) if w.contains("take more of the stream")),
        "{err}"
    );
    assert!(err.to_string().contains("destination"), "{err}");
    assert_eq!(err.origin(), vmstate_migration::Origin::Silent, "{err}");
}

/// A destination process that stops reading (its kernel still acknowledges: zero window): the
/// source's write times out (`Settings::write_timeout`) and its guest resumes unchanged.
#[test]
fn destination_that_stops_reading_is_a_write_timeout_tcp() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        // Holds the connection open without reading until the source gave up.
        let _ = hold_rx.recv();
        drop(s);
    });
    let conn = std::net::TcpStream::connect(addr).unwrap();
    let (src, before, err) = migrate_into_a_peer_that_never_reads(conn);
    assert_write_timeout(&err);
    drop(hold_tx);
    peer.join().unwrap();
    assert_source_running_unchanged(&src, &before);
}

/// The same over a Unix socket.
#[test]
fn destination_that_stops_reading_is_a_write_timeout_unix() {
    let (a, b) = UnixStream::pair().unwrap();
    let (src, before, err) = migrate_into_a_peer_that_never_reads(a);
    assert_write_timeout(&err);
    drop(b);
    assert_source_running_unchanged(&src, &before);
}

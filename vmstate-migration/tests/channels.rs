//! Multiple channels: pages over N page channels load exactly what one channel loads, a running
//! guest migrates consistently over 2 channels (TCP and Unix sockets), a stray or duplicated
//! connection on the destination's listener is refused with a clear error while the migration
//! goes on, a destination without a listener refuses clearly, and a cancel mid-pass leaves the
//! source running.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{check_pattern, spawn_receive_accepting, SourceVm};
use vmstate_migration::channels::{handshake, CHANNEL_MAGIC};
use vmstate_migration::{migrate, MigrationSource, Report, Settings};

fn ram_hash(ram: &vmstate_migration::GuestRam) -> u64 {
    let mut h = DefaultHasher::new();
    ram.snapshot().unwrap().hash(&mut h);
    h.finish()
}

/// Migrates `src` with `channels` page channels into a fresh 8 MiB destination over TCP.
fn migrate_with(
    src: &mut SourceVm,
    channels: u32,
    settings: &Settings,
) -> (common::DestVm, Report, Report) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let dest = spawn_receive_accepting(l, 8, Duration::from_secs(20));
    let mut t = TcpStream::connect(addr).unwrap();
    let settings = Settings {
        channels,
        ..settings.clone()
    };
    let report = migrate(src, &mut t, &settings).expect("migration");
    let (dst, dres) = dest.join().unwrap();
    (dst, report, dres.expect("destination"))
}

#[test]
fn n_channels_load_exactly_what_one_channel_loads() {
    let mut src = SourceVm::new(8, true);
    src.wait_progress(3000);
    // A stopped guest: both migrations send the same memory.
    src.stop_vcpus();
    let want = ram_hash(&src.ram);
    let settings = Settings {
        max_passes: 2,
        ..Settings::default()
    };
    let (one, r1, d1) = migrate_with(&mut src, 1, &settings);
    for n in [2, 3, 4] {
        let (many, rn, dn) = migrate_with(&mut src, n, &settings);
        assert_eq!(ram_hash(&many.ram), want, "{n} channels");
        assert_eq!(many.ram.snapshot().unwrap(), one.ram.snapshot().unwrap());
        assert_eq!(*many.dev.lock().unwrap(), *src.dev.lock().unwrap());
        assert!(many.resumed);
        // Same pages sent and loaded, whatever the channel count.
        let sent = |r: &Report| -> (u64, u64) {
            r.passes
                .iter()
                .fold((r.final_pages.pages, r.final_pages.zero_pages), |a, p| {
                    (a.0 + p.pages, a.1 + p.zero_pages)
                })
        };
        assert_eq!(sent(&rn), sent(&r1), "{n} channels");
        assert_eq!(
            (dn.final_pages.pages, dn.final_pages.zero_pages),
            (d1.final_pages.pages, d1.final_pages.zero_pages)
        );
        assert_eq!(rn.bytes, dn.bytes, "{n} channels: bytes sent = bytes read");
    }
    assert_eq!(ram_hash(&one.ram), want);
    check_pattern(&one.ram);
}

#[test]
fn a_running_guest_migrates_over_two_channels() {
    let mut src = SourceVm::new(8, true);
    src.wait_progress(5000);
    let settings = Settings {
        downtime: Duration::from_millis(20),
        max_passes: 8,
        ..Settings::default()
    };
    let (dst, report, dreport) = migrate_with(&mut src, 2, &settings);
    assert_eq!((src.stops, src.resumes), (1, 0));
    assert!(dst.resumed);
    assert!(!report.passes.is_empty());
    assert_eq!(
        report.passes[0].pages + report.passes[0].zero_pages,
        src.ram.total_bytes() / 4096
    );
    assert_eq!(report.bytes, dreport.bytes);
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    check_pattern(&dst.ram);
    assert_eq!(*dst.dev.lock().unwrap(), *src.dev.lock().unwrap());
}

#[test]
fn unix_sockets_carry_page_channels_too() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = std::env::temp_dir().join(format!("vmstate-chan-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("mig.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let mut src = SourceVm::new(8, true);
    src.wait_progress(2000);
    let dest = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut dst = common::DestVm::new(8);
        let settings = vmstate_migration::ReceiveSettings {
            channels: Some(vmstate_migration::ChannelListener::Unix(
                std::sync::Arc::new(l),
            )),
            ..vmstate_migration::ReceiveSettings::default()
        };
        let r = vmstate_migration::receive(&mut dst, &mut s, &settings);
        (dst, r)
    });
    let mut t = UnixStream::connect(&path).unwrap();
    let settings = Settings {
        channels: 3,
        downtime: Duration::from_millis(20),
        ..Settings::default()
    };
    migrate(&mut src, &mut t, &settings).expect("migration");
    let (dst, r) = dest.join().unwrap();
    r.expect("destination");
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    check_pattern(&dst.ram);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stray_connection_is_refused_and_the_migration_goes_on() {
    let mut src = SourceVm::new(8, true);
    src.wait_progress(2000);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let dest = spawn_receive_accepting(l, 8, Duration::from_secs(20));
    let mut t = TcpStream::connect(addr).unwrap();
    // Wait until the destination took the main connection, then queue two strays ahead of the
    // source's channels: one of another migration, one that is not a page channel at all.
    std::thread::sleep(Duration::from_millis(50));
    let mut foreign = TcpStream::connect(addr).unwrap();
    foreign.write_all(&handshake(&[7; 16], 0, 2)).unwrap();
    let mut junk = TcpStream::connect(addr).unwrap();
    junk.write_all(&[b'x'; 32]).unwrap();
    let settings = Settings {
        channels: 2,
        downtime: Duration::from_millis(20),
        ..Settings::default()
    };
    migrate(&mut src, &mut t, &settings).expect("migration despite the strays");
    let (dst, r) = dest.join().unwrap();
    r.expect("destination");
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    for (s, want) in [
        (&mut foreign, "wrong migration id"),
        (&mut junk, "bad magic"),
    ] {
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("ERR ") && answer.contains(want),
            "{answer:?}"
        );
    }
    assert_eq!(&handshake(&[0; 16], 1, 2)[..8], &CHANNEL_MAGIC);
}

/// A destination without a channel listener refuses a multi-channel stream, clearly; the source
/// runs on unchanged.
#[test]
fn a_destination_without_a_listener_refuses_clearly() {
    let mut src = SourceVm::new(4, true);
    src.wait_progress(1000);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let dest = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        common::spawn_receive(common::DestVm::new(4), s)
            .join()
            .unwrap()
    });
    let mut t = TcpStream::connect(addr).unwrap();
    let settings = Settings {
        channels: 2,
        ack_timeout: Duration::from_secs(5),
        ..Settings::default()
    };
    let err = migrate(&mut src, &mut t, &settings).unwrap_err();
    drop(t);
    let (dst, r) = dest.join().unwrap();
    let derr = r.unwrap_err().to_string();
    assert!(derr.contains("no channel listener"), "{derr}");
    assert!(!dst.resumed);
    assert_eq!(src.stops, src.resumes, "{err}");
    src.wait_progress(500);
}

/// Cancel in the middle of a pass on the page channels: the source returns `Cancelled` with its
/// guest running, the destination discards and does not start.
#[test]
fn cancel_during_a_channel_pass() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut src = SourceVm::new(8, true);
    src.wait_progress(1000);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let dest = spawn_receive_accepting(l, 8, Duration::from_secs(5));
    let mut t = TcpStream::connect(addr).unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let settings = Settings {
        channels: 2,
        cancel: Arc::clone(&cancel),
        progress: Some(vmstate_migration::ProgressHook(Arc::new(move |p| {
            if p.bytes > 1 << 20 {
                flag.store(true, Ordering::SeqCst);
            }
        }))),
        ..Settings::default()
    };
    let err = migrate(&mut src, &mut t, &settings).unwrap_err();
    assert!(
        matches!(err, vmstate_migration::MigrationError::Cancelled),
        "{err}"
    );
    drop(t);
    let (dst, r) = dest.join().unwrap();
    r.unwrap_err();
    assert!(!dst.resumed);
    assert_eq!(*dst.dev.lock().unwrap(), common::dest_sentinel());
    assert_eq!(src.stops, src.resumes);
    src.wait_progress(500);
}

/// A duplicated page channel (a second connection with channel 0's handshake, made by a proxy
/// while the migration sets up) is refused with "already connected"; the migration goes on over
/// the original connections.
#[test]
fn a_duplicated_channel_is_refused() {
    use std::net::Shutdown;
    let mut src = SourceVm::new(4, true);
    src.wait_progress(1000);
    let dst_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dst_addr = dst_l.local_addr().unwrap();
    let dest = spawn_receive_accepting(dst_l, 4, Duration::from_secs(10));
    let proxy_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy_l.local_addr().unwrap();
    // Relays the main connection and both page channels; after relaying channel 0's handshake
    // it opens the duplicate and waits for its answer before taking channel 1.
    let proxy = std::thread::spawn(move || {
        let mut relays = Vec::new();
        let mut answer = String::new();
        for k in 0..3 {
            let (from_src, _) = proxy_l.accept().unwrap();
            let to_dst = TcpStream::connect(dst_addr).unwrap();
            let mut first = Vec::new();
            if k == 1 {
                let mut h = [0u8; 32];
                (&from_src).read_exact(&mut h).unwrap();
                (&to_dst).write_all(&h).unwrap();
                first = h.to_vec();
            }
            for (a, b) in [(&from_src, &to_dst), (&to_dst, &from_src)] {
                let (mut a, b) = (a.try_clone().unwrap(), b.try_clone().unwrap());
                relays.push(std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut &b);
                    let _ = b.shutdown(Shutdown::Write);
                }));
            }
            if k == 1 {
                let mut dup = TcpStream::connect(dst_addr).unwrap();
                dup.write_all(&first).unwrap();
                dup.read_to_string(&mut answer).unwrap();
            }
        }
        for r in relays {
            r.join().unwrap();
        }
        answer
    });
    let mut t = TcpStream::connect(proxy_addr).unwrap();
    let settings = Settings {
        channels: 2,
        downtime: Duration::from_millis(20),
        ..Settings::default()
    };
    migrate(&mut src, &mut t, &settings).expect("migration despite the duplicate");
    drop(t);
    let (dst, r) = dest.join().unwrap();
    r.expect("destination");
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    let answer = proxy.join().unwrap();
    assert!(
        answer.starts_with("ERR ") && answer.contains("page channel 0 is already connected"),
        "{answer:?}"
    );
}

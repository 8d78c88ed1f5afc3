//! A network that fails silently: source and destination run as two hosts — two network
//! namespaces joined by a veth pair, with addresses that exist only on that pair — and the link
//! goes down (`ip link set … down`: no FIN, no RST, the peer just goes quiet) at 15 points of a
//! migration: during pre-copy (pass 0 and pass 1, by bytes sent, one channel and two page
//! channels, and with the stream's integrity check), before the device sections (also with the
//! integrity check), while the source waits for `LOADED` (the destination still loading), with
//! `LOADED` on its way, after `LOADED` before `GO`, and between `LOADED` and the verification
//! digests. Each time both sides return within their configured timeouts (2 s) plus 1 s,
//! measured from the cut, with a timeout that says what it waited for and from which side
//! (`MigrationError::origin` is `Silent`). The source's guest runs again unchanged (device state
//! equal, memory one consistent sweep), except after it read `LOADED`: then it committed and the
//! VM stays paused on both sides. The destination never starts, and applies no device state
//! before its load completed. Then the link comes back: the stale connection ends (reset or
//! closed; a `LOADED` or `ERR` line the destination sent before the cut may arrive first, to a
//! source that returned long ago), the old destination's listener is gone (connection refused)
//! and a new migration over the same link succeeds.
//!
//! How the two hosts are made: each test creates its own pair of namespaces (`ip netns add`,
//! names with the process id and the test's index, cleaned up by a `Drop` guard even when the
//! test fails) and a veth pair between them, `10.213.N.1/30` and `10.213.N.2/30`. The source and
//! the destination run on threads of this process that `setns` into their namespace before
//! creating any socket (a socket stays in the namespace it was created in; `setns` changes only
//! the calling thread). Threads rather than `ip netns exec` child processes keep the cuts exact:
//! a transport wrapper or the progress hook takes the link down synchronously at a chosen point
//! of the protocol, and the test compares both VMs' memory and devices directly.
//!
//! Measured here (kernel 6.18): with either end of the veth pair down, neither side gets an error
//! from the kernel: writes fill the socket buffer and then block, reads see nothing — the
//! partition is silent, so `ip link set down` was enough (no `tc`/nft rule). What the tests found:
//! the source had no write timeout and blocked forever in a pre-copy write; a plain `SO_SNDTIMEO`
//! of the whole timeout took 4.0–6.1 s with a 2 s timeout in the five pre-copy cases (a `writev`
//! that copied some bytes returns short when its timeout elapses, and the next one waits a whole
//! timeout again), hence
//! `Transport::set_send_timeout` (see its docs).

mod common;

mod needs_root {
    use std::io::{self, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::process::Command;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::common::{check_pattern, dest_sentinel, DestVm, SourceVm};
    use vmstate_migration::channels::Socket;
    use vmstate_migration::precopy::ProgressHook;
    use vmstate_migration::ram::Piece;
    use vmstate_migration::{
        migrate, receive, ChannelListener, MigrationError, MigrationSource, Origin,
        ReceiveSettings, Report, Settings, Transport,
    };

    /// Both sides' configured timeouts.
    const TIMEOUT: Duration = Duration::from_secs(2);
    /// The bound the issue sets: configured timeout + 1 s after the cut.
    const BOUND: Duration = Duration::from_secs(3);
    const RAM_MIB: usize = 8;
    const MARKER: &[u8] = b"\x07testdev";

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Side {
        Source,
        Dest,
    }

    /// Two network namespaces joined by a veth pair; deleted on drop.
    struct Net {
        ns: [String; 2],
        ip: [String; 2],
        /// When the link went down (taken before the `ip` command runs).
        cut_at: Mutex<Option<Instant>>,
    }

    fn ip(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("running ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Deletes the namespaces of earlier runs whose process is gone (killed before its `Drop`
    /// guards ran).
    fn remove_stale_namespaces() {
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("vms")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    }

    impl Net {
        fn new(index: u8) -> Arc<Net> {
            let pid = std::process::id();
            let net = Net {
                ns: [
                    format!("vms{pid}-{index}-src"),
                    format!("vms{pid}-{index}-dst"),
                ],
                ip: [format!("10.213.{index}.1"), format!("10.213.{index}.2")],
                cut_at: Mutex::new(None),
            };
            remove_stale_namespaces();
            // From here on, Drop deletes whatever was created.
            let net = Arc::new(net);
            for ns in &net.ns {
                ip(&["netns", "add", ns]);
            }
            let [s, d] = &net.ns;
            ip(&[
                "link", "add", "vs", "netns", s, "type", "veth", "peer", "name", "vd", "netns", d,
            ]);
            for (ns, (dev, addr)) in net.ns.iter().zip([("vs", &net.ip[0]), ("vd", &net.ip[1])]) {
                ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
                ip(&["-n", ns, "link", "set", "lo", "up"]);
            }
            net
        }

        fn idx(side: Side) -> usize {
            match side {
                Side::Source => 0,
                Side::Dest => 1,
            }
        }

        /// Moves the calling thread into `side`'s namespace (sockets it creates live there).
        fn enter(&self, side: Side) {
            let f = std::fs::File::open(format!("/run/netns/{}", self.ns[Self::idx(side)]))
                .expect("opening the namespace");
            // SAFETY: `f` is an open namespace file for the duration of the call; setns changes
            // only this thread's network namespace and touches no memory of ours.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", io::Error::last_os_error());
        }

        /// Takes `side`'s end of the link down, once.
        fn cut(&self, side: Side) {
            {
                let mut at = self.cut_at.lock().unwrap();
                if at.is_some() {
                    return;
                }
                *at = Some(Instant::now());
            }
            let dev = if side == Side::Source { "vs" } else { "vd" };
            ip(&["-n", &self.ns[Self::idx(side)], "link", "set", dev, "down"]);
        }

        fn cut_at(&self) -> Option<Instant> {
            *self.cut_at.lock().unwrap()
        }

        fn restore(&self) {
            ip(&["-n", &self.ns[0], "link", "set", "vs", "up"]);
            ip(&["-n", &self.ns[1], "link", "set", "vd", "up"]);
        }
    }

    impl Drop for Net {
        fn drop(&mut self) {
            for ns in &self.ns {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    /// Where the link goes down.
    #[derive(Clone, Copy, Debug)]
    enum Cut {
        /// In pre-copy pass `pass`, once the source wrote `at` bytes of it.
        Precopy { pass: u32, at: u64 },
        /// Just before the source writes the device sections.
        Devices,
        /// When the source starts waiting for `LOADED` and all its bytes were acknowledged; the
        /// destination takes 300 ms more to load.
        AwaitLoaded,
        /// Just before the destination writes `LOADED`.
        LoseLoaded,
        /// After the source read `LOADED`, just before it writes `GO`.
        BeforeGo,
        /// Verification: after the source read `LOADED`, before the destination writes its
        /// digests.
        LoseDigests,
    }

    /// What both taps share.
    struct Shared {
        net: Arc<Net>,
        side: Side,
        cut: Cut,
        /// Bytes the source read on the main connection (`LOADED\n` is 7).
        src_read: AtomicU64,
    }

    /// A TCP transport that takes the link down at its case's point.
    struct Tap {
        inner: TcpStream,
        shared: Arc<Shared>,
        is_source: bool,
        /// The stream written so far, up to and including the marker (source).
        tail: Vec<u8>,
    }

    impl Tap {
        fn source_write(&mut self, buf: &[u8]) {
            let sh = &*self.shared;
            match sh.cut {
                Cut::Devices => {
                    self.tail.extend_from_slice(buf);
                    if self.tail.windows(MARKER.len()).any(|w| w == MARKER) {
                        sh.net.cut(sh.side);
                    }
                    let keep = self.tail.len().saturating_sub(MARKER.len());
                    self.tail.drain(..keep);
                }
                Cut::BeforeGo if buf == b"GO\n" => sh.net.cut(sh.side),
                _ => {}
            }
        }

        fn dest_write(&self, buf: &[u8]) {
            let sh = &*self.shared;
            match sh.cut {
                Cut::LoseLoaded if buf.starts_with(b"LOADED") => sh.net.cut(sh.side),
                Cut::AwaitLoaded if buf.starts_with(b"LOADED") => {
                    std::thread::sleep(Duration::from_millis(300));
                }
                Cut::LoseDigests if buf.starts_with(b"DIGESTS") => {
                    let t0 = Instant::now();
                    while sh.src_read.load(Ordering::SeqCst) < 7 {
                        assert!(t0.elapsed() < BOUND, "the source never read LOADED");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    sh.net.cut(sh.side);
                }
                _ => {}
            }
        }

        /// Bytes in the send queue not yet acknowledged by the peer.
        fn unacked(&self) -> i32 {
            let mut n: libc::c_int = 0;
            // SAFETY: the socket is open for the call; TIOCOUTQ writes one c_int to `n`.
            let r = unsafe { libc::ioctl(self.inner.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
            assert_eq!(r, 0, "TIOCOUTQ: {}", io::Error::last_os_error());
            n
        }
    }

    impl Read for Tap {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.is_source {
                if matches!(self.shared.cut, Cut::AwaitLoaded)
                    && self.shared.src_read.load(Ordering::SeqCst) == 0
                {
                    // The whole stream reached the destination's kernel; it is still loading.
                    let t0 = Instant::now();
                    while self.unacked() > 0 && t0.elapsed() < TIMEOUT {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    self.shared.net.cut(self.shared.side);
                }
                let n = self.inner.read(buf)?;
                self.shared.src_read.fetch_add(n as u64, Ordering::SeqCst);
                Ok(n)
            } else {
                self.inner.read(buf)
            }
        }
    }

    impl Write for Tap {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.is_source {
                self.source_write(buf);
            } else {
                self.dest_write(buf);
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    impl Transport for Tap {
        fn finish_stream(&mut self) -> io::Result<()> {
            self.inner.finish_stream()
        }
        fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
            self.inner.set_timeout(timeout)
        }
        fn set_send_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
            self.inner.set_send_timeout(timeout)
        }
        fn write_pieces(&mut self, pieces: &[Piece<'_>]) -> io::Result<()> {
            // The stream's own bytes (the device sections come this way); no cut point is
            // inside page data (pre-copy cuts use the progress hook).
            if self.is_source {
                for p in pieces {
                    if let Piece::Bytes(b) = p {
                        self.source_write(b);
                    }
                }
            }
            self.inner.write_pieces(pieces)
        }
        fn open_channel(&self) -> io::Result<Socket> {
            self.inner.open_channel()
        }
    }

    /// A timeout, said so, and with the origin `Silent` (nothing arrived within the timeout).
    fn is_timeout(e: &MigrationError) -> bool {
        e.to_string().contains("timed out") && e.origin() == Origin::Silent
    }

    struct Case {
        index: u8,
        cut: Cut,
        side: Side,
        channels: u32,
        verify: bool,
        integrity: bool,
    }

    fn settings(case: &Case, net: &Arc<Net>) -> Settings {
        let progress = if let Cut::Precopy { pass, at } = case.cut {
            let net = Arc::clone(net);
            let side = case.side;
            Some(ProgressHook(Arc::new(move |p| {
                if p.pass == pass && p.bytes >= at {
                    net.cut(side);
                }
            })))
        } else {
            None
        };
        Settings {
            // Never converges early: pass 1 exists, the guest stops after pass 2.
            downtime: Duration::from_micros(1),
            max_passes: 3,
            auto_converge: false,
            ack_timeout: TIMEOUT,
            write_timeout: TIMEOUT,
            channels: case.channels,
            verify: case.verify,
            integrity: case.integrity,
            progress,
            ..Settings::default()
        }
    }

    /// The destination, on a thread of its own in its namespace: listens, accepts one
    /// migration, receives it. Returns the VM, the result and when `receive` returned.
    fn destination(
        net: &Arc<Net>,
        shared: Option<Arc<Shared>>,
        verify: bool,
        addr_tx: std::sync::mpsc::Sender<SocketAddr>,
    ) -> (DestVm, vmstate_migration::Result<Report>, Instant) {
        net.enter(Side::Dest);
        let listener = TcpListener::bind((net.ip[1].as_str(), 0)).unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        let mut dst = DestVm::new(RAM_MIB);
        let settings = ReceiveSettings {
            read_timeout: Some(TIMEOUT),
            channels: Some(ChannelListener::Tcp(Arc::new(listener))),
            verify,
            ..ReceiveSettings::default()
        };
        let r = match shared {
            Some(shared) => {
                let mut t = Tap {
                    inner: s,
                    shared,
                    is_source: false,
                    tail: Vec::new(),
                };
                receive(&mut dst, &mut t, &settings)
            }
            None => {
                let mut s = s;
                receive(&mut dst, &mut s, &settings)
            }
        };
        // The listener (inside the settings) and the connection close here.
        (dst, r, Instant::now())
    }

    /// One migration over the link; the source's connection is returned open (to show later
    /// that it is dead).
    #[allow(clippy::type_complexity)]
    fn migrate_once(
        net: &Arc<Net>,
        src: &mut SourceVm,
        shared: Option<Arc<Shared>>,
        settings: &Settings,
    ) -> (
        vmstate_migration::Result<Report>,
        Instant,
        TcpStream,
        (DestVm, vmstate_migration::Result<Report>, Instant),
        SocketAddr,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let dest = {
                let shared = shared.clone();
                s.spawn(move || destination(net, shared, settings.verify, tx))
            };
            let addr = rx.recv().expect("the destination listens");
            let source = s.spawn(move || {
                net.enter(Side::Source);
                let conn = TcpStream::connect(addr).unwrap();
                let keep = conn.try_clone().unwrap();
                let r = match shared {
                    Some(shared) => {
                        let mut t = Tap {
                            inner: conn,
                            shared,
                            is_source: true,
                            tail: Vec::new(),
                        };
                        migrate(src, &mut t, settings)
                    }
                    None => {
                        let mut conn = conn;
                        migrate(src, &mut conn, settings)
                    }
                };
                (r, Instant::now(), keep)
            });
            let (r, done, keep) = source.join().unwrap();
            (r, done, keep, dest.join().unwrap(), addr)
        })
    }

    /// Once the link is back: the stale connection ends (reset or closed; a line the
    /// destination had sent before the cut may arrive first, to a source that already returned);
    /// the old destination's listener is gone; a new migration over the link succeeds.
    fn after_link_returns(net: &Arc<Net>, src: &mut SourceVm, stale: TcpStream, old: SocketAddr) {
        net.restore();
        std::thread::scope(|s| {
            s.spawn(|| {
                net.enter(Side::Source);
                let mut stale = stale;
                stale
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                // Anything sent on the old connection reaches a socket that is gone.
                let _ = stale.write_all(b"x");
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    match stale.read(&mut buf) {
                        Ok(0) => break "closed".to_owned(),
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            panic!(
                                "the stale connection is still open 15 s after the link came \
                                 back (read {:?})",
                                String::from_utf8_lossy(&got)
                            )
                        }
                        Err(e) => break e.to_string(),
                    }
                };
                eprintln!(
                    "stale connection after the link came back: {:?}, then {end}",
                    String::from_utf8_lossy(&got)
                );
                let e = TcpStream::connect_timeout(&old, TIMEOUT)
                    .expect_err("the old destination still listens");
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
            });
        });
        let settings = Settings {
            downtime: Duration::from_millis(20),
            max_passes: 3,
            ack_timeout: TIMEOUT * 5,
            write_timeout: TIMEOUT * 5,
            ..Settings::default()
        };
        let (r, _, _, (dst, dres, _), _) = migrate_once(net, src, None, &settings);
        r.expect("a new migration after the link came back");
        dres.expect("the new destination");
        assert!(dst.resumed);
        assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
        assert_eq!(*dst.dev.lock().unwrap(), *src.dev.lock().unwrap());
    }

    fn run(case: Case) {
        let net = Net::new(case.index);
        let mut src = SourceVm::new(RAM_MIB, false);
        src.wait_progress(1000);
        let dev_before = src.dev.lock().unwrap().clone();
        let shared = Arc::new(Shared {
            net: Arc::clone(&net),
            side: case.side,
            cut: case.cut,
            src_read: AtomicU64::new(0),
        });
        let settings = settings(&case, &net);
        let (res, src_done, stale, (dst, dres, dst_done), old) =
            migrate_once(&net, &mut src, Some(shared), &settings);
        let cut_at = net
            .cut_at()
            .expect("the link never went down: no cut point reached");
        let (src_took, dst_took) = (src_done - cut_at, dst_done - cut_at);
        eprintln!(
            "{:?} ({:?} link, {} channel(s)): source {:?} after the cut: {}; destination {:?}: {}",
            case.cut,
            case.side,
            case.channels,
            src_took,
            res.as_ref()
                .map_or_else(ToString::to_string, |_| "committed".into()),
            dst_took,
            dres.as_ref()
                .map_or_else(ToString::to_string, |_| "started".into()),
        );

        // The destination: a timeout naming the source, never started; before its load
        // completed nothing was applied, after it (`LOADED` sent) it has no `GO` and stays
        // paused (`NoGo`).
        let derr = dres.expect_err("the destination must fail");
        assert!(is_timeout(&derr), "destination: not a timeout: {derr}");
        assert!(derr.to_string().contains("source"), "destination: {derr}");
        assert!(!dst.resumed);
        let loaded = matches!(
            case.cut,
            Cut::AwaitLoaded | Cut::LoseLoaded | Cut::BeforeGo | Cut::LoseDigests
        );
        if loaded {
            assert!(matches!(derr, MigrationError::NoGo(_)), "{derr}");
        } else {
            assert!(!matches!(derr, MigrationError::NoGo(_)), "{derr}");
            assert_eq!(*dst.dev.lock().unwrap(), dest_sentinel());
        }
        assert!(
            dst_took <= BOUND,
            "the destination took {dst_took:?} after the cut (bound {BOUND:?})"
        );
        assert!(
            src_took <= BOUND,
            "the source took {src_took:?} after the cut (bound {BOUND:?})"
        );

        if let Cut::BeforeGo = case.cut {
            // Committed on LOADED: success, stopped; the VM is paused on both sides and
            // management starts one (here the source). Never running twice.
            let report = res.expect("the source committed on LOADED");
            assert!(report.go_error.is_none(), "{:?}", report.go_error);
            assert_eq!(src.stops, src.resumes + 1);
            src.resume_vcpus();
        } else {
            let err = res.expect_err("the source must fail");
            assert!(is_timeout(&err), "source: not a timeout: {err}");
            assert!(err.to_string().contains("destination"), "source: {err}");
            assert_eq!(src.resumes, src.stops, "the source's guest did not resume");
        }
        // Running again, unchanged.
        src.wait_progress(1000);
        assert_eq!(*src.dev.lock().unwrap(), dev_before);
        src.ctl.pause.store(true, Ordering::SeqCst);
        while !src.ctl.parked.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        check_pattern(&src.ram);
        src.resume_vcpus();
        src.resumes -= 1;

        after_link_returns(&net, &mut src, stale, old);
    }

    macro_rules! cases {
        ($($name:ident: $index:expr, $cut:expr, $side:ident, $channels:expr, $verify:expr;)+) => {$(
            #[test]
            #[ignore = "needs root (network namespaces)"]
            fn $name() {
                run(Case {
                    index: $index,
                    cut: $cut,
                    side: Side::$side,
                    channels: $channels,
                    verify: $verify,
                    integrity: false,
                });
            }
        )+};
    }

    const MIB: u64 = 1 << 20;

    cases! {
        precopy_pass0_at_1mib: 1, Cut::Precopy { pass: 0, at: MIB }, Source, 1, false;
        precopy_pass0_at_6mib: 2, Cut::Precopy { pass: 0, at: 6 * MIB }, Dest, 1, false;
        precopy_pass1: 3, Cut::Precopy { pass: 1, at: 64 << 10 }, Source, 1, false;
        precopy_pass0_two_channels: 4, Cut::Precopy { pass: 0, at: 2 * MIB }, Source, 2, false;
        precopy_pass1_two_channels: 5, Cut::Precopy { pass: 1, at: 64 << 10 }, Dest, 2, false;
        device_sections: 6, Cut::Devices, Dest, 1, false;
        device_sections_two_channels: 7, Cut::Devices, Source, 2, false;
        awaiting_loaded: 8, Cut::AwaitLoaded, Source, 1, false;
        awaiting_loaded_two_channels: 9, Cut::AwaitLoaded, Dest, 2, false;
        loaded_lost: 10, Cut::LoseLoaded, Dest, 1, false;
        loaded_lost_two_channels: 11, Cut::LoseLoaded, Source, 2, false;
        after_loaded_before_go: 12, Cut::BeforeGo, Source, 1, false;
        digests_lost_before_go: 13, Cut::LoseDigests, Dest, 1, true;
    }

    /// With the stream's integrity check (`Settings::integrity`: staged units, each written
    /// with its checksum): a cut in pre-copy and one before the device sections.
    #[test]
    #[ignore = "needs root (network namespaces)"]
    fn precopy_with_integrity_check() {
        run(Case {
            index: 15,
            cut: Cut::Precopy {
                pass: 0,
                at: 3 * MIB,
            },
            side: Side::Dest,
            channels: 1,
            verify: false,
            integrity: true,
        });
    }

    /// See [`precopy_with_integrity_check`].
    #[test]
    #[ignore = "needs root (network namespaces)"]
    fn device_sections_with_integrity_check() {
        run(Case {
            index: 16,
            cut: Cut::Devices,
            side: Side::Source,
            channels: 1,
            verify: false,
            integrity: true,
        });
    }

    /// Without a cut the same harness migrates (the taps change nothing).
    #[test]
    #[ignore = "needs root (network namespaces)"]
    fn no_cut_migrates() {
        let net = Net::new(14);
        let mut src = SourceVm::new(RAM_MIB, false);
        src.wait_progress(1000);
        let settings = Settings {
            downtime: Duration::from_millis(20),
            ..Settings::default()
        };
        let (r, _, _, (dst, dres, _), _) = migrate_once(&net, &mut src, None, &settings);
        r.expect("source");
        dres.expect("destination");
        assert!(dst.resumed);
        assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    }
}

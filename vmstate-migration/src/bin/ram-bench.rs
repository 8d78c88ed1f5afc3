//! RAM migration benchmark (not a test).
//!
//! One run prints, side by side, for guest RAM of random bytes (default 1 GiB):
//! - one RAM pass (every page zero-checked in guest memory and framed; no transport);
//! - bare loopback TCP moving the same number of bytes into a reused, populated buffer;
//! - a migration over loopback TCP (source `migrate`, destination `receive` into guest memory,
//!   handshake) into a *cold* destination (fresh memory, created per run, not timed) and into a
//!   *populated* one;
//! - where `qemu-system-x86_64` is installed, QEMU itself migrating the same amount of random
//!   RAM over loopback TCP between two processes (guest RAM is a `memory-backend-file` with
//!   `share=on,prealloc=on` on a file of random bytes in /dev/shm, mapped before the clock starts;
//!   the destination's RAM is fresh), plain and with multifd on 2 channels;
//! - the same into the populated destination with the stream's integrity check
//!   ([`Settings::integrity`]: pages copied and CRC-32 summed on both sides);
//! - our migration over N page channels ([`Settings::channels`]; `--channels 2,4`, default 2)
//!   into a cold and into a populated destination.
//!
//! Each is run `--runs` times (default 5); min and median are printed, then our cold rows as a
//! ratio against QEMU multifd, and the share of pages our destinations read ahead
//! ([`vmstate_migration::Report::pages_read_ahead`]).
//!
//! Before every run into a cold destination (ours and QEMU's alike) the bench populates and frees
//! `size` + 256 MiB of memory (untimed), unless `--no-warm` is given. A cold destination's
//! memory is fresh to its process (page faults and zeroing are timed); the warm step makes the
//! *host* under it present too. In a VM whose balloon has free page reporting, memory the guest
//! kernel freed is handed back to the host within seconds, and touching it again costs a host
//! fault per page: populating 1 GiB then took up to 0.77 s instead of 0.09–0.12 s (0.4 s or more
//! in 7 of 10 tries, on the 2-core VM of docs/benchmarks.md), and which runs meet such memory is
//! luck. The warm step takes that luck out for both sides; `--no-warm` shows it.
//!
//! Usage: `cargo run --release -p vmstate-migration --bin ram-bench -- [--size MIB] [--runs N]
//! [--channels N,M,…] [--no-qemu] [--no-warm]`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmstate_migration::ram::Piece;
use vmstate_migration::{
    migrate, receive, GuestRam, MigrationDestination, MigrationSource, RamWriter, ReceiveSettings,
    Settings,
};
use vmstate_runtime::{MachineCatalog, MachineType, Registry};

struct Vm {
    ram: GuestRam,
    registry: Registry,
    machine: MachineType,
}

vmstate_migration::impl_vm_parts!(Vm);

impl MigrationSource for Vm {
    fn stop_vcpus(&mut self) {}
    fn resume_vcpus(&mut self) {}
}

impl MigrationDestination for Vm {
    fn resume(&mut self) {}
}

fn vm(size: usize, populated: bool) -> Vm {
    let blocks = [("pc.ram", 0, size)];
    Vm {
        ram: if populated {
            GuestRam::new_populated(&blocks)
        } else {
            GuestRam::new(&blocks)
        }
        .expect("guest memory"),
        registry: Registry::new(),
        machine: MachineCatalog::qemu_pc()
            .resolve("pc-i440fx-7.2")
            .expect("machine type"),
    }
}

/// xorshift64 bytes (incompressible, never a zero page).
fn random_fill(ram: &GuestRam, size: usize) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    for off in (0..size).step_by(buf.len()) {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        ram.memory()
            .write_slice(&buf, GuestAddress(off as u64))
            .expect("fill");
    }
}

struct Discard(u64);

impl vmstate_migration::ram::ByteSink for Discard {
    fn send(&mut self, data: &[u8]) -> vmstate_migration::Result<()> {
        self.0 += std::hint::black_box(data).len() as u64;
        Ok(())
    }
    fn send_pieces(&mut self, pieces: &[Piece<'_>]) -> vmstate_migration::Result<()> {
        self.0 += std::hint::black_box(pieces)
            .iter()
            .map(Piece::len)
            .sum::<usize>() as u64;
        Ok(())
    }
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

/// Prints one row; returns its (min, median).
fn line(
    what: &str,
    bytes: u64,
    runs: Vec<Duration>,
    reference: Option<Duration>,
) -> (Duration, Duration) {
    let n = runs.len();
    let (min, med) = stats(runs);
    let rel = reference.map_or(String::new(), |r| {
        format!(
            " | {:5.1}% of bare TCP (median)",
            100.0 * r.as_secs_f64() / med.as_secs_f64()
        )
    });
    println!(
        "{what:<34} min {:>9.3?} ({:5.2} GB/s)  median {:>9.3?} ({:5.2} GB/s)  [{n} runs]{rel}",
        min,
        gbps(bytes, min),
        med,
        gbps(bytes, med),
    );
    (min, med)
}

fn main() {
    let mut size_mib = 1024usize;
    let mut runs = 5usize;
    let mut qemu = true;
    let mut warm = true;
    let mut channel_counts = vec![2u32];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => {
                size_mib = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--size MIB");
            }
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--runs N");
            }
            "--channels" => {
                channel_counts = args
                    .next()
                    .and_then(|s| {
                        s.split(',')
                            .map(|n| n.parse().ok().filter(|&n: &u32| n > 1))
                            .collect::<Option<Vec<u32>>>()
                    })
                    .expect("--channels N,M,… (each at least 2)");
            }
            "--no-qemu" => qemu = false,
            "--no-warm" => warm = false,
            _ => {
                eprintln!(
                    "usage: ram-bench [--size MIB] [--runs N] [--channels N,M,…] [--no-qemu] [--no-warm]"
                );
                std::process::exit(2);
            }
        }
    }
    let size = size_mib << 20;
    let bytes = size as u64;
    println!(
        "ram-bench: {size_mib} MiB of random guest RAM, 4 KiB pages, loopback TCP, {runs} runs each; THP: {}",
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default()
            .trim()
    );
    let reported = reported_kib();
    println!(
        "host memory before each cold run: {}; free page reporting: {}",
        if warm {
            "warmed (populated and freed, untimed)"
        } else {
            "as it comes (--no-warm)"
        },
        reported.map_or("unknown".to_owned(), |k| format!(
            "on ({} MiB handed back to the host since boot)",
            k >> 10
        )),
    );
    let warm_for = |size: usize| {
        if warm {
            warm_host(size);
        }
    };

    // 1. One RAM pass (zero check + framing, page data handed out as pieces, not copied).
    let src = vm(size, false);
    random_fill(&src.ram, size);
    let (name, _) = src.ram.blocks()[0].clone();
    let region = src.ram.memory().iter().next().expect("region");
    let pass: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut w = RamWriter::new(0, src.machine.framing());
            let mut sink = Discard(0);
            let pages = size / 4096;
            let dirty = vec![u64::MAX; pages.div_ceil(64)];
            let t = Instant::now();
            w.begin_chunk(&mut sink, false).expect("chunk");
            w.write_dirty(&mut sink, 0, &name, region, &dirty)
                .expect("pass");
            w.end_chunk(&mut sink).expect("chunk");
            w.finish(&mut sink).expect("flush");
            t.elapsed()
        })
        .collect();
    line("RAM pass (no transport)", bytes, pass, None);

    // 2. Bare loopback TCP into a reused, populated buffer.
    let raw: Vec<Duration> = (0..runs).map(|_| raw_tcp(bytes)).collect();
    let (_, raw_med) = line("bare loopback TCP", bytes, raw, None);

    // 3. Migration into a cold destination (fresh memory each run) ...
    let mut src = src;
    let mut cold = Vec::new();
    let mut same = true;
    let mut ahead = 0;
    for _ in 0..runs {
        src.ram.clear_dirty();
        warm_for(size);
        let (d, took, a) = migrate_once(&mut src, vm(size, false), 1, false);
        cold.push(took);
        ahead += a;
        same &= d.ram.snapshot().expect("snapshot") == src.ram.snapshot().expect("snapshot");
    }
    let mut ours_cold = vec![(
        "1 channel".to_owned(),
        line("migration, cold destination", bytes, cold, Some(raw_med)),
    )];
    println!("  ({})", read_ahead(ahead, bytes / 4096, runs));
    // ... and into a populated one (populated at creation, before the source connects).
    let mut dst = vm(size, true);
    let mut populated = Vec::new();
    let mut ahead = 0;
    for _ in 0..runs {
        src.ram.clear_dirty();
        let (d, took, a) = migrate_once(&mut src, dst, 1, false);
        dst = d;
        populated.push(took);
        ahead += a;
    }
    line(
        "migration, populated destination",
        bytes,
        populated,
        Some(raw_med),
    );
    println!("  ({})", read_ahead(ahead, bytes / 4096, runs));
    same &= dst.ram.snapshot().expect("snapshot") == src.ram.snapshot().expect("snapshot");
    // ... and with the stream's integrity check (a copy of every page, CRC-32 on both sides).
    let mut checked = Vec::new();
    for _ in 0..runs {
        src.ram.clear_dirty();
        let (d, took, _) = migrate_once(&mut src, dst, 1, true);
        dst = d;
        checked.push(took);
    }
    line(
        "migration + integrity check, populated",
        bytes,
        checked,
        Some(raw_med),
    );
    same &= dst.ram.snapshot().expect("snapshot") == src.ram.snapshot().expect("snapshot");
    // ... and over N page channels, cold and populated.
    for &n in &channel_counts {
        let mut cold = Vec::new();
        for _ in 0..runs {
            src.ram.clear_dirty();
            warm_for(size);
            let (d, took, _) = migrate_once(&mut src, vm(size, false), n, false);
            cold.push(took);
            same &= d.ram.snapshot().expect("snapshot") == src.ram.snapshot().expect("snapshot");
        }
        let row = line(
            &format!("migration {n}ch, cold destination"),
            bytes,
            cold,
            Some(raw_med),
        );
        ours_cold.push((format!("{n} channels"), row));
        let mut populated = Vec::new();
        for _ in 0..runs {
            src.ram.clear_dirty();
            let (d, took, _) = migrate_once(&mut src, dst, n, false);
            dst = d;
            populated.push(took);
        }
        line(
            &format!("migration {n}ch, populated dest."),
            bytes,
            populated,
            Some(raw_med),
        );
        same &= dst.ram.snapshot().expect("snapshot") == src.ram.snapshot().expect("snapshot");
    }
    println!("destination memory equals source after every run: {same}");
    drop((src, dst));

    // 4. QEMU 7.2 itself, where installed.
    if qemu {
        match qemu_bench(size_mib, runs, &warm_for) {
            Ok((qmin, qmed)) => {
                for (what, (min, med)) in &ours_cold {
                    println!(
                        "cold destination, ours ({what}) against QEMU multifd 2ch: {:.2}x faster by minimum, {:.2}x by median",
                        qmin.as_secs_f64() / min.as_secs_f64(),
                        qmed.as_secs_f64() / med.as_secs_f64(),
                    );
                }
            }
            Err(e) => println!("QEMU: not measured ({e})"),
        }
    }
}

/// Sends `bytes` over loopback TCP; the receiver reads into a reused, populated buffer of
/// `bytes` bytes (like a populated destination's guest memory), 1 MiB per `read` at most.
fn raw_tcp(bytes: u64) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = std::thread::spawn(move || {
        let len = usize::try_from(bytes).expect("size");
        let mut buf = vec![0u8; len];
        for i in (0..len).step_by(4096) {
            buf[i] = 1; // populate every page before the sender starts
        }
        ready_tx.send(()).expect("ready");
        let (mut s, _) = l.accept().expect("accept");
        let mut n = 0u64;
        loop {
            let at = usize::try_from(n).expect("offset") % len;
            let end = (at + (1 << 20)).min(len);
            match s.read(&mut buf[at..end]) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => panic!("{e}"),
            }
        }
        std::hint::black_box(&buf);
        // The buffer goes back to the caller, freed after the clock stops (unmapping 1 GiB of
        // populated memory takes tens of milliseconds and is not part of the transfer).
        (n, buf)
    });
    ready_rx.recv().expect("receiver ready");
    let mut s = TcpStream::connect(addr).expect("connect");
    let buf = vec![7u8; 1 << 20];
    let t = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..k]).expect("write");
        left -= k as u64;
    }
    drop(s);
    let (n, buf) = rx.join().expect("rx");
    let took = t.elapsed();
    assert_eq!(n, bytes);
    drop(buf);
    took
}

/// Populates and frees `size` + 256 MiB of memory, so that the next cold destination's memory
/// is present on the host (see the module documentation).
fn warm_host(size: usize) {
    drop(GuestRam::new_populated(&[("warm", 0, size + (256 << 20))]).expect("warm-up memory"));
}

/// KiB of freed guest memory the balloon's free page reporting handed back to the host, where the
/// kernel has it.
fn reported_kib() -> Option<u64> {
    std::fs::read_to_string("/sys/module/page_reporting/parameters/reported_kib")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The share of `runs` runs of `pages` pages each that arrived by read-ahead, from the sum of
/// the destinations' [`vmstate_migration::Report::pages_read_ahead`].
fn read_ahead(read_ahead: u64, pages: u64, runs: usize) -> String {
    format!(
        "{:.1}% of pages read ahead into guest memory",
        100.0 * read_ahead as f64 / (pages * runs as u64) as f64
    )
}

/// One migration of `src` into `dst`: the destination, the source's total time and the pages
/// the destination read ahead.
fn migrate_once(src: &mut Vm, dst: Vm, channels: u32, integrity: bool) -> (Vm, Duration, u64) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let rx = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut d = dst;
        let settings = ReceiveSettings {
            channels: Some(vmstate_migration::ChannelListener::Tcp(
                std::sync::Arc::new(l),
            )),
            ..ReceiveSettings::default()
        };
        let report = receive(&mut d, &mut s, &settings).expect("destination");
        (d, report.pages_read_ahead)
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    let settings = Settings {
        max_passes: 1,
        channels,
        integrity,
        ..Settings::default()
    };
    let report = migrate(src, &mut s, &settings).expect("migration");
    let (d, ahead) = rx.join().expect("rx");
    (d, report.total_time, ahead)
}

/// A QMP connection (one JSON object per line).
struct Qmp {
    r: std::io::BufReader<std::os::unix::net::UnixStream>,
    w: std::os::unix::net::UnixStream,
}

impl Qmp {
    fn connect(path: &std::path::Path) -> Result<Qmp, String> {
        let t = Instant::now();
        let s = loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if t.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("QMP {}: {e}", path.display())),
            }
        };
        let mut q = Qmp {
            r: std::io::BufReader::new(s.try_clone().map_err(|e| e.to_string())?),
            w: s,
        };
        q.line()?; // greeting
        q.cmd(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(q)
    }

    fn line(&mut self) -> Result<String, String> {
        use std::io::BufRead;
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) => Err("QMP closed".into()),
            Ok(_) => Ok(l),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends a command, returns its `return` (or `error`) line; events are skipped.
    fn cmd(&mut self, json: &str) -> Result<String, String> {
        self.w
            .write_all(format!("{json}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        loop {
            let l = self.line()?;
            if l.contains("\"error\"") {
                return Err(format!("QMP {json}: {}", l.trim()));
            }
            if l.contains("\"return\"") {
                return Ok(l);
            }
        }
    }
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qemu(args: &[String]) -> Result<Child, String> {
    std::process::Command::new("qemu-system-x86_64")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Child)
        .map_err(|e| format!("qemu-system-x86_64: {e}"))
}

/// One QEMU-to-QEMU migration of `size_mib` MiB of the random bytes in `file`; the time from
/// `migrate` until the destination reports `completed`.
fn qemu_once(
    size_mib: usize,
    file: &std::path::Path,
    multifd: bool,
    dir: &std::path::Path,
    warm: &dyn Fn(usize),
) -> Result<Duration, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let accel = if std::fs::File::open("/dev/kvm").is_ok() {
        "kvm"
    } else {
        "tcg"
    };
    let common = |qmp: &std::path::Path, backend: String| -> Vec<String> {
        vec![
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-accel".into(),
            accel.into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp.display()),
            "-m".into(),
            format!("{size_mib}M"),
            "-object".into(),
            backend,
            "-machine".into(),
            "pc-i440fx-7.2,memory-backend=ram0".into(),
            "-S".into(),
        ]
    };
    let dq = dir.join("dst.qmp");
    let sq = dir.join("src.qmp");
    let _ = std::fs::remove_file(&dq);
    let _ = std::fs::remove_file(&sq);
    let mut dargs = common(&dq, format!("memory-backend-ram,id=ram0,size={size_mib}M"));
    dargs.extend(["-incoming".into(), "defer".into()]);
    let _dst = qemu(&dargs)?;
    let sargs = common(
        &sq,
        format!(
            // prealloc: mapped before the clock starts, as our source's guest memory is.
            "memory-backend-file,id=ram0,size={size_mib}M,mem-path={},share=on,prealloc=on",
            file.display(),
        ),
    );
    let _src = qemu(&sargs)?;
    let mut d = Qmp::connect(&dq)?;
    let mut s = Qmp::connect(&sq)?;
    for q in [&mut d, &mut s] {
        if multifd {
            q.cmd(r#"{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"multifd","state":true}]}}"#)?;
            q.cmd(r#"{"execute":"migrate-set-parameters","arguments":{"multifd-channels":2}}"#)?;
        }
    }
    // QEMU 7.2 limits migration to 32 MiB/s unless told otherwise.
    s.cmd(r#"{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":107374182400}}"#)?;
    d.cmd(&format!(
        r#"{{"execute":"migrate-incoming","arguments":{{"uri":"tcp:127.0.0.1:{port}"}}}}"#
    ))?;
    warm(size_mib << 20);
    let t = Instant::now();
    s.cmd(&format!(
        r#"{{"execute":"migrate","arguments":{{"uri":"tcp:127.0.0.1:{port}"}}}}"#
    ))?;
    loop {
        let st = d.cmd(r#"{"execute":"query-migrate"}"#)?;
        if st.contains("\"completed\"") {
            let e = t.elapsed();
            let _ = s.cmd(r#"{"execute":"quit"}"#);
            let _ = d.cmd(r#"{"execute":"quit"}"#);
            return Ok(e);
        }
        if st.contains("\"failed\"") {
            return Err(format!("destination: {}", st.trim()));
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err("QEMU migration did not complete within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs QEMU's rows; returns the (min, median) of multifd with 2 channels.
fn qemu_bench(
    size_mib: usize,
    runs: usize,
    warm: &dyn Fn(usize),
) -> Result<(Duration, Duration), String> {
    let version = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    println!("{version}:");
    let dir = std::env::temp_dir().join(format!("ram-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let shm = std::path::Path::new("/dev/shm");
    let file = if shm.is_dir() { shm } else { dir.as_path() }
        .join(format!("ram-bench-{}.bin", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&file).map_err(|e| e.to_string())?;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..size_mib {
            for w in buf.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&buf).map_err(|e| e.to_string())?;
        }
        drop(f);
        let bytes = (size_mib as u64) << 20;
        let mut multifd_row = (Duration::ZERO, Duration::ZERO);
        for (what, multifd) in [
            ("QEMU, cold destination", false),
            ("QEMU multifd 2ch, cold destination", true),
        ] {
            let times = (0..runs)
                .map(|_| qemu_once(size_mib, &file, multifd, &dir, warm))
                .collect::<Result<Vec<_>, _>>()?;
            multifd_row = line(what, bytes, times, None);
        }
        Ok(multifd_row)
    })();
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

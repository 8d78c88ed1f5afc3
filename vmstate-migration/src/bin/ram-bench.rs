//! RAM migration benchmark (not a test).
//!
//! Prints: the throughput of one RAM pass (every page read from guest memory, zero-checked and
//! framed as PAGE records) next to a plain memcpy of the same amount of memory; and the time to
//! migrate guest RAM of random bytes over loopback TCP (source, `migrate`, destination `receive`
//! into guest memory, handshake) next to raw loopback TCP moving the same number of bytes.
//!
//! Usage: `cargo run --release -p vmstate-migration --bin ram-bench -- [--size MIB] [--cold]`
//! (default 256 MiB). By default the destination's guest memory is populated when the
//! destination VM is created ([`GuestRam::new_populated`]), and raw TCP receives into an equally
//! populated buffer of the same size; `--cold` uses fresh (unfaulted) destination memory and a
//! 1 MiB raw-TCP receive buffer instead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
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
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn main() {
    let mut size_mib = 256usize;
    let mut cold = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => {
                size_mib = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--size MIB");
            }
            "--cold" => cold = true,
            _ => {
                eprintln!("usage: ram-bench [--size MIB] [--cold]");
                std::process::exit(2);
            }
        }
    }
    let size = size_mib << 20;
    let bytes = size as u64;
    println!(
        "ram-bench: {size_mib} MiB of random guest RAM, 4 KiB pages{}",
        if cold {
            ", cold destination memory, raw TCP into a 1 MiB buffer"
        } else {
            ", destination memory populated at creation, raw TCP into an equally populated buffer"
        }
    );

    // 1. One RAM pass vs memcpy.
    let src = vm(size, false);
    random_fill(&src.ram, size);
    let (name, _) = src.ram.blocks()[0].clone();
    let region = src.ram.memory().iter().next().expect("region");
    let mut best_pass = Duration::MAX;
    for _ in 0..3 {
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
        best_pass = best_pass.min(t.elapsed());
    }
    let from = vec![1u8; size];
    let mut to = vec![0u8; size];
    to.copy_from_slice(&from); // fault the pages in
    let mut best_copy = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        to.copy_from_slice(std::hint::black_box(&from));
        std::hint::black_box(&to);
        best_copy = best_copy.min(t.elapsed());
    }
    drop((from, to));
    println!(
        "RAM pass:  {:>8.2?} = {:6.2} GB/s | memcpy: {:>8.2?} = {:6.2} GB/s | ratio {:.0}%",
        best_pass,
        gbps(bytes, best_pass),
        best_copy,
        gbps(bytes, best_copy),
        100.0 * best_copy.as_secs_f64() / best_pass.as_secs_f64()
    );

    // 2. Raw loopback TCP, best of 3.
    let raw = (0..3).map(|_| raw_tcp(bytes, !cold)).min().expect("runs");

    // 3. Migration over loopback TCP into one destination, 3 times: with `--cold` the first run
    //    also faults the destination's memory in; the best run is reported too.
    let mut dst = vm(size, !cold);
    let mut src = src;
    let mut runs = Vec::new();
    for _ in 0..3 {
        src.ram.clear_dirty();
        let (d, report) = migrate_once(&mut src, dst);
        dst = d;
        runs.push(report);
    }
    let first = &runs[0];
    let best = runs.iter().min_by_key(|r| r.total_time).expect("runs");
    println!(
        "raw TCP:   {:>8.2?} = {:6.2} GB/s (best of 3)",
        raw,
        gbps(bytes, raw)
    );
    for (what, r) in [("first", first), ("best", best)] {
        println!(
            "migration: {:>8.2?} = {:6.2} GB/s ({what} of 3; {} stream bytes, downtime {:.2?}) | ratio to raw TCP {:.0}%",
            r.total_time,
            gbps(bytes, r.total_time),
            r.bytes,
            r.downtime,
            100.0 * raw.as_secs_f64() / r.total_time.as_secs_f64()
        );
    }
    let same = dst.ram.snapshot().expect("snapshot") == src.ram.snapshot().expect("snapshot");
    println!("destination memory equals source: {same}");
}

/// Sends `bytes` over loopback TCP; the receiver reads into a populated buffer of `bytes` bytes
/// (`populated`, like a populated destination's guest memory) or a 1 MiB buffer.
fn raw_tcp(bytes: u64, populated: bool) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = std::thread::spawn(move || {
        let len = if populated {
            usize::try_from(bytes).expect("size")
        } else {
            1 << 20
        };
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
        n
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
    assert_eq!(rx.join().expect("rx"), bytes);
    t.elapsed()
}

fn migrate_once(src: &mut Vm, dst: Vm) -> (Vm, vmstate_migration::Report) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let rx = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut d = dst;
        receive(&mut d, &mut s, &ReceiveSettings::default()).expect("destination");
        d
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    let settings = Settings {
        max_passes: 1,
        ..Settings::default()
    };
    let report = migrate(src, &mut s, &settings).expect("migration");
    (rx.join().expect("rx"), report)
}

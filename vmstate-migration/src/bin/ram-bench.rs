//! RAM migration benchmark (not a test).
//!
//! Prints: the throughput of one RAM pass (every page read from guest memory, zero-checked and
//! framed as PAGE records) next to a plain memcpy of the same amount of memory; and the time to
//! migrate guest RAM of random bytes over loopback TCP (source, `migrate`, destination `receive`
//! into guest memory, ack) next to raw loopback TCP moving the same number of bytes.
//!
//! Usage: `cargo run --release -p vmstate-migration --bin ram-bench -- [--size MIB] [--prefault]` (default
//! 256 MiB; `--prefault` touches the destination's guest memory before migrating).

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

impl MigrationSource for Vm {
    fn ram(&self) -> &GuestRam {
        &self.ram
    }
    fn registry(&self) -> &Registry {
        &self.registry
    }
    fn machine(&self) -> &MachineType {
        &self.machine
    }
    fn stop_vcpus(&mut self) {}
    fn resume_vcpus(&mut self) {}
}

impl MigrationDestination for Vm {
    fn ram(&self) -> &GuestRam {
        &self.ram
    }
    fn registry(&self) -> &Registry {
        &self.registry
    }
    fn machine(&self) -> &MachineType {
        &self.machine
    }
    fn resume(&mut self) {}
}

fn vm(size: usize) -> Vm {
    Vm {
        ram: GuestRam::new(&[("pc.ram", 0, size)]).expect("guest memory"),
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
    let mut prefault = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => {
                size_mib = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--size MIB");
            }
            "--prefault" => prefault = true,
            _ => {
                eprintln!("usage: ram-bench [--size MIB] [--prefault]");
                std::process::exit(2);
            }
        }
    }
    let size = size_mib << 20;
    let bytes = size as u64;
    println!(
        "ram-bench: {size_mib} MiB of random guest RAM, 4 KiB pages{}",
        if prefault {
            ", destination memory prefaulted"
        } else {
            ""
        }
    );

    // 1. One RAM pass vs memcpy.
    let src = vm(size);
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
    let raw = (0..3).map(|_| raw_tcp(bytes)).min().expect("runs");

    // 3. Migration over loopback TCP into one destination, 3 times: the first run also faults
    //    the destination's memory in (unless --prefault), the best run is reported too.
    let mut dst = vm(size);
    if prefault {
        // Fault the destination's memory in first, as a VMM that preallocates guest RAM does.
        let zeros = vec![0u8; 1 << 20];
        for off in (0..size).step_by(zeros.len()) {
            dst.ram
                .memory()
                .write_slice(&zeros, GuestAddress(off as u64))
                .expect("prefault");
        }
    }
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

fn raw_tcp(bytes: u64) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let rx = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => panic!("{e}"),
            }
        }
        n
    });
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

//! Shared test harness: a software guest that dirties memory with a per-page counter pattern,
//! source and destination VMs, a small derived device.
#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};
use vmstate_migration::{
    receive, GuestRam, MigrationDestination, MigrationSource, ReceiveSettings, Report, Transport,
    PAGE_SIZE,
};
use vmstate_runtime::{MachineCatalog, MachineType, Registry, VmState};

/// A small device; the guest bumps `ticks` on every sweep of its memory.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "testdev", version = 2)]
pub struct TestDev {
    pub ticks: u64,
    pub ctrl: u32,
    pub flags: u8,
}

pub const RAM_BASE: u64 = 0;
pub const BIOS_BASE: u64 = 0xfff0_0000;

/// The block layout: pc.ram (dirtied by the guest), pc.bios (constant), pc.rom (zero).
pub fn layout(ram_mib: usize) -> Vec<(&'static str, u64, usize)> {
    vec![
        ("pc.ram", RAM_BASE, ram_mib << 20),
        ("pc.rom", 0xc000_0000, 128 << 10),
        ("pc.bios", BIOS_BASE, 64 << 10),
    ]
}

pub fn machine() -> MachineType {
    MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap()
}

/// Control block shared with the guest thread.
#[derive(Default)]
pub struct GuestCtl {
    pub pause: AtomicBool,
    pub parked: AtomicBool,
    pub quit: AtomicBool,
    pub throttle: AtomicU8,
    /// Pages written so far (progress).
    pub progress: AtomicU64,
}

pub struct SourceVm {
    pub ram: GuestRam,
    pub registry: Registry,
    pub machine: MachineType,
    pub dev: Arc<Mutex<TestDev>>,
    pub ctl: Arc<GuestCtl>,
    pub guest: Option<JoinHandle<()>>,
    pub stops: u32,
    pub resumes: u32,
    pub throttles: Vec<u8>,
}

/// Value the guest writes at the start of page `page` in sweep `gen`.
pub fn pattern(gen: u64, page: u64) -> u64 {
    (gen << 32) | page | 1 << 63
}

impl SourceVm {
    /// A VM whose pc.ram is filled with sweep 0 of the pattern (no zero pages) and whose guest
    /// thread runs when `touch_device` (ticks on each sweep) or not.
    pub fn new(ram_mib: usize, touch_device: bool) -> Self {
        let ram = GuestRam::new(&layout(ram_mib)).unwrap();
        let pages = (ram_mib as u64) << 20 >> 12;
        for p in 0..pages {
            ram.memory()
                .write_obj(pattern(0, p), GuestAddress(RAM_BASE + p * PAGE_SIZE))
                .unwrap();
        }
        let bios: Vec<u8> = (0..64u32 << 10).map(|i| (i * 7 + 3) as u8).collect();
        ram.memory()
            .write_slice(&bios, GuestAddress(BIOS_BASE))
            .unwrap();
        let dev = Arc::new(Mutex::new(TestDev {
            ticks: 0,
            ctrl: 0xdead_beef,
            flags: 0x5a,
        }));
        let mut registry = Registry::new();
        registry.register(Arc::clone(&dev)).unwrap();
        let ctl = Arc::new(GuestCtl::default());
        let guest = {
            let mem = ram.memory().clone();
            let ctl = Arc::clone(&ctl);
            let dev = Arc::clone(&dev);
            std::thread::spawn(move || guest_loop(&mem, pages, &ctl, &dev, touch_device))
        };
        SourceVm {
            ram,
            registry,
            machine: machine(),
            dev,
            ctl,
            guest: Some(guest),
            stops: 0,
            resumes: 0,
            throttles: Vec::new(),
        }
    }

    /// Waits until the guest made `n` more page writes (proves it runs).
    pub fn wait_progress(&self, n: u64) {
        let start = self.ctl.progress.load(Ordering::SeqCst);
        let t0 = Instant::now();
        while self.ctl.progress.load(Ordering::SeqCst) < start + n {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the source guest is not running"
            );
            std::thread::yield_now();
        }
    }

    pub fn shutdown(&mut self) {
        self.ctl.quit.store(true, Ordering::SeqCst);
        self.ctl.pause.store(false, Ordering::SeqCst);
        if let Some(g) = self.guest.take() {
            g.join().unwrap();
        }
    }
}

impl Drop for SourceVm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The software guest: sweeps pc.ram writing `pattern(gen, page)` at the start of every page,
/// through vm-memory (so the dirty bitmap sees it); `gen` grows by one per sweep.
fn guest_loop(
    mem: &vmstate_migration::GuestMem,
    pages: u64,
    ctl: &GuestCtl,
    dev: &Mutex<TestDev>,
    touch_device: bool,
) {
    let mut gen = 1u64;
    loop {
        for p in 0..pages {
            while ctl.pause.load(Ordering::SeqCst) {
                ctl.parked.store(true, Ordering::SeqCst);
                if ctl.quit.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            ctl.parked.store(false, Ordering::SeqCst);
            if ctl.quit.load(Ordering::SeqCst) {
                return;
            }
            mem.write_obj(pattern(gen, p), GuestAddress(RAM_BASE + p * PAGE_SIZE))
                .unwrap();
            ctl.progress.fetch_add(1, Ordering::SeqCst);
            let t = ctl.throttle.load(Ordering::Relaxed);
            if p % 64 == 0 {
                // A guest that is not flat out: ~64 pages per 20 µs, slower when throttled.
                std::thread::sleep(Duration::from_micros(20 + u64::from(t) * 5));
            }
        }
        if touch_device {
            dev.lock().unwrap().ticks = gen;
        }
        gen += 1;
    }
}

vmstate_migration::impl_vm_parts!(SourceVm);

impl MigrationSource for SourceVm {
    fn stop_vcpus(&mut self) {
        self.stops += 1;
        self.ctl.pause.store(true, Ordering::SeqCst);
        while !self.ctl.parked.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }
    fn resume_vcpus(&mut self) {
        self.resumes += 1;
        self.ctl.parked.store(false, Ordering::SeqCst);
        self.ctl.pause.store(false, Ordering::SeqCst);
    }
    fn throttle(&mut self, percent: u8) {
        self.throttles.push(percent);
        self.ctl.throttle.store(percent, Ordering::SeqCst);
    }
}

pub struct DestVm {
    pub ram: GuestRam,
    pub registry: Registry,
    pub machine: MachineType,
    pub dev: Arc<Mutex<TestDev>>,
    pub resumed: bool,
}

/// The device value a destination starts with (so "nothing applied" is visible).
pub fn dest_sentinel() -> TestDev {
    TestDev {
        ticks: 999,
        ctrl: 1,
        flags: 2,
    }
}

impl DestVm {
    pub fn new(ram_mib: usize) -> Self {
        let dev = Arc::new(Mutex::new(dest_sentinel()));
        let mut registry = Registry::new();
        registry.register(Arc::clone(&dev)).unwrap();
        DestVm {
            ram: GuestRam::new(&layout(ram_mib)).unwrap(),
            registry,
            machine: machine(),
            dev,
            resumed: false,
        }
    }
}

vmstate_migration::impl_vm_parts!(DestVm);

impl MigrationDestination for DestVm {
    fn resume(&mut self) {
        self.resumed = true;
    }
}

/// What a destination thread ends with: the VM and what `receive` returned.
pub type Received = (DestVm, vmstate_migration::Result<Report>);

/// Receives into `dst` over `t` (default settings) on a new thread.
pub fn spawn_receive<T: Transport + Send + 'static>(
    mut dst: DestVm,
    mut t: T,
) -> JoinHandle<Received> {
    std::thread::spawn(move || {
        let r = receive(&mut dst, &mut t, &ReceiveSettings::default());
        (dst, r)
    })
}

/// On a new thread, accepts one connection on `listener` and receives over it into a new
/// destination of `ram_mib` MiB, with stream reads timing out after `read_timeout`; page
/// channels, if the source opens any, are accepted on the same listener.
pub fn spawn_receive_accepting(
    listener: TcpListener,
    ram_mib: usize,
    read_timeout: Duration,
) -> JoinHandle<Received> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut dst = DestVm::new(ram_mib);
        // The same listener takes the page channels of a multi-channel migration.
        let settings = ReceiveSettings {
            read_timeout: Some(read_timeout),
            channels: Some(vmstate_migration::ChannelListener::Tcp(
                std::sync::Arc::new(listener),
            )),
            ..ReceiveSettings::default()
        };
        let r = receive(&mut dst, &mut s, &settings);
        (dst, r)
    })
}

/// QEMU migration-test style check: every pc.ram page holds `pattern(g, p)` for pages before
/// some index and `pattern(g - 1, p)` after it (one sweep in progress); returns the generation.
pub fn check_pattern(ram: &GuestRam) -> u64 {
    let snap = ram.snapshot().unwrap();
    let (_, bytes) = snap.iter().find(|(n, _)| n == "pc.ram").unwrap();
    let vals: Vec<u64> = bytes
        .chunks(PAGE_SIZE as usize)
        .map(|p| u64::from_le_bytes(p[..8].try_into().unwrap()))
        .collect();
    let gen_of = |v: u64| (v & !(1 << 63)) >> 32;
    let top = gen_of(vals[0]);
    let split = vals
        .iter()
        .position(|&v| gen_of(v) != top)
        .unwrap_or(vals.len());
    for (p, &v) in vals.iter().enumerate() {
        assert_eq!(
            v & 0xffff_ffff,
            p as u64,
            "page {p} holds another page's value {v:#x}"
        );
        let want = if p < split { top } else { top.wrapping_sub(1) };
        assert_eq!(
            gen_of(v),
            want,
            "page {p}: not one consistent sweep (first page: generation {top})"
        );
    }
    top
}

/// What [`Damaging`] does once, at the first write holding its signature: flip the byte `at`
/// bytes after the signature's start, or drop `n` bytes from there.
#[derive(Clone, Copy, Debug)]
pub enum Damage {
    Flip { at: usize },
    Drop { at: usize, n: usize },
}

/// A socket that damages what is written through it (a bad NIC, a buggy proxy); the stream may
/// stay well-formed while its content does not.
pub struct Damaging {
    pub s: std::os::unix::net::UnixStream,
    pub signature: Option<Vec<u8>>,
    pub damage: Damage,
}

impl std::io::Read for Damaging {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.s.read(buf)
    }
}

impl std::io::Write for Damaging {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut v = buf.to_vec();
        if let Some(sig) = &self.signature {
            if let Some(i) = v.windows(sig.len()).position(|w| w == sig.as_slice()) {
                let at = i + match self.damage {
                    Damage::Flip { at } | Damage::Drop { at, .. } => at,
                };
                if at < v.len() {
                    match self.damage {
                        Damage::Flip { .. } => v[at] ^= 0x40,
                        Damage::Drop { n, .. } => {
                            v.drain(at..(at + n).min(v.len()));
                        }
                    }
                    self.signature = None;
                }
            }
        }
        self.s.write_all(&v)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

impl Transport for Damaging {
    fn finish_stream(&mut self) -> std::io::Result<()> {
        self.s.finish_stream()
    }
    fn set_timeout(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        Transport::set_timeout(&mut self.s, timeout)
    }
}

/// The first bytes of pc.bios (written once, never dirtied, so sent in pass 0 only): byte `i`
/// is `i * 7 + 3`.
pub fn bios_signature() -> Vec<u8> {
    (0..32u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// What [`migrate_damaged`] ends with.
pub struct Outcome {
    pub src: SourceVm,
    pub r: vmstate_migration::Result<Report>,
    pub dst: DestVm,
    pub dr: vmstate_migration::Result<Report>,
}

/// Migrates a running 8 MiB guest into a new destination over a socket pair through a
/// [`Damaging`] transport (`damage`: its signature and what it does; `None` = no damage), with
/// `settings` and `receive` (the downtime target and timeouts are set here).
pub fn migrate_damaged(
    settings: vmstate_migration::Settings,
    receive_settings: ReceiveSettings,
    damage: Option<(Vec<u8>, Damage)>,
) -> Outcome {
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut src = SourceVm::new(8, true);
    src.wait_progress(2000);
    let dest = std::thread::spawn(move || {
        let mut dst = DestVm::new(8);
        let settings = ReceiveSettings {
            read_timeout: Some(Duration::from_secs(10)),
            ..receive_settings
        };
        let r = receive(&mut dst, &mut b, &settings);
        (dst, r)
    });
    let settings = vmstate_migration::Settings {
        downtime: Duration::from_millis(20),
        ack_timeout: Duration::from_secs(10),
        ..settings
    };
    let (signature, damage) = match damage {
        Some((s, d)) => (Some(s), d),
        None => (None, Damage::Flip { at: 0 }),
    };
    let mut t = Damaging {
        s: a,
        signature,
        damage,
    };
    let r = vmstate_migration::migrate(&mut src, &mut t, &settings);
    drop(t);
    let (dst, dr) = dest.join().unwrap();
    Outcome { src, r, dst, dr }
}

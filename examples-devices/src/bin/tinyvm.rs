//! `tinyvm`: live-migrate a running guest back and forth between two processes.
//!
//! ```text
//! tinyvm pingpong --count 100            # KVM when /dev/kvm opens (feature `kvm`), else software
//! tinyvm pingpong --count 5 --soft       # the software guest (a thread dirtying vm-memory RAM)
//! tinyvm serve --kvm                     # a child: prints `READY <port>`, then obeys stdin lines
//! ```
//!
//! `pingpong` spawns two `serve` children on 127.0.0.1 ephemeral ports, starts the guest in one
//! and migrates it live (precopy over loopback TCP, `vmstate-migration`) N times, swapping
//! roles every hop. After each hop it checks that the destination loaded exactly the memory the
//! source stopped with (pattern state and hash), that the guest made progress since the previous
//! hop, and that the serial output, concatenated over hops, is `A` then only `B`s, as many as
//! the pattern's passes. Exit status 1 on any inconsistency.
//!
//! Child protocol (one line each way): `START` → `OK`; `RECV [corrupt]` → `RECEIVED <passes> <pages_done>
//! <hash> <bytes>`; `SEND <port>` → `SENT <passes> <pages_done> <hash> <bytes> <ram passes>
//! <downtime µs> <total µs> <serial output or ->`; `STATUS` → `STATUS <passes> <pages_done>
//! <hash> <output or ->`; `QUIT`. Failures answer `FAIL <message>`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use examples_devices::SerialSection;
use vm_memory::{Bytes, GuestAddress};
use vmstate_migration::{
    migrate, receive, GuestRam, MigrationDestination, MigrationSource, ReceiveSettings, Report,
    Settings,
};
use vmstate_runtime::{MachineType, Registry};

// The pattern and output checks are plain code (no KVM): shared with the library's
// `tinyvm::guest`, which only exists with the `kvm` feature.
#[allow(dead_code)]
#[path = "../tinyvm/guest.rs"]
mod guest;

use guest::{check_output, check_pattern, counters, PatternState, FIRST_PATTERN_PAGE, RAM_SIZE};

#[derive(Parser)]
#[command(
    name = "tinyvm",
    about = "Live migration of a running tiny guest between two processes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone, Copy)]
struct ModeArgs {
    /// Run the KVM guest (needs the `kvm` feature and /dev/kvm).
    #[arg(long, conflicts_with = "soft")]
    kvm: bool,
    /// Run the software guest.
    #[arg(long)]
    soft: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Migrate the running guest back and forth between two child processes.
    Pingpong {
        /// Number of hops.
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Milliseconds the guest runs on each side before the next hop.
        #[arg(long, default_value_t = 20)]
        run_ms: u64,
        /// Fault injection (to see the checks fail): the destination of this hop flips a byte
        /// of the RAM it received before starting the guest.
        #[arg(long)]
        corrupt_hop: Option<u32>,
        #[command(flatten)]
        mode: ModeArgs,
    },
    /// Run the guest for a while, then migrate it into a stream file (QEMU's format, RAM
    /// included: `analyze-migration.py -f FILE` decodes it).
    Save {
        /// Output file.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Milliseconds the guest runs before the migration starts.
        #[arg(long, default_value_t = 50)]
        run_ms: u64,
        #[command(flatten)]
        mode: ModeArgs,
    },
    /// A child of `pingpong` (line protocol on stdin/stdout).
    Serve {
        #[command(flatten)]
        mode: ModeArgs,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Kvm,
    Soft,
}

impl Mode {
    fn flag(self) -> &'static str {
        match self {
            Mode::Kvm => "--kvm",
            Mode::Soft => "--soft",
        }
    }
}

fn kvm_opens() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm: {e}"))
}

fn pick_mode(m: ModeArgs) -> Result<(Mode, String), String> {
    if m.soft {
        return Ok((Mode::Soft, "software guest (--soft)".into()));
    }
    let kvm_built = cfg!(feature = "kvm");
    if m.kvm {
        if !kvm_built {
            return Err("--kvm: this tinyvm was built without the `kvm` feature".into());
        }
        kvm_opens()?;
        return Ok((Mode::Kvm, "KVM guest (--kvm)".into()));
    }
    if !kvm_built {
        return Ok((
            Mode::Soft,
            "software guest (built without the `kvm` feature)".into(),
        ));
    }
    match kvm_opens() {
        Ok(()) => Ok((Mode::Kvm, "KVM guest (/dev/kvm opens)".into())),
        Err(e) => Ok((Mode::Soft, format!("software guest ({e})"))),
    }
}

fn machine() -> MachineType {
    examples_devices::catalog()
        .resolve("pc-i440fx-7.2")
        .expect("pc-i440fx-7.2 is in the catalog")
}

fn settings() -> Settings {
    Settings {
        downtime: Duration::from_millis(50),
        max_passes: 10,
        ack_timeout: Duration::from_secs(20),
        ..Settings::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Checks shared by both guests
// ---------------------------------------------------------------------------------------------

/// What a side saw of guest memory while the guest was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    state: PatternState,
    hash: u64,
}

fn ram_hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for c in bytes.chunks_exact(8) {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17);
    }
    h
}

fn inspect(ram: &GuestRam) -> Result<Seen, String> {
    let snap = ram.snapshot().map_err(|e| e.to_string())?;
    let bytes = &snap.first().ok_or_else(|| "no RAM block".to_owned())?.1;
    if bytes.len() < RAM_SIZE {
        return Err(format!("RAM block of {} bytes", bytes.len()));
    }
    let state = check_pattern(&counters(bytes)).map_err(|e| e.to_string())?;
    Ok(Seen {
        state,
        hash: ram_hash(bytes),
    })
}

// ---------------------------------------------------------------------------------------------
// The software guest
// ---------------------------------------------------------------------------------------------

/// A thread that walks the pattern pages of a vm-memory `GuestRam` like the KVM guest does and
/// prints through the example UART: `A` once, then a `B` per pass.
struct SoftGuest {
    ram: GuestRam,
    registry: Registry,
    machine: MachineType,
    serial: Arc<Mutex<SerialSection>>,
    quit: Arc<AtomicBool>,
    throttle: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

fn putc(serial: &Mutex<SerialSection>, b: u8) {
    let mut s = serial.lock().unwrap_or_else(PoisonError::into_inner);
    // Poll LSR.THRE (it is set again as soon as the byte went out), then write THR.
    for _ in 0..1000 {
        if s.state.io_read(5) & 0x20 != 0 {
            break;
        }
    }
    s.state.io_write(0, b);
}

impl SoftGuest {
    /// `populated`: a migration destination, whose RAM is faulted in at creation.
    fn new(populated: bool) -> Result<Self, String> {
        let blocks = [("pc.ram", 0, RAM_SIZE)];
        let ram = if populated {
            GuestRam::new_populated(&blocks)
        } else {
            GuestRam::new(&blocks)
        }
        .map_err(|e| e.to_string())?;
        let serial = Arc::new(Mutex::new(SerialSection::default()));
        let mut registry = Registry::new();
        registry
            .register(Arc::clone(&serial))
            .map_err(|e| e.to_string())?;
        Ok(SoftGuest {
            ram,
            registry,
            machine: machine(),
            serial,
            quit: Arc::new(AtomicBool::new(false)),
            throttle: Arc::new(AtomicU8::new(0)),
            thread: None,
        })
    }

    fn run(&mut self, fresh: bool) {
        if self.thread.is_some() {
            return;
        }
        self.quit.store(false, Ordering::Release);
        let (mem, serial) = (self.ram.memory().clone(), Arc::clone(&self.serial));
        let (quit, throttle) = (Arc::clone(&self.quit), Arc::clone(&self.throttle));
        self.thread = Some(std::thread::spawn(move || {
            if fresh {
                putc(&serial, b'A');
            }
            while !quit.load(Ordering::Acquire) {
                for page in FIRST_PATTERN_PAGE..RAM_SIZE / guest::PAGE_SIZE {
                    let at = GuestAddress((page * guest::PAGE_SIZE) as u64);
                    let v: u32 = mem.read_obj(at).unwrap_or(0);
                    let _ = mem.write_obj(v.wrapping_add(1), at);
                }
                putc(&serial, b'B');
                let t = u64::from(throttle.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_micros(200 + 20 * t));
            }
        }));
    }

    fn stop(&mut self) {
        self.quit.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn take_output(&self) -> Vec<u8> {
        self.serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
            .take_tx_output()
    }
}

impl MigrationSource for SoftGuest {
    fn ram(&self) -> &GuestRam {
        &self.ram
    }
    fn registry(&self) -> &Registry {
        &self.registry
    }
    fn machine(&self) -> &MachineType {
        &self.machine
    }
    fn stop_vcpus(&mut self) {
        self.stop();
    }
    fn resume_vcpus(&mut self) {
        self.run(false);
    }
    fn throttle(&mut self, percent: u8) {
        self.throttle.store(percent, Ordering::Relaxed);
    }
}

/// The software guest being received; `resume` records what it loaded, then starts it.
struct SoftDest {
    guest: SoftGuest,
    seen: Option<Result<Seen, String>>,
    corrupt: bool,
}

/// Fault injection: flips a byte of page 100 that is not a counter (the pattern stays valid,
/// the memory no longer matches the source's).
fn corrupt(ram: &GuestRam) {
    let at = GuestAddress(100 * guest::PAGE_SIZE as u64 + 100);
    let b: u8 = ram.memory().read_obj(at).unwrap_or(0);
    let _ = ram.memory().write_obj(!b, at);
}

impl MigrationDestination for SoftDest {
    fn ram(&self) -> &GuestRam {
        &self.guest.ram
    }
    fn registry(&self) -> &Registry {
        &self.guest.registry
    }
    fn machine(&self) -> &MachineType {
        &self.guest.machine
    }
    fn resume(&mut self) {
        if self.corrupt {
            corrupt(&self.guest.ram);
        }
        self.seen = Some(inspect(&self.guest.ram));
        self.guest.run(false);
    }
}

// ---------------------------------------------------------------------------------------------
// A child: the guest it holds, if any
// ---------------------------------------------------------------------------------------------

// One per child process; without the `kvm` feature the soft guest is the only large variant.
#[allow(clippy::large_enum_variant)]
enum Held {
    None,
    Soft(SoftGuest),
    #[cfg(feature = "kvm")]
    Kvm(examples_devices::tinyvm::live::KvmSource),
}

fn out_str(out: &[u8]) -> String {
    if out.is_empty() {
        "-".into()
    } else {
        out.iter()
            .map(|&b| {
                if b.is_ascii_graphic() {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect()
    }
}

fn fmt_seen(s: Seen) -> String {
    format!("{} {} {:016x}", s.state.passes, s.state.pages_done, s.hash)
}

struct Child1 {
    mode: Mode,
    listener: TcpListener,
    held: Held,
}

impl Child1 {
    fn start(&mut self) -> Result<String, String> {
        if !matches!(self.held, Held::None) {
            return Err("a guest is running here already".into());
        }
        match self.mode {
            Mode::Soft => {
                let mut g = SoftGuest::new(false)?;
                g.run(true);
                self.held = Held::Soft(g);
            }
            Mode::Kvm => self.start_kvm()?,
        }
        Ok("OK".into())
    }

    #[cfg(feature = "kvm")]
    fn start_kvm(&mut self) -> Result<(), String> {
        use examples_devices::tinyvm::{live::KvmSource, Vm};
        let vm = Vm::new().map_err(|e| e.to_string())?;
        self.held = Held::Kvm(KvmSource::start(vm, machine()).map_err(|e| e.to_string())?);
        Ok(())
    }

    #[cfg(not(feature = "kvm"))]
    fn start_kvm(&mut self) -> Result<(), String> {
        Err("built without the `kvm` feature".into())
    }

    fn accept(&self) -> Result<TcpStream, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        self.listener
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).map_err(|e| e.to_string())?;
                    s.set_nodelay(true).map_err(|e| e.to_string())?;
                    return Ok(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("no source connected within 30 s".into());
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn recv(&mut self, corrupt: bool) -> Result<String, String> {
        if !matches!(self.held, Held::None) {
            return Err("a guest is running here already".into());
        }
        match self.mode {
            Mode::Soft => {
                // The destination VM exists before the source connects (no setup in downtime).
                let mut d = SoftDest {
                    guest: SoftGuest::new(true)?,
                    seen: None,
                    corrupt,
                };
                let mut t = self.accept()?;
                let r = receive(&mut d, &mut t, &ReceiveSettings::default())
                    .map_err(|e| e.to_string())?;
                let seen = d.seen.take().ok_or("not resumed")??;
                self.held = Held::Soft(d.guest);
                Ok(format!("RECEIVED {} {}", fmt_seen(seen), r.bytes))
            }
            Mode::Kvm => self.recv_kvm(corrupt),
        }
    }

    #[cfg(feature = "kvm")]
    fn recv_kvm(&mut self, corrupt_ram: bool) -> Result<String, String> {
        use examples_devices::tinyvm::live::KvmDest;
        // The destination VM exists before the source connects (no setup in downtime).
        let mut d = KvmDest::new(machine()).map_err(|e| e.to_string())?;
        let seen = Arc::new(Mutex::new(None));
        let (s2, ram) = (Arc::clone(&seen), d.ram().clone());
        d.before_start = Some(Box::new(move |_vm| {
            if corrupt_ram {
                corrupt(&ram);
            }
            *s2.lock().unwrap_or_else(PoisonError::into_inner) = Some(inspect(&ram));
        }));
        let mut t = self.accept()?;
        let r = receive(&mut d, &mut t, &ReceiveSettings::default()).map_err(|e| e.to_string())?;
        let src = d
            .started
            .take()
            .ok_or("not resumed")?
            .map_err(|e| format!("restoring the guest after the ack: {e}"))?;
        self.held = Held::Kvm(src);
        let seen = seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or("no check before start")??;
        Ok(format!("RECEIVED {} {}", fmt_seen(seen), r.bytes))
    }

    #[cfg(not(feature = "kvm"))]
    fn recv_kvm(&mut self, _corrupt: bool) -> Result<String, String> {
        Err("built without the `kvm` feature".into())
    }

    fn send(&mut self, port: u16) -> Result<String, String> {
        let mut t = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        t.set_nodelay(true).map_err(|e| e.to_string())?;
        self.send_over(&mut t)
    }

    /// Migrates the guest held here over `t` (TCP for a hop, a file for `save`).
    fn send_over<T: vmstate_migration::transport::Transport>(
        &mut self,
        t: &mut T,
    ) -> Result<String, String> {
        let t = &mut *t;
        let s = settings();
        let (report, seen, out): (Report, Seen, Vec<u8>) =
            match std::mem::replace(&mut self.held, Held::None) {
                Held::None => return Err("no guest here".into()),
                Held::Soft(mut g) => match migrate(&mut g, t, &s) {
                    Ok(r) => (r, inspect(&g.ram)?, g.take_output()),
                    Err(e) => {
                        self.held = Held::Soft(g);
                        return Err(e.to_string());
                    }
                },
                #[cfg(feature = "kvm")]
                Held::Kvm(mut g) => match migrate(&mut g, t, &s) {
                    Ok(r) => {
                        let seen = inspect(g.ram())?;
                        let out = g
                            .vm()
                            .map_err(|e| e.to_string())?
                            .serial
                            .state
                            .take_tx_output();
                        drop(g.into_vm());
                        (r, seen, out)
                    }
                    Err(e) => {
                        self.held = Held::Kvm(g);
                        return Err(e.to_string());
                    }
                },
            };
        Ok(format!(
            "SENT {} {} {} {} {} {}",
            fmt_seen(seen),
            report.bytes,
            report.passes.len(),
            report.downtime.as_micros(),
            report.total_time.as_micros(),
            out_str(&out)
        ))
    }

    fn status(&mut self) -> Result<String, String> {
        let (seen, out) = match &mut self.held {
            Held::None => return Err("no guest here".into()),
            Held::Soft(g) => {
                g.stop();
                let r = (inspect(&g.ram), g.take_output());
                g.run(false);
                r
            }
            #[cfg(feature = "kvm")]
            Held::Kvm(g) => {
                let out = g
                    .vm()
                    .map_err(|e| e.to_string())?
                    .serial
                    .state
                    .take_tx_output();
                let seen = inspect(g.ram());
                g.run();
                (seen, out)
            }
        };
        Ok(format!("STATUS {} {}", fmt_seen(seen?), out_str(&out)))
    }
}

fn serve(mode: Mode) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut me = Child1 {
        mode,
        listener,
        held: Held::None,
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY {port}").map_err(|e| e.to_string())?;
    stdout.flush().map_err(|e| e.to_string())?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next()) {
            (Some("START"), _) => me.start(),
            (Some("RECV"), w) => me.recv(w == Some("corrupt")),
            (Some("SEND"), Some(p)) => p
                .parse()
                .map_err(|e| format!("port {p}: {e}"))
                .and_then(|p| me.send(p)),
            (Some("STATUS"), _) => me.status(),
            (Some("QUIT"), _) => break,
            _ => Err(format!("unknown command {line:?}")),
        };
        let answer = answer.unwrap_or_else(|e| format!("FAIL {}", e.replace('\n', " ")));
        writeln!(stdout, "{answer}").map_err(|e| e.to_string())?;
        stdout.flush().map_err(|e| e.to_string())?;
    }
    if let Held::Soft(g) = &mut me.held {
        g.stop();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------------------------

struct Proc {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Proc {
    fn spawn(name: &'static str, mode: Mode) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["serve", mode.flag()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {name}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut p = Proc {
            name,
            child,
            stdin,
            stdout,
            port: 0,
        };
        let ready = p.read()?;
        p.port = ready
            .strip_prefix("READY ")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{name}: unexpected first line {ready:?}"))?;
        Ok(p)
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("{}: {e}", self.name))
    }

    fn read(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match self.stdout.read_line(&mut s) {
            Ok(0) => Err(format!("{}: exited", self.name)),
            Ok(_) => Ok(s.trim_end().to_owned()),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    fn ask(&mut self, line: &str, want: &str) -> Result<Vec<String>, String> {
        self.send(line)?;
        self.answer(want)
    }

    fn answer(&mut self, want: &str) -> Result<Vec<String>, String> {
        let a = self.read()?;
        let mut w: Vec<String> = a.split(' ').map(str::to_owned).collect();
        if w.first().map(String::as_str) != Some(want) {
            return Err(format!("{}: {a}", self.name));
        }
        w.remove(0);
        Ok(w)
    }
}

fn parse_seen(w: &[String]) -> Result<Seen, String> {
    let bad = || format!("bad state in {w:?}");
    Ok(Seen {
        state: PatternState {
            passes: w.first().and_then(|s| s.parse().ok()).ok_or_else(bad)?,
            pages_done: w.get(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?,
        },
        hash: w
            .get(2)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(bad)?,
    })
}

fn num(w: &[String], i: usize) -> Result<u64, String> {
    w.get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("field {i} missing in {w:?}"))
}

fn out_bytes(s: Option<&String>) -> Vec<u8> {
    match s.map(String::as_str) {
        None | Some("-") => Vec::new(),
        Some(s) => s.as_bytes().to_vec(),
    }
}

struct Stats {
    downtimes: Vec<Duration>,
    totals: Vec<Duration>,
    bytes: u64,
    inconsistencies: u32,
}

fn pingpong(
    count: u32,
    run_ms: u64,
    corrupt_hop: Option<u32>,
    mode: Mode,
) -> Result<Stats, String> {
    let mut procs = [Proc::spawn("A", mode)?, Proc::spawn("B", mode)?];
    println!(
        "children: A on 127.0.0.1:{}, B on 127.0.0.1:{}",
        procs[0].port, procs[1].port
    );
    procs[0].ask("START", "OK")?;
    let mut st = Stats {
        downtimes: Vec::new(),
        totals: Vec::new(),
        bytes: 0,
        inconsistencies: 0,
    };
    let mut output: Vec<u8> = Vec::new();
    let mut last: Option<PatternState> = None;
    let fail = |st: &mut Stats, hop: u32, msg: String| {
        st.inconsistencies += 1;
        println!("hop {hop}: INCONSISTENT: {msg}");
    };
    let mut holder = 0usize;
    for hop in 1..=count {
        std::thread::sleep(Duration::from_millis(run_ms));
        let (src, dst) = (holder, 1 - holder);
        let port = procs[dst].port;
        procs[dst].send(if corrupt_hop == Some(hop) {
            "RECV corrupt"
        } else {
            "RECV"
        })?;
        procs[src].send(&format!("SEND {port}"))?;
        let sent = procs[src].answer("SENT");
        let recv = procs[dst].answer("RECEIVED");
        let (sent, recv) = match (sent, recv) {
            (Ok(s), Ok(r)) => (s, r),
            (s, r) => {
                fail(
                    &mut st,
                    hop,
                    format!("migration failed: source {s:?}, destination {r:?}"),
                );
                return Ok(st);
            }
        };
        let s_seen = parse_seen(&sent)?;
        let r_seen = parse_seen(&recv)?;
        let (bytes, passes, down, total) = (
            num(&sent, 3)?,
            num(&sent, 4)?,
            Duration::from_micros(num(&sent, 5)?),
            Duration::from_micros(num(&sent, 6)?),
        );
        output.extend_from_slice(&out_bytes(sent.get(7)));
        if s_seen != r_seen {
            fail(
                &mut st,
                hop,
                format!("destination loaded {r_seen:?}, source stopped at {s_seen:?}"),
            );
        }
        if num(&recv, 3)? != bytes {
            fail(
                &mut st,
                hop,
                format!("{bytes} bytes sent, {} received", num(&recv, 3)?),
            );
        }
        if let Some(prev) = last {
            if s_seen.state.passes <= prev.passes {
                fail(
                    &mut st,
                    hop,
                    format!(
                        "the guest made no progress since the last hop: {prev:?} -> {s_seen:?}"
                    ),
                );
            }
        }
        let bs = match check_output(&output, true, 0, s_seen.state) {
            Ok(bs) => bs,
            Err(e) => {
                fail(&mut st, hop, format!("serial output: {e}"));
                0
            }
        };
        last = Some(s_seen.state);
        st.downtimes.push(down);
        st.totals.push(total);
        st.bytes += bytes;
        println!(
            "hop {hop}/{count}: {} -> {}  passes {passes}  {bytes} bytes  total {:.1} ms  downtime {:.2} ms  guest pass {} (+{} pages)  serial: A + {bs} B",
            procs[src].name,
            procs[dst].name,
            total.as_secs_f64() * 1e3,
            down.as_secs_f64() * 1e3,
            s_seen.state.passes,
            s_seen.state.pages_done,
        );
        holder = dst;
    }
    // The guest keeps running after the last hop, and its output continues.
    std::thread::sleep(Duration::from_millis(run_ms.max(20)));
    let w = procs[holder].ask("STATUS", "STATUS")?;
    let seen = parse_seen(&w)?;
    output.extend_from_slice(&out_bytes(w.get(3)));
    if let Some(prev) = last {
        if seen.state.passes <= prev.passes {
            fail(
                &mut st,
                count + 1,
                format!("the guest stopped after the last hop: {prev:?} -> {seen:?}"),
            );
        }
    }
    match check_output(&output, true, 0, seen.state) {
        Ok(bs) => println!(
            "after the last hop: {} runs the guest, pass {}, serial: A + {bs} B",
            procs[holder].name, seen.state.passes
        ),
        Err(e) => fail(&mut st, count + 1, format!("serial output: {e}")),
    }
    for p in &mut procs {
        let _ = p.send("QUIT");
    }
    for p in &mut procs {
        let _ = p.child.wait();
    }
    Ok(st)
}

fn save(mode: Mode, run_ms: u64, out: &std::path::Path) -> Result<String, String> {
    let mut c = Child1 {
        mode,
        listener: TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?,
        held: Held::None,
    };
    c.start()?;
    std::thread::sleep(Duration::from_millis(run_ms));
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut t = vmstate_migration::transport::FileTransport(file);
    c.send_over(&mut t)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Save { out, run_ms, mode } => {
            let (mode, why) = match pick_mode(mode) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("tinyvm save: {e}");
                    return ExitCode::from(2);
                }
            };
            match save(mode, run_ms, &out) {
                Ok(_) => {
                    let len = std::fs::metadata(&out).map_or(0, |m| m.len());
                    println!("tinyvm save: {why}: wrote {} ({len} bytes)", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tinyvm save: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Serve { mode } => {
            let mode = match pick_mode(mode) {
                Ok((m, _)) => m,
                Err(e) => {
                    eprintln!("tinyvm serve: {e}");
                    return ExitCode::from(2);
                }
            };
            match serve(mode) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tinyvm serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Pingpong {
            count,
            run_ms,
            corrupt_hop,
            mode,
        } => {
            let (mode, why) = match pick_mode(mode) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("tinyvm pingpong: {e}");
                    return ExitCode::from(2);
                }
            };
            println!("tinyvm pingpong: {count} hops, {why}");
            let t0 = Instant::now();
            let st = match pingpong(count, run_ms, corrupt_hop, mode) {
                Ok(st) => st,
                Err(e) => {
                    eprintln!("tinyvm pingpong: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let n = st.downtimes.len();
            let mean = |v: &[Duration]| {
                v.iter().sum::<Duration>().as_secs_f64() * 1e3 / (v.len().max(1) as f64)
            };
            let max =
                |v: &[Duration]| v.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3;
            println!(
                "summary: mode {} hops {n}/{count} inconsistencies {} downtime mean {:.2} ms max {:.2} ms  hop time mean {:.1} ms max {:.1} ms  {} bytes  total {:.2} s",
                match mode {
                    Mode::Kvm => "kvm",
                    Mode::Soft => "soft",
                },
                st.inconsistencies,
                mean(&st.downtimes),
                max(&st.downtimes),
                mean(&st.totals),
                max(&st.totals),
                st.bytes,
                t0.elapsed().as_secs_f64()
            );
            if st.inconsistencies == 0 && n == count as usize {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

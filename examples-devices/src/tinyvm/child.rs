//! `tinyvm serve`: the child process of `tinyvm pingpong` that hosts a guest. It listens for a
//! migration on a 127.0.0.1 ephemeral port and obeys the line protocol of
//! [`protocol`](super::protocol) on stdin/stdout: start a guest, receive one, send the one it
//! holds to another child's port, report on it. [`Child`] is that state machine, also used by
//! `tinyvm save` to migrate into a file.

use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vmstate_migration::VmParts as _;

use vmstate_migration::transport::Transport;
use vmstate_migration::{migrate, receive, MigrationSource, ReceiveSettings, Report, Settings};

use super::guest::Workload;
use super::protocol::{devices_hash, output_word, passes_word, phases_word, Seen};
use super::soft::{SoftDest, SoftGuest};
use super::{settings, Mode};

/// What a child runs, from its command line: the same on both sides of a migration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// The guest's RAM size and dirty rate.
    pub workload: Workload,
    /// Migration bandwidth limit in bytes per second (`None` = unlimited).
    pub bandwidth_limit: Option<u64>,
    /// Print a progress line on stderr every 250 ms of a long precopy pass.
    pub progress: bool,
    /// Page channels of each migration (1 = the single QEMU-format stream).
    pub channels: u32,
    /// Precopy passes (including pass 0) before the guest is stopped regardless.
    pub max_passes: u32,
    /// Preflight: each migration starts with the source's configuration manifest, which the
    /// destination checks against its own before anything else moves.
    pub preflight: bool,
    /// Verification: the source commits only when the destination's digests of what it loaded
    /// (RAM per 256 KiB chunk, device sections) equal its own.
    pub verify: bool,
    /// The stream's integrity check (source: writes it; destination: requires it).
    pub integrity: bool,
}

/// A destination built differently from the source on purpose (`PREPARE mismatch=…`), so that
/// the preflight has something real to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// 1 MiB more guest RAM than the source's.
    Ram,
    /// The vCPU lacks these CPUID features (KVM only).
    Cpu(Vec<String>),
    /// A second UART (COM2, `serial` instance 1) the source does not have.
    Device,
}

impl Mismatch {
    /// Parses `ram`, `device` or `cpu:FEATURE[,FEATURE…]`.
    ///
    /// # Errors
    ///
    /// Anything else.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "ram" => Ok(Mismatch::Ram),
            None if s == "device" => Ok(Mismatch::Device),
            Some(("cpu", f)) if !f.is_empty() => {
                Ok(Mismatch::Cpu(f.split(',').map(str::to_owned).collect()))
            }
            _ => Err(format!(
                "`{s}` is not a mismatch: `ram`, `device` or `cpu:FEATURE[,FEATURE…]` (e.g. cpu:avx2)"
            )),
        }
    }

    /// The word after `mismatch=` in a `PREPARE` line.
    #[must_use]
    pub fn word(&self) -> String {
        match self {
            Mismatch::Ram => "ram".into(),
            Mismatch::Device => "device".into(),
            Mismatch::Cpu(f) => format!("cpu:{}", f.join(",")),
        }
    }
}

/// The configuration manifest of `vm` (with `cpu`, a KVM guest's vCPU model).
fn manifest<V: vmstate_migration::VmParts>(
    vm: &V,
    cpu: Option<&vmstate_runtime::manifest::CpuModel>,
) -> Result<vmstate_runtime::manifest::Manifest, String> {
    let m = vmstate_migration::preflight::manifest_of(vm)
        .map_err(|e| e.to_string())?
        .with_build(format!("tinyvm {}", env!("CARGO_PKG_VERSION")));
    Ok(match cpu {
        Some(c) => m.with_cpu(c.clone()),
        None => m,
    })
}

/// A progress display for long passes: a line on stderr at most every 250 ms.
fn progress_hook() -> vmstate_migration::ProgressHook {
    let last = Mutex::new(Duration::ZERO);
    vmstate_migration::ProgressHook(std::sync::Arc::new(
        move |p: &vmstate_migration::PassProgress| {
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if p.elapsed < *last {
                *last = Duration::ZERO; // a new pass
            }
            if p.elapsed >= *last + Duration::from_millis(250) {
                *last = p.elapsed;
                let sent = p.bytes / 4104; // a page record: 8-byte header + 4 KiB
                eprintln!(
                    "  pass {} in progress: ~{} of {} pages ({:.0}%) in {:.0} ms",
                    p.pass,
                    sent.min(p.pages),
                    p.pages,
                    100.0 * sent.min(p.pages) as f64 / p.pages.max(1) as f64,
                    p.elapsed.as_secs_f64() * 1e3
                );
            }
        },
    ))
}

/// The guest a child holds, if any.
// One per child process; without the `kvm` feature the soft guest is the only large variant.
#[allow(clippy::large_enum_variant)]
enum Held {
    None,
    Soft(SoftGuest),
    #[cfg(feature = "kvm")]
    Kvm(super::live::KvmSource),
}

/// A destination built by `PREPARE`, waiting for `RECV`.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    Soft(SoftDest),
    /// The destination, and where its start hook leaves what it saw of memory.
    #[cfg(feature = "kvm")]
    Kvm(super::live::KvmDest, SeenCell),
}

/// What the KVM destination's start hook saw of guest memory.
#[cfg(feature = "kvm")]
type SeenCell = std::sync::Arc<std::sync::Mutex<Option<Result<Seen, String>>>>;

/// How long `RECV` waits for the guest it started to be running before it reports.
const START_BOUND: Duration = Duration::from_secs(2);

/// A process that can host a guest of one [`Mode`] (see the module docs).
pub struct Child {
    mode: Mode,
    opts: Options,
    listener: TcpListener,
    held: Held,
    /// The stopped guest after a successful `SEND`, until `INSPECT`.
    sent: Held,
    prepared: Option<Prepared>,
    /// Fault injection: the guest held here was received with `PREPARE stall` and does not run.
    frozen: bool,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("mode", &self.mode)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Child {
    /// A child holding no guest, listening on a 127.0.0.1 ephemeral port.
    ///
    /// # Errors
    ///
    /// The listener cannot be bound.
    pub fn new(mode: Mode, opts: Options) -> Result<Self, String> {
        opts.workload.validate(mode == Mode::Kvm)?;
        Ok(Child {
            mode,
            opts,
            listener: TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?,
            held: Held::None,
            sent: Held::None,
            prepared: None,
            frozen: false,
        })
    }

    /// The port a source connects to for `RECV`.
    ///
    /// # Errors
    ///
    /// The listener's address cannot be read.
    pub fn port(&self) -> Result<u16, String> {
        Ok(self
            .listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .port())
    }

    fn ensure_empty(&self) -> Result<(), String> {
        match self.held {
            Held::None => Ok(()),
            _ => Err("a guest is running here already".into()),
        }
    }

    /// `START`: a fresh guest, running.
    ///
    /// # Errors
    ///
    /// A guest is held already, or the guest cannot be created.
    pub fn start(&mut self) -> Result<String, String> {
        self.ensure_empty()?;
        match self.mode {
            Mode::Soft => {
                let mut g = SoftGuest::new(false, self.opts.workload)?;
                g.run(true);
                self.held = Held::Soft(g);
            }
            Mode::Kvm => self.start_kvm()?,
        }
        Ok("OK".into())
    }

    #[cfg(feature = "kvm")]
    fn start_kvm(&mut self) -> Result<(), String> {
        use super::{live::KvmSource, Vm};
        let vm = Vm::with_workload(self.opts.workload).map_err(|e| e.to_string())?;
        self.held = Held::Kvm(KvmSource::start(vm, super::machine()).map_err(|e| e.to_string())?);
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

    /// `PREPARE [corrupt] [stall]`: builds the destination VM (memory registered and faulted
    /// in, vCPU created, devices registered) before any source connects, so that none of it is
    /// in a migration's downtime; the answer is `PREPARED <µs it took>`. Fault injection for
    /// the following `RECV`: `corrupt` flips a byte of the received RAM before the check;
    /// `stall` (software guest only) never starts the guest, until it is sent away.
    ///
    /// # Errors
    ///
    /// A guest is held already, the VM cannot be built, or `stall` on KVM.
    pub fn prepare(
        &mut self,
        corrupt: bool,
        stall: bool,
        mismatch: Option<&Mismatch>,
    ) -> Result<String, String> {
        self.ensure_empty()?;
        // A guest sent from here and never inspected is gone for good: free it first.
        self.sent = Held::None;
        let t0 = Instant::now();
        let mut workload = self.opts.workload;
        if mismatch == Some(&Mismatch::Ram) {
            workload.ram_size += 1 << 20;
        }
        self.prepared = Some(match self.mode {
            Mode::Soft if matches!(mismatch, Some(Mismatch::Cpu(_))) => {
                return Err("a CPU mismatch needs the KVM guest".into())
            }
            Mode::Soft => {
                let mut d = SoftDest::new(corrupt, stall, workload)?;
                if mismatch == Some(&Mismatch::Device) {
                    d.add_com2()?;
                }
                Prepared::Soft(d)
            }
            // A KVM guest runs from the moment its vCPU starts; it cannot be held back without
            // racing it, so stall injection is for the software guest.
            Mode::Kvm if stall => return Err("`stall` needs the software guest (--soft)".into()),
            Mode::Kvm => self.prepare_kvm(corrupt, workload, mismatch)?,
        });
        self.frozen = stall;
        Ok(format!("PREPARED {}", t0.elapsed().as_micros()))
    }

    #[cfg(feature = "kvm")]
    fn prepare_kvm(
        &mut self,
        corrupt_ram: bool,
        workload: super::guest::Workload,
        mismatch: Option<&Mismatch>,
    ) -> Result<Prepared, String> {
        use std::sync::{Arc, Mutex, PoisonError};

        let mut d = super::live::KvmDest::with_workload(super::machine(), workload)
            .map_err(|e| e.to_string())?;
        match mismatch {
            Some(Mismatch::Cpu(hide)) => d.hide_cpu_features(hide).map_err(|e| e.to_string())?,
            Some(Mismatch::Device) => d.add_com2().map_err(|e| e.to_string())?,
            _ => {}
        }
        let seen: SeenCell = Arc::new(Mutex::new(None));
        let (s2, ram) = (Arc::clone(&seen), d.ram().clone());
        d.before_start = Some(Box::new(move |_vm| {
            if corrupt_ram {
                super::soft::corrupt(&ram);
            }
            *s2.lock().unwrap_or_else(PoisonError::into_inner) = Some(Seen::inspect(&ram));
        }));
        Ok(Prepared::Kvm(d, seen))
    }

    #[cfg(not(feature = "kvm"))]
    fn prepare_kvm(
        &mut self,
        _corrupt: bool,
        _workload: super::guest::Workload,
        _mismatch: Option<&Mismatch>,
    ) -> Result<Prepared, String> {
        Err("built without the `kvm` feature".into())
    }

    /// `RECV`: receives a guest on the listener into the destination `PREPARE` built, and
    /// starts it. The answer has what the destination loaded (memory and devices, checked
    /// before the guest started), when the guest began to run and the destination's side of
    /// the critical path.
    ///
    /// # Errors
    ///
    /// Nothing prepared, the migration or a check failed, or the guest did not start.
    pub fn recv(&mut self) -> Result<String, String> {
        self.ensure_empty()?;
        let prepared = self.prepared.take().ok_or("RECV without PREPARE")?;
        let mut t = self.accept()?;
        // Page channels of a multi-channel migration arrive on the same listener.
        let mut settings = ReceiveSettings {
            channels: Some(vmstate_migration::ChannelListener::Tcp(
                std::sync::Arc::new(self.listener.try_clone().map_err(|e| e.to_string())?),
            )),
            ..ReceiveSettings::default()
        };
        settings.verify = self.opts.verify;
        settings.require_integrity = self.opts.integrity;
        if self.opts.preflight {
            settings.preflight = Some(match &prepared {
                Prepared::Soft(d) => manifest(d, None)?,
                #[cfg(feature = "kvm")]
                Prepared::Kvm(d, _) => manifest(d, Some(d.cpu_model()))?,
            });
        }
        let (seen, devices, report, run_at, check) = match prepared {
            Prepared::Soft(mut d) => {
                let r = receive(&mut d, &mut t, &settings).map_err(|e| e.to_string())?;
                let seen = d.seen.take().ok_or("not resumed")??;
                let devices = d.devices.take().ok_or("not resumed")??;
                // A stalled destination never starts: its "run" is when it would have.
                let run_at = if self.frozen {
                    Some(super::monotonic_ns())
                } else {
                    d.guest.started_at(START_BOUND)
                };
                let check = d.check_time;
                self.held = Held::Soft(d.guest);
                (seen, devices, r, run_at, check)
            }
            #[cfg(feature = "kvm")]
            Prepared::Kvm(mut d, seen) => {
                use std::sync::PoisonError;
                let r = receive(&mut d, &mut t, &settings).map_err(|e| e.to_string())?;
                let src = d
                    .started
                    .take()
                    .ok_or("not resumed")?
                    .map_err(|e| format!("restoring the guest after the ack: {e}"))?;
                let run_at = src.started_at(START_BOUND);
                self.held = Held::Kvm(src);
                let seen = seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .ok_or("no check before start")??;
                // The destination's device cells still hold what was loaded (the running guest
                // has cells of its own), so this is off the critical path.
                let devices = devices_hash(&d)?;
                (seen, devices, r, run_at, d.check_time)
            }
        };
        let run_at = run_at.ok_or("the guest did not start running within 2 s")?;
        Ok(format!(
            "RECEIVED {} {devices:016x} {} {run_at} {} {}",
            seen.words(),
            report.bytes,
            check.as_micros(),
            phases_word(&report.critical_path)
        ))
    }

    /// `SEND <port>`: migrates the guest held here to the child listening on `port`.
    ///
    /// # Errors
    ///
    /// No guest here, or the connection or the migration failed (the guest then stays here).
    pub fn send(&mut self, port: u16) -> Result<String, String> {
        let mut t = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        t.set_nodelay(true).map_err(|e| e.to_string())?;
        self.send_over(&mut t)
    }

    /// Migrates the guest held here over `t` (TCP for a hop, a file for `save`); the answer is
    /// the `SENT` line.
    ///
    /// # Errors
    ///
    /// No guest here, or the migration failed (the guest then stays here).
    pub fn send_over<T: Transport>(&mut self, t: &mut T) -> Result<String, String> {
        let t = &mut *t;
        let mut s = settings(self.opts.bandwidth_limit);
        s.channels = self.opts.channels;
        s.max_passes = self.opts.max_passes;
        if self.opts.progress {
            s.progress = Some(progress_hook());
        }
        s.verify = self.opts.verify;
        s.integrity = self.opts.integrity;
        if self.opts.preflight {
            s.preflight = Some(match &self.held {
                Held::None => return Err("no guest here".into()),
                Held::Soft(g) => manifest(g, None)?,
                #[cfg(feature = "kvm")]
                Held::Kvm(g) => manifest(g, Some(g.cpu_model()))?,
            });
        }
        self.frozen = false;
        // On success the stopped guest stays here, unexamined, until `INSPECT`: examining it
        // now would compete for the CPU with the destination starting its guest.
        let (report, stop_at) = match std::mem::replace(&mut self.held, Held::None) {
            Held::None => return Err("no guest here".into()),
            Held::Soft(g) => self.migrate_held(g, Held::Soft, |g| g.stopped_at, t, &s)?,
            #[cfg(feature = "kvm")]
            Held::Kvm(g) => self.migrate_held(g, Held::Kvm, |g| g.stopped_at, t, &s)?,
        };
        Ok(format!(
            "SENT {} {} {} {} {stop_at} {} {} {}:{}",
            report.bytes,
            report.passes.len(),
            report.downtime.as_micros(),
            report.total_time.as_micros(),
            phases_word(&report.critical_path),
            passes_word(&report.passes),
            report.final_pages.pages,
            report.final_pages.zero_pages,
        ))
    }

    /// Migrates `g` (held here as `wrap(g)`) over `t`: on success it waits in `sent` and the
    /// answer is the report with the instant `stopped_at` says it stopped; on failure it is held
    /// here again.
    fn migrate_held<G: MigrationSource, T: Transport>(
        &mut self,
        mut g: G,
        wrap: fn(G) -> Held,
        stopped_at: fn(&G) -> u64,
        t: &mut T,
        s: &Settings,
    ) -> Result<(Report, u64), String> {
        match migrate(&mut g, t, s) {
            Ok(r) => {
                let stop_at = stopped_at(&g);
                self.sent = wrap(g);
                Ok((r, stop_at))
            }
            Err(e) => {
                self.held = wrap(g);
                Err(e.to_string())
            }
        }
    }

    /// `INSPECT`: what the guest sent away from here stopped with (memory, device sections as
    /// sent, serial output), then the stopped guest is dropped.
    ///
    /// # Errors
    ///
    /// No guest was sent from here, or it cannot be examined.
    pub fn inspect(&mut self) -> Result<String, String> {
        let (seen, devices, out) = match std::mem::replace(&mut self.sent, Held::None) {
            Held::None => return Err("no guest was sent from here".into()),
            Held::Soft(g) => (Seen::inspect(g.ram())?, devices_hash(&g)?, g.take_output()),
            #[cfg(feature = "kvm")]
            Held::Kvm(mut g) => {
                let (seen, devices) = (Seen::inspect(g.ram())?, devices_hash(&g)?);
                let out = kvm_output(&mut g)?;
                drop(g.into_vm());
                (seen, devices, out)
            }
        };
        Ok(format!(
            "INSPECTED {} {devices:016x} {}",
            seen.words(),
            output_word(&out)
        ))
    }

    /// `STATUS`: what the running guest has done since the last report (it is stopped for the
    /// check, then runs on).
    ///
    /// # Errors
    ///
    /// No guest here, or the check failed.
    pub fn status(&mut self) -> Result<String, String> {
        let (seen, out) = match &mut self.held {
            Held::None => return Err("no guest here".into()),
            Held::Soft(g) => {
                g.stop();
                let r = (Seen::inspect_state(g.ram()), g.take_output());
                if !self.frozen {
                    g.run(false);
                }
                r
            }
            #[cfg(feature = "kvm")]
            Held::Kvm(g) => {
                let out = kvm_output(g)?;
                let seen = Seen::inspect_state(g.ram());
                if !self.frozen {
                    g.run();
                }
                (seen, out)
            }
        };
        Ok(format!("STATUS {} {}", seen?.words(), output_word(&out)))
    }

    /// Stops the guest held here, if any.
    pub fn stop(&mut self) {
        if let Held::Soft(g) = &mut self.held {
            g.stop();
        }
    }
}

/// The KVM guest's serial output since the last call (the vCPU is parked for it).
#[cfg(feature = "kvm")]
fn kvm_output(g: &mut super::live::KvmSource) -> Result<Vec<u8>, String> {
    Ok(g.vm()
        .map_err(|e| e.to_string())?
        .serial
        .state
        .take_tx_output())
}

/// `tinyvm serve`: prints `READY <port>`, then answers the commands on stdin until `QUIT` or
/// the end of input.
///
/// # Errors
///
/// The listener cannot be bound, or stdin/stdout fail.
pub fn serve(mode: Mode, opts: Options) -> Result<(), String> {
    let mut me = Child::new(mode, opts)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY {}", me.port()?).map_err(|e| e.to_string())?;
    stdout.flush().map_err(|e| e.to_string())?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next()) {
            (Some("START"), _) => me.start(),
            (Some("PREPARE"), w) => {
                let faults: Vec<&str> = w.into_iter().chain(words.clone()).collect();
                match faults
                    .iter()
                    .find_map(|f| f.strip_prefix("mismatch="))
                    .map(Mismatch::parse)
                    .transpose()
                {
                    Ok(m) => me.prepare(
                        faults.contains(&"corrupt"),
                        faults.contains(&"stall"),
                        m.as_ref(),
                    ),
                    Err(e) => Err(e),
                }
            }
            (Some("RECV"), _) => me.recv(),
            (Some("SEND"), Some(p)) => p
                .parse()
                .map_err(|e| format!("port {p}: {e}"))
                .and_then(|p| me.send(p)),
            (Some("INSPECT"), _) => me.inspect(),
            (Some("STATUS"), _) => me.status(),
            (Some("QUIT"), _) => break,
            _ => Err(format!("unknown command {line:?}")),
        };
        let answer = answer.unwrap_or_else(|e| format!("FAIL {}", e.replace('\n', " ")));
        writeln!(stdout, "{answer}").map_err(|e| e.to_string())?;
        stdout.flush().map_err(|e| e.to_string())?;
    }
    me.stop();
    Ok(())
}

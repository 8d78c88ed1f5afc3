//! `tinyvm snapshot`, `tinyvm restore` and `tinyvm snapshot-merge`: a guest saved to a snapshot
//! file ([`vmstate_migration::snapshot`]) and restored by mapping its memory from the file.
//!
//! - [`snapshot`] runs a fresh guest (or one restored from `--incremental-from BASE`) for a
//!   while, stops it, checks its memory pattern and serial output so far, and writes the file:
//!   the device sections (`serial`, and `tinyvm-cpu` for KVM) as a QEMU stream, guest memory at
//!   fixed offsets (all non-zero pages, or for an increment the pages dirtied since the restore
//!   of the base: KVM's dirty log, or vm-memory's for the software guest), and notes saying
//!   what a restore must find: the mode, the pattern state and hash ([`Seen`]), the number of
//!   `B`s printed, the dirty rate, and for the software guest where its walk stands (its only
//!   "register").
//! - [`restore`] opens the file (and the chain of bases of an increment), checks the device
//!   sections against this build (a newer section fails here, before anything is built),
//!   loads them all or nothing through a registry, maps guest memory copy-on-write from the
//!   file, builds the VM over that mapping and starts the vCPU. It prints how long that took
//!   from `main()`'s entry to the vCPU's first `KVM_RUN` (or the software guest thread's
//!   start). With `--check` it first compares the mapped memory with the notes (not counted in
//!   the time), then lets the guest run and checks, as the ping-pong does, that it continued:
//!   at least one more pass, the pattern invariant, and exactly one `B` per pass since.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmstate_migration::snapshot::{self as snap, DeviceState, Increment, Snapshot, WriteOptions};
use vmstate_migration::{GuestRam, MigrationSource, VmParts};
use vmstate_runtime::Registry;

use super::guest::{check_output, Workload};
use super::protocol::Seen;
use super::soft::SoftGuest;
use super::{machine, monotonic_ns, Mode};
use crate::SerialSection;

/// Note: the guest (`kvm` or `soft`).
pub const NOTE_MODE: &str = "tinyvm.mode";
/// Note: the pattern state and RAM hash when the snapshot was taken ([`Seen::words`]).
pub const NOTE_SEEN: &str = "tinyvm.seen";
/// Note: the `B`s the guest had printed.
pub const NOTE_BS: &str = "tinyvm.bs";
/// Note: the dirty rate (pages per second, or `max`).
pub const NOTE_RATE: &str = "tinyvm.dirty-rate";

/// Note: the UART's virtual clock (ns) when the guest stopped; its armed timers count on it.
pub const NOTE_VCLOCK: &str = "tinyvm.vclock-ns";

/// How long a restored guest may take to start.
const START_BOUND: Duration = Duration::from_secs(2);

/// How long a restored guest running `w` may take to complete a pass before `--check` fails:
/// the ping-pong's bound ([`progress_bound`](super::driver::progress_bound): 2 s, or three
/// passes at the dirty rate), plus 1 s per 10,000 pages, because the first pass after a restore
/// takes a copy-on-write fault on every page it writes (about 35,000 pages/s for the KVM guest
/// on the development host, nested virtualisation).
fn restore_progress_bound(w: Workload) -> Duration {
    super::driver::progress_bound(w) + Duration::from_millis(w.ram_size as u64 / 4096 / 10)
}

/// The writer build recorded in snapshots: the crate version and `git describe` at build time.
#[must_use]
pub fn build() -> String {
    format!(
        "tinyvm {} ({})",
        env!("CARGO_PKG_VERSION"),
        option_env!("TINYVM_GIT_DESCRIBE").unwrap_or("git describe unavailable")
    )
}

/// A running (or stopped) guest of either kind.
#[allow(clippy::large_enum_variant)]
pub enum Guest {
    /// The software guest.
    Soft(SoftGuest),
    /// The KVM guest.
    #[cfg(feature = "kvm")]
    Kvm(super::live::KvmSource),
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Guest::Soft(_) => "Guest::Soft",
            #[cfg(feature = "kvm")]
            Guest::Kvm(_) => "Guest::Kvm",
        })
    }
}

impl Guest {
    /// A fresh guest of `mode` running `w`, started.
    ///
    /// # Errors
    ///
    /// The guest cannot be built.
    pub fn start(mode: Mode, w: Workload) -> Result<Guest, String> {
        match mode {
            Mode::Soft => {
                let mut g = SoftGuest::new(false, w)?;
                g.run(true);
                Ok(Guest::Soft(g))
            }
            #[cfg(feature = "kvm")]
            Mode::Kvm => {
                let vm = super::Vm::with_workload(w).map_err(|e| e.to_string())?;
                Ok(Guest::Kvm(
                    super::live::KvmSource::start(vm, machine()).map_err(|e| e.to_string())?,
                ))
            }
            #[cfg(not(feature = "kvm"))]
            Mode::Kvm => Err("built without the `kvm` feature".into()),
        }
    }

    fn mode(&self) -> Mode {
        match self {
            Guest::Soft(_) => Mode::Soft,
            #[cfg(feature = "kvm")]
            Guest::Kvm(_) => Mode::Kvm,
        }
    }

    /// Stops the guest; its device cells then hold its state.
    ///
    /// # Errors
    ///
    /// The vCPU failed.
    pub fn stop(&mut self) -> Result<(), String> {
        match self {
            Guest::Soft(g) => {
                g.stop_vcpus();
                Ok(())
            }
            #[cfg(feature = "kvm")]
            Guest::Kvm(g) => {
                g.stop_vcpus();
                match g.error.take() {
                    Some(e) => Err(format!("stopping the vCPU: {e}")),
                    None => Ok(()),
                }
            }
        }
    }

    /// Runs the guest again after [`Guest::stop`].
    pub fn resume(&mut self) {
        match self {
            Guest::Soft(g) => g.run(false),
            #[cfg(feature = "kvm")]
            Guest::Kvm(g) => g.run(),
        }
    }

    /// The serial output since the last call (stop the guest first).
    ///
    /// # Errors
    ///
    /// The KVM vCPU failed.
    pub fn take_output(&mut self) -> Result<Vec<u8>, String> {
        match self {
            Guest::Soft(g) => Ok(g.take_output()),
            #[cfg(feature = "kvm")]
            Guest::Kvm(g) => Ok(g
                .vm()
                .map_err(|e| e.to_string())?
                .serial
                .state
                .take_tx_output()),
        }
    }

    /// Guest RAM.
    #[must_use]
    pub fn ram(&self) -> &GuestRam {
        match self {
            Guest::Soft(g) => g.ram(),
            #[cfg(feature = "kvm")]
            Guest::Kvm(g) => g.ram(),
        }
    }

    fn devices(&self) -> Result<DeviceState, String> {
        let (registry, machine) = match self {
            Guest::Soft(g) => (g.registry(), g.machine()),
            #[cfg(feature = "kvm")]
            Guest::Kvm(g) => (g.registry(), g.machine()),
        };
        DeviceState::save(registry, machine).map_err(|e| format!("saving the devices: {e}"))
    }

    /// The virtual clock the UART's timers count on (stop the guest first).
    fn vclock_ns(&mut self) -> Result<u64, String> {
        match self {
            Guest::Soft(g) => Ok(g.serial_clock_ns()),
            #[cfg(feature = "kvm")]
            Guest::Kvm(g) => Ok(g.vm().map_err(|e| e.to_string())?.serial.state.now_ns()),
        }
    }

    fn take_dirty(&mut self) -> Result<Vec<Vec<u64>>, String> {
        match self {
            Guest::Soft(g) => g.take_dirty(),
            #[cfg(feature = "kvm")]
            Guest::Kvm(g) => g.take_dirty(),
        }
        .map_err(|e| e.to_string())
    }

    fn started_at(&self, bound: Duration) -> Option<u64> {
        match self {
            Guest::Soft(g) => g.started_at(bound),
            #[cfg(feature = "kvm")]
            Guest::Kvm(g) => g.started_at(bound),
        }
    }
}

/// `tinyvm snapshot`.
#[derive(Debug, Clone)]
pub struct SnapshotCmd {
    /// The guest (ignored with `incremental_from`: the base's).
    pub mode: Mode,
    /// Its RAM size and dirty rate (with `incremental_from`, only the dirty rate is used).
    pub workload: Workload,
    /// Milliseconds the guest runs before the snapshot.
    pub run_ms: u64,
    /// The snapshot file.
    pub out: PathBuf,
    /// Restore this snapshot, run, and write only the pages dirtied since.
    pub incremental_from: Option<PathBuf>,
    /// Threads writing the pages ([`WriteOptions::threads`]; 0 = the default).
    pub write_threads: usize,
}

/// `tinyvm snapshot`: see the module docs. Prints what it wrote; `Ok(true)` when the guest's
/// checks before the snapshot passed.
///
/// # Errors
///
/// The guest cannot be built or restored, or the file cannot be written.
pub fn snapshot(cmd: &SnapshotCmd, why: &str) -> Result<bool, String> {
    let (mut guest, with_a, earlier_bs, base) = match &cmd.incremental_from {
        None => (Guest::start(cmd.mode, cmd.workload)?, true, 0, None),
        Some(base) => {
            let r = restore_guest(base, false, false, Some(cmd.workload.dirty_rate))?;
            let chain = Snapshot::open(base).map_err(|e| e.to_string())?;
            let rel = relative_to(base, &cmd.out);
            (r.guest, false, r.bs, Some((rel, chain.manifest.id)))
        }
    };
    let mode = guest.mode();
    let why = match &cmd.incremental_from {
        Some(base) => format!("{} guest restored from {}", mode.name(), base.display()),
        None => why.to_owned(),
    };
    std::thread::sleep(Duration::from_millis(cmd.run_ms));
    guest.stop()?;
    let output = guest.take_output()?;
    let seen = Seen::inspect(guest.ram())?;
    let bs = check_output(&output, with_a, earlier_bs, seen.state)
        .map_err(|e| format!("the guest's serial output before the snapshot: {e}"))?;
    let devices = guest.devices()?;
    let vclock = guest.vclock_ns()?;
    let incremental = match base {
        Some((base, base_id)) => Some(Increment {
            base,
            base_id,
            dirty: guest.take_dirty()?,
        }),
        None => None,
    };
    let rate = cmd
        .workload
        .dirty_rate
        .map_or_else(|| "max".to_owned(), |r| r.to_string());
    let opts = WriteOptions {
        build: Some(build()),
        notes: vec![
            (NOTE_MODE.into(), mode.name().into()),
            (NOTE_SEEN.into(), seen.words()),
            (NOTE_BS.into(), bs.to_string()),
            (NOTE_RATE.into(), rate),
            (NOTE_VCLOCK.into(), vclock.to_string()),
        ],
        incremental,
        threads: cmd.write_threads,
    };
    let t0 = Instant::now();
    let r = snap::write(&cmd.out, guest.ram(), &devices, &opts).map_err(|e| e.to_string())?;
    println!(
        "tinyvm snapshot: {why}: wrote {} in {:.1} ms ({:.1} ms of it in fsync): {} KiB of guest RAM, {} page{} recorded ({} with data), {} device sections, file length {} bytes, {} bytes stored (sparse), pass {} (+{} pages), {bs} B printed{}",
        cmd.out.display(),
        t0.elapsed().as_secs_f64() * 1e3,
        r.sync_time.as_secs_f64() * 1e3,
        guest.ram().total_bytes() >> 10,
        r.pages,
        if r.pages == 1 { "" } else { "s" },
        r.data_pages,
        devices.sections.len(),
        r.file_len,
        r.stored_bytes,
        seen.state.passes,
        seen.state.pages_done,
        if cmd.incremental_from.is_some() {
            " (incremental: the pages dirtied since the base)"
        } else {
            ""
        }
    );
    Ok(true)
}

/// `base` as seen from the directory of `out` (absolute when they share no obvious prefix).
fn relative_to(base: &Path, out: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let base = abs(base);
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| abs(Path::new(".")), abs);
    match base.strip_prefix(&dir) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => base.display().to_string(),
    }
}

/// A guest restored from a snapshot, running.
#[derive(Debug)]
pub struct Restored {
    /// The guest.
    pub guest: Guest,
    /// What the snapshot's notes say memory held.
    pub expected: Seen,
    /// The `B`s printed before the snapshot.
    pub bs: u64,
    /// [`monotonic_ns`] when the guest began to run.
    pub started_at: u64,
    /// The restore's steps, `(name, ns)`.
    pub steps: Vec<(&'static str, u64)>,
    /// Time spent in the memory check before the start (0 without it).
    pub check_ns: u64,
    /// Snapshots in the chain (1 for a full snapshot).
    pub chain: usize,
    /// The writer build of the newest snapshot.
    pub build: String,
    /// The guest's RAM size and dirty rate.
    pub workload: Workload,
}

/// Steps of a restore, timed with [`monotonic_ns`].
struct Laps {
    t: u64,
    steps: Vec<(&'static str, u64)>,
}

impl Laps {
    fn lap(&mut self, name: &'static str) {
        let ns = self.skip();
        self.steps.push((name, ns));
    }

    /// Nanoseconds since the last lap, not recorded as a step.
    fn skip(&mut self) -> u64 {
        let now = monotonic_ns();
        let ns = now - self.t;
        self.t = now;
        ns
    }
}

fn note<'a>(s: &'a Snapshot, key: &str) -> Result<&'a str, String> {
    s.manifest.note(key).ok_or_else(|| {
        format!(
            "{}: no note `{key}` (not a tinyvm snapshot)",
            s.path().display()
        )
    })
}

/// Re-synchronises the loaded UART's timers before the guest resumes: its virtual clock (not
/// part of the section; QEMU migrates its clocks separately) continues from the value recorded
/// when the guest stopped, so a timer armed then keeps the time it had left instead of firing at
/// once or never. Snapshots without the note start the clock at 0, as a fresh VMM.
fn resync_timers(s: &Snapshot, serial: &Mutex<SerialSection>) -> Result<(), String> {
    let now = match s.manifest.note(NOTE_VCLOCK) {
        Some(v) => v
            .parse()
            .map_err(|e| format!("{}: note {NOTE_VCLOCK}: {e}", s.path().display()))?,
        None => 0,
    };
    serial
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .state
        .set_now_ns(now);
    Ok(())
}

/// Restores the snapshot at `path` (and its bases) and starts the guest; see the module docs.
/// `check`: compare the mapped memory with the notes before the start. `dirty_rate`: run the
/// guest at this rate instead of the recorded one.
///
/// # Errors
///
/// A bad or incompatible file (before anything is built), or the guest cannot be built.
pub fn restore_guest(
    path: &Path,
    prefetch: bool,
    check: bool,
    dirty_rate: Option<Option<u64>>,
) -> Result<Restored, String> {
    let mut clock = Laps {
        t: monotonic_ns(),
        steps: Vec::new(),
    };
    let chain = Snapshot::open_chain(path).map_err(|e| e.to_string())?;
    let last = chain.last().ok_or("empty chain")?;
    let mode = match note(last, NOTE_MODE)? {
        "kvm" => Mode::Kvm,
        "soft" => Mode::Soft,
        m => return Err(format!("{}: unknown mode `{m}`", path.display())),
    };
    let words: Vec<String> = note(last, NOTE_SEEN)?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let expected = Seen::parse(&words)?;
    let bs: u64 = note(last, NOTE_BS)?
        .parse()
        .map_err(|e| format!("note {NOTE_BS}: {e}"))?;
    let rate = match dirty_rate {
        Some(r) => r,
        None => super::guest::parse_rate(note(last, NOTE_RATE)?)?,
    };
    let block = last
        .manifest
        .blocks
        .first()
        .filter(|_| last.manifest.blocks.len() == 1)
        .ok_or_else(|| format!("{}: tinyvm has exactly one RAM block", path.display()))?;
    let workload = Workload {
        ram_size: usize::try_from(block.size).map_err(|e| e.to_string())?,
        dirty_rate: rate,
    };
    workload.validate(mode == Mode::Kvm)?;
    clock.lap("open");
    // Devices: checked against this build, then loaded all or nothing, before any VM exists.
    let machine = machine();
    let serial = Arc::new(Mutex::new(SerialSection::default()));
    let mut registry = Registry::new();
    #[cfg(feature = "kvm")]
    let cpu = Arc::new(Mutex::new(super::CpuState::default()));
    #[cfg(feature = "kvm")]
    if mode == Mode::Kvm {
        registry
            .register(Arc::clone(&cpu))
            .map_err(|e| e.to_string())?;
    }
    registry
        .register(Arc::clone(&serial))
        .map_err(|e| e.to_string())?;
    last.load_devices(&registry, &machine)
        .map_err(|e| e.to_string())?;
    resync_timers(last, &serial)?;
    clock.lap("devices");
    let ram = snap::restore_ram(&chain, prefetch).map_err(|e| e.to_string())?;
    clock.lap("map");
    let mut check_ns = 0;
    if check {
        let seen = Seen::inspect(&ram)?;
        if seen != expected {
            return Err(format!(
                "memory: the restored RAM shows {seen:?}, the snapshot recorded {expected:?}"
            ));
        }
        check_ns = clock.skip();
    }
    let guest = match mode {
        Mode::Soft => {
            let mut g = SoftGuest::with_ram(ram, workload, serial)?;
            g.set_position(expected.state.pages_done);
            clock.lap("vm");
            g.run(false);
            Guest::Soft(g)
        }
        #[cfg(feature = "kvm")]
        Mode::Kvm => {
            let mut vm = super::Vm::with_memory(workload, ram.memory().clone())
                .map_err(|e| e.to_string())?;
            let state = cpu
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            vm.restore_cpu(&state).map_err(|e| e.to_string())?;
            vm.serial = serial
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            clock.lap("vm");
            Guest::Kvm(super::live::KvmSource::start(vm, machine).map_err(|e| e.to_string())?)
        }
        #[cfg(not(feature = "kvm"))]
        Mode::Kvm => return Err("a KVM snapshot needs the `kvm` feature".into()),
    };
    let started_at = guest
        .started_at(START_BOUND)
        .ok_or("the restored guest did not start within 2 s")?;
    let mut steps = clock.steps;
    steps.push(("start", started_at.saturating_sub(clock.t)));
    Ok(Restored {
        guest,
        expected,
        bs,
        started_at,
        steps,
        check_ns,
        chain: chain.len(),
        build: last.manifest.build.clone(),
        workload,
    })
}

/// The environment variable through which a parent passes its [`monotonic_ns`] taken just before
/// it spawned `tinyvm restore`; the restore then also prints the time from that spawn to the guest
/// running (what a user waits for: process creation, exec and dynamic loading included).
pub const SPAWNED_AT_ENV: &str = "TINYVM_SPAWNED_AT_NS";

/// `tinyvm restore`: restores `path`, prints the time from `main_at` (the [`monotonic_ns`] taken
/// as `main()`'s first statement) to the guest running, without the `--check` memory check;
/// with `check`, runs the guest for `run_ms` and checks that it continued: a completed pass,
/// or with `progress_pages` a walk advanced by that many pages (a large sparse guest's pass
/// takes minutes and touches all its RAM). `Ok(true)` when every check passed.
///
/// # Errors
///
/// As [`restore_guest`].
pub fn restore(
    path: &Path,
    main_at: u64,
    check: bool,
    prefetch: bool,
    run_ms: u64,
    progress_pages: Option<u64>,
) -> Result<bool, String> {
    let mut r = restore_guest(path, prefetch, check, None)?;
    let total = r
        .started_at
        .saturating_sub(main_at)
        .saturating_sub(r.check_ns);
    let steps: Vec<String> = r
        .steps
        .iter()
        .map(|(n, ns)| format!("{n} {:.3}", *ns as f64 / 1e6))
        .collect();
    // With SPAWNED_AT_ENV, the time from the parent's spawn (process creation, exec, dynamic
    // loading included) to the guest running, on the same CLOCK_MONOTONIC.
    let spawned = std::env::var(SPAWNED_AT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|at| {
            format!(
                " ({:.3} ms after the parent spawned the process)",
                r.started_at.saturating_sub(at).saturating_sub(r.check_ns) as f64 / 1e6
            )
        })
        .unwrap_or_default();
    println!(
        "tinyvm restore: {} ({} guest, {} KiB, {} snapshot{} in the chain, written by {}): guest running {:.3} ms after main() entry{spawned}  [ms: {}{}]",
        path.display(),
        r.guest.mode().name(),
        r.guest.ram().total_bytes() >> 10,
        r.chain,
        if r.chain == 1 { "" } else { "s" },
        r.build,
        total as f64 / 1e6,
        steps.join("  "),
        if check {
            format!("; memory check before start {:.3} (not counted)", r.check_ns as f64 / 1e6)
        } else {
            String::new()
        }
    );
    if !check {
        r.guest.stop()?;
        return Ok(true);
    }
    println!(
        "  memory: ok (pass {}, +{} pages, hash {:016x}, as recorded)",
        r.expected.state.passes, r.expected.state.pages_done, r.expected.hash
    );
    std::thread::sleep(Duration::from_millis(run_ms));
    let t0 = Instant::now();
    let bound = restore_progress_bound(r.workload);
    let mut output = Vec::new();
    let pass = r.workload.pattern_pages() as u64;
    let (from, want) = (r.expected.state, progress_pages.unwrap_or(u64::MAX));
    let advanced = |now: &Seen| {
        (u64::from(now.state.passes) * pass + now.state.pages_done as u64)
            .saturating_sub(u64::from(from.passes) * pass + from.pages_done as u64)
    };
    let progressed = |now: &Seen| {
        now.state.passes > from.passes || (now.state.is_after(from) && advanced(now) >= want)
    };
    let now = loop {
        r.guest.stop()?;
        output.extend(r.guest.take_output()?);
        let now = Seen::inspect_state(r.guest.ram())?;
        if progressed(&now) || t0.elapsed() > bound {
            break now;
        }
        r.guest.resume();
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut ok = true;
    if progressed(&now) {
        println!(
            "  progress: ok (pass {} +{} -> pass {} +{}: {} pages walked, pattern invariant holds)",
            from.passes,
            from.pages_done,
            now.state.passes,
            now.state.pages_done,
            advanced(&now)
        );
    } else {
        ok = false;
        println!(
            "  progress: FAILED: {} in {} ms after the restore: {:?} -> {:?}",
            match progress_pages {
                Some(n) => format!("no completed pass nor {n} pages walked"),
                None => "no completed pass".to_owned(),
            },
            run_ms + bound.as_millis() as u64,
            from,
            now.state
        );
    }
    match check_output(&output, false, r.bs, now.state) {
        Ok(bs) => println!(
            "  serial: ok ({} B before the snapshot + {} since = {bs})",
            r.bs,
            bs - r.bs
        ),
        Err(e) => {
            ok = false;
            println!("  serial: FAILED: {e}");
        }
    }
    Ok(ok)
}

/// `tinyvm snapshot-merge`: folds the increment `inc` and its bases into the full snapshot `out`.
///
/// # Errors
///
/// A bad chain, or the file cannot be written.
pub fn merge(inc: &Path, out: &Path) -> Result<bool, String> {
    let chain = Snapshot::open_chain(inc).map_err(|e| e.to_string())?;
    let r = snap::merge(&chain, out, None).map_err(|e| e.to_string())?;
    println!(
        "tinyvm snapshot-merge: {} snapshots -> {}: {} pages with data, file length {} bytes, {} bytes stored",
        chain.len(),
        out.display(),
        r.data_pages,
        r.file_len,
        r.stored_bytes
    );
    Ok(true)
}

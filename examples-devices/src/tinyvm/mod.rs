//! tinyvm: a tiny guest that is live-migrated between processes. Everything the `tinyvm` binary
//! does lives here; the binary only parses its command line.
//!
//! Two guests run the same memory pattern and print through the example
//! [`Serial16550`](crate::Serial16550):
//!
//! - [`guest`]: the guest programs that walk their pages writing a per-page counter and print
//!   `A`, then a `B` per pass, to COM1 (16-bit real mode for the default 1 MiB of RAM, 32-bit
//!   protected mode for any other size up to 3 GiB or a dirty-rate limit, 64-bit long mode
//!   above 3 GiB with RAM split around the hole under 4 GiB, up to 32 GiB); the [`Workload`]
//!   (`--mem`, `--dirty-rate`), the page [`Budget`](guest::Budget) that paces the rate (the
//!   32- and 64-bit guests ask the VMM for it on an I/O port), the pattern invariant and its
//!   check, the same at every size. Plain code, used by both guests.
//! - [`soft`]: the software guest, a thread walking vm-memory RAM the same way (runs everywhere).
//! - With the `kvm` feature, the KVM guest: `Vm` (kvm-ioctls VM with vm-memory RAM and one
//!   vCPU; `Vm::run_for`, pause/resume, `Vm::save_cpu` / `Vm::restore_cpu`), `CpuState`
//!   (section `tinyvm-cpu` v1: registers, special registers, FPU, MSRs, LAPIC) and `live`
//!   (live migration with `vmstate-migration`: the vCPU on its own thread, KVM's dirty log
//!   (`DirtyLog`, the slots are registered with `KVM_MEM_LOG_DIRTY_PAGES`) feeding the RAM
//!   passes, `tinyvm-cpu` and `serial` device sections, a destination that restores and starts
//!   the vCPU only after the acknowledgement).
//!
//! Live migration between two processes, `tinyvm pingpong`, has two sides that talk over one
//! line per command on stdin/stdout ([`protocol`]):
//!
//! - [`child`]: `tinyvm serve`, the process that hosts a guest, sends it to another child or
//!   receives it, and reports what it saw of guest memory while the guest was stopped.
//! - [`driver`]: the parent, which spawns two children, migrates the guest back and forth,
//!   checks every hop and prints the statistics; also `tinyvm save` (a migration into a file).
//!
//! Snapshots ([`snapshot`]): `tinyvm snapshot` writes a stopped guest to a snapshot file (device
//! state as a QEMU stream, memory at fixed offsets; `--incremental-from BASE` only the pages
//! dirtied since the base), `tinyvm restore` maps it back and starts the guest in milliseconds,
//! `tinyvm snapshot-merge` folds increments into a full snapshot (see `docs/snapshots.md`).
//!
//! A large guest with a dirty rate exercises multi-pass precopy, the downtime target, the
//! bandwidth limit and auto-converge: `tinyvm pingpong --mem 256M --dirty-rate 50000 --verbose`
//! prints every precopy pass (pages, zero pages, bandwidth, pages dirtied meanwhile, expected
//! downtime, throttle) and whether the hop converged, and a progress line on stderr every 250 ms
//! of a long pass. Both children get the same workload and `--bandwidth` on their command line.
//!
//! An in-process KVM migration: stop the source (return from `run_for`), save its `CpuState`
//! and [`SerialSection`](crate::SerialSection) payloads, copy RAM, load the payloads on the
//! destination, restore, run. The tests in `tests/tinyvm_kvm.rs` do exactly that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vmstate_migration::Settings;
use vmstate_runtime::MachineType;

pub mod child;
pub mod cpuid;
pub mod driver;
pub mod guest;
pub mod protocol;
pub mod snapshot;
pub mod soft;

#[cfg(feature = "kvm")]
pub mod cpu;
#[cfg(feature = "kvm")]
pub mod live;
#[cfg(feature = "kvm")]
mod vm;

pub use guest::Workload;

#[cfg(feature = "kvm")]
pub use cpu::{CpuState, DTable, Fpu, Msr, Segment, MAX_MSRS, SAVED_MSRS};
#[cfg(feature = "kvm")]
pub use vm::{DirtyLog, Error, RunReport, Vm};

/// Which guest a tinyvm runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// The KVM guest (feature `kvm`, `/dev/kvm`).
    Kvm,
    /// The software guest ([`soft`]).
    Soft,
}

impl Mode {
    /// The command-line flag that selects this mode.
    #[must_use]
    pub fn flag(self) -> &'static str {
        match self {
            Mode::Kvm => "--kvm",
            Mode::Soft => "--soft",
        }
    }

    /// The name the summary line prints.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Mode::Kvm => "kvm",
            Mode::Soft => "soft",
        }
    }

    /// The mode for the `--kvm` / `--soft` flags, with the reason it was chosen: `--soft` is the
    /// software guest; `--kvm` is KVM or an error; neither is KVM when this build has the `kvm`
    /// feature and `/dev/kvm` opens, else the software guest.
    ///
    /// # Errors
    ///
    /// `--kvm` in a build without the `kvm` feature, or when `/dev/kvm` does not open.
    pub fn pick(kvm: bool, soft: bool) -> Result<(Mode, String), String> {
        if soft {
            return Ok((Mode::Soft, "software guest (--soft)".into()));
        }
        let kvm_built = cfg!(feature = "kvm");
        if kvm {
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
}

fn kvm_opens() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm: {e}"))
}

/// The machine type every tinyvm runs: `pc-i440fx-7.2` of [`crate::catalog`].
///
/// # Panics
///
/// Never: the catalog has that machine type.
#[must_use]
pub fn machine() -> MachineType {
    crate::catalog()
        .resolve("pc-i440fx-7.2")
        .expect("pc-i440fx-7.2 is in the catalog")
}

/// The [`monotonic_ns`] stored in `at` once a guest thread has set it (non-zero), polling for
/// up to `bound`; `None` if it was not set by then. Both guests' run threads record when they
/// began to run this way.
pub(crate) fn wait_for_start(at: &AtomicU64, bound: Duration) -> Option<u64> {
    let t0 = Instant::now();
    loop {
        match at.load(Ordering::Acquire) {
            0 if t0.elapsed() < bound => std::thread::sleep(Duration::from_micros(50)),
            0 => return None,
            ns => return Some(ns),
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds. It is one clock for every process of this host, so the
/// moment one child stopped the guest and the moment the other started it can be subtracted:
/// that is a hop's downtime.
#[must_use]
#[allow(unsafe_code)]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call, and CLOCK_MONOTONIC is
    // a clock every Linux kernel has; the call writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

/// Precopy passes before the guest is stopped regardless of the downtime target (the default of
/// `--max-passes`): with a bandwidth limit, auto-converge needs passes to raise its throttle.
pub const MAX_PASSES: u32 = 30;

/// The precopy settings of every tinyvm migration: a 50 ms downtime target, at most
/// [`MAX_PASSES`] passes (`tinyvm pingpong --max-passes` overrides it), auto-converge on, and
/// `bandwidth_limit` (bytes per second, `None` = unlimited).
#[must_use]
pub fn settings(bandwidth_limit: Option<u64>) -> Settings {
    Settings {
        downtime: Duration::from_millis(50),
        max_passes: MAX_PASSES,
        ack_timeout: Duration::from_secs(20),
        bandwidth_limit,
        ..Settings::default()
    }
}

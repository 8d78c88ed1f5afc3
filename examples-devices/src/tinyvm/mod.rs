//! The KVM side of tinyvm (feature `kvm`): a tiny hand-assembled guest, a KVM runner that
//! emulates COM1 with the example [`Serial16550`](crate::Serial16550), and the vCPU state as a
//! derived VmState type.
//!
//! - [`guest`]: the guest program (real mode, 1 MiB of RAM) that walks its pages writing a
//!   per-page counter and prints `A`, then a `B` per pass, to COM1; the pattern invariant and
//!   its check.
//! - [`Vm`]: kvm-ioctls VM with vm-memory RAM and one vCPU; [`Vm::run_for`], pause/resume,
//!   [`Vm::save_cpu`] / [`Vm::restore_cpu`].
//! - [`CpuState`]: section `tinyvm-cpu` v1 — registers, special registers, FPU, MSRs, LAPIC.
//! - [`live`]: live migration with `vmstate-migration` — the vCPU on its own thread, KVM's
//!   dirty log ([`DirtyLog`], the slot is registered with `KVM_MEM_LOG_DIRTY_PAGES`) feeding the
//!   RAM passes, `tinyvm-cpu` and `serial` device sections, a destination that restores and
//!   starts the vCPU only after the acknowledgement. The `tinyvm` binary's `pingpong` uses it.
//!
//! An in-process migration: stop the source (return from `run_for`), save its [`CpuState`] and
//! [`SerialSection`](crate::SerialSection) payloads, copy RAM, load the payloads on the
//! destination, restore, run. The tests in `tests/tinyvm_kvm.rs` do exactly that.

pub mod cpu;
pub mod guest;
pub mod live;
mod vm;

pub use cpu::{CpuState, DTable, Fpu, Msr, Segment, MAX_MSRS, SAVED_MSRS};
pub use vm::{DirtyLog, Error, RunReport, Vm};

//! RAM precopy live migration in QEMU's migration stream format (v3) over vm-memory.
//!
//! A source VM ([`MigrationSource`]: its [`VmParts`] — a [`GuestRam`], a device [`Registry`], a
//! machine type — and vCPU stop/resume/throttle callbacks) is sent with [`migrate`] over a
//! [`Transport`] (TCP, Unix socket, file); the destination ([`MigrationDestination`]) loads it
//! with [`receive`] and answers over the same connection (the return path). The stream is what
//! QEMU writes for a precopy migration: header, configuration, the `ram` iterative section
//! (START, PARTs, END), the device FULL sections, EOF and the vmdesc, so
//! `analyze-migration.py` and [`vmstate_runtime::decode::decode_stream`] read it.
//!
//! | module | role |
//! |---|---|
//! | [`memory`] | named RAM blocks over `GuestMemoryMmap<AtomicBitmap>`, dirty log |
//! | [`ram`] | the RAM section: [`RamWriter`] (source), [`RamLoader`] (destination, validating) |
//! | [`precopy`] | [`migrate`]: passes, convergence, stop, devices, ack; statistics |
//! | [`dest`] | [`receive`]: incremental load, all-or-nothing devices, ack, resume |
//! | [`snapshot`] | snapshot files: device state + memory at fixed offsets, restore by `mmap` |
//! | [`channels`] | RAM pages over N parallel page channels: handshake, sync points, readers |
//! | [`transport`] | [`Transport`] for TCP / Unix / file, the `LOADED` / `ERR …` → `GO` handshake |
//!
//! Failure semantics: the source resumes its guest, unchanged, on every error before the
//! destination's `LOADED` (including the destination's `ERR`, a cut connection, a `LOADED`
//! timeout, cancel); the destination applies no device state and never starts, and its guest
//! memory (written as pages arrive) is scratch. The destination starts only on the source's `GO`,
//! which the source sends after committing; a lost `GO` leaves the VM paused on both sides
//! ([`MigrationError::NoGo`] on the destination), never running twice.

#![deny(missing_docs)]
// Unsafe code is confined to `sys` (writev from guest memory, madvise, the destination page, the
// MAP_FIXED mapping of a snapshot increment).
#![deny(unsafe_code)]

pub mod channels;
pub mod dest;
pub mod error;
pub mod integrity;
pub mod memory;
pub mod precopy;
pub mod preflight;
pub mod ram;
pub mod snapshot;
mod sys;
pub mod transport;
pub mod verify;

pub use channels::ChannelListener;
pub use dest::{receive, MigrationDestination, ReceiveSettings};

use vmstate_runtime::{MachineType, Registry};

/// What both ends of a migration are made of: guest memory, devices and the machine type.
/// [`MigrationSource`] and [`MigrationDestination`] build on it, so a VM type that can be both
/// says where its parts are once.
pub trait VmParts {
    /// Its guest memory.
    fn ram(&self) -> &GuestRam;
    /// Its devices.
    fn registry(&self) -> &Registry;
    /// Its machine type.
    fn machine(&self) -> &MachineType;
}

/// Implements [`VmParts`] for a type that keeps its parts in fields named `ram`, `registry` and
/// `machine`: `impl_vm_parts!(MyVm)` reads `self.ram`, …; `impl_vm_parts!(MyDest, guest)` reads
/// them under a field path, `self.guest.ram`, ….
///
/// # Examples
///
/// ```
/// use vmstate_migration::{impl_vm_parts, GuestRam, VmParts};
/// use vmstate_runtime::{MachineCatalog, MachineType, Registry};
///
/// struct Parts {
///     ram: GuestRam,
///     registry: Registry,
///     machine: MachineType,
/// }
/// struct Vm {
///     parts: Parts,
/// }
/// impl_vm_parts!(Vm, parts);
///
/// let vm = Vm {
///     parts: Parts {
///         ram: GuestRam::new(&[("pc.ram", 0, 1 << 20)])?,
///         registry: Registry::new(),
///         machine: MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap(),
///     },
/// };
/// assert!(vm.registry().keys().is_empty());
/// assert_eq!(vm.machine().name(), "pc-i440fx-7.2");
/// # Ok::<(), vmstate_migration::MigrationError>(())
/// ```
#[macro_export]
macro_rules! impl_vm_parts {
    ($ty:ty $(, $($path:ident).+)?) => {
        impl $crate::VmParts for $ty {
            fn ram(&self) -> &$crate::GuestRam {
                &self$($(.$path)+)?.ram
            }
            fn registry(&self) -> &$crate::__private::Registry {
                &self$($(.$path)+)?.registry
            }
            fn machine(&self) -> &$crate::__private::MachineType {
                &self$($(.$path)+)?.machine
            }
        }
    };
}

/// What [`impl_vm_parts!`] expands to refers to; not public API.
#[doc(hidden)]
pub mod __private {
    pub use vmstate_runtime::{MachineType, Registry};
}
pub use error::{MigrationError, Origin, Result};
pub use memory::{GuestMem, GuestRam, PAGE_SIZE};
pub use precopy::{
    migrate, MigrationSource, PassProgress, PassStats, Phase, ProgressHook, Report, Settings,
};
pub use ram::{PageCounts, RamLoader, RamWriter};
pub use transport::{FileTransport, Transport};

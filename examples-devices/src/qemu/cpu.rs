//! Per-CPU sections of QEMU 7.2's x86 machines other than `cpu` itself: `cpu_common` and
//! `kvm-tpr-opt` (the TPR access optimisation's ROM patching state). State only.

use vmstate_runtime::{MachineType, Unused, VmState};

use super::QemuState;

/// State common to every CPU model (section `cpu_common`, v1, 8 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "cpu_common", version = 1, minimum_version = 1)]
pub struct CpuCommon {
    /// The CPU is halted.
    pub halted: u32,
    /// Pending interrupt request bits.
    pub interrupt_request: u32,
}

impl QemuState for CpuCommon {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The TPR access routines of one processor mode (`kvmvapic-handlers`, nested, 44 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "kvmvapic-handlers", version = 1, nested)]
pub struct KvmVapicHandlers {
    /// Address of the set-TPR routine.
    pub set_tpr: u32,
    /// Address of the set-TPR-from-EAX routine.
    pub set_tpr_eax: u32,
    /// Addresses of the get-TPR routines, one per register.
    pub get_tpr: [u32; 8],
    /// Address of the get-TPR-to-stack routine.
    pub get_tpr_stack: u32,
}

/// The option ROM's state block (`kvmvapic-guest-rom`, nested, 124 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "kvmvapic-guest-rom", version = 1, nested)]
pub struct KvmVapicGuestRom {
    /// Retired (8 bytes, zeros).
    pub dummy: Unused<8>,
    /// Guest address of the ROM.
    pub vaddr: u32,
    /// Start of the fixup table.
    pub fixup_start: u32,
    /// End of the fixup table.
    pub fixup_end: u32,
    /// Guest address of the vAPIC page.
    pub vapic_vaddr: u32,
    /// Size of the vAPIC page.
    pub vapic_size: u32,
    /// Per-CPU shift in the vAPIC page.
    pub vcpu_shift: u32,
    /// Guest address of the real TPR.
    pub real_tpr_addr: u32,
    /// Uniprocessor routines.
    pub up: KvmVapicHandlers,
    /// Multiprocessor routines.
    pub mp: KvmVapicHandlers,
}

/// The TPR access optimisation (section `kvm-tpr-opt`, v1, 144 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "kvm-tpr-opt", version = 1, minimum_version = 1)]
pub struct KvmTprOpt {
    /// The ROM's state block.
    pub rom_state: KvmVapicGuestRom,
    /// Patching state (0 = inactive).
    pub state: u32,
    /// Guest address of the real TPR.
    pub real_tpr_addr: u32,
    /// Guest address of the ROM state block.
    pub rom_state_vaddr: u32,
    /// Physical address of the vAPIC page.
    pub vapic_paddr: u32,
    /// Physical address of the ROM state block.
    pub rom_state_paddr: u32,
}

impl QemuState for KvmTprOpt {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

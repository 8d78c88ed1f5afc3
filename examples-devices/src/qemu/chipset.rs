//! Chipset sections of QEMU 7.2's pc machines: the PCI host bridge's config address
//! (`PCIHost`), the root bus's interrupt counts (`PCIBUS`), the two 8237 DMA controllers
//! (`dma`) and the two 8259 interrupt controllers (`i8259`). State only.

use vmstate_runtime::{MachineType, VmState};

use super::QemuState;

/// The host bridge's CONFIG_ADDRESS register, port 0xcf8 (section `PCIHost`, v1, 4 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "PCIHost", version = 1, minimum_version = 1)]
pub struct PciHost {
    /// The last value written to 0xcf8.
    pub config_reg: u32,
}

impl QemuState for PciHost {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The root PCI bus: how many devices assert each of its interrupt lines
/// (section `PCIBUS`, v1; 4 lines on i440fx, 8 on q35).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "PCIBUS", version = 1, minimum_version = 1)]
pub struct PciBus {
    /// Number of interrupt lines: the destination's must be the same.
    #[vmstate(equal)]
    pub nirq: i32,
    /// Per line, the number of devices asserting it.
    #[vmstate(count = nirq, max = 64)]
    pub irq_count: Vec<i32>,
}

impl QemuState for PciBus {
    fn for_machine(machine: &MachineType) -> Self {
        let nirq = if machine.family() == "pc-q35" { 8 } else { 4 };
        PciBus {
            nirq,
            irq_count: vec![0; 8],
        }
    }
}

/// One channel of an 8237 (`dma_regs`, nested, 17 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "dma_regs", version = 1, nested)]
pub struct DmaRegs {
    /// Current address and count.
    pub now: [i32; 2],
    /// Base address and count.
    pub base: [u16; 2],
    /// Mode register.
    pub mode: u8,
    /// Page register.
    pub page: u8,
    /// High page register.
    pub pageh: u8,
    /// DACK level.
    pub dack: u8,
    /// End of process.
    pub eop: u8,
}

/// One 8237 DMA controller (section `dma`, v1, 75 bytes; instance 0 is the 8-bit controller,
/// instance 1 the 16-bit one).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "dma", version = 1, minimum_version = 1)]
pub struct Dma {
    /// Command register.
    pub command: u8,
    /// Channel mask register.
    pub mask: u8,
    /// Byte pointer flip-flop.
    pub flip_flop: u8,
    /// Address shift: 0 for the 8-bit controller, 1 for the 16-bit one.
    #[vmstate(range = 0..=1)]
    pub dshift: i32,
    /// The four channels.
    #[vmstate(since = 1)]
    pub regs: [DmaRegs; 4],
}

impl QemuState for Dma {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// One 8259 interrupt controller (section `i8259`, v1, 16 bytes; instance 0 the master,
/// 1 the slave).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "i8259", version = 1, minimum_version = 1)]
pub struct I8259 {
    /// Edge detection: the IRR as last sampled.
    pub last_irr: u8,
    /// Interrupt request register.
    pub irr: u8,
    /// Interrupt mask register.
    pub imr: u8,
    /// In-service register.
    pub isr: u8,
    /// Rotation: the lowest priority line + 1.
    pub priority_add: u8,
    /// Vector base (ICW2).
    pub irq_base: u8,
    /// OCW3 read register select.
    pub read_reg_select: u8,
    /// Poll command pending.
    pub poll: u8,
    /// Special mask mode.
    pub special_mask: u8,
    /// Initialisation sequence state.
    pub init_state: u8,
    /// Automatic EOI.
    pub auto_eoi: u8,
    /// Rotate on automatic EOI.
    pub rotate_on_auto_eoi: u8,
    /// Special fully nested mode.
    pub special_fully_nested_mode: u8,
    /// ICW4 expected.
    pub init4: u8,
    /// Single (no cascade) mode.
    pub single_mode: u8,
    /// Edge/level control register.
    pub elcr: u8,
}

impl QemuState for I8259 {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

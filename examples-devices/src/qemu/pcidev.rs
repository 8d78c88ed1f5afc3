//! The PCI functions of QEMU 7.2's pc machines, each embedding a [`PciDevice`] whose
//! destination config space carries the function's read-only identity (vendor, device,
//! revision, class code, header type, capabilities), so a stream from another device fails the
//! load as QEMU's does. The identities are the ones the golden streams' config spaces show.

use vmstate_runtime::{MachineType, Unused, VmState};

use super::pci::{PciDevice, PciHeader};
use super::QemuState;

/// QEMU's subsystem ids on every function here (Red Hat, QEMU).
const SUBSYSTEM: (u16, u16) = (0x1af4, 0x1100);

pub(super) fn function(
    device: u16,
    revision: u8,
    class: [u8; 3],
    multi: bool,
    pin: u8,
) -> PciDevice {
    function_with_caps(device, revision, class, multi, pin, Vec::new())
}

/// A function with capabilities, `(offset, capability id)` in list order.
pub(super) fn function_with_caps(
    device: u16,
    revision: u8,
    class: [u8; 3],
    multi: bool,
    pin: u8,
    capabilities: Vec<(u8, u8)>,
) -> PciDevice {
    PciDevice::new(&PciHeader {
        vendor: 0x8086,
        device,
        revision,
        class,
        header_type: if multi { 0x80 } else { 0 },
        subsystem: SUBSYSTEM,
        interrupt_pin: pin,
        capabilities,
    })
}

/// The i440FX host bridge, 8086:1237 (section `0000:00:00.0/I440FX`, v3).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "I440FX", version = 3, minimum_version = 3)]
pub struct I440fx {
    /// The function's PCI state.
    pub parent_obj: PciDevice,
    /// A retired byte (QEMU's `VMSTATE_UNUSED(1)`).
    pub unused: Unused<1>,
}

impl QemuState for I440fx {
    fn for_machine(_: &MachineType) -> Self {
        I440fx {
            parent_obj: function(0x1237, 0x02, [0x06, 0x00, 0x00], false, 0),
            unused: Unused,
        }
    }
}

/// The Q35 host bridge (MCH), 8086:29c0 (section `0000:00:00.0/mch`, v1).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "mch", version = 1, minimum_version = 1)]
pub struct Mch {
    /// The function's PCI state.
    pub parent_obj: PciDevice,
    /// A retired byte (QEMU's `VMSTATE_UNUSED(1)`).
    pub unused: Unused<1>,
}

impl QemuState for Mch {
    fn for_machine(_: &MachineType) -> Self {
        Mch {
            parent_obj: function(0x29c0, 0x00, [0x06, 0x00, 0x00], false, 0),
            unused: Unused,
        }
    }
}

/// The PIIX3 PCI-to-ISA bridge, 8086:7000 (section `0000:00:01.0/PIIX3`, v3, accepts v2).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "PIIX3",
    version = 3,
    minimum_version = 2,
    subsection(name = "PIIX3/rcr", version = 1, minimum_version = 1,
               when = pred(Self::rcr_needed))
)]
pub struct Piix3 {
    /// The function's PCI state.
    pub dev: PciDevice,
    /// The level of each PIRQ line as the bridge routes it (version 3 on).
    #[vmstate(since = 3, keep)]
    pub pci_irq_levels_vmstate: [i32; 4],
    /// The reset control register, port 0xcf9: sent when not zero.
    #[vmstate(subsection = "PIIX3/rcr", default)]
    pub rcr: u8,
}

impl Piix3 {
    fn rcr_needed(&self) -> bool {
        self.rcr != 0
    }
}

impl QemuState for Piix3 {
    fn for_machine(_: &MachineType) -> Self {
        Piix3 {
            dev: function(0x7000, 0x00, [0x06, 0x01, 0x00], true, 0),
            pci_irq_levels_vmstate: [0; 4],
            rcr: 0,
        }
    }
}

/// The PM SMBus controller's registers (`pmsmb`, nested in `ich9_smb` and `piix4_pm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "pmsmb", version = 1, minimum_version = 1, nested)]
pub struct PmSmb {
    /// Host status.
    pub smb_stat: u8,
    /// Host control.
    pub smb_ctl: u8,
    /// Host command.
    pub smb_cmd: u8,
    /// Transmit slave address.
    pub smb_addr: u8,
    /// Host data 0.
    pub smb_data0: u8,
    /// Host data 1.
    pub smb_data1: u8,
    /// Index into the block data.
    pub smb_index: u32,
    /// Block data.
    pub smb_data: [u8; 32],
    /// Auxiliary control.
    pub smb_auxctl: u8,
    /// Host block data byte.
    pub smb_blkdata: u8,
    /// I2C mode enabled.
    pub i2c_enable: bool,
    /// The last operation completed.
    pub op_done: bool,
    /// An I2C block read is in progress.
    pub in_i2c_block_read: bool,
    /// Start the transaction when the status is read.
    pub start_transaction_on_status_read: bool,
}

/// The ICH9 SMBus controller, 8086:2930 (section `0000:00:1f.3/ich9_smb`, v1).
///
/// Its SMBus state is migrated from pc-q35-4.0 on (measured with QEMU 7.2: 3.0 and 3.1 send
/// the PCI state only; QEMU ties this to the machine type, not to a compat property).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "ich9_smb", version = 1, minimum_version = 1)]
pub struct Ich9Smb {
    /// The function's PCI state.
    pub dev: PciDevice,
    /// The SMBus interrupt is enabled.
    #[vmstate(when = machine >= "4.0", default)]
    pub irq_enabled: bool,
    /// The SMBus controller's registers.
    #[vmstate(when = machine >= "4.0", since = 1, default)]
    pub smb: PmSmb,
}

impl QemuState for Ich9Smb {
    fn for_machine(_: &MachineType) -> Self {
        Ich9Smb {
            dev: function(0x2930, 0x02, [0x0c, 0x05, 0x00], true, 1),
            irq_enabled: false,
            smb: PmSmb::default(),
        }
    }
}

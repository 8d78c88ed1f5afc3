//! The ACPI power-management functions of QEMU 7.2's pc machines: the q35 LPC bridge with its
//! ICH9 PM block (section `0000:00:1f.0/ICH9LPC`) and the i440fx PIIX4 PM function (section
//! `0000:00:01.3/piix4_pm`). State only.
//!
//! Field lists from QEMU 7.2's `-dump-vmstate` and the golden streams' vmdesc. Gates:
//! QEMU ties some parts to the machine type through compat properties (memory hotplug from
//! 2.1, PCI hotplug state on i440fx from 2.0 and on q35 from 6.1, `acpi_index` on i440fx from
//! 7.0, PIIX4's SMBus state from 4.0), which are `machine` gates here; subsections QEMU sends
//! from guest behaviour (`*/cpuhp`: the guest switched to the modern CPU hotplug interface) are
//! re-sent exactly as received; subsections QEMU sends when their own registers are not zero
//! (`ICH9LPC/rst_cnt`, `ICH9LPC/smi_feat`) are gated on those registers, as `PIIX3/rcr` is.
//!
//! Hotplug arrays whose length is local configuration QEMU does not migrate (`devs` of the
//! memory and CPU hotplug states: the DIMM slots of `-m …,slots=N` and the possible CPUs of
//! `-smp …,maxcpus=N`) are counted by a local field (`local_count = dev_count`), as QEMU counts
//! them by its unmigrated `dev_count`: the destination is configured like the source
//! ([`Board`]; the default machine has no DIMM slots and one possible CPU), and the count is
//! bounded by QEMU's limits ([`MAX_DIMM_SLOTS`], [`MAX_CPUS`]).

use vmstate_runtime::{MachineType, Timer, VmState};

use super::pci::PciDevice;
use super::pcidev::{function, PmSmb};
use super::QemuState;

/// The APM control/status ports 0xb2/0xb3 (`APM State`, nested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "APM State", version = 1, minimum_version = 1, nested)]
pub struct ApmState {
    /// APM control (port 0xb2).
    pub apmc: u8,
    /// APM status (port 0xb3).
    pub apms: u8,
}

/// One DIMM slot's hotplug status (`memory hotplug device state`, nested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "memory hotplug device state",
    version = 1,
    minimum_version = 1,
    nested
)]
pub struct MemHotplugDev {
    /// A DIMM is plugged in the slot.
    pub is_enabled: bool,
    /// The DIMM is being inserted (event pending for the guest).
    pub is_inserting: bool,
    /// `_OST` event reported by the guest.
    pub ost_event: u32,
    /// `_OST` status reported by the guest.
    pub ost_status: u32,
}

/// The most DIMM slots a pc machine has (QEMU's `ACPI_MAX_RAM_SLOTS`).
pub const MAX_DIMM_SLOTS: u32 = 256;

/// The most possible CPUs of QEMU 7.2's pc and q35 machines (q35's `max_cpus`; i440fx: 255).
pub const MAX_CPUS: u32 = 288;

/// The board configuration the hotplug arrays are sized by: configuration QEMU does not
/// migrate, so the destination must be given the source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// DIMM slots (`-m …,slots=N`; 0 without).
    pub dimm_slots: u32,
    /// Possible CPUs (`-smp …,maxcpus=N`; the CPU count without).
    pub max_cpus: u32,
}

impl Default for Board {
    /// The default machine: no DIMM slots, one CPU.
    fn default() -> Self {
        Board {
            dimm_slots: 0,
            max_cpus: 1,
        }
    }
}

/// The memory hotplug register block (`memory hotplug state`, nested).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "memory hotplug state",
    version = 1,
    minimum_version = 1,
    nested
)]
pub struct MemHotplugState {
    /// The slot the guest selected.
    pub selector: u32,
    /// Per-slot status: one per DIMM slot (`dev_count`, not sent).
    #[vmstate(local_count = dev_count, max = 256)]
    pub devs: Vec<MemHotplugDev>,
    /// DIMM slots (QEMU's `dev_count`, the machine's `ram_slots`): configuration.
    #[vmstate(skip)]
    pub dev_count: u32,
}

impl MemHotplugState {
    /// The registers of a machine with `slots` DIMM slots, none plugged.
    #[must_use]
    pub fn with_slots(slots: u32) -> Self {
        let slots = slots.min(MAX_DIMM_SLOTS);
        MemHotplugState {
            selector: 0,
            devs: vec![MemHotplugDev::default(); slots as usize],
            dev_count: slots,
        }
    }
}

/// One possible CPU's hotplug status (`CPU hotplug device state`, nested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "CPU hotplug device state",
    version = 1,
    minimum_version = 1,
    nested
)]
pub struct CpuHotplugDev {
    /// The CPU is being inserted.
    pub is_inserting: bool,
    /// The CPU is being removed.
    pub is_removing: bool,
    /// `_OST` event reported by the guest.
    pub ost_event: u32,
    /// `_OST` status reported by the guest.
    pub ost_status: u32,
}

/// The modern CPU hotplug register block (`CPU hotplug state`, nested).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "CPU hotplug state", version = 1, minimum_version = 1, nested)]
pub struct CpuHotplugState {
    /// The CPU the guest selected.
    pub selector: u32,
    /// The last command written.
    pub command: u8,
    /// Per-CPU status: one per possible CPU (`dev_count`, not sent).
    #[vmstate(local_count = dev_count, max = 288)]
    pub devs: Vec<CpuHotplugDev>,
    /// Possible CPUs (QEMU's `dev_count`, `-smp maxcpus`): configuration.
    #[vmstate(skip)]
    pub dev_count: u32,
}

impl CpuHotplugState {
    /// The registers of a machine with `cpus` possible CPUs.
    #[must_use]
    pub fn with_cpus(cpus: u32) -> Self {
        let cpus = cpus.min(MAX_CPUS);
        CpuHotplugState {
            selector: 0,
            command: 0,
            devs: vec![CpuHotplugDev::default(); cpus as usize],
            dev_count: cpus,
        }
    }
}

impl Default for CpuHotplugState {
    /// One possible CPU (the default machine).
    fn default() -> Self {
        Self::with_cpus(1)
    }
}

/// Slot hotplug events of one PCI bus (`acpi_pcihp_pci_status`, nested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "acpi_pcihp_pci_status",
    version = 1,
    minimum_version = 1,
    nested
)]
pub struct PciHpStatus {
    /// Slots with a device arriving.
    pub up: u32,
    /// Slots with a device leaving.
    pub down: u32,
}

/// The same two words under their pre-2.0 vmsd name (`pci_status`, nested), as PIIX4 sends
/// them for its root bus when ACPI hotplug of bridges is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "pci_status", version = 1, minimum_version = 1, nested)]
pub struct PciStatus {
    /// Slots with a device arriving.
    pub up: u32,
    /// Slots with a device leaving.
    pub down: u32,
}

/// PCI buses the ACPI PCI hotplug state covers (QEMU's `ACPI_PCIHP_MAX_HOTPLUG_BUS`).
pub const PCIHP_BUSES: usize = 256;

/// The TCO watchdog's registers (`tco io device status`, nested).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "tco io device status",
    version = 1,
    minimum_version = 1,
    nested
)]
pub struct TcoRegs {
    #[vmstate(rename = "tco.rld")]
    pub rld: u16,
    #[vmstate(rename = "tco.din")]
    pub din: u8,
    #[vmstate(rename = "tco.dout")]
    pub dout: u8,
    #[vmstate(rename = "tco.sts1")]
    pub sts1: u16,
    #[vmstate(rename = "tco.sts2")]
    pub sts2: u16,
    #[vmstate(rename = "tco.cnt1")]
    pub cnt1: u16,
    #[vmstate(rename = "tco.cnt2")]
    pub cnt2: u16,
    #[vmstate(rename = "tco.msg1")]
    pub msg1: u8,
    #[vmstate(rename = "tco.msg2")]
    pub msg2: u8,
    #[vmstate(rename = "tco.wdcnt")]
    pub wdcnt: u8,
    #[vmstate(rename = "tco.tmr")]
    pub tmr: u16,
    /// Software-generated IRQ register.
    pub sw_irq_gen: u8,
    /// The watchdog's timer.
    pub tco_timer: Timer,
    /// When the timer expires (virtual clock, ns).
    pub expire_time: i64,
    /// Timeouts so far (the second one resets the machine).
    pub timeouts_no: u8,
}

impl Default for TcoRegs {
    fn default() -> Self {
        TcoRegs {
            rld: 0,
            din: 0,
            dout: 0,
            sts1: 0,
            sts2: 0,
            cnt1: 0,
            cnt2: 0,
            msg1: 0,
            msg2: 0,
            wdcnt: 0,
            tmr: 0,
            sw_irq_gen: 0,
            tco_timer: Timer::disarmed(),
            expire_time: 0,
            timeouts_no: 0,
        }
    }
}

/// The ICH9 power-management block (`ich9_pm`, nested in `ICH9LPC`).
///
/// Subsections: `ich9_pm/memhp` from machine 2.1 (every q35 machine type), `ich9_pm/tco`
/// always (QEMU's `enable_tco` is on unless set off by hand), `ich9_pm/cpuhp` re-sent as
/// received, `ich9_pm/pcihp` from pc-q35-6.1 (QEMU's compat tables turn ACPI PCI hotplug off
/// up to 6.0; measured with QEMU 7.2).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "ich9_pm",
    version = 1,
    minimum_version = 1,
    nested,
    subsection(name = "ich9_pm/memhp", version = 1, minimum_version = 1,
               when = machine >= "2.1"),
    subsection(name = "ich9_pm/tco", version = 1, minimum_version = 1),
    subsection(name = "ich9_pm/cpuhp", version = 1, minimum_version = 1,
               when = pred(Self::had_cpuhp), pre_load = Self::got_cpuhp),
    subsection(name = "ich9_pm/pcihp", version = 1, minimum_version = 1,
               when = machine >= "6.1")
)]
pub struct Ich9Pm {
    /// PM1 event status.
    #[vmstate(rename = "acpi_regs.pm1.evt.sts")]
    pub pm1_evt_sts: u16,
    /// PM1 event enable.
    #[vmstate(rename = "acpi_regs.pm1.evt.en")]
    pub pm1_evt_en: u16,
    /// PM1 control.
    #[vmstate(rename = "acpi_regs.pm1.cnt.cnt")]
    pub pm1_cnt: u16,
    /// The PM timer's overflow timer.
    #[vmstate(rename = "acpi_regs.tmr.timer")]
    pub tmr_timer: Timer,
    /// When the PM timer next overflows.
    #[vmstate(rename = "acpi_regs.tmr.overflow_time")]
    pub tmr_overflow_time: i64,
    /// GPE0 status bytes.
    #[vmstate(rename = "acpi_regs.gpe.sts")]
    pub gpe_sts: [u8; 16],
    /// GPE0 enable bytes.
    #[vmstate(rename = "acpi_regs.gpe.en")]
    pub gpe_en: [u8; 16],
    /// SMI enable.
    pub smi_en: u32,
    /// SMI status.
    pub smi_sts: u32,
    /// Memory hotplug registers.
    #[vmstate(subsection = "ich9_pm/memhp", since = 1, default)]
    pub acpi_memory_hotplug: MemHotplugState,
    /// TCO watchdog registers.
    #[vmstate(subsection = "ich9_pm/tco", since = 1, default)]
    pub tco_regs: TcoRegs,
    /// Modern CPU hotplug registers.
    #[vmstate(subsection = "ich9_pm/cpuhp", since = 1, default)]
    pub cpuhp_state: CpuHotplugState,
    /// The PCI bus the guest selected for hotplug.
    #[vmstate(
        subsection = "ich9_pm/pcihp",
        rename = "acpi_pci_hotplug.hotplug_select",
        default
    )]
    pub hotplug_select: u32,
    /// Hotplug events per bus.
    #[vmstate(
        subsection = "ich9_pm/pcihp",
        rename = "acpi_pci_hotplug.acpi_pcihp_pci_status",
        since = 1,
        keep
    )]
    pub pcihp_status: [PciHpStatus; PCIHP_BUSES],
    /// The ACPI index the guest queried.
    #[vmstate(
        subsection = "ich9_pm/pcihp",
        rename = "acpi_pci_hotplug.acpi_index",
        default
    )]
    pub acpi_index: u32,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 1],
}

as_received!(Ich9Pm {
    0 => had_cpuhp, got_cpuhp;
});

impl Default for Ich9Pm {
    fn default() -> Self {
        Ich9Pm {
            pm1_evt_sts: 0,
            pm1_evt_en: 0,
            pm1_cnt: 0,
            tmr_timer: Timer::disarmed(),
            tmr_overflow_time: 0,
            gpe_sts: [0; 16],
            gpe_en: [0; 16],
            smi_en: 0,
            smi_sts: 0,
            acpi_memory_hotplug: MemHotplugState::default(),
            tco_regs: TcoRegs::default(),
            cpuhp_state: CpuHotplugState::default(),
            hotplug_select: 0,
            pcihp_status: [PciHpStatus::default(); PCIHP_BUSES],
            acpi_index: 0,
            received: [false; 1],
        }
    }
}

/// Bytes of the LPC bridge's chipset configuration registers (QEMU's `ICH9_CC_SIZE`).
pub const ICH9_CC_SIZE: usize = 16384;

/// The ICH9 LPC bridge, 8086:2918 (section `0000:00:1f.0/ICH9LPC`, v1): its PCI state, the APM
/// ports, the PM block, the chipset configuration registers and the SCI level.
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "ICH9LPC",
    version = 1,
    minimum_version = 1,
    subsection(name = "ICH9LPC/rst_cnt", version = 1, minimum_version = 1,
               when = pred(Self::rst_cnt_needed)),
    subsection(name = "ICH9LPC/smi_feat", version = 1, minimum_version = 1,
               when = pred(Self::smi_feat_needed))
)]
pub struct Ich9Lpc {
    /// The function's PCI state.
    pub d: PciDevice,
    /// The APM ports.
    pub apm: ApmState,
    /// The power-management block.
    pub pm: Ich9Pm,
    /// Chipset configuration registers (RCBA).
    pub chip_config: [u8; ICH9_CC_SIZE],
    /// The SCI line's level.
    pub sci_level: u32,
    /// The reset control register, port 0xcf9: sent when not zero.
    #[vmstate(subsection = "ICH9LPC/rst_cnt", default)]
    pub rst_cnt: u8,
    /// SMI features the guest requested (little-endian bit mask).
    #[vmstate(subsection = "ICH9LPC/smi_feat", default)]
    pub smi_guest_features_le: [u8; 8],
    /// The guest confirmed the negotiated features.
    #[vmstate(subsection = "ICH9LPC/smi_feat", default)]
    pub smi_features_ok: u8,
    /// The negotiated SMI features.
    #[vmstate(subsection = "ICH9LPC/smi_feat", default)]
    pub smi_negotiated_features: u64,
}

impl Ich9Lpc {
    fn rst_cnt_needed(&self) -> bool {
        self.rst_cnt != 0
    }

    fn smi_feat_needed(&self) -> bool {
        self.smi_guest_features_le.iter().any(|&b| b != 0) || self.smi_features_ok != 0
    }
}

impl QemuState for Ich9Lpc {
    fn for_machine(_: &MachineType) -> Self {
        Ich9Lpc {
            d: function(0x2918, 0x02, [0x06, 0x01, 0x00], true, 0),
            apm: ApmState::default(),
            pm: Ich9Pm::default(),
            chip_config: [0; ICH9_CC_SIZE],
            sci_level: 0,
            rst_cnt: 0,
            smi_guest_features_le: [0; 8],
            smi_features_ok: 0,
            smi_negotiated_features: 0,
        }
    }
}

/// PIIX4's GPE block (`gpe`, nested): one 16-bit status and one 16-bit enable register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "gpe", version = 1, minimum_version = 1, nested)]
pub struct Piix4Gpe {
    /// GPE0 status.
    pub sts: u16,
    /// GPE0 enable.
    pub en: u16,
}

/// The PIIX4 power-management function, 8086:7113 (section `0000:00:01.3/piix4_pm`, v3).
///
/// Machine-type gates (QEMU's compat tables; measured with QEMU 7.2, see
/// `docs/qemu-sections.md`): the SMBus state from 4.0; the root bus's `pci_status` up to 1.7
/// and the ACPI PCI hotplug state from 2.0 (ACPI hotplug of bridges); `acpi_index` from 7.0;
/// `piix4_pm/memhp` from 2.1. `piix4_pm/cpuhp` is re-sent as received.
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "piix4_pm",
    version = 3,
    minimum_version = 3,
    subsection(name = "piix4_pm/memhp", version = 1, minimum_version = 1,
               when = machine >= "2.1"),
    subsection(name = "piix4_pm/cpuhp", version = 1, minimum_version = 1,
               when = pred(Self::had_cpuhp), pre_load = Self::got_cpuhp)
)]
pub struct Piix4Pm {
    /// The function's PCI state.
    pub parent_obj: PciDevice,
    /// PM1 event status.
    #[vmstate(rename = "ar.pm1.evt.sts")]
    pub pm1_evt_sts: u16,
    /// PM1 event enable.
    #[vmstate(rename = "ar.pm1.evt.en")]
    pub pm1_evt_en: u16,
    /// PM1 control.
    #[vmstate(rename = "ar.pm1.cnt.cnt")]
    pub pm1_cnt: u16,
    /// The APM ports.
    pub apm: ApmState,
    /// The SMBus controller (machine 4.0 on).
    #[vmstate(when = machine >= "4.0", since = 3, default)]
    pub smb: PmSmb,
    /// The PM timer's overflow timer.
    #[vmstate(rename = "ar.tmr.timer")]
    pub tmr_timer: Timer,
    /// When the PM timer next overflows.
    #[vmstate(rename = "ar.tmr.overflow_time")]
    pub tmr_overflow_time: i64,
    /// The GPE block.
    #[vmstate(rename = "ar.gpe", since = 2)]
    pub gpe: Piix4Gpe,
    /// The root bus's hotplug events, as machine types up to 1.7 send them.
    #[vmstate(
        rename = "acpi_pci_hotplug.acpi_pcihp_pci_status[0x0]",
        when = machine <= "1.7",
        since = 2,
        default
    )]
    pub root_pci_status: PciStatus,
    /// The PCI bus the guest selected for hotplug (machine 2.0 on).
    #[vmstate(
        rename = "acpi_pci_hotplug.hotplug_select",
        when = machine >= "2.0",
        default
    )]
    pub hotplug_select: u32,
    /// Hotplug events per bus (machine 2.0 on).
    #[vmstate(
        rename = "acpi_pci_hotplug.acpi_pcihp_pci_status",
        when = machine >= "2.0",
        since = 1,
        keep
    )]
    pub pcihp_status: [PciHpStatus; PCIHP_BUSES],
    /// The ACPI index the guest queried (machine 7.0 on).
    #[vmstate(rename = "acpi_pci_hotplug.acpi_index", when = machine >= "7.0", default)]
    pub acpi_index: u32,
    /// Memory hotplug registers.
    #[vmstate(subsection = "piix4_pm/memhp", since = 1, default)]
    pub acpi_memory_hotplug: MemHotplugState,
    /// Modern CPU hotplug registers.
    #[vmstate(subsection = "piix4_pm/cpuhp", since = 1, default)]
    pub cpuhp_state: CpuHotplugState,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 1],
}

as_received!(Piix4Pm {
    0 => had_cpuhp, got_cpuhp;
});

impl QemuState for Piix4Pm {
    fn for_machine(_: &MachineType) -> Self {
        Piix4Pm {
            parent_obj: function(0x7113, 0x03, [0x06, 0x80, 0x00], false, 1),
            pm1_evt_sts: 0,
            pm1_evt_en: 0,
            pm1_cnt: 0,
            apm: ApmState::default(),
            smb: PmSmb::default(),
            tmr_timer: Timer::disarmed(),
            tmr_overflow_time: 0,
            gpe: Piix4Gpe::default(),
            root_pci_status: PciStatus::default(),
            hotplug_select: 0,
            pcihp_status: [PciHpStatus::default(); PCIHP_BUSES],
            acpi_index: 0,
            acpi_memory_hotplug: MemHotplugState::default(),
            cpuhp_state: CpuHotplugState::default(),
            received: [false; 1],
        }
    }
}

impl Ich9Lpc {
    /// The function as [`QemuState::for_machine`] builds it, on a board configured as `board`.
    #[must_use]
    pub fn for_board(machine: &MachineType, board: &Board) -> Self {
        let mut d = Self::for_machine(machine);
        d.pm.acpi_memory_hotplug = MemHotplugState::with_slots(board.dimm_slots);
        d.pm.cpuhp_state = CpuHotplugState::with_cpus(board.max_cpus);
        d
    }
}

impl Piix4Pm {
    /// The function as [`QemuState::for_machine`] builds it, on a board configured as `board`.
    #[must_use]
    pub fn for_board(machine: &MachineType, board: &Board) -> Self {
        let mut d = Self::for_machine(machine);
        d.acpi_memory_hotplug = MemHotplugState::with_slots(board.dimm_slots);
        d.cpuhp_state = CpuHotplugState::with_cpus(board.max_cpus);
        d
    }
}

//! Small board sections of QEMU 7.2's pc machines: `timer`, `fw_cfg`, `pcspk`, `port92`,
//! `i2c_bus`, `acpi_build`, `globalstate`. State only.

use vmstate_runtime::{MachineType, Unused, VmState};

use super::QemuState;

/// The virtual clock's migrated state (section `timer`, v2, 24 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "timer", version = 2, minimum_version = 2)]
pub struct TimerState {
    /// Offset of the guest TSC (ticks).
    pub cpu_ticks_offset: i64,
    /// A retired field (8 bytes, zeros).
    pub dummy: Unused<8>,
    /// The virtual clock (ns) while the VM is stopped, as saved.
    pub cpu_clock_offset: i64,
}

impl QemuState for TimerState {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The firmware configuration device (section `fw_cfg`, v2; loads v1).
///
/// The two subsections follow the machine type (measured with QEMU 7.2: `fw_cfg/dma` from
/// pc-i440fx-2.5 on, `fw_cfg/acpi_mr` from 5.0 on). Version 1 sent the read offset as 16 bits
/// (QEMU's `VMSTATE_UINT16_HACK`, present only in version-1 streams); version 2 as 32 bits.
/// Both entries are named `cur_offset`, as in QEMU's vmsd (the vmdesc names the second
/// `cur_offset[1]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "fw_cfg",
    version = 2,
    minimum_version = 1,
    post_load = Self::offset_from_v1,
    subsection(name = "fw_cfg/dma", version = 0, minimum_version = 0, when = machine >= "2.5"),
    subsection(name = "fw_cfg/acpi_mr", version = 1, minimum_version = 1, when = machine >= "5.0")
)]
pub struct FwCfg {
    /// The selected item.
    pub cur_entry: u16,
    /// The read offset as a version-1 stream sends it: 16 bits (`post_load` moves it to
    /// `cur_offset`).
    #[vmstate(
        u16_hack,
        rename = "cur_offset",
        when = pred(Self::is_version_1),
        default
    )]
    pub cur_offset_v1: u32,
    /// The read offset in the selected item.
    #[vmstate(rename = "cur_offset", since = 2, default)]
    pub cur_offset: u32,
    /// The DMA interface's address register.
    #[vmstate(subsection = "fw_cfg/dma", default)]
    pub dma_addr: u64,
    /// Sizes of the ACPI blobs' memory regions.
    #[vmstate(subsection = "fw_cfg/acpi_mr", default)]
    pub table_mr_size: u64,
    /// See `table_mr_size`.
    #[vmstate(subsection = "fw_cfg/acpi_mr", default)]
    pub linker_mr_size: u64,
    /// See `table_mr_size`.
    #[vmstate(subsection = "fw_cfg/acpi_mr", default)]
    pub rsdp_mr_size: u64,
}

impl FwCfg {
    /// QEMU's `is_version_1`: the 16-bit offset is in version-1 streams only.
    fn is_version_1(&self, version: u32) -> bool {
        version == 1
    }

    #[allow(clippy::unnecessary_wraps)]
    fn offset_from_v1(&mut self, version: u32) -> Result<(), std::convert::Infallible> {
        if version == 1 {
            self.cur_offset = self.cur_offset_v1;
        }
        self.cur_offset_v1 = 0;
        Ok(())
    }
}

impl QemuState for FwCfg {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The PC speaker (section `pcspk`, v1, 2 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "pcspk", version = 1, minimum_version = 1)]
pub struct Pcspk {
    /// Speaker data enable (port 0x61 bit 1).
    pub data_on: u8,
    /// The refresh-clock toggle port 0x61 bit 4 shows.
    pub dummy_refresh_clock: u8,
}

impl QemuState for Pcspk {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// System control port A, 0x92 (section `port92`, v1, 1 byte).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "port92", version = 1, minimum_version = 1)]
pub struct Port92 {
    /// The port's value (A20 gate, fast reset).
    pub outport: u8,
}

impl QemuState for Port92 {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The SMBus's I2C bus (section `i2c_bus`, v1, 1 byte).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "i2c_bus", version = 1, minimum_version = 1)]
pub struct I2cBus {
    /// Address of the device in a transfer at save time.
    pub saved_address: u8,
}

impl QemuState for I2cBus {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// Whether the ACPI tables were patched by the firmware (section `acpi_build`, v1, 1 byte).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "acpi_build", version = 1, minimum_version = 1)]
pub struct AcpiBuild {
    /// 1 once the firmware read the tables.
    pub patched: u8,
}

impl QemuState for AcpiBuild {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The run state the destination takes over (section `globalstate`, v1, 104 bytes).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "globalstate", version = 1, minimum_version = 1)]
pub struct GlobalState {
    /// Length of the run state name including its NUL.
    #[vmstate(range = 0..=100)]
    pub size: u32,
    /// The run state name (`prelaunch`, `paused`, …), NUL-padded.
    #[vmstate(buffer)]
    pub runstate: [u8; 100],
}

impl GlobalState {
    /// The run state name.
    #[must_use]
    pub fn runstate(&self) -> &str {
        let end = self.runstate.iter().position(|&b| b == 0).unwrap_or(100);
        std::str::from_utf8(&self.runstate[..end]).unwrap_or("")
    }
}

impl QemuState for GlobalState {
    fn for_machine(_: &MachineType) -> Self {
        GlobalState {
            size: 0,
            runstate: [0; 100],
        }
    }
}

/// The KVM paravirtual clock (section `kvmclock`, v1, KVM guests only): the guest's
/// `kvmclock` time at the stop.
///
/// `kvmclock/clock_is_reliable` is sent when the device's `x-mach-use-reliable-get-clock`
/// property is on, which QEMU's compat tables turn off up to 2.8 (measured with QEMU 7.2 and
/// KVM: pc-i440fx-2.8 sends no subsection, 2.9 and 7.2 send it); [`compat_entries`] says so.
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "kvmclock",
    version = 1,
    minimum_version = 1,
    prop(name = "x-mach-use-reliable-get-clock", default = true),
    subsection(name = "kvmclock/clock_is_reliable", version = 1, minimum_version = 1,
               when = prop("x-mach-use-reliable-get-clock"))
)]
pub struct KvmClock {
    /// The clock in ns (`KVM_GET_CLOCK` at the stop).
    pub clock: u64,
    /// Whether `clock` came from a stable host clock (`KVM_CLOCK_TSC_STABLE`), so the
    /// destination may use it as is rather than read it back from guest memory.
    #[vmstate(subsection = "kvmclock/clock_is_reliable", default)]
    pub clock_is_reliable: bool,
}

impl QemuState for KvmClock {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The compat entries of the sections here: `kvmclock`'s `x-mach-use-reliable-get-clock` is
/// off up to 2.8.
#[must_use]
pub fn compat_entries() -> Vec<vmstate_runtime::machine::CompatEntry> {
    vec![vmstate_runtime::machine::CompatEntry {
        upto: "2.8".to_owned(),
        driver: "kvmclock".to_owned(),
        property: "x-mach-use-reliable-get-clock".to_owned(),
        value: false,
    }]
}

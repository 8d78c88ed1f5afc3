//! Interrupt and timer hardware sections of QEMU 7.2's pc machines: the I/O APIC (`ioapic`),
//! the local APIC as QEMU's TCG model saves it (`apic`) and the HPET (`hpet`). State only.

use vmstate_runtime::{MachineType, Timer, Unused, VmState};

use super::QemuState;

/// Redirection table entries of the I/O APIC.
pub const IOAPIC_NUM_PINS: usize = 24;

/// The I/O APIC (section `ioapic`, v3, min 1, 206 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "ioapic", version = 3, minimum_version = 1)]
pub struct IoApic {
    /// APIC id.
    pub id: u8,
    /// Register selected through IOREGSEL.
    pub ioregsel: u8,
    /// Retired (8 zero bytes, from version 2).
    #[vmstate(since = 2, default)]
    pub dummy: Unused<8>,
    /// Interrupt request bits, one per pin.
    #[vmstate(since = 2, default)]
    pub irr: u32,
    /// The redirection table.
    pub ioredtbl: [u64; IOAPIC_NUM_PINS],
}

impl QemuState for IoApic {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The local APIC of QEMU's TCG model (section `apic`, v3, 181 bytes without subsections).
///
/// Only the fields are declared: QEMU 7.2's `-dump-vmstate` does not list the `apic` device,
/// and the golden streams carry no `apic` subsection, so a stream with one fails to load
/// (unknown subsection) rather than being misread.
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "apic", version = 3, minimum_version = 3)]
pub struct Apic {
    /// IA32_APIC_BASE.
    pub apicbase: u32,
    /// APIC id.
    pub id: u8,
    /// Arbitration id.
    pub arb_id: u8,
    /// Task priority.
    pub tpr: u8,
    /// Spurious interrupt vector register.
    pub spurious_vec: u32,
    /// Logical destination.
    pub log_dest: u8,
    /// Destination format.
    pub dest_mode: u8,
    /// In-service register.
    pub isr: [u32; 8],
    /// Trigger mode register.
    pub tmr: [u32; 8],
    /// Interrupt request register.
    pub irr: [u32; 8],
    /// Local vector table.
    pub lvt: [u32; 6],
    /// Error status.
    pub esr: u32,
    /// Interrupt command register (low, high).
    pub icr: [u32; 2],
    /// Timer divide configuration.
    pub divide_conf: u32,
    /// Timer divide as a shift.
    pub count_shift: i32,
    /// Timer initial count.
    pub initial_count: u32,
    /// Virtual time the count was loaded (ns).
    pub initial_count_load_time: i64,
    /// Next timer event (ns).
    pub next_time: i64,
    /// The timer's expiry (ns), -1 when not armed.
    pub timer_expiry: i64,
}

impl QemuState for Apic {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// One HPET comparator (`hpet_timer`, nested, 42 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "hpet_timer", version = 1, nested)]
pub struct HpetTimer {
    /// Timer number.
    pub tn: u8,
    /// Configuration and capabilities.
    pub config: u64,
    /// Comparator.
    pub cmp: u64,
    /// FSB interrupt route.
    pub fsb: u64,
    /// Period (periodic mode).
    pub period: u64,
    /// 32-bit wrap pending.
    pub wrap_flag: u8,
    /// The comparator's timer.
    pub qemu_timer: Timer,
}

/// Most comparators an HPET block has.
pub const HPET_MAX_TIMERS: usize = 32;

/// The HPET (section `hpet`, v2, min 1; 151 bytes with three comparators and no subsection).
///
/// Its subsections are re-sent exactly when the loaded stream had them (whether QEMU sends
/// them depends on behaviour this struct does not model; see `docs/qemu-sections.md`).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "hpet",
    version = 2,
    minimum_version = 1,
    subsection(name = "hpet/rtc_irq_level", version = 1, minimum_version = 1,
               when = pred(Self::had_rtc_irq_level), pre_load = Self::got_rtc_irq_level),
    subsection(name = "hpet/offset", version = 1, minimum_version = 1,
               when = pred(Self::had_offset), pre_load = Self::got_offset)
)]
pub struct Hpet {
    /// General configuration.
    pub config: u64,
    /// General interrupt status.
    pub isr: u64,
    /// Main counter.
    pub hpet_counter: u64,
    /// Comparators (from version 2; before, the destination's count).
    #[vmstate(since = 2, keep)]
    pub num_timers: u8,
    /// The comparators.
    #[vmstate(count = num_timers, max = 32)]
    pub timer: Vec<HpetTimer>,
    /// The RTC interrupt level while the HPET routes it (legacy replacement).
    #[vmstate(subsection = "hpet/rtc_irq_level", default)]
    pub rtc_irq_level: u8,
    /// Main counter offset to the virtual clock.
    #[vmstate(subsection = "hpet/offset", default)]
    pub hpet_offset: u64,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 2],
}

as_received!(Hpet {
    0 => had_rtc_irq_level, got_rtc_irq_level;
    1 => had_offset, got_offset;
});

impl QemuState for Hpet {
    fn for_machine(_: &MachineType) -> Self {
        Hpet {
            config: 0,
            isr: 0,
            hpet_counter: 0,
            num_timers: 3,
            timer: vec![HpetTimer::default(); 3],
            rtc_irq_level: 0,
            hpet_offset: 0,
            received: [false; 2],
        }
    }
}

//! QEMU 7.2's pc machines, section by section: typed state structs and the table the
//! re-encoder ([`crate::reencode`]) looks sections up in.
//!
//! Each file here holds the state of one device or device family, declared with
//! `#[derive(VmState)]` from QEMU 7.2's own description of it (`-dump-vmstate`) and the golden
//! streams' bytes: state only, no behaviour. [`SECTIONS`] maps a vmsd name (the idstr without
//! its bus path, e.g. `I440FX` for `0000:00:00.0/I440FX`) to how a section of that name is
//! loaded into its struct and saved again. A section whose name is not in the table is copied
//! verbatim by the re-encoder and reported as opaque.
//!
//! The three devices with behaviour (`serial`, `i8254`, `mc146818rtc`) live in their own
//! modules; their entries here set their clocks as the re-encoder always did.

use vmstate_runtime::decode::DecodedSection;
use vmstate_runtime::vmdesc::DescStruct;
use vmstate_runtime::{load_payload, save_payload, Error, ErrorKind, MachineType, Result, VmState};

use crate::pit::I8254;
use crate::reencode::{ReencodeOptions, RtcReport};
use crate::rtc::{Mc146818Rtc, RtcConfig};
use crate::serial::{SerialBackend, SerialSection};

/// Gates and `pre_load` hooks for subsections re-sent exactly as received: for a struct with a
/// `received: [bool; N]` field, `as_received!(Ty { i => had, got; … })` defines `had` (the
/// subsection's `when = pred(..)`: was it in the loaded stream?) and `got` (its `pre_load`:
/// records the arrival in `received[i]`).
macro_rules! as_received {
    ($ty:ty { $($i:literal => $had:ident, $got:ident;)* }) => {
        impl $ty {
            $(
                fn $had(&self) -> bool {
                    self.received[$i]
                }
                #[allow(clippy::unnecessary_wraps)]
                fn $got(&mut self) -> ::core::result::Result<(), ::std::convert::Infallible> {
                    self.received[$i] = true;
                    Ok(())
                }
            )*
        }
    };
}

pub mod acpi;
pub mod chipset;
pub mod cpu;
pub mod fdc;
pub mod ide;
pub mod input;
pub mod irq;
pub mod misc;
pub mod pci;
pub mod pcidev;
pub mod x86cpu;

/// What a table entry sees of the section being re-encoded.
#[derive(Debug, Clone, Copy)]
pub struct SectionCx<'a> {
    /// The section's payload (between header and footer).
    pub payload: &'a [u8],
    /// The version in the section header.
    pub version: u32,
    /// The stream offset of the payload's first byte (for error offsets).
    pub base: u64,
    /// The instance id in the section header.
    pub instance_id: u32,
    /// The machine type the stream is decoded for.
    pub machine: &'a MachineType,
    /// The virtual clock at save time (the `timer` section's `cpu_clock_offset`), if known.
    pub vclock: Option<u64>,
    /// The re-encoder's options.
    pub options: &'a ReencodeOptions,
}

impl<'a> SectionCx<'a> {
    /// The context of FULL section `s` of the stream `input`, decoded for `machine`.
    #[must_use]
    pub fn of(
        input: &'a [u8],
        s: &DecodedSection,
        machine: &'a MachineType,
        vclock: Option<u64>,
        options: &'a ReencodeOptions,
    ) -> Self {
        SectionCx {
            payload: &input[s.payload_range.clone()],
            version: s.version,
            base: s.payload_range.start as u64,
            instance_id: s.instance_id,
            machine,
            vclock,
            options,
        }
    }
}

/// A section re-encoded from its typed struct.
#[derive(Debug, Clone)]
pub struct Typed {
    /// The payload as the struct saves it.
    pub bytes: Vec<u8>,
    /// The vmdesc body the save produced.
    pub desc: DescStruct,
    /// For an RTC: what it held.
    pub rtc: Option<RtcReport>,
}

/// One entry of [`SECTIONS`].
#[derive(Debug, Clone, Copy)]
pub struct TypedSection {
    /// QEMU's vmsd name: the idstr, or its part after the last `/` (the bus path).
    pub vmsd_name: &'static str,
    /// Loads the payload into the typed struct (every check and hook) and saves it again.
    pub reencode: fn(&SectionCx<'_>) -> Result<Typed>,
}

/// A state struct whose local configuration (what `equal` fields are checked against, what
/// gates read) follows from the machine type.
pub trait QemuState: VmState + Clone {
    /// The state of a freshly created device on `machine`, before a stream is loaded into it.
    fn for_machine(machine: &MachineType) -> Self;
}

/// Loads `cx`'s payload into `dev` and saves it again: (payload, vmdesc body, loaded device).
///
/// # Errors
/// Load errors (offsets made stream offsets); a save at a different version than the stream's.
pub fn load_and_save<T: VmState + Clone>(
    mut dev: T,
    cx: &SectionCx<'_>,
) -> Result<(Vec<u8>, DescStruct, T)> {
    load_payload(&mut dev, cx.payload, cx.version, cx.machine).map_err(|e| match e.offset() {
        // Offsets inside the payload → offsets in the stream.
        Some(o) => {
            let kind = e.kind().clone();
            let path = e.field_path();
            let mut n = Error::new(kind, cx.base + o);
            if let Some(p) = path {
                n = n.in_field(p);
            }
            n
        }
        None => e,
    })?;
    let (v, bytes, desc) = save_payload(&dev, cx.machine)?;
    if v != cx.version {
        return Err(Error::without_offset(ErrorKind::ValidationFailed {
            message: format!(
                "`{}` would be written at version {v}, the stream has version {}",
                T::SCHEMA.name,
                cx.version
            ),
        }));
    }
    Ok((bytes, desc, dev))
}

/// The table entry of a plain state struct.
///
/// # Errors
/// As [`load_and_save`].
pub fn typed<T: QemuState>(cx: &SectionCx<'_>) -> Result<Typed> {
    reencode_as(T::for_machine(cx.machine), cx)
}

/// Loads `cx`'s payload into `dev` and saves it again, as a [`Typed`] with no RTC report.
fn reencode_as<T: VmState + Clone>(dev: T, cx: &SectionCx<'_>) -> Result<Typed> {
    let (bytes, desc, _) = load_and_save(dev, cx)?;
    Ok(Typed {
        bytes,
        desc,
        rtc: None,
    })
}

/// The ACPI functions, with the hotplug arrays sized by the board the options describe.
fn ich9_lpc(cx: &SectionCx<'_>) -> Result<Typed> {
    let board = &cx.options.board;
    with_board_hint(
        reencode_as(acpi::Ich9Lpc::for_board(cx.machine, board), cx),
        board,
    )
}

/// See [`ich9_lpc`].
fn piix4_pm(cx: &SectionCx<'_>) -> Result<Typed> {
    let board = &cx.options.board;
    with_board_hint(
        reencode_as(acpi::Piix4Pm::for_board(cx.machine, board), cx),
        board,
    )
}

/// A section of the wrong length for this board (bytes left over, or too few) most likely
/// came from a source configured with other DIMM slots or possible CPUs, which the stream does
/// not record: the error says so, at the same offset and field.
fn with_board_hint(r: Result<Typed>, board: &acpi::Board) -> Result<Typed> {
    r.map_err(|e| {
        if !matches!(
            e.kind(),
            ErrorKind::TrailingBytes { .. } | ErrorKind::UnexpectedEof { .. }
        ) {
            return e;
        }
        let kind = ErrorKind::ValidationFailed {
            message: format!(
                "{}: the hotplug state has one entry per DIMM slot and per possible CPU, which \
                 the stream does not record; this destination has {} DIMM slots and {} \
                 possible CPUs: give the source's `-m …,slots=N` and `-smp …,maxcpus=N` \
                 (`--dimm-slots N --max-cpus N`, `ReencodeOptions::board`)",
                e.kind(),
                board.dimm_slots,
                board.max_cpus
            ),
        };
        let mut n = match e.offset() {
            Some(o) => Error::new(kind, o),
            None => Error::without_offset(kind),
        };
        if let Some(p) = e.field_path() {
            n = n.in_field(p);
        }
        n
    })
}

fn serial(cx: &SectionCx<'_>) -> Result<Typed> {
    let mut dev = SerialSection::new(SerialBackend::default());
    dev.state.set_now_ns(cx.vclock.unwrap_or(0));
    reencode_as(dev, cx)
}

fn i8254(cx: &SectionCx<'_>) -> Result<Typed> {
    let mut dev = I8254::new();
    dev.set_now_ns(cx.vclock.unwrap_or(0));
    reencode_as(dev, cx)
}

fn mc146818rtc(cx: &SectionCx<'_>) -> Result<Typed> {
    // The RTC's clock is the source's choice, not necessarily the virtual clock; the loaded
    // device holds the stream's instant, so no clock reading is needed.
    let config = RtcConfig {
        clock: cx.options.rtc_clock,
        ..RtcConfig::default()
    };
    let (bytes, desc, rtc) = load_and_save(Mc146818Rtc::power_on(config, 0, 0), cx)?;
    crate::reencode::check_rtc_clock(&rtc, cx.vclock)?;
    Ok(Typed {
        bytes,
        desc,
        rtc: Some(RtcReport {
            instance_id: cx.instance_id,
            clock: rtc.clock(),
            guest_time_secs: rtc.guest_time_secs(),
        }),
    })
}

macro_rules! table {
    ($($name:literal => $f:expr,)*) => {
        /// The typed sections, by vmsd name, in the order QEMU 7.2 saves them on a pc machine.
        pub const SECTIONS: &[TypedSection] = &[$(TypedSection { vmsd_name: $name, reencode: $f },)*];
    };
}

table! {
    "timer" => typed::<misc::TimerState>,
    "cpu_common" => typed::<cpu::CpuCommon>,
    "cpu" => typed::<x86cpu::X86Cpu>,
    "kvm-tpr-opt" => typed::<cpu::KvmTprOpt>,
    "apic" => typed::<irq::Apic>,
    "kvmclock" => typed::<misc::KvmClock>,
    "fw_cfg" => typed::<misc::FwCfg>,
    "mch" => typed::<pcidev::Mch>,
    "PCIHost" => typed::<chipset::PciHost>,
    "PCIBUS" => typed::<chipset::PciBus>,
    "I440FX" => typed::<pcidev::I440fx>,
    "dma" => typed::<chipset::Dma>,
    "PIIX3" => typed::<pcidev::Piix3>,
    "ICH9LPC" => ich9_lpc,
    "i8259" => typed::<chipset::I8259>,
    "ioapic" => typed::<irq::IoApic>,
    "hpet" => typed::<irq::Hpet>,
    "mc146818rtc" => mc146818rtc,
    "i8254" => i8254,
    "pcspk" => typed::<misc::Pcspk>,
    "fdc" => typed::<fdc::Fdc>,
    "ps2kbd" => typed::<input::Ps2Kbd>,
    "ps2mouse" => typed::<input::Ps2Mouse>,
    "pckbd" => typed::<input::PcKbd>,
    "vmmouse" => typed::<input::VmMouse>,
    "port92" => typed::<misc::Port92>,
    "ide" => typed::<ide::PciIde>,
    "ich9_ahci" => typed::<ide::Ich9Ahci>,
    "i2c_bus" => typed::<misc::I2cBus>,
    "piix4_pm" => piix4_pm,
    "ich9_smb" => typed::<pcidev::Ich9Smb>,
    "serial" => serial,
    "acpi_build" => typed::<misc::AcpiBuild>,
    "globalstate" => typed::<misc::GlobalState>,
}

/// The vmsd name of an idstr: the part after the last `/` (PCI devices carry their bus path,
/// `0000:00:01.3/piix4_pm`).
#[must_use]
pub fn vmsd_name(idstr: &str) -> &str {
    idstr.rsplit('/').next().unwrap_or(idstr)
}

/// The table entry for a section's idstr, if the section is typed.
#[must_use]
pub fn lookup(idstr: &str) -> Option<&'static TypedSection> {
    let name = vmsd_name(idstr);
    SECTIONS.iter().find(|s| s.vmsd_name == name)
}

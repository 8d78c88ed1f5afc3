//! Re-encoding a real QEMU stream through the typed devices.
//!
//! Every section the table [`crate::qemu::SECTIONS`] knows (`serial`, `i8254`, `mc146818rtc`
//! and the typed QEMU 7.2 board sections in [`crate::qemu`]) is loaded into its struct (with
//! every validation and `post_load` hook) and written again from it; every other section is
//! copied unchanged, using the vmdesc to know where each one ends, and listed as opaque in the
//! report. The vmdesc is written anew: our own description for the typed devices, the
//! input's entries for the rest. For a stream QEMU 7.2 wrote, the bytes before the vmdesc come
//! out identical, and QEMU loads the result with `-incoming`.
//!
//! The RTC's timestamps are on the clock the source chose with `-rtc clock=` (host, QEMU's
//! default, rt or vm; see [`crate::rtc`]); the stream does not record which. The loaded RTC holds
//! the stream's instant, so its time registers are written as QEMU saved them on every clock.
//! [`ReencodeOptions::rtc_clock`] names the clock: with [`RtcClock::Virtual`] the save instant
//! is known (the `timer` section's `cpu_clock_offset`), and a stream whose time registers do not
//! match `base_rtc`/`last_update` at that instant is refused as not being on the virtual clock.

use std::ops::Range;

use vmstate_runtime::decode::{decode_stream, DecodedStream, SectionKind, Value};
use vmstate_runtime::stream::StreamWriter;
use vmstate_runtime::vmdesc::{write_json, DescBody, DescDevice, Vmdesc};
use vmstate_runtime::{Error, ErrorKind, MachineCatalog, Result};

use crate::qemu::{SectionCx, Typed};
use crate::rtc::{format_time, Mc146818Rtc, RtcClock};

/// How to re-encode.
#[derive(Debug, Clone, Default)]
pub struct ReencodeOptions {
    /// The machine type; needed when the stream has no configuration section (machine types
    /// before 2.4), else taken from it.
    pub machine: Option<String>,
    /// The clock of the source's RTC (`-rtc clock=`); QEMU's default is [`RtcClock::Host`].
    pub rtc_clock: RtcClock,
    /// The source's board configuration that QEMU does not migrate but sizes state by (DIMM
    /// slots, possible CPUs); the default machine's by default.
    pub board: crate::qemu::acpi::Board,
}

/// An RTC section as re-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcReport {
    /// The instance id.
    pub instance_id: u32,
    /// The clock its timestamps were taken to be on.
    pub clock: RtcClock,
    /// The guest's time when the source saved (the time registers), seconds since the epoch.
    pub guest_time_secs: i64,
}

/// What `reencode` did.
#[derive(Debug, Clone, Default)]
pub struct ReencodeReport {
    /// The machine type the stream was decoded for.
    pub machine: String,
    /// Sections re-encoded from typed devices: (idstr, instance id, payload bytes).
    pub typed: Vec<(String, u32, usize)>,
    /// Sections copied unchanged: (idstr, instance id, total bytes).
    pub copied: Vec<(String, u32, usize)>,
    /// The FULL sections among them, which no typed struct describes yet (the RAM chunks are
    /// always copied and not listed): (idstr, instance id).
    pub opaque: Vec<(String, u32)>,
    /// Whether every byte up to and including EOF equals the input.
    pub identical_before_vmdesc: bool,
    /// Whether the vmdesc JSON text also equals the input's.
    pub identical_vmdesc: bool,
    /// The RTC sections.
    pub rtc: Vec<RtcReport>,
}

/// The virtual clock at save time, from QEMU's `timer` section (`cpu_clock_offset` holds the
/// clock while the VM is stopped, which it is during the final save).
fn virtual_clock(d: &DecodedStream) -> Option<u64> {
    d.sections
        .iter()
        .find(|s| s.idstr == "timer" && s.kind == SectionKind::Full)
        .and_then(|s| s.value.as_ref())
        .and_then(|v| v.get("cpu_clock_offset"))
        .and_then(Value::int)
        .and_then(|v| u64::try_from(v).ok())
}

/// With the virtual clock the save instant is known: the time registers must be what
/// `base_rtc`/`last_update` give then, or the RTC was not on that clock.
pub(crate) fn check_rtc_clock(rtc: &Mc146818Rtc, vclock: Option<u64>) -> Result<()> {
    let Some(now) = vclock.filter(|_| rtc.clock() == RtcClock::Virtual) else {
        return Ok(());
    };
    if rtc.time_registers_match(now) {
        return Ok(());
    }
    let mut at = rtc.clone();
    at.resume(now);
    Err(Error::without_offset(ErrorKind::ValidationFailed {
        message: format!(
            "the RTC is not on the virtual clock (-rtc clock=vm): its time registers read {}, \
             but base_rtc {:#x} and last_update {:#x} give {} at the saved virtual clock {now:#x}; \
             name the source's RTC clock (QEMU's default is host)",
            format_time(rtc.time_register_secs()),
            rtc.base_rtc,
            rtc.last_update,
            format_time(at.guest_time_secs()),
        ),
    }))
}

/// Re-encodes `input` (a QEMU 7.2 stream with a vmdesc) as `options` say.
///
/// # Errors
/// [`ErrorKind::MissingVmdesc`] for streams without a vmdesc (machine types before 2.3); any
/// decode or validation error of the typed devices, naming section and field; an unknown
/// machine type; with [`RtcClock::Virtual`], an RTC whose time registers show it was not on
/// the virtual clock.
pub fn reencode(
    input: &[u8],
    catalog: &MachineCatalog,
    options: &ReencodeOptions,
) -> Result<(Vec<u8>, ReencodeReport)> {
    let machine = options.machine.as_deref();
    let d = decode_stream(input)?;
    let Some((vmdesc_range, vmdesc)) = &d.vmdesc else {
        return Err(Error::without_offset(ErrorKind::MissingVmdesc));
    };
    let name = match (machine, d.machine.as_deref()) {
        (Some(m), _) | (None, Some(m)) => m.to_owned(),
        (None, None) => {
            return Err(Error::without_offset(ErrorKind::ValidationFailed {
                message: "the stream has no configuration section (machine types before 2.4); name the machine type with --machine".into(),
            }))
        }
    };
    let mt = catalog.resolve(&name)?;
    let vclock = virtual_clock(&d);
    // Footers as the input has them (for QEMU streams this is the machine type's framing).
    let framing = vmstate_runtime::machine::Framing {
        footers: d.footers,
        ..mt.framing()
    };
    let mut out = StreamWriter::new(Vec::with_capacity(input.len()), framing);
    let mut report = ReencodeReport {
        machine: name,
        ..ReencodeReport::default()
    };
    out.header()?;
    if let Some((_, config)) = &d.configuration {
        out.configuration(config)?;
    }
    // Sections we do not model are copied verbatim, framing included.
    let copy = |out: &mut StreamWriter<Vec<u8>>, r: &Range<usize>| {
        out.payload().extend_from_slice(&input[r.clone()]);
    };
    // The input's device entries verbatim (key order kept), for the sections copied unchanged:
    // QEMU writes forms we do not model (e.g. `tmp` fields with an inline vmsd).
    let raw: Vec<serde_json::Value> = input
        .get(vmdesc_range.start.saturating_add(5)..vmdesc_range.end)
        .and_then(|j| serde_json::from_slice::<serde_json::Value>(j).ok())
        .and_then(|v| v.get("devices").and_then(|d| d.as_array()).cloned())
        .unwrap_or_default();
    let mut devices = Vec::new();
    let mut desc_iter = vmdesc.devices.iter().enumerate();
    for s in &d.sections {
        let vm_entry = if s.kind == SectionKind::Full {
            desc_iter.next()
        } else {
            None
        };
        let typed = match (s.kind, crate::qemu::lookup(&s.idstr)) {
            (SectionKind::Full, Some(entry)) => {
                let cx = SectionCx::of(input, s, &mt, vclock, options);
                Some((entry.reencode)(&cx))
            }
            _ => None,
        };
        match typed {
            Some(r) => {
                let Typed { bytes, desc, rtc } = r.map_err(|e| {
                    e.in_section(vmstate_runtime::error::SectionRef {
                        idstr: s.idstr.clone(),
                        instance_id: s.instance_id,
                        version: Some(s.version),
                    })
                })?;
                report.rtc.extend(rtc);
                out.full_header(s.section_id, &s.idstr, s.instance_id, s.version)?;
                out.payload().extend_from_slice(&bytes);
                out.footer(s.section_id)?;
                report
                    .typed
                    .push((s.idstr.clone(), s.instance_id, bytes.len()));
                devices.push(DescDevice {
                    name: s.idstr.clone(),
                    instance_id: s.instance_id,
                    body: DescBody::Vmsd(desc),
                });
            }
            None => {
                copy(&mut out, &s.full_range);
                if s.kind == SectionKind::Full {
                    report.opaque.push((s.idstr.clone(), s.instance_id));
                }
                report
                    .copied
                    .push((s.idstr.clone(), s.instance_id, s.full_range.len()));
                if let Some((i, e)) = vm_entry {
                    devices.push(match raw.get(i) {
                        Some(v) => DescDevice {
                            name: e.name.clone(),
                            instance_id: e.instance_id,
                            body: DescBody::Raw(v.clone()),
                        },
                        None => e.clone(),
                    });
                }
            }
        }
    }
    out.eof()?;
    report.identical_before_vmdesc = out.payload()[..] == input[..=d.eof_offset];
    let json = write_json(&Vmdesc {
        configuration: vmdesc.configuration.clone(),
        page_size: vmdesc.page_size,
        devices,
        manifest: vmdesc.manifest.clone(),
    });
    let start = out.payload().len();
    out.vmdesc(&json)?;
    let out = out.into_inner();
    report.identical_vmdesc = out[start..] == input[vmdesc_range.clone()];
    Ok((out, report))
}

//! Re-encoding a real QEMU stream through the typed devices.
//!
//! The `serial`, `i8254` and `mc146818rtc` sections are loaded into [`SerialSection`],
//! [`I8254`] and [`Mc146818Rtc`] (with every validation and `post_load` hook) and written again
//! from the structs; every other section is copied unchanged, using the vmdesc to know where
//! each one ends. The vmdesc is written anew: our own description for the typed devices, the
//! input's entries for the rest. For a stream QEMU 7.2 wrote, the bytes before the vmdesc come
//! out identical, and QEMU loads the result with `-incoming`.

use std::ops::Range;

use vmstate_runtime::decode::{decode_stream, DecodedStream, SectionKind, Value};
use vmstate_runtime::stream::StreamWriter;
use vmstate_runtime::vmdesc::{write_json, DescBody, DescDevice, Vmdesc};
use vmstate_runtime::{
    load_payload, save_payload, Error, ErrorKind, MachineCatalog, MachineType, Result, VmState,
};

use crate::pit::I8254;
use crate::rtc::{LostTickPolicy, Mc146818Rtc};
use crate::serial::{SerialBackend, SerialSection};

/// What `reencode` did.
#[derive(Debug, Clone, Default)]
pub struct ReencodeReport {
    /// The machine type the stream was decoded for.
    pub machine: String,
    /// Sections re-encoded from typed devices: (idstr, instance id, payload bytes).
    pub typed: Vec<(String, u32, usize)>,
    /// Sections copied unchanged: (idstr, instance id, total bytes).
    pub copied: Vec<(String, u32, usize)>,
    /// Whether every byte up to and including EOF equals the input.
    pub identical_before_vmdesc: bool,
    /// Whether the vmdesc JSON text also equals the input's.
    pub identical_vmdesc: bool,
}

fn typed_section<T: VmState + Clone>(
    mut dev: T,
    payload: &[u8],
    version: u32,
    machine: &MachineType,
    base: u64,
) -> Result<(Vec<u8>, vmstate_runtime::vmdesc::DescStruct)> {
    load_payload(&mut dev, payload, version, machine).map_err(|e| match e.offset() {
        // Offsets inside the payload → offsets in the stream.
        Some(o) => {
            let kind = e.kind().clone();
            let path = e.field_path();
            let mut n = Error::new(kind, base + o);
            if let Some(p) = path {
                n = n.in_field(p);
            }
            n
        }
        None => e,
    })?;
    let (v, bytes, desc) = save_payload(&dev, machine)?;
    if v != version {
        return Err(Error::without_offset(ErrorKind::ValidationFailed {
            message: format!(
                "`{}` would be written at version {v}, the stream has version {version}",
                T::SCHEMA.name
            ),
        }));
    }
    Ok((bytes, desc))
}

/// The virtual clock at save time, from QEMU's `timer` section (`cpu_clock_offset` holds the
/// clock while the VM is stopped, which it is during the final save).
fn virtual_clock(d: &DecodedStream) -> u64 {
    d.sections
        .iter()
        .find(|s| s.idstr == "timer" && s.kind == SectionKind::Full)
        .and_then(|s| s.value.as_ref())
        .and_then(|v| v.get("cpu_clock_offset"))
        .and_then(Value::int)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// Re-encodes `input` (a QEMU 7.2 stream with a vmdesc). `machine` is needed when the stream
/// has no configuration section (machine types before 2.4).
///
/// # Errors
/// [`ErrorKind::MissingVmdesc`] for streams without a vmdesc (machine types before 2.3); any
/// decode or validation error of the typed devices, naming section and field; an unknown
/// machine type.
pub fn reencode(
    input: &[u8],
    catalog: &MachineCatalog,
    machine: Option<&str>,
) -> Result<(Vec<u8>, ReencodeReport)> {
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
    let clock = virtual_clock(&d);
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
        let payload = &input[s.payload_range.clone()];
        let base = s.payload_range.start as u64;
        let typed = match (s.kind, s.idstr.as_str()) {
            (SectionKind::Full, "serial") => {
                let mut dev = SerialSection::new(SerialBackend::default());
                dev.state.set_now_ns(clock);
                Some(typed_section(dev, payload, s.version, &mt, base))
            }
            (SectionKind::Full, "i8254") => {
                let mut dev = I8254::new();
                dev.set_now_ns(clock);
                Some(typed_section(dev, payload, s.version, &mt, base))
            }
            (SectionKind::Full, "mc146818rtc") => {
                let mut dev = Mc146818Rtc::new(0, LostTickPolicy::Discard);
                dev.set_now_ns(clock);
                Some(typed_section(dev, payload, s.version, &mt, base))
            }
            _ => None,
        };
        match typed {
            Some(r) => {
                let (bytes, desc) = r.map_err(|e| {
                    e.in_section(vmstate_runtime::error::SectionRef {
                        idstr: s.idstr.clone(),
                        instance_id: s.instance_id,
                        version: Some(s.version),
                    })
                })?;
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
    });
    let start = out.payload().len();
    out.vmdesc(&json)?;
    let out = out.into_inner();
    report.identical_vmdesc = out[start..] == input[vmdesc_range.clone()];
    Ok((out, report))
}

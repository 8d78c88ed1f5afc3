//! `vmstate explain`: load a stream the way a destination would and explain the first failure.
//!
//! The stream is loaded against the known schemas: the example devices' [`DemoMachine`]
//! (2 × 16550A UART, i8254 PIT, MC146818 RTC, `demo-wdt`) of the machine type given with
//! `--machine` or named by the stream, through the registry's all-or-nothing load (streamed,
//! RAM stepped over). A stream with sections the demo machine has no device for (e.g. a real
//! QEMU machine) is decoded with its own vmdesc instead, when it has one, unless `--machine`
//! insists on the demo machine. The first failure is reported with its byte offset, section,
//! field path, the bytes around the offset, what was expected there and the likely cause, in
//! terms of why migrations fail.

use std::fmt::Write as _;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

use examples_devices::machine::DemoMachine;
use vmstate_runtime::stream::{read_section_header, read_stream_header, SectionHeader};
use vmstate_runtime::{Error, ErrorKind, MachineCatalog, SliceReader};

use crate::input::Input;
use crate::CliError;

/// What the stream was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Against {
    /// The demo machine of this machine type.
    Demo(String),
    /// The generic decoder with the stream's own vmdesc.
    Generic,
}

impl std::fmt::Display for Against {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Against::Demo(m) => write!(f, "the example devices' demo machine ({m})"),
            Against::Generic => f.write_str("the stream's own vmdesc (generic decoder)"),
        }
    }
}

/// The outcome of `explain`.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// What the stream was checked against.
    pub against: Against,
    /// The first failure, when there was one.
    pub failure: Option<Error>,
    /// The report to print.
    pub report: String,
}

/// How many bytes are shown before the failing offset (rounded down to a row of 16).
pub const WINDOW_BEFORE: u64 = 16;
/// How many bytes are shown after the failing offset (a subsection or section name fits).
pub const WINDOW_AFTER: u64 = 32;

/// Loads `path` (see the module docs) and explains the first failure.
///
/// # Errors
/// The file cannot be opened, or `--machine` names a machine type the demo does not know.
pub fn explain(path: &Path, machine: Option<&str>) -> Result<Explanation, CliError> {
    let catalog = examples_devices::catalog();
    let mut input = match Input::open(path) {
        Ok(i) => i,
        // The stream itself is at fault (its header, its vmdesc): that is what to explain.
        Err(e) => match e.stream_error() {
            Some(se) => {
                let mut x = report(path, Against::Generic, se.clone());
                if let (Some(off), Ok(mut f)) = (se.offset(), std::fs::File::open(path)) {
                    if f.metadata().is_ok_and(|m| m.is_file()) {
                        let (start, len) = window(off);
                        let mut bytes = Vec::new();
                        if f.seek(SeekFrom::Start(start)).is_ok()
                            && f.take(len as u64).read_to_end(&mut bytes).is_ok()
                        {
                            x.report.push_str(&hex_block(&bytes, start, off));
                        }
                    }
                }
                return Ok(x);
            }
            None => return Err(e),
        },
    };
    let mut r = SliceReader::new(input.head());
    let named = match read_stream_header(&mut r).and_then(|()| read_section_header(&mut r)) {
        Ok(SectionHeader::Configuration(c)) => Some(c.machine),
        _ => None,
    };
    let against = choose(&catalog, machine, named.as_deref(), &input)?;
    let Against::Demo(name) = &against else {
        return Ok(match input.decode_raw() {
            Ok(d) => ok(
                path,
                against,
                &format!("{} sections decoded", d.sections.len()),
            ),
            Err(e) => {
                let hex = e.offset().and_then(|off| {
                    let (start, len) = window(off);
                    input.bytes_at(start, len).ok().map(|b| (start, b))
                });
                with_bytes(report(path, against, e), hex)
            }
        });
    };
    let mt = catalog.resolve(name).map_err(|_| {
        CliError::new(format!(
            "machine type `{name}` is not in the demo's catalog; it knows {}",
            catalog.machine_names().join(", ")
        ))
    })?;
    let vm = DemoMachine::new(&mt).map_err(|e| CliError::new(e.to_string()))?;
    let result = {
        let cannot =
            |e: std::io::Error| CliError::new(format!("cannot read {}: {e}", path.display()));
        let reader = input.reader().map_err(cannot)?;
        vm.registry().load_io(&mt, reader)
    };
    Ok(match result {
        Ok(rep) => {
            // Clock-dependent re-synchronisation after the commit, as a VMM does.
            vm.resume();
            let mut s = format!("{} device sections loaded", rep.sections.len());
            if !rep.ram_blocks.is_empty() {
                let _ = write!(s, ", {} RAM blocks stepped over", rep.ram_blocks.len());
            }
            if !rep.missing.is_empty() {
                let names: Vec<String> = rep
                    .missing
                    .iter()
                    .map(|k| format!("{} instance {}", k.idstr, k.instance_id))
                    .collect();
                let _ = write!(
                    s,
                    "; not in the stream (they keep their state): {}",
                    names.join(", ")
                );
            }
            let mut x = ok(path, against, &s);
            x.report
                .push_str("\nThe loaded devices (typed, from their schemas):\n");
            x.report.push_str(&vm.describe());
            x
        }
        Err(e) => {
            let hex = e.offset().and_then(|off| {
                let (start, len) = window(off);
                input.bytes_at(start, len).ok().map(|b| (start, b))
            });
            with_bytes(report(path, against, e), hex)
        }
    })
}

/// The part of the stream shown around `offset`: from [`WINDOW_BEFORE`] bytes before it
/// (rounded down to a row of 16) to [`WINDOW_AFTER`] bytes after it.
fn window(offset: u64) -> (u64, usize) {
    let start = offset.saturating_sub(WINDOW_BEFORE) & !0xf;
    let len = usize::try_from(offset + WINDOW_AFTER + 1 - start).unwrap_or(0);
    (start, len)
}

fn with_bytes(mut x: Explanation, hex: Option<(u64, Vec<u8>)>) -> Explanation {
    if let (Some((start, bytes)), Some(off)) = (hex, x.failure.as_ref().and_then(Error::offset)) {
        x.report.push_str(&hex_block(&bytes, start, off));
    }
    x
}

/// The hex window with its heading (nothing when there are no bytes to show).
fn hex_block(bytes: &[u8], start: u64, mark: u64) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    format!(
        "  bytes (the one at the offset in [ ]):\n{}",
        hex_window(bytes, start, mark)
    )
}

/// The demo machine when asked for, or when it has a device for every section the vmdesc
/// lists; the generic decoder otherwise.
fn choose(
    catalog: &MachineCatalog,
    machine: Option<&str>,
    named: Option<&str>,
    input: &Input,
) -> Result<Against, CliError> {
    if let Some(m) = machine {
        return Ok(Against::Demo(m.to_owned()));
    }
    // The demo machine's sections are the same for every machine type (a newer device
    // version, never another device).
    let keys = catalog
        .resolve("pc-i440fx-7.2")
        .ok()
        .and_then(|mt| DemoMachine::new(&mt).ok())
        .map(|vm| vm.registry().keys())
        .unwrap_or_default();
    let demo_knows = |idstr: &str| idstr == "ram" || keys.iter().any(|k| k.idstr == idstr);
    let all_known = input
        .located()
        .is_none_or(|l| l.desc.devices.iter().all(|d| demo_knows(&d.name)));
    match named {
        Some(n) if all_known && catalog.resolve(n).is_ok() => Ok(Against::Demo(n.to_owned())),
        _ if input.located().is_some() => Ok(Against::Generic),
        Some(n) => Err(CliError::new(format!(
            "{}: the stream is for machine type `{n}`, which the demo's catalog does not know, \
             and has no vmdesc; pass --machine",
            input.path().display()
        ))),
        None => Err(CliError::new(format!(
            "{}: no configuration section names the machine type (a stream from before 2.4) \
             and no vmdesc describes it; pass --machine",
            input.path().display()
        ))),
    }
}

fn ok(path: &Path, against: Against, what: &str) -> Explanation {
    let report = format!("ok: {} loads against {against}: {what}\n", path.display());
    Explanation {
        against,
        failure: None,
        report,
    }
}

fn report(path: &Path, against: Against, e: Error) -> Explanation {
    let mut s = String::new();
    let _ = writeln!(s, "error: {}: {e}", path.display());
    let _ = writeln!(s, "  checked against: {against}");
    if let Some(off) = e.offset() {
        let _ = writeln!(s, "  offset:   {off:#x} ({off})");
    }
    if let Some(sec) = e.section() {
        let v = sec.version.map(|v| format!(" (v{v})")).unwrap_or_default();
        let _ = writeln!(
            s,
            "  section:  `{}` instance {}{v}",
            sec.idstr, sec.instance_id
        );
    }
    if let Some(p) = e.field_path() {
        let _ = writeln!(s, "  field:    {p}");
    }
    let _ = writeln!(s, "  problem:  {}", e.kind());
    let _ = writeln!(s, "  expected: {}", expected(e.kind()));
    let _ = writeln!(s, "  cause:    {}", cause(e.kind()));
    Explanation {
        against,
        failure: Some(e),
        report: s,
    }
}

/// Rows of 16 bytes starting at stream offset `start`, the byte at `mark` bracketed.
#[must_use]
pub fn hex_window(bytes: &[u8], start: u64, mark: u64) -> String {
    let mut s = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let base = start + row as u64 * 16;
        let _ = write!(s, "    {base:08x} ");
        for (i, b) in chunk.iter().enumerate() {
            let at = base + i as u64;
            let sep = if at == mark {
                "["
            } else if at == mark + 1 && i > 0 {
                "]"
            } else {
                " "
            };
            let _ = write!(s, "{sep}{b:02x}");
        }
        let last = base + chunk.len() as u64 - 1;
        s.push_str(if last == mark { "]" } else { " " });
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let pad = (16 - chunk.len()) * 3;
        let _ = writeln!(s, "{:pad$} |{ascii}|", "");
    }
    s
}

/// What the reader expected at the failing offset.
#[must_use]
pub fn expected(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::UnexpectedEof { needed, .. } => {
            format!("{needed} more bytes of the stream")
        }
        ErrorKind::BadMagic { .. } => "the stream magic 51 45 56 4d (\"QEVM\")".into(),
        ErrorKind::UnsupportedFileVersion { .. } => "file version 00 00 00 03".into(),
        ErrorKind::VersionTooNew { max, .. } => format!("a version of at most {max}"),
        ErrorKind::VersionTooOld { min, .. } => format!("a version of at least {min}"),
        ErrorKind::UnknownSection { .. } => {
            "a section of a device this machine has (by idstr and instance id)".into()
        }
        ErrorKind::UnknownSubsection { .. } => {
            "one of the subsections this device declares (by name), or the end of its state".into()
        }
        ErrorKind::FooterMismatch { expected, .. } => {
            format!("the footer 7e with the section id {expected}")
        }
        ErrorKind::MissingFooter { .. } => {
            "the section footer 7e right after the section's state".into()
        }
        ErrorKind::UnexpectedSectionType { .. } => {
            "a section type byte (00 EOF, 01-04 sections, 06 vmdesc, 08 command)".into()
        }
        ErrorKind::MachineTypeMismatch { expected, .. } => {
            format!("the machine type `{expected}` (or a prefix of it)")
        }
        ErrorKind::MissingConfiguration { .. } => {
            "the configuration section (07) right after the header".into()
        }
        ErrorKind::LengthTooLarge { limit, .. } => format!("a length of at most {limit}"),
        ErrorKind::NotEqual { expected, .. } => format!("exactly {expected}"),
        ErrorKind::InvalidValue { expected, .. } => expected.to_string(),
        ErrorKind::TrailingBytes { .. } => "the end of the input".into(),
        ErrorKind::MissingVmdesc => "a vmdesc after EOF describing the sections".into(),
        ErrorKind::BadVmdesc { .. } => {
            "a vmdesc (JSON) after EOF that describes exactly the sections' bytes".into()
        }
        ErrorKind::UnknownRamBlock { .. } | ErrorKind::RamPageOutOfRange { .. } => {
            "a page inside a RAM block announced at the start of the RAM section".into()
        }
        _ => "a valid stream at this point".into(),
    }
}

/// The likely cause, in terms of why migrations fail.
#[must_use]
pub fn cause(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::UnexpectedEof { .. } | ErrorKind::Io(_) => {
            "truncated: the connection dropped or the source failed (or was stopped) before it \
             finished sending, or the file was copied incompletely"
        }
        ErrorKind::BadMagic { .. } | ErrorKind::UnsupportedFileVersion { .. } => {
            "this is not a QEMU migration stream (file format v3): a wrong file, or the start of \
             the stream was lost"
        }
        ErrorKind::UnknownSection { .. } => {
            "configuration mismatch between source and destination: the source has a device \
             (or an instance of it) that the destination was not started with"
        }
        ErrorKind::UnknownSubsection { .. } => {
            "the source sent state this destination's device does not know: a newer source \
             (the subsection was added in a later release), or a subsection that should be \
             gated on the machine type or a compat property leaked into an old machine type \
             (or the stream is corrupted)"
        }
        ErrorKind::DuplicateSubsection { .. }
        | ErrorKind::DuplicateSection { .. }
        | ErrorKind::UnknownSectionId { .. } => {
            "the stream is corrupted or its writer is broken: well-formed sources never send this"
        }
        ErrorKind::VersionTooNew { .. } => {
            "the source runs a newer device version than the destination supports: migrating to \
             an older release needs a machine type both know (pinning the older version)"
        }
        ErrorKind::VersionTooOld { .. } => {
            "the source is older than the oldest version this destination still accepts"
        }
        ErrorKind::FooterMismatch { .. }
        | ErrorKind::MissingFooter { .. }
        | ErrorKind::UnexpectedSectionType { .. } => {
            "the section's state was longer or shorter on the source than the destination \
             reads: a conditional field or subsection read on one side only (a version, \
             machine-type or property gate that evaluates differently on the two sides), or a \
             device description changed without a version bump"
        }
        ErrorKind::MachineTypeMismatch { .. } | ErrorKind::MissingConfiguration { .. } => {
            "source and destination run different machine types; both ends must use the same \
             -machine"
        }
        ErrorKind::NotEqual { .. } => {
            "source and destination devices are configured differently (a size or count that \
             must match)"
        }
        ErrorKind::LengthTooLarge { .. }
        | ErrorKind::InvalidValue { .. }
        | ErrorKind::ValidationFailed { .. } => {
            "the destination rejects this value: a corrupted or hostile stream, or a source \
             device in a state this device model considers impossible (a bug on one side)"
        }
        ErrorKind::TrailingBytes { .. } => {
            "bytes follow the end of the stream: two streams in one file, or a file that was \
             overwritten only partly"
        }
        ErrorKind::MissingVmdesc => {
            "the stream has no vmdesc (QEMU writes none for machine types up to 2.2), so nothing \
             describes its sections; check it against a known machine with --machine"
        }
        ErrorKind::BadVmdesc { .. } => {
            "the vmdesc (the description for analysis tools; QEMU itself never reads it) is \
             malformed or does not match the sections' bytes: the stream was corrupted after it \
             was written, or its writer is broken"
        }
        ErrorKind::UnsupportedCommand { .. } | ErrorKind::UnsupportedRamFlags { .. } => {
            "the source used a migration feature (postcopy, compression, XBZRLE, multifd, …) \
             the destination does not support"
        }
        ErrorKind::UnknownRamBlock { .. } | ErrorKind::RamPageOutOfRange { .. } => {
            "the guest's memory layout differs between source and destination (-m, ROM or \
             device RAM sizes), or the stream is corrupted"
        }
        _ => "a corrupted stream or a bug on one side",
    }
}

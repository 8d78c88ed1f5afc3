//! `vmstate analyze --typed`: sections whose schema is known, shown as their typed state.
//!
//! The stream is decoded generically first (which splits it into sections and checks every
//! byte against the vmdesc). Then each FULL section whose idstr is one of the example devices'
//! (`serial`, `i8254`, `mc146818rtc`, `demo-wdt`) is loaded from its payload bytes into that
//! device's Rust type with [`load_payload`] — the derive-generated code, with its version,
//! machine-type gates and validation — and printed with `{:#?}`. Other sections are printed as
//! the vmdesc decoded them.

use std::fmt::Write as _;
use std::path::Path;

use examples_devices::machine::RTC_BASE;
use examples_devices::{
    DemoWatchdog, LostTickPolicy, Mc146818Rtc, SerialBackend, SerialSection, WatchdogConfig, I8254,
};
use vmstate_runtime::decode::{value_to_json, SectionKind};
use vmstate_runtime::{load_payload, MachineType, VmState};

use crate::input::Input;
use crate::{to_script_json, CliError};

/// The largest payload loaded into a typed device (the example devices' are a few hundred
/// bytes).
pub const MAX_TYPED_PAYLOAD: usize = 1 << 20;

/// The machine type sections are loaded for: `machine`, else the one the stream names, else
/// `pc-i440fx-7.2`.
fn machine_for(name: Option<&str>, named: Option<&str>) -> Result<MachineType, CliError> {
    let catalog = examples_devices::catalog();
    if let Some(m) = name {
        return catalog.resolve(m).map_err(|_| {
            CliError::new(format!(
                "machine type `{m}` is not in the demo's catalog; it knows {}",
                catalog.machine_names().join(", ")
            ))
        });
    }
    let m = named
        .and_then(|n| catalog.resolve(n).ok())
        .or_else(|| catalog.resolve("pc-i440fx-7.2").ok());
    m.ok_or_else(|| CliError::new("the demo's catalog has no pc-i440fx-7.2".into()))
}

fn load<T: VmState + Clone + std::fmt::Debug>(
    mut dev: T,
    payload: &[u8],
    version: u32,
    machine: &MachineType,
) -> String {
    match load_payload(&mut dev, payload, version, machine) {
        Ok(()) => compact_numbers(&format!("{dev:#?}")),
        Err(e) => format!("does not load into `{}`: {e}", std::any::type_name::<T>()),
    }
}

/// `{:#?}` output with runs of number-only lines (array elements) joined into one line.
fn compact_numbers(pretty: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<&str> = Vec::new();
    let mut indent = "";
    let flush = |out: &mut String, run: &mut Vec<&str>, indent: &str| {
        if !run.is_empty() {
            let _ = writeln!(out, "{indent}{}", run.join(" "));
            run.clear();
        }
    };
    for line in pretty.lines() {
        let t = line.trim_start();
        let number = t.strip_suffix(',').is_some_and(|n| {
            !n.is_empty()
                && n.trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
        });
        if number {
            if run.is_empty() {
                indent = &line[..line.len() - t.len()];
            }
            run.push(t);
        } else {
            flush(&mut out, &mut run, indent);
            out.push_str(line);
            out.push('\n');
        }
    }
    flush(&mut out, &mut run, indent);
    out.pop();
    out
}

/// The typed view of `path` (see the module docs).
///
/// # Errors
/// The stream cannot be read or decoded, or `machine` is not in the demo's catalog.
pub fn typed(path: &Path, machine: Option<&str>) -> Result<String, CliError> {
    let mut input = Input::open(path)?;
    let decoded = input.decode_raw().map_err(|e| CliError::at(path, &e))?;
    let mt = machine_for(machine, decoded.machine.as_deref())?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {}: typed state for machine type {} (schemas of the example devices)",
        path.display(),
        mt.name()
    );
    for s in &decoded.sections {
        if s.kind != SectionKind::Full {
            continue;
        }
        let _ = write!(
            out,
            "\n{} ({}) instance {} v{}: ",
            s.idstr, s.section_id, s.instance_id, s.version
        );
        let len = s.payload_range.len();
        let known = matches!(
            s.idstr.as_str(),
            "serial" | "i8254" | "mc146818rtc" | "demo-wdt"
        );
        if known && len <= MAX_TYPED_PAYLOAD {
            let payload = input
                .bytes_at(s.payload_range.start as u64, len)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
            let (v, m) = (s.version, &mt);
            let shown = match s.idstr.as_str() {
                "serial" => load(SerialSection::new(SerialBackend::default()), &payload, v, m),
                "i8254" => load(I8254::new(), &payload, v, m),
                "mc146818rtc" => load(
                    Mc146818Rtc::new(RTC_BASE, LostTickPolicy::Discard),
                    &payload,
                    v,
                    m,
                ),
                _ => load(
                    DemoWatchdog::new(WatchdogConfig::for_machine(m, 2)),
                    &payload,
                    v,
                    m,
                ),
            };
            out.push_str(&shown);
            out.push('\n');
        } else {
            out.push_str("no schema known; as the vmdesc describes it:\n");
            if let Some(v) = &s.value {
                out.push_str(&to_script_json(&value_to_json(v)));
                out.push('\n');
            }
        }
    }
    Ok(out)
}

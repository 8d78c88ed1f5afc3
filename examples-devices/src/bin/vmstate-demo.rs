//! `vmstate-demo`: save and load a machine of example devices in QEMU's migration format,
//! and re-encode real QEMU streams through the typed devices.
//!
//! ```text
//! vmstate-demo                                  # the tour: save, load into a fresh machine, verify
//! vmstate-demo save --machine pc-i440fx-7.2 --out vm.mig
//! vmstate-demo load vm.mig                      # prints the device state; errors exit non-zero
//! vmstate-demo reencode qemu.mig --out out.mig  # typed sections (examples_devices::qemu), rest copied
//! vmstate-demo reencode qemu.mig --out out.mig --rtc-clock vm   # the source ran -rtc clock=vm
//! vmstate-demo reencode qemu.mig --out out.mig --dimm-slots 4 --max-cpus 4
//!                                   # the source ran -m …,slots=4,maxmem=… -smp …,maxcpus=4
//! ```

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use examples_devices::machine::DemoMachine;
use examples_devices::reencode::{reencode, ReencodeOptions};
use examples_devices::rtc::{format_time, RtcClock};
use vmstate_runtime::stream::{read_section_header, read_stream_header, SectionHeader};
use vmstate_runtime::{MachineCatalog, SliceReader};

#[derive(Parser)]
#[command(
    name = "vmstate-demo",
    version,
    about = "Machine-type-aware device state in QEMU's migration format"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the guest program on a machine of the example devices and save it.
    Save {
        /// Machine type, e.g. pc-i440fx-7.2 or pc-q35-5.2.
        #[arg(long, default_value = "pc-i440fx-7.2")]
        machine: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load a stream into a fresh machine and print the device state.
    Load {
        /// The stream.
        file: PathBuf,
        /// Machine type; required for streams without a configuration section (before 2.4).
        #[arg(long)]
        machine: Option<String>,
    },
    /// Re-encode a QEMU 7.2 stream through the typed QEMU 7.2 sections (examples_devices::qemu).
    Reencode {
        /// The QEMU stream.
        input: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Machine type; required for streams without a configuration section (before 2.4).
        #[arg(long)]
        machine: Option<String>,
        /// The clock of the source's RTC, as its `-rtc clock=` said: host (QEMU's default), rt
        /// or vm. The stream does not record it; with vm, a stream whose RTC is not on the
        /// virtual clock is refused.
        #[arg(long, default_value = "host", value_name = "host|rt|vm")]
        rtc_clock: RtcClock,
        /// DIMM slots of the source (`-m …,slots=N`): QEMU does not migrate this
        /// configuration, but its memory hotplug state has one entry per slot.
        #[arg(long, default_value_t = 0, value_name = "N")]
        dimm_slots: u32,
        /// Possible CPUs of the source (`-smp …,maxcpus=N`): QEMU does not migrate it, but its
        /// CPU hotplug state has one entry per possible CPU.
        #[arg(long, default_value_t = 1, value_name = "N")]
        max_cpus: u32,
    },
    /// List the machine types of the catalog.
    Machines,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

/// How much of a stream is read up front to find its machine type (header and configuration
/// section: a few hundred bytes at most).
const PREFIX: u64 = 4096;

/// Opens `path` and reads its first [`PREFIX`] bytes (fewer if the file is shorter); the rest
/// is read as a stream, never all at once.
fn open_with_prefix(path: &Path) -> Result<(Vec<u8>, BufReader<File>), ExitCode> {
    let cannot = |e: std::io::Error| fail(format_args!("cannot read {}: {e}", path.display()));
    let mut file = BufReader::new(File::open(path).map_err(cannot)?);
    let mut prefix = Vec::new();
    (&mut file)
        .take(PREFIX)
        .read_to_end(&mut prefix)
        .map_err(cannot)?;
    Ok((prefix, file))
}

/// Reads a whole file that must be a migration stream (the re-encoder needs all of it); a file
/// that does not start like one fails before anything else is read.
fn read_stream_file(path: &Path) -> Result<Vec<u8>, ExitCode> {
    let (mut bytes, mut rest) = open_with_prefix(path)?;
    if let Err(e) = read_stream_header(&mut SliceReader::new(&bytes)) {
        return Err(fail(format_args!("{}: {e}", path.display())));
    }
    rest.read_to_end(&mut bytes)
        .map_err(|e| fail(format_args!("cannot read {}: {e}", path.display())))?;
    Ok(bytes)
}

/// That machine type `what` is not in the demo's catalog, and the machine types it knows, per
/// family.
fn unknown_machine(catalog: &MachineCatalog, what: &str) -> String {
    let mut families: Vec<(String, Vec<String>)> = Vec::new();
    for m in catalog.machine_names() {
        let (family, version) = m.rsplit_once('-').unwrap_or((m.as_str(), ""));
        match families.last_mut() {
            Some((f, vs)) if f == family => vs.push(version.to_owned()),
            _ => families.push((family.to_owned(), vec![version.to_owned()])),
        }
    }
    let known: Vec<String> = families
        .iter()
        .map(|(f, vs)| format!("{f}-{{{}}}", vs.join(",")))
        .collect();
    format!(
        "{what} is not in this demo's machine catalog; it knows {}",
        known.join(" and ")
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let catalog = examples_devices::catalog();
    match cli.cmd {
        None => tour(&catalog),
        Some(Cmd::Save { machine, out }) => save(&catalog, &machine, &out),
        Some(Cmd::Load { file, machine }) => load(&catalog, &file, machine.as_deref()),
        Some(Cmd::Reencode {
            input,
            out,
            machine,
            rtc_clock,
            dimm_slots,
            max_cpus,
        }) => {
            let options = ReencodeOptions {
                machine,
                rtc_clock,
                board: examples_devices::qemu::acpi::Board {
                    dimm_slots,
                    max_cpus,
                },
            };
            reencode_cmd(&catalog, &input, &out, &options)
        }
        Some(Cmd::Machines) => {
            for m in catalog.machine_names() {
                println!("{m}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn save(catalog: &MachineCatalog, machine: &str, out: &Path) -> ExitCode {
    let Ok(mt) = catalog.resolve(machine) else {
        return fail(unknown_machine(
            catalog,
            &format!("machine type `{machine}` (--machine)"),
        ));
    };
    let vm = match DemoMachine::new(&mt) {
        Ok(vm) => vm,
        Err(e) => return fail(e),
    };
    vm.run_guest_program();
    let (bytes, report) = match vm.save() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Err(e) = std::fs::write(out, &bytes) {
        return fail(format_args!("cannot write {}: {e}", out.display()));
    }
    println!(
        "saved {} sections ({} bytes) for {machine} to {}",
        report.sections.len(),
        bytes.len(),
        out.display()
    );
    for s in &report.sections {
        println!(
            "  {:<12} instance {} v{}  {:>4} bytes",
            s.key.idstr, s.key.instance_id, s.version, s.payload_len
        );
    }
    ExitCode::SUCCESS
}

fn load(catalog: &MachineCatalog, file: &Path, machine: Option<&str>) -> ExitCode {
    // The stream is read as it is loaded: memory is bounded by the device states, not by the
    // file (`/dev/zero` or a huge file fail at their first bad byte).
    let (prefix, rest) = match open_with_prefix(file) {
        Ok(r) => r,
        Err(c) => return c,
    };
    // The machine type comes from the stream's configuration section when it has one.
    let (name, what) = match machine {
        Some(m) => (m.to_owned(), format!("machine type `{m}` (--machine)")),
        None => match machine_of(&prefix) {
            Ok(Some(m)) => {
                let what = format!("the stream is for machine type `{m}`, which");
                (m, what)
            }
            Ok(None) => {
                return fail(format_args!(
                    "{}: no configuration section names the machine type (a stream from \
                     before 2.4); pass --machine",
                    file.display()
                ))
            }
            Err(e) => return fail(format_args!("{}: {e}", file.display())),
        },
    };
    let Ok(mt) = catalog.resolve(&name) else {
        return fail(format_args!(
            "{}: {}",
            file.display(),
            unknown_machine(catalog, &what)
        ));
    };
    let vm = match DemoMachine::new(&mt) {
        Ok(vm) => vm,
        Err(e) => return fail(e),
    };
    let stream = std::io::Cursor::new(prefix).chain(rest);
    match vm.registry().load_io(vm.machine(), stream) {
        Ok(report) => {
            // Clock-dependent re-synchronisation (the RTC's periodic timer) after the commit.
            vm.resume();
            println!(
                "loaded {} sections ({} bytes) for {name}",
                report.sections.len(),
                report.total_bytes
            );
            print!("{}", vm.describe());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("{}: {e}", file.display())),
    }
}

fn reencode_cmd(
    catalog: &MachineCatalog,
    input: &Path,
    out: &Path,
    options: &ReencodeOptions,
) -> ExitCode {
    let bytes = match read_stream_file(input) {
        Ok(b) => b,
        Err(c) => return c,
    };
    let (outb, report) = match reencode(&bytes, catalog, options) {
        Ok(r) => r,
        Err(e) => return fail(format_args!("{}: {e}", input.display())),
    };
    if let Err(e) = std::fs::write(out, &outb) {
        return fail(format_args!("cannot write {}: {e}", out.display()));
    }
    println!(
        "re-encoded {} for {}: {} typed sections, {} copied, {} bytes",
        input.display(),
        report.machine,
        report.typed.len(),
        report.copied.len(),
        outb.len()
    );
    for (idstr, inst, n) in &report.typed {
        println!("  typed  {idstr:<12} instance {inst}  {n:>4} bytes");
    }
    if report.opaque.is_empty() {
        println!("  opaque sections: none");
    } else {
        let names: Vec<String> = report
            .opaque
            .iter()
            .map(|(idstr, inst)| format!("{idstr}#{inst}"))
            .collect();
        println!(
            "  opaque sections (copied verbatim, not typed yet): {}",
            names.join(" ")
        );
    }
    for r in &report.rtc {
        println!(
            "  mc146818rtc instance {}: clock={}, guest time at the save {}",
            r.instance_id,
            r.clock,
            format_time(r.guest_time_secs)
        );
    }
    println!(
        "  bytes before the vmdesc identical to the input: {}",
        if report.identical_before_vmdesc {
            "yes"
        } else {
            "NO"
        }
    );
    println!(
        "  vmdesc identical to the input: {}",
        if report.identical_vmdesc { "yes" } else { "no" }
    );
    ExitCode::SUCCESS
}

fn tour(catalog: &MachineCatalog) -> ExitCode {
    match run_tour(catalog) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn run_tour(catalog: &MachineCatalog) -> Result<(), String> {
    let name = "pc-i440fx-7.2";
    let mt = catalog.resolve(name).map_err(|e| e.to_string())?;
    println!("vmstate demo: 2 x 16550A UART, i8254 PIT, MC146818 RTC, demo watchdog on {name}\n");
    let src = DemoMachine::new(&mt).map_err(|e| e.to_string())?;
    src.run_guest_program();
    println!("source state after the guest program:\n{}", src.describe());

    let (stream, report) = src.save().map_err(|e| e.to_string())?;
    println!(
        "saved {} bytes: {} sections, vmdesc {} bytes",
        stream.len(),
        report.sections.len(),
        report.vmdesc_len.unwrap_or(0)
    );
    for s in &report.sections {
        println!(
            "  {:<12} instance {} v{}  {:>4} bytes",
            s.key.idstr, s.key.instance_id, s.version, s.payload_len
        );
    }

    let dst = DemoMachine::new(&mt).map_err(|e| e.to_string())?;
    dst.set_clock(src.clock());
    let loaded = dst.load(&stream).map_err(|e| e.to_string())?;
    println!(
        "\nloaded {} sections into a fresh machine",
        loaded.sections.len()
    );
    let a = src.payloads().map_err(|e| e.to_string())?;
    let b = dst.payloads().map_err(|e| e.to_string())?;
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if x == y {
            println!("  {name:<12} identical ({} bytes)", x.len());
            continue;
        }
        // Resuming after the load re-synchronises the RTC's periodic timer to the destination
        // clock (QEMU does it in the RTC's post_load; here it is `resume`, after the commit);
        // everything else must be equal.
        let (mut x, mut y) = (x.clone(), y.clone());
        if *name == "mc146818rtc" && x.len() >= RTC_PERIODIC.end && x.len() == y.len() {
            x[RTC_PERIODIC].fill(0);
            y[RTC_PERIODIC].fill(0);
            if x == y {
                println!("  {name:<12} identical except the periodic timer, re-armed from the destination clock when the machine resumed after the load (QEMU does it in post_load)");
                continue;
            }
        }
        return Err(format!(
            "the destination's {name} state differs from the source's"
        ));
    }

    // The same state for older machine types: framing and gated fields follow the machine.
    println!("\nthe same devices saved for older machine types:");
    for old in ["pc-i440fx-6.2", "pc-i440fx-4.2", "pc-i440fx-2.3"] {
        let m = catalog.resolve(old).map_err(|e| e.to_string())?;
        let vm = DemoMachine::new(&m).map_err(|e| e.to_string())?;
        vm.run_guest_program();
        let (b, r) = vm.save().map_err(|e| e.to_string())?;
        let wdt = r
            .sections
            .iter()
            .find(|s| s.key.idstr == "demo-wdt")
            .map_or(String::new(), |s| {
                format!("demo-wdt v{} {} bytes", s.version, s.payload_len)
            });
        let f = m.framing();
        println!(
            "  {old:<14} {:>5} bytes  config={} footers={} vmdesc={}  {wdt}",
            b.len(),
            yn(f.configuration),
            yn(f.footers),
            yn(f.vmdesc)
        );
    }

    // A corrupted stream is rejected precisely, and the destination is untouched.
    let mut bad = stream.clone();
    let com1 = report
        .sections
        .iter()
        .find(|s| s.key.idstr == "serial")
        .ok_or("no serial section")?;
    // Flip the receive FIFO's `head` (within the COM1 payload) to an impossible value.
    let fresh = DemoMachine::new(&mt).map_err(|e| e.to_string())?;
    let before = fresh.describe();
    let head_at = find_fifo_head(&stream, com1.offset as usize, com1.payload_len as usize)
        .ok_or("recv_fifo not found in the COM1 section")?;
    bad[head_at..head_at + 4].copy_from_slice(&17u32.to_be_bytes());
    match fresh.load(&bad) {
        Ok(_) => return Err("the corrupted stream was accepted".into()),
        Err(e) => {
            println!("\na corrupted stream is rejected with:\n  {e}");
            if fresh.describe() != before {
                return Err("a failed load changed the destination".into());
            }
            println!("  and the destination machine is unchanged (all-or-nothing load)");
        }
    }
    Ok(())
}

/// `periodic_timer` and `next_periodic_time` in the RTC payload (after `cmos_data[128]`,
/// cmos_index and 28 unused bytes).
const RTC_PERIODIC: std::ops::Range<usize> = 157..173;

/// The machine type named by the stream's configuration section (`None`: the stream has
/// none); an error when `bytes` do not start like a migration stream.
fn machine_of(bytes: &[u8]) -> Result<Option<String>, vmstate_runtime::Error> {
    let mut r = SliceReader::new(bytes);
    read_stream_header(&mut r)?;
    Ok(match read_section_header(&mut r) {
        Ok(SectionHeader::Configuration(c)) => Some(c.machine),
        _ => None,
    })
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Offset of the be32 `head` of the `serial/recv_fifo` subsection inside a section payload.
fn find_fifo_head(stream: &[u8], payload_off: usize, len: usize) -> Option<usize> {
    let name = b"serial/recv_fifo";
    let payload = stream.get(payload_off..payload_off + len)?;
    let at = payload.windows(name.len()).position(|w| w == name)?;
    // name · be32 version · 16 data bytes · be32 head
    Some(payload_off + at + name.len() + 4 + 16)
}

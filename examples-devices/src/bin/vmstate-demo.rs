//! `vmstate-demo`: save and load a machine of example devices in QEMU's migration format,
//! and re-encode real QEMU streams through the typed devices.
//!
//! ```text
//! vmstate-demo                                  # the tour: save, load into a fresh machine, verify
//! vmstate-demo save --machine pc-i440fx-7.2 --out vm.mig
//! vmstate-demo load vm.mig                      # prints the device state; errors exit non-zero
//! vmstate-demo reencode qemu.mig --out out.mig  # typed serial/i8254/mc146818rtc, rest copied
//! vmstate-demo reencode qemu.mig --out out.mig --rtc-clock vm   # the source ran -rtc clock=vm
//! ```

use std::path::PathBuf;
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
    /// Re-encode a QEMU 7.2 stream through the typed serial/i8254/mc146818rtc devices.
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
    },
    /// List the machine types of the catalog.
    Machines,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ExitCode> {
    std::fs::read(path).map_err(|e| fail(format_args!("cannot read {}: {e}", path.display())))
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
        }) => {
            let options = ReencodeOptions { machine, rtc_clock };
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

fn save(catalog: &MachineCatalog, machine: &str, out: &PathBuf) -> ExitCode {
    let mt = match catalog.resolve(machine) {
        Ok(m) => m,
        Err(e) => return fail(e),
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

fn load(catalog: &MachineCatalog, file: &PathBuf, machine: Option<&str>) -> ExitCode {
    let bytes = match read(file) {
        Ok(b) => b,
        Err(c) => return c,
    };
    // The machine type comes from the stream's configuration section when it has one.
    let name = match machine {
        Some(m) => m.to_owned(),
        None => match machine_of(&bytes) {
            Some(m) => m,
            None => {
                return fail(format_args!(
                    "{}: no configuration section names the machine type (streams before 2.4, or not a stream); pass --machine",
                    file.display()
                ))
            }
        },
    };
    let mt = match catalog.resolve(&name) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let vm = match DemoMachine::new(&mt) {
        Ok(vm) => vm,
        Err(e) => return fail(e),
    };
    match vm.load(&bytes) {
        Ok(report) => {
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
    input: &PathBuf,
    out: &PathBuf,
    options: &ReencodeOptions,
) -> ExitCode {
    let bytes = match read(input) {
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
        // The RTC's post_load re-synchronises the periodic timer to the destination clock,
        // exactly as QEMU's does; everything else must be equal.
        let (mut x, mut y) = (x.clone(), y.clone());
        if *name == "mc146818rtc" && x.len() >= RTC_PERIODIC.end && x.len() == y.len() {
            x[RTC_PERIODIC].fill(0);
            y[RTC_PERIODIC].fill(0);
            if x == y {
                println!("  {name:<12} identical except the periodic timer, re-armed from the destination clock by post_load (as QEMU does)");
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

/// The machine type named by the stream's configuration section, if it starts with one.
fn machine_of(bytes: &[u8]) -> Option<String> {
    let mut r = SliceReader::new(bytes);
    read_stream_header(&mut r).ok()?;
    match read_section_header(&mut r).ok()? {
        SectionHeader::Configuration(c) => Some(c.machine),
        _ => None,
    }
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

//! Whole-machine save + load through the registry at 10, 100 and 1,000 devices, with the vmdesc
//! (pc-i440fx-7.2) and without (pc-i440fx-2.2, whose framing has no vmdesc), saving into a new
//! buffer each time (`save_to_vec`) and into one reused buffer (`save_into`). Prints the total
//! and the cost per device (min and median of several runs), so a cost that grows with the
//! number of devices shows as a rising per-device column.
//! `cargo bench -p vmstate-runtime --bench registry_scale`.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmstate_runtime::{MachineCatalog, MachineType, RegisterOptions, Registry, VmState};

#[derive(VmState, Clone, Default, Debug)]
#[vmstate(name = "fifo", nested)]
struct Fifo {
    #[vmstate(buffer)]
    data: [u8; 16],
    head: u32,
    num: u32,
}

/// A small device in the shape of QEMU's: scalars, a nested struct, an array and a subsection.
#[derive(VmState, Clone, Default, Debug)]
#[vmstate(name = "scale-dev", version = 2, minimum_version = 1,
    subsection(name = "scale-dev/stats", when = prop("x-stats")),
    prop(name = "x-stats", default = true))]
struct Dev {
    ctrl: u32,
    status: u16,
    irq: u8,
    mask: u8,
    regs: [u32; 8],
    fifo: Fifo,
    #[vmstate(since = 2, default)]
    deadline: i64,
    #[vmstate(subsection = "scale-dev/stats", default)]
    irqs: u64,
    #[vmstate(subsection = "scale-dev/stats", default)]
    drops: u64,
}

fn registry(n: usize) -> Registry {
    let mut reg = Registry::new();
    for i in 0..n {
        let dev = Dev {
            ctrl: u32::try_from(i).unwrap_or(0),
            regs: [7; 8],
            irqs: 3,
            ..Dev::default()
        };
        // Half the devices share one idstr (many instances), half have a bus path of their own.
        let options = if i % 2 == 0 {
            RegisterOptions::new()
        } else {
            RegisterOptions::new().bus_path(&format!("0000:{:02x}:{:02x}.0", i / 256, i % 256))
        };
        reg.register_with(Arc::new(Mutex::new(dev)), options)
            .expect("register");
    }
    reg
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Save + load per iteration; `reuse`: save into one buffer kept across saves
/// (`Registry::save_into`) instead of a new one each time (`Registry::save_to_vec`).
fn measure(
    n: usize,
    machine: &MachineType,
    runs: usize,
    reuse: bool,
) -> (Duration, Duration, usize) {
    let src = registry(n);
    let dst = registry(n);
    let (bytes, _) = src.save_to_vec(machine).expect("save");
    let mut times = Vec::with_capacity(runs);
    // Enough iterations per run that one run takes a few milliseconds.
    let iters = (20_000 / n).max(1);
    let mut buf = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        for _ in 0..iters {
            let report = if reuse {
                buf.clear();
                src.save_into(machine, &mut buf).expect("save");
                dst.load(machine, black_box(&buf)).expect("load")
            } else {
                let (s, _) = src.save_to_vec(machine).expect("save");
                dst.load(machine, black_box(&s)).expect("load")
            };
            black_box(report);
        }
        times.push(t.elapsed() / u32::try_from(iters).unwrap_or(1));
    }
    let min = *times.iter().min().unwrap_or(&Duration::ZERO);
    (min, median(&mut times), bytes.len())
}

fn main() {
    let cat = MachineCatalog::qemu_pc();
    let runs = 11;
    println!("registry save + load (min / median of {runs} runs)");
    println!(
        "{:>10} {:>7} {:>8} {:>10} {:>12} {:>12} {:>14} {:>14}",
        "machine", "buffer", "devices", "bytes", "min", "median", "min/device", "median/device"
    );
    for (label, mt) in [("vmdesc", "pc-i440fx-7.2"), ("no-vmdesc", "pc-i440fx-2.2")] {
        let machine = cat.resolve(mt).expect("machine type");
        for (reuse, buffer) in [(false, "new"), (true, "reused")] {
            for n in [10usize, 100, 1000] {
                let (min, med, bytes) = measure(n, &machine, runs, reuse);
                let per = |d: Duration| d / u32::try_from(n).unwrap_or(1);
                println!(
                    "{:>10} {:>7} {:>8} {:>10} {:>12?} {:>12?} {:>14?} {:>14?}",
                    label,
                    buffer,
                    n,
                    bytes,
                    min,
                    med,
                    per(min),
                    per(med)
                );
            }
        }
    }
}

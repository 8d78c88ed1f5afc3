//! How long saving takes with and without generating the vmdesc, at 128 devices. Not a test of
//! anything: run it by hand with
//! `cargo test --release -p vmstate-tests --test vmdesc_bench -- --ignored --nocapture`.
//! Each figure is the best of 15 rounds (the machine may be shared).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use examples_devices::serial::SerialBackend;
use examples_devices::{catalog, SerialSection, I8254};
use vmstate_runtime::vmdesc::{parse_vmdesc, write_json};
use vmstate_runtime::{RegisterOptions, Registry};

/// The best per-call time of `f` over 15 rounds of 40 calls.
fn best<T>(mut f: impl FnMut() -> T) -> Duration {
    (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..40 {
                std::hint::black_box(f());
            }
            t.elapsed() / 40
        })
        .min()
        .unwrap_or_default()
}

#[test]
#[ignore = "a benchmark; run by hand"]
fn vmdesc_generation_share_of_save_time() {
    let cat = catalog();
    let m72 = cat.resolve("pc-i440fx-7.2").unwrap();
    // pc-i440fx-2.2 sends no vmdesc (nor footers or a configuration section): the save
    // without the description, for comparison.
    let m22 = cat.resolve("pc-i440fx-2.2").unwrap();
    let mut reg = Registry::new();
    for i in 0..64 {
        let mut s = SerialSection::new(SerialBackend::default());
        s.state.io_write(7, i as u8);
        reg.register_with(
            Arc::new(Mutex::new(s)),
            RegisterOptions::new().instance_id(i),
        )
        .unwrap();
        reg.register_with(
            Arc::new(Mutex::new(I8254::new())),
            RegisterOptions::new().instance_id(i),
        )
        .unwrap();
    }
    let (bytes, report) = reg.save_to_vec(&m72).unwrap();
    let n = report.vmdesc_len.unwrap() as usize;
    let json = &bytes[bytes.len() - n..];
    // Saves first: what earlier steps leave on the heap changes whether glibc trims and
    // re-faults the heap top on every save (run with
    // GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456 to take that out).
    let save = best(|| reg.save_to_vec(&m72).unwrap());
    let bare = best(|| reg.save_to_vec(&m22).unwrap());
    let desc = parse_vmdesc(json).unwrap();
    if std::env::var_os("BENCH_SAVE_ONLY").is_some() {
        // For a profiler.
        for _ in 0..10 {
            best(|| reg.save_to_vec(&m72).unwrap());
        }
        return;
    }
    let write = best(|| write_json(&desc));
    let parse = best(|| parse_vmdesc(json).unwrap());
    eprintln!(
        "128 devices: stream {} bytes (vmdesc {n}); save_to_vec {save:?} \
         (pc-i440fx-2.2, no vmdesc: {bare:?}); write_json alone {write:?}; parse_vmdesc {parse:?}",
        bytes.len()
    );
}

//! Save + load of device state: vmstate's generated code (QEMU wire format, big-endian)
//! against serde + bincode 2 (little-endian, fixed-width integers) on the same struct.
//! Prints ns per operation and the ratio; `cargo bench -p vmstate-runtime`.

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vmstate_runtime::machine::MachineCatalog;
use vmstate_runtime::{GateCtx, LoadCx, SaveCx, SliceReader, Timer, VmState};

#[derive(VmState, Serialize, Deserialize, Clone, Default, PartialEq, Debug)]
#[vmstate(name = "chan", version = 2, nested)]
struct Chan {
    count: i32,
    latched_count: u16,
    count_latched: u8,
    status_latched: u8,
    status: u8,
    read_state: u8,
    write_state: u8,
    write_latch: u8,
    rw_mode: u8,
    mode: u8,
    bcd: u8,
    gate: u8,
    count_load_time: i64,
    next_transition_time: i64,
}

#[derive(VmState, Serialize, Deserialize, Clone, Default, PartialEq, Debug)]
#[vmstate(name = "fifo", nested)]
struct Fifo {
    #[vmstate(buffer)]
    data: [u8; 16],
    head: u32,
    num: u32,
}

/// Roughly one UART + one PIT + an RTC's CMOS, as one struct.
#[derive(VmState, Serialize, Deserialize, Clone, Default, PartialEq, Debug)]
#[vmstate(name = "bench", version = 3)]
struct Bench {
    divider: u16,
    rbr: u8,
    ier: u8,
    iir: u8,
    lcr: u8,
    mcr: u8,
    lsr: u8,
    msr: u8,
    scr: u8,
    fcr: u8,
    recv_fifo: Fifo,
    xmit_fifo: Fifo,
    tsr_retry: u32,
    irq_disabled: u32,
    channels: [Chan; 3],
    cmos: [[u8; 32]; 4],
    cmos_index: u8,
    base_rtc: u64,
    offset: i64,
    periodic: u64,
    flags: [bool; 4],
}

fn sample() -> Bench {
    let mut b = Bench {
        divider: 12,
        ier: 0x0f,
        lcr: 3,
        lsr: 0x61,
        recv_fifo: Fifo {
            data: *b"vmstate benchmrk",
            head: 3,
            num: 7,
        }
        .clone(),
        ..Bench::default()
    };
    for (i, c) in b.channels.iter_mut().enumerate() {
        c.count = 0x2e9c + i as i32;
        c.mode = 2;
        c.count_load_time = 1_000_000 * i as i64;
    }
    for (i, row) in b.cmos.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = (i * 32 + j) as u8;
        }
    }
    b.base_rtc = 1_577_836_800;
    b
}

fn time<F: FnMut()>(iters: u32, mut f: F) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn main() {
    let _ = Timer::disarmed();
    let m = MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap();
    let state = sample();
    let iters = 2_000_000;
    let cfg = bincode::config::standard().with_fixed_int_encoding();

    // vmstate: save into a reused buffer, load from the slice into a reused struct.
    let mut buf = Vec::with_capacity(1024);
    let mut src = state.clone();
    let mut dst = Bench::default();
    let vm = time(iters, || {
        buf.clear();
        let mut cx = SaveCx::new(GateCtx::new(&m, "bench"), false);
        black_box(&mut src)
            .save_state(&mut buf, 3, &mut cx)
            .unwrap();
        let mut lcx = LoadCx::new(GateCtx::new(&m, "bench"));
        dst.load_state(&mut SliceReader::new(black_box(&buf)), 3, &mut lcx)
            .unwrap();
    });
    assert_eq!(dst, state);
    let vm_len = buf.len();

    // serde + bincode 2: encode into a reused buffer, decode from the slice.
    let mut bbuf = vec![0u8; 1024];
    let mut out = Bench::default();
    let bc = time(iters, || {
        let n = bincode::serde::encode_into_slice(black_box(&state), &mut bbuf, cfg).unwrap();
        out = bincode::serde::decode_from_slice(black_box(&bbuf[..n]), cfg)
            .unwrap()
            .0;
    });
    assert_eq!(out, state);
    let bc_len = bincode::serde::encode_to_vec(&state, cfg).unwrap().len();

    println!("save + load of a {vm_len}-byte device state ({iters} iterations)");
    println!("  vmstate (QEMU wire format)   {vm:8.1} ns");
    println!("  serde + bincode 2 ({bc_len} bytes) {bc:8.1} ns");
    println!("  ratio bincode / vmstate      {:8.2}x", bc / vm);
}

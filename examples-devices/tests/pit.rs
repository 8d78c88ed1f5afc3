//! i8254: golden QEMU 7.2 sections, replay of the guest's port writes, counting behaviour,
//! hostile input.

mod common;

use common::*;
use examples_devices::pit::{PitChannel, I8254, PIT_FREQ};
use serde_json::{json, Value};
use vmstate_runtime::{ErrorKind, Timer};

const M72: &str = "pc-i440fx-7.2";

fn channel_json(c: &PitChannel) -> Value {
    json!({
        "count": hx_signed(c.count.into(), 4),
        "latched_count": hx(c.latched_count, 2),
        "count_latched": hx(c.count_latched, 1),
        "status_latched": hx(c.status_latched, 1),
        "status": hx(c.status, 1),
        "read_state": hx(c.read_state, 1),
        "write_state": hx(c.write_state, 1),
        "write_latch": hx(c.write_latch, 1),
        "rw_mode": hx(c.rw_mode, 1),
        "mode": hx(c.mode, 1),
        "bcd": hx(c.bcd, 1),
        "gate": hx(c.gate, 1),
        "count_load_time": hx_signed(c.count_load_time, 8),
        "next_transition_time": hx_signed(c.next_transition_time, 8),
    })
}

fn pit_json(p: &I8254) -> Value {
    json!({
        "channels[0].irq_disabled": hx(p.irq_disabled, 4),
        "channels": p.channels.iter().map(channel_json).collect::<Vec<_>>(),
        "channels[0].next_transition_time": hx_signed(p.channels[0].next_transition_time, 8),
    })
}

fn check_golden(stream: &str, machine: &str, has_vmdesc: bool) -> I8254 {
    let g = golden_section(stream, "i8254", 0);
    assert_eq!(g.payload_len, 108);
    let mut dev = I8254::new();
    load_payload(&mut dev, g.payload(), g.version, machine, "i8254").unwrap();
    let (bytes, desc, version) = save_section(&dev, machine, "i8254");
    assert_eq!(version, 3);
    assert_bytes_eq(&bytes, g.payload());
    if has_vmdesc {
        assert_eq!(
            desc_text("i8254", 0, desc),
            golden_vmdesc_device(stream, "i8254", 0)
        );
        assert_eq!(pit_json(&dev), golden_state(stream, "i8254", g.section_id));
    }
    dev
}

#[test]
fn golden_pit() {
    let p = check_golden("pit", M72, true);
    assert_eq!(p.channels[0].count, 0x2e9c);
    assert_eq!(p.channels[1].status, 0x10);
    assert_eq!(p.irq_timer(), Timer::armed(10_000_988));
}

#[test]
fn golden_reset_state_on_every_machine_type() {
    let fresh = I8254::new();
    for (stream, machine, desc) in [
        ("idle", M72, true),
        ("uart-fifo", M72, true),
        ("machine-pc-q35-7.2", "pc-q35-7.2", true),
        ("machine-pc-i440fx-2.3", "pc-i440fx-2.3", true),
        ("machine-pc-i440fx-2.2", "pc-i440fx-2.2", false),
    ] {
        let p = check_golden(stream, machine, desc);
        assert_eq!(
            p, fresh,
            "{stream}: a fresh PIT is what QEMU has after reset"
        );
    }
}

#[test]
fn replay_pit_scenario() {
    let mut p = I8254::new();
    for (off, v) in [
        (3, 0x34),
        (0, 0x9c),
        (0, 0x2e),
        (3, 0xb6),
        (2, 0x34),
        (2, 0x12),
    ] {
        p.io_write(off, v);
    }
    p.set_gate(2, true); // port 0x61 = 0x01
    for (off, v) in [(3, 0x50), (1, 0x77), (3, 0x00), (3, 0xe4)] {
        p.io_write(off, v);
    }
    let (bytes, _, _) = save_section(&p, M72, "i8254");
    assert_bytes_eq(&bytes, golden_section("pit", "i8254", 0).payload());
    // And the latches read back as the guest would see them.
    assert_eq!(
        p.io_read(1),
        0x10,
        "counter 1 status: lsb access, mode 0, OUT low"
    );
    assert_eq!(
        (p.io_read(0), p.io_read(0)),
        (0x9c, 0x2e),
        "counter 0 latch"
    );
}

#[test]
fn every_prefix_of_golden_section_fails() {
    for stream in ["pit", "idle"] {
        let g = golden_section(stream, "i8254", 0);
        assert_every_prefix_fails(I8254::new, g.bytes(), M72, "i8254");
    }
}

// ---- behaviour ----

fn program(p: &mut I8254, control: u8, count: u16) {
    p.io_write(3, control);
    let ch = u16::from(control >> 6);
    match (control >> 4) & 3 {
        1 => p.io_write(ch, count as u8),
        2 => p.io_write(ch, (count >> 8) as u8),
        _ => {
            p.io_write(ch, count as u8);
            p.io_write(ch, (count >> 8) as u8);
        }
    }
}

fn read_word(p: &mut I8254, ch: u16) -> u16 {
    u16::from(p.io_read(ch)) | (u16::from(p.io_read(ch)) << 8)
}

#[test]
fn mode2_rate_generator_counts_down_and_interrupts_periodically() {
    let mut p = I8254::new();
    program(&mut p, 0x34, 11932); // ~100 Hz
    let tick_ns = 1e9 / PIT_FREQ as f64;
    p.advance_to((1000.0 * tick_ns) as u64 + 1);
    assert_eq!(read_word(&mut p, 0), 11932 - 1000);
    let edges = p.irq_count();
    // 11932 ticks are 10.0001 ms: the 100th pulse comes just after one second.
    p.advance_to(1_000_000_000);
    assert_eq!(p.irq_count() - edges, 99);
    p.advance_to(1_000_100_000);
    assert_eq!(p.irq_count() - edges, 100);
}

#[test]
fn mode0_interrupt_on_terminal_count_is_one_shot() {
    let mut p = I8254::new();
    program(&mut p, 0x30, 1193); // mode 0, ~1 ms
    assert!(!p.output(0));
    p.advance_to(999_000);
    assert!(!p.output(0));
    p.advance_to(1_000_200);
    assert!(p.output(0) && p.irq_level());
    assert_eq!(p.irq_timer(), Timer::disarmed(), "no further transition");
    p.advance_to(10_000_000_000);
    assert_eq!(p.irq_count(), 1);
    // The counter keeps wrapping through 0xffff after terminal count.
    p.io_write(3, 0x00);
    let v = read_word(&mut p, 0);
    assert_eq!(
        v,
        ((1193u64 + 0x10000 * 200 - PIT_FREQ * 10) & 0xffff) as u16
    );
}

#[test]
fn mode3_square_wave_on_counter_2_needs_the_gate() {
    let mut p = I8254::new();
    assert!(!p.gate(2));
    program(&mut p, 0xb6, 0x1234);
    p.advance_to(1_000_000);
    p.set_gate(2, true); // rising edge restarts the count
    let half_ns = 0x91a * 1_000_000_000 / PIT_FREQ;
    assert!(p.output(2));
    p.advance_to(1_000_000 + half_ns - 1000);
    assert!(p.output(2));
    p.advance_to(1_000_000 + half_ns + 1000);
    assert!(!p.output(2));
    // Mode 3 counts down by two.
    p.io_write(3, 0x80);
    let c = read_word(&mut p, 2);
    assert!(c < 0x1234 && c % 2 == 0, "{c:#x}");
}

#[test]
fn lsb_and_msb_only_access() {
    let mut p = I8254::new();
    program(&mut p, 0x50, 0x77); // counter 1, lsb only, mode 0
    assert_eq!(p.channels[1].count, 0x77);
    program(&mut p, 0x60, 0x1200); // msb only
    assert_eq!(p.channels[1].count, 0x1200);
    assert_eq!(p.io_read(1), 0x12);
    assert_eq!(
        p.io_read(1),
        0x12,
        "msb access reads the high byte every time"
    );
    program(&mut p, 0x70, 0); // word access, 0 means 65536
    assert_eq!(p.channels[1].count, 0x10000);
}

#[test]
fn read_back_latches_count_and_status_once() {
    let mut p = I8254::new();
    program(&mut p, 0x34, 5000);
    p.io_write(3, 0xc2); // read-back counter 0: count and status
    p.advance_to(1_000_000);
    assert_eq!(p.io_read(0), 0x34, "status first: word access, mode 2");
    assert_eq!(
        read_word(&mut p, 0),
        5000,
        "then the count latched at the command"
    );
    p.io_write(3, 0x00);
    p.io_write(3, 0x00); // a second latch command does not overwrite the first
    assert_eq!(read_word(&mut p, 0), 5000 - 1193);
    assert_eq!(p.io_read(3), 0);
}

#[test]
fn irq_disabled_stops_counter_0_interrupts() {
    let mut p = I8254::new();
    program(&mut p, 0x34, 1193);
    p.set_irq_disabled(true);
    p.advance_to(100_000_000);
    assert_eq!(p.irq_count(), 0);
    p.set_irq_disabled(false);
    p.advance_to(200_000_000);
    assert_eq!(p.irq_count(), 100);
}

// ---- versions and hostile input ----

fn pit_payload() -> Vec<u8> {
    golden_section("pit", "i8254", 0).payload().to_vec()
}

fn load_err(bytes: &[u8], version: u32) -> String {
    let mut d = I8254::new();
    load_payload(&mut d, bytes, version, M72, "i8254")
        .unwrap_err()
        .to_string()
}

/// Payload offset of field `at` of channel `ch`.
fn ch_off(ch: usize, at: usize) -> usize {
    4 + 32 * ch + at
}

#[test]
fn v2_stream_loads_and_keeps_local_irq_disabled() {
    let v3 = pit_payload();
    let mut p = I8254::new();
    p.set_irq_disabled(true);
    load_payload(&mut p, &v3[4..], 2, M72, "i8254").unwrap();
    assert_eq!(p.irq_disabled, 1, "absent in v2: the board's setting stays");
    assert_eq!(p.channels[0].count, 0x2e9c);
    assert_eq!(p.irq_timer(), Timer::disarmed());
    let e = load_err(&v3, 1);
    assert!(e.contains("version 1 is too old"), "{e}");
}

#[test]
fn mode_8_is_rejected() {
    let mut bad = pit_payload();
    bad[ch_off(0, 13)] = 8;
    let e = load_err(&bad, 3);
    assert_eq!(
        e,
        format!(
            "at byte {:#x}, field `channels[0].mode`: invalid value 8: expected a value in 0..=7",
            ch_off(0, 13)
        )
    );
    bad[ch_off(0, 13)] = 7; // boundary: mode 7 is what QEMU stores when a guest writes it
    let mut p = I8254::new();
    load_payload(&mut p, &bad, 3, M72, "i8254").unwrap();
}

#[test]
fn zero_count_is_rejected() {
    let mut bad = pit_payload();
    bad[ch_off(2, 0)..ch_off(2, 4)].copy_from_slice(&[0; 4]);
    let e = load_err(&bad, 3);
    assert!(
        e.contains("field `channels[2].count`: invalid value 0: expected a value in 1..=0x10000"),
        "{e}"
    );
}

#[test]
fn out_of_range_access_states_are_rejected() {
    for (at, name, v, limit) in [
        (9, "read_state", 5u8, "0..=4"),
        (10, "write_state", 9, "0..=4"),
        (12, "rw_mode", 4, "0..=3"),
        (6, "count_latched", 4, "0..=3"),
    ] {
        let mut bad = pit_payload();
        bad[ch_off(1, at)] = v;
        let e = load_err(&bad, 3);
        assert!(
            e.contains(&format!(
                "field `channels[1].{name}`: invalid value {v}: expected a value in {limit}"
            )),
            "{e}"
        );
    }
}

#[test]
fn inconsistent_access_states_fail_post_load() {
    let mut bad = pit_payload();
    bad[ch_off(1, 9)] = 3; // read_state word, rw_mode lsb
    let e = load_err(&bad, 3);
    assert!(e.contains("validation failed: post_load: channels[1].read_state = 3 does not fit channels[1].rw_mode = 1"), "{e}");
    assert!(matches!(
        {
            let mut d = I8254::new();
            load_payload(&mut d, &bad, 3, M72, "i8254")
                .unwrap_err()
                .kind()
                .clone()
        },
        ErrorKind::ValidationFailed { .. }
    ));
}

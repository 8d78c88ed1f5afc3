//! 16550A: golden QEMU 7.2 sections (decode, oracle, byte-identical re-save, vmdesc), replays
//! of the guest port writes that produced them, register behaviour, hostile input.

mod common;

use common::*;
use examples_devices::serial::{
    fcr, ier, iir, lcr, lsr, mcr, msr, Fifo8, Serial16550, SerialBackend, SerialSection,
};
use serde_json::{json, Map, Value};
use vmstate_runtime::{ErrorKind, Timer};

const M72: &str = "pc-i440fx-7.2";

fn fifo_json(f: &Fifo8) -> Value {
    json!({"data": hex_bytes(&f.data), "head": hx(f.head, 4), "num": hx(f.num, 4)})
}

/// Our UART in analyze-migration.py's format, with every subsection.
fn serial_json(s: &Serial16550) -> Value {
    let mut m = Map::new();
    m.insert("divider".into(), hx(s.divider, 2));
    for (k, v) in [
        ("rbr", s.rbr),
        ("ier", s.ier),
        ("iir", s.iir),
        ("lcr", s.lcr),
        ("mcr", s.mcr),
        ("lsr", s.lsr),
        ("msr", s.msr),
        ("scr", s.scr),
        ("fcr_vmstate", s.fcr_vmstate),
    ] {
        m.insert(k.into(), hx(v, 1));
    }
    m.insert(
        "serial/thr_ipending".into(),
        json!({"thr_ipending": hx_signed(s.thr_ipending.into(), 4)}),
    );
    m.insert(
        "serial/tsr".into(),
        json!({"tsr_retry": hx(s.tsr_retry, 4), "thr": hx(s.thr, 1), "tsr": hx(s.tsr, 1)}),
    );
    m.insert(
        "serial/recv_fifo".into(),
        json!({"recv_fifo": fifo_json(&s.recv_fifo)}),
    );
    m.insert(
        "serial/xmit_fifo".into(),
        json!({"xmit_fifo": fifo_json(&s.xmit_fifo)}),
    );
    m.insert(
        "serial/fifo_timeout_timer".into(),
        json!({"fifo_timeout_timer": timer_json(s.fifo_timeout_timer)}),
    );
    m.insert(
        "serial/timeout_ipending".into(),
        json!({"timeout_ipending": hx_signed(s.timeout_ipending.into(), 4)}),
    );
    m.insert(
        "serial/poll".into(),
        json!({"poll_msl": hx_signed(s.poll_msl.into(), 4),
               "modem_status_poll": timer_json(s.modem_status_poll)}),
    );
    Value::Object(m)
}

/// Loads the golden section, checks the decoded registers against analyze-migration.py,
/// re-saves it and compares bytes and vmdesc with QEMU's.
fn check_golden(stream: &str, instance: u32, machine: &str, has_vmdesc: bool) -> SerialSection {
    let g = golden_section(stream, "serial", instance);
    let mut dev = SerialSection::default();
    load_payload(&mut dev, g.payload(), g.version, machine, "serial").unwrap();

    let (bytes, desc, version) = save_section(&dev, machine, "serial");
    assert_eq!(version, g.version);
    assert_bytes_eq(&bytes, g.payload());

    let sent: Vec<String> = desc.fields[0]
        .strukt
        .as_ref()
        .unwrap()
        .subsections
        .iter()
        .map(|s| s.vmsd_name.to_string())
        .collect();
    if has_vmdesc {
        assert_eq!(
            desc_text("serial", instance, desc),
            golden_vmdesc_device(stream, "serial", instance)
        );
        let oracle = golden_state(stream, "serial", g.section_id);
        let oracle = oracle["state"].as_object().unwrap();
        let ours = serial_json(&dev.state);
        for (k, v) in oracle {
            assert_eq!(&ours[k], v, "{stream}: field {k}");
        }
        let oracle_subs: Vec<&String> = oracle.keys().filter(|k| k.contains('/')).collect();
        assert_eq!(oracle_subs, sent.iter().collect::<Vec<_>>());
    }
    dev
}

#[test]
fn golden_idle() {
    let d = check_golden("idle", 0, M72, true).state;
    let fresh = Serial16550::new(SerialBackend::default());
    assert_eq!(save_state_of(d.clone()), save_state_of(fresh));
    // post_load re-applies the line parameters: LCR = 0 is 5N1 (7 bits a character), while a
    // reset UART keeps the 9600 8N1 character time until the guest programs the line.
    assert_eq!(d.char_transmit_time_ns(), 729_166);
}

#[test]
fn golden_uart_fifo() {
    let d = check_golden("uart-fifo", 0, M72, true).state;
    assert_eq!(d.recv_fifo.contents(), b"ABCDE");
    assert_eq!(d.fcr(), 0x41);
    assert_eq!(d.rx_trigger_level(), 4);
    assert_eq!(d.thr_ipending, 1);
    assert_eq!(d.fifo_timeout_timer, Timer::armed(0x3f_9408));
    assert_eq!(d.char_transmit_time_ns(), 1_041_666);
    assert_eq!(d.poll_msl, -1, "serial/poll absent: pre_load default");
}

#[test]
fn golden_uart_xmit_all_fifo_and_tsr_subsections() {
    let d = check_golden("uart-xmit", 0, M72, true).state;
    assert_eq!(d.tsr_retry, 1);
    assert_eq!((d.thr, d.tsr), (b'e', b'a'));
    assert_eq!(d.xmit_fifo.contents(), b"bcde");
    assert_eq!(d.poll_msl, 1);
    assert_eq!(d.modem_status_poll, Timer::armed(1_041_666));
    // thr_ipending was not sent: post_load derived it from IIR (RDI → 0).
    assert_eq!(d.thr_ipending, 0);
}

#[test]
fn golden_uart_timeout_timeout_ipending() {
    let d = check_golden("uart-timeout", 0, M72, true).state;
    assert_eq!(d.timeout_ipending, 1);
    assert_eq!(d.iir & 0x0f, iir::CTI);
}

#[test]
fn golden_two_ports() {
    let a = check_golden("two-ports", 0, M72, true).state;
    let b = check_golden("two-ports", 1, M72, true).state;
    assert_eq!(a.scr, 0x5a);
    assert_eq!((b.divider, b.rbr, b.scr, b.lsr), (1, 0x32, 0xa5, 0x63));
}

#[test]
fn golden_other_machine_types() {
    let q35 = check_golden("machine-pc-q35-7.2", 0, "pc-q35-7.2", true);
    let old = check_golden("machine-pc-i440fx-2.3", 0, "pc-i440fx-2.3", true);
    let older = check_golden("machine-pc-i440fx-2.2", 0, "pc-i440fx-2.2", false);
    let fifo = check_golden("uart-fifo", 0, M72, true);
    assert_eq!(q35, fifo);
    assert_eq!(old, fifo);
    assert_eq!(older, fifo);
}

#[test]
fn every_prefix_of_golden_sections_fails() {
    for (stream, inst) in [
        ("idle", 0),
        ("uart-fifo", 0),
        ("uart-xmit", 0),
        ("uart-timeout", 0),
        ("two-ports", 1),
    ] {
        let g = golden_section(stream, "serial", inst);
        assert_every_prefix_fails(SerialSection::default, g.bytes(), M72, "serial");
    }
}

// ---- replays of the guest port writes of scripts/make-golden.sh ----

fn uart_fifo_writes(u: &mut Serial16550) {
    for (off, v) in [
        (2, 0x47),
        (3, 0x80),
        (0, 0x0c),
        (1, 0x00),
        (3, 0x03),
        (1, 0x0f),
        (4, 0x1b),
        (0, 0x41),
        (0, 0x42),
        (0, 0x43),
        (0, 0x44),
        (0, 0x45),
        (7, 0x5a),
    ] {
        u.io_write(off, v);
    }
}

fn assert_replay(u: &Serial16550, stream: &str, inst: u32) {
    let (bytes, _, _) = save_section(&SerialSection::from(u.clone()), M72, "serial");
    assert_bytes_eq(&bytes, golden_section(stream, "serial", inst).payload());
}

#[test]
fn replay_uart_fifo() {
    let mut u = Serial16550::new(SerialBackend::default());
    uart_fifo_writes(&mut u);
    assert_replay(&u, "uart-fifo", 0);
    assert!(
        u.tx_output().is_empty(),
        "loopback sends nothing to the backend"
    );
}

#[test]
fn replay_two_ports() {
    let mut com1 = Serial16550::new(SerialBackend::default());
    uart_fifo_writes(&mut com1);
    let mut com2 = Serial16550::new(SerialBackend::default());
    for (off, v) in [
        (3, 0x80),
        (0, 0x01),
        (1, 0x00),
        (3, 0x1b),
        (1, 0x01),
        (4, 0x13),
        (0, 0x31),
        (0, 0x32),
        (4, 0x03),
        (7, 0xa5),
    ] {
        com2.io_write(off, v);
    }
    assert_replay(&com1, "two-ports", 0);
    assert_replay(&com2, "two-ports", 1);
}

#[test]
fn replay_uart_xmit_with_stopped_pty() {
    // A pty: modem control available, all input lines low.
    let mut u = Serial16550::new(SerialBackend {
        modem_control: true,
        modem_lines: 0,
    });
    uart_fifo_writes(&mut u);
    u.io_write(4, 0x0b);
    u.set_tx_blocked(true);
    for b in *b"abcde" {
        u.io_write(0, b);
    }
    assert_replay(&u, "uart-xmit", 0);
    // The pty starts draining again: everything comes out in order.
    u.set_tx_blocked(false);
    assert_eq!(u.tx_output(), b"abcde");
    assert_eq!(u.lsr & (lsr::THRE | lsr::TEMT), lsr::THRE | lsr::TEMT);
    assert_eq!(u.tsr_retry, 0);
}

// ---- register behaviour ----

#[test]
fn fifo_mode_receive_trigger_level_and_timeout() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.io_write(2, fcr::FE | fcr::RFR | fcr::XFR | 0x80); // trigger level 8
    u.io_write(1, ier::RDI);
    assert_eq!(u.io_read(2), iir::FE | iir::NO_INT);
    assert_eq!(
        u.receive(b"0123456789"),
        8,
        "can_receive advertises up to the trigger level"
    );
    assert_eq!(u.io_read(2) & 0x0f, iir::RDI);
    assert!(u.irq_level());
    // Drain below the trigger level: no RDI, then the character timeout fires.
    for _ in 0..2 {
        u.io_read(0);
    }
    assert_eq!(u.io_read(2) & 0x0f, iir::NO_INT);
    let deadline = u.fifo_timeout_timer.expire_ns.unwrap();
    u.advance_to(deadline - 1);
    assert_eq!(u.timeout_ipending, 0);
    u.advance_to(deadline);
    assert_eq!(u.io_read(2) & 0x0f, iir::CTI);
    let mut got = Vec::new();
    while u.io_read(5) & lsr::DR != 0 {
        got.push(u.io_read(0));
    }
    assert_eq!(got, b"234567");
    assert_eq!(
        u.io_read(2) & 0x0f,
        iir::NO_INT,
        "reading RBR clears the timeout"
    );
}

#[test]
fn rx_overrun_sets_oe_and_lsr_read_clears_it() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.io_write(1, ier::RLSI | ier::RDI);
    u.io_write(4, mcr::LOOP);
    u.io_write(0, 1);
    u.io_write(0, 2);
    assert_eq!(u.lsr & (lsr::DR | lsr::OE), lsr::DR | lsr::OE);
    assert_eq!(
        u.io_read(2),
        iir::RLSI,
        "line status has the highest priority"
    );
    assert_ne!(u.io_read(5) & lsr::OE, 0);
    assert_eq!(u.lsr & lsr::OE, 0);
    assert_eq!(u.io_read(2), iir::RDI);
    assert_eq!(u.io_read(0), 2, "non-FIFO mode keeps the last byte");
    assert_eq!(u.io_read(2), iir::NO_INT);
}

#[test]
fn thr_empty_interrupt_is_acknowledged_by_iir_read_and_rearmed_by_ier() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.io_write(1, ier::THRI);
    assert_eq!(u.io_read(2), iir::THRI);
    assert_eq!(u.io_read(2), iir::NO_INT, "reading IIR acknowledged THRI");
    u.io_write(1, 0);
    u.io_write(1, ier::THRI);
    assert_eq!(
        u.io_read(2),
        iir::THRI,
        "toggling IER.THRI samples THRE again"
    );
    u.io_write(0, b'x');
    assert_eq!(u.tx_output(), b"x");
    assert_eq!(u.io_read(2), iir::THRI, "transmitted: THR empty again");
}

#[test]
fn divisor_latch_and_line_parameters() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.io_write(3, lcr::DLAB | 0x03);
    u.io_write(0, 0x01);
    u.io_write(1, 0x00);
    assert_eq!((u.io_read(0), u.io_read(1)), (0x01, 0x00));
    u.io_write(3, 0x1b); // 8E1
    assert_eq!(u.divider, 1);
    assert_eq!(u.char_transmit_time_ns(), 95_486); // 11 bits at 115200 baud
    u.io_write(3, 0x43);
    assert!(u.break_enabled());
    u.io_write(7, 0x99);
    assert_eq!(u.io_read(7), 0x99);
}

#[test]
fn loopback_maps_modem_outputs_to_inputs() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.io_write(4, mcr::LOOP | mcr::OUT2 | mcr::RTS);
    assert_eq!(u.io_read(6), msr::DCD | msr::CTS);
    u.io_write(4, mcr::LOOP | mcr::OUT1 | mcr::DTR);
    assert_eq!(u.io_read(6), msr::RI | msr::DSR);
}

#[test]
fn modem_lines_are_polled_with_delta_bits() {
    let mut u = Serial16550::new(SerialBackend {
        modem_control: true,
        modem_lines: msr::CTS,
    });
    assert_eq!(u.msr, msr::CTS, "reset clears the deltas");
    u.io_write(1, ier::MSI);
    assert_eq!(u.poll_msl, 1);
    u.set_modem_lines(msr::CTS | msr::DCD);
    assert_eq!(u.io_read(2), iir::NO_INT, "not seen before the poll");
    let t = u.modem_status_poll.expire_ns.unwrap();
    u.advance_to(t);
    assert_eq!(u.io_read(2), iir::MSI);
    assert_eq!(u.io_read(6), msr::CTS | msr::DCD | msr::DDCD);
    assert_eq!(u.io_read(2), iir::NO_INT, "MSR read clears the deltas");
    // Without modem control the UART never polls.
    let mut n = Serial16550::new(SerialBackend::default());
    n.io_write(1, ier::MSI);
    assert_eq!(n.poll_msl, -1);
    assert_eq!(n.modem_status_poll, Timer::disarmed());
}

#[test]
fn fifo_transmit_with_blocked_backend_retries_then_drops() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.io_write(2, fcr::FE);
    u.set_tx_blocked(true);
    u.io_write(0, b'1');
    u.io_write(0, b'2');
    assert_eq!(u.tsr_retry, 1);
    assert_eq!(u.lsr & (lsr::THRE | lsr::TEMT), 0);
    // The backend never drains; each watch firing retries, then the byte is dropped.
    for _ in 0..3 {
        u.advance_to(u.now_ns()); // still blocked: no retry without a writable backend
    }
    assert_eq!(u.tsr_retry, 1);
    u.set_tx_blocked(false);
    assert_eq!(u.tx_output(), b"12");
    assert_eq!(u.lsr & lsr::TEMT, lsr::TEMT);
}

#[test]
fn receive_in_non_fifo_mode_takes_one_byte_at_a_time() {
    let mut u = Serial16550::new(SerialBackend::default());
    assert_eq!(u.receive(b"hi"), 1);
    assert_eq!(u.receive(b"i"), 0);
    assert_eq!(u.io_read(0), b'h');
    assert_eq!(u.receive(b"i"), 1);
    assert_eq!(u.io_read(0), b'i');
}

// ---- versions and hostile input ----

fn uart_fifo_payload() -> Vec<u8> {
    golden_section("uart-fifo", "serial", 0).payload().to_vec()
}

#[test]
fn section_version_2_loads_inner_struct_at_its_own_version() {
    // QEMU's nested-struct quirk: the header version does not reach the inner struct, so
    // fcr_vmstate (a v3 field of the inner vmsd) is still read from a v2 section.
    let mut d = SerialSection::default();
    load_payload(&mut d, &uart_fifo_payload(), 2, M72, "serial").unwrap();
    assert_eq!(d.state.fcr(), 0x41);
    let mut d = SerialSection::default();
    let e = load_payload(&mut d, &uart_fifo_payload(), 4, M72, "serial").unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::VersionTooNew { found: 4, max: 3 }),
        "{e}"
    );
    let e = load_payload(&mut d, &uart_fifo_payload(), 1, M72, "serial").unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::VersionTooOld { found: 1, min: 2 }),
        "{e}"
    );
}

fn save_state_of(u: Serial16550) -> Vec<u8> {
    save_section(&SerialSection::from(u), M72, "serial").0
}

fn load_err(bytes: &[u8]) -> String {
    let mut d = SerialSection::default();
    load_payload(&mut d, bytes, 3, M72, "serial")
        .unwrap_err()
        .to_string()
}

#[test]
fn tsr_retry_with_transmitter_empty_is_rejected() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.tsr_retry = 2; // but LSR.TEMT is set
    let e = load_err(&save_state_of(u));
    assert!(
        e.contains("tsr_retry = 2") && e.contains("LSR.TEMT is set"),
        "{e}"
    );
    assert!(e.contains("field `state`"), "{e}");
}

#[test]
fn transmitter_busy_without_retry_is_rejected() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.lsr &= !lsr::TEMT;
    let e = load_err(&save_state_of(u));
    assert!(
        e.contains("tsr_retry = 0") && e.contains("LSR.TEMT is clear"),
        "{e}"
    );
}

#[test]
fn tsr_retry_is_clamped_to_max_xmit_retry() {
    let mut u = Serial16550::new(SerialBackend::default());
    u.tsr_retry = 1000;
    u.lsr &= !lsr::TEMT;
    let mut d = SerialSection::default();
    load_payload(&mut d, &save_state_of(u), 3, M72, "serial").unwrap();
    assert_eq!(d.state.tsr_retry, 4);
}

#[test]
fn fifo_head_and_num_beyond_capacity_are_rejected() {
    // recv_fifo starts at payload offset 11 + 29 (thr_ipending) + 23 (header): head at +16.
    let good = uart_fifo_payload();
    let head_at = 11 + 29 + 1 + 1 + 16 + 4 + 16;
    assert_eq!(&good[head_at..head_at + 8], &[0, 0, 0, 0, 0, 0, 0, 5]);
    let mut bad = good.clone();
    bad[head_at + 3] = 16;
    let e = load_err(&bad);
    assert_eq!(
        e,
        format!(
            "at byte {:#x}, field `state.serial/recv_fifo.recv_fifo.head`: invalid value 16: expected a value in 0..16",
            head_at
        )
    );
    let mut ok = good.clone();
    ok[head_at + 3] = 15; // boundary: the last valid index
    let mut d = SerialSection::default();
    load_payload(&mut d, &ok, 3, M72, "serial").unwrap();
    assert_eq!(
        d.state.recv_fifo.contents(),
        vec![0, b'A', b'B', b'C', b'D']
    );
    let mut bad = good;
    bad[head_at + 7] = 17;
    let e = load_err(&bad);
    assert!(
        e.contains("recv_fifo.num`: invalid value 17: expected a value in 0..=16"),
        "{e}"
    );
}

#[test]
fn unknown_serial_subsection_is_rejected() {
    let mut p = uart_fifo_payload();
    p.truncate(11);
    p.extend_from_slice(&[0x05, 0x0a]);
    p.extend_from_slice(b"serial/foo");
    p.extend_from_slice(&[0, 0, 0, 1]);
    let e = load_err(&p);
    assert!(e.contains("unknown subsection `serial/foo`"), "{e}");
}

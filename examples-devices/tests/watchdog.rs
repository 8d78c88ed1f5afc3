//! demo-wdt: exact bytes per machine type (every gate kind and the pinned version), loads of
//! older versions, validation, behaviour.

mod common;

use common::*;
use examples_devices::watchdog::{
    action, compat_entries, ctrl, status, DemoWatchdog, WatchdogConfig, WatchdogEvent, DRIVER,
};
use vmstate_runtime::schema::{MachineVersion, Presence};
use vmstate_runtime::{ErrorKind, Timer, VmState};

fn config(machine: &str) -> WatchdogConfig {
    WatchdogConfig::for_machine(&catalog().resolve(machine).unwrap(), 2)
}

/// Enabled with RELOAD 1000 (and PRETIMEOUT 100 where the machine type has it) at t = 0,
/// kicked at 100 ms (counter 900), saved at 350 ms (counter 750, deadline 1.1 s).
fn running(machine: &str) -> DemoWatchdog {
    let mut w = DemoWatchdog::new(config(machine));
    set_reload(&mut w, 1000);
    w.io_write(0x10, 100);
    w.io_write(0x00, ctrl::EN | ctrl::IRQ_EN);
    w.advance_to(100_000_000);
    w.io_write(0x02, 0x5a);
    w.advance_to(350_000_000);
    w
}

const HEAD: [u8; 7] = [0x03, 0x01, 0x02, 0x00, 0x00, 0x03, 0xe8]; // ctrl action outputs reload
const COUNTER_750: [u8; 4] = [0x00, 0x00, 0x02, 0xee];
const UNUSED_PRESCALER: [u8; 5] = [0, 0, 0, 0, 0x01];
const EXPIRATIONS_0: [u8; 4] = [0; 4];
const DEADLINE_1_1S: [u8; 8] = [0, 0, 0, 0, 0x41, 0x90, 0xab, 0x00];
const PRETIMEOUT_100: [u8; 4] = [0, 0, 0, 0x64];

/// The running watchdog's fields up to v2 (every machine type sends them).
fn v2_fields() -> Vec<u8> {
    cat(&[&HEAD, &COUNTER_750, &UNUSED_PRESCALER, &EXPIRATIONS_0])
}

/// Its fields up to v3: v2's and the deadline (machine types from 5.0 on).
fn v3_fields() -> Vec<u8> {
    cat(&[&v2_fields(), &DEADLINE_1_1S])
}

fn stats_one_kick_at_900() -> Vec<u8> {
    let mut v = vec![0x05, 14];
    v.extend_from_slice(b"demo-wdt/stats");
    v.extend_from_slice(&[0, 0, 0, 1]); // subsection version
    v.extend_from_slice(&[0, 0, 0, 1]); // kicks
    v.push(1); // kick_log_len
    v.extend_from_slice(&[0, 0, 0x03, 0x84]); // kick_log[0] = 900
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn set_reload(w: &mut DemoWatchdog, v: u32) {
    for (i, b) in v.to_le_bytes().into_iter().enumerate() {
        w.io_write(0x04 + i as u16, b);
    }
}

fn save(w: &DemoWatchdog, machine: &str) -> (Vec<u8>, u32) {
    let (b, _, v) = save_section(w, machine, DRIVER);
    (b, v)
}

#[test]
fn schema_pins_and_static_gates() {
    let s = DemoWatchdog::SCHEMA;
    assert_eq!((&*s.name, s.version, s.min_version), ("demo-wdt", 3, 1));
    assert_eq!(s.version_for(MachineVersion::new(4, 2)), 2);
    assert_eq!(s.version_for(MachineVersion::new(5, 0)), 3);
    let cat = catalog();
    let presence = |machine: &str, gate: &vmstate_runtime::schema::Gate| {
        let m = cat.resolve(machine).unwrap();
        gate.presence(m.version(), &|p| m.compat(DRIVER, p).unwrap_or(true))
    };
    let counter = s
        .fields
        .iter()
        .find(|f| f.name == "counter")
        .unwrap()
        .gate
        .as_deref()
        .unwrap();
    let stats = s.subsections[0].gate.as_deref().unwrap();
    let pending = s.subsections[1].gate.as_deref().unwrap();
    assert_eq!(presence("pc-i440fx-5.2", counter), Presence::Always);
    assert_eq!(presence("pc-i440fx-6.0", counter), Presence::Maybe);
    assert_eq!(presence("pc-i440fx-6.2", stats), Presence::Never);
    assert_eq!(presence("pc-q35-7.0", stats), Presence::Always);
    assert_eq!(presence("pc-i440fx-6.2", pending), Presence::Never);
    assert_eq!(presence("pc-i440fx-7.2", pending), Presence::Maybe);
    assert_eq!(compat_entries()[0].upto, "6.2");
}

#[test]
fn exact_bytes_pc_i440fx_4_2_pinned_v2() {
    let (b, v) = save(&running("pc-i440fx-4.2"), "pc-i440fx-4.2");
    assert_eq!(v, 2);
    assert_bytes_eq(&b, &v2_fields());
}

#[test]
fn exact_bytes_pc_i440fx_5_0_v3_adds_deadline() {
    let (b, v) = save(&running("pc-i440fx-5.0"), "pc-i440fx-5.0");
    assert_eq!(v, 3);
    assert_bytes_eq(&b, &v3_fields());
}

#[test]
fn exact_bytes_6_0_and_6_2_add_pretimeout_but_no_stats() {
    let want = cat(&[&v3_fields(), &PRETIMEOUT_100]);
    for m in ["pc-i440fx-6.0", "pc-q35-6.2"] {
        let mut w = running(m);
        w.status = status::PRETIMEOUT; // pending, but not migrated before 7.0
        let (b, v) = save(&w, m);
        assert_eq!(v, 3);
        assert_bytes_eq(&b, &want);
    }
}

#[test]
fn exact_bytes_7_0_and_7_2_add_stats_and_pending() {
    let body = cat(&[&v3_fields(), &PRETIMEOUT_100, &stats_one_kick_at_900()]);
    for m in ["pc-i440fx-7.0", "pc-i440fx-7.2"] {
        let (b, _) = save(&running(m), m);
        assert_bytes_eq(&b, &body);
    }
    let mut w = running("pc-i440fx-7.2");
    w.status = status::EXPIRED;
    let (b, _) = save(&w, "pc-i440fx-7.2");
    let mut pending = vec![0x05, 16];
    pending.extend_from_slice(b"demo-wdt/pending");
    pending.extend_from_slice(&[0, 0, 0, 1, status::EXPIRED]);
    assert_bytes_eq(&b, &cat(&[&body, &pending]));
}

#[test]
fn counter_is_omitted_while_disabled_from_6_0() {
    let mut w = DemoWatchdog::new(config("pc-i440fx-6.0"));
    set_reload(&mut w, 10); // disabled: COUNTER reads 10
    let (b52, _) = save(&w, "pc-i440fx-5.2");
    let (b60, _) = save(&w, "pc-i440fx-6.0");
    let head = [0x00, 0x01, 0x02, 0, 0, 0, 10];
    let tail = cat(&[&UNUSED_PRESCALER, &EXPIRATIONS_0, &[0xff; 8]]);
    assert_bytes_eq(&b52, &cat(&[&head, &[0, 0, 0, 10], &tail]));
    assert_bytes_eq(&b60, &cat(&[&head, &tail, &[0; 4]]));
    let mut d = DemoWatchdog::new(config("pc-i440fx-6.0"));
    load_payload(&mut d, &b60, 3, "pc-i440fx-6.0", DRIVER).unwrap();
    assert_eq!(d.counter, 10, "absent counter defaults to RELOAD");
    assert_eq!(d, w);
}

#[test]
fn vmdesc_7_2() {
    let (_, desc, _) = save_section(&running("pc-i440fx-7.2"), "pc-i440fx-7.2", DRIVER);
    assert_eq!(
        desc_text(DRIVER, 0, desc),
        concat!(
            r#"{"name": "demo-wdt", "instance_id": 0, "vmsd_name": "demo-wdt", "version": 3, "fields": ["#,
            r#"{"name": "ctrl", "type": "uint8", "size": 1}, {"name": "action", "type": "uint8", "size": 1}, "#,
            r#"{"name": "outputs", "type": "uint8 equal", "size": 1}, {"name": "reload", "type": "uint32", "size": 4}, "#,
            r#"{"name": "counter", "type": "uint32", "size": 4}, {"name": "unused", "type": "unused_buffer", "size": 4}, "#,
            r#"{"name": "prescaler", "type": "uint8", "size": 1}, {"name": "expirations", "type": "uint32", "size": 4}, "#,
            r#"{"name": "deadline", "type": "timer", "size": 8}, {"name": "pretimeout", "type": "uint32", "size": 4}], "#,
            r#""subsections": [{"vmsd_name": "demo-wdt/stats", "version": 1, "fields": ["#,
            r#"{"name": "kicks", "type": "uint32", "size": 4}, {"name": "kick_log_len", "type": "uint8", "size": 1}, "#,
            r#"{"name": "kick_log", "type": "uint32", "size": 4}]}]}"#
        )
    );
}

#[test]
fn round_trip_on_every_machine_type_of_the_catalog() {
    for m in catalog().machine_names() {
        let src = running(&m);
        let (bytes, version) = save(&src, &m);
        let mut dst = DemoWatchdog::new(config(&m));
        dst.set_now_ns(src.now_ns());
        load_payload(&mut dst, &bytes, version, &m, DRIVER).unwrap();
        assert_eq!(dst.deadline, Timer::armed(1_100_000_000), "{m}");
        let stats = m.ends_with("7.0") || m.ends_with("7.1") || m.ends_with("7.2");
        assert_eq!(dst.kicks, u32::from(stats), "{m}");
        assert_eq!(save(&dst, &m).0, bytes, "{m}");
    }
}

#[test]
fn v1_stream_loads_with_defaults() {
    // v1: ctrl action outputs reload counter irq_line prescaler, from a release that only
    // knew machine types before 5.0.
    let v1 = cat(&[&HEAD, &COUNTER_750, &UNUSED_PRESCALER]);
    let mut d = DemoWatchdog::new(config("pc-i440fx-4.2"));
    d.set_now_ns(5_000_000_000);
    load_payload(&mut d, &v1, 1, "pc-i440fx-4.2", DRIVER).unwrap();
    assert_eq!(d.expirations, 0);
    assert_eq!(d.pretimeout, 0, "not in the stream: default");
    assert_eq!(
        d.deadline,
        Timer::armed(5_750_000_000),
        "derived from counter"
    );
    d.advance_to(5_750_000_000);
    assert_eq!(d.status, status::EXPIRED);
}

fn load_7_2(bytes: &[u8], outputs: u8) -> Result<DemoWatchdog, vmstate_runtime::Error> {
    let mut d = DemoWatchdog::new(WatchdogConfig {
        outputs,
        pretimeout: true,
    });
    load_payload(&mut d, bytes, 3, "pc-i440fx-7.2", DRIVER).map(|()| d)
}

#[test]
fn hostile_and_inconsistent_streams_are_rejected() {
    let good = save(&running("pc-i440fx-7.2"), "pc-i440fx-7.2").0;
    load_7_2(&good, 2).unwrap();

    let e = load_7_2(&good, 3).unwrap_err();
    assert!(matches!(
        e.kind(),
        ErrorKind::NotEqual {
            expected: 3,
            found: 2
        }
    ));
    assert_eq!(
        e.to_string(),
        "at byte 0x2, field `outputs`: value 2 differs from the configured value 3"
    );

    let mut bad = good.clone();
    bad[1] = 4; // action
    let e = load_7_2(&bad, 2).unwrap_err().to_string();
    assert_eq!(
        e,
        "at byte 0x1, field `action`: invalid value 4: expected a value in 0..=3"
    );

    let mut bad = good.clone();
    bad[15] = 0; // prescaler
    let e = load_7_2(&bad, 2).unwrap_err().to_string();
    assert!(e.contains("field `prescaler`: invalid value 0"), "{e}");

    let len_at = good.len() - 5;
    let mut bad = good.clone();
    bad[len_at] = 8; // boundary: all 8 entries (bytes run out)
    assert!(matches!(
        load_7_2(&bad, 2).unwrap_err().kind(),
        ErrorKind::UnexpectedEof { .. }
    ));
    bad[len_at] = 9;
    let e = load_7_2(&bad, 2).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::LengthTooLarge { len: 9, limit: 8 }),
        "{e}"
    );
    assert!(e.to_string().contains("demo-wdt/stats.kick_log"), "{e}");

    let mut bad = good.clone();
    bad[7..11].copy_from_slice(&2000u32.to_be_bytes()); // counter > reload
    let e = load_7_2(&bad, 2).unwrap_err().to_string();
    assert!(
        e.ends_with("validation failed: validate Self::validate: counter 2000 exceeds reload 1000"),
        "{e}"
    );

    // Disabled (so no counter on 7.2; `pred(Self::enabled)` reads the ctrl byte just loaded),
    // but the deadline is armed.
    let mut bad = good;
    bad[0] = ctrl::IRQ_EN;
    bad.drain(7..11);
    let e = load_7_2(&bad, 2).unwrap_err().to_string();
    assert!(
        e.contains("deadline is armed but the watchdog is disabled"),
        "{e}"
    );

    let mut d = DemoWatchdog::new(config("pc-i440fx-7.2"));
    let e = load_payload(&mut d, &[], 4, "pc-i440fx-7.2", DRIVER).unwrap_err();
    assert!(matches!(
        e.kind(),
        ErrorKind::VersionTooNew { found: 4, max: 3 }
    ));
}

#[test]
fn every_prefix_fails() {
    let mut w = running("pc-i440fx-7.2");
    w.status = status::EXPIRED;
    let payload = save(&w, "pc-i440fx-7.2").0;
    let mut framed = vec![0x04, 0, 0, 0, 9, 8];
    framed.extend_from_slice(b"demo-wdt");
    framed.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
    framed.extend_from_slice(&payload);
    framed.extend_from_slice(&[0x7e, 0, 0, 0, 9]);
    assert_every_prefix_fails(
        || DemoWatchdog::new(config("pc-i440fx-7.2")),
        &framed,
        "pc-i440fx-7.2",
        DRIVER,
    );
}

// ---- behaviour ----

#[test]
fn countdown_pretimeout_expiry_and_actions() {
    let mut w = DemoWatchdog::new(WatchdogConfig {
        outputs: 1,
        pretimeout: true,
    });
    set_reload(&mut w, 100);
    w.io_write(0x10, 10);
    w.io_write(0x01, action::RESET);
    w.io_write(0x00, ctrl::EN | ctrl::IRQ_EN);
    w.advance_to(89_000_000);
    assert_eq!(w.io_read(0x08), 11);
    assert!(!w.irq_level());
    w.advance_to(90_000_000);
    assert_eq!(w.io_read(0x03), status::PRETIMEOUT);
    assert!(w.irq_level());
    w.io_write(0x03, status::PRETIMEOUT);
    assert!(!w.irq_level());
    w.advance_to(100_000_000);
    assert_eq!(w.io_read(0x03), status::EXPIRED);
    assert_eq!(w.take_event(), Some(WatchdogEvent::Reset));
    assert_eq!(w.io_read(0x14), 1);
    assert_eq!(w.io_read(0x08), 100, "restarted");
}

#[test]
fn kicks_reload_and_are_logged() {
    let mut w = DemoWatchdog::new(config("pc-i440fx-7.2"));
    set_reload(&mut w, 50);
    w.io_write(0x02, 0x5a);
    assert_eq!(w.kicks, 0, "kicking a disabled watchdog does nothing");
    w.io_write(0x00, ctrl::EN);
    for i in 0..10u64 {
        w.advance_to((i + 1) * 10_000_000 + i * 10_000_000);
        w.io_write(0x02, 0x5a);
    }
    assert_eq!(w.kicks, 10);
    assert_eq!(w.kick_log_len, 8);
    assert_eq!(w.kick_log, [30; 8]);
    assert_eq!(w.status, 0, "never expired");
    w.io_write(0x02, 0x00); // wrong magic
    assert_eq!(w.kicks, 10);
    w.io_write(0x0c, 0);
    assert_eq!(w.io_read(0x0c), 1, "prescaler 0 reads as 1");
    assert_eq!(w.io_read(0x0d), 2);
}

#[test]
fn pretimeout_register_needs_the_6_0_feature() {
    let mut old = DemoWatchdog::new(config("pc-i440fx-5.2"));
    old.io_write(0x10, 5);
    assert_eq!(old.pretimeout, 0);
    let mut new = DemoWatchdog::new(config("pc-i440fx-6.0"));
    new.io_write(0x10, 5);
    assert_eq!(new.io_read(0x10), 5);
}

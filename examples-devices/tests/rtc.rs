//! MC146818: golden QEMU 7.2 sections, replay of the guest's port writes, register and timer
//! behaviour, older stream versions, hostile input.

mod common;

use common::*;
use examples_devices::reencode::{reencode, ReencodeOptions};
use examples_devices::rtc::{
    format_time, reg, reg_a, reg_b, reg_c, LostTickPolicy, Mc146818Rtc, RtcBase, RtcClock,
    RtcConfig,
};
use serde_json::{json, Map, Value};
use vmstate_runtime::Timer;

const M72: &str = "pc-i440fx-7.2";
const Y2020: i64 = 1_577_836_800;

fn rtc_json(r: &Mc146818Rtc, with_sub: bool) -> Value {
    let mut m = Map::new();
    m.insert("cmos_data".into(), hex_bytes(&r.cmos_data));
    m.insert("cmos_index".into(), hx(r.cmos_index, 1));
    m.insert("unused[0]".into(), hex_bytes(&[0; 28]));
    m.insert("periodic_timer".into(), timer_json(r.periodic_timer));
    m.insert(
        "next_periodic_time".into(),
        hx_signed(r.next_periodic_time, 8),
    );
    m.insert("unused[1]".into(), hex_bytes(&[0; 24]));
    m.insert("irq_coalesced".into(), hx(r.irq_coalesced, 4));
    m.insert("period".into(), hx(r.period, 4));
    m.insert("base_rtc".into(), hx(r.base_rtc, 8));
    m.insert("last_update".into(), hx(r.last_update, 8));
    m.insert("offset".into(), hx_signed(r.offset, 8));
    m.insert("update_timer".into(), timer_json(r.update_timer));
    m.insert("next_alarm_time".into(), hx(r.next_alarm_time, 8));
    if with_sub {
        m.insert(
            "mc146818rtc/irq_reinject_on_ack_count".into(),
            json!({"irq_reinject_on_ack_count": hx(r.irq_reinject_on_ack_count, 2)}),
        );
    }
    Value::Object(m)
}

/// Loads, checks against analyze-migration.py, re-saves. `now` is the destination's virtual
/// clock when the section loads (QEMU restores it from the `timer` section first).
fn check_golden(
    stream: &str,
    machine: &str,
    policy: LostTickPolicy,
    now: u64,
    has_vmdesc: bool,
) -> Mc146818Rtc {
    let mut dev = Mc146818Rtc::new(0, policy);
    dev.set_now_ns(now);
    check_golden_into(dev, stream, machine, has_vmdesc)
}

/// [`check_golden`] into a given destination device.
fn check_golden_into(
    mut dev: Mc146818Rtc,
    stream: &str,
    machine: &str,
    has_vmdesc: bool,
) -> Mc146818Rtc {
    let g = golden_section(stream, "mc146818rtc", 0);
    load_payload(&mut dev, g.payload(), g.version, machine, "mc146818rtc").unwrap();
    let (bytes, desc, version) = save_section(&dev, machine, "mc146818rtc");
    assert_eq!(version, 3);
    assert_bytes_eq(&bytes, g.payload());
    if has_vmdesc {
        let sent = !desc.subsections.is_empty();
        assert_eq!(
            desc_text("mc146818rtc", 0, desc),
            golden_vmdesc_device(stream, "mc146818rtc", 0)
        );
        assert_eq!(
            rtc_json(&dev, sent),
            golden_state(stream, "mc146818rtc", g.section_id)
        );
    }
    dev
}

#[test]
fn golden_idle_equals_a_fresh_rtc_with_the_boards_cmos_bytes() {
    let d = check_golden("idle", M72, LostTickPolicy::Discard, 0, true);
    let mut fresh = Mc146818Rtc::new(Y2020, LostTickPolicy::Discard);
    // The board's firmware configuration bytes (memory size, floppy, …) go in directly.
    for i in 0x0e..0x80u8 {
        if i != reg::CENTURY {
            fresh.set_cmos_byte(i, d.cmos_data[usize::from(i)]);
        }
    }
    assert_eq!(
        save_section(&fresh, M72, "mc146818rtc").0,
        golden_section("idle", "mc146818rtc", 0).payload()
    );
    assert_eq!(d.guest_time_secs(), Y2020);
}

#[test]
fn golden_rtc_periodic_timer_armed() {
    let d = check_golden("rtc", M72, LostTickPolicy::Discard, 0, true);
    assert_eq!(d.period, 512);
    assert_eq!(d.periodic_timer, Timer::armed(15_625_001));
    assert_eq!(
        &d.cmos_data[0x40..0x50],
        &(0x40..0x50).collect::<Vec<u8>>()[..]
    );
}

#[test]
fn golden_rtc_slew_with_reinject_subsection() {
    // The source saved about 100 ms in; its deadline is our clock at load.
    let d = check_golden("rtc-slew", M72, LostTickPolicy::Slew, 100_585_938, true);
    assert_eq!(d.irq_coalesced, 102);
    assert_eq!(d.irq_reinject_on_ack_count, 1);
    assert_eq!(d.period, 32);
}

#[test]
fn golden_other_machine_types() {
    let base = check_golden("idle", M72, LostTickPolicy::Discard, 0, true);
    for (stream, machine, desc) in [
        ("uart-fifo", M72, true),
        ("machine-pc-q35-7.2", "pc-q35-7.2", true),
        ("machine-pc-i440fx-2.3", "pc-i440fx-2.3", true),
        ("machine-pc-i440fx-2.2", "pc-i440fx-2.2", false),
    ] {
        let d = check_golden(stream, machine, LostTickPolicy::Discard, 0, desc);
        assert_eq!(d.base_rtc, base.base_rtc, "{stream}");
    }
}

// ---- clock sources (`-rtc clock=host|rt|vm`) ----

/// 2031-07-04 12:34:56 UTC, the date the guest sets in the rtc-host-set, rtc-vm and rtc-rt
/// streams.
const Y2031: i64 = 1_940_934_896;
/// When the rtc-host stream was made (QEMU's defaults: the host's UTC date).
const RTC_HOST_MADE: i64 = 1_795_925_171;
const NS: u64 = 1_000_000_000;

fn on(clock: RtcClock) -> Mc146818Rtc {
    let config = RtcConfig {
        clock,
        ..RtcConfig::default()
    };
    // A destination powered on at some other time: the stream overrides it.
    Mc146818Rtc::power_on(config, 1_000_000_000, 5 * NS)
}

/// The streams of the three clocks, the clock, and the guest's time at the save.
const CLOCK_STREAMS: [(&str, RtcClock, i64); 4] = [
    ("rtc-host", RtcClock::Host, RTC_HOST_MADE),
    ("rtc-host-set", RtcClock::Host, Y2031 + 1),
    ("rtc-vm", RtcClock::Virtual, Y2031 + 1),
    ("rtc-rt", RtcClock::Realtime, Y2031 + 1),
];

#[test]
fn golden_clock_streams_resave_byte_identical_with_the_guests_date() {
    for (stream, clock, time) in CLOCK_STREAMS {
        let d = check_golden_into(on(clock), stream, M72, true);
        assert!(d.holds_loaded_time(), "{stream}");
        assert_eq!(
            format_time(d.guest_time_secs()),
            format_time(time),
            "{stream}"
        );
        assert_eq!(d.time_register_secs(), time, "{stream}");
    }
    // QEMU's default clock: last_update is host time, ns since 1970, not virtual time.
    let d = check_golden_into(on(RtcClock::Host), "rtc-host", M72, true);
    assert_eq!(d.last_update / NS, RTC_HOST_MADE as u64);
    assert_eq!(d.base_rtc, RTC_HOST_MADE as u64);
    assert_eq!(d.cmos_data[usize::from(reg::CENTURY)], 0x20);
}

/// Where the RTC's clock stood when the source saved: the first instant whose time is the
/// time registers' (to the second, which is all the registers record).
fn save_instant(d: &Mc146818Rtc) -> u64 {
    let secs = d.time_register_secs() - d.base_rtc as i64;
    (d.last_update as i64 + secs * NS as i64 - d.offset) as u64
}

#[test]
fn resume_counts_on_from_the_streams_time_on_each_clock() {
    // Host: the stream's base_rtc/last_update stay; the guest's time counts on by the host
    // time that passed, e.g. 10 s of downtime.
    let mut d = check_golden_into(on(RtcClock::Host), "rtc-host-set", M72, true);
    let at = save_instant(&d);
    d.resume(at + 10 * NS + NS / 2);
    assert!(!d.holds_loaded_time());
    assert_eq!(d.base_rtc, Y2031 as u64, "base_rtc kept");
    assert_eq!(format_time(d.guest_time_secs()), "2031-07-04 12:35:07");
    assert_eq!(read(&mut d, reg::SECONDS), 0x07);
    assert_eq!(read(&mut d, reg::MINUTES), 0x35);

    // Realtime: the source's monotonic clock means nothing here; the time registers become the
    // time from this clock's now on (sub-second offset dropped, as QEMU does).
    let mut d = check_golden_into(on(RtcClock::Realtime), "rtc-rt", M72, true);
    let rt_now = 77 * NS; // an unrelated monotonic clock
    d.resume(rt_now);
    assert_eq!(d.base_rtc, (Y2031 + 1) as u64);
    assert_eq!(d.last_update, rt_now);
    assert_eq!(d.offset, 0);
    assert_eq!(d.guest_time_secs(), Y2031 + 1);
    d.advance_to(rt_now + 2 * NS);
    assert_eq!(read(&mut d, reg::SECONDS), 0x59);
    // Register C has UF pending (the update timer ran while the source was paused), so the
    // update timer waits for the alarm, 00:00:00, re-armed on this clock: 41103 s after
    // 12:34:57.
    assert_eq!(d.cmos_data[usize::from(reg::C)], reg_c::UF);
    assert_eq!(d.next_alarm_time, rt_now + 41_103 * NS);
    assert_eq!(d.update_timer, Timer::armed(d.next_alarm_time));

    // Virtual: the clock was migrated (the `timer` section's cpu_clock_offset).
    let vclock = 0x596e_9a31;
    let mut d = check_golden_into(on(RtcClock::Virtual), "rtc-vm", M72, true);
    assert!(d.time_registers_match(vclock));
    d.resume(vclock);
    assert_eq!(d.base_rtc, Y2031 as u64);
    assert_eq!(d.last_update, 0);
    assert_eq!(d.guest_time_secs(), Y2031 + 1);
}

#[test]
fn time_registers_tell_whether_the_stream_was_on_the_virtual_clock() {
    // At the virtual clock the stream saved (0: the VM never ran), base_rtc and a host-clock
    // last_update give 1970, not what the registers show.
    for stream in ["rtc-host", "rtc-host-set", "rtc-rt"] {
        let d = check_golden_into(on(RtcClock::Host), stream, M72, true);
        assert!(!d.time_registers_match(0), "{stream}");
    }
    for stream in ["rtc-vm", "rtc", "idle"] {
        let d = check_golden_into(on(RtcClock::Virtual), stream, M72, true);
        let vclock = if stream == "rtc-vm" { 0x596e_9a31 } else { 0 };
        assert!(d.time_registers_match(vclock), "{stream}");
    }
}

/// The set-date program of the rtc-* streams: SET, the time registers, SET cleared.
fn set_2031(r: &mut Mc146818Rtc) {
    write(r, reg::B, reg_b::SET | reg_b::H24);
    for (i, v) in [
        (reg::SECONDS, 0x56),
        (reg::MINUTES, 0x34),
        (reg::HOURS, 0x12),
        (reg::DAY_OF_WEEK, 0x06),
        (reg::DAY_OF_MONTH, 0x04),
        (reg::MONTH, 0x07),
        (reg::YEAR, 0x31),
        (reg::CENTURY, 0x20),
    ] {
        write(r, i, v);
    }
    write(r, reg::B, reg_b::H24);
}

#[test]
fn host_clock_guest_date_survives_save_load_save_and_reencode() {
    let host = 1_795_925_171; // the host's UTC time at power-on
    let config = RtcConfig::default(); // QEMU's defaults: host clock, base=utc
    assert_eq!(config.clock, RtcClock::Host);
    let host_ns = host as u64 * NS + 123_456_789;
    let mut src = Mc146818Rtc::power_on(config, host, host_ns);
    assert_eq!(src.guest_time_secs(), host);
    set_2031(&mut src);
    src.advance_to(host_ns + 1_500_000_000);
    assert_eq!(format_time(src.guest_time_secs()), "2031-07-04 12:34:57");
    let (saved, _, _) = save_section(&src, M72, "mc146818rtc");
    assert_eq!(
        &saved[..10],
        &[0x57, 0, 0x34, 0, 0x12, 0, 0x06, 0x04, 0x07, 0x31]
    );

    // Load on another host-clock RTC and save again before resuming: the same bytes.
    let mut dst = on(RtcClock::Host);
    load_payload(&mut dst, &saved, 3, M72, "mc146818rtc").unwrap();
    assert_eq!(format_time(dst.guest_time_secs()), "2031-07-04 12:34:57");
    assert_bytes_eq(&save_section(&dst, M72, "mc146818rtc").0, &saved);
    // Resumed 4 s later on the host clock: 4 s later for the guest, saved as such.
    dst.resume(host_ns + 5_500_000_000);
    assert_eq!(format_time(dst.guest_time_secs()), "2031-07-04 12:35:01");
    let (again, _, _) = save_section(&dst, M72, "mc146818rtc");
    assert_eq!(again[0], 0x01);
    assert_eq!(again[2], 0x35);

    // In a real QEMU stream (in place of idle's RTC section: a VM that never ran, whose RTC is
    // on the host clock), re-encoded with QEMU's default clock: identical, and the guest's date
    // is the one saved.
    let g = golden_section("idle", "mc146818rtc", 0);
    let mut stream = g.stream.to_vec();
    let at = g.payload_offset();
    stream[at..at + saved.len()].copy_from_slice(&saved);
    let cat = catalog();
    let (out, report) = reencode(&stream, &cat, &ReencodeOptions::default()).unwrap();
    assert!(report.identical_before_vmdesc);
    assert_eq!(out, stream);
    assert_eq!(report.rtc.len(), 1);
    assert_eq!(report.rtc[0].clock, RtcClock::Host);
    assert_eq!(
        format_time(report.rtc[0].guest_time_secs),
        "2031-07-04 12:34:57"
    );
}

#[test]
fn rtc_base_sets_the_time_at_power_on() {
    let host = Y2020 + 3600;
    let at = |base| {
        let config = RtcConfig {
            base,
            ..RtcConfig::default()
        };
        Mc146818Rtc::power_on(config, host, host as u64 * NS).guest_time_secs()
    };
    assert_eq!(at(RtcBase::Utc), host);
    assert_eq!(
        at(RtcBase::LocalTime {
            utc_offset_secs: -5 * 3600
        }),
        host - 5 * 3600
    );
    assert_eq!(at(RtcBase::Date(Y2031)), Y2031);
    // The registers count local time: 01:00 UTC is 20:00 the day before at UTC-5.
    let config = RtcConfig {
        base: RtcBase::LocalTime {
            utc_offset_secs: -5 * 3600,
        },
        ..RtcConfig::default()
    };
    let mut r = Mc146818Rtc::power_on(config, host, host as u64 * NS);
    assert_eq!(read(&mut r, reg::HOURS), 0x20);
    assert_eq!(read(&mut r, reg::DAY_OF_MONTH), 0x31);
    assert_eq!("vm".parse::<RtcClock>(), Ok(RtcClock::Virtual));
    assert_eq!("rt".parse::<RtcClock>(), Ok(RtcClock::Realtime));
    assert_eq!("host".parse::<RtcClock>(), Ok(RtcClock::Host));
    assert!("virtual".parse::<RtcClock>().is_err());
}

#[test]
fn every_prefix_of_golden_sections_fails() {
    for (stream, policy) in RTC_STREAMS {
        let g = golden_section(stream, "mc146818rtc", 0);
        assert_every_prefix_fails(
            || Mc146818Rtc::new(0, policy),
            g.bytes(),
            M72,
            "mc146818rtc",
        );
    }
}

#[test]
fn replay_rtc_scenario_from_idle_state() {
    let g = golden_section("idle", "mc146818rtc", 0);
    let mut d = Mc146818Rtc::new(0, LostTickPolicy::Discard);
    load_payload(&mut d, g.payload(), 3, M72, "mc146818rtc").unwrap();
    d.io_write(0, reg::A);
    d.io_write(1, 0x2a);
    d.io_write(0, reg::B);
    d.io_write(1, 0x42);
    for i in 0x40..0x50 {
        d.io_write(0, i);
        d.io_write(1, i);
    }
    let (bytes, _, _) = save_section(&d, M72, "mc146818rtc");
    assert_bytes_eq(&bytes, golden_section("rtc", "mc146818rtc", 0).payload());
}

// ---- behaviour ----

fn read(r: &mut Mc146818Rtc, idx: u8) -> u8 {
    r.io_write(0, idx);
    r.io_read(1)
}

fn write(r: &mut Mc146818Rtc, idx: u8, v: u8) {
    r.io_write(0, idx);
    r.io_write(1, v);
}

/// A guest interrupt handler: runs the clock in `step_ns` steps to `until`, reading register C
/// whenever IRQ8 is up; returns the periodic ticks it saw.
fn run_guest(r: &mut Mc146818Rtc, until: u64, step_ns: u64) -> u64 {
    let mut ticks = 0;
    let mut t = r.now_ns();
    while t < until {
        t = (t + step_ns).min(until);
        r.advance_to(t);
        if r.irq_level() && read(r, reg::C) & reg_c::PF != 0 {
            ticks += 1;
        }
    }
    ticks
}

#[test]
fn register_c_flags_are_cleared_by_reading() {
    let mut r = Mc146818Rtc::new(Y2020, LostTickPolicy::Discard);
    write(&mut r, reg::A, 0x2a); // 64 Hz
    write(&mut r, reg::B, reg_b::PIE | reg_b::H24);
    r.advance_to(15_625_001);
    assert!(r.irq_level());
    assert_eq!(read(&mut r, reg::C), reg_c::IRQF | reg_c::PF);
    assert!(!r.irq_level(), "reading C acknowledges the interrupt");
    assert_eq!(read(&mut r, reg::C), 0, "and clears the flags");
    r.advance_to(20_000_000);
    assert!(!r.irq_level(), "no new tick yet");
    // Ticks 2..=63 (the 64th is 1 ns after the second).
    assert_eq!(run_guest(&mut r, 1_000_000_000, 1_000_000), 62);
    // Without UIE the update-ended flag is set at the second but raises nothing.
    assert!(!r.irq_level());
    r.advance_to(1_010_000_000);
    assert_eq!(read(&mut r, reg::C), reg_c::IRQF | reg_c::PF | reg_c::UF);
}

#[test]
fn periodic_rate_from_register_a() {
    for (rs, hz) in [(0x3, 8192u64), (0x6, 1024), (0xf, 2), (0x1, 256)] {
        let mut r = Mc146818Rtc::new(Y2020, LostTickPolicy::Discard);
        write(&mut r, reg::A, 0x20 | rs);
        write(&mut r, reg::B, reg_b::PIE | reg_b::H24);
        let step = 1_000_000_000 / hz / 4;
        assert_eq!(
            run_guest(&mut r, 2_000_000_000 + 2, step),
            2 * hz,
            "rate select {rs}"
        );
    }
    let mut r = Mc146818Rtc::new(Y2020, LostTickPolicy::Discard);
    write(&mut r, reg::B, reg_b::PIE | reg_b::H24);
    write(&mut r, reg::A, 0x20); // rate 0: off
    assert_eq!(r.periodic_timer, Timer::disarmed());
}

#[test]
fn update_ended_and_alarm_interrupts() {
    let mut r = Mc146818Rtc::new(Y2020, LostTickPolicy::Discard);
    write(&mut r, reg::SECONDS_ALARM, 0x05);
    write(&mut r, reg::MINUTES_ALARM, 0xc0); // don't care
    write(&mut r, reg::HOURS_ALARM, 0xc0);
    assert_eq!(r.next_alarm_time, 5_000_000_000);
    write(&mut r, reg::B, reg_b::AIE | reg_b::UIE | reg_b::H24);
    r.advance_to(1_000_000_000);
    assert_eq!(read(&mut r, reg::C), reg_c::IRQF | reg_c::UF);
    r.advance_to(5_000_000_000);
    let c = read(&mut r, reg::C);
    assert_eq!(c & reg_c::AF, reg_c::AF, "{c:#x}");
    assert_eq!(read(&mut r, reg::SECONDS), 0x05);
    // Within the matching second the next match is computed a day ahead; the next update
    // cycle corrects it to a minute later (the don't-care minute).
    r.advance_to(6_000_000_000);
    assert_eq!(read(&mut r, reg::C), reg_c::IRQF | reg_c::UF);
    assert_eq!(r.next_alarm_time, 65_000_000_000);
    r.advance_to(65_000_000_000);
    assert_eq!(read(&mut r, reg::C) & reg_c::AF, reg_c::AF);
}

#[test]
fn time_registers_follow_the_clock_in_bcd_binary_and_12_hour_modes() {
    let mut r = Mc146818Rtc::new(Y2020 + 13 * 3600 + 59 * 60 + 58, LostTickPolicy::Discard);
    assert_eq!(read(&mut r, reg::HOURS), 0x13);
    r.advance_to(3_000_000_000);
    assert_eq!(
        [
            read(&mut r, reg::HOURS),
            read(&mut r, reg::MINUTES),
            read(&mut r, reg::SECONDS)
        ],
        [0x14, 0x00, 0x01]
    );
    write(&mut r, reg::B, reg_b::DM); // binary, 12-hour
    assert_eq!(read(&mut r, reg::HOURS), 0x80 | 2, "2 PM");
    assert_eq!(read(&mut r, reg::YEAR), 20);
    assert_eq!(read(&mut r, reg::DAY_OF_WEEK), 4, "Wednesday");
}

#[test]
fn set_mode_freezes_and_sets_the_time() {
    let mut r = Mc146818Rtc::new(Y2020, LostTickPolicy::Discard);
    write(&mut r, reg::B, reg_b::SET | reg_b::H24);
    write(&mut r, reg::YEAR, 0x21);
    write(&mut r, reg::MONTH, 0x07);
    write(&mut r, reg::DAY_OF_MONTH, 0x04);
    r.advance_to(10_000_000_000);
    assert_eq!(read(&mut r, reg::SECONDS), 0x00, "frozen while SET");
    write(&mut r, reg::B, reg_b::H24);
    assert_eq!(r.guest_time_secs(), 1_625_356_800, "2021-07-04 00:00:00");
    r.advance_to(12_000_000_000);
    assert_eq!(read(&mut r, reg::SECONDS), 0x02);
}

#[test]
fn update_in_progress_bit_near_the_second_boundary() {
    let mut r = Mc146818Rtc::new(Y2020, LostTickPolicy::Discard);
    r.advance_to(500_000_000);
    assert_eq!(read(&mut r, reg::A) & reg_a::UIP, 0);
    r.advance_to(999_900_000);
    assert_eq!(read(&mut r, reg::A) & reg_a::UIP, reg_a::UIP);
    r.advance_to(1_000_000_001);
    assert_eq!(read(&mut r, reg::A) & reg_a::UIP, 0);
}

#[test]
fn slew_policy_coalesces_and_reinjects_on_ack() {
    let mut r = Mc146818Rtc::new(Y2020, LostTickPolicy::Slew);
    r.set_irq_accepted(false); // guest sits with interrupts disabled
    write(&mut r, reg::A, 0x26); // 1024 Hz
    write(&mut r, reg::B, reg_b::PIE | reg_b::H24);
    r.advance_to(100_000_000);
    assert_eq!(r.irq_coalesced, 102);
    r.set_irq_accepted(true);
    read(&mut r, reg::C);
    assert_eq!(r.irq_reinject_on_ack_count, 1);
    assert_eq!(r.irq_coalesced, 101);
    assert_eq!(
        read(&mut r, reg::C),
        reg_c::IRQF | reg_c::PF,
        "re-injected tick"
    );
    let (bytes, desc, _) = save_section(&r, M72, "mc146818rtc");
    assert_eq!(bytes.len(), 245 + 45);
    assert_eq!(
        desc.subsections[0].vmsd_name,
        "mc146818rtc/irq_reinject_on_ack_count"
    );
    // The coalesced timer drains the rest at up to 8× the rate.
    r.advance_to(200_000_000);
    assert_eq!(r.irq_coalesced, 0);
}

// ---- versions and hostile input ----

#[test]
fn v2_and_v1_streams_take_the_time_from_cmos() {
    let v3 = golden_section("rtc", "mc146818rtc", 0).payload().to_vec();
    let v2 = &v3[..245 - 40];
    let v1 = &v3[..245 - 48];
    for (payload, version) in [(v2, 2), (v1, 1)] {
        let mut d = Mc146818Rtc::new(0, LostTickPolicy::Discard);
        load_payload(&mut d, payload, version, M72, "mc146818rtc").unwrap();
        assert_eq!(d.guest_time_secs(), Y2020, "held: the time registers");
        // Resumed at 7 s on its (virtual) clock, the time registers become the time from then.
        d.resume(7_000_000_000);
        assert_eq!(d.base_rtc, Y2020 as u64, "v{version}");
        assert_eq!(d.last_update, 7_000_000_000);
        assert_eq!(d.offset, 0);
        assert_eq!(d.update_timer, Timer::armed(8_000_000_000));
        assert_eq!(d.period, 512, "recomputed from registers A and B");
        // The stream's deadline lies within 60 s before our clock: it fires right away and
        // the timer then continues from there.
        assert_eq!(d.periodic_timer, Timer::armed(15_625_001));
        d.advance_to(7_000_000_001);
        assert!(d.periodic_timer.expire_ns.unwrap() > 7_000_000_001);
        assert_eq!(d.guest_time_secs(), Y2020);
    }
}

#[test]
fn cmos_index_beyond_the_ram_is_rejected() {
    let mut bad = golden_section("rtc", "mc146818rtc", 0).payload().to_vec();
    bad[128] = 200;
    let mut d = Mc146818Rtc::new(0, LostTickPolicy::Discard);
    let e = load_payload(&mut d, &bad, 3, M72, "mc146818rtc").unwrap_err();
    assert_eq!(
        e.to_string(),
        "at byte 0x80, field `cmos_index`: invalid value 200: expected a value in 0..=127"
    );
    bad[128] = 127; // boundary
    load_payload(&mut d, &bad, 3, M72, "mc146818rtc").unwrap();
    bad[128] = 128; // boundary + 1
    assert!(load_payload(&mut d, &bad, 3, M72, "mc146818rtc").is_err());
}

#[test]
fn hostile_time_fields_do_not_panic() {
    let good = golden_section("rtc", "mc146818rtc", 0).payload().to_vec();
    for fill in [0x00u8, 0x7f, 0x80, 0xff] {
        let mut bad = good.clone();
        // Every time field after the unused bytes, and the time registers.
        for b in &mut bad[129 + 28..] {
            *b = fill;
        }
        for b in &mut bad[..14] {
            *b = fill;
        }
        let clocks = [RtcClock::Host, RtcClock::Realtime, RtcClock::Virtual];
        for (version, clock) in [1, 2, 3].into_iter().flat_map(|v| clocks.map(|c| (v, c))) {
            let config = RtcConfig {
                clock,
                policy: LostTickPolicy::Slew,
                ..RtcConfig::default()
            };
            let mut d = Mc146818Rtc::power_on(config, 0, u64::MAX / 3);
            let end = match version {
                3 => 245,
                2 => 205,
                _ => 197,
            };
            if load_payload(&mut d, &bad[..end], version, M72, "mc146818rtc").is_ok() {
                let _ = d.guest_time_secs();
                let _ = d.time_registers_match(u64::MAX / 2);
                d.resume(u64::MAX / 3);
                for i in 0..14 {
                    read(&mut d, i);
                }
                write(&mut d, reg::A, 0x23);
                write(&mut d, reg::B, 0x7f);
                d.advance_to(u64::MAX / 3 + 50_000);
            }
        }
    }
}

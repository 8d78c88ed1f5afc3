//! Motorola MC146818 real-time clock with CMOS RAM, migrated like QEMU 7.2's `mc146818rtc`
//! (section `mc146818rtc`, v3, min 1, 245 bytes + one optional subsection).
//!
//! # Wire layout
//!
//! | bytes | field | version |
//! |---|---|---|
//! | 128 | `cmos_data` (buffer) | 1 |
//! | 1 | `cmos_index` | 1 |
//! | 28 | `unused[0]` (removed fields) | 1 |
//! | 8 | `periodic_timer` (timer) | 1 |
//! | 8 | `next_periodic_time` | 1 |
//! | 24 | `unused[1]` (removed fields) | 1 |
//! | 4 + 4 | `irq_coalesced`, `period` | 2 |
//! | 8 × 5 | `base_rtc`, `last_update`, `offset`, `update_timer`, `next_alarm_time` | 3 |
//!
//! then subsection `mc146818rtc/irq_reinject_on_ack_count` (v1, a u16) when that count is not
//! zero. `cmos_index` is checked on load (< 128): it indexes `cmos_data` on every later
//! data-port access, long after the load (hostile-input class C).
//!
//! # Behaviour
//!
//! Port offset 0 selects a CMOS register, offset 1 reads or writes it
//! ([`Mc146818Rtc::io_write`], [`Mc146818Rtc::io_read`]). Implemented: BCD/binary and 12/24-hour
//! formats, SET mode, divider reset, update-in-progress, the update-ended / alarm / periodic
//! interrupts and their flags in register C (cleared by reading it), the periodic rate from
//! register A, and the "slew" lost-tick policy that re-injects coalesced periodic interrupts.
//!
//! # Clocks
//!
//! The guest-visible time is `base_rtc + (now - last_update) + offset`: `base_rtc` is the
//! guest's time in seconds when the RTC's clock read `last_update`, so the time registers are
//! computed when read. Every timestamp in the section (`last_update`, `next_periodic_time`,
//! `next_alarm_time`, the two timers) is on **the RTC's clock**, which the VMM chooses as QEMU
//! does with `-rtc clock=` ([`RtcClock`]):
//!
//! | [`RtcClock`] | QEMU | `now` is | across a migration |
//! |---|---|---|---|
//! | [`Host`](RtcClock::Host) | `clock=host`, **the default** | host UTC, ns since 1970 (`last_update` ≈ 1.8e18) | the guest's time keeps counting, downtime included |
//! | [`Realtime`](RtcClock::Realtime) | `clock=rt` | a host monotonic clock, ns | meaningless on the destination: [`resume`](Mc146818Rtc::resume) re-bases the time on the time registers |
//! | [`Virtual`](RtcClock::Virtual) | `clock=vm` | the virtual clock, migrated in QEMU's `timer` section | stops while the VM is stopped |
//!
//! The time at power-on comes from [`RtcBase`] (QEMU's `-rtc base=utc|localtime|<date>`).
//! A VMM creates the device with [`Mc146818Rtc::power_on`] and passes every later `now` on that
//! same clock ([`advance_to`](Mc146818Rtc::advance_to), [`resume`](Mc146818Rtc::resume)).
//!
//! A loaded device holds the stream's instant until [`resume`](Mc146818Rtc::resume): saving it
//! before then writes the time registers as loaded (they are the guest's time when the source
//! saved), so a decoded stream re-encodes byte for byte whatever clock it was made on, and no
//! clock of the re-encoding machine leaks into the guest's date. `resume(now)` does QEMU's
//! clock-dependent `post_load` work: with [`RtcClock::Realtime`] (or a v1/v2 stream, which has
//! no `base_rtc`) the time registers become the time from `now` on; the periodic timer is
//! re-synchronised; the slew policy re-arms its re-injection timer.
//!
//! ```
//! use examples_devices::rtc::{reg, LostTickPolicy, Mc146818Rtc, RtcBase, RtcClock, RtcConfig};
//! // QEMU's defaults: base=utc, clock=host. The host's clock reads 2020-01-01T00:00:00Z.
//! let host_ns: u64 = 1_577_836_800 * 1_000_000_000;
//! let config = RtcConfig { clock: RtcClock::Host, base: RtcBase::Utc, policy: LostTickPolicy::Discard };
//! let mut rtc = Mc146818Rtc::power_on(config, 1_577_836_800, host_ns);
//! rtc.advance_to(host_ns + 61_000_000_000);        // 61 s later on the host clock
//! rtc.io_write(0, reg::MINUTES);
//! assert_eq!(rtc.io_read(1), 0x01);                // BCD
//! rtc.io_write(0, reg::SECONDS);
//! assert_eq!(rtc.io_read(1), 0x01);
//! ```

use std::convert::Infallible;

use vmstate_runtime::{Timer, Unused, VmState};

use crate::clock::{clock_accessors, muldiv64, NS_PER_SEC};

/// Input clock of the divider chain, Hz (the periodic rate is derived from it).
pub const RTC_CLOCK_RATE: u64 = 32_768;
/// How long before an update UIP reads as set: 244 µs (8 cycles of the 32 kHz clock).
const UIP_HOLD_LENGTH: u64 = 8 * NS_PER_SEC / RTC_CLOCK_RATE;
/// At most this many coalesced periodic interrupts are re-injected on register C reads
/// between two periodic ticks.
pub const REINJECT_ON_ACK_COUNT: u16 = 20;
/// A clock jump larger than this re-synchronises the periodic timer on load.
const MAX_CLOCK_JUMP: u64 = 60 * NS_PER_SEC;

/// CMOS register indices.
pub mod reg {
    /// Seconds.
    pub const SECONDS: u8 = 0x00;
    /// Seconds alarm.
    pub const SECONDS_ALARM: u8 = 0x01;
    /// Minutes.
    pub const MINUTES: u8 = 0x02;
    /// Minutes alarm.
    pub const MINUTES_ALARM: u8 = 0x03;
    /// Hours (bit 7: PM in 12-hour mode).
    pub const HOURS: u8 = 0x04;
    /// Hours alarm.
    pub const HOURS_ALARM: u8 = 0x05;
    /// Day of week, 1 = Sunday.
    pub const DAY_OF_WEEK: u8 = 0x06;
    /// Day of month.
    pub const DAY_OF_MONTH: u8 = 0x07;
    /// Month.
    pub const MONTH: u8 = 0x08;
    /// Year within the century.
    pub const YEAR: u8 = 0x09;
    /// Register A: UIP, divider control, rate select.
    pub const A: u8 = 0x0a;
    /// Register B: SET, interrupt enables, data mode, 24-hour mode.
    pub const B: u8 = 0x0b;
    /// Register C: interrupt flags (read-only, cleared on read).
    pub const C: u8 = 0x0c;
    /// Register D: valid RAM and time (read-only).
    pub const D: u8 = 0x0d;
    /// Century (PC CMOS layout).
    pub const CENTURY: u8 = 0x32;
    /// IBM PS/2 alias of the century byte.
    pub const IBM_PS2_CENTURY: u8 = 0x37;
}

/// Register A bits.
pub mod reg_a {
    /// Update in progress (read-only).
    pub const UIP: u8 = 0x80;
    /// Divider control DV2:DV0.
    pub const DV_MASK: u8 = 0x70;
    /// Rate select RS3:RS0.
    pub const RS_MASK: u8 = 0x0f;
}

/// Register B bits.
pub mod reg_b {
    /// SET: updates stop so the time can be written.
    pub const SET: u8 = 0x80;
    /// Periodic interrupt enable.
    pub const PIE: u8 = 0x40;
    /// Alarm interrupt enable.
    pub const AIE: u8 = 0x20;
    /// Update-ended interrupt enable.
    pub const UIE: u8 = 0x10;
    /// Square-wave enable.
    pub const SQWE: u8 = 0x08;
    /// Data mode: binary (set) or BCD (clear).
    pub const DM: u8 = 0x04;
    /// 24-hour mode.
    pub const H24: u8 = 0x02;
    /// Daylight saving enable.
    pub const DSE: u8 = 0x01;
}

/// Register C bits.
pub mod reg_c {
    /// Interrupt request: some enabled flag is set.
    pub const IRQF: u8 = 0x80;
    /// Periodic interrupt flag.
    pub const PF: u8 = 0x40;
    /// Alarm flag.
    pub const AF: u8 = 0x20;
    /// Update-ended flag.
    pub const UF: u8 = 0x10;
    /// The three flags that have enable bits in register B.
    pub const MASK: u8 = 0x70;
}

/// What happens to periodic interrupts the guest did not take in time (QEMU's
/// `lost_tick_policy` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LostTickPolicy {
    /// Drop them.
    #[default]
    Discard,
    /// Count them (`irq_coalesced`) and deliver them later, faster.
    Slew,
}

/// The clock the RTC keeps time on, and so the clock of every timestamp in its section
/// (QEMU's `-rtc clock=`). The stream does not say which one it is: the VMM knows how it
/// configured the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcClock {
    /// `clock=host`, QEMU's default: host UTC in ns since 1970. It runs while the VM is stopped,
    /// and it means the same on the destination (as far as the hosts' clocks agree), so the
    /// guest's time keeps counting across a migration, the downtime included.
    #[default]
    Host,
    /// `clock=rt`: a host monotonic clock in ns from an arbitrary start (QEMU's realtime
    /// clock). Its readings mean nothing on another host, so a loaded device re-bases its time
    /// on the time registers when it resumes: the sub-second phase and the downtime are lost.
    Realtime,
    /// `clock=vm`: the virtual clock in ns, which QEMU migrates in its `timer` section; it stops
    /// while the VM is stopped.
    Virtual,
}

impl RtcClock {
    /// QEMU's name: `host`, `rt` or `vm`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RtcClock::Host => "host",
            RtcClock::Realtime => "rt",
            RtcClock::Virtual => "vm",
        }
    }
}

impl std::fmt::Display for RtcClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RtcClock {
    type Err = String;

    /// Parses QEMU's names `host`, `rt` and `vm`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(RtcClock::Host),
            "rt" => Ok(RtcClock::Realtime),
            "vm" => Ok(RtcClock::Virtual),
            _ => Err(format!("unknown RTC clock `{s}`: expected host, rt or vm")),
        }
    }
}

/// The guest's time at power-on (QEMU's `-rtc base=`). It only sets the start: afterwards the
/// time is `base_rtc` counted on the [`RtcClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcBase {
    /// `base=utc`, QEMU's default: the host's UTC time.
    #[default]
    Utc,
    /// `base=localtime`: the host's local time, given as its offset from UTC (the VMM knows
    /// its time zone; east of Greenwich is positive). The registers then count local time.
    LocalTime {
        /// Local time minus UTC, seconds.
        utc_offset_secs: i64,
    },
    /// `base=2020-01-01T00:00:00`: a fixed date, seconds since the epoch.
    Date(i64),
}

impl RtcBase {
    /// The guest's time at power-on, seconds since the epoch, when the host's UTC time is
    /// `host_unix_secs`.
    #[must_use]
    pub fn start_secs(self, host_unix_secs: i64) -> i64 {
        match self {
            RtcBase::Utc => host_unix_secs,
            RtcBase::LocalTime { utc_offset_secs } => host_unix_secs.wrapping_add(utc_offset_secs),
            RtcBase::Date(secs) => secs,
        }
    }
}

/// How a VMM configures the RTC: QEMU's `-rtc base=…,clock=…,driftfix=…`
/// (`driftfix=slew` is [`LostTickPolicy::Slew`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtcConfig {
    /// The clock of every timestamp.
    pub clock: RtcClock,
    /// The time at power-on.
    pub base: RtcBase,
    /// Lost periodic interrupt handling.
    pub policy: LostTickPolicy,
}

/// Broken-down UTC time (fields as in C's `struct tm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Tm {
    sec: i32,
    min: i32,
    hour: i32,
    mday: i32,
    /// 0-based.
    mon: i32,
    /// Years since 1900.
    year: i32,
    /// 0 = Sunday.
    wday: i32,
}

#[allow(clippy::cast_possible_truncation)]
fn gmtime(t: i64) -> Tm {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01, in 400-year eras starting 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let mday = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Tm {
        sec: (secs % 60) as i32,
        min: (secs / 60 % 60) as i32,
        hour: (secs / 3600) as i32,
        mday: mday as i32,
        mon: (month - 1) as i32,
        year: (year - 1900) as i32,
        // 1970-01-01 was a Thursday.
        wday: (days + 4).rem_euclid(7) as i32,
    }
}

/// `secs` (since the epoch) as `YYYY-MM-DD HH:MM:SS`, the way the time registers count it
/// (UTC, or local time with [`RtcBase::LocalTime`]).
#[must_use]
pub fn format_time(secs: i64) -> String {
    let tm = gmtime(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.year) + 1900,
        tm.mon + 1,
        tm.mday,
        tm.hour,
        tm.min,
        tm.sec
    )
}

/// Seconds since the epoch of a broken-down UTC time; out-of-range fields are not normalised
/// first (the same closed formula QEMU uses, so odd CMOS contents give the same result).
fn mktimegm(tm: &Tm) -> i64 {
    let mut y = i64::from(tm.year) + 1900;
    let mut m = i64::from(tm.mon) + 1;
    let d = i64::from(tm.mday);
    if m < 3 {
        m += 12;
        y -= 1;
    }
    let days = d + (153 * m - 457) / 5 + 365 * y + y / 4 - y / 100 + y / 400 - 719_469;
    days.wrapping_mul(86_400)
        + 3600 * i64::from(tm.hour)
        + 60 * i64::from(tm.min)
        + i64::from(tm.sec)
}

/// Whether CMOS register `idx` is one of the time registers the clock updates (the century
/// byte and its IBM PS/2 alias included).
fn is_time_register(idx: u8) -> bool {
    matches!(
        idx,
        reg::IBM_PS2_CENTURY
            | reg::CENTURY
            | reg::SECONDS
            | reg::MINUTES
            | reg::HOURS
            | reg::DAY_OF_WEEK
            | reg::DAY_OF_MONTH
            | reg::MONTH
            | reg::YEAR
    )
}

/// Settles the seconds field of the next alarm match in the current minute: a "don't care"
/// (-1) field matches the next second; a fixed one already past `cur_sec` returns 1, to be
/// carried into the next field that is free to move.
fn next_alarm_second(alarm_sec: &mut i32, cur_sec: i32) -> i32 {
    if *alarm_sec == -1 {
        *alarm_sec = cur_sec + 1;
        0
    } else {
        i32::from(cur_sec > *alarm_sec)
    }
}

fn periodic_clock_to_ns(clock: u64) -> u64 {
    muldiv64(clock, NS_PER_SEC, RTC_CLOCK_RATE)
}

/// Periodic interrupt period in 32 kHz cycles for rate select `code` (0: off).
fn period_code_to_clock(code: u8) -> u32 {
    match code & 0x0f {
        0 => 0,
        // Rates 1 and 2 repeat rates 8 and 9 on a 32.768 kHz time base.
        c @ 1..=2 => 1 << (c + 6),
        c => 1 << (c - 1),
    }
}

/// The MC146818 and its 128 bytes of CMOS RAM: QEMU's `mc146818rtc` vmsd (v3, min 1).
///
/// Migrated fields are public so a VMM or a test can inspect them; change them through
/// [`io_write`](Self::io_write) to get the guest-visible semantics.
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "mc146818rtc",
    version = 3,
    minimum_version = 1,
    pre_save = Self::pre_save,
    post_load = Self::post_load,
    subsection(name = "mc146818rtc/irq_reinject_on_ack_count", version = 1, minimum_version = 1,
               when = pred(Self::reinject_needed))
)]
pub struct Mc146818Rtc {
    /// CMOS RAM: time registers 0x00–0x09, registers A–D at 0x0a–0x0d, NVRAM after.
    #[vmstate(buffer)]
    pub cmos_data: [u8; 128],
    /// Register selected through the index port (offset 0), below 128.
    #[vmstate(range = 0..=127)]
    pub cmos_index: u8,
    /// Seven 32-bit fields of an older RTC model (28 bytes).
    _removed_v1: Unused<28>,
    /// Next periodic interrupt (RTC clock, ns).
    pub periodic_timer: Timer,
    /// Time of the next periodic interrupt (RTC clock, ns).
    pub next_periodic_time: i64,
    /// Three 64-bit fields of an older RTC model (24 bytes).
    _removed_v2: Unused<24>,
    /// Periodic interrupts lost and not yet re-injected (slew policy).
    #[vmstate(since = 2, default)]
    pub irq_coalesced: u32,
    /// Periodic interrupt period in 32 kHz cycles (0: off); recomputed on load.
    #[vmstate(since = 2, default)]
    pub period: u32,
    /// Guest time (seconds since the epoch) at `last_update`.
    #[vmstate(since = 3, default)]
    pub base_rtc: u64,
    /// The RTC's clock (ns, see [`RtcClock`]) when `base_rtc` was taken.
    #[vmstate(since = 3, default)]
    pub last_update: u64,
    /// Sub-second offset of the guest time, ns.
    #[vmstate(since = 3, default)]
    pub offset: i64,
    /// Next update cycle (end of the current second, or the alarm when UF is pending; RTC
    /// clock).
    #[vmstate(since = 3, default)]
    pub update_timer: Timer,
    /// The RTC's clock (ns) when the alarm next matches.
    #[vmstate(since = 3, default)]
    pub next_alarm_time: u64,
    /// Coalesced interrupts re-injected on register C reads since the last periodic tick.
    #[vmstate(subsection = "mc146818rtc/irq_reinject_on_ack_count", default)]
    pub irq_reinject_on_ack_count: u16,

    /// Lost periodic interrupt handling.
    #[vmstate(skip)]
    policy: LostTickPolicy,
    /// Delivers coalesced interrupts (slew policy).
    #[vmstate(skip)]
    coalesced_timer: Timer,
    /// IRQ8 output level.
    #[vmstate(skip)]
    irq_level: bool,
    /// Interrupts raised so far.
    #[vmstate(skip)]
    irq_raised: u64,
    /// The interrupt controller takes the interrupt (false models a guest that leaves
    /// interrupts disabled, so slew-policy deliveries fail and coalesce).
    #[vmstate(skip)]
    irq_accepted: bool,
    /// The clock `now_ns` and every timestamp are on.
    #[vmstate(skip)]
    clock: RtcClock,
    /// The RTC's clock, ns.
    #[vmstate(skip)]
    now_ns: u64,
    /// The version of a stream that was loaded while `resume` has not run yet: the device holds
    /// the stream's instant (its time registers are the guest's time at the source's save).
    #[vmstate(skip)]
    loaded: Option<u32>,
}

impl Mc146818Rtc {
    /// An RTC after power-on and reset on the virtual clock at 0, whose time reads
    /// `base_unix_secs`: [`power_on`](Self::power_on) with [`RtcClock::Virtual`] and
    /// [`RtcBase::Date`] (QEMU's `-rtc base=<date>,clock=vm` in a VM that has not run yet).
    #[must_use]
    pub fn new(base_unix_secs: i64, policy: LostTickPolicy) -> Self {
        let config = RtcConfig {
            clock: RtcClock::Virtual,
            base: RtcBase::Date(base_unix_secs),
            policy,
        };
        Self::power_on(config, base_unix_secs, 0)
    }

    /// An RTC after power-on and reset, configured by `config`, when the host's UTC time is
    /// `host_unix_secs` and the RTC's clock ([`RtcConfig::clock`]) reads `now_ns`. The time
    /// registers show [`RtcBase::start_secs`]. Registers A = 0x26, B = 0x02 (24-hour, BCD),
    /// D = 0x80.
    #[must_use]
    pub fn power_on(config: RtcConfig, host_unix_secs: i64, now_ns: u64) -> Self {
        let start = config.base.start_secs(host_unix_secs);
        let mut cmos_data = [0u8; 128];
        cmos_data[usize::from(reg::A)] = 0x26;
        cmos_data[usize::from(reg::B)] = reg_b::H24;
        cmos_data[usize::from(reg::D)] = 0x80;
        let mut s = Mc146818Rtc {
            cmos_data,
            cmos_index: 0,
            _removed_v1: Unused,
            periodic_timer: Timer::disarmed(),
            next_periodic_time: 0,
            _removed_v2: Unused,
            irq_coalesced: 0,
            period: 0,
            #[allow(clippy::cast_sign_loss)]
            base_rtc: start as u64,
            last_update: now_ns,
            offset: 0,
            update_timer: Timer::disarmed(),
            next_alarm_time: 0,
            irq_reinject_on_ack_count: 0,
            policy: config.policy,
            coalesced_timer: Timer::disarmed(),
            irq_level: false,
            irq_raised: 0,
            irq_accepted: true,
            clock: config.clock,
            now_ns,
            loaded: None,
        };
        s.set_cmos(&gmtime(start));
        s.check_update_timer();
        s.reset();
        s
    }

    /// Device reset: interrupt enables and flags cleared, time kept.
    pub fn reset(&mut self) {
        self.cmos_data[usize::from(reg::B)] &= !(reg_b::PIE | reg_b::AIE | reg_b::SQWE);
        self.cmos_data[usize::from(reg::C)] &= !(reg_c::UF | reg_c::IRQF | reg_c::PF | reg_c::AF);
        self.check_update_timer();
        self.irq_level = false;
        if self.policy == LostTickPolicy::Slew {
            self.irq_coalesced = 0;
            self.irq_reinject_on_ack_count = 0;
        }
    }

    /// Writes a CMOS byte directly, without register side effects (the board's firmware
    /// configuration: memory size, boot order, …).
    pub fn set_cmos_byte(&mut self, index: u8, value: u8) {
        self.cmos_data[usize::from(index & 0x7f)] = value;
    }

    /// The lost-tick policy.
    #[must_use]
    pub fn policy(&self) -> LostTickPolicy {
        self.policy
    }

    /// Sets whether the interrupt controller takes IRQ8 (see the slew policy).
    pub fn set_irq_accepted(&mut self, accepted: bool) {
        self.irq_accepted = accepted;
    }

    /// IRQ8 output level.
    #[must_use]
    pub fn irq_level(&self) -> bool {
        self.irq_level
    }

    /// Interrupts raised so far.
    #[must_use]
    pub fn irq_count(&self) -> u64 {
        self.irq_raised
    }

    /// The clock the RTC keeps time on.
    #[must_use]
    pub fn clock(&self) -> RtcClock {
        self.clock
    }

    clock_accessors! {
        /// The RTC's clock, ns.
        now_ns;
        /// Sets the RTC's clock without running timers (e.g. a virtual clock restored from the
        /// stream's `timer` section before this device loads).
        set_now_ns;
    }

    /// Whether a loaded stream's instant is held, i.e. the device was loaded and
    /// [`resume`](Self::resume) has not run yet.
    #[must_use]
    pub fn holds_loaded_time(&self) -> bool {
        self.loaded.is_some()
    }

    /// The guest's wall-clock time, seconds since the epoch: from the clock, or, while a loaded
    /// stream's instant is held (before [`resume`](Self::resume)), from the time registers,
    /// which hold the guest's time when the source saved.
    #[must_use]
    #[allow(clippy::cast_possible_wrap)]
    pub fn guest_time_secs(&self) -> i64 {
        if self.loaded.is_some() {
            return self.time_register_secs();
        }
        (self.guest_rtc_ns() as i64) / NS_PER_SEC as i64
    }

    /// The time the time registers show (seconds, century register included), as a guest
    /// reads it; in SET mode, the time written so far.
    #[must_use]
    pub fn time_register_secs(&self) -> i64 {
        mktimegm(&self.get_time())
    }

    /// Whether the time registers hold the time the clock gives at `now_ns` (always, in SET
    /// mode, where they do not follow the clock): true for a stream saved when the RTC's clock
    /// read `now_ns`. A re-encoder that knows the save instant on the virtual clock uses it to
    /// check that the stream's RTC really is on that clock.
    #[must_use]
    pub fn time_registers_match(&self, now_ns: u64) -> bool {
        let mut at = self.clone();
        at.now_ns = now_ns;
        at.update_time();
        let regs = [
            reg::SECONDS,
            reg::MINUTES,
            reg::HOURS,
            reg::DAY_OF_WEEK,
            reg::DAY_OF_MONTH,
            reg::MONTH,
            reg::YEAR,
            reg::CENTURY,
        ];
        regs.iter().all(|&r| at.cmos(r) == self.cmos(r))
    }

    /// Advances the RTC's clock to `now_ns` (never backwards), running the periodic, update
    /// and re-injection timers that expire on the way, earliest first.
    pub fn advance_to(&mut self, now_ns: u64) {
        let target = now_ns.max(self.now_ns);
        for _ in 0..10_000_000 {
            let due = |t: Timer| t.expire_ns.filter(|&e| e <= target);
            let mut next: Option<(u64, u8)> = None;
            for (t, which) in [
                (self.periodic_timer, 0),
                (self.update_timer, 1),
                (self.coalesced_timer, 2),
            ] {
                if let Some(e) = due(t) {
                    if next.is_none_or(|(n, _)| e < n) {
                        next = Some((e, which));
                    }
                }
            }
            let Some((when, which)) = next else { break };
            self.now_ns = self.now_ns.max(when);
            match which {
                0 => {
                    self.periodic_timer = Timer::disarmed();
                    self.periodic_timer_fired();
                }
                1 => {
                    self.update_timer = Timer::disarmed();
                    self.update_timer_fired();
                }
                _ => {
                    self.coalesced_timer = Timer::disarmed();
                    self.coalesced_timer_fired();
                }
            }
        }
        self.now_ns = target;
    }

    /// A guest read: offset 0 (index port) reads 0xff, offset 1 the selected register.
    pub fn io_read(&mut self, offset: u16) -> u8 {
        if offset & 1 == 0 {
            return 0xff;
        }
        let idx = self.cmos_index & 0x7f;
        match idx {
            idx if is_time_register(idx) => {
                let r = self.select_time_register(idx);
                if self.running() {
                    self.update_time();
                }
                self.cmos(r)
            }
            reg::A => {
                let mut ret = self.cmos(reg::A);
                if self.update_in_progress() {
                    ret |= reg_a::UIP;
                }
                ret
            }
            reg::C => {
                let ret = self.cmos(reg::C);
                self.irq_level = false;
                self.cmos_data[usize::from(reg::C)] = 0;
                if ret & (reg_c::UF | reg_c::AF) != 0 {
                    self.check_update_timer();
                }
                if self.irq_coalesced != 0
                    && self.cmos(reg::B) & reg_b::PIE != 0
                    && self.irq_reinject_on_ack_count < REINJECT_ON_ACK_COUNT
                {
                    self.irq_reinject_on_ack_count += 1;
                    self.cmos_data[usize::from(reg::C)] |= reg_c::IRQF | reg_c::PF;
                    if self.deliver_slew() {
                        self.irq_coalesced -= 1;
                    }
                }
                ret
            }
            _ => self.cmos(idx),
        }
    }

    /// A guest write: offset 0 selects a register (bit 7, the NMI mask, is ignored),
    /// offset 1 writes it.
    pub fn io_write(&mut self, offset: u16, value: u8) {
        if offset & 1 == 0 {
            self.cmos_index = value & 0x7f;
            return;
        }
        let idx = self.cmos_index & 0x7f;
        match idx {
            reg::SECONDS_ALARM | reg::MINUTES_ALARM | reg::HOURS_ALARM => {
                self.cmos_data[usize::from(idx)] = value;
                self.check_update_timer();
            }
            idx if is_time_register(idx) => {
                let r = self.select_time_register(idx);
                self.cmos_data[usize::from(r)] = value;
                // In SET mode the time is taken when SET is cleared.
                if self.running() {
                    self.set_time();
                    self.check_update_timer();
                }
            }
            reg::A => self.write_reg_a(value),
            reg::B => self.write_reg_b(value),
            reg::C | reg::D => {} // read-only
            _ => self.cmos_data[usize::from(idx)] = value,
        }
    }

    /// The register a data-port access to time register `idx` reaches: the IBM PS/2 alias of
    /// the century byte moves the index to the century register itself, as in QEMU.
    fn select_time_register(&mut self, idx: u8) -> u8 {
        if idx == reg::IBM_PS2_CENTURY {
            self.cmos_index = reg::CENTURY;
        }
        self.cmos_index & 0x7f
    }

    fn write_reg_a(&mut self, value: u8) {
        let a = self.cmos(reg::A);
        let rate_changed = (a ^ value) & reg_a::RS_MASK != 0;
        let old_period = self.periodic_clock_ticks();
        if value & 0x60 == 0x60 {
            // Divider chain held in reset: freeze the time registers.
            if self.running() {
                self.update_time();
            }
            self.cmos_data[usize::from(reg::A)] &= !reg_a::UIP;
        } else if a & 0x60 == 0x60 && value & 0x70 <= 0x20 {
            // Leaving divider reset: the first update comes half a second later.
            if self.cmos(reg::B) & reg_b::SET == 0 {
                self.offset = 500_000_000;
                self.set_time();
            }
            self.cmos_data[usize::from(reg::A)] &= !reg_a::UIP;
        }
        // UIP is read-only.
        self.cmos_data[usize::from(reg::A)] =
            (value & !reg_a::UIP) | (self.cmos(reg::A) & reg_a::UIP);
        if rate_changed {
            self.periodic_timer_update(self.now_ns, old_period, true);
        }
        self.check_update_timer();
    }

    fn write_reg_b(&mut self, value: u8) {
        let mut data = value;
        let b = self.cmos(reg::B);
        let pie_changed = (b ^ data) & reg_b::PIE != 0;
        let old_period = self.periodic_clock_ticks();
        if data & reg_b::SET != 0 {
            // Entering SET mode: capture the time the clock stopped at.
            if self.running() {
                self.update_time();
            }
            self.cmos_data[usize::from(reg::A)] &= !reg_a::UIP;
            data &= !reg_b::UIE;
        } else if b & reg_b::SET != 0 {
            // Leaving SET mode: the written time starts counting, keeping the sub-second phase.
            #[allow(clippy::cast_possible_wrap)]
            {
                self.offset = (self.guest_rtc_ns() % NS_PER_SEC) as i64;
            }
            self.set_time();
        }
        // A flag that is already set raises the interrupt as soon as it is enabled.
        if data & self.cmos(reg::C) & reg_c::MASK != 0 {
            self.cmos_data[usize::from(reg::C)] |= reg_c::IRQF;
            self.raise_irq();
        } else {
            self.cmos_data[usize::from(reg::C)] &= !reg_c::IRQF;
            self.irq_level = false;
        }
        self.cmos_data[usize::from(reg::B)] = data;
        if pie_changed {
            self.periodic_timer_update(self.now_ns, old_period, true);
        }
        self.check_update_timer();
    }

    // ---- time keeping ----

    fn cmos(&self, idx: u8) -> u8 {
        self.cmos_data[usize::from(idx & 0x7f)]
    }

    fn raise_irq(&mut self) {
        if !self.irq_level {
            self.irq_raised += 1;
        }
        self.irq_level = true;
    }

    /// Slew policy: raise the interrupt; whether the interrupt controller took it.
    fn deliver_slew(&mut self) -> bool {
        self.raise_irq();
        self.irq_accepted
    }

    /// Time advances: SET is clear and the divider chain runs (DV = 0, 1 or 2).
    fn running(&self) -> bool {
        self.cmos(reg::B) & reg_b::SET == 0 && self.cmos(reg::A) & reg_a::DV_MASK <= 0x20
    }

    fn guest_rtc_ns(&self) -> u64 {
        #[allow(clippy::cast_sign_loss)]
        self.base_rtc
            .wrapping_mul(NS_PER_SEC)
            .wrapping_add(self.now_ns)
            .wrapping_sub(self.last_update)
            .wrapping_add(self.offset as u64)
    }

    fn decode_bcd(&self, a: u8) -> i32 {
        if a & 0xc0 == 0xc0 {
            return -1; // "don't care" (alarm registers)
        }
        if self.cmos(reg::B) & reg_b::DM != 0 {
            i32::from(a)
        } else {
            i32::from(a >> 4) * 10 + i32::from(a & 0x0f)
        }
    }

    fn encode_bcd(&self, a: i32) -> u8 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        if self.cmos(reg::B) & reg_b::DM != 0 {
            a as u8
        } else {
            ((a / 10).wrapping_shl(4) | (a % 10)) as u8
        }
    }

    /// Hours in 0..24 from an hours register value (12-hour mode: bit 7 is PM).
    fn hours_from_cmos(&self, v: u8) -> i32 {
        let mut h = self.decode_bcd(v & 0x7f);
        if self.cmos(reg::B) & reg_b::H24 == 0 {
            h %= 12;
            if v & 0x80 != 0 {
                h += 12;
            }
        }
        h
    }

    fn set_cmos(&mut self, tm: &Tm) {
        let sec = self.encode_bcd(tm.sec);
        let min = self.encode_bcd(tm.min);
        let hour = if self.cmos(reg::B) & reg_b::H24 != 0 {
            self.encode_bcd(tm.hour)
        } else {
            let h = if tm.hour % 12 == 0 { 12 } else { tm.hour % 12 };
            self.encode_bcd(h) | if tm.hour >= 12 { 0x80 } else { 0 }
        };
        let year = tm.year.wrapping_add(1900);
        let vals = [
            (reg::SECONDS, sec),
            (reg::MINUTES, min),
            (reg::HOURS, hour),
            (reg::DAY_OF_WEEK, self.encode_bcd(tm.wday + 1)),
            (reg::DAY_OF_MONTH, self.encode_bcd(tm.mday)),
            (reg::MONTH, self.encode_bcd(tm.mon + 1)),
            (reg::YEAR, self.encode_bcd(year % 100)),
            (reg::CENTURY, self.encode_bcd(year / 100)),
        ];
        for (i, v) in vals {
            self.cmos_data[usize::from(i)] = v;
        }
    }

    fn get_time(&self) -> Tm {
        let hours = self.cmos(reg::HOURS);
        Tm {
            sec: self.decode_bcd(self.cmos(reg::SECONDS)),
            min: self.decode_bcd(self.cmos(reg::MINUTES)),
            hour: self.hours_from_cmos(hours),
            wday: self.decode_bcd(self.cmos(reg::DAY_OF_WEEK)) - 1,
            mday: self.decode_bcd(self.cmos(reg::DAY_OF_MONTH)),
            mon: self.decode_bcd(self.cmos(reg::MONTH)) - 1,
            year: self.decode_bcd(self.cmos(reg::YEAR))
                + self.decode_bcd(self.cmos(reg::CENTURY)) * 100
                - 1900,
        }
    }

    /// The time registers become the guest time from now on.
    fn set_time(&mut self) {
        #[allow(clippy::cast_sign_loss)]
        {
            self.base_rtc = mktimegm(&self.get_time()) as u64;
        }
        self.last_update = self.now_ns;
    }

    /// The time registers show the guest time (unless SET is on).
    fn update_time(&mut self) {
        #[allow(clippy::cast_possible_wrap)]
        let guest_sec = (self.guest_rtc_ns() as i64) / NS_PER_SEC as i64;
        let tm = gmtime(guest_sec);
        if self.cmos(reg::B) & reg_b::SET == 0 {
            self.set_cmos(&tm);
        }
    }

    fn update_in_progress(&mut self) -> bool {
        if !self.running() {
            return false;
        }
        if let Some(next) = self.update_timer.expire_ns {
            // UIP stays latched until the update timer runs.
            if self.now_ns >= next.wrapping_sub(UIP_HOLD_LENGTH) {
                self.cmos_data[usize::from(reg::A)] |= reg_a::UIP;
                return true;
            }
        }
        self.guest_rtc_ns() % NS_PER_SEC >= NS_PER_SEC - UIP_HOLD_LENGTH
    }

    /// Seconds from the current guest time to the next alarm match (1..=86400), honouring
    /// "don't care" alarm fields (0xc0–0xff).
    fn next_alarm_secs(&mut self) -> i64 {
        const SEC_PER_MIN: i32 = 60;
        const MIN_PER_HOUR: i32 = 60;
        const HOUR_PER_DAY: i32 = 24;
        self.update_time();
        let mut alarm_sec = self.decode_bcd(self.cmos(reg::SECONDS_ALARM));
        let mut alarm_min = self.decode_bcd(self.cmos(reg::MINUTES_ALARM));
        let ah = self.cmos(reg::HOURS_ALARM);
        let mut alarm_hour = if self.decode_bcd(ah) == -1 {
            -1
        } else {
            self.hours_from_cmos(ah)
        };
        let cur_sec = self.decode_bcd(self.cmos(reg::SECONDS));
        let cur_min = self.decode_bcd(self.cmos(reg::MINUTES));
        let cur_hour = self.hours_from_cmos(self.cmos(reg::HOURS));

        if alarm_hour == -1 {
            alarm_hour = cur_hour;
            if alarm_min == -1 {
                alarm_min = cur_min;
                alarm_min += next_alarm_second(&mut alarm_sec, cur_sec);
            } else if cur_min == alarm_min {
                alarm_hour += next_alarm_second(&mut alarm_sec, cur_sec);
                if alarm_sec == SEC_PER_MIN {
                    // The minutes are fixed: the next match is in the next hour.
                    alarm_sec = 0;
                    alarm_hour += 1;
                }
            } else if cur_min > alarm_min {
                alarm_hour += 1;
            }
        } else if cur_hour == alarm_hour {
            if alarm_min == -1 {
                alarm_min = cur_min;
                alarm_min += next_alarm_second(&mut alarm_sec, cur_sec);
                if alarm_sec == SEC_PER_MIN {
                    alarm_sec = 0;
                    alarm_min += 1;
                }
                // The hour is fixed: past its last minute the match is tomorrow.
                alarm_min %= MIN_PER_HOUR;
            } else if cur_min == alarm_min {
                if alarm_sec == -1 {
                    alarm_sec = cur_sec + 1;
                }
                alarm_sec %= SEC_PER_MIN;
            }
        }
        // Fields still "don't care" match at the next minute / second boundary.
        if alarm_min == -1 {
            alarm_min = 0;
        }
        if alarm_sec == -1 {
            alarm_sec = 0;
        }
        if alarm_sec == SEC_PER_MIN {
            alarm_sec = 0;
            alarm_min += 1;
        }
        if alarm_min == MIN_PER_HOUR {
            alarm_min = 0;
            alarm_hour += 1;
        }
        alarm_hour %= HOUR_PER_DAY;

        let hours = i64::from(alarm_hour) - i64::from(cur_hour);
        let mins = hours * 60 + i64::from(alarm_min) - i64::from(cur_min);
        let secs = mins * 60 + i64::from(alarm_sec) - i64::from(cur_sec);
        if secs <= 0 {
            secs + 86_400
        } else {
            secs
        }
    }

    /// Arms the update timer for the end of the current second (or for the alarm, when an
    /// update-ended flag is already pending) and recomputes the alarm time.
    fn check_update_timer(&mut self) {
        if self.cmos(reg::A) & 0x60 == 0x60 {
            self.update_timer = Timer::disarmed();
            return;
        }
        let guest_nsec = self.guest_rtc_ns() % NS_PER_SEC;
        let mut next_update = self
            .now_ns
            .wrapping_add(NS_PER_SEC)
            .wrapping_sub(guest_nsec);
        let alarm_secs = self.next_alarm_secs();
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_wrap)]
        {
            self.next_alarm_time =
                next_update.wrapping_add(((alarm_secs - 1).wrapping_mul(NS_PER_SEC as i64)) as u64);
        }
        let a = self.cmos(reg::A);
        let c = self.cmos(reg::C);
        if a & reg_a::UIP == 0 && c & reg_c::UF != 0 {
            // UF is already set: only the alarm can still change something.
            if self.cmos(reg::B) & reg_b::SET != 0 || c & reg_c::AF != 0 {
                self.update_timer = Timer::disarmed();
                return;
            }
            next_update = self.next_alarm_time;
        }
        self.update_timer = Timer::armed(next_update);
    }

    fn update_timer_fired(&mut self) {
        self.update_time();
        self.cmos_data[usize::from(reg::A)] &= !reg_a::UIP;
        let mut irqs = reg_c::UF;
        if self.now_ns >= self.next_alarm_time {
            irqs |= reg_c::AF;
        }
        let new_irqs = irqs & !self.cmos(reg::C);
        self.cmos_data[usize::from(reg::C)] |= irqs;
        if new_irqs & self.cmos(reg::B) != 0 {
            self.cmos_data[usize::from(reg::C)] |= reg_c::IRQF;
            self.raise_irq();
        }
        self.check_update_timer();
    }

    fn periodic_clock_ticks(&self) -> u32 {
        if self.cmos(reg::B) & reg_b::PIE == 0 {
            return 0;
        }
        period_code_to_clock(self.cmos(reg::A) & reg_a::RS_MASK)
    }

    /// Re-arms the periodic timer after `current_time`. With `period_change` the time since the
    /// last tick counts toward the new period; under the slew policy lost ticks are
    /// re-scaled to the new period and counted in `irq_coalesced`.
    fn periodic_timer_update(&mut self, current_time: u64, old_period: u32, period_change: bool) {
        let period = self.periodic_clock_ticks();
        self.period = period;
        if period == 0 {
            self.irq_coalesced = 0;
            self.periodic_timer = Timer::disarmed();
            return;
        }
        let period_i = i64::from(period);
        #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
        let cur_clock = muldiv64(current_time, RTC_CLOCK_RATE, NS_PER_SEC) as i64;
        let mut lost_clock: i64 = 0;
        if old_period != 0 && period_change {
            #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
            let next_periodic_clock =
                muldiv64(self.next_periodic_time as u64, RTC_CLOCK_RATE, NS_PER_SEC) as i64;
            let last_periodic_clock = next_periodic_clock.wrapping_sub(i64::from(old_period));
            lost_clock = cur_clock.wrapping_sub(last_periodic_clock);
        }
        match self.policy {
            LostTickPolicy::Slew => {
                let old_coalesced = self.irq_coalesced;
                lost_clock =
                    lost_clock.wrapping_add(i64::from(old_coalesced.wrapping_mul(old_period)));
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                {
                    self.irq_coalesced = (lost_clock / period_i) as u32;
                }
                lost_clock %= period_i;
                if old_coalesced != self.irq_coalesced || old_period != period {
                    self.coalesced_timer_update();
                }
            }
            LostTickPolicy::Discard => lost_clock = lost_clock.min(period_i),
        }
        // Only a state this model never produces (a deadline far in the future) could leave
        // this range; clamp instead of trusting it.
        let lost_clock = lost_clock.clamp(0, period_i);
        let next_irq_clock = cur_clock.wrapping_add(period_i - lost_clock);
        #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)]
        {
            self.next_periodic_time =
                periodic_clock_to_ns(next_irq_clock as u64).wrapping_add(1) as i64;
            self.periodic_timer = Timer::armed(self.next_periodic_time as u64);
        }
    }

    fn periodic_timer_fired(&mut self) {
        #[allow(clippy::cast_sign_loss)]
        let t = self.next_periodic_time as u64;
        self.periodic_timer_update(t, self.period, false);
        self.cmos_data[usize::from(reg::C)] |= reg_c::PF;
        if self.cmos(reg::B) & reg_b::PIE != 0 {
            self.cmos_data[usize::from(reg::C)] |= reg_c::IRQF;
            if self.policy == LostTickPolicy::Slew {
                if self.irq_reinject_on_ack_count >= REINJECT_ON_ACK_COUNT {
                    self.irq_reinject_on_ack_count = 0;
                }
                if !self.deliver_slew() {
                    self.irq_coalesced = self.irq_coalesced.wrapping_add(1);
                    self.coalesced_timer_update();
                }
            } else {
                self.raise_irq();
            }
        }
    }

    /// Re-injects coalesced ticks at 2–8 times the periodic rate.
    fn coalesced_timer_update(&mut self) {
        if self.irq_coalesced == 0 {
            self.coalesced_timer = Timer::disarmed();
        } else {
            let c = self.irq_coalesced.min(7) + 1;
            let step = periodic_clock_to_ns(u64::from(self.period / c)).max(1);
            self.coalesced_timer = Timer::armed(self.now_ns.saturating_add(step));
        }
    }

    fn coalesced_timer_fired(&mut self) {
        if self.irq_coalesced != 0 {
            self.cmos_data[usize::from(reg::C)] |= 0xc0;
            if self.deliver_slew() {
                self.irq_coalesced -= 1;
            }
        }
        self.coalesced_timer_update();
    }

    // ---- migration hooks ----

    fn pre_save(&mut self) -> Result<(), Infallible> {
        // A held stream instant is saved as loaded: the time registers already are the guest's
        // time at that instant, and this machine's clock says nothing about it.
        if self.loaded.is_none() {
            self.update_time();
        }
        Ok(())
    }

    fn post_load(&mut self, version: u32) -> Result<(), Infallible> {
        self.period = self.periodic_clock_ticks();
        // Clock-dependent re-synchronisation (QEMU does it in post_load) is in `resume`, which
        // the VMM calls after the whole stream loaded and was committed: a load that is
        // rolled back, or a stream that is only re-encoded, never depends on the local clock.
        self.loaded = Some(version);
        Ok(())
    }

    /// Starts the device on the destination after a successful load, at `now_ns` on the RTC's
    /// clock ([`clock`](Self::clock)) — what QEMU's `post_load` does at load time:
    ///
    /// - with [`RtcClock::Realtime`], or after a v1/v2 stream (no `base_rtc`), the time
    ///   registers become the guest's time from `now_ns` on (sub-second offset 0);
    ///   with [`RtcClock::Host`] and [`RtcClock::Virtual`] the stream's `base_rtc` and
    ///   `last_update` stay, so the time counts on from the source's;
    /// - the periodic timer is re-synchronised unless the clock is within
    ///   [deadline, deadline + 60 s] (then it fires on its own);
    /// - with the `slew` policy, the coalesced-interrupt timer is re-armed (v2+ streams).
    pub fn resume(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        let loaded = self.loaded.take();
        if let Some(version) = loaded {
            if version <= 2 || self.clock == RtcClock::Realtime {
                self.set_time();
                self.offset = 0;
                self.check_update_timer();
            }
        }
        #[allow(clippy::cast_sign_loss)]
        let next = self.next_periodic_time as u64;
        #[allow(clippy::cast_sign_loss)]
        let latest = self.next_periodic_time.wrapping_add(MAX_CLOCK_JUMP as i64) as u64;
        if self.now_ns < next || self.now_ns > latest {
            self.periodic_timer_update(self.now_ns, self.period, false);
        }
        if loaded.is_some_and(|v| v >= 2) && self.policy == LostTickPolicy::Slew {
            self.coalesced_timer_update();
        }
    }

    fn reinject_needed(&self) -> bool {
        self.irq_reinject_on_ack_count != 0
    }
}

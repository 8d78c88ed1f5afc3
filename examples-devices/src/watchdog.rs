//! `demo-wdt`: a countdown watchdog of our own (the "vmstate-demo device") whose migration
//! format evolved over three versions and several machine types. It exists to show every
//! presence rule of the DSL on one small device, with exact bytes pinned in the tests.
//!
//! # History of the format
//!
//! | change | how it is declared | effect on the wire |
//! |---|---|---|
//! | v1: `ctrl action outputs reload counter irq_line prescaler` | plain fields | |
//! | v2: the IRQ line moved to board configuration | `_removed_irq_line: Unused<4>` | 4 zero bytes keep the layout |
//! | v2: `expirations` counter | `since = 2` | absent from v1 streams |
//! | v3: `deadline` timer (keeps the sub-tick phase) | `since = 3` | absent from v1/v2 streams |
//! | machine types before 5.0 keep writing v2 | `pin(below = "5.0", version = 2)` | no `deadline` there |
//! | 6.0: pre-timeout interrupt | `when = machine >= "6.0"` | `pretimeout` only on ≥ 6.0 |
//! | 6.0: `counter` is not sent while disabled (it equals `reload` then) | `when = any(not(machine >= "6.0"), pred(Self::enabled))` | reads `ctrl`, an earlier field, so both sides agree |
//! | 7.0: statistics subsection | `subsection … when = prop("x-migrate-stats")` + [`compat_entries`] | off for machine types ≤ 6.2 |
//! | 7.0: pending interrupts survive migration | `subsection … when = all(machine >= "7.0", pred(Self::has_pending))` | older machine types lose a pending interrupt, as before |
//!
//! `outputs` is the board-configured number of output lines, checked with `equal`; `action`
//! has a declared `range`; the kick log is a variable array bounded by `max`; a `validate`
//! function checks the cross-field invariants after load.
//!
//! # Registers (offsets from the I/O base)
//!
//! | offset | register | access |
//! |---|---|---|
//! | 0x00 | CTRL: bit 0 EN, bit 1 IRQ_EN | rw |
//! | 0x01 | ACTION on expiry: 0 none, 1 interrupt, 2 reset, 3 power off | rw |
//! | 0x02 | KICK: writing 0x5a reloads the counter | w |
//! | 0x03 | STATUS: bit 0 expired, bit 1 pre-timeout; write 1 to clear | rw1c |
//! | 0x04–0x07 | RELOAD (little endian, ticks) | rw |
//! | 0x08–0x0b | COUNTER (ticks left) | r |
//! | 0x0c | PRESCALER (1–255 ms per tick) | rw |
//! | 0x0d | OUTPUTS (configured output lines) | r |
//! | 0x10–0x13 | PRETIMEOUT (ticks before expiry; machine types ≥ 6.0) | rw |
//! | 0x14–0x17 | EXPIRATIONS since reset | r |
//!
//! ```
//! use examples_devices::watchdog::{ctrl, DemoWatchdog, WatchdogConfig};
//! let mut wdt = DemoWatchdog::new(WatchdogConfig { outputs: 2, pretimeout: true });
//! wdt.io_write(0x04, 100); // RELOAD = 100 ticks of 1 ms (little endian)
//! wdt.io_write(0x05, 0);
//! wdt.io_write(0x00, ctrl::EN | ctrl::IRQ_EN);
//! wdt.advance_to(99_000_000);
//! assert!(!wdt.irq_level());
//! wdt.advance_to(100_000_000);
//! assert!(wdt.irq_level());
//! ```

use vmstate_runtime::machine::{CompatEntry, MachineType};
use vmstate_runtime::schema::MachineVersion;
use vmstate_runtime::{Timer, Unused, VmState};

use crate::clock::clock_accessors;

/// The section name, also the driver name compat entries refer to.
pub const DRIVER: &str = "demo-wdt";
/// The countdown clock before the prescaler: 1 kHz.
pub const TICK_NS: u64 = 1_000_000;
/// The kick log keeps the counter values of this many most recent kicks.
pub const KICK_LOG_LEN: usize = 8;
/// Value to write to KICK.
pub const KICK_MAGIC: u8 = 0x5a;

/// CTRL bits.
pub mod ctrl {
    /// Counting enabled.
    pub const EN: u8 = 0x01;
    /// Interrupt output enabled.
    pub const IRQ_EN: u8 = 0x02;
}

/// STATUS bits (pending events).
pub mod status {
    /// The counter expired.
    pub const EXPIRED: u8 = 0x01;
    /// The pre-timeout point passed.
    pub const PRETIMEOUT: u8 = 0x02;
}

/// ACTION values.
pub mod action {
    /// Only set STATUS.
    pub const NONE: u8 = 0;
    /// Interrupt (when IRQ_EN).
    pub const IRQ: u8 = 1;
    /// Request a system reset.
    pub const RESET: u8 = 2;
    /// Request power off.
    pub const POWEROFF: u8 = 3;
}

/// What an expiry asks the VMM to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogEvent {
    /// Reset the machine.
    Reset,
    /// Power the machine off.
    PowerOff,
}

/// Board configuration of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Number of output lines wired (the `outputs` register; must match on migration).
    pub outputs: u8,
    /// The pre-timeout feature exists (machine types 6.0 and later).
    pub pretimeout: bool,
}

impl WatchdogConfig {
    /// The configuration a board uses on machine type `m`, with `outputs` lines.
    #[must_use]
    pub fn for_machine(m: &MachineType, outputs: u8) -> Self {
        WatchdogConfig {
            outputs,
            pretimeout: m.version() >= MachineVersion::new(6, 0),
        }
    }
}

/// The compat entries the VMM adds to its machine catalog for this device: the statistics
/// subsection (property `x-migrate-stats`, default on) is off for machine types up to 6.2,
/// which predate it (like QEMU's `hw_compat_6_2` entries).
#[must_use]
pub fn compat_entries() -> Vec<CompatEntry> {
    vec![CompatEntry {
        upto: "6.2".to_owned(),
        driver: DRIVER.to_owned(),
        property: "x-migrate-stats".to_owned(),
        value: false,
    }]
}

/// The watchdog: section `demo-wdt`, version 3 (2 on machine types before 5.0), min 1.
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "demo-wdt",
    version = 3,
    minimum_version = 1,
    pin(below = "5.0", version = 2),
    prop(name = "x-migrate-stats", default = true),
    subsection(name = "demo-wdt/stats", version = 1, minimum_version = 1,
               when = prop("x-migrate-stats")),
    subsection(name = "demo-wdt/pending", version = 1, minimum_version = 1,
               when = all(machine >= "7.0", pred(Self::has_pending))),
    pre_save = Self::pre_save,
    post_load = Self::post_load,
    validate = Self::validate
)]
pub struct DemoWatchdog {
    /// CTRL register (0x00): EN, IRQ_EN.
    pub ctrl: u8,
    /// ACTION register (0x01), 0–3.
    #[vmstate(range = 0..=3)]
    pub action: u8,
    /// OUTPUTS register (0x0d): board-configured output lines; the source must agree.
    #[vmstate(equal)]
    pub outputs: u8,
    /// RELOAD register (0x04–0x07): ticks per period.
    pub reload: u32,
    /// COUNTER register (0x08–0x0b) when saved. From machine type 6.0 on only sent while
    /// enabled: a disabled watchdog's counter equals RELOAD, the default when absent.
    #[vmstate(when = any(not(machine >= "6.0"), pred(Self::enabled)), default = self.reload)]
    pub counter: u32,
    /// v1's IRQ line number (u32), now board configuration: 4 bytes of padding.
    _removed_irq_line: Unused<4>,
    /// PRESCALER register (0x0c): milliseconds per tick, 1–255.
    #[vmstate(range = 1..=255)]
    pub prescaler: u8,
    /// EXPIRATIONS register (0x14–0x17), since v2.
    #[vmstate(since = 2, default)]
    pub expirations: u32,
    /// Virtual time (ns) the counter reaches 0, since v3; older streams derive it from
    /// `counter` (losing the phase within the current tick).
    #[vmstate(since = 3, default)]
    pub deadline: Timer,
    /// PRETIMEOUT register (0x10–0x13), machine types ≥ 6.0.
    #[vmstate(when = machine >= "6.0", default)]
    pub pretimeout: u32,

    /// Kicks since reset (`demo-wdt/stats`).
    #[vmstate(subsection = "demo-wdt/stats", default)]
    pub kicks: u32,
    /// Entries used in `kick_log`.
    #[vmstate(subsection = "demo-wdt/stats", default)]
    pub kick_log_len: u8,
    /// COUNTER at the most recent kicks, oldest first; `kick_log_len` of them are migrated.
    #[vmstate(subsection = "demo-wdt/stats", default, count = kick_log_len, max = 8)]
    pub kick_log: [u32; KICK_LOG_LEN],

    /// STATUS register (0x03): pending events (`demo-wdt/pending`).
    #[vmstate(subsection = "demo-wdt/pending", default)]
    pub status: u8,

    /// Board configuration.
    #[vmstate(skip)]
    config: WatchdogConfig,
    /// Request for the VMM.
    #[vmstate(skip)]
    event: Option<WatchdogEvent>,
    /// The virtual clock, ns.
    #[vmstate(skip)]
    now_ns: u64,
}

impl DemoWatchdog {
    /// A watchdog after reset: disabled, RELOAD 1000 ticks, action "interrupt".
    #[must_use]
    pub fn new(config: WatchdogConfig) -> Self {
        DemoWatchdog {
            ctrl: 0,
            action: action::IRQ,
            outputs: config.outputs,
            reload: 1000,
            counter: 1000,
            _removed_irq_line: Unused,
            prescaler: 1,
            expirations: 0,
            deadline: Timer::disarmed(),
            pretimeout: 0,
            kicks: 0,
            kick_log_len: 0,
            kick_log: [0; KICK_LOG_LEN],
            status: 0,
            config,
            event: None,
            now_ns: 0,
        }
    }

    clock_accessors! {
        /// The virtual clock, ns.
        now_ns;
        /// Sets the virtual clock without running the countdown (a destination before load).
        set_now_ns;
    }

    /// The interrupt output: IRQ_EN and a pending event.
    #[must_use]
    pub fn irq_level(&self) -> bool {
        self.ctrl & ctrl::IRQ_EN != 0 && self.status != 0
    }

    /// Takes the pending reset / power-off request, if an expiry made one.
    pub fn take_event(&mut self) -> Option<WatchdogEvent> {
        self.event.take()
    }

    fn enabled(&self) -> bool {
        self.ctrl & ctrl::EN != 0
    }

    fn has_pending(&self) -> bool {
        self.status != 0
    }

    fn tick_ns(&self) -> u64 {
        TICK_NS * u64::from(self.prescaler.max(1))
    }

    fn period_ns(&self) -> u64 {
        u64::from(self.reload).saturating_mul(self.tick_ns())
    }

    /// Ticks left now.
    fn current_count(&self) -> u32 {
        match self.deadline.expire_ns {
            Some(d) if self.enabled() => {
                let left = d.saturating_sub(self.now_ns).div_ceil(self.tick_ns());
                u32::try_from(left).unwrap_or(u32::MAX).min(self.reload)
            }
            _ => self.counter,
        }
    }

    fn restart(&mut self) {
        self.counter = self.reload;
        self.deadline = Timer::armed(self.now_ns.saturating_add(self.period_ns()));
    }

    /// Advances the virtual clock to `now_ns` (never backwards): the pre-timeout point and
    /// expiries on the way set STATUS and run the action; the counter restarts after each
    /// expiry.
    pub fn advance_to(&mut self, now_ns: u64) {
        let target = now_ns.max(self.now_ns);
        for _ in 0..1_000_000 {
            let Some(d) = self.deadline.expire_ns.filter(|_| self.enabled()) else {
                break;
            };
            let pre = u64::from(self.pretimeout).saturating_mul(self.tick_ns());
            if self.pretimeout != 0 && self.now_ns < d.saturating_sub(pre) {
                let p = d.saturating_sub(pre);
                if p <= target {
                    self.now_ns = p;
                    self.status |= status::PRETIMEOUT;
                }
            }
            if d > target {
                break;
            }
            self.now_ns = d;
            self.expirations = self.expirations.wrapping_add(1);
            self.status |= status::EXPIRED;
            match self.action {
                action::RESET => self.event = Some(WatchdogEvent::Reset),
                action::POWEROFF => self.event = Some(WatchdogEvent::PowerOff),
                _ => {}
            }
            if self.period_ns() == 0 {
                self.deadline = Timer::disarmed();
                break;
            }
            self.restart();
        }
        self.now_ns = target;
    }

    /// A guest write of `value` to the register at `offset`.
    pub fn io_write(&mut self, offset: u16, value: u8) {
        match offset {
            0x00 => {
                let was = self.enabled();
                self.ctrl = value & (ctrl::EN | ctrl::IRQ_EN);
                match (was, self.enabled()) {
                    (false, true) => self.restart(),
                    (true, false) => {
                        self.deadline = Timer::disarmed();
                        self.counter = self.reload;
                    }
                    _ => {}
                }
            }
            0x01 => self.action = value & 3,
            0x02 if value == KICK_MAGIC && self.enabled() => {
                let c = self.current_count();
                if usize::from(self.kick_log_len) >= KICK_LOG_LEN {
                    self.kick_log.rotate_left(1);
                    self.kick_log[KICK_LOG_LEN - 1] = c;
                    self.kick_log_len = KICK_LOG_LEN as u8;
                } else {
                    self.kick_log[usize::from(self.kick_log_len)] = c;
                    self.kick_log_len += 1;
                }
                self.kicks = self.kicks.wrapping_add(1);
                self.restart();
            }
            0x03 => self.status &= !value,
            0x04..=0x07 => {
                let mut b = self.reload.to_le_bytes();
                b[usize::from(offset - 4)] = value;
                self.reload = u32::from_le_bytes(b);
                if !self.enabled() {
                    self.counter = self.reload;
                }
            }
            0x0c => self.prescaler = value.max(1),
            0x10..=0x13 if self.config.pretimeout => {
                let mut b = self.pretimeout.to_le_bytes();
                b[usize::from(offset - 0x10)] = value;
                self.pretimeout = u32::from_le_bytes(b);
            }
            _ => {}
        }
    }

    /// A guest read of the register at `offset`.
    pub fn io_read(&mut self, offset: u16) -> u8 {
        let byte = |v: u32, i: u16| v.to_le_bytes()[usize::from(i & 3)];
        match offset {
            0x00 => self.ctrl,
            0x01 => self.action,
            0x03 => self.status,
            0x04..=0x07 => byte(self.reload, offset),
            0x08..=0x0b => byte(self.current_count(), offset),
            0x0c => self.prescaler,
            0x0d => self.outputs,
            0x10..=0x13 => byte(self.pretimeout, offset),
            0x14..=0x17 => byte(self.expirations, offset),
            _ => 0,
        }
    }

    // ---- migration hooks ----

    fn pre_save(&mut self) -> Result<(), std::convert::Infallible> {
        self.counter = self.current_count();
        Ok(())
    }

    fn post_load(&mut self, version: u32) -> Result<(), String> {
        if version < 3 {
            // No deadline in the stream: restart the current tick.
            self.deadline = if self.enabled() {
                Timer::armed(
                    self.now_ns
                        .saturating_add(u64::from(self.counter).saturating_mul(self.tick_ns())),
                )
            } else {
                Timer::disarmed()
            };
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        if self.counter > self.reload {
            return Err(format!(
                "counter {} exceeds reload {}",
                self.counter, self.reload
            ));
        }
        if self.enabled() && self.reload == 0 {
            return Err("enabled with reload 0".to_owned());
        }
        if self.enabled() != self.deadline.is_armed() {
            return Err(format!(
                "deadline is {} but the watchdog is {}",
                if self.deadline.is_armed() {
                    "armed"
                } else {
                    "not armed"
                },
                if self.enabled() {
                    "enabled"
                } else {
                    "disabled"
                }
            ));
        }
        if self.pretimeout != 0 && !self.config.pretimeout {
            return Err(
                "pretimeout set, but this machine type has no pre-timeout feature".to_owned(),
            );
        }
        Ok(())
    }
}

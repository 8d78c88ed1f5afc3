//! Intel 8254 programmable interval timer, migrated like QEMU 7.2's `isa-pit`
//! (section `i8254`, v3, min 2, 108 bytes).
//!
//! # Wire layout
//!
//! | bytes | field (vmdesc name) | what |
//! |---|---|---|
//! | 4 | `channels[0].irq_disabled` (v3) | counter 0's interrupt is routed elsewhere (HPET legacy mode) |
//! | 3 × 32 | `channels` (`pit channel` v2) | the three counters |
//! | 8 | `channels[0].next_transition_time` | counter 0's next output edge, again |
//!
//! The last field is the same value as `channels[0].next_transition_time` inside the array
//! (QEMU migrates that member twice, the second time in place of the old `irq_timer`); here it
//! is a separate wire field that `pre_save` fills and `post_load` copies back, so the second
//! copy wins, as in QEMU.
//!
//! # Behaviour
//!
//! Port offsets 0–2 are the counters, 3 the control word ([`I8254::io_write`],
//! [`I8254::io_read`]). Counters run from a virtual clock in nanoseconds
//! ([`I8254::advance_to`]) at [`PIT_FREQ`]; reads return the live count. Modes 0–5, the
//! LSB/MSB/word access modes, the counter latch and read-back commands are implemented; the
//! gate input is [`I8254::set_gate`] (port 0x61 bit 0 drives counter 2 on a PC). As in QEMU,
//! BCD counting and gate-controlled pausing of modes 0/4 are not modelled.
//!
//! ```
//! use examples_devices::pit::I8254;
//! let mut pit = I8254::new();
//! pit.io_write(3, 0x34);       // counter 0, lsb then msb, mode 2
//! pit.io_write(0, 0x9c);
//! pit.io_write(0, 0x2e);       // 11932 ticks: 100 Hz
//! pit.advance_to(5_000_000);   // 5 ms
//! pit.io_write(3, 0x00);       // latch counter 0
//! let count = u16::from(pit.io_read(0)) | (u16::from(pit.io_read(0)) << 8);
//! assert_eq!(count, 11932 - 5965);
//! ```

use std::convert::Infallible;

use vmstate_runtime::{Timer, VmState};

use crate::clock::{clock_accessors, muldiv64, NS_PER_SEC};

/// Input clock of the counters, Hz.
pub const PIT_FREQ: u64 = 1_193_182;

/// Access states of a counter (`rw_mode`, `read_state`, `write_state`, `count_latched`).
pub mod rw_state {
    /// Counter latch command (control word access 0) / nothing latched.
    pub const LATCH: u8 = 0;
    /// Least significant byte only.
    pub const LSB: u8 = 1;
    /// Most significant byte only.
    pub const MSB: u8 = 2;
    /// Word access, low byte next.
    pub const WORD0: u8 = 3;
    /// Word access, high byte next.
    pub const WORD1: u8 = 4;
}

/// One counter of the 8254: QEMU's `pit channel` vmsd (v2, min 2, 32 bytes, nested).
///
/// The stream values that select code paths later (mode, access states, count) are
/// range-checked on load (hostile-input class C); [`I8254`]'s `post_load` checks that the
/// access states agree with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, VmState)]
#[vmstate(name = "pit channel", version = 2, minimum_version = 2, nested)]
pub struct PitChannel {
    /// Initial count (CR), 1..=65536 (a written 0 means 65536).
    #[vmstate(range = 1..=0x10000)]
    pub count: i32,
    /// Output latch (OL) captured by a counter latch or read-back command.
    pub latched_count: u16,
    /// Which bytes of the output latch are still to be read ([`rw_state`]; 0 = none).
    #[vmstate(range = 0..=3)]
    pub count_latched: u8,
    /// A read-back status byte is waiting to be read.
    #[vmstate(range = 0..=1)]
    pub status_latched: u8,
    /// The latched status byte: OUTPUT, access mode, mode, BCD.
    pub status: u8,
    /// Which byte the next counter read returns ([`rw_state`]).
    #[vmstate(range = 0..=4)]
    pub read_state: u8,
    /// Which byte the next counter write sets ([`rw_state`]).
    #[vmstate(range = 0..=4)]
    pub write_state: u8,
    /// Low byte of a word write, waiting for the high byte.
    pub write_latch: u8,
    /// Access mode from the control word (RW1:RW0; 0 before the first control word).
    #[vmstate(range = 0..=3)]
    pub rw_mode: u8,
    /// Counter mode 0–7 as written by the guest (control word M2:M0; 6 and 7 act as 2 and 3).
    #[vmstate(range = 0..=7)]
    pub mode: u8,
    /// BCD counting selected (control word bit 0; counting is binary regardless).
    #[vmstate(range = 0..=1)]
    pub bcd: u8,
    /// GATE input level.
    #[vmstate(range = 0..=1)]
    pub gate: u8,
    /// Virtual time (ns) at which the count was loaded or the gate last triggered.
    pub count_load_time: i64,
    /// Virtual time (ns) of the next output transition, -1 for none (kept for counter 0 only).
    pub next_transition_time: i64,
}

impl PitChannel {
    fn new(index: usize) -> Self {
        PitChannel {
            count: 0x10000,
            latched_count: 0,
            count_latched: 0,
            status_latched: 0,
            status: 0,
            read_state: 0,
            write_state: 0,
            write_latch: 0,
            rw_mode: 0,
            mode: 3,
            bcd: 0,
            gate: u8::from(index != 2),
            count_load_time: 0,
            next_transition_time: 0,
        }
    }

    /// The initial count as a divisor, never 0 whatever a caller stored.
    fn period(&self) -> u64 {
        #[allow(clippy::cast_sign_loss)]
        {
            self.count.clamp(1, 0x10000) as u64
        }
    }

    /// Input clock ticks since the count was loaded.
    fn ticks(&self, now: i64) -> u64 {
        #[allow(clippy::cast_sign_loss)]
        muldiv64(
            now.wrapping_sub(self.count_load_time) as u64,
            PIT_FREQ,
            NS_PER_SEC,
        )
    }

    /// The counting mode, with the datasheet's aliases 6 → 2 and 7 → 3 resolved.
    fn effective_mode(&self) -> u8 {
        if self.mode > 5 {
            self.mode - 4
        } else {
            self.mode
        }
    }

    /// The current counting element value (up to 0x10000).
    fn current_count(&self, now: i64) -> u32 {
        let d = self.ticks(now);
        let c = self.period();
        let v = match self.effective_mode() {
            0 | 1 | 4 | 5 => c.wrapping_sub(d) & 0xffff,
            // Square wave counts down by two per tick.
            3 => c - (d.wrapping_mul(2) % c),
            _ => c - (d % c),
        };
        #[allow(clippy::cast_possible_truncation)]
        {
            v as u32
        }
    }

    /// The OUT pin at `now`.
    fn output(&self, now: i64) -> bool {
        let d = self.ticks(now);
        let c = self.period();
        match self.effective_mode() {
            1 => d < c,
            2 => d % c == 0 && d != 0,
            3 => d % c < (c + 1) >> 1,
            4 | 5 => d == c,
            _ => d >= c,
        }
    }

    /// Virtual time of the next OUT transition after `now`, or -1.
    fn next_transition(&self, now: i64) -> i64 {
        let d = self.ticks(now);
        let c = self.period();
        let next = match self.effective_mode() {
            2 => {
                let base = (d / c) * c;
                if d - base == 0 && d != 0 {
                    base.wrapping_add(c)
                } else {
                    base.wrapping_add(c + 1)
                }
            }
            3 => {
                let base = (d / c) * c;
                let half = (c + 1) >> 1;
                if d - base < half {
                    base.wrapping_add(half)
                } else {
                    base.wrapping_add(c)
                }
            }
            4 | 5 => {
                if d < c {
                    c
                } else if d == c {
                    c + 1
                } else {
                    return -1;
                }
            }
            _ => {
                if d < c {
                    c
                } else {
                    return -1;
                }
            }
        };
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_wrap)]
        {
            let mut t =
                (self.count_load_time as u64).wrapping_add(muldiv64(next, NS_PER_SEC, PIT_FREQ));
            // Rounding can land on or before `now`; the edge is then due right away.
            if t <= now as u64 {
                t = (now as u64).wrapping_add(1);
            }
            t as i64
        }
    }

    fn latch_count(&mut self, now: i64) {
        if self.count_latched == 0 {
            #[allow(clippy::cast_possible_truncation)]
            {
                self.latched_count = self.current_count(now) as u16;
            }
            self.count_latched = self.rw_mode;
        }
    }

    fn read(&mut self, now: i64) -> u8 {
        let [lo, hi, ..] = self.current_count(now).to_le_bytes();
        if self.status_latched != 0 {
            self.status_latched = 0;
            return self.status;
        }
        let [llo, lhi] = self.latched_count.to_le_bytes();
        match self.count_latched {
            0 => {}
            rw_state::MSB => {
                self.count_latched = 0;
                return lhi;
            }
            rw_state::WORD0 => {
                self.count_latched = rw_state::MSB;
                return llo;
            }
            _ => {
                self.count_latched = 0;
                return llo;
            }
        }
        match self.read_state {
            rw_state::MSB => hi,
            rw_state::WORD0 => {
                self.read_state = rw_state::WORD1;
                lo
            }
            rw_state::WORD1 => {
                self.read_state = rw_state::WORD0;
                hi
            }
            _ => lo,
        }
    }

    /// Checks that the access states agree: the control word sets all three, and only word
    /// access alternates between its two byte states.
    fn check(&self, i: usize) -> Result<(), String> {
        let ok = |s: u8| match self.rw_mode {
            rw_state::WORD0 => s == rw_state::WORD0 || s == rw_state::WORD1,
            m => s == m,
        };
        for (name, s) in [
            ("read_state", self.read_state),
            ("write_state", self.write_state),
        ] {
            if !ok(s) {
                return Err(format!(
                    "channels[{i}].{name} = {s} does not fit channels[{i}].rw_mode = {}",
                    self.rw_mode
                ));
            }
        }
        Ok(())
    }
}

/// The 8254 with its three counters: QEMU's `i8254` vmsd (v3, min 2).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "i8254",
    version = 3,
    minimum_version = 2,
    pre_save = Self::pre_save,
    post_load = Self::post_load
)]
pub struct I8254 {
    /// Counter 0's interrupt is disconnected (the HPET took over IRQ0). Board configuration:
    /// a v2 stream lacks it and the local value is kept.
    #[vmstate(since = 3, keep, rename = "channels[0].irq_disabled")]
    pub irq_disabled: u32,
    /// Counters 0–2 (0: system timer on IRQ0, 1: DRAM refresh, 2: PC speaker).
    #[vmstate(since = 2)]
    pub channels: [PitChannel; 3],
    /// Wire copy of `channels[0].next_transition_time` (QEMU sends that member twice).
    #[vmstate(rename = "channels[0].next_transition_time")]
    ch0_next_transition_time: i64,

    /// Counter 0's interrupt timer (fires at its next output transition).
    #[vmstate(skip)]
    irq_timer: Timer,
    /// IRQ0 output level.
    #[vmstate(skip)]
    irq_level: bool,
    /// Rising edges on IRQ0 so far.
    #[vmstate(skip)]
    irq_edges: u64,
    /// The virtual clock, ns.
    #[vmstate(skip)]
    now_ns: u64,
}

impl Default for I8254 {
    fn default() -> Self {
        I8254::new()
    }
}

impl I8254 {
    /// A PIT after reset, with the clock at 0.
    #[must_use]
    pub fn new() -> Self {
        let mut p = I8254 {
            irq_disabled: 0,
            channels: [PitChannel::new(0), PitChannel::new(1), PitChannel::new(2)],
            ch0_next_transition_time: 0,
            irq_timer: Timer::disarmed(),
            irq_level: false,
            irq_edges: 0,
            now_ns: 0,
        };
        p.reset();
        p
    }

    /// Reset: every counter in mode 3 with count 65536, gates high except counter 2's.
    pub fn reset(&mut self) {
        let now = self.now();
        for (i, c) in self.channels.iter_mut().enumerate() {
            c.mode = 3;
            c.gate = u8::from(i != 2);
            c.count_load_time = now;
            c.count = 0x10000;
        }
        if self.irq_disabled == 0 {
            let t = self.channels[0].next_transition(now);
            self.channels[0].next_transition_time = t;
            self.ch0_next_transition_time = t;
            self.irq_timer = Self::timer_at(t);
        }
    }

    #[allow(clippy::cast_possible_wrap)]
    fn now(&self) -> i64 {
        self.now_ns as i64
    }

    #[allow(clippy::cast_sign_loss)]
    fn timer_at(t: i64) -> Timer {
        if t == -1 {
            Timer::disarmed()
        } else {
            Timer::armed(t as u64)
        }
    }

    clock_accessors! {
        /// The virtual clock, ns.
        now_ns;
        /// Sets the virtual clock without running timers (a destination whose clock was restored
        /// from the stream before this device loads).
        set_now_ns;
    }

    /// IRQ0 level (counter 0's output as the interrupt controller sees it).
    #[must_use]
    pub fn irq_level(&self) -> bool {
        self.irq_level
    }

    /// Rising edges on IRQ0 so far.
    #[must_use]
    pub fn irq_count(&self) -> u64 {
        self.irq_edges
    }

    /// Counter 0's interrupt timer.
    #[must_use]
    pub fn irq_timer(&self) -> Timer {
        self.irq_timer
    }

    /// The OUT pin of counter `channel` (0–2) now; e.g. port 0x61 bit 5 shows counter 2's.
    #[must_use]
    pub fn output(&self, channel: usize) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.output(self.now()))
    }

    /// The GATE input of counter `channel` (0–2).
    #[must_use]
    pub fn gate(&self, channel: usize) -> bool {
        self.channels.get(channel).is_some_and(|c| c.gate != 0)
    }

    /// Drives the GATE input of counter `channel`; a rising edge restarts counting in modes
    /// 1, 2, 3 and 5. Out-of-range channels are ignored.
    pub fn set_gate(&mut self, channel: usize, level: bool) {
        let now = self.now();
        let Some(c) = self.channels.get_mut(channel) else {
            return;
        };
        let val = u8::from(level);
        let restart = matches!(c.effective_mode(), 1 | 2 | 3 | 5) && c.gate < val;
        if restart {
            c.count_load_time = now;
        }
        c.gate = val;
        if restart && channel == 0 {
            self.irq_timer_update(now);
        }
    }

    /// Connects (`false`) or disconnects (`true`) counter 0's interrupt, as the HPET's legacy
    /// replacement route does.
    pub fn set_irq_disabled(&mut self, disabled: bool) {
        self.irq_disabled = u32::from(disabled);
        if disabled {
            self.irq_timer = Timer::disarmed();
        } else {
            self.irq_timer_update(self.now());
        }
    }

    /// Advances the virtual clock to `now_ns` (never backwards), raising and lowering IRQ0 at
    /// every output transition of counter 0 on the way.
    pub fn advance_to(&mut self, now_ns: u64) {
        let target = now_ns.max(self.now_ns);
        // Each transition is at least 1 ns after the previous one; the bound keeps a
        // pathological state (count 1 far in the past) from spinning for long.
        for _ in 0..10_000_000 {
            match self.irq_timer.expire_ns {
                Some(t) if t <= target => {
                    self.now_ns = self.now_ns.max(t);
                    self.irq_timer = Timer::disarmed();
                    #[allow(clippy::cast_possible_wrap)]
                    self.irq_timer_update(t as i64);
                }
                _ => break,
            }
        }
        self.now_ns = target;
    }

    /// Recomputes IRQ0 and re-arms counter 0's timer, as of virtual time `t`.
    fn irq_timer_update(&mut self, t: i64) {
        if self.irq_disabled != 0 {
            return;
        }
        let c = &mut self.channels[0];
        let expire = c.next_transition(t);
        let level = c.output(t);
        c.next_transition_time = expire;
        self.ch0_next_transition_time = expire;
        if level && !self.irq_level {
            self.irq_edges += 1;
        }
        self.irq_level = level;
        self.irq_timer = Self::timer_at(expire);
    }

    fn load_count(&mut self, channel: usize, val: u32) {
        let now = self.now();
        let c = &mut self.channels[channel];
        c.count_load_time = now;
        #[allow(clippy::cast_possible_wrap)]
        {
            c.count = if val == 0 { 0x10000 } else { val as i32 };
        }
        if channel == 0 {
            self.irq_timer_update(now);
        }
    }

    /// A guest write: `offset` 0–2 a counter's initial count, 3 the control word.
    pub fn io_write(&mut self, offset: u16, value: u8) {
        let now = self.now();
        let channel = usize::from(offset & 3);
        if channel == 3 {
            let sel = usize::from(value >> 6);
            if sel == 3 {
                // Read-back: bit 5 clear latches counts, bit 4 clear latches status, of the
                // counters selected by bits 1–3.
                for (i, c) in self.channels.iter_mut().enumerate() {
                    if value & (2 << i) == 0 {
                        continue;
                    }
                    if value & 0x20 == 0 {
                        c.latch_count(now);
                    }
                    if value & 0x10 == 0 && c.status_latched == 0 {
                        c.status = (u8::from(c.output(now)) << 7)
                            | (c.rw_mode << 4)
                            | (c.mode << 1)
                            | c.bcd;
                        c.status_latched = 1;
                    }
                }
            } else {
                let c = &mut self.channels[sel];
                let access = (value >> 4) & 3;
                if access == rw_state::LATCH {
                    c.latch_count(now);
                } else {
                    c.rw_mode = access;
                    c.read_state = access;
                    c.write_state = access;
                    // Stored as written (QEMU does the same, so the byte on the wire is the
                    // guest's); modes 6 and 7 behave as the datasheet's aliases 2 and 3.
                    c.mode = (value >> 1) & 7;
                    c.bcd = value & 1;
                }
            }
            return;
        }
        let c = &mut self.channels[channel];
        match c.write_state {
            rw_state::MSB => self.load_count(channel, u32::from(value) << 8),
            rw_state::WORD0 => {
                c.write_latch = value;
                c.write_state = rw_state::WORD1;
            }
            rw_state::WORD1 => {
                let v = u32::from(c.write_latch) | (u32::from(value) << 8);
                c.write_state = rw_state::WORD0;
                self.load_count(channel, v);
            }
            _ => self.load_count(channel, u32::from(value)),
        }
    }

    /// A guest read: `offset` 0–2 a counter (status, latch or live count), 3 reads 0.
    pub fn io_read(&mut self, offset: u16) -> u8 {
        let now = self.now();
        match self.channels.get_mut(usize::from(offset & 3)) {
            Some(c) => c.read(now),
            None => 0,
        }
    }

    fn pre_save(&mut self) -> Result<(), Infallible> {
        self.ch0_next_transition_time = self.channels[0].next_transition_time;
        Ok(())
    }

    fn post_load(&mut self, _version: u32) -> Result<(), String> {
        for (i, c) in self.channels.iter().enumerate() {
            c.check(i)?;
        }
        self.channels[0].next_transition_time = self.ch0_next_transition_time;
        let t = self.ch0_next_transition_time;
        self.irq_timer = if t != -1 && self.irq_disabled == 0 {
            Self::timer_at(t)
        } else {
            Timer::disarmed()
        };
        Ok(())
    }
}

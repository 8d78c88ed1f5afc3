//! Mutated golden sections: whatever the bytes, loading returns Ok or Err, and a device that
//! loaded keeps working (port I/O, timers) without panicking — also in debug builds, where
//! integer overflow would panic.

mod common;

use common::*;
use examples_devices::rtc::Mc146818Rtc;
use examples_devices::serial::{SerialBackend, SerialSection};
use examples_devices::watchdog::{DemoWatchdog, WatchdogConfig, DRIVER};
use examples_devices::I8254;

const M72: &str = "pc-i440fx-7.2";

/// xorshift64*: a fixed-seed generator, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutations(seed: u64, base: &[u8], rounds: usize, mut f: impl FnMut(&[u8], &mut Rng)) {
    let mut rng = Rng(seed);
    for _ in 0..rounds {
        let mut b = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len());
            b[i] = match rng.below(4) {
                0 => b[i] ^ (1 << rng.below(8)),
                1 => 0xff,
                2 => 0,
                _ => rng.next() as u8,
            };
        }
        f(&b, &mut rng);
    }
}

/// 64 random guest accesses to `dev`'s ports (offsets below 0x18, masked with `port_mask`),
/// each followed by a random step of its clock through `advance`.
fn exercise<D>(
    rng: &mut Rng,
    dev: &mut D,
    port_mask: u16,
    io_read: fn(&mut D, u16) -> u8,
    io_write: fn(&mut D, u16, u8),
    mut advance: impl FnMut(&mut D, u64),
) {
    let mut t = 0u64;
    for _ in 0..64 {
        let off = rng.below(0x18) as u16 & port_mask;
        if rng.below(2) == 0 {
            io_write(dev, off, rng.next() as u8);
        } else {
            io_read(dev, off);
        }
        t = t.saturating_add(rng.next() % 50_000_000);
        advance(dev, t);
    }
}

#[test]
fn serial() {
    for stream in ["uart-xmit", "uart-timeout", "two-ports"] {
        let g = golden_section(stream, "serial", 0);
        mutations(1, g.payload(), 3000, |b, rng| {
            let mut d = SerialSection::new(SerialBackend {
                modem_control: true,
                modem_lines: 0x30,
            });
            if try_load(&mut d, b, M72, "serial") {
                let u = &mut d.state;
                let mut t = 0u64;
                for _ in 0..64 {
                    let off = rng.below(8) as u16;
                    match rng.below(4) {
                        0 => u.io_write(off, rng.next() as u8),
                        1 => {
                            u.io_read(off);
                        }
                        2 => {
                            u.receive(&[1, 2, 3, 4, 5]);
                        }
                        _ => u.set_tx_blocked(rng.below(2) == 0),
                    }
                    t = t.saturating_add(rng.next() % 20_000_000);
                    u.advance_to(t);
                }
                save_section(&d, M72, "serial");
            }
        });
    }
}

#[test]
fn pit() {
    let g = golden_section("pit", "i8254", 0);
    mutations(2, g.payload(), 3000, |b, rng| {
        let mut d = I8254::new();
        if try_load(&mut d, b, M72, "i8254") {
            exercise(
                rng,
                &mut d,
                3,
                I8254::io_read,
                I8254::io_write,
                I8254::advance_to,
            );
            save_section(&d, M72, "i8254");
        }
    });
}

#[test]
fn rtc() {
    for (stream, policy) in RTC_STREAMS {
        let g = golden_section(stream, "mc146818rtc", 0);
        mutations(3, g.payload(), 1500, |b, rng| {
            let mut d = Mc146818Rtc::new(0, policy);
            d.set_now_ns(rng.next() >> rng.below(64));
            if try_load(&mut d, b, M72, "mc146818rtc") {
                // A VMM resumes the device after a successful load.
                let now = d.now_ns();
                d.resume(now);
                let start = d.now_ns();
                exercise(
                    rng,
                    &mut d,
                    1,
                    Mc146818Rtc::io_read,
                    Mc146818Rtc::io_write,
                    |r, t| r.advance_to(start.saturating_add(t / 1000)),
                );
                save_section(&d, M72, "mc146818rtc");
            }
        });
    }
}

#[test]
fn watchdog() {
    let mut w = DemoWatchdog::new(WatchdogConfig {
        outputs: 2,
        pretimeout: true,
    });
    w.io_write(4, 100);
    w.io_write(0, 3);
    w.advance_to(1_000_000);
    w.io_write(2, 0x5a);
    w.status = 1;
    let base = save_section(&w, M72, DRIVER).0;
    mutations(4, &base, 3000, |b, rng| {
        let mut d = DemoWatchdog::new(WatchdogConfig {
            outputs: 2,
            pretimeout: true,
        });
        if try_load(&mut d, b, M72, DRIVER) {
            // Offsets below 0x18 need no mask: the watchdog decodes them all.
            exercise(
                rng,
                &mut d,
                0xffff,
                DemoWatchdog::io_read,
                DemoWatchdog::io_write,
                DemoWatchdog::advance_to,
            );
            save_section(&d, M72, DRIVER);
        }
    });
}

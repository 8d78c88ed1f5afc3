//! The software guest: a thread that walks the pattern pages of a vm-memory [`GuestRam`] the way
//! the KVM guest does (see [`guest`](super::guest)) and prints through the example UART, `A` once,
//! then a `B` per pass. It needs no `/dev/kvm`, so `tinyvm pingpong --soft` runs everywhere.
//!
//! - [`SoftGuest`]: the running guest, a `MigrationSource` (its dirty pages are vm-memory's
//!   bitmap). It paces itself to its [`Workload`]'s dirty rate with a [`Budget`] and can stop
//!   in the middle of a pass (every 1024 pages), going on where it stopped. Auto-converge's
//!   throttle slows the rate, or without a rate makes the thread sleep that share of its time
//!   (and lengthens the pause between passes).
//! - [`SoftDest`]: a guest being received, a `MigrationDestination` that checks what it loaded
//!   before it starts the guest.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmstate_migration::impl_vm_parts;

use vm_memory::{Bytes, GuestAddress};
use vmstate_migration::{GuestRam, MigrationDestination, MigrationSource};
use vmstate_runtime::{MachineType, Registry};

use super::guest::{Budget, Workload, PAGE_SIZE};
use super::monotonic_ns;
use super::protocol::{devices_hash, Seen};
use crate::SerialSection;

/// The software guest (see the module docs).
pub struct SoftGuest {
    ram: GuestRam,
    registry: Registry,
    machine: MachineType,
    serial: Arc<Mutex<SerialSection>>,
    quit: Arc<AtomicBool>,
    throttle: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
    workload: Workload,
    /// Pages of the pass under way done when the thread last stopped (where it goes on).
    pos: Arc<AtomicUsize>,
    /// [`monotonic_ns`] when the guest thread last began to run (0 until it has).
    started_at: Arc<AtomicU64>,
    /// [`monotonic_ns`] when the last stop for a migration began (0 if none).
    pub stopped_at: u64,
}

impl std::fmt::Debug for SoftGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftGuest")
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

fn putc(serial: &Mutex<SerialSection>, b: u8) {
    let mut s = serial.lock().unwrap_or_else(PoisonError::into_inner);
    // Poll LSR.THRE (it is set again as soon as the byte went out), then write THR.
    for _ in 0..1000 {
        if s.state.io_read(5) & 0x20 != 0 {
            break;
        }
    }
    s.state.io_write(0, b);
}

impl SoftGuest {
    /// A stopped guest with zeroed RAM (`pc.ram`, [`Workload::ram_size`]) and COM1 registered
    /// as `serial`. `populated`: a migration destination, whose RAM is faulted in at creation.
    ///
    /// # Errors
    ///
    /// RAM allocation or registry errors, or a size out of range.
    pub fn new(populated: bool, workload: Workload) -> Result<Self, String> {
        workload.validate(false)?;
        let blocks = [("pc.ram", 0, workload.ram_size)];
        let ram = if populated {
            GuestRam::new_populated(&blocks)
        } else {
            GuestRam::new(&blocks)
        }
        .map_err(|e| e.to_string())?;
        Self::with_ram(
            ram,
            workload,
            Arc::new(Mutex::new(SerialSection::default())),
        )
    }

    /// A stopped guest over existing RAM (e.g. mapped from a snapshot file) with `serial` as
    /// COM1; [`SoftGuest::set_position`] says where its walk goes on.
    ///
    /// # Errors
    ///
    /// Registry errors, or a size out of range.
    pub fn with_ram(
        ram: GuestRam,
        workload: Workload,
        serial: Arc<Mutex<SerialSection>>,
    ) -> Result<Self, String> {
        workload.validate(false)?;
        let mut registry = Registry::new();
        registry
            .register(Arc::clone(&serial))
            .map_err(|e| e.to_string())?;
        Ok(SoftGuest {
            ram,
            registry,
            machine: super::machine(),
            serial,
            quit: Arc::new(AtomicBool::new(false)),
            throttle: Arc::new(AtomicU8::new(0)),
            thread: None,
            workload,
            pos: Arc::new(AtomicUsize::new(0)),
            started_at: Arc::new(AtomicU64::new(0)),
            stopped_at: 0,
        })
    }

    /// Sets the page of the pass under way where the walk goes on (a restored guest's position).
    pub fn set_position(&self, pages_done: usize) {
        self.pos.store(pages_done, Ordering::Release);
    }

    /// Starts the guest thread (if not running); `fresh`: a new guest, which prints `A` first.
    pub fn run(&mut self, fresh: bool) {
        if self.thread.is_some() {
            return;
        }
        self.quit.store(false, Ordering::Release);
        self.started_at.store(0, Ordering::Release);
        let (mem, serial) = (self.ram.memory().clone(), Arc::clone(&self.serial));
        let (quit, throttle) = (Arc::clone(&self.quit), Arc::clone(&self.throttle));
        let started_at = Arc::clone(&self.started_at);
        let (pages, pos) = (self.workload.pattern_pages(), Arc::clone(&self.pos));
        let first = self.workload.first_pattern_page();
        let mut budget = Budget::new(self.workload.dirty_rate);
        let limited = self.workload.dirty_rate.is_some();
        self.thread = Some(std::thread::spawn(move || {
            started_at.store(monotonic_ns(), Ordering::Release);
            if fresh {
                putc(&serial, b'A');
            }
            // Where the pass under way stands: the thread may stop in the middle of a pass
            // (a large RAM, a rate limit) and goes on from there.
            let mut k = pos.load(Ordering::Acquire);
            let mut allowed = 0u32;
            let mut batch = Instant::now();
            while !quit.load(Ordering::Acquire) {
                while k < pages {
                    if allowed == 0 {
                        // With a rate, the throttle slows the rate (the budget)...
                        allowed = budget.grant(if limited {
                            throttle.load(Ordering::Relaxed)
                        } else {
                            0
                        });
                        if allowed == 0 {
                            std::thread::sleep(budget.wait(Duration::from_micros(100)));
                            break;
                        }
                    }
                    let at = GuestAddress(((first + k) * PAGE_SIZE) as u64);
                    let v: u32 = mem.read_obj(at).unwrap_or(0);
                    let _ = mem.write_obj(v.wrapping_add(1), at);
                    allowed -= 1;
                    k += 1;
                    if k % 1024 == 0 {
                        // ... without one, it makes the guest sleep for its share of the time.
                        let t = u32::from(throttle.load(Ordering::Relaxed).min(99));
                        if t > 0 && !limited {
                            std::thread::sleep(batch.elapsed() * t / (100 - t));
                        }
                        batch = Instant::now();
                        if quit.load(Ordering::Acquire) {
                            break;
                        }
                    }
                }
                if k < pages {
                    continue; // out of budget or asked to quit: look at `quit` again
                }
                k = 0;
                putc(&serial, b'B');
                let t = u64::from(throttle.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_micros(200 + 20 * t));
            }
            pos.store(k, Ordering::Release);
        }));
    }

    /// Stops the guest thread and waits for it.
    pub fn stop(&mut self) {
        self.quit.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// [`monotonic_ns`] when the guest thread began to run, waiting up to `bound` for it to
    /// start; `None` if it did not.
    #[must_use]
    pub fn started_at(&self, bound: Duration) -> Option<u64> {
        super::wait_for_start(&self.started_at, bound)
    }

    /// The UART's virtual clock, ns (where a snapshot's timers are counted from).
    #[must_use]
    pub fn serial_clock_ns(&self) -> u64 {
        self.serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
            .now_ns()
    }

    /// The serial output since the last call.
    #[must_use]
    pub fn take_output(&self) -> Vec<u8> {
        self.serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
            .take_tx_output()
    }
}

impl_vm_parts!(SoftGuest);

impl MigrationSource for SoftGuest {
    fn stop_vcpus(&mut self) {
        self.stopped_at = monotonic_ns();
        self.stop();
    }
    fn resume_vcpus(&mut self) {
        self.run(false);
    }
    fn throttle(&mut self, percent: u8) {
        self.throttle.store(percent, Ordering::Relaxed);
    }
}

/// Fault injection: flips a byte of page 100 (the last page of a smaller RAM) that is not a
/// counter (the pattern stays valid, the memory no longer matches the source's).
pub fn corrupt(ram: &GuestRam) {
    let page = (ram.total_bytes() / PAGE_SIZE as u64)
        .saturating_sub(1)
        .min(100);
    let at = GuestAddress(page * PAGE_SIZE as u64 + 100);
    let b: u8 = ram.memory().read_obj(at).unwrap_or(0);
    let _ = ram.memory().write_obj(!b, at);
}

/// The software guest being received; `resume` records what it loaded, then starts it.
#[derive(Debug)]
pub struct SoftDest {
    /// The guest, running once `resume` was called.
    pub guest: SoftGuest,
    /// What `resume` saw of the loaded memory, before the guest started.
    pub seen: Option<Result<Seen, String>>,
    /// The [`devices_hash`] of what was loaded, before the guest started.
    pub devices: Option<Result<u64, String>>,
    /// How long those checks took (in the stop-to-run window, but not part of the downtime).
    pub check_time: Duration,
    corrupt: bool,
    stall: bool,
}

impl SoftDest {
    /// Gives this destination a second UART (`serial` instance 1, COM2) that the source does
    /// not have: a device mismatch for the preflight to find (`--mismatch device`).
    ///
    /// # Errors
    ///
    /// Registry errors.
    pub fn add_com2(&mut self) -> Result<(), String> {
        self.guest
            .registry
            .register(Arc::new(Mutex::new(SerialSection::default())))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// A destination whose RAM exists, faulted in, before the source connects (no setup in
    /// the downtime). Fault injection: `corrupt`: [`corrupt`] the loaded RAM before the check;
    /// `stall`: `resume` does not start the guest.
    ///
    /// # Errors
    ///
    /// As [`SoftGuest::new`].
    pub fn new(corrupt: bool, stall: bool, workload: Workload) -> Result<Self, String> {
        Ok(SoftDest {
            guest: SoftGuest::new(true, workload)?,
            seen: None,
            devices: None,
            check_time: Duration::ZERO,
            corrupt,
            stall,
        })
    }
}

impl_vm_parts!(SoftDest, guest);

impl MigrationDestination for SoftDest {
    fn resume(&mut self) {
        let t0 = Instant::now();
        if self.corrupt {
            corrupt(&self.guest.ram);
        }
        let seen = Seen::inspect(&self.guest.ram);
        // The walk goes on where the source's stopped.
        if let Ok(s) = &seen {
            self.guest.pos.store(s.state.pages_done, Ordering::Release);
        }
        self.seen = Some(seen);
        self.devices = Some(devices_hash(&self.guest));
        self.check_time = t0.elapsed();
        if !self.stall {
            self.guest.run(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The devices check is not vacuous: one register written differently changes the hash,
    /// and two guests in the same state hash equal.
    #[test]
    fn devices_hash_sees_one_register() {
        let (a, b) = (
            SoftGuest::new(false, Workload::default()).unwrap(),
            SoftGuest::new(false, Workload::default()).unwrap(),
        );
        let same = devices_hash(&a).unwrap();
        assert_eq!(same, devices_hash(&b).unwrap());
        b.serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
            .io_write(7, 0x5a); // the scratch register
        assert_ne!(same, devices_hash(&b).unwrap());
    }
}

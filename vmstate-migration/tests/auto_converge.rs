//! Auto-converge: when the throttle rises. A scripted source reports, after every pass, a dirty
//! set that shrinks a little each time but stays above half of what the pass sent — a guest that
//! dirties memory almost as fast as it is migrated. Raising the throttle only after a pass that
//! did not shrink the dirty set would never throttle it; QEMU's rule (two passes in a row above
//! the trigger share) does.

mod common;

use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{layout, machine, spawn_receive, DestVm, TestDev};
use vmstate_migration::{migrate, GuestRam, MigrationSource, Result, Settings};
use vmstate_runtime::{MachineType, Registry};

/// Reports the first `script[k]` pages of `pc.ram` dirty after pass `k`.
struct Scripted {
    ram: GuestRam,
    registry: Registry,
    machine: MachineType,
    script: Vec<u64>,
    calls: usize,
    throttles: Vec<u8>,
}

impl Scripted {
    fn new(script: Vec<u64>) -> Self {
        let mut registry = Registry::new();
        registry
            .register(Arc::new(Mutex::new(TestDev::default())))
            .unwrap();
        Scripted {
            ram: GuestRam::new(&layout(1)).unwrap(),
            registry,
            machine: machine(),
            script,
            calls: 0,
            throttles: Vec::new(),
        }
    }
}

vmstate_migration::impl_vm_parts!(Scripted);

impl MigrationSource for Scripted {
    fn stop_vcpus(&mut self) {}
    fn resume_vcpus(&mut self) {}
    fn throttle(&mut self, percent: u8) {
        self.throttles.push(percent);
    }
    fn take_dirty(&mut self) -> Result<Vec<Vec<u64>>> {
        // Call 0 starts the log; call k + 1 ends pass k.
        let mut v = self.ram.take_dirty();
        let pages = match self.calls {
            0 => 0,
            k => self.script.get(k - 1).copied().unwrap_or(0),
        };
        self.calls += 1;
        for p in 0..pages {
            v[0][(p / 64) as usize] |= 1 << (p % 64);
        }
        Ok(v)
    }
}

fn throttles(script: Vec<u64>, trigger: u8) -> Vec<u8> {
    let mut src = Scripted::new(script);
    let (mut a, b) = UnixStream::pair().unwrap();
    let dest = spawn_receive(DestVm::new(1), b);
    let settings = Settings {
        // Never met: every pass is followed by another until max_passes.
        downtime: Duration::from_nanos(1),
        max_passes: 8,
        throttle_trigger_percent: trigger,
        ..Settings::default()
    };
    let report = migrate(&mut src, &mut a, &settings).unwrap();
    dest.join().unwrap().1.unwrap();
    assert_eq!(report.passes.len(), 8);
    src.throttles
}

/// Shrinking by 10 pages a pass, each pass dirtying more than half of what it sent: the
/// throttle rises after every second such pass (20, 30, 40 %), then is released at the end.
#[test]
fn throttle_rises_while_dirtying_outpaces_half_of_what_is_sent() {
    let script = vec![200, 190, 180, 170, 160, 150, 140, 130];
    assert_eq!(throttles(script, 50), [20, 30, 40, 0]);
}

/// The same passes with the trigger at 100 %: only a non-shrinking pass would throttle, and
/// none comes.
#[test]
fn no_throttle_below_the_trigger_while_shrinking() {
    let script = vec![200, 190, 180, 170, 160, 150, 140, 130];
    assert_eq!(throttles(script, 100), Vec::<u8>::new());
}

/// A dirty set that stops shrinking throttles at once, whatever the trigger.
#[test]
fn a_pass_that_does_not_shrink_throttles() {
    let script = vec![100, 100, 100, 100, 100, 100, 100, 100];
    assert_eq!(throttles(script, 100), [20, 30, 40, 50, 60, 70, 0]);
}

//! `MigrationSource::take_dirty`: a source whose guest writes memory behind vm-memory's back
//! (like a KVM guest) reports those pages itself, and the passes send exactly what it reports.

mod common;

use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use common::{layout, machine, spawn_receive, DestVm, TestDev};
use vm_memory::{Bytes, GuestAddress};
use vmstate_migration::{migrate, GuestRam, MigrationSource, Result, Settings};
use vmstate_runtime::{MachineType, Registry};

/// A source whose "guest" writes page 5 while it is being stopped, invisibly to vm-memory's
/// bitmap; `report` decides whether its own dirty log tells the migration.
struct ExternalWriter {
    ram: GuestRam,
    registry: Registry,
    machine: MachineType,
    report: bool,
    external: Vec<Vec<u64>>,
    calls: u32,
}

const PAGE: u64 = 5;

impl ExternalWriter {
    fn new(report: bool) -> Self {
        let dev = Arc::new(Mutex::new(TestDev::default()));
        let mut registry = Registry::new();
        registry.register(dev).unwrap();
        let ram = GuestRam::new(&layout(1)).unwrap();
        ram.memory()
            .write_slice(&[0x11; 4096], GuestAddress(PAGE * 4096))
            .unwrap();
        ExternalWriter {
            ram,
            registry,
            machine: machine(),
            report,
            external: Vec::new(),
            calls: 0,
        }
    }
}

vmstate_migration::impl_vm_parts!(ExternalWriter);

impl MigrationSource for ExternalWriter {
    fn stop_vcpus(&mut self) {
        // The last guest write before the stop, hidden from vm-memory's bitmap.
        self.ram
            .memory()
            .write_slice(&[0x22; 4096], GuestAddress(PAGE * 4096))
            .unwrap();
        let _ = self.ram.take_dirty();
        if self.report {
            let mut bits = vec![vec![0u64; 4]];
            bits[0][0] = 1 << PAGE;
            self.external = bits;
        }
    }
    fn resume_vcpus(&mut self) {}
    fn take_dirty(&mut self) -> Result<Vec<Vec<u64>>> {
        self.calls += 1;
        let mut v = self.ram.take_dirty();
        for (b, e) in v.iter_mut().zip(std::mem::take(&mut self.external)) {
            for (x, y) in b.iter_mut().zip(e) {
                *x |= y;
            }
        }
        Ok(v)
    }
}

fn run(report: bool) -> (ExternalWriter, DestVm) {
    let mut src = ExternalWriter::new(report);
    let (mut a, b) = UnixStream::pair().unwrap();
    let dest = spawn_receive(DestVm::new(1), b);
    migrate(&mut src, &mut a, &Settings::default()).unwrap();
    let (d, r) = dest.join().unwrap();
    r.unwrap();
    (src, d)
}

#[test]
fn pages_reported_by_take_dirty_are_sent_in_the_final_pass() {
    let (src, dst) = run(true);
    assert!(src.calls >= 3, "start, after each pass, after the stop");
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
}

#[test]
fn pages_not_reported_are_not_sent() {
    // The control: the same hidden write, not reported, leaves the destination stale.
    let (src, dst) = run(false);
    let mut page = [0u8; 4096];
    dst.ram
        .memory()
        .read_slice(&mut page, GuestAddress(PAGE * 4096))
        .unwrap();
    assert_eq!(page, [0x11; 4096]);
    assert_ne!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
}

//! The KVM runner: one VM, vm-memory RAM (1 MiB by default, [`Workload::ram_size`]), one vCPU,
//! the example 16550A on COM1, and the page-budget port of the 32- and 64-bit guests.
//!
//! RAM is one vm-memory region at address 0 (the migration's and the snapshot's block
//! `pc.ram`): its addresses are offsets in the block. KVM sees it through one memory slot at
//! guest physical address 0 up to 3 GiB, and above that through two ([`guest::ram_layout`]):
//! slot 0 for the first 3 GiB at 0, slot 1 for the rest at 4 GiB. Two slots over one mapping
//! rather than two RAM blocks: QEMU's pc machine does the same (one `pc.ram`, two aliases), so
//! snapshots, migration streams and the pattern check keep one block whatever the size, and a
//! snapshot maps back with one `mmap`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_sregs, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmstate_migration::{GuestMem, GuestRam};

use super::cpu::{CpuState, SAVED_MSRS};
use super::guest::{
    self, Budget, Workload, BUDGET_PORT, COM1_BASE, GUEST_CODE, GUEST_CODE32, GUEST_CODE64,
    HIGH_RAM_BASE,
};
use crate::serial::{SerialBackend, SerialSection};

/// Most pages the 32-bit guest gets per budget read: it exits at least every this many pages.
const BUDGET_BATCH: u32 = 1024;

/// Address of the three pages KVM needs for the real-mode TSS on Intel (above the guest RAM).
const TSS_ADDR: usize = 0xfffb_d000;

/// A tinyvm error.
#[derive(Debug)]
pub enum Error {
    /// `/dev/kvm` lacks a capability tinyvm needs.
    MissingCapability(&'static str),
    /// A KVM ioctl failed.
    Kvm {
        /// Which operation.
        op: &'static str,
        /// The errno.
        err: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up or accessed.
    Memory(String),
    /// The guest left KVM in a way tinyvm does not handle (shutdown, failed entry, …).
    GuestExit(String),
    /// Saved vCPU state that KVM does not take back.
    State(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingCapability(c) => write!(f, "KVM lacks capability {c}"),
            Error::Kvm { op, err } => write!(f, "{op}: {err}"),
            Error::Memory(m) => write!(f, "guest memory: {m}"),
            Error::GuestExit(m) => write!(f, "guest stopped: {m}"),
            Error::State(m) => write!(f, "vCPU state: {m}"),
        }
    }
}

impl std::error::Error for Error {}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |err| Error::Kvm { op, err }
}

/// What one [`Vm::run_for`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// VM exits handled.
    pub exits: u64,
    /// Port I/O exits to the UART.
    pub uart_exits: u64,
    /// Wall time spent.
    pub elapsed: Duration,
}

/// A tinyvm: KVM VM, guest RAM, one vCPU, COM1.
///
/// # Running and stopping
///
/// [`Vm::run_for`] runs the vCPU on the calling thread. The run loop looks at the clock and at
/// the [stop flag](Vm::stop_handle) after every exit, and the guest exits at least twice per pass
/// (the `in` from LSR and the `out` to THR), so `run_for` returns within one pass of its
/// deadline (a pass took about 0.7 ms on the development host, where real-mode segment loads
/// are slow); the 32-bit guest also exits to read its page budget, at least every 1,024 pages. A `KVM_RUN` interrupted by a signal (`EINTR`, the kick of
/// [`live::VcpuThread`](super::live::VcpuThread)) is treated like an exit, so the vCPU can stop
/// anywhere in a pass. Before returning, `run_for` re-enters `KVM_RUN` once with
/// `immediate_exit` set, which completes a pending port I/O exit without running the guest:
/// the vCPU state read between calls is then consistent (KVM's API documentation requires this
/// before saving state). Between calls the vCPU is not running: that is the stopped state a
/// migration reads. [`Vm::pause`] makes further `run_for` calls return at once until
/// [`Vm::resume`].
pub struct Vm {
    _kvm: Kvm,
    vm: Arc<VmFd>,
    vcpu: VcpuFd,
    mem: GuestMem,
    /// COM1, the example 16550A.
    pub serial: SerialSection,
    msr_indices: Vec<u32>,
    /// The CPUID the vCPU was given (the host's supported CPUID, less hidden features).
    cpuid: Vec<super::cpuid::CpuidEntry>,
    paused: bool,
    stop: Arc<AtomicBool>,
    ram_size: usize,
    budget: Budget,
    throttle: u8,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("paused", &self.paused)
            .field("msr_indices", &self.msr_indices)
            .finish_non_exhaustive()
    }
}

impl Vm {
    /// A VM with the guest loaded and its vCPU at the entry point (CS:IP = 0:0x1000, real mode,
    /// flat segments, SS:SP = 0:0x1000).
    ///
    /// # Errors
    ///
    /// `/dev/kvm` does not open, lacks a capability, or an ioctl fails.
    pub fn new() -> Result<Self, Error> {
        Self::with_workload(Workload::default())
    }

    /// A VM running `w`: the real-mode guest for the default workload, else the 32-bit guest
    /// (see [`guest`](super::guest)) in flat protected mode with EDI = the RAM size.
    ///
    /// # Errors
    ///
    /// As [`Vm::new`], or a RAM size the 32-bit guest cannot address.
    pub fn with_workload(w: Workload) -> Result<Self, Error> {
        if w.real_mode() {
            return Self::real_mode();
        }
        if w.long_mode() {
            return Self::long_mode(w);
        }
        w.validate(true).map_err(Error::Memory)?;
        let vm = Self::new_empty_with(w)?;
        vm.mem
            .write_slice(&GUEST_CODE32, GuestAddress(guest::CODE_ADDR))
            .map_err(|e| Error::Memory(e.to_string()))?;
        let mut sregs = vm.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        // Flat 4 GiB segments straight into the caches: no GDT is read to get there.
        flat_segments(&mut sregs, false);
        sregs.cr0 |= 1; // PE
        vm.enter_guest(&sregs, Some(w.ram_size as u64))?;
        Ok(vm)
    }

    /// The 64-bit guest (RAM above 3 GiB): page tables and [`GUEST_CODE64`] in RAM, the vCPU in
    /// long mode (see [`guest`](super::guest#the-64-bit-program)).
    fn long_mode(w: Workload) -> Result<Self, Error> {
        let vm = Self::new_empty_with(w)?;
        let write = |bytes: &[u8], at: u64| {
            vm.mem
                .write_slice(bytes, GuestAddress(at))
                .map_err(|e| Error::Memory(e.to_string()))
        };
        write(&guest::page_tables(w.ram_size), guest::PAGE_TABLES_ADDR)?;
        write(&GUEST_CODE64, guest::CODE_ADDR)?;
        let mut sregs = vm.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        flat_segments(&mut sregs, true);
        const CR0_PE: u64 = 1;
        const CR0_NW: u64 = 1 << 29;
        const CR0_CD: u64 = 1 << 30;
        const CR0_PG: u64 = 1 << 31;
        const CR4_PAE: u64 = 1 << 5;
        const EFER_LME: u64 = 1 << 8;
        const EFER_LMA: u64 = 1 << 10;
        sregs.cr3 = guest::PAGE_TABLES_ADDR;
        sregs.cr4 |= CR4_PAE;
        sregs.efer |= EFER_LME | EFER_LMA;
        sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_PG) & !(CR0_CD | CR0_NW);
        let (low, high) = guest::ram_layout(w.ram_size);
        vm.enter_guest(&sregs, Some(low as u64))?;
        let mut regs = vm.vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        regs.r8 = HIGH_RAM_BASE;
        regs.r9 = HIGH_RAM_BASE + high as u64;
        vm.vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
        Ok(vm)
    }

    fn real_mode() -> Result<Self, Error> {
        let vm = Self::new_empty()?;
        vm.mem
            .write_slice(&GUEST_CODE, GuestAddress(guest::CODE_ADDR))
            .map_err(|e| Error::Memory(e.to_string()))?;
        let mut sregs = vm.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        for seg in [
            &mut sregs.cs,
            &mut sregs.ds,
            &mut sregs.es,
            &mut sregs.fs,
            &mut sregs.gs,
            &mut sregs.ss,
        ] {
            seg.base = 0;
            seg.selector = 0;
        }
        vm.enter_guest(&sregs, None)?;
        Ok(vm)
    }

    /// Loads `sregs` and points the vCPU at the guest's entry point and stack, with EDI = `rdi`
    /// when given (the 32-bit guest's RAM size) and only the always-set flag bit 1.
    fn enter_guest(&self, sregs: &kvm_sregs, rdi: Option<u64>) -> Result<(), Error> {
        self.vcpu
            .set_sregs(sregs)
            .map_err(kvm_err("KVM_SET_SREGS"))?;
        let mut regs = self.vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        regs.rip = guest::CODE_ADDR;
        regs.rsp = guest::STACK_TOP;
        if let Some(rdi) = rdi {
            regs.rdi = rdi;
        }
        regs.rflags = 0x2; // bit 1 is always set
        self.vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
    }

    /// A VM with zeroed RAM and a vCPU at reset: a migration destination, to be filled with
    /// [`Vm::write_memory`], [`Vm::restore_cpu`] and the UART.
    ///
    /// # Errors
    ///
    /// As [`Vm::new`].
    pub fn new_empty() -> Result<Self, Error> {
        Self::new_empty_with(Workload::default())
    }

    /// [`Vm::new_empty`] with the RAM size and dirty rate of `w`.
    ///
    /// # Errors
    ///
    /// As [`Vm::new`].
    pub fn new_empty_with(w: Workload) -> Result<Self, Error> {
        w.validate(true).map_err(Error::Memory)?;
        let mem = GuestMem::from_ranges(&[(GuestAddress(0), w.ram_size)])
            .map_err(|e| Error::Memory(format!("{e:?}")))?;
        Self::with_memory(w, mem)
    }

    /// A VM over existing guest memory `mem` (one region of [`Workload::ram_size`] bytes at
    /// address 0, e.g. mapped from a snapshot file; above 3 GiB KVM sees it at two places, see
    /// the module docs) with a vCPU at reset: a restore target, to be filled with
    /// [`Vm::restore_cpu`] and the UART. Nothing of `mem` is read or faulted in.
    ///
    /// # Errors
    ///
    /// As [`Vm::new`], or memory that is not one region of the workload's size at 0.
    pub fn with_memory(w: Workload, mem: GuestMem) -> Result<Self, Error> {
        w.validate(true).map_err(Error::Memory)?;
        let ram_size = w.ram_size;
        if mem.num_regions() != 1
            || mem.iter().next().map(|r| (r.start_addr().0, r.len())) != Some((0, ram_size as u64))
        {
            return Err(Error::Memory(format!(
                "guest memory must be one region of {ram_size} bytes at address 0"
            )));
        }
        let kvm = Kvm::new().map_err(kvm_err("open /dev/kvm"))?;
        for (cap, name) in [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
            (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(Error::MissingCapability(name));
            }
        }
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;

        let host = mem
            .get_host_address(GuestAddress(0))
            .map_err(|e| Error::Memory(e.to_string()))?;
        let (low, high) = guest::ram_layout(ram_size);
        // Slot 0: the block's first `low` bytes at guest address 0; slot 1 (above 3 GiB): the
        // rest at 4 GiB. KVM's dirty log feeds the precopy passes (see `DirtyLog`).
        let slots = [(0, 0, 0), (1, HIGH_RAM_BASE, low)];
        for ((slot, gpa, offset), size) in slots.into_iter().zip([low, high]) {
            if size == 0 {
                continue;
            }
            let region = kvm_userspace_memory_region {
                slot,
                flags: KVM_MEM_LOG_DIRTY_PAGES,
                guest_phys_addr: gpa,
                memory_size: size as u64,
                userspace_addr: host as u64 + offset as u64,
            };
            #[allow(unsafe_code)]
            // SAFETY: `host` is the start of `mem`'s single mapping of `ram_size` bytes (checked
            // above: one region at guest address 0) and `offset + size <= low + high =
            // ram_size`, so each slot covers only memory this process mapped. `mem` is stored
            // in the returned `Vm` next to the `VmFd`, and fields drop in declaration order
            // (`vm` before `mem`), so the mapping outlives the VM that uses it; the only other
            // holder of the `VmFd`, a `DirtyLog`, holds a clone of `mem` (the same mapping,
            // reference-counted) next to it.
            unsafe { vm.set_user_memory_region(region) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        // Memory first: registering the slot before the irqchip exists took 0.5 ms instead of 7
        // on the development host (measured in a loop of VM creations, min of 6).
        vm.set_tss_address(TSS_ADDR)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        // The in-kernel irqchip gives the vCPU a local APIC (KVM_GET/SET_LAPIC need it).
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;

        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        let cpuid = cpuid
            .as_slice()
            .iter()
            .map(|e| super::cpuid::CpuidEntry {
                function: e.function,
                index: e.index,
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
            })
            .collect();

        let host_msrs = kvm
            .get_msr_index_list()
            .map_err(kvm_err("KVM_GET_MSR_INDEX_LIST"))?;
        let msr_indices = SAVED_MSRS
            .iter()
            .copied()
            .filter(|i| host_msrs.as_slice().contains(i))
            .collect();

        Ok(Vm {
            _kvm: kvm,
            vm: Arc::new(vm),
            vcpu,
            mem,
            serial: SerialSection::new(SerialBackend::default()),
            msr_indices,
            cpuid,
            paused: false,
            stop: Arc::new(AtomicBool::new(false)),
            ram_size,
            budget: Budget::new(w.dirty_rate),
            throttle: 0,
        })
    }

    /// The vCPU model for a configuration manifest: the CPUID features it was given and the
    /// MSRs it saves and restores.
    #[must_use]
    pub fn cpu_model(&self) -> vmstate_runtime::manifest::CpuModel {
        vmstate_runtime::manifest::CpuModel {
            name: "host (KVM_GET_SUPPORTED_CPUID)".into(),
            features: super::cpuid::features(&self.cpuid),
            msrs: self.msr_indices.iter().copied().collect(),
        }
    }

    /// Hides CPUID features from the vCPU before it first runs (to make a destination that
    /// lacks them, on purpose).
    ///
    /// # Errors
    ///
    /// An unknown feature name, or `KVM_SET_CPUID2` failing.
    pub fn hide_cpu_features(&mut self, names: &[String]) -> Result<(), Error> {
        let mut entries = self.cpuid.clone();
        super::cpuid::hide(&mut entries, names).map_err(Error::State)?;
        let have = super::cpuid::features(&self.cpuid);
        if let Some(absent) = names.iter().find(|n| !have.contains(*n)) {
            let have: Vec<&str> = have.iter().map(String::as_str).collect();
            return Err(Error::State(format!(
                "the vCPU has no `{absent}` to hide (it has: {})",
                have.join(" ")
            )));
        }
        let mut cpuid = self
            .vcpu
            .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_CPUID2"))?;
        for e in cpuid.as_mut_slice() {
            if let Some(h) = entries
                .iter()
                .find(|h| h.function == e.function && h.index == e.index)
            {
                (e.eax, e.ebx, e.ecx, e.edx) = (h.eax, h.ebx, h.ecx, h.edx);
            }
        }
        self.vcpu
            .set_cpuid2(&cpuid)
            .map_err(kvm_err("KVM_SET_CPUID2"))?;
        self.cpuid = entries;
        Ok(())
    }

    /// Guest RAM.
    #[must_use]
    pub fn memory(&self) -> &GuestMem {
        &self.mem
    }

    /// Guest RAM as the migration's single RAM block `pc.ram` (the same mapping).
    ///
    /// # Errors
    ///
    /// If vm-memory's dirty bitmap does not have one bit per 4 KiB page.
    pub fn guest_ram(&self) -> Result<GuestRam, Error> {
        GuestRam::from_parts(self.mem.clone(), vec!["pc.ram".to_owned()])
            .map_err(|e| Error::Memory(e.to_string()))
    }

    /// A handle on KVM's dirty log of guest RAM, usable from any thread while the vCPU runs.
    #[must_use]
    pub fn dirty_log(&self) -> DirtyLog {
        DirtyLog {
            vm: Arc::clone(&self.vm),
            _mem: self.mem.clone(),
            ram_size: self.ram_size,
        }
    }

    /// A copy of all guest RAM.
    ///
    /// # Errors
    ///
    /// If guest memory cannot be read.
    pub fn read_memory(&self) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; self.ram_size];
        self.mem
            .read_slice(&mut buf, GuestAddress(0))
            .map_err(|e| Error::Memory(e.to_string()))?;
        Ok(buf)
    }

    /// Overwrites guest RAM from `data` (at most the RAM size, from address 0).
    ///
    /// # Errors
    ///
    /// If `data` is larger than guest RAM.
    pub fn write_memory(&self, data: &[u8]) -> Result<(), Error> {
        if data.len() > self.ram_size {
            return Err(Error::Memory(format!(
                "{} bytes do not fit in {} bytes of RAM",
                data.len(),
                self.ram_size
            )));
        }
        self.mem
            .write_slice(data, GuestAddress(0))
            .map_err(|e| Error::Memory(e.to_string()))
    }

    /// The MSRs saved for this host: [`SAVED_MSRS`] that KVM lists.
    #[must_use]
    pub fn msr_indices(&self) -> &[u32] {
        &self.msr_indices
    }

    /// A flag that makes a running [`Vm::run_for`] return at the guest's next exit, from any
    /// thread. `run_for` clears it on return.
    #[must_use]
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Stops running: [`Vm::run_for`] returns at once until [`Vm::resume`].
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Allows [`Vm::run_for`] to run the guest again.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Auto-converge's throttle (percent) for the dirty rate: with a `--dirty-rate`, the page
    /// budget grows at `100 - percent` % of the rate (the vCPU thread also sleeps that share of
    /// each time slice, which alone would not slow a paced guest: it would use its banked
    /// budget when it runs).
    pub fn set_throttle(&mut self, percent: u8) {
        self.throttle = percent;
    }

    /// Whether the VM is paused.
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Runs the vCPU for about `duration` (see the type's documentation), handling port I/O.
    ///
    /// # Errors
    ///
    /// A failing `KVM_RUN` or an exit tinyvm does not handle (shutdown, failed entry, internal
    /// error, `hlt`).
    pub fn run_for(&mut self, duration: Duration) -> Result<RunReport, Error> {
        let start = Instant::now();
        let mut report = RunReport::default();
        if self.paused {
            return Ok(report);
        }
        let deadline = start + duration;
        let result = loop {
            if self.stop.load(Ordering::Acquire) || Instant::now() >= deadline {
                break Ok(());
            }
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc_eintr() || e.errno() == libc_eagain() => continue,
                Err(err) => break Err(Error::Kvm { op: "KVM_RUN", err }),
            };
            report.exits += 1;
            match exit {
                VcpuExit::IoOut(port, data) => {
                    if let Some(offset) = uart_offset(port) {
                        report.uart_exits += 1;
                        if let Some(&b) = data.first() {
                            self.serial.state.io_write(offset, b);
                        }
                    }
                    // Other ports: nothing there, writes are dropped.
                }
                VcpuExit::IoIn(port, data) => {
                    if let Some(offset) = uart_offset(port) {
                        report.uart_exits += 1;
                        data.fill(0);
                        if let Some(b) = data.first_mut() {
                            *b = self.serial.state.io_read(offset);
                        }
                    } else if port == BUDGET_PORT {
                        // At most a batch at a time, even without a rate: the guest then
                        // exits every batch, and the deadline (the throttle's slices) is seen.
                        let mut n = self.budget.grant(self.throttle).min(BUDGET_BATCH);
                        if n == 0 {
                            // Nothing due yet: wait a little here rather than let the guest
                            // spin through exits (short, so a stop is not held up).
                            std::thread::sleep(self.budget.wait(Duration::from_micros(50)));
                            n = self.budget.grant(self.throttle).min(BUDGET_BATCH);
                        }
                        let b = n.to_le_bytes();
                        for (d, s) in data.iter_mut().zip(b.iter().chain([0xff; 4].iter())) {
                            *d = *s;
                        }
                    } else {
                        // An empty ISA bus reads as all ones.
                        data.fill(0xff);
                    }
                }
                VcpuExit::MmioRead(_, data) => data.fill(0xff),
                VcpuExit::MmioWrite(..) | VcpuExit::IrqWindowOpen | VcpuExit::Intr => {}
                other => break Err(Error::GuestExit(format!("{other:?}"))),
            }
        };
        self.stop.store(false, Ordering::Release);
        // A port I/O exit is completed only by the next KVM_RUN (RIP still points at the
        // `in`/`out`): re-enter with immediate_exit so the vCPU state read by `save_cpu` is
        // consistent and a restored vCPU does not repeat an `out` to the UART.
        if report.exits > 0 && result.is_ok() {
            self.vcpu.set_kvm_immediate_exit(1);
            let completed = match self.vcpu.run() {
                Err(e) if e.errno() == libc_eintr() || e.errno() == libc_eagain() => Ok(()),
                Err(err) => Err(Error::Kvm {
                    op: "KVM_RUN (complete I/O)",
                    err,
                }),
                Ok(exit) => Err(Error::GuestExit(format!(
                    "unexpected exit while completing I/O: {exit:?}"
                ))),
            };
            self.vcpu.set_kvm_immediate_exit(0);
            completed?;
        }
        report.elapsed = start.elapsed();
        result.map(|()| report)
    }

    /// Reads the vCPU state (registers, special registers, FPU, MSRs, LAPIC). Call it while
    /// the vCPU is not running (between [`Vm::run_for`] calls).
    ///
    /// # Errors
    ///
    /// A failing `KVM_GET_*` ioctl.
    pub fn save_cpu(&self) -> Result<CpuState, Error> {
        let mut s = CpuState::default();
        s.set_from_regs(&self.vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?);
        s.set_from_sregs(&self.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?);
        s.fpu = (&self.vcpu.get_fpu().map_err(kvm_err("KVM_GET_FPU"))?).into();
        let probe = CpuState {
            msrs: std::array::from_fn(|i| super::cpu::Msr {
                index: self.msr_indices.get(i).copied().unwrap_or(0),
                data: 0,
            }),
            msr_count: u32::try_from(self.msr_indices.len()).unwrap_or(0),
            ..CpuState::default()
        };
        let mut msrs = probe.kvm_msrs().map_err(Error::State)?;
        let n = self
            .vcpu
            .get_msrs(&mut msrs)
            .map_err(kvm_err("KVM_GET_MSRS"))?;
        s.set_from_msrs(&msrs.as_slice()[..n.min(msrs.as_slice().len())]);
        s.set_from_lapic(&self.vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?);
        Ok(s)
    }

    /// Puts a saved vCPU state into this VM's vCPU.
    ///
    /// # Errors
    ///
    /// A failing `KVM_SET_*` ioctl, or an MSR KVM refuses (named in the error).
    pub fn restore_cpu(&mut self, s: &CpuState) -> Result<(), Error> {
        self.vcpu
            .set_sregs(&s.sregs())
            .map_err(kvm_err("KVM_SET_SREGS"))?;
        self.vcpu
            .set_regs(&s.regs())
            .map_err(kvm_err("KVM_SET_REGS"))?;
        self.vcpu
            .set_fpu(&(&s.fpu).into())
            .map_err(kvm_err("KVM_SET_FPU"))?;
        let msrs = s.kvm_msrs().map_err(Error::State)?;
        let n = self.vcpu.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;
        if let Some(bad) = s.used_msrs().get(n) {
            return Err(Error::State(format!(
                "msrs[{n}]: KVM refused MSR {:#x} = {:#x}",
                bad.index, bad.data
            )));
        }
        self.vcpu
            .set_lapic(&s.kvm_lapic())
            .map_err(kvm_err("KVM_SET_LAPIC"))?;
        Ok(())
    }

    /// The pattern counters in walk order (see [`guest`](super::guest)).
    ///
    /// # Errors
    ///
    /// If guest memory cannot be read.
    pub fn counters(&self) -> Result<Vec<u32>, Error> {
        Ok(guest::counters(&self.read_memory()?))
    }
}

/// KVM's dirty log of a [`Vm`]'s RAM (memory slot 0, and slot 1 above 3 GiB), from
/// [`Vm::dirty_log`].
pub struct DirtyLog {
    vm: Arc<VmFd>,
    /// Keeps the slot's mapping alive as long as the VM fd (see `Vm::new_empty`).
    _mem: GuestMem,
    ram_size: usize,
}

impl fmt::Debug for DirtyLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirtyLog").finish_non_exhaustive()
    }
}

impl DirtyLog {
    /// Pages the guest wrote since the previous call (or since the VM was created), one bit
    /// per 4 KiB page of guest RAM (the block, in block order: slot 0's bits, then slot 1's);
    /// reading resets the log.
    ///
    /// # Errors
    ///
    /// A failing `KVM_GET_DIRTY_LOG`.
    pub fn take(&self) -> Result<Vec<u64>, Error> {
        let (low, high) = guest::ram_layout(self.ram_size);
        let mut bits = self
            .vm
            .get_dirty_log(0, low)
            .map_err(kvm_err("KVM_GET_DIRTY_LOG"))?;
        if high > 0 {
            // Slot 1 starts at page low / 4096 of the block, a multiple of 64 (low = 3 GiB):
            // its words follow slot 0's.
            debug_assert_eq!(low % (64 * guest::PAGE_SIZE), 0);
            bits.truncate(low / guest::PAGE_SIZE / 64);
            bits.extend(
                self.vm
                    .get_dirty_log(1, high)
                    .map_err(kvm_err("KVM_GET_DIRTY_LOG"))?,
            );
        }
        Ok(bits)
    }
}

/// COM1 register offset of `port`, if it is one of 0x3f8..=0x3ff.
fn uart_offset(port: u16) -> Option<u16> {
    port.checked_sub(COM1_BASE).filter(|&o| o < 8)
}

const fn libc_eintr() -> i32 {
    4 // EINTR on Linux
}

const fn libc_eagain() -> i32 {
    11 // EAGAIN on Linux
}

/// Flat 4 GiB code (selector 0x08) and data (0x10) segments straight into the segment caches of
/// `sregs` (no GDT is read to get there); with `long`, a 64-bit code segment (L = 1, D = 0).
fn flat_segments(sregs: &mut kvm_bindings::kvm_sregs, long: bool) {
    let flat = |selector: u16, type_: u8, l: u8| kvm_bindings::kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        // A 64-bit code segment has L = 1 and D = 0; data segments keep D/B = 1.
        db: 1 - l,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.cs = flat(0x08, 0xb, u8::from(long)); // execute/read, accessed
    for seg in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        *seg = flat(0x10, 0x3, 0); // read/write, accessed
    }
}

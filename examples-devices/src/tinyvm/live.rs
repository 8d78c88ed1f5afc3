//! Live migration of a running tinyvm over `vmstate-migration`.
//!
//! - [`VcpuThread`]: the vCPU runs on its own thread (slices of [`Vm::run_for`]) while the
//!   precopy passes run on the caller's; [`VcpuThread::park`] sets the stop flag and waits until
//!   the thread has left `KVM_RUN` and handed the [`Vm`] back.
//! - [`KvmSource`]: a [`MigrationSource`] whose dirty pages are KVM's dirty log
//!   (`KVM_GET_DIRTY_LOG`) ORed with vm-memory's bitmap (writes by the VMM); its registry holds
//!   `tinyvm-cpu` (saved when the vCPU is parked) and `serial` (COM1).
//! - [`KvmDest`]: a [`MigrationDestination`] over [`Vm::new_empty`]; vCPU state and UART are
//!   restored and the vCPU thread started only in `resume`, i.e. after the acknowledgement.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmstate_migration::impl_vm_parts;

use vmstate_migration::{GuestRam, MigrationDestination, MigrationError, MigrationSource};
use vmstate_runtime::{MachineType, Registry};

use super::{CpuState, DirtyLog, Error, Vm};
use crate::SerialSection;

/// The no-op handler of the kick signal: its only effect is that a `KVM_RUN` under way returns
/// `EINTR`, so the run loop looks at the stop flag at once.
extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The kick signal (`SIGRTMIN`), with its handler installed once per process; `None` when it
/// cannot be installed (the stop then waits for the guest's next exit).
fn kick_signal() -> Option<libc::c_int> {
    static SIGNAL: std::sync::OnceLock<Option<libc::c_int>> = std::sync::OnceLock::new();
    *SIGNAL.get_or_init(|| {
        let sig = vmm_sys_util::signal::SIGRTMIN();
        vmm_sys_util::signal::register_signal_handler(sig, kick_handler)
            .ok()
            .map(|()| sig)
    })
}

/// One run slice of the vCPU thread at full speed.
const SLICE: Duration = Duration::from_millis(10);

/// The vCPU thread of a running [`Vm`].
#[derive(Debug)]
pub struct VcpuThread {
    quit: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    throttle: Arc<AtomicU8>,
    /// [`monotonic_ns`](super::monotonic_ns) just before the thread first entered `KVM_RUN`.
    started_at: Arc<AtomicU64>,
    /// Receives the [`Vm`] and the run loop's result when the thread leaves its loop.
    left: std::sync::mpsc::Receiver<(Vm, Result<(), Error>)>,
    handle: Option<JoinHandle<()>>,
}

impl VcpuThread {
    /// Starts running `vm` on a new thread (unpausing it).
    #[must_use]
    pub fn start(mut vm: Vm) -> Self {
        vm.resume();
        let quit = Arc::new(AtomicBool::new(false));
        let stop = vm.stop_handle();
        let throttle = Arc::new(AtomicU8::new(0));
        let started_at = Arc::new(AtomicU64::new(0));
        let (q, t, at) = (
            Arc::clone(&quit),
            Arc::clone(&throttle),
            Arc::clone(&started_at),
        );
        let (left_tx, left) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("tinyvm-vcpu".into())
            .spawn(move || {
                at.store(super::monotonic_ns(), Ordering::Release);
                let result = loop {
                    if q.load(Ordering::Acquire) {
                        break Ok(());
                    }
                    let pct = u32::from(t.load(Ordering::Relaxed).min(99));
                    let run = SLICE * (100 - pct) / 100;
                    vm.set_throttle(pct as u8);
                    if let Err(e) = vm.run_for(run) {
                        break Err(e);
                    }
                    if pct > 0 && !q.load(Ordering::Acquire) {
                        std::thread::sleep(SLICE * pct / 100);
                    }
                };
                // Handed back before the thread ends, so the thread's exit is not waited for.
                let _ = left_tx.send((vm, result));
            })
            .expect("spawn the vCPU thread");
        VcpuThread {
            quit,
            stop,
            throttle,
            started_at,
            left,
            handle: Some(handle),
        }
    }

    /// [`monotonic_ns`](super::monotonic_ns) when the vCPU began to run, waiting up to
    /// `bound` for the thread to get there; `None` if it did not.
    #[must_use]
    pub fn started_at(&self, bound: Duration) -> Option<u64> {
        super::wait_for_start(&self.started_at, bound)
    }

    /// Sets the throttle percentage (auto-converge): the vCPU sleeps `percent` % of each slice.
    pub fn set_throttle(&self, percent: u8) {
        self.throttle.store(percent, Ordering::Relaxed);
    }

    /// Stops the vCPU: the [`Vm`], not running, and the run loop's result. The thread is
    /// kicked out of `KVM_RUN` with a signal and hands the `Vm` back over a channel as soon as
    /// it has left its loop, so neither polling nor the thread's exit (a join) is on the
    /// critical path; the thread ends in the background. A kick that lands just before
    /// `KVM_RUN` is entered is repeated after 100 µs, and the guest's own exits (at least two
    /// per pass) bound the wait anyway.
    ///
    /// # Panics
    ///
    /// If the vCPU thread panicked.
    pub fn park(mut self) -> (Vm, Result<(), Error>) {
        use std::sync::mpsc::RecvTimeoutError;
        self.quit.store(true, Ordering::Release);
        self.stop.store(true, Ordering::Release);
        let handle = self.handle.take().expect("vCPU thread parked once");
        let kick = kick_signal();
        loop {
            if let Some(sig) = kick {
                use vmm_sys_util::signal::Killable;
                let _ = handle.kill(sig);
            }
            match self.left.recv_timeout(Duration::from_micros(100)) {
                Ok(parked) => return parked,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The thread ended without handing the VM back: it panicked.
                    let _ = handle.join();
                    panic!("the vCPU thread panicked");
                }
            }
        }
    }
}

/// Where the vCPU is: on its thread, or parked here.
#[derive(Debug)]
enum Vcpu {
    Running(VcpuThread),
    Parked(Box<Vm>),
    Gone,
}

/// What both sides migrate: the VM's RAM, and a registry of `tinyvm-cpu` and `serial` backed by
/// the cells `cpu` and `serial` (filled from the VM when it stops, copied into it before it
/// starts).
#[derive(Debug)]
struct Sections {
    ram: GuestRam,
    registry: Registry,
    machine: MachineType,
    cpu: Arc<Mutex<CpuState>>,
    serial: Arc<Mutex<SerialSection>>,
    /// The vCPU model, for a configuration manifest.
    cpu_model: vmstate_runtime::manifest::CpuModel,
}

impl Sections {
    fn new(vm: &Vm, machine: MachineType) -> Result<Self, Error> {
        let cpu = Arc::new(Mutex::new(CpuState::default()));
        let serial = Arc::new(Mutex::new(SerialSection::default()));
        let mut registry = Registry::new();
        registry
            .register(Arc::clone(&cpu))
            .map_err(|e| Error::State(e.to_string()))?;
        registry
            .register(Arc::clone(&serial))
            .map_err(|e| Error::State(e.to_string()))?;
        Ok(Sections {
            ram: vm.guest_ram()?,
            registry,
            machine,
            cpu,
            serial,
            cpu_model: vm.cpu_model(),
        })
    }
}

/// A running tinyvm as a migration source (see the module docs).
#[derive(Debug)]
pub struct KvmSource {
    sections: Sections,
    dirty: DirtyLog,
    vcpu: Vcpu,
    /// The first vCPU error seen while stopping or resuming (the migration then fails).
    pub error: Option<String>,
    /// [`monotonic_ns`](super::monotonic_ns) when the last stop for a migration began (0 if
    /// none).
    pub stopped_at: u64,
}

impl KvmSource {
    /// Starts `vm`'s vCPU thread; `vm` may be a fresh guest or one restored by [`KvmDest`].
    ///
    /// # Errors
    ///
    /// Registry or guest-memory setup errors.
    pub fn start(vm: Vm, machine: MachineType) -> Result<Self, Error> {
        Ok(KvmSource {
            sections: Sections::new(&vm, machine)?,
            dirty: vm.dirty_log(),
            vcpu: Vcpu::Running(VcpuThread::start(vm)),
            error: None,
            stopped_at: 0,
        })
    }

    /// [`monotonic_ns`](super::monotonic_ns) when the vCPU began to run, waiting up to `bound`
    /// for it; `None` if it is not running or did not start within `bound`.
    #[must_use]
    pub fn started_at(&self, bound: Duration) -> Option<u64> {
        match &self.vcpu {
            Vcpu::Running(t) => t.started_at(bound),
            _ => None,
        }
    }

    /// Parks the vCPU (if running) and returns the VM, e.g. to read its counters and UART.
    ///
    /// # Errors
    ///
    /// The vCPU thread's run error.
    pub fn vm(&mut self) -> Result<&mut Vm, Error> {
        self.park()?;
        match &mut self.vcpu {
            Vcpu::Parked(vm) => Ok(vm),
            _ => Err(Error::GuestExit("the vCPU is gone".into())),
        }
    }

    fn park(&mut self) -> Result<(), Error> {
        if let Vcpu::Running(_) = self.vcpu {
            let Vcpu::Running(t) = std::mem::replace(&mut self.vcpu, Vcpu::Gone) else {
                unreachable!()
            };
            let (vm, result) = t.park();
            self.vcpu = Vcpu::Parked(Box::new(vm));
            result?;
        }
        Ok(())
    }

    /// Restarts the vCPU thread after [`KvmSource::vm`] or a failed migration.
    pub fn run(&mut self) {
        if let Vcpu::Parked(_) = self.vcpu {
            let Vcpu::Parked(vm) = std::mem::replace(&mut self.vcpu, Vcpu::Gone) else {
                unreachable!()
            };
            self.vcpu = Vcpu::Running(VcpuThread::start(*vm));
        }
    }

    /// Ends the VM (after a successful migration), returning it parked.
    #[must_use]
    pub fn into_vm(mut self) -> Option<Vm> {
        let _ = self.park();
        match std::mem::replace(&mut self.vcpu, Vcpu::Gone) {
            Vcpu::Parked(vm) => Some(*vm),
            _ => None,
        }
    }

    fn save_devices(&mut self) -> Result<(), Error> {
        let vm = self.vm()?;
        let cpu = vm.save_cpu()?;
        let serial = vm.serial.clone();
        *self
            .sections
            .cpu
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = cpu;
        *self
            .sections
            .serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = serial;
        Ok(())
    }
}

impl_vm_parts!(KvmSource, sections);

impl KvmSource {
    /// The vCPU model the guest runs with (for a configuration manifest).
    #[must_use]
    pub fn cpu_model(&self) -> &vmstate_runtime::manifest::CpuModel {
        &self.sections.cpu_model
    }
}

impl MigrationSource for KvmSource {
    fn stop_vcpus(&mut self) {
        self.stopped_at = super::monotonic_ns();
        if let Err(e) = self.save_devices() {
            // `take_dirty`, called right after the stop, fails the migration with it.
            self.error.get_or_insert(e.to_string());
        }
    }
    fn resume_vcpus(&mut self) {
        self.run();
    }
    fn throttle(&mut self, percent: u8) {
        if let Vcpu::Running(t) = &self.vcpu {
            t.set_throttle(percent);
        }
    }
    fn take_dirty(&mut self) -> vmstate_migration::Result<Vec<Vec<u64>>> {
        if let Some(e) = self.error.take() {
            return Err(MigrationError::Memory(format!("stopping the vCPU: {e}")));
        }
        let kvm = self
            .dirty
            .take()
            .map_err(|e| MigrationError::Memory(e.to_string()))?;
        let mut blocks = self.sections.ram.take_dirty();
        if let Some(b) = blocks.first_mut() {
            for (x, y) in b.iter_mut().zip(kvm) {
                *x |= y;
            }
        }
        Ok(blocks)
    }
}

/// A check run on the loaded VM before its vCPU starts (see [`KvmDest::before_start`]).
pub type StartHook = Box<dyn FnMut(&Vm) + Send>;

/// A tinyvm being migrated into (see the module docs).
pub struct KvmDest {
    sections: Sections,
    vm: Option<Vm>,
    /// Called with the loaded VM after the acknowledgement, before its vCPU starts (checks).
    pub before_start: Option<StartHook>,
    /// How long `before_start` took (in the stop-to-run window, not part of the downtime).
    pub check_time: Duration,
    /// The running guest after `resume`, or the restore error.
    pub started: Option<Result<KvmSource, Error>>,
}

impl std::fmt::Debug for KvmDest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmDest")
            .field("vm", &self.vm)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl KvmDest {
    /// An empty VM waiting for a migration of the default workload.
    ///
    /// # Errors
    ///
    /// As [`Vm::new_empty`].
    pub fn new(machine: MachineType) -> Result<Self, Error> {
        Self::with_workload(machine, super::guest::Workload::default())
    }

    /// An empty VM waiting for a migration of a guest running `w` (its RAM size and dirty rate:
    /// the source's).
    ///
    /// # Errors
    ///
    /// As [`Vm::new_empty_with`].
    pub fn with_workload(machine: MachineType, w: super::guest::Workload) -> Result<Self, Error> {
        let vm = Vm::new_empty_with(w)?;
        let sections = Sections::new(&vm, machine)?;
        // Fault guest RAM in now, before the source connects, not page by page during the
        // migration.
        sections
            .ram
            .populate()
            .map_err(|e| Error::Memory(e.to_string()))?;
        Ok(KvmDest {
            sections,
            vm: Some(vm),
            before_start: None,
            check_time: Duration::ZERO,
            started: None,
        })
    }

    fn start(&mut self) -> Result<KvmSource, Error> {
        let mut vm = self
            .vm
            .take()
            .ok_or_else(|| Error::State("resumed twice".into()))?;
        let cpu = self
            .sections
            .cpu
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        vm.restore_cpu(&cpu)?;
        vm.serial = self
            .sections
            .serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = self.before_start.as_mut() {
            let t0 = Instant::now();
            hook(&vm);
            self.check_time = t0.elapsed();
        }
        KvmSource::start(vm, self.sections.machine.clone())
    }
}

impl_vm_parts!(KvmDest, sections);

impl KvmDest {
    /// The vCPU model this destination offers (for a configuration manifest).
    #[must_use]
    pub fn cpu_model(&self) -> &vmstate_runtime::manifest::CpuModel {
        &self.sections.cpu_model
    }

    /// Hides CPUID features from the destination's vCPU (a destination made to lack them).
    ///
    /// # Errors
    ///
    /// As [`Vm::hide_cpu_features`]; after the guest started.
    pub fn hide_cpu_features(&mut self, names: &[String]) -> Result<(), Error> {
        let vm = self
            .vm
            .as_mut()
            .ok_or_else(|| Error::State("the guest started already".into()))?;
        vm.hide_cpu_features(names)?;
        self.sections.cpu_model = vm.cpu_model();
        Ok(())
    }

    /// Gives this destination a second UART (`serial` instance 1, COM2) that the source does
    /// not have: a device mismatch for the preflight to find (`--mismatch device`).
    ///
    /// # Errors
    ///
    /// Registry errors.
    pub fn add_com2(&mut self) -> Result<(), Error> {
        self.sections
            .registry
            .register(Arc::new(Mutex::new(SerialSection::default())))
            .map(|_| ())
            .map_err(|e| Error::State(e.to_string()))
    }
}

impl MigrationDestination for KvmDest {
    fn resume(&mut self) {
        let started = self.start();
        self.started = Some(started);
    }
}

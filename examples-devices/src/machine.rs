//! A small PC-like machine of the example devices, assembled the way a VMM does it: devices
//! behind `Arc<Mutex<_>>`, registered in a [`Registry`] under QEMU's idstrs and instance ids
//! (with the ISA I/O bases as legacy alias ids), all on one virtual clock.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use vmstate_runtime::registry::{LoadReport, RegisterOptions, SaveReport};
use vmstate_runtime::{save_payload, MachineType, Registry, Result};

use crate::pit::I8254;
use crate::rtc::{reg, LostTickPolicy, Mc146818Rtc};
use crate::serial::{SerialBackend, SerialSection};
use crate::watchdog::{ctrl, DemoWatchdog, WatchdogConfig, KICK_MAGIC};

/// 2020-01-01T00:00:00Z, the RTC base time of the demo machine and the golden streams.
pub const RTC_BASE: i64 = 1_577_836_800;

/// I/O base of each device (the ISA legacy alias instance id of the UARTs, PIT and RTC).
pub mod io {
    /// COM1.
    pub const COM1: u16 = 0x3f8;
    /// COM2.
    pub const COM2: u16 = 0x2f8;
    /// PIT.
    pub const PIT: u16 = 0x40;
    /// RTC index/data.
    pub const RTC: u16 = 0x70;
    /// The demo watchdog.
    pub const WDT: u16 = 0x500;
}

/// The demo machine.
pub struct DemoMachine {
    machine: MachineType,
    /// COM1 (`serial` instance 0, alias 0x3f8).
    pub com1: Arc<Mutex<SerialSection>>,
    /// COM2 (`serial` instance 1, alias 0x2f8).
    pub com2: Arc<Mutex<SerialSection>>,
    /// The PIT (`i8254`, alias 0x40).
    pub pit: Arc<Mutex<I8254>>,
    /// The RTC (`mc146818rtc`, alias 0x70).
    pub rtc: Arc<Mutex<Mc146818Rtc>>,
    /// The demo watchdog (`demo-wdt`).
    pub wdt: Arc<Mutex<DemoWatchdog>>,
    registry: Registry,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DemoMachine {
    /// A machine of type `machine` with every device at reset.
    ///
    /// # Errors
    /// Registry errors (duplicate keys cannot happen here).
    pub fn new(machine: &MachineType) -> Result<Self> {
        let com1 = Arc::new(Mutex::new(SerialSection::new(SerialBackend::default())));
        let com2 = Arc::new(Mutex::new(SerialSection::new(SerialBackend::default())));
        let pit = Arc::new(Mutex::new(I8254::new()));
        let rtc = Arc::new(Mutex::new(Mc146818Rtc::new(
            RTC_BASE,
            LostTickPolicy::Discard,
        )));
        let wdt = Arc::new(Mutex::new(DemoWatchdog::new(WatchdogConfig::for_machine(
            machine, 2,
        ))));
        let mut registry = Registry::new();
        let isa = |id: u32, alias: u16| {
            RegisterOptions::new()
                .instance_id(id)
                .alias_id(u32::from(alias))
        };
        registry.register_with(rtc.clone(), isa(0, io::RTC))?;
        registry.register_with(pit.clone(), isa(0, io::PIT))?;
        registry.register_with(com1.clone(), isa(0, io::COM1))?;
        registry.register_with(com2.clone(), isa(1, io::COM2))?;
        registry.register_with(wdt.clone(), RegisterOptions::new().instance_id(0))?;
        Ok(DemoMachine {
            machine: machine.clone(),
            com1,
            com2,
            pit,
            rtc,
            wdt,
            registry,
        })
    }

    /// The machine type.
    #[must_use]
    pub fn machine(&self) -> &MachineType {
        &self.machine
    }

    /// The device registry.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A guest port write (byte) to the device that decodes `port`.
    pub fn outb(&self, port: u16, value: u8) {
        match port {
            0x3f8..=0x3ff => lock(&self.com1).state.io_write(port - io::COM1, value),
            0x2f8..=0x2ff => lock(&self.com2).state.io_write(port - io::COM2, value),
            0x40..=0x43 => lock(&self.pit).io_write(port - io::PIT, value),
            0x70..=0x71 => lock(&self.rtc).io_write(port - io::RTC, value),
            0x500..=0x51f => lock(&self.wdt).io_write(port - io::WDT, value),
            _ => {}
        }
    }

    /// A guest port read (byte).
    pub fn inb(&self, port: u16) -> u8 {
        match port {
            0x3f8..=0x3ff => lock(&self.com1).state.io_read(port - io::COM1),
            0x2f8..=0x2ff => lock(&self.com2).state.io_read(port - io::COM2),
            0x40..=0x43 => lock(&self.pit).io_read(port - io::PIT),
            0x70..=0x71 => lock(&self.rtc).io_read(port - io::RTC),
            0x500..=0x51f => lock(&self.wdt).io_read(port - io::WDT),
            _ => 0xff,
        }
    }

    /// Moves every device's virtual clock to `ns`, firing the timers it passes.
    pub fn advance_to(&self, ns: u64) {
        lock(&self.com1).state.advance_to(ns);
        lock(&self.com2).state.advance_to(ns);
        lock(&self.pit).advance_to(ns);
        lock(&self.rtc).advance_to(ns);
        lock(&self.wdt).advance_to(ns);
    }

    /// Sets every device's virtual clock without running timers (a destination before load:
    /// QEMU migrates the virtual clock in its `timer` section, before the devices).
    pub fn set_clock(&self, ns: u64) {
        lock(&self.com1).state.set_now_ns(ns);
        lock(&self.com2).state.set_now_ns(ns);
        lock(&self.pit).set_now_ns(ns);
        lock(&self.rtc).set_now_ns(ns);
        lock(&self.wdt).set_now_ns(ns);
    }

    /// Starts the devices after a successful load at the current clock: clock-dependent
    /// re-synchronisation (the RTC's periodic timer) happens here, never during the load.
    pub fn resume(&self) {
        let now = self.clock();
        lock(&self.rtc).resume(now);
    }

    /// The virtual clock (all devices share it).
    #[must_use]
    pub fn clock(&self) -> u64 {
        lock(&self.pit).now_ns()
    }

    /// Runs a small "guest program" of port writes that leaves every device in a non-trivial
    /// state: COM1 in loopback with data in its receive FIFO and the FIFO timeout armed, COM2
    /// at 115200 8E1 having transmitted a line, PIT channel 0 at 100 Hz and channel 2 latched,
    /// the RTC's periodic interrupt at 1024 Hz with CMOS RAM written, the watchdog running and
    /// kicked.
    pub fn run_guest_program(&self) {
        // COM1: 9600 8N1, FIFOs on (trigger 14), all interrupts, loopback.
        for (off, v) in [
            (3, 0x80),
            (0, 0x0c),
            (1, 0x00),
            (3, 0x03),
            (2, 0xc7),
            (1, 0x0f),
            (4, 0x1b),
        ] {
            self.outb(io::COM1 + off, v);
        }
        for b in b"vmstate" {
            self.outb(io::COM1, *b);
        }
        let _ = self.inb(io::COM1); // the guest takes one byte: 'v'
                                    // COM2: 115200 8E1, RX interrupt, scratch, a line out.
        for (off, v) in [
            (3, 0x80),
            (0, 0x01),
            (1, 0x00),
            (3, 0x1b),
            (1, 0x01),
            (7, 0xa5),
        ] {
            self.outb(io::COM2 + off, v);
        }
        for b in b"hello\r\n" {
            self.outb(io::COM2, *b);
        }
        // PIT: channel 0 mode 2 at 100 Hz, channel 2 square wave, latch channel 0.
        for (port, v) in [
            (0x43, 0x34),
            (0x40, 0x9c),
            (0x40, 0x2e),
            (0x43, 0xb6),
            (0x42, 0x33),
            (0x42, 0x05),
        ] {
            self.outb(port, v);
        }
        lock(&self.pit).set_gate(2, true);
        // RTC: 1024 Hz periodic interrupt, 24 h mode, some CMOS RAM.
        for (r, v) in [(reg::A, 0x26), (reg::B, 0x42)] {
            self.outb(io::RTC, r);
            self.outb(io::RTC + 1, v);
        }
        for i in 0x40..0x50u8 {
            self.outb(io::RTC, i);
            self.outb(io::RTC + 1, i ^ 0x5a);
        }
        // Watchdog: 250 ticks, interrupt on expiry, enable, kick.
        for (off, v) in [
            (0x04, 250),
            (0x05, 0),
            (0x01, 1),
            (0x00, ctrl::EN | ctrl::IRQ_EN),
        ] {
            self.outb(io::WDT + off, v);
        }
        self.advance_to(3_000_000);
        self.outb(io::PIT + 3, 0x00); // latch channel 0
        self.outb(io::WDT + 2, KICK_MAGIC);
        self.advance_to(5_000_000);
        self.outb(io::WDT + 2, KICK_MAGIC);
        self.advance_to(5_250_000);
    }

    /// Saves the whole machine into a stream.
    ///
    /// # Errors
    /// Save errors, naming the section.
    pub fn save(&self) -> Result<(Vec<u8>, SaveReport)> {
        self.registry.save_to_vec(&self.machine)
    }

    /// Loads a whole stream (all or nothing); on success the devices are resumed at the
    /// current clock.
    ///
    /// # Errors
    /// Any load error, with offset, section and field path; the devices are then unchanged.
    pub fn load(&self, stream: &[u8]) -> Result<LoadReport> {
        let r = self.registry.load(&self.machine, stream)?;
        self.resume();
        Ok(r)
    }

    /// Each device's section payload as this machine type would send it, in registry order
    /// (for comparing two machines' migrated state).
    ///
    /// # Errors
    /// Save errors.
    pub fn payloads(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let m = &self.machine;
        Ok(vec![
            ("mc146818rtc", save_payload(&*lock(&self.rtc), m)?.1),
            ("i8254", save_payload(&*lock(&self.pit), m)?.1),
            ("serial 0", save_payload(&*lock(&self.com1), m)?.1),
            ("serial 1", save_payload(&*lock(&self.com2), m)?.1),
            ("demo-wdt", save_payload(&*lock(&self.wdt), m)?.1),
        ])
    }

    /// A readable dump of the migrated register state, one device per block.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (name, dev) in [("COM1", &self.com1), ("COM2", &self.com2)] {
            let d = lock(dev);
            let u = &d.state;
            let _ = writeln!(
                s,
                "{name} serial: divider={:#06x} ier={:#04x} iir={:#04x} lcr={:#04x} mcr={:#04x} lsr={:#04x} msr={:#04x} scr={:#04x} fcr={:#04x}",
                u.divider, u.ier, u.iir, u.lcr, u.mcr, u.lsr, u.msr, u.scr, u.fcr()
            );
            let _ = writeln!(
                s,
                "     rx fifo={:?} tx fifo={:?} fifo timeout={:?}",
                String::from_utf8_lossy(&u.recv_fifo.contents()),
                String::from_utf8_lossy(&u.xmit_fifo.contents()),
                u.fifo_timeout_timer.expire_ns,
            );
        }
        {
            let p = lock(&self.pit);
            for (i, c) in p.channels.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "PIT ch{i}: count={:#x} mode={} rw_mode={} gate={} latched={} latched_count={:#06x}",
                    c.count, c.mode, c.rw_mode, c.gate, c.count_latched, c.latched_count
                );
            }
        }
        {
            let r = lock(&self.rtc);
            let _ = writeln!(
                s,
                "RTC: index={:#04x} regA={:#04x} regB={:#04x} period={} periodic timer={:?} cmos[0x40..0x44]={:02x?}",
                r.cmos_index,
                r.cmos_data[usize::from(reg::A)],
                r.cmos_data[usize::from(reg::B)],
                r.period,
                r.periodic_timer.expire_ns,
                &r.cmos_data[0x40..0x44]
            );
        }
        {
            let w = lock(&self.wdt);
            let _ = writeln!(
                s,
                "WDT: ctrl={:#04x} action={} reload={} counter={} kicks={} deadline={:?}",
                w.ctrl, w.action, w.reload, w.counter, w.kicks, w.deadline.expire_ns
            );
        }
        s
    }
}

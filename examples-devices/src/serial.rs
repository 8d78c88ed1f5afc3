//! 16550A UART, migrated exactly like QEMU 7.2's `isa-serial` (section `serial`, v3, min 2).
//!
//! # Wire layout
//!
//! QEMU wraps the UART state in an outer vmsd `serial` whose only field, `state`, is a nested
//! struct of the inner vmsd (also called `serial`). The nested struct is saved at its own
//! version (3) whatever the section header says, so the inner fields carry no per-field
//! versions here (QEMU's `_V(2)`/`_V(3)` markers are inert inside a nested struct):
//!
//! | bytes | field | register |
//! |---|---|---|
//! | 2 | `divider` | DLL/DLM divisor latch |
//! | 1 × 8 | `rbr ier iir lcr mcr lsr msr scr` | receive buffer … scratch |
//! | 1 | `fcr_vmstate` | FIFO control (copied from FCR by `pre_save`) |
//!
//! followed by up to seven subsections of the inner vmsd, in this order, each `v1`:
//! `serial/thr_ipending`, `serial/tsr`, `serial/recv_fifo`, `serial/xmit_fifo`,
//! `serial/fifo_timeout_timer`, `serial/timeout_ipending`, `serial/poll`.
//!
//! # Behaviour
//!
//! [`Serial16550`] is a working 16550A: [`io_write`](Serial16550::io_write) /
//! [`io_read`](Serial16550::io_read) take the register offset (0–7 from the I/O base),
//! [`receive`](Serial16550::receive) feeds bytes from the host, and bytes the guest transmits
//! collect in [`tx_output`](Serial16550::tx_output). Time is a virtual clock in nanoseconds
//! advanced with [`advance_to`](Serial16550::advance_to); the two UART timers (FIFO character
//! timeout and modem-status poll) are plain [`Timer`] values that fire when the clock passes them.
//!
//! ```
//! use examples_devices::serial::{Serial16550, SerialBackend, lsr};
//! let mut uart = Serial16550::new(SerialBackend::default());
//! uart.io_write(3, 0x03); // 8N1
//! uart.io_write(0, b'A'); // THR
//! assert_eq!(uart.tx_output(), b"A");
//! assert_ne!(uart.io_read(5) & lsr::TEMT, 0);
//! ```

use std::convert::Infallible;

use vmstate_runtime::{Timer, VmState};

use crate::clock::{clock_accessors, NS_PER_SEC};

/// Capacity of the receive and transmit FIFOs (`UART_FIFO_LENGTH`).
pub const FIFO_LEN: usize = 16;
/// [`FIFO_LEN`] as the `u32` the FIFO indices are migrated as.
const FIFO_LEN_U32: u32 = 16;
/// Clock of the baud-rate generator: divisor 1 gives 115200 baud.
pub const BAUD_BASE: u32 = 115_200;
/// How often a stuck transmit is retried before the byte is dropped (QEMU's `MAX_XMIT_RETRY`);
/// also the clamp applied to `tsr_retry` on load.
pub const MAX_XMIT_RETRY: u32 = 4;

/// Interrupt Enable Register bits (offset 1, DLAB = 0).
pub mod ier {
    /// Received data available.
    pub const RDI: u8 = 0x01;
    /// Transmitter holding register empty.
    pub const THRI: u8 = 0x02;
    /// Receiver line status.
    pub const RLSI: u8 = 0x04;
    /// Modem status.
    pub const MSI: u8 = 0x08;
}

/// Interrupt Identification Register values (offset 2, read).
pub mod iir {
    /// No interrupt pending.
    pub const NO_INT: u8 = 0x01;
    /// Mask of the interrupt id bits 1–2.
    pub const ID: u8 = 0x06;
    /// Modem status change.
    pub const MSI: u8 = 0x00;
    /// Transmitter holding register empty.
    pub const THRI: u8 = 0x02;
    /// Received data available (FIFO at or above the trigger level).
    pub const RDI: u8 = 0x04;
    /// Receiver line status.
    pub const RLSI: u8 = 0x06;
    /// Character timeout (FIFO mode).
    pub const CTI: u8 = 0x0c;
    /// FIFOs enabled (both bits).
    pub const FE: u8 = 0xc0;
}

/// FIFO Control Register bits (offset 2, write).
pub mod fcr {
    /// FIFO enable.
    pub const FE: u8 = 0x01;
    /// Receive FIFO reset (self-clearing).
    pub const RFR: u8 = 0x02;
    /// Transmit FIFO reset (self-clearing).
    pub const XFR: u8 = 0x04;
    /// DMA mode select.
    pub const DMS: u8 = 0x08;
    /// Receiver trigger level mask (1, 4, 8 or 14 bytes).
    pub const ITL_MASK: u8 = 0xc0;
    /// Bits that stick in the register (the reset bits clear themselves).
    pub const STICKY: u8 = 0xc9;
}

/// Line Control Register bits (offset 3).
pub mod lcr {
    /// Word length mask (5 + value data bits).
    pub const WLS: u8 = 0x03;
    /// Two stop bits.
    pub const STB: u8 = 0x04;
    /// Parity enable.
    pub const PEN: u8 = 0x08;
    /// Even parity.
    pub const EPS: u8 = 0x10;
    /// Break control.
    pub const SBC: u8 = 0x40;
    /// Divisor latch access.
    pub const DLAB: u8 = 0x80;
}

/// Modem Control Register bits (offset 4).
pub mod mcr {
    /// Data terminal ready.
    pub const DTR: u8 = 0x01;
    /// Request to send.
    pub const RTS: u8 = 0x02;
    /// Output 1.
    pub const OUT1: u8 = 0x04;
    /// Output 2 (gates the interrupt line on PCs).
    pub const OUT2: u8 = 0x08;
    /// Loopback: the transmitter feeds the receiver, modem outputs feed the modem inputs.
    pub const LOOP: u8 = 0x10;
}

/// Line Status Register bits (offset 5).
pub mod lsr {
    /// Data ready.
    pub const DR: u8 = 0x01;
    /// Overrun error.
    pub const OE: u8 = 0x02;
    /// Parity error.
    pub const PE: u8 = 0x04;
    /// Framing error.
    pub const FE: u8 = 0x08;
    /// Break interrupt.
    pub const BI: u8 = 0x10;
    /// Transmitter holding register empty.
    pub const THRE: u8 = 0x20;
    /// Transmitter empty (holding and shift register).
    pub const TEMT: u8 = 0x40;
    /// Any line status condition that raises the RLSI interrupt.
    pub const INT_ANY: u8 = 0x1e;
}

/// Modem Status Register bits (offset 6).
pub mod msr {
    /// Delta clear to send.
    pub const DCTS: u8 = 0x01;
    /// Delta data set ready.
    pub const DDSR: u8 = 0x02;
    /// Trailing edge of ring indicator.
    pub const TERI: u8 = 0x04;
    /// Delta data carrier detect.
    pub const DDCD: u8 = 0x08;
    /// Clear to send.
    pub const CTS: u8 = 0x10;
    /// Data set ready.
    pub const DSR: u8 = 0x20;
    /// Ring indicator.
    pub const RI: u8 = 0x40;
    /// Data carrier detect.
    pub const DCD: u8 = 0x80;
    /// Any delta bit.
    pub const ANY_DELTA: u8 = 0x0f;
}

/// QEMU's `Fifo8` as the UART uses it: a 16-byte ring buffer (vmsd `Fifo8`, v1).
///
/// On the wire: the buffer (`data`, including bytes outside the live window), as many bytes as
/// the FIFO's capacity, then `head` and `num` as be32. The capacity is configuration QEMU does
/// not send (`Fifo8.capacity`, 16 for the UART): `data` is counted by it as a local count, as
/// QEMU's VBUFFER is, and both indices are checked against it before they are used
/// (hostile-input class A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, VmState)]
#[vmstate(name = "Fifo8", version = 1, minimum_version = 1, nested)]
pub struct Fifo8 {
    /// The ring buffer storage (`Fifo8.data`, a VBUFFER whose length is the capacity).
    #[vmstate(buffer, local_count = capacity, max = 16, since = 1)]
    pub data: [u8; FIFO_LEN],
    /// Index of the oldest byte (`Fifo8.head`); below the capacity.
    #[vmstate(range = 0..16)]
    pub head: u32,
    /// Number of bytes held (`Fifo8.num`); at most the capacity.
    #[vmstate(range = 0..=16)]
    pub num: u32,
    /// The capacity (`Fifo8.capacity`): the destination's own, never sent.
    #[vmstate(skip)]
    pub capacity: u32,
}

impl Default for Fifo8 {
    fn default() -> Self {
        Fifo8 {
            data: [0; FIFO_LEN],
            head: 0,
            num: 0,
            capacity: FIFO_LEN_U32,
        }
    }
}

impl Fifo8 {
    /// Whether the FIFO holds no byte.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.num == 0
    }

    /// Whether the FIFO is full.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.num >= FIFO_LEN_U32
    }

    /// Number of bytes held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.num.min(FIFO_LEN_U32) as usize
    }

    /// Appends a byte; returns `false` (and drops it) when full.
    pub fn push(&mut self, b: u8) -> bool {
        if self.is_full() {
            return false;
        }
        let idx = (self.head as usize + self.num as usize) % FIFO_LEN;
        self.data[idx] = b;
        self.num += 1;
        true
    }

    /// Removes the oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.num == 0 {
            return None;
        }
        let idx = self.head as usize % FIFO_LEN;
        let b = self.data[idx];
        self.head = ((idx + 1) % FIFO_LEN) as u32;
        self.num -= 1;
        Some(b)
    }

    /// Empties the FIFO (the buffer bytes stay, as in QEMU, and are still migrated).
    pub fn reset(&mut self) {
        self.head = 0;
        self.num = 0;
    }

    /// The bytes held, oldest first.
    #[must_use]
    pub fn contents(&self) -> Vec<u8> {
        (0..self.len())
            .map(|i| self.data[(self.head as usize + i) % FIFO_LEN])
            .collect()
    }
}

/// What the host side of the UART (the character backend) can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SerialBackend {
    /// The backend reports modem-control lines (a tty or pty, QEMU's `-chardev serial`).
    /// Without it the UART never polls them (`poll_msl` = -1) and MSR keeps its reset value.
    pub modem_control: bool,
    /// Modem input lines the backend reports, in MSR bit positions
    /// ([`msr::CTS`], [`msr::DSR`], [`msr::RI`], [`msr::DCD`]).
    pub modem_lines: u8,
}

/// The 16550A register file and FIFOs: QEMU's inner `serial` vmsd (v3, min 2, nested).
///
/// Migrated fields are public so a VMM or a test can inspect them; change them through
/// [`io_write`](Self::io_write) to get the guest-visible semantics.
#[derive(Debug, Clone, PartialEq, VmState)]
#[vmstate(
    name = "serial",
    version = 3,
    minimum_version = 2,
    nested,
    pre_save = Self::pre_save,
    post_load = Self::post_load,
    subsection(name = "serial/thr_ipending", version = 1, minimum_version = 1,
               when = pred(Self::thr_ipending_needed)),
    subsection(name = "serial/tsr", version = 1, minimum_version = 1,
               when = pred(Self::tsr_needed)),
    subsection(name = "serial/recv_fifo", version = 1, minimum_version = 1,
               when = pred(Self::recv_fifo_needed)),
    subsection(name = "serial/xmit_fifo", version = 1, minimum_version = 1,
               when = pred(Self::xmit_fifo_needed)),
    subsection(name = "serial/fifo_timeout_timer", version = 1, minimum_version = 1,
               when = pred(Self::fifo_timeout_timer_needed)),
    subsection(name = "serial/timeout_ipending", version = 1, minimum_version = 1,
               when = pred(Self::timeout_ipending_needed)),
    subsection(name = "serial/poll", version = 1, minimum_version = 1,
               when = pred(Self::poll_needed))
)]
pub struct Serial16550 {
    /// Divisor latch DLM:DLL (offsets 0/1 with LCR.DLAB = 1); baud = 115200 / divider.
    #[vmstate(since = 2)]
    pub divider: u16,
    /// Receive Buffer Register (offset 0 read, non-FIFO mode).
    pub rbr: u8,
    /// Interrupt Enable Register (offset 1), low four bits.
    pub ier: u8,
    /// Interrupt Identification Register (offset 2 read): pending interrupt id + FIFO bits.
    pub iir: u8,
    /// Line Control Register (offset 3): word length, stop bits, parity, break, DLAB.
    pub lcr: u8,
    /// Modem Control Register (offset 4), low five bits (DTR, RTS, OUT1, OUT2, LOOP).
    pub mcr: u8,
    /// Line Status Register (offset 5): DR, OE, PE, FE, BI, THRE, TEMT.
    pub lsr: u8,
    /// Modem Status Register (offset 6): CTS, DSR, RI, DCD and their delta bits.
    pub msr: u8,
    /// Scratch Register (offset 7).
    pub scr: u8,
    /// FIFO Control Register (offset 2 write) as migrated: `pre_save` copies the live FCR here,
    /// `post_load` writes it back through the FCR setter. QEMU's field version 3: the nested
    /// struct is always loaded at its own version 3 (absent only when a parent held it at 2).
    #[vmstate(since = 3, default)]
    pub fcr_vmstate: u8,

    /// THR-empty interrupt pending (`serial/thr_ipending`); -1 when the subsection was absent,
    /// which `post_load` replaces by the value implied by IIR.
    #[vmstate(subsection = "serial/thr_ipending", default = -1, range = -1..=1)]
    pub thr_ipending: i32,
    /// Transmit attempts of the byte in the shift register that the backend refused
    /// (`serial/tsr`); 0 when the transmitter is idle.
    #[vmstate(subsection = "serial/tsr", default)]
    pub tsr_retry: u32,
    /// Transmitter Holding Register (offset 0 write): the last byte the guest wrote.
    #[vmstate(subsection = "serial/tsr", default)]
    pub thr: u8,
    /// Transmit Shift Register: the byte being sent.
    #[vmstate(subsection = "serial/tsr", default)]
    pub tsr: u8,
    /// Receive FIFO (`serial/recv_fifo`), used when FCR.FE is set.
    #[vmstate(subsection = "serial/recv_fifo", since = 1, default)]
    pub recv_fifo: Fifo8,
    /// Transmit FIFO (`serial/xmit_fifo`), used when FCR.FE is set.
    #[vmstate(subsection = "serial/xmit_fifo", since = 1, default)]
    pub xmit_fifo: Fifo8,
    /// Character-timeout timer: four character times after the last receive-FIFO activity.
    #[vmstate(subsection = "serial/fifo_timeout_timer", default)]
    pub fifo_timeout_timer: Timer,
    /// Character-timeout interrupt pending (IIR = CTI).
    #[vmstate(subsection = "serial/timeout_ipending", default, range = 0..=1)]
    pub timeout_ipending: i32,
    /// Modem-line polling: -1 backend cannot report lines, 0 not polling, 1 polling (IER.MSI).
    /// -1 when `serial/poll` was absent.
    #[vmstate(subsection = "serial/poll", default = -1, range = -1..=1)]
    pub poll_msl: i32,
    /// Next poll of the backend's modem lines.
    #[vmstate(subsection = "serial/poll", default)]
    pub modem_status_poll: Timer,

    /// Live FIFO Control Register (sticky bits only).
    #[vmstate(skip)]
    fcr: u8,
    /// Receive trigger level in bytes (1, 4, 8, 14), from FCR.
    #[vmstate(skip)]
    recv_fifo_itl: u8,
    /// Time to send one character at the current line settings, in ns.
    #[vmstate(skip)]
    char_transmit_time: u64,
    /// LCR.SBC as last passed to the backend.
    #[vmstate(skip)]
    last_break_enable: bool,
    /// The virtual clock, ns.
    #[vmstate(skip)]
    now_ns: u64,
    /// Host side.
    #[vmstate(skip)]
    backend: SerialBackend,
    /// The backend refuses writes (e.g. a pty whose output is stopped).
    #[vmstate(skip)]
    tx_blocked: bool,
    /// Bytes the backend accepted from the transmitter.
    #[vmstate(skip)]
    tx_output: Vec<u8>,
}

impl Default for Serial16550 {
    fn default() -> Self {
        Serial16550::new(SerialBackend::default())
    }
}

impl Serial16550 {
    /// A UART after power-on reset, attached to `backend`, with the clock at 0.
    #[must_use]
    pub fn new(backend: SerialBackend) -> Self {
        let mut s = Serial16550 {
            divider: 0,
            rbr: 0,
            ier: 0,
            iir: 0,
            lcr: 0,
            mcr: 0,
            lsr: 0,
            msr: 0,
            scr: 0,
            fcr_vmstate: 0,
            thr_ipending: 0,
            tsr_retry: 0,
            thr: 0,
            tsr: 0,
            recv_fifo: Fifo8::default(),
            xmit_fifo: Fifo8::default(),
            fifo_timeout_timer: Timer::disarmed(),
            timeout_ipending: 0,
            poll_msl: 0,
            modem_status_poll: Timer::disarmed(),
            fcr: 0,
            recv_fifo_itl: 1,
            char_transmit_time: 0,
            last_break_enable: false,
            now_ns: 0,
            backend,
            tx_blocked: false,
            tx_output: Vec::new(),
        };
        s.reset();
        s
    }

    /// Device reset: 9600 8N1, OUT2 set, FIFOs off and empty, timers stopped.
    pub fn reset(&mut self) {
        self.rbr = 0;
        self.ier = 0;
        self.iir = iir::NO_INT;
        self.lcr = 0;
        self.lsr = lsr::TEMT | lsr::THRE;
        self.msr = msr::DCD | msr::DSR | msr::CTS;
        self.divider = 0x0c;
        self.mcr = mcr::OUT2;
        self.scr = 0;
        self.tsr_retry = 0;
        // Integer arithmetic here (the float computation only runs on register writes).
        self.char_transmit_time = (NS_PER_SEC / 9600) * 10;
        self.poll_msl = 0;
        self.timeout_ipending = 0;
        self.fifo_timeout_timer = Timer::disarmed();
        self.modem_status_poll = Timer::disarmed();
        self.recv_fifo.reset();
        self.xmit_fifo.reset();
        self.thr_ipending = 0;
        self.last_break_enable = false;
        self.update_msl();
        self.msr &= !msr::ANY_DELTA;
    }

    /// The backend this UART is attached to.
    #[must_use]
    pub fn backend(&self) -> SerialBackend {
        self.backend
    }

    /// The live FIFO Control Register (sticky bits).
    #[must_use]
    pub fn fcr(&self) -> u8 {
        self.fcr
    }

    /// The receive FIFO trigger level in bytes.
    #[must_use]
    pub fn rx_trigger_level(&self) -> u8 {
        self.recv_fifo_itl
    }

    /// Time to send one character at the current line settings, in ns.
    #[must_use]
    pub fn char_transmit_time_ns(&self) -> u64 {
        self.char_transmit_time
    }

    /// Whether the break condition (LCR.SBC) is being signalled to the backend.
    #[must_use]
    pub fn break_enabled(&self) -> bool {
        self.last_break_enable
    }

    /// The interrupt output: high while IIR reports a pending interrupt.
    #[must_use]
    pub fn irq_level(&self) -> bool {
        self.iir & iir::NO_INT == 0
    }

    clock_accessors! {
        /// The virtual clock, ns.
        now_ns;
        /// Sets the virtual clock without running timers (a destination whose clock was restored
        /// from the stream before this device loads).
        set_now_ns;
    }

    /// Bytes the backend accepted from the transmitter so far.
    #[must_use]
    pub fn tx_output(&self) -> &[u8] {
        &self.tx_output
    }

    /// Takes the transmitted bytes.
    pub fn take_tx_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tx_output)
    }

    /// Makes the backend refuse (`true`) or accept (`false`) writes. When it becomes writable
    /// again a byte stuck in the shift register is sent, and the FIFO drains.
    pub fn set_tx_blocked(&mut self, blocked: bool) {
        self.tx_blocked = blocked;
        if !blocked && self.tsr_retry > 0 {
            self.xmit();
        }
    }

    /// Changes the modem input lines the backend reports (MSR bit positions). The UART sees
    /// them at its next poll or MSR read, as with a real tty.
    pub fn set_modem_lines(&mut self, lines: u8) {
        self.backend.modem_lines = lines & 0xf0;
    }

    /// Advances the virtual clock to `now_ns` (never backwards), firing the timers that expire
    /// on the way in deadline order, and retrying a stuck transmit if the backend is writable.
    pub fn advance_to(&mut self, now_ns: u64) {
        let target = now_ns.max(self.now_ns);
        // Each firing either disarms its timer or re-arms it strictly later, so this ends; the
        // bound only guards against a pathological loaded state.
        for _ in 0..1_000_000 {
            let fifo = self.fifo_timeout_timer.expire_ns.filter(|&t| t <= target);
            let poll = self.modem_status_poll.expire_ns.filter(|&t| t <= target);
            match (fifo, poll) {
                (Some(f), p) if p.is_none_or(|p| f <= p) => {
                    self.now_ns = self.now_ns.max(f);
                    self.fifo_timeout_timer = Timer::disarmed();
                    self.fifo_timeout_int();
                }
                (_, Some(p)) => {
                    self.now_ns = self.now_ns.max(p);
                    self.modem_status_poll = Timer::disarmed();
                    self.update_msl();
                }
                _ => break,
            }
        }
        self.now_ns = target;
        if self.tsr_retry > 0 && !self.tx_blocked {
            self.xmit();
        }
    }

    /// How many bytes the UART takes from the host right now (QEMU's `can_receive`): up to the
    /// trigger level in FIFO mode (one at a time above it), one when RBR is empty otherwise.
    #[must_use]
    pub fn can_receive(&self) -> usize {
        if self.fcr & fcr::FE != 0 {
            if self.recv_fifo.is_full() {
                0
            } else if self.recv_fifo.len() <= usize::from(self.recv_fifo_itl) {
                usize::from(self.recv_fifo_itl) - self.recv_fifo.len()
            } else {
                1
            }
        } else {
            usize::from(self.lsr & lsr::DR == 0)
        }
    }

    /// Delivers bytes from the host, as a character backend does: in chunks of at most
    /// [`can_receive`](Self::can_receive) bytes. Returns how many were taken.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let mut done = 0;
        while done < bytes.len() {
            let n = self.can_receive().min(bytes.len() - done);
            if n == 0 {
                break;
            }
            self.receive1(&bytes[done..done + n]);
            done += n;
        }
        done
    }

    /// A guest read of the register at `offset` (0–7) from the I/O base.
    pub fn io_read(&mut self, offset: u16) -> u8 {
        match offset & 7 {
            0 if self.lcr & lcr::DLAB != 0 => self.divider.to_le_bytes()[0],
            0 => {
                let ret;
                if self.fcr & fcr::FE != 0 {
                    ret = self.recv_fifo.pop().unwrap_or(0);
                    if self.recv_fifo.is_empty() {
                        self.lsr &= !(lsr::DR | lsr::BI);
                    } else {
                        self.arm_fifo_timeout();
                    }
                    self.timeout_ipending = 0;
                } else {
                    ret = self.rbr;
                    self.lsr &= !(lsr::DR | lsr::BI);
                }
                self.update_irq();
                ret
            }
            1 if self.lcr & lcr::DLAB != 0 => self.divider.to_le_bytes()[1],
            1 => self.ier,
            2 => {
                let ret = self.iir;
                if ret & iir::ID == iir::THRI {
                    self.thr_ipending = 0;
                    self.update_irq();
                }
                ret
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                let ret = self.lsr;
                if self.lsr & (lsr::BI | lsr::OE) != 0 {
                    self.lsr &= !(lsr::BI | lsr::OE);
                    self.update_irq();
                }
                ret
            }
            6 => {
                if self.mcr & mcr::LOOP != 0 {
                    // Loopback: OUT2 → DCD, OUT1 → RI, RTS → CTS, DTR → DSR.
                    ((self.mcr & (mcr::OUT1 | mcr::OUT2)) << 4)
                        | ((self.mcr & mcr::RTS) << 3)
                        | ((self.mcr & mcr::DTR) << 5)
                } else {
                    if self.poll_msl >= 0 {
                        self.update_msl();
                    }
                    let ret = self.msr;
                    if self.msr & msr::ANY_DELTA != 0 {
                        self.msr &= 0xf0;
                        self.update_irq();
                    }
                    ret
                }
            }
            _ => self.scr,
        }
    }

    /// A guest write of `value` to the register at `offset` (0–7) from the I/O base.
    pub fn io_write(&mut self, offset: u16, value: u8) {
        match offset & 7 {
            0 if self.lcr & lcr::DLAB != 0 => {
                self.divider = (self.divider & 0xff00) | u16::from(value);
                self.update_parameters();
            }
            0 => self.write_thr(value),
            1 if self.lcr & lcr::DLAB != 0 => {
                self.divider = (self.divider & 0x00ff) | (u16::from(value) << 8);
                self.update_parameters();
            }
            1 => self.write_ier(value),
            2 => self.write_fcr_register(value),
            3 => {
                self.lcr = value;
                self.update_parameters();
                self.last_break_enable = value & lcr::SBC != 0;
            }
            4 => {
                let old = self.mcr;
                self.mcr = value & 0x1f;
                if value & mcr::LOOP == 0 && self.poll_msl >= 0 && old != self.mcr {
                    // The new output lines go to the backend; look at the inputs again one
                    // character time later, when the other end may have answered.
                    self.modem_status_poll =
                        Timer::armed(self.now_ns.saturating_add(self.char_transmit_time));
                }
            }
            7 => self.scr = value,
            _ => {} // LSR and MSR are read-only
        }
    }

    fn write_thr(&mut self, value: u8) {
        self.thr = value;
        if self.fcr & fcr::FE != 0 {
            // A transmit overrun overwrites the oldest byte.
            if self.xmit_fifo.is_full() {
                self.xmit_fifo.pop();
            }
            self.xmit_fifo.push(value);
        }
        self.thr_ipending = 0;
        self.lsr &= !(lsr::THRE | lsr::TEMT);
        self.update_irq();
        if self.tsr_retry == 0 {
            self.xmit();
        }
    }

    fn write_ier(&mut self, value: u8) {
        let changed = (self.ier ^ value) & 0x0f;
        self.ier = value & 0x0f;
        if changed & ier::MSI != 0 && self.poll_msl >= 0 {
            if self.ier & ier::MSI != 0 {
                self.poll_msl = 1;
                self.update_msl();
            } else {
                self.modem_status_poll = Timer::disarmed();
                self.poll_msl = 0;
            }
        }
        // Enabling THRI while THR is empty raises the interrupt again, even if it was
        // acknowledged by an IIR read (Windows relies on it).
        if changed & ier::THRI != 0 {
            self.thr_ipending = i32::from(self.ier & ier::THRI != 0 && self.lsr & lsr::THRE != 0);
        }
        if changed != 0 {
            self.update_irq();
        }
    }

    fn write_fcr_register(&mut self, value: u8) {
        let mut val = value;
        // Toggling the enable bit flushes both FIFOs.
        if (val ^ self.fcr) & fcr::FE != 0 {
            val |= fcr::XFR | fcr::RFR;
        }
        if val & fcr::RFR != 0 {
            self.lsr &= !(lsr::DR | lsr::BI);
            self.fifo_timeout_timer = Timer::disarmed();
            self.timeout_ipending = 0;
            self.recv_fifo.reset();
        }
        if val & fcr::XFR != 0 {
            self.lsr |= lsr::THRE;
            self.thr_ipending = 1;
            self.xmit_fifo.reset();
        }
        self.write_fcr(val & fcr::STICKY);
        self.update_irq();
    }

    /// Sets FCR and what follows from it (IIR FIFO bits, trigger level).
    fn write_fcr(&mut self, val: u8) {
        self.fcr = val;
        if val & fcr::FE != 0 {
            self.iir |= iir::FE;
            self.recv_fifo_itl = match val & fcr::ITL_MASK {
                0x00 => 1,
                0x40 => 4,
                0x80 => 8,
                _ => 14,
            };
        } else {
            self.iir &= !iir::FE;
        }
    }

    /// Recomputes the character time from LCR and the divisor.
    fn update_parameters(&mut self) {
        let mut frame_size: u32 = 1; // start bit
        if self.lcr & lcr::PEN != 0 {
            frame_size += 1;
        }
        let stop_bits = if self.lcr & lcr::STB != 0 { 2 } else { 1 };
        let data_bits = u32::from(self.lcr & lcr::WLS) + 5;
        frame_size += data_bits + stop_bits;
        // Single-precision, as the reference model computes it; a zero divisor gives ~3500 baud.
        #[allow(clippy::cast_precision_loss)]
        let speed: f32 = if self.divider == 0 {
            3500.0
        } else {
            BAUD_BASE as f32 / f32::from(self.divider)
        };
        #[allow(clippy::cast_precision_loss)]
        let t = (NS_PER_SEC as f32 / speed) * frame_size as f32;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        {
            self.char_transmit_time = t as u64;
        }
    }

    /// Recomputes IIR from the interrupt sources, by priority: line status, character
    /// timeout, received data, THR empty, modem status.
    fn update_irq(&mut self) {
        let id = if self.ier & ier::RLSI != 0 && self.lsr & lsr::INT_ANY != 0 {
            iir::RLSI
        } else if self.ier & ier::RDI != 0 && self.timeout_ipending != 0 {
            iir::CTI
        } else if self.ier & ier::RDI != 0
            && self.lsr & lsr::DR != 0
            && (self.fcr & fcr::FE == 0 || self.recv_fifo.len() >= usize::from(self.recv_fifo_itl))
        {
            iir::RDI
        } else if self.ier & ier::THRI != 0 && self.thr_ipending != 0 {
            iir::THRI
        } else if self.ier & ier::MSI != 0 && self.msr & msr::ANY_DELTA != 0 {
            iir::MSI
        } else {
            iir::NO_INT
        };
        self.iir = id | (self.iir & 0xf0);
    }

    /// Polls the backend's modem lines into MSR (setting delta bits) and re-arms the poll.
    fn update_msl(&mut self) {
        self.modem_status_poll = Timer::disarmed();
        if !self.backend.modem_control {
            self.poll_msl = -1;
            return;
        }
        let omsr = self.msr;
        self.msr = (self.msr & 0x0f) | (self.backend.modem_lines & 0xf0);
        if self.msr != omsr {
            self.msr |= (self.msr >> 4) ^ (omsr >> 4);
            // TERI only on a 1 → 0 transition of RI.
            if self.msr & msr::TERI != 0 && omsr & msr::RI == 0 {
                self.msr &= !msr::TERI;
            }
            self.update_irq();
        }
        if self.poll_msl != 0 {
            self.modem_status_poll = Timer::armed(self.now_ns.saturating_add(NS_PER_SEC / 100));
        }
    }

    fn arm_fifo_timeout(&mut self) {
        self.fifo_timeout_timer = Timer::armed(
            self.now_ns
                .saturating_add(self.char_transmit_time.saturating_mul(4)),
        );
    }

    fn fifo_timeout_int(&mut self) {
        if !self.recv_fifo.is_empty() {
            self.timeout_ipending = 1;
            self.update_irq();
        }
    }

    /// One chunk of received bytes (from the host, or the transmitter in loopback).
    fn receive1(&mut self, buf: &[u8]) {
        if self.fcr & fcr::FE != 0 {
            for &b in buf {
                // A receive overrun keeps the FIFO contents and drops the new byte.
                if !self.recv_fifo.push(b) {
                    self.lsr |= lsr::OE;
                }
            }
            self.lsr |= lsr::DR;
            self.arm_fifo_timeout();
        } else {
            if self.lsr & lsr::DR != 0 {
                self.lsr |= lsr::OE;
            }
            if let Some(&b) = buf.last() {
                self.rbr = b;
            }
            self.lsr |= lsr::DR;
        }
        self.update_irq();
    }

    /// Moves bytes from THR / the transmit FIFO through the shift register to the backend (or
    /// back into the receiver in loopback) until THR is empty or the backend refuses a byte.
    fn xmit(&mut self) {
        loop {
            if self.tsr_retry == 0 {
                if self.fcr & fcr::FE != 0 {
                    match self.xmit_fifo.pop() {
                        Some(b) => self.tsr = b,
                        None => {
                            // Nothing to send although THR was not empty (only reachable from
                            // an odd loaded state): settle as "transmitter empty".
                            self.lsr |= lsr::THRE | lsr::TEMT;
                            return;
                        }
                    }
                    if self.xmit_fifo.is_empty() {
                        self.lsr |= lsr::THRE;
                    }
                } else {
                    self.tsr = self.thr;
                    self.lsr |= lsr::THRE;
                }
                if self.lsr & lsr::THRE != 0 && self.thr_ipending == 0 {
                    self.thr_ipending = 1;
                    self.update_irq();
                }
            }
            if self.mcr & mcr::LOOP != 0 {
                let b = self.tsr;
                self.receive1(&[b]);
            } else if !self.tx_blocked {
                self.tx_output.push(self.tsr);
            } else if self.tsr_retry < MAX_XMIT_RETRY {
                // Wait for the backend to become writable.
                self.tsr_retry += 1;
                return;
            }
            // (blocked and out of retries: the byte is dropped)
            self.tsr_retry = 0;
            if self.lsr & lsr::THRE != 0 {
                break;
            }
        }
        self.lsr |= lsr::TEMT;
    }

    // ---- migration hooks and subsection gates ----

    fn pre_save(&mut self) -> Result<(), Infallible> {
        self.fcr_vmstate = self.fcr;
        Ok(())
    }

    fn post_load(&mut self, version: u32) -> Result<(), String> {
        if version < 3 {
            self.fcr_vmstate = 0;
        }
        if self.thr_ipending == -1 {
            self.thr_ipending = i32::from(self.iir & iir::ID == iir::THRI);
        }
        if self.tsr_retry > 0 {
            if self.lsr & lsr::TEMT != 0 {
                return Err(format!(
                    "inconsistent UART state: tsr_retry = {} (a byte waits in the transmit shift register) but LSR.TEMT is set (transmitter empty)",
                    self.tsr_retry
                ));
            }
            self.tsr_retry = self.tsr_retry.min(MAX_XMIT_RETRY);
        } else if self.lsr & lsr::TEMT == 0 {
            return Err(
                "inconsistent UART state: tsr_retry = 0 (nothing waits to be sent) but LSR.TEMT is clear (transmitter busy)"
                    .to_owned(),
            );
        }
        self.last_break_enable = self.lcr & lcr::SBC != 0;
        self.write_fcr(self.fcr_vmstate);
        self.update_parameters();
        Ok(())
    }

    fn thr_ipending_needed(&self) -> bool {
        // With THRI masked, THRE is sampled again when it is enabled: nothing to migrate.
        self.ier & ier::THRI != 0 && self.thr_ipending != i32::from(self.iir & iir::ID == iir::THRI)
    }

    fn tsr_needed(&self) -> bool {
        self.tsr_retry != 0
    }

    fn recv_fifo_needed(&self) -> bool {
        !self.recv_fifo.is_empty()
    }

    fn xmit_fifo_needed(&self) -> bool {
        !self.xmit_fifo.is_empty()
    }

    fn fifo_timeout_timer_needed(&self) -> bool {
        self.fifo_timeout_timer.is_armed()
    }

    fn timeout_ipending_needed(&self) -> bool {
        self.timeout_ipending != 0
    }

    fn poll_needed(&self) -> bool {
        self.poll_msl >= 0
    }
}

/// The `serial` section as QEMU's ISA serial registers it: an outer vmsd `serial` (v3, min 2)
/// with one field, `state`, holding the UART as a nested struct.
///
/// Register it under idstr `serial`, one instance per port (0, 1, …).
#[derive(Debug, Clone, PartialEq, Default, VmState)]
#[vmstate(name = "serial", version = 3, minimum_version = 2)]
pub struct SerialSection {
    /// The UART (QEMU's `state` field, a struct of the inner `serial` vmsd).
    pub state: Serial16550,
}

impl SerialSection {
    /// A section around a UART after reset.
    #[must_use]
    pub fn new(backend: SerialBackend) -> Self {
        SerialSection {
            state: Serial16550::new(backend),
        }
    }
}

impl From<Serial16550> for SerialSection {
    fn from(state: Serial16550) -> Self {
        SerialSection { state }
    }
}

//! Example devices for `vmstate`: working device models whose migration state is declared with
//! `#[derive(VmState)]` and is byte-for-byte what QEMU 7.2 writes for the same device.
//!
//! | module | device | section (QEMU 7.2) |
//! |---|---|---|
//! | [`serial`] | 16550A UART | `serial` v3: outer struct + nested `serial` + 7 subsections |
//! | [`pit`] | Intel 8254 PIT | `i8254` v3: struct array, a field migrated twice |
//! | [`rtc`] | MC146818 RTC + CMOS | `mc146818rtc` v3: buffer, `unused` padding, timers, versioned fields, a subsection |
//! | [`watchdog`] | `demo-wdt`, our own | every presence rule: `since`, `pin`, machine / prop / pred gates, `all`/`any`/`not`, `equal`, `range`, variable array, `Unused` |
//!
//! Each device is a plain struct: the migrated fields (documented with the register they
//! mirror), then `#[vmstate(skip)]` fields for host-side state. Guests talk to a device through
//! `io_read(offset)` / `io_write(offset, value)` with offsets relative to its I/O base; time is a
//! clock in nanoseconds moved forward with `advance_to(ns)`, and timers are
//! [`vmstate_runtime::Timer`] values that fire when the clock passes them. That clock is the
//! virtual clock, except for the RTC, which keeps time on the clock its VMM chooses as QEMU's
//! `-rtc clock=host|rt|vm` does ([`rtc::RtcClock`]; QEMU's default is the host clock).
//!
//! Registering the sections (idstr and instance id as QEMU uses them on x86 PCs):
//!
//! | type | idstr | instance ids |
//! |---|---|---|
//! | [`SerialSection`] | `serial` | 0, 1, … per port |
//! | [`I8254`] | `i8254` | 0 |
//! | [`Mc146818Rtc`] | `mc146818rtc` | 0 |
//! | [`DemoWatchdog`] | `demo-wdt` | 0 |
//!
//! [`catalog`] is the machine catalog a VMM with these devices uses: QEMU's x86 machine
//! types plus the demo watchdog's compat entries.
//!
//! ```
//! use examples_devices::{catalog, SerialSection};
//! use examples_devices::serial::SerialBackend;
//! use vmstate_runtime::{GateCtx, LoadCx, SaveCx, SliceReader, VmState};
//!
//! let cat = catalog();
//! let m = cat.resolve("pc-i440fx-7.2").unwrap();
//! let mut com1 = SerialSection::new(SerialBackend::default());
//! com1.state.io_write(7, 0x5a); // scratch register
//!
//! let mut payload = Vec::new();
//! let version = SerialSection::SCHEMA.version_for(m.version());
//! com1.save_state(&mut payload, version, &mut SaveCx::new(GateCtx::new(&m, "serial"), false))?;
//! assert_eq!(payload, [0x00, 0x0c, 0, 0, 0x01, 0, 0x08, 0x60, 0xb0, 0x5a, 0]);
//!
//! let mut dest = SerialSection::new(SerialBackend::default());
//! dest.load_state(&mut SliceReader::new(&payload), version, &mut LoadCx::new(GateCtx::new(&m, "serial")))?;
//! assert_eq!(dest.state.io_read(7), 0x5a);
//! # Ok::<(), vmstate_runtime::Error>(())
//! ```

// Unsafe code is denied; the exceptions are allowed one by one (the KVM memory slot, the
// monotonic clock of tinyvm's downtime measurement), each with its `// SAFETY:` comment.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod clock;
pub mod machine;
pub mod pit;
pub mod qemu;
pub mod reencode;
pub mod rtc;
pub mod serial;
pub mod tinyvm;
pub mod watchdog;

pub use pit::{PitChannel, I8254};
pub use rtc::{LostTickPolicy, Mc146818Rtc, RtcBase, RtcClock, RtcConfig};
pub use serial::{Fifo8, Serial16550, SerialBackend, SerialSection};
pub use watchdog::{DemoWatchdog, WatchdogConfig};

use vmstate_runtime::MachineCatalog;

/// The machine catalog for a VMM with these devices: [`MachineCatalog::qemu_pc`] (pc-i440fx
/// 2.2–7.2, pc-q35 2.4–7.2 and QEMU's stream framing switches) plus
/// [`watchdog::compat_entries`] and [`qemu::misc::compat_entries`].
#[must_use]
pub fn catalog() -> MachineCatalog {
    MachineCatalog::qemu_pc()
        .with_compat(watchdog::compat_entries())
        .with_compat(qemu::misc::compat_entries())
}

// The devices and the machine catalog, for `cargo compat-check`.
vmstate_runtime::export_schemas!(catalog = crate::catalog);

//! # vmstate-runtime
//!
//! Declarative, machine-type-aware VM device state in QEMU's migration stream format (v3).
//!
//! A device author writes a plain state struct and derives [`VmState`]; the derive generates
//! straight-line save/load code for the struct's section and a static description
//! ([`schema::StructSchema`]) of the exact wire layout, which the vmdesc writer and the compat
//! checker read.
//!
//! **The attribute reference is [`dsl`]**: container and field attributes, gates, hooks and
//! limits, each with an example that is compiled and run as a doctest. The shortest use:
//!
//! ```
//! use vmstate_runtime::{load_payload, save_payload, MachineCatalog, VmState};
//!
//! #[derive(VmState, Clone, Default, Debug, PartialEq)]
//! #[vmstate(name = "pl031", version = 2, minimum_version = 1)]
//! struct Pl031 {
//!     load: u32,
//!     #[vmstate(since = 2, default)] // absent from version-1 streams
//!     tick_offset: u32,
//!     #[vmstate(when = machine >= "7.0", default)] // sent by machine types 7.0 and later
//!     irq_mask: u8,
//! }
//!
//! let machine = MachineCatalog::qemu_pc().resolve("pc-q35-6.2")?;
//! let dev = Pl031 { load: 5, tick_offset: 7, irq_mask: 1 };
//! let (version, bytes, _vmdesc) = save_payload(&dev, &machine)?;
//! assert_eq!((version, bytes.as_slice()), (2, &[0, 0, 0, 5, 0, 0, 0, 7][..]));
//!
//! let mut back = Pl031::default();
//! load_payload(&mut back, &bytes, version, &machine)?;
//! assert_eq!(back, Pl031 { irq_mask: 0, ..dev });
//! # Ok::<(), vmstate_runtime::Error>(())
//! ```
//!
//! Whole machines go through a [`Registry`]; streams are read by the [`StreamLoader`] and
//! decoded without the devices' code by [`decode_stream`]. Machine types come from a
//! [`MachineCatalog`].
//!
//! Modules, bottom up:
//!
//! - [`reader`] / [`writer`]: byte sources and sinks (big-endian, fallible, zero-copy on slices).
//! - [`error`]: one error type with byte offset, section and field path.
//! - [`field`]: codecs for the field kinds; [`private`] (hidden): helpers for generated code.
//! - [`schema`]: the static description; [`machine`]: machine types and compat properties.
//! - [`state`]: the [`VmState`] trait; [`context`]: what gates are evaluated against.
//! - [`vmdesc`]: the trailing JSON description QEMU writes after EOF.
//! - [`stream`]: the one stream engine: [`StreamWriter`] writes every framing byte (header,
//!   configuration, section headers, footers, EOF, vmdesc trailer); [`StreamLoader`] is the one
//!   loop that reads a stream and hands each section to the [`SectionHandler`] routed for its
//!   idstr. [`ram`]: a validating stepper over QEMU's RAM section and its handler.
//! - [`registry`]: the devices of a machine and whole-stream save/load (all-or-nothing load;
//!   [`RegistryLoader`] is the handler of its device sections).
//! - [`decode`]: generic decoding of any stream from its vmdesc, like `analyze-migration.py` (a
//!   handler of the same loader).
//!
//! No `unsafe` code.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod context;
pub mod decode;
#[doc = include_str!("dsl.md")]
pub mod dsl {}
pub mod error;
pub mod export;
pub mod field;
pub mod limits;
pub mod machine;
pub mod manifest;
pub mod ram;
pub mod reader;
pub mod registry;
pub mod schema;
pub mod state;
pub mod stream;
pub mod vmdesc;
pub mod writer;

#[doc(hidden)]
pub mod private;
#[doc(hidden)]
pub use private as __private;

pub use context::{GateCtx, LoadCx, SaveCx};
pub use decode::{
    decode_stream, decode_stream_with, DecodedSection, DecodedStream, SectionKind, Value,
};
pub use error::{Error, ErrorKind, Result};
pub use field::{Field, Timer, Tmp, TmpView, Unused};
pub use machine::{MachineCatalog, MachineType};
pub use ram::RamStepper;
pub use reader::{IoReader, Reader, SliceReader};
pub use registry::{
    LoadReport, RegisterOptions, Registry, RegistryLoader, SaveReport, SectionHandle, SectionKey,
};
pub use state::{load_payload, save_payload, VmState};
pub use stream::{
    Configuration, LoadOptions, SectionHandler, SectionHeader, SectionMeta, StreamEnd,
    StreamLoader, StreamWriter,
};
pub use writer::{IoWriter, Writer};

#[cfg(feature = "derive")]
pub use vmstate_derive::VmState;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

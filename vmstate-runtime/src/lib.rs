//! # vmstate-runtime
//!
//! Declarative, machine-type-aware VM device state in QEMU's migration stream format (v3).
//!
//! A device author writes a plain state struct and derives [`VmState`]; the derive generates
//! straight-line save/load code for the struct's section and a static description
//! ([`schema::StructSchema`]) of the exact wire layout, which the vmdesc writer and the compat
//! checker read.
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
pub mod error;
pub mod export;
pub mod field;
pub mod limits;
pub mod machine;
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
pub use field::{Field, Timer, Unused};
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

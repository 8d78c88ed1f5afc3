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
//!
//! No `unsafe` code.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod context;
pub mod error;
pub mod field;
pub mod limits;
pub mod machine;
pub mod reader;
pub mod schema;
pub mod state;
pub mod vmdesc;
pub mod writer;

#[doc(hidden)]
pub mod private;
#[doc(hidden)]
pub use private as __private;

pub use context::{GateCtx, LoadCx, SaveCx};
pub use error::{Error, ErrorKind, Result};
pub use field::{Field, Timer, Unused};
pub use machine::{MachineCatalog, MachineType};
pub use reader::{IoReader, Reader, SliceReader};
pub use state::{load_payload, save_payload, VmState};
pub use writer::{IoWriter, Writer};

#[cfg(feature = "derive")]
pub use vmstate_derive::VmState;

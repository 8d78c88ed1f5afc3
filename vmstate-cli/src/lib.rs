//! The `vmstate` command: look into QEMU migration streams (file format v3, QEMU's or this
//! project's) without QEMU.
//!
//! | command | what |
//! |---|---|
//! | `vmstate analyze FILE [--dump state\|desc]` | the stream as JSON, exactly as QEMU's `scripts/analyze-migration.py -f FILE [-d desc]` prints it (RAM summarised as block sizes) |
//! | `vmstate analyze FILE --typed [--machine T]` | sections of the example devices loaded into their Rust types and printed ([`typed`]); the others as the vmdesc decodes them |
//! | `vmstate diff A B [--json]` | field-level differences between two streams: section, instance, field path, old → new |
//! | `vmstate explain FILE [--machine T]` | loads the stream as a destination would and explains the first failure: offset, section, field, the bytes around it, what was expected and the likely cause |
//!
//! Exit codes: [`EXIT_OK`] (0), [`EXIT_FOUND`] (1: `diff` found differences, `explain` found a
//! failure), [`EXIT_ERROR`] (2: the tool could not do its job, e.g. an unreadable or
//! undecodable input). Errors are one line on stderr naming the file, the byte offset, the
//! section and the field.
//!
//! Memory and time are bounded by the device state, not the input: a file is read from its end
//! for the vmdesc and then streamed once through the runtime's stream loader (see [`input`]);
//! `/dev/zero` or a large random file fail at their first 8 bytes.
//!
//! ```sh
//! vmstate analyze tests/golden/qemu72/idle.mig
//! vmstate diff before.mig after.mig
//! vmstate explain broken.mig --machine pc-i440fx-7.2
//! ```
//!
//! This library does no printing; `main.rs` prints what it returns.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod analyze;
pub mod diff;
pub mod explain;
pub mod input;
pub mod typed;

use std::fmt;
use std::path::Path;

/// Success: the analysis was printed, the streams are equal, the stream loads.
pub const EXIT_OK: u8 = 0;
/// `diff`: the streams differ; `explain`: the stream fails to load.
pub const EXIT_FOUND: u8 = 1;
/// The tool could not do its job (unreadable input, undecodable stream, bad arguments).
pub const EXIT_ERROR: u8 = 2;

/// An error of the tool: one line naming what went wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    message: String,
    stream: Option<vmstate_runtime::Error>,
}

impl CliError {
    /// An error with this message.
    #[must_use]
    pub fn new(message: String) -> Self {
        CliError {
            message,
            stream: None,
        }
    }

    /// A runtime error in the stream `path`.
    #[must_use]
    pub fn at(path: &Path, e: &vmstate_runtime::Error) -> Self {
        CliError {
            message: format!("{}: {e}", path.display()),
            stream: Some(e.clone()),
        }
    }

    /// The stream's error, when the stream (not the tool or the file system) is at fault.
    #[must_use]
    pub fn stream_error(&self) -> Option<&vmstate_runtime::Error> {
        self.stream.as_ref()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Prints JSON the way `analyze-migration.py` does (`json.JSONEncoder(indent=4,
/// separators=(',', ': '))`).
#[must_use]
pub fn to_script_json(v: &serde_json::Value) -> String {
    use serde::Serialize as _;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serialising a `Value` into a Vec cannot fail.
    let _ = v.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

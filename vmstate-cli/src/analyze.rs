//! `vmstate analyze`: a stream as `analyze-migration.py` prints it.

use std::path::Path;

use vmstate_runtime::decode::stream_to_json;

use crate::input::Input;
use crate::{to_script_json, CliError};

/// What to print (`analyze-migration.py -d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dump {
    /// The decoded state (the default).
    #[default]
    State,
    /// The vmdesc.
    Desc,
}

/// The analysis of `path` as the script prints it (without the final newline).
///
/// # Errors
/// Unreadable input, a stream without a vmdesc, or any decode error (one line, with offset,
/// section and field).
pub fn analyze(path: &Path, dump: Dump) -> Result<String, CliError> {
    let input = Input::open(path)?;
    let Some(located) = input.located() else {
        return Err(CliError::new(format!(
            "{}: no vmdesc at the end of the stream (QEMU writes none for machine types up to \
             2.2); nothing describes the sections",
            path.display()
        )));
    };
    let json = match dump {
        Dump::Desc => serde_json::from_slice::<serde_json::Value>(&located.json).map_err(|e| {
            CliError::new(format!("{}: the vmdesc is not JSON: {e}", path.display()))
        })?,
        Dump::State => stream_to_json(&input.decode()?),
    };
    Ok(to_script_json(&json))
}

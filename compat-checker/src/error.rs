//! The tool's own failures (exit code 2), as opposed to findings.

use std::fmt;

/// Why the checker itself could not do its job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    Io(String),
    /// A schema export or baseline file is malformed.
    BadInput(String),
    /// A machine type is not in any catalog.
    UnknownMachine {
        /// The name asked for.
        name: String,
        /// The names the catalogs know.
        known: Vec<String>,
    },
    /// Running `cargo` (metadata or the export test) failed.
    Cargo(String),
    /// Bad usage (e.g. `freeze` without machine types).
    Usage(String),
    /// Running `git` (for `--baseline-rev`) failed.
    Git(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(m)
            | Error::BadInput(m)
            | Error::Cargo(m)
            | Error::Usage(m)
            | Error::Git(m) => f.write_str(m),
            Error::UnknownMachine { name, known } => {
                write!(f, "unknown machine type `{name}`")?;
                if !known.is_empty() {
                    let shown: Vec<&str> = known.iter().map(String::as_str).take(8).collect();
                    write!(f, " (known: {}", shown.join(", "))?;
                    if known.len() > shown.len() {
                        write!(f, ", … {} in all", known.len())?;
                    }
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

//! `vmstate`: analyze, diff and explain QEMU migration streams; see the library docs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use vmstate_cli::analyze::{analyze, Dump};
use vmstate_cli::diff::diff_files;
use vmstate_cli::explain::explain;
use vmstate_cli::{EXIT_ERROR, EXIT_FOUND, EXIT_OK};

#[derive(Parser)]
#[command(
    name = "vmstate",
    version,
    about = "Look into QEMU migration streams (file format v3) without QEMU",
    after_help = "Exit codes: 0 ok (printed, equal, loads); 1 a difference (diff) or a failure \
                  (explain) was found; 2 the tool could not do its job (a one-line error on stderr)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum DumpArg {
    State,
    Desc,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a stream as JSON, exactly as QEMU's `analyze-migration.py -f FILE` does.
    Analyze {
        /// The stream (a file; pipes and devices are read up to 32 MiB).
        file: PathBuf,
        /// What to print: the decoded state, or the vmdesc (`analyze-migration.py -d`).
        #[arg(short, long, value_enum, default_value = "state")]
        dump: DumpArg,
        /// Load the sections of known devices (the example devices) into their Rust types and
        /// print those instead of JSON.
        #[arg(long, conflicts_with = "dump")]
        typed: bool,
        /// With --typed: the machine type to load for (default: the one the stream names).
        #[arg(long, requires = "typed")]
        machine: Option<String>,
    },
    /// Field-level differences between two streams; exit 1 when they differ, 0 when equal.
    Diff {
        /// The first (old) stream.
        a: PathBuf,
        /// The second (new) stream.
        b: PathBuf,
        /// Print the differences as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a stream as a destination would; explain the first failure (exit 1) or say it
    /// loads (exit 0).
    Explain {
        /// The stream.
        file: PathBuf,
        /// Load into the example devices' demo machine of this machine type (default: the
        /// one the stream names, or the stream's own vmdesc when the demo lacks a device).
        #[arg(long)]
        machine: Option<String>,
    },
}

/// Writes the report to stdout; a closed stdout (`| head`) is not an error of the tool.
fn out(s: &str) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes()).and_then(|()| o.flush());
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_ERROR)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.cmd {
        Cmd::Analyze {
            file,
            typed: true,
            machine,
            ..
        } => match vmstate_cli::typed::typed(&file, machine.as_deref()) {
            Ok(s) => {
                out(&s);
                ExitCode::from(EXIT_OK)
            }
            Err(e) => fail(e),
        },
        Cmd::Analyze { file, dump, .. } => {
            let dump = match dump {
                DumpArg::State => Dump::State,
                DumpArg::Desc => Dump::Desc,
            };
            match analyze(&file, dump) {
                Ok(s) => {
                    out(&format!("{s}\n"));
                    ExitCode::from(EXIT_OK)
                }
                Err(e) => fail(e),
            }
        }
        Cmd::Diff { a, b, json } => match diff_files(&a, &b) {
            Ok(d) => {
                if json {
                    let list: Vec<_> = d.iter().map(|x| x.to_json()).collect();
                    let v = serde_json::json!({ "equal": d.is_empty(), "differences": list });
                    out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&v).unwrap_or_default()
                    ));
                } else if d.is_empty() {
                    out("equal: no differences\n");
                } else {
                    let lines: Vec<String> = d.iter().map(|x| x.line() + "\n").collect();
                    out(&lines.concat());
                }
                ExitCode::from(if d.is_empty() { EXIT_OK } else { EXIT_FOUND })
            }
            Err(e) => fail(e),
        },
        Cmd::Explain { file, machine } => match explain(&file, machine.as_deref()) {
            Ok(x) => {
                out(&x.report);
                ExitCode::from(if x.failure.is_some() {
                    EXIT_FOUND
                } else {
                    EXIT_OK
                })
            }
            Err(e) => fail(e),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

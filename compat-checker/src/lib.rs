//! `cargo compat-check`: proves, per machine type, that what the code sends and accepts on the
//! migration stream did not change.
//!
//! QEMU's rule is that a machine type is a frozen contract: a new release running machine type
//! `M` must send exactly what the release that introduced `M` sent, and accept it. QEMU's own
//! tooling cannot check that (`-dump-vmstate` is identical for every machine type, and the
//! static checker cannot see `needed()` or field tests). Our gates are declarative, so the
//! layout per machine type can be computed and compared.
//!
//! The pipeline:
//!
//! 1. [`workspace`]: find the crates that depend on `vmstate-runtime` and run their schema
//!    export (one line per crate: `vmstate_runtime::export_schemas!(catalog = crate::catalog);`)
//!    → [`schema::Export`].
//! 2. [`eval`]: evaluate every device for one machine type → [`layout::DeviceLayout`]s (section
//!    version, accepted versions, every field, struct array and subsection in wire order, with
//!    never / maybe / always presence and source locations).
//! 3. `freeze` writes that as a [`layout::Baseline`], `compat/<machine-type>.json`.
//! 4. [`check()`] recomputes every frozen machine type and compares both directions
//!    ([`check`](mod@check) module); each mismatch is a [`Finding`] of one [`rules`] entry.
//! 5. [`report`] renders findings (human, JSON, GitHub annotations); [`shell`] formats status
//!    lines. The library never prints; the `cargo-compat-check` binary does.
//!
//! [`git`] reads the baselines as committed at a git revision instead of from the working tree
//! (`--baseline-rev`). [`qemu`] compares two QEMU `-dump-vmstate` files instead.
//!
//! # Use from `cargo test`
//!
//! ```no_run
//! # fn catalog() -> vmstate_runtime::MachineCatalog { vmstate_runtime::MachineCatalog::qemu_pc() }
//! # struct Serial;
//! # impl Serial { const SCHEMA: &'static vmstate_runtime::schema::StructSchema = unreachable!(); }
//! let export = compat_checker::schema::Export::from_schemas("my-devices", &catalog(), &[Serial::SCHEMA])
//!     .unwrap();
//! compat_checker::assert_compatible(std::path::Path::new("../compat"), &export);
//! ```
//!
//! # Exit codes of the binary
//!
//! | code | constant | meaning |
//! |---|---|---|
//! | 0 | [`EXIT_COMPATIBLE`] | no `deny` finding (warnings may have been printed) |
//! | 1 | [`EXIT_INCOMPATIBLE`] | at least one `deny` finding (or `freeze` refused to replace a baseline the current code is incompatible with) |
//! | 2 | [`EXIT_TOOL_ERROR`] | the tool failed: bad arguments, unreadable or malformed files (including a machine catalog whose compat entries name no device or property), cargo failed |

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod check;
pub mod config;
pub mod diff;
pub mod error;
pub mod eval;
pub mod finding;
pub mod git;
pub mod layout;
pub mod qemu;
pub mod report;
pub mod rules;
pub mod schema;
pub mod shell;
pub mod workspace;

use std::path::{Path, PathBuf};

pub use config::Config;
pub use error::Error;
pub use finding::{Direction, Finding, Report, Severity, SourceLoc};
pub use layout::Baseline;
pub use schema::Export;

/// Exit code: compatible (no `deny` finding).
pub const EXIT_COMPATIBLE: i32 = 0;
/// Exit code: at least one `deny` finding, or `freeze` refused to replace a baseline the
/// current code is incompatible with.
pub const EXIT_INCOMPATIBLE: i32 = 1;
/// Exit code: the tool itself failed.
pub const EXIT_TOOL_ERROR: i32 = 2;

/// Compares the baselines with the current code using the rules' default levels.
#[must_use]
pub fn check(baselines: &[Baseline], current: &Export) -> Report {
    check::check(baselines, current, &Config::default())
}

/// Compares the baselines with the current code using `config`'s rule levels.
#[must_use]
pub fn check_with(baselines: &[Baseline], current: &Export, config: &Config) -> Report {
    check::check(baselines, current, config)
}

/// Sort key of a machine type name: family, then version (`pc-i440fx-2.10` after `-2.9`).
#[must_use]
pub fn machine_sort_key(
    name: &str,
) -> (
    String,
    Option<vmstate_runtime::schema::MachineVersion>,
    String,
) {
    match name.rsplit_once('-') {
        Some((f, ver)) => (
            f.to_owned(),
            vmstate_runtime::schema::MachineVersion::parse(ver),
            name.to_owned(),
        ),
        None => (name.to_owned(), None, name.to_owned()),
    }
}

/// Sorts machine type names by [`machine_sort_key`].
pub fn sort_machines(v: &mut [String]) {
    v.sort_by_cached_key(|s| machine_sort_key(s));
}

/// The baseline file of a machine type.
#[must_use]
pub fn baseline_path(dir: &Path, machine: &str) -> PathBuf {
    dir.join(format!("{machine}.json"))
}

/// Reads every `*.json` baseline in `dir` (none if it does not exist), sorted by machine type.
///
/// # Errors
/// [`Error::Io`] or [`Error::BadInput`] for unreadable or malformed files, or a file whose name
/// does not match the machine type inside.
pub fn load_baselines(dir: &Path) -> Result<Vec<Baseline>, Error> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io(format!("cannot read {}: {e}", dir.display()))),
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e
            .map_err(|e| Error::Io(format!("cannot read {}: {e}", dir.display())))?
            .path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Error::Io(format!("cannot read {}: {e}", p.display())))?;
        let origin = p.display().to_string();
        let b = Baseline::parse(&text, &origin)?;
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        check_file_name(&b, stem, &origin)?;
        out.push(b);
    }
    out.sort_by_cached_key(|b| machine_sort_key(b.machine()));
    Ok(out)
}

/// A baseline file must be named after the machine type it holds.
fn check_file_name(b: &Baseline, stem: &str, origin: &str) -> Result<(), Error> {
    if stem == b.machine() {
        return Ok(());
    }
    Err(Error::BadInput(format!(
        "{origin}: holds the baseline of `{}`; the file must be named `{}.json`",
        b.machine(),
        b.machine()
    )))
}

/// What `freeze` did with one machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeStatus {
    /// A new baseline was written.
    Created,
    /// An existing, different baseline was overwritten (`--force`).
    Replaced,
    /// The existing baseline already matched (only the tool version may differ).
    Unchanged,
    /// The existing baseline recorded the same layout in an older baseline format (with source
    /// locations); it was rewritten in the current format.
    Reformatted,
    /// An existing baseline records a different layout, but the current code still sends and
    /// loads what it records (no `deny` finding against it): it was kept, as a frozen baseline
    /// should be, because `force` was not set.
    Kept,
    /// An existing baseline records a layout the current code is incompatible with (or the file
    /// is not a baseline this tool reads); it was kept because `force` was not set.
    Refused,
}

/// The outcome of freezing one machine type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    /// Machine type.
    pub machine: String,
    /// Baseline file.
    pub path: PathBuf,
    /// What happened.
    pub status: FreezeStatus,
    /// Devices recorded.
    pub devices: usize,
    /// When the existing baseline differs ([`FreezeStatus::Kept`], [`FreezeStatus::Refused`] or
    /// [`FreezeStatus::Replaced`]): what differs, one line each ([`diff::diff`]).
    pub changes: Vec<String>,
    /// When the existing baseline differs: how many `deny` findings `cargo compat-check` reports
    /// for this machine type against it (0: the current code still loads and sends what it
    /// records, although the layouts differ).
    pub failures: usize,
}

/// Writes the baselines of `machines` into `dir`, with default rule levels ([`freeze_with`]).
///
/// # Errors
/// [`Error::UnknownMachine`] (nothing is written then) or [`Error::Io`].
pub fn freeze(
    export: &Export,
    machines: &[String],
    dir: &Path,
    force: bool,
) -> Result<Vec<Frozen>, Error> {
    freeze_with(export, machines, dir, force, &Config::default())
}

/// Writes the baselines of `machines` into `dir`. An existing baseline that records a different
/// layout is only replaced with `force` (replacing one accepts every break it would have
/// caught); without it, it is [`FreezeStatus::Kept`] when `cargo compat-check` (with `config`'s
/// levels) still passes against it and [`FreezeStatus::Refused`] when it fails. Either way
/// [`Frozen::changes`] lists the differences and [`Frozen::failures`] counts the failures. A
/// baseline recording the same layout is left alone (rewritten only to upgrade its format), so
/// code that merely moved changes nothing.
///
/// # Errors
/// [`Error::UnknownMachine`] (nothing is written then) or [`Error::Io`].
pub fn freeze_with(
    export: &Export,
    machines: &[String],
    dir: &Path,
    force: bool,
    config: &Config,
) -> Result<Vec<Frozen>, Error> {
    let mut planned = Vec::new();
    for m in machines {
        planned.push(eval::freeze(export, m)?);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for b in planned {
        let path = baseline_path(dir, b.machine());
        let mut changes = Vec::new();
        let mut failures = 0;
        let status = match std::fs::read_to_string(&path) {
            Err(_) => FreezeStatus::Created,
            Ok(text) => match Baseline::parse(&text, "") {
                Ok(old) => {
                    let mut same = old.clone();
                    same.header.tool.clone_from(&b.header.tool);
                    same.header.format = b.header.format;
                    if same == b {
                        if old.header.format == b.header.format {
                            FreezeStatus::Unchanged
                        } else {
                            FreezeStatus::Reformatted
                        }
                    } else {
                        changes = diff::diff(&old, &b);
                        failures = check_with(std::slice::from_ref(&old), export, config)
                            .findings
                            .iter()
                            .filter(|f| f.severity == Severity::Deny)
                            .count();
                        if force {
                            FreezeStatus::Replaced
                        } else if failures == 0 {
                            FreezeStatus::Kept
                        } else {
                            FreezeStatus::Refused
                        }
                    }
                }
                Err(e) => {
                    changes.push(format!("the file is not a baseline this tool reads: {e}"));
                    if force {
                        FreezeStatus::Replaced
                    } else {
                        FreezeStatus::Refused
                    }
                }
            },
        };
        if matches!(
            status,
            FreezeStatus::Created | FreezeStatus::Replaced | FreezeStatus::Reformatted
        ) {
            std::fs::write(&path, b.to_pretty_json())
                .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))?;
        }
        out.push(Frozen {
            machine: b.machine().to_owned(),
            path,
            status,
            devices: b.devices.len(),
            changes,
            failures,
        });
    }
    Ok(out)
}

/// Checks `export` against the baselines in `baseline_dir` with default rule levels.
///
/// # Panics
/// When the check fails (a `deny` finding), with the human report as the message; or when the
/// baselines cannot be read. Meant for a `#[test]`.
pub fn assert_compatible(baseline_dir: &Path, export: &Export) {
    let baselines = match load_baselines(baseline_dir) {
        Ok(b) => b,
        Err(e) => panic!("compat-check: {e}"),
    };
    let report = check(&baselines, export);
    assert!(
        !report.failed(),
        "compat-check: incompatible with the frozen baselines in {}\n\n{}",
        baseline_dir.display(),
        anstream::adapter::strip_str(&report::human(&report))
    );
}

/// The result of checking a whole workspace.
#[derive(Debug, Clone)]
pub struct WorkspaceCheck {
    /// The findings.
    pub report: Report,
    /// Crates that derive `VmState` but have no export line (their devices were not checked).
    pub missing_export: Vec<String>,
}

/// Discovers the workspace of `manifest_path` (or the current directory), exports every crate
/// that depends on `vmstate-runtime` (this runs `cargo test` for each) and checks it against
/// its baseline directory.
///
/// # Errors
/// [`Error`] when cargo, the export or a baseline fails.
pub fn check_workspace(manifest_path: Option<&Path>) -> Result<WorkspaceCheck, Error> {
    let ws = workspace::Workspace::discover(manifest_path)?;
    let mut export = Export::default();
    let mut missing_export = Vec::new();
    for p in &ws.packages {
        match ws.export(p)? {
            workspace::Exported::Document(d) => export.add(d)?,
            workspace::Exported::NoExportLine => missing_export.push(p.name.clone()),
            workspace::Exported::NoDevices => {}
        }
    }
    let baselines = load_baselines(&ws.baseline_dir(None))?;
    Ok(WorkspaceCheck {
        report: check_with(&baselines, &export, &ws.config),
        missing_export,
    })
}

/// [`check_workspace`] for a `#[test]`: panics with the human report when incompatible.
///
/// # Panics
/// When the check fails or cannot run.
pub fn assert_workspace_compatible(workspace_root: &Path) {
    let manifest = workspace_root.join("Cargo.toml");
    match check_workspace(Some(&manifest)) {
        Ok(r) => assert!(
            !r.report.failed(),
            "compat-check: incompatible with the frozen baselines\n\n{}",
            anstream::adapter::strip_str(&report::human(&r.report))
        ),
        Err(e) => panic!("compat-check: {e}"),
    }
}

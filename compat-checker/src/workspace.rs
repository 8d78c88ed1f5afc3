//! Finding the schema exports of a workspace.
//!
//! Every workspace package that depends on `vmstate-runtime` and has a library target is a
//! candidate. A package whose library contains the line
//! `vmstate_runtime::export_schemas!(catalog = crate::catalog);` gets the generated test
//! `__vmstate_export_schemas`; running it with `VMSTATE_SCHEMA_EXPORT=<file>` writes the
//! package's export document there:
//!
//! ```text
//! cargo test -p <package> --lib -q -- --exact __vmstate_export_schemas
//! ```
//!
//! Packages that derive `VmState` without the export line are reported as warnings (their
//! devices cannot be checked); packages that never derive it are skipped silently, and so are
//! packages that declare their `VmState` types to be test fixtures rather than devices:
//!
//! ```toml
//! [package.metadata.compat-check]
//! unchecked = true
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_metadata::{DependencyKind, MetadataCommand};

use crate::config::Config;
use crate::error::Error;
use crate::schema::{CrateExport, Export};

/// The runtime package whose dependents are checked.
pub const RUNTIME: &str = "vmstate-runtime";
/// The environment variable the export test reads.
pub const EXPORT_ENV: &str = "VMSTATE_SCHEMA_EXPORT";
/// The name of the generated export test.
pub const EXPORT_TEST: &str = "__vmstate_export_schemas";
/// The line a crate adds to its `lib.rs`.
pub const EXPORT_LINE: &str = "vmstate_runtime::export_schemas!(catalog = crate::catalog);";

/// A workspace as `cargo metadata` describes it.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Workspace root.
    pub root: PathBuf,
    /// Root manifest.
    pub manifest: PathBuf,
    /// `[workspace.metadata.compat-check]`.
    pub config: Config,
    /// Packages depending on the runtime, with a library target.
    pub packages: Vec<Package>,
}

/// A candidate package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Directory of its library's root file.
    pub src_dir: PathBuf,
    /// Whether its sources contain `export_schemas!`.
    pub export_line: bool,
    /// Whether its sources derive `VmState`.
    pub derives: bool,
    /// `[package.metadata.compat-check.qom-types]`: QOM type name → section name, for
    /// `export-qemu-dump`.
    pub qom_types: BTreeMap<String, String>,
}

/// What exporting one package gave.
#[derive(Debug, Clone)]
pub enum Exported {
    /// The package's export document.
    Document(CrateExport),
    /// The package derives `VmState` but has no export line.
    NoExportLine,
    /// The package does not derive `VmState` at all.
    NoDevices,
}

impl Workspace {
    /// Runs `cargo metadata --no-deps` for the workspace of `manifest_path` (or the current
    /// directory).
    ///
    /// # Errors
    /// [`Error::Cargo`] when `cargo metadata` fails; [`Error::BadInput`] for bad configuration.
    pub fn discover(manifest_path: Option<&Path>) -> Result<Self, Error> {
        let mut cmd = MetadataCommand::new();
        cmd.no_deps();
        if let Some(cargo) = std::env::var_os("CARGO") {
            cmd.cargo_path(cargo);
        }
        if let Some(p) = manifest_path {
            cmd.manifest_path(p);
        }
        let meta = cmd
            .exec()
            .map_err(|e| Error::Cargo(format!("cargo metadata failed: {e}")))?;
        let config = Config::from_workspace_metadata(&meta.workspace_metadata)?;
        let mut packages = Vec::new();
        for p in meta.workspace_packages() {
            let depends = p
                .dependencies
                .iter()
                .any(|d| d.name == RUNTIME && d.kind == DependencyKind::Normal);
            let Some(lib) = p.targets.iter().find(|t| t.is_lib()) else {
                continue;
            };
            if !depends || p.name.as_str() == env!("CARGO_PKG_NAME") {
                continue;
            }
            // Fixture devices of a test-support package: nothing a machine type depends on.
            if p.metadata["compat-check"]["unchecked"] == serde_json::Value::Bool(true) {
                continue;
            }
            let src_dir = lib
                .src_path
                .parent()
                .map_or_else(|| PathBuf::from("."), |d| d.as_std_path().to_path_buf());
            let scan = scan_sources(&src_dir);
            let qom_types = qom_types(&p.metadata["compat-check"]["qom-types"])
                .map_err(|e| Error::BadInput(format!("package `{}`: {e}", p.name)))?;
            packages.push(Package {
                name: p.name.to_string(),
                src_dir,
                export_line: scan.export_line,
                derives: scan.derives,
                qom_types,
            });
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        let root = meta.workspace_root.as_std_path().to_path_buf();
        Ok(Workspace {
            manifest: root.join("Cargo.toml"),
            root,
            config,
            packages,
        })
    }

    /// The baseline directory: `--baseline-dir`, else the configured one, else `compat/`.
    #[must_use]
    pub fn baseline_dir(&self, overridden: Option<&Path>) -> PathBuf {
        match overridden {
            Some(p) => p.to_path_buf(),
            None => self
                .root
                .join(self.config.baseline_dir.as_deref().unwrap_or("compat")),
        }
    }

    /// Exports one package by running its export test.
    ///
    /// # Errors
    /// [`Error::Cargo`] when the build or the test fails; [`Error::BadInput`] when the
    /// document is malformed.
    pub fn export(&self, pkg: &Package) -> Result<Exported, Error> {
        if !pkg.export_line {
            return Ok(if pkg.derives {
                Exported::NoExportLine
            } else {
                Exported::NoDevices
            });
        }
        let file = std::env::temp_dir().join(format!(
            "vmstate-export-{}-{}.json",
            std::process::id(),
            pkg.name
        ));
        let _ = std::fs::remove_file(&file);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(&self.root)
            .arg("test")
            .arg("--manifest-path")
            .arg(&self.manifest)
            .args(["-p", &pkg.name, "--lib", "-q", "--color", "never", "--"])
            .args(["--exact", EXPORT_TEST])
            .env(EXPORT_ENV, &file)
            .output()
            .map_err(|e| Error::Cargo(format!("cannot run cargo: {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&file);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(Error::Cargo(format!(
                "`cargo test -p {} --lib -- --exact {EXPORT_TEST}` failed ({}):\n{}",
                pkg.name,
                out.status,
                tail.join("\n")
            )));
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(_) => return Ok(Exported::NoExportLine),
        };
        let _ = std::fs::remove_file(&file);
        let doc = Export::parse_document(&text, &format!("schema export of {}", pkg.name))?;
        Ok(Exported::Document(doc))
    }
}

/// Reads a `qom-types` table: string values only.
fn qom_types(v: &serde_json::Value) -> Result<BTreeMap<String, String>, String> {
    match v {
        serde_json::Value::Null => Ok(BTreeMap::new()),
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_owned())),
                None => Err(format!(
                    "[package.metadata.compat-check.qom-types] `{k}` must be a section name \
                     (a string), not {v}"
                )),
            })
            .collect(),
        other => Err(format!(
            "[package.metadata.compat-check] qom-types must be a table of QOM type = section \
             name, not {other}"
        )),
    }
}

struct Scan {
    export_line: bool,
    derives: bool,
}

/// Looks for the export line and for `VmState` derives in the `.rs` files under `dir`.
fn scan_sources(dir: &Path) -> Scan {
    let mut scan = Scan {
        export_line: false,
        derives: false,
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue;
                };
                if text.contains("export_schemas!") {
                    scan.export_line = true;
                }
                if text
                    .lines()
                    .any(|l| l.contains("derive(") && l.contains("VmState"))
                {
                    scan.derives = true;
                }
            }
        }
    }
    scan
}

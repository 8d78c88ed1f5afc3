//! The schema export: what `vmstate_runtime::export_schemas!` writes, read back.
//!
//! One crate's export document is
//! `{"crate": "<package>", "catalog": <MachineCatalog>, "devices": [<StructSchema>…]}`. The
//! devices deserialize into the runtime's own [`StructSchema`] (unknown keys are ignored, so
//! newer runtimes stay readable), so the checker evaluates gates, pins and versions with the
//! same code the generated save/load code and the vmdesc writer use: a field is on the wire iff
//! `since ≤ container version` and its gate holds; nested structs are inline at their own
//! version; subsections follow their struct's fields.

use std::path::Path;

use serde::Deserialize;
use vmstate_runtime::machine::MachineCatalog;
pub use vmstate_runtime::schema::StructSchema;

use crate::error::Error;

/// One crate's export document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CrateExport {
    /// Package name.
    #[serde(rename = "crate", default)]
    pub krate: Option<String>,
    /// The machine catalog the crate's devices are used with.
    pub catalog: MachineCatalog,
    /// Top-level devices.
    pub devices: Vec<StructSchema>,
}

/// Everything the current code declares: one document per crate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// Per-crate documents.
    pub crates: Vec<CrateExport>,
}

impl Export {
    /// Parses one export document; `origin` names it in errors.
    ///
    /// # Errors
    /// [`Error::BadInput`] when the JSON does not match the export format or the catalog is
    /// invalid.
    pub fn parse_document(text: &str, origin: &str) -> Result<CrateExport, Error> {
        let doc: CrateExport = serde_json::from_str(text)
            .map_err(|e| Error::BadInput(format!("{origin}: not a schema export: {e}")))?;
        doc.catalog
            .validate()
            .map_err(|e| Error::BadInput(format!("{origin}: {e}")))?;
        Ok(doc)
    }

    /// Reads and adds the export document at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::BadInput`]; a device name declared twice is an error.
    pub fn add_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
        let doc = Self::parse_document(&text, &path.display().to_string())?;
        self.add(doc)
    }

    /// Adds a document.
    ///
    /// # Errors
    /// [`Error::BadInput`] when a section name is declared twice.
    pub fn add(&mut self, doc: CrateExport) -> Result<(), Error> {
        for d in &doc.devices {
            if d.nested {
                continue;
            }
            if let Some((c, _)) = self.devices().find(|(_, e)| e.name == d.name) {
                return Err(Error::BadInput(format!(
                    "section `{}` is declared twice ({} and {})",
                    d.name,
                    c.krate.as_deref().unwrap_or("?"),
                    doc.krate.as_deref().unwrap_or("?")
                )));
            }
        }
        self.crates.push(doc);
        Ok(())
    }

    /// Builds an export from in-process schemas (for `cargo test` users).
    ///
    /// # Errors
    /// [`Error::BadInput`] if the schemas do not round-trip (a runtime/checker mismatch).
    pub fn from_schemas(
        krate: &str,
        catalog: &MachineCatalog,
        schemas: &[&StructSchema],
    ) -> Result<Self, Error> {
        let doc = serde_json::json!({
            "crate": krate,
            "catalog": catalog,
            "devices": schemas.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        });
        let mut e = Export::default();
        e.add(Self::parse_document(&doc.to_string(), krate)?)?;
        Ok(e)
    }

    /// Builds an export from the schemas package `krate` registered in this binary (the same
    /// document its `export_schemas!` test writes); the package must be linked in, e.g. as a
    /// dev-dependency whose items the test uses.
    ///
    /// # Errors
    /// [`Error::BadInput`] if the document does not parse (a runtime/checker mismatch).
    pub fn from_registry(krate: &str, catalog: &MachineCatalog) -> Result<Self, Error> {
        let doc = vmstate_runtime::export::export_json(krate, catalog);
        let mut e = Export::default();
        e.add(Self::parse_document(&doc.to_string(), krate)?)?;
        Ok(e)
    }

    /// Every top-level device with its crate.
    pub fn devices(&self) -> impl Iterator<Item = (&CrateExport, &StructSchema)> {
        self.crates
            .iter()
            .flat_map(|c| c.devices.iter().filter(|d| !d.nested).map(move |d| (c, d)))
    }

    /// Every machine type name any crate's catalog knows, sorted by family then version.
    #[must_use]
    pub fn machine_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .crates
            .iter()
            .flat_map(|c| c.catalog.machine_names())
            .collect();
        crate::sort_machines(&mut v);
        v.dedup();
        v
    }
}

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

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use vmstate_runtime::machine::{closest_name, MachineCatalog, MIGRATION_DRIVER};
use vmstate_runtime::schema::Kind;
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

impl CrateExport {
    /// Checks every compat entry of the catalog against the crate's devices: its driver must be
    /// a section of the crate (or the runtime's [`MIGRATION_DRIVER`], whose properties
    /// [`MachineCatalog::validate`] checks) and its property one that section declares with
    /// `prop(name = …)`, directly or in a struct nested in it (gates read properties of the
    /// top-level section). Any other entry applies to nothing: a misspelt driver or property
    /// silently leaves a gated field or subsection on old machine types.
    ///
    /// # Errors
    /// [`Error::BadInput`] listing every such entry, with the closest valid name.
    pub fn check_compat_entries(&self) -> Result<(), Error> {
        let sections: BTreeMap<&str, &StructSchema> = self
            .devices
            .iter()
            .filter(|d| !d.nested)
            .map(|d| (&*d.name, d))
            .collect();
        let mut bad = Vec::new();
        for (i, c) in self.catalog.compat.iter().enumerate() {
            if c.driver == MIGRATION_DRIVER {
                continue;
            }
            let Some(dev) = sections.get(c.driver.as_str()) else {
                let known = sections.keys().copied().chain([MIGRATION_DRIVER]);
                let hint = closest_name(&c.driver, known)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                bad.push(format!(
                    "{}: no section `{}` among the crate's devices ({}){hint}",
                    c.describe(i),
                    c.driver,
                    list(sections.keys().copied())
                ));
                continue;
            };
            let mut props = BTreeSet::new();
            declared_props(dev, &mut props);
            if !props.contains(c.property.as_str()) {
                let hint = closest_name(&c.property, props.iter().copied())
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                let declared = if props.is_empty() {
                    "it declares no property".to_owned()
                } else {
                    format!("its properties: {}", list(props.iter().copied()))
                };
                bad.push(format!(
                    "{}: section `{}` (`{}`, {}) declares no property `{}` ({declared}){hint}",
                    c.describe(i),
                    dev.name,
                    dev.rust_name,
                    crate::layout::Loc::from(&dev.location),
                    c.property
                ));
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        Err(Error::BadInput(format!(
            "the machine catalog of crate `{}` has compat entries that apply to nothing:\n  {}",
            self.krate.as_deref().unwrap_or("?"),
            bad.join("\n  ")
        )))
    }
}

/// `` `a`, `b` `` (or `none`).
fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// The properties `s` and every struct nested in it declare.
fn declared_props<'a>(s: &'a StructSchema, out: &mut BTreeSet<&'a str>) {
    fn kind<'a>(k: &'a Kind, out: &mut BTreeSet<&'a str>) {
        match k {
            Kind::Array { elem, .. } | Kind::VArray { elem, .. } | Kind::Pointer { elem } => {
                kind(elem, out);
            }
            Kind::Struct { schema } => declared_props(schema, out),
            Kind::List { elem, .. } => kind(elem, out),
            Kind::Tmp { view } => kind(view, out),
            Kind::Tree { key, value, .. } => {
                if let Some(k) = key {
                    kind(k, out);
                }
                kind(value, out);
            }
            _ => {}
        }
    }
    out.extend(s.props.iter().map(|p| &*p.name));
    let subs = s.subsections.iter().flat_map(|x| x.fields.iter());
    for f in s.fields.iter().chain(subs) {
        kind(&f.kind, out);
    }
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
    /// invalid, including compat entries that name no device or property of the crate
    /// ([`CrateExport::check_compat_entries`]).
    pub fn parse_document(text: &str, origin: &str) -> Result<CrateExport, Error> {
        let doc: CrateExport = serde_json::from_str(text)
            .map_err(|e| Error::BadInput(format!("{origin}: not a schema export: {e}")))?;
        doc.catalog
            .validate()
            .map_err(|e| Error::BadInput(format!("{origin}: {e}")))?;
        doc.check_compat_entries().map_err(|e| match e {
            Error::BadInput(m) => Error::BadInput(format!("{origin}: {m}")),
            e => e,
        })?;
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

/// The export of `tests/fixtures/sample-export.json`, for unit tests.
#[cfg(test)]
pub(crate) fn sample_export() -> Export {
    let text = include_str!("../tests/fixtures/sample-export.json");
    let mut e = Export::default();
    e.add(Export::parse_document(text, "sample").unwrap())
        .unwrap();
    e
}

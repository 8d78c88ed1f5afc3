//! Schema export: every top-level `#[derive(VmState)]` type of a binary is registered in
//! [`SCHEMAS`] (a link-time collected slice), so tools find a crate's devices without a
//! hand-written list.
//!
//! A crate adds one line to its `lib.rs` so `cargo compat-check` can read its devices and
//! machine catalog:
//!
//! ```ignore
//! vmstate_runtime::export_schemas!(catalog = crate::catalog);
//! ```
//!
//! That generates the test `__vmstate_export_schemas`; when the environment variable
//! `VMSTATE_SCHEMA_EXPORT` names a file, the test writes
//! `{"crate": …, "catalog": …, "devices": [StructSchema…]}` there.

use crate::machine::MachineCatalog;
use crate::schema::StructSchema;

/// Every top-level `VmState` description linked into this binary.
#[linkme::distributed_slice]
pub static SCHEMAS: [&'static StructSchema];

/// The descriptions declared by package `krate`, sorted by section name.
#[must_use]
pub fn schemas_of(krate: &str) -> Vec<&'static StructSchema> {
    let mut v: Vec<&'static StructSchema> = SCHEMAS
        .iter()
        .copied()
        .filter(|s| s.krate == krate)
        .collect();
    v.sort_by_key(|s| (&*s.name, &*s.rust_name));
    v
}

/// The export document for package `krate`.
#[must_use]
pub fn export_json(krate: &str, catalog: &MachineCatalog) -> serde_json::Value {
    let devices: Vec<serde_json::Value> = schemas_of(krate).iter().map(|s| s.to_json()).collect();
    serde_json::json!({
        "crate": krate,
        "catalog": catalog,
        "devices": devices,
    })
}

/// Body of the generated `__vmstate_export_schemas` test: checks that section names are unique
/// in the crate, and writes the export document to `$VMSTATE_SCHEMA_EXPORT` when it is set.
///
/// # Panics
/// When two sections of the crate share a name, or the file cannot be written (it is a test).
pub fn export_from_env(krate: &str, catalog: &MachineCatalog) {
    let schemas = schemas_of(krate);
    for w in schemas.windows(2) {
        assert!(
            w[0].name != w[1].name,
            "two VmState sections are named `{}`: {} and {}",
            w[0].name,
            w[0].rust_name,
            w[1].rust_name
        );
    }
    let doc = export_json(krate, catalog);
    if let Some(path) = std::env::var_os("VMSTATE_SCHEMA_EXPORT") {
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            panic!(
                "cannot write {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
}

/// Declares the crate's schema export for `cargo compat-check` (one line in `lib.rs`):
/// `vmstate_runtime::export_schemas!(catalog = crate::catalog);` where `catalog` is a
/// `fn() -> MachineCatalog`.
#[macro_export]
macro_rules! export_schemas {
    (catalog = $catalog:path) => {
        #[cfg(test)]
        #[test]
        fn __vmstate_export_schemas() {
            $crate::export::export_from_env(::core::env!("CARGO_PKG_NAME"), &$catalog());
        }
    };
}

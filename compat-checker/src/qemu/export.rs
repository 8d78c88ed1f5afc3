//! Our descriptions in QEMU's `-dump-vmstate` format (qemu-wire-format.md §6):
//! `cargo compat-check export-qemu-dump MACHINE-TYPE`.
//!
//! The file has the shape `qemu-system-x86_64 -M MACHINE-TYPE -dump-vmstate FILE` writes, so
//! `cargo compat-check qemu-dump QEMU.json OURS.json --common-only` (or QEMU's own
//! `vmstate-static-checker.py`) compares our description of each device with QEMU's.
//!
//! How each part of a schema is written:
//!
//! - **One entry per top-level section**, keyed by its QOM type name from the crate's
//!   `[package.metadata.compat-check.qom-types]` table (`"isa-serial" = "serial"`; several QOM
//!   types may name one section, as `isa-pit` and `kvm-pit` do), or by the section name when the
//!   table does not name it (a device that exists only in a Rust VMM has no QOM type).
//! - **Versions**: a section's `version_id` is the one it writes for MACHINE-TYPE (a `pin` can
//!   lower it); nested structs and subsections at their own version, as QEMU writes them.
//! - **Fields**: `version_id` is the field's `since` (0 when always present, like QEMU's fields
//!   without `_V`), or its `noop_since`: a `since` that never matters because the field's vmsd
//!   is never loaded below it (QEMU's `_V(field, N)` at such an N); `field_exists` is true when the field has a gate (machine type, property or
//!   predicate: QEMU would write each as a test function, which the dump shows only as this
//!   boolean); `size` is the size of one element on the wire — QEMU writes the C `sizeof` there,
//!   which equals the wire size for every primitive, buffer and `unused` field, and is never
//!   compared for nested structs (which have no wire size of their own); 0 for a variable
//!   buffer, as QEMU writes it (whether its length is a migrated or a local field); 4 for a
//!   `u16_hack` field (QEMU's VMSTATE_UINT16_HACK: the dump gives the `uint32_t` storage, the
//!   wire has 2 bytes); the whole field for one with a `vmdesc_type` (a device-level
//!   codec such as `pci irq state`, one item of 16 bytes). `num` (dumps from QEMU ≥ 8.1) is not written, as QEMU 7.2 does
//!   not.
//! - **Subsections** are listed statically, all of them, as QEMU lists them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use vmstate_runtime::schema::{FieldSchema, Kind, MachineVersion, StructSchema, SubsectionSchema};

use crate::error::Error;
use crate::schema::Export;

/// QOM type name → section name, from every crate's `qom-types` table.
pub type QomTypes = BTreeMap<String, String>;

/// The `-dump-vmstate` document of `export` for the machine type `machine`.
///
/// # Errors
/// [`Error::BadInput`] when no crate's catalog knows `machine`, or a `qom-types` entry names a
/// section no crate declares.
pub fn qemu_dump(export: &Export, machine: &str, qom: &QomTypes) -> Result<Value, Error> {
    let version = machine_version(export, machine)?;
    let mut out = Map::new();
    out.insert("vmschkmachine".into(), json!({ "Name": machine }));
    for (qom_type, section) in qom {
        if !export.devices().any(|(_, d)| d.name == *section) {
            return Err(Error::BadInput(format!(
                "qom-types: `{qom_type}` names section `{section}`, which no crate declares"
            )));
        }
    }
    for (_, dev) in export.devices() {
        let mut keys: Vec<&str> = qom
            .iter()
            .filter(|(_, s)| **s == dev.name)
            .map(|(k, _)| k.as_str())
            .collect();
        if keys.is_empty() {
            keys.push(&dev.name);
        }
        let v = dev.version_for(version);
        for key in keys {
            out.insert(
                key.to_owned(),
                json!({
                    "Name": key,
                    "version_id": v,
                    "minimum_version_id": dev.min_version,
                    "Description": description(&dev.name, v, dev.min_version, &dev.fields, &dev.subsections),
                }),
            );
        }
    }
    Ok(Value::Object(out))
}

fn machine_version(export: &Export, machine: &str) -> Result<MachineVersion, Error> {
    let mut last = None;
    for c in &export.crates {
        match c.catalog.resolve(machine) {
            Ok(m) => return Ok(m.version()),
            Err(e) => last = Some(e.to_string()),
        }
    }
    Err(Error::BadInput(last.unwrap_or_else(|| {
        format!("unknown machine type `{machine}`: the workspace exports no catalog")
    })))
}

fn description(
    name: &str,
    version: u32,
    min: u32,
    fields: &[FieldSchema],
    subs: &[SubsectionSchema],
) -> Value {
    let mut d = Map::new();
    d.insert("name".into(), name.into());
    d.insert("version_id".into(), version.into());
    d.insert("minimum_version_id".into(), min.into());
    if !fields.is_empty() {
        d.insert(
            "Fields".into(),
            fields.iter().map(field).collect::<Vec<_>>().into(),
        );
    }
    if !subs.is_empty() {
        let subs = subs
            .iter()
            .map(|s| description(&s.name, s.version, s.min_version, &s.fields, &[]))
            .collect::<Vec<_>>();
        d.insert("Subsections".into(), subs.into());
    }
    Value::Object(d)
}

fn nested(s: &StructSchema) -> Value {
    description(&s.name, s.version, s.min_version, &s.fields, &s.subsections)
}

fn field(f: &FieldSchema) -> Value {
    let (mut size, desc) = element(&f.kind);
    if f.vmdesc_type.is_some() {
        // A device-level codec (QEMU's own `VMStateInfo`) handles the whole field as one item.
        size = f.kind.fixed_size().unwrap_or(0);
    }
    let mut o = Map::new();
    o.insert("field".into(), f.name.as_ref().into());
    // QEMU's `_V(field, N)`: a real `since`, or one that never matters (`noop_since`).
    o.insert("version_id".into(), f.since.max(f.noop_since).into());
    o.insert("field_exists".into(), f.gate.is_some().into());
    o.insert("size".into(), size.into());
    if let Some(s) = desc {
        o.insert("Description".into(), nested(s));
    }
    Value::Object(o)
}

/// The `size` of one element and the nested struct described under the field, if any.
fn element(kind: &Kind) -> (u64, Option<&StructSchema>) {
    match kind {
        Kind::Struct { schema } | Kind::VStruct { schema, .. } => {
            (schema.fixed_size().unwrap_or(0), Some(schema))
        }
        Kind::Array { elem, .. }
        | Kind::VArray { elem, .. }
        | Kind::Pointer { elem }
        | Kind::List { elem, .. } => element(elem),
        // A temporary view is described by its own vmsd (QEMU's `VMSTATE_WITH_TMP` field).
        Kind::Tmp { view } => element(view),
        // A tree's Description is its value's (QEMU's `VMSTATE_GTREE_V` names the value vmsd).
        Kind::Tree { value, .. } => element(value),
        Kind::VBuffer { .. } => (0, None),
        // QEMU's VMSTATE_UINT16_HACK writes its C storage, a `uint32_t`, for a be16 on the wire.
        Kind::U32AsU16 => (4, None),
        other => (other.fixed_size().unwrap_or(0), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_export_has_the_dump_shape_and_checks_clean_against_itself() {
        let e = crate::schema::sample_export();
        let machine = e.machine_names().pop().unwrap();
        let dump = qemu_dump(&e, &machine, &QomTypes::new()).unwrap();
        assert_eq!(dump["vmschkmachine"]["Name"], machine.as_str());
        let report = super::super::check_qemu_dumps(&dump, &dump).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert!(report.devices_checked > 0);
    }

    #[test]
    fn unknown_machine_and_dangling_qom_type_are_one_line_errors() {
        let e = crate::schema::sample_export();
        let err = qemu_dump(&e, "pc-nope-1.0", &QomTypes::new()).unwrap_err();
        assert!(err.to_string().contains("pc-nope-1.0"), "{err}");
        let machine = e.machine_names().pop().unwrap();
        let qom = QomTypes::from([("isa-nothing".to_owned(), "nothing".to_owned())]);
        let err = qemu_dump(&e, &machine, &qom).unwrap_err().to_string();
        assert!(
            err.contains("isa-nothing") && err.contains("`nothing`"),
            "{err}"
        );
    }
}

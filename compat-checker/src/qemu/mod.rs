//! QEMU mode: `cargo compat-check qemu-dump SRC.json DST.json`.
//!
//! Compares two QEMU `-dump-vmstate` files (qemu-wire-format.md §6) for the same machine type and
//! reports what would break a migration between the two binaries, **in both directions**.
//!
//! # Directions
//!
//! `SRC` is the dump of the **older** release, `DST` the dump of the **newer** one.
//!
//! - [`Direction::OldToNew`] (forward): can `DST` load what `SRC` sends? The sender is "old", the
//!   receiver "new". This is what `vmstate-static-checker.py -s SRC -d DST` checks.
//! - [`Direction::NewToOld`] (reverse): can `SRC` load what `DST` sends? The sender is "new", the
//!   receiver "old". This is what `vmstate-static-checker.py -s SRC -d DST --reverse` checks.
//! - [`Direction::Both`]: only `qemu-machine-mismatch`, which is not about one direction.
//!
//! Messages say "old" and "new" for the two dumps.
//!
//! # Rules
//!
//! Every check of QEMU's `scripts/vmstate-static-checker.py` is reproduced with the same walk, the
//! same allowances and the same results, so that everything the script reports is reported here
//! under a `qemu-*` id (see [`qemu_rules`]; each rule is a file under `src/rules/qemu/`). The allowances are:
//!
//! - the section rename table (`"ICH9 LPC"`↔`"ICH9-LPC"`, `"e1000-82540em"`↔`"e1000"`);
//! - the per-Description allowlist of renamed fields (the script's `changed_names`);
//! - fields moved into (or out of) a nested struct whose first field is the one expected;
//! - an `unused` field standing for a run of fields of the same total size.
//!
//! On top of that this module catches what the script misses:
//!
//! - `qemu-field-appended`: the receiver expects fields after the last one the sender sends (the
//!   script never looks at the receiver's trailing fields, so it passes the forward check);
//! - `qemu-conditional-field-appended` (warn): the same for a field with a `field_exists` test;
//! - `qemu-field-presence-changed`: a field's `version_id` changed so that the sender sends it and
//!   the receiver skips it, or the reverse (the script only compares `version_id`s one way);
//! - `qemu-array-length-changed`: the `num` of a fixed array differs (dumps from QEMU ≥ 8.1);
//! - `qemu-unused-size-mismatch` also when an `unused` run is still open at the end of the fields;
//! - `qemu-minimum-version` also at section level (the script prints half a line and does not
//!   count it);
//! - `qemu-machine-mismatch` is reported as a finding (warn) rather than only printed.
//!
//! Presence follows QEMU's rule (qemu-wire-format.md §1.2, §1.7): a top-level section or a
//! subsection is saved and loaded at the sender's `version_id` (it is in the header); a nested
//! struct is saved at the sender's nested `version_id` and loaded at the receiver's.
//!
//! # Paths
//!
//! A finding's `path` starts with the top-level Description name, then the field chain:
//! `serial/state.divider` is field `divider` of the struct in field `state` of Description
//! `serial`. A subsection is written in braces after its parent:
//! `serial/state{serial/tsr}.thr`. Section-level findings have an empty path.
//!
//! # Errors
//!
//! [`check_qemu_dumps`] never panics. A dump that does not have the shape `-dump-vmstate` writes
//! (not an object, no `vmschkmachine.Name`, a field without an integer `size`, nesting deeper than
//! 64 Descriptions, ...) gives `Err` with a one-line message that names the dump (`SRC` or `DST`)
//! and where in it the problem is.

pub(crate) mod allow;
pub mod dump;
pub mod export;
pub mod step;
mod walk;

use serde_json::Value;

use crate::finding::{Direction, Report, Severity};
use crate::rules;
pub use step::{Hits, Step};
use walk::Walk;

/// Every rule of the QEMU mode: `(id, default severity, one-line summary, long explanation)`,
/// for `--list` and `--explain` (the registry is [`rules::qemu::ALL`]).
#[must_use]
pub fn qemu_rules() -> Vec<(&'static str, Severity, &'static str, &'static str)> {
    rules::qemu::ALL
        .iter()
        .map(|r| (r.id, step::severity(r.level), r.summary, r.explanation))
        .collect()
}

/// Compares two `-dump-vmstate` dumps in both directions; see the [module docs](self).
///
/// `src` is the older release's dump, `dst` the newer release's, for the same machine type.
///
/// # Errors
///
/// A one-line message if either value is not shaped like a `-dump-vmstate` dump.
///
/// # Examples
///
/// ```
/// # use compat_checker::qemu::check_qemu_dumps;
/// let dump = serde_json::json!({
///     "vmschkmachine": {"Name": "pc-i440fx-7.2"},
///     "isa-serial": {"Name": "isa-serial", "version_id": 3, "minimum_version_id": 2,
///         "Description": {"name": "serial", "version_id": 3, "minimum_version_id": 2,
///             "Fields": [{"field": "divider", "version_id": 2, "field_exists": false, "size": 2}]}}
/// });
/// let report = check_qemu_dumps(&dump, &dump).unwrap();
/// assert!(report.findings.is_empty());
/// ```
pub fn check_qemu_dumps(src: &Value, dst: &Value) -> Result<Report, String> {
    let old = dump::parse_dump(src, "SRC")?;
    let new = dump::parse_dump(dst, "DST")?;

    let mut machines = vec![old.machine.clone()];
    if new.machine != old.machine {
        machines.push(new.machine.clone());
    }

    let mut findings = Vec::new();
    Walk {
        dir: Direction::Both,
        snd: "old",
        rcv: "new",
        machines: &machines,
        section: "vmschkmachine".to_owned(),
        findings: &mut findings,
    }
    .ask(&Step::Machines {
        old: &old.machine,
        new: &new.machine,
    });

    for (dir, sender, receiver, snd, rcv) in [
        (Direction::OldToNew, &old, &new, "old", "new"),
        (Direction::NewToOld, &new, &old, "new", "old"),
    ] {
        let mut walk = Walk {
            dir,
            snd,
            rcv,
            machines: &machines,
            section: String::new(),
            findings: &mut findings,
        };
        walk.check_dumps(sender, receiver);
    }

    let mut devices_checked = old.sections.len();
    devices_checked += new
        .sections
        .iter()
        .filter(|s| old.lookup(&s.key).is_none())
        .count();

    let mut report = Report {
        machines_checked: machines,
        devices_checked,
        findings,
    };
    report.sort();
    Ok(report)
}

/// Drops from both dumps every section the other does not have (under its name or its name in
/// the rename table), keeping `vmschkmachine`: what `qemu-dump --common-only` compares. For a
/// dump of QEMU against [`export::qemu_dump`] of a VMM that implements some of QEMU's devices.
pub fn keep_common_sections(a: &mut Value, b: &mut Value) {
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (ka, kb) = (keys(a), keys(b));
    let has = |keys: &[String], k: &str| {
        k == "vmschkmachine"
            || keys.iter().any(|x| x == k)
            || allow::renamed_section(k).is_some_and(|r| keys.iter().any(|x| x == r))
    };
    if let Some(o) = a.as_object_mut() {
        o.retain(|k, _| has(&kb, k));
    }
    if let Some(o) = b.as_object_mut() {
        o.retain(|k, _| has(&ka, k));
    }
}

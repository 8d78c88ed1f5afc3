//! The QEMU-dump rules (`cargo compat-check qemu-dump SRC.json DST.json`): one file per rule,
//! registered in [`ALL`]. Each holds its id, level, summary, explanation and its detection over
//! the dump walk's [`Step`](crate::qemu::Step)s ([`Detect::QemuDump`](super::Detect::QemuDump)).
//!
//! Adding a rule: add the file, register it here, add
//! `tests/qemu-fixtures/<id>/{old,new}.json` and `tests/snapshots/<id>.txt`; tests fail if any
//! of these is missing.

use super::Rule;

pub mod array_length_changed;
pub mod conditional_field_appended;
pub mod description_renamed;
pub mod dest_runs_out_of_fields;
pub mod entry_missing;
pub mod field_appended;
pub mod field_mismatch;
pub mod field_presence_changed;
pub mod field_size_mismatch;
pub mod machine_mismatch;
pub mod minimum_version;
pub mod missing_description;
pub mod section_missing;
pub mod subsection_missing;
pub mod unused_size_mismatch;
pub mod version_too_new;

/// Every QEMU-dump rule, in `--list` order.
pub const ALL: &[&Rule] = &[
    &section_missing::RULE,
    &version_too_new::RULE,
    &minimum_version::RULE,
    &entry_missing::RULE,
    &description_renamed::RULE,
    &field_mismatch::RULE,
    &unused_size_mismatch::RULE,
    &dest_runs_out_of_fields::RULE,
    &field_size_mismatch::RULE,
    &missing_description::RULE,
    &subsection_missing::RULE,
    &field_appended::RULE,
    &conditional_field_appended::RULE,
    &field_presence_changed::RULE,
    &array_length_changed::RULE,
    &machine_mismatch::RULE,
];

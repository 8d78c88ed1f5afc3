//! `qemu-field-mismatch`: fields differ in name or order.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-field-mismatch` rule.
pub const RULE: Rule = Rule {
    id: "qemu-field-mismatch",
    name: "fields differ in name or order",
    level: Level::Deny,
    summary: "fields differ in name or order",
    explanation:
        "Fields are compared in order. Allowed: the per-Description rename allowlist, fields moved \
         into or out of a nested struct whose first field matches, and 'unused' standing for a run \
         of fields of equal total size. Anything else means the wire layout changed; the rest of \
         that field list is not compared. To drop a field, replace it with VMSTATE_UNUSED of the \
         same size. Same as the static checker's 'expected field \"a\", got \"b\"'.",
    detect: Detect::QemuDump(detect),
};

/// Fields that cannot be aligned.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Misaligned {
        sender: s,
        receiver: d,
        desc,
        path,
    } = *step
    else {
        return;
    };
    let message = format!(
        "{} sends field \"{}\" where {} has \"{}\"; later fields of \"{desc}\" \
         were not compared",
        hits.snd(),
        s.name,
        hits.rcv(),
        d.name
    );
    hits.push(
        path,
        message,
        "keep fields in order under the same names; replace a removed field with \
         VMSTATE_UNUSED of the same size",
    );
}

//! `qemu-field-appended`: the receiver expects fields after the sender's last field.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-field-appended` rule.
pub const RULE: Rule = Rule {
    id: "qemu-field-appended",
    name: "the receiver expects fields after the sender's last field",
    level: Level::Deny,
    summary: "the receiver expects fields after the sender's last field",
    explanation:
        "The receiver's field list goes on after the last field the sender sends, and at the \
         stream's version the receiver loads those fields, so it reads bytes that belong to the \
         next section. vmstate-static-checker.py misses this in the forward direction. Make the \
         new field conditional: a subsection with needed(), or a _V field with a version_id bump.",
    detect: Detect::QemuDump(detect),
};

/// A receiver field after the sender's last one, without `field_exists`, loaded at the
/// receiver's version.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Appended {
        field: f,
        version,
        path,
    } = *step
    else {
        return;
    };
    if f.exists || f.version > version {
        return;
    }
    let message = format!(
        "{} expects field \"{}\" (version_id {} at version {version}) after the last \
         field {} sends",
        hits.rcv(),
        f.name,
        f.version,
        hits.snd()
    );
    hits.push(
        path,
        message,
        "make the new field conditional: a subsection with needed(), or a _V field with a \
         version_id bump",
    );
}

//! `qemu-conditional-field-appended`: the receiver may expect a field_exists field after the sender's last field.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-conditional-field-appended` rule.
pub const RULE: Rule = Rule {
    id: "qemu-conditional-field-appended",
    name: "the receiver may expect a field_exists field after the sender's last field",
    level: Level::Warn,
    summary: "the receiver may expect a field_exists field after the sender's last field",
    explanation: "Like qemu-field-appended, but the receiver's trailing field has a field_exists test, which \
         the dump does not describe. Check that the test is false for streams from the sender.",
    detect: Detect::QemuDump(detect),
};

/// A receiver field with `field_exists` after the sender's last one.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Appended { field: f, path, .. } = *step else {
        return;
    };
    if !f.exists {
        return;
    }
    let message = format!(
        "{} may expect field \"{}\" (it has a field_exists test) after the last field \
         {} sends",
        hits.rcv(),
        f.name,
        hits.snd()
    );
    let fix = format!(
        "check that the field_exists test is false for streams from {}",
        hits.snd()
    );
    hits.push(path, message, fix);
}

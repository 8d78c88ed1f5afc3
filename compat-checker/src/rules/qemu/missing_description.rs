//! `qemu-missing-description`: a nested-struct field has no nested Description in the receiver.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-missing-description` rule.
pub const RULE: Rule = Rule {
    id: "qemu-missing-description",
    name: "a nested-struct field has no nested Description in the receiver",
    level: Level::Deny,
    summary: "a nested-struct field has no nested Description in the receiver",
    explanation:
        "The sender's field is a nested struct (VMSTATE_STRUCT) but the receiver's field of that \
         name is not. Same as the static checker's 'missing description'.",
    detect: Detect::QemuDump(detect),
};

/// A nested-struct field of the sender whose receiver field is not a nested struct.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Some((sf, df, path)) = step.field_pair() else {
        return;
    };
    if sf.desc.is_none() || df.desc.is_some() {
        return;
    }
    let message = format!(
        "field \"{}\" is a nested struct in {} but has no nested Description in {}",
        sf.name,
        hits.snd(),
        hits.rcv()
    );
    hits.push(
        path,
        message,
        "restore the nested VMStateDescription (VMSTATE_STRUCT)",
    );
}

//! `qemu-version-too-new`: the sender's version_id is above the receiver's.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-version-too-new` rule.
pub const RULE: Rule = Rule {
    id: "qemu-version-too-new",
    name: "the sender's version_id is above the receiver's",
    level: Level::Deny,
    summary: "the sender's version_id is above the receiver's",
    explanation:
        "A section, a Description or a field has a higher version_id in the sender than in the \
         receiver. For a section or a subsection the receiver rejects the stream ('too new'). The \
         usual cause is a version_id bump for new state, which breaks new->old migration; put the \
         new state in a subsection whose needed() is false on older machine types instead. Same as \
         the static checker's 'version error' (which also compares nested Descriptions and fields).",
    detect: Detect::QemuDump(detect),
};

/// A sender `version_id` above the receiver's.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Versions {
        what,
        sender: s,
        receiver: d,
        path,
        ..
    } = *step
    else {
        return;
    };
    if s <= d {
        return;
    }
    let fix = if hits.forward() {
        "the new release lowered a version_id: restore it"
    } else {
        "do not bump version_id for new state: put the new state in a subsection whose \
         needed() is false on machine types the old release supports"
    };
    let message = format!(
        "{what} version_id {s} in {} is newer than {}'s version_id {d}",
        hits.snd(),
        hits.rcv()
    );
    hits.push(path, message, fix);
}

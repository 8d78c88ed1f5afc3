//! `qemu-minimum-version`: the sender's version_id is below the receiver's minimum_version_id.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-minimum-version` rule.
pub const RULE: Rule = Rule {
    id: "qemu-minimum-version",
    name: "the sender's version_id is below the receiver's minimum_version_id",
    level: Level::Deny,
    summary: "the sender's version_id is below the receiver's minimum_version_id",
    explanation:
        "The receiver no longer accepts the version the sender writes ('too old'). Do not raise \
         minimum_version_id while a supported older release still sends that version. Same as the \
         static checker's 'minimum version error'; it is also reported at section level, where the \
         script prints a partial line and does not count it.",
    detect: Detect::QemuDump(detect),
};

/// A sender `version_id` below the receiver's `minimum_version_id`.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Versions {
        what,
        sender: s,
        receiver_min: Some(min),
        path,
        ..
    } = *step
    else {
        return;
    };
    if s >= min {
        return;
    }
    let message = format!(
        "{what} version_id {s} in {} is below {}'s minimum_version_id {min}",
        hits.snd(),
        hits.rcv()
    );
    hits.push(
        path,
        message,
        format!(
            "keep minimum_version_id <= {s} while releases that send version {s} are \
             supported"
        ),
    );
}

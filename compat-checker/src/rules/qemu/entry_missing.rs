//! `qemu-entry-missing`: a Description entry (Fields, Subsections, Description, ...) is missing in the receiver.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-entry-missing` rule.
pub const RULE: Rule = Rule {
    id: "qemu-entry-missing",
    name: "a Description entry (Fields, Subsections, Description, ...) is missing in the receiver",
    level: Level::Deny,
    summary:
        "a Description entry (Fields, Subsections, Description, ...) is missing in the receiver",
    explanation:
        "A key of the sender's section or Description (e.g. Fields, Subsections, Description, \
         minimum_version_id) is absent in the receiver, so the receiver has no fields or \
         subsections where the sender sends some. Same as the static checker's 'Entry \"K\" \
         missing'.",
    detect: Detect::QemuDump(detect),
};

/// Each key of the sender's section or Description that the receiver's lacks.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Entries {
        owner,
        kind,
        sender,
        receiver,
        path,
    } = *step
    else {
        return;
    };
    for entry in sender {
        if !receiver.contains(entry) {
            let message = format!(
                "entry \"{entry}\" of {owner} is in {} but missing in {}",
                hits.snd(),
                hits.rcv()
            );
            let fix = format!("restore \"{entry}\" in {}'s {kind}", hits.rcv());
            hits.push(path, message, fix);
        }
    }
}

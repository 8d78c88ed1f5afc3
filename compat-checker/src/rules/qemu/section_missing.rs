//! `qemu-section-missing`: a device section the sender has is missing in the receiver.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-section-missing` rule.
pub const RULE: Rule = Rule {
    id: "qemu-section-missing",
    name: "a device section the sender has is missing in the receiver",
    level: Level::Deny,
    summary: "a device section the sender has is missing in the receiver",
    explanation: "The receiver's dump has no device type of that QOM name (after the rename table \
         \"ICH9 LPC\"<->\"ICH9-LPC\", \"e1000-82540em\"<->\"e1000\"), so a guest with that device \
         cannot migrate. Forward: the new release dropped or renamed a device type; keep it \
         registered under its old name. Reverse: a device type new in the new release; old machine \
         types must never instantiate it. Same as the static checker's 'does not exist in dest'.",
    detect: Detect::QemuDump(detect),
};

/// A section of the sender that the receiver does not have.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Section {
        sender: s,
        receiver: None,
    } = *step
    else {
        return;
    };
    let fix = if hits.forward() {
        "keep the device type registered under this QOM name in the new release \
         (a rename must keep the old name working)"
    } else {
        "a device type added in the new release cannot migrate to the old one: \
         make sure machine types the old release supports never create it"
    };
    let message = format!(
        "section \"{}\" is in {} but not in {}",
        s.key,
        hits.snd(),
        hits.rcv()
    );
    hits.push("", message, fix);
}

//! `qemu-dest-runs-out-of-fields`: the sender sends fields after the receiver's last field.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-dest-runs-out-of-fields` rule.
pub const RULE: Rule = Rule {
    id: "qemu-dest-runs-out-of-fields",
    name: "the sender sends fields after the receiver's last field",
    level: Level::Deny,
    summary: "the sender sends fields after the receiver's last field",
    explanation:
        "The receiver's field list ends before the sender's. Forward: the new release removed \
         trailing fields; keep them (or an 'unused' of the same size). Reverse: the new release \
         appended fields that the old one cannot load; put them in a subsection whose needed() is \
         false on older machine types. Same as the static checker's 'dest has no further fields'.",
    detect: Detect::QemuDump(detect),
};

/// The receiver's list ends while the sender sends more.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::ReceiverEnds { sender: s, path } = *step else {
        return;
    };
    let fix = if hits.forward() {
        "the new release dropped a trailing field: keep it, or replace it with VMSTATE_UNUSED \
         of the same size"
    } else {
        "the old release cannot load a field appended in the new one: move it into a \
         subsection whose needed() is false on machine types the old release supports"
    };
    let message = format!(
        "{} sends field \"{}\" but {} has no further fields",
        hits.snd(),
        s.name,
        hits.rcv()
    );
    hits.push(path, message, fix);
}

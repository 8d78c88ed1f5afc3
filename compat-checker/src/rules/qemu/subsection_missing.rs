//! `qemu-subsection-missing`: a subsection the sender may send is unknown to the receiver.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-subsection-missing` rule.
pub const RULE: Rule = Rule {
    id: "qemu-subsection-missing",
    name: "a subsection the sender may send is unknown to the receiver",
    level: Level::Deny,
    summary: "a subsection the sender may send is unknown to the receiver",
    explanation:
        "The receiver fails the load when a subsection it does not know arrives. The dump does not \
         show needed(), so every subsection of the sender counts. Forward: keep the subsection in \
         the new release. Reverse: make its needed() false on machine types the old release \
         supports (compat property). Same as the static checker's 'Subsection \"n\" not found'.",
    detect: Detect::QemuDump(detect),
};

/// A subsection of the sender the receiver does not know.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Subsection {
        sub,
        parent,
        found: false,
        path,
    } = *step
    else {
        return;
    };
    let fix = if hits.forward() {
        "keep the subsection in the new release"
    } else {
        "make its needed() false on machine types the old release supports (a \
         compat property)"
    };
    let message = format!(
        "subsection \"{}\" of \"{}\" may be sent by {} but {} does not know it",
        sub.name,
        parent.name,
        hits.snd(),
        hits.rcv()
    );
    hits.push(path, message, fix);
}

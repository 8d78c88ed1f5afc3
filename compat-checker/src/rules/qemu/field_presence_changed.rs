//! `qemu-field-presence-changed`: a field's version_id change makes sender and receiver disagree on whether it is sent.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-field-presence-changed` rule.
pub const RULE: Rule = Rule {
    id: "qemu-field-presence-changed",
    name: "a field's version_id change makes sender and receiver disagree on whether it is sent",
    level: Level::Deny,
    summary: "a field's version_id change makes sender and receiver disagree on whether it is sent",
    explanation:
        "A field without field_exists is on the wire iff its version_id <= the stream version \
         (the section or subsection header version; for a nested struct, each side's own nested \
         version_id). The field's version_id differs between the dumps such that one side sends or \
         expects it and the other does not. vmstate-static-checker.py only checks a sender \
         version_id above the receiver's. Keep a field's version_id once released.",
    detect: Detect::QemuDump(detect),
};

/// Two aligned fields without `field_exists` of which one side sends and the other does not
/// expect, or the reverse, at their lists' versions.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::FieldPair {
        sender: sf,
        receiver: df,
        sender_version,
        receiver_version,
        path,
    } = *step
    else {
        return;
    };
    if sf.exists || df.exists {
        return;
    }
    let sent = sf.version <= sender_version;
    let expected = df.version <= receiver_version;
    if sent == expected {
        return;
    }
    let (a, b) = if sent {
        ("sends", "skips it")
    } else {
        ("does not send", "expects it")
    };
    let message = format!(
        "{} {a} field \"{}\" (version_id {} at version {}) but {} {b} \
         (version_id {} at version {})",
        hits.snd(),
        sf.name,
        sf.version,
        sender_version,
        hits.rcv(),
        df.version,
        receiver_version
    );
    hits.push(
        path,
        message,
        "keep a released field's version_id unchanged",
    );
}

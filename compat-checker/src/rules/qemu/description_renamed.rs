//! `qemu-description-renamed`: a VMStateDescription has another name in the receiver.

use crate::qemu::allow::names_match;
use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-description-renamed` rule.
pub const RULE: Rule = Rule {
    id: "qemu-description-renamed",
    name: "a VMStateDescription has another name in the receiver",
    level: Level::Deny,
    summary: "a VMStateDescription has another name in the receiver",
    explanation:
        "The name of a top-level Description or a subsection is on the wire (section idstr, \
         subsection header); a nested struct's is not but the script reports it too. The \
         per-section allowlist of renames is honoured. Keep the name. Same as the static checker's \
         'Description \"A\" missing, got \"B\" instead'; the rest of that Description is not \
         compared.",
    detect: Detect::QemuDump(detect),
};

/// Two Descriptions at the same place whose names differ (outside the allowlist).
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Description {
        sender: s,
        receiver: d,
        path,
    } = *step
    else {
        return;
    };
    if names_match(hits.section(), &s.name, &d.name) {
        return;
    }
    let message = format!(
        "Description \"{}\" in {} is named \"{}\" in {}; its contents were not compared",
        s.name,
        hits.snd(),
        d.name,
        hits.rcv()
    );
    hits.push(
        path,
        message,
        "keep the VMStateDescription name (section and subsection names are on the wire)",
    );
}

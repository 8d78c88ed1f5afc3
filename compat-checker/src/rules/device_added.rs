//! `device-added`: new section may be sent on a frozen machine type.

use super::{Detect, Level, Rule};
use crate::check::step::{gate_section, presence_text};
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::Presence;

/// The `device-added` rule.
pub const RULE: Rule = Rule {
    id: "device-added",
    name: "new section may be sent on a frozen machine type",
    level: Level::Deny,
    summary: "a new device section may be sent for a frozen machine type",
    explanation: r#"A device section exists in the current code that the baseline of a machine type does not
have, and it may be sent for that machine type.

Why it breaks (new → old): the release that froze the machine type has no handler for the
section and fails the load ("Unknown savevm section"). If the VMM never instantiates the device
on old machine types, say so in the code, so that the checker can prove it.

How to fix: gate the whole section on the machine type, `#[vmstate(when = machine >= "8.0")]`
on the struct. A section that is never sent for a frozen machine type is not reported."#,
    detect: Detect::Native(detect),
};

/// A device the baseline does not have, sent for the frozen machine type.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::DeviceNew { cur: cd } = *step else {
        return;
    };
    if cd.presence == Presence::Never {
        return;
    }
    hits.push(
        Direction::NewToOld,
        "",
        format!(
            "new section ({}) is {} for these machine types; the release that froze them has \
             no such device and fails the load",
            cd.rust_name,
            presence_text(cd.presence, cd.when.as_deref())
        ),
        cd.at.as_ref(),
        gate_section(cd),
    );
}

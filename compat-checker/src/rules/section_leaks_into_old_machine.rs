//! `section-leaks-into-old-machine`: section may be sent where the baseline never sent it.

use super::{Detect, Level, Rule};
use crate::check::step::{gate_section, presence_text};
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::Presence;

/// The `section-leaks-into-old-machine` rule.
pub const RULE: Rule = Rule {
    id: "section-leaks-into-old-machine",
    name: "section may be sent where the baseline never sent it",
    level: Level::Deny,
    summary: "a section gated off a frozen machine type may now be sent for it",
    explanation: r#"The baseline of a machine type recorded a device whose section gate (`when` on the struct)
kept it out of the stream, and the current code may send it for that machine type.

Why it breaks (new → old): the frozen stream of that machine type has no such section; the
release that froze it never expects one, and a VM migrated back and forth would carry state the
machine type must not have.

How to fix: restore the section gate for the affected machine types, e.g.
`#[vmstate(when = machine >= "8.0")]` on the struct (combine with an existing gate using
`all(...)`)."#,
    detect: Detect::Native(detect),
};

/// A device whose frozen baseline never sends it, now sent.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Device { base: bd, cur: cd } = *step else {
        return;
    };
    if bd.presence != Presence::Never || cd.presence == Presence::Never {
        return;
    }
    hits.push(
        Direction::NewToOld,
        "",
        format!(
            "the section is now {} for these machine types; the frozen baseline never \
             sent it",
            presence_text(cd.presence, cd.when.as_deref())
        ),
        cd.at.as_ref(),
        gate_section(cd),
    );
}

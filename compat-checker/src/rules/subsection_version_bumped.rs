//! `subsection-version-bumped`: subsection sent at a newer version than frozen.

use super::{Detect, Level, Rule};
use crate::check::step::NEXT;
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::{Cond, Presence};

/// The `subsection-version-bumped` rule.
pub const RULE: Rule = Rule {
    id: "subsection-version-bumped",
    name: "subsection sent at a newer version than frozen",
    level: Level::Deny,
    summary: "a subsection is now sent at a version the frozen release does not accept",
    explanation: r#"A subsection is sent for a frozen machine type at a version higher than the release that froze
the machine type accepts.

Why it breaks (new → old): the subsection loader checks its version like a section's and fails
on a newer one. Subsections have no pins.

How to fix: keep the subsection at its frozen version and put new state into a new subsection
gated on new machine types, `subsection(name = "dev/x2", when = machine >= "8.0")`."#,
    detect: Detect::Native(detect),
};

/// New → old: a subsection sent at a higher version than its baseline.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Subsection {
        old: Some(os),
        new: Some(ns),
        cx,
    } = *step
    else {
        return;
    };
    if cx.dir != Direction::NewToOld
        || os.presence_at(cx.v) == Presence::Never
        || ns.version <= os.version
    {
        return;
    }
    hits.push(
        cx.dir,
        &ns.name,
        format!(
            "subsection `{}` is now sent at version {}; the release that froze \
             these machine types accepts at most version {}",
            ns.name, ns.version, os.version
        ),
        ns.at.as_ref(),
        format!(
            "keep `{}` at version {} and put the new state into a new subsection \
             gated `when = machine >= \"{NEXT}\"`",
            ns.name, os.version
        ),
    );
}

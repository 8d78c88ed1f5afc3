//! `section-version-bumped`: section sent at a newer version than frozen.

use super::{Detect, Level, Rule};
use crate::check::step::NEXT;
use crate::check::{Hits, Step};
use crate::finding::Direction;

/// The `section-version-bumped` rule.
pub const RULE: Rule = Rule {
    id: "section-version-bumped",
    name: "section sent at a newer version than frozen",
    level: Level::Deny,
    summary: "a frozen machine type now sends a newer section version",
    explanation: r#"The section version sent for a frozen machine type is higher than the one in its baseline.

Why it breaks (new → old): the release that froze the machine type accepts versions up to the
one it knew; a newer version fails the load ("version too new"). Even when it would accept the
version, the stream of the machine type has changed.

How to fix: pin the old machine types to the frozen version:
`#[vmstate(version = 3, pin(below = "8.0", version = 2))]`. Fields added in the new version
need `since = 3`, so a pinned save leaves them out. Machine types from 8.0 on get the new
version."#,
    detect: Detect::Native(detect),
};

/// New → old: the current code sends a higher section version than the baseline froze.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::SectionVersion {
        base: bd,
        cur: cd,
        dir: Direction::NewToOld,
    } = *step
    else {
        return;
    };
    if cd.version <= bd.version {
        return;
    }
    let accepts = if cd.version > bd.accepts.max {
        format!(
            "; the release that froze them accepts at most version {}",
            bd.accepts.max
        )
    } else {
        String::new()
    };
    hits.push(
        Direction::NewToOld,
        "",
        format!(
            "now sent at version {} for these machine types; the baseline froze \
             version {}{accepts}",
            cd.version, bd.version
        ),
        cd.pinned_at.as_ref().or(cd.at.as_ref()),
        format!(
            "add `pin(below = \"{NEXT}\", version = {})` to `#[vmstate(...)]` of `{}`, so \
             these machine types keep sending version {} (fields added since need \
             `since = {}`)",
            bd.version,
            cd.rust_name,
            bd.version,
            bd.version + 1
        ),
    );
}

//! `section-version-bumped`: section sent at a newer version than frozen.

use super::{Level, Rule};

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
};

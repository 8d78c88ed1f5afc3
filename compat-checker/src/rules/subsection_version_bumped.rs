//! `subsection-version-bumped`: subsection sent at a newer version than frozen.

use super::{Level, Rule};

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
};

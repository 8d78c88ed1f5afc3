//! `field-no-longer-migrated`: field gated off a machine type that sent it.

use super::{Level, Rule};

/// The `field-no-longer-migrated` rule.
pub const RULE: Rule = Rule {
    id: "field-no-longer-migrated",
    name: "field gated off a machine type that sent it",
    level: Level::Deny,
    summary: "a field is still declared but no longer on the wire for a frozen machine type",
    explanation: r#"A field that the baseline of a machine type has on the wire is still declared, but its gate
or `since` now keeps it off the wire for that machine type.

Why it breaks, in both directions: the release that froze the machine type sends the field
(old → new: this code does not read it and misreads what follows) and expects it (new → old).

How to fix: make the field present again for the affected machine types, e.g.
`when = any(machine < "8.0", <new gate>)`, or lower its `since` to a version those machine types
send."#,
};

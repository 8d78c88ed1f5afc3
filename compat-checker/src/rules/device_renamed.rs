//! `device-renamed`: section renamed.

use super::{Level, Rule};

/// The `device-renamed` rule.
pub const RULE: Rule = Rule {
    id: "device-renamed",
    name: "section renamed",
    level: Level::Deny,
    summary: "a device section was renamed",
    explanation: r#"A section of the baseline is gone and a section of the same Rust type appeared under another
name. The section name (idstr) is on the wire: the destination finds the handler by it.

Why it breaks: in both directions the receiver does not know the section.

How to fix: keep the wire name with `#[vmstate(name = "<old name>")]` on the struct; the Rust
type can be renamed freely."#,
};

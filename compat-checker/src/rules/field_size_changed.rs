//! `field-size-changed`: field size changed.

use super::{Level, Rule};

/// The `field-size-changed` rule.
pub const RULE: Rule = Rule {
    id: "field-size-changed",
    name: "field size changed",
    level: Level::Deny,
    summary: "a field changed its size on the wire",
    explanation: r#"A field keeps its position but its size on the wire changed: `u16` to `u32`, a buffer of
another length, or `Unused` padding that does not add up to the fields it replaces.

Why it breaks: every byte after the field is misread, in both directions.

How to fix: keep the frozen size on the wire for the old machine types; add a wider field (or a
subsection) gated `when = machine >= "8.0"` for the new ones, and fill the old field from it in
`pre_save`."#,
};

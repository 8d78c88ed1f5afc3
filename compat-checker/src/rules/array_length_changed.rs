//! `array-length-changed`: array length changed.

use super::{Level, Rule};

/// The `array-length-changed` rule.
pub const RULE: Rule = Rule {
    id: "array-length-changed",
    name: "array length changed",
    level: Level::Deny,
    summary: "an array changed its length, count field or maximum",
    explanation: r#"A fixed array (of primitives or of nested structs) changed its element count, or a variable
array changed the field its count comes from or its declared maximum.

Why it breaks: arrays are sent element after element with no length on the wire. A longer or
shorter array shifts every byte after it, in both directions. A larger maximum lets this code
send counts the release that froze the machine type rejects (new → old); a smaller one rejects
counts that release sends (old → new). QEMU's static checker only sees this when the dump
carries `num`.

How to fix: keep the frozen length on the wire for the old machine types; migrate the extra
elements in a separate field or subsection gated `when = machine >= "8.0"`."#,
};

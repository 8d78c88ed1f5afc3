//! `field-order-changed`: fields reordered.

use super::{Level, Rule};

/// The `field-order-changed` rule.
pub const RULE: Rule = Rule {
    id: "field-order-changed",
    name: "fields reordered",
    level: Level::Deny,
    summary: "fields on the wire are in a different order",
    explanation: r#"A field is still on the wire for a frozen machine type but at a different position relative
to the other fields.

Why it breaks: the wire has no field names; the receiver reads fields in its declaration order,
so reordered fields swap values (or shift bytes when their sizes differ), in both directions.

How to fix: restore the frozen declaration order of the migrated fields (the order of Rust fields
that are `skip`ped does not matter)."#,
};

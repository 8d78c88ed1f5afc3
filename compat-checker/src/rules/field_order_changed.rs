//! `field-order-changed`: fields reordered.

use super::{Detect, Level, Rule};
use crate::check::{Hits, Step};

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
    detect: Detect::Native(detect),
};

/// A field on the wire on both sides, but at another position.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Moved {
        key,
        new,
        old_keys: ok,
        cx,
    } = *step
    else {
        return;
    };
    let pos = ok.iter().position(|k| *k == key).unwrap_or(0);
    let before = pos.checked_sub(1).map(|p| ok[p]);
    let after = ok.get(pos + 1).copied();
    let frozen = match (before, after) {
        (Some(b), Some(a)) => format!("between `{b}` and `{a}`"),
        (Some(b), None) => format!("after `{b}`"),
        (None, Some(a)) => format!("before `{a}`"),
        (None, None) => "alone".to_owned(),
    };
    hits.push(
        cx.dir,
        key,
        format!(
            "field `{key}`{} is at a different position than in the frozen baseline, where \
             it comes {frozen}",
            cx.in_sub()
        ),
        new.at(),
        format!("restore the frozen order: declare `{key}` {frozen} again"),
    );
}

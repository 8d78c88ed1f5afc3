//! `field-size-changed`: field size changed.

use super::{Detect, Level, Rule};
use crate::check::step::{bytes, is_padding, keep_frozen_form};
use crate::check::{Hits, Step};
use crate::layout::Item;

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
    detect: Detect::Native(detect),
};

/// An aligned field whose size on the wire changed (padding: any size change; other fields:
/// a change of size at the same array dimensions).
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Pair {
        old: o @ Item::Field(of),
        new: n @ Item::Field(nf),
        cx,
    } = *step
    else {
        return;
    };
    let key = n.key();
    let fix = if is_padding(o) || is_padding(n) {
        if of.size == nf.size && of.size.is_some() {
            return;
        }
        format!("make it {} again", of.size.map_or_else(|| o.shape(), bytes))
    } else {
        if of.len != nf.len || of.count != nf.count || of.max != nf.max || of.size == nf.size {
            return;
        }
        keep_frozen_form(key, o)
    };
    hits.shape_changed(&cx, key, o, n, fix);
}

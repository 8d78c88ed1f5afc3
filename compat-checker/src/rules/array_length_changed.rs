//! `array-length-changed`: array length changed.

use super::{Detect, Level, Rule};
use crate::check::step::{is_padding, NEXT};
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::Item;

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
    detect: Detect::Native(detect),
};

/// An aligned array whose element count changed, or whose declared maximum changed in the way
/// that breaks this direction (larger: new → old; smaller: old → new).
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Pair { old: o, new: n, cx } = *step else {
        return;
    };
    let key = n.key();
    let (len, count, max) = match (o, n) {
        (Item::Field(of), Item::Field(nf)) if !is_padding(o) && !is_padding(n) => {
            ((of.len, nf.len), (&of.count, &nf.count), (of.max, nf.max))
        }
        (Item::Array(oa), Item::Array(na)) => {
            ((oa.len, na.len), (&oa.count, &na.count), (oa.max, na.max))
        }
        _ => return,
    };
    // A fixed length that became a local count (or back) is `array-counted-by-configuration`.
    if super::array_counted_by_configuration::counted_by_configuration(o, n).is_some() {
        return;
    }
    if len.0 != len.1 || count.0 != count.1 {
        hits.push(
            cx.dir,
            key,
            format!(
                "array `{key}`{} changed from {} to {}",
                cx.in_sub(),
                o.shape(),
                n.shape()
            ),
            n.at(),
            format!(
                "keep `{key}` as {} on the wire for these machine types; migrate extra \
                 elements in a separate field or subsection gated `when = machine >= \
                 \"{NEXT}\"`",
                o.shape()
            ),
        );
        return;
    }
    if max.0 == max.1 {
        return;
    }
    let (om, nm) = (max.0.unwrap_or(0), max.1.unwrap_or(0));
    let breaks = if nm > om {
        Direction::NewToOld
    } else {
        Direction::OldToNew
    };
    if cx.dir != breaks {
        return;
    }
    hits.push(
        cx.dir,
        key,
        format!(
            "variable array `{key}`{} changed its maximum from {om} to {nm}",
            cx.in_sub()
        ),
        n.at(),
        format!("restore `max = {om}` on `{key}`"),
    );
}

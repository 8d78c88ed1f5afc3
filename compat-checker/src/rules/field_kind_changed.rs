//! `field-kind-changed`: field codec changed.

use super::{Detect, Level, Rule};
use crate::check::step::{is_padding, keep_frozen_form};
use crate::check::{Hits, Step};
use crate::layout::Item;

/// The `field-kind-changed` rule.
pub const RULE: Rule = Rule {
    id: "field-kind-changed",
    name: "field codec changed",
    level: Level::Deny,
    summary: "a field changed its codec (e.g. u32 to i32, primitive to struct array)",
    explanation: r#"A field keeps its position but changed its codec: a signed/unsigned or timer change of the
same size, a primitive replaced by an array of structs, or a variable array that takes its count
from another field.

Why it breaks: the bytes keep their size but mean something else, so values are misread in
both directions (the static checker of QEMU cannot see same-size codec changes).

How to fix: keep the frozen codec on the wire and convert in `pre_save`/`post_load`; send a new
representation as a new field or subsection gated on new machine types
(`when = machine >= "8.0"`)."#,
    detect: Detect::Native(detect),
};

/// An aligned item whose codec changed at the same size, or that changed between a field and
/// an array of structs.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Pair { old: o, new: n, cx } = *step else {
        return;
    };
    let key = n.key();
    match (o, n) {
        (Item::Field(of), Item::Field(nf)) => {
            if is_padding(o)
                || is_padding(n)
                || of.len != nf.len
                || of.count != nf.count
                || of.max != nf.max
                || of.kind == nf.kind
                || of.size != nf.size
            {
                return;
            }
            hits.shape_changed(&cx, key, o, n, keep_frozen_form(key, o));
        }
        (Item::Array(_), Item::Array(_)) | (Item::Subsection(_), Item::Subsection(_)) => {}
        _ => hits.shape_changed(&cx, key, o, n, keep_frozen_form(key, o)),
    }
}

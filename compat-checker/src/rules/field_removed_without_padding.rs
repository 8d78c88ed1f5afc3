//! `field-removed-without-padding`: field removed without Unused padding.

use super::{Detect, Level, Rule};
use crate::check::step::{bytes, NEXT};
use crate::check::{Hits, Step};
use crate::layout::Item;

/// The `field-removed-without-padding` rule.
pub const RULE: Rule = Rule {
    id: "field-removed-without-padding",
    name: "field removed without Unused padding",
    level: Level::Deny,
    summary: "a field was removed without Unused padding of the same size",
    explanation: r#"A field that the baseline of a machine type has on the wire is no longer declared, and no
`Unused<N>` padding of the same size replaces it.

Why it breaks, in both directions: fields are positional and untagged. The release that froze
the machine type sends those bytes (old → new: this code misreads everything after them) and
expects them (new → old: it misreads what this code sends).

How to fix (QEMU's VMSTATE_UNUSED): put padding of the bytes sent where the field was,
`_removed_fifo_level: Unused<1>` (one byte for a `u8` or `bool`); padding is written as zeros
and skipped on load. Or keep the field for the old machine types only:
`#[vmstate(when = machine < "8.0", default)]`."#,
    detect: Detect::Native(detect),
};

/// A frozen field no longer declared, whose bytes no padding of the same size replaces.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Dropped {
        old: o,
        now: None,
        new_gap,
        cx,
    } = *step
    else {
        return;
    };
    let key = o.key();
    let new_pad: u64 = new_gap
        .iter()
        .filter_map(|i| match i {
            Item::Field(f) if f.kind == "unused" => f.size,
            _ => None,
        })
        .sum();
    let mut message = format!(
        "field `{key}` ({}){} is no longer declared; the release that froze these \
         machine types sends and expects it here",
        o.shape(),
        cx.in_sub(),
    );
    if new_pad > 0 {
        message.push_str(&format!(
            "; the padding in its place is {}, which does not match",
            bytes(new_pad)
        ));
    }
    let fix = match (o.fixed_size(), o) {
        (Some(n), Item::Field(f)) if f.kind != "unused" => format!(
            "keep the bytes: declare `_removed_{}: Unused<{n}>` where `{key}` was, or keep the \
             field for these machine types with `#[vmstate(when = machine < \"{NEXT}\", \
             default)]`",
            f.rust_name()
        ),
        (Some(n), _) => format!("restore {} of padding (`Unused<{n}>`) here", bytes(n)),
        (None, _) => format!(
            "keep `{key}` for these machine types with `#[vmstate(when = machine < \
             \"{NEXT}\", default)]`"
        ),
    };
    hits.push(cx.dir, key, message, cx.container, fix);
}

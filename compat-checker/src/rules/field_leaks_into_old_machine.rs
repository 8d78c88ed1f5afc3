//! `field-leaks-into-old-machine`: field on the wire where the baseline never had it.

use super::{Detect, Level, Rule};
use crate::check::step::{gate_with_next, is_padding, presence_text, NEXT};
use crate::check::{Hits, Step};
use crate::layout::Item;

/// The `field-leaks-into-old-machine` rule.
pub const RULE: Rule = Rule {
    id: "field-leaks-into-old-machine",
    name: "field on the wire where the baseline never had it",
    level: Level::Deny,
    summary: "a field may now be sent for a frozen machine type that never sent it",
    explanation: r#"A field is on the wire for a frozen machine type (always, or when its predicate holds), but
the baseline of that machine type never had it there: it is new, or its gate or `since` used
to keep it off the wire for that machine type.

Why it breaks, in both directions:
- new → old: the release that froze the machine type reads the bytes of the new field as the
  next field it knows, and everything after it is misread (or the load fails on trailing
  bytes). QEMU shipped this bug: PIIX4 `acpi-index` leaked into old machine types.
- old → new: a stream from that release lacks the field, but this code reads it anyway.

QEMU's rule (docs/devel/migration/compatibility.rst): a machine type must send and accept
exactly what the release that introduced it did. New state must be tied to new machine types.

How to fix (any one):
- gate the field on the machine type:
  `#[vmstate(when = machine >= "8.0", default)]` (combine an existing gate with
  `all(machine >= "8.0", ...)`);
- move it into a subsection gated the same way (subsections are optional on load, so old
  streams without it still load here);
- for a top-level field: bump the section version to N+1, mark the field `since = N+1`, and
  pin the old machine types with `pin(below = "8.0", version = N)`.

The version to gate on is the first machine type after the newest affected one. If it is not in
the machine catalog yet, add it there, then `cargo compat-check freeze` it."#,
    detect: Detect::Native(detect),
};

/// A current field on the wire where the frozen wire has nothing (padding that fails to
/// replace frozen fields is reported with those fields).
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Appeared {
        new: n,
        was,
        old_gap,
        cx,
    } = *step
    else {
        return;
    };
    if is_padding(n) && !old_gap.is_empty() {
        return;
    }
    let key = n.key();
    let was = match was {
        Some(_) => "the frozen baseline kept it off the wire for these machine types",
        None => "the frozen baseline never had it",
    };
    let rust = match n {
        Item::Field(f) => f.rust_name().to_owned(),
        Item::Array(a) => a.rust.clone().unwrap_or_else(|| a.path.clone()),
        Item::Subsection(s) => s.name.clone(),
    };
    let gate = gate_with_next(n.when());
    let mut fix = format!(
        "gate `{rust}` with `#[vmstate(when = {gate}, default)]`, or move it into a \
         subsection gated `when = machine >= \"{NEXT}\"`"
    );
    if cx.top
        && cx.sub.is_none()
        && (!key.contains('.') || matches!(n, Item::Field(f) if f.rust.is_some()))
    {
        let cur = cx.dev.accepts.max;
        fix.push_str(&format!(
            ", or bump the version to {} with `since = {}` on `{rust}` and \
             `pin(below = \"{NEXT}\", version = {cur})`",
            cur + 1,
            cur + 1
        ));
    }
    hits.push(
        cx.dir,
        key,
        format!(
            "field `{key}` ({}){} is {} for these machine types, but {was}",
            n.shape(),
            cx.in_sub(),
            presence_text(n.cond().presence_at(cx.v), n.when())
        ),
        n.at(),
        fix,
    );
}

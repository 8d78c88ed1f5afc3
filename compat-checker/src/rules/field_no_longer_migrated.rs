//! `field-no-longer-migrated`: field gated off a machine type that sent it.

use super::{Detect, Level, Rule};
use crate::check::step::NEXT;
use crate::check::{Hits, Step};

/// The `field-no-longer-migrated` rule.
pub const RULE: Rule = Rule {
    id: "field-no-longer-migrated",
    name: "field gated off a machine type that sent it",
    level: Level::Deny,
    summary: "a field is still declared but no longer on the wire for a frozen machine type",
    explanation: r#"A field that the baseline of a machine type has on the wire is still declared, but its gate
or `since` now keeps it off the wire for that machine type.

Why it breaks, in both directions: the release that froze the machine type sends the field
(old → new: this code does not read it and misreads what follows) and expects it (new → old).

How to fix: make the field present again for the affected machine types, e.g.
`when = any(machine < "8.0", <new gate>)`, or lower its `since` to a version those machine types
send."#,
    detect: Detect::Native(detect),
};

/// A frozen field still declared, but off the wire where the baseline has it.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Dropped {
        old: o,
        now: Some(n),
        cx,
        ..
    } = *step
    else {
        return;
    };
    let (key, v) = (o.key(), cx.v);
    let why = if n.cond().since() > v {
        format!("`since = {}` is above version {v}", n.cond().since())
    } else {
        match n.when() {
            Some(w) => format!("its gate `{w}` excludes them"),
            None => "it is excluded".to_owned(),
        }
    };
    let fix = match (o.when(), n.when()) {
        (Some(ow), nw) if nw != Some(ow) => format!(
            "restore the gate `{key}` was frozen with for these machine types: \
             `when = {ow}`"
        ),
        (_, Some(w)) if n.cond().since() <= v => format!(
            "keep `{key}` on the wire for these machine types: \
             `when = any(machine < \"{NEXT}\", {w})`"
        ),
        (_, _) => format!(
            "keep `{key}` on the wire for these machine types: lower its `since` to {v} \
             or pin them to a version that has it"
        ),
    };
    hits.push(
        cx.dir,
        key,
        format!(
            "field `{key}` ({}){} is still declared but no longer on the wire for \
             these machine types ({why}); the frozen baseline has it there",
            o.shape(),
            cx.in_sub()
        ),
        n.at(),
        fix,
    );
}

//! `presence-changed-maybe`: field presence changed between always and maybe.

use super::{Detect, Level, Rule};
use crate::check::step::{presence_text, NEXT};
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::Presence;

/// The `presence-changed-maybe` rule.
pub const RULE: Rule = Rule {
    id: "presence-changed-maybe",
    name: "field presence changed between always and maybe",
    level: Level::Deny,
    summary: "a field switched between unconditional and predicate-gated",
    explanation: r#"A field is on the wire in both the baseline and the current code for a frozen machine type,
but one side sends it unconditionally and the other only when a runtime predicate
(`pred(...)`) holds.

Why it breaks: a field has no tag on the wire; the receiver decides whether it is present by
evaluating its *own* gate. When the two sides disagree (one says always, the other evaluates a
predicate that can be false), the stream desynchronises. QEMU documents `_TEST` fields as
"very fragile" for this reason.

How to fix: keep the frozen gate for the affected machine types, e.g.
`when = any(machine < "8.0", pred(Self::x_needed))` to keep an always-sent field unconditional
on old machine types. Moving optional state into a subsection avoids the problem, because a
subsection announces itself on the wire."#,
    detect: Detect::Native(detect),
};

/// An aligned field or array whose presence at the stream version differs (always vs maybe).
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Pair { old: o, new: n, cx } = *step else {
        return;
    };
    if std::mem::discriminant(o) != std::mem::discriminant(n) {
        return;
    }
    let key = n.key();
    let (op, np) = (o.cond().presence_at(cx.v), n.cond().presence_at(cx.v));
    if op == np {
        return;
    }
    let fix = if np == Presence::Maybe {
        format!(
            "keep `{key}` unconditional for these machine types: `when = any(machine < \
             \"{NEXT}\", {})`",
            n.when().unwrap_or("...")
        )
    } else {
        format!(
            "restore the frozen gate `{}` of `{key}` for these machine types",
            o.when().unwrap_or("...")
        )
    };
    hits.push(
        Direction::Both,
        key,
        format!(
            "field `{key}`{} was {} and is now {}; the receiver decides with its own gate, so \
             both sides must agree",
            cx.in_sub(),
            presence_text(op, o.when()),
            presence_text(np, n.when())
        ),
        n.at(),
        fix,
    );
}

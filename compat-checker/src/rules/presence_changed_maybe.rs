//! `presence-changed-maybe`: field presence changed between always and maybe.

use super::{Level, Rule};

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
};

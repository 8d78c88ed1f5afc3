//! `subsection-leaks-into-old-machine`: subsection may be sent where the baseline never sent it.

use super::{Detect, Level, Rule};
use crate::check::step::{gate_with_next, presence_text};
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::{Cond, Presence};

/// The `subsection-leaks-into-old-machine` rule.
pub const RULE: Rule = Rule {
    id: "subsection-leaks-into-old-machine",
    name: "subsection may be sent where the baseline never sent it",
    level: Level::Deny,
    summary: "a subsection may now be sent for a frozen machine type that never sent it",
    explanation: r#"A subsection may now be sent (always, or when its predicate holds) for a frozen machine type
whose baseline never sent it: the subsection is new, or its gate used to exclude that machine
type.

Why it breaks (new → old): the release that froze the machine type either does not declare the
subsection, and fails the load on an unknown subsection (QEMU returns -ENOENT), or never sent it
for this machine type, so the stream is no longer the one that machine type is frozen to.

A subsection that is merely *not* sent any more is fine: a missing subsection loads, and the
destination keeps the defaults of its fields.

How to fix: gate the subsection on the machine type,
`subsection(name = "dev/x", when = machine >= "8.0")`, or combine its existing gate with
`all(machine >= "8.0", pred(Self::x_needed))`. This is the pattern QEMU uses with a compat
property read by `needed()`; here the gate is declarative, so the checker can prove it."#,
    detect: Detect::Native(detect),
};

/// New → old: a subsection sent where the frozen release does not declare it, or where its
/// baseline never sent it.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Subsection {
        old,
        new: Some(ns),
        cx,
    } = *step
    else {
        return;
    };
    if cx.dir != Direction::NewToOld {
        return;
    }
    let why = match old {
        None => {
            "the release that froze them does not declare it, and fails the load on an \
                 unknown subsection"
        }
        Some(os) if os.presence_at(cx.v) == Presence::Never => {
            "the frozen baseline never sent it for them"
        }
        Some(_) => return,
    };
    hits.push(
        cx.dir,
        &ns.name,
        format!(
            "subsection `{}` (version {}) is {} for these machine types; {why}",
            ns.name,
            ns.version,
            presence_text(ns.presence_at(cx.v), ns.when.as_deref())
        ),
        ns.at.as_ref(),
        format!(
            "gate subsection `{}` with `when = {}`",
            ns.name,
            gate_with_next(ns.when.as_deref())
        ),
    );
}

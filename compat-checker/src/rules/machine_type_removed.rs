//! `machine-type-removed`: frozen machine type no longer in the catalog.

use super::{Detect, Level, Rule};
use crate::check::{Hits, Step};
use crate::finding::Direction;

/// The `machine-type-removed` rule.
pub const RULE: Rule = Rule {
    id: "machine-type-removed",
    name: "frozen machine type no longer in the catalog",
    level: Level::Deny,
    summary: "a machine type with a baseline is no longer in any machine catalog",
    explanation: r#"A baseline exists for a machine type that no machine catalog declares any more, so nothing can
check it.

Why it matters: QEMU keeps machine types for years; VMs started on them must keep migrating.
Dropping one should be a reviewed decision, not a side effect of editing the catalog.

How to fix: restore the machine type in the catalog, or delete `compat/<machine-type>.json`
if support for it was dropped on purpose."#,
    detect: Detect::Native(detect),
};

/// A frozen machine type that no catalog declares any more.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Machine {
        machine: m,
        known: false,
    } = *step
    else {
        return;
    };
    hits.push(
        Direction::Both,
        "",
        format!("machine type `{m}` has a frozen baseline, but no machine catalog declares it"),
        None,
        format!(
            "restore `{m}` in the machine catalog, or delete `compat/{m}.json` if support \
             for it was dropped on purpose"
        ),
    );
}

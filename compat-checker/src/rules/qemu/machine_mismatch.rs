//! `qemu-machine-mismatch`: the two dumps are for different machine types.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-machine-mismatch` rule.
pub const RULE: Rule = Rule {
    id: "qemu-machine-mismatch",
    name: "the two dumps are for different machine types",
    level: Level::Warn,
    summary: "the two dumps are for different machine types",
    explanation:
        "vmschkmachine.Name differs. A dump does not depend on the machine type (compat properties \
         are invisible in it), so the comparison still works, but migration is only defined \
         between equal machine types. Same as the static checker's warning.",
    detect: Detect::QemuDump(detect),
};

/// The two dumps name different machine types.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Machines { old, new } = *step else {
        return;
    };
    if old == new {
        return;
    }
    hits.push(
        "",
        format!("dumps are for different machine types: \"{old}\" (old) and \"{new}\" (new)"),
        "compare dumps of the same machine type taken from the two releases",
    );
}

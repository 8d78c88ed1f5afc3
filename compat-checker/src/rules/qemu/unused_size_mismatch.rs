//! `qemu-unused-size-mismatch`: an 'unused' field does not cover the fields it replaces.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-unused-size-mismatch` rule.
pub const RULE: Rule = Rule {
    id: "qemu-unused-size-mismatch",
    name: "an 'unused' field does not cover the fields it replaces",
    level: Level::Deny,
    summary: "an 'unused' field does not cover the fields it replaces",
    explanation:
        "An 'unused' field on one side stands for a run of fields on the other, and their sizes do \
         not add up to the unused size. Make the VMSTATE_UNUSED size equal the total wire size of \
         the fields it replaces. Same as the static checker's 'unused size mismatch'; also \
         reported when the run is still open at the end of the fields, which the script misses.",
    detect: Detect::QemuDump(detect),
};

/// An `unused` run that does not add up, inside the list or at its end.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::UnusedMismatch {
        near,
        left_at_end,
        path,
    } = *step
    else {
        return;
    };
    let (snd, rcv) = (hits.snd(), hits.rcv());
    let message = match left_at_end {
        None => format!(
            "unused bytes in {snd} and {rcv} do not line up with the fields they replace, near \
             \"{near}\""
        ),
        Some(n) if n > 0 => {
            format!("{rcv}'s \"{near}\" still expects {n} bytes after {snd}'s last field")
        }
        Some(n) => format!(
            "{rcv}'s \"{near}\" is {} bytes short of {snd}'s last field",
            -n
        ),
    };
    hits.push(
        path,
        message,
        "make the VMSTATE_UNUSED size equal the total size of the fields it replaces",
    );
}

//! `qemu-array-length-changed`: a fixed array's element count differs.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-array-length-changed` rule.
pub const RULE: Rule = Rule {
    id: "qemu-array-length-changed",
    name: "a fixed array's element count differs",
    level: Level::Deny,
    summary: "a fixed array's element count differs",
    explanation:
        "Both dumps give the field's 'num' (QEMU >= 8.1 dumps it) and the counts differ, so the \
         number of elements on the wire differs. vmstate-static-checker.py compares only the \
         element size. Keep the length; send extra elements in a subsection.",
    detect: Detect::QemuDump(detect),
};

/// Two aligned fixed arrays whose `num` differs (both dumps give it).
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Some((sf, df, path)) = step.field_pair() else {
        return;
    };
    let (Some(a), Some(b)) = (sf.num, df.num) else {
        return;
    };
    if a == b {
        return;
    }
    let message = format!(
        "array \"{}\" has {a} elements in {} but {b} in {}",
        sf.name,
        hits.snd(),
        hits.rcv()
    );
    hits.push(
        path,
        message,
        "keep the array length; send extra elements in a subsection",
    );
}

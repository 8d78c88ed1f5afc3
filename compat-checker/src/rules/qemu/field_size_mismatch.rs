//! `qemu-field-size-mismatch`: a scalar field's size differs.

use crate::qemu::{Hits, Step};
use crate::rules::{Detect, Level, Rule};

/// The `qemu-field-size-mismatch` rule.
pub const RULE: Rule = Rule {
    id: "qemu-field-size-mismatch",
    name: "a scalar field's size differs",
    level: Level::Deny,
    summary: "a scalar field's size differs",
    explanation:
        "A field that is not a nested struct has a different size in the two dumps, so sender and \
         receiver disagree on the number of bytes on the wire. Keep the size; send a wider value \
         in a new subsection. Same as the static checker's 'size mismatch' (nested structs are not \
         compared by size: the dump has C sizes for them).",
    detect: Detect::QemuDump(detect),
};

/// Two aligned fields, not nested structs, of different sizes.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Some((sf, df, path)) = step.field_pair() else {
        return;
    };
    if sf.desc.is_some() || sf.size == df.size {
        return;
    }
    let message = format!(
        "field \"{}\" is {} bytes in {} but {} bytes in {}",
        sf.name,
        sf.size,
        hits.snd(),
        df.size,
        hits.rcv()
    );
    hits.push(
        path,
        message,
        "keep the field's size; send a wider value in a new subsection",
    );
}

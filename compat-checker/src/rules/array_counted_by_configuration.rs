//! `array-counted-by-configuration`: a fixed array is now counted by local configuration.

use super::{Detect, Level, Rule};
use crate::check::step::is_padding;
use crate::check::{Hits, Step};
use crate::layout::Item;

/// The `array-counted-by-configuration` rule.
pub const RULE: Rule = Rule {
    id: "array-counted-by-configuration",
    name: "array counted by local configuration",
    level: Level::Warn,
    summary: "a fixed array became one counted by a local field (`local_count`), or back",
    explanation: r#"A fixed array (or buffer) of N elements became a variable one whose count is a local field that
is not read from the stream (`local_count = f`: configuration such as a FIFO's capacity or the
DIMM slots, which QEMU does not migrate either), with a declared maximum of at least N; or
the other way round.

Why it may break: the wire has no count either way. The bytes are the same as long as that
configuration is N on both sides, which is what the frozen machine type's default board had;
a source and destination configured differently never loaded each other's streams, with or
without the change. This is a warning because the frozen wire is still what the default
configuration sends.

How to fix: make sure the local field's value for the default configuration is the frozen
length N (a test that saves the default device and compares the length is the usual proof), or
set the rule to `allow` in `[workspace.metadata.compat-check.rules]`."#,
    detect: Detect::Native(detect),
};

/// The frozen fixed length N and the current item, when one side is fixed (N elements, or a
/// buffer of N bytes) and the other is counted by a local field with a maximum of at least N.
#[must_use]
pub fn counted_by_configuration(old: &Item, new: &Item) -> Option<u64> {
    let shape = |i: &Item| -> Option<(Option<u64>, Option<String>, Option<u32>)> {
        match i {
            Item::Field(f) if !is_padding(i) => {
                let fixed = match (f.len, f.kind.as_str()) {
                    (Some(n), _) => Some(u64::from(n)),
                    (None, "buffer") => f.size,
                    _ => None,
                };
                Some((fixed, f.count.clone(), f.max))
            }
            Item::Array(a) => Some((a.len.map(u64::from), a.count.clone(), a.max)),
            Item::Subsection(_) | Item::Field(_) => None,
        }
    };
    let (o, n) = (shape(old)?, shape(new)?);
    let local = |c: &Option<String>| c.as_deref().is_some_and(|c| c.starts_with("local "));
    let pair = |fixed: (Option<u64>, Option<String>, Option<u32>),
                var: (Option<u64>, Option<String>, Option<u32>)| {
        match (fixed, var) {
            ((Some(len), None, _), (None, count, Some(max)))
                if local(&count) && len <= u64::from(max) =>
            {
                Some(len)
            }
            _ => None,
        }
    };
    pair(o.clone(), n.clone()).or_else(|| pair(n, o))
}

fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Pair { old: o, new: n, cx } = *step else {
        return;
    };
    let Some(len) = counted_by_configuration(o, n) else {
        return;
    };
    let key = n.key();
    hits.push(
        cx.dir,
        key,
        format!(
            "array `{key}`{} changed from {} to {}: the same bytes while that local field \
             is {len} on both sides, as on the frozen default configuration",
            cx.in_sub(),
            o.shape(),
            n.shape()
        ),
        n.at(),
        format!(
            "make sure the local count of `{key}` is {len} for the default configuration (a \
             test that saves the default device and checks its length)"
        ),
    );
}

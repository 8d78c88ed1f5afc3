//! `priority-changed`: section priority changed.

use super::{Detect, Level, Rule};
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::Presence;

/// The `priority-changed` rule.
pub const RULE: Rule = Rule {
    id: "priority-changed",
    name: "section priority changed",
    level: Level::Warn,
    summary: "a section priority changed, so sections load in another order",
    explanation: r#"The `priority` of a section differs from the baseline. Sections are sent (and therefore loaded)
in priority order, higher first; a change reorders the stream.

Why it may break: the byte format still loads, but `post_load` of a device may rely on another
device (e.g. an interrupt controller) having been loaded first. This is a warning because the
wire format itself is compatible.

How to fix: restore the frozen priority, or, when the new order is known to be safe, set the
rule to `allow` in `[workspace.metadata.compat-check.rules]`."#,
    detect: Detect::Native(detect),
};

/// A sent device whose priority differs from the frozen one.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Device { base: bd, cur: cd } = *step else {
        return;
    };
    // A section the baseline never sent has no frozen place in the order.
    if bd.presence == Presence::Never || bd.priority == cd.priority {
        return;
    }
    hits.push(
        Direction::Both,
        "",
        format!(
            "priority changed from {} to {}; sections are sent and loaded in priority \
             order, so the load order changes",
            bd.priority, cd.priority
        ),
        cd.at.as_ref(),
        format!(
            "restore `priority = {}` on `{}`, or allow the rule once the new order is known \
             to be safe",
            bd.priority, cd.rust_name
        ),
    );
}

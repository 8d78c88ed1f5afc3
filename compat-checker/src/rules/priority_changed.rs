//! `priority-changed`: section priority changed.

use super::{Level, Rule};

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
};

//! `subsection-no-longer-understood`: frozen subsection no longer declared.

use super::{Detect, Level, Rule};
use crate::check::step::NEXT;
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::{Cond, Presence};

/// The `subsection-no-longer-understood` rule.
pub const RULE: Rule = Rule {
    id: "subsection-no-longer-understood",
    name: "frozen subsection no longer declared",
    level: Level::Deny,
    summary: "a subsection the baseline may send is no longer declared",
    explanation: r#"The baseline of a machine type may send a subsection that the current code no longer
declares.

Why it breaks (old → new): the subsection loop finds a subsection header with the device's
prefix and an unknown name, and fails the load (QEMU: -ENOENT). A *missing* subsection is fine;
an unknown one is not.

How to fix: keep declaring the subsection, with its version and fields, so old streams load.
Gate it with `when = machine < "8.0"` to stop sending it on new machine types; if the state
itself is gone, its fields can become `Unused<N>` padding of the same sizes."#,
    detect: Detect::Native(detect),
};

/// Old → new: a subsection the frozen release sends that the current code does not declare.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Step::Subsection {
        old: Some(os),
        new: None,
        cx,
    } = *step
    else {
        return;
    };
    if cx.dir != Direction::OldToNew {
        return;
    }
    let sends = match os.presence_at(cx.v) {
        Presence::Always => "always sends".to_owned(),
        _ => match &os.when {
            Some(w) => format!("sends when `{w}` holds"),
            None => "may send".to_owned(),
        },
    };
    hits.push(
        cx.dir,
        &os.name,
        format!(
            "subsection `{}` (version {}), which the release that froze these \
             machine types {sends}, is no longer declared; loading fails on an unknown \
             subsection",
            os.name, os.version
        ),
        cx.container,
        format!(
            "keep declaring subsection `{}` (version {}) so old streams load; gate \
             it `when = machine < \"{NEXT}\"` to stop sending it",
            os.name, os.version
        ),
    );
}

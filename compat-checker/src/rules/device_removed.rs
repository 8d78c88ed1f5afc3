//! `device-removed`: frozen section no longer exists.

use super::{Detect, Level, Rule};
use crate::check::step::NEXT;
use crate::check::{Hits, Step};
use crate::finding::Direction;

/// The `device-removed` rule.
pub const RULE: Rule = Rule {
    id: "device-removed",
    name: "frozen section no longer exists",
    level: Level::Deny,
    summary: "a device the baseline sends is no longer declared",
    explanation: r#"The baseline of a machine type sends a device section that the current code no longer
declares (nor exports: check that the crate still has its `export_schemas!` line).

Why it breaks (old → new): streams from the release that froze the machine type contain the
section, and this code fails the load on an unknown section.

How to fix: keep the device (and its section name) for those machine types; a section gate
`#[vmstate(when = machine < "8.0")]` can keep it off newer ones. If support for the machine
types was dropped on purpose, delete their baselines (`compat/<machine-type>.json`)."#,
    detect: Detect::Native(detect),
};

/// A frozen, sent device that is gone, and not as a rename.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Some((bd, None)) = step.sent_device_gone() else {
        return;
    };
    hits.push(
        Direction::OldToNew,
        "",
        format!(
            "the section (Rust type `{}` when frozen, version {}) is no longer \
             declared; streams from the release that froze these machine types \
             contain it and fail to load",
            bd.rust_name, bd.version
        ),
        None,
        format!(
            "keep `{}` for these machine types (`#[vmstate(when = machine < \
             \"{NEXT}\")]` keeps it off newer ones), or delete the baselines of \
             machine types that are no longer supported",
            bd.rust_name
        ),
    );
}

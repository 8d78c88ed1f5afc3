//! `device-renamed`: section renamed.

use super::{Detect, Level, Rule};
use crate::check::{Hits, Step};
use crate::finding::Direction;

/// The `device-renamed` rule.
pub const RULE: Rule = Rule {
    id: "device-renamed",
    name: "section renamed",
    level: Level::Deny,
    summary: "a device section was renamed",
    explanation: r#"A section of the baseline is gone and a section of the same Rust type appeared under another
name. The section name (idstr) is on the wire: the destination finds the handler by it.

Why it breaks: in both directions the receiver does not know the section.

How to fix: keep the wire name with `#[vmstate(name = "<old name>")]` on the struct; the Rust
type can be renamed freely."#,
    detect: Detect::Native(detect),
};

/// A frozen, sent device that is gone under its name while its Rust type has another one.
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    let Some((bd, Some(c))) = step.sent_device_gone() else {
        return;
    };
    hits.push(
        Direction::Both,
        "",
        format!(
            "the section is now named `{}` ({}); the section name is on the wire",
            c.name, c.rust_name
        ),
        c.at.as_ref(),
        format!(
            "keep the wire name: `#[vmstate(name = \"{}\")]` on `{}`",
            bd.name, c.rust_name
        ),
    );
}

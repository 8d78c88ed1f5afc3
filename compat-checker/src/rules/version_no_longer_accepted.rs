//! `version-no-longer-accepted`: frozen version no longer loads.

use super::{Detect, Level, Rule};
use crate::check::{Hits, Step};
use crate::finding::Direction;
use crate::layout::{Cond, Presence};

/// The `version-no-longer-accepted` rule.
pub const RULE: Rule = Rule {
    id: "version-no-longer-accepted",
    name: "frozen version no longer loads",
    level: Level::Deny,
    summary: "the version a frozen machine type sends is no longer accepted",
    explanation: r#"The section (or subsection) version in the stream of a frozen machine type is outside the
range the receiver accepts, `minimum_version ..= version`.

- old → new: the release that froze the machine type sends version V, and the current code
  raised `minimum_version` above V (or lowered `version` below it). Loading fails ("version
  too old").
- new → old: the current code sends a version below the `minimum_version` of the release that
  froze the machine type (e.g. a pin to a version that release never accepted).

How to fix: keep `minimum_version` at or below every version a frozen machine type sends, and
keep reading the fields of old versions with `since`. Drop support only together with the
machine types (delete their baselines)."#,
    detect: Detect::Native(detect),
};

/// A version the receiving side does not accept: a section version in either direction (new →
/// old: below the frozen minimum, unless it is a bump; old → new: outside the accepted range),
/// or a subsection version (new → old: below the frozen minimum, unless it is a bump; old →
/// new: outside the range the current code accepts).
fn detect(step: &Step<'_>, hits: &mut Hits<'_>) {
    match *step {
        Step::SectionVersion {
            base: bd,
            cur: cd,
            dir: Direction::NewToOld,
        } => {
            if cd.version > bd.version || cd.version >= bd.accepts.min {
                return;
            }
            hits.push(
                Direction::NewToOld,
                "",
                format!(
                    "now sent at version {}, below the minimum version {} of the release that \
                     froze these machine types",
                    cd.version, bd.accepts.min
                ),
                cd.pinned_at.as_ref().or(cd.at.as_ref()),
                format!(
                    "send at least version {} for these machine types (check the `pin`s of `{}`)",
                    bd.accepts.min, cd.rust_name
                ),
            );
        }
        Step::SectionVersion {
            base: bd,
            cur: cd,
            dir: Direction::OldToNew,
        } => {
            if bd.version >= cd.accepts.min && bd.version <= cd.accepts.max {
                return;
            }
            let fix = if bd.version < cd.accepts.min {
                format!(
                    "lower `minimum_version` of `{}` to {} and keep reading the fields of \
                     version {} (mark newer ones `since`)",
                    cd.rust_name, bd.version, bd.version
                )
            } else {
                format!(
                    "accept version {} again: `version` of `{}` must be at least {}",
                    bd.version, cd.rust_name, bd.version
                )
            };
            hits.push(
                Direction::OldToNew,
                "",
                format!(
                    "the release that froze these machine types sends version {}, but only \
                     versions {}..={} are accepted now",
                    bd.version, cd.accepts.min, cd.accepts.max
                ),
                cd.at.as_ref(),
                fix,
            );
        }
        Step::Subsection {
            old: Some(os),
            new: Some(ns),
            cx,
        } if cx.dir == Direction::NewToOld => {
            if os.presence_at(cx.v) == Presence::Never
                || ns.version > os.version
                || ns.version >= os.min_version
            {
                return;
            }
            hits.push(
                cx.dir,
                &ns.name,
                format!(
                    "subsection `{}` is now sent at version {}, below the minimum \
                     version {} of the release that froze these machine types",
                    ns.name, ns.version, os.min_version
                ),
                ns.at.as_ref(),
                format!("send `{}` at version {} again", ns.name, os.version),
            );
        }
        Step::Subsection {
            old: Some(os),
            new: Some(ns),
            cx,
        } => {
            if os.version <= ns.version && os.version >= ns.min_version {
                return;
            }
            hits.push(
                cx.dir,
                &os.name,
                format!(
                    "the release that froze these machine types sends subsection `{}` at \
                     version {}, but it now accepts only versions {}..={}",
                    os.name, os.version, ns.min_version, ns.version
                ),
                ns.at.as_ref(),
                format!(
                    "accept version {} of `{}` again (`minimum_version = {}`)",
                    os.version,
                    os.name,
                    os.version.min(ns.min_version)
                ),
            );
        }
        _ => {}
    }
}

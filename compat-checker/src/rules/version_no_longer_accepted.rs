//! `version-no-longer-accepted`: frozen version no longer loads.

use super::{Level, Rule};

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
};

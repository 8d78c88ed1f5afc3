//! `subsection-no-longer-understood`: frozen subsection no longer declared.

use super::{Level, Rule};

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
};

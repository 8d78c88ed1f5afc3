//! `field-removed-without-padding`: field removed without Unused padding.

use super::{Level, Rule};

/// The `field-removed-without-padding` rule.
pub const RULE: Rule = Rule {
    id: "field-removed-without-padding",
    name: "field removed without Unused padding",
    level: Level::Deny,
    summary: "a field was removed without Unused padding of the same size",
    explanation: r#"A field that the baseline of a machine type has on the wire is no longer declared, and no
`Unused<N>` padding of the same size replaces it.

Why it breaks, in both directions: fields are positional and untagged. The release that froze
the machine type sends those bytes (old → new: this code misreads everything after them) and
expects them (new → old: it misreads what this code sends).

How to fix (QEMU's VMSTATE_UNUSED): put padding of the bytes sent where the field was,
`_removed_fifo_level: Unused<1>` (one byte for a `u8` or `bool`); padding is written as zeros
and skipped on load. Or keep the field for the old machine types only:
`#[vmstate(when = machine < "8.0", default)]`."#,
};

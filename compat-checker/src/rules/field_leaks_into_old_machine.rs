//! `field-leaks-into-old-machine`: field on the wire where the baseline never had it.

use super::{Level, Rule};

/// The `field-leaks-into-old-machine` rule.
pub const RULE: Rule = Rule {
    id: "field-leaks-into-old-machine",
    name: "field on the wire where the baseline never had it",
    level: Level::Deny,
    summary: "a field may now be sent for a frozen machine type that never sent it",
    explanation: r#"A field is on the wire for a frozen machine type (always, or when its predicate holds), but
the baseline of that machine type never had it there: it is new, or its gate or `since` used
to keep it off the wire for that machine type.

Why it breaks, in both directions:
- new → old: the release that froze the machine type reads the bytes of the new field as the
  next field it knows, and everything after it is misread (or the load fails on trailing
  bytes). QEMU shipped this bug: PIIX4 `acpi-index` leaked into old machine types.
- old → new: a stream from that release lacks the field, but this code reads it anyway.

QEMU's rule (docs/devel/migration/compatibility.rst): a machine type must send and accept
exactly what the release that introduced it did. New state must be tied to new machine types.

How to fix (any one):
- gate the field on the machine type:
  `#[vmstate(when = machine >= "8.0", default)]` (combine an existing gate with
  `all(machine >= "8.0", ...)`);
- move it into a subsection gated the same way (subsections are optional on load, so old
  streams without it still load here);
- for a top-level field: bump the section version to N+1, mark the field `since = N+1`, and
  pin the old machine types with `pin(below = "8.0", version = N)`.

The version to gate on is the first machine type after the newest affected one. If it is not in
the machine catalog yet, add it there, then `cargo compat-check freeze` it."#,
};

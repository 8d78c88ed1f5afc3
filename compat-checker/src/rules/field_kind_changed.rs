//! `field-kind-changed`: field codec changed.

use super::{Level, Rule};

/// The `field-kind-changed` rule.
pub const RULE: Rule = Rule {
    id: "field-kind-changed",
    name: "field codec changed",
    level: Level::Deny,
    summary: "a field changed its codec (e.g. u32 to i32, primitive to struct array)",
    explanation: r#"A field keeps its position but changed its codec: a signed/unsigned or timer change of the
same size, a primitive replaced by an array of structs, or a variable array that takes its count
from another field.

Why it breaks: the bytes keep their size but mean something else, so values are misread in
both directions (the static checker of QEMU cannot see same-size codec changes).

How to fix: keep the frozen codec on the wire and convert in `pre_save`/`post_load`; send a new
representation as a new field or subsection gated on new machine types
(`when = machine >= "8.0"`)."#,
};

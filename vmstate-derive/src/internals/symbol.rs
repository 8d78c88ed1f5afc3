//! One constant per attribute keyword.

use std::fmt::{self, Display};
use syn::{Ident, Path};

#[derive(Copy, Clone)]
pub struct Symbol(&'static str);

pub const VMSTATE: Symbol = Symbol("vmstate");
// container
pub const NAME: Symbol = Symbol("name");
pub const VERSION: Symbol = Symbol("version");
pub const MINIMUM_VERSION: Symbol = Symbol("minimum_version");
pub const NESTED: Symbol = Symbol("nested");
pub const PRIORITY: Symbol = Symbol("priority");
pub const PRE_SAVE: Symbol = Symbol("pre_save");
pub const POST_SAVE: Symbol = Symbol("post_save");
pub const PRE_LOAD: Symbol = Symbol("pre_load");
pub const POST_LOAD: Symbol = Symbol("post_load");
pub const VALIDATE: Symbol = Symbol("validate");
pub const WHEN: Symbol = Symbol("when");
pub const PIN: Symbol = Symbol("pin");
pub const BELOW: Symbol = Symbol("below");
pub const PROP: Symbol = Symbol("prop");
pub const DEFAULT: Symbol = Symbol("default");
pub const SUBSECTION: Symbol = Symbol("subsection");
pub const CRATE: Symbol = Symbol("crate");
// field
pub const SINCE: Symbol = Symbol("since");
pub const SKIP: Symbol = Symbol("skip");
pub const KEEP: Symbol = Symbol("keep");
pub const RENAME: Symbol = Symbol("rename");
pub const BUFFER: Symbol = Symbol("buffer");
pub const COUNT: Symbol = Symbol("count");
pub const LOCAL_COUNT: Symbol = Symbol("local_count");
pub const U16_HACK: Symbol = Symbol("u16_hack");
pub const MAX: Symbol = Symbol("max");
pub const LIST: Symbol = Symbol("list");
pub const TREE: Symbol = Symbol("tree");
pub const EQUAL: Symbol = Symbol("equal");
pub const RANGE: Symbol = Symbol("range");
pub const LE: Symbol = Symbol("le");
pub const VMDESC_TYPE: Symbol = Symbol("vmdesc_type");
pub const WITH: Symbol = Symbol("with");
pub const MULTIPLY: Symbol = Symbol("multiply");
pub const BITMAP: Symbol = Symbol("bitmap");
pub const VSTRUCT: Symbol = Symbol("vstruct");
// gates
pub const MACHINE: Symbol = Symbol("machine");
pub const PRED: Symbol = Symbol("pred");
pub const ALL: Symbol = Symbol("all");
pub const ANY: Symbol = Symbol("any");
pub const NOT: Symbol = Symbol("not");

/// Keys accepted in `#[vmstate(...)]` on the struct (`min_version` is also accepted as an alias).
pub const CONTAINER_KEYS: &[Symbol] = &[
    NAME,
    VERSION,
    MINIMUM_VERSION,
    NESTED,
    PRIORITY,
    PRE_SAVE,
    POST_SAVE,
    PRE_LOAD,
    POST_LOAD,
    VALIDATE,
    WHEN,
    PIN,
    PROP,
    SUBSECTION,
    CRATE,
];
/// Keys accepted in `#[vmstate(...)]` on a field.
pub const FIELD_KEYS: &[Symbol] = &[
    SINCE,
    WHEN,
    DEFAULT,
    KEEP,
    SKIP,
    RENAME,
    BUFFER,
    COUNT,
    LOCAL_COUNT,
    MAX,
    EQUAL,
    U16_HACK,
    RANGE,
    LE,
    VMDESC_TYPE,
    WITH,
    MULTIPLY,
    BITMAP,
    VSTRUCT,
    SUBSECTION,
    LIST,
    TREE,
];
/// Keys accepted inside `subsection(...)` on the struct.
pub const SUBSECTION_KEYS: &[Symbol] = &[
    NAME,
    VERSION,
    MINIMUM_VERSION,
    WHEN,
    PRE_SAVE,
    POST_SAVE,
    PRE_LOAD,
    POST_LOAD,
];
/// Keys accepted inside `pin(...)`.
pub const PIN_KEYS: &[Symbol] = &[BELOW, VERSION];
/// Keys accepted inside `prop(...)`.
pub const PROP_KEYS: &[Symbol] = &[NAME, DEFAULT];
/// The words a gate expression starts with.
pub const GATE_WORDS: &[Symbol] = &[MACHINE, PROP, PRED, ALL, ANY, NOT];

impl Symbol {
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// The keywords as strings, for suggestions and "expected one of" lists.
pub fn words(keys: &[Symbol]) -> impl Iterator<Item = &'static str> + '_ {
    keys.iter().map(|k| k.0)
}

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

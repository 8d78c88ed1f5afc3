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
pub const MAX: Symbol = Symbol("max");
pub const EQUAL: Symbol = Symbol("equal");
pub const RANGE: Symbol = Symbol("range");
// gates
pub const MACHINE: Symbol = Symbol("machine");
pub const PRED: Symbol = Symbol("pred");
pub const ALL: Symbol = Symbol("all");
pub const ANY: Symbol = Symbol("any");
pub const NOT: Symbol = Symbol("not");

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

//! Compile-only checks of the generated code's hygiene: it must not depend on the caller's
//! prelude names, and must pass strict lints.
#![deny(unused_qualifications, clippy::pedantic, missing_docs)]
#![allow(
    dead_code,
    clippy::struct_field_names,
    clippy::derivable_impls,
    clippy::unused_self,
    clippy::unnecessary_wraps
)]

mod shadowed {
    // Shadow everything the generated code could accidentally refer to unqualified.
    #[allow(unused_imports)]
    use std::fmt::Error as Result;
    struct Option;
    struct Some;
    struct None;
    struct Ok;
    struct Err;
    struct Vec;
    struct Default;
    trait Field {}
    trait Writer {}
    trait Reader {}

    use vmstate_runtime::{Timer, Unused, VmState};

    /// A nested struct.
    #[derive(VmState, Clone, Copy)]
    #[vmstate(name = "inner", nested)]
    pub struct Inner {
        a: u8,
    }

    impl ::core::default::Default for Inner {
        fn default() -> Self {
            Inner { a: 0 }
        }
    }

    /// A section with every kind.
    #[derive(VmState)]
    #[vmstate(
        name = "gen",
        version = 2,
        minimum_version = 1,
        prop(name = "p", default = false),
        subsection(name = "gen/s", when = any(prop("p"), pred(Self::busy))),
        post_load = Self::post
    )]
    pub struct Gen {
        a: u32,
        #[vmstate(since = 2, default)]
        b: i64,
        c: [Inner; 2],
        _u: Unused<3>,
        t: Timer,
        n: u16,
        #[vmstate(count = n, max = 4)]
        v: [u8; 4],
        #[vmstate(subsection = "gen/s", default)]
        s: bool,
    }

    impl Gen {
        fn busy(&self) -> bool {
            self.a != 0
        }
        fn post(&mut self, _v: u32) -> ::core::result::Result<(), &'static str> {
            ::core::result::Result::Ok(())
        }
    }
}

/// The crate path can be overridden.
mod renamed {
    use vmstate_runtime as rt;

    /// Uses `crate = "..."`.
    #[derive(rt::VmState)]
    #[vmstate(name = "renamed", crate = "rt")]
    pub struct Renamed {
        a: u8,
    }
}

#[test]
fn generated_code_compiles_hygienically() {
    use vmstate_runtime::VmState;
    assert_eq!(shadowed::Gen::SCHEMA.name, "gen");
    assert_eq!(renamed::Renamed::SCHEMA.fields.len(), 1);
}

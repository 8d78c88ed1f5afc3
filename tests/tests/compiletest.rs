//! Compile-fail tests for every misuse the derive detects, with committed `.stderr` files.
//! Regenerate with `TRYBUILD=overwrite cargo test -p vmstate-tests --test compiletest` and read
//! the diff. Runs on the stable toolchain every time.
//!
//! The attribute reference's examples are doctests of vmstate-runtime and vmstate-derive (both
//! include `vmstate-runtime/src/dsl.md`); `docs/dsl.md` and `docs/machine-catalog.md` are
//! copies of rustdoc text, checked here.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/**/*.rs");
    t.pass("tests/pass/*.rs");
}

/// The guides in `docs/` that are also rustdoc: (the file the crate includes, its copy in docs/).
const RUSTDOC_COPIES: &[(&str, &str)] = &[
    ("vmstate-runtime/src/dsl.md", "docs/dsl.md"),
    (
        "vmstate-runtime/src/machine_catalog.md",
        "docs/machine-catalog.md",
    ),
];

/// Each copy in `docs/` is its rustdoc text byte for byte, so what a reader finds in the
/// repository is the text whose examples the doctests compile and run.
/// `VMSTATE_WRITE_DOCS=1` rewrites the copies.
#[test]
fn docs_copies_are_the_rustdoc_text() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for (source, copy) in RUSTDOC_COPIES {
        let text = std::fs::read_to_string(format!("{root}/{source}"))
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        let copy_path = format!("{root}/{copy}");
        if std::env::var_os("VMSTATE_WRITE_DOCS").is_some() {
            std::fs::write(&copy_path, &text).unwrap_or_else(|e| panic!("{copy}: {e}"));
        }
        let on_disk = std::fs::read_to_string(&copy_path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{copy} differs from {source} (the rustdoc text): edit the latter and run \
             `VMSTATE_WRITE_DOCS=1 cargo test -p vmstate-tests --test compiletest docs_copies`"
        );
    }
}

//! Compile-fail tests for every misuse the derive detects, with committed `.stderr` files.
//! Regenerate with `TRYBUILD=overwrite cargo test -p vmstate-tests --test compiletest` and read
//! the diff. Runs on the stable toolchain every time.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/**/*.rs");
    t.pass("tests/pass/*.rs");
}

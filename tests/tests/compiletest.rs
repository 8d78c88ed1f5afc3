//! Compile-fail tests for every misuse the derive detects, with committed `.stderr` files.
//! Regenerate with `TRYBUILD=overwrite cargo test -p vmstate-tests --test compiletest` and read
//! the diff. Runs on the stable toolchain every time.
//!
//! It also compiles and runs the example of `docs/dsl.md`: the `rust` blocks of the file are
//! extracted into one program each time, so the documentation cannot drift from the derive.

use std::path::PathBuf;

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/**/*.rs");
    t.pass("tests/pass/*.rs");
    t.pass(docs_dsl_example());
}

/// Writes the ```` ```rust ```` blocks of `docs/dsl.md`, in order, to one file under the
/// target directory and returns its path.
fn docs_dsl_example() -> PathBuf {
    let md_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/dsl.md");
    let md = std::fs::read_to_string(md_path).expect("docs/dsl.md is readable");
    let code = rust_blocks(&md);
    assert!(
        code.contains("fn main"),
        "docs/dsl.md: the `rust` blocks must form a program with `fn main`"
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs");
    std::fs::create_dir_all(&dir).expect("create target tmp dir");
    let path = dir.join("dsl_md.rs");
    let text = format!(
        "// Generated from docs/dsl.md by tests/compiletest.rs; edit the markdown.\n\n{code}"
    );
    std::fs::write(&path, text).expect("write the extracted example");
    path
}

/// The contents of the fenced blocks whose info string is exactly `rust`.
fn rust_blocks(md: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in md.lines() {
        let fence = line.trim_start();
        if inside {
            if fence.starts_with("```") {
                inside = false;
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        } else if fence == "```rust" {
            inside = true;
        }
    }
    out
}

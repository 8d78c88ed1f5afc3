//! Records `git describe` at build time (the writer build of `tinyvm snapshot` files), when git
//! and a repository are there; otherwise the snapshot says it was unavailable.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    };
    if let Some(d) = git(&["describe", "--always", "--dirty", "--tags"]) {
        println!("cargo:rustc-env=TINYVM_GIT_DESCRIBE={d}");
    }
    // Describe again when HEAD moves.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

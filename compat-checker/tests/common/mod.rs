//! Helpers shared by the CLI and rule tests: run the built binary, normalise its output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("compat-check-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `cargo-compat-check` (without the `compat-check` argument, as when run directly) in
/// the package directory, with `CARGO_TERM_COLOR=never` unless `env` says otherwise.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cargo-compat-check"));
    cmd.current_dir(manifest_dir())
        .args(args)
        .env("CARGO_TERM_COLOR", "never")
        .env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Replaces `dir` by `[BASELINES]` and elapsed times `[   0.001s]` by `[TIME]`.
pub fn normalise(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "[BASELINES]");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.find("s]") {
            Some(j)
                if j > 1
                    && tail[1..j]
                        .trim_start()
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.')
                    && tail[1..j].contains('.') =>
            {
                out.push_str("[TIME]");
                rest = &tail[j + 2..];
            }
            _ => {
                out.push('[');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Compares `actual` with the committed snapshot; `UPDATE_SNAPSHOTS=1` rewrites it.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = manifest_dir()
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "snapshot {} differs (UPDATE_SNAPSHOTS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

/// Freezes every machine type of `fixtures/<case>/old.json` into a temp dir, then checks
/// `new.json` against it; returns the normalised transcript and the check's exit code.
pub fn fixture_transcript(case: &str, extra: &[&str]) -> (String, i32) {
    let dir = temp_dir(case);
    let compat = dir.join("compat");
    let compat_s = compat.display().to_string();
    let old = format!("tests/fixtures/{case}/old.json");
    let new = format!("tests/fixtures/{case}/new.json");
    let freeze = [
        "freeze",
        "--all",
        "--schema",
        &old,
        "--baseline-dir",
        &compat_s,
    ];
    let f = run(&freeze, &[]);
    assert_eq!(f.code, 0, "freeze failed: {}", f.stderr);
    let mut check = vec!["--schema", &new, "--baseline-dir", &compat_s];
    check.extend_from_slice(extra);
    let c = run(&check, &[]);
    let transcript = format!(
        "$ cargo compat-check {}\nexit code: {}\n--- stderr\n{}$ cargo compat-check {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}",
        freeze.join(" "),
        f.code,
        f.stderr,
        check.join(" "),
        c.code,
        c.stdout,
        c.stderr
    );
    let out = normalise(&transcript, &compat);
    let _ = std::fs::remove_dir_all(&dir);
    (out, c.code)
}

/// Runs `qemu-dump` on `qemu-fixtures/<case>/{old,new}.json`; returns the normalised transcript
/// and the exit code.
pub fn qemu_fixture_transcript(case: &str) -> (String, i32) {
    let old = format!("tests/qemu-fixtures/{case}/old.json");
    let new = format!("tests/qemu-fixtures/{case}/new.json");
    let args = ["qemu-dump", old.as_str(), new.as_str()];
    let r = run(&args, &[]);
    let transcript = format!(
        "$ cargo compat-check {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        r.code,
        r.stdout,
        r.stderr
    );
    (normalise(&transcript, &manifest_dir()), r.code)
}

/// Freezes every machine type of `<case>/old.json` into the baseline directory `dir`.
pub fn freeze_case(case: &str, dir: &Path) {
    let old = format!("{case}/old.json");
    let r = run(
        &[
            "freeze",
            "--all",
            "--schema",
            &old,
            "--baseline-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

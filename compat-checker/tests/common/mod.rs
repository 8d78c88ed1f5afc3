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

/// One command of a transcript: the command line, its exit code, its stdout (when `stdout`)
/// and its stderr.
fn transcript(args: &[&str], r: &Run, stdout: bool) -> String {
    let mut t = format!(
        "$ cargo compat-check {}\nexit code: {}\n",
        args.join(" "),
        r.code
    );
    if stdout {
        t.push_str(&format!("--- stdout\n{}", r.stdout));
    }
    t.push_str(&format!("--- stderr\n{}", r.stderr));
    t
}

/// Freezes every machine type of `fixtures/<case>/old.json` into a temp dir, then checks
/// `new.json` against it; returns the normalised transcript and the check's exit code.
pub fn fixture_transcript(case: &str, extra: &[&str]) -> (String, i32) {
    let dir = temp_dir(case);
    let compat = dir.join("compat");
    let compat_s = compat.display().to_string();
    let old = format!("tests/fixtures/{case}/old.json");
    let new = format!("tests/fixtures/{case}/new.json");
    let freeze = freeze_args(&["--all"], &old, &compat_s);
    let f = run(&freeze, &[]);
    assert_eq!(f.code, 0, "freeze failed: {}", f.stderr);
    let check = check_args(&new, &compat_s, extra);
    let c = run(&check, &[]);
    let transcript = transcript(&freeze, &f, false) + &transcript(&check, &c, true);
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
    let transcript = transcript(&args, &r, true);
    (normalise(&transcript, &manifest_dir()), r.code)
}

/// Freezes every machine type of `<case>/old.json` into the baseline directory `dir`.
pub fn freeze_case(case: &str, dir: &Path) {
    let r = freeze(&["--all"], &format!("{case}/old.json"), dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `freeze TARGETS… --schema SCHEMA --baseline-dir DIR` (targets: machine types, `--all`,
/// `--force`).
fn freeze_args<'a>(targets: &[&'a str], schema: &'a str, dir: &'a str) -> Vec<&'a str> {
    let mut args = vec!["freeze"];
    args.extend_from_slice(targets);
    args.extend(["--schema", schema, "--baseline-dir", dir]);
    args
}

/// `--schema SCHEMA --baseline-dir DIR EXTRA…`: the check.
fn check_args<'a>(schema: &'a str, dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--schema", schema, "--baseline-dir", dir];
    args.extend_from_slice(extra);
    args
}

/// Runs `freeze TARGETS… --schema SCHEMA --baseline-dir DIR`.
pub fn freeze(targets: &[&str], schema: &str, dir: &Path) -> Run {
    run(&freeze_args(targets, schema, dir.to_str().unwrap()), &[])
}

/// Runs the check of `schema` against the baselines in `dir`, with the arguments `extra`.
pub fn check(schema: &str, dir: &Path, extra: &[&str]) -> Run {
    run(&check_args(schema, dir.to_str().unwrap(), extra), &[])
}

/// Asserts that `text` contains `needle`, showing `text` when it does not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

/// Asserts that `text` starts with `prefix`, showing `text` when it does not.
#[track_caller]
pub fn assert_starts_with(text: &str, prefix: &str) {
    assert!(
        text.starts_with(prefix),
        "{prefix:?} does not start:\n{text}"
    );
}

/// Runs git in `repo` with a fixed identity and no user or system configuration; returns its
/// trimmed stdout.
pub fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@localhost")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@localhost")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

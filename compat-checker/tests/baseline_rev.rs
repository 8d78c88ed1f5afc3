//! `--baseline-rev REV`: the baselines are read from a git revision, not the working tree.
//!
//! Each test builds a throwaway repository in a temporary directory: the baselines of a
//! fixture's `old.json` are frozen and committed, then the working tree is changed (baselines
//! deleted or edited), and the check must still compare against what was committed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{freeze_case, run, temp_dir};

const LEAK: &str = "tests/fixtures/field-leaks-into-old-machine";

/// Runs git in `repo` with a fixed identity and no user or system configuration.
fn git(repo: &Path, args: &[&str]) -> String {
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

/// A repository whose first commit (tagged `v1`) holds the baselines of `LEAK/old.json` in
/// `compat/`, and whose second commit deletes them. Returns the repository and its baseline dir.
fn repo(name: &str) -> (PathBuf, PathBuf) {
    let repo = temp_dir(name);
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("README"), "a project\n").unwrap();
    let dir = repo.join("compat");
    freeze_case(LEAK, &dir);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "freeze"]);
    git(&repo, &["tag", "v1"]);
    git(&repo, &["rm", "-q", "-r", "compat"]);
    git(&repo, &["commit", "-q", "-m", "drop the baselines"]);
    assert!(!dir.exists());
    (repo, dir)
}

fn check(schema: &str, dir: &Path, rev: &str) -> common::Run {
    run(
        &[
            "--schema",
            schema,
            "--baseline-dir",
            dir.to_str().unwrap(),
            "--baseline-rev",
            rev,
        ],
        &[],
    )
}

#[test]
fn a_planted_leak_is_reported_against_an_older_revision() {
    let (_repo, dir) = repo("rev-leak");
    let new = format!("{LEAK}/new.json");
    for rev in ["v1", "HEAD~1"] {
        let r = check(&new, &dir, rev);
        assert_eq!(r.code, 1, "{rev}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stdout
                .starts_with("--- failure field-leaks-into-old-machine:"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("Machine types: pc-1.0, pc-2.0, pc-3.0\n"));
        assert!(r.stdout.contains("Failed in:\n  src/uart.rs:15\n"));
        assert!(
            r.stderr.contains(&format!(
                "    Checking 1 device against 3 frozen machine types (compat at {rev} ("
            )),
            "{}",
            r.stderr
        );
    }
    // The unchanged code passes against the same revision.
    let r = check(&format!("{LEAK}/old.json"), &dir, "v1");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r
        .stderr
        .contains("Summary compatible with 3 frozen machine types"));
}

#[test]
fn the_working_tree_is_ignored_and_untouched() {
    let (repo, dir) = repo("rev-worktree");
    // A working-tree baseline that would let the leak through is not what is read.
    git(&repo, &["checkout", "-q", "v1", "--", "compat"]);
    let new = format!("{LEAK}/new.json");
    let r = run(
        &[
            "freeze",
            "--all",
            "--force",
            "--schema",
            &new,
            "--baseline-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let status = git(&repo, &["status", "--porcelain"]);
    assert!(!status.is_empty(), "the forced freeze changed compat/");
    let without_rev = run(
        &["--schema", &new, "--baseline-dir", dir.to_str().unwrap()],
        &[],
    );
    assert_eq!(without_rev.code, 0, "{}", without_rev.stderr);
    let r = check(&new, &dir, "v1");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(git(&repo, &["status", "--porcelain"]), status);
}

#[test]
fn a_revision_without_baselines_is_a_tool_error() {
    let (_repo, dir) = repo("rev-none");
    let r = check(&format!("{LEAK}/new.json"), &dir, "HEAD");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr
            .starts_with("error: --baseline-rev HEAD: revision ")
            && r.stderr
                .contains(" has no baselines in compat (no compat/*.json there)"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_unknown_revision_is_a_tool_error() {
    let (_repo, dir) = repo("rev-unknown");
    for rev in ["no-such-branch", "v1:compat", "v1^{tree}"] {
        let r = check(&format!("{LEAK}/new.json"), &dir, rev);
        assert_eq!(r.code, 2, "{rev}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.starts_with(&format!(
                "error: --baseline-rev {rev}: not a commit in the git repository at "
            )),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn a_baseline_dir_outside_git_is_a_tool_error() {
    let dir = temp_dir("rev-no-git").join("compat");
    let r = check(&format!("{LEAK}/new.json"), &dir, "HEAD");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("is not in a git repository"),
        "{}",
        r.stderr
    );
}

#[test]
fn only_the_check_takes_a_revision() {
    let r = run(
        &[
            "freeze",
            "--all",
            "--schema",
            "x.json",
            "--baseline-rev",
            "HEAD",
        ],
        &[],
    );
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: --baseline-rev HEAD only applies to the check: `freeze` writes the working \
         tree's baselines and `qemu-dump` reads none\n"
    );
}

#[test]
fn the_baseline_dir_may_be_nested_or_the_repository_root() {
    let repo = temp_dir("rev-dirs");
    git(&repo, &["init", "-q"]);
    let nested = repo.join("vmm/migration-baselines");
    for dir in [&nested, &repo] {
        freeze_case(LEAK, dir);
    }
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "freeze"]);
    git(&repo, &["rm", "-q", "-r", "."]);
    git(&repo, &["commit", "-q", "-m", "drop everything"]);
    let new = format!("{LEAK}/new.json");
    for (dir, shown) in [(&nested, "vmm/migration-baselines"), (&repo, ".")] {
        let r = check(&new, dir, "HEAD~1");
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "against 3 frozen machine types ({shown} at HEAD~1 ("
            )),
            "{}",
            r.stderr
        );
        let r = check(&new, dir, "HEAD");
        assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!("has no baselines in {shown} ")),
            "{}",
            r.stderr
        );
    }
}

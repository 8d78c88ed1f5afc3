//! `--baseline-rev REV`: the baselines are read from a git revision, not the working tree.
//!
//! Each test builds a throwaway repository in a temporary directory: the baselines of a
//! fixture's `old.json` are frozen and committed, then the working tree is changed (baselines
//! deleted or edited), and the check must still compare against what was committed.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_contains, assert_starts_with, check, freeze, freeze_case, git, run, temp_dir};

const LEAK: &str = "tests/fixtures/field-leaks-into-old-machine";

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

/// The check of `schema` against the baselines of `dir` as committed at `rev`.
fn check_rev(schema: &str, dir: &Path, rev: &str) -> common::Run {
    check(schema, dir, &["--baseline-rev", rev])
}

#[test]
fn a_planted_leak_is_reported_against_an_older_revision() {
    let (_repo, dir) = repo("rev-leak");
    let new = format!("{LEAK}/new.json");
    for rev in ["v1", "HEAD~1"] {
        let r = check_rev(&new, &dir, rev);
        assert_eq!(r.code, 1, "{rev}: {}{}", r.stdout, r.stderr);
        assert_starts_with(&r.stdout, "--- failure field-leaks-into-old-machine:");
        assert_contains(&r.stdout, "Machine types: pc-1.0, pc-2.0, pc-3.0\n");
        assert_contains(&r.stdout, "Failed in:\n  src/uart.rs:15\n");
        assert_contains(
            &r.stderr,
            &format!("    Checking 1 device against 3 frozen machine types (compat at {rev} ("),
        );
    }
    // The unchanged code passes against the same revision.
    let r = check_rev(&format!("{LEAK}/old.json"), &dir, "v1");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_contains(&r.stderr, "Summary compatible with 3 frozen machine types");
}

#[test]
fn the_working_tree_is_ignored_and_untouched() {
    let (repo, dir) = repo("rev-worktree");
    // A working-tree baseline that would let the leak through is not what is read.
    git(&repo, &["checkout", "-q", "v1", "--", "compat"]);
    let new = format!("{LEAK}/new.json");
    let r = freeze(&["--all", "--force"], &new, &dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let status = git(&repo, &["status", "--porcelain"]);
    assert!(!status.is_empty(), "the forced freeze changed compat/");
    let without_rev = check(&new, &dir, &[]);
    assert_eq!(without_rev.code, 0, "{}", without_rev.stderr);
    let r = check_rev(&new, &dir, "v1");
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(git(&repo, &["status", "--porcelain"]), status);
}

#[test]
fn a_revision_without_baselines_is_a_tool_error() {
    let (_repo, dir) = repo("rev-none");
    let r = check_rev(&format!("{LEAK}/new.json"), &dir, "HEAD");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty());
    assert_starts_with(&r.stderr, "error: --baseline-rev HEAD: revision ");
    assert_contains(
        &r.stderr,
        " has no baselines in compat (no compat/*.json there)",
    );
}

#[test]
fn an_unknown_revision_is_a_tool_error() {
    let (_repo, dir) = repo("rev-unknown");
    for rev in ["no-such-branch", "v1:compat", "v1^{tree}"] {
        let r = check_rev(&format!("{LEAK}/new.json"), &dir, rev);
        assert_eq!(r.code, 2, "{rev}: {}{}", r.stdout, r.stderr);
        assert_starts_with(
            &r.stderr,
            &format!("error: --baseline-rev {rev}: not a commit in the git repository at "),
        );
    }
}

#[test]
fn a_baseline_dir_outside_git_is_a_tool_error() {
    let dir = temp_dir("rev-no-git").join("compat");
    let r = check_rev(&format!("{LEAK}/new.json"), &dir, "HEAD");
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_contains(&r.stderr, "is not in a git repository");
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
        let r = check_rev(&new, dir, "HEAD~1");
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        assert_contains(
            &r.stderr,
            &format!("against 3 frozen machine types ({shown} at HEAD~1 ("),
        );
        let r = check_rev(&new, dir, "HEAD");
        assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
        assert_contains(&r.stderr, &format!("has no baselines in {shown} "));
    }
}

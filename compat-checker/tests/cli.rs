//! End-to-end tests of the `cargo-compat-check` binary: exit codes, stdout, stderr, formats,
//! colour, errors on bad input, and (once) the real workspace through cargo.

mod common;

use common::{run, temp_dir};
use compat_checker::rules;

const LEAK: &str = "tests/fixtures/field-leaks-into-old-machine";

/// Freezes `<case>/old.json` into a fresh directory; returns it.
fn frozen(case: &str, name: &str) -> std::path::PathBuf {
    let dir = temp_dir(name).join("compat");
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
    dir
}

#[test]
fn list_prints_every_rule_aligned() {
    let r = run(&["--list"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("RULE "), "{}", r.stdout);
    let col = lines[0].find("LEVEL").unwrap();
    for rule in rules::ALL {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{} ", rule.id)))
            .unwrap_or_else(|| panic!("{} not listed", rule.id));
        assert_eq!(&line[col..col + 4], &rule.level.as_str()[..4], "{line}");
        assert!(line.ends_with(rule.summary), "{line}");
    }
    assert!(r.stdout.contains("qemu-field-appended"), "{}", r.stdout);
}

#[test]
fn explain_prints_the_long_text() {
    for rule in rules::ALL {
        let r = run(&["--explain", rule.id], &[]);
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains(rule.explanation), "{}", rule.id);
        assert!(r.stdout.starts_with(&format!("{}: {}", rule.id, rule.name)));
    }
}

#[test]
fn explain_unknown_rule_lists_valid_ids() {
    let r = run(&["--explain", "no-such-rule"], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr
            .starts_with("error: unknown rule `no-such-rule`; valid rules are:"),
        "{}",
        r.stderr
    );
    for rule in rules::ALL {
        assert!(
            r.stderr.contains(&format!("\n  {}", rule.id)),
            "{}",
            rule.id
        );
    }
}

#[test]
fn works_with_and_without_the_subcommand_argument() {
    let a = run(&["--list"], &[]);
    let b = run(&["compat-check", "--list"], &[]);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(b.code, 0);
}

#[test]
fn help_and_version() {
    let r = run(&["--help"], &[]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("Usage: cargo compat-check"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Exit codes:"), "{}", r.stdout);
    let r = run(&["--version"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_arguments_exit_2() {
    let r = run(&["--format", "xml"], &[]);
    assert_eq!(r.code, 2);
    let r = run(&["freeze"], &[]);
    assert_eq!(r.code, 2, "freeze needs machine types or --all");
}

#[test]
fn leak_fails_with_human_report() {
    let dir = frozen(LEAK, "human");
    let new = format!("{LEAK}/new.json");
    let r = run(
        &[
            "check",
            "--schema",
            &new,
            "--baseline-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(r.stdout.starts_with(
        "--- failure field-leaks-into-old-machine: field on the wire where the baseline never had it ---\n"
    ));
    assert!(r.stdout.contains("Machine types: pc-1.0, pc-2.0, pc-3.0\n"));
    assert!(r.stdout.contains("Failed in:\n  src/uart.rs:15\n"));
    assert!(r
        .stdout
        .contains("`#[vmstate(when = machine >= \"3.1\", default)]`"));
    assert!(r
        .stderr
        .contains("    Checking 1 device against 3 frozen machine types"));
    assert!(r.stderr.contains("     Summary incompatible"));
    assert!(!r.stdout.contains('\x1b') && !r.stderr.contains('\x1b'));
}

#[test]
fn leak_as_json() {
    let dir = frozen(LEAK, "json");
    let new = format!("{LEAK}/new.json");
    let r = run(
        &[
            "--schema",
            &new,
            "--baseline-dir",
            dir.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["result"], "incompatible");
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["summary"]["deny"], 1);
    assert_eq!(
        v["machines_checked"],
        serde_json::json!(["pc-1.0", "pc-2.0", "pc-3.0"])
    );
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "field-leaks-into-old-machine");
    assert_eq!(f["severity"], "deny");
    assert_eq!(f["direction"], "both");
    assert_eq!(f["device"], "uart");
    assert_eq!(f["path"], "fifo_level");
    assert_eq!(
        f["machines"],
        serde_json::json!(["pc-1.0", "pc-2.0", "pc-3.0"])
    );
    assert_eq!(
        f["location"],
        serde_json::json!({"file": "src/uart.rs", "line": 15})
    );
    assert!(f["fix"].as_str().unwrap().contains("machine >= \"3.1\""));
}

#[test]
fn leak_as_github_annotations() {
    let dir = frozen(LEAK, "github");
    let new = format!("{LEAK}/new.json");
    let r = run(
        &[
            "--schema",
            &new,
            "--baseline-dir",
            dir.to_str().unwrap(),
            "--format",
            "github",
        ],
        &[],
    );
    assert_eq!(r.code, 1);
    let line = r.stdout.lines().next().unwrap();
    assert!(
        line.starts_with(
            "::error file=src/uart.rs,line=15,title=field-leaks-into-old-machine%3A field on the wire where the baseline never had it::In section `uart`: field `fifo_level`"
        ),
        "{line}"
    );
    assert!(
        line.contains("%0AMachine types: pc-1.0, pc-2.0, pc-3.0%0AFix: "),
        "{line}"
    );
    assert_eq!(r.stdout.lines().count(), 1);
}

#[test]
fn warnings_do_not_fail() {
    let case = "tests/fixtures/priority-changed";
    let dir = frozen(case, "warn");
    let new = format!("{case}/new.json");
    let r = run(
        &["--schema", &new, "--baseline-dir", dir.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with("--- warning priority-changed:"),
        "{}",
        r.stdout
    );
    let r = run(
        &[
            "--schema",
            &new,
            "--baseline-dir",
            dir.to_str().unwrap(),
            "--format",
            "github",
        ],
        &[],
    );
    assert!(
        r.stdout.starts_with("::warning file=src/uart.rs,line=8,"),
        "{}",
        r.stdout
    );
}

#[test]
fn compatible_passes_quietly() {
    let case = "tests/fixtures/compatible";
    let dir = frozen(case, "ok");
    let new = format!("{case}/new.json");
    let r = run(
        &["--schema", &new, "--baseline-dir", dir.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty());
    assert!(r
        .stderr
        .contains("Summary compatible with 3 frozen machine types"));
    let r = run(
        &[
            "--schema",
            &new,
            "--baseline-dir",
            dir.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["result"], "compatible");
    assert_eq!(v["findings"], serde_json::json!([]));
}

#[test]
fn machine_filter() {
    let dir = frozen(LEAK, "filter");
    let new = format!("{LEAK}/new.json");
    let d = dir.to_str().unwrap();
    let r = run(
        &[
            "--schema",
            &new,
            "--baseline-dir",
            d,
            "--machine",
            "pc-2.0",
            "--format",
            "json",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["machines_checked"], serde_json::json!(["pc-2.0"]));
    assert_eq!(v["findings"][0]["machines"], serde_json::json!(["pc-2.0"]));
    let r = run(
        &["--schema", &new, "--baseline-dir", d, "--machine", "pc-9.9"],
        &[],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with("error: `pc-9.9` has no baseline"),
        "{}",
        r.stderr
    );
}

#[test]
fn colour_follows_cargo_term_color_and_flag() {
    let dir = frozen(LEAK, "colour");
    let new = format!("{LEAK}/new.json");
    let d = dir.to_str().unwrap();
    let r = run(
        &["--schema", &new, "--baseline-dir", d],
        &[("CARGO_TERM_COLOR", "always")],
    );
    assert!(
        r.stderr.contains("\x1b[1m\x1b[32m    Checking \x1b[0m") || r.stderr.contains("\x1b[1;32m"),
        "{:?}",
        r.stderr
    );
    assert!(r.stdout.contains('\x1b'));
    let r = run(
        &["--schema", &new, "--baseline-dir", d, "--color", "never"],
        &[("CARGO_TERM_COLOR", "always")],
    );
    assert!(!r.stderr.contains('\x1b') && !r.stdout.contains('\x1b'));
    let r = run(
        &["--schema", &new, "--baseline-dir", d, "--color=always"],
        &[],
    );
    assert!(r.stdout.contains('\x1b'));
}

#[test]
fn freeze_refuses_to_replace_a_different_baseline() {
    let dir = frozen(LEAK, "refuse");
    let d = dir.to_str().unwrap();
    let new = format!("{LEAK}/new.json");
    let before = std::fs::read_to_string(dir.join("pc-2.0.json")).unwrap();
    let r = run(
        &["freeze", "pc-2.0", "--schema", &new, "--baseline-dir", d],
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("warning: "), "{}", r.stderr);
    assert!(r.stderr.contains("not replaced"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("pc-2.0.json")).unwrap(),
        before
    );
    let old = format!("{LEAK}/old.json");
    let r = run(
        &["freeze", "pc-2.0", "--schema", &old, "--baseline-dir", d],
        &[],
    );
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("   Unchanged pc-2.0"), "{}", r.stderr);
    let r = run(
        &[
            "freeze",
            "pc-2.0",
            "--force",
            "--schema",
            &new,
            "--baseline-dir",
            d,
        ],
        &[],
    );
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("   Replacing pc-2.0"), "{}", r.stderr);
    assert_ne!(
        std::fs::read_to_string(dir.join("pc-2.0.json")).unwrap(),
        before
    );
}

#[test]
fn freeze_unknown_machine_type_is_a_tool_error() {
    let dir = temp_dir("unknown-machine").join("compat");
    let old = format!("{LEAK}/old.json");
    let r = run(
        &[
            "freeze",
            "pc-9.9",
            "--schema",
            &old,
            "--baseline-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: unknown machine type `pc-9.9` (known: pc-1.0, pc-2.0, pc-3.0)\n"
    );
    assert!(!dir.exists(), "nothing is written on error");
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let t = temp_dir("bad-inputs");
    let garbage = t.join("garbage.json");
    std::fs::write(&garbage, "{\"catalog\": 3").unwrap();
    let wrong = t.join("wrong.json");
    std::fs::write(
        &wrong,
        "{\"catalog\": {\"families\": []}, \"devices\": [{\"name\": 1}]}",
    )
    .unwrap();
    let baselines = t.join("compat");
    std::fs::create_dir_all(&baselines).unwrap();
    let old = format!("{LEAK}/old.json");
    let b = baselines.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--schema".into(), "does/not/exist.json".into()],
            "error: cannot read does/not/exist.json",
        ),
        (
            vec!["--schema".into(), garbage.display().to_string()],
            "not a schema export",
        ),
        (
            vec!["--schema".into(), wrong.display().to_string()],
            "not a schema export",
        ),
        (
            vec![
                "--schema".into(),
                old.clone(),
                "--baseline-dir".into(),
                b.into(),
            ],
            "error: no baselines in",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(&args, &[]);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"));
    }
    // A malformed baseline, and one under the wrong file name.
    std::fs::write(baselines.join("pc-1.0.json"), "[]").unwrap();
    let r = run(&["--schema", &old, "--baseline-dir", b], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a baseline"), "{}", r.stderr);
    let good = frozen(LEAK, "renamed-baseline");
    std::fs::rename(good.join("pc-1.0.json"), good.join("pc-7.0.json")).unwrap();
    let r = run(
        &["--schema", &old, "--baseline-dir", good.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("must be named `pc-1.0.json`"),
        "{}",
        r.stderr
    );
}

#[test]
fn qemu_dump_mode_is_wired() {
    let dump = "tests/qemu-fixtures/pc-i440fx-7.2.json";
    assert!(
        common::manifest_dir().join(dump).is_file(),
        "{dump} (a committed fixture) is missing"
    );
    let r = run(&["qemu-dump", dump, dump], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("Summary compatible"), "{}", r.stderr);
    let r = run(&["qemu-dump", dump, "does/not/exist.json"], &[]);
    assert_eq!(r.code, 2);
}

/// The real workspace through cargo: exports the example devices (runs their export test) and
/// checks them against the committed baselines in `compat/`.
#[test]
fn workspace_end_to_end() {
    let root = common::manifest_dir().join("..");
    // The baselines are committed: without them there is nothing to check, which is a failure.
    assert!(
        root.join("compat").is_dir(),
        "{} is missing: the committed baselines (`cargo compat-check freeze` writes them)",
        root.join("compat").display()
    );
    let manifest = root.join("Cargo.toml");
    let r = run(&["--manifest-path", manifest.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("   Exporting examples-devices"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Summary compatible"), "{}", r.stderr);
}

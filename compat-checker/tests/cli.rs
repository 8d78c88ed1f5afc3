//! End-to-end tests of the `cargo-compat-check` binary: exit codes, stdout, stderr, formats,
//! colour, errors on bad input, and (once) the real workspace through cargo.

mod common;

use common::{assert_contains, assert_starts_with, check, freeze, freeze_case, run, temp_dir};
use compat_checker::rules;

const LEAK: &str = "tests/fixtures/field-leaks-into-old-machine";

/// Freezes `<case>/old.json` into a fresh directory; returns it and the path of
/// `<case>/new.json`.
fn frozen(case: &str, name: &str) -> (std::path::PathBuf, String) {
    let dir = temp_dir(name).join("compat");
    freeze_case(case, &dir);
    (dir, format!("{case}/new.json"))
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
        assert_starts_with(&r.stdout, &format!("{}: {}", rule.id, rule.name));
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
    assert_contains(&r.stdout, "Usage: cargo compat-check");
    assert_contains(&r.stdout, "Exit codes:");
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
    let (dir, new) = frozen(LEAK, "human");
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
    assert_starts_with(
        &r.stdout,
        "--- failure field-leaks-into-old-machine: field on the wire where the baseline never had it ---\n",
    );
    assert_contains(&r.stdout, "Machine types: pc-1.0, pc-2.0, pc-3.0\n");
    assert_contains(&r.stdout, "Failed in:\n  src/uart.rs:15\n");
    assert_contains(
        &r.stdout,
        "`#[vmstate(when = machine >= \"3.1\", default)]`",
    );
    assert_contains(
        &r.stderr,
        "    Checking 1 device against 3 frozen machine types",
    );
    assert_contains(&r.stderr, "     Summary incompatible");
    assert!(!r.stdout.contains('\x1b') && !r.stderr.contains('\x1b'));
}

#[test]
fn leak_as_json() {
    let (dir, new) = frozen(LEAK, "json");
    let r = check(&new, &dir, &["--format", "json"]);
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
    let (dir, new) = frozen(LEAK, "github");
    let r = check(&new, &dir, &["--format", "github"]);
    assert_eq!(r.code, 1);
    let line = r.stdout.lines().next().unwrap();
    assert_starts_with(
        line,
        "::error file=src/uart.rs,line=15,title=field-leaks-into-old-machine%3A field on the wire where the baseline never had it::In section `uart`: field `fifo_level`",
    );
    assert_contains(line, "%0AMachine types: pc-1.0, pc-2.0, pc-3.0%0AFix: ");
    assert_eq!(r.stdout.lines().count(), 1);
}

#[test]
fn warnings_do_not_fail() {
    let case = "tests/fixtures/priority-changed";
    let (dir, new) = frozen(case, "warn");
    let r = check(&new, &dir, &[]);
    assert_eq!(r.code, 0);
    assert_starts_with(&r.stdout, "--- warning priority-changed:");
    let r = check(&new, &dir, &["--format", "github"]);
    assert_starts_with(&r.stdout, "::warning file=src/uart.rs,line=8,");
}

#[test]
fn compatible_passes_quietly() {
    let case = "tests/fixtures/compatible";
    let (dir, new) = frozen(case, "ok");
    let r = check(&new, &dir, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty());
    assert_contains(&r.stderr, "Summary compatible with 3 frozen machine types");
    let r = check(&new, &dir, &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["result"], "compatible");
    assert_eq!(v["findings"], serde_json::json!([]));
}

#[test]
fn machine_filter() {
    let (dir, new) = frozen(LEAK, "filter");
    let r = check(&new, &dir, &["--machine", "pc-2.0", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["machines_checked"], serde_json::json!(["pc-2.0"]));
    assert_eq!(v["findings"][0]["machines"], serde_json::json!(["pc-2.0"]));
    let r = check(&new, &dir, &["--machine", "pc-9.9"]);
    assert_eq!(r.code, 2);
    assert_starts_with(&r.stderr, "error: `pc-9.9` has no baseline");
}

#[test]
fn colour_follows_cargo_term_color_and_flag() {
    let (dir, new) = frozen(LEAK, "colour");
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
    let r = check(&new, &dir, &["--color=always"]);
    assert!(r.stdout.contains('\x1b'));
}

#[test]
fn freeze_refuses_to_replace_a_different_baseline() {
    let (dir, new) = frozen(LEAK, "refuse");
    let d = dir.to_str().unwrap();
    let before = std::fs::read_to_string(dir.join("pc-2.0.json")).unwrap();
    let r = freeze(&["pc-2.0"], &new, &dir);
    assert_eq!(r.code, 1);
    let dir_s = dir.display().to_string();
    assert_eq!(
        r.stderr.replace(&dir_s, "[DIR]"),
        "error: [DIR]/pc-2.0.json records a different layout for pc-2.0; not replaced\n  \
         what the current code would record for pc-2.0:\n    \
         section `uart`: field `fifo_level` (u8, 1 byte; always sent) added\n\
         note: `cargo compat-check --machine pc-2.0` reports 1 failure and explains why; fix \
         the code, or `cargo compat-check freeze pc-2.0 --force` records the new layout (only \
         for a machine type that was never released: a frozen one must keep what its release \
         sends)\n"
    );
    // The command it names does explain the refusal.
    let r = run(
        &["--machine", "pc-2.0", "--schema", &new, "--baseline-dir", d],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_contains(&r.stderr, "1 failure");
    assert_eq!(
        std::fs::read_to_string(dir.join("pc-2.0.json")).unwrap(),
        before
    );
    let old = format!("{LEAK}/old.json");
    let r = freeze(&["pc-2.0"], &old, &dir);
    assert_eq!(r.code, 0);
    assert_contains(&r.stderr, "   Unchanged pc-2.0");
    let r = freeze(&["pc-2.0", "--force"], &new, &dir);
    assert_eq!(r.code, 0);
    assert_contains(&r.stderr, "   Replacing pc-2.0");
    assert_contains(
        &r.stderr,
        "    section `uart`: field `fifo_level` (u8, 1 byte; always sent) added\n",
    );
    assert_ne!(
        std::fs::read_to_string(dir.join("pc-2.0.json")).unwrap(),
        before
    );
}

#[test]
fn freeze_unknown_machine_type_is_a_tool_error() {
    let dir = temp_dir("unknown-machine").join("compat");
    let r = freeze(&["pc-9.9"], &format!("{LEAK}/old.json"), &dir);
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
    let r = check(&old, &baselines, &[]);
    assert_eq!(r.code, 2);
    assert_contains(&r.stderr, "not a baseline");
    let (good, _) = frozen(LEAK, "renamed-baseline");
    std::fs::rename(good.join("pc-1.0.json"), good.join("pc-7.0.json")).unwrap();
    let r = check(&old, &good, &[]);
    assert_eq!(r.code, 2);
    assert_contains(&r.stderr, "must be named `pc-1.0.json`");
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
    assert_contains(&r.stderr, "Summary compatible");
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
    assert_contains(&r.stderr, "   Exporting examples-devices");
    assert_contains(&r.stderr, "Summary compatible");
}

/// `old.json` with every source line moved by `by` (as an edit above the structs would).
fn moved_lines(case: &str, by: u64, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::manifest_dir().join(case).join("old.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    fn walk(v: &mut serde_json::Value, by: u64) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Number(n)) = m.get("line").cloned() {
                    m.insert("line".into(), (n.as_u64().unwrap() + by).into());
                }
                m.values_mut().for_each(|x| walk(x, by));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, by)),
            _ => {}
        }
    }
    walk(&mut v, by);
    let p = temp_dir(name).join("moved.json");
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

/// Issue 9: code that moved without changing the wire leaves baselines alone, and findings
/// point at the current lines.
#[test]
fn moving_code_changes_no_baseline() {
    let (dir, new) = frozen(LEAK, "moved");
    let read_all = || -> Vec<String> {
        ["pc-1.0", "pc-2.0", "pc-3.0"]
            .iter()
            .map(|m| std::fs::read_to_string(dir.join(format!("{m}.json"))).unwrap())
            .collect()
    };
    let before = read_all();
    for b in &before {
        assert!(!b.contains("\"at\"") && !b.contains(".rs"), "{b}");
    }
    let moved = moved_lines(LEAK, 40, "moved-schema");
    let m = moved.to_str().unwrap();
    let r = freeze(&["--all"], m, &dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("   Unchanged pc-").count(),
        3,
        "{}",
        r.stderr
    );
    assert_eq!(before, read_all());
    let r = check(m, &dir, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // A finding's location is the current code's line.
    let r = check(&new, &dir, &[]);
    assert_contains(&r.stdout, "Failed in:\n  src/uart.rs:15\n");
}

/// A baseline of format 1 (with source locations) is read, and `freeze` rewrites it without
/// them when the layout is the same.
#[test]
fn format_1_baselines_are_read_and_reformatted() {
    let (dir, _) = frozen(LEAK, "format1");
    let p = dir.join("pc-1.0.json");
    let now = std::fs::read_to_string(&p).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&now).unwrap();
    v["compat-check"]["format"] = 1.into();
    v["devices"][0]["at"] = "src/uart.rs:3".into();
    for (i, item) in v["devices"][0]["items"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        item["at"] = format!("src/uart.rs:{}", 100 + i).into();
    }
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let old = format!("{LEAK}/old.json");
    let r = check(&old, &dir, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = freeze(&["pc-1.0"], &old, &dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_contains(&r.stderr, " Reformatted pc-1.0");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), now);
}

/// A differing baseline whose differences break nothing is kept (exit 0), and `freeze` says
/// why instead of pointing at a check that finds nothing.
#[test]
fn a_compatible_difference_keeps_the_baseline() {
    let (dir, _) = frozen(LEAK, "keep-compatible");
    let d = dir.to_str().unwrap();
    let before = std::fs::read_to_string(dir.join("pc-2.0.json")).unwrap();
    let text = std::fs::read_to_string(common::manifest_dir().join(LEAK).join("new.json")).unwrap();
    // The new field, gated off every frozen machine type.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fields = v["devices"][0]["fields"].as_array_mut().unwrap();
    let f = fields
        .iter_mut()
        .find(|f| f["name"] == "fifo_level")
        .unwrap();
    f["gate"] = serde_json::json!({"machine": {"op": "ge", "version": {"major": 4, "minor": 0}}});
    let p = temp_dir("keep-compatible-schema").join("gated.json");
    std::fs::write(&p, v.to_string()).unwrap();
    let g = p.to_str().unwrap();
    let r = check(g, &dir, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = freeze(&["pc-2.0"], g, &dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr.replace(d, "[DIR]"),
        "        Kept pc-2.0: 1 device → [DIR]/pc-2.0.json (the current code still sends and \
         loads what it records; it would record a different layout)\n  \
         what the current code would record for pc-2.0:\n    \
         section `uart`: field `fifo_level` (u8, 1 byte; never sent) added\n\
         note: `cargo compat-check --machine pc-2.0` reports no failure (e.g. the new items are \
         never sent for pc-2.0), so the baseline stays as frozen; `cargo compat-check freeze \
         pc-2.0 --force` records the new layout (only for a machine type that was never \
         released: a frozen one must keep what its release sends)\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("pc-2.0.json")).unwrap(),
        before
    );
}

/// Issue 9: a compat entry whose driver or property is misspelt applies to nothing, so gated
/// state leaks into old machine types; check and freeze reject the catalog (exit 2), name the
/// entry and the closest valid name, and write nothing.
#[test]
fn misspelt_compat_entries_are_errors() {
    let t = temp_dir("catalog-typo");
    let compat = t.join("compat");
    let driver = "tests/catalog-fixtures/misspelt-driver.json";
    let property = "tests/catalog-fixtures/misspelt-property.json";
    let r = freeze(&["--all"], driver, &compat);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "error: tests/catalog-fixtures/misspelt-driver.json: the machine catalog of crate \
         `fixture-devices` has compat entries that apply to nothing:\n  compat entry #0 {upto: \
         \"1.0\", driver: \"uart0\", property: \"x-migrate-scr\", value: false}: no section \
         `uart0` among the crate's devices (`uart`); did you mean `uart`?\n"
    );
    assert!(
        !compat.exists(),
        "freeze wrote baselines from a misspelt catalog"
    );
    let r = freeze(&["--all"], property, &compat);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_contains(
        &r.stderr,
        "compat entry #0 {upto: \"1.0\", driver: \"uart\", property: \"x-migrate-src\", \
         value: false}: section `uart` (`Uart`, src/uart.rs:8) declares no property \
         `x-migrate-src` (its properties: `x-migrate-scr`); did you mean `x-migrate-scr`?",
    );
    // The framing property of the runtime's own `migration` driver is valid.
    assert!(!r.stderr.contains("#1"), "{}", r.stderr);
    // The check rejects it the same way, against baselines frozen from the correct catalog.
    let (good, _) = frozen(
        "tests/fixtures/field-no-longer-migrated",
        "catalog-typo-good",
    );
    for bad in [driver, property] {
        let r = check(bad, &good, &[]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert_contains(&r.stderr, "did you mean");
        assert!(r.stdout.is_empty());
    }
    // And a misspelt framing property is caught by the catalog's own validation.
    let text = std::fs::read_to_string(common::manifest_dir().join(property)).unwrap();
    let p = t.join("framing.json");
    std::fs::write(
        &p,
        text.replace("\"x-migrate-src\"", "\"x-migrate-scr\"")
            .replace("\"send-configuration\"", "\"send-configration\""),
    )
    .unwrap();
    let r = check(p.to_str().unwrap(), &good, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_contains(
        &r.stderr,
        "the `migration` driver has no property `send-configration`; did you mean \
         `send-configuration`?",
    );
}

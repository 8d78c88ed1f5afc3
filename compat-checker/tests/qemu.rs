//! Tests of the QEMU mode (`cargo compat-check qemu-dump SRC.json DST.json`,
//! `compat_checker::qemu`).
//!
//! - Fixtures: `tests/qemu-fixtures/*.json`, real QEMU 7.2 `-dump-vmstate` output written by
//!   `scripts/make-qemu-dumps.sh` (pc-i440fx-7.2 in full; pc-i440fx-2.3 and pc-q35-7.2 cut to a
//!   dozen sections).
//! - Every mutated pair is built here from the real pc-i440fx-7.2 dump (SRC = old release,
//!   DST = new release), one or more per rule, each asserting the exact findings.
//! - Differential tests (`needs_qemu`, ignored by default) run QEMU's
//!   `scripts/vmstate-static-checker.py` (`/opt/qemu-src/scripts/vmstate-static-checker.py`,
//!   fetched by `scripts/get-qemu-scripts.sh`) on the same pairs in both directions and compare.
//!   `.ci/run` runs them with `-- --ignored needs_qemu::`; run so, a missing script fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use compat_checker::finding::{Direction, Report, Severity};
use compat_checker::qemu::{check_qemu_dumps, qemu_rules};
use serde_json::{json, Value};

const SCRIPT: &str = "/opt/qemu-src/scripts/vmstate-static-checker.py";
const QEMU_TEST_DATA: &str = "/opt/qemu-src/tests/vmstate-static-checker-data";
const FWD: Direction = Direction::OldToNew;
const REV: Direction = Direction::NewToOld;

// ---------------------------------------------------------------------------------------------
// Fixtures and mutation helpers.
// ---------------------------------------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/qemu-fixtures")
}

fn load(name: &str) -> Value {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The real pc-i440fx-7.2 dump, cut to the sections of the small fixtures.
fn base() -> Value {
    let full = load("pc-i440fx-7.2.json");
    let small = load("pc-i440fx-2.3.json");
    let mut out = serde_json::Map::new();
    for key in small.as_object().unwrap().keys() {
        out.insert(key.clone(), full[key].clone());
    }
    Value::Object(out)
}

/// The top-level Description of a section.
fn top<'a>(v: &'a mut Value, section: &str) -> &'a mut Value {
    &mut v[section]["Description"]
}

/// The nested `serial` Description inside isa-serial's field `state`.
fn serial(v: &mut Value) -> &mut Value {
    &mut v["isa-serial"]["Description"]["Fields"][0]["Description"]
}

fn fields(desc: &mut Value) -> &mut Vec<Value> {
    desc["Fields"].as_array_mut().unwrap()
}

fn pos(list: &[Value], name: &str) -> usize {
    list.iter()
        .position(|f| f["field"] == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn field_mut<'a>(desc: &'a mut Value, name: &str) -> &'a mut Value {
    let list = fields(desc);
    let i = pos(list, name);
    &mut list[i]
}

fn scalar(name: &str, version: i64, size: u64) -> Value {
    json!({"field": name, "version_id": version, "field_exists": false, "size": size})
}

fn set_versions(v: &mut Value, section: &str, version: i64, min: Option<i64>) {
    for key in [None, Some("Description")] {
        let obj = match key {
            None => &mut v[section],
            Some(k) => &mut v[section][k],
        };
        obj["version_id"] = json!(version);
        if let Some(m) = min {
            obj["minimum_version_id"] = json!(m);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------------------------

/// One expected finding: rule, direction, device, path, message.
type Exp = (
    &'static str,
    Direction,
    &'static str,
    &'static str,
    &'static str,
);

struct Case {
    name: &'static str,
    src: Value,
    dst: Value,
    /// Exactly these findings.
    expect: Vec<Exp>,
    /// Rule ids this tool reports beyond the script's, forward and reverse (blind spots).
    extra: [&'static [&'static str]; 2],
}

fn case(
    name: &'static str,
    src: Value,
    dst: Value,
    expect: Vec<Exp>,
    extra: [&'static [&'static str]; 2],
) -> Case {
    Case {
        name,
        src,
        dst,
        expect,
        extra,
    }
}

/// `mutate` is applied to a copy of the base dump that becomes DST.
fn dst_case(
    name: &'static str,
    mutate: impl FnOnce(&mut Value),
    expect: Vec<Exp>,
    extra: [&'static [&'static str]; 2],
) -> Case {
    let src = base();
    let mut dst = src.clone();
    mutate(&mut dst);
    case(name, src, dst, expect, extra)
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    let none: &[&str] = &[];
    let mut out = vec![
        // A device type gone from the new release (forward) and one new in it (reverse).
        {
            let mut src = base();
            src.as_object_mut().unwrap().remove("hpet");
            let mut dst = base();
            dst.as_object_mut().unwrap().remove("isa-pit");
            case(
                "section-missing",
                src,
                dst,
                vec![
                    ("qemu-section-missing", FWD, "isa-pit", "",
                     "section \"isa-pit\" is in old but not in new"),
                    ("qemu-section-missing", REV, "hpet", "",
                     "section \"hpet\" is in new but not in old"),
                ],
                [none, none],
            )
        },
        // version_id bumped for new state: new->old breaks (section header and Description).
        dst_case(
            "version-too-new",
            |d| set_versions(d, "isa-serial", 4, None),
            vec![
                ("qemu-version-too-new", REV, "isa-serial", "",
                 "section version_id 4 in new is newer than old's version_id 3"),
                ("qemu-version-too-new", REV, "isa-serial", "serial",
                 "Description \"serial\" version_id 4 in new is newer than old's version_id 3"),
            ],
            [none, none],
        ),
        // minimum_version_id raised above what the old release sends. The script prints the
        // section-level line only partly and does not count it; it counts the Description one.
        dst_case(
            "minimum-version",
            |d| set_versions(d, "isa-serial", 4, Some(4)),
            vec![
                ("qemu-minimum-version", FWD, "isa-serial", "",
                 "section version_id 3 in old is below new's minimum_version_id 4"),
                ("qemu-minimum-version", FWD, "isa-serial", "serial",
                 "Description \"serial\" version_id 3 in old is below new's minimum_version_id 4"),
                ("qemu-version-too-new", REV, "isa-serial", "",
                 "section version_id 4 in new is newer than old's version_id 3"),
                ("qemu-version-too-new", REV, "isa-serial", "serial",
                 "Description \"serial\" version_id 4 in new is newer than old's version_id 3"),
            ],
            [none, none],
        ),
        dst_case(
            "entry-missing",
            |d| {
                top(d, "mc146818rtc").as_object_mut().unwrap().remove("Subsections");
                d["isa-pit"].as_object_mut().unwrap().remove("minimum_version_id");
            },
            vec![
                ("qemu-entry-missing", FWD, "isa-pit", "",
                 "entry \"minimum_version_id\" of section \"isa-pit\" is in old but missing in new"),
                ("qemu-entry-missing", FWD, "mc146818rtc", "mc146818rtc",
                 "entry \"Subsections\" of Description \"mc146818rtc\" is in old but missing in new"),
            ],
            [none, none],
        ),
        dst_case(
            "description-renamed",
            |d| top(d, "isa-pit")["name"] = json!("pit"),
            vec![
                ("qemu-description-renamed", FWD, "isa-pit", "i8254",
                 "Description \"i8254\" in old is named \"pit\" in new; its contents were not compared"),
                ("qemu-description-renamed", REV, "isa-pit", "pit",
                 "Description \"pit\" in new is named \"i8254\" in old; its contents were not compared"),
            ],
            [none, none],
        ),
        dst_case(
            "field-mismatch",
            |d| field_mut(serial(d), "lcr")["field"] = json!("line_ctrl"),
            vec![
                ("qemu-field-mismatch", FWD, "isa-serial", "serial/state.lcr",
                 "old sends field \"lcr\" where new has \"line_ctrl\"; later fields of \"serial\" were not compared"),
                ("qemu-field-mismatch", REV, "isa-serial", "serial/state.line_ctrl",
                 "new sends field \"line_ctrl\" where old has \"lcr\"; later fields of \"serial\" were not compared"),
            ],
            [none, none],
        ),
        // 12 unused bytes replace 16 bytes of fields.
        dst_case(
            "unused-size-mismatch",
            |d| {
                let list = fields(top(d, "mc146818rtc"));
                let i = pos(list, "periodic_timer");
                list.splice(i..i + 2, [scalar("unused", 0, 12)]);
            },
            vec![
                ("qemu-unused-size-mismatch", FWD, "mc146818rtc", "mc146818rtc/next_periodic_time",
                 "unused bytes in old and new do not line up with the fields they replace, near \"next_periodic_time\""),
                ("qemu-unused-size-mismatch", REV, "mc146818rtc", "mc146818rtc/next_periodic_time",
                 "unused bytes in new and old do not line up with the fields they replace, near \"next_periodic_time\""),
            ],
            [none, none],
        ),
        // Allowed: `unused` of the same size replacing one field, and one replacing a run of
        // two fields (8 + 8 bytes).
        dst_case(
            "unused-replaces-fields",
            |d| {
                let list = fields(top(d, "mc146818rtc"));
                let i = pos(list, "period");
                list[i] = scalar("unused", 2, 4);
                let i = pos(list, "periodic_timer");
                list.splice(i..i + 2, [scalar("unused", 0, 16)]);
            },
            vec![],
            [none, none],
        ),
        // Blind spot: the last field replaced by a larger `unused`. The script stops silently
        // forward with 4 bytes of the new `unused` unmatched.
        dst_case(
            "unused-open-at-end",
            |d| {
                let list = fields(top(d, "mc146818rtc"));
                let i = pos(list, "next_alarm_time");
                list[i] = scalar("unused", 3, 12);
            },
            vec![
                ("qemu-unused-size-mismatch", FWD, "mc146818rtc", "mc146818rtc/unused",
                 "new's \"unused\" still expects 4 bytes after old's last field"),
                ("qemu-dest-runs-out-of-fields", REV, "mc146818rtc", "mc146818rtc/unused",
                 "new sends field \"unused\" but old has no further fields"),
            ],
            [&["qemu-unused-size-mismatch"], none],
        ),
        // The new release dropped the last field. Reverse, the old receiver expects it after the
        // new sender's last field, which the script does not see.
        dst_case(
            "dest-runs-out-of-fields",
            |d| {
                fields(top(d, "mc146818rtc")).pop();
            },
            vec![
                ("qemu-dest-runs-out-of-fields", FWD, "mc146818rtc", "mc146818rtc/next_alarm_time",
                 "old sends field \"next_alarm_time\" but new has no further fields"),
                ("qemu-field-appended", REV, "mc146818rtc", "mc146818rtc/next_alarm_time",
                 "old expects field \"next_alarm_time\" (version_id 3 at version 3) after the last field new sends"),
            ],
            [none, &["qemu-field-appended"]],
        ),
        dst_case(
            "field-size-mismatch",
            |d| field_mut(serial(d), "divider")["size"] = json!(4),
            vec![
                ("qemu-field-size-mismatch", FWD, "isa-serial", "serial/state.divider",
                 "field \"divider\" is 2 bytes in old but 4 bytes in new"),
                ("qemu-field-size-mismatch", REV, "isa-serial", "serial/state.divider",
                 "field \"divider\" is 4 bytes in new but 2 bytes in old"),
            ],
            [none, none],
        ),
        dst_case(
            "missing-description",
            |d| {
                field_mut(top(d, "isa-pit"), "channels")
                    .as_object_mut()
                    .unwrap()
                    .remove("Description");
            },
            vec![("qemu-missing-description", FWD, "isa-pit", "i8254/channels",
                  "field \"channels\" is a nested struct in old but has no nested Description in new")],
            [none, none],
        ),
        dst_case(
            "subsection-missing",
            |d| {
                let subs = serial(d)["Subsections"].as_array_mut().unwrap();
                subs.retain(|s| s["name"] != "serial/poll");
            },
            vec![("qemu-subsection-missing", FWD, "isa-serial", "serial/state{serial/poll}",
                  "subsection \"serial/poll\" of \"serial\" may be sent by old but new does not know it")],
            [none, none],
        ),
        // Blind spot: an unversioned field appended at the end of the UART state. The script
        // passes the forward check (`-s old -d new` exits 0) although the new release then reads
        // a byte the old one never sent; only `--reverse` complains. We report both directions.
        dst_case(
            "field-appended",
            |d| fields(serial(d)).push(scalar("new_reg", 0, 1)),
            vec![
                ("qemu-field-appended", FWD, "isa-serial", "serial/state.new_reg",
                 "new expects field \"new_reg\" (version_id 0 at version 3) after the last field old sends"),
                ("qemu-dest-runs-out-of-fields", REV, "isa-serial", "serial/state.new_reg",
                 "new sends field \"new_reg\" but old has no further fields"),
            ],
            [&["qemu-field-appended"], none],
        ),
        // A properly versioned append (field version 4, section bumped to 4): old->new is fine,
        // new->old is not (the old release rejects version 4).
        dst_case(
            "versioned-append",
            |d| {
                set_versions(d, "mc146818rtc", 4, None);
                fields(top(d, "mc146818rtc")).push(scalar("new_reg", 4, 1));
            },
            vec![
                ("qemu-version-too-new", REV, "mc146818rtc", "",
                 "section version_id 4 in new is newer than old's version_id 3"),
                ("qemu-version-too-new", REV, "mc146818rtc", "mc146818rtc",
                 "Description \"mc146818rtc\" version_id 4 in new is newer than old's version_id 3"),
                ("qemu-dest-runs-out-of-fields", REV, "mc146818rtc", "mc146818rtc/new_reg",
                 "new sends field \"new_reg\" but old has no further fields"),
            ],
            [none, none],
        ),
        dst_case(
            "conditional-field-appended",
            |d| {
                let mut f = scalar("new_reg", 0, 4);
                f["field_exists"] = json!(true);
                fields(top(d, "mc146818rtc")).push(f);
            },
            vec![
                ("qemu-conditional-field-appended", FWD, "mc146818rtc", "mc146818rtc/new_reg",
                 "new may expect field \"new_reg\" (it has a field_exists test) after the last field old sends"),
                ("qemu-dest-runs-out-of-fields", REV, "mc146818rtc", "mc146818rtc/new_reg",
                 "new sends field \"new_reg\" but old has no further fields"),
            ],
            [&["qemu-conditional-field-appended"], none],
        ),
        // Blind spot: a field's version_id raised without a section bump. Old sends `scr` at
        // version 3; new loads version 3 and skips it. The script only sees the reverse.
        dst_case(
            "field-presence-changed",
            |d| field_mut(serial(d), "scr")["version_id"] = json!(4),
            vec![
                ("qemu-field-presence-changed", FWD, "isa-serial", "serial/state.scr",
                 "old sends field \"scr\" (version_id 0 at version 3) but new skips it (version_id 4 at version 3)"),
                ("qemu-field-presence-changed", REV, "isa-serial", "serial/state.scr",
                 "new does not send field \"scr\" (version_id 4 at version 3) but old expects it (version_id 0 at version 3)"),
                ("qemu-version-too-new", REV, "isa-serial", "serial/state.scr",
                 "field \"scr\" version_id 4 in new is newer than old's version_id 0"),
            ],
            [&["qemu-field-presence-changed"], &["qemu-field-presence-changed"]],
        ),
        // Allowed: the section rename table (e1000-82540em <-> e1000).
        {
            let mut src = base();
            let map = src.as_object_mut().unwrap();
            let mut e1000 = map.remove("e1000").unwrap();
            e1000["Name"] = json!("e1000-82540em");
            map.insert("e1000-82540em".to_owned(), e1000);
            case("section-rename-table", src, base(), vec![], [none, none])
        },
        // Allowed: renamed fields on the changed_names allowlist.
        dst_case(
            "changed-names-allowlist",
            |d| {
                field_mut(top(d, "e1000"), "parent_obj")["field"] = json!("dev");
                field_mut(top(d, "PIIX4_PM"), "ar.tmr.timer")["field"] = json!("tmr.timer");
            },
            vec![],
            [none, none],
        ),
        // Allowed: two fields moved into a nested struct (same bytes on the wire).
        dst_case(
            "moved-into-substruct",
            |d| {
                let list = fields(serial(d));
                let i = pos(list, "rbr");
                let moved: Vec<Value> = list.splice(i..i + 2, []).collect();
                let regs = json!({"field": "regs", "version_id": 0, "field_exists": false,
                    "size": 2, "Description": {"name": "serial_regs", "version_id": 1,
                    "minimum_version_id": 1, "Fields": moved}});
                list.insert(i, regs);
            },
            vec![],
            [none, none],
        ),
        // Blind spot: the element count of a fixed array (`num`, dumped by QEMU >= 8.1).
        {
            let mut src = base();
            field_mut(top(&mut src, "isa-pit"), "channels")["num"] = json!(3);
            let mut dst = base();
            field_mut(top(&mut dst, "isa-pit"), "channels")["num"] = json!(4);
            case(
                "array-length-changed",
                src,
                dst,
                vec![
                    ("qemu-array-length-changed", FWD, "isa-pit", "i8254/channels",
                     "array \"channels\" has 3 elements in old but 4 in new"),
                    ("qemu-array-length-changed", REV, "isa-pit", "i8254/channels",
                     "array \"channels\" has 4 elements in new but 3 in old"),
                ],
                [&["qemu-array-length-changed"], &["qemu-array-length-changed"]],
            )
        },
    ];
    // Real dumps of two machine types: they differ only in vmschkmachine.Name.
    out.push(case(
        "machine-mismatch",
        base(),
        load("pc-i440fx-2.3.json"),
        vec![("qemu-machine-mismatch", Direction::Both, "vmschkmachine", "",
              "dumps are for different machine types: \"pc-i440fx-7.2\" (old) and \"pc-i440fx-2.3\" (new)")],
        [none, none],
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// Running our checker and the script.
// ---------------------------------------------------------------------------------------------

fn check(src: &Value, dst: &Value) -> Report {
    check_qemu_dumps(src, dst).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn dir_name(d: Direction) -> &'static str {
    match d {
        Direction::OldToNew => "old-to-new",
        Direction::NewToOld => "new-to-old",
        Direction::Both => "both",
    }
}

/// Our rule ids and deny count in one direction (findings for `Both` count in each).
fn ours(report: &Report, dir: Direction) -> (BTreeSet<String>, usize) {
    let mine = report
        .findings
        .iter()
        .filter(|f| f.direction == dir || f.direction == Direction::Both);
    let ids = mine.clone().map(|f| f.rule.clone()).collect();
    let denies = mine.filter(|f| f.severity == Severity::Deny).count();
    (ids, denies)
}

/// The rule id of one line of the script's output.
fn script_rule(line: &str) -> Option<&'static str> {
    // Order matters: "minimum version error" contains "version error", "unused size mismatch"
    // contains "size mismatch".
    const MAP: &[(&str, &str)] = &[
        (
            "checking incompatible machine types",
            "qemu-machine-mismatch",
        ),
        ("does not exist in dest", "qemu-section-missing"),
        ("minimum version error", "qemu-minimum-version"),
        ("version error", "qemu-version-too-new"),
        (
            "while dest has no further fields",
            "qemu-dest-runs-out-of-fields",
        ),
        ("; skipping rest", "qemu-field-mismatch"),
        ("instead; skipping", "qemu-description-renamed"),
        ("unused size mismatch", "qemu-unused-size-mismatch"),
        ("size mismatch", "qemu-field-size-mismatch"),
        (": missing description", "qemu-missing-description"),
        ("\" not found", "qemu-subsection-missing"),
        ("\" missing", "qemu-entry-missing"),
    ];
    MAP.iter()
        .find(|(pat, _)| line.contains(pat))
        .map(|&(_, id)| id)
}

struct ScriptRun {
    ids: BTreeSet<String>,
    errors: i32,
    output: String,
}

/// Runs the script with the sender and receiver of `dir` (the script's own `--reverse`).
fn run_script(src: &Path, dst: &Path, dir: Direction) -> Option<ScriptRun> {
    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT).arg("-s").arg(src).arg("-d").arg(dst);
    if dir == REV {
        cmd.arg("--reverse");
    }
    let out = cmd.output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Traceback") {
        return None;
    }
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut ids = BTreeSet::new();
    for line in output.lines() {
        match script_rule(line) {
            Some(id) => {
                ids.insert(id.to_owned());
            }
            // The script's section-level minimum version check prints a bare `Section "x" `
            // without a newline; it is glued to the next line or left alone at the end.
            None => assert!(
                line.trim_end().starts_with("Section \"") && !line.contains(':'),
                "unrecognised script output line: {line:?}"
            ),
        }
    }
    Some(ScriptRun {
        ids,
        errors: out.status.code().expect("exit status"),
        output,
    })
}

/// Fails the test unless the script and python3 are there (the `needs_qemu` tests run only
/// when asked for, where they are installed).
fn require_script() {
    assert!(
        Path::new(SCRIPT).exists(),
        "{SCRIPT} not found: run `bash scripts/get-qemu-scripts.sh`"
    );
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "python3 not found"
    );
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("qemu-diff-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, v: &Value) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compares our report with the script's in both directions. `extra`: the ids we must report
/// beyond the script's (`None`: any of the blind-spot rules may appear). Returns the script's
/// error count over both directions, or `None` if it crashed.
fn compare_with_script(
    label: &str,
    src: &Path,
    dst: &Path,
    report: &Report,
    extra: Option<[&[&str]; 2]>,
) -> Option<i32> {
    const BLIND_SPOT_RULES: &[&str] = &[
        "qemu-field-appended",
        "qemu-conditional-field-appended",
        "qemu-field-presence-changed",
        "qemu-array-length-changed",
        "qemu-unused-size-mismatch",
        "qemu-minimum-version",
    ];
    let mut script_errors = 0;
    for (k, dir) in [FWD, REV].into_iter().enumerate() {
        let script = run_script(src, dst, dir)?;
        script_errors += script.errors;
        let (mine, denies) = ours(report, dir);
        let ctx = format!(
            "{label} {}:\nscript (exit {}):\n{}\nours: {mine:?}\nreport: {report:#?}",
            dir_name(dir),
            script.errors,
            script.output
        );
        assert!(
            denies >= usize::try_from(script.errors).unwrap(),
            "fewer deny findings than script errors: {ctx}"
        );
        assert!(
            script.ids.is_subset(&mine),
            "missed what the script found: {ctx}"
        );
        let beyond: BTreeSet<&str> = mine.difference(&script.ids).map(String::as_str).collect();
        match extra {
            Some(e) => {
                let want: BTreeSet<&str> = e[k].iter().copied().collect();
                assert_eq!(beyond, want, "ids beyond the script's: {ctx}");
            }
            None => assert!(
                beyond.iter().all(|id| BLIND_SPOT_RULES.contains(id)),
                "ids beyond the script's that are not blind-spot rules: {ctx}"
            ),
        }
    }
    Some(script_errors)
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_case_gives_exactly_its_findings() {
    let severities: std::collections::HashMap<&str, Severity> =
        qemu_rules().into_iter().map(|r| (r.0, r.1)).collect();
    for c in cases() {
        let report = check(&c.src, &c.dst);
        let mut got: Vec<(String, Direction, String, String, String)> = report
            .findings
            .iter()
            .map(|f| {
                (
                    f.rule.clone(),
                    f.direction,
                    f.section.clone(),
                    f.path.clone(),
                    f.message.clone(),
                )
            })
            .collect();
        let mut want: Vec<(String, Direction, String, String, String)> = c
            .expect
            .iter()
            .map(|e| (e.0.into(), e.1, e.2.into(), e.3.into(), e.4.into()))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "case {}", c.name);
        for f in &report.findings {
            assert_eq!(
                Some(&f.severity),
                severities.get(f.rule.as_str()),
                "{}",
                f.rule
            );
            assert!(f.location.is_none());
            assert!(!f.fix.is_empty(), "{}: empty fix", f.rule);
            assert!(!f.message.contains('\n'), "{}: multi-line message", f.rule);
            assert!(!f.machines.is_empty());
        }
    }
}

#[test]
fn every_rule_has_a_case() {
    let all = cases();
    let mut seen = BTreeSet::new();
    for c in &all {
        for e in &c.expect {
            seen.insert(e.0);
        }
    }
    for (id, _, summary, explanation) in qemu_rules() {
        assert!(id.starts_with("qemu-"), "{id}");
        assert!(!summary.is_empty() && !explanation.is_empty(), "{id}");
        assert!(seen.contains(id), "rule {id} has no case");
    }
    let ids: BTreeSet<&str> = qemu_rules().into_iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), qemu_rules().len(), "duplicate rule ids");
    for id in &seen {
        assert!(ids.contains(id), "case uses unregistered rule {id}");
    }
}

#[test]
fn identical_dumps_give_an_empty_report() {
    for name in [
        "pc-i440fx-7.2.json",
        "pc-i440fx-2.3.json",
        "pc-q35-7.2.json",
    ] {
        let dump = load(name);
        let report = check(&dump, &dump);
        assert!(report.findings.is_empty(), "{name}: {:#?}", report.findings);
        assert!(!report.failed());
        assert_eq!(report.machines_checked.len(), 1);
        assert_eq!(
            report.devices_checked,
            dump.as_object().unwrap().len() - 1,
            "{name}"
        );
    }
}

#[test]
fn machine_types_differ_only_in_name() {
    let i440fx = base();
    for (name, machine) in [
        ("pc-i440fx-2.3.json", "pc-i440fx-2.3"),
        ("pc-q35-7.2.json", "pc-q35-7.2"),
    ] {
        let other = load(name);
        let report = check(&i440fx, &other);
        assert!(!report.failed(), "{name}: {:#?}", report.findings);
        assert_eq!(report.findings.len(), 1, "{name}: {:#?}", report.findings);
        let f = &report.findings[0];
        assert_eq!(f.rule, "qemu-machine-mismatch");
        assert_eq!(f.severity, Severity::Warn);
        assert_eq!(f.direction, Direction::Both);
        assert_eq!(
            f.machines,
            vec!["pc-i440fx-7.2".to_owned(), machine.to_owned()]
        );
        assert_eq!(report.machines_checked, f.machines);
    }
}

#[test]
fn malformed_dumps_are_errors() {
    let good = base();
    let bad = |mutate: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        mutate(&mut v);
        v
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "DST: a -dump-vmstate file is a JSON object, got an array"),
        (json!({"isa-serial": {}}), "DST: \"vmschkmachine\": {\"Name\": <string>} is missing"),
        (
            bad(&|v| v["isa-pit"] = json!(3)),
            "DST: section \"isa-pit\": expected an object, got a number",
        ),
        (
            bad(&|v| v["isa-pit"]["version_id"] = json!("3")),
            "DST: section \"isa-pit\": \"version_id\" must be an integer, got \"3\"",
        ),
        (
            bad(&|v| top(v, "isa-pit")["Fields"] = json!({})),
            "DST: section \"isa-pit\": Description.Fields: expected an array, got an object",
        ),
        (
            bad(&|v| {
                field_mut(serial(v), "divider")
                    .as_object_mut()
                    .unwrap()
                    .remove("size");
            }),
            "DST: section \"isa-serial\": Description.Fields[0].Description.Fields[0]: \"size\" is missing",
        ),
        (
            bad(&|v| field_mut(serial(v), "divider")["size"] = json!(-2)),
            "DST: section \"isa-serial\": Description.Fields[0].Description.Fields[0]: \"size\" must be a non-negative integer, got -2",
        ),
        (
            bad(&|v| field_mut(serial(v), "divider")["field_exists"] = json!(0)),
            "DST: section \"isa-serial\": Description.Fields[0].Description.Fields[0]: \"field_exists\" must be a boolean, got a number",
        ),
        (
            bad(&|v| serial(v)["Subsections"][1]["name"] = json!(null)),
            "DST: section \"isa-serial\": Description.Fields[0].Description.Subsections[1]: \"name\" must be a string, got null",
        ),
    ];
    for (dst, want) in cases {
        assert_eq!(check_qemu_dumps(&good, &dst).unwrap_err(), want);
    }
    // The same in SRC position is reported as SRC.
    assert_eq!(
        check_qemu_dumps(&json!(null), &good).unwrap_err(),
        "SRC: a -dump-vmstate file is a JSON object, got null"
    );
    // Nesting deeper than the limit.
    let mut deep = json!({"name": "leaf", "version_id": 1});
    for _ in 0..70 {
        deep = json!({"name": "n", "version_id": 1, "Fields": [
            {"field": "f", "version_id": 0, "size": 1, "Description": deep}]});
    }
    let v = json!({"vmschkmachine": {"Name": "m"}, "dev": {"version_id": 1, "Description": deep}});
    let err = check_qemu_dumps(&v, &v).unwrap_err();
    assert!(err.contains("nested deeper than 64"), "{err}");
}

/// Random type damage anywhere in a real dump: always `Ok` or `Err`, never a panic.
#[test]
fn damaged_dumps_never_panic() {
    let good = base();
    let mut rng = Lcg(7);
    let junk = [
        json!(null),
        json!(-1),
        json!("x"),
        json!([]),
        json!({}),
        json!(1.5),
        json!(true),
    ];
    for _ in 0..400 {
        let mut v = good.clone();
        for _ in 0..1 + rng.below(3) {
            let ptrs = pointers(&v);
            let p = &ptrs[rng.below(ptrs.len())];
            if let Some(slot) = v.pointer_mut(p) {
                *slot = junk[rng.below(junk.len())].clone();
            }
        }
        let _ = check_qemu_dumps(&good, &v);
        let _ = check_qemu_dumps(&v, &good);
    }
}

/// Against QEMU's `scripts/vmstate-static-checker.py` (and, for the bad pair, its test data).
mod needs_qemu {
    use std::path::Path;

    use serde_json::Value;

    use super::{
        cases, check, compare_with_script, load, mutate, ours, require_script, Lcg, TempDir, FWD,
        QEMU_TEST_DATA,
    };

    #[test]
    #[ignore = "needs vmstate-static-checker.py: bash scripts/get-qemu-scripts.sh"]
    fn differential_against_vmstate_static_checker() {
        require_script();
        for c in cases() {
            let tmp = TempDir::new(c.name);
            let src = tmp.write("src.json", &c.src);
            let dst = tmp.write("dst.json", &c.dst);
            let report = check(&c.src, &c.dst);
            assert!(
                compare_with_script(c.name, &src, &dst, &report, Some(c.extra)).is_some(),
                "{}: the script crashed",
                c.name
            );
        }
    }

    /// QEMU's own hand-made bad pair (its test expects exit status 13), read in place.
    #[test]
    #[ignore = "needs vmstate-static-checker.py: bash scripts/get-qemu-scripts.sh"]
    fn differential_on_qemus_bad_pair() {
        let (d1, d2) = (
            Path::new(QEMU_TEST_DATA).join("dump1.json"),
            Path::new(QEMU_TEST_DATA).join("dump2.json"),
        );
        require_script();
        assert!(
            d1.exists() && d2.exists(),
            "{QEMU_TEST_DATA} not found: run `bash scripts/get-qemu-scripts.sh`"
        );
        let read = |p: &Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        let report = check(&read(&d1), &read(&d2));
        let (_, denies) = ours(&report, FWD);
        assert!(denies >= 13, "{report:#?}");
        assert_eq!(
            compare_with_script("dump1/dump2", &d1, &d2, &report, None),
            Some(13 + 6)
        );
    }

    /// Random structural mutations of the full pc-i440fx-7.2 dump, compared with the script.
    #[test]
    #[ignore = "needs vmstate-static-checker.py: bash scripts/get-qemu-scripts.sh"]
    fn differential_fuzz_on_the_full_dump() {
        require_script();
        let seeds: u64 = std::env::var("QEMU_DIFF_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(48);
        let full = load("pc-i440fx-7.2.json");
        let tmp = TempDir::new("fuzz");
        let (mut crashed, mut found) = (0, 0);
        for seed in 0..seeds {
            let mut rng = Lcg(seed * 7919 + 1);
            let mut src = full.clone();
            let mut dst = full.clone();
            let mut applied = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let target = if rng.below(4) == 0 {
                    &mut src
                } else {
                    &mut dst
                };
                applied.push(mutate(target, &mut rng));
            }
            let report = check(&src, &dst);
            let s = tmp.write("src.json", &src);
            let d = tmp.write("dst.json", &dst);
            let label = format!("seed {seed} {applied:?}");
            match compare_with_script(&label, &s, &d, &report, None) {
                None => crashed += 1,
                Some(0) => {}
                Some(_) => found += 1,
            }
        }
        println!(
            "fuzz: {seeds} seeds, the script found errors in {found}, crashed on {crashed} (skipped)"
        );
        assert!(crashed * 4 <= seeds, "the script crashed too often");
        assert!(
            found * 2 >= seeds,
            "too few mutations that the script notices"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Random mutation machinery.
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((self.0 >> 33) % (n.max(1) as u64)).unwrap()
    }
}

/// JSON pointers of every value in `v`.
fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        out.push(at.to_owned());
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    walk(x, &format!("{at}/{k}"), out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// Pointers of every Description (top-level, nested, subsection) in the dump.
fn descriptions(v: &Value) -> Vec<String> {
    pointers(v)
        .into_iter()
        .filter(|p| {
            p.ends_with("/Description") || {
                let parent = p.rsplit_once('/').map_or("", |x| x.0);
                parent.ends_with("/Subsections")
            }
        })
        .collect()
}

/// Applies one random structural mutation; returns what it did.
fn mutate(v: &mut Value, rng: &mut Lcg) -> String {
    let descs = descriptions(v);
    let with_fields: Vec<&String> = descs
        .iter()
        .filter(|p| {
            v.pointer(p)
                .and_then(|d| d["Fields"].as_array())
                .is_some_and(|a| !a.is_empty())
        })
        .collect();
    let op = rng.below(16);
    if op < 10 && !with_fields.is_empty() {
        let p = with_fields[rng.below(with_fields.len())].clone();
        let list = v.pointer_mut(&p).unwrap()["Fields"].as_array_mut().unwrap();
        let i = rng.below(list.len());
        let name = list[i]["field"].as_str().unwrap_or("").to_owned();
        let size = list[i]["size"].as_u64().unwrap_or(0);
        let what = match op {
            0 => {
                list.remove(i);
                "remove field"
            }
            1 => {
                list[i]["field"] = json!(format!("{name}_renamed"));
                "rename field"
            }
            2 => {
                list[i]["size"] = json!(size + 1 + rng.below(4) as u64);
                "resize field"
            }
            3 => {
                let v0 = list[i]["version_id"].as_i64().unwrap_or(0);
                list[i]["version_id"] = json!(v0 + 1 + rng.below(3) as i64);
                "bump field version"
            }
            4 => {
                list.push(scalar(
                    "appended",
                    rng.below(6) as i64,
                    1 + rng.below(8) as u64,
                ));
                "append field"
            }
            5 => {
                list.insert(i, scalar("inserted", 0, 4));
                "insert field"
            }
            6 => {
                // A run of scalar fields replaced by `unused`, sometimes of the wrong size.
                let mut j = i;
                let mut total = 0;
                while j < list.len() && j < i + 3 && list[j].get("Description").is_none() {
                    total += list[j]["size"].as_u64().unwrap_or(0);
                    j += 1;
                }
                if j == i {
                    return "nothing (struct field)".to_owned();
                }
                let wrong = rng.below(3) == 0;
                let size = if wrong { total + 2 } else { total };
                list.splice(i..j, [scalar("unused", 0, size)]);
                if wrong {
                    "unused of the wrong size"
                } else {
                    "unused for a run"
                }
            }
            7 => {
                if list[i].get("Description").is_some() {
                    list[i].as_object_mut().unwrap().remove("Description");
                    "drop nested Description"
                } else {
                    list.truncate(i);
                    "truncate fields"
                }
            }
            8 => {
                if i + 1 < list.len() {
                    list.swap(i, i + 1);
                }
                "swap fields"
            }
            _ => {
                // Move up to two fields into a new nested struct (wire-neutral).
                let j = (i + 2).min(list.len());
                let moved: Vec<Value> = list.splice(i..j, []).collect();
                list.insert(
                    i,
                    json!({"field": "moved", "version_id": 0, "field_exists": false, "size": 99,
                        "Description": {"name": "moved_struct", "version_id": 1,
                        "minimum_version_id": 1, "Fields": moved}}),
                );
                "move into substruct"
            }
        };
        return format!("{what} {p} #{i} {name}");
    }
    if op < 14 && !descs.is_empty() {
        let p = descs[rng.below(descs.len())].clone();
        let d = v.pointer_mut(&p).unwrap();
        let what = match op {
            10 => {
                let v0 = d["version_id"].as_i64().unwrap_or(0);
                d["version_id"] = json!(v0 + 1);
                "bump Description version"
            }
            11 => {
                let v0 = d["version_id"].as_i64().unwrap_or(0);
                d["minimum_version_id"] = json!(v0 + 1);
                d["version_id"] = json!(v0 + 1);
                "raise minimum version"
            }
            12 => {
                if let Some(subs) = d.get_mut("Subsections").and_then(Value::as_array_mut) {
                    let k = rng.below(subs.len());
                    subs.remove(k);
                    "remove subsection"
                } else {
                    d["name"] = json!("renamed_vmsd");
                    "rename Description"
                }
            }
            _ => {
                let key = if rng.below(2) == 0 {
                    "Fields"
                } else {
                    "Subsections"
                };
                d.as_object_mut().unwrap().remove(key);
                "remove entry"
            }
        };
        return format!("{what} {p}");
    }
    let keys: Vec<String> = v.as_object().unwrap().keys().skip(1).cloned().collect();
    let k = keys[rng.below(keys.len())].clone();
    if op == 14 {
        v.as_object_mut().unwrap().remove(&k);
        format!("remove section {k}")
    } else {
        let v0 = v[&k]["version_id"].as_i64().unwrap_or(0);
        v[&k]["version_id"] = json!(v0 + 1);
        format!("bump section version {k}")
    }
}

//! One fixture pair per rule: freeze `old.json`, check `new.json`, compare the exact output
//! (exit code, stdout, stderr; colour off, paths and times normalised) with
//! `tests/snapshots/<rule>.txt`. `UPDATE_SNAPSHOTS=1` rewrites the snapshots.
//!
//! The QEMU-dump rules the same way: `cargo compat-check qemu-dump old.json new.json` on
//! `tests/qemu-fixtures/<rule>/` (written by `scripts/make-qemu-rule-fixtures.py`).

mod common;

use compat_checker::rules::{self, Level, Rule};

/// Compares the transcript of rule `id`'s fixture with its snapshot and checks that the rule
/// fires; returns the rule.
fn assert_fires(id: &str, transcript: &str) -> &'static Rule {
    common::assert_snapshot(id, transcript);
    let rule = rules::lookup(id).unwrap();
    let header = match rule.level {
        Level::Warn => format!("--- warning {id}: "),
        _ => format!("--- failure {id}: "),
    };
    assert!(
        transcript.contains(&header),
        "fixture `{id}` does not trigger its rule:\n{transcript}"
    );
    rule
}

fn rule_case(id: &str) {
    let (transcript, code) = common::fixture_transcript(id, &[]);
    let rule = assert_fires(id, &transcript);
    assert!(rules::find(id).is_some(), "`{id}` is not a native rule");
    let expected = i32::from(rule.level == Level::Deny);
    assert_eq!(code, expected, "{transcript}");
}

fn qemu_rule_case(id: &str) {
    let (transcript, code) = common::qemu_fixture_transcript(id);
    assert_fires(id, &transcript);
    // A dump pair is compared both ways; the other direction may break another rule.
    let expected = i32::from(transcript.contains("--- failure "));
    assert_eq!(code, expected, "{transcript}");
}

/// Every rule of `all` is among `tested`, has a fixture pair in `tests/<fixtures>/<id>/` and a
/// snapshot, and every tested id is one of `all`.
fn assert_all_tested(tested: &[&str], all: &[&Rule], fixtures: &str) {
    let root = common::manifest_dir().join("tests");
    for r in all {
        assert!(
            tested.contains(&r.id),
            "rule `{}` has no test in tests/rules.rs",
            r.id
        );
        for f in ["old.json", "new.json"] {
            let p = root.join(fixtures).join(r.id).join(f);
            assert!(p.is_file(), "missing fixture {}", p.display());
        }
        let s = root.join("snapshots").join(format!("{}.txt", r.id));
        assert!(s.is_file(), "missing snapshot {}", s.display());
    }
    for id in tested {
        assert!(all.iter().any(|r| r.id == *id), "`{id}` is not registered");
    }
}

/// One test per rule (`name => id`, run by `case`), and the test `every` that checks that the
/// rules of `all` (with fixtures in `tests/<fixtures>/`) are exactly the tested ones.
macro_rules! rule_tests {
    ($case:ident, $all:expr, $fixtures:literal, $every:ident: $($name:ident => $id:literal,)*) => {
        $(
            #[test]
            fn $name() {
                $case($id);
            }
        )*

        /// Every registered rule has a test here, a fixture pair and a snapshot.
        #[test]
        fn $every() {
            assert_all_tested(&[$($id),*], $all, $fixtures);
        }
    };
}

rule_tests! {
    qemu_rule_case, rules::qemu::ALL, "qemu-fixtures", every_qemu_rule_has_a_fixture_and_a_snapshot:
    qemu_section_missing => "qemu-section-missing",
    qemu_version_too_new => "qemu-version-too-new",
    qemu_minimum_version => "qemu-minimum-version",
    qemu_entry_missing => "qemu-entry-missing",
    qemu_description_renamed => "qemu-description-renamed",
    qemu_field_mismatch => "qemu-field-mismatch",
    qemu_unused_size_mismatch => "qemu-unused-size-mismatch",
    qemu_dest_runs_out_of_fields => "qemu-dest-runs-out-of-fields",
    qemu_field_size_mismatch => "qemu-field-size-mismatch",
    qemu_missing_description => "qemu-missing-description",
    qemu_subsection_missing => "qemu-subsection-missing",
    qemu_field_appended => "qemu-field-appended",
    qemu_conditional_field_appended => "qemu-conditional-field-appended",
    qemu_field_presence_changed => "qemu-field-presence-changed",
    qemu_array_length_changed => "qemu-array-length-changed",
    qemu_machine_mismatch => "qemu-machine-mismatch",
}

rule_tests! {
    rule_case, rules::ALL, "fixtures", every_rule_has_a_fixture_and_a_snapshot:
    field_leaks_into_old_machine => "field-leaks-into-old-machine",
    subsection_leaks_into_old_machine => "subsection-leaks-into-old-machine",
    section_leaks_into_old_machine => "section-leaks-into-old-machine",
    device_added => "device-added",
    section_version_bumped => "section-version-bumped",
    subsection_version_bumped => "subsection-version-bumped",
    version_no_longer_accepted => "version-no-longer-accepted",
    field_removed_without_padding => "field-removed-without-padding",
    field_no_longer_migrated => "field-no-longer-migrated",
    field_kind_changed => "field-kind-changed",
    field_size_changed => "field-size-changed",
    array_length_changed => "array-length-changed",
    array_counted_by_configuration => "array-counted-by-configuration",
    field_order_changed => "field-order-changed",
    presence_changed_maybe => "presence-changed-maybe",
    subsection_no_longer_understood => "subsection-no-longer-understood",
    device_removed => "device-removed",
    device_renamed => "device-renamed",
    priority_changed => "priority-changed",
    machine_type_removed => "machine-type-removed",
}

/// Allowed changes (padding, rename, since + pin, gated subsection and device, relaxed minimum)
/// produce no finding.
#[test]
fn compatible_changes_pass() {
    let (transcript, code) = common::fixture_transcript("compatible", &[]);
    common::assert_snapshot("compatible", &transcript);
    assert_eq!(code, 0, "{transcript}");
    assert!(!transcript.contains("--- failure"), "{transcript}");
}

/// Checks that the fixture's new field, added without a gate, is reported as leaking into the
/// old machine types, at `src/uart.rs:15` and described as `shape`.
fn assert_leak_caught(fixture: &str, shape: &str) {
    let (transcript, code) = common::fixture_transcript(fixture, &[]);
    common::assert_snapshot(fixture, &transcript);
    assert_ne!(code, 0, "{transcript}");
    assert!(
        transcript.contains("field-leaks-into-old-machine"),
        "{transcript}"
    );
    assert!(transcript.contains("src/uart.rs:15"), "{transcript}");
    assert!(transcript.contains(shape), "{transcript}");
}

/// A field of a newer kind is checked like any other: an array of pointers (`[Option<u32>; 4]`,
/// QEMU's VMSTATE_ARRAY_OF_POINTER) added without a gate leaks into the old machine types.
#[test]
fn pointer_array_leak_is_caught() {
    assert_leak_caught("kind-pointer-array-leaks", "u32 pointer[4]");
}

/// A QTAILQ (`#[vmstate(list, max = 16)] queue: Vec<Elem>`) added without a gate leaks.
#[test]
fn list_leak_is_caught() {
    assert_leak_caught("kind-list-leaks", "qtailq of elem ≤ 16");
}

/// A GTREE with direct keys (`#[vmstate(tree, max = 64)] mappings: BTreeMap<u64, Mapping>`)
/// added without a gate leaks.
#[test]
fn tree_leak_is_caught() {
    assert_leak_caught("kind-tree-leaks", "gtree of direct key → mapping ≤ 64");
}

/// A temporary view (`tmp: Tmp<FpregTmp>`, QEMU's VMSTATE_WITH_TMP) added without a gate leaks:
/// the checker sees the view's fields where the marker stands.
#[test]
fn tmp_leak_is_caught() {
    assert_leak_caught("kind-tmp-leaks", "tmp view fpreg_tmp");
}

/// A field with a custom codec (`#[vmstate(with = pci_irq_state)]`) added without a gate leaks:
/// the checker compares the layout its description declares.
#[test]
fn custom_codec_leak_is_caught() {
    assert_leak_caught("kind-custom-leaks", "i32[4]");
}

/// A bitmap (`#[vmstate(bitmap = <count>, max = 256)] dirty: Vec<u64>`, QEMU's VMSTATE_BITMAP)
/// added without a gate leaks.
#[test]
fn bitmap_leak_is_caught() {
    assert_leak_caught("kind-bitmap-leaks", "bitmap");
}

/// An `f64` (QEMU's `CPU_DoubleU`, `gain: f64`) added without a gate leaks.
#[test]
fn f64_leak_is_caught() {
    assert_leak_caught("kind-f64-leaks", "f64");
}

/// A variable buffer of `lcr × 4` bytes (`#[vmstate(buffer, count = lcr, multiply = 4, max = 64)]`,
/// QEMU's VMS_MULTIPLY) added without a gate leaks.
#[test]
fn multiply_leak_is_caught() {
    assert_leak_caught("kind-multiply-leaks", "buffer[lcr × 4 ≤ 64]");
}

/// A nested struct held at an explicit version (`#[vmstate(vstruct = 1)] regs2: Elem`, QEMU's
/// VMSTATE_VSTRUCT) added without a gate leaks. Like any nested struct it is reported at its
/// fields (here `Elem.b`, declared at src/uart.rs:3), laid out at version 1: its field
/// `since = 2` is not on the wire, so it is not reported.
#[test]
fn vstruct_leak_is_caught() {
    let (transcript, code) = common::fixture_transcript("kind-vstruct-leaks", &[]);
    common::assert_snapshot("kind-vstruct-leaks", &transcript);
    assert_ne!(code, 0, "{transcript}");
    assert!(
        transcript.contains("field-leaks-into-old-machine"),
        "{transcript}"
    );
    assert!(
        transcript.contains("field `regs2.b` (bool, 1 byte)"),
        "{transcript}"
    );
    assert!(transcript.contains("src/uart.rs:3"), "{transcript}");
    assert!(!transcript.contains("regs2.u8"), "{transcript}");
}

/// Checking the unchanged code against its own baselines passes, for every fixture.
#[test]
fn every_fixture_is_compatible_with_itself() {
    let dir = common::manifest_dir().join("tests/fixtures");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if !p.is_dir() {
            continue;
        }
        for side in ["old.json", "new.json"] {
            let f = p.join(side);
            let t = common::temp_dir(&format!(
                "self-{}-{side}",
                p.file_name().unwrap().to_string_lossy()
            ));
            let compat = t.join("compat");
            let fs = f.display().to_string();
            let r = common::freeze(&["--all"], &fs, &compat);
            assert_eq!(r.code, 0, "{}", r.stderr);
            let r = common::check(&fs, &compat, &[]);
            assert_eq!(r.code, 0, "{}: {}{}", f.display(), r.stdout, r.stderr);
            assert!(r.stdout.is_empty(), "{}", r.stdout);
            let _ = std::fs::remove_dir_all(&t);
        }
    }
}

//! `export-qemu-dump`: our descriptions of QEMU's devices (examples-devices: the serial, PIT and
//! RTC models and `src/qemu/`) written in `-dump-vmstate` format and compared with QEMU 7.2's
//! own dump by `qemu-dump --common-only`, for pc-i440fx-7.2 and pc-q35-7.2.
//!
//! `tests/qemu-fixtures/pc-i440fx-7.2.json` is the whole dump QEMU 7.2 wrote; `needs_qemu`
//! repeats the comparison, for both machine types, against dumps the installed QEMU writes now. Every finding must be one of the
//! differences [`explained`] lists; anything else fails.

mod common;

use std::path::Path;

use serde_json::Value;

use common::{manifest_dir, run, temp_dir};

/// Every QOM type of ours in QEMU's dump: 26 of the 27 of
/// `[package.metadata.compat-check.qom-types]` (not `piix3-ide`, which QEMU's dump lacks: QEMU
/// registers its vmsd `ide` by hand), and `kvmclock`, `PIIX3` and `mch` (the same names as
/// their sections).
const QOM_TYPES: usize = 29;

/// Exports the workspace for `machine` and compares QEMU's dump `qemu` with it.
fn compare(machine: &str, qemu: &Path) -> (Value, Value) {
    let dir = temp_dir(&format!("export-{machine}"));
    let ours = dir.join("ours.json");
    let r = run(
        &["export-qemu-dump", machine, "--out", ours.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("Exported {machine}:")),
        "{}",
        r.stderr
    );
    let dump: Value = serde_json::from_slice(&std::fs::read(&ours).unwrap()).unwrap();
    let r = run(
        &[
            "qemu-dump",
            qemu.to_str().unwrap(),
            ours.to_str().unwrap(),
            "--common-only",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    (dump, serde_json::from_str(&r.stdout).unwrap())
}

/// The `Fields` entry named `name` (the first of that name) of a Description.
fn field<'a>(desc: &'a Value, name: &str) -> &'a Value {
    desc["Fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["field"] == name))
        .unwrap_or_else(|| panic!("no field {name} in {}", desc["name"]))
}

/// Follows a finding's path (`serial/state{serial/recv_fifo}.recv_fifo.data`,
/// `piix4_pm{piix4_pm/memhp}.acpi_memory_hotplug`) through QEMU's dump: the field, and the
/// lowest version its Description is ever loaded at — its own `version_id` for a nested struct
/// (QEMU loads those at their own version), its `minimum_version_id` for a section or
/// subsection (the stream version is at least that). Field names may contain dots
/// (`acpi_pci_hotplug.acpi_pcihp_pci_status`, `port.ifs[0]`): at each step the longest run of
/// path parts that names a field of the Description is taken.
fn qemu_field<'a>(qemu: &'a Value, device: &str, path: &str) -> (&'a Value, i64) {
    // Parts at brace depth 0, split at `.` and `/` (the section name ends at the first `/`).
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in path.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '.' | '/' if depth == 0 => {
                parts.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    // `name{sub}{sub2}` → ("name", ["sub", "sub2"]).
    let split = |t: &str| -> (String, Vec<String>) {
        let mut it = t.split('{');
        let name = it.next().unwrap();
        let subs = it.map(|s| s.trim_end_matches('}').to_owned()).collect();
        (name.to_owned(), subs)
    };
    let enter = |desc: &'a Value, sub: &str| -> &'a Value {
        desc["Subsections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == sub)
            .unwrap()
    };
    let (section, rest) = parts.split_first().unwrap();
    let mut desc = &qemu[device]["Description"];
    let mut nested = false;
    for sub in split(section).1 {
        desc = enter(desc, &sub);
    }
    let has = |desc: &Value, name: &str| {
        desc["Fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["field"] == name))
    };
    let mut i = 0;
    loop {
        let (j, name, subs) = (i + 1..=rest.len())
            .rev()
            .find_map(|j| {
                let (last, subs) = split(rest[j - 1]);
                if rest[i..j - 1].iter().any(|t| t.contains('{')) {
                    return None;
                }
                let mut name = rest[i..j - 1].join(".");
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&last);
                has(desc, &name).then_some((j, name, subs))
            })
            .unwrap_or_else(|| panic!("{path}: no field at `{}` in {}", rest[i], desc["name"]));
        if j == rest.len() {
            let floor = if nested {
                desc["version_id"].as_i64().unwrap()
            } else {
                desc["minimum_version_id"].as_i64().unwrap()
            };
            return (field(desc, &name), floor);
        }
        desc = &field(desc, &name)["Description"];
        nested = true;
        for sub in subs {
            desc = enter(desc, &sub);
            nested = false;
        }
        i = j;
    }
}

/// Why a finding is not a difference on the wire, or `None`.
fn explained(qemu: &Value, f: &Value) -> Option<&'static str> {
    let (rule, path) = (f["rule"].as_str()?, f["path"].as_str()?);
    let device = f["device"].as_str()?;
    match rule {
        // QEMU declares `_V(field, N)` where N is at most the version the Description is always
        // loaded at: the field is always there, as ours is (the DSL rejects `since` in nested
        // structs and where it cannot matter).
        "qemu-version-too-new" => {
            let (field, floor) = qemu_field(qemu, device, path);
            (field["version_id"].as_i64()? <= floor).then_some("field version that never matters")
        }
        // Fifo8's `data` is a VBUFFER sized by the FIFO's unmigrated `capacity` (16 for the
        // UART): QEMU's dump says size 0; ours is the fixed 16-byte buffer it always is.
        "qemu-field-size-mismatch" if path.ends_with("_fifo.data") => Some("Fifo8 data"),
        // QEMU keeps a version 1 `cur_offset` (16 bits, test `is_version_1`) before the 32-bit
        // one; ours accepts version 2 only, and names its field as QEMU's vmdesc does.
        "qemu-field-mismatch" if path.starts_with("fw_cfg/cur_offset") => Some("fw_cfg v1 offset"),
        _ => None,
    }
}

fn assert_matches_qemu(machine: &str, qemu_dump: &Path) {
    let qemu: Value = serde_json::from_slice(&std::fs::read(qemu_dump).unwrap()).unwrap();
    let (ours, report) = compare(machine, qemu_dump);
    assert_eq!(ours["vmschkmachine"]["Name"], machine);
    // Every mapped QOM type is in QEMU's dump and was compared.
    let common = ours
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "vmschkmachine" && qemu.get(k.as_str()).is_some())
        .count();
    assert_eq!(common, QOM_TYPES, "QOM types of ours found in QEMU's dump");
    assert_eq!(report["devices_checked"], QOM_TYPES);
    let mut unexplained = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in report["findings"].as_array().unwrap() {
        match explained(&qemu, f) {
            Some(why) => {
                seen.insert(why);
            }
            None => unexplained.push(f.to_string()),
        }
    }
    assert!(
        unexplained.is_empty(),
        "{machine}: our description differs from QEMU's:\n{}",
        unexplained.join("\n")
    );
    // The explanations are not dead: each still describes a real finding.
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn our_descriptions_match_qemu_72s_dump() {
    // The complete dump QEMU 7.2 wrote (the other fixtures there are cut down to a few devices).
    let fixture = manifest_dir().join("tests/qemu-fixtures/pc-i440fx-7.2.json");
    assert_matches_qemu("pc-i440fx-7.2", &fixture);
}

#[test]
fn a_changed_description_is_reported() {
    // The comparison is not blind: QEMU's dump with the RTC's `current_tm` turned into another
    // field name is an unexplained finding naming the field.
    let fixtures = manifest_dir().join("tests/qemu-fixtures");
    let mut qemu: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("pc-i440fx-7.2.json")).unwrap())
            .unwrap();
    let fields = qemu["mc146818rtc"]["Description"]["Fields"]
        .as_array_mut()
        .unwrap();
    let i = fields.iter().position(|f| f["field"] == "period").unwrap();
    fields[i]["field"] = "period_renamed".into();
    let dir = temp_dir("export-mutated");
    let path = dir.join("qemu.json");
    std::fs::write(&path, qemu.to_string()).unwrap();
    let (_, report) = compare("pc-i440fx-7.2", &path);
    let bad: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| explained(&qemu, f).is_none())
        .map(|f| f["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(bad.iter().any(|m| m.contains("period_renamed")), "{bad:?}");
}

#[test]
fn unknown_machine_type_is_a_tool_error() {
    let r = run(&["export-qemu-dump", "pc-i440fx-0.1"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pc-i440fx-0.1"), "{}", r.stderr);
}

mod needs_qemu {
    use std::process::Command;

    use super::*;

    #[test]
    #[ignore = "needs qemu-system-x86_64 (apt-get install qemu-system-x86)"]
    fn our_descriptions_match_the_installed_qemu() {
        for machine in ["pc-i440fx-7.2", "pc-q35-7.2"] {
            let dir = temp_dir(&format!("qemu-dump-{machine}"));
            let path = dir.join("qemu.json");
            let st = Command::new("qemu-system-x86_64")
                .args(["-M", machine, "-nodefaults", "-display", "none"])
                .arg("-dump-vmstate")
                .arg(&path)
                .status()
                .expect("qemu-system-x86_64 not found: apt-get install qemu-system-x86");
            assert!(st.success());
            assert_matches_qemu(machine, &path);
        }
    }
}

/// Fields whose description is a vmsd of their own — a nested struct at an explicit version
/// (`vstruct`) and a temporary view (`Tmp<V>`) — carry that vmsd as their `Description`, as in
/// QEMU's dump.
#[test]
fn nested_vmsds_of_vstruct_and_tmp_fields_are_described() {
    use vmstate_runtime::{MachineCatalog, Tmp, TmpView, VmState};

    #[derive(VmState, Clone, Default, Debug)]
    #[vmstate(name = "regs", version = 2, minimum_version = 1, nested)]
    struct Regs {
        a: u32,
    }
    #[derive(VmState, Clone, Default)]
    #[vmstate(name = "dev_tmp", version = 0, nested)]
    struct DevTmp {
        packed: u16,
    }
    #[derive(VmState, Clone, Default, Debug)]
    #[vmstate(name = "dev", version = 1)]
    struct Dev {
        #[vmstate(vstruct = 1)]
        regs: Regs,
        #[allow(dead_code)] // a zero-sized marker: the view is computed, never stored
        tmp: Tmp<DevTmp>,
        #[vmstate(skip)]
        bits: u16,
    }
    impl TmpView<Dev> for DevTmp {
        type Error = std::convert::Infallible;
        fn save_view(d: &Dev) -> Result<Self, Self::Error> {
            Ok(DevTmp { packed: d.bits })
        }
        fn load_view(self, d: &mut Dev) -> Result<(), Self::Error> {
            d.bits = self.packed;
            Ok(())
        }
    }
    let catalog = MachineCatalog::qemu_pc();
    let export =
        compat_checker::schema::Export::from_schemas("t", &catalog, &[<Dev as VmState>::SCHEMA])
            .unwrap();
    let dump =
        compat_checker::qemu::export::qemu_dump(&export, "pc-i440fx-7.2", &Default::default())
            .unwrap();
    let fields = &dump["dev"]["Description"]["Fields"];
    assert_eq!(fields[0]["field"], "regs");
    assert_eq!(fields[0]["Description"]["name"], "regs");
    assert_eq!(fields[1]["field"], "tmp");
    assert_eq!(fields[1]["Description"]["name"], "dev_tmp");
    assert_eq!(fields[1]["Description"]["Fields"][0]["field"], "packed");
}

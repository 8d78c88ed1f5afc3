//! QEMU mode: `cargo compat-check qemu-dump SRC.json DST.json`.
//!
//! Compares two QEMU `-dump-vmstate` files (qemu-wire-format.md §6) for the same machine type and
//! reports what would break a migration between the two binaries, **in both directions**.
//!
//! # Directions
//!
//! `SRC` is the dump of the **older** release, `DST` the dump of the **newer** one.
//!
//! - [`Direction::OldToNew`] (forward): can `DST` load what `SRC` sends? The sender is "old", the
//!   receiver "new". This is what `vmstate-static-checker.py -s SRC -d DST` checks.
//! - [`Direction::NewToOld`] (reverse): can `SRC` load what `DST` sends? The sender is "new", the
//!   receiver "old". This is what `vmstate-static-checker.py -s SRC -d DST --reverse` checks.
//! - [`Direction::Both`]: only `qemu-machine-mismatch`, which is not about one direction.
//!
//! Messages say "old" and "new" for the two dumps.
//!
//! # Rules
//!
//! Every check of QEMU's `scripts/vmstate-static-checker.py` is reproduced with the same walk, the
//! same allowances and the same results, so that everything the script reports is reported here
//! under a `qemu-*` id (see [`qemu_rules`]). The allowances are:
//!
//! - the section rename table (`"ICH9 LPC"`↔`"ICH9-LPC"`, `"e1000-82540em"`↔`"e1000"`);
//! - the per-Description allowlist of renamed fields (the script's `changed_names`);
//! - fields moved into (or out of) a nested struct whose first field is the one expected;
//! - an `unused` field standing for a run of fields of the same total size.
//!
//! On top of that this module catches what the script misses:
//!
//! - `qemu-field-appended`: the receiver expects fields after the last one the sender sends (the
//!   script never looks at the receiver's trailing fields, so it passes the forward check);
//! - `qemu-conditional-field-appended` (warn): the same for a field with a `field_exists` test;
//! - `qemu-field-presence-changed`: a field's `version_id` changed so that the sender sends it and
//!   the receiver skips it, or the reverse (the script only compares `version_id`s one way);
//! - `qemu-array-length-changed`: the `num` of a fixed array differs (dumps from QEMU ≥ 8.1);
//! - `qemu-unused-size-mismatch` also when an `unused` run is still open at the end of the fields;
//! - `qemu-minimum-version` also at section level (the script prints half a line and does not
//!   count it);
//! - `qemu-machine-mismatch` is reported as a finding (warn) rather than only printed.
//!
//! Presence follows QEMU's rule (qemu-wire-format.md §1.2, §1.7): a top-level section or a
//! subsection is saved and loaded at the sender's `version_id` (it is in the header); a nested
//! struct is saved at the sender's nested `version_id` and loaded at the receiver's.
//!
//! # Paths
//!
//! A finding's `path` starts with the top-level Description name, then the field chain:
//! `serial/state.divider` is field `divider` of the struct in field `state` of Description
//! `serial`. A subsection is written in braces after its parent:
//! `serial/state{serial/tsr}.thr`. Section-level findings have an empty path.
//!
//! # Errors
//!
//! [`check_qemu_dumps`] never panics. A dump that does not have the shape `-dump-vmstate` writes
//! (not an object, no `vmschkmachine.Name`, a field without an integer `size`, nesting deeper than
//! 64 Descriptions, ...) gives `Err` with a one-line message that names the dump (`SRC` or `DST`)
//! and where in it the problem is.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::finding::{Direction, Finding, Report, Severity};

const SECTION_MISSING: &str = "qemu-section-missing";
const VERSION_TOO_NEW: &str = "qemu-version-too-new";
const MINIMUM_VERSION: &str = "qemu-minimum-version";
const ENTRY_MISSING: &str = "qemu-entry-missing";
const DESCRIPTION_RENAMED: &str = "qemu-description-renamed";
const FIELD_MISMATCH: &str = "qemu-field-mismatch";
const UNUSED_SIZE_MISMATCH: &str = "qemu-unused-size-mismatch";
const DEST_RUNS_OUT: &str = "qemu-dest-runs-out-of-fields";
const FIELD_SIZE_MISMATCH: &str = "qemu-field-size-mismatch";
const MISSING_DESCRIPTION: &str = "qemu-missing-description";
const SUBSECTION_MISSING: &str = "qemu-subsection-missing";
const FIELD_APPENDED: &str = "qemu-field-appended";
const CONDITIONAL_FIELD_APPENDED: &str = "qemu-conditional-field-appended";
const FIELD_PRESENCE_CHANGED: &str = "qemu-field-presence-changed";
const ARRAY_LENGTH_CHANGED: &str = "qemu-array-length-changed";
const MACHINE_MISMATCH: &str = "qemu-machine-mismatch";

/// `(id, severity, summary, explanation)` for every rule.
type RuleInfo = (&'static str, Severity, &'static str, &'static str);

const RULES: &[RuleInfo] = &[
    (
        SECTION_MISSING,
        Severity::Deny,
        "a device section the sender has is missing in the receiver",
        "The receiver's dump has no device type of that QOM name (after the rename table \
         \"ICH9 LPC\"<->\"ICH9-LPC\", \"e1000-82540em\"<->\"e1000\"), so a guest with that device \
         cannot migrate. Forward: the new release dropped or renamed a device type; keep it \
         registered under its old name. Reverse: a device type new in the new release; old machine \
         types must never instantiate it. Same as the static checker's 'does not exist in dest'.",
    ),
    (
        VERSION_TOO_NEW,
        Severity::Deny,
        "the sender's version_id is above the receiver's",
        "A section, a Description or a field has a higher version_id in the sender than in the \
         receiver. For a section or a subsection the receiver rejects the stream ('too new'). The \
         usual cause is a version_id bump for new state, which breaks new->old migration; put the \
         new state in a subsection whose needed() is false on older machine types instead. Same as \
         the static checker's 'version error' (which also compares nested Descriptions and fields).",
    ),
    (
        MINIMUM_VERSION,
        Severity::Deny,
        "the sender's version_id is below the receiver's minimum_version_id",
        "The receiver no longer accepts the version the sender writes ('too old'). Do not raise \
         minimum_version_id while a supported older release still sends that version. Same as the \
         static checker's 'minimum version error'; it is also reported at section level, where the \
         script prints a partial line and does not count it.",
    ),
    (
        ENTRY_MISSING,
        Severity::Deny,
        "a Description entry (Fields, Subsections, Description, ...) is missing in the receiver",
        "A key of the sender's section or Description (e.g. Fields, Subsections, Description, \
         minimum_version_id) is absent in the receiver, so the receiver has no fields or \
         subsections where the sender sends some. Same as the static checker's 'Entry \"K\" \
         missing'.",
    ),
    (
        DESCRIPTION_RENAMED,
        Severity::Deny,
        "a VMStateDescription has another name in the receiver",
        "The name of a top-level Description or a subsection is on the wire (section idstr, \
         subsection header); a nested struct's is not but the script reports it too. The \
         per-section allowlist of renames is honoured. Keep the name. Same as the static checker's \
         'Description \"A\" missing, got \"B\" instead'; the rest of that Description is not \
         compared.",
    ),
    (
        FIELD_MISMATCH,
        Severity::Deny,
        "fields differ in name or order",
        "Fields are compared in order. Allowed: the per-Description rename allowlist, fields moved \
         into or out of a nested struct whose first field matches, and 'unused' standing for a run \
         of fields of equal total size. Anything else means the wire layout changed; the rest of \
         that field list is not compared. To drop a field, replace it with VMSTATE_UNUSED of the \
         same size. Same as the static checker's 'expected field \"a\", got \"b\"'.",
    ),
    (
        UNUSED_SIZE_MISMATCH,
        Severity::Deny,
        "an 'unused' field does not cover the fields it replaces",
        "An 'unused' field on one side stands for a run of fields on the other, and their sizes do \
         not add up to the unused size. Make the VMSTATE_UNUSED size equal the total wire size of \
         the fields it replaces. Same as the static checker's 'unused size mismatch'; also \
         reported when the run is still open at the end of the fields, which the script misses.",
    ),
    (
        DEST_RUNS_OUT,
        Severity::Deny,
        "the sender sends fields after the receiver's last field",
        "The receiver's field list ends before the sender's. Forward: the new release removed \
         trailing fields; keep them (or an 'unused' of the same size). Reverse: the new release \
         appended fields that the old one cannot load; put them in a subsection whose needed() is \
         false on older machine types. Same as the static checker's 'dest has no further fields'.",
    ),
    (
        FIELD_SIZE_MISMATCH,
        Severity::Deny,
        "a scalar field's size differs",
        "A field that is not a nested struct has a different size in the two dumps, so sender and \
         receiver disagree on the number of bytes on the wire. Keep the size; send a wider value \
         in a new subsection. Same as the static checker's 'size mismatch' (nested structs are not \
         compared by size: the dump has C sizes for them).",
    ),
    (
        MISSING_DESCRIPTION,
        Severity::Deny,
        "a nested-struct field has no nested Description in the receiver",
        "The sender's field is a nested struct (VMSTATE_STRUCT) but the receiver's field of that \
         name is not. Same as the static checker's 'missing description'.",
    ),
    (
        SUBSECTION_MISSING,
        Severity::Deny,
        "a subsection the sender may send is unknown to the receiver",
        "The receiver fails the load when a subsection it does not know arrives. The dump does not \
         show needed(), so every subsection of the sender counts. Forward: keep the subsection in \
         the new release. Reverse: make its needed() false on machine types the old release \
         supports (compat property). Same as the static checker's 'Subsection \"n\" not found'.",
    ),
    (
        FIELD_APPENDED,
        Severity::Deny,
        "the receiver expects fields after the sender's last field",
        "The receiver's field list goes on after the last field the sender sends, and at the \
         stream's version the receiver loads those fields, so it reads bytes that belong to the \
         next section. vmstate-static-checker.py misses this in the forward direction. Make the \
         new field conditional: a subsection with needed(), or a _V field with a version_id bump.",
    ),
    (
        CONDITIONAL_FIELD_APPENDED,
        Severity::Warn,
        "the receiver may expect a field_exists field after the sender's last field",
        "Like qemu-field-appended, but the receiver's trailing field has a field_exists test, which \
         the dump does not describe. Check that the test is false for streams from the sender.",
    ),
    (
        FIELD_PRESENCE_CHANGED,
        Severity::Deny,
        "a field's version_id change makes sender and receiver disagree on whether it is sent",
        "A field without field_exists is on the wire iff its version_id <= the stream version \
         (the section or subsection header version; for a nested struct, each side's own nested \
         version_id). The field's version_id differs between the dumps such that one side sends or \
         expects it and the other does not. vmstate-static-checker.py only checks a sender \
         version_id above the receiver's. Keep a field's version_id once released.",
    ),
    (
        ARRAY_LENGTH_CHANGED,
        Severity::Deny,
        "a fixed array's element count differs",
        "Both dumps give the field's 'num' (QEMU >= 8.1 dumps it) and the counts differ, so the \
         number of elements on the wire differs. vmstate-static-checker.py compares only the \
         element size. Keep the length; send extra elements in a subsection.",
    ),
    (
        MACHINE_MISMATCH,
        Severity::Warn,
        "the two dumps are for different machine types",
        "vmschkmachine.Name differs. A dump does not depend on the machine type (compat properties \
         are invisible in it), so the comparison still works, but migration is only defined \
         between equal machine types. Same as the static checker's warning.",
    ),
];

/// Every rule of the QEMU mode: `(id, default severity, one-line summary, long explanation)`,
/// for `--list` and `--explain`.
#[must_use]
pub fn qemu_rules() -> Vec<(&'static str, Severity, &'static str, &'static str)> {
    RULES.to_vec()
}

fn severity_of(rule: &str) -> Severity {
    RULES
        .iter()
        .find(|r| r.0 == rule)
        .map_or(Severity::Deny, |r| r.1)
}

/// Compares two `-dump-vmstate` dumps in both directions; see the [module docs](self).
///
/// `src` is the older release's dump, `dst` the newer release's, for the same machine type.
///
/// # Errors
///
/// A one-line message if either value is not shaped like a `-dump-vmstate` dump.
///
/// # Examples
///
/// ```
/// # use compat_checker::qemu::check_qemu_dumps;
/// let dump = serde_json::json!({
///     "vmschkmachine": {"Name": "pc-i440fx-7.2"},
///     "isa-serial": {"Name": "isa-serial", "version_id": 3, "minimum_version_id": 2,
///         "Description": {"name": "serial", "version_id": 3, "minimum_version_id": 2,
///             "Fields": [{"field": "divider", "version_id": 2, "field_exists": false, "size": 2}]}}
/// });
/// let report = check_qemu_dumps(&dump, &dump).unwrap();
/// assert!(report.findings.is_empty());
/// ```
pub fn check_qemu_dumps(src: &Value, dst: &Value) -> Result<Report, String> {
    let old = parse_dump(src, "SRC")?;
    let new = parse_dump(dst, "DST")?;

    let mut machines = vec![old.machine.clone()];
    if new.machine != old.machine {
        machines.push(new.machine.clone());
    }

    let mut findings = Vec::new();
    if old.machine != new.machine {
        findings.push(Finding {
            rule: MACHINE_MISMATCH.to_owned(),
            severity: severity_of(MACHINE_MISMATCH),
            direction: Direction::Both,
            device: "vmschkmachine".to_owned(),
            path: String::new(),
            machines: machines.clone(),
            message: format!(
                "dumps are for different machine types: \"{}\" (old) and \"{}\" (new)",
                old.machine, new.machine
            ),
            location: None,
            fix: "compare dumps of the same machine type taken from the two releases".to_owned(),
        });
    }

    for (dir, sender, receiver, snd, rcv) in [
        (Direction::OldToNew, &old, &new, "old", "new"),
        (Direction::NewToOld, &new, &old, "new", "old"),
    ] {
        let mut checker = Checker {
            dir,
            snd,
            rcv,
            machines: &machines,
            section: String::new(),
            findings: &mut findings,
        };
        checker.check_dumps(sender, receiver);
    }

    let mut devices_checked = old.sections.len();
    devices_checked += new
        .sections
        .iter()
        .filter(|s| old.lookup(&s.key).is_none())
        .count();

    let mut report = Report {
        machines_checked: machines,
        devices_checked,
        findings,
    };
    report.sort();
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// The dump model and its parser.
// ---------------------------------------------------------------------------------------------

/// Nested Descriptions deeper than this are rejected (QEMU's deepest are a handful of levels).
const MAX_DEPTH: usize = 64;

struct Dump {
    machine: String,
    sections: Vec<Section>,
    index: HashMap<String, usize>,
}

impl Dump {
    /// The section of that name, or of its name in the rename table.
    fn lookup(&self, key: &str) -> Option<&Section> {
        self.index
            .get(key)
            .or_else(|| renamed_section(key).and_then(|k| self.index.get(k)))
            .map(|&i| &self.sections[i])
    }
}

struct Section {
    key: String,
    entries: Vec<String>,
    version: i64,
    min: Option<i64>,
    desc: Option<Desc>,
}

struct Desc {
    name: String,
    entries: Vec<String>,
    version: i64,
    min: Option<i64>,
    fields: Option<Vec<Field>>,
    subsections: Option<Vec<Desc>>,
}

struct Field {
    name: String,
    version: i64,
    exists: bool,
    size: u64,
    num: Option<u64>,
    desc: Option<Desc>,
}

impl Field {
    /// Bytes on the wire: `size` × `num` for a fixed array, else `size`.
    fn wire_size(&self) -> i128 {
        let n = match self.num {
            Some(n) if n > 0 => n,
            _ => 1,
        };
        i128::from(self.size) * i128::from(n)
    }

    fn is_unused(&self) -> bool {
        self.name == "unused"
    }
}

fn parse_dump(v: &Value, which: &str) -> Result<Dump, String> {
    let root = v.as_object().ok_or_else(|| {
        format!(
            "{which}: a -dump-vmstate file is a JSON object, got {}",
            kind(v)
        )
    })?;
    let machine = root
        .get("vmschkmachine")
        .and_then(Value::as_object)
        .and_then(|m| m.get("Name"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{which}: \"vmschkmachine\": {{\"Name\": <string>}} is missing"))?
        .to_owned();
    let mut sections = Vec::new();
    let mut index = HashMap::new();
    for (key, value) in root {
        if key == "vmschkmachine" {
            continue;
        }
        let at = |what: &str| format!("{which}: section \"{key}\": {what}");
        let section = parse_section(key, value).map_err(|e| at(&e))?;
        index.insert(key.clone(), sections.len());
        sections.push(section);
    }
    Ok(Dump {
        machine,
        sections,
        index,
    })
}

fn parse_section(key: &str, v: &Value) -> Result<Section, String> {
    let m = object(v, "")?;
    let desc = match m.get("Description") {
        Some(d) => Some(parse_desc(d, "Description", 0)?),
        None => None,
    };
    Ok(Section {
        key: key.to_owned(),
        entries: m.keys().cloned().collect(),
        version: int(m, "version_id", "")?,
        min: opt_int(m, "minimum_version_id", "")?,
        desc,
    })
}

fn parse_desc(v: &Value, at: &str, depth: usize) -> Result<Desc, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: Descriptions nested deeper than {MAX_DEPTH}"));
    }
    let m = object(v, at)?;
    let name = string(m, "name", at)?;
    let fields = match m.get("Fields") {
        None => None,
        Some(list) => {
            let items = array(list, &format!("{at}.Fields"))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, f) in items.iter().enumerate() {
                out.push(parse_field(f, &format!("{at}.Fields[{i}]"), depth)?);
            }
            Some(out)
        }
    };
    let subsections = match m.get("Subsections") {
        None => None,
        Some(list) => {
            let items = array(list, &format!("{at}.Subsections"))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, s) in items.iter().enumerate() {
                out.push(parse_desc(s, &format!("{at}.Subsections[{i}]"), depth + 1)?);
            }
            Some(out)
        }
    };
    Ok(Desc {
        name,
        entries: m.keys().cloned().collect(),
        version: int(m, "version_id", at)?,
        min: opt_int(m, "minimum_version_id", at)?,
        fields,
        subsections,
    })
}

fn parse_field(v: &Value, at: &str, depth: usize) -> Result<Field, String> {
    let m = object(v, at)?;
    let exists = match m.get("field_exists") {
        None => false,
        Some(b) => b
            .as_bool()
            .ok_or_else(|| format!("{at}: \"field_exists\" must be a boolean, got {}", kind(b)))?,
    };
    let desc = match m.get("Description") {
        Some(d) => Some(parse_desc(d, &format!("{at}.Description"), depth + 1)?),
        None => None,
    };
    Ok(Field {
        name: string(m, "field", at)?,
        version: int(m, "version_id", at)?,
        exists,
        size: uint(m, "size", at)?,
        num: match m.get("num") {
            None => None,
            Some(_) => Some(uint(m, "num", at)?),
        },
        desc,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn prefix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("{at}: ")
    }
}

fn object<'v>(v: &'v Value, at: &str) -> Result<&'v Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{}expected an object, got {}", prefix(at), kind(v)))
}

fn array<'v>(v: &'v Value, at: &str) -> Result<&'v Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("{}expected an array, got {}", prefix(at), kind(v)))
}

fn string(m: &Map<String, Value>, key: &str, at: &str) -> Result<String, String> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!(
            "{}\"{key}\" must be a string, got {}",
            prefix(at),
            kind(v)
        )),
        None => Err(format!("{}\"{key}\" is missing", prefix(at))),
    }
}

fn int(m: &Map<String, Value>, key: &str, at: &str) -> Result<i64, String> {
    opt_int(m, key, at)?.ok_or_else(|| format!("{}\"{key}\" is missing", prefix(at)))
}

fn opt_int(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{}\"{key}\" must be an integer, got {v}", prefix(at))),
    }
}

fn uint(m: &Map<String, Value>, key: &str, at: &str) -> Result<u64, String> {
    match m.get(key) {
        None => Err(format!("{}\"{key}\" is missing", prefix(at))),
        Some(v) => v.as_u64().ok_or_else(|| {
            format!(
                "{}\"{key}\" must be a non-negative integer, got {v}",
                prefix(at)
            )
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Allowances (data from QEMU's scripts/vmstate-static-checker.py).
// ---------------------------------------------------------------------------------------------

/// Section (QOM type) renames that kept the wire format.
const SECTION_RENAMES: &[(&str, &str)] = &[("ICH9 LPC", "ICH9-LPC"), ("e1000-82540em", "e1000")];

fn renamed_section(key: &str) -> Option<&'static str> {
    SECTION_RENAMES.iter().find_map(|&(a, b)| {
        if a == key {
            Some(b)
        } else if b == key {
            Some(a)
        } else {
            None
        }
    })
}

/// Per Description (or, for Description names, per section): groups of names that are
/// interchangeable. Any two names of one group match.
const CHANGED_NAMES: &[(&str, &[&str])] = &[
    ("apic", &["timer", "timer_expiry"]),
    ("e1000", &["dev", "parent_obj"]),
    ("ehci", &["dev", "pcidev"]),
    ("I440FX", &["dev", "parent_obj"]),
    ("ich9_ahci", &["card", "parent_obj"]),
    ("ich9-ahci", &["ahci", "ich9_ahci"]),
    ("ioh3420", &["PCIDevice", "PCIEDevice"]),
    (
        "ioh-3240-express-root-port",
        &[
            "port.br.dev",
            "parent_obj.parent_obj.parent_obj",
            "port.br.dev.exp.aer_log",
            "parent_obj.parent_obj.parent_obj.exp.aer_log",
        ],
    ),
    (
        "cirrus_vga",
        &[
            "hw_cursor_x",
            "vga.hw_cursor_x",
            "hw_cursor_y",
            "vga.hw_cursor_y",
        ],
    ),
    ("lsiscsi", &["dev", "parent_obj"]),
    ("mch", &["d", "parent_obj"]),
    (
        "pci_bridge",
        &["bridge.dev", "parent_obj", "bridge.dev.shpc", "shpc"],
    ),
    ("pcnet", &["pci_dev", "parent_obj"]),
    ("PIIX3", &["pci_irq_levels", "pci_irq_levels_vmstate"]),
    (
        "piix4_pm",
        &[
            "dev",
            "parent_obj",
            "pci0_status",
            "acpi_pci_hotplug.acpi_pcihp_pci_status[0x0]",
            "pm1a.sts",
            "ar.pm1.evt.sts",
            "pm1a.en",
            "ar.pm1.evt.en",
            "pm1_cnt.cnt",
            "ar.pm1.cnt.cnt",
            "tmr.timer",
            "ar.tmr.timer",
            "tmr.overflow_time",
            "ar.tmr.overflow_time",
            "gpe",
            "ar.gpe",
        ],
    ),
    ("rtl8139", &["dev", "parent_obj"]),
    ("qxl", &["num_surfaces", "ssd.num_surfaces"]),
    (
        "usb-ccid",
        &["abProtocolDataStructure", "abProtocolDataStructure.data"],
    ),
    ("usb-host", &["dev", "parent_obj"]),
    ("usb-mouse", &["usb-ptr-queue", "HIDPointerEventQueue"]),
    ("usb-tablet", &["usb-ptr-queue", "HIDPointerEventQueue"]),
    ("vmware_vga", &["card", "parent_obj"]),
    ("vmware_vga_internal", &["depth", "new_depth"]),
    ("xhci", &["pci_dev", "parent_obj"]),
    ("x3130-upstream", &["PCIDevice", "PCIEDevice"]),
    (
        "xio3130-express-downstream-port",
        &[
            "port.br.dev",
            "parent_obj.parent_obj.parent_obj",
            "port.br.dev.exp.aer_log",
            "parent_obj.parent_obj.parent_obj.exp.aer_log",
        ],
    ),
    ("xio3130-downstream", &["PCIDevice", "PCIEDevice"]),
    (
        "xio3130-express-upstream-port",
        &[
            "br.dev",
            "parent_obj.parent_obj",
            "br.dev.exp.aer_log",
            "parent_obj.parent_obj.exp.aer_log",
        ],
    ),
    (
        "spapr_pci",
        &[
            "dma_liobn[0]",
            "mig_liobn",
            "mem_win_addr",
            "mig_mem_win_addr",
            "mem_win_size",
            "mig_mem_win_size",
            "io_win_addr",
            "mig_io_win_addr",
            "io_win_size",
            "mig_io_win_size",
        ],
    ),
];

/// Whether `a` and `b` are the same name, or both in the allowlist group of `scope`.
fn names_match(scope: &str, a: &str, b: &str) -> bool {
    a == b
        || CHANGED_NAMES
            .iter()
            .find(|(s, _)| *s == scope)
            .is_some_and(|(_, group)| group.contains(&a) && group.contains(&b))
}

/// If `field` is a nested struct whose first field matches `name`, that struct's Description.
fn substruct_starting_with<'f>(field: &'f Field, name: &str) -> Option<&'f Desc> {
    let desc = field.desc.as_ref()?;
    let first = desc.fields.as_ref()?.first()?;
    names_match(&desc.name, &first.name, name).then_some(desc)
}

// ---------------------------------------------------------------------------------------------
// The comparison, one direction at a time.
// ---------------------------------------------------------------------------------------------

/// A field path being built (see the module docs).
#[derive(Clone)]
struct Path {
    text: String,
    /// The path is just a top-level Description name: the next field follows a `/`.
    at_root: bool,
}

impl Path {
    fn root(name: &str) -> Self {
        Path {
            text: name.to_owned(),
            at_root: true,
        }
    }

    fn field(&self, name: &str) -> Self {
        let sep = if self.at_root { '/' } else { '.' };
        Path {
            text: format!("{}{sep}{name}", self.text),
            at_root: false,
        }
    }

    fn subsection(&self, name: &str) -> Self {
        Path {
            text: format!("{}{{{name}}}", self.text),
            at_root: false,
        }
    }
}

/// One level of a field list being walked: the list, the next index, the path of the list's
/// owner and the version its fields are saved (sender) or loaded (receiver) at.
struct Frame<'f> {
    items: &'f [Field],
    next: usize,
    path: Path,
    version: i64,
}

/// The current field of one side of the walk, with its path and its list's version.
#[derive(Clone)]
struct Cur<'f> {
    field: &'f Field,
    path: Path,
    version: i64,
}

struct Checker<'a> {
    dir: Direction,
    /// "old" or "new": the sending side.
    snd: &'static str,
    /// "old" or "new": the receiving side.
    rcv: &'static str,
    machines: &'a [String],
    /// The sender's section key, the `device` of findings.
    section: String,
    findings: &'a mut Vec<Finding>,
}

impl Checker<'_> {
    fn emit(&mut self, rule: &str, path: &Path, message: String, fix: String) {
        self.findings.push(Finding {
            rule: rule.to_owned(),
            severity: severity_of(rule),
            direction: self.dir,
            device: self.section.clone(),
            path: path.text.clone(),
            machines: self.machines.to_vec(),
            message,
            location: None,
            fix,
        });
    }

    fn forward(&self) -> bool {
        self.dir == Direction::OldToNew
    }

    fn check_dumps(&mut self, sender: &Dump, receiver: &Dump) {
        for s in &sender.sections {
            self.section = s.key.clone();
            match receiver.lookup(&s.key) {
                Some(d) => self.check_section(s, d),
                None => {
                    let fix = if self.forward() {
                        "keep the device type registered under this QOM name in the new release \
                         (a rename must keep the old name working)"
                    } else {
                        "a device type added in the new release cannot migrate to the old one: \
                         make sure machine types the old release supports never create it"
                    };
                    self.emit(
                        SECTION_MISSING,
                        &Path::root(""),
                        format!(
                            "section \"{}\" is in {} but not in {}",
                            s.key, self.snd, self.rcv
                        ),
                        fix.to_owned(),
                    );
                }
            }
        }
    }

    fn check_section(&mut self, s: &Section, d: &Section) {
        let top = Path::root("");
        self.check_versions("section", s.version, d.version, d.min, &top);
        for entry in &s.entries {
            if !d.entries.contains(entry) {
                self.emit(
                    ENTRY_MISSING,
                    &top,
                    format!(
                        "entry \"{entry}\" of section \"{}\" is in {} but missing in {}",
                        s.key, self.snd, self.rcv
                    ),
                    format!("restore \"{entry}\" in {}'s section", self.rcv),
                );
            }
        }
        if let (Some(sd), Some(dd)) = (&s.desc, &d.desc) {
            // A top-level section is saved at the sender's version, which is in its header.
            self.check_desc(sd, dd, &Path::root(&sd.name), sd.version, sd.version);
        }
    }

    /// Version checks. `what` names the object ("section", `Description "x"`, `field "x"`).
    fn check_versions(&mut self, what: &str, s: i64, d: i64, d_min: Option<i64>, path: &Path) {
        if s > d {
            let fix = if self.forward() {
                "the new release lowered a version_id: restore it".to_owned()
            } else {
                "do not bump version_id for new state: put the new state in a subsection whose \
                 needed() is false on machine types the old release supports"
                    .to_owned()
            };
            self.emit(
                VERSION_TOO_NEW,
                path,
                format!(
                    "{what} version_id {s} in {} is newer than {}'s version_id {d}",
                    self.snd, self.rcv
                ),
                fix,
            );
        }
        if let Some(min) = d_min {
            if s < min {
                self.emit(
                    MINIMUM_VERSION,
                    path,
                    format!(
                        "{what} version_id {s} in {} is below {}'s minimum_version_id {min}",
                        self.snd, self.rcv
                    ),
                    format!(
                        "keep minimum_version_id <= {s} while releases that send version {s} are \
                         supported"
                    ),
                );
            }
        }
    }

    /// Compares two Descriptions. `vs` and `vl`: the version the sender saves and the receiver
    /// loads this Description's fields at.
    fn check_desc(&mut self, s: &Desc, d: &Desc, path: &Path, vs: i64, vl: i64) {
        self.check_versions(
            &format!("Description \"{}\"", s.name),
            s.version,
            d.version,
            d.min,
            path,
        );
        if !names_match(&self.section, &s.name, &d.name) {
            self.emit(
                DESCRIPTION_RENAMED,
                path,
                format!(
                    "Description \"{}\" in {} is named \"{}\" in {}; its contents were not compared",
                    s.name, self.snd, d.name, self.rcv
                ),
                "keep the VMStateDescription name (section and subsection names are on the wire)"
                    .to_owned(),
            );
            return;
        }
        for entry in &s.entries {
            if !d.entries.contains(entry) {
                self.emit(
                    ENTRY_MISSING,
                    path,
                    format!(
                        "entry \"{entry}\" of Description \"{}\" is in {} but missing in {}",
                        s.name, self.snd, self.rcv
                    ),
                    format!("restore \"{entry}\" in {}'s Description", self.rcv),
                );
            }
        }
        match (&s.fields, &d.fields) {
            (Some(sf), Some(df)) => self.walk_fields(sf, df, &s.name, path, vs, vl),
            // The script does not look here: the sender sends no field, the receiver expects some.
            (None, Some(df)) => self.walk_fields(&[], df, &s.name, path, vs, vl),
            _ => {}
        }
        if let (Some(ss), Some(ds)) = (&s.subsections, &d.subsections) {
            for sub in ss {
                let sub_path = path.subsection(&sub.name);
                let mut found = false;
                for dsub in ds.iter().filter(|x| x.name == sub.name) {
                    found = true;
                    // A subsection is saved at the sender's version, which is in its header.
                    self.check_desc(sub, dsub, &sub_path, sub.version, sub.version);
                }
                if !found {
                    let fix = if self.forward() {
                        "keep the subsection in the new release".to_owned()
                    } else {
                        "make its needed() false on machine types the old release supports (a \
                         compat property)"
                            .to_owned()
                    };
                    self.emit(
                        SUBSECTION_MISSING,
                        &sub_path,
                        format!(
                            "subsection \"{}\" of \"{}\" may be sent by {} but {} does not know it",
                            sub.name, s.name, self.snd, self.rcv
                        ),
                        fix,
                    );
                }
            }
        }
    }

    /// Walks two field lists in lock-step, with the allowances of the module docs.
    ///
    /// The state machine follows QEMU's checker so that the two report the same things: each
    /// side advances unless it is held back (while an `unused` on one side absorbs fields of the
    /// other, or for one step after entering or leaving a nested struct); `pending` counts the
    /// bytes of an `unused` still to be matched.
    fn walk_fields(
        &mut self,
        s_fields: &[Field],
        d_fields: &[Field],
        desc_name: &str,
        path: &Path,
        vs: i64,
        vl: i64,
    ) {
        let mut s_stack = vec![Frame {
            items: s_fields,
            next: 0,
            path: path.clone(),
            version: vs,
        }];
        let mut d_stack = vec![Frame {
            items: d_fields,
            next: 0,
            path: path.clone(),
            version: vl,
        }];
        let mut s_cur: Option<Cur<'_>> = None;
        let mut d_cur: Option<Cur<'_>> = None;
        let (mut adv_s, mut adv_d) = (true, true);
        let mut pending: i128 = 0;
        // Every step consumes a field, enters or leaves a struct, or clears a hold; this bound is
        // far above what any input needs and only guards against a logic error.
        let mut budget = 8 * (count_fields(s_fields) + count_fields(d_fields)) + 64;
        let mut sender_done = false;

        while budget > 0 {
            budget -= 1;

            if adv_s {
                let Some(top) = s_stack.last_mut() else {
                    return;
                };
                if let Some(f) = top.items.get(top.next) {
                    top.next += 1;
                    s_cur = Some(Cur {
                        field: f,
                        path: top.path.field(&f.name),
                        version: top.version,
                    });
                } else if s_stack.len() == 1 {
                    sender_done = true;
                    break;
                } else {
                    s_stack.pop();
                    continue;
                }
            } else if pending == 0 {
                adv_s = true;
            }

            if adv_d {
                let Some(top) = d_stack.last_mut() else {
                    return;
                };
                if let Some(f) = top.items.get(top.next) {
                    top.next += 1;
                    d_cur = Some(Cur {
                        field: f,
                        path: top.path.field(&f.name),
                        version: top.version,
                    });
                } else if d_stack.len() == 1 {
                    if let Some(s) = &s_cur {
                        self.dest_runs_out(s);
                    }
                    return;
                } else {
                    d_stack.pop();
                    adv_s = false;
                    continue;
                }
            } else if pending == 0 {
                adv_d = true;
            }

            let (Some(s), Some(d)) = (s_cur.clone(), d_cur.clone()) else {
                return;
            };

            if pending != 0 {
                // One side's `unused` is absorbing the other side's fields.
                let near = if !adv_d {
                    pending -= s.field.wire_size();
                    &s
                } else if !adv_s {
                    pending -= d.field.wire_size();
                    &d
                } else {
                    return;
                };
                if pending == 0 {
                    adv_s = true;
                    adv_d = true;
                } else if pending < 0 {
                    self.unused_mismatch(&near.path, &near.field.name, None);
                    return;
                }
                continue;
            }

            if !names_match(desc_name, &s.field.name, &d.field.name) {
                if let Some(sub) = substruct_starting_with(d.field, &s.field.name) {
                    // The receiver moved fields into a nested struct: walk into it.
                    d_stack.push(Frame {
                        items: sub.fields.as_deref().unwrap_or(&[]),
                        next: 0,
                        path: d.path.clone(),
                        version: sub.version,
                    });
                    adv_s = false;
                    continue;
                }
                if let Some(sub) = substruct_starting_with(s.field, &d.field.name) {
                    // The sender had the fields in a nested struct: walk into it.
                    s_stack.push(Frame {
                        items: sub.fields.as_deref().unwrap_or(&[]),
                        next: 0,
                        path: s.path.clone(),
                        version: sub.version,
                    });
                    adv_d = false;
                    continue;
                }
                if s.field.is_unused() || d.field.is_unused() {
                    let (ss, ds) = (s.field.wire_size(), d.field.wire_size());
                    if ss == ds {
                        continue;
                    }
                    if d.field.is_unused() {
                        adv_d = false;
                        pending = ds - ss;
                    } else {
                        adv_s = false;
                        pending = ss - ds;
                    }
                    continue;
                }
                self.emit(
                    FIELD_MISMATCH,
                    &s.path,
                    format!(
                        "{} sends field \"{}\" where {} has \"{}\"; later fields of \"{desc_name}\" \
                         were not compared",
                        self.snd, s.field.name, self.rcv, d.field.name
                    ),
                    "keep fields in order under the same names; replace a removed field with \
                     VMSTATE_UNUSED of the same size"
                        .to_owned(),
                );
                return;
            }

            self.check_field_pair(&s, &d);
        }

        if !sender_done {
            return;
        }
        if pending != 0 {
            // An `unused` of the receiver is still open when the sender has no more fields
            // (the script stops silently here).
            if let Some(d) = &d_cur {
                self.unused_mismatch(&d.path, &d.field.name, Some(pending));
            }
            return;
        }
        // The receiver's remaining fields (the script never looks at them).
        for frame in d_stack.iter().rev() {
            for f in frame.items.get(frame.next..).unwrap_or(&[]) {
                self.appended(f, &frame.path.field(&f.name), frame.version);
            }
        }
    }

    fn check_field_pair(&mut self, s: &Cur<'_>, d: &Cur<'_>) {
        let (sf, df) = (s.field, d.field);
        self.check_versions(
            &format!("field \"{}\"", sf.name),
            sf.version,
            df.version,
            None,
            &s.path,
        );
        if !sf.exists && !df.exists {
            let sent = sf.version <= s.version;
            let expected = df.version <= d.version;
            if sent != expected {
                let (a, b) = if sent {
                    ("sends", "skips it")
                } else {
                    ("does not send", "expects it")
                };
                self.emit(
                    FIELD_PRESENCE_CHANGED,
                    &s.path,
                    format!(
                        "{} {a} field \"{}\" (version_id {} at version {}) but {} {b} \
                         (version_id {} at version {})",
                        self.snd, sf.name, sf.version, s.version, self.rcv, df.version, d.version
                    ),
                    "keep a released field's version_id unchanged".to_owned(),
                );
            }
        }
        if sf.desc.is_none() && sf.size != df.size {
            self.emit(
                FIELD_SIZE_MISMATCH,
                &s.path,
                format!(
                    "field \"{}\" is {} bytes in {} but {} bytes in {}",
                    sf.name, sf.size, self.snd, df.size, self.rcv
                ),
                "keep the field's size; send a wider value in a new subsection".to_owned(),
            );
        }
        if let (Some(a), Some(b)) = (sf.num, df.num) {
            if a != b {
                self.emit(
                    ARRAY_LENGTH_CHANGED,
                    &s.path,
                    format!(
                        "array \"{}\" has {a} elements in {} but {b} in {}",
                        sf.name, self.snd, self.rcv
                    ),
                    "keep the array length; send extra elements in a subsection".to_owned(),
                );
            }
        }
        if let Some(sd) = &sf.desc {
            match &df.desc {
                None => self.emit(
                    MISSING_DESCRIPTION,
                    &s.path,
                    format!(
                        "field \"{}\" is a nested struct in {} but has no nested Description in {}",
                        sf.name, self.snd, self.rcv
                    ),
                    "restore the nested VMStateDescription (VMSTATE_STRUCT)".to_owned(),
                ),
                // Nested structs are saved and loaded at each side's own nested version (§1.7).
                Some(dd) => self.check_desc(sd, dd, &s.path, sd.version, dd.version),
            }
        }
    }

    fn dest_runs_out(&mut self, s: &Cur<'_>) {
        let fix = if self.forward() {
            "the new release dropped a trailing field: keep it, or replace it with VMSTATE_UNUSED \
             of the same size"
        } else {
            "the old release cannot load a field appended in the new one: move it into a \
             subsection whose needed() is false on machine types the old release supports"
        };
        self.emit(
            DEST_RUNS_OUT,
            &s.path,
            format!(
                "{} sends field \"{}\" but {} has no further fields",
                self.snd, s.field.name, self.rcv
            ),
            fix.to_owned(),
        );
    }

    fn unused_mismatch(&mut self, path: &Path, near: &str, left_at_end: Option<i128>) {
        let message = match left_at_end {
            None => format!(
                "unused bytes in {} and {} do not line up with the fields they replace, near \
                 \"{near}\"",
                self.snd, self.rcv
            ),
            Some(n) if n > 0 => format!(
                "{}'s \"{near}\" still expects {n} bytes after {}'s last field",
                self.rcv, self.snd
            ),
            Some(n) => format!(
                "{}'s \"{near}\" is {} bytes short of {}'s last field",
                self.rcv, -n, self.snd
            ),
        };
        self.emit(
            UNUSED_SIZE_MISMATCH,
            path,
            message,
            "make the VMSTATE_UNUSED size equal the total size of the fields it replaces"
                .to_owned(),
        );
    }

    /// A receiver field after the sender's last field, loaded at `version`.
    fn appended(&mut self, f: &Field, path: &Path, version: i64) {
        if f.exists {
            self.emit(
                CONDITIONAL_FIELD_APPENDED,
                path,
                format!(
                    "{} may expect field \"{}\" (it has a field_exists test) after the last field \
                     {} sends",
                    self.rcv, f.name, self.snd
                ),
                format!(
                    "check that the field_exists test is false for streams from {}",
                    self.snd
                ),
            );
        } else if f.version <= version {
            self.emit(
                FIELD_APPENDED,
                path,
                format!(
                    "{} expects field \"{}\" (version_id {} at version {version}) after the last \
                     field {} sends",
                    self.rcv, f.name, f.version, self.snd
                ),
                "make the new field conditional: a subsection with needed(), or a _V field with a \
                 version_id bump"
                    .to_owned(),
            );
        }
    }
}

/// Fields in a list, nested structs included (a bound for the walk).
fn count_fields(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| {
            1 + f
                .desc
                .as_ref()
                .and_then(|d| d.fields.as_deref())
                .map_or(0, count_fields)
        })
        .sum()
}

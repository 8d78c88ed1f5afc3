//! Machine types and their compat properties.
//!
//! A VMM declares a [`MachineCatalog`]: families of machine types with ordered versions
//! (`pc-i440fx-2.9 < pc-i440fx-2.10`) and compat entries like QEMU's `hw_compat_X_Y` tables. A
//! compat entry `{upto: "7.2", driver, property, value}` applies to every machine type whose
//! version is at most 7.2, so older machine types accumulate every later entry, as in QEMU.
//!
//! The catalog is plain data (JSON via serde), so the runtime and the compat checker read the
//! same file. The driver `migration` holds the framing switches (`send-configuration`,
//! `send-section-footer`, `send-vmdesc`), as QEMU's migration object does.
//!
//! ```
//! use vmstate_runtime::machine::MachineCatalog;
//! let cat = MachineCatalog::qemu_pc();
//! let m = cat.resolve("pc-i440fx-2.3").unwrap();
//! assert!(!m.framing().configuration);   // 2.3 sends no configuration section
//! assert!(cat.resolve("pc-i440fx-7.2").unwrap().framing().footers);
//! ```
//!
#![doc = include_str!("machine_catalog.md")]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::schema::MachineVersion;

/// The driver of the framing switches: compat entries for it set [`FRAMING_PROPERTIES`].
pub const MIGRATION_DRIVER: &str = "migration";

/// The properties of [`MIGRATION_DRIVER`] the runtime reads ([`MachineType::framing`]); any
/// other property of that driver applies to nothing.
pub const FRAMING_PROPERTIES: &[&str] =
    &["send-configuration", "send-section-footer", "send-vmdesc"];

/// One family of machine types, e.g. `pc-i440fx` with versions `2.3` … `7.2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    /// Family prefix; machine type names are `<name>-<major>.<minor>`.
    pub name: String,
    /// Supported versions, `"major.minor"`.
    pub versions: Vec<String>,
}

/// One compat entry: for machine types up to `upto`, `driver.property = value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatEntry {
    /// The newest machine version the entry applies to (`hw_compat_<upto>`).
    pub upto: String,
    /// The device (section name) or `migration`.
    pub driver: String,
    /// Property name.
    pub property: String,
    /// Value for those machine types.
    pub value: bool,
}

impl CompatEntry {
    /// `compat entry #i {upto: "6.2", driver: "pl031", property: "x", value: false}`: how
    /// messages name the entry (`i` is its 0-based index in [`MachineCatalog::compat`]).
    #[must_use]
    pub fn describe(&self, i: usize) -> String {
        format!(
            "compat entry #{i} {{upto: \"{}\", driver: \"{}\", property: \"{}\", value: {}}}",
            self.upto, self.driver, self.property, self.value
        )
    }
}

/// The name among `known` closest to `name` by edit distance, if it is close enough to be a
/// likely misspelling (at most a third of the longer name's characters differ, at least one
/// allowed); for "did you mean" hints.
pub fn closest_name<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let a: Vec<char> = name.chars().collect();
    known
        .into_iter()
        .filter(|k| *k != name)
        .map(|k| (edit_distance(&a, k), k))
        .filter(|(d, k)| *d <= (a.len().max(k.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (insert, delete, substitute; one row of memory).
fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = diag + usize::from(ca != cb);
            diag = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(diag + 1);
        }
    }
    row[b.len()]
}

/// The catalog of machine types a VMM supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineCatalog {
    /// Families.
    pub families: Vec<Family>,
    /// Compat entries.
    #[serde(default)]
    pub compat: Vec<CompatEntry>,
}

/// The stream framing a machine type uses (QEMU's migration object properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Send the configuration section (`0x07` + machine name); QEMU ≥ 2.4.
    pub configuration: bool,
    /// Send section footers (`0x7e` + section id); QEMU ≥ 2.4.
    pub footers: bool,
    /// Send the vmdesc JSON after EOF; QEMU ≥ 2.3.
    pub vmdesc: bool,
}

/// A resolved machine type: name, version and the compat property values that apply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineType {
    name: String,
    family: String,
    version: MachineVersion,
    /// (driver, property) → value, for every entry that applies.
    props: Arc<BTreeMap<(String, String), bool>>,
}

impl MachineType {
    /// A machine type with no compat properties (useful in tests and for tools).
    #[must_use]
    pub fn bare(name: &str, version: MachineVersion) -> Self {
        MachineType {
            name: name.to_owned(),
            family: name
                .rsplit_once('-')
                .map_or(String::new(), |(f, _)| f.to_owned()),
            version,
            props: Arc::new(BTreeMap::new()),
        }
    }

    /// The full name, e.g. `pc-i440fx-7.2`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The family, e.g. `pc-i440fx`.
    #[must_use]
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The version, e.g. 7.2.
    #[must_use]
    pub fn version(&self) -> MachineVersion {
        self.version
    }

    /// The compat value of `driver.property`, if an entry sets it for this machine type.
    #[must_use]
    pub fn compat(&self, driver: &str, property: &str) -> Option<bool> {
        // BTreeMap<(String,String)> lookup without allocating.
        self.props
            .iter()
            .find(|((d, p), _)| d == driver && p == property)
            .map(|(_, v)| *v)
    }

    /// Every compat entry that applies, as `(driver, property, value)`.
    pub fn compat_entries(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.props
            .iter()
            .map(|((d, p), v)| (d.as_str(), p.as_str(), *v))
    }

    /// The stream framing of this machine type.
    #[must_use]
    pub fn framing(&self) -> Framing {
        Framing {
            configuration: self
                .compat(MIGRATION_DRIVER, FRAMING_PROPERTIES[0])
                .unwrap_or(true),
            footers: self
                .compat(MIGRATION_DRIVER, FRAMING_PROPERTIES[1])
                .unwrap_or(true),
            vmdesc: self
                .compat(MIGRATION_DRIVER, FRAMING_PROPERTIES[2])
                .unwrap_or(true),
        }
    }
}

impl MachineCatalog {
    /// Parses a catalog from JSON.
    ///
    /// # Errors
    /// [`ErrorKind::BadVmdesc`]-style message when the JSON is malformed or a version string is
    /// not `major.minor`.
    pub fn from_json(json: &str) -> Result<Self> {
        let cat: MachineCatalog = serde_json::from_str(json).map_err(|e| {
            Error::without_offset(ErrorKind::ValidationFailed {
                message: format!("machine catalog: {e}"),
            })
        })?;
        cat.validate()?;
        Ok(cat)
    }

    /// Checks what can be checked without the devices: every version string parses, no
    /// family or compat entry has an empty name, and a compat entry of the
    /// [`MIGRATION_DRIVER`] sets one of the [`FRAMING_PROPERTIES`] (anything else would apply
    /// to nothing). Whether a device driver and property exist is for a tool that has the
    /// devices' schemas (`cargo compat-check` checks it).
    ///
    /// # Errors
    /// [`ErrorKind::ValidationFailed`] naming the bad entry (for a misspelt framing property,
    /// with the closest valid one).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::without_offset(ErrorKind::ValidationFailed {
                message: format!("machine catalog: {what}"),
            }))
        };
        for f in &self.families {
            if f.name.is_empty() {
                return bad("a family has an empty name".to_owned());
            }
            for v in &f.versions {
                if MachineVersion::parse(v).is_none() {
                    return bad(format!("family `{}` has bad version `{v}`", f.name));
                }
            }
        }
        for (i, c) in self.compat.iter().enumerate() {
            if MachineVersion::parse(&c.upto).is_none() {
                return bad(format!(
                    "compat entry {}.{} has bad version `{}`",
                    c.driver, c.property, c.upto
                ));
            }
            if c.driver.is_empty() || c.property.is_empty() {
                return bad(format!("{} has an empty driver or property", c.describe(i)));
            }
            if c.driver == MIGRATION_DRIVER && !FRAMING_PROPERTIES.contains(&c.property.as_str()) {
                let hint = closest_name(&c.property, FRAMING_PROPERTIES.iter().copied())
                    .map(|n| format!("did you mean `{n}`? "))
                    .unwrap_or_default();
                return bad(format!(
                    "{}: the `{MIGRATION_DRIVER}` driver has no property `{}`; {hint}its \
                     properties are {}",
                    c.describe(i),
                    c.property,
                    FRAMING_PROPERTIES
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Every machine type name, oldest first within each family.
    #[must_use]
    pub fn machine_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.families {
            let mut vs: Vec<MachineVersion> = f
                .versions
                .iter()
                .filter_map(|v| MachineVersion::parse(v))
                .collect();
            vs.sort();
            for v in vs {
                out.push(format!("{}-{v}", f.name));
            }
        }
        out
    }

    /// Resolves a machine type name to its version and compat properties.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownMachineType`].
    pub fn resolve(&self, name: &str) -> Result<MachineType> {
        let unknown = || {
            Error::without_offset(ErrorKind::UnknownMachineType {
                name: name.to_owned(),
            })
        };
        let (family, ver) = name.rsplit_once('-').ok_or_else(unknown)?;
        let version = MachineVersion::parse(ver).ok_or_else(unknown)?;
        let fam = self
            .families
            .iter()
            .find(|f| f.name == family)
            .ok_or_else(unknown)?;
        if !fam
            .versions
            .iter()
            .any(|v| MachineVersion::parse(v) == Some(version))
        {
            return Err(unknown());
        }
        let mut props = BTreeMap::new();
        // Apply newest entries first so that an older entry for the same property (which is
        // more specific to old machine types) wins, as QEMU's later-appended compat arrays do.
        let mut entries: Vec<(&CompatEntry, MachineVersion)> = self
            .compat
            .iter()
            .filter_map(|c| MachineVersion::parse(&c.upto).map(|u| (c, u)))
            .filter(|(_, u)| version <= *u)
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.1));
        for (c, _) in entries {
            props.insert((c.driver.clone(), c.property.clone()), c.value);
        }
        Ok(MachineType {
            name: name.to_owned(),
            family: family.to_owned(),
            version,
            props: Arc::new(props),
        })
    }

    /// A catalog modelled on QEMU's x86 `pc-i440fx` and `pc-q35` machine types 2.2 … 7.2, with
    /// the migration framing switches QEMU's compat tables set (no configuration section and no
    /// footers up to 2.3, no vmdesc up to 2.2). Device compat entries are added by the VMM.
    #[must_use]
    pub fn qemu_pc() -> Self {
        let mut i440 = Vec::new();
        for (maj, mins) in [
            (2u16, 2..=12u16),
            (3, 0..=1),
            (4, 0..=2),
            (5, 0..=2),
            (6, 0..=2),
            (7, 0..=2),
        ] {
            for m in mins {
                i440.push(format!("{maj}.{m}"));
            }
        }
        let q35: Vec<String> = i440
            .iter()
            .filter(|v| MachineVersion::parse(v).is_some_and(|v| v >= MachineVersion::new(2, 4)))
            .cloned()
            .collect();
        let entry = |upto: &str, prop: &str| CompatEntry {
            upto: upto.to_owned(),
            driver: MIGRATION_DRIVER.to_owned(),
            property: prop.to_owned(),
            value: false,
        };
        MachineCatalog {
            families: vec![
                Family {
                    name: "pc-i440fx".into(),
                    versions: i440,
                },
                Family {
                    name: "pc-q35".into(),
                    versions: q35,
                },
            ],
            compat: vec![
                entry("2.3", "send-configuration"),
                entry("2.3", "send-section-footer"),
                entry("2.2", "send-vmdesc"),
            ],
        }
    }

    /// Adds compat entries (builder style).
    #[must_use]
    pub fn with_compat(mut self, entries: impl IntoIterator<Item = CompatEntry>) -> Self {
        self.compat.extend(entries);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names() {
        assert_eq!(closest_name("pl-031", ["pl031", "serial"]), Some("pl031"));
        assert_eq!(
            closest_name("send-vmdsc", FRAMING_PROPERTIES.iter().copied()),
            Some("send-vmdesc")
        );
        assert_eq!(closest_name("x", ["serial", "i8254"]), None);
        assert_eq!(closest_name("serial", ["serial"]), None);
    }

    #[test]
    fn validate_rejects_unknown_framing_properties_and_empty_names() {
        let entry = |driver: &str, property: &str| CompatEntry {
            upto: "2.3".to_owned(),
            driver: driver.to_owned(),
            property: property.to_owned(),
            value: false,
        };
        assert!(MachineCatalog::qemu_pc().validate().is_ok());
        let cat = MachineCatalog::qemu_pc().with_compat([entry(MIGRATION_DRIVER, "send-vmdsc")]);
        let e = cat.validate().unwrap_err().to_string();
        assert!(
            e.contains(
                "compat entry #3 {upto: \"2.3\", driver: \"migration\", property: \"send-vmdsc\", \
                 value: false}: the `migration` driver has no property `send-vmdsc`; did you mean \
                 `send-vmdesc`?"
            ),
            "{e}"
        );
        let cat = MachineCatalog::qemu_pc().with_compat([entry("", "x")]);
        assert!(cat
            .validate()
            .unwrap_err()
            .to_string()
            .contains("empty driver"));
        // A device driver is not checked here (the catalog does not know the devices).
        let cat = MachineCatalog::qemu_pc().with_compat([entry("pl-031", "x")]);
        assert!(cat.validate().is_ok());
    }
}

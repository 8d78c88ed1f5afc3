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

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::schema::MachineVersion;

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
                .compat("migration", "send-configuration")
                .unwrap_or(true),
            footers: self
                .compat("migration", "send-section-footer")
                .unwrap_or(true),
            vmdesc: self.compat("migration", "send-vmdesc").unwrap_or(true),
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

    /// Checks that every version string parses.
    ///
    /// # Errors
    /// [`ErrorKind::ValidationFailed`] naming the bad entry.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| {
            Err(Error::without_offset(ErrorKind::ValidationFailed {
                message: format!("machine catalog: {what}"),
            }))
        };
        for f in &self.families {
            for v in &f.versions {
                if MachineVersion::parse(v).is_none() {
                    return bad(format!("family `{}` has bad version `{v}`", f.name));
                }
            }
        }
        for c in &self.compat {
            if MachineVersion::parse(&c.upto).is_none() {
                return bad(format!(
                    "compat entry {}.{} has bad version `{}`",
                    c.driver, c.property, c.upto
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
            driver: "migration".to_owned(),
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

//! Owned mirror of the schema export: what `vmstate_runtime::export_schemas!` writes.
//!
//! One crate's export document is
//! `{"crate": "<package>", "catalog": <MachineCatalog>, "devices": [<StructSchema>…]}`; the
//! structs here deserialize it (unknown keys are ignored, so newer runtimes stay readable). The
//! semantics are those of `vmstate_runtime::schema`: a field is on the wire iff
//! `since ≤ container version` and its gate holds; nested structs are inline at their own
//! version; subsections follow their struct's fields.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use vmstate_runtime::machine::MachineCatalog;
use vmstate_runtime::schema::MachineVersion;

use crate::error::Error;
use crate::layout::Presence;

/// A source location as the derive records it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Location {
    /// File, as rustc prints it (relative to the workspace root for workspace crates).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    #[serde(default)]
    pub column: u32,
}

/// `major.minor` of a machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Version {
    /// Major number.
    pub major: u16,
    /// Minor number.
    pub minor: u16,
}

impl Version {
    /// The runtime's type.
    #[must_use]
    pub fn to_runtime(self) -> MachineVersion {
        MachineVersion::new(self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A comparison in a machine gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Op {
    Ge,
    Gt,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn eval(self, a: MachineVersion, b: MachineVersion) -> bool {
        match self {
            Op::Ge => a >= b,
            Op::Gt => a > b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// A presence gate (`when = …`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// `machine <op> "X.Y"`.
    Machine {
        /// The comparison.
        op: Op,
        /// The version compared with.
        version: Version,
    },
    /// `prop("name")`: a boolean compat property of the device.
    Prop {
        /// Property name.
        name: String,
    },
    /// `pred(path)`: a runtime predicate.
    Pred {
        /// The path as written.
        path: String,
    },
    /// `all(…)`.
    All(Vec<Gate>),
    /// `any(…)`.
    Any(Vec<Gate>),
    /// `not(…)`.
    Not(Box<Gate>),
}

impl Gate {
    /// Evaluates the gate for `machine`; `prop` gives a property's value; predicates are
    /// [`Presence::Maybe`]. Mirrors `vmstate_runtime::schema::Gate::presence`.
    pub fn presence(&self, machine: MachineVersion, prop: &dyn Fn(&str) -> bool) -> Presence {
        let yes_no = |b: bool| if b { Presence::Always } else { Presence::Never };
        match self {
            Gate::Machine { op, version } => yes_no(op.eval(machine, version.to_runtime())),
            Gate::Prop { name } => yes_no(prop(name)),
            Gate::Pred { .. } => Presence::Maybe,
            Gate::All(gs) => gs
                .iter()
                .map(|g| g.presence(machine, prop))
                .fold(Presence::Always, Presence::and),
            Gate::Any(gs) => gs
                .iter()
                .map(|g| g.presence(machine, prop))
                .fold(Presence::Never, Presence::or),
            Gate::Not(g) => match g.presence(machine, prop) {
                Presence::Always => Presence::Never,
                Presence::Never => Presence::Always,
                Presence::Maybe => Presence::Maybe,
            },
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, name: &str, gs: &[Gate]) -> fmt::Result {
            write!(f, "{name}(")?;
            for (i, g) in gs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{g}")?;
            }
            f.write_str(")")
        }
        match self {
            Gate::Machine { op, version } => write!(f, "machine {} \"{version}\"", op.as_str()),
            Gate::Prop { name } => write!(f, "prop(\"{name}\")"),
            Gate::Pred { path } => write!(f, "pred({path})"),
            Gate::All(gs) => list(f, "all", gs),
            Gate::Any(gs) => list(f, "any", gs),
            Gate::Not(g) => write!(f, "not({g})"),
        }
    }
}

/// A field's codec and shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Kind {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    Timer,
    /// Raw bytes of a fixed length.
    Buffer {
        /// Bytes.
        len: u32,
    },
    /// Padding: zeros on save, skipped on load.
    Unused {
        /// Bytes.
        len: u32,
    },
    /// A fixed array.
    Array {
        /// Element kind.
        elem: Box<Kind>,
        /// Element count.
        len: u32,
    },
    /// A variable array whose count is an earlier field.
    VArray {
        /// Element kind.
        elem: Box<Kind>,
        /// The count field.
        count_field: String,
        /// Declared maximum.
        max: u32,
    },
    /// A variable byte buffer whose length is an earlier field.
    VBuffer {
        /// The length field.
        len_field: String,
        /// Declared maximum.
        max: u32,
    },
    /// A nested struct, inline at its own version.
    Struct {
        /// The nested struct.
        #[serde(rename = "struct")]
        schema: Box<StructSchema>,
    },
}

impl Kind {
    /// The codec name of a primitive (`u16`, `timer`, …); `None` for composite kinds.
    #[must_use]
    pub fn primitive_name(&self) -> Option<&'static str> {
        Some(match self {
            Kind::Bool => "bool",
            Kind::U8 => "u8",
            Kind::U16 => "u16",
            Kind::U32 => "u32",
            Kind::U64 => "u64",
            Kind::I8 => "i8",
            Kind::I16 => "i16",
            Kind::I32 => "i32",
            Kind::I64 => "i64",
            Kind::Timer => "timer",
            Kind::Buffer { .. } => "buffer",
            Kind::Unused { .. } => "unused",
            _ => return None,
        })
    }

    /// Bytes of one primitive value on the wire.
    #[must_use]
    pub fn primitive_size(&self) -> Option<u64> {
        Some(match self {
            Kind::Bool | Kind::U8 | Kind::I8 => 1,
            Kind::U16 | Kind::I16 => 2,
            Kind::U32 | Kind::I32 => 4,
            Kind::U64 | Kind::I64 | Kind::Timer => 8,
            Kind::Buffer { len } | Kind::Unused { len } => u64::from(*len),
            _ => return None,
        })
    }
}

/// One field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FieldSchema {
    /// Name in vmdesc and dumps.
    pub name: String,
    /// Name as written in the vmdesc (duplicates get `[k]`); unique within the struct.
    #[serde(default)]
    pub vmdesc_name: Option<String>,
    /// The Rust field name.
    #[serde(default)]
    pub rust_name: Option<String>,
    /// Codec and shape.
    pub kind: Kind,
    /// Present only when the container version is at least this (0 = always).
    #[serde(default)]
    pub since: u32,
    /// Present only when this holds.
    #[serde(default)]
    pub gate: Option<Gate>,
    /// Where the field is declared.
    pub location: Location,
}

impl FieldSchema {
    /// The unique wire name (`vmdesc_name`, else `name`).
    #[must_use]
    pub fn wire_name(&self) -> &str {
        self.vmdesc_name.as_deref().unwrap_or(&self.name)
    }
}

/// A subsection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubsectionSchema {
    /// `<parent>/<child>`.
    pub name: String,
    /// Version written in its header.
    pub version: u32,
    /// Oldest version accepted.
    #[serde(default = "one")]
    pub min_version: u32,
    /// When it is sent.
    #[serde(default)]
    pub gate: Option<Gate>,
    /// Its fields.
    #[serde(default)]
    pub fields: Vec<FieldSchema>,
    /// Where it is declared.
    pub location: Location,
}

fn one() -> u32 {
    1
}

/// `pin(below = "X.Y", version = V)`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pin {
    /// Machine types below this use `version`.
    pub below: Version,
    /// The pinned section version.
    pub version: u32,
    /// Where it is declared.
    pub location: Location,
}

/// A declared boolean compat property.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PropSchema {
    /// Name.
    pub name: String,
    /// Value when no compat entry sets it.
    pub default: bool,
}

/// One `VmState` struct (a QEMU vmsd).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StructSchema {
    /// The vmsd / section name.
    pub name: String,
    /// The Rust type name.
    #[serde(default)]
    pub rust_name: String,
    /// Package that declares it.
    #[serde(default)]
    pub krate: Option<String>,
    /// Current version.
    pub version: u32,
    /// Oldest version accepted.
    #[serde(default = "one")]
    pub min_version: u32,
    /// Only usable nested.
    #[serde(default)]
    pub nested: bool,
    /// Section order; higher first.
    #[serde(default)]
    pub priority: i32,
    /// When the whole section is sent.
    #[serde(default)]
    pub gate: Option<Gate>,
    /// Machine-pinned versions.
    #[serde(default)]
    pub pins: Vec<Pin>,
    /// Declared compat properties.
    #[serde(default)]
    pub props: Vec<PropSchema>,
    /// Fields in wire order.
    #[serde(default)]
    pub fields: Vec<FieldSchema>,
    /// Subsections in emission order.
    #[serde(default)]
    pub subsections: Vec<SubsectionSchema>,
    /// Where the struct is declared.
    pub location: Location,
}

impl StructSchema {
    /// The section version written for `machine` and the pin that decided it (the lowest
    /// matching `below` wins, as `vmstate_runtime::schema::StructSchema::version_for`).
    #[must_use]
    pub fn version_for(&self, machine: MachineVersion) -> (u32, Option<&Pin>) {
        let mut best: Option<&Pin> = None;
        for p in &self.pins {
            if machine < p.below.to_runtime() && best.is_none_or(|b| p.below < b.below) {
                best = Some(p);
            }
        }
        (best.map_or(self.version, |p| p.version), best)
    }

    /// The declared default of property `name` (false when undeclared, as the derive does).
    #[must_use]
    pub fn prop_default(&self, name: &str) -> bool {
        self.props
            .iter()
            .find(|p| p.name == name)
            .is_some_and(|p| p.default)
    }
}

/// One crate's export document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CrateExport {
    /// Package name.
    #[serde(rename = "crate", default)]
    pub krate: Option<String>,
    /// The machine catalog the crate's devices are used with.
    pub catalog: MachineCatalog,
    /// Top-level devices.
    pub devices: Vec<StructSchema>,
}

/// Everything the current code declares: one document per crate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// Per-crate documents.
    pub crates: Vec<CrateExport>,
}

impl Export {
    /// Parses one export document; `origin` names it in errors.
    ///
    /// # Errors
    /// [`Error::BadInput`] when the JSON does not match the export format or the catalog is
    /// invalid.
    pub fn parse_document(text: &str, origin: &str) -> Result<CrateExport, Error> {
        let doc: CrateExport = serde_json::from_str(text)
            .map_err(|e| Error::BadInput(format!("{origin}: not a schema export: {e}")))?;
        doc.catalog
            .validate()
            .map_err(|e| Error::BadInput(format!("{origin}: {e}")))?;
        Ok(doc)
    }

    /// Reads and adds the export document at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::BadInput`]; a device name declared twice is an error.
    pub fn add_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
        let doc = Self::parse_document(&text, &path.display().to_string())?;
        self.add(doc)
    }

    /// Adds a document.
    ///
    /// # Errors
    /// [`Error::BadInput`] when a section name is declared twice.
    pub fn add(&mut self, doc: CrateExport) -> Result<(), Error> {
        for d in &doc.devices {
            if d.nested {
                continue;
            }
            if let Some((c, _)) = self.devices().find(|(_, e)| e.name == d.name) {
                return Err(Error::BadInput(format!(
                    "section `{}` is declared twice ({} and {})",
                    d.name,
                    c.krate.as_deref().unwrap_or("?"),
                    doc.krate.as_deref().unwrap_or("?")
                )));
            }
        }
        self.crates.push(doc);
        Ok(())
    }

    /// Builds an export from in-process schemas (for `cargo test` users).
    ///
    /// # Errors
    /// [`Error::BadInput`] if the schemas do not round-trip (a runtime/checker mismatch).
    pub fn from_schemas(
        krate: &str,
        catalog: &MachineCatalog,
        schemas: &[&vmstate_runtime::schema::StructSchema],
    ) -> Result<Self, Error> {
        let doc = serde_json::json!({
            "crate": krate,
            "catalog": catalog,
            "devices": schemas.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        });
        let mut e = Export::default();
        e.add(Self::parse_document(&doc.to_string(), krate)?)?;
        Ok(e)
    }

    /// Builds an export from the schemas package `krate` registered in this binary (the same
    /// document its `export_schemas!` test writes); the package must be linked in, e.g. as a
    /// dev-dependency whose items the test uses.
    ///
    /// # Errors
    /// [`Error::BadInput`] if the document does not parse (a runtime/checker mismatch).
    pub fn from_registry(krate: &str, catalog: &MachineCatalog) -> Result<Self, Error> {
        let doc = vmstate_runtime::export::export_json(krate, catalog);
        let mut e = Export::default();
        e.add(Self::parse_document(&doc.to_string(), krate)?)?;
        Ok(e)
    }

    /// Every top-level device with its crate.
    pub fn devices(&self) -> impl Iterator<Item = (&CrateExport, &StructSchema)> {
        self.crates
            .iter()
            .flat_map(|c| c.devices.iter().filter(|d| !d.nested).map(move |d| (c, d)))
    }

    /// Every machine type name any crate's catalog knows, sorted by family then version.
    #[must_use]
    pub fn machine_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .crates
            .iter()
            .flat_map(|c| c.catalog.machine_names())
            .collect();
        crate::sort_machines(&mut v);
        v.dedup();
        v
    }
}

//! The wire layout of every device for one machine type: what a baseline file
//! (`compat/<machine-type>.json`) holds and what [`crate::eval`] computes from the current code.
//!
//! A layout is a *template*: every declared item is listed in wire order, with `since` (the
//! container version it needs) and its presence for this machine type. `presence` is the
//! presence at the version actually sent; when `since` keeps an item off the wire at that
//! version, `presence` is `never` and `presence_from_since` says what it would be at a version
//! ≥ `since`. So the layout can be evaluated at any version the device accepts, which the
//! old → new check needs.
//!
//! A baseline records the wire only: the `at` and `pinned_at` locations are filled in for the
//! current code (findings point at it) and are never written to or read from a baseline, so
//! code that moves without changing the wire leaves every baseline as it is.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether an item is on the wire for a machine type: the runtime's own evaluation result
/// (`never` / `maybe` / `always` in baselines).
pub use vmstate_runtime::schema::Presence;

/// `file:line` of a declaration in the current code (shown in findings; never in a baseline).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    /// File.
    pub file: String,
    /// 1-based line.
    pub line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl From<&vmstate_runtime::schema::Location> for Loc {
    fn from(l: &vmstate_runtime::schema::Location) -> Self {
        Loc {
            file: l.file.to_string(),
            line: l.line,
        }
    }
}

/// Header of a baseline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Baseline format version ([`FORMAT`]).
    pub format: u32,
    /// The tool that froze it.
    pub tool: String,
    /// The machine type.
    pub machine: String,
    /// What the file is, for reviewers.
    #[serde(default)]
    pub note: String,
}

/// Current baseline format: 2, the wire layout without source locations.
pub const FORMAT: u32 = 2;

/// The oldest format still read: 1 also recorded `file:line` of every item (`at`,
/// `pinned_at`), which made a baseline change when code merely moved. Those keys are ignored
/// on reading; `freeze` rewrites such a file in the current format when its wire layout is
/// unchanged.
pub const OLDEST_FORMAT: u32 = 1;

/// What one machine type sends and accepts, per device: the content of
/// `compat/<machine-type>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// Header (tool, machine type).
    #[serde(rename = "compat-check")]
    pub header: Header,
    /// Compat properties that apply to this machine type, `driver.property` → value
    /// (informational).
    #[serde(default)]
    pub compat: std::collections::BTreeMap<String, bool>,
    /// Devices, sorted by section name.
    pub devices: Vec<DeviceLayout>,
}

impl Baseline {
    /// The machine type.
    #[must_use]
    pub fn machine(&self) -> &str {
        &self.header.machine
    }

    /// Pretty, stable JSON with a trailing newline.
    #[must_use]
    pub fn to_pretty_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses a baseline file; `origin` names it in errors.
    ///
    /// # Errors
    /// [`crate::Error::BadInput`] for malformed JSON or an unsupported format.
    pub fn parse(text: &str, origin: &str) -> Result<Self, crate::Error> {
        let b: Baseline = serde_json::from_str(text)
            .map_err(|e| crate::Error::BadInput(format!("{origin}: not a baseline: {e}")))?;
        if !(OLDEST_FORMAT..=FORMAT).contains(&b.header.format) {
            return Err(crate::Error::BadInput(format!(
                "{origin}: baseline format {} is not supported (this tool reads formats \
                 {OLDEST_FORMAT} to {FORMAT})",
                b.header.format
            )));
        }
        Ok(b)
    }
}

/// The versions a device accepts on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepts {
    /// `minimum_version`.
    pub min: u32,
    /// `version`.
    pub max: u32,
}

/// One device (top-level section) for one machine type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLayout {
    /// Section name.
    pub name: String,
    /// Rust type.
    pub rust_name: String,
    /// Declaring package.
    #[serde(rename = "crate", default, skip_serializing_if = "Option::is_none")]
    pub krate: Option<String>,
    /// Where the struct is declared in the current code; never in a baseline.
    #[serde(skip)]
    pub at: Option<Loc>,
    /// Section order (higher first).
    pub priority: i32,
    /// Whether the section is sent (its `when` gate).
    pub presence: Presence,
    /// The section gate as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Section version sent for this machine type.
    pub version: u32,
    /// Where the pin that chose `version` is declared in the current code, if a pin did; never
    /// in a baseline.
    #[serde(skip)]
    pub pinned_at: Option<Loc>,
    /// Versions accepted on load.
    pub accepts: Accepts,
    /// Fields, struct arrays and subsections in wire order.
    pub items: Vec<Item>,
}

/// Presence bookkeeping shared by every item.
pub trait Cond {
    /// Container version the item needs (0: always).
    fn since(&self) -> u32;
    /// Presence at the version sent.
    fn presence(&self) -> Presence;
    /// Presence when `since` is met.
    fn presence_from_since(&self) -> Option<Presence>;
    /// Presence at container version `v`.
    fn presence_at(&self, v: u32) -> Presence {
        if self.since() > v {
            Presence::Never
        } else {
            self.presence_from_since().unwrap_or(self.presence())
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// One wire item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum Item {
    /// A primitive field or array of primitives.
    Field(FieldItem),
    /// An array of nested structs (element layout once, with the length).
    Array(ArrayItem),
    /// A subsection.
    Subsection(SubItem),
}

/// A primitive field (or an array of one primitive kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldItem {
    /// Path, e.g. `state.divider`, `channels[*].mode`.
    pub path: String,
    /// Rust field name when it differs from the last path component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust: Option<String>,
    /// Codec of one element: `bool`, `u8`…`i64`, `timer`, `buffer`, `unused`.
    pub kind: String,
    /// Element count of a fixed array (nested arrays multiplied out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u32>,
    /// Count (or length) field of a variable array or buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<String>,
    /// Declared maximum of a variable array or buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Bytes on the wire when fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Container version needed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since: u32,
    /// Presence at the version sent.
    pub presence: Presence,
    /// Presence once `since` is met, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_from_since: Option<Presence>,
    /// Gate as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Where it is declared in the current code; never in a baseline (a frozen layout records
    /// the wire, not where the code was).
    #[serde(skip)]
    pub at: Option<Loc>,
}

/// An array of nested structs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayItem {
    /// Path of the array, e.g. `channels`.
    pub path: String,
    /// Rust field name when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust: Option<String>,
    /// The element struct (vmsd name).
    pub element: String,
    /// Fixed element count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u32>,
    /// Count field of a variable array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<String>,
    /// Declared maximum of a variable array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Container version needed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since: u32,
    /// Presence at the version sent.
    pub presence: Presence,
    /// Presence once `since` is met, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_from_since: Option<Presence>,
    /// Gate as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Where it is declared in the current code; never in a baseline (a frozen layout records
    /// the wire, not where the code was).
    #[serde(skip)]
    pub at: Option<Loc>,
    /// Layout of one element (paths `array[*].field`).
    pub items: Vec<Item>,
}

/// A subsection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubItem {
    /// Its name, `<parent>/<child>`.
    pub name: String,
    /// Version sent in its header.
    pub version: u32,
    /// Oldest version accepted.
    pub min_version: u32,
    /// Container version needed (inherited from an enclosing nested-struct field).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since: u32,
    /// Presence at the version sent.
    pub presence: Presence,
    /// Presence once `since` is met, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_from_since: Option<Presence>,
    /// Gate as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Where it is declared in the current code; never in a baseline (a frozen layout records
    /// the wire, not where the code was).
    #[serde(skip)]
    pub at: Option<Loc>,
    /// Its fields (their `since` compares with this subsection's version).
    pub items: Vec<Item>,
}

macro_rules! impl_cond {
    ($t:ty) => {
        impl Cond for $t {
            fn since(&self) -> u32 {
                self.since
            }
            fn presence(&self) -> Presence {
                self.presence
            }
            fn presence_from_since(&self) -> Option<Presence> {
                self.presence_from_since
            }
        }
    };
}
impl_cond!(FieldItem);
impl_cond!(ArrayItem);
impl_cond!(SubItem);

impl Item {
    /// The bookkeeping of any item.
    #[must_use]
    pub fn cond(&self) -> &dyn Cond {
        match self {
            Item::Field(f) => f,
            Item::Array(a) => a,
            Item::Subsection(s) => s,
        }
    }

    /// Path (fields, arrays) or name (subsections).
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Item::Field(f) => &f.path,
            Item::Array(a) => &a.path,
            Item::Subsection(s) => &s.name,
        }
    }

    /// Where it is declared in the current code (`None` for a frozen item).
    #[must_use]
    pub fn at(&self) -> Option<&Loc> {
        match self {
            Item::Field(f) => f.at.as_ref(),
            Item::Array(a) => a.at.as_ref(),
            Item::Subsection(s) => s.at.as_ref(),
        }
    }

    /// Gate text.
    #[must_use]
    pub fn when(&self) -> Option<&str> {
        match self {
            Item::Field(f) => f.when.as_deref(),
            Item::Array(a) => a.when.as_deref(),
            Item::Subsection(s) => s.when.as_deref(),
        }
    }

    /// Bytes on the wire when fixed and unconditional inside.
    #[must_use]
    pub fn fixed_size(&self) -> Option<u64> {
        match self {
            Item::Field(f) => f.size,
            // An array of pointers (`<vmsd> pointer`): a NULL element is one byte.
            Item::Array(a) if a.element.ends_with(" pointer") => None,
            Item::Array(a) => {
                let mut n = 0u64;
                for i in &a.items {
                    if i.cond().presence() != Presence::Always || i.cond().since() > 0 {
                        return None;
                    }
                    n = n.checked_add(i.fixed_size()?)?;
                }
                n.checked_mul(u64::from(a.len?))
            }
            Item::Subsection(_) => None,
        }
    }

    /// Short description of the wire shape, e.g. `u8`, `u32[4]`, `buffer (16 bytes)`,
    /// `u32[kick_log_len ≤ 8]`, `[3 × pit channel]`.
    #[must_use]
    pub fn shape(&self) -> String {
        match self {
            Item::Field(f) => f.shape(),
            Item::Array(a) => match (&a.len, &a.count) {
                (Some(n), _) => format!("[{n} × {}]", a.element),
                (None, Some(c)) => format!("[{c} ≤ {} × {}]", a.max.unwrap_or(0), a.element),
                (None, None) => format!("[{}]", a.element),
            },
            Item::Subsection(s) => format!("subsection v{}", s.version),
        }
    }
}

impl FieldItem {
    /// Short description of the wire shape.
    #[must_use]
    pub fn shape(&self) -> String {
        let bytes = |n: u64| {
            if n == 1 {
                "1 byte".to_owned()
            } else {
                format!("{n} bytes")
            }
        };
        match (&self.len, &self.count) {
            (Some(n), _) => match self.size {
                Some(s) => format!("{}[{n}], {}", self.kind, bytes(s)),
                None => format!("{}[{n}]", self.kind),
            },
            (None, Some(c)) => format!("{}[{c} ≤ {}]", self.kind, self.max.unwrap_or(0)),
            (None, None) => match self.size {
                Some(s) => format!("{}, {}", self.kind, bytes(s)),
                None => self.kind.clone(),
            },
        }
    }

    /// The Rust name of the field (for fix texts).
    #[must_use]
    pub fn rust_name(&self) -> &str {
        self.rust
            .as_deref()
            .unwrap_or_else(|| self.path.rsplit('.').next().unwrap_or(&self.path))
    }
}

impl DeviceLayout {
    /// Finds an item (field, array or subsection) anywhere in the template by key.
    #[must_use]
    pub fn find(&self, key: &str) -> Option<&Item> {
        fn walk<'a>(items: &'a [Item], key: &str) -> Option<&'a Item> {
            for i in items {
                if i.key() == key {
                    return Some(i);
                }
                let inner = match i {
                    Item::Array(a) => &a.items,
                    Item::Subsection(s) => &s.items,
                    Item::Field(_) => continue,
                };
                if let Some(x) = walk(inner, key) {
                    return Some(x);
                }
            }
            None
        }
        walk(&self.items, key)
    }
}

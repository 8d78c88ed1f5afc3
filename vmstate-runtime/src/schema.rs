//! The static description of a [`VmState`](crate::VmState) type, emitted by the derive as a
//! `const`.
//!
//! It is exactly what the generated save/load code does, as data: every field with its codec,
//! size, version (`since`) and gate, every subsection with its version and gate, the pinned
//! versions per machine type, and the source location of each declaration. The vmdesc writer,
//! the generic tooling and the compat checker read it; [`StructSchema::to_json`] gives a stable
//! JSON dump, and [`serde::Deserialize`] reads such a dump back into the same types.
//!
//! # Static or owned
//!
//! The derive builds every description at compile time, so strings and lists are
//! [`Cow::Borrowed`] and single references are [`SchemaRef::Static`]; both are
//! const-constructible. A description read back from JSON (by the compat checker) owns its data
//! ([`Cow::Owned`], [`SchemaRef::Owned`]). Either way the same methods evaluate it: gates
//! ([`Gate::presence`]), section versions ([`StructSchema::version_for`],
//! [`StructSchema::pin_for`]) and sizes.

use std::borrow::Cow;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A reference inside a description: `&'static T` in generated code, `Box<T>` when the
/// description was deserialized. Derefs to `T`; serializes as `T`.
#[derive(Debug, Clone)]
pub enum SchemaRef<T: 'static> {
    /// Built by the derive (a `const`).
    Static(&'static T),
    /// Read from a dump.
    Owned(Box<T>),
}

impl<T> Deref for SchemaRef<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            SchemaRef::Static(t) => t,
            SchemaRef::Owned(t) => t,
        }
    }
}

impl<T: PartialEq> PartialEq for SchemaRef<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for SchemaRef<T> {}

impl<T: std::fmt::Display> std::fmt::Display for SchemaRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: Serialize> Serialize for SchemaRef<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SchemaRef<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|t| SchemaRef::Owned(Box::new(t)))
    }
}

/// A source location (`file!()`, `line!()`, `column!()` of the declaration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Source file, relative to the crate's workspace as rustc prints it.
    pub file: Cow<'static, str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    #[serde(default)]
    pub column: u32,
}

/// A machine-type version such as `7.2` (family-independent, like QEMU's `hw_compat_7_2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MachineVersion {
    /// Major number.
    pub major: u16,
    /// Minor number.
    pub minor: u16,
}

impl MachineVersion {
    /// `major.minor`.
    #[must_use]
    pub const fn new(major: u16, minor: u16) -> Self {
        MachineVersion { major, minor }
    }

    /// Parses `"7.2"`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('.')?;
        if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(MachineVersion {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

impl std::fmt::Display for MachineVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A comparison in a machine gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    /// Applies the comparison.
    #[must_use]
    pub fn eval<T: Ord>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Ge => a >= b,
            CmpOp::Gt => a > b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }

    /// The operator as written.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Ge => ">=",
            CmpOp::Gt => ">",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// When a field, subsection or section is present. The static parts (machine, prop) can be
/// evaluated per machine type without running code; `Pred` is a runtime predicate on the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The machine type's version compared with `version`.
    Machine {
        /// The comparison.
        op: CmpOp,
        /// The version compared with.
        version: MachineVersion,
    },
    /// A boolean compat property of this device is on.
    Prop {
        /// Property name.
        name: Cow<'static, str>,
    },
    /// A runtime predicate `fn(&Self) -> bool` (its path as written).
    Pred {
        /// The path as written, e.g. `Self::fifo_nonempty`.
        path: Cow<'static, str>,
    },
    /// All of these.
    All(Cow<'static, [Gate]>),
    /// Any of these.
    Any(Cow<'static, [Gate]>),
    /// Not this.
    Not(SchemaRef<Gate>),
}

/// A gate evaluated statically for one machine type. Ordered `Never < Maybe < Always`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Never sent.
    Never,
    /// Sent depending on runtime state.
    Maybe,
    /// Always sent.
    Always,
}

impl Presence {
    /// Both must hold (`all`).
    #[must_use]
    pub fn and(self, other: Presence) -> Presence {
        self.min(other)
    }

    /// Either holds (`any`).
    #[must_use]
    pub fn or(self, other: Presence) -> Presence {
        self.max(other)
    }

    /// `never` / `maybe` / `always`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Never => "never",
            Presence::Maybe => "maybe",
            Presence::Always => "always",
        }
    }
}

impl std::ops::Not for Presence {
    type Output = Presence;

    /// Does not hold (`not`).
    fn not(self) -> Presence {
        match self {
            Presence::Always => Presence::Never,
            Presence::Never => Presence::Always,
            Presence::Maybe => Presence::Maybe,
        }
    }
}

impl std::fmt::Display for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Gate {
    /// Evaluates the static parts; runtime predicates count as [`Presence::Maybe`].
    pub fn presence(&self, machine: MachineVersion, prop: &dyn Fn(&str) -> bool) -> Presence {
        let yes_no = |b: bool| if b { Presence::Always } else { Presence::Never };
        match self {
            Gate::Machine { op, version } => yes_no(op.eval(machine, *version)),
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
            Gate::Not(g) => !g.presence(machine, prop),
        }
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn list(f: &mut std::fmt::Formatter<'_>, name: &str, gs: &[Gate]) -> std::fmt::Result {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Kind {
    /// `bool`, one byte 0/1.
    Bool,
    /// `u8`.
    U8,
    /// be16.
    U16,
    /// be32.
    U32,
    /// be64.
    U64,
    /// `i8`.
    I8,
    /// be16, two's complement.
    I16,
    /// be32, two's complement.
    I32,
    /// be64, two's complement.
    I64,
    /// be64 expiry in ns, all ones = not armed.
    Timer,
    /// A `u32` sent as be16 (QEMU's `VMSTATE_UINT16_HACK`, `vmstate_hack_uint32_as_uint16`):
    /// loads zero-extend; saving a value above 0xffff fails.
    #[serde(rename = "u32_as_u16")]
    U32AsU16,
    /// An `f64` as QEMU's `CPU_DoubleU` (`vmstate_info_cpudouble`): be32 upper half, be32 lower
    /// half of its bits, i.e. the be64 of `f64::to_bits`.
    F64,
    /// Raw bytes of a fixed length.
    Buffer {
        /// Bytes.
        len: u32,
    },
    /// Zero bytes on save, skipped on load.
    Unused {
        /// Bytes.
        len: u32,
    },
    /// A fixed array.
    Array {
        /// Element kind.
        elem: SchemaRef<Kind>,
        /// Element count.
        len: u32,
    },
    /// A variable array whose count is an earlier field (not repeated on the wire).
    VArray {
        /// Element kind.
        elem: SchemaRef<Kind>,
        /// The earlier field holding the count.
        count_field: Cow<'static, str>,
        /// Declared maximum count.
        max: u32,
        /// The element count is the count field times this (QEMU's `VMS_MULTIPLY_ELEMENTS`);
        /// 1 (left out of dumps) for a plain variable array.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        multiply: u32,
        /// The count field is local configuration (`local_count`): not sent before the array
        /// (not sent at all, or sent after it and checked `equal`), so the count is the
        /// destination's own value, as QEMU's count fields that are not migrated. False (left
        /// out of dumps) for a count read from the stream.
        #[serde(default, skip_serializing_if = "is_false")]
        local: bool,
    },
    /// Raw bytes whose length is an earlier field (QEMU's VBUFFER).
    VBuffer {
        /// The earlier field holding the length.
        len_field: Cow<'static, str>,
        /// Declared maximum length.
        max: u32,
        /// The length is the length field times this (QEMU's `VMS_MULTIPLY`); 1 (left out of
        /// dumps) for a plain variable buffer.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        multiply: u32,
        /// The length field is local configuration (`local_count`), as for
        /// [`Kind::VArray`]'s `local`.
        #[serde(default, skip_serializing_if = "is_false")]
        local: bool,
    },
    /// A bitmap (QEMU's `VMSTATE_BITMAP`; Rust `Vec<u64>` or `[u64; N]` with
    /// `#[vmstate(bitmap = nbits, max = N)]`): `ceil(nbits / 64)` be64 words, bit `i` in word
    /// `i / 64` at position `i % 64`; vmdesc type `bitmap`.
    Bitmap {
        /// The earlier field holding the number of bits.
        bits_field: Cow<'static, str>,
        /// Declared maximum number of bits.
        max: u32,
    },
    /// An element of an array of pointers that may be NULL (QEMU's `VMSTATE_ARRAY_OF_POINTER`
    /// and `_TO_STRUCT`; Rust `Option<T>` / `Option<Box<T>>` as the element of `[_; N]`): the
    /// element as `elem`, or the single byte `0x30` when NULL.
    Pointer {
        /// The pointed-to element's kind.
        elem: SchemaRef<Kind>,
    },
    /// A linked list of nested structs (QEMU's `VMSTATE_QTAILQ_V` / `VMSTATE_QLIST_V`; Rust
    /// `Vec<T>` or `VecDeque<T>` with `#[vmstate(list, max = N)]`): per element `0x01` and the
    /// element, then `0x00`; no count on the wire.
    List {
        /// The element's kind (a nested struct).
        elem: SchemaRef<Kind>,
        /// Declared maximum number of elements (checked on load).
        max: u32,
        /// The element version passed to the element's load (QEMU's field version).
        #[serde(default = "one")]
        version: u32,
        /// QEMU's `qlist` (vmdesc type `qlist`) rather than `qtailq`; same bytes.
        #[serde(default)]
        qlist: bool,
    },
    /// A balanced tree (QEMU's `VMSTATE_GTREE_V` / `VMSTATE_GTREE_DIRECT_KEY_V`; Rust
    /// `BTreeMap<K, V>` with `#[vmstate(tree, max = N)]`): be32 node count, per node `0x01`, the
    /// key (a nested struct, or be64 for a direct key) and the value, then `0x00`.
    Tree {
        /// The key's kind (a nested struct); `None` for a direct key (be64).
        key: Option<SchemaRef<Kind>>,
        /// The value's kind (a nested struct).
        value: SchemaRef<Kind>,
        /// Declared maximum number of nodes (checked on load before any node is read).
        max: u32,
        /// The version passed to the key's and value's load (QEMU's field version).
        #[serde(default = "one")]
        version: u32,
    },
    /// A temporary view of the parent (QEMU's `VMSTATE_WITH_TMP`; Rust `Tmp<V>`): the view, a
    /// nested struct, computed on save and folded back on load; vmdesc type `tmp` with the
    /// view's members inline.
    Tmp {
        /// The view's kind (a nested struct).
        view: SchemaRef<Kind>,
    },
    /// A field with a custom codec (`#[vmstate(with = module)]`): the module's declared
    /// description.
    Custom {
        /// The vmdesc `type`.
        vmdesc_type: Cow<'static, str>,
        /// Bytes on the wire when fixed.
        #[serde(default)]
        size: Option<u32>,
        /// The layout the compat checker compares.
        layout: SchemaRef<Kind>,
    },
    /// A nested struct held at an explicit version (QEMU's `VMSTATE_VSTRUCT`; Rust
    /// `#[vmstate(vstruct = N)]`): saved and loaded at `version`, vmdesc type `vstruct`.
    #[serde(rename = "vstruct")]
    VStruct {
        /// The nested struct's description.
        #[serde(rename = "struct")]
        schema: SchemaRef<StructSchema>,
        /// The version it is saved and loaded at.
        version: u32,
    },
    /// A nested struct, inline, at its own current version.
    Struct {
        /// The nested struct's description.
        #[serde(rename = "struct")]
        schema: SchemaRef<StructSchema>,
    },
}

impl Kind {
    /// The codec name of a primitive (`u16`, `timer`, `buffer`, `unused`, …); `None` for arrays,
    /// variable parts and nested structs.
    #[must_use]
    pub fn codec(&self) -> Option<&'static str> {
        Some(match self {
            Kind::Bool => "bool",
            Kind::U8 => "u8",
            Kind::U16 => "u16",
            Kind::U32AsU16 => "u32_as_u16",
            Kind::U32 => "u32",
            Kind::U64 => "u64",
            Kind::I8 => "i8",
            Kind::I16 => "i16",
            Kind::I32 => "i32",
            Kind::I64 => "i64",
            Kind::Timer => "timer",
            Kind::F64 => "f64",
            Kind::Buffer { .. } => "buffer",
            Kind::Unused { .. } => "unused",
            Kind::Array { .. }
            | Kind::VArray { .. }
            | Kind::VBuffer { .. }
            | Kind::Pointer { .. }
            | Kind::List { .. }
            | Kind::Tree { .. }
            | Kind::Tmp { .. }
            | Kind::Custom { .. }
            | Kind::Bitmap { .. }
            | Kind::VStruct { .. }
            | Kind::Struct { .. } => return None,
        })
    }

    /// The codec name QEMU uses in the vmdesc `"type"` (element type for arrays).
    #[must_use]
    pub fn vmdesc_type(&self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::U8 => "uint8",
            Kind::U16 => "uint16",
            // QEMU's VMStateInfo name (QEMU itself never saves the field).
            Kind::U32AsU16 => "int32_as_uint16",
            Kind::U32 => "uint32",
            Kind::U64 => "uint64",
            Kind::I8 => "int8",
            Kind::I16 => "int16",
            Kind::I32 => "int32",
            Kind::I64 => "int64",
            Kind::Timer => "timer",
            Kind::F64 => "CPU_Double_U",
            Kind::Buffer { .. } | Kind::VBuffer { .. } => "buffer",
            Kind::Unused { .. } => "unused_buffer",
            // QEMU 7.2 names the field's type for every element, NULL ones included.
            Kind::Array { elem, .. } | Kind::VArray { elem, .. } | Kind::Pointer { elem } => {
                elem.vmdesc_type()
            }
            Kind::Struct { .. } => "struct",
            Kind::List { qlist: false, .. } => "qtailq",
            Kind::List { qlist: true, .. } => "qlist",
            Kind::Tree { .. } => "gtree",
            Kind::Tmp { .. } => "tmp",
            Kind::Bitmap { .. } => "bitmap",
            Kind::VStruct { .. } => "vstruct",
            // The declared name is not `'static` in a dump; the vmdesc writer reads it directly.
            Kind::Custom { .. } => "custom",
        }
    }

    /// The vmdesc type of an `equal` field of this kind.
    #[must_use]
    pub fn vmdesc_equal_type(&self) -> &'static str {
        match self {
            Kind::U8 => "uint8 equal",
            Kind::U16 => "uint16 equal",
            Kind::I32 => "int32 equal",
            Kind::U32 => "uint32 equal",
            Kind::I64 | Kind::U64 => "int64 equal",
            other => other.vmdesc_type(),
        }
    }

    /// Bytes on the wire when fixed (no subsections inside, no variable parts).
    #[must_use]
    pub fn fixed_size(&self) -> Option<u64> {
        Some(match self {
            Kind::Bool | Kind::U8 | Kind::I8 => 1,
            Kind::U16 | Kind::I16 | Kind::U32AsU16 => 2,
            Kind::U32 | Kind::I32 => 4,
            Kind::U64 | Kind::I64 | Kind::Timer | Kind::F64 => 8,
            Kind::Buffer { len } | Kind::Unused { len } => u64::from(*len),
            Kind::Array { elem, len } => elem.fixed_size()? * u64::from(*len),
            Kind::VArray { .. }
            | Kind::VBuffer { .. }
            | Kind::Pointer { .. }
            | Kind::List { .. }
            | Kind::Bitmap { .. }
            | Kind::VStruct { .. }
            | Kind::Tree { .. } => return None,
            Kind::Struct { schema } => schema.fixed_size()?,
            Kind::Tmp { view } => view.fixed_size()?,
            Kind::Custom { size, .. } => u64::from((*size)?),
        })
    }

    /// Whether QEMU would write this as one compressed vmdesc entry (`array_len`).
    #[must_use]
    pub fn compressible(&self) -> bool {
        match self {
            Kind::Struct { schema } | Kind::VStruct { schema, .. } => schema.compressible(),
            Kind::Array { elem, .. } | Kind::VArray { elem, .. } | Kind::Pointer { elem } => {
                elem.compressible()
            }
            _ => true,
        }
    }
}

/// One field of a struct or subsection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// The field's name in vmdesc and dumps (the Rust name, or `rename`).
    pub name: Cow<'static, str>,
    /// The name as written in the vmdesc (duplicates get `[k]`, e.g. `unused[1]`); unique
    /// within the struct.
    pub vmdesc_name: Cow<'static, str>,
    /// The Rust field name.
    pub rust_name: Cow<'static, str>,
    /// Codec and shape.
    pub kind: SchemaRef<Kind>,
    /// Present only when the stream version is at least this (0 = always).
    #[serde(default)]
    pub since: u32,
    /// A declared `since = N` that is a no-op: N is at most the lowest version the field's vmsd
    /// is ever loaded at (its minimum version; for a nested struct without one below its
    /// version, its version), so the field is always present and `since` above is 0. It is
    /// QEMU's `_V(field, N)` at such an N, which QEMU's `-dump-vmstate` shows as the field's
    /// `version_id`. 0 (left out of dumps) when there is none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub noop_since: u32,
    /// Present only when this gate holds (QEMU's `field_exists`).
    #[serde(default)]
    pub gate: Option<SchemaRef<Gate>>,
    /// On load the value must equal the local one (QEMU's `_EQUAL`).
    #[serde(default)]
    pub equal: bool,
    /// Allowed range of an integer field, checked on load (inclusive bounds).
    #[serde(default, deserialize_with = "range_bounds")]
    pub range: Option<(i128, i128)>,
    /// On load the value must lie in `0..=local` and is then stored (QEMU's
    /// `VMSTATE_INT32_POSITIVE_LE`, vmdesc type `int32 le`). Left out of dumps when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub le: bool,
    /// The vmdesc `type` the field describes itself with, as one entry of its whole size
    /// (QEMU's device-level `VMStateInfo`s such as `pci config`); `None`: its codec's name.
    /// Left out of dumps when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmdesc_type: Option<Cow<'static, str>>,
    /// The default used when absent, as written in the source (`None`: always present).
    #[serde(default)]
    pub default: Option<Cow<'static, str>>,
    /// Where the field is declared.
    pub location: Location,
}

/// Reads `range`: a pair of JSON integers. Nested struct schemas sit inside the internally
/// tagged [`Kind`], which serde buffers in a form without 128-bit integers, so each bound is
/// read as whatever integer the input holds (every bound the derive writes fits `i64` or `u64`).
fn range_bounds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(i128, i128)>, D::Error> {
    struct Bound(i128);

    struct BoundVisitor;

    impl serde::de::Visitor<'_> for BoundVisitor {
        type Value = Bound;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bound, E> {
            Ok(Bound(i128::from(v)))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bound, E> {
            Ok(Bound(i128::from(v)))
        }

        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Bound, E> {
            Ok(Bound(v))
        }

        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Bound, E> {
            i128::try_from(v)
                .map(Bound)
                .map_err(|_| E::custom("range bound out of range"))
        }
    }

    impl<'de> Deserialize<'de> for Bound {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(BoundVisitor)
        }
    }

    let pair: Option<(Bound, Bound)> = Option::deserialize(d)?;
    Ok(pair.map(|(lo, hi)| (lo.0, hi.0)))
}

/// Whether a flag is off (left out of dumps).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether a version is 0 (left out of dumps).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Whether a multiplier is 1 (left out of dumps).
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_one(n: &u32) -> bool {
    *n == 1
}

/// `min_version` of a dump that leaves it out.
fn one() -> u32 {
    1
}

/// A named subsection: sent after the struct's fields when its gate holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsectionSchema {
    /// The subsection name, `<parent>/<child>`.
    pub name: Cow<'static, str>,
    /// Its version (written in its header).
    pub version: u32,
    /// Oldest version accepted on load.
    #[serde(default = "one")]
    pub min_version: u32,
    /// When it is sent (`None`: always).
    #[serde(default)]
    pub gate: Option<SchemaRef<Gate>>,
    /// Its fields, in wire order.
    #[serde(default)]
    pub fields: Cow<'static, [FieldSchema]>,
    /// Where it is declared.
    pub location: Location,
}

/// "Machine types older than `below` are saved at `version`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// Machine types with a version below this one use the pinned version.
    pub below: MachineVersion,
    /// The section version to write for them.
    pub version: u32,
    /// Where it is declared.
    pub location: Location,
}

/// A boolean device property that compat tables can set per machine type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropSchema {
    /// Property name.
    pub name: Cow<'static, str>,
    /// Value when no compat entry sets it.
    pub default: bool,
}

/// The description of one `VmState` struct (a QEMU vmsd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructSchema {
    /// The vmsd name (the section name for top-level structs).
    pub name: Cow<'static, str>,
    /// The Rust type name.
    pub rust_name: Cow<'static, str>,
    /// The package (crate) that declares the type (empty in dumps that leave it out).
    #[serde(default)]
    pub krate: Cow<'static, str>,
    /// Current version.
    pub version: u32,
    /// Oldest version accepted on load.
    #[serde(default = "one")]
    pub min_version: u32,
    /// Only usable nested inside another struct (saved at its own version).
    #[serde(default)]
    pub nested: bool,
    /// Save/load order among sections; higher goes first.
    #[serde(default)]
    pub priority: i32,
    /// When the whole section is sent (`None`: always).
    #[serde(default)]
    pub gate: Option<SchemaRef<Gate>>,
    /// Machine-pinned older versions.
    #[serde(default)]
    pub pins: Cow<'static, [Pin]>,
    /// Declared compat properties.
    #[serde(default)]
    pub props: Cow<'static, [PropSchema]>,
    /// Fields, in wire order.
    #[serde(default)]
    pub fields: Cow<'static, [FieldSchema]>,
    /// Subsections, in emission order.
    #[serde(default)]
    pub subsections: Cow<'static, [SubsectionSchema]>,
    /// Names of the hooks that are set (`pre_save`, `post_load`, …).
    #[serde(default)]
    pub hooks: Cow<'static, [Cow<'static, str>]>,
    /// Where the struct is declared.
    pub location: Location,
}

impl StructSchema {
    /// Fixed wire size when no field is versioned, gated or variable and there are no
    /// subsections.
    #[must_use]
    pub fn fixed_size(&self) -> Option<u64> {
        if !self.subsections.is_empty() {
            return None;
        }
        let mut n = 0;
        for f in self.fields.iter() {
            if f.since != 0 || f.gate.is_some() {
                return None;
            }
            n += f.kind.fixed_size()?;
        }
        Some(n)
    }

    /// QEMU's `vmsd_can_compress` for an array of this struct.
    #[must_use]
    pub fn compressible(&self) -> bool {
        self.subsections.is_empty()
            && self
                .fields
                .iter()
                .all(|f| f.gate.is_none() && f.kind.compressible())
    }

    /// The section version written for a machine type of version `machine`
    /// (the lowest matching pin, or the current version).
    #[must_use]
    pub fn version_for(&self, machine: MachineVersion) -> u32 {
        self.pin_for(machine).map_or(self.version, |p| p.version)
    }

    /// The pin that decides the section version for `machine`: among the pins whose `below`
    /// is above `machine`, the one with the lowest `below` (the first declared on a tie).
    #[must_use]
    pub fn pin_for(&self, machine: MachineVersion) -> Option<&Pin> {
        let mut best: Option<&Pin> = None;
        for p in self.pins.iter() {
            if machine < p.below && best.is_none_or(|b| p.below < b.below) {
                best = Some(p);
            }
        }
        best
    }

    /// The default value of a declared property.
    #[must_use]
    pub fn prop_default(&self, name: &str) -> Option<bool> {
        self.props
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.default)
    }

    /// A stable JSON dump of this description (for tools and baselines).
    ///
    /// # Panics
    /// Never: the schema types serialize infallibly.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

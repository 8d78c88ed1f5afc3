//! The vmdesc JSON that follows EOF in a QEMU stream ("for analysis only").
//!
//! - [`DescStruct`]/[`DescField`] are the in-memory tree.
//! - [`DescBuilder`] is fed by the generated save code while it writes, so the description
//!   mirrors the bytes exactly (sizes include nested subsections; only subsections actually sent
//!   are listed; arrays are compressed with `array_len` where QEMU compresses them).
//! - [`write_json`] prints the tree the way QEMU's JSON writer does (`", "` and `": "`
//!   separators, no trailing newline).
//! - [`parse_vmdesc`] reads a vmdesc back (for generic decoding of unknown sections), bounded
//!   by structure as well as by bytes: it parses straight into these types and charges every
//!   allocation against a budget proportional to the JSON's length.
//!
//! The writer lives in `write.rs`, the parser in `parse.rs`; both are re-exported here.

use std::borrow::Cow;

use crate::schema::{FieldSchema, Kind};

mod parse;
mod write;

pub use parse::parse_vmdesc;
pub use write::{write_device, write_json, write_json_into, write_value_qemu, JsonOut};

/// Array marker of a vmdesc field entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescArray {
    /// A compressed array: one entry describes `n` equal elements.
    Len(u64),
    /// One element of a non-compressible array.
    Index(u64),
}

/// A field entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescField {
    /// Name (with `[k]` for duplicates).
    pub name: Cow<'static, str>,
    /// Array marker.
    pub array: Option<DescArray>,
    /// Codec name.
    pub ty: Cow<'static, str>,
    /// Nested struct description.
    pub strukt: Option<Box<DescStruct>>,
    /// Bytes written for this (first) element, including nested subsections.
    pub size: u64,
    /// The element descriptions QEMU writes straight into a `qtailq`, `qlist` or `gtree` field
    /// object, one after the other (repeated `vmsd_name`, `version`, `fields` and `subsections`
    /// members): each list element in order; for a tree each node's key (unless it is a direct
    /// key) then its value. Empty for every other type.
    pub elems: Vec<DescStruct>,
}

/// A vmsd description (top-level section body, nested struct or subsection).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescStruct {
    /// vmsd name.
    pub vmsd_name: Cow<'static, str>,
    /// Version written.
    pub version: u32,
    /// Fields in wire order.
    pub fields: Vec<DescField>,
    /// Subsections actually sent.
    pub subsections: Vec<DescStruct>,
    /// Bytes this struct took on the wire, including subsections (not part of the JSON).
    pub size: u64,
}

impl DescStruct {
    /// Whether this is the empty `"struct": {}` QEMU 7.2 writes for a NULL element of an array
    /// of pointers to structs (no `vmsd_name`, no fields).
    #[must_use]
    pub fn is_null(&self) -> bool {
        self.vmsd_name.is_empty() && self.fields.is_empty() && self.subsections.is_empty()
    }
}

/// A device entry of the `devices` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescDevice {
    /// idstr.
    pub name: String,
    /// Instance id.
    pub instance_id: u32,
    /// The body.
    pub body: DescBody,
}

/// The body of a device entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescBody {
    /// A vmsd-described section.
    Vmsd(DescStruct),
    /// Anything else, kept verbatim (a legacy non-vmsd section, or a form we do not model).
    Raw(serde_json::Value),
}

/// The whole vmdesc.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vmdesc {
    /// Verbatim `configuration` entry (QEMU ≥ 8.2), if any.
    pub configuration: Option<serde_json::Value>,
    /// `page_size`.
    pub page_size: u64,
    /// FULL sections, in stream order.
    pub devices: Vec<DescDevice>,
    /// vmstate's configuration manifest of the writer
    /// ([`Manifest`](crate::manifest::Manifest) as JSON), under the key `vmstate-manifest`
    /// after `devices`, when the stream was saved with one (a saved file carries it so that a
    /// later load checks it before touching anything). QEMU's tools ignore the key.
    pub manifest: Option<serde_json::Value>,
}

/// The vmdesc key of [`Vmdesc::manifest`].
pub const MANIFEST_KEY: &str = "vmstate-manifest";

struct Frame {
    desc: DescStruct,
    start: u64,
    /// Completed nested struct descriptions waiting for their field entry.
    pending: Vec<DescStruct>,
    /// Bytes written per element of a pointer array of primitives (a NULL element is 1 byte),
    /// waiting for their field entry.
    elem_sizes: Vec<u64>,
}

/// Collects the description while generated save code writes.
#[derive(Default)]
pub struct DescBuilder {
    stack: Vec<Frame>,
    finished: Option<DescStruct>,
}

impl DescBuilder {
    /// An empty builder.
    #[must_use]
    pub fn new() -> Self {
        DescBuilder::default()
    }

    /// A struct (top-level, nested or subsection) starts at byte `pos`.
    pub fn struct_begin(&mut self, vmsd_name: &'static str, version: u32, pos: u64) {
        self.stack.push(Frame {
            desc: DescStruct {
                vmsd_name: Cow::Borrowed(vmsd_name),
                version,
                // Most structs have a handful of fields: skip the smallest growth steps.
                fields: Vec::new(),
                ..DescStruct::default()
            },
            start: pos,
            pending: Vec::new(),
            elem_sizes: Vec::new(),
        });
    }

    /// The innermost struct ends at byte `pos`.
    pub fn struct_end(&mut self, pos: u64) {
        if let Some(mut f) = self.stack.pop() {
            f.desc.size = pos.saturating_sub(f.start);
            match self.stack.last_mut() {
                Some(parent) => parent.pending.push(f.desc),
                None => self.finished = Some(f.desc),
            }
        }
    }

    /// A subsection body starts (after its header) at `pos`.
    pub fn subsection_begin(&mut self, name: &'static str, version: u32, pos: u64) {
        self.struct_begin(name, version, pos);
    }

    /// The innermost subsection ends at `pos`.
    pub fn subsection_end(&mut self, pos: u64) {
        if let Some(mut f) = self.stack.pop() {
            f.desc.size = pos.saturating_sub(f.start);
            if let Some(parent) = self.stack.last_mut() {
                parent.desc.subsections.push(f.desc);
            }
        }
    }

    /// A NULL element of an array of pointers to structs was written (the marker, from `pos` to
    /// `pos + 1`): QEMU 7.2 still opens and closes the element's `"struct"` object, so the entry
    /// gets an empty one (a [`DescStruct::is_null`] description) and size 1.
    pub fn null_struct(&mut self) {
        if let Some(top) = self.stack.last_mut() {
            top.pending.push(DescStruct {
                size: 1,
                ..DescStruct::default()
            });
        }
    }

    /// One element of an array of pointers to primitives took `size` bytes (1 when NULL).
    pub fn elem_size(&mut self, size: u64) {
        if let Some(top) = self.stack.last_mut() {
            top.elem_sizes.push(size);
        }
    }

    /// A field was written from `start` to `end`; `n` is the element count of a variable array
    /// (ignored otherwise).
    pub fn field(&mut self, fs: &FieldSchema, n: u64, start: u64, end: u64) {
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        let pending = std::mem::take(&mut top.pending);
        let sizes = std::mem::take(&mut top.elem_sizes);
        let name = fs.vmdesc_name.clone();
        if matches!(
            &*fs.kind,
            Kind::List { .. } | Kind::Tree { .. } | Kind::Tmp { .. }
        ) {
            top.desc.fields.push(DescField {
                name,
                array: None,
                ty: Cow::Borrowed(fs.kind.vmdesc_type()),
                strukt: None,
                size: end.saturating_sub(start),
                elems: pending,
            });
            return;
        }
        // A declared type (a device-level codec such as `pci config`): one entry of the whole
        // field, as QEMU writes a `VMS_SINGLE` field with its own `VMStateInfo`.
        let declared = match &*fs.kind {
            Kind::Custom { vmdesc_type, .. } => Some(vmdesc_type),
            _ => fs.vmdesc_type.as_ref(),
        };
        if let Some(t) = declared {
            top.desc.fields.push(DescField {
                name,
                array: None,
                ty: t.clone(),
                strukt: None,
                size: end.saturating_sub(start),
                elems: Vec::new(),
            });
            return;
        }
        let (elem, is_array) = match &*fs.kind {
            Kind::Array { elem, .. } | Kind::VArray { elem, .. } => (innermost(elem), true),
            k => (k, false),
        };
        let ty: Cow<'static, str> = Cow::Borrowed(if fs.le {
            "int32 le"
        } else if fs.equal {
            fs.kind.vmdesc_equal_type()
        } else {
            elem.vmdesc_type()
        });
        if !is_array {
            let strukt = pending.into_iter().next().map(Box::new);
            top.desc.fields.push(DescField {
                name,
                array: None,
                ty,
                strukt,
                size: end.saturating_sub(start),
                elems: Vec::new(),
            });
            return;
        }
        // Element count: fixed arrays from the kind (2D arrays flattened), variable arrays from
        // the runtime count times the flattened inner length.
        let n = match &*fs.kind {
            Kind::Array { .. } => flat_len(&fs.kind),
            Kind::VArray { elem, .. } => n.saturating_mul(flat_len(elem)),
            _ => n,
        };
        if n == 0 {
            return;
        }
        let compress = fs.gate.is_none() && elem.compressible();
        if compress || n == 1 {
            // QEMU writes the bytes of element 0 (1 for a NULL pointer).
            let size = sizes.first().copied().unwrap_or_else(|| {
                pending
                    .first()
                    .map_or_else(|| elem.fixed_size().unwrap_or(0), |d| d.size)
            });
            let strukt = pending.into_iter().next().map(Box::new);
            top.desc.fields.push(DescField {
                name,
                array: (n > 1).then_some(DescArray::Len(n)),
                ty,
                strukt,
                size,
                elems: Vec::new(),
            });
        } else {
            // One entry per element, each with its nested struct (in order) when there is one.
            let n = usize::try_from(n).unwrap_or(0);
            top.desc.fields.reserve(n.min(1 << 16));
            let fixed = elem.fixed_size().unwrap_or(0);
            let mut structs = pending.into_iter();
            for i in 0..n {
                let strukt = structs.next();
                top.desc.fields.push(DescField {
                    name: name.clone(),
                    array: Some(DescArray::Index(i as u64)),
                    ty: ty.clone(),
                    size: sizes
                        .get(i)
                        .copied()
                        .unwrap_or_else(|| strukt.as_ref().map_or(fixed, |d| d.size)),
                    elems: Vec::new(),
                    strukt: strukt.map(Box::new),
                });
            }
        }
    }

    /// Takes the finished top-level description.
    pub fn finish(&mut self) -> Option<DescStruct> {
        self.stack.clear();
        self.finished.take()
    }
}

fn flat_len(k: &Kind) -> u64 {
    match k {
        Kind::Array { elem, len } => u64::from(*len).saturating_mul(flat_len(elem)),
        _ => 1,
    }
}

/// Arrays of arrays are flattened, as QEMU's 2D arrays are.
fn innermost(k: &Kind) -> &Kind {
    match k {
        Kind::Array { elem, .. } | Kind::VArray { elem, .. } | Kind::Pointer { elem } => {
            innermost(elem)
        }
        k => k,
    }
}

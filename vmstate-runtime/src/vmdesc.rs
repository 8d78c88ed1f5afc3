//! The vmdesc JSON that follows EOF in a QEMU stream ("for analysis only").
//!
//! - [`DescStruct`]/[`DescField`] are the in-memory tree.
//! - [`DescBuilder`] is fed by the generated save code while it writes, so the description
//!   mirrors the bytes exactly (sizes include nested subsections; only subsections actually sent
//!   are listed; arrays are compressed with `array_len` where QEMU compresses them).
//! - [`write_json`] prints the tree the way QEMU's JSON writer does (`", "` and `": "`
//!   separators, no trailing newline).
//! - [`parse_vmdesc`] reads a vmdesc back (for generic decoding of unknown sections).

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::error::{Error, ErrorKind, Result};
use crate::schema::{FieldSchema, Kind};

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
}

struct Frame {
    desc: DescStruct,
    start: u64,
    /// Completed nested struct descriptions waiting for their field entry.
    pending: Vec<DescStruct>,
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
                ..DescStruct::default()
            },
            start: pos,
            pending: Vec::new(),
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

    /// A field was written from `start` to `end`; `n` is the element count of a variable array
    /// (ignored otherwise).
    pub fn field(&mut self, fs: &FieldSchema, n: u64, start: u64, end: u64) {
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        let pending = std::mem::take(&mut top.pending);
        let name = fs.vmdesc_name.clone();
        let (elem, is_array) = match &*fs.kind {
            Kind::Array { elem, .. } | Kind::VArray { elem, .. } => (innermost(elem), true),
            k => (k, false),
        };
        let ty: Cow<'static, str> = Cow::Borrowed(if fs.equal {
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
        let elem_size = |i: usize| -> u64 {
            pending
                .get(i)
                .map_or_else(|| elem.fixed_size().unwrap_or(0), |d| d.size)
        };
        let compress = fs.gate.is_none() && elem.compressible();
        if compress || n == 1 {
            let size = elem_size(0);
            let strukt = pending.into_iter().next().map(Box::new);
            top.desc.fields.push(DescField {
                name,
                array: (n > 1).then_some(DescArray::Len(n)),
                ty,
                strukt,
                size,
            });
        } else {
            let sizes: Vec<u64> = (0..usize::try_from(n).unwrap_or(0))
                .map(elem_size)
                .collect();
            let mut structs = pending.into_iter();
            for (i, size) in sizes.into_iter().enumerate() {
                top.desc.fields.push(DescField {
                    name: name.clone(),
                    array: Some(DescArray::Index(i as u64)),
                    ty: ty.clone(),
                    strukt: structs.next().map(Box::new),
                    size,
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
        Kind::Array { elem, .. } | Kind::VArray { elem, .. } => innermost(elem),
        k => k,
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_struct_members(out: &mut String, d: &DescStruct) {
    out.push_str("\"vmsd_name\": ");
    json_str(out, &d.vmsd_name);
    let _ = write!(out, ", \"version\": {}, \"fields\": [", d.version);
    for (i, f) in d.fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"name\": ");
        json_str(out, &f.name);
        match f.array {
            Some(DescArray::Len(n)) => {
                let _ = write!(out, ", \"array_len\": {n}");
            }
            Some(DescArray::Index(n)) => {
                let _ = write!(out, ", \"index\": {n}");
            }
            None => {}
        }
        out.push_str(", \"type\": ");
        json_str(out, &f.ty);
        if let Some(s) = &f.strukt {
            out.push_str(", \"struct\": {");
            write_struct_members(out, s);
            out.push('}');
        }
        let _ = write!(out, ", \"size\": {}}}", f.size);
    }
    out.push(']');
    if !d.subsections.is_empty() {
        out.push_str(", \"subsections\": [");
        for (i, s) in d.subsections.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('{');
            write_struct_members(out, s);
            out.push('}');
        }
        out.push(']');
    }
}

/// Writes a JSON value with QEMU's separators (`", "`, `": "`).
pub fn write_value_qemu(out: &mut String, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_str(out, k);
                out.push_str(": ");
                write_value_qemu(out, v);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value_qemu(out, v);
            }
            out.push(']');
        }
        serde_json::Value::String(s) => json_str(out, s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// One device entry as QEMU writes it.
pub fn write_device(out: &mut String, d: &DescDevice) {
    match &d.body {
        DescBody::Vmsd(s) => {
            out.push_str("{\"name\": ");
            json_str(out, &d.name);
            let _ = write!(out, ", \"instance_id\": {}, ", d.instance_id);
            write_struct_members(out, s);
            out.push('}');
        }
        DescBody::Raw(v) => write_value_qemu(out, v),
    }
}

/// The whole vmdesc JSON as QEMU writes it.
#[must_use]
pub fn write_json(v: &Vmdesc) -> String {
    let mut out = String::with_capacity(4096);
    out.push('{');
    if let Some(c) = &v.configuration {
        out.push_str("\"configuration\": ");
        write_value_qemu(&mut out, c);
        out.push_str(", ");
    }
    let _ = write!(out, "\"page_size\": {}, \"devices\": [", v.page_size);
    for (i, d) in v.devices.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_device(&mut out, d);
    }
    out.push_str("]}");
    out
}

fn bad(msg: impl Into<String>) -> Error {
    Error::without_offset(ErrorKind::BadVmdesc {
        message: msg.into(),
    })
}

fn parse_struct(v: &serde_json::Value, depth: usize) -> Result<DescStruct> {
    if depth > crate::limits::MAX_VMDESC_DEPTH {
        return Err(bad("nesting too deep"));
    }
    let o = v
        .as_object()
        .ok_or_else(|| bad("vmsd description is not an object"))?;
    let vmsd_name = o
        .get("vmsd_name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("missing `vmsd_name`"))?;
    let version = o
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| bad(format!("`{vmsd_name}`: missing or bad `version`")))?;
    let mut fields = Vec::new();
    if let Some(fs) = o.get("fields") {
        let fs = fs
            .as_array()
            .ok_or_else(|| bad(format!("`{vmsd_name}`: `fields` is not an array")))?;
        for f in fs {
            let fo = f
                .as_object()
                .ok_or_else(|| bad(format!("`{vmsd_name}`: field is not an object")))?;
            let name = fo
                .get("name")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad(format!("`{vmsd_name}`: field without `name`")))?;
            let ty = fo
                .get("type")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad(format!("`{vmsd_name}.{name}`: field without `type`")))?;
            let size = fo
                .get("size")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(format!("`{vmsd_name}.{name}`: field without `size`")))?;
            let array = if let Some(n) = fo.get("array_len").and_then(serde_json::Value::as_u64) {
                Some(DescArray::Len(n))
            } else {
                fo.get("index")
                    .and_then(serde_json::Value::as_u64)
                    .map(DescArray::Index)
            };
            let strukt = match fo.get("struct") {
                Some(s) => Some(Box::new(parse_struct(s, depth + 1)?)),
                None => None,
            };
            fields.push(DescField {
                name: Cow::Owned(name.to_owned()),
                array,
                ty: Cow::Owned(ty.to_owned()),
                strukt,
                size,
            });
        }
    }
    let mut subsections = Vec::new();
    if let Some(ss) = o.get("subsections") {
        let ss = ss
            .as_array()
            .ok_or_else(|| bad(format!("`{vmsd_name}`: `subsections` is not an array")))?;
        for s in ss {
            subsections.push(parse_struct(s, depth + 1)?);
        }
    }
    Ok(DescStruct {
        vmsd_name: Cow::Owned(vmsd_name.to_owned()),
        version,
        fields,
        subsections,
        size: 0,
    })
}

/// Parses a vmdesc JSON document.
///
/// # Errors
/// [`ErrorKind::BadVmdesc`] naming what is malformed.
pub fn parse_vmdesc(json: &[u8]) -> Result<Vmdesc> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| bad("top level is not an object"))?;
    let page_size = o
        .get("page_size")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(4096);
    let configuration = o.get("configuration").cloned();
    let mut devices = Vec::new();
    let ds = o
        .get("devices")
        .and_then(|d| d.as_array())
        .ok_or_else(|| bad("missing `devices` array"))?;
    for d in ds {
        let dobj = d
            .as_object()
            .ok_or_else(|| bad("device is not an object"))?;
        let name = dobj
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("device without `name`"))?
            .to_owned();
        let instance_id = dobj
            .get("instance_id")
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad(format!("device `{name}` without `instance_id`")))?;
        let body = if dobj.contains_key("vmsd_name") {
            DescBody::Vmsd(parse_struct(d, 0)?)
        } else {
            DescBody::Raw(d.clone())
        };
        devices.push(DescDevice {
            name,
            instance_id,
            body,
        });
    }
    Ok(Vmdesc {
        configuration,
        page_size,
        devices,
    })
}

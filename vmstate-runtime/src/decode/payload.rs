//! Decoding one section payload with its vmdesc description: ints by size, `bool`, struct
//! recursion, arrays, raw bytes for unknown types, and exactly the subsections the vmdesc lists.

use std::collections::HashMap;

use super::Value;
use crate::error::{Error, ErrorKind, Result};
use crate::reader::Reader;
use crate::stream;
use crate::vmdesc::{DescArray, DescField, DescStruct};

/// Most values (fields, elements, subsections) one decode produces, a cap on the memory a
/// hostile vmdesc can make the decoder use.
pub const MAX_VALUES: usize = 1 << 20;

pub(super) fn bad(message: String, pos: u64) -> Error {
    Error::new(ErrorKind::BadVmdesc { message }, pos)
}

pub(super) fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub(super) struct Decoder {
    pub(super) values: usize,
}

/// The fields of a struct being decoded, with a name index (a hostile vmdesc may list very many
/// fields; lookups must not be linear).
#[derive(Default)]
struct Fields {
    list: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Fields {
    fn slot(&mut self, name: &str) -> Option<&mut Value> {
        let i = *self.index.get(name)?;
        self.list.get_mut(i).map(|(_, v)| v)
    }

    fn push(&mut self, name: &str, v: Value) {
        self.index.insert(name.to_owned(), self.list.len());
        self.list.push((name.to_owned(), v));
    }
}

impl Decoder {
    fn count(&mut self, pos: u64) -> Result<()> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(bad(
                format!("the vmdesc describes more than {MAX_VALUES} values"),
                pos,
            ));
        }
        Ok(())
    }

    pub(super) fn decode_struct<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        d: &DescStruct,
    ) -> Result<Value> {
        let mut fields = Fields::default();
        for f in &d.fields {
            let name = f.name.as_ref();
            match f.array {
                None => {
                    let v = self
                        .decode_field(r, f)
                        .map_err(|e| e.in_field(name.to_owned()))?;
                    // A repeated name replaces the earlier value in place, as a JSON object would.
                    match fields.slot(name) {
                        Some(slot) => *slot = v,
                        None => fields.push(name, v),
                    }
                }
                Some(DescArray::Len(n)) => {
                    for i in 0..n {
                        self.push_element(r, &mut fields, f, i)?;
                    }
                }
                Some(DescArray::Index(i)) => self.push_element(r, &mut fields, f, i)?,
            }
        }
        let fields = fields.list;
        let mut subsections = Vec::new();
        for s in &d.subsections {
            let pos = r.position();
            let missing = || {
                bad(
                    format!("subsection `{}` not found at offset {pos:#x}", s.vmsd_name),
                    pos,
                )
            };
            if r.read_u8()? != stream::SUBSECTION {
                return Err(missing());
            }
            let name = r.read_counted_str()?;
            if name != s.vmsd_name {
                return Err(missing());
            }
            let _version = r.read_be32()?;
            self.count(pos)?;
            let v = self
                .decode_struct(r, s)
                .map_err(|e| e.in_field(name.clone()))?;
            subsections.push((name, v));
        }
        Ok(Value::Struct {
            fields,
            subsections,
        })
    }

    /// Appends element `index` of array field `f` (the elements must come in order).
    fn push_element<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        fields: &mut Fields,
        f: &DescField,
        index: u64,
    ) -> Result<()> {
        let name = f.name.as_ref();
        let pos = r.position();
        let v = self
            .decode_field(r, f)
            .map_err(|e| e.at_index(usize_of(index)).in_field(name.to_owned()))?;
        let unmatched = |have: usize| {
            bad(
                format!("field `{name}`: array element {index} follows {have} elements"),
                pos,
            )
        };
        match fields.slot(name) {
            Some(Value::Array(items)) => {
                if items.len() as u64 != index {
                    return Err(unmatched(items.len()));
                }
                items.push(v);
            }
            Some(_) => return Err(unmatched(1)),
            None => {
                if index != 0 {
                    return Err(unmatched(0));
                }
                fields.push(name, Value::Array(vec![v]));
            }
        }
        Ok(())
    }

    fn decode_field<R: Reader + ?Sized>(&mut self, r: &mut R, f: &DescField) -> Result<Value> {
        let pos = r.position();
        self.count(pos)?;
        let ty = f.ty.as_ref();
        if ty == "struct" || ty == "vstruct" {
            let Some(s) = &f.strukt else {
                return Err(bad(
                    format!(
                        "field `{}` of type `{ty}` has no `struct` description",
                        f.name
                    ),
                    pos,
                ));
            };
            if s.is_null() {
                // A NULL element of an array of pointers to structs: the marker byte 0x30.
                let b = r.read_u8()?;
                if b != crate::field::NULL_MARKER || f.size != 1 {
                    return Err(bad(
                        format!(
                            "field `{}`: an empty `struct` describes a NULL pointer (one byte 0x30, size 1), found byte {b:#04x} with size {}",
                            f.name, f.size
                        ),
                        pos,
                    ));
                }
                return Ok(Value::Bytes(vec![b]));
            }
            return self.decode_struct(r, s);
        }
        if ty == "qtailq" || ty == "qlist" {
            return self.decode_list(r, f);
        }
        if ty == "gtree" {
            return self.decode_tree(r, f);
        }
        let size = usize::try_from(f.size).map_err(|_| {
            Error::new(
                ErrorKind::LengthTooLarge {
                    len: f.size,
                    limit: usize::MAX as u64,
                },
                pos,
            )
        })?;
        let bytes = r.take(size)?;
        if ty == "bool" {
            let Some(&b) = bytes.first() else {
                return Err(bad(format!("bool field `{}` has size 0", f.name), pos));
            };
            return Ok(Value::Bool(b != 0));
        }
        if let (Some(signed), Ok(size @ (1 | 2 | 4 | 8))) = (int_signedness(ty), u8::try_from(size))
        {
            let value = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            return Ok(Value::Int {
                size,
                signed,
                value,
            });
        }
        Ok(Value::Bytes(bytes.to_vec()))
    }

    /// A QTAILQ / QLIST: `0x01` + element per element description, then `0x00`.
    fn decode_list<R: Reader + ?Sized>(&mut self, r: &mut R, f: &DescField) -> Result<Value> {
        let start = r.position();
        let mut items = Vec::new();
        for (i, d) in f.elems.iter().enumerate() {
            let pos = r.position();
            if r.read_u8()? == 0 {
                return Err(bad(
                    format!(
                        "list `{}` ends after {i} elements, its description lists {}",
                        f.name,
                        f.elems.len()
                    ),
                    pos,
                ));
            }
            self.count(pos)?;
            items.push(self.decode_struct(r, d).map_err(|e| e.at_index(i))?);
        }
        self.end_marker(r, f, start)?;
        Ok(Value::Array(items))
    }

    /// A GTREE: be32 node count, `0x01` + key + value per node, `0x00`. The key is a struct
    /// when the description lists two structs per node, a be64 (direct key) when it lists one.
    fn decode_tree<R: Reader + ?Sized>(&mut self, r: &mut R, f: &DescField) -> Result<Value> {
        let start = r.position();
        let nnodes = r.read_be32()?;
        let n = usize_of(u64::from(nnodes));
        let keyed = match f.elems.len() {
            0 if n == 0 => false,
            e if e == n => false,
            e if Some(e) == n.checked_mul(2) => true,
            e => {
                return Err(bad(
                    format!(
                        "tree `{}` has {nnodes} nodes but its description lists {e} structs",
                        f.name
                    ),
                    start,
                ))
            }
        };
        let per = if keyed { 2 } else { 1 };
        let mut items = Vec::new();
        for i in 0..n {
            let pos = r.position();
            if r.read_u8()? == 0 {
                return Err(bad(
                    format!("tree `{}` ends after {i} of its {nnodes} nodes", f.name),
                    pos,
                ));
            }
            self.count(pos)?;
            let node = (|| {
                let key = if keyed {
                    self.decode_struct(r, &f.elems[i * per])?
                } else {
                    Value::Int {
                        size: 8,
                        signed: false,
                        value: r.read_be64()?,
                    }
                };
                let value = self.decode_struct(r, &f.elems[i * per + per - 1])?;
                Ok::<_, Error>(Value::Struct {
                    fields: vec![("key".to_owned(), key), ("value".to_owned(), value)],
                    subsections: Vec::new(),
                })
            })()
            .map_err(|e| e.at_index(i))?;
            items.push(node);
        }
        self.end_marker(r, f, start)?;
        Ok(Value::Array(items))
    }

    /// The `0x00` that ends a list or tree, and the field's `size` checked against the bytes.
    fn end_marker<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        f: &DescField,
        start: u64,
    ) -> Result<()> {
        let pos = r.position();
        let b = r.read_u8()?;
        if b != 0 {
            return Err(bad(
                format!(
                    "`{}` has more elements than its description lists {} (found {b:#04x} where the end marker 0x00 belongs)",
                    f.name,
                    f.elems.len()
                ),
                pos,
            ));
        }
        let used = r.position() - start;
        if used != f.size {
            return Err(bad(
                format!(
                    "`{}` took {used} bytes, its description says {}",
                    f.name, f.size
                ),
                pos,
            ));
        }
        Ok(())
    }

    /// A legacy (non-vmsd) device entry: its `fields` list decoded as leaves, or `size` raw bytes.
    pub(super) fn decode_raw<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        v: &serde_json::Value,
    ) -> Result<Value> {
        let pos = r.position();
        let fields = v.get("fields").and_then(serde_json::Value::as_array);
        let Some(fs) = fields else {
            let size = v
                .get("size")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    bad(
                        "device entry without `vmsd_name`, `fields` or `size`".into(),
                        pos,
                    )
                })?;
            self.count(pos)?;
            let bytes = r.take(usize_of(size))?;
            return Ok(Value::Bytes(bytes.to_vec()));
        };
        let mut out = Vec::new();
        for f in fs {
            let name = f.get("name").and_then(serde_json::Value::as_str);
            let ty = f.get("type").and_then(serde_json::Value::as_str);
            let size = f.get("size").and_then(serde_json::Value::as_u64);
            let (Some(name), Some(ty), Some(size)) = (name, ty, size) else {
                return Err(bad(
                    "legacy device field without name, type or size".into(),
                    pos,
                ));
            };
            if ty == "struct" || ty == "vstruct" {
                return Err(bad(
                    format!("legacy device field `{name}` is a struct"),
                    pos,
                ));
            }
            let field = DescField {
                name: name.to_owned().into(),
                array: None,
                ty: ty.to_owned().into(),
                strukt: None,
                size,
                elems: Vec::new(),
            };
            let v = self
                .decode_field(r, &field)
                .map_err(|e| e.in_field(name.to_owned()))?;
            out.push((name.to_owned(), v));
        }
        Ok(Value::Struct {
            fields: out,
            subsections: Vec::new(),
        })
    }
}

/// The signedness of an integer codec name, `None` for non-integer types.
fn int_signedness(ty: &str) -> Option<bool> {
    match ty {
        "int8" | "int16" | "int32" | "int64" | "int32 equal" | "int32 le" | "int64 equal" => {
            Some(true)
        }
        "uint8" | "uint16" | "uint32" | "uint64" | "uint8 equal" | "uint16 equal"
        | "uint32 equal" => Some(false),
        _ => None,
    }
}

/// Decodes one vmsd-described payload (a section body) with its vmdesc description.
///
/// # Errors
/// End of input, and [`ErrorKind::BadVmdesc`] when the bytes do not match the description
/// (missing subsection header, wrong subsection name, array elements out of order, too many
/// values).
pub fn decode_payload<R: Reader + ?Sized>(r: &mut R, desc: &DescStruct) -> Result<Value> {
    Decoder { values: 0 }.decode_struct(r, desc)
}

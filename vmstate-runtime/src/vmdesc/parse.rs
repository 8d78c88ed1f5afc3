//! Parsing a vmdesc, bounded by structure and not just by bytes.
//!
//! The JSON is at most [`limits::MAX_VMDESC`] bytes, but a tree of tiny nodes costs far more
//! than its text (an empty object is 2 bytes of JSON and about 70 bytes as a
//! `serde_json::Value`). So the parser never builds a generic tree of the whole document:
//!
//! - It deserializes straight into [`Vmdesc`]/[`DescStruct`]/[`DescField`] with serde seeds,
//!   skipping unknown members without allocating ([`IgnoredAny`]).
//! - Each device entry is first captured as borrowed raw text, then probed for a `vmsd_name` key
//!   and parsed either into a [`DescStruct`] or, for anything else, into a verbatim
//!   [`serde_json::Value`] ([`DescBody::Raw`]), as is the `configuration` entry.
//! - Every allocation it makes (vector slots, boxes, strings, value nodes and map members) is
//!   charged against a budget of three times the JSON's length plus 4 MiB *before* it is made; the
//!   parse stops with [`ErrorKind::BadVmdesc`] as soon as the budget runs out. Vectors grow by
//!   half their length (not doubling), so a dense but genuine QEMU vmdesc (at most about 125
//!   bytes of structure, growth included, per 46-byte field entry) fits the budget at any size up
//!   to the cap.
//! - Struct nesting is capped at [`limits::MAX_VMDESC_DEPTH`], the device list at
//!   [`limits::MAX_SECTIONS`] entries (one per FULL section), and raw values at serde_json's own
//!   recursion limit (128).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::mem::size_of;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::{DescArray, DescBody, DescDevice, DescField, DescStruct, Vmdesc};
use crate::error::{Error, ErrorKind, Result};
use crate::limits;

/// Budget bytes per byte of JSON.
const BUDGET_PER_BYTE: usize = 3;
/// Budget bytes on top (small documents: raw values cost about ten times their text).
const BUDGET_FLOOR: usize = 4 << 20;
/// The charge for one member of a raw JSON object: the entry (hash, key, value) and its index
/// slot, twice over for the map's growth.
const MAP_MEMBER: usize = 2 * (size_of::<Value>() + size_of::<String>() + 2 * size_of::<usize>());

/// Codec names QEMU and this crate write as `type`, shared instead of allocated per field.
const KNOWN_TYPES: &[&str] = &[
    "bool",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "timer",
    "buffer",
    "unused_buffer",
    "struct",
    "vstruct",
    "uint8 equal",
    "uint16 equal",
    "uint32 equal",
    "int32 equal",
    "int64 equal",
    "int32 le",
    "qtailq",
    "qlist",
    "gtree",
];

/// What the parse may still allocate.
struct Budget {
    left: Cell<usize>,
    limit: usize,
}

impl Budget {
    fn charge<E: de::Error>(&self, n: usize) -> std::result::Result<(), E> {
        match self.left.get().checked_sub(n) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "too many entries for its size: holding it would take more than {} bytes \
                 (three times the JSON plus 4 MiB)",
                self.limit
            ))),
        }
    }

    /// Pushes `x`, growing `v` by half its length (charged first) when it is full.
    fn push<T, E: de::Error>(&self, v: &mut Vec<T>, x: T) -> std::result::Result<(), E> {
        if v.len() == v.capacity() {
            let more = (v.len() / 2).max(4);
            self.charge(more.saturating_mul(size_of::<T>()))?;
            v.reserve_exact(more);
        }
        v.push(x);
        Ok(())
    }

    fn string<E: de::Error>(&self, s: &str) -> std::result::Result<String, E> {
        self.charge(s.len())?;
        Ok(s.to_owned())
    }
}

fn bad(message: String) -> Error {
    Error::without_offset(ErrorKind::BadVmdesc { message })
}

/// A serde_json error's message without its ` at line L column C` suffix.
fn message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match s.strip_suffix(&suffix) {
        Some(m) if e.line() > 0 => m.to_owned(),
        _ => s,
    }
}

/// `DeserializeSeed` for the seeds that are their own `Visitor`: each hands itself to the
/// deserializer with its hint (`deserialize_map` for an object, and so on). `StructSeed` checks
/// the nesting depth first and has its own impl.
macro_rules! seed_is_visitor {
    ($($seed:ty => $hint:ident),* $(,)?) => {$(
        impl<'de> DeserializeSeed<'de> for $seed {
            type Value = <Self as Visitor<'de>>::Value;
            fn deserialize<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<Self::Value, D::Error> {
                d.$hint(self)
            }
        }
    )*};
}

seed_is_visitor!(
    KeySeed => deserialize_str,
    PrimSeed<'_> => deserialize_any,
    ValueSeed<'_> => deserialize_any,
    StringSeed<'_> => deserialize_str,
    FieldsSeed<'_, '_> => deserialize_seq,
    FieldSeed<'_, '_> => deserialize_map,
    SubsectionsSeed<'_> => deserialize_seq,
    ProbeSeed => deserialize_map,
    DevicesSeed<'_> => deserialize_seq,
    TopSeed<'_> => deserialize_map,
);

/// The member keys the parser looks at; everything else is skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Configuration,
    Manifest,
    PageSize,
    Devices,
    Name,
    InstanceId,
    VmsdName,
    Version,
    Fields,
    Subsections,
    Type,
    Size,
    ArrayLen,
    Index,
    Struct,
    Other,
}

struct KeySeed;

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Key, E> {
        Ok(match s {
            "configuration" => Key::Configuration,
            super::MANIFEST_KEY => Key::Manifest,
            "page_size" => Key::PageSize,
            "devices" => Key::Devices,
            "name" => Key::Name,
            "instance_id" => Key::InstanceId,
            "vmsd_name" => Key::VmsdName,
            "version" => Key::Version,
            "fields" => Key::Fields,
            "subsections" => Key::Subsections,
            "type" => Key::Type,
            "size" => Key::Size,
            "array_len" => Key::ArrayLen,
            "index" => Key::Index,
            "struct" => Key::Struct,
            _ => Key::Other,
        })
    }
}

/// A scalar member: an unsigned integer, a string, or anything else (skipped).
enum Prim {
    U64(u64),
    Str(Cow<'static, str>),
    Other,
}

impl Prim {
    fn u64(&self) -> Option<u64> {
        match self {
            Prim::U64(n) => Some(*n),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Prim::Str(s) => Some(s),
            _ => None,
        }
    }
    fn into_str(self) -> Option<Cow<'static, str>> {
        match self {
            Prim::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn u64_of(p: Option<&Prim>) -> Option<u64> {
    p.and_then(Prim::u64)
}

fn str_of(p: Option<&Prim>) -> Option<&str> {
    p.and_then(Prim::as_str)
}

#[derive(Clone, Copy)]
struct PrimSeed<'b>(&'b Budget);

impl<'de> Visitor<'de> for PrimSeed<'_> {
    type Value = Prim;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Prim, E> {
        Ok(Prim::U64(n))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Prim, E> {
        Ok(Prim::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Prim, E> {
        Ok(Prim::Other)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Prim, E> {
        Ok(Prim::Other)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Prim, E> {
        Ok(Prim::Other)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Prim, E> {
        if let Some(known) = KNOWN_TYPES.iter().find(|k| **k == s) {
            return Ok(Prim::Str(Cow::Borrowed(known)));
        }
        Ok(Prim::Str(Cow::Owned(self.0.string(s)?)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Prim, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Prim::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Prim, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Prim::Other)
    }
}

/// A verbatim JSON value, every node charged.
#[derive(Clone, Copy)]
struct ValueSeed<'b>(&'b Budget);

/// An object member name, charged.
struct StringSeed<'b>(&'b Budget);

impl Visitor<'_> for StringSeed<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<String, E> {
        self.0.string(s)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(self.0.string(s)?))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element_seed(self)? {
            self.0.push(&mut v, x)?;
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key_seed(StringSeed(self.0))? {
            let v = map.next_value_seed(self)?;
            self.0.charge(MAP_MEMBER)?;
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

/// The members of a vmsd description (and, for a device entry, its `name` and `instance_id`).
#[derive(Default)]
struct StructParts {
    name: Option<Prim>,
    instance_id: Option<Prim>,
    vmsd_name: Option<Prim>,
    version: Option<Prim>,
    fields: Vec<DescField>,
    subsections: Vec<DescStruct>,
}

impl StructParts {
    fn finish<E: de::Error>(self) -> std::result::Result<DescStruct, E> {
        // `{}`: QEMU 7.2's description of a NULL element of an array of pointers to structs.
        if self.vmsd_name.is_none()
            && self.version.is_none()
            && self.fields.is_empty()
            && self.subsections.is_empty()
            && self.name.is_none()
        {
            return Ok(DescStruct::default());
        }
        let vmsd_name = self
            .vmsd_name
            .and_then(Prim::into_str)
            .ok_or_else(|| E::custom("missing `vmsd_name`"))?;
        let version = u64_of(self.version.as_ref())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| E::custom(format_args!("`{vmsd_name}`: missing or bad `version`")))?;
        Ok(DescStruct {
            vmsd_name,
            version,
            fields: self.fields,
            subsections: self.subsections,
            size: 0,
        })
    }
}

/// A vmsd description at nesting `depth`; `device` also keeps `name` and `instance_id`.
#[derive(Clone, Copy)]
struct StructSeed<'b> {
    budget: &'b Budget,
    depth: usize,
    device: bool,
}

impl<'de> DeserializeSeed<'de> for StructSeed<'_> {
    type Value = StructParts;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<StructParts, D::Error> {
        if self.depth > limits::MAX_VMDESC_DEPTH {
            return Err(de::Error::custom(format_args!(
                "nesting too deep (more than {} levels of structs)",
                limits::MAX_VMDESC_DEPTH
            )));
        }
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StructSeed<'_> {
    type Value = StructParts;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a vmsd description object")
    }
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<StructParts, A::Error> {
        let prim = PrimSeed(self.budget);
        let mut p = StructParts::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Name if self.device => p.name = Some(map.next_value_seed(prim)?),
                Key::InstanceId if self.device => p.instance_id = Some(map.next_value_seed(prim)?),
                Key::VmsdName => p.vmsd_name = Some(map.next_value_seed(prim)?),
                Key::Version => p.version = Some(map.next_value_seed(prim)?),
                Key::Fields => {
                    let parent = str_of(p.vmsd_name.as_ref()).unwrap_or("?");
                    p.fields = map.next_value_seed(FieldsSeed {
                        budget: self.budget,
                        depth: self.depth,
                        parent,
                    })?;
                }
                Key::Subsections => {
                    p.subsections = map.next_value_seed(SubsectionsSeed {
                        budget: self.budget,
                        depth: self.depth,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(p)
    }
}

/// The `fields` array of struct `parent` at nesting `depth`.
#[derive(Clone, Copy)]
struct FieldsSeed<'b, 'p> {
    budget: &'b Budget,
    depth: usize,
    parent: &'p str,
}

impl<'de> Visitor<'de> for FieldsSeed<'_, '_> {
    type Value = Vec<DescField>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: a `fields` array", self.parent)
    }
    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(f) = seq.next_element_seed(FieldSeed(self))? {
            self.budget.push(&mut fields, f)?;
        }
        Ok(fields)
    }
}

/// One field entry.
#[derive(Clone, Copy)]
struct FieldSeed<'b, 'p>(FieldsSeed<'b, 'p>);

impl<'de> Visitor<'de> for FieldSeed<'_, '_> {
    type Value = DescField;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: a field object", self.0.parent)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<DescField, A::Error> {
        let FieldsSeed {
            budget,
            depth,
            parent,
        } = self.0;
        let prim = PrimSeed(budget);
        let (mut name, mut ty, mut size, mut array_len, mut index) = (None, None, None, None, None);
        let mut strukt = None;
        // Elements of a list or tree: each starts at a `vmsd_name` member.
        let mut elems: Vec<DescStruct> = Vec::new();
        let mut elem: Option<StructParts> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::VmsdName => {
                    if let Some(done) = elem.take() {
                        budget.push(&mut elems, done.finish()?)?;
                    }
                    elem = Some(StructParts {
                        vmsd_name: Some(map.next_value_seed(prim)?),
                        ..StructParts::default()
                    });
                }
                Key::Version | Key::Fields | Key::Subsections if elem.is_some() => {
                    let Some(p) = elem.as_mut() else {
                        continue;
                    };
                    if depth + 1 > limits::MAX_VMDESC_DEPTH {
                        return Err(de::Error::custom(format_args!(
                            "nesting too deep (more than {} levels of structs)",
                            limits::MAX_VMDESC_DEPTH
                        )));
                    }
                    match key {
                        Key::Version => p.version = Some(map.next_value_seed(prim)?),
                        Key::Fields => {
                            let parent = str_of(p.vmsd_name.as_ref()).unwrap_or("?");
                            p.fields = map.next_value_seed(FieldsSeed {
                                budget,
                                depth: depth + 1,
                                parent,
                            })?;
                        }
                        _ => {
                            p.subsections = map.next_value_seed(SubsectionsSeed {
                                budget,
                                depth: depth + 1,
                            })?;
                        }
                    }
                }
                Key::Name => name = Some(map.next_value_seed(prim)?),
                Key::Type => ty = Some(map.next_value_seed(prim)?),
                Key::Size => size = Some(map.next_value_seed(prim)?),
                Key::ArrayLen => array_len = Some(map.next_value_seed(prim)?),
                Key::Index => index = Some(map.next_value_seed(prim)?),
                Key::Struct => {
                    let s = map
                        .next_value_seed(StructSeed {
                            budget,
                            depth: depth + 1,
                            device: false,
                        })?
                        .finish()?;
                    budget.charge(size_of::<DescStruct>())?;
                    strukt = Some(Box::new(s));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name
            .and_then(Prim::into_str)
            .ok_or_else(|| de::Error::custom(format_args!("`{parent}`: field without `name`")))?;
        let ty = ty.and_then(Prim::into_str).ok_or_else(|| {
            de::Error::custom(format_args!("`{parent}.{name}`: field without `type`"))
        })?;
        let size = u64_of(size.as_ref()).ok_or_else(|| {
            de::Error::custom(format_args!("`{parent}.{name}`: field without `size`"))
        })?;
        let array = match u64_of(array_len.as_ref()) {
            Some(n) => Some(DescArray::Len(n)),
            None => u64_of(index.as_ref()).map(DescArray::Index),
        };
        if let Some(done) = elem.take() {
            budget.push(&mut elems, done.finish()?)?;
        }
        Ok(DescField {
            name,
            array,
            ty,
            strukt,
            size,
            elems,
        })
    }
}

/// The `subsections` array of a struct at nesting `depth`.
#[derive(Clone, Copy)]
struct SubsectionsSeed<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl<'de> Visitor<'de> for SubsectionsSeed<'_> {
    type Value = Vec<DescStruct>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a `subsections` array")
    }
    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let item = StructSeed {
            budget: self.budget,
            depth: self.depth + 1,
            device: false,
        };
        let mut subs = Vec::new();
        while let Some(s) = seq.next_element_seed(item)? {
            self.budget.push(&mut subs, s.finish()?)?;
        }
        Ok(subs)
    }
}

/// Whether a device object has a `vmsd_name` member (values are skipped, not parsed).
struct ProbeSeed;

impl<'de> Visitor<'de> for ProbeSeed {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a device object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            found |= key == Key::VmsdName;
            map.next_value::<IgnoredAny>()?;
        }
        Ok(found)
    }
}

/// Parses one device entry from its raw text.
fn parse_device(text: &str, budget: &Budget) -> serde_json::Result<DescDevice> {
    let vmsd = ProbeSeed.deserialize(&mut serde_json::Deserializer::from_str(text))?;
    let mut de = serde_json::Deserializer::from_str(text);
    if vmsd {
        let mut parts = StructSeed {
            budget,
            depth: 0,
            device: true,
        }
        .deserialize(&mut de)?;
        de.end()?;
        let name = parts
            .name
            .take()
            .and_then(Prim::into_str)
            .ok_or_else(|| de::Error::custom("device without `name`"))?;
        let instance_id = u64_of(parts.instance_id.as_ref())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                de::Error::custom(format_args!("device `{name}` without `instance_id`"))
            })?;
        return Ok(DescDevice {
            name: name.into_owned(),
            instance_id,
            body: DescBody::Vmsd(parts.finish()?),
        });
    }
    let v = ValueSeed(budget).deserialize(&mut de)?;
    de.end()?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| de::Error::custom("device without `name`"))?
        .to_owned();
    let instance_id = v
        .get("instance_id")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| de::Error::custom(format_args!("device `{name}` without `instance_id`")))?;
    Ok(DescDevice {
        name,
        instance_id,
        body: DescBody::Raw(v),
    })
}

#[derive(Clone, Copy)]
struct DevicesSeed<'b>(&'b Budget);

impl<'de> Visitor<'de> for DevicesSeed<'_> {
    type Value = Vec<DescDevice>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a `devices` array")
    }
    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut devices = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if devices.len() >= limits::MAX_SECTIONS {
                return Err(de::Error::custom(format_args!(
                    "more than {} devices (the most sections a stream may have)",
                    limits::MAX_SECTIONS
                )));
            }
            let d = parse_device(raw.get(), self.0).map_err(|e| {
                de::Error::custom(format_args!("device {}: {}", devices.len(), message(&e)))
            })?;
            self.0.push(&mut devices, d)?;
        }
        Ok(devices)
    }
}

#[derive(Clone, Copy)]
struct TopSeed<'b>(&'b Budget);

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Vmdesc;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a vmdesc object at the top level")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Vmdesc, A::Error> {
        let mut configuration = None;
        let mut manifest = None;
        let mut page_size = None;
        let mut devices = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Configuration => configuration = Some(map.next_value_seed(ValueSeed(self.0))?),
                Key::Manifest => manifest = Some(map.next_value_seed(ValueSeed(self.0))?),
                Key::PageSize => page_size = Some(map.next_value_seed(PrimSeed(self.0))?),
                Key::Devices => devices = Some(map.next_value_seed(DevicesSeed(self.0))?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Vmdesc {
            configuration,
            page_size: u64_of(page_size.as_ref()).unwrap_or(4096),
            devices: devices.ok_or_else(|| de::Error::custom("missing `devices` array"))?,
            manifest,
        })
    }
}

/// Parses a vmdesc JSON document.
///
/// Memory use is bounded by the document's length, whatever its shape: see the module docs of
/// `vmdesc/parse.rs` (at most three times the JSON plus 4 MiB of parsed structure; 16 MiB
/// documents of tiny nodes peak below 3.3× their size in `decode_stream`).
///
/// # Errors
/// [`ErrorKind::BadVmdesc`] naming what is malformed (`not JSON: …` for syntax errors, with the
/// line and column), including documents whose structure would take more than the budget to
/// hold, nest structs deeper than [`limits::MAX_VMDESC_DEPTH`] or list more than
/// [`limits::MAX_SECTIONS`] devices.
pub fn parse_vmdesc(json: &[u8]) -> Result<Vmdesc> {
    let limit = json
        .len()
        .saturating_mul(BUDGET_PER_BYTE)
        .saturating_add(BUDGET_FLOOR);
    let budget = Budget {
        left: Cell::new(limit),
        limit,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed = TopSeed(&budget)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match e.classify() {
        serde_json::error::Category::Data => bad(e.to_string()),
        _ => bad(format!("not JSON: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        match parse_vmdesc(json.as_bytes()) {
            Ok(_) => panic!("accepted {json}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn malformed_documents_name_what_is_wrong() {
        assert!(err("[]").contains("expected a vmdesc object"));
        assert!(err("{}").contains("missing `devices` array"));
        assert!(err("{\"devices\": [1]}")
            .contains("device 0: invalid type: integer `1`, expected a device object"));
        assert!(
            err("{\"devices\": [{\"instance_id\": 0, \"vmsd_name\": \"a\", \"version\": 1}]}")
                .contains("device 0: device without `name`")
        );
        assert!(err("{\"devices\": [{\"name\": \"d\", \"instance_id\": 0, \"vmsd_name\": \"a\", \"version\": 1, \"fields\": [{\"name\": \"x\", \"size\": 1}]}]}").contains("`a.x`: field without `type`"));
        assert!(err("{\"devices\": [{\"name\": \"d\", \"instance_id\": 0, \"vmsd_name\": \"a\", \"version\": -1}]}").contains("`a`: missing or bad `version`"));
        assert!(
            err("{\"devices\": [{\"name\": \"d\"}]}").contains("device `d` without `instance_id`")
        );
        assert!(err("{\"devices\": []} x").starts_with("bad vmdesc: not JSON: trailing characters"));
    }

    #[test]
    fn struct_nesting_is_capped() {
        let nest = |n: usize| {
            let open = r#"{"vmsd_name": "s", "version": 1, "fields": [{"name": "f", "type": "struct", "size": 0, "struct": "#;
            let mut j = String::from(
                r#"{"devices": [{"name": "d", "instance_id": 0, "vmsd_name": "d", "version": 1, "fields": [{"name": "f", "type": "struct", "size": 0, "struct": "#,
            );
            for _ in 0..n {
                j.push_str(open);
            }
            j.push_str(r#"{"vmsd_name": "s", "version": 1}"#);
            for _ in 0..n {
                j.push_str("}]}");
            }
            j.push_str("}]}]}");
            j
        };
        parse_vmdesc(nest(limits::MAX_VMDESC_DEPTH - 1).as_bytes()).unwrap();
        assert!(err(&nest(limits::MAX_VMDESC_DEPTH)).contains("nesting too deep"));
    }

    #[test]
    fn raw_devices_and_configuration_are_kept_verbatim() {
        let json = r#"{"configuration": {"a": [1, -2, 1.5, null, true, "x"]}, "page_size": 65536, "devices": [{"name": "slirp", "instance_id": 3, "size": 4, "junk": {"k": [{}]}}]}"#;
        let v = parse_vmdesc(json.as_bytes()).unwrap();
        let whole: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v.configuration.as_ref(), whole.get("configuration"));
        assert_eq!(v.page_size, 65536);
        assert_eq!(
            v.devices[0].body,
            DescBody::Raw(whole["devices"][0].clone())
        );
        assert_eq!(v.devices[0].instance_id, 3);
    }

    #[test]
    fn raw_floats_print_back_to_the_same_number() {
        // Found by the `vmdesc` fuzz target: without serde_json's `float_roundtrip` this integer
        // beyond u64 parses one ULP off, so its printed form parsed to another number.
        let json =
            r#"{"devices": [{"name": "x", "instance_id": 0, "size": 488888888888888881605050}]}"#;
        let v = parse_vmdesc(json.as_bytes()).unwrap();
        let again = parse_vmdesc(super::super::write_json(&v).as_bytes()).unwrap();
        assert_eq!(v, again);
        let exact: f64 = "488888888888888881605050".parse().unwrap();
        let DescBody::Raw(raw) = &v.devices[0].body else {
            panic!("not raw")
        };
        assert_eq!(raw["size"].as_f64(), Some(exact));
    }

    #[test]
    fn the_budget_stops_tiny_nodes() {
        let mut j = String::from(r#"{"devices": [], "configuration": ["#);
        for i in 0..200_000 {
            if i > 0 {
                j.push(',');
            }
            j.push_str("{}");
        }
        j.push_str("]}");
        assert!(err(&j).contains("too many entries for its size"));
    }
}

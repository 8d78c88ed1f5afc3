//! The `-dump-vmstate` model (qemu-wire-format.md §6) and its parser: sections, Descriptions,
//! fields. Parsing never panics; a dump that does not have the shape QEMU writes gives a
//! one-line error naming the dump and where in it the problem is.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::allow;

/// Nested Descriptions deeper than this are rejected (QEMU's deepest are a handful of levels).
const MAX_DEPTH: usize = 64;

/// One `-dump-vmstate` file.
#[derive(Debug)]
pub struct Dump {
    /// `vmschkmachine.Name`.
    pub machine: String,
    /// Every section (device type), in file order.
    pub sections: Vec<Section>,
    index: HashMap<String, usize>,
}

impl Dump {
    /// The section of that name, or of its name in the rename table.
    #[must_use]
    pub fn lookup(&self, key: &str) -> Option<&Section> {
        self.index
            .get(key)
            .or_else(|| allow::renamed_section(key).and_then(|k| self.index.get(k)))
            .map(|&i| &self.sections[i])
    }
}

/// What a section and a Description both have.
#[derive(Debug)]
pub struct Header {
    /// Its keys, in file order.
    pub entries: Vec<String>,
    /// `version_id`.
    pub version: i64,
    /// `minimum_version_id`.
    pub min: Option<i64>,
}

/// A section: one device type.
#[derive(Debug)]
pub struct Section {
    /// The QOM type name (the dump's key).
    pub key: String,
    /// Its keys (`Name`, `version_id`, `Description`, …) and versions.
    pub header: Header,
    /// The top-level Description.
    pub desc: Option<Desc>,
}

/// A `VMStateDescription`.
#[derive(Debug)]
pub struct Desc {
    /// The vmsd name.
    pub name: String,
    /// Its keys (`name`, `Fields`, `Subsections`, …) and versions.
    pub header: Header,
    /// `Fields`, when present.
    pub fields: Option<Vec<Field>>,
    /// `Subsections`, when present.
    pub subsections: Option<Vec<Desc>>,
}

/// One field of a Description.
#[derive(Debug)]
pub struct Field {
    /// `field`.
    pub name: String,
    /// `version_id`.
    pub version: i64,
    /// `field_exists`: the field has a test, which the dump does not describe.
    pub exists: bool,
    /// `size` (of one element).
    pub size: u64,
    /// `num` of a fixed array (dumps from QEMU ≥ 8.1).
    pub num: Option<u64>,
    /// The nested struct's Description (`VMSTATE_STRUCT`).
    pub desc: Option<Desc>,
}

impl Field {
    /// Bytes on the wire: `size` × `num` for a fixed array, else `size`.
    #[must_use]
    pub fn wire_size(&self) -> i128 {
        let n = match self.num {
            Some(n) if n > 0 => n,
            _ => 1,
        };
        i128::from(self.size) * i128::from(n)
    }

    /// Whether it is `VMSTATE_UNUSED` padding.
    #[must_use]
    pub fn is_unused(&self) -> bool {
        self.name == "unused"
    }
}

pub(super) fn parse_dump(v: &Value, which: &str) -> Result<Dump, String> {
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
        header: parse_header(m, "")?,
        desc,
    })
}

fn parse_desc(v: &Value, at: &str, depth: usize) -> Result<Desc, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: Descriptions nested deeper than {MAX_DEPTH}"));
    }
    let m = object(v, at)?;
    let name = string(m, "name", at)?;
    let fields = opt_list(m, "Fields", at, |f, at| parse_field(f, at, depth))?;
    let subsections = opt_list(m, "Subsections", at, |s, at| parse_desc(s, at, depth + 1))?;
    Ok(Desc {
        name,
        header: parse_header(m, at)?,
        fields,
        subsections,
    })
}

/// The keys, `version_id` and `minimum_version_id` of a section or Description.
fn parse_header(m: &Map<String, Value>, at: &str) -> Result<Header, String> {
    Ok(Header {
        entries: m.keys().cloned().collect(),
        version: int(m, "version_id", at)?,
        min: opt_int(m, "minimum_version_id", at)?,
    })
}

/// The list `key` of `m` when present, each element parsed by `parse` at `at.key[i]`.
fn opt_list<T>(
    m: &Map<String, Value>,
    key: &str,
    at: &str,
    parse: impl Fn(&Value, &str) -> Result<T, String>,
) -> Result<Option<Vec<T>>, String> {
    let Some(list) = m.get(key) else {
        return Ok(None);
    };
    let items = array(list, &format!("{at}.{key}"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        out.push(parse(v, &format!("{at}.{key}[{i}]"))?);
    }
    Ok(Some(out))
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

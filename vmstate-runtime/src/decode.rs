//! Generic decoding of a whole stream without knowing its devices, like QEMU's
//! `scripts/analyze-migration.py`.
//!
//! FULL section payloads carry no lengths and no field names; only the vmdesc JSON after EOF
//! says how to split them. [`decode_stream`] therefore
//!
//! 1. locates the vmdesc: the `00 · 06 · be32 N · {…` that ends exactly at the end of the input
//!    (a backwards scan over the last [`limits::MAX_VMDESC`] bytes; unlike the script's "last NUL
//!    byte" heuristic it also finds vmdescs whose length contains `0x7b`);
//! 2. parses forward: header, configuration section, sections, EOF, which must be followed
//!    directly by the vmdesc found in step 1;
//! 3. decodes every FULL section with the next unused vmdesc device entry with the same idstr
//!    and instance id: ints by size (big-endian), `bool`, `struct` recursion, arrays from
//!    `array_len` (compressed) or one entry per `index`, any other type as raw `size` bytes, and
//!    after a struct's fields exactly the subsections its vmdesc lists, each checked to be
//!    `05 · len · name · be32 version` with the listed name;
//! 4. steps RAM sections (`ram`, instance 0, version 4) with [`RamStepper`], using the vmdesc
//!    `page_size`.
//!
//! Footers: QEMU sends them together with the configuration section (machine types ≥ 2.4), so
//! a stream with a configuration section must have them; without one, the first section says
//! whether they are on, and the rest must agree. Streams without a vmdesc (machine types ≤ 2.2)
//! can be decoded with a vmdesc from elsewhere ([`decode_stream_with`]). Every decoded item records its byte ranges, so a tool can copy the
//! sections it does not understand verbatim. [`value_to_json`] and [`stream_to_json`] print the
//! result the way `analyze-migration.py -d state` does.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use crate::error::{Error, ErrorKind, Result, SectionRef};
use crate::limits;
use crate::machine::Framing;
use crate::ram::{RamBlock, RamCounts, RamStepper, RAM_IDSTR, RAM_VERSION};
use crate::reader::{Reader, SliceReader};
use crate::stream::{self, Configuration, SectionHeader};
use crate::vmdesc::{self, DescArray, DescBody, DescField, DescStruct, Vmdesc};

/// Most values (fields, elements, subsections) one decode produces, a cap on the memory a
/// hostile vmdesc can make the decoder use.
pub const MAX_VALUES: usize = 1 << 20;

/// A decoded field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer of `size` bytes (1, 2, 4 or 8), big-endian on the wire.
    Int {
        /// Bytes on the wire.
        size: u8,
        /// Whether the codec is signed (`int*`, and `int64 equal`, which QEMU also uses for
        /// `uint64`).
        signed: bool,
        /// The raw bits, zero-extended.
        value: u64,
    },
    /// A `bool` (any non-zero byte is true).
    Bool(bool),
    /// Raw bytes: buffers, timers, unused bytes and every type the decoder does not know.
    Bytes(Vec<u8>),
    /// A struct (section, nested struct or subsection).
    Struct {
        /// Fields by vmdesc name, in wire order (arrays are one [`Value::Array`] entry).
        fields: Vec<(String, Value)>,
        /// Subsections by name, in wire order.
        subsections: Vec<(String, Value)>,
    },
    /// The elements of an array field.
    Array(Vec<Value>),
}

impl Value {
    /// The numeric value of an [`Value::Int`] (sign-extended when signed).
    #[must_use]
    pub fn int(&self) -> Option<i128> {
        match *self {
            Value::Int {
                size,
                signed,
                value,
            } => Some(if signed {
                i128::from(sign_extend(value, size))
            } else {
                i128::from(value)
            }),
            _ => None,
        }
    }

    /// The field or subsection `name` of a [`Value::Struct`].
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct {
                fields,
                subsections,
            } => fields
                .iter()
                .chain(subsections)
                .find(|(n, _)| n == name)
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

fn sign_extend(value: u64, size: u8) -> i64 {
    let shift = 64 - 8 * u32::from(size.clamp(1, 8));
    // Reinterpreting the bits is the point here.
    #[allow(clippy::cast_possible_wrap)]
    let v = (value << shift) as i64;
    v >> shift
}

/// What kind of item a [`DecodedSection`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// `01`: first chunk of an iterative section.
    Start,
    /// `02`: middle chunk.
    Part,
    /// `03`: last chunk.
    End,
    /// `04`: a whole device section.
    Full,
    /// `08`: a command (no footer; the payload is its data).
    Command {
        /// The be16 command number.
        cmd: u16,
    },
}

/// RAM details of a RAM chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RamInfo {
    /// The blocks announced (START chunk only; empty for PART/END).
    pub blocks: Vec<RamBlock>,
    /// Records in this chunk.
    pub counts: RamCounts,
}

/// One section (or command) of a decoded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSection {
    /// START, PART, END, FULL or a command.
    pub kind: SectionKind,
    /// Section id (0 for commands).
    pub section_id: u32,
    /// idstr (for PART/END: that of their START; empty for commands).
    pub idstr: String,
    /// Instance id (for PART/END: that of their START).
    pub instance_id: u32,
    /// Section version (for PART/END: that of their START).
    pub version: u32,
    /// The payload's bytes within the stream (header and footer excluded).
    pub payload_range: Range<usize>,
    /// From the type byte to the end of the footer.
    pub full_range: Range<usize>,
    /// The decoded payload of a FULL section.
    pub value: Option<Value>,
    /// What a RAM chunk contained.
    pub ram: Option<RamInfo>,
}

/// A decoded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedStream {
    /// The 8-byte header (always `0..8`).
    pub header_range: Range<usize>,
    /// The configuration section and its byte range, when present.
    pub configuration: Option<(Range<usize>, Configuration)>,
    /// The machine type named by the configuration section.
    pub machine: Option<String>,
    /// Whether sections carry footers.
    pub footers: bool,
    /// Sections and commands, in stream order.
    pub sections: Vec<DecodedSection>,
    /// Offset of the EOF byte.
    pub eof_offset: usize,
    /// The vmdesc trailer (`06 · be32 N · JSON`, whole range) and its parsed content.
    pub vmdesc: Option<(Range<usize>, Vmdesc)>,
}

/// Finds the vmdesc trailer that ends exactly at the end of `bytes`: returns the offset of its
/// `06` byte and the range of the JSON. The `06` must follow an EOF byte and the JSON must start
/// with `{`.
#[must_use]
pub fn find_vmdesc(bytes: &[u8]) -> Option<(usize, Range<usize>)> {
    let len = bytes.len();
    let lowest = len
        .saturating_sub(
            usize::try_from(limits::MAX_VMDESC)
                .unwrap_or(usize::MAX)
                .saturating_add(5),
        )
        .max(1);
    let mut p = len.checked_sub(6)?;
    while p >= lowest {
        if bytes.get(p) == Some(&stream::VMDESC)
            && bytes.get(p - 1) == Some(&stream::EOF)
            && bytes.get(p + 5) == Some(&b'{')
        {
            if let Some(n) = bytes.get(p + 1..p + 5) {
                let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]);
                if usize::try_from(n).ok().and_then(|n| n.checked_add(p + 5)) == Some(len) {
                    return Some((p, p + 5..len));
                }
            }
        }
        p -= 1;
    }
    None
}

fn bad(message: String, pos: u64) -> Error {
    Error::new(ErrorKind::BadVmdesc { message }, pos)
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

struct Decoder {
    values: usize,
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

    fn decode_struct(&mut self, r: &mut SliceReader<'_>, d: &DescStruct) -> Result<Value> {
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
    fn push_element(
        &mut self,
        r: &mut SliceReader<'_>,
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

    fn decode_field(&mut self, r: &mut SliceReader<'_>, f: &DescField) -> Result<Value> {
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
            return self.decode_struct(r, s);
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
        let bytes = r.take_slice(size)?;
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

    /// A legacy (non-vmsd) device entry: its `fields` list decoded as leaves, or `size` raw bytes.
    fn decode_raw(&mut self, r: &mut SliceReader<'_>, v: &serde_json::Value) -> Result<Value> {
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
            let bytes = r.take_slice(usize_of(size))?;
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
pub fn decode_payload(r: &mut SliceReader<'_>, desc: &DescStruct) -> Result<Value> {
    Decoder { values: 0 }.decode_struct(r, desc)
}

struct Iter {
    section_id: u32,
    idstr: String,
    instance_id: u32,
    version: u32,
    stepper: RamStepper,
}

fn footer(r: &mut SliceReader<'_>, section_id: u32, footers: &mut Option<bool>) -> Result<()> {
    let on = match *footers {
        Some(on) => on,
        None => {
            let on = r.peek(1)? == Some(&[stream::FOOTER][..]);
            *footers = Some(on);
            on
        }
    };
    let framing = Framing {
        configuration: false,
        footers: on,
        vmdesc: false,
    };
    stream::expect_footer(r, section_id, &framing)
}

/// Decodes a whole stream without knowing its devices (see the module docs).
///
/// # Errors
/// Framing errors as in [`Registry::load`](crate::registry::Registry::load);
/// [`ErrorKind::MissingVmdesc`] at the first FULL section when there is no vmdesc;
/// [`ErrorKind::BadVmdesc`] when the vmdesc is malformed, does not describe a section or does not
/// match its bytes; [`ErrorKind::UnknownSection`] for iterative sections other than RAM; RAM
/// errors; [`ErrorKind::TrailingBytes`]. Errors inside a section name it.
pub fn decode_stream(bytes: &[u8]) -> Result<DecodedStream> {
    decode_stream_with(bytes, None)
}

/// [`decode_stream`] with a vmdesc from elsewhere for streams that lack one (QEMU writes none on
/// machine types up to 2.2; the vmdesc of a stream of the same devices on a newer machine type
/// describes the same payloads when their versions agree). `external`, when given, decodes the
/// FULL sections; a vmdesc trailer in the stream is still located, checked and reported in
/// [`DecodedStream::vmdesc`].
///
/// # Errors
/// As [`decode_stream`].
pub fn decode_stream_with(bytes: &[u8], external: Option<&Vmdesc>) -> Result<DecodedStream> {
    let located = find_vmdesc(bytes);
    let (limit, mut vmdesc) = match &located {
        Some((start, json)) => {
            let json_bytes = bytes.get(json.clone()).unwrap_or_default();
            let v = vmdesc::parse_vmdesc(json_bytes).map_err(|e| e.at_offset(json.start as u64))?;
            (*start, Some((*start..bytes.len(), v)))
        }
        None => (bytes.len(), None),
    };
    let body = bytes.get(..limit).unwrap_or_default();
    let mut r = SliceReader::new(body);
    stream::read_stream_header(&mut r)?;
    let mut configuration = None;
    if r.peek(1)? == Some(&[stream::CONFIGURATION][..]) {
        r.take(1)?;
        let c = stream::read_configuration_body(&mut r)?;
        configuration = Some((8..usize_of(r.position()), c));
    }
    let machine = configuration.as_ref().map(|(_, c)| c.machine.clone());
    let desc: Option<&Vmdesc> = external.or(vmdesc.as_ref().map(|(_, v)| v));
    let page_size = desc.map_or(4096, |v| v.page_size);
    // (idstr, instance id) -> the unused device entries with that key, in vmdesc order.
    let mut entries: HashMap<(String, u32), VecDeque<usize>> = HashMap::new();
    for (i, d) in desc.iter().flat_map(|v| v.devices.iter()).enumerate() {
        entries
            .entry((d.name.clone(), d.instance_id))
            .or_default()
            .push_back(i);
    }
    // QEMU sends the configuration section and footers together (machine types >= 2.4), so a
    // stream with a configuration section must have footers; otherwise the first section says.
    let mut footers: Option<bool> = configuration.as_ref().map(|_| true);
    let mut iters: Vec<Iter> = Vec::new();
    let mut sections = Vec::new();
    let mut decoder = Decoder { values: 0 };
    let eof_offset;
    loop {
        let start = r.position();
        if sections.len() >= limits::MAX_SECTIONS {
            return Err(Error::new(
                ErrorKind::LengthTooLarge {
                    len: sections.len() as u64 + 1,
                    limit: limits::MAX_SECTIONS as u64,
                },
                start,
            ));
        }
        let header = stream::read_section_header(&mut r)?;
        let sref = |idstr: &str, instance_id: u32, version: u32| SectionRef {
            idstr: idstr.to_owned(),
            instance_id,
            version: Some(version),
        };
        let section = match header {
            SectionHeader::Eof => {
                eof_offset = usize_of(start);
                break;
            }
            SectionHeader::Full {
                section_id,
                idstr,
                instance_id,
                version,
            } => {
                let here = sref(&idstr, instance_id, version);
                let Some(v) = desc else {
                    return Err(Error::new(ErrorKind::MissingVmdesc, start).in_section(here));
                };
                let found = entries
                    .get_mut(&(idstr.clone(), instance_id))
                    .and_then(VecDeque::pop_front)
                    .and_then(|i| v.devices.get(i));
                let Some(device) = found else {
                    return Err(bad(
                        format!("section `{idstr}` instance {instance_id} is not described in the vmdesc"),
                        start,
                    )
                    .in_section(here));
                };
                let payload_start = r.position();
                let value = match &device.body {
                    DescBody::Vmsd(d) => decoder.decode_struct(&mut r, d),
                    DescBody::Raw(j) => decoder.decode_raw(&mut r, j),
                }
                .map_err(|e| e.in_section(here.clone()))?;
                let payload_end = r.position();
                footer(&mut r, section_id, &mut footers).map_err(|e| e.in_section(here))?;
                DecodedSection {
                    kind: SectionKind::Full,
                    section_id,
                    idstr,
                    instance_id,
                    version,
                    payload_range: usize_of(payload_start)..usize_of(payload_end),
                    full_range: usize_of(start)..usize_of(r.position()),
                    value: Some(value),
                    ram: None,
                }
            }
            SectionHeader::Start {
                section_id,
                idstr,
                instance_id,
                version,
            } => {
                let here = sref(&idstr, instance_id, version);
                if idstr != RAM_IDSTR || instance_id != 0 {
                    return Err(Error::new(
                        ErrorKind::UnknownSection { idstr, instance_id },
                        start,
                    )
                    .in_section(here));
                }
                if iters.iter().any(|i| i.section_id == section_id) {
                    return Err(Error::new(
                        ErrorKind::DuplicateSection { idstr, instance_id },
                        start,
                    )
                    .in_section(here));
                }
                crate::private::check_version(version, RAM_VERSION, RAM_VERSION, start)
                    .map_err(|e| e.in_section(here.clone()))?;
                let mut stepper = RamStepper::new(page_size)
                    .map_err(|e| e.at_offset(start).in_section(here.clone()))?;
                let payload_start = r.position();
                let counts = stepper
                    .step_start(&mut r)
                    .map_err(|e| e.in_section(here.clone()))?;
                let payload_end = r.position();
                footer(&mut r, section_id, &mut footers).map_err(|e| e.in_section(here))?;
                let ram = RamInfo {
                    blocks: stepper.blocks().to_vec(),
                    counts,
                };
                iters.push(Iter {
                    section_id,
                    idstr: idstr.clone(),
                    instance_id,
                    version,
                    stepper,
                });
                DecodedSection {
                    kind: SectionKind::Start,
                    section_id,
                    idstr,
                    instance_id,
                    version,
                    payload_range: usize_of(payload_start)..usize_of(payload_end),
                    full_range: usize_of(start)..usize_of(r.position()),
                    value: None,
                    ram: Some(ram),
                }
            }
            SectionHeader::Part { section_id } | SectionHeader::End { section_id } => {
                let kind = if matches!(header, SectionHeader::Part { .. }) {
                    SectionKind::Part
                } else {
                    SectionKind::End
                };
                let Some(it) = iters.iter_mut().find(|i| i.section_id == section_id) else {
                    return Err(Error::new(
                        ErrorKind::UnknownSectionId { section_id },
                        start,
                    ));
                };
                let here = sref(&it.idstr, it.instance_id, it.version);
                let payload_start = r.position();
                let counts = it
                    .stepper
                    .step_part(&mut r)
                    .map_err(|e| e.in_section(here.clone()))?;
                let payload_end = r.position();
                footer(&mut r, section_id, &mut footers).map_err(|e| e.in_section(here))?;
                DecodedSection {
                    kind,
                    section_id,
                    idstr: it.idstr.clone(),
                    instance_id: it.instance_id,
                    version: it.version,
                    payload_range: usize_of(payload_start)..usize_of(payload_end),
                    full_range: usize_of(start)..usize_of(r.position()),
                    value: None,
                    ram: Some(RamInfo {
                        blocks: Vec::new(),
                        counts,
                    }),
                }
            }
            SectionHeader::Command { cmd, len } => {
                let payload_start = r.position();
                r.take(usize::from(len))?;
                DecodedSection {
                    kind: SectionKind::Command { cmd },
                    section_id: 0,
                    idstr: String::new(),
                    instance_id: 0,
                    version: 0,
                    payload_range: usize_of(payload_start)..usize_of(r.position()),
                    full_range: usize_of(start)..usize_of(r.position()),
                    value: None,
                    ram: None,
                }
            }
            SectionHeader::Configuration(_) => {
                return Err(Error::new(
                    ErrorKind::UnexpectedSectionType {
                        found: stream::CONFIGURATION,
                    },
                    start,
                ));
            }
        };
        sections.push(section);
    }
    if located.is_some() {
        let rest = r.remaining().len();
        if rest > 0 {
            return Err(Error::new(
                ErrorKind::TrailingBytes { count: rest as u64 },
                r.position(),
            ));
        }
    } else if let Some(t) = stream::skip_vmdesc_trailer(&mut r)? {
        // A trailer the locator did not accept (its JSON does not start with `{`): parse it.
        let json = bytes
            .get(usize_of(t.json_start)..usize_of(t.json_start + u64::from(t.len)))
            .unwrap_or_default();
        let v = vmdesc::parse_vmdesc(json).map_err(|e| e.at_offset(t.json_start))?;
        vmdesc = Some((usize_of(t.start)..bytes.len(), v));
    }
    Ok(DecodedStream {
        header_range: 0..8,
        configuration,
        machine,
        footers: footers.unwrap_or(false),
        sections,
        eof_offset,
        vmdesc,
    })
}

/// Prints a value the way `analyze-migration.py` does: ints as `"0x%0{2*size}x"` (negative
/// signed values followed by ` (-n)`), bools as JSON booleans, bytes as space-separated hex
/// pairs, structs as objects (fields, then subsections keyed by name), arrays as lists.
#[must_use]
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use std::fmt::Write as _;
    match v {
        Value::Int {
            size,
            signed,
            value,
        } => {
            let width = usize::from(*size) * 2;
            let mut s = format!("0x{value:0width$x}");
            if *signed {
                let n = sign_extend(*value, *size);
                if n < 0 {
                    let _ = write!(s, " ({n})");
                }
            }
            serde_json::Value::String(s)
        }
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Bytes(b) => {
            let mut s = String::with_capacity(b.len() * 3);
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                let _ = write!(s, "{x:02x}");
            }
            serde_json::Value::String(s)
        }
        Value::Struct {
            fields,
            subsections,
        } => {
            let mut m = serde_json::Map::new();
            for (k, v) in fields.iter().chain(subsections) {
                m.insert(k.clone(), value_to_json(v));
            }
            serde_json::Value::Object(m)
        }
        Value::Array(items) => serde_json::Value::Array(items.iter().map(value_to_json).collect()),
    }
}

/// The whole stream as `analyze-migration.py -d state` prints it: one entry per section id,
/// keyed `"<idstr> (<section id>)"`; FULL sections as [`value_to_json`], RAM as
/// `{"section sizes": {block: "0x%016x"}}`.
#[must_use]
pub fn stream_to_json(d: &DecodedStream) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for s in &d.sections {
        let key = format!("{} ({})", s.idstr, s.section_id);
        match s.kind {
            SectionKind::Full => {
                if let Some(v) = &s.value {
                    m.insert(key, value_to_json(v));
                }
            }
            SectionKind::Start => {
                let mut sizes = serde_json::Map::new();
                for b in s.ram.iter().flat_map(|r| &r.blocks) {
                    sizes.insert(
                        b.idstr.clone(),
                        serde_json::Value::String(format!("0x{:016x}", b.used_length)),
                    );
                }
                let mut o = serde_json::Map::new();
                o.insert("section sizes".into(), serde_json::Value::Object(sizes));
                m.insert(key, serde_json::Value::Object(o));
            }
            SectionKind::Part | SectionKind::End | SectionKind::Command { .. } => {}
        }
    }
    serde_json::Value::Object(m)
}

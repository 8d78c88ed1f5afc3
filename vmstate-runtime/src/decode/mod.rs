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
//! 4. steps RAM sections (`ram`, instance 0, version 4) with [`RamSection`], using the vmdesc
//!    `page_size`.
//!
//! Footers: QEMU sends them together with the configuration section (machine types ≥ 2.4), so
//! a stream with a configuration section must have them; without one, the first section says
//! whether they are on, and the rest must agree. Streams without a vmdesc (machine types ≤ 2.2)
//! can be decoded with a vmdesc from elsewhere ([`decode_stream_with`]). Every decoded item records its byte ranges, so a tool can copy the
//! sections it does not understand verbatim. [`value_to_json`] and [`stream_to_json`] print the
//! result the way `analyze-migration.py -d state` does.

mod payload;
mod value;

pub use crate::stream::SectionKind;
pub use payload::{decode_payload, MAX_VALUES};
pub use value::{value_to_json, Value};

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::ram::{RamBlock, RamCounts, RamSection, RAM_IDSTR, RAM_VERSION};
use crate::reader::{ErasedReader, Reader, SliceReader};
use crate::stream::{
    self, Configuration, LoadOptions, SectionHandler, SectionMeta, SectionSpan, StreamLoader,
};
use crate::vmdesc::{self, DescBody, Vmdesc};
use payload::{bad, usize_of, Decoder};

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

/// The decoder's handler of every section but RAM: FULL sections decoded with their vmdesc
/// entry, commands recorded.
struct Sections<'v> {
    desc: Option<&'v Vmdesc>,
    /// (idstr, instance id) -> the unused device entries with that key, in vmdesc order.
    entries: HashMap<(String, u32), VecDeque<usize>>,
    decoder: Decoder,
    pending: Option<Value>,
    sections: Vec<DecodedSection>,
}

impl SectionHandler for Sections<'_> {
    fn load(&mut self, meta: &SectionMeta<'_>, r: &mut dyn ErasedReader) -> Result<()> {
        if meta.kind != SectionKind::Full {
            return Err(meta.unknown());
        }
        let Some(v) = self.desc else {
            return Err(Error::new(ErrorKind::MissingVmdesc, meta.offset));
        };
        let found = self
            .entries
            .get_mut(&(meta.idstr.to_owned(), meta.instance_id))
            .and_then(VecDeque::pop_front)
            .and_then(|i| v.devices.get(i));
        let Some(device) = found else {
            return Err(bad(
                format!(
                    "section `{}` instance {} is not described in the vmdesc",
                    meta.idstr, meta.instance_id
                ),
                meta.offset,
            ));
        };
        self.pending = Some(match &device.body {
            DescBody::Vmsd(d) => self.decoder.decode_struct(r, d)?,
            DescBody::Raw(j) => self.decoder.decode_raw(r, j)?,
        });
        Ok(())
    }

    fn loaded(&mut self, meta: &SectionMeta<'_>, span: &SectionSpan) -> Result<()> {
        self.sections.push(DecodedSection {
            kind: meta.kind,
            section_id: meta.section_id,
            idstr: meta.idstr.to_owned(),
            instance_id: meta.instance_id,
            version: meta.version,
            payload_range: usize_of(span.payload.start)..usize_of(span.payload.end),
            full_range: usize_of(span.start)..usize_of(span.end),
            value: self.pending.take(),
            ram: None,
        });
        Ok(())
    }

    fn command(&mut self, cmd: u16, data: &[u8], offset: u64) -> Result<()> {
        let start = usize_of(offset);
        // `08 · be16 cmd · be16 len` precede the data.
        let payload = start + 5..start + 5 + data.len();
        self.sections.push(DecodedSection {
            kind: SectionKind::Command { cmd },
            section_id: 0,
            idstr: String::new(),
            instance_id: 0,
            version: 0,
            full_range: start..payload.end,
            payload_range: payload,
            value: None,
            ram: None,
        });
        Ok(())
    }
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
    let located = match find_vmdesc(bytes) {
        Some((start, json)) => {
            let json_bytes = bytes.get(json.clone()).unwrap_or_default();
            let v = vmdesc::parse_vmdesc(json_bytes).map_err(|e| e.at_offset(json.start as u64))?;
            Some((start as u64..bytes.len() as u64, v))
        }
        None => None,
    };
    let limit = located
        .as_ref()
        .map_or(bytes.len(), |(r, _)| usize_of(r.start));
    let body = bytes.get(..limit).unwrap_or_default();
    let (mut decoded, trailer) = decode_body(&mut SliceReader::new(body), located, external)?;
    // A trailer the locator did not accept (its JSON does not start with `{`): parse it.
    if let Some(t) = trailer {
        let json = bytes
            .get(usize_of(t.json_start)..usize_of(t.json_start + u64::from(t.len)))
            .unwrap_or_default();
        let v = vmdesc::parse_vmdesc(json).map_err(|e| e.at_offset(t.json_start))?;
        decoded.vmdesc = Some((usize_of(t.start)..bytes.len(), v));
    }
    Ok(decoded)
}

/// How many bytes from the end of a stream [`find_vmdesc`] looks at: a caller that cannot hold
/// the whole stream (a large file) passes the last `VMDESC_TAIL` bytes (or all of them, when
/// fewer) and gets the same answer, with offsets relative to that tail.
pub const VMDESC_TAIL: u64 = limits::MAX_VMDESC + 6;

/// [`decode_stream_with`] over any [`Reader`], for streams too large to hold in memory (RAM
/// page data is stepped over, never kept; memory is bounded by the decoded device sections).
///
/// `located` is the stream's vmdesc trailer as the caller located it with [`find_vmdesc`]
/// (over the last [`VMDESC_TAIL`] bytes is enough) and parsed with
/// [`parse_vmdesc`](vmdesc::parse_vmdesc): its byte range (from the `06` byte to the end of the
/// stream) and content. `r` must then yield the stream's bytes from its first byte up to the
/// trailer's start, and nothing after. Without `located`, `r` yields the whole stream; a trailer
/// after EOF that the locator did not accept is stepped over and not parsed
/// ([`DecodedStream::vmdesc`] is then `None`).
///
/// # Errors
/// As [`decode_stream`], plus I/O errors of the reader.
pub fn decode_reader<R: Reader>(
    r: &mut R,
    located: Option<(Range<u64>, Vmdesc)>,
    external: Option<&Vmdesc>,
) -> Result<DecodedStream> {
    decode_body(r, located, external).map(|(d, _)| d)
}

/// The section loop of the decoder over the stream's bytes before the located trailer (or all of
/// them); also returns a trailer read after EOF when none was located.
fn decode_body<R: Reader>(
    r: &mut R,
    located: Option<(Range<u64>, Vmdesc)>,
    external: Option<&Vmdesc>,
) -> Result<(DecodedStream, Option<stream::VmdescTrailer>)> {
    let vmdesc = located.map(|(range, v)| (usize_of(range.start)..usize_of(range.end), v));
    let located = vmdesc.is_some();
    let desc: Option<&Vmdesc> = external.or(vmdesc.as_ref().map(|(_, v)| v));
    let mut entries: HashMap<(String, u32), VecDeque<usize>> = HashMap::new();
    for (i, d) in desc.iter().flat_map(|v| v.devices.iter()).enumerate() {
        entries
            .entry((d.name.clone(), d.instance_id))
            .or_default()
            .push_back(i);
    }
    let mut ram = RamSection::new(desc.map_or(4096, |v| v.page_size)).recording();
    let mut devices = Sections {
        desc,
        entries,
        decoder: Decoder { values: 0 },
        pending: None,
        sections: Vec::new(),
    };
    let out = StreamLoader::new(LoadOptions::detect())
        .route(RAM_IDSTR, &mut ram)
        .fallback(&mut devices)
        .run(r)?;
    let mut sections = devices.sections;
    let trailer = match (located, out.vmdesc) {
        // The located vmdesc ends the input; a second trailer before it is trailing garbage.
        (true, Some(t)) => {
            return Err(Error::new(
                ErrorKind::TrailingBytes {
                    count: out.end - t.start,
                },
                t.start,
            ))
        }
        (_, t) => t,
    };
    // RAM chunks and the other sections, back in stream order.
    sections.extend(ram.chunks().iter().map(|c| DecodedSection {
        kind: c.kind,
        section_id: c.section_id,
        idstr: RAM_IDSTR.to_owned(),
        instance_id: 0,
        version: RAM_VERSION,
        payload_range: usize_of(c.span.payload.start)..usize_of(c.span.payload.end),
        full_range: usize_of(c.span.start)..usize_of(c.span.end),
        value: None,
        ram: Some(RamInfo {
            blocks: c.blocks.clone(),
            counts: c.counts,
        }),
    }));
    sections.sort_by_key(|s| s.full_range.start);
    let configuration = out
        .configuration
        .map(|(r, c)| (usize_of(r.start)..usize_of(r.end), c));
    let decoded = DecodedStream {
        header_range: 0..8,
        machine: configuration.as_ref().map(|(_, c)| c.machine.clone()),
        configuration,
        footers: out.footers,
        sections,
        eof_offset: usize_of(out.eof_offset),
        vmdesc,
    };
    Ok((decoded, trailer))
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

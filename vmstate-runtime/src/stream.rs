//! QEMU stream framing: the bytes around the device sections.
//!
//! A stream (QEMU file version 3) is laid out like this; every integer is big-endian:
//!
//! | part | bytes | when |
//! |---|---|---|
//! | header | `be32 0x5145564d` (`"QEVM"`) · `be32 3` | always |
//! | configuration | `07` · `be32 len` · machine name · config subsections | [`Framing::configuration`] |
//! | FULL section | `04` · `be32 section_id` · `u8 len` idstr · `be32 instance` · `be32 version` · payload | per device |
//! | START section | `01` · same header as FULL · payload | iterative handlers (RAM) |
//! | PART / END | `02` / `03` · `be32 section_id` · payload | iterative handlers |
//! | footer | `7e` · `be32 section_id` (same id as the header) | after every section if [`Framing::footers`] |
//! | command | `08` · `be16 cmd` · `be16 len` · `len` bytes | QEMU-internal; not produced here |
//! | EOF | `00` | always |
//! | vmdesc | `06` · `be32 N` · N bytes of JSON | [`Framing::vmdesc`] |
//!
//! Configuration subsections (each `05` · `u8 len` name · `be32 version` · body, all version 1):
//!
//! | name | body |
//! |---|---|
//! | `configuration/target-page-bits` | `be32` page bits |
//! | `configuration/capabilities` | `be32 count` · `count` counted strings |
//! | `configuration/uuid` | 16 raw bytes |
//!
//! # The vmdesc length and `analyze-migration.py`
//!
//! QEMU's `scripts/analyze-migration.py` finds the vmdesc with a heuristic instead of parsing:
//! it takes the **last** `0x00` byte of the file, then the first `{` after it, checks that the byte
//! five positions before that `{` is `0x06` and reads the `be32` length in between. The JSON never
//! contains a NUL, so the last NUL is the EOF byte or a zero byte inside the length. The heuristic
//! therefore fails when a length byte after the last zero length byte (or any length byte, if none
//! is zero) is `0x7b` (`{`), e.g. for N = `0x0001847b`. [`write_vmdesc`] pads the JSON with spaces
//! (legal JSON whitespace, inserted before the final `}`) until the length is safe; see
//! [`vmdesc_len_is_safe`] and [`pad_vmdesc_json`]. [`analyze_locator`] replays the heuristic.

use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::machine::Framing;
use crate::reader::Reader;
use crate::writer::Writer;

/// `QEMU_VM_FILE_MAGIC`: `"QEVM"`.
pub const MAGIC: u32 = 0x5145_564D;
/// `QEMU_VM_FILE_VERSION`: the only file version supported.
pub const FILE_VERSION: u32 = 3;
/// `QEMU_VM_EOF`.
pub const EOF: u8 = 0x00;
/// `QEMU_VM_SECTION_START`: first chunk of an iterative section.
pub const SECTION_START: u8 = 0x01;
/// `QEMU_VM_SECTION_PART`: middle chunk of an iterative section.
pub const SECTION_PART: u8 = 0x02;
/// `QEMU_VM_SECTION_END`: last chunk of an iterative section.
pub const SECTION_END: u8 = 0x03;
/// `QEMU_VM_SECTION_FULL`: a whole device section.
pub const SECTION_FULL: u8 = 0x04;
/// `QEMU_VM_SUBSECTION`.
pub const SUBSECTION: u8 = 0x05;
/// `QEMU_VM_VMDESCRIPTION`: the trailing JSON.
pub const VMDESC: u8 = 0x06;
/// `QEMU_VM_CONFIGURATION`.
pub const CONFIGURATION: u8 = 0x07;
/// `QEMU_VM_COMMAND`.
pub const COMMAND: u8 = 0x08;
/// `QEMU_VM_SECTION_FOOTER`.
pub const FOOTER: u8 = 0x7E;

/// The vmsd name of the configuration section (the prefix of its subsections).
pub const CONFIG_NAME: &str = "configuration";
/// Configuration subsection carrying the target page bits.
pub const CONFIG_PAGE_BITS: &str = "configuration/target-page-bits";
/// Configuration subsection listing the validated capabilities.
pub const CONFIG_CAPABILITIES: &str = "configuration/capabilities";
/// Configuration subsection carrying the VM UUID.
pub const CONFIG_UUID: &str = "configuration/uuid";

/// Longest machine-type name accepted in a configuration section.
pub const MAX_MACHINE_NAME: u32 = 256;
/// Most capabilities accepted in `configuration/capabilities`.
pub const MAX_CAPABILITIES: u32 = 64;

/// How far from the end `analyze-migration.py` looks for the vmdesc (10 MiB).
pub const ANALYZE_WINDOW: usize = 10 << 20;

/// The configuration section: machine type name and the optional configuration subsections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Configuration {
    /// The machine type name, e.g. `pc-i440fx-7.2` (lossily decoded as UTF-8).
    pub machine: String,
    /// `configuration/target-page-bits`, when sent.
    pub target_page_bits: Option<u32>,
    /// `configuration/capabilities`, when sent (`Some(vec![])` = sent with zero entries).
    pub capabilities: Option<Vec<String>>,
    /// `configuration/uuid`, when sent.
    pub uuid: Option<[u8; 16]>,
}

impl Configuration {
    /// A configuration with just the machine name (what QEMU sends on x86 by default).
    #[must_use]
    pub fn new(machine: &str) -> Self {
        Configuration {
            machine: machine.to_owned(),
            ..Configuration::default()
        }
    }
}

/// A section header (or the other one-byte-typed items of the section loop) as read from the
/// stream. Payloads and footers are not consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionHeader {
    /// `01`: first chunk of an iterative section.
    Start {
        /// Section id (ties PART/END and footers to this START).
        section_id: u32,
        /// idstr, e.g. `ram`.
        idstr: String,
        /// Instance id.
        instance_id: u32,
        /// Section version.
        version: u32,
    },
    /// `02`: middle chunk of an iterative section.
    Part {
        /// Section id of the START.
        section_id: u32,
    },
    /// `03`: last chunk of an iterative section.
    End {
        /// Section id of the START.
        section_id: u32,
    },
    /// `04`: a whole device section.
    Full {
        /// Section id.
        section_id: u32,
        /// idstr, e.g. `serial` or `0000:00:01.3/piix4_pm`.
        idstr: String,
        /// Instance id.
        instance_id: u32,
        /// Section version.
        version: u32,
    },
    /// `00`: end of the sections.
    Eof,
    /// `08`: a command; its `len` bytes of data follow and are not consumed.
    Command {
        /// The be16 command number (`MIG_CMD_*`).
        cmd: u16,
        /// Length of the data that follows.
        len: u16,
    },
    /// `07`: the configuration section, read completely (including its subsections).
    Configuration(Configuration),
}

/// Writes the stream header: magic and file version 3.
///
/// # Errors
/// Writer errors.
pub fn write_header<W: Writer + ?Sized>(w: &mut W) -> Result<()> {
    w.write_be32(MAGIC)?;
    w.write_be32(FILE_VERSION)
}

/// Reads and checks the stream header.
///
/// # Errors
/// [`ErrorKind::BadMagic`], [`ErrorKind::UnsupportedFileVersion`] (e.g. the obsolete version 2),
/// end of input.
pub fn read_stream_header<R: Reader + ?Sized>(r: &mut R) -> Result<()> {
    let pos = r.position();
    let magic = r.read_be32()?;
    if magic != MAGIC {
        return Err(Error::new(ErrorKind::BadMagic { found: magic }, pos));
    }
    let pos = r.position();
    let version = r.read_be32()?;
    if version != FILE_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedFileVersion { found: version },
            pos,
        ));
    }
    Ok(())
}

fn write_config_subsection_header<W: Writer + ?Sized>(w: &mut W, name: &str) -> Result<()> {
    w.write_u8(SUBSECTION)?;
    w.write_counted_str(name)?;
    w.write_be32(1)
}

/// Writes the configuration section: `07 · be32 len · name`, then the configuration subsections
/// that are set, in QEMU's order (target page bits, capabilities, uuid).
///
/// # Errors
/// [`ErrorKind::LengthTooLarge`] for a machine name longer than [`MAX_MACHINE_NAME`], too many
/// capabilities or a capability name longer than 255 bytes; writer errors.
pub fn write_configuration<W: Writer + ?Sized>(w: &mut W, config: &Configuration) -> Result<()> {
    let len = config.machine.len() as u64;
    if len > u64::from(MAX_MACHINE_NAME) {
        return Err(Error::new(
            ErrorKind::LengthTooLarge {
                len,
                limit: MAX_MACHINE_NAME.into(),
            },
            w.position(),
        ));
    }
    w.write_u8(CONFIGURATION)?;
    // len <= MAX_MACHINE_NAME, so it fits.
    w.write_be32(u32::try_from(len).unwrap_or(MAX_MACHINE_NAME))?;
    w.write_all(config.machine.as_bytes())?;
    if let Some(bits) = config.target_page_bits {
        write_config_subsection_header(w, CONFIG_PAGE_BITS)?;
        w.write_be32(bits)?;
    }
    if let Some(caps) = &config.capabilities {
        let n = u32::try_from(caps.len())
            .ok()
            .filter(|n| *n <= MAX_CAPABILITIES)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::LengthTooLarge {
                        len: caps.len() as u64,
                        limit: MAX_CAPABILITIES.into(),
                    },
                    w.position(),
                )
            })?;
        write_config_subsection_header(w, CONFIG_CAPABILITIES)?;
        w.write_be32(n)?;
        for c in caps {
            w.write_counted_str(c)?;
        }
    }
    if let Some(uuid) = &config.uuid {
        write_config_subsection_header(w, CONFIG_UUID)?;
        w.write_all(uuid)?;
    }
    Ok(())
}

/// Reads the body of a configuration section (after the `07` byte): name and subsections.
///
/// The subsection loop follows QEMU's rules: it stops at the first byte that is not `05`, or
/// whose name is shorter than `configuration` + 1 or lacks that prefix (those bytes belong to the
/// section loop). A name with the prefix that is not one of the three known subsections is an
/// error, as is a subsection that appears twice.
///
/// # Errors
/// [`ErrorKind::LengthTooLarge`] (name, capability count), [`ErrorKind::UnknownSubsection`],
/// [`ErrorKind::DuplicateSubsection`], [`ErrorKind::VersionTooNew`]/[`ErrorKind::VersionTooOld`]
/// (subsection versions other than 1), end of input.
pub fn read_configuration_body<R: Reader + ?Sized>(r: &mut R) -> Result<Configuration> {
    let pos = r.position();
    let len = r.read_be32()?;
    if len > MAX_MACHINE_NAME {
        return Err(Error::new(
            ErrorKind::LengthTooLarge {
                len: len.into(),
                limit: MAX_MACHINE_NAME.into(),
            },
            pos,
        ));
    }
    // len <= MAX_MACHINE_NAME.
    let name = r.take(usize::try_from(len).unwrap_or(0))?;
    let mut config = Configuration::new(&String::from_utf8_lossy(name));
    loop {
        let pos = r.position();
        let Some(name) = peek_subsection_name(r, CONFIG_NAME)? else {
            break;
        };
        let dup = || Error::new(ErrorKind::DuplicateSubsection { name: name.clone() }, pos);
        match name.as_str() {
            CONFIG_PAGE_BITS | CONFIG_CAPABILITIES | CONFIG_UUID => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::UnknownSubsection { name: name.clone() },
                    pos,
                ))
            }
        }
        // Consume `05 · len · name`.
        r.take(2 + name.len())?;
        let vpos = r.position();
        let version = r.read_be32()?;
        crate::private::check_version(version, 1, 1, vpos).map_err(|e| e.in_field(name.clone()))?;
        match name.as_str() {
            CONFIG_PAGE_BITS => {
                if config.target_page_bits.is_some() {
                    return Err(dup());
                }
                config.target_page_bits = Some(r.read_be32()?);
            }
            CONFIG_CAPABILITIES => {
                if config.capabilities.is_some() {
                    return Err(dup());
                }
                let cpos = r.position();
                let n = r.read_be32()?;
                if n > MAX_CAPABILITIES {
                    return Err(Error::new(
                        ErrorKind::LengthTooLarge {
                            len: n.into(),
                            limit: MAX_CAPABILITIES.into(),
                        },
                        cpos,
                    )
                    .in_field(CONFIG_CAPABILITIES));
                }
                let mut caps = Vec::new();
                for _ in 0..n {
                    caps.push(r.read_counted_str()?);
                }
                config.capabilities = Some(caps);
            }
            _ => {
                if config.uuid.is_some() {
                    return Err(dup());
                }
                config.uuid = Some(r.read_array()?);
            }
        }
    }
    Ok(config)
}

/// Peeks at a subsection header of `parent` without consuming it: the name when the next bytes
/// are `05 · len · name` with `len > parent.len()` and `name` starting with `parent`.
fn peek_subsection_name<R: Reader + ?Sized>(r: &mut R, parent: &str) -> Result<Option<String>> {
    let Some(h) = r.peek(2)? else {
        return Ok(None);
    };
    if h[0] != SUBSECTION {
        return Ok(None);
    }
    let len = usize::from(h[1]);
    if len < parent.len() + 1 {
        return Ok(None);
    }
    let Some(h) = r.peek(2 + len)? else {
        return Ok(None);
    };
    let name = &h[2..];
    if !name.starts_with(parent.as_bytes()) {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(name).into_owned()))
}

/// Writes a START or FULL section header: `type · be32 id · u8 len idstr · be32 instance ·
/// be32 version`.
///
/// # Errors
/// [`ErrorKind::LengthTooLarge`] for an idstr longer than 255 bytes; writer errors.
pub fn write_section_header<W: Writer + ?Sized>(
    w: &mut W,
    section_type: u8,
    section_id: u32,
    idstr: &str,
    instance_id: u32,
    version: u32,
) -> Result<()> {
    w.write_u8(section_type)?;
    w.write_be32(section_id)?;
    w.write_counted_str(idstr)?;
    w.write_be32(instance_id)?;
    w.write_be32(version)
}

/// Writes a FULL section header.
///
/// # Errors
/// As [`write_section_header`].
pub fn write_full_header<W: Writer + ?Sized>(
    w: &mut W,
    section_id: u32,
    idstr: &str,
    instance_id: u32,
    version: u32,
) -> Result<()> {
    write_section_header(w, SECTION_FULL, section_id, idstr, instance_id, version)
}

/// Writes a PART or END header: `type · be32 id`.
///
/// # Errors
/// Writer errors.
pub fn write_chunk_header<W: Writer + ?Sized>(
    w: &mut W,
    section_type: u8,
    section_id: u32,
) -> Result<()> {
    w.write_u8(section_type)?;
    w.write_be32(section_id)
}

/// Writes the section footer `7e · be32 id` when the framing has footers; nothing otherwise.
///
/// # Errors
/// Writer errors.
pub fn write_footer<W: Writer + ?Sized>(
    w: &mut W,
    section_id: u32,
    framing: &Framing,
) -> Result<()> {
    if framing.footers {
        w.write_u8(FOOTER)?;
        w.write_be32(section_id)?;
    }
    Ok(())
}

/// Writes the EOF byte.
///
/// # Errors
/// Writer errors.
pub fn write_eof<W: Writer + ?Sized>(w: &mut W) -> Result<()> {
    w.write_u8(EOF)
}

/// Whether `analyze-migration.py`'s locator finds a vmdesc of length `n`: no `0x7b` byte among
/// the be32 length bytes that follow its last zero byte (all four bytes if none is zero).
#[must_use]
pub fn vmdesc_len_is_safe(n: u32) -> bool {
    let b = n.to_be_bytes();
    let start = b.iter().rposition(|&x| x == 0).map_or(0, |i| i + 1);
    !b[start..].contains(&b'{')
}

/// Pads a vmdesc JSON document with spaces until its length is safe for
/// `analyze-migration.py` ([`vmdesc_len_is_safe`]). The spaces go right before the final `}` of
/// the outer object (after the document if it does not end with `}`); JSON ignores them.
///
/// # Errors
/// [`ErrorKind::LengthTooLarge`] when the document does not fit a be32 length.
pub fn pad_vmdesc_json(json: &str) -> Result<String> {
    let too_large = || {
        Error::without_offset(ErrorKind::LengthTooLarge {
            len: json.len() as u64,
            limit: u32::MAX.into(),
        })
    };
    let len = u32::try_from(json.len()).map_err(|_| too_large())?;
    let mut pad = 0u32;
    while !vmdesc_len_is_safe(len.checked_add(pad).ok_or_else(too_large)?) {
        pad += 1;
    }
    // `pad` is at most a few tens of thousands (the worst case jumps to the next multiple of
    // 0x100 of a byte position), so this cannot overflow usize.
    let pad = usize::try_from(pad).map_err(|_| too_large())?;
    let mut out = String::with_capacity(json.len() + pad);
    match json.strip_suffix('}') {
        Some(body) => {
            out.push_str(body);
            out.extend(std::iter::repeat_n(' ', pad));
            out.push('}');
        }
        None => {
            out.push_str(json);
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    Ok(out)
}

/// Writes the vmdesc trailer `06 · be32 N · JSON`, padding the JSON with [`pad_vmdesc_json`].
/// Returns the length N written.
///
/// # Errors
/// [`ErrorKind::BadVmdesc`] when the JSON contains a NUL byte or does not start with `{` (either
/// would defeat `analyze-migration.py`'s locator); [`ErrorKind::LengthTooLarge`] above
/// [`limits::MAX_VMDESC`]; writer errors.
pub fn write_vmdesc<W: Writer + ?Sized>(w: &mut W, json: &str) -> Result<u32> {
    if json.as_bytes().contains(&0) || !json.starts_with('{') {
        return Err(Error::new(
            ErrorKind::BadVmdesc {
                message: "the vmdesc JSON must start with `{` and contain no NUL byte".into(),
            },
            w.position(),
        ));
    }
    let padded = pad_vmdesc_json(json).map_err(|e| e.at_offset(w.position()))?;
    let n = padded.len() as u64;
    if n > limits::MAX_VMDESC {
        return Err(Error::new(
            ErrorKind::LengthTooLarge {
                len: n,
                limit: limits::MAX_VMDESC,
            },
            w.position(),
        ));
    }
    // n <= MAX_VMDESC < u32::MAX.
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    w.write_u8(VMDESC)?;
    w.write_be32(n)?;
    w.write_all(padded.as_bytes())?;
    Ok(n)
}

/// Replays `analyze-migration.py`'s vmdesc locator on a whole stream: the offset of the JSON's
/// `{` it would find, or `None` where the script reports "No Debug Migration device found".
#[must_use]
pub fn analyze_locator(stream: &[u8]) -> Option<usize> {
    let window = stream.len().saturating_sub(ANALYZE_WINDOW);
    let tail = &stream[window..];
    let nul = tail.iter().rposition(|&b| b == 0)?;
    let brace = nul + tail[nul..].iter().position(|&b| b == b'{')?;
    let at = window + brace;
    let marker = at.checked_sub(5)?;
    (stream.get(marker) == Some(&VMDESC)).then_some(at)
}

/// Writes a command: `08 · be16 cmd · be16 len · data`.
///
/// # Errors
/// [`ErrorKind::LengthTooLarge`] for data longer than 65535 bytes; writer errors.
pub fn write_command<W: Writer + ?Sized>(w: &mut W, cmd: u16, data: &[u8]) -> Result<()> {
    let len = u16::try_from(data.len()).map_err(|_| {
        Error::new(
            ErrorKind::LengthTooLarge {
                len: data.len() as u64,
                limit: u16::MAX.into(),
            },
            w.position(),
        )
    })?;
    w.write_u8(COMMAND)?;
    w.write_be16(cmd)?;
    w.write_be16(len)?;
    w.write_all(data)
}

/// Reads the next item of the section loop: a section header, EOF, a command header or the
/// configuration section.
///
/// # Errors
/// [`ErrorKind::UnexpectedSectionType`] for any other type byte (including `05`, `06` and `7e`
/// in section position); errors of [`read_configuration_body`]; end of input.
pub fn read_section_header<R: Reader + ?Sized>(r: &mut R) -> Result<SectionHeader> {
    let pos = r.position();
    let ty = r.read_u8()?;
    Ok(match ty {
        EOF => SectionHeader::Eof,
        SECTION_START | SECTION_FULL => {
            let section_id = r.read_be32()?;
            let idstr = r.read_counted_str()?;
            let instance_id = r.read_be32()?;
            let version = r.read_be32()?;
            if ty == SECTION_START {
                SectionHeader::Start {
                    section_id,
                    idstr,
                    instance_id,
                    version,
                }
            } else {
                SectionHeader::Full {
                    section_id,
                    idstr,
                    instance_id,
                    version,
                }
            }
        }
        SECTION_PART => SectionHeader::Part {
            section_id: r.read_be32()?,
        },
        SECTION_END => SectionHeader::End {
            section_id: r.read_be32()?,
        },
        COMMAND => SectionHeader::Command {
            cmd: r.read_be16()?,
            len: r.read_be16()?,
        },
        CONFIGURATION => SectionHeader::Configuration(read_configuration_body(r)?),
        found => return Err(Error::new(ErrorKind::UnexpectedSectionType { found }, pos)),
    })
}

/// Reads and checks a section footer (`7e · be32 id`) when the framing has footers.
///
/// # Errors
/// [`ErrorKind::MissingFooter`] when the next byte is not `7e`,
/// [`ErrorKind::FooterMismatch`] when the id differs, end of input.
pub fn expect_footer<R: Reader + ?Sized>(
    r: &mut R,
    section_id: u32,
    framing: &Framing,
) -> Result<()> {
    if !framing.footers {
        return Ok(());
    }
    let pos = r.position();
    let b = r.read_u8()?;
    if b != FOOTER {
        return Err(Error::new(ErrorKind::MissingFooter { found: b }, pos));
    }
    let found = r.read_be32()?;
    if found != section_id {
        return Err(Error::new(
            ErrorKind::FooterMismatch {
                expected: section_id,
                found,
            },
            pos,
        ));
    }
    Ok(())
}

/// Counts (and consumes) the bytes left in `r`, up to [`limits::MAX_SECTION_BYTES`].
///
/// # Errors
/// I/O errors.
pub fn drain_count<R: Reader + ?Sized>(r: &mut R) -> Result<u64> {
    let mut count = 0u64;
    let mut chunk = limits::SKIP_CHUNK;
    while chunk > 0 && count < limits::MAX_SECTION_BYTES {
        if r.peek(chunk)?.is_some() {
            r.take(chunk)?;
            count += chunk as u64;
        } else {
            chunk /= 2;
        }
    }
    Ok(count)
}

/// Where a vmdesc trailer was found: stream offsets of the `06` byte and of the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmdescTrailer {
    /// Offset of the `06` byte.
    pub start: u64,
    /// Offset of the first JSON byte.
    pub json_start: u64,
    /// JSON length.
    pub len: u32,
}

/// Steps over the optional vmdesc trailer after EOF (`06 · be32 N · N bytes`, N ≤
/// [`limits::MAX_VMDESC`]) without allocating, and checks that nothing follows it. QEMU itself
/// only skips the vmdesc; its content is not checked here.
///
/// Returns `None` when the stream ends right after EOF.
///
/// # Errors
/// [`ErrorKind::TrailingBytes`] when the bytes after EOF are not a vmdesc or bytes follow it
/// (counted up to [`limits::MAX_SECTION_BYTES`]); [`ErrorKind::LengthTooLarge`];
/// [`ErrorKind::UnexpectedEof`] when N points past the end; I/O errors.
pub fn skip_vmdesc_trailer<R: Reader + ?Sized>(r: &mut R) -> Result<Option<VmdescTrailer>> {
    let start = r.position();
    let Some(first) = r.peek(1)?.map(|b| b[0]) else {
        return Ok(None);
    };
    if first != VMDESC {
        let count = drain_count(r)?;
        return Err(Error::new(ErrorKind::TrailingBytes { count }, start));
    }
    r.take(1)?;
    let lpos = r.position();
    let len = r.read_be32()?;
    if u64::from(len) > limits::MAX_VMDESC {
        return Err(Error::new(
            ErrorKind::LengthTooLarge {
                len: len.into(),
                limit: limits::MAX_VMDESC,
            },
            lpos,
        ));
    }
    let json_start = r.position();
    r.skip(len.into())
        .map_err(|e| Error::new(e.kind().clone(), start))?;
    let after = r.position();
    if r.peek(1)?.is_some() {
        let count = drain_count(r)?;
        return Err(Error::new(ErrorKind::TrailingBytes { count }, after));
    }
    Ok(Some(VmdescTrailer {
        start,
        json_start,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::SliceReader;

    #[test]
    fn len_safety() {
        assert!(!vmdesc_len_is_safe(0x0001_847b));
        assert!(vmdesc_len_is_safe(0x0001_847c));
        assert!(vmdesc_len_is_safe(0x0001_83ed));
        // 0x7b before the last zero byte is harmless.
        assert!(vmdesc_len_is_safe(0x007b_0000));
        assert!(!vmdesc_len_is_safe(0x017b_0101));
        assert!(!vmdesc_len_is_safe(0x7b));
        assert!(vmdesc_len_is_safe(0x7c));
    }

    #[test]
    fn padding_fixes_0x1847b() {
        // A JSON document of exactly 0x1847b bytes.
        let target = 0x0001_847b_usize;
        let filler = target - r#"{"a": ""}"#.len();
        let json = format!("{{\"a\": \"{}\"}}", "x".repeat(filler));
        assert_eq!(json.len(), target);
        let padded = pad_vmdesc_json(&json).unwrap();
        assert_eq!(padded.len(), 0x0001_847c);
        assert!(padded.ends_with("\" }"));
        assert!(serde_json::from_str::<serde_json::Value>(&padded).is_ok());

        // Whole stream tail: EOF, vmdesc; the unpadded one defeats the locator.
        let mut raw = vec![0u8];
        raw.push(VMDESC);
        raw.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
        raw.extend_from_slice(json.as_bytes());
        assert_eq!(analyze_locator(&raw), None);

        let mut good = vec![0u8];
        let n = write_vmdesc(&mut good, &json).unwrap();
        assert_eq!(n, 0x0001_847c);
        assert_eq!(analyze_locator(&good), Some(6));
    }

    #[test]
    fn padding_is_noop_when_safe() {
        let json = r#"{"page_size": 4096, "devices": []}"#;
        assert_eq!(pad_vmdesc_json(json).unwrap(), json);
        let not_object = "[1]";
        assert_eq!(pad_vmdesc_json(not_object).unwrap(), not_object);
    }

    #[test]
    fn vmdesc_rejects_nul() {
        let mut out = Vec::new();
        let e = write_vmdesc(&mut out, "{\"a\": \"\0\"}").unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::BadVmdesc { .. }));
        assert!(out.is_empty());
    }

    #[test]
    fn configuration_round_trip() {
        let config = Configuration {
            machine: "virt-7.2".into(),
            target_page_bits: Some(12),
            capabilities: Some(vec!["x-ignore-shared".into()]),
            uuid: Some([7; 16]),
        };
        let mut out = Vec::new();
        write_configuration(&mut out, &config).unwrap();
        out.push(EOF);
        let mut r = SliceReader::new(&out);
        assert_eq!(
            read_section_header(&mut r).unwrap(),
            SectionHeader::Configuration(config)
        );
        assert_eq!(read_section_header(&mut r).unwrap(), SectionHeader::Eof);
    }

    #[test]
    fn configuration_unknown_subsection() {
        let mut out = Vec::new();
        write_configuration(&mut out, &Configuration::new("pc")).unwrap();
        out.extend_from_slice(&[SUBSECTION, 17]);
        out.extend_from_slice(b"configuration/foo");
        out.extend_from_slice(&1u32.to_be_bytes());
        let mut r = SliceReader::new(&out);
        let e = read_section_header(&mut r).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::UnknownSubsection {
                name: "configuration/foo".into()
            }
        );
        assert_eq!(e.offset(), Some(7));
    }

    #[test]
    fn configuration_duplicate_and_limits() {
        let mut out = Vec::new();
        let c = Configuration {
            target_page_bits: Some(12),
            ..Configuration::new("pc")
        };
        write_configuration(&mut out, &c).unwrap();
        let dup_at = out.len();
        write_config_subsection_header(&mut out, CONFIG_PAGE_BITS).unwrap();
        out.extend_from_slice(&12u32.to_be_bytes());
        let e = read_section_header(&mut SliceReader::new(&out)).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::DuplicateSubsection { .. }));
        assert_eq!(e.offset(), Some(dup_at as u64));

        let mut big = vec![CONFIGURATION];
        big.extend_from_slice(&0xffff_ffffu32.to_be_bytes());
        let e = read_section_header(&mut SliceReader::new(&big)).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::LengthTooLarge { .. }));
    }

    #[test]
    fn header_and_footer() {
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        write_full_header(&mut out, 22, "serial", 0, 3).unwrap();
        let framing = Framing {
            configuration: true,
            footers: true,
            vmdesc: true,
        };
        write_footer(&mut out, 22, &framing).unwrap();
        assert_eq!(
            out,
            [
                &b"QEVM\0\0\0\x03\x04\0\0\0\x16\x06serial"[..],
                &[0, 0, 0, 0, 0, 0, 0, 3, 0x7e, 0, 0, 0, 0x16]
            ]
            .concat()
        );
        let mut r = SliceReader::new(&out);
        read_stream_header(&mut r).unwrap();
        assert_eq!(
            read_section_header(&mut r).unwrap(),
            SectionHeader::Full {
                section_id: 22,
                idstr: "serial".into(),
                instance_id: 0,
                version: 3
            }
        );
        expect_footer(&mut r.clone(), 22, &framing).unwrap();
        let e = expect_footer(&mut r, 23, &framing).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::FooterMismatch {
                expected: 23,
                found: 22
            }
        );
    }

    #[test]
    fn trailer() {
        let mut s = Vec::new();
        write_vmdesc(&mut s, "{}").unwrap();
        let t = skip_vmdesc_trailer(&mut SliceReader::new(&s))
            .unwrap()
            .unwrap();
        assert_eq!((t.start, t.json_start, t.len), (0, 5, 2));
        s.push(1);
        let e = skip_vmdesc_trailer(&mut SliceReader::new(&s)).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::TrailingBytes { count: 1 });
        assert_eq!(e.offset(), Some(7));
        let e = skip_vmdesc_trailer(&mut SliceReader::new(&s[..6])).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::UnexpectedEof { .. }));
        assert_eq!(e.offset(), Some(0));
        let e = skip_vmdesc_trailer(&mut SliceReader::new(&[1, 2, 3])).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::TrailingBytes { count: 3 });
    }
}

//! Reading the framing: the stream header, section headers, the configuration section,
//! footers and the vmdesc trailer. [`StreamLoader`](super::StreamLoader) is the one loop over
//! these; the functions here read one item each.

use super::*;
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::machine::Framing;
use crate::reader::Reader;

/// Reads and checks the stream header.
///
/// # Errors
/// [`ErrorKind::BadMagic`], [`ErrorKind::UnsupportedFileVersion`] (e.g. the obsolete version 2),
/// end of input.
pub fn read_stream_header<R: Reader + ?Sized>(r: &mut R) -> Result<()> {
    let pos = r.position();
    expect(r.read_be32()?, MAGIC, pos, |found| ErrorKind::BadMagic {
        found,
    })?;
    let pos = r.position();
    expect(r.read_be32()?, FILE_VERSION, pos, |found| {
        ErrorKind::UnsupportedFileVersion { found }
    })
}

/// `kind(found)` at `pos` when a value read from the stream is not the one it must be.
fn expect<T: PartialEq>(found: T, expected: T, pos: u64, kind: fn(T) -> ErrorKind) -> Result<()> {
    if found != expected {
        return Err(Error::new(kind(found), pos));
    }
    Ok(())
}

/// `LengthTooLarge` at `pos` when a length or count read from the stream is above `limit`.
fn check_len(len: u32, limit: u64, pos: u64) -> Result<()> {
    if u64::from(len) > limit {
        return Err(Error::new(
            ErrorKind::LengthTooLarge {
                len: len.into(),
                limit,
            },
            pos,
        ));
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
    check_len(len, MAX_MACHINE_NAME.into(), pos)?;
    // len <= MAX_MACHINE_NAME.
    let name = r.take(usize::try_from(len).unwrap_or(0))?;
    let mut config = Configuration::new(&String::from_utf8_lossy(name));
    loop {
        let pos = r.position();
        let Some(name) = crate::private::peek_subsection_name(r, CONFIG_NAME)? else {
            break;
        };
        let name = String::from_utf8_lossy(name).into_owned();
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
                check_len(n, MAX_CAPABILITIES.into(), cpos)
                    .map_err(|e| e.in_field(CONFIG_CAPABILITIES))?;
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
/// (counted up to [`limits::MAX_SECTION_BYTES`]); errors of [`read_vmdesc_trailer`]; I/O errors.
pub fn skip_vmdesc_trailer<R: Reader + ?Sized>(r: &mut R) -> Result<Option<VmdescTrailer>> {
    let start = r.position();
    let Some(first) = r.peek(1)?.map(|b| b[0]) else {
        return Ok(None);
    };
    if first != VMDESC {
        let count = drain_count(r)?;
        return Err(Error::new(ErrorKind::TrailingBytes { count }, start));
    }
    let trailer = read_vmdesc_trailer(r)?;
    let after = r.position();
    if r.peek(1)?.is_some() {
        let count = drain_count(r)?;
        return Err(Error::new(ErrorKind::TrailingBytes { count }, after));
    }
    Ok(Some(trailer))
}

/// Reads a vmdesc trailer (`06 · be32 N · N bytes`, N ≤ [`limits::MAX_VMDESC`]), skipping the
/// JSON in bounded pieces, and looks no further: on a connection, whatever follows is the
/// caller's.
///
/// # Errors
/// [`ErrorKind::UnexpectedSectionType`] when the next byte is not `06`;
/// [`ErrorKind::LengthTooLarge`]; [`ErrorKind::UnexpectedEof`] (at the trailer's start) when N
/// points past the end; I/O errors.
pub fn read_vmdesc_trailer<R: Reader + ?Sized>(r: &mut R) -> Result<VmdescTrailer> {
    let start = r.position();
    expect(r.read_u8()?, VMDESC, start, |found| {
        ErrorKind::UnexpectedSectionType { found }
    })?;
    let lpos = r.position();
    let len = r.read_be32()?;
    check_len(len, limits::MAX_VMDESC, lpos)?;
    let json_start = r.position();
    r.skip(len.into())
        .map_err(|e| Error::new(e.kind().clone(), start))?;
    Ok(VmdescTrailer {
        start,
        json_start,
        len,
    })
}

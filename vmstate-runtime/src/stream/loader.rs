//! [`StreamLoader`]: the one loop over a stream.
//!
//! It reads the header, the configuration section, every section (FULL, START/PART/END),
//! commands, footers, EOF and the vmdesc trailer, and hands each section's payload to the
//! [`SectionHandler`] registered for its idstr ([`StreamLoader::route`]), or to the fallback
//! handler. It owns everything that is the same for every reader of streams: framing per
//! machine type (or detected), the machine-type check of the configuration section, section ids
//! of iterative sections, footers, limits, and where the stream ends. The registry (device
//! sections), the RAM handlers and the generic decoder are handlers; none of them reads framing.
//!
//! The loader stops right after the vmdesc (or EOF for a framing without one) and leaves the
//! reader there: [`StreamEnd::Stop`] for a live migration, whose switchover messages follow on
//! the same connection; [`StreamEnd::Exhausted`] for a file or buffer, where nothing may follow.

use std::ops::Range;

use super::read::{
    expect_footer, read_configuration_body, read_section_header, read_stream_header,
    read_vmdesc_trailer, skip_vmdesc_trailer, VmdescTrailer,
};
use super::{Configuration, SectionHeader, SectionKind, CONFIGURATION, FOOTER};
use crate::error::{Error, ErrorKind, Result, SectionRef};
use crate::limits;
use crate::machine::{Framing, MachineType};
use crate::reader::{ErasedReader, Reader};

/// One section (or one chunk of an iterative section) as the loader hands it to a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionMeta<'a> {
    /// FULL, START, PART or END.
    pub kind: SectionKind,
    /// The section id (PART/END: that of their START).
    pub section_id: u32,
    /// The idstr (PART/END: that of their START).
    pub idstr: &'a str,
    /// The instance id (PART/END: that of their START).
    pub instance_id: u32,
    /// The section version (PART/END: that of their START).
    pub version: u32,
    /// Stream offset of the section's type byte.
    pub offset: u64,
}

impl SectionMeta<'_> {
    /// [`ErrorKind::UnknownSection`] for this section, at its offset: what a handler answers for
    /// a section it has no device or state for.
    #[must_use]
    pub fn unknown(&self) -> Error {
        Error::new(
            ErrorKind::UnknownSection {
                idstr: self.idstr.to_owned(),
                instance_id: self.instance_id,
            },
            self.offset,
        )
    }

    /// The section, for [`Error::in_section`].
    #[must_use]
    pub fn section_ref(&self) -> SectionRef {
        SectionRef {
            idstr: self.idstr.to_owned(),
            instance_id: self.instance_id,
            version: Some(self.version),
        }
    }
}

/// Where a section lies in the stream, once its footer has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSpan {
    /// Offset of the type byte.
    pub start: u64,
    /// The payload (header and footer excluded).
    pub payload: Range<u64>,
    /// Offset right after the footer (or the payload, without footers).
    pub end: u64,
}

/// What the [`StreamLoader`] hands sections to.
pub trait SectionHandler {
    /// Reads the payload of the section or chunk `meta` (the header has been read; the footer
    /// is read by the loader afterwards). Must read exactly the payload.
    ///
    /// # Errors
    /// Any decode or validation error; the loader adds the section to errors without one.
    fn load(&mut self, meta: &SectionMeta<'_>, r: &mut dyn ErasedReader) -> Result<()>;

    /// Called after the footer of the section `meta` was checked.
    ///
    /// # Errors
    /// Whatever the handler finds wrong once the section is complete.
    fn loaded(&mut self, meta: &SectionMeta<'_>, span: &SectionSpan) -> Result<()> {
        let _ = (meta, span);
        Ok(())
    }

    /// Called once the stream has ended (after EOF and the vmdesc), on every handler that had a
    /// route or is the fallback; a handler rejects an incomplete section here (e.g. an
    /// iterative section without its END chunk).
    ///
    /// # Errors
    /// Whatever the handler finds missing; `end` is the stream offset to report.
    fn finish(&mut self, end: u64) -> Result<()> {
        let _ = end;
        Ok(())
    }

    /// A command (`08 · be16 cmd · be16 len · data`) at `offset`; called on the fallback
    /// handler. QEMU uses commands for postcopy and switchover internals; by default they are
    /// rejected.
    ///
    /// # Errors
    /// [`ErrorKind::UnsupportedCommand`] by default.
    fn command(&mut self, cmd: u16, data: &[u8], offset: u64) -> Result<()> {
        let _ = data;
        Err(Error::new(ErrorKind::UnsupportedCommand { cmd }, offset))
    }
}

/// What may follow the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamEnd {
    /// A file or buffer: an optional vmdesc after EOF, then nothing
    /// ([`ErrorKind::TrailingBytes`] otherwise).
    #[default]
    Exhausted,
    /// A connection: read the vmdesc when the framing has one (nothing is peeked past it) and
    /// stop; the caller reads what follows from the same reader.
    Stop,
}

/// How a [`StreamLoader`] reads a stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions<'m> {
    machine: Option<&'m MachineType>,
    page_size: Option<u64>,
    end: StreamEnd,
}

impl<'m> LoadOptions<'m> {
    /// Any stream: the configuration section and footers are detected (QEMU sends them
    /// together; without a configuration section, the first section says whether footers are
    /// on), the machine type is not checked, capabilities are accepted.
    #[must_use]
    pub fn detect() -> Self {
        LoadOptions::default()
    }

    /// A stream for `machine`: its framing is required, the configuration section must name a
    /// prefix of the machine type's name (QEMU's comparison), and migration capabilities are
    /// rejected (none is supported by this runtime).
    #[must_use]
    pub fn for_machine(machine: &'m MachineType) -> Self {
        LoadOptions {
            machine: Some(machine),
            ..LoadOptions::default()
        }
    }

    /// Checks `configuration/target-page-bits`, when sent, against this page size.
    #[must_use]
    pub fn page_size(mut self, page_size: u64) -> Self {
        self.page_size = Some(page_size);
        self
    }

    /// What may follow the stream (default [`StreamEnd::Exhausted`]).
    #[must_use]
    pub fn end(mut self, end: StreamEnd) -> Self {
        self.end = end;
        self
    }
}

/// What a [`StreamLoader`] read besides the sections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadOutcome {
    /// The configuration section and its byte range, when present.
    pub configuration: Option<(Range<u64>, Configuration)>,
    /// Whether sections carried footers.
    pub footers: bool,
    /// Sections, chunks and commands read.
    pub sections: usize,
    /// Offset of the EOF byte.
    pub eof_offset: u64,
    /// The vmdesc trailer, when one was read.
    pub vmdesc: Option<VmdescTrailer>,
    /// Offset right after the last byte read.
    pub end: u64,
}

struct Iterative {
    section_id: u32,
    idstr: String,
    instance_id: u32,
    version: u32,
    handler: usize,
}

/// The one loop over a stream; see the module docs.
///
/// ```
/// use vmstate_runtime::stream::{LoadOptions, SectionHandler, SectionMeta, StreamLoader, StreamWriter};
/// use vmstate_runtime::{machine::Framing, reader::ErasedReader, Reader, Result, SliceReader};
///
/// // A handler that reads a be32 from every section routed to it.
/// struct Counter(Vec<u32>);
/// impl SectionHandler for Counter {
///     fn load(&mut self, _: &SectionMeta<'_>, r: &mut dyn ErasedReader) -> Result<()> {
///         self.0.push(r.read_be32()?);
///         Ok(())
///     }
/// }
///
/// let framing = Framing { configuration: false, footers: false, vmdesc: false };
/// let mut s = StreamWriter::new(Vec::new(), framing);
/// s.header().unwrap();
/// s.full_header(0, "counter", 0, 1).unwrap();
/// s.payload().extend_from_slice(&7u32.to_be_bytes());
/// s.eof().unwrap();
/// let bytes = s.into_inner();
///
/// let mut counter = Counter(Vec::new());
/// let out = StreamLoader::new(LoadOptions::detect())
///     .route("counter", &mut counter)
///     .run(&mut SliceReader::new(&bytes))
///     .unwrap();
/// assert_eq!(counter.0, [7]);
/// assert_eq!(out.sections, 1);
/// ```
pub struct StreamLoader<'h, 'm> {
    options: LoadOptions<'m>,
    routes: Vec<(&'h str, &'h mut dyn SectionHandler)>,
    fallback: Option<&'h mut dyn SectionHandler>,
}

impl<'h, 'm> StreamLoader<'h, 'm> {
    /// A loader without handlers.
    #[must_use]
    pub fn new(options: LoadOptions<'m>) -> Self {
        StreamLoader {
            options,
            routes: Vec::new(),
            fallback: None,
        }
    }

    /// Hands the sections with this idstr to `handler`.
    #[must_use]
    pub fn route(mut self, idstr: &'h str, handler: &'h mut dyn SectionHandler) -> Self {
        self.routes.push((idstr, handler));
        self
    }

    /// Hands every section without a route, and every command, to `handler`.
    #[must_use]
    pub fn fallback(mut self, handler: &'h mut dyn SectionHandler) -> Self {
        self.fallback = Some(handler);
        self
    }

    /// Reads the whole stream from `r`, handing sections to the handlers; see the module docs.
    ///
    /// # Errors
    /// [`ErrorKind::BadMagic`], [`ErrorKind::UnsupportedFileVersion`],
    /// [`ErrorKind::MissingConfiguration`], [`ErrorKind::MachineTypeMismatch`], configuration
    /// errors, [`ErrorKind::UnknownSection`] (no handler), [`ErrorKind::DuplicateSection`] (a
    /// second START of a section), [`ErrorKind::UnknownSectionId`] (PART/END without START),
    /// [`ErrorKind::MissingFooter`]/[`ErrorKind::FooterMismatch`],
    /// [`ErrorKind::UnexpectedSectionType`], too many sections, vmdesc trailer errors,
    /// [`ErrorKind::TrailingBytes`], end of input, and every handler's errors (with the section
    /// added).
    pub fn run<R: Reader>(mut self, r: &mut R) -> Result<LoadOutcome> {
        read_stream_header(r)?;
        let framing = self.options.machine.map(MachineType::framing);
        let mut out = LoadOutcome::default();
        let start = r.position();
        let has_config = match framing {
            Some(f) => {
                if f.configuration {
                    expect_configuration_byte(r)?;
                }
                f.configuration
            }
            None => r.peek(1)? == Some(&[CONFIGURATION][..]),
        };
        if has_config {
            r.take(1)?;
            let config = read_configuration_body(r)?;
            self.check_configuration(&config, start)?;
            out.configuration = Some((start..r.position(), config));
        }
        // Without a machine type, QEMU's rule: footers come with the configuration section; with
        // neither, the first section says.
        let mut footers = match framing {
            Some(f) => Some(f.footers),
            None => has_config.then_some(true),
        };
        let mut iters: Vec<Iterative> = Vec::new();
        loop {
            let offset = r.position();
            out.sections += 1;
            if out.sections > limits::MAX_SECTIONS {
                return Err(Error::new(
                    ErrorKind::LengthTooLarge {
                        len: out.sections as u64,
                        limit: limits::MAX_SECTIONS as u64,
                    },
                    offset,
                ));
            }
            let header = read_section_header(r)?;
            let kind = match header {
                SectionHeader::Start { .. } => SectionKind::Start,
                _ => SectionKind::Full,
            };
            match header {
                SectionHeader::Eof => {
                    out.sections -= 1;
                    out.eof_offset = offset;
                    break;
                }
                SectionHeader::Full {
                    section_id,
                    idstr,
                    instance_id,
                    version,
                }
                | SectionHeader::Start {
                    section_id,
                    idstr,
                    instance_id,
                    version,
                } => {
                    let meta = SectionMeta {
                        kind,
                        section_id,
                        idstr: &idstr,
                        instance_id,
                        version,
                        offset,
                    };
                    let iterative = kind == SectionKind::Start;
                    if iterative
                        && iters.iter().any(|i| {
                            i.section_id == section_id
                                || (i.idstr == idstr && i.instance_id == instance_id)
                        })
                    {
                        return Err(Error::new(
                            ErrorKind::DuplicateSection {
                                idstr: idstr.clone(),
                                instance_id,
                            },
                            offset,
                        )
                        .in_section(meta.section_ref()));
                    }
                    let h = self.handler_for(&meta)?;
                    self.section(r, h, &meta, &mut footers)?;
                    if iterative {
                        iters.push(Iterative {
                            section_id,
                            idstr,
                            instance_id,
                            version,
                            handler: h,
                        });
                    }
                }
                SectionHeader::Part { section_id } => {
                    self.chunk(
                        r,
                        &iters,
                        SectionKind::Part,
                        section_id,
                        offset,
                        &mut footers,
                    )?;
                }
                SectionHeader::End { section_id } => {
                    self.chunk(
                        r,
                        &iters,
                        SectionKind::End,
                        section_id,
                        offset,
                        &mut footers,
                    )?;
                }
                SectionHeader::Command { cmd, len } => {
                    let data = r.take(usize::from(len))?;
                    match self.fallback.as_mut() {
                        Some(h) => h.command(cmd, data, offset)?,
                        None => {
                            return Err(Error::new(ErrorKind::UnsupportedCommand { cmd }, offset))
                        }
                    }
                }
                SectionHeader::Configuration(_) => {
                    return Err(Error::new(
                        ErrorKind::UnexpectedSectionType {
                            found: CONFIGURATION,
                        },
                        offset,
                    ));
                }
            }
        }
        out.footers = footers.unwrap_or(false);
        out.vmdesc = match self.options.end {
            StreamEnd::Exhausted => skip_vmdesc_trailer(r)?,
            StreamEnd::Stop if framing.is_some_and(|f| f.vmdesc) => Some(read_vmdesc_trailer(r)?),
            StreamEnd::Stop => None,
        };
        out.end = r.position();
        for (_, h) in &mut self.routes {
            h.finish(out.end)?;
        }
        if let Some(h) = self.fallback.as_mut() {
            h.finish(out.end)?;
        }
        Ok(out)
    }

    fn check_configuration(&self, config: &Configuration, pos: u64) -> Result<()> {
        let Some(machine) = self.options.machine else {
            return Ok(());
        };
        // QEMU compares the received name over the received length only (a prefix match).
        if !machine
            .name()
            .as_bytes()
            .starts_with(config.machine.as_bytes())
        {
            return Err(Error::new(
                ErrorKind::MachineTypeMismatch {
                    expected: machine.name().to_owned(),
                    found: config.machine.clone(),
                },
                pos,
            ));
        }
        if let (Some(bits), Some(page_size)) = (config.target_page_bits, self.options.page_size) {
            if 1u64.checked_shl(bits) != Some(page_size) {
                return Err(Error::new(
                    ErrorKind::ValidationFailed {
                        message: format!(
                            "the stream's target page size is 2^{bits}, this machine's is {page_size}"
                        ),
                    },
                    pos,
                ));
            }
        }
        if let Some(cap) = config.capabilities.as_ref().and_then(|c| c.first()) {
            return Err(Error::new(
                ErrorKind::ValidationFailed {
                    message: format!(
                        "the stream was sent with migration capability `{cap}`, which this runtime does not support"
                    ),
                },
                pos,
            ));
        }
        Ok(())
    }

    fn handler_for(&self, meta: &SectionMeta<'_>) -> Result<usize> {
        let found = match self.routes.iter().position(|(name, _)| *name == meta.idstr) {
            Some(i) => Some(i),
            None => self.fallback.as_ref().map(|_| self.routes.len()),
        };
        found.ok_or_else(|| meta.unknown().in_section(meta.section_ref()))
    }

    fn handler(&mut self, i: usize) -> Option<&mut (dyn SectionHandler + 'h)> {
        match self.routes.get_mut(i) {
            Some((_, h)) => Some(&mut **h),
            None => self.fallback.as_deref_mut(),
        }
    }

    /// A PART or END chunk of the iterative section `section_id`.
    fn chunk<R: Reader>(
        &mut self,
        r: &mut R,
        iters: &[Iterative],
        kind: SectionKind,
        section_id: u32,
        offset: u64,
        footers: &mut Option<bool>,
    ) -> Result<()> {
        let Some(it) = iters.iter().find(|i| i.section_id == section_id) else {
            return Err(Error::new(
                ErrorKind::UnknownSectionId { section_id },
                offset,
            ));
        };
        let meta = SectionMeta {
            kind,
            section_id,
            idstr: &it.idstr,
            instance_id: it.instance_id,
            version: it.version,
            offset,
        };
        self.section(r, it.handler, &meta, footers)
    }

    /// Hands one section's payload to handler `h`, then reads its footer.
    fn section<R: Reader>(
        &mut self,
        r: &mut R,
        h: usize,
        meta: &SectionMeta<'_>,
        footers: &mut Option<bool>,
    ) -> Result<()> {
        let in_section = |e: Error| e.in_section(meta.section_ref());
        let Some(handler) = self.handler(h) else {
            return Err(in_section(meta.unknown()));
        };
        let payload_start = r.position();
        handler.load(meta, r).map_err(in_section)?;
        let payload_end = r.position();
        let on = match *footers {
            Some(on) => on,
            None => {
                let on = r.peek(1)? == Some(&[FOOTER][..]);
                *footers = Some(on);
                on
            }
        };
        let framing = Framing {
            configuration: false,
            footers: on,
            vmdesc: false,
        };
        expect_footer(r, meta.section_id, &framing).map_err(in_section)?;
        let span = SectionSpan {
            start: meta.offset,
            payload: payload_start..payload_end,
            end: r.position(),
        };
        handler.loaded(meta, &span).map_err(in_section)
    }
}

/// The configuration section must come first; its absence is [`ErrorKind::MissingConfiguration`].
fn expect_configuration_byte<R: Reader>(r: &mut R) -> Result<()> {
    let pos = r.position();
    match r.peek(1)? {
        Some([CONFIGURATION]) => Ok(()),
        Some(b) => Err(Error::new(
            ErrorKind::MissingConfiguration { found: b[0] },
            pos,
        )),
        None => Err(Error::new(
            ErrorKind::UnexpectedEof {
                needed: 1,
                available: 0,
            },
            pos,
        )),
    }
}

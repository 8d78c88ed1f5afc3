//! A stepper over QEMU's RAM section (idstr `ram`, instance 0, version 4).
//!
//! This does not restore guest memory; it reads (and validates) the RAM chunks of a stream so
//! that the device sections around them can be loaded or decoded, and hands every page to an
//! optional callback. A caller that wants to copy the chunks verbatim copies the byte range
//! between the reader positions before and after a step.
//!
//! Every record starts with a be64 whose bits below the target page size are flags and whose
//! upper bits are a page offset (or, for `MEM_SIZE`, the total RAM size):
//!
//! | flag | value | body |
//! |---|---|---|
//! | [`FLAG_ZERO`] | 0x02 | block idstr unless `CONTINUE`, then one fill byte |
//! | [`FLAG_MEM_SIZE`] | 0x04 | START only: per block `u8 len` idstr · `be64 used_length`, until the lengths add up to the total |
//! | [`FLAG_PAGE`] | 0x08 | block idstr unless `CONTINUE`, then one page of raw bytes |
//! | [`FLAG_EOS`] | 0x10 | none; ends the chunk |
//! | [`FLAG_CONTINUE`] | 0x20 | modifier: same block as the previous record |
//! | [`FLAG_MULTIFD_FLUSH`] | 0x200 | none; stepped over |
//! | `FULL` 0x01, [`FLAG_XBZRLE`] 0x40, [`FLAG_HOOK`] 0x80, [`FLAG_COMPRESS_PAGE`] 0x100 | | rejected ([`ErrorKind::UnsupportedRamFlags`]) |
//!
//! Hostile-input rules (CVE-2014-7840 class): every page must lie inside a block announced in the
//! START chunk (`offset + page_size <= used_length`, overflow-checked); unknown block names,
//! `CONTINUE` without a previous block and `MEM_SIZE` outside START are errors; block lengths
//! must add up to the announced total; the number of blocks is capped by [`MAX_RAM_BLOCKS`]; page
//! data is skipped or borrowed, never allocated by length.
//!
//! Not supported: the per-block page size sent with postcopy-ram, and mapped-ram headers. The
//! `x-ignore-shared` block address is supported with [`RamStepper::with_ignore_shared`].

use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::reader::{ErasedReader, Reader};
use crate::stream::{SectionHandler, SectionKind, SectionMeta, SectionSpan};

/// idstr of the RAM section.
pub const RAM_IDSTR: &str = "ram";
/// The only RAM section version supported.
pub const RAM_VERSION: u32 = 4;

/// Obsolete "whole page" flag.
pub const FLAG_FULL: u64 = 0x01;
/// A page filled with one byte (QEMU sends 0).
pub const FLAG_ZERO: u64 = 0x02;
/// The block list (START only).
pub const FLAG_MEM_SIZE: u64 = 0x04;
/// A raw page.
pub const FLAG_PAGE: u64 = 0x08;
/// End of the chunk.
pub const FLAG_EOS: u64 = 0x10;
/// Same block as the previous record.
pub const FLAG_CONTINUE: u64 = 0x20;
/// XBZRLE delta page.
pub const FLAG_XBZRLE: u64 = 0x40;
/// RDMA hook.
pub const FLAG_HOOK: u64 = 0x80;
/// zlib-compressed page (removed in QEMU 9).
pub const FLAG_COMPRESS_PAGE: u64 = 0x100;
/// multifd sync marker.
pub const FLAG_MULTIFD_FLUSH: u64 = 0x200;

/// Most RAM blocks accepted in a START chunk.
pub const MAX_RAM_BLOCKS: usize = 4096;
/// Smallest target page size accepted (the flags need 10 bits).
pub const MIN_PAGE_SIZE: u64 = 1024;
/// Largest target page size accepted.
pub const MAX_PAGE_SIZE: u64 = 64 * 1024;

/// A RAM block announced in the START chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamBlock {
    /// Block idstr, e.g. `pc.ram` or `/rom@etc/acpi/tables`.
    pub idstr: String,
    /// Used length in bytes.
    pub used_length: u64,
}

/// The content of one page record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageData<'a> {
    /// A `ZERO` record: the whole page is filled with this byte.
    Fill(u8),
    /// A `PAGE` record: the raw page.
    Page(&'a [u8]),
}

/// A page record handed to a [`RamStepper::step_into`] callback before its data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRecord {
    /// A `ZERO` record: the whole page is filled with this byte (already read).
    Fill(u8),
    /// A `PAGE` record: the callback must read exactly one page of data from the reader (e.g.
    /// with [`Reader::read_into`] straight into the target page).
    Page,
}

/// What one step read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RamCounts {
    /// `PAGE` records.
    pub pages: u64,
    /// `ZERO` records.
    pub zero_pages: u64,
    /// All records, including the final `EOS`.
    pub records: u64,
}

impl std::ops::AddAssign for RamCounts {
    fn add_assign(&mut self, o: RamCounts) {
        self.pages += o.pages;
        self.zero_pages += o.zero_pages;
        self.records += o.records;
    }
}

/// Steps over the chunks of one RAM section, keeping the block list of its START chunk and the
/// current block (for `CONTINUE`) across chunks.
///
/// ```
/// use vmstate_runtime::ram::{RamStepper, FLAG_EOS, FLAG_MEM_SIZE, FLAG_ZERO, PageData};
/// use vmstate_runtime::SliceReader;
///
/// let mut start = Vec::new();
/// start.extend_from_slice(&(0x2000 | FLAG_MEM_SIZE).to_be_bytes());
/// start.push(6);
/// start.extend_from_slice(b"pc.ram");
/// start.extend_from_slice(&0x2000u64.to_be_bytes());
/// start.extend_from_slice(&FLAG_EOS.to_be_bytes());
///
/// let mut part = Vec::new();
/// part.extend_from_slice(&(0x1000 | FLAG_ZERO).to_be_bytes());
/// part.push(6);
/// part.extend_from_slice(b"pc.ram");
/// part.push(0);
/// part.extend_from_slice(&FLAG_EOS.to_be_bytes());
///
/// let mut ram = RamStepper::new(4096).unwrap();
/// ram.step_start(&mut SliceReader::new(&start)).unwrap();
/// let mut seen = Vec::new();
/// let n = ram
///     .step_part_with(&mut SliceReader::new(&part), |block, offset, data| {
///         seen.push((block.to_owned(), offset, data == PageData::Fill(0)));
///         Ok(())
///     })
///     .unwrap();
/// assert_eq!(n.zero_pages, 1);
/// assert_eq!(seen, [("pc.ram".to_owned(), 0x1000, true)]);
/// ```
#[derive(Debug, Clone)]
pub struct RamStepper {
    page_size: u64,
    ignore_shared: bool,
    blocks: Vec<RamBlock>,
    /// Block idstr -> index into `blocks`.
    index: HashMap<String, usize>,
    started: bool,
    current: Option<usize>,
}

impl RamStepper {
    /// A stepper for target pages of `page_size` bytes (the vmdesc `page_size`; 4096 on x86).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidValue`] unless `page_size` is a power of two between
    /// [`MIN_PAGE_SIZE`] and [`MAX_PAGE_SIZE`].
    pub fn new(page_size: u64) -> Result<Self> {
        if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(Error::without_offset(ErrorKind::InvalidValue {
                expected: "a target page size that is a power of two between 1 KiB and 64 KiB"
                    .into(),
                found: page_size.into(),
            }));
        }
        Ok(RamStepper {
            page_size,
            ignore_shared: false,
            blocks: Vec::new(),
            index: HashMap::new(),
            started: false,
            current: None,
        })
    }

    /// Whether the `x-ignore-shared` capability is on (the block list then carries a be64
    /// memory-region address per block).
    #[must_use]
    pub fn with_ignore_shared(mut self, on: bool) -> Self {
        self.ignore_shared = on;
        self
    }

    /// The target page size.
    #[must_use]
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The blocks announced in the START chunk, in stream order.
    #[must_use]
    pub fn blocks(&self) -> &[RamBlock] {
        &self.blocks
    }

    /// Steps over a START chunk payload (the block list, then records up to `EOS`), skipping page
    /// data. The footer is not read.
    ///
    /// # Errors
    /// See [`step_start_with`](Self::step_start_with).
    pub fn step_start<R: Reader + ?Sized>(&mut self, r: &mut R) -> Result<RamCounts> {
        self.step(r, true, false, &mut |_, _, _| Ok(()))
    }

    /// Steps over a START chunk payload, handing every page to `f`.
    ///
    /// # Errors
    /// A second START, a START without a `MEM_SIZE` block list first, block lengths that do not
    /// add up, too many or duplicate blocks; every error of
    /// [`step_part_with`](Self::step_part_with).
    pub fn step_start_with<R, F>(&mut self, r: &mut R, mut f: F) -> Result<RamCounts>
    where
        R: Reader + ?Sized,
        F: FnMut(&str, u64, PageData<'_>) -> Result<()>,
    {
        self.step(r, true, true, &mut f)
    }

    /// Steps over a PART or END chunk payload (records up to `EOS`), skipping page data. The
    /// footer is not read.
    ///
    /// # Errors
    /// See [`step_part_with`](Self::step_part_with).
    pub fn step_part<R: Reader + ?Sized>(&mut self, r: &mut R) -> Result<RamCounts> {
        self.step(r, false, false, &mut |_, _, _| Ok(()))
    }

    /// Steps over a PART or END chunk payload, handing every page to `f(block, offset, data)`.
    ///
    /// # Errors
    /// [`ErrorKind::UnsupportedRamFlags`], [`ErrorKind::UnknownRamBlock`],
    /// [`ErrorKind::RamPageOutOfRange`], [`ErrorKind::InvalidValue`] (`MEM_SIZE` outside START,
    /// `CONTINUE` without a block, a chunk before START), errors of `f`, end of input.
    pub fn step_part_with<R, F>(&mut self, r: &mut R, mut f: F) -> Result<RamCounts>
    where
        R: Reader + ?Sized,
        F: FnMut(&str, u64, PageData<'_>) -> Result<()>,
    {
        self.step(r, false, true, &mut f)
    }

    /// Steps over a START (`start`) or PART/END chunk payload and hands every page record to
    /// `f(reader, block_index, block, offset, record)` after checking it: `block_index` indexes
    /// [`blocks`](Self::blocks) (stable for the whole section, so a caller can resolve each
    /// block once), and `offset + page_size <= block.used_length` holds. For
    /// [`PageRecord::Page`], `f` must consume exactly one page from the reader; the stepper
    /// checks that it did.
    ///
    /// # Errors
    /// As [`step_start_with`](Self::step_start_with) and
    /// [`step_part_with`](Self::step_part_with); [`ErrorKind::ValidationFailed`] when `f`
    /// consumed other than one page.
    pub fn step_into<R, F>(&mut self, r: &mut R, start: bool, mut f: F) -> Result<RamCounts>
    where
        R: Reader + ?Sized,
        F: FnMut(&mut R, usize, &RamBlock, u64, PageRecord) -> Result<()>,
    {
        self.step_core(r, start, &mut |r: &mut R,
                                       idx,
                                       block: &RamBlock,
                                       addr,
                                       rec| {
            f(r, idx, block, addr, rec).map(|()| 0)
        })
    }

    /// Like [`step_into`](Self::step_into), but for a [`PageRecord::Page`] at `offset`, `f` may
    /// also consume the `n` records that follow it, returning `n`, when each of them is exactly
    /// a `PAGE | CONTINUE` record of the next page of the same block (`offset + page_size`,
    /// `offset + 2 * page_size`, …) with its page: `f` compared their headers with those values
    /// (e.g. after [`Reader::read_into_ahead`] put them next to the pages in guest memory). The
    /// stepper checks that those pages lie inside the block and that `f` consumed exactly
    /// `page_size + n * (8 + page_size)` bytes, and counts the records.
    ///
    /// # Errors
    /// As [`step_into`](Self::step_into); [`ErrorKind::ValidationFailed`] when `f` consumed
    /// other than that, [`ErrorKind::RamPageOutOfRange`] when the last page `f` claims lies
    /// outside the block.
    pub fn step_into_ahead<R, F>(&mut self, r: &mut R, start: bool, mut f: F) -> Result<RamCounts>
    where
        R: Reader + ?Sized,
        F: FnMut(&mut R, usize, &RamBlock, u64, PageRecord) -> Result<u64>,
    {
        self.step_core(r, start, &mut f)
    }

    fn step<R, F>(
        &mut self,
        r: &mut R,
        start: bool,
        want_data: bool,
        f: &mut F,
    ) -> Result<RamCounts>
    where
        R: Reader + ?Sized,
        F: FnMut(&str, u64, PageData<'_>) -> Result<()>,
    {
        // page_size <= MAX_PAGE_SIZE, so it fits usize and a single take.
        let n = usize::try_from(self.page_size).unwrap_or(0);
        let page_size = self.page_size;
        self.step_core(r, start, &mut |r: &mut R,
                                       _,
                                       block: &RamBlock,
                                       addr,
                                       rec| {
            match rec {
                PageRecord::Fill(fill) if want_data => f(&block.idstr, addr, PageData::Fill(fill)),
                PageRecord::Page if want_data => {
                    let data = r.take(n)?;
                    f(&block.idstr, addr, PageData::Page(data))
                }
                PageRecord::Fill(_) => Ok(()),
                PageRecord::Page => r.skip(page_size),
            }
            .map(|()| 0)
        })
    }

    fn step_core<R, F>(&mut self, r: &mut R, start: bool, f: &mut F) -> Result<RamCounts>
    where
        R: Reader + ?Sized,
        F: FnMut(&mut R, usize, &RamBlock, u64, PageRecord) -> Result<u64>,
    {
        let invalid = |what: &'static str, found: u64, pos: u64| {
            Error::new(
                ErrorKind::InvalidValue {
                    expected: what.into(),
                    found: found.into(),
                },
                pos,
            )
        };
        if start && self.started {
            return Err(invalid("one START chunk per RAM section", 0, r.position()));
        }
        if !start && !self.started {
            return Err(invalid(
                "a START chunk before the first PART/END chunk",
                0,
                r.position(),
            ));
        }
        let mask = self.page_size - 1;
        let mut counts = RamCounts::default();
        let mut first = true;
        loop {
            let pos = r.position();
            let word = r.read_be64()?;
            let flags = word & mask;
            let addr = word & !mask;
            counts.records += 1;
            if start && first && flags & !FLAG_CONTINUE != FLAG_MEM_SIZE {
                return Err(invalid(
                    "a MEM_SIZE block list as the first record of the START chunk",
                    flags,
                    pos,
                ));
            }
            first = false;
            match flags & !FLAG_CONTINUE {
                FLAG_MEM_SIZE => {
                    if !start || self.started {
                        return Err(invalid(
                            "no MEM_SIZE record outside the start of the START chunk",
                            flags,
                            pos,
                        ));
                    }
                    self.read_block_list(r, addr)?;
                    self.started = true;
                }
                FLAG_ZERO | FLAG_PAGE => {
                    let idx = self.block_for(r, flags, pos)?;
                    let Some(block) = self.blocks.get(idx) else {
                        return Err(Error::new(
                            ErrorKind::UnknownRamBlock {
                                name: String::new(),
                            },
                            pos,
                        ));
                    };
                    let end = addr.checked_add(self.page_size);
                    if end.is_none_or(|e| e > block.used_length) {
                        return Err(Error::new(
                            ErrorKind::RamPageOutOfRange {
                                block: block.idstr.clone(),
                                offset: addr,
                                used_length: block.used_length,
                            },
                            pos,
                        ));
                    }
                    if flags & !FLAG_CONTINUE == FLAG_ZERO {
                        let fill = r.read_u8()?;
                        counts.zero_pages += 1;
                        if f(r, idx, block, addr, PageRecord::Fill(fill))? != 0 {
                            return Err(Error::new(
                                ErrorKind::ValidationFailed {
                                    message: format!(
                                        "the page handler of RAM block `{}` claimed records after a ZERO record",
                                        block.idstr
                                    ),
                                },
                                pos,
                            ));
                        }
                    } else {
                        let data_at = r.position();
                        let more = f(r, idx, block, addr, PageRecord::Page)?;
                        // The records `f` consumed after this one: whole PAGE | CONTINUE
                        // records of the following pages of the same block.
                        let consumed = more
                            .checked_mul(8 + self.page_size)
                            .and_then(|m| m.checked_add(self.page_size));
                        if consumed.is_none() || r.position().checked_sub(data_at) != consumed {
                            return Err(Error::new(
                                ErrorKind::ValidationFailed {
                                    message: format!(
                                        "the page handler of RAM block `{}` consumed {} bytes instead of one page{}",
                                        block.idstr,
                                        r.position().wrapping_sub(data_at),
                                        if more == 0 {
                                            String::new()
                                        } else {
                                            format!(" and the {more} page records after it")
                                        }
                                    ),
                                },
                                data_at,
                            ));
                        }
                        let last = more
                            .checked_mul(self.page_size)
                            .and_then(|m| m.checked_add(addr))
                            .and_then(|a| a.checked_add(self.page_size));
                        if last.is_none_or(|e| e > block.used_length) {
                            return Err(Error::new(
                                ErrorKind::RamPageOutOfRange {
                                    block: block.idstr.clone(),
                                    offset: addr
                                        .saturating_add(more.saturating_mul(self.page_size)),
                                    used_length: block.used_length,
                                },
                                data_at,
                            ));
                        }
                        counts.pages += 1 + more;
                        counts.records += more;
                    }
                }
                FLAG_EOS => return Ok(counts),
                FLAG_MULTIFD_FLUSH => {}
                _ => {
                    return Err(Error::new(ErrorKind::UnsupportedRamFlags { flags }, pos));
                }
            }
        }
    }

    /// Reads the block list that follows a `MEM_SIZE` record announcing `total` bytes.
    fn read_block_list<R: Reader + ?Sized>(&mut self, r: &mut R, total: u64) -> Result<()> {
        let mut remaining = total;
        while remaining > 0 {
            let pos = r.position();
            if self.blocks.len() >= MAX_RAM_BLOCKS {
                return Err(Error::new(
                    ErrorKind::LengthTooLarge {
                        len: self.blocks.len() as u64 + 1,
                        limit: MAX_RAM_BLOCKS as u64,
                    },
                    pos,
                ));
            }
            let idstr = r.read_counted_str()?;
            let used_length = r.read_be64()?;
            if self.ignore_shared {
                r.read_be64()?;
            }
            if used_length > remaining {
                return Err(Error::new(
                    ErrorKind::InvalidValue {
                        expected: format!(
                            "a length for RAM block `{idstr}` within the {remaining:#x} bytes left of the announced total {total:#x}"
                        )
                        .into(),
                        found: used_length.into(),
                    },
                    pos,
                ));
            }
            if self.index.contains_key(&idstr) {
                return Err(Error::new(
                    ErrorKind::ValidationFailed {
                        message: format!("RAM block `{idstr}` is announced twice"),
                    },
                    pos,
                ));
            }
            remaining -= used_length;
            self.index.insert(idstr.clone(), self.blocks.len());
            self.blocks.push(RamBlock { idstr, used_length });
        }
        Ok(())
    }

    /// The block of a ZERO/PAGE record: the previous one with `CONTINUE`, else the counted name
    /// that follows.
    fn block_for<R: Reader + ?Sized>(&mut self, r: &mut R, flags: u64, pos: u64) -> Result<usize> {
        if flags & FLAG_CONTINUE != 0 {
            return self.current.ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidValue {
                        expected: "a block name before the first CONTINUE record".into(),
                        found: flags.into(),
                    },
                    pos,
                )
            });
        }
        // A new name is resolved once per record that carries it (no allocation on success).
        let len = usize::from(r.read_u8()?);
        let bytes = r.take(len)?;
        // Names are stored as read by `read_counted_str` (invalid UTF-8 replaced): look up the
        // same form.
        let name = String::from_utf8_lossy(bytes);
        let Some(&idx) = self.index.get(name.as_ref()) else {
            let name = name.into_owned();
            return Err(Error::new(ErrorKind::UnknownRamBlock { name }, pos));
        };
        self.current = Some(idx);
        Ok(idx)
    }
}

/// One RAM chunk read by a recording [`RamSection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamChunk {
    /// START, PART or END.
    pub kind: SectionKind,
    /// The section id.
    pub section_id: u32,
    /// Where the chunk lies in the stream.
    pub span: SectionSpan,
    /// The blocks announced (START chunk only; empty for PART/END).
    pub blocks: Vec<RamBlock>,
    /// Records in this chunk.
    pub counts: RamCounts,
}

/// The [`SectionHandler`] of the RAM section when guest memory is not restored: checks the
/// section (instance 0, version 4) and steps over every chunk with a [`RamStepper`],
/// validating it. Used by the registry's load (RAM is stepped over) and the generic decoder,
/// which records every chunk ([`recording`](Self::recording)).
#[derive(Debug, Clone)]
pub struct RamSection {
    page_size: u64,
    stepper: Option<RamStepper>,
    counts: RamCounts,
    last: RamCounts,
    chunks: Option<Vec<RamChunk>>,
}

impl RamSection {
    /// A handler for target pages of `page_size` bytes (checked at the START chunk).
    #[must_use]
    pub fn new(page_size: u64) -> Self {
        RamSection {
            page_size,
            stepper: None,
            counts: RamCounts::default(),
            last: RamCounts::default(),
            chunks: None,
        }
    }

    /// Keeps a [`RamChunk`] for every chunk read.
    #[must_use]
    pub fn recording(mut self) -> Self {
        self.chunks = Some(Vec::new());
        self
    }

    /// The blocks announced in the START chunk.
    #[must_use]
    pub fn blocks(&self) -> &[RamBlock] {
        self.stepper.as_ref().map_or(&[], RamStepper::blocks)
    }

    /// Records read in all chunks.
    #[must_use]
    pub fn counts(&self) -> RamCounts {
        self.counts
    }

    /// The chunks read, in stream order (empty unless [`recording`](Self::recording)).
    #[must_use]
    pub fn chunks(&self) -> &[RamChunk] {
        self.chunks.as_deref().unwrap_or_default()
    }
}

impl SectionHandler for RamSection {
    fn load(&mut self, meta: &SectionMeta<'_>, r: &mut dyn ErasedReader) -> Result<()> {
        let counts = match meta.kind {
            SectionKind::Start => {
                if meta.instance_id != 0 {
                    return Err(meta.unknown());
                }
                crate::private::check_version(meta.version, RAM_VERSION, RAM_VERSION, meta.offset)?;
                let stepper =
                    RamStepper::new(self.page_size).map_err(|e| e.at_offset(meta.offset))?;
                self.stepper.insert(stepper).step_start(r)?
            }
            SectionKind::Part | SectionKind::End => match self.stepper.as_mut() {
                Some(stepper) => stepper.step_part(r)?,
                None => {
                    return Err(Error::new(
                        ErrorKind::UnknownSectionId {
                            section_id: meta.section_id,
                        },
                        meta.offset,
                    ))
                }
            },
            // RAM is iterative; a FULL section of that name belongs to no device.
            SectionKind::Full | SectionKind::Command { .. } => return Err(meta.unknown()),
        };
        self.counts += counts;
        self.last = counts;
        Ok(())
    }

    fn loaded(&mut self, meta: &SectionMeta<'_>, span: &SectionSpan) -> Result<()> {
        let blocks = if meta.kind == SectionKind::Start {
            self.blocks().to_vec()
        } else {
            Vec::new()
        };
        if let Some(chunks) = self.chunks.as_mut() {
            chunks.push(RamChunk {
                kind: meta.kind,
                section_id: meta.section_id,
                span: span.clone(),
                blocks,
                counts: self.last,
            });
        }
        Ok(())
    }
}

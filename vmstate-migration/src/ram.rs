//! The RAM iterative section (idstr `ram`, instance 0, version 4) over [`GuestRam`].
//!
//! [`RamWriter`] produces the section on the source: a START chunk with the block list, PART
//! chunks of pages and one END chunk. Each page is read straight from guest memory into the
//! output buffer; a page of zeros becomes a `ZERO` record with one fill byte, and a record for the
//! same block as the previous record of the chunk carries `CONTINUE` instead of the block name.
//! Every chunk ends with `EOS` and, when the machine type's framing has them, a footer with the
//! section id of the START.
//!
//! [`RamLoader`] reads it on the destination through the runtime's [`RamStepper`] (which checks
//! flags, `CONTINUE`, block names and `offset + page_size <= used_length`, overflow-checked) and
//! additionally requires the START block list to equal the destination's blocks exactly (names
//! and lengths; the CVE-2014-7840 class). Page data is written straight into guest memory, which
//! is scratch until the destination acknowledges the migration: on any error the destination
//! never runs it.

use std::collections::HashMap;

use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{Bytes, GuestMemoryRegion, GuestRegionMmap, MemoryRegionAddress, MmapRegion};
use vmstate_runtime::error::ErrorKind;
use vmstate_runtime::machine::Framing;
use vmstate_runtime::ram::{
    PageData, RamCounts, RamStepper, FLAG_CONTINUE, FLAG_EOS, FLAG_MEM_SIZE, FLAG_PAGE, FLAG_ZERO,
    RAM_IDSTR, RAM_VERSION,
};
use vmstate_runtime::reader::ErasedReader;
use vmstate_runtime::stream::{SectionHandler, SectionKind, SectionMeta, StreamWriter};
use vmstate_runtime::{Reader, Writer};

use crate::error::{MigrationError, Result};
use crate::memory::{GuestRam, PAGE_SIZE};

const PAGE: usize = PAGE_SIZE as usize;

/// The dirty log of a region (the bitmap owned by its mapping).
pub(crate) fn bitmap_of(r: &GuestRegionMmap<AtomicBitmap>) -> &AtomicBitmap {
    MmapRegion::bitmap(r)
}

fn mem_err(e: impl std::fmt::Display) -> MigrationError {
    MigrationError::Memory(e.to_string())
}

fn is_zero(page: &[u8]) -> bool {
    page.chunks_exact(64).all(|c| {
        c.chunks_exact(8).fold(0u64, |acc, w| {
            acc | u64::from_ne_bytes(w.try_into().unwrap_or([1; 8]))
        }) == 0
    })
}

/// Where finished bytes go (the transport, behind the rate limiter).
pub trait ByteSink {
    /// Sends `data` completely.
    ///
    /// # Errors
    /// Transport errors, cancellation.
    fn send(&mut self, data: &[u8]) -> Result<()>;
}

impl ByteSink for Vec<u8> {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        self.extend_from_slice(data);
        Ok(())
    }
}

/// Counts of one batch of pages written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// `PAGE` records.
    pub pages: u64,
    /// `ZERO` records.
    pub zero_pages: u64,
    /// Stream bytes produced.
    pub bytes: u64,
}

/// Writes the RAM section of one migration.
#[derive(Debug)]
pub struct RamWriter {
    section_id: u32,
    framing: Framing,
    buf: Vec<u8>,
    used: usize,
    /// Block index of the previous record in the current chunk (for `CONTINUE`).
    last_block: Option<usize>,
    in_chunk: bool,
}

impl RamWriter {
    /// Output buffer size: bytes are handed to the sink in pieces of about this size.
    pub const BUFFER: usize = 1 << 20;

    /// A writer using `section_id` for all chunks and the footers of `framing`.
    #[must_use]
    pub fn new(section_id: u32, framing: Framing) -> Self {
        RamWriter {
            section_id,
            framing,
            buf: vec![0; Self::BUFFER],
            used: 0,
            last_block: None,
            in_chunk: false,
        }
    }

    fn flush<S: ByteSink + ?Sized>(&mut self, sink: &mut S) -> Result<()> {
        if self.used > 0 {
            sink.send(&self.buf[..self.used])?;
            self.used = 0;
        }
        Ok(())
    }

    fn ensure<S: ByteSink + ?Sized>(&mut self, sink: &mut S, n: usize) -> Result<()> {
        if self.buf.len() - self.used < n {
            self.flush(sink)?;
        }
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.used..self.used + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }

    fn put_small<S: ByteSink + ?Sized>(&mut self, sink: &mut S, bytes: &[u8]) -> Result<()> {
        self.ensure(sink, bytes.len())?;
        self.put(bytes);
        Ok(())
    }

    /// Writes the START chunk: header, `MEM_SIZE` block list, `EOS`, footer. Returns the bytes.
    ///
    /// # Errors
    /// Sink errors.
    pub fn write_start<S: ByteSink + ?Sized>(
        &mut self,
        sink: &mut S,
        ram: &GuestRam,
    ) -> Result<u64> {
        let mut s = StreamWriter::new(Vec::new(), self.framing);
        s.start_header(self.section_id, RAM_IDSTR, 0, RAM_VERSION)?;
        let v = s.payload();
        v.write_be64(ram.total_bytes() | FLAG_MEM_SIZE)?;
        for (name, len) in ram.blocks() {
            v.write_counted_str(&name)?;
            v.write_be64(len)?;
        }
        v.write_be64(FLAG_EOS)?;
        s.footer(self.section_id)?;
        let v = s.into_inner();
        self.put_small(sink, &v)?;
        Ok(v.len() as u64)
    }

    /// Opens a PART (or, with `end`, the END) chunk.
    ///
    /// # Errors
    /// Sink errors.
    pub fn begin_chunk<S: ByteSink + ?Sized>(&mut self, sink: &mut S, end: bool) -> Result<()> {
        let mut s = StreamWriter::new(Vec::with_capacity(5), self.framing);
        s.chunk_header(self.section_id, end)?;
        self.put_small(sink, &s.into_inner())?;
        self.last_block = None;
        self.in_chunk = true;
        Ok(())
    }

    /// Closes the current chunk with `EOS` and the footer.
    ///
    /// # Errors
    /// Sink errors.
    pub fn end_chunk<S: ByteSink + ?Sized>(&mut self, sink: &mut S) -> Result<()> {
        let mut s = StreamWriter::new(Vec::with_capacity(13), self.framing);
        s.payload().write_be64(FLAG_EOS)?;
        s.footer(self.section_id)?;
        self.put_small(sink, &s.into_inner())?;
        self.in_chunk = false;
        Ok(())
    }

    /// Writes one page of block `block` (index in migration order, region `region`, name
    /// `name`) at `offset` into the open chunk.
    ///
    /// # Errors
    /// Memory and sink errors.
    pub fn write_page<S: ByteSink + ?Sized>(
        &mut self,
        sink: &mut S,
        block: usize,
        name: &str,
        region: &GuestRegionMmap<AtomicBitmap>,
        offset: u64,
    ) -> Result<PageCounts> {
        debug_assert!(self.in_chunk);
        let cont = self.last_block == Some(block);
        self.ensure(sink, 8 + 256 + PAGE)?;
        let rec = self.used;
        self.used += 8;
        if !cont {
            self.put(&[name.len() as u8]);
            self.put(name.as_bytes());
        }
        let data = self.used;
        region
            .read_slice(
                &mut self.buf[data..data + PAGE],
                MemoryRegionAddress(offset),
            )
            .map_err(mem_err)?;
        let mut flags = if cont { FLAG_CONTINUE } else { 0 };
        let mut counts = PageCounts::default();
        if is_zero(&self.buf[data..data + PAGE]) {
            flags |= FLAG_ZERO;
            self.buf[data] = 0;
            self.used = data + 1;
            counts.zero_pages = 1;
        } else {
            flags |= FLAG_PAGE;
            self.used = data + PAGE;
            counts.pages = 1;
        }
        self.buf[rec..rec + 8].copy_from_slice(&(offset | flags).to_be_bytes());
        counts.bytes = (self.used - rec) as u64;
        self.last_block = Some(block);
        Ok(counts)
    }

    /// Writes the pages whose bit is set in `dirty` (one `u64` word per 64 pages, as
    /// [`AtomicBitmap::get_and_reset`] returns them) of block `block`.
    ///
    /// # Errors
    /// Memory and sink errors.
    pub fn write_dirty<S: ByteSink + ?Sized>(
        &mut self,
        sink: &mut S,
        block: usize,
        name: &str,
        region: &GuestRegionMmap<AtomicBitmap>,
        dirty: &[u64],
    ) -> Result<PageCounts> {
        let pages = region.len() / PAGE_SIZE;
        let mut total = PageCounts::default();
        for (w, &word) in dirty.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = bits.trailing_zeros() as u64;
                bits &= bits - 1;
                let page = w as u64 * 64 + b;
                if page >= pages {
                    break;
                }
                let c = self.write_page(sink, block, name, region, page * PAGE_SIZE)?;
                total.pages += c.pages;
                total.zero_pages += c.zero_pages;
                total.bytes += c.bytes;
            }
        }
        Ok(total)
    }

    /// Hands every buffered byte to the sink.
    ///
    /// # Errors
    /// Sink errors.
    pub fn finish<S: ByteSink + ?Sized>(&mut self, sink: &mut S) -> Result<()> {
        self.flush(sink)
    }
}

/// The destination's handler of the RAM section (routed to it by the stream loader): writes
/// every page into guest memory, validating every record.
#[derive(Debug)]
pub struct RamLoader<'a> {
    ram: &'a GuestRam,
    index: HashMap<String, usize>,
    stepper: RamStepper,
    section_id: Option<u32>,
    ended: bool,
    counts: RamCounts,
}

fn invalid(message: String, pos: u64) -> vmstate_runtime::Error {
    vmstate_runtime::Error::new(ErrorKind::ValidationFailed { message }, pos)
}

impl<'a> RamLoader<'a> {
    /// A loader writing into `ram`.
    ///
    /// # Errors
    /// Never for the fixed 4096-byte page size (kept fallible for other target page sizes).
    pub fn new(ram: &'a GuestRam) -> Result<Self> {
        let index = ram
            .blocks()
            .into_iter()
            .enumerate()
            .map(|(i, (n, _))| (n, i))
            .collect();
        Ok(RamLoader {
            ram,
            index,
            stepper: RamStepper::new(PAGE_SIZE)?,
            section_id: None,
            ended: false,
            counts: RamCounts::default(),
        })
    }

    /// Whether the END chunk has been loaded.
    #[must_use]
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether a START chunk has been loaded.
    #[must_use]
    pub fn started(&self) -> bool {
        self.section_id.is_some()
    }

    /// Records read so far.
    #[must_use]
    pub fn counts(&self) -> RamCounts {
        self.counts
    }

    /// A START chunk: the block list must equal this machine's blocks exactly.
    fn start(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        if meta.instance_id != 0 {
            return Err(meta.unknown());
        }
        if self.section_id.is_some() {
            return Err(vmstate_runtime::Error::new(
                ErrorKind::DuplicateSection {
                    idstr: meta.idstr.to_owned(),
                    instance_id: meta.instance_id,
                },
                meta.offset,
            ));
        }
        if meta.version != RAM_VERSION {
            return Err(vmstate_runtime::Error::new(
                ErrorKind::InvalidValue {
                    expected: "RAM section version 4".into(),
                    found: u64::from(meta.version).into(),
                },
                meta.offset,
            ));
        }
        let list_pos = r.position();
        self.step(r, true, list_pos)?;
        self.check_blocks(list_pos)?;
        self.section_id = Some(meta.section_id);
        Ok(())
    }

    /// Steps over one chunk's records, storing every page; `pos` is the offset errors of the
    /// store report.
    fn step(
        &mut self,
        r: &mut dyn ErasedReader,
        start: bool,
        pos: u64,
    ) -> vmstate_runtime::Result<()> {
        let Self {
            ram,
            index,
            stepper,
            counts,
            ..
        } = self;
        let store = |b: &str, o: u64, d: PageData<'_>| store_page(ram, index, b, o, d, pos);
        *counts += if start {
            stepper.step_start_with(r, store)?
        } else {
            stepper.step_part_with(r, store)?
        };
        Ok(())
    }

    fn check_blocks(&self, pos: u64) -> vmstate_runtime::Result<()> {
        let mine = self.ram.blocks();
        let theirs = self.stepper.blocks();
        for b in theirs {
            match mine.iter().find(|(n, _)| *n == b.idstr) {
                None => {
                    return Err(vmstate_runtime::Error::new(
                        ErrorKind::UnknownRamBlock {
                            name: b.idstr.clone(),
                        },
                        pos,
                    ))
                }
                Some((_, len)) if *len != b.used_length => {
                    return Err(invalid(
                        format!(
                            "RAM block `{}` has length {:#x} in the stream but {len:#x} on this machine",
                            b.idstr, b.used_length
                        ),
                        pos,
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some((n, _)) = mine
            .iter()
            .find(|(n, _)| !theirs.iter().any(|b| b.idstr == *n))
        {
            return Err(invalid(
                format!("RAM block `{n}` of this machine is missing from the stream's block list"),
                pos,
            ));
        }
        Ok(())
    }

    /// A PART or END chunk: pages of the blocks announced in START.
    fn part(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        if self.section_id != Some(meta.section_id) || self.ended {
            return Err(vmstate_runtime::Error::new(
                ErrorKind::UnknownSectionId {
                    section_id: meta.section_id,
                },
                meta.offset,
            ));
        }
        self.step(r, false, meta.offset)?;
        self.ended = meta.kind == SectionKind::End;
        Ok(())
    }
}

impl SectionHandler for RamLoader<'_> {
    fn load(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        match meta.kind {
            SectionKind::Start => self.start(meta, r),
            SectionKind::Part | SectionKind::End => self.part(meta, r),
            SectionKind::Full | SectionKind::Command { .. } => Err(meta.unknown()),
        }
    }

    fn finish(&mut self, end: u64) -> vmstate_runtime::Result<()> {
        if self.ended {
            return Ok(());
        }
        Err(invalid(
            "the stream has no complete RAM section (START … END)".into(),
            end,
        ))
    }
}

/// Writes one validated record into guest memory, re-checking the bounds against the
/// destination's own region (defence in depth: the stepper checked the announced length).
fn store_page(
    ram: &GuestRam,
    index: &HashMap<String, usize>,
    block: &str,
    offset: u64,
    data: PageData<'_>,
    pos: u64,
) -> vmstate_runtime::Result<()> {
    static ZEROS: [u8; PAGE] = [0; PAGE];
    let unknown = || {
        vmstate_runtime::Error::new(
            ErrorKind::UnknownRamBlock {
                name: block.to_owned(),
            },
            pos,
        )
    };
    if !index.contains_key(block) {
        return Err(unknown());
    }
    let region = ram.region(block).ok_or_else(unknown)?;
    if offset % PAGE_SIZE != 0
        || offset
            .checked_add(PAGE_SIZE)
            .is_none_or(|e| e > region.len())
    {
        return Err(vmstate_runtime::Error::new(
            ErrorKind::RamPageOutOfRange {
                block: block.to_owned(),
                offset,
                used_length: region.len(),
            },
            pos,
        ));
    }
    let fill;
    let bytes: &[u8] = match data {
        PageData::Page(p) => p,
        PageData::Fill(0) => &ZEROS,
        PageData::Fill(b) => {
            fill = [b; PAGE];
            &fill
        }
    };
    region
        .write_slice(bytes, MemoryRegionAddress(offset))
        .map_err(|e| invalid(format!("cannot write guest memory: {e}"), pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{GuestAddress, GuestMemoryBackend};

    fn framing() -> Framing {
        Framing {
            configuration: true,
            footers: true,
            vmdesc: true,
        }
    }

    /// Exact bytes of START and a PART with a ZERO record, a CONTINUE PAGE record and a record of
    /// another block.
    #[test]
    fn exact_bytes() {
        let ram = GuestRam::new(&[("pc.ram", 0, 0x2000), ("rom", 0x10000, 0x1000)]).unwrap();
        ram.memory()
            .write_slice(&[0xaa; PAGE], GuestAddress(0x1000))
            .unwrap();
        let mut w = RamWriter::new(3, framing());
        let mut out = Vec::new();
        w.write_start(&mut out, &ram).unwrap();
        w.finish(&mut out).unwrap();
        let mut want = vec![1, 0, 0, 0, 3, 3, b'r', b'a', b'm', 0, 0, 0, 0, 0, 0, 0, 4];
        want.extend_from_slice(&(0x3000u64 | 4).to_be_bytes());
        want.extend_from_slice(b"\x06pc.ram");
        want.extend_from_slice(&0x2000u64.to_be_bytes());
        want.extend_from_slice(b"\x03rom");
        want.extend_from_slice(&0x1000u64.to_be_bytes());
        want.extend_from_slice(&0x10u64.to_be_bytes());
        want.extend_from_slice(&[0x7e, 0, 0, 0, 3]);
        assert_eq!(out, want);

        let mut out = Vec::new();
        w.begin_chunk(&mut out, false).unwrap();
        for (i, (name, region)) in ram.named_regions().enumerate() {
            w.write_dirty(&mut out, i, name, region, &[u64::MAX])
                .unwrap();
        }
        w.end_chunk(&mut out).unwrap();
        w.finish(&mut out).unwrap();
        let mut want = vec![2, 0, 0, 0, 3];
        want.extend_from_slice(&0x02u64.to_be_bytes());
        want.extend_from_slice(b"\x06pc.ram\x00");
        want.extend_from_slice(&(0x1000u64 | 0x08 | 0x20).to_be_bytes());
        want.extend_from_slice(&[0xaa; PAGE]);
        want.extend_from_slice(&0x02u64.to_be_bytes());
        want.extend_from_slice(b"\x03rom\x00");
        want.extend_from_slice(&0x10u64.to_be_bytes());
        want.extend_from_slice(&[0x7e, 0, 0, 0, 3]);
        assert_eq!(out, want);
        assert_eq!(ram.memory().num_regions(), 2);
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0; PAGE]));
        for i in [0, 7, 63, 64, PAGE - 1] {
            let mut p = [0u8; PAGE];
            p[i] = 1;
            assert!(!is_zero(&p), "byte {i}");
        }
    }
}

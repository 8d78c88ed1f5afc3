//! The RAM iterative section (idstr `ram`, instance 0, version 4) over [`GuestRam`].
//!
//! [`RamWriter`] produces the section on the source: a START chunk with the block list, PART
//! chunks of pages and one END chunk. Each page is zero-checked in place in guest memory; its
//! record header goes into a small buffer and its data is handed to the sink as a piece of guest
//! memory ([`ByteSink::send_pieces`]; the migration's transport sends it with `writev`, no staging
//! copy); a page of zeros becomes a `ZERO` record with one fill byte, and a record for the
//! same block as the previous record of the chunk carries `CONTINUE` instead of the block name.
//! Every chunk ends with `EOS` and, when the machine type's framing has them, a footer with the
//! section id of the START.
//!
//! [`RamLoader`] reads it on the destination through the runtime's [`RamStepper`] (which checks
//! flags, `CONTINUE`, block names and `offset + page_size <= used_length`, overflow-checked) and
//! additionally requires the START block list to equal the destination's blocks exactly (names
//! and lengths; the CVE-2014-7840 class). Page data is read from the stream straight into guest
//! memory ([`Reader::read_into`]; blocks resolved by index, once per block), which is scratch until the destination acknowledges the migration: on any error the destination
//! never runs it.

use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{GuestMemoryRegion, GuestRegionMmap, MemoryRegionAddress, MmapRegion};
use vmstate_runtime::error::ErrorKind;
use vmstate_runtime::machine::Framing;
use vmstate_runtime::ram::{
    PageRecord, RamCounts, RamStepper, FLAG_CONTINUE, FLAG_EOS, FLAG_MEM_SIZE, FLAG_PAGE,
    FLAG_ZERO, RAM_IDSTR, RAM_VERSION,
};
use vmstate_runtime::reader::ErasedReader;
use vmstate_runtime::stream::{SectionHandler, SectionKind, SectionMeta, StreamWriter};
use vmstate_runtime::{Reader, Writer};

use crate::error::{MigrationError, Result};
use crate::integrity::{Unit, RUN_PAGES};
use crate::memory::{GuestRam, PAGE_SIZE};
pub use crate::sys::{GuestSlice, Piece};

/// The page run under way (integrity check on).
#[derive(Debug, Clone, Copy)]
struct RamRun {
    block: usize,
    first: u64,
    last: u64,
    records: u32,
}

const PAGE: usize = PAGE_SIZE as usize;

/// The dirty log of a region (the bitmap owned by its mapping).
pub(crate) fn bitmap_of(r: &GuestRegionMmap<AtomicBitmap>) -> &AtomicBitmap {
    MmapRegion::bitmap(r)
}

fn mem_err(e: impl std::fmt::Display) -> MigrationError {
    MigrationError::Memory(e.to_string())
}

/// Where finished bytes go (the transport, behind the rate limiter).
pub trait ByteSink {
    /// Sends `data` completely.
    ///
    /// # Errors
    /// Transport errors, cancellation.
    fn send(&mut self, data: &[u8]) -> Result<()>;

    /// Sends every piece completely, in order (page data straight from guest memory). The
    /// default gathers the pieces into one buffer and calls [`send`](Self::send); the migration's
    /// transport sink overrides it with a vectored write that copies no page data.
    ///
    /// # Errors
    /// Transport errors, cancellation.
    fn send_pieces(&mut self, pieces: &[Piece<'_>]) -> Result<()> {
        let mut v = Vec::with_capacity(pieces.iter().map(Piece::len).sum());
        for p in pieces {
            p.append_to(&mut v);
        }
        self.send(&v)
    }

    /// With the stream's integrity check on ([`crate::integrity`]): the bytes sent since the
    /// last seal are one unit carrying `unit`; the sink writes the unit's record, then its
    /// bytes. Sinks without the check (the default) do nothing.
    ///
    /// # Errors
    /// Transport errors, cancellation.
    fn seal(&mut self, unit: &crate::integrity::Unit<'_>) -> Result<()> {
        let _ = unit;
        Ok(())
    }

    /// Whether [`seal`](Self::seal) does anything (the RAM writer cuts page runs only then).
    fn checks_integrity(&self) -> bool {
        false
    }
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
    /// With the integrity check: the page run under way (its block's name and records).
    run: Option<(String, RamRun)>,
    /// With the integrity check: an END chunk was asked for; its pages go in PART chunks (cut
    /// into runs) and an empty END chunk follows them.
    end_pending: bool,
}

impl RamWriter {
    /// Header buffer size: record headers, fill bytes and footers are gathered here; page data
    /// never is (it is sent from guest memory).
    pub const BUFFER: usize = 64 << 10;

    /// Most pages handed to the sink in one vectored write (two pieces each, within `IOV_MAX`).
    pub const MAX_PAGES_PER_WRITE: usize = 500;

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
            run: None,
            end_pending: false,
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
        if sink.checks_integrity() {
            self.flush(sink)?;
            sink.seal(&Unit::Bytes("RAM block list"))?;
        }
        Ok(v.len() as u64)
    }

    /// Opens a PART (or, with `end`, the END) chunk.
    ///
    /// # Errors
    /// Sink errors.
    pub fn begin_chunk<S: ByteSink + ?Sized>(&mut self, sink: &mut S, end: bool) -> Result<()> {
        self.end_pending = end && sink.checks_integrity();
        let mut s = StreamWriter::new(Vec::with_capacity(5), self.framing);
        s.chunk_header(self.section_id, end && !self.end_pending)?;
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
        self.close_chunk(sink)?;
        if sink.checks_integrity() {
            self.seal_run(sink)?;
            if std::mem::take(&mut self.end_pending) {
                let mut s = StreamWriter::new(Vec::with_capacity(18), self.framing);
                s.chunk_header(self.section_id, true)?;
                s.payload().write_be64(FLAG_EOS)?;
                s.footer(self.section_id)?;
                self.put_small(sink, &s.into_inner())?;
                self.flush(sink)?;
                sink.seal(&Unit::Bytes("RAM section end"))?;
            }
        }
        self.in_chunk = false;
        Ok(())
    }

    /// `EOS` and the footer of the current chunk.
    fn close_chunk<S: ByteSink + ?Sized>(&mut self, sink: &mut S) -> Result<()> {
        let mut s = StreamWriter::new(Vec::with_capacity(13), self.framing);
        s.payload().write_be64(FLAG_EOS)?;
        s.footer(self.section_id)?;
        self.put_small(sink, &s.into_inner())
    }

    /// With the integrity check: hands the closed chunk to the sink as one unit, named after
    /// the page run it carried.
    fn seal_run<S: ByteSink + ?Sized>(&mut self, sink: &mut S) -> Result<()> {
        self.flush(sink)?;
        match self.run.take() {
            Some((name, run)) => sink.seal(&Unit::RamRun {
                block: &name,
                first: run.first,
                last: run.last,
                records: run.records,
            }),
            None => sink.seal(&Unit::Bytes("RAM chunk without pages")),
        }
    }

    /// With the integrity check: ends the chunk and its run before the record of `block` if the
    /// run is full or of another block, and opens the next PART chunk.
    fn cut_run<S: ByteSink + ?Sized>(
        &mut self,
        sink: &mut S,
        block: usize,
        segs: &mut Vec<(usize, GuestSlice<'_>)>,
    ) -> Result<()> {
        let full = match &self.run {
            Some((_, run)) => run.block != block || run.records >= RUN_PAGES,
            None => false,
        };
        if full {
            self.flush_pages(sink, segs)?;
            self.close_chunk(sink)?;
            self.seal_run(sink)?;
            let mut s = StreamWriter::new(Vec::with_capacity(5), self.framing);
            s.chunk_header(self.section_id, false)?;
            self.put_small(sink, &s.into_inner())?;
            self.last_block = None;
        }
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
        self.write_pages(sink, block, name, region, std::iter::once(offset))
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
        let offsets = dirty.iter().enumerate().flat_map(move |(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                Some(w as u64 * 64 + b)
            })
            .take_while(move |&page| page < pages)
            .map(|page| page * PAGE_SIZE)
        });
        self.write_pages(sink, block, name, region, offsets)
    }

    /// Frames the pages at `offsets`: each page is zero-checked in place in guest memory; a
    /// zero page becomes a `ZERO` record in the header buffer, any other page a `PAGE` header in
    /// the buffer followed by the page itself, handed to the sink as a piece of guest memory (no
    /// copy). Every piece of guest memory is sent before this returns.
    fn write_pages<S, I>(
        &mut self,
        sink: &mut S,
        block: usize,
        name: &str,
        region: &GuestRegionMmap<AtomicBitmap>,
        offsets: I,
    ) -> Result<PageCounts>
    where
        S: ByteSink + ?Sized,
        I: Iterator<Item = u64>,
    {
        debug_assert!(self.in_chunk);
        // (end of the header bytes before it in `buf`, page)
        let mut segs: Vec<(usize, GuestSlice<'_>)> = Vec::new();
        let mut total = PageCounts::default();
        let integrity = sink.checks_integrity();
        for offset in offsets {
            if integrity {
                self.cut_run(sink, block, &mut segs)?;
                let run = self.run.get_or_insert_with(|| {
                    (
                        name.to_owned(),
                        RamRun {
                            block,
                            first: offset,
                            last: offset,
                            records: 0,
                        },
                    )
                });
                run.1.first = run.1.first.min(offset);
                run.1.last = run.1.last.max(offset);
                run.1.records += 1;
            }
            if self.buf.len() - self.used < 8 + 256 + 1 || segs.len() >= Self::MAX_PAGES_PER_WRITE {
                self.flush_pages(sink, &mut segs)?;
            }
            let page = region
                .get_slice(MemoryRegionAddress(offset), PAGE)
                .map_err(mem_err)?;
            let cont = self.last_block == Some(block);
            let rec = self.used;
            self.used += 8;
            if !cont {
                self.put(&[name.len() as u8]);
                self.put(name.as_bytes());
            }
            let mut flags = if cont { FLAG_CONTINUE } else { 0 };
            if crate::sys::is_zero(&page) {
                flags |= FLAG_ZERO;
                self.put(&[0]);
                total.zero_pages += 1;
                total.bytes += (self.used - rec) as u64;
            } else {
                flags |= FLAG_PAGE;
                total.pages += 1;
                total.bytes += (self.used - rec + PAGE) as u64;
                segs.push((self.used, page));
            }
            self.buf[rec..rec + 8].copy_from_slice(&(offset | flags).to_be_bytes());
            self.last_block = Some(block);
        }
        if !segs.is_empty() {
            self.flush_pages(sink, &mut segs)?;
        }
        Ok(total)
    }

    /// Sends the buffered bytes with the pages of `segs` interleaved, in one vectored write.
    fn flush_pages<S: ByteSink + ?Sized>(
        &mut self,
        sink: &mut S,
        segs: &mut Vec<(usize, GuestSlice<'_>)>,
    ) -> Result<()> {
        if segs.is_empty() {
            return self.flush(sink);
        }
        let mut pieces = Vec::with_capacity(2 * segs.len() + 1);
        let mut last = 0;
        for (end, page) in segs.iter() {
            pieces.push(Piece::Bytes(&self.buf[last..*end]));
            pieces.push(Piece::Guest(page));
            last = *end;
        }
        pieces.push(Piece::Bytes(&self.buf[last..self.used]));
        sink.send_pieces(&pieces)?;
        self.used = 0;
        segs.clear();
        Ok(())
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
///
/// Page data is read from the stream straight into the target page ([`Reader::read_into`]: an
/// [`IoReader`](vmstate_runtime::IoReader) copies only what it has already buffered and reads the
/// rest of the page from the socket directly into guest memory). Blocks are resolved by the
/// index the stepper gives them, once per block and section, not by name per page. While it
/// exists, a loader of a large guest (at least [`PREFAULT_MIN`] bytes) keeps a background thread
/// faulting the destination's memory in ahead of the pages
/// ([`GuestRam::prefault_in_background`]).
#[derive(Debug)]
pub struct RamLoader<'a> {
    ram: &'a GuestRam,
    /// The regions, in migration order.
    regions: Vec<&'a GuestRegionMmap<AtomicBitmap>>,
    /// Region of each stepper block index, resolved on first use.
    map: Vec<Option<usize>>,
    stepper: RamStepper,
    section_id: Option<u32>,
    ended: bool,
    counts: RamCounts,
    _prefault: Option<crate::memory::Prefault>,
}

/// Smallest guest for which a [`RamLoader`] starts a prefault thread.
pub const PREFAULT_MIN: u64 = 64 << 20;

fn invalid(message: String, pos: u64) -> vmstate_runtime::Error {
    vmstate_runtime::Error::new(ErrorKind::ValidationFailed { message }, pos)
}

impl<'a> RamLoader<'a> {
    /// A loader writing into `ram`.
    ///
    /// # Errors
    /// Never for the fixed 4096-byte page size (kept fallible for other target page sizes).
    pub fn new(ram: &'a GuestRam) -> Result<Self> {
        let prefault = (ram.total_bytes() >= PREFAULT_MIN).then(|| ram.prefault_in_background());
        Ok(RamLoader {
            ram,
            regions: vm_memory::GuestMemoryBackend::iter(ram.memory()).collect(),
            map: Vec::new(),
            stepper: RamStepper::new(PAGE_SIZE)?,
            section_id: None,
            ended: false,
            counts: RamCounts::default(),
            _prefault: prefault,
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
            regions,
            map,
            stepper,
            counts,
            ..
        } = self;
        let names = ram.names();
        *counts += stepper.step_into(r, start, |r, idx, block, offset, rec| {
            let region = resolve(names, regions, map, idx, &block.idstr, pos)?;
            store_page(region, &block.idstr, offset, rec, r, pos)
        })?;
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

/// The region of stepper block `idx` (named `name`): looked up by name on its first use in the
/// section, by index afterwards.
fn resolve<'r>(
    names: &[String],
    regions: &[&'r GuestRegionMmap<AtomicBitmap>],
    map: &mut Vec<Option<usize>>,
    idx: usize,
    name: &str,
    pos: u64,
) -> vmstate_runtime::Result<&'r GuestRegionMmap<AtomicBitmap>> {
    let unknown = || {
        vmstate_runtime::Error::new(
            ErrorKind::UnknownRamBlock {
                name: name.to_owned(),
            },
            pos,
        )
    };
    let region = match map.get(idx).copied().flatten() {
        Some(i) => i,
        None => {
            let i = names.iter().position(|n| n == name).ok_or_else(unknown)?;
            if map.len() <= idx {
                // idx indexes the stepper's blocks, at most MAX_RAM_BLOCKS of them.
                map.resize(idx + 1, None);
            }
            map[idx] = Some(i);
            i
        }
    };
    regions.get(region).copied().ok_or_else(unknown)
}

/// Writes one validated record into guest memory, re-checking the bounds against the
/// destination's own region (defence in depth: the stepper checked the announced length). A
/// `PAGE` record's data is read from `r` straight into the page.
fn store_page<R: Reader + ?Sized>(
    region: &GuestRegionMmap<AtomicBitmap>,
    block: &str,
    offset: u64,
    rec: PageRecord,
    r: &mut R,
    pos: u64,
) -> vmstate_runtime::Result<()> {
    static ZEROS: [u8; PAGE] = [0; PAGE];
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
    let page = region
        .get_slice(MemoryRegionAddress(offset), PAGE)
        .map_err(|e| invalid(format!("cannot write guest memory: {e}"), pos))?;
    match rec {
        PageRecord::Page => crate::sys::page_mut(&page, |dst| r.read_into(dst)),
        PageRecord::Fill(0) => {
            page.copy_from(&ZEROS);
            Ok(())
        }
        PageRecord::Fill(b) => {
            page.copy_from(&[b; PAGE]);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

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

    /// The loader's own bound check (behind the stepper's): a record outside the destination's
    /// region is refused before a byte is read or written, whatever the stepper let through.
    #[test]
    fn store_page_checks_the_region_itself() {
        use vmstate_runtime::SliceReader;
        let ram = GuestRam::new(&[("pc.ram", 0, 2 * PAGE)]).unwrap();
        let region = ram.memory().iter().next().unwrap();
        let data = [0x5au8; PAGE];
        for offset in [2 * PAGE as u64, 3 * PAGE as u64, !0xfffu64, 0x800] {
            let mut r = SliceReader::new(&data);
            let e = store_page(region, "pc.ram", offset, PageRecord::Page, &mut r, 9).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::RamPageOutOfRange { offset: o, .. } if *o == offset),
                "{offset:#x}: {e}"
            );
            assert_eq!(r.position(), 0, "{offset:#x}: data consumed");
        }
        assert!(ram.snapshot().unwrap()[0].1.iter().all(|&b| b == 0));
        let mut r = SliceReader::new(&data);
        store_page(region, "pc.ram", PAGE as u64, PageRecord::Page, &mut r, 9).unwrap();
        assert_eq!(r.position(), PAGE as u64);
        assert!(ram.snapshot().unwrap()[0].1[PAGE..]
            .iter()
            .all(|&b| b == 0x5a));
        // A truncated page: an error, never a partial success.
        let mut r = SliceReader::new(&data[..100]);
        assert!(store_page(region, "pc.ram", 0, PageRecord::Page, &mut r, 9).is_err());
    }

    /// Zero detection reads guest memory in place: any single non-zero byte of a page counts.
    #[test]
    fn zero_detection() {
        use crate::sys::is_zero;
        let ram = GuestRam::new(&[("pc.ram", 0, 2 * PAGE)]).unwrap();
        let region = ram.memory().iter().next().unwrap();
        let page = |o: u64| region.get_slice(MemoryRegionAddress(o), PAGE).unwrap();
        assert!(is_zero(&page(0)));
        for i in [0, 7, 8, 63, 64, 511, 512, PAGE - 1] {
            ram.memory()
                .write_slice(&[0x80], GuestAddress(PAGE as u64 + i as u64))
                .unwrap();
            assert!(!is_zero(&page(PAGE as u64)), "byte {i}");
            ram.memory()
                .write_slice(&[0], GuestAddress(PAGE as u64 + i as u64))
                .unwrap();
            assert!(is_zero(&page(PAGE as u64)), "byte {i} cleared");
        }
        assert!(is_zero(&page(0)));
    }
}

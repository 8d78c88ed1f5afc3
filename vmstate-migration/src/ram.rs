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
            crate::sys::prefetch(region, offset + crate::sys::PREFETCH_PAGES * PAGE_SIZE);
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
/// Page data is read from the stream straight into guest memory. A page whose data the reader
/// has buffered is copied from there; when the reader has to go to the socket for it, one
/// `readv` ([`Reader::read_into_ahead`]) reads the rest of the page into it *and* the records that
/// would follow a run of pages: their 8-byte headers into a small array, their pages into the
/// next pages of guest memory, for up to [`AHEAD_MAX`] pages no record of this load has stored
/// yet. The records that arrived whole and exactly as guessed (`PAGE | CONTINUE` of the next
/// page) are stored without another copy; everything else is given back to the reader
/// ([`Reader::unread`]) and parsed as usual, and a page it had landed in is zeroed again (a page
/// no record has stored is assumed zero, as QEMU assumes of a destination's memory). The window
/// adapts: it doubles while guesses hold, shrinks to the run it saw when one fails, and pauses
/// when one fails at once (a guest with many zero pages). Nothing is read ahead while the
/// stream's integrity check runs or once page channels store pages of the same load.
///
/// Blocks are resolved by the index the stepper gives them, once per block and section, not by
/// name per page. The loader starts no prefault thread: with transparent huge pages the
/// receiving thread's own faults were faster (see docs/benchmarks.md); a VMM that wants one has
/// [`GuestRam::prefault_in_background`].
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
    /// Per region (migration order): bit `i % 64` of word `i / 64` is set once a record of this
    /// load stored page `i`. Sized by the destination's own blocks.
    received: Vec<Vec<u64>>,
    /// How far the next page read from the socket reads ahead.
    ahead: ReadAhead,
    /// Set once other writers (page channels) store pages of this load too: no read-ahead then
    /// (a page this loader has not stored may be theirs).
    shared: std::rc::Rc<std::cell::Cell<bool>>,
    /// Pages stored by read-ahead.
    read_ahead: u64,
}

/// Most pages a [`RamLoader`] reads ahead of a page (one `readv` of `2 × AHEAD_MAX + 2` slices,
/// 513 KiB).
pub const AHEAD_MAX: usize = 128;

/// PAGE records read the plain way after a read-ahead found something else right after its page.
const AHEAD_PAUSE: u32 = 256;

/// The read-ahead window of a [`RamLoader`]: it doubles while the pages that follow are what it
/// guessed, shrinks to the run it saw when they are not, and pauses when a guess failed at once
/// (a guest with many zero pages: every guess would cost a give-back).
#[derive(Debug, Clone, Copy)]
struct ReadAhead {
    pages: usize,
    pause: u32,
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
        Ok(RamLoader {
            ram,
            regions: vm_memory::GuestMemoryBackend::iter(ram.memory()).collect(),
            map: Vec::new(),
            stepper: RamStepper::new(PAGE_SIZE)?,
            section_id: None,
            ended: false,
            counts: RamCounts::default(),
            received: vm_memory::GuestMemoryBackend::iter(ram.memory())
                .map(|r| vec![0u64; (r.len() / PAGE_SIZE).div_ceil(64) as usize])
                .collect(),
            ahead: ReadAhead {
                pages: AHEAD_MAX,
                pause: 0,
            },
            shared: std::rc::Rc::default(),
            read_ahead: 0,
        })
    }

    /// A switch that, once set, stops this loader's read-ahead for good: for page channels,
    /// which store pages of the same load on their own threads.
    pub(crate) fn read_ahead_off(&self) -> std::rc::Rc<std::cell::Cell<bool>> {
        self.shared.clone()
    }

    /// Pages whose data arrived by read-ahead, straight into guest memory (the others were
    /// copied from the reader's buffer, or read into their page alone).
    #[must_use]
    pub fn read_ahead_pages(&self) -> u64 {
        self.read_ahead
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
            received,
            ahead,
            shared,
            read_ahead,
            ..
        } = self;
        let shared = shared.get();
        let names = ram.names();
        *counts += stepper.step_into_ahead(r, start, |r, idx, block, offset, rec| {
            let i = resolve(names, regions.len(), map, idx, &block.idstr, pos)?;
            let (region, got) = (regions[i], &mut received[i]);
            let more = match rec {
                PageRecord::Page if shared => {
                    store_page(region, &block.idstr, offset, rec, r, pos)?;
                    0
                }
                PageRecord::Page => store_run(region, &block.idstr, offset, r, pos, got, ahead)?,
                PageRecord::Fill(_) => {
                    store_page(region, &block.idstr, offset, rec, r, pos)?;
                    0
                }
            };
            *read_ahead += more;
            let first = offset / PAGE_SIZE;
            for p in first..=first + more {
                if let Some(w) = usize::try_from(p / 64).ok().and_then(|w| got.get_mut(w)) {
                    *w |= 1 << (p % 64);
                }
            }
            Ok(more)
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

/// The region index of stepper block `idx` (named `name`): looked up by name on its first use in
/// the section, by index afterwards.
fn resolve(
    names: &[String],
    regions: usize,
    map: &mut Vec<Option<usize>>,
    idx: usize,
    name: &str,
    pos: u64,
) -> vmstate_runtime::Result<usize> {
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
    if region < regions {
        Ok(region)
    } else {
        Err(unknown())
    }
}

/// Whether page `p` is marked in `bits`.
fn is_set(bits: &[u64], p: u64) -> bool {
    usize::try_from(p / 64)
        .ok()
        .and_then(|w| bits.get(w))
        .is_some_and(|w| w & (1 << (p % 64)) != 0)
}

/// Stores the `PAGE` record at `offset` and, when the reader has to go to the socket for its
/// data, reads ahead in the same `readv`: the record headers that would follow a run of pages
/// into a small array, and their pages straight into guest memory, for the pages after this one
/// that no record of this load has stored yet (`received`). Returns how many of those records
/// arrived whole and exactly as guessed (`PAGE | CONTINUE` of the next page); they count as
/// stored. Whatever else arrived is given back to the reader, and a page it landed in is zeroed
/// again: a page no record has stored is assumed zero, as QEMU assumes of a destination's
/// memory.
fn store_run<R: Reader + ?Sized>(
    region: &GuestRegionMmap<AtomicBitmap>,
    block: &str,
    offset: u64,
    r: &mut R,
    pos: u64,
    received: &[u64],
    ahead: &mut ReadAhead,
) -> vmstate_runtime::Result<u64> {
    const REC: usize = 8 + PAGE;
    let first = offset / PAGE_SIZE;
    let pages = region.len() / PAGE_SIZE;
    let mut n = 0usize;
    if ahead.pause > 0 {
        ahead.pause -= 1;
    } else if r.available() < PAGE && offset % PAGE_SIZE == 0 {
        while n < ahead.pages
            && first + 1 + (n as u64) < pages
            && !is_set(received, first + 1 + n as u64)
        {
            n += 1;
        }
    }
    if n == 0 {
        store_page(region, block, offset, PageRecord::Page, r, pos)?;
        return Ok(0);
    }
    let expect = |i: usize| {
        ((offset + (i as u64 + 1) * PAGE_SIZE) | FLAG_PAGE | FLAG_CONTINUE).to_be_bytes()
    };
    // Inside the region: `first + n < pages`.
    let run = region
        .get_slice(MemoryRegionAddress(offset), (n + 1) * PAGE)
        .map_err(|e| invalid(format!("cannot write guest memory: {e}"), pos))?;
    crate::sys::page_mut(&run, |mem| {
        let (dst, rest) = mem.split_at_mut(PAGE);
        let mut heads = [[0u8; 8]; AHEAD_MAX + 1];
        let got = {
            let (lead, tail) = heads.split_at_mut(n);
            let mut iov = Vec::with_capacity(2 * n + 1);
            for (h, p) in lead.iter_mut().zip(rest.chunks_exact_mut(PAGE)) {
                iov.push(std::io::IoSliceMut::new(h));
                iov.push(std::io::IoSliceMut::new(p));
            }
            iov.push(std::io::IoSliceMut::new(&mut tail[0]));
            r.read_into_ahead(dst, &mut iov)?
        };
        let mut c = 0;
        while c < n && got >= (c + 1) * REC && heads[c] == expect(c) {
            c += 1;
        }
        let used = c * REC;
        let guessed = got >= used + 8 && (c == n || heads[c] == expect(c));
        if got > used {
            // Give back what follows the last whole record guessed right.
            let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * (n - c) + 1);
            let mut left = got - used;
            for i in c..=n {
                let h = left.min(8);
                parts.push(&heads[i][..h]);
                left -= h;
                if i < n && left > 0 {
                    let d = left.min(PAGE);
                    parts.push(&rest[i * PAGE..i * PAGE + d]);
                    left -= d;
                }
                if left == 0 {
                    break;
                }
            }
            r.unread(&parts)?;
            // Pages that received bytes of other records: zero again. A record guessed right
            // but cut short keeps its bytes (they are its page's, and it is read again).
            for i in c..n {
                if got <= used + (i - c) * REC + 8 {
                    break;
                }
                if !(i == c && guessed) {
                    rest[i * PAGE..(i + 1) * PAGE].fill(0);
                }
            }
        }
        if got > 0 {
            if c == n {
                ahead.pages = (ahead.pages * 2).min(AHEAD_MAX);
            } else if !guessed && got >= used + 8 {
                ahead.pages = c.max(1);
                if c == 0 {
                    ahead.pause = AHEAD_PAUSE;
                }
            }
        }
        Ok(c as u64)
    })
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

    /// A socket stand-in: at most `step` bytes per read, spread over a `readv`'s slices; the
    /// step changes from read to read (xorshift) so reads end everywhere: inside headers, pages
    /// and the give-back tails.
    struct Socket {
        data: Vec<u8>,
        at: usize,
        x: u64,
        max: usize,
    }

    impl std::io::Read for Socket {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.read_vectored(&mut [std::io::IoSliceMut::new(buf)])
        }
        fn read_vectored(
            &mut self,
            bufs: &mut [std::io::IoSliceMut<'_>],
        ) -> std::io::Result<usize> {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let mut left = (1 + self.x as usize % self.max).min(self.data.len() - self.at);
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                b[..k].copy_from_slice(&self.data[self.at..self.at + k]);
                self.at += k;
                n += k;
                left -= k;
            }
            Ok(n)
        }
    }

    const BLOCKS: [(&str, usize); 3] = [("pc.ram", 300), ("vga.vram", 70), ("rom", 3)];

    /// A START chunk and three PART chunks of a pseudo-random RAM section over [`BLOCKS`]: runs
    /// of consecutive pages (data, zero and fill records), gaps, block switches, pages sent
    /// again in later chunks, multifd flush records; the offsets where each chunk starts.
    fn section(seed: u64) -> (Vec<u8>, Vec<usize>) {
        let mut x = seed | 1;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut out = Vec::new();
        let total: usize = BLOCKS.iter().map(|(_, p)| p * PAGE).sum();
        out.extend_from_slice(&(total as u64 | FLAG_MEM_SIZE).to_be_bytes());
        for (name, pages) in BLOCKS {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&((pages * PAGE) as u64).to_be_bytes());
        }
        out.extend_from_slice(&FLAG_EOS.to_be_bytes());
        let mut starts = vec![0];
        for chunk in 0..3 {
            starts.push(out.len());
            let mut last = None;
            for _ in 0..(if chunk == 0 { 12 } else { 6 }) {
                let b = rnd(BLOCKS.len() as u64) as usize;
                let pages = BLOCKS[b].1 as u64;
                let first = rnd(pages);
                let span = if rnd(4) == 0 { pages } else { 40 };
                let len = 1 + rnd(span);
                let zeros = rnd(4); // 0: none; else one in 2^k
                for p in first..(first + len).min(pages) {
                    if rnd(50) == 0 {
                        out.extend_from_slice(&0x200u64.to_be_bytes());
                    }
                    if rnd(30) == 0 {
                        continue; // a gap
                    }
                    let zero = zeros > 0 && rnd(1 << zeros) == 0;
                    let mut flags = if zero { FLAG_ZERO } else { FLAG_PAGE };
                    if last == Some(b) {
                        flags |= FLAG_CONTINUE;
                    }
                    out.extend_from_slice(&((p * PAGE as u64) | flags).to_be_bytes());
                    if last != Some(b) {
                        out.push(BLOCKS[b].0.len() as u8);
                        out.extend_from_slice(BLOCKS[b].0.as_bytes());
                    }
                    last = Some(b);
                    if zero {
                        out.push(if rnd(8) == 0 { 0x5c } else { 0 });
                    } else {
                        let tag = rnd(u64::MAX);
                        for w in 0..PAGE / 8 {
                            out.extend_from_slice(&(tag ^ w as u64).to_le_bytes());
                        }
                    }
                }
            }
            out.extend_from_slice(&FLAG_EOS.to_be_bytes());
        }
        (out, starts)
    }

    fn fresh() -> GuestRam {
        let mut at = 0u64;
        let blocks: Vec<(&str, u64, usize)> = BLOCKS
            .iter()
            .map(|&(n, p)| {
                let b = (n, at, p * PAGE);
                at += 0x100_0000;
                b
            })
            .collect();
        GuestRam::new(&blocks).unwrap()
    }

    /// Loads the chunks of `stream` into `ram`; the counts, the pages read ahead, or the error.
    fn load_chunks<R: Reader>(
        ram: &GuestRam,
        r: &mut R,
        chunks: usize,
    ) -> std::result::Result<(RamCounts, u64), (String, Option<u64>)> {
        let mut l = RamLoader::new(ram).unwrap();
        for c in 0..chunks {
            let pos = r.position();
            if let Err(e) = l.step(r as &mut dyn ErasedReader, c == 0, pos) {
                return Err((format!("{:?}", e.kind()), e.offset()));
            }
        }
        Ok((l.counts(), l.read_ahead_pages()))
    }

    /// The loader reads a RAM section the same with read-ahead (a socket-like reader, reads of
    /// every size) as without it (a slice): same memory, same counts — and, for damaged or cut
    /// streams, the same error at the same offset. Most pages of data-heavy streams arrive by
    /// read-ahead.
    #[test]
    fn read_ahead_changes_nothing_but_the_copies() {
        use vmstate_runtime::{IoReader, SliceReader};
        let mut ahead_total = 0;
        for seed in 1..=12u64 {
            let (stream, starts) = section(seed * 0x9e37_79b9);
            let chunks = starts.len();
            let plain = fresh();
            let want = load_chunks(&plain, &mut SliceReader::new(&stream), chunks).unwrap();
            assert_eq!(want.1, 0, "a slice reads nothing ahead");
            for (max, cap) in [
                (1 << 20, 1 << 18),
                (70_000, 4096),
                (5000, 1 << 16),
                (300, 64),
            ] {
                let ram = fresh();
                let mut r = IoReader::with_capacity(
                    cap,
                    Socket {
                        data: stream.clone(),
                        at: 0,
                        x: seed,
                        max,
                    },
                );
                let got = load_chunks(&ram, &mut r, chunks).unwrap();
                assert_eq!(got.0, want.0, "seed {seed} reads of ≤{max}: counts");
                assert_eq!(
                    ram.snapshot().unwrap(),
                    plain.snapshot().unwrap(),
                    "seed {seed} reads of ≤{max}: memory"
                );
                ahead_total += got.1;
            }
            // Damage: a flipped byte, or the stream cut short.
            for k in 0..8u64 {
                let mut bad = stream.clone();
                let at = (seed * 7919 + k * 104_729) as usize % bad.len();
                if k % 2 == 0 {
                    bad[at] ^= 1 << (k % 8);
                } else {
                    bad.truncate(at);
                }
                let plain = fresh();
                let want = load_chunks(&plain, &mut SliceReader::new(&bad), chunks);
                let ram = fresh();
                let mut r = IoReader::with_capacity(
                    4096,
                    Socket {
                        data: bad.clone(),
                        at: 0,
                        x: seed + k,
                        max: 40_000,
                    },
                );
                let got = load_chunks(&ram, &mut r, chunks);
                match (&want, &got) {
                    (Ok(w), Ok(g)) => {
                        assert_eq!(w.0, g.0, "seed {seed} damage {k}");
                        assert_eq!(ram.snapshot().unwrap(), plain.snapshot().unwrap());
                    }
                    (Err(w), Err(g)) => {
                        // A cut stream ends with an end-of-input error whose "available" part
                        // depends on how much was buffered; kind name and offset must agree.
                        let kind = |s: &str| s.split([' ', '{', '(']).next().unwrap().to_owned();
                        assert_eq!(
                            kind(&w.0),
                            kind(&g.0),
                            "seed {seed} damage {k}: {w:?} / {g:?}"
                        );
                        if !w.0.starts_with("UnexpectedEof") {
                            assert_eq!(w, g, "seed {seed} damage {k}");
                        }
                    }
                    _ => panic!("seed {seed} damage {k}: {want:?} / {got:?}"),
                }
            }
        }
        assert!(
            ahead_total > 100,
            "read-ahead stored only {ahead_total} pages"
        );
    }

    /// A destination full of other data: every page the stream sends replaces it, with
    /// read-ahead at work — with only PAGE records in the first chunk, and with every 40th page
    /// a ZERO record, so that guesses fail inside runs and their bytes are given back.
    #[test]
    fn read_ahead_into_a_used_destination() {
        use vmstate_runtime::IoReader;
        let (stream, starts) = section(0x51);
        for (zero_every, at_least) in [(None, 100), (Some(40), 30)] {
            // Every page of every block, in order, then the section's pages.
            let mut full = stream[..starts[1]].to_vec();
            for (b, &(name, pages)) in BLOCKS.iter().enumerate() {
                for p in 0..pages {
                    let zero = zero_every.is_some_and(|k| p % k == k / 2);
                    let kind = if zero { FLAG_ZERO } else { FLAG_PAGE };
                    let flags = if p == 0 { kind } else { kind | FLAG_CONTINUE };
                    full.extend_from_slice(&(((p * PAGE) as u64) | flags).to_be_bytes());
                    if p == 0 {
                        full.push(name.len() as u8);
                        full.extend_from_slice(name.as_bytes());
                    }
                    if zero {
                        full.push(0);
                    } else {
                        // Every third page of a block is a zero page sent as data.
                        let byte = if p % 3 == 0 {
                            0
                        } else {
                            (b * 50 + p % 200) as u8 + 1
                        };
                        full.extend_from_slice(&[byte; PAGE]);
                    }
                }
            }
            full.extend_from_slice(&FLAG_EOS.to_be_bytes());
            full.extend_from_slice(&stream[starts[1]..]);
            let chunks = starts.len() + 1;
            let want = fresh();
            load_chunks(&want, &mut vmstate_runtime::SliceReader::new(&full), chunks).unwrap();
            let used = fresh();
            for r in used.memory().iter() {
                let len = r.len() as usize;
                r.write_slice(&vec![0xee; len], MemoryRegionAddress(0))
                    .unwrap();
            }
            let mut r = IoReader::with_capacity(
                4096,
                Socket {
                    data: full.clone(),
                    at: 0,
                    x: 3,
                    max: 30_000,
                },
            );
            let (_, ahead) = load_chunks(&used, &mut r, chunks).unwrap();
            assert!(ahead > at_least, "{zero_every:?}: {ahead}");
            assert_eq!(
                used.snapshot().unwrap(),
                want.snapshot().unwrap(),
                "{zero_every:?}"
            );
        }
    }
}

//! The stream's own integrity check: a checksum ahead of every run of RAM pages and every
//! device section, so a transport that changes, drops or adds bytes is caught as the damaged
//! part arrives, and named (issue "did it really work").
//!
//! Off by default: then the stream is QEMU's, byte for byte. With
//! [`Settings::integrity`](crate::Settings::integrity) the source adds an iterative section
//! `vmstate/integrity` (section id 0; `vmstate/channels` is 1, `ram` 2, the devices follow
//! from 3) whose chunks carry CRC-32 (IEEE) checksums of the stream's own bytes. Every
//! destination of this crate reads and checks them when present; with
//! [`ReceiveSettings::require_integrity`](crate::ReceiveSettings::require_integrity) it refuses
//! a stream without them before the first page. QEMU does not know the section and refuses such
//! a stream, so a stream for QEMU is written with the check off.
//!
//! ```text
//! START  vmstate/integrity v1   u8 algorithm (1 = CRC-32)
//! PART   u8 kind  be64 len  be32 crc  what    a record: the next `len` bytes (a unit)
//!          kind 1 (bytes):    counted name
//!          kind 2 (RAM run):  counted block  be64 first  be64 last  be32 records
//!          kind 3 (section):  counted idstr  be32 instance
//! END    be32 units                            the number of records since START
//! ```
//!
//! **Units.** After the START chunk, the main connection is a tiling of records and units: each
//! record is followed by its unit (the `len` bytes after the record's footer), and the next
//! record begins exactly where that unit ends, up to the END chunk. The source makes a unit of
//! the `ram` START chunk, of every RAM chunk — cut into runs of at most [`RUN_PAGES`] records,
//! one block each, so a RAM unit names its block and page range — and of every device section.
//! EOF and the vmdesc follow the END chunk unchecked (a description the load does not use); the
//! QEMU header and configuration section come before START (checked against the destination's
//! machine anyway).
//!
//! **Checks.** A unit of at most [`MAX_AHEAD`] bytes that is not a RAM run (a device section,
//! the block list) is checked in the destination's read buffer *before* anything parses it: a
//! damaged section is reported as damaged, never as a bogus field value. A RAM run is checked as
//! its last byte is read (page data goes straight into guest memory, which is scratch until
//! `LOADED`). If the parse fails inside a unit first (a dropped byte shifts every record after
//! it), the destination reads the rest of the unit and checks it: a mismatch is reported as the
//! damaged unit, with the parse error as a consequence. A record that does not begin where the
//! previous unit ended (a lost or damaged record), or an END whose count differs, fails too.
//!
//! The source hashes exactly the bytes it sends: with the check on, each unit is assembled in a
//! staging buffer (pages are copied out of guest memory, which a running guest may change during
//! the send: such a page is dirty and sent again, but the bytes on the wire must match their
//! checksum) and written after its record. That copy and CRC-32 on both sides are the cost
//! (measured in docs/benchmarks.md).
//!
//! **Page channels** (`channels > 1`): the main connection is checked as above, and every
//! packet of every page channel ends with a CRC-32 of its bytes (the channels section's START
//! says so, version 2 with a flags byte; see [`crate::channels`]). A channel reader reads a
//! packet's pages into a buffer, checks them, and only then copies them into guest memory; a
//! damaged packet is named by channel, byte offset, block and page range, and the destination
//! says why on that channel, so the source reports the same.

use std::cell::RefCell;
use std::rc::Rc;

use vmstate_runtime::error::ErrorKind;
use vmstate_runtime::machine::Framing;
use vmstate_runtime::reader::ErasedReader;
use vmstate_runtime::stream::{SectionHandler, SectionKind, SectionMeta, StreamWriter};
use vmstate_runtime::{Reader, Writer};

use crate::error::Result;
use crate::memory::PAGE_SIZE;
use crate::ram::ByteSink;

/// Idstr of the integrity section.
pub const INTEGRITY_IDSTR: &str = "vmstate/integrity";
/// Its version.
pub const INTEGRITY_VERSION: u32 = 1;
/// Its section id.
pub const INTEGRITY_SECTION_ID: u32 = 0;
/// Algorithm byte: CRC-32 (IEEE 802.3, as zlib computes it).
pub const ALG_CRC32: u8 = 1;
/// RAM records per run (1 MiB of pages).
pub const RUN_PAGES: u32 = 256;
/// Largest unit checked before it is parsed.
pub const MAX_AHEAD: usize = 256 << 10;
/// Largest unit a destination accepts (a device section of at most this size, a RAM run).
pub const MAX_UNIT: u64 = 64 << 20;

const KIND_BYTES: u8 = 1;
const KIND_RAM_RUN: u8 = 2;
const KIND_SECTION: u8 = 3;

/// What a unit carries (named in its record and in the destination's error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit<'a> {
    /// Stream structure (the RAM block list, an empty chunk), by name.
    Bytes(&'a str),
    /// RAM records of one block: page offsets `first..=last`, `records` of them.
    RamRun {
        /// Block name.
        block: &'a str,
        /// Offset of the lowest page.
        first: u64,
        /// Offset of the highest page.
        last: u64,
        /// Records in the run.
        records: u32,
    },
    /// A device section.
    Section {
        /// Its idstr.
        idstr: &'a str,
        /// Its instance id in the stream.
        instance: u32,
    },
}

fn crc(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

// ------------------------------------------------------------------------------------------
// Source

/// Writes the START chunk.
pub(crate) fn start_chunk(framing: Framing) -> Result<Vec<u8>> {
    let mut s = StreamWriter::new(Vec::new(), framing);
    s.start_header(INTEGRITY_SECTION_ID, INTEGRITY_IDSTR, 0, INTEGRITY_VERSION)?;
    s.payload().write_u8(ALG_CRC32)?;
    s.footer(INTEGRITY_SECTION_ID)?;
    Ok(s.into_inner())
}

/// The record chunk for `unit` whose bytes are `bytes`.
pub(crate) fn record(framing: Framing, unit: &Unit<'_>, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut s = StreamWriter::new(Vec::with_capacity(64), framing);
    s.chunk_header(INTEGRITY_SECTION_ID, false)?;
    let p = s.payload();
    let kind = match unit {
        Unit::Bytes(_) => KIND_BYTES,
        Unit::RamRun { .. } => KIND_RAM_RUN,
        Unit::Section { .. } => KIND_SECTION,
    };
    p.write_u8(kind)?;
    p.write_be64(bytes.len() as u64)?;
    p.write_be32(crc(bytes))?;
    match *unit {
        Unit::Bytes(name) => p.write_counted_str(name)?,
        Unit::RamRun {
            block,
            first,
            last,
            records,
        } => {
            p.write_counted_str(block)?;
            p.write_be64(first)?;
            p.write_be64(last)?;
            p.write_be32(records)?;
        }
        Unit::Section { idstr, instance } => {
            p.write_counted_str(idstr)?;
            p.write_be32(instance)?;
        }
    }
    s.footer(INTEGRITY_SECTION_ID)?;
    Ok(s.into_inner())
}

/// The END chunk after `units` records.
pub(crate) fn end_chunk(framing: Framing, units: u32) -> Result<Vec<u8>> {
    let mut s = StreamWriter::new(Vec::with_capacity(16), framing);
    s.chunk_header(INTEGRITY_SECTION_ID, true)?;
    s.payload().write_be32(units)?;
    s.footer(INTEGRITY_SECTION_ID)?;
    Ok(s.into_inner())
}

/// Sends the device part of the stream (`tail`: the FULL sections of `sections`, EOF and the
/// vmdesc, as the registry saved them), one unit per section, then ends the check with
/// `end` (called between the last section and EOF).
pub(crate) fn send_devices<S: ByteSink + ?Sized>(
    sink: &mut S,
    footers: bool,
    tail: &[u8],
    sections: &[vmstate_runtime::registry::SectionInfo],
    end: impl FnOnce(&mut S) -> Result<()>,
) -> Result<()> {
    let footer = if footers { 5 } else { 0 };
    let mut at = 0usize;
    for s in sections {
        let start = usize::try_from(s.offset)
            .unwrap_or(usize::MAX)
            .clamp(at, tail.len());
        let len = StreamWriter::<Vec<u8>>::full_header_len(&s.key.idstr)
            .saturating_add(s.payload_len)
            .saturating_add(footer);
        let stop = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(tail.len());
        // Sections follow one another; anything between them would be unchecked.
        sink.send(&tail[at..stop])?;
        sink.seal(&Unit::Section {
            idstr: &s.key.idstr,
            instance: s.stream_instance_id,
        })?;
        at = stop;
    }
    end(sink)?;
    sink.send(&tail[at..])
}

// ------------------------------------------------------------------------------------------
// Destination

/// The unit being read.
#[derive(Debug, Clone)]
struct Expect {
    what: String,
    start: u64,
    len: u64,
    crc: u32,
    /// Checked in the read buffer already (only its end matters).
    checked: bool,
}

#[derive(Debug, Default)]
struct TapState {
    expect: Option<Expect>,
    hasher: crc32fast::Hasher,
    /// Bytes of the unit hashed so far.
    hashed: u64,
    /// The stream's integrity START was read.
    started: bool,
}

/// Shared between the [`TapReader`] and the [`IntegrityLoader`] of one load.
#[derive(Debug, Clone, Default)]
pub struct Tap(Rc<RefCell<TapState>>);

impl TapState {
    /// Feeds the bytes at stream offset `pos` (consumed through the reader); the error of a
    /// unit completed with a wrong checksum.
    fn feed(&mut self, pos: u64, bytes: &[u8]) -> vmstate_runtime::Result<()> {
        let Some(e) = &self.expect else {
            return Ok(());
        };
        if e.checked {
            if pos + bytes.len() as u64 >= e.start + e.len {
                self.expect = None;
            }
            return Ok(());
        }
        let end = e.start + e.len;
        let skip = e.start.saturating_sub(pos);
        let lo = usize::try_from(skip).unwrap_or(usize::MAX).min(bytes.len());
        let hi = usize::try_from(end.saturating_sub(pos))
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        if lo < hi {
            self.hasher.update(&bytes[lo..hi]);
            self.hashed += (hi - lo) as u64;
        }
        if self.hashed < e.len {
            return Ok(());
        }
        let got = std::mem::take(&mut self.hasher).finalize();
        let e = self.expect.take().unwrap_or_else(|| unreachable!());
        self.hashed = 0;
        if got == e.crc {
            return Ok(());
        }
        Err(damaged(
            format!("{} (stream bytes {:#x}..{:#x})", e.what, e.start, end),
            format!(
                "CRC-32 {got:#010x} of the bytes received, {:#010x} of those sent",
                e.crc
            ),
            e.start,
        ))
    }
}

/// A reader that feeds every byte consumed through it to the check of the unit being read
/// (peeked bytes are not consumed; bytes read straight into guest memory are hashed there).
#[derive(Debug)]
pub struct TapReader<R> {
    inner: R,
    tap: Tap,
}

impl<R: Reader> TapReader<R> {
    /// Wraps `inner`; `tap` goes to the [`IntegrityLoader`] of the same load.
    pub fn new(inner: R, tap: Tap) -> Self {
        TapReader { inner, tap }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The wrapped reader.
    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Reader> Reader for TapReader<R> {
    fn take(&mut self, n: usize) -> vmstate_runtime::Result<&[u8]> {
        let pos = self.inner.position();
        let bytes = self.inner.take(n)?;
        self.tap.0.borrow_mut().feed(pos, bytes)?;
        Ok(bytes)
    }

    fn peek(&mut self, n: usize) -> vmstate_runtime::Result<Option<&[u8]>> {
        self.inner.peek(n)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }

    fn read_into(&mut self, dst: &mut [u8]) -> vmstate_runtime::Result<()> {
        let pos = self.inner.position();
        self.inner.read_into(dst)?;
        self.tap.0.borrow_mut().feed(pos, dst)
    }

    /// Reads ahead only while no integrity check is under way (a stream without the check, or
    /// before its START): checked bytes are hashed once, in order, and never given back.
    fn read_into_ahead(
        &mut self,
        dst: &mut [u8],
        ahead: &mut [std::io::IoSliceMut<'_>],
    ) -> vmstate_runtime::Result<usize> {
        let state = self.tap.0.borrow();
        if state.started || state.expect.is_some() {
            drop(state);
            self.read_into(dst)?;
            return Ok(0);
        }
        drop(state);
        self.inner.read_into_ahead(dst, ahead)
    }

    fn unread(&mut self, parts: &[&[u8]]) -> vmstate_runtime::Result<()> {
        self.inner.unread(parts)
    }

    fn available(&self) -> usize {
        self.inner.available()
    }
}

/// The START chunk of one of our own iterative sections (`vmstate/…`): once per stream,
/// instance 0, the one version this build reads.
pub(crate) fn check_start(
    meta: &SectionMeta<'_>,
    started: bool,
    versions: std::ops::RangeInclusive<u32>,
) -> vmstate_runtime::Result<()> {
    if started || meta.instance_id != 0 {
        return Err(meta.unknown());
    }
    if !versions.contains(&meta.version) {
        return Err(bad(
            format!(
                "`{}` version {} (this build reads {}..={})",
                meta.idstr,
                meta.version,
                versions.start(),
                versions.end()
            ),
            meta.offset,
        ));
    }
    Ok(())
}

fn damaged(what: String, detail: String, pos: u64) -> vmstate_runtime::Error {
    vmstate_runtime::Error::new(ErrorKind::IntegrityMismatch { what, detail }, pos)
}

fn bad(message: String, pos: u64) -> vmstate_runtime::Error {
    vmstate_runtime::Error::new(ErrorKind::ValidationFailed { message }, pos)
}

/// The destination's handler of `vmstate/integrity` (see the module docs); the `require` rule
/// before the first page is [`RequireIntegrity`]'s.
#[derive(Debug)]
pub struct IntegrityLoader {
    tap: Tap,
    footer: u64,
    require: bool,
    started: bool,
    ended: bool,
    /// Records read.
    units: u32,
    /// Where the next record must begin (the end of the last unit).
    next: u64,
}

impl IntegrityLoader {
    /// A handler sharing `tap` with the load's [`TapReader`]; `footers` as the machine's
    /// framing; with `require`, a stream without the check is refused.
    #[must_use]
    pub fn new(tap: Tap, footers: bool, require: bool) -> Self {
        IntegrityLoader {
            tap,
            footer: if footers { 5 } else { 0 },
            require,
            started: false,
            ended: false,
            units: 0,
            next: 0,
        }
    }

    /// Whether the stream carries the check.
    #[must_use]
    pub fn active(&self) -> bool {
        self.started
    }

    /// Units checked.
    #[must_use]
    pub fn units(&self) -> u32 {
        self.units
    }

    /// After the load failed with `e`: if the failure is inside a unit not checked yet (a
    /// parse that went wrong on damaged bytes), reads the rest of the unit from `r` and checks
    /// it. Returns the damage when the unit's checksum differs (the real cause, with `e` as its
    /// consequence), else `e`.
    pub fn diagnose<R: Reader>(
        &self,
        r: &mut TapReader<R>,
        e: vmstate_runtime::Error,
    ) -> vmstate_runtime::Error {
        if matches!(
            e.kind(),
            ErrorKind::IntegrityMismatch { .. }
                | ErrorKind::Io(_)
                | ErrorKind::UnexpectedEof { .. }
        ) {
            return e;
        }
        let Some(x) = self.tap.0.borrow().expect.clone() else {
            return e;
        };
        if x.checked {
            return e;
        }
        let mut left = (x.start + x.len).saturating_sub(r.position());
        while left > 0 {
            let n = usize::try_from(left.min(64 << 10)).unwrap_or(64 << 10);
            match r.take(n) {
                Ok(_) => left -= n as u64,
                Err(d) if matches!(d.kind(), ErrorKind::IntegrityMismatch { .. }) => {
                    return damaged_with(&d, &e)
                }
                // A unit that does not arrive whole is not diagnosed.
                Err(_) => return e,
            }
        }
        e
    }

    fn start(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        check_start(meta, self.started, INTEGRITY_VERSION..=INTEGRITY_VERSION)?;
        let alg = r.read_u8()?;
        if alg != ALG_CRC32 {
            return Err(bad(
                format!("integrity algorithm {alg} (this build reads {ALG_CRC32}, CRC-32)"),
                meta.offset,
            ));
        }
        self.started = true;
        self.tap.0.borrow_mut().started = true;
        // The first record follows the START chunk's footer.
        self.next = r.erased_position() + self.footer;
        Ok(())
    }

    /// A record is where the previous unit ended (nothing came between unchecked).
    fn contiguous(&self, meta: &SectionMeta<'_>) -> vmstate_runtime::Result<()> {
        if meta.offset == self.next {
            return Ok(());
        }
        Err(damaged(
            format!(
                "the stream at bytes {:#x}..{:#x}",
                self.next.min(meta.offset),
                self.next.max(meta.offset)
            ),
            format!(
                "an integrity record begins at {:#x} where the previous unit ended at {:#x} (a \
                 record was lost or its length damaged)",
                meta.offset, self.next
            ),
            meta.offset,
        ))
    }

    fn record(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        self.contiguous(meta)?;
        let kind = r.read_u8()?;
        let len = r.read_be64()?;
        let sent = r.read_be32()?;
        let what = match kind {
            KIND_BYTES => format!("the stream's {}", r.read_counted_str()?),
            KIND_RAM_RUN => {
                let block = r.read_counted_str()?;
                let first = r.read_be64()?;
                let last = r.read_be64()?;
                let records = r.read_be32()?;
                format!(
                    "RAM block `{block}` pages {:#x}..={:#x} ({records} records)",
                    first / PAGE_SIZE,
                    last / PAGE_SIZE
                )
            }
            KIND_SECTION => {
                let idstr = r.read_counted_str()?;
                let instance = r.read_be32()?;
                format!("section `{idstr}` instance {instance}")
            }
            k => {
                return Err(bad(
                    format!("unknown integrity record kind {k}"),
                    meta.offset,
                ))
            }
        };
        if len > MAX_UNIT {
            return Err(bad(
                format!("integrity record for {what}: a unit of {len} bytes, at most {MAX_UNIT}"),
                meta.offset,
            ));
        }
        let start = r.erased_position() + self.footer;
        self.units += 1;
        self.next = start + len;
        // Small units other than page runs are checked before anything parses them.
        let ahead = kind != KIND_RAM_RUN && len <= MAX_AHEAD as u64;
        if ahead {
            let (f, n) = (self.footer as usize, len as usize);
            let Some(bytes) = r.erased_peek(f + n)? else {
                return Err(damaged(
                    what,
                    format!("the stream ends inside its {len} bytes at {start:#x}"),
                    meta.offset,
                ));
            };
            let got = crc(&bytes[f..]);
            if got != sent {
                return Err(damaged(
                    format!(
                        "{what} (stream bytes {start:#x}..{:#x}; nothing of it was loaded)",
                        start + len
                    ),
                    format!("CRC-32 {got:#010x} of the bytes received, {sent:#010x} of those sent"),
                    meta.offset,
                ));
            }
        }
        let mut t = self.tap.0.borrow_mut();
        t.hasher = crc32fast::Hasher::new();
        t.hashed = 0;
        t.expect = Some(Expect {
            what,
            start,
            len,
            crc: sent,
            checked: ahead,
        });
        Ok(())
    }
}

/// The damage found by [`IntegrityLoader::diagnose`], naming the parse error it caused.
fn damaged_with(
    damage: &vmstate_runtime::Error,
    parse: &vmstate_runtime::Error,
) -> vmstate_runtime::Error {
    match damage.kind() {
        ErrorKind::IntegrityMismatch { what, detail } => damaged(
            what.clone(),
            format!("{detail}; it first failed to parse: {parse}"),
            damage.offset().unwrap_or(0),
        ),
        _ => damage.clone(),
    }
}

impl SectionHandler for IntegrityLoader {
    fn load(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        match meta.kind {
            SectionKind::Start => self.start(meta, r),
            SectionKind::Part if self.started && !self.ended => self.record(meta, r),
            SectionKind::End if self.started && !self.ended => {
                self.contiguous(meta)?;
                let units = r.read_be32()?;
                if units != self.units {
                    return Err(damaged(
                        "the stream".into(),
                        format!(
                            "the source sent {units} checked units, {} arrived",
                            self.units
                        ),
                        meta.offset,
                    ));
                }
                self.ended = true;
                Ok(())
            }
            _ => Err(meta.unknown()),
        }
    }

    fn finish(&mut self, end: u64) -> vmstate_runtime::Result<()> {
        if self.started && !self.ended {
            return Err(damaged(
                "the end of the stream".into(),
                "its final integrity record (the END chunk) never arrived".into(),
                end,
            ));
        }
        if self.require && !self.started {
            return Err(bad(
                "the source sent no integrity checksums, and this destination requires them: \
                 enable Settings::integrity on the source (or turn \
                 ReceiveSettings::require_integrity off here)"
                    .into(),
                end,
            ));
        }
        Ok(())
    }
}

/// A section handler that refuses its first chunk when the integrity check is required but the
/// stream has not started it (the `ram` START is the first thing after the integrity START), so
/// no page is read unchecked.
#[derive(Debug)]
pub struct RequireIntegrity<H> {
    inner: H,
    tap: Tap,
    require: bool,
}

impl<H> RequireIntegrity<H> {
    /// Wraps `inner`; with `require`, its first chunk must come after the integrity START.
    pub fn new(inner: H, tap: Tap, require: bool) -> Self {
        RequireIntegrity {
            inner,
            tap,
            require,
        }
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }
}

impl<H: SectionHandler> SectionHandler for RequireIntegrity<H> {
    fn load(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        if self.require && !self.tap.0.borrow().started {
            return Err(bad(
                format!(
                    "section `{}` arrived but the source sends no integrity checksums, and this \
                     destination requires them: enable Settings::integrity on the source (or \
                     turn ReceiveSettings::require_integrity off here)",
                    meta.idstr
                ),
                meta.offset,
            ));
        }
        self.inner.load(meta, r)
    }

    fn loaded(
        &mut self,
        meta: &SectionMeta<'_>,
        span: &vmstate_runtime::stream::SectionSpan,
    ) -> vmstate_runtime::Result<()> {
        self.inner.loaded(meta, span)
    }

    fn finish(&mut self, end: u64) -> vmstate_runtime::Result<()> {
        self.inner.finish(end)
    }
}

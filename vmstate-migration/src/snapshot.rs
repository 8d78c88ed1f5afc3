//! Snapshot files: device state in QEMU's stream format plus guest memory at fixed, page-aligned
//! file offsets, so that a restore maps guest memory from the file instead of reading it.
//!
//! One file (see `docs/wire-format.md`, "Snapshot files", for the byte layout):
//!
//! ```text
//! 0                header: magic "VMSTSNAP", format version, manifest (writer build, machine
//!                  type, every section written with its version range, RAM blocks, notes)
//! page-aligned     device state: a whole QEMU stream (header, configuration, FULL sections,
//!                  EOF, vmdesc) without a RAM section
//! page-aligned     per RAM block: a bitmap of the pages recorded in this file
//! page-aligned     per RAM block: `size` bytes, page i at `data_offset + i * 4096`; pages not
//!                  written are holes of a sparse file and read as zero
//! ```
//!
//! - **Full snapshot**: the bitmap marks the non-zero pages; every other page is a hole (zero).
//!   The block's data range is exactly its guest memory, so a `MAP_PRIVATE` mapping of it *is*
//!   the restored memory: [`Snapshot::map_ram`] (copy-on-write; the file is never written).
//! - **Incremental snapshot** (flag bit 0): the bitmap marks the pages dirtied since the base
//!   (named by path and id in the manifest); a marked page that is zero is a hole. Restore maps
//!   the base and copies the marked pages over it ([`Snapshot::apply_to`]).
//!
//! Writing ([`write()`]) is parallel: threads scan shares of each block for non-zero pages, then
//! take 1 MiB chunks of recorded pages and `pwrite` each run of non-zero pages at its fixed
//! offset ([`WriteOptions::threads`]); the file does not depend on the thread count.
//!
//! Reading is defensive: the header is read with a bound ([`HEADER_MAX`]), every count has a
//! declared maximum, every offset and length is checked against the file's length (a truncated
//! file or a bitmap claiming pages past the file's end is refused before anything is mapped,
//! because touching a mapping beyond the end of its file would be `SIGBUS`), and errors name the
//! file, the offset and what was wrong.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use vm_memory::bitmap::{AtomicBitmap, NewBitmap};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, GuestRegionMmap,
    MemoryRegionAddress,
};
use vmstate_runtime::{LoadReport, MachineType, Registry};

use crate::memory::{GuestMem, GuestRam, PAGE_SIZE};

/// The first 8 bytes of a snapshot file.
pub const MAGIC: [u8; 8] = *b"VMSTSNAP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Most bytes of header (fixed part and manifest) a reader accepts.
pub const HEADER_MAX: u64 = 64 << 10;
/// Most bytes of device state a reader accepts.
pub const DEVICE_STATE_MAX: u64 = 16 << 20;
/// Most sections in a manifest.
pub const MAX_SECTIONS: u32 = 1024;
/// Most RAM blocks in a manifest.
pub const MAX_BLOCKS: u32 = 64;
/// Most notes in a manifest.
pub const MAX_NOTES: u32 = 64;
/// Largest RAM block a reader accepts (1 TiB).
pub const MAX_BLOCK_SIZE: u64 = 1 << 40;
/// Longest chain of increments [`Snapshot::open_chain`] follows.
pub const MAX_CHAIN: usize = 16;
/// Flag bit: the file is an increment over the snapshot named by `base`.
pub const FLAG_INCREMENTAL: u32 = 1;

const PAGE: usize = PAGE_SIZE as usize;
/// Fixed part of the header, before the manifest's variable fields.
const FIXED: u64 = 56;

/// A snapshot error: the file, where in it (when it is about bytes of the file) and what.
#[derive(Debug)]
pub struct SnapshotError {
    /// The file.
    pub file: PathBuf,
    /// The byte offset in the file the error is about, if any.
    pub offset: Option<u64>,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(
                f,
                "{}: at offset {o:#x}: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, SnapshotError>;

fn err(file: &Path, offset: Option<u64>, message: impl Into<String>) -> SnapshotError {
    SnapshotError {
        file: file.to_owned(),
        offset,
        message: message.into(),
    }
}

/// One device section of the stored device state: the same entry a configuration manifest has
/// (`sent` is always true here: the section is in the file).
pub use vmstate_runtime::manifest::SectionEntry;

/// One RAM block of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEntry {
    /// The block name (`pc.ram`).
    pub name: String,
    /// Its guest physical address.
    pub guest_addr: u64,
    /// Its size in bytes (a multiple of 4096).
    pub size: u64,
    /// File offset of its bitmap (`size / 4096` bits, 64-bit little-endian words).
    pub bitmap_offset: u64,
    /// File offset of its page data (page-aligned; `size` bytes).
    pub data_offset: u64,
    /// Pages marked in the bitmap.
    pub pages: u64,
}

impl BlockEntry {
    /// Pages in the block.
    #[must_use]
    pub fn page_count(&self) -> u64 {
        self.size / PAGE_SIZE
    }

    /// Bytes of its bitmap.
    #[must_use]
    pub fn bitmap_len(&self) -> u64 {
        self.page_count().div_ceil(64) * 8
    }
}

/// The header of a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Format version of the file.
    pub format_version: u32,
    /// [`FLAG_INCREMENTAL`] or 0.
    pub flags: u32,
    /// This snapshot's id (an increment names its base by it).
    pub id: u64,
    /// The base's id (incremental), else 0.
    pub base_id: u64,
    /// The base's path, relative to this file's directory (incremental), else empty.
    pub base: String,
    /// File offset of the device state.
    pub device_offset: u64,
    /// Length of the device state.
    pub device_len: u64,
    /// The writer's build (crate version, git describe).
    pub build: String,
    /// The machine type of the device state.
    pub machine: String,
    /// Every device section written.
    pub sections: Vec<SectionEntry>,
    /// The RAM blocks, in guest address order.
    pub blocks: Vec<BlockEntry>,
    /// Free-form notes of the writer (key, value), e.g. what a test checks after restore.
    pub notes: Vec<(String, String)>,
}

impl Manifest {
    /// Whether the file is an increment.
    #[must_use]
    pub fn incremental(&self) -> bool {
        self.flags & FLAG_INCREMENTAL != 0
    }

    /// The value of note `key`.
    #[must_use]
    pub fn note(&self, key: &str) -> Option<&str> {
        self.notes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The header's bytes as written at offset 0 (the header length field included).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4096);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.format_version.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes()); // header length, patched below
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.base_id.to_be_bytes());
        b.extend_from_slice(&self.device_offset.to_be_bytes());
        b.extend_from_slice(&self.device_len.to_be_bytes());
        debug_assert_eq!(b.len() as u64, FIXED);
        let s = |b: &mut Vec<u8>, v: &str| {
            let v = &v.as_bytes()[..v.len().min(255)];
            b.push(v.len() as u8);
            b.extend_from_slice(v);
        };
        s(&mut b, &self.build);
        s(&mut b, &self.machine);
        s(&mut b, &self.base);
        b.extend_from_slice(&(self.sections.len() as u32).to_be_bytes());
        for e in &self.sections {
            s(&mut b, &e.idstr);
            for v in [e.instance_id, e.version, e.min_version, e.max_version] {
                b.extend_from_slice(&v.to_be_bytes());
            }
        }
        b.extend_from_slice(&(self.blocks.len() as u32).to_be_bytes());
        for k in &self.blocks {
            s(&mut b, &k.name);
            for v in [
                k.guest_addr,
                k.size,
                k.bitmap_offset,
                k.data_offset,
                k.pages,
            ] {
                b.extend_from_slice(&v.to_be_bytes());
            }
        }
        b.extend_from_slice(&(self.notes.len() as u32).to_be_bytes());
        for (k, v) in &self.notes {
            s(&mut b, k);
            s(&mut b, v);
        }
        let len = b.len() as u32;
        b[12..16].copy_from_slice(&len.to_be_bytes());
        b
    }
}

/// A bounded cursor over the header bytes; errors name the file offset.
struct Cur<'a> {
    file: &'a Path,
    b: &'a [u8],
    at: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        match self.b.get(self.at..self.at + n) {
            Some(s) => {
                self.at += n;
                Ok(s)
            }
            None => Err(err(
                self.file,
                Some(self.at as u64),
                format!("header ends inside {what}"),
            )),
        }
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    fn str(&mut self, what: &str) -> Result<String> {
        let at = self.at as u64;
        let n = self.take(1, what)?[0] as usize;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| err(self.file, Some(at), format!("{what} is not UTF-8")))
    }
    fn count(&mut self, what: &str, max: u32) -> Result<u32> {
        let at = self.at as u64;
        let n = self.u32(what)?;
        if n > max {
            return Err(err(
                self.file,
                Some(at),
                format!("{n} {what}, more than the {max} allowed"),
            ));
        }
        Ok(n)
    }
}

fn parse_manifest(file: &Path, b: &[u8], file_len: u64) -> Result<Manifest> {
    let mut c = Cur { file, b, at: 0 };
    if c.take(8, "the magic")? != MAGIC {
        return Err(err(
            file,
            Some(0),
            "not a snapshot file (no VMSTSNAP magic)",
        ));
    }
    let format_version = c.u32("the format version")?;
    if format_version != FORMAT_VERSION {
        return Err(err(
            file,
            Some(8),
            format!(
                "snapshot format version {format_version}; this build reads version {FORMAT_VERSION}"
            ),
        ));
    }
    let header_len = u64::from(c.u32("the header length")?);
    if header_len > HEADER_MAX || header_len > b.len() as u64 || header_len < FIXED {
        return Err(err(
            file,
            Some(12),
            format!(
                "header length {header_len} is outside {FIXED}..={} (the file has {file_len} bytes)",
                HEADER_MAX.min(b.len() as u64)
            ),
        ));
    }
    c.b = &b[..header_len as usize];
    let flags = c.u32("the flags")?;
    if flags & !FLAG_INCREMENTAL != 0 {
        return Err(err(file, Some(16), format!("unknown flags {flags:#x}")));
    }
    c.u32("reserved")?;
    let id = c.u64("the snapshot id")?;
    let base_id = c.u64("the base id")?;
    let device_offset = c.u64("the device-state offset")?;
    let device_len = c.u64("the device-state length")?;
    let build = c.str("the writer build")?;
    let machine = c.str("the machine type")?;
    let base = c.str("the base path")?;
    let n = c.count("sections", MAX_SECTIONS)?;
    let mut sections = Vec::with_capacity(n as usize);
    for _ in 0..n {
        sections.push(SectionEntry {
            idstr: c.str("a section idstr")?,
            instance_id: c.u32("a section instance id")?,
            version: c.u32("a section version")?,
            min_version: c.u32("a section's minimum version")?,
            max_version: c.u32("a section's maximum version")?,
            sent: true,
        });
    }
    let n = c.count("RAM blocks", MAX_BLOCKS)?;
    let mut blocks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let at = c.at as u64;
        let k = BlockEntry {
            name: c.str("a block name")?,
            guest_addr: c.u64("a block address")?,
            size: c.u64("a block size")?,
            bitmap_offset: c.u64("a bitmap offset")?,
            data_offset: c.u64("a data offset")?,
            pages: c.u64("a page count")?,
        };
        check_block(file, at, &k, file_len)?;
        blocks.push(k);
    }
    let n = c.count("notes", MAX_NOTES)?;
    let mut notes = Vec::with_capacity(n as usize);
    for _ in 0..n {
        notes.push((c.str("a note key")?, c.str("a note value")?));
    }
    if device_len > DEVICE_STATE_MAX
        || device_offset
            .checked_add(device_len)
            .is_none_or(|e| e > file_len)
    {
        return Err(err(
            file,
            Some(40),
            format!(
                "device state of {device_len} bytes at {device_offset:#x} is past the file's end ({file_len} bytes) or above {DEVICE_STATE_MAX} bytes"
            ),
        ));
    }
    Ok(Manifest {
        format_version,
        flags,
        id,
        base_id,
        base,
        device_offset,
        device_len,
        build,
        machine,
        sections,
        blocks,
        notes,
    })
}

/// Every offset and size of a block against the file: page alignment, size limit, and the
/// bitmap and the whole data range inside the file (so no page of a mapping lies past the end).
fn check_block(file: &Path, at: u64, k: &BlockEntry, file_len: u64) -> Result<()> {
    let bad = |m: String| Err(err(file, Some(at), format!("block `{}`: {m}", k.name)));
    if k.size == 0 || k.size % PAGE_SIZE != 0 || k.size > MAX_BLOCK_SIZE {
        return bad(format!(
            "size {} is not a non-zero multiple of {PAGE_SIZE} up to {MAX_BLOCK_SIZE}",
            k.size
        ));
    }
    if k.guest_addr % PAGE_SIZE != 0 || k.data_offset % PAGE_SIZE != 0 {
        return bad(format!(
            "guest address {:#x} or data offset {:#x} is not page-aligned",
            k.guest_addr, k.data_offset
        ));
    }
    if k.pages > k.page_count() {
        return bad(format!(
            "{} pages recorded in {} pages",
            k.pages,
            k.page_count()
        ));
    }
    let bitmap_end = k.bitmap_offset.checked_add(k.bitmap_len());
    if bitmap_end.is_none_or(|e| e > file_len) {
        return bad(format!(
            "bitmap of {} bytes at {:#x} ends past the file's end ({file_len} bytes)",
            k.bitmap_len(),
            k.bitmap_offset
        ));
    }
    let data_end = k.data_offset.checked_add(k.size);
    if data_end.is_none_or(|e| e > file_len) {
        return bad(format!(
            "page data {:#x}..{:#x} ends past the file's end ({file_len} bytes): truncated file",
            k.data_offset,
            k.data_offset.saturating_add(k.size)
        ));
    }
    Ok(())
}

/// An opened, validated snapshot file.
#[derive(Debug)]
pub struct Snapshot {
    path: PathBuf,
    file: File,
    len: u64,
    /// Its header.
    pub manifest: Manifest,
}

impl Snapshot {
    /// Opens `path` and validates its header against the file (see the module docs).
    ///
    /// # Errors
    /// I/O errors, and every malformed or out-of-bounds header field, with its offset.
    pub fn open(path: &Path) -> Result<Snapshot> {
        let file = File::open(path).map_err(|e| err(path, None, e.to_string()))?;
        let len = file
            .metadata()
            .map_err(|e| err(path, None, e.to_string()))?
            .len();
        let mut head = Vec::new();
        (&file)
            .take(HEADER_MAX)
            .read_to_end(&mut head)
            .map_err(|e| err(path, Some(0), e.to_string()))?;
        let manifest = parse_manifest(path, &head, len)?;
        Ok(Snapshot {
            path: path.to_owned(),
            file,
            len,
            manifest,
        })
    }

    /// Opens an increment and the chain of bases it names (paths relative to each file's
    /// directory, ids checked), oldest (the full snapshot) first.
    ///
    /// # Errors
    /// As [`open`](Self::open), a base whose id differs from the one recorded, or a chain
    /// longer than [`MAX_CHAIN`].
    pub fn open_chain(path: &Path) -> Result<Vec<Snapshot>> {
        let mut chain = vec![Snapshot::open(path)?];
        while let Some(last) = chain.last().filter(|s| s.manifest.incremental()) {
            if chain.len() >= MAX_CHAIN {
                return Err(err(
                    path,
                    None,
                    format!("more than {MAX_CHAIN} snapshots in the chain"),
                ));
            }
            let dir = last.path.parent().unwrap_or(Path::new("."));
            let base_path = dir.join(&last.manifest.base);
            let base = Snapshot::open(&base_path)?;
            if base.manifest.id != last.manifest.base_id {
                return Err(err(
                    &last.path,
                    None,
                    format!(
                        "its base {} has id {:016x}, the increment was made over {:016x}",
                        base_path.display(),
                        base.manifest.id,
                        last.manifest.base_id
                    ),
                ));
            }
            if base.manifest.blocks.len() != last.manifest.blocks.len()
                || base
                    .manifest
                    .blocks
                    .iter()
                    .zip(&last.manifest.blocks)
                    .any(|(a, b)| {
                        a.name != b.name || a.size != b.size || a.guest_addr != b.guest_addr
                    })
            {
                return Err(err(
                    &last.path,
                    None,
                    format!(
                        "its RAM blocks differ from its base {}'s",
                        base_path.display()
                    ),
                ));
            }
            chain.push(base);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length.
    #[must_use]
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The device state: a whole QEMU stream without RAM (bounded by [`DEVICE_STATE_MAX`]).
    ///
    /// # Errors
    /// I/O errors.
    pub fn device_state(&self) -> Result<Vec<u8>> {
        let m = &self.manifest;
        // Bounded: parse_manifest refused more than DEVICE_STATE_MAX and ranges past the end.
        let mut v = vec![0u8; m.device_len as usize];
        self.file
            .read_exact_at(&mut v, m.device_offset)
            .map_err(|e| err(&self.path, Some(m.device_offset), e.to_string()))?;
        Ok(v)
    }

    /// The bitmap of block `i`: bit `p % 64` of word `p / 64` set when page `p` is recorded.
    ///
    /// # Errors
    /// I/O errors; bits past the block's last page, or a count differing from the manifest's.
    pub fn bitmap(&self, i: usize) -> Result<Vec<u64>> {
        let k = self
            .manifest
            .blocks
            .get(i)
            .ok_or_else(|| err(&self.path, None, format!("no RAM block {i}")))?;
        // Bounded by the file's length (checked when opened).
        let mut raw = vec![0u8; k.bitmap_len() as usize];
        self.file
            .read_exact_at(&mut raw, k.bitmap_offset)
            .map_err(|e| err(&self.path, Some(k.bitmap_offset), e.to_string()))?;
        let words: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let pages = k.page_count();
        if let Some(last) = words.last() {
            let used = pages % 64;
            if used != 0 && last >> used != 0 {
                return Err(err(
                    &self.path,
                    Some(k.bitmap_offset + k.bitmap_len() - 8),
                    format!(
                        "block `{}`: the bitmap marks pages past the block's {pages} pages",
                        k.name
                    ),
                ));
            }
        }
        let set: u64 = words.iter().map(|w| u64::from(w.count_ones())).sum();
        if set != k.pages {
            return Err(err(
                &self.path,
                Some(k.bitmap_offset),
                format!(
                    "block `{}`: the bitmap marks {set} pages, the header says {}",
                    k.name, k.pages
                ),
            ));
        }
        Ok(words)
    }

    /// Checks that this build can load the device state into `registry` for `machine`, before
    /// anything is touched: the machine type is the snapshot's, every section is registered,
    /// and no section is newer than this build's device (or older than its minimum). The error
    /// names the section, the version written with the writer build's range, and this build's
    /// range.
    ///
    /// # Errors
    /// A [`SnapshotError`] naming the first mismatch.
    pub fn check_compatible(&self, registry: &Registry, machine: &MachineType) -> Result<()> {
        self.check_against(&self.device_state()?, registry, machine)
    }

    /// [`check_compatible`](Self::check_compatible) with the device state already read. Besides
    /// versions, each section's top-level fields in the stored vmdesc are compared with this
    /// build's device at the version written: a field this build sends at that version without a
    /// gate but the snapshot lacks (a field added without `since`/a gate), or a field of the
    /// snapshot this build's device does not have, is named.
    fn check_against(
        &self,
        bytes: &[u8],
        registry: &Registry,
        machine: &MachineType,
    ) -> Result<()> {
        let m = &self.manifest;
        let desc = vmstate_runtime::decode::find_vmdesc(bytes)
            .and_then(|(_, json)| vmstate_runtime::vmdesc::parse_vmdesc(&bytes[json]).ok());
        if m.machine != machine.name() {
            return Err(err(
                &self.path,
                None,
                format!(
                    "machine type `{}`, this VMM runs `{}`",
                    m.machine,
                    machine.name()
                ),
            ));
        }
        let schemas = registry.schemas();
        for s in &m.sections {
            let Some((_, schema)) = schemas
                .iter()
                .find(|(k, _)| k.idstr == s.idstr && k.instance_id == s.instance_id)
            else {
                return Err(err(
                    &self.path,
                    None,
                    format!(
                        "section `{}` instance {} (written by {}) has no device here",
                        s.idstr, s.instance_id, m.build
                    ),
                ));
            };
            let (lo, hi) = (schema.min_version, schema.version);
            if s.version > hi || s.version < lo {
                return Err(err(
                    &self.path,
                    None,
                    format!(
                        "section `{}` instance {}: version {} written by {} (which knows versions {}..={}); this build loads versions {lo}..={hi}{}",
                        s.idstr,
                        s.instance_id,
                        s.version,
                        m.build,
                        s.min_version,
                        s.max_version,
                        if s.version > hi { ": the snapshot is from a newer build" } else { "" }
                    ),
                ));
            }
            let stored = desc.as_ref().and_then(|d| {
                d.devices
                    .iter()
                    .find(|d| d.name == s.idstr && d.instance_id == s.instance_id)
            });
            if let Some(vmstate_runtime::vmdesc::DescBody::Vmsd(st)) = stored.map(|d| &d.body) {
                let names: Vec<&str> = st.fields.iter().map(|f| f.name.as_ref()).collect();
                let field_err = |what: String| {
                    err(
                        &self.path,
                        Some(m.device_offset),
                        format!(
                            "section `{}` instance {} (version {}, written by {}): {what}",
                            s.idstr, s.instance_id, s.version, m.build
                        ),
                    )
                };
                for f in schema.fields.iter() {
                    if f.since <= s.version
                        && f.gate.is_none()
                        && !names.contains(&f.vmdesc_name.as_ref())
                    {
                        return Err(field_err(format!(
                            "field `{}` of this build's device is not in the snapshot: a field added without `since` or a gate changes the bytes of version {}",
                            f.name, s.version
                        )));
                    }
                }
                if let Some(n) = names
                    .iter()
                    .find(|n| !schema.fields.iter().any(|f| f.vmdesc_name == **n))
                {
                    return Err(field_err(format!(
                        "field `{n}` of the snapshot is unknown to this build's device"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Loads the device state into `registry`, all or nothing, after [`check_compatible`]:
    /// nothing is committed unless the whole stream loads.
    ///
    /// [`check_compatible`]: Self::check_compatible
    ///
    /// # Errors
    /// The compatibility check's error, or the loader's (offsets relative to the device state,
    /// which starts at file offset `device_offset`).
    pub fn load_devices(&self, registry: &Registry, machine: &MachineType) -> Result<LoadReport> {
        let bytes = self.device_state()?;
        self.check_against(&bytes, registry, machine)?;
        registry.load(machine, &bytes).map_err(|e| {
            err(
                &self.path,
                Some(self.manifest.device_offset),
                format!("device state (offsets from here): {e}"),
            )
        })
    }

    /// Maps every RAM block from the file, copy-on-write (`MAP_PRIVATE`): the guest reads the
    /// file's pages through the page cache (holes read as zero) and its writes go to private
    /// copies, never to the file. Nothing is read here: restore time does not depend on the
    /// memory size. `prefetch`: a background thread asks the kernel to read the recorded pages
    /// ahead (`MADV_WILLNEED`), so the guest's first touches find them cached.
    ///
    /// Only for a full snapshot; for an increment, map its base and [`apply_to`](Self::apply_to)
    /// the increments (see [`restore_ram`]).
    ///
    /// # Errors
    /// An incremental snapshot, or a mapping failure.
    pub fn map_ram(&self, prefetch: bool) -> Result<GuestRam> {
        let m = &self.manifest;
        if m.incremental() {
            return Err(err(
                &self.path,
                None,
                "an incremental snapshot cannot be mapped alone; restore it with its base",
            ));
        }
        let mut regions = Vec::with_capacity(m.blocks.len());
        for (i, k) in m.blocks.iter().enumerate() {
            // The data range is mapped whatever the bitmap says, but a bitmap that disagrees
            // with the header (bits past the block, a wrong count) means a damaged file.
            self.bitmap(i)?;
            let fail = |e: String| {
                err(
                    &self.path,
                    Some(k.data_offset),
                    format!("block `{}`: {e}", k.name),
                )
            };
            let size = usize::try_from(k.size).map_err(|e| fail(e.to_string()))?;
            let fo = self.file.try_clone().map_err(|e| fail(e.to_string()))?;
            let region = MmapRegionBuilder::new_with_bitmap(size, AtomicBitmap::with_len(size))
                .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
                .with_file_offset(FileOffset::new(fo, k.data_offset))
                .build()
                .map_err(|e| fail(format!("mmap: {e}")))?;
            let r = GuestRegionMmap::new(region, GuestAddress(k.guest_addr))
                .ok_or_else(|| fail("guest address range overflows".into()))?;
            regions.push(r);
        }
        let mem = GuestMem::from_regions(regions)
            .map_err(|e| err(&self.path, None, format!("RAM blocks: {e}")))?;
        let ram = GuestRam::from_parts(mem, m.blocks.iter().map(|k| k.name.clone()).collect())
            .map_err(|e| err(&self.path, None, e.to_string()))?;
        if prefetch {
            let mem = ram.memory().clone();
            let _ = std::thread::Builder::new()
                .name("snapshot-prefetch".into())
                .spawn(move || {
                    for r in mem.iter() {
                        if let Ok(s) = r.get_slice(MemoryRegionAddress(0), r.len() as usize) {
                            crate::sys::will_need(s.ptr_guard().as_ptr() as usize, s.len());
                        }
                    }
                });
        }
        Ok(ram)
    }

    /// Puts the pages this increment records into `ram` (restored from its base chain, not
    /// running): each run of recorded pages is mapped copy-on-write from this file over the
    /// restored memory (`MAP_FIXED`; recorded zero pages are holes and read as zero), so nothing
    /// is read and the cost grows with the number of runs, not pages; an increment of more than
    /// 1,024 runs is copied instead (reading only the recorded pages). Call it before the guest
    /// runs and before the memory is registered with a hypervisor; vm-memory's dirty log is
    /// cleared at the end.
    ///
    /// # Errors
    /// Blocks that differ from `ram`'s, a bad bitmap, I/O errors.
    pub fn apply_to(&self, ram: &GuestRam) -> Result<()> {
        let blocks = ram.blocks();
        for (i, k) in self.manifest.blocks.iter().enumerate() {
            if blocks
                .get(i)
                .is_none_or(|(n, s)| *n != k.name || *s != k.size)
            {
                return Err(err(
                    &self.path,
                    None,
                    format!("block `{}` does not match the restored RAM", k.name),
                ));
            }
            let bitmap = self.bitmap(i)?;
            let region = ram
                .memory()
                .iter()
                .nth(i)
                .ok_or_else(|| err(&self.path, None, "no such region"))?;
            let pages = k.page_count();
            if runs(&bitmap, pages).nth(MAX_MAPPED_RUNS).is_none() {
                // Map each run of the increment over the restored memory: no data is read.
                let whole = region
                    .get_slice(MemoryRegionAddress(0), region.len() as usize)
                    .map_err(|e| err(&self.path, None, e.to_string()))?;
                let guard = whole.ptr_guard_mut();
                let base = guard.as_ptr() as usize;
                for (first, n) in runs(&bitmap, pages) {
                    let off = k.data_offset + first * PAGE_SIZE;
                    // In bounds: runs lie inside the block, and the block's data range inside
                    // the file (checked when opened).
                    crate::sys::map_file_over(
                        base + (first * PAGE_SIZE) as usize,
                        (n * PAGE_SIZE) as usize,
                        std::os::fd::AsFd::as_fd(&self.file),
                        off,
                    )
                    .map_err(|e| err(&self.path, Some(off), format!("mmap: {e}")))?;
                }
                continue;
            }
            let mut buf = vec![0u8; RUN_PAGES * PAGE];
            for (first, n) in runs(&bitmap, pages) {
                let mut p = first;
                while p < first + n {
                    let m = (first + n - p).min(RUN_PAGES as u64);
                    let bytes = &mut buf[..m as usize * PAGE];
                    let off = k.data_offset + p * PAGE_SIZE;
                    self.file
                        .read_exact_at(bytes, off)
                        .map_err(|e| err(&self.path, Some(off), e.to_string()))?;
                    vm_memory::Bytes::write_slice(
                        region,
                        bytes,
                        MemoryRegionAddress(p * PAGE_SIZE),
                    )
                    .map_err(|e| err(&self.path, Some(off), e.to_string()))?;
                    p += m;
                }
            }
        }
        ram.clear_dirty();
        Ok(())
    }
}

/// Most runs of an increment's pages mapped over the restored memory (one mapping each, well
/// below Linux's default limit of 65,530 mappings per process); beyond that they are copied.
const MAX_MAPPED_RUNS: usize = 1024;

/// Pages read or written per I/O call.
const RUN_PAGES: usize = 256;

/// Runs of set bits `(first page, count)` among the first `pages` bits, in order; an iterator,
/// so that a hostile bitmap of alternating bits allocates nothing.
fn runs(bitmap: &[u64], pages: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let set = move |p: u64| {
        bitmap
            .get((p / 64) as usize)
            .is_some_and(|w| w >> (p % 64) & 1 == 1)
    };
    let mut p = 0u64;
    std::iter::from_fn(move || {
        while p < pages && !set(p) {
            p += 1;
        }
        if p >= pages {
            return None;
        }
        let first = p;
        while p < pages && set(p) {
            p += 1;
        }
        Some((first, p - first))
    })
}

/// Restores the guest memory of a snapshot chain ([`Snapshot::open_chain`]): the full snapshot
/// mapped copy-on-write, each increment's pages copied over it in order.
///
/// # Errors
/// An empty chain, or the errors of [`Snapshot::map_ram`] and [`Snapshot::apply_to`].
pub fn restore_ram(chain: &[Snapshot], prefetch: bool) -> Result<GuestRam> {
    let (base, incs) = chain
        .split_first()
        .ok_or_else(|| err(Path::new("(none)"), None, "empty snapshot chain"))?;
    let ram = base.map_ram(prefetch)?;
    for s in incs {
        s.apply_to(&ram)?;
    }
    Ok(ram)
}

/// The device state to store: a whole stream from a registry, and its sections with the
/// writer's version ranges.
#[derive(Debug, Clone)]
pub struct DeviceState {
    /// The stream (header, configuration, sections, EOF, vmdesc), no RAM.
    pub stream: Vec<u8>,
    /// Its sections.
    pub sections: Vec<SectionEntry>,
    /// The machine type.
    pub machine: String,
}

impl DeviceState {
    /// Saves every device of `registry` for `machine`.
    ///
    /// # Errors
    /// A device's save error.
    pub fn save(registry: &Registry, machine: &MachineType) -> vmstate_runtime::Result<Self> {
        let (stream, report) = registry.save_to_vec(machine)?;
        let schemas = registry.schemas();
        let sections = report
            .sections
            .iter()
            .map(|s| {
                let (lo, hi) = schemas
                    .iter()
                    .find(|(k, _)| *k == s.key)
                    .map_or((s.version, s.version), |(_, sc)| {
                        (sc.min_version, sc.version)
                    });
                SectionEntry {
                    idstr: s.key.idstr.clone(),
                    instance_id: s.key.instance_id,
                    version: s.version,
                    min_version: lo,
                    max_version: hi,
                    sent: true,
                }
            })
            .collect();
        Ok(DeviceState {
            stream,
            sections,
            machine: machine.name().to_owned(),
        })
    }

    /// The device state stored in `snap`, as it is (for merging).
    ///
    /// # Errors
    /// I/O errors.
    pub fn of(snap: &Snapshot) -> Result<Self> {
        Ok(DeviceState {
            stream: snap.device_state()?,
            sections: snap.manifest.sections.clone(),
            machine: snap.manifest.machine.clone(),
        })
    }
}

/// What to write besides memory and devices.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The writer's build, recorded in the manifest (default: this crate's name and version).
    pub build: Option<String>,
    /// Notes recorded in the manifest (at most [`MAX_NOTES`], each string at most 255 bytes).
    pub notes: Vec<(String, String)>,
    /// An increment over `base`: only the pages marked in `dirty` (one bitmap per block, as
    /// [`GuestRam::take_dirty`] returns) are recorded.
    pub incremental: Option<Increment>,
    /// Threads that scan guest memory for non-zero pages (a share of each block each) and write
    /// the pages (each taking chunks of [`WRITE_CHUNK_PAGES`] pages and writing them at their
    /// fixed offsets); 0 (the default) = [`DEFAULT_WRITE_THREADS`], at most the host's CPUs.
    pub threads: usize,
}

/// Pages per chunk of the parallel page writer (1 MiB): a thread reads a chunk of guest memory
/// into its own buffer and writes each run of non-zero pages in it with one `pwrite`.
pub const WRITE_CHUNK_PAGES: usize = RUN_PAGES;

/// Threads of the page writer by default (at most this many, and no more than the host's CPUs).
pub const DEFAULT_WRITE_THREADS: usize = 4;

/// The base of an incremental snapshot.
#[derive(Debug, Clone)]
pub struct Increment {
    /// The base snapshot's path as recorded (relative to the increment's directory).
    pub base: String,
    /// The base's id.
    pub base_id: u64,
    /// Pages dirtied since the base, one bitmap per block.
    pub dirty: Vec<Vec<u64>>,
}

/// What [`write()`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// The snapshot id.
    pub id: u64,
    /// Pages recorded (all blocks).
    pub pages: u64,
    /// Pages with data stored (recorded and non-zero).
    pub data_pages: u64,
    /// The file's length (sparse: pages not stored take no disk space).
    pub file_len: u64,
    /// Bytes actually stored: header, device state, bitmaps and non-zero pages.
    pub stored_bytes: u64,
    /// Time spent in the final `fsync` (part of the write's time).
    pub sync_time: std::time::Duration,
}

fn round_up(x: u64) -> u64 {
    x.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

fn new_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Writes a snapshot of `ram` and `devices` to `path` (through `<path>.tmp`, renamed at the end,
/// so a crash never leaves a half-written file under the name). The file is created sparse:
/// its length covers every block's data range, and only recorded non-zero pages are written.
/// Call it with the guest stopped.
///
/// # Errors
/// I/O errors, or guest memory that cannot be read.
pub fn write(
    path: &Path,
    ram: &GuestRam,
    devices: &DeviceState,
    opts: &WriteOptions,
) -> Result<WriteReport> {
    let e = |m: String| err(path, None, m);
    let names = ram.names().to_vec();
    let regions: Vec<_> = ram.memory().iter().collect();
    let threads = match opts.threads {
        0 => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(DEFAULT_WRITE_THREADS),
        n => n,
    };
    // The bitmaps of recorded pages: non-zero pages, or the dirty pages of an increment.
    let mut bitmaps = Vec::with_capacity(regions.len());
    for (i, r) in regions.iter().enumerate() {
        let pages = r.len() / PAGE_SIZE;
        let mut bm = vec![0u64; pages.div_ceil(64) as usize];
        match &opts.incremental {
            Some(inc) => {
                for p in 0..pages {
                    let dirty = inc
                        .dirty
                        .get(i)
                        .and_then(|d| d.get((p / 64) as usize))
                        .is_some_and(|w| w >> (p % 64) & 1 == 1);
                    if dirty {
                        bm[(p / 64) as usize] |= 1 << (p % 64);
                    }
                }
            }
            // The non-zero pages, scanned by `threads` threads, each a share of the words.
            None => {
                let per = bm.len().div_ceil(threads).max(1);
                std::thread::scope(|s| -> Result<()> {
                    let scans: Vec<_> = bm
                        .chunks_mut(per)
                        .enumerate()
                        .map(|(t, words)| {
                            s.spawn(move || -> Result<()> {
                                for (w, word) in words.iter_mut().enumerate() {
                                    let first = ((t * per + w) * 64) as u64;
                                    for p in first..(first + 64).min(pages) {
                                        if !page_is_zero(r, p)? {
                                            *word |= 1 << (p - first);
                                        }
                                    }
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    for scan in scans {
                        scan.join()
                            .map_err(|_| e("a zero-page scanner thread panicked".to_owned()))??;
                    }
                    Ok(())
                })?;
            }
        }
        bitmaps.push(bm);
    }
    let mut m = Manifest {
        format_version: FORMAT_VERSION,
        flags: if opts.incremental.is_some() {
            FLAG_INCREMENTAL
        } else {
            0
        },
        id: new_id(),
        base_id: opts.incremental.as_ref().map_or(0, |i| i.base_id),
        base: opts
            .incremental
            .as_ref()
            .map_or_else(String::new, |i| i.base.clone()),
        device_offset: 0,
        device_len: devices.stream.len() as u64,
        build: opts
            .build
            .clone()
            .unwrap_or_else(|| format!("vmstate-migration {}", env!("CARGO_PKG_VERSION"))),
        machine: devices.machine.clone(),
        sections: devices.sections.clone(),
        blocks: Vec::new(),
        notes: opts
            .notes
            .iter()
            .take(MAX_NOTES as usize)
            .cloned()
            .collect(),
    };
    for (i, r) in regions.iter().enumerate() {
        m.blocks.push(BlockEntry {
            name: names.get(i).cloned().unwrap_or_default(),
            guest_addr: r.start_addr().0,
            size: r.len(),
            bitmap_offset: 0,
            data_offset: 0,
            pages: bitmaps[i].iter().map(|w| u64::from(w.count_ones())).sum(),
        });
    }
    // Layout: the header's length does not depend on the offsets, so encode once to size it.
    let header_len = m.to_bytes().len() as u64;
    if header_len > HEADER_MAX {
        return Err(e(format!(
            "header of {header_len} bytes above {HEADER_MAX}"
        )));
    }
    let mut at = round_up(header_len);
    m.device_offset = at;
    at = round_up(at + m.device_len);
    for k in &mut m.blocks {
        k.bitmap_offset = at;
        at += k.bitmap_len();
    }
    at = round_up(at);
    for k in &mut m.blocks {
        k.data_offset = at;
        at += k.size;
    }
    let file_len = at;
    let tmp = {
        let mut t = path.as_os_str().to_owned();
        t.push(".tmp");
        PathBuf::from(t)
    };
    let f = File::create(&tmp).map_err(|x| err(&tmp, None, x.to_string()))?;
    let io = |off: u64| move |x: std::io::Error| err(path, Some(off), x.to_string());
    f.set_len(file_len).map_err(io(0))?;
    let header = m.to_bytes();
    f.write_all_at(&header, 0).map_err(io(0))?;
    f.write_all_at(&devices.stream, m.device_offset)
        .map_err(io(m.device_offset))?;
    let mut stored = header.len() as u64 + m.device_len;
    // The chunks of recorded pages, `(block, first page, pages)`, at most WRITE_CHUNK_PAGES each.
    let mut chunks = Vec::new();
    for (i, k) in m.blocks.iter().enumerate() {
        let raw: Vec<u8> = bitmaps[i].iter().flat_map(|w| w.to_le_bytes()).collect();
        f.write_all_at(&raw, k.bitmap_offset)
            .map_err(io(k.bitmap_offset))?;
        stored += raw.len() as u64;
        for (first, n) in runs(&bitmaps[i], k.page_count()) {
            let mut p = first;
            while p < first + n {
                let cnt = (first + n - p).min(WRITE_CHUNK_PAGES as u64) as usize;
                chunks.push((i, p, cnt));
                p += cnt as u64;
            }
        }
    }
    let threads = threads.clamp(1, chunks.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    // Each thread takes the next chunk, reads it into its own buffer and writes every run of
    // non-zero pages in it with one pwrite at the run's fixed offset (an increment's zero pages
    // stay holes); chunks never overlap, so the threads never write the same bytes.
    let worker = || -> Result<(u64, u64)> {
        let (mut stored, mut data_pages) = (0u64, 0u64);
        let mut buf = vec![0u8; WRITE_CHUNK_PAGES * PAGE];
        loop {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok((stored, data_pages));
            }
            let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(i, p, cnt)) = chunks.get(c) else {
                return Ok((stored, data_pages));
            };
            let (k, r) = (&m.blocks[i], regions[i]);
            let bytes = &mut buf[..cnt * PAGE];
            vm_memory::Bytes::read_slice(r, bytes, MemoryRegionAddress(p * PAGE_SIZE))
                .map_err(|x| e(format!("reading block `{}`: {x}", k.name)))?;
            let nonzero: Vec<bool> = bytes
                .chunks_exact(PAGE)
                .map(|page| page.iter().any(|&b| b != 0))
                .collect();
            let mut j = 0;
            while j < cnt {
                if !nonzero[j] {
                    j += 1;
                    continue;
                }
                let end = (j..cnt).find(|&x| !nonzero[x]).unwrap_or(cnt);
                let off = k.data_offset + (p + j as u64) * PAGE_SIZE;
                f.write_all_at(&bytes[j * PAGE..end * PAGE], off)
                    .map_err(io(off))?;
                stored += (end - j) as u64 * PAGE_SIZE;
                data_pages += (end - j) as u64;
                j = end;
            }
        }
    };
    let results: Vec<Result<(u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let r = worker();
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(e("a page writer thread panicked".to_owned())))
            })
            .collect()
    });
    let mut data_pages = 0;
    for r in results {
        let (s, d) = r?;
        stored += s;
        data_pages += d;
    }
    let synced = std::time::Instant::now();
    f.sync_all().map_err(io(0))?;
    let sync_time = synced.elapsed();
    drop(f);
    std::fs::rename(&tmp, path).map_err(|x| e(format!("renaming {}: {x}", tmp.display())))?;
    // Make the rename durable too (best effort).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(WriteReport {
        id: m.id,
        pages: m.blocks.iter().map(|k| k.pages).sum(),
        data_pages,
        file_len,
        stored_bytes: stored,
        sync_time,
    })
}

/// Whether page `p` of region `r` is all zeros (read in place, atomically).
fn page_is_zero(r: &GuestRegionMmap<AtomicBitmap>, p: u64) -> Result<bool> {
    let s = r
        .get_slice(MemoryRegionAddress(p * PAGE_SIZE), PAGE)
        .map_err(|e| err(Path::new("(guest memory)"), None, e.to_string()))?;
    Ok(crate::sys::is_zero(&s))
}

/// Folds a chain (full snapshot first, then increments) into one full snapshot at `out`: the
/// memory restored from the chain and the device state of the last increment, as stored.
///
/// # Errors
/// The errors of [`restore_ram`] and [`write()`].
pub fn merge(chain: &[Snapshot], out: &Path, build: Option<String>) -> Result<WriteReport> {
    let last = chain
        .last()
        .ok_or_else(|| err(out, None, "empty snapshot chain"))?;
    let ram = restore_ram(chain, false)?;
    let devices = DeviceState::of(last)?;
    let opts = WriteOptions {
        build: build.or_else(|| Some(last.manifest.build.clone())),
        notes: last.manifest.notes.clone(),
        incremental: None,
        threads: 0,
    };
    write(out, &ram, &devices, &opts)
}

/// Whether `bytes` start with the snapshot magic.
#[must_use]
pub fn is_snapshot(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;
    use vmstate_runtime::MachineCatalog;

    fn machine() -> MachineType {
        MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vmsnap-{}-{name}", std::process::id()))
    }

    fn sample_ram() -> GuestRam {
        let ram =
            GuestRam::new(&[("pc.ram", 0, 64 * PAGE), ("pc.bios", 0x10_0000, 4 * PAGE)]).unwrap();
        let mem = ram.memory();
        for p in [0u64, 3, 4, 5, 63] {
            mem.write_obj(0xdead_0000u32 + p as u32, GuestAddress(p * PAGE_SIZE + 8))
                .unwrap();
        }
        mem.write_obj(0x55u8, GuestAddress(0x10_0000 + 2 * PAGE_SIZE))
            .unwrap();
        ram
    }

    fn empty_devices() -> DeviceState {
        DeviceState::save(&Registry::new(), &machine()).unwrap()
    }

    #[test]
    fn full_snapshot_round_trip_is_sparse_and_maps() {
        let ram = sample_ram();
        let path = tmp("full.snap");
        let r = write(&path, &ram, &empty_devices(), &WriteOptions::default()).unwrap();
        assert_eq!(r.pages, 6);
        assert_eq!(r.data_pages, 6);
        let s = Snapshot::open(&path).unwrap();
        assert_eq!(s.manifest.blocks.len(), 2);
        assert_eq!(s.manifest.blocks[0].pages, 5);
        assert_eq!(s.manifest.machine, "pc-i440fx-7.2");
        assert!(s
            .manifest
            .blocks
            .iter()
            .all(|k| k.data_offset % PAGE_SIZE == 0));
        let bm = s.bitmap(0).unwrap();
        assert_eq!(bm[0], 1 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 63);
        // The zero pages are holes: fewer blocks allocated on disk than the file's length.
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert!(
            meta.blocks() * 512 < meta.len(),
            "{} {}",
            meta.blocks(),
            meta.len()
        );
        let mapped = s.map_ram(true).unwrap();
        assert_eq!(mapped.snapshot().unwrap(), ram.snapshot().unwrap());
        // Page 1 is not in the bitmap and was never written to the file: a hole, read as zero
        // through the mapping; its neighbour page 0 is data.
        assert_eq!(bm[0] & 0b10, 0);
        let mut page = [0xffu8; PAGE];
        mapped
            .memory()
            .read_slice(&mut page, GuestAddress(PAGE_SIZE))
            .unwrap();
        assert!(page.iter().all(|&b| b == 0));
        let mut raw = [0u8; PAGE];
        File::open(&path)
            .unwrap()
            .read_exact_at(&mut raw, s.manifest.blocks[0].data_offset)
            .unwrap();
        assert_eq!(&raw[8..12], &0xdead_0000u32.to_le_bytes());
        // Copy-on-write: writing the mapping leaves the file alone.
        mapped.memory().write_obj(7u32, GuestAddress(0)).unwrap();
        let again = Snapshot::open(&path).unwrap().map_ram(false).unwrap();
        assert_eq!(again.snapshot().unwrap(), ram.snapshot().unwrap());
        // The device part is a stream the runtime decodes.
        let dev = s.device_state().unwrap();
        assert_eq!(&dev[..4], b"QEVM");
        std::fs::remove_file(&path).unwrap();
    }

    /// The parallel page writer: runs of non-zero pages across chunk boundaries, a chunk full
    /// of data, lone pages; with 1, 3 and 8 threads every non-zero page is stored once at its
    /// offset (the data ranges are byte-identical) and the mapping reads back the RAM.
    #[test]
    fn parallel_writer_stores_every_page_at_its_offset() {
        let pages = 3 * WRITE_CHUNK_PAGES as u64 + 5;
        let ram = GuestRam::new(&[("pc.ram", 0, pages as usize * PAGE)]).unwrap();
        let chunk = WRITE_CHUNK_PAGES as u64;
        let nonzero: Vec<u64> = (chunk - 6..chunk + 6)
            .chain(2 * chunk..3 * chunk)
            .chain([0, 7, 3 * chunk + 4])
            .collect();
        for &p in &nonzero {
            ram.memory()
                .write_obj(p as u32 + 1, GuestAddress(p * PAGE_SIZE + (p % 1000) * 4))
                .unwrap();
        }
        let mut data = Vec::new();
        for threads in [1, 3, 8] {
            let path = tmp(&format!("par{threads}.snap"));
            let opts = WriteOptions {
                threads,
                ..WriteOptions::default()
            };
            let r = write(&path, &ram, &empty_devices(), &opts).unwrap();
            assert_eq!(r.data_pages, nonzero.len() as u64, "{threads} threads");
            let s = Snapshot::open(&path).unwrap();
            let mapped = s.map_ram(false).unwrap();
            assert_eq!(mapped.snapshot().unwrap(), ram.snapshot().unwrap());
            let mut raw = vec![0u8; (pages * PAGE_SIZE) as usize];
            File::open(&path)
                .unwrap()
                .read_exact_at(&mut raw, s.manifest.blocks[0].data_offset)
                .unwrap();
            data.push(raw);
            std::fs::remove_file(&path).unwrap();
        }
        assert!(data.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn increment_and_merge() {
        let ram = sample_ram();
        let base = tmp("base.snap");
        let b = write(&base, &ram, &empty_devices(), &WriteOptions::default()).unwrap();
        ram.clear_dirty();
        let mem = ram.memory();
        mem.write_obj(1u32, GuestAddress(10 * PAGE_SIZE)).unwrap();
        // A page that becomes zero must be recorded and restored as zero.
        mem.write_slice(&[0u8; PAGE], GuestAddress(3 * PAGE_SIZE))
            .unwrap();
        let inc = tmp("inc.snap");
        let opts = WriteOptions {
            incremental: Some(Increment {
                base: base.file_name().unwrap().to_str().unwrap().to_owned(),
                base_id: b.id,
                dirty: ram.take_dirty(),
            }),
            ..WriteOptions::default()
        };
        let r = write(&inc, &ram, &empty_devices(), &opts).unwrap();
        assert_eq!((r.pages, r.data_pages), (2, 1));
        let chain = Snapshot::open_chain(&inc).unwrap();
        assert_eq!(chain.len(), 2);
        assert!(chain[1].map_ram(false).is_err());
        let restored = restore_ram(&chain, false).unwrap();
        assert_eq!(restored.snapshot().unwrap(), ram.snapshot().unwrap());
        let merged = tmp("merged.snap");
        merge(&chain, &merged, None).unwrap();
        let m = Snapshot::open(&merged).unwrap();
        assert!(!m.manifest.incremental());
        assert_eq!(
            m.map_ram(false).unwrap().snapshot().unwrap(),
            ram.snapshot().unwrap()
        );
        for p in [base, inc, merged] {
            std::fs::remove_file(p).unwrap();
        }
    }

    /// More runs than are mapped: the increment's pages are copied, with the same result.
    #[test]
    fn increment_of_many_runs_is_copied() {
        let ram = GuestRam::new(&[("pc.ram", 0, 4096 * PAGE)]).unwrap();
        let base = tmp("many-base.snap");
        let b = write(&base, &ram, &empty_devices(), &WriteOptions::default()).unwrap();
        ram.clear_dirty();
        for p in (0..4096u64).step_by(2) {
            ram.memory()
                .write_obj(p as u32 + 1, GuestAddress(p * PAGE_SIZE))
                .unwrap();
        }
        let inc = tmp("many-inc.snap");
        let opts = WriteOptions {
            incremental: Some(Increment {
                base: base.file_name().unwrap().to_str().unwrap().to_owned(),
                base_id: b.id,
                dirty: ram.take_dirty(),
            }),
            ..WriteOptions::default()
        };
        write(&inc, &ram, &empty_devices(), &opts).unwrap();
        let chain = Snapshot::open_chain(&inc).unwrap();
        assert!(runs(&chain[1].bitmap(0).unwrap(), 4096).count() > MAX_MAPPED_RUNS);
        let restored = restore_ram(&chain, false).unwrap();
        assert_eq!(restored.snapshot().unwrap(), ram.snapshot().unwrap());
        for p in [base, inc] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn hostile_files_fail_with_offsets() {
        let ram = sample_ram();
        let path = tmp("hostile.snap");
        write(&path, &ram, &empty_devices(), &WriteOptions::default()).unwrap();
        let good = std::fs::read(&path).unwrap();
        let s = Snapshot::open(&path).unwrap();
        let k1 = s.manifest.blocks[1].clone();
        let check = |bytes: &[u8], want: &str| {
            let p = tmp("hostile-variant.snap");
            std::fs::write(&p, bytes).unwrap();
            let e = Snapshot::open(&p)
                .and_then(|s| s.bitmap(0).and_then(|_| s.bitmap(1)))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e} does not contain {want:?}");
            std::fs::remove_file(&p).unwrap();
        };
        // Truncated inside the last block's data.
        check(&good[..good.len() - 1], "truncated file");
        check(&good[..100], "is outside 56..=100");
        let mut v = good.clone();
        v[0] = b'X';
        check(&v, "no VMSTSNAP magic");
        let mut v = good.clone();
        v[11] = 9;
        check(&v, "format version 9");
        // A bitmap marking a page past the block's end (block 1 has 4 pages).
        let mut v = good.clone();
        v[k1.bitmap_offset as usize] |= 1 << 6;
        check(&v, "past the block's 4 pages");
        // A header whose page count disagrees with the bitmap.
        let mut v = good.clone();
        v[k1.bitmap_offset as usize] |= 1 << 1;
        check(&v, "the bitmap marks 2 pages, the header says 1");
        // A device-state length past the end.
        let mut v = good.clone();
        v[40..48].copy_from_slice(&u64::MAX.to_be_bytes());
        check(&v, "device state");
        // A section count above the maximum.
        let mut v = good;
        let n_at = 56 + 1 + v[56] as usize;
        let n_at = n_at + 1 + v[n_at] as usize;
        let n_at = n_at + 1 + v[n_at] as usize;
        v[n_at..n_at + 4].copy_from_slice(&5000u32.to_be_bytes());
        check(&v, "5000 sections");
        std::fs::remove_file(&path).unwrap();
    }
}

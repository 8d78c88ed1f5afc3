//! Multiple channels: RAM pages over N parallel connections (QEMU's multifd idea, our own wire
//! format; see `docs/wire-format.md`, "Page channels").
//!
//! With [`Settings::channels`](crate::Settings::channels) `N > 1` the main connection carries the
//! stream as before (header, configuration, the `ram` START with the block list, device
//! sections, EOF, vmdesc, the handshake) plus an iterative section `vmstate/channels` whose START
//! names the migration (a random 16-byte id) and `N`, and whose PART/END chunks are the sync
//! points of the passes. The `ram` section has no pages on the main channel (START, then an empty
//! END). Pages travel on `N` page channels, opened by the source to the destination's listener
//! with a handshake (magic, migration id, channel index, channel count) that the destination
//! answers `OK` or `ERR <why>`: a stray, foreign or duplicated connection is rejected and told
//! why, and the migration goes on with the right ones.
//!
//! A page channel carries packets: a 16-byte header (`kind`, `block`, `count`, `pass`, all be32)
//! and, for `PAGES`, `count` (≤ [`MAX_BATCH`]) be64 page offsets (bit 0 set = a zero page, no
//! data) followed by the data of the non-zero pages in order. Each pass ends on every channel
//! with `SYNC pass` (the last, taken while the guest is stopped, with `FINAL pass`). The source
//! writes the main channel's sync chunk only after every channel has written its pass; the
//! destination's channel readers wait for one another at every `SYNC` (a barrier), so no page of
//! pass `k + 1` is written before every page of pass `k`: a stale page never overtakes a newer
//! one, wherever the two were sent. The main channel's loader waits at each sync chunk for all
//! channels, and at the END chunk for every `FINAL`, before it reads the device sections; the
//! destination answers `LOADED` only after all of it.
//!
//! Failure semantics are those of one channel: any error on any channel (cut, reset, hostile
//! packet, timeout) fails the migration; the source resumes unchanged, the destination shuts
//! every channel down, applies no device state and does not start.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;
use std::time::{Duration, Instant};

use vm_memory::bitmap::AtomicBitmap;
use vm_memory::{GuestMemoryRegion, GuestRegionMmap, MemoryRegionAddress};
use vmstate_runtime::error::ErrorKind;
use vmstate_runtime::reader::ErasedReader;
use vmstate_runtime::stream::{SectionHandler, SectionKind, SectionMeta, StreamWriter};
use vmstate_runtime::Reader;

use crate::error::{MigrationError, Result};
use crate::memory::{GuestRam, PAGE_SIZE};
use crate::precopy::{PassProgress, ProgressHook};
use crate::ram::{ByteSink, PageCounts};
use crate::sys::{is_zero, readv_pages, writev_all, GuestSlice, Piece};
use crate::transport::{read_line, write_error, WAIT_PAGES};

/// Idstr of the main channel's section naming the migration and carrying the sync points.
pub const CHANNELS_IDSTR: &str = "vmstate/channels";
/// Its version.
pub const CHANNELS_VERSION: u32 = 1;
/// Its version with a flags byte after the channel count (written when a flag is set).
pub const CHANNELS_VERSION_FLAGS: u32 = 2;
/// Flag: every page-channel packet ends with a CRC-32 of its bytes (the stream's integrity
/// check, [`crate::integrity`]).
pub const FLAG_INTEGRITY: u8 = 1;
/// Its section id (the `ram` section is 2, devices follow from 3).
pub const CHANNELS_SECTION_ID: u32 = 1;
/// First 8 bytes a page channel sends.
pub const CHANNEL_MAGIC: [u8; 8] = *b"VMSCHAN1";
/// Most page channels of one migration.
pub const MAX_CHANNELS: u32 = 16;
/// Most pages in one `PAGES` packet.
pub const MAX_BATCH: usize = 128;
/// Packet kinds.
pub const KIND_PAGES: u32 = 1;
/// End of a pass on this channel.
pub const KIND_SYNC: u32 = 2;
/// End of the last pass (guest stopped); nothing follows on the channel.
pub const KIND_FINAL: u32 = 3;
/// Flag in a page offset: a zero page (no data follows).
pub const ZERO_BIT: u64 = 1;

const PAGE: usize = PAGE_SIZE as usize;
const HEADER: usize = 16;
/// Dirty-bitmap words per packet (64 pages each).
const BATCH_WORDS: usize = MAX_BATCH / 64;

/// A page channel's read timeout, as its failure says it.
const WAIT_CHANNEL: &str =
    "timed out waiting for the source's pages (read timeout: the source or the network went silent)";
/// A sync point's timeout, as its failure says it.
const WAIT_OTHER_CHANNELS: &str = "timed out waiting for the source's pages on the other page \
     channels (the source or the network went silent)";

/// The kind of error a page channel's failure (`cause`, as [`RecvChannels`] keeps it) is: a
/// timeout ([`io::ErrorKind::TimedOut`], so that [`MigrationError::origin`] says
/// [`Silent`](crate::Origin::Silent)) or anything else.
pub(crate) fn cause_kind(cause: &str) -> io::ErrorKind {
    if cause.contains(WAIT_CHANNEL) || cause.contains(WAIT_OTHER_CHANNELS) {
        io::ErrorKind::TimedOut
    } else {
        io::ErrorKind::Other
    }
}

/// A connected socket that can be a page channel.
#[derive(Debug)]
pub enum Socket {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix-domain stream socket.
    Unix(UnixStream),
}

impl Socket {
    fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        };
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(t),
            Socket::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Socket::Tcp(s) => (&*s).read(buf),
            Socket::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Socket::Tcp(s) => (&*s).write(buf),
            Socket::Unix(s) => (&*s).write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a destination accepts the page channels of a multi-channel migration
/// ([`ReceiveSettings::channels`](crate::ReceiveSettings::channels)): usually the listener the
/// main connection came from. While a receive accepts page channels the listener is switched to
/// non-blocking mode (polled, so an aborted migration stops waiting); it is left in blocking mode
/// afterwards. Connections a failed migration opened but the destination never accepted stay in
/// its backlog: a VMM that reuses the listener should tell them apart (a page channel starts with
/// [`CHANNEL_MAGIC`], a migration stream with QEMU's `QEVM`) or use a fresh listener per
/// migration.
#[derive(Debug, Clone)]
pub enum ChannelListener {
    /// A TCP listener.
    Tcp(Arc<TcpListener>),
    /// A Unix-domain listener.
    Unix(Arc<UnixListener>),
}

impl ChannelListener {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            ChannelListener::Tcp(l) => l.set_nonblocking(on),
            ChannelListener::Unix(l) => l.set_nonblocking(on),
        }
    }

    fn try_accept(&self) -> io::Result<Socket> {
        let s = match self {
            ChannelListener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                let _ = s.set_nodelay(true);
                Socket::Tcp(s)
            }
            ChannelListener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                Socket::Unix(s)
            }
        };
        Ok(s)
    }
}

/// A fresh random migration id (from `/dev/urandom`, else from std's hasher seeds and the clock).
pub(crate) fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .is_ok()
    {
        return id;
    }
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for half in id.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_be_bytes());
    }
    id
}

/// The 32-byte handshake of page channel `index` of `count` of migration `id`.
#[must_use]
pub fn handshake(id: &[u8; 16], index: u32, count: u32) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&CHANNEL_MAGIC);
    h[8..24].copy_from_slice(id);
    h[24..28].copy_from_slice(&index.to_be_bytes());
    h[28..].copy_from_slice(&count.to_be_bytes());
    h
}

/// Checks a handshake against migration `id` with `count` channels, of which those marked in
/// `connected` are taken. Returns the channel index, or why the connection is refused.
pub fn check_handshake(
    h: &[u8; 32],
    id: &[u8; 16],
    count: u32,
    connected: &[bool],
) -> std::result::Result<u32, String> {
    if h[..8] != CHANNEL_MAGIC {
        return Err("not a page channel (bad magic)".into());
    }
    if h[8..24] != id[..] {
        return Err("not a page channel of this migration (wrong migration id)".into());
    }
    let index = u32::from_be_bytes([h[24], h[25], h[26], h[27]]);
    let theirs = u32::from_be_bytes([h[28], h[29], h[30], h[31]]);
    if theirs != count {
        return Err(format!(
            "channel count {theirs} differs from the main channel's {count}"
        ));
    }
    if index >= count {
        return Err(format!("channel index {index} out of range 0..{count}"));
    }
    if connected.get(index as usize).copied().unwrap_or(true) {
        return Err(format!("page channel {index} is already connected"));
    }
    Ok(index)
}

// ------------------------------------------------------------------------------------------
// Source

/// The source's page channels.
#[derive(Debug)]
pub(crate) struct SendChannels {
    socks: Vec<Socket>,
    rate: Option<u64>,
    /// Every packet ends with a CRC-32 of its bytes (the stream's integrity check).
    integrity: bool,
}

/// One packet's worth of dirty-bitmap words of one block.
#[derive(Debug, Clone, Copy)]
struct Item {
    block: usize,
    word: usize,
}

impl SendChannels {
    /// Connects `count` page channels with `open` and sends their handshakes.
    pub(crate) fn open(
        count: u32,
        id: &[u8; 16],
        rate: Option<u64>,
        integrity: bool,
        mut open: impl FnMut() -> io::Result<Socket>,
    ) -> Result<Self> {
        let mut socks = Vec::with_capacity(count as usize);
        for i in 0..count {
            let s = open().map_err(|e| chan_io(i, "connecting", &e))?;
            (&s).write_all(&handshake(id, i, count))
                .map_err(|e| chan_io(i, "sending the handshake", &e))?;
            socks.push(s);
        }
        Ok(SendChannels {
            socks,
            rate,
            integrity,
        })
    }

    /// Waits for every channel's `OK`.
    pub(crate) fn confirm(&self, timeout: Duration) -> Result<()> {
        for (i, s) in self.socks.iter().enumerate() {
            let i = i as u32;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| chan_io(i, "setting a timeout", &e))?;
            let mut r = s;
            match read_line(&mut r, &[], "a page channel's OK")? {
                Some(l) if l == "OK" => {}
                Some(l) => {
                    let why = l.strip_prefix("ERR ").unwrap_or(&l);
                    return Err(MigrationError::Remote(format!(
                        "page channel {i} refused by the destination: {why}"
                    )));
                }
                None => {
                    return Err(chan_io(
                        i,
                        "waiting for OK",
                        &io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Shuts every channel's sending side down (on failure: blocked writers return at once);
    /// the receiving side stays open, for the destination's `ERR` line on the channel that
    /// failed there ([`channel_reason`]). The sockets close when the migration ends.
    pub(crate) fn abort(&self) {
        for s in &self.socks {
            s.shutdown(Shutdown::Write);
        }
    }

    /// Sends the pages marked in `dirty` over all channels, each ending with `SYNC pass` (or
    /// `FINAL pass` with `last`); returns when every channel has written its pass.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_pass(
        &self,
        ram: &GuestRam,
        dirty: &[Vec<u64>],
        pass: u32,
        last: bool,
        cancel: &AtomicBool,
        progress: Option<&ProgressHook>,
        pages_in_pass: u64,
    ) -> Result<PageCounts> {
        let regions: Vec<&GuestRegionMmap<AtomicBitmap>> =
            ram.named_regions().map(|(_, r)| r).collect();
        let mut items = Vec::new();
        for (block, bits) in dirty.iter().enumerate().take(regions.len()) {
            for word in (0..bits.len()).step_by(BATCH_WORDS) {
                let end = (word + BATCH_WORDS).min(bits.len());
                if bits[word..end].iter().any(|&w| w != 0) {
                    items.push(Item { block, word });
                }
            }
        }
        let bytes = AtomicU64::new(0);
        let failed = AtomicBool::new(false);
        let first = AtomicUsize::new(usize::MAX);
        let t0 = Instant::now();
        let n = self.socks.len();
        let ctx = PassCtx {
            regions: &regions,
            dirty,
            items: &items,
            stride: n,
            bytes: &bytes,
            failed: &failed,
            cancel,
            progress,
            pass,
            pages_in_pass,
            t0,
            rate: self.rate.map(|r| (r / n as u64).max(1)),
            integrity: self.integrity,
        };
        let results: Vec<Result<PageCounts>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .socks
                .iter()
                .enumerate()
                .map(|(i, sock)| {
                    let ctx = &ctx;
                    let first = &first;
                    s.spawn(move || {
                        let r = send_channel(sock, i, ctx, last).map_err(|e| match e {
                            // The destination may have said why on this channel.
                            MigrationError::Io(io) => {
                                channel_reason(sock).unwrap_or(MigrationError::Io(io))
                            }
                            e => e,
                        });
                        if r.is_err() && !ctx.failed.swap(true, Ordering::SeqCst) {
                            // The first failure is the cause; the others follow from the abort.
                            first.store(i, Ordering::SeqCst);
                            self.abort();
                        }
                        r.map_err(|e| match e {
                            MigrationError::Io(io) => chan_io(i as u32, "sending", &io),
                            e => e,
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(MigrationError::Memory(
                            "a page channel thread panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let mut total = PageCounts::default();
        let mut first_err = None;
        let cause = first.load(Ordering::SeqCst);
        let mut results = results;
        if cause < results.len() {
            results.swap(0, cause);
        }
        for r in results {
            match r {
                Ok(c) => {
                    total.pages += c.pages;
                    total.zero_pages += c.zero_pages;
                    total.bytes += c.bytes;
                }
                // Cancel wins over the I/O errors it causes on the other channels, and the
                // destination's own reason over the errors its shutdown caused here.
                Err(MigrationError::Cancelled) => first_err = Some(MigrationError::Cancelled),
                Err(e @ MigrationError::Remote(_))
                    if !matches!(first_err, Some(MigrationError::Cancelled)) =>
                {
                    first_err = Some(e);
                }
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}

fn chan_io(i: u32, what: &str, e: &io::Error) -> MigrationError {
    MigrationError::Io(io::Error::new(
        e.kind(),
        format!("page channel {i}: {what}: {e}"),
    ))
}

struct PassCtx<'a> {
    regions: &'a [&'a GuestRegionMmap<AtomicBitmap>],
    dirty: &'a [Vec<u64>],
    items: &'a [Item],
    /// Channel `i` sends items `i`, `i + stride`, …: the same split every time (balanced bytes,
    /// deterministic per-channel streams).
    stride: usize,
    bytes: &'a AtomicU64,
    failed: &'a AtomicBool,
    cancel: &'a AtomicBool,
    progress: Option<&'a ProgressHook>,
    pass: u32,
    pages_in_pass: u64,
    t0: Instant,
    rate: Option<u64>,
    integrity: bool,
}

/// The destination's `ERR` line on a page channel (read for at most 200 ms after a failed
/// write), as its reason.
fn channel_reason(sock: &Socket) -> Option<MigrationError> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut r = sock;
    match read_line(&mut r, &[], "the destination's reason") {
        Ok(Some(line)) => line
            .strip_prefix("ERR ")
            .map(|why| MigrationError::Remote(why.to_owned())),
        _ => None,
    }
}

/// Appends the CRC-32 of the packet's bytes (the integrity check).
fn seal_packet(packet: &mut Vec<u8>) {
    let mut h = crc32fast::Hasher::new();
    h.update(packet);
    let crc = h.finalize();
    packet.extend_from_slice(&crc.to_be_bytes());
}

fn packet_header(buf: &mut Vec<u8>, kind: u32, block: u32, count: u32, pass: u32) {
    buf.clear();
    for v in [kind, block, count, pass] {
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

/// One channel's share of a pass (every `stride`-th packet's worth of pages from `index` on),
/// then `SYNC`/`FINAL`.
fn send_channel(sock: &Socket, index: usize, ctx: &PassCtx<'_>, last: bool) -> Result<PageCounts> {
    let mut total = PageCounts::default();
    let mut buf = Vec::with_capacity(HEADER + 8 * MAX_BATCH);
    let mut pages: Vec<GuestSlice<'_>> = Vec::with_capacity(MAX_BATCH);
    let mut sent = 0u64;
    let start = Instant::now();
    for item in ctx.items.iter().skip(index).step_by(ctx.stride) {
        if ctx.cancel.load(Ordering::Relaxed) {
            return Err(MigrationError::Cancelled);
        }
        if ctx.failed.load(Ordering::Relaxed) {
            return Err(MigrationError::Io(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "another page channel failed",
            )));
        }
        let region = ctx.regions[item.block];
        let bits = &ctx.dirty[item.block];
        let npages = region.len() / PAGE_SIZE;
        pages.clear();
        packet_header(&mut buf, KIND_PAGES, item.block as u32, 0, ctx.pass);
        let mut count = 0u32;
        let end = (item.word + BATCH_WORDS).min(bits.len());
        for (w, &bits_w) in bits[item.word..end].iter().enumerate() {
            let w = item.word + w;
            let mut word = bits_w;
            while word != 0 {
                let page = w as u64 * 64 + u64::from(word.trailing_zeros());
                word &= word - 1;
                if page >= npages {
                    break;
                }
                let offset = page * PAGE_SIZE;
                let slice = region
                    .get_slice(MemoryRegionAddress(offset), PAGE)
                    .map_err(|e| MigrationError::Memory(e.to_string()))?;
                if is_zero(&slice) {
                    buf.extend_from_slice(&(offset | ZERO_BIT).to_be_bytes());
                    total.zero_pages += 1;
                } else {
                    buf.extend_from_slice(&offset.to_be_bytes());
                    pages.push(slice);
                    total.pages += 1;
                }
                count += 1;
            }
        }
        if count == 0 {
            continue;
        }
        buf[8..12].copy_from_slice(&count.to_be_bytes());
        let len = buf.len() + pages.len() * PAGE;
        if let Some(rate) = ctx.rate {
            // Per-channel token bucket: the limit is shared evenly between the channels.
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            let elapsed = start.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        let len = if ctx.integrity {
            // The bytes summed must be the bytes sent: the pages are copied first (the guest
            // may change them meanwhile).
            let mut packet = Vec::with_capacity(len + 4);
            packet.extend_from_slice(&buf);
            for p in &pages {
                Piece::Guest(p).append_to(&mut packet);
            }
            seal_packet(&mut packet);
            writev_all(sock.fd(), &[Piece::Bytes(&packet)])
                .map_err(|e| write_error(e, WAIT_PAGES))?;
            packet.len()
        } else {
            let mut pieces = Vec::with_capacity(pages.len() + 1);
            pieces.push(Piece::Bytes(&buf));
            pieces.extend(pages.iter().map(Piece::Guest));
            writev_all(sock.fd(), &pieces).map_err(|e| write_error(e, WAIT_PAGES))?;
            len
        };
        sent += len as u64;
        total.bytes += len as u64;
        let b = ctx.bytes.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
        if let Some(hook) = ctx.progress {
            (hook.0)(&PassProgress {
                pass: ctx.pass,
                pages: ctx.pages_in_pass,
                bytes: b,
                elapsed: ctx.t0.elapsed(),
            });
        }
    }
    let kind = if last { KIND_FINAL } else { KIND_SYNC };
    packet_header(&mut buf, kind, 0, 0, ctx.pass);
    if ctx.integrity {
        seal_packet(&mut buf);
    }
    writev_all(sock.fd(), &[Piece::Bytes(&buf)]).map_err(|e| write_error(e, WAIT_PAGES))?;
    total.bytes += buf.len() as u64;
    if last {
        sock.shutdown(Shutdown::Write);
    }
    Ok(total)
}

/// Writes the main channel's START of the channels section: migration id and channel count.
pub(crate) fn write_start<S: ByteSink + ?Sized>(
    sink: &mut S,
    framing: vmstate_runtime::machine::Framing,
    id: &[u8; 16],
    count: u32,
    integrity: bool,
) -> Result<()> {
    let mut s = StreamWriter::new(Vec::new(), framing);
    // Version 2 adds a flags byte; the packets then end with their CRC-32.
    let version = if integrity {
        CHANNELS_VERSION_FLAGS
    } else {
        CHANNELS_VERSION
    };
    s.start_header(CHANNELS_SECTION_ID, CHANNELS_IDSTR, 0, version)?;
    s.payload().extend_from_slice(id);
    s.payload().extend_from_slice(&count.to_be_bytes());
    if integrity {
        s.payload().push(FLAG_INTEGRITY);
    }
    s.footer(CHANNELS_SECTION_ID)?;
    sink.send(&s.into_inner())
}

/// Writes the main channel's sync point of `pass` (a PART chunk; the END chunk for the last).
pub(crate) fn write_sync<S: ByteSink + ?Sized>(
    sink: &mut S,
    framing: vmstate_runtime::machine::Framing,
    pass: u32,
    last: bool,
) -> Result<()> {
    let mut s = StreamWriter::new(Vec::new(), framing);
    s.chunk_header(CHANNELS_SECTION_ID, last)?;
    s.payload().extend_from_slice(&pass.to_be_bytes());
    s.footer(CHANNELS_SECTION_ID)?;
    sink.send(&s.into_inner())
}

// ------------------------------------------------------------------------------------------
// Destination

#[derive(Debug, Default)]
struct State {
    connected: Vec<bool>,
    /// Sync points each channel has passed.
    synced: Vec<u32>,
    finals: Vec<bool>,
    error: Option<String>,
    counts: PageCounts,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    abort: AtomicBool,
    /// Packets end with a CRC-32 (set from the START before any channel is read).
    integrity: AtomicBool,
    socks: Mutex<Vec<Arc<Socket>>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail(&self, msg: String) {
        {
            let mut st = self.lock();
            if st.error.is_none() {
                st.error = Some(msg);
            }
        }
        self.abort();
    }

    fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
        for s in self
            .socks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            s.shutdown(Shutdown::Both);
        }
        self.cv.notify_all();
    }

    /// Waits until `done(state)` holds, an error or abort happened, or `deadline`.
    fn wait(
        &self,
        deadline: Instant,
        done: impl Fn(&State) -> bool,
    ) -> std::result::Result<(), String> {
        let mut st = self.lock();
        loop {
            if let Some(e) = &st.error {
                return Err(e.clone());
            }
            if self.abort.load(Ordering::SeqCst) {
                return Err("the migration was aborted".into());
            }
            if done(&st) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WAIT_OTHER_CHANNELS.into());
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// The destination's handler of the `vmstate/channels` section: accepts and checks the page
/// channels, runs one reader thread per channel (pages straight into guest memory) and waits
/// for them at every sync point.
pub(crate) struct RecvChannels<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    ram: &'env GuestRam,
    /// The main-channel RAM loader's read-ahead switch (set when the channels start).
    read_ahead_off: std::rc::Rc<std::cell::Cell<bool>>,
    listener: Option<ChannelListener>,
    timeout: Duration,
    shared: Arc<Shared>,
    count: u32,
    next_sync: u32,
    started: bool,
    ended: bool,
}

impl std::fmt::Debug for RecvChannels<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvChannels")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

fn invalid(message: String, pos: u64) -> vmstate_runtime::Error {
    vmstate_runtime::Error::new(ErrorKind::ValidationFailed { message }, pos)
}

impl<'scope, 'env> RecvChannels<'scope, 'env> {
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        ram: &'env GuestRam,
        listener: Option<ChannelListener>,
        timeout: Option<Duration>,
        read_ahead_off: std::rc::Rc<std::cell::Cell<bool>>,
    ) -> Self {
        RecvChannels {
            scope,
            ram,
            read_ahead_off,
            listener,
            timeout: timeout.unwrap_or(Duration::from_secs(3600)),
            shared: Arc::new(Shared::default()),
            count: 0,
            next_sync: 0,
            started: false,
            ended: false,
        }
    }

    /// Pages, zero pages and packet bytes the channels loaded.
    pub(crate) fn counts(&self) -> PageCounts {
        self.shared.lock().counts
    }

    /// The first error of a page channel, if one failed.
    pub(crate) fn error(&self) -> Option<String> {
        self.shared.lock().error.clone()
    }

    /// Stops every channel thread (after a failure): sockets shut down, waits released.
    pub(crate) fn abort(&self) {
        self.shared.abort();
    }

    fn start(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        crate::integrity::check_start(
            meta,
            self.started,
            CHANNELS_VERSION..=CHANNELS_VERSION_FLAGS,
        )?;
        let pos = r.position();
        let id: [u8; 16] = r.read_array()?;
        let count = r.read_be32()?;
        if count == 0 || count > MAX_CHANNELS {
            return Err(invalid(
                format!("page channel count {count} outside 1..={MAX_CHANNELS}"),
                pos + 16,
            ));
        }
        if meta.version >= CHANNELS_VERSION_FLAGS {
            let flags = r.read_u8()?;
            if flags & !FLAG_INTEGRITY != 0 {
                return Err(invalid(
                    format!(
                        "page channel flags {flags:#04x} (this build knows {FLAG_INTEGRITY:#04x})"
                    ),
                    pos + 20,
                ));
            }
            self.shared
                .integrity
                .store(flags & FLAG_INTEGRITY != 0, Ordering::SeqCst);
        }
        let Some(listener) = self.listener.clone() else {
            return Err(invalid(
                format!("the source uses {count} page channels but this destination has no channel listener (ReceiveSettings::channels)"),
                pos,
            ));
        };
        self.count = count;
        self.started = true;
        // The channels' threads store pages of this load from now on.
        self.read_ahead_off.set(true);
        {
            let mut st = self.shared.lock();
            st.connected = vec![false; count as usize];
            st.synced = vec![0; count as usize];
            st.finals = vec![false; count as usize];
        }
        let shared = Arc::clone(&self.shared);
        let scope = self.scope;
        let ram = self.ram;
        let timeout = self.timeout;
        scope.spawn(move || accept_channels(scope, &listener, ram, &shared, &id, count, timeout));
        Ok(())
    }

    fn sync(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        if !self.started || self.ended {
            return Err(vmstate_runtime::Error::new(
                ErrorKind::UnknownSectionId {
                    section_id: meta.section_id,
                },
                meta.offset,
            ));
        }
        let pos = r.position();
        let pass = r.read_be32()?;
        if pass != self.next_sync {
            return Err(invalid(
                format!(
                    "sync point of pass {pass}, expected pass {}",
                    self.next_sync
                ),
                pos,
            ));
        }
        let last = meta.kind == SectionKind::End;
        let n = pass + 1;
        let deadline = Instant::now() + self.timeout;
        self.shared
            .wait(deadline, |st| {
                if last {
                    st.finals.iter().all(|&f| f)
                } else {
                    st.synced.iter().all(|&s| s >= n)
                }
            })
            .map_err(|e| invalid(format!("sync point of pass {pass}: {e}"), pos))?;
        self.next_sync = n;
        self.ended = last;
        Ok(())
    }
}

impl SectionHandler for RecvChannels<'_, '_> {
    fn load(
        &mut self,
        meta: &SectionMeta<'_>,
        r: &mut dyn ErasedReader,
    ) -> vmstate_runtime::Result<()> {
        match meta.kind {
            SectionKind::Start => self.start(meta, r),
            SectionKind::Part | SectionKind::End => self.sync(meta, r),
            SectionKind::Full | SectionKind::Command { .. } => Err(meta.unknown()),
        }
    }

    fn finish(&mut self, end: u64) -> vmstate_runtime::Result<()> {
        if !self.started || self.ended {
            return Ok(());
        }
        Err(invalid(
            format!("the stream's {CHANNELS_IDSTR} section has no END (final sync point)"),
            end,
        ))
    }
}

/// Accepts connections until every channel is connected (or abort/timeout), rejecting strays.
fn accept_channels<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    listener: &ChannelListener,
    ram: &'env GuestRam,
    shared: &Arc<Shared>,
    id: &[u8; 16],
    count: u32,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    if let Err(e) = listener.set_nonblocking(true) {
        shared.fail(format!("page channel listener: {e}"));
        return;
    }
    let mut left = count;
    while left > 0 {
        if shared.abort.load(Ordering::SeqCst) {
            break;
        }
        if Instant::now() >= deadline {
            shared.fail(format!(
                "timed out accepting page channels ({left} of {count} missing)"
            ));
            break;
        }
        let sock = match listener.try_accept() {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                shared.fail(format!("accepting a page channel: {e}"));
                break;
            }
        };
        // A stray that sends nothing is dropped after a short wait, not the whole timeout.
        let _ = sock.set_read_timeout(Some(timeout.min(Duration::from_secs(5))));
        let mut h = [0u8; 32];
        if (&sock).read_exact(&mut h).is_err() {
            continue;
        }
        let verdict = {
            let mut st = shared.lock();
            let v = check_handshake(&h, id, count, &st.connected);
            if let Ok(i) = v {
                st.connected[i as usize] = true;
            }
            v
        };
        let mut w = &sock;
        match verdict {
            Err(why) => {
                let _ = w.write_all(format!("ERR {why}\n").as_bytes());
                sock.shutdown(Shutdown::Both);
            }
            Ok(i) => {
                if let Err(e) = w.write_all(b"OK\n") {
                    shared.fail(format!("page channel {i}: answering the handshake: {e}"));
                    break;
                }
                let _ = sock.set_read_timeout(Some(timeout));
                let sock = Arc::new(sock);
                shared
                    .socks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Arc::clone(&sock));
                if shared.abort.load(Ordering::SeqCst) {
                    sock.shutdown(Shutdown::Both);
                }
                let shared = Arc::clone(shared);
                scope.spawn(move || {
                    if let Err(e) = read_channel(i, &sock, ram, &shared, timeout) {
                        // Tell the source why, on this channel, before every channel is shut
                        // down: its write then fails and it reads this line.
                        let _ = (&*sock)
                            .write_all(format!("ERR {}\n", e.replace('\n', " ")).as_bytes());
                        shared.fail(e);
                    }
                });
                left -= 1;
            }
        }
    }
    let _ = listener.set_nonblocking(false);
}

/// Reads one page channel until its `FINAL`, writing pages straight into guest memory.
/// CRC-32 of `parts` in order.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Reads a packet's trailing CRC-32 (the integrity check), advancing `pos`.
fn read_crc(sock: &Socket, pos: &mut u64) -> io::Result<u32> {
    let mut c = [0u8; 4];
    (&*sock).read_exact(&mut c)?;
    *pos += 4;
    Ok(u32::from_be_bytes(c))
}

/// The name of block `block`, or what the damaged index says.
fn name_of(regions: &[(&str, &GuestRegionMmap<AtomicBitmap>)], block: u32) -> String {
    regions.get(block as usize).map_or_else(
        || format!("(block index {block}, out of range)"),
        |(n, _)| (*n).to_owned(),
    )
}

/// "RAM block `name` pages a..=b (n records)" from a packet's offset list.
fn describe_run(name: String, list: &[u8]) -> String {
    let offs = list.chunks_exact(8).map(|b| {
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) & !(PAGE_SIZE - 1)
    });
    let (lo, hi) = offs.fold((u64::MAX, 0), |(lo, hi), o| (lo.min(o), hi.max(o)));
    format!(
        "RAM block `{name}` pages {:#x}..={:#x} ({} records)",
        lo / PAGE_SIZE,
        hi / PAGE_SIZE,
        list.len() / 8
    )
}

/// The error of a packet whose CRC-32 differs.
fn damaged(i: u32, at: u64, what: String, got: u32, sent: u32) -> String {
    let kind = ErrorKind::IntegrityMismatch {
        what,
        detail: format!("CRC-32 {got:#010x} of the bytes received, {sent:#010x} of those sent"),
    };
    format!("page channel {i}, byte {at}: {kind}")
}

fn read_channel(
    i: u32,
    sock: &Socket,
    ram: &GuestRam,
    shared: &Shared,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let regions: Vec<(&str, &GuestRegionMmap<AtomicBitmap>)> = ram.named_regions().collect();
    let mut pos = 0u64;
    let mut pass = 0u32;
    let mut counts = PageCounts::default();
    let mut offsets = vec![0u8; 8 * MAX_BATCH];
    let mut pages: Vec<GuestSlice<'_>> = Vec::with_capacity(MAX_BATCH);
    let io_err = |pos: u64, e: &io::Error| {
        let what = if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            WAIT_CHANNEL.to_owned()
        } else {
            e.to_string()
        };
        format!("page channel {i}, byte {pos}: {what}")
    };
    let integrity = shared.integrity.load(Ordering::SeqCst);
    // With the integrity check, a packet's page data is read here first and checked, then
    // copied into guest memory.
    let mut stage: Vec<u8> = Vec::new();
    let result = loop {
        let mut h = [0u8; HEADER];
        (&*sock).read_exact(&mut h).map_err(|e| io_err(pos, &e))?;
        let be = |k: usize| u32::from_be_bytes([h[k], h[k + 1], h[k + 2], h[k + 3]]);
        let (kind, block, count, their_pass) = (be(0), be(4), be(8), be(12));
        let at = pos;
        pos += HEADER as u64;
        if integrity && kind != KIND_PAGES {
            let sent = read_crc(sock, &mut pos).map_err(|e| io_err(pos, &e))?;
            let got = crc32(&[&h]);
            if got != sent {
                break Err(damaged(i, at, "a sync packet".into(), got, sent));
            }
        }
        if their_pass != pass {
            break Err(format!(
                "page channel {i}, byte {at}: packet of pass {their_pass} during pass {pass}"
            ));
        }
        match kind {
            KIND_PAGES => {
                let Some(&(name, region)) = regions.get(block as usize) else {
                    break Err(format!(
                        "page channel {i}, byte {at}: block index {block} out of range (this machine has {})",
                        regions.len()
                    ));
                };
                if count == 0 || count as usize > MAX_BATCH {
                    break Err(format!(
                        "page channel {i}, byte {at}: {count} pages in a packet (1..={MAX_BATCH})"
                    ));
                }
                let list = &mut offsets[..8 * count as usize];
                (&*sock).read_exact(list).map_err(|e| io_err(pos, &e))?;
                if integrity {
                    // Page data (entries without the zero bit), then the CRC, checked before
                    // any of it is used.
                    let data = list
                        .chunks_exact(8)
                        .filter(|b| b[7] & ZERO_BIT as u8 == 0)
                        .count();
                    stage.resize(data * PAGE, 0);
                    (&*sock)
                        .read_exact(&mut stage)
                        .map_err(|e| io_err(pos, &e))?;
                    let mut end = pos + (list.len() + stage.len()) as u64;
                    let sent = read_crc(sock, &mut end).map_err(|e| io_err(end, &e))?;
                    let got = crc32(&[&h, list, &stage]);
                    if got != sent {
                        let what = describe_run(name_of(&regions, block), list);
                        break Err(damaged(i, at, what, got, sent));
                    }
                }
                pages.clear();
                let mut zeros = 0u64;
                for (k, b) in list.chunks_exact(8).enumerate() {
                    let raw = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    let flags = raw & (PAGE_SIZE - 1);
                    let offset = raw & !(PAGE_SIZE - 1);
                    let rec = pos + 8 * k as u64;
                    if flags & !ZERO_BIT != 0 {
                        return Err(format!(
                            "page channel {i}, byte {rec}: unknown page flags {flags:#x} in block `{name}`"
                        ));
                    }
                    if offset
                        .checked_add(PAGE_SIZE)
                        .is_none_or(|e| e > region.len())
                    {
                        return Err(format!(
                            "page channel {i}, byte {rec}: page offset {offset:#x} outside block `{name}` ({:#x} bytes)",
                            region.len()
                        ));
                    }
                    let page = region
                        .get_slice(MemoryRegionAddress(offset), PAGE)
                        .map_err(|e| format!("page channel {i}: guest memory: {e}"))?;
                    if flags & ZERO_BIT != 0 {
                        // Reading an untouched page maps the zero page; only a dirty page is written.
                        if !is_zero(&page) {
                            page.copy_from(&[0u8; PAGE]);
                        }
                        zeros += 1;
                    } else {
                        pages.push(page);
                    }
                }
                pos += 8 * u64::from(count);
                if integrity {
                    for (page, data) in pages.iter().zip(stage.chunks_exact(PAGE)) {
                        page.copy_from(data);
                    }
                    pos += 4;
                } else {
                    readv_pages(sock.fd(), &pages).map_err(|e| io_err(pos, &e))?;
                }
                pos += (pages.len() * PAGE) as u64;
                counts.pages += pages.len() as u64;
                counts.zero_pages += zeros;
            }
            KIND_SYNC => {
                pass += 1;
                let n = pass;
                {
                    shared.lock().synced[i as usize] = n;
                }
                shared.cv.notify_all();
                // The barrier: no page of the next pass before every channel ended this one.
                shared
                    .wait(Instant::now() + timeout, |st| {
                        st.synced.iter().all(|&s| s >= n)
                    })
                    .map_err(|e| format!("page channel {i}, byte {pos}: {e}"))?;
            }
            KIND_FINAL => {
                counts.bytes = pos;
                let mut st = shared.lock();
                st.finals[i as usize] = true;
                st.synced[i as usize] = pass + 1;
                st.counts.pages += counts.pages;
                st.counts.zero_pages += counts.zero_pages;
                st.counts.bytes += counts.bytes;
                drop(st);
                shared.cv.notify_all();
                break Ok(());
            }
            _ => {
                break Err(format!(
                    "page channel {i}, byte {at}: unknown packet kind {kind}"
                ))
            }
        }
    };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way a connection can fail to be the next page channel of this migration.
    #[test]
    fn handshakes_are_checked() {
        let id = [3u8; 16];
        let free = [false, false];
        assert_eq!(check_handshake(&handshake(&id, 1, 2), &id, 2, &free), Ok(1));
        let refuse =
            |h: [u8; 32], connected: &[bool]| check_handshake(&h, &id, 2, connected).unwrap_err();
        assert!(refuse(handshake(&[4; 16], 0, 2), &free).contains("wrong migration id"));
        let mut bad = handshake(&id, 0, 2);
        bad[0] = b'X';
        assert!(refuse(bad, &free).contains("bad magic"));
        assert!(refuse(handshake(&id, 2, 2), &free).contains("index 2 out of range 0..2"));
        assert!(refuse(handshake(&id, 0, 3), &free).contains("channel count 3"));
        assert!(refuse(handshake(&id, 1, 2), &[false, true])
            .contains("page channel 1 is already connected"));
    }
}

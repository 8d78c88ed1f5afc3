//! The few raw operations the RAM path needs, each behind a safe function with its argument.
//!
//! Guest memory is shared with the guest (a running KVM vCPU writes it without Rust knowing), so
//! this crate never creates a Rust reference to source guest memory: zero checks use atomic
//! loads (what vm-memory's own `load` does), and page data goes to the kernel as raw pointers in
//! `writev`'s `iovec`s, exactly like vm-memory's `WriteVolatile` for file descriptors does for one
//! buffer. The only `&mut [u8]` into guest memory is the destination page being received
//! ([`page_mut`]), whose soundness argument is given there.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::bitmap::{AtomicBitmap, Bitmap, BS};
use vm_memory::VolatileSlice;

/// A slice of guest memory as vm-memory hands it out.
pub type GuestSlice<'a> = VolatileSlice<'a, BS<'a, AtomicBitmap>>;

/// Whether every byte of `page` (8-byte aligned, a multiple of 64 bytes long) is zero; reads
/// guest memory in place with relaxed atomic loads, stopping at the first non-zero word.
pub(crate) fn is_zero(page: &GuestSlice<'_>) -> bool {
    let guard = page.ptr_guard();
    let ptr = guard.as_ptr();
    let words = page.len() / 8;
    if ptr.align_offset(8) != 0 || page.len() % 64 != 0 {
        // Not the layout of a guest page: fall back to the bounds-checked accessor.
        return (0..words).all(|i| {
            vm_memory::Bytes::load::<u64>(page, i * 8, Ordering::Relaxed).is_ok_and(|w| w == 0)
        });
    }
    let base = ptr.cast::<u64>().cast_mut();
    let mut i = 0;
    while i < words {
        let mut acc = 0u64;
        for k in 0..8 {
            // SAFETY: `base` is 8-byte aligned (checked above) and `i + k < words`, so the word
            // lies inside `page`, which the `VolatileSlice` guarantees is valid mapped memory for
            // its lifetime (the guard keeps it alive). Memory shared with a concurrent writer is
            // read with atomic loads only, which is sound for any concurrent access pattern.
            let w = unsafe { AtomicU64::from_ptr(base.add(i + k)) };
            acc |= w.load(Ordering::Relaxed);
        }
        if acc != 0 {
            return false;
        }
        i += 8;
    }
    true
}

/// Pages ahead of the one being zero-checked whose first cache line is prefetched: the check
/// of a non-zero page reads little more than that line, and hardware prefetchers stop at page
/// boundaries. A small gain, measured: a cold 1 GiB migration took 0.261 / 0.290 s (min / median
/// of 32) with it against 0.266 / 0.303 s without.
pub(crate) const PREFETCH_PAGES: u64 = 8;

/// Hints the CPU to fetch the cache line at `offset` of `region` (no-op outside the region or
/// off x86_64).
#[inline]
pub(crate) fn prefetch(
    region: &vm_memory::GuestRegionMmap<vm_memory::bitmap::AtomicBitmap>,
    offset: u64,
) {
    #[cfg(target_arch = "x86_64")]
    if let Ok(p) = vm_memory::GuestMemoryRegion::get_host_address(
        region,
        vm_memory::MemoryRegionAddress(offset),
    ) {
        // SAFETY: a prefetch is a hint: it never faults, has no architectural effect and does
        // not access memory in the Rust sense; `p` lies inside the region's mapping anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (region, offset);
}

/// One piece of a vectored write: bytes of the writer, or guest memory.
#[derive(Debug, Clone, Copy)]
pub enum Piece<'a> {
    /// Bytes of the writer (headers, fill bytes, footers).
    Bytes(&'a [u8]),
    /// Page data, sent from guest memory without a copy.
    Guest(&'a GuestSlice<'a>),
}

impl Piece<'_> {
    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Guest(g) => g.len(),
        }
    }

    /// Whether it is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends its bytes to `out` (guest memory through vm-memory's volatile copy).
    pub fn append_to(&self, out: &mut Vec<u8>) {
        match self {
            Piece::Bytes(b) => out.extend_from_slice(b),
            Piece::Guest(g) => {
                let at = out.len();
                out.resize(at + g.len(), 0);
                g.copy_to(&mut out[at..]);
            }
        }
    }
}

/// Most `iovec`s handed to one `writev` (Linux's `IOV_MAX` is 1024).
const MAX_IOV: usize = 1024;

/// A socket's write timeout is kept as this many slices of `SO_SNDTIMEO`
/// ([`Transport::set_send_timeout`](crate::Transport::set_send_timeout) sets one slice), so
/// that a blocked `writev` returns every slice and [`writev_all`] can look at the socket: it fails
/// once the peer acknowledged (TCP: no ACK for the whole timeout, from `TCP_INFO`) or read (Unix
/// socket) nothing for the whole timeout. One `SO_SNDTIMEO` of the whole timeout is no bound:
/// a `writev` that copied some bytes returns short when it elapses and the next one waits a
/// whole timeout again (measured after a silent partition: 4.0–6.1 s with a 2 s timeout), and
/// counting timed-out calls is no bound either (each call still copied a few bytes: 10 s).
pub(crate) const WRITE_SLICES: u32 = 4;

/// Watches a socket write for progress: bytes that left its send queue (acknowledged by the TCP
/// peer, read by the Unix peer).
struct Stall {
    fd: libc::c_int,
    since: std::time::Instant,
    written: i64,
    /// `written - queued` at the last check: grows when the peer takes bytes.
    taken: Option<i64>,
}

impl Stall {
    fn new(fd: libc::c_int) -> Self {
        Stall {
            fd,
            since: std::time::Instant::now(),
            written: 0,
            taken: None,
        }
    }

    /// Bytes in the send queue, or `None` when `fd` is no socket.
    fn queued(&self) -> Option<i64> {
        let mut n: libc::c_int = 0;
        // SAFETY: `fd` is open for the call (borrowed by the caller); TIOCOUTQ (SIOCOUTQ) writes
        // one c_int to `n`.
        let r = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &mut n) };
        (r == 0).then_some(i64::from(n))
    }

    /// The write timeout: `WRITE_SLICES` times `SO_SNDTIMEO`; `None` when there is none.
    fn limit(&self) -> Option<std::time::Duration> {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: `fd` is open for the call; the kernel writes at most `len` bytes (one timeval)
        // to `tv` and the length to `len`, both on our stack.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                std::ptr::from_mut(&mut tv).cast(),
                &mut len,
            )
        };
        let slice = std::time::Duration::new(
            u64::try_from(tv.tv_sec).unwrap_or(0),
            u32::try_from(tv.tv_usec).unwrap_or(0) * 1000,
        );
        (r == 0 && !slice.is_zero()).then(|| slice * WRITE_SLICES)
    }

    /// Milliseconds since the TCP peer's last ACK (`TCP_INFO`), or `None` when `fd` is no TCP
    /// socket. Kept by the kernel per connection, so it spans every write call.
    fn since_last_ack(&self) -> Option<u32> {
        // SAFETY: `tcp_info` is plain integers; all-zero is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `fd` is open for the call; the kernel writes at most `len` bytes to `info`
        // (a `tcp_info` on our stack) and the length written to `len`.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                std::ptr::from_mut(&mut info).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(info.tcpi_last_ack_recv)
    }

    /// After a partial write or a timed-out slice: `false` once the peer took nothing for the
    /// write timeout. Two signals, either ends the write: TCP — no ACK at all for that long (a
    /// silent partition; the kernel's clock spans every write call); any socket — none of this
    /// call's bytes left the send queue for that long (also a peer whose kernel still answers
    /// but whose process stopped reading: its zero-window ACKs keep the first signal fresh).
    /// No socket: at a timed-out slice.
    fn alive(&mut self, timed_out: bool) -> bool {
        let limit = self.limit();
        if let (Some(ms), Some(limit)) = (self.since_last_ack(), limit) {
            if u128::from(ms) >= limit.as_millis() {
                return false;
            }
        }
        let Some(q) = self.queued() else {
            return !timed_out;
        };
        let taken = self.written - q;
        if self.taken.is_some_and(|t| taken > t) {
            self.since = std::time::Instant::now();
        }
        self.taken = Some(taken);
        match limit {
            Some(limit) => self.since.elapsed() < limit,
            None => !timed_out,
        }
    }
}

/// Runs `op` (`writev` or `readv` on `iov[first..]`, at most [`MAX_IOV`] entries) until every
/// byte of `iov` moved, resuming after partial transfers and `EINTR`; a transfer of 0 bytes is
/// `zero`. With `stall` (a socket write), partial writes and `EAGAIN` (one slice of the write
/// timeout) are retried while the peer takes bytes; once it took none for the write timeout the
/// error is `TimedOut`.
fn transfer_all(
    iov: &mut [libc::iovec],
    zero: io::ErrorKind,
    mut stall: Option<Stall>,
    mut op: impl FnMut(*const libc::iovec, libc::c_int) -> isize,
) -> io::Result<()> {
    let mut first = 0;
    while first < iov.len() {
        // `n <= MAX_IOV` fits c_int.
        let n = libc::c_int::try_from((iov.len() - first).min(MAX_IOV)).unwrap_or(1);
        let want: usize = iov[first..].iter().take(MAX_IOV).map(|v| v.iov_len).sum();
        let r = op(iov[first..].as_ptr(), n);
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if e.kind() == io::ErrorKind::WouldBlock {
                if let Some(st) = &mut stall {
                    if st.alive(true) {
                        continue;
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer took no byte for the write timeout",
                    ));
                }
            }
            return Err(e);
        }
        if r == 0 {
            return Err(zero.into());
        }
        if let Some(st) = &mut stall {
            st.written += i64::try_from(r).unwrap_or(0);
            if usize::try_from(r).unwrap_or(0) < want && !st.alive(false) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer took no byte for the write timeout",
                ));
            }
        }
        let mut left = usize::try_from(r).unwrap_or(0);
        while left > 0 && first < iov.len() {
            let v = &mut iov[first];
            if left >= v.iov_len {
                left -= v.iov_len;
                first += 1;
            } else {
                // SAFETY: `left < iov_len`, so the advanced pointer stays inside the same buffer.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(left) }.cast();
                v.iov_len -= left;
                left = 0;
            }
        }
    }
    Ok(())
}

/// Writes every piece completely to `fd` with `writev`, resuming after partial writes.
pub(crate) fn writev_all(fd: BorrowedFd<'_>, pieces: &[Piece<'_>]) -> io::Result<()> {
    // Guards keep the guest pointers valid until the call returns.
    let guards: Vec<_> = pieces
        .iter()
        .map(|p| match p {
            Piece::Guest(g) => Some(g.ptr_guard()),
            Piece::Bytes(_) => None,
        })
        .collect();
    let mut iov: Vec<libc::iovec> = pieces
        .iter()
        .zip(&guards)
        .filter(|(p, _)| !p.is_empty())
        .map(|(p, g)| libc::iovec {
            iov_base: match (p, g) {
                (Piece::Guest(_), Some(g)) => g.as_ptr().cast_mut().cast(),
                (Piece::Bytes(b), _) => b.as_ptr().cast_mut().cast(),
                (Piece::Guest(_), None) => std::ptr::null_mut(),
            },
            iov_len: p.len(),
        })
        .collect();
    transfer_all(
        &mut iov,
        io::ErrorKind::WriteZero,
        Some(Stall::new(fd.as_raw_fd())),
        |iov, n| {
            // SAFETY: every iovec points at memory valid for reads of `iov_len` bytes for the whole
            // call: writer bytes borrowed by `pieces`, or guest memory whose `VolatileSlice` is
            // borrowed by `pieces` and whose pointer guard lives in `guards`. The kernel only reads
            // them; no Rust reference to guest memory is created.
            unsafe { libc::writev(fd.as_raw_fd(), iov, n) }
        },
    )?;
    drop(guards);
    Ok(())
}

/// Gives the destination memory `page` (one page, or the run of pages a RAM loader reads ahead
/// into) as a byte slice, so that a reader can fill it (one `read`/`readv` from the socket
/// straight into guest memory), and marks it dirty.
///
/// Soundness: the slice is used only for the duration of `f`, on the thread receiving the
/// migration. The destination guest does not run during [`receive`](crate::receive) (it starts
/// only on `GO`, after the stream was loaded). The crate's other writers of that memory during a
/// receive are the page channels' threads, which write the pages their packets name (never one
/// the main stream also sends, in a stream of ours; the main channel's loader stops reading
/// ahead once channels start), and a VMM's prefault thread
/// ([`GuestRam::prefault_in_background`](crate::GuestRam::prefault_in_background)) touches it
/// through `madvise` only (content unchanged). The contract of
/// [`MigrationDestination`](crate::MigrationDestination) states that nothing else reads or
/// writes the destination's guest memory during a receive.
pub(crate) fn page_mut<T>(page: &GuestSlice<'_>, f: impl FnOnce(&mut [u8]) -> T) -> T {
    let guard = page.ptr_guard_mut();
    // SAFETY: the `VolatileSlice` guarantees `page.len()` bytes of mapped, writable memory at the
    // pointer for its lifetime (the guard keeps the mapping alive); exclusivity for the duration
    // of `f` is argued above. The slice does not escape `f`.
    let s = unsafe { std::slice::from_raw_parts_mut(guard.as_ptr(), page.len()) };
    let r = f(s);
    page.bitmap().mark_dirty(0, page.len());
    r
}

/// `madvise(MADV_POPULATE_WRITE)`: faults every page of `[addr, addr + len)` in, writable,
/// without changing its content (Linux 5.14+). Returns whether the kernel did it.
pub(crate) fn populate_write(addr: usize, len: usize) -> bool {
    // SAFETY: madvise with MADV_POPULATE_WRITE never changes memory contents or mappings; on an
    // address range that is not mapped it fails with ENOMEM. No Rust reference is involved.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) == 0 }
}

/// `madvise(MADV_HUGEPAGE)` on `[addr, addr + len)`: lets transparent huge pages back it.
pub(crate) fn advise_hugepages(addr: usize, len: usize) -> bool {
    // SAFETY: MADV_HUGEPAGE is a hint on the mapping; contents are unchanged.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE) == 0 }
}

/// `madvise(MADV_WILLNEED)` on `[addr, addr + len)`: asks the kernel to read a file mapping's
/// pages into the page cache ahead of use. Returns whether the kernel accepted it.
pub(crate) fn will_need(addr: usize, len: usize) -> bool {
    // SAFETY: MADV_WILLNEED is a read-ahead hint; it never changes memory contents or mappings,
    // and on an unmapped range it fails with ENOMEM. No Rust reference is involved.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_WILLNEED) == 0 }
}

/// Maps `len` bytes of `fd` at `offset` copy-on-write (`MAP_PRIVATE | MAP_FIXED`) over
/// `[addr, addr + len)`, which must lie inside a mapping the caller owns and that nothing reads
/// or writes during the call (a snapshot's guest memory before the guest runs): the pages there
/// are replaced by the file's. `addr`, `offset` and `len` must be page-aligned.
pub(crate) fn map_file_over(
    addr: usize,
    len: usize,
    fd: BorrowedFd<'_>,
    offset: u64,
) -> io::Result<()> {
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    // SAFETY: the caller guarantees `[addr, addr + len)` lies inside a mapping it owns (guest
    // memory of a restore, whose region keeps the whole range reserved and unmaps it on drop)
    // and that no Rust reference into it exists and no thread accesses it during the call, so
    // replacing those pages cannot invalidate anything Rust relies on. MAP_FIXED replaces only
    // that range. The new pages are a private copy-on-write view of the file: the file is never
    // written.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
            fd.as_raw_fd(),
            off,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads exactly the bytes of every page of `pages`, in order, from `fd` with `readv`, straight
/// into guest memory (a page channel of the destination), resuming after partial reads; marks
/// the pages dirty in their bitmaps.
///
/// No Rust reference to guest memory is created: the kernel writes through the raw pointers of
/// the `iovec`s, as it would for device DMA, so two channels writing one page (only a hostile
/// source sends a page twice in one pass) race on memory contents but create no aliasing `&mut`.
pub(crate) fn readv_pages(fd: BorrowedFd<'_>, pages: &[GuestSlice<'_>]) -> io::Result<()> {
    let guards: Vec<_> = pages.iter().map(VolatileSlice::ptr_guard_mut).collect();
    let mut iov: Vec<libc::iovec> = pages
        .iter()
        .zip(&guards)
        .map(|(p, g)| libc::iovec {
            iov_base: g.as_ptr().cast(),
            iov_len: p.len(),
        })
        .collect();
    transfer_all(&mut iov, io::ErrorKind::UnexpectedEof, None, |iov, n| {
        // SAFETY: every iovec points at guest memory valid for writes of `iov_len` bytes for the
        // whole call (each `VolatileSlice` is borrowed by `pages`, its pointer guard lives in
        // `guards`). The destination guest does not run during a receive (see `page_mut`); the
        // kernel writes the memory, no Rust reference to it exists.
        unsafe { libc::readv(fd.as_raw_fd(), iov, n) }
    })?;
    drop(guards);
    for p in pages {
        p.bitmap().mark_dirty(0, p.len());
    }
    Ok(())
}

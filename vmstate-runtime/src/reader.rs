//! Readers: where a load takes its bytes from.
//!
//! The [`Reader`] trait has a small required core (`take`, `peek`, `position`); everything else
//! (big-endian integers, counted strings, capped skips) is provided on top of it. Only fallible
//! accessors exist: the stream is untrusted.
//!
//! | reader | source | copies |
//! |---|---|---|
//! | [`SliceReader`] | a byte slice in memory | none: `take` borrows from the slice |
//! | [`IoReader`] | any [`std::io::Read`] (socket, file, pipe) | into one scratch buffer, capped by [`limits::MAX_TAKE`] |

use crate::error::{Error, ErrorKind, Result};
use crate::limits;

/// A source of stream bytes.
pub trait Reader {
    /// Returns the next `n` bytes and advances past them.
    ///
    /// # Errors
    /// [`ErrorKind::UnexpectedEof`] when fewer than `n` bytes remain, or an I/O error.
    fn take(&mut self, n: usize) -> Result<&[u8]>;

    /// Returns the next `n` bytes without advancing, or `None` when fewer remain.
    ///
    /// # Errors
    /// Only I/O errors.
    fn peek(&mut self, n: usize) -> Result<Option<&[u8]>>;

    /// The offset of the next byte from the start of the stream.
    fn position(&self) -> u64;

    /// Reads one byte.
    ///
    /// # Errors
    /// End of input or I/O.
    #[inline]
    fn read_u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// Reads `N` bytes into an array.
    ///
    /// # Errors
    /// End of input or I/O.
    #[inline]
    fn read_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads a big-endian u16.
    ///
    /// # Errors
    /// End of input or I/O.
    #[inline]
    fn read_be16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.read_array()?))
    }

    /// Reads a big-endian u32.
    ///
    /// # Errors
    /// End of input or I/O.
    #[inline]
    fn read_be32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.read_array()?))
    }

    /// Reads a big-endian u64.
    ///
    /// # Errors
    /// End of input or I/O.
    #[inline]
    fn read_be64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.read_array()?))
    }

    /// Reads a counted string (`u8 len` + bytes) into an owned `String`, replacing invalid UTF-8.
    ///
    /// # Errors
    /// End of input or I/O.
    fn read_counted_str(&mut self) -> Result<String> {
        let len = self.read_u8()? as usize;
        let bytes = self.take(len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Reads exactly `dst.len()` bytes into `dst` (for large payloads that have a home already,
    /// e.g. a RAM page read straight into guest memory). The default takes and copies; an
    /// [`IoReader`] copies only what it has buffered and reads the rest from its source straight
    /// into `dst`.
    ///
    /// # Errors
    /// End of input (nothing is consumed then for a [`SliceReader`]; an [`IoReader`] may have
    /// filled part of `dst`) or I/O; `dst.len()` above [`limits::MAX_TAKE`] for the default.
    fn read_into(&mut self, dst: &mut [u8]) -> Result<()> {
        let src = self.take(dst.len())?;
        dst.copy_from_slice(src);
        Ok(())
    }

    /// How many bytes the reader holds in memory, readable without I/O. The default,
    /// `usize::MAX`, says "plenty" (a caller then has no reason to
    /// [`read_into_ahead`](Self::read_into_ahead)).
    fn available(&self) -> usize {
        usize::MAX
    }

    /// Reads `dst` in full like [`read_into`](Self::read_into); a reader that has to go to its
    /// source for (the rest of) `dst` may, in that same call, read the bytes that follow into
    /// `ahead` (in order, as far as the source has them) instead of into a buffer of its own.
    /// Returns how many bytes landed in `ahead`; they count as read (the position is past them).
    /// A caller that guessed wrong about what follows gives bytes back with
    /// [`unread`](Self::unread). The default reads `dst` only and returns 0, and so does an
    /// [`IoReader`] that still had all of `dst` buffered.
    ///
    /// This is how a RAM loader reads a run of pages straight into guest memory although every
    /// page is preceded by a record header it has not seen yet.
    ///
    /// # Errors
    /// As [`read_into`](Self::read_into).
    fn read_into_ahead(
        &mut self,
        dst: &mut [u8],
        ahead: &mut [std::io::IoSliceMut<'_>],
    ) -> Result<usize> {
        let _ = ahead;
        self.read_into(dst)?;
        Ok(0)
    }

    /// Gives back the last bytes read: `parts`, concatenated, must be exactly the last bytes
    /// consumed (e.g. the tail of what [`read_into_ahead`](Self::read_into_ahead) put into
    /// `ahead`); they will be read again and the position moves back by their length. The
    /// default accepts nothing but an empty give-back.
    ///
    /// # Errors
    /// [`ErrorKind::ValidationFailed`] from a reader that cannot give bytes back.
    fn unread(&mut self, parts: &[&[u8]]) -> Result<()> {
        if parts.iter().all(|p| p.is_empty()) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::ValidationFailed {
                message: "this reader cannot give bytes back".into(),
            },
            self.position(),
        ))
    }

    /// Skips `n` bytes in bounded chunks (no allocation sized by `n`).
    ///
    /// # Errors
    /// End of input or I/O.
    fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let chunk = n.min(limits::SKIP_CHUNK as u64);
            // `chunk` fits usize: it is at most SKIP_CHUNK.
            self.take(usize::try_from(chunk).unwrap_or(limits::SKIP_CHUNK))?;
            n -= chunk;
        }
        Ok(())
    }
}

/// Zero-copy reader over a byte slice.
#[derive(Debug, Clone)]
pub struct SliceReader<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> SliceReader<'a> {
    /// A reader over `data`; offsets start at 0.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        SliceReader {
            data,
            pos: 0,
            base: 0,
        }
    }

    /// A reader over `data` whose first byte is at stream offset `base` (for error offsets).
    #[must_use]
    pub fn with_base(data: &'a [u8], base: u64) -> Self {
        SliceReader { data, pos: 0, base }
    }

    /// The bytes not read yet.
    #[must_use]
    pub fn remaining(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// Returns the next `n` bytes with the slice's lifetime.
    ///
    /// # Errors
    /// [`ErrorKind::UnexpectedEof`].
    pub fn take_slice(&mut self, n: usize) -> Result<&'a [u8]> {
        let avail = self.data.len() - self.pos;
        if n > avail {
            return Err(Error::new(
                ErrorKind::UnexpectedEof {
                    needed: n as u64,
                    available: avail as u64,
                },
                self.position(),
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

impl Reader for SliceReader<'_> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        self.take_slice(n)
    }

    #[inline]
    fn peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        Ok(self.data.get(self.pos..self.pos.saturating_add(n)))
    }

    #[inline]
    fn position(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let avail = (self.data.len() - self.pos) as u64;
        if n > avail {
            return Err(Error::new(
                ErrorKind::UnexpectedEof {
                    needed: n,
                    available: avail,
                },
                self.position(),
            ));
        }
        // n <= avail <= usize::MAX
        self.pos += usize::try_from(n).unwrap_or(0);
        Ok(())
    }
}

/// Reader over any [`std::io::Read`], with a scratch buffer for `take` and `peek`.
///
/// A single `take` is limited to [`limits::MAX_TAKE`] bytes; larger regions are read in pieces by
/// the callers (RAM pages, skips).
#[derive(Debug)]
pub struct IoReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of unread data in `buf`.
    start: usize,
    /// End of valid data in `buf`.
    end: usize,
    pos: u64,
    eof: bool,
    /// The last I/O error, kept whole (the [`Error`] carries only its kind).
    io_error: Option<std::io::Error>,
}

impl<R: std::io::Read> IoReader<R> {
    /// Wraps `inner` with a 64 KiB buffer.
    pub fn new(inner: R) -> Self {
        Self::with_capacity(64 * 1024, inner)
    }

    /// Wraps `inner` with a buffer of `capacity` bytes (it grows for larger `take`s, up to
    /// [`limits::MAX_TAKE`]). The reader reads ahead up to the buffer size.
    pub fn with_capacity(capacity: usize, inner: R) -> Self {
        IoReader {
            inner,
            buf: vec![0; capacity.max(16)],
            start: 0,
            end: 0,
            pos: 0,
            eof: false,
            io_error: None,
        }
    }

    /// Gives back the inner reader. Buffered, unread bytes are lost.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Gives back the inner reader and the bytes read from it but not consumed (what follows
    /// the last byte taken, e.g. the start of a message after a stream).
    pub fn into_parts(self) -> (R, Vec<u8>) {
        let rest = self.buf[self.start..self.end].to_vec();
        (self.inner, rest)
    }

    /// The last I/O error of the inner reader, whole (errors returned by the [`Reader`] methods
    /// carry only its kind).
    pub fn take_io_error(&mut self) -> Option<std::io::Error> {
        self.io_error.take()
    }

    /// Copies the buffered part of `dst`, then reads the rest from the source with
    /// `read_vectored` into `dst` and, in the same calls, into `ahead` or (without it) the emptied
    /// buffer. Returns how many bytes went to `ahead`.
    fn read_into_then(
        &mut self,
        dst: &mut [u8],
        mut ahead: Option<&mut [std::io::IoSliceMut<'_>]>,
    ) -> Result<usize> {
        let have = (self.end - self.start).min(dst.len());
        dst[..have].copy_from_slice(&self.buf[self.start..self.start + have]);
        self.start += have;
        let mut done = have;
        if done == dst.len() {
            self.pos += done as u64;
            return Ok(0);
        }
        // The buffer is empty now.
        self.start = 0;
        self.end = 0;
        let into_ahead = ahead.is_some();
        let mut extra = 0;
        while done < dst.len() {
            if self.eof {
                self.pos += done as u64;
                return Err(Error::new(
                    ErrorKind::UnexpectedEof {
                        needed: (dst.len() - done) as u64,
                        available: 0,
                    },
                    self.pos,
                ));
            }
            let want = dst.len() - done;
            let mut iov = Vec::with_capacity(2 + ahead.as_ref().map_or(0, |a| a.len()));
            iov.push(std::io::IoSliceMut::new(&mut dst[done..]));
            match ahead.as_deref_mut() {
                Some(a) => iov.extend(a.iter_mut().map(|s| std::io::IoSliceMut::new(s))),
                None => iov.push(std::io::IoSliceMut::new(&mut self.buf[..])),
            }
            match self.inner.read_vectored(&mut iov) {
                Ok(0) => self.eof = true,
                Ok(k) if k <= want => done += k,
                Ok(k) if into_ahead => {
                    done += want;
                    extra = k - want;
                }
                Ok(k) => {
                    done += want;
                    self.end = k - want;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    self.io_error = Some(e);
                    self.pos += done as u64;
                    return Err(Error::new(ErrorKind::Io(kind), self.pos));
                }
            }
        }
        self.pos += (done + extra) as u64;
        Ok(extra)
    }

    /// Makes at least `n` bytes available in the buffer if the source has them.
    fn fill(&mut self, n: usize) -> Result<usize> {
        if n > limits::MAX_TAKE {
            return Err(Error::new(
                ErrorKind::LengthTooLarge {
                    len: n as u64,
                    limit: limits::MAX_TAKE as u64,
                },
                self.pos,
            ));
        }
        if self.end - self.start >= n {
            return Ok(self.end - self.start);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.end < n && !self.eof {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    self.io_error = Some(e);
                    return Err(Error::new(ErrorKind::Io(kind), self.pos));
                }
            }
        }
        Ok(self.end - self.start)
    }
}

impl<R: std::io::Read> Reader for IoReader<R> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let avail = self.fill(n)?;
        if avail < n {
            return Err(Error::new(
                ErrorKind::UnexpectedEof {
                    needed: n as u64,
                    available: avail as u64,
                },
                self.pos,
            ));
        }
        let s = self.start;
        self.start += n;
        self.pos += n as u64;
        Ok(&self.buf[s..s + n])
    }

    fn peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        let avail = self.fill(n)?;
        if avail < n {
            return Ok(None);
        }
        Ok(Some(&self.buf[self.start..self.start + n]))
    }

    fn position(&self) -> u64 {
        self.pos
    }

    /// Copies the buffered part, then reads the rest with `read_vectored` into `dst` *and* the
    /// (then empty) buffer: the payload lands in `dst` without passing through the buffer, and
    /// what follows it is read ahead in the same call.
    fn read_into(&mut self, dst: &mut [u8]) -> Result<()> {
        self.read_into_then(dst, None).map(|_| ())
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    /// Copies the buffered part of `dst`; if that was not all of it, reads the rest with
    /// `read_vectored` into `dst` *and* `ahead` (not into the buffer), until `dst` is full.
    fn read_into_ahead(
        &mut self,
        dst: &mut [u8],
        ahead: &mut [std::io::IoSliceMut<'_>],
    ) -> Result<usize> {
        self.read_into_then(dst, Some(ahead))
    }

    /// Puts `parts` back in front of the buffered bytes (growing the buffer if they do not fit
    /// before them).
    fn unread(&mut self, parts: &[&[u8]]) -> Result<()> {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        if n == 0 {
            return Ok(());
        }
        if n as u64 > self.pos {
            return Err(Error::new(
                ErrorKind::ValidationFailed {
                    message: format!("cannot give back {n} bytes at stream offset {}", self.pos),
                },
                self.pos,
            ));
        }
        if self.start < n {
            // Move the buffered bytes up to make room in front of them.
            let held = self.end - self.start;
            if self.buf.len() < n + held {
                self.buf.resize(n + held, 0);
            }
            self.buf.copy_within(self.start..self.end, n);
            self.start = n;
            self.end = n + held;
        }
        let mut at = self.start - n;
        self.start = at;
        for p in parts {
            self.buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        self.pos -= n as u64;
        Ok(())
    }
}

/// An object-safe view of a [`Reader`], so that handlers ([`SectionHandle`](crate::registry::SectionHandle), [`SectionHandler`](crate::stream::SectionHandler)) can be trait objects.
/// Implemented for every sized `Reader`; `dyn ErasedReader` is itself a `Reader`.
pub trait ErasedReader {
    /// [`Reader::take`].
    ///
    /// # Errors
    /// As [`Reader::take`].
    fn erased_take(&mut self, n: usize) -> Result<&[u8]>;
    /// [`Reader::peek`].
    ///
    /// # Errors
    /// As [`Reader::peek`].
    fn erased_peek(&mut self, n: usize) -> Result<Option<&[u8]>>;
    /// [`Reader::position`].
    fn erased_position(&self) -> u64;
    /// [`Reader::skip`].
    ///
    /// # Errors
    /// As [`Reader::skip`].
    fn erased_skip(&mut self, n: u64) -> Result<()>;
    /// [`Reader::read_into`].
    ///
    /// # Errors
    /// As [`Reader::read_into`].
    fn erased_read_into(&mut self, dst: &mut [u8]) -> Result<()>;
    /// [`Reader::read_into_ahead`].
    ///
    /// # Errors
    /// As [`Reader::read_into_ahead`].
    fn erased_read_into_ahead(
        &mut self,
        dst: &mut [u8],
        ahead: &mut [std::io::IoSliceMut<'_>],
    ) -> Result<usize>;
    /// [`Reader::unread`].
    ///
    /// # Errors
    /// As [`Reader::unread`].
    fn erased_unread(&mut self, parts: &[&[u8]]) -> Result<()>;
    /// [`Reader::available`].
    fn erased_available(&self) -> usize;
}

impl<R: Reader> ErasedReader for R {
    fn erased_take(&mut self, n: usize) -> Result<&[u8]> {
        self.take(n)
    }
    fn erased_peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        self.peek(n)
    }
    fn erased_position(&self) -> u64 {
        self.position()
    }
    fn erased_skip(&mut self, n: u64) -> Result<()> {
        self.skip(n)
    }
    fn erased_read_into(&mut self, dst: &mut [u8]) -> Result<()> {
        self.read_into(dst)
    }
    fn erased_read_into_ahead(
        &mut self,
        dst: &mut [u8],
        ahead: &mut [std::io::IoSliceMut<'_>],
    ) -> Result<usize> {
        self.read_into_ahead(dst, ahead)
    }
    fn erased_unread(&mut self, parts: &[&[u8]]) -> Result<()> {
        self.unread(parts)
    }
    fn erased_available(&self) -> usize {
        self.available()
    }
}

impl Reader for dyn ErasedReader + '_ {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        self.erased_take(n)
    }
    fn peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        self.erased_peek(n)
    }
    fn position(&self) -> u64 {
        self.erased_position()
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        self.erased_skip(n)
    }
    fn read_into(&mut self, dst: &mut [u8]) -> Result<()> {
        self.erased_read_into(dst)
    }
    fn read_into_ahead(
        &mut self,
        dst: &mut [u8],
        ahead: &mut [std::io::IoSliceMut<'_>],
    ) -> Result<usize> {
        self.erased_read_into_ahead(dst, ahead)
    }
    fn unread(&mut self, parts: &[&[u8]]) -> Result<()> {
        self.erased_unread(parts)
    }
    fn available(&self) -> usize {
        self.erased_available()
    }
}

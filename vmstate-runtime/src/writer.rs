//! Writers: where a save puts its bytes. The mirror image of [`Reader`](crate::reader::Reader).
//!
//! | writer | target |
//! |---|---|
//! | `Vec<u8>` | memory |
//! | [`IoWriter`] | any [`std::io::Write`] (socket, file, pipe); counts bytes |
//! | [`CountingWriter`] | nothing; only counts (sizes for the vmdesc) |

use crate::error::{Error, ErrorKind, Result};

/// A sink for stream bytes.
pub trait Writer {
    /// Writes all of `bytes`.
    ///
    /// # Errors
    /// I/O errors of the underlying sink.
    fn write_all(&mut self, bytes: &[u8]) -> Result<()>;

    /// Bytes written so far.
    fn position(&self) -> u64;

    /// Writes one byte.
    ///
    /// # Errors
    /// I/O.
    #[inline]
    fn write_u8(&mut self, v: u8) -> Result<()> {
        self.write_all(&[v])
    }

    /// Writes a big-endian u16.
    ///
    /// # Errors
    /// I/O.
    #[inline]
    fn write_be16(&mut self, v: u16) -> Result<()> {
        self.write_all(&v.to_be_bytes())
    }

    /// Writes a big-endian u32.
    ///
    /// # Errors
    /// I/O.
    #[inline]
    fn write_be32(&mut self, v: u32) -> Result<()> {
        self.write_all(&v.to_be_bytes())
    }

    /// Writes a big-endian u64.
    ///
    /// # Errors
    /// I/O.
    #[inline]
    fn write_be64(&mut self, v: u64) -> Result<()> {
        self.write_all(&v.to_be_bytes())
    }

    /// Writes a counted string (`u8 len` + bytes).
    ///
    /// # Errors
    /// [`ErrorKind::LengthTooLarge`] if `s` is longer than 255 bytes; I/O.
    fn write_counted_str(&mut self, s: &str) -> Result<()> {
        let len = u8::try_from(s.len()).map_err(|_| {
            Error::new(
                ErrorKind::LengthTooLarge {
                    len: s.len() as u64,
                    limit: 255,
                },
                self.position(),
            )
        })?;
        self.write_u8(len)?;
        self.write_all(s.as_bytes())
    }

    /// Writes `n` zero bytes.
    ///
    /// # Errors
    /// I/O.
    fn write_zeros(&mut self, mut n: usize) -> Result<()> {
        const Z: [u8; 256] = [0; 256];
        while n > 0 {
            let k = n.min(Z.len());
            self.write_all(&Z[..k])?;
            n -= k;
        }
        Ok(())
    }
}

impl<W: Writer + ?Sized> Writer for &mut W {
    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        (**self).write_all(bytes)
    }

    #[inline]
    fn position(&self) -> u64 {
        (**self).position()
    }
}

impl Writer for Vec<u8> {
    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    #[inline]
    fn position(&self) -> u64 {
        self.len() as u64
    }
}

/// Writer over any [`std::io::Write`], counting the bytes written.
#[derive(Debug)]
pub struct IoWriter<W> {
    inner: W,
    pos: u64,
}

impl<W: std::io::Write> IoWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        IoWriter { inner, pos: 0 }
    }

    /// Flushes and gives back the inner writer.
    ///
    /// # Errors
    /// I/O errors of the flush.
    pub fn into_inner(mut self) -> Result<W> {
        self.inner
            .flush()
            .map_err(|e| Error::new(ErrorKind::Io(e.kind()), self.pos))?;
        Ok(self.inner)
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: std::io::Write> Writer for IoWriter<W> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner
            .write_all(bytes)
            .map_err(|e| Error::new(ErrorKind::Io(e.kind()), self.pos))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.pos
    }
}

/// A writer that discards bytes and only counts them.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingWriter {
    /// Bytes "written".
    pub count: u64,
}

impl Writer for CountingWriter {
    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.count += bytes.len() as u64;
        Ok(())
    }

    #[inline]
    fn position(&self) -> u64 {
        self.count
    }
}

//! Reading a stream from a file, a pipe or a device, in bounded memory.
//!
//! A regular file is never read whole:
//!
//! 1. its first 8 bytes must be a stream header (`/dev/zero` or a random file fail here);
//! 2. the vmdesc is located in the file's last [`VMDESC_TAIL`] bytes with the runtime's locator
//!    ([`find_vmdesc`]; the same rule as for a whole stream in memory) and parsed;
//! 3. the file is read again from its start through the runtime's stream loader with the
//!    generic decoder ([`decode_reader`]) over an [`IoReader`]: RAM pages are stepped over,
//!    never held.
//!
//! A snapshot file (`VMSTSNAP`, see `vmstate_migration::snapshot`) stands for its device state:
//! the header is validated and the device stream (no RAM, at most 16 MiB) is read into memory;
//! offsets in messages are then from the device stream's first byte.
//!
//! Other inputs (pipes, character devices) cannot be read from the end: after the header check
//! they are read into memory up to [`PIPE_CAP`] bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use vmstate_migration::snapshot;
use vmstate_runtime::decode::{decode_reader, find_vmdesc, DecodedStream, VMDESC_TAIL};
use vmstate_runtime::stream::read_stream_header;
use vmstate_runtime::vmdesc::{parse_vmdesc, Vmdesc};
use vmstate_runtime::{IoReader, SliceReader};

use crate::CliError;

/// The most bytes read from an input that is not a regular file (a pipe or a device).
pub const PIPE_CAP: u64 = 32 << 20;

/// How much of the stream's start is kept for a look at its header and configuration section.
pub const HEAD: u64 = 4096;

/// A located and parsed vmdesc trailer.
#[derive(Debug, Clone)]
pub struct Located {
    /// From the `06` byte to the end of the stream.
    pub range: Range<u64>,
    /// The parsed vmdesc.
    pub desc: Vmdesc,
    /// The JSON text.
    pub json: Vec<u8>,
}

/// An opened input: a regular file (read from its end, then streamed), or the bytes of a pipe
/// or device.
#[derive(Debug)]
pub struct Input {
    path: PathBuf,
    /// The first [`HEAD`] bytes (fewer if the stream is shorter).
    head: Vec<u8>,
    source: Source,
    /// The stream's length in bytes.
    len: u64,
    located: Option<Located>,
}

#[derive(Debug)]
enum Source {
    File(File),
    Memory(Vec<u8>),
}

impl Input {
    /// Opens `path`, checks the stream header and locates the vmdesc.
    ///
    /// # Errors
    /// The file cannot be read, does not start with a stream header, a pipe is longer than
    /// [`PIPE_CAP`], or the located vmdesc is not valid.
    pub fn open(path: &Path) -> Result<Self, CliError> {
        let cannot =
            |e: std::io::Error| CliError::new(format!("cannot read {}: {e}", path.display()));
        let mut file = File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        let mut head = Vec::new();
        (&mut file)
            .take(HEAD)
            .read_to_end(&mut head)
            .map_err(cannot)?;
        if snapshot::is_snapshot(&head) && meta.is_file() {
            return Self::open_snapshot(path);
        }
        read_stream_header(&mut SliceReader::new(&head)).map_err(|e| CliError::at(path, &e))?;
        if meta.is_file() {
            let len = meta.len();
            let tail_len = len.min(VMDESC_TAIL);
            let base = len - tail_len;
            file.seek(SeekFrom::Start(base)).map_err(cannot)?;
            let mut tail = Vec::new();
            (&mut file)
                .take(tail_len)
                .read_to_end(&mut tail)
                .map_err(cannot)?;
            let located = locate(path, &tail, base)?;
            drop(tail);
            Ok(Input {
                path: path.to_owned(),
                head,
                source: Source::File(file),
                len,
                located,
            })
        } else {
            let bytes = read_capped(&mut file, head.clone()).map_err(cannot)?;
            if bytes.len() as u64 > PIPE_CAP {
                return Err(CliError::new(format!(
                    "{}: not a regular file and longer than {} MiB; save the stream to a file first",
                    path.display(),
                    PIPE_CAP >> 20
                )));
            }
            let located = locate(path, &bytes, 0)?;
            Ok(Input {
                path: path.to_owned(),
                head,
                len: bytes.len() as u64,
                source: Source::Memory(bytes),
                located,
            })
        }
    }

    /// A snapshot file (`vmstate_migration::snapshot`): its device state, a whole stream
    /// without RAM of at most 16 MiB, read into memory after the snapshot's header was
    /// validated. Offsets are then counted from the device state's first byte.
    fn open_snapshot(path: &Path) -> Result<Self, CliError> {
        let snap = snapshot::Snapshot::open(path).map_err(|e| CliError::new(e.to_string()))?;
        let bytes = snap
            .device_state()
            .map_err(|e| CliError::new(e.to_string()))?;
        let head = bytes[..bytes.len().min(HEAD as usize)].to_vec();
        read_stream_header(&mut SliceReader::new(&head)).map_err(|e| CliError::at(path, &e))?;
        let located = locate(path, &bytes, 0)?;
        Ok(Input {
            path: path.to_owned(),
            head,
            len: bytes.len() as u64,
            source: Source::Memory(bytes),
            located,
        })
    }

    /// The stream's first bytes (up to [`HEAD`]): its header and configuration section.
    #[must_use]
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The input's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stream's length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the stream is empty (never, once opened: it has a header).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vmdesc trailer, when the locator found one.
    #[must_use]
    pub fn located(&self) -> Option<&Located> {
        self.located.as_ref()
    }

    /// Decodes the whole stream with the generic decoder (streamed for files).
    ///
    /// # Errors
    /// The decoder's error, naming the file, offset, section and field.
    pub fn decode(mut self) -> Result<DecodedStream, CliError> {
        let path = self.path.clone();
        self.decode_raw().map_err(|e| CliError::at(&path, &e))
    }

    /// [`decode`](Self::decode), with the runtime's error; the input can be read again
    /// afterwards.
    ///
    /// # Errors
    /// The decoder's error.
    pub fn decode_raw(&mut self) -> vmstate_runtime::Result<DecodedStream> {
        let located = self
            .located
            .as_ref()
            .map(|l| (l.range.clone(), l.desc.clone()));
        let body_end = located.as_ref().map_or(self.len, |(r, _)| r.start);
        match &mut self.source {
            Source::File(f) => {
                f.seek(SeekFrom::Start(0)).map_err(|e| {
                    vmstate_runtime::Error::new(vmstate_runtime::ErrorKind::Io(e.kind()), 0)
                })?;
                let mut r = IoReader::new((&*f).take(body_end));
                decode_reader(&mut r, located, None)
            }
            Source::Memory(bytes) => {
                let n = usize::try_from(body_end).unwrap_or(usize::MAX);
                let body = bytes.get(..n).unwrap_or(bytes);
                decode_reader(&mut SliceReader::new(body), located, None)
            }
        }
    }

    /// A reader over the whole stream from its first byte (for loading into a machine).
    ///
    /// # Errors
    /// The file cannot be rewound.
    pub fn reader(&mut self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(match &mut self.source {
            Source::File(f) => {
                f.seek(SeekFrom::Start(0))?;
                Box::new(&*f)
            }
            Source::Memory(b) => Box::new(std::io::Cursor::new(&b[..])),
        })
    }

    /// Up to `len` bytes of the stream starting at `offset` (for showing bytes around an error).
    ///
    /// # Errors
    /// I/O errors.
    pub fn bytes_at(&mut self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        match &mut self.source {
            Source::File(f) => {
                f.seek(SeekFrom::Start(offset))?;
                let mut out = Vec::new();
                f.take(len as u64).read_to_end(&mut out)?;
                Ok(out)
            }
            Source::Memory(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                let end = start.saturating_add(len).min(b.len());
                Ok(b[start..end].to_vec())
            }
        }
    }
}

/// Reads `src` after `bytes` until its end or [`PIPE_CAP`] + 1 bytes, growing the buffer by a
/// quarter at a time (not doubling), so memory stays close to what was read.
fn read_capped(src: &mut impl Read, mut bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let cap = usize::try_from(PIPE_CAP + 1).unwrap_or(usize::MAX);
    loop {
        if bytes.len() == bytes.capacity() {
            let grow = (bytes.len() / 4)
                .max(1 << 20)
                .min(cap - bytes.len().min(cap));
            bytes.reserve_exact(grow.max(1));
        }
        let len = bytes.len();
        let room = (bytes.capacity() - len)
            .min(cap.saturating_sub(len))
            .min(1 << 16);
        if room == 0 {
            return Ok(bytes);
        }
        bytes.resize(len + room, 0);
        match src.read(&mut bytes[len..]) {
            Ok(0) => {
                bytes.truncate(len);
                return Ok(bytes);
            }
            Ok(n) => bytes.truncate(len + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => bytes.truncate(len),
            Err(e) => return Err(e),
        }
    }
}

/// Locates the vmdesc in `tail`, the stream's last bytes starting at stream offset `base`.
fn locate(path: &Path, tail: &[u8], base: u64) -> Result<Option<Located>, CliError> {
    let Some((start, json)) = find_vmdesc(tail) else {
        return Ok(None);
    };
    let bytes = tail.get(json.clone()).unwrap_or_default();
    let desc = parse_vmdesc(bytes)
        .map_err(|e| CliError::at(path, &e.at_offset(base + json.start as u64)))?;
    Ok(Some(Located {
        range: base + start as u64..base + tail.len() as u64,
        desc,
        json: bytes.to_vec(),
    }))
}

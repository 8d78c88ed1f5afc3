//! The destination: [`receive`].
//!
//! The stream is read incrementally with a bounded buffer. RAM pages go into guest memory as
//! they arrive ([`RamSink`]); that memory is scratch until the acknowledgement, because the
//! destination never runs a guest whose migration failed. Once the RAM END chunk has been loaded,
//! the rest of the stream (device FULL sections, EOF, vmdesc, nothing after it) is handed to
//! [`Registry::load_from`](vmstate_runtime::Registry::load_from) behind a re-synthesised header
//! and configuration section, so device state is staged, validated as a whole and committed only
//! when the entire stream was accepted; device sections are loaded one at a time, bounded by the
//! devices' state sizes. The stream ends with the vmdesc: its length field tells the reader where
//! the stream ends, so nothing past it is read. Only then is `LOADED` sent on the return path;
//! the guest is started ([`MigrationDestination::resume`]) only when the source's `GO` line
//! follows (see [`crate::transport`] for the handshake). On any error the destination answers
//! `ERR <error>`, applies no device state and does not start; without `GO` it does not start.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use vmstate_runtime::error::ErrorKind;
use vmstate_runtime::stream::{self, Configuration, SectionHeader};
use vmstate_runtime::{limits, MachineType, Reader, Registry};

use crate::error::{MigrationError, Result};
use crate::memory::GuestRam;
use crate::precopy::Report;
use crate::ram::RamSink;
use crate::transport::{read_line, write_ack, Transport, GO};

/// The VM being migrated into (not running yet).
pub trait MigrationDestination {
    /// Its guest memory (scratch until the migration is acknowledged).
    fn ram(&self) -> &GuestRam;
    /// Its devices.
    fn registry(&self) -> &Registry;
    /// Its machine type.
    fn machine(&self) -> &MachineType;
    /// Starts timers and vCPUs; called once, after `LOADED` was sent and `GO` received.
    fn resume(&mut self);
}

/// Destination settings.
#[derive(Debug, Clone)]
pub struct ReceiveSettings {
    /// Read timeout on the transport (a stalled source is a clean [`MigrationError::Timeout`]).
    pub read_timeout: Option<Duration>,
}

impl Default for ReceiveSettings {
    fn default() -> Self {
        ReceiveSettings {
            read_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// A buffered [`Reader`] over `io::Read` that can put bytes back in front of the unread data.
struct StreamReader<'a, T: ?Sized> {
    inner: &'a mut T,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pos: u64,
    eof: bool,
    io_error: Option<io::Error>,
    /// Watch for the vmdesc trailer (set once the registry reads the device sections).
    watch: bool,
    /// The last three `take`s while watching: length and up to 4 first bytes.
    history: [(usize, [u8; 4]); 3],
    /// Stream position right after the vmdesc, once seen: nothing is read past it, so the
    /// registry's "nothing follows" check does not wait for the source's `GO`.
    limit: Option<u64>,
}

impl<'a, T: Read + ?Sized> StreamReader<'a, T> {
    fn new(inner: &'a mut T) -> Self {
        StreamReader {
            inner,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
            pos: 0,
            eof: false,
            io_error: None,
            watch: false,
            history: [(0, [0; 4]); 3],
            limit: None,
        }
    }

    fn at_limit(&self) -> bool {
        self.limit
            .is_some_and(|l| self.pos + (self.end - self.start) as u64 >= l)
    }

    /// Bytes read from the transport but not consumed (the start of what follows the stream).
    fn leftover(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn fill(&mut self, n: usize) -> vmstate_runtime::Result<usize> {
        if n > limits::MAX_TAKE {
            return Err(vmstate_runtime::Error::new(
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
        while self.end < n && !self.eof && !self.at_limit() {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    self.io_error = Some(e);
                    return Err(vmstate_runtime::Error::new(ErrorKind::Io(kind), self.pos));
                }
            }
        }
        Ok(self.end - self.start)
    }

    /// Puts `prefix` in front of the unread bytes; positions continue to match the real stream
    /// from the end of the prefix on.
    fn unread(&mut self, prefix: &[u8]) {
        let mut v = Vec::with_capacity(prefix.len() + self.end - self.start + 64 * 1024);
        v.extend_from_slice(prefix);
        v.extend_from_slice(&self.buf[self.start..self.end]);
        self.end = v.len();
        v.resize(v.len().max(256 * 1024), 0);
        self.buf = v;
        self.start = 0;
        self.pos = self.pos.saturating_sub(prefix.len() as u64);
    }
}

impl<T: Read + ?Sized> Reader for StreamReader<'_, T> {
    fn take(&mut self, n: usize) -> vmstate_runtime::Result<&[u8]> {
        let avail = self.fill(n)?;
        if avail < n {
            return Err(vmstate_runtime::Error::new(
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
        if self.watch {
            let mut first = [0u8; 4];
            let k = n.min(4);
            first[..k].copy_from_slice(&self.buf[s..s + k]);
            self.history = [self.history[1], self.history[2], (n, first)];
        }
        Ok(&self.buf[s..s + n])
    }

    fn skip(&mut self, mut n: u64) -> vmstate_runtime::Result<()> {
        // The registry's vmdesc trailer step: EOF byte, `06`, be32 N, then skip(N). The stream
        // ends N bytes from here.
        if self.watch
            && self.limit.is_none()
            && self.history[0] == (1, [stream::EOF, 0, 0, 0])
            && self.history[1] == (1, [stream::VMDESC, 0, 0, 0])
            && self.history[2].0 == 4
            && u64::from(u32::from_be_bytes(self.history[2].1)) == n
        {
            self.limit = Some(self.pos + n);
        }
        while n > 0 {
            let chunk = n.min(limits::SKIP_CHUNK as u64);
            self.take(usize::try_from(chunk).unwrap_or(limits::SKIP_CHUNK))?;
            n -= chunk;
        }
        Ok(())
    }

    fn peek(&mut self, n: usize) -> vmstate_runtime::Result<Option<&[u8]>> {
        let avail = self.fill(n)?;
        if avail < n {
            return Ok(None);
        }
        Ok(Some(&self.buf[self.start..self.start + n]))
    }

    fn position(&self) -> u64 {
        self.pos
    }
}

fn load<D, T>(dest: &D, r: &mut StreamReader<'_, T>, report: &mut Report) -> Result<()>
where
    D: MigrationDestination + ?Sized,
    T: Read + ?Sized,
{
    let machine = dest.machine();
    let framing = machine.framing();
    stream::read_stream_header(r)?;
    let mut prefix = Vec::new();
    stream::write_header(&mut prefix)?;
    if framing.configuration {
        let pos = r.position();
        if r.peek(1)? != Some(&[stream::CONFIGURATION][..]) {
            return Err(vmstate_runtime::Error::new(
                ErrorKind::MissingConfiguration {
                    found: r.peek(1)?.map_or(0, |b| b[0]),
                },
                pos,
            )
            .into());
        }
        r.take(1)?;
        let config: Configuration = stream::read_configuration_body(r)?;
        if !machine
            .name()
            .as_bytes()
            .starts_with(config.machine.as_bytes())
        {
            return Err(vmstate_runtime::Error::new(
                ErrorKind::MachineTypeMismatch {
                    expected: machine.name().to_owned(),
                    found: config.machine,
                },
                pos,
            )
            .into());
        }
        // The registry re-checks the whole configuration (page bits, capabilities).
        stream::write_configuration(&mut prefix, &config)?;
    }
    let mut sink = RamSink::new(dest.ram())?;
    loop {
        let pos = r.position();
        let ty = r.peek(1)?.map(|b| b[0]);
        if !matches!(
            ty,
            Some(stream::SECTION_START | stream::SECTION_PART | stream::SECTION_END)
        ) {
            break;
        }
        match stream::read_section_header(r)? {
            h @ SectionHeader::Start { .. } => sink.start(r, &framing, h, pos)?,
            SectionHeader::Part { section_id } => sink.part(r, &framing, section_id, false, pos)?,
            SectionHeader::End { section_id } => sink.part(r, &framing, section_id, true, pos)?,
            _ => unreachable!("peeked a START/PART/END type byte"),
        }
        if sink.ended() {
            break;
        }
    }
    if !sink.ended() {
        return Err(vmstate_runtime::Error::new(
            ErrorKind::ValidationFailed {
                message: "the stream has no complete RAM section (START … END) before the device sections".into(),
            },
            r.position(),
        )
        .into());
    }
    // Device sections, EOF and vmdesc: all-or-nothing through the registry.
    r.unread(&prefix);
    r.watch = true;
    let loaded = dest.registry().load_from(machine, r)?;
    report.device_sections = loaded.sections.len();
    if loaded.ram.records > 0 {
        // Unreachable for a well-formed stream; the registry only stepped over a second RAM
        // section, but state was committed already, so the destination must not run.
        return Err(vmstate_runtime::Error::new(
            ErrorKind::ValidationFailed {
                message: "RAM chunks after the RAM END chunk".into(),
            },
            loaded.total_bytes,
        )
        .into());
    }
    report.final_pages.pages = sink.counts().pages;
    report.final_pages.zero_pages = sink.counts().zero_pages;
    report.bytes = loaded.total_bytes;
    Ok(())
}

/// Receives a migration into `dest` from `transport`; see the module docs.
///
/// # Errors
/// Every stream, RAM-validation and device error (with stream offsets), transport errors and
/// timeouts. `dest` is not resumed whenever an error is returned, and its guest memory must be
/// discarded. Its devices are unchanged except after [`MigrationError::NoGo`] (everything was
/// loaded and `LOADED` sent, but the source's `GO` did not arrive within the read timeout): the
/// destination must not be started then either. If the source committed (a lost `GO`), the VM is
/// paused on both sides and management decides which side to start; it never runs twice.
pub fn receive<D, T>(dest: &mut D, transport: &mut T, settings: &ReceiveSettings) -> Result<Report>
where
    D: MigrationDestination + ?Sized,
    T: Transport + ?Sized,
{
    let t0 = Instant::now();
    transport.set_timeout(settings.read_timeout)?;
    let mut report = Report::default();
    let mut r = StreamReader::new(&mut *transport);
    let result = load(&*dest, &mut r, &mut report);
    let io_error = r.io_error.take();
    let leftover = r.leftover().to_vec();
    drop(r);
    let result = result.map_err(|e| match (e, io_error) {
        (MigrationError::Stream(_), Some(io)) => MigrationError::from(io),
        (e, _) => e,
    });
    let has_return = transport.has_return_path();
    let loaded_at = Instant::now();
    match result {
        Ok(()) => {
            if has_return {
                // Step 2: LOADED, then wait for the source's commit; never start without it.
                write_ack(transport, Ok(()))
                    .map_err(|e| MigrationError::NoGo(format!("sending LOADED: {e}")))?;
                match read_line(transport, &leftover, "the source's GO") {
                    Ok(Some(line)) if line == GO => {}
                    Ok(Some(line)) => {
                        return Err(MigrationError::NoGo(format!("got {line:?} instead")))
                    }
                    Ok(None) => return Err(MigrationError::NoGo("connection closed".into())),
                    Err(e) => return Err(MigrationError::NoGo(e.to_string())),
                }
            }
            dest.resume();
            report.downtime = loaded_at.elapsed();
            report.total_time = t0.elapsed();
            Ok(report)
        }
        Err(e) => {
            if has_return {
                // The source may be gone already; its own error is what it reports then.
                let _ = write_ack(transport, Err(&e.to_string()));
            }
            Err(e)
        }
    }
}

//! Transports: TCP, Unix socket and file, behind [`Transport`], and the return path.
//!
//! The switchover is a three-step handshake on connections with a return path:
//!
//! 1. The source writes the whole stream (it ends with the vmdesc, whose length field tells the
//!    destination where the stream ends) and waits, keeping the connection open.
//! 2. The destination validates and applies everything, then answers one line on the return path:
//!    `LOADED` (it does *not* start yet) or `ERR <message>`.
//! 3. On `LOADED` the source commits (it will never resume the guest again), writes the line `GO`
//!    on the forward channel right after the vmdesc and half-closes
//!    ([`Transport::finish_stream`]). The destination starts only on `GO`.
//!
//! A lost or late `LOADED` makes the source time out and resume; the destination then never
//! sees `GO` (timeout or closed connection) and does not start. A lost `GO` leaves the source
//! committed (success, guest stopped) and the destination not started ("no GO"): the VM is paused
//! on both sides until management resolves it, but it never runs twice. A file has no return
//! path: writing the stream and syncing it is the success (no handshake).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::channels::Socket;
use crate::error::{MigrationError, Result};
use crate::sys::{writev_all, Piece, WRITE_SLICES};

/// A byte channel a migration runs over.
pub trait Transport: Read + Write + Send {
    /// Tells the peer the stream is complete (half-close), keeping the return path readable.
    ///
    /// # Errors
    /// I/O errors.
    fn finish_stream(&mut self) -> io::Result<()>;

    /// Sets the read timeout (the ack wait on the source, stream reads on the destination).
    ///
    /// # Errors
    /// I/O errors.
    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Bounds the blocking writes of the source (its stream, its page channels, `GO`): a write
    /// to a peer that took no byte for `timeout` fails with a timeout
    /// ([`MigrationError::Timeout`] from [`migrate`](crate::migrate)) instead of blocking forever
    /// on a full socket buffer whose peer went silent (a partition sends no FIN and no RST).
    /// Sockets set `SO_SNDTIMEO` to a quarter of `timeout`, and
    /// [`write_pieces`](Self::write_pieces) looks at the socket each time a `writev` returns
    /// short: it fails when a TCP peer sent no ACK at all for `timeout` (`TCP_INFO`: a silent
    /// partition), or when none of the write's bytes left the send queue (`SIOCOUTQ`) for that
    /// long (a peer whose process stopped reading). (One `SO_SNDTIMEO` of the whole timeout is
    /// no bound: measured after a silent partition, a `writev` that copied some bytes returns
    /// short when its timeout elapses, and the next one waits a whole timeout again.)
    /// Page channels opened with [`open_channel`](Self::open_channel) take the same timeout.
    /// [`migrate`](crate::migrate) calls it with
    /// [`Settings::write_timeout`](crate::Settings::write_timeout). The default does nothing (a
    /// file). Not `TcpStream::set_write_timeout`, which sets the whole timeout as `SO_SNDTIMEO`.
    ///
    /// # Errors
    /// I/O errors.
    fn set_send_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let _ = timeout;
        Ok(())
    }

    /// Whether the peer answers over a return path.
    fn has_return_path(&self) -> bool {
        true
    }

    /// Writes every piece completely, in order. The default gathers them into one buffer (a
    /// copy of guest memory) and calls `write_all`; sockets and files override it with
    /// `writev` straight from guest memory.
    ///
    /// # Errors
    /// I/O errors.
    fn write_pieces(&mut self, pieces: &[Piece<'_>]) -> io::Result<()> {
        if let [Piece::Bytes(b)] = pieces {
            return self.write_all(b);
        }
        let mut v = Vec::with_capacity(pieces.iter().map(Piece::len).sum());
        for p in pieces {
            p.append_to(&mut v);
        }
        self.write_all(&v)
    }

    /// Opens one more connection to the same peer, for a page channel of a multi-channel
    /// migration ([`Settings::channels`](crate::Settings::channels)). TCP connects to the peer
    /// address, a Unix socket to the peer's path; the default (a file) cannot.
    ///
    /// # Errors
    /// I/O errors; [`io::ErrorKind::Unsupported`] where the transport has no peer to dial.
    fn open_channel(&self) -> io::Result<Socket> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport cannot open page channels",
        ))
    }

    /// A saved stream's configuration manifest (the JSON under `vmstate-manifest` in its
    /// vmdesc, see [`crate::preflight`]), read *before* the stream is, leaving the transport at
    /// the stream's first byte: `Ok(None)` when the stream has none. Only a seekable transport
    /// (a file) can; the default answers `Ok(None)`.
    ///
    /// # Errors
    /// I/O errors, a vmdesc that cannot be found or parsed.
    fn saved_manifest(&mut self) -> crate::Result<Option<serde_json::Value>> {
        Ok(None)
    }
}

/// A socket: the stream ends with a write shutdown, and the peer answers on the same socket.
macro_rules! socket_transport {
    ($($socket:ty => $dial:ident, $write_timeout:ident),+) => {$(
        impl Transport for $socket {
            fn finish_stream(&mut self) -> io::Result<()> {
                self.flush()?;
                self.shutdown(Shutdown::Write)
            }
            fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
                self.set_read_timeout(timeout)
            }
            fn set_send_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
                $write_timeout(self, timeout)
            }
            fn write_pieces(&mut self, pieces: &[Piece<'_>]) -> io::Result<()> {
                writev_all(self.as_fd(), pieces)
            }
            fn open_channel(&self) -> io::Result<Socket> {
                $dial(self)
            }
        }
    )+};
}

socket_transport!(
    TcpStream => dial_tcp, tcp_write_timeout,
    UnixStream => dial_unix, unix_write_timeout
);

/// One slice of the write timeout as `SO_SNDTIMEO` (see [`Transport::set_send_timeout`]).
fn write_slice(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| (t / WRITE_SLICES).max(Duration::from_millis(1)))
}

/// `SO_SNDTIMEO` of one slice (see [`Transport::set_send_timeout`]).
fn tcp_write_timeout(s: &TcpStream, timeout: Option<Duration>) -> io::Result<()> {
    s.set_write_timeout(write_slice(timeout))
}

/// `SO_SNDTIMEO` of one slice (a Unix socket has no partition, only a peer that stops reading).
fn unix_write_timeout(s: &UnixStream, timeout: Option<Duration>) -> io::Result<()> {
    s.set_write_timeout(write_slice(timeout))
}

/// The write timeout of a socket whose `SO_SNDTIMEO` is one slice of it.
fn whole(slice: Option<Duration>) -> Option<Duration> {
    slice.map(|s| s * WRITE_SLICES)
}

/// Page channels of a TCP migration connect to the main connection's peer address, within the
/// main connection's write timeout, and take that timeout.
pub(crate) fn dial_tcp(main: &TcpStream) -> io::Result<Socket> {
    let addr = main.peer_addr()?;
    let timeout = whole(main.write_timeout()?);
    let s = match timeout {
        Some(t) => TcpStream::connect_timeout(&addr, t)?,
        None => TcpStream::connect(addr)?,
    };
    let _ = s.set_nodelay(true);
    tcp_write_timeout(&s, timeout)?;
    Ok(Socket::Tcp(s))
}

/// Page channels of a Unix-socket migration connect to the main connection's peer path.
pub(crate) fn dial_unix(main: &UnixStream) -> io::Result<Socket> {
    let addr = main.peer_addr()?;
    let path = addr.as_pathname().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the peer socket has no path to open page channels to",
        )
    })?;
    let s = UnixStream::connect(path)?;
    unix_write_timeout(&s, whole(main.write_timeout()?))?;
    Ok(Socket::Unix(s))
}

/// A failed write: a timeout ([`Transport::set_send_timeout`]) is [`MigrationError::Timeout`]
/// naming `what` the writer waited for; anything else is [`MigrationError::Io`].
pub(crate) fn write_error(e: io::Error, what: &'static str) -> MigrationError {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        MigrationError::Timeout(what)
    } else {
        MigrationError::Io(e)
    }
}

/// What a source that timed out writing its stream waited for.
pub(crate) const WAIT_STREAM: &str =
    "the destination to take more of the stream (write timeout: the destination or the network went silent)";
/// What a destination that timed out reading the stream waited for.
pub(crate) const WAIT_SOURCE: &str =
    "the source's stream (read timeout: the source or the network went silent; nothing was applied here)";
/// What a source that timed out writing a page channel waited for.
pub(crate) const WAIT_PAGES: &str =
    "the destination to take more pages on a page channel (write timeout: the destination or the network went silent)";

/// A stream file (a savevm-style file with RAM): write on the source, read on the destination.
#[derive(Debug)]
pub struct FileTransport(pub File);

impl Read for FileTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for FileTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Transport for FileTransport {
    fn finish_stream(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn set_timeout(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn has_return_path(&self) -> bool {
        false
    }
    fn write_pieces(&mut self, pieces: &[Piece<'_>]) -> io::Result<()> {
        writev_all(self.0.as_fd(), pieces)
    }
    fn saved_manifest(&mut self) -> crate::Result<Option<serde_json::Value>> {
        crate::preflight::saved_manifest(&mut self.0)
    }
}

/// Longest handshake line accepted.
pub const MAX_ACK_LINE: usize = 4096;

/// The destination's answer when everything was loaded (step 2).
pub const LOADED: &str = "LOADED";
/// The source's commit (step 3), sent after the stream on the forward channel.
pub const GO: &str = "GO";

/// Writes one handshake line (`LOADED`, `GO`).
///
/// # Errors
/// I/O errors.
pub fn write_line<T: Transport + ?Sized>(t: &mut T, line: &str) -> io::Result<()> {
    // One write: the line travels in one piece.
    let mut v = Vec::with_capacity(line.len() + 1);
    v.extend_from_slice(line.as_bytes());
    v.push(b'\n');
    t.write_all(&v)?;
    t.flush()
}

/// Writes the destination's answer: `LOADED` or `ERR <message on one line>`.
///
/// # Errors
/// I/O errors.
pub fn write_ack<T: Transport + ?Sized>(
    t: &mut T,
    outcome: std::result::Result<(), &str>,
) -> io::Result<()> {
    let line = match outcome {
        Ok(()) => LOADED.to_owned(),
        Err(msg) => {
            let one: String = msg
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_ACK_LINE - 8)
                .collect();
            format!("ERR {one}")
        }
    };
    write_line(t, &line)
}

/// Reads one `\n`-terminated line (at most [`MAX_ACK_LINE`] bytes), after the bytes in
/// `pending` (already read from `t`). `Ok(None)` when the peer closed before a full line.
pub(crate) fn read_line<T: Read + ?Sized>(
    t: &mut T,
    pending: &[u8],
    what: &'static str,
) -> Result<Option<String>> {
    let mut line = Vec::new();
    let mut it = pending.iter().copied();
    let mut b = [0u8; 1];
    loop {
        let byte = if let Some(x) = it.next() {
            x
        } else {
            match t.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => b[0],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(MigrationError::Timeout(what))
                }
                Err(e) => return Err(MigrationError::Io(e)),
            }
        };
        if byte == b'\n' || line.len() >= MAX_ACK_LINE {
            break;
        }
        line.push(byte);
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Reads the destination's answer (`LOADED`).
///
/// # Errors
/// [`MigrationError::Remote`] for `ERR …`, [`MigrationError::BadAck`] for anything else,
/// [`MigrationError::Io`] for a closed connection, [`MigrationError::Timeout`] when the read
/// timeout elapses.
pub fn read_ack<T: Transport + ?Sized>(t: &mut T) -> Result<()> {
    let Some(line) = read_line(t, &[], "the destination's LOADED")? else {
        return Err(MigrationError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the destination closed the connection without acknowledging",
        )));
    };
    if line == LOADED {
        Ok(())
    } else if let Some(msg) = line.strip_prefix("ERR ") {
        Err(MigrationError::Remote(msg.to_owned()))
    } else {
        Err(MigrationError::BadAck(line))
    }
}

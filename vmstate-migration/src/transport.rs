//! Transports: TCP, Unix socket and file, behind [`Transport`], and the return path.
//!
//! The source writes the whole stream, then half-closes its side ([`Transport::finish_stream`])
//! and waits for one line from the destination on the same connection: `OK` when the destination
//! loaded everything and is about to run, `ERR <message>` otherwise. A file has no return path:
//! writing the stream and syncing it is the success.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::error::{MigrationError, Result};

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

    /// Whether the peer answers over a return path.
    fn has_return_path(&self) -> bool {
        true
    }
}

impl Transport for TcpStream {
    fn finish_stream(&mut self) -> io::Result<()> {
        self.flush()?;
        self.shutdown(Shutdown::Write)
    }
    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)
    }
}

impl Transport for UnixStream {
    fn finish_stream(&mut self) -> io::Result<()> {
        self.flush()?;
        self.shutdown(Shutdown::Write)
    }
    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)
    }
}

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
}

/// Longest return-path line accepted.
pub const MAX_ACK_LINE: usize = 4096;

/// Writes the destination's answer: `OK` or `ERR <message on one line>`.
///
/// # Errors
/// I/O errors.
pub fn write_ack<T: Transport + ?Sized>(
    t: &mut T,
    outcome: std::result::Result<(), &str>,
) -> io::Result<()> {
    let line = match outcome {
        Ok(()) => "OK\n".to_owned(),
        Err(msg) => {
            let one: String = msg
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_ACK_LINE - 8)
                .collect();
            format!("ERR {one}\n")
        }
    };
    t.write_all(line.as_bytes())?;
    t.flush()
}

/// Reads the destination's answer.
///
/// # Errors
/// [`MigrationError::Remote`] for `ERR …`, [`MigrationError::BadAck`] for anything else or a
/// closed connection, [`MigrationError::Timeout`] when the read timeout elapses.
pub fn read_ack<T: Transport + ?Sized>(t: &mut T) -> Result<()> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match t.read(&mut b) {
            Ok(0) if line.is_empty() => {
                return Err(MigrationError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the destination closed the connection without acknowledging",
                )))
            }
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) if line.len() >= MAX_ACK_LINE => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(MigrationError::Timeout("the destination's acknowledgement"))
            }
            Err(e) => return Err(MigrationError::Io(e)),
        }
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    if line == "OK" {
        Ok(())
    } else if let Some(msg) = line.strip_prefix("ERR ") {
        Err(MigrationError::Remote(msg.to_owned()))
    } else {
        Err(MigrationError::BadAck(line))
    }
}

//! The migration error type.

use std::fmt;
use std::io;

/// A migration failure, on either side.
#[derive(Debug)]
#[non_exhaustive]
pub enum MigrationError {
    /// The stream was malformed or rejected (framing, RAM validation, device load); carries the
    /// runtime's error with its byte offset and section.
    Stream(vmstate_runtime::Error),
    /// A transport read or write failed (including a cut connection).
    Io(io::Error),
    /// A read on the transport timed out (the socket's read timeout elapsed).
    Timeout(&'static str),
    /// The destination reported a failure over the return path.
    Remote(String),
    /// The return path said something that is neither `OK` nor `ERR …`.
    BadAck(String),
    /// Guest memory could not be read or written, or its layout is unusable.
    Memory(String),
    /// The destination loaded everything but the source's `GO` never came (timeout, closed
    /// connection or another line): it does not start. If the source committed (a lost `GO`),
    /// the VM is paused on both sides until management resolves it.
    NoGo(String),
    /// The transport and machine type combination is not supported.
    Unsupported(String),
    /// The migration was cancelled through [`Settings::cancel`](crate::Settings::cancel).
    Cancelled,
    /// Destination: the stream ended before it was complete — the source stopped sending or the
    /// network dropped the connection; nothing was applied. Says where the stream stopped.
    SourceGone {
        /// Stream bytes read before it ended, when known.
        offset: Option<u64>,
        /// The section being read (`ram`, a device) and its instance, when in one.
        section: Option<String>,
        /// What the read saw (end of input, connection reset, …).
        detail: String,
    },
    /// Verification: the destination's loaded state differs from what the source sent (each
    /// difference, one line); the source resumed its guest, the destination does not start.
    Verify(Vec<String>),
    /// Preflight: the two sides' configurations do not fit ([`crate::preflight`]); nothing of
    /// the guest was sent, the source's guest never stopped.
    Preflight {
        /// Which side refused (as seen from the side reporting).
        refused_by: &'static str,
        /// Every difference found, errors and warnings.
        mismatches: Vec<vmstate_runtime::manifest::Mismatch>,
    },
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationError::Stream(e) => write!(f, "stream rejected: {e}"),
            MigrationError::Io(e) => write!(f, "transport error: {e}"),
            MigrationError::Timeout(what) => write!(f, "{TIMED_OUT}{what}"),
            MigrationError::Remote(msg) => write!(f, "destination failed: {msg}"),
            MigrationError::BadAck(line) => write!(f, "unexpected return-path message {line:?}"),
            MigrationError::Memory(msg) => write!(f, "guest memory: {msg}"),
            MigrationError::NoGo(why) => write!(f, "no GO from the source ({why}); not started"),
            MigrationError::Unsupported(msg) => write!(f, "unsupported: {msg}"),
            MigrationError::Cancelled => f.write_str("migration cancelled"),
            MigrationError::SourceGone {
                offset,
                section,
                detail,
            } => {
                write!(f, "{SOURCE_GONE}: the stream ended")?;
                if let Some(o) = offset {
                    write!(f, " at byte {o:#x}")?;
                }
                if let Some(s) = section {
                    write!(f, " in section {s}")?;
                }
                write!(
                    f,
                    " ({detail}); nothing was applied here — the source's own error says why"
                )
            }
            MigrationError::Verify(diffs) => write!(
                f,
                "verification: the destination's state differs from what was sent ({} \
                 difference{}): {}; the source resumed its guest, the destination does not start",
                diffs.len(),
                if diffs.len() == 1 { "" } else { "s" },
                diffs.join("; ")
            ),
            MigrationError::Preflight {
                refused_by,
                mismatches,
            } => {
                let errors: Vec<String> = mismatches
                    .iter()
                    .filter(|m| m.severity == vmstate_runtime::manifest::Severity::Error)
                    .map(ToString::to_string)
                    .collect();
                write!(
                    f,
                    "preflight: the {refused_by} refused the migration before any guest state \
                     was sent ({} mismatch{}): {}",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "es" },
                    errors.join("; ")
                )
            }
        }
    }
}

/// Where a failure came from, as far as the side reporting it can tell ([`MigrationError::origin`]).
///
/// A side sees the other only through the connection, so some causes look alike from one side:
/// a peer process that crashed or was killed and a middlebox that closed the connection both
/// close it ([`Origin::Closed`]); a network partition and a hung peer are both silence
/// ([`Origin::Silent`]). The other side's own report completes the picture (the source shows the
/// destination's reason when the return path still works: [`Origin::Peer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// This side: its own check rejected what arrived, or its own memory, devices or
    /// settings failed, or it was cancelled.
    Local,
    /// The other side failed and said why (the reason is in the error).
    Peer,
    /// The two sides are configured differently (preflight, an unsupported combination).
    Configuration,
    /// Bytes were changed or lost in transit (the stream's integrity check or verification).
    Damage,
    /// The connection was closed or reset: the other side's process ended (a crash, a kill,
    /// a deliberate stop) or something in between closed it.
    Closed,
    /// Nothing arrived within the timeout: a network partition or a hung peer.
    Silent,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Local => "this side",
            Origin::Peer => "the other side (its own report)",
            Origin::Configuration => "the configuration of the two sides",
            Origin::Damage => "the transport (bytes changed or lost in transit)",
            Origin::Closed => "the other side or the network (the connection was closed)",
            Origin::Silent => "the other side or the network (silence until the timeout)",
        })
    }
}

fn io_origin(kind: io::ErrorKind) -> Origin {
    use io::ErrorKind as K;
    match kind {
        K::BrokenPipe
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::UnexpectedEof => Origin::Closed,
        K::TimedOut | K::WouldBlock => Origin::Silent,
        _ => Origin::Local,
    }
}

impl MigrationError {
    /// Where this failure came from, as far as the side that returned it can tell (see
    /// [`Origin`]); `docs/failure-classes.md` maps every failure class to what each side
    /// reports.
    #[must_use]
    pub fn origin(&self) -> Origin {
        match self {
            MigrationError::Stream(e) => match e.kind() {
                vmstate_runtime::ErrorKind::IntegrityMismatch { .. } => Origin::Damage,
                vmstate_runtime::ErrorKind::Io(kind) => io_origin(*kind),
                vmstate_runtime::ErrorKind::UnexpectedEof { .. } => Origin::Closed,
                _ => Origin::Local,
            },
            // A page channel's integrity failure comes as its reader's message.
            MigrationError::Io(e) if e.to_string().contains(INTEGRITY_FAILED) => Origin::Damage,
            MigrationError::Io(e) => io_origin(e.kind()),
            MigrationError::Timeout(_) => Origin::Silent,
            // The destination's own error, as it displayed it: a failure there caused by the
            // connection or the bytes in transit is not the destination's own.
            MigrationError::Remote(msg) if msg.contains(INTEGRITY_FAILED) => Origin::Damage,
            MigrationError::Remote(msg) if msg.starts_with(SOURCE_GONE) => Origin::Closed,
            MigrationError::Remote(msg) if msg.starts_with(TIMED_OUT) => Origin::Silent,
            MigrationError::Remote(_) | MigrationError::BadAck(_) => Origin::Peer,
            MigrationError::Memory(_) | MigrationError::Cancelled => Origin::Local,
            MigrationError::NoGo(why) if why.starts_with(NOGO_DIFFERS) => Origin::Damage,
            MigrationError::NoGo(why) if why.starts_with(TIMED_OUT) => Origin::Silent,
            MigrationError::NoGo(why) if why.starts_with("got ") => Origin::Peer,
            MigrationError::NoGo(_) | MigrationError::SourceGone { .. } => Origin::Closed,
            MigrationError::Unsupported(_) | MigrationError::Preflight { .. } => {
                Origin::Configuration
            }
            MigrationError::Verify(_) => Origin::Damage,
        }
    }
}

/// What [`vmstate_runtime::ErrorKind::IntegrityMismatch`] displays as (in a peer's `ERR` line).
const INTEGRITY_FAILED: &str = "integrity check failed: ";
/// How [`MigrationError::SourceGone`] displays.
const SOURCE_GONE: &str = "the source or the network went away";
/// How [`MigrationError::Timeout`] displays.
const TIMED_OUT: &str = "timed out waiting for ";
/// How the destination's [`MigrationError::NoGo`] after the source's `ABORT` begins.
pub(crate) const NOGO_DIFFERS: &str = "the source found the loaded state differs";

impl std::error::Error for MigrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrationError::Stream(e) => Some(e),
            MigrationError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<vmstate_runtime::Error> for MigrationError {
    fn from(e: vmstate_runtime::Error) -> Self {
        MigrationError::Stream(e)
    }
}

impl From<io::Error> for MigrationError {
    fn from(e: io::Error) -> Self {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            MigrationError::Timeout("the peer")
        } else {
            MigrationError::Io(e)
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MigrationError>;

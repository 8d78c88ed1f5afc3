//! The one error type of the runtime.
//!
//! Every error says *what* went wrong ([`ErrorKind`]) and *where*: the byte offset in the stream,
//! the section (idstr, instance id, version) and the field path inside the section, e.g.
//! ``at byte 0x1a4 in section `serial` instance 0 (v3), field `state.serial/recv_fifo.recv_fifo.head`:
//! unexpected end of input (needed 4 bytes, 2 available)``.
//!
//! The error is one pointer wide (`Box` inside), so `Result<(), Error>` stays cheap on the hot path.

use std::borrow::Cow;
use std::fmt;

/// Which section an error happened in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionRef {
    /// The section's idstr, e.g. `serial` or `0000:00:01.3/piix4_pm`.
    pub idstr: String,
    /// The instance id from the section header.
    pub instance_id: u32,
    /// The version from the section header, when known.
    pub version: Option<u32>,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended before a read could be satisfied.
    UnexpectedEof {
        /// Bytes the read needed.
        needed: u64,
        /// Bytes that were left.
        available: u64,
    },
    /// The stream does not start with `QEVM`.
    BadMagic {
        /// The be32 found instead.
        found: u32,
    },
    /// The stream's file version is not 3.
    UnsupportedFileVersion {
        /// The version found.
        found: u32,
    },
    /// A section or subsection version is newer than this code supports.
    VersionTooNew {
        /// The version in the stream.
        found: u32,
        /// The newest version we accept.
        max: u32,
    },
    /// A section or subsection version is older than this code accepts.
    VersionTooOld {
        /// The version in the stream.
        found: u32,
        /// The oldest version we accept.
        min: u32,
    },
    /// The stream has a section no registered device claims.
    UnknownSection {
        /// idstr from the section header.
        idstr: String,
        /// Instance id from the section header.
        instance_id: u32,
    },
    /// A subsection whose name has the parent's prefix but that the parent does not declare.
    UnknownSubsection {
        /// The subsection name found in the stream.
        name: String,
    },
    /// The same subsection appeared twice for one struct.
    DuplicateSubsection {
        /// The subsection name.
        name: String,
    },
    /// The same (idstr, instance) section appeared twice.
    DuplicateSection {
        /// idstr of the section.
        idstr: String,
        /// instance id of the section.
        instance_id: u32,
    },
    /// A section footer carries another section id than the header.
    FooterMismatch {
        /// The section id of the header.
        expected: u32,
        /// The section id in the footer.
        found: u32,
    },
    /// A section footer was expected but another byte was found.
    MissingFooter {
        /// The byte found where `0x7e` was expected.
        found: u8,
    },
    /// A byte that does not start any known section type.
    UnexpectedSectionType {
        /// The byte found.
        found: u8,
    },
    /// The configuration section names another machine type.
    MachineTypeMismatch {
        /// Our machine type.
        expected: String,
        /// The machine type named in the stream.
        found: String,
    },
    /// The configuration section is missing although the machine type sends one.
    MissingConfiguration {
        /// The byte found where `0x07` was expected.
        found: u8,
    },
    /// A machine type name the catalog does not know.
    UnknownMachineType {
        /// The name.
        name: String,
    },
    /// A length or count from the stream is above the declared maximum.
    LengthTooLarge {
        /// The length or count found.
        len: u64,
        /// The maximum allowed.
        limit: u64,
    },
    /// An `equal` field differs from the locally configured value.
    NotEqual {
        /// The local (configured) value.
        expected: i128,
        /// The value in the stream.
        found: i128,
    },
    /// A value outside its declared range or otherwise invalid.
    InvalidValue {
        /// What was expected, in words.
        expected: Cow<'static, str>,
        /// The value found.
        found: i128,
    },
    /// A validation or hook rejected the state.
    ValidationFailed {
        /// The message of the validation.
        message: String,
    },
    /// A save-side hook failed.
    SaveFailed {
        /// The message of the hook.
        message: String,
    },
    /// Bytes remain after the end of the stream.
    TrailingBytes {
        /// How many (counting stops at [`limits::MAX_SECTION_BYTES`](crate::limits::MAX_SECTION_BYTES)).
        count: u64,
    },
    /// The stream has no vmdesc JSON, but the operation needs one.
    MissingVmdesc,
    /// The vmdesc JSON is malformed or does not match the stream.
    BadVmdesc {
        /// What is wrong.
        message: String,
    },
    /// A QEMU command (`0x08`) this runtime does not handle.
    UnsupportedCommand {
        /// The be16 command number.
        cmd: u16,
    },
    /// A PART or END chunk whose section id no START opened.
    UnknownSectionId {
        /// The section id.
        section_id: u32,
    },
    /// RAM record flags this runtime does not step over (XBZRLE, compression, RDMA hooks, or an
    /// unknown combination).
    UnsupportedRamFlags {
        /// The flag bits of the record.
        flags: u64,
    },
    /// A RAM record names a block that the START chunk did not announce.
    UnknownRamBlock {
        /// The block idstr.
        name: String,
    },
    /// A RAM page lies (partly) outside its block.
    RamPageOutOfRange {
        /// The block idstr.
        block: String,
        /// Offset of the page in the block.
        offset: u64,
        /// The block's used length announced in the START chunk.
        used_length: u64,
    },
    /// The stream's integrity check (an in-stream checksum the source wrote over a run of
    /// bytes) does not match the bytes received: the transport changed, dropped or added bytes.
    IntegrityMismatch {
        /// What the damaged run carried (a RAM block and page range, a section).
        what: String,
        /// How it differs (lengths, checksums).
        detail: String,
    },
    /// An I/O error of the underlying reader or writer.
    Io(std::io::ErrorKind),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    offset: Option<u64>,
    section: Option<SectionRef>,
    /// Path components, innermost first (they are pushed while the error unwinds).
    path: Vec<Cow<'static, str>>,
}

/// A load or save error: kind, byte offset, section and field path.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(Box<Inner>);

impl Error {
    /// An error of `kind` at byte `offset`.
    #[cold]
    #[must_use]
    pub fn new(kind: ErrorKind, offset: u64) -> Self {
        Error(Box::new(Inner {
            kind,
            offset: Some(offset),
            section: None,
            path: Vec::new(),
        }))
    }

    /// An error of `kind` with no byte offset (e.g. a save-side hook).
    #[cold]
    #[must_use]
    pub fn without_offset(kind: ErrorKind) -> Self {
        Error(Box::new(Inner {
            kind,
            offset: None,
            section: None,
            path: Vec::new(),
        }))
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The byte offset in the stream where the error was detected.
    #[must_use]
    pub fn offset(&self) -> Option<u64> {
        self.0.offset
    }

    /// The section the error happened in.
    #[must_use]
    pub fn section(&self) -> Option<&SectionRef> {
        self.0.section.as_ref()
    }

    /// The field path inside the section, outermost first, joined with `.`
    /// (e.g. `state.serial/tsr.tsr_retry`). `None` for errors outside any field.
    #[must_use]
    pub fn field_path(&self) -> Option<String> {
        if self.0.path.is_empty() {
            return None;
        }
        let mut s = String::new();
        for (i, p) in self.0.path.iter().rev().enumerate() {
            if i > 0 && !p.starts_with('[') {
                s.push('.');
            }
            s.push_str(p);
        }
        Some(s)
    }

    /// Adds an outer path component (a field name, subsection name or `[i]`).
    #[cold]
    #[must_use]
    pub fn in_field(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.0.path.push(name.into());
        self
    }

    /// Adds an array index component (`[i]`).
    #[cold]
    #[must_use]
    pub fn at_index(mut self, i: usize) -> Self {
        self.0.path.push(Cow::Owned(format!("[{i}]")));
        self
    }

    /// Records the section, unless one is already recorded.
    #[cold]
    #[must_use]
    pub fn in_section(mut self, section: SectionRef) -> Self {
        if self.0.section.is_none() {
            self.0.section = Some(section);
        }
        self
    }

    /// Sets the byte offset, if none is recorded yet.
    #[cold]
    #[must_use]
    pub fn at_offset(mut self, offset: u64) -> Self {
        if self.0.offset.is_none() {
            self.0.offset = Some(offset);
        }
        self
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({self})")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(off) = self.0.offset {
            write!(f, "at byte {off:#x}")?;
            sep = " ";
        }
        if let Some(s) = &self.0.section {
            write!(
                f,
                "{sep}in section `{}` instance {}",
                s.idstr, s.instance_id
            )?;
            if let Some(v) = s.version {
                write!(f, " (v{v})")?;
            }
            sep = " ";
        }
        if let Some(p) = self.field_path() {
            if sep.is_empty() {
                write!(f, "field `{p}`")?;
            } else {
                write!(f, ", field `{p}`")?;
            }
            sep = " ";
        }
        if !sep.is_empty() {
            f.write_str(": ")?;
        }
        fmt::Display::fmt(&self.0.kind, f)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEof { needed, available } => write!(
                f,
                "unexpected end of input (needed {needed} bytes, {available} available)"
            ),
            ErrorKind::BadMagic { found } => write!(
                f,
                "not a QEMU migration stream: magic is {found:#010x}, expected 0x5145564d (\"QEVM\")"
            ),
            ErrorKind::UnsupportedFileVersion { found } => write!(
                f,
                "unsupported stream file version {found}, expected 3"
            ),
            ErrorKind::VersionTooNew { found, max } => write!(
                f,
                "version {found} is too new: this code loads at most version {max}"
            ),
            ErrorKind::VersionTooOld { found, min } => write!(
                f,
                "version {found} is too old: this code loads version {min} or newer"
            ),
            ErrorKind::UnknownSection { idstr, instance_id } => write!(
                f,
                "unknown section `{idstr}` instance {instance_id}: no device on this machine claims it"
            ),
            ErrorKind::UnknownSubsection { name } => write!(
                f,
                "unknown subsection `{name}`: the sender has state this code does not understand"
            ),
            ErrorKind::DuplicateSubsection { name } => {
                write!(f, "subsection `{name}` appears twice")
            }
            ErrorKind::DuplicateSection { idstr, instance_id } => write!(
                f,
                "section `{idstr}` instance {instance_id} appears twice"
            ),
            ErrorKind::FooterMismatch { expected, found } => write!(
                f,
                "section footer carries section id {found}, expected {expected} (the section's data was not what its description says)"
            ),
            ErrorKind::MissingFooter { found } => write!(
                f,
                "expected section footer 0x7e, found {found:#04x} (the section's data was not what its description says)"
            ),
            ErrorKind::UnexpectedSectionType { found } => {
                write!(f, "unexpected section type byte {found:#04x}")
            }
            ErrorKind::MachineTypeMismatch { expected, found } => write!(
                f,
                "stream is for machine type `{found}`, this machine is `{expected}`"
            ),
            ErrorKind::MissingConfiguration { found } => write!(
                f,
                "configuration section (0x07) missing, found {found:#04x}"
            ),
            ErrorKind::UnknownMachineType { name } => {
                write!(f, "unknown machine type `{name}`")
            }
            ErrorKind::LengthTooLarge { len, limit } => {
                write!(f, "length {len} exceeds the maximum {limit}")
            }
            ErrorKind::NotEqual { expected, found } => write!(
                f,
                "value {found} differs from the configured value {expected}"
            ),
            ErrorKind::InvalidValue { expected, found } => {
                write!(f, "invalid value {found}: expected {expected}")
            }
            ErrorKind::ValidationFailed { message } => write!(f, "validation failed: {message}"),
            ErrorKind::IntegrityMismatch { what, detail } => write!(
                f,
                "integrity check failed: {what} arrived damaged ({detail}); the transport \
                 changed or lost bytes"
            ),
            ErrorKind::SaveFailed { message } => write!(f, "save failed: {message}"),
            ErrorKind::TrailingBytes { count } if *count >= crate::limits::MAX_SECTION_BYTES => {
                write!(
                    f,
                    "{count} or more unexpected bytes after the end of the stream"
                )
            }
            ErrorKind::TrailingBytes { count } => {
                write!(f, "{count} unexpected bytes after the end of the stream")
            }
            ErrorKind::MissingVmdesc => write!(
                f,
                "the stream has no vmdesc JSON (QEMU omits it on machine types before 2.3), so sections this program does not know cannot be decoded"
            ),
            ErrorKind::BadVmdesc { message } => write!(f, "bad vmdesc: {message}"),
            ErrorKind::UnsupportedCommand { cmd } => {
                write!(f, "unsupported migration command {cmd:#06x}")
            }
            ErrorKind::UnknownSectionId { section_id } => write!(
                f,
                "section chunk for section id {section_id}, which no START section opened"
            ),
            ErrorKind::UnsupportedRamFlags { flags } => write!(
                f,
                "unsupported RAM record flag(s) {flags:#x} (XBZRLE, compression and RDMA records are not supported)"
            ),
            ErrorKind::UnknownRamBlock { name } => write!(
                f,
                "RAM record for block `{name}`, which the START section did not announce"
            ),
            ErrorKind::RamPageOutOfRange {
                block,
                offset,
                used_length,
            } => write!(
                f,
                "RAM page at offset {offset:#x} is outside block `{block}` ({used_length:#x} bytes)"
            ),
            ErrorKind::Io(kind) => write!(f, "I/O error: {kind}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::without_offset(ErrorKind::UnexpectedEof {
                needed: 0,
                available: 0,
            })
        } else {
            Error::without_offset(ErrorKind::Io(e.kind()))
        }
    }
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! [`StreamWriter`]: the one writer of the framing. Every byte around the section payloads —
//! header, configuration section, section headers, footers, commands, EOF and the vmdesc
//! trailer — is written here; callers write only payloads (through [`StreamWriter::payload`]).

use super::*;
use crate::error::{Error, ErrorKind, Result};
use crate::limits;
use crate::machine::{Framing, MachineType};
use crate::writer::Writer;

/// Writes a stream's framing around the payloads the caller writes, for one [`Framing`] (the
/// machine type's: configuration section, footers, vmdesc).
///
/// ```
/// use vmstate_runtime::stream::StreamWriter;
/// use vmstate_runtime::MachineCatalog;
///
/// let machine = MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap();
/// let mut s = StreamWriter::for_machine(Vec::new(), &machine);
/// s.prologue(machine.name()).unwrap();
/// s.full_header(0, "mydev", 0, 1).unwrap();
/// s.payload().extend_from_slice(&[0, 0, 0, 7]);
/// s.footer(0).unwrap();
/// s.eof().unwrap();
/// let bytes = s.into_inner();
/// assert_eq!(&bytes[..8], b"QEVM\0\0\0\x03");
/// assert_eq!(bytes.last(), Some(&0)); // EOF; the vmdesc would follow
/// ```
#[derive(Debug)]
pub struct StreamWriter<W> {
    w: W,
    framing: Framing,
}

impl<W: Writer> StreamWriter<W> {
    /// A writer with the given framing.
    pub fn new(w: W, framing: Framing) -> Self {
        StreamWriter { w, framing }
    }

    /// A writer with the framing of `machine`.
    pub fn for_machine(w: W, machine: &MachineType) -> Self {
        Self::new(w, machine.framing())
    }

    /// The framing in use.
    #[must_use]
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The underlying writer, for section payloads.
    pub fn payload(&mut self) -> &mut W {
        &mut self.w
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.w
    }

    /// Bytes written so far (the writer's position).
    #[must_use]
    pub fn position(&self) -> u64 {
        self.w.position()
    }

    /// Writes the stream header: magic and file version 3.
    ///
    /// # Errors
    /// Writer errors.
    pub fn header(&mut self) -> Result<()> {
        self.w.write_be32(MAGIC)?;
        self.w.write_be32(FILE_VERSION)
    }

    /// Writes the header and, when the framing has one, the configuration section naming
    /// `machine` (what QEMU writes on x86 by default: no configuration subsections).
    ///
    /// # Errors
    /// As [`configuration`](Self::configuration).
    pub fn prologue(&mut self, machine: &str) -> Result<()> {
        self.header()?;
        if self.framing.configuration {
            self.configuration(&Configuration::new(machine))?;
        }
        Ok(())
    }

    /// Writes the configuration section: `07 · be32 len · name`, then the configuration
    /// subsections that are set, in QEMU's order (target page bits, capabilities, uuid).
    ///
    /// # Errors
    /// [`ErrorKind::LengthTooLarge`] for a machine name longer than [`MAX_MACHINE_NAME`], too
    /// many capabilities or a capability name longer than 255 bytes; writer errors.
    pub fn configuration(&mut self, config: &Configuration) -> Result<()> {
        let w = &mut self.w;
        let len = u32::try_from(config.machine.len())
            .ok()
            .filter(|n| *n <= MAX_MACHINE_NAME)
            .ok_or_else(|| too_large(config.machine.len(), MAX_MACHINE_NAME, w.position()))?;
        let caps = match &config.capabilities {
            Some(caps) => Some((
                u32::try_from(caps.len())
                    .ok()
                    .filter(|n| *n <= MAX_CAPABILITIES)
                    .ok_or_else(|| too_large(caps.len(), MAX_CAPABILITIES, w.position()))?,
                caps,
            )),
            None => None,
        };
        w.write_u8(CONFIGURATION)?;
        w.write_be32(len)?;
        w.write_all(config.machine.as_bytes())?;
        if let Some(bits) = config.target_page_bits {
            config_subsection(w, CONFIG_PAGE_BITS)?;
            w.write_be32(bits)?;
        }
        if let Some((n, caps)) = caps {
            config_subsection(w, CONFIG_CAPABILITIES)?;
            w.write_be32(n)?;
            for c in caps {
                w.write_counted_str(c)?;
            }
        }
        if let Some(uuid) = &config.uuid {
            config_subsection(w, CONFIG_UUID)?;
            w.write_all(uuid)?;
        }
        Ok(())
    }

    fn section_header(
        &mut self,
        ty: u8,
        section_id: u32,
        idstr: &str,
        instance_id: u32,
        version: u32,
    ) -> Result<()> {
        self.w.write_u8(ty)?;
        self.w.write_be32(section_id)?;
        self.w.write_counted_str(idstr)?;
        self.w.write_be32(instance_id)?;
        self.w.write_be32(version)
    }

    /// Bytes of a FULL or START header for `idstr` (what [`full_header`](Self::full_header)
    /// writes): where a section's payload starts after its header's offset.
    #[must_use]
    pub fn full_header_len(idstr: &str) -> u64 {
        1 + 4 + 1 + idstr.len() as u64 + 4 + 4
    }

    /// Writes a FULL section header: `04 · be32 id · u8 len idstr · be32 instance · be32
    /// version`. The payload and then [`footer`](Self::footer) follow.
    ///
    /// # Errors
    /// [`ErrorKind::LengthTooLarge`] for an idstr longer than 255 bytes; writer errors.
    pub fn full_header(
        &mut self,
        section_id: u32,
        idstr: &str,
        instance_id: u32,
        version: u32,
    ) -> Result<()> {
        self.section_header(SECTION_FULL, section_id, idstr, instance_id, version)
    }

    /// Writes the START header of an iterative section (same layout as FULL, type `01`).
    ///
    /// # Errors
    /// As [`full_header`](Self::full_header).
    pub fn start_header(
        &mut self,
        section_id: u32,
        idstr: &str,
        instance_id: u32,
        version: u32,
    ) -> Result<()> {
        self.section_header(SECTION_START, section_id, idstr, instance_id, version)
    }

    /// Writes a PART (or, with `end`, the END) header of an iterative section: `02|03 · be32 id`.
    ///
    /// # Errors
    /// Writer errors.
    pub fn chunk_header(&mut self, section_id: u32, end: bool) -> Result<()> {
        self.w
            .write_u8(if end { SECTION_END } else { SECTION_PART })?;
        self.w.write_be32(section_id)
    }

    /// Writes the section footer `7e · be32 id` when the framing has footers; nothing otherwise.
    ///
    /// # Errors
    /// Writer errors.
    pub fn footer(&mut self, section_id: u32) -> Result<()> {
        if self.framing.footers {
            self.w.write_u8(FOOTER)?;
            self.w.write_be32(section_id)?;
        }
        Ok(())
    }

    /// Writes a command: `08 · be16 cmd · be16 len · data`.
    ///
    /// # Errors
    /// [`ErrorKind::LengthTooLarge`] for data longer than 65535 bytes; writer errors.
    pub fn command(&mut self, cmd: u16, data: &[u8]) -> Result<()> {
        let len = u16::try_from(data.len())
            .map_err(|_| too_large(data.len(), u16::MAX.into(), self.w.position()))?;
        self.w.write_u8(COMMAND)?;
        self.w.write_be16(cmd)?;
        self.w.write_be16(len)?;
        self.w.write_all(data)
    }

    /// Writes the EOF byte.
    ///
    /// # Errors
    /// Writer errors.
    pub fn eof(&mut self) -> Result<()> {
        self.w.write_u8(EOF)
    }

    /// Writes the vmdesc trailer `06 · be32 N · JSON`, padding the JSON with
    /// [`pad_vmdesc_json`]. Returns the length N written. Written whatever the framing says:
    /// callers write it when [`Framing::vmdesc`] is set.
    ///
    /// # Errors
    /// [`ErrorKind::BadVmdesc`] when the JSON contains a NUL byte or does not start with `{`
    /// (either would defeat `analyze-migration.py`'s locator); [`ErrorKind::LengthTooLarge`]
    /// above [`limits::MAX_VMDESC`]; writer errors.
    pub fn vmdesc(&mut self, json: &str) -> Result<u32> {
        let at = self.w.position();
        if json.as_bytes().contains(&0) || !json.starts_with('{') {
            return Err(Error::new(
                ErrorKind::BadVmdesc {
                    message: "the vmdesc JSON must start with `{` and contain no NUL byte".into(),
                },
                at,
            ));
        }
        let pad = vmdesc_padding(json.len()).map_err(|e| e.at_offset(at))?;
        let n = (json.len() + pad) as u64;
        if n > limits::MAX_VMDESC {
            return Err(Error::new(
                ErrorKind::LengthTooLarge {
                    len: n,
                    limit: limits::MAX_VMDESC,
                },
                at,
            ));
        }
        // n <= MAX_VMDESC < u32::MAX.
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.w.write_u8(VMDESC)?;
        self.w.write_be32(n)?;
        // The padding goes before the final `}` (after the document if it has none), written in
        // place rather than through a padded copy of the document.
        let (body, close) = match json.strip_suffix('}') {
            Some(body) => (body, "}"),
            None => (json, ""),
        };
        self.w.write_all(body.as_bytes())?;
        let spaces = [b' '; 64];
        let mut left = pad;
        while left > 0 {
            let k = left.min(spaces.len());
            self.w.write_all(&spaces[..k])?;
            left -= k;
        }
        self.w.write_all(close.as_bytes())?;
        Ok(n)
    }
}

impl StreamWriter<Vec<u8>> {
    /// Writes the vmdesc trailer with the JSON that `write` appends straight into the output
    /// buffer (no document of its own, no copy): the same checks, limit and padding as
    /// [`vmdesc`](Self::vmdesc). On error nothing of the trailer stays in the buffer.
    ///
    /// # Errors
    /// As [`vmdesc`](Self::vmdesc).
    pub fn vmdesc_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<u32> {
        let at = self.w.len();
        self.w.push(VMDESC);
        self.w.extend_from_slice(&[0; 4]);
        let json_start = self.w.len();
        write(&mut self.w);
        let result = self.finish_vmdesc(at, json_start);
        if result.is_err() {
            self.w.truncate(at);
        }
        result
    }

    /// Checks and pads the JSON written at `json_start` and patches the length at `at + 1`.
    fn finish_vmdesc(&mut self, at: usize, json_start: usize) -> Result<u32> {
        let pos = at as u64;
        let json = &self.w[json_start..];
        if json.first() != Some(&b'{') || json.contains(&0) {
            return Err(Error::new(
                ErrorKind::BadVmdesc {
                    message: "the vmdesc JSON must start with `{` and contain no NUL byte".into(),
                },
                pos,
            ));
        }
        let len = json.len();
        let close = json.last() == Some(&b'}');
        let pad = vmdesc_padding(len).map_err(|e| e.at_offset(pos))?;
        let n = (len + pad) as u64;
        if n > limits::MAX_VMDESC {
            return Err(Error::new(
                ErrorKind::LengthTooLarge {
                    len: n,
                    limit: limits::MAX_VMDESC,
                },
                pos,
            ));
        }
        if pad > 0 {
            // Before the final `}` (after the document if it has none), as `pad_vmdesc_json`.
            if close {
                self.w.pop();
            }
            self.w.resize(self.w.len() + pad, b' ');
            if close {
                self.w.push(b'}');
            }
        }
        // n <= MAX_VMDESC < u32::MAX.
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.w[at + 1..at + 5].copy_from_slice(&n.to_be_bytes());
        Ok(n)
    }
}

fn too_large(len: usize, limit: u32, at: u64) -> Error {
    Error::new(
        ErrorKind::LengthTooLarge {
            len: len as u64,
            limit: limit.into(),
        },
        at,
    )
}

fn config_subsection<W: Writer + ?Sized>(w: &mut W, name: &str) -> Result<()> {
    w.write_u8(SUBSECTION)?;
    w.write_counted_str(name)?;
    w.write_be32(1)
}

/// Whether `analyze-migration.py`'s locator finds a vmdesc of length `n`: no `0x7b` byte among
/// the be32 length bytes that follow its last zero byte (all four bytes if none is zero).
#[must_use]
pub fn vmdesc_len_is_safe(n: u32) -> bool {
    let b = n.to_be_bytes();
    let start = b.iter().rposition(|&x| x == 0).map_or(0, |i| i + 1);
    !b[start..].contains(&b'{')
}

/// Pads a vmdesc JSON document with spaces until its length is safe for
/// `analyze-migration.py` ([`vmdesc_len_is_safe`]). The spaces go right before the final `}` of
/// the outer object (after the document if it does not end with `}`); JSON ignores them.
///
/// # Errors
/// [`ErrorKind::LengthTooLarge`] when the document does not fit a be32 length.
pub fn pad_vmdesc_json(json: &str) -> Result<String> {
    let pad = vmdesc_padding(json.len())?;
    let mut out = String::with_capacity(json.len() + pad);
    match json.strip_suffix('}') {
        Some(body) => {
            out.push_str(body);
            out.extend(std::iter::repeat_n(' ', pad));
            out.push('}');
        }
        None => {
            out.push_str(json);
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    Ok(out)
}

/// How many spaces [`pad_vmdesc_json`] adds to a document of `len` bytes.
fn vmdesc_padding(len: usize) -> Result<usize> {
    let too_large = || {
        Error::without_offset(ErrorKind::LengthTooLarge {
            len: len as u64,
            limit: u32::MAX.into(),
        })
    };
    let len = u32::try_from(len).map_err(|_| too_large())?;
    let mut pad = 0u32;
    while !vmdesc_len_is_safe(len.checked_add(pad).ok_or_else(too_large)?) {
        pad += 1;
    }
    // `pad` is at most a few tens of thousands (the worst case jumps to the next multiple of
    // 0x100 of a byte position), so this cannot overflow usize.
    usize::try_from(pad).map_err(|_| too_large())
}

/// Replays `analyze-migration.py`'s vmdesc locator on a whole stream: the offset of the JSON's
/// `{` it would find, or `None` where the script reports "No Debug Migration device found".
#[must_use]
pub fn analyze_locator(stream: &[u8]) -> Option<usize> {
    let window = stream.len().saturating_sub(ANALYZE_WINDOW);
    let tail = &stream[window..];
    let nul = tail.iter().rposition(|&b| b == 0)?;
    let brace = nul + tail[nul..].iter().position(|&b| b == b'{')?;
    let at = window + brace;
    let marker = at.checked_sub(5)?;
    (stream.get(marker) == Some(&VMDESC)).then_some(at)
}

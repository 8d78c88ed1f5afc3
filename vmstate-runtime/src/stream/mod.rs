//! QEMU stream framing: the bytes around the device sections, and the one engine that reads and
//! writes them.
//!
//! - [`StreamWriter`] writes every framing byte (header, configuration, section headers,
//!   footers, commands, EOF, vmdesc); its callers write only payloads.
//! - [`StreamLoader`] is the one loop that reads a stream and hands each section to the
//!   [`SectionHandler`] routed for its idstr: the registry's device sections, a RAM handler, the
//!   generic decoder. It stops after the vmdesc and leaves the reader there.
//! - The `read_*` functions read one framing item each; the loader is their user.
//!
//! A stream (QEMU file version 3) is laid out like this; every integer is big-endian:
//!
//! | part | bytes | when |
//! |---|---|---|
//! | header | `be32 0x5145564d` (`"QEVM"`) · `be32 3` | always |
//! | configuration | `07` · `be32 len` · machine name · config subsections | [`Framing::configuration`](crate::machine::Framing::configuration) |
//! | FULL section | `04` · `be32 section_id` · `u8 len` idstr · `be32 instance` · `be32 version` · payload | per device |
//! | START section | `01` · same header as FULL · payload | iterative handlers (RAM) |
//! | PART / END | `02` / `03` · `be32 section_id` · payload | iterative handlers |
//! | footer | `7e` · `be32 section_id` (same id as the header) | after every section if [`Framing::footers`](crate::machine::Framing::footers) |
//! | command | `08` · `be16 cmd` · `be16 len` · `len` bytes | QEMU-internal; not produced here |
//! | EOF | `00` | always |
//! | vmdesc | `06` · `be32 N` · N bytes of JSON | [`Framing::vmdesc`](crate::machine::Framing::vmdesc) |
//!
//! Configuration subsections (each `05` · `u8 len` name · `be32 version` · body, all version 1):
//!
//! | name | body |
//! |---|---|
//! | `configuration/target-page-bits` | `be32` page bits |
//! | `configuration/capabilities` | `be32 count` · `count` counted strings |
//! | `configuration/uuid` | 16 raw bytes |
//!
//! # The vmdesc length and `analyze-migration.py`
//!
//! QEMU's `scripts/analyze-migration.py` finds the vmdesc with a heuristic instead of parsing:
//! it takes the **last** `0x00` byte of the file, then the first `{` after it, checks that the byte
//! five positions before that `{` is `0x06` and reads the `be32` length in between. The JSON never
//! contains a NUL, so the last NUL is the EOF byte or a zero byte inside the length. The heuristic
//! therefore fails when a length byte after the last zero length byte (or any length byte, if none
//! is zero) is `0x7b` (`{`), e.g. for N = `0x0001847b`. [`StreamWriter::vmdesc`] pads the JSON with spaces
//! (legal JSON whitespace, inserted before the final `}`) until the length is safe; see
//! [`vmdesc_len_is_safe`] and [`pad_vmdesc_json`]. [`analyze_locator`] replays the heuristic.

mod loader;
mod read;
mod writer;

pub use loader::{
    LoadOptions, LoadOutcome, SectionHandler, SectionMeta, SectionSpan, StreamEnd, StreamLoader,
};
pub use read::{
    drain_count, expect_footer, read_configuration_body, read_section_header, read_stream_header,
    read_vmdesc_trailer, skip_vmdesc_trailer, VmdescTrailer,
};
pub use writer::{analyze_locator, pad_vmdesc_json, vmdesc_len_is_safe, StreamWriter};

/// `QEMU_VM_FILE_MAGIC`: `"QEVM"`.
pub const MAGIC: u32 = 0x5145_564D;
/// `QEMU_VM_FILE_VERSION`: the only file version supported.
pub const FILE_VERSION: u32 = 3;
/// `QEMU_VM_EOF`.
pub const EOF: u8 = 0x00;
/// `QEMU_VM_SECTION_START`: first chunk of an iterative section.
pub const SECTION_START: u8 = 0x01;
/// `QEMU_VM_SECTION_PART`: middle chunk of an iterative section.
pub const SECTION_PART: u8 = 0x02;
/// `QEMU_VM_SECTION_END`: last chunk of an iterative section.
pub const SECTION_END: u8 = 0x03;
/// `QEMU_VM_SECTION_FULL`: a whole device section.
pub const SECTION_FULL: u8 = 0x04;
/// `QEMU_VM_SUBSECTION`.
pub const SUBSECTION: u8 = 0x05;
/// `QEMU_VM_VMDESCRIPTION`: the trailing JSON.
pub const VMDESC: u8 = 0x06;
/// `QEMU_VM_CONFIGURATION`.
pub const CONFIGURATION: u8 = 0x07;
/// `QEMU_VM_COMMAND`.
pub const COMMAND: u8 = 0x08;
/// `QEMU_VM_SECTION_FOOTER`.
pub const FOOTER: u8 = 0x7E;

/// The vmsd name of the configuration section (the prefix of its subsections).
pub const CONFIG_NAME: &str = "configuration";
/// Configuration subsection carrying the target page bits.
pub const CONFIG_PAGE_BITS: &str = "configuration/target-page-bits";
/// Configuration subsection listing the validated capabilities.
pub const CONFIG_CAPABILITIES: &str = "configuration/capabilities";
/// Configuration subsection carrying the VM UUID.
pub const CONFIG_UUID: &str = "configuration/uuid";

/// Longest machine-type name accepted in a configuration section.
pub const MAX_MACHINE_NAME: u32 = 256;
/// Most capabilities accepted in `configuration/capabilities`.
pub const MAX_CAPABILITIES: u32 = 64;

/// How far from the end `analyze-migration.py` looks for the vmdesc (10 MiB).
pub const ANALYZE_WINDOW: usize = 10 << 20;

/// The configuration section: machine type name and the optional configuration subsections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Configuration {
    /// The machine type name, e.g. `pc-i440fx-7.2` (lossily decoded as UTF-8).
    pub machine: String,
    /// `configuration/target-page-bits`, when sent.
    pub target_page_bits: Option<u32>,
    /// `configuration/capabilities`, when sent (`Some(vec![])` = sent with zero entries).
    pub capabilities: Option<Vec<String>>,
    /// `configuration/uuid`, when sent.
    pub uuid: Option<[u8; 16]>,
}

impl Configuration {
    /// A configuration with just the machine name (what QEMU sends on x86 by default).
    #[must_use]
    pub fn new(machine: &str) -> Self {
        Configuration {
            machine: machine.to_owned(),
            ..Configuration::default()
        }
    }
}

/// A section header (or the other one-byte-typed items of the section loop) as read from the
/// stream. Payloads and footers are not consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionHeader {
    /// `01`: first chunk of an iterative section.
    Start {
        /// Section id (ties PART/END and footers to this START).
        section_id: u32,
        /// idstr, e.g. `ram`.
        idstr: String,
        /// Instance id.
        instance_id: u32,
        /// Section version.
        version: u32,
    },
    /// `02`: middle chunk of an iterative section.
    Part {
        /// Section id of the START.
        section_id: u32,
    },
    /// `03`: last chunk of an iterative section.
    End {
        /// Section id of the START.
        section_id: u32,
    },
    /// `04`: a whole device section.
    Full {
        /// Section id.
        section_id: u32,
        /// idstr, e.g. `serial` or `0000:00:01.3/piix4_pm`.
        idstr: String,
        /// Instance id.
        instance_id: u32,
        /// Section version.
        version: u32,
    },
    /// `00`: end of the sections.
    Eof,
    /// `08`: a command; its `len` bytes of data follow and are not consumed.
    Command {
        /// The be16 command number (`MIG_CMD_*`).
        cmd: u16,
        /// Length of the data that follows.
        len: u16,
    },
    /// `07`: the configuration section, read completely (including its subsections).
    Configuration(Configuration),
}

/// What kind of item a section (or a decoded stream entry) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// `01`: first chunk of an iterative section.
    Start,
    /// `02`: middle chunk.
    Part,
    /// `03`: last chunk.
    End,
    /// `04`: a whole device section.
    Full,
    /// `08`: a command (no footer; the payload is its data).
    Command {
        /// The be16 command number.
        cmd: u16,
    },
}

#[cfg(test)]
mod tests;

//! Caps on stream-driven lengths.
//!
//! A length or count read from the stream can only ever *cap* an allocation, never justify one.
//! Variable arrays have their own declared maximum (checked before any element is read); these
//! are the global caps for everything else.

/// The largest single `take` an [`IoReader`](crate::reader::IoReader) serves (1 MiB).
pub const MAX_TAKE: usize = 1 << 20;

/// Chunk size for skipping bytes without allocating.
pub const SKIP_CHUNK: usize = 64 * 1024;

/// The largest vmdesc JSON accepted (16 MiB; QEMU's own are well under 1 MiB).
pub const MAX_VMDESC: u64 = 16 << 20;

/// The largest number of sections in one stream.
pub const MAX_SECTIONS: usize = 65_536;

/// The largest total payload of one FULL section copied unparsed (64 MiB).
pub const MAX_SECTION_BYTES: u64 = 64 << 20;

/// Largest nesting depth the generic vmdesc decoder follows.
pub const MAX_VMDESC_DEPTH: usize = 32;

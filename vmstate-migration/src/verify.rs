//! Verification: did the migration really carry the guest? (issue "prove it worked")
//!
//! With [`Settings::verify`](crate::Settings::verify) and
//! [`ReceiveSettings::verify`](crate::ReceiveSettings::verify), the destination, once it loaded
//! everything, computes digests of its guest RAM (one per 256 KiB chunk of each block) and of
//! each device section as it loaded it (the section saved again from the loaded device), and
//! sends them after `LOADED`:
//!
//! ```text
//! LOADED\n · DIGESTS <n>\n · n bytes of JSON {"ram": [...], "sections": [...]}
//! ```
//!
//! The source computes the same over what it sent (its stopped guest's RAM and the device
//! sections it wrote) and compares. Equal: it commits and sends `GO`. Different: it sends
//! `ABORT <what differs>` instead, resumes its own guest (the destination never starts: no `GO`)
//! and fails with [`MigrationError::Verify`], naming each block's chunk range and each section
//! that differs. The commit point moves from `LOADED` to "`LOADED` and equal digests"; the
//! price is hashing all guest RAM on both sides inside the downtime (measured in
//! docs/preflight.md).
//!
//! The digest is SipHash-1-3 (`std`'s `DefaultHasher`) with fixed keys: it detects corruption
//! in transit or in a buggy loader, not a forger. A device section is compared as it saves again
//! after the load, so it must save what it loaded (true of QEMU-typed state; a device that
//! normalises its state on load would differ and must not be verified this way).

use std::hash::Hasher;

use serde::{Deserialize, Serialize};
use vm_memory::{Bytes, GuestMemoryRegion, MemoryRegionAddress};
use vmstate_runtime::registry::SaveReport;
use vmstate_runtime::stream::StreamWriter;

use crate::error::{MigrationError, Result};
use crate::memory::GuestRam;

/// Bytes per RAM digest (a differing chunk is reported by its range).
pub const CHUNK: u64 = 256 << 10;
/// Largest digest document accepted from a peer.
pub const MAX_DIGESTS: usize = 64 << 20;

/// The digests of one RAM block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDigest {
    /// Block name.
    pub name: String,
    /// Block length in bytes.
    pub len: u64,
    /// One digest per [`CHUNK`] bytes.
    pub chunks: Vec<u64>,
}

/// The digest of one device section (its payload as saved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionDigest {
    /// Section idstr.
    pub idstr: String,
    /// Instance id.
    pub instance_id: u32,
    /// Digest of its bytes.
    pub digest: u64,
}

/// What one side holds after the switchover.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Digests {
    /// Per RAM block.
    pub ram: Vec<BlockDigest>,
    /// Per device section.
    pub sections: Vec<SectionDigest>,
}

fn hasher() -> std::hash::DefaultHasher {
    std::hash::DefaultHasher::new()
}

/// Digests of `ram` (each block, per [`CHUNK`]).
///
/// # Errors
/// [`MigrationError::Memory`] when a block cannot be read.
pub fn ram_digests(ram: &GuestRam) -> Result<Vec<BlockDigest>> {
    let mut buf = vec![0u8; CHUNK as usize];
    ram.named_regions()
        .map(|(name, r)| {
            let len = r.len();
            let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK) as usize);
            let mut at = 0u64;
            while at < len {
                let n = (len - at).min(CHUNK) as usize;
                r.read_slice(&mut buf[..n], MemoryRegionAddress(at))
                    .map_err(|e| MigrationError::Memory(format!("block `{name}`: {e}")))?;
                let mut h = hasher();
                h.write(&buf[..n]);
                chunks.push(h.finish());
                at += n as u64;
            }
            Ok(BlockDigest {
                name: name.to_owned(),
                len,
                chunks,
            })
        })
        .collect()
}

/// Digests of the device sections in `bytes`, as
/// [`Registry::save_sections_to_vec`](vmstate_runtime::Registry::save_sections_to_vec) wrote them
/// with `report`.
#[must_use]
pub fn section_digests(bytes: &[u8], report: &SaveReport) -> Vec<SectionDigest> {
    report
        .sections
        .iter()
        .map(|s| {
            // The payload, after the FULL header (type, section id, idstr, instance, version):
            // section ids may differ between the two sides' saves, the payloads may not.
            let header = StreamWriter::<Vec<u8>>::full_header_len(&s.key.idstr);
            let start = usize::try_from(s.offset.saturating_add(header))
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let stop = start
                .saturating_add(usize::try_from(s.payload_len).unwrap_or(usize::MAX))
                .min(bytes.len());
            let mut h = hasher();
            h.write(&bytes[start..stop]);
            SectionDigest {
                idstr: s.key.idstr.clone(),
                instance_id: s.key.instance_id,
                digest: h.finish(),
            }
        })
        .collect()
}

/// Every difference between what the source sent and what the destination holds, one line
/// each: differing RAM chunks as byte ranges of their block (consecutive chunks merged),
/// blocks or sections on one side only, differing sections.
#[must_use]
pub fn differences(source: &Digests, dest: &Digests) -> Vec<String> {
    let mut out = Vec::new();
    for s in &source.ram {
        let Some(d) = dest.ram.iter().find(|d| d.name == s.name) else {
            out.push(format!("RAM block `{}`: not on the destination", s.name));
            continue;
        };
        if d.len != s.len {
            out.push(format!(
                "RAM block `{}`: {:#x} bytes sent, {:#x} on the destination",
                s.name, s.len, d.len
            ));
            continue;
        }
        let mut run: Option<(usize, usize)> = None;
        let flush = |run: &mut Option<(usize, usize)>, out: &mut Vec<String>| {
            if let Some((a, b)) = run.take() {
                let (from, to) = (a as u64 * CHUNK, ((b as u64 + 1) * CHUNK).min(s.len));
                out.push(format!(
                    "RAM block `{}`: bytes {from:#x}..{to:#x} (pages {}..{}) differ from what was sent",
                    s.name,
                    from / 4096,
                    to.div_ceil(4096)
                ));
            }
        };
        for (i, (a, b)) in s.chunks.iter().zip(&d.chunks).enumerate() {
            if a == b {
                flush(&mut run, &mut out);
            } else {
                run = Some(match run {
                    Some((start, _)) => (start, i),
                    None => (i, i),
                });
            }
        }
        flush(&mut run, &mut out);
    }
    for s in &source.sections {
        match dest
            .sections
            .iter()
            .find(|d| d.idstr == s.idstr && d.instance_id == s.instance_id)
        {
            None => out.push(format!(
                "section `{}` instance {}: not loaded on the destination",
                s.idstr, s.instance_id
            )),
            Some(d) if d.digest != s.digest => out.push(format!(
                "section `{}` instance {}: the destination's device saves other bytes than were sent",
                s.idstr, s.instance_id
            )),
            Some(_) => {}
        }
    }
    out
}

/// The destination's digests frame after `LOADED`.
pub(crate) fn frame(d: &Digests) -> Vec<u8> {
    let json = serde_json::to_vec(d).unwrap_or_default();
    let mut out = format!("DIGESTS {}\n", json.len()).into_bytes();
    out.extend_from_slice(&json);
    out
}

/// Parses the body of a `DIGESTS <n>` frame.
pub(crate) fn parse(body: &[u8]) -> Result<Digests> {
    serde_json::from_slice(body).map_err(|e| MigrationError::BadAck(format!("digests: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_chunks_are_merged_into_ranges() {
        let block = |chunks: Vec<u64>| BlockDigest {
            name: "pc.ram".into(),
            len: 5 * CHUNK - 4096,
            chunks,
        };
        let src = Digests {
            ram: vec![block(vec![1, 2, 3, 4, 5])],
            sections: vec![SectionDigest {
                idstr: "serial".into(),
                instance_id: 0,
                digest: 9,
            }],
        };
        let dst = Digests {
            ram: vec![block(vec![1, 0, 0, 4, 0])],
            sections: vec![SectionDigest {
                idstr: "serial".into(),
                instance_id: 0,
                digest: 8,
            }],
        };
        assert_eq!(
            differences(&src, &dst),
            [
                "RAM block `pc.ram`: bytes 0x40000..0xc0000 (pages 64..192) differ from what was sent",
                "RAM block `pc.ram`: bytes 0x100000..0x13f000 (pages 256..319) differ from what was sent",
                "section `serial` instance 0: the destination's device saves other bytes than were sent",
            ]
        );
        assert!(differences(&src, &src).is_empty());
    }
}

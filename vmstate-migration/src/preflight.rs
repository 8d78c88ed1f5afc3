//! Preflight: the source's configuration manifest, checked by the destination before any page or
//! device byte moves (issue "fail before the bytes move").
//!
//! With [`Settings::preflight`](crate::Settings::preflight) set, the source's first bytes on
//! the main connection are a manifest frame instead of QEMU's stream header:
//!
//! ```text
//! "VMPF" · be32 N · N bytes of JSON (vmstate_runtime::manifest::Manifest, N ≤ 4 MiB)
//! ```
//!
//! The destination (with [`ReceiveSettings::preflight`](crate::ReceiveSettings::preflight) set
//! to its own manifest) compares the two ([`compare`]) and answers on the return path with
//! `PREFLIGHT <n>\n` and `n` bytes of JSON `{"accepted": bool, "mismatches": [...]}`. On
//! acceptance the QEMU-format stream follows unchanged; otherwise both sides fail with
//! [`MigrationError::Preflight`], listing every mismatch, and the source's guest never stopped.
//! Warnings (a source that states its vCPU model to a destination that states none) do not
//! reject; they are in
//! [`Report::preflight`](crate::Report::preflight).
//!
//! A destination without preflight reads the frame as a bad stream header, and one with
//! preflight refuses a stream without the frame, each saying so: both sides must agree.
//!
//! **Saved streams.** Over a transport without a return path (a file), the source stores its
//! manifest in the stream's vmdesc instead, under the key `vmstate-manifest` (QEMU's tools
//! ignore it: the file stays a QEMU stream). A destination loading a file with
//! [`ReceiveSettings::preflight`](crate::ReceiveSettings::preflight) first reads the vmdesc
//! from the end of the file ([`saved_manifest`]), compares, and refuses a stream that does not
//! fit before reading any of it.

use serde::{Deserialize, Serialize};
use vmstate_runtime::manifest::{accepted, compare, Manifest, Mismatch, MAX_MANIFEST};

use crate::error::{MigrationError, Result};
use crate::transport::{read_line, Transport};
use crate::VmParts;

/// The manifest frame's magic (where QEMU's stream has `QEVM`).
pub const MAGIC: [u8; 4] = *b"VMPF";

/// The destination's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Verdict {
    accepted: bool,
    mismatches: Vec<Mismatch>,
}

/// The manifest of a VM's parts: its registry's sections and compat properties on its machine
/// type, and its RAM blocks. A VMM adds its vCPU model with
/// [`Manifest::with_cpu`](vmstate_runtime::manifest::Manifest::with_cpu).
///
/// # Errors
/// A device state that cannot be read (a poisoned lock).
pub fn manifest_of<V: VmParts + ?Sized>(vm: &V) -> Result<Manifest> {
    Ok(Manifest::of(vm.registry(), vm.machine())?.with_ram(vm.ram().blocks()))
}

/// The manifest stored in the vmdesc of a saved stream in `file` (see the module docs), read
/// from its end; `file` is left at offset 0. `Ok(None)` when the vmdesc has none.
///
/// # Errors
/// I/O errors; a file whose end is not a vmdesc (a stream saved without one, or truncated).
pub fn saved_manifest(file: &mut std::fs::File) -> Result<Option<serde_json::Value>> {
    use std::io::{Read, Seek, SeekFrom};
    use vmstate_runtime::limits::MAX_VMDESC;
    let len = file.seek(SeekFrom::End(0))?;
    // The vmdesc: 0x06, be32 length, that many bytes of JSON ending the file. The JSON holds no
    // byte below 0x20, and the length's first byte is 0 (at most 16 MiB), so the marker cannot
    // be found inside the JSON.
    let tail = len.min(MAX_VMDESC + 5);
    file.seek(SeekFrom::Start(len - tail))?;
    let mut buf = Vec::with_capacity(usize::try_from(tail).unwrap_or(0));
    file.by_ref().take(tail).read_to_end(&mut buf)?;
    file.seek(SeekFrom::Start(0))?;
    let found = (0..buf.len().saturating_sub(5)).rev().find(|&p| {
        buf[p] == 0x06
            && u32::from_be_bytes([buf[p + 1], buf[p + 2], buf[p + 3], buf[p + 4]]) as usize
                == buf.len() - p - 5
            && buf.get(p + 5) == Some(&b'{')
    });
    let Some(p) = found else {
        return Err(MigrationError::Unsupported(
            "the saved stream does not end with a vmdesc, so it carries no configuration \
             manifest (saved by an old machine type or truncated)"
                .into(),
        ));
    };
    let vmdesc = vmstate_runtime::vmdesc::parse_vmdesc(&buf[p + 5..])?;
    Ok(vmdesc.manifest)
}

/// Destination side for a saved stream: compares the manifest stored in it with `own` before
/// anything is read. `Ok(warnings)` when it fits.
pub(crate) fn check_saved<T: Transport + ?Sized>(
    t: &mut T,
    own: &Manifest,
) -> Result<Vec<Mismatch>> {
    let Some(value) = t.saved_manifest()? else {
        return Err(MigrationError::Unsupported(
            "the saved stream carries no configuration manifest, and preflight is on here: \
             save it with Settings::preflight (tinyvm save does), or load it without \
             ReceiveSettings::preflight"
                .into(),
        ));
    };
    let theirs = Manifest::from_json(value.to_string().as_bytes())?;
    let mismatches = compare(&theirs, own);
    if accepted(&mismatches) {
        Ok(mismatches)
    } else {
        Err(MigrationError::Preflight {
            refused_by: "destination (this side), from the saved stream's manifest",
            mismatches,
        })
    }
}

/// Source side: sends `manifest` and waits for the verdict. `Ok(warnings)` when accepted.
pub(crate) fn offer<T: Transport + ?Sized>(
    t: &mut T,
    manifest: &Manifest,
) -> Result<Vec<Mismatch>> {
    let json = manifest.to_json();
    let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(8 + json.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(json.as_bytes());
    t.write_all(&frame)?;
    t.flush()?;
    let Some(line) = read_line(t, &[], "the destination's preflight verdict")? else {
        return Err(MigrationError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the destination closed the connection before answering the preflight",
        )));
    };
    if let Some(msg) = line.strip_prefix("ERR ") {
        return Err(MigrationError::Remote(msg.to_owned()));
    }
    let n = line
        .strip_prefix("PREFLIGHT ")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n <= MAX_MANIFEST)
        .ok_or_else(|| MigrationError::BadAck(line.clone()))?;
    let mut body = vec![0u8; n];
    t.read_exact(&mut body)?;
    let v: Verdict = serde_json::from_slice(&body)
        .map_err(|e| MigrationError::BadAck(format!("preflight verdict: {e}")))?;
    if v.accepted {
        Ok(v.mismatches)
    } else {
        Err(MigrationError::Preflight {
            refused_by: "destination",
            mismatches: v.mismatches,
        })
    }
}

/// Destination side: reads the source's manifest, compares it with `own`, answers. `Ok(warnings)`
/// when accepted; the QEMU stream follows on `t`.
pub(crate) fn check<T: Transport + ?Sized>(t: &mut T, own: &Manifest) -> Result<Vec<Mismatch>> {
    let mut head = [0u8; 8];
    t.read_exact(&mut head)?;
    if head[..4] != MAGIC {
        let why = if head[..4] == *b"QEVM" {
            "the source sent no configuration manifest, and preflight is on here: enable \
             Settings::preflight on the source (or turn it off on both sides)"
                .to_owned()
        } else {
            format!(
                "the stream starts with {:02x?}, not a configuration manifest (VMPF)",
                &head[..4]
            )
        };
        let _ = crate::transport::write_ack(t, Err(&why));
        return Err(MigrationError::Unsupported(why));
    }
    let n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if n > MAX_MANIFEST {
        let why = format!("configuration manifest of {n} bytes, at most {MAX_MANIFEST} accepted");
        let _ = crate::transport::write_ack(t, Err(&why));
        return Err(MigrationError::Unsupported(why));
    }
    let mut body = vec![0u8; n];
    t.read_exact(&mut body)?;
    let theirs = Manifest::from_json(&body)?;
    let mismatches = compare(&theirs, own);
    let ok = accepted(&mismatches);
    let verdict = serde_json::to_vec(&Verdict {
        accepted: ok,
        mismatches: mismatches.clone(),
    })
    .unwrap_or_default();
    let mut out = format!("PREFLIGHT {}\n", verdict.len()).into_bytes();
    out.extend_from_slice(&verdict);
    t.write_all(&out)?;
    t.flush()?;
    if ok {
        Ok(mismatches)
    } else {
        Err(MigrationError::Preflight {
            refused_by: "destination (this side)",
            mismatches,
        })
    }
}

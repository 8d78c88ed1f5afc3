//! The line protocol between the `tinyvm pingpong` parent ([`driver`](super::driver)) and its
//! `tinyvm serve` children ([`child`](super::child)), and what a side reports of guest memory.
//!
//! A child first prints `READY <port>` (its migration listener on 127.0.0.1), then answers one
//! line per command on stdin:
//!
//! | command | answer |
//! |---|---|
//! | `START` | `OK` |
//! | `PREPARE [corrupt] [stall]` | `PREPARED <µs>` |
//! | `RECV` | `RECEIVED <seen> <devices> <bytes> <run at> <check µs> <steps>` |
//! | `SEND <port>` | `SENT <bytes> <ram passes> <downtime µs> <total µs> <stop at> <steps>` |
//! | `INSPECT` | `INSPECTED <seen> <devices> <output>` |
//! | `STATUS` | `STATUS <seen> <output>` |
//! | `QUIT` | (exits) |
//!
//! `PREPARE` builds the destination VM (memory registered and faulted in, vCPU created, devices
//! registered) and the parent sends `SEND` to the source only after `PREPARED`, so none of that
//! is in the downtime; `RECV` then receives into it. The source keeps the guest it sent, stopped,
//! until `INSPECT` reports what it stopped with; the parent asks only after the destination
//! answered, so that examining it does not compete with the destination's start. `<seen>` is [`Seen`] as
//! `<passes> <pages_done> <hash>` (hash in hex), `<devices>` the [`devices_hash`] in hex, `<stop
//! at>` / `<run at>` the [`monotonic_ns`](super::monotonic_ns) at which the source began to stop
//! its guest / the destination's guest began to run, `<check µs>` how long the destination's
//! checks before the start took (not part of the downtime), `<steps>` the critical path
//! ([`phases_word`]), `<output>` the serial output since the last report ([`output_word`]).
//! Failures answer `FAIL <message>`.

use vmstate_migration::{GuestRam, Phase, VmParts};

use super::guest::{check_pattern, counters, PatternState, RAM_SIZE};

/// What a side saw of guest memory while the guest was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The pattern state ([`check_pattern`]).
    pub state: PatternState,
    /// A hash of all of guest RAM.
    pub hash: u64,
}

impl Seen {
    /// Reads guest RAM (the first block): its pattern state and hash.
    ///
    /// # Errors
    ///
    /// RAM that cannot be read, is too small, or breaks the pattern invariant.
    pub fn inspect(ram: &GuestRam) -> Result<Seen, String> {
        let snap = ram.snapshot().map_err(|e| e.to_string())?;
        let bytes = &snap.first().ok_or_else(|| "no RAM block".to_owned())?.1;
        if bytes.len() < RAM_SIZE {
            return Err(format!("RAM block of {} bytes", bytes.len()));
        }
        let state = check_pattern(&counters(bytes)).map_err(|e| e.to_string())?;
        Ok(Seen {
            state,
            hash: ram_hash(bytes),
        })
    }

    /// The three words `<passes> <pages_done> <hash>`.
    #[must_use]
    pub fn words(self) -> String {
        format!(
            "{} {} {:016x}",
            self.state.passes, self.state.pages_done, self.hash
        )
    }

    /// Parses the first three of `w` as written by [`Seen::words`].
    ///
    /// # Errors
    ///
    /// A word missing or malformed.
    pub fn parse(w: &[String]) -> Result<Seen, String> {
        let bad = || format!("bad state in {w:?}");
        Ok(Seen {
            state: PatternState {
                passes: w.first().and_then(|s| s.parse().ok()).ok_or_else(bad)?,
                pages_done: w.get(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?,
            },
            hash: w
                .get(2)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(bad)?,
        })
    }
}

/// A 64-bit hash of `bytes`, eight at a time (FNV-style; the last partial word zero-padded).
fn ram_hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let words = bytes.chunks_exact(8);
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    let tail = (!rest.is_empty()).then_some(&last[..]);
    for c in words.chain(tail) {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17);
    }
    h ^ bytes.len() as u64
}

/// A hash of the device sections `parts` saves now, in stream form (`tinyvm-cpu` and `serial`
/// with their headers, footers, EOF and vmdesc): the device state a migration carries. Both
/// sides compute it while the guest is stopped, the source from what it sent and the
/// destination from what it loaded, so equal hashes mean the destination's devices are the
/// source's.
///
/// # Errors
///
/// A device cannot be saved.
pub fn devices_hash(parts: &impl VmParts) -> Result<u64, String> {
    let (bytes, _) = parts
        .registry()
        .save_sections_to_vec(parts.machine(), 1)
        .map_err(|e| format!("saving the device sections: {e}"))?;
    Ok(ram_hash(&bytes))
}

/// Critical-path steps as one word, `name:µs,name:µs,…` (`-` when there are none).
#[must_use]
pub fn phases_word(phases: &[Phase]) -> String {
    if phases.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = phases
        .iter()
        .map(|p| format!("{}:{}", p.name, p.took.as_micros()))
        .collect();
    parts.join(",")
}

/// The steps of a word written by [`phases_word`], in microseconds.
///
/// # Errors
///
/// A malformed step.
pub fn parse_phases(word: Option<&String>) -> Result<Vec<(String, u64)>, String> {
    match word.map(String::as_str) {
        None | Some("-") => Ok(Vec::new()),
        Some(w) => w
            .split(',')
            .map(|p| {
                p.split_once(':')
                    .and_then(|(n, us)| Some((n.to_owned(), us.parse().ok()?)))
                    .ok_or_else(|| format!("bad critical-path step {p:?}"))
            })
            .collect(),
    }
}

/// Serial output as one word: `-` when empty, else the bytes with anything but printable ASCII
/// as `?`.
#[must_use]
pub fn output_word(out: &[u8]) -> String {
    if out.is_empty() {
        "-".into()
    } else {
        out.iter()
            .map(|&b| {
                if b.is_ascii_graphic() {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect()
    }
}

/// The bytes of a word written by [`output_word`] (none for a missing word).
#[must_use]
pub fn output_bytes(s: Option<&String>) -> Vec<u8> {
    match s.map(String::as_str) {
        None | Some("-") => Vec::new(),
        Some(s) => s.as_bytes().to_vec(),
    }
}

/// The number in word `i` of `w`.
///
/// # Errors
///
/// The word is missing or not a number.
pub fn number(w: &[String], i: usize) -> Result<u64, String> {
    w.get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("field {i} missing in {w:?}"))
}

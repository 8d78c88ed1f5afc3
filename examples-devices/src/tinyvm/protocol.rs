//! The line protocol between the `tinyvm pingpong` parent ([`driver`](super::driver)) and its
//! `tinyvm serve` children ([`child`](super::child)), and what a side reports of guest memory.
//!
//! A child first prints `READY <port>` (its migration listener on 127.0.0.1), then answers one
//! line per command on stdin:
//!
//! | command | answer |
//! |---|---|
//! | `START` | `OK` |
//! | `RECV [corrupt] [stall]` | `RECEIVED <seen> <bytes>` |
//! | `SEND <port>` | `SENT <seen> <bytes> <ram passes> <downtime µs> <total µs> <output>` |
//! | `STATUS` | `STATUS <seen> <output>` |
//! | `QUIT` | (exits) |
//!
//! `<seen>` is [`Seen`] as `<passes> <pages_done> <hash>` (hash in hex), `<output>` the serial
//! output since the last report ([`output_word`]). Failures answer `FAIL <message>`.

use vmstate_migration::GuestRam;

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

fn ram_hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for c in bytes.chunks_exact(8) {
        let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17);
    }
    h
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

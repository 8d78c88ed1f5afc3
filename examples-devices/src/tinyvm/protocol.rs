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
//! | `SEND <port>` | `SENT <bytes> <ram passes> <downtime µs> <total µs> <stop at> <steps> <passes> <final>` |
//! | `INSPECT` | `INSPECTED <seen> <devices> <output>` |
//! | `STATUS` | `STATUS <seen> <output>` (`<seen>`'s hash is 0: only the counters are read) |
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
//! ([`phases_word`]), `<passes>` the per-pass statistics ([`passes_word`]), `<final>` the pages
//! sent while stopped as `<pages>:<zero pages>`, `<output>` the serial output since the last
//! report ([`output_word`]). With `--progress`, a child prints a line on stderr every 250 ms of
//! a long pass.
//! Failures answer `FAIL <message>`.

use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};
use vmstate_migration::{GuestRam, PassStats, Phase, VmParts};

use super::guest::{check_pattern, PatternState, MIN_RAM, PAGE_SIZE};

/// What a side saw of guest memory while the guest was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The pattern state ([`check_pattern`]).
    pub state: PatternState,
    /// A hash of all of guest RAM.
    pub hash: u64,
}

impl Seen {
    /// Reads guest RAM (the first block, at guest address 0): its pattern state and hash. The
    /// RAM is read in place, 1 MiB at a time (never copied whole), so call it while the guest
    /// is stopped.
    ///
    /// # Errors
    ///
    /// RAM that cannot be read, is too small, or breaks the pattern invariant.
    pub fn inspect(ram: &GuestRam) -> Result<Seen, String> {
        let len = ram_len(ram)?;
        const CHUNK: usize = 1 << 20;
        let mut buf = vec![0u8; CHUNK.min(len)];
        let mut hasher = RamHasher::new();
        let mut counters = Vec::with_capacity(len / PAGE_SIZE);
        let mut at = 0usize;
        while at < len {
            let n = CHUNK.min(len - at);
            let chunk = &mut buf[..n];
            ram.memory()
                .read_slice(chunk, GuestAddress(at as u64))
                .map_err(|e| format!("reading guest RAM at {at:#x}: {e}"))?;
            hasher.update(chunk);
            // CHUNK is a multiple of the page size: page starts are at multiples of it here.
            for p in (0..n / PAGE_SIZE).map(|i| i * PAGE_SIZE) {
                counters.push(u32::from_le_bytes([
                    chunk[p],
                    chunk[p + 1],
                    chunk[p + 2],
                    chunk[p + 3],
                ]));
            }
            at += n;
        }
        let state = check_pattern(
            counters
                .get(super::guest::first_pattern_page(len)..)
                .unwrap_or(&[]),
        )
        .map_err(|e| e.in_ram(len).to_string())?;
        Ok(Seen {
            state,
            hash: hasher.finish(),
        })
    }

    /// Reads only the pattern counters of guest RAM (4 bytes a page, no hash: `hash` is 0):
    /// the cheap look `STATUS` takes while it holds the guest stopped.
    ///
    /// # Errors
    ///
    /// RAM that cannot be read, is too small, or breaks the pattern invariant.
    pub fn inspect_state(ram: &GuestRam) -> Result<Seen, String> {
        let len = ram_len(ram)?;
        let counters = (super::guest::first_pattern_page(len)..len / PAGE_SIZE)
            .map(|p| {
                ram.memory()
                    .read_obj::<u32>(GuestAddress((p * PAGE_SIZE) as u64))
                    .map_err(|e| format!("reading the counter of page {p}: {e}"))
            })
            .collect::<Result<Vec<u32>, String>>()?;
        let state = check_pattern(&counters).map_err(|e| e.in_ram(len).to_string())?;
        Ok(Seen { state, hash: 0 })
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

/// A 64-bit hash of bytes fed in pieces, eight at a time (FNV-style; the last partial word
/// zero-padded). Every piece but the last must be a multiple of 8 bytes long.
struct RamHasher {
    h: u64,
    len: u64,
}

impl RamHasher {
    fn new() -> Self {
        RamHasher {
            h: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        // A plain indexed loop rather than an iterator chain: the same words in the same order,
        // but several times faster in debug builds, where the tests hash guests of 4 GiB and
        // more (a 5 GiB check took about 30 s with the iterators).
        let mut h = self.h;
        let full = bytes.len() - bytes.len() % 8;
        let mut i = 0;
        while i < full {
            let w = u64::from_le_bytes([
                bytes[i],
                bytes[i + 1],
                bytes[i + 2],
                bytes[i + 3],
                bytes[i + 4],
                bytes[i + 5],
                bytes[i + 6],
                bytes[i + 7],
            ]);
            h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17);
            i += 8;
        }
        if full < bytes.len() {
            // The last partial word, zero-padded.
            let mut last = [0u8; 8];
            last[..bytes.len() - full].copy_from_slice(&bytes[full..]);
            h = (h ^ u64::from_le_bytes(last))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(17);
        }
        self.h = h;
        self.len += bytes.len() as u64;
    }

    fn finish(&self) -> u64 {
        self.h ^ self.len
    }
}

/// The length of guest RAM's first block, refused when there is none or it is below
/// [`MIN_RAM`].
fn ram_len(ram: &GuestRam) -> Result<usize, String> {
    let blocks = ram.blocks();
    let len = blocks.first().ok_or_else(|| "no RAM block".to_owned())?.1;
    let len = usize::try_from(len).map_err(|e| e.to_string())?;
    if len < MIN_RAM {
        return Err(format!("RAM block of {len} bytes"));
    }
    Ok(len)
}

/// A 64-bit hash of `bytes` ([`RamHasher`] in one piece).
fn ram_hash(bytes: &[u8]) -> u64 {
    let mut h = RamHasher::new();
    h.update(bytes);
    h.finish()
}

/// Per-pass statistics as one word: `-` when there are none, else per pass
/// `<pass>:<pages>:<zero pages>:<dirty left>:<dirty rate>:<bandwidth B/s>:<expected downtime
/// µs>:<duration µs>:<throttle %>`, passes separated by `,`.
#[must_use]
pub fn passes_word(passes: &[PassStats]) -> String {
    list_word(passes, |p| {
        format!(
            "{}:{}:{}:{}:{:.0}:{:.0}:{}:{}:{}",
            p.pass,
            p.pages,
            p.zero_pages,
            p.dirty_left,
            p.dirty_rate,
            p.bandwidth,
            p.expected_downtime.as_micros(),
            p.duration.as_micros(),
            p.throttle
        )
    })
}

/// `items` as one word: `-` when there are none, else each as `item` writes it, separated by `,`.
fn list_word<T>(items: &[T], item: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = items.iter().map(item).collect();
    parts.join(",")
}

/// The passes of a word written by [`passes_word`] (`bytes` is not carried: 0).
///
/// # Errors
///
/// A malformed pass.
pub fn parse_passes(word: Option<&String>) -> Result<Vec<PassStats>, String> {
    match word.map(String::as_str) {
        None | Some("-") => Ok(Vec::new()),
        Some(w) => w
            .split(',')
            .map(|p| {
                let f: Vec<&str> = p.split(':').collect();
                let n = |i: usize| -> Result<u64, String> {
                    f.get(i)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| format!("bad pass {p:?}"))
                };
                Ok(PassStats {
                    pass: u32::try_from(n(0)?).map_err(|e| e.to_string())?,
                    pages: n(1)?,
                    zero_pages: n(2)?,
                    bytes: 0,
                    dirty_left: n(3)?,
                    dirty_rate: n(4)? as f64,
                    bandwidth: n(5)? as f64,
                    expected_downtime: Duration::from_micros(n(6)?),
                    duration: Duration::from_micros(n(7)?),
                    throttle: u8::try_from(n(8)?).map_err(|e| e.to_string())?,
                })
            })
            .collect(),
    }
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
    list_word(phases, |p| format!("{}:{}", p.name, p.took.as_micros()))
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

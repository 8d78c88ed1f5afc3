//! The tinyvm guest: 45 bytes of hand-assembled 16-bit real-mode code, and the check of the
//! memory pattern it writes.
//!
//! # Layout (1 MiB of RAM at guest physical address 0)
//!
//! | range | use |
//! |---|---|
//! | `0x0000..0x1000` | page 0: real-mode stack (SS:SP = 0:0x1000, grows down) |
//! | `0x1000..0x102d` | page 1: the code below, entered at CS:IP = 0:0x1000 |
//! | `0x2000..0x100000` | pages 2–255: one little-endian `u32` counter at the start of each page |
//!
//! # Program
//!
//! The guest prints `A` once, then loops forever: one *pass* increments the counter of every
//! pattern page, in ascending address order (page 2 first, page 255 last), then prints `B`.
//! A page is reached through ES: segment `page << 8` puts the page at `ES:0`, and the walk ends
//! when adding `0x100` to the segment wraps to 0 (past page 255). `putc` polls the UART's Line
//! Status Register at port 0x3fd until THRE (bit 5) is set, then writes the byte to THR at
//! 0x3f8. Interrupts are off (`cli`); nothing else leaves the guest but the port I/O.
//!
//! ```text
//! 0x1000  fa                 cli
//! 0x1001  b4 41              mov  ah, 'A'
//! 0x1003  e8 18 00           call putc                  ; 0x101e
//! outer:
//! 0x1006  bb 00 02           mov  bx, 0x0200            ; segment of page 2
//! inner:
//! 0x1009  8e c3              mov  es, bx
//! 0x100b  26 66 ff 06 00 00  inc  dword [es:0x0000]     ; this page's counter
//! 0x1011  81 c3 00 01        add  bx, 0x0100            ; next page
//! 0x1015  75 f2              jnz  inner                 ; until bx wraps past page 255
//! 0x1017  b4 42              mov  ah, 'B'
//! 0x1019  e8 02 00           call putc                  ; 0x101e
//! 0x101c  eb e8              jmp  outer                 ; 0x1006
//! putc:
//! 0x101e  ba fd 03           mov  dx, 0x3fd             ; LSR
//! 0x1021  ec                 in   al, dx
//! 0x1022  a8 20              test al, 0x20              ; THRE
//! 0x1024  74 fb              jz   0x1021
//! 0x1026  ba f8 03           mov  dx, 0x3f8             ; THR
//! 0x1029  88 e0              mov  al, ah
//! 0x102b  ee                 out  dx, al
//! 0x102c  c3                 ret
//! ```
//!
//! # The pattern invariant
//!
//! Read the counters `v[0..n]` in walk order (pages 2..=255, `n` = [`PATTERN_PAGES`]) while the
//! vCPU is stopped. Every pass adds 1 to each counter in that order, starting from all zeros,
//! so there is a `c` (the passes completed) and a `k` in `0..n` (the pages done in the pass
//! under way) with `v[i] == c + 1` for `i < k` and `v[i] == c` for `i >= k`: neighbours are
//! equal or differ by exactly 1 at a single place, higher before lower, and the first counter is
//! at most 1 above the last. [`check_pattern`] checks exactly that.
//!
//! The serial output then is `A` followed by `c` or `c - 1` `B`s: `c - 1` only when `k == 0`
//! and the vCPU stopped between the last counter of pass `c` and its `B` ([`check_output`]).

use std::fmt;

/// Guest RAM size: the walk's end relies on the 16-bit segment wrapping at 1 MiB.
pub const RAM_SIZE: usize = 1 << 20;
/// Page size of the pattern.
pub const PAGE_SIZE: usize = 4096;
/// Guest physical address the code is loaded at and entered (CS = 0, IP = this).
pub const CODE_ADDR: u64 = 0x1000;
/// Initial SP (SS = 0): the stack grows down through page 0.
pub const STACK_TOP: u64 = 0x1000;
/// First page of the pattern.
pub const FIRST_PATTERN_PAGE: usize = 2;
/// Number of pattern pages (2..=255).
pub const PATTERN_PAGES: usize = RAM_SIZE / PAGE_SIZE - FIRST_PATTERN_PAGE;
/// The UART's I/O base (COM1).
pub const COM1_BASE: u16 = 0x3f8;

/// The guest program; see the module documentation for the listing.
pub const GUEST_CODE: [u8; 45] = [
    0xfa, // cli
    0xb4, b'A', // mov ah, 'A'
    0xe8, 0x18, 0x00, // call putc (rel16 +0x18 from 0x1006)
    // outer:
    0xbb, 0x00, 0x02, // mov bx, 0x0200
    // inner:
    0x8e, 0xc3, // mov es, bx
    0x26, 0x66, 0xff, 0x06, 0x00, 0x00, // inc dword [es:0x0000]
    0x81, 0xc3, 0x00, 0x01, // add bx, 0x0100
    0x75, 0xf2, // jnz inner (rel8 -14 from 0x1017)
    0xb4, b'B', // mov ah, 'B'
    0xe8, 0x02, 0x00, // call putc (rel16 +2 from 0x101c)
    0xeb, 0xe8, // jmp outer (rel8 -24 from 0x101e)
    // putc:
    0xba, 0xfd, 0x03, // mov dx, 0x3fd
    0xec, // in al, dx
    0xa8, 0x20, // test al, 0x20
    0x74, 0xfb, // jz -5 (back to `in`)
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0x88, 0xe0, // mov al, ah
    0xee, // out dx, al
    0xc3, // ret
];

/// Where the walk stands, derived from a consistent pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternState {
    /// Passes completed (`c`): the last page's counter.
    pub passes: u32,
    /// Pages of the pass under way already incremented (`k`, 0..[`PATTERN_PAGES`]).
    pub pages_done: usize,
}

/// A pattern that breaks the invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// Index in walk order (0 = page 2) of the first counter that breaks it.
    pub index: usize,
    /// What was wrong.
    pub detail: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pattern broken at page {} (walk index {}): {}",
            self.index + FIRST_PATTERN_PAGE,
            self.index,
            self.detail
        )
    }
}

impl std::error::Error for PatternError {}

/// Reads the counters of the pattern pages, in walk order, from a copy of guest RAM.
///
/// # Panics
///
/// If `ram` is shorter than [`RAM_SIZE`].
#[must_use]
pub fn counters(ram: &[u8]) -> Vec<u32> {
    assert!(ram.len() >= RAM_SIZE, "guest RAM copy too short");
    (FIRST_PATTERN_PAGE..RAM_SIZE / PAGE_SIZE)
        .map(|p| {
            let at = p * PAGE_SIZE;
            u32::from_le_bytes([ram[at], ram[at + 1], ram[at + 2], ram[at + 3]])
        })
        .collect()
}

/// Checks the invariant of the module documentation on counters in walk order.
///
/// # Errors
///
/// The first counter that is neither equal to the last page's counter `c` nor `c + 1` at the
/// right place.
pub fn check_pattern(v: &[u32]) -> Result<PatternState, PatternError> {
    let Some(&c) = v.last() else {
        return Err(PatternError {
            index: 0,
            detail: "no pattern pages".to_owned(),
        });
    };
    // k = the number of leading counters at c + 1; every later one must be c.
    let k = v
        .iter()
        .take_while(|&&x| Some(x) == c.checked_add(1))
        .count();
    if let Some((i, &x)) = v.iter().enumerate().skip(k).find(|&(_, &x)| x != c) {
        let prev = if i == 0 { None } else { Some(v[i - 1]) };
        return Err(PatternError {
            index: i,
            detail: format!(
                "counter {x:#x} after {prev:x?}; expected {c:#x} (the last page's) or {:#x} \
                 before the pass boundary",
                u64::from(c) + 1
            ),
        });
    }
    Ok(PatternState {
        passes: c,
        pages_done: k,
    })
}

/// Checks the serial output against the pattern: `A`, then `passes` `B`s (one fewer when the
/// vCPU stopped between a pass's last page and its `B`). `earlier_bs` counts `B`s printed
/// before this output began (by the source of a migration).
///
/// # Errors
///
/// A description of the mismatch.
pub fn check_output(
    output: &[u8],
    with_a: bool,
    earlier_bs: u64,
    state: PatternState,
) -> Result<u64, String> {
    let rest = if with_a {
        match output.split_first() {
            Some((b'A', rest)) => rest,
            _ => {
                return Err(format!(
                    "output does not start with 'A': {:?}",
                    String::from_utf8_lossy(&output[..output.len().min(16)])
                ))
            }
        }
    } else {
        output
    };
    if let Some(i) = rest.iter().position(|&b| b != b'B') {
        return Err(format!("unexpected byte {:#04x} at {i} after 'A'", rest[i]));
    }
    let bs = earlier_bs + rest.len() as u64;
    let passes = u64::from(state.passes);
    let ok = bs == passes || (state.pages_done == 0 && bs + 1 == passes);
    if ok {
        Ok(bs)
    } else {
        Err(format!(
            "{bs} 'B's printed but the pattern shows {passes} passes ({} pages into the next)",
            state.pages_done
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_invariant() {
        let n = PATTERN_PAGES;
        assert_eq!(
            check_pattern(&vec![7; n]),
            Ok(PatternState {
                passes: 7,
                pages_done: 0
            })
        );
        let mut v = vec![7; n];
        v[..10].fill(8);
        assert_eq!(check_pattern(&v).unwrap().pages_done, 10);
        v[20] = 8;
        assert_eq!(check_pattern(&v).unwrap_err().index, 20);
        let mut v = vec![7; n];
        v[0] = 9;
        assert_eq!(check_pattern(&v).unwrap_err().index, 0);
        let mut v = vec![7; n];
        v[n - 1] = 8; // last above first: not a state the walk reaches
        assert_eq!(check_pattern(&v).unwrap_err().index, 0);
    }

    #[test]
    fn output_check() {
        let s = PatternState {
            passes: 3,
            pages_done: 0,
        };
        assert_eq!(check_output(b"ABBB", true, 0, s), Ok(3));
        assert_eq!(check_output(b"ABB", true, 0, s), Ok(2));
        assert!(check_output(b"AB", true, 0, s).is_err());
        assert_eq!(check_output(b"B", false, 2, s), Ok(3));
        assert!(check_output(b"BAB", true, 0, s).is_err());
    }
}

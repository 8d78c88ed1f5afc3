//! How two field lists line up: the fields on the wire at a version, the longest common
//! subsequence of their keys, and whether two runs of fields are the same bytes (equal shapes
//! pair up, `Unused<N>` padding absorbs fields of `N` bytes). Alignment only; what a
//! misalignment means is up to the rules.

use crate::layout::{Cond, Item, Presence, SubItem};

/// The fields and struct arrays of a list that are on the wire at version `v`.
pub(super) fn wire_fields(items: &[Item], v: u32) -> Vec<&Item> {
    items
        .iter()
        .filter(|i| !matches!(i, Item::Subsection(_)))
        .filter(|i| i.cond().presence_at(v) != Presence::Never)
        .collect()
}

pub(super) fn find_in<'a>(items: &'a [Item], key: &str) -> Option<&'a Item> {
    items.iter().find(|i| i.key() == key)
}

pub(super) fn find_sub<'a>(items: &'a [Item], name: &str) -> Option<&'a SubItem> {
    items.iter().find_map(|i| match i {
        Item::Subsection(s) if s.name == name => Some(s),
        _ => None,
    })
}

/// Longest common subsequence of two key lists: matched index pairs.
pub(super) fn lcs(a: &[&str], b: &[&str]) -> Vec<(usize, usize)> {
    let (n, m) = (a.len(), b.len());
    if (n + 1).saturating_mul(m + 1) > 4_000_000 {
        // Huge lists: greedy in-order matching keeps memory bounded.
        let mut out = Vec::new();
        let mut j = 0;
        for (i, k) in a.iter().enumerate() {
            if let Some(d) = b[j..].iter().position(|x| x == k) {
                out.push((i, j + d));
                j += d + 1;
            }
        }
        return out;
    }
    let mut t = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[at(i, j)] = if a[i] == b[j] {
                t[at(i + 1, j + 1)] + 1
            } else {
                t[at(i + 1, j)].max(t[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if a[i] == b[j] {
            out.push((i, j));
            i += 1;
            j += 1;
        } else if t[at(i + 1, j)] >= t[at(i, j + 1)] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// A token of the positional equivalence walk.
enum Tok {
    /// Padding of N bytes.
    Pad(u64),
    /// Anything else: its wire signature.
    Sig(String),
}

fn signature(i: &Item, v: u32) -> String {
    match i {
        Item::Field(f) => format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{}",
            f.kind,
            f.len,
            f.count,
            f.max,
            f.size,
            f.presence_at(v)
        ),
        Item::Array(a) => {
            let inner: Vec<String> = a.items.iter().map(|x| signature(x, u32::MAX)).collect();
            format!(
                "[{:?}|{:?}|{:?}|{}|{}]",
                a.len,
                a.count,
                a.max,
                a.presence_at(v),
                inner.join(",")
            )
        }
        Item::Subsection(s) => format!("sub:{}:{}", s.name, s.version),
    }
}

fn token(i: &Item, v: u32) -> Tok {
    match i {
        Item::Field(f) if f.kind == "unused" && f.presence_at(v) == Presence::Always => {
            Tok::Pad(f.size.unwrap_or(0))
        }
        _ => Tok::Sig(signature(i, v)),
    }
}

/// Whether two runs of fields are the same bytes: equal shapes pair up (renames), and padding
/// absorbs unconditional fixed-size fields of exactly its size.
pub(super) fn equivalent(a: &[&Item], b: &[&Item], v: u32) -> bool {
    fn absorb(n: u64, other: &[&Item], j: &mut usize, v: u32) -> bool {
        let mut sum = 0u64;
        while sum < n {
            let Some(x) = other.get(*j) else {
                return false;
            };
            if x.cond().presence_at(v) != Presence::Always {
                return false;
            }
            let Some(s) = x.fixed_size() else {
                return false;
            };
            sum = sum.saturating_add(s);
            *j += 1;
        }
        sum == n
    }
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return true,
            (None, _) | (_, None) => return false,
            (Some(x), Some(y)) => match (token(x, v), token(y, v)) {
                (Tok::Sig(p), Tok::Sig(q)) => {
                    if p != q {
                        return false;
                    }
                    i += 1;
                    j += 1;
                }
                (Tok::Pad(n), _) => {
                    i += 1;
                    if !absorb(n, b, &mut j, v) {
                        return false;
                    }
                }
                (_, Tok::Pad(n)) => {
                    j += 1;
                    if !absorb(n, a, &mut i, v) {
                        return false;
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_aligns() {
        assert_eq!(
            lcs(&["a", "b", "c"], &["a", "x", "c"]),
            vec![(0, 0), (2, 2)]
        );
        assert_eq!(lcs(&[], &["a"]), vec![]);
    }
}

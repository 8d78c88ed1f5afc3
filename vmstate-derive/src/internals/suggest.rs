//! "Did you mean" for misspelt keywords and names: the closest candidate by edit distance.

/// Edit distance with adjacent transpositions counted as one edit (optimal string alignment),
/// so `verison` is one edit from `version`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely typo: at most one edit
/// per three characters of the candidate (at least one edit). Ties go to the earlier candidate.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = distance(word, c);
        let limit = (c.chars().count() / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `; did you mean `x`?` when a close candidate exists.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates).map(|c| format!("; did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::{closest, distance};

    #[test]
    fn distances() {
        assert_eq!(distance("since", "since"), 0);
        assert_eq!(distance("sinse", "since"), 1);
        assert_eq!(distance("verison", "version"), 1);
        assert_eq!(distance("machin", "machine"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn picks_the_closest_plausible_key() {
        let keys = ["since", "when", "default", "keep", "skip"];
        assert_eq!(closest("sinse", keys), Some("since"));
        assert_eq!(closest("defualt", keys), Some("default"));
        assert_eq!(closest("frobnicate", keys), None);
        // One edit on a four-letter word is plausible, two are not.
        assert_eq!(closest("wehn", keys), Some("when"));
        assert_eq!(closest("wxyn", keys), None);
        assert_eq!(
            closest("dev/fifoo", ["dev/fifo", "dev/tsr"]),
            Some("dev/fifo")
        );
    }
}

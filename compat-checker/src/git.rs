//! Baselines as committed at a git revision (`cargo compat-check --baseline-rev REV`).
//!
//! The baseline directory names a place in a git repository (the one that contains it, found
//! with `git rev-parse --show-toplevel` from its nearest existing ancestor, so the directory
//! itself may be gone from the working tree). The files are read from the revision's tree with
//! `git ls-tree` and `git show <commit>:<path>`: nothing is checked out, the working tree and
//! index are not touched, and uncommitted changes to the baselines are ignored.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::error::Error;
use crate::layout::Baseline;

/// The revision the baselines were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The revision as given (`main`, `v0.1.0`, `HEAD~3`, a hash).
    pub rev: String,
    /// The commit it resolves to (full hash).
    pub commit: String,
    /// The baseline directory relative to the repository root, `/`-separated (empty for the
    /// root itself).
    pub dir: String,
}

impl Revision {
    /// `<rev>` (`<short hash>`) `:<dir>`, as shown in status lines.
    #[must_use]
    pub fn describe(&self) -> String {
        let short = &self.commit[..self.commit.len().min(12)];
        let dir = if self.dir.is_empty() { "." } else { &self.dir };
        if self.rev == self.commit || self.commit.starts_with(&self.rev) {
            format!("{dir} at {short}")
        } else {
            format!("{dir} at {} ({short})", self.rev)
        }
    }
}

/// Runs `git -C <cwd> <args>`; stdout on success, git's stderr in the error otherwise.
fn git(cwd: &Path, args: &[&OsStr]) -> Result<Vec<u8>, Error> {
    let out = Command::new("git")
        .arg("-C")
        .arg(cwd)
        .args(args)
        .output()
        .map_err(|e| {
            Error::Io(format!(
                "--baseline-rev needs git, which could not run: {e}"
            ))
        })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Git(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// `dir` made absolute (against the current directory) and resolved through its nearest
/// existing ancestor, which is returned too (git runs there).
fn resolve(dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::Io(format!("cannot read the current directory: {e}")))?
            .join(dir)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut full = c.clone();
            for part in rest.iter().rev() {
                full.push(part);
            }
            return Ok((full, c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(name)) => {
                rest.push(name.to_owned());
                existing = p;
            }
            _ => {
                return Err(Error::Io(format!(
                    "--baseline-rev: no existing directory above {}",
                    dir.display()
                )))
            }
        }
    }
}

/// Reads every `*.json` baseline in `dir` as committed at `rev`, sorted by machine type.
///
/// `dir` is the baseline directory of the working tree (absolute, or relative to the current
/// directory); it need not exist any more. Files are checked as [`crate::load_baselines`]
/// checks them, and named `<rev>:<path>` in errors.
///
/// # Errors
/// [`Error::Usage`] when `dir` is in no git repository, `rev` names no commit, or the revision
/// has no baseline in that directory; [`Error::BadInput`] for a malformed baseline;
/// [`Error::Io`] when git cannot run, [`Error::Git`] when it fails otherwise.
pub fn load_baselines_at_rev(dir: &Path, rev: &str) -> Result<(Vec<Baseline>, Revision), Error> {
    let (full, existing) = resolve(dir)?;
    let top = git(
        existing.as_ref(),
        &["rev-parse".as_ref(), "--show-toplevel".as_ref()],
    )
    .map_err(|e| {
        Error::Usage(format!(
            "--baseline-rev {rev}: the baseline directory {} is not in a git repository ({e})",
            dir.display()
        ))
    })?;
    let top = PathBuf::from(String::from_utf8_lossy(&top).trim_end_matches(['\n', '\r']));
    let top = top.canonicalize().unwrap_or(top);
    let rel = full.strip_prefix(&top).map_err(|_| {
        Error::Usage(format!(
            "--baseline-rev {rev}: the baseline directory {} is outside the git repository at {}",
            dir.display(),
            top.display()
        ))
    })?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(Error::Usage(format!(
                    "--baseline-rev {rev}: cannot name {} inside the repository",
                    dir.display()
                )))
            }
        }
    }
    let rel = parts.join("/");
    let spec = format!("{rev}^{{commit}}");
    let commit = git(
        &top,
        &[
            "rev-parse".as_ref(),
            "--verify".as_ref(),
            "--quiet".as_ref(),
            "--end-of-options".as_ref(),
            spec.as_ref(),
        ],
    )
    .map_err(|_| {
        Error::Usage(format!(
            "--baseline-rev {rev}: not a commit in the git repository at {} (a branch, tag or \
             hash that `git rev-parse` knows; fetch it first if it is remote)",
            top.display()
        ))
    })?;
    let commit = String::from_utf8_lossy(&commit).trim().to_owned();
    let revision = Revision {
        rev: rev.to_owned(),
        commit: commit.clone(),
        dir: rel.clone(),
    };
    // `<dir>/` lists the directory's entries; `-z` keeps odd file names intact.
    let mut ls: Vec<&OsStr> = vec!["ls-tree".as_ref(), "-z".as_ref(), commit.as_ref()];
    let prefix = format!("{rel}/");
    if !rel.is_empty() {
        ls.push("--".as_ref());
        ls.push(prefix.as_ref());
    }
    let listing = git(&top, &ls).map_err(|e| {
        Error::Git(format!(
            "--baseline-rev {rev}: git ls-tree {commit} failed: {e}"
        ))
    })?;
    let mut files = Vec::new();
    for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        // `<mode> <type> <object>\t<path>`
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        if meta.split(' ').nth(1) == Some("blob") && path.ends_with(".json") {
            files.push(path.to_owned());
        }
    }
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "--baseline-rev {rev}: revision {} has no baselines in {} (no {}*.json there); \
             pick a revision where the machine types were frozen",
            &commit[..commit.len().min(12)],
            if rel.is_empty() { "." } else { &rel },
            if rel.is_empty() { "" } else { &prefix },
        )));
    }
    let mut out = Vec::new();
    for path in files {
        let object = format!("{commit}:{path}");
        let bytes = git(&top, &["show".as_ref(), object.as_ref()]).map_err(|e| {
            Error::Git(format!(
                "--baseline-rev {rev}: git show {object} failed: {e}"
            ))
        })?;
        let origin = format!("{rev}:{path}");
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::BadInput(format!("{origin}: not UTF-8")))?;
        let b = Baseline::parse(&text, &origin)?;
        let stem = path
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_suffix(".json"))
            .unwrap_or("");
        crate::check_file_name(&b, stem, &origin)?;
        out.push(b);
    }
    out.sort_by_cached_key(|b| crate::machine_sort_key(b.machine()));
    Ok((out, revision))
}

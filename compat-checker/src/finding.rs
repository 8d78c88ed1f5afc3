//! Findings and reports: the data every check produces and every renderer prints.

use serde::{Deserialize, Serialize};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported, does not fail the check.
    Warn,
    /// Fails the check (exit code 1).
    Deny,
}

/// Which way a migration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// What the current code sends must load in the release that froze the baseline.
    NewToOld,
    /// What the release that froze the baseline sent must load in the current code.
    OldToNew,
    /// Not direction-specific (e.g. a device renamed).
    Both,
}

/// A source location `file:line` (column optional).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceLoc {
    /// File, relative to the workspace root.
    pub file: String,
    /// 1-based line.
    pub line: u32,
}

/// One violation of one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id, e.g. `field-leaks-into-old-machine`.
    pub rule: String,
    /// Severity after configuration.
    pub severity: Severity,
    /// Direction of the migration that breaks.
    pub direction: Direction,
    /// The section (vmsd name) the finding is about; `device` in the JSON output (kept for
    /// compatibility).
    #[serde(rename = "device")]
    pub section: String,
    /// Field or subsection path inside the device (empty for device-level findings).
    pub path: String,
    /// Every machine type affected, oldest first.
    pub machines: Vec<String>,
    /// One-line description of what changed.
    pub message: String,
    /// Where the offending declaration is (current code, or the baseline's for removals).
    pub location: Option<SourceLoc>,
    /// A concrete fix.
    pub fix: String,
}

/// The result of a check: findings, plus what was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Machine types checked.
    pub machines_checked: Vec<String>,
    /// Devices checked.
    pub devices_checked: usize,
    /// Findings, sorted by severity (deny first), rule, device, path.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether any finding denies.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Deny)
    }

    /// Sorts findings into their stable order.
    pub fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            b.severity.cmp(&a.severity).then_with(|| {
                (&a.rule, &a.section, &a.path, &a.machines).cmp(&(
                    &b.rule,
                    &b.section,
                    &b.path,
                    &b.machines,
                ))
            })
        });
    }
}

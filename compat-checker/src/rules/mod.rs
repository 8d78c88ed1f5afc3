//! The rules: one file per rule, registered in [`ALL`].
//!
//! A rule is a unit, as a lint is in cargo-semver-checks: its file holds the id, a short name
//! (the title of a finding), a default [`Level`], a one-line summary (`--list`), a long
//! explanation (`--explain`, and `docs/compat-rules.md`) and the detection itself ([`Detect`]):
//! a function the walk in [`mod@crate::check`] calls at every [`Step`](crate::check::Step),
//! which decides whether the step violates the rule and words the finding.
//!
//! The rules of the QEMU mode (two `-dump-vmstate` files) are units of the same shape, in
//! [`qemu`] ([`qemu::ALL`]), detected over the dump walk of [`mod@crate::qemu`].
//!
//! Adding a rule: add the file, register it here, add `tests/fixtures/<id>/{old,new}.json`
//! and `tests/snapshots/<id>.txt`; tests fail if any of these is missing.

use std::fmt;

pub mod array_counted_by_configuration;
pub mod array_length_changed;
pub mod device_added;
pub mod device_removed;
pub mod device_renamed;
pub mod field_kind_changed;
pub mod field_leaks_into_old_machine;
pub mod field_no_longer_migrated;
pub mod field_order_changed;
pub mod field_removed_without_padding;
pub mod field_size_changed;
pub mod machine_type_removed;
pub mod presence_changed_maybe;
pub mod priority_changed;
pub mod qemu;
pub mod section_leaks_into_old_machine;
pub mod section_version_bumped;
pub mod subsection_leaks_into_old_machine;
pub mod subsection_no_longer_understood;
pub mod subsection_version_bumped;
pub mod version_no_longer_accepted;

/// How a rule's findings are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Not reported.
    Allow,
    /// Reported; does not fail the check.
    Warn,
    /// Reported; fails the check.
    Deny,
}

impl Level {
    /// `allow` / `warn` / `deny`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Allow => "allow",
            Level::Warn => "warn",
            Level::Deny => "deny",
        }
    }

    /// Parses `allow` / `warn` / `deny`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "allow" => Some(Level::Allow),
            "warn" => Some(Level::Warn),
            "deny" => Some(Level::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a rule finds its violations: a query over the steps of a walk.
#[derive(Clone, Copy)]
pub enum Detect {
    /// Baseline against current code (`cargo compat-check`): called at every step of the walk
    /// in [`mod@crate::check`].
    Native(fn(&crate::check::Step<'_>, &mut crate::check::Hits<'_>)),
    /// Two QEMU `-dump-vmstate` files (`cargo compat-check qemu-dump`): called at every step
    /// of the dump walk in [`mod@crate::qemu`].
    QemuDump(fn(&crate::qemu::Step<'_>, &mut crate::qemu::Hits<'_>)),
}

impl fmt::Debug for Detect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Detect::Native(_) => "Native(..)",
            Detect::QemuDump(_) => "QemuDump(..)",
        })
    }
}

/// One compatibility rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable id, kebab-case (also the file name with `_`).
    pub id: &'static str,
    /// Short name: the title of a finding.
    pub name: &'static str,
    /// Default level (overridable in `[workspace.metadata.compat-check.rules]`).
    pub level: Level,
    /// One line for `--list`.
    pub summary: &'static str,
    /// The long text `--explain` prints.
    pub explanation: &'static str,
    /// The detection.
    pub detect: Detect,
}

/// Every rule, in `--list` order.
pub const ALL: &[&Rule] = &[
    &field_leaks_into_old_machine::RULE,
    &subsection_leaks_into_old_machine::RULE,
    &section_leaks_into_old_machine::RULE,
    &device_added::RULE,
    &section_version_bumped::RULE,
    &subsection_version_bumped::RULE,
    &version_no_longer_accepted::RULE,
    &field_removed_without_padding::RULE,
    &field_no_longer_migrated::RULE,
    &field_kind_changed::RULE,
    &field_size_changed::RULE,
    &array_length_changed::RULE,
    &array_counted_by_configuration::RULE,
    &field_order_changed::RULE,
    &presence_changed_maybe::RULE,
    &subsection_no_longer_understood::RULE,
    &device_removed::RULE,
    &device_renamed::RULE,
    &priority_changed::RULE,
    &machine_type_removed::RULE,
];

/// The native rule with this id (the rules whose level the workspace can configure).
#[must_use]
pub fn find(id: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|r| r.id == id)
}

/// Any rule with this id, native or QEMU-dump.
#[must_use]
pub fn lookup(id: &str) -> Option<&'static Rule> {
    every().find(|r| r.id == id)
}

/// Every rule, native then QEMU-dump, in `--list` order.
pub fn every() -> impl Iterator<Item = &'static Rule> {
    ALL.iter().chain(qemu::ALL).copied()
}

/// Every native rule id, in `--list` order.
#[must_use]
pub fn ids() -> Vec<&'static str> {
    ALL.iter().map(|r| r.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids of the rule files in `dir` (file `a_b.rs` is rule `<prefix>a-b`), and that
    /// `dir/mod.rs` declares each.
    fn rule_files(dir: &std::path::Path, prefix: &str) -> Vec<String> {
        let src = std::fs::read_to_string(dir.join("mod.rs")).unwrap();
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".rs") {
                if stem != "mod" {
                    assert!(
                        src.contains(&format!("pub mod {stem};")),
                        "{stem} is not declared in {}/mod.rs",
                        dir.display()
                    );
                    files.push(format!("{prefix}{}", stem.replace('_', "-")));
                }
            }
        }
        files.sort();
        files
    }

    fn sorted_ids(rules: &[&Rule]) -> Vec<String> {
        let mut v: Vec<String> = rules.iter().map(|r| r.id.to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn every_rule_file_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rules");
        assert_eq!(
            rule_files(&dir, ""),
            sorted_ids(ALL),
            "src/rules/*.rs and rules::ALL differ"
        );
        assert_eq!(
            rule_files(&dir.join("qemu"), "qemu-"),
            sorted_ids(qemu::ALL),
            "src/rules/qemu/*.rs and rules::qemu::ALL differ"
        );
        for r in ALL {
            assert!(matches!(r.detect, Detect::Native(_)), "{}", r.id);
        }
        for r in qemu::ALL {
            assert!(matches!(r.detect, Detect::QemuDump(_)), "{}", r.id);
        }
    }

    #[test]
    fn rules_are_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for r in qemu::ALL {
            assert!(seen.insert(r.id), "duplicate id {}", r.id);
            assert!(r.id.starts_with("qemu-"), "{}", r.id);
            assert!(
                !r.summary.contains('\n') && !r.explanation.is_empty(),
                "{}",
                r.id
            );
            assert_ne!(r.level, Level::Allow, "{}", r.id);
        }
        for r in ALL {
            assert!(seen.insert(r.id), "duplicate id {}", r.id);
            assert!(
                r.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                r.id
            );
            assert!(
                !r.summary.contains('\n') && !r.name.contains('\n'),
                "{}",
                r.id
            );
            assert!(r.explanation.contains("How to fix"), "{}", r.id);
            assert_ne!(r.level, Level::Allow, "{}", r.id);
        }
    }
}

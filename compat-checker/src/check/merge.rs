//! Merging raw findings into the report: the same finding in both directions becomes `both`,
//! the same finding on several machine types becomes one finding listing them, levels come from
//! the configuration, and `{next}` in fix texts becomes the first machine version after every
//! affected one.

use std::collections::{BTreeMap, BTreeSet};

use vmstate_runtime::schema::MachineVersion;

use super::step::{Raw, NEXT};
use crate::config::Config;
use crate::finding::{Direction, Finding, Severity, SourceLoc};
use crate::layout::Loc;
use crate::rules::{Level, Rule};

/// `7.2` of `pc-i440fx-7.2`.
pub(crate) fn machine_version(name: &str) -> Option<MachineVersion> {
    MachineVersion::parse(name.rsplit_once('-')?.1)
}

/// The first machine version after every affected one: the next in the catalog, else a guess
/// (`X.2` → `X+1.0`, otherwise the next minor). The flag says whether it is in the catalog.
fn next_version(
    machines: &[String],
    catalog: &BTreeSet<MachineVersion>,
) -> Option<(MachineVersion, bool)> {
    let newest = machines.iter().filter_map(|m| machine_version(m)).max()?;
    if let Some(v) = catalog.range(newest..).find(|v| **v > newest) {
        return Some((*v, true));
    }
    let guess = if newest.minor >= 2 {
        MachineVersion::new(newest.major.saturating_add(1), 0)
    } else {
        MachineVersion::new(newest.major, newest.minor + 1)
    };
    Some((guess, false))
}

pub(super) fn merge(
    raw: Vec<Raw>,
    catalog: &BTreeSet<MachineVersion>,
    config: &Config,
) -> Vec<Finding> {
    type Key = (&'static str, String, String, String, Option<Loc>, String);
    // 1. Per machine: the same finding in both directions becomes `Both`.
    let mut per_machine: BTreeMap<(Key, String), (BTreeSet<Direction>, &'static Rule)> =
        BTreeMap::new();
    for r in raw {
        let key = (r.rule.id, r.section, r.path, r.message, r.location, r.fix);
        per_machine
            .entry((key, r.machine))
            .or_insert_with(|| (BTreeSet::new(), r.rule))
            .0
            .insert(r.dir);
    }
    // 2. Across machine types.
    let mut merged: BTreeMap<(Key, Direction), (Vec<String>, &'static Rule)> = BTreeMap::new();
    for ((key, machine), (dirs, rule)) in per_machine {
        let dir = if dirs.len() > 1 || dirs.contains(&Direction::Both) {
            Direction::Both
        } else {
            dirs.into_iter().next().unwrap_or(Direction::Both)
        };
        merged
            .entry((key, dir))
            .or_insert_with(|| (Vec::new(), rule))
            .0
            .push(machine);
    }
    let mut out = Vec::new();
    for ((key, direction), (mut machines, rule)) in merged {
        let severity = match config.level(rule) {
            Level::Allow => continue,
            Level::Warn => Severity::Warn,
            Level::Deny => Severity::Deny,
        };
        crate::sort_machines(&mut machines);
        let (_, section, path, message, location, mut fix) = key;
        if fix.contains(NEXT) {
            if let Some((v, known)) = next_version(&machines, catalog) {
                fix = fix.replace(NEXT, &v.to_string());
                if !known {
                    fix.push_str(&format!(
                        " ({v} is not in the machine catalog yet: add it, then \
                         `cargo compat-check freeze` its machine types)"
                    ));
                }
            }
        }
        out.push(Finding {
            rule: rule.id.to_owned(),
            severity,
            direction,
            section,
            path,
            machines,
            message,
            location: location.map(|l| SourceLoc {
                file: l.file,
                line: l.line,
            }),
            fix,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_version_guesses() {
        let cat: BTreeSet<MachineVersion> = ["2.3", "4.2", "7.2"]
            .iter()
            .filter_map(|v| MachineVersion::parse(v))
            .collect();
        let m = |v: &[&str]| v.iter().map(|s| format!("pc-{s}")).collect::<Vec<_>>();
        assert_eq!(
            next_version(&m(&["2.3"]), &cat),
            Some((MachineVersion::new(4, 2), true))
        );
        assert_eq!(
            next_version(&m(&["2.3", "7.2"]), &cat),
            Some((MachineVersion::new(8, 0), false))
        );
        assert_eq!(
            next_version(&m(&["7.1"]), &BTreeSet::new()),
            Some((MachineVersion::new(7, 2), false))
        );
    }
}

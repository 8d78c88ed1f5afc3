//! The comparison of frozen baselines with the current code, in both directions: the walk that
//! pairs things up and asks every registered rule about each pair.
//!
//! For every frozen machine type `M` and every device:
//!
//! - **new → old**: what the current code sends for `M` (at the version it sends) must load in
//!   the release that froze `M`, i.e. match what the baseline *expects* at that version;
//! - **old → new**: what the baseline sends for `M` must load here, i.e. match what the current
//!   code expects at the frozen version.
//!
//! Fields are positional, so the two wire lists are aligned by path (longest common
//! subsequence, `align.rs`); between aligned fields, `Unused<N>` padding may absorb fields of `N`
//! bytes and fields of identical shape pair up (a rename is not a wire change). Subsections are
//! matched by name. Every pairing is a [`Step`]; every rule in [`crate::rules::ALL`] looks at
//! every step and reports what it finds ([`step`] says what a step holds). The findings are then
//! merged across directions and machine types (`merge.rs`), and fix texts get the first machine
//! version they may gate on.

mod align;
mod merge;
pub mod step;

use std::collections::{BTreeSet, HashMap, HashSet};

use vmstate_runtime::schema::MachineVersion;

use crate::config::Config;
use crate::finding::{Direction, Report};
use crate::layout::{Baseline, Cond, DeviceLayout, Item, Presence};
use crate::rules::{self, Detect};
use crate::schema::Export;
use step::Raw;
pub use step::{Hits, ListCx, Step};

/// Compares every baseline with the current code.
#[must_use]
pub fn check(baselines: &[Baseline], current: &Export, config: &Config) -> Report {
    let mut raw = Vec::new();
    let mut machines = Vec::new();
    for b in baselines {
        machines.push(b.machine().to_owned());
        check_machine(b, current, &mut raw);
    }
    crate::sort_machines(&mut machines);
    machines.dedup();
    let catalog_versions: BTreeSet<MachineVersion> = current
        .crates
        .iter()
        .flat_map(|c| c.catalog.machine_names())
        .filter_map(|n| merge::machine_version(&n))
        .collect();
    let mut report = Report {
        machines_checked: machines,
        devices_checked: current.devices().count(),
        findings: merge::merge(raw, &catalog_versions, config),
    };
    report.sort();
    report
}

/// Asks every rule about steps of one device on one machine type.
struct Walk<'a> {
    machine: &'a str,
    section: &'a str,
    out: &'a mut Vec<Raw>,
}

impl Walk<'_> {
    /// Shows `step` to every rule; whether any of them reported.
    fn ask(&mut self, step: &Step<'_>) -> bool {
        let mut fired = false;
        for &rule in rules::ALL {
            let Detect::Native(detect) = rule.detect else {
                continue;
            };
            let mut hits = Hits {
                rule,
                machine: self.machine,
                section: self.section,
                out: self.out,
                fired: &mut fired,
            };
            detect(step, &mut hits);
        }
        fired
    }
}

fn check_machine(b: &Baseline, current: &Export, raw: &mut Vec<Raw>) {
    let m = b.machine();
    let cur = crate::eval::evaluate(current, m);
    let mut walk = Walk {
        machine: m,
        section: "",
        out: raw,
    };
    walk.ask(&Step::Machine {
        machine: m,
        known: cur.is_some(),
    });
    let Some(cur) = cur else {
        return;
    };
    let cur_by_name: HashMap<&str, &DeviceLayout> =
        cur.iter().map(|d| (d.name.as_str(), d)).collect();
    let base_names: HashSet<&str> = b.devices.iter().map(|d| d.name.as_str()).collect();
    let mut renamed_to = HashSet::new();
    for bd in &b.devices {
        let mut walk = Walk {
            machine: m,
            section: &bd.name,
            out: raw,
        };
        if let Some(cd) = cur_by_name.get(bd.name.as_str()) {
            compare_device(&mut walk, bd, cd);
            continue;
        }
        // Only a device the baseline sends can have been renamed.
        let renamed = (bd.presence != Presence::Never)
            .then(|| {
                cur.iter().find(|c| {
                    !base_names.contains(c.name.as_str())
                        && !bd.rust_name.is_empty()
                        && c.rust_name == bd.rust_name
                })
            })
            .flatten();
        if let Some(c) = renamed {
            renamed_to.insert(c.name.clone());
        }
        walk.ask(&Step::DeviceGone { base: bd, renamed });
    }
    for cd in &cur {
        if base_names.contains(cd.name.as_str()) || renamed_to.contains(&cd.name) {
            continue;
        }
        let mut walk = Walk {
            machine: m,
            section: &cd.name,
            out: raw,
        };
        walk.ask(&Step::DeviceNew { cur: cd });
    }
}

fn compare_device(walk: &mut Walk<'_>, bd: &DeviceLayout, cd: &DeviceLayout) {
    walk.ask(&Step::Device { base: bd, cur: cd });
    if bd.presence == Presence::Never {
        return;
    }
    for (dir, v) in [
        // new → old, at the version the current code sends (when it sends the section at all).
        (Direction::NewToOld, cd.version),
        // old → new, at the version the baseline sends.
        (Direction::OldToNew, bd.version),
    ] {
        if dir == Direction::NewToOld && cd.presence == Presence::Never {
            continue;
        }
        if !walk.ask(&Step::SectionVersion {
            base: bd,
            cur: cd,
            dir,
        }) {
            let cx = ListCx {
                dev: cd,
                container: cd.at.as_ref(),
                top: true,
                sub: None,
                v,
                dir,
            };
            compare_lists(walk, &bd.items, &cd.items, cx);
        }
    }
}

/// Compares one list (device fields, a subsection, an array element) in one direction, at
/// container version `cx.v` (the version in the stream).
fn compare_lists(walk: &mut Walk<'_>, old: &[Item], new: &[Item], cx: ListCx<'_>) {
    let v = cx.v;
    let ow = align::wire_fields(old, v);
    let nw = align::wire_fields(new, v);
    let ok: Vec<&str> = ow.iter().map(|i| i.key()).collect();
    let nk: Vec<&str> = nw.iter().map(|i| i.key()).collect();
    let pairs = align::lcs(&ok, &nk);
    let matched_o: HashSet<usize> = pairs.iter().map(|p| p.0).collect();
    let matched_n: HashSet<usize> = pairs.iter().map(|p| p.1).collect();
    let un_o: HashSet<&str> = (0..ow.len())
        .filter(|i| !matched_o.contains(i))
        .map(|i| ok[i])
        .collect();
    // On the wire in both lists but not aligned: at another position.
    let moved: BTreeSet<&str> = (0..nw.len())
        .filter(|j| !matched_n.contains(j))
        .map(|j| nk[j])
        .filter(|k| un_o.contains(k))
        .collect();
    for key in &moved {
        if let Some(n) = nw.iter().find(|i| i.key() == *key) {
            walk.ask(&Step::Moved {
                key,
                new: n,
                old_keys: &ok,
                cx,
            });
        }
    }
    // Walk the alignment: gaps, then the matched pair.
    let (mut i, mut j) = (0, 0);
    for &(pi, pj) in pairs.iter().chain(std::iter::once(&(ow.len(), nw.len()))) {
        let og: Vec<&Item> = ow[i..pi]
            .iter()
            .copied()
            .filter(|x| !moved.contains(x.key()))
            .collect();
        let ng: Vec<&Item> = nw[j..pj]
            .iter()
            .copied()
            .filter(|x| !moved.contains(x.key()))
            .collect();
        if (!og.is_empty() || !ng.is_empty()) && !align::equivalent(&og, &ng, v) {
            // Removed fields point at the field that now takes their place (or precedes it).
            let anchor = nw
                .get(pj)
                .or_else(|| pj.checked_sub(1).and_then(|p| nw.get(p)))
                .map_or(cx.container, |i| i.at());
            let gap_cx = ListCx {
                container: anchor,
                ..cx
            };
            for o in &og {
                walk.ask(&Step::Dropped {
                    old: o,
                    now: align::find_in(new, o.key()),
                    new_gap: &ng,
                    cx: gap_cx,
                });
            }
            for n in &ng {
                walk.ask(&Step::Appeared {
                    new: n,
                    was: align::find_in(old, n.key()),
                    old_gap: &og,
                    cx: gap_cx,
                });
            }
        }
        if pi < ow.len() && pj < nw.len() {
            compare_pair(walk, ow[pi], nw[pj], cx);
        }
        i = pi + 1;
        j = pj + 1;
    }
    compare_subsections(walk, old, new, cx);
}

/// Two aligned items with the same path; arrays of structs of equal dimensions are compared
/// element-wise.
fn compare_pair(walk: &mut Walk<'_>, o: &Item, n: &Item, cx: ListCx<'_>) {
    walk.ask(&Step::Pair { old: o, new: n, cx });
    if let (Item::Array(oa), Item::Array(na)) = (o, n) {
        if oa.len == na.len && oa.count == na.count && oa.max == na.max {
            let inner = ListCx {
                container: na.at.as_ref(),
                top: false,
                v: u32::MAX,
                ..cx
            };
            compare_lists(walk, &oa.items, &na.items, inner);
        }
    }
}

/// The subsections the sender may send at `cx.v`, each with its counterpart by name.
fn compare_subsections(walk: &mut Walk<'_>, old: &[Item], new: &[Item], cx: ListCx<'_>) {
    let (sender, receiver) = match cx.dir {
        Direction::NewToOld => (new, old),
        _ => (old, new),
    };
    for s in sender {
        let Item::Subsection(s) = s else {
            continue;
        };
        if s.presence_at(cx.v) == Presence::Never {
            continue;
        }
        let r = align::find_sub(receiver, &s.name);
        let (os, ns) = match cx.dir {
            Direction::NewToOld => (r, Some(s)),
            _ => (Some(s), r),
        };
        let step = Step::Subsection {
            old: os,
            new: ns,
            cx,
        };
        if walk.ask(&step) {
            continue;
        }
        if let (Some(os), Some(ns)) = (os, ns) {
            // Fields of a subsection are at the version in its header: the sender's.
            let v = match cx.dir {
                Direction::NewToOld => ns.version,
                _ => os.version,
            };
            let inner = ListCx {
                container: ns.at.as_ref(),
                sub: Some(&ns.name),
                top: false,
                v,
                ..cx
            };
            compare_lists(walk, &os.items, &ns.items, inner);
        }
    }
}

//! The comparison of frozen baselines with the current code, in both directions.
//!
//! For every frozen machine type `M` and every device:
//!
//! - **new → old**: what the current code sends for `M` (at the version it sends) must load in
//!   the release that froze `M`, i.e. match what the baseline *expects* at that version;
//! - **old → new**: what the baseline sends for `M` must load here, i.e. match what the current
//!   code expects at the frozen version.
//!
//! Fields are positional, so the two wire lists are aligned by path (longest common
//! subsequence); between aligned fields, `Unused<N>` padding may absorb fields of `N` bytes and
//! fields of identical shape pair up (a rename is not a wire change). Subsections are matched
//! by name. Every mismatch becomes a finding of one rule; identical findings are merged across
//! directions and machine types, and fix texts get the first machine version they may gate on.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use vmstate_runtime::schema::MachineVersion;

use crate::config::Config;
use crate::finding::{Direction, Finding, Report, Severity, SourceLoc};
use crate::layout::{Baseline, Cond, DeviceLayout, FieldItem, Item, Loc, Presence, SubItem};
use crate::rules::{self, Level, Rule};
use crate::schema::Export;

/// Placeholder in fix texts for the first machine version a change may be gated on.
const NEXT: &str = "{next}";

/// A finding for one machine type and direction, before merging.
struct Raw {
    rule: &'static Rule,
    dir: Direction,
    device: String,
    path: String,
    machine: String,
    message: String,
    location: Option<Loc>,
    fix: String,
}

struct Sink<'a> {
    machine: &'a str,
    device: &'a str,
    out: &'a mut Vec<Raw>,
}

impl Sink<'_> {
    fn push(
        &mut self,
        rule: &'static Rule,
        dir: Direction,
        path: &str,
        message: String,
        location: Option<&Loc>,
        fix: String,
    ) {
        self.out.push(Raw {
            rule,
            dir,
            device: self.device.to_owned(),
            path: path.to_owned(),
            machine: self.machine.to_owned(),
            message,
            location: location.cloned(),
            fix,
        });
    }
}

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
        .filter_map(|n| machine_version(&n))
        .collect();
    let mut report = Report {
        machines_checked: machines,
        devices_checked: current.devices().count(),
        findings: merge(raw, &catalog_versions, config),
    };
    report.sort();
    report
}

fn check_machine(b: &Baseline, current: &Export, raw: &mut Vec<Raw>) {
    let m = b.machine();
    let Some(cur) = crate::eval::evaluate(current, m) else {
        let mut sink = Sink {
            machine: m,
            device: "",
            out: raw,
        };
        sink.push(
            &rules::machine_type_removed::RULE,
            Direction::Both,
            "",
            format!("machine type `{m}` has a frozen baseline, but no machine catalog declares it"),
            None,
            format!(
                "restore `{m}` in the machine catalog, or delete `compat/{m}.json` if support \
                 for it was dropped on purpose"
            ),
        );
        return;
    };
    let cur_by_name: HashMap<&str, &DeviceLayout> =
        cur.iter().map(|d| (d.name.as_str(), d)).collect();
    let base_names: HashSet<&str> = b.devices.iter().map(|d| d.name.as_str()).collect();
    let mut renamed_to = HashSet::new();
    for bd in &b.devices {
        let mut sink = Sink {
            machine: m,
            device: &bd.name,
            out: raw,
        };
        match cur_by_name.get(bd.name.as_str()) {
            Some(cd) => compare_device(&mut sink, bd, cd),
            None if bd.presence == Presence::Never => {}
            None => {
                let renamed = cur.iter().find(|c| {
                    !base_names.contains(c.name.as_str())
                        && !bd.rust_name.is_empty()
                        && c.rust_name == bd.rust_name
                });
                if let Some(c) = renamed {
                    renamed_to.insert(c.name.clone());
                    sink.push(
                        &rules::device_renamed::RULE,
                        Direction::Both,
                        "",
                        format!(
                            "the section is now named `{}` ({}); the section name is on the wire",
                            c.name, c.rust_name
                        ),
                        Some(&c.at),
                        format!(
                            "keep the wire name: `#[vmstate(name = \"{}\")]` on `{}`",
                            bd.name, c.rust_name
                        ),
                    );
                } else {
                    sink.push(
                        &rules::device_removed::RULE,
                        Direction::OldToNew,
                        "",
                        format!(
                            "the section ({}, declared at {} when frozen) is no longer \
                             declared; streams from the release that froze these machine types \
                             contain it and fail to load",
                            bd.rust_name, bd.at
                        ),
                        None,
                        format!(
                            "keep `{}` for these machine types (`#[vmstate(when = machine < \
                             \"{NEXT}\")]` keeps it off newer ones), or delete the baselines of \
                             machine types that are no longer supported",
                            bd.rust_name
                        ),
                    );
                }
            }
        }
    }
    for cd in &cur {
        if base_names.contains(cd.name.as_str())
            || renamed_to.contains(&cd.name)
            || cd.presence == Presence::Never
        {
            continue;
        }
        let mut sink = Sink {
            machine: m,
            device: &cd.name,
            out: raw,
        };
        sink.push(
            &rules::device_added::RULE,
            Direction::NewToOld,
            "",
            format!(
                "new section ({}) is {} for these machine types; the release that froze them has \
                 no such device and fails the load",
                cd.rust_name,
                presence_text(cd.presence, cd.when.as_deref())
            ),
            Some(&cd.at),
            format!(
                "gate the section: `#[vmstate(when = {})]` on `{}`",
                gate_with_next(cd.when.as_deref()),
                cd.rust_name
            ),
        );
    }
}

/// `machine >= "{next}"`, combined with an existing gate.
fn gate_with_next(existing: Option<&str>) -> String {
    match existing {
        // A plain lower bound on the machine version is replaced, not combined.
        Some(g) if g.starts_with("machine >") && !g.contains(',') => {
            format!("machine >= \"{NEXT}\"")
        }
        Some(g) => format!("all(machine >= \"{NEXT}\", {g})"),
        None => format!("machine >= \"{NEXT}\""),
    }
}

fn presence_text(p: Presence, when: Option<&str>) -> String {
    match (p, when) {
        (Presence::Always, _) => "always sent".to_owned(),
        (Presence::Maybe, Some(w)) => format!("sent when `{w}` holds"),
        (Presence::Maybe, None) => "sent depending on runtime state".to_owned(),
        (Presence::Never, _) => "never sent".to_owned(),
    }
}

/// What the items of one list share: the device and where the list is declared.
#[derive(Clone, Copy)]
struct ListCx<'a> {
    /// The current device.
    dev: &'a DeviceLayout,
    /// Where the (current) container of the list is declared.
    container: &'a Loc,
    /// Whether the list is the device's own field list (so `since`/`pin` can be suggested).
    top: bool,
    /// The subsection the list belongs to, if any.
    sub: Option<&'a str>,
}

fn compare_device(sink: &mut Sink<'_>, bd: &DeviceLayout, cd: &DeviceLayout) {
    if bd.presence == Presence::Never {
        if cd.presence != Presence::Never {
            sink.push(
                &rules::section_leaks_into_old_machine::RULE,
                Direction::NewToOld,
                "",
                format!(
                    "the section is now {} for these machine types; the frozen baseline never \
                     sent it",
                    presence_text(cd.presence, cd.when.as_deref())
                ),
                Some(&cd.at),
                format!(
                    "gate the section: `#[vmstate(when = {})]` on `{}`",
                    gate_with_next(cd.when.as_deref()),
                    cd.rust_name
                ),
            );
        }
        return;
    }
    if bd.priority != cd.priority {
        sink.push(
            &rules::priority_changed::RULE,
            Direction::Both,
            "",
            format!(
                "priority changed from {} to {}; sections are sent and loaded in priority \
                 order, so the load order changes",
                bd.priority, cd.priority
            ),
            Some(&cd.at),
            format!(
                "restore `priority = {}` on `{}`, or allow the rule once the new order is known \
                 to be safe",
                bd.priority, cd.rust_name
            ),
        );
    }
    let cx = ListCx {
        dev: cd,
        container: &cd.at,
        top: true,
        sub: None,
    };
    // new → old
    if cd.presence != Presence::Never {
        let at = cd.pinned_at.as_ref().unwrap_or(&cd.at);
        if cd.version > bd.version {
            let accepts = if cd.version > bd.accepts.max {
                format!(
                    "; the release that froze them accepts at most version {}",
                    bd.accepts.max
                )
            } else {
                String::new()
            };
            sink.push(
                &rules::section_version_bumped::RULE,
                Direction::NewToOld,
                "",
                format!(
                    "now sent at version {} for these machine types; the baseline froze \
                     version {}{accepts}",
                    cd.version, bd.version
                ),
                Some(at),
                format!(
                    "add `pin(below = \"{NEXT}\", version = {})` to `#[vmstate(...)]` of `{}`, so \
                     these machine types keep sending version {} (fields added since need \
                     `since = {}`)",
                    bd.version,
                    cd.rust_name,
                    bd.version,
                    bd.version + 1
                ),
            );
        } else if cd.version < bd.accepts.min {
            sink.push(
                &rules::version_no_longer_accepted::RULE,
                Direction::NewToOld,
                "",
                format!(
                    "now sent at version {}, below the minimum version {} of the release that \
                     froze these machine types",
                    cd.version, bd.accepts.min
                ),
                Some(at),
                format!(
                    "send at least version {} for these machine types (check the `pin`s of `{}`)",
                    bd.accepts.min, cd.rust_name
                ),
            );
        } else {
            compare_lists(
                sink,
                &bd.items,
                &cd.items,
                cd.version,
                Direction::NewToOld,
                cx,
            );
        }
    }
    // old → new
    if bd.version < cd.accepts.min || bd.version > cd.accepts.max {
        let fix = if bd.version < cd.accepts.min {
            format!(
                "lower `minimum_version` of `{}` to {} and keep reading the fields of version {} \
                 (mark newer ones `since`)",
                cd.rust_name, bd.version, bd.version
            )
        } else {
            format!(
                "accept version {} again: `version` of `{}` must be at least {}",
                bd.version, cd.rust_name, bd.version
            )
        };
        sink.push(
            &rules::version_no_longer_accepted::RULE,
            Direction::OldToNew,
            "",
            format!(
                "the release that froze these machine types sends version {}, but only \
                 versions {}..={} are accepted now",
                bd.version, cd.accepts.min, cd.accepts.max
            ),
            Some(&cd.at),
            fix,
        );
    } else {
        compare_lists(
            sink,
            &bd.items,
            &cd.items,
            bd.version,
            Direction::OldToNew,
            cx,
        );
    }
}

/// The fields and struct arrays of a list that are on the wire at version `v`.
fn wire_fields(items: &[Item], v: u32) -> Vec<&Item> {
    items
        .iter()
        .filter(|i| !matches!(i, Item::Subsection(_)))
        .filter(|i| i.cond().presence_at(v) != Presence::Never)
        .collect()
}

fn find_in<'a>(items: &'a [Item], key: &str) -> Option<&'a Item> {
    items.iter().find(|i| i.key() == key)
}

fn find_sub<'a>(items: &'a [Item], name: &str) -> Option<&'a SubItem> {
    items.iter().find_map(|i| match i {
        Item::Subsection(s) if s.name == name => Some(s),
        _ => None,
    })
}

/// Longest common subsequence of two key lists: matched index pairs.
fn lcs(a: &[&str], b: &[&str]) -> Vec<(usize, usize)> {
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

/// Compares one list (device fields, a subsection, an array element) in one direction, at
/// container version `v` (the version in the stream).
fn compare_lists(
    sink: &mut Sink<'_>,
    old: &[Item],
    new: &[Item],
    v: u32,
    dir: Direction,
    cx: ListCx<'_>,
) {
    let ow = wire_fields(old, v);
    let nw = wire_fields(new, v);
    let ok: Vec<&str> = ow.iter().map(|i| i.key()).collect();
    let nk: Vec<&str> = nw.iter().map(|i| i.key()).collect();
    let pairs = lcs(&ok, &nk);
    let matched_o: HashSet<usize> = pairs.iter().map(|p| p.0).collect();
    let matched_n: HashSet<usize> = pairs.iter().map(|p| p.1).collect();
    let un_o: HashSet<&str> = (0..ow.len())
        .filter(|i| !matched_o.contains(i))
        .map(|i| ok[i])
        .collect();
    let moved: BTreeSet<&str> = (0..nw.len())
        .filter(|j| !matched_n.contains(j))
        .map(|j| nk[j])
        .filter(|k| un_o.contains(k))
        .collect();
    for key in &moved {
        let Some(n) = nw.iter().find(|i| i.key() == *key) else {
            continue;
        };
        let pos = ok.iter().position(|k| k == key).unwrap_or(0);
        let before = pos.checked_sub(1).map(|p| ok[p]);
        let after = ok.get(pos + 1).copied();
        let frozen = match (before, after) {
            (Some(b), Some(a)) => format!("between `{b}` and `{a}`"),
            (Some(b), None) => format!("after `{b}`"),
            (None, Some(a)) => format!("before `{a}`"),
            (None, None) => "alone".to_owned(),
        };
        sink.push(
            &rules::field_order_changed::RULE,
            dir,
            key,
            format!(
                "field `{key}`{} is at a different position than in the frozen baseline, where \
                 it comes {frozen}",
                in_sub(cx)
            ),
            Some(n.at()),
            format!("restore the frozen order: declare `{key}` {frozen} again"),
        );
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
        if !og.is_empty() || !ng.is_empty() {
            // Removed fields point at the field that now takes their place (or precedes it).
            let anchor = nw
                .get(pj)
                .or_else(|| pj.checked_sub(1).and_then(|p| nw.get(p)))
                .map_or(cx.container, |i| i.at());
            compare_gap(
                sink,
                &og,
                &ng,
                old,
                new,
                v,
                dir,
                ListCx {
                    container: anchor,
                    ..cx
                },
            );
        }
        if pi < ow.len() && pj < nw.len() {
            compare_pair(sink, ow[pi], nw[pj], v, dir, cx);
        }
        i = pi + 1;
        j = pj + 1;
    }
    compare_subsections(sink, old, new, v, dir, cx);
}

fn in_sub(cx: ListCx<'_>) -> String {
    cx.sub
        .map(|s| format!(" (subsection `{s}`)"))
        .unwrap_or_default()
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
fn equivalent(a: &[&Item], b: &[&Item], v: u32) -> bool {
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

fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// Fields between two aligned ones that exist on one side only.
#[allow(clippy::too_many_arguments)]
fn compare_gap(
    sink: &mut Sink<'_>,
    og: &[&Item],
    ng: &[&Item],
    old: &[Item],
    new: &[Item],
    v: u32,
    dir: Direction,
    cx: ListCx<'_>,
) {
    if equivalent(og, ng, v) {
        return;
    }
    let pad = |items: &[&Item]| -> u64 {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Field(f) if f.kind == "unused" => f.size,
                _ => None,
            })
            .sum()
    };
    let new_pad = pad(ng);
    for o in og {
        let key = o.key();
        let shape = o.shape();
        if let Some(n) = find_in(new, key) {
            // Still declared, no longer on the wire here.
            let why = if n.cond().since() > v {
                format!("`since = {}` is above version {v}", n.cond().since())
            } else {
                match n.when() {
                    Some(w) => format!("its gate `{w}` excludes them"),
                    None => "it is excluded".to_owned(),
                }
            };
            let fix = match (o.when(), n.when()) {
                (Some(ow), nw) if nw != Some(ow) => format!(
                    "restore the gate `{key}` was frozen with for these machine types: \
                     `when = {ow}`"
                ),
                (_, Some(w)) if n.cond().since() <= v => format!(
                    "keep `{key}` on the wire for these machine types: \
                     `when = any(machine < \"{NEXT}\", {w})`"
                ),
                (_, _) => format!(
                    "keep `{key}` on the wire for these machine types: lower its `since` to {v} \
                     or pin them to a version that has it"
                ),
            };
            sink.push(
                &rules::field_no_longer_migrated::RULE,
                dir,
                key,
                format!(
                    "field `{key}` ({shape}){} is still declared but no longer on the wire for \
                     these machine types ({why}); the frozen baseline has it there",
                    in_sub(cx)
                ),
                Some(n.at()),
                fix,
            );
            continue;
        }
        let size = o.fixed_size();
        let mut message = format!(
            "field `{key}` ({shape}){} is no longer declared; the release that froze these \
             machine types sends and expects it here (declared at {} when frozen)",
            in_sub(cx),
            o.at()
        );
        if new_pad > 0 {
            message.push_str(&format!(
                "; the padding in its place is {}, which does not match",
                bytes(new_pad)
            ));
        }
        let fix = match (size, o) {
            (Some(n), Item::Field(f)) if f.kind != "unused" => format!(
                "keep the bytes: declare `_removed_{}: Unused<{n}>` where `{key}` was, or keep the \
                 field for these machine types with `#[vmstate(when = machine < \"{NEXT}\", \
                 default)]`",
                f.rust_name()
            ),
            (Some(n), _) => format!("restore {} of padding (`Unused<{n}>`) here", bytes(n)),
            (None, _) => format!(
                "keep `{key}` for these machine types with `#[vmstate(when = machine < \
                 \"{NEXT}\", default)]`"
            ),
        };
        sink.push(
            &rules::field_removed_without_padding::RULE,
            dir,
            key,
            message,
            Some(cx.container),
            fix,
        );
    }
    for n in ng {
        if let Item::Field(f) = n {
            if f.kind == "unused" && !og.is_empty() {
                continue; // reported with the fields it fails to replace
            }
        }
        let key = n.key();
        let was = match find_in(old, key) {
            Some(_) => "the frozen baseline kept it off the wire for these machine types",
            None => "the frozen baseline never had it",
        };
        let rust = match n {
            Item::Field(f) => f.rust_name().to_owned(),
            Item::Array(a) => a.rust.clone().unwrap_or_else(|| a.path.clone()),
            Item::Subsection(s) => s.name.clone(),
        };
        let gate = gate_with_next(n.when());
        let mut fix = format!(
            "gate `{rust}` with `#[vmstate(when = {gate}, default)]`, or move it into a \
             subsection gated `when = machine >= \"{NEXT}\"`"
        );
        if cx.top
            && cx.sub.is_none()
            && (!key.contains('.') || matches!(n, Item::Field(f) if f.rust.is_some()))
        {
            let cur = cx.dev.accepts.max;
            fix.push_str(&format!(
                ", or bump the version to {} with `since = {}` on `{rust}` and \
                 `pin(below = \"{NEXT}\", version = {cur})`",
                cur + 1,
                cur + 1
            ));
        }
        sink.push(
            &rules::field_leaks_into_old_machine::RULE,
            dir,
            key,
            format!(
                "field `{key}` ({}){} is {} for these machine types, but {was}",
                n.shape(),
                in_sub(cx),
                presence_text(n.cond().presence_at(v), n.when())
            ),
            Some(n.at()),
            fix,
        );
    }
}

/// Two aligned items with the same path.
fn compare_pair(sink: &mut Sink<'_>, o: &Item, n: &Item, v: u32, dir: Direction, cx: ListCx<'_>) {
    let key = n.key();
    let frozen_kind = format!(
        "keep `{key}` as {} on the wire (convert in `pre_save`/`post_load`) and send the new \
         form as a new field or subsection gated `when = machine >= \"{NEXT}\"`",
        o.shape()
    );
    match (o, n) {
        (Item::Field(of), Item::Field(nf)) => {
            compare_fields(sink, of, nf, dir, cx, &frozen_kind);
        }
        (Item::Array(oa), Item::Array(na)) => {
            if oa.len != na.len || oa.count != na.count {
                sink.push(
                    &rules::array_length_changed::RULE,
                    dir,
                    key,
                    format!(
                        "array `{key}`{} changed from {} to {}",
                        in_sub(cx),
                        o.shape(),
                        n.shape()
                    ),
                    Some(n.at()),
                    array_fix(key, o),
                );
            } else if oa.max != na.max {
                max_changed(sink, key, oa.max, na.max, dir, n.at(), cx);
            } else {
                let inner = ListCx {
                    container: &na.at,
                    top: false,
                    ..cx
                };
                compare_lists(sink, &oa.items, &na.items, u32::MAX, dir, inner);
            }
        }
        _ => {
            sink.push(
                &rules::field_kind_changed::RULE,
                dir,
                key,
                format!(
                    "field `{key}`{} changed from {} to {}",
                    in_sub(cx),
                    o.shape(),
                    n.shape()
                ),
                Some(n.at()),
                frozen_kind,
            );
            return;
        }
    }
    let (op, np) = (o.cond().presence_at(v), n.cond().presence_at(v));
    if op != np {
        let fix = if np == Presence::Maybe {
            format!(
                "keep `{key}` unconditional for these machine types: `when = any(machine < \
                 \"{NEXT}\", {})`",
                n.when().unwrap_or("...")
            )
        } else {
            format!(
                "restore the frozen gate `{}` of `{key}` for these machine types",
                o.when().unwrap_or("...")
            )
        };
        sink.push(
            &rules::presence_changed_maybe::RULE,
            Direction::Both,
            key,
            format!(
                "field `{key}`{} was {} and is now {}; the receiver decides with its own gate, so \
                 both sides must agree",
                in_sub(cx),
                presence_text(op, o.when()),
                presence_text(np, n.when())
            ),
            Some(n.at()),
            fix,
        );
    }
}

fn array_fix(key: &str, o: &Item) -> String {
    format!(
        "keep `{key}` as {} on the wire for these machine types; migrate extra elements in a \
         separate field or subsection gated `when = machine >= \"{NEXT}\"`",
        o.shape()
    )
}

fn max_changed(
    sink: &mut Sink<'_>,
    key: &str,
    om: Option<u32>,
    nm: Option<u32>,
    dir: Direction,
    at: &Loc,
    cx: ListCx<'_>,
) {
    let (o, n) = (om.unwrap_or(0), nm.unwrap_or(0));
    // A larger maximum breaks new → old, a smaller one old → new.
    let breaks = if n > o {
        Direction::NewToOld
    } else {
        Direction::OldToNew
    };
    if dir != breaks {
        return;
    }
    sink.push(
        &rules::array_length_changed::RULE,
        dir,
        key,
        format!(
            "variable array `{key}`{} changed its maximum from {o} to {n}",
            in_sub(cx)
        ),
        Some(at),
        format!("restore `max = {o}` on `{key}`"),
    );
}

fn compare_fields(
    sink: &mut Sink<'_>,
    o: &FieldItem,
    n: &FieldItem,
    dir: Direction,
    cx: ListCx<'_>,
    frozen_kind: &str,
) {
    let key = &n.path;
    let change = |what: &str| {
        format!(
            "{what} `{key}`{} changed from {} to {}",
            in_sub(cx),
            o.shape(),
            n.shape()
        )
    };
    if o.kind == "unused" || n.kind == "unused" {
        if o.size != n.size || o.size.is_none() {
            sink.push(
                &rules::field_size_changed::RULE,
                dir,
                key,
                change("field"),
                Some(&n.at),
                format!("make it {} again", o.size.map_or_else(|| o.shape(), bytes)),
            );
        }
        return;
    }
    if o.len != n.len || o.count != n.count {
        sink.push(
            &rules::array_length_changed::RULE,
            dir,
            key,
            change("array"),
            Some(&n.at),
            array_fix(key, &Item::Field(o.clone())),
        );
    } else if o.max != n.max {
        max_changed(sink, key, o.max, n.max, dir, &n.at, cx);
    } else if o.kind != n.kind && o.size == n.size {
        sink.push(
            &rules::field_kind_changed::RULE,
            dir,
            key,
            change("field"),
            Some(&n.at),
            frozen_kind.to_owned(),
        );
    } else if o.size != n.size || o.kind != n.kind {
        sink.push(
            &rules::field_size_changed::RULE,
            dir,
            key,
            change("field"),
            Some(&n.at),
            frozen_kind.to_owned(),
        );
    }
}

fn compare_subsections(
    sink: &mut Sink<'_>,
    old: &[Item],
    new: &[Item],
    v: u32,
    dir: Direction,
    cx: ListCx<'_>,
) {
    let subs = |items: &'_ [Item]| -> Vec<SubItem> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Subsection(s) if s.presence_at(v) != Presence::Never => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    if dir == Direction::NewToOld {
        for ns in subs(new) {
            let os = find_sub(old, &ns.name);
            let sent = presence_text(ns.presence_at(v), ns.when.as_deref());
            let fix = format!(
                "gate subsection `{}` with `when = {}`",
                ns.name,
                gate_with_next(ns.when.as_deref())
            );
            match os {
                None => {
                    sink.push(
                        &rules::subsection_leaks_into_old_machine::RULE,
                        dir,
                        &ns.name,
                        format!(
                            "subsection `{}` (version {}) is {sent} for these machine types; the \
                             release that froze them does not declare it, and fails the load on \
                             an unknown subsection",
                            ns.name, ns.version
                        ),
                        Some(&ns.at),
                        fix,
                    );
                }
                Some(os) if os.presence_at(v) == Presence::Never => {
                    sink.push(
                        &rules::subsection_leaks_into_old_machine::RULE,
                        dir,
                        &ns.name,
                        format!(
                            "subsection `{}` (version {}) is {sent} for these machine types; the \
                             frozen baseline never sent it for them",
                            ns.name, ns.version
                        ),
                        Some(&ns.at),
                        fix,
                    );
                }
                Some(os) if ns.version > os.version => {
                    sink.push(
                        &rules::subsection_version_bumped::RULE,
                        dir,
                        &ns.name,
                        format!(
                            "subsection `{}` is now sent at version {}; the release that froze \
                             these machine types accepts at most version {}",
                            ns.name, ns.version, os.version
                        ),
                        Some(&ns.at),
                        format!(
                            "keep `{}` at version {} and put the new state into a new subsection \
                             gated `when = machine >= \"{NEXT}\"`",
                            ns.name, os.version
                        ),
                    );
                }
                Some(os) if ns.version < os.min_version => {
                    sink.push(
                        &rules::version_no_longer_accepted::RULE,
                        dir,
                        &ns.name,
                        format!(
                            "subsection `{}` is now sent at version {}, below the minimum \
                             version {} of the release that froze these machine types",
                            ns.name, ns.version, os.min_version
                        ),
                        Some(&ns.at),
                        format!("send `{}` at version {} again", ns.name, os.version),
                    );
                }
                Some(os) => {
                    let inner = ListCx {
                        container: &ns.at,
                        sub: Some(&ns.name),
                        top: false,
                        ..cx
                    };
                    compare_lists(sink, &os.items, &ns.items, ns.version, dir, inner);
                }
            }
        }
    } else {
        for os in subs(old) {
            match find_sub(new, &os.name) {
                None => sink.push(
                    &rules::subsection_no_longer_understood::RULE,
                    dir,
                    &os.name,
                    format!(
                        "subsection `{}` (version {}), which the release that froze these \
                         machine types {}, is no longer declared; loading fails on an unknown \
                         subsection",
                        os.name,
                        os.version,
                        match os.presence_at(v) {
                            Presence::Always => "always sends".to_owned(),
                            _ => match &os.when {
                                Some(w) => format!("sends when `{w}` holds"),
                                None => "may send".to_owned(),
                            },
                        }
                    ),
                    Some(cx.container),
                    format!(
                        "keep declaring subsection `{}` (version {}) so old streams load; gate \
                         it `when = machine < \"{NEXT}\"` to stop sending it",
                        os.name, os.version
                    ),
                ),
                Some(ns) if os.version > ns.version || os.version < ns.min_version => sink.push(
                    &rules::version_no_longer_accepted::RULE,
                    dir,
                    &os.name,
                    format!(
                        "the release that froze these machine types sends subsection `{}` at \
                         version {}, but it now accepts only versions {}..={}",
                        os.name, os.version, ns.min_version, ns.version
                    ),
                    Some(&ns.at),
                    format!(
                        "accept version {} of `{}` again (`minimum_version = {}`)",
                        os.version,
                        os.name,
                        os.version.min(ns.min_version)
                    ),
                ),
                Some(ns) => {
                    let inner = ListCx {
                        container: &ns.at,
                        sub: Some(&ns.name),
                        top: false,
                        ..cx
                    };
                    compare_lists(sink, &os.items, &ns.items, os.version, dir, inner);
                }
            }
        }
    }
}

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

fn merge(raw: Vec<Raw>, catalog: &BTreeSet<MachineVersion>, config: &Config) -> Vec<Finding> {
    type Key = (&'static str, String, String, String, Option<Loc>, String);
    // 1. Per machine: the same finding in both directions becomes `Both`.
    let mut per_machine: BTreeMap<(Key, String), (BTreeSet<Direction>, &'static Rule)> =
        BTreeMap::new();
    for r in raw {
        let key = (r.rule.id, r.device, r.path, r.message, r.location, r.fix);
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
        let (_, device, path, message, location, mut fix) = key;
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
            device,
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
    fn lcs_aligns() {
        assert_eq!(
            lcs(&["a", "b", "c"], &["a", "x", "c"]),
            vec![(0, 0), (2, 2)]
        );
        assert_eq!(lcs(&[], &["a"]), vec![]);
    }

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

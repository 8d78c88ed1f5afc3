//! What differs between two baselines of one machine type: the lines `freeze` prints when it
//! refuses to replace a baseline.
//!
//! A baseline records the wire layout only (no source locations), so every difference listed
//! here is a difference in what the machine type sends or accepts, or in how the layout
//! describes it (a gate's text, a Rust name). Sections and compat properties are matched by
//! name and items by path; attributes are compared one by one, so a line says exactly what
//! changed: ``section `uart`: field `fifo_level` added (u8, 1 byte; always sent)``,
//! ``section `wdt`: version 2 → 3``.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::check::step::presence_text;
use crate::layout::{Baseline, DeviceLayout, Item};

/// The differences from `old` (the file) to `new` (what the current code would freeze), one
/// line each; empty when both record the same layout.
#[must_use]
pub fn diff(old: &Baseline, new: &Baseline) -> Vec<String> {
    let mut out = Vec::new();
    diff_compat(&old.compat, &new.compat, &mut out);
    let olds: BTreeMap<&str, &DeviceLayout> =
        old.devices.iter().map(|d| (d.name.as_str(), d)).collect();
    let news: BTreeMap<&str, &DeviceLayout> =
        new.devices.iter().map(|d| (d.name.as_str(), d)).collect();
    let names: BTreeSet<&str> = olds.keys().chain(news.keys()).copied().collect();
    for name in names {
        match (olds.get(name), news.get(name)) {
            (Some(o), None) => out.push(format!(
                "section `{name}`: no longer declared (was version {}, {})",
                o.version,
                presence_text(o.presence, o.when.as_deref())
            )),
            (None, Some(n)) => out.push(format!(
                "section `{name}`: new (version {}, {})",
                n.version,
                presence_text(n.presence, n.when.as_deref())
            )),
            (Some(o), Some(n)) => {
                let head = format!("section `{name}`");
                diff_attrs(&head, &to_value(*o), &to_value(*n), &mut out);
                diff_items(&head, &o.items, &n.items, &mut out);
            }
            (None, None) => {}
        }
    }
    out
}

fn diff_compat(old: &BTreeMap<String, bool>, new: &BTreeMap<String, bool>, out: &mut Vec<String>) {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        match (old.get(k), new.get(k)) {
            (Some(a), Some(b)) if a != b => {
                out.push(format!("compat property `{k}`: {a} → {b}"));
            }
            (Some(a), None) => out.push(format!(
                "compat property `{k}`: no longer set for this machine type (was {a})"
            )),
            (None, Some(b)) => out.push(format!(
                "compat property `{k}`: now set to {b} for this machine type"
            )),
            _ => {}
        }
    }
}

/// The JSON object of a layout element without its nested `items`.
fn to_value<T: serde::Serialize>(x: &T) -> Value {
    let mut v = serde_json::to_value(x).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("items");
    }
    v
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// One line per attribute whose value differs, `head: key old → new`.
fn diff_attrs(head: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    let (Value::Object(o), Value::Object(n)) = (old, new) else {
        return;
    };
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a != b {
            out.push(format!("{head}: {k} {} → {}", show(a), show(b)));
        }
    }
}

fn what(i: &Item) -> &'static str {
    match i {
        Item::Field(_) => "field",
        Item::Array(_) => "array",
        Item::Subsection(_) => "subsection",
    }
}

fn described(i: &Item) -> String {
    let c = i.cond();
    let mut s = format!("{} `{}` ({}", what(i), i.key(), i.shape());
    if c.since() > 0 {
        s.push_str(&format!(", since version {}", c.since()));
    }
    s.push_str(&format!("; {})", presence_text(c.presence(), i.when())));
    s
}

fn inner(i: &Item) -> &[Item] {
    match i {
        Item::Field(_) => &[],
        Item::Array(a) => &a.items,
        Item::Subsection(s) => &s.items,
    }
}

fn value_of(i: &Item) -> Value {
    match i {
        Item::Field(f) => to_value(f),
        Item::Array(a) => to_value(a),
        Item::Subsection(s) => to_value(s),
    }
}

/// Items matched by key: removed, added, changed attributes, then (recursively) their own
/// items, and a change of order among the items in both.
fn diff_items(head: &str, old: &[Item], new: &[Item], out: &mut Vec<String>) {
    let find = |list: &'_ [Item], k: &str| list.iter().position(|i| i.key() == k);
    for o in old {
        if find(new, o.key()).is_none() {
            out.push(format!("{head}: {} removed", described(o)));
        }
    }
    for n in new {
        if find(old, n.key()).is_none() {
            out.push(format!("{head}: {} added", described(n)));
        }
    }
    for o in old {
        let Some(j) = find(new, o.key()) else {
            continue;
        };
        let n = &new[j];
        let item_head = format!("{head}: {} `{}`", what(n), n.key());
        if what(o) == what(n) {
            diff_attrs(&item_head, &value_of(o), &value_of(n), out);
        } else {
            out.push(format!(
                "{item_head}: was {} `{}` ({})",
                what(o),
                o.key(),
                o.shape()
            ));
        }
        diff_items(head, inner(o), inner(n), out);
    }
    let common_old: Vec<&str> = old
        .iter()
        .map(Item::key)
        .filter(|k| find(new, k).is_some())
        .collect();
    let common_new: Vec<&str> = new
        .iter()
        .map(Item::key)
        .filter(|k| find(old, k).is_some())
        .collect();
    if common_old != common_new {
        out.push(format!(
            "{head}: order changed: {} → {}",
            common_old.join(", "),
            common_new.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Export;

    fn sample() -> Export {
        crate::schema::sample_export()
    }

    #[test]
    fn same_layout_has_no_difference() {
        let e = sample();
        let b = crate::eval::freeze(&e, "pc-i440fx-7.2").unwrap();
        assert!(diff(&b, &b).is_empty());
    }

    #[test]
    fn names_what_changed() {
        let e = sample();
        let old = crate::eval::freeze(&e, "pc-i440fx-4.2").unwrap();
        let mut new = crate::eval::freeze(&e, "pc-i440fx-7.2").unwrap();
        new.header.machine = old.header.machine.clone();
        let lines = diff(&old, &new);
        let text = lines.join("\n");
        assert!(text.contains("section `demo-wdt`: version 2 → 3"), "{text}");
        assert!(
            text.contains("section `demo-wdt`: field `deadline`: presence never → always"),
            "{text}"
        );
        assert!(
            text.contains(
                "section `demo-wdt`: subsection `demo-wdt/stats`: presence never → always"
            ),
            "{text}"
        );
        assert!(
            text.contains("compat property `demo-wdt.x-migrate-stats`"),
            "{text}"
        );
        // Items of one side only.
        let mut fewer = old.clone();
        let wdt = fewer
            .devices
            .iter_mut()
            .find(|d| d.name == "demo-wdt")
            .unwrap();
        let gone = wdt.items.remove(0);
        let text = diff(&old, &fewer).join("\n");
        assert_eq!(
            text,
            format!("section `demo-wdt`: {} removed", described(&gone))
        );
        let text = diff(&fewer, &old).join("\n");
        assert_eq!(
            text,
            format!("section `demo-wdt`: {} added", described(&gone))
        );
    }
}

//! Evaluates the current code's schemas for one machine type: the exact wire layout each
//! device sends and the versions it accepts.
//!
//! Per device: the section version (pins: the lowest matching `below` wins), the accepted range
//! `[min_version, version]`, and every item in wire order. Nested structs are inlined (their
//! fields get the path prefix `field.`; their subsections appear right after their fields, as
//! on the wire); arrays of nested structs keep one element layout plus the length. Gates, pins
//! and versions are evaluated by the runtime's own code ([`GateCtx::presence`],
//! [`StructSchema::version_for`]): with the machine type's version and the compat properties
//! its catalog applies to the device (driver = section name), falling back to the property's
//! declared default.

use std::collections::BTreeMap;

use vmstate_runtime::machine::MachineType;
use vmstate_runtime::schema::{FieldSchema, Gate, Kind, StructSchema};
use vmstate_runtime::GateCtx;

use crate::error::Error;
use crate::layout::{
    Accepts, ArrayItem, Baseline, DeviceLayout, FieldItem, Header, Item, Loc, Presence, SubItem,
    FORMAT,
};
use crate::schema::{CrateExport, Export};

/// Tool name and version written into baselines.
pub const TOOL: &str = concat!("compat-checker ", env!("CARGO_PKG_VERSION"));

/// What the current code sends and accepts for `machine`: the content of a new baseline.
///
/// # Errors
/// [`Error::UnknownMachine`] when no crate's catalog has the machine type.
pub fn freeze(export: &Export, machine: &str) -> Result<Baseline, Error> {
    let Some(devices) = evaluate(export, machine) else {
        return Err(Error::UnknownMachine {
            name: machine.to_owned(),
            known: export.machine_names(),
        });
    };
    let mut compat = BTreeMap::new();
    for c in &export.crates {
        if let Ok(m) = c.catalog.resolve(machine) {
            for (d, p, v) in m.compat_entries() {
                compat.insert(format!("{d}.{p}"), v);
            }
        }
    }
    Ok(Baseline {
        header: Header {
            format: FORMAT,
            tool: TOOL.to_owned(),
            machine: machine.to_owned(),
            note: format!(
                "Frozen by `cargo compat-check freeze {machine}`: the exact wire layout every \
                 device sends for {machine} and the versions it accepts. `cargo compat-check` \
                 fails when the code no longer matches it. Do not edit by hand."
            ),
        },
        compat,
        devices: devices.into_iter().map(without_locations).collect(),
    })
}

/// A baseline records the wire, not where the code was: every location goes.
fn without_locations(mut d: DeviceLayout) -> DeviceLayout {
    fn items(list: &mut [Item]) {
        for i in list {
            match i {
                Item::Field(f) => f.at = None,
                Item::Array(a) => {
                    a.at = None;
                    items(&mut a.items);
                }
                Item::Subsection(s) => {
                    s.at = None;
                    items(&mut s.items);
                }
            }
        }
    }
    d.at = None;
    d.pinned_at = None;
    items(&mut d.items);
    d
}

/// The layout of every device for `machine`, sorted by section name; `None` when no crate's
/// catalog knows the machine type. Devices of crates whose catalog lacks it are left out.
#[must_use]
pub fn evaluate(export: &Export, machine: &str) -> Option<Vec<DeviceLayout>> {
    let mut known = false;
    let mut out = Vec::new();
    for c in &export.crates {
        let Ok(m) = c.catalog.resolve(machine) else {
            continue;
        };
        known = true;
        for d in c.devices.iter().filter(|d| !d.nested) {
            out.push(device_layout(c, d, &m));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    known.then_some(out)
}

/// The layout of one top-level device for machine type `m`.
#[must_use]
pub fn device_layout(c: &CrateExport, s: &StructSchema, m: &MachineType) -> DeviceLayout {
    let cx = GateCtx::new(m, &s.name);
    let version = s.version_for(m.version());
    let pin = s.pin_for(m.version());
    let mut items = Vec::new();
    let top = Inherit {
        since: 0,
        gate: Presence::Always,
        version,
    };
    expand_struct(&cx, s, "", top, &mut items);
    DeviceLayout {
        name: s.name.to_string(),
        rust_name: s.rust_name.to_string(),
        krate: if s.krate.is_empty() {
            c.krate.clone()
        } else {
            Some(s.krate.to_string())
        },
        at: Some(Loc::from(&s.location)),
        priority: s.priority,
        presence: cx.presence(s.gate.as_deref(), s),
        when: gate_text(s.gate.as_deref()),
        version,
        pinned_at: pin.map(|p| Loc::from(&p.location)),
        accepts: Accepts {
            min: s.min_version,
            max: s.version,
        },
        items,
    }
}

/// A gate as written (`None`: ungated).
fn gate_text(g: Option<&Gate>) -> Option<String> {
    g.map(ToString::to_string)
}

/// What an enclosing field passes down to the items of an inlined nested struct.
#[derive(Clone, Copy)]
struct Inherit {
    /// `since` of the enclosing field (relative to the enclosing list's container version).
    since: u32,
    /// Presence of the enclosing field's gate.
    gate: Presence,
    /// Version of the container the list belongs to (what `since` compares with).
    version: u32,
}

/// (`since`, `presence`, `presence_from_since`) of an item.
fn cond(inh: Inherit, own_since: u32, own_gate: Presence) -> (u32, Presence, Option<Presence>) {
    let since = inh.since.max(own_since);
    let gate = inh.gate.and(own_gate);
    if since > inh.version {
        (
            since,
            Presence::Never,
            (gate != Presence::Never).then_some(gate),
        )
    } else {
        (since, gate, None)
    }
}

/// Appends the fields of `s` (then its subsections) to `out`.
fn expand_struct(
    cx: &GateCtx<'_>,
    s: &StructSchema,
    prefix: &str,
    inh: Inherit,
    out: &mut Vec<Item>,
) {
    expand_fields(cx, s, &s.fields, prefix, inh, out);
    for sub in s.subsections.iter() {
        let (since, presence, from) = cond(inh, 0, cx.presence(sub.gate.as_deref(), s));
        let mut items = Vec::new();
        let inner = Inherit {
            since: 0,
            gate: Presence::Always,
            version: sub.version,
        };
        expand_fields(cx, s, &sub.fields, prefix, inner, &mut items);
        out.push(Item::Subsection(SubItem {
            name: sub.name.to_string(),
            version: sub.version,
            min_version: sub.min_version,
            since,
            presence,
            presence_from_since: from,
            when: gate_text(sub.gate.as_deref()),
            at: Some(Loc::from(&sub.location)),
            items,
        }));
    }
}

/// Element kind and total count of (possibly nested) fixed arrays.
fn flatten_array(k: &Kind) -> (&Kind, Option<u32>) {
    let mut k = k;
    let mut n: Option<u32> = None;
    while let Kind::Array { elem, len } = k {
        n = Some(n.unwrap_or(1).saturating_mul(*len));
        k = &**elem;
    }
    (k, n)
}

fn expand_fields(
    cx: &GateCtx<'_>,
    s: &StructSchema,
    fields: &[FieldSchema],
    prefix: &str,
    inh: Inherit,
    out: &mut Vec<Item>,
) {
    for f in fields {
        let leaf = &*f.vmdesc_name;
        let path = format!("{prefix}{leaf}");
        let rust = (f.rust_name != leaf).then(|| f.rust_name.to_string());
        let gate = cx.presence(f.gate.as_deref(), s);
        let (since, presence, from) = cond(inh, f.since, gate);
        let when = gate_text(f.gate.as_deref());
        let at = Some(Loc::from(&f.location));
        // A custom codec (`with = module`) is compared by the layout its description declares.
        let kind = match &*f.kind {
            Kind::Custom { layout, .. } => &**layout,
            other => other,
        };
        let (elem, len) = flatten_array(kind);
        // An array of pointers: each element is the pointee or a one-byte NULL marker, so the
        // field has no fixed size and its kind says so.
        let (elem, pointer) = match elem {
            Kind::Pointer { elem } => (&**elem, true),
            other => (other, false),
        };
        let (elem, count, max) = match elem {
            Kind::VArray {
                elem,
                count_field,
                max,
                multiply,
                local,
            } => (
                &**elem,
                Some(counted(prefix, count_field, *multiply, *local)),
                Some(*max),
            ),
            other => (other, None, None),
        };
        match elem {
            // A nested struct, inline: held at an explicit version (`vstruct = N`), or at its
            // own version (as QEMU loads a nested vmsd). Its fields of versions up to that one
            // are present whenever the field is (their `since` is about that version, not the
            // section's); the others are never on the wire.
            Kind::VStruct { schema, .. } | Kind::Struct { schema }
                if len.is_none() && count.is_none() =>
            {
                let version = match elem {
                    Kind::VStruct { version, .. } => *version,
                    _ => schema.version,
                };
                let mut at_version = (**schema).clone();
                let fields: Vec<_> = schema
                    .fields
                    .iter()
                    .filter(|f| f.since <= version)
                    .map(|f| FieldSchema {
                        since: 0,
                        ..f.clone()
                    })
                    .collect();
                at_version.fields = fields.into();
                let inner = Inherit {
                    since,
                    gate: inh.gate.and(gate),
                    version: inh.version,
                };
                expand_struct(cx, &at_version, &format!("{path}."), inner, out);
            }
            // An array of structs, a list or a tree: a variable number of elements, each laid out
            // like a nested struct at its own version (a tree node as `key` then `value`).
            Kind::Struct { .. } | Kind::List { .. } | Kind::Tree { .. } | Kind::Tmp { .. } => {
                let (element, max, items) = match elem {
                    // A temporary view (`Tmp<V>`, QEMU's VMSTATE_WITH_TMP): one view struct at
                    // its own version, reported at the marker field.
                    Kind::Tmp { view } => {
                        let mut items = Vec::new();
                        let element = match &**view {
                            Kind::Struct { schema } => {
                                let inner = Inherit {
                                    since: 0,
                                    gate: Presence::Always,
                                    version: schema.version,
                                };
                                expand_struct(cx, schema, &format!("{path}."), inner, &mut items);
                                format!("tmp view {}", schema.name)
                            }
                            other => other.vmdesc_type().to_owned(),
                        };
                        (element, max, items)
                    }
                    Kind::Struct { schema } => {
                        let mut items = Vec::new();
                        let inner = Inherit {
                            since: 0,
                            gate: Presence::Always,
                            version: schema.version,
                        };
                        expand_struct(cx, schema, &format!("{path}[*]."), inner, &mut items);
                        let element = if pointer {
                            format!("{} pointer", schema.name)
                        } else {
                            schema.name.to_string()
                        };
                        (element, max, items)
                    }
                    _ => {
                        let (element, max, items) = expand_elements(cx, elem, &path, inh.version);
                        (element, Some(max), items)
                    }
                };
                out.push(Item::Array(ArrayItem {
                    path,
                    rust,
                    element,
                    len,
                    count,
                    max,
                    since,
                    presence,
                    presence_from_since: from,
                    when,
                    at,
                    items,
                }));
            }
            Kind::Bitmap { bits_field, max } => out.push(Item::Field(FieldItem {
                path,
                rust,
                kind: "bitmap".to_owned(),
                len,
                count: Some(format!("{prefix}{bits_field} bits")),
                max: Some(*max),
                size: None,
                since,
                presence,
                presence_from_since: from,
                when,
                at,
            })),
            Kind::VBuffer {
                len_field,
                max,
                multiply,
                local,
            } => out.push(Item::Field(FieldItem {
                path,
                rust,
                kind: "buffer".to_owned(),
                len,
                count: Some(counted(prefix, len_field, *multiply, *local)),
                max: Some(*max),
                size: None,
                since,
                presence,
                presence_from_since: from,
                when,
                at,
            })),
            prim => {
                let codec = prim.codec();
                let mut kind = codec.unwrap_or("unknown").to_owned();
                if pointer {
                    kind.push_str(" pointer");
                }
                let size = if count.is_some() || pointer {
                    None
                } else {
                    // Bytes of one primitive value, times the flattened array length.
                    codec
                        .and(prim.fixed_size())
                        .and_then(|e| e.checked_mul(u64::from(len.unwrap_or(1))))
                };
                out.push(Item::Field(FieldItem {
                    path,
                    rust,
                    kind,
                    len,
                    count,
                    max,
                    size,
                    since,
                    presence,
                    presence_from_since: from,
                    when,
                    at,
                }));
            }
        }
    }
}

/// Expands the elements of a list or tree field `path` (a tree node as `key` then `value`);
/// returns the element text, the declared maximum and the element items.
fn expand_elements(
    cx: &GateCtx<'_>,
    elem: &Kind,
    path: &str,
    version: u32,
) -> (String, u32, Vec<Item>) {
    let mut items = Vec::new();
    let elem_inh = Inherit {
        since: 0,
        gate: Presence::Always,
        version,
    };
    let nested = |k: &Kind, prefix: &str, items: &mut Vec<Item>| {
        if let Kind::Struct { schema } = k {
            let inner = Inherit {
                version: schema.version,
                ..elem_inh
            };
            expand_struct(cx, schema, prefix, inner, items);
        }
    };
    let name = |k: &Kind| match k {
        Kind::Struct { schema } => schema.name.to_string(),
        other => other.vmdesc_type().to_owned(),
    };
    match elem {
        Kind::List {
            elem: e,
            max,
            qlist,
            ..
        } => {
            nested(e, &format!("{path}[*]."), &mut items);
            let form = if *qlist { "qlist" } else { "qtailq" };
            (format!("{form} of {} ≤ {max}", name(e)), *max, items)
        }
        Kind::Tree {
            key, value, max, ..
        } => {
            let key_name = match key {
                Some(k) => {
                    nested(k, &format!("{path}[*].key."), &mut items);
                    name(k)
                }
                None => {
                    items.push(Item::Field(FieldItem {
                        path: format!("{path}[*].key"),
                        rust: None,
                        kind: "u64".to_owned(),
                        len: None,
                        count: None,
                        max: None,
                        size: Some(8),
                        since: 0,
                        presence: Presence::Always,
                        presence_from_since: None,
                        when: None,
                        at: None,
                    }));
                    "direct key".to_owned()
                }
            };
            nested(value, &format!("{path}[*].value."), &mut items);
            (
                format!("gtree of {key_name} → {} ≤ {max}", name(value)),
                *max,
                items,
            )
        }
        _ => (String::new(), 0, items),
    }
}

/// A count field's text, with its multiplier when there is one (`n × 4`).
/// The count text of a variable array or buffer: the count field's path (times the
/// multiplier); a local count (not from the stream) is marked `local`.
fn counted(prefix: &str, field: &str, multiply: u32, local: bool) -> String {
    let c = multiplied(&format!("{prefix}{field}"), multiply);
    if local {
        format!("local {c}")
    } else {
        c
    }
}

fn multiplied(count: &str, multiply: u32) -> String {
    if multiply == 1 {
        count.to_owned()
    } else {
        format!("{count} × {multiply}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Export {
        crate::schema::sample_export()
    }

    fn field<'a>(d: &'a DeviceLayout, key: &str) -> &'a FieldItem {
        match d.find(key) {
            Some(Item::Field(f)) => f,
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn pins_and_since() {
        let e = sample();
        let old = freeze(&e, "pc-i440fx-4.2").unwrap();
        let wdt = old.devices.iter().find(|d| d.name == "demo-wdt").unwrap();
        assert_eq!(wdt.version, 2);
        // A baseline holds no location; the current layout knows the pin's.
        assert!(wdt.pinned_at.is_none() && wdt.at.is_none());
        let cur = evaluate(&e, "pc-i440fx-4.2").unwrap();
        let cur_wdt = cur.iter().find(|d| d.name == "demo-wdt").unwrap();
        assert!(cur_wdt.pinned_at.is_some() && cur_wdt.at.is_some());
        let deadline = field(wdt, "deadline");
        assert_eq!(deadline.presence, Presence::Never);
        assert_eq!(deadline.presence_from_since, Some(Presence::Always));
        assert_eq!(field(wdt, "expirations").presence, Presence::Always);
        // machine >= 6.0 gate
        assert_eq!(field(wdt, "pretimeout").presence, Presence::Never);
        // any(not(machine >= 6.0), pred) on 4.2 → always
        assert_eq!(field(wdt, "counter").presence, Presence::Always);
        // prop x-migrate-stats is off up to 6.2
        let Some(Item::Subsection(stats)) = wdt.find("demo-wdt/stats") else {
            panic!()
        };
        assert_eq!(stats.presence, Presence::Never);

        let new = freeze(&e, "pc-i440fx-7.2").unwrap();
        let wdt = new.devices.iter().find(|d| d.name == "demo-wdt").unwrap();
        assert_eq!(wdt.version, 3);
        assert_eq!(field(wdt, "counter").presence, Presence::Maybe);
        assert_eq!(field(wdt, "deadline").presence, Presence::Always);
        let Some(Item::Subsection(stats)) = wdt.find("demo-wdt/stats") else {
            panic!()
        };
        assert_eq!(stats.presence, Presence::Always);
        let kick_log = field(wdt, "kick_log");
        assert_eq!(kick_log.count.as_deref(), Some("kick_log_len"));
        assert_eq!(kick_log.size, None);
    }

    #[test]
    fn nested_and_arrays() {
        let e = sample();
        let b = freeze(&e, "pc-i440fx-7.2").unwrap();
        let serial = b.devices.iter().find(|d| d.name == "serial").unwrap();
        assert_eq!(field(serial, "state.divider").size, Some(2));
        // nested struct's subsection is inline, with the nested prefix on its fields
        assert!(matches!(
            serial.find("serial/recv_fifo"),
            Some(Item::Subsection(s)) if s.presence == Presence::Maybe
        ));
        assert_eq!(field(serial, "state.recv_fifo.data").size, Some(16));
        let pit = b.devices.iter().find(|d| d.name == "i8254").unwrap();
        let Some(Item::Array(ch)) = pit.find("channels") else {
            panic!()
        };
        assert_eq!(ch.len, Some(3));
        assert_eq!(field(pit, "channels[*].mode").size, Some(1));
        assert_eq!(Item::Array(ch.clone()).fixed_size(), Some(3 * 32));
        let rtc = b.devices.iter().find(|d| d.name == "mc146818rtc").unwrap();
        assert_eq!(field(rtc, "unused[1]").kind, "unused");
        assert_eq!(field(rtc, "unused[1]").rust.as_deref(), Some("_removed_v2"));
    }

    #[test]
    fn unknown_machine() {
        let e = sample();
        assert!(matches!(
            freeze(&e, "pc-i440fx-9.9"),
            Err(Error::UnknownMachine { .. })
        ));
    }

    #[test]
    fn baseline_round_trips() {
        let e = sample();
        for m in ["pc-i440fx-2.3", "pc-q35-7.2"] {
            let b = freeze(&e, m).unwrap();
            let text = b.to_pretty_json();
            assert_eq!(Baseline::parse(&text, m).unwrap(), b);
        }
    }
}

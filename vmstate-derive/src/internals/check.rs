//! Cross-cutting rules. Each function is one rule, with the reason for it. All of them run, so
//! several mistakes are reported at once.
//!
//! One mistake gives one error. A key that failed to parse (reported in `attr.rs`) leaves its
//! slot empty, and the field, the struct's settings or the declaration it belonged to is marked
//! as having errors; a rule whose verdict depends on such a slot skips it instead of reporting
//! what the empty slot implies (a misspelt `since` must not also give "`default` is never
//! used"). The same holds for a field naming an undeclared subsection.

use syn::{Type, TypeArray};

use super::ast::{Container, Style};
use super::attr::Gate;
use super::ctxt::Ctxt;
use super::suggest::did_you_mean;
use super::symbol::{
    BUFFER, COUNT, DEFAULT, KEEP, LIST, LOCAL_COUNT, MAX, MINIMUM_VERSION, NAME, SINCE, SKIP,
    SUBSECTION, TREE, VERSION, WHEN,
};

pub fn check(cx: &Ctxt, c: &Container) {
    check_versions(cx, c);
    check_since(cx, c);
    check_nested(cx, c);
    check_defaults(cx, c);
    check_skip_conflicts(cx, c);
    check_counts(cx, c);
    check_u16_hack(cx, c);
    check_lists_and_trees(cx, c);
    check_subsections(cx, c);
    check_props(cx, c);
    check_pins(cx, c);
    check_field_types(cx, c);
    check_value_checks(cx, c);
    check_tmp(cx, c);
    check_with(cx, c);
    check_bitmaps_and_multipliers(cx, c);
    check_vstruct(cx, c);
}

/// `vstruct = N` holds a nested struct at version N: it is a struct field, so the other kinds
/// and codecs do not apply.
fn check_vstruct(cx: &Ctxt, c: &Container) {
    for f in c.fields.iter().filter(|f| !f.skipped()) {
        let Some(v) = &f.attrs.vstruct else { continue };
        let a = &f.attrs;
        for (name, t) in [
            ("buffer", a.buffer.as_ref().map(|s| &s.tokens)),
            ("count", a.count.as_ref().map(|s| &s.tokens)),
            ("local_count", a.local_count.as_ref().map(|s| &s.tokens)),
            ("list", a.list.as_ref().map(|s| &s.tokens)),
            ("tree", a.tree.as_ref().map(|s| &s.tokens)),
            ("with", a.with.as_ref().map(|s| &s.tokens)),
            ("bitmap", a.bitmap.as_ref().map(|s| &s.tokens)),
            ("vmdesc_type", a.vmdesc_type.as_ref().map(|s| &s.tokens)),
        ] {
            if let Some(t) = t {
                cx.error_spanned_by(t, format!("`{name}` cannot be combined with `vstruct`: the field is a nested struct held at version {}", v.value));
            }
        }
    }
}

/// A bitmap's bit count is an earlier migrated field (as a variable array's count) and it has a
/// declared maximum number of bits; it is its own kind. A multiplier scales a count, so it
/// needs one.
fn check_bitmaps_and_multipliers(cx: &Ctxt, c: &Container) {
    for (i, f) in c.fields.iter().enumerate().filter(|(_, f)| !f.skipped()) {
        if let Some(m) = &f.attrs.multiply {
            if f.attrs.count.is_none()
                && f.attrs.local_count.is_none()
                && !f.unsure(&[COUNT, LOCAL_COUNT])
            {
                cx.error_spanned_by(&m.tokens, "`multiply` scales a count: add `count = <earlier field>` (QEMU's VMS_MULTIPLY: a variable buffer or array of count × multiply)");
            }
        }
        let Some(b) = &f.attrs.bitmap else { continue };
        let a = &f.attrs;
        for (name, t) in [
            ("buffer", a.buffer.as_ref().map(|s| &s.tokens)),
            ("count", a.count.as_ref().map(|s| &s.tokens)),
            ("local_count", a.local_count.as_ref().map(|s| &s.tokens)),
            ("multiply", a.multiply.as_ref().map(|s| &s.tokens)),
            ("list", a.list.as_ref().map(|s| &s.tokens)),
            ("tree", a.tree.as_ref().map(|s| &s.tokens)),
            ("with", a.with.as_ref().map(|s| &s.tokens)),
        ] {
            if let Some(t) = t {
                cx.error_spanned_by(t, format!("`{name}` cannot be combined with `bitmap`: a bitmap is its own kind (be64 words of its bit count)"));
            }
        }
        if a.max.is_none() && !f.unsure(&[MAX]) {
            cx.error_spanned_by(&b.tokens, format!("bitmap `{}` needs a declared maximum number of bits: add `max = N` (the loader refuses more)", f.ident));
        }
        let bits = &b.value;
        match c.fields.iter().position(|g| g.ident == bits) {
            None => cx.error_spanned_by(&b.tokens, format!("bit count field `{bits}` does not exist in this struct")),
            Some(j) if j >= i => cx.error_spanned_by(&b.tokens, format!("bit count field `{bits}` must be declared before `{}`: the loader reads the count first", f.ident)),
            Some(j) if c.fields[j].skipped() => cx.error_spanned_by(&b.tokens, format!("bit count field `{bits}` is `skip`ped, so the destination would not know it; migrate it")),
            Some(_) => {}
        }
    }
}

/// The attributes that choose a field's codec, layout or load check: a field with its own codec
/// (`with = module`, `u16_hack`) takes none of them.
const CODEC_ATTRS: &[&str] = &[
    "buffer",
    "count",
    "local_count",
    "max",
    "list",
    "tree",
    "equal",
    "range",
    "le",
    "vmdesc_type",
];

/// Reports each of the attributes `names` that `a` has, with `why(name)` at its tokens.
fn refuse_attrs(cx: &Ctxt, a: &super::attr::Field, names: &[&str], why: impl Fn(&str) -> String) {
    let given = [
        ("buffer", a.buffer.as_ref().map(|s| &s.tokens)),
        ("count", a.count.as_ref().map(|s| &s.tokens)),
        ("local_count", a.local_count.as_ref().map(|s| &s.tokens)),
        ("max", a.max.as_ref().map(|s| &s.tokens)),
        ("list", a.list.as_ref().map(|s| &s.tokens)),
        ("tree", a.tree.as_ref().map(|s| &s.tokens)),
        ("equal", a.equal.as_ref().map(|s| &s.tokens)),
        ("range", a.range.as_ref().map(|s| &s.tokens)),
        ("le", a.le.as_ref().map(|s| &s.tokens)),
        ("vmdesc_type", a.vmdesc_type.as_ref().map(|s| &s.tokens)),
    ];
    for (name, t) in given {
        if let (true, Some(t)) = (names.contains(&name), t) {
            cx.error_spanned_by(t, why(name));
        }
    }
}

/// A custom codec (`with = module`) writes and describes the field itself: the attributes that
/// choose another codec, layout or load check do not apply (a check belongs in its `load`).
fn check_with(cx: &Ctxt, c: &Container) {
    for f in c
        .fields
        .iter()
        .filter(|f| !f.skipped() && f.attrs.with.is_some())
    {
        refuse_attrs(cx, &f.attrs, CODEC_ATTRS, |name| {
            format!("`{name}` cannot be combined with `with`: the codec module writes, checks and describes the field (its `DESCRIPTION` names the vmdesc type)")
        });
        if last_ident_is(f.ty, &["Tmp"]) {
            cx.error_spanned_by(
                f.ty,
                "a `Tmp<V>` field is laid out as its view; it cannot have a codec module",
            );
        }
    }
}

/// A `Tmp<V>` field is a temporary view (QEMU's `VMSTATE_WITH_TMP`): its layout is the view's,
/// so the attributes that choose another layout or codec do not apply.
fn check_tmp(cx: &Ctxt, c: &Container) {
    for f in c
        .fields
        .iter()
        .filter(|f| !f.skipped() && matches!(f.style, Style::Tmp))
    {
        refuse_attrs(
            cx,
            &f.attrs,
            &[
                "buffer",
                "count",
                "local_count",
                "max",
                "list",
                "tree",
                "vmdesc_type",
            ],
            |name| {
                format!("`{name}` does not apply to a `Tmp<V>` field: it is laid out as its view `V` (QEMU's VMSTATE_WITH_TMP)")
            },
        );
    }
}

/// `minimum_version ≤ version`: otherwise no stream could ever be loaded.
fn check_versions(cx: &Ctxt, c: &Container) {
    if c.attrs.failed.any(&[VERSION, MINIMUM_VERSION]) {
        return;
    }
    if let Some(m) = &c.attrs.min_version {
        if m.value > c.version {
            cx.error_spanned_by(
                &m.tokens,
                format!(
                    "minimum_version {} is greater than version {}",
                    m.value, c.version
                ),
            );
        }
    }
}

/// `since ≤ version` of the vmsd the field belongs to (the struct, or its subsection): a field
/// newer than the version written would never be sent.
fn check_since(cx: &Ctxt, c: &Container) {
    for f in c
        .fields
        .iter()
        .filter(|f| !f.skipped() && !f.unsure(&[SINCE, SUBSECTION]))
    {
        let Some(s) = &f.attrs.since else { continue };
        if c.nested && f.sub.is_none() && c.min_version == c.version {
            // `check_nested` explains it for a struct that is always loaded at its version.
            continue;
        }
        let (limit, what, settings_ok) = match f.sub {
            Some(i) => (
                c.attrs.subsections[i].version,
                format!("subsection `{}`", c.attrs.subsections[i].name.value()),
                !c.attrs.subsections[i].had_errors,
            ),
            None => (
                c.version,
                format!("`{}`", c.name),
                !c.attrs.failed.any(&[VERSION]),
            ),
        };
        if s.value.0 > limit && settings_ok {
            cx.error_spanned_by(
                &s.tokens,
                format!(
                    "since = {} is greater than the version {limit} of {what}; raise `version` or lower `since`",
                    s.value.0
                ),
            );
        }
        if s.value.0 == 0 {
            cx.error_spanned_by(&s.tokens, "since = 0 has no effect; remove it");
        }
    }
}

/// Nested structs are saved and loaded at their own current version (QEMU's nested-struct
/// semantics): per-field `since` there would never take effect, and section-level settings have
/// no section to apply to.
fn check_nested(cx: &Ctxt, c: &Container) {
    if !c.nested {
        return;
    }
    // A nested struct that accepts older versions (`minimum_version < version`) can be held at
    // an explicit version by its parent (`vstruct = N`, QEMU's VMSTATE_VSTRUCT), where `since`
    // takes effect.
    // Otherwise the struct is always loaded at its own version: `since = N` with N up to it is
    // QEMU's `_V(field, N)` that never matters (kept for the schema, see `Field::noop_since`);
    // above it the field would never be sent.
    let versioned = c.min_version < c.version;
    for f in c
        .fields
        .iter()
        .filter(|f| f.sub.is_none() && !versioned && !f.noop_since)
    {
        if let Some(s) = &f.attrs.since {
            cx.error_spanned_by(
                &s.tokens,
                format!(
                    "since = {} is above version {}, the version this nested struct is always saved and loaded at (QEMU loads nested structs at their own version, never the stream's), so the field would never be sent; `since` up to {} is allowed and has no effect (QEMU's `_V(field, N)`); to gate the field use `when = ...` or a subsection, or declare `minimum_version` below `version` so a parent can hold it at an explicit version with `vstruct = N`",
                    s.value.0, c.version, c.version
                ),
            );
        }
    }
    if let Some(p) = &c.attrs.priority {
        cx.error_spanned_by(
            &p.tokens,
            "`priority` applies to sections; a nested struct has none",
        );
    }
    if let Some(w) = &c.attrs.when {
        cx.error_spanned_by(&w.tokens, "a section gate (`when` on the struct) applies to sections; a nested struct has none; gate the field that holds it instead");
    }
    for p in &c.attrs.pins {
        cx.error_spanned_by(
            &p.tokens,
            "`pin` applies to sections; a nested struct is always saved at its own version",
        );
    }
}

/// Every field that is not always present needs a declared value for when it is absent, and a
/// `default` on an always-present field is a mistake (it would never be used).
fn check_defaults(cx: &Ctxt, c: &Container) {
    let presence = [SINCE, WHEN, SUBSECTION, DEFAULT, KEEP, SKIP];
    for f in c
        .fields
        .iter()
        .filter(|f| !f.skipped() && !f.unsure(&presence))
    {
        if f.conditional() && f.attrs.default.is_none() {
            let why = if let Some(s) = &f.attrs.since {
                format!("since = {}", s.value.0)
            } else if f.attrs.when.is_some() {
                "it has a `when` gate".to_owned()
            } else {
                "it is in a subsection".to_owned()
            };
            cx.error_spanned_by(
                f.ident,
                format!(
                    "field `{}` is not always present ({why}); add `default`, `default = <expr>` or `keep` for streams without it",
                    f.ident
                ),
            );
        }
        if !f.conditional() {
            if let Some(d) = &f.attrs.default {
                cx.error_spanned_by(
                    &d.tokens,
                    format!(
                        "`default` is never used: field `{}` is always present",
                        f.ident
                    ),
                );
            }
        }
    }
}

/// `skip` means "not migrated": any other attribute on the field would be ignored.
fn check_skip_conflicts(cx: &Ctxt, c: &Container) {
    for f in c.fields.iter().filter(|f| f.skipped()) {
        let a = &f.attrs;
        let others = [
            ("since", a.since.as_ref().map(|s| &s.tokens)),
            ("when", a.when.as_ref().map(|s| &s.tokens)),
            ("default` or `keep", a.default.as_ref().map(|s| &s.tokens)),
            ("rename", a.rename.as_ref().map(|s| &s.tokens)),
            ("buffer", a.buffer.as_ref().map(|s| &s.tokens)),
            ("count", a.count.as_ref().map(|s| &s.tokens)),
            ("local_count", a.local_count.as_ref().map(|s| &s.tokens)),
            ("u16_hack", a.u16_hack.as_ref().map(|s| &s.tokens)),
            ("max", a.max.as_ref().map(|s| &s.tokens)),
            ("equal", a.equal.as_ref().map(|s| &s.tokens)),
            ("range", a.range.as_ref().map(|s| &s.tokens)),
            ("subsection", a.subsection.as_ref().map(|s| &s.tokens)),
            ("list", a.list.as_ref().map(|s| &s.tokens)),
            ("tree", a.tree.as_ref().map(|s| &s.tokens)),
            ("le", a.le.as_ref().map(|s| &s.tokens)),
            ("vmdesc_type", a.vmdesc_type.as_ref().map(|s| &s.tokens)),
            ("with", a.with.as_ref().map(|s| &s.tokens)),
            ("multiply", a.multiply.as_ref().map(|s| &s.tokens)),
            ("bitmap", a.bitmap.as_ref().map(|s| &s.tokens)),
        ];
        for (name, t) in others {
            if let Some(t) = t {
                cx.error_spanned_by(
                    t,
                    format!(
                        "`skip` cannot be combined with `{name}`: a skipped field is not migrated"
                    ),
                );
            }
        }
    }
    for f in c.fields.iter().filter(|f| !f.skipped()) {
        if let (Some(e), Some(b)) = (&f.attrs.equal, &f.attrs.buffer) {
            let _ = b;
            cx.error_spanned_by(&e.tokens, "`equal` cannot be combined with `buffer`");
        }
    }
}

/// A variable array's count must be declared with a maximum, and must be a migrated field that
/// comes earlier on the wire: QEMU does not repeat the count, the loader reads it first and
/// checks it against the maximum before any element (CVE-2013-4527 class).
///
/// A local count (`local_count = f`) is the destination's own value of `f`: configuration
/// QEMU does not migrate (a FIFO's capacity, the DIMM slots). So `f` must not be loaded before
/// the array: either not sent at all (`skip`), or sent after it with `equal` (the stream must
/// then agree, as QEMU's `ports` of AHCI). It is still bounded by the declared maximum.
fn check_counts(cx: &Ctxt, c: &Container) {
    for (i, f) in c
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.skipped() && !f.unsure(&[COUNT, LOCAL_COUNT, MAX, BUFFER, LIST, TREE]))
        .filter(|(_, f)| {
            f.attrs.list.is_none()
                && f.attrs.tree.is_none()
                && f.attrs.with.is_none()
                && f.attrs.bitmap.is_none()
        })
    {
        if let (Some(cnt), Some(l)) = (&f.attrs.count, &f.attrs.local_count) {
            let _ = cnt;
            cx.error_spanned_by(&l.tokens, "`local_count` cannot be combined with `count`: the count is either read from the stream (`count`) or the destination's own (`local_count`)");
            continue;
        }
        let declared = f.attrs.count.as_ref().or(f.attrs.local_count.as_ref());
        match (declared, &f.attrs.max) {
            (Some(cnt), None) => cx.error_spanned_by(
                &cnt.tokens,
                format!(
                    "variable array `{}` needs a declared maximum: add `max = N`",
                    f.ident
                ),
            ),
            (None, Some(m)) => cx.error_spanned_by(
                &m.tokens,
                "`max` applies to variable arrays; add `count = <earlier field>`",
            ),
            _ => {}
        }
        let (count, local) = match &f.style {
            Style::VArray { count, local, .. } => (count, *local),
            Style::VBuffer { len, local, .. } => (len, *local),
            _ => continue,
        };
        let tokens = &declared.expect("count set").tokens;
        let Some(j) = c.fields.iter().position(|g| g.ident == count) else {
            cx.error_spanned_by(
                tokens,
                format!("count field `{count}` does not exist in this struct"),
            );
            continue;
        };
        let g = &c.fields[j];
        if local {
            if g.skipped() {
                continue;
            }
            if g.attrs.equal.is_some() && j > i && g.sub == f.sub {
                continue;
            }
            let why = if g.attrs.equal.is_some() {
                format!(
                    "it is sent before `{}`, so the stream's value is known: use `count = {count}`",
                    f.ident
                )
            } else if j < i && (g.sub.is_none() || g.sub == f.sub) {
                format!("it is migrated before `{}`, so the stream's value is the count: use `count = {count}`", f.ident)
            } else {
                "it is migrated, so loading it would change the count after the array was read; mark it `skip`, or `equal` if the stream sends it after the array".to_owned()
            };
            cx.error_spanned_by(
                tokens,
                format!("local count field `{count}` must be the destination's own value (a `skip` field, or an `equal` field sent after `{}` in the same vmsd): {why}", f.ident),
            );
            continue;
        }
        if j >= i {
            cx.error_spanned_by(
                tokens,
                format!("count field `{count}` must be declared before `{}`: the loader reads the count first", f.ident),
            );
        } else if g.skipped() {
            cx.error_spanned_by(tokens, format!("count field `{count}` is `skip`ped, so the destination would not know it; migrate it, or use `local_count = {count}` if the count is the destination's own configuration"));
        } else if g.sub.is_some() && g.sub != f.sub {
            cx.error_spanned_by(tokens, format!("count field `{count}` is in another subsection, so it is not on the wire before `{}`", f.ident));
        }
    }
}

/// `u16_hack` is QEMU's `VMSTATE_UINT16_HACK`: a `uint32_t` sent as be16. It applies to a plain
/// `u32` field only, and is its own codec.
fn check_u16_hack(cx: &Ctxt, c: &Container) {
    for f in c.fields.iter().filter(|f| !f.skipped()) {
        let Some(h) = &f.attrs.u16_hack else { continue };
        if !last_ident_is(f.ty, &["u32"]) || matches!(f.ty, Type::Array(_)) {
            cx.error_spanned_by(&h.tokens, "`u16_hack` applies to `u32` fields: it is QEMU's VMSTATE_UINT16_HACK, a `uint32_t` sent as be16");
            continue;
        }
        refuse_attrs(cx, &f.attrs, CODEC_ATTRS, |name| {
            format!("`{name}` cannot be combined with `u16_hack`: the field is a `u32` sent as be16, its own codec")
        });
        if let Some(w) = &f.attrs.with {
            cx.error_spanned_by(
                &w.tokens,
                "`with` cannot be combined with `u16_hack`: choose one codec",
            );
        }
    }
}

/// A list (QTAILQ/QLIST) or tree (GTREE) has no count on the wire that a local field could
/// bound, so it must declare `max`: the loader stops at the element after the `max`-th (a tree
/// checks its node count first). Each is its own kind: no `count`, `buffer`, or both at once.
/// The container type must be the one the kind reads into.
fn check_lists_and_trees(cx: &Ctxt, c: &Container) {
    for f in c
        .fields
        .iter()
        .filter(|f| !f.skipped() && !f.unsure(&[LIST, TREE, MAX]) && f.attrs.with.is_none())
    {
        let (what, tokens) = match (&f.attrs.list, &f.attrs.tree) {
            (Some(l), Some(t)) => {
                let _ = l;
                cx.error_spanned_by(&t.tokens, "`list` and `tree` cannot be combined: a field is either a QTAILQ/QLIST or a GTREE");
                continue;
            }
            (Some(l), None) => ("list", &l.tokens),
            (None, Some(t)) => ("tree", &t.tokens),
            (None, None) => continue,
        };
        if f.attrs.max.is_none() {
            cx.error_spanned_by(
                tokens,
                format!("`{what}` `{}` needs a declared maximum number of elements: add `max = N` (the loader refuses more)", f.ident),
            );
        }
        if let Some(cnt) = &f.attrs.local_count {
            cx.error_spanned_by(&cnt.tokens, format!("`local_count` cannot be combined with `{what}`: a {what} has no count field (its elements are marked on the wire)"));
        }
        if let Some(cnt) = &f.attrs.count {
            cx.error_spanned_by(&cnt.tokens, format!("`count` cannot be combined with `{what}`: a {what} has no count field (its elements are marked on the wire)"));
        }
        if let Some(b) = &f.attrs.buffer {
            cx.error_spanned_by(
                &b.tokens,
                format!("`buffer` cannot be combined with `{what}`"),
            );
        }
        let ok = if what == "list" {
            last_ident_is(f.ty, &["Vec", "VecDeque"])
        } else {
            last_ident_is(f.ty, &["BTreeMap"])
        };
        if !ok {
            let expected = if what == "list" {
                "`list` expects a `Vec<T>` or `VecDeque<T>` of a `#[vmstate(nested)]` struct"
            } else {
                "`tree` expects a `BTreeMap<K, V>`: `K` an unsigned integer (QEMU's direct key, be64 on the wire) or a `#[vmstate(nested)]` struct, `V` a `#[vmstate(nested)]` struct"
            };
            cx.error_spanned_by(f.ty, expected);
        }
    }
}

fn last_ident_is(ty: &Type, names: &[&str]) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| names.iter().any(|n| s.ident == n)),
        Type::Paren(p) => last_ident_is(&p.elem, names),
        Type::Group(g) => last_ident_is(&g.elem, names),
        _ => false,
    }
}

/// Subsection names follow QEMU's loader rule (they must start with the parent's name and be
/// longer; `<parent>/<child>` is the convention, and QEMU has exceptions such as
/// `pckbd_outport`), are unique, have fields, and every field names a declared subsection.
fn check_subsections(cx: &Ctxt, c: &Container) {
    let prefix = c.name.clone();
    // A misspelt `name` key leaves the default name, which every prefix would then contradict.
    let name_known = !c.attrs.failed.any(&[NAME]);
    // A field whose `subsection` key failed may be the one meant for an empty subsection.
    let fields_known = !c.fields.iter().any(|f| f.unsure(&[SUBSECTION]));
    for (i, s) in c.attrs.subsections.iter().enumerate() {
        let n = s.name.value();
        if n.is_empty() {
            continue;
        }
        if name_known && (!n.starts_with(&prefix) || n.len() == prefix.len()) {
            cx.error_spanned_by(
                &s.name,
                format!("subsection name `{n}` must start with `{prefix}` (the struct's name), by convention `{prefix}/<name>`: QEMU's loader hands subsections without the parent's prefix back to the caller"),
            );
        }
        if n.len() > 255 {
            cx.error_spanned_by(&s.name, "subsection name is longer than 255 bytes");
        }
        let duplicate = c.attrs.subsections[..i].iter().any(|o| o.name.value() == n);
        if duplicate {
            cx.error_spanned_by(&s.name, format!("duplicate subsection `{n}`"));
        }
        if let Some((m, lit)) = &s.min_version {
            if *m > s.version && !s.had_errors {
                cx.error_spanned_by(
                    lit,
                    format!(
                        "minimum_version {m} is greater than the subsection's version {}",
                        s.version
                    ),
                );
            }
        }
        // A duplicate's fields are the first declaration's: "no fields" would repeat the
        // duplicate error. A field naming an undeclared subsection may have meant this one.
        if !duplicate && fields_known && !c.fields.iter().any(|f| !f.skipped() && f.sub == Some(i))
        {
            cx.error_spanned_by(&s.name, format!("subsection `{n}` has no fields; mark fields with `#[vmstate(subsection = \"{n}\")]`"));
        }
    }
    // A declaration that failed to parse may be the one the field names.
    if c.attrs.subsection_errors {
        return;
    }
    let declared: Vec<String> = c.attrs.subsections.iter().map(|s| s.name.value()).collect();
    for f in c.fields.iter().filter(|f| !f.skipped() && f.undeclared_sub) {
        let Some(s) = &f.attrs.subsection else {
            continue;
        };
        let n = s.value.value();
        let declare =
            format!("declare it on the struct with `#[vmstate(subsection(name = \"{n}\", ...))]`");
        let message = match did_you_mean(&n, declared.iter().map(String::as_str)) {
            Some(hint) => format!("unknown subsection `{n}`{hint} Otherwise {declare}"),
            None => format!("unknown subsection `{n}`; {declare}"),
        };
        cx.error_spanned_by(&s.tokens, message);
    }
}

fn gates<'c>(c: &'c Container<'_>) -> Vec<&'c Gate> {
    let mut out = Vec::new();
    if let Some(w) = &c.attrs.when {
        out.push(&w.value);
    }
    for s in &c.attrs.subsections {
        if let Some(w) = &s.when {
            out.push(w);
        }
    }
    for f in &c.fields {
        if let Some(w) = &f.attrs.when {
            out.push(&w.value);
        }
    }
    out
}

/// A `prop("…")` gate can only be evaluated per machine type if the property is declared with
/// its default; property names are unique.
fn check_props(cx: &Ctxt, c: &Container) {
    for (i, p) in c.attrs.props.iter().enumerate() {
        if !p.name.value().is_empty()
            && c.attrs.props[..i]
                .iter()
                .any(|o| o.name.value() == p.name.value())
        {
            cx.error_spanned_by(&p.name, format!("duplicate property `{}`", p.name.value()));
        }
    }
    // A declaration that failed to parse may be the one the gate reads.
    if c.attrs.prop_errors {
        return;
    }
    let declared: Vec<String> = c.attrs.props.iter().map(|p| p.name.value()).collect();
    for g in gates(c) {
        let mut used = Vec::new();
        g.props(&mut used);
        for lit in used {
            let n = lit.value();
            if n.is_empty() || declared.contains(&n) {
                continue;
            }
            let hint = did_you_mean(&n, declared.iter().map(String::as_str))
                .map_or_else(String::new, |h| format!("{h} Otherwise"));
            cx.error_spanned_by(
                &lit,
                format!(
                    "gate cannot be evaluated: compat property `{n}` is not declared{hint}; add `#[vmstate(prop(name = \"{n}\", default = true))]` to the struct"
                ),
            );
        }
    }
}

/// A pinned version must be one this code can write and still load: at least
/// `minimum_version` and below `version`; one pin per machine boundary.
fn check_pins(cx: &Ctxt, c: &Container) {
    // On a nested struct every pin is already an error (`check_nested`); a version that failed
    // to parse leaves nothing to compare with.
    if c.nested || c.attrs.failed.any(&[VERSION, MINIMUM_VERSION]) {
        return;
    }
    for (i, p) in c.attrs.pins.iter().enumerate() {
        if p.had_errors {
            continue;
        }
        let Some(lit) = &p.version_lit else { continue };
        if p.version >= c.version {
            cx.error_spanned_by(
                lit,
                format!(
                    "pinned version {} must be lower than the current version {}",
                    p.version, c.version
                ),
            );
        } else if p.version < c.min_version {
            cx.error_spanned_by(lit, format!("pinned version {} is below minimum_version {}: this code could not load its own stream", p.version, c.min_version));
        }
        if c.attrs.pins[..i].iter().any(|o| o.below == p.below) {
            cx.error_spanned_by(
                &p.tokens,
                format!(
                    "duplicate pin for machine types below {}.{}",
                    p.below.0, p.below.1
                ),
            );
        }
    }
}

fn unsupported(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => {
            let last = p.path.segments.last()?;
            let id = last.ident.to_string();
            let hint = match id.as_str() {
                "f32" => "QEMU has no codec for a 32-bit float; migrate its bits as u32 (`f64` is QEMU's CPU_DoubleU)",
                "usize" | "isize" => "its width depends on the host; use a fixed-width integer",
                "char" => "use u32",
                "String" | "str" => "strings have no VMState codec; use a fixed byte buffer",
                "Option" => "absence is expressed with `since`/`when` gates and defaults; `Option` is only a field type as the element of a fixed array (`[Option<T>; N]`, QEMU's VMSTATE_ARRAY_OF_POINTER, where `None` is a NULL pointer)",
                "VecDeque" => "a VecDeque is a QTAILQ/QLIST: add `list, max = N`",
                "BTreeMap" => "a BTreeMap is a GTREE: add `tree, max = N`",
                "Box" | "Rc" | "Arc" | "Cell" | "RefCell" | "Mutex" | "HashMap" => "keep the migrated state in plain fields",
                "Vec" => "a Vec is a variable array (`count = <earlier field>, max = N`) or a QTAILQ/QLIST (`list, max = N`)",
                _ => return None,
            };
            Some(format!("unsupported field type `{id}`: {hint}"))
        }
        Type::Array(TypeArray { elem, .. }) => match option_arg(elem) {
            Some(inner) => unsupported_pointee(inner),
            None => unsupported(elem),
        },
        Type::Reference(_) | Type::Ptr(_) => Some("unsupported field type: references and pointers cannot be migrated; store the state by value".to_owned()),
        Type::Tuple(_) => Some("unsupported field type: tuples have no VMState layout; use a nested struct with #[vmstate(nested)]".to_owned()),
        Type::Slice(_) => Some("unsupported field type: slices have no fixed size; use an array or a Vec with `count`".to_owned()),
        Type::Paren(p) => unsupported(&p.elem),
        Type::Group(g) => unsupported(&g.elem),
        _ => None,
    }
}

/// `T` of `Option<T>`.
fn option_arg(ty: &Type) -> Option<&Type> {
    generic_arg(ty, "Option")
}

/// The single type argument of `Name<T>`.
fn generic_arg<'t>(ty: &'t Type, name: &str) -> Option<&'t Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(a) = &last.arguments else {
        return None;
    };
    match a.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// What an element of an array of pointers (`[Option<T>; N]`) may point to: a field type, boxed
/// or not, but not another pointer or an array (QEMU's NULL marker replaces one element).
fn unsupported_pointee(ty: &Type) -> Option<String> {
    let ty = generic_arg(ty, "Box").unwrap_or(ty);
    if option_arg(ty).is_some() {
        return Some("unsupported field type: `Option<Option<T>>`; an element of an array of pointers is NULL (`None`) or one element (`Some`)".to_owned());
    }
    if matches!(ty, Type::Array(_)) {
        return Some("unsupported field type: an array of pointers points to single elements, not arrays; use a nested struct with #[vmstate(nested)]".to_owned());
    }
    unsupported(ty)
}

fn is_vec(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Vec"))
}

/// Field types must have a VMState codec; the common mistakes get a specific message here
/// (anything else fails later with "`T` cannot be a vmstate field").
fn check_field_types(cx: &Ctxt, c: &Container) {
    for f in c.fields.iter().filter(|f| !f.skipped()) {
        // Lists and trees: `check_lists_and_trees` checks the container, the compiler the
        // element types (`NestedState`, `TreeKey`).
        if f.attrs.list.is_some() || f.attrs.tree.is_some() || f.unsure(&[LIST, TREE]) {
            continue;
        }
        // A codec module takes any type (`f64`, a device-specific struct, ...); a bitmap's
        // words are checked by the compiler (`BitmapWords`).
        if f.attrs.with.is_some() || f.attrs.bitmap.is_some() {
            continue;
        }
        let variable = matches!(f.style, Style::VArray { .. } | Style::VBuffer { .. });
        if variable && is_vec(f.ty) {
            if let Type::Path(p) = f.ty {
                if let Some(syn::PathArguments::AngleBracketed(a)) =
                    p.path.segments.last().map(|s| &s.arguments)
                {
                    if let Some(syn::GenericArgument::Type(t)) = a.args.first() {
                        if let Some(msg) = unsupported(t) {
                            cx.error_spanned_by(t, msg);
                        }
                    }
                }
            }
            continue;
        }
        // With a failed key the style may be wrong: a Vec whose `count` failed to parse is not
        // "missing `count`", and a `buffer` whose `count` failed is not "not an array".
        if f.unsure(&[COUNT, LOCAL_COUNT, MAX, BUFFER])
            && (is_vec(f.ty) || f.attrs.buffer.is_some())
        {
            continue;
        }
        if let Some(msg) = unsupported(f.ty) {
            cx.error_spanned_by(f.ty, msg);
        }
        if matches!(f.style, Style::Buffer) && !matches!(f.ty, Type::Array(_)) {
            cx.error_spanned_by(
                f.ty,
                "`buffer` expects a byte array `[u8; N]` (or a Vec<u8> with `count` and `max`)",
            );
        }
    }
}

/// `equal` and `range` compare integers. `le` is QEMU's `vmstate_info_int32_le`, which exists
/// for `int32_t` only (`VMSTATE_INT32_POSITIVE_LE`), and cannot also demand equality. A
/// `vmdesc_type` describes one field as one entry of its own codec; a list's or tree's
/// description carries its elements, so it cannot be renamed.
fn check_value_checks(cx: &Ctxt, c: &Container) {
    // `check_with` reports these on a field with a codec module.
    // `check_u16_hack` reports them on a `u16_hack` field.
    for f in c
        .fields
        .iter()
        .filter(|f| !f.skipped() && f.attrs.with.is_none() && f.attrs.u16_hack.is_none())
    {
        if let Some(l) = &f.attrs.le {
            if !matches!(f.style, Style::Plain) || !last_ident_is(f.ty, &["i32"]) {
                cx.error_spanned_by(&l.tokens, "`le` applies to `i32` fields: it is QEMU's VMSTATE_INT32_POSITIVE_LE (vmstate_info_int32_le), the only codec bounded by the destination's value");
            } else if let Some(e) = &f.attrs.equal {
                cx.error_spanned_by(
                    &e.tokens,
                    "`equal` cannot be combined with `le`: choose one load check",
                );
            }
        }
        if let Some(t) = &f.attrs.vmdesc_type {
            if f.attrs.list.is_some() || f.attrs.tree.is_some() {
                cx.error_spanned_by(&t.tokens, "`vmdesc_type` cannot be combined with `list` or `tree`: their vmdesc entry describes the elements inline");
            } else if f.attrs.le.is_some() || f.attrs.equal.is_some() {
                cx.error_spanned_by(&t.tokens, "`vmdesc_type` cannot be combined with `le` or `equal`: their check already names the vmdesc type (`int32 le`, `uint32 equal`, ...)");
            }
        }
        let non_int =
            matches!(f.ty, Type::Array(_) | Type::Tuple(_)) || !matches!(f.style, Style::Plain);
        if non_int {
            if let Some(e) = &f.attrs.equal {
                cx.error_spanned_by(&e.tokens, "`equal` applies to integer and bool fields");
            }
            if let Some(r) = &f.attrs.range {
                cx.error_spanned_by(&r.tokens, "`range` applies to integer fields");
            }
        }
    }
}

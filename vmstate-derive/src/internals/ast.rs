//! The checked intermediate representation: parsed attributes next to the `syn` nodes they came
//! from, so every stage can point at real source.

use syn::{Ident, Type};

use super::attr;
use super::ctxt::Ctxt;
use super::symbol::{Symbol, SUBSECTION};

/// How a field goes on the wire.
pub enum Style {
    /// Through its `Field` impl (ints, bool, Timer, Unused, fixed arrays, nested structs).
    Plain,
    /// `#[vmstate(buffer)]` on `[u8; N]`.
    Buffer,
    /// `count = f, max = N` (`multiply = K`): a variable array.
    /// `local_count = f, max = N`: the same, counted by the destination's own value of `f`.
    VArray {
        count: Ident,
        max: u32,
        multiply: u32,
        local: bool,
    },
    /// `buffer, count = f, max = N` (`multiply = K`): a variable byte buffer; `local_count`
    /// as for arrays.
    VBuffer {
        len: Ident,
        max: u32,
        multiply: u32,
        local: bool,
    },
    /// `u16_hack` on a `u32`: sent as be16 (QEMU's `VMSTATE_UINT16_HACK`).
    U16Hack,
    /// `vstruct = N`: a nested struct held at version N.
    VStruct { version: u32 },
    /// `bitmap = f, max = N`: a bitmap of `f` bits (at most N) in be64 words.
    Bitmap { bits: Ident, max: u32 },
    /// `list, max = N` on `Vec<T>` / `VecDeque<T>`: a QTAILQ (or QLIST).
    List { max: u32, qlist: bool },
    /// `tree, max = N` on `BTreeMap<K, V>`: a GTREE.
    Tree { max: u32 },
    /// A `Tmp<V>` field: a temporary view of the parent (QEMU's `VMSTATE_WITH_TMP`).
    Tmp,
    /// `with = module`: a custom codec with a declared description.
    With(syn::Path),
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub attrs: attr::Field,
    #[allow(dead_code)]
    pub original: &'a syn::Field,
    pub style: Style,
    /// Name in vmdesc and dumps.
    pub name: String,
    /// Name written in vmdesc (duplicates get `[k]`); filled by `assign_vmdesc_names`.
    pub vmdesc_name: String,
    /// Index into the container's subsections.
    pub sub: Option<usize>,
    /// `since = N` with N at most the lowest version the field's vmsd is ever loaded at (its
    /// `minimum_version`; a subsection's own): the field is always present, as with QEMU's
    /// `_V(field, N)` at such an N. Kept for the schema (QEMU's dump shows it), not a gate.
    pub noop_since: bool,
    /// `subsection = "…"` names no declared subsection (`check_subsections` reports it). Such a
    /// field's presence is unknown, so the rules about its default skip it.
    pub undeclared_sub: bool,
}

impl Field<'_> {
    pub fn skipped(&self) -> bool {
        self.attrs.skip.is_some()
    }

    /// The effective `since`: 0 when the declared one is a no-op (see [`Field::noop_since`]).
    pub fn since(&self) -> u32 {
        if self.noop_since {
            0
        } else {
            self.declared_since()
        }
    }

    /// `since` as written (0 without one).
    pub fn declared_since(&self) -> u32 {
        self.attrs.since.as_ref().map_or(0, |s| s.value.0)
    }

    /// The version a list's or tree's elements are loaded at: QEMU's field version (the `_V`
    /// argument), which is also when the field appears: `since`, or 1.
    pub fn elem_version(&self) -> u32 {
        self.declared_since().max(1)
    }

    /// Not always present: needs a default.
    pub fn conditional(&self) -> bool {
        self.since() > 0 || self.attrs.when.is_some() || self.sub.is_some()
    }

    /// Whether a mistake already reported may have left one of these slots empty or wrong: a
    /// key that failed to parse, or (for `subsection`) a name that is not declared. Rules that
    /// read such a slot skip the field, so a mistake is reported once, not again as its
    /// consequences.
    pub fn unsure(&self, keys: &[Symbol]) -> bool {
        self.attrs.failed.any(keys)
            || (self.undeclared_sub && keys.iter().any(|k| k.as_str() == SUBSECTION.as_str()))
    }
}

pub struct Container<'a> {
    pub ident: &'a Ident,
    pub attrs: attr::Container,
    pub fields: Vec<Field<'a>>,
    #[allow(dead_code)]
    pub original: &'a syn::DeriveInput,
    pub name: String,
    pub version: u32,
    pub min_version: u32,
    pub nested: bool,
}

fn default_name(ident: &Ident) -> String {
    let s = ident.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn type_last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

impl<'a> Container<'a> {
    pub fn from_ast(cx: &Ctxt, input: &'a syn::DeriveInput) -> Option<Container<'a>> {
        let attrs = attr::Container::from_ast(cx, input);
        let named = match &input.data {
            syn::Data::Struct(syn::DataStruct {
                fields: syn::Fields::Named(f),
                ..
            }) => f,
            syn::Data::Struct(s) => {
                cx.error_spanned_by(
                    &s.fields,
                    "VmState can only be derived for structs with named fields",
                );
                return None;
            }
            syn::Data::Enum(e) => {
                cx.error_spanned_by(
                    e.enum_token,
                    "VmState cannot be derived for enums; migrate the discriminant as an integer field and convert in post_load",
                );
                return None;
            }
            syn::Data::Union(u) => {
                cx.error_spanned_by(u.union_token, "VmState cannot be derived for unions");
                return None;
            }
        };
        if !input.generics.params.is_empty() {
            cx.error_spanned_by(
                &input.generics,
                "VmState cannot be derived for generic structs: the wire layout must be one fixed description",
            );
        }
        let version = attrs.version.as_ref().map_or(1, |v| v.value);
        let min_version = attrs.min_version.as_ref().map_or(version, |v| v.value);
        let name = attrs
            .name
            .as_ref()
            .map_or_else(|| default_name(&input.ident), |n| n.value.clone());
        let nested = attrs.nested.is_some();
        let mut fields = Vec::new();
        for f in &named.named {
            let fattrs = attr::Field::from_ast(cx, f);
            let ident = f.ident.as_ref().expect("named field");
            let max = fattrs.max.as_ref().map_or(0, |m| m.value);
            let is_tmp = type_last_ident(&f.ty).as_deref() == Some("Tmp");
            let style = if let Some(m) = &fattrs.with {
                Style::With(m.value.clone())
            } else if let Some(v) = &fattrs.vstruct {
                Style::VStruct { version: v.value }
            } else if let Some(b) = &fattrs.bitmap {
                Style::Bitmap {
                    bits: b.value.clone(),
                    max,
                }
            } else if is_tmp {
                Style::Tmp
            } else if let Some(l) = &fattrs.list {
                Style::List {
                    max,
                    qlist: l.value,
                }
            } else if fattrs.tree.is_some() {
                Style::Tree { max }
            } else {
                let multiply = fattrs.multiply.as_ref().map_or(1, |m| m.value);
                let (count, local) = match (&fattrs.count, &fattrs.local_count) {
                    (Some(c), _) => (Some(c), false),
                    (None, Some(c)) => (Some(c), true),
                    (None, None) => (None, false),
                };
                match (count, &fattrs.buffer) {
                    (Some(c), Some(_)) => Style::VBuffer {
                        len: c.value.clone(),
                        max: fattrs.max.as_ref().map_or(0, |m| m.value),
                        multiply,
                        local,
                    },
                    (Some(c), None) => Style::VArray {
                        count: c.value.clone(),
                        max: fattrs.max.as_ref().map_or(0, |m| m.value),
                        multiply,
                        local,
                    },
                    (None, Some(_)) => Style::Buffer,
                    (None, None) if fattrs.u16_hack.is_some() => Style::U16Hack,
                    (None, None) => Style::Plain,
                }
            };
            let fname = match &fattrs.rename {
                Some(r) => r.value.clone(),
                None if type_last_ident(&f.ty).as_deref() == Some("Unused") => "unused".to_owned(),
                None if is_tmp => "tmp".to_owned(),
                None => ident.to_string().trim_start_matches("r#").to_owned(),
            };
            let sub = fattrs.subsection.as_ref().and_then(|s| {
                attrs
                    .subsections
                    .iter()
                    .position(|d| d.name.value() == s.value.value())
            });
            let undeclared_sub = fattrs.subsection.is_some() && sub.is_none();
            let floor = match sub {
                Some(i) => {
                    let d = &attrs.subsections[i];
                    d.min_version.as_ref().map_or(1.min(d.version), |m| m.0)
                }
                None => min_version,
            };
            let noop_since =
                fattrs.since.as_ref().is_some_and(|s| s.value.0 <= floor) && !undeclared_sub;
            fields.push(Field {
                ident,
                ty: &f.ty,
                attrs: fattrs,
                original: f,
                style,
                name: fname,
                vmdesc_name: String::new(),
                sub,
                noop_since,
                undeclared_sub,
            });
        }
        let mut c = Container {
            ident: &input.ident,
            attrs,
            fields,
            original: input,
            name,
            version,
            min_version,
            nested,
        };
        c.assign_vmdesc_names();
        super::check::check(cx, &c);
        Some(c)
    }

    /// QEMU names duplicate field names within one vmsd `name[k]` (k = occurrence index).
    fn assign_vmdesc_names(&mut self) {
        let groups: Vec<Option<usize>> = self.fields.iter().map(|f| f.sub).collect();
        for i in 0..self.fields.len() {
            if self.fields[i].skipped() {
                continue;
            }
            let g = groups[i];
            let same: Vec<usize> = (0..self.fields.len())
                .filter(|&j| {
                    !self.fields[j].skipped()
                        && groups[j] == g
                        && self.fields[j].name == self.fields[i].name
                })
                .collect();
            self.fields[i].vmdesc_name = if same.len() > 1 {
                let k = same.iter().position(|&j| j == i).unwrap_or(0);
                format!("{}[{k}]", self.fields[i].name)
            } else {
                self.fields[i].name.clone()
            };
        }
    }

    /// Migrated fields of the main vmsd.
    pub fn main_fields(&self) -> impl Iterator<Item = &Field<'a>> {
        self.fields
            .iter()
            .filter(|f| !f.skipped() && f.sub.is_none())
    }

    /// Migrated fields of subsection `i`.
    pub fn sub_fields(&self, i: usize) -> impl Iterator<Item = &Field<'a>> {
        self.fields
            .iter()
            .filter(move |f| !f.skipped() && f.sub == Some(i))
    }
}

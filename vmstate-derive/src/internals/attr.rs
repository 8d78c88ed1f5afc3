//! Parsing of `#[vmstate(...)]` attributes into plain data. Only local checks live here
//! (unknown keys, duplicates, malformed values); cross-cutting rules are in `check.rs`.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::{Expr, Ident, LitBool, LitInt, LitStr, Token};

use super::ctxt::Ctxt;
use super::gate_expr::gate_value;
pub use super::gate_expr::{parse_machine_version, Gate, Op};
pub use super::items::Failed;
use super::items::{
    declaration, expected_one_of, key, nested_items, other_key, parse_items, skip_to_comma, unknown,
};
use super::symbol::*;

/// A value with the tokens it came from (for spans).
#[derive(Clone)]
pub struct WithTokens<T> {
    pub value: T,
    pub tokens: TokenStream,
}

/// One attribute slot that may be set once.
struct Attr<'c, T> {
    cx: &'c Ctxt,
    name: Symbol,
    value: Option<WithTokens<T>>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, name: Symbol) -> Self {
        Attr {
            cx,
            name,
            value: None,
        }
    }

    fn set<A: ToTokens>(&mut self, obj: A, value: T) {
        let tokens = obj.into_token_stream();
        if self.value.is_some() {
            self.cx.error_spanned_by(
                tokens,
                format!("duplicate vmstate attribute `{}`", self.name),
            );
        } else {
            self.value = Some(WithTokens { value, tokens });
        }
    }

    fn get(self) -> Option<WithTokens<T>> {
        self.value
    }
}

fn lit_u32(meta: &ParseNestedMeta, what: &str) -> syn::Result<(u32, LitInt)> {
    let lit: LitInt = meta.value()?.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{what}` expects an integer, e.g. `{what} = 2`"),
        )
    })?;
    let v = lit.base10_parse::<u32>()?;
    Ok((v, lit))
}

fn lit_str(meta: &ParseNestedMeta, what: &str) -> syn::Result<LitStr> {
    meta.value()?.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{what}` expects a string literal, e.g. `{what} = \"...\"`"),
        )
    })
}

fn path_value(meta: &ParseNestedMeta, what: &str) -> syn::Result<syn::Path> {
    let v = meta.value()?;
    if v.peek(LitStr) {
        let s: LitStr = v.parse()?;
        return s.parse();
    }
    v.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{what}` expects a function path, e.g. `{what} = Self::{what}`"),
        )
    })
}

/// A machine-pinned version: `pin(below = "2.10", version = 2)`.
#[derive(Clone)]
pub struct Pin {
    pub below: (u16, u16),
    pub version: u32,
    pub version_lit: Option<LitInt>,
    pub tokens: TokenStream,
    /// Some key failed to parse; its slot is empty.
    pub had_errors: bool,
}

/// A compat property declaration: `prop(name = "x-foo", default = true)`.
#[derive(Clone)]
pub struct Prop {
    pub name: LitStr,
    pub default: bool,
}

/// A subsection declaration.
#[derive(Clone)]
#[allow(dead_code)]
pub struct Subsection {
    pub name: LitStr,
    pub version: u32,
    pub version_lit: Option<LitInt>,
    pub min_version: Option<(u32, LitInt)>,
    pub when: Option<Gate>,
    pub pre_save: Option<syn::Path>,
    pub post_save: Option<syn::Path>,
    pub pre_load: Option<syn::Path>,
    pub post_load: Option<syn::Path>,
    pub tokens: TokenStream,
    /// Some key failed to parse; its slot is empty.
    pub had_errors: bool,
}

/// Container attributes.
pub struct Container {
    pub name: Option<WithTokens<String>>,
    pub version: Option<WithTokens<u32>>,
    pub min_version: Option<WithTokens<u32>>,
    pub nested: Option<WithTokens<()>>,
    pub priority: Option<WithTokens<i32>>,
    pub pre_save: Option<WithTokens<syn::Path>>,
    pub post_save: Option<WithTokens<syn::Path>>,
    pub pre_load: Option<WithTokens<syn::Path>>,
    pub post_load: Option<WithTokens<syn::Path>>,
    pub validate: Vec<syn::Path>,
    pub when: Option<WithTokens<Gate>>,
    pub pins: Vec<Pin>,
    pub props: Vec<Prop>,
    pub subsections: Vec<Subsection>,
    pub crate_path: Option<syn::Path>,
    /// The slots of the struct's keys that had errors: rules reading them are skipped.
    pub failed: Failed,
    /// Some `subsection(...)` declaration failed to parse or has no name, so a field naming an
    /// undeclared subsection may be naming that one.
    pub subsection_errors: bool,
    /// Some `prop(...)` declaration failed to parse or has no name, so a gate reading an
    /// undeclared property may be reading that one.
    pub prop_errors: bool,
}

impl Container {
    pub fn from_ast(cx: &Ctxt, input: &syn::DeriveInput) -> Self {
        let mut name = Attr::none(cx, NAME);
        let mut version = Attr::none(cx, VERSION);
        let mut min_version = Attr::none(cx, MINIMUM_VERSION);
        let mut nested = Attr::none(cx, NESTED);
        let mut priority = Attr::none(cx, PRIORITY);
        let mut pre_save = Attr::none(cx, PRE_SAVE);
        let mut post_save = Attr::none(cx, POST_SAVE);
        let mut pre_load = Attr::none(cx, PRE_LOAD);
        let mut post_load = Attr::none(cx, POST_LOAD);
        let mut when = Attr::none(cx, WHEN);
        let mut crate_path = Attr::none(cx, CRATE);
        let mut validate = Vec::new();
        let mut pins = Vec::new();
        let mut props = Vec::new();
        let mut subsections = Vec::new();
        let mut subsection_errors = false;
        let mut prop_errors = false;
        let mut failed = Failed::default();

        parse_items(cx, &input.attrs, CONTAINER_KEYS, &mut failed, |meta| {
            let p = &meta.path;
            if p == NAME {
                // name = "serial"
                let s = lit_str(meta, "name")?;
                if s.value().is_empty() || s.value().len() > 255 {
                    cx.error_spanned_by(&s, "name must be 1 to 255 bytes long");
                }
                name.set(&s, s.value());
            } else if p == VERSION {
                // version = 3
                let (v, lit) = lit_u32(meta, "version")?;
                version.set(&lit, v);
            } else if p == MINIMUM_VERSION || p.is_ident("min_version") {
                // minimum_version = 2
                let (v, lit) = lit_u32(meta, "minimum_version")?;
                min_version.set(&lit, v);
            } else if p == NESTED {
                // nested
                nested.set(p, ());
            } else if p == PRIORITY {
                // priority = 10 (or -5)
                let e: Expr = meta.value()?.parse()?;
                match eval_i32(&e) {
                    Some(v) => priority.set(&e, v),
                    None => cx.error_spanned_by(&e, "`priority` expects an integer literal"),
                }
            } else if p == PRE_SAVE {
                pre_save.set(p, path_value(meta, "pre_save")?);
            } else if p == POST_SAVE {
                post_save.set(p, path_value(meta, "post_save")?);
            } else if p == PRE_LOAD {
                pre_load.set(p, path_value(meta, "pre_load")?);
            } else if p == POST_LOAD {
                post_load.set(p, path_value(meta, "post_load")?);
            } else if p == VALIDATE {
                // validate = Self::check (repeatable)
                validate.push(path_value(meta, "validate")?);
            } else if p == WHEN {
                // when = <gate>: the whole section is sent only when it holds
                let g = gate_value(cx, meta)?;
                when.set(p, g);
            } else if p == CRATE {
                // crate = "vmstate_runtime"
                let s = lit_str(meta, "crate")?;
                crate_path.set(&s, s.parse()?);
            } else if p == PIN {
                // pin(below = "2.10", version = 2)
                pins.extend(declaration(cx, meta, parse_pin));
            } else if p == PROP {
                // prop(name = "x-foo", default = true)
                let prop = declaration(cx, meta, parse_prop);
                prop_errors |= prop.as_ref().is_none_or(|p| p.name.value().is_empty());
                props.extend(prop);
            } else if p == SUBSECTION {
                // subsection(name = "serial/tsr", version = 1, when = ..., ...)
                let sub = declaration(cx, meta, parse_subsection);
                subsection_errors |= sub.as_ref().is_none_or(|s| s.name.value().is_empty());
                subsections.extend(sub);
            } else {
                other_key(
                    cx,
                    meta,
                    "container",
                    CONTAINER_KEYS,
                    FIELD_KEYS,
                    "on a field",
                );
            }
            Ok(())
        });

        Container {
            name: name.get(),
            version: version.get(),
            min_version: min_version.get(),
            nested: nested.get(),
            priority: priority.get(),
            pre_save: pre_save.get(),
            post_save: post_save.get(),
            pre_load: pre_load.get(),
            post_load: post_load.get(),
            validate,
            when: when.get(),
            pins,
            props,
            subsections,
            crate_path: crate_path.get().map(|s| s.value),
            failed,
            subsection_errors,
            prop_errors,
        }
    }
}

fn eval_i32(e: &Expr) -> Option<i32> {
    match e {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().ok(),
        Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => eval_i32(expr).map(|v| -v),
        _ => None,
    }
}

fn parse_pin(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Pin> {
    let tokens = meta.path.to_token_stream();
    let cp = cx.checkpoint();
    let mut below = None;
    let mut version = None;
    nested_items(meta, |m| {
        key(cx, &m, |m| {
            if m.path == BELOW {
                let s = lit_str(m, "below")?;
                match parse_machine_version(&s.value()) {
                    Some(v) => below = Some(v),
                    None => cx.error_spanned_by(&s, format!("machine version `{}` cannot be evaluated: expected \"major.minor\", e.g. \"2.10\"", s.value())),
                }
            } else if m.path == VERSION {
                version = Some(lit_u32(m, "version")?);
            } else {
                unknown(
                    cx,
                    m,
                    "pin",
                    PIN_KEYS,
                    "; expected `below = \"X.Y\"` and `version = N`",
                );
                skip_to_comma(m.input);
            }
            Ok(())
        })
    })?;
    let had_errors = cx.errors_since(cp);
    if !had_errors && (below.is_none() || version.is_none()) {
        cx.error_spanned_by(&tokens, "`pin` needs `below = \"X.Y\"` and `version = N`, e.g. `pin(below = \"7.0\", version = 2)`");
    }
    let (v, lit) = version.map_or((0, None), |(v, l)| (v, Some(l)));
    Ok(Pin {
        below: below.unwrap_or((0, 0)),
        version: v,
        version_lit: lit,
        tokens,
        had_errors,
    })
}

fn parse_prop(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Prop> {
    let tokens = meta.path.to_token_stream();
    let cp = cx.checkpoint();
    let mut name = None;
    let mut default = None;
    nested_items(meta, |m| {
        key(cx, &m, |m| {
            if m.path == NAME {
                name = Some(lit_str(m, "name")?);
            } else if m.path == DEFAULT {
                let b: LitBool = m.value()?.parse()?;
                default = Some(b.value);
            } else {
                unknown(
                    cx,
                    m,
                    "prop",
                    PROP_KEYS,
                    "; expected `name = \"...\"` and `default = true|false`",
                );
                skip_to_comma(m.input);
            }
            Ok(())
        })
    })?;
    let had_errors = cx.errors_since(cp);
    let Some(name) = name else {
        if !had_errors {
            cx.error_spanned_by(&tokens, "`prop` needs `name = \"...\"`");
        }
        return Ok(Prop {
            name: LitStr::new("", Span::call_site()),
            default: false,
        });
    };
    if default.is_none() && !had_errors {
        cx.error_spanned_by(&name, "`prop` needs `default = true` or `default = false`: the value used when no compat entry of the machine type sets it");
    }
    Ok(Prop {
        name,
        default: default.unwrap_or(false),
    })
}

fn parse_subsection(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Subsection> {
    let tokens = meta.path.to_token_stream();
    let cp = cx.checkpoint();
    let mut name = Attr::none(cx, NAME);
    let mut version = Attr::none(cx, VERSION);
    let mut min_version = Attr::none(cx, MINIMUM_VERSION);
    let mut when = Attr::none(cx, WHEN);
    let mut pre_save = Attr::none(cx, PRE_SAVE);
    let mut post_save = Attr::none(cx, POST_SAVE);
    let mut pre_load = Attr::none(cx, PRE_LOAD);
    let mut post_load = Attr::none(cx, POST_LOAD);
    nested_items(meta, |m| {
        key(cx, &m, |m| {
            let p = &m.path;
            if p == NAME {
                let s = lit_str(m, "name")?;
                name.set(&s, s.clone());
            } else if p == VERSION {
                let (v, lit) = lit_u32(m, "version")?;
                version.set(&lit, (v, lit.clone()));
            } else if p == MINIMUM_VERSION || p.is_ident("min_version") {
                let (v, lit) = lit_u32(m, "minimum_version")?;
                min_version.set(&lit, (v, lit.clone()));
            } else if p == WHEN {
                let g = gate_value(cx, m)?;
                when.set(p, g);
            } else if p == PRE_SAVE {
                pre_save.set(p, path_value(m, "pre_save")?);
            } else if p == POST_SAVE {
                post_save.set(p, path_value(m, "post_save")?);
            } else if p == PRE_LOAD {
                pre_load.set(p, path_value(m, "pre_load")?);
            } else if p == POST_LOAD {
                post_load.set(p, path_value(m, "post_load")?);
            } else {
                unknown(
                    cx,
                    m,
                    "subsection",
                    SUBSECTION_KEYS,
                    &expected_one_of(SUBSECTION_KEYS),
                );
                skip_to_comma(m.input);
            }
            Ok(())
        })
    })?;
    let had_errors = cx.errors_since(cp);
    let name = name.get().map(|s| s.value).unwrap_or_else(|| {
        if !had_errors {
            cx.error_spanned_by(&tokens, "`subsection` needs `name = \"<section>/<child>\"`");
        }
        LitStr::new("", Span::call_site())
    });
    let version = version.get().map(|s| s.value);
    Ok(Subsection {
        name,
        version: version.as_ref().map_or(1, |v| v.0),
        version_lit: version.map(|v| v.1),
        min_version: min_version.get().map(|s| s.value),
        when: when.get().map(|s| s.value),
        pre_save: pre_save.get().map(|s| s.value),
        post_save: post_save.get().map(|s| s.value),
        pre_load: pre_load.get().map(|s| s.value),
        post_load: post_load.get().map(|s| s.value),
        tokens,
        had_errors: cx.errors_since(cp),
    })
}

/// How an absent field gets its value.
#[derive(Clone)]
pub enum Default {
    /// `default`: `Default::default()`.
    Trait,
    /// `default = expr`.
    Expr(Box<Expr>),
    /// `keep`: the destination keeps its current value (QEMU's behaviour).
    Keep,
}

/// Field attributes.
pub struct Field {
    pub since: Option<WithTokens<(u32, LitInt)>>,
    pub when: Option<WithTokens<Gate>>,
    pub default: Option<WithTokens<Default>>,
    pub skip: Option<WithTokens<()>>,
    pub rename: Option<WithTokens<String>>,
    pub buffer: Option<WithTokens<()>>,
    pub count: Option<WithTokens<Ident>>,
    /// `local_count = f`: the count is the destination's own value of `f`, a field that is not
    /// sent (`skip`) or is sent later and must equal the local value (`equal`).
    pub local_count: Option<WithTokens<Ident>>,
    /// `u16_hack`: a `u32` sent as be16 (QEMU's `VMSTATE_UINT16_HACK`).
    pub u16_hack: Option<WithTokens<()>>,
    pub max: Option<WithTokens<u32>>,
    pub equal: Option<WithTokens<()>>,
    pub range: Option<WithTokens<(Expr, Expr, bool)>>,
    pub subsection: Option<WithTokens<LitStr>>,
    /// `list` / `list = "qtailq"` (false) or `list = "qlist"` (true).
    pub list: Option<WithTokens<bool>>,
    /// `tree`.
    pub tree: Option<WithTokens<()>>,
    /// `le`: on load the value must lie in `0..=local` (QEMU's `VMSTATE_INT32_POSITIVE_LE`).
    pub le: Option<WithTokens<()>>,
    /// `vmdesc_type = "pci config"`: the vmdesc `type` the field describes itself with.
    pub vmdesc_type: Option<WithTokens<LitStr>>,
    /// `with = module`: a custom codec (`module::save`, `module::load`, `module::DESCRIPTION`).
    pub with: Option<WithTokens<syn::Path>>,
    /// `multiply = K`: the count field times K (QEMU's `VMS_MULTIPLY` / `_ELEMENTS`).
    pub multiply: Option<WithTokens<u32>>,
    /// `bitmap = nbits_field`: a bitmap of that many bits (QEMU's `VMSTATE_BITMAP`).
    pub bitmap: Option<WithTokens<Ident>>,
    /// `vstruct = N`: a nested struct held at version N (QEMU's `VMSTATE_VSTRUCT`).
    pub vstruct: Option<WithTokens<u32>>,
    /// The slots of the field's keys that had errors: the cross-cutting rules that read them
    /// skip the field rather than report a follow-on error (e.g. "`default` is never used"
    /// after a misspelt `since`).
    pub failed: Failed,
}

impl Field {
    pub fn from_ast(cx: &Ctxt, field: &syn::Field) -> Self {
        let mut failed = Failed::default();
        let mut since = Attr::none(cx, SINCE);
        let mut when = Attr::none(cx, WHEN);
        let mut default = Attr::none(cx, DEFAULT);
        let mut skip = Attr::none(cx, SKIP);
        let mut rename = Attr::none(cx, RENAME);
        let mut buffer = Attr::none(cx, BUFFER);
        let mut count = Attr::none(cx, COUNT);
        let mut local_count = Attr::none(cx, LOCAL_COUNT);
        let mut u16_hack = Attr::none(cx, U16_HACK);
        let mut max = Attr::none(cx, MAX);
        let mut equal = Attr::none(cx, EQUAL);
        let mut range = Attr::none(cx, RANGE);
        let mut subsection = Attr::none(cx, SUBSECTION);
        let mut list = Attr::none(cx, LIST);
        let mut tree = Attr::none(cx, TREE);
        let mut le = Attr::none(cx, LE);
        let mut vmdesc_type = Attr::none(cx, VMDESC_TYPE);
        let mut with = Attr::none(cx, WITH);
        let mut multiply = Attr::none(cx, MULTIPLY);
        let mut bitmap = Attr::none(cx, BITMAP);
        let mut vstruct = Attr::none(cx, VSTRUCT);

        parse_items(cx, &field.attrs, FIELD_KEYS, &mut failed, |meta| {
            let p = &meta.path;
            if p == SINCE {
                // since = 3: present only in streams of version >= 3
                let (v, lit) = lit_u32(meta, "since")?;
                since.set(&lit, (v, lit.clone()));
            } else if p == WHEN {
                // when = <gate>
                let g = gate_value(cx, meta)?;
                when.set(p, g);
            } else if p == DEFAULT {
                // default | default = expr
                if matches!(
                    default.value.as_ref().map(|d| &d.value),
                    Some(Default::Keep)
                ) {
                    cx.error_spanned_by(p, "`default` cannot be combined with `keep`: choose one value for streams without the field");
                    skip_to_comma(meta.input);
                } else if meta.input.peek(Token![=]) {
                    let e: Expr = meta.value()?.parse()?;
                    default.set(&e, Default::Expr(Box::new(e.clone())));
                } else {
                    default.set(p, Default::Trait);
                }
            } else if p == KEEP {
                // keep: an absent field keeps the destination's current value
                if default.value.is_some() {
                    cx.error_spanned_by(p, "`keep` cannot be combined with `default`: choose one value for streams without the field");
                } else {
                    default.set(p, Default::Keep);
                }
            } else if p == SKIP {
                skip.set(p, ());
            } else if p == RENAME {
                let s = lit_str(meta, "rename")?;
                rename.set(&s, s.value());
            } else if p == BUFFER {
                buffer.set(p, ());
            } else if p == COUNT {
                // count = earlier_field
                let id: Ident = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`count` expects the name of an earlier field, e.g. `count = num`",
                    )
                })?;
                count.set(&id, id.clone());
            } else if p == LOCAL_COUNT {
                // local_count = capacity: the destination's own value of a local field
                let id: Ident = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`local_count` expects the name of a local field of this struct, e.g. `local_count = capacity`",
                    )
                })?;
                local_count.set(&id, id.clone());
            } else if p == U16_HACK {
                // u16_hack: a u32 sent as be16
                u16_hack.set(p, ());
            } else if p == MAX {
                let (v, lit) = lit_u32(meta, "max")?;
                max.set(&lit, v);
            } else if p == EQUAL {
                equal.set(p, ());
            } else if p == RANGE {
                // range = 0..=15
                let e: Expr = meta.value()?.parse()?;
                match &e {
                    Expr::Range(syn::ExprRange {
                        start: Some(lo),
                        end: Some(hi),
                        limits,
                        ..
                    }) => {
                        let closed = matches!(limits, syn::RangeLimits::Closed(_));
                        range.set(&e, ((**lo).clone(), (**hi).clone(), closed));
                    }
                    _ => cx.error_spanned_by(
                        &e,
                        "`range` expects a bounded range, e.g. `range = 0..=15` or `range = 0..16`",
                    ),
                }
            } else if p == LIST {
                // list | list = "qtailq" | list = "qlist"
                if meta.input.peek(Token![=]) {
                    let s = lit_str(meta, "list")?;
                    match s.value().as_str() {
                        "qtailq" => list.set(&s, false),
                        "qlist" => list.set(&s, true),
                        _ => cx.error_spanned_by(
                            &s,
                            "`list` expects `\"qtailq\"` (QEMU's VMSTATE_QTAILQ_V, the default) or `\"qlist\"` (VMSTATE_QLIST_V)",
                        ),
                    }
                } else {
                    list.set(p, false);
                }
            } else if p == TREE {
                tree.set(p, ());
            } else if p == LE {
                // le: 0 <= stream value <= local value (QEMU's vmstate_info_int32_le)
                le.set(p, ());
            } else if p == MULTIPLY {
                // multiply = 4
                let (v, lit) = lit_u32(meta, "multiply")?;
                if v == 0 {
                    cx.error_spanned_by(
                        &lit,
                        "`multiply = 0` would make the field empty; use a multiplier of at least 1",
                    );
                }
                multiply.set(&lit, v);
            } else if p == VSTRUCT {
                // vstruct = 2
                let (v, lit) = lit_u32(meta, "vstruct")?;
                vstruct.set(&lit, v);
            } else if p == BITMAP {
                // bitmap = nbits (an earlier field holding the number of bits)
                let id: Ident = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`bitmap` expects the name of an earlier field holding the number of bits, e.g. `bitmap = nbits`",
                    )
                })?;
                bitmap.set(&id, id.clone());
            } else if p == WITH {
                // with = path::to::codec_module (or "path::to::codec_module", as serde writes it)
                let v = meta.value()?;
                let m: syn::Path = if v.peek(LitStr) {
                    v.parse::<LitStr>()?.parse()?
                } else {
                    v.parse().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "`with` expects the path of a codec module, e.g. `with = pci_config`",
                        )
                    })?
                };
                with.set(&m, m.clone());
            } else if p == VMDESC_TYPE {
                // vmdesc_type = "pci config"
                let s = lit_str(meta, "vmdesc_type")?;
                if s.value().is_empty() {
                    cx.error_spanned_by(&s, "`vmdesc_type` must not be empty");
                }
                vmdesc_type.set(&s, s.clone());
            } else if p == SUBSECTION {
                // subsection = "serial/tsr"
                let s = lit_str(meta, "subsection")?;
                subsection.set(&s, s.clone());
            } else {
                other_key(
                    cx,
                    meta,
                    "field",
                    FIELD_KEYS,
                    CONTAINER_KEYS,
                    "on the struct",
                );
            }
            Ok(())
        });
        Field {
            since: since.get(),
            when: when.get(),
            default: default.get(),
            skip: skip.get(),
            rename: rename.get(),
            buffer: buffer.get(),
            count: count.get(),
            local_count: local_count.get(),
            u16_hack: u16_hack.get(),
            max: max.get(),
            equal: equal.get(),
            range: range.get(),
            subsection: subsection.get(),
            list: list.get(),
            tree: tree.get(),
            le: le.get(),
            vmdesc_type: vmdesc_type.get(),
            with: with.get(),
            multiply: multiply.get(),
            bitmap: bitmap.get(),
            vstruct: vstruct.get(),
            failed,
        }
    }
}

//! Parsing of `#[vmstate(...)]` attributes into plain data. Only local checks live here
//! (unknown keys, duplicates, malformed values); cross-cutting rules are in `check.rs`.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitBool, LitInt, LitStr, Token};

use super::ctxt::Ctxt;
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

/// Comparison operator of a machine gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Lt,
    Le,
    Eq,
    Ne,
}

/// A parsed gate expression.
#[derive(Clone)]
pub enum Gate {
    Machine { op: Op, major: u16, minor: u16 },
    Prop(LitStr),
    Pred(syn::Path),
    All(Vec<Gate>),
    Any(Vec<Gate>),
    Not(Box<Gate>),
}

impl Gate {
    /// Every `prop("…")` the gate reads.
    pub fn props(&self, out: &mut Vec<LitStr>) {
        match self {
            Gate::Prop(l) => out.push(l.clone()),
            Gate::All(gs) | Gate::Any(gs) => gs.iter().for_each(|g| g.props(out)),
            Gate::Not(g) => g.props(out),
            Gate::Machine { .. } | Gate::Pred(_) => {}
        }
    }

    /// Whether any part needs the runtime state.
    #[allow(dead_code)]
    pub fn has_pred(&self) -> bool {
        match self {
            Gate::Pred(_) => true,
            Gate::All(gs) | Gate::Any(gs) => gs.iter().any(Gate::has_pred),
            Gate::Not(g) => g.has_pred(),
            Gate::Machine { .. } | Gate::Prop(_) => false,
        }
    }
}

/// Parses `major.minor`.
pub fn parse_machine_version(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('.')?;
    if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

const GATE_HELP: &str = "expected a gate: `machine >= \"X.Y\"` (or >, <, <=, ==, !=), `prop(\"name\")`, `pred(path)`, `all(...)`, `any(...)` or `not(...)`";

fn parse_gate(cx: &Ctxt, input: ParseStream) -> syn::Result<Gate> {
    let ident: Ident = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), GATE_HELP))?;
    if ident == MACHINE {
        let op = if input.peek(Token![>=]) {
            input.parse::<Token![>=]>()?;
            Op::Ge
        } else if input.peek(Token![<=]) {
            input.parse::<Token![<=]>()?;
            Op::Le
        } else if input.peek(Token![==]) {
            input.parse::<Token![==]>()?;
            Op::Eq
        } else if input.peek(Token![!=]) {
            input.parse::<Token![!=]>()?;
            Op::Ne
        } else if input.peek(Token![>]) {
            input.parse::<Token![>]>()?;
            Op::Gt
        } else if input.peek(Token![<]) {
            input.parse::<Token![<]>()?;
            Op::Lt
        } else {
            return Err(input.error(
                "expected a comparison after `machine`: `>=`, `>`, `<`, `<=`, `==` or `!=`",
            ));
        };
        let lit: LitStr = input.parse()?;
        let (major, minor) = parse_machine_version(&lit.value()).unwrap_or_else(|| {
            cx.error_spanned_by(
                &lit,
                format!(
                    "machine version `{}` cannot be evaluated: expected \"major.minor\", e.g. \"7.2\"",
                    lit.value()
                ),
            );
            (0, 0)
        });
        return Ok(Gate::Machine { op, major, minor });
    }
    let content;
    syn::parenthesized!(content in input);
    if ident == PROP {
        let lit: LitStr = content.parse()?;
        if lit.value().is_empty() {
            cx.error_spanned_by(&lit, "property name must not be empty");
        }
        Ok(Gate::Prop(lit))
    } else if ident == PRED {
        Ok(Gate::Pred(content.parse()?))
    } else if ident == ALL || ident == ANY {
        let mut gs = Vec::new();
        while !content.is_empty() {
            gs.push(parse_gate(cx, &content)?);
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        if gs.is_empty() {
            return Err(syn::Error::new(
                ident.span(),
                format!("`{ident}()` needs at least one gate"),
            ));
        }
        Ok(if ident == ALL {
            Gate::All(gs)
        } else {
            Gate::Any(gs)
        })
    } else if ident == NOT {
        Ok(Gate::Not(Box::new(parse_gate(cx, &content)?)))
    } else {
        Err(syn::Error::new(
            ident.span(),
            format!("unknown gate `{ident}`; {GATE_HELP}"),
        ))
    }
}

fn gate_value(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Gate> {
    let value = meta.value()?;
    parse_gate(cx, value)
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
}

fn unknown(cx: &Ctxt, meta: &ParseNestedMeta, what: &str, hint: &str) {
    let path = meta.path.to_token_stream().to_string().replace(' ', "");
    cx.error_spanned_by(
        &meta.path,
        format!("unknown vmstate {what} attribute `{path}`{hint}"),
    );
}

/// Skips the rest of a meta item whose key was unknown, so later keys are still parsed.
fn skip_rest(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Token![=] = meta.input.parse()?;
        let _: Expr = meta.input.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
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

        for attr in &input.attrs {
            if attr.path() != VMSTATE {
                continue;
            }
            if let syn::Meta::Path(_) = attr.meta {
                cx.error_spanned_by(attr, "expected `#[vmstate(...)]` with arguments");
                continue;
            }
            let r = attr.parse_nested_meta(|meta| {
                let p = &meta.path;
                if p == NAME {
                    // name = "serial"
                    let s = lit_str(&meta, "name")?;
                    if s.value().is_empty() || s.value().len() > 255 {
                        cx.error_spanned_by(&s, "name must be 1 to 255 bytes long");
                    }
                    name.set(&s, s.value());
                } else if p == VERSION {
                    // version = 3
                    let (v, lit) = lit_u32(&meta, "version")?;
                    version.set(&lit, v);
                } else if p == MINIMUM_VERSION || p.is_ident("min_version") {
                    // minimum_version = 2
                    let (v, lit) = lit_u32(&meta, "minimum_version")?;
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
                    pre_save.set(p, path_value(&meta, "pre_save")?);
                } else if p == POST_SAVE {
                    post_save.set(p, path_value(&meta, "post_save")?);
                } else if p == PRE_LOAD {
                    pre_load.set(p, path_value(&meta, "pre_load")?);
                } else if p == POST_LOAD {
                    post_load.set(p, path_value(&meta, "post_load")?);
                } else if p == VALIDATE {
                    // validate = Self::check (repeatable)
                    validate.push(path_value(&meta, "validate")?);
                } else if p == WHEN {
                    // when = <gate>: the whole section is sent only when it holds
                    let g = gate_value(cx, &meta)?;
                    when.set(p, g);
                } else if p == CRATE {
                    // crate = "vmstate_runtime"
                    let s = lit_str(&meta, "crate")?;
                    crate_path.set(&s, s.parse()?);
                } else if p == PIN {
                    // pin(below = "2.10", version = 2)
                    pins.push(parse_pin(cx, &meta)?);
                } else if p == PROP {
                    // prop(name = "x-foo", default = true)
                    props.push(parse_prop(cx, &meta)?);
                } else if p == SUBSECTION {
                    // subsection(name = "serial/tsr", version = 1, when = ..., ...)
                    subsections.push(parse_subsection(cx, &meta)?);
                } else if p == SINCE || p == SKIP || p == DEFAULT || p == RENAME || p == BUFFER || p == COUNT || p == MAX || p == EQUAL || p == RANGE {
                    let key = p.to_token_stream().to_string();
                    cx.error_spanned_by(p, format!("`{key}` is not expected here; the `{key}` attribute belongs on a field"));
                    skip_rest(&meta)?;
                } else {
                    unknown(cx, &meta, "container", "; expected one of name, version, minimum_version, nested, priority, pre_save, post_save, pre_load, post_load, validate, when, pin, prop, subsection, crate");
                    skip_rest(&meta)?;
                }
                Ok(())
            });
            if let Err(e) = r {
                cx.syn_error(e);
            }
        }

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
    let mut below = None;
    let mut version = None;
    meta.parse_nested_meta(|m| {
        if m.path == BELOW {
            let s = lit_str(&m, "below")?;
            match parse_machine_version(&s.value()) {
                Some(v) => below = Some(v),
                None => cx.error_spanned_by(&s, format!("machine version `{}` cannot be evaluated: expected \"major.minor\", e.g. \"2.10\"", s.value())),
            }
        } else if m.path == VERSION {
            version = Some(lit_u32(&m, "version")?);
        } else {
            unknown(cx, &m, "pin", "; expected `below = \"X.Y\"` and `version = N`");
            skip_rest(&m)?;
        }
        Ok(())
    })?;
    if below.is_none() || version.is_none() {
        cx.error_spanned_by(&tokens, "`pin` needs `below = \"X.Y\"` and `version = N`, e.g. `pin(below = \"7.0\", version = 2)`");
    }
    let (v, lit) = version.map_or((0, None), |(v, l)| (v, Some(l)));
    Ok(Pin {
        below: below.unwrap_or((0, 0)),
        version: v,
        version_lit: lit,
        tokens,
    })
}

fn parse_prop(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Prop> {
    let tokens = meta.path.to_token_stream();
    let mut name = None;
    let mut default = None;
    meta.parse_nested_meta(|m| {
        if m.path == NAME {
            name = Some(lit_str(&m, "name")?);
        } else if m.path == DEFAULT {
            let b: LitBool = m.value()?.parse()?;
            default = Some(b.value);
        } else {
            unknown(
                cx,
                &m,
                "prop",
                "; expected `name = \"...\"` and `default = true|false`",
            );
            skip_rest(&m)?;
        }
        Ok(())
    })?;
    let Some(name) = name else {
        cx.error_spanned_by(&tokens, "`prop` needs `name = \"...\"`");
        return Ok(Prop {
            name: LitStr::new("", Span::call_site()),
            default: false,
        });
    };
    if default.is_none() {
        cx.error_spanned_by(&name, "`prop` needs `default = true` or `default = false`: the value used when no compat entry of the machine type sets it");
    }
    Ok(Prop {
        name,
        default: default.unwrap_or(false),
    })
}

fn parse_subsection(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Subsection> {
    let tokens = meta.path.to_token_stream();
    let mut name = Attr::none(cx, NAME);
    let mut version = Attr::none(cx, VERSION);
    let mut min_version = Attr::none(cx, MINIMUM_VERSION);
    let mut when = Attr::none(cx, WHEN);
    let mut pre_save = Attr::none(cx, PRE_SAVE);
    let mut post_save = Attr::none(cx, POST_SAVE);
    let mut pre_load = Attr::none(cx, PRE_LOAD);
    let mut post_load = Attr::none(cx, POST_LOAD);
    meta.parse_nested_meta(|m| {
        let p = &m.path;
        if p == NAME {
            let s = lit_str(&m, "name")?;
            name.set(&s, s.clone());
        } else if p == VERSION {
            let (v, lit) = lit_u32(&m, "version")?;
            version.set(&lit, (v, lit.clone()));
        } else if p == MINIMUM_VERSION || p.is_ident("min_version") {
            let (v, lit) = lit_u32(&m, "minimum_version")?;
            min_version.set(&lit, (v, lit.clone()));
        } else if p == WHEN {
            let g = gate_value(cx, &m)?;
            when.set(p, g);
        } else if p == PRE_SAVE {
            pre_save.set(p, path_value(&m, "pre_save")?);
        } else if p == POST_SAVE {
            post_save.set(p, path_value(&m, "post_save")?);
        } else if p == PRE_LOAD {
            pre_load.set(p, path_value(&m, "pre_load")?);
        } else if p == POST_LOAD {
            post_load.set(p, path_value(&m, "post_load")?);
        } else {
            unknown(cx, &m, "subsection", "; expected one of name, version, minimum_version, when, pre_save, post_save, pre_load, post_load");
            skip_rest(&m)?;
        }
        Ok(())
    })?;
    let name = name.get().map(|s| s.value).unwrap_or_else(|| {
        cx.error_spanned_by(&tokens, "`subsection` needs `name = \"<section>/<child>\"`");
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
    pub max: Option<WithTokens<u32>>,
    pub equal: Option<WithTokens<()>>,
    pub range: Option<WithTokens<(Expr, Expr, bool)>>,
    pub subsection: Option<WithTokens<LitStr>>,
}

impl Field {
    pub fn from_ast(cx: &Ctxt, field: &syn::Field) -> Self {
        let mut since = Attr::none(cx, SINCE);
        let mut when = Attr::none(cx, WHEN);
        let mut default = Attr::none(cx, DEFAULT);
        let mut skip = Attr::none(cx, SKIP);
        let mut rename = Attr::none(cx, RENAME);
        let mut buffer = Attr::none(cx, BUFFER);
        let mut count = Attr::none(cx, COUNT);
        let mut max = Attr::none(cx, MAX);
        let mut equal = Attr::none(cx, EQUAL);
        let mut range = Attr::none(cx, RANGE);
        let mut subsection = Attr::none(cx, SUBSECTION);

        for attr in &field.attrs {
            if attr.path() != VMSTATE {
                continue;
            }
            if let syn::Meta::Path(_) = attr.meta {
                cx.error_spanned_by(attr, "expected `#[vmstate(...)]` with arguments");
                continue;
            }
            let r = attr.parse_nested_meta(|meta| {
                let p = &meta.path;
                if p == SINCE {
                    // since = 3: present only in streams of version >= 3
                    let (v, lit) = lit_u32(&meta, "since")?;
                    since.set(&lit, (v, lit.clone()));
                } else if p == WHEN {
                    // when = <gate>
                    let g = gate_value(cx, &meta)?;
                    when.set(p, g);
                } else if p == DEFAULT {
                    // default | default = expr
                    if matches!(default.value.as_ref().map(|d| &d.value), Some(Default::Keep)) {
                        cx.error_spanned_by(p, "`default` cannot be combined with `keep`: choose one value for streams without the field");
                        skip_rest(&meta)?;
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
                    let s = lit_str(&meta, "rename")?;
                    rename.set(&s, s.value());
                } else if p == BUFFER {
                    buffer.set(p, ());
                } else if p == COUNT {
                    // count = earlier_field
                    let id: Ident = meta.value()?.parse().map_err(|e| syn::Error::new(e.span(), "`count` expects the name of an earlier field, e.g. `count = num`"))?;
                    count.set(&id, id.clone());
                } else if p == MAX {
                    let (v, lit) = lit_u32(&meta, "max")?;
                    max.set(&lit, v);
                } else if p == EQUAL {
                    equal.set(p, ());
                } else if p == RANGE {
                    // range = 0..=15
                    let e: Expr = meta.value()?.parse()?;
                    match &e {
                        Expr::Range(r) if r.start.is_some() && r.end.is_some() => {
                            let closed = matches!(r.limits, syn::RangeLimits::Closed(_));
                            let lo = (**r.start.as_ref().expect("checked")).clone();
                            let hi = (**r.end.as_ref().expect("checked")).clone();
                            range.set(&e, (lo, hi, closed));
                        }
                        _ => cx.error_spanned_by(&e, "`range` expects a bounded range, e.g. `range = 0..=15` or `range = 0..16`"),
                    }
                } else if p == SUBSECTION {
                    // subsection = "serial/tsr"
                    let s = lit_str(&meta, "subsection")?;
                    subsection.set(&s, s.clone());
                } else if p == NAME || p == VERSION || p == MINIMUM_VERSION || p == NESTED || p == PRIORITY || p == PRE_SAVE || p == POST_SAVE || p == PRE_LOAD || p == POST_LOAD || p == VALIDATE || p == PIN || p == PROP || p == CRATE {
                    let key = p.to_token_stream().to_string();
                    cx.error_spanned_by(p, format!("`{key}` is not expected here; the `{key}` attribute belongs on the struct"));
                    skip_rest(&meta)?;
                } else {
                    unknown(cx, &meta, "field", "; expected one of since, when, default, keep, skip, rename, buffer, count, max, equal, range, subsection");
                    skip_rest(&meta)?;
                }
                Ok(())
            });
            if let Err(e) = r {
                cx.syn_error(e);
            }
        }
        let _ = field.span();
        Field {
            since: since.get(),
            when: when.get(),
            default: default.get(),
            skip: skip.get(),
            rename: rename.get(),
            buffer: buffer.get(),
            count: count.get(),
            max: max.get(),
            equal: equal.get(),
            range: range.get(),
            subsection: subsection.get(),
        }
    }
}

/// Parses a gate from a token stream (used by tests of the parser).
#[allow(dead_code)]
pub fn parse_gate_tokens(cx: &Ctxt, tokens: TokenStream) -> syn::Result<Gate> {
    (|input: ParseStream| parse_gate(cx, input)).parse2(tokens)
}

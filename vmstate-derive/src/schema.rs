//! The `const StructSchema` the derive emits: exactly what the generated code does, as data.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::gate;
use crate::internals::ast::{Container, Field, Style};
use crate::internals::attr;

/// `Cow::Borrowed(#t)`: a string or list of a `const` description.
pub fn cow(t: impl ToTokens) -> TokenStream {
    quote!(_vmstate::__private::Cow::Borrowed(#t))
}

/// `SchemaRef::Static(#t)`: a reference inside a `const` description.
pub fn static_ref(t: impl ToTokens) -> TokenStream {
    quote!(_vmstate::__private::SchemaRef::Static(#t))
}

pub fn location(span: Span) -> TokenStream {
    let start = span.start();
    let line = u32::try_from(start.line).unwrap_or(0);
    let column = u32::try_from(start.column + 1).unwrap_or(0);
    let file = cow(quote!(::core::file!()));
    quote!(_vmstate::__private::Location { file: #file, line: #line, column: #column })
}

/// The field's `SchemaRef<Kind>`.
pub fn kind(f: &Field) -> TokenStream {
    let ty = f.ty;
    let kind = match &f.style {
        Style::Plain => {
            let codec = crate::internals::field_codec_of(ty);
            quote!(&#codec::KIND)
        }
        Style::U16Hack => quote!(&_vmstate::__private::Kind::U32AsU16),
        Style::Buffer => {
            quote!(&_vmstate::__private::Kind::Buffer { len: <#ty as _vmstate::__private::ByteBuffer>::LEN })
        }
        Style::VArray {
            count,
            max,
            multiply,
            local,
        } => {
            let c = cow(count.to_string());
            let elem = static_ref(
                quote!(&<<#ty as _vmstate::__private::VarContainer>::Elem as _vmstate::__private::Field>::KIND),
            );
            quote!(&_vmstate::__private::Kind::VArray {
                elem: #elem,
                count_field: #c,
                max: #max,
                multiply: #multiply,
                local: #local,
            })
        }
        Style::VBuffer {
            len,
            max,
            multiply,
            local,
        } => {
            let c = cow(len.to_string());
            quote!(&_vmstate::__private::Kind::VBuffer { len_field: #c, max: #max, multiply: #multiply, local: #local })
        }
        Style::VStruct { version } => {
            let s = static_ref(quote!(<#ty as _vmstate::__private::VmState>::SCHEMA));
            quote_spanned!(ty.span()=> &_vmstate::__private::Kind::VStruct { schema: #s, version: #version })
        }
        Style::Bitmap { bits, max } => {
            let c = cow(bits.to_string());
            quote!(&_vmstate::__private::Kind::Bitmap { bits_field: #c, max: #max })
        }
        Style::List { max, qlist } => {
            let version = f.elem_version();
            let elem = static_ref(
                quote!(&<<#ty as _vmstate::__private::ListContainer>::Elem as _vmstate::__private::Field>::KIND),
            );
            quote_spanned!(ty.span()=> &_vmstate::__private::Kind::List {
                elem: #elem,
                max: #max,
                version: #version,
                qlist: #qlist,
            })
        }
        Style::Tree { max } => {
            let version = f.elem_version();
            let value = static_ref(
                quote!(&<<#ty as _vmstate::__private::TreeMap>::Value as _vmstate::__private::Field>::KIND),
            );
            quote_spanned!(ty.span()=> &_vmstate::__private::Kind::Tree {
                key: <<#ty as _vmstate::__private::TreeMap>::Key as _vmstate::__private::TreeKey>::KEY_KIND,
                value: #value,
                max: #max,
                version: #version,
            })
        }
        Style::With(m) => {
            quote_spanned!(m.span()=> &_vmstate::__private::Kind::Custom {
                vmdesc_type: _vmstate::__private::Cow::Borrowed(#m::DESCRIPTION.vmdesc_type),
                size: #m::DESCRIPTION.size,
                layout: _vmstate::__private::SchemaRef::Static(&#m::DESCRIPTION.layout),
            })
        }
        Style::Tmp => {
            let view = static_ref(
                quote!(&<<#ty as _vmstate::__private::TmpMarker>::View as _vmstate::__private::Field>::KIND),
            );
            quote_spanned!(ty.span()=> &_vmstate::__private::Kind::Tmp { view: #view })
        }
    };
    static_ref(kind)
}

fn opt_gate(g: Option<&attr::Gate>) -> TokenStream {
    match g {
        Some(g) => {
            let s = gate::schema(g);
            quote!(::core::option::Option::Some(#s))
        }
        None => quote!(::core::option::Option::None),
    }
}

pub fn range_bounds(r: &(syn::Expr, syn::Expr, bool)) -> (TokenStream, TokenStream) {
    let (lo, hi, closed) = r;
    let lo = quote!(((#lo) as i128));
    let hi = if *closed {
        quote!(((#hi) as i128))
    } else {
        quote!((((#hi) as i128) - 1))
    };
    (lo, hi)
}

fn field(f: &Field) -> TokenStream {
    let name = cow(&f.name);
    let vmdesc_name = cow(&f.vmdesc_name);
    let rust_name = cow(f.ident.to_string());
    let kind = kind(f);
    let since = f.since();
    let noop_since = if f.noop_since { f.declared_since() } else { 0 };
    let gate = opt_gate(f.attrs.when.as_ref().map(|w| &w.value));
    let equal = f.attrs.equal.is_some();
    let range = match &f.attrs.range {
        Some(r) => {
            let (lo, hi) = range_bounds(&r.value);
            quote!(::core::option::Option::Some((#lo, #hi)))
        }
        None => quote!(::core::option::Option::None),
    };
    let le = f.attrs.le.is_some();
    let vmdesc_type = match &f.attrs.vmdesc_type {
        Some(t) => {
            let t = cow(&t.value);
            quote!(::core::option::Option::Some(#t))
        }
        None => quote!(::core::option::Option::None),
    };
    let default = match &f.attrs.default {
        Some(d) => {
            let text = match &d.value {
                attr::Default::Trait => "Default::default()".to_owned(),
                attr::Default::Expr(e) => e.to_token_stream().to_string(),
                attr::Default::Keep => "keep".to_owned(),
            };
            let text = cow(text);
            quote!(::core::option::Option::Some(#text))
        }
        None => quote!(::core::option::Option::None),
    };
    let loc = location(f.ident.span());
    quote! {
        _vmstate::__private::FieldSchema {
            name: #name,
            vmdesc_name: #vmdesc_name,
            rust_name: #rust_name,
            kind: #kind,
            since: #since,
            noop_since: #noop_since,
            gate: #gate,
            equal: #equal,
            range: #range,
            le: #le,
            vmdesc_type: #vmdesc_type,
            default: #default,
            location: #loc,
        }
    }
}

pub fn expand(c: &Container) -> TokenStream {
    let name = cow(&c.name);
    let rust_name = cow(c.ident.to_string());
    let version = c.version;
    let min_version = c.min_version;
    let nested = c.nested;
    let priority = c.attrs.priority.as_ref().map_or(0, |p| p.value);
    let gate = opt_gate(c.attrs.when.as_ref().map(|w| &w.value));
    let pins = c.attrs.pins.iter().map(|p| {
        let (maj, min) = p.below;
        let v = p.version;
        let loc = location(p.tokens.span());
        quote!(_vmstate::__private::Pin { below: _vmstate::__private::MachineVersion::new(#maj, #min), version: #v, location: #loc })
    });
    let props = c.attrs.props.iter().map(|p| {
        let n = cow(&p.name);
        let d = p.default;
        quote!(_vmstate::__private::PropSchema { name: #n, default: #d })
    });
    let fields = c.main_fields().map(field);
    let subs = c.attrs.subsections.iter().enumerate().map(|(i, s)| {
        let n = cow(&s.name);
        let v = s.version;
        let mv = s.min_version.as_ref().map_or(1.min(v), |m| m.0);
        let g = opt_gate(s.when.as_ref());
        let fs = c.sub_fields(i).map(field);
        let loc = location(s.name.span());
        quote! {
            _vmstate::__private::SubsectionSchema {
                name: #n, version: #v, min_version: #mv, gate: #g,
                fields: _vmstate::__private::Cow::Borrowed(&[#(#fs),*]),
                location: #loc,
            }
        }
    });
    let mut hooks = Vec::new();
    for (n, set) in [
        ("pre_save", c.attrs.pre_save.is_some()),
        ("post_save", c.attrs.post_save.is_some()),
        ("pre_load", c.attrs.pre_load.is_some()),
        ("post_load", c.attrs.post_load.is_some()),
        ("validate", !c.attrs.validate.is_empty()),
    ] {
        if set {
            hooks.push(cow(n));
        }
    }
    let loc = location(c.ident.span());
    quote! {
        _vmstate::__private::StructSchema {
            name: #name,
            rust_name: #rust_name,
            krate: _vmstate::__private::Cow::Borrowed(::core::env!("CARGO_PKG_NAME")),
            version: #version,
            min_version: #min_version,
            nested: #nested,
            priority: #priority,
            gate: #gate,
            pins: _vmstate::__private::Cow::Borrowed(&[#(#pins),*]),
            props: _vmstate::__private::Cow::Borrowed(&[#(#props),*]),
            fields: _vmstate::__private::Cow::Borrowed(&[#(#fields),*]),
            subsections: _vmstate::__private::Cow::Borrowed(&[#(#subs),*]),
            hooks: _vmstate::__private::Cow::Borrowed(&[#(#hooks),*]),
            location: #loc,
        }
    }
}

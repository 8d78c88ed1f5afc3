//! `save_state`: presence per version and machine type, fields in order, then subsections.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::gate;
use crate::internals::ast::{Container, Field, Style};

/// Presence of a field (expects `__version`, `__g`, `self`).
pub fn present(c: &Container, f: &Field) -> TokenStream {
    let mut parts = Vec::new();
    let since = f.since();
    if since > 0 {
        parts.push(quote!((__version >= #since)));
    }
    if let Some(w) = &f.attrs.when {
        parts.push(gate::eval_field(&w.value, &c.attrs.props));
    }
    if parts.is_empty() {
        quote!(true)
    } else {
        quote!(#(#parts)&&*)
    }
}

fn save_field(
    c: &Container,
    f: &Field,
    schema_ref: &TokenStream,
    sub: Option<&str>,
) -> TokenStream {
    let ident = f.ident;
    let name = &f.name;
    let present = present(c, f);
    let path = match sub {
        Some(s) => quote!(.map_err(|__e| __e.in_field(#name).in_field(#s))),
        None => quote!(.map_err(|__e| __e.in_field(#name))),
    };
    let (save, n) = match &f.style {
        Style::Plain => (
            {
                let codec = crate::internals::field_codec_of(f.ty);
                quote!(#codec::save(&mut self.#ident, __w, __cx)#path?;)
            },
            quote!(1u64),
        ),
        Style::Buffer => (
            quote!(_vmstate::__private::save_buffer(&self.#ident, __w)#path?;),
            quote!(1u64),
        ),
        Style::U16Hack => (
            quote_spanned!(f.ty.span()=> _vmstate::__private::save_u16_hack(self.#ident, __w)#path?;),
            quote!(1u64),
        ),
        Style::VArray {
            count,
            max,
            multiply,
            ..
        } => {
            let count = crate::internals::multiplied(count, *multiply);
            (
                quote!(let __n = _vmstate::__private::save_varray(&mut self.#ident, #count, #max, __w, __cx)#path?;),
                quote!(__n),
            )
        }
        Style::VBuffer {
            len, max, multiply, ..
        } => {
            let len = crate::internals::multiplied(len, *multiply);
            (
                quote!(_vmstate::__private::save_vbuffer(&mut self.#ident, #len, #max, __w)#path?;),
                quote!(1u64),
            )
        }
        Style::VStruct { version } => (
            quote_spanned!(f.ty.span()=> _vmstate::__private::save_vstruct(&mut self.#ident, #version, __w, __cx)#path?;),
            quote!(1u64),
        ),
        Style::Bitmap { bits, max } => (
            quote_spanned!(f.ty.span()=> _vmstate::__private::save_bitmap(&self.#ident, &self.#bits, #max, __w)#path?;),
            quote!(1u64),
        ),
        // Spanned at the field's type: a wrong element type is reported there.
        Style::List { max, .. } => (
            quote_spanned!(f.ty.span()=> let __n = _vmstate::__private::save_list(&mut self.#ident, #max, __w, __cx)#path?;),
            quote!(__n),
        ),
        Style::Tree { max } => (
            quote_spanned!(f.ty.span()=> let __n = _vmstate::__private::save_tree(&mut self.#ident, #max, __w, __cx)#path?;),
            quote!(__n),
        ),
        Style::With(m) => (
            quote_spanned!(m.span()=> _vmstate::__private::save_with(&#m::DESCRIPTION, |__w| #m::save(&self.#ident, __w), __w)#path?;),
            quote!(1u64),
        ),
        Style::Tmp => {
            let ty = f.ty;
            (
                quote_spanned!(f.ty.span()=> _vmstate::__private::save_tmp::<<#ty as _vmstate::__private::TmpMarker>::View, Self, _>(&*self, __w, __cx)#path?;),
                quote!(1u64),
            )
        }
    };
    quote! {
        if #present {
            let __start = _vmstate::__private::Writer::position(__w);
            #save
            if let ::core::option::Option::Some(__d) = __cx.desc() {
                __d.field(#schema_ref, #n, __start, _vmstate::__private::Writer::position(__w));
            }
        }
    }
}

pub fn expand(c: &Container) -> TokenStream {
    let pre_save = c.attrs.pre_save.as_ref().map(|p| {
        let p = &p.value;
        quote!(_vmstate::__private::save_hook(#p(self), "pre_save")?;)
    });
    let post_save = c.attrs.post_save.as_ref().map(|p| {
        let p = &p.value;
        quote!(#p(self);)
    });
    let fields = c.main_fields().enumerate().map(|(i, f)| {
        let r = quote!(&<Self as _vmstate::__private::VmState>::SCHEMA.fields[#i]);
        save_field(c, f, &r, None)
    });
    let subs = c.attrs.subsections.iter().enumerate().map(|(si, s)| {
        let name = &s.name;
        let sname = s.name.value();
        let version = s.version;
        let cond = match &s.when {
            Some(g) => gate::eval(g, &c.attrs.props),
            None => quote!(true),
        };
        let fields = c.sub_fields(si).enumerate().map(|(i, f)| {
            let r = quote!(&<Self as _vmstate::__private::VmState>::SCHEMA.subsections[#si].fields[#i]);
            save_field(c, f, &r, Some(&sname))
        });
        let pre = s.pre_save.as_ref().map(|p| quote!(_vmstate::__private::save_hook(#p(self), #sname).map_err(|__e| __e.in_field(#name))?;));
        let post = s.post_save.as_ref().map(|p| quote!(#p(self);));
        quote! {
            if #cond {
                #pre
                _vmstate::__private::write_subsection_header(__w, #name, #version)?;
                if let ::core::option::Option::Some(__d) = __cx.desc() {
                    __d.subsection_begin(#name, #version, _vmstate::__private::Writer::position(__w));
                }
                {
                    let __version: u32 = #version;
                    #(#fields)*
                }
                if let ::core::option::Option::Some(__d) = __cx.desc() {
                    __d.subsection_end(_vmstate::__private::Writer::position(__w));
                }
                #post
            }
        }
    });
    quote! {
        #[allow(unused_variables, clippy::needless_question_mark)]
        fn save_state<__W: _vmstate::__private::Writer + ?::core::marker::Sized>(
            &mut self,
            __w: &mut __W,
            __version: u32,
            __cx: &mut _vmstate::__private::SaveCx<'_>,
        ) -> _vmstate::__private::Result<()> {
            let __g = *__cx.gates();
            #pre_save
            #(#fields)*
            #(#subs)*
            #post_save
            ::core::result::Result::Ok(())
        }
    }
}

pub fn expand_section_needed(c: &Container) -> TokenStream {
    match &c.attrs.when {
        Some(w) => {
            let e = gate::eval(&w.value, &c.attrs.props);
            quote! {
                fn section_needed(&self, __g: &_vmstate::__private::GateCtx<'_>) -> bool {
                    let __g = *__g;
                    #e
                }
            }
        }
        None => quote!(),
    }
}

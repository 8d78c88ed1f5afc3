//! `load_state`: version checks, `pre_load`, fields (defaults for absent ones), the subsection
//! loop, `post_load(version)`, validations.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::internals::ast::{Container, Field, Style};
use crate::internals::attr;
use crate::schema::range_bounds;
use crate::ser::present;

/// The assignment for an absent field (`keep`: none).
fn absent_assign(f: &Field) -> TokenStream {
    let ident = f.ident;
    match f.attrs.default.as_ref().map(|d| &d.value) {
        Some(attr::Default::Keep) => quote!(),
        Some(attr::Default::Expr(e)) => quote!(self.#ident = #e;),
        Some(attr::Default::Trait) | None => {
            quote!(self.#ident = ::core::default::Default::default();)
        }
    }
}

fn load_field(c: &Container, f: &Field, sub: Option<&str>) -> TokenStream {
    let ident = f.ident;
    let name = &f.name;
    let path = match sub {
        Some(s) => quote!(.map_err(|__e| __e.in_field(#name).in_field(#s))),
        None => quote!(.map_err(|__e| __e.in_field(#name))),
    };
    let load = match &f.style {
        Style::Plain if f.attrs.le.is_some() => {
            quote!(_vmstate::__private::load_le(&mut self.#ident, __r, __cx)#path?;)
        }
        Style::Plain if f.attrs.equal.is_some() => {
            quote!(_vmstate::__private::load_equal(&mut self.#ident, __r, __cx)#path?;)
        }
        Style::Plain => {
            let codec = crate::internals::field_codec_of(f.ty);
            quote!(#codec::load(&mut self.#ident, __r, __cx)#path?;)
        }
        Style::Buffer => quote!(_vmstate::__private::load_buffer(&mut self.#ident, __r)#path?;),
        Style::U16Hack => quote_spanned!(f.ty.span()=>
            _vmstate::__private::load_u16_hack(&mut self.#ident, __r)#path?;
        ),
        Style::VArray {
            count,
            max,
            multiply,
            ..
        } => {
            let count = crate::internals::multiplied(count, *multiply);
            quote!(
                _vmstate::__private::load_varray(&mut self.#ident, #count, #max, __r, __cx)#path?;
            )
        }
        Style::VBuffer {
            len, max, multiply, ..
        } => {
            let len = crate::internals::multiplied(len, *multiply);
            quote!(
                _vmstate::__private::load_vbuffer(&mut self.#ident, #len, #max, __r)#path?;
            )
        }
        Style::VStruct { version } => quote_spanned!(f.ty.span()=>
            _vmstate::__private::load_vstruct(&mut self.#ident, #version, __r, __cx)#path?;
        ),
        Style::Bitmap { bits, max } => quote_spanned!(f.ty.span()=>
            _vmstate::__private::load_bitmap(&mut self.#ident, &self.#bits, #max, __r)#path?;
        ),
        Style::List { max, .. } => {
            let v = f.elem_version();
            quote_spanned!(f.ty.span()=> _vmstate::__private::load_list(&mut self.#ident, #max, #v, __r, __cx)#path?;)
        }
        Style::Tree { max } => {
            let v = f.elem_version();
            quote_spanned!(f.ty.span()=> _vmstate::__private::load_tree(&mut self.#ident, #max, #v, __r, __cx)#path?;)
        }
        Style::With(m) => {
            quote_spanned!(m.span()=> _vmstate::__private::load_with(&#m::DESCRIPTION, |__r| #m::load(&mut self.#ident, __r), __r)#path?;)
        }
        Style::Tmp => {
            let ty = f.ty;
            quote_spanned!(f.ty.span()=> _vmstate::__private::load_tmp::<<#ty as _vmstate::__private::TmpMarker>::View, Self, _>(self, __r, __cx)#path?;)
        }
    };
    let range = f.attrs.range.as_ref().map(|r| {
        let (lo, hi) = range_bounds(&r.value);
        let (a, b, closed) = &r.value;
        let text = format!(
            "a value in {}{}{}",
            a.to_token_stream(),
            if *closed { "..=" } else { ".." },
            b.to_token_stream()
        );
        quote!(_vmstate::__private::check_range(self.#ident, #lo, #hi, #text, __pos)#path?;)
    });
    if !f.conditional() {
        return quote! {{
            let __pos = _vmstate::__private::Reader::position(__r);
            #load
            #range
        }};
    }
    let present = present(c, f);
    let absent = absent_assign(f);
    if f.sub.is_some() && f.since() == 0 && f.attrs.when.is_none() {
        // Only absent when the whole subsection is absent (handled after the loop).
        return quote! {{
            let __pos = _vmstate::__private::Reader::position(__r);
            #load
            #range
        }};
    }
    quote! {{
        let __pos = _vmstate::__private::Reader::position(__r);
        if #present {
            #load
            #range
        } else {
            #absent
        }
    }}
}

pub fn expand(c: &Container) -> TokenStream {
    let name = &c.name;
    let version = c.version;
    let min_version = c.min_version;
    let pre_load = c.attrs.pre_load.as_ref().map(|p| {
        let p = &p.value;
        quote!(_vmstate::__private::load_hook(#p(self), "pre_load", __start)?;)
    });
    let post_load = c.attrs.post_load.as_ref().map(|p| {
        let p = &p.value;
        quote!(_vmstate::__private::load_hook(#p(self, __version), "post_load", __start)?;)
    });
    let validate = c.attrs.validate.iter().map(|p| {
        let text = format!(
            "validate {}",
            p.to_token_stream().to_string().replace(' ', "")
        );
        quote!(_vmstate::__private::load_hook(#p(&*self), #text, __start)?;)
    });
    let fields = c.main_fields().map(|f| load_field(c, f, None));
    let names: Vec<&syn::LitStr> = c.attrs.subsections.iter().map(|s| &s.name).collect();
    let nsub = names.len();
    let arms = c.attrs.subsections.iter().enumerate().map(|(si, s)| {
        let sname = s.name.value();
        let lit = &s.name;
        let v = s.version;
        let mv = s.min_version.as_ref().map_or(1.min(v), |m| m.0);
        let fields = c.sub_fields(si).map(|f| load_field(c, f, Some(&sname)));
        let pre = s.pre_load.as_ref().map(|p| quote!(_vmstate::__private::load_hook(#p(self), "pre_load", __pos).map_err(|__e| __e.in_field(#lit))?;));
        let post = s.post_load.as_ref().map(|p| quote!(_vmstate::__private::load_hook(#p(self, __v), "post_load", __pos).map_err(|__e| __e.in_field(#lit))?;));
        quote! {
            #si => {
                _vmstate::__private::check_version(__v, #mv, #v, __pos).map_err(|__e| __e.in_field(#lit))?;
                #pre
                {
                    let __version: u32 = __v;
                    #(#fields)*
                }
                // A subsection's own subsections: none are declared, so one with our prefix is unknown.
                while let ::core::option::Option::Some(_) =
                    _vmstate::__private::next_subsection(__r, #lit, &[]).map_err(|__e| __e.in_field(#lit))?
                {}
                #post
            }
        }
    });
    let absent = c.attrs.subsections.iter().enumerate().map(|(si, _)| {
        let sets = c.sub_fields(si).map(absent_assign);
        quote! {
            if !__seen[#si] {
                #(#sets)*
            }
        }
    });
    quote! {
        #[allow(unused_variables, unused_mut, clippy::needless_question_mark, clippy::match_single_binding)]
        fn load_state<__R: _vmstate::__private::Reader + ?::core::marker::Sized>(
            &mut self,
            __r: &mut __R,
            __version: u32,
            __cx: &mut _vmstate::__private::LoadCx<'_>,
        ) -> _vmstate::__private::Result<()> {
            let __g = *__cx.gates();
            let __start = _vmstate::__private::Reader::position(__r);
            _vmstate::__private::check_version(__version, #min_version, #version, __start)?;
            #pre_load
            #(#fields)*
            const __NAMES: [&str; #nsub] = [#(#names),*];
            let mut __seen = [false; #nsub];
            while let ::core::option::Option::Some((__i, __v)) =
                _vmstate::__private::next_subsection(__r, #name, &__NAMES)?
            {
                let __pos = _vmstate::__private::Reader::position(__r);
                if __seen[__i] {
                    return ::core::result::Result::Err(_vmstate::__private::duplicate_subsection(__NAMES[__i], __pos));
                }
                __seen[__i] = true;
                match __i {
                    #(#arms)*
                    _ => {}
                }
            }
            #(#absent)*
            #post_load
            #(#validate)*
            ::core::result::Result::Ok(())
        }
    }
}

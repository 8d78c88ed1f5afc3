use proc_macro2::TokenStream;
use quote::quote;

use crate::internals::ast::{Container, Style};
use crate::internals::symbol::NESTED;
use crate::internals::Ctxt;
use crate::{de, dummy, fallback, schema, ser};

pub fn derive(input: &syn::DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let cont = Container::from_ast(&cx, input);
    let stub_nested = cont
        .as_ref()
        .is_some_and(|c| c.nested || c.attrs.failed.any(&[NESTED]));
    if let Err(e) = cx.check() {
        return fallback::expand(input, stub_nested, e);
    }
    let Some(cont) = cont else {
        let e = syn::Error::new_spanned(input, "invalid input");
        return fallback::expand(input, false, e);
    };
    let ident = cont.ident;
    let schema = schema::expand(&cont);
    let save = ser::expand(&cont);
    let load = de::expand(&cont);
    let needed = ser::expand_section_needed(&cont);
    let nested = if cont.nested {
        let name = &cont.name;
        let version = cont.version;
        quote! {
            #[automatically_derived]
            impl _vmstate::__private::Field for #ident {
                const KIND: _vmstate::__private::Kind = _vmstate::__private::Kind::Struct {
                    schema: _vmstate::__private::SchemaRef::Static(<Self as _vmstate::__private::VmState>::SCHEMA),
                };
                #[inline]
                fn save_field<__W: _vmstate::__private::Writer + ?::core::marker::Sized>(
                    &mut self,
                    __w: &mut __W,
                    __cx: &mut _vmstate::__private::SaveCx<'_>,
                ) -> _vmstate::__private::Result<()> {
                    if let ::core::option::Option::Some(__d) = __cx.desc() {
                        __d.struct_begin(#name, #version, _vmstate::__private::Writer::position(__w));
                    }
                    <Self as _vmstate::__private::VmState>::save_state(self, __w, #version, __cx)?;
                    if let ::core::option::Option::Some(__d) = __cx.desc() {
                        __d.struct_end(_vmstate::__private::Writer::position(__w));
                    }
                    ::core::result::Result::Ok(())
                }
                #[inline]
                fn load_field<__R: _vmstate::__private::Reader + ?::core::marker::Sized>(
                    &mut self,
                    __r: &mut __R,
                    __cx: &mut _vmstate::__private::LoadCx<'_>,
                ) -> _vmstate::__private::Result<()> {
                    <Self as _vmstate::__private::VmState>::load_state(self, __r, #version, __cx)
                }
            }
            #[automatically_derived]
            impl _vmstate::__private::NestedState for #ident {}
        }
    } else {
        quote! {}
    };
    // Top-level sections register their description so tools find every device of a crate
    // (`export_schemas!`) without a hand-written list.
    let register = if cont.nested {
        quote! {}
    } else {
        quote! {
            #[_vmstate::__private::linkme::distributed_slice(_vmstate::__private::SCHEMAS)]
            #[linkme(crate = _vmstate::__private::linkme)]
            static __VMSTATE_SCHEMA: &'static _vmstate::__private::StructSchema =
                <#ident as _vmstate::__private::VmState>::SCHEMA;
        }
    };
    let codec = field_codecs(&cont);
    let body = quote! {
        #codec
        #register
        #[automatically_derived]
        impl _vmstate::__private::VmState for #ident {
            const SCHEMA: &'static _vmstate::__private::StructSchema = &#schema;
            #save
            #load
            #needed
        }
        #nested
    };
    dummy::wrap_in_const(cont.attrs.crate_path.as_ref(), body)
}

/// The traits generated code names a plain field's codec through: `<T as …FieldCodec>::KIND`,
/// `::save`, `::load`, each spanned at the field's type (`internals::field_codec_of`).
///
/// A struct used as a field must be `#[vmstate(nested)]`, but the derive on the outer struct
/// cannot see the inner struct's attributes; only the compiler finds out, through a missing
/// `Field` impl. Naming `Field` directly gave one error per use (the description at the type,
/// save and load at the derive) naming the hidden alias `_::_vmstate::Field`. Through these
/// traits every use fails with the same obligation at the same span, which the compiler reports
/// once; `#[diagnostic::do_not_recommend]` on the blanket impl makes it report that obligation
/// (with this trait's message, which names the fix) rather than the `Field` bound behind it.
fn field_codecs(cont: &Container) -> TokenStream {
    let mut used: Vec<&'static str> = cont
        .main_fields()
        .chain((0..cont.attrs.subsections.len()).flat_map(|i| cont.sub_fields(i)))
        .filter(|f| matches!(f.style, Style::Plain))
        .map(|f| crate::internals::field_codec_name(f.ty))
        .collect();
    used.sort_unstable();
    used.dedup();
    used.into_iter()
        .map(|name| {
            let (message, fix) = if name.contains("Array") {
                (
                    "`{Self}` is used as a vmstate field but its element type is not `#[vmstate(nested)]`",
                    "if the element type is a struct, add `#[derive(VmState)]` and `#[vmstate(name = \"...\", nested)]` to its definition",
                )
            } else {
                (
                    "`{Self}` is used as a vmstate field but is not `#[vmstate(nested)]`",
                    "if `{Self}` is a struct, add `#[derive(VmState)]` and `#[vmstate(name = \"...\", nested)]` to its definition",
                )
            };
            codec_trait(name, message, fix)
        })
        .collect()
}

fn codec_trait(name: &str, message: &str, fix: &str) -> TokenStream {
    let codec = syn::Ident::new(name, proc_macro2::Span::call_site());
    quote! {
        #[diagnostic::on_unimplemented(
            message = #message,
            label = "no VMState codec for this type",
            note = #fix,
            note = "the other field types are bool, u8..u64, i8..i64, Timer, Unused<N> and fixed arrays of these"
        )]
        trait #codec {
            const KIND: _vmstate::__private::Kind;
            fn save<__W: _vmstate::__private::Writer + ?::core::marker::Sized>(
                &mut self,
                __w: &mut __W,
                __cx: &mut _vmstate::__private::SaveCx<'_>,
            ) -> _vmstate::__private::Result<()>;
            fn load<__R: _vmstate::__private::Reader + ?::core::marker::Sized>(
                &mut self,
                __r: &mut __R,
                __cx: &mut _vmstate::__private::LoadCx<'_>,
            ) -> _vmstate::__private::Result<()>;
        }
        #[diagnostic::do_not_recommend]
        impl<__T: _vmstate::__private::Field> #codec for __T {
            const KIND: _vmstate::__private::Kind = <__T as _vmstate::__private::Field>::KIND;
            #[inline]
            fn save<__W: _vmstate::__private::Writer + ?::core::marker::Sized>(
                &mut self,
                __w: &mut __W,
                __cx: &mut _vmstate::__private::SaveCx<'_>,
            ) -> _vmstate::__private::Result<()> {
                _vmstate::__private::Field::save_field(self, __w, __cx)
            }
            #[inline]
            fn load<__R: _vmstate::__private::Reader + ?::core::marker::Sized>(
                &mut self,
                __r: &mut __R,
                __cx: &mut _vmstate::__private::LoadCx<'_>,
            ) -> _vmstate::__private::Result<()> {
                _vmstate::__private::Field::load_field(self, __r, __cx)
            }
        }
    }
}

use proc_macro2::TokenStream;
use quote::quote;

use crate::dummy;

/// On invalid input: the compile errors plus a stub impl, so users don't get a cascade of
/// "trait not implemented" errors on top of the real ones. `nested` (decided by the parser:
/// `nested` was given, or an unknown key was a near miss of it) adds a stub `Field` impl, so
/// the structs that hold this one as a field get no follow-on error either.
pub fn expand(input: &syn::DeriveInput, nested: bool, error: syn::Error) -> TokenStream {
    let errors = error.into_compile_error();
    let ident = &input.ident;
    if !input.generics.params.is_empty() {
        return errors;
    }
    let nested_impl = if nested {
        quote! {
            #[automatically_derived]
            impl _vmstate::__private::Field for #ident {
                const KIND: _vmstate::__private::Kind = _vmstate::__private::Kind::Struct {
                    schema: _vmstate::__private::SchemaRef::Static(<Self as _vmstate::__private::VmState>::SCHEMA),
                };
                fn save_field<__W: _vmstate::__private::Writer + ?::core::marker::Sized>(&mut self, _: &mut __W, _: &mut _vmstate::__private::SaveCx<'_>) -> _vmstate::__private::Result<()> { ::core::unreachable!() }
                fn load_field<__R: _vmstate::__private::Reader + ?::core::marker::Sized>(&mut self, _: &mut __R, _: &mut _vmstate::__private::LoadCx<'_>) -> _vmstate::__private::Result<()> { ::core::unreachable!() }
            }
            impl _vmstate::__private::NestedState for #ident {}
        }
    } else {
        quote! {}
    };
    let stub = quote! {
        #[automatically_derived]
        impl _vmstate::__private::VmState for #ident {
            const SCHEMA: &'static _vmstate::__private::StructSchema = &_vmstate::__private::StructSchema {
                name: _vmstate::__private::Cow::Borrowed(""),
                rust_name: _vmstate::__private::Cow::Borrowed(""),
                krate: _vmstate::__private::Cow::Borrowed(""),
                version: 0, min_version: 0, nested: false, priority: 0,
                gate: ::core::option::Option::None,
                pins: _vmstate::__private::Cow::Borrowed(&[]),
                props: _vmstate::__private::Cow::Borrowed(&[]),
                fields: _vmstate::__private::Cow::Borrowed(&[]),
                subsections: _vmstate::__private::Cow::Borrowed(&[]),
                hooks: _vmstate::__private::Cow::Borrowed(&[]),
                location: _vmstate::__private::Location {
                    file: _vmstate::__private::Cow::Borrowed(""), line: 0, column: 0,
                },
            };
            fn save_state<__W: _vmstate::__private::Writer + ?::core::marker::Sized>(&mut self, _: &mut __W, _: u32, _: &mut _vmstate::__private::SaveCx<'_>) -> _vmstate::__private::Result<()> { ::core::unreachable!() }
            fn load_state<__R: _vmstate::__private::Reader + ?::core::marker::Sized>(&mut self, _: &mut __R, _: u32, _: &mut _vmstate::__private::LoadCx<'_>) -> _vmstate::__private::Result<()> { ::core::unreachable!() }
        }
        #nested_impl
    };
    let wrapped = dummy::wrap_in_const(None, stub);
    quote! { #errors #wrapped }
}

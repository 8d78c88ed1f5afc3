use proc_macro2::TokenStream;
use quote::quote;

use crate::internals::symbol::NESTED;
use crate::internals::{ast::Container, Ctxt};
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
    let body = quote! {
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

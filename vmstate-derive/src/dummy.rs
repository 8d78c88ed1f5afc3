use proc_macro2::TokenStream;
use quote::quote;

/// Wraps generated items in `const _: () = { ... }` with the runtime aliased as `_vmstate`.
pub fn wrap_in_const(crate_path: Option<&syn::Path>, code: TokenStream) -> TokenStream {
    let use_rt = match crate_path {
        Some(path) => quote! { use #path as _vmstate; },
        None => quote! {
            #[allow(unused_extern_crates, clippy::useless_attribute)]
            extern crate vmstate_runtime as _vmstate;
        },
    };
    quote! {
        #[doc(hidden)]
        #[allow(
            dead_code,
            non_upper_case_globals,
            unused_attributes,
            unused_qualifications,
            unused_variables,
            unused_mut,
            clippy::all,
            clippy::pedantic
        )]
        const _: () = {
            #use_rt
            #code
        };
    }
}

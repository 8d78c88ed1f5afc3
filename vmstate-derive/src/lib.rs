//! `#[derive(VmState)]`. Use it through `vmstate-runtime`, which re-exports it.
use proc_macro::TokenStream;

/// Derives `VmState`.
#[proc_macro_derive(VmState, attributes(vmstate))]
pub fn derive_vmstate(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}

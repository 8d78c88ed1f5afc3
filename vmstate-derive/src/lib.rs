//! `#[derive(VmState)]`. Use it through `vmstate-runtime`, which re-exports it; the attribute
//! reference, with examples, is the documentation of [`VmState`](macro@VmState) (and
//! `vmstate_runtime::dsl`).
//!
//! The derive works in three stages: parse attributes (`internals/attr.rs`), build and check the
//! intermediate representation (`internals/ast.rs`, `internals/check.rs`), and generate code
//! (`ser.rs`, `de.rs`, `schema.rs`). Errors are accumulated and reported together, each spanned
//! at the offending tokens; on error a stub impl is emitted so users see only the real mistakes.

mod de;
mod dummy;
mod expand;
mod fallback;
mod gate;
mod internals;
mod schema;
mod ser;

use proc_macro::TokenStream;

/// Derives `vmstate_runtime::VmState`: save/load code and the static schema of a device's state.
///
#[doc = include_str!("dsl.md")]
#[proc_macro_derive(VmState, attributes(vmstate))]
pub fn derive_vmstate(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}

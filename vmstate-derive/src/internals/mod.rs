pub mod ast;
pub mod attr;
pub mod check;
pub mod ctxt;
pub mod gate_expr;
pub mod items;
pub mod suggest;
pub mod symbol;

pub use ctxt::Ctxt;

/// The trait generated code reaches a plain field's codec through: one for arrays, one for
/// everything else, so the "not `nested`" error can speak of the element type for arrays. Both
/// are defined inside the `const _` block (see `expand::field_codecs`), so they cannot clash
/// with user items outside it.
pub fn field_codec_name(ty: &syn::Type) -> &'static str {
    match ty {
        syn::Type::Array(_) => "__VmStateArrayFieldCodec",
        syn::Type::Paren(p) => field_codec_name(&p.elem),
        syn::Type::Group(g) => field_codec_name(&g.elem),
        _ => "__VmStateFieldCodec",
    }
}

/// `<#ty as __VmState…FieldCodec>`, spanned at the field's type: every use of a field type's
/// codec fails at the same place with the same message, which the compiler then reports once.
pub fn field_codec_of(ty: &syn::Type) -> proc_macro2::TokenStream {
    use quote::quote_spanned;
    use syn::spanned::Spanned;
    let codec = syn::Ident::new(field_codec_name(ty), ty.span());
    quote_spanned!(ty.span()=> <#ty as #codec>)
}

/// The count argument of a variable array or buffer: `&self.f`, or with a multiplier (QEMU's
/// `VMS_MULTIPLY`) `&Multiplied(&self.f, K)`.
pub fn multiplied(count: &syn::Ident, multiply: u32) -> proc_macro2::TokenStream {
    // Spanned at the count's name: a count field of a type that is not an integer is reported
    // there.
    let span = count.span();
    if multiply == 1 {
        quote::quote_spanned!(span=> &self.#count)
    } else {
        quote::quote_spanned!(span=> &_vmstate::__private::Multiplied(&self.#count, #multiply))
    }
}

//! Gate expressions: runtime evaluation code and the static description.

use proc_macro2::TokenStream;
use quote::quote;

use crate::internals::attr::{Gate, Op, Prop};

fn op_tokens(op: Op) -> TokenStream {
    match op {
        Op::Ge => quote!(_vmstate::__private::CmpOp::Ge),
        Op::Gt => quote!(_vmstate::__private::CmpOp::Gt),
        Op::Lt => quote!(_vmstate::__private::CmpOp::Lt),
        Op::Le => quote!(_vmstate::__private::CmpOp::Le),
        Op::Eq => quote!(_vmstate::__private::CmpOp::Eq),
        Op::Ne => quote!(_vmstate::__private::CmpOp::Ne),
    }
}

/// Code evaluating a section or subsection gate; expects `__g: GateCtx` and `self` in scope.
/// A predicate there is `fn(&Self) -> bool` (QEMU's `needed` has no version either).
pub fn eval(g: &Gate, props: &[Prop]) -> TokenStream {
    eval_in(g, props, false)
}

/// Code evaluating a field gate; also expects `__version: u32` (the version of the vmsd being
/// saved or loaded). A predicate there is `fn(&Self) -> bool` or, like QEMU's `field_exists`,
/// `fn(&Self, u32) -> bool`, which receives that version.
pub fn eval_field(g: &Gate, props: &[Prop]) -> TokenStream {
    eval_in(g, props, true)
}

fn eval_in(g: &Gate, props: &[Prop], version: bool) -> TokenStream {
    match g {
        Gate::Machine { op, major, minor } => {
            let op = op_tokens(*op);
            quote!(__g.machine_cmp(#op, _vmstate::__private::MachineVersion::new(#major, #minor)))
        }
        Gate::Prop(name) => {
            let default = props
                .iter()
                .find(|p| p.name.value() == name.value())
                .is_some_and(|p| p.default);
            quote!(__g.prop(#name, #default))
        }
        Gate::Pred(path) if version => {
            // Spanned at the path: a predicate of the wrong shape is reported there.
            let span = syn::spanned::Spanned::span(path);
            quote::quote_spanned!(span=> _vmstate::__private::call_pred::<Self, _, _>(#path, &*self, __version))
        }
        Gate::Pred(path) => quote!((#path)(&*self)),
        Gate::All(gs) => {
            let parts = gs.iter().map(|g| eval_in(g, props, version));
            quote!((true #(&& #parts)*))
        }
        Gate::Any(gs) => {
            let parts = gs.iter().map(|g| eval_in(g, props, version));
            quote!((false #(|| #parts)*))
        }
        Gate::Not(g) => {
            let inner = eval_in(g, props, version);
            quote!((!#inner))
        }
    }
}

/// A `SchemaRef<Gate>` constant expression.
pub fn schema(g: &Gate) -> TokenStream {
    let inner = schema_value(g);
    crate::schema::static_ref(quote!(&#inner))
}

fn schema_value(g: &Gate) -> TokenStream {
    match g {
        Gate::Machine { op, major, minor } => {
            let op = op_tokens(*op);
            quote!(_vmstate::__private::Gate::Machine { op: #op, version: _vmstate::__private::MachineVersion::new(#major, #minor) })
        }
        Gate::Prop(name) => {
            let name = crate::schema::cow(name);
            quote!(_vmstate::__private::Gate::Prop { name: #name })
        }
        Gate::Pred(path) => {
            let text = quote!(#path).to_string().replace(' ', "");
            let text = crate::schema::cow(text);
            quote!(_vmstate::__private::Gate::Pred { path: #text })
        }
        Gate::All(gs) => {
            let parts = gs.iter().map(schema_value);
            quote!(_vmstate::__private::Gate::All(_vmstate::__private::Cow::Borrowed(&[#(#parts),*])))
        }
        Gate::Any(gs) => {
            let parts = gs.iter().map(schema_value);
            quote!(_vmstate::__private::Gate::Any(_vmstate::__private::Cow::Borrowed(&[#(#parts),*])))
        }
        Gate::Not(g) => {
            let inner = schema_value(g);
            let inner = crate::schema::static_ref(quote!(&#inner));
            quote!(_vmstate::__private::Gate::Not(#inner))
        }
    }
}

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

/// Code evaluating the gate; expects `__g: GateCtx` and `self` in scope.
pub fn eval(g: &Gate, props: &[Prop]) -> TokenStream {
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
        Gate::Pred(path) => quote!((#path)(&*self)),
        Gate::All(gs) => {
            let parts = gs.iter().map(|g| eval(g, props));
            quote!((true #(&& #parts)*))
        }
        Gate::Any(gs) => {
            let parts = gs.iter().map(|g| eval(g, props));
            quote!((false #(|| #parts)*))
        }
        Gate::Not(g) => {
            let inner = eval(g, props);
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

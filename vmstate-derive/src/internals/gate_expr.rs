//! Gate expressions in attributes: `machine >= "7.0"`, `prop("…")`, `pred(path)`, `all(...)`,
//! `any(...)`, `not(...)`. Parsing only; `crate::gate` generates the code.

use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Ident, LitStr, Token};

use super::ctxt::Ctxt;
use super::items::drain;
use super::suggest::did_you_mean;
use super::symbol::{words, ALL, ANY, GATE_WORDS, MACHINE, NOT, PRED, PROP};

/// Comparison operator of a machine gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Lt,
    Le,
    Eq,
    Ne,
}

/// A parsed gate expression.
#[derive(Clone)]
pub enum Gate {
    Machine { op: Op, major: u16, minor: u16 },
    Prop(LitStr),
    Pred(syn::Path),
    All(Vec<Gate>),
    Any(Vec<Gate>),
    Not(Box<Gate>),
}

impl Gate {
    /// Every `prop("…")` the gate reads.
    pub fn props(&self, out: &mut Vec<LitStr>) {
        match self {
            Gate::Prop(l) => out.push(l.clone()),
            Gate::All(gs) | Gate::Any(gs) => gs.iter().for_each(|g| g.props(out)),
            Gate::Not(g) => g.props(out),
            Gate::Machine { .. } | Gate::Pred(_) => {}
        }
    }

    /// Whether any part needs the runtime state.
    #[allow(dead_code)]
    pub fn has_pred(&self) -> bool {
        match self {
            Gate::Pred(_) => true,
            Gate::All(gs) | Gate::Any(gs) => gs.iter().any(Gate::has_pred),
            Gate::Not(g) => g.has_pred(),
            Gate::Machine { .. } | Gate::Prop(_) => false,
        }
    }
}

/// Parses `major.minor`.
pub fn parse_machine_version(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('.')?;
    if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

const GATE_HELP: &str = "expected a gate: `machine >= \"X.Y\"` (or >, <, <=, ==, !=), `prop(\"name\")`, `pred(path)`, `all(...)`, `any(...)` or `not(...)`";

fn parse_gate(cx: &Ctxt, input: ParseStream) -> syn::Result<Gate> {
    let ident: Ident = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), GATE_HELP))?;
    // An unknown word is reported as such before its syntax is looked at: `machin >= "6.0"`
    // would otherwise fail as "expected parentheses".
    if !GATE_WORDS.iter().any(|w| ident == *w) {
        let word = ident.to_string();
        let hint =
            did_you_mean(&word, words(GATE_WORDS)).unwrap_or_else(|| format!("; {GATE_HELP}"));
        return Err(syn::Error::new(
            ident.span(),
            format!("unknown gate `{word}`{hint}"),
        ));
    }
    if ident == MACHINE {
        let op = if input.peek(Token![>=]) {
            input.parse::<Token![>=]>()?;
            Op::Ge
        } else if input.peek(Token![<=]) {
            input.parse::<Token![<=]>()?;
            Op::Le
        } else if input.peek(Token![==]) {
            input.parse::<Token![==]>()?;
            Op::Eq
        } else if input.peek(Token![!=]) {
            input.parse::<Token![!=]>()?;
            Op::Ne
        } else if input.peek(Token![>]) {
            input.parse::<Token![>]>()?;
            Op::Gt
        } else if input.peek(Token![<]) {
            input.parse::<Token![<]>()?;
            Op::Lt
        } else {
            return Err(input.error(
                "expected a comparison after `machine`: `>=`, `>`, `<`, `<=`, `==` or `!=`",
            ));
        };
        let lit: LitStr = input.parse()?;
        let (major, minor) = parse_machine_version(&lit.value()).unwrap_or_else(|| {
            cx.error_spanned_by(
                &lit,
                format!(
                    "machine version `{}` cannot be evaluated: expected \"major.minor\", e.g. \"7.2\"",
                    lit.value()
                ),
            );
            (0, 0)
        });
        return Ok(Gate::Machine { op, major, minor });
    }
    let content;
    syn::parenthesized!(content in input);
    let r = parse_gate_args(cx, &ident, &content);
    if r.is_err() {
        // Consume what is left inside the parentheses: syn reports leftover tokens of a group
        // as a second error ("unexpected token") when the attribute is finished.
        drain(&content);
    }
    r
}

/// The part of a gate inside the parentheses after `prop`, `pred`, `all`, `any` or `not`.
fn parse_gate_args(cx: &Ctxt, ident: &Ident, content: ParseStream) -> syn::Result<Gate> {
    if ident == PROP {
        let lit: LitStr = content.parse()?;
        if lit.value().is_empty() {
            cx.error_spanned_by(&lit, "property name must not be empty");
        }
        Ok(Gate::Prop(lit))
    } else if ident == PRED {
        Ok(Gate::Pred(content.parse()?))
    } else if ident == ALL || ident == ANY {
        let mut gs = Vec::new();
        while !content.is_empty() {
            gs.push(parse_gate(cx, content)?);
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        if gs.is_empty() {
            return Err(syn::Error::new(
                ident.span(),
                format!("`{ident}()` needs at least one gate"),
            ));
        }
        Ok(if ident == ALL {
            Gate::All(gs)
        } else {
            Gate::Any(gs)
        })
    } else if ident == NOT {
        let g = parse_gate(cx, content)?;
        if !content.is_empty() {
            return Err(content.error("`not(...)` takes one gate"));
        }
        Ok(Gate::Not(Box::new(g)))
    } else {
        // Not reached: `parse_gate` only gets here for the words above.
        Err(syn::Error::new(ident.span(), GATE_HELP))
    }
}

pub fn gate_value(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Gate> {
    let value = meta.value()?;
    parse_gate(cx, value)
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;
    use syn::parse::{ParseStream, Parser};

    use super::{parse_gate, Gate, Op};
    use crate::internals::Ctxt;

    fn parse(tokens: TokenStream) -> (Result<Gate, String>, Result<(), String>) {
        let cx = Ctxt::new();
        let g = (|input: ParseStream| parse_gate(&cx, input))
            .parse2(tokens)
            .map_err(|e| e.to_string());
        (g, cx.check().map_err(|e| e.to_string()))
    }

    #[test]
    fn parses_nested_gates() {
        let (g, cx) = parse(quote!(all(
            machine >= "6.0",
            not(prop("x-a")),
            pred(Self::busy)
        )));
        assert!(cx.is_ok());
        let Ok(Gate::All(parts)) = g else {
            panic!("expected all(...)")
        };
        assert!(matches!(
            parts[0],
            Gate::Machine {
                op: Op::Ge,
                major: 6,
                minor: 0
            }
        ));
        assert!(matches!(&parts[1], Gate::Not(inner) if matches!(**inner, Gate::Prop(_))));
        assert!(matches!(parts[2], Gate::Pred(_)));
    }

    #[test]
    fn misspelt_word_is_named_with_a_suggestion() {
        let (g, _) = parse(quote!(machin >= "6.0"));
        assert_eq!(
            g.err().as_deref(),
            Some("unknown gate `machin`; did you mean `machine`?")
        );
        let (g, _) = parse(quote!(sometimes(1)));
        assert!(g
            .err()
            .is_some_and(|e| e.starts_with("unknown gate `sometimes`; expected a gate")));
    }

    #[test]
    fn bad_machine_version_is_reported_once_and_parsing_goes_on() {
        let (g, cx) = parse(quote!(machine >= "seven"));
        assert!(g.is_ok());
        assert!(cx.is_err_and(|e| e.contains("`seven` cannot be evaluated")));
    }
}

//! The recovery machinery of attribute parsing: one item at a time, a failed item reported and
//! skipped, the slot it would have filled recorded (`Failed`), unknown keys with "did you mean".

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};

use super::ctxt::Ctxt;
use super::symbol::{words, Symbol, CONTAINER_KEYS, FIELD_KEYS, MINIMUM_VERSION, VMSTATE};

/// Reports an unknown key: "did you mean" the closest key valid in this position, or else
/// `otherwise` (the list of valid keys).
pub fn unknown(cx: &Ctxt, meta: &ParseNestedMeta, what: &str, valid: &[Symbol], otherwise: &str) {
    let path = meta.path.to_token_stream().to_string().replace(' ', "");
    let hint = if let Some(s) = super::suggest::closest(&path, words(valid)) {
        format!("; did you mean `{s}`?")
    } else if let Some((s, place)) = misplaced_near_miss(&path, what) {
        format!("; did you mean `{s}`? It belongs {place}")
    } else {
        otherwise.to_owned()
    };
    cx.error_spanned_by(
        &meta.path,
        format!("unknown vmstate {what} attribute `{path}`{hint}"),
    );
}

/// The last branch of a key parser in the `what` position ("container" or "field"), whose keys
/// are `valid`: a key of the other position (`elsewhere`, where it belongs `place`) is reported
/// as misplaced, any other key as [`unknown`]; either way its value is skipped.
pub fn other_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    what: &str,
    valid: &[Symbol],
    elsewhere: &[Symbol],
    place: &str,
) {
    let p = &meta.path;
    if elsewhere.iter().any(|&k| p == k) && !valid.iter().any(|&k| p == k) {
        let key = p.to_token_stream().to_string();
        cx.error_spanned_by(
            p,
            format!("`{key}` is not expected here; the `{key}` attribute belongs {place}"),
        );
    } else {
        unknown(cx, meta, what, valid, &expected_one_of(valid));
    }
    skip_to_comma(meta.input);
}

/// A near miss of a key that is valid only in the other position (`verison` on a field): the
/// key and where it belongs.
fn misplaced_near_miss(key: &str, what: &str) -> Option<(&'static str, &'static str)> {
    let (keys, place) = match what {
        "field" => (CONTAINER_KEYS, "on the struct, not on a field"),
        "container" => (FIELD_KEYS, "on a field, not on the struct"),
        _ => return None,
    };
    super::suggest::closest(key, words(keys)).map(|s| (s, place))
}

/// "; expected one of a, b, c".
pub fn expected_one_of(keys: &[Symbol]) -> String {
    format!(
        "; expected one of {}",
        words(keys).collect::<Vec<_>>().join(", ")
    )
}

/// Consumes the tokens up to the next `,` at this nesting level (or the end).
pub fn skip_to_comma(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if matches!(&tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
            rest = next;
        }
        Ok(((), rest))
    });
}

/// Consumes everything left in `input`.
pub fn drain(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((_, next)) = rest.token_tree() {
            rest = next;
        }
        Ok(((), rest))
    });
}

/// The keys whose slots a mistake may have left empty or wrong. A key that failed to parse
/// (malformed value, duplicate, conflict) names its own slot; an unknown key names the slot of
/// the valid key it is closest to (`sinse` → `since`); an unknown key close to none names no
/// slot; a syntax error that ends the attribute early marks every slot.
#[derive(Default)]
pub struct Failed(Vec<&'static str>);

impl Failed {
    const ALL: &'static str = "*";

    /// Whether any of `keys` may have been left empty or wrong.
    pub fn any(&self, keys: &[Symbol]) -> bool {
        self.0
            .iter()
            .any(|f| *f == Self::ALL || keys.iter().any(|k| k.as_str() == *f))
    }

    pub fn record(&mut self, path: &syn::Path, valid: &[Symbol]) {
        let key = path.to_token_stream().to_string().replace(' ', "");
        let slot = valid
            .iter()
            .map(|k| k.as_str())
            .find(|k| *k == key || (key == "min_version" && *k == MINIMUM_VERSION.as_str()))
            .or_else(|| super::suggest::closest(&key, words(valid)));
        self.0.extend(slot);
    }

    pub fn all(&mut self) {
        self.0.push(Self::ALL);
    }
}

/// Runs the parser of the items of every `#[vmstate(...)]` attribute in `attrs`, recording in
/// `failed` the slots of the items that reported errors. A bare `#[vmstate]` is an error; other
/// attributes are not ours.
pub fn parse_items<F>(
    cx: &Ctxt,
    attrs: &[syn::Attribute],
    valid: &[Symbol],
    failed: &mut Failed,
    mut f: F,
) where
    F: FnMut(&ParseNestedMeta) -> syn::Result<()>,
{
    for attr in attrs {
        if attr.path() != VMSTATE {
            continue;
        }
        if let syn::Meta::Path(_) = attr.meta {
            cx.error_spanned_by(attr, "expected `#[vmstate(...)]` with arguments");
            continue;
        }
        let r = attr.parse_nested_meta(|meta| {
            let cp = cx.checkpoint();
            key(cx, &meta, &mut f)?;
            if cx.errors_since(cp) {
                failed.record(&meta.path, valid);
            }
            Ok(())
        });
        if let Err(e) = r {
            cx.syn_error(e);
            failed.all();
        }
    }
}

/// Parses the `(k = v, ...)` of a nested declaration with `logic`, like
/// `ParseNestedMeta::parse_nested_meta`, but over a copy of the tokens: a syntax error inside
/// the parentheses is then reported once, not again as "unexpected token" when the enclosing
/// attribute finishes.
pub fn nested_items<F>(meta: &ParseNestedMeta, logic: F) -> syn::Result<()>
where
    F: FnMut(ParseNestedMeta) -> syn::Result<()>,
{
    let content;
    syn::parenthesized!(content in meta.input);
    let tokens: TokenStream = content.parse()?;
    syn::meta::parser(logic).parse2(tokens)
}

/// Parses a nested declaration (`subsection(...)`, `pin(...)`, `prop(...)`); on a syntax error
/// it is reported and dropped, and the parsing of the attribute goes on.
pub fn declaration<T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    parse: fn(&Ctxt, &ParseNestedMeta) -> syn::Result<T>,
) -> Option<T> {
    match parse(cx, meta) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.syn_error(e);
            skip_to_comma(meta.input);
            None
        }
    }
}

/// Parses one `key = value` item with `f`. If it fails, the error goes to the context and the
/// rest of the item is skipped, so the keys after it are still parsed and reported: one error
/// per mistake, and the failed key's slot simply stays empty (the caller marks the field or
/// container as having errors, see `Ctxt::checkpoint`).
pub fn key<F>(cx: &Ctxt, meta: &ParseNestedMeta, f: F) -> syn::Result<()>
where
    F: FnOnce(&ParseNestedMeta) -> syn::Result<()>,
{
    if let Err(e) = f(meta) {
        cx.syn_error(e);
        skip_to_comma(meta.input);
    }
    Ok(())
}

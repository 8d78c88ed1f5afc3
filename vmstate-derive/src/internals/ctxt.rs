//! Error accumulator: every check pushes spanned errors and carries on; `check()` combines them.

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use quote::ToTokens;

/// A position in the error list; see [`Ctxt::checkpoint`].
#[derive(Clone, Copy)]
pub struct Checkpoint(usize);

/// Collects errors during parsing and checking.
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Adds an error spanned at `obj`.
    pub fn error_spanned_by<A: ToTokens, T: Display>(&self, obj: A, msg: T) {
        self.syn_error(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Adds an error.
    pub fn syn_error(&self, err: syn::Error) {
        if let Some(errors) = self.errors.borrow_mut().as_mut() {
            errors.push(err);
        }
    }

    /// Marks the current point, so a caller can later ask whether the code in between reported
    /// anything (darling's `checkpoint`). Parsing uses it to mark a field or the container as
    /// "had errors": a key that failed to parse leaves its slot empty, and the cross-cutting
    /// checks that would read that slot are skipped instead of reporting a follow-on error.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.errors.borrow().as_ref().map_or(0, Vec::len))
    }

    /// Whether any error was recorded since `cp`.
    pub fn errors_since(&self, cp: Checkpoint) -> bool {
        self.error_count_since(cp) > 0
    }

    /// How many errors were recorded since `cp`.
    pub fn error_count_since(&self, cp: Checkpoint) -> usize {
        self.errors.borrow().as_ref().map_or(0, Vec::len) - cp.0
    }

    /// Consumes the context; all errors combined into one.
    pub fn check(self) -> syn::Result<()> {
        let mut errors = self
            .errors
            .borrow_mut()
            .take()
            .unwrap_or_default()
            .into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !thread::panicking() && self.errors.borrow().is_some() {
            panic!("forgot to check for errors");
        }
    }
}

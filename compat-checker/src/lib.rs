//! `cargo compat-check` (see issue: not implemented yet).

//! Shared test helpers.
//!
//! - [`fuzz_bodies`]: the fuzz targets' bodies, shared by the cargo-fuzz crate in `fuzz/` and the
//!   stable corpus replay in `tests/fuzz_corpus.rs`.

pub mod fuzz_bodies;

//! `cargo-compat-check`: thin binary over the `compat_checker` library.
//!
//! Runs as `cargo compat-check …` (cargo passes `compat-check` as the first argument), as
//! `cargo-compat-check …`, or through the workspace alias. Exit codes: 0 compatible,
//! 1 incompatible, 2 tool error (see `compat_checker::EXIT_*`).

#![forbid(unsafe_code)]

mod cli;

fn main() {
    let args = cli::normalize_args(std::env::args_os());
    std::process::exit(cli::main(args));
}

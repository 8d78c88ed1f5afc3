//! `cargo +nightly fuzz run load_machine`: see `vmstate_tests::fuzz_bodies::load_machine`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmstate_tests::fuzz_bodies::load_machine(data);
});

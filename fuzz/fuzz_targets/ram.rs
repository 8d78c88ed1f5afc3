//! `cargo +nightly fuzz run ram`: see `vmstate_tests::fuzz_bodies::ram`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmstate_tests::fuzz_bodies::ram(data);
});

//! `cargo +nightly fuzz run vmdesc`: see `vmstate_tests::fuzz_bodies::vmdesc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmstate_tests::fuzz_bodies::vmdesc(data);
});

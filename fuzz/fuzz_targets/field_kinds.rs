//! `cargo +nightly fuzz run field_kinds`: see `vmstate_tests::fuzz_bodies::field_kinds`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmstate_tests::fuzz_bodies::field_kinds(data);
});

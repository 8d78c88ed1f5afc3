//! `cargo +nightly fuzz run decode_stream`: see `vmstate_tests::fuzz_bodies::decode_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmstate_tests::fuzz_bodies::decode_stream(data);
});

//! libFuzzer's entry into `tenscale_fuzz_targets::front_sniff`, which says what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tenscale_fuzz_targets::front_sniff::check(data));

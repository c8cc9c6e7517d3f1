#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scimd::scim::invariants::filter(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jitgate_fuzz::api_query(data));

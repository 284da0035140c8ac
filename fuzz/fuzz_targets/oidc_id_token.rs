#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jitgate_fuzz::oidc_id_token(data));

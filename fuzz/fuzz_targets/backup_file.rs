#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jitgate_fuzz::backup_file(data));

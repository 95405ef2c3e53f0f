//! `cargo fuzz run widevine_api`: see `keyplex_server::fuzzing::widevine_api` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplex_server::fuzzing::widevine_api(data));

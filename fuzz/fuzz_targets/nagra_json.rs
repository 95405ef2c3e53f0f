//! `cargo fuzz run nagra_json`: see `keyplex_server::fuzzing::nagra_json` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplex_server::fuzzing::nagra_json(data));

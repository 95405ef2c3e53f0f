//! `cargo fuzz run url_parameters`: see `keyplex_server::fuzzing::url_parameters` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplex_server::fuzzing::url_parameters(data));

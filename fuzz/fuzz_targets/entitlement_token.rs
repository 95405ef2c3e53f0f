//! `cargo fuzz run entitlement_token`: see `keyplex_server::fuzzing::entitlement_token` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplex_server::fuzzing::entitlement_token(data));

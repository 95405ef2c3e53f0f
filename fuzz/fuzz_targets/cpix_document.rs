//! `cargo fuzz run cpix_document`: see `keyplex_cpix::fuzzing::cpix_document` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplex_cpix::fuzzing::cpix_document(data));

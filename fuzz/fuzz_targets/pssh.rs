//! `cargo fuzz run pssh`: see `keyplex_drm::fuzzing::pssh` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplex_drm::fuzzing::pssh(data));

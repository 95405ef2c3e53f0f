//! `cargo fuzz run playready_header`: see `keyplex_drm::fuzzing::playready_header` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyplex_drm::fuzzing::playready_header(data));

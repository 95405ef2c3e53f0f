//! The packager side: one module per key-exchange interface a packager speaks (CPIX, SPEKE,
//! NAGRA JSON, GET-style CPIX, Harmonic, the Widevine key API, PallyCon forms). Each parses its
//! request into typed values, asks `keys` for the keys and `signaling` for the DRM signaling,
//! and writes the answer in its own format. Uses the core and `http`; never `player` or
//! `operator`.

pub mod cpix;
pub mod get_cpix;
pub mod harmonic;
pub mod nagra;
pub mod pallycon;
pub mod speke;
pub mod widevine_api;

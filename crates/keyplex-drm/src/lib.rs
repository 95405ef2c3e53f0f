//! DRM signaling for keyplex: everything a packager or player needs besides the key itself.
//!
//! * [`system`]: the DRM systems keyplex knows, with their system ids and DASH names.
//! * [`pssh`]: ISO/IEC 23001-7 `pssh` boxes (v0/v1), parsed and written byte-exactly.
//! * [`widevine`]: the `WidevinePsshData` protobuf and Widevine pssh boxes.
//! * [`playready`]: WRMHEADER 4.0–4.3, the PlayReady Object and the key checksum.
//! * [`fairplay`]: `skd://` URIs; [`nagra`]: Nagra PRM pssh data.
//! * [`template`]: `{placeholder}` templates (FairPlay key URIs, tenant-defined signaling).
//! * [`define`]: DRM systems a tenant defines (system id, PSSH data template, DASH/HLS),
//!   checked once and rendered infallibly; [`define::DrmIdentity`] names a built-in or
//!   defined system.
//! * [`clearkey`]: the W3C common pssh and the Clear Key licence JSON.
//! * [`dash`] and [`hls`]: MPD `ContentProtection` elements and `#EXT-X-KEY` lines.
//! * [`mod@signal`]: the single entry point every key API calls to get all of the above.
//! * [`describe`]: human-readable decoding of pssh boxes (`keyplex pssh decode`).
//!
//! Everything is synchronous and pure: no I/O, no clock, no randomness. Parsers never panic
//! on untrusted input, and key bytes never appear in `Debug` output or error messages.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod clearkey;
pub mod dash;
pub mod define;
pub mod describe;
pub mod fairplay;
/// For the fuzz targets in `fuzz/` and their regression test; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod hls;
pub mod nagra;
pub mod playready;
pub mod pssh;
pub mod signal;
pub mod system;
pub mod template;
pub mod widevine;
mod xml;

#[cfg(test)]
mod oracle_tests;

pub use define::{DrmDefinition, DrmIdentity};
pub use keyplex_types::{ContentKeyValue, EncryptionScheme, Iv, KeyId};
pub use pssh::PsshBox;
pub use signal::{DrmSignaling, SignalKey, SignalOptions, signal, signal_drm};
pub use system::DrmSystem;
/// The type of system ids, for crates that name one without depending on `uuid`.
pub use uuid::Uuid;

/// Why DRM data could not be parsed or built. Messages describe the input's shape, never
/// key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrmError {
    #[error("truncated {what}: needs {needed} bytes, only {available} available")]
    Truncated {
        what: &'static str,
        needed: u64,
        available: usize,
    },
    #[error("not a pssh box: box type is {found:?}")]
    NotPssh { found: String },
    #[error("invalid pssh box: {0}")]
    InvalidPssh(String),
    #[error("unsupported pssh box version {0} (expected 0 or 1)")]
    UnsupportedPsshVersion(u8),
    #[error("invalid Widevine PSSH data: {0}")]
    Widevine(String),
    #[error("invalid PlayReady Object: {0}")]
    PlayReadyObject(String),
    #[error("invalid PlayReady header: {0}")]
    PlayReadyHeader(String),
    #[error("{what} is too large: {len} bytes, at most {max} allowed")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("invalid Clear Key licence request: {0}")]
    ClearKeyRequest(String),
    #[error("{what} is neither base64 nor hex")]
    Encoding { what: &'static str },
    #[error("no key to signal")]
    NoKeys,
    #[error("{system} does not support the {scheme} protection scheme")]
    SchemeNotSupported {
        system: DrmSystem,
        scheme: EncryptionScheme,
    },
    #[error("{system} signaling needs a per-tenant template (its payload format is not public)")]
    TemplateRequired { system: DrmSystem },
    #[error("keyplex cannot build signaling for {system}")]
    UnsupportedSystem { system: DrmSystem },
    #[error("DRM system definition {name:?}: {message}")]
    Definition { name: String, message: String },
    #[error("{system} signaling needs {option} to be configured")]
    MissingOption {
        system: DrmSystem,
        option: &'static str,
    },
}

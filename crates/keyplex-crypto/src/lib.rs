//! The only keyplex crate that calls cipher primitives.
//!
//! * [`random`]: key, IV and token generation from the OS CSPRNG.
//! * [`master`]: the master key and the AES-256-GCM envelope that protects content keys at rest.
//! * [`delivery`]: CPIX encrypted key delivery (RSA-OAEP document/MAC keys, AES-256-CBC,
//!   HMAC-SHA512).
//! * [`backup`]: key bundles encrypted to an operator's RSA public key (export/import).
//! * [`block`]: single-block AES helpers used by DRM formats (PlayReady key checksum) and
//!   Widevine request signing (AES-CBC over a SHA-1 digest).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod backup;
pub mod block;
pub mod delivery;
pub mod master;
pub mod random;

/// Errors of cryptographic operations. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid master key: {0}")]
    MasterKey(String),
    #[error("stored key could not be decrypted (wrong master key or tampered record)")]
    Unseal,
    #[error("invalid recipient certificate: {0}")]
    Certificate(String),
    #[error("unsupported recipient key: {0}")]
    UnsupportedKey(String),
    #[error("MAC check failed")]
    BadMac,
    #[error("decryption failed")]
    Decrypt,
    #[error("invalid length for {what}")]
    Length { what: &'static str },
    #[error("the system random number generator failed")]
    Rng,
}

//! DASH-IF CPIX 2.3/2.4 documents and their AWS SPEKE profiles: a typed [`model`], a hardened
//! [`read_document`] and a schema-conformant [`write_document`]. Only this crate knows XML;
//! no I/O happens here.
//!
//! Encrypted key delivery (RSA-OAEP, AES-256-CBC, HMAC-SHA512) lives in
//! `keyplex_crypto::delivery`; this crate only carries its bytes.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod error;
/// For the fuzz target in `fuzz/` and its regression test; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod model;
mod reader;
pub mod speke;
#[cfg(test)]
mod testing;
mod validate;
mod writer;

pub use error::CpixError;
pub use reader::{NODES_LIMIT, read_document};
pub use writer::write_document;

/// Namespace URIs and algorithm identifiers of CPIX documents.
pub mod ns {
    pub const CPIX: &str = "urn:dashif:org:cpix";
    pub const PSKC: &str = "urn:ietf:params:xml:ns:keyprov:pskc";
    pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
    pub const ENC: &str = "http://www.w3.org/2001/04/xmlenc#";
    /// SPEKE v1 proprietary `DRMSystem` children (`KeyFormat`, `KeyFormatVersions`,
    /// `ProtectionHeader`).
    pub const SPEKE: &str = "urn:aws:amazon:com:speke";
    pub(crate) const XML: &str = "http://www.w3.org/XML/1998/namespace";

    pub const ALG_AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
    pub const ALG_RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
    pub const ALG_HMAC_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512";
}

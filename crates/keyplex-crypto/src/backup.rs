//! Key bundles for backups: a payload (the exported keys, as the caller serialises them)
//! encrypted to an operator's RSA public key, so that a backup file is useless without the
//! operator's private key — and keyplex never holds that key except for the moment of an
//! import.
//!
//! Envelope: a random 256-bit bundle key encrypts the payload with AES-256-GCM (random 96-bit
//! nonce, the format name as associated data); the bundle key is RSA-OAEP encrypted with
//! SHA-256 and MGF1-SHA-256 (empty label) to the operator's key. Anyone with the private key
//! can open it with standard tools (`openssl pkeyutl -pkeyopt rsa_padding_mode:oaep
//! -pkeyopt rsa_oaep_md:sha256`, then AES-256-GCM).

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::random::random_bytes;

/// The associated data of every bundle: a bundle of another format does not open as this one.
pub const FORMAT: &str = "keyplex-key-bundle/1";
/// Operator keys smaller than this are refused.
pub const MIN_RSA_BITS: usize = 2048;

/// The encrypted parts of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBundle {
    /// RSA-OAEP(SHA-256) of the 32-byte bundle key.
    pub encrypted_key: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    /// AES-256-GCM ciphertext with its 16-byte tag.
    pub ciphertext: Vec<u8>,
    /// SHA-256 of the recipient's SubjectPublicKeyInfo (hex): which operator key opens it.
    pub recipient: String,
}

/// Reads the DER inside a PEM block with one of the `labels` (`PUBLIC KEY`, …).
fn pem_der(pem: &str, labels: &[&str]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        if let Some(start) = pem.find(&begin) {
            let body_start = start + begin.len();
            let body_end = pem[body_start..]
                .find(&end)
                .map(|e| body_start + e)
                .ok_or_else(|| {
                    CryptoError::UnsupportedKey(format!("PEM {label} has no end line"))
                })?;
            let body: String = pem[body_start..body_end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            return B64
                .decode(body)
                .map(Zeroizing::new)
                .map_err(|_| CryptoError::UnsupportedKey(format!("PEM {label} is not base64")));
        }
    }
    Err(CryptoError::UnsupportedKey(format!(
        "expected a PEM block: {}",
        labels
            .iter()
            .map(|l| format!("-----BEGIN {l}-----"))
            .collect::<Vec<_>>()
            .join(" or ")
    )))
}

fn public_key(pem: &str) -> Result<(OaepPublicEncryptingKey, String), CryptoError> {
    let der = if pem.contains("-----BEGIN CERTIFICATE-----") {
        use x509_cert::der::{Decode as _, Encode as _};
        let cert_der = pem_der(pem, &["CERTIFICATE"])?;
        let cert = x509_cert::Certificate::from_der(&cert_der)
            .map_err(|e| CryptoError::Certificate(format!("not an X.509 certificate: {e}")))?;
        Zeroizing::new(
            cert.tbs_certificate
                .subject_public_key_info
                .to_der()
                .map_err(|e| CryptoError::Certificate(format!("bad SubjectPublicKeyInfo: {e}")))?,
        )
    } else {
        pem_der(pem, &["PUBLIC KEY"])?
    };
    let public = PublicEncryptingKey::from_der(&der)
        .map_err(|e| CryptoError::UnsupportedKey(format!("not an RSA public key ({e})")))?;
    if public.key_size_bits() < MIN_RSA_BITS {
        return Err(CryptoError::UnsupportedKey(format!(
            "RSA key of {} bits; at least {MIN_RSA_BITS} are required",
            public.key_size_bits()
        )));
    }
    let key = OaepPublicEncryptingKey::new(public)
        .map_err(|_| CryptoError::UnsupportedKey("RSA key rejected for OAEP".to_owned()))?;
    Ok((key, hex::encode(Sha256::digest(&*der))))
}

fn gcm(key: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Length { what: "bundle key" })
}

/// Encrypts `payload` to the RSA public key in `public_key_pem` (`PUBLIC KEY` or
/// `CERTIFICATE`).
pub fn seal(public_key_pem: &str, payload: &[u8]) -> Result<SealedBundle, CryptoError> {
    let (recipient_key, recipient) = public_key(public_key_pem)?;
    let bundle_key = Zeroizing::new(random_bytes::<32>()?);
    let nonce = random_bytes::<NONCE_LEN>()?;
    let mut ciphertext = payload.to_vec();
    gcm(&*bundle_key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(FORMAT.as_bytes()),
            &mut ciphertext,
        )
        .map_err(|_| CryptoError::Decrypt)?;
    let mut encrypted_key = vec![0u8; recipient_key.ciphertext_size()];
    let len = recipient_key
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            &*bundle_key,
            &mut encrypted_key,
            None,
        )
        .map_err(|_| CryptoError::UnsupportedKey("RSA-OAEP encryption failed".to_owned()))?
        .len();
    encrypted_key.truncate(len);
    Ok(SealedBundle {
        encrypted_key,
        nonce,
        ciphertext,
        recipient,
    })
}

/// Opens a bundle with the RSA private key in `private_key_pem` (unencrypted PKCS#8,
/// `PRIVATE KEY`). A wrong key or a modified bundle fails as [`CryptoError::Decrypt`].
pub fn open(
    private_key_pem: &str,
    bundle: &SealedBundle,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let der = pem_der(private_key_pem, &["PRIVATE KEY"])?;
    let private = PrivateDecryptingKey::from_pkcs8(&der)
        .map_err(|e| CryptoError::UnsupportedKey(format!("not an RSA PKCS#8 private key ({e})")))?;
    let private = OaepPrivateDecryptingKey::new(private)
        .map_err(|_| CryptoError::UnsupportedKey("RSA key rejected for OAEP".to_owned()))?;
    let mut bundle_key = Zeroizing::new(vec![0u8; private.min_output_size()]);
    let len = private
        .decrypt(
            &OAEP_SHA256_MGF1SHA256,
            &bundle.encrypted_key,
            &mut bundle_key,
            None,
        )
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    bundle_key.truncate(len);
    let mut plaintext = Zeroizing::new(bundle.ciphertext.clone());
    let opened_len = gcm(&bundle_key)?
        .open_in_place(
            Nonce::assume_unique_for_key(bundle.nonce),
            Aad::from(FORMAT.as_bytes()),
            &mut plaintext,
        )
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    plaintext.truncate(opened_len);
    Ok(plaintext)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A 2048-bit test key pair (generated for these tests only).
    fn key_pair() -> (String, String) {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
        let private = PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public: PublicKeyX509Der<'_> = private.public_key().as_der().unwrap();
        let private: Pkcs8V1Der<'_> = private.as_der().unwrap();
        let pem = |label: &str, der: &[u8]| {
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                B64.encode(der)
            )
        };
        (
            pem("PUBLIC KEY", public.as_ref()),
            pem("PRIVATE KEY", private.as_ref()),
        )
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let (public, private) = key_pair();
        let bundle = seal(&public, b"the keys").unwrap();
        assert_eq!(&*open(&private, &bundle).unwrap(), b"the keys");
        assert_eq!(bundle.recipient.len(), 64);
        let mut tampered = bundle.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(matches!(
            open(&private, &tampered),
            Err(CryptoError::Decrypt)
        ));
        let (_, other_private) = key_pair();
        assert!(matches!(
            open(&other_private, &bundle),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn refuses_what_is_not_an_rsa_public_key() {
        assert!(seal("not a pem", b"x").is_err());
        assert!(
            seal(
                "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----",
                b"x"
            )
            .is_err()
        );
    }
}

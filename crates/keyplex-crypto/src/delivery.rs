//! CPIX encrypted key delivery (DASH-IF CPIX §"Key Management", the mandatory algorithm set).
//!
//! A CPIX document that carries keys encrypted for a recipient uses two random keys per
//! recipient: a 32-byte **document key** (AES-256-CBC over each content key) and a 64-byte
//! **MAC key** (HMAC-SHA512 over each encrypted value). Both are RSA-OAEP (SHA-1, MGF1-SHA1,
//! empty label: `xmlenc#rsa-oaep-mgf1p`) encrypted to the recipient certificate's public key.
//!
//! Byte layouts, checked against the DASH-IF test vectors:
//! * `CipherValue` = IV(16) || AES-256-CBC(documentKey, IV, PKCS#7(key)) — 48 bytes for a key;
//! * `ValueMAC` = HMAC-SHA512(macKey, CipherValue bytes) — 64 bytes.
//!
//! A receiver checks the MAC before decrypting, so a tampered value never reaches the
//! padding check (no padding oracle).

use std::fmt;

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use keyplex_types::ContentKeyValue;
use sha2::Sha512;
use x509_cert::der::{Decode, Encode};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

/// Length of the AES-256 document key.
pub const DOCUMENT_KEY_LEN: usize = 32;
/// Length of the HMAC-SHA512 MAC key (CPIX producers use exactly 512 bits).
pub const MAC_KEY_LEN: usize = 64;
/// Length of the CBC IV that prefixes every `CipherValue`.
const IV_LEN: usize = 16;
/// AES block size: CBC ciphertext is a whole number of blocks.
const BLOCK_LEN: usize = 16;

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type HmacSha512 = Hmac<Sha512>;

/// The public key of one CPIX recipient (`DeliveryData/DeliveryKey`), ready for RSA-OAEP.
pub struct RecipientKey {
    key: OaepPublicEncryptingKey,
}

impl RecipientKey {
    /// SPEKE mandates 2048-bit recipient certificates; anything smaller is refused.
    pub const MIN_BITS: usize = 2048;

    /// Reads the RSA public key from an X.509 certificate (DER).
    ///
    /// The certificate is parsed only to reach its `SubjectPublicKeyInfo`; validity dates,
    /// issuer and signature are not checked (CPIX trusts the certificate the packager sends).
    /// Negative serial numbers (the DASH-IF test certificates have them) are accepted.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, CryptoError> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| CryptoError::Certificate(format!("not a DER X.509 certificate: {e}")))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| CryptoError::Certificate(format!("bad SubjectPublicKeyInfo: {e}")))?;
        Self::from_spki_der(&spki)
    }

    /// Reads an RSA public key from `SubjectPublicKeyInfo` DER.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, CryptoError> {
        let public = PublicEncryptingKey::from_der(spki).map_err(|e| {
            CryptoError::UnsupportedKey(format!("only RSA recipient keys are supported ({e})"))
        })?;
        let bits = public.key_size_bits();
        if bits < Self::MIN_BITS {
            return Err(CryptoError::UnsupportedKey(format!(
                "RSA key of {bits} bits; at least {} bits are required",
                Self::MIN_BITS
            )));
        }
        let key = OaepPublicEncryptingKey::new(public)
            .map_err(|_| CryptoError::UnsupportedKey("RSA key rejected for OAEP".to_owned()))?;
        Ok(Self { key })
    }

    pub fn key_size_bits(&self) -> usize {
        self.key.key_size_bits()
    }

    fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; self.key.ciphertext_size()];
        let len = self
            .key
            .encrypt(&OAEP_SHA1_MGF1SHA1, plaintext, &mut out, None)
            .map_err(|_| CryptoError::UnsupportedKey("RSA-OAEP encryption failed".to_owned()))?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey")
            .field("bits", &self.key_size_bits())
            .finish()
    }
}

/// A recipient's RSA private key: what a CPIX client (or a test) uses to unwrap the
/// document and MAC keys. keyplex itself only encrypts.
pub struct RecipientPrivateKey {
    key: OaepPrivateDecryptingKey,
}

impl RecipientPrivateKey {
    /// Reads an RSA private key from unencrypted PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let private = PrivateDecryptingKey::from_pkcs8(der).map_err(|e| {
            CryptoError::UnsupportedKey(format!("not an RSA PKCS#8 private key ({e})"))
        })?;
        let key = OaepPrivateDecryptingKey::new(private)
            .map_err(|_| CryptoError::UnsupportedKey("RSA key rejected for OAEP".to_owned()))?;
        Ok(Self { key })
    }

    /// RSA-OAEP decrypts `ciphertext`, requiring exactly `expected_len` plaintext bytes.
    fn decrypt_exact(
        &self,
        ciphertext: &[u8],
        expected_len: usize,
        what: &'static str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let len = self
            .key
            .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut out, None)
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        if len != expected_len {
            return Err(CryptoError::Length { what });
        }
        out.truncate(len);
        Ok(out)
    }
}

impl fmt::Debug for RecipientPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientPrivateKey")
            .field("bits", &self.key.key_size_bits())
            .finish()
    }
}

/// The RSA-OAEP wrapped document key and MAC key for one recipient (the `CipherValue`s of
/// `DocumentKey` and `MACMethod/Key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKeys {
    pub document_key_cipher: Vec<u8>,
    pub mac_key_cipher: Vec<u8>,
}

/// One encrypted content key: `pskc:EncryptedValue/…/CipherValue` and `pskc:ValueMAC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedContentKey {
    /// IV(16) || AES-256-CBC-PKCS7(key).
    pub cipher_value: Vec<u8>,
    /// HMAC-SHA512(macKey, cipher_value).
    pub value_mac: Vec<u8>,
}

/// The per-document secrets of encrypted delivery. Zeroized on drop; never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DocumentKeys {
    document_key: [u8; DOCUMENT_KEY_LEN],
    mac_key: [u8; MAC_KEY_LEN],
}

impl DocumentKeys {
    /// Fresh random keys from the system CSPRNG (one set per response document).
    pub fn generate() -> Result<Self, CryptoError> {
        let mut keys = Self {
            document_key: [0; DOCUMENT_KEY_LEN],
            mac_key: [0; MAC_KEY_LEN],
        };
        aws_lc_rs::rand::fill(&mut keys.document_key).map_err(|_| CryptoError::Rng)?;
        aws_lc_rs::rand::fill(&mut keys.mac_key).map_err(|_| CryptoError::Rng)?;
        Ok(keys)
    }

    /// RSA-OAEP encrypts both keys to `recipient` (a fresh random padding each call).
    pub fn wrap_for(&self, recipient: &RecipientKey) -> Result<WrappedKeys, CryptoError> {
        Ok(WrappedKeys {
            document_key_cipher: recipient.encrypt(&self.document_key)?,
            mac_key_cipher: recipient.encrypt(&self.mac_key)?,
        })
    }

    /// The recipient side of [`Self::wrap_for`].
    pub fn unwrap_with(
        private_key: &RecipientPrivateKey,
        wrapped: &WrappedKeys,
    ) -> Result<Self, CryptoError> {
        let document_key = private_key.decrypt_exact(
            &wrapped.document_key_cipher,
            DOCUMENT_KEY_LEN,
            "document key",
        )?;
        let mac_key = private_key.decrypt_exact(&wrapped.mac_key_cipher, MAC_KEY_LEN, "MAC key")?;
        let mut keys = Self {
            document_key: [0; DOCUMENT_KEY_LEN],
            mac_key: [0; MAC_KEY_LEN],
        };
        keys.document_key.copy_from_slice(&document_key);
        keys.mac_key.copy_from_slice(&mac_key);
        Ok(keys)
    }

    /// Encrypts one content key with a fresh random IV and MACs the result.
    pub fn encrypt_content_key(
        &self,
        key: &ContentKeyValue,
    ) -> Result<EncryptedContentKey, CryptoError> {
        let mut iv = [0u8; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| CryptoError::Rng)?;
        let ciphertext = Aes256CbcEnc::new(&self.document_key.into(), &iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(key.expose());
        let mut cipher_value = Vec::with_capacity(IV_LEN + ciphertext.len());
        cipher_value.extend_from_slice(&iv);
        cipher_value.extend_from_slice(&ciphertext);
        let value_mac = self.mac(&cipher_value)?.finalize().into_bytes().to_vec();
        Ok(EncryptedContentKey {
            cipher_value,
            value_mac,
        })
    }

    /// Checks `value_mac` (constant time) and only then decrypts `cipher_value`.
    pub fn decrypt_content_key(
        &self,
        cipher_value: &[u8],
        value_mac: &[u8],
    ) -> Result<ContentKeyValue, CryptoError> {
        self.mac(cipher_value)?
            .verify_slice(value_mac)
            .map_err(|_| CryptoError::BadMac)?;
        let (iv, ciphertext) =
            cipher_value
                .split_at_checked(IV_LEN)
                .ok_or(CryptoError::Length {
                    what: "encrypted content key",
                })?;
        if ciphertext.is_empty() || ciphertext.len() % BLOCK_LEN != 0 {
            return Err(CryptoError::Length {
                what: "encrypted content key",
            });
        }
        let decryptor = Aes256CbcDec::new_from_slices(&self.document_key, iv)
            .map_err(|_| CryptoError::Length { what: "IV" })?;
        let plaintext = Zeroizing::new(
            decryptor
                .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
                .map_err(|_| CryptoError::Decrypt)?,
        );
        ContentKeyValue::from_slice(&plaintext).map_err(|_| CryptoError::Length {
            what: "decrypted content key",
        })
    }

    fn mac(&self, data: &[u8]) -> Result<HmacSha512, CryptoError> {
        let mut mac = HmacSha512::new_from_slice(&self.mac_key)
            .map_err(|_| CryptoError::Length { what: "MAC key" })?;
        mac.update(data);
        Ok(mac)
    }
}

impl fmt::Debug for DocumentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DocumentKeys(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    use super::*;

    const VECTORS: &str = "/work/shared/vectors/cpix/dashif-cpix-test-vectors";
    const CERT1_PKCS8: &[u8] = include_bytes!("../testdata/cert1_private_key.pk8.der");

    // EncryptedContentKeys.xml (DASH-IF): DocumentKey and MACMethod/Key CipherValues, and the
    // first ContentKey (kid bd5adf51-…, published key 3rWoHYasQubO6HbJGrGtLw==).
    const DOC_KEY_CIPHER: &str = "I3LkAdeFjCWpXuOtjYnB45VgcyFM9COJz3kxpFGz3EJQjyDNEIpKShN1ERZ0Yzm0n51SAz5tIESewG1FL+AOLMsRN85swJcMRMrk9sUMqHbaaObzj6AXMIBodastxeIqM0T1el9NoeRpr1X9qWBJu64EiXGBQZm2MqduEpWU1MBrHxWVGzqhjtZw5LKcnrj3AAJHzCaZpAy4IF3hXzpTgu5L/HIeRNM5/J8NimQYxSi6hsrAKtTaogm3QMAa0VaK/uY3K+dIuOGWR5YbrbmnYsX39RNF8UIkkmWpJ4GldfP5FDLJdf18x0k2CsTvKQB5E4Ld/eyPDKoYej4iEGlQPasBqurp2sAy7tsaVW6x+5nR0wcOhBrPynX1PAeZvQdLoJq1w81WzVm05R7Hi8Tjgb8GZ/MuBESxMxrCCpoCvHUN+MqdMFNCvJ4IwRFYsKfvIxa3SJCL6geGnwpnpdZ79mLCygIaXRSeget7ivNwEiRw6jTVdvZ+w914Inl8q/0j6XYzwSImiGi7Wk6pTx0lLBmVT8Uxlaj9JHB/gTOSJ93RsP7/7YZswjCt/UCFrGi1cv+x8NrGCHTCuGcXcjbK4z+E2rUeXCR4GUlGNaZxeFRE5g9VdiTFGeN2TMTava8yPraXd7rruQ+butsDiU0Cgq0OVbkP2Fn5u3rArpc0bJw=";
    const MAC_KEY_CIPHER: &str = "AqhBsU0BzsflY9+Qe9l9P1Htf+vXf+i0X24qycdXVCoEY9lRSh33nWf54YWso1H5rdmaA0PeJWdA7DYPXJ/SceevPTDeAERf/Sdyk6aiK4CB5RaewdkwBw4bZrw9vo307k2Vg+9N/P8jSAzUR6oi2IZQ8RxBOrRLTpq3fVRCB12NRPdKTT4o3fA5M842QYXQ5u2JjRTFzI6LY5hNgvXzPv1tfXN/Ru5PwYaJb+BQ2UQvPWFWJ4w0kBY65TZ8L41f0d0ncti7kuSFFmwOlPYQDILwNirhn/Pnfz1FfTbi2DvRJzsX9vunLlfZ2oqyyV3AXL3BpVw2Ww/5iH5KbzDZN45PAlHCy4HgX4VdsgVVzNXW6tK46ZerE5woUbuf1x0zk0Inp9x4UhF2N6YP5RULsDS3RBcHSrkUKjpO6LVru97cpbBeUopvOKml1jFvbTvoxbiDucLWMGkB2q+3UcLJv4dEE/CjZSNTI7IFrJyyp1XjDkutZwUHVH89Liqh/Do7eeNp5qIkrId9e1bhlhqKWPcFEvRTZq0HnRD2p+kzgRr4WfTSil3/VfMk18NuDnvmLf0V8ItQSPeC+Y10TghO7OMyzh9P5xn/vBOL/CwGRSvPTYy9BQYgxcXgFYsk6DuXzXvOfQWKWddi7xWuCLuDJsSOtUXKQwh22xer9i3PuBM=";
    const KEY1_CIPHER: &str = "mGwyX8hfOluTOPFM5QOT8zhkpyDA/OnIGTJs/qQHSE0Vy8X2nkzfCz/VxfMUb6A4";
    const KEY1_MAC: &str =
        "BXBr0hPLWOeh/I//chGl3laznIMiZVR0gB4dhRDMyJ6gUHZQgX1R30oebB7ftCwWCe9pK/9h2NQ0iVMm93/RYg==";
    const KEY1_PLAIN: &str = "3rWoHYasQubO6HbJGrGtLw==";

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    fn cert1_private() -> RecipientPrivateKey {
        RecipientPrivateKey::from_pkcs8_der(CERT1_PKCS8).unwrap()
    }

    fn vector_keys() -> DocumentKeys {
        let wrapped = WrappedKeys {
            document_key_cipher: b64(DOC_KEY_CIPHER),
            mac_key_cipher: b64(MAC_KEY_CIPHER),
        };
        DocumentKeys::unwrap_with(&cert1_private(), &wrapped).unwrap()
    }

    #[test]
    fn dashif_test_certificates_load_including_negative_serial() {
        for name in ["Cert1.cer", "Cert2.cer"] {
            let der = std::fs::read(format!("{VECTORS}/{name}")).unwrap();
            let key = RecipientKey::from_certificate_der(&der).unwrap();
            assert_eq!(key.key_size_bits(), 4096, "{name}");
        }
    }

    #[test]
    fn non_certificates_are_rejected() {
        assert!(matches!(
            RecipientKey::from_certificate_der(b"not a certificate"),
            Err(CryptoError::Certificate(_))
        ));
        // A private key is not a SubjectPublicKeyInfo.
        assert!(matches!(
            RecipientKey::from_spki_der(CERT1_PKCS8),
            Err(CryptoError::UnsupportedKey(_))
        ));
    }

    #[test]
    fn small_and_non_rsa_keys_are_refused() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::KeySize;
        let minimum = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = minimum.public_key().as_der().unwrap();
        assert_eq!(
            RecipientKey::from_spki_der(spki.as_ref())
                .unwrap()
                .key_size_bits(),
            2048
        );
        // A 1024-bit RSA SubjectPublicKeyInfo (generated with Python `cryptography`).
        let rsa1024 = b64(
            "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCxNkr1rSWsbywYb4SH0xG3WjnzC8fComXi3xwWvI8zBE4VsWJTDrnql8Vahk8ubui9kKD4P7KLuQB6U3RwKSDJQVbbQE8GNg3ic3MrRQzHq7zSoOIsJUqPzooKtK/ll88StPI5sRl//3WQ3OM0XfVxNqJm79FRBQE80PvuBATshQIDAQAB",
        );
        assert!(matches!(
            RecipientKey::from_spki_der(&rsa1024),
            Err(CryptoError::UnsupportedKey(_))
        ));
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        let ec_spki = aws_lc_rs::signature::KeyPair::public_key(&ec)
            .as_der()
            .unwrap();
        assert!(matches!(
            RecipientKey::from_spki_der(ec_spki.as_ref()),
            Err(CryptoError::UnsupportedKey(_))
        ));
    }

    #[test]
    fn dashif_encrypted_key_decrypts_to_published_value() {
        let keys = vector_keys();
        let key = keys
            .decrypt_content_key(&b64(KEY1_CIPHER), &b64(KEY1_MAC))
            .unwrap();
        assert_eq!(B64.encode(key.expose()), KEY1_PLAIN);
    }

    #[test]
    fn wrong_mac_is_rejected_before_decryption() {
        let keys = vector_keys();
        let mut mac = b64(KEY1_MAC);
        mac[10] ^= 1;
        assert!(matches!(
            keys.decrypt_content_key(&b64(KEY1_CIPHER), &mac),
            Err(CryptoError::BadMac)
        ));
        // Truncated MACs are not accepted either.
        assert!(matches!(
            keys.decrypt_content_key(&b64(KEY1_CIPHER), &b64(KEY1_MAC)[..32]),
            Err(CryptoError::BadMac)
        ));
        let mut cipher = b64(KEY1_CIPHER);
        cipher[20] ^= 1;
        assert!(matches!(
            keys.decrypt_content_key(&cipher, &b64(KEY1_MAC)),
            Err(CryptoError::BadMac)
        ));
    }

    #[test]
    fn round_trip_generate_wrap_unwrap_encrypt_decrypt() {
        let cert = std::fs::read(format!("{VECTORS}/Cert1.cer")).unwrap();
        let recipient = RecipientKey::from_certificate_der(&cert).unwrap();
        let keys = DocumentKeys::generate().unwrap();
        let wrapped = keys.wrap_for(&recipient).unwrap();
        assert_eq!(wrapped.document_key_cipher.len(), 512);
        assert_eq!(wrapped.mac_key_cipher.len(), 512);
        let unwrapped = DocumentKeys::unwrap_with(&cert1_private(), &wrapped).unwrap();

        let content_key = ContentKeyValue::from_bytes(*b"0123456789abcdef");
        let encrypted = keys.encrypt_content_key(&content_key).unwrap();
        assert_eq!(encrypted.cipher_value.len(), 48);
        assert_eq!(encrypted.value_mac.len(), 64);
        let decrypted = unwrapped
            .decrypt_content_key(&encrypted.cipher_value, &encrypted.value_mac)
            .unwrap();
        assert_eq!(decrypted, content_key);

        // Fresh IV per key: the same key encrypts differently each time.
        let again = keys.encrypt_content_key(&content_key).unwrap();
        assert_ne!(again.cipher_value, encrypted.cipher_value);
    }

    #[test]
    fn unwrapping_with_the_wrong_private_key_fails() {
        let cert2 = std::fs::read(format!("{VECTORS}/Cert2.cer")).unwrap();
        let recipient = RecipientKey::from_certificate_der(&cert2).unwrap();
        let wrapped = DocumentKeys::generate()
            .unwrap()
            .wrap_for(&recipient)
            .unwrap();
        assert!(matches!(
            DocumentKeys::unwrap_with(&cert1_private(), &wrapped),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn secrets_do_not_print() {
        let keys = DocumentKeys::generate().unwrap();
        assert_eq!(format!("{keys:?}"), "DocumentKeys(<redacted>)");
    }
}

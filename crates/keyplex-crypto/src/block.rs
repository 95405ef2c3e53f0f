//! Raw AES helpers for DRM formats: single-block AES-128 (the PlayReady key checksum) and
//! AES-CBC with PKCS#7 padding (Widevine key-server request signing, which encrypts a SHA-1
//! digest with AES-256-CBC).
//!
//! They live here, not in the format crates, because keyplex-crypto is the only crate allowed
//! to call cipher primitives. None of these functions authenticates anything: callers use them
//! only where a protocol prescribes exactly this construction.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit};

use crate::CryptoError;

/// Encrypts one 16-byte block with AES-128 in ECB mode (no padding, no chaining).
///
/// PlayReady's key checksum is the first 8 bytes of exactly this operation applied to the key
/// id, so it is exposed as a block function rather than as a general-purpose ECB mode.
pub fn aes128_ecb_encrypt_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    let cipher = aes::Aes128::new(&(*key).into());
    let mut buffer = aes::Block::from(*block);
    cipher.encrypt_block(&mut buffer);
    buffer.into()
}

/// AES-CBC encryption with PKCS#7 padding. The key selects the variant: 16 bytes for
/// AES-128, 32 bytes for AES-256; any other length is rejected.
pub fn aes_cbc_encrypt_pkcs7(
    key: &[u8],
    iv: &[u8; 16],
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    match key.len() {
        16 => Ok(cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| CryptoError::Length {
                what: "AES-128 key",
            })?
            .encrypt_padded_vec_mut::<Pkcs7>(data)),
        32 => Ok(cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| CryptoError::Length {
                what: "AES-256 key",
            })?
            .encrypt_padded_vec_mut::<Pkcs7>(data)),
        _ => Err(CryptoError::Length {
            what: "AES-CBC key (16 or 32 bytes)",
        }),
    }
}

/// AES-CBC decryption with PKCS#7 padding removal; the inverse of [`aes_cbc_encrypt_pkcs7`].
/// A ciphertext that is not a whole number of blocks or whose padding is malformed yields
/// [`CryptoError::Decrypt`].
pub fn aes_cbc_decrypt_pkcs7(
    key: &[u8],
    iv: &[u8; 16],
    data: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .map_err(|_| CryptoError::Length {
                what: "AES-128 key",
            })?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(|_| CryptoError::Decrypt),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .map_err(|_| CryptoError::Length {
                what: "AES-256 key",
            })?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(|_| CryptoError::Decrypt),
        _ => Err(CryptoError::Length {
            what: "AES-CBC key (16 or 32 bytes)",
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use sha1::Digest as _;

    fn arr16(hex_text: &str) -> [u8; 16] {
        hex::decode(hex_text).unwrap().try_into().unwrap()
    }

    #[test]
    fn aes128_block_matches_fips197_appendix_c1() {
        let key = arr16("000102030405060708090a0b0c0d0e0f");
        let plaintext = arr16("00112233445566778899aabbccddeeff");
        let ciphertext = aes128_ecb_encrypt_block(&key, &plaintext);
        assert_eq!(hex::encode(ciphertext), "69c4e0d86a7b0430d8cdb78070b4c55a");
    }

    #[test]
    fn playready_checksum_p2_is_first_half_of_the_block() {
        // KID 8ba94ade-… in GUID little-endian order, checksum Me48z71nuqY= (the published
        // WRMHEADER example that pycpix's tests verify).
        let key = arr16("DBFD6922C321C4BB486F4A1C44097ED6");
        let kid_le = arr16("de4aa98bb96e9d44b44fa5beefaf43b0");
        let block = aes128_ecb_encrypt_block(&key, &kid_le);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&block[..8]),
            "Me48z71nuqY="
        );
    }

    #[test]
    fn cbc_round_trips_for_both_key_sizes_and_pads_whole_blocks() {
        let iv = arr16("d58ce954203b7c9a9a9d467f59839249");
        for key in [vec![0x11_u8; 16], vec![0x22_u8; 32]] {
            for len in [0_usize, 1, 15, 16, 17, 48] {
                let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let ct = aes_cbc_encrypt_pkcs7(&key, &iv, &data).unwrap();
                assert_eq!(ct.len(), (len / 16 + 1) * 16, "PKCS#7 always adds padding");
                if len > 0 {
                    assert_ne!(&ct[..len], &data[..], "ciphertext differs from plaintext");
                }
                assert_eq!(aes_cbc_decrypt_pkcs7(&key, &iv, &ct).unwrap(), data);
            }
        }
    }

    #[test]
    fn cbc_first_block_matches_sp800_38a_f21() {
        // NIST SP 800-38A F.2.1 CBC-AES128.Encrypt, block 1; PKCS#7 then appends one block.
        let key = arr16("2b7e151628aed2a6abf7158809cf4f3c");
        let iv = arr16("000102030405060708090a0b0c0d0e0f");
        let ct =
            aes_cbc_encrypt_pkcs7(&key, &iv, &arr16("6bc1bee22e409f96e93d7e117393172a")).unwrap();
        assert_eq!(ct.len(), 32);
        assert_eq!(hex::encode(&ct[..16]), "7649abac8119b246cee98e9b12e9197d");
    }

    #[test]
    fn cbc_rejects_bad_key_lengths_and_bad_ciphertext() {
        let iv = [0_u8; 16];
        assert!(matches!(
            aes_cbc_encrypt_pkcs7(&[0; 24], &iv, b"x"),
            Err(CryptoError::Length { .. })
        ));
        assert!(matches!(
            aes_cbc_decrypt_pkcs7(&[0; 15], &iv, &[0; 16]),
            Err(CryptoError::Length { .. })
        ));
        assert!(matches!(
            aes_cbc_decrypt_pkcs7(&[0; 16], &iv, &[0; 15]),
            Err(CryptoError::Decrypt)
        ));
        // A wrong key almost surely leaves invalid padding behind.
        let ct = aes_cbc_encrypt_pkcs7(&[1; 16], &iv, b"hello").unwrap();
        assert!(
            aes_cbc_decrypt_pkcs7(&[2; 16], &iv, &ct)
                .map(|p| p != b"hello")
                .unwrap_or(true)
        );
    }

    #[test]
    fn widevine_request_signature_matches_known_answer() {
        // SHA-1 of the request text, then AES-256-CBC with the public widevine_test credentials
        // (Shaka Packager's `request_signer.cc`).
        let request = r#"{"content_id":"Q29udGVudEZvbw==","policy":"PolicyFoo","tracks":[{"type":"SD"},{"type":"HD"},{"type":"UHD1"},{"type":"UHD2"},{"type":"AUDIO"}],"drm_types":["WIDEVINE"],"protection_scheme":"CENC"}"#;
        let digest = sha1::Sha1::digest(request.as_bytes());
        assert_eq!(
            hex::encode(digest),
            "3aa57963303b3431a97e82b45bff779a74f72df1"
        );
        let key = hex::decode("1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9")
            .unwrap();
        let iv = arr16("d58ce954203b7c9a9a9d467f59839249");
        let signature = aes_cbc_encrypt_pkcs7(&key, &iv, &digest).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(&signature),
            "7eCWoKs8d3ah0ugpd4yyi+6Y7lxfjcDIWtKUf95/9A4="
        );
        assert_eq!(
            aes_cbc_decrypt_pkcs7(&key, &iv, &signature).unwrap(),
            digest.to_vec()
        );
    }
}

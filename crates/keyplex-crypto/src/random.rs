//! Key, IV, key id and token generation from the operating system's CSPRNG (via aws-lc-rs).
//!
//! Every function is fallible: if the system generator ever fails, keyplex refuses to hand out
//! a key rather than hand out a predictable one.
//!
//! Small draws come from a per-thread buffer that one call of the generator fills
//! ([`POOL_BYTES`] at a time). Each call of aws-lc's generator has a fixed cost of ~0.5 µs on
//! the VMs keyplex was measured on (its reseed checks and the hardware entropy it mixes in:
//! `RDRAND`, slow under virtualisation), and every key request draws candidate material
//! (a kid, a key, an IV) before the store says whether the key already exists — 6 % of a
//! Widevine API request with five tracks (perf, 2026-12-06). Bytes are zeroized in the
//! buffer as they are handed out, and the rest when the thread ends; what sits there is
//! no more than the generator's own state in memory already allows one to predict.

use std::cell::RefCell;

use keyplex_types::{ContentKeyValue, Iv, KeyId};
use zeroize::{Zeroize as _, Zeroizing};

use crate::CryptoError;

/// Bytes one refill of the per-thread buffer draws: ten kid + key + IV triples.
pub const POOL_BYTES: usize = 480;

struct Pool {
    bytes: Zeroizing<[u8; POOL_BYTES]>,
    /// Bytes already handed out (zeroized) from the start of `bytes`.
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool {
        bytes: Zeroizing::new([0; POOL_BYTES]),
        used: POOL_BYTES,
    });
}

/// Fills `out` from the system CSPRNG: through the per-thread buffer when it is small, in a
/// call of its own otherwise.
fn fill(out: &mut [u8]) -> Result<(), CryptoError> {
    if out.len() > POOL_BYTES / 4 {
        return aws_lc_rs::rand::fill(out).map_err(|_| CryptoError::Rng);
    }
    POOL.with(|pool| {
        let mut pool = pool.try_borrow_mut().map_err(|_| CryptoError::Rng)?;
        let Pool { bytes, used } = &mut *pool;
        if POOL_BYTES - *used < out.len() {
            aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| CryptoError::Rng)?;
            *used = 0;
        }
        let taken = bytes
            .get_mut(*used..*used + out.len())
            .ok_or(CryptoError::Rng)?;
        out.copy_from_slice(taken);
        taken.zeroize();
        *used += out.len();
        Ok(())
    })
}

/// `N` bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    fill(&mut bytes)?;
    Ok(bytes)
}

/// A fresh 16-byte content key. The intermediate buffer is wiped once the key is built.
pub fn new_key_value() -> Result<ContentKeyValue, CryptoError> {
    let bytes = Zeroizing::new(random_bytes::<16>()?);
    Ok(ContentKeyValue::from_bytes(*bytes))
}

/// A fresh 16-byte IV (not secret, but must not repeat across keys).
pub fn new_iv() -> Result<Iv, CryptoError> {
    Ok(Iv::from_bytes(random_bytes::<16>()?))
}

/// A fresh key id, content key and IV in one draw, for a key keyplex names itself.
pub fn new_key_material() -> Result<(KeyId, ContentKeyValue, Iv), CryptoError> {
    let mut parts = Zeroizing::new([[0u8; 16]; 3]);
    fill(parts.as_flattened_mut())?;
    let [kid, key, iv] = *parts;
    Ok((
        key_id_from(kid),
        ContentKeyValue::from_bytes(key),
        Iv::from_bytes(iv),
    ))
}

/// A fresh key id laid out as a random (version 4, RFC 9562 variant) UUID, so that tools that
/// inspect key ids see a well-formed UUID.
pub fn new_key_id() -> Result<KeyId, CryptoError> {
    Ok(key_id_from(random_bytes::<16>()?))
}

fn key_id_from(mut bytes: [u8; 16]) -> KeyId {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    KeyId::from_bytes(bytes)
}

/// The URL-safe base64 alphabet: tokens can go in URLs, headers and shell commands unquoted.
const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A random token of `len` characters from `[A-Za-z0-9_-]` (6 bits of entropy per character),
/// for the demo credentials printed at first start.
pub fn random_token(len: usize) -> Result<String, CryptoError> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CryptoError::Rng)?;
    // 64 divides 256, so masking to 6 bits keeps every character equally likely.
    Ok(bytes
        .iter()
        .map(|b| {
            char::from(
                TOKEN_ALPHABET
                    .get(usize::from(b & 0x3f))
                    .copied()
                    .unwrap_or(b'_'),
            )
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn key_ids_are_version_4_variant_1_uuids() {
        for _ in 0..64 {
            let kid = new_key_id().unwrap();
            assert_eq!(kid.uuid().get_version_num(), 4);
            assert_eq!(kid.as_bytes()[8] >> 6, 0b10, "RFC 9562 variant");
            // Canonical text form: version digit at position 14, variant digit in 8..=b at 19.
            let text = kid.to_string();
            assert_eq!(&text[14..15], "4");
            assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        }
    }

    #[test]
    fn generated_values_do_not_repeat() {
        let kids: HashSet<_> = (0..256).map(|_| new_key_id().unwrap()).collect();
        assert_eq!(kids.len(), 256);
        let keys: HashSet<_> = (0..256)
            .map(|_| *new_key_value().unwrap().expose())
            .collect();
        assert_eq!(keys.len(), 256);
        let ivs: HashSet<_> = (0..256).map(|_| *new_iv().unwrap().as_bytes()).collect();
        assert_eq!(ivs.len(), 256);
        assert_ne!(random_bytes::<32>().unwrap(), random_bytes::<32>().unwrap());
    }

    #[test]
    fn draws_through_the_buffer_do_not_repeat_across_refills_and_threads() {
        // Many refills of the buffer, on several threads: no 16-byte value seen twice, and
        // handed-out bytes are not all zero (a buffer that was never filled would be).
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..POOL_BYTES)
                        .map(|_| random_bytes::<16>().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            for value in t.join().unwrap() {
                assert_ne!(value, [0u8; 16]);
                assert!(seen.insert(value));
            }
        }
        // Draws larger than a quarter of the buffer go straight to the generator.
        let big = random_bytes::<{ POOL_BYTES }>().unwrap();
        assert!(big.iter().any(|b| *b != 0));
    }

    #[test]
    fn material_drawn_at_once_has_three_distinct_parts_and_a_uuid_kid() {
        let mut seen = HashSet::new();
        for _ in 0..256 {
            let (kid, key, iv) = new_key_material().unwrap();
            assert_eq!(kid.uuid().get_version_num(), 4);
            assert_ne!(key.expose(), kid.as_bytes());
            assert_ne!(key.expose(), iv.as_bytes());
            assert!(seen.insert(*key.expose()));
            assert!(seen.insert(*iv.as_bytes()));
        }
    }

    #[test]
    fn tokens_are_url_safe_with_the_requested_length() {
        for len in [0, 1, 16, 32, 100] {
            let token = random_token(len).unwrap();
            assert_eq!(token.len(), len);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
        // Over 6400 characters every one of the 64 symbols shows up (probability of a miss
        // is below 64 * (63/64)^6400, about 1e-42).
        let long = random_token(6400).unwrap();
        let distinct: HashSet<u8> = long.bytes().collect();
        assert_eq!(distinct.len(), 64);
    }
}

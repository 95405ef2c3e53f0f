//! The master key and the AES-256-GCM envelope that protects content keys at rest.
//!
//! A stolen database alone reveals no content key: every key is sealed under the master key,
//! which lives in a separate file (mode 0600) or the environment. The associated data passed
//! to [`MasterKey::seal`] binds a sealed key to its row, so a sealed value copied onto another
//! row does not open.
//!
//! Sealed format: `nonce (12 bytes) || ciphertext || GCM tag (16 bytes)`. Nonces are random;
//! with 96-bit random nonces one master key can seal about 2^32 values before the collision
//! risk becomes non-negligible, far more than any key server issues.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::random::random_bytes;

/// Length of the master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;
/// Length of the GCM authentication tag appended to every sealed value.
const TAG_LEN: usize = 16;
/// Domain separation for [`MasterKey::fingerprint`], so the fingerprint is not a plain hash
/// of the key that could be matched against other systems.
const FINGERPRINT_DOMAIN: &[u8] = b"keyplex-master-key-id";

/// The 32-byte master key. Zeroized on drop; `Debug` shows only its fingerprint.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl MasterKey {
    /// Parses exactly 64 hex digits (either case). The error never echoes the input.
    pub fn from_hex(hex_digits: &str) -> Result<Self, CryptoError> {
        if hex_digits.len() != 2 * MASTER_KEY_LEN {
            return Err(CryptoError::MasterKey(format!(
                "expected {} hex digits, got {} characters",
                2 * MASTER_KEY_LEN,
                hex_digits.chars().count()
            )));
        }
        let mut bytes = [0u8; MASTER_KEY_LEN];
        if hex::decode_to_slice(hex_digits, &mut bytes).is_err() {
            bytes.zeroize();
            return Err(CryptoError::MasterKey(
                "not a hexadecimal string".to_owned(),
            ));
        }
        Ok(Self(bytes))
    }

    /// A fresh random master key.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(random_bytes::<MASTER_KEY_LEN>()?))
    }

    /// The key as 64 lowercase hex digits, for writing the key file. Zeroized on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0))
    }

    /// A public identifier of this key: the first 16 hex digits of
    /// SHA-256("keyplex-master-key-id" || key). Stored with every sealed row so that a wrong or
    /// rotated master key is diagnosed as such instead of as corruption.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_DOMAIN);
        hasher.update(self.0);
        let digest = hasher.finalize();
        hex::encode(digest.get(..8).unwrap_or_default())
    }

    /// Encrypts `plaintext` with a random nonce; `aad` must be presented again to open it.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.seal_with_nonce(random_bytes::<NONCE_LEN>()?, aad, plaintext)
    }

    fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let key = self.aead_key()?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        let mut in_out = Zeroizing::new(plaintext.to_vec());
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut *in_out,
        )
        .map_err(|_| CryptoError::MasterKey("AES-256-GCM encryption failed".to_owned()))?;
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Decrypts a value made by [`MasterKey::seal`] with the same `aad`. Any mismatch (other
    /// master key, other aad, a flipped bit, truncation) is [`CryptoError::Unseal`].
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (nonce, ciphertext) = sealed
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(CryptoError::Unseal)?;
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Unseal);
        }
        let key = self.aead_key()?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plaintext_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| CryptoError::Unseal)?
            .len();
        in_out.truncate(plaintext_len);
        Ok(in_out)
    }

    fn aead_key(&self) -> Result<LessSafeKey, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &self.0)
            .map_err(|_| CryptoError::MasterKey("AES-256-GCM rejected the key".to_owned()))?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Loads the master key from `path`, or creates it there if the file does not exist.
    /// Returns the key and whether it was created (so the caller can say so once).
    ///
    /// An existing file must hold 64 hex digits (surrounding whitespace is ignored) and must
    /// not be accessible to group or others: a readable key file defeats encryption at rest,
    /// so keyplex refuses to start rather than silently use it.
    ///
    /// A new file is written to a temporary file (mode 0600), fsynced, then hard-linked into
    /// place, and the directory is fsynced. The link (unlike a rename) never replaces an
    /// existing file, so two processes starting at once cannot overwrite each other's key:
    /// the loser reads the winner's file. Losing a master key loses every content key.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        match fs::metadata(path) {
            Ok(_) => Self::load(path).map(|key| (key, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(file_error("cannot inspect", path, &e)),
        }
    }

    /// Writes this key to a new file at `path` (mode 0600, fsynced, never replacing an
    /// existing file: `AlreadyExists` is an error).
    pub fn write_new(&self, path: &Path) -> Result<(), CryptoError> {
        let dir = dir_of(path);
        self.link_new(dir, path)?
            .map_err(|e| file_error("cannot write", path, &e))?;
        sync_dir(dir).map_err(|e| file_error("cannot sync the directory of", path, &e))
    }

    /// Writes this key to a temporary file in `dir` (mode 0600, fsynced), then hard-links it
    /// to `path`: the link (unlike a rename) never replaces an existing file. The temporary
    /// name is only a staging area, removed whatever happened. The outer error is ours (no
    /// file name, no randomness); the inner one is the file system's, as it came (a caller
    /// tells `AlreadyExists` apart). The directory is not synced.
    fn link_new(&self, dir: &Path, path: &Path) -> Result<io::Result<()>, CryptoError> {
        let file_name = path.file_name().ok_or_else(|| {
            CryptoError::MasterKey(format!("{} is not a file path", path.display()))
        })?;
        let suffix = hex::encode(random_bytes::<8>()?);
        let temp_path = dir.join(format!(".{}.{suffix}.tmp", file_name.to_string_lossy()));
        let written = write_new_file(&temp_path, self.to_hex().as_bytes());
        let linked = written.and_then(|()| fs::hard_link(&temp_path, path));
        let _ = fs::remove_file(&temp_path);
        Ok(linked)
    }

    /// Reads an existing key file (which must not be readable by group or others).
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let mode = fs::metadata(path)
            .map_err(|e| file_error("cannot inspect", path, &e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(CryptoError::MasterKey(format!(
                "master key file {} is accessible to group or others (mode {:o}); \
                 run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
        let contents = Zeroizing::new(
            fs::read_to_string(path).map_err(|e| file_error("cannot read", path, &e))?,
        );
        Self::from_hex(contents.trim()).map_err(|e| match e {
            CryptoError::MasterKey(reason) => {
                CryptoError::MasterKey(format!("master key file {}: {reason}", path.display()))
            }
            other => other,
        })
    }

    fn create(path: &Path) -> Result<(Self, bool), CryptoError> {
        let dir = dir_of(path);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| file_error("cannot create the directory of", path, &e))?;

        let key = Self::generate()?;
        match key.link_new(dir, path)? {
            Ok(()) => {
                sync_dir(dir).map_err(|e| file_error("cannot sync the directory of", path, &e))?;
                Ok((key, true))
            }
            // Another process created the key between our check and our link: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Self::load(path).map(|key| (key, false))
            }
            Err(e) => Err(file_error("cannot write", path, &e)),
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// The directory a file at `path` is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates `path` (which must not exist) with mode 0600, writes `contents` and a newline, and
/// fsyncs it.
fn write_new_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(contents.len() + 1));
    line.extend_from_slice(contents);
    line.push(b'\n');
    write_secret_file(path, &line)
}

/// Creates `path` (which must not exist) readable by its owner only (mode 0600), writes
/// `contents` and fsyncs it: the one way keyplex writes a file that holds a secret (master
/// keys, the admin token, the demo tenant's credentials).
pub fn write_secret_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes a directory entry change (a new link) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn file_error(what: &str, path: &Path, error: &io::Error) -> CryptoError {
    CryptoError::MasterKey(format!(
        "{what} master key file {}: {error}",
        path.display()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The GCM specification's test case 16 (AES-256, 96-bit IV, with AAD), from McGrew and
    /// Viega, "The Galois/Counter Mode of Operation", appendix B; cross-checked with Python's
    /// `cryptography` AESGCM.
    const GCM16_KEY: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const GCM16_NONCE: &str = "cafebabefacedbaddecaf888";
    const GCM16_PLAINTEXT: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                                   1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const GCM16_AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const GCM16_CIPHERTEXT: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                                    8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
    const GCM16_TAG: &str = "76fc6ece0f4e1768cddf8853bb2d551b";

    fn test_key() -> MasterKey {
        MasterKey::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .unwrap()
    }

    #[test]
    fn seal_matches_the_gcm_specification_test_case_16() {
        let key = MasterKey::from_hex(GCM16_KEY).unwrap();
        let nonce: [u8; 12] = hex::decode(GCM16_NONCE).unwrap().try_into().unwrap();
        let aad = hex::decode(GCM16_AAD).unwrap();
        let plaintext = hex::decode(GCM16_PLAINTEXT).unwrap();
        let sealed = key.seal_with_nonce(nonce, &aad, &plaintext).unwrap();
        let expected = format!("{GCM16_NONCE}{GCM16_CIPHERTEXT}{GCM16_TAG}");
        assert_eq!(hex::encode(&sealed), expected);
        assert_eq!(*key.open(&aad, &sealed).unwrap(), plaintext);
    }

    #[test]
    fn fingerprint_known_answers() {
        // python3: hashlib.sha256(b"keyplex-master-key-id" + key).hexdigest()[:16]
        assert_eq!(test_key().fingerprint(), "b28cda5963298e8c");
        assert_eq!(
            MasterKey::from_hex(GCM16_KEY).unwrap().fingerprint(),
            "d8b9be3b67fe643c"
        );
    }

    #[test]
    fn seal_open_round_trip_with_fresh_nonces() {
        let key = test_key();
        let first = key.seal(b"row-1", b"sixteen byte key").unwrap();
        let second = key.seal(b"row-1", b"sixteen byte key").unwrap();
        assert_eq!(first.len(), 12 + 16 + 16);
        assert_ne!(first, second, "every seal uses a new nonce");
        assert_eq!(&**key.open(b"row-1", &first).unwrap(), b"sixteen byte key");
        assert_eq!(&**key.open(b"row-1", &second).unwrap(), b"sixteen byte key");
        assert!(
            key.open(b"", &key.seal(b"", b"").unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let key = test_key();
        let sealed = key.seal(b"aad", b"sixteen byte key").unwrap();
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(
                matches!(key.open(b"aad", &tampered), Err(CryptoError::Unseal)),
                "byte {i}"
            );
        }
    }

    #[test]
    fn wrong_aad_wrong_key_and_truncation_fail() {
        let key = test_key();
        let sealed = key.seal(b"tenant-a", b"sixteen byte key").unwrap();
        assert!(matches!(
            key.open(b"tenant-b", &sealed),
            Err(CryptoError::Unseal)
        ));
        let other = MasterKey::generate().unwrap();
        assert!(matches!(
            other.open(b"tenant-a", &sealed),
            Err(CryptoError::Unseal)
        ));
        for len in [0, 11, 12, 27, sealed.len() - 1] {
            assert!(
                matches!(
                    key.open(b"tenant-a", &sealed[..len]),
                    Err(CryptoError::Unseal)
                ),
                "{len}"
            );
        }
    }

    #[test]
    fn from_hex_accepts_exactly_64_hex_digits() {
        let hex_digits = test_key().to_hex();
        assert_eq!(
            hex_digits.as_str(),
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        assert_eq!(
            MasterKey::from_hex(&hex_digits.to_uppercase()).unwrap().0,
            test_key().0
        );
        assert!(MasterKey::from_hex(&hex_digits[..62]).is_err());
        assert!(MasterKey::from_hex(&format!("{}00", hex_digits.as_str())).is_err());
        assert!(MasterKey::from_hex(&format!(" {}", &hex_digits[1..])).is_err());
        let not_hex = format!("zz{}", &hex_digits[2..]);
        let err = MasterKey::from_hex(&not_hex).unwrap_err().to_string();
        assert!(
            !err.contains(&hex_digits[2..]),
            "the error must not echo the key: {err}"
        );
    }

    #[test]
    fn debug_shows_the_fingerprint_not_the_key() {
        let key = test_key();
        let debug = format!("{key:?}");
        assert!(debug.contains("b28cda5963298e8c"), "{debug}");
        assert!(!debug.contains("0102030405"), "{debug}");
    }

    #[test]
    fn load_or_create_creates_a_private_file_then_loads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("master.key");
        let (created, was_created) = MasterKey::load_or_create(&path).unwrap();
        assert!(was_created);
        let metadata = fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        let contents = fs::read_to_string(&path).unwrap();
        assert_eq!(contents, format!("{}\n", created.to_hex().as_str()));
        // No staging file is left behind.
        let entries: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1);

        let (loaded, was_created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!was_created);
        assert_eq!(loaded.0, created.0);
    }

    #[test]
    fn load_trims_whitespace_and_reports_bad_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        write_new_file(
            &path,
            format!("  {}  \n", test_key().to_hex().as_str()).as_bytes(),
        )
        .unwrap();
        let (loaded, was_created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!was_created);
        assert_eq!(loaded.fingerprint(), "b28cda5963298e8c");

        let short = dir.path().join("short.key");
        write_new_file(&short, b"abcd").unwrap();
        let err = MasterKey::load_or_create(&short).unwrap_err().to_string();
        assert!(
            err.contains("short.key") && err.contains("64 hex digits"),
            "{err}"
        );
    }

    #[test]
    fn load_refuses_a_file_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::load_or_create(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o601] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::load_or_create(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(MasterKey::load_or_create(&path).is_ok());
    }

    #[test]
    fn concurrent_creators_end_up_with_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let keys: Vec<(MasterKey, bool)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| MasterKey::load_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(keys.iter().filter(|(_, created)| *created).count(), 1);
        assert!(keys.iter().all(|(key, _)| key.0 == keys[0].0.0));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

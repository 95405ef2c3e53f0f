//! The domain vocabulary of keyplex, shared by every other crate.
//!
//! Everything here is a validated value: once a `ContentId` or `KeyId` exists, it is
//! well-formed, so business logic never re-checks raw strings. No I/O, no async.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Why a wire value could not become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("invalid key id {0:?}: expected a UUID (8-4-4-4-12 hex digits)")]
    KeyId(String),
    #[error(
        "invalid content id: must be 1 to 200 characters of A-Z a-z 0-9 _ . : - (got {len} characters)"
    )]
    ContentId { len: usize },
    #[error("invalid tenant id {0:?}: must be 1 to 64 characters of a-z 0-9 _ -")]
    TenantId(String),
    #[error(
        "tenant id {0:?} is reserved: players, ui, admin, metrics, healthz and openapi.json are the server's own paths, and -, or a name starting with a dot, cannot be a tenant; choose another"
    )]
    ReservedTenantId(String),
    #[error("invalid track type {0:?}: expected e.g. SD, HD, UHD1, UHD2, AUDIO, ALL")]
    TrackType(String),
    #[error("invalid key period index {0}: at most {max}", max = KeyPeriod::MAX_INDEX)]
    KeyPeriod(u64),
    #[error("invalid encryption scheme {0:?}: expected cenc, cbcs, cens or cbc1")]
    Scheme(String),
    #[error("invalid {what}: expected {expected} bytes, got {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("invalid {what}: not valid base64 or hex")]
    Encoding { what: &'static str },
}

// ---------------------------------------------------------------------------------------------
// Key id

/// A content key id: 16 bytes in UUID ("big-endian", as written) order, the order used by
/// `tenc`, `pssh`, CPIX and Widevine. PlayReady's little-endian GUID order is derived on demand.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(uuid::Uuid);

impl KeyId {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(bytes))
    }
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TypeError> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| TypeError::Length {
            what: "key id",
            expected: 16,
            got: bytes.len(),
        })?;
        Ok(Self::from_bytes(arr))
    }
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    pub const fn uuid(&self) -> uuid::Uuid {
        self.0
    }
    /// 32 lowercase hex digits, no dashes (Shaka Packager `key_id=`, HLS `KEYID=0x…`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
    /// PlayReady GUID byte order: first three fields byte-swapped, last 8 bytes unchanged.
    pub fn to_guid_le_bytes(&self) -> [u8; 16] {
        let b = self.as_bytes();
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }
    pub fn from_guid_le_bytes(le: [u8; 16]) -> Self {
        let b = le;
        Self::from_bytes([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ])
    }
}

impl FromStr for KeyId {
    type Err = TypeError;
    /// Accepts the canonical 8-4-4-4-12 form (any case) and 32 bare hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Documents carry dozens of kids: this runs per attribute. Each digit, at a position
        // fixed by the form, is looked up in a table, and the whole checked once at the end.
        let t = s.trim().as_bytes();
        let invalid = || TypeError::KeyId(truncate_for_message(s));
        let positions = match t.len() {
            36 => {
                if [8, 13, 18, 23].iter().any(|&i| t.get(i) != Some(&b'-')) {
                    return Err(invalid());
                }
                &HYPHENATED_DIGITS
            }
            32 => &BARE_DIGITS,
            _ => return Err(invalid()),
        };
        let digit = |at: u8| t.get(usize::from(at)).map_or(NOT_HEX, |&b| hex_value(b));
        let mut bytes = [0u8; 16];
        // Any digit that is not one sets a bit above the low four.
        let mut bad = 0u8;
        for (byte, pair) in bytes.iter_mut().zip(positions.chunks_exact(2)) {
            if let &[high, low] = pair {
                let (high, low) = (digit(high), digit(low));
                bad |= high | low;
                *byte = high << 4 | low;
            }
        }
        if bad > 0xF {
            return Err(invalid());
        }
        Ok(Self::from_bytes(bytes))
    }
}

/// Where the 32 digits of a hyphenated UUID (8-4-4-4-12) are.
const HYPHENATED_DIGITS: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35,
];

/// Where the digits of 32 bare hex digits are.
const BARE_DIGITS: [u8; 32] = {
    let mut positions = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        positions[i] = i as u8;
        i += 1;
    }
    positions
};

/// The value of hex digit `b`, or [`NOT_HEX`].
#[inline(always)]
#[allow(clippy::indexing_slicing)] // a byte indexes a table of 256
fn hex_value(b: u8) -> u8 {
    HEX_VALUES[usize::from(b)]
}

const NOT_HEX: u8 = 0xFF;

/// [`hex_value`] of every byte, looked up (one load per digit instead of range comparisons).
#[allow(clippy::indexing_slicing)] // b < 256
static HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            d @ b'0'..=b'9' => d - b'0',
            d @ b'a'..=b'f' => d - b'a' + 10,
            d @ b'A'..=b'F' => d - b'A' + 10,
            _ => NOT_HEX,
        };
        b += 1;
    }
    table
};

impl fmt::Display for KeyId {
    /// Canonical lowercase 8-4-4-4-12.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0.hyphenated())
    }
}

/// base64 as clients really send it: the standard or URL-safe alphabet, padded or not, with
/// whitespace ignored and spaces read as `+` (a form field whose `+` was not
/// percent-encoded arrives with a space). The one lenient decoder of the workspace: key ids,
/// Widevine requests, FairPlay SPCs and CKCs, licence payloads, PSSH input all go through it.
pub fn decode_base64_lenient(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // Built at compile time: `GeneralPurpose::new` fills a 256-entry decode table, which
    // showed in ClearKey's profile when it ran per call.
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    let decode = |text: &[u8]| {
        STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE.decode(text))
            .ok()
    };
    let trimmed = text.trim();
    // Most texts have no space inside: decoded as they are, without a copy.
    if !trimmed.bytes().any(|b| b.is_ascii_whitespace()) {
        return decode(trimmed.as_bytes());
    }
    let text: String = trimmed
        .chars()
        .map(|c| if c == ' ' { '+' } else { c })
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    decode(text.as_bytes())
}

/// At most 64 characters of `s`: what an error message or log line quotes of a value a
/// client sent (so that a hostile megabyte never reaches a log).
pub fn truncate_for_message(s: &str) -> String {
    truncate_chars(s, 64)
}

/// At most `n` characters of `s` (never a character cut in half): the one way the workspace
/// shortens a text it quotes or keeps; [`truncate_for_message`] is the common limit.
pub fn truncate_chars(s: &str, n: usize) -> String {
    // No more bytes than `n` is no more characters than `n`: nothing to count (counting
    // the characters of every audited credential showed in a licence's profile).
    if s.len() <= n {
        return s.to_owned();
    }
    // One copy of the prefix (collecting chars pushed them one at a time).
    let end = s.char_indices().nth(n).map_or(s.len(), |(at, _)| at);
    s.get(..end).unwrap_or(s).to_owned()
}

// ---------------------------------------------------------------------------------------------
// Content key and IV

/// The 16 secret bytes of a content key. Zeroized on drop; never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ContentKeyValue([u8; 16]);

impl ContentKeyValue {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TypeError> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| TypeError::Length {
            what: "content key",
            expected: 16,
            got: bytes.len(),
        })?;
        Ok(Self(arr))
    }
    /// Exposes the secret bytes. Call sites are the places where the key leaves keyplex.
    pub const fn expose(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for ContentKeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKeyValue(<redacted>)")
    }
}

/// A 16-byte initialisation vector (CENC constant IV / HLS IV / FairPlay IV). Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Iv([u8; 16]);

impl Iv {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TypeError> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| TypeError::Length {
            what: "IV",
            expected: 16,
            got: bytes.len(),
        })?;
        Ok(Self(arr))
    }
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
}

impl fmt::Debug for Iv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iv({})", hex::encode(self.0))
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers

/// A tenant (operator) id: appears in every URL, so it is kept URL-safe.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TenantId(String);

/// Maps keyed by tenant can be looked up with a path segment as it is, without parsing it
/// into a new `TenantId` (an allocation per request). Hash, equality and order are those of
/// the inner `String`, which are those of `str`.
impl std::borrow::Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TenantId {
    /// Names a new tenant may not take: the first path segment of the server's own routes
    /// (a tenant `admin` would answer `/admin/…` beside the admin API), and names no route
    /// could tell from a path (`-`, anything starting with `.`).
    pub const RESERVED: [&'static str; 7] = [
        "players",
        "ui",
        "admin",
        "metrics",
        "healthz",
        "openapi.json",
        "-",
    ];

    /// The id of a tenant being created (configuration file, admin API): [`Self::parse`],
    /// and not one of [`Self::RESERVED`]. Lookups and stored rows use `parse` alone, so a
    /// tenant created before a name was reserved can still be read, exported and disabled.
    pub fn parse_new(s: &str) -> Result<Self, TypeError> {
        if Self::is_reserved(s) {
            return Err(TypeError::ReservedTenantId(truncate_for_message(s)));
        }
        Self::parse(s)
    }

    /// True for a name [`Self::parse_new`] refuses as reserved.
    pub fn is_reserved(s: &str) -> bool {
        s.starts_with('.') || Self::RESERVED.contains(&s)
    }

    pub fn parse(s: &str) -> Result<Self, TypeError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TypeError::TenantId(truncate_for_message(s)))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content id: at most 200 characters of `[A-Za-z0-9_.:-]` (the public contract).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ContentId(String);

impl ContentId {
    pub const MAX_LEN: usize = 200;
    pub fn parse(s: &str) -> Result<Self, TypeError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TypeError::ContentId {
                len: s.chars().count(),
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Track type and key period: together with the content id they identify a key that keyplex
// chooses (NAGRA JSON, Widevine API, GET CPIX, kid override).

/// The track type a key is meant for. The well-known values are SD, HD, UHD1, UHD2, AUDIO and
/// ALL; SPEKE v2 presets add others (VIDEO, HD1, HD2, UHD, STEREO_AUDIO, `SD+HD1`, …), so the
/// value is an upper-case label rather than a closed enum.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TrackType(String);

impl TrackType {
    pub const SD: &'static str = "SD";
    pub const HD: &'static str = "HD";
    pub const UHD1: &'static str = "UHD1";
    pub const UHD2: &'static str = "UHD2";
    pub const AUDIO: &'static str = "AUDIO";
    pub const ALL: &'static str = "ALL";

    /// Normalises to upper case; 1..=32 characters of `[A-Z0-9_+]`.
    pub fn parse(s: &str) -> Result<Self, TypeError> {
        let up = s.trim().to_ascii_uppercase();
        let ok = !up.is_empty()
            && up.len() <= 32
            && up
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'+');
        if ok {
            Ok(Self(up))
        } else {
            Err(TypeError::TrackType(truncate_for_message(s)))
        }
    }
    pub fn all() -> Self {
        Self(Self::ALL.to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_audio(&self) -> bool {
        self.0.contains("AUDIO")
    }
}

impl fmt::Display for TrackType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which key period a key belongs to. VOD content has one key per track for ever; live
/// content rotates keys by period index (CPIX `ContentKeyPeriod@index`, Widevine
/// `crypto_period_index`, or `floor(unix_time / crypto_period_seconds)` for time-based APIs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum KeyPeriod {
    #[default]
    Vod,
    Index(u64),
}

impl KeyPeriod {
    /// The largest period index any interface accepts. CPIX `ContentKeyPeriod@index` and the
    /// Widevine API's `crypto_period_index` are 32-bit (they wrap at 2^32 - 1), and
    /// time-based periods stay far below it; every route checks this one bound, so the
    /// store never sees an index it cannot hold (it keeps them as signed 64-bit integers).
    pub const MAX_INDEX: u64 = u32::MAX as u64;

    /// A live period index, at most [`Self::MAX_INDEX`].
    pub fn from_index(index: u64) -> Result<Self, TypeError> {
        if index <= Self::MAX_INDEX {
            Ok(Self::Index(index))
        } else {
            Err(TypeError::KeyPeriod(index))
        }
    }

    pub fn index(self) -> Option<u64> {
        match self {
            Self::Vod => None,
            Self::Index(i) => Some(i),
        }
    }
    /// The period containing `unix_seconds` when periods are `period_seconds` long.
    pub fn for_time(unix_seconds: i64, period_seconds: u32) -> Self {
        let secs = u64::try_from(unix_seconds.max(0)).unwrap_or(0);
        Self::Index(secs / u64::from(period_seconds.max(1)))
    }
}

/// Where keyplex chooses the key id, this triple is a key's identity for ever.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct KeySlot {
    pub content_id: ContentId,
    pub track_type: TrackType,
    pub period: KeyPeriod,
}

// ---------------------------------------------------------------------------------------------
// Encryption scheme

/// ISO/IEC 23001-7 protection schemes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum EncryptionScheme {
    Cenc,
    Cbc1,
    Cens,
    Cbcs,
}

impl EncryptionScheme {
    pub const fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Cenc => *b"cenc",
            Self::Cbc1 => *b"cbc1",
            Self::Cens => *b"cens",
            Self::Cbcs => *b"cbcs",
        }
    }
    /// The FourCC as a big-endian integer (Widevine `protection_scheme`).
    pub const fn fourcc_u32(self) -> u32 {
        u32::from_be_bytes(self.fourcc())
    }
    pub fn from_fourcc_u32(v: u32) -> Option<Self> {
        [Self::Cenc, Self::Cbc1, Self::Cens, Self::Cbcs]
            .into_iter()
            .find(|s| s.fourcc_u32() == v)
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cenc => "cenc",
            Self::Cbc1 => "cbc1",
            Self::Cens => "cens",
            Self::Cbcs => "cbcs",
        }
    }
    /// CBC-mode schemes (cbcs, cbc1) use AES-CBC; the others AES-CTR.
    pub const fn is_cbc(self) -> bool {
        matches!(self, Self::Cbc1 | Self::Cbcs)
    }
}

impl FromStr for EncryptionScheme {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Compared without a lowercased copy: this runs per ContentKey of every request.
        let t = s.trim();
        [Self::Cenc, Self::Cbc1, Self::Cens, Self::Cbcs]
            .into_iter()
            .find(|scheme| t.eq_ignore_ascii_case(scheme.as_str()))
            .ok_or_else(|| TypeError::Scheme(truncate_for_message(s)))
    }
}

impl fmt::Display for EncryptionScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// A content key as the rest of keyplex sees it

/// Whether keyplex generated a key or a packager supplied it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyOrigin {
    Generated,
    Supplied,
}

/// A content key with its identity and metadata. The key bytes are secret (`ContentKeyValue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentKey {
    pub kid: KeyId,
    pub content_id: ContentId,
    pub key: ContentKeyValue,
    pub iv: Iv,
    /// Set when the key was asked for a track type (always for keyplex-chosen kids).
    pub track_type: Option<TrackType>,
    pub period: KeyPeriod,
    pub origin: KeyOrigin,
}

#[cfg(test)]
mod tests {
    #[test]
    fn lenient_base64_takes_what_clients_send() {
        let bytes = [0xfb, 0xff, 0xbe, 0x01, 0x02];
        for text in [
            "+/++AQI=",
            "+/++AQI",
            "-_--AQI=",
            "-_--AQI",
            " +/++AQI= ",
            "+/+\n+AQI=",
            "+/ +AQI=",
            "+/++\r\n\tAQI",
        ] {
            assert_eq!(
                super::decode_base64_lenient(text).as_deref(),
                Some(&bytes[..]),
                "{text:?}"
            );
        }
        for text in ["+/++AQI*", "+/_+AQI=", "A", "é"] {
            assert_eq!(super::decode_base64_lenient(text), None, "{text:?}");
        }
        assert_eq!(super::decode_base64_lenient("").as_deref(), Some(&[][..]));
    }

    #[test]
    fn truncate_chars_counts_characters_not_bytes() {
        for (text, n) in [
            ("", 0),
            ("", 3),
            ("abc", 0),
            ("abc", 2),
            ("abc", 3),
            ("abc", 9),
        ] {
            assert_eq!(
                super::truncate_chars(text, n),
                text.chars().take(n).collect::<String>()
            );
        }
        for n in 0..16 {
            let text = "é€😀a\u{0}ü";
            assert_eq!(
                super::truncate_chars(text, n),
                text.chars().take(n).collect::<String>()
            );
        }
        assert_eq!(super::truncate_for_message(&"x".repeat(100)).len(), 64);
    }

    use super::*;

    #[test]
    fn key_id_parses_both_forms_and_guid_order_matches_known_answers() {
        let kid: KeyId = "B4C3188B-EDDD-453D-9BC2-1CBCA7566239".parse().unwrap();
        assert_eq!(kid.to_string(), "b4c3188b-eddd-453d-9bc2-1cbca7566239");
        assert_eq!(
            hex::encode(kid.to_guid_le_bytes()),
            "8b18c3b4dded3d459bc21cbca7566239"
        );
        assert_eq!(KeyId::from_guid_le_bytes(kid.to_guid_le_bytes()), kid);
        let bare: KeyId = "b4c3188beddd453d9bc21cbca7566239".parse().unwrap();
        assert_eq!(bare, kid);
        assert!("b4c3188b-eddd-453d-9bc2".parse::<KeyId>().is_err());
        assert!(
            "{b4c3188b-eddd-453d-9bc2-1cbca7566239}"
                .parse::<KeyId>()
                .is_err()
        );
    }

    #[test]
    fn key_id_parsing_agrees_with_the_uuid_crate_on_its_two_shapes() {
        // Strings of both accepted shapes built from every byte value at every position:
        // accepted exactly when uuid accepts them (after the shape check), to the same value.
        let base = "b4c3188b-eddd-453d-9bc2-1cbca7566239";
        for form in [base.to_owned(), base.replace('-', "")] {
            for at in 0..form.len() {
                for b in 0u8..=255 {
                    let mut bytes = form.clone().into_bytes();
                    bytes[at] = b;
                    let Ok(text) = String::from_utf8(bytes) else {
                        continue;
                    };
                    let ours = text.parse::<KeyId>().ok();
                    let hyphens_in_place = text.len() != 36
                        || [8, 13, 18, 23].iter().all(|&i| text.as_bytes()[i] == b'-');
                    let theirs = uuid::Uuid::parse_str(&text)
                        .ok()
                        .filter(|_| hyphens_in_place && !text.contains('{'))
                        .filter(|_| text.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()))
                        .map(KeyId);
                    assert_eq!(ours, theirs, "{text:?}");
                }
            }
        }
        assert_eq!(
            " B4C3188BEDDD453D9BC21CBCA7566239\n".parse::<KeyId>().ok(),
            base.parse().ok()
        );
        assert!("".parse::<KeyId>().is_err());
        assert!(
            "b4c3188b-eddd-453d-9bc2-1cbca756623"
                .parse::<KeyId>()
                .is_err()
        );
    }

    #[test]
    fn content_id_rules() {
        assert!(ContentId::parse("movie_1.2:3-4").is_ok());
        assert!(ContentId::parse("").is_err());
        assert!(ContentId::parse("a b").is_err());
        assert!(ContentId::parse("é").is_err());
        assert!(ContentId::parse(&"a".repeat(200)).is_ok());
        assert!(ContentId::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn scheme_fourcc_matches_widevine_values() {
        assert_eq!(EncryptionScheme::Cenc.fourcc_u32(), 1_667_591_779);
        assert_eq!(EncryptionScheme::Cbcs.fourcc_u32(), 1_667_392_371);
        assert_eq!(
            EncryptionScheme::from_fourcc_u32(1_667_591_795),
            Some(EncryptionScheme::Cens)
        );
    }

    #[test]
    fn scheme_parsing_trims_and_ignores_ascii_case() {
        for (text, scheme) in [
            ("cenc", Some(EncryptionScheme::Cenc)),
            (" CBC1\n", Some(EncryptionScheme::Cbc1)),
            ("CeNs", Some(EncryptionScheme::Cens)),
            ("\tcbcS ", Some(EncryptionScheme::Cbcs)),
            ("cbcs2", None),
            ("cbc", None),
            ("", None),
            // Only ASCII letters fold (ſ is not an s).
            ("cenſ", None),
            ("c b c s", None),
        ] {
            assert_eq!(text.parse::<EncryptionScheme>().ok(), scheme, "{text:?}");
        }
    }

    #[test]
    fn key_period_for_time() {
        assert_eq!(KeyPeriod::for_time(125, 60), KeyPeriod::Index(2));
        assert_eq!(KeyPeriod::for_time(-5, 60), KeyPeriod::Index(0));
    }

    #[test]
    fn key_period_index_is_bounded() {
        assert_eq!(KeyPeriod::from_index(0), Ok(KeyPeriod::Index(0)));
        assert_eq!(
            KeyPeriod::from_index(4_294_967_295),
            Ok(KeyPeriod::Index(4_294_967_295))
        );
        assert_eq!(
            KeyPeriod::from_index(4_294_967_296),
            Err(TypeError::KeyPeriod(4_294_967_296))
        );
        let err = KeyPeriod::from_index(9_223_372_036_854_775_808).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid key period index 9223372036854775808: at most 4294967295"
        );
    }

    #[test]
    fn reserved_tenant_ids_are_refused_for_new_tenants_only() {
        for name in [
            "players",
            "ui",
            "admin",
            "metrics",
            "healthz",
            "openapi.json",
            "-",
            ".",
            ".git",
            ".well-known",
        ] {
            let err = TenantId::parse_new(name).unwrap_err();
            assert_eq!(err, TypeError::ReservedTenantId(name.to_owned()), "{name}");
            assert!(err.to_string().contains("is reserved"), "{err}");
        }
        for name in ["acme", "ui2", "admin-eu", "my-players", "a-b", "x_y"] {
            assert!(TenantId::parse_new(name).is_ok(), "{name}");
        }
        // Existing rows stay readable: lookups and the store parse without the rule.
        assert!(TenantId::parse("admin").is_ok());
        // Still the charset rule for what is not reserved.
        assert!(matches!(
            TenantId::parse_new("Acme"),
            Err(TypeError::TenantId(_))
        ));
    }

    #[test]
    fn secrets_do_not_print() {
        let k = ContentKeyValue::from_bytes([7; 16]);
        assert_eq!(format!("{k:?}"), "ContentKeyValue(<redacted>)");
    }
}

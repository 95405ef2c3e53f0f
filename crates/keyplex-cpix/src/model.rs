//! The typed CPIX document. The reader builds it from XML, the key-exchange logic fills in
//! values, the writer turns it back into XML. Business logic never sees XML.
//!
//! The model follows the request/response pattern packagers use: the request names what it
//! wants with (usually empty) elements, the response is the same document with those elements
//! filled in. So each DRM signaling output is an `Option<String>`: `None` = not asked for,
//! `Some("")` = asked for, `Some(base64)` = answered.

use keyplex_types::{ContentKeyValue, EncryptionScheme, Iv, KeyId};

/// A key id attribute: its value and the spelling the document used, so the response
/// echoes `kid`s exactly as received (packagers compare them as strings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kid {
    pub id: KeyId,
    pub as_written: String,
}

impl Kid {
    /// A kid that keyplex wrote itself: canonical lowercase 8-4-4-4-12.
    pub fn new(id: KeyId) -> Self {
        Self {
            as_written: id.to_string(),
            id,
        }
    }
}

/// CPIX version a document claims (`CPIX@version`). Absent in CPIX 2.0-era documents
/// (SPEKE v1, the DASH-IF test vectors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpixVersion {
    V2_3,
    V2_4,
    /// Any other `major.minor` string, kept so the caller can reject it with its own message.
    Other(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpixDocument {
    /// `CPIX@version`.
    pub version: Option<CpixVersion>,
    /// `CPIX@id` (SPEKE v1 and many packagers put the content id here).
    pub id: Option<String>,
    /// `CPIX@contentId` (CPIX 2.3+, SPEKE v2).
    pub content_id: Option<String>,
    /// `CPIX@name`.
    pub name: Option<String>,
    /// `DeliveryDataList`; `None` = list absent (keys travel in clear).
    pub delivery_data: Option<Vec<DeliveryData>>,
    /// `ContentKeyList`; `None` = list absent.
    pub content_keys: Option<Vec<ContentKeyEntry>>,
    /// `DRMSystemList`; `None` = list absent.
    pub drm_systems: Option<Vec<DrmSystemEntry>>,
    /// `ContentKeyPeriodList`; `None` = list absent.
    pub periods: Option<Vec<ContentKeyPeriod>>,
    /// `ContentKeyUsageRuleList`; `None` = list absent.
    pub usage_rules: Option<Vec<UsageRule>>,
    /// `UpdateHistoryItemList`, echoed verbatim (a self-contained XML fragment with its
    /// namespace declarations), or `None`.
    pub update_history_xml: Option<String>,
}

/// One recipient of encrypted keys (`DeliveryData`).
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryData {
    pub id: Option<String>,
    /// `DeliveryKey/ds:X509Data/ds:X509Certificate`, DER bytes.
    pub certificate_der: Vec<u8>,
    /// Filled in the response: the wrapped document and MAC keys for this recipient.
    pub wrapped: Option<WrappedDeliveryKeys>,
}

/// The RSA-OAEP wrapped 32-byte document key and 64-byte MAC key for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDeliveryKeys {
    pub document_key_cipher: Vec<u8>,
    pub mac_key_cipher: Vec<u8>,
}

/// `ContentKey`.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentKeyEntry {
    pub id: Option<String>,
    pub kid: Kid,
    pub explicit_iv: Option<Iv>,
    pub common_encryption_scheme: Option<EncryptionScheme>,
    /// CPIX 2.4 per-key content id (bulk documents).
    pub content_id: Option<String>,
    /// `@dependsOnKey` (two-level key hierarchies). Parsed and echoed; keyplex issues root
    /// and leaf keys like any other key.
    pub depends_on_key: Option<Kid>,
    /// `Data/pskc:Secret`: absent in a request that asks keyplex for a key.
    pub value: Option<KeyValue>,
}

/// `pskc:Secret` contents.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyValue {
    /// `pskc:PlainValue`: the 16 key bytes.
    Plain(ContentKeyValue),
    /// `pskc:EncryptedValue` (AES-256-CBC, IV prefixed) and `pskc:ValueMAC` (HMAC-SHA512).
    Encrypted {
        cipher_value: Vec<u8>,
        value_mac: Vec<u8>,
    },
}

/// `HLSSignalingData@playlist`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Playlist {
    /// `media`, or no attribute (the default means media playlist).
    Media,
    /// `master` (CPIX 2.3, SPEKE v2.0).
    Master,
    /// `multiVariant` (CPIX 2.4 spelling of master).
    MultiVariant,
}

/// `HLSSignalingData`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsSignaling {
    /// `None` when the attribute was absent (still a media playlist).
    pub playlist: Option<Playlist>,
    /// base64 of the playlist line(s); empty when asked for.
    pub value: String,
}

/// `DRMSystem`: one (system, key) pair and the signaling asked for / answered.
#[derive(Clone, Debug, PartialEq)]
pub struct DrmSystemEntry {
    pub id: Option<String>,
    pub system_id: SystemIdAttr,
    pub kid: Kid,
    pub name: Option<String>,
    /// `PSSH`: base64 of the full box(es).
    pub pssh: Option<String>,
    /// `ContentProtectionData`: base64 of the MPD ContentProtection inner XML.
    pub content_protection_data: Option<String>,
    /// `URIExtXKey` (deprecated in 2.3, removed in 2.4): base64 of the EXT-X-KEY URI.
    pub uri_ext_x_key: Option<String>,
    /// `HLSSignalingData` (0..2, distinct playlists).
    pub hls_signaling: Vec<HlsSignaling>,
    /// `SmoothStreamingProtectionHeaderData`: text (base64 PRO for PlayReady).
    pub smooth_streaming: Option<String>,
    /// `HDSSignalingData` (2.3 only), echoed.
    pub hds_signaling: Option<String>,
    /// Foreign-namespace children (`##other`, e.g. SPEKE v1 `speke:KeyFormat`), kept in order.
    pub extensions: Vec<ExtensionElement>,
}

impl DrmSystemEntry {
    /// A `DRMSystem` for `kid` that asks for nothing yet: the system id written as keyplex
    /// writes it (lower-case 8-4-4-4-12).
    pub fn new(system_id: [u8; 16], kid: Kid) -> Self {
        // A UUID prints as a key id does.
        let as_written = keyplex_types::KeyId::from_bytes(system_id).to_string();
        Self {
            id: None,
            system_id: SystemIdAttr {
                uuid: system_id,
                as_written,
            },
            kid,
            name: None,
            pssh: None,
            content_protection_data: None,
            uri_ext_x_key: None,
            hls_signaling: Vec::new(),
            smooth_streaming: None,
            hds_signaling: None,
            extensions: Vec::new(),
        }
    }
}

/// A child element in a foreign namespace, kept so it can be echoed (and, for SPEKE v1,
/// filled in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionElement {
    pub namespace: String,
    pub local_name: String,
    /// The prefix the document used, reused on output when possible.
    pub prefix: Option<String>,
    /// Text content (these elements carry base64 text); `""` when asked for.
    pub text: String,
}

/// A `DRMSystem@systemId`: the UUID bytes (big-endian, as written) and the spelling received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemIdAttr {
    pub uuid: [u8; 16],
    pub as_written: String,
}

/// `ContentKeyPeriod`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentKeyPeriod {
    pub id: Option<String>,
    pub index: Option<u64>,
    /// `@start`/`@end` (xs:dateTime), kept as written.
    pub start: Option<String>,
    pub end: Option<String>,
    /// CPIX 2.4: `@label`, `@startOffset`, `@endOffset`, `@duration`.
    pub label: Option<String>,
    pub start_offset: Option<String>,
    pub end_offset: Option<String>,
    pub duration: Option<String>,
}

/// `ContentKeyUsageRule`.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageRule {
    pub id: Option<String>,
    pub kid: Kid,
    pub intended_track_type: Option<String>,
    pub key_period_filters: Vec<KeyPeriodFilter>,
    pub label_filters: Vec<LabelFilter>,
    pub video_filters: Vec<VideoFilter>,
    pub audio_filters: Vec<AudioFilter>,
    pub bitrate_filters: Vec<BitrateFilter>,
    /// Filters or children this version of keyplex does not understand. Per CPIX, a rule
    /// with an unknown filter is unusable: keyplex keeps and echoes them, and rejects
    /// documents that rely on such a rule.
    pub unknown_children: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPeriodFilter {
    pub period_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelFilter {
    pub label: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VideoFilter {
    pub min_pixels: Option<u64>,
    pub max_pixels: Option<u64>,
    pub hdr: Option<bool>,
    pub wcg: Option<bool>,
    /// Kept as written (xs:decimal-ish values like `30` or `29.97`).
    pub min_fps: Option<String>,
    pub max_fps: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudioFilter {
    pub min_channels: Option<u64>,
    pub max_channels: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitrateFilter {
    pub min_bitrate: Option<u64>,
    pub max_bitrate: Option<u64>,
}

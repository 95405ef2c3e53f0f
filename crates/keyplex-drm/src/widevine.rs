//! Widevine pssh data: the `WidevinePsshData` protobuf (proto2) carried in the `Data` of a
//! pssh box with system id `edef8ba9-…` (Shaka Packager's `widevine_pssh_data.proto`).
//!
//! The message is written by hand with `prost` derives instead of generated from a `.proto`
//! so the build needs no `protoc`. Fields 11–15 of newer Widevine protos are not modelled:
//! their numbering is not confirmed by a primary source, and prost skips unknown fields, so
//! boxes carrying them still decode ([`unknown_field_numbers`] lists them).

use keyplex_types::{EncryptionScheme, KeyId};
use prost::Message as _;

use crate::{DrmError, DrmSystem, PsshBox};

/// `WidevinePsshData`, fields 1–10.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WidevinePsshData {
    /// Deprecated; Widevine's own key server still writes `AESCTR`.
    #[prost(enumeration = "WidevineAlgorithm", optional, tag = "1")]
    pub algorithm: Option<i32>,
    /// Key ids, normally 16 bytes each (UUID byte order).
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub key_id: Vec<Vec<u8>>,
    /// Deprecated, still required by some old HLS devices.
    #[prost(string, optional, tag = "3")]
    pub provider: Option<String>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub content_id: Option<Vec<u8>>,
    /// `track_type_deprecated`: e.g. `SD`, `HD`, `AUDIO`.
    #[prost(string, optional, tag = "5")]
    pub track_type: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub policy: Option<String>,
    #[prost(uint32, optional, tag = "7")]
    pub crypto_period_index: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub grouped_license: Option<Vec<u8>>,
    /// The protection scheme FourCC as a big-endian integer (`cenc` = 0x63656E63).
    #[prost(uint32, optional, tag = "9")]
    pub protection_scheme: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub crypto_period_seconds: Option<u32>,
}

/// `WidevinePsshData.Algorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WidevineAlgorithm {
    Unencrypted = 0,
    Aesctr = 1,
}

impl WidevinePsshData {
    /// Decodes the protobuf payload of a Widevine pssh box.
    pub fn decode_from(bytes: &[u8]) -> Result<Self, DrmError> {
        Self::decode(bytes).map_err(|e| DrmError::Widevine(e.to_string()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// The key ids that are well-formed 16-byte ids (shorter ones exist, e.g. WebM ids).
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.key_id
            .iter()
            .filter_map(|k| KeyId::from_slice(k).ok())
            .collect()
    }

    /// The protection scheme, when the field is set to one of the four CENC FourCCs.
    pub fn scheme(&self) -> Option<EncryptionScheme> {
        self.protection_scheme
            .and_then(EncryptionScheme::from_fourcc_u32)
    }
}

/// Builds the version 0 Widevine pssh box, the form Widevine's key server and Shaka Packager
/// emit "for backward compatibility" (Shaka Packager's `widevine_pssh_data.proto`).
///
/// `scheme` sets `protection_scheme`; callers pass `None` for `cenc`, the scheme a missing
/// field means. Key ids are written in the given order.
pub fn widevine_pssh(
    key_ids: &[KeyId],
    provider: Option<&str>,
    content_id: Option<&[u8]>,
    scheme: Option<EncryptionScheme>,
    crypto_period_index: Option<u32>,
) -> PsshBox {
    let data = WidevinePsshData {
        key_id: key_ids.iter().map(|k| k.as_bytes().to_vec()).collect(),
        provider: provider.map(str::to_owned),
        content_id: content_id.map(<[u8]>::to_vec),
        protection_scheme: scheme.map(EncryptionScheme::fourcc_u32),
        crypto_period_index,
        ..WidevinePsshData::default()
    };
    PsshBox::v0(DrmSystem::Widevine.system_id(), data.to_bytes())
}

/// The numbers of fields in `bytes` that [`WidevinePsshData`] does not model (e.g. the newer
/// 11–15), so `keyplex pssh decode` can say that something was skipped.
pub fn unknown_field_numbers(bytes: &[u8]) -> Result<Vec<u32>, DrmError> {
    let mut buf = bytes;
    let mut unknown = Vec::new();
    while !buf.is_empty() {
        let (tag, wire_type) =
            prost::encoding::decode_key(&mut buf).map_err(|e| DrmError::Widevine(e.to_string()))?;
        prost::encoding::skip_field(
            wire_type,
            tag,
            &mut buf,
            prost::encoding::DecodeContext::default(),
        )
        .map_err(|e| DrmError::Widevine(e.to_string()))?;
        if !(1..=10).contains(&tag) && !unknown.contains(&tag) {
            unknown.push(tag);
        }
    }
    Ok(unknown)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use proptest::prelude::*;

    /// Parses a known-answer box and returns its decoded Widevine data.
    fn decode_box(b64: &str, expected_size: usize) -> WidevinePsshData {
        let bytes = B64.decode(b64).unwrap();
        let (b, used) = PsshBox::parse(&bytes).unwrap();
        assert_eq!(used, expected_size);
        assert_eq!(b.version, 0);
        assert_eq!(b.system(), Some(DrmSystem::Widevine));
        let data = WidevinePsshData::decode_from(&b.data).unwrap();
        // Re-encoding in field order reproduces the published bytes.
        assert_eq!(data.to_bytes(), b.data);
        data
    }

    fn kid(hex_text: &str) -> Vec<u8> {
        hex::decode(hex_text).unwrap()
    }

    #[test]
    fn w1_iop6_example() {
        let d = decode_box(
            "AAAANHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABQIARIQwU8HCfK5RCeRa2G1JYZQag==",
            52,
        );
        assert_eq!(d.algorithm, Some(WidevineAlgorithm::Aesctr as i32));
        assert_eq!(d.key_id, vec![kid("c14f0709f2b94427916b61b52586506a")]);
        assert_eq!(d.provider, None);
    }

    #[test]
    fn w2_speke_v1_doc_example() {
        let d = decode_box(
            "AAAAanBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAEoIARIQeSIcblaNbb7Dji6sAtKZzRoNd2lkZXZpbmVfdGVzdCIfa2V5LWlkOmVTSWNibGFOYmI3RGppNnNBdEtaelE9PSoCU0QyAA==",
            106,
        );
        assert_eq!(d.algorithm, Some(1));
        assert_eq!(d.key_id, vec![kid("79221c6e568d6dbec38e2eac02d299cd")]);
        assert_eq!(d.provider.as_deref(), Some("widevine_test"));
        assert_eq!(
            d.content_id.as_deref(),
            Some(&b"key-id:eSIcblaNbb7Dji6sAtKZzQ=="[..])
        );
        assert_eq!(d.track_type.as_deref(), Some("SD"));
        assert_eq!(d.policy.as_deref(), Some(""), "present but empty");
    }

    #[test]
    fn w3_wpt_castlabs_example() {
        let d = decode_box(
            "AAAAcXBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAFEIARIQrRP56ivmmLh19QSo48zqZBoIY2FzdGxhYnMiKGV5SmhjM05sZEVsa0lqb2laVzFsTFhSbGMzUXRjMmx1WjJ4bEluMD0yB2RlZmF1bHQ=",
            113,
        );
        assert_eq!(d.algorithm, Some(1));
        assert_eq!(
            d.key_ids(),
            vec!["ad13f9ea-2be6-98b8-75f5-04a8e3ccea64".parse().unwrap()]
        );
        assert_eq!(d.provider.as_deref(), Some("castlabs"));
        let content_id = d.content_id.unwrap();
        assert_eq!(content_id, b"eyJhc3NldElkIjoiZW1lLXRlc3Qtc2luZ2xlIn0=");
        assert_eq!(
            B64.decode(content_id).unwrap(),
            br#"{"assetId":"eme-test-single"}"#
        );
        assert_eq!(d.policy.as_deref(), Some("default"));
    }

    #[test]
    fn w4_and_w5_pycpix_examples() {
        let d = decode_box(
            "AAAATXBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAC0SEML69m4oUsxMSnUfCiqUH9saDXdpZGV2aW5lX3Rlc3QiCnVzcHd2dGVzdDM=",
            77,
        );
        assert_eq!(d.algorithm, None);
        assert_eq!(d.key_id, vec![kid("c2faf66e2852cc4c4a751f0a2a941fdb")]);
        assert_eq!(d.provider.as_deref(), Some("widevine_test"));
        assert_eq!(d.content_id.as_deref(), Some(&b"uspwvtest3"[..]));

        let d = decode_box(
            "AAAAcXBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAFESEML69m4oUsxMSnUfCiqUH9sSEAh7z8b3pVcWuEBqpuujNp4SEA1rQCONoV51r2h1xRTFm2MaDXdpZGV2aW5lX3Rlc3QiCnVzcHd2dGVzdDM=",
            113,
        );
        assert_eq!(
            d.key_id,
            vec![
                kid("c2faf66e2852cc4c4a751f0a2a941fdb"),
                kid("087bcfc6f7a55716b8406aa6eba3369e"),
                kid("0d6b40238da15e75af6875c514c59b63")
            ]
        );
        assert_eq!(d.content_id.as_deref(), Some(&b"uspwvtest3"[..]));
    }

    #[test]
    fn w6_axinom_protection_scheme_and_w7_shaka_content_id() {
        let d = decode_box(
            "AAAAOHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABgSELTDGIvt3UU9m8IcvKdWYjlI49yVmwY=",
            56,
        );
        assert_eq!(d.key_id, vec![kid("b4c3188beddd453d9bc21cbca7566239")]);
        assert_eq!(d.protection_scheme, Some(1_667_591_779));
        assert_eq!(d.scheme(), Some(EncryptionScheme::Cenc));

        let d = decode_box(
            "AAAALHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAAwiCkNvbnRlbnRGb28=",
            44,
        );
        assert_eq!(
            d,
            WidevinePsshData {
                content_id: Some(b"ContentFoo".to_vec()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn w8_short_webm_key_id() {
        let d = WidevinePsshData::decode_from(&[0x12, 0x06, 0, 1, 2, 3, 4, 5]).unwrap();
        assert_eq!(d.key_id, vec![vec![0, 1, 2, 3, 4, 5]]);
        assert!(d.key_ids().is_empty(), "a 6-byte id is not a KeyId");
    }

    #[test]
    fn builder_reproduces_w6_and_w7() {
        let k: KeyId = "b4c3188b-eddd-453d-9bc2-1cbca7566239".parse().unwrap();
        let w6 = widevine_pssh(&[k], None, None, Some(EncryptionScheme::Cenc), None);
        assert_eq!(
            w6.to_base64(),
            "AAAAOHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABgSELTDGIvt3UU9m8IcvKdWYjlI49yVmwY="
        );
        let w7 = widevine_pssh(&[], None, Some(b"ContentFoo"), None, None);
        assert_eq!(
            w7.to_base64(),
            "AAAALHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAAwiCkNvbnRlbnRGb28="
        );
    }

    #[test]
    fn builder_sets_every_requested_field() {
        let kids: Vec<KeyId> = vec![KeyId::from_bytes([1; 16]), KeyId::from_bytes([2; 16])];
        let b = widevine_pssh(
            &kids,
            Some("acme"),
            Some(b"movie-1"),
            Some(EncryptionScheme::Cbcs),
            Some(7),
        );
        assert_eq!(b.version, 0);
        let d = WidevinePsshData::decode_from(&b.data).unwrap();
        assert_eq!(d.key_ids(), kids);
        assert_eq!(d.provider.as_deref(), Some("acme"));
        assert_eq!(d.content_id.as_deref(), Some(&b"movie-1"[..]));
        assert_eq!(d.scheme(), Some(EncryptionScheme::Cbcs));
        assert_eq!(d.crypto_period_index, Some(7));
        assert_eq!(d.algorithm, None);
    }

    #[test]
    fn unknown_fields_are_skipped_and_listed() {
        // key_id (2) then field 15 (string "HDR") then field 12 (varint 3).
        let mut bytes = vec![0x12, 0x01, 0xaa];
        bytes.extend([0x7a, 0x03, b'H', b'D', b'R', 0x60, 0x03]);
        let d = WidevinePsshData::decode_from(&bytes).unwrap();
        assert_eq!(d.key_id, vec![vec![0xaa]]);
        assert_eq!(unknown_field_numbers(&bytes).unwrap(), vec![15, 12]);
        assert!(unknown_field_numbers(&[0x12, 0x05, 0]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = WidevinePsshData::decode_from(&bytes);
            let _ = unknown_field_numbers(&bytes);
        }
    }
}

//! Human-readable decoding of DRM init data, for `keyplex pssh decode` and for operators
//! debugging a packager. Accepts one or more pssh boxes, or a bare PlayReady Object or bare
//! Widevine PSSH data (without the box header).

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::playready::{PlayReadyHeader, PlayReadyObject, kid_value};
use crate::widevine::{WidevineAlgorithm, WidevinePsshData, unknown_field_numbers};
use crate::{DrmError, DrmSystem, PsshBox};

/// Payload bytes shown in hex for systems keyplex cannot decode.
const MAX_HEX_BYTES: usize = 256;

/// Turns command-line text into bytes: base64 (standard or URL-safe, padding optional,
/// whitespace ignored) or hex (optionally `0x`-prefixed).
pub fn decode_text_input(text: &str) -> Result<Vec<u8>, DrmError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let hex_digits = compact.strip_prefix("0x").unwrap_or(&compact);
    // Text made only of hex digits is read as hex: real base64 pssh text always contains
    // other letters (the box type alone encodes as `cHNzaA`).
    if !hex_digits.is_empty()
        && hex_digits.len().is_multiple_of(2)
        && hex_digits.chars().all(|c| c.is_ascii_hexdigit())
    {
        return hex::decode(hex_digits).map_err(|_| DrmError::Encoding { what: "pssh input" });
    }
    keyplex_types::decode_base64_lenient(&compact).ok_or(DrmError::Encoding { what: "pssh input" })
}

/// A multi-line description of every box in `bytes` (or of a bare PlayReady Object or
/// Widevine PSSH data). Fails only if the input is none of these.
pub fn describe_pssh(bytes: &[u8]) -> Result<String, DrmError> {
    let box_error = match PsshBox::parse_all(bytes) {
        Ok(boxes) if !boxes.is_empty() => {
            let mut out = String::new();
            for (i, b) in boxes.iter().enumerate() {
                describe_box(&mut out, i + 1, b);
            }
            return Ok(out);
        }
        Ok(_) => return Err(DrmError::InvalidPssh("input is empty".to_owned())),
        Err(e) => e,
    };
    if let Ok(pro) = PlayReadyObject::parse(bytes) {
        let mut out = String::from("Note: bare PlayReady Object (no pssh box header)\n");
        describe_playready(&mut out, &pro, "");
        return Ok(out);
    }
    if let Some(data) = bare_widevine(bytes) {
        let mut out = String::from("Note: bare Widevine PSSH data (no pssh box header)\n");
        describe_widevine(&mut out, &data, bytes, "");
        return Ok(out);
    }
    Err(box_error)
}

/// Protobuf decoding accepts many byte strings; only call it Widevine data if it decodes
/// cleanly, has no unknown fields and says something.
fn bare_widevine(bytes: &[u8]) -> Option<WidevinePsshData> {
    let data = WidevinePsshData::decode_from(bytes).ok()?;
    let clean = unknown_field_numbers(bytes).ok()?.is_empty();
    let meaningful =
        !data.key_id.is_empty() || data.content_id.is_some() || data.provider.is_some();
    (clean && meaningful).then_some(data)
}

fn describe_box(out: &mut String, index: usize, b: &PsshBox) {
    let system = b.system();
    let name = system.map_or("unknown system", DrmSystem::name);
    let _ = writeln!(
        out,
        "pssh box #{index}: {} bytes, version {}, flags 0x{:06x}",
        b.to_bytes().len(),
        b.version,
        b.flags
    );
    let _ = writeln!(out, "  system id: {} ({name})", b.system_id.hyphenated());
    if b.version >= 1 {
        let _ = writeln!(out, "  key ids ({}):", b.key_ids.len());
        for kid in &b.key_ids {
            let _ = writeln!(out, "    {kid}");
        }
    }
    let _ = writeln!(out, "  data: {} bytes", b.data.len());
    match system {
        Some(DrmSystem::Widevine) => match WidevinePsshData::decode_from(&b.data) {
            Ok(data) => describe_widevine(out, &data, &b.data, "  "),
            Err(e) => {
                let _ = writeln!(out, "  {e}");
            }
        },
        Some(DrmSystem::PlayReady) => match PlayReadyObject::parse(&b.data) {
            Ok(pro) => describe_playready(out, &pro, "  "),
            Err(e) => {
                let _ = writeln!(out, "  {e}");
            }
        },
        Some(DrmSystem::CommonPssh | DrmSystem::ClearKeyDashIf) => {
            let _ = writeln!(
                out,
                "  Clear Key / common init data: the key ids above are the whole payload"
            );
            if !b.data.is_empty() {
                let _ = writeln!(out, "  unexpected data: {}", hex_preview(&b.data));
            }
        }
        _ if !b.data.is_empty() => {
            let _ = writeln!(out, "  data (hex): {}", hex_preview(&b.data));
        }
        _ => {}
    }
}

fn describe_widevine(out: &mut String, d: &WidevinePsshData, raw: &[u8], indent: &str) {
    let _ = writeln!(out, "{indent}Widevine PSSH data:");
    let i = format!("{indent}  ");
    if let Some(a) = d.algorithm {
        let name = WidevineAlgorithm::try_from(a).map_or("unknown", |alg| match alg {
            WidevineAlgorithm::Unencrypted => "UNENCRYPTED",
            WidevineAlgorithm::Aesctr => "AESCTR",
        });
        let _ = writeln!(out, "{i}algorithm: {name} ({a})");
    }
    for k in &d.key_id {
        match crate::KeyId::from_slice(k) {
            Ok(kid) => {
                let _ = writeln!(out, "{i}key_id: {kid}");
            }
            Err(_) => {
                let _ = writeln!(
                    out,
                    "{i}key_id: {} ({} bytes, not a 16-byte id)",
                    hex::encode(k),
                    k.len()
                );
            }
        }
    }
    if let Some(p) = &d.provider {
        let _ = writeln!(out, "{i}provider: {p:?}");
    }
    if let Some(c) = &d.content_id {
        let _ = writeln!(out, "{i}content_id: {}", bytes_as_text(c));
    }
    if let Some(t) = &d.track_type {
        let _ = writeln!(out, "{i}track_type: {t:?}");
    }
    if let Some(p) = &d.policy {
        let _ = writeln!(out, "{i}policy: {p:?}");
    }
    if let Some(n) = d.crypto_period_index {
        let _ = writeln!(out, "{i}crypto_period_index: {n}");
    }
    if let Some(g) = &d.grouped_license {
        let _ = writeln!(out, "{i}grouped_license: {}", hex_preview(g));
    }
    if let Some(s) = d.protection_scheme {
        let name = d.scheme().map_or("unknown", |s| s.as_str());
        let _ = writeln!(out, "{i}protection_scheme: {name} (0x{s:08x})");
    }
    if let Some(n) = d.crypto_period_seconds {
        let _ = writeln!(out, "{i}crypto_period_seconds: {n}");
    }
    if let Ok(unknown) = unknown_field_numbers(raw)
        && !unknown.is_empty()
    {
        let list: Vec<String> = unknown.iter().map(u32::to_string).collect();
        let _ = writeln!(out, "{i}fields not decoded: {}", list.join(", "));
    }
}

fn describe_playready(out: &mut String, pro: &PlayReadyObject, indent: &str) {
    let total = pro.to_bytes().map_or(0, |b| b.len());
    let _ = writeln!(
        out,
        "{indent}PlayReady Object: {total} bytes, {} record(s)",
        pro.records.len()
    );
    for (n, r) in pro.records.iter().enumerate() {
        let kind = match r.record_type {
            PlayReadyObject::RECORD_TYPE_HEADER => "PlayReady Header",
            PlayReadyObject::RECORD_TYPE_EMBEDDED_LICENSE_STORE => "Embedded License Store",
            _ => "unknown",
        };
        let _ = writeln!(
            out,
            "{indent}  record {}: type {} ({kind}), {} bytes",
            n + 1,
            r.record_type,
            r.value.len()
        );
    }
    match pro.header_xml() {
        None => {
            let _ = writeln!(out, "{indent}  no PlayReady Header record");
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "{indent}  {e}");
        }
        Some(Ok(xml)) => {
            match PlayReadyHeader::parse_xml(&xml) {
                Ok(h) => describe_header(out, &h, indent),
                Err(e) => {
                    let _ = writeln!(out, "{indent}  {e}");
                }
            }
            let _ = writeln!(out, "{indent}  XML: {xml}");
        }
    }
}

fn describe_header(out: &mut String, h: &PlayReadyHeader, indent: &str) {
    let _ = writeln!(out, "{indent}  WRMHEADER version {}", h.version.as_str());
    for k in &h.kids {
        let _ = write!(out, "{indent}  KID {} (VALUE {})", k.kid, kid_value(&k.kid));
        if let Some(a) = k.algid {
            let _ = write!(out, " ALGID {}", a.as_str());
        }
        if let Some(c) = &k.checksum {
            let _ = write!(out, " CHECKSUM {}", B64.encode(c));
        }
        out.push('\n');
    }
    for (name, value) in [
        ("LA_URL", &h.la_url),
        ("LUI_URL", &h.lui_url),
        ("DS_ID", &h.ds_id),
    ] {
        if let Some(v) = value {
            let _ = writeln!(out, "{indent}  {name}: {v}");
        }
    }
    if let Some(c) = &h.custom_attributes_xml {
        let _ = writeln!(out, "{indent}  CUSTOMATTRIBUTES: {c}");
    }
    if h.decryptor_setup_ondemand {
        let _ = writeln!(out, "{indent}  DECRYPTORSETUP: ONDEMAND");
    }
    if let Err(e) = h.validate() {
        let _ = writeln!(out, "{indent}  warning: {e}");
    }
}

/// Quoted text when the bytes are printable UTF-8, hex otherwise.
fn bytes_as_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => format!("0x{}", hex::encode(bytes)),
    }
}

fn hex_preview(bytes: &[u8]) -> String {
    let shown = bytes.get(..MAX_HEX_BYTES).unwrap_or(bytes);
    let more = bytes.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{}… ({more} more bytes)", hex::encode(shown))
    } else {
        hex::encode(shown)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::playready::{playready_header_for, playready_pssh};
    use keyplex_types::{ContentKeyValue, EncryptionScheme, KeyId};
    use proptest::prelude::*;

    fn describe_b64(text: &str) -> String {
        describe_pssh(&decode_text_input(text).unwrap()).unwrap()
    }

    #[test]
    fn describes_widevine_known_answers() {
        let w1 = describe_b64(
            "AAAANHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABQIARIQwU8HCfK5RCeRa2G1JYZQag==",
        );
        assert_eq!(
            w1,
            concat!(
                "pssh box #1: 52 bytes, version 0, flags 0x000000\n",
                "  system id: edef8ba9-79d6-4ace-a3c8-27dcd51d21ed (Widevine)\n",
                "  data: 20 bytes\n",
                "  Widevine PSSH data:\n",
                "    algorithm: AESCTR (1)\n",
                "    key_id: c14f0709-f2b9-4427-916b-61b52586506a\n",
            )
        );
        let w2 = describe_b64(
            "AAAAanBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAEoIARIQeSIcblaNbb7Dji6sAtKZzRoNd2lkZXZpbmVfdGVzdCIfa2V5LWlkOmVTSWNibGFOYmI3RGppNnNBdEtaelE9PSoCU0QyAA==",
        );
        for line in [
            "key_id: 79221c6e-568d-6dbe-c38e-2eac02d299cd",
            "provider: \"widevine_test\"",
            "content_id: \"key-id:eSIcblaNbb7Dji6sAtKZzQ==\"",
            "track_type: \"SD\"",
            "policy: \"\"",
        ] {
            assert!(w2.contains(line), "{line} in {w2}");
        }
        let w3 = describe_b64(
            "AAAAcXBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAFEIARIQrRP56ivmmLh19QSo48zqZBoIY2FzdGxhYnMiKGV5SmhjM05sZEVsa0lqb2laVzFsTFhSbGMzUXRjMmx1WjJ4bEluMD0yB2RlZmF1bHQ=",
        );
        assert!(
            w3.contains("provider: \"castlabs\"") && w3.contains("policy: \"default\""),
            "{w3}"
        );
        let w4 = describe_b64(
            "AAAATXBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAC0SEML69m4oUsxMSnUfCiqUH9saDXdpZGV2aW5lX3Rlc3QiCnVzcHd2dGVzdDM=",
        );
        assert!(
            w4.contains("content_id: \"uspwvtest3\"") && !w4.contains("algorithm"),
            "{w4}"
        );
        let w5 = describe_b64(
            "AAAAcXBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAFESEML69m4oUsxMSnUfCiqUH9sSEAh7z8b3pVcWuEBqpuujNp4SEA1rQCONoV51r2h1xRTFm2MaDXdpZGV2aW5lX3Rlc3QiCnVzcHd2dGVzdDM=",
        );
        assert_eq!(w5.matches("key_id: ").count(), 3, "{w5}");
        let w6 = describe_b64(
            "AAAAOHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABgSELTDGIvt3UU9m8IcvKdWYjlI49yVmwY=",
        );
        assert!(w6.contains("protection_scheme: cenc (0x63656e63)"), "{w6}");
        let w7 = describe_b64("AAAALHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAAAwiCkNvbnRlbnRGb28=");
        assert!(
            w7.ends_with("  Widevine PSSH data:\n    content_id: \"ContentFoo\"\n"),
            "{w7}"
        );
    }

    #[test]
    fn describes_a_built_playready_box_and_concatenated_boxes() {
        let kid: KeyId = "8ba94ade-6eb9-449d-b44f-a5beefaf43b0".parse().unwrap();
        let key =
            ContentKeyValue::from_slice(&hex::decode("DBFD6922C321C4BB486F4A1C44097ED6").unwrap())
                .unwrap();
        let header = playready_header_for(
            &[(kid, &key)],
            EncryptionScheme::Cenc,
            Some("https://pr.example/x?a=1&b=2"),
        );
        let mut bytes = playready_pssh(&header, true).unwrap().to_bytes();
        bytes.extend(crate::clearkey::common_pssh(&[kid]).to_bytes());
        let text = describe_pssh(&bytes).unwrap();
        for line in [
            "pssh box #1: ",
            "  system id: 9a04f079-9840-4286-ab92-e65be0885f95 (PlayReady)\n",
            "  key ids (1):\n    8ba94ade-6eb9-449d-b44f-a5beefaf43b0\n",
            "  PlayReady Object: ",
            "    record 1: type 1 (PlayReady Header), ",
            "    WRMHEADER version 4.0.0.0\n",
            "    KID 8ba94ade-6eb9-449d-b44f-a5beefaf43b0 (VALUE 3kqpi7lunUS0T6W+769DsA==) ALGID AESCTR CHECKSUM Me48z71nuqY=\n",
            "    LA_URL: https://pr.example/x?a=1&b=2\n",
            "    XML: <WRMHEADER xmlns=",
            "pssh box #2: 52 bytes, version 1",
            "(W3C Common PSSH)",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn describes_bare_playready_object_and_bare_widevine_data() {
        let kid = KeyId::from_bytes([3; 16]);
        let key = ContentKeyValue::from_bytes([4; 16]);
        let header = playready_header_for(&[(kid, &key)], EncryptionScheme::Cbcs, None);
        let pro = PlayReadyObject::from_header(&header).to_bytes().unwrap();
        let text = describe_pssh(&pro).unwrap();
        assert!(
            text.starts_with(
                "Note: bare PlayReady Object (no pssh box header)\nPlayReady Object: "
            ),
            "{text}"
        );
        assert!(
            text.contains("WRMHEADER version 4.3.0.0") && text.contains("ALGID AESCBC"),
            "{text}"
        );

        let text =
            describe_pssh(&decode_text_input("CAESEMFPBwnyuUQnkWthtSWGUGo=").unwrap()).unwrap();
        assert_eq!(
            text,
            "Note: bare Widevine PSSH data (no pssh box header)\nWidevine PSSH data:\n  algorithm: AESCTR (1)\n  key_id: c14f0709-f2b9-4427-916b-61b52586506a\n"
        );
    }

    #[test]
    fn rejects_input_that_is_nothing_known() {
        assert!(describe_pssh(&[]).is_err());
        assert!(describe_pssh(b"hello world, not a box").is_err());
        assert!(decode_text_input("not base64 !!").is_err());
    }

    #[test]
    fn text_input_accepts_base64_variants_and_hex() {
        let expected = vec![0xfb_u8, 0xff, 0x01];
        assert_eq!(decode_text_input("+/8B").unwrap(), expected);
        assert_eq!(decode_text_input("-_8B").unwrap(), expected);
        assert_eq!(decode_text_input(" +/8\nB ").unwrap(), expected);
        assert_eq!(decode_text_input("fbff01").unwrap(), expected);
        assert_eq!(decode_text_input("0xFBFF01").unwrap(), expected);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = describe_pssh(&bytes);
        }

        #[test]
        fn never_panics_on_text(s in "\\PC{0,80}") {
            if let Ok(bytes) = decode_text_input(&s) {
                let _ = describe_pssh(&bytes);
            }
        }
    }
}

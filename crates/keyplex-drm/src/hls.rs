//! HLS key signaling: `#EXT-X-KEY` (media playlist) and `#EXT-X-SESSION-KEY` (multivariant
//! playlist) lines (RFC 8216 §4.3.2.4, §4.3.4.5; Apple's HLS authoring specification; AWS's SPEKE v2 HLS signaling).

use keyplex_types::{Iv, KeyId};

/// `KEYFORMAT` of Widevine: `urn:uuid:` and its system id.
pub const KEYFORMAT_WIDEVINE: &str = "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed";
pub const KEYFORMAT_PLAYREADY: &str = "com.microsoft.playready";
pub const KEYFORMAT_FAIRPLAY: &str = "com.apple.streamingkeydelivery";
/// The EME key system name, used by hls.js for Clear Key over EME.
pub const KEYFORMAT_CLEARKEY: &str = "org.w3.clearkey";
/// Clear ("identity") keys fetched from the URI as 16 raw bytes.
pub const KEYFORMAT_IDENTITY: &str = "identity";

/// The `METHOD` attribute.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum HlsMethod {
    /// Whole-segment AES-128-CBC with PKCS#7 padding.
    Aes128,
    /// Sample encryption; `cbcs` in fMP4.
    SampleAes,
    /// Sample encryption with AES-CTR; `cenc` in fMP4 (Widevine HLS).
    SampleAesCtr,
}

impl HlsMethod {
    /// The sample-encryption method of a CENC scheme in HLS (fMP4/CMAF): `SAMPLE-AES` for
    /// cbcs, `SAMPLE-AES-CTR` for cenc; HLS has none for cens and cbc1.
    pub const fn for_scheme(scheme: keyplex_types::EncryptionScheme) -> Option<Self> {
        use keyplex_types::EncryptionScheme;
        match scheme {
            EncryptionScheme::Cbcs => Some(Self::SampleAes),
            EncryptionScheme::Cenc => Some(Self::SampleAesCtr),
            EncryptionScheme::Cens | EncryptionScheme::Cbc1 => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Aes128 => "AES-128",
            Self::SampleAes => "SAMPLE-AES",
            Self::SampleAesCtr => "SAMPLE-AES-CTR",
        }
    }
}

/// The attributes of one key tag.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HlsKeyLine {
    pub method: HlsMethod,
    pub uri: String,
    pub iv: Option<Iv>,
    pub key_id: Option<KeyId>,
    pub keyformat: Option<String>,
    pub keyformatversions: Option<String>,
}

impl HlsKeyLine {
    /// The CMAF form of a DRM whose signaling is a pssh box (Widevine, Nagra PRM): the box as
    /// a `data:` URI, the default key id in `KEYID`, `KEYFORMATVERSIONS="1"`.
    pub fn pssh_data_uri(
        method: HlsMethod,
        pssh_base64: &str,
        kid: KeyId,
        keyformat: String,
    ) -> Self {
        Self {
            method,
            uri: format!("data:text/plain;base64,{pssh_base64}"),
            iv: None,
            key_id: Some(kid),
            keyformat: Some(keyformat),
            keyformatversions: Some("1".to_owned()),
        }
    }

    /// `#EXT-X-KEY:<attributes>`.
    pub fn to_ext_x_key(&self) -> String {
        format!("#EXT-X-KEY:{}", self.attributes())
    }

    /// `#EXT-X-SESSION-KEY:<attributes>`, the same attributes for the multivariant playlist.
    pub fn to_ext_x_session_key(&self) -> String {
        format!("#EXT-X-SESSION-KEY:{}", self.attributes())
    }

    /// The attribute list. The order is `METHOD, URI, KEYID, IV, KEYFORMAT,
    /// KEYFORMATVERSIONS` (the order of the DASH-IF CPIX vectors and Shaka Packager), except
    /// for PlayReady, where AWS MediaPackage requires `METHOD, KEYFORMAT, KEYFORMATVERSIONS,
    /// URI`. Hexadecimal values are upper case, as RFC 8216 §4.2 defines them.
    pub fn attributes(&self) -> String {
        let mut attrs = vec![format!("METHOD={}", self.method.as_str())];
        let uri = format!("URI=\"{}\"", quoted_uri(&self.uri));
        let keyformat = self
            .keyformat
            .as_deref()
            .map(|f| format!("KEYFORMAT=\"{}\"", quoted_text(f)));
        let versions = self
            .keyformatversions
            .as_deref()
            .map(|v| format!("KEYFORMATVERSIONS=\"{}\"", quoted_text(v)));
        let key_id = self
            .key_id
            .map(|k| format!("KEYID=0x{}", k.to_hex().to_ascii_uppercase()));
        let iv = self
            .iv
            .map(|iv| format!("IV=0x{}", iv.to_hex().to_ascii_uppercase()));
        if self.keyformat.as_deref() == Some(KEYFORMAT_PLAYREADY) {
            attrs.extend(
                keyformat
                    .into_iter()
                    .chain(versions)
                    .chain([uri])
                    .chain(key_id)
                    .chain(iv),
            );
        } else {
            attrs.extend(
                [uri]
                    .into_iter()
                    .chain(key_id)
                    .chain(iv)
                    .chain(keyformat)
                    .chain(versions),
            );
        }
        attrs.join(",")
    }
}

/// A URI inside a quoted-string: `"`, CR and LF are not allowed there (nor in a URI), so
/// they are percent-encoded rather than allowed to break the playlist.
fn quoted_uri(uri: &str) -> String {
    uri.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Other quoted-string values: the forbidden characters are dropped.
fn quoted_text(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '\r' | '\n'))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const W6_BOX: &str =
        "AAAAOHBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABgSELTDGIvt3UU9m8IcvKdWYjlI49yVmwY=";

    #[test]
    fn widevine_lines_match_complex_xml() {
        let line = HlsKeyLine {
            method: HlsMethod::SampleAesCtr,
            uri: format!("data:text/plain;base64,{W6_BOX}"),
            iv: None,
            key_id: Some("b4c3188b-eddd-453d-9bc2-1cbca7566239".parse().unwrap()),
            keyformat: Some(KEYFORMAT_WIDEVINE.to_owned()),
            keyformatversions: Some("1".to_owned()),
        };
        let attrs = format!(
            "METHOD=SAMPLE-AES-CTR,URI=\"data:text/plain;base64,{W6_BOX}\",KEYID=0xB4C3188BEDDD453D9BC21CBCA7566239,KEYFORMAT=\"urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed\",KEYFORMATVERSIONS=\"1\""
        );
        assert_eq!(line.to_ext_x_key(), format!("#EXT-X-KEY:{attrs}"));
        assert_eq!(
            line.to_ext_x_session_key(),
            format!("#EXT-X-SESSION-KEY:{attrs}")
        );
    }

    #[test]
    fn fairplay_line_matches_complex_xml() {
        let line = HlsKeyLine {
            method: HlsMethod::SampleAes,
            uri: "skd://b4c3188b-eddd-453d-9bc2-1cbca7566239".to_owned(),
            iv: None,
            key_id: None,
            keyformat: Some(KEYFORMAT_FAIRPLAY.to_owned()),
            keyformatversions: Some("1".to_owned()),
        };
        assert_eq!(
            line.to_ext_x_key(),
            r#"#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://b4c3188b-eddd-453d-9bc2-1cbca7566239",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1""#
        );
    }

    #[test]
    fn playready_uses_the_aws_attribute_order() {
        let line = HlsKeyLine {
            method: HlsMethod::SampleAes,
            uri: "data:text/plain;charset=UTF-16;base64,AAAA".to_owned(),
            iv: None,
            key_id: None,
            keyformat: Some(KEYFORMAT_PLAYREADY.to_owned()),
            keyformatversions: Some("1".to_owned()),
        };
        assert_eq!(
            line.to_ext_x_key(),
            r#"#EXT-X-KEY:METHOD=SAMPLE-AES,KEYFORMAT="com.microsoft.playready",KEYFORMATVERSIONS="1",URI="data:text/plain;charset=UTF-16;base64,AAAA""#
        );
    }

    #[test]
    fn aes128_line_has_upper_case_iv_and_safe_uri() {
        let line = HlsKeyLine {
            method: HlsMethod::Aes128,
            uri: "https://keys.example/k?a=\"x\"\n".to_owned(),
            iv: Some(Iv::from_bytes([
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab,
            ])),
            key_id: None,
            keyformat: Some(KEYFORMAT_IDENTITY.to_owned()),
            keyformatversions: Some("1".to_owned()),
        };
        assert_eq!(
            line.to_ext_x_key(),
            r#"#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example/k?a=%22x%22%0A",IV=0x000000000000000000000000000000AB,KEYFORMAT="identity",KEYFORMATVERSIONS="1""#
        );
        let bare = HlsKeyLine {
            keyformat: None,
            keyformatversions: None,
            iv: None,
            ..line
        };
        assert_eq!(
            bare.attributes(),
            r#"METHOD=AES-128,URI="https://keys.example/k?a=%22x%22%0A""#
        );
    }
}

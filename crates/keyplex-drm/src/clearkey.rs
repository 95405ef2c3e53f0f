//! W3C Clear Key: the common-system pssh that lists key ids, and the EME licence request and
//! response JSON (W3C Encrypted Media Extensions §9.1.3/§9.1.4). Key ids and keys travel as base64url
//! without padding, key ids in plain UUID byte order.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyplex_types::{ContentKeyValue, KeyId};

use crate::{DrmError, DrmSystem, PsshBox};

/// The version 1 pssh box of the W3C common system (`1077efec-…`) listing `key_ids`, with
/// no data. Every CENC-capable CDM accepts it as init data; Chromium's Clear Key needs it.
pub fn common_pssh(key_ids: &[KeyId]) -> PsshBox {
    PsshBox::v1(
        DrmSystem::CommonPssh.system_id(),
        key_ids.to_vec(),
        Vec::new(),
    )
}

/// The EME session type of a Clear Key request, echoed in the licence.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum SessionType {
    #[default]
    Temporary,
    PersistentLicense,
}

impl SessionType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Temporary => "temporary",
            Self::PersistentLicense => "persistent-license",
        }
    }
}

/// A parsed Clear Key licence request: `{"kids":["<base64url>",…],"type":"temporary"}`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClearKeyLicenseRequest {
    pub kids: Vec<KeyId>,
    pub session_type: SessionType,
}

#[derive(serde::Deserialize)]
struct RequestJson {
    kids: Vec<String>,
    #[serde(rename = "type")]
    session_type: Option<String>,
}

/// Largest request accepted: EME requests list a handful of ids; this bounds the work.
const MAX_KIDS: usize = 256;

impl ClearKeyLicenseRequest {
    /// Parses the request body a CDM produced. `type` defaults to `temporary` when absent;
    /// key ids may be padded or not, and standard base64 is tolerated as well as base64url.
    pub fn parse(body: &[u8]) -> Result<Self, DrmError> {
        let json: RequestJson = serde_json::from_slice(body)
            .map_err(|e| DrmError::ClearKeyRequest(format!("not a licence request: {e}")))?;
        if json.kids.is_empty() {
            return Err(DrmError::ClearKeyRequest("\"kids\" is empty".to_owned()));
        }
        if json.kids.len() > MAX_KIDS {
            return Err(DrmError::ClearKeyRequest(format!(
                "more than {MAX_KIDS} kids"
            )));
        }
        let kids = json
            .kids
            .iter()
            .map(|k| decode_kid(k))
            .collect::<Result<Vec<_>, _>>()?;
        let session_type = match json.session_type.as_deref() {
            None | Some("temporary") => SessionType::Temporary,
            Some("persistent-license") => SessionType::PersistentLicense,
            Some(other) => {
                return Err(DrmError::ClearKeyRequest(format!(
                    "unsupported session type {:?}",
                    keyplex_types::truncate_chars(other, 40)
                )));
            }
        };
        Ok(Self { kids, session_type })
    }
}

/// base64url, no padding: the Clear Key encoding of a key id.
pub fn encode_kid(kid: &KeyId) -> String {
    URL_SAFE_NO_PAD.encode(kid.as_bytes())
}

fn decode_kid(text: &str) -> Result<KeyId, DrmError> {
    let bytes = keyplex_types::decode_base64_lenient(text).ok_or_else(|| {
        DrmError::ClearKeyRequest(format!(
            "kid {:?} is not base64url",
            keyplex_types::truncate_chars(text, 40)
        ))
    })?;
    KeyId::from_slice(&bytes)
        .map_err(|_| DrmError::ClearKeyRequest(format!("kid has {} bytes, not 16", bytes.len())))
}

/// The Clear Key licence: a JSON Web Key set of symmetric (`oct`) keys, in the member order
/// of the EME examples. Every value is base64url or a fixed token, so nothing needs JSON
/// escaping. The result contains key material in the clear; it is meant for the entitled
/// player only.
///
/// Written into one buffer sized for the whole answer up front: no intermediate string
/// holds a key (each would be freed without being wiped, and the caller wipes only the
/// answer), and it never grows, which would leave a copy behind in freed memory.
pub fn clearkey_license_response(
    keys: &[(KeyId, &ContentKeyValue)],
    session_type: SessionType,
) -> String {
    const HEAD: &str = r#"{"keys":["#;
    const KID: &str = r#"{"kty":"oct","kid":""#;
    const KEY: &str = r#"","k":""#;
    const TYPE: &str = r#"],"type":""#;
    // A base64url text of 16 bytes, unpadded.
    const B64_16: usize = 22;
    let per_key = KID.len() + B64_16 + KEY.len() + B64_16 + r#""},"#.len();
    let mut out = String::with_capacity(
        HEAD.len() + keys.len() * per_key + TYPE.len() + session_type.as_str().len() + 2,
    );
    out.push_str(HEAD);
    for (i, (kid, key)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(KID);
        URL_SAFE_NO_PAD.encode_string(kid.as_bytes(), &mut out);
        out.push_str(KEY);
        URL_SAFE_NO_PAD.encode_string(key.expose(), &mut out);
        out.push_str(r#""}"#);
    }
    out.push_str(TYPE);
    out.push_str(session_type.as_str());
    out.push_str(r#""}"#);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kid(s: &str) -> KeyId {
        s.parse().unwrap()
    }

    #[test]
    fn common_pssh_matches_c1() {
        let b = common_pssh(&[kid("6c5f5206-7d98-4808-84d8-94f132c1e9fe")]);
        assert_eq!(
            b.to_base64(),
            "AAAANHBzc2gBAAAAEHfv7MCyTQKs4zweUuL7SwAAAAFsX1IGfZhICITYlPEywen+AAAAAA=="
        );
    }

    #[test]
    fn kid_encodings_match_iop6_and_eme_examples() {
        assert_eq!(
            encode_kid(&kid("9eb4050d-e44b-4802-932e-27d75083e266")),
            "nrQFDeRLSAKTLifXUIPiZg"
        );
        let req = ClearKeyLicenseRequest::parse(
            br#"{"kids":["LwVHf8JLtPrv2GUXFW2v_A","0DdtU9od-Bh5L3xbv0Xf_A"],"type":"temporary"}"#,
        )
        .unwrap();
        assert_eq!(
            req.kids,
            vec![
                kid("2f05477fc24bb4faefd86517156daffc"),
                kid("d0376d53da1df818792f7c5bbf45dffc")
            ]
        );
        assert_eq!(req.session_type, SessionType::Temporary);
    }

    #[test]
    fn request_tolerates_padding_standard_alphabet_and_missing_type() {
        let req =
            ClearKeyLicenseRequest::parse(br#"{"kids":["nrQFDeRLSAKTLifXUIPiZg=="]}"#).unwrap();
        assert_eq!(req.kids, vec![kid("9eb4050d-e44b-4802-932e-27d75083e266")]);
        assert_eq!(req.session_type, SessionType::Temporary);
        let req = ClearKeyLicenseRequest::parse(
            br#"{"kids":["LwVHf8JLtPrv2GUXFW2v/A"],"type":"persistent-license"}"#,
        )
        .unwrap();
        assert_eq!(req.kids, vec![kid("2f05477fc24bb4faefd86517156daffc")]);
        assert_eq!(req.session_type, SessionType::PersistentLicense);
    }

    #[test]
    fn request_rejects_bad_input() {
        for bad in [
            &b"not json"[..],
            br#"{"kids":[]}"#,
            br#"{"kids":["AAAA"]}"#,
            br#"{"kids":["!!"]}"#,
            br#"{"kids":["nrQFDeRLSAKTLifXUIPiZg"],"type":"persistent-release-message"}"#,
            br#"{"type":"temporary"}"#,
        ] {
            assert!(
                ClearKeyLicenseRequest::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn response_matches_known_answer() {
        let key =
            ContentKeyValue::from_slice(&hex::decode("be7df8a3667a6a8fd564d0ed81339a95").unwrap())
                .unwrap();
        let json = clearkey_license_response(
            &[(kid("ad13f9ea2be698b875f504a8e3ccea64"), &key)],
            SessionType::Temporary,
        );
        assert_eq!(
            json,
            r#"{"keys":[{"kty":"oct","kid":"rRP56ivmmLh19QSo48zqZA","k":"vn34o2Z6ao_VZNDtgTOalQ"}],"type":"temporary"}"#
        );
        let iop6_key =
            ContentKeyValue::from_slice(&hex::decode("166634c675823c235a4a9446fad52e4d").unwrap())
                .unwrap();
        let json = clearkey_license_response(
            &[(kid("9eb4050d-e44b-4802-932e-27d75083e266"), &iop6_key)],
            SessionType::PersistentLicense,
        );
        assert!(json.contains(r#""k":"FmY0xnWCPCNaSpRG-tUuTQ""#), "{json}");
        assert!(json.ends_with(r#""type":"persistent-license"}"#));
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["keys"][0]["kid"], "nrQFDeRLSAKTLifXUIPiZg");
        assert_eq!(
            clearkey_license_response(&[], SessionType::Temporary),
            r#"{"keys":[],"type":"temporary"}"#
        );
    }

    proptest! {
        #[test]
        fn request_kids_round_trip(kids in proptest::collection::vec(any::<[u8; 16]>(), 1..5)) {
            let kids: Vec<KeyId> = kids.into_iter().map(KeyId::from_bytes).collect();
            let body = serde_json::json!({"kids": kids.iter().map(encode_kid).collect::<Vec<_>>(), "type": "temporary"});
            let req = ClearKeyLicenseRequest::parse(body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(req.kids, kids);
        }

        #[test]
        fn response_is_serde_json_of_the_key_set(
            pairs in proptest::collection::vec((any::<[u8; 16]>(), any::<[u8; 16]>()), 0..8),
            persistent in any::<bool>(),
        ) {
            let keys: Vec<(KeyId, ContentKeyValue)> = pairs
                .iter()
                .map(|(kid, key)| (KeyId::from_bytes(*kid), ContentKeyValue::from_slice(key).unwrap()))
                .collect();
            let refs: Vec<(KeyId, &ContentKeyValue)> = keys.iter().map(|(k, v)| (*k, v)).collect();
            let session_type =
                if persistent { SessionType::PersistentLicense } else { SessionType::Temporary };
            let json = clearkey_license_response(&refs, session_type);
            // serde_json writes object members in the order given (preserve_order is off, so
            // build the text from an ordered list of members instead of a map).
            let jwks: Vec<String> = keys
                .iter()
                .map(|(kid, key)| {
                    format!(
                        "{{\"kty\":\"oct\",\"kid\":{},\"k\":{}}}",
                        serde_json::to_string(&encode_kid(kid)).unwrap(),
                        serde_json::to_string(&URL_SAFE_NO_PAD.encode(key.expose())).unwrap()
                    )
                })
                .collect();
            let expected = format!(
                "{{\"keys\":[{}],\"type\":{}}}",
                jwks.join(","),
                serde_json::to_string(session_type.as_str()).unwrap()
            );
            prop_assert_eq!(&json, &expected);
            // Sized up front: it never grew (which would leave a copy of the keys behind).
            prop_assert!(json.capacity() <= json.len() + 1, "{} of {}", json.len(), json.capacity());
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = ClearKeyLicenseRequest::parse(&bytes);
        }
    }
}

//! FairPlay Streaming `skd://` URIs. The part after `skd://` is opaque to the player: the app
//! hands it to the key server, which must find the key from it. keyplex writes the key id as
//! a UUID (the form of the DASH-IF/Axinom vectors) and reads the other forms in use.

use keyplex_types::KeyId;

const SCHEME: &str = "skd://";

/// `skd://<kid, lowercase 8-4-4-4-12>`.
pub fn skd_uri(kid: &KeyId) -> String {
    format!("{SCHEME}{kid}")
}

/// The key id in an `skd://` URI (the scheme is optional). Accepts the UUID form, 32 bare hex
/// digits, and base64 (standard or URL-safe, padded or not) of the 16 key-id bytes as Shaka
/// Packager and PallyCon write it. A query string or fragment after the id is ignored.
pub fn kid_from_skd_uri(uri: &str) -> Option<KeyId> {
    let trimmed = uri.trim();
    let rest = match trimmed.get(..SCHEME.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(SCHEME) => {
            trimmed.get(SCHEME.len()..).unwrap_or_default()
        }
        _ => trimmed,
    };
    let id = rest.split(['?', '#']).next().unwrap_or_default();
    if let Ok(kid) = id.parse::<KeyId>() {
        return Some(kid);
    }
    let bytes = keyplex_types::decode_base64_lenient(id)?;
    KeyId::from_slice(&bytes).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_the_complex_xml_form() {
        let kid: KeyId = "b4c3188b-eddd-453d-9bc2-1cbca7566239".parse().unwrap();
        assert_eq!(skd_uri(&kid), "skd://b4c3188b-eddd-453d-9bc2-1cbca7566239");
    }

    #[test]
    fn reads_uuid_hex_and_base64_forms() {
        let kid: KeyId = "b4c3188b-eddd-453d-9bc2-1cbca7566239".parse().unwrap();
        for uri in [
            "skd://b4c3188b-eddd-453d-9bc2-1cbca7566239",
            "SKD://B4C3188B-EDDD-453D-9BC2-1CBCA7566239",
            "skd://b4c3188beddd453d9bc21cbca7566239",
            "skd://tMMYi+3dRT2bwhy8p1ZiOQ==",
            "skd://tMMYi+3dRT2bwhy8p1ZiOQ",
            "skd://tMMYi-3dRT2bwhy8p1ZiOQ",
            "skd://b4c3188b-eddd-453d-9bc2-1cbca7566239?iv=00",
            "b4c3188beddd453d9bc21cbca7566239",
        ] {
            assert_eq!(kid_from_skd_uri(uri), Some(kid), "{uri}");
        }
        for bad in [
            "skd://",
            "skd://asset-42",
            "skd://AAAA",
            "https://x/b4c3188beddd453d9bc21cbca7566239",
        ] {
            assert_eq!(kid_from_skd_uri(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 16]>()) {
            let kid = KeyId::from_bytes(bytes);
            prop_assert_eq!(kid_from_skd_uri(&skd_uri(&kid)), Some(kid));
        }

        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = kid_from_skd_uri(&s);
        }
    }
}

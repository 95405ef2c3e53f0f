//! Nagra PRM (`adb41c24-2dbf-4a6d-958b-4457c0d27b95`) PSSH data.
//!
//! Nagra's own documentation is under NDA (DASH-IF's system-id registry says so). Two
//! independent public parsers agree on the format, and keyplex writes what both read: the
//! Rust crate `pssh-box` (module `nagra`, `parse_pssh_data`/`to_bytes`) and the Swift library
//! SwPSSH (`NagraPsshData`). The data is the **base64url** text (JWT-like) of compact JSON
//! `{"contentId":"…","keyId":"…"}`, with `keyId` the key id as a UUID string. A deployment
//! whose PRM head-end expects another form overrides it with the tenant's `prm_template`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use keyplex_types::KeyId;

/// The PSSH data of a Nagra PRM box for one key of `content_id`.
pub fn prm_pssh_data(content_id: &str, kid: &KeyId) -> Vec<u8> {
    // Field order as both parsers' writers have it; `Value`'s Display escapes the content id
    // as JSON needs (content ids are plain ASCII anyway).
    let text = format!(
        "{{\"contentId\":{},\"keyId\":\"{kid}\"}}",
        serde_json::Value::from(content_id)
    );
    // Padded, as pssh-box writes it (both parsers accept either).
    URL_SAFE.encode(text).into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_and_the_independent_parser() {
        let kid: KeyId = "6bac8ec3-0ee3-379f-3d21-290b3a2bc9c3".parse().unwrap();
        let data = prm_pssh_data("cpix-test-cid", &kid);
        assert_eq!(
            String::from_utf8(data.clone()).unwrap(),
            URL_SAFE.encode(
                r#"{"contentId":"cpix-test-cid","keyId":"6bac8ec3-0ee3-379f-3d21-290b3a2bc9c3"}"#
            )
        );
        let parsed = pssh_box::nagra::parse_pssh_data(&data).unwrap();
        assert_eq!(parsed.content_id, "cpix-test-cid");
        assert_eq!(parsed.key_id, kid.to_string());
        // Byte for byte what pssh-box itself writes for the same values.
        use pssh_box::ToBytes as _;
        assert_eq!(parsed.to_bytes(), data);
    }
}

//! Bad CPIX input: every case is a 4xx with a message naming the problem, and nothing is
//! stored for a rejected request.

use crate::common::TestServer;
use crate::cpix::{WV, ok_document, plain_keys, vod_request};

const NS: &str =
    r#"xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc""#;

async fn rejected(server: &TestServer, body: impl Into<reqwest::Body>, status: u16, needle: &str) {
    let resp = server.post_cpix("acme", body).await;
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    assert!(
        text.to_lowercase().contains(&needle.to_lowercase()),
        "message {text:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn malformed_xml() {
    let server = TestServer::start().await;
    rejected(
        &server,
        "<cpix:CPIX xmlns:cpix=\"urn:dashif:org:cpix\"><unclosed>",
        400,
        "xml",
    )
    .await;
    rejected(&server, "", 400, "empty").await;
    rejected(&server, "not xml at all", 400, "xml").await;
}

#[tokio::test]
async fn wrong_root_namespace() {
    let server = TestServer::start().await;
    rejected(
        &server,
        r#"<CPIX xmlns="urn:example:not-cpix" contentId="x"/>"#,
        400,
        "urn:dashif:org:cpix",
    )
    .await;
}

#[tokio::test]
async fn dtd_and_external_entities_are_never_expanded() {
    let server = TestServer::start().await;
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE cpix:CPIX [<!ENTITY e SYSTEM "file:///etc/passwd">]><cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" contentId="&e;"/>"#;
    let resp = server.post_cpix("acme", xxe).await;
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.unwrap().contains("root:"));
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" contentId="&lol2;"/>"#;
    rejected(&server, bomb, 400, "dtd").await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = TestServer::start().await;
    let huge = format!(
        "<cpix:CPIX {NS} contentId=\"big\">{}</cpix:CPIX>",
        " ".repeat(2 * 1024 * 1024)
    );
    rejected(&server, huge, 413, "limit").await;
}

#[tokio::test]
async fn unknown_system_id() {
    let server = TestServer::start().await;
    let kid = "bbbbbbbb-0000-4000-8000-000000000001";
    let req = vod_request(
        "bad-sys",
        kid,
        "cenc",
        &["12345678-1234-1234-1234-123456789abc"],
    );
    rejected(&server, req, 400, "12345678-1234-1234-1234-123456789abc").await;
    assert_nothing_stored(&server, kid).await;
}

#[tokio::test]
async fn usage_rule_pointing_at_a_missing_kid() {
    let server = TestServer::start().await;
    let kid = "bbbbbbbb-0000-4000-8000-000000000002";
    let req = format!(
        r#"<cpix:CPIX contentId="bad-rule" {NS}><cpix:ContentKeyList><cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList><cpix:ContentKeyUsageRuleList><cpix:ContentKeyUsageRule kid="bbbbbbbb-0000-4000-8000-00000000dead" intendedTrackType="SD"/></cpix:ContentKeyUsageRuleList></cpix:CPIX>"#
    );
    rejected(&server, req, 400, "bbbbbbbb-0000-4000-8000-00000000dead").await;
    assert_nothing_stored(&server, kid).await;
}

#[tokio::test]
async fn content_id_rules() {
    let server = TestServer::start().await;
    let kid = "bbbbbbbb-0000-4000-8000-000000000003";
    rejected(
        &server,
        vod_request(&"a".repeat(201), kid, "cenc", &[WV]),
        400,
        "content id",
    )
    .await;
    rejected(
        &server,
        vod_request("has space", kid, "cenc", &[WV]),
        400,
        "content id",
    )
    .await;
    let no_id = format!(
        r#"<cpix:CPIX {NS}><cpix:ContentKeyList><cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList></cpix:CPIX>"#
    );
    rejected(&server, no_id, 400, "content id").await;
    assert_nothing_stored(&server, kid).await;
    // 200 characters is fine.
    ok_document(
        server
            .post_cpix(
                "acme",
                vod_request(
                    &"a".repeat(200),
                    "bbbbbbbb-0000-4000-8000-000000000004",
                    "cenc",
                    &[WV],
                ),
            )
            .await,
    )
    .await;
}

#[tokio::test]
async fn bad_values() {
    let server = TestServer::start().await;
    rejected(
        &server,
        vod_request("bad-kid", "not-a-uuid", "cenc", &[WV]),
        400,
        "not-a-uuid",
    )
    .await;
    rejected(
        &server,
        vod_request(
            "bad-scheme",
            "bbbbbbbb-0000-4000-8000-000000000005",
            "ctr1",
            &[WV],
        ),
        400,
        "ctr1",
    )
    .await;
    let bad_iv = format!(
        r#"<cpix:CPIX contentId="bad-iv" {NS}><cpix:ContentKeyList><cpix:ContentKey kid="bbbbbbbb-0000-4000-8000-000000000006" explicitIV="AAAA"/></cpix:ContentKeyList></cpix:CPIX>"#
    );
    rejected(&server, bad_iv, 400, "explicitIV").await;
    let short_key = format!(
        r#"<cpix:CPIX contentId="bad-key" {NS}><cpix:ContentKeyList><cpix:ContentKey kid="bbbbbbbb-0000-4000-8000-000000000007"><cpix:Data><pskc:Secret><pskc:PlainValue>AAAA</pskc:PlainValue></pskc:Secret></cpix:Data></cpix:ContentKey></cpix:ContentKeyList></cpix:CPIX>"#
    );
    rejected(&server, short_key, 400, "PlainValue").await;
    rejected(
        &server,
        r#"<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" contentId="v" version="9.9"/>"#,
        400,
        "version",
    )
    .await;
    let no_keys = format!(r#"<cpix:CPIX contentId="nokeys" {NS}/>"#);
    rejected(&server, no_keys, 400, "ContentKey").await;
}

/// A key is scheme-free: plain CPIX asking FairPlay for a `cenc` key gets FairPlay's
/// signaling (SAMPLE-AES, skd://) for that key; SPEKE v2 refuses the combination (AWS's rule).
#[tokio::test]
async fn fairplay_with_a_cenc_key_is_answered_in_plain_cpix() {
    let server = TestServer::start().await;
    let kid = "bbbbbbbb-0000-4000-8000-000000000008";
    let req = vod_request("fp-cenc", kid, "cenc", &[WV, crate::cpix::FP]);
    let doc = ok_document(server.post_cpix("acme", req).await).await;
    assert_eq!(plain_keys(&doc).len(), 1);
    let lines = crate::cpix::hls_lines(&doc, crate::cpix::FP);
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://")),
        "{lines:?}"
    );
}

/// A kid from a rejected request is still free: using it for another content succeeds,
/// which would be a 409 if the rejected request had stored it.
async fn assert_nothing_stored(server: &TestServer, kid: &str) {
    let doc = ok_document(
        server
            .post_cpix("acme", vod_request("proof-of-absence", kid, "cenc", &[WV]))
            .await,
    )
    .await;
    assert_eq!(plain_keys(&doc).len(), 1);
}

#[tokio::test]
async fn period_index_beyond_32_bits() {
    let server = TestServer::start().await;
    let kid = "bbbbbbbb-0000-4000-8000-000000000009";
    let req = format!(
        r#"<cpix:CPIX contentId="huge-period" {NS}><cpix:ContentKeyList><cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList><cpix:ContentKeyPeriodList><cpix:ContentKeyPeriod id="p" index="99999999999999999"/></cpix:ContentKeyPeriodList><cpix:ContentKeyUsageRuleList><cpix:ContentKeyUsageRule kid="{kid}"><cpix:KeyPeriodFilter periodId="p"/></cpix:ContentKeyUsageRule></cpix:ContentKeyUsageRuleList></cpix:CPIX>"#
    );
    rejected(&server, req, 400, "index").await;
    assert_nothing_stored(&server, kid).await;
}

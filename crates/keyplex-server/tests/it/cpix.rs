//! CPIX key exchange over HTTP: VOD, live periods, multi-key, supplied keys, idempotency,
//! key identity, kid override, durability across restarts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_cpix::model::{CpixDocument, KeyValue, Playlist};
use keyplex_drm::pssh::PsshBox;
use keyplex_types::KeyId;

use crate::common::TestServer;

pub const WV: &str = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed";
pub const PR: &str = "9a04f079-9840-4286-ab92-e65be0885f95";
pub const FP: &str = "94ce86fb-07ff-4f43-adb8-93d2fa968ca2";
pub const CK: &str = "e2719d58-a985-b3c9-781a-b030af78d30e";
pub const COMMON: &str = "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b";

const NS: &str =
    r#"xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc""#;

/// A DRMSystem asking for PSSH, ContentProtectionData and both HLS playlists.
pub fn drm(system: &str, kid: &str) -> String {
    format!(
        r#"<cpix:DRMSystem systemId="{system}" kid="{kid}"><cpix:PSSH/><cpix:ContentProtectionData/><cpix:HLSSignalingData playlist="media"/><cpix:HLSSignalingData playlist="master"/></cpix:DRMSystem>"#
    )
}

pub fn vod_request(content_id: &str, kid: &str, scheme: &str, systems: &[&str]) -> String {
    let drms: String = systems.iter().map(|s| drm(s, kid)).collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cpix:CPIX contentId="{content_id}" version="2.3" {NS}>
  <cpix:ContentKeyList><cpix:ContentKey kid="{kid}" commonEncryptionScheme="{scheme}"/></cpix:ContentKeyList>
  <cpix:DRMSystemList>{drms}</cpix:DRMSystemList>
</cpix:CPIX>"#
    )
}

pub async fn ok_document(resp: reqwest::Response) -> CpixDocument {
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let cache = resp
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "body: {}", String::from_utf8_lossy(&body));
    assert_eq!(ctype.as_deref(), Some("application/xml; charset=utf-8"));
    // The answer carries keys: no shared cache may keep it.
    assert_eq!(cache.as_deref(), Some("no-store"));
    keyplex_cpix::read_document(&body).unwrap()
}

/// (kid, key bytes, iv bytes) of every ContentKey, in document order.
pub fn plain_keys(doc: &CpixDocument) -> Vec<(KeyId, [u8; 16], [u8; 16])> {
    doc.content_keys
        .iter()
        .flatten()
        .map(|k| {
            let Some(KeyValue::Plain(v)) = &k.value else {
                panic!("key {} not in clear", k.kid.id)
            };
            (
                k.kid.id,
                *v.expose(),
                *k.explicit_iv.expect("explicitIV").as_bytes(),
            )
        })
        .collect()
}

fn pssh_of(doc: &CpixDocument, system: &str) -> PsshBox {
    let d = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written.eq_ignore_ascii_case(system))
        .unwrap();
    let bytes = B64.decode(d.pssh.as_ref().expect("PSSH filled")).unwrap();
    PsshBox::parse_all(&bytes).unwrap().remove(0)
}

pub fn hls_lines(doc: &CpixDocument, system: &str) -> Vec<(Option<Playlist>, String)> {
    let d = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == system)
        .unwrap();
    d.hls_signaling
        .iter()
        .map(|h| {
            (
                h.playlist,
                String::from_utf8(B64.decode(&h.value).unwrap()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn vod_answers_keys_and_signaling_for_every_drm() {
    let server = TestServer::start().await;
    let kid = "3f5a4d2e-1c6b-4e8a-9d7f-0a1b2c3d4e5f";
    let req = vod_request("movie-1", kid, "cbcs", &[WV, PR, FP, CK, COMMON]);
    let doc = ok_document(server.post_cpix("acme", req.clone()).await).await;
    let keys = plain_keys(&doc);
    assert_eq!(keys.len(), 1);
    let (got_kid, key, _iv) = keys[0];
    assert_eq!(got_kid.to_string(), kid);
    assert_ne!(key, [0u8; 16]);

    // Widevine: v0 PSSH whose data names the kid and the tenant's provider.
    let wv = pssh_of(&doc, WV);
    assert_eq!(wv.system_id.to_string(), WV);
    let data = keyplex_drm::widevine::WidevinePsshData::decode_from(&wv.data).unwrap();
    assert_eq!(data.key_ids(), vec![got_kid]);
    assert_eq!(data.provider.as_deref(), Some("acme"));
    assert_eq!(data.content_id.as_deref(), Some(&b"movie-1"[..]));

    // PlayReady: the header names the kid (GUID order) and LA_URL; cbcs means 4.3/AESCBC.
    let pr = pssh_of(&doc, PR);
    let pro = keyplex_drm::playready::PlayReadyObject::parse(&pr.data).unwrap();
    let header = pro.header().unwrap().unwrap();
    assert_eq!(header.kids[0].kid, got_kid);
    assert_eq!(
        header.la_url.as_deref(),
        Some("https://acme.example/prls/contentlicenseservice/v1/licenses")
    );

    // FairPlay: HLS only, skd:// URI naming the kid; the PSSH it was asked for stays in the
    // answer, empty (FairPlay has none), as AWS's reference server answers it.
    let fp = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == FP)
        .unwrap();
    assert_eq!(
        fp.pssh.as_deref(),
        Some(""),
        "FairPlay has no PSSH: asked, left empty"
    );
    assert!(
        req.contains("<cpix:PSSH"),
        "the request asks every DRM for PSSH"
    );
    let lines = hls_lines(&doc, FP);
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0]
            .1
            .starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://"),
        "{}",
        lines[0].1
    );
    assert!(lines[0].1.contains(kid));
    assert!(lines[1].1.starts_with("#EXT-X-SESSION-KEY:"));

    // ClearKey: common PSSH for EME, and the licence URL of this keyplex in the MPD data.
    let ck = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == CK)
        .unwrap();
    let cpd = String::from_utf8(
        B64.decode(ck.content_protection_data.as_ref().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        cpd.contains(&format!("{}/acme/clearkey/v1/licenses", server.base)),
        "{cpd}"
    );
    let common = pssh_of(&doc, COMMON);
    assert_eq!(common.version, 1);
    assert_eq!(common.key_ids, vec![got_kid]);

    // Asking again returns exactly the same key and IV.
    let again = ok_document(server.post_cpix("acme", req).await).await;
    assert_eq!(plain_keys(&again), keys);
}

#[tokio::test]
async fn playready_checksum_matches_the_delivered_key() {
    let server = TestServer::start().await;
    let kid = "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9";
    let doc = ok_document(
        server
            .post_cpix("acme", vod_request("movie-2", kid, "cenc", &[PR]))
            .await,
    )
    .await;
    let (kid, key, _) = plain_keys(&doc)[0];
    let pro = keyplex_drm::playready::PlayReadyObject::parse(&pssh_of(&doc, PR).data).unwrap();
    let header = pro.header().unwrap().unwrap();
    let expected = keyplex_drm::playready::key_checksum(
        &kid,
        &keyplex_types::ContentKeyValue::from_bytes(key),
    );
    assert_eq!(header.kids[0].checksum, Some(expected));
}

#[tokio::test]
async fn live_key_periods_get_one_key_each() {
    let server = TestServer::start().await;
    let kids = [
        "11111111-0000-4000-8000-000000000001",
        "11111111-0000-4000-8000-000000000002",
        "11111111-0000-4000-8000-000000000003",
    ];
    let content_keys: String = kids
        .iter()
        .map(|k| format!(r#"<cpix:ContentKey kid="{k}" commonEncryptionScheme="cenc"/>"#))
        .collect();
    let drms: String = kids.iter().map(|k| drm(WV, k)).collect();
    let periods: String = (0..3)
        .map(|i| format!(r#"<cpix:ContentKeyPeriod id="p{i}" index="{}"/>"#, 500 + i))
        .collect();
    let rules: String = kids
        .iter()
        .enumerate()
        .map(|(i, k)| format!(r#"<cpix:ContentKeyUsageRule kid="{k}" intendedTrackType="ALL"><cpix:KeyPeriodFilter periodId="p{i}"/></cpix:ContentKeyUsageRule>"#))
        .collect();
    let req = format!(
        r#"<cpix:CPIX contentId="live-ch1" version="2.3" {NS}><cpix:ContentKeyList>{content_keys}</cpix:ContentKeyList><cpix:DRMSystemList>{drms}</cpix:DRMSystemList><cpix:ContentKeyPeriodList>{periods}</cpix:ContentKeyPeriodList><cpix:ContentKeyUsageRuleList>{rules}</cpix:ContentKeyUsageRuleList></cpix:CPIX>"#
    );
    let doc = ok_document(server.post_cpix("acme", req.clone()).await).await;
    let keys = plain_keys(&doc);
    assert_eq!(keys.len(), 3);
    assert!(keys[0].1 != keys[1].1 && keys[1].1 != keys[2].1 && keys[0].1 != keys[2].1);
    // Periods and rules are echoed, and each Widevine PSSH carries its crypto period index.
    assert_eq!(doc.periods.as_ref().unwrap().len(), 3);
    assert_eq!(doc.usage_rules.as_ref().unwrap().len(), 3);
    for (i, d) in doc.drm_systems.iter().flatten().enumerate() {
        let bytes = B64.decode(d.pssh.as_ref().unwrap()).unwrap();
        let pssh = PsshBox::parse_all(&bytes).unwrap().remove(0);
        let data = keyplex_drm::widevine::WidevinePsshData::decode_from(&pssh.data).unwrap();
        assert_eq!(
            data.crypto_period_index,
            Some(500 + u32::try_from(i).unwrap())
        );
    }
    let again = ok_document(server.post_cpix("acme", req).await).await;
    assert_eq!(plain_keys(&again), keys);
}

#[tokio::test]
async fn multi_key_per_track_type() {
    let server = TestServer::start().await;
    let tracks = [
        (
            "SD",
            "22222222-0000-4000-8000-000000000001",
            r#"<cpix:VideoFilter maxPixels="442368"/>"#,
        ),
        (
            "HD",
            "22222222-0000-4000-8000-000000000002",
            r#"<cpix:VideoFilter minPixels="442369" maxPixels="2073600"/>"#,
        ),
        (
            "UHD1",
            "22222222-0000-4000-8000-000000000003",
            r#"<cpix:VideoFilter minPixels="2073601" maxPixels="8847360"/>"#,
        ),
        (
            "AUDIO",
            "22222222-0000-4000-8000-000000000004",
            r#"<cpix:AudioFilter/>"#,
        ),
    ];
    let content_keys: String = tracks
        .iter()
        .map(|(_, k, _)| format!(r#"<cpix:ContentKey kid="{k}" commonEncryptionScheme="cenc"/>"#))
        .collect();
    let drms: String = tracks
        .iter()
        .map(|(_, k, _)| drm(WV, k) + &drm(PR, k))
        .collect();
    let rules: String = tracks
        .iter()
        .map(|(t, k, f)| format!(r#"<cpix:ContentKeyUsageRule kid="{k}" intendedTrackType="{t}">{f}</cpix:ContentKeyUsageRule>"#))
        .collect();
    let req = format!(
        r#"<cpix:CPIX contentId="multi-1" {NS}><cpix:ContentKeyList>{content_keys}</cpix:ContentKeyList><cpix:DRMSystemList>{drms}</cpix:DRMSystemList><cpix:ContentKeyUsageRuleList>{rules}</cpix:ContentKeyUsageRuleList></cpix:CPIX>"#
    );
    let doc = ok_document(server.post_cpix("acme", req).await).await;
    let keys = plain_keys(&doc);
    assert_eq!(keys.len(), 4);
    let distinct: std::collections::HashSet<_> = keys.iter().map(|k| k.1).collect();
    assert_eq!(distinct.len(), 4, "each track type has its own key");
    let rules = doc.usage_rules.unwrap();
    let types: Vec<_> = rules
        .iter()
        .map(|r| r.intended_track_type.clone().unwrap())
        .collect();
    assert_eq!(types, ["SD", "HD", "UHD1", "AUDIO"]);
    assert_eq!(doc.drm_systems.unwrap().len(), 8);
}

#[tokio::test]
async fn packager_supplied_key_is_stored_as_is_and_never_changed() {
    let server = TestServer::start().await;
    let kid = "33333333-0000-4000-8000-000000000001";
    let key = [0x42u8; 16];
    let iv = [0x24u8; 16];
    let supplied = |key: [u8; 16]| {
        format!(
            r#"<cpix:CPIX contentId="supplied-1" {NS}><cpix:ContentKeyList><cpix:ContentKey kid="{kid}" explicitIV="{}" commonEncryptionScheme="cenc"><cpix:Data><pskc:Secret><pskc:PlainValue>{}</pskc:PlainValue></pskc:Secret></cpix:Data></cpix:ContentKey></cpix:ContentKeyList><cpix:DRMSystemList>{}</cpix:DRMSystemList></cpix:CPIX>"#,
            B64.encode(iv),
            B64.encode(key),
            drm(WV, kid)
        )
    };
    let doc = ok_document(server.post_cpix("acme", supplied(key)).await).await;
    assert_eq!(plain_keys(&doc), vec![(kid.parse().unwrap(), key, iv)]);
    // The same kid with another value would change the key of encrypted content: refused.
    let resp = server.post_cpix("acme", supplied([0x43; 16])).await;
    assert_eq!(resp.status(), 409);
    assert!(
        !resp
            .text()
            .await
            .unwrap()
            .contains(&B64.encode([0x43u8; 16]))
    );
    // Asking without a value returns the supplied key.
    let doc = ok_document(
        server
            .post_cpix("acme", vod_request("supplied-1", kid, "cenc", &[WV]))
            .await,
    )
    .await;
    assert_eq!(plain_keys(&doc), vec![(kid.parse().unwrap(), key, iv)]);
}

#[tokio::test]
async fn a_kid_belongs_to_one_content_forever() {
    let server = TestServer::start().await;
    let kid = "44444444-0000-4000-8000-000000000001";
    ok_document(
        server
            .post_cpix("acme", vod_request("content-a", kid, "cenc", &[WV]))
            .await,
    )
    .await;
    let resp = server
        .post_cpix("acme", vod_request("content-b", kid, "cenc", &[WV]))
        .await;
    assert_eq!(resp.status(), 409);
    let text = resp.text().await.unwrap();
    assert!(text.contains(kid), "{text}");
    // Tenants are separate key spaces.
    let other = ok_document(
        server
            .post_cpix("globex", vod_request("content-b", kid, "cenc", &[WV]))
            .await,
    )
    .await;
    assert_eq!(plain_keys(&other).len(), 1);
}

#[tokio::test]
async fn fifty_racing_identical_requests_create_one_key() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let kid = "55555555-0000-4000-8000-000000000001";
    let req = vod_request("race-1", kid, "cenc", &[WV, PR]);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let server = server.clone();
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            plain_keys(&ok_document(server.post_cpix("acme", req).await).await)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(
        results.iter().all(|r| r == &results[0]),
        "every racer got the same key"
    );
}

#[tokio::test]
async fn kid_override_lets_keyplex_choose_kids_by_track_and_period() {
    let server = TestServer::start().await;
    let req = |packager_kid: &str| {
        format!(
            r#"<cpix:CPIX contentId="ovr-1" {NS}><cpix:ContentKeyList><cpix:ContentKey kid="{packager_kid}"/></cpix:ContentKeyList><cpix:DRMSystemList>{}</cpix:DRMSystemList><cpix:ContentKeyUsageRuleList><cpix:ContentKeyUsageRule kid="{packager_kid}" intendedTrackType="HD"/></cpix:ContentKeyUsageRuleList></cpix:CPIX>"#,
            drm(WV, packager_kid)
        )
    };
    let first = ok_document(
        server
            .post_cpix("initech", req("66666666-0000-4000-8000-000000000001"))
            .await,
    )
    .await;
    let second = ok_document(
        server
            .post_cpix("initech", req("66666666-0000-4000-8000-000000000002"))
            .await,
    )
    .await;
    let (k1, k2) = (plain_keys(&first), plain_keys(&second));
    assert_eq!(
        k1, k2,
        "same content + track + period → same key, whatever kid the packager sent"
    );
    let chosen = k1[0].0;
    assert_ne!(chosen.to_string(), "66666666-0000-4000-8000-000000000001");
    // Every reference to the kid was rewritten consistently.
    assert_eq!(first.drm_systems.as_ref().unwrap()[0].kid.id, chosen);
    assert_eq!(first.usage_rules.as_ref().unwrap()[0].kid.id, chosen);
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let server = TestServer::start().await;
    let kid = "77777777-0000-4000-8000-000000000001";
    let req = vod_request("durable-1", kid, "cenc", &[WV]);
    let before = plain_keys(&ok_document(server.post_cpix("acme", req.clone()).await).await);
    let dir = server.stop().await;
    let server = TestServer::start_in(crate::common::ACME_CONFIG, dir, |_| {}).await;
    let after = plain_keys(&ok_document(server.post_cpix("acme", req).await).await);
    assert_eq!(before, after);
    // The master key file is private.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(server.data_dir.path().join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn cpix_2_4_multivariant_playlists_are_answered_and_echoed() {
    let server = TestServer::start().await;
    let kid = "88888888-0000-4000-8000-000000000001";
    let req = format!(
        r#"<cpix:CPIX contentId="v24-1" version="2.4" {NS}><cpix:ContentKeyList><cpix:ContentKey kid="{kid}" commonEncryptionScheme="cbcs"/></cpix:ContentKeyList><cpix:DRMSystemList><cpix:DRMSystem systemId="{WV}" kid="{kid}"><cpix:HLSSignalingData playlist="media"/><cpix:HLSSignalingData playlist="multiVariant"/></cpix:DRMSystem></cpix:DRMSystemList></cpix:CPIX>"#
    );
    let doc = ok_document(server.post_cpix("acme", req).await).await;
    let lines = hls_lines(&doc, WV);
    assert_eq!(lines[1].0, Some(Playlist::MultiVariant));
    assert!(
        lines[0].1.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,"),
        "{}",
        lines[0].1
    );
    assert!(
        lines[1]
            .1
            .starts_with("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,"),
        "{}",
        lines[1].1
    );
}

#[tokio::test]
async fn nks_route_and_healthz() {
    let server = TestServer::start().await;
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let kid = "99999999-0000-4000-8000-000000000001";
    let resp = server
        .client
        .post(server.url("/acme/nks/v1/cpix"))
        .basic_auth("packager", Some("s3cret-acme"))
        .body(vod_request("nks-1", kid, "cenc", &[WV]))
        .send()
        .await
        .unwrap();
    ok_document(resp).await;
}

#[tokio::test]
async fn encrypted_delivery_to_a_recipient_certificate() {
    use keyplex_crypto::delivery::{DocumentKeys, RecipientPrivateKey, WrappedKeys};
    let server = TestServer::start().await;
    let cert = crate::common::vector("cpix/dashif-cpix-test-vectors/Cert1.cer");
    let kid = "cccccccc-0000-4000-8000-000000000001";
    let delivery = format!(
        r#"<cpix:DeliveryDataList><cpix:DeliveryData><cpix:DeliveryKey><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></cpix:DeliveryKey></cpix:DeliveryData></cpix:DeliveryDataList>"#,
        B64.encode(&cert)
    );
    let req = vod_request("enc-1", kid, "cenc", &[WV])
        .replace(
            "<cpix:ContentKeyList>",
            &format!(r#"{delivery}<cpix:ContentKeyList>"#),
        )
        .replace(
            "<cpix:CPIX ",
            r#"<cpix:CPIX xmlns:ds="http://www.w3.org/2000/09/xmldsig#" "#,
        );
    let doc = ok_document(server.post_cpix("acme", req).await).await;
    let delivery = &doc.delivery_data.as_ref().unwrap()[0];
    let wrapped = delivery
        .wrapped
        .as_ref()
        .expect("document key wrapped for the recipient");
    let private_der = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../keyplex-crypto/testdata/cert1_private_key.pk8.der"),
    )
    .unwrap();
    let private = RecipientPrivateKey::from_pkcs8_der(&private_der).unwrap();
    let document_keys = DocumentKeys::unwrap_with(
        &private,
        &WrappedKeys {
            document_key_cipher: wrapped.document_key_cipher.clone(),
            mac_key_cipher: wrapped.mac_key_cipher.clone(),
        },
    )
    .unwrap();
    let entry = &doc.content_keys.as_ref().unwrap()[0];
    let Some(KeyValue::Encrypted {
        cipher_value,
        value_mac,
    }) = &entry.value
    else {
        panic!("key must be encrypted")
    };
    let key = document_keys
        .decrypt_content_key(cipher_value, value_mac)
        .unwrap();
    // The same key in clear (encryption protects the transport only).
    let clear = ok_document(
        server
            .post_cpix("acme", vod_request("enc-1", kid, "cenc", &[WV]))
            .await,
    )
    .await;
    assert_eq!(plain_keys(&clear)[0].1, *key.expose());
    // A tampered MAC is refused.
    let mut bad_mac = value_mac.clone();
    bad_mac[0] ^= 1;
    assert!(
        document_keys
            .decrypt_content_key(cipher_value, &bad_mac)
            .is_err()
    );
}

#[tokio::test]
async fn smooth_streaming_uri_ext_x_key_and_empty_drm_systems() {
    let server = TestServer::start().await;
    let kid = "dddddddd-0000-4000-8000-000000000001";
    let req = format!(
        r#"<cpix:CPIX contentId="mss-1" {NS} xmlns:speke="urn:aws:amazon:com:speke"><cpix:ContentKeyList><cpix:ContentKey kid="{kid}" commonEncryptionScheme="cbcs"/></cpix:ContentKeyList><cpix:DRMSystemList>
        <cpix:DRMSystem systemId="{PR}" kid="{kid}"><cpix:SmoothStreamingProtectionHeaderData/><speke:ProtectionHeader/></cpix:DRMSystem>
        <cpix:DRMSystem systemId="{FP}" kid="{kid}"><cpix:URIExtXKey/><speke:KeyFormat/><speke:KeyFormatVersions/></cpix:DRMSystem>
        <cpix:DRMSystem systemId="{WV}" kid="{kid}"/>
        </cpix:DRMSystemList></cpix:CPIX>"#
    );
    let doc = ok_document(server.post_cpix("acme", req).await).await;
    let systems = doc.drm_systems.as_ref().unwrap();
    // PlayReady: the MSS header is the base64 PlayReady Object naming the kid.
    let pro = B64
        .decode(systems[0].smooth_streaming.as_ref().unwrap())
        .unwrap();
    let header = keyplex_drm::playready::PlayReadyObject::parse(&pro)
        .unwrap()
        .header()
        .unwrap()
        .unwrap();
    assert_eq!(header.kids[0].kid.to_string(), kid);
    assert_eq!(
        systems[0].extensions[0].text,
        *systems[0].smooth_streaming.as_ref().unwrap()
    );
    // FairPlay: URIExtXKey is the base64 skd:// URI; SPEKE v1 KeyFormat attributes are filled.
    let uri = String::from_utf8(
        B64.decode(systems[1].uri_ext_x_key.as_ref().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        keyplex_drm::fairplay::kid_from_skd_uri(&uri)
            .unwrap()
            .to_string(),
        kid
    );
    let keyformat = String::from_utf8(B64.decode(&systems[1].extensions[0].text).unwrap()).unwrap();
    assert_eq!(keyformat, "com.apple.streamingkeydelivery");
    // A DRMSystem that asks for nothing gets everything its DRM has.
    assert!(systems[2].pssh.is_some() && systems[2].content_protection_data.is_some());
    assert_eq!(systems[2].hls_signaling.len(), 2);
}

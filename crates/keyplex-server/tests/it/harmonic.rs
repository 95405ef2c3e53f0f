//! Harmonic-style endpoint (`POST /{tenant}/cks-ws-ikey/key`): CPIX in, CPIX out, with the
//! request shape key vendors document for Harmonic encoders (no CPIX@version, no
//! commonEncryptionScheme, empty DRMSystems, live periods by index).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;

use crate::common::TestServer;
use crate::cpix::{FP, PR, WV, ok_document, plain_keys};
use crate::nagra::start;

fn harmonic_request(content_id: &str, kid: &str, period_index: u64) -> String {
    format!(
        r#"<?xml version="1.0"?>
<cpix:CPIX xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc" contentId="{content_id}">
  <cpix:ContentKeyList>
    <cpix:ContentKey kid="{kid}"/>
  </cpix:ContentKeyList>
  <cpix:DRMSystemList>
    <cpix:DRMSystem systemId="{FP}" kid="{kid}"/>
    <cpix:DRMSystem systemId="{PR}" kid="{kid}"/>
    <cpix:DRMSystem systemId="{WV}" kid="{kid}"/>
  </cpix:DRMSystemList>
  <cpix:ContentKeyPeriodList>
    <cpix:ContentKeyPeriod id="keyPeriod_{period_index}" index="{period_index}"/>
  </cpix:ContentKeyPeriodList>
  <cpix:ContentKeyUsageRuleList>
    <cpix:ContentKeyUsageRule kid="{kid}">
      <cpix:KeyPeriodFilter periodId="keyPeriod_{period_index}"/>
    </cpix:ContentKeyUsageRule>
  </cpix:ContentKeyUsageRuleList>
</cpix:CPIX>"#
    )
}

fn ssp_token(secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": "harmonic-vos" }),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn post(server: &TestServer, tenant: &str, body: String) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/{tenant}/cks-ws-ikey/key")))
        .basic_auth("packager", Some(format!("s3cret-{tenant}")))
        .header("content-type", "application/xml")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn harmonic_request_gets_keys_and_every_signaling_of_each_drm() {
    let server = start().await;
    let kid = "af1ed63c-5784-460b-9e51-309dd47b7d9c";
    let doc =
        ok_document(post(&server, "plain", harmonic_request("channel_01", kid, 213)).await).await;
    let keys = plain_keys(&doc);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].0.to_string(), kid, "packager-named kid kept");
    let drms = doc.drm_systems.as_ref().unwrap();
    // FairPlay: HLS only (cbcs by default); PlayReady and Widevine: pssh and DASH data.
    let fp = &drms[0];
    assert!(fp.pssh.is_none());
    assert_eq!(
        String::from_utf8(B64.decode(fp.uri_ext_x_key.as_ref().unwrap()).unwrap()).unwrap(),
        format!("skd://{kid}")
    );
    for d in &drms[1..] {
        assert!(d.pssh.is_some() && d.content_protection_data.is_some());
    }
    assert!(drms[1].smooth_streaming.is_some(), "PlayReady MSS header");
    // The period index travels into Widevine's pssh.
    let wv =
        keyplex_drm::pssh::PsshBox::parse_all(&B64.decode(drms[2].pssh.as_ref().unwrap()).unwrap())
            .unwrap()
            .remove(0);
    let data = keyplex_drm::widevine::WidevinePsshData::decode_from(&wv.data).unwrap();
    assert_eq!(data.crypto_period_index, Some(213));

    // Retried (an encoder restart), the same kid gets the same key.
    let again =
        ok_document(post(&server, "plain", harmonic_request("channel_01", kid, 213)).await).await;
    assert_eq!(plain_keys(&again), keys);
    // The kid is an identity: the same kid under another content is a conflict.
    let resp = post(&server, "plain", harmonic_request("channel_02", kid, 213)).await;
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn harmonic_with_kid_override_shares_the_slot_with_get_cpix() {
    let server = start().await;
    let encoder_kid = "0c0c0c0c-0000-4000-8000-000000000001";
    let doc = ok_document(
        post(
            &server,
            "vod",
            harmonic_request("channel_03", encoder_kid, 9),
        )
        .await,
    )
    .await;
    let keys = plain_keys(&doc);
    assert_ne!(keys[0].0.to_string(), encoder_kid, "keyplex chose the kid");
    assert!(
        doc.drm_systems
            .iter()
            .flatten()
            .all(|d| d.kid.id == keys[0].0),
        "DRMSystems renamed with the key"
    );
    // (content, ALL, period 9) — what GET-style CPIX answers for ?period=9.
    let resp = server
        .client
        .get(server.url("/vod/cpix/hls/channel_03?period=9"))
        .bearer_auth("get-token-of-vod-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(plain_keys(&ok_document(resp).await), keys);
}

#[tokio::test]
async fn harmonic_authentication_and_errors_are_cpix_style() {
    let server = start().await;
    let body = harmonic_request("channel_04", "0d0d0d0d-0000-4000-8000-000000000001", 1);
    let url = server.url("/vod/cks-ws-ikey/key");
    // NAGRA's SSP AuthN token in nv-authorizations.
    let resp = server
        .client
        .post(&url)
        .header(
            "nv-authorizations",
            ssp_token(b"a-long-shared-secret-for-vod"),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    ok_document(resp).await;
    for (token, status) in [
        (ssp_token(b"not-the-secret-of-vod-tenant"), 401),
        (ssp_token(b"a-long-shared-secret-for-vod"), 200),
    ] {
        let resp = server
            .client
            .post(&url)
            .header("nv-authorizations", token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
    }
    let resp = server
        .client
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    let resp = server
        .client
        .post(&url)
        .basic_auth("packager", Some("s3cret-plain"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let (status, text) = {
        let r = post(&server, "vod", "<not-cpix/>".into()).await;
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 400, "{text}");
    assert_eq!(post(&server, "vod", String::new()).await.status(), 400);
}

#[tokio::test]
async fn prm_in_a_cpix_request_uses_the_tenant_template() {
    use crate::nagra::{PRM, PRM_DATA_B64};
    let server = start().await;
    let kid = "0e0e0e0e-0000-4000-8000-000000000001";
    let req = harmonic_request("channel_05", kid, 3).replace(
        &format!(r#"<cpix:DRMSystem systemId="{FP}" kid="{kid}"/>"#),
        &format!(r#"<cpix:DRMSystem systemId="{PRM}" kid="{kid}"/>"#),
    );
    let doc = ok_document(post(&server, "live", req.clone()).await).await;
    let prm = &doc.drm_systems.as_ref().unwrap()[0];
    let b = keyplex_drm::pssh::PsshBox::parse_all(&B64.decode(prm.pssh.as_ref().unwrap()).unwrap())
        .unwrap()
        .remove(0);
    assert_eq!(b.system_id.to_string(), PRM);
    assert_eq!(B64.encode(&b.data), PRM_DATA_B64);
    assert_eq!(plain_keys(&doc)[0].0.to_string(), kid);
    // A tenant without a template signals PRM with keyplex's default data (base64url JSON of
    // the content id and key id, as the public parsers read it).
    let kid2 = "0e0e0e0e-0000-4000-8000-000000000002";
    let resp = server
        .client
        .post(server.url("/fast/cks-ws-ikey/key"))
        .basic_auth("packager", Some("s3cret-fast"))
        .body(req.replace("channel_05", "channel_06").replace(kid, kid2))
        .send()
        .await
        .unwrap();
    let doc = ok_document(resp).await;
    let prm = &doc.drm_systems.as_ref().unwrap()[0];
    let b = keyplex_drm::pssh::PsshBox::parse_all(&B64.decode(prm.pssh.as_ref().unwrap()).unwrap())
        .unwrap()
        .remove(0);
    assert_eq!(b.system_id.to_string(), PRM);
    let json = base64::engine::general_purpose::URL_SAFE
        .decode(&b.data)
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["contentId"], "channel_06");
    assert_eq!(json["keyId"], kid2);
}

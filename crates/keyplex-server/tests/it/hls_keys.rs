//! HLS AES-128 key delivery: the 16 raw bytes of the key the key APIs created, at the URL
//! their HLS signaling names; entitlement required; CORS for hls.js.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_cpix::model::Playlist;

use crate::common::TestServer;
use crate::cpix::{ok_document, plain_keys};
use crate::entitlement::{acme_token, cpix_key, get_hls_key, problem};

const CLEARKEY_AES_128: &str = "3ea8778f-7742-4bf9-b18b-e834b2acbd47";

async fn key_bytes(resp: reqwest::Response) -> Vec<u8> {
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (ctype, cache) = (header("content-type"), header("cache-control"));
    let body = resp.bytes().await.unwrap().to_vec();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ctype.as_deref(), Some("application/octet-stream"));
    assert_eq!(cache.as_deref(), Some("no-store"));
    body
}

#[tokio::test]
async fn the_key_uri_of_the_cpix_hls_signaling_delivers_the_cpix_key() {
    let server = TestServer::start().await;
    let kid = "5b1e3a9c-0d2f-4e6a-8b7c-9d0e1f2a3b4c";
    let request = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cpix:CPIX contentId="movie-hls" version="2.3" xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc">
  <cpix:ContentKeyList><cpix:ContentKey kid="{kid}" commonEncryptionScheme="cbc1"/></cpix:ContentKeyList>
  <cpix:DRMSystemList><cpix:DRMSystem systemId="{CLEARKEY_AES_128}" kid="{kid}"><cpix:HLSSignalingData playlist="media"/></cpix:DRMSystem></cpix:DRMSystemList>
</cpix:CPIX>"#
    );
    let doc = ok_document(server.post_cpix("acme", request).await).await;
    let (_, key, _) = plain_keys(&doc)[0];
    let signaling = &doc.drm_systems.as_ref().unwrap()[0].hls_signaling[0];
    assert_eq!(signaling.playlist, Some(Playlist::Media));
    let line = String::from_utf8(B64.decode(&signaling.value).unwrap()).unwrap();
    assert!(line.contains("METHOD=AES-128"), "{line}");
    let uri = line
        .split("URI=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert_eq!(uri, server.url(&format!("/acme/hls/v1/keys/{kid}")));

    let resp = server
        .client
        .get(uri)
        .bearer_auth(acme_token(&["movie-hls"]))
        .send()
        .await
        .unwrap();
    assert_eq!(key_bytes(resp).await, key);
}

#[tokio::test]
async fn both_kid_forms_and_head_are_served_malformed_kids_are_400() {
    let server = TestServer::start().await;
    let (kid, key) = cpix_key(&server, "acme", "movie-1").await;
    let token = acme_token(&["movie-1"]);
    for form in [
        kid.to_string(),
        kid.to_hex(),
        kid.to_string().to_uppercase(),
    ] {
        let bytes = key_bytes(get_hls_key(&server, "acme", &form, Some(&token)).await).await;
        assert_eq!(bytes, key, "{form}");
    }
    for bad in [
        "not-a-kid",
        "1234",
        "{5b1e3a9c-0d2f-4e6a-8b7c-9d0e1f2a3b4c}",
    ] {
        let (status, detail) = problem(get_hls_key(&server, "acme", bad, Some(&token)).await).await;
        assert_eq!(status, 400, "{bad}: {detail}");
    }
    let head = server
        .client
        .head(server.url(&format!("/acme/hls/v1/keys/{kid}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "16");
}

#[tokio::test]
async fn cors_for_hls_js_key_requests() {
    let server = TestServer::start().await;
    let (kid, key) = cpix_key(&server, "acme", "movie-1").await;
    let url = server.url(&format!("/acme/hls/v1/keys/{kid}"));
    let resp = server
        .client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://player.acme.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://player.acme.example"
    );
    assert_eq!(
        resp.headers()["access-control-allow-methods"],
        "GET, POST, OPTIONS"
    );
    let resp = server
        .client
        .get(&url)
        .header("origin", "https://player.acme.example")
        .bearer_auth(acme_token(&["movie-1"]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://player.acme.example"
    );
    assert_eq!(key_bytes(resp).await, key);
    let resp = server
        .client
        .get(&url)
        .header("origin", "https://evil.example")
        .bearer_auth(acme_token(&["movie-1"]))
        .send()
        .await
        .unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
}

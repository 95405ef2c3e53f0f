//! The W3C Clear Key licence server: the keys the CPIX API created come back as JSON Web
//! Keys (base64url, no padding), only for covered kids; temporary and persistent licences;
//! CORS for browser players.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyplex_types::KeyId;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::entitlement::{
    ACME_LICENCE_SECRET, acme_token, clearkey_request, cpix_key, cpix_key_with_kid, hs256, now,
    post_clearkey, problem,
};

/// The EME specification's example kid: its base64url form has a `_`, where standard base64
/// would have a `/`.
const EME_EXAMPLE_KID: &str = "2f05477f-c24b-b4fa-efd8-6517156daffc";

async fn licence(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (ctype, cache) = (header("content-type"), header("cache-control"));
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(ctype.as_deref(), Some("application/json"));
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert!(!text.contains('='), "no base64 padding: {text}");
    serde_json::from_str(&text).unwrap()
}

/// (kid, key) of every JSON Web Key, decoded strictly as base64url without padding.
fn jwks(licence: &Value) -> Vec<(KeyId, Vec<u8>)> {
    licence["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["kty"], "oct");
            let kid = URL_SAFE_NO_PAD.decode(k["kid"].as_str().unwrap()).unwrap();
            let key = URL_SAFE_NO_PAD.decode(k["k"].as_str().unwrap()).unwrap();
            (KeyId::from_slice(&kid).unwrap(), key)
        })
        .collect()
}

#[tokio::test]
async fn licence_carries_the_keys_the_cpix_api_created() {
    let server = TestServer::start().await;
    let (kid_a, key_a) = cpix_key_with_kid(&server, "acme", "movie-1", EME_EXAMPLE_KID).await;
    let (kid_b, key_b) = cpix_key(&server, "acme", "movie-1").await;
    let token = acme_token(&["movie-1"]);
    let body = licence(
        post_clearkey(
            &server,
            "acme",
            &clearkey_request(&[kid_a, kid_b], "temporary"),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(body["type"], "temporary");
    assert_eq!(body["keys"][0]["kid"], "LwVHf8JLtPrv2GUXFW2v_A");
    assert_eq!(
        jwks(&body),
        vec![(kid_a, key_a.to_vec()), (kid_b, key_b.to_vec())]
    );
    // A CDM's request may omit `type` (temporary) and pad its kids; each kid is answered once.
    let padded = format!("{}==", URL_SAFE_NO_PAD.encode(kid_b.as_bytes()));
    let body = licence(
        post_clearkey(
            &server,
            "acme",
            &json!({"kids": [padded, URL_SAFE_NO_PAD.encode(kid_b.as_bytes())]}),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(body["type"], "temporary");
    assert_eq!(jwks(&body), vec![(kid_b, key_b.to_vec())]);
}

#[tokio::test]
async fn only_covered_kids_are_answered_and_none_covered_is_403() {
    let server = TestServer::start().await;
    let (mine, key) = cpix_key(&server, "acme", "movie-1").await;
    let (theirs, _) = cpix_key(&server, "acme", "movie-2").await;
    let unknown = KeyId::new_random();
    let token = acme_token(&["movie-1"]);
    let body = licence(
        post_clearkey(
            &server,
            "acme",
            &clearkey_request(&[theirs, mine, unknown], "temporary"),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(jwks(&body), vec![(mine, key.to_vec())]);
    let (status, detail) = problem(
        post_clearkey(
            &server,
            "acme",
            &clearkey_request(&[theirs, unknown], "temporary"),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{detail}");
    assert!(detail.contains("not entitled"), "{detail}");
}

#[tokio::test]
async fn persistent_licences_need_the_policy_to_allow_persistence() {
    let server = TestServer::start().await;
    let (kid, key) = cpix_key(&server, "acme", "movie-1").await;
    let request = clearkey_request(&[kid], "persistent-license");
    let with_policy = |policy: Value| {
        hs256(
            ACME_LICENCE_SECRET,
            &json!({"sub": "u", "contents": ["movie-1"], "exp": now() + 60, "policy": policy}),
        )
    };
    let allowed = with_policy(json!({"persistence": true, "licence_duration": 86400}));
    let body = licence(post_clearkey(&server, "acme", &request, Some(&allowed)).await).await;
    assert_eq!(body["type"], "persistent-license");
    assert_eq!(jwks(&body), vec![(kid, key.to_vec())]);

    for refused in [
        with_policy(json!({"persistence": false})),
        with_policy(json!({})),
        acme_token(&["movie-1"]),
    ] {
        let (status, detail) =
            problem(post_clearkey(&server, "acme", &request, Some(&refused)).await).await;
        assert_eq!(status, 403);
        assert!(detail.contains("persistent"), "{detail}");
        // The same token still gets a temporary licence.
        let temporary = clearkey_request(&[kid], "temporary");
        let body = licence(post_clearkey(&server, "acme", &temporary, Some(&refused)).await).await;
        assert_eq!(body["type"], "temporary");
    }
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let server = TestServer::start().await;
    let token = acme_token(&["movie-1"]);
    for bad in [
        json!({"kids": []}),
        json!({"kids": ["AAAA"]}),
        json!({"kids": ["nrQFDeRLSAKTLifXUIPiZg"], "type": "persistent-release-message"}),
        json!({"type": "temporary"}),
        json!("kids"),
    ] {
        let (status, detail) =
            problem(post_clearkey(&server, "acme", &bad, Some(&token)).await).await;
        assert_eq!(status, 400, "{bad}: {detail}");
        assert!(detail.contains("Clear Key licence request"), "{detail}");
    }
}

#[tokio::test]
async fn cors_preflight_and_responses_for_the_tenants_origins() {
    let server = TestServer::start().await;
    let url = server.url("/acme/clearkey/v1/licenses");
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let resp = preflight("https://player.acme.example").await.unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(
        h["access-control-allow-origin"],
        "https://player.acme.example"
    );
    assert_eq!(h["access-control-allow-methods"], "GET, POST, OPTIONS");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization, content-type, soapaction"
    );
    assert!(h.contains_key("access-control-max-age"));
    assert!(!h.contains_key("access-control-allow-credentials"));

    let resp = preflight("https://evil.example").await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    assert!(!resp.headers().contains_key("access-control-allow-headers"));

    // The actual request: allowed origin echoed (errors too, so the page sees 401 vs 403),
    // other origins get nothing.
    let (kid, _) = cpix_key(&server, "acme", "movie-1").await;
    let body = clearkey_request(&[kid], "temporary").to_string();
    let post = |origin: &'static str, token: Option<String>| {
        let mut request = server
            .client
            .post(&url)
            .header("origin", origin)
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let ok = post(
        "https://player.acme.example",
        Some(acme_token(&["movie-1"])),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://player.acme.example"
    );
    assert_eq!(ok.headers()["vary"], "origin");
    let unauthorized = post("https://player.acme.example", None).await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        unauthorized.headers()["access-control-allow-origin"],
        "https://player.acme.example"
    );
    let foreign = post("https://evil.example", Some(acme_token(&["movie-1"])))
        .await
        .unwrap();
    assert_eq!(
        foreign.status(),
        200,
        "CORS is the browser's check, not auth"
    );
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // globex allows every origin: "*".
    let resp = server
        .client
        .request(
            reqwest::Method::OPTIONS,
            server.url("/globex/clearkey/v1/licenses"),
        )
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    // initech configured no origins.
    let resp = server
        .client
        .request(
            reqwest::Method::OPTIONS,
            server.url("/initech/clearkey/v1/licenses"),
        )
        .header("origin", "https://player.acme.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
}

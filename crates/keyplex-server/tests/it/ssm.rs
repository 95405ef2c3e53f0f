//! Secure sessions (SSM): setup, ClearKey licence and renewal, heartbeat, teardown,
//! max_streams (also under concurrent setups), expiry without heartbeat.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keyplex_types::KeyId;
use serde_json::{Value, json};

use crate::common::{ACME_CONFIG, TestServer};
use crate::entitlement::{
    ACME_LICENCE_SECRET, acme_token, claims, clearkey_request, cpix_key, hs256,
};

const CLEARKEY: &str = "e2719d58-a985-b3c9-781a-b030af78d30e";

fn token_with(extra: Value) -> String {
    let mut c = claims(&["movie-1"]);
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    hs256(ACME_LICENCE_SECRET, &c)
}

async fn setup(server: &TestServer, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/acme/ssm/v1/sessions/setup"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn setup_ok(server: &TestServer, token: &str) -> Value {
    let resp = setup(server, token).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

async fn licence(server: &TestServer, session: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(&format!("/acme/ssm/v1/sessions/{session}/licence")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn clearkey_body(kids: &[KeyId], request_type: &str) -> Value {
    let payload = STANDARD.encode(clearkey_request(kids, "temporary").to_string());
    json!({"keySystem": CLEARKEY, "payload": payload, "requestType": request_type})
}

fn licence_kids(answer: &Value) -> Vec<(KeyId, Vec<u8>)> {
    let jwks: Value = serde_json::from_slice(
        &STANDARD
            .decode(answer["licence"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let kid = URL_SAFE_NO_PAD.decode(k["kid"].as_str().unwrap()).unwrap();
            let key = URL_SAFE_NO_PAD.decode(k["k"].as_str().unwrap()).unwrap();
            (KeyId::from_slice(&kid).unwrap(), key)
        })
        .collect()
}

async fn post(server: &TestServer, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(path))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn setup_licence_renewal_heartbeat_teardown_with_clearkey() {
    let server = TestServer::start().await;
    let (kid, key) = cpix_key(&server, "acme", "movie-1").await;
    let (other_kid, _) = cpix_key(&server, "acme", "movie-2").await;
    let token = acme_token(&["movie-1"]);
    let session = setup_ok(&server, &token).await;
    let id = session["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 22, "128 bits base64url: {id}");
    assert_eq!(session["heartbeat"], 60);
    assert!(session["expiresAt"].as_u64().unwrap() >= crate::entitlement::now() as u64 + 119);

    // Renewal before any licence: refused.
    let resp = licence(&server, &id, clearkey_body(&[kid], "license-renewal")).await;
    assert_eq!(resp.status(), 409);

    // Licence only for covered kids.
    let resp = licence(
        &server,
        &id,
        clearkey_body(&[kid, other_kid], "license-request"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["heartbeat"], 60);
    assert_eq!(licence_kids(&answer), vec![(kid, key.to_vec())]);
    let resp = licence(&server, &id, clearkey_body(&[other_kid], "license-request")).await;
    assert_eq!(resp.status(), 403);

    // Renewal after a licence, also under the EME key system name.
    let mut renewal = clearkey_body(&[kid], "license-renewal");
    renewal["keySystem"] = json!("org.w3.clearkey");
    let resp = licence(&server, &id, renewal).await;
    assert_eq!(resp.status(), 200);
    // A Widevine renewal in a session that only had ClearKey licences: refused.
    let mut wv = clearkey_body(&[kid], "license-renewal");
    wv["keySystem"] = json!("edef8ba9-79d6-4ace-a3c8-27dcd51d21ed");
    assert_eq!(licence(&server, &id, wv).await.status(), 409);

    // Malformed requests.
    let mut bad = clearkey_body(&[kid], "license-request");
    bad["requestType"] = json!("license-release");
    assert_eq!(licence(&server, &id, bad).await.status(), 400);
    let mut bad = clearkey_body(&[kid], "license-request");
    bad["keySystem"] = json!("00000000-0000-0000-0000-000000000000");
    assert_eq!(licence(&server, &id, bad).await.status(), 400);

    let resp = post(&server, &format!("/acme/ssm/v1/sessions/{id}/heartbeat")).await;
    assert_eq!(resp.status(), 200);
    let hb: Value = resp.json().await.unwrap();
    assert_eq!(hb["heartbeat"], 60);

    let resp = reqwest::Client::new()
        .delete(server.url(&format!("/acme/ssm/v1/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = post(&server, &format!("/acme/ssm/v1/sessions/{id}/heartbeat")).await;
    assert_eq!(resp.status(), 404);
    let resp = licence(&server, &id, clearkey_body(&[kid], "license-request")).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn unknown_sessions_and_missing_tokens_are_refused() {
    let server = TestServer::start().await;
    let resp = post(
        &server,
        "/acme/ssm/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA/heartbeat",
    )
    .await;
    assert_eq!(resp.status(), 404);
    let resp = reqwest::Client::new()
        .delete(server.url("/acme/ssm/v1/sessions/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = reqwest::Client::new()
        .post(server.url("/acme/ssm/v1/sessions/setup"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn max_streams_limits_sessions_and_teardown_frees_a_slot() {
    let server = TestServer::start().await;
    let token = token_with(json!({"max_streams": 2}));
    let first = setup_ok(&server, &token).await;
    setup_ok(&server, &token).await;
    assert_eq!(setup(&server, &token).await.status(), 403);
    // Another user is not limited by this one's sessions.
    let mut other = claims(&["movie-1"]);
    other["sub"] = json!("someone-else");
    other["max_streams"] = json!(1);
    assert_eq!(
        setup(&server, &hs256(ACME_LICENCE_SECRET, &other))
            .await
            .status(),
        201
    );
    let resp = reqwest::Client::new()
        .delete(server.url(&format!(
            "/acme/ssm/v1/sessions/{}",
            first["sessionId"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    setup_ok(&server, &token).await;
    assert_eq!(setup(&server, &token).await.status(), 403);
}

#[tokio::test]
async fn concurrent_setups_respect_max_streams() {
    let server = TestServer::start().await;
    let mut c = claims(&["movie-1"]);
    c["sub"] = json!("racer");
    c["max_streams"] = json!(2);
    let token = hs256(ACME_LICENCE_SECRET, &c);
    let answers = futures_join(&server, &token, 10).await;
    assert_eq!(
        answers.iter().filter(|s| **s == 201).count(),
        2,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|s| **s == 403).count(),
        8,
        "{answers:?}"
    );
}

async fn futures_join(server: &TestServer, token: &str, n: usize) -> Vec<u16> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let url = server.url("/acme/ssm/v1/sessions/setup");
        let token = token.to_owned();
        tasks.spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    tasks.join_all().await
}

#[tokio::test]
async fn sessions_expire_without_heartbeat() {
    let toml = ACME_CONFIG.replace(
        "cors_origins = [\"https://player.acme.example\"]",
        "cors_origins = [\"https://player.acme.example\"]\nheartbeat_seconds = 1",
    );
    let server = TestServer::start_with(&toml, |_| {}).await;
    let token = token_with(json!({"max_streams": 1}));
    let kept = setup_ok(&server, &token).await;
    assert_eq!(kept["heartbeat"], 1);
    let id = kept["sessionId"].as_str().unwrap();
    // Heartbeats keep it alive past 2 × heartbeat.
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        let resp = post(&server, &format!("/acme/ssm/v1/sessions/{id}/heartbeat")).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(setup(&server, &token).await.status(), 403, "still live");
    // Without heartbeat it expires and frees its slot.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let resp = post(&server, &format!("/acme/ssm/v1/sessions/{id}/heartbeat")).await;
    assert_eq!(resp.status(), 404);
    setup_ok(&server, &token).await;
    // The policy's renewal_interval wins over the tenant default.
    let mut c = claims(&["movie-1"]);
    c["sub"] = json!("policy-user");
    c["policy"] = json!({"renewal_interval": 30});
    assert_eq!(
        setup_ok(&server, &hs256(ACME_LICENCE_SECRET, &c)).await["heartbeat"],
        30
    );
}

/// A fake Widevine licence server: records what it receives, answers fixed licence bytes.
async fn fake_widevine_upstream() -> (std::sync::Arc<std::sync::Mutex<Vec<Value>>>, String) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen = received.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            (
                [("content-type", "application/octet-stream")],
                WV_LICENCE.to_vec(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/wv", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (received, base)
}

const WV_LICENCE: &[u8] = b"\x08\x02\x12\x00WV-LICENCE\xff";

#[tokio::test]
async fn widevine_licence_goes_through_the_upstream_with_the_session_entitlement() {
    let (received, url) = fake_widevine_upstream().await;
    let server = TestServer::start_with(ACME_CONFIG, move |config| {
        let licence = config
            .tenants
            .get_mut("acme")
            .unwrap()
            .licence
            .as_mut()
            .unwrap();
        licence.upstream.insert(
            "widevine".into(),
            keyplex_server::config::Upstream::plain(&url),
        );
    })
    .await;
    let (kid, key) = cpix_key(&server, "acme", "movie-1").await;
    let (other_kid, _) = cpix_key(&server, "acme", "movie-2").await;
    let session = setup_ok(&server, &acme_token(&["movie-1"])).await;
    let id = session["sessionId"].as_str().unwrap();
    let challenge = b"\x08\x01widevine-challenge\x00";
    let request = |kid: KeyId, request_type: &str| {
        json!({"keySystem": "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
               "payload": STANDARD.encode(challenge), "requestType": request_type,
               "kid": kid.to_string()})
    };
    assert_eq!(
        licence(&server, id, request(kid, "license-renewal"))
            .await
            .status(),
        409
    );
    let resp = licence(&server, id, request(kid, "license-request")).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        STANDARD
            .decode(answer["licence"].as_str().unwrap())
            .unwrap(),
        WV_LICENCE
    );
    assert_eq!(answer["heartbeat"], 60);
    {
        let got = received.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["payload"], STANDARD.encode(challenge));
        let spec = &got[0]["content_key_specs"][0];
        assert_eq!(spec["key_id"], STANDARD.encode(kid.as_bytes()));
        assert_eq!(spec["key"], STANDARD.encode(key));
    }
    assert_eq!(
        licence(&server, id, request(kid, "license-renewal"))
            .await
            .status(),
        200
    );
    // A key of a content the session's entitlement does not cover never goes upstream.
    assert_eq!(
        licence(&server, id, request(other_kid, "license-request"))
            .await
            .status(),
        403
    );
    assert_eq!(received.lock().unwrap().len(), 2);
}

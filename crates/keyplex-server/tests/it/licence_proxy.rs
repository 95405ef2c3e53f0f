//! The licence proxy per DRM, against an upstream licence server the test starts itself: what
//! arrives upstream (challenge, keys, IVs, policy) per adapter, the answer passed back
//! unchanged, entitlement failures that never reach the upstream, and upstream failures
//! (500, down, 503 then 200, timeout).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_server::config::Config;
use keyplex_types::KeyId;
use serde_json::{Value, json};

use crate::common::{ACME_CONFIG, TestServer};
use crate::cpix::{WV, ok_document, plain_keys, vod_request};
use crate::entitlement::{ACME_LICENCE_SECRET, acme_token, hs256, now, problem};

/// What the fake upstream received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    delay: Duration,
}

/// The licence the fake upstream answers unless scripted otherwise: bytes that are not text,
/// to show they come back untouched.
const DEFAULT_LICENCE: &[u8] = b"\x08\x02\x12\x00LICENCE\xff\xfe";

impl Reply {
    fn ok(content_type: &'static str, body: &[u8]) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.to_vec(),
            delay: Duration::ZERO,
        }
    }
    fn status(status: u16) -> Self {
        Self {
            status,
            content_type: "text/plain",
            body: format!("upstream says {status}").into_bytes(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Clone, Default)]
struct Upstream {
    received: Arc<Mutex<Vec<Received>>>,
    /// Replies in order; when empty, 200 with [`DEFAULT_LICENCE`].
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Upstream {
    async fn start() -> (Self, String) {
        let upstream = Self::default();
        let app = axum::Router::new()
            .fallback(Self::handle)
            .with_state(upstream.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (upstream, base)
    }

    async fn handle(
        axum::extract::State(upstream): axum::extract::State<Self>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        upstream.received.lock().unwrap().push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
        });
        let reply = upstream
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Reply::ok("application/octet-stream", DEFAULT_LICENCE));
        tokio::time::sleep(reply.delay).await;
        (
            StatusCode::from_u16(reply.status).unwrap(),
            [("content-type", reply.content_type)],
            reply.body,
        )
            .into_response()
    }

    fn then(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn only(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "{received:?}");
        received.into_iter().next().unwrap()
    }
}

/// keyplex with acme's upstreams set to `upstreams` (DRM name → URL).
async fn server_with(upstreams: &[(&str, String)], timeout: Option<u64>) -> TestServer {
    let upstreams: Vec<(String, String)> = upstreams
        .iter()
        .map(|(d, u)| (d.to_string(), u.clone()))
        .collect();
    TestServer::start_with(ACME_CONFIG, move |config: &mut Config| {
        let licence = config
            .tenants
            .get_mut("acme")
            .unwrap()
            .licence
            .as_mut()
            .unwrap();
        licence.upstream.extend(
            upstreams
                .into_iter()
                .map(|(d, u)| (d, keyplex_server::config::Upstream::plain(&u))),
        );
        licence.upstream_timeout_seconds = timeout;
    })
    .await
}

/// keyplex with every acme upstream at the fake upstream (`/wv`, `/pr`, `/fp`, `/prm`).
async fn proxied() -> (TestServer, Upstream) {
    let (upstream, base) = Upstream::start().await;
    let server = server_with(
        &[
            ("widevine", format!("{base}/wv")),
            ("playready", format!("{base}/pr")),
            ("fairplay", format!("{base}/fp")),
            ("prm", format!("{base}/prm")),
        ],
        None,
    )
    .await;
    (server, upstream)
}

/// A key for `content_id` through the CPIX API: (kid, key, iv).
async fn key_of(server: &TestServer, content_id: &str) -> (KeyId, [u8; 16], [u8; 16]) {
    let kid = KeyId::new_random().to_string();
    let doc = ok_document(
        server
            .post_cpix("acme", vod_request(content_id, &kid, "cenc", &[WV]))
            .await,
    )
    .await;
    plain_keys(&doc)[0]
}

fn policy_token(contents: &[&str], policy: Value) -> String {
    hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "user-1", "contents": contents, "exp": now() + 3600, "policy": policy}),
    )
}

async fn post(
    server: &TestServer,
    route: &str,
    query: &str,
    token: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = server
        .client
        .post(server.url(&format!(
            "/acme/{route}/contentlicenseservice/v1/licenses{query}"
        )))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// 200, the upstream's content type and body exactly, never cached.
async fn passed_on(resp: reqwest::Response, content_type: &str, body: &[u8]) {
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (ctype, cache) = (header("content-type"), header("cache-control"));
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(ctype.as_deref(), Some(content_type));
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(&bytes[..], body);
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[tokio::test]
async fn widevine_and_prm_get_json_with_challenge_keys_and_policy() {
    let (server, upstream) = proxied().await;
    let (kid, key, iv) = key_of(&server, "movie-1").await;
    let token = policy_token(
        &["movie-1"],
        json!({"licence_duration": 3600, "persistence": true, "renewal_interval": 60,
               "widevine_security_level": 3, "hdcp": "HDCP_V2_2"}),
    );
    let challenge = b"\x08\x01\x12\x10widevine-challenge\x00\xff";
    let licence = br#"{"status":"OK","license":"CAIS..."}"#;
    for (route, path) in [("wvls", "/wv"), ("prmls", "/prm")] {
        upstream.received.lock().unwrap().clear();
        upstream.then(Reply::ok("application/json", licence));
        let resp = post(
            &server,
            route,
            &format!("?kid={kid}"),
            Some(&token),
            "application/octet-stream",
            challenge.to_vec(),
        )
        .await;
        passed_on(resp, "application/json", licence).await;
        let got = upstream.only();
        assert_eq!(got.path, path);
        assert_eq!(got.headers["content-type"], "application/json");
        let mut sent: Value = serde_json::from_slice(&got.body).unwrap();
        // Renewals come back through keyplex's own route.
        let renewal_url = sent["policy_overrides"]
            .as_object_mut()
            .unwrap()
            .remove("renewal_server_url")
            .unwrap();
        assert!(
            renewal_url
                .as_str()
                .unwrap()
                .ends_with(&format!("/acme/{route}/contentlicenseservice/v1/licenses")),
            "{renewal_url}"
        );
        assert_eq!(
            sent,
            json!({
                "payload": b64(challenge),
                "provider": "acme",
                "content_id": b64(b"movie-1"),
                "content_key_specs": [{
                    "key_id": b64(kid.as_bytes()), "key": b64(&key), "iv": b64(&iv),
                    "security_level": 3,
                    "required_output_protection": {"hdcp": "HDCP_V2_2"}
                }],
                "policy_overrides": {
                    "can_play": true, "can_persist": true, "can_renew": true,
                    "license_duration_seconds": 3600, "renewal_delay_seconds": 60,
                    "renewal_interval_seconds": 60
                },
                "allowed_track_types": "SD_UHD2",
                // The token's user, for the service's reports.
                "session_init": {"provider_client_token": b64(b"user-1")}
            }),
            "{route}"
        );
    }
}

#[tokio::test]
async fn keys_come_from_the_content_id_or_the_one_covered_content() {
    let (server, upstream) = proxied().await;
    let (kid_a, key_a, _) = key_of(&server, "movie-1").await;
    let (kid_b, key_b, _) = key_of(&server, "movie-1").await;
    let (kid_c, _, _) = key_of(&server, "movie-2").await;
    let specs = |r: &Received| -> Vec<(String, String)> {
        let sent: Value = serde_json::from_slice(&r.body).unwrap();
        sent["content_key_specs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["key_id"].as_str().unwrap().to_owned(),
                    s["key"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let both = vec![
        (b64(kid_a.as_bytes()), b64(&key_a)),
        (b64(kid_b.as_bytes()), b64(&key_b)),
    ];
    // No kid, no content_id: the one content the token covers.
    let one = acme_token(&["movie-1"]);
    let resp = post(
        &server,
        "wvls",
        "",
        Some(&one),
        "application/octet-stream",
        "c",
    )
    .await;
    passed_on(resp, "application/octet-stream", DEFAULT_LICENCE).await;
    assert_eq!(specs(&upstream.only()), both);
    // content_id with a token covering two contents, token in the query string.
    upstream.received.lock().unwrap().clear();
    let two = acme_token(&["movie-1", "movie-2"]);
    let resp = post(
        &server,
        "wvls",
        &format!("?content_id=movie-1&token={two}"),
        None,
        "application/octet-stream",
        "c",
    )
    .await;
    passed_on(resp, "application/octet-stream", DEFAULT_LICENCE).await;
    assert_eq!(specs(&upstream.only()), both);
    // Without either, two covered contents are ambiguous: 400, nothing sent.
    upstream.received.lock().unwrap().clear();
    let resp = post(
        &server,
        "wvls",
        "",
        Some(&two),
        "application/octet-stream",
        "c",
    )
    .await;
    let (status, detail) = problem(resp).await;
    assert_eq!(status, 400, "{detail}");
    assert!(detail.contains("content_id"), "{detail}");
    // Key ids of two contents in one licence: 400; a kid outside the named content: 403.
    let resp = post(
        &server,
        "wvls",
        &format!("?kid={kid_a}&kid={kid_c}"),
        Some(&two),
        "application/octet-stream",
        "c",
    )
    .await;
    assert_eq!(problem(resp).await.0, 400);
    let resp = post(
        &server,
        "wvls",
        &format!("?kid={kid_c}&content_id=movie-1"),
        Some(&two),
        "application/octet-stream",
        "c",
    )
    .await;
    assert_eq!(problem(resp).await.0, 403);
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn playready_soap_is_passed_through_with_keys_beside_it() {
    let (server, upstream) = proxied().await;
    let (kid, key, iv) = key_of(&server, "movie-1").await;
    let token = policy_token(
        &["movie-1"],
        json!({"licence_duration": 600, "playready_security_level": 2000, "hdcp": "HDCP_V1"}),
    );
    let soap = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><AcquireLicense xmlns="http://schemas.microsoft.com/DRM/2007/03/protocols"><challenge>…</challenge></AcquireLicense></soap:Body></soap:Envelope>"#;
    let action = "\"http://schemas.microsoft.com/DRM/2007/03/protocols/AcquireLicense\"";
    let answer =
        b"<soap:Envelope><AcquireLicenseResponse>licence</AcquireLicenseResponse></soap:Envelope>";
    upstream.then(Reply::ok("text/xml; charset=utf-8", answer));
    let resp = server
        .client
        .post(server.url(&format!(
            "/acme/prls/contentlicenseservice/v1/licenses?kid={}",
            kid.to_hex()
        )))
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", action)
        .bearer_auth(&token)
        .body(soap)
        .send()
        .await
        .unwrap();
    passed_on(resp, "text/xml; charset=utf-8", answer).await;
    let got = upstream.only();
    assert_eq!(got.path, "/pr");
    assert_eq!(
        &got.body[..],
        soap.as_bytes(),
        "challenge forwarded byte for byte"
    );
    assert_eq!(got.headers["content-type"], "text/xml; charset=utf-8");
    assert_eq!(got.headers["soapaction"], action);
    let delivery: Value = serde_json::from_slice(
        &B64.decode(got.headers["x-keyplex-content-keys"].as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        delivery,
        json!({
            "content_id": "movie-1",
            "keys": [{
                "kid": kid.to_string(), "kid_guid_le": b64(&kid.to_guid_le_bytes()),
                "key": b64(&key), "iv": b64(&iv)
            }],
            "policy": {"persistent": false, "license_duration_seconds": 600,
                       "security_level": 2000, "hdcp": "HDCP_V1"}
        })
    );
    // A body that is not XML is not a SOAP challenge.
    let resp = post(&server, "prls", "", Some(&token), "text/xml", "binary").await;
    assert_eq!(problem(resp).await.0, 400);
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test]
async fn fairplay_spc_in_any_of_three_forms_becomes_the_ksm_json() {
    let (server, upstream) = proxied().await;
    let (kid, key, iv) = key_of(&server, "movie-1").await;
    let token = policy_token(&["movie-1"], json!({"licence_duration": 7200}));
    // Bytes whose base64 has `+` and `/`: the form variant must survive them.
    let spc: Vec<u8> = (0u8..=255).rev().collect();
    let ckc = b"<ckc>Q0tDLWJ5dGVz</ckc>";
    let form = format!(
        "spc={}",
        b64(&spc)
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let json_body = json!({"spc": b64(&spc), "assetId": "ignored"}).to_string();
    for (content_type, body) in [
        ("application/octet-stream", spc.clone()),
        ("application/x-www-form-urlencoded", form.into_bytes()),
        ("application/json", json_body.into_bytes()),
    ] {
        upstream.received.lock().unwrap().clear();
        upstream.then(Reply::ok("application/xml", ckc));
        let resp = post(
            &server,
            "fpls",
            &format!("?kid={kid}"),
            Some(&token),
            content_type,
            body,
        )
        .await;
        passed_on(resp, "application/xml", ckc).await;
        let got = upstream.only();
        assert_eq!(got.path, "/fp");
        let sent: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(
            sent,
            json!({
                "spc": b64(&spc), "assetId": "movie-1", "kid": kid.to_hex(),
                "key": hex::encode(key), "iv": hex::encode(iv),
                "persistent": false, "leaseDurationSeconds": 7200
            }),
            "{content_type}"
        );
    }
    // Two keys cannot go into one CKC; an SPC field that is not base64 is refused.
    upstream.received.lock().unwrap().clear();
    key_of(&server, "movie-1").await;
    let resp = post(
        &server,
        "fpls",
        "?content_id=movie-1",
        Some(&token),
        "application/octet-stream",
        spc.clone(),
    )
    .await;
    let (status, detail) = problem(resp).await;
    assert_eq!(status, 400);
    assert!(detail.contains("one key"), "{detail}");
    let resp = post(
        &server,
        "fpls",
        &format!("?kid={kid}"),
        Some(&token),
        "application/json",
        r#"{"spc":"!!"}"#,
    )
    .await;
    assert_eq!(problem(resp).await.0, 400);
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn entitlement_failures_never_reach_the_upstream() {
    let (server, upstream) = proxied().await;
    let (kid, _, _) = key_of(&server, "movie-1").await;
    let (other_kid, _, _) = key_of(&server, "movie-2").await;
    let movie_1 = acme_token(&["movie-1"]);
    let expired = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() - 3600}),
    );
    let forged = hs256(
        "not-the-portal-secret",
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() + 3600}),
    );
    let globex = hs256(
        crate::entitlement::GLOBEX_LICENCE_SECRET,
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() + 3600}),
    );
    let nothing = acme_token(&[]);
    let cases: Vec<(Option<&str>, String, u16)> = vec![
        (None, format!("?kid={kid}"), 401),
        (Some(&expired), format!("?kid={kid}"), 401),
        (Some(&forged), format!("?kid={kid}"), 401),
        (Some(&globex), format!("?kid={kid}"), 403),
        (Some(&nothing), format!("?kid={kid}"), 403),
        (Some(&movie_1), format!("?kid={other_kid}"), 403),
        (Some(&movie_1), format!("?kid={kid}&kid={other_kid}"), 403),
        (Some(&movie_1), format!("?kid={}", KeyId::new_random()), 403),
        (Some(&movie_1), "?content_id=movie-2".to_owned(), 403),
        (Some(&movie_1), "?kid=not-a-kid".to_owned(), 400),
    ];
    for route in ["wvls", "prls", "fpls", "prmls"] {
        for (token, query, expected) in &cases {
            let resp = post(&server, route, query, *token, "text/xml", "<challenge/>").await;
            let (status, detail) = problem(resp).await;
            assert_eq!(status, *expected, "{route}{query}: {detail}");
        }
    }
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn a_drm_without_upstream_answers_404() {
    let (upstream, base) = Upstream::start().await;
    let server = server_with(&[("widevine", format!("{base}/wv"))], None).await;
    key_of(&server, "movie-1").await;
    let token = acme_token(&["movie-1"]);
    for (route, drm) in [
        ("prls", "playready"),
        ("fpls", "fairplay"),
        ("prmls", "prm"),
    ] {
        let resp = post(&server, route, "", Some(&token), "text/xml", "<c/>").await;
        let (status, detail) = problem(resp).await;
        assert_eq!(status, 404, "{route}");
        assert!(detail.contains(&format!("upstream.{drm}")), "{detail}");
    }
    // A tenant without any licence configuration: also 404.
    let resp = server
        .client
        .post(server.url("/initech/wvls/contentlicenseservice/v1/licenses"))
        .body("c")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 404);
    assert!(upstream.received().is_empty());
}

/// 502 whose detail says what failed upstream and carries no key material.
async fn bad_gateway(resp: reqwest::Response, key: &[u8; 16]) -> String {
    let (status, detail) = problem(resp).await;
    assert_eq!(status, 502, "{detail}");
    assert!(
        detail.starts_with("upstream licence server failed: "),
        "{detail}"
    );
    for secret in [hex::encode(key), b64(key)] {
        assert!(!detail.contains(&secret), "{detail}");
    }
    detail
}

#[tokio::test]
async fn upstream_errors_are_502_without_retrying_what_may_have_been_processed() {
    let (server, upstream) = proxied().await;
    let (kid, key, _) = key_of(&server, "movie-1").await;
    let token = acme_token(&["movie-1"]);
    for status in [500, 400, 401] {
        upstream.received.lock().unwrap().clear();
        upstream.then(Reply::status(status));
        let resp = post(
            &server,
            "wvls",
            &format!("?kid={kid}"),
            Some(&token),
            "x/y",
            "c",
        )
        .await;
        let detail = bad_gateway(resp, &key).await;
        assert!(detail.contains(&format!("HTTP {status}")), "{detail}");
        assert_eq!(upstream.received().len(), 1, "HTTP {status} is not retried");
    }
}

#[tokio::test]
async fn a_503_then_a_licence_succeeds_through_a_retry() {
    let (server, upstream) = proxied().await;
    let (kid, _, _) = key_of(&server, "movie-1").await;
    let token = acme_token(&["movie-1"]);
    upstream.then(Reply::status(503));
    upstream.then(Reply::status(502));
    let resp = post(
        &server,
        "wvls",
        &format!("?kid={kid}"),
        Some(&token),
        "x/y",
        "c",
    )
    .await;
    passed_on(resp, "application/octet-stream", DEFAULT_LICENCE).await;
    let received = upstream.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.body == received[0].body));
    // Three gateway errors in a row: 502 after the two retries.
    upstream.received.lock().unwrap().clear();
    for _ in 0..3 {
        upstream.then(Reply::status(504));
    }
    let resp = post(
        &server,
        "wvls",
        &format!("?kid={kid}"),
        Some(&token),
        "x/y",
        "c",
    )
    .await;
    assert_eq!(problem(resp).await.0, 502);
    assert_eq!(upstream.received().len(), 3);
}

#[tokio::test]
async fn an_upstream_that_is_down_is_502_after_the_retries() {
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let server = server_with(&[("widevine", format!("http://{closed}/wv"))], None).await;
    let (kid, key, _) = key_of(&server, "movie-1").await;
    let token = acme_token(&["movie-1"]);
    let started = Instant::now();
    let resp = post(
        &server,
        "wvls",
        &format!("?kid={kid}"),
        Some(&token),
        "x/y",
        "c",
    )
    .await;
    let detail = bad_gateway(resp, &key).await;
    assert!(detail.contains("cannot connect (3 attempts)"), "{detail}");
    // Backoffs of 100 ms and 300 ms between the three attempts.
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_is_502() {
    let (upstream, base) = Upstream::start().await;
    let server = server_with(&[("fairplay", format!("{base}/fp"))], Some(1)).await;
    let (kid, key, _) = key_of(&server, "movie-1").await;
    let token = acme_token(&["movie-1"]);
    upstream.then(Reply {
        delay: Duration::from_secs(3),
        ..Reply::status(200)
    });
    let started = Instant::now();
    let resp = post(
        &server,
        "fpls",
        &format!("?kid={kid}"),
        Some(&token),
        "x/y",
        "spc",
    )
    .await;
    let detail = bad_gateway(resp, &key).await;
    assert!(detail.contains("no answer within 1 s"), "{detail}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(upstream.received().len(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn a_request_past_the_server_deadline_is_503() {
    // The upstream timeout (60 s) is longer than the server's request deadline (2 s): the
    // deadline answers, in the licence routes' problem+json, and the server stays up.
    let (upstream, base) = Upstream::start().await;
    let upstreams = vec![("fairplay".to_owned(), format!("{base}/fp"))];
    let server = TestServer::start_with(ACME_CONFIG, move |config: &mut Config| {
        config.server.request_timeout_seconds = 2;
        let licence = config
            .tenants
            .get_mut("acme")
            .unwrap()
            .licence
            .as_mut()
            .unwrap();
        licence.upstream.extend(
            upstreams
                .into_iter()
                .map(|(d, u)| (d, keyplex_server::config::Upstream::plain(&u))),
        );
        licence.upstream_timeout_seconds = Some(60);
    })
    .await;
    let (kid, _, _) = key_of(&server, "movie-1").await;
    let token = acme_token(&["movie-1"]);
    upstream.then(Reply {
        delay: Duration::from_secs(20),
        ..Reply::status(200)
    });
    let resp = post(
        &server,
        "fpls",
        &format!("?kid={kid}"),
        Some(&token),
        "x/y",
        "spc",
    )
    .await;
    let (status, detail) = crate::entitlement::problem(resp).await;
    assert_eq!(status, 503, "{detail}");
    assert!(detail.contains("not answered within 2 s"), "{detail}");
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn proxy_routes_answer_cors_preflights_with_soapaction() {
    let (server, _upstream) = proxied().await;
    let resp = server
        .client
        .request(
            reqwest::Method::OPTIONS,
            server.url("/acme/prls/contentlicenseservice/v1/licenses"),
        )
        .header("origin", "https://player.acme.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, soapaction",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let headers = resp.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://player.acme.example"
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("soapaction")
    );
}

/// A tenant-defined DRM system has a licence route of its own, `/{tenant}/licences/{name}`,
/// whose upstream (`upstream.<name>`) gets keyplex's JSON licence request.
#[tokio::test]
async fn a_defined_drm_system_has_its_own_licence_route() {
    let (upstream, base) = Upstream::start().await;
    let server = TestServer::start_with(ACME_CONFIG, move |config: &mut Config| {
        let tenant = config.tenants.get_mut("acme").unwrap();
        tenant.drm_systems.push(
            toml::from_str(
                r#"name = "irdeto"
                system_id = "80a6be7e-1448-4c37-9e70-d5aebe04c8d2"
                pssh_version = 1
                pssh_data = "{kid_base64}"
                pssh_data_encoding = "utf8""#,
            )
            .unwrap(),
        );
        tenant.licence.as_mut().unwrap().upstream.insert(
            "irdeto".into(),
            keyplex_server::config::Upstream::plain(&format!("{base}/irdeto")),
        );
    })
    .await;
    let (kid, key, iv) = key_of(&server, "movie-1").await;
    let token = policy_token(&["movie-1"], json!({"licence_duration": 60}));
    let url = |name: &str| server.url(&format!("/acme/licences/{name}?kid={kid}"));
    let resp = server
        .client
        .post(url("irdeto"))
        .bearer_auth(&token)
        .body(b"irdeto-challenge".to_vec())
        .send()
        .await
        .unwrap();
    passed_on(resp, "application/octet-stream", DEFAULT_LICENCE).await;
    let sent = irdeto_request(upstream.only(), "/irdeto", &kid, &key, &iv);
    assert_eq!(sent["payload"], b64(b"irdeto-challenge"));
    assert_eq!(sent["content_id"], "movie-1");
    assert_eq!(sent["user"], "user-1");
    assert_eq!(sent["policy"]["licence_duration_seconds"], 60);

    // A DRM the tenant does not define: 404 before any token is looked at.
    let resp = server
        .client
        .post(url("conax"))
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    let (status, detail) = problem(resp).await;
    assert_eq!(status, 404);
    assert!(detail.contains("conax"), "{detail}");
    assert_eq!(upstream.received().len(), 1);
}

/// An upstream named after neither a built-in DRM nor a defined system (in the file or through
/// the admin API) stops the start; a name that cannot be a DRM system's is refused with the file.
#[tokio::test]
async fn an_upstream_for_an_undefined_drm_is_refused() {
    let text = "[tenants.acme.licence]\njwt = { hs256_secret = \"a-long-portal-secret\" }\n\
                [tenants.acme.licence.upstream]\nconax = \"https://conax.example\"\n";
    let err = TestServer::try_start_in(text, tempfile::tempdir().unwrap(), |_| {})
        .await
        .err()
        .expect("the start fails");
    assert!(
        err.contains("conax") && err.contains("drm_systems"),
        "{err}"
    );
    assert!(err.contains("tenant acme"), "{err}");
    let err = Config::from_toml(
        std::path::Path::new("t.toml"),
        &text.replace("conax =", "\"Con ax\" ="),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("Con ax") && err.contains("DRM system name"),
        "{err}"
    );
}

fn irdeto_definition() -> Value {
    json!({
        "system_id": "80a6be7e-1448-4c37-9e70-d5aebe04c8d2",
        "pssh_version": 1,
        "pssh_data": "{kid_base64}",
        "pssh_data_encoding": "utf8",
    })
}

/// A system defined through the admin API (not in the file) is what the file's
/// `upstream.irdeto` names: the start merges the stored definitions before checking the
/// upstream names, and `/{tenant}/licences/irdeto` proxies. Removing the definition keeps the
/// tenant served (that route answers 404); a start without it is refused, naming both.
#[tokio::test]
async fn an_admin_defined_drm_system_has_its_licence_route() {
    let (upstream, base) = Upstream::start().await;
    let config = crate::admin::config();
    let server = TestServer::start_with(&config, |_| {}).await;
    let path = "/admin/v1/tenants/acme/drm-systems/irdeto";
    let resp = crate::admin::admin(
        &server,
        reqwest::Method::PUT,
        path,
        Some(irdeto_definition()),
    )
    .await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let data_dir = server.stop().await;

    // The operator adds the upstream to the file and restarts.
    let with_upstream = move |config: &mut Config| {
        let licence = config.tenants.get_mut("acme").unwrap().licence.as_mut();
        licence.unwrap().upstream.insert(
            "irdeto".into(),
            keyplex_server::config::Upstream::plain(&format!("{base}/irdeto")),
        );
    };
    let server = TestServer::start_in(&config, data_dir, with_upstream.clone()).await;
    let (kid, key, iv) = key_of(&server, "movie-1").await;
    let token = policy_token(&["movie-1"], json!({"licence_duration": 60}));
    let licence_url = server.url(&format!("/acme/licences/irdeto?kid={kid}"));
    let resp = server
        .client
        .post(&licence_url)
        .bearer_auth(&token)
        .body(b"irdeto-challenge".to_vec())
        .send()
        .await
        .unwrap();
    passed_on(resp, "application/octet-stream", DEFAULT_LICENCE).await;
    let sent = irdeto_request(upstream.only(), "/irdeto", &kid, &key, &iv);
    assert_eq!(sent["payload"], b64(b"irdeto-challenge"));
    assert_eq!(sent["content_id"], "movie-1");

    // Removed at run time: the rebuild keeps the tenant, the route answers 404 problem+json.
    let resp = crate::admin::admin(&server, reqwest::Method::DELETE, path, None).await;
    assert_eq!(resp.status(), 204);
    let resp = server
        .client
        .post(&licence_url)
        .bearer_auth(&token)
        .body(b"irdeto-challenge".to_vec())
        .send()
        .await
        .unwrap();
    let (status, detail) = problem(resp).await;
    assert_eq!(status, 404, "{detail}");
    assert!(
        detail.contains("irdeto") && !detail.contains("unknown tenant"),
        "{detail}"
    );
    assert_eq!(upstream.received().len(), 1, "nothing more went upstream");
    // The tenant's other routes go on.
    let (other, _, _) = key_of(&server, "movie-2").await;
    assert_ne!(other, kid);
    let resp = crate::admin::admin(
        &server,
        reqwest::Method::GET,
        "/admin/v1/tenants/acme",
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);

    // A start with the file's upstream.irdeto but no definition anywhere stops.
    let data_dir = server.stop().await;
    let err = TestServer::try_start_in(&config, data_dir, with_upstream)
        .await
        .err()
        .expect("the start fails");
    assert!(
        err.contains("tenant acme") && err.contains("\"irdeto\""),
        "{err}"
    );
}

/// A tenant created through the admin API may name a licence upstream in its settings for a
/// DRM it defines afterwards (definitions need the tenant first): the route answers 404 until
/// the definition exists, then proxies. A licence-upstream credential for a DRM the tenant
/// does not have is refused.
#[tokio::test]
async fn an_admin_created_tenant_proxies_its_admin_defined_drm() {
    let (upstream, base) = Upstream::start().await;
    let server = TestServer::start_with(&crate::admin::config(), |_| {}).await;
    let resp = crate::admin::admin(
        &server,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "hooli", "settings": {"licence": {"upstream": {
            "irdeto": format!("{base}/hooli-irdeto"),
        }}}})),
    )
    .await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    for credential in [
        json!({"type": "basic", "user": "packager", "password": "s3cret-hooli"}),
        json!({"type": "licence_jwt", "hs256_secret": "hooli-portal-licence-secret"}),
    ] {
        let resp = crate::admin::admin(
            &server,
            reqwest::Method::POST,
            "/admin/v1/tenants/hooli/credentials",
            Some(credential),
        )
        .await;
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }
    let resp = crate::admin::admin(
        &server,
        reqwest::Method::POST,
        "/admin/v1/tenants/hooli/credentials",
        Some(json!({"type": "licence_upstream", "drm": "conax", "url": format!("{base}/conax")})),
    )
    .await;
    let (status, detail) = problem(resp).await;
    assert_eq!(status, 400, "{detail}");
    assert!(detail.contains("\"conax\""), "{detail}");

    let kid = KeyId::new_random().to_string();
    let doc = ok_document(
        server
            .post_cpix("hooli", vod_request("show-1", &kid, "cenc", &[WV]))
            .await,
    )
    .await;
    let (kid, key, iv) = plain_keys(&doc)[0];
    let token = hs256(
        "hooli-portal-licence-secret",
        &json!({"sub": "user-9", "contents": ["show-1"], "exp": now() + 3600}),
    );
    let licence = || {
        server
            .client
            .post(server.url(&format!("/hooli/licences/irdeto?kid={kid}")))
            .bearer_auth(&token)
            .body(b"hooli-challenge".to_vec())
            .send()
    };
    let (status, detail) = problem(licence().await.unwrap()).await;
    assert_eq!(status, 404, "not defined yet: {detail}");
    assert!(upstream.received().is_empty());

    let resp = crate::admin::admin(
        &server,
        reqwest::Method::PUT,
        "/admin/v1/tenants/hooli/drm-systems/irdeto",
        Some(irdeto_definition()),
    )
    .await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    passed_on(
        licence().await.unwrap(),
        "application/octet-stream",
        DEFAULT_LICENCE,
    )
    .await;
    let sent = irdeto_request(upstream.only(), "/hooli-irdeto", &kid, &key, &iv);
    assert_eq!(sent["user"], "user-9");
}

/// The keyplex-JSON licence request the upstream of the defined Irdeto system received at
/// `path`: its DRM, system id and the one key it carries.
fn irdeto_request(
    got: Received,
    path: &str,
    kid: &impl std::fmt::Display,
    key: &[u8],
    iv: &[u8],
) -> Value {
    assert_eq!(got.path, path);
    let sent: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(sent["drm"], "irdeto");
    assert_eq!(sent["system_id"], "80a6be7e-1448-4c37-9e70-d5aebe04c8d2");
    assert_eq!(
        sent["keys"],
        json!([{"kid": kid.to_string(), "key": b64(key), "iv": b64(iv)}])
    );
    sent
}

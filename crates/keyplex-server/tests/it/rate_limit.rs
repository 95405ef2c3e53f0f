//! `rate_limit = { requests_per_second, burst }`: each credential of the tenant gets its burst,
//! then 429 with `Retry-After` in the protocol's own error format, until it has waited.

use keyplex_types::KeyId;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::cpix::{WV, vod_request};
use crate::entitlement::{hs256, now};

const SECRET: &str = "rate-limited-portal-licence-secret";

const CONFIG: &str = r#"
[tenants.acme]
basic = [
    { user = "packager", password = "s3cret-acme" },
    { user = "second", password = "s3cret-second" },
]
rate_limit = { requests_per_second = 1, burst = 3 }

[tenants.acme.licence]
jwt = { hs256_secret = "rate-limited-portal-licence-secret" }

[tenants.free]
basic = [{ user = "packager", password = "s3cret-free" }]
"#;

async fn nagra(server: &TestServer, tenant: &str, user: &str) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/{tenant}/cks-ws-keyAndSignalization/key")))
        .basic_auth(user, Some(format!("s3cret-{}", if user == "second" { "second" } else { tenant })))
        .json(&json!({"drmContent": {"drmContentId": "movie-1", "profile": {"distributionMode": "VOD"}}}))
        .send()
        .await
        .unwrap()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn each_credential_gets_its_burst_then_429_with_retry_after() {
    let server = TestServer::start_with(CONFIG, |_| {}).await;
    for _ in 0..3 {
        assert_eq!(nagra(&server, "acme", "packager").await.status(), 200);
    }
    // NAGRA-style JSON answers in its own shape.
    let refused = nagra(&server, "acme", "packager").await;
    assert_eq!(refused.status(), 429);
    let wait = retry_after(&refused);
    assert!((1..=2).contains(&wait), "{wait}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["status"], "TOO_MANY_REQUESTS");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("retry after")
    );

    // CPIX answers in plain text, same limit (it is the credential's, across interfaces).
    let cpix = server
        .post_cpix(
            "acme",
            vod_request("m", &KeyId::new_random().to_string(), "cenc", &[WV]),
        )
        .await;
    assert_eq!(cpix.status(), 429);
    assert!(retry_after(&cpix) >= 1);
    assert!(cpix.text().await.unwrap().contains("rate limit"));

    // Another credential of the tenant, and another tenant, have their own allowance; wrong
    // credentials are still 401 (authentication comes first).
    assert_eq!(nagra(&server, "acme", "second").await.status(), 200);
    assert_eq!(nagra(&server, "free", "packager").await.status(), 200);
    let wrong = server
        .client
        .post(server.url("/acme/cks-ws-keyAndSignalization/key"))
        .basic_auth("packager", Some("wrong"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // Waiting as told is enough.
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    assert_eq!(nagra(&server, "acme", "packager").await.status(), 200);
}

#[tokio::test]
async fn licence_requests_are_limited_per_entitled_user() {
    let server = TestServer::start_with(CONFIG, |_| {}).await;
    let token = |sub: &str| {
        hs256(
            SECRET,
            &json!({"sub": sub, "contents": ["movie-1"], "exp": now() + 600}),
        )
    };
    let licence = |sub: &'static str| {
        let request = server
            .client
            .post(server.url("/acme/clearkey/v1/licenses"))
            .bearer_auth(token(sub))
            .json(&json!({"kids": ["AAAAAAAAAAAAAAAAAAAAAA"], "type": "temporary"}));
        async move { request.send().await.unwrap() }
    };
    for _ in 0..3 {
        // Entitled user, unknown key: refused, but admitted by the limiter.
        assert_ne!(licence("viewer-1").await.status(), 429);
    }
    let refused = licence("viewer-1").await;
    assert_eq!(refused.status(), 429);
    assert!(retry_after(&refused) >= 1);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    assert_ne!(licence("viewer-2").await.status(), 429);
}

#[tokio::test]
async fn zero_limits_are_refused_at_start() {
    let err = keyplex_server::config::Config::from_toml(
        std::path::Path::new("t.toml"),
        "[tenants.acme]\nbasic = [{ user = \"p\", password = \"x\" }]\nrate_limit = { requests_per_second = 0, burst = 1 }\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("rate_limit"), "{err}");
}

/// `auth_failure_limit`: failed authentications of one client address are bounded per
/// tenant, and past the limit answered 429 before keyplex tries the credential against every
/// other tenant; the tenant's own valid credentials keep working; /metrics counts both.
#[tokio::test]
async fn failed_authentications_are_limited_per_client_address() {
    let config = r#"
[tenants.guarded]
basic = [{ user = "packager", password = "s3cret-guarded" }]
get_token = "get-token-of-guarded-0123456789"
auth_failure_limit = { per_minute = 3 }

[tenants.guarded.licence]
jwt = { hs256_secret = "guarded-portal-licence-secret-0123" }

[tenants.open]
basic = [{ user = "packager", password = "s3cret-open" }]
"#;
    let server = TestServer::start_with(config, |_| {}).await;
    let wrong = || {
        server
            .client
            .post(server.url("/guarded/cks-ws-keyAndSignalization/key"))
            .basic_auth("packager", Some("wrong-password"))
            .json(&json!({"drmContent": {"drmContentId": "movie-1", "profile": {"distributionMode": "VOD"}}}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(wrong().await.unwrap().status(), 401);
    }
    let limited = wrong().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(retry_after(&limited) >= 1);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["status"], "TOO_MANY_REQUESTS", "{body}");
    // Another tenant's credentials are limited the same way (no 403 scan any more), on
    // every kind of credential: a GET token, an entitlement token.
    let other = server
        .client
        .post(server.url("/guarded/cks-ws-keyAndSignalization/key"))
        .basic_auth("packager", Some("s3cret-open"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 429);
    let token = server
        .client
        .get(server.url("/guarded/cpix/dash/movie-1"))
        .bearer_auth("not-the-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 429);
    let licence = server
        .client
        .post(server.url("/guarded/clearkey/v1/licenses"))
        .bearer_auth(hs256(
            "another-secret-of-32-characters!!",
            &json!({"sub": "u", "exp": now() + 60}),
        ))
        .json(&json!({"kids": ["AAAAAAAAAAAAAAAAAAAAAA"], "type": "temporary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(licence.status(), 429);
    // The right credentials still work, and another tenant is not affected.
    assert_eq!(nagra(&server, "guarded", "packager").await.status(), 200);
    assert_eq!(wrong_on(&server, "open").await, 401);
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"keyplex_auth_failures_total{tenant="guarded",outcome="refused"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"keyplex_auth_failures_total{tenant="guarded",outcome="limited"} 4"#),
        "{metrics}"
    );
}

async fn wrong_on(server: &TestServer, tenant: &str) -> u16 {
    server
        .client
        .post(server.url(&format!("/{tenant}/cks-ws-keyAndSignalization/key")))
        .basic_auth("packager", Some("wrong-password"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

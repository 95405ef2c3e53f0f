//! Packager authentication on the CPIX route: Basic, JWT (HS256/RS256/ES256) in
//! `nv-authorizations` or `Authorization: Bearer`, 401 vs 403.

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::common::{TestServer, fixture};
use crate::cpix::{WV, vod_request};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn token(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(secret: &str, claims: &serde_json::Value) -> String {
    token(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        claims,
    )
}

async fn post(
    server: &TestServer,
    tenant: &str,
    auth: Option<(&str, String)>,
) -> reqwest::Response {
    let mut req = server
        .client
        .post(server.url(&format!("/{tenant}/cpix")))
        .body(vod_request(
            "auth-1",
            "aaaaaaaa-0000-4000-8000-000000000001",
            "cenc",
            &[WV],
        ));
    if let Some((name, value)) = auth {
        req = req.header(name, value);
    }
    req.send().await.unwrap()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401() {
    let server = TestServer::start().await;
    let resp = post(&server, "acme", None).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(
        post(
            &server,
            "acme",
            Some(("authorization", basic("packager", "wrong")))
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        post(
            &server,
            "acme",
            Some(("authorization", basic("nobody", "s3cret-acme")))
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        post(
            &server,
            "acme",
            Some(("authorization", "Basic !!notbase64".into()))
        )
        .await
        .status(),
        401
    );
    let forged = hs(
        "not-the-secret-of-any-tenant",
        &serde_json::json!({"sub": "x", "exp": now() + 600}),
    );
    assert_eq!(
        post(&server, "acme", Some(("nv-authorizations", forged)))
            .await
            .status(),
        401
    );
    assert_eq!(
        post(
            &server,
            "acme",
            Some(("authorization", "Bearer garbage".into()))
        )
        .await
        .status(),
        401
    );
}

#[tokio::test]
async fn another_tenants_credentials_are_403() {
    let server = TestServer::start().await;
    let resp = post(
        &server,
        "acme",
        Some(("authorization", basic("packager", "s3cret-globex"))),
    )
    .await;
    assert_eq!(resp.status(), 403);
    let globex_token = hs(
        "another-long-secret-for-globex",
        &serde_json::json!({"sub": "enc", "exp": now() + 600}),
    );
    assert_eq!(
        post(
            &server,
            "acme",
            Some(("nv-authorizations", globex_token.clone()))
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        post(&server, "globex", Some(("nv-authorizations", globex_token)))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn unknown_tenant_is_404() {
    let server = TestServer::start().await;
    assert_eq!(
        post(
            &server,
            "nosuch",
            Some(("authorization", basic("packager", "s3cret-acme")))
        )
        .await
        .status(),
        404
    );
}

#[tokio::test]
async fn jwt_hs256_in_either_header() {
    let server = TestServer::start().await;
    let t = hs(
        "a-long-shared-secret-for-acme",
        &serde_json::json!({"sub": "encoder-1", "exp": now() + 600}),
    );
    assert_eq!(
        post(&server, "acme", Some(("nv-authorizations", t.clone())))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(
            &server,
            "acme",
            Some(("authorization", format!("Bearer {t}")))
        )
        .await
        .status(),
        200
    );
    // No exp at all is accepted (long-lived packager tokens); nbf and exp are checked when present.
    let no_exp = hs(
        "a-long-shared-secret-for-acme",
        &serde_json::json!({"sub": "encoder-1"}),
    );
    assert_eq!(
        post(&server, "acme", Some(("nv-authorizations", no_exp)))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_401() {
    let server = TestServer::start().await;
    let expired = hs(
        "a-long-shared-secret-for-acme",
        &serde_json::json!({"sub": "e", "exp": now() - 3600}),
    );
    let resp = post(&server, "acme", Some(("nv-authorizations", expired))).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("expired"));
    let early = hs(
        "a-long-shared-secret-for-acme",
        &serde_json::json!({"sub": "e", "nbf": now() + 3600, "exp": now() + 7200}),
    );
    let resp = post(&server, "acme", Some(("nv-authorizations", early))).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("not valid yet"));
}

#[tokio::test]
async fn jwt_rs256_and_es256_with_configured_public_keys() {
    let server = TestServer::start().await;
    let claims = serde_json::json!({"sub": "encoder-2", "exp": now() + 600});
    let rs = token(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(fixture("rs256-private.pem").as_bytes()).unwrap(),
        &claims,
    );
    let es = token(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(fixture("es256-private.pem").as_bytes()).unwrap(),
        &claims,
    );
    assert_eq!(
        post(
            &server,
            "acme",
            Some(("authorization", format!("Bearer {rs}")))
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        post(&server, "acme", Some(("nv-authorizations", es)))
            .await
            .status(),
        200
    );
    // globex has no RS256 key: the same token is not accepted there, nor recognised as acme's → 403.
    assert_eq!(
        post(
            &server,
            "globex",
            Some(("authorization", format!("Bearer {rs}")))
        )
        .await
        .status(),
        403
    );
}

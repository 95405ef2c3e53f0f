//! Entitlement tokens on the licence routes: every way a token fails (401/403/404), products,
//! single use, `?token=`. The routes themselves are in `clearkey.rs` and `hls_keys.rs`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyplex_types::KeyId;
use serde_json::{Value, json};

use crate::common::{ACME_CONFIG, TestServer, fixture};
use crate::cpix::{WV, ok_document, plain_keys, vod_request};

pub const ACME_LICENCE_SECRET: &str = "acme-portal-licence-secret";
pub const GLOBEX_LICENCE_SECRET: &str = "globex-portal-licence-secret";
/// acme's packager JWT secret: a genuine acme token, but not an entitlement.
const ACME_PACKAGER_SECRET: &str = "a-long-shared-secret-for-acme";

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An acme entitlement for `contents`, valid for an hour.
pub fn acme_token(contents: &[&str]) -> String {
    hs256(ACME_LICENCE_SECRET, &claims(contents))
}

pub fn claims(contents: &[&str]) -> Value {
    json!({"sub": "user-1", "contents": contents, "exp": now() + 3600})
}

/// Creates a key for `content_id` through the CPIX API (acme packager) and returns it.
pub async fn cpix_key(server: &TestServer, tenant: &str, content_id: &str) -> (KeyId, [u8; 16]) {
    cpix_key_with_kid(server, tenant, content_id, &KeyId::new_random().to_string()).await
}

pub async fn cpix_key_with_kid(
    server: &TestServer,
    tenant: &str,
    content_id: &str,
    kid: &str,
) -> (KeyId, [u8; 16]) {
    let doc = ok_document(
        server
            .post_cpix(tenant, vod_request(content_id, kid, "cenc", &[WV]))
            .await,
    )
    .await;
    let (kid, key, _) = plain_keys(&doc)[0];
    (kid, key)
}

pub async fn get_hls_key(
    server: &TestServer,
    tenant: &str,
    kid: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .client
        .get(server.url(&format!("/{tenant}/hls/v1/keys/{kid}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

pub async fn post_clearkey(
    server: &TestServer,
    tenant: &str,
    body: &Value,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .client
        .post(server.url(&format!("/{tenant}/clearkey/v1/licenses")))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The ClearKey request for `kids` (base64url, no padding, as a CDM writes them).
pub fn clearkey_request(kids: &[KeyId], session_type: &str) -> Value {
    use base64::Engine as _;
    let kids: Vec<String> = kids
        .iter()
        .map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.as_bytes()))
        .collect();
    json!({"kids": kids, "type": session_type})
}

/// Status and problem+json `detail` of an error answer.
pub async fn problem(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "status {status}"
    );
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Both licence routes answer `expected` (status, detail fragment) for `token`, for the key of
/// `movie-1` and for a key id nothing has: the outcome never depends on the key.
async fn both_routes_refuse(
    server: &TestServer,
    kid: KeyId,
    token: Option<&str>,
    expected: (u16, &str),
) {
    let unknown = KeyId::new_random();
    for kid in [kid, unknown] {
        let (status, detail) =
            problem(get_hls_key(server, "acme", &kid.to_string(), token).await).await;
        assert_eq!(status, expected.0, "hls {kid}: {detail}");
        assert!(detail.contains(expected.1), "hls {kid}: {detail}");
        let (status, detail) = problem(
            post_clearkey(
                server,
                "acme",
                &clearkey_request(&[kid], "temporary"),
                token,
            )
            .await,
        )
        .await;
        assert_eq!(status, expected.0, "clearkey {kid}: {detail}");
        assert!(detail.contains(expected.1), "clearkey {kid}: {detail}");
    }
}

#[tokio::test]
async fn missing_or_invalid_tokens_are_401_whatever_the_key() {
    let server = TestServer::start().await;
    let (kid, _) = cpix_key(&server, "acme", "movie-1").await;
    // The same key, delivered with a good token: the failures below are the token's alone.
    assert_eq!(
        get_hls_key(
            &server,
            "acme",
            &kid.to_string(),
            Some(&acme_token(&["movie-1"]))
        )
        .await
        .status(),
        200
    );

    both_routes_refuse(&server, kid, None, (401, "entitlement token required")).await;
    both_routes_refuse(
        &server,
        kid,
        Some("not-a-jwt"),
        (401, "invalid entitlement token"),
    )
    .await;
    let forged = hs256("some-other-secret-entirely", &claims(&["movie-1"]));
    both_routes_refuse(
        &server,
        kid,
        Some(&forged),
        (401, "invalid entitlement token"),
    )
    .await;
    // A genuine acme packager token is not an entitlement.
    let packager = hs256(ACME_PACKAGER_SECRET, &claims(&["movie-1"]));
    both_routes_refuse(
        &server,
        kid,
        Some(&packager),
        (401, "invalid entitlement token"),
    )
    .await;

    let expired = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() - 3600}),
    );
    both_routes_refuse(&server, kid, Some(&expired), (401, "expired")).await;
    let not_yet = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() + 7200, "nbf": now() + 3600}),
    );
    both_routes_refuse(&server, kid, Some(&not_yet), (401, "nbf")).await;
    // Entitlements must expire and name a user.
    let no_exp = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "contents": ["movie-1"]}),
    );
    both_routes_refuse(&server, kid, Some(&no_exp), (401, "\"exp\"")).await;
    let no_sub = hs256(
        ACME_LICENCE_SECRET,
        &json!({"contents": ["movie-1"], "exp": now() + 60}),
    );
    both_routes_refuse(&server, kid, Some(&no_sub), (401, "\"sub\"")).await;
    let bad_policy = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() + 60, "policy": {"hdpc": "HDCP_V1"}}),
    );
    both_routes_refuse(&server, kid, Some(&bad_policy), (401, "claims are invalid")).await;

    // HTTP Basic is not how players authenticate.
    let resp = server
        .client
        .get(server.url(&format!("/acme/hls/v1/keys/{kid}")))
        .basic_auth("packager", Some("s3cret-acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 401);
}

#[tokio::test]
async fn another_tenants_token_is_403() {
    let server = TestServer::start().await;
    let (kid, _) = cpix_key(&server, "acme", "movie-1").await;
    let globex = hs256(GLOBEX_LICENCE_SECRET, &claims(&["movie-1"]));
    both_routes_refuse(
        &server,
        kid,
        Some(&globex),
        (403, "not valid for tenant acme"),
    )
    .await;
    // Even expired, it is recognisably globex's.
    let expired = hs256(
        GLOBEX_LICENCE_SECRET,
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() - 3600}),
    );
    both_routes_refuse(
        &server,
        kid,
        Some(&expired),
        (403, "not valid for tenant acme"),
    )
    .await;
}

#[tokio::test]
async fn a_token_that_does_not_cover_the_content_is_403_and_unknown_kids_look_the_same() {
    let server = TestServer::start().await;
    let (kid, _) = cpix_key(&server, "acme", "movie-1").await;
    let other = acme_token(&["movie-2"]);
    both_routes_refuse(&server, kid, Some(&other), (403, "not entitled")).await;
    let nothing = hs256(ACME_LICENCE_SECRET, &json!({"sub": "u", "exp": now() + 60}));
    both_routes_refuse(&server, kid, Some(&nothing), (403, "not entitled")).await;
    // Covering movie-1 opens movie-1's key and nothing else: an unknown kid is 403, not 404.
    let (status, _) = problem(
        get_hls_key(
            &server,
            "acme",
            &KeyId::new_random().to_string(),
            Some(&acme_token(&["movie-1"])),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    // globex's key for the same content id is globex's, not acme's.
    let (globex_kid, _) = cpix_key(&server, "globex", "movie-1").await;
    let (status, _) = problem(
        get_hls_key(
            &server,
            "acme",
            &globex_kid.to_string(),
            Some(&acme_token(&["movie-1"])),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn products_map_to_contents_through_the_config() {
    let server = TestServer::start().await;
    let (gold_2, key) = cpix_key(&server, "acme", "movie-gold-2").await;
    let (other, _) = cpix_key(&server, "acme", "movie-silver").await;
    let gold = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "products": ["gold"], "exp": now() + 60}),
    );
    let resp = get_hls_key(&server, "acme", &gold_2.to_string(), Some(&gold)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), key);
    let (status, _) =
        problem(get_hls_key(&server, "acme", &other.to_string(), Some(&gold)).await).await;
    assert_eq!(status, 403, "gold does not include movie-silver");
    // A product the tenant does not configure covers nothing.
    let platinum = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "products": ["platinum"], "exp": now() + 60}),
    );
    let (status, _) =
        problem(get_hls_key(&server, "acme", &gold_2.to_string(), Some(&platinum)).await).await;
    assert_eq!(status, 403);
    // contents and products add up.
    let both = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "products": ["gold"], "contents": ["movie-silver"], "exp": now() + 60}),
    );
    for kid in [gold_2, other] {
        let resp = get_hls_key(&server, "acme", &kid.to_string(), Some(&both)).await;
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn es256_tokens_from_the_portal_verify() {
    let server = TestServer::start().await;
    let (kid, key) = cpix_key(&server, "acme", "movie-1").await;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(&["movie-1"]),
        &EncodingKey::from_ec_pem(fixture("es256-private.pem").as_bytes()).unwrap(),
    )
    .unwrap();
    let resp = get_hls_key(&server, "acme", &kid.to_string(), Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), key);
}

#[tokio::test]
async fn token_in_the_query_string_for_players_that_cannot_set_headers() {
    let server = TestServer::start().await;
    let (kid, key) = cpix_key(&server, "acme", "movie-1").await;
    let token = acme_token(&["movie-1"]);
    let url = server.url(&format!("/acme/hls/v1/keys/{kid}"));
    let resp = server
        .client
        .get(&url)
        .query(&[("token", token.as_str()), ("cachebust", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), key);
    // Header and query together must be the same token.
    let resp = server
        .client
        .get(&url)
        .query(&[("token", acme_token(&["movie-2"]).as_str())])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 400);
    let resp = server
        .client
        .get(&url)
        .query(&[("token", token.as_str())])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// acme's config plus a tenant that accepts single-use tokens only.
const SINGLE_USE_CONFIG: &str = r#"
[tenants.umbrella]
basic = [{ user = "packager", password = "s3cret-umbrella" }]

[tenants.umbrella.licence]
jwt = { hs256_secret = "umbrella-portal-licence-secret" }
replay_protection = true
"#;

#[tokio::test]
async fn replay_protection_makes_tokens_single_use() {
    let server = TestServer::start_with(&format!("{ACME_CONFIG}{SINGLE_USE_CONFIG}"), |_| {}).await;
    let (kid, key) = cpix_key(&server, "umbrella", "movie-1").await;
    let kid = kid.to_string();
    let with_jti = |jti: &str| {
        hs256(
            "umbrella-portal-licence-secret",
            &json!({"sub": "u", "contents": ["movie-1"], "exp": now() + 60, "jti": jti}),
        )
    };
    let token = with_jti("play-1");
    let resp = get_hls_key(&server, "umbrella", &kid, Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), key);
    let (status, detail) =
        problem(get_hls_key(&server, "umbrella", &kid, Some(&token)).await).await;
    assert_eq!(
        (status, detail.contains("already used")),
        (401, true),
        "{detail}"
    );
    // The replay is refused on the other route too: the token is spent, not the route.
    let (status, _) = problem(
        post_clearkey(
            &server,
            "umbrella",
            &clearkey_request(&[kid.parse().unwrap()], "temporary"),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);
    // A fresh jti plays; a token without one cannot be single use.
    assert_eq!(
        get_hls_key(&server, "umbrella", &kid, Some(&with_jti("play-2")))
            .await
            .status(),
        200
    );
    let no_jti = hs256(
        "umbrella-portal-licence-secret",
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() + 60}),
    );
    let (status, detail) =
        problem(get_hls_key(&server, "umbrella", &kid, Some(&no_jti)).await).await;
    assert_eq!((status, detail.contains("jti")), (401, true), "{detail}");

    // Without replay protection (acme) a token with a jti is reusable until it expires.
    let (acme_kid, _) = cpix_key(&server, "acme", "movie-1").await;
    let reusable = hs256(
        ACME_LICENCE_SECRET,
        &json!({"sub": "u", "contents": ["movie-1"], "exp": now() + 60, "jti": "play-1"}),
    );
    for _ in 0..2 {
        let resp = get_hls_key(&server, "acme", &acme_kid.to_string(), Some(&reusable)).await;
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn tenants_without_licence_keys_and_unknown_tenants_are_404() {
    let server = TestServer::start().await;
    let (kid, _) = cpix_key(&server, "initech", "movie-1").await;
    let token = acme_token(&["movie-1"]);
    let (status, detail) =
        problem(get_hls_key(&server, "initech", &kid.to_string(), Some(&token)).await).await;
    assert_eq!(
        (status, detail.contains("delivers no licences")),
        (404, true),
        "{detail}"
    );
    let (status, _) = problem(
        post_clearkey(
            &server,
            "initech",
            &clearkey_request(&[kid], "temporary"),
            Some(&token),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) =
        problem(get_hls_key(&server, "nosuch", &kid.to_string(), Some(&token)).await).await;
    assert_eq!(status, 404);
}

//! The admin API and what it makes observable: tenants and credentials changed without a
//! restart (and surviving one), the audit trail, `/metrics`, contents listings, export and
//! import into a fresh data directory, master key rotation.

use base64::Engine as _;
use keyplex_types::KeyId;
use serde_json::{Value, json};

use crate::common::{ACME_CONFIG, TestServer, fixture};
use crate::cpix::{WV, ok_document, plain_keys, vod_request};
use crate::entitlement::{acme_token, clearkey_request, cpix_key, post_clearkey, problem};

pub const ADMIN_TOKEN: &str = "admin-token-for-the-integration-tests";

pub fn config() -> String {
    format!("[admin]\ntoken = \"{ADMIN_TOKEN}\"\n{ACME_CONFIG}")
}

async fn start() -> TestServer {
    TestServer::start_with(&config(), |_| {}).await
}

pub async fn admin(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = server
        .client
        .request(method, server.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn admin_json(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let resp = admin(server, method, path, body).await;
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{path}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// Adds a credential to `tenant` through the admin API (201) and returns the answer.
async fn add_credential(server: &TestServer, tenant: &str, credential: Value) -> Value {
    admin_json(
        server,
        reqwest::Method::POST,
        &format!("/admin/v1/tenants/{tenant}/credentials"),
        Some(credential),
        201,
    )
    .await
}

async fn get(server: &TestServer, path: &str) -> Value {
    admin_json(server, reqwest::Method::GET, path, None, 200).await
}

/// A CPIX request as `user:password` of `tenant` for a new key of `content_id`.
async fn cpix_as(
    server: &TestServer,
    tenant: &str,
    user: &str,
    password: &str,
    content_id: &str,
) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/{tenant}/cpix")))
        .basic_auth(user, Some(password))
        .header("content-type", "application/xml")
        .body(vod_request(
            content_id,
            &KeyId::new_random().to_string(),
            "cenc",
            &[WV],
        ))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_admin_api_wants_the_admin_token() {
    let server = start().await;
    let resp = server
        .client
        .get(server.url("/admin/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"keyplex-admin\""
    );
    assert_eq!(problem(resp).await.0, 401);
    let resp = server
        .client
        .get(server.url("/admin/v1/tenants"))
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 401);
    // A packager's credentials are not an admin's.
    let resp = server
        .client
        .get(server.url("/admin/v1/tenants"))
        .basic_auth("packager", Some("s3cret-acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 401);
    let tenants = get(&server, "/admin/v1/tenants").await;
    let ids: Vec<&str> = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "globex", "initech"]);
    let acme = &tenants["tenants"][0];
    assert_eq!(acme["source"], "config");
    let kinds: Vec<&str> = acme["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["basic", "jwt", "sigv4", "licence_jwt"]);
    // Listings never carry secrets.
    let text = tenants.to_string();
    for secret in [
        "s3cret-acme",
        "a-long-shared-secret-for-acme",
        "acme-sigv4-secret",
        "acme-portal-licence-secret",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[tokio::test]
async fn reserved_tenant_ids_are_refused() {
    let server = start().await;
    for id in [
        "players",
        "ui",
        "admin",
        "metrics",
        "healthz",
        "openapi.json",
        "-",
        ".well-known",
    ] {
        let answer = admin_json(
            &server,
            reqwest::Method::POST,
            "/admin/v1/tenants",
            Some(json!({ "id": id })),
            400,
        )
        .await;
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains("is reserved"), "{id}: {detail}");
    }
    let tenants = get(&server, "/admin/v1/tenants").await.to_string();
    assert!(!tenants.contains("\"metrics\""), "{tenants}");
    // A name that only starts like a reserved one is fine.
    admin_json(
        &server,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(json!({ "id": "admin-eu" })),
        201,
    )
    .await;
}

#[tokio::test]
async fn an_admin_jwt_is_accepted_too() {
    let toml = format!(
        "[admin]\njwt = {{ hs256_secret = \"admin-jwt-secret-for-tests\" }}\n{ACME_CONFIG}"
    );
    let server = TestServer::start_with(&toml, |_| {}).await;
    let token = crate::entitlement::hs256(
        "admin-jwt-secret-for-tests",
        &json!({"sub": "ops-1", "exp": crate::entitlement::now() + 60}),
    );
    let resp = server
        .client
        .get(server.url("/admin/v1/tenants"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let no_exp = crate::entitlement::hs256("admin-jwt-secret-for-tests", &json!({"sub": "ops-1"}));
    let resp = server
        .client
        .get(server.url("/admin/v1/tenants"))
        .bearer_auth(&no_exp)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.0, 401);
}

#[tokio::test]
async fn tenants_and_credentials_change_without_restart_and_survive_one() {
    let server = start().await;
    use reqwest::Method;
    // Bad settings are refused, naming the problem; nothing is created.
    let bad = admin(
        &server,
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "hooli", "settings": {"kid_overide": true}})),
    )
    .await;
    let (status, detail) = problem(bad).await;
    assert_eq!(status, 400);
    assert!(detail.contains("kid_overide"), "{detail}");
    let creds_in_settings = admin(
        &server,
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "hooli", "settings": {"basic": [{"user": "u", "password": "p"}]}})),
    )
    .await;
    assert_eq!(problem(creds_in_settings).await.0, 400);
    let exists = admin(
        &server,
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(problem(exists).await.0, 409);

    let created = admin_json(
        &server,
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "hooli", "settings": {"kid_override": true}})),
        201,
    )
    .await;
    assert_eq!(created["source"], "admin");
    assert_eq!(created["credentials"], json!([]));
    // No credential yet: nobody gets in.
    assert_eq!(
        cpix_as(&server, "hooli", "encoder", "whatever", "movie-1")
            .await
            .status(),
        401
    );

    let added = add_credential(
        &server,
        "hooli",
        json!({"type": "basic", "user": "encoder"}),
    )
    .await;
    let cred_id = added["id"].as_str().unwrap().to_owned();
    let password = added["secret"].as_str().unwrap().to_owned();
    assert_eq!(added["label"], "encoder");
    assert!(password.len() >= 32);
    let resp = cpix_as(&server, "hooli", "encoder", &password, "movie-1").await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // Another tenant's valid credentials: 403, as for file tenants.
    assert_eq!(
        cpix_as(&server, "acme", "encoder", &password, "movie-1")
            .await
            .status(),
        403
    );

    // A second password for the same user (rotation), then the first is revoked.
    let second = add_credential(
        &server,
        "hooli",
        json!({"type": "basic", "user": "encoder", "password": "the-new-encoder-password"}),
    )
    .await;
    assert!(
        second.get("secret").is_none(),
        "a supplied secret is not echoed"
    );
    let path = format!("/admin/v1/tenants/hooli/credentials/{cred_id}");
    admin_json(&server, Method::DELETE, &path, None, 204).await;
    // Refused at once: the very next request.
    assert_eq!(
        cpix_as(&server, "hooli", "encoder", &password, "movie-1")
            .await
            .status(),
        401
    );
    assert_eq!(
        cpix_as(
            &server,
            "hooli",
            "encoder",
            "the-new-encoder-password",
            "movie-1"
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        problem(admin(&server, Method::DELETE, &path, None).await)
            .await
            .0,
        404
    );
    // File credentials are the file's.
    let file_cred = admin(
        &server,
        Method::DELETE,
        "/admin/v1/tenants/acme/credentials/config:basic:0",
        None,
    )
    .await;
    assert_eq!(problem(file_cred).await.0, 409);

    // Credentials can be added to a file tenant too.
    add_credential(
        &server,
        "acme",
        json!({"type": "basic", "user": "second-packager", "password": "second-packager-password"}),
    )
    .await;
    assert_eq!(
        cpix_as(
            &server,
            "acme",
            "second-packager",
            "second-packager-password",
            "movie-2"
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        cpix_as(&server, "acme", "packager", "s3cret-acme", "movie-2")
            .await
            .status(),
        200
    );

    // Bad credentials are refused with the reason.
    for (body, needle) in [
        (json!({"type": "telepathy"}), "type must be one of"),
        (
            json!({"type": "jwt", "hs256_secret": "short"}),
            "16 characters",
        ),
        (
            json!({"type": "widevine_signer", "name": "w", "aes_key": "00", "aes_iv": "00"}),
            "aes_key",
        ),
        (
            json!({"type": "sigv4", "access_key_id": "AKIDACME", "secret_access_key": "x"}),
            "already has",
        ),
        (
            json!({"type": "basic", "user": "a:b", "password": "p"}),
            "without ':'",
        ),
    ] {
        let resp = admin(
            &server,
            Method::POST,
            "/admin/v1/tenants/acme/credentials",
            Some(body.clone()),
        )
        .await;
        let (status, detail) = problem(resp).await;
        assert!(status == 400 || status == 409, "{body}: {status}");
        assert!(detail.contains(needle), "{body}: {detail}");
    }

    // Disabling refuses packagers and players; enabling lets them back.
    let disabled = admin_json(
        &server,
        Method::PATCH,
        "/admin/v1/tenants/hooli",
        Some(json!({"disabled": true})),
        200,
    )
    .await;
    assert_eq!(disabled["disabled"], true);
    assert_eq!(
        cpix_as(
            &server,
            "hooli",
            "encoder",
            "the-new-encoder-password",
            "movie-1"
        )
        .await
        .status(),
        403
    );
    admin_json(
        &server,
        Method::PATCH,
        "/admin/v1/tenants/hooli",
        Some(json!({"disabled": false})),
        200,
    )
    .await;
    assert_eq!(
        cpix_as(
            &server,
            "hooli",
            "encoder",
            "the-new-encoder-password",
            "movie-1"
        )
        .await
        .status(),
        200
    );
    admin_json(
        &server,
        Method::PATCH,
        "/admin/v1/tenants/globex",
        Some(json!({"disabled": true})),
        200,
    )
    .await;

    // A restart keeps all of it.
    let data = server.stop().await;
    let server = TestServer::start_in(&config(), data, |_| {}).await;
    assert_eq!(
        cpix_as(
            &server,
            "hooli",
            "encoder",
            "the-new-encoder-password",
            "movie-1"
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        cpix_as(&server, "hooli", "encoder", &password, "movie-1")
            .await
            .status(),
        401
    );
    assert_eq!(
        cpix_as(
            &server,
            "acme",
            "second-packager",
            "second-packager-password",
            "movie-2"
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        server
            .post_cpix(
                "globex",
                vod_request("m", &KeyId::new_random().to_string(), "cenc", &[WV])
            )
            .await
            .status(),
        403
    );
    let hooli = get(&server, "/admin/v1/tenants/hooli").await;
    assert_eq!(hooli["credentials"].as_array().unwrap().len(), 1);
    assert_eq!(hooli["credentials"][0]["source"], "admin");
    // The credential secret is sealed at rest: not in the database in the clear.
    for bytes in &crate::common::stored_bytes(&server) {
        assert!(
            !bytes.windows(24).any(|w| w == b"the-new-encoder-password"),
            "secret in the clear"
        );
    }
}

#[tokio::test]
async fn licence_credentials_added_through_the_api_verify_entitlements() {
    let server = start().await;
    use reqwest::Method;
    admin_json(
        &server,
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "hooli", "settings": {"licence": {"cors_origins": ["*"]}}})),
        201,
    )
    .await;
    add_credential(
        &server,
        "hooli",
        json!({"type": "basic", "user": "p", "password": "hooli-packager-password"}),
    )
    .await;
    let licence_credential = add_credential(
        &server,
        "hooli",
        json!({"type": "licence_jwt", "hs256_secret": "hooli-portal-licence-secret"}),
    )
    .await;
    let doc = ok_document(
        server
            .client
            .post(server.url("/hooli/cpix"))
            .basic_auth("p", Some("hooli-packager-password"))
            .body(vod_request(
                "film",
                &KeyId::new_random().to_string(),
                "cenc",
                &[WV],
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (kid, key, _) = plain_keys(&doc)[0];
    let token = crate::entitlement::hs256(
        "hooli-portal-licence-secret",
        &crate::entitlement::claims(&["film"]),
    );
    let licence_request = clearkey_request(&[kid], "temporary");
    let resp = post_clearkey(&server, "hooli", &licence_request, Some(&token)).await;
    assert_eq!(resp.status(), 200);
    let licence: Value = resp.json().await.unwrap();
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(licence["keys"][0]["k"].as_str().unwrap())
        .unwrap();
    assert_eq!(k, key);

    // The portal rotates its key: once the old one is revoked it verifies nothing, not even
    // the token verified (and kept by the tenant's cache of verified tokens) a moment ago.
    add_credential(
        &server,
        "hooli",
        json!({"type": "licence_jwt", "hs256_secret": "hooli-portal-licence-secret-2"}),
    )
    .await;
    let path = format!(
        "/admin/v1/tenants/hooli/credentials/{}",
        licence_credential["id"].as_str().unwrap()
    );
    admin_json(&server, Method::DELETE, &path, None, 204).await;
    let resp = post_clearkey(&server, "hooli", &licence_request, Some(&token)).await;
    assert_eq!(resp.status(), 401);
}

/// Known traffic, then the audit trail, `/metrics` and the stats say exactly what happened.
#[tokio::test]
async fn audit_metrics_and_stats_count_known_traffic() {
    let server = start().await;
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    // Two CPIX requests creating keys, one re-request (stored), one refused (401).
    let kid = KeyId::new_random();
    for _ in 0..2 {
        let resp = server
            .post_cpix(
                "acme",
                vod_request("movie-audit", &kid.to_string(), "cenc", &[WV]),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
    let (other_kid, _) = cpix_key(&server, "acme", "movie-other").await;
    let refused = cpix_as(&server, "acme", "packager", "wrong", "movie-audit").await;
    assert_eq!(refused.status(), 401);
    // Licences: one granted, one denied (not entitled), one denied (no token).
    let token = acme_token(&["movie-audit"]);
    let granted = post_clearkey(
        &server,
        "acme",
        &clearkey_request(&[kid], "temporary"),
        Some(&token),
    )
    .await;
    assert_eq!(granted.status(), 200);
    let denied = post_clearkey(
        &server,
        "acme",
        &clearkey_request(&[other_kid], "temporary"),
        Some(&token),
    )
    .await;
    assert_eq!(denied.status(), 403);
    let anonymous = post_clearkey(
        &server,
        "acme",
        &clearkey_request(&[kid], "temporary"),
        None,
    )
    .await;
    assert_eq!(anonymous.status(), 401);

    let path = format!(
        "/admin/v1/audit?tenant=acme&content_id=movie-audit&since={}",
        before.unix_timestamp()
    );
    let events = get(&server, &path).await["events"]
        .as_array()
        .unwrap()
        .clone();
    let actions: Vec<&str> = events
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key.created",
            "key.delivered",
            "key.delivered",
            "licence.granted"
        ],
        "{events:#?}"
    );
    let created = events
        .iter()
        .find(|e| e["action"] == "key.created")
        .unwrap();
    assert_eq!(created["credential"], "basic:packager");
    assert_eq!(created["client"], "127.0.0.1");
    assert_eq!(created["interface"], "cpix");
    assert_eq!(created["key_ids"], json!([kid.to_string()]));
    let granted = events
        .iter()
        .find(|e| e["action"] == "licence.granted")
        .unwrap();
    assert_eq!(granted["credential"], "entitlement:sub=user-1");
    assert_eq!(granted["interface"], "clearkey");
    // The denial of another content's key is filed under the content whose key was asked.
    let denials = get(&server, "/admin/v1/audit?tenant=acme&action=licence.denied").await;
    let denials = denials["events"].as_array().unwrap();
    assert_eq!(denials.len(), 2, "{denials:#?}");
    assert!(denials.iter().any(|e| e["outcome"] == "unauthorized"
        && e["detail"].as_str().unwrap().contains("token required")));
    assert!(
        denials
            .iter()
            .any(|e| e["outcome"] == "forbidden" && e["content_id"] == "movie-other")
    );
    // Time range: nothing before the test.
    let old = get(
        &server,
        &format!(
            "/admin/v1/audit?tenant=acme&until={}",
            before.unix_timestamp()
        ),
    )
    .await;
    assert_eq!(old["events"], json!([]));
    // No key material anywhere in the trail.
    let all = get(&server, "/admin/v1/audit?limit=1000").await.to_string();
    let doc = ok_document(
        server
            .post_cpix(
                "acme",
                vod_request("movie-audit", &kid.to_string(), "cenc", &[WV]),
            )
            .await,
    )
    .await;
    let (_, key, _) = plain_keys(&doc)[0];
    assert!(!all.contains(&base64::engine::general_purpose::STANDARD.encode(key)));
    assert!(!all.contains(&hex::encode(key)));

    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text().await.unwrap();
    for line in [
        r#"keyplex_requests_total{tenant="acme",interface="cpix",status="200"} 4"#,
        r#"keyplex_requests_total{tenant="acme",interface="cpix",status="401"} 1"#,
        r#"keyplex_keys_total{tenant="acme",interface="cpix",source="created"} 2"#,
        r#"keyplex_keys_total{tenant="acme",interface="cpix",source="stored"} 2"#,
        r#"keyplex_licences_total{tenant="acme",drm="clearkey",outcome="granted",reason="ok"} 1"#,
        r#"keyplex_licences_total{tenant="acme",drm="clearkey",outcome="denied",reason="forbidden"} 1"#,
        r#"keyplex_licences_total{tenant="acme",drm="clearkey",outcome="denied",reason="unauthorized"} 1"#,
        r#"keyplex_active_sessions{tenant="acme"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        text.contains("keyplex_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains(r#"keyplex_store_duration_seconds_count{operation="ensure_keys"}"#),
        "{text}"
    );
    assert!(!text.contains("movie-audit"), "content ids are not labels");

    let stats = get(&server, "/admin/v1/stats?tenant=acme&window=300").await;
    assert_eq!(stats["totals"]["key_requests"]["cpix"], 5);
    assert_eq!(stats["totals"]["keys_created"]["cpix"], 2);
    assert_eq!(stats["totals"]["keys_served"]["cpix"], 2);
    assert_eq!(stats["totals"]["errors"]["cpix"], 1);
    assert_eq!(stats["totals"]["licences_granted"]["clearkey"], 1);
    assert_eq!(stats["totals"]["licences_denied"]["clearkey"], 2);
    assert_eq!(stats["latency_ms"]["cpix"]["count"], 5);
    assert_eq!(stats["buckets"].as_array().unwrap().len(), 30);
    assert_eq!(stats["active_sessions"], 0);
    let globex = get(&server, "/admin/v1/stats?tenant=globex&window=300").await;
    assert_eq!(globex["totals"]["key_requests"], json!({}));
    let bad = admin(
        &server,
        reqwest::Method::GET,
        "/admin/v1/stats?window=7",
        None,
    )
    .await;
    assert_eq!(problem(bad).await.0, 400);
}

#[tokio::test]
async fn contents_are_listed_with_key_metadata_only() {
    let server = start().await;
    let mut keys = Vec::new();
    for content in ["series-dash-1", "series-dash-2", "film-hls"] {
        keys.push(cpix_key(&server, "acme", content).await);
    }
    let dash = get(&server, "/admin/v1/tenants/acme/contents?search=DASH").await;
    let ids: Vec<&str> = dash["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["series-dash-1", "series-dash-2"]);
    let page = get(&server, "/admin/v1/tenants/acme/contents?limit=1").await;
    assert_eq!(page["contents"][0]["content_id"], "film-hls");
    assert_eq!(page["next"], "film-hls");
    let next = get(
        &server,
        "/admin/v1/tenants/acme/contents?limit=5&after=film-hls",
    )
    .await;
    assert_eq!(next["contents"].as_array().unwrap().len(), 2);
    assert_eq!(next["next"], Value::Null);
    let listed = get(
        &server,
        "/admin/v1/tenants/acme/contents/series-dash-1/keys",
    )
    .await;
    assert_eq!(listed["keys"][0]["kid"], keys[0].0.to_string());
    assert_eq!(listed["keys"][0]["origin"], "generated");
    let text = listed.to_string();
    assert!(!text.contains(&base64::engine::general_purpose::STANDARD.encode(keys[0].1)));
    assert!(!text.contains(&hex::encode(keys[0].1)));
    let missing = admin(
        &server,
        reqwest::Method::GET,
        "/admin/v1/tenants/acme/contents/nothing/keys",
        None,
    )
    .await;
    assert_eq!(problem(missing).await.0, 404);
    let unknown = admin(
        &server,
        reqwest::Method::GET,
        "/admin/v1/tenants/nobody/contents",
        None,
    )
    .await;
    assert_eq!(problem(unknown).await.0, 404);
}

#[tokio::test]
async fn export_and_import_into_a_fresh_data_dir_gives_identical_keys() {
    use reqwest::Method;
    let server = start().await;
    let mut originals = Vec::new();
    for content in ["movie-a", "movie-b", "movie-c"] {
        originals.push((content, cpix_key(&server, "acme", content).await));
    }
    // A keyplex-chosen (slotted) key too.
    let nagra = crate::nagra::body(
        "live-1",
        "DASH",
        None,
        Some(&["edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"]),
    );
    let (status, nagra_answer) = crate::nagra::post(&server, "acme", "key", &nagra).await;
    assert_eq!(status, 200, "{nagra_answer}");
    let bundle = admin_json(
        &server,
        Method::POST,
        "/admin/v1/tenants/acme/export",
        Some(json!({"public_key_pem": fixture("rs256-public.pem")})),
        200,
    )
    .await;
    assert_eq!(bundle["format"], "keyplex-key-bundle/1");
    assert_eq!(bundle["keys"], 4);
    let bundle_text = bundle.to_string();
    for (_, (_, key)) in &originals {
        assert!(
            !bundle_text.contains(&base64::engine::general_purpose::STANDARD.encode(key)),
            "keys are encrypted"
        );
    }
    let weak = admin(
        &server,
        Method::POST,
        "/admin/v1/tenants/acme/export",
        Some(json!({"public_key_pem": "nope"})),
    )
    .await;
    assert_eq!(problem(weak).await.0, 400);

    // A fresh installation (new data dir, new master key).
    let fresh = start().await;
    let wrong_key = admin(
        &fresh,
        Method::POST,
        "/admin/v1/tenants/acme/import",
        Some(json!({"bundle": bundle, "private_key_pem": fixture("es256-private.pem")})),
    )
    .await;
    assert_eq!(problem(wrong_key).await.0, 400);
    let imported = admin_json(
        &fresh,
        Method::POST,
        "/admin/v1/tenants/acme/import",
        Some(json!({"bundle": bundle, "private_key_pem": fixture("rs256-private.pem")})),
        200,
    )
    .await;
    assert_eq!(imported, json!({"imported": 4, "already_present": 0}));
    let again = admin_json(
        &fresh,
        Method::POST,
        "/admin/v1/tenants/acme/import",
        Some(json!({"bundle": bundle, "private_key_pem": fixture("rs256-private.pem")})),
        200,
    )
    .await;
    assert_eq!(again, json!({"imported": 0, "already_present": 4}));
    for (content, (kid, key)) in &originals {
        let doc = ok_document(
            fresh
                .post_cpix(
                    "acme",
                    vod_request(content, &kid.to_string(), "cenc", &[WV]),
                )
                .await,
        )
        .await;
        let (got_kid, got_key, _) = plain_keys(&doc)[0];
        assert_eq!((got_kid, got_key), (*kid, *key), "{content}");
    }
    // The slot binding came along: the NAGRA API answers the same key for the same slot.
    let (status, fresh_answer) = crate::nagra::post(&fresh, "acme", "key", &nagra).await;
    assert_eq!(status, 200, "{fresh_answer}");
    assert_eq!(fresh_answer["contentKey"], nagra_answer["contentKey"]);
    // Importing into a tenant that holds another key under one of the kids: 409, nothing written.
    let clash = start().await;
    let (kid_a, _) = (originals[0].1.0, ());
    let _ = ok_document(
        clash
            .post_cpix(
                "acme",
                vod_request("movie-a", &kid_a.to_string(), "cenc", &[WV]),
            )
            .await,
    )
    .await;
    let conflict = admin(
        &clash,
        Method::POST,
        "/admin/v1/tenants/acme/import",
        Some(json!({"bundle": bundle, "private_key_pem": fixture("rs256-private.pem")})),
    )
    .await;
    assert_eq!(problem(conflict).await.0, 409);
    let contents = get(&clash, "/admin/v1/tenants/acme/contents").await;
    assert_eq!(
        contents["contents"].as_array().unwrap().len(),
        1,
        "nothing of the bundle was written"
    );
}

#[tokio::test]
async fn rotating_the_master_key_keeps_every_key() {
    use reqwest::Method;
    let server = start().await;
    let mut originals = Vec::new();
    for i in 0..20 {
        let content = format!("movie-{i}");
        originals.push((content.clone(), cpix_key(&server, "acme", &content).await));
    }
    add_credential(
        &server,
        "acme",
        json!({"type": "basic", "user": "rotated", "password": "survives-the-rotation"}),
    )
    .await;
    let key_file = server.data_dir.path().join("master.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    let report = admin_json(
        &server,
        Method::POST,
        "/admin/v1/master-key/rotate",
        None,
        200,
    )
    .await;
    assert_ne!(report["old_fingerprint"], report["new_fingerprint"]);
    assert!(report["rewrapped"].as_u64().unwrap() >= 21);
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(old_key, new_key);
    let retired = server.data_dir.path().join(format!(
        "master.key.retired-{}",
        report["old_fingerprint"].as_str().unwrap()
    ));
    assert_eq!(
        std::fs::read_to_string(retired).unwrap().trim(),
        old_key.trim()
    );
    assert!(!server.data_dir.path().join("master.key.next").exists());
    // Served at once, and after a restart that reads only the new key file.
    let check = async |server: &TestServer| {
        for (content, (kid, key)) in &originals {
            let doc = ok_document(
                server
                    .post_cpix(
                        "acme",
                        vod_request(content, &kid.to_string(), "cenc", &[WV]),
                    )
                    .await,
            )
            .await;
            assert_eq!(plain_keys(&doc)[0].1, *key, "{content}");
        }
        assert_eq!(
            cpix_as(server, "acme", "rotated", "survives-the-rotation", "x")
                .await
                .status(),
            200
        );
    };
    check(&server).await;
    let data = server.stop().await;
    let server = TestServer::start_in(&config(), data, |_| {}).await;
    check(&server).await;
    let audit = get(&server, "/admin/v1/audit?action=admin.master_key_rotated").await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_interrupted_rotation_is_finished_at_the_next_start() {
    let server = start().await;
    let (kid, key) = cpix_key(&server, "acme", "movie-1").await;
    let data = server.stop().await;
    // What a crash right after writing the new key file leaves behind.
    let next = keyplex_crypto::master::MasterKey::generate().unwrap();
    next.write_new(&data.path().join("master.key.next"))
        .unwrap();
    let server = TestServer::start_in(&config(), data, |_| {}).await;
    assert!(!server.data_dir.path().join("master.key.next").exists());
    let installed = std::fs::read_to_string(server.data_dir.path().join("master.key")).unwrap();
    assert_eq!(installed.trim(), next.to_hex().as_str());
    let doc = ok_document(
        server
            .post_cpix(
                "acme",
                vod_request("movie-1", &kid.to_string(), "cenc", &[WV]),
            )
            .await,
    )
    .await;
    assert_eq!(plain_keys(&doc)[0].1, key);
}

/// Every `/admin/v1` route (as `/openapi.json`, built from the route table, lists them) answers
/// 401 without the admin token and with a wrong one: authentication is the admin router's
/// layer, not something each handler must remember.
#[tokio::test]
async fn every_admin_route_refuses_without_the_token_and_with_a_wrong_one() {
    let server = start().await;
    let mut checked = 0;
    let doc: serde_json::Value = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, methods) in crate::openapi::documented_routes(&doc) {
        if !path.starts_with("/admin/v1") {
            continue;
        }
        let path = path
            .replace("{id}", "acme")
            .replace("{cred}", "cred_x")
            .replace("{content_id}", "movie-1")
            .replace("{name}", "irdeto");
        for method in &methods {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for token in [None, Some("not-the-admin-token"), Some("")] {
                let mut request = server
                    .client
                    .request(method.clone(), server.url(&path))
                    .json(&json!({}));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let resp = request.send().await.unwrap();
                assert_eq!(resp.status(), 401, "{method} {path} with {token:?}");
                assert_eq!(
                    resp.headers()["www-authenticate"],
                    "Bearer realm=\"keyplex-admin\"",
                    "{method} {path}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 3 * 14, "only {checked} admin requests checked");
}

/// The demo tenant's generated password cannot be revoked through the API (it is not in the
/// store); the refusal says exactly how to change it.
#[tokio::test]
async fn the_demo_password_refusal_says_how_to_rotate_it() {
    let server =
        TestServer::start_with(&format!("[admin]\ntoken = \"{ADMIN_TOKEN}\"\n"), |_| {}).await;
    let resp = admin(
        &server,
        reqwest::Method::DELETE,
        "/admin/v1/tenants/demo/credentials/config:basic:0",
        None,
    )
    .await;
    assert_eq!(resp.status(), 409);
    let problem: Value = resp.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("demo-credentials") && detail.contains("delete that file"),
        "{detail}"
    );
}

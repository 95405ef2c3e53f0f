//! Entry points of the `nagra_json`, `widevine_api`, `entitlement_token` and `url_parameters`
//! fuzz targets
//! (`fuzz/` at the repository root). They live here, not in the fuzz crate, so that they can
//! reach the routes' private parsers and so that the regression test below feeds the saved
//! inputs through exactly what the fuzzer ran. Not an API: hidden from the docs.
//!
//! Each function runs a route's work on untrusted bytes up to (never including) the store,
//! against fixed test tenants; a panic is what the fuzzer reports.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use keyplex_types::TenantId;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::config::TenantConfig;
use crate::registry::{Source, TenantParts};
use crate::state::Tenant;

/// Entitlement token key of the `portal` test tenant.
const PORTAL_SECRET: &str = "fuzzing-portal-licence-secret";
/// Entitlement token key of the `strict` test tenant (issuer and audience required).
const STRICT_SECRET: &str = "fuzzing-strict-licence-secret";

/// The test tenants, one per configuration that changes what a parser does:
/// * `vod`: no key rotation, PRM template with HLS, Widevine signer, PlayReady LA URL;
/// * `live`: 60-second crypto periods, PRM template without HLS;
/// * `plain`: nothing configured (no PRM);
/// * `portal`, `strict`: entitlement token keys, products; `strict` also iss/aud.
const TENANTS: &str = r#"
[vod]
basic = [{ user = "packager", password = "fuzzing-vod" }]
widevine_provider = "fuzzing"
playready_la_url = "https://vod.example/prls/contentlicenseservice/v1/licenses"
widevine_signers = [
  { name = "widevine_test", aes_key = "1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9", aes_iv = "d58ce954203b7c9a9a9d467f59839249" },
]
prm_template = { pssh_data_base64 = "UFJNLXRlbXBsYXRlLWRhdGE=", hls_key_uri = "prm://vod.example/keys/{kid}?content={content_id}" }

[live]
basic = [{ user = "packager", password = "fuzzing-live" }]
crypto_period_seconds = 60
prm_template = { pssh_data_base64 = "UFJNLXRlbXBsYXRlLWRhdGE=" }

[plain]
basic = [{ user = "packager", password = "fuzzing-plain" }]

[portal.licence]
jwt = { hs256_secret = "fuzzing-portal-licence-secret" }
products = { gold = ["movie-1", "movie-2"], silver = ["movie-3"] }

[strict.licence]
jwt = { hs256_secret = "fuzzing-strict-licence-secret", issuer = "portal", audience = "keyplex" }
replay_protection = true
"#;

fn tenants() -> &'static BTreeMap<String, Tenant> {
    static TENANT_MAP: OnceLock<BTreeMap<String, Tenant>> = OnceLock::new();
    TENANT_MAP.get_or_init(|| {
        // The fixture is ours, not input: failing to build it is a bug in this file.
        let configs: BTreeMap<String, TenantConfig> =
            toml::from_str(TENANTS).unwrap_or_else(|e| panic!("fuzzing tenants: {e}"));
        configs
            .into_iter()
            .map(|(name, config)| {
                let id = TenantId::parse(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
                let parts = TenantParts {
                    config,
                    source: Source::Config,
                    disabled: false,
                    created_at: None,
                    credentials: Vec::new(),
                };
                let tenant = Tenant::build(id, parts, "http://127.0.0.1:8080")
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, tenant)
            })
            .collect()
    })
}

fn tenant(name: &str) -> &'static Tenant {
    tenants()
        .get(name)
        .unwrap_or_else(|| panic!("no fuzzing tenant {name}"))
}

/// A fixed "now", so that a saved input replays the same way (scheduled key timestamps are
/// checked against it): 2026-01-01T00:00:00Z.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A NAGRA key-and-signalization body, on `/key` and `/cmaf`, for every test tenant that
/// changes the outcome (rotation, PRM template).
pub fn nagra_json(data: &[u8]) {
    for name in ["vod", "live", "plain"] {
        for cmaf in [false, true] {
            let _ =
                crate::packager::nagra::check_request_for_fuzzing(cmaf, tenant(name), data, now());
        }
    }
}

/// A Widevine API body: as the signed envelope, and as the bare `CommonEncryptionRequest`
/// it carries (the fuzzer rarely gets a mutation through base64 intact).
pub fn widevine_api(data: &[u8]) {
    let t = tenant("vod");
    let _ = crate::packager::widevine_api::check_body_for_fuzzing(t, data);
    let _ = crate::packager::widevine_api::check_request_for_fuzzing(t, data);
}

/// An entitlement token: the bytes as the token a player presents (header and query), and
/// the bytes as the claims of a token signed with each test tenant's key, so that the
/// fuzzer reaches claim parsing past the signature.
pub fn entitlement_token(data: &[u8]) {
    let tenants = [
        (tenant("portal"), PORTAL_SECRET),
        (tenant("strict"), STRICT_SECRET),
    ];
    if let Ok(text) = std::str::from_utf8(data) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(text) {
            headers.insert(header::AUTHORIZATION, value);
        }
        if let Ok(Some(token)) = crate::entitlement::presented_token(&headers, Some(text)) {
            for (t, _) in &tenants {
                let _ = t.licence.check_token_for_fuzzing(&token);
            }
        }
        for (t, _) in &tenants {
            let _ = t.licence.check_token_for_fuzzing(text);
        }
    }
    for (t, secret) in &tenants {
        let token = hs256_token(secret, data);
        let _ = t.licence.check_token_for_fuzzing(&token);
    }
}

/// A compact JWS of `claims` (any bytes) signed with HS256 under `secret`.
/// `url_parameters`: the input is a request target (path and query) of the routes whose
/// parameters come from the URL — GET CPIX (`/{tenant}/cpix/{format}/{content_id}[/{token}]
/// ?scheme=&period=`) and PallyCon's (`…/pallycon/getKey/{enc_token}`, `/cpix/getKey?
/// enc-token=`, `/cpix/anevia/{format}/{enc_token}/{cid}`). Runs the request-span redaction
/// (checking that a token segment never survives it) and the routes' own parameter checks,
/// up to the store.
pub fn url_parameters(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = text.parse::<axum::http::Uri>() else {
        return;
    };
    // The secret path parameters are the route table's: installed as the server does.
    crate::routes::install();
    let logged = crate::http::telemetry::loggable_uri(&uri);
    let segments: Vec<&str> = uri.path().split('/').collect();
    let token = match segments.as_slice() {
        ["", _, "cpix", _, _, token]
        | ["", _, "v1" | "v2", "cpix", "pallycon", "getKey", token]
        | ["", _, "cpix", "anevia", _, token, _] => Some(*token),
        _ => None,
    };
    if let Some(token) = token {
        let logged_path = logged.split('?').next().unwrap_or_default();
        let kept = logged_path
            .split('/')
            .filter(|s| *s == token && !token.is_empty())
            .count();
        let elsewhere = segments.iter().filter(|s| **s == token).count() - 1;
        assert!(
            kept <= elsewhere,
            "a URL token survived redaction: {logged_path}"
        );
    }
    let query = uri.query().unwrap_or_default();
    let tenant = tenant("vod");
    match segments.as_slice() {
        ["", _, "cpix", "anevia", format, _, _] => {
            let _ = crate::packager::pallycon::anevia_format(tenant, format);
        }
        ["", _, "cpix", format, content_id] | ["", _, "cpix", format, content_id, _] => {
            if let Ok(q) =
                serde_urlencoded::from_str::<crate::packager::get_cpix::GetCpixQuery>(query)
            {
                let _ = crate::packager::get_cpix::check_request(tenant, format, content_id, &q);
            }
        }
        ["", _, "cpix", "getKey"] => {
            let _ = serde_urlencoded::from_str::<crate::packager::pallycon::EncTokenQuery>(query);
        }
        _ => {}
    }
}

fn hs256_token(secret: &str, claims: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let signature = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Every input kept from fuzzing (`tests/fuzz_regressions/<target>/`: crashes found and
    /// fixed, and inputs that reach deep error paths) runs through its target again.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_regressions")
            .join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            // A panic names the file, so a regression points at its input.
            eprintln!("{}", path.display());
            run(&data);
            count += 1;
        }
        assert!(count > 0, "{} holds no inputs", dir.display());
    }

    #[test]
    fn nagra_json_fuzz_regressions() {
        replay("nagra_json", nagra_json);
    }

    #[test]
    fn widevine_api_fuzz_regressions() {
        replay("widevine_api", widevine_api);
    }

    #[test]
    fn url_parameters_fuzz_regressions() {
        replay("url_parameters", url_parameters);
    }

    #[test]
    fn entitlement_token_fuzz_regressions() {
        replay("entitlement_token", entitlement_token);
    }

    /// The fixture must reach the parsers the targets are for: a signed token with good
    /// claims verifies (so claim parsing is fuzzed, not only the signature check), and a
    /// well-formed NAGRA and Widevine request pass every check.
    #[test]
    fn fixtures_reach_the_parsers() {
        let claims = br#"{"sub":"u","exp":4102444800,"products":["gold"]}"#;
        let e = tenant("portal")
            .licence
            .check_token_for_fuzzing(&hs256_token(PORTAL_SECRET, claims))
            .unwrap()
            .unwrap();
        assert_eq!(e.contents.len(), 2);
        let nagra = br#"{"drmContent":{"drmContentId":"movie-1","profile":{"distributionMode":"VOD","streamingMode":"DASH"}}}"#;
        for name in ["vod", "live", "plain"] {
            assert!(
                crate::packager::nagra::check_request_for_fuzzing(
                    false,
                    tenant(name),
                    nagra,
                    now()
                )
                .is_ok()
            );
        }
        let widevine =
            br#"{"content_id":"bW92aWUtMQ==","tracks":[{"type":"SD"},{"type":"AUDIO"}]}"#;
        assert!(
            crate::packager::widevine_api::check_request_for_fuzzing(tenant("vod"), widevine)
                .is_ok()
        );
    }
}

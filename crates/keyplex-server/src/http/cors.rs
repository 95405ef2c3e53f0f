//! CORS for the licence and key URLs, which browsers call from the operator's player pages.
//!
//! The allowed origins are per tenant (`[tenants.x.licence] cors_origins`), so the check needs
//! the tenant from the path (its first segment). This middleware answers every `OPTIONS`
//! itself (204 with `Allow`; a preflight from an allowed origin gets the
//! `Access-Control-Allow-*` headers, any other gets none, so the browser blocks the call), and
//! adds `Access-Control-Allow-Origin` to every other response — errors included, so a page can
//! tell 401 from 403 — when the request's `Origin` is allowed.
//!
//! Why not tower-http's `CorsLayer` with `AllowOrigin::predicate` (whose predicate does see the
//! request's parts, so the tenant): it answers a preflight 200 and passes any other `OPTIONS` on
//! to the router (405), and a predicate can only allow or refuse, so a tenant with `"*"` would
//! get its callers' origins echoed instead of `*`. Players and the tests rely on what this
//! middleware answers.
//!
//! Entitlement tokens travel in `Authorization` or the URL, never in cookies, so responses do
//! not allow credentials and `"*"` is answered with `*`.

use std::future::Future;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The origins one tenant allows.
#[derive(Clone, Debug, Default)]
pub struct CorsOrigins {
    any: bool,
    /// Lower-cased, as browsers serialize origins.
    origins: Vec<String>,
}

impl CorsOrigins {
    /// From `cors_origins` (validated by `config`): `"*"` or `scheme://host[:port]` entries.
    pub fn from_config(origins: &[String]) -> Self {
        Self {
            any: origins.iter().any(|o| o == "*"),
            origins: origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    pub fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(text))
            .then(|| origin.clone())
    }
}

const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
/// `soapaction`: PlayReady players copy the CDM's SOAPAction header into the licence request.
const ALLOW_HEADERS: &str = "authorization, content-type, soapaction";
/// How long a browser may reuse a preflight answer.
const MAX_AGE_SECONDS: &str = "600";

/// CORS around `run` (the rest of the request) on a route browsers call. Run by
/// [`crate::http::telemetry::track`] for the routes the table marks `browser_cors`, not as a
/// layer of its own (one boxed service less per request).
pub async fn around<F>(
    state: &AppState,
    request: Request,
    run: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let allowed = allowed_origin(state, request.uri().path(), request.headers());
    if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, HeaderValue::from_static(ALLOW_METHODS));
        if let Some(origin) = allowed {
            add_allow_origin(headers, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECONDS),
            );
        }
        return response;
    }
    let mut response = run(request).await;
    if let Some(origin) = allowed {
        add_allow_origin(response.headers_mut(), origin);
    }
    response
}

/// The `Access-Control-Allow-Origin` value for this request: the tenant is the first path
/// segment of every licence route.
fn allowed_origin(state: &AppState, path: &str, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let tenant_name = path.trim_start_matches('/').split('/').next()?;
    let tenant = state.tenant(tenant_name).ok()?;
    let tenant = &*tenant;
    tenant.licence.cors().allow(origin)
}

fn add_allow_origin(headers: &mut HeaderMap, origin: HeaderValue) {
    if origin != "*" {
        // The answer depends on the request's Origin: caches must keep one per origin.
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> CorsOrigins {
        CorsOrigins::from_config(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn listed_origins_are_echoed_others_refused() {
        let cors = origins(&["https://Player.acme.example"]);
        let ok = HeaderValue::from_static("https://player.acme.example");
        assert_eq!(cors.allow(&ok), Some(ok.clone()));
        for other in [
            "https://evil.example",
            "http://player.acme.example",
            "https://player.acme.example:8443",
            "null",
        ] {
            assert_eq!(
                cors.allow(&HeaderValue::from_static(other)),
                None,
                "{other}"
            );
        }
        assert_eq!(CorsOrigins::default().allow(&ok), None);
    }

    #[test]
    fn star_allows_every_origin_with_a_star() {
        let cors = origins(&["*"]);
        assert_eq!(
            cors.allow(&HeaderValue::from_static("https://anything.example")),
            Some(HeaderValue::from_static("*"))
        );
    }
}

//! What a person sees who opens the server in a browser: `GET /` (a small page with the
//! version and the ways in), and a one-line body for an unknown route (404) or a wrong method
//! (405) instead of an empty answer — plain text, or `application/problem+json` for a client
//! that accepts JSON.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::Problem;
use crate::state::AppState;

/// `GET /`.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "landing",
    tag = "operations",
    summary = "Landing page",
    description = "A small HTML page: the version, links to the dashboard (`/ui/`), the reference \
        players (`/players/`), `/openapi.json`, `/metrics` and the documentation, and the CPIX URL \
        of the `demo` tenant when there is one.",
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
    ),
    security(()),
)]
pub async fn landing(State(state): State<AppState>) -> Response {
    let base = state.public_url().trim_end_matches('/');
    let demo = if state.tenant_map().keys().any(|t| t.as_str() == "demo") {
        format!(
            r#"<p>The <code>demo</code> tenant's CPIX URL: <code>{}/demo/cpix</code> (HTTP Basic, credentials in the data directory's <code>demo-credentials</code>).</p>"#,
            escape(base)
        )
    } else {
        String::new()
    };
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>keyplex {version}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}}code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body>
<h1>keyplex <small>{version}</small></h1>
<p>A multi-DRM key server and licence service.</p>
<ul>
<li><a href="/ui/">Dashboard</a> (admin token)</li>
<li><a href="/players/">Reference players</a> (Shaka Player, dash.js, hls.js)</li>
<li><a href="/openapi.json">OpenAPI document</a> of every route</li>
<li><a href="/metrics">Prometheus metrics</a></li>
<li><a href="/healthz">Health check</a></li>
<li>Documentation: <code>README.md</code> and <code>docs/</code> in the repository (getting started, integrations, licences, operators, deployment)</li>
</ul>
{demo}
</body></html>
"#,
        version = env!("CARGO_PKG_VERSION"),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page,
    )
        .into_response()
}

/// Any path no route matches: 404 with a line saying so.
pub async fn not_found(
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    no_route(StatusCode::NOT_FOUND, &method, &uri, &headers)
}

/// A route that exists, asked with a method it does not take: 405 with a line saying so.
pub async fn method_not_allowed(
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    no_route(StatusCode::METHOD_NOT_ALLOWED, &method, &uri, &headers)
}

fn no_route(
    status: StatusCode,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    // The path as logged: a token in it is not echoed back.
    let logged = crate::http::telemetry::loggable_uri(uri);
    let path = short(logged.split('?').next().unwrap_or_default());
    let detail = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!("{path} does not take {method}; /openapi.json lists its methods")
    } else {
        format!("no route for {method} {path}; the routes are listed at /openapi.json")
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if wants_json {
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
        };
        let body = serde_json::to_string(&problem).unwrap_or_default();
        return (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body,
        )
            .into_response();
    }
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        format!("{detail}\n"),
    )
        .into_response()
}

/// A path as echoed back: bounded (it is the client's input).
fn short(path: &str) -> String {
    keyplex_types::truncate_chars(path, 200)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

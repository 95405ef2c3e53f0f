//! The operator dashboard at `/ui/`: three hand-written files compiled into the binary (no
//! CDN, no build step). The page itself holds no data; it logs in with the admin token and
//! reads `/admin/v1/…` (see `docs/operators.md`).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE_CSS: &str = include_str!("../../ui/style.css");

/// Strict: the page loads only its own script and style and talks only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[utoipa::path(get, path = "/ui", operation_id = "ui_redirect", tag = "static",
    summary = "The operator dashboard (redirect)",
    responses((status = 308, description = "Redirect to `/ui/`")),
    security(()))]
pub async fn ui_redirect() -> Response {
    Redirect::permanent("/ui/").into_response()
}

#[utoipa::path(get, path = "/ui/", operation_id = "ui", tag = "static",
    summary = "The operator dashboard",
    description = "The page logs in with the admin token and reads `/admin/v1/…`.",
    responses((status = 200, description = "The dashboard page", body = String,
        content_type = "text/html")),
    security(()))]
pub async fn ui_index() -> Response {
    file(INDEX_HTML, "text/html; charset=utf-8")
}

#[utoipa::path(get, path = "/ui/index.html", operation_id = "ui_index_html", tag = "static",
    summary = "The operator dashboard (page)",
    responses((status = 200, description = "The dashboard page", body = String,
        content_type = "text/html")),
    security(()))]
pub async fn ui_index_html() -> Response {
    file(INDEX_HTML, "text/html; charset=utf-8")
}

#[utoipa::path(get, path = "/ui/app.js", operation_id = "ui_app_js", tag = "static",
    summary = "The operator dashboard (script)",
    responses((status = 200, description = "The dashboard's script", body = String,
        content_type = "text/javascript")),
    security(()))]
pub async fn ui_app_js() -> Response {
    file(APP_JS, "text/javascript; charset=utf-8")
}

#[utoipa::path(get, path = "/ui/style.css", operation_id = "ui_style_css", tag = "static",
    summary = "The operator dashboard (style sheet)",
    responses((status = 200, description = "The dashboard's style sheet", body = String,
        content_type = "text/css")),
    security(()))]
pub async fn ui_style_css() -> Response {
    file(STYLE_CSS, "text/css; charset=utf-8")
}

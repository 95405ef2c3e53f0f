//! The reference players at `/players/`: static pages on Shaka Player, dash.js and hls.js
//! where an operator pastes a manifest URL, a licence URL and an entitlement token and
//! watches the content play, with the EME events and errors shown on the page.
//!
//! The pages and the three library files live in a folder that `players/build.sh` fills
//! from npm at build time (`[server] players_dir`); keyplex serves that folder as it is, so
//! nothing is fetched from the internet when a page runs and the players can be rebuilt
//! (other library versions) without rebuilding keyplex. A missing folder is not an error
//! at start-up: `/players/` then answers a 404 page saying how to build them.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::handler::HandlerWithoutStateExt as _;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use tower::ServiceBuilder;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// The file every built players folder has.
const INDEX: &str = "index.html";

/// Every file below `at` (`/players/`, from the route table), served from `dir`.
pub fn router<S: Clone + Send + Sync + 'static>(at: &str, dir: PathBuf) -> Router<S> {
    let missing = {
        let dir = dir.clone();
        move || {
            let dir = dir.clone();
            async move { not_found(&dir) }
        }
    };
    let files = ServeDir::new(&dir)
        .append_index_html_on_directories(true)
        .not_found_service(missing.into_service());
    let headers = ServiceBuilder::new()
        // The pages hold an entitlement token: no third-party script, no framing, and
        // fetches only by the player libraries (manifests, segments and licences may be on
        // any origin). hls.js starts its transmuxer from a blob: worker.
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                 media-src 'self' blob: data:; connect-src * data: blob:; worker-src 'self' blob:; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // A rebuilt players folder is picked up at once (ServeDir answers revalidation
        // with 304 from the file's modification time).
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
        .service(files);
    Router::new().nest_service(at, headers)
}

/// The 404 page: a file that is not there, or players that were never built.
fn not_found(dir: &Path) -> Response {
    let body = if dir.join(INDEX).is_file() {
        "<!doctype html><meta charset=utf-8><title>Not found</title>\
         <h1>Not found</h1><p>There is no such file among keyplex's reference players. \
         The players are listed at <a href=\"/players/\">/players/</a>.</p>\n"
            .to_owned()
    } else {
        format!(
            "<!doctype html><meta charset=utf-8><title>Reference players not built</title>\
             <h1>keyplex's reference players are not built</h1>\
             <p>keyplex serves the players from <code>{}</code>, which holds no <code>{INDEX}</code>.</p>\
             <p>Build them with <code>players/build.sh</code> (it installs Shaka Player, dash.js and \
             hls.js with npm and writes <code>players/dist</code>), or point <code>[server] players_dir</code> \
             in the configuration at a built players folder, then reload this page.</p>\n",
            html_escape(&dir.display().to_string())
        )
    };
    (StatusCode::NOT_FOUND, Html(body)).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[utoipa::path(get, path = "/players", operation_id = "players_redirect", tag = "static",
    summary = "The reference players (redirect)",
    responses((status = 308, description = "Redirect to `/players/`")),
    security(()))]
pub async fn players_redirect() -> Redirect {
    // Relative links in the pages need the trailing slash.
    Redirect::permanent("/players/")
}

/// The OpenAPI entries of the files [`router`] serves (a nested service has no handler to
/// annotate).
#[derive(utoipa::OpenApi)]
#[openapi(paths(players_index, players_file))]
pub struct PlayersDoc;

#[utoipa::path(get, path = "/players/", operation_id = "players", tag = "static",
    summary = "The reference players",
    description = "Shaka Player, dash.js and hls.js pages, served from `[server] players_dir` \
        (built by `players/build.sh`).",
    responses(
        (status = 200, description = "The players' index page", body = String,
            content_type = "text/html"),
        (status = 404, description = "The players are not built (the page says how)",
            body = String, content_type = "text/html"),
    ),
    security(()))]
#[allow(dead_code)]
fn players_index() {}

#[utoipa::path(get, path = "/players/{file}", operation_id = "players_file", tag = "static",
    summary = "A file of the reference players",
    params(("file" = String, Path, description = "A file below the players folder (may \
        contain `/`)")),
    responses(
        (status = 200, description = "The file, with the media type of its extension"),
        (status = 404, description = "No such file", body = String, content_type = "text/html"),
    ),
    security(()))]
#[allow(dead_code)]
fn players_file() {}

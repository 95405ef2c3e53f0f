//! `GET /openapi.json`: an OpenAPI 3.x document that names every route of
//! `keyplex_server::router` with its methods, and nothing else.
//!
//! axum cannot list a router's routes, so the routes are read from the source: every
//! `.route("…", …)` and `.nest_service("…", …)` in `src/**/*.rs`, with the methods of the
//! method router that follows the path. A route added without a `#[utoipa::path]` entry (or
//! an entry left behind by a removed route) fails here. `ROUTES` repeats the list by hand so
//! that a change to the scanner cannot quietly make both sides empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::common::TestServer;

/// Every route, as the router registers it (lib.rs, admin.rs, ui.rs, players.rs).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["get"]),
    ("/healthz", &["get"]),
    ("/openapi.json", &["get"]),
    ("/metrics", &["get"]),
    ("/{tenant}/nks/v1/cpix", &["post"]),
    ("/{tenant}/cpix", &["post"]),
    ("/{tenant}/speke/v1", &["post"]),
    ("/{tenant}/speke/v2", &["post"]),
    ("/{tenant}/cks-ws-keyAndSignalization/key", &["post"]),
    ("/{tenant}/cks-ws-keyAndSignalization/cmaf", &["post"]),
    ("/{tenant}/cks-ws-ikey/key", &["post"]),
    ("/{tenant}/cpix/{format}/{content_id}", &["get"]),
    ("/{tenant}/cpix/{format}/{content_id}/{token}", &["get"]),
    ("/{tenant}/widevine/getcontentkey", &["post"]),
    ("/{tenant}/v1/cpix/pallycon/getKey/{enc_token}", &["post"]),
    ("/{tenant}/v2/cpix/pallycon/getKey/{enc_token}", &["post"]),
    ("/{tenant}/cpix/getKey", &["post"]),
    ("/{tenant}/cpix/anevia/{format}/{enc_token}/{cid}", &["get"]),
    ("/{tenant}/clearkey/v1/licenses", &["post"]),
    ("/{tenant}/hls/v1/keys/{kid}", &["get"]),
    (
        "/{tenant}/wvls/contentlicenseservice/v1/licenses",
        &["post"],
    ),
    (
        "/{tenant}/prls/contentlicenseservice/v1/licenses",
        &["post"],
    ),
    (
        "/{tenant}/fpls/contentlicenseservice/v1/licenses",
        &["post"],
    ),
    (
        "/{tenant}/prmls/contentlicenseservice/v1/licenses",
        &["post"],
    ),
    ("/{tenant}/licences/{name}", &["post"]),
    ("/{tenant}/ssm/v1/sessions/setup", &["post"]),
    ("/{tenant}/ssm/v1/sessions/{id}/licence", &["post"]),
    ("/{tenant}/ssm/v1/sessions/{id}/heartbeat", &["post"]),
    ("/{tenant}/ssm/v1/sessions/{id}", &["delete"]),
    ("/admin/v1/tenants", &["get", "post"]),
    ("/admin/v1/tenants/{id}", &["get", "patch"]),
    ("/admin/v1/tenants/{id}/credentials", &["get", "post"]),
    ("/admin/v1/tenants/{id}/credentials/{cred}", &["delete"]),
    ("/admin/v1/tenants/{id}/contents", &["get"]),
    (
        "/admin/v1/tenants/{id}/contents/{content_id}/keys",
        &["get"],
    ),
    (
        "/admin/v1/tenants/{id}/contents/{content_id}/licence-policy",
        &["get", "put", "delete"],
    ),
    ("/admin/v1/tenants/{id}/export", &["post"]),
    ("/admin/v1/tenants/{id}/import", &["post"]),
    ("/admin/v1/master-key/rotate", &["post"]),
    ("/admin/v1/audit", &["get"]),
    ("/admin/v1/stats", &["get"]),
    ("/admin/v1/tenants/{id}/drm-systems", &["get"]),
    (
        "/admin/v1/tenants/{id}/drm-systems/{name}",
        &["get", "put", "delete"],
    ),
    ("/ui", &["get"]),
    ("/ui/", &["get"]),
    ("/ui/index.html", &["get"]),
    ("/ui/app.js", &["get"]),
    ("/ui/style.css", &["get"]),
    ("/players", &["get"]),
];

/// `nest_service` prefixes (static file trees, GET only) and the paths documenting them.
const NESTED: &[(&str, &[&str])] = &[("/players/", &["/players/", "/players/{file}"])];

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

type Routes = BTreeMap<String, BTreeSet<String>>;

fn routes_of(list: &[(&str, &[&str])]) -> Routes {
    let mut out = Routes::new();
    for (path, methods) in list {
        let previous = out.insert(
            (*path).to_owned(),
            methods.iter().map(|m| (*m).to_owned()).collect(),
        );
        assert!(previous.is_none(), "{path} listed twice");
    }
    out
}

/// The text from `open` (just after an opening parenthesis) to its closing parenthesis,
/// skipping string literals.
fn call_arguments(text: &str) -> &str {
    let mut depth = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    panic!(
        "unbalanced parentheses after {:?}",
        &text[..text.len().min(80)]
    );
}

/// The string literal at the start of `arguments` (after whitespace), and the rest.
fn leading_literal(arguments: &str) -> (&str, &str) {
    let rest = arguments.trim_start();
    let rest = rest
        .strip_prefix('"')
        .unwrap_or_else(|| panic!("route path is not a string literal: {rest:.60}"));
    let end = rest.find('"').unwrap();
    (&rest[..end], &rest[end + 1..])
}

/// HTTP methods named as calls (`get(`, `.post(`, `axum::routing::delete(`) in `text`.
fn methods_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for method in METHODS {
        let call = format!("{method}(");
        for (at, _) in text.match_indices(&call) {
            let before = text[..at].chars().next_back();
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                found.insert(method.to_owned());
            }
        }
    }
    found
}

/// Every `.route(…)` and `.nest_service(…)` of the crate's source.
fn routes_in_source() -> (Routes, BTreeSet<String>) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut routes = Routes::new();
    let mut nested = BTreeSet::new();
    // The source tree, role folders included.
    let mut files = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices(".route(") {
            let arguments = call_arguments(&text[at + ".route(".len()..]);
            let (path, method_router) = leading_literal(arguments);
            let methods = methods_in(method_router);
            assert!(
                !methods.is_empty(),
                "{}: no method found for {path}",
                file.display()
            );
            let previous = routes.insert(path.to_owned(), methods);
            assert!(previous.is_none(), "{path} is routed twice");
        }
        for (at, _) in text.match_indices(".nest_service(") {
            let arguments = call_arguments(&text[at + ".nest_service(".len()..]);
            nested.insert(leading_literal(arguments).0.to_owned());
        }
        // The router-wide fallback answers unknown paths with 404: it routes nothing.
        for (at, _) in text.match_indices(".fallback(") {
            let arguments = call_arguments(&text[at + ".fallback(".len()..]);
            assert_eq!(
                arguments.trim(),
                "landing::not_found",
                "{}: a fallback other than the 404 page routes requests: teach this test",
                file.display()
            );
        }
        for other in [".nest(", ".route_service("] {
            assert!(
                !text.contains(other),
                "{}: {other}…) routes are not understood by this test: teach it (and document them)",
                file.display()
            );
        }
    }
    (routes, nested)
}

#[test]
fn the_route_list_is_the_source() {
    let (in_source, nested) = routes_in_source();
    assert_eq!(
        in_source,
        routes_of(ROUTES),
        "ROUTES differs from the routes in src/"
    );
    let known: BTreeSet<String> = NESTED.iter().map(|(p, _)| (*p).to_owned()).collect();
    assert_eq!(
        nested, known,
        "NESTED differs from the nest_service calls in src/"
    );
}

fn documented_routes(doc: &serde_json::Value) -> Routes {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[tokio::test]
async fn openapi_json_documents_every_route() {
    let server = TestServer::start().await;
    let response = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: serde_json::Value = response.json().await.unwrap();
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(doc["info"]["title"], "keyplex");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let (mut expected, _) = routes_in_source();
    for (_, paths) in NESTED {
        for path in *paths {
            expected.insert((*path).to_owned(), BTreeSet::from(["get".to_owned()]));
        }
    }
    let documented = documented_routes(&doc);
    let missing: Vec<_> = expected
        .keys()
        .filter(|p| !documented.contains_key(*p))
        .collect();
    let unknown: Vec<_> = documented
        .keys()
        .filter(|p| !expected.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from /openapi.json: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "paths in /openapi.json that are not routes: {unknown:?}"
    );
    assert_eq!(documented, expected, "methods differ");

    // Every operation says what it answers, under a unique id.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
    // The same bytes every time (built once).
    let again = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(again, doc);
}

/// The error bodies the document describes are the ones the routes send.
#[tokio::test]
async fn documented_error_bodies_are_sent() {
    let server = TestServer::start().await;
    let doc: serde_json::Value = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &doc["components"]["schemas"];
    let fields = |schema: &str| -> BTreeSet<String> {
        schemas[schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} has no properties"))
            .keys()
            .cloned()
            .collect()
    };
    let keys = |body: &serde_json::Value| -> BTreeSet<String> {
        body.as_object().unwrap().keys().cloned().collect()
    };

    // Problem: an admin call without a token.
    let response = server
        .client
        .get(server.url("/admin/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(keys(&problem), fields("Problem"));
    assert_eq!(problem["type"], "about:blank");
    assert_eq!(problem["status"], 401);

    // NagraError: a NAGRA-style request without credentials.
    let response = server
        .client
        .post(server.url("/acme/cks-ws-keyAndSignalization/key"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let nagra: serde_json::Value = response.json().await.unwrap();
    assert_eq!(keys(&nagra), fields("NagraError"));
    assert_eq!(nagra["status"], "UNAUTHORIZED");

    // SignedResponse with its error fields: a malformed Widevine request.
    let response = server
        .client
        .post(server.url("/acme/widevine/getcontentkey"))
        .body(r#"{"request":"%%%"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let widevine: serde_json::Value = response.json().await.unwrap();
    assert_eq!(keys(&widevine), fields("SignedResponse"));
    use base64::Engine as _;
    let inner = base64::engine::general_purpose::STANDARD
        .decode(widevine["response"].as_str().unwrap())
        .unwrap();
    let inner: serde_json::Value = serde_json::from_slice(&inner).unwrap();
    assert_eq!(keys(&inner), fields("WidevineStatus"));
    assert_eq!(inner["status"], widevine["status"]);
}

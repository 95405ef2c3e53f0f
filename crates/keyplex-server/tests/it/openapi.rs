//! `GET /openapi.json`: an OpenAPI 3.x document of every route of `keyplex_server::router`.
//!
//! The router and the document are both built from the route table (`routes.rs`), so a route
//! cannot be served without its entry. What is left to prove from the outside: every
//! documented path and method is answered by a route (not by the router's "no route"
//! fallback), each operation has a unique id and says what it answers; and the routes are
//! exactly the `ROUTES` snapshot, which holds every URL of the public contract (`CONTRACT`).

use std::collections::{BTreeMap, BTreeSet};

use crate::common::TestServer;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every (method, path) of `/openapi.json`, sorted by path then method: the routes of
/// keyplex, written out so that a route added, renamed or dropped by mistake fails here.
/// Adding or changing a route deliberately? Update this list in the same change.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/admin/v1/audit"),
    ("post", "/admin/v1/master-key/rotate"),
    ("get", "/admin/v1/stats"),
    ("get", "/admin/v1/tenants"),
    ("post", "/admin/v1/tenants"),
    ("get", "/admin/v1/tenants/{id}"),
    ("patch", "/admin/v1/tenants/{id}"),
    ("get", "/admin/v1/tenants/{id}/contents"),
    ("get", "/admin/v1/tenants/{id}/contents/{content_id}/keys"),
    (
        "delete",
        "/admin/v1/tenants/{id}/contents/{content_id}/licence-policy",
    ),
    (
        "get",
        "/admin/v1/tenants/{id}/contents/{content_id}/licence-policy",
    ),
    (
        "put",
        "/admin/v1/tenants/{id}/contents/{content_id}/licence-policy",
    ),
    ("get", "/admin/v1/tenants/{id}/credentials"),
    ("post", "/admin/v1/tenants/{id}/credentials"),
    ("delete", "/admin/v1/tenants/{id}/credentials/{cred}"),
    ("get", "/admin/v1/tenants/{id}/drm-systems"),
    ("delete", "/admin/v1/tenants/{id}/drm-systems/{name}"),
    ("get", "/admin/v1/tenants/{id}/drm-systems/{name}"),
    ("put", "/admin/v1/tenants/{id}/drm-systems/{name}"),
    ("post", "/admin/v1/tenants/{id}/export"),
    ("post", "/admin/v1/tenants/{id}/import"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/players"),
    ("get", "/players/"),
    ("get", "/players/{file}"),
    ("get", "/ui"),
    ("get", "/ui/"),
    ("get", "/ui/app.js"),
    ("get", "/ui/index.html"),
    ("get", "/ui/style.css"),
    ("post", "/{tenant}/cks-ws-ikey/key"),
    ("post", "/{tenant}/cks-ws-keyAndSignalization/cmaf"),
    ("post", "/{tenant}/cks-ws-keyAndSignalization/key"),
    ("post", "/{tenant}/clearkey/v1/licenses"),
    ("post", "/{tenant}/cpix"),
    ("get", "/{tenant}/cpix/anevia/{format}/{enc_token}/{cid}"),
    ("post", "/{tenant}/cpix/getKey"),
    ("get", "/{tenant}/cpix/{format}/{content_id}"),
    ("get", "/{tenant}/cpix/{format}/{content_id}/{token}"),
    ("post", "/{tenant}/fpls/contentlicenseservice/v1/licenses"),
    ("get", "/{tenant}/hls/v1/keys/{kid}"),
    ("post", "/{tenant}/licences/{name}"),
    ("post", "/{tenant}/nks/v1/cpix"),
    ("post", "/{tenant}/prls/contentlicenseservice/v1/licenses"),
    ("post", "/{tenant}/prmls/contentlicenseservice/v1/licenses"),
    ("post", "/{tenant}/speke/v1"),
    ("post", "/{tenant}/speke/v2"),
    ("post", "/{tenant}/ssm/v1/sessions/setup"),
    ("delete", "/{tenant}/ssm/v1/sessions/{id}"),
    ("post", "/{tenant}/ssm/v1/sessions/{id}/heartbeat"),
    ("post", "/{tenant}/ssm/v1/sessions/{id}/licence"),
    ("post", "/{tenant}/v1/cpix/pallycon/getKey/{enc_token}"),
    ("post", "/{tenant}/v2/cpix/pallycon/getKey/{enc_token}"),
    ("post", "/{tenant}/widevine/getcontentkey"),
    ("post", "/{tenant}/wvls/contentlicenseservice/v1/licenses"),
];

/// The URLs of the public contract (`shared/design/contract.md`, "Routes"), as the contract
/// writes them: a `{…}` segment is a parameter whatever its name (`{dash|hls}` is the
/// `{format}` parameter), and each `{a|b}` alternative of a literal segment is listed. A
/// contract URL may never disappear from the document.
const CONTRACT: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("post", "/{tenant}/nks/v1/cpix"),
    ("post", "/{tenant}/cpix"),
    ("post", "/{tenant}/speke/v1"),
    ("post", "/{tenant}/speke/v2"),
    ("post", "/{tenant}/cks-ws-keyAndSignalization/key"),
    ("post", "/{tenant}/cks-ws-keyAndSignalization/cmaf"),
    ("post", "/{tenant}/cks-ws-ikey/key"),
    ("get", "/{tenant}/cpix/{dash|hls}/{content_id}"),
    ("post", "/{tenant}/widevine/getcontentkey"),
    ("post", "/{tenant}/clearkey/v1/licenses"),
    ("get", "/{tenant}/hls/v1/keys/{kid}"),
    ("post", "/{tenant}/wvls/contentlicenseservice/v1/licenses"),
    ("post", "/{tenant}/prls/contentlicenseservice/v1/licenses"),
    ("post", "/{tenant}/fpls/contentlicenseservice/v1/licenses"),
    ("post", "/{tenant}/prmls/contentlicenseservice/v1/licenses"),
    // `/{tenant}/ssm/v1/…`: session setup, licence (and renewal), heartbeat, teardown.
    ("post", "/{tenant}/ssm/v1/sessions/setup"),
    ("post", "/{tenant}/ssm/v1/sessions/{id}/licence"),
    ("post", "/{tenant}/ssm/v1/sessions/{id}/heartbeat"),
    ("delete", "/{tenant}/ssm/v1/sessions/{id}"),
    ("get", "/players/"),
    ("get", "/metrics"),
    ("get", "/ui/"),
    // `/admin/v1/…`: tenants, credentials, contents, audit, export/import.
    ("get", "/admin/v1/tenants"),
    ("post", "/admin/v1/tenants"),
    ("get", "/admin/v1/tenants/{t}/credentials"),
    ("post", "/admin/v1/tenants/{t}/credentials"),
    ("get", "/admin/v1/tenants/{t}/contents"),
    ("get", "/admin/v1/audit"),
    ("post", "/admin/v1/tenants/{t}/export"),
    ("post", "/admin/v1/tenants/{t}/import"),
    ("get", "/openapi.json"),
    ("post", "/{tenant}/v1/cpix/pallycon/getKey/{enc_token}"),
    ("post", "/{tenant}/v2/cpix/pallycon/getKey/{enc_token}"),
    // `?enc-token={enc_token}` is a query parameter of this path.
    ("post", "/{tenant}/cpix/getKey"),
    ("get", "/{tenant}/cpix/anevia/{dash|hls}/{enc_token}/{cid}"),
    ("get", "/"),
    ("put", "/admin/v1/tenants/{t}/contents/{cid}/licence-policy"),
];

/// A path with every parameter written `{}`: parameter names are not part of a URL.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

type Routes = BTreeMap<String, BTreeSet<String>>;

pub fn documented_routes(doc: &serde_json::Value) -> Routes {
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

    let documented = documented_routes(&doc);
    assert!(documented.len() > 50, "{} paths", documented.len());
    // Exactly the routes of the snapshot.
    let mut listed: Vec<(String, String)> = documented
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (m.clone(), path.clone())))
        .collect();
    listed.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let snapshot: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        listed, snapshot,
        "/openapi.json's routes are not ROUTES (tests/it/openapi.rs): if a route was added, \
         changed or removed deliberately, update ROUTES in the same change"
    );
    // Every URL of the public contract is one of them.
    let shapes: BTreeSet<(String, String)> = listed
        .iter()
        .map(|(method, path)| (method.clone(), shape(path)))
        .collect();
    for (method, path) in CONTRACT {
        assert!(
            shapes.contains(&((*method).to_owned(), shape(path))),
            "{method} {path} is in the public contract (shared/design/contract.md) but not \
             in /openapi.json"
        );
    }
    // Every documented operation reaches a route: a request with made-up parameters (and no
    // credentials) is refused by the route, never answered by the "no route" fallback.
    for (path, methods) in &documented {
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = server
                .client
                .request(method.clone(), server.url(&concrete))
                .send()
                .await
                .unwrap();
            let body = response.text().await.unwrap();
            assert!(
                !body.contains("the routes are listed at /openapi.json")
                    && !body.contains("/openapi.json lists its methods"),
                "{method} {path} ({concrete}) is documented but not routed: {body}"
            );
        }
    }
    // And the fallback does answer what is not a route.
    let missing = server
        .client
        .get(server.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing
            .text()
            .await
            .unwrap()
            .contains("no route for GET /no/such/route")
    );

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

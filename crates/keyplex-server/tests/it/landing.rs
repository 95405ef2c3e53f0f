//! What a person sees in a browser: the landing page at `/`, and one-line bodies for unknown
//! routes (404) and wrong methods (405), in plain text or problem+json.

use crate::common::TestServer;

#[tokio::test]
async fn the_landing_page_links_everything_and_names_the_demo_cpix_url() {
    // No tenant in the configuration: keyplex adds the `demo` tenant.
    let server = TestServer::start_with("", |_| {}).await;
    let resp = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let page = resp.text().await.unwrap();
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    for link in ["/ui/", "/players/", "/openapi.json", "/metrics"] {
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "{link} in {page}"
        );
    }
    assert!(
        page.contains(&format!("{}/demo/cpix", server.base)),
        "{page}"
    );
    // A server without a demo tenant names none.
    let plain = TestServer::start().await;
    let page = plain
        .client
        .get(plain.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("/demo/cpix"), "{page}");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_say_so() {
    let server = TestServer::start().await;
    let resp = server
        .client
        .get(server.url("/nothing/here"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("no route for GET /nothing/here"), "{text}");

    let resp = server
        .client
        .get(server.url("/nothing/here"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["title"], "Not Found");

    let resp = server
        .client
        .get(server.url("/acme/cpix"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let text = resp.text().await.unwrap();
    assert!(text.contains("/acme/cpix does not take GET"), "{text}");
    let resp = server
        .client
        .delete(server.url("/acme/cpix"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(problem["status"], 405);

    // The licence routes too, where CORS (run by `track`) still answers browsers' preflights.
    let resp = server
        .client
        .get(server.url("/acme/clearkey/v1/licenses"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let text = resp.text().await.unwrap();
    assert!(text.contains("does not take GET"), "{text}");

    // A token in an unknown path is not echoed back.
    let text = server
        .client
        .get(server.url("/acme/v2/cpix/pallycon/getKey/a-secret-token-0123456789"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("a-secret-token"), "{text}");
}

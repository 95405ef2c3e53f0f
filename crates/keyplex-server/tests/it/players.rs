//! `/players/`: the reference players folder served as static files, and the 404 page that
//! tells an operator how to build it when it is missing.

use crate::common::{ACME_CONFIG, TestServer};

/// A players folder as `players/build.sh` writes it (`<root>/dist`; the pages' content does
/// not matter here), beside a file that must never be served (`<root>/secret.txt`).
fn built_players() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("dist");
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("index.html"), "<title>players index</title>").unwrap();
    std::fs::write(dir.join("shaka.html"), "<title>shaka page</title>").unwrap();
    std::fs::write(dir.join("lib/hls.min.js"), "var Hls;").unwrap();
    std::fs::write(root.path().join("secret.txt"), "outside").unwrap();
    (root, dir)
}

async fn server_with_players(dir: &std::path::Path) -> TestServer {
    let dir = dir.to_owned();
    TestServer::start_with(ACME_CONFIG, move |c| c.server.players_dir = Some(dir)).await
}

#[tokio::test]
async fn serves_the_pages_and_libraries_of_the_players_folder() {
    let (_root, players) = built_players();
    let server = server_with_players(&players).await;

    let index = server
        .client
        .get(server.url("/players/"))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html");
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(index.headers()["x-content-type-options"], "nosniff");
    assert_eq!(index.text().await.unwrap(), "<title>players index</title>");

    let page = server
        .client
        .get(server.url("/players/shaka.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "<title>shaka page</title>");

    let lib = server
        .client
        .get(server.url("/players/lib/hls.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(lib.status(), 200);
    assert_eq!(lib.headers()["content-type"], "text/javascript");
}

#[tokio::test]
async fn players_without_a_slash_redirects_so_relative_links_work() {
    let (_root, players) = built_players();
    let server = server_with_players(&players).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(server.url("/players")).send().await.unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], "/players/");
}

#[tokio::test]
async fn an_unknown_file_is_a_404_and_nothing_outside_the_folder_is_served() {
    let (_root, players) = built_players();
    let server = server_with_players(&players).await;
    let missing = server
        .client
        .get(server.url("/players/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body = missing.text().await.unwrap();
    assert!(body.contains("no such file"), "{body}");
    // (The client may normalize `%2e%2e` away before sending: then it is a 404 elsewhere.)
    for path in ["/players/%2e%2e/secret.txt", "/players/..%2fsecret.txt"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            !response.text().await.unwrap().contains("outside"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_missing_players_folder_answers_a_page_saying_how_to_build_it() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("dist");
    let server = server_with_players(&missing).await;
    for path in ["/players/", "/players/shaka.html"] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let body = response.text().await.unwrap();
        assert!(body.contains("players/build.sh"), "{body}");
        assert!(body.contains("players_dir"), "{body}");
        assert!(body.contains(&missing.display().to_string()), "{body}");
    }
    // The key interfaces are not affected.
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn the_players_folder_is_found_once_it_is_built_without_a_restart() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().join("dist");
    let server = server_with_players(&dir).await;
    let before = server
        .client
        .get(server.url("/players/"))
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), 404);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "built").unwrap();
    let after = server
        .client
        .get(server.url("/players/"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(after.text().await.unwrap(), "built");
}

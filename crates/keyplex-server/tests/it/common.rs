//! Test harness: a real keyplex server on a free loopback port with a fresh data directory.

use std::path::PathBuf;

use keyplex_server::config::Config;
use keyplex_server::setup;
use tokio::sync::oneshot;

pub const ACME_CONFIG: &str = r#"
[tenants.acme]
basic = [{ user = "packager", password = "s3cret-acme" }]
jwt = { hs256_secret = "a-long-shared-secret-for-acme", rs256_public_key_pem = "@RS256", es256_public_key_pem = "@ES256" }
playready_la_url = "https://acme.example/prls/contentlicenseservice/v1/licenses"
widevine_provider = "acme"
sigv4 = [{ access_key_id = "AKIDACME", secret_access_key = "acme-sigv4-secret", region = "us-east-1", service = "execute-api" }]

# Entitlement tokens from acme's portal (tests/it/entitlement.rs).
[tenants.acme.licence]
jwt = { hs256_secret = "acme-portal-licence-secret", es256_public_key_pem = "@ES256" }
cors_origins = ["https://player.acme.example"]

[tenants.acme.licence.products]
gold = ["movie-gold-1", "movie-gold-2"]

[tenants.globex]
basic = [{ user = "packager", password = "s3cret-globex" }]
jwt = { hs256_secret = "another-long-secret-for-globex" }
sigv4 = [{ access_key_id = "AKIDGLOBEX", secret_access_key = "globex-sigv4-secret", region = "eu-west-1", service = "execute-api" }]

[tenants.globex.licence]
jwt = { hs256_secret = "globex-portal-licence-secret" }
cors_origins = ["*"]

[tenants.initech]
basic = [{ user = "packager", password = "s3cret-initech" }]
kid_override = true
crypto_period_seconds = 60
"#;

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn vector(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("vector {}: {e}", path.display()))
}

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ACME_CONFIG, |_| {}).await
    }

    pub async fn start_with(toml: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_in(toml, data_dir, tweak).await
    }

    pub async fn start_in(
        toml: &str,
        data_dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let toml = toml
            .replace(
                "\"@RS256\"",
                &format!("'''{}'''", fixture("rs256-public.pem")),
            )
            .replace(
                "\"@ES256\"",
                &format!("'''{}'''", fixture("es256-public.pem")),
            );
        let mut config = Config::from_toml(std::path::Path::new("test.toml"), &toml).unwrap();
        config.server.data_dir = data_dir.path().to_owned();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        config.server.public_url = Some(base.clone());
        let (master, _) = setup::load_master_key(&config, None).unwrap();
        setup::add_demo_tenant(&mut config).unwrap();
        let state = setup::open_state(&config, master).await.unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            keyplex_server::serve_with_listener(state, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            base,
            client: reqwest::Client::new(),
            data_dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a CPIX document as acme's Basic packager.
    pub async fn post_cpix(
        &self,
        tenant: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let password = format!("s3cret-{tenant}");
        self.client
            .post(self.url(&format!("/{tenant}/cpix")))
            .basic_auth("packager", Some(password))
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Stops the server and hands back its data directory (for restart tests).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

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

/// With `KEYPLEX_IT_STORE=postgres` (a second pass of `scripts/test.sh`), every test server
/// keeps its store in a fresh PostgreSQL database instead of SQLite. The database's URL is
/// kept in the data directory, so that a restarted server finds the same database.
async fn use_postgres_if_asked(config: &mut Config, data_dir: &std::path::Path) {
    if std::env::var("KEYPLEX_IT_STORE").as_deref() != Ok("postgres")
        || config.server.database_url.is_some()
    {
        return;
    }
    let marker = data_dir.join("test-database-url");
    let url = match std::fs::read_to_string(&marker) {
        Ok(url) => url,
        Err(_) => {
            let url = keyplex_store::postgres::create_test_database(
                &keyplex_store::postgres::test_server_url(),
                "keyplex_it_test",
            )
            .await
            .expect("KEYPLEX_IT_STORE=postgres needs PostgreSQL (127.0.0.1:5432)");
            std::fs::write(&marker, &url).unwrap();
            url
        }
    };
    config.server.database_url = Some(keyplex_server::config::Secret::new(url));
}

/// Everything the server's store holds on disk: the SQLite file and its WAL, or a `pg_dump`
/// of its PostgreSQL database (for "nothing secret in the clear" checks).
pub fn stored_bytes(server: &TestServer) -> Vec<Vec<u8>> {
    let dir = server.data_dir.path();
    if let Ok(url) = std::fs::read_to_string(dir.join("test-database-url")) {
        let dump = std::process::Command::new("pg_dump")
            .arg(url)
            .output()
            .expect("pg_dump");
        assert!(dump.status.success(), "pg_dump failed");
        assert!(!dump.stdout.is_empty());
        return vec![dump.stdout];
    }
    let db = std::fs::read(dir.join("keyplex.sqlite")).unwrap();
    let wal = std::fs::read(dir.join("keyplex.sqlite-wal")).unwrap_or_default();
    vec![db, wal]
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
        Self::try_start_in(toml, data_dir, tweak)
            .await
            .unwrap_or_else(|e| panic!("the server did not start: {e}"))
    }

    /// [`Self::start_in`], with what stops the start (configuration or setup) as `Err`.
    pub async fn try_start_in(
        toml: &str,
        data_dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Self, String> {
        let toml = toml
            .replace(
                "\"@RS256\"",
                &format!("'''{}'''", fixture("rs256-public.pem")),
            )
            .replace(
                "\"@ES256\"",
                &format!("'''{}'''", fixture("es256-public.pem")),
            );
        let mut config = Config::from_toml(std::path::Path::new("test.toml"), &toml)
            .map_err(|e| e.to_string())?;
        config.server.data_dir = data_dir.path().to_owned();
        tweak(&mut config);
        use_postgres_if_asked(&mut config, data_dir.path()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        config.server.public_url = Some(base.clone());
        crate::witness::init_logging();
        crate::witness::record_config_secrets(&toml);
        let (master, _) = setup::load_master_key(&config, None).unwrap();
        crate::witness::record_master_key(&master);
        setup::add_demo_tenant(&mut config).unwrap();
        let source = setup::MasterKeySource::File(setup::master_key_path(&config));
        let state = setup::open_state_layered(&config, master, source, |store| {
            std::sync::Arc::new(crate::witness::KeyWitness(store))
        })
        .await
        .map_err(|e| e.to_string())?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            keyplex_server::serve_with_listener(state, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Ok(Self {
            base,
            client: reqwest::Client::new(),
            data_dir,
            shutdown: Some(tx),
            task: Some(task),
        })
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

//! Start-up: resolve the master key, open the store, and give a config-less start its
//! `demo` tenant.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyplex_crypto::master::MasterKey;
use keyplex_store::SqliteStore;

use crate::config::{BasicCredential, Config, Secret, TenantConfig};
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("cannot open key store: {0}")]
    Store(String),
    #[error(
        "database_url is set, but this build stores keys in SQLite only (PostgreSQL comes with the scale-out release)"
    )]
    DatabaseUrlUnsupported,
    #[error("demo tenant credentials file {path}: {message}")]
    Demo { path: PathBuf, message: String },
    #[error("{0}")]
    State(String),
}

/// Credentials of the `demo` tenant, shown once when they are first created.
pub struct DemoCredentials {
    pub user: String,
    pub password: String,
    pub created: bool,
}

/// Where the master key comes from: `KEYPLEX_MASTER_KEY` (64 hex), else `master_key_file`,
/// else `<data_dir>/master.key`, created on first start with mode 0600.
pub fn load_master_key(
    config: &Config,
    env_value: Option<&str>,
) -> Result<(MasterKey, Option<PathBuf>), SetupError> {
    if let Some(hex) = env_value {
        return MasterKey::from_hex(hex.trim())
            .map(|k| (k, None))
            .map_err(|e| SetupError::MasterKey(format!("KEYPLEX_MASTER_KEY: {e}")));
    }
    let path = config
        .server
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.server.data_dir.join("master.key"));
    let (key, created) =
        MasterKey::load_or_create(&path).map_err(|e| SetupError::MasterKey(e.to_string()))?;
    Ok((key, created.then_some(path)))
}

pub fn ensure_data_dir(dir: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SetupError::DataDir {
            path: dir.to_owned(),
            source,
        })
}

/// Adds the `demo` tenant when the configuration has no tenant at all. Its password is
/// generated once and kept in `<data_dir>/demo-credentials` (mode 0600), so restarts keep
/// working with the credentials printed the first time.
pub fn add_demo_tenant(config: &mut Config) -> Result<Option<DemoCredentials>, SetupError> {
    if !config.tenants.is_empty() {
        return Ok(None);
    }
    let path = config.server.data_dir.join("demo-credentials");
    let err = |message: String| SetupError::Demo {
        path: path.clone(),
        message,
    };
    let (password, created) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let pw = text
                .trim()
                .strip_prefix("demo:")
                .ok_or_else(|| err("expected demo:<password>".into()))?;
            (pw.to_owned(), false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pw = keyplex_crypto::random::random_token(24).map_err(|e| err(e.to_string()))?;
            write_private_file(&path, format!("demo:{pw}\n").as_bytes())
                .map_err(|e| err(e.to_string()))?;
            (pw, true)
        }
        Err(e) => return Err(err(e.to_string())),
    };
    let tenant = TenantConfig {
        basic: vec![BasicCredential {
            user: "demo".into(),
            password: Secret::new(password.clone()),
        }],
        ..TenantConfig::default()
    };
    config.tenants.insert("demo".into(), tenant);
    Ok(Some(DemoCredentials {
        user: "demo".into(),
        password,
        created,
    }))
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Opens the store for `config` and builds the server state.
pub async fn open_state(config: &Config, master: MasterKey) -> Result<AppState, SetupError> {
    if config.server.database_url.is_some() {
        return Err(SetupError::DatabaseUrlUnsupported);
    }
    let db_path = config.server.data_dir.join("keyplex.sqlite");
    let store = SqliteStore::open(&db_path, master)
        .await
        .map_err(|e| SetupError::Store(e.to_string()))?;
    AppState::new(config, Arc::new(store)).map_err(SetupError::State)
}

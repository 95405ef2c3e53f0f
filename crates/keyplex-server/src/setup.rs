//! Start-up: resolve the master key, open the store, and give a config-less start its
//! `demo` tenant.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyplex_crypto::master::MasterKey;
use keyplex_store::{KeyStore, StoreLocation};

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
    #[error("database_url: {0}")]
    DatabaseUrl(String),
    #[error(
        "the store at {store} holds rows sealed under master key(s) {unknown}, but this node's \
         master key is {ours}: every node must use the same master key (see docs/deployment.md)"
    )]
    ForeignMasterKey {
        store: String,
        unknown: String,
        ours: String,
    },
    #[error("demo tenant credentials file {path}: {message}")]
    Demo { path: PathBuf, message: String },
    #[error("admin token file {path}: {message}")]
    AdminToken { path: PathBuf, message: String },
    #[error("{0}")]
    State(String),
}

/// Credentials of the `demo` tenant, shown once when they are first created.
pub struct DemoCredentials {
    pub user: String,
    pub password: String,
    pub created: bool,
}

/// Where the running server's master key came from (what a rotation must update).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `KEYPLEX_MASTER_KEY`: keyplex cannot change it, so it cannot rotate it.
    Environment,
    File(PathBuf),
}

/// Where the master key comes from: `KEYPLEX_MASTER_KEY` (64 hex), else `master_key_file`,
/// else `<data_dir>/master.key`, created on first start with mode 0600.
pub fn load_master_key(
    config: &Config,
    env_value: Option<&str>,
) -> Result<(MasterKey, Option<PathBuf>), SetupError> {
    let (key, _, created) = load_master_key_with_source(config, env_value)?;
    Ok((key, created))
}

/// [`load_master_key`] with the key's source.
pub fn load_master_key_with_source(
    config: &Config,
    env_value: Option<&str>,
) -> Result<(MasterKey, MasterKeySource, Option<PathBuf>), SetupError> {
    if let Some(hex) = env_value {
        return MasterKey::from_hex(hex.trim())
            .map(|k| (k, MasterKeySource::Environment, None))
            .map_err(|e| SetupError::MasterKey(format!("KEYPLEX_MASTER_KEY: {e}")));
    }
    let path = master_key_path(config);
    let (key, created) =
        MasterKey::load_or_create(&path).map_err(|e| SetupError::MasterKey(e.to_string()))?;
    Ok((
        key,
        MasterKeySource::File(path.clone()),
        created.then_some(path),
    ))
}

pub fn master_key_path(config: &Config) -> PathBuf {
    config
        .server
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.server.data_dir.join("master.key"))
}

/// The file a rotation writes the new master key to before re-sealing anything: if the
/// process dies during the rotation, the next start finds it and finishes the rotation.
pub fn next_master_key_path(current: &Path) -> PathBuf {
    let mut name = current.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// Where a rotation keeps the previous master key (for restoring database backups taken
/// before the rotation; delete it once no such backup is needed).
pub fn retired_master_key_path(current: &Path, fingerprint: &str) -> PathBuf {
    let mut name = current.as_os_str().to_owned();
    name.push(format!(".retired-{fingerprint}"));
    PathBuf::from(name)
}

/// Makes the key in `<path>.next` the master key file, keeping the old one as retired.
/// Called once every row is sealed under the new key.
pub fn promote_next_master_key(path: &Path, old: &MasterKey) -> Result<(), SetupError> {
    let retired = retired_master_key_path(path, &old.fingerprint());
    match old.write_new(&retired) {
        Ok(()) => {}
        // A retry after a crash between this step and the rename: the file is there.
        Err(_) if retired.exists() => {}
        Err(e) => return Err(SetupError::MasterKey(e.to_string())),
    }
    std::fs::rename(next_master_key_path(path), path)
        .map_err(|e| SetupError::MasterKey(format!("cannot install the new master key: {e}")))?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| SetupError::MasterKey(format!("cannot sync {}: {e}", dir.display())))?;
    }
    Ok(())
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
    let (text, created) = read_or_create_secret(&path, 24, "demo:").map_err(err)?;
    let password = text
        .strip_prefix("demo:")
        .ok_or_else(|| err("expected demo:<password>".into()))?
        .to_owned();
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

/// The admin token of a configuration without `[admin] token` or `[admin] jwt`: generated
/// once, kept in `<data_dir>/admin-token` (mode 0600). The bool is true on the start that
/// created it (the token is then printed once).
pub fn ensure_admin_token(config: &mut Config) -> Result<Option<(String, bool)>, SetupError> {
    if config.admin.token.is_some() || config.admin.jwt.is_some() {
        return Ok(None);
    }
    let path = config.server.data_dir.join("admin-token");
    let err = |message: String| SetupError::AdminToken {
        path: path.clone(),
        message,
    };
    let (token, created) = read_or_create_secret(&path, 32, "").map_err(err)?;
    if token.len() < 16 {
        return Err(err("the admin token must be at least 16 characters".into()));
    }
    config.admin.token = Some(Secret::new(token.clone()));
    Ok(Some((token, created)))
}

/// The secret kept in the file at `path`, trimmed, and whether this call created it: read
/// when the file exists, else `prefix` and a new random token of `length` characters written
/// there (mode 0600, [`keyplex_crypto::master::write_secret_file`]). `Err` says why, without
/// the path (the caller's error names the file).
fn read_or_create_secret(
    path: &Path,
    length: usize,
    prefix: &str,
) -> Result<(String, bool), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text.trim().to_owned(), false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = keyplex_crypto::random::random_token(length).map_err(|e| e.to_string())?;
            let text = format!("{prefix}{token}");
            keyplex_crypto::master::write_secret_file(path, format!("{text}\n").as_bytes())
                .map_err(|e| e.to_string())?;
            Ok((text, true))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Opens the store for `config` and builds the server state (the master key from a file).
/// Where the store is: `database_url` (`postgres://…`, or `sqlite://PATH`), else
/// `<data_dir>/keyplex.sqlite`.
pub fn store_location(config: &Config) -> Result<StoreLocation, SetupError> {
    match &config.server.database_url {
        Some(url) => {
            StoreLocation::parse(url.expose()).map_err(|e| SetupError::DatabaseUrl(e.to_string()))
        }
        None => Ok(StoreLocation::Sqlite(
            config.server.data_dir.join("keyplex.sqlite"),
        )),
    }
}

/// `KEYPLEX_DATABASE_URL` overrides `[server] database_url`.
pub fn apply_database_url_env(config: &mut Config, env_value: Option<String>) {
    if let Some(url) = env_value.filter(|u| !u.trim().is_empty()) {
        config.server.database_url = Some(Secret::new(url.trim()));
    }
}

/// Refuses to serve a store whose rows this node cannot open: a node started with another
/// master key (a generated one, on a shared database) would answer every request "corrupt".
async fn check_master_key(
    store: &dyn KeyStore,
    location: &StoreLocation,
    master: &MasterKey,
    next: Option<&MasterKey>,
) -> Result<(), SetupError> {
    let ours = master.fingerprint();
    let next = next.map(MasterKey::fingerprint);
    let unknown: Vec<String> = store
        .sealing_fingerprints()
        .await
        .map_err(|e| SetupError::Store(e.to_string()))?
        .into_iter()
        .filter(|fp| *fp != ours && Some(fp) != next.as_ref())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(SetupError::ForeignMasterKey {
        store: location.redacted(),
        unknown: unknown.join(", "),
        ours,
    })
}

pub async fn open_state(config: &Config, master: MasterKey) -> Result<AppState, SetupError> {
    let source = MasterKeySource::File(master_key_path(config));
    open_state_with(config, master, source).await
}

/// Opens the store for `config` and builds the server state: finishes a master key rotation
/// a crash interrupted, then loads the tenants the admin API stored.
pub async fn open_state_with(
    config: &Config,
    master: MasterKey,
    source: MasterKeySource,
) -> Result<AppState, SetupError> {
    open_state_layered(config, master, source, |store| store).await
}

/// [`open_state_with`], serving the store through `layer`: a decorator of the opened store
/// (the integration tests' records every key it hands out, for their secrets check).
pub async fn open_state_layered(
    config: &Config,
    master: MasterKey,
    source: MasterKeySource,
    layer: impl FnOnce(Arc<dyn KeyStore>) -> Arc<dyn KeyStore>,
) -> Result<AppState, SetupError> {
    let location = store_location(config)?;
    let store = location
        .open(master.clone())
        .await
        .map_err(|e| SetupError::Store(format!("{}: {e}", location.redacted())))?;
    let store = layer(store);
    let next = match &source {
        MasterKeySource::File(path) => {
            let next = next_master_key_path(path);
            next.exists()
                .then(|| MasterKey::load(&next).map_err(|e| SetupError::MasterKey(e.to_string())))
                .transpose()?
        }
        MasterKeySource::Environment => None,
    };
    check_master_key(store.as_ref(), &location, &master, next.as_ref()).await?;
    if let (MasterKeySource::File(path), Some(new)) = (&source, next) {
        tracing::warn!(old = %master.fingerprint(), new = %new.fingerprint(), "finishing an interrupted master key rotation");
        store
            .rotate_master_key(new)
            .await
            .map_err(|e| SetupError::Store(e.to_string()))?;
        promote_next_master_key(path, &master)?;
    }
    let state = AppState::new(config, store, source).map_err(SetupError::State)?;
    state
        .reload_tenants(true)
        .await
        .map_err(|e| SetupError::Store(e.to_string()))?;
    state.check_file_upstreams().map_err(SetupError::State)?;
    Ok(state)
}

/// The players folder to serve: the configured one, else `players/` beside the keyplex
/// binary when it holds built players (an installed release), else `./players/dist`
/// (where `players/build.sh` puts them in a source tree).
pub fn players_dir(configured: Option<&std::path::Path>) -> std::path::PathBuf {
    if let Some(dir) = configured {
        return dir.to_owned();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|bin| bin.join("players")))
        .filter(|dir| dir.join("index.html").is_file())
        .unwrap_or_else(|| std::path::PathBuf::from("players").join("dist"))
}

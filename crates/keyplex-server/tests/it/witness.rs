//! The secrets check of the integration tests (issue 7): with `KEYPLEX_SECRETS_AUDIT_DIR` set
//! (`scripts/test.sh` sets it), every test process
//! * logs everything keyplex emits at `debug` (all crates) to `<dir>/it-<pid>.log`, and
//! * writes every secret its servers handled to `<dir>/it-<pid>.secrets`: each content key
//!   the store handed out (through [`KeyWitness`], a store decorator), each master key, and
//!   the credentials and signing secrets of the test configurations.
//!
//! `scripts/check-secrets.py` then reads all of it, together with the Python suites' server
//! logs, and fails if any log holds any secret in any common spelling. Without the variable
//! the decorator still runs (the servers behave the same) but nothing is written.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use keyplex_store::{
    Audit, AuditEvent, AuditQuery, ContentSummary, Custody, EnsuredKey, ExportedKey, ImportOutcome,
    KeyInfo, KeyRequest, KeyStore, Keys, MasterKey, NewSession, Registry, Result, RotationReport,
    Session, SessionOpen, Sessions, Stats, StatsCount, StoredCredential, StoredTenant, Tenants,
};
use keyplex_types::{ContentId, ContentKey, KeyId, TenantId};

fn audit_dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os("KEYPLEX_SECRETS_AUDIT_DIR")?);
        std::fs::create_dir_all(&dir).ok()?;
        Some(dir)
    })
    .as_ref()
}

/// Installs the debug log of this test process (once; a no-op without the audit directory).
pub fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let Some(dir) = audit_dir() else { return };
        let path = dir.join(format!("it-{}.log", std::process::id()));
        let Ok(file) = std::fs::File::create(&path) else {
            return;
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(Mutex::new(file))
            .with_ansi(false)
            .try_init();
    });
}

/// Writes secrets (as text, one per line: `hex:…` for bytes, `text:…` for strings).
fn record(lines: impl IntoIterator<Item = String>) {
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let dir = audit_dir()?;
        let path = dir.join(format!("it-{}.secrets", std::process::id()));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
            .map(Mutex::new)
    });
    let Some(file) = file else { return };
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    if let Ok(mut f) = file.lock() {
        let _ = f.write_all(text.as_bytes());
    }
}

/// Records content keys. Fixture keys of one repeated byte (`42…42`) are left out: tests use
/// the same bytes as key ids, which are public and logged.
fn record_keys<'a>(keys: impl IntoIterator<Item = &'a ContentKey>) {
    record(
        keys.into_iter()
            .filter(|k| k.key.expose().iter().any(|b| *b != k.key.expose()[0]))
            .map(|k| format!("hex:{}", hex::encode(k.key.expose()))),
    );
}

/// Records a master key.
pub fn record_master_key(master: &MasterKey) {
    record([format!("hex:{}", master.to_hex().as_str())]);
}

/// Records the secrets of a test configuration: every string value of a key that names a
/// secret (passwords, shared secrets, tokens, signing keys), at any depth.
pub fn record_config_secrets(toml_text: &str) {
    fn walk(value: &toml::Value, name: &str, out: &mut Vec<String>) {
        match value {
            toml::Value::String(s) if is_secret_name(name) && s.len() >= 8 => {
                out.push(format!("text:{s}"));
            }
            toml::Value::Array(items) => items.iter().for_each(|v| walk(v, name, out)),
            toml::Value::Table(table) => table.iter().for_each(|(k, v)| walk(v, k, out)),
            _ => {}
        }
    }
    if audit_dir().is_none() {
        return;
    }
    if let Ok(value) = toml_text.parse::<toml::Value>() {
        let mut out = Vec::new();
        walk(&value, "", &mut out);
        record(out);
    }
}

/// As [`record_config_secrets`], for a credential's JSON spec (the admin API's).
fn record_json_secrets(json_text: &str) {
    fn walk(value: &serde_json::Value, name: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) if is_secret_name(name) && s.len() >= 8 => {
                out.push(format!("text:{s}"));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, name, out)),
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, k, out)),
            _ => {}
        }
    }
    if audit_dir().is_none() {
        return;
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(json_text) {
        let mut out = Vec::new();
        walk(&value, "", &mut out);
        record(out);
    }
}

fn is_secret_name(name: &str) -> bool {
    ["password", "secret", "token", "signing_key", "aes_key"]
        .iter()
        .any(|s| name.contains(s))
}

/// A store that records every content key it hands out, then passes on: it implements every
/// role of [`KeyStore`], so it is one.
pub struct KeyWitness(pub Arc<dyn KeyStore>);

#[async_trait]
impl Keys for KeyWitness {
    async fn ensure_keys_audited(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
        created: AuditEvent,
    ) -> Result<Vec<EnsuredKey>> {
        let keys = self
            .0
            .ensure_keys_audited(tenant, requests, created)
            .await?;
        record_keys(keys.iter().map(|e| &e.key));
        Ok(keys)
    }
    async fn get_key(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentKey>> {
        let key = self.0.get_key(tenant, kid).await?;
        record_keys(&key);
        Ok(key)
    }
    async fn key_content(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentId>> {
        self.0.key_content(tenant, kid).await
    }
    async fn list_keys(&self, tenant: &TenantId, content_id: &ContentId) -> Result<Vec<KeyInfo>> {
        self.0.list_keys(tenant, content_id).await
    }
    async fn list_contents(
        &self,
        tenant: &TenantId,
        search: Option<&str>,
        after: Option<&ContentId>,
        limit: u32,
    ) -> Result<Vec<ContentSummary>> {
        self.0.list_contents(tenant, search, after, limit).await
    }
    async fn ping(&self) -> Result<()> {
        self.0.ping().await
    }
}

#[async_trait]
impl Sessions for KeyWitness {
    async fn open_session(
        &self,
        tenant: &TenantId,
        session: &NewSession,
        max_streams: Option<u32>,
        now: u64,
    ) -> Result<SessionOpen> {
        // A session id is a bearer secret: no log may hold it.
        record([format!("text:{}", session.id)]);
        self.0.open_session(tenant, session, max_streams, now).await
    }
    async fn get_session(&self, tenant: &TenantId, id: &str, now: u64) -> Result<Option<Session>> {
        self.0.get_session(tenant, id, now).await
    }
    async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &str,
        now: u64,
        expires_at: u64,
        licensed: Option<&str>,
    ) -> Result<Option<Session>> {
        self.0
            .touch_session(tenant, id, now, expires_at, licensed)
            .await
    }
    async fn close_session(&self, tenant: &TenantId, id: &str, now: u64) -> Result<bool> {
        self.0.close_session(tenant, id, now).await
    }
    async fn live_sessions_of(
        &self,
        tenant: &TenantId,
        user: &str,
        now: u64,
    ) -> Result<Vec<Session>> {
        self.0.live_sessions_of(tenant, user, now).await
    }
    async fn count_live_sessions(&self, tenant: Option<&TenantId>, now: u64) -> Result<u64> {
        self.0.count_live_sessions(tenant, now).await
    }
    async fn spend_token_id(
        &self,
        tenant: &TenantId,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        self.0.spend_token_id(tenant, jti, expires_at, now).await
    }
    async fn purge_token_ids(&self, now: u64) -> Result<u64> {
        self.0.purge_token_ids(now).await
    }
}

#[async_trait]
impl Tenants for KeyWitness {
    async fn registry(&self) -> Result<Registry> {
        self.0.registry().await
    }
    async fn registry_version(&self) -> Result<i64> {
        self.0.registry_version().await
    }
    async fn create_tenant(&self, tenant: &StoredTenant) -> Result<bool> {
        self.0.create_tenant(tenant).await
    }
    async fn set_tenant_disabled(
        &self,
        tenant: &TenantId,
        disabled: bool,
        now: time::OffsetDateTime,
    ) -> Result<()> {
        self.0.set_tenant_disabled(tenant, disabled, now).await
    }
    async fn add_credential(&self, credential: &StoredCredential) -> Result<()> {
        record_json_secrets(credential.spec.as_str());
        self.0.add_credential(credential).await
    }
    async fn revoke_credential(&self, tenant: &TenantId, id: &str) -> Result<bool> {
        self.0.revoke_credential(tenant, id).await
    }
    async fn put_drm_system(&self, system: &keyplex_store::StoredDrmSystem) -> Result<bool> {
        self.0.put_drm_system(system).await
    }
    async fn remove_drm_system(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        self.0.remove_drm_system(tenant, name).await
    }
    async fn put_content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
        policy: &str,
        at: time::OffsetDateTime,
    ) -> Result<()> {
        self.0
            .put_content_policy(tenant, content_id, policy, at)
            .await
    }
    async fn content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
    ) -> Result<Option<String>> {
        self.0.content_policy(tenant, content_id).await
    }
    async fn all_content_policies(&self) -> Result<Vec<keyplex_store::StoredContentPolicy>> {
        self.0.all_content_policies().await
    }
    async fn delete_content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
    ) -> Result<bool> {
        self.0.delete_content_policy(tenant, content_id).await
    }
}

#[async_trait]
impl Audit for KeyWitness {
    async fn append_audit(&self, events: std::sync::Arc<[AuditEvent]>) -> Result<()> {
        self.0.append_audit(events).await
    }
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.0.query_audit(query).await
    }
    async fn purge_audit(&self, before: time::OffsetDateTime) -> Result<u64> {
        self.0.purge_audit(before).await
    }
}

#[async_trait]
impl Stats for KeyWitness {
    async fn add_stats(&self, counts: &[StatsCount]) -> Result<()> {
        self.0.add_stats(counts).await
    }
    async fn read_stats(
        &self,
        tenant: Option<&str>,
        from: u64,
        until: u64,
    ) -> Result<Vec<StatsCount>> {
        self.0.read_stats(tenant, from, until).await
    }
    async fn purge_stats(&self, before: u64) -> Result<u64> {
        self.0.purge_stats(before).await
    }
}

#[async_trait]
impl Custody for KeyWitness {
    async fn tenants_with_keys(&self) -> Result<Vec<TenantId>> {
        self.0.tenants_with_keys().await
    }
    async fn export_keys(&self, tenant: &TenantId) -> Result<Vec<ExportedKey>> {
        let keys = self.0.export_keys(tenant).await?;
        record_keys(keys.iter().map(|e| &e.key));
        Ok(keys)
    }
    async fn import_keys(&self, tenant: &TenantId, keys: &[ExportedKey]) -> Result<ImportOutcome> {
        record_keys(keys.iter().map(|e| &e.key));
        self.0.import_keys(tenant, keys).await
    }
    async fn sealing_fingerprints(&self) -> Result<Vec<String>> {
        self.0.sealing_fingerprints().await
    }
    async fn rotate_master_key(&self, new: MasterKey) -> Result<RotationReport> {
        record_master_key(&new);
        self.0.rotate_master_key(new).await
    }
}

//! The embedded SQLite backend: one file, WAL, every commit fsynced.
//!
//! Reads go through a small pool of connections. Key creation goes through the key writer's
//! own thread and connection ([`key_writer`]: group commit), every other write through a
//! pool of exactly one connection, each inside `BEGIN IMMEDIATE` transactions, so that
//! through SQLite's write lock they are serialized with each other and with any other
//! process on the same file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyplex_crypto::master::MasterKey;
use keyplex_types::{ContentId, ContentKey, KeyId, KeySlot, TenantId, TrackType};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row as _, SqlitePool};

mod audit;
mod custody;
mod key_writer;
mod sessions;
mod stats;
mod tenants;

use key_writer::KeyWriter;

use crate::cache::{KEY_CACHE_CAPACITY, KeyCache};
use crate::columns::{
    InfoRow, KeyRow, corrupt, from_unix, hex_of, origin_column, period_column, slot_period_column,
};
use crate::rules::KeySealer;
use crate::{
    AuditEvent, ContentSummary, EnsuredKey, KeyInfo, KeyRequest, Keys, Result, StoreError,
};

/// How long a statement waits for another process's write lock before the store reports
/// itself unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection (the writer is shared by all requests).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Readers never block each other in WAL mode; a few suffice on a small machine.
const READ_CONNECTIONS: u32 = 4;

/// Content keys in one SQLite database file.
///
/// Key creation goes through the [`KeyWriter`] thread, which commits the keys of every
/// request waiting at that moment in one transaction (group commit: one fsync for many
/// requests), together with their `key.created` audit events; other audit appends go to the
/// same thread. Everything else reads through a small pool, and the other writes (sessions,
/// tenants, purges, imports, rotation) go through a pool of one connection; SQLite's write
/// lock serializes both writers, and other processes.
pub struct SqliteStore {
    reader: SqlitePool,
    /// Exactly one connection: every write but key creation (and audit appends).
    writer: SqlitePool,
    /// Key creation and audit appends: a thread with its own connection (group commit).
    key_writer: KeyWriter,
    sealer: Arc<KeySealer>,
    cache: KeyCache,
    /// The directory of an [`SqliteStore::open_temporary`] store: deleted with the store.
    _scratch: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("master_key", &self.sealer.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// The directory must exist.
    pub async fn open(path: &Path, master: MasterKey) -> Result<Self> {
        Self::open_with(path, master, None, key_writer::QUEUE_CAPACITY).await
    }

    async fn open_with(
        path: &Path,
        master: MasterKey,
        scratch: Option<tempfile::TempDir>,
        queue_capacity: usize,
    ) -> Result<Self> {
        // synchronous = FULL: in WAL mode, NORMAL may lose the last commits on power loss, and
        // a key must be durable before the response that hands it out leaves.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(|e| db_error(&format!("cannot open {}", path.display()), e))?;
        migrate(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A local file does not go away between uses: pinging it first only costs a
            // round trip to the connection's worker thread on every request.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| db_error(&format!("cannot open {}", path.display()), e))?;
        let sealer = Arc::new(KeySealer::new(master));
        let key_writer = KeyWriter::start(path, BUSY_TIMEOUT, sealer.clone(), queue_capacity)?;
        Ok(Self {
            reader,
            writer,
            key_writer,
            sealer,
            cache: KeyCache::new(KEY_CACHE_CAPACITY),
            _scratch: scratch,
        })
    }

    /// Brings the schema of the database at `path` up to date (creating it) and closes it.
    pub async fn migrate_path(path: &Path) -> Result<()> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| db_error(&format!("cannot open {}", path.display()), e))?;
        let outcome = migrate(&pool).await;
        pool.close().await;
        outcome
    }

    /// A private, throw-away database (for tests and demos): a file in a temporary directory
    /// that is deleted with the store, so nothing survives it. A file rather than SQLite's
    /// `:memory:` because the key writer and the pools each have a connection of their own.
    pub async fn open_temporary(master: MasterKey) -> Result<Self> {
        let scratch = tempfile::Builder::new()
            .prefix("keyplex-scratch-")
            .tempdir()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot create a scratch database: {e}"))
            })?;
        let path = scratch.path().join("keyplex.sqlite");
        Self::open_with(&path, master, Some(scratch), key_writer::QUEUE_CAPACITY).await
    }

    /// Lets the key writer commit what is queued, then closes the pools, waiting for
    /// connections in use to be returned (for a clean shutdown: the WAL is checkpointed when
    /// the last connection closes).
    pub async fn close(&self) {
        self.key_writer.stop().await;
        self.reader.close().await;
        self.writer.close().await;
    }

    /// [`Keys::ensure_keys_audited`] and the tests' `ensure_keys_reporting` (no `audit`): `audit`
    /// is the `key.created` event to record with new keys.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant, requests = requests.len()))]
    async fn ensure(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
        audit: Option<&AuditEvent>,
    ) -> Result<Vec<EnsuredKey>> {
        // Fastest path: every key is in the cache (re-requests of hot content).
        let cached: Option<Result<Vec<ContentKey>>> = requests
            .iter()
            .map(|r| self.cache.resolve(tenant, r))
            .collect();
        if let Some(result) = cached {
            return result.map(|keys| keys.into_iter().map(EnsuredKey::stored).collect());
        }
        // Everything else goes to the key writer, which reads what concurrent requests need
        // with one statement and takes the write lock only when a key is missing.
        let keys = self.key_writer.submit(tenant, requests, audit).await?;
        for (request, ensured) in requests.iter().zip(&keys) {
            self.cache.remember(tenant, request, &ensured.key);
        }
        Ok(keys)
    }
}

impl SqliteStore {
    /// Runs `write` in a `BEGIN IMMEDIATE` transaction on the writer (one connection: these
    /// writes are serialized in this process; SQLite's write lock serializes them with the key
    /// writer and other processes), and commits.
    async fn write<T>(
        &self,
        what: &str,
        write: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_error("cannot start a write transaction", e))?;
        let value = write(&mut tx).await?;
        tx.commit()
            .await
            .map_err(|e| db_error(&format!("cannot commit {what}"), e))?;
        Ok(value)
    }

    async fn insert_key(
        &self,
        conn: &mut SqliteConnection,
        tenant: &TenantId,
        key: &ContentKey,
        slot: Option<&KeySlot>,
        created_at: time::OffsetDateTime,
    ) -> Result<()> {
        let sealed = self
            .sealer
            .seal(tenant, &key.kid, &key.content_id, &key.key)?;
        let origin = origin_column(key.origin);
        sqlx::query(
            "INSERT INTO content_keys \
             (tenant, kid, content_id, sealed_key, iv, track_type, period, origin, master_key_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant.as_str())
        .bind(key.kid.as_bytes().as_slice())
        .bind(key.content_id.as_str())
        .bind(sealed.bytes)
        .bind(key.iv.as_bytes().as_slice())
        .bind(key.track_type.as_ref().map(TrackType::as_str))
        .bind(period_column(key.period)?)
        .bind(origin)
        .bind(sealed.sealed_by)
        .bind(created_at.unix_timestamp())
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error(&format!("cannot store key {}", key.kid), e))?;
        if let Some(slot) = slot {
            sqlx::query("INSERT INTO key_slots (tenant, content_id, track_type, period, kid) VALUES (?, ?, ?, ?, ?)")
                .bind(tenant.as_str())
                .bind(slot.content_id.as_str())
                .bind(slot.track_type.as_str())
                .bind(slot_period_column(slot.period)?)
                .bind(key.kid.as_bytes().as_slice())
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error(&format!("cannot bind key {} to its slot", key.kid), e))?;
        }
        Ok(())
    }

    async fn fetch_key(
        &self,
        conn: &mut SqliteConnection,
        tenant: &TenantId,
        kid: &KeyId,
    ) -> Result<Option<ContentKey>> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT content_id, sealed_key, iv, track_type, period, origin, master_key_id \
             FROM content_keys WHERE tenant = ? AND kid = ?",
        )
        .bind(tenant.as_str())
        .bind(kid.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db_error(&format!("cannot read key {kid}"), e))?;
        row.map(|row| row.decode(&self.sealer, tenant, *kid))
            .transpose()
    }
}

#[async_trait]
impl Keys for SqliteStore {
    async fn ensure_keys_audited(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
        created: AuditEvent,
    ) -> Result<Vec<EnsuredKey>> {
        self.ensure(tenant, requests, Some(&created)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant, kid = %kid))]
    async fn get_key(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentKey>> {
        if let Some(key) = self.cache.get(tenant, kid) {
            return Ok(Some(key));
        }
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(|e| db_error("cannot get a read connection", e))?;
        let key = self.fetch_key(&mut conn, tenant, kid).await?;
        if let Some(key) = &key {
            self.cache.remember_key(tenant, key);
        }
        Ok(key)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant, kid = %kid))]
    async fn key_content(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentId>> {
        if let Some(key) = self.cache.get(tenant, kid) {
            return Ok(Some(key.content_id.clone()));
        }
        let content: Option<String> =
            sqlx::query_scalar("SELECT content_id FROM content_keys WHERE tenant = ? AND kid = ?")
                .bind(tenant.as_str())
                .bind(kid.as_bytes().as_slice())
                .fetch_optional(&self.reader)
                .await
                .map_err(|e| db_error(&format!("cannot read key {kid}"), e))?;
        content
            .map(|c| {
                ContentId::parse(&c).map_err(|e| StoreError::Corrupt {
                    kid: kid.to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant, content_id = %content_id))]
    async fn list_keys(&self, tenant: &TenantId, content_id: &ContentId) -> Result<Vec<KeyInfo>> {
        let rows: Vec<InfoRow> = sqlx::query_as(
            "SELECT k.kid, k.track_type, k.period, k.origin, k.created_at, s.kid IS NOT NULL AS slotted \
             FROM content_keys AS k \
             LEFT JOIN key_slots AS s ON s.tenant = k.tenant AND s.kid = k.kid \
             WHERE k.tenant = ? AND k.content_id = ? \
             ORDER BY k.created_at, k.rowid",
        )
        .bind(tenant.as_str())
        .bind(content_id.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(&format!("cannot list the keys of {content_id}"), e))?;
        rows.into_iter().map(|row| row.decode(content_id)).collect()
    }

    async fn list_contents(
        &self,
        tenant: &TenantId,
        search: Option<&str>,
        after: Option<&ContentId>,
        limit: u32,
    ) -> Result<Vec<ContentSummary>> {
        let rows = sqlx::query(
            "SELECT content_id, count(*) AS keys, min(created_at) AS first_at, max(created_at) AS last_at \
             FROM content_keys \
             WHERE tenant = ?1 AND (?2 IS NULL OR instr(lower(content_id), lower(?2)) > 0) \
               AND (?3 IS NULL OR content_id > ?3) \
             GROUP BY content_id ORDER BY content_id LIMIT ?4",
        )
        .bind(tenant.as_str())
        .bind(search.filter(|s| !s.is_empty()))
        .bind(after.map(ContentId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error("cannot list contents", e))?;
        rows.iter()
            .map(|row| {
                let id: String = row.get("content_id");
                let what = format!("content {id}");
                Ok(ContentSummary {
                    content_id: ContentId::parse(&id).map_err(|e| corrupt(&what, e))?,
                    keys: u64::try_from(row.get::<i64, _>("keys")).unwrap_or(0),
                    first_key_at: from_unix(row.get("first_at"), &what)?,
                    last_key_at: from_unix(row.get("last_at"), &what)?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(|e| db_error("ping failed", e))?;
        Ok(())
    }
}

#[cfg(any(test, feature = "conformance"))]
#[async_trait]
impl crate::UnauditedKeys for SqliteStore {
    async fn ensure_keys_reporting(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
    ) -> Result<Vec<EnsuredKey>> {
        self.ensure(tenant, requests, None).await
    }
}

async fn migrate(pool: &SqlitePool) -> Result<()> {
    sqlx::migrate!("migrations/sqlite")
        .run(pool)
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_error("cannot migrate the key store", e),
            other => StoreError::Internal(format!("cannot migrate the key store: {other}")),
        })
}

async fn fetch_slot(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    slot: &KeySlot,
) -> Result<Option<KeyId>> {
    let kid: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT kid FROM key_slots WHERE tenant = ? AND content_id = ? AND track_type = ? AND period = ?",
    )
    .bind(tenant.as_str())
    .bind(slot.content_id.as_str())
    .bind(slot.track_type.as_str())
    .bind(slot_period_column(slot.period)?)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| db_error("cannot read a key slot", e))?;
    kid.map(|bytes| {
        KeyId::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            kid: hex_of(&bytes),
            reason: e.to_string(),
        })
    })
    .transpose()
}

/// Maps a database error to the store's vocabulary: anything that a retry or an operator can
/// fix (busy, locked, I/O, disk full, pool exhausted) is `Unavailable` (HTTP 503).
fn db_error(context: &str, error: sqlx::Error) -> StoreError {
    /// SQLite primary result codes that mean "not now" rather than "wrong".
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    const SQLITE_NOMEM: i64 = 7;
    const SQLITE_READONLY: i64 = 8;
    const SQLITE_IOERR: i64 = 10;
    const SQLITE_FULL: i64 = 13;
    const SQLITE_CANTOPEN: i64 = 14;
    let unavailable = match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| {
                matches!(
                    code & 0xff,
                    SQLITE_BUSY
                        | SQLITE_LOCKED
                        | SQLITE_NOMEM
                        | SQLITE_READONLY
                        | SQLITE_IOERR
                        | SQLITE_FULL
                        | SQLITE_CANTOPEN
                )
            }),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(format!("{context}: {error}"))
    } else {
        StoreError::Internal(format!("{context}: {error}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::sync::Arc;

    use keyplex_crypto::random;

    use super::*;
    use crate::prelude::*;
    use crate::{KeyMaterial, UnauditedKeys as _};
    use keyplex_types::KeyPeriod;

    fn master() -> MasterKey {
        MasterKey::from_hex(&"5a".repeat(32)).unwrap()
    }

    fn candidate() -> KeyMaterial {
        KeyMaterial {
            kid: random::new_key_id().unwrap(),
            key: random::new_key_value().unwrap(),
            iv: random::new_iv().unwrap(),
        }
    }

    fn by_kid(content: &str, material: KeyMaterial) -> KeyRequest {
        KeyRequest::ByKid {
            content_id: ContentId::parse(content).unwrap(),
            candidate: material,
            key_supplied: false,
            iv_supplied: false,
            track_type: None,
            period: KeyPeriod::Vod,
        }
    }

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    /// The conformance suite, one test per scenario, each on a fresh store (a file in a
    /// temporary directory, as `open` makes it).
    mod conformance {
        crate::conformance_tests!(async {
            super::SqliteStore::open_temporary(super::master())
                .await
                .unwrap()
        });
    }

    #[tokio::test]
    async fn keys_survive_reopening_and_are_sealed_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let store = SqliteStore::open(&path, master()).await.unwrap();
        let slot = KeySlot {
            content_id: ContentId::parse("live-1").unwrap(),
            track_type: TrackType::parse("HD").unwrap(),
            period: KeyPeriod::Index(42),
        };
        let created = store
            .ensure_keys(
                &tenant(),
                &[
                    by_kid("movie-1", candidate()),
                    KeyRequest::BySlot {
                        slot: slot.clone(),
                        candidate: candidate(),
                        supplied: false,
                        iv_supplied: false,
                    },
                ],
            )
            .await
            .unwrap();
        store.close().await;
        drop(store);

        // Neither the key bytes nor anything that contains them appears in the files.
        let mut on_disk = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            on_disk.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        for key in &created {
            assert!(
                on_disk.windows(16).all(|w| w != key.key.expose()),
                "key bytes stored in clear"
            );
            assert!(
                on_disk.windows(16).any(|w| w == key.kid.as_bytes()),
                "the test must look at the data"
            );
        }

        let reopened = SqliteStore::open(&path, master()).await.unwrap();
        let again = reopened
            .ensure_keys(
                &tenant(),
                &[KeyRequest::BySlot {
                    slot,
                    candidate: candidate(),
                    supplied: false,
                    iv_supplied: false,
                }],
            )
            .await
            .unwrap();
        assert_eq!(again[0], created[1]);
        assert_eq!(
            reopened
                .get_key(&tenant(), &created[0].kid)
                .await
                .unwrap()
                .as_ref(),
            Some(&created[0])
        );
    }

    #[tokio::test]
    async fn another_master_key_reads_corrupt_not_a_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let store = SqliteStore::open(&path, master()).await.unwrap();
        let material = candidate();
        let kid = material.kid;
        store
            .ensure_keys(&tenant(), &[by_kid("movie-1", material.clone())])
            .await
            .unwrap();
        store.close().await;

        let other = SqliteStore::open(&path, MasterKey::generate().unwrap())
            .await
            .unwrap();
        let err = other.get_key(&tenant(), &kid).await.unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(&err, StoreError::Corrupt { kid: k, .. } if *k == kid.to_string()),
            "{err:?}"
        );
        assert!(message.contains(&master().fingerprint()), "{message}");
        assert!(matches!(
            other
                .ensure_keys(&tenant(), &[by_kid("movie-1", material)])
                .await,
            Err(StoreError::Corrupt { .. })
        ));
        // Metadata stays readable: it is not sealed.
        assert_eq!(
            other
                .list_keys(&tenant(), &ContentId::parse("movie-1").unwrap())
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn concurrent_batches_share_commits_and_a_conflict_stays_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let store = std::sync::Arc::new(SqliteStore::open(&path, master()).await.unwrap());
        let taken = candidate();
        store
            .ensure_keys(&tenant(), &[by_kid("taken", taken.clone())])
            .await
            .unwrap();
        // Another connection holds the write lock while the jobs below queue up, so that
        // they are all waiting when it is released: group commit must then take them in
        // (at most) two batches, the one that was waiting for the lock and the rest.
        let mut other = hold_write_lock(&path, None).await;
        let batches_before = store.key_writer.batches();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            let material = candidate();
            tasks.push(tokio::spawn(async move {
                store
                    .ensure_keys(&tenant(), &[by_kid(&format!("content-{i}"), material)])
                    .await
            }));
        }
        let thief = {
            let store = store.clone();
            let stolen = taken.clone();
            tokio::spawn(async move {
                store
                    .ensure_keys(
                        &tenant(),
                        &[by_kid("content-ok", candidate()), by_kid("other", stolen)],
                    )
                    .await
            })
        };
        // Every task runs (and hands its job over) while this one sleeps.
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
        let mut created = Vec::new();
        for t in tasks {
            created.push(t.await.unwrap().unwrap().remove(0));
        }
        assert!(matches!(
            thief.await.unwrap(),
            Err(StoreError::Conflict { .. })
        ));
        let batches = store.key_writer.batches() - batches_before;
        assert!(batches <= 2, "41 waiting jobs took {batches} batches");
        // The conflicting batch stored nothing, not even its first, valid request.
        assert!(
            store
                .list_keys(&tenant(), &ContentId::parse("content-ok").unwrap())
                .await
                .unwrap()
                .is_empty()
        );
        // Everything acknowledged is on disk.
        drop(store);
        let reopened = SqliteStore::open(&path, master()).await.unwrap();
        for key in created {
            assert_eq!(
                reopened.get_key(&tenant(), &key.kid).await.unwrap(),
                Some(key)
            );
        }
    }

    /// A second connection to the store's file holding the write lock (`BEGIN IMMEDIATE`)
    /// after running `setup`: jobs sent meanwhile wait and then share one batch.
    async fn hold_write_lock(
        path: &std::path::Path,
        setup: Option<&str>,
    ) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
        let mut other = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(path))
            .await
            .unwrap()
            .acquire()
            .await
            .unwrap();
        if let Some(sql) = setup {
            sqlx::query(sql).execute(&mut *other).await.unwrap();
        }
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *other)
            .await
            .unwrap();
        other
    }

    type KeysTask = tokio::task::JoinHandle<Result<Vec<ContentKey>>>;

    /// Tenant `beta`'s good jobs, one new content each.
    fn good_jobs(
        store: &std::sync::Arc<SqliteStore>,
        range: std::ops::Range<usize>,
    ) -> Vec<KeysTask> {
        range
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let beta = TenantId::parse("beta").unwrap();
                    store
                        .ensure_keys(&beta, &[by_kid(&format!("content-{i}"), candidate())])
                        .await
                })
            })
            .collect()
    }

    /// Every good job succeeded and its key is stored.
    async fn assert_committed(store: &SqliteStore, tasks: Vec<KeysTask>) {
        let beta = TenantId::parse("beta").unwrap();
        for (i, task) in tasks.into_iter().enumerate() {
            let created = task
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("job {i}: {e}"));
            assert_eq!(
                store.get_key(&beta, &created[0].kid).await.unwrap(),
                Some(created[0].clone())
            );
        }
    }

    #[tokio::test]
    async fn a_job_the_store_cannot_hold_fails_alone_and_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let store = std::sync::Arc::new(SqliteStore::open(&path, master()).await.unwrap());
        // Hold the write lock so that every job below is waiting when it is released and
        // the poison job shares a batch with the other tenant's jobs.
        let mut other = hold_write_lock(&path, None).await;
        let mut tasks = good_jobs(&store, 0..10);
        // Beyond what a column holds (the routes refuse anything over 2^32 - 1).
        let huge = KeyPeriod::Index(1 << 63);
        let poison = {
            let store = store.clone();
            tokio::spawn(async move {
                let slot = KeySlot {
                    content_id: ContentId::parse("live").unwrap(),
                    track_type: TrackType::all(),
                    period: huge,
                };
                let by_slot = KeyRequest::BySlot {
                    slot,
                    candidate: candidate(),
                    supplied: false,
                    iv_supplied: false,
                };
                let by_kid = KeyRequest::ByKid {
                    content_id: ContentId::parse("live").unwrap(),
                    candidate: candidate(),
                    key_supplied: false,
                    iv_supplied: false,
                    track_type: None,
                    period: huge,
                };
                (
                    store.ensure_keys(&tenant(), &[by_slot]).await,
                    store.ensure_keys(&tenant(), &[by_kid]).await,
                )
            })
        };
        tasks.extend(good_jobs(&store, 10..20));
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();

        // The other tenant's jobs, batched with the poison one, are all committed.
        assert_committed(&store, tasks).await;
        // The poison job gets its own error (500), not the batch's 503.
        let (by_slot, by_kid) = poison.await.unwrap();
        for outcome in [by_slot, by_kid] {
            let err = outcome.unwrap_err();
            assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
            assert!(err.to_string().contains("key period index"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_batch_that_fails_on_one_job_commits_the_others_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let store = std::sync::Arc::new(SqliteStore::open(&path, master()).await.unwrap());
        // A failure the planning cannot foresee, in the insert of one job's key (as an
        // unexpected constraint or a bug would be): not the database being unavailable.
        let mut other = hold_write_lock(
            &path,
            Some(
                "CREATE TRIGGER poison BEFORE INSERT ON content_keys WHEN NEW.content_id = 'poison' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
            ),
        )
        .await;
        let mut tasks = good_jobs(&store, 0..10);
        let poison = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .ensure_keys(&tenant(), &[by_kid("poison", candidate())])
                    .await
            })
        };
        tasks.extend(good_jobs(&store, 10..20));
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
        assert_committed(&store, tasks).await;
        let err = poison.await.unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
        assert!(err.to_string().contains("poisoned row"), "{err}");
    }

    #[tokio::test]
    async fn a_full_writer_queue_refuses_at_once_and_the_queued_jobs_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        // Room for two waiting jobs.
        let store = Arc::new(
            SqliteStore::open_with(&path, master(), None, 2)
                .await
                .unwrap(),
        );
        // The writer blocks on the write lock with its first batch; the queue fills.
        let mut other = hold_write_lock(&path, None).await;
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .ensure_keys(&tenant(), &[by_kid(&format!("content-{i}"), candidate())])
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Refused ones are answered while the lock is still held: nothing waits for them.
        let mut refused = 0;
        let mut waiting = Vec::new();
        for task in tasks {
            if task.is_finished() {
                let err = task.await.unwrap().unwrap_err();
                assert!(
                    matches!(
                        err,
                        StoreError::Busy {
                            retry_after_seconds: 1..
                        }
                    ),
                    "{err:?}"
                );
                refused += 1;
            } else {
                waiting.push(task);
            }
        }
        assert!(refused > 0, "50 jobs fit a queue of two");
        sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
        for task in waiting {
            let created = task.await.unwrap().unwrap();
            assert_eq!(
                store.get_key(&tenant(), &created[0].kid).await.unwrap(),
                Some(created[0].clone())
            );
        }
        // Once the queue drains, new jobs are taken again.
        assert!(
            store
                .ensure_keys(&tenant(), &[by_kid("after", candidate())])
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn tampered_rows_are_corrupt() {
        let store = SqliteStore::open_temporary(master()).await.unwrap();
        let first = candidate();
        let second = candidate();
        let (first_kid, second_kid) = (first.kid, second.kid);
        store
            .ensure_keys(
                &tenant(),
                &[by_kid("movie-1", first), by_kid("movie-2", second)],
            )
            .await
            .unwrap();

        // A sealed key copied onto another row does not open there (AAD binds the row).
        sqlx::query(
            "UPDATE content_keys SET sealed_key = (SELECT sealed_key FROM content_keys WHERE kid = ?) WHERE kid = ?",
        )
        .bind(first_kid.as_bytes().as_slice())
        .bind(second_kid.as_bytes().as_slice())
        .execute(&store.writer)
        .await
        .unwrap();
        // Read as a freshly started node would: from the rows, not from memory.
        store.cache.clear();
        assert!(matches!(
            store.get_key(&tenant(), &second_kid).await,
            Err(StoreError::Corrupt { .. })
        ));

        // Nor does a key moved to another content.
        sqlx::query("UPDATE content_keys SET content_id = 'movie-3' WHERE kid = ?")
            .bind(first_kid.as_bytes().as_slice())
            .execute(&store.writer)
            .await
            .unwrap();
        store.cache.clear();
        let err = store.get_key(&tenant(), &first_kid).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { kid, .. } if *kid == first_kid.to_string()),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_held_write_lock_makes_creation_unavailable_but_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let store = SqliteStore::open(&path, master()).await.unwrap();
        let existing = store
            .ensure_keys(&tenant(), &[by_kid("movie-1", candidate())])
            .await
            .unwrap();

        // Another process (here: another connection) holds the database's write lock.
        let mut other = hold_write_lock(&path, None).await;

        let started = std::time::Instant::now();
        let err = store
            .ensure_keys(&tenant(), &[by_kid("movie-2", candidate())])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() >= BUSY_TIMEOUT - Duration::from_millis(500));
        // Re-requests of existing keys and reads never need the write lock.
        let request = by_kid(
            "movie-1",
            KeyMaterial {
                kid: existing[0].kid,
                ..candidate()
            },
        );
        assert_eq!(
            store.ensure_keys(&tenant(), &[request]).await.unwrap(),
            existing
        );
        store.ping().await.unwrap();

        sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
        assert!(
            store
                .ensure_keys(&tenant(), &[by_kid("movie-2", candidate())])
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn list_keys_reports_metadata_in_creation_order() {
        let store = SqliteStore::open_temporary(master()).await.unwrap();
        let content = ContentId::parse("movie-1").unwrap();
        let mut kids = Vec::new();
        for _ in 0..5 {
            let key = store
                .ensure_keys(&tenant(), &[by_kid("movie-1", candidate())])
                .await
                .unwrap();
            kids.push(key[0].kid);
        }
        let listed: Vec<KeyId> = store
            .list_keys(&tenant(), &content)
            .await
            .unwrap()
            .iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(listed, kids, "same-second keys keep their insertion order");
    }

    #[tokio::test]
    async fn debug_output_names_the_master_key_fingerprint_only() {
        let store = SqliteStore::open_temporary(master()).await.unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains(&master().fingerprint()), "{debug}");
        assert!(!debug.contains("5a5a"), "{debug}");
    }
}

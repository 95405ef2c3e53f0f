//! The PostgreSQL backend: several keyplex nodes share one database.
//!
//! Nothing a node decides alone can break an invariant: the database does. A new key is
//! claimed with `INSERT … ON CONFLICT DO NOTHING` on the row every racing node competes for
//! (the key id for `ByKid`, the slot for `BySlot`); the loser of a race waits for the winner's
//! commit, finds its row, and answers the winner's key. A batch is one transaction; commits are
//! synchronous (`synchronous_commit = on` on every connection), so a key is durable before the
//! response that hands it out leaves. A transaction PostgreSQL aborts as a deadlock or
//! serialization failure is retried whole. Session limits are counted under a transaction
//! advisory lock per (tenant, user), so they hold across nodes too.
//!
//! The in-memory key cache is safe across nodes for the reason it is safe on one: a stored
//! key never changes, and only committed rows are cached.

use std::time::Duration;

use async_trait::async_trait;
use keyplex_crypto::master::MasterKey;
use keyplex_types::{ContentId, ContentKey, KeyId, KeySlot, TenantId, TrackType};
use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Runs `$body` (an expression of type `TxResult<T>` that uses `$conn: &mut PgConnection`) in
/// a transaction and commits it, running it again after a short pause when PostgreSQL aborts
/// it as a deadlock or serialization failure. Evaluates to `Result<T>`. (A macro rather than a
/// function taking an async closure: such closures borrowing the caller's arguments cannot be
/// proven `Send` for every lifetime, which `async_trait` requires.)
macro_rules! in_transaction {
    ($core:expr, $what:expr, |$conn:ident| $body:expr) => {{
        let core: &PostgresStore = $core;
        let what: &str = $what;
        let mut last = String::new();
        let mut answer = None;
        let mut failure = None;
        for attempt in 0..TRANSACTION_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(retry_pause(attempt)).await;
            }
            let mut tx = match core.pool.begin().await {
                Ok(tx) => tx,
                Err(e) => {
                    failure = Some(db_error("cannot start a transaction", e));
                    break;
                }
            };
            let outcome: TxResult<_> = async {
                let $conn: &mut PgConnection = &mut *tx;
                $body
            }
            .await;
            let outcome = match outcome {
                Ok(value) => tx
                    .commit()
                    .await
                    .map(|()| value)
                    .map_err(|e| classify(&format!("cannot commit {what}"), e)),
                // Rolled back now, not when the pool next hands the connection out: until
                // then its row locks would block every node racing for the same rows.
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            };
            match outcome {
                Ok(value) => {
                    answer = Some(value);
                    break;
                }
                Err(TxError::Store(e)) => {
                    failure = Some(e);
                    break;
                }
                Err(TxError::Retry(message)) => {
                    tracing::debug!(attempt, %message, "transaction aborted by PostgreSQL; retrying");
                    last = message;
                }
            }
        }
        match (answer, failure) {
            (Some(value), _) => Ok(value),
            (None, Some(e)) => Err(e),
            (None, None) => Err(StoreError::Unavailable(format!(
                "{what}: PostgreSQL aborted the transaction {TRANSACTION_ATTEMPTS} times ({last}); try again"
            ))),
        }
    }};
}

fn retry_pause(attempt: u32) -> Duration {
    Duration::from_millis(5 << attempt.min(5))
}

mod audit;
mod custody;
mod sessions;
mod stats;
mod tenants;

use crate::cache::{KEY_CACHE_CAPACITY, KeyCache};
use crate::columns::{
    InfoRow, KeyRow, decode_kid, from_unix, origin_column, period_column, slot_period_column,
};
use crate::rules::{self, KeySealer};
use crate::{
    AuditEvent, ContentSummary, EnsuredKey, KeyInfo, KeyRequest, Keys, Result, StoreError,
};

/// Connections per node. Each request holds one for a few statements; PostgreSQL's own
/// default limit (100) leaves room for several nodes.
const POOL_CONNECTIONS: u32 = 16;
/// How long a request waits for a pooled connection before the store reports itself
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a statement may wait for a lock / run at all (the SQLite busy timeout's role).
const LOCK_TIMEOUT: &str = "5s";
const STATEMENT_TIMEOUT: &str = "15s";
/// A transaction aborted as a deadlock or serialization failure is run again this often.
const TRANSACTION_ATTEMPTS: u32 = 6;

/// Content keys, sessions, tenants and the audit trail in one PostgreSQL database.
pub struct PostgresStore {
    pool: PgPool,
    sealer: KeySealer,
    cache: KeyCache,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("master_key", &self.sealer.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Why a step of a transaction failed: for good ([`StoreError`]), or because PostgreSQL
/// aborted the transaction in a way that running it again resolves.
enum TxError {
    Store(StoreError),
    Retry(String),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

type TxResult<T> = std::result::Result<T, TxError>;

impl PostgresStore {
    /// [`Keys::ensure_keys_audited`] and the tests' `ensure_keys_reporting` (no `audit`): `audit`
    /// is the `key.created` event to record with new keys,
    /// in the keys' transaction.
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant, requests = requests.len()))]
    async fn ensure(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
        audit: Option<&AuditEvent>,
    ) -> Result<Vec<EnsuredKey>> {
        let cached: Option<Result<Vec<ContentKey>>> = requests
            .iter()
            .map(|r| self.cache.resolve(tenant, r))
            .collect();
        if let Some(result) = cached {
            return result.map(|keys| keys.into_iter().map(EnsuredKey::stored).collect());
        }
        // Read path: re-requests (the common case) need no transaction and take no lock.
        let mut found = Vec::with_capacity(requests.len());
        {
            let mut conn = self.acquire().await?;
            for request in requests {
                match once(self.resolve(&mut conn, tenant, request).await)? {
                    Some(stored) => found.push(stored),
                    None => break,
                }
            }
        }
        let keys = if found.len() == requests.len() {
            found.into_iter().map(EnsuredKey::stored).collect()
        } else {
            in_transaction!(self, "new keys", |conn| {
                let ensured = self.create_missing(conn, tenant, requests).await?;
                if let Some(event) = audit.and_then(|t| rules::created_event(t, &ensured)) {
                    audit::insert_audit(conn, &[event]).await?;
                }
                Ok(ensured)
            })?
        };
        for (request, ensured) in requests.iter().zip(&keys) {
            self.cache.remember(tenant, request, &ensured.key);
        }
        Ok(keys)
    }

    /// Connects to `url` (`postgres://…`), brings the schema up to date (safe while other
    /// nodes do the same: the migrator holds an advisory lock) and opens the store.
    pub async fn connect(url: &str, master: MasterKey) -> Result<Self> {
        let pool = connect_pool(url).await?;
        migrate(&pool).await?;
        Ok(Self {
            pool,
            sealer: KeySealer::new(master),
            cache: KeyCache::new(KEY_CACHE_CAPACITY),
        })
    }

    /// Brings the schema at `url` up to date without opening a store (`keyplex migrate`).
    pub async fn migrate_url(url: &str) -> Result<()> {
        let pool = connect_pool(url).await?;
        let outcome = migrate(&pool).await;
        pool.close().await;
        outcome
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn connect_pool(url: &str) -> Result<PgPool> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Internal(
            "database_url must start with postgres:// or postgresql://".into(),
        ));
    }
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| StoreError::Internal(format!("database_url is not a PostgreSQL URL: {e}")))?;
    // Durability and bounded waits are set per connection, whatever the server's defaults.
    let options = options.options([
        ("synchronous_commit", "on"),
        ("lock_timeout", LOCK_TIMEOUT),
        ("statement_timeout", STATEMENT_TIMEOUT),
    ]);
    PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| db_error("cannot connect to PostgreSQL", e))
}

async fn migrate(pool: &PgPool) -> Result<()> {
    sqlx::migrate!("migrations/postgres")
        .run(pool)
        .await
        .map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_error("cannot migrate the key store", e),
            other => StoreError::Internal(format!("cannot migrate the key store: {other}")),
        })
}

impl PostgresStore {
    async fn resolve(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        request: &KeyRequest,
    ) -> TxResult<Option<ContentKey>> {
        match request {
            KeyRequest::ByKid { candidate, .. } => {
                let Some(stored) = self.fetch_key(conn, tenant, &candidate.kid).await? else {
                    return Ok(None);
                };
                rules::check_stored(request, &stored)?;
                Ok(Some(stored))
            }
            KeyRequest::BySlot {
                slot, candidate, ..
            } => {
                let Some(slot_kid) = fetch_slot(conn, tenant, slot).await? else {
                    if self
                        .fetch_key(conn, tenant, &candidate.kid)
                        .await?
                        .is_some()
                    {
                        return Err(rules::kid_in_use(slot, candidate.kid).into());
                    }
                    return Ok(None);
                };
                let stored = self
                    .fetch_key(conn, tenant, &slot_kid)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt {
                        kid: slot_kid.to_string(),
                        reason: "bound to a key slot but missing from the key table".to_owned(),
                    })?;
                rules::check_stored(request, &stored)?;
                Ok(Some(stored))
            }
        }
    }

    /// The write path of a batch, inside its transaction: locks the identities it needs (see
    /// [`lock_identities`]), then re-resolves every request and claims what is still missing,
    /// in request order (a later request sees the rows of an earlier one, as in SQLite).
    async fn create_missing(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        requests: &[KeyRequest],
    ) -> TxResult<Vec<EnsuredKey>> {
        lock_identities(conn, tenant, requests).await?;
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(self.ensure_one(conn, tenant, request).await?);
        }
        Ok(answers)
    }

    async fn ensure_one(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        request: &KeyRequest,
    ) -> TxResult<EnsuredKey> {
        if let Some(stored) = self.resolve(conn, tenant, request).await? {
            return Ok(EnsuredKey::stored(stored));
        }
        let (key, slot) = rules::new_key(request);
        let now = time::OffsetDateTime::now_utc();
        match slot {
            None => {
                if self.insert_key(conn, tenant, &key, now).await? {
                    return Ok(EnsuredKey { key, created: true });
                }
                // Another node stored this key id since `resolve` looked (the insert waited
                // for its commit): its key is the key.
                match self.resolve(conn, tenant, request).await? {
                    Some(stored) => Ok(EnsuredKey::stored(stored)),
                    None => Err(StoreError::Internal(format!(
                        "key {} was neither stored nor storable",
                        key.kid
                    ))
                    .into()),
                }
            }
            Some(slot) => {
                if !claim_slot(conn, tenant, slot, &key.kid).await? {
                    // Another node claimed the slot first (its key is the key), or the
                    // candidate key id was bound to another slot meanwhile.
                    return match self.resolve(conn, tenant, request).await? {
                        Some(stored) => Ok(EnsuredKey::stored(stored)),
                        None => Err(rules::kid_in_use(slot, key.kid).into()),
                    };
                }
                if !self.insert_key(conn, tenant, &key, now).await? {
                    return Err(rules::kid_in_use(slot, key.kid).into());
                }
                Ok(EnsuredKey { key, created: true })
            }
        }
    }

    /// Inserts a key row unless its key id is taken; true when inserted.
    async fn insert_key(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        key: &ContentKey,
        created_at: time::OffsetDateTime,
    ) -> TxResult<bool> {
        let sealed = self
            .sealer
            .seal(tenant, &key.kid, &key.content_id, &key.key)?;
        let inserted = sqlx::query(
            "INSERT INTO content_keys \
             (tenant, kid, content_id, sealed_key, iv, track_type, period, origin, master_key_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (tenant, kid) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(key.kid.as_bytes().as_slice())
        .bind(key.content_id.as_str())
        .bind(sealed.bytes)
        .bind(key.iv.as_bytes().as_slice())
        .bind(key.track_type.as_ref().map(TrackType::as_str))
        .bind(period_column(key.period)?)
        .bind(origin_column(key.origin))
        .bind(sealed.sealed_by)
        .bind(created_at.unix_timestamp())
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(&format!("cannot store key {}", key.kid), e))?
        .rows_affected()
            == 1;
        if inserted {
            tracing::debug!(kid = %key.kid, content_id = %key.content_id, "created content key");
        }
        Ok(inserted)
    }

    async fn fetch_key(
        &self,
        conn: &mut PgConnection,
        tenant: &TenantId,
        kid: &KeyId,
    ) -> TxResult<Option<ContentKey>> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT content_id, sealed_key, iv, track_type, period, origin, master_key_id \
             FROM content_keys WHERE tenant = $1 AND kid = $2",
        )
        .bind(tenant.as_str())
        .bind(kid.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| classify(&format!("cannot read key {kid}"), e))?;
        Ok(row
            .map(|row| row.decode(&self.sealer, tenant, *kid))
            .transpose()?)
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        self.pool
            .acquire()
            .await
            .map_err(|e| db_error("cannot get a database connection", e))
    }
}

/// Takes a transaction advisory lock per identity (key id or slot) of the batch, in one global
/// order (sorted by hash), on whichever node: writers of overlapping batches then queue
/// instead of claiming rows in different orders, which deadlocks in PostgreSQL's unique-index
/// waits (and these waits are not always resolved by its deadlock detector). A hash collision
/// only makes two unrelated writers queue.
async fn lock_identities(
    conn: &mut PgConnection,
    tenant: &TenantId,
    requests: &[KeyRequest],
) -> TxResult<()> {
    const SEPARATOR: char = '\u{1f}';
    let identities: Vec<String> = requests
        .iter()
        .map(|request| match request {
            KeyRequest::ByKid { candidate, .. } => {
                format!("kid{SEPARATOR}{tenant}{SEPARATOR}{}", candidate.kid)
            }
            KeyRequest::BySlot { slot, .. } => format!(
                "slot{SEPARATOR}{tenant}{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}",
                slot.content_id,
                slot.track_type.as_str(),
                slot.period.index().map_or(-1, i128::from)
            ),
        })
        .collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(h) FROM \
         (SELECT DISTINCT hashtextextended(t, 11) AS h FROM unnest($1::text[]) AS t ORDER BY h) AS ordered",
    )
    .bind(&identities)
    .execute(&mut *conn)
    .await
    .map_err(|e| classify("cannot lock the batch's key identities", e))?;
    Ok(())
}

/// Binds `kid` to an empty slot; false when the slot (or the key id) is taken.
async fn claim_slot(
    conn: &mut PgConnection,
    tenant: &TenantId,
    slot: &KeySlot,
    kid: &KeyId,
) -> TxResult<bool> {
    Ok(sqlx::query(
        "INSERT INTO key_slots (tenant, content_id, track_type, period, kid) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(slot.content_id.as_str())
    .bind(slot.track_type.as_str())
    .bind(slot_period_column(slot.period)?)
    .bind(kid.as_bytes().as_slice())
    .execute(&mut *conn)
    .await
    .map_err(|e| classify(&format!("cannot bind key {kid} to its slot"), e))?
    .rows_affected()
        == 1)
}

async fn fetch_slot(
    conn: &mut PgConnection,
    tenant: &TenantId,
    slot: &KeySlot,
) -> TxResult<Option<KeyId>> {
    let kid: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT kid FROM key_slots WHERE tenant = $1 AND content_id = $2 AND track_type = $3 AND period = $4",
    )
    .bind(tenant.as_str())
    .bind(slot.content_id.as_str())
    .bind(slot.track_type.as_str())
    .bind(slot_period_column(slot.period)?)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify("cannot read a key slot", e))?;
    Ok(kid.map(|bytes| decode_kid(&bytes)).transpose()?)
}

/// A step's error outside a retrying transaction is final.
fn once<T>(result: TxResult<T>) -> Result<T> {
    result.map_err(|e| match e {
        TxError::Store(e) => e,
        TxError::Retry(message) => StoreError::Unavailable(format!("{message}; try again")),
    })
}

#[async_trait]
impl Keys for PostgresStore {
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
        let mut conn = self.acquire().await?;
        let key = once(self.fetch_key(&mut conn, tenant, kid).await)?;
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
        let content: Option<String> = sqlx::query_scalar(
            "SELECT content_id FROM content_keys WHERE tenant = $1 AND kid = $2",
        )
        .bind(tenant.as_str())
        .bind(kid.as_bytes().as_slice())
        .fetch_optional(&self.pool)
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
             WHERE k.tenant = $1 AND k.content_id = $2 \
             ORDER BY k.created_at, k.seq",
        )
        .bind(tenant.as_str())
        .bind(content_id.as_str())
        .fetch_all(&self.pool)
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
        // Content ids compare bytewise (COLLATE "C"), as in SQLite, so the `after` cursor and
        // the order agree whatever the database's collation.
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT content_id, count(*), min(created_at), max(created_at) FROM content_keys \
             WHERE tenant = $1 \
               AND ($2::text IS NULL OR position(lower($2::text) in lower(content_id)) > 0) \
               AND ($3::text IS NULL OR content_id COLLATE \"C\" > $3::text COLLATE \"C\") \
             GROUP BY content_id ORDER BY content_id COLLATE \"C\" LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(search.filter(|s| !s.is_empty()))
        .bind(after.map(ContentId::as_str))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("cannot list contents", e))?;
        rows.into_iter()
            .map(|(id, keys, first, last)| {
                let what = format!("content {id}");
                Ok(ContentSummary {
                    content_id: ContentId::parse(&id)
                        .map_err(|e| crate::columns::corrupt(&what, e))?,
                    keys: u64::try_from(keys).unwrap_or(0),
                    first_key_at: from_unix(first, &what)?,
                    last_key_at: from_unix(last, &what)?,
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("ping failed", e))?;
        Ok(())
    }
}

#[cfg(any(test, feature = "conformance"))]
#[async_trait]
impl crate::UnauditedKeys for PostgresStore {
    async fn ensure_keys_reporting(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
    ) -> Result<Vec<EnsuredKey>> {
        self.ensure(tenant, requests, None).await
    }
}

/// SQLSTATEs after which running the transaction again is the fix.
fn is_retryable(error: &sqlx::Error) -> bool {
    const SERIALIZATION_FAILURE: &str = "40001";
    const DEADLOCK_DETECTED: &str = "40P01";
    matches!(error, sqlx::Error::Database(db)
        if db.code().is_some_and(|c| c == SERIALIZATION_FAILURE || c == DEADLOCK_DETECTED))
}

/// [`db_error`] inside a transaction: deadlocks and serialization failures are retried.
fn classify(context: &str, error: sqlx::Error) -> TxError {
    if is_retryable(&error) {
        TxError::Retry(format!("{context}: {error}"))
    } else {
        TxError::Store(db_error(context, error))
    }
}

/// Maps a database error to the store's vocabulary: what a retry or an operator can fix
/// (connection lost, pool exhausted, lock or statement timeout, server shutting down, out of
/// resources) is `Unavailable` (HTTP 503).
fn db_error(context: &str, error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception · 53: insufficient resources · 57: operator
            // intervention (incl. 57014 statement timeout) · 58: system error ·
            // 55P03: lock not available · 40: transaction rollback (after the retries).
            ["08", "53", "57", "58", "40"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "55P03"
        }),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(format!("{context}: {error}"))
    } else {
        StoreError::Internal(format!("{context}: {error}"))
    }
}

/// A PostgreSQL URL for tests: `KEYPLEX_TEST_POSTGRES_URL`, else the machine's local server.
#[doc(hidden)]
pub fn test_server_url() -> String {
    std::env::var("KEYPLEX_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates a fresh, uniquely named database on the server of `server_url` and returns its URL
/// (tests: each gets an empty schema; nothing is shared between runs).
#[doc(hidden)]
pub async fn create_test_database(server_url: &str, prefix: &str) -> Result<String> {
    let name = format!(
        "{prefix}_{}",
        keyplex_crypto::random::random_token(10)
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Internal(format!(
            "bad test database name {name}"
        )));
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(server_url)
        .await
        .map_err(|e| db_error("cannot connect to the test PostgreSQL server", e))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .map_err(|e| db_error("cannot create a test database", e))?;
    pool.close().await;
    let mut url = server_url.to_owned();
    if let Some(slash) = url.rfind('/')
        && url[..slash].contains("://")
        && slash > url.find("://").map_or(0, |i| i + 2)
    {
        url.truncate(slash);
    }
    Ok(format!("{url}/{name}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::sync::Arc;

    use keyplex_crypto::random;
    use keyplex_types::KeyPeriod;

    use super::*;
    use crate::prelude::*;
    use crate::{KeyMaterial, NewSession, SessionOpen, UnauditedKeys as _};

    fn master() -> MasterKey {
        MasterKey::from_hex(&"6b".repeat(32)).unwrap()
    }

    async fn fresh_url() -> String {
        create_test_database(&test_server_url(), "keyplex_store_test")
            .await
            .expect("PostgreSQL must run for the store tests (127.0.0.1:5432; .ci/run starts it)")
    }

    fn candidate() -> KeyMaterial {
        KeyMaterial {
            kid: random::new_key_id().unwrap(),
            key: random::new_key_value().unwrap(),
            iv: random::new_iv().unwrap(),
        }
    }

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    /// The conformance suite, one test per scenario, each on a fresh database.
    mod conformance {
        crate::conformance_tests!(async {
            super::PostgresStore::connect(&super::fresh_url().await, super::master())
                .await
                .unwrap()
        });
    }

    /// Two stores on one database are two nodes: the database decides every race.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_nodes_racing_for_the_same_slots_get_one_key_each() {
        let url = fresh_url().await;
        let nodes = [
            Arc::new(PostgresStore::connect(&url, master()).await.unwrap()),
            Arc::new(PostgresStore::connect(&url, master()).await.unwrap()),
        ];
        let slots: Vec<KeySlot> = (0..5)
            .map(|i| KeySlot {
                content_id: ContentId::parse(&format!("live-{i}")).unwrap(),
                track_type: TrackType::parse(["SD", "HD", "AUDIO"][i % 3]).unwrap(),
                period: KeyPeriod::Index(i as u64),
            })
            .collect();
        let mut tasks = Vec::new();
        for n in 0..40 {
            let node = nodes[n % 2].clone();
            // Each racer asks for every slot, in its own order.
            let mut mine = slots.clone();
            mine.rotate_left(n % slots.len());
            tasks.push(tokio::spawn(async move {
                let requests: Vec<KeyRequest> = mine
                    .iter()
                    .map(|slot| KeyRequest::BySlot {
                        slot: slot.clone(),
                        candidate: candidate(),
                        supplied: false,
                        iv_supplied: false,
                    })
                    .collect();
                let keys = node.ensure_keys(&tenant(), &requests).await.unwrap();
                mine.into_iter().zip(keys).collect::<Vec<_>>()
            }));
        }
        let mut by_slot = std::collections::HashMap::new();
        for task in tasks {
            for (slot, key) in task.await.unwrap() {
                let first = by_slot.entry(slot).or_insert_with(|| key.clone());
                assert_eq!(*first, key, "two keys for one slot");
            }
        }
        assert_eq!(by_slot.len(), slots.len());
        // What one node created, the other reads from the database (not its cache).
        for (slot, key) in &by_slot {
            let listed = nodes[1]
                .list_keys(&tenant(), &slot.content_id)
                .await
                .unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].kid, key.kid);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_session_limit_holds_across_nodes() {
        let url = fresh_url().await;
        let nodes = [
            Arc::new(PostgresStore::connect(&url, master()).await.unwrap()),
            Arc::new(PostgresStore::connect(&url, master()).await.unwrap()),
            Arc::new(PostgresStore::connect(&url, master()).await.unwrap()),
        ];
        let now = 1_900_000_000;
        let mut tasks = Vec::new();
        for n in 0..30 {
            let node = nodes[n % 3].clone();
            tasks.push(tokio::spawn(async move {
                let session = NewSession {
                    id: format!("session-{n}"),
                    user: "alice".into(),
                    entitlement: "{}".into(),
                    heartbeat_seconds: 30,
                    created_at: now,
                    expires_at: now + 60,
                };
                node.open_session(&tenant(), &session, Some(3), now)
                    .await
                    .unwrap()
            }));
        }
        let mut opened = 0;
        for task in tasks {
            if task.await.unwrap() == SessionOpen::Opened {
                opened += 1;
            }
        }
        assert_eq!(opened, 3);
        let live = nodes[0]
            .count_live_sessions(Some(&tenant()), now)
            .await
            .unwrap();
        assert_eq!(live, 3);
    }

    #[tokio::test]
    async fn a_store_without_its_server_is_unavailable() {
        let err = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none", master())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(matches!(
            PostgresStore::connect("mysql://x", master())
                .await
                .unwrap_err(),
            StoreError::Internal(_)
        ));
    }

    #[tokio::test]
    async fn keys_are_sealed_in_the_database() {
        let url = fresh_url().await;
        let store = PostgresStore::connect(&url, master()).await.unwrap();
        let material = candidate();
        let key = store
            .ensure_keys(
                &tenant(),
                &[KeyRequest::ByKid {
                    content_id: ContentId::parse("movie").unwrap(),
                    candidate: material.clone(),
                    key_supplied: false,
                    iv_supplied: false,
                    track_type: None,
                    period: KeyPeriod::Vod,
                }],
            )
            .await
            .unwrap();
        let sealed: Vec<u8> = sqlx::query_scalar("SELECT sealed_key FROM content_keys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(sealed.windows(16).all(|w| w != key[0].key.expose()));
        // A node with another master key reads Corrupt, not a wrong key.
        let other = PostgresStore::connect(&url, MasterKey::generate().unwrap())
            .await
            .unwrap();
        assert!(matches!(
            other.get_key(&tenant(), &material.kid).await,
            Err(StoreError::Corrupt { .. })
        ));
    }
}

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
        let core: &Core = $core;
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

mod admin;

use crate::cache::{KEY_CACHE_CAPACITY, KeyCache};
use crate::columns::{
    InfoRow, KeyRow, SessionRow, decode_kid, origin_column, period_column, slot_period_column,
    unix_column,
};
use crate::rules::{self, KeySealer};
use crate::{
    AuditEvent, EnsuredKey, KeyInfo, KeyRequest, KeyStore, NewSession, Result, Session,
    SessionOpen, StoreError,
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
    core: Core,
}

struct Core {
    pool: PgPool,
    sealer: KeySealer,
    cache: KeyCache,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("master_key", &self.core.sealer.fingerprint())
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
    /// Both `ensure_keys_*`: `audit` is the `key.created` event to record with new keys,
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
            .map(|r| self.core.cache.resolve(tenant, r))
            .collect();
        if let Some(result) = cached {
            return result.map(|keys| keys.into_iter().map(EnsuredKey::stored).collect());
        }
        // Read path: re-requests (the common case) need no transaction and take no lock.
        let mut found = Vec::with_capacity(requests.len());
        {
            let mut conn = self.core.acquire().await?;
            for request in requests {
                match once(self.core.resolve(&mut conn, tenant, request).await)? {
                    Some(stored) => found.push(stored),
                    None => break,
                }
            }
        }
        let keys = if found.len() == requests.len() {
            found.into_iter().map(EnsuredKey::stored).collect()
        } else {
            in_transaction!(&self.core, "new keys", |conn| {
                let ensured = self.core.create_missing(conn, tenant, requests).await?;
                if let Some(event) = audit.and_then(|t| rules::created_event(t, &ensured)) {
                    admin::insert_audit(conn, &[event]).await?;
                }
                Ok(ensured)
            })?
        };
        for (request, ensured) in requests.iter().zip(&keys) {
            self.core.cache.remember(tenant, request, &ensured.key);
        }
        Ok(keys)
    }

    /// Connects to `url` (`postgres://…`), brings the schema up to date (safe while other
    /// nodes do the same: the migrator holds an advisory lock) and opens the store.
    pub async fn connect(url: &str, master: MasterKey) -> Result<Self> {
        let pool = connect_pool(url).await?;
        migrate(&pool).await?;
        Ok(Self {
            core: Core {
                pool,
                sealer: KeySealer::new(master),
                cache: KeyCache::new(KEY_CACHE_CAPACITY),
            },
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
        self.core.pool.close().await;
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

impl Core {
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
impl KeyStore for PostgresStore {
    async fn ensure_keys_reporting(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
    ) -> Result<Vec<EnsuredKey>> {
        self.ensure(tenant, requests, None).await
    }

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
        if let Some(key) = self.core.cache.get(tenant, kid) {
            return Ok(Some(key));
        }
        let mut conn = self.core.acquire().await?;
        let key = once(self.core.fetch_key(&mut conn, tenant, kid).await)?;
        if let Some(key) = &key {
            self.core.cache.remember_key(tenant, key);
        }
        Ok(key)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant, kid = %kid))]
    async fn key_content(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentId>> {
        if let Some(key) = self.core.cache.get(tenant, kid) {
            return Ok(Some(key.content_id.clone()));
        }
        let content: Option<String> = sqlx::query_scalar(
            "SELECT content_id FROM content_keys WHERE tenant = $1 AND kid = $2",
        )
        .bind(tenant.as_str())
        .bind(kid.as_bytes().as_slice())
        .fetch_optional(&self.core.pool)
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
        .fetch_all(&self.core.pool)
        .await
        .map_err(|e| db_error(&format!("cannot list the keys of {content_id}"), e))?;
        rows.into_iter().map(|row| row.decode(content_id)).collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.core.pool)
            .await
            .map_err(|e| db_error("ping failed", e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn open_session(
        &self,
        tenant: &TenantId,
        session: &NewSession,
        max_streams: Option<u32>,
        now: u64,
    ) -> Result<SessionOpen> {
        let now_col = unix_column(now)?;
        // Expired sessions of the tenant go, a few at a time, skipping rows another node is
        // deleting: they count no more and are never read.
        sqlx::query(
            "DELETE FROM sessions WHERE ctid IN (SELECT ctid FROM sessions \
             WHERE tenant = $1 AND expires_at <= $2 LIMIT 100 FOR UPDATE SKIP LOCKED)",
        )
        .bind(tenant.as_str())
        .bind(now_col)
        .execute(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot delete expired sessions", e))?;
        in_transaction!(&self.core, "a session", |conn| {
            // One opening per (tenant, user) at a time, on every node: the count and the
            // insert below are then atomic with respect to each other.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
                .bind(format!(
                    "keyplex-session {} {}",
                    tenant.as_str(),
                    session.user
                ))
                .execute(&mut *conn)
                .await
                .map_err(|e| classify("cannot lock the user's sessions", e))?;
            if let Some(max) = max_streams {
                let active: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM sessions WHERE tenant = $1 AND user_id = $2 AND expires_at > $3",
                    )
                    .bind(tenant.as_str())
                    .bind(&session.user)
                    .bind(now_col)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| classify("cannot count sessions", e))?;
                if active >= i64::from(max) {
                    return Ok(SessionOpen::LimitReached {
                        active: u32::try_from(active).unwrap_or(u32::MAX),
                    });
                }
            }
            sqlx::query(
                    "INSERT INTO sessions (tenant, session_id, user_id, entitlement, heartbeat_seconds, \
                     key_systems, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, '', $6, $7)",
                )
                .bind(tenant.as_str())
                .bind(crate::rules::session_key(&session.id))
                .bind(&session.user)
                .bind(&session.entitlement)
                .bind(unix_column(session.heartbeat_seconds)?)
                .bind(unix_column(session.created_at)?)
                .bind(unix_column(session.expires_at)?)
                .execute(&mut *conn)
                .await
                .map_err(|e| classify("cannot store the session", e))?;
            Ok(SessionOpen::Opened)
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn get_session(&self, tenant: &TenantId, id: &str, now: u64) -> Result<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT session_id, user_id, entitlement, heartbeat_seconds, key_systems, created_at, \
             expires_at FROM sessions WHERE tenant = $1 AND session_id = $2 AND expires_at > $3",
        )
        .bind(tenant.as_str())
        .bind(crate::rules::session_key(id))
        .bind(unix_column(now)?)
        .fetch_optional(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot read a session", e))?;
        row.map(SessionRow::decode).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &str,
        now: u64,
        expires_at: u64,
        licensed: Option<&str>,
    ) -> Result<Option<Session>> {
        if let Some(system) = licensed
            && (system.is_empty() || system.contains(char::is_whitespace))
        {
            return Err(StoreError::Internal(format!(
                "key system name {system:?} is empty or contains whitespace"
            )));
        }
        // One statement: the expiry check, the extension and the key system append are atomic
        // (the row lock orders concurrent heartbeats from several nodes).
        let row: Option<SessionRow> = sqlx::query_as(
            "UPDATE sessions SET expires_at = GREATEST(expires_at, $1), key_systems = CASE \
               WHEN $2::text IS NULL OR position(' ' || $2::text || ' ' in ' ' || key_systems || ' ') > 0 THEN key_systems \
               WHEN key_systems = '' THEN $2::text \
               ELSE key_systems || ' ' || $2::text END \
             WHERE tenant = $3 AND session_id = $4 AND expires_at > $5 \
             RETURNING session_id, user_id, entitlement, heartbeat_seconds, key_systems, created_at, expires_at",
        )
        .bind(unix_column(expires_at)?)
        .bind(licensed)
        .bind(tenant.as_str())
        .bind(crate::rules::session_key(id))
        .bind(unix_column(now)?)
        .fetch_optional(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot update a session", e))?;
        row.map(SessionRow::decode).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn close_session(&self, tenant: &TenantId, id: &str, now: u64) -> Result<bool> {
        let live: Option<bool> = sqlx::query_scalar(
            "DELETE FROM sessions WHERE tenant = $1 AND session_id = $2 RETURNING expires_at > $3",
        )
        .bind(tenant.as_str())
        .bind(crate::rules::session_key(id))
        .bind(unix_column(now)?)
        .fetch_optional(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot delete a session", e))?;
        Ok(live.unwrap_or(false))
    }

    async fn spend_token_id(
        &self,
        tenant: &TenantId,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        // One statement: the row lock decides between nodes presenting the same id at once.
        let first = sqlx::query(
            "INSERT INTO used_token_ids (tenant, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant, jti) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE used_token_ids.expires_at < $4",
        )
        .bind(tenant.as_str())
        .bind(jti)
        .bind(unix_column(expires_at)?)
        .bind(unix_column(now)?)
        .execute(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot record a token id", e))?
        .rows_affected()
            == 1;
        Ok(first)
    }

    async fn purge_token_ids(&self, now: u64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM used_token_ids WHERE expires_at < $1")
                .bind(unix_column(now)?)
                .execute(&self.core.pool)
                .await
                .map_err(|e| db_error("cannot purge token ids", e))?
                .rows_affected(),
        )
    }

    async fn count_live_sessions(&self, tenant: Option<&TenantId>, now: u64) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sessions WHERE ($1::text IS NULL OR tenant = $1::text) AND expires_at > $2",
        )
        .bind(tenant.map(TenantId::as_str))
        .bind(unix_column(now)?)
        .fetch_one(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot count sessions", e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn live_sessions_of(
        &self,
        tenant: &TenantId,
        user: &str,
        now: u64,
    ) -> Result<Vec<Session>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT session_id, user_id, entitlement, heartbeat_seconds, key_systems, created_at, \
             expires_at FROM sessions WHERE tenant = $1 AND user_id = $2 AND expires_at > $3 \
             ORDER BY created_at DESC LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(unix_column(now)?)
        .bind(crate::MAX_USER_SESSIONS_LISTED)
        .fetch_all(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot read a user's sessions", e))?;
        rows.into_iter().map(SessionRow::decode).collect()
    }

    async fn put_content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
        policy: &str,
        at: time::OffsetDateTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO content_policies (tenant, content_id, policy, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, content_id) \
             DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str())
        .bind(content_id.as_str())
        .bind(policy)
        .bind(crate::columns::unix_ms(at)?)
        .execute(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot store a content licence policy", e))?;
        Ok(())
    }

    async fn content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
    ) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT policy FROM content_policies WHERE tenant = $1 AND content_id = $2",
        )
        .bind(tenant.as_str())
        .bind(content_id.as_str())
        .fetch_optional(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot read a content licence policy", e))
    }

    async fn all_content_policies(&self) -> Result<Vec<crate::StoredContentPolicy>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT tenant, content_id, policy, updated_at FROM content_policies \
             ORDER BY tenant, content_id",
        )
        .fetch_all(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot list content licence policies", e))?;
        rows.into_iter()
            .map(|(tenant, content_id, policy, updated_at)| {
                let corrupt = |e: String| crate::columns::corrupt("a content licence policy", e);
                Ok(crate::StoredContentPolicy {
                    tenant: TenantId::parse(&tenant).map_err(|e| corrupt(e.to_string()))?,
                    content_id: ContentId::parse(&content_id)
                        .map_err(|e| corrupt(e.to_string()))?,
                    policy,
                    updated_at: time::OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(updated_at) * 1_000_000,
                    )
                    .map_err(|e| corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn delete_content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
    ) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM content_policies WHERE tenant = $1 AND content_id = $2")
                .bind(tenant.as_str())
                .bind(content_id.as_str())
                .execute(&self.core.pool)
                .await
                .map_err(|e| db_error("cannot remove a content licence policy", e))?
                .rows_affected()
                > 0,
        )
    }

    async fn registry(&self) -> Result<crate::Registry> {
        self.core.registry().await
    }

    async fn registry_version(&self) -> Result<i64> {
        self.core.registry_version().await
    }

    async fn create_tenant(&self, tenant: &crate::StoredTenant) -> Result<bool> {
        self.core.create_tenant(tenant).await
    }

    async fn set_tenant_disabled(
        &self,
        tenant: &TenantId,
        disabled: bool,
        now: time::OffsetDateTime,
    ) -> Result<()> {
        self.core.set_tenant_disabled(tenant, disabled, now).await
    }

    async fn add_credential(&self, credential: &crate::StoredCredential) -> Result<()> {
        self.core.add_credential(credential).await
    }

    async fn revoke_credential(&self, tenant: &TenantId, id: &str) -> Result<bool> {
        self.core.revoke_credential(tenant, id).await
    }

    async fn put_drm_system(&self, system: &crate::StoredDrmSystem) -> Result<bool> {
        self.core.put_drm_system(system).await
    }

    async fn remove_drm_system(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        self.core.remove_drm_system(tenant, name).await
    }

    async fn append_audit(&self, events: &[crate::AuditEvent]) -> Result<()> {
        self.core.append_audit(events).await
    }

    async fn query_audit(&self, query: &crate::AuditQuery) -> Result<Vec<crate::AuditEvent>> {
        self.core.query_audit(query).await
    }

    async fn purge_audit(&self, before: time::OffsetDateTime) -> Result<u64> {
        self.core.purge_audit(before).await
    }

    async fn add_stats(&self, counts: &[crate::StatsCount]) -> Result<()> {
        self.core.add_stats(counts).await
    }

    async fn read_stats(
        &self,
        tenant: Option<&str>,
        from: u64,
        until: u64,
    ) -> Result<Vec<crate::StatsCount>> {
        self.core.read_stats(tenant, from, until).await
    }

    async fn purge_stats(&self, before: u64) -> Result<u64> {
        self.core.purge_stats(before).await
    }

    async fn list_contents(
        &self,
        tenant: &TenantId,
        search: Option<&str>,
        after: Option<&ContentId>,
        limit: u32,
    ) -> Result<Vec<crate::ContentSummary>> {
        self.core.list_contents(tenant, search, after, limit).await
    }

    async fn tenants_with_keys(&self) -> Result<Vec<TenantId>> {
        self.core.tenants_with_keys().await
    }

    async fn export_keys(&self, tenant: &TenantId) -> Result<Vec<crate::ExportedKey>> {
        self.core.export_keys(tenant).await
    }

    async fn import_keys(
        &self,
        tenant: &TenantId,
        keys: &[crate::ExportedKey],
    ) -> Result<crate::ImportOutcome> {
        self.core.import_keys(tenant, keys).await
    }

    async fn sealing_fingerprints(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT master_key_id FROM content_keys UNION SELECT master_key_id FROM credentials",
        )
        .fetch_all(&self.core.pool)
        .await
        .map_err(|e| db_error("cannot read master key fingerprints", e))
    }

    async fn rotate_master_key(&self, new: MasterKey) -> Result<crate::RotationReport> {
        self.core.rotate_master_key(new).await
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
    use crate::KeyMaterial;

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_store_passes_the_conformance_suite() {
        let store = PostgresStore::connect(&fresh_url().await, master())
            .await
            .unwrap();
        crate::conformance::run(Arc::new(store)).await;
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
            .fetch_one(&store.core.pool)
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

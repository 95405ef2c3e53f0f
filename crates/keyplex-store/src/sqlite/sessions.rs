//! The SQLite side of player sessions and single-use token ids. Writes go through the pool's
//! single writer connection.

use async_trait::async_trait;
use keyplex_types::TenantId;
use sqlx::Row as _;

use super::{SqliteStore, db_error};
use crate::columns::{SessionRow, unix_column};
use crate::{NewSession, Result, Session, SessionOpen, Sessions, StoreError};

#[async_trait]
impl Sessions for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn open_session(
        &self,
        tenant: &TenantId,
        session: &NewSession,
        max_streams: Option<u32>,
        now: u64,
    ) -> Result<SessionOpen> {
        let now_col = unix_column(now)?;
        // The count and the insert happen in one `BEGIN IMMEDIATE` transaction on the single
        // writer connection: concurrent openings (in this process or another one on the same
        // file) are serialized, so the limit holds.
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_error("cannot start a write transaction", e))?;
        // Expired sessions of this tenant go first: they count no more and are never read.
        sqlx::query("DELETE FROM sessions WHERE tenant = ? AND expires_at <= ?")
            .bind(tenant.as_str())
            .bind(now_col)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("cannot delete expired sessions", e))?;
        if let Some(max) = max_streams {
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sessions WHERE tenant = ? AND user_id = ? AND expires_at > ?",
            )
            .bind(tenant.as_str())
            .bind(&session.user)
            .bind(now_col)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error("cannot count sessions", e))?;
            if active >= i64::from(max) {
                tx.rollback()
                    .await
                    .map_err(|e| db_error("cannot end a transaction", e))?;
                return Ok(SessionOpen::LimitReached {
                    active: u32::try_from(active).unwrap_or(u32::MAX),
                });
            }
        }
        sqlx::query(
            "INSERT INTO sessions (tenant, session_id, user_id, entitlement, heartbeat_seconds, \
             key_systems, created_at, expires_at) VALUES (?, ?, ?, ?, ?, '', ?, ?)",
        )
        .bind(tenant.as_str())
        .bind(crate::rules::session_key(&session.id))
        .bind(&session.user)
        .bind(&session.entitlement)
        .bind(unix_column(session.heartbeat_seconds)?)
        .bind(unix_column(session.created_at)?)
        .bind(unix_column(session.expires_at)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("cannot store the session", e))?;
        tx.commit()
            .await
            .map_err(|e| db_error("cannot commit the session", e))?;
        Ok(SessionOpen::Opened)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn get_session(&self, tenant: &TenantId, id: &str, now: u64) -> Result<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT session_id, user_id, entitlement, heartbeat_seconds, key_systems, created_at, \
             expires_at FROM sessions WHERE tenant = ? AND session_id = ? AND expires_at > ?",
        )
        .bind(tenant.as_str())
        .bind(crate::rules::session_key(id))
        .bind(unix_column(now)?)
        .fetch_optional(&self.reader)
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
        // One statement: the expiry check, the extension and the key system append are atomic.
        let row: Option<SessionRow> = sqlx::query_as(
            "UPDATE sessions SET expires_at = max(expires_at, ?1), key_systems = CASE \
               WHEN ?2 IS NULL OR instr(' ' || key_systems || ' ', ' ' || ?2 || ' ') > 0 THEN key_systems \
               WHEN key_systems = '' THEN ?2 \
               ELSE key_systems || ' ' || ?2 END \
             WHERE tenant = ?3 AND session_id = ?4 AND expires_at > ?5 \
             RETURNING session_id, user_id, entitlement, heartbeat_seconds, key_systems, created_at, expires_at",
        )
        .bind(unix_column(expires_at)?)
        .bind(licensed)
        .bind(tenant.as_str())
        .bind(crate::rules::session_key(id))
        .bind(unix_column(now)?)
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| db_error("cannot update a session", e))?;
        row.map(SessionRow::decode).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tenant = %tenant))]
    async fn close_session(&self, tenant: &TenantId, id: &str, now: u64) -> Result<bool> {
        let deleted = sqlx::query(
            "DELETE FROM sessions WHERE tenant = ? AND session_id = ? RETURNING expires_at > ?",
        )
        .bind(tenant.as_str())
        .bind(crate::rules::session_key(id))
        .bind(unix_column(now)?)
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| db_error("cannot delete a session", e))?;
        Ok(deleted.is_some_and(|row| row.get::<bool, _>(0)))
    }

    async fn live_sessions_of(
        &self,
        tenant: &TenantId,
        user: &str,
        now: u64,
    ) -> Result<Vec<Session>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT session_id, user_id, entitlement, heartbeat_seconds, key_systems, created_at, \
             expires_at FROM sessions WHERE tenant = ? AND user_id = ? AND expires_at > ? \
             ORDER BY created_at DESC LIMIT ?",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(unix_column(now)?)
        .bind(crate::MAX_USER_SESSIONS_LISTED)
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error("cannot read a user's sessions", e))?;
        rows.into_iter().map(SessionRow::decode).collect()
    }

    async fn count_live_sessions(&self, tenant: Option<&TenantId>, now: u64) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sessions WHERE (?1 IS NULL OR tenant = ?1) AND expires_at > ?2",
        )
        .bind(tenant.map(TenantId::as_str))
        .bind(unix_column(now)?)
        .fetch_one(&self.reader)
        .await
        .map_err(|e| db_error("cannot count sessions", e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn spend_token_id(
        &self,
        tenant: &TenantId,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool> {
        let (expires_at, now) = (unix_column(expires_at)?, unix_column(now)?);
        self.write("a token id", async |conn| {
            // Inserted, or an expired earlier use replaced: the first (valid) use.
            let first = sqlx::query(
                "INSERT INTO used_token_ids (tenant, jti, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant, jti) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE used_token_ids.expires_at < ?4",
            )
            .bind(tenant.as_str())
            .bind(jti)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("cannot record a token id", e))?
            .rows_affected()
                == 1;
            Ok(first)
        })
        .await
    }

    async fn purge_token_ids(&self, now: u64) -> Result<u64> {
        let now = unix_column(now)?;
        self.write("a token id purge", async |conn| {
            sqlx::query("DELETE FROM used_token_ids WHERE expires_at < ?")
                .bind(now)
                .execute(&mut *conn)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| db_error("cannot purge token ids", e))
        })
        .await
    }
}

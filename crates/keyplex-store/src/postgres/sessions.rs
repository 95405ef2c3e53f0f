//! The PostgreSQL side of player sessions and single-use token ids.

use async_trait::async_trait;
use keyplex_types::TenantId;
use sqlx::PgConnection;

use super::{
    PostgresStore, TRANSACTION_ATTEMPTS, TxError, TxResult, classify, db_error, retry_pause,
};
use crate::columns::{SessionRow, unix_column};
use crate::{NewSession, Result, Session, SessionOpen, Sessions, StoreError};

#[async_trait]
impl Sessions for PostgresStore {
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
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("cannot delete expired sessions", e))?;
        in_transaction!(self, "a session", |conn| {
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
        .fetch_optional(&self.pool)
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
        .fetch_optional(&self.pool)
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
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("cannot delete a session", e))?;
        Ok(live.unwrap_or(false))
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
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("cannot read a user's sessions", e))?;
        rows.into_iter().map(SessionRow::decode).collect()
    }

    async fn count_live_sessions(&self, tenant: Option<&TenantId>, now: u64) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sessions WHERE ($1::text IS NULL OR tenant = $1::text) AND expires_at > $2",
        )
        .bind(tenant.map(TenantId::as_str))
        .bind(unix_column(now)?)
        .fetch_one(&self.pool)
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
        .execute(&self.pool)
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
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("cannot purge token ids", e))?
                .rows_affected(),
        )
    }
}

//! The PostgreSQL side of the audit trail.

use async_trait::async_trait;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{
    PostgresStore, TRANSACTION_ATTEMPTS, TxError, TxResult, classify, db_error, retry_pause,
};
use crate::columns::{AuditRow, key_ids_column, unix_ms};
use crate::{Audit, AuditEvent, AuditQuery, Result, StoreError};

/// Audit rows per INSERT statement (PostgreSQL allows 65 535 bound parameters).
const AUDIT_ROWS_PER_STATEMENT: usize = 500;
/// Audit rows deleted per retention transaction.
const PURGE_BATCH: i64 = 1024;

/// Inserts audit rows on `conn` (inside the caller's transaction).
pub(super) async fn insert_audit(conn: &mut PgConnection, events: &[AuditEvent]) -> TxResult<()> {
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        rows.push((unix_ms(event.at)?, event));
    }
    for chunk in rows.chunks(AUDIT_ROWS_PER_STATEMENT) {
        let mut query = sqlx::QueryBuilder::new(
            "INSERT INTO audit_events (at_ms, tenant, action, interface, credential, \
             client, content_id, key_ids, outcome, detail) ",
        );
        query.push_values(chunk, |mut row, (at_ms, event)| {
            row.push_bind(*at_ms)
                .push_bind(event.tenant.clone())
                .push_bind(event.action.as_str())
                .push_bind(event.interface.clone())
                .push_bind(event.credential.clone())
                .push_bind(event.client.clone())
                .push_bind(event.content_id.as_ref().map(|c| c.as_str().to_owned()))
                .push_bind(key_ids_column(&event.key_ids))
                .push_bind(event.outcome.clone())
                .push_bind(event.detail.clone());
        });
        query
            .build()
            .execute(&mut *conn)
            .await
            .map_err(|e| classify("cannot append audit events", e))?;
    }
    Ok(())
}

#[async_trait]
impl Audit for PostgresStore {
    async fn append_audit(&self, events: std::sync::Arc<[AuditEvent]>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        in_transaction!(self, "audit events", |conn| insert_audit(conn, &events)
            .await)
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut query = sqlx::QueryBuilder::new(
            "SELECT id, at_ms, tenant, action, interface, credential, client, content_id, \
             key_ids, outcome, detail FROM audit_events WHERE TRUE",
        );
        if let Some(tenant) = &q.tenant {
            query.push(" AND tenant = ").push_bind(tenant.clone());
        }
        if let Some(content) = &q.content_id {
            query
                .push(" AND content_id = ")
                .push_bind(content.as_str().to_owned());
        }
        if let Some(action) = q.action {
            query.push(" AND action = ").push_bind(action.as_str());
        }
        if let Some(since) = q.since {
            query.push(" AND at_ms >= ").push_bind(unix_ms(since)?);
        }
        if let Some(until) = q.until {
            query.push(" AND at_ms < ").push_bind(unix_ms(until)?);
        }
        if let Some(before) = q.before_id {
            query.push(" AND id < ").push_bind(before);
        }
        if let Some(after) = q.after_id {
            query.push(" AND id > ").push_bind(after);
            query.push(" ORDER BY id LIMIT ");
        } else {
            query.push(" ORDER BY at_ms DESC, id DESC LIMIT ");
        }
        query.push_bind(i64::from(q.limit));
        let rows: Vec<AuditRow> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("cannot read the audit trail", e))?;
        rows.into_iter().map(AuditRow::decode).collect()
    }

    async fn purge_audit(&self, before: OffsetDateTime) -> Result<u64> {
        let before = unix_ms(before)?;
        let mut purged = 0;
        loop {
            // Small transactions; rows another node is purging are skipped, not waited for.
            let deleted = sqlx::query(
                "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events \
                 WHERE at_ms < $1 ORDER BY at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("cannot purge audit events", e))?
            .rows_affected();
            purged += deleted;
            if deleted == 0 {
                return Ok(purged);
            }
        }
    }
}

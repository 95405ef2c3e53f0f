//! The SQLite side of the audit trail. Appends go to the key writer's thread (the same
//! connection that records `key.created` events with the keys); purges go through the pool's
//! single writer connection, in small transactions.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{SqliteStore, db_error};
use crate::columns::{AuditRow, unix_ms};
use crate::{Audit, AuditEvent, AuditQuery, Result};

/// Audit rows deleted per retention transaction: small enough that key creation waits at most
/// a few milliseconds for the write lock.
const PURGE_BATCH: i64 = 1024;

#[async_trait]
impl Audit for SqliteStore {
    async fn append_audit(&self, events: std::sync::Arc<[AuditEvent]>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.key_writer.append_audit(events).await
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let mut query = sqlx::QueryBuilder::new(
            "SELECT id, at_ms, tenant, action, interface, credential, client, content_id, \
             key_ids, outcome, detail FROM audit_events WHERE 1 = 1",
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
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error("cannot read the audit trail", e))?;
        rows.into_iter().map(AuditRow::decode).collect()
    }

    async fn purge_audit(&self, before: OffsetDateTime) -> Result<u64> {
        let before = unix_ms(before)?;
        let mut purged = 0;
        loop {
            // Small batches: key creation waits for the write lock at most a few milliseconds.
            let deleted = self
                .write("an audit purge", async |conn| {
                    sqlx::query(
                        "DELETE FROM audit_events WHERE id IN \
                         (SELECT id FROM audit_events WHERE at_ms < ? ORDER BY at_ms LIMIT ?)",
                    )
                    .bind(before)
                    .bind(PURGE_BATCH)
                    .execute(&mut *conn)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(|e| db_error("cannot purge audit events", e))
                })
                .await?;
            purged += deleted;
            if deleted == 0 {
                return Ok(purged);
            }
        }
    }
}

//! The PostgreSQL side of what the admin API needs (see `sqlite/admin.rs` for the SQLite
//! one): tenants and credentials, the audit trail, listings, export/import and master key
//! rotation. Every change to tenants or credentials bumps `registry_version` in the same
//! transaction; every node polls it and reloads.

use keyplex_crypto::master::MasterKey;
use keyplex_types::{ContentId, KeyId, KeySlot, TenantId};
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{
    Core, TRANSACTION_ATTEMPTS, TxError, TxResult, classify, db_error, fetch_slot, retry_pause,
};
use crate::StoreError;
use crate::columns::{
    AuditRow, CredentialRow, DrmSystemRow, FullKeyRow, StatsRow, TenantRow, count_column,
    from_unix, key_ids_column, slot_period_column, unix_column, unix_ms,
};
use crate::rules::{self, ImportStep};
use crate::{
    AuditEvent, AuditQuery, ContentSummary, ExportedKey, ImportOutcome, Registry, Result,
    RotationReport, StatsCount, StoredCredential, StoredDrmSystem, StoredTenant,
};

/// Rows re-sealed per transaction during a master key rotation.
const REWRAP_BATCH: i64 = 256;
/// Dashboard rows per INSERT statement (6 parameters each).
const STATS_ROWS_PER_STATEMENT: usize = 500;
/// Audit rows per INSERT statement (PostgreSQL allows 65 535 bound parameters).
const AUDIT_ROWS_PER_STATEMENT: usize = 500;
/// Audit rows deleted per retention transaction.
const PURGE_BATCH: i64 = 1024;

async fn bump_version(conn: &mut PgConnection) -> TxResult<()> {
    sqlx::query("UPDATE registry_version SET version = version + 1 WHERE singleton = 1")
        .execute(&mut *conn)
        .await
        .map_err(|e| classify("cannot bump the registry version", e))?;
    Ok(())
}

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

impl Core {
    pub(super) async fn registry(&self) -> Result<Registry> {
        // One snapshot: the version matches the rows read with it.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| db_error("cannot start a read", e))?;
        let version: i64 =
            sqlx::query_scalar("SELECT version FROM registry_version WHERE singleton = 1")
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_error("cannot read the registry version", e))?;
        let tenants: Vec<TenantRow> =
            sqlx::query_as("SELECT id, settings, disabled, created_at FROM tenants ORDER BY id")
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error("cannot read tenants", e))?;
        let credentials: Vec<CredentialRow> = sqlx::query_as(
            "SELECT id, tenant, kind, label, sealed_spec, master_key_id, created_at \
             FROM credentials ORDER BY created_at, id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("cannot read credentials", e))?;
        let drm_systems: Vec<DrmSystemRow> = sqlx::query_as(
            "SELECT tenant, name, spec, created_at, updated_at FROM drm_systems \
             ORDER BY tenant, name",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("cannot read DRM systems", e))?;
        let _ = tx.commit().await;
        Ok(Registry {
            version,
            tenants: tenants
                .into_iter()
                .map(TenantRow::decode)
                .collect::<Result<_>>()?,
            credentials: credentials
                .into_iter()
                .map(|row| row.decode(&self.sealer))
                .collect::<Result<_>>()?,
            drm_systems: drm_systems
                .into_iter()
                .map(DrmSystemRow::decode)
                .collect::<Result<_>>()?,
        })
    }

    pub(super) async fn registry_version(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT version FROM registry_version WHERE singleton = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error("cannot read the registry version", e))
    }

    pub(super) async fn create_tenant(&self, tenant: &StoredTenant) -> Result<bool> {
        in_transaction!(self, "a tenant", |conn| {
            let inserted = sqlx::query(
                "INSERT INTO tenants (id, settings, disabled, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(tenant.id.as_str())
            .bind(tenant.settings.as_deref())
            .bind(tenant.disabled)
            .bind(tenant.created_at.unix_timestamp())
            .execute(&mut *conn)
            .await
            .map_err(|e| classify("cannot store a tenant", e))?
            .rows_affected()
                == 1;
            if inserted {
                bump_version(conn).await?;
            }
            Ok(inserted)
        })
    }

    pub(super) async fn set_tenant_disabled(
        &self,
        tenant: &TenantId,
        disabled: bool,
        now: OffsetDateTime,
    ) -> Result<()> {
        in_transaction!(self, "a tenant change", |conn| {
            sqlx::query(
                "INSERT INTO tenants (id, settings, disabled, created_at) VALUES ($1, NULL, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET disabled = excluded.disabled",
            )
            .bind(tenant.as_str())
            .bind(disabled)
            .bind(now.unix_timestamp())
            .execute(&mut *conn)
            .await
            .map_err(|e| classify("cannot change a tenant", e))?;
            bump_version(conn).await
        })
    }

    pub(super) async fn add_credential(&self, credential: &StoredCredential) -> Result<()> {
        let sealed = self.sealer.seal_secret(
            &credential.tenant,
            &credential.id,
            credential.spec.as_bytes(),
        )?;
        in_transaction!(self, "a credential", |conn| {
            sqlx::query(
                "INSERT INTO credentials (id, tenant, kind, label, sealed_spec, master_key_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&credential.id)
            .bind(credential.tenant.as_str())
            .bind(&credential.kind)
            .bind(&credential.label)
            .bind(&sealed.bytes)
            .bind(&sealed.sealed_by)
            .bind(credential.created_at.unix_timestamp())
            .execute(&mut *conn)
            .await
            .map_err(|e| classify("cannot store a credential", e))?;
            bump_version(conn).await
        })
    }

    pub(super) async fn revoke_credential(&self, tenant: &TenantId, id: &str) -> Result<bool> {
        in_transaction!(self, "a credential revocation", |conn| {
            let deleted = sqlx::query("DELETE FROM credentials WHERE tenant = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(|e| classify("cannot delete a credential", e))?
                .rows_affected()
                == 1;
            if deleted {
                bump_version(conn).await?;
            }
            Ok(deleted)
        })
    }

    pub(super) async fn put_drm_system(&self, system: &StoredDrmSystem) -> Result<bool> {
        in_transaction!(self, "a DRM system", |conn| {
            let created: bool = sqlx::query_scalar(
                "INSERT INTO drm_systems (tenant, name, spec, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, name) DO UPDATE SET \
                 spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at \
                 RETURNING (xmax = 0)",
            )
            .bind(system.tenant.as_str())
            .bind(&system.name)
            .bind(&system.spec)
            .bind(system.created_at.unix_timestamp())
            .bind(system.updated_at.unix_timestamp())
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify("cannot store a DRM system", e))?;
            bump_version(conn).await?;
            Ok(created)
        })
    }

    pub(super) async fn remove_drm_system(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        in_transaction!(self, "a DRM system removal", |conn| {
            let deleted = sqlx::query("DELETE FROM drm_systems WHERE tenant = $1 AND name = $2")
                .bind(tenant.as_str())
                .bind(name)
                .execute(&mut *conn)
                .await
                .map_err(|e| classify("cannot delete a DRM system", e))?
                .rows_affected()
                == 1;
            if deleted {
                bump_version(conn).await?;
            }
            Ok(deleted)
        })
    }

    pub(super) async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        in_transaction!(self, "audit events", |conn| insert_audit(conn, events)
            .await)
    }

    pub(super) async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
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

    pub(super) async fn purge_audit(&self, before: OffsetDateTime) -> Result<u64> {
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

    pub(super) async fn add_stats(&self, counts: &[StatsCount]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        // Rows in one order on every node, so that concurrent additions lock them in the same
        // order.
        let mut sorted: Vec<&StatsCount> = counts.iter().collect();
        sorted.sort();
        let mut rows = Vec::with_capacity(sorted.len());
        for c in sorted {
            rows.push((unix_column(c.bucket_start)?, count_column(c.count)?, c));
        }
        in_transaction!(self, "dashboard counts", |conn| {
            for chunk in rows.chunks(STATS_ROWS_PER_STATEMENT) {
                let mut query = sqlx::QueryBuilder::new(
                    "INSERT INTO stats_counts (tenant, bucket_start, measure, name, slot, count) ",
                );
                query.push_values(chunk, |mut row, (bucket, count, c)| {
                    row.push_bind(c.tenant.clone())
                        .push_bind(*bucket)
                        .push_bind(c.measure.clone())
                        .push_bind(c.name.clone())
                        .push_bind(c.slot)
                        .push_bind(*count);
                });
                query.push(
                    " ON CONFLICT (tenant, bucket_start, measure, name, slot) \
                     DO UPDATE SET count = stats_counts.count + excluded.count",
                );
                query
                    .build()
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| classify("cannot add dashboard counts", e))?;
            }
            Ok(())
        })
    }

    pub(super) async fn purge_stats(&self, before: u64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM stats_counts WHERE bucket_start < $1")
                .bind(unix_column(before)?)
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("cannot purge dashboard counts", e))?
                .rows_affected(),
        )
    }

    pub(super) async fn read_stats(
        &self,
        tenant: Option<&str>,
        from: u64,
        until: u64,
    ) -> Result<Vec<StatsCount>> {
        let rows: Vec<StatsRow> = sqlx::query_as(
            "SELECT tenant, bucket_start, measure, name, slot, count FROM stats_counts \
             WHERE ($1::text IS NULL OR tenant = $1::text) AND bucket_start >= $2 AND bucket_start < $3",
        )
        .bind(tenant)
        .bind(unix_column(from)?)
        .bind(unix_column(until)?)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("cannot read dashboard counts", e))?;
        rows.into_iter().map(StatsRow::decode).collect()
    }

    pub(super) async fn list_contents(
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

    pub(super) async fn tenants_with_keys(&self) -> Result<Vec<TenantId>> {
        let tenants: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT tenant FROM content_keys ORDER BY tenant")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_error("cannot list tenants with keys", e))?;
        tenants
            .iter()
            .map(|t| TenantId::parse(t).map_err(|e| crate::columns::corrupt(t, e)))
            .collect()
    }

    pub(super) async fn export_keys(&self, tenant: &TenantId) -> Result<Vec<ExportedKey>> {
        let rows: Vec<FullKeyRow> = sqlx::query_as(
            "SELECT k.tenant, k.kid, k.content_id, k.sealed_key, k.iv, k.track_type, k.period, k.origin, \
             k.master_key_id, k.created_at, s.kid IS NOT NULL AS slotted \
             FROM content_keys AS k \
             LEFT JOIN key_slots AS s ON s.tenant = k.tenant AND s.kid = k.kid \
             WHERE k.tenant = $1 ORDER BY k.created_at, k.seq",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("cannot export keys", e))?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let kid = row.kid()?;
            let created_at = from_unix(row.created_at, &kid.to_string())?;
            let slotted = row.slotted;
            keys.push(ExportedKey {
                key: row.key.decode(&self.sealer, tenant, kid)?,
                slotted,
                created_at,
            });
        }
        Ok(keys)
    }

    pub(super) async fn import_keys(
        &self,
        tenant: &TenantId,
        keys: &[ExportedKey],
    ) -> Result<ImportOutcome> {
        in_transaction!(self, "imported keys", |conn| {
            let mut outcome = ImportOutcome::default();
            for exported in keys {
                let key = &exported.key;
                let stored = self.fetch_key(conn, tenant, &key.kid).await?;
                let slot_kid = match exported.slot() {
                    Some(slot) => fetch_slot(conn, tenant, &slot).await?,
                    None => None,
                };
                match rules::import_step(exported, stored.as_ref(), slot_kid)? {
                    ImportStep::Insert(slot) => {
                        if let Some(slot) = &slot {
                            bind_slot(conn, tenant, slot, &key.kid).await?;
                        }
                        if !self
                            .insert_key(conn, tenant, key, exported.created_at)
                            .await?
                        {
                            // Stored by another node since the check: the retry compares it.
                            return Err(TxError::Retry(format!(
                                "key {} was stored concurrently",
                                key.kid
                            )));
                        }
                        outcome.imported += 1;
                    }
                    ImportStep::Present(unbound) => {
                        if let Some(slot) = unbound {
                            bind_slot(conn, tenant, &slot, &key.kid).await?;
                        }
                        outcome.already_present += 1;
                    }
                }
            }
            Ok(outcome)
        })
    }

    pub(super) async fn rotate_master_key(&self, new: MasterKey) -> Result<RotationReport> {
        let old_fingerprints = self.sealer.begin_rotation(new);
        let new_fingerprint = self.sealer.fingerprint();
        let mut rewrapped = 0u64;
        loop {
            let done = in_transaction!(self, "re-sealed keys", |conn| {
                self.rewrap_key_batch(conn, &new_fingerprint).await
            })?;
            rewrapped += done;
            if done == 0 {
                break;
            }
        }
        rewrapped += in_transaction!(self, "re-sealed credentials", |conn| {
            self.rewrap_credentials(conn, &new_fingerprint).await
        })?;
        self.sealer.finish_rotation();
        Ok(RotationReport {
            old_fingerprints,
            new_fingerprint,
            rewrapped,
        })
    }

    async fn rewrap_key_batch(
        &self,
        conn: &mut PgConnection,
        new_fingerprint: &str,
    ) -> TxResult<u64> {
        let rows: Vec<FullKeyRow> = sqlx::query_as(
            "SELECT tenant, kid, content_id, sealed_key, iv, track_type, period, origin, master_key_id, \
             created_at, FALSE AS slotted FROM content_keys WHERE master_key_id <> $1 \
             LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(new_fingerprint)
        .bind(REWRAP_BATCH)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify("cannot read keys to re-seal", e))?;
        let count = rows.len() as u64;
        for row in rows {
            let tenant = row.tenant()?;
            let kid = row.kid()?;
            let key = row.key.decode(&self.sealer, &tenant, kid)?;
            let sealed = self.sealer.seal(&tenant, &kid, &key.content_id, &key.key)?;
            sqlx::query(
                "UPDATE content_keys SET sealed_key = $1, master_key_id = $2 WHERE tenant = $3 AND kid = $4",
            )
            .bind(&sealed.bytes)
            .bind(&sealed.sealed_by)
            .bind(tenant.as_str())
            .bind(kid.as_bytes().as_slice())
            .execute(&mut *conn)
            .await
            .map_err(|e| classify(&format!("cannot re-seal key {kid}"), e))?;
        }
        Ok(count)
    }

    async fn rewrap_credentials(
        &self,
        conn: &mut PgConnection,
        new_fingerprint: &str,
    ) -> TxResult<u64> {
        let rows: Vec<CredentialRow> = sqlx::query_as(
            "SELECT id, tenant, kind, label, sealed_spec, master_key_id, created_at \
             FROM credentials WHERE master_key_id <> $1 FOR UPDATE",
        )
        .bind(new_fingerprint)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify("cannot read credentials to re-seal", e))?;
        let count = rows.len() as u64;
        for row in rows {
            let credential = row.decode(&self.sealer)?;
            let sealed = self.sealer.seal_secret(
                &credential.tenant,
                &credential.id,
                credential.spec.as_bytes(),
            )?;
            sqlx::query(
                "UPDATE credentials SET sealed_spec = $1, master_key_id = $2 WHERE id = $3",
            )
            .bind(&sealed.bytes)
            .bind(&sealed.sealed_by)
            .bind(&credential.id)
            .execute(&mut *conn)
            .await
            .map_err(|e| classify("cannot re-seal a credential", e))?;
        }
        Ok(count)
    }
}

async fn bind_slot(
    conn: &mut PgConnection,
    tenant: &TenantId,
    slot: &KeySlot,
    kid: &KeyId,
) -> TxResult<()> {
    sqlx::query(
        "INSERT INTO key_slots (tenant, content_id, track_type, period, kid) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant.as_str())
    .bind(slot.content_id.as_str())
    .bind(slot.track_type.as_str())
    .bind(slot_period_column(slot.period)?)
    .bind(kid.as_bytes().as_slice())
    .execute(&mut *conn)
    .await
    .map_err(|e| classify(&format!("cannot bind key {kid} to its slot"), e))?;
    Ok(())
}

//! The SQLite side of what the admin API needs: tenants and credentials, the audit trail,
//! listings, export/import and master key rotation. Writes go through the pool's single writer
//! connection; SQLite's write lock orders them with the key writer's.

use keyplex_crypto::master::MasterKey;
use keyplex_types::{ContentId, KeyId, KeySlot, TenantId};
use sqlx::{Row as _, SqliteConnection};
use time::OffsetDateTime;

use super::{Core, db_error, fetch_slot};
use crate::columns::{
    AuditRow, CredentialRow, DrmSystemRow, FullKeyRow, StatsRow, TenantRow, corrupt, count_column,
    from_unix, unix_column, unix_ms,
};
use crate::rules::{self, ImportStep};
use crate::{
    AuditEvent, AuditQuery, ContentSummary, ExportedKey, ImportOutcome, Registry, Result,
    RotationReport, StatsCount, StoredCredential, StoredDrmSystem, StoredTenant,
};

/// Rows re-sealed per transaction during a master key rotation: small enough that key
/// creation waits at most a few milliseconds for the write lock.
const REWRAP_BATCH: i64 = 256;
/// Dashboard rows per INSERT statement (6 parameters each).
const STATS_ROWS_PER_STATEMENT: usize = 500;

async fn bump_version(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::query("UPDATE registry_version SET version = version + 1 WHERE singleton = 1")
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error("cannot bump the registry version", e))?;
    Ok(())
}

impl Core {
    pub(super) async fn registry(&self) -> Result<Registry> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(|e| db_error("cannot get a read connection", e))?;
        // One read transaction: the version matches the rows read with it.
        sqlx::query("BEGIN")
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("cannot start a read", e))?;
        let outcome = self.read_registry(&mut conn).await;
        let _ = sqlx::query("COMMIT").execute(&mut *conn).await;
        outcome
    }

    async fn read_registry(&self, conn: &mut SqliteConnection) -> Result<Registry> {
        let version: i64 =
            sqlx::query_scalar("SELECT version FROM registry_version WHERE singleton = 1")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db_error("cannot read the registry version", e))?;
        let tenant_rows: Vec<TenantRow> =
            sqlx::query_as("SELECT id, settings, disabled, created_at FROM tenants ORDER BY id")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| db_error("cannot read tenants", e))?;
        let tenants = tenant_rows
            .into_iter()
            .map(TenantRow::decode)
            .collect::<Result<Vec<_>>>()?;
        let credential_rows: Vec<CredentialRow> = sqlx::query_as(
            "SELECT id, tenant, kind, label, sealed_spec, master_key_id, created_at \
             FROM credentials ORDER BY created_at, id",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error("cannot read credentials", e))?;
        let credentials = credential_rows
            .into_iter()
            .map(|row| row.decode(&self.sealer))
            .collect::<Result<Vec<_>>>()?;
        let drm_rows: Vec<DrmSystemRow> = sqlx::query_as(
            "SELECT tenant, name, spec, created_at, updated_at FROM drm_systems \
             ORDER BY tenant, name",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error("cannot read DRM systems", e))?;
        let drm_systems = drm_rows
            .into_iter()
            .map(DrmSystemRow::decode)
            .collect::<Result<Vec<_>>>()?;
        Ok(Registry {
            version,
            tenants,
            credentials,
            drm_systems,
        })
    }

    pub(super) async fn registry_version(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT version FROM registry_version WHERE singleton = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error("cannot read the registry version", e))
    }

    /// Runs `write` in a `BEGIN IMMEDIATE` transaction on the writer (one connection: these
    /// writes are serialized in this process; SQLite's write lock serializes them with the key
    /// writer and other processes), and commits.
    pub(super) async fn write<T>(
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

    pub(super) async fn create_tenant(&self, tenant: &StoredTenant) -> Result<bool> {
        self.write("a tenant", async |conn| {
            let inserted = sqlx::query(
                "INSERT INTO tenants (id, settings, disabled, created_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(tenant.id.as_str())
            .bind(tenant.settings.as_deref())
            .bind(i64::from(tenant.disabled))
            .bind(tenant.created_at.unix_timestamp())
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("cannot store a tenant", e))?
            .rows_affected()
                == 1;
            if inserted {
                bump_version(conn).await?;
            }
            Ok(inserted)
        })
        .await
    }

    pub(super) async fn set_tenant_disabled(
        &self,
        tenant: &TenantId,
        disabled: bool,
        now: OffsetDateTime,
    ) -> Result<()> {
        self.write("a tenant change", async |conn| {
            sqlx::query(
                "INSERT INTO tenants (id, settings, disabled, created_at) VALUES (?, NULL, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET disabled = excluded.disabled",
            )
            .bind(tenant.as_str())
            .bind(i64::from(disabled))
            .bind(now.unix_timestamp())
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("cannot change a tenant", e))?;
            bump_version(conn).await
        })
        .await
    }

    pub(super) async fn add_credential(&self, credential: &StoredCredential) -> Result<()> {
        let sealed = self.sealer.seal_secret(
            &credential.tenant,
            &credential.id,
            credential.spec.as_bytes(),
        )?;
        self.write("a credential", async |conn| {
            sqlx::query(
                "INSERT INTO credentials (id, tenant, kind, label, sealed_spec, master_key_id, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            .map_err(|e| db_error("cannot store a credential", e))?;
            bump_version(conn).await
        })
        .await
    }

    pub(super) async fn revoke_credential(&self, tenant: &TenantId, id: &str) -> Result<bool> {
        self.write("a credential revocation", async |conn| {
            let deleted = sqlx::query("DELETE FROM credentials WHERE tenant = ? AND id = ?")
                .bind(tenant.as_str())
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error("cannot delete a credential", e))?
                .rows_affected()
                == 1;
            if deleted {
                bump_version(conn).await?;
            }
            Ok(deleted)
        })
        .await
    }

    pub(super) async fn put_drm_system(&self, system: &StoredDrmSystem) -> Result<bool> {
        self.write("a DRM system", async |conn| {
            let existed: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM drm_systems WHERE tenant = ? AND name = ?")
                    .bind(system.tenant.as_str())
                    .bind(&system.name)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| db_error("cannot read a DRM system", e))?;
            sqlx::query(
                "INSERT INTO drm_systems (tenant, name, spec, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, name) DO UPDATE SET \
                 spec = excluded.spec, updated_at = excluded.updated_at",
            )
            .bind(system.tenant.as_str())
            .bind(&system.name)
            .bind(&system.spec)
            .bind(system.created_at.unix_timestamp())
            .bind(system.updated_at.unix_timestamp())
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("cannot store a DRM system", e))?;
            bump_version(conn).await?;
            Ok(existed.is_none())
        })
        .await
    }

    pub(super) async fn remove_drm_system(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        self.write("a DRM system removal", async |conn| {
            let deleted = sqlx::query("DELETE FROM drm_systems WHERE tenant = ? AND name = ?")
                .bind(tenant.as_str())
                .bind(name)
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error("cannot delete a DRM system", e))?
                .rows_affected()
                == 1;
            if deleted {
                bump_version(conn).await?;
            }
            Ok(deleted)
        })
        .await
    }

    pub(super) async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
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

    pub(super) async fn purge_audit(&self, before: OffsetDateTime) -> Result<u64> {
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
                    .bind(REWRAP_BATCH * 4)
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

    pub(super) async fn add_stats(&self, counts: &[StatsCount]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(counts.len());
        for c in counts {
            rows.push((unix_column(c.bucket_start)?, count_column(c.count)?, c));
        }
        self.write("dashboard counts", async |conn| {
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
                    .map_err(|e| db_error("cannot add dashboard counts", e))?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn purge_stats(&self, before: u64) -> Result<u64> {
        let before = unix_column(before)?;
        self.write("a dashboard purge", async |conn| {
            sqlx::query("DELETE FROM stats_counts WHERE bucket_start < ?")
                .bind(before)
                .execute(&mut *conn)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| db_error("cannot purge dashboard counts", e))
        })
        .await
    }

    pub(super) async fn read_stats(
        &self,
        tenant: Option<&str>,
        from: u64,
        until: u64,
    ) -> Result<Vec<StatsCount>> {
        let rows: Vec<StatsRow> = sqlx::query_as(
            "SELECT tenant, bucket_start, measure, name, slot, count FROM stats_counts \
             WHERE (?1 IS NULL OR tenant = ?1) AND bucket_start >= ?2 AND bucket_start < ?3",
        )
        .bind(tenant)
        .bind(unix_column(from)?)
        .bind(unix_column(until)?)
        .fetch_all(&self.reader)
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

    pub(super) async fn spend_token_id(
        &self,
        tenant: &TenantId,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
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

    pub(super) async fn purge_token_ids(&self, now: i64) -> Result<u64> {
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

    pub(super) async fn count_live_sessions(
        &self,
        tenant: Option<&TenantId>,
        now: u64,
    ) -> Result<u64> {
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

    pub(super) async fn tenants_with_keys(&self) -> Result<Vec<TenantId>> {
        let tenants: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT tenant FROM content_keys ORDER BY tenant")
                .fetch_all(&self.reader)
                .await
                .map_err(|e| db_error("cannot list tenants with keys", e))?;
        tenants
            .iter()
            .map(|t| TenantId::parse(t).map_err(|e| corrupt(t, e)))
            .collect()
    }

    pub(super) async fn export_keys(&self, tenant: &TenantId) -> Result<Vec<ExportedKey>> {
        let rows: Vec<FullKeyRow> = sqlx::query_as(
            "SELECT k.tenant, k.kid, k.content_id, k.sealed_key, k.iv, k.track_type, k.period, k.origin, \
             k.master_key_id, k.created_at, s.kid IS NOT NULL AS slotted \
             FROM content_keys AS k \
             LEFT JOIN key_slots AS s ON s.tenant = k.tenant AND s.kid = k.kid \
             WHERE k.tenant = ? ORDER BY k.created_at, k.rowid",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.reader)
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
        self.write("imported keys", async |conn| {
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
                        self.insert_key(conn, tenant, key, slot.as_ref(), exported.created_at)
                            .await?;
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
        .await
    }

    pub(super) async fn rotate_master_key(&self, new: MasterKey) -> Result<RotationReport> {
        let old_fingerprints = self.sealer.begin_rotation(new);
        let new_fingerprint = self.sealer.fingerprint();
        let mut rewrapped = 0u64;
        loop {
            let done = self
                .write("re-sealed keys", async |conn| {
                    self.rewrap_key_batch(conn, &new_fingerprint).await
                })
                .await?;
            rewrapped += done;
            if done == 0 {
                break;
            }
        }
        rewrapped += self
            .write("re-sealed credentials", async |conn| {
                self.rewrap_credentials(conn, &new_fingerprint).await
            })
            .await?;
        self.sealer.finish_rotation();
        Ok(RotationReport {
            old_fingerprints,
            new_fingerprint,
            rewrapped,
        })
    }

    async fn rewrap_key_batch(
        &self,
        conn: &mut SqliteConnection,
        new_fingerprint: &str,
    ) -> Result<u64> {
        let rows: Vec<FullKeyRow> = sqlx::query_as(
            "SELECT tenant, kid, content_id, sealed_key, iv, track_type, period, origin, master_key_id, \
             created_at, FALSE AS slotted FROM content_keys WHERE master_key_id <> ? LIMIT ?",
        )
        .bind(new_fingerprint)
        .bind(REWRAP_BATCH)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error("cannot read keys to re-seal", e))?;
        let count = rows.len() as u64;
        for row in rows {
            let tenant = row.tenant()?;
            let kid = row.kid()?;
            let kid_bytes = row.kid.clone();
            let key = row.key.decode(&self.sealer, &tenant, kid)?;
            let sealed = self.sealer.seal(&tenant, &kid, &key.content_id, &key.key)?;
            sqlx::query(
                "UPDATE content_keys SET sealed_key = ?, master_key_id = ? WHERE tenant = ? AND kid = ?",
            )
            .bind(&sealed.bytes)
            .bind(&sealed.sealed_by)
            .bind(tenant.as_str())
            .bind(kid_bytes.as_slice())
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error(&format!("cannot re-seal key {kid}"), e))?;
        }
        Ok(count)
    }

    async fn rewrap_credentials(
        &self,
        conn: &mut SqliteConnection,
        new_fingerprint: &str,
    ) -> Result<u64> {
        let rows: Vec<CredentialRow> = sqlx::query_as(
            "SELECT id, tenant, kind, label, sealed_spec, master_key_id, created_at \
             FROM credentials WHERE master_key_id <> ?",
        )
        .bind(new_fingerprint)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error("cannot read credentials to re-seal", e))?;
        let count = rows.len() as u64;
        for row in rows {
            let credential = row.decode(&self.sealer)?;
            let sealed = self.sealer.seal_secret(
                &credential.tenant,
                &credential.id,
                credential.spec.as_bytes(),
            )?;
            sqlx::query("UPDATE credentials SET sealed_spec = ?, master_key_id = ? WHERE id = ?")
                .bind(&sealed.bytes)
                .bind(&sealed.sealed_by)
                .bind(&credential.id)
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error("cannot re-seal a credential", e))?;
        }
        Ok(count)
    }
}

async fn bind_slot(
    conn: &mut SqliteConnection,
    tenant: &TenantId,
    slot: &KeySlot,
    kid: &KeyId,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO key_slots (tenant, content_id, track_type, period, kid) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(tenant.as_str())
    .bind(slot.content_id.as_str())
    .bind(slot.track_type.as_str())
    .bind(super::slot_period_column(slot.period)?)
    .bind(kid.as_bytes().as_slice())
    .execute(&mut *conn)
    .await
    .map_err(|e| db_error(&format!("cannot bind key {kid} to its slot"), e))?;
    Ok(())
}

//! The SQLite side of what the admin API needs: tenants and credentials, the audit trail,
//! listings, export/import and master key rotation. Writes take the same write lock and
//! single writer connection as key creation.

use keyplex_crypto::master::MasterKey;
use keyplex_types::{ContentId, KeyId, KeyPeriod, KeySlot, TenantId};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, SqliteConnection};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{Core, db_error, fetch_slot, hex_of, unix_column};
use crate::{
    AuditAction, AuditEvent, AuditQuery, ContentSummary, ExportedKey, ImportOutcome, Registry,
    Result, RotationReport, StoreError, StoredCredential, StoredTenant,
};

/// Rows re-sealed per transaction during a master key rotation: small enough that key
/// creation waits at most a few milliseconds for the write lock.
const REWRAP_BATCH: i64 = 256;
/// Audit rows per INSERT statement (SQLite allows 32 766 bound parameters).
const AUDIT_ROWS_PER_STATEMENT: usize = 200;

fn corrupt(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        kid: what.to_owned(),
        reason: reason.to_string(),
    }
}

fn from_unix(seconds: i64, what: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| corrupt(what, e))
}

fn unix_ms(at: OffsetDateTime) -> Result<i64> {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| StoreError::Internal(format!("time {at} out of range")))
}

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
        let tenant_rows =
            sqlx::query("SELECT id, settings, disabled, created_at FROM tenants ORDER BY id")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| db_error("cannot read tenants", e))?;
        let mut tenants = Vec::with_capacity(tenant_rows.len());
        for row in &tenant_rows {
            let id: String = row.get("id");
            tenants.push(StoredTenant {
                id: TenantId::parse(&id).map_err(|e| corrupt(&format!("tenant {id}"), e))?,
                settings: row.get("settings"),
                disabled: row.get::<i64, _>("disabled") != 0,
                created_at: from_unix(row.get("created_at"), "tenant")?,
            });
        }
        let credential_rows = sqlx::query(
            "SELECT id, tenant, kind, label, sealed_spec, master_key_id, created_at \
             FROM credentials ORDER BY created_at, id",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error("cannot read credentials", e))?;
        let mut credentials = Vec::with_capacity(credential_rows.len());
        for row in &credential_rows {
            credentials.push(self.decode_credential(row)?);
        }
        Ok(Registry {
            version,
            tenants,
            credentials,
        })
    }

    fn decode_credential(&self, row: &SqliteRow) -> Result<StoredCredential> {
        let id: String = row.get("id");
        let tenant: String = row.get("tenant");
        let tenant =
            TenantId::parse(&tenant).map_err(|e| corrupt(&format!("credential {id}"), e))?;
        let sealed: Vec<u8> = row.get("sealed_spec");
        let sealed_by: String = row.get("master_key_id");
        let spec = self.sealer.open_secret(&tenant, &id, &sealed, &sealed_by)?;
        let spec = String::from_utf8(spec.to_vec())
            .map_err(|_| corrupt(&format!("credential {id}"), "spec is not UTF-8"))?;
        Ok(StoredCredential {
            created_at: from_unix(row.get("created_at"), "credential")?,
            kind: row.get("kind"),
            label: row.get("label"),
            spec: Zeroizing::new(spec),
            tenant,
            id,
        })
    }

    pub(super) async fn registry_version(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT version FROM registry_version WHERE singleton = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error("cannot read the registry version", e))
    }

    /// Runs `write` in a `BEGIN IMMEDIATE` transaction on the writer, under the write lock,
    /// and commits.
    async fn write<T>(
        &self,
        what: &str,
        write: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let _writer = self.write_lock.lock().await;
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

    pub(super) async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.write("audit events", async |conn| {
            for chunk in events.chunks(AUDIT_ROWS_PER_STATEMENT) {
                let mut query = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_events (at_ms, tenant, action, interface, credential, \
                     client, content_id, key_ids, outcome, detail) ",
                );
                let mut rows = Vec::with_capacity(chunk.len());
                for event in chunk {
                    rows.push((unix_ms(event.at)?, event));
                }
                query.push_values(rows, |mut row, (at_ms, event)| {
                    let key_ids = event
                        .key_ids
                        .iter()
                        .map(KeyId::to_string)
                        .collect::<Vec<_>>()
                        .join(" ");
                    row.push_bind(at_ms)
                        .push_bind(event.tenant.clone())
                        .push_bind(event.action.as_str())
                        .push_bind(event.interface.clone())
                        .push_bind(event.credential.clone())
                        .push_bind(event.client.clone())
                        .push_bind(event.content_id.as_ref().map(|c| c.as_str().to_owned()))
                        .push_bind(key_ids)
                        .push_bind(event.outcome.clone())
                        .push_bind(event.detail.clone());
                });
                query
                    .build()
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| db_error("cannot append audit events", e))?;
            }
            Ok(())
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
        query
            .push(" ORDER BY at_ms DESC, id DESC LIMIT ")
            .push_bind(i64::from(q.limit));
        let rows = query
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error("cannot read the audit trail", e))?;
        rows.iter().map(decode_audit).collect()
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

    pub(super) async fn export_keys(&self, tenant: &TenantId) -> Result<Vec<ExportedKey>> {
        let rows = sqlx::query(
            "SELECT k.kid, k.content_id, k.sealed_key, k.iv, k.track_type, k.period, k.origin, \
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
        for row in &rows {
            let kid_bytes: Vec<u8> = row.get("kid");
            let kid = KeyId::from_slice(&kid_bytes).map_err(|e| corrupt(&hex_of(&kid_bytes), e))?;
            let key = self.decode_key(tenant, kid, row)?;
            keys.push(ExportedKey {
                key,
                slotted: row.get("slotted"),
                created_at: from_unix(row.get("created_at"), &kid.to_string())?,
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
                let slot = exported
                    .slotted
                    .then(|| {
                        key.track_type.clone().map(|track_type| KeySlot {
                            content_id: key.content_id.clone(),
                            track_type,
                            period: key.period,
                        })
                    })
                    .flatten();
                if exported.slotted && slot.is_none() {
                    return Err(StoreError::Conflict {
                        kid: key.kid,
                        reason: "marked as bound to a key slot but has no track type".into(),
                    });
                }
                let stored = self.fetch_key(conn, tenant, &key.kid).await?;
                let slot_kid = match &slot {
                    Some(slot) => fetch_slot(conn, tenant, slot).await?,
                    None => None,
                };
                if let Some(slot_kid) = slot_kid
                    && slot_kid != key.kid
                {
                    return Err(StoreError::Conflict {
                        kid: key.kid,
                        reason: format!(
                            "its slot ({}, {}, {}) already holds key id {slot_kid}",
                            key.content_id,
                            key.track_type.as_ref().map_or("-", |t| t.as_str()),
                            period_text(key.period)
                        ),
                    });
                }
                match stored {
                    Some(stored) => {
                        let same = stored.content_id == key.content_id
                            && stored.key == key.key
                            && stored.iv == key.iv;
                        if !same {
                            return Err(StoreError::Conflict {
                                kid: key.kid,
                                reason: "already stored with another content, key or IV".into(),
                            });
                        }
                        if let Some(slot) = &slot
                            && slot_kid.is_none()
                        {
                            bind_slot(conn, tenant, slot, &key.kid).await?;
                        }
                        outcome.already_present += 1;
                    }
                    None => {
                        self.insert_key(conn, tenant, key, slot.as_ref(), exported.created_at)
                            .await?;
                        outcome.imported += 1;
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
        let rows = sqlx::query(
            "SELECT tenant, kid, content_id, sealed_key, iv, track_type, period, origin, master_key_id \
             FROM content_keys WHERE master_key_id <> ? LIMIT ?",
        )
        .bind(new_fingerprint)
        .bind(REWRAP_BATCH)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error("cannot read keys to re-seal", e))?;
        for row in &rows {
            let tenant: String = row.get("tenant");
            let tenant = TenantId::parse(&tenant).map_err(|e| corrupt(&tenant, e))?;
            let kid_bytes: Vec<u8> = row.get("kid");
            let kid = KeyId::from_slice(&kid_bytes).map_err(|e| corrupt(&hex_of(&kid_bytes), e))?;
            let key = self.decode_key(&tenant, kid, row)?;
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
        Ok(rows.len() as u64)
    }

    async fn rewrap_credentials(
        &self,
        conn: &mut SqliteConnection,
        new_fingerprint: &str,
    ) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT id, tenant, kind, label, sealed_spec, master_key_id, created_at \
             FROM credentials WHERE master_key_id <> ?",
        )
        .bind(new_fingerprint)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error("cannot read credentials to re-seal", e))?;
        for row in &rows {
            let credential = self.decode_credential(row)?;
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
        Ok(rows.len() as u64)
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

fn period_text(period: KeyPeriod) -> String {
    period
        .index()
        .map_or_else(|| "VOD".to_owned(), |i| i.to_string())
}

fn decode_audit(row: &SqliteRow) -> Result<AuditEvent> {
    let id: i64 = row.get("id");
    let what = format!("audit event {id}");
    let at_ms: i64 = row.get("at_ms");
    let action: String = row.get("action");
    let key_ids: String = row.get("key_ids");
    let content_id: Option<String> = row.get("content_id");
    Ok(AuditEvent {
        id,
        at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
            .map_err(|e| corrupt(&what, e))?,
        tenant: row.get("tenant"),
        action: AuditAction::parse(&action)
            .ok_or_else(|| corrupt(&what, format!("unknown action {action:?}")))?,
        interface: row.get("interface"),
        credential: row.get("credential"),
        client: row.get("client"),
        content_id: content_id
            .map(|c| ContentId::parse(&c).map_err(|e| corrupt(&what, e)))
            .transpose()?,
        key_ids: key_ids
            .split_whitespace()
            .map(|k| k.parse::<KeyId>().map_err(|e| corrupt(&what, e)))
            .collect::<Result<_>>()?,
        outcome: row.get("outcome"),
        detail: row.get("detail"),
    })
}

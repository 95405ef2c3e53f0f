//! The SQLite side of keys as a whole: export, import (backups, copying a store) and master
//! key rotation, in small transactions on the pool's single writer connection so that key
//! creation keeps going meanwhile.

use async_trait::async_trait;
use keyplex_crypto::master::MasterKey;
use keyplex_types::{KeyId, KeySlot, TenantId};
use sqlx::SqliteConnection;

use super::{SqliteStore, db_error, fetch_slot};
use crate::columns::{CredentialRow, FullKeyRow, corrupt, from_unix};
use crate::rules::{self, ImportStep};
use crate::{Custody, ExportedKey, ImportOutcome, Result, RotationReport};

/// Rows re-sealed per transaction during a master key rotation: small enough that key
/// creation waits at most a few milliseconds for the write lock.
const REWRAP_BATCH: i64 = 256;

#[async_trait]
impl Custody for SqliteStore {
    async fn tenants_with_keys(&self) -> Result<Vec<TenantId>> {
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

    async fn export_keys(&self, tenant: &TenantId) -> Result<Vec<ExportedKey>> {
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

    async fn import_keys(&self, tenant: &TenantId, keys: &[ExportedKey]) -> Result<ImportOutcome> {
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

    async fn sealing_fingerprints(&self) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT master_key_id FROM content_keys UNION SELECT master_key_id FROM credentials",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error("cannot read master key fingerprints", e))
    }

    async fn rotate_master_key(&self, new: MasterKey) -> Result<RotationReport> {
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
}

impl SqliteStore {
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

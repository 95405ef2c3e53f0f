//! The PostgreSQL side of what operators configure: tenants, credentials, DRM systems (the
//! registry) and contents' licence policies. Every registry change bumps `registry_version` in
//! the same transaction; every node polls it and reloads.

use async_trait::async_trait;
use keyplex_types::{ContentId, TenantId};
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{
    PostgresStore, TRANSACTION_ATTEMPTS, TxError, TxResult, classify, db_error, retry_pause,
};
use crate::columns::{CredentialRow, DrmSystemRow, TenantRow};
use crate::{
    Registry, Result, StoreError, StoredCredential, StoredDrmSystem, StoredTenant, Tenants,
};

async fn bump_version(conn: &mut PgConnection) -> TxResult<()> {
    sqlx::query("UPDATE registry_version SET version = version + 1 WHERE singleton = 1")
        .execute(&mut *conn)
        .await
        .map_err(|e| classify("cannot bump the registry version", e))?;
    Ok(())
}

#[async_trait]
impl Tenants for PostgresStore {
    async fn registry(&self) -> Result<Registry> {
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

    async fn registry_version(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT version FROM registry_version WHERE singleton = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error("cannot read the registry version", e))
    }

    async fn create_tenant(&self, tenant: &StoredTenant) -> Result<bool> {
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

    async fn set_tenant_disabled(
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

    async fn add_credential(&self, credential: &StoredCredential) -> Result<()> {
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

    async fn revoke_credential(&self, tenant: &TenantId, id: &str) -> Result<bool> {
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

    async fn put_drm_system(&self, system: &StoredDrmSystem) -> Result<bool> {
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

    async fn remove_drm_system(&self, tenant: &TenantId, name: &str) -> Result<bool> {
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
        .execute(&self.pool)
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
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("cannot read a content licence policy", e))
    }

    async fn all_content_policies(&self) -> Result<Vec<crate::StoredContentPolicy>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT tenant, content_id, policy, updated_at FROM content_policies \
             ORDER BY tenant, content_id",
        )
        .fetch_all(&self.pool)
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
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("cannot remove a content licence policy", e))?
                .rows_affected()
                > 0,
        )
    }
}

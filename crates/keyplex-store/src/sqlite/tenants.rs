//! The SQLite side of what operators configure: tenants, credentials, DRM systems (the
//! registry, whose version every change bumps) and contents' licence policies. Writes go
//! through the pool's single writer connection; SQLite's write lock orders them with the key
//! writer's.

use async_trait::async_trait;
use keyplex_types::{ContentId, TenantId};
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::{SqliteStore, db_error};
use crate::columns::{CredentialRow, DrmSystemRow, TenantRow};
use crate::{Registry, Result, StoredCredential, StoredDrmSystem, StoredTenant, Tenants};

async fn bump_version(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::query("UPDATE registry_version SET version = version + 1 WHERE singleton = 1")
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error("cannot bump the registry version", e))?;
    Ok(())
}

#[async_trait]
impl Tenants for SqliteStore {
    async fn registry(&self) -> Result<Registry> {
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

    async fn registry_version(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT version FROM registry_version WHERE singleton = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error("cannot read the registry version", e))
    }

    async fn create_tenant(&self, tenant: &StoredTenant) -> Result<bool> {
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

    async fn set_tenant_disabled(
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

    async fn add_credential(&self, credential: &StoredCredential) -> Result<()> {
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

    async fn revoke_credential(&self, tenant: &TenantId, id: &str) -> Result<bool> {
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

    async fn put_drm_system(&self, system: &StoredDrmSystem) -> Result<bool> {
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

    async fn remove_drm_system(&self, tenant: &TenantId, name: &str) -> Result<bool> {
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

    async fn put_content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
        policy: &str,
        at: time::OffsetDateTime,
    ) -> Result<()> {
        let at = crate::columns::unix_ms(at)?;
        self.write("a content licence policy", async |conn| {
            sqlx::query(
                "INSERT INTO content_policies (tenant, content_id, policy, updated_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant, content_id) \
                     DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
            )
            .bind(tenant.as_str())
            .bind(content_id.as_str())
            .bind(policy)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("cannot store a content licence policy", e))?;
            Ok(())
        })
        .await
    }

    async fn content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
    ) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT policy FROM content_policies WHERE tenant = ? AND content_id = ?",
        )
        .bind(tenant.as_str())
        .bind(content_id.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(|e| db_error("cannot read a content licence policy", e))
    }

    async fn all_content_policies(&self) -> Result<Vec<crate::StoredContentPolicy>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT tenant, content_id, policy, updated_at FROM content_policies \
             ORDER BY tenant, content_id",
        )
        .fetch_all(&self.reader)
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
        self.write("a content licence policy removal", async |conn| {
            Ok(
                sqlx::query("DELETE FROM content_policies WHERE tenant = ? AND content_id = ?")
                    .bind(tenant.as_str())
                    .bind(content_id.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| db_error("cannot remove a content licence policy", e))?
                    .rows_affected()
                    > 0,
            )
        })
        .await
    }
}

impl SqliteStore {
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
}

//! Copying one store into another (`keyplex store copy`): moving an installation from SQLite
//! to PostgreSQL, or back.
//!
//! Everything goes through [`KeyStore`], so any backend copies into any other: tenants and
//! credentials as they are (ids kept), every key with its origin, creation time and slot
//! binding (by [`Custody::import_keys`](crate::Custody::import_keys), which refuses to change a key the target already
//! has), the licence rules stored with contents (the target's own are kept), and the audit
//! trail in insertion order. Keys are then read back from the target and
//! compared with the source. Copying again is harmless: what the target has is skipped.
//! Live player sessions are not copied (they last minutes; players set up new ones).

use std::collections::{HashMap, HashSet};

use crate::{AuditQuery, KeyStore, Result, StoreError};

/// Keys imported per transaction.
const IMPORT_CHUNK: usize = 1000;
/// Audit events read / appended per round trip.
const AUDIT_PAGE: u32 = 1000;

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub tenants_copied: u64,
    pub credentials_copied: u64,
    /// Tenant-defined DRM systems the target did not have (by tenant and name).
    pub drm_systems_copied: u64,
    pub keys_copied: u64,
    /// Identical keys the target already had.
    pub keys_already_present: u64,
    /// Keys read back from the target and found identical to the source's.
    pub keys_verified: u64,
    pub audit_events_copied: u64,
    pub content_policies_copied: u64,
    /// The target already had audit events, so none were copied (no duplicates).
    pub audit_skipped: bool,
}

/// Copies everything `from` holds into `to` (see the module documentation).
pub async fn copy_store(from: &dyn KeyStore, to: &dyn KeyStore) -> Result<CopyReport> {
    let mut report = CopyReport::default();

    let source = from.registry().await?;
    let target = to.registry().await?;
    let target_tenants: HashSet<&str> = target.tenants.iter().map(|t| t.id.as_str()).collect();
    for tenant in &source.tenants {
        if !target_tenants.contains(tenant.id.as_str()) && to.create_tenant(tenant).await? {
            report.tenants_copied += 1;
        }
    }
    let target_credentials: HashSet<&str> =
        target.credentials.iter().map(|c| c.id.as_str()).collect();
    for credential in &source.credentials {
        if !target_credentials.contains(credential.id.as_str()) {
            to.add_credential(credential).await?;
            report.credentials_copied += 1;
        }
    }
    let target_drm_systems: HashSet<(&str, &str)> = target
        .drm_systems
        .iter()
        .map(|d| (d.tenant.as_str(), d.name.as_str()))
        .collect();
    for system in &source.drm_systems {
        if !target_drm_systems.contains(&(system.tenant.as_str(), system.name.as_str())) {
            to.put_drm_system(system).await?;
            report.drm_systems_copied += 1;
        }
    }

    for tenant in from.tenants_with_keys().await? {
        let keys = from.export_keys(&tenant).await?;
        for chunk in keys.chunks(IMPORT_CHUNK) {
            let outcome = to.import_keys(&tenant, chunk).await?;
            report.keys_copied += outcome.imported;
            report.keys_already_present += outcome.already_present;
        }
        // Read back what the target now holds: every source key, identical, and still bound
        // to its slot.
        let copied: HashMap<_, _> = to
            .export_keys(&tenant)
            .await?
            .into_iter()
            .map(|k| (k.key.kid, k))
            .collect();
        for key in &keys {
            match copied.get(&key.key.kid) {
                Some(c) if c.key == key.key && c.slotted == key.slotted => {
                    report.keys_verified += 1;
                }
                _ => {
                    return Err(StoreError::Internal(format!(
                        "key {} of tenant {tenant} reads back differently from the target",
                        key.key.kid
                    )));
                }
            }
        }
    }

    let target_policies: HashSet<(String, String)> = to
        .all_content_policies()
        .await?
        .into_iter()
        .map(|p| {
            (
                p.tenant.as_str().to_owned(),
                p.content_id.as_str().to_owned(),
            )
        })
        .collect();
    for policy in from.all_content_policies().await? {
        let id = (
            policy.tenant.as_str().to_owned(),
            policy.content_id.as_str().to_owned(),
        );
        if !target_policies.contains(&id) {
            to.put_content_policy(
                &policy.tenant,
                &policy.content_id,
                &policy.policy,
                policy.updated_at,
            )
            .await?;
            report.content_policies_copied += 1;
        }
    }

    let target_has_audit = !to
        .query_audit(&AuditQuery {
            limit: 1,
            ..AuditQuery::default()
        })
        .await?
        .is_empty();
    if target_has_audit {
        report.audit_skipped = true;
    } else {
        let mut after = 0;
        loop {
            let page = from
                .query_audit(&AuditQuery {
                    after_id: Some(after),
                    limit: AUDIT_PAGE,
                    ..AuditQuery::default()
                })
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.id;
            let copied = page.len() as u64;
            to.append_audit(page.into()).await?;
            report.audit_events_copied += copied;
        }
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use keyplex_crypto::random;
    use keyplex_types::{ContentId, KeyPeriod, KeySlot, TenantId, TrackType};
    use time::OffsetDateTime;

    use super::*;
    use crate::prelude::*;
    use crate::{
        AuditAction, AuditEvent, KeyMaterial, KeyRequest, MasterKey, PostgresStore, SqliteStore,
        StoredCredential, StoredTenant, UnauditedKeys as _,
    };

    fn candidate() -> KeyMaterial {
        KeyMaterial {
            kid: random::new_key_id().unwrap(),
            key: random::new_key_value().unwrap(),
            iv: random::new_iv().unwrap(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_copies_into_postgres_and_back_identically() {
        let master = MasterKey::from_hex(&"3c".repeat(32)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("old.sqlite"), master.clone())
            .await
            .unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        sqlite
            .create_tenant(&StoredTenant {
                id: TenantId::parse("beta").unwrap(),
                settings: Some("{}".into()),
                disabled: true,
                created_at: OffsetDateTime::now_utc(),
            })
            .await
            .unwrap();
        sqlite
            .add_credential(&StoredCredential {
                id: "cred-1".into(),
                tenant: tenant.clone(),
                kind: "basic".into(),
                label: "packager".into(),
                spec: zeroize::Zeroizing::new(r#"{"type":"basic"}"#.into()),
                created_at: OffsetDateTime::now_utc(),
            })
            .await
            .unwrap();
        let mut requests = Vec::new();
        for i in 0..30u64 {
            requests.push(KeyRequest::BySlot {
                slot: KeySlot {
                    content_id: ContentId::parse(&format!("live-{}", i % 3)).unwrap(),
                    track_type: TrackType::parse("HD").unwrap(),
                    period: KeyPeriod::Index(i),
                },
                candidate: candidate(),
                supplied: false,
                iv_supplied: false,
            });
            requests.push(KeyRequest::ByKid {
                content_id: ContentId::parse("movie").unwrap(),
                candidate: candidate(),
                key_supplied: true,
                iv_supplied: false,
                track_type: None,
                period: KeyPeriod::Vod,
            });
        }
        let keys = sqlite.ensure_keys(&tenant, &requests).await.unwrap();
        let events: Vec<AuditEvent> = (0..2500)
            .map(|i| AuditEvent {
                id: 0,
                at: OffsetDateTime::from_unix_timestamp(1_800_000_000 + i).unwrap(),
                tenant: "acme".into(),
                action: AuditAction::KeyDelivered,
                interface: "cpix".into(),
                credential: "basic:packager".into(),
                client: "127.0.0.1".into(),
                content_id: Some(ContentId::parse("movie").unwrap()),
                key_ids: vec![keys[(i % 60) as usize].kid],
                outcome: "ok".into(),
                detail: None,
            })
            .collect();
        sqlite.append_audit(events.as_slice().into()).await.unwrap();
        let movie = ContentId::parse("movie").unwrap();
        sqlite
            .put_content_policy(
                &tenant,
                &movie,
                r#"{"persistent":true}"#,
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();

        let url = crate::postgres::create_test_database(
            &crate::postgres::test_server_url(),
            "keyplex_copy_test",
        )
        .await
        .unwrap();
        let postgres = PostgresStore::connect(&url, master.clone()).await.unwrap();
        let report = copy_store(&sqlite, &postgres).await.unwrap();
        assert_eq!(report.keys_copied, 60);
        assert_eq!(report.keys_verified, 60);
        assert_eq!(report.tenants_copied, 1);
        assert_eq!(report.credentials_copied, 1);
        assert_eq!(report.audit_events_copied, 2500);
        assert_eq!(report.content_policies_copied, 1);
        assert_eq!(
            postgres
                .content_policy(&tenant, &movie)
                .await
                .unwrap()
                .as_deref(),
            Some(r#"{"persistent":true}"#)
        );

        // The keys, their slots, the tenants and the trail are the source's.
        assert_eq!(
            postgres.export_keys(&tenant).await.unwrap(),
            sqlite.export_keys(&tenant).await.unwrap()
        );
        let again = postgres.ensure_keys(&tenant, &requests).await.unwrap();
        assert_eq!(again, keys);
        let registry = postgres.registry().await.unwrap();
        assert!(
            registry
                .tenants
                .iter()
                .any(|t| t.id.as_str() == "beta" && t.disabled)
        );
        assert_eq!(registry.credentials[0].spec.as_str(), r#"{"type":"basic"}"#);
        let newest = postgres
            .query_audit(&AuditQuery {
                limit: 1,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(newest[0].at, events[2499].at);

        // Again: nothing new, nothing duplicated.
        let report = copy_store(&sqlite, &postgres).await.unwrap();
        assert_eq!(
            (
                report.keys_copied,
                report.keys_already_present,
                report.audit_skipped
            ),
            (0, 60, true)
        );

        // And back into an empty SQLite file.
        let back = SqliteStore::open(&dir.path().join("back.sqlite"), master)
            .await
            .unwrap();
        let report = copy_store(&postgres, &back).await.unwrap();
        assert_eq!(report.keys_verified, 60);
        assert_eq!(back.ensure_keys(&tenant, &requests).await.unwrap(), keys);
    }
}

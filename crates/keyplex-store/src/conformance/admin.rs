//! Conformance scenarios for what the admin API relies on: tenants and credentials, the audit
//! trail, listings, export/import and master key rotation.

use std::sync::Arc;

use keyplex_crypto::master::MasterKey;
use keyplex_types::{ContentId, KeyPeriod, TenantId};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{
    Backend, by_kid, by_slot, candidate, candidate_for, content, ensure_one, new_tenant, slot,
};
use crate::{AuditAction, AuditEvent, AuditQuery, StoreError, StoredCredential, StoredTenant};

pub async fn dashboard_counts_add_up_across_writers<S: Backend>(store: &Arc<S>) {
    let scenario = "dashboard counts";
    let tenant = new_tenant().as_str().to_owned();
    let other = new_tenant().as_str().to_owned();
    let t0 = 1_000_000_000u64;
    let count = |tenant: &str, bucket: u64, measure: &str, slot: i32, n: u64| crate::StatsCount {
        tenant: tenant.to_owned(),
        bucket_start: bucket,
        measure: measure.to_owned(),
        name: "cpix".to_owned(),
        slot,
        count: n,
    };
    // Eight writers (nodes) add to the same rows at once; a batch may name a row twice (a
    // node counts per worker thread), and both counts are added.
    let mut writers = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let batch = vec![
            count(&tenant, t0, "key_requests", -1, 2),
            count(&tenant, t0, "latency", 7, 1),
            count(&tenant, t0, "key_requests", -1, 1),
            count(&tenant, t0 + 10, "key_requests", -1, 1),
            count(&other, t0, "key_requests", -1, 5),
        ];
        writers.push(tokio::spawn(async move { store.add_stats(&batch).await }));
    }
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let mut mine = store.read_stats(Some(&tenant), t0, t0 + 20).await.unwrap();
    mine.sort();
    assert_eq!(
        mine,
        vec![
            count(&tenant, t0, "key_requests", -1, 24),
            count(&tenant, t0, "latency", 7, 8),
            count(&tenant, t0 + 10, "key_requests", -1, 8),
        ],
        "{scenario}: sums per row"
    );
    assert_eq!(
        store
            .read_stats(Some(&tenant), t0 + 10, t0 + 11)
            .await
            .unwrap()
            .len(),
        1,
        "{scenario}: window"
    );
    let all = store.read_stats(None, t0, t0 + 20).await.unwrap();
    assert!(
        all.iter().any(|c| c.tenant == other && c.count == 40),
        "{scenario}: all tenants"
    );
    assert!(
        store.purge_stats(t0 + 10).await.unwrap() >= 3,
        "{scenario}: purge"
    );
    assert_eq!(
        store
            .read_stats(Some(&tenant), t0, t0 + 20)
            .await
            .unwrap()
            .len(),
        1,
        "{scenario}: purged"
    );
}

fn now() -> OffsetDateTime {
    // Whole seconds: stores keep second precision for creation times.
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

pub async fn ensure_reports_what_it_created<S: Backend>(store: &Arc<S>) {
    let scenario = "ensure_keys_reporting";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let first = candidate();
    let requests = [by_kid(&movie, &first)];
    let created = store
        .ensure_keys_reporting(&tenant, &requests)
        .await
        .unwrap();
    assert!(created[0].created, "{scenario}: a new kid is created");
    let again = store
        .ensure_keys_reporting(&tenant, &requests)
        .await
        .unwrap();
    assert!(
        !again[0].created,
        "{scenario}: a stored kid is not created again"
    );
    assert_eq!(again[0].key, created[0].key, "{scenario}");
    let second = candidate();
    let mixed = store
        .ensure_keys_reporting(&tenant, &[by_kid(&movie, &first), by_kid(&movie, &second)])
        .await
        .unwrap();
    assert_eq!(
        mixed.iter().map(|e| e.created).collect::<Vec<_>>(),
        [false, true],
        "{scenario}: flags per request"
    );
}

pub async fn created_keys_are_audited_with_them<S: Backend>(store: &Arc<S>) {
    let scenario = "ensure_keys_audited";
    let tenant = new_tenant();
    let movie = content("movie-audited");
    let template = AuditEvent {
        key_ids: Vec::new(),
        ..event(&tenant, AuditAction::KeyCreated, "movie-audited", now())
    };
    let created_events = async || {
        store
            .query_audit(&AuditQuery {
                tenant: Some(tenant.as_str().into()),
                action: Some(AuditAction::KeyCreated),
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap()
    };
    let first = candidate();
    let second = candidate();
    let keys = store
        .ensure_keys_audited(&tenant, &[by_kid(&movie, &first)], template.clone())
        .await
        .unwrap();
    assert!(keys[0].created, "{scenario}: created");
    let events = created_events().await;
    assert_eq!(events.len(), 1, "{scenario}: one event, already committed");
    assert_eq!(
        events[0].key_ids,
        [first.kid],
        "{scenario}: the created kid"
    );
    assert_eq!(events[0].credential, template.credential, "{scenario}");
    // A re-request creates nothing and records nothing.
    store
        .ensure_keys_audited(&tenant, &[by_kid(&movie, &first)], template.clone())
        .await
        .unwrap();
    assert_eq!(created_events().await.len(), 1, "{scenario}: nothing new");
    // A mixed batch records only the kid it created.
    store
        .ensure_keys_audited(
            &tenant,
            &[by_kid(&movie, &first), by_kid(&movie, &second)],
            template.clone(),
        )
        .await
        .unwrap();
    let events = created_events().await;
    assert_eq!(events.len(), 2, "{scenario}: one event per creating batch");
    assert!(
        events.iter().any(|e| e.key_ids == [second.kid]),
        "{scenario}: only the new kid"
    );
    // A conflicting batch stores no key and no event.
    let clash = candidate_for(first.kid);
    let third = candidate();
    let refused = store
        .ensure_keys_audited(
            &tenant,
            &[
                by_kid(&movie, &third),
                by_kid(&content("movie-other"), &clash),
            ],
            template,
        )
        .await;
    assert!(
        refused.is_err(),
        "{scenario}: a kid of another content conflicts"
    );
    assert_eq!(
        created_events().await.len(),
        2,
        "{scenario}: no event for a refused batch"
    );
}

pub async fn drm_systems_round_trip<S: Backend>(store: &Arc<S>) {
    let scenario = "DRM systems";
    let tenant = new_tenant();
    let other = new_tenant();
    let v0 = store.registry_version().await.unwrap();
    let first = crate::StoredDrmSystem {
        tenant: tenant.clone(),
        name: "irdeto".into(),
        spec: r#"{"system_id":"80a6be7e-1448-4c37-9e70-d5aebe04c8d2"}"#.into(),
        created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        updated_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    };
    assert!(
        store.put_drm_system(&first).await.unwrap(),
        "{scenario}: new"
    );
    let v1 = store.registry_version().await.unwrap();
    assert!(v1 > v0, "{scenario}: the version moves on");
    let changed = crate::StoredDrmSystem {
        spec: r#"{"system_id":"80a6be7e-1448-4c37-9e70-d5aebe04c8d2","pssh_version":1}"#.into(),
        created_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        updated_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        ..first.clone()
    };
    assert!(
        !store.put_drm_system(&changed).await.unwrap(),
        "{scenario}: a second put replaces"
    );
    let registry = store.registry().await.unwrap();
    assert!(registry.version > v1, "{scenario}: version after a change");
    let stored: Vec<_> = registry
        .drm_systems
        .iter()
        .filter(|d| d.tenant == tenant)
        .collect();
    assert_eq!(stored.len(), 1, "{scenario}: one row per name");
    assert_eq!(stored[0].spec, changed.spec, "{scenario}: the new spec");
    assert_eq!(
        (stored[0].created_at, stored[0].updated_at),
        (first.created_at, changed.updated_at),
        "{scenario}: created_at stays, updated_at moves"
    );
    assert!(
        !store.remove_drm_system(&other, "irdeto").await.unwrap(),
        "{scenario}: another tenant's name"
    );
    assert!(
        store.remove_drm_system(&tenant, "irdeto").await.unwrap(),
        "{scenario}: removed"
    );
    assert!(
        !store.remove_drm_system(&tenant, "irdeto").await.unwrap(),
        "{scenario}: removed once"
    );
    let registry = store.registry().await.unwrap();
    assert!(
        registry.drm_systems.iter().all(|d| d.tenant != tenant),
        "{scenario}: gone from the registry"
    );
}

pub async fn tenants_and_credentials_round_trip<S: Backend>(store: &Arc<S>) {
    let scenario = "tenants and credentials";
    let tenant = new_tenant();
    let v0 = store.registry_version().await.unwrap();
    let row = StoredTenant {
        id: tenant.clone(),
        settings: Some(r#"{"kid_override":true}"#.into()),
        disabled: false,
        created_at: now(),
    };
    assert!(
        store.create_tenant(&row).await.unwrap(),
        "{scenario}: created"
    );
    assert!(
        !store.create_tenant(&row).await.unwrap(),
        "{scenario}: a second create is refused"
    );
    let v1 = store.registry_version().await.unwrap();
    assert!(v1 > v0, "{scenario}: the version moves on");
    let id = format!("cred_{}", keyplex_crypto::random::random_token(10).unwrap());
    let credential = StoredCredential {
        id: id.clone(),
        tenant: tenant.clone(),
        kind: "basic".into(),
        label: "packager".into(),
        spec: Zeroizing::new(r#"{"user":"packager","password":"pw-secret"}"#.into()),
        created_at: now(),
    };
    store.add_credential(&credential).await.unwrap();
    store
        .set_tenant_disabled(&tenant, true, now())
        .await
        .unwrap();
    let registry = store.registry().await.unwrap();
    assert!(registry.version > v1, "{scenario}: version after changes");
    let stored = registry.tenants.iter().find(|t| t.id == tenant).unwrap();
    assert_eq!(stored.settings, row.settings, "{scenario}: settings");
    assert!(stored.disabled, "{scenario}: disabled");
    let cred = registry.credentials.iter().find(|c| c.id == id).unwrap();
    assert_eq!(
        cred.spec.as_str(),
        credential.spec.as_str(),
        "{scenario}: spec opens"
    );
    assert_eq!(
        (cred.kind.as_str(), cred.label.as_str()),
        ("basic", "packager")
    );
    // A file tenant gets a row (no settings) when it is disabled.
    let file_tenant = new_tenant();
    store
        .set_tenant_disabled(&file_tenant, true, now())
        .await
        .unwrap();
    store
        .set_tenant_disabled(&file_tenant, false, now())
        .await
        .unwrap();
    let registry = store.registry().await.unwrap();
    let overlay = registry
        .tenants
        .iter()
        .find(|t| t.id == file_tenant)
        .unwrap();
    assert_eq!(
        (overlay.settings.as_deref(), overlay.disabled),
        (None, false),
        "{scenario}"
    );
    // Revocation is per tenant.
    let other = new_tenant();
    assert!(
        !store.revoke_credential(&other, &id).await.unwrap(),
        "{scenario}: other tenant"
    );
    assert!(
        store.revoke_credential(&tenant, &id).await.unwrap(),
        "{scenario}: revoked"
    );
    assert!(
        !store.revoke_credential(&tenant, &id).await.unwrap(),
        "{scenario}: once"
    );
    let registry = store.registry().await.unwrap();
    assert!(
        registry.credentials.iter().all(|c| c.id != id),
        "{scenario}: gone"
    );
}

/// `event` with every column made different from row to row (by `i`), so that a value
/// bound to the wrong row of a multi-row insert shows.
fn varied_event(mut event: AuditEvent, i: i32) -> AuditEvent {
    event.client = format!("10.0.0.{i}");
    event.interface = format!("interface-{i}");
    event.credential = format!("basic:packager-{i}");
    event.outcome = format!("outcome-{i}");
    event.detail = (i % 3 == 0).then(|| format!("detail-{i}"));
    event.key_ids = (0..i % 4)
        .map(|_| keyplex_crypto::random::new_key_id().unwrap())
        .collect();
    event
}

/// Appends of every size around the SQLite writer's chunk sizes (32, 16, 8, 4, 2, 1 rows per
/// statement) store every row as it was sent, in the order sent.
pub async fn audit_appends_of_every_size_keep_every_row<S: Backend>(store: &Arc<S>) {
    // After `audit_events_are_queryable`'s purge time, so that it does not touch these.
    let t0 = OffsetDateTime::from_unix_timestamp(1_500_000_000).unwrap();
    for n in [1, 2, 3, 4, 5, 7, 15, 31, 32, 33, 63, 64, 65, 100] {
        let scenario = format!("an append of {n} events");
        let tenant = new_tenant();
        let events: Vec<AuditEvent> = (0..n)
            .map(|i| {
                let at = t0 + time::Duration::seconds(i64::from(i));
                varied_event(event(&tenant, AuditAction::KeyDelivered, "movie", at), i)
            })
            .collect();
        store.append_audit(events.as_slice().into()).await.unwrap();
        assert_stored_as_sent(&scenario, &tenant_events(store, &tenant).await, &events);
    }
}

/// Every event of `tenant`, newest first.
async fn tenant_events<S: Backend>(store: &Arc<S>, tenant: &TenantId) -> Vec<AuditEvent> {
    store
        .query_audit(&AuditQuery {
            tenant: Some(tenant.as_str().into()),
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
}

/// `stored` (newest first) holds exactly the events `sent` in one append: every column of
/// every row, with ids in the order of the append.
fn assert_stored_as_sent(scenario: &str, stored: &[AuditEvent], sent: &[AuditEvent]) {
    assert_eq!(stored.len(), sent.len(), "{scenario}: every event");
    let strip = |e: &AuditEvent| AuditEvent { id: 0, ..e.clone() };
    for (stored, sent) in stored.iter().rev().zip(sent) {
        assert_eq!(
            strip(stored),
            strip(sent),
            "{scenario}: every column of every row"
        );
    }
    assert!(
        stored.windows(2).all(|w| w[0].id > w[1].id),
        "{scenario}: ids follow the order of the append"
    );
}

fn event(
    tenant: &TenantId,
    action: AuditAction,
    content_id: &str,
    at: OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        tenant: tenant.as_str().to_owned(),
        action,
        interface: "cpix".into(),
        credential: "basic:packager".into(),
        client: "127.0.0.1".into(),
        content_id: Some(ContentId::parse(content_id).unwrap()),
        key_ids: vec![keyplex_crypto::random::new_key_id().unwrap()],
        outcome: "ok".into(),
        detail: None,
    }
}

pub async fn audit_events_are_queryable<S: Backend>(store: &Arc<S>) {
    let scenario = "audit trail";
    let tenant = new_tenant();
    // Long ago, so that the purge below touches no other scenario's events.
    let t0 = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
    let minute = time::Duration::minutes(1);
    let events: Vec<AuditEvent> = (0..250)
        .map(|i| {
            let content = if i % 2 == 0 { "movie-a" } else { "movie-b" };
            let action = if i % 5 == 0 {
                AuditAction::KeyCreated
            } else {
                AuditAction::KeyDelivered
            };
            let mut event = varied_event(event(&tenant, action, content, t0 + minute * i), i);
            // (Outside the content and time window queried below.)
            if i % 7 == 0 && i > 100 {
                event.content_id = None;
            }
            event
        })
        .collect();
    store.append_audit(events.as_slice().into()).await.unwrap();
    let all = tenant_events(store, &tenant).await;
    // 250 events in one append: chunks of several sizes in a batched insert.
    assert_stored_as_sent(scenario, &all, &events);
    assert!(
        all.windows(2).all(|w| w[0].at >= w[1].at),
        "{scenario}: newest first"
    );
    let newest = &all[0];
    assert_eq!(
        newest.at, events[249].at,
        "{scenario}: time to the millisecond"
    );
    let movie_a_window = store
        .query_audit(&AuditQuery {
            tenant: Some(tenant.as_str().into()),
            content_id: Some(ContentId::parse("movie-a").unwrap()),
            since: Some(t0 + minute * 10),
            until: Some(t0 + minute * 20),
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        movie_a_window.len(),
        5,
        "{scenario}: content and time range"
    );
    let created = store
        .query_audit(&AuditQuery {
            tenant: Some(tenant.as_str().into()),
            action: Some(AuditAction::KeyCreated),
            limit: 3,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(created.len(), 3, "{scenario}: limit");
    assert!(
        created.iter().all(|e| e.action == AuditAction::KeyCreated),
        "{scenario}: action"
    );
    // Retention: events before a time go, the rest stay.
    let purged = store.purge_audit(t0 + minute * 100).await.unwrap();
    assert!(purged >= 100, "{scenario}: purged {purged}");
    let kept = store
        .query_audit(&AuditQuery {
            tenant: Some(tenant.as_str().into()),
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(kept.len(), 150, "{scenario}: retention");
    assert!(kept.iter().all(|e| e.at >= t0 + minute * 100), "{scenario}");
    let other = store
        .query_audit(&AuditQuery {
            tenant: Some(new_tenant().as_str().into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(other.is_empty(), "{scenario}: tenants are separate");
}

pub async fn contents_are_listed_and_searchable<S: Backend>(store: &Arc<S>) {
    let scenario = "content listing";
    let tenant = new_tenant();
    for name in ["Movie-Dash-1", "movie-dash-2", "series-7"] {
        let movie = content(name);
        for _ in 0..2 {
            ensure_one(store, &tenant, by_kid(&movie, &candidate()), scenario).await;
        }
    }
    let all = store.list_contents(&tenant, None, None, 10).await.unwrap();
    let names: Vec<&str> = all.iter().map(|c| c.content_id.as_str()).collect();
    assert_eq!(
        names,
        ["Movie-Dash-1", "movie-dash-2", "series-7"],
        "{scenario}: sorted"
    );
    assert!(all.iter().all(|c| c.keys == 2), "{scenario}: key counts");
    let dash = store
        .list_contents(&tenant, Some("DASH"), None, 10)
        .await
        .unwrap();
    assert_eq!(dash.len(), 2, "{scenario}: case-insensitive search");
    let page = store
        .list_contents(&tenant, None, Some(&all[0].content_id), 1)
        .await
        .unwrap();
    assert_eq!(
        page[0].content_id.as_str(),
        "movie-dash-2",
        "{scenario}: paging"
    );
}

pub async fn export_then_import_restores_identical_keys<S: Backend>(store: &Arc<S>) {
    let scenario = "export and import";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let hd = slot(&movie, "HD", KeyPeriod::Index(7));
    let slotted = ensure_one(store, &tenant, by_slot(&hd, &candidate(), false), scenario).await;
    let named = ensure_one(store, &tenant, by_kid(&movie, &candidate()), scenario).await;
    let exported = store.export_keys(&tenant).await.unwrap();
    assert_eq!(exported.len(), 2, "{scenario}: every key");
    assert!(
        exported.iter().any(|e| e.key == slotted && e.slotted),
        "{scenario}: slot kept"
    );
    assert!(
        exported.iter().any(|e| e.key == named && !e.slotted),
        "{scenario}"
    );
    // Into another tenant: everything new.
    let copy = new_tenant();
    let outcome = store.import_keys(&copy, &exported).await.unwrap();
    assert_eq!(
        (outcome.imported, outcome.already_present),
        (2, 0),
        "{scenario}"
    );
    assert_eq!(
        store.get_key(&copy, &named.kid).await.unwrap().as_ref(),
        Some(&named)
    );
    // The slot binding came along: asking for the slot gives the imported key.
    let again = ensure_one(store, &copy, by_slot(&hd, &candidate(), false), scenario).await;
    assert_eq!(again, slotted, "{scenario}: slot restored");
    let infos = store.list_keys(&copy, &movie).await.unwrap();
    let original = store.list_keys(&tenant, &movie).await.unwrap();
    assert_eq!(
        infos, original,
        "{scenario}: metadata identical, creation times included"
    );
    // Importing again is harmless.
    let outcome = store.import_keys(&copy, &exported).await.unwrap();
    assert_eq!(
        (outcome.imported, outcome.already_present),
        (0, 2),
        "{scenario}: idempotent"
    );
}

pub async fn import_refuses_conflicts_and_writes_nothing<S: Backend>(store: &Arc<S>) {
    let scenario = "import conflicts";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let stored = ensure_one(store, &tenant, by_kid(&movie, &candidate()), scenario).await;
    let mut exported = store.export_keys(&tenant).await.unwrap();
    let target = new_tenant();
    // The target already has that kid with other bytes.
    let mut other = candidate();
    other.kid = stored.kid;
    ensure_one(store, &target, by_kid(&movie, &other), scenario).await;
    let fresh = ensure_one(
        store,
        &new_tenant(),
        by_kid(&content("x"), &candidate()),
        scenario,
    )
    .await;
    exported.insert(
        0,
        crate::ExportedKey {
            key: fresh.clone(),
            slotted: false,
            created_at: now(),
        },
    );
    match store.import_keys(&target, &exported).await {
        Err(StoreError::Conflict { kid, .. }) => assert_eq!(kid, stored.kid, "{scenario}"),
        other => panic!("{scenario}: expected a conflict, got {other:?}"),
    }
    assert!(
        store.get_key(&target, &fresh.kid).await.unwrap().is_none(),
        "{scenario}: nothing of the batch was written"
    );
}

pub async fn live_sessions_of_a_user_are_listed<S: Backend>(store: &Arc<S>) {
    let scenario = "live_sessions_of";
    let tenant = new_tenant();
    let other_tenant = new_tenant();
    for (user, now, ttl) in [
        ("a", 1_000, 100),
        ("a", 1_001, 100),
        ("a", 1_000, 5),
        ("b", 1_000, 100),
    ] {
        let s = super::new_session(user, now, ttl);
        store.open_session(&tenant, &s, None, now).await.unwrap();
    }
    let s = super::new_session("a", 1_000, 100);
    store
        .open_session(&other_tenant, &s, None, 1_000)
        .await
        .unwrap();
    let live = store.live_sessions_of(&tenant, "a", 1_010).await.unwrap();
    assert_eq!(
        live.len(),
        2,
        "{scenario}: the expired one and other users' are left out"
    );
    assert!(
        live.iter().all(|s| s.user == "a" && s.expires_at > 1_010),
        "{scenario}"
    );
    assert!(
        live[0].created_at >= live[1].created_at,
        "{scenario}: newest first"
    );
    assert!(
        store
            .live_sessions_of(&tenant, "nobody", 1_010)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn content_policies_round_trip<S: Backend>(store: &Arc<S>) {
    let scenario = "content policies";
    let tenant = new_tenant();
    let other = new_tenant();
    let movie = content("movie-1");
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    assert_eq!(
        store.content_policy(&tenant, &movie).await.unwrap(),
        None,
        "{scenario}"
    );
    store
        .put_content_policy(&tenant, &movie, r#"{"persistent":true}"#, at)
        .await
        .unwrap();
    store
        .put_content_policy(&other, &movie, r#"{"persistent":false}"#, at)
        .await
        .unwrap();
    assert_eq!(
        store
            .content_policy(&tenant, &movie)
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"persistent":true}"#),
        "{scenario}"
    );
    // Replaced, not added.
    store
        .put_content_policy(&tenant, &movie, r#"{"hdcp":"HDCP_V1"}"#, at)
        .await
        .unwrap();
    assert_eq!(
        store
            .content_policy(&tenant, &movie)
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"hdcp":"HDCP_V1"}"#),
        "{scenario}: replaced"
    );
    assert!(
        store.delete_content_policy(&tenant, &movie).await.unwrap(),
        "{scenario}"
    );
    assert!(
        !store.delete_content_policy(&tenant, &movie).await.unwrap(),
        "{scenario}: gone"
    );
    assert_eq!(
        store.content_policy(&tenant, &movie).await.unwrap(),
        None,
        "{scenario}"
    );
    assert_eq!(
        store
            .content_policy(&other, &movie)
            .await
            .unwrap()
            .as_deref(),
        Some(r#"{"persistent":false}"#),
        "{scenario}: tenants are separate"
    );
}

pub async fn live_sessions_are_counted<S: Backend>(store: &Arc<S>) {
    let scenario = "count_live_sessions";
    let tenant = new_tenant();
    for (user, ttl) in [("a", 100), ("b", 100), ("c", 5)] {
        let s = super::new_session(user, 1_000, ttl);
        store.open_session(&tenant, &s, None, 1_000).await.unwrap();
    }
    assert_eq!(
        store
            .count_live_sessions(Some(&tenant), 1_010)
            .await
            .unwrap(),
        2,
        "{scenario}"
    );
    assert!(
        store.count_live_sessions(None, 1_010).await.unwrap() >= 2,
        "{scenario}: all tenants"
    );
}

pub async fn rotation_rewraps_every_key<S: Backend>(store: &Arc<S>) {
    let scenario = "master key rotation";
    let tenant = new_tenant();
    let mut keys = Vec::new();
    for i in 0..600 {
        let movie = content(&format!("movie-{i}"));
        keys.push(ensure_one(store, &tenant, by_kid(&movie, &candidate()), scenario).await);
    }
    let id = format!("cred_{}", keyplex_crypto::random::random_token(10).unwrap());
    store
        .add_credential(&StoredCredential {
            id: id.clone(),
            tenant: tenant.clone(),
            kind: "get_token".into(),
            label: "token".into(),
            spec: Zeroizing::new(r#"{"token":"t0k3n"}"#.into()),
            created_at: now(),
        })
        .await
        .unwrap();
    // Key creation goes on while the rotation runs.
    let racer = {
        let store = store.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..50 {
                let movie = content(&format!("during-{i}"));
                made.push(
                    store
                        .ensure_keys(&tenant, &[by_kid(&movie, &candidate())])
                        .await
                        .unwrap()
                        .remove(0),
                );
            }
            made
        })
    };
    let new = MasterKey::generate().unwrap();
    let report = store.rotate_master_key(new.clone()).await.unwrap();
    keys.extend(racer.await.unwrap());
    assert_eq!(report.new_fingerprint, new.fingerprint(), "{scenario}");
    assert!(
        report.rewrapped >= 601,
        "{scenario}: rewrapped {}",
        report.rewrapped
    );
    // Every key reads back from the database (not a cache) under the new key alone.
    let exported = store.export_keys(&tenant).await.unwrap();
    assert_eq!(exported.len(), keys.len(), "{scenario}");
    for key in &keys {
        let found = exported
            .iter()
            .find(|e| e.key.kid == key.kid)
            .map(|e| &e.key);
        assert_eq!(found, Some(key), "{scenario}: key {} reads back", key.kid);
    }
    let registry = store.registry().await.unwrap();
    let cred = registry.credentials.iter().find(|c| c.id == id).unwrap();
    assert_eq!(
        cred.spec.as_str(),
        r#"{"token":"t0k3n"}"#,
        "{scenario}: credential reads back"
    );
}

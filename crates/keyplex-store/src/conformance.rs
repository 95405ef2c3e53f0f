//! The behaviour every [`KeyStore`] backend must show: one scenario per public function, and
//! [`conformance_tests!`](crate::conformance_tests) to make each of them a test of a backend
//! (so that a failing scenario does not hide the others).
//!
//! Every scenario works in its own random tenant with random key ids, so the suite can also
//! run against a database that already holds data (a shared PostgreSQL in CI). A scenario
//! panics on the first violated invariant, naming itself. Built for the store's own tests and,
//! with the feature `conformance`, for backends in other crates.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;

use keyplex_crypto::random;
use keyplex_types::{
    ContentId, ContentKey, KeyId, KeyOrigin, KeyPeriod, KeySlot, TenantId, TrackType,
};

use crate::{
    KeyMaterial, KeyRequest, KeyStore, NewSession, SessionOpen, StoreError, UnauditedKeys,
};

/// How many identical requests race in the concurrency scenarios.
const RACERS: usize = 50;

/// What the suite needs of a backend: every role, and key creation without an audit event.
pub trait Backend: KeyStore + UnauditedKeys {}

impl<T: KeyStore + UnauditedKeys + ?Sized> Backend for T {}

/// Makes every scenario a `#[tokio::test]` of the module it is invoked in, each on a fresh
/// store: `$open` is a future of the store (an `async` block), awaited once per test.
///
/// ```ignore
/// mod conformance {
///     keyplex_store::conformance_tests!(async { open_my_store().await.unwrap() });
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::conformance_tests!(@scenarios $open;
            by_kid_create_and_retry,
            by_kid_conflicts,
            by_kid_supplied_key_and_iv,
            by_slot_create_and_reuse,
            by_slot_supplied,
            by_slot_candidate_kid_in_use,
            batch_results_follow_request_order,
            batch_repeats_resolve_to_one_key,
            conflicting_batch_stores_nothing,
            tenants_are_isolated,
            reads_expose_only_what_is_asked,
            an_unstorable_request_fails_alone,
            racing_identical_requests_create_one_key,
            token_ids_are_spent_once,
            sessions_live_until_they_expire_or_close,
            session_limit_counts_live_sessions_per_user,
            racing_session_openings_respect_the_limit,
            dashboard_counts_add_up_across_writers,
            ensure_reports_what_it_created,
            created_keys_are_audited_with_them,
            drm_systems_round_trip,
            tenants_and_credentials_round_trip,
            audit_events_are_queryable,
            audit_appends_of_every_size_keep_every_row,
            contents_are_listed_and_searchable,
            export_then_import_restores_identical_keys,
            import_refuses_conflicts_and_writes_nothing,
            live_sessions_of_a_user_are_listed,
            content_policies_round_trip,
            live_sessions_are_counted,
            rotation_rewraps_every_key,
        );
    };
    (@scenarios $open:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                let store = ::std::sync::Arc::new($open.await);
                $crate::conformance::$scenario(&store).await;
            }
        )*
    };
}

mod admin;

pub use admin::*;

fn new_tenant() -> TenantId {
    let suffix = random::random_token(12).unwrap().to_ascii_lowercase();
    TenantId::parse(&format!("conformance-{suffix}")).unwrap()
}

fn content(name: &str) -> ContentId {
    ContentId::parse(name).unwrap()
}

fn candidate() -> KeyMaterial {
    KeyMaterial {
        kid: random::new_key_id().unwrap(),
        key: random::new_key_value().unwrap(),
        iv: random::new_iv().unwrap(),
    }
}

/// The same key id with fresh key bytes and IV: what a packager's retry produces when keyplex
/// generates the key.
fn candidate_for(kid: KeyId) -> KeyMaterial {
    KeyMaterial { kid, ..candidate() }
}

fn by_kid(content_id: &ContentId, material: &KeyMaterial) -> KeyRequest {
    KeyRequest::ByKid {
        content_id: content_id.clone(),
        candidate: material.clone(),
        key_supplied: false,
        iv_supplied: false,
        track_type: None,
        period: KeyPeriod::Vod,
    }
}

fn by_kid_supplied(
    content_id: &ContentId,
    material: &KeyMaterial,
    key_supplied: bool,
    iv_supplied: bool,
) -> KeyRequest {
    KeyRequest::ByKid {
        content_id: content_id.clone(),
        candidate: material.clone(),
        key_supplied,
        iv_supplied,
        track_type: None,
        period: KeyPeriod::Vod,
    }
}

fn slot(content_id: &ContentId, track: &str, period: KeyPeriod) -> KeySlot {
    KeySlot {
        content_id: content_id.clone(),
        track_type: TrackType::parse(track).unwrap(),
        period,
    }
}

fn by_slot(key_slot: &KeySlot, material: &KeyMaterial, supplied: bool) -> KeyRequest {
    KeyRequest::BySlot {
        slot: key_slot.clone(),
        candidate: material.clone(),
        supplied,
        iv_supplied: supplied,
    }
}

fn assert_is_material(key: &ContentKey, material: &KeyMaterial, scenario: &str) {
    assert_eq!(key.kid, material.kid, "{scenario}: kid");
    assert!(
        key.key == material.key,
        "{scenario}: key bytes differ from the candidate"
    );
    assert_eq!(key.iv, material.iv, "{scenario}: iv");
}

async fn ensure_one<S: Backend>(
    store: &Arc<S>,
    tenant: &TenantId,
    request: KeyRequest,
    scenario: &str,
) -> ContentKey {
    let mut keys = store
        .ensure_keys(tenant, &[request])
        .await
        .unwrap_or_else(|e| panic!("{scenario}: ensure_keys failed: {e}"));
    assert_eq!(keys.len(), 1, "{scenario}: one result per request");
    keys.remove(0)
}

async fn expect_conflict<S: Backend>(
    store: &Arc<S>,
    tenant: &TenantId,
    requests: &[KeyRequest],
    kid: KeyId,
    scenario: &str,
) {
    match store.ensure_keys(tenant, requests).await {
        Err(StoreError::Conflict { kid: reported, .. }) => {
            assert_eq!(
                reported, kid,
                "{scenario}: the conflict names the wrong key id"
            );
        }
        Err(other) => panic!("{scenario}: expected a conflict, got {other}"),
        Ok(keys) => panic!("{scenario}: expected a conflict, got {} keys", keys.len()),
    }
}

pub async fn by_kid_create_and_retry<S: Backend>(store: &Arc<S>) {
    let scenario = "by-kid create and retry";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let material = candidate();
    let request = KeyRequest::ByKid {
        content_id: movie.clone(),
        candidate: material.clone(),
        key_supplied: false,
        iv_supplied: false,
        track_type: Some(TrackType::parse("HD").unwrap()),
        period: KeyPeriod::Index(3),
    };
    let created = ensure_one(store, &tenant, request, scenario).await;
    assert_is_material(&created, &material, scenario);
    assert_eq!(created.content_id, movie, "{scenario}: content id");
    assert_eq!(
        created.track_type.as_ref().map(TrackType::as_str),
        Some("HD"),
        "{scenario}: track type"
    );
    assert_eq!(created.period, KeyPeriod::Index(3), "{scenario}: period");
    assert_eq!(created.origin, KeyOrigin::Generated, "{scenario}: origin");

    // A retry generates a new candidate for the same kid: the stored key wins.
    let retried = ensure_one(
        store,
        &tenant,
        by_kid(&movie, &candidate_for(material.kid)),
        scenario,
    )
    .await;
    assert_eq!(
        retried, created,
        "{scenario}: a retry returns the stored key unchanged"
    );
    let fetched = store.get_key(&tenant, &material.kid).await.unwrap();
    assert_eq!(fetched.as_ref(), Some(&created), "{scenario}: get_key");
    assert_eq!(
        store.key_content(&tenant, &material.kid).await.unwrap(),
        Some(movie.clone()),
        "{scenario}: key_content"
    );
    assert_eq!(
        store
            .key_content(&new_tenant(), &material.kid)
            .await
            .unwrap(),
        None,
        "{scenario}: key_content of another tenant"
    );
}

pub async fn by_kid_conflicts<S: Backend>(store: &Arc<S>) {
    let scenario = "by-kid conflicts";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let material = candidate();
    ensure_one(store, &tenant, by_kid(&movie, &material), scenario).await;

    let other = content("movie-2");
    for request in [
        by_kid(&other, &material),
        by_kid_supplied(&other, &material, true, true),
        by_kid(&other, &candidate_for(material.kid)),
    ] {
        expect_conflict(
            store,
            &tenant,
            &[request],
            material.kid,
            "by-kid: same kid under another content",
        )
        .await;
    }
    expect_conflict(
        store,
        &tenant,
        &[by_kid_supplied(
            &movie,
            &candidate_for(material.kid),
            true,
            false,
        )],
        material.kid,
        "by-kid: different supplied key",
    )
    .await;
    let other_iv = KeyMaterial {
        iv: random::new_iv().unwrap(),
        ..material.clone()
    };
    expect_conflict(
        store,
        &tenant,
        &[by_kid_supplied(&movie, &other_iv, true, true)],
        material.kid,
        "by-kid: different supplied IV",
    )
    .await;
    // An IV keyplex would generate (not supplied) never conflicts: the stored one is returned.
    let kept = ensure_one(
        store,
        &tenant,
        by_kid_supplied(&movie, &other_iv, true, false),
        scenario,
    )
    .await;
    assert_is_material(&kept, &material, scenario);
    assert!(
        store.list_keys(&tenant, &other).await.unwrap().is_empty(),
        "{scenario}: nothing stored for the other content"
    );
}

pub async fn by_kid_supplied_key_and_iv<S: Backend>(store: &Arc<S>) {
    let scenario = "by-kid supplied key";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let material = candidate();
    let created = ensure_one(
        store,
        &tenant,
        by_kid_supplied(&movie, &material, true, true),
        scenario,
    )
    .await;
    assert_is_material(&created, &material, scenario);
    assert_eq!(created.origin, KeyOrigin::Supplied, "{scenario}: origin");
    let again = ensure_one(
        store,
        &tenant,
        by_kid_supplied(&movie, &material, true, true),
        scenario,
    )
    .await;
    assert_eq!(
        again, created,
        "{scenario}: the same supplied key again is accepted"
    );
    let unsupplied = ensure_one(
        store,
        &tenant,
        by_kid(&movie, &candidate_for(material.kid)),
        scenario,
    )
    .await;
    assert_eq!(
        unsupplied, created,
        "{scenario}: a request without key returns the supplied one"
    );
}

pub async fn by_slot_create_and_reuse<S: Backend>(store: &Arc<S>) {
    let scenario = "by-slot create and reuse";
    let tenant = new_tenant();
    let live = content("live-1");
    let hd_vod = slot(&live, "HD", KeyPeriod::Vod);
    let material = candidate();
    let created = ensure_one(store, &tenant, by_slot(&hd_vod, &material, false), scenario).await;
    assert_is_material(&created, &material, scenario);
    assert_eq!(created.content_id, live, "{scenario}: content id");
    assert_eq!(
        created.track_type.as_ref().map(TrackType::as_str),
        Some("HD"),
        "{scenario}: track type"
    );
    assert_eq!(created.period, KeyPeriod::Vod, "{scenario}: period");
    assert_eq!(created.origin, KeyOrigin::Generated, "{scenario}: origin");

    for _ in 0..3 {
        let again = ensure_one(
            store,
            &tenant,
            by_slot(&hd_vod, &candidate(), false),
            scenario,
        )
        .await;
        assert_eq!(
            again, created,
            "{scenario}: the slot keeps its key across calls"
        );
    }

    let mut seen = vec![created.kid];
    for other_slot in [
        slot(&live, "SD", KeyPeriod::Vod),
        slot(&live, "HD", KeyPeriod::Index(0)),
        slot(&live, "HD", KeyPeriod::Index(1)),
        slot(&content("live-2"), "HD", KeyPeriod::Vod),
    ] {
        let key = ensure_one(
            store,
            &tenant,
            by_slot(&other_slot, &candidate(), false),
            scenario,
        )
        .await;
        assert!(
            !seen.contains(&key.kid),
            "{scenario}: {other_slot:?} must get its own key"
        );
        seen.push(key.kid);
        let again = ensure_one(
            store,
            &tenant,
            by_slot(&other_slot, &candidate(), false),
            scenario,
        )
        .await;
        assert_eq!(again, key, "{scenario}: {other_slot:?} keeps its key");
    }
}

pub async fn by_slot_supplied<S: Backend>(store: &Arc<S>) {
    let scenario = "by-slot supplied key";
    let tenant = new_tenant();
    let live = content("live-1");
    let key_slot = slot(&live, "UHD1", KeyPeriod::Index(12));
    let material = candidate();
    let created = ensure_one(
        store,
        &tenant,
        by_slot(&key_slot, &material, true),
        scenario,
    )
    .await;
    assert_is_material(&created, &material, scenario);
    assert_eq!(created.origin, KeyOrigin::Supplied, "{scenario}: origin");
    let again = ensure_one(
        store,
        &tenant,
        by_slot(&key_slot, &material, true),
        scenario,
    )
    .await;
    assert_eq!(
        again, created,
        "{scenario}: the same supplied key again is accepted"
    );
    // NAGRA `scheduledKey` retried without its IV: the kid and key are supplied, the IV is
    // a fresh candidate keyplex generated, which must neither conflict nor replace the IV.
    let retried_without_iv = ensure_one(
        store,
        &tenant,
        KeyRequest::BySlot {
            slot: key_slot.clone(),
            candidate: KeyMaterial {
                iv: random::new_iv().unwrap(),
                ..material.clone()
            },
            supplied: true,
            iv_supplied: false,
        },
        scenario,
    )
    .await;
    assert_eq!(
        retried_without_iv, created,
        "{scenario}: the supplied key retried without an IV is accepted, IV unchanged"
    );
    let unsupplied = ensure_one(
        store,
        &tenant,
        by_slot(&key_slot, &candidate(), false),
        scenario,
    )
    .await;
    assert_eq!(
        unsupplied, created,
        "{scenario}: an unsupplied request gets the slot's key"
    );

    let other_kid = candidate();
    expect_conflict(
        store,
        &tenant,
        &[by_slot(&key_slot, &other_kid, true)],
        other_kid.kid,
        "by-slot: supplied kid differs",
    )
    .await;
    let other_key = KeyMaterial {
        key: random::new_key_value().unwrap(),
        ..material.clone()
    };
    expect_conflict(
        store,
        &tenant,
        &[by_slot(&key_slot, &other_key, true)],
        material.kid,
        "by-slot: supplied key differs",
    )
    .await;
    let other_iv = KeyMaterial {
        iv: random::new_iv().unwrap(),
        ..material.clone()
    };
    expect_conflict(
        store,
        &tenant,
        &[by_slot(&key_slot, &other_iv, true)],
        material.kid,
        "by-slot: supplied IV differs",
    )
    .await;
    assert!(
        store
            .get_key(&tenant, &other_kid.kid)
            .await
            .unwrap()
            .is_none(),
        "{scenario}: the rejected kid is not stored"
    );
}

pub async fn by_slot_candidate_kid_in_use<S: Backend>(store: &Arc<S>) {
    let scenario = "by-slot candidate kid already in use";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let material = candidate();
    let by_kid_key = ensure_one(store, &tenant, by_kid(&movie, &material), scenario).await;
    // Even for the same content: the kid belongs to an unslotted key, so it cannot become the
    // slot's identity.
    for supplied in [false, true] {
        let key_slot = slot(&movie, "HD", KeyPeriod::Vod);
        expect_conflict(
            store,
            &tenant,
            &[by_slot(&key_slot, &material, supplied)],
            material.kid,
            scenario,
        )
        .await;
    }
    // A slotted kid cannot be reused for another slot either.
    let key_slot = slot(&movie, "SD", KeyPeriod::Vod);
    let slotted = candidate();
    ensure_one(
        store,
        &tenant,
        by_slot(&key_slot, &slotted, false),
        scenario,
    )
    .await;
    let other_slot = slot(&movie, "AUDIO", KeyPeriod::Vod);
    expect_conflict(
        store,
        &tenant,
        &[by_slot(&other_slot, &slotted, true)],
        slotted.kid,
        scenario,
    )
    .await;
    assert_eq!(
        store.get_key(&tenant, &material.kid).await.unwrap(),
        Some(by_kid_key),
        "{scenario}: the key is unchanged"
    );
    let listed = store.list_keys(&tenant, &movie).await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "{scenario}: no slot was filled by the conflicting requests"
    );
}

pub async fn batch_results_follow_request_order<S: Backend>(store: &Arc<S>) {
    let scenario = "batch order";
    let tenant = new_tenant();
    let live = content("live-1");
    let materials: Vec<KeyMaterial> = (0..4).map(|_| candidate()).collect();
    let tracks = ["SD", "HD", "UHD1", "AUDIO"];
    let requests: Vec<KeyRequest> = tracks
        .iter()
        .zip(&materials)
        .map(|(track, material)| by_slot(&slot(&live, track, KeyPeriod::Index(5)), material, false))
        .collect();
    let keys = store.ensure_keys(&tenant, &requests).await.unwrap();
    assert_eq!(keys.len(), 4, "{scenario}: one result per request");
    for ((key, material), track) in keys.iter().zip(&materials).zip(tracks) {
        assert_is_material(key, material, scenario);
        assert_eq!(
            key.track_type.as_ref().map(TrackType::as_str),
            Some(track),
            "{scenario}"
        );
    }
    // A mixed batch of existing and new keys, in a different order.
    let mut mixed: Vec<KeyRequest> = requests.iter().rev().cloned().collect();
    let fresh = candidate();
    mixed.insert(2, by_kid(&live, &fresh));
    let again = store.ensure_keys(&tenant, &mixed).await.unwrap();
    let expected_kids: Vec<KeyId> = [
        materials[3].kid,
        materials[2].kid,
        fresh.kid,
        materials[1].kid,
        materials[0].kid,
    ]
    .into();
    assert_eq!(
        again.iter().map(|k| k.kid).collect::<Vec<_>>(),
        expected_kids,
        "{scenario}: mixed batch"
    );
}

pub async fn batch_repeats_resolve_to_one_key<S: Backend>(store: &Arc<S>) {
    let scenario = "repeats within one batch";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let first = candidate();
    let keys = store
        .ensure_keys(
            &tenant,
            &[
                by_kid(&movie, &first),
                by_kid(&movie, &candidate_for(first.kid)),
            ],
        )
        .await
        .unwrap();
    assert_is_material(&keys[0], &first, scenario);
    assert_eq!(keys[1], keys[0], "{scenario}: same kid twice");

    let key_slot = slot(&movie, "HD", KeyPeriod::Index(9));
    let slot_first = candidate();
    let keys = store
        .ensure_keys(
            &tenant,
            &[
                by_slot(&key_slot, &slot_first, false),
                by_slot(&key_slot, &candidate(), false),
            ],
        )
        .await
        .unwrap();
    assert_is_material(&keys[0], &slot_first, scenario);
    assert_eq!(keys[1], keys[0], "{scenario}: same slot twice");

    // A by-kid request for a kid created earlier in the batch by slot sees that key.
    let slot_second = candidate();
    let sd = slot(&movie, "SD", KeyPeriod::Index(9));
    let keys = store
        .ensure_keys(
            &tenant,
            &[
                by_slot(&sd, &slot_second, false),
                by_kid(&movie, &slot_second),
            ],
        )
        .await
        .unwrap();
    assert_eq!(keys[1], keys[0], "{scenario}: slot then kid");
    assert_eq!(
        store.list_keys(&tenant, &movie).await.unwrap().len(),
        3,
        "{scenario}: three keys in all"
    );
}

pub async fn conflicting_batch_stores_nothing<S: Backend>(store: &Arc<S>) {
    let scenario = "atomic rollback";
    let tenant = new_tenant();
    let taken = candidate();
    ensure_one(
        store,
        &tenant,
        by_kid(&content("movie-0"), &taken),
        scenario,
    )
    .await;

    let movie = content("movie-1");
    let new_by_kid = candidate();
    let new_by_slot = candidate();
    let key_slot = slot(&movie, "HD", KeyPeriod::Vod);
    let batch = [
        by_kid(&movie, &new_by_kid),
        by_slot(&key_slot, &new_by_slot, false),
        by_kid(&movie, &candidate_for(taken.kid)),
    ];
    expect_conflict(store, &tenant, &batch, taken.kid, scenario).await;
    assert!(
        store
            .get_key(&tenant, &new_by_kid.kid)
            .await
            .unwrap()
            .is_none(),
        "{scenario}: first request stored"
    );
    assert!(
        store
            .get_key(&tenant, &new_by_slot.kid)
            .await
            .unwrap()
            .is_none(),
        "{scenario}: second request stored"
    );
    assert!(
        store.list_keys(&tenant, &movie).await.unwrap().is_empty(),
        "{scenario}: keys listed"
    );
    // The slot is still empty: a later request binds its own candidate.
    let later = candidate();
    let key = ensure_one(store, &tenant, by_slot(&key_slot, &later, false), scenario).await;
    assert_is_material(&key, &later, scenario);

    // A conflict inside the batch itself (the second request contradicts the first) also
    // rolls back everything.
    let fresh = candidate();
    let other = content("movie-2");
    expect_conflict(
        store,
        &tenant,
        &[by_kid(&other, &fresh), by_kid(&movie, &fresh)],
        fresh.kid,
        scenario,
    )
    .await;
    assert!(
        store.get_key(&tenant, &fresh.kid).await.unwrap().is_none(),
        "{scenario}: in-batch conflict stored"
    );
}

pub async fn tenants_are_isolated<S: Backend>(store: &Arc<S>) {
    let scenario = "tenant isolation";
    let (first, second) = (new_tenant(), new_tenant());
    let movie = content("movie-1");
    let first_material = candidate();
    let second_material = candidate_for(first_material.kid);
    let first_key = ensure_one(store, &first, by_kid(&movie, &first_material), scenario).await;
    let second_key = ensure_one(store, &second, by_kid(&movie, &second_material), scenario).await;
    assert_is_material(&first_key, &first_material, scenario);
    assert_is_material(&second_key, &second_material, scenario);
    assert!(
        first_key.key != second_key.key,
        "{scenario}: the same kid in two tenants is two keys"
    );
    // Another content id in the second tenant does not conflict with the first tenant's key.
    let third = new_tenant();
    ensure_one(
        store,
        &third,
        by_kid(&content("movie-9"), &candidate_for(first_material.kid)),
        scenario,
    )
    .await;

    let key_slot = slot(&movie, "HD", KeyPeriod::Vod);
    let first_slot = ensure_one(
        store,
        &first,
        by_slot(&key_slot, &candidate(), false),
        scenario,
    )
    .await;
    let second_slot = ensure_one(
        store,
        &second,
        by_slot(&key_slot, &candidate(), false),
        scenario,
    )
    .await;
    assert_ne!(
        first_slot.kid, second_slot.kid,
        "{scenario}: slots are per tenant"
    );

    assert_eq!(
        store.get_key(&first, &first_material.kid).await.unwrap(),
        Some(first_key),
        "{scenario}: get_key"
    );
    assert_eq!(
        store.get_key(&second, &first_material.kid).await.unwrap(),
        Some(second_key),
        "{scenario}: get_key"
    );
    assert!(
        store
            .get_key(&new_tenant(), &first_material.kid)
            .await
            .unwrap()
            .is_none(),
        "{scenario}: unknown tenant"
    );
    assert!(
        store
            .get_key(&second, &first_slot.kid)
            .await
            .unwrap()
            .is_none(),
        "{scenario}: other tenant's slot key"
    );
    let listed = store.list_keys(&second, &movie).await.unwrap();
    let kids: Vec<KeyId> = listed.iter().map(|k| k.kid).collect();
    assert_eq!(
        kids,
        vec![first_material.kid, second_slot.kid],
        "{scenario}: list_keys"
    );
}

pub async fn reads_expose_only_what_is_asked<S: Backend>(store: &Arc<S>) {
    let scenario = "reads";
    let tenant = new_tenant();
    let movie = content("movie-1");
    let other = content("movie-2");
    let unslotted = ensure_one(store, &tenant, by_kid(&movie, &candidate()), scenario).await;
    let slotted = ensure_one(
        store,
        &tenant,
        by_slot(
            &slot(&movie, "AUDIO", KeyPeriod::Index(4)),
            &candidate(),
            false,
        ),
        scenario,
    )
    .await;
    ensure_one(store, &tenant, by_kid(&other, &candidate()), scenario).await;

    assert!(
        store
            .get_key(&tenant, &random::new_key_id().unwrap())
            .await
            .unwrap()
            .is_none(),
        "{scenario}: unknown kid"
    );
    assert!(
        store
            .list_keys(&tenant, &content("movie-3"))
            .await
            .unwrap()
            .is_empty(),
        "{scenario}: unknown content"
    );
    let listed = store.list_keys(&tenant, &movie).await.unwrap();
    assert_eq!(listed.len(), 2, "{scenario}: only this content's keys");
    let (first, second) = (&listed[0], &listed[1]);
    assert_eq!(
        (first.kid, first.slotted, first.period),
        (unslotted.kid, false, KeyPeriod::Vod),
        "{scenario}: first key"
    );
    assert_eq!(first.track_type, None, "{scenario}: first key track");
    assert_eq!(
        (second.kid, second.slotted, second.period),
        (slotted.kid, true, KeyPeriod::Index(4)),
        "{scenario}: second key"
    );
    assert_eq!(
        second.track_type.as_ref().map(TrackType::as_str),
        Some("AUDIO"),
        "{scenario}: second key track"
    );
    assert!(
        listed
            .iter()
            .all(|k| k.content_id == movie && k.origin == KeyOrigin::Generated),
        "{scenario}: metadata"
    );
    assert!(
        first.created_at <= second.created_at,
        "{scenario}: oldest first"
    );
    let age = time::OffsetDateTime::now_utc() - first.created_at;
    assert!(
        age >= -time::Duration::seconds(5) && age < time::Duration::minutes(5),
        "{scenario}: created_at is now"
    );
    store.ping().await.unwrap();
}

/// A request holding a value the store cannot keep (a period index beyond the signed 64-bit
/// column; the routes refuse anything over 2^32 - 1 before) fails alone with the store's
/// own error, while other tenants' requests running at the same moment (in the same write
/// batch, where the backend batches) are all stored.
pub async fn an_unstorable_request_fails_alone<S: Backend>(store: &Arc<S>) {
    let scenario = "unstorable request";
    let (good_tenant, bad_tenant) = (new_tenant(), new_tenant());
    let start = Arc::new(tokio::sync::Barrier::new(RACERS + 1));
    let mut good = tokio::task::JoinSet::new();
    for i in 0..RACERS {
        let (store, tenant, start) = (Arc::clone(store), good_tenant.clone(), Arc::clone(&start));
        good.spawn(async move {
            let request = by_kid(&content(&format!("movie-{i}")), &candidate());
            start.wait().await;
            store.ensure_keys(&tenant, &[request]).await
        });
    }
    let poison = {
        let (store, start) = (Arc::clone(store), Arc::clone(&start));
        let key_slot = slot(&content("live"), "HD", KeyPeriod::Index(1 << 63));
        tokio::spawn(async move {
            let request = by_slot(&key_slot, &candidate(), false);
            start.wait().await;
            store.ensure_keys(&bad_tenant, &[request]).await
        })
    };
    while let Some(joined) = good.join_next().await {
        let keys = joined
            .expect("request panicked")
            .unwrap_or_else(|e| panic!("{scenario}: another tenant's request failed: {e}"));
        assert_eq!(
            store.get_key(&good_tenant, &keys[0].kid).await.unwrap(),
            Some(keys[0].clone()),
            "{scenario}: acknowledged but not stored"
        );
    }
    match poison.await.expect("request panicked") {
        Err(StoreError::Internal(_)) => {}
        other => panic!("{scenario}: expected the store's own error, got {other:?}"),
    }
}

pub async fn racing_identical_requests_create_one_key<S: Backend>(store: &Arc<S>) {
    let tenant = new_tenant();
    let live = content("live-1");
    let key_slot = slot(&live, "HD", KeyPeriod::Index(77));
    let kid = random::new_key_id().unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..RACERS {
        let (store, tenant, live, key_slot) = (
            Arc::clone(store),
            tenant.clone(),
            live.clone(),
            key_slot.clone(),
        );
        let start = Arc::clone(&start);
        racers.spawn(async move {
            // Each racer brings its own candidates, as concurrent HTTP requests would.
            let requests = [
                by_slot(&key_slot, &candidate(), false),
                by_kid(&live, &candidate_for(kid)),
            ];
            start.wait().await;
            store.ensure_keys(&tenant, &requests).await
        });
    }
    let mut results = Vec::with_capacity(RACERS);
    while let Some(joined) = racers.join_next().await {
        results.push(
            joined
                .expect("racer panicked")
                .unwrap_or_else(|e| panic!("racing requests: {e}")),
        );
    }
    assert_eq!(results.len(), RACERS);
    assert!(
        results.iter().all(|keys| *keys == results[0]),
        "racing requests: every racer gets the same keys"
    );
    let listed = store.list_keys(&tenant, &live).await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "racing requests: exactly one key per identity was created"
    );
}

pub async fn token_ids_are_spent_once<S: Backend>(store: &Arc<S>) {
    let scenario = "single-use token ids";
    let tenant = new_tenant();
    let other = new_tenant();
    let now = 1_900_000_000;
    assert!(
        store
            .spend_token_id(&tenant, "t-1", now + 60, now)
            .await
            .unwrap(),
        "{scenario}: first use"
    );
    assert!(
        !store
            .spend_token_id(&tenant, "t-1", now + 60, now + 1)
            .await
            .unwrap(),
        "{scenario}: replay"
    );
    assert!(
        store
            .spend_token_id(&other, "t-1", now + 60, now)
            .await
            .unwrap(),
        "{scenario}: per tenant"
    );
    // Once the first use has expired the id is free again (its token is expired anyway).
    assert!(
        store
            .spend_token_id(&tenant, "t-1", now + 200, now + 61)
            .await
            .unwrap(),
        "{scenario}: after expiry"
    );
    assert!(
        store.purge_token_ids(now + 500).await.unwrap() >= 2,
        "{scenario}: purge"
    );
    assert!(
        store
            .spend_token_id(&tenant, "t-1", now + 600, now + 501)
            .await
            .unwrap(),
        "{scenario}: purged"
    );

    // Racing presentations of one id: exactly one wins.
    let mut racers = Vec::new();
    for _ in 0..RACERS {
        let store = store.clone();
        let tenant = tenant.clone();
        racers.push(tokio::spawn(async move {
            store
                .spend_token_id(&tenant, "raced", now + 60, now)
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for racer in racers {
        if racer.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1, "{scenario}: racing uses");
}

fn new_session(user: &str, now: u64, lifetime: u64) -> NewSession {
    NewSession {
        id: random::random_token(22).unwrap(),
        user: user.to_owned(),
        entitlement: format!("{{\"user\":\"{user}\"}}"),
        heartbeat_seconds: lifetime / 2,
        created_at: now,
        expires_at: now + lifetime,
    }
}

pub async fn sessions_live_until_they_expire_or_close<S: Backend>(store: &Arc<S>) {
    let scenario = "sessions_live_until_they_expire_or_close";
    let tenant = new_tenant();
    let other = new_tenant();
    let s = new_session("alice", 1_000, 20);
    assert_eq!(
        store.open_session(&tenant, &s, None, 1_000).await.unwrap(),
        SessionOpen::Opened,
        "{scenario}"
    );
    let got = store
        .get_session(&tenant, &s.id, 1_010)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.user, "alice", "{scenario}");
    // The store keeps the bearer id's hash, never the id.
    assert_eq!(got.id, crate::rules::session_key(&s.id), "{scenario}");
    assert_ne!(got.id, s.id, "{scenario}");
    assert_eq!(got.entitlement, s.entitlement, "{scenario}");
    assert_eq!(got.heartbeat_seconds, 10, "{scenario}");
    assert!(got.key_systems.is_empty(), "{scenario}");
    assert_eq!(got.expires_at, 1_020, "{scenario}");
    // Tenants are isolated.
    assert!(
        store
            .get_session(&other, &s.id, 1_010)
            .await
            .unwrap()
            .is_none(),
        "{scenario}"
    );
    assert!(
        store
            .touch_session(&other, &s.id, 1_010, 1_050, None)
            .await
            .unwrap()
            .is_none(),
        "{scenario}"
    );
    assert!(
        !store.close_session(&other, &s.id, 1_010).await.unwrap(),
        "{scenario}"
    );
    // A touch extends the session and records key systems once each, in order.
    let touched = store
        .touch_session(&tenant, &s.id, 1_015, 1_035, Some("clearkey"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.expires_at, 1_035, "{scenario}");
    store
        .touch_session(&tenant, &s.id, 1_016, 1_036, Some("widevine"))
        .await
        .unwrap()
        .unwrap();
    let touched = store
        .touch_session(&tenant, &s.id, 1_017, 1_037, Some("clearkey"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.key_systems, ["clearkey", "widevine"], "{scenario}");
    // An expiry never moves backwards.
    let touched = store
        .touch_session(&tenant, &s.id, 1_018, 1_020, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.expires_at, 1_037, "{scenario}");
    // Expired: neither readable nor touchable.
    assert!(
        store
            .get_session(&tenant, &s.id, 1_037)
            .await
            .unwrap()
            .is_none(),
        "{scenario}"
    );
    assert!(
        store
            .touch_session(&tenant, &s.id, 1_037, 1_100, None)
            .await
            .unwrap()
            .is_none(),
        "{scenario}"
    );
    // Closing a live session.
    let s2 = new_session("alice", 2_000, 20);
    store.open_session(&tenant, &s2, None, 2_000).await.unwrap();
    assert!(
        store.close_session(&tenant, &s2.id, 2_001).await.unwrap(),
        "{scenario}"
    );
    assert!(
        store
            .get_session(&tenant, &s2.id, 2_001)
            .await
            .unwrap()
            .is_none(),
        "{scenario}"
    );
    assert!(
        !store.close_session(&tenant, &s2.id, 2_001).await.unwrap(),
        "{scenario}"
    );
    assert!(
        !store
            .close_session(&tenant, "unknown", 2_001)
            .await
            .unwrap(),
        "{scenario}"
    );
}

pub async fn session_limit_counts_live_sessions_per_user<S: Backend>(store: &Arc<S>) {
    let scenario = "session_limit_counts_live_sessions_per_user";
    let tenant = new_tenant();
    let a1 = new_session("alice", 1_000, 20);
    let a2 = new_session("alice", 1_000, 20);
    let a3 = new_session("alice", 1_000, 20);
    assert_eq!(
        store
            .open_session(&tenant, &a1, Some(2), 1_000)
            .await
            .unwrap(),
        SessionOpen::Opened,
        "{scenario}"
    );
    assert_eq!(
        store
            .open_session(&tenant, &a2, Some(2), 1_000)
            .await
            .unwrap(),
        SessionOpen::Opened,
        "{scenario}"
    );
    assert_eq!(
        store
            .open_session(&tenant, &a3, Some(2), 1_001)
            .await
            .unwrap(),
        SessionOpen::LimitReached { active: 2 },
        "{scenario}"
    );
    assert!(
        store
            .get_session(&tenant, &a3.id, 1_001)
            .await
            .unwrap()
            .is_none(),
        "{scenario}: refused session stored"
    );
    // Another user, and the same user in another tenant, are not limited by alice's sessions.
    let b1 = new_session("bob", 1_000, 20);
    assert_eq!(
        store
            .open_session(&tenant, &b1, Some(1), 1_001)
            .await
            .unwrap(),
        SessionOpen::Opened,
        "{scenario}"
    );
    let other = new_tenant();
    assert_eq!(
        store
            .open_session(&other, &a3, Some(1), 1_001)
            .await
            .unwrap(),
        SessionOpen::Opened,
        "{scenario}"
    );
    // Closing one frees a slot.
    store.close_session(&tenant, &a1.id, 1_002).await.unwrap();
    assert_eq!(
        store
            .open_session(&tenant, &a3, Some(2), 1_002)
            .await
            .unwrap(),
        SessionOpen::Opened,
        "{scenario}"
    );
    // Expired sessions count no more.
    let a4 = new_session("alice", 1_020, 20);
    assert_eq!(
        store
            .open_session(&tenant, &a4, Some(1), 1_020)
            .await
            .unwrap(),
        SessionOpen::Opened,
        "{scenario}"
    );
}

pub async fn racing_session_openings_respect_the_limit<S: Backend>(store: &Arc<S>) {
    let scenario = "racing_session_openings_respect_the_limit";
    let tenant = new_tenant();
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = Arc::clone(store);
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            store
                .open_session(&tenant, &new_session("carol", 1_000, 60), Some(3), 1_000)
                .await
                .unwrap()
        }));
    }
    let mut opened = 0;
    for task in tasks {
        if task.await.unwrap() == SessionOpen::Opened {
            opened += 1;
        }
    }
    assert_eq!(opened, 3, "{scenario}");
}

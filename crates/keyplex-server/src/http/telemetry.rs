//! Observability: the [`track`] middleware around every request, the Prometheus metrics it
//! feeds (`GET /metrics`), the per-tenant time series behind the dashboard
//! (`GET /admin/v1/stats`), and the audit events of deliveries and licence decisions.
//!
//! The time series are counted in the node for a moment, then added to the store (every 2 s,
//! and before each read), so the dashboard shows the whole service, whichever node serves it
//! and however many nodes share the database. Prometheus metrics stay per node (scrape each).
//!
//! Labels are bounded: tenants (operator-defined, few), interface and DRM names (fixed sets),
//! status codes and outcome words. Never content ids or key ids.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyplex_store::{AuditAction, AuditEvent, KeyStore, StatsCount};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http::shard::{Sharded, lock};
use crate::http::{cors, deadline};
use crate::route_info::{self, RouteInfo};
use crate::scope::{self, Interface, Kind, Notes};
use crate::state::AppState;

// The label sets hold the fixed words as `&'static str` and the status as a number. Requests
// are counted per thread first ([`Local`]); label sets are built when a scrape merges them.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    interface: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantInterfaceLabels {
    tenant: String,
    interface: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    interface: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    tenant: String,
    interface: &'static str,
    /// `created` (new key) or `stored` (served from the store).
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LicenceLabels {
    tenant: String,
    drm: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    drm: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrmLabels {
    drm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Everything `/metrics` and `/admin/v1/stats` report. One per server (not global: tests run
/// many servers in one process).
pub struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<InterfaceLabels>,
    keys: Family<KeyLabels, Counter>,
    licences: Family<LicenceLabels, Counter>,
    active_sessions: Family<TenantLabels, Gauge>,
    upstream: Family<UpstreamLabels, Counter>,
    upstream_duration: Histograms<DrmLabels>,
    store_duration: Histograms<OperationLabels>,
    audit_dropped: Gauge,
    auth_failures: Family<AuthFailureLabels, Counter>,
    store_queue_full: Family<TenantInterfaceLabels, Counter>,
    /// `request_duration`'s histogram of each interface, looked up once.
    durations: [std::sync::OnceLock<Histogram>; Interface::COUNT],
    /// Per-request counts not yet in the families above or in the store (see [`Local`]).
    local: Sharded<Local>,
    /// Dashboard counts a failed flush could not store, offered again with the next one.
    retry: Mutex<Vec<StatsCount>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthFailureLabels {
    tenant: String,
    /// `refused` (401/403) or `limited` (429: past `auth_failure_limit`).
    outcome: &'static str,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keyplex");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by tenant, interface and HTTP status",
            requests.clone(),
        );
        let request_duration: Histograms<InterfaceLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request to response, by interface",
            request_duration.clone(),
        );
        let keys = Family::<KeyLabels, Counter>::default();
        registry.register(
            "keys",
            "Content keys handed to packagers: created (new) or stored (served from the store)",
            keys.clone(),
        );
        let licences = Family::<LicenceLabels, Counter>::default();
        registry.register(
            "licences",
            "Licence decisions by tenant, DRM, outcome (granted, denied) and reason",
            licences.clone(),
        );
        let active_sessions = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "active_sessions",
            "Live secure sessions (read from the store at scrape time)",
            active_sessions.clone(),
        );
        let upstream = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Calls of the licence proxy to upstream licence servers, by DRM and outcome",
            upstream.clone(),
        );
        let upstream_duration: Histograms<DrmLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Latency of upstream licence servers, by DRM",
            upstream_duration.clone(),
        );
        let store_duration: Histograms<OperationLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "store_duration_seconds",
            "Latency of key store operations",
            store_duration.clone(),
        );
        let audit_dropped = Gauge::default();
        registry.register(
            "audit_events_dropped",
            "Audit events dropped because the store could not take them for too long",
            audit_dropped.clone(),
        );
        let auth_failures = Family::<AuthFailureLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Failed authentications on a tenant's routes: refused (401/403) or limited (429, past auth_failure_limit for the client address)",
            auth_failures.clone(),
        );
        let store_queue_full = Family::<TenantInterfaceLabels, Counter>::default();
        registry.register(
            "store_queue_full",
            "Requests refused at once (503 with Retry-After) because the key store's write queue was full, by tenant and interface",
            store_queue_full.clone(),
        );
        Self {
            auth_failures,
            registry,
            requests,
            request_duration,
            keys,
            licences,
            active_sessions,
            upstream,
            upstream_duration,
            store_duration,
            audit_dropped,
            store_queue_full,
            durations: std::array::from_fn(|_| std::sync::OnceLock::new()),
            local: Sharded::default(),
            retry: Mutex::new(Vec::new()),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, sessions: &[(String, u64)], audit_dropped: u64) -> String {
        self.merge_local_counts();
        for (tenant, count) in sessions {
            self.active_sessions
                .get_or_create(&TenantLabels {
                    tenant: tenant.clone(),
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.audit_dropped
            .set(i64::try_from(audit_dropped).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// A failed authentication on `tenant`'s routes; `limited` when it was answered 429.
    pub fn count_auth_failure(&self, tenant: &keyplex_types::TenantId, limited: bool) {
        self.auth_failures
            .get_or_create(&AuthFailureLabels {
                tenant: tenant.as_str().to_owned(),
                outcome: if limited { "limited" } else { "refused" },
            })
            .inc();
    }

    /// A store operation's latency.
    pub fn observe_store(&self, operation: &'static str, elapsed: Duration) {
        self.store_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// One call of the licence proxy to an upstream licence server.
    pub fn observe_upstream(&self, drm: &str, outcome: &str, elapsed: Duration) {
        self.upstream
            .get_or_create(&UpstreamLabels {
                drm: drm.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.upstream_duration
            .get_or_create(&DrmLabels {
                drm: drm.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a finished request in this thread's shard: no allocation (but for a tenant the
    /// shard sees for the first time) and no lock another thread takes, but at a scrape or a
    /// flush. The latency histogram is prometheus-client's own (one lock of its own).
    fn observe_request(&self, request: &Finished<'_>) {
        let interface = request.interface;
        if let Some(slot) = self.durations.get(interface as usize) {
            slot.get_or_init(|| {
                self.request_duration
                    .get_or_create(&InterfaceLabels {
                        interface: interface.as_str(),
                    })
                    .clone()
            })
            .observe(request.elapsed.as_secs_f64());
        }
        let notes = &request.notes;
        let licence = request.licence_decision();
        let mut local = self.local.local();
        let counts = local.tenant(request.tenant_label());
        *counts
            .requests
            .entry((interface, request.status))
            .or_default() += 1;
        if notes.store_busy {
            *counts.store_queue_full.entry(interface).or_default() += 1;
        }
        for (source, count) in [
            ("created", notes.keys_created),
            ("stored", notes.keys_stored),
        ] {
            if count > 0 {
                *counts.keys.entry((interface, source)).or_default() += count;
            }
        }
        if let Some((drm, granted)) = licence {
            let outcome = if granted { "granted" } else { "denied" };
            *counts
                .licences
                .entry((drm, outcome, request.reason()))
                .or_default() += 1;
        }
        if request.tenant.is_some() {
            counts.series.observe(request, licence);
        }
    }

    /// Moves the shards' counts into the Prometheus families (each label set is built here,
    /// once per scrape, not per request).
    fn merge_local_counts(&self) {
        self.local.each(|local| {
            for (tenant, counts) in &mut local.tenants {
                for ((interface, status), n) in counts.requests.drain() {
                    self.requests
                        .get_or_create(&RequestLabels {
                            tenant: tenant.to_string(),
                            interface: interface.as_str(),
                            status,
                        })
                        .inc_by(n);
                }
                for (interface, n) in counts.store_queue_full.drain() {
                    self.store_queue_full
                        .get_or_create(&TenantInterfaceLabels {
                            tenant: tenant.to_string(),
                            interface: interface.as_str(),
                        })
                        .inc_by(n);
                }
                for ((interface, source), n) in counts.keys.drain() {
                    self.keys
                        .get_or_create(&KeyLabels {
                            tenant: tenant.to_string(),
                            interface: interface.as_str(),
                            source,
                        })
                        .inc_by(n);
                }
                for ((drm, outcome, reason), n) in counts.licences.drain() {
                    self.licences
                        .get_or_create(&LicenceLabels {
                            tenant: tenant.to_string(),
                            drm,
                            outcome,
                            reason,
                        })
                        .inc_by(n);
                }
            }
        });
    }

    /// The dashboard counts of every shard, and those a failed flush kept.
    fn take_series(&self) -> Vec<StatsCount> {
        let mut counts = std::mem::take(&mut *lock(&self.retry));
        self.local.each(|local| {
            for (tenant, tally) in &mut local.tenants {
                tally.series.drain_into(tenant, &mut counts);
            }
        });
        counts
    }

    /// Keeps counts a failed flush could not store for the next one (bounded: older than a
    /// day they would be purged anyway). The store adds rows up, so duplicates are fine.
    fn put_back_series(&self, counts: Vec<StatsCount>) {
        let oldest = unix_now().saturating_sub(KEPT_SECONDS);
        lock(&self.retry).extend(counts.into_iter().filter(|c| c.bucket_start >= oldest));
    }

    /// Adds what this node counted since the last flush to the store. On failure the counts
    /// are kept for the next flush.
    pub async fn flush_stats(&self, store: &dyn KeyStore) -> Result<(), keyplex_store::StoreError> {
        let counts = self.take_series();
        if counts.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.add_stats(&counts).await {
            self.put_back_series(counts);
            return Err(e);
        }
        Ok(())
    }

    /// The dashboard's view of one tenant (or all) over the last `window`: this node's counts
    /// are flushed first, so the view includes every request it answered.
    pub async fn stats(
        &self,
        store: &dyn KeyStore,
        tenant: Option<&str>,
        window: Window,
        now: u64,
    ) -> Result<StatsView, keyplex_store::StoreError> {
        if let Err(e) = self.flush_stats(store).await {
            tracing::warn!(error = %e, "cannot add dashboard counts to the store");
        }
        let end = now - now % window.bucket_seconds + window.bucket_seconds;
        let first = end.saturating_sub(window.seconds);
        let counts = store.read_stats(tenant, first, end).await?;
        Ok(view(&counts, window, first, end, now))
    }
}

/// A finished request, as the middleware saw it (it owns the request's notes, so that its
/// audit event can take them over).
struct Finished<'a> {
    interface: Interface,
    /// The tenant, when the URL named one that exists.
    tenant: Option<&'a str>,
    status: u16,
    elapsed: Duration,
    notes: Notes,
}

impl Finished<'_> {
    fn tenant_label(&self) -> &str {
        self.tenant.unwrap_or("-")
    }

    /// Answered with success: a 2xx status and no error (the Widevine API answers errors
    /// with 200 and a status inside its envelope).
    fn ok(&self) -> bool {
        (200..300).contains(&self.status) && self.notes.error.is_none()
    }

    /// For licence routes: the DRM and whether the licence was granted. Requests that never
    /// reached a decision (the tenant is unknown) are none.
    fn licence_decision(&self) -> Option<(&'static str, bool)> {
        if self.interface.kind() != Kind::Licences || self.tenant.is_none() {
            return None;
        }
        let drm = self.interface.drm().or(self.notes.drm).unwrap_or("unknown");
        Some((drm, self.ok()))
    }

    /// A word for the outcome (a bounded set: it is a label).
    fn reason(&self) -> &'static str {
        match self.status {
            200..=299 if self.ok() => "ok",
            200..=299 => "refused",
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            413 => "too_large",
            422 => "unprocessable",
            429 => "rate_limited",
            502 => "upstream_error",
            503 => "unavailable",
            _ => "error",
        }
    }
}

/// Wraps every request: notes what it did ([`scope`]), then counts it and writes the audit
/// events of key deliveries and licence decisions.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(RouteInfo::OTHER, |p| route_info::of(p.as_str()));
    let interface = route.interface;
    if interface == Interface::Other {
        return deadline::within(&state, route, request, next).await;
    }
    // The tenant's label is borrowed from the tenant map (a path segment is looked up as it
    // is, not parsed into a new id), and the client address stays an address until an audit
    // event needs its text.
    let tenants = state.tenant_map();
    let tenant = tenant_segment(request.uri().path())
        .filter(|_| interface.kind() != Kind::Admin)
        .and_then(|name| tenants.get_key_value(name))
        .map(|(id, _)| id.as_str());
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let started = Instant::now();
    let within_deadline = |request| deadline::within(&state, route, request, next);
    let (response, notes) = if route.browser_cors {
        scope::with_notes(
            interface,
            client,
            cors::around(&state, request, within_deadline),
        )
        .await
    } else {
        scope::with_notes(interface, client, within_deadline(request)).await
    };
    let finished = Finished {
        interface,
        tenant,
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
        notes,
    };
    state.telemetry().observe_request(&finished);
    if let Some(event) = audit_event(finished) {
        state.audit().record(event);
    }
    response.into_response()
}

/// The span every request's log lines carry (tower-http's `TraceLayer`): method, version and
/// the URI as [`loggable_uri`] writes it.
pub fn request_span(request: &http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %loggable_uri(request.uri()),
        version = ?request.version(),
    )
}

/// Query parameters whose values are redacted in logs: credentials some clients put in URLs
/// (presigned SigV4 `X-Amz-Signature`/`X-Amz-Credential`, `token=`, `key=` …).
const SECRET_QUERY_NAMES: [&str; 7] = [
    "token",
    "key",
    "secret",
    "password",
    "signature",
    "credential",
    "auth",
];

/// `uri` as it may be logged: the path parameters the route table declares secret (URL
/// tokens, session ids: [`route_info::secret_segments`]) and the values of credential-like
/// query parameters are replaced by `<redacted>`. Tokens must not reach logs, which
/// operators ship elsewhere.
pub fn loggable_uri(uri: &http::Uri) -> String {
    let path = uri.path();
    let mut segments: Vec<&str> = path.split('/').collect();
    let secrets = route_info::secret_segments(&segments);
    let mut out = if secrets.is_empty() {
        path.to_owned()
    } else {
        for at in secrets {
            if let Some(segment) = segments.get_mut(at) {
                *segment = "<redacted>";
            }
        }
        segments.join("/")
    };
    if let Some(query) = uri.query() {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Compared as the query parser reads the name: `?%74oken=…` is the token too.
            let lower = decoded_query_name(name).to_ascii_lowercase();
            if !value.is_empty() && SECRET_QUERY_NAMES.iter().any(|s| lower.contains(s)) {
                out.push_str(name);
                out.push_str("=<redacted>");
            } else {
                out.push_str(pair);
            }
        }
    }
    out
}

/// A query parameter's name decoded as `application/x-www-form-urlencoded` (what the routes'
/// query parsers do): `%XX` is the byte XX and `+` a space. A `%` not followed by two hex
/// digits stays as it is.
fn decoded_query_name(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match b {
            b'%' => bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match (b, escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (_, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tenant_segment(path: &str) -> Option<&str> {
    path.strip_prefix('/')?.split('/').next()
}

/// The audit event of a finished request: a delivery (keys handed to a packager) or a
/// licence decision. Key creation is recorded earlier, durably, where the key is created.
/// The request's notes move into the event (this runs on every delivery and licence).
fn audit_event(request: Finished<'_>) -> Option<AuditEvent> {
    let tenant = request.tenant?;
    let ok = request.ok();
    let action = match request.interface.kind() {
        Kind::Keys if ok && !request.notes.key_ids.is_empty() => AuditAction::KeyDelivered,
        Kind::Licences if ok => AuditAction::LicenceGranted,
        Kind::Licences => AuditAction::LicenceDenied,
        _ => return None,
    };
    let interface = request
        .licence_decision()
        .map_or(request.interface.as_str(), |(drm, _)| drm);
    let outcome = request.reason();
    let notes = request.notes;
    Some(AuditEvent {
        id: 0,
        at: time::OffsetDateTime::now_utc(),
        tenant: tenant.to_owned(),
        action,
        interface: interface.to_owned(),
        credential: notes.credential.unwrap_or_else(|| "-".to_owned()),
        client: scope::client_text(notes.client),
        content_id: notes.content_id,
        key_ids: notes.key_ids,
        outcome: outcome.to_owned(),
        detail: if ok { notes.detail } else { notes.error },
    })
}

// ---- The dashboard's time series ----

/// Resolution of the stored series.
const BUCKET_SECONDS: u64 = 10;
/// How far back the series go (24 h).
const KEPT_SECONDS: u64 = 86_400;

/// A window the dashboard can show, with the bucket size it is shown in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub seconds: u64,
    pub bucket_seconds: u64,
}

impl Window {
    pub const CHOICES: [u64; 5] = [300, 900, 3_600, 21_600, 86_400];

    pub fn parse(seconds: u64) -> Option<Self> {
        let bucket_seconds = match seconds {
            300 | 900 => 10,
            3_600 => 60,
            21_600 => 300,
            86_400 => 900,
            _ => return None,
        };
        Some(Self {
            seconds,
            bucket_seconds,
        })
    }
}

/// What is counted per interface or DRM name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Measure {
    KeyRequests,
    KeysCreated,
    KeysServed,
    LicencesGranted,
    LicencesDenied,
    Errors,
}

/// Latency buckets: upper bounds 50 µs × 1.5^k.
const LATENCY_BUCKETS: usize = 36;

fn latency_bucket(elapsed: Duration) -> usize {
    let mut bound = 50e-6;
    let seconds = elapsed.as_secs_f64();
    for k in 0..LATENCY_BUCKETS - 1 {
        if seconds <= bound {
            return k;
        }
        bound *= 1.5;
    }
    LATENCY_BUCKETS - 1
}

fn latency_bound_ms(bucket: usize) -> f64 {
    50e-3 * 1.5f64.powi(i32::try_from(bucket).unwrap_or(i32::MAX))
}

impl Measure {
    fn as_str(self) -> &'static str {
        match self {
            Self::KeyRequests => "key_requests",
            Self::KeysCreated => "keys_created",
            Self::KeysServed => "keys_served",
            Self::LicencesGranted => "licences_granted",
            Self::LicencesDenied => "licences_denied",
            Self::Errors => "errors",
        }
    }
}

/// `stats_counts.measure` of latency observations (`slot`: the histogram bucket).
const LATENCY_MEASURE: &str = "latency";
/// `stats_counts.slot` of plain counts.
const NO_SLOT: i32 = -1;

/// What one worker thread counted since the last scrape (Prometheus) and the last flush
/// (the dashboard's series), per tenant label (`-`: the URL named no tenant).
#[derive(Default)]
struct Local {
    tenants: hashbrown::HashMap<Box<str>, TenantCounts>,
}

impl Local {
    fn tenant(&mut self, label: &str) -> &mut TenantCounts {
        // Looked up by `&str`; the key is allocated once per tenant and shard.
        self.tenants.entry_ref(label).or_default()
    }
}

/// The Prometheus counters of one tenant (drained at each scrape) and its dashboard series
/// (drained at each flush). Every key word is a `&'static str` from a fixed set.
#[derive(Default)]
struct TenantCounts {
    requests: hashbrown::HashMap<(Interface, u16), u64>,
    store_queue_full: hashbrown::HashMap<Interface, u64>,
    keys: hashbrown::HashMap<(Interface, &'static str), u64>,
    licences: hashbrown::HashMap<(&'static str, &'static str, &'static str), u64>,
    series: Series,
}

/// Dashboard counts not yet added to the store: per bucket start, per (measure, name, slot).
#[derive(Default)]
struct Series {
    buckets: hashbrown::HashMap<u64, hashbrown::HashMap<(&'static str, &'static str, i32), u64>>,
}

impl Series {
    fn observe(&mut self, request: &Finished<'_>, licence: Option<(&'static str, bool)>) {
        let kind = request.interface.kind();
        if !matches!(kind, Kind::Keys | Kind::Licences) {
            return;
        }
        let now = unix_now();
        let start = now - now % BUCKET_SECONDS;
        let bucket = self.buckets.entry(start).or_default();
        let mut add = |measure: &'static str, name: &'static str, slot: i32, n: u64| {
            if n > 0 {
                *bucket.entry((measure, name, slot)).or_default() += n;
            }
        };
        let interface = request.interface.as_str();
        let notes = &request.notes;
        if let Some((drm, granted)) = licence {
            let measure = if granted {
                Measure::LicencesGranted
            } else {
                Measure::LicencesDenied
            };
            add(measure.as_str(), drm, NO_SLOT, 1);
            if !request.ok() {
                add(Measure::Errors.as_str(), drm, NO_SLOT, 1);
            }
        } else {
            add(Measure::KeyRequests.as_str(), interface, NO_SLOT, 1);
            add(
                Measure::KeysCreated.as_str(),
                interface,
                NO_SLOT,
                notes.keys_created,
            );
            add(
                Measure::KeysServed.as_str(),
                interface,
                NO_SLOT,
                notes.keys_stored,
            );
            if !request.ok() {
                add(Measure::Errors.as_str(), interface, NO_SLOT, 1);
            }
        }
        let name = licence.map_or(interface, |(drm, _)| drm);
        let slot = i32::try_from(latency_bucket(request.elapsed)).unwrap_or(i32::MAX);
        add(LATENCY_MEASURE, name, slot, 1);
    }

    fn drain_into(&mut self, tenant: &str, counts: &mut Vec<StatsCount>) {
        for (bucket_start, rows) in self.buckets.drain() {
            counts.extend(
                rows.into_iter()
                    .map(|((measure, name, slot), count)| StatsCount {
                        tenant: tenant.to_owned(),
                        bucket_start,
                        measure: measure.to_owned(),
                        name: name.to_owned(),
                        slot,
                        count,
                    }),
            );
        }
    }
}

/// The dashboard's view of stored counts of buckets in `[first, end)`.
fn view(counts: &[StatsCount], window: Window, first: u64, end: u64, now: u64) -> StatsView {
    let mut out: Vec<StatsBucket> = (0..window.seconds / window.bucket_seconds)
        .map(|i| StatsBucket::empty(first + i * window.bucket_seconds))
        .collect();
    let mut totals = StatsBucket::empty(first);
    let mut latency: BTreeMap<String, [u64; LATENCY_BUCKETS]> = BTreeMap::new();
    for c in counts
        .iter()
        .filter(|c| c.bucket_start >= first && c.bucket_start < end)
    {
        if c.measure == LATENCY_MEASURE {
            let histogram = latency
                .entry(c.name.clone())
                .or_insert([0; LATENCY_BUCKETS]);
            if let Some(slot) = usize::try_from(c.slot)
                .ok()
                .and_then(|s| histogram.get_mut(s))
            {
                *slot += c.count;
            }
            continue;
        }
        let index =
            usize::try_from((c.bucket_start - first) / window.bucket_seconds).unwrap_or(usize::MAX);
        if let Some(slot) = out.get_mut(index) {
            slot.add(&c.measure, &c.name, c.count);
            totals.add(&c.measure, &c.name, c.count);
        }
    }
    StatsView {
        window_seconds: window.seconds,
        bucket_seconds: window.bucket_seconds,
        now,
        buckets: out,
        totals: totals.counts,
        latency_ms: latency
            .into_iter()
            .map(|(key, histogram)| (key, Percentiles::of(&histogram)))
            .collect(),
    }
}

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// One bucket of `/admin/v1/stats`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StatsBucket {
    /// Unix seconds: the bucket's start.
    pub t: u64,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Counts per interface or DRM name, one map per measure: keys are interface names (`cpix`,
/// `speke`, `nagra`, `harmonic`, `get_cpix`, `widevine_api`) for key traffic and DRM names
/// (`clearkey`, `hls`, `widevine`, `playready`, `fairplay`, `prm`) for licences.
#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub key_requests: BTreeMap<String, u64>,
    pub keys_created: BTreeMap<String, u64>,
    pub keys_served: BTreeMap<String, u64>,
    pub licences_granted: BTreeMap<String, u64>,
    pub licences_denied: BTreeMap<String, u64>,
    /// Answers with status ≥ 400, per interface.
    pub errors: BTreeMap<String, u64>,
}

impl StatsBucket {
    fn empty(t: u64) -> Self {
        Self {
            t,
            counts: Counts::default(),
        }
    }

    fn add(&mut self, measure: &str, key: &str, n: u64) {
        let c = &mut self.counts;
        let map = match measure {
            "key_requests" => &mut c.key_requests,
            "keys_created" => &mut c.keys_created,
            "keys_served" => &mut c.keys_served,
            "licences_granted" => &mut c.licences_granted,
            "licences_denied" => &mut c.licences_denied,
            "errors" => &mut c.errors,
            _ => return,
        };
        *map.entry(key.to_owned()).or_default() += n;
    }
}

/// Latency percentiles of one interface over the window (upper bounds of histogram buckets,
/// so within 50 % above the true value).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    fn of(histogram: &[u64; LATENCY_BUCKETS]) -> Self {
        let count: u64 = histogram.iter().sum();
        let quantile = |q: f64| {
            // The smallest bucket whose cumulative count reaches q of all.
            let target = (q * count as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (k, n) in histogram.iter().enumerate() {
                seen += n;
                if seen >= target {
                    return (latency_bound_ms(k) * 1000.0).round() / 1000.0;
                }
            }
            0.0
        };
        Self {
            count,
            p50: quantile(0.5),
            p90: quantile(0.9),
            p99: quantile(0.99),
        }
    }
}

/// `GET /admin/v1/stats` without the tenant and session fields (added by the handler).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StatsView {
    pub window_seconds: u64,
    pub bucket_seconds: u64,
    pub now: u64,
    pub buckets: Vec<StatsBucket>,
    pub totals: Counts,
    pub latency_ms: BTreeMap<String, Percentiles>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_have_at_most_a_hundred_buckets() {
        for seconds in Window::CHOICES {
            let w = Window::parse(seconds).unwrap();
            assert!(seconds / w.bucket_seconds <= 100, "{seconds}");
            assert_eq!(w.bucket_seconds % BUCKET_SECONDS, 0);
        }
        assert!(Window::parse(60).is_none());
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = [0u64; LATENCY_BUCKETS];
        h[latency_bucket(Duration::from_micros(40))] = 90;
        h[latency_bucket(Duration::from_millis(20))] = 10;
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 100);
        assert!(p.p50 <= 0.05, "{p:?}");
        assert!(p.p99 >= 20.0 && p.p99 <= 30.0, "{p:?}");
    }

    #[tokio::test]
    async fn requests_refused_by_a_full_store_queue_are_counted() {
        // What the error renderer notes in the request's scope…
        let (response, notes) = scope::with_notes(Interface::Cpix, None, async {
            use axum::response::IntoResponse as _;
            crate::http::error::PlainText(crate::http::error::ApiError::from(
                keyplex_store::StoreError::Busy {
                    retry_after_seconds: 1,
                },
            ))
            .into_response()
        })
        .await;
        assert_eq!(response.status().as_u16(), 503);
        assert!(notes.store_busy);
        // …is what /metrics counts.
        let telemetry = Telemetry::new();
        for notes in [notes, Notes::default()] {
            telemetry.observe_request(&Finished {
                interface: Interface::Cpix,
                tenant: Some("acme"),
                status: 503,
                elapsed: Duration::from_millis(1),
                notes,
            });
        }
        let text = telemetry.render(&[], 0);
        assert!(
            text.contains(r#"keyplex_store_queue_full_total{tenant="acme",interface="cpix"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn licence_requests_count_per_drm_and_keys_per_interface() {
        let store = keyplex_store::SqliteStore::open_temporary(
            keyplex_store::MasterKey::generate().unwrap(),
        )
        .await
        .unwrap();
        let telemetry = Telemetry::new();
        let notes = || Notes {
            keys_created: 1,
            keys_stored: 2,
            ..Notes::default()
        };
        for (interface, status) in [
            (Interface::Cpix, 200),
            (Interface::Cpix, 401),
            (Interface::ClearKey, 200),
            (Interface::ClearKey, 403),
        ] {
            telemetry.observe_request(&Finished {
                interface,
                tenant: Some("acme"),
                status,
                elapsed: Duration::from_millis(2),
                notes: notes(),
            });
        }
        let window = Window::parse(300).unwrap();
        let view = telemetry
            .stats(&store, Some("acme"), window, unix_now())
            .await
            .unwrap();
        assert_eq!(view.totals.key_requests.get("cpix"), Some(&2));
        assert_eq!(view.totals.keys_created.get("cpix"), Some(&2));
        assert_eq!(view.totals.licences_granted.get("clearkey"), Some(&1));
        assert_eq!(view.totals.licences_denied.get("clearkey"), Some(&1));
        assert_eq!(view.totals.errors.get("cpix"), Some(&1));
        assert_eq!(view.latency_ms["cpix"].count, 2);
        let other = telemetry
            .stats(&store, Some("globex"), window, unix_now())
            .await
            .unwrap();
        assert!(other.totals.key_requests.is_empty());
        // Counts are in the store, not in the node: another node's view sees them, and they
        // are not counted twice.
        let another_node = Telemetry::new();
        let seen = another_node
            .stats(&store, Some("acme"), window, unix_now())
            .await
            .unwrap();
        assert_eq!(seen.totals.key_requests.get("cpix"), Some(&2));
        assert_eq!(seen.latency_ms["cpix"].count, 2);
        let text = telemetry.render(&[("acme".into(), 3)], 0);
        assert!(
            text.contains(
                r#"keyplex_requests_total{tenant="acme",interface="cpix",status="401"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"keyplex_active_sessions{tenant="acme"} 3"#),
            "{text}"
        );
    }
}

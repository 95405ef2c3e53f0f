//! The keyplex HTTP server. The only crate that knows HTTP.
//!
//! Folders by role: `packager/` (key exchange), `player/` (licences and keys for players),
//! `operator/` (admin API, dashboard, landing page), `http/` (what every request passes: listener,
//! limits, deadlines, CORS, telemetry, the error mapping). The root files are the core the roles
//! share (`config`, `state`, `auth`, `keys`, `signaling`, …); `routes` is the route table, the
//! one place an endpoint is declared. ARCHITECTURE.md draws the map.

pub mod audit;
pub mod auth;
pub mod config;
pub mod drm_systems;
pub mod entitlement;
/// For the fuzz targets in `fuzz/` and their regression test; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod keys;
pub mod licence_policy;
pub mod openapi;
pub mod operator;
pub mod packager;
pub mod player;
pub mod registry;
pub mod route_info;
pub mod routes;
pub mod scope;
pub mod setup;
pub mod signaling;
pub mod sigv4;
pub mod state;

use std::future::Future;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use state::AppState;

use http::{error, listener, telemetry, tls};

/// All routes of keyplex (the route table, `routes`) with the layers every request passes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.max_body_bytes();
    routes::router(&state)
        // Counts and audits every request, and runs it within its deadline
        // (`http::deadline::within`).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        // The request span and tower-http's request/response events are DEBUG: at the
        // default level nothing would be recorded, but the layer would still wrap every
        // request and answer body (~1 µs per request, measured). It is there when the log
        // level set at start asks for what it records.
        .layer(tower::util::option_layer(request_logging_enabled().then(
            || {
                tower::ServiceBuilder::new()
                    // Back to axum's body type, so both arms of the option are one service.
                    .map_response(IntoResponse::into_response)
                    .layer(TraceLayer::new_for_http().make_span_with(telemetry::request_span))
            },
        )))
        .with_state(state)
}

/// Whether the log filter lets through the request span ([`telemetry::request_span`]) or
/// tower-http's request events: `KEYPLEX_LOG=debug`, `keyplex_server=debug`,
/// `tower_http=debug`…
fn request_logging_enabled() -> bool {
    tracing::enabled!(target: "keyplex_server::http::telemetry", tracing::Level::DEBUG)
        || tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG)
}

/// 200 once the store answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    summary = "Health check",
    description = "200 once the key store answers, 503 while it does not.",
    responses(
        (status = 200, description = "`ok`", body = String, content_type = "text/plain"),
        (status = 503, description = "`store unavailable`", body = String, content_type = "text/plain"),
    ),
    security(()),
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store().ping().await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
        }
    }
}

/// `GET /metrics`: Prometheus text. Live sessions are counted in the store at scrape time.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "The Prometheus text exposition format. Behind the admin token when \
        `[admin] protect_metrics` is set.",
    responses(
        (status = 200, description = "Metrics", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "`[admin] protect_metrics` is set and no valid admin \
            token was sent", body = error::Problem, content_type = "application/problem+json"),
    ),
    security((), ("admin_bearer" = [])),
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if state.config().admin.protect_metrics
        && let Err(e) = state.admin_auth().check(&headers)
    {
        return e.into_response();
    }
    let now = entitlement::now_unix();
    let mut sessions = Vec::new();
    for tenant in state.tenant_map().values() {
        match state
            .store()
            .count_live_sessions(Some(&tenant.id), now)
            .await
        {
            Ok(count) => sessions.push((tenant.id.as_str().to_owned(), count)),
            Err(e) => tracing::warn!(error = %e, "metrics: cannot count sessions"),
        }
    }
    let body = state.telemetry().render(&sessions, state.audit().dropped());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

/// How often expired records are purged (single-use token ids, dashboard counts, audit events).
pub const AUDIT_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Forgets what has expired: single-use token ids past their expiry, dashboard counts older
/// than the dashboard shows, and audit events older than `[admin] audit_retention_days` (0:
/// audit events are kept).
async fn purge_expired(state: &AppState) {
    match state
        .store()
        .purge_token_ids(crate::entitlement::now_unix())
        .await
    {
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot forget expired single-use token ids"),
    }
    // The dashboard shows a day at most.
    let day_ago = crate::entitlement::now_unix().saturating_sub(86_400 + 3_600);
    if let Err(e) = state.store().purge_stats(day_ago).await {
        tracing::warn!(error = %e, "cannot delete old dashboard counts");
    }
    let days = state.config().admin.audit_retention_days;
    if days == 0 {
        return;
    }
    let before = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    match state.store().purge_audit(before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(purged = n, days, "audit trail: retention applied"),
        Err(e) => tracing::warn!(error = %e, "audit trail: cannot apply retention"),
    }
}

/// How often a node looks for tenant and credential changes made through another node.
pub const REGISTRY_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves on an already bound listener until `shutdown` completes (tests bind port 0), with
/// the background work of a running node: the audit trail's writer and the registry poll.
pub async fn serve_with_listener(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config().clone();
    // A certificate that cannot be loaded stops the start, before anything runs.
    let certificate = match &config.server.tls {
        Some(files) => Some(
            tls::ReloadableCertificate::load(files)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state_for_shutdown = state.clone();
    let flusher = {
        let state = state.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            state
                .audit()
                .run_flusher(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        })
    };
    let poller = {
        let state = state.clone();
        let mut stop = stop_rx;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REGISTRY_POLL);
            let mut last_purge = None;
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = async { let _ = stop.wait_for(|s| *s).await; } => break,
                    _ = tick.tick() => {
                        if let Err(e) = state.reload_tenants(false).await {
                            tracing::warn!(error = %e, "cannot check the tenant registry");
                        }
                        for tenant in state.tenants().values() {
                            if let Some(limiter) = &tenant.rate_limiter {
                                limiter.forget_idle();
                            }
                        }
                        if let Err(e) = state.telemetry().flush_stats(state.store()).await {
                            tracing::warn!(error = %e, "cannot add dashboard counts to the store");
                        }
                        if last_purge.is_none_or(|t: std::time::Instant| t.elapsed() >= AUDIT_PURGE_EVERY) {
                            last_purge = Some(std::time::Instant::now());
                            purge_expired(&state).await;
                        }
                    }
                }
            }
        })
    };
    let served = listener::serve(
        listener,
        router(state),
        listener::ConnectionLimits::from_config(&config.server),
        certificate,
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = poller.await;
    let _ = flusher.await;
    if let Err(e) = state_for_shutdown
        .telemetry()
        .flush_stats(state_for_shutdown.store())
        .await
    {
        tracing::warn!(error = %e, "cannot add the last dashboard counts to the store");
    }
    served
}

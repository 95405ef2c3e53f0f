//! The listening socket: HTTP/1.1 connections, optionally over TLS, each served on its own
//! task, with the limits that keep a hostile or broken client from holding the server's
//! resources:
//!
//! - a bounded number of open connections (`max_connections`; the rest wait in the backlog);
//! - headers (and the TLS handshake) must arrive within `header_timeout_seconds` of the
//!   connection opening or of its previous response, else the connection is closed — hyper
//!   has no response to send at that point, which is also what nginx does;
//! - at most `max_headers` header fields and `max_header_bytes` of request head (→ 431; up
//!   to [`HYPER_HEADER_SLOTS`] fields the count is checked by [`too_many_headers`], beyond
//!   it by hyper);
//! - bodies and handlers are bounded per request by [`crate::http::deadline`].
//!
//! Shutdown stops accepting, lets requests in flight finish (up to [`DRAIN`]), then returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::config::ServerConfig;
use crate::http::tls::ReloadableCertificate;

/// How long shutdown waits for requests in flight.
pub const DRAIN: Duration = Duration::from_secs(10);

/// How often the certificate files are checked for a renewal (SIGHUP reloads at once).
pub const CERTIFICATE_CHECK: Duration = Duration::from_secs(5);

/// The connection limits of `[server]`.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            header_timeout: Duration::from_secs(server.header_timeout_seconds),
            max_headers: server.max_headers,
            max_header_bytes: server.max_header_bytes,
            max_connections: server.max_connections,
        }
    }

    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_header_size(self.max_header_bytes)
            // hyper's read buffer must hold the largest head it accepts.
            .max_buf_size(self.max_header_bytes.max(8192));
        // With a limit set, hyper fills its two arrays of header slots element by element on
        // every request (~1,400 instructions at 64, 2 % of a licence); with none it uses
        // arrays of its default size left uninitialised, and refuses more fields with 431
        // itself. A lower limit is then checked per request, before the router
        // (`too_many_headers`, in `serve`).
        if self.max_headers > HYPER_HEADER_SLOTS {
            builder.max_headers(self.max_headers);
        }
        builder
    }
}

/// The header fields hyper accepts when no `max_headers` is set (its `DEFAULT_MAX_HEADERS`).
const HYPER_HEADER_SLOTS: usize = 100;

/// 431 for a request with more header fields than `max_headers` when that limit is below
/// what hyper enforces itself ([`HYPER_HEADER_SLOTS`]): the answer hyper gives (no body,
/// and the connection closed), before the router sees the request (uncounted, as hyper's
/// own 431 is).
fn too_many_headers(headers: &http::HeaderMap, max_headers: usize) -> Option<Response> {
    (headers.len() > max_headers).then(|| {
        let mut answer = Response::new(axum::body::Body::empty());
        *answer.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        // hyper closes the connection after its own 431; so does this one.
        answer.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        answer
    })
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<ReloadableCertificate>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = match &tls {
        Some(certificate) => {
            let config = certificate
                .server_config()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        }
        None => None,
    };
    let reloader = tls.map(|certificate| tokio::spawn(watch_certificate(certificate)));
    let http1 = limits.http1();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the listener stays.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Small request/response exchanges: Nagle's delay would only add latency.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let max_headers = limits.max_headers;
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: axum::http::Request<Incoming>| {
                let refused = too_many_headers(request.headers(), max_headers);
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    match refused {
                        Some(answer) => Ok(answer),
                        None => app.oneshot(request).await,
                    }
                }
            },
        ));
        let watcher = graceful.watcher();
        let http1 = http1.clone();
        let acceptor = acceptor.clone();
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let result = match acceptor {
                None => {
                    let conn = http1.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let Some(stream) = handshake(&acceptor, stream, peer, handshake_timeout).await
                    else {
                        return;
                    };
                    let conn = http1.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                // Timeouts, resets and malformed requests: the client's problem, not ours.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!(seconds = DRAIN.as_secs(), "requests still in flight after the drain period; closing");
        }
    }
    Ok(())
}

async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Reloads the certificate on SIGHUP and when its files change.
async fn watch_certificate(certificate: Arc<ReloadableCertificate>) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(CERTIFICATE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        tokio::select! {
            Some(()) = signalled => match certificate.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded (SIGHUP)"),
                Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; serving the previous one"),
            },
            _ = tick.tick() => match certificate.reload_if_changed() {
                Ok(true) => tracing::info!("TLS certificate reloaded (files changed)"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; serving the previous one"),
            },
        }
    }
}

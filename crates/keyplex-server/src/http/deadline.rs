//! The per-request deadline (`[server] request_timeout_seconds`).
//!
//! Two bounds, because they are different faults:
//! - the **body** must have arrived by the deadline. A client that trickles its body (or
//!   stops half-way without closing) gets 408 from the interface itself, in its own error
//!   format, since the handler's body read fails with [`BodyDeadlineExceeded`];
//! - the **handler** must have answered shortly after ([`HANDLER_GRACE`]), else 503: the
//!   store or an upstream is stuck, and the client should retry. The handler's future is
//!   dropped then; the store's writes do not depend on it (a key batch already queued is
//!   committed by the group writer, and nothing is handed out that was not committed).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::http::error::ApiError;
use crate::route_info::RouteInfo;
use crate::state::AppState;

/// How much longer than the body deadline a handler may take before 503: enough for the
/// handler that saw the body time out to render its own 408.
pub const HANDLER_GRACE: Duration = Duration::from_secs(1);

/// The error a request body yields once its deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {seconds} s")]
pub struct BodyDeadlineExceeded {
    pub seconds: u64,
}

/// Wraps the body, bounds the handler. Run by [`crate::http::telemetry::track`] around
/// the rest of the request (not a layer of its own: one middleware less per request), so
/// that a request that ran out of time is still counted and audited. `route` is the route
/// table's entry of the matched route: an error outside any handler is answered in its
/// interface's format.
pub async fn within(state: &AppState, route: RouteInfo, request: Request, next: Next) -> Response {
    let timeout = state.request_timeout();
    let seconds = timeout.as_secs();
    let deadline = Instant::now() + timeout;
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline,
            sleep: None,
            seconds,
        })
    });
    match tokio::time::timeout_at(deadline + HANDLER_GRACE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (route.errors)(ApiError::Deadline { seconds }),
    }
}

/// True when a body read failed because the deadline passed (axum wraps the body's error).
pub fn is_body_deadline(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(exceeded) = e.downcast_ref::<BodyDeadlineExceeded>() {
            return Some(exceeded.seconds);
        }
        current = e.source();
    }
    None
}

/// A request body that fails once the request's deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    /// The timer of `deadline`, made the first time the body is not ready.
    sleep: Option<Pin<Box<Sleep>>>,
    seconds: u64,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        // The data that is there is taken first: a body that arrived in time is never
        // refused because the handler was slow to read it.
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        // The timer exists only once the body had to be waited for: most bodies arrive with
        // the request head, and a timer per request (allocated, registered in the wheel) is
        // work for nothing then.
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyDeadlineExceeded {
                seconds: self.seconds,
            })))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

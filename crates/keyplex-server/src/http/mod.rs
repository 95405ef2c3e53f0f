//! What every request passes through, whatever its role: the listener and TLS, body reading,
//! deadlines, rate limits, CORS, the `track` middleware with its metrics (`telemetry`), and
//! the single mapping of errors to HTTP (`error`). Knows no interface.

pub mod body;
pub mod cors;
pub mod deadline;
pub mod doc;
pub mod error;
pub mod listener;
pub mod rate_limit;
pub mod shard;
pub mod telemetry;
pub mod tls;

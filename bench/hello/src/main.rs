//! A minimal axum server answering `GET /` with `hello`.
//!
//! `bench/run.sh` measures it in the same run, on the same machine and with the same load
//! settings as keyplex, so keyplex's CPIX throughput can be stated as a fraction of what the
//! HTTP stack alone (tokio + hyper + axum, default multi-threaded runtime) can serve here.
//!
//! Files named after the address are the "same-size" answers: `POST /answer/{i}` reads the
//! request body and answers the bytes of the i-th file (0-based), doing no other work. With a
//! keyplex answer saved as the file and keyplex's request as the body, it is the ceiling of the
//! HTTP stack, the kernel's loopback TCP and the load generator for exactly that exchange.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else {
        eprintln!("usage: keyplex-bench-hello ADDRESS:PORT [ANSWER_FILE...]");
        return ExitCode::FAILURE;
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("keyplex-bench-hello: invalid address {addr:?}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut answers = Vec::new();
    for file in args {
        match std::fs::read(&file) {
            Ok(bytes) => answers.push(Bytes::from(bytes)),
            Err(error) => {
                eprintln!("keyplex-bench-hello: cannot read {file}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("keyplex-bench-hello: cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/answer/{index}", post(answer))
        .with_state(Arc::new(answers));
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keyplex-bench-hello: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The request body is read (axum's `Bytes` extractor) and dropped; the answer is a clone of
/// shared bytes (no copy).
async fn answer(
    State(answers): State<Arc<Vec<Bytes>>>,
    Path(index): Path<usize>,
    _body: Bytes,
) -> Result<Bytes, StatusCode> {
    answers.get(index).cloned().ok_or(StatusCode::NOT_FOUND)
}

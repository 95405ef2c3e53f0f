//! A minimal axum server answering `GET /` with `hello`.
//!
//! `bench/run.sh` measures it in the same run, on the same machine and with the same load
//! settings as keyplex, so keyplex's CPIX throughput can be stated as a fraction of what the
//! HTTP stack alone (tokio + hyper + axum, default multi-threaded runtime) can serve here.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: keyplex-bench-hello ADDRESS:PORT");
        return ExitCode::FAILURE;
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("keyplex-bench-hello: invalid address {addr:?}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("keyplex-bench-hello: cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new().route("/", get(|| async { "hello" }));
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keyplex-bench-hello: {error}");
            ExitCode::FAILURE
        }
    }
}

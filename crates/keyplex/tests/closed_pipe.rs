//! Every command that prints ends quietly when its reader has gone (`keyplex audit | head -1`):
//! exit status 0, nothing on standard error, no "failed printing to stdout" panic (exit 101).
//!
//! The reader is gone before the command starts (the read end of its stdout pipe is closed),
//! so its first write fails: deterministic, unlike racing a real `head`.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

fn keyplex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keyplex"))
}

/// Runs `command` with standard output a pipe nobody reads.
fn run_with_closed_stdout(mut command: Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    command
        .stdout(writer)
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .output()
        .expect("run keyplex")
}

fn assert_quiet(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}, stderr: {stderr}",
        output.status
    );
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

/// A one-shot HTTP server answering every request with `body` (JSON); its address.
fn fake_admin_api(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn audit_table_on_a_closed_pipe_ends_quietly() {
    let events: Vec<serde_json::Value> = (0..500)
        .map(|i| {
            serde_json::json!({
                "at": "2026-01-01T00:00:00Z", "tenant": "acme", "action": "key.delivered",
                "interface": "cpix", "credential": "basic:packager", "client": "127.0.0.1",
                "content_id": format!("c{i}"), "outcome": "ok", "key_ids": []
            })
        })
        .collect();
    let url = fake_admin_api(serde_json::json!({ "events": events }).to_string());
    let mut command = keyplex();
    command.args(["audit", "--url", &url, "--token", "t"]);
    assert_quiet(&run_with_closed_stdout(command));

    let mut command = keyplex();
    command.args(["audit", "--json", "--url", &url, "--token", "t"]);
    assert_quiet(&run_with_closed_stdout(command));
}

#[test]
fn admin_listing_on_a_closed_pipe_ends_quietly() {
    let url = fake_admin_api(r#"{"tenants": [{"id": "acme"}]}"#.to_owned());
    let mut command = keyplex();
    command.args(["admin", "--url", &url, "--token", "t", "tenants", "list"]);
    assert_quiet(&run_with_closed_stdout(command));
}

#[test]
fn pssh_decode_on_a_closed_pipe_ends_quietly() {
    // A version-1 common-system PSSH box naming one key id.
    let pssh = "0000003470737368010000001077efecc0b24d02ace33c1e52e2fb4b\
                0000000100112233445566778899aabbccddeeff00000000";
    let mut command = keyplex();
    command.args(["pssh", "decode", pssh]);
    assert_quiet(&run_with_closed_stdout(command));
}

#[test]
fn a_real_error_is_still_reported() {
    // The fix must not swallow other errors: no token → exit 1 and a message.
    let mut command = keyplex();
    command
        .args(["audit", "--url", "http://127.0.0.1:9"])
        .env_remove("KEYPLEX_ADMIN_TOKEN");
    let output = run_with_closed_stdout(command);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("admin token is needed"), "{stderr}");
}

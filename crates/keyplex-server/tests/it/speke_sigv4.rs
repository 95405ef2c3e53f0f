//! AWS SigV4 on the SPEKE and CPIX routes, over HTTP. Requests are signed here with the
//! verifier's own building blocks (checked against AWS's published example in the unit
//! tests); tests/python/test_sigv4.py signs with botocore, an independent implementation.

use keyplex_server::sigv4::{
    SignedRequest, canonical_request, signature, signing_key, string_to_sign,
};
use sha2::{Digest, Sha256};

use crate::common::{TestServer, vector};

const ACME: (&str, &str, &str) = ("AKIDACME", "acme-sigv4-secret", "us-east-1");
const GLOBEX: (&str, &str, &str) = ("AKIDGLOBEX", "globex-sigv4-secret", "eu-west-1");

fn generic() -> String {
    String::from_utf8(vector(
        "speke/speke-reference-server/v2_general_1_generic_spekev2_dash_widevine_preset_video_1_audio_1_no_rotation.xml",
    ))
    .unwrap()
}

fn amz_date(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(&f).unwrap()
}

/// The headers of a SigV4-signed POST (content-type, host, x-amz-date, x-speke-version and
/// any `extra`, all signed unless `unsigned` names them).
struct Signer<'a> {
    key: (&'a str, &'a str, &'a str),
    host: String,
    path: &'a str,
    body: &'a [u8],
    time: time::OffsetDateTime,
    extra: Vec<(&'a str, String)>,
    unsigned: &'a [&'a str],
}

impl Signer<'_> {
    fn headers(&self) -> Vec<(String, String)> {
        let (akid, secret, region) = self.key;
        let date = amz_date(self.time);
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/xml".into()),
            ("host".into(), self.host.clone()),
            ("x-amz-date".into(), date.clone()),
            ("x-speke-version".into(), "2.0".into()),
        ];
        for (n, v) in &self.extra {
            headers.push(((*n).to_owned(), v.clone()));
        }
        headers.sort();
        let signed: Vec<String> = headers
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !self.unsigned.contains(&n.as_str()))
            .collect();
        let raw: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let req = SignedRequest {
            method: "POST",
            path: self.path,
            query: None,
            headers: &raw,
            body: self.body,
        };
        let canonical =
            canonical_request(&req, &signed, &hex::encode(Sha256::digest(self.body))).unwrap();
        let day = &date[..8];
        let scope = format!("{day}/{region}/execute-api/aws4_request");
        let key = signing_key(secret, day, region, "execute-api");
        let sig = signature(&key, &string_to_sign(&date, &scope, &canonical));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={}, Signature={sig}",
            signed.join(";")
        );
        headers.retain(|(n, _)| n != "host");
        headers.push(("authorization".into(), auth));
        headers
    }
}

async fn send(
    server: &TestServer,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    let mut req = server.client.post(server.url(path)).body(body.to_vec());
    for (n, v) in headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn signer<'a>(server: &TestServer, path: &'a str, body: &'a [u8]) -> Signer<'a> {
    Signer {
        key: ACME,
        host: server.base.trim_start_matches("http://").to_owned(),
        path,
        body,
        time: time::OffsetDateTime::now_utc(),
        extra: Vec::new(),
        unsigned: &[],
    }
}

#[tokio::test]
async fn signed_requests_pass_on_speke_and_cpix_routes() {
    let server = TestServer::start().await;
    let body = generic();
    for path in ["/acme/speke/v2", "/acme/cpix", "/acme/nks/v1/cpix"] {
        let headers = signer(&server, path, body.as_bytes()).headers();
        let (status, text) = send(&server, path, &headers, body.as_bytes()).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(text.contains("<pskc:PlainValue>"));
    }
    // x-amz-content-sha256, when sent and signed, must be the body's hash.
    let mut s = signer(&server, "/acme/speke/v2", body.as_bytes());
    s.extra = vec![(
        "x-amz-content-sha256",
        hex::encode(Sha256::digest(body.as_bytes())),
    )];
    let (status, _) = send(&server, "/acme/speke/v2", &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 200);
    s.extra = vec![(
        "x-amz-content-sha256",
        hex::encode(Sha256::digest(b"other")),
    )];
    let (status, text) = send(&server, "/acme/speke/v2", &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 401);
    assert!(text.contains("x-amz-content-sha256"), "{text}");
}

#[tokio::test]
async fn replays_and_tampering_fail() {
    let server = TestServer::start().await;
    let body = generic();
    let headers = signer(&server, "/acme/speke/v2", body.as_bytes()).headers();
    // Another body with the same signature.
    let other = body.replace("test_case_generic", "test_case_other");
    let (status, text) = send(&server, "/acme/speke/v2", &headers, other.as_bytes()).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("signature does not match"), "{text}");
    // The same body on another path.
    let (status, _) = send(&server, "/acme/cpix", &headers, body.as_bytes()).await;
    assert_eq!(status, 401);
    // A changed signed header.
    let mut changed = headers.clone();
    for (n, v) in &mut changed {
        if n == "x-speke-version" {
            *v = "2.1".into();
        }
    }
    let (status, _) = send(&server, "/acme/speke/v2", &changed, body.as_bytes()).await;
    assert_eq!(status, 401);
    // The original still passes (replay within the window is what SigV4 allows).
    let (status, _) = send(&server, "/acme/speke/v2", &headers, body.as_bytes()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn clock_skew_required_headers_and_temporary_credentials() {
    let server = TestServer::start().await;
    let body = generic();
    let path = "/acme/speke/v2";
    let mut s = signer(&server, path, body.as_bytes());
    s.time = time::OffsetDateTime::now_utc() - time::Duration::minutes(6);
    let (status, text) = send(&server, path, &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 401);
    assert!(text.contains("5 minutes"), "{text}");
    s.time = time::OffsetDateTime::now_utc() + time::Duration::minutes(6);
    assert_eq!(
        send(&server, path, &s.headers(), body.as_bytes()).await.0,
        401
    );
    s.time = time::OffsetDateTime::now_utc() - time::Duration::minutes(4);
    assert_eq!(
        send(&server, path, &s.headers(), body.as_bytes()).await.0,
        200
    );

    let mut s = signer(&server, path, body.as_bytes());
    s.unsigned = &["host"];
    let (status, text) = send(&server, path, &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 401);
    assert!(text.contains("host"), "{text}");

    let mut s = signer(&server, path, body.as_bytes());
    s.extra = vec![("x-amz-security-token", "FwoGZXIvYXdzEBYaDH".into())];
    let (status, text) = send(&server, path, &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 401);
    assert!(text.contains("API Gateway"), "{text}");

    // The scope must name the credential's region.
    let mut s = signer(&server, path, body.as_bytes());
    s.key = (ACME.0, ACME.1, "eu-west-1");
    let (status, text) = send(&server, path, &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 401);
    assert!(text.contains("us-east-1/execute-api"), "{text}");
}

#[tokio::test]
async fn unknown_keys_are_401_and_other_tenants_keys_403() {
    let server = TestServer::start().await;
    let body = generic();
    let path = "/acme/speke/v2";
    let mut s = signer(&server, path, body.as_bytes());
    s.key = ("AKIDNOBODY", "whatever", "us-east-1");
    let (status, _) = send(&server, path, &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 401);
    // globex's genuine signature on acme's URL.
    s.key = GLOBEX;
    let (status, _) = send(&server, path, &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 403);
    // globex's access key id with a wrong secret is just wrong.
    s.key = (GLOBEX.0, "not-the-secret", GLOBEX.2);
    let (status, _) = send(&server, path, &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 401);
    // And globex's key works on globex's URL.
    let globex_path = "/globex/speke/v2";
    let mut s = signer(&server, globex_path, body.as_bytes());
    s.key = GLOBEX;
    let (status, text) = send(&server, globex_path, &s.headers(), body.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    // A malformed SigV4 header is 401.
    let headers = vec![
        ("x-speke-version".to_owned(), "2.0".to_owned()),
        (
            "authorization".to_owned(),
            "AWS4-HMAC-SHA256 Credential=AKIDACME".to_owned(),
        ),
    ];
    let (status, text) = send(&server, path, &headers, body.as_bytes()).await;
    assert_eq!(status, 401);
    assert!(text.contains("malformed"), "{text}");
}

#[tokio::test]
async fn body_limit_is_checked_before_authentication() {
    let server = TestServer::start_with(crate::common::ACME_CONFIG, |c| {
        c.server.max_body_bytes = 1024;
    })
    .await;
    let big = vec![b'x'; 4096];
    let (status, _) = send(&server, "/acme/speke/v2", &[], &big).await;
    assert_eq!(status, 413);
    let (status, _) = send(&server, "/acme/cpix", &[], &big).await;
    assert_eq!(status, 413);
}

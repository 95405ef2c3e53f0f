//! AWS Signature Version 4 verification for packagers that sign with static credentials
//! configured on their tenant (`sigv4 = [{ access_key_id, secret_access_key, region, service }]`).
//!
//! Pure: it sees the method, the path and query as received, the headers, the body bytes, the
//! current time and the credentials — no HTTP framework — so it can be tested against the
//! published AWS example with a fixed clock.
//!
//! What it checks, in order: the `Authorization` header shape; no `X-Amz-Security-Token`
//! (temporary role credentials: their secret is known only to AWS, so only an AWS front end
//! such as API Gateway with IAM authorization can verify them); `host` and `x-amz-date` are
//! signed; the credential scope names the credential's region and service and the date of
//! `x-amz-date`; the request time is within five minutes of `now`; `x-amz-content-sha256`, if
//! sent, is the body's hash; and finally the signature, compared in constant time. The body's
//! hash is always part of what is verified, so a replayed signature with another body or path
//! fails.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::config::SigV4Credential;

type HmacSha256 = Hmac<Sha256>;

/// The `Authorization` scheme of SigV4.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Largest accepted difference between the request's `x-amz-date` and the server clock.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 5 * 60;

/// The parts of a request SigV4 covers, as received.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (percent-encoded), without the query.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// Every header, names in any case, in the order received.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    pub signature: Vec<u8>,
}

/// Why a signed request is refused (all 401 for the client). Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("malformed AWS4-HMAC-SHA256 Authorization header: {0}")]
    Malformed(&'static str),
    #[error(
        "X-Amz-Security-Token is present: these are temporary (IAM role) credentials, whose secret only AWS knows, so keyplex cannot verify them. Put Amazon API Gateway with IAM authorization in front of keyplex, or configure static SigV4 credentials (or Basic) for this packager"
    )]
    TemporaryCredentials,
    #[error("the header {0} must be signed (listed in SignedHeaders)")]
    UnsignedRequiredHeader(&'static str),
    #[error("signed header {0} is missing from the request")]
    MissingSignedHeader(String),
    #[error("x-amz-date is missing or not of the form YYYYMMDDTHHMMSSZ")]
    BadDate,
    #[error("credential scope date {scope} does not match x-amz-date {request}")]
    ScopeDate { scope: String, request: String },
    #[error("credential scope {region}/{service} does not match this access key's {expected}")]
    Scope {
        region: String,
        service: String,
        expected: String,
    },
    #[error("request time {0} is more than 5 minutes away from the server clock")]
    ClockSkew(String),
    #[error("x-amz-content-sha256 does not match the SHA-256 of the body")]
    BodyHash,
    #[error("the signature does not match the request")]
    SignatureMismatch,
}

/// Whether an `Authorization` header value uses SigV4.
pub fn is_sigv4(authorization: &str) -> bool {
    authorization
        .trim_start()
        .get(..ALGORITHM.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(ALGORITHM))
}

/// Parses the `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let value = value.trim();
    let rest = value.strip_prefix(ALGORITHM).ok_or(SigV4Error::Malformed(
        "expected the AWS4-HMAC-SHA256 scheme",
    ))?;
    if !rest.starts_with([' ', '\t']) {
        return Err(SigV4Error::Malformed(
            "expected a space after AWS4-HMAC-SHA256",
        ));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, val) = part
            .trim()
            .split_once('=')
            .ok_or(SigV4Error::Malformed("expected name=value components"))?;
        let slot = match name.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(SigV4Error::Malformed("unknown component")),
        };
        if slot.replace(val.trim()).is_some() {
            return Err(SigV4Error::Malformed("component repeated"));
        }
    }
    let credential = credential.ok_or(SigV4Error::Malformed("no Credential"))?;
    let signed = signed.ok_or(SigV4Error::Malformed("no SignedHeaders"))?;
    let signature = signature.ok_or(SigV4Error::Malformed("no Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope.as_slice() else {
        return Err(SigV4Error::Malformed(
            "Credential must be <access key>/<YYYYMMDD>/<region>/<service>/aws4_request",
        ));
    };
    if *terminator != "aws4_request"
        || access_key_id.is_empty()
        || region.is_empty()
        || service.is_empty()
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SigV4Error::Malformed(
            "Credential must be <access key>/<YYYYMMDD>/<region>/<service>/aws4_request",
        ));
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase() || b == b' '))
    {
        return Err(SigV4Error::Malformed(
            "SignedHeaders must be lower-case names joined by ';'",
        ));
    }
    if signature.len() != 64 {
        return Err(SigV4Error::Malformed("Signature must be 64 hex digits"));
    }
    let signature = hex::decode(signature)
        .map_err(|_| SigV4Error::Malformed("Signature must be 64 hex digits"))?;
    Ok(Authorization {
        access_key_id: (*access_key_id).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers,
        signature,
    })
}

/// Checks that `request` carries `auth`, signed with `credential`, at a time near `now`.
pub fn verify(
    request: &SignedRequest<'_>,
    auth: &Authorization,
    credential: &SigV4Credential,
    now: OffsetDateTime,
) -> Result<(), SigV4Error> {
    if header_values(request, "x-amz-security-token").is_some() {
        return Err(SigV4Error::TemporaryCredentials);
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(SigV4Error::UnsignedRequiredHeader(required));
        }
    }
    let amz_date = header_values(request, "x-amz-date").ok_or(SigV4Error::BadDate)?;
    let request_time = parse_amz_date(&amz_date).ok_or(SigV4Error::BadDate)?;
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(SigV4Error::ScopeDate {
            scope: auth.date.clone(),
            request: amz_date,
        });
    }
    if auth.region != credential.region || auth.service != credential.service {
        return Err(SigV4Error::Scope {
            region: auth.region.clone(),
            service: auth.service.clone(),
            expected: format!("{}/{}", credential.region, credential.service),
        });
    }
    if (now - request_time).whole_seconds().abs() > MAX_CLOCK_SKEW_SECONDS {
        return Err(SigV4Error::ClockSkew(amz_date));
    }
    let body_hash = hex::encode(Sha256::digest(request.body));
    if let Some(claimed) = header_values(request, "x-amz-content-sha256")
        && !claimed.eq_ignore_ascii_case(&body_hash)
    {
        return Err(SigV4Error::BodyHash);
    }
    let canonical = canonical_request(request, &auth.signed_headers, &body_hash)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = string_to_sign(&amz_date, &scope, &canonical);
    let key = signing_key(
        credential.secret_access_key.expose(),
        &auth.date,
        &auth.region,
        &auth.service,
    );
    let mut mac = hmac(&*key);
    mac.update(to_sign.as_bytes());
    mac.verify_slice(&auth.signature)
        .map_err(|_| SigV4Error::SignatureMismatch)
}

/// The canonical request (SigV4 task 1). `payload_hash` is the hex SHA-256 of the body.
pub fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, SigV4Error> {
    let mut out = String::new();
    out.push_str(request.method);
    out.push('\n');
    out.push_str(&canonical_uri(request.path));
    out.push('\n');
    out.push_str(&canonical_query(request.query.unwrap_or("")));
    out.push('\n');
    for name in signed_headers {
        let value = header_values(request, name).ok_or_else(|| {
            SigV4Error::MissingSignedHeader(keyplex_types::truncate_for_message(name))
        })?;
        out.push_str(name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// The string to sign (SigV4 task 2).
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The signing key (SigV4 task 3): HMAC chain over date, region, service, `aws4_request`.
/// The derived key and every intermediate are zeroized when dropped: each is as good as the
/// secret access key for that day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let step = |key: &[u8], data: &str| -> Zeroizing<[u8; 32]> {
        let mut mac = hmac(key);
        mac.update(data.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    };
    let prefixed = Zeroizing::new(format!("AWS4{secret}"));
    let k_date = step(prefixed.as_bytes(), date);
    let k_region = step(&*k_date, region);
    let k_service = step(&*k_region, service);
    step(&*k_service, "aws4_request")
}

/// Hex HMAC-SHA256 of the string to sign (SigV4 task 4): what a client puts in `Signature`.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    let mut mac = hmac(signing_key);
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn hmac(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => unreachable!("HMAC-SHA256 accepts any key length"),
    }
}

/// All values of a header, trimmed, inner whitespace runs collapsed, joined by `,`.
fn header_values(request: &SignedRequest<'_>, name: &str) -> Option<String> {
    let values: Vec<String> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split_ascii_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// The path as sent, URI-encoded once more (AWS signs the wire path encoded a second time,
/// except for S3); `/` when empty.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    uri_encode(path.as_bytes(), false)
}

/// Parameters decoded, RFC 3986-encoded again, sorted by name then value, `k=v` joined by `&`.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Some(v) = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::Secret;

    // AWS's published worked example (the "Signature Version 4 signing process" documentation:
    // IAM ListUsers, 20150830T123600Z).
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const CANONICAL: &str = "GET\n/\nAction=ListUsers&Version=2010-05-08\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    fn example_headers() -> Vec<(&'static str, &'static [u8])> {
        vec![
            (
                "Content-Type",
                b"application/x-www-form-urlencoded; charset=utf-8".as_slice(),
            ),
            ("Host", b"iam.amazonaws.com".as_slice()),
            ("X-Amz-Date", b"20150830T123600Z".as_slice()),
        ]
    }

    fn credential(region: &str, service: &str) -> SigV4Credential {
        SigV4Credential {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new(SECRET),
            region: region.into(),
            service: service.into(),
        }
    }

    fn example_time() -> OffsetDateTime {
        time::macros::datetime!(2015-08-30 12:36:00 UTC)
    }

    #[test]
    fn aws_worked_example_step_by_step() {
        let headers = example_headers();
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            headers: &headers,
            body: b"",
        };
        let auth = parse_authorization(AUTH).unwrap();
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        let payload = hex::encode(Sha256::digest(b""));
        let canonical = canonical_request(&req, &auth.signed_headers, &payload).unwrap();
        assert_eq!(canonical, CANONICAL);
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            &canonical,
        );
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let key = signing_key(SECRET, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex::encode(*key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        assert_eq!(
            signature(&key, &sts),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        verify(&req, &auth, &credential("us-east-1", "iam"), example_time()).unwrap();
        // Parameters in another order canonicalise identically.
        let reordered = SignedRequest {
            query: Some("Version=2010-05-08&Action=ListUsers"),
            ..req
        };
        verify(
            &reordered,
            &auth,
            &credential("us-east-1", "iam"),
            example_time(),
        )
        .unwrap();
    }

    #[test]
    fn anything_changed_fails() {
        let headers = example_headers();
        let base = SignedRequest {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            headers: &headers,
            body: b"",
        };
        let auth = parse_authorization(AUTH).unwrap();
        let cred = credential("us-east-1", "iam");
        let t = example_time();
        let changed = [
            SignedRequest {
                method: "POST",
                ..base
            },
            SignedRequest {
                path: "/other",
                ..base
            },
            SignedRequest {
                query: Some("Action=ListUsers&Version=2010-05-09"),
                ..base
            },
            SignedRequest { body: b"x", ..base },
        ];
        for req in &changed {
            assert_eq!(
                verify(req, &auth, &cred, t),
                Err(SigV4Error::SignatureMismatch)
            );
        }
        let mut other_secret = cred.clone();
        other_secret.secret_access_key = Secret::new("not-the-secret");
        assert_eq!(
            verify(&base, &auth, &other_secret, t),
            Err(SigV4Error::SignatureMismatch)
        );
        // Region/service of the scope must be the credential's.
        assert!(matches!(
            verify(&base, &auth, &credential("eu-west-1", "iam"), t),
            Err(SigV4Error::Scope { .. })
        ));
        assert!(matches!(
            verify(&base, &auth, &credential("us-east-1", "execute-api"), t),
            Err(SigV4Error::Scope { .. })
        ));
        // Clock skew: 5 minutes pass, 5 minutes and a second do not, both ways.
        let five = time::Duration::minutes(5);
        let second = time::Duration::seconds(1);
        verify(&base, &auth, &cred, t + five).unwrap();
        verify(&base, &auth, &cred, t - five).unwrap();
        assert!(matches!(
            verify(&base, &auth, &cred, t + five + second),
            Err(SigV4Error::ClockSkew(_))
        ));
        assert!(matches!(
            verify(&base, &auth, &cred, t - five - second),
            Err(SigV4Error::ClockSkew(_))
        ));
    }

    #[test]
    fn required_headers_tokens_and_body_hash() {
        let cred = credential("us-east-1", "iam");
        let t = example_time();
        let mut headers = example_headers();
        headers.push(("X-Amz-Security-Token", b"FwoGZXIvYXdzE".as_slice()));
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            headers: &headers,
            body: b"",
        };
        let auth = parse_authorization(AUTH).unwrap();
        let err = verify(&req, &auth, &cred, t).unwrap_err();
        assert_eq!(err, SigV4Error::TemporaryCredentials);
        assert!(err.to_string().contains("API Gateway"));

        let headers = example_headers();
        let req = SignedRequest {
            headers: &headers,
            ..req
        };
        let unsigned_date =
            parse_authorization(&AUTH.replace("content-type;host;x-amz-date", "content-type;host"))
                .unwrap();
        assert_eq!(
            verify(&req, &unsigned_date, &cred, t),
            Err(SigV4Error::UnsignedRequiredHeader("x-amz-date"))
        );
        let unsigned_host = parse_authorization(
            &AUTH.replace("content-type;host;x-amz-date", "content-type;x-amz-date"),
        )
        .unwrap();
        assert_eq!(
            verify(&req, &unsigned_host, &cred, t),
            Err(SigV4Error::UnsignedRequiredHeader("host"))
        );
        let other_day = parse_authorization(&AUTH.replace("/20150830/", "/20150831/")).unwrap();
        assert!(matches!(
            verify(&req, &other_day, &cred, t),
            Err(SigV4Error::ScopeDate { .. })
        ));

        let mut with_hash = example_headers();
        with_hash.push((
            "x-amz-content-sha256",
            b"0000000000000000000000000000000000000000000000000000000000000000".as_slice(),
        ));
        let req = SignedRequest {
            headers: &with_hash,
            ..req
        };
        assert_eq!(verify(&req, &auth, &cred, t), Err(SigV4Error::BodyHash));
    }

    #[test]
    fn malformed_headers() {
        for bad in [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/aws4_request, SignedHeaders=host, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            "AWS4-HMAC-SHA256 Credential=AKID/2015083/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=Host, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=zz",
        ] {
            assert!(
                matches!(parse_authorization(bad), Err(SigV4Error::Malformed(_))),
                "{bad}"
            );
        }
        assert!(is_sigv4("aws4-hmac-sha256 Credential=…"));
        assert!(!is_sigv4("Basic cGFja2FnZXI6cw=="));
    }

    #[test]
    fn uri_and_query_encoding() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/acme/speke/v2"), "/acme/speke/v2");
        // The wire path is encoded once more: `%20` becomes `%2520`.
        assert_eq!(canonical_uri("/a%20b/c"), "/a%2520b/c");
        assert_eq!(canonical_query("b=2&a=1&a=0&c"), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query("k=a%20b&s=x/y"), "k=a%20b&s=x%2Fy");
    }
}

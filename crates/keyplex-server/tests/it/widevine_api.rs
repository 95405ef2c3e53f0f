//! Widevine common-encryption API (`POST /{tenant}/widevine/getcontentkey`): the signed JSON
//! protocol of Shaka Packager's `--enable_widevine_encryption`.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_drm::pssh::PsshBox;
use keyplex_drm::system::DrmSystem;
use keyplex_drm::widevine::WidevinePsshData;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::cpix::{ok_document, plain_keys};

const WIDEVINE_TEST_KEY: &str = "1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9";
const WIDEVINE_TEST_IV: &str = "d58ce954203b7c9a9a9d467f59839249";

/// `wvco` signs (the public widevine_test credentials) and overrides CPIX kids, so CPIX
/// and the Widevine API share key slots; `nosign` has no signers.
const CONFIG: &str = r#"
[tenants.wvco]
basic = [{ user = "packager", password = "s3cret-wvco" }]
widevine_provider = "wvco"
kid_override = true
widevine_signers = [
  { name = "widevine_test", aes_key = "1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9", aes_iv = "d58ce954203b7c9a9a9d467f59839249" },
  { name = "second", aes_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", aes_iv = "000102030405060708090a0b0c0d0e0f" },
]

[tenants.nosign]
basic = [{ user = "packager", password = "s3cret-nosign" }]
"#;

/// The exact POST body Shaka Packager sends for content "ContentFoo".
const KAT_BODY: &str = r#"{"request":"eyJjb250ZW50X2lkIjoiUTI5dWRHVnVkRVp2Ync9PSIsInBvbGljeSI6IlBvbGljeUZvbyIsInRyYWNrcyI6W3sidHlwZSI6IlNEIn0seyJ0eXBlIjoiSEQifSx7InR5cGUiOiJVSEQxIn0seyJ0eXBlIjoiVUhEMiJ9LHsidHlwZSI6IkFVRElPIn1dLCJkcm1fdHlwZXMiOlsiV0lERVZJTkUiXSwicHJvdGVjdGlvbl9zY2hlbWUiOiJDRU5DIn0=","signature":"7eCWoKs8d3ah0ugpd4yyi+6Y7lxfjcDIWtKUf95/9A4=","signer":"widevine_test"}"#;

async fn start() -> TestServer {
    TestServer::start_with(CONFIG, |_| {}).await
}

/// The signature Shaka Packager computes: AES-256-CBC(SHA-1(request)), written here with
/// the RustCrypto primitives directly (independent of the server's code path).
fn sign(request: &str, key_hex: &str, iv_hex: &str) -> String {
    use sha1::Digest as _;
    let digest = sha1::Sha1::digest(request.as_bytes());
    let key = hex::decode(key_hex).unwrap();
    let iv: [u8; 16] = hex::decode(iv_hex).unwrap().try_into().unwrap();
    B64.encode(keyplex_crypto::block::aes_cbc_encrypt_pkcs7(&key, &iv, &digest).unwrap())
}

fn signed_body(request: &Value) -> String {
    let text = request.to_string();
    json!({
        "request": B64.encode(&text),
        "signature": sign(&text, WIDEVINE_TEST_KEY, WIDEVINE_TEST_IV),
        "signer": "widevine_test",
    })
    .to_string()
}

fn shaka_request(content_id: &[u8]) -> Value {
    json!({
        "content_id": B64.encode(content_id),
        "policy": "",
        "tracks": [{"type": "SD"}, {"type": "HD"}, {"type": "UHD1"}, {"type": "UHD2"}, {"type": "AUDIO"}],
        "drm_types": ["WIDEVINE"],
        "protection_scheme": "CENC",
    })
}

async fn post_raw(server: &TestServer, tenant: &str, body: String) -> (u16, Value) {
    let resp = server
        .client
        .post(server.url(&format!("/{tenant}/widevine/getcontentkey")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let outer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let inner = B64
        .decode(outer["response"].as_str().expect("response field"))
        .unwrap();
    (status, serde_json::from_slice(&inner).unwrap())
}

async fn post(server: &TestServer, request: &Value) -> Value {
    post_raw(server, "wvco", signed_body(request)).await.1
}

/// Asserts a non-OK answer: HTTP 200, the status inside the envelope, a message naming `needle`.
async fn assert_refused(
    server: &TestServer,
    tenant: &str,
    body: String,
    status: &str,
    needle: &str,
) {
    let (http, resp) = post_raw(server, tenant, body).await;
    assert_eq!(http, 200);
    assert_eq!(resp["status"], status, "{resp}");
    let message = resp["status_message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert!(resp.get("tracks").is_none());
}

/// A track's (type, kid, key, iv, period) after checking its shape and its pssh.
fn check_track(
    track: &Value,
    content_id: &str,
) -> (String, Vec<u8>, Vec<u8>, Vec<u8>, Option<u64>) {
    let kid = B64.decode(track["key_id"].as_str().unwrap()).unwrap();
    let key = B64.decode(track["key"].as_str().unwrap()).unwrap();
    let iv = B64.decode(track["iv"].as_str().unwrap()).unwrap();
    assert_eq!((kid.len(), key.len(), iv.len()), (16, 16, 16));
    let pssh = track["pssh"].as_array().unwrap();
    assert_eq!(pssh.len(), 1, "exactly one pssh per track");
    assert_eq!(pssh[0]["drm_type"], "WIDEVINE");
    let boxes = B64.decode(pssh[0]["boxes"].as_str().unwrap()).unwrap();
    let data = B64.decode(pssh[0]["data"].as_str().unwrap()).unwrap();
    let (pssh_box, used) = PsshBox::parse(&boxes).unwrap();
    assert_eq!(used, boxes.len());
    assert_eq!(pssh_box.system(), Some(DrmSystem::Widevine));
    assert_eq!(pssh_box.data, data, "`data` is the payload of `boxes`");
    let wv = WidevinePsshData::decode_from(&data).unwrap();
    assert_eq!(wv.key_id, vec![kid.clone()]);
    assert_eq!(wv.content_id.as_deref(), Some(content_id.as_bytes()));
    let period = track["crypto_period_index"].as_u64();
    assert_eq!(wv.crypto_period_index.map(u64::from), period);
    (
        track["type"].as_str().unwrap().to_owned(),
        kid,
        key,
        iv,
        period,
    )
}

#[tokio::test]
async fn the_known_answer_request_is_accepted() {
    let server = start().await;
    let (http, resp) = post_raw(&server, "wvco", KAT_BODY.to_owned()).await;
    assert_eq!(http, 200);
    assert_eq!(resp["status"], "OK", "{resp}");
    assert_eq!(resp["content_id"], "Q29udGVudEZvbw==");
    assert_eq!(resp["tracks"].as_array().unwrap().len(), 5);
    for track in resp["tracks"].as_array().unwrap() {
        check_track(track, "ContentFoo");
    }
}

#[tokio::test]
async fn five_tracks_get_five_keys_that_stay_the_same() {
    let server = start().await;
    let first = post(&server, &shaka_request(b"movie-1")).await;
    assert_eq!(first["status"], "OK", "{first}");
    assert_eq!(
        first["drm"],
        json!([{"type": "WIDEVINE", "system_id": "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"}])
    );
    assert_eq!(first["content_id"], B64.encode("movie-1"));
    let tracks: Vec<_> = first["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| check_track(t, "movie-1"))
        .collect();
    let types: Vec<_> = tracks.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(types, ["SD", "HD", "UHD1", "UHD2", "AUDIO"]);
    assert!(
        tracks.iter().all(|t| t.4.is_none()),
        "no period without rotation"
    );
    let kids: HashSet<_> = tracks.iter().map(|t| t.1.clone()).collect();
    let keys: HashSet<_> = tracks.iter().map(|t| t.2.clone()).collect();
    assert_eq!((kids.len(), keys.len()), (5, 5));

    let again = post(&server, &shaka_request(b"movie-1")).await;
    assert_eq!(again, first, "the same request answers the same keys");
    // A subset in another order, lowerCamelCase keys: the same slots.
    let subset = json!({
        "contentId": B64.encode("movie-1"),
        "tracks": [{"type": "AUDIO"}, {"type": "SD"}],
        "drmTypes": ["WIDEVINE"],
    });
    let sub = post(&server, &subset).await;
    let sub: Vec<_> = sub["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| check_track(t, "movie-1"))
        .collect();
    assert_eq!((sub[0].0.as_str(), &sub[0].1), ("AUDIO", &tracks[4].1));
    assert_eq!((sub[1].0.as_str(), &sub[1].2), ("SD", &tracks[0].2));
    // Another content, other keys.
    let other = post(&server, &shaka_request(b"movie-2")).await;
    let other_kid = B64
        .decode(other["tracks"][0]["key_id"].as_str().unwrap())
        .unwrap();
    assert!(!kids.contains(&other_kid));
}

#[tokio::test]
async fn rotation_answers_count_times_types_grouped_by_period() {
    let server = start().await;
    let mut request = shaka_request(b"live-1");
    request["first_crypto_period_index"] = json!(10);
    request["crypto_period_count"] = json!(3);
    request["crypto_period_seconds"] = json!(6);
    let resp = post(&server, &request).await;
    assert_eq!(resp["status"], "OK", "{resp}");
    let tracks: Vec<_> = resp["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| check_track(t, "live-1"))
        .collect();
    assert_eq!(tracks.len(), 15);
    for (i, t) in tracks.iter().enumerate() {
        assert_eq!(t.4, Some(10 + (i / 5) as u64), "grouped by period");
        assert_eq!(t.0, ["SD", "HD", "UHD1", "UHD2", "AUDIO"][i % 5]);
    }
    let kids: HashSet<_> = tracks.iter().map(|t| t.1.clone()).collect();
    assert_eq!(kids.len(), 15);
    assert_eq!(post(&server, &request).await, resp, "stable on repeat");

    // The next block overlaps: periods 11 and 12 keep their keys; the VOD key is another.
    request["first_crypto_period_index"] = json!(11);
    let next = post(&server, &request).await;
    let next: Vec<_> = next["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| check_track(t, "live-1"))
        .collect();
    assert_eq!(next[0].4, Some(11));
    assert_eq!(
        next[..10].iter().map(|t| &t.1).collect::<Vec<_>>(),
        tracks[5..].iter().map(|t| &t.1).collect::<Vec<_>>()
    );
    let vod = post(&server, &shaka_request(b"live-1")).await;
    let vod_kid = B64
        .decode(vod["tracks"][0]["key_id"].as_str().unwrap())
        .unwrap();
    assert!(!kids.contains(&vod_kid));
    // The protobuf default count is 1.
    let mut single = shaka_request(b"live-1");
    single["first_crypto_period_index"] = json!(12);
    let single = post(&server, &single).await;
    assert_eq!(single["tracks"].as_array().unwrap().len(), 5);
    assert_eq!(single["tracks"][0]["key_id"], resp["tracks"][10]["key_id"]);
}

#[tokio::test]
async fn cbcs_and_video_feature() {
    let server = start().await;
    let mut request = shaka_request(b"movie-hdr");
    request["protection_scheme"] = json!("CBCS");
    let sdr = post(&server, &request).await;
    let data = B64
        .decode(sdr["tracks"][0]["pssh"][0]["data"].as_str().unwrap())
        .unwrap();
    let wv = WidevinePsshData::decode_from(&data).unwrap();
    assert_eq!(wv.protection_scheme, Some(u32::from_be_bytes(*b"cbcs")));
    request["video_feature"] = json!("HDR");
    let hdr = post(&server, &request).await;
    assert_ne!(
        hdr["tracks"][1]["key_id"], sdr["tracks"][1]["key_id"],
        "HDR video has its own key"
    );
    assert_eq!(
        hdr["tracks"][4]["key_id"], sdr["tracks"][4]["key_id"],
        "audio is shared"
    );
    assert_eq!(
        hdr["tracks"][1]["type"], "HD",
        "the label stays the packager's"
    );
}

#[tokio::test]
async fn signature_failures_are_reported_in_the_envelope() {
    let server = start().await;
    let request = shaka_request(b"movie-1").to_string();
    let with = |signer: &str, signature: String| {
        json!({"request": B64.encode(&request), "signature": signature, "signer": signer})
            .to_string()
    };
    let good = sign(&request, WIDEVINE_TEST_KEY, WIDEVINE_TEST_IV);
    assert_refused(
        &server,
        "wvco",
        with("nobody", good.clone()),
        "SIGNATURE_FAILED",
        "unknown signer \"nobody\"",
    )
    .await;
    // Signed with the other signer's key but naming widevine_test.
    let wrong = sign(
        &request,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "000102030405060708090a0b0c0d0e0f",
    );
    assert_refused(
        &server,
        "wvco",
        with("widevine_test", wrong.clone()),
        "SIGNATURE_FAILED",
        "does not verify",
    )
    .await;
    // ... which is fine when it names itself.
    let (_, ok) = post_raw(&server, "wvco", with("second", wrong)).await;
    assert_eq!(ok["status"], "OK");
    // A valid signature over other bytes (the request changed after signing).
    let tampered = json!({"request": B64.encode(request.replace("CENC", "CBCS")), "signature": good, "signer": "widevine_test"});
    assert_refused(
        &server,
        "wvco",
        tampered.to_string(),
        "SIGNATURE_FAILED",
        "does not verify",
    )
    .await;
    let unsigned = json!({"request": B64.encode(&request)}).to_string();
    assert_refused(
        &server,
        "wvco",
        unsigned,
        "SIGNATURE_FAILED",
        "unsigned request",
    )
    .await;
    let no_signature =
        json!({"request": B64.encode(&request), "signer": "widevine_test"}).to_string();
    assert_refused(
        &server,
        "wvco",
        no_signature,
        "SIGNATURE_FAILED",
        "no `signature`",
    )
    .await;
    // The raw envelope also says it in clear (what Shaka Packager prints).
    let resp = server
        .client
        .post(server.url("/wvco/widevine/getcontentkey"))
        .body(with(
            "nobody",
            sign(&request, WIDEVINE_TEST_KEY, WIDEVINE_TEST_IV),
        ))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"status\":\"SIGNATURE_FAILED\""), "{text}");
    assert!(text.contains("unknown signer"), "{text}");
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    let server = start().await;
    let s = &server;
    assert_refused(
        s,
        "wvco",
        "not json".into(),
        "MALFORMED_REQUEST",
        "not a signed request",
    )
    .await;
    assert_refused(
        s,
        "wvco",
        String::new(),
        "MALFORMED_REQUEST",
        "empty request body",
    )
    .await;
    assert_refused(
        s,
        "wvco",
        r#"{"request":"%%%"}"#.into(),
        "MALFORMED_REQUEST",
        "not base64",
    )
    .await;
    assert_refused(s, "wvco", "{}".into(), "MALFORMED_REQUEST", "no `request`").await;
    // Correctly signed, but the request is not JSON / lacks things.
    let signed_text = |text: &str| {
        json!({"request": B64.encode(text), "signature": sign(text, WIDEVINE_TEST_KEY, WIDEVINE_TEST_IV), "signer": "widevine_test"}).to_string()
    };
    assert_refused(
        s,
        "wvco",
        signed_text("{not json"),
        "MALFORMED_REQUEST",
        "not a CommonEncryptionRequest",
    )
    .await;
    let mut no_tracks = shaka_request(b"m");
    no_tracks.as_object_mut().unwrap().remove("tracks");
    assert_refused(
        s,
        "wvco",
        signed_body(&no_tracks),
        "TRACK_TYPE_MISSING",
        "no tracks",
    )
    .await;
    let mut bad_track = shaka_request(b"m");
    bad_track["tracks"] = json!([{"type": "SD"}, {"type": "8K"}]);
    assert_refused(
        s,
        "wvco",
        signed_body(&bad_track),
        "TRACK_TYPE_UNKNOWN",
        "8K",
    )
    .await;
    let no_content = json!({"tracks": [{"type": "SD"}]});
    assert_refused(
        s,
        "wvco",
        signed_body(&no_content),
        "CONTENT_ID_MISSING",
        "content_id",
    )
    .await;
    let mut bad_b64 = shaka_request(b"m");
    bad_b64["content_id"] = json!("*not base64*");
    assert_refused(
        s,
        "wvco",
        signed_body(&bad_b64),
        "MALFORMED_REQUEST",
        "content_id is not base64",
    )
    .await;
    let mut zero = shaka_request(b"m");
    zero["first_crypto_period_index"] = json!(0);
    zero["crypto_period_count"] = json!(0);
    assert_refused(
        s,
        "wvco",
        signed_body(&zero),
        "NO_REQUESTED_CRYPTO_PERIODS",
        "0",
    )
    .await;
    let mut too_many = shaka_request(b"m");
    too_many["first_crypto_period_index"] = json!(0);
    too_many["crypto_period_count"] = json!(1000);
    assert_refused(
        s,
        "wvco",
        signed_body(&too_many),
        "MALFORMED_REQUEST",
        "1000",
    )
    .await;
    assert_refused(
        s,
        "nope",
        KAT_BODY.into(),
        "ACCESS_DENIED",
        "unknown tenant",
    )
    .await;
    // Nothing of the refused requests was stored: "m" has no keys.
    let listed = server_keys(s, "m").await;
    assert_eq!(listed, 0);
}

/// How many keys the store holds for a content of `wvco` (through a kid-override CPIX
/// request would create them, so this asks the store directly).
async fn server_keys(server: &TestServer, content: &str) -> usize {
    use keyplex_store::prelude::*;
    let master = keyplex_server::setup::load_master_key(
        &{
            let mut c = keyplex_server::config::Config::default();
            c.server.data_dir = server.data_dir.path().to_owned();
            c
        },
        None,
    )
    .unwrap()
    .0;
    let store =
        keyplex_store::SqliteStore::open(&server.data_dir.path().join("keyplex.sqlite"), master)
            .await
            .unwrap();
    store
        .list_keys(
            &keyplex_types::TenantId::parse("wvco").unwrap(),
            &keyplex_types::ContentId::parse(content).unwrap(),
        )
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_tenant_without_signers_wants_packager_credentials() {
    let server = start().await;
    let request = shaka_request(b"movie-1").to_string();
    let unsigned = json!({"request": B64.encode(&request)}).to_string();
    assert_refused(
        &server,
        "nosign",
        unsigned.clone(),
        "ACCESS_DENIED",
        "no widevine_signers",
    )
    .await;
    assert_refused(
        &server,
        "nosign",
        KAT_BODY.into(),
        "SIGNATURE_FAILED",
        "has no widevine_signers",
    )
    .await;
    let resp = server
        .client
        .post(server.url("/nosign/widevine/getcontentkey"))
        .basic_auth("packager", Some("s3cret-nosign"))
        .body(unsigned.clone())
        .send()
        .await
        .unwrap();
    let outer: Value = resp.json().await.unwrap();
    let inner: Value =
        serde_json::from_slice(&B64.decode(outer["response"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(inner["status"], "OK", "{inner}");
    // Another tenant's credentials do not open it.
    let resp = server
        .client
        .post(server.url("/nosign/widevine/getcontentkey"))
        .basic_auth("packager", Some("s3cret-wvco"))
        .body(unsigned)
        .send()
        .await
        .unwrap();
    let outer: Value = resp.json().await.unwrap();
    assert_eq!(outer["status"], "ACCESS_DENIED");
}

#[tokio::test]
async fn the_widevine_key_is_the_cpix_key_of_the_same_slot() {
    let server = start().await;
    let wv = post(&server, &shaka_request(b"shared-1")).await;
    let sd = check_track(&wv["tracks"][0], "shared-1");
    let audio = check_track(&wv["tracks"][4], "shared-1");
    // A kid-override CPIX request naming fresh kids with intendedTrackType SD and AUDIO.
    let cpix = |period: &str, filter: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<cpix:CPIX contentId="shared-1" version="2.3" xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc">
  <cpix:ContentKeyList>
    <cpix:ContentKey kid="11111111-2222-3333-4444-555555555555"/>
    <cpix:ContentKey kid="66666666-7777-8888-9999-aaaaaaaaaaaa"/>
  </cpix:ContentKeyList>
  {period}
  <cpix:ContentKeyUsageRuleList>
    <cpix:ContentKeyUsageRule kid="11111111-2222-3333-4444-555555555555" intendedTrackType="SD">{filter}</cpix:ContentKeyUsageRule>
    <cpix:ContentKeyUsageRule kid="66666666-7777-8888-9999-aaaaaaaaaaaa" intendedTrackType="AUDIO">{filter}</cpix:ContentKeyUsageRule>
  </cpix:ContentKeyUsageRuleList>
</cpix:CPIX>"#
        )
    };
    let doc = ok_document(server.post_cpix("wvco", cpix("", "")).await).await;
    let keys = plain_keys(&doc);
    assert_eq!(keys[0].0.as_bytes().as_slice(), sd.1.as_slice());
    assert_eq!(
        (keys[0].1.as_slice(), keys[0].2.as_slice()),
        (sd.2.as_slice(), sd.3.as_slice())
    );
    assert_eq!(keys[1].0.as_bytes().as_slice(), audio.1.as_slice());
    assert_eq!(keys[1].1.as_slice(), audio.2.as_slice());

    // A CPIX period index is the Widevine crypto_period_index.
    let live = cpix(
        r#"<cpix:ContentKeyPeriodList><cpix:ContentKeyPeriod id="p7" index="7"/></cpix:ContentKeyPeriodList>"#,
        r#"<cpix:KeyPeriodFilter periodId="p7"/>"#,
    );
    let doc = ok_document(server.post_cpix("wvco", live).await).await;
    let live_keys = plain_keys(&doc);
    let mut rotating = shaka_request(b"shared-1");
    rotating["first_crypto_period_index"] = json!(7);
    rotating["crypto_period_count"] = json!(1);
    let wv = post(&server, &rotating).await;
    let sd7 = check_track(&wv["tracks"][0], "shared-1");
    assert_eq!(live_keys[0].0.as_bytes().as_slice(), sd7.1.as_slice());
    assert_eq!(live_keys[0].1.as_slice(), sd7.2.as_slice());
    assert_ne!(sd7.1, sd.1);
}

#[tokio::test]
async fn pssh_data_requests_look_keys_up_by_key_id() {
    let server = start().await;
    let first = post(&server, &shaka_request(b"movie-9")).await;
    let hd = check_track(&first["tracks"][1], "movie-9");
    let data = first["tracks"][1]["pssh"][0]["data"].as_str().unwrap();
    let lookup = json!({
        "pssh_data": data,
        "tracks": [{"type": "SD"}, {"type": "HD"}, {"type": "UHD1"}, {"type": "UHD2"}, {"type": "AUDIO"}],
        "drm_types": ["WIDEVINE"],
    });
    let found = post(&server, &lookup).await;
    assert_eq!(found["status"], "OK", "{found}");
    let tracks = found["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 1);
    let t = check_track(&tracks[0], "movie-9");
    assert_eq!((t.0.as_str(), &t.1, &t.2), ("HD", &hd.1, &hd.2));
    assert_eq!(found["content_id"], B64.encode("movie-9"));

    // A Widevine pssh naming a key keyplex never issued.
    let unknown = WidevinePsshData {
        key_id: vec![vec![0x42; 16]],
        ..WidevinePsshData::default()
    };
    let lookup = json!({"pssh_data": B64.encode(unknown.to_bytes())});
    let (_, resp) = post_raw(&server, "wvco", signed_body(&lookup)).await;
    assert_eq!(resp["status"], "ASSET_MISSING_KEY", "{resp}");
    // A pssh with only a content id asks for that content's keys.
    let by_content = WidevinePsshData {
        content_id: Some(b"movie-9".to_vec()),
        ..WidevinePsshData::default()
    };
    let lookup =
        json!({"pssh_data": B64.encode(by_content.to_bytes()), "tracks": [{"type": "HD"}]});
    let resp = post(&server, &lookup).await;
    assert_eq!(resp["tracks"][0]["key_id"], first["tracks"][1]["key_id"]);
    let lookup = json!({"pssh_data": "AAEC", "tracks": [{"type": "HD"}]});
    let (_, resp) = post_raw(&server, "wvco", signed_body(&lookup)).await;
    assert_eq!(resp["status"], "INVALID_WIDEVINE_PSSH", "{resp}");
}

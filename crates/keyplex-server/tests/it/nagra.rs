//! NAGRA-style key-and-signalization JSON (`/cks-ws-keyAndSignalization/key` and `/cmaf`):
//! the CMAF table, signaling per mode, supplied keys, time-based rotation, auth, errors, and
//! key identity shared with GET-style CPIX and CPIX with kid override.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_drm::pssh::PsshBox;
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::cpix::{CK, COMMON, FP, PR, WV, ok_document, plain_keys};

pub const PRM: &str = "adb41c24-2dbf-4a6d-958b-4457c0d27b95";
pub const FP_LEGACY: &str = "29701fe4-3cc7-4a34-8c5b-ae90c7439a47";
/// "PRM-template-data", the PRM pssh data of the test tenants.
pub const PRM_DATA_B64: &str = "UFJNLXRlbXBsYXRlLWRhdGE=";

/// Tenants for the key-and-signalization, GET-CPIX and Harmonic tests:
/// * `vod`: kid override, GET token (also in the path), PRM template, no key rotation;
/// * `live`: 60-second crypto periods, PRM template without HLS;
/// * `fast`: 2-second crypto periods (pre-delivery test);
/// * `plain`: packager-named kids, GET token in the header only, no PRM template.
pub const CONFIG: &str = r#"
[tenants.vod]
basic = [{ user = "packager", password = "s3cret-vod" }]
jwt = { hs256_secret = "a-long-shared-secret-for-vod" }
kid_override = true
get_token = "get-token-of-vod-0123456789"
get_token_in_path = true
playready_la_url = "https://vod.example/prls/contentlicenseservice/v1/licenses"
widevine_provider = "vod"
prm_template = { pssh_data_base64 = "UFJNLXRlbXBsYXRlLWRhdGE=", hls_key_uri = "prm://vod.example/keys/{kid}?content={content_id}", content_protection = '<ContentProtection schemeIdUri="urn:uuid:adb41c24-2dbf-4a6d-958b-4457c0d27b95" value="Nagra PRM" cenc:default_KID="{kid}"><cenc:pssh>{pssh}</cenc:pssh></ContentProtection>' }

[tenants.live]
basic = [{ user = "packager", password = "s3cret-live" }]
crypto_period_seconds = 60
get_token = "get-token-of-live-0123456789"
prm_template = { pssh_data_base64 = "UFJNLXRlbXBsYXRlLWRhdGE=" }

[tenants.fast]
basic = [{ user = "packager", password = "s3cret-fast" }]
crypto_period_seconds = 2

[tenants.plain]
basic = [{ user = "packager", password = "s3cret-plain" }]
get_token = "get-token-of-plain-0123456789"
"#;

pub async fn start() -> TestServer {
    TestServer::start_with(CONFIG, |_| {}).await
}

/// A request body: `mode` "" = no streaming mode, `emi` None = absent.
pub fn body(content: &str, mode: &str, emi: Option<u32>, drms: Option<&[&str]>) -> Value {
    let mut profile = json!({ "distributionMode": "VOD" });
    if !mode.is_empty() {
        profile["streamingMode"] = json!(mode);
    }
    if let Some(e) = emi {
        profile["emi"] = json!(e);
    }
    let mut b = json!({ "drmContent": { "drmContentId": content, "profile": profile } });
    if let Some(d) = drms {
        b["drmList"] = json!(d);
    }
    b
}

pub async fn post(server: &TestServer, tenant: &str, api: &str, body: &Value) -> (u16, Value) {
    let resp = server
        .client
        .post(server.url(&format!("/{tenant}/cks-ws-keyAndSignalization/{api}")))
        .basic_auth("packager", Some(format!("s3cret-{tenant}")))
        .json(body)
        .send()
        .await
        .unwrap();
    json_answer(resp).await
}

async fn json_answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    assert_eq!(ctype.as_deref(), Some("application/json"), "body: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// Asserts a 200 with `status` OK and returns the body.
pub async fn ok(server: &TestServer, tenant: &str, api: &str, body: &Value) -> Value {
    let (status, v) = post(server, tenant, api, body).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("OK")), "{v}");
    assert!(v.get("errorMessage").is_none(), "{v}");
    v
}

/// Asserts an error in the NAGRA shape: HTTP status, `status` code, no key, no signaling.
async fn rejected(
    server: &TestServer,
    tenant: &str,
    api: &str,
    body: &Value,
    http: u16,
    code: &str,
) -> String {
    let (status, v) = post(server, tenant, api, body).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (http, Some(code)),
        "{body} → {v}"
    );
    assert!(v.get("contentKey").is_none() && v.get("drmSignalization").is_none());
    v["errorMessage"].as_str().expect("errorMessage").to_owned()
}

/// (keyId, key bytes, iv bytes) of `contentKey`.
pub fn content_key(v: &Value) -> (String, Vec<u8>, Vec<u8>) {
    let ck = &v["contentKey"];
    let key = B64
        .decode(ck["keyValue"].as_str().expect("keyValue"))
        .unwrap();
    let iv = B64.decode(ck["iv"].as_str().expect("iv")).unwrap();
    assert_eq!((key.len(), iv.len()), (16, 16));
    (ck["keyId"].as_str().unwrap().to_owned(), key, iv)
}

/// (systemId, has DASH fields, has HLS fields) of each `drmSignalization` entry, in order.
fn shape(v: &Value) -> Vec<(String, bool, bool)> {
    v["drmSignalization"]
        .as_array()
        .expect("drmSignalization")
        .iter()
        .map(|d| {
            let dash = d.get("pssh").is_some() || d.get("contentProtection").is_some();
            let hls = d.get("keyUri").is_some() || d.get("extXKey").is_some();
            if dash {
                assert!(d.get("contentProtection").is_some(), "{d}");
            }
            if hls {
                assert!(
                    d.get("keyUri").is_some() && d.get("extXKey").is_some(),
                    "{d}"
                );
            }
            (d["systemId"].as_str().unwrap().to_owned(), dash, hls)
        })
        .collect()
}

fn entry<'a>(v: &'a Value, system: &str) -> &'a Value {
    v["drmSignalization"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["systemId"] == system)
        .unwrap_or_else(|| panic!("no {system} in {v}"))
}

fn pssh(v: &Value, system: &str) -> PsshBox {
    let b = B64
        .decode(entry(v, system)["pssh"].as_str().expect("pssh"))
        .unwrap();
    let (b, used) = PsshBox::parse(&b).unwrap();
    assert_eq!(b.system_id.to_string(), system);
    assert!(used > 0);
    b
}

fn widevine_scheme(v: &Value) -> Option<keyplex_types::EncryptionScheme> {
    keyplex_drm::widevine::WidevinePsshData::decode_from(&pssh(v, WV).data)
        .unwrap()
        .scheme()
}

fn s(x: &str, dash: bool, hls: bool) -> (String, bool, bool) {
    (x.to_owned(), dash, hls)
}

#[tokio::test]
async fn cmaf_answers_the_table_for_each_streaming_mode() {
    let server = start().await;

    // No streaming mode: FPS, PR, PRM, WV; HLS for FPS/PRM/WV, DASH for PR/PRM/WV.
    let v = ok(
        &server,
        "vod",
        "cmaf",
        &body("cmaf-all", "", Some(16426), None),
    )
    .await;
    assert_eq!(
        shape(&v),
        vec![
            s(FP, false, true),
            s(PR, true, false),
            s(PRM, true, true),
            s(WV, true, true)
        ]
    );
    let (kid, _, _) = content_key(&v);
    assert_eq!(
        widevine_scheme(&v),
        Some(keyplex_types::EncryptionScheme::Cbcs)
    );
    let fp = entry(&v, FP);
    assert_eq!(fp["keyUri"], format!("skd://{kid}"));
    assert!(
        fp["extXKey"]
            .as_str()
            .unwrap()
            .starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://")
    );
    assert!(
        entry(&v, WV)["extXKey"]
            .as_str()
            .unwrap()
            .starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,")
    );
    let pr_cp = entry(&v, PR)["contentProtection"].as_str().unwrap();
    assert!(
        pr_cp.starts_with(
            r#"<ContentProtection schemeIdUri="urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95" value="MSPR 2.0">"#
        ),
        "{pr_cp}"
    );
    // PRM comes from the tenant's template, placeholders filled in.
    let prm = pssh(&v, PRM);
    assert_eq!(
        (prm.version, B64.encode(&prm.data)),
        (0, PRM_DATA_B64.into())
    );
    let prm_entry = entry(&v, PRM);
    assert_eq!(
        prm_entry["contentProtection"],
        format!(
            r#"<ContentProtection schemeIdUri="urn:uuid:adb41c24-2dbf-4a6d-958b-4457c0d27b95" value="Nagra PRM" cenc:default_KID="{kid}"><cenc:pssh>{}</cenc:pssh></ContentProtection>"#,
            prm_entry["pssh"].as_str().unwrap()
        )
    );
    assert_eq!(
        prm_entry["keyUri"],
        format!("prm://vod.example/keys/{kid}?content=cmaf-all")
    );
    assert!(
        prm_entry["extXKey"]
            .as_str()
            .unwrap()
            .contains(r#"KEYFORMAT="urn:uuid:adb41c24-2dbf-4a6d-958b-4457c0d27b95""#)
    );

    // EMI absent is CBCS too; HLS: FPS, PRM, WV with HLS signaling only.
    let v = ok(&server, "vod", "cmaf", &body("cmaf-hls", "HLS", None, None)).await;
    assert_eq!(
        shape(&v),
        vec![s(FP, false, true), s(PRM, false, true), s(WV, false, true)]
    );
    content_key(&v);

    // DASH: PRM, PR, WV with DASH signaling only, cbcs (PlayReady 4.3).
    let v = ok(
        &server,
        "vod",
        "cmaf",
        &body("cmaf-dash", "DASH", Some(16426), None),
    )
    .await;
    assert_eq!(
        shape(&v),
        vec![s(PRM, true, false), s(PR, true, false), s(WV, true, false)]
    );
    assert_eq!(
        widevine_scheme(&v),
        Some(keyplex_types::EncryptionScheme::Cbcs)
    );
    let pro = keyplex_drm::playready::PlayReadyObject::parse(&pssh(&v, PR).data).unwrap();
    assert_eq!(
        pro.header().unwrap().unwrap().version,
        keyplex_drm::playready::PlayReadyHeaderVersion::V4_3
    );

    // A subset is answered as asked, in the order asked; FairPlay's legacy id counts as FPS.
    let v = ok(
        &server,
        "vod",
        "cmaf",
        &body("cmaf-sub", "", None, Some(&[WV, FP_LEGACY])),
    )
    .await;
    assert_eq!(
        shape(&v),
        vec![s(WV, true, true), s(FP_LEGACY, false, true)]
    );
    let v = ok(
        &server,
        "vod",
        "cmaf",
        &body("cmaf-sub", "HLS", None, Some(&[PRM])),
    )
    .await;
    assert_eq!(shape(&v), vec![s(PRM, false, true)]);
    let v = ok(
        &server,
        "vod",
        "cmaf",
        &body("cmaf-sub", "DASH", None, Some(&[PR, WV])),
    )
    .await;
    assert_eq!(shape(&v), vec![s(PR, true, false), s(WV, true, false)]);
    // An empty drmList is the "Empty" row of the table.
    let v = ok(
        &server,
        "vod",
        "cmaf",
        &body("cmaf-sub", "DASH", None, Some(&[])),
    )
    .await;
    assert_eq!(shape(&v).len(), 3);
}

#[tokio::test]
async fn cmaf_rejects_every_combination_outside_the_table() {
    let server = start().await;
    let random_id = "11111111-2222-4333-8444-555555555555";
    for mode in ["", "HLS", "DASH"] {
        for emi in [0, 1, 16421, 16425, 16427] {
            let msg = rejected(
                &server,
                "vod",
                "cmaf",
                &body("cmaf-bad", mode, Some(emi), None),
                400,
                "UNSUPPORTED_EMI",
            )
            .await;
            assert!(msg.contains(&emi.to_string()), "{msg}");
        }
        let outside: &[&str] = match mode {
            "" => &[CK, COMMON],
            "HLS" => &[PR, CK],
            _ => &[FP, FP_LEGACY, CK],
        };
        for drm in outside {
            rejected(
                &server,
                "vod",
                "cmaf",
                &body("cmaf-bad", mode, Some(16426), Some(&[WV, drm])),
                400,
                "UNSUPPORTED_DRM",
            )
            .await;
        }
        let msg = rejected(
            &server,
            "vod",
            "cmaf",
            &body("cmaf-bad", mode, None, Some(&[random_id])),
            400,
            "UNSUPPORTED_DRM",
        )
        .await;
        assert!(msg.contains(random_id), "{msg}");
        rejected(
            &server,
            "vod",
            "cmaf",
            &body("cmaf-bad", mode, None, Some(&["widevine"])),
            400,
            "INVALID_REQUEST",
        )
        .await;
    }
    rejected(
        &server,
        "vod",
        "cmaf",
        &body("cmaf-bad", "SMOOTH", None, None),
        400,
        "INVALID_REQUEST",
    )
    .await;
    // PRM in HLS with a template without hls_key_uri: the template's box as a data URI.
    let v = ok(
        &server,
        "live",
        "cmaf",
        &body("cmaf-prm-hls", "HLS", None, Some(&[PRM])),
    )
    .await;
    let line = entry(&v, PRM)["extXKey"].as_str().unwrap().to_owned();
    assert!(
        line.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,"),
        "{line}"
    );
}

/// The PRM pssh data keyplex writes without a template: base64url of compact JSON with the
/// content id and the key id (the form the public parsers pssh-box and SwPSSH read).
fn default_prm_data(v: &Value) -> Value {
    let data = pssh(v, PRM).data;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(String::from_utf8(data).unwrap().trim_end_matches('='))
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[tokio::test]
async fn prm_is_signaled_by_default_and_by_template() {
    let server = start().await;
    // The rule table lists PRM for every mode: a tenant without a template signals it too.
    let v = ok(&server, "plain", "cmaf", &body("prm-1", "", None, None)).await;
    assert_eq!(
        shape(&v),
        vec![
            s(FP, false, true),
            s(PR, true, false),
            s(PRM, true, true),
            s(WV, true, true)
        ]
    );
    let data = default_prm_data(&v);
    assert_eq!(data["contentId"], "prm-1");
    assert_eq!(data["keyId"], content_key(&v).0);
    let v = ok(
        &server,
        "plain",
        "key",
        &body("prm-2", "HLS", None, Some(&[PRM])),
    )
    .await;
    let line = entry(&v, PRM)["extXKey"].as_str().unwrap().to_owned();
    assert!(
        line.contains("data:text/plain;base64,")
            && line.contains(r#"KEYFORMAT="urn:uuid:adb41c24-2dbf-4a6d-958b-4457c0d27b95""#),
        "{line}"
    );
    for (api, mode) in [("cmaf", "DASH"), ("key", "")] {
        let v = ok(
            &server,
            "plain",
            api,
            &body("prm-2", mode, None, Some(&[PRM, WV])),
        )
        .await;
        assert_eq!(default_prm_data(&v)["contentId"], "prm-2", "{api} {mode}");
    }
    // With a template but without hls_key_uri, PRM signals the template's data.
    let v = ok(
        &server,
        "live",
        "key",
        &body("prm-1", "DASH", None, Some(&[PRM])),
    )
    .await;
    assert_eq!(shape(&v), vec![s(PRM, true, false)]);
    assert_eq!(B64.encode(pssh(&v, PRM).data), PRM_DATA_B64);
    assert!(
        entry(&v, PRM)["contentProtection"]
            .as_str()
            .unwrap()
            .contains("<cenc:pssh>"),
        "default element carries the pssh"
    );
}

#[tokio::test]
async fn key_api_signals_dash_as_cenc_and_hls_as_cbcs() {
    let server = start().await;
    let v = ok(
        &server,
        "plain",
        "key",
        &body("key-dash", "DASH", None, None),
    )
    .await;
    assert_eq!(
        shape(&v),
        vec![s(WV, true, false), s(PR, true, false), s(PRM, true, false)]
    );
    assert_eq!(
        widevine_scheme(&v),
        None,
        "cenc: no protection_scheme field"
    );
    let pro = keyplex_drm::playready::PlayReadyObject::parse(&pssh(&v, PR).data).unwrap();
    assert_eq!(
        pro.header().unwrap().unwrap().version,
        keyplex_drm::playready::PlayReadyHeaderVersion::V4_0
    );
    content_key(&v);

    let v = ok(&server, "vod", "key", &body("key-hls", "HLS", None, None)).await;
    assert_eq!(
        shape(&v),
        vec![s(FP, false, true), s(WV, false, true), s(PRM, false, true)]
    );
    assert!(
        entry(&v, WV)["extXKey"]
            .as_str()
            .unwrap()
            .starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,")
    );

    // No mode: DASH (cenc) for WV/PR/PRM, HLS (cbcs) for FPS/WV/PRM.
    let v = ok(&server, "vod", "key", &body("key-both", "", None, None)).await;
    assert_eq!(
        shape(&v),
        vec![
            s(WV, true, true),
            s(PR, true, false),
            s(FP, false, true),
            s(PRM, true, true)
        ]
    );
    assert_eq!(widevine_scheme(&v), None);
    assert!(
        entry(&v, WV)["extXKey"]
            .as_str()
            .unwrap()
            .starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,")
    );
    // EMI 16426 asks for cbcs on the DASH side too.
    let v = ok(
        &server,
        "vod",
        "key",
        &body("key-both", "DASH", Some(16426), None),
    )
    .await;
    assert_eq!(
        widevine_scheme(&v),
        Some(keyplex_types::EncryptionScheme::Cbcs)
    );

    // Other DRMs keyplex can signal may be listed; ones without the mode's signaling not.
    let v = ok(
        &server,
        "vod",
        "key",
        &body("key-ck", "DASH", None, Some(&[CK, COMMON])),
    )
    .await;
    assert_eq!(shape(&v), vec![s(CK, true, false), s(COMMON, true, false)]);
    rejected(
        &server,
        "vod",
        "key",
        &body("key-ck", "DASH", None, Some(&[FP])),
        400,
        "UNSUPPORTED_DRM",
    )
    .await;
    rejected(
        &server,
        "vod",
        "key",
        &body("key-ck", "HLS", None, Some(&[COMMON])),
        400,
        "UNSUPPORTED_DRM",
    )
    .await;
}

#[tokio::test]
async fn the_same_content_gets_the_same_key_and_iv_every_time() {
    let server = start().await;
    let a = ok(&server, "plain", "key", &body("same-1", "DASH", None, None)).await;
    let b = ok(&server, "plain", "cmaf", &body("same-1", "HLS", None, None)).await;
    let c = ok(&server, "plain", "key", &body("same-1", "", None, None)).await;
    assert_eq!(content_key(&a), content_key(&b));
    assert_eq!(content_key(&a), content_key(&c));
    let other = ok(&server, "plain", "key", &body("same-2", "DASH", None, None)).await;
    assert_ne!(content_key(&a).0, content_key(&other).0);
    assert_ne!(content_key(&a).1, content_key(&other).1);
}

fn with_key(mut b: Value, kid: &str, key: &[u8; 16], iv: Option<&[u8; 16]>) -> Value {
    let mut sk = json!({ "keyId": kid, "keyValue": B64.encode(key) });
    if let Some(iv) = iv {
        sk["iv"] = json!(B64.encode(iv));
    }
    b["scheduledKey"] = sk;
    b
}

#[tokio::test]
async fn supplied_keys_are_stored_not_echoed_and_conflicts_are_409() {
    let server = start().await;
    let kid = "5a5a5a5a-0000-4000-8000-000000000001";
    let key = [0x42u8; 16];
    let iv = [0x24u8; 16];

    // Key and IV supplied: no contentKey in the answer, signaling for the supplied kid.
    let req = with_key(body("sup-1", "DASH", None, None), kid, &key, Some(&iv));
    let v = ok(&server, "plain", "cmaf", &req).await;
    assert!(v.get("contentKey").is_none(), "{v}");
    let text = v.to_string();
    assert!(!text.contains(&B64.encode(key)) && !text.contains(&hex::encode(key)));
    let wv = keyplex_drm::widevine::WidevinePsshData::decode_from(&pssh(&v, WV).data).unwrap();
    assert_eq!(wv.key_ids(), vec![kid.parse().unwrap()]);

    // Retrying the same key (with or without the IV) is not a conflict.
    ok(&server, "plain", "cmaf", &req).await;
    let no_iv = with_key(body("sup-1", "DASH", None, None), kid, &key, None);
    let v = ok(&server, "plain", "cmaf", &no_iv).await;
    // The IV was not supplied in THIS request: it is returned, the key is not.
    assert_eq!(v["contentKey"]["keyId"], kid);
    assert_eq!(v["contentKey"]["iv"], B64.encode(iv));
    assert!(v["contentKey"].get("keyValue").is_none());

    // NAGRA: a supplied key is taken "as is and the key rotation mechanism will not be
    // applied": it is bound to no slot, so a later request that supplies nothing gets
    // keyplex's own key for the content, not the packager's.
    let v = ok(&server, "plain", "key", &body("sup-1", "HLS", None, None)).await;
    assert_ne!(content_key(&v).0, kid);
    assert_ne!(content_key(&v).1, key.to_vec());

    // The same kid with another key or another IV: 409, nothing changes.
    let other_key = with_key(body("sup-1", "DASH", None, None), kid, &[0x43; 16], None);
    let msg = rejected(&server, "plain", "cmaf", &other_key, 409, "KEY_CONFLICT").await;
    assert!(!msg.contains(&B64.encode([0x43u8; 16])), "{msg}");
    let other_iv = with_key(body("sup-1", "DASH", None, None), kid, &key, Some(&[1; 16]));
    rejected(&server, "plain", "cmaf", &other_iv, 409, "KEY_CONFLICT").await;
    // The same kid under another content: 409 (a kid is one key of one content for ever).
    let elsewhere = with_key(body("sup-other", "DASH", None, None), kid, &key, None);
    rejected(&server, "plain", "cmaf", &elsewhere, 409, "KEY_CONFLICT").await;

    // Another supplied key for the same live content (the encryptor's next key): fine, as
    // is a supplied key for content whose slot keyplex already filled.
    let next_kid = "5a5a5a5a-0000-4000-8000-000000000002";
    let next = with_key(
        body("sup-1", "DASH", None, None),
        next_kid,
        &[0x44; 16],
        None,
    );
    let v = ok(&server, "plain", "cmaf", &next).await;
    assert_eq!(v["contentKey"]["keyId"], next_kid);
    ok(&server, "plain", "key", &body("sup-2", "DASH", None, None)).await;
    let late = with_key(
        body("sup-2", "DASH", None, None),
        "5a5a5a5a-0000-4000-8000-000000000003",
        &key,
        None,
    );
    ok(&server, "plain", "key", &late).await;
    // Both supplied keys are kept under their kids: a retry still answers them.
    let v = ok(&server, "plain", "cmaf", &req).await;
    assert!(v.get("contentKey").is_none(), "{v}");
}

const ADMIN: &str = "admin-token-of-the-nagra-tests";

/// The `key.delivered` audit event of `content` (the audit trail is written in batches).
async fn delivery_event(server: &TestServer, tenant: &str, content: &str) -> Value {
    for _ in 0..50 {
        let events: Value = server
            .client
            .get(server.url(&format!(
                "/admin/v1/audit?tenant={tenant}&content_id={content}&action=key.delivered"
            )))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(e) = events["events"].as_array().and_then(|e| e.first()) {
            return e.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no key.delivered event for {content}");
}

/// `scheduledKey.timestamp` as encoders write it (RFC 3339, epoch seconds, epoch
/// milliseconds, as numbers or strings), `drmList` entries as strings or objects with
/// metadata (kept in the audit trail), and the tenant's `max_key_lead_days`.
#[tokio::test]
async fn timestamps_drm_objects_and_lead_days() {
    let server = TestServer::start_with(
        &format!("[admin]\ntoken = \"{ADMIN}\"\n{CONFIG}\n[tenants.lead]\nbasic = [{{ user = \"packager\", password = \"s3cret-lead\" }}]\ncrypto_period_seconds = 60\nmax_key_lead_days = 2\n"),
        |_| {},
    )
    .await;
    let t = now() - now().rem_euclid(60) + 120;
    let stamped = |ts: Value| {
        let mut b = body("ts-1", "DASH", None, None);
        b["scheduledKey"] = json!({ "timestamp": ts });
        b
    };
    let rfc = time::OffsetDateTime::from_unix_timestamp(t + 5)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let first = content_key(&ok(&server, "live", "key", &stamped(json!(rfc))).await);
    for ts in [
        json!(t + 10),
        json!((t + 20).to_string()),
        json!((t + 30) * 1000),
        json!(((t + 40) * 1000 + 999).to_string()),
    ] {
        let same = content_key(&ok(&server, "live", "key", &stamped(ts.clone())).await);
        assert_eq!(same, first, "{ts}: the same 60-second period");
    }
    for bad in [json!("yesterday"), json!(true), json!(i64::MAX)] {
        rejected(
            &server,
            "live",
            "key",
            &stamped(bad),
            400,
            "INVALID_REQUEST",
        )
        .await;
    }

    // drmList: strings and objects mixed; the metadata lands in the audit event.
    let mut b = body("drm-objects", "DASH", None, None);
    b["drmList"] = json!([
        WV,
        { "systemId": PR, "metadata": { "usageRules": ["no-hdmi"] } },
        { "systemId": PRM }
    ]);
    let v = ok(&server, "plain", "key", &b).await;
    assert_eq!(
        shape(&v),
        vec![s(WV, true, false), s(PR, true, false), s(PRM, true, false)]
    );
    let delivered = delivery_event(&server, "plain", "drm-objects").await;
    let detail = delivered["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("no-hdmi") && detail.contains(PR),
        "{detail}"
    );
    let mut bad = body("drm-objects", "DASH", None, None);
    bad["drmList"] = json!([{ "metadata": {} }]);
    rejected(&server, "plain", "key", &bad, 400, "INVALID_REQUEST").await;

    // max_key_lead_days: 2 days for `lead`; the default (31) elsewhere.
    let in_three_days = at(body("lead-1", "DASH", None, None), now() + 3 * 86_400);
    rejected(
        &server,
        "lead",
        "key",
        &in_three_days,
        400,
        "TIMESTAMP_OUT_OF_RANGE",
    )
    .await;
    ok(&server, "live", "key", &in_three_days).await;
    ok(
        &server,
        "lead",
        "key",
        &at(body("lead-1", "DASH", None, None), now() + 86_400),
    )
    .await;
}

#[tokio::test]
async fn rejected_requests_store_nothing() {
    let server = start().await;
    let kid = "6b6b6b6b-0000-4000-8000-000000000001";
    // Rejected after parsing (EMI, then DRM list): the supplied key must not be kept…
    let bad_emi = with_key(
        body("nostore-1", "DASH", Some(7), None),
        kid,
        &[1; 16],
        None,
    );
    rejected(&server, "plain", "cmaf", &bad_emi, 400, "UNSUPPORTED_EMI").await;
    let bad_drm = with_key(
        body("nostore-1", "DASH", None, Some(&[FP])),
        kid,
        &[1; 16],
        None,
    );
    rejected(&server, "plain", "cmaf", &bad_drm, 400, "UNSUPPORTED_DRM").await;
    // …so another key under the same kid is accepted afterwards (a stored [1; 16] would make
    // it a 409), and a retry of it too.
    let good = with_key(body("nostore-1", "DASH", None, None), kid, &[2; 16], None);
    ok(&server, "plain", "cmaf", &good).await;
    ok(&server, "plain", "cmaf", &good).await;
    let other = with_key(body("nostore-1", "DASH", None, None), kid, &[1; 16], None);
    rejected(&server, "plain", "cmaf", &other, 409, "KEY_CONFLICT").await;
}

#[tokio::test]
async fn invalid_requests_are_400_with_a_clear_message() {
    let server = start().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "drmContent is required"),
        (
            json!({ "drmContent": { "profile": { "distributionMode": "VOD" } } }),
            "drmContentId is required",
        ),
        (
            json!({ "drmContent": { "drmContentId": "x-1" } }),
            "drmContent.profile is required",
        ),
        (
            json!({ "drmContent": { "drmContentId": "x-1", "profile": { "streamingMode": "DASH" } } }),
            "distributionMode is required",
        ),
        (
            json!({ "drmContent": { "drmContentId": "x-1", "profile": { "distributionMode": "  " } } }),
            "distributionMode is required",
        ),
        (
            body("bad id/with slash", "DASH", None, None),
            "drmContentId",
        ),
        (
            with_key(
                body("x-1", "DASH", None, None),
                "not-a-uuid",
                &[1; 16],
                None,
            ),
            "keyId",
        ),
        (
            {
                let mut b = body("x-1", "DASH", None, None);
                b["scheduledKey"] = json!({ "keyId": "7c7c7c7c-0000-4000-8000-000000000001" });
                b
            },
            "both keyId and keyValue",
        ),
        (
            {
                let mut b = body("x-1", "DASH", None, None);
                b["scheduledKey"] = json!({ "keyId": "7c7c7c7c-0000-4000-8000-000000000001", "keyValue": B64.encode([9u8; 8]) });
                b
            },
            "keyValue must be 16 bytes",
        ),
        (
            {
                let mut b = body("x-1", "DASH", None, None);
                b["scheduledKey"] = json!({ "iv": B64.encode([9u8; 16]) });
                b
            },
            "iv is only accepted with keyId and keyValue",
        ),
        (
            {
                let mut b = body("x-1", "DASH", None, None);
                b["scheduledKey"] = json!({ "timestamp": "yesterday" });
                b
            },
            "RFC 3339",
        ),
        (
            {
                let mut b = body("x-1", "DASH", None, None);
                b["drmContent"]["profile"]["emi"] = json!("cbcs");
                b
            },
            "emi",
        ),
    ];
    for api in ["key", "cmaf"] {
        for (req, expected) in &cases {
            let msg = rejected(&server, "plain", api, req, 400, "INVALID_REQUEST").await;
            assert!(
                msg.contains(expected),
                "{req} → {msg:?}, expected {expected:?}"
            );
        }
    }
    // Not JSON, empty.
    for raw in ["<xml/>", ""] {
        let resp = server
            .client
            .post(server.url("/plain/cks-ws-keyAndSignalization/key"))
            .basic_auth("packager", Some("s3cret-plain"))
            .body(raw)
            .send()
            .await
            .unwrap();
        let (status, v) = json_answer(resp).await;
        assert_eq!(
            (status, v["status"].as_str()),
            (400, Some("INVALID_REQUEST"))
        );
    }
    // EMI as a string of digits is tolerated.
    let mut b = body("x-2", "DASH", None, None);
    b["drmContent"]["profile"]["emi"] = json!("16426");
    ok(&server, "plain", "cmaf", &b).await;
}

#[tokio::test]
async fn body_over_the_limit_is_413_in_the_nagra_shape() {
    let server = TestServer::start_with(CONFIG, |c| c.server.max_body_bytes = 2048).await;
    let mut b = body("big-1", "DASH", None, None);
    b["padding"] = json!("x".repeat(4096));
    let (status, v) = post(&server, "plain", "key", &b).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (413, Some("REQUEST_TOO_LARGE"))
    );
}

#[tokio::test]
async fn authentication_failures() {
    let server = start().await;
    let url = server.url("/vod/cks-ws-keyAndSignalization/cmaf");
    let b = body("auth-1", "DASH", None, None);

    let resp = server.client.post(&url).json(&b).send().await.unwrap();
    assert!(resp.headers().contains_key("www-authenticate"));
    let (status, v) = json_answer(resp).await;
    assert_eq!((status, v["status"].as_str()), (401, Some("UNAUTHORIZED")));

    let resp = server
        .client
        .post(&url)
        .basic_auth("packager", Some("wrong"))
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(json_answer(resp).await.1["status"], "UNAUTHORIZED");

    // Another tenant's genuine credentials: 403.
    let resp = server
        .client
        .post(&url)
        .basic_auth("packager", Some("s3cret-plain"))
        .json(&b)
        .send()
        .await
        .unwrap();
    let (status, v) = json_answer(resp).await;
    assert_eq!((status, v["status"].as_str()), (403, Some("FORBIDDEN")));

    // The SSP AuthN token: a JWT in nv-authorizations.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = |exp: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({ "sub": "encoder-1", "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(b"a-long-shared-secret-for-vod"),
        )
        .unwrap()
    };
    let resp = server
        .client
        .post(&url)
        .header("nv-authorizations", token(now + 300))
        .json(&b)
        .send()
        .await
        .unwrap();
    let (status, v) = json_answer(resp).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("OK")), "{v}");
    let resp = server
        .client
        .post(&url)
        .header("nv-authorizations", token(now - 300))
        .json(&b)
        .send()
        .await
        .unwrap();
    let (status, v) = json_answer(resp).await;
    assert_eq!((status, v["status"].as_str()), (401, Some("UNAUTHORIZED")));
    assert!(v["errorMessage"].as_str().unwrap().contains("expired"));

    // Unknown tenant: 404.
    let resp = server
        .client
        .post(server.url("/nobody/cks-ws-keyAndSignalization/key"))
        .basic_auth("packager", Some("s3cret-vod"))
        .json(&b)
        .send()
        .await
        .unwrap();
    let (status, v) = json_answer(resp).await;
    assert_eq!((status, v["status"].as_str()), (404, Some("NOT_FOUND")));
}

fn at(mut b: Value, unix: i64) -> Value {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    b["scheduledKey"] = json!({ "timestamp": t });
    b
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn time_based_rotation_follows_the_timestamp() {
    let server = start().await;
    // A period boundary ten minutes from now (60-second periods).
    let start = now() - now().rem_euclid(60) + 600;
    let key_at = |t: i64| {
        let server = &server;
        async move {
            content_key(
                &ok(
                    server,
                    "live",
                    "key",
                    &at(body("live-1", "DASH", None, None), t),
                )
                .await,
            )
        }
    };
    let first = key_at(start + 1).await;
    assert_eq!(key_at(start + 59).await, first, "same period, same key");
    let next = key_at(start + 60).await;
    assert_ne!(next.0, first.0, "next period, new kid");
    assert_ne!(next.1, first.1, "next period, new key");
    assert_eq!(
        key_at(start + 30).await,
        first,
        "earlier periods keep their key"
    );

    // The period is (content, ALL, floor(t / 60)): GET-style CPIX with ?period= agrees.
    let resp = server
        .client
        .get(server.url(&format!(
            "/live/cpix/dash/live-1?period={}",
            (start + 60) / 60
        )))
        .bearer_auth("get-token-of-live-0123456789")
        .send()
        .await
        .unwrap();
    let doc = ok_document(resp).await;
    let (kid, key, iv) = plain_keys(&doc)[0];
    assert_eq!(
        (kid.to_string(), key.to_vec(), iv.to_vec()),
        next,
        "NAGRA and GET-CPIX share the slot"
    );

    // Timestamps far from now are refused.
    for t in [now() + 40 * 86_400, now() - 40 * 86_400] {
        rejected(
            &server,
            "live",
            "key",
            &at(body("live-1", "DASH", None, None), t),
            400,
            "TIMESTAMP_OUT_OF_RANGE",
        )
        .await;
    }
    // A tenant without rotation ignores the timestamp: one VOD key.
    let a = ok(
        &server,
        "plain",
        "key",
        &at(body("vod-ts", "DASH", None, None), now()),
    )
    .await;
    let b = ok(
        &server,
        "plain",
        "key",
        &at(body("vod-ts", "DASH", None, None), now() + 3600),
    )
    .await;
    assert_eq!(content_key(&a), content_key(&b));
}

#[tokio::test]
async fn a_future_timestamp_pre_delivers_the_key_of_that_time() {
    let server = start().await;
    // `fast` rotates every 2 seconds: pre-deliver the key of the period after next, wait for
    // that period and ask "now", without a timestamp. A machine too loaded to stay inside one
    // 2-second period gets two more tries.
    for _ in 0..3 {
        let target_period = now() / 2 + 2;
        let content = format!("fast-{target_period}");
        let pre = content_key(
            &ok(
                &server,
                "fast",
                "cmaf",
                &at(body(&content, "HLS", None, None), target_period * 2),
            )
            .await,
        );
        while now() / 2 < target_period {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let v = ok(&server, "fast", "cmaf", &body(&content, "HLS", None, None)).await;
        if now() / 2 == target_period {
            assert_eq!(content_key(&v), pre);
            return;
        }
    }
    panic!("could not stay within one 2-second key period three times");
}

#[tokio::test]
async fn the_key_is_the_same_for_nagra_get_cpix_and_cpix_with_kid_override() {
    let server = start().await;
    let nagra =
        content_key(&ok(&server, "vod", "key", &body("shared-1", "DASH", None, None)).await);

    let resp = server
        .client
        .get(server.url("/vod/cpix/dash/shared-1"))
        .bearer_auth("get-token-of-vod-0123456789")
        .send()
        .await
        .unwrap();
    let (kid, key, iv) = plain_keys(&ok_document(resp).await)[0];
    assert_eq!((kid.to_string(), key.to_vec(), iv.to_vec()), nagra);

    // CPIX with kid override (tenant `vod`), intendedTrackType ALL, VOD: the packager's kid
    // is replaced by the slot's.
    let packager_kid = "8d8d8d8d-0000-4000-8000-000000000001";
    let req = format!(
        r#"<cpix:CPIX contentId="shared-1" version="2.3" xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"><cpix:ContentKeyList><cpix:ContentKey kid="{packager_kid}" commonEncryptionScheme="cenc"/></cpix:ContentKeyList><cpix:DRMSystemList>{}</cpix:DRMSystemList><cpix:ContentKeyUsageRuleList><cpix:ContentKeyUsageRule kid="{packager_kid}" intendedTrackType="ALL"/></cpix:ContentKeyUsageRuleList></cpix:CPIX>"#,
        crate::cpix::drm(WV, packager_kid)
    );
    let doc = ok_document(server.post_cpix("vod", req).await).await;
    let (kid, key, iv) = plain_keys(&doc)[0];
    assert_eq!((kid.to_string(), key.to_vec(), iv.to_vec()), nagra);

    // The other way round: a key first created by GET-CPIX is the one NAGRA answers.
    let resp = server
        .client
        .get(server.url("/plain/cpix/hls/shared-2"))
        .bearer_auth("get-token-of-plain-0123456789")
        .send()
        .await
        .unwrap();
    let (kid, key, iv) = plain_keys(&ok_document(resp).await)[0];
    let nagra = content_key(&ok(&server, "plain", "cmaf", &body("shared-2", "", None, None)).await);
    assert_eq!((kid.to_string(), key.to_vec(), iv.to_vec()), nagra);
}

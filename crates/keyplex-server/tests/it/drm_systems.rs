//! Tenant-defined DRM systems (`/admin/v1/tenants/{id}/drm-systems`): defined, changed and
//! removed through the admin API, each change answered by the very next key request; a SPEKE
//! v2 request for Widevine, PlayReady and Irdeto answered for all three; NAGRA's `drmList`
//! and the GET-style form answering a defined system; refusals with clear messages.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_cpix::model::{CpixDocument, Playlist};
use keyplex_drm::pssh::PsshBox;
use keyplex_types::KeyId;
use serde_json::{Value, json};

use crate::admin::ADMIN_TOKEN;
use crate::common::{ACME_CONFIG, TestServer, fixture};

const IRDETO: &str = "80a6be7e-1448-4c37-9e70-d5aebe04c8d2";
const WV: &str = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed";
const PR: &str = "9a04f079-9840-4286-ab92-e65be0885f95";
const PRM: &str = "adb41c24-2dbf-4a6d-958b-4457c0d27b95";
const VIDEO_KID: &str = "6f0b7a52-1c8e-4a2c-9d1f-3b2e4c5d6a71";
const PATH: &str = "/admin/v1/tenants/acme/drm-systems/irdeto";
const ENC_TOKEN: &str = "enc-token-of-acme2-0123456789";

async fn start() -> TestServer {
    let config = format!(
        "[admin]\ntoken = \"{ADMIN_TOKEN}\"\n{ACME_CONFIG}\n[tenants.acme2]\nbasic = [{{ user = \"packager\", password = \"s3cret-acme2\" }}]\nget_token = \"get-token-of-acme2-0123456789\"\nenc_token = \"{ENC_TOKEN}\"\n"
    );
    TestServer::start_with(&config, |_| {}).await
}

async fn admin(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, server.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
    };
    (status, value)
}

fn irdeto() -> Value {
    json!({
        "system_id": IRDETO,
        "pssh_version": 1,
        "pssh_data": "{kid_base64}",
        "pssh_data_encoding": "utf8",
        "dash_value": "Irdeto",
        "hls_keyformat": "com.irdeto.example",
        "hls_uri": "skd://{kid_hex}",
        "la_url": "https://licence.irdeto.example/",
        "formats": ["dash"],
    })
}

async fn speke_v2(server: &TestServer, tenant: &str) -> (u16, String) {
    let resp = server
        .client
        .post(server.url(&format!("/{tenant}/speke/v2")))
        .basic_auth("packager", Some(format!("s3cret-{tenant}")))
        .header("content-type", "application/xml")
        .header("x-speke-version", "2.0")
        .body(fixture("speke_v2_widevine_playready_irdeto.xml"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn pssh_of(doc: &CpixDocument, system: &str, kid: &str) -> PsshBox {
    let drm = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == system && d.kid.as_written == kid)
        .unwrap_or_else(|| panic!("no DRMSystem {system} for {kid}"));
    let bytes = B64.decode(drm.pssh.as_deref().expect("PSSH")).unwrap();
    let (pssh, used) = PsshBox::parse(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    pssh
}

#[tokio::test]
async fn defining_changing_and_removing_take_effect_on_the_next_request() {
    let server = start().await;
    // Undefined: today's clear 4xx, naming the id.
    let (status, text) = speke_v2(&server, "acme").await;
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains(&format!("unknown DRM system id {IRDETO}")),
        "{text}"
    );

    // Defined: all three DRMs answered; the Irdeto box carries the id and the expanded data.
    let (status, answer) = admin(&server, reqwest::Method::PUT, PATH, Some(irdeto())).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        (answer["name"].as_str(), answer["source"].as_str()),
        (Some("irdeto"), Some("admin"))
    );
    let (status, text) = speke_v2(&server, "acme").await;
    assert_eq!(status, 200, "{text}");
    let doc = keyplex_cpix::read_document(text.as_bytes()).unwrap();
    let drms = doc.drm_systems.as_ref().unwrap();
    assert_eq!(drms.len(), 6);
    for drm in drms {
        assert!(
            drm.pssh.as_deref().is_some_and(|p| !p.is_empty()),
            "{}: PSSH answered",
            drm.system_id.as_written
        );
        let cpd = B64
            .decode(drm.content_protection_data.as_deref().unwrap())
            .unwrap();
        assert!(String::from_utf8(cpd).unwrap().contains("<cenc:pssh"));
    }
    assert_eq!(pssh_of(&doc, WV, VIDEO_KID).system_id.to_string(), WV);
    assert_eq!(pssh_of(&doc, PR, VIDEO_KID).system_id.to_string(), PR);
    let kid: KeyId = VIDEO_KID.parse().unwrap();
    let irdeto_box = pssh_of(&doc, IRDETO, VIDEO_KID);
    assert_eq!(irdeto_box.system_id.to_string(), IRDETO);
    assert_eq!(irdeto_box.version, 1);
    assert_eq!(irdeto_box.key_ids, vec![kid]);
    assert_eq!(irdeto_box.data, B64.encode(kid.as_bytes()).into_bytes());
    let irdeto_entry = drms
        .iter()
        .find(|d| d.system_id.as_written == IRDETO && d.kid.as_written == VIDEO_KID)
        .unwrap();
    let media = irdeto_entry
        .hls_signaling
        .iter()
        .find(|h| h.playlist == Some(Playlist::Media))
        .unwrap();
    let line = String::from_utf8(B64.decode(&media.value).unwrap()).unwrap();
    assert!(
        line.starts_with(&format!(
            "#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI=\"skd://{}\"",
            kid.to_hex()
        )) && line.contains(r#"KEYFORMAT="com.irdeto.example""#),
        "{line}"
    );

    // Changed: the next request gets the new signaling for the same stored key.
    let changed = json!({
        "system_id": IRDETO,
        "pssh_data": "0801{kid_hex}",
        "pssh_data_encoding": "hex",
        "dash_value": "Irdeto",
    });
    let (status, answer) = admin(&server, reqwest::Method::PUT, PATH, Some(changed)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, text) = speke_v2(&server, "acme").await;
    assert_eq!(status, 200, "{text}");
    let doc = keyplex_cpix::read_document(text.as_bytes()).unwrap();
    let irdeto_box = pssh_of(&doc, IRDETO, VIDEO_KID);
    assert_eq!(irdeto_box.version, 0);
    let mut expected = vec![0x08, 0x01];
    expected.extend_from_slice(kid.as_bytes());
    assert_eq!(irdeto_box.data, expected);
    let irdeto_entry = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == IRDETO)
        .unwrap();
    assert!(
        irdeto_entry
            .hls_signaling
            .iter()
            .all(|h| h.value.is_empty()),
        "without hls_keyformat the asked HLS elements stay empty"
    );

    // Listed, one by one, and in the audit trail.
    let (status, list) = admin(
        &server,
        reqwest::Method::GET,
        "/admin/v1/tenants/acme/drm-systems",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["drm_systems"][0]["name"], "irdeto");
    assert_eq!(list["drm_systems"][0]["pssh_data_encoding"], "hex");
    let (status, one) = admin(&server, reqwest::Method::GET, PATH, None).await;
    assert_eq!((status, one["system_id"].as_str()), (200, Some(IRDETO)));
    let (_, audit) = admin(
        &server,
        reqwest::Method::GET,
        "/admin/v1/audit?tenant=acme&action=admin.tenant_changed",
        None,
    )
    .await;
    let details: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("drm system irdeto defined")),
        "{audit}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("drm system irdeto changed")),
        "{audit}"
    );

    // Removed: the id is unknown again from the next request on.
    let (status, _) = admin(&server, reqwest::Method::DELETE, PATH, None).await;
    assert_eq!(status, 204);
    let (status, text) = speke_v2(&server, "acme").await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("unknown DRM system id"), "{text}");
    let (status, _) = admin(&server, reqwest::Method::DELETE, PATH, None).await;
    assert_eq!(status, 404);
    let (_, audit) = admin(
        &server,
        reqwest::Method::GET,
        "/admin/v1/audit?tenant=acme&action=admin.tenant_changed",
        None,
    )
    .await;
    assert!(
        audit.to_string().contains("drm system irdeto removed"),
        "{audit}"
    );
    // Another tenant never saw it.
    let (status, text) = speke_v2(&server, "acme2").await;
    assert_eq!(status, 422, "{text}");
    server.stop().await;
}

#[tokio::test]
async fn the_admin_api_refuses_what_cannot_be_served_with_clear_messages() {
    let server = start().await;
    let with = |field: &str, value: Value| {
        let mut body = irdeto();
        body[field] = value;
        body
    };
    for (body, says) in [
        (
            with("system_id", json!("80a6be7e-1448-4c37")),
            "is not a DRM system id",
        ),
        (
            with("system_id", json!(WV)),
            "Widevine's, which keyplex builds in: set override = true",
        ),
        (
            with("pssh_data", json!("{content}")),
            "unknown placeholder {content}",
        ),
        (with("hls_uri", json!("skd://{kid")), "hls_uri: unclosed"),
        (
            with("formats", json!(["smooth"])),
            "is not one of dash, hls",
        ),
        (with("name", json!("other")), "the body names \"other\""),
    ] {
        let (status, problem) = admin(&server, reqwest::Method::PUT, PATH, Some(body)).await;
        assert_eq!(status, 400, "{problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{detail:?} should say {says:?}");
    }
    // Two definitions may not share a system id.
    let (status, _) = admin(&server, reqwest::Method::PUT, PATH, Some(irdeto())).await;
    assert_eq!(status, 201);
    let (status, problem) = admin(
        &server,
        reqwest::Method::PUT,
        "/admin/v1/tenants/acme/drm-systems/irdeto-copy",
        Some(irdeto()),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("have the same system id"),
        "{problem}"
    );
    // An override of a built-in system is allowed when it says so.
    let (status, answer) = admin(
        &server,
        reqwest::Method::PUT,
        "/admin/v1/tenants/acme/drm-systems/prm",
        Some(json!({
            "system_id": "adb41c24-2dbf-4a6d-958b-4457c0d27b95",
            "override": true,
            "pssh_data": "prm:{content_id}:{kid}",
        })),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    // A new tenant's settings do not take definitions: they have their own routes.
    let (status, problem) = admin(
        &server,
        reqwest::Method::POST,
        "/admin/v1/tenants",
        Some(json!({"id": "hooli", "settings": {"drm_systems": [irdeto()]}})),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("PUT /admin/v1/tenants/{id}/drm-systems/{name}"),
        "{problem}"
    );
    let (status, _) = admin(
        &server,
        reqwest::Method::GET,
        "/admin/v1/tenants/acme/drm-systems/nothing",
        None,
    )
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// NAGRA's `drmList` and the GET-style form (for the formats the definition lists) answer a
/// defined system; an override of Nagra PRM replaces keyplex's default PRM data, and joins
/// the GET-style forms it lists (no form answers PRM by default).
#[tokio::test]
async fn nagra_and_get_cpix_answer_defined_systems() {
    let server = start().await;
    let (status, _) = admin(
        &server,
        reqwest::Method::PUT,
        "/admin/v1/tenants/acme2/drm-systems/irdeto",
        Some(irdeto()),
    )
    .await;
    assert_eq!(status, 201);
    let (status, answer) = admin(
        &server,
        reqwest::Method::PUT,
        "/admin/v1/tenants/acme2/drm-systems/my-prm",
        Some(json!({
            "system_id": PRM,
            "override": true,
            "pssh_data": "my-prm:{content_id}:{kid}",
            "dash_value": "Nagra PRM",
            "formats": ["dash"],
        })),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    // The PRM box of `drm` (a CPIX DRMSystem or a NAGRA entry's base64): the override's data.
    let assert_my_prm = |pssh_b64: &str, content_id: &str, kid: &str| {
        let bytes = B64.decode(pssh_b64).unwrap();
        let (pssh, _) = PsshBox::parse(&bytes).unwrap();
        assert_eq!(pssh.system_id.to_string(), PRM);
        let kid: KeyId = kid.parse().unwrap();
        assert_eq!(
            String::from_utf8(pssh.data).unwrap(),
            format!("my-prm:{content_id}:{kid}")
        );
    };
    let nagra = |drm_list: Value| {
        let body = json!({
            "drmContent": { "drmContentId": "nagra-irdeto", "profile": { "distributionMode": "VOD", "streamingMode": "DASH" } },
            "drmList": drm_list,
        });
        let request = server
            .client
            .post(server.url("/acme2/cks-ws-keyAndSignalization/key"))
            .basic_auth("packager", Some("s3cret-acme2"))
            .json(&body);
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = nagra(json!([IRDETO, WV])).await;
    assert_eq!(status, 200, "{v}");
    let irdeto_entry = v["drmSignalization"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["systemId"] == IRDETO)
        .unwrap_or_else(|| panic!("no Irdeto in {v}"));
    let bytes = B64.decode(irdeto_entry["pssh"].as_str().unwrap()).unwrap();
    let (pssh, _) = PsshBox::parse(&bytes).unwrap();
    assert_eq!(pssh.system_id.to_string(), IRDETO);
    assert!(
        irdeto_entry["contentProtection"]
            .as_str()
            .unwrap()
            .contains(&format!(
                r#"schemeIdUri="urn:uuid:{IRDETO}" value="Irdeto""#
            )),
        "{irdeto_entry}"
    );
    // Nagra PRM named in drmList: the override's data, not keyplex's default PRM data.
    let (status, v) = nagra(json!([PRM])).await;
    assert_eq!(status, 200, "{v}");
    let prm_entry = v["drmSignalization"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["systemId"] == PRM)
        .unwrap_or_else(|| panic!("no PRM in {v}"));
    assert_my_prm(
        prm_entry["pssh"].as_str().unwrap(),
        "nagra-irdeto",
        v["contentKey"]["keyId"].as_str().unwrap(),
    );
    let (status, v) = nagra(json!(["11111111-2222-3333-4444-555555555555"])).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("unknown DRM system id"), "{v}");

    // GET-style CPIX for dash (the definition lists dash): Irdeto beside the built-ins.
    let resp = server
        .client
        .get(server.url("/acme2/cpix/dash/get-irdeto"))
        .bearer_auth("get-token-of-acme2-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let doc = keyplex_cpix::read_document(resp.text().await.unwrap().as_bytes()).unwrap();
    let irdeto_entry = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == IRDETO)
        .expect("Irdeto in the GET-style answer");
    assert_eq!(irdeto_entry.name.as_deref(), Some("Irdeto"));
    assert!(irdeto_entry.pssh.is_some());
    // The PRM override lists dash: it joins the form, with its own data.
    let prm_entry = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == PRM)
        .expect("the PRM override in the GET-style dash answer");
    assert_my_prm(
        prm_entry.pssh.as_deref().unwrap(),
        "get-irdeto",
        &prm_entry.kid.as_written,
    );
    // ATEME's GET form (a profile of PallyCon's CPIX) for dash: Irdeto's PSSH too.
    let resp = server
        .client
        .get(server.url(&format!(
            "/acme2/cpix/anevia/dash/{ENC_TOKEN}/anevia-irdeto"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let doc = keyplex_cpix::read_document(resp.text().await.unwrap().as_bytes()).unwrap();
    let irdeto_entry = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == IRDETO)
        .expect("Irdeto in the ATEME answer");
    let bytes = B64.decode(irdeto_entry.pssh.as_deref().unwrap()).unwrap();
    assert_eq!(
        PsshBox::parse(&bytes).unwrap().0.system_id.to_string(),
        IRDETO
    );
    let prm_entry = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == PRM)
        .expect("the PRM override in the ATEME dash answer");
    assert_my_prm(
        prm_entry.pssh.as_deref().unwrap(),
        "anevia-irdeto",
        &prm_entry.kid.as_written,
    );
    // hls is not among its formats.
    let resp = server
        .client
        .get(server.url("/acme2/cpix/hls/get-irdeto"))
        .bearer_auth("get-token-of-acme2-0123456789")
        .send()
        .await
        .unwrap();
    let doc = keyplex_cpix::read_document(resp.text().await.unwrap().as_bytes()).unwrap();
    assert!(
        doc.drm_systems
            .iter()
            .flatten()
            .all(|d| d.system_id.as_written != IRDETO)
    );
    // Nor among the PRM override's.
    assert!(
        doc.drm_systems
            .iter()
            .flatten()
            .all(|d| d.system_id.as_written != PRM)
    );
    server.stop().await;
}

/// Every per-key placeholder of a definition's PSSH data, expanded through a real interface: a
/// live CPIX request with two key periods and two track types (SD, HD) gets, per key, the box
/// data `{period}|{track_type}|{la_url}|{content_id}|{kid_base64url}|{content_id_base64}` of
/// that key.
#[tokio::test]
async fn placeholders_expand_per_key_period_and_track_type() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    const VERIMATRIX: &str = "9a27dd82-fde2-4725-8cbc-4234aa06ec09";
    const LA_URL: &str = "https://licence.verimatrix.example/la?tenant=acme";
    const CONTENT_ID: &str = "live-placeholders";
    let server = start().await;
    let (status, answer) = admin(
        &server,
        reqwest::Method::PUT,
        "/admin/v1/tenants/acme/drm-systems/vcas",
        Some(json!({
            "system_id": VERIMATRIX,
            "pssh_version": 0,
            "pssh_data": "{period}|{track_type}|{la_url}|{content_id}|{kid_base64url}|{content_id_base64}",
            "pssh_data_encoding": "utf8",
            "la_url": LA_URL,
        })),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    // (period index, track type, video filter, kid)
    let keys = [
        (
            41,
            "SD",
            r#"<cpix:VideoFilter maxPixels="442368"/>"#,
            "33333333-0000-4000-8000-000000000001",
        ),
        (
            41,
            "HD",
            r#"<cpix:VideoFilter minPixels="442369"/>"#,
            "33333333-0000-4000-8000-000000000002",
        ),
        (
            42,
            "SD",
            r#"<cpix:VideoFilter maxPixels="442368"/>"#,
            "33333333-0000-4000-8000-000000000003",
        ),
        (
            42,
            "HD",
            r#"<cpix:VideoFilter minPixels="442369"/>"#,
            "33333333-0000-4000-8000-000000000004",
        ),
    ];
    let content_keys: String = keys
        .iter()
        .map(|(_, _, _, k)| {
            format!(r#"<cpix:ContentKey kid="{k}" commonEncryptionScheme="cenc"/>"#)
        })
        .collect();
    let drms: String = keys
        .iter()
        .map(|(_, _, _, k)| crate::cpix::drm(VERIMATRIX, k))
        .collect();
    let periods = r#"<cpix:ContentKeyPeriod id="p41" index="41"/><cpix:ContentKeyPeriod id="p42" index="42"/>"#;
    let rules: String = keys
        .iter()
        .map(|(p, t, f, k)| {
            format!(
                r#"<cpix:ContentKeyUsageRule kid="{k}" intendedTrackType="{t}"><cpix:KeyPeriodFilter periodId="p{p}"/>{f}</cpix:ContentKeyUsageRule>"#
            )
        })
        .collect();
    let request = format!(
        r#"<cpix:CPIX contentId="{CONTENT_ID}" version="2.3" xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"><cpix:ContentKeyList>{content_keys}</cpix:ContentKeyList><cpix:DRMSystemList>{drms}</cpix:DRMSystemList><cpix:ContentKeyPeriodList>{periods}</cpix:ContentKeyPeriodList><cpix:ContentKeyUsageRuleList>{rules}</cpix:ContentKeyUsageRuleList></cpix:CPIX>"#
    );
    let doc = crate::cpix::ok_document(server.post_cpix("acme", request).await).await;
    assert_eq!(
        doc.drm_systems.iter().flatten().count(),
        keys.len(),
        "one DRMSystem per key"
    );
    for (period, track_type, _, kid) in keys {
        let pssh = pssh_of(&doc, VERIMATRIX, kid);
        assert_eq!(pssh.system_id.to_string(), VERIMATRIX);
        let kid: KeyId = kid.parse().unwrap();
        let expected = format!(
            "{period}|{track_type}|{LA_URL}|{CONTENT_ID}|{}|{}",
            URL_SAFE_NO_PAD.encode(kid.as_bytes()),
            B64.encode(CONTENT_ID)
        );
        assert_eq!(
            String::from_utf8(pssh.data).unwrap(),
            expected,
            "period {period}, {track_type}"
        );
    }
    server.stop().await;
}

//! PallyCon-compatible routes, driven by the request bodies of PallyCon's own CPIX API guide
//! (fixtures/pallycon/, unchanged but for the content id): server-chosen kids shared with the
//! other keyplex-chooses interfaces, rotation by period index, the V1 and V2 answers, the
//! SPEKE form, ATEME's GET form, the enc_token credential and its redaction.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_cpix::model::{CpixDocument, Playlist};
use keyplex_drm::pssh::PsshBox;
use keyplex_types::KeyId;

use crate::common::{TestServer, fixture};
use crate::cpix::{FP, PR, WV, plain_keys};

const TOKEN: &str = "pallycon-enc-token-of-pally-0123456789";
const OTHER_TOKEN: &str = "pallycon-enc-token-of-other-0123456789";
const ADMIN: &str = "admin-token-of-the-pallycon-tests";
const AES128: &str = "3ea8778f-7742-4bf9-b18b-e834b2acbd47";

const CONFIG: &str = r#"
[admin]
token = "admin-token-of-the-pallycon-tests"

[tenants.pally]
basic = [{ user = "packager", password = "s3cret-pally" }]
enc_token = "pallycon-enc-token-of-pally-0123456789"
fairplay_uri_template = "skd://{kid_base64}"
widevine_provider = "pally"
hls_key_url = "https://keys.pally.example/hls/{kid}"

[tenants.other]
enc_token = "pallycon-enc-token-of-other-0123456789"

[tenants.nokey]
basic = [{ user = "packager", password = "s3cret-nokey" }]
"#;

async fn start() -> TestServer {
    TestServer::start_with(CONFIG, |_| {}).await
}

/// A sample of the guide with its content id replaced.
fn sample(name: &str, content_id: &str) -> String {
    let xml = fixture(&format!("pallycon/{name}.xml"));
    let (head, rest) = xml.split_once("<cpix:CPIX id=\"").unwrap();
    let (_, tail) = rest.split_once('"').unwrap();
    format!("{head}<cpix:CPIX id=\"{content_id}\"{tail}")
}

async fn post(server: &TestServer, path: &str, body: String) -> reqwest::Response {
    server
        .client
        .post(server.url(path))
        .header("content-type", "application/xml")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn ok(resp: reqwest::Response) -> (CpixDocument, String) {
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    (keyplex_cpix::read_document(text.as_bytes()).unwrap(), text)
}

fn v2(token: &str) -> String {
    format!("/pally/v2/cpix/pallycon/getKey/{token}")
}

fn drm<'a>(doc: &'a CpixDocument, system: &str) -> &'a keyplex_cpix::model::DrmSystemEntry {
    doc.drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written.eq_ignore_ascii_case(system))
        .unwrap_or_else(|| panic!("no DRMSystem {system}"))
}

fn pssh(d: &keyplex_cpix::model::DrmSystemEntry) -> PsshBox {
    let bytes = B64.decode(d.pssh.as_deref().expect("PSSH")).unwrap();
    PsshBox::parse(&bytes).unwrap().0
}

fn text(b64: &str) -> String {
    String::from_utf8(B64.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn dash_vod_v2_answers_keyplex_kids_and_everything_each_drm_has() {
    let server = start().await;
    let request = sample("dash-vod", "pc-dash-vod");
    let (doc, _) = ok(post(&server, &v2(TOKEN), request.clone()).await).await;
    assert_eq!(doc.id.as_deref(), Some("pc-dash-vod"), "CPIX@id echoed");
    let keys = plain_keys(&doc);
    assert_eq!(keys.len(), 1);
    let (kid, key, iv) = keys[0];
    assert_ne!(
        kid.to_string(),
        "681e5b39-49f2-4dfa-b744-86573c22e6fb",
        "keyplex chooses the kid; the request's is a label"
    );
    assert_ne!(iv, [0; 16], "explicitIV is answered");
    for system in [PR, WV] {
        let d = drm(&doc, system);
        assert_eq!(d.kid.id, kid, "DRMSystem renamed to the server's kid");
        let b = pssh(d);
        // ContentProtectionData: the pssh box's data without the box header.
        assert_eq!(
            B64.decode(d.content_protection_data.as_deref().unwrap())
                .unwrap(),
            b.data,
            "{system}"
        );
        let playlists: Vec<Option<Playlist>> = d.hls_signaling.iter().map(|h| h.playlist).collect();
        assert_eq!(playlists, vec![None, Some(Playlist::Master)], "{system}");
        assert!(d.uri_ext_x_key.is_none());
    }
    let wv =
        keyplex_drm::widevine::WidevinePsshData::decode_from(&pssh(drm(&doc, WV)).data).unwrap();
    assert_eq!(wv.key_ids(), vec![kid]);
    assert_eq!(wv.content_id.as_deref(), Some(&b"pc-dash-vod"[..]));

    // The same request again: the same key. V1 and the HLS sample of the same content: the
    // same key too (identity is content, track type, period).
    let (again, _) = ok(post(&server, &v2(TOKEN), request.clone()).await).await;
    assert_eq!(plain_keys(&again)[0], (kid, key, iv));
    let (v1, _) = ok(post(
        &server,
        &format!("/pally/v1/cpix/pallycon/getKey/{TOKEN}"),
        request,
    )
    .await)
    .await;
    assert_eq!(plain_keys(&v1)[0], (kid, key, iv));
    for d in v1.drm_systems.iter().flatten() {
        // V1 answers what the guide's V1 shows: PSSH only for Widevine and PlayReady.
        assert!(d.pssh.is_some());
        assert!(d.content_protection_data.is_none() && d.hls_signaling.is_empty());
    }
    let (hls, _) = ok(post(&server, &v2(TOKEN), sample("hls-vod", "pc-dash-vod")).await).await;
    assert_eq!(plain_keys(&hls)[0], (kid, key, iv));

    // ATEME's GET form, the same content: the same key, Widevine and PlayReady PSSH.
    let (ateme, _) = ok(server
        .client
        .get(server.url(&format!("/pally/cpix/anevia/dash/{TOKEN}/pc-dash-vod")))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(ateme.id.as_deref(), Some("pc-dash-vod"));
    assert_eq!(plain_keys(&ateme)[0], (kid, key, iv));
    assert_eq!(pssh(drm(&ateme, PR)).system_id.to_string(), PR);
    assert_eq!(pssh(drm(&ateme, WV)).system_id.to_string(), WV);
}

#[tokio::test]
async fn hls_vod_and_live_fairplay_get_the_tenants_skd_form() {
    let server = start().await;
    let (doc, _) = ok(post(&server, &v2(TOKEN), sample("hls-vod", "pc-hls")).await).await;
    let (kid, _, _) = plain_keys(&doc)[0];
    let fp = drm(&doc, FP);
    // fairplay_uri_template = "skd://{kid_base64}" (PallyCon's KSM form).
    let uri = format!("skd://{}", B64.encode(kid.as_bytes()));
    assert_eq!(text(fp.uri_ext_x_key.as_deref().unwrap()), uri);
    assert_eq!(fp.hls_signaling.len(), 2);
    let media = text(&fp.hls_signaling[0].value);
    assert!(
        media.starts_with(&format!("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"{uri}\"")),
        "{media}"
    );
    assert!(fp.pssh.is_none() && fp.content_protection_data.is_none());

    // The HLS-live sample asks FairPlay for ContentProtectionData and PSSH, which it does
    // not have: the answer is the guide's, HLS signaling and URIExtXKey only.
    let (live, _) = ok(post(&server, &v2(TOKEN), sample("hls-live", "pc-hls-live")).await).await;
    let fp = drm(&live, FP);
    assert!(fp.pssh.is_none() && fp.content_protection_data.is_none());
    assert!(fp.uri_ext_x_key.is_some() && fp.hls_signaling.len() == 2);
    // The content key is cbcs: FairPlay content.
    let ck = &live.content_keys.as_ref().unwrap()[0];
    assert!(ck.explicit_iv.is_some());

    // ATEME's HLS form: FairPlay, Widevine and AES-128 (the tenant sets hls_key_url).
    let (ateme, _) = ok(server
        .client
        .get(server.url(&format!("/pally/cpix/anevia/hls/{TOKEN}/pc-hls")))
        .send()
        .await
        .unwrap())
    .await;
    assert_eq!(plain_keys(&ateme)[0].0, kid);
    assert_eq!(text(drm(&ateme, FP).uri_ext_x_key.as_deref().unwrap()), uri);
    let aes = drm(&ateme, AES128);
    assert_eq!(
        text(aes.uri_ext_x_key.as_deref().unwrap()),
        format!("https://keys.pally.example/hls/{kid}")
    );
    assert!(text(&aes.hls_signaling[0].value).starts_with("#EXT-X-KEY:METHOD=AES-128,"));
    let wv = text(&drm(&ateme, WV).hls_signaling[0].value);
    assert!(wv.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,"), "{wv}");
}

#[tokio::test]
async fn dash_live_rotates_by_period_index_and_adopts_the_orphan_drm_system() {
    let server = start().await;
    let at = |index: u32| {
        sample("dash-live", "pc-live").replace("index=\"128\"", &format!("index=\"{index}\""))
    };
    let (p128, _) = ok(post(&server, &v2(TOKEN), at(128)).await).await;
    let (p129, _) = ok(post(&server, &v2(TOKEN), at(129)).await).await;
    let (k128, k129) = (plain_keys(&p128)[0], plain_keys(&p129)[0]);
    assert_ne!(k128.0, k129.0, "a new period gets a new kid");
    assert_ne!(k128.1, k129.1, "a new period gets a new key");
    let (again, _) = ok(post(&server, &v2(TOKEN), at(128)).await).await;
    assert_eq!(plain_keys(&again)[0], k128);

    // The Widevine DRMSystem named a kid outside ContentKeyList: answered for the only key.
    let wv = drm(&p128, WV);
    assert_eq!(wv.kid.id, k128.0);
    let data = keyplex_drm::widevine::WidevinePsshData::decode_from(&pssh(wv).data).unwrap();
    assert_eq!(data.key_ids(), vec![k128.0]);
    assert_eq!(data.crypto_period_index, Some(128));
    // Periods and usage rules are echoed with the server's kid; the filter stays.
    let period = &p128.periods.as_ref().unwrap()[0];
    assert_eq!(period.index, Some(128));
    let rule = &p128.usage_rules.as_ref().unwrap()[0];
    assert_eq!(rule.kid.id, k128.0);
    assert_eq!(rule.intended_track_type.as_deref(), Some("HD"));
    assert_eq!(rule.video_filters[0].max_pixels, Some(2_073_600));

    // Multi-key (V2): an SD and an HD key of the same period get different keys, and the HD
    // one is the key of the single-key request above (same content, track type, period).
    let multi = at(128)
        .replace(
            "<cpix:ContentKey kid=\"ca65e643-482c-4a21-a204-05570a1e276c\"></cpix:ContentKey>",
            "<cpix:ContentKey kid=\"ca65e643-482c-4a21-a204-05570a1e276c\"></cpix:ContentKey><cpix:ContentKey kid=\"0d0d0d0d-0000-4000-8000-000000000001\"/>",
        )
        .replace(
            "<cpix:DRMSystem kid=\"681e5b39-49f2-4dfa-b744-86573c22e6fb\"",
            "<cpix:DRMSystem kid=\"0d0d0d0d-0000-4000-8000-000000000001\"",
        )
        .replace(
            "</cpix:ContentKeyUsageRuleList>",
            "<cpix:ContentKeyUsageRule intendedTrackType=\"SD\" kid=\"0d0d0d0d-0000-4000-8000-000000000001\"><cpix:KeyPeriodFilter periodId=\"keyPeriod_e7c4423c-a2c6-46f4-bef3-2bfed6bae9c9\"/><cpix:VideoFilter maxPixels=\"921599\"/></cpix:ContentKeyUsageRule></cpix:ContentKeyUsageRuleList>",
        );
    let (doc, _) = ok(post(&server, &v2(TOKEN), multi).await).await;
    let keys = plain_keys(&doc);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], k128, "HD: the single-key request's key");
    assert_ne!(keys[1].1, k128.1, "SD: a key of its own");
}

#[tokio::test]
async fn speke_form_answers_speke_with_keyplex_kids() {
    let server = start().await;
    let request = String::from_utf8(crate::common::vector(
        "speke/speke-reference-server/v2_general_1_generic_spekev2_dash_widevine_preset_video_1_audio_1_no_rotation.xml",
    ))
    .unwrap();
    let send = |version: Option<&'static str>, token: Option<&'static str>| {
        let mut url = server.url("/pally/cpix/getKey");
        if let Some(t) = token {
            url.push_str(&format!("?enc-token={t}"));
        }
        let mut req = server
            .client
            .post(url)
            .header("content-type", "application/xml")
            .body(request.clone());
        if let Some(v) = version {
            req = req.header("x-speke-version", v);
        }
        req.send()
    };
    let resp = send(Some("2.0"), Some(TOKEN)).await.unwrap();
    assert_eq!(resp.headers()["x-speke-version"], "2.0");
    let text = resp.text().await.unwrap();
    let doc = keyplex_cpix::read_document(text.as_bytes()).unwrap();
    let requested = keyplex_cpix::read_document(request.as_bytes()).unwrap();
    let asked: Vec<KeyId> = requested
        .content_keys
        .iter()
        .flatten()
        .map(|k| k.kid.id)
        .collect();
    let got: Vec<KeyId> = plain_keys(&doc).iter().map(|k| k.0).collect();
    assert_eq!(got.len(), asked.len());
    assert!(got.iter().all(|k| !asked.contains(k)), "keyplex's kids");
    let again = send(Some("2.0"), Some(TOKEN))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let again = keyplex_cpix::read_document(again.as_bytes()).unwrap();
    assert_eq!(plain_keys(&again), plain_keys(&doc));

    // Without a token, with a wrong one, with another tenant's.
    assert_eq!(send(Some("2.0"), None).await.unwrap().status(), 401);
    assert_eq!(
        send(Some("2.0"), Some("wrong-token-0123456789"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        send(Some("2.0"), Some(OTHER_TOKEN)).await.unwrap().status(),
        403
    );
}

#[tokio::test]
async fn enc_tokens_refused_rotated_and_bad_requests() {
    let server = start().await;
    let body = sample("dash-vod", "pc-auth");
    assert_eq!(
        post(&server, &v2("wrong-token-0123456789"), body.clone())
            .await
            .status(),
        401
    );
    let other = post(&server, &v2(OTHER_TOKEN), body.clone()).await;
    assert_eq!(other.status(), 403);
    let (status, text) = (other.status(), other.text().await.unwrap());
    assert!(!text.contains(OTHER_TOKEN), "{status}: {text}");
    // A tenant without an enc_token says so.
    let resp = post(
        &server,
        "/nokey/v2/cpix/pallycon/getKey/some-token-0123456789",
        body.clone(),
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("no enc_token configured")
    );

    // An enc_token credential through the admin API: generated, usable, revocable.
    let added: serde_json::Value = server
        .client
        .post(server.url("/admin/v1/tenants/other/credentials"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "type": "enc_token" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added["type"], "enc_token");
    let generated = added["secret"].as_str().unwrap().to_owned();
    let url = format!("/other/v2/cpix/pallycon/getKey/{generated}");
    ok(post(&server, &url, body.clone()).await).await;
    let revoked = server
        .client
        .delete(server.url(&format!(
            "/admin/v1/tenants/other/credentials/{}",
            added["id"].as_str().unwrap()
        )))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    assert_eq!(post(&server, &url, body.clone()).await.status(), 401);

    // Bad input: not CPIX, no content id, an unknown ATEME format.
    assert_eq!(
        post(&server, &v2(TOKEN), "<not-cpix/>".into())
            .await
            .status(),
        400
    );
    let no_id = body.replace("id=\"pc-auth\" ", "");
    let resp = post(&server, &v2(TOKEN), no_id).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("content id"));
    let resp = server
        .client
        .get(server.url(&format!("/pally/cpix/anevia/smooth/{TOKEN}/pc-auth")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

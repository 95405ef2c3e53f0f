//! AWS SPEKE v1 and v2 over HTTP, driven by the AWS reference server's request files and its
//! verification suite's cases (shared/vectors/speke/README.md), plus encrypted delivery to an
//! RSA-2048 certificate and key rotation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_cpix::model::{CpixDocument, KeyValue, Playlist};
use keyplex_drm::pssh::PsshBox;

use crate::common::{TestServer, vector};
use crate::cpix::plain_keys;

const SUITE: &str = "speke/speke-reference-server";
const V1_DOCS: &str = "speke/aws-speke-v1-docs";
const GENERIC: &str =
    "v2_general_1_generic_spekev2_dash_widevine_preset_video_1_audio_1_no_rotation.xml";
const V1_STYLE: &str = "v2_general_2_speke_v1_style_implementation.xml";
const VOD: &str = "v2_vod_1_generic_spekev2_dash_widevine_preset_video_1_audio_1_no_rotation.xml";
const WV: &str = "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed";
const FP: &str = "94ce86fb-07ff-4f43-adb8-93d2fa968ca2";

fn suite(name: &str) -> String {
    String::from_utf8(vector(&format!("{SUITE}/{name}"))).unwrap()
}

fn v1_doc(name: &str) -> String {
    String::from_utf8(vector(&format!("{V1_DOCS}/{name}"))).unwrap()
}

/// POSTs as acme's Basic packager, with `X-Speke-Version` when given.
async fn post(
    server: &TestServer,
    path: &str,
    speke_version: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let tenant = path.trim_start_matches('/').split('/').next().unwrap();
    let mut req = server
        .client
        .post(server.url(path))
        .basic_auth("packager", Some(format!("s3cret-{tenant}")))
        .header("content-type", "application/xml")
        .body(body);
    if let Some(v) = speke_version {
        req = req.header("x-speke-version", v);
    }
    req.send().await.unwrap()
}

struct Answer {
    doc: CpixDocument,
    headers: reqwest::header::HeaderMap,
    text: String,
}

async fn ok(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "body: {text}");
    let ctype = headers["content-type"].to_str().unwrap();
    assert_eq!(ctype, "application/xml; charset=utf-8");
    let doc = keyplex_cpix::read_document(text.as_bytes()).unwrap();
    Answer { doc, headers, text }
}

/// Status and text/plain body of a refused request.
async fn refused(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    assert_ne!(status, 200, "expected a refusal, got 200: {text}");
    assert_eq!(
        ctype.as_deref(),
        Some("text/plain; charset=utf-8"),
        "{text}"
    );
    (status, text)
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers.get(name).map(|v| v.to_str().unwrap())
}

fn decode_text(b64: &str) -> String {
    String::from_utf8(B64.decode(b64).unwrap()).unwrap()
}

/// What AWS's suite checks on a v2 answer: headers, every asked element answered, keys in
/// clear as `pskc:PlainValue`, the usage rules and periods echoed unchanged.
fn assert_v2_answer(request: &str, a: &Answer, version: &str) {
    assert_eq!(header(a, "x-speke-version"), Some(version));
    assert!(
        header(a, "x-speke-user-agent")
            .unwrap()
            .starts_with("keyplex/")
    );
    assert!(header(a, "speke-user-agent").is_none());
    assert!(a.text.contains("<pskc:PlainValue>"));
    let req = keyplex_cpix::read_document(request.as_bytes()).unwrap();
    assert_eq!(a.doc.content_id, req.content_id);
    assert_eq!(a.doc.version, req.version);
    assert_eq!(
        a.doc.usage_rules, req.usage_rules,
        "usage rules echoed unchanged"
    );
    assert_eq!(a.doc.periods, req.periods, "periods echoed unchanged");
    let keys = a.doc.content_keys.as_ref().unwrap();
    let req_keys = req.content_keys.as_ref().unwrap();
    assert_eq!(keys.len(), req_keys.len());
    for (k, r) in keys.iter().zip(req_keys) {
        assert_eq!(k.kid.as_written, r.kid.as_written);
        assert_eq!(k.common_encryption_scheme, r.common_encryption_scheme);
        assert!(matches!(k.value, Some(KeyValue::Plain(_))));
    }
    let drms = a.doc.drm_systems.as_ref().unwrap();
    assert_eq!(drms.len(), req.drm_systems.as_ref().unwrap().len());
    for (d, r) in drms.iter().zip(req.drm_systems.as_ref().unwrap()) {
        assert_eq!(d.kid.as_written, r.kid.as_written);
        assert_eq!(d.system_id.as_written, r.system_id.as_written);
        if r.pssh.is_some() {
            let boxes = PsshBox::parse_all(&B64.decode(d.pssh.as_ref().unwrap()).unwrap()).unwrap();
            assert_eq!(boxes[0].system_id.to_string(), d.system_id.as_written);
        }
        if r.content_protection_data.is_some() {
            let cpd = decode_text(d.content_protection_data.as_ref().unwrap());
            assert!(cpd.contains("pssh"), "{cpd}");
        }
        assert_eq!(d.hls_signaling.len(), r.hls_signaling.len());
        if !r.hls_signaling.is_empty() {
            let line = |p: Playlist| {
                decode_text(
                    &d.hls_signaling
                        .iter()
                        .find(|h| h.playlist == Some(p))
                        .unwrap()
                        .value,
                )
            };
            let media = line(Playlist::Media);
            // CPIX 2.4 (SPEKE 2.1) spells the master playlist `multiVariant`; the writer
            // answers 2.4 documents in 2.4's spelling.
            let master = line(if version == "2.1" {
                Playlist::MultiVariant
            } else {
                Playlist::Master
            });
            // MediaPackage: media and master tags identical except for the tag name.
            assert_eq!(
                media.strip_prefix("#EXT-X-KEY:").unwrap(),
                master.strip_prefix("#EXT-X-SESSION-KEY:").unwrap()
            );
        }
    }
}

#[tokio::test]
async fn aws_suite_happy_paths_answer_everything_and_repeat_the_same_keys() {
    let server = TestServer::start().await;
    for name in [GENERIC, V1_STYLE, VOD] {
        let request = suite(name);
        let first = ok(post(&server, "/acme/speke/v2", Some("2.0"), request.clone()).await).await;
        assert_v2_answer(&request, &first, "2.0");
        let second = ok(post(&server, "/acme/speke/v2", Some("2.0"), request.clone()).await).await;
        assert_eq!(
            plain_keys(&first.doc),
            plain_keys(&second.doc),
            "{name}: identical requests get identical keys"
        );
    }
    // The v1-style v2 request (one ALL key, period index 0): the Widevine PSSH names the period.
    let a = ok(post(&server, "/acme/speke/v2", Some("2.0"), suite(V1_STYLE)).await).await;
    let drm = &a.doc.drm_systems.as_ref().unwrap()[0];
    let pssh = PsshBox::parse_all(&B64.decode(drm.pssh.as_ref().unwrap()).unwrap()).unwrap();
    let data = keyplex_drm::widevine::WidevinePsshData::decode_from(&pssh[0].data).unwrap();
    assert_eq!(data.crypto_period_index, Some(0));
}

#[tokio::test]
async fn speke_on_the_cpix_routes_and_v2_1() {
    let server = TestServer::start().await;
    let request = suite(GENERIC);
    let on_speke = ok(post(&server, "/acme/speke/v2", Some("2.0"), request.clone()).await).await;
    for path in ["/acme/cpix", "/acme/nks/v1/cpix"] {
        let a = ok(post(&server, path, Some("2.0"), request.clone()).await).await;
        assert_v2_answer(&request, &a, "2.0");
        assert_eq!(plain_keys(&a.doc), plain_keys(&on_speke.doc));
    }
    // SPEKE 2.1 speaks CPIX 2.4; the answer echoes 2.1 and the keys are the same kids' keys.
    let v21 = request.replace(r#"version="2.3""#, r#"version="2.4""#);
    let a = ok(post(&server, "/acme/speke/v2", Some("2.1"), v21.clone()).await).await;
    assert_v2_answer(&v21, &a, "2.1");
    assert_eq!(plain_keys(&a.doc), plain_keys(&on_speke.doc));
    let a = ok(post(&server, "/acme/cpix", Some("2.1"), v21).await).await;
    assert_eq!(header(&a, "x-speke-version"), Some("2.1"));
    // Without the header the CPIX route is plain CPIX: no SPEKE headers.
    let a = ok(post(&server, "/acme/cpix", None, request).await).await;
    assert!(header(&a, "x-speke-version").is_none());
    assert_eq!(plain_keys(&a.doc), plain_keys(&on_speke.doc));
}

/// Removes every `<cpix:{name} …>…</cpix:{name}>` or `<cpix:{name} …/>` element (what the AWS
/// suite does with ElementTree).
fn remove_elements(xml: &str, name: &str) -> String {
    let open = format!("<cpix:{name}");
    let close = format!("</cpix:{name}>");
    let mut out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        if !after.starts_with([' ', '>', '/', '\t', '\n']) {
            out.push_str(&rest[..start + open.len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..start]);
        let tag_end = after.find('>').unwrap();
        let end = if after[..tag_end].ends_with('/') {
            tag_end + 1
        } else {
            after.find(&close).unwrap() + close.len()
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Removes `attr="…"` from every start tag of `<cpix:{name} `.
fn remove_attribute(xml: &str, name: &str, attr: &str) -> String {
    let open = format!("<cpix:{name} ");
    let mut out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let tag_len = rest[start..].find('>').unwrap();
        let tag = &rest[start..start + tag_len];
        let pattern = format!(" {attr}=\"");
        let tag = match tag.find(&pattern) {
            Some(a) => {
                let value_end = tag[a + pattern.len()..].find('"').unwrap();
                format!("{}{}", &tag[..a], &tag[a + pattern.len() + value_end + 1..])
            }
            None => tag.to_owned(),
        };
        out.push_str(&rest[..start]);
        out.push_str(&tag);
        rest = &rest[start + tag_len..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn aws_suite_negative_cases_and_documented_messages() {
    let server = TestServer::start().await;
    let generic = suite(GENERIC);
    let first_kid = "0f083e4e-b831-4a3d-917e-ce78076e54aa";
    let mut without_filters = remove_elements(&generic, "VideoFilter");
    without_filters = remove_elements(&without_filters, "AudioFilter");
    let malformed = "Malformed encryption contract";
    let no_contract = "Missing CPIX encryption contract";
    // (case, X-Speke-Version, body, status, exact message or None for "any 4xx")
    let cases: Vec<(&str, &str, String, u16, Option<String>)> = vec![
        ("empty body", "2.0", String::new(), 400, None),
        ("not XML", "2.0", "<cpix:CPIX".into(), 400, None),
        ("wrong CPIX version (file 3)", "2.0", suite("v2_general_3_negative_wrong_version_spekev2_dash_widevine.xml"), 422, Some("Unsupported CPIX@version".into())),
        ("shared video (file 4)", "2.0", suite("v2_general_4_spekev2_negative_preset_shared_video.xml"), 422, Some(malformed.into())),
        ("shared audio (file 5)", "2.0", suite("v2_general_5_spekev2_negative_preset_shared_audio.xml"), 422, Some(malformed.into())),
        ("FairPlay with cenc", "2.0", suite("v2_request_cenc_widevine_playready_fairplay.xml"), 422, Some(format!("ContentKey@commonEncryptionScheme non compatible with DRMSystem {FP}"))),
        ("no ContentKeyList", "2.0", remove_elements(&generic, "ContentKeyList"), 422, Some("Missing ContentKeyList".into())),
        ("no DRMSystemList", "2.0", remove_elements(&generic, "DRMSystemList"), 422, Some("Missing DRMSystemList".into())),
        ("no ContentKeyUsageRuleList", "2.0", remove_elements(&generic, "ContentKeyUsageRuleList"), 422, Some(no_contract.into())),
        ("no ContentKey", "2.0", remove_elements(&generic, "ContentKey"), 422, Some("Missing ContentKey".into())),
        ("no DRMSystem", "2.0", remove_elements(&generic, "DRMSystem"), 422, Some("Missing DRMSystem".into())),
        ("no ContentKeyUsageRule", "2.0", remove_elements(&generic, "ContentKeyUsageRule"), 422, Some(no_contract.into())),
        ("no Video/AudioFilter", "2.0", without_filters, 422, Some(no_contract.into())),
        ("ContentKey without kid", "2.0", remove_attribute(&generic, "ContentKey", "kid"), 400, None),
        ("ContentKey without scheme", "2.0", remove_attribute(&generic, "ContentKey", "commonEncryptionScheme"), 422, Some(format!("Missing ContentKey@commonEncryptionScheme for KID {first_kid}"))),
        ("DRMSystem without kid", "2.0", remove_attribute(&generic, "DRMSystem", "kid"), 400, None),
        ("DRMSystem without systemId", "2.0", remove_attribute(&generic, "DRMSystem", "systemId"), 400, None),
        ("usage rule without kid", "2.0", remove_attribute(&generic, "ContentKeyUsageRule", "kid"), 400, None),
        ("usage rule without intendedTrackType", "2.0", remove_attribute(&generic, "ContentKeyUsageRule", "intendedTrackType"), 422, Some(malformed.into())),
        ("no contentId", "2.0", generic.replace(r#"contentId="test_case_generic" "#, ""), 422, Some("Missing CPIX@contentId".into())),
        ("no version", "2.0", generic.replace(r#"version="2.3" "#, ""), 422, Some("Missing CPIX@version".into())),
        ("CPIX 2.3 with SPEKE 2.1", "2.1", generic.clone(), 422, Some("Unsupported CPIX@version".into())),
        ("mixed schemes", "2.0", generic.replacen(r#"commonEncryptionScheme="cenc""#, r#"commonEncryptionScheme="cbcs""#, 1), 422, Some("Non compliant ContentKey@commonEncryptionScheme combination".into())),
        ("SPEKE version 3.0", "3.0", generic.clone(), 422, Some("Unsupported SPEKE version".into())),
        ("SPEKE version 1.0 on the v2 URL", "1.0", generic.clone(), 422, Some("Unsupported SPEKE version".into())),
        ("Clear Key AES-128 with cenc", "2.0", generic.replace(WV, "3ea8778f-7742-4bf9-b18b-e834b2acbd47"), 422, Some("ContentKey@commonEncryptionScheme non compatible with DRMSystem 3ea8778f-7742-4bf9-b18b-e834b2acbd47".into())),
        ("unknown DRM system", "2.0", generic.replace(WV, "00000000-1111-2222-3333-444444444444"), 422, None),
    ];
    for (case, version, body, status, message) in cases {
        let (got_status, text) =
            refused(post(&server, "/acme/speke/v2", Some(version), body.clone()).await).await;
        assert_eq!(got_status, status, "{case}: {text}");
        if let Some(message) = message {
            assert_eq!(text, message, "{case}");
        }
        // The same on the CPIX route with the header (where 1.0 is simply SPEKE v1).
        if version != "1.0" {
            let (got_status, _) =
                refused(post(&server, "/acme/cpix", Some(version), body).await).await;
            assert_eq!(got_status, status, "{case} on /cpix");
        }
    }
    // A v2 URL without the header.
    let (status, text) =
        refused(post(&server, "/acme/speke/v2", None, generic.clone()).await).await;
    assert_eq!(status, 422);
    assert!(text.contains("X-Speke-Version"), "{text}");
    // A v2 header on the v1 URL.
    let (status, text) =
        refused(post(&server, "/acme/speke/v1", Some("2.0"), generic.clone()).await).await;
    assert_eq!((status, text.as_str()), (422, "Unsupported SPEKE version"));

    // Nothing was stored by any rejected request: the FairPlay/cenc request named the generic
    // request's kids under another content id, and the generic request still gets them (no 409).
    let a = ok(post(&server, "/acme/speke/v2", Some("2.0"), generic).await).await;
    assert_eq!(a.doc.content_id.as_deref(), Some("test_case_generic"));

    // The same three-DRM request with cbcs is fine (FairPlay signals; PlayReady has HLS in cbcs).
    let cbcs = suite("v2_request_cenc_widevine_playready_fairplay.xml")
        .replace(
            r#"commonEncryptionScheme="cenc""#,
            r#"commonEncryptionScheme="cbcs""#,
        )
        .replace("cenc_test_001", "cbcs_test_001")
        .replace("0f083e4e-b831", "1f083e4e-b831")
        .replace("041fdd3a-7f5e", "141fdd3a-7f5e");
    let a = ok(post(&server, "/acme/speke/v2", Some("2.0"), cbcs.clone()).await).await;
    assert_v2_answer(&cbcs, &a, "2.0");
    let fairplay = a
        .doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == FP)
        .unwrap();
    let media = decode_text(&fairplay.hls_signaling[0].value);
    assert!(
        media.contains(r#"KEYFORMAT="com.apple.streamingkeydelivery""#),
        "{media}"
    );
    assert!(media.contains("skd://"), "{media}");
    assert!(fairplay.pssh.is_none(), "FairPlay has no PSSH");

    // PlayReady and Widevine HLS with cenc (CMAF, as MediaPackage signals it): SAMPLE-AES-CTR.
    let pr_hls_cenc = cbcs
        .replace(
            r#"commonEncryptionScheme="cbcs""#,
            r#"commonEncryptionScheme="cenc""#,
        )
        .replace(FP, WV)
        .replace("cbcs_test_001", "cenc_hls_test_001")
        .replace("1f083e4e-b831", "2f083e4e-b831")
        .replace("141fdd3a-7f5e", "241fdd3a-7f5e");
    let a = ok(post(&server, "/acme/speke/v2", Some("2.0"), pr_hls_cenc.clone()).await).await;
    assert_v2_answer(&pr_hls_cenc, &a, "2.0");
    let with_hls: Vec<_> = a
        .doc
        .drm_systems
        .iter()
        .flatten()
        .filter(|d| !d.hls_signaling.is_empty())
        .collect();
    assert!(
        with_hls
            .iter()
            .any(|d| d.system_id.as_written == crate::cpix::PR)
    );
    for d in with_hls {
        let media = decode_text(&d.hls_signaling[0].value);
        assert!(
            media.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,"),
            "{}: {media}",
            d.system_id.as_written
        );
    }
}

#[tokio::test]
async fn pssh_is_always_answered_for_iso_bmff_drms_in_v2() {
    let server = TestServer::start().await;
    // A DRMSystem that only asks for HLS still gets its PSSH (mandatory for ISO-BMFF output).
    let request = suite(GENERIC)
        .replace("<cpix:PSSH />", "")
        .replace("<cpix:ContentProtectionData />", "");
    let a = ok(post(&server, "/acme/speke/v2", Some("2.0"), request).await).await;
    for d in a.doc.drm_systems.iter().flatten() {
        assert!(d.pssh.as_deref().is_some_and(|p| !p.is_empty()));
        assert!(d.content_protection_data.is_none(), "not asked, not added");
        assert_eq!(d.hls_signaling.len(), 2);
    }
}

#[tokio::test]
async fn v1_hls_aes128_reference_request() {
    let server = TestServer::start().await;
    let request = suite("v1_request_hls_aes128_keyperiod.xml");
    let a = ok(post(&server, "/acme/speke/v1", None, request.clone()).await).await;
    assert!(
        header(&a, "speke-user-agent")
            .unwrap()
            .starts_with("keyplex/")
    );
    assert!(header(&a, "x-speke-version").is_none());
    // Content id from CPIX@id, echoed.
    assert_eq!(
        a.doc.id.as_deref(),
        Some("5E99137A-BD6C-4ECC-A24D-A3EE04B4E011")
    );
    let kid = "6c5f5206-7d98-4808-84d8-94f132c1e9fe";
    let keys = plain_keys(&a.doc);
    assert_eq!(keys[0].0.to_string(), kid);
    let drm = &a.doc.drm_systems.as_ref().unwrap()[0];
    assert_eq!(
        decode_text(drm.uri_ext_x_key.as_ref().unwrap()),
        server.url(&format!("/acme/hls/v1/keys/{kid}"))
    );
    let ext = |name: &str| {
        drm.extensions
            .iter()
            .find(|e| e.local_name == name)
            .map(|e| decode_text(&e.text))
    };
    assert_eq!(ext("KeyFormat").as_deref(), Some("identity"));
    assert_eq!(ext("KeyFormatVersions").as_deref(), Some("1"));
    // What HLS AES-128 does not have but was asked for stays in the answer, empty (as AWS's
    // reference server answers it), never with a wrong value.
    assert_eq!(ext("ProtectionHeader").as_deref(), Some(""));
    assert_eq!(drm.pssh.as_deref(), Some(""));
    assert_eq!(drm.content_protection_data.as_deref(), Some(""));
    assert!(a.text.contains("xmlns:speke=\"urn:aws:amazon:com:speke\""));
    assert_eq!(
        a.doc.periods,
        keyplex_cpix::read_document(request.as_bytes())
            .unwrap()
            .periods
    );
    // Deterministic; and the same on the CPIX route with X-Speke-Version 1.0.
    let again = ok(post(&server, "/acme/cpix", Some("1.0"), request).await).await;
    assert_eq!(plain_keys(&again.doc), keys);
    assert!(header(&again, "speke-user-agent").is_some());
}

#[tokio::test]
async fn v1_aws_documentation_live_request() {
    let server = TestServer::start().await;
    let request = v1_doc("live_request.xml");
    let a = ok(post(&server, "/acme/speke/v1", None, request).await).await;
    let keys = plain_keys(&a.doc);
    assert_eq!(keys.len(), 1);
    // The encryptor's explicitIV is kept.
    assert_eq!(B64.encode(keys[0].2), "OFj2IjCsPJFfMAxmQxLGPw==");
    let by_system = |id: &str| {
        a.doc
            .drm_systems
            .iter()
            .flatten()
            .find(|d| d.system_id.as_written == id)
            .unwrap()
    };
    let ext = |d: &keyplex_cpix::model::DrmSystemEntry, name: &str| {
        d.extensions
            .iter()
            .find(|e| e.local_name == name)
            .map(|e| decode_text(&e.text))
    };
    let fp = by_system(FP);
    assert!(decode_text(fp.uri_ext_x_key.as_ref().unwrap()).starts_with("skd://"));
    assert_eq!(
        ext(fp, "KeyFormat").as_deref(),
        Some("com.apple.streamingkeydelivery")
    );
    assert_eq!(ext(fp, "KeyFormatVersions").as_deref(), Some("1"));
    let aes = by_system("81376844-f976-481e-a84e-cc25d39b0b33");
    assert_eq!(ext(aes, "KeyFormat").as_deref(), Some("identity"));
    assert!(
        decode_text(aes.uri_ext_x_key.as_ref().unwrap())
            .ends_with("/acme/hls/v1/keys/98ee5596-cd3e-a20d-163a-e382420c6eff")
    );
    let wv = by_system(WV);
    assert!(wv.pssh.as_deref().is_some_and(|p| !p.is_empty()));
    let pr = by_system("9a04f079-9840-4286-ab92-e65be0885f95");
    let header_b64 = pr
        .extensions
        .iter()
        .find(|e| e.local_name == "ProtectionHeader")
        .unwrap()
        .text
        .clone();
    let pro = keyplex_drm::playready::PlayReadyObject::parse(&B64.decode(header_b64).unwrap());
    assert!(pro.is_ok(), "ProtectionHeader is a base64 PlayReady Object");
    assert!(pr.pssh.as_deref().is_some_and(|p| !p.is_empty()));
}

#[tokio::test]
async fn v1_kid_override_on_a_tenant_that_chooses_kids() {
    let server = TestServer::start().await;
    let requested = "11111111-1111-1111-1111-111111111111";
    let a = ok(post(
        &server,
        "/initech/speke/v1",
        None,
        v1_doc("kid_override_request.xml"),
    )
    .await)
    .await;
    let keys = plain_keys(&a.doc);
    let chosen = keys[0].0;
    assert_ne!(chosen.to_string(), requested);
    // Every reference follows the new kid.
    for d in a.doc.drm_systems.iter().flatten() {
        assert_eq!(d.kid.id, chosen);
    }
    for r in a.doc.usage_rules.iter().flatten() {
        assert_eq!(r.kid.id, chosen);
    }
    let again = ok(post(
        &server,
        "/initech/speke/v1",
        None,
        v1_doc("kid_override_request.xml"),
    )
    .await)
    .await;
    assert_eq!(plain_keys(&again.doc), keys);
}

#[tokio::test]
async fn v2_encrypted_keys_to_an_rsa_2048_certificate() {
    use keyplex_crypto::delivery::{DocumentKeys, RecipientKey, RecipientPrivateKey, WrappedKeys};
    let server = TestServer::start().await;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures");
    let cert = std::fs::read(fixtures.join("speke-recipient-2048.cer")).unwrap();
    assert_eq!(
        RecipientKey::from_certificate_der(&cert)
            .unwrap()
            .key_size_bits(),
        2048
    );
    let delivery = format!(
        r#"<cpix:DeliveryDataList><cpix:DeliveryData><cpix:DeliveryKey><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></cpix:DeliveryKey></cpix:DeliveryData></cpix:DeliveryDataList>"#,
        B64.encode(&cert)
    );
    let clear_request = suite(GENERIC);
    let request = clear_request.replacen(
        "<cpix:ContentKeyList>",
        &format!("{delivery}<cpix:ContentKeyList>"),
        1,
    );
    let a = ok(post(&server, "/acme/speke/v2", Some("2.0"), request).await).await;
    assert!(!a.text.contains("PlainValue"));
    let wrapped = a.doc.delivery_data.as_ref().unwrap()[0]
        .wrapped
        .clone()
        .unwrap();
    let private = RecipientPrivateKey::from_pkcs8_der(
        &std::fs::read(fixtures.join("speke-recipient-2048.pk8.der")).unwrap(),
    )
    .unwrap();
    let document_keys = DocumentKeys::unwrap_with(
        &private,
        &WrappedKeys {
            document_key_cipher: wrapped.document_key_cipher,
            mac_key_cipher: wrapped.mac_key_cipher,
        },
    )
    .unwrap();
    let decrypted: Vec<[u8; 16]> = a
        .doc
        .content_keys
        .iter()
        .flatten()
        .map(|k| {
            let Some(KeyValue::Encrypted {
                cipher_value,
                value_mac,
            }) = &k.value
            else {
                panic!("key {} not encrypted", k.kid.as_written)
            };
            *document_keys
                .decrypt_content_key(cipher_value, value_mac)
                .unwrap()
                .expose()
        })
        .collect();
    let clear = ok(post(&server, "/acme/speke/v2", Some("2.0"), clear_request).await).await;
    let clear_keys: Vec<[u8; 16]> = plain_keys(&clear.doc).iter().map(|k| k.1).collect();
    assert_eq!(decrypted, clear_keys);
}

/// A live SPEKE v2 request: VIDEO and AUDIO keys for two key periods.
fn rotation_request(version: &str, periods: &[(u64, &str)]) -> String {
    let mut keys = String::new();
    let mut drms = String::new();
    let mut period_list = String::new();
    let mut rules = String::new();
    for (index, extra) in periods {
        period_list.push_str(&format!(
            r#"<cpix:ContentKeyPeriod id="keyPeriod_{index}" index="{index}"{extra}/>"#
        ));
        for (n, (track, filter)) in [
            ("VIDEO", "<cpix:VideoFilter/>"),
            ("AUDIO", "<cpix:AudioFilter/>"),
        ]
        .into_iter()
        .enumerate()
        {
            let kid = format!("aaaaaaaa-0000-4000-8000-{index:08}{n:04}");
            keys.push_str(&format!(
                r#"<cpix:ContentKey kid="{kid}" commonEncryptionScheme="cbcs"/>"#
            ));
            drms.push_str(&format!(
                r#"<cpix:DRMSystem kid="{kid}" systemId="{WV}"><cpix:PSSH/><cpix:ContentProtectionData/><cpix:HLSSignalingData playlist="media"/><cpix:HLSSignalingData playlist="master"/></cpix:DRMSystem>"#
            ));
            rules.push_str(&format!(
                r#"<cpix:ContentKeyUsageRule kid="{kid}" intendedTrackType="{track}"><cpix:KeyPeriodFilter periodId="keyPeriod_{index}"/>{filter}</cpix:ContentKeyUsageRule>"#
            ));
        }
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cpix:CPIX contentId="live-rotation" version="{version}" xmlns:cpix="urn:dashif:org:cpix" xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc">
<cpix:ContentKeyList>{keys}</cpix:ContentKeyList>
<cpix:DRMSystemList>{drms}</cpix:DRMSystemList>
<cpix:ContentKeyPeriodList>{period_list}</cpix:ContentKeyPeriodList>
<cpix:ContentKeyUsageRuleList>{rules}</cpix:ContentKeyUsageRuleList>
</cpix:CPIX>"#
    )
}

#[tokio::test]
async fn v2_key_rotation_with_key_periods() {
    let server = TestServer::start().await;
    let request = rotation_request("2.3", &[(100, ""), (101, "")]);
    let a = ok(post(&server, "/acme/speke/v2", Some("2.0"), request.clone()).await).await;
    assert_v2_answer(&request, &a, "2.0");
    let keys = plain_keys(&a.doc);
    assert_eq!(keys.len(), 4);
    let distinct: std::collections::HashSet<[u8; 16]> = keys.iter().map(|k| k.1).collect();
    assert_eq!(distinct.len(), 4, "one key per track type and period");
    // Each DRMSystem's Widevine PSSH names its key's period.
    let mut indexes = Vec::new();
    for d in a.doc.drm_systems.iter().flatten() {
        let pssh = PsshBox::parse_all(&B64.decode(d.pssh.as_ref().unwrap()).unwrap()).unwrap();
        let data = keyplex_drm::widevine::WidevinePsshData::decode_from(&pssh[0].data).unwrap();
        indexes.push(data.crypto_period_index.unwrap());
    }
    assert_eq!(indexes, vec![100, 100, 101, 101]);
    // The next request (periods 101 and 102) gets period 101's keys again.
    let next = rotation_request("2.3", &[(101, ""), (102, "")]);
    let b = ok(post(&server, "/acme/speke/v2", Some("2.0"), next).await).await;
    assert_eq!(plain_keys(&b.doc)[..2], keys[2..]);
    // SPEKE 2.1: periods may also carry @start/@end; they are echoed unchanged.
    let v21 = rotation_request(
        "2.4",
        &[(
            102,
            r#" start="2030-01-01T00:00:00Z" end="2030-01-01T00:01:00Z""#,
        )],
    );
    let c = ok(post(&server, "/acme/speke/v2", Some("2.1"), v21.clone()).await).await;
    assert_v2_answer(&v21, &c, "2.1");
    assert_eq!(plain_keys(&c.doc)[..], plain_keys(&b.doc)[2..]);
}

/// SPEKE 2.1 (CPIX 2.4) live periods by time only: `@start`/`@end`, no `@index`.
#[tokio::test]
async fn v2_1_key_periods_by_start_and_end_time() {
    let server = TestServer::start().await;
    let by_time = |starts: &[&str]| {
        let periods: Vec<(u64, String)> = starts
            .iter()
            .enumerate()
            .map(|(i, start)| {
                (
                    200 + i as u64,
                    format!(r#" start="{start}" end="2030-01-01T01:00:00Z""#),
                )
            })
            .collect();
        let refs: Vec<(u64, &str)> = periods.iter().map(|(i, e)| (*i, e.as_str())).collect();
        let mut xml = rotation_request("2.4", &refs);
        for (i, _) in &periods {
            xml = xml.replace(&format!(r#" index="{i}""#), "");
        }
        assert!(!xml.contains(" index="));
        xml
    };
    let two = by_time(&["2030-01-01T00:00:00Z", "2030-01-01T00:01:00Z"]);
    // Packager-named kids: answered, periods echoed as sent.
    let a = ok(post(&server, "/acme/speke/v2", Some("2.1"), two.clone()).await).await;
    assert_v2_answer(&two, &a, "2.1");
    assert_eq!(plain_keys(&a.doc).len(), 4);
    // A tenant that chooses kids and rotates every 60 s: each period its own keys, and a
    // period named by another start within the same 60 s is the same period.
    let b = ok(post(&server, "/initech/speke/v2", Some("2.1"), two.clone()).await).await;
    let keys = plain_keys(&b.doc);
    let distinct: std::collections::HashSet<[u8; 16]> = keys.iter().map(|k| k.1).collect();
    assert_eq!(distinct.len(), 4, "two periods, two track types");
    let within = by_time(&["2030-01-01T00:00:30Z"]);
    let c = ok(post(&server, "/initech/speke/v2", Some("2.1"), within).await).await;
    assert_eq!(plain_keys(&c.doc)[..], keys[..2]);
}

#[tokio::test]
async fn speke_auth_and_tenants() {
    let server = TestServer::start().await;
    let request = suite(GENERIC);
    // No credentials, another tenant's, an unknown tenant.
    let resp = server
        .client
        .post(server.url("/acme/speke/v2"))
        .header("x-speke-version", "2.0")
        .body(request.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = server
        .client
        .post(server.url("/acme/speke/v2"))
        .basic_auth("packager", Some("s3cret-globex"))
        .header("x-speke-version", "2.0")
        .body(request.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        post(&server, "/nobody/speke/v1", None, request.clone())
            .await
            .status(),
        404
    );
    // Authentication comes before the version check: no information for strangers.
    let resp = server
        .client
        .post(server.url("/acme/speke/v2"))
        .header("x-speke-version", "9.9")
        .body(request)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

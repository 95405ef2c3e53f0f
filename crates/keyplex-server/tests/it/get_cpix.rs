//! GET-style CPIX (`GET /{tenant}/cpix/{dash|hls}/{content_id}`): the document, the token in
//! the header or (when allowed) the path, 401 vs 403, bad input, periods and schemes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_cpix::model::{CpixDocument, Playlist};
use keyplex_drm::pssh::PsshBox;
use keyplex_types::EncryptionScheme;

use crate::common::TestServer;
use crate::cpix::{CK, COMMON, FP, PR, WV, ok_document, plain_keys};
use crate::nagra::start;

const VOD_TOKEN: &str = "get-token-of-vod-0123456789";
const PLAIN_TOKEN: &str = "get-token-of-plain-0123456789";

async fn get(server: &TestServer, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = server.client.get(server.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn status_and_text(resp: reqwest::Response) -> (u16, String) {
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn systems(doc: &CpixDocument) -> Vec<String> {
    doc.drm_systems
        .iter()
        .flatten()
        .map(|d| d.system_id.as_written.clone())
        .collect()
}

fn scheme(doc: &CpixDocument) -> Option<EncryptionScheme> {
    doc.content_keys.as_ref().unwrap()[0].common_encryption_scheme
}

#[tokio::test]
async fn dash_document_has_widevine_playready_clearkey_and_common_pssh() {
    let server = start().await;
    let resp = get(&server, "/plain/cpix/dash/movie-1", Some(PLAIN_TOKEN)).await;
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap(),
        "no-store"
    );
    let doc = ok_document(resp).await;
    assert_eq!(doc.content_id.as_deref(), Some("movie-1"));
    assert_eq!(systems(&doc), vec![WV, PR, CK, COMMON]);
    assert_eq!(scheme(&doc), Some(EncryptionScheme::Cenc));
    let keys = plain_keys(&doc);
    assert_eq!(keys.len(), 1);
    let kid = keys[0].0;
    let rule = &doc.usage_rules.as_ref().unwrap()[0];
    assert_eq!(rule.intended_track_type.as_deref(), Some("ALL"));
    assert!(doc.periods.is_none(), "VOD by default");
    for d in doc.drm_systems.iter().flatten() {
        assert_eq!(d.kid.id, kid);
        let boxes = PsshBox::parse_all(&B64.decode(d.pssh.as_ref().unwrap()).unwrap()).unwrap();
        // DASH-IF Clear Key carries the W3C common pssh (what Chromium's Clear Key reads).
        let box_system = if d.system_id.as_written == CK {
            COMMON
        } else {
            d.system_id.as_written.as_str()
        };
        assert_eq!(boxes[0].system_id.to_string(), box_system);
        assert!(boxes[0].key_ids.is_empty() || boxes[0].key_ids == vec![kid]);
        let cpd = String::from_utf8(
            B64.decode(d.content_protection_data.as_ref().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(!cpd.is_empty());
        assert!(d.hls_signaling.is_empty());
    }
    // The ClearKey descriptor points at keyplex's ClearKey licence URL.
    let ck = doc
        .drm_systems
        .iter()
        .flatten()
        .find(|d| d.system_id.as_written == CK)
        .unwrap();
    let cpd = String::from_utf8(
        B64.decode(ck.content_protection_data.as_ref().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(cpd.contains("/plain/clearkey/v1/licenses"), "{cpd}");

    // Asking again gives the same key.
    let again =
        ok_document(get(&server, "/plain/cpix/dash/movie-1", Some(PLAIN_TOKEN)).await).await;
    assert_eq!(plain_keys(&again), keys);
}

#[tokio::test]
async fn hls_document_has_fairplay_and_widevine_in_cbcs() {
    let server = start().await;
    let doc = ok_document(get(&server, "/vod/cpix/hls/movie-2", Some(VOD_TOKEN)).await).await;
    assert_eq!(systems(&doc), vec![FP, WV]);
    assert_eq!(scheme(&doc), Some(EncryptionScheme::Cbcs));
    let kid = plain_keys(&doc)[0].0;
    for d in doc.drm_systems.iter().flatten() {
        let lines: Vec<(Option<Playlist>, String)> = d
            .hls_signaling
            .iter()
            .map(|h| {
                (
                    h.playlist,
                    String::from_utf8(B64.decode(&h.value).unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].0, Some(Playlist::Media));
        assert!(lines[0].1.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,"));
        assert_eq!(lines[1].0, Some(Playlist::Master));
        assert!(
            lines[1]
                .1
                .starts_with("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,")
        );
        assert!(d.content_protection_data.is_none());
    }
    let fp = &doc.drm_systems.as_ref().unwrap()[0];
    assert_eq!(
        String::from_utf8(B64.decode(fp.uri_ext_x_key.as_ref().unwrap()).unwrap()).unwrap(),
        format!("skd://{kid}")
    );
    // Widevine keeps its pssh (fMP4 init segments).
    assert!(doc.drm_systems.as_ref().unwrap()[1].pssh.is_some());

    // The same content through DASH is the same key (one key per content).
    let dash = ok_document(get(&server, "/vod/cpix/dash/movie-2", Some(VOD_TOKEN)).await).await;
    assert_eq!(plain_keys(&dash), plain_keys(&doc));
}

#[tokio::test]
async fn scheme_and_period_parameters() {
    let server = start().await;
    let cbcs = ok_document(
        get(
            &server,
            "/plain/cpix/dash/movie-3?scheme=cbcs",
            Some(PLAIN_TOKEN),
        )
        .await,
    )
    .await;
    assert_eq!(scheme(&cbcs), Some(EncryptionScheme::Cbcs));
    let vod = plain_keys(&cbcs);

    let p7 = ok_document(
        get(
            &server,
            "/plain/cpix/dash/movie-3?period=7",
            Some(PLAIN_TOKEN),
        )
        .await,
    )
    .await;
    let period = &p7.periods.as_ref().unwrap()[0];
    assert_eq!(period.index, Some(7));
    let rule = &p7.usage_rules.as_ref().unwrap()[0];
    assert_eq!(
        rule.key_period_filters[0].period_id,
        period.id.clone().unwrap()
    );
    assert_ne!(
        plain_keys(&p7)[0].0,
        vod[0].0,
        "a live period has its own key"
    );
    let p7_again = ok_document(
        get(
            &server,
            "/plain/cpix/hls/movie-3?period=7",
            Some(PLAIN_TOKEN),
        )
        .await,
    )
    .await;
    assert_eq!(plain_keys(&p7_again), plain_keys(&p7));
    let last = ok_document(
        get(
            &server,
            "/plain/cpix/dash/movie-3?period=4294967295",
            Some(PLAIN_TOKEN),
        )
        .await,
    )
    .await;
    assert_eq!(last.periods.as_ref().unwrap()[0].index, Some(4_294_967_295));

    // A key is scheme-free: HLS with cenc answers FairPlay (SAMPLE-AES) and Widevine
    // (SAMPLE-AES-CTR) for the same key.
    let (status, text) = status_and_text(
        get(
            &server,
            "/plain/cpix/hls/movie-3?scheme=cenc",
            Some(PLAIN_TOKEN),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    for (path, expected) in [
        ("/plain/cpix/dash/movie-3?scheme=ctr", "scheme"),
        ("/plain/cpix/dash/movie-3?period=-1", "period"),
        ("/plain/cpix/dash/movie-3?period=soon", "period"),
        // Beyond 2^32 - 1, the bound of every route (CPIX @index, Widevine): the store
        // could not hold 2^63, and used to fail the whole write batch with it.
        ("/plain/cpix/dash/movie-3?period=4294967296", "4294967295"),
        (
            "/plain/cpix/dash/movie-3?period=9223372036854775808",
            "4294967295",
        ),
        ("/plain/cpix/smooth/movie-3", "format"),
        ("/plain/cpix/dash/bad%20id", "content id"),
    ] {
        let (status, text) = status_and_text(get(&server, path, Some(PLAIN_TOKEN)).await).await;
        assert_eq!(status, 400, "{path}: {text}");
        assert!(
            text.to_lowercase().contains(&expected.to_lowercase()),
            "{path}: {text}"
        );
    }
}

#[tokio::test]
async fn token_in_the_header() {
    let server = start().await;
    let path = "/plain/cpix/dash/movie-4";
    let resp = get(&server, path, None).await;
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(resp.status(), 401);
    assert_eq!(get(&server, path, Some("wrong-token")).await.status(), 401);
    assert_eq!(get(&server, path, Some("")).await.status(), 401);
    // Packager Basic credentials are not the GET token.
    let resp = server
        .client
        .get(server.url(path))
        .basic_auth("packager", Some("s3cret-plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Another tenant's token: 403.
    let (status, text) = status_and_text(get(&server, path, Some(VOD_TOKEN)).await).await;
    assert_eq!(status, 403, "{text}");
    // A tenant without get_token: 401 (GET-style CPIX is off), another's token still 403.
    assert_eq!(
        get(&server, "/fast/cpix/dash/movie-4", Some("anything"))
            .await
            .status(),
        401
    );
    assert_eq!(
        get(&server, "/fast/cpix/dash/movie-4", Some(PLAIN_TOKEN))
            .await
            .status(),
        403
    );
    assert_eq!(
        get(&server, "/nobody/cpix/dash/movie-4", Some(PLAIN_TOKEN))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn token_in_the_path_only_when_the_tenant_allows_it() {
    let server = start().await;
    let doc = ok_document(
        get(
            &server,
            &format!("/vod/cpix/dash/movie-5/{VOD_TOKEN}"),
            None,
        )
        .await,
    )
    .await;
    let header_doc =
        ok_document(get(&server, "/vod/cpix/dash/movie-5", Some(VOD_TOKEN)).await).await;
    assert_eq!(plain_keys(&doc), plain_keys(&header_doc));

    assert_eq!(
        get(&server, "/vod/cpix/dash/movie-5/wrong-token", None)
            .await
            .status(),
        401
    );
    assert_eq!(
        get(
            &server,
            &format!("/vod/cpix/dash/movie-5/{PLAIN_TOKEN}"),
            None
        )
        .await
        .status(),
        403
    );
    // `plain` keeps tokens out of URLs: even its own token is refused there.
    let (status, text) = status_and_text(
        get(
            &server,
            &format!("/plain/cpix/dash/movie-5/{PLAIN_TOKEN}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 401);
    assert!(text.contains("get_token_in_path"), "{text}");
}

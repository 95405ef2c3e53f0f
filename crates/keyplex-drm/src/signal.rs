//! The one entry point every key API (CPIX, SPEKE, NAGRA-style JSON, Widevine API, GET CPIX)
//! calls: given a DRM system, the keys and a few tenant options, build every form of
//! signaling that system has (pssh, MPD, HLS, Smooth Streaming). Keeping the rules here means
//! all interfaces signal a key identically.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{ContentKeyValue, EncryptionScheme, Iv, KeyId};

use crate::clearkey::common_pssh;
use crate::dash::{content_protection_data, drm_content_protection_element};
use crate::define::{DrmDefinition, DrmIdentity};
use crate::fairplay::skd_uri;
use crate::hls::{
    HlsKeyLine, HlsMethod, KEYFORMAT_CLEARKEY, KEYFORMAT_FAIRPLAY, KEYFORMAT_IDENTITY,
    KEYFORMAT_PLAYREADY, KEYFORMAT_WIDEVINE,
};
use crate::playready::{PlayReadyObject, playready_header_for};
use crate::template::{Template, TemplateValues};
use crate::widevine::widevine_pssh;
use crate::{DrmError, DrmSystem, PsshBox};

/// One key to signal. The first key passed to [`signal`] is the default (current) key.
#[derive(Clone, Copy, Debug)]
pub struct SignalKey<'a> {
    pub kid: KeyId,
    pub key: &'a ContentKeyValue,
    pub iv: Iv,
}

/// What the signaling depends on besides the keys.
#[derive(Clone, Copy, Debug)]
pub struct SignalOptions<'a> {
    pub scheme: EncryptionScheme,
    /// Written into Widevine's `content_id` (as UTF-8 bytes) when not empty.
    pub content_id: &'a str,
    pub widevine_provider: Option<&'a str>,
    /// `LA_URL` of the PlayReady header.
    pub playready_la_url: Option<&'a str>,
    /// `dashif:Laurl` of the Clear Key `ContentProtection`.
    pub clearkey_la_url: Option<&'a str>,
    /// URI for HLS identity keys (AES-128, clear SAMPLE-AES); `{kid}` in it is replaced by
    /// the key id (8-4-4-4-12).
    pub hls_aes128_key_url: Option<&'a str>,
    pub crypto_period_index: Option<u32>,
    /// The key's track type (`SD`, `HD`, `AUDIO`…), for the `{track_type}` placeholder of
    /// templates.
    pub track_type: Option<&'a str>,
    /// The FairPlay key URI (`fairplay_uri_template`); `None`: `skd://<kid as UUID>`.
    pub fairplay_uri: Option<&'a Template>,
    /// Which forms to build. The PSSH box is always built (every other form derives from
    /// it); skipping unwanted forms saves the base64 and XML work on hot request paths.
    pub forms: SignalForms,
}

/// The forms of signaling a caller wants besides the PSSH box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalForms {
    /// `content_protection_data` and `content_protection_element`.
    pub dash: bool,
    /// `hls_*` fields.
    pub hls: bool,
    /// `smooth_streaming_header`.
    pub smooth: bool,
}

impl SignalForms {
    pub const ALL: Self = Self {
        dash: true,
        hls: true,
        smooth: true,
    };
}

/// Every form of signaling of one DRM system for a set of keys. `None` means the system has
/// no such form (or, for HLS, not for this scheme).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DrmSignaling {
    /// The built-in system of this id (`None` for a tenant-defined one).
    pub system: Option<DrmSystem>,
    pub system_id: uuid::Uuid,
    /// Full pssh box(es) for ISO-BMFF init segments and CPIX `PSSH`.
    pub pssh: Option<Vec<u8>>,
    /// CPIX `ContentProtectionData`: the inner XML of the DASH descriptor, standalone.
    pub content_protection_data: Option<String>,
    /// The full DASH `<ContentProtection>` element.
    pub content_protection_element: Option<String>,
    /// The `EXT-X-KEY` URI value (CPIX `URIExtXKey`, NAGRA `keyUri`).
    pub hls_key_uri: Option<String>,
    pub hls_keyformat: Option<String>,
    pub hls_keyformatversions: Option<String>,
    /// The `#EXT-X-KEY:…` line (media playlist).
    pub hls_media: Option<String>,
    /// The `#EXT-X-SESSION-KEY:…` line (multivariant playlist).
    pub hls_master: Option<String>,
    /// base64 PlayReady Object: the Smooth Streaming `ProtectionHeader` text.
    pub smooth_streaming_header: Option<String>,
}

/// Builds the signaling of `system` for `keys` (the first is the default key).
///
/// * Widevine: v0 pssh (all key ids, provider, content id, `protection_scheme` unless cenc,
///   `crypto_period_index`); DASH `cenc:pssh`; HLS `SAMPLE-AES` (cbcs) or `SAMPLE-AES-CTR`
///   (cenc) with the box as a data URI and `KEYID`; no HLS for cens/cbc1.
/// * PlayReady: header per [`playready_header_for`], v0 pssh (Shaka style); DASH `cenc:pssh`
///   and `mspr:pro`; HLS `SAMPLE-AES` (cbcs) or `SAMPLE-AES-CTR` (cenc) with the PRO as a
///   UTF-16 data URI; Smooth Streaming header.
/// * FairPlay (both ids): HLS only, `SAMPLE-AES`, `skd://<kid>` or the tenant's
///   `fairplay_uri` template; the IV travels in the CKC.
/// * W3C common system: v1 pssh of all key ids; DASH `cenc:pssh`.
/// * DASH-IF Clear Key: the common pssh as `pssh` (Chromium needs init data); DASH
///   descriptor with `dashif:Laurl` only (players derive init data from `default_KID`), so
///   `content_protection_data` is `None` without a licence URL; HLS for cbcs/cenc as
///   `SAMPLE-AES`/`SAMPLE-AES-CTR` with `KEYFORMAT="org.w3.clearkey"`, `KEYID` and a data
///   URI holding the 16 key-id bytes (hls.js takes the key id from such a URI).
/// * Clear Key AES-128 and AWS HLS AES-128: `METHOD=AES-128` with the key URL, `IV` and
///   `KEYFORMAT="identity"`; the CENC scheme does not apply to whole-segment encryption.
/// * Clear Key SAMPLE-AES: the same with `METHOD=SAMPLE-AES`, cbcs only.
/// * Nagra PRM: keyplex's default definition ([`DrmDefinition::nagra_prm`]): v0 pssh whose
///   data is base64url of `{"contentId":…,"keyId":…}` (the form the public parsers
///   `pssh-box` and SwPSSH read; [`crate::nagra`]); DASH `cenc:pssh`; HLS as Widevine's
///   (the box as a data URI, `KEYFORMAT="urn:uuid:<system id>"`).
/// * Marlin is not supported.
pub fn signal(
    system: DrmSystem,
    keys: &[SignalKey<'_>],
    opts: &SignalOptions<'_>,
) -> Result<DrmSignaling, DrmError> {
    let first = keys.first().ok_or(DrmError::NoKeys)?;
    let kids: Vec<KeyId> = keys.iter().map(|k| k.kid).collect();
    let scheme = opts.scheme;
    let mut out = DrmSignaling {
        system: Some(system),
        system_id: system.system_id(),
        pssh: None,
        content_protection_data: None,
        content_protection_element: None,
        hls_key_uri: None,
        hls_keyformat: None,
        hls_keyformatversions: None,
        hls_media: None,
        hls_master: None,
        smooth_streaming_header: None,
    };
    match system {
        DrmSystem::Widevine => {
            let content_id = Some(opts.content_id.as_bytes()).filter(|c| !c.is_empty());
            let scheme_field = (scheme != EncryptionScheme::Cenc).then_some(scheme);
            let pssh = widevine_pssh(
                &kids,
                opts.widevine_provider,
                content_id,
                scheme_field,
                opts.crypto_period_index,
            );
            set_dash(opts.forms, &mut out, system, &pssh, None, None);
            set_pssh_hls(
                opts,
                &mut out,
                &pssh,
                first.kid,
                KEYFORMAT_WIDEVINE.to_owned(),
            );
            out.pssh = Some(pssh.to_bytes());
        }
        DrmSystem::PlayReady => {
            let pairs: Vec<(KeyId, &ContentKeyValue)> =
                keys.iter().map(|k| (k.kid, k.key)).collect();
            let header = playready_header_for(&pairs, scheme, opts.playready_la_url);
            header.validate()?;
            // One PlayReady Object serves the pssh box (v0, Shaka style), DASH, HLS and MSS.
            let pro = PlayReadyObject::from_header(&header).to_bytes()?;
            let pssh = PsshBox::v0(system.system_id(), pro.clone());
            // HLS carries PlayReady in CMAF: SAMPLE-AES for cbcs, SAMPLE-AES-CTR for cenc
            // (AWS MediaPackage signals both; the URI is the PRO, not the pssh box).
            let hls_method = HlsMethod::for_scheme(scheme);
            let needs_b64 = opts.forms.smooth || (opts.forms.hls && hls_method.is_some());
            let pro_b64 = if needs_b64 {
                B64.encode(&pro)
            } else {
                String::new()
            };
            set_dash(opts.forms, &mut out, system, &pssh, Some(&pro), None);
            if let Some(method) = hls_method {
                set_hls(
                    opts.forms,
                    &mut out,
                    &HlsKeyLine {
                        method,
                        uri: format!("data:text/plain;charset=UTF-16;base64,{pro_b64}"),
                        iv: None,
                        key_id: None,
                        keyformat: Some(KEYFORMAT_PLAYREADY.to_owned()),
                        keyformatversions: Some("1".to_owned()),
                    },
                );
            }
            if opts.forms.smooth {
                out.smooth_streaming_header = Some(pro_b64);
            }
            out.pssh = Some(pssh.to_bytes());
        }
        // FairPlay content is cbcs, but the key itself is scheme-free: a key requested with
        // another scheme (plain CPIX lets a packager do that) still gets FairPlay's signaling.
        // SPEKE v2 refuses the combination before this (AWS's rule and message).
        DrmSystem::FairPlay | DrmSystem::FairPlayLegacy => {
            let uri = match opts.fairplay_uri {
                Some(template) => template.expand(&TemplateValues {
                    kid: first.kid,
                    content_id: opts.content_id,
                    period: opts.crypto_period_index.map(u64::from),
                    track_type: opts.track_type,
                    la_url: None,
                    pssh: None,
                    pssh_data: None,
                }),
                None => skd_uri(&first.kid),
            };
            set_hls(
                opts.forms,
                &mut out,
                &HlsKeyLine {
                    method: HlsMethod::SampleAes,
                    uri,
                    iv: None,
                    key_id: None,
                    keyformat: Some(KEYFORMAT_FAIRPLAY.to_owned()),
                    keyformatversions: Some("1".to_owned()),
                },
            );
        }
        DrmSystem::CommonPssh => {
            let pssh = common_pssh(&kids);
            set_dash(opts.forms, &mut out, system, &pssh, None, None);
            out.pssh = Some(pssh.to_bytes());
        }
        DrmSystem::ClearKeyDashIf => {
            out.pssh = Some(common_pssh(&kids).to_bytes());
            let la_url = opts.clearkey_la_url.filter(|u| !u.is_empty());
            if opts.forms.dash {
                out.content_protection_element =
                    Some(drm_content_protection_element(system, None, None, la_url));
                out.content_protection_data =
                    la_url.map(|u| content_protection_data(system, None, None, Some(u)));
            }
            if let Some(method) = HlsMethod::for_scheme(scheme) {
                set_hls(
                    opts.forms,
                    &mut out,
                    &HlsKeyLine {
                        method,
                        uri: format!(
                            "data:text/plain;base64,{}",
                            B64.encode(first.kid.as_bytes())
                        ),
                        iv: None,
                        key_id: Some(first.kid),
                        keyformat: Some(KEYFORMAT_CLEARKEY.to_owned()),
                        keyformatversions: Some("1".to_owned()),
                    },
                );
            }
        }
        DrmSystem::ClearKeyAes128 | DrmSystem::AwsHlsAes128 | DrmSystem::ClearKeySampleAes => {
            let method = if system == DrmSystem::ClearKeySampleAes {
                require_scheme(system, scheme, &[EncryptionScheme::Cbcs])?;
                HlsMethod::SampleAes
            } else {
                HlsMethod::Aes128
            };
            let url = opts.hls_aes128_key_url.filter(|u| !u.is_empty()).ok_or(
                DrmError::MissingOption {
                    system,
                    option: "an HLS key URL",
                },
            )?;
            set_hls(
                opts.forms,
                &mut out,
                &HlsKeyLine {
                    method,
                    uri: url.replace("{kid}", &first.kid.to_string()),
                    iv: Some(first.iv),
                    key_id: None,
                    keyformat: Some(KEYFORMAT_IDENTITY.to_owned()),
                    keyformatversions: Some("1".to_owned()),
                },
            );
        }
        // keyplex's default definition of PRM ([`DrmDefinition::nagra_prm`]); a tenant's
        // own definition replaces it before this is called.
        DrmSystem::NagraPrm => {
            return Ok(DrmDefinition::nagra_prm().render(first.kid, &kids, opts));
        }
        DrmSystem::Marlin => return Err(DrmError::UnsupportedSystem { system }),
    }
    Ok(out)
}

/// [`signal`] for a built-in or tenant-defined system (a definition's rendering cannot fail;
/// only an empty key list can).
pub fn signal_drm(
    drm: &DrmIdentity,
    keys: &[SignalKey<'_>],
    opts: &SignalOptions<'_>,
) -> Result<DrmSignaling, DrmError> {
    match drm {
        DrmIdentity::BuiltIn(system) => signal(*system, keys, opts),
        DrmIdentity::Defined(definition) => {
            let first = keys.first().ok_or(DrmError::NoKeys)?;
            let kids: Vec<KeyId> = keys.iter().map(|k| k.kid).collect();
            Ok(definition.render(first.kid, &kids, opts))
        }
    }
}

fn require_scheme(
    system: DrmSystem,
    scheme: EncryptionScheme,
    allowed: &[EncryptionScheme],
) -> Result<(), DrmError> {
    if allowed.contains(&scheme) {
        Ok(())
    } else {
        Err(DrmError::SchemeNotSupported { system, scheme })
    }
}

fn set_dash(
    forms: SignalForms,
    out: &mut DrmSignaling,
    system: DrmSystem,
    pssh: &PsshBox,
    pro: Option<&[u8]>,
    la_url: Option<&str>,
) {
    if !forms.dash {
        return;
    }
    out.content_protection_data = Some(content_protection_data(system, Some(pssh), pro, la_url));
    out.content_protection_element = Some(drm_content_protection_element(
        system,
        Some(pssh),
        pro,
        la_url,
    ));
}

/// HLS signaling of a pssh-box DRM for the scheme's sample-encryption method (none for cens
/// and cbc1).
fn set_pssh_hls(
    opts: &SignalOptions<'_>,
    out: &mut DrmSignaling,
    pssh: &PsshBox,
    kid: KeyId,
    keyformat: String,
) {
    if let Some(method) = HlsMethod::for_scheme(opts.scheme)
        && opts.forms.hls
    {
        let line = HlsKeyLine::pssh_data_uri(method, &pssh.to_base64(), kid, keyformat);
        set_hls(opts.forms, out, &line);
    }
}

fn set_hls(forms: SignalForms, out: &mut DrmSignaling, line: &HlsKeyLine) {
    if !forms.hls {
        return;
    }
    out.hls_key_uri = Some(line.uri.clone());
    out.hls_keyformat = line.keyformat.clone();
    out.hls_keyformatversions = line.keyformatversions.clone();
    out.hls_media = Some(line.to_ext_x_key());
    out.hls_master = Some(line.to_ext_x_session_key());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::playready::{AlgId, PlayReadyHeaderVersion};
    use crate::widevine::WidevinePsshData;

    fn key(hex_text: &str) -> ContentKeyValue {
        ContentKeyValue::from_slice(&hex::decode(hex_text).unwrap()).unwrap()
    }

    fn opts(scheme: EncryptionScheme) -> SignalOptions<'static> {
        SignalOptions {
            scheme,
            content_id: "",
            widevine_provider: None,
            playready_la_url: None,
            clearkey_la_url: None,
            hls_aes128_key_url: None,
            crypto_period_index: None,
            track_type: None,
            fairplay_uri: None,
            forms: SignalForms::ALL,
        }
    }

    const KID6: &str = "b4c3188b-eddd-453d-9bc2-1cbca7566239";

    #[test]
    fn widevine_cenc_reproduces_complex_xml_except_the_scheme_field() {
        let k = key("6f5a64c5d358a8fc658d5ebc82885673");
        let keys = [SignalKey {
            kid: KID6.parse().unwrap(),
            key: &k,
            iv: Iv::from_bytes([0; 16]),
        }];
        let s = signal(DrmSystem::Widevine, &keys, &opts(EncryptionScheme::Cenc)).unwrap();
        // Axinom also writes protection_scheme=cenc; keyplex omits it (absent means cenc).
        let expected_box = "AAAAMnBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABISELTDGIvt3UU9m8IcvKdWYjk=";
        assert_eq!(B64.encode(s.pssh.as_ref().unwrap()), expected_box);
        assert_eq!(
            s.content_protection_data.as_deref(),
            Some(
                format!(r#"<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">{expected_box}</cenc:pssh>"#)
                    .as_str()
            )
        );
        assert_eq!(
            s.hls_media.as_deref(),
            Some(format!(
                "#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI=\"data:text/plain;base64,{expected_box}\",KEYID=0xB4C3188BEDDD453D9BC21CBCA7566239,KEYFORMAT=\"urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed\",KEYFORMATVERSIONS=\"1\""
            ).as_str())
        );
        assert!(
            s.hls_master
                .as_deref()
                .unwrap()
                .starts_with("#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES-CTR,")
        );
        assert_eq!(
            s.hls_keyformat.as_deref(),
            Some(crate::hls::KEYFORMAT_WIDEVINE)
        );
        assert_eq!(s.smooth_streaming_header, None);
    }

    #[test]
    fn widevine_cbcs_sets_every_option() {
        let k = key("6f5a64c5d358a8fc658d5ebc82885673");
        let k2 = key("00112233445566778899aabbccddeeff");
        let kid2 = KeyId::from_bytes([7; 16]);
        let keys = [
            SignalKey {
                kid: KID6.parse().unwrap(),
                key: &k,
                iv: Iv::from_bytes([0; 16]),
            },
            SignalKey {
                kid: kid2,
                key: &k2,
                iv: Iv::from_bytes([0; 16]),
            },
        ];
        let o = SignalOptions {
            content_id: "movie-1",
            widevine_provider: Some("acme"),
            crypto_period_index: Some(42),
            ..opts(EncryptionScheme::Cbcs)
        };
        let s = signal(DrmSystem::Widevine, &keys, &o).unwrap();
        let (b, _) = PsshBox::parse(s.pssh.as_ref().unwrap()).unwrap();
        assert_eq!(b.version, 0);
        let d = WidevinePsshData::decode_from(&b.data).unwrap();
        assert_eq!(d.key_ids(), vec![KID6.parse().unwrap(), kid2]);
        assert_eq!(d.provider.as_deref(), Some("acme"));
        assert_eq!(d.content_id.as_deref(), Some(&b"movie-1"[..]));
        assert_eq!(d.scheme(), Some(EncryptionScheme::Cbcs));
        assert_eq!(d.crypto_period_index, Some(42));
        let media = s.hls_media.unwrap();
        assert!(media.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,"));
        assert!(
            media.contains(",KEYID=0xB4C3188BEDDD453D9BC21CBCA7566239,"),
            "first key is the default"
        );

        let cens = signal(DrmSystem::Widevine, &keys, &opts(EncryptionScheme::Cens)).unwrap();
        assert!(cens.pssh.is_some() && cens.hls_media.is_none());
    }

    #[test]
    fn playready_single_cenc_key_is_4_0_with_checksum() {
        let kid: KeyId = "09e091ab-f838-41d2-9e35-58531fd19ec7".parse().unwrap();
        let k = key("9cb061164b7013eaefcc7d6d18424c2c");
        let keys = [SignalKey {
            kid,
            key: &k,
            iv: Iv::from_bytes([0; 16]),
        }];
        let o = SignalOptions {
            playready_la_url: Some("https://pr.example/rightsmanager.asmx"),
            ..opts(EncryptionScheme::Cenc)
        };
        let s = signal(DrmSystem::PlayReady, &keys, &o).unwrap();
        let (b, _) = PsshBox::parse(s.pssh.as_ref().unwrap()).unwrap();
        assert_eq!((b.version, b.system()), (0, Some(DrmSystem::PlayReady)));
        let pro = PlayReadyObject::parse(&b.data).unwrap();
        let header = pro.header().unwrap().unwrap();
        assert_eq!(header.version, PlayReadyHeaderVersion::V4_0);
        assert_eq!(
            header.kids[0].checksum.map(|c| B64.encode(c)).as_deref(),
            Some("w+OZVr8vzrQ=")
        );
        assert_eq!(
            header.la_url.as_deref(),
            Some("https://pr.example/rightsmanager.asmx")
        );
        let pro_b64 = B64.encode(&b.data);
        assert_eq!(s.smooth_streaming_header.as_deref(), Some(pro_b64.as_str()));
        let cpd = s.content_protection_data.unwrap();
        assert!(cpd.starts_with(r#"<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">"#));
        assert!(cpd.ends_with(&format!(
            r#"<mspr:pro xmlns:mspr="urn:microsoft:playready">{pro_b64}</mspr:pro>"#
        )));
        assert!(
            s.content_protection_element
                .unwrap()
                .contains(r#"value="MSPR 2.0""#)
        );
        assert!(
            s.hls_media.unwrap().starts_with(
                "#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,KEYFORMAT=\"com.microsoft.playready\""
            ),
            "PlayReady HLS for cenc is SAMPLE-AES-CTR"
        );
    }

    #[test]
    fn playready_cbcs_is_4_3_and_signals_hls() {
        let kid: KeyId = "09e091ab-f838-41d2-9e35-58531fd19ec7".parse().unwrap();
        let k = key("9cb061164b7013eaefcc7d6d18424c2c");
        let keys = [SignalKey {
            kid,
            key: &k,
            iv: Iv::from_bytes([0; 16]),
        }];
        let s = signal(DrmSystem::PlayReady, &keys, &opts(EncryptionScheme::Cbcs)).unwrap();
        let pro_b64 = s.smooth_streaming_header.clone().unwrap();
        let header = PlayReadyObject::parse(&B64.decode(&pro_b64).unwrap())
            .unwrap()
            .header()
            .unwrap()
            .unwrap();
        assert_eq!(header.version, PlayReadyHeaderVersion::V4_3);
        assert_eq!(
            (header.kids[0].algid, header.kids[0].checksum),
            (Some(AlgId::AesCbc), None)
        );
        assert_eq!(
            s.hls_media.as_deref(),
            Some(format!("#EXT-X-KEY:METHOD=SAMPLE-AES,KEYFORMAT=\"com.microsoft.playready\",KEYFORMATVERSIONS=\"1\",URI=\"data:text/plain;charset=UTF-16;base64,{pro_b64}\"").as_str())
        );
        assert_eq!(
            s.hls_key_uri,
            Some(format!("data:text/plain;charset=UTF-16;base64,{pro_b64}"))
        );
    }

    #[test]
    fn fairplay_is_hls_only_and_cbcs_only() {
        let k = key("6f5a64c5d358a8fc658d5ebc82885673");
        let keys = [SignalKey {
            kid: KID6.parse().unwrap(),
            key: &k,
            iv: Iv::from_bytes([1; 16]),
        }];
        let s = signal(DrmSystem::FairPlay, &keys, &opts(EncryptionScheme::Cbcs)).unwrap();
        assert_eq!(
            s.hls_media.as_deref(),
            Some(
                r#"#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://b4c3188b-eddd-453d-9bc2-1cbca7566239",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1""#
            )
        );
        assert_eq!(
            s.hls_master.as_deref(),
            Some(
                r#"#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://b4c3188b-eddd-453d-9bc2-1cbca7566239",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1""#
            )
        );
        assert_eq!(
            (
                s.pssh,
                s.content_protection_data,
                s.content_protection_element
            ),
            (None, None, None)
        );
        // The key is scheme-free: a cenc key still gets FairPlay's signaling (SAMPLE-AES).
        for scheme in [EncryptionScheme::Cenc, EncryptionScheme::Cens] {
            let other = signal(DrmSystem::FairPlayLegacy, &keys, &opts(scheme)).unwrap();
            assert_eq!(other.hls_media, s.hls_media, "{scheme:?}");
        }
        // The tenant's template (PallyCon's KSM reads skd://<base64 kid>).
        let template = crate::template::Template::parse(
            "skd://{kid_base64}",
            crate::template::FAIRPLAY_URI_PLACEHOLDERS,
        )
        .unwrap();
        let o = SignalOptions {
            fairplay_uri: Some(&template),
            ..opts(EncryptionScheme::Cbcs)
        };
        let pallycon = signal(DrmSystem::FairPlay, &keys, &o).unwrap();
        assert_eq!(
            pallycon.hls_key_uri.as_deref(),
            Some("skd://tMMYi+3dRT2bwhy8p1ZiOQ==")
        );
        assert_eq!(
            crate::fairplay::kid_from_skd_uri(pallycon.hls_key_uri.as_deref().unwrap()),
            Some(KID6.parse().unwrap())
        );
    }

    #[test]
    fn playready_hls_for_cenc_and_cbcs() {
        let k = key("6f5a64c5d358a8fc658d5ebc82885673");
        let keys = [SignalKey {
            kid: KID6.parse().unwrap(),
            key: &k,
            iv: Iv::from_bytes([0; 16]),
        }];
        for (scheme, method) in [
            (EncryptionScheme::Cenc, "SAMPLE-AES-CTR"),
            (EncryptionScheme::Cbcs, "SAMPLE-AES"),
        ] {
            let s = signal(DrmSystem::PlayReady, &keys, &opts(scheme)).unwrap();
            let media = s.hls_media.unwrap();
            assert!(
                media.starts_with(&format!(
                    "#EXT-X-KEY:METHOD={method},KEYFORMAT=\"com.microsoft.playready\",KEYFORMATVERSIONS=\"1\",URI=\"data:text/plain;charset=UTF-16;base64,"
                )),
                "{media}"
            );
            // The URI is the PlayReady Object (what the pssh box carries), not the box.
            let (b, _) = PsshBox::parse(s.pssh.as_ref().unwrap()).unwrap();
            assert!(media.contains(&B64.encode(&b.data)), "{media}");
        }
        for scheme in [EncryptionScheme::Cens, EncryptionScheme::Cbc1] {
            let s = signal(DrmSystem::PlayReady, &keys, &opts(scheme)).unwrap();
            assert_eq!(s.hls_media, None, "{scheme:?}");
        }
    }

    #[test]
    fn nagra_prm_by_default_read_back_by_pssh_box() {
        let k = key("6f5a64c5d358a8fc658d5ebc82885673");
        let kid: KeyId = KID6.parse().unwrap();
        let keys = [SignalKey {
            kid,
            key: &k,
            iv: Iv::from_bytes([0; 16]),
        }];
        let o = SignalOptions {
            content_id: "channel-7",
            ..opts(EncryptionScheme::Cbcs)
        };
        let s = signal(DrmSystem::NagraPrm, &keys, &o).unwrap();
        let boxes = pssh_box::from_bytes(s.pssh.as_ref().unwrap()).unwrap();
        assert_eq!(boxes.len(), 1);
        let first = boxes.iter().next().unwrap();
        assert_eq!(first.system_id, pssh_box::NAGRA_SYSTEM_ID);
        match &first.pssh_data {
            pssh_box::PsshData::Nagra(d) => {
                assert_eq!(d.content_id, "channel-7");
                assert_eq!(d.key_id, KID6);
            }
            other => panic!("not Nagra data: {other:?}"),
        }
        let media = s.hls_media.unwrap();
        assert!(
            media.starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,")
                && media.contains(r#"KEYFORMAT="urn:uuid:adb41c24-2dbf-4a6d-958b-4457c0d27b95""#),
            "{media}"
        );
        assert!(s.content_protection_data.unwrap().contains("cenc:pssh"));
    }

    #[test]
    fn common_and_clearkey_systems() {
        let k = key("166634c675823c235a4a9446fad52e4d");
        let kid: KeyId = "6c5f5206-7d98-4808-84d8-94f132c1e9fe".parse().unwrap();
        let keys = [SignalKey {
            kid,
            key: &k,
            iv: Iv::from_bytes([0; 16]),
        }];
        let c1 = "AAAANHBzc2gBAAAAEHfv7MCyTQKs4zweUuL7SwAAAAFsX1IGfZhICITYlPEywen+AAAAAA==";

        let common = signal(DrmSystem::CommonPssh, &keys, &opts(EncryptionScheme::Cenc)).unwrap();
        assert_eq!(B64.encode(common.pssh.unwrap()), c1);
        assert_eq!(
            common.content_protection_data,
            Some(format!(
                r#"<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">{c1}</cenc:pssh>"#
            ))
        );

        let o = SignalOptions {
            clearkey_la_url: Some("https://k.example/clearkey"),
            ..opts(EncryptionScheme::Cbcs)
        };
        let ck = signal(DrmSystem::ClearKeyDashIf, &keys, &o).unwrap();
        assert_eq!(B64.encode(ck.pssh.unwrap()), c1);
        assert_eq!(
            ck.content_protection_element.as_deref(),
            Some(
                r#"<ContentProtection schemeIdUri="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" value="ClearKey1.0"><dashif:Laurl licenseType="EME-1.0">https://k.example/clearkey</dashif:Laurl></ContentProtection>"#
            )
        );
        assert_eq!(
            ck.content_protection_data.as_deref(),
            Some(
                r#"<dashif:Laurl xmlns:dashif="https://dashif.org/CPS" licenseType="EME-1.0">https://k.example/clearkey</dashif:Laurl>"#
            )
        );
        assert_eq!(
            ck.hls_media.as_deref(),
            Some(
                r#"#EXT-X-KEY:METHOD=SAMPLE-AES,URI="data:text/plain;base64,bF9SBn2YSAiE2JTxMsHp/g==",KEYID=0x6C5F52067D98480884D894F132C1E9FE,KEYFORMAT="org.w3.clearkey",KEYFORMATVERSIONS="1""#
            )
        );
        let no_url = signal(
            DrmSystem::ClearKeyDashIf,
            &keys,
            &opts(EncryptionScheme::Cenc),
        )
        .unwrap();
        assert_eq!(no_url.content_protection_data, None);
        assert!(
            no_url
                .hls_media
                .unwrap()
                .starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,")
        );
    }

    #[test]
    fn identity_key_systems_use_the_key_url_and_iv() {
        let k = key("166634c675823c235a4a9446fad52e4d");
        let kid: KeyId = "6c5f5206-7d98-4808-84d8-94f132c1e9fe".parse().unwrap();
        let iv = Iv::from_slice(&hex::decode("000102030405060708090a0b0c0d0e0f").unwrap()).unwrap();
        let keys = [SignalKey { kid, key: &k, iv }];
        let o = SignalOptions {
            hls_aes128_key_url: Some("https://k.example/hls/v1/keys/{kid}"),
            ..opts(EncryptionScheme::Cbc1)
        };
        for system in [DrmSystem::ClearKeyAes128, DrmSystem::AwsHlsAes128] {
            let s = signal(system, &keys, &o).unwrap();
            assert_eq!(
                s.hls_media.as_deref(),
                Some(
                    r#"#EXT-X-KEY:METHOD=AES-128,URI="https://k.example/hls/v1/keys/6c5f5206-7d98-4808-84d8-94f132c1e9fe",IV=0x000102030405060708090A0B0C0D0E0F,KEYFORMAT="identity",KEYFORMATVERSIONS="1""#
                )
            );
            assert_eq!(
                s.hls_key_uri.as_deref(),
                Some("https://k.example/hls/v1/keys/6c5f5206-7d98-4808-84d8-94f132c1e9fe")
            );
            assert_eq!(
                (
                    s.hls_keyformat.as_deref(),
                    s.hls_keyformatversions.as_deref()
                ),
                (Some("identity"), Some("1"))
            );
            assert_eq!(s.pssh, None);
            assert_eq!(
                signal(system, &keys, &opts(EncryptionScheme::Cbcs)),
                Err(DrmError::MissingOption {
                    system,
                    option: "an HLS key URL"
                })
            );
        }
        let sample = signal(
            DrmSystem::ClearKeySampleAes,
            &keys,
            &SignalOptions {
                scheme: EncryptionScheme::Cbcs,
                ..o
            },
        )
        .unwrap();
        assert!(
            sample
                .hls_media
                .unwrap()
                .starts_with("#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"https://k.example/")
        );
        assert!(matches!(
            signal(DrmSystem::ClearKeySampleAes, &keys, &o),
            Err(DrmError::SchemeNotSupported { .. })
        ));
    }

    #[test]
    fn unsupported_systems_and_no_keys_are_errors() {
        let k = key("166634c675823c235a4a9446fad52e4d");
        let keys = [SignalKey {
            kid: KeyId::from_bytes([1; 16]),
            key: &k,
            iv: Iv::from_bytes([0; 16]),
        }];
        let o = opts(EncryptionScheme::Cenc);
        assert_eq!(
            signal(DrmSystem::Marlin, &keys, &o),
            Err(DrmError::UnsupportedSystem {
                system: DrmSystem::Marlin
            })
        );
        assert_eq!(signal(DrmSystem::Widevine, &[], &o), Err(DrmError::NoKeys));
    }

    #[test]
    fn errors_and_debug_never_show_key_bytes() {
        let k = key("166634c675823c235a4a9446fad52e4d");
        let sk = SignalKey {
            kid: KeyId::from_bytes([1; 16]),
            key: &k,
            iv: Iv::from_bytes([0; 16]),
        };
        assert!(!format!("{sk:?}").contains("166634"));
        let err = signal(
            DrmSystem::ClearKeySampleAes,
            &[sk],
            &opts(EncryptionScheme::Cenc),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Clear Key SAMPLE-AES (HLS) does not support the cenc protection scheme"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod forms_tests {
    use super::*;

    #[test]
    fn only_the_wanted_forms_are_built_and_they_equal_the_full_build() {
        let key = ContentKeyValue::from_bytes([7; 16]);
        let keys = [SignalKey {
            kid: KeyId::from_bytes([1; 16]),
            key: &key,
            iv: Iv::from_bytes([2; 16]),
        }];
        let full_opts = SignalOptions {
            scheme: EncryptionScheme::Cbcs,
            content_id: "movie",
            widevine_provider: Some("p"),
            playready_la_url: Some("https://la.example/"),
            clearkey_la_url: Some("https://ck.example/"),
            hls_aes128_key_url: None,
            crypto_period_index: None,
            track_type: None,
            fairplay_uri: None,
            forms: SignalForms::ALL,
        };
        for system in [
            DrmSystem::Widevine,
            DrmSystem::PlayReady,
            DrmSystem::ClearKeyDashIf,
        ] {
            let full = signal(system, &keys, &full_opts).unwrap();
            let pssh_only = SignalOptions {
                forms: SignalForms {
                    dash: false,
                    hls: false,
                    smooth: false,
                },
                ..full_opts
            };
            let only = signal(system, &keys, &pssh_only).unwrap();
            assert_eq!(only.pssh, full.pssh, "{system:?}");
            assert!(
                only.content_protection_data.is_none() && only.content_protection_element.is_none()
            );
            assert!(only.hls_media.is_none() && only.hls_key_uri.is_none());
            assert!(only.smooth_streaming_header.is_none());
            let dash = SignalOptions {
                forms: SignalForms {
                    dash: true,
                    hls: false,
                    smooth: false,
                },
                ..full_opts
            };
            let dash = signal(system, &keys, &dash).unwrap();
            assert_eq!(dash.content_protection_data, full.content_protection_data);
            assert_eq!(
                dash.content_protection_element,
                full.content_protection_element
            );
        }
    }
}

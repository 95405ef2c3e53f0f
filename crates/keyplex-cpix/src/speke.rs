//! The AWS SPEKE profiles of CPIX: which version a request speaks, and the SPEKE v2 rules a
//! document must follow before any key is issued (AWS "SPEKE v2
//! constraints" and "encryption contract").
//!
//! Errors display exactly the messages AWS documents, because AWS encryptors and the AWS
//! verification suite compare them as strings; where AWS names no message, the text says what
//! is wrong in the same style. [`SpekeError::detail`] says which element is at fault, for the
//! server log.

use hashbrown::{HashMap, HashSet};

use keyplex_types::EncryptionScheme;

use crate::model::{CpixDocument, CpixVersion, UsageRule};

/// The SPEKE version of a request, from its `X-Speke-Version` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpekeVersion {
    /// No header (or `1.0`): SPEKE v1, CPIX 2.0-era documents with the `speke` namespace.
    V1,
    /// `2.0`: CPIX 2.3.
    V2_0,
    /// `2.1`: CPIX 2.4.
    V2_1,
}

impl SpekeVersion {
    /// The version named by an `X-Speke-Version` header value (`None` = header absent, which
    /// AWS and its reference server treat as 1.0).
    pub fn from_header(value: Option<&str>) -> Result<Self, SpekeError> {
        match value.map(str::trim) {
            None | Some("1.0") => Ok(Self::V1),
            Some("2.0") => Ok(Self::V2_0),
            Some("2.1") => Ok(Self::V2_1),
            Some(other) => Err(SpekeError::UnsupportedSpekeVersion {
                detail: format!("X-Speke-Version {:?}", quoted(other)),
            }),
        }
    }

    /// The value echoed in the `X-Speke-Version` response header (v2 only).
    pub const fn header_value(self) -> &'static str {
        match self {
            Self::V1 => "1.0",
            Self::V2_0 => "2.0",
            Self::V2_1 => "2.1",
        }
    }

    /// The `CPIX@version` this SPEKE version requires (`None` for v1, which has none).
    pub const fn cpix_version(self) -> Option<CpixVersion> {
        match self {
            Self::V1 => None,
            Self::V2_0 => Some(CpixVersion::V2_3),
            Self::V2_1 => Some(CpixVersion::V2_4),
        }
    }

    pub const fn is_v2(self) -> bool {
        !matches!(self, Self::V1)
    }
}

/// Why a SPEKE request is refused. `Display` is the message for the encryptor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpekeError {
    #[error("Unsupported SPEKE version")]
    UnsupportedSpekeVersion { detail: String },
    #[error("Missing CPIX@contentId")]
    MissingContentId,
    #[error("Missing CPIX@version")]
    MissingCpixVersion,
    #[error("Unsupported CPIX@version")]
    UnsupportedCpixVersion { detail: String },
    #[error("Missing ContentKey@commonEncryptionScheme for KID {kid}")]
    MissingScheme { kid: String },
    #[error("Non compliant ContentKey@commonEncryptionScheme combination")]
    MixedSchemes { detail: String },
    #[error("ContentKey@commonEncryptionScheme non compatible with DRMSystem {system_id}")]
    SchemeNotCompatible { system_id: String, detail: String },
    #[error("Malformed encryption contract")]
    MalformedContract { detail: String },
    #[error("Requested CPIX encryption contract not supported")]
    ContractNotSupported { detail: String },
    #[error("Missing CPIX encryption contract")]
    MissingContract { detail: String },
    /// A mandatory list or element that AWS names no message for (`ContentKeyList`,
    /// `DRMSystemList`, or an empty one).
    #[error("Missing {element}")]
    MissingElement { element: &'static str },
    /// A reference inside the document that does not resolve (a `DRMSystem@kid` naming no
    /// `ContentKey`, …), in the CPIX reader's words.
    #[error("{0}")]
    Reference(String),
}

impl SpekeError {
    /// What exactly is wrong, for the server log (the client message is fixed by AWS).
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::UnsupportedSpekeVersion { detail }
            | Self::UnsupportedCpixVersion { detail }
            | Self::MixedSchemes { detail }
            | Self::SchemeNotCompatible { detail, .. }
            | Self::MalformedContract { detail }
            | Self::ContractNotSupported { detail }
            | Self::MissingContract { detail } => Some(detail),
            _ => None,
        }
    }
}

/// Checks a SPEKE v2.0/v2.1 request against the profile: mandatory attributes and lists, one
/// `commonEncryptionScheme` for the whole document, and the encryption contract (usage rules).
/// DRM-specific rules (which scheme a DRM accepts) need the DRM registry and are the caller's.
pub fn validate_v2(doc: &CpixDocument, version: SpekeVersion) -> Result<(), SpekeError> {
    if doc
        .content_id
        .as_deref()
        .is_none_or(|c| c.trim().is_empty())
    {
        return Err(SpekeError::MissingContentId);
    }
    let Some(found) = &doc.version else {
        return Err(SpekeError::MissingCpixVersion);
    };
    if Some(found) != version.cpix_version().as_ref() {
        let written = match found {
            CpixVersion::V2_3 => "2.3",
            CpixVersion::V2_4 => "2.4",
            CpixVersion::Other(v) => v.as_str(),
        };
        return Err(SpekeError::UnsupportedCpixVersion {
            detail: format!(
                "CPIX@version {:?} with X-Speke-Version {}",
                quoted(written),
                version.header_value()
            ),
        });
    }
    let keys = match doc.content_keys.as_deref() {
        None => {
            return Err(SpekeError::MissingElement {
                element: "ContentKeyList",
            });
        }
        Some([]) => {
            return Err(SpekeError::MissingElement {
                element: "ContentKey",
            });
        }
        Some(keys) => keys,
    };
    document_scheme(doc)?;
    match doc.drm_systems.as_deref() {
        None => {
            return Err(SpekeError::MissingElement {
                element: "DRMSystemList",
            });
        }
        Some([]) => {
            return Err(SpekeError::MissingElement {
                element: "DRMSystem",
            });
        }
        Some(_) => {}
    }
    validate_contract(doc)?;
    doc.validate_references()
        .map_err(|e| SpekeError::Reference(e.to_string()))?;
    // One usage rule per key (checked after the references, so every rule names a key).
    let mut rules_per_key: HashMap<_, usize> = HashMap::new();
    for rule in doc.usage_rules.iter().flatten() {
        *rules_per_key.entry(rule.kid.id).or_default() += 1;
    }
    for key in keys {
        match rules_per_key.get(&key.kid.id).copied().unwrap_or(0) {
            0 => {
                return Err(SpekeError::MissingContract {
                    detail: format!(
                        "no ContentKeyUsageRule for kid {}",
                        quoted(&key.kid.as_written)
                    ),
                });
            }
            1 => {}
            n => {
                return Err(SpekeError::MalformedContract {
                    detail: format!(
                        "{n} ContentKeyUsageRules for kid {} (SPEKE v2 wants one per key)",
                        quoted(&key.kid.as_written)
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The one `commonEncryptionScheme` of a SPEKE v2 document: every `ContentKey` must carry it,
/// and all must carry the same.
pub fn document_scheme(doc: &CpixDocument) -> Result<Option<EncryptionScheme>, SpekeError> {
    let mut scheme = None;
    for key in doc.content_keys.iter().flatten() {
        let Some(this) = key.common_encryption_scheme else {
            return Err(SpekeError::MissingScheme {
                kid: quoted(&key.kid.as_written),
            });
        };
        match scheme {
            None => scheme = Some(this),
            Some(first) if first != this => {
                return Err(SpekeError::MixedSchemes {
                    detail: format!("{} and {} in one document", first.as_str(), this.as_str()),
                });
            }
            Some(_) => {}
        }
    }
    Ok(scheme)
}

/// The encryption contract: `ContentKeyUsageRuleList` with, per rule, an `@intendedTrackType`
/// and at least one `VideoFilter`/`AudioFilter`; track types unique (per key period); `ALL`
/// alone, with exactly an empty `AudioFilter` and an empty `VideoFilter`; `+`-joined types
/// with one filter, or one filter per component.
fn validate_contract(doc: &CpixDocument) -> Result<(), SpekeError> {
    let rules = match doc.usage_rules.as_deref() {
        None | Some([]) => {
            return Err(SpekeError::MissingContract {
                detail: "no ContentKeyUsageRuleList (or an empty one)".into(),
            });
        }
        Some(rules) => rules,
    };
    // (period filter ids) -> track types seen for those periods.
    let mut seen: HashMap<Vec<&str>, HashSet<String>> = HashMap::new();
    for rule in rules {
        // Quoted only for a message: this runs for every rule of every request.
        let kid = || quoted(&rule.kid.as_written);
        let malformed = |why: String| SpekeError::MalformedContract {
            detail: format!("ContentKeyUsageRule kid {}: {why}", kid()),
        };
        let Some(track_type) = rule
            .intended_track_type
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Err(malformed("no @intendedTrackType".into()));
        };
        if rule.video_filters.is_empty() && rule.audio_filters.is_empty() {
            return Err(SpekeError::MissingContract {
                detail: format!(
                    "ContentKeyUsageRule kid {} has no VideoFilter or AudioFilter",
                    kid()
                ),
            });
        }
        if let Some(unknown) = rule.unknown_children.first() {
            return Err(SpekeError::ContractNotSupported {
                detail: format!(
                    "ContentKeyUsageRule kid {} has a filter keyplex does not understand: {}",
                    kid(),
                    quoted(unknown)
                ),
            });
        }
        let track_type = track_type.to_ascii_uppercase();
        check_filters(rule).map_err(&malformed)?;
        let components: Vec<&str> = track_type.split('+').collect();
        if track_type == "ALL" {
            let empty_video = rule.video_filters.len() == 1
                && rule
                    .video_filters
                    .iter()
                    .all(|v| *v == crate::model::VideoFilter::default());
            let empty_audio = rule.audio_filters.len() == 1
                && rule
                    .audio_filters
                    .iter()
                    .all(|a| *a == crate::model::AudioFilter::default());
            if !(empty_video && empty_audio) {
                return Err(malformed(
                    "intendedTrackType ALL needs exactly one empty VideoFilter and one empty AudioFilter".into(),
                ));
            }
        } else if components.len() > 1 {
            let mut distinct = HashSet::new();
            for c in &components {
                if c.is_empty() || *c == "ALL" || !distinct.insert(*c) {
                    return Err(malformed(format!(
                        "intendedTrackType {:?} is not a +-joined list of distinct track types",
                        quoted(&track_type)
                    )));
                }
            }
            let filters = rule.video_filters.len() + rule.audio_filters.len();
            // The AWS rule is one filter per component; the AWS verification generator itself
            // sends one filter covering the union (`SD+HD1` with maxPixels=921600): accept both.
            if filters != 1 && filters != components.len() {
                return Err(malformed(format!(
                    "intendedTrackType {:?} has {filters} filters: expected 1 or {}",
                    quoted(&track_type),
                    components.len()
                )));
            }
        }
        let mut periods: Vec<&str> = rule
            .key_period_filters
            .iter()
            .map(|f| f.period_id.as_str())
            .collect();
        periods.sort_unstable();
        let types = seen.entry(periods).or_default();
        let mixes_all = !types.is_empty() && (track_type == "ALL" || types.contains("ALL"));
        if mixes_all {
            return Err(malformed(
                "intendedTrackType ALL cannot be combined with other track types".into(),
            ));
        }
        if !types.insert(track_type.clone()) {
            return Err(malformed(format!(
                "intendedTrackType {:?} appears more than once",
                quoted(&track_type)
            )));
        }
    }
    Ok(())
}

/// Ranges that cannot match anything.
fn check_filters(rule: &UsageRule) -> Result<(), String> {
    for v in &rule.video_filters {
        if let (Some(min), Some(max)) = (v.min_pixels, v.max_pixels)
            && min > max
        {
            return Err(format!("VideoFilter minPixels {min} > maxPixels {max}"));
        }
    }
    for a in &rule.audio_filters {
        if let (Some(min), Some(max)) = (a.min_channels, a.max_channels)
            && min > max
        {
            return Err(format!("AudioFilter minChannels {min} > maxChannels {max}"));
        }
    }
    Ok(())
}

fn quoted(s: &str) -> String {
    crate::error::quoted(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::read_document;

    const KID_A: &str = "0f083e4e-b831-4a3d-917e-ce78076e54aa";
    const KID_B: &str = "041fdd3a-7f5e-4848-a7cb-65e97758e9a0";

    /// A SPEKE v2.0 document with two keys; `rules` replaces the usage rules' inner XML.
    fn doc(root_attrs: &str, schemes: (&str, &str), rules: &str) -> CpixDocument {
        let (sa, sb) = schemes;
        let xml = format!(
            r#"<cpix:CPIX {root_attrs} xmlns:cpix="urn:dashif:org:cpix">
  <cpix:ContentKeyList>
    <cpix:ContentKey kid="{KID_A}" {sa}/>
    <cpix:ContentKey kid="{KID_B}" {sb}/>
  </cpix:ContentKeyList>
  <cpix:DRMSystemList>
    <cpix:DRMSystem kid="{KID_A}" systemId="edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"><cpix:PSSH/></cpix:DRMSystem>
    <cpix:DRMSystem kid="{KID_B}" systemId="edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"><cpix:PSSH/></cpix:DRMSystem>
  </cpix:DRMSystemList>
  <cpix:ContentKeyPeriodList><cpix:ContentKeyPeriod id="p1" index="1"/><cpix:ContentKeyPeriod id="p2" index="2"/></cpix:ContentKeyPeriodList>
  {rules}
</cpix:CPIX>"#
        );
        read_document(xml.as_bytes()).unwrap()
    }

    const OK_ROOT: &str = r#"contentId="c1" version="2.3""#;
    const CENC: (&str, &str) = (
        r#"commonEncryptionScheme="cenc""#,
        r#"commonEncryptionScheme="cenc""#,
    );

    fn rules(a: &str, b: &str) -> String {
        format!(
            r#"<cpix:ContentKeyUsageRuleList>
  <cpix:ContentKeyUsageRule kid="{KID_A}" {a}</cpix:ContentKeyUsageRule>
  <cpix:ContentKeyUsageRule kid="{KID_B}" {b}</cpix:ContentKeyUsageRule>
</cpix:ContentKeyUsageRuleList>"#
        )
    }

    fn video_audio() -> String {
        rules(
            r#"intendedTrackType="VIDEO"><cpix:VideoFilter/>"#,
            r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
        )
    }

    fn check(d: &CpixDocument) -> String {
        validate_v2(d, SpekeVersion::V2_0).unwrap_err().to_string()
    }

    #[test]
    fn header_versions() {
        assert_eq!(SpekeVersion::from_header(None).unwrap(), SpekeVersion::V1);
        assert_eq!(
            SpekeVersion::from_header(Some("2.0")).unwrap(),
            SpekeVersion::V2_0
        );
        assert_eq!(
            SpekeVersion::from_header(Some(" 2.1")).unwrap(),
            SpekeVersion::V2_1
        );
        for bad in ["3.0", "", "2", "v2.0"] {
            assert_eq!(
                SpekeVersion::from_header(Some(bad))
                    .unwrap_err()
                    .to_string(),
                "Unsupported SPEKE version"
            );
        }
    }

    #[test]
    fn a_compliant_document_passes() {
        validate_v2(&doc(OK_ROOT, CENC, &video_audio()), SpekeVersion::V2_0).unwrap();
        let v21 = doc(r#"contentId="c1" version="2.4""#, CENC, &video_audio());
        validate_v2(&v21, SpekeVersion::V2_1).unwrap();
    }

    #[test]
    fn document_attributes_have_the_aws_messages() {
        let va = video_audio();
        assert_eq!(
            check(&doc(r#"version="2.3""#, CENC, &va)),
            "Missing CPIX@contentId"
        );
        assert_eq!(
            check(&doc(r#"contentId=" " version="2.3""#, CENC, &va)),
            "Missing CPIX@contentId"
        );
        assert_eq!(
            check(&doc(r#"contentId="c""#, CENC, &va)),
            "Missing CPIX@version"
        );
        assert_eq!(
            check(&doc(r#"contentId="c" version="4.0""#, CENC, &va)),
            "Unsupported CPIX@version"
        );
        // 2.4 is CPIX for SPEKE 2.1, not 2.0.
        assert_eq!(
            check(&doc(r#"contentId="c" version="2.4""#, CENC, &va)),
            "Unsupported CPIX@version"
        );
        assert_eq!(
            check(&doc(OK_ROOT, (r#"commonEncryptionScheme="cenc""#, ""), &va)),
            format!("Missing ContentKey@commonEncryptionScheme for KID {KID_B}")
        );
        assert_eq!(
            check(&doc(
                OK_ROOT,
                (
                    r#"commonEncryptionScheme="cenc""#,
                    r#"commonEncryptionScheme="cbcs""#
                ),
                &va
            )),
            "Non compliant ContentKey@commonEncryptionScheme combination"
        );
    }

    #[test]
    fn encryption_contract_rules() {
        let cases = [
            // no rules at all
            ("", "Missing CPIX encryption contract"),
            // no filters
            (
                &rules(
                    r#"intendedTrackType="VIDEO">"#,
                    r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
                ) as &str,
                "Missing CPIX encryption contract",
            ),
            // no intendedTrackType
            (
                &rules(
                    r#"><cpix:VideoFilter/>"#,
                    r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
                ),
                "Malformed encryption contract",
            ),
            // duplicate track type
            (
                &rules(
                    r#"intendedTrackType="VIDEO"><cpix:VideoFilter/>"#,
                    r#"intendedTrackType="VIDEO"><cpix:VideoFilter/>"#,
                ),
                "Malformed encryption contract",
            ),
            // ALL mixed with another type
            (
                &rules(
                    r#"intendedTrackType="ALL"><cpix:VideoFilter/><cpix:AudioFilter/>"#,
                    r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
                ),
                "Malformed encryption contract",
            ),
            // ALL with a non-empty filter
            (
                &rules(
                    r#"intendedTrackType="ALL"><cpix:VideoFilter maxPixels="589824"/><cpix:AudioFilter/>"#,
                    r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
                ),
                "Malformed encryption contract",
            ),
            // ALL without the audio filter
            (
                &rules(
                    r#"intendedTrackType="ALL"><cpix:VideoFilter/>"#,
                    r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
                ),
                "Malformed encryption contract",
            ),
            // + with a wrong number of filters
            (
                &rules(
                    r#"intendedTrackType="SD+HD1+HD2"><cpix:VideoFilter maxPixels="1"/><cpix:VideoFilter minPixels="2"/>"#,
                    r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
                ),
                "Malformed encryption contract",
            ),
            // empty range
            (
                &rules(
                    r#"intendedTrackType="SD"><cpix:VideoFilter minPixels="10" maxPixels="1"/>"#,
                    r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
                ),
                "Malformed encryption contract",
            ),
            // a filter keyplex cannot apply
            (
                &rules(
                    r#"intendedTrackType="SD"><cpix:VideoFilter/><cpix:FutureFilter/>"#,
                    r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
                ),
                "Requested CPIX encryption contract not supported",
            ),
        ];
        for (rules_xml, expected) in cases {
            assert_eq!(
                check(&doc(OK_ROOT, CENC, rules_xml)),
                expected,
                "{rules_xml}"
            );
        }
    }

    #[test]
    fn contract_shapes_that_are_allowed() {
        // ALL alone (one key for everything) is fine: here both keys are ALL for two periods.
        let rotation = rules(
            r#"intendedTrackType="ALL"><cpix:KeyPeriodFilter periodId="p1"/><cpix:VideoFilter/><cpix:AudioFilter/>"#,
            r#"intendedTrackType="ALL"><cpix:KeyPeriodFilter periodId="p2"/><cpix:VideoFilter/><cpix:AudioFilter/>"#,
        );
        validate_v2(&doc(OK_ROOT, CENC, &rotation), SpekeVersion::V2_0).unwrap();
        // + with one filter (what AWS's generator sends) and with one per component.
        for sd_hd1 in [
            r#"intendedTrackType="SD+HD1"><cpix:VideoFilter maxPixels="921600"/>"#,
            r#"intendedTrackType="SD+HD1"><cpix:VideoFilter maxPixels="589824"/><cpix:VideoFilter minPixels="589825" maxPixels="921600"/>"#,
        ] {
            let r = rules(
                sd_hd1,
                r#"intendedTrackType="HD2"><cpix:VideoFilter minPixels="921601"/>"#,
            );
            validate_v2(&doc(OK_ROOT, CENC, &r), SpekeVersion::V2_0).unwrap();
        }
    }

    #[test]
    fn one_rule_per_key_and_references() {
        let one_rule = r#"<cpix:ContentKeyUsageRuleList>
  <cpix:ContentKeyUsageRule kid="0f083e4e-b831-4a3d-917e-ce78076e54aa" intendedTrackType="VIDEO"><cpix:VideoFilter/></cpix:ContentKeyUsageRule>
</cpix:ContentKeyUsageRuleList>"#;
        assert_eq!(
            check(&doc(OK_ROOT, CENC, one_rule)),
            "Missing CPIX encryption contract"
        );
        let dangling_period = rules(
            r#"intendedTrackType="VIDEO"><cpix:KeyPeriodFilter periodId="nope"/><cpix:VideoFilter/>"#,
            r#"intendedTrackType="AUDIO"><cpix:AudioFilter/>"#,
        );
        assert!(check(&doc(OK_ROOT, CENC, &dangling_period)).contains("periodId"));
    }
}

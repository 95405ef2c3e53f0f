//! Licence rules: what a licence for a content allows, and how the three sources of rules
//! become the one policy a licence is issued under.
//!
//! Seed 004 has the licence server forward a challenge "with the parameters associated with
//! the video": those parameters are stored with the content ([`ContentPolicy`], set with
//! `PUT /admin/v1/tenants/{t}/contents/{cid}/licence-policy`), or else the tenant's default
//! (`[tenants.x.licence] policy`). The entitlement token's `policy` claim
//! ([`TokenPolicy`]) may then only **narrow** them: [`merge`] takes, field by field, the
//! stricter of the two — a shorter duration, a stronger security level or HDCP version,
//! persistence only when both allow it. A token that asks for more than the content allows
//! does not get it: the wider value is dropped and named in [`AppliedPolicy::narrowed`],
//! which the audit event records together with the policy applied.
//!
//! Each licence adapter maps the [`AppliedPolicy`] into its own service's fields
//! (`licence_proxy`); ClearKey licences can only express persistence.

use std::collections::BTreeMap;

use keyplex_types::TrackType;
use serde::{Deserialize, Serialize};

/// Device security level, in Widevine's L-numbers because that is what operators write
/// (`{"SD": 3, "HD": 1}`): 1 is the strongest (hardware-protected decoding, Widevine L1),
/// 3 the weakest (software, Widevine L3). Each DRM maps it to its own scale:
/// [`DeviceLevel::widevine_robustness`], [`DeviceLevel::playready_security_level`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct DeviceLevel(u8);

impl TryFrom<u8> for DeviceLevel {
    type Error = String;
    fn try_from(level: u8) -> Result<Self, String> {
        if (1..=3).contains(&level) {
            Ok(Self(level))
        } else {
            Err(format!(
                "security level {level} is not 1 (hardware, Widevine L1), 2 or 3 (software, L3)"
            ))
        }
    }
}

impl From<DeviceLevel> for u8 {
    fn from(level: DeviceLevel) -> Self {
        level.0
    }
}

impl DeviceLevel {
    /// The lowest Widevine robustness (`content_key_specs.security_level`, 1 =
    /// `SW_SECURE_CRYPTO` … 5 = `HW_SECURE_ALL`) that a device of this level meets and a device
    /// of the next weaker level does not: L1 → 4 `HW_SECURE_DECODE`, L2 → 3
    /// `HW_SECURE_CRYPTO`, L3 → 1 `SW_SECURE_CRYPTO`. A token's `widevine_security_level`
    /// can require more (5).
    pub fn widevine_robustness(self) -> u8 {
        match self.0 {
            1 => 4,
            2 => 3,
            _ => 1,
        }
    }

    /// PlayReady's client security level: hardware (L1) is SL3000; everything else is the
    /// commercial software level SL2000 (PlayReady has no L2 of its own).
    pub fn playready_security_level(self) -> u16 {
        if self.0 == 1 { 3000 } else { 2000 }
    }
}

/// Required HDCP output protection, named as in Widevine's licence policy, ordered from
/// weakest to strongest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Hdcp {
    #[serde(rename = "HDCP_NONE")]
    None,
    #[serde(rename = "HDCP_V1")]
    V1,
    #[serde(rename = "HDCP_V2")]
    V2,
    #[serde(rename = "HDCP_V2_1")]
    V2_1,
    #[serde(rename = "HDCP_V2_2")]
    V2_2,
    #[serde(rename = "HDCP_V2_3")]
    V2_3,
    #[serde(rename = "HDCP_NO_DIGITAL_OUTPUT")]
    NoDigitalOutput,
}

impl Hdcp {
    /// Widevine's `required_output_protection.hdcp` value.
    pub fn name(self) -> &'static str {
        match self {
            Hdcp::None => "HDCP_NONE",
            Hdcp::V1 => "HDCP_V1",
            Hdcp::V2 => "HDCP_V2",
            Hdcp::V2_1 => "HDCP_V2_1",
            Hdcp::V2_2 => "HDCP_V2_2",
            Hdcp::V2_3 => "HDCP_V2_3",
            Hdcp::NoDigitalOutput => "HDCP_NO_DIGITAL_OUTPUT",
        }
    }

    /// FairPlay's HDCP type (Apple's `HDCP enforcement` TLLV): −1 none required, 0 Type 0
    /// (any HDCP), 1 Type 1 (HDCP 2.2 or later). No digital output is the strictest FairPlay
    /// can ask for, Type 1.
    pub fn fairplay_type(self) -> i8 {
        match self {
            Hdcp::None => -1,
            Hdcp::V1 | Hdcp::V2 | Hdcp::V2_1 => 0,
            Hdcp::V2_2 | Hdcp::V2_3 | Hdcp::NoDigitalOutput => 1,
        }
    }
}

/// Widevine robustness, 1 (`SW_SECURE_CRYPTO`) to 5 (`HW_SECURE_ALL`), as in Widevine's
/// licence policy (a token's `widevine_security_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct WidevineSecurityLevel(u8);

impl From<WidevineSecurityLevel> for u8 {
    fn from(level: WidevineSecurityLevel) -> Self {
        level.0
    }
}

impl WidevineSecurityLevel {
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for WidevineSecurityLevel {
    type Error = String;
    fn try_from(level: u8) -> Result<Self, Self::Error> {
        if (1..=5).contains(&level) {
            Ok(Self(level))
        } else {
            Err(format!("widevine_security_level {level} is not 1 to 5"))
        }
    }
}

/// PlayReady client security level: 150, 2000 or 3000 (a token's `playready_security_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct PlayReadySecurityLevel(u16);

impl From<PlayReadySecurityLevel> for u16 {
    fn from(level: PlayReadySecurityLevel) -> Self {
        level.0
    }
}

impl PlayReadySecurityLevel {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for PlayReadySecurityLevel {
    type Error = String;
    fn try_from(level: u16) -> Result<Self, Self::Error> {
        if matches!(level, 150 | 2000 | 3000) {
            Ok(Self(level))
        } else {
            Err(format!(
                "playready_security_level {level} is not 150, 2000 or 3000"
            ))
        }
    }
}

/// Security levels by track type (`SD`, `HD`, `UHD1`, `UHD2`, `AUDIO`, or `ALL` for keys of
/// any other or no track type).
pub type SecurityLevels = BTreeMap<TrackTypeKey, DeviceLevel>;

/// A track type as a JSON object key (validated like every track type).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrackTypeKey(TrackType);

impl TryFrom<String> for TrackTypeKey {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        TrackType::parse(&text)
            .map(Self)
            .map_err(|e| format!("security_level: {e}"))
    }
}

impl From<TrackTypeKey> for String {
    fn from(key: TrackTypeKey) -> Self {
        key.0.as_str().to_owned()
    }
}

/// The licence rules stored with a content, or a tenant's default: the body of
/// `PUT …/contents/{cid}/licence-policy` and `[tenants.x.licence] policy`. Every field is
/// optional (absent: no rule); unknown fields are refused, so a misspelt rule never silently
/// becomes no rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"security_level": {"SD": 3, "HD": 1}, "hdcp": "HDCP_V2_2",
    "persistent": false, "licence_duration_seconds": 600, "playback_duration_seconds": 7200,
    "renewal_interval_seconds": 60}))]
pub struct ContentPolicy {
    /// Device security level per track type: 1 (hardware, Widevine L1) to 3 (software, L3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, u8>>)]
    pub security_level: Option<SecurityLevels>,
    /// Required HDCP output protection (`HDCP_NONE`, `HDCP_V1`, … `HDCP_V2_3`,
    /// `HDCP_NO_DIGITAL_OUTPUT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub hdcp: Option<Hdcp>,
    /// Whether licences may be stored by the player (offline playback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
    /// How long a licence may be used, from its issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence_duration_seconds: Option<u64>,
    /// How long playback may last once it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_duration_seconds: Option<u64>,
    /// Seconds between licence renewals (absent: licences are not renewed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_interval_seconds: Option<u64>,
}

impl ContentPolicy {
    /// What serde cannot check. A zero renewal interval would have players renew in a loop.
    pub fn validate(&self) -> Result<(), String> {
        if self.renewal_interval_seconds == Some(0) {
            return Err("renewal_interval_seconds must be at least 1".into());
        }
        Ok(())
    }
}

/// The licence parameters an entitlement token carries (`policy` claim). Names are the
/// token's own (older than the content policy's). Unknown members are refused: a misspelt
/// restriction (say `"hdpc"`) must not silently become no restriction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPolicy {
    /// How long a licence may be used, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence_duration: Option<u64>,
    /// How long playback may last once started, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_duration: Option<u64>,
    /// Whether the player may store the licence (`persistent-license` sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<bool>,
    /// Seconds between licence renewals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_interval: Option<u64>,
    /// Device security level per track type, as in the content policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_level: Option<SecurityLevels>,
    /// A Widevine robustness floor for every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widevine_security_level: Option<WidevineSecurityLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdcp: Option<Hdcp>,
    /// A PlayReady security level floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playready_security_level: Option<PlayReadySecurityLevel>,
}

/// The policy a licence is issued under: the content's (or tenant's) rules narrowed by the
/// token. Serialised into the audit event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AppliedPolicy {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub security_level: SecurityLevels,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub widevine_security_level: Option<WidevineSecurityLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playready_security_level: Option<PlayReadySecurityLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdcp: Option<Hdcp>,
    pub persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licence_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playback_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal_interval_seconds: Option<u64>,
    /// Where the rules came from: `content`, `tenant` or `none`.
    pub source: PolicySource,
    /// Token policy fields that asked for more than the rules allow, and were not granted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub narrowed: Vec<&'static str>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    Content,
    Tenant,
    #[default]
    None,
}

impl AppliedPolicy {
    /// The device level a key of `track` needs: its track type's, else `ALL`'s.
    pub fn level_of(&self, track: Option<&TrackType>) -> Option<DeviceLevel> {
        track
            .and_then(|t| {
                self.security_level
                    .iter()
                    .find(|(k, _)| &k.0 == t)
                    .map(|(_, l)| *l)
            })
            .or_else(|| {
                self.security_level
                    .iter()
                    .find(|(k, _)| k.0.as_str() == TrackType::ALL)
                    .map(|(_, l)| *l)
            })
    }

    /// Widevine robustness for a key of `track`: the stronger of its device level and the
    /// token's floor.
    pub fn widevine_robustness(&self, track: Option<&TrackType>) -> Option<u8> {
        let from_level = self.level_of(track).map(DeviceLevel::widevine_robustness);
        let floor = self.widevine_security_level.map(WidevineSecurityLevel::get);
        from_level.max(floor)
    }

    /// PlayReady security level for a licence of keys with these track types: the strongest
    /// any of them needs, and at least the token's floor.
    pub fn playready_security_level<'a>(
        &self,
        tracks: impl IntoIterator<Item = Option<&'a TrackType>>,
    ) -> Option<u16> {
        let from_levels = tracks
            .into_iter()
            .filter_map(|t| self.level_of(t))
            .map(DeviceLevel::playready_security_level)
            .max();
        from_levels.max(
            self.playready_security_level
                .map(PlayReadySecurityLevel::get),
        )
    }

    /// Whether licences are renewed.
    pub fn renews(&self) -> bool {
        self.renewal_interval_seconds.is_some()
    }

    /// The JSON the audit event carries.
    pub fn audit_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The rules that apply to a content: its own, else the tenant's default, else none.
pub fn rules<'a>(
    content: Option<&'a ContentPolicy>,
    tenant_default: Option<&'a ContentPolicy>,
) -> (Option<&'a ContentPolicy>, PolicySource) {
    match (content, tenant_default) {
        (Some(c), _) => (Some(c), PolicySource::Content),
        (None, Some(t)) => (Some(t), PolicySource::Tenant),
        (None, None) => (None, PolicySource::None),
    }
}

/// The stricter of two optional upper bounds; `narrowed` when the token's was the wider.
fn min_bound(rule: Option<u64>, token: Option<u64>, narrowed: &mut bool) -> Option<u64> {
    match (rule, token) {
        (Some(r), Some(t)) => {
            *narrowed = t > r;
            Some(r.min(t))
        }
        (r, t) => r.or(t),
    }
}

/// Merges the content's (or tenant's) rules with the token's policy: each field the
/// stricter of the two. Never wider than `rules`; a token field that asked for more is named
/// in `narrowed`.
pub fn merge(
    rules: Option<&ContentPolicy>,
    source: PolicySource,
    token: &TokenPolicy,
) -> AppliedPolicy {
    let empty = ContentPolicy::default();
    let rules = rules.unwrap_or(&empty);
    let mut narrowed = Vec::new();
    let mut note = |wider: bool, field: &'static str| {
        if wider {
            narrowed.push(field);
        }
    };

    let mut security_level = rules.security_level.clone().unwrap_or_default();
    let mut weaker_level = false;
    for (track, level) in token.security_level.iter().flatten() {
        security_level
            .entry(track.clone())
            .and_modify(|rule| {
                // 1 is the strongest: the stricter level is the smaller number.
                weaker_level |= *level > *rule;
                *rule = (*rule).min(*level);
            })
            .or_insert(*level);
    }
    note(weaker_level, "security_level");

    let hdcp = match (rules.hdcp, token.hdcp) {
        (Some(r), Some(t)) => {
            note(t < r, "hdcp");
            Some(r.max(t))
        }
        (r, t) => r.or(t),
    };

    let persistent = match (rules.persistent, token.persistence) {
        (Some(false), t) => {
            note(t == Some(true), "persistence");
            false
        }
        (Some(true), t) => t.unwrap_or(true),
        (None, t) => t.unwrap_or(false),
    };

    let mut wider = false;
    let licence_duration_seconds = min_bound(
        rules.licence_duration_seconds,
        token.licence_duration,
        &mut wider,
    );
    note(wider, "licence_duration");
    let playback_duration_seconds = min_bound(
        rules.playback_duration_seconds,
        token.playback_duration,
        &mut wider,
    );
    note(wider, "playback_duration");
    // More frequent renewal is the stricter rule.
    let renewal_interval_seconds = min_bound(
        rules.renewal_interval_seconds,
        token.renewal_interval.filter(|s| *s > 0),
        &mut wider,
    );
    note(wider, "renewal_interval");

    AppliedPolicy {
        security_level,
        widevine_security_level: token.widevine_security_level,
        playready_security_level: token.playready_security_level,
        hdcp,
        persistent,
        licence_duration_seconds,
        playback_duration_seconds,
        renewal_interval_seconds,
        source,
        narrowed,
    }
}

/// The policy a licence for `content` is issued under: the content's stored rules (or the
/// tenant's default) narrowed by the token's. One store read.
pub async fn applied(
    state: &crate::state::AppState,
    tenant: &crate::state::Tenant,
    content: &keyplex_types::ContentId,
    token: &TokenPolicy,
) -> Result<AppliedPolicy, crate::http::error::ApiError> {
    let stored = stored(state, tenant, content).await?;
    let tenant_default = tenant
        .config
        .licence
        .as_ref()
        .and_then(|l| l.policy.as_ref());
    let (rules, source) = rules(stored.as_ref(), tenant_default);
    Ok(merge(rules, source, token))
}

/// A content's own stored rules (`None`: it has none).
pub async fn stored(
    state: &crate::state::AppState,
    tenant: &crate::state::Tenant,
    content: &keyplex_types::ContentId,
) -> Result<Option<ContentPolicy>, crate::http::error::ApiError> {
    let Some(text) = state.store().content_policy(&tenant.id, content).await? else {
        return Ok(None);
    };
    // Written by the admin API after validation: a row that does not parse is not a client's
    // fault, and a licence must not be issued without its rules.
    serde_json::from_str(&text).map(Some).map_err(|e| {
        crate::http::error::ApiError::Internal(format!(
            "stored licence policy of content {content} is unreadable: {e}"
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn content(json: &str) -> ContentPolicy {
        serde_json::from_str(json).unwrap()
    }

    fn token(json: &str) -> TokenPolicy {
        serde_json::from_str(json).unwrap()
    }

    fn track(t: &str) -> TrackType {
        TrackType::parse(t).unwrap()
    }

    #[test]
    fn the_issue_example_parses_and_unknown_fields_are_refused() {
        let p = content(
            r#"{"security_level": {"SD": 3, "HD": 1}, "hdcp": "HDCP_V2_2", "persistent": false,
                "licence_duration_seconds": 600, "playback_duration_seconds": 7200,
                "renewal_interval_seconds": 60}"#,
        );
        assert_eq!(p.hdcp, Some(Hdcp::V2_2));
        assert_eq!(p.security_level.as_ref().unwrap().len(), 2);
        for bad in [
            r#"{"hdpc": "HDCP_V1"}"#,
            r#"{"security_level": {"HD": 4}}"#,
            r#"{"security_level": {"h d": 1}}"#,
            r#"{"persistent": "yes"}"#,
            r#"{"licence_duration_seconds": -1}"#,
            r#"{"hdcp": "HDCP_V9"}"#,
        ] {
            assert!(serde_json::from_str::<ContentPolicy>(bad).is_err(), "{bad}");
        }
        assert!(
            content(r#"{"renewal_interval_seconds": 0}"#)
                .validate()
                .is_err()
        );
        assert!(content("{}").validate().is_ok());
    }

    #[test]
    fn without_rules_the_token_policy_applies() {
        let t = token(
            r#"{"licence_duration": 3600, "persistence": true, "renewal_interval": 60,
                "hdcp": "HDCP_V1", "security_level": {"HD": 2}}"#,
        );
        let applied = merge(None, PolicySource::None, &t);
        assert_eq!(applied.licence_duration_seconds, Some(3600));
        assert!(applied.persistent);
        assert_eq!(applied.renewal_interval_seconds, Some(60));
        assert_eq!(applied.hdcp, Some(Hdcp::V1));
        assert_eq!(applied.level_of(Some(&track("HD"))).map(u8::from), Some(2));
        assert!(applied.narrowed.is_empty());
        // Nothing anywhere: not persistent, no limits.
        let nothing = merge(None, PolicySource::None, &TokenPolicy::default());
        assert!(!nothing.persistent);
        assert_eq!(nothing.licence_duration_seconds, None);
    }

    #[test]
    fn a_token_narrows_the_rules() {
        let rules = content(
            r#"{"security_level": {"SD": 3, "HD": 2}, "hdcp": "HDCP_V1", "persistent": true,
                "licence_duration_seconds": 600, "playback_duration_seconds": 7200,
                "renewal_interval_seconds": 60}"#,
        );
        let t = token(
            r#"{"licence_duration": 300, "playback_duration": 3600, "persistence": false,
                "renewal_interval": 30, "hdcp": "HDCP_V2_2",
                "security_level": {"HD": 1, "UHD1": 1}}"#,
        );
        let applied = merge(Some(&rules), PolicySource::Content, &t);
        assert_eq!(applied.licence_duration_seconds, Some(300));
        assert_eq!(applied.playback_duration_seconds, Some(3600));
        assert!(!applied.persistent);
        assert_eq!(applied.renewal_interval_seconds, Some(30));
        assert_eq!(applied.hdcp, Some(Hdcp::V2_2));
        assert_eq!(applied.level_of(Some(&track("HD"))).map(u8::from), Some(1));
        assert_eq!(
            applied.level_of(Some(&track("UHD1"))).map(u8::from),
            Some(1)
        );
        assert_eq!(applied.level_of(Some(&track("SD"))).map(u8::from), Some(3));
        assert!(applied.narrowed.is_empty(), "{:?}", applied.narrowed);
        assert_eq!(applied.source, PolicySource::Content);
    }

    #[test]
    fn a_token_cannot_widen_the_rules() {
        let rules = content(
            r#"{"security_level": {"HD": 1}, "hdcp": "HDCP_V2_2", "persistent": false,
                "licence_duration_seconds": 600, "playback_duration_seconds": 7200,
                "renewal_interval_seconds": 60}"#,
        );
        let t = token(
            r#"{"licence_duration": 86400, "playback_duration": 86400, "persistence": true,
                "renewal_interval": 3600, "hdcp": "HDCP_NONE", "security_level": {"HD": 3}}"#,
        );
        let applied = merge(Some(&rules), PolicySource::Tenant, &t);
        assert_eq!(applied.licence_duration_seconds, Some(600));
        assert_eq!(applied.playback_duration_seconds, Some(7200));
        assert!(!applied.persistent);
        assert_eq!(applied.renewal_interval_seconds, Some(60));
        assert_eq!(applied.hdcp, Some(Hdcp::V2_2));
        assert_eq!(applied.level_of(Some(&track("HD"))).map(u8::from), Some(1));
        assert_eq!(
            applied.narrowed,
            [
                "security_level",
                "hdcp",
                "persistence",
                "licence_duration",
                "playback_duration",
                "renewal_interval"
            ]
        );
        // A token that says nothing keeps every rule, persistence included.
        let silent = merge(
            Some(&content(r#"{"persistent": true}"#)),
            PolicySource::Content,
            &TokenPolicy::default(),
        );
        assert!(silent.persistent);
    }

    #[test]
    fn the_content_rules_replace_the_tenant_default() {
        let tenant = content(r#"{"licence_duration_seconds": 60}"#);
        let own = content(r#"{"persistent": true}"#);
        let (rules_of, source) = rules(Some(&own), Some(&tenant));
        assert_eq!((rules_of, source), (Some(&own), PolicySource::Content));
        let (rules_of, source) = rules(None, Some(&tenant));
        assert_eq!((rules_of, source), (Some(&tenant), PolicySource::Tenant));
        assert_eq!(rules(None, None).1, PolicySource::None);
    }

    #[test]
    fn levels_map_to_each_drm() {
        let applied = merge(
            Some(&content(
                r#"{"security_level": {"SD": 3, "HD": 1, "ALL": 2}}"#,
            )),
            PolicySource::Content,
            &token(r#"{"widevine_security_level": 2}"#),
        );
        assert_eq!(applied.widevine_robustness(Some(&track("HD"))), Some(4));
        // The token's floor is stronger than L3's SW_SECURE_CRYPTO.
        assert_eq!(applied.widevine_robustness(Some(&track("SD"))), Some(2));
        // A track type without its own level takes ALL's.
        assert_eq!(applied.widevine_robustness(Some(&track("UHD1"))), Some(3));
        assert_eq!(applied.widevine_robustness(None), Some(3));
        assert_eq!(
            applied.playready_security_level([Some(&track("SD")), Some(&track("HD"))]),
            Some(3000)
        );
        assert_eq!(
            applied.playready_security_level([Some(&track("SD"))]),
            Some(2000)
        );
        assert_eq!(Hdcp::V2_1.fairplay_type(), 0);
        assert_eq!(Hdcp::V2_2.fairplay_type(), 1);
        assert_eq!(Hdcp::None.fairplay_type(), -1);
    }

    #[test]
    fn token_policies_stored_before_persistence_became_optional_still_read() {
        // Sessions keep the token policy as JSON; older rows wrote `"persistence": false`.
        let t = token(r#"{"persistence": false, "licence_duration": 5}"#);
        assert_eq!(t.persistence, Some(false));
    }
}

//! `keyplex client …`: the packager side of a CPIX exchange, for packagers and scripts that
//! cannot speak CPIX themselves.
//!
//! `client cpix` asks a CPIX key server (keyplex or any other) for one key per track type
//! and the signaling of the chosen DRMs, and prints keys and signaling as JSON (the layout
//! of PallyCon's CPIX client: hex and base64 of key id, key and IV; per DRM the pssh box
//! with and without its header; the FairPlay key URI). `client packager-args` prints the
//! same keys as Shaka Packager raw-key arguments.
//!
//! The request names one key id per track type, derived from (content id, track type,
//! period) ([`client_kid`]): the key server keeps a key for ever under its id, so every run
//! for the same content gets the same keys, from keyplex or any other CPIX server. A tenant
//! with `kid_override` picks the key by its (content, track type, period) slot instead, and
//! shares it with the Widevine API, NAGRA JSON and GET CPIX.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_cpix::model::{
    ContentKeyEntry, ContentKeyPeriod, CpixDocument, CpixVersion, DrmSystemEntry, HlsSignaling,
    KeyPeriodFilter, KeyValue, Kid, Playlist, SystemIdAttr, UsageRule,
};
use keyplex_drm::{DrmSystem, PsshBox};
use keyplex_types::{EncryptionScheme, KeyId, TrackType};
use serde::Serialize;

/// Options shared by `client cpix` and `client packager-args`.
#[derive(clap::Args)]
pub struct ClientOptions {
    /// The CPIX endpoint, e.g. http://127.0.0.1:8080/acme/cpix.
    #[arg(long)]
    pub url: String,
    /// Content id (CPIX@contentId).
    #[arg(long = "content-id")]
    pub content_id: String,
    /// DRM systems to ask signaling for (comma separated): widevine, playready, fairplay,
    /// clearkey, or a DRM system the tenant defines (printed under `drm_systems.NAME`): by
    /// its name (e.g. `irdeto`), whose system id is looked up in the tenant's definition
    /// through the admin API (needs an admin token, see --admin-token), or as
    /// `NAME:SYSTEM-ID` (e.g. `irdeto:80a6be7e-1448-4c37-9e70-d5aebe04c8d2`, no admin token).
    #[arg(long, value_delimiter = ',', default_value = "widevine,playready")]
    pub drm: Vec<DrmArg>,
    /// cenc, cbcs, cens or cbc1. Default: cbcs when FairPlay is asked for, else cenc.
    #[arg(long)]
    pub scheme: Option<EncryptionScheme>,
    /// One key per track type (comma separated: SD, HD, UHD1, UHD2, AUDIO…). Default: one
    /// key for every track (ALL).
    #[arg(long = "track-types", value_delimiter = ',', default_value = "ALL")]
    pub track_types: Vec<String>,
    /// Key period index (live key rotation): asks for the keys of that period.
    #[arg(long)]
    pub period: Option<u64>,
    /// HTTP Basic user.
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    /// HTTP Basic password (or KEYPLEX_PASSWORD).
    #[arg(
        long,
        env = "KEYPLEX_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    pub password: Option<String>,
    /// Bearer token (JWT), sent as `Authorization: Bearer` (or KEYPLEX_TOKEN).
    #[arg(
        long,
        env = "KEYPLEX_TOKEN",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    pub token: Option<String>,
    /// Admin token (or KEYPLEX_ADMIN_TOKEN), only to look up the system id of a DRM system
    /// named in --drm by its bare name: `GET /admin/v1/tenants/{tenant}/drm-systems/{name}` on
    /// the server of --url, whose first path segment is the tenant. Without it, the token of
    /// --admin-token-file, else the `admin-token` file of the server's data directory, as
    /// `keyplex admin` finds it.
    #[arg(long, env = "KEYPLEX_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin token (e.g. `keyplex-data/admin-token`).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The server's data directory, whose `admin-token` is used when no admin token is given
    /// (default `./keyplex-data`).
    #[arg(long, value_name = "DIR")]
    pub data: Option<std::path::PathBuf>,
}

/// A `--drm` value: a DRM the client knows the system id of, or the bare name of a DRM system
/// the tenant defines, whose system id [`resolve_drms`] asks the admin API for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrmArg {
    Known(Drm),
    Named(String),
}

impl FromStr for DrmArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<Drm>() {
            Ok(drm) => Ok(Self::Known(drm)),
            Err(e) => {
                let lower = s.trim().to_ascii_lowercase();
                if !lower.contains(':') && keyplex_drm::define::is_valid_name(&lower) {
                    Ok(Self::Named(lower))
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// A DRM the client can ask signaling for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drm {
    Widevine,
    PlayReady,
    FairPlay,
    ClearKey,
    /// A DRM system the tenant defines (`drm_systems`), named by the operator.
    Defined {
        name: String,
        system_id: keyplex_drm::Uuid,
    },
}

impl Drm {
    const ALL: [Self; 4] = [
        Self::Widevine,
        Self::PlayReady,
        Self::FairPlay,
        Self::ClearKey,
    ];

    pub fn name(&self) -> &str {
        match self {
            Self::Widevine => "widevine",
            Self::PlayReady => "playready",
            Self::FairPlay => "fairplay",
            Self::ClearKey => "clearkey",
            Self::Defined { name, .. } => name,
        }
    }

    fn system_id(&self) -> keyplex_drm::Uuid {
        match self {
            Self::Widevine => DrmSystem::Widevine.system_id(),
            Self::PlayReady => DrmSystem::PlayReady.system_id(),
            Self::FairPlay => DrmSystem::FairPlay.system_id(),
            // The DASH-IF Clear Key id; its pssh is the W3C common box.
            Self::ClearKey => DrmSystem::ClearKeyDashIf.system_id(),
            Self::Defined { system_id, .. } => *system_id,
        }
    }

    /// The `--protection_systems` name Shaka Packager uses for this DRM (none for a
    /// tenant-defined one: only keyplex's PSSH box can signal it).
    fn shaka_name(&self) -> Option<&'static str> {
        match self {
            Self::Widevine => Some("Widevine"),
            Self::PlayReady => Some("PlayReady"),
            Self::FairPlay => Some("FairPlay"),
            Self::ClearKey => Some("CommonSystem"),
            Self::Defined { .. } => None,
        }
    }
}

impl FromStr for Drm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some((name, id)) = lower.split_once(':') {
            let system_id = keyplex_drm::define::parse_system_id(id).ok_or_else(|| {
                format!("{s:?}: {id:?} is not a DRM system id (8-4-4-4-12 hex digits)")
            })?;
            if !keyplex_drm::define::is_valid_name(name) {
                return Err(format!(
                    "{s:?}: the name must be a-z, 0-9, '-' and '_' (the tenant's definition's name)"
                ));
            }
            return Ok(Self::Defined {
                name: name.to_owned(),
                system_id,
            });
        }
        Self::ALL
            .into_iter()
            .find(|d| d.name() == lower)
            .ok_or_else(|| {
                format!(
                    "unknown DRM {s:?}: expected widevine, playready, fairplay, clearkey, or a DRM system the tenant defines: its name (a-z, 0-9, '-' and '_'), or NAME:SYSTEM-ID"
                )
            })
    }
}

impl fmt::Display for Drm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the client asks for, validated.
#[derive(Clone, Debug)]
pub struct KeyQuery {
    pub content_id: String,
    pub drms: Vec<Drm>,
    pub scheme: EncryptionScheme,
    pub track_types: Vec<TrackType>,
    pub period: Option<u64>,
}

impl KeyQuery {
    /// The query of `opts`, whose `--drm` names no DRM by a bare name (the tests' shortcut;
    /// `fetch` resolves bare names first, [`resolve_drms`], then [`Self::with_drms`]).
    #[cfg(test)]
    pub fn from_options(opts: &ClientOptions) -> Result<Self> {
        let drms = opts
            .drm
            .iter()
            .map(|d| match d {
                DrmArg::Known(drm) => Ok(drm.clone()),
                DrmArg::Named(name) => Err(anyhow!(
                    "--drm {name}: the system id of a DRM system the tenant defines is looked up through the admin API; pass --drm {name}:SYSTEM-ID or an admin token"
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Self::with_drms(opts, &drms)
    }

    /// The query of `opts` for `drms` (`--drm` resolved).
    pub fn with_drms(opts: &ClientOptions, all_drms: &[Drm]) -> Result<Self> {
        if opts.content_id.is_empty() {
            bail!("--content-id is empty");
        }
        let mut drms = Vec::new();
        for d in all_drms {
            if !drms.contains(d) {
                drms.push(d.clone());
            }
        }
        if drms.is_empty() {
            bail!("--drm names no DRM");
        }
        let scheme = opts.scheme.unwrap_or(if drms.contains(&Drm::FairPlay) {
            EncryptionScheme::Cbcs
        } else {
            EncryptionScheme::Cenc
        });
        if drms.contains(&Drm::FairPlay) && scheme != EncryptionScheme::Cbcs {
            bail!("FairPlay needs --scheme cbcs (it was {scheme})");
        }
        let mut track_types: Vec<TrackType> = Vec::new();
        for t in &opts.track_types {
            let t = TrackType::parse(t).map_err(|e| anyhow!("--track-types: {e}"))?;
            if track_types.contains(&t) {
                bail!("--track-types names {t} twice");
            }
            track_types.push(t);
        }
        if track_types.is_empty() {
            bail!("--track-types names no track type");
        }
        if track_types.len() > 1 && track_types.iter().any(|t| t.as_str() == TrackType::ALL) {
            bail!(
                "--track-types: ALL (one key for every track) cannot be combined with other types"
            );
        }
        Ok(Self {
            content_id: opts.content_id.clone(),
            drms,
            scheme,
            track_types,
            period: opts.period,
        })
    }
}

/// The CPIX 2.3 request: a ContentKey with a fresh kid per track type, a usage rule naming
/// its track type (none for ALL) and period, and a DRMSystem per (DRM, key) asking for the
/// signaling that DRM has.
pub fn build_request(query: &KeyQuery, kids: &[KeyId]) -> CpixDocument {
    let period_id = query.period.map(|p| format!("period-{p}"));
    let content_keys = kids
        .iter()
        .map(|kid| ContentKeyEntry {
            id: None,
            kid: Kid::new(*kid),
            explicit_iv: None,
            common_encryption_scheme: Some(query.scheme),
            content_id: None,
            depends_on_key: None,
            value: None,
        })
        .collect();
    let mut drm_systems = Vec::new();
    for drm in &query.drms {
        for kid in kids {
            let dash = *drm != Drm::FairPlay;
            drm_systems.push(DrmSystemEntry {
                id: None,
                system_id: SystemIdAttr {
                    uuid: *drm.system_id().as_bytes(),
                    as_written: drm.system_id().hyphenated().to_string(),
                },
                kid: Kid::new(*kid),
                name: None,
                pssh: dash.then(String::new),
                content_protection_data: dash.then(String::new),
                uri_ext_x_key: (*drm == Drm::FairPlay).then(String::new),
                hls_signaling: vec![HlsSignaling {
                    playlist: Some(Playlist::Media),
                    value: String::new(),
                }],
                smooth_streaming: None,
                hds_signaling: None,
                extensions: Vec::new(),
            });
        }
    }
    let usage_rules: Vec<UsageRule> = kids
        .iter()
        .zip(&query.track_types)
        .filter(|(_, t)| t.as_str() != TrackType::ALL || period_id.is_some())
        .map(|(kid, t)| UsageRule {
            id: None,
            kid: Kid::new(*kid),
            intended_track_type: (t.as_str() != TrackType::ALL).then(|| t.as_str().to_owned()),
            key_period_filters: period_id
                .iter()
                .map(|p| KeyPeriodFilter {
                    period_id: p.clone(),
                })
                .collect(),
            label_filters: Vec::new(),
            video_filters: Vec::new(),
            audio_filters: Vec::new(),
            bitrate_filters: Vec::new(),
            unknown_children: Vec::new(),
        })
        .collect();
    CpixDocument {
        version: Some(CpixVersion::V2_3),
        content_id: Some(query.content_id.clone()),
        content_keys: Some(content_keys),
        drm_systems: Some(drm_systems),
        periods: query.period.map(|p| {
            vec![ContentKeyPeriod {
                id: period_id.clone(),
                index: Some(p),
                ..ContentKeyPeriod::default()
            }]
        }),
        usage_rules: (!usage_rules.is_empty()).then_some(usage_rules),
        ..CpixDocument::default()
    }
}

/// The answer, as printed by `client cpix`. Holds keys in clear: it exists to print them.
#[derive(Serialize)]
pub struct ClientKeys {
    pub content_id: String,
    pub scheme: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    pub content_key_list: Vec<ClientKey>,
}

#[derive(Serialize)]
pub struct ClientKey {
    pub track_type: String,
    pub key_id: String,
    pub key_id_hex: String,
    pub key_id_b64: String,
    pub key_hex: String,
    pub key_b64: String,
    pub iv_hex: String,
    pub iv_b64: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub widevine: Option<DrmOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playready: Option<DrmOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fairplay: Option<DrmOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clearkey: Option<DrmOutput>,
    /// The signaling of the tenant-defined DRM systems asked for, by the name given.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub drm_systems: std::collections::BTreeMap<String, DrmOutput>,
}

#[derive(Serialize, Default)]
pub struct DrmOutput {
    /// base64 of the whole pssh box.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pssh: Option<String>,
    /// base64 of the pssh data only (no box header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pssh_payload_only: Option<String>,
    /// The `#EXT-X-KEY` URI (FairPlay `skd://…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_uri: Option<String>,
}

/// Reads the CPIX answer to [`build_request`]: keys in request order (the server may have
/// renamed kids under `kid_override`, so keys are matched by position, signaling by kid).
pub fn read_answer(query: &KeyQuery, doc: &CpixDocument) -> Result<ClientKeys> {
    let entries = doc.content_keys.as_deref().unwrap_or_default();
    if entries.len() != query.track_types.len() {
        bail!(
            "the server answered {} content keys for {} track types",
            entries.len(),
            query.track_types.len()
        );
    }
    let mut list = Vec::with_capacity(entries.len());
    for (entry, track_type) in entries.iter().zip(&query.track_types) {
        let kid = entry.kid.id;
        let key = match &entry.value {
            Some(KeyValue::Plain(k)) => *k.expose(),
            Some(KeyValue::Encrypted { .. }) => {
                bail!("key {kid} came encrypted: the client asks for clear keys")
            }
            None => bail!("the server answered no key for {kid}"),
        };
        let iv = entry
            .explicit_iv
            .with_context(|| format!("the server answered no explicitIV for {kid}"))?;
        let mut out = ClientKey {
            track_type: track_type.as_str().to_owned(),
            key_id: kid.to_string(),
            key_id_hex: kid.to_hex(),
            key_id_b64: B64.encode(kid.as_bytes()),
            key_hex: hex::encode(key),
            key_b64: B64.encode(key),
            iv_hex: iv.to_hex(),
            iv_b64: iv.to_base64(),
            widevine: None,
            playready: None,
            fairplay: None,
            clearkey: None,
            drm_systems: std::collections::BTreeMap::new(),
        };
        for drm in &query.drms {
            let entry = doc
                .drm_systems
                .iter()
                .flatten()
                .find(|d| d.kid.id == kid && d.system_id.uuid == *drm.system_id().as_bytes())
                .with_context(|| format!("the server answered no {drm} signaling for {kid}"))?;
            let output = drm_output(drm, entry)?;
            let slot = match drm {
                Drm::Widevine => &mut out.widevine,
                Drm::PlayReady => &mut out.playready,
                Drm::FairPlay => &mut out.fairplay,
                Drm::ClearKey => &mut out.clearkey,
                Drm::Defined { name, .. } => {
                    out.drm_systems.insert(name.clone(), output);
                    continue;
                }
            };
            *slot = Some(output);
        }
        list.push(out);
    }
    Ok(ClientKeys {
        content_id: query.content_id.clone(),
        scheme: query.scheme.to_string(),
        period: query.period,
        content_key_list: list,
    })
}

fn drm_output(drm: &Drm, entry: &DrmSystemEntry) -> Result<DrmOutput> {
    let mut out = DrmOutput::default();
    if let Some(pssh) = entry.pssh.as_deref().filter(|p| !p.is_empty()) {
        let bytes = B64
            .decode(pssh.trim())
            .with_context(|| format!("{drm} PSSH is not base64"))?;
        let boxes = PsshBox::parse_all(&bytes).map_err(|e| anyhow!("{drm} PSSH: {e}"))?;
        let payload: Vec<u8> = boxes.iter().flat_map(|b| b.data.iter().copied()).collect();
        out.pssh = Some(B64.encode(&bytes));
        out.pssh_payload_only = Some(B64.encode(payload));
    }
    if *drm == Drm::FairPlay {
        let uri = match entry.uri_ext_x_key.as_deref().filter(|u| !u.is_empty()) {
            Some(b64) => {
                String::from_utf8(B64.decode(b64.trim()).context("URIExtXKey is not base64")?)
                    .context("URIExtXKey is not text")?
            }
            None => entry
                .hls_signaling
                .iter()
                .filter_map(|h| B64.decode(h.value.trim()).ok())
                .filter_map(|line| String::from_utf8(line).ok())
                .find_map(|line| uri_attribute(&line))
                .context("the server answered no FairPlay key URI")?,
        };
        out.key_uri = Some(uri);
    }
    Ok(out)
}

/// `URI="…"` of an `#EXT-X-KEY` line.
fn uri_attribute(line: &str) -> Option<String> {
    let start = line.find("URI=\"")? + 5;
    let rest = line.get(start..)?;
    Some(rest.get(..rest.find('"')?)?.to_owned())
}

/// The key id the client names for one track type of a content and period: the first 16
/// bytes of SHA-256 over the three, marked as a UUIDv8 (RFC 9562, custom). Deterministic,
/// so that running the client twice asks for the same keys instead of creating new ones;
/// distinct per content, track type and period, like the keys themselves.
pub fn client_kid(content_id: &str, track_type: &TrackType, period: Option<u64>) -> KeyId {
    use sha2::{Digest, Sha256};
    let period = period.map_or_else(|| "vod".to_owned(), |p| p.to_string());
    let digest = Sha256::digest(format!(
        "keyplex client kid v1\n{content_id}\n{}\n{period}",
        track_type.as_str()
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    KeyId::from_bytes(bytes)
}

/// The server's base URL and the tenant of a CPIX endpoint URL: its first path segment
/// (`http://127.0.0.1:8080/acme/cpix` is `http://127.0.0.1:8080` and `acme`).
fn server_and_tenant(url: &str) -> Result<(String, String)> {
    let mut parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
    let tenant = parsed
        .path_segments()
        .and_then(|mut segments| segments.next())
        .filter(|segment| !segment.is_empty())
        .map(str::to_owned)
        .with_context(|| {
            format!("--url {url:?} names no tenant (the first segment of its path, as in https://keys.example.com/acme/cpix)")
        })?;
    parsed.set_path("");
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok((parsed.as_str().trim_end_matches('/').to_owned(), tenant))
}

/// The `detail` of a problem+json answer, else the text.
fn problem_detail(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("detail")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned())
}

/// What looking up a definition takes: the admin token, the server and the tenant of --url.
struct AdminAccess {
    token: String,
    server: String,
    tenant: String,
}

impl AdminAccess {
    /// For `--drm name`: fails with what to pass instead when there is no admin token.
    fn of(opts: &ClientOptions, name: &str) -> Result<Self> {
        let token = match crate::admin_cli::find_admin_token(
            opts.admin_token.as_deref(),
            opts.admin_token_file.as_deref(),
            opts.data.as_deref(),
        )? {
            crate::admin_cli::AdminToken::Found(token) => token,
            crate::admin_cli::AdminToken::Missing(path) => bail!(
                "--drm {name}: {name} is not built in, and the system id of a DRM system the tenant defines is looked up through the admin API, but there is no admin token (--admin-token, KEYPLEX_ADMIN_TOKEN, --admin-token-file, or {} next to the server): pass --drm {name}:SYSTEM-ID, or an admin token",
                path.display()
            ),
        };
        let (server, tenant) = server_and_tenant(&opts.url)?;
        Ok(Self {
            token,
            server,
            tenant,
        })
    }
}

/// `--drm` with every bare name resolved to the tenant's definition: its system id from
/// `GET /admin/v1/tenants/{tenant}/drm-systems/{name}` with the admin token. Without a bare
/// name nothing is asked (and no admin token is needed).
pub async fn resolve_drms(opts: &ClientOptions, client: &reqwest::Client) -> Result<Vec<Drm>> {
    let mut access: Option<AdminAccess> = None;
    let mut drms = Vec::with_capacity(opts.drm.len());
    for arg in &opts.drm {
        let name = match arg {
            DrmArg::Known(drm) => {
                drms.push(drm.clone());
                continue;
            }
            DrmArg::Named(name) => name,
        };
        let admin = match access {
            Some(ref admin) => admin,
            None => access.insert(AdminAccess::of(opts, name)?),
        };
        let (server, tenant) = (&admin.server, &admin.tenant);
        let url = format!("{server}/admin/v1/tenants/{tenant}/drm-systems/{name}");
        let response = client
            .get(&url)
            .bearer_auth(&admin.token)
            .send()
            .await
            .with_context(|| format!("--drm {name}: GET {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let pass = format!("pass --drm {name}:SYSTEM-ID");
        match status.as_u16() {
            200 => {}
            404 => bail!(
                "--drm {name}: tenant {tenant} has no DRM system definition {name:?} (GET {url} answered 404: {}): name a built-in DRM or a defined system, or {pass}",
                problem_detail(&text)
            ),
            401 | 403 => bail!(
                "--drm {name}: the admin token was refused ({status} from GET {url}): {pass}, or the server's admin token"
            ),
            _ => bail!(
                "--drm {name}: GET {url} answered {status}: {}",
                problem_detail(&text)
            ),
        }
        let definition: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("--drm {name}: the answer of GET {url} is not JSON"))?;
        let system_id = definition
            .get("system_id")
            .and_then(serde_json::Value::as_str)
            .and_then(keyplex_drm::define::parse_system_id)
            .with_context(|| {
                format!("--drm {name}: the answer of GET {url} has no system_id: {pass}")
            })?;
        drms.push(Drm::Defined {
            name: name.clone(),
            system_id,
        });
    }
    Ok(drms)
}

/// Resolves `--drm`, POSTs the request and reads the answer.
pub async fn fetch(opts: &ClientOptions) -> Result<(KeyQuery, ClientKeys)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("keyplex-client/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let drms = resolve_drms(opts, &client).await?;
    let query = KeyQuery::with_drms(opts, &drms)?;
    let kids: Vec<KeyId> = query
        .track_types
        .iter()
        .map(|t| client_kid(&query.content_id, t, query.period))
        .collect();
    let xml = keyplex_cpix::write_document(&build_request(&query, &kids));
    let mut request = client
        .post(&opts.url)
        .header("content-type", "application/xml")
        .body(xml);
    if let (Some(user), Some(password)) = (&opts.user, &opts.password) {
        request = request.basic_auth(user, Some(password));
    } else if let Some(token) = &opts.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {}", opts.url))?;
    let status = response.status();
    let body = response.bytes().await.context("reading the answer")?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        bail!("{} answered {status}: {}", opts.url, text.trim());
    }
    let doc =
        keyplex_cpix::read_document(&body).map_err(|e| anyhow!("the answer is not CPIX: {e}"))?;
    let keys = read_answer(&query, &doc)?;
    Ok((query, keys))
}

/// Shaka Packager raw-key arguments for `keys`. `generate_signaling` asks the packager to
/// build the DRM signaling itself (`--protection_systems`) instead of using keyplex's
/// boxes (`--pssh`).
pub fn packager_args(keys: &ClientKeys, drms: &[Drm], generate_signaling: bool) -> Vec<String> {
    let key_list: Vec<String> = keys
        .content_key_list
        .iter()
        .map(|k| {
            // Shaka's empty label is the default key, for every stream: keyplex's ALL.
            let label = if k.track_type == TrackType::ALL {
                ""
            } else {
                k.track_type.as_str()
            };
            format!(
                "label={label}:key_id={}:key={}:iv={}",
                k.key_id_hex, k.key_hex, k.iv_hex
            )
        })
        .collect();
    let mut args = vec![
        "--enable_raw_key_encryption".to_owned(),
        "--keys".to_owned(),
        key_list.join(","),
        "--protection_scheme".to_owned(),
        keys.scheme.clone(),
    ];
    let pssh_hex: String = keys
        .content_key_list
        .iter()
        .flat_map(|k| {
            [&k.widevine, &k.playready, &k.clearkey]
                .into_iter()
                .flatten()
                .chain(k.drm_systems.values())
        })
        .filter_map(|d| d.pssh.as_deref())
        .filter_map(|b64| B64.decode(b64).ok())
        .map(hex::encode)
        .collect();
    if generate_signaling || pssh_hex.is_empty() {
        let systems: Vec<&str> = drms.iter().filter_map(Drm::shaka_name).collect();
        args.push("--protection_systems".to_owned());
        args.push(systems.join(","));
    } else {
        args.push("--pssh".to_owned());
        args.push(pssh_hex);
    }
    if let Some(uri) = keys
        .content_key_list
        .first()
        .and_then(|k| k.fairplay.as_ref())
        .and_then(|f| f.key_uri.clone())
    {
        args.push("--hls_key_uri".to_owned());
        args.push(uri);
    }
    args
}

/// What an operator needs to know to use [`packager_args`] (printed on stderr).
pub fn packager_notes(keys: &ClientKeys) -> Vec<String> {
    let mut notes = vec![
        "keys are chosen per stream by its drm_label: Shaka derives SD/HD/UHD1/UHD2 from the video resolution (--max_sd_pixels, --max_hd_pixels, --max_uhd1_pixels) and AUDIO for audio; set drm_label=… in a stream descriptor to pick a key explicitly; an empty label (track type ALL) is the key of every stream".to_owned(),
        "--pssh carries keyplex's pssh boxes of every key into every init segment and the MPD".to_owned(),
    ];
    if keys.content_key_list.len() > 1 {
        notes.push(format!(
            "labels: {}",
            keys.content_key_list
                .iter()
                .map(|k| k.track_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if keys.period.is_some() {
        notes.push(
            "these are the keys of one key period: raw-key mode does not rotate keys".to_owned(),
        );
    }
    notes
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        opts: ClientOptions,
    }

    fn options(args: &[&str]) -> ClientOptions {
        let mut all = vec![
            "test",
            "--url",
            "http://127.0.0.1:1/acme/cpix",
            "--content-id",
            "movie-1",
        ];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().opts
    }

    fn key(track_type: &str, n: u8) -> ClientKey {
        ClientKey {
            track_type: track_type.into(),
            key_id: String::new(),
            key_id_hex: hex::encode([n; 16]),
            key_id_b64: String::new(),
            key_hex: hex::encode([n + 1; 16]),
            key_b64: String::new(),
            iv_hex: hex::encode([n + 2; 16]),
            iv_b64: String::new(),
            widevine: Some(DrmOutput {
                pssh: Some(B64.encode([0xaa, n])),
                ..DrmOutput::default()
            }),
            playready: Some(DrmOutput {
                pssh: Some(B64.encode([0xbb, n])),
                ..DrmOutput::default()
            }),
            fairplay: None,
            clearkey: None,
            drm_systems: std::collections::BTreeMap::new(),
        }
    }

    fn keys(list: Vec<ClientKey>) -> ClientKeys {
        ClientKeys {
            content_id: "movie-1".into(),
            scheme: "cenc".into(),
            period: None,
            content_key_list: list,
        }
    }

    #[test]
    fn options_parse_and_default() {
        let q = KeyQuery::from_options(&options(&[])).unwrap();
        assert_eq!(q.drms, [Drm::Widevine, Drm::PlayReady]);
        assert_eq!(q.scheme, EncryptionScheme::Cenc);
        assert_eq!(q.track_types, [TrackType::all()]);
        let q = KeyQuery::from_options(&options(&[
            "--drm",
            "widevine,FairPlay,clearkey",
            "--track-types",
            "sd,HD,AUDIO",
            "--period",
            "7",
        ]))
        .unwrap();
        assert_eq!(q.drms, [Drm::Widevine, Drm::FairPlay, Drm::ClearKey]);
        assert_eq!(q.scheme, EncryptionScheme::Cbcs, "FairPlay implies cbcs");
        let types: Vec<_> = q.track_types.iter().map(TrackType::as_str).collect();
        assert_eq!(types, ["SD", "HD", "AUDIO"]);
        assert_eq!(q.period, Some(7));
        assert!(
            KeyQuery::from_options(&options(&["--drm", "fairplay", "--scheme", "cenc"])).is_err()
        );
        assert!(KeyQuery::from_options(&options(&["--track-types", "SD,SD"])).is_err());
        assert!(KeyQuery::from_options(&options(&["--track-types", "ALL,SD"])).is_err());
        // A name that is not built in is a DRM system the tenant defines, resolved through
        // the admin API by `fetch` (a_bare_name_without_an_admin_token_says_what_to_pass).
        let marlin =
            Cli::try_parse_from(["t", "--url", "u", "--content-id", "c", "--drm", "marlin"]);
        assert_eq!(marlin.unwrap().opts.drm, [DrmArg::Named("marlin".into())]);
        assert!(KeyQuery::from_options(&options(&["--drm", "marlin"])).is_err());
        let cli = Cli::try_parse_from(["t", "--url", "u", "--content-id", "c", "--drm", "mar lin"]);
        assert!(cli.is_err(), "not a name a definition can have");
        // A DRM system the tenant defines: NAME:SYSTEM-ID.
        let q = KeyQuery::from_options(&options(&[
            "--drm",
            "widevine,irdeto:80a6be7e-1448-4c37-9e70-d5aebe04c8d2",
        ]))
        .unwrap();
        assert_eq!(
            q.drms[1],
            Drm::Defined {
                name: "irdeto".into(),
                system_id: "80a6be7e-1448-4c37-9e70-d5aebe04c8d2".parse().unwrap()
            }
        );
        for bad in [
            "irdeto:80a6be7e",
            "Irdeto Prod:80a6be7e-1448-4c37-9e70-d5aebe04c8d2",
        ] {
            let cli = Cli::try_parse_from(["t", "--url", "u", "--content-id", "c", "--drm", bad]);
            assert!(cli.is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["t", "--url", "u", "--content-id", "c", "--user", "x"]);
        assert!(cli.is_err(), "a user needs a password");
    }

    #[test]
    fn drm_values_parse_into_built_ins_bare_names_and_name_with_system_id() {
        let parse = |s: &str| s.parse::<DrmArg>();
        assert_eq!(parse("Widevine"), Ok(DrmArg::Known(Drm::Widevine)));
        assert_eq!(parse(" clearkey "), Ok(DrmArg::Known(Drm::ClearKey)));
        assert_eq!(parse("irdeto"), Ok(DrmArg::Named("irdeto".into())));
        assert_eq!(parse("Irdeto"), Ok(DrmArg::Named("irdeto".into())));
        assert_eq!(
            parse("verimatrix-vcas_2"),
            Ok(DrmArg::Named("verimatrix-vcas_2".into()))
        );
        assert_eq!(
            parse("irdeto:80a6be7e-1448-4c37-9e70-d5aebe04c8d2"),
            Ok(DrmArg::Known(Drm::Defined {
                name: "irdeto".into(),
                system_id: "80a6be7e-1448-4c37-9e70-d5aebe04c8d2".parse().unwrap(),
            }))
        );
        for bad in [
            "",
            "-irdeto",
            "ir deto",
            "irdeto:80a6be7e",
            "irdeto/x",
            &"a".repeat(65),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("NAME:SYSTEM-ID") || err.contains("is not a DRM system id"),
                "{bad:?}: {err}"
            );
        }
        // Bare names and built-ins mix; the query of resolved DRMs drops duplicates.
        let opts = options(&["--drm", "widevine,irdeto,widevine"]);
        assert_eq!(
            opts.drm,
            [
                DrmArg::Known(Drm::Widevine),
                DrmArg::Named("irdeto".into()),
                DrmArg::Known(Drm::Widevine)
            ]
        );
        let irdeto = Drm::Defined {
            name: "irdeto".into(),
            system_id: "80a6be7e-1448-4c37-9e70-d5aebe04c8d2".parse().unwrap(),
        };
        let q =
            KeyQuery::with_drms(&opts, &[Drm::Widevine, irdeto.clone(), Drm::Widevine]).unwrap();
        assert_eq!(q.drms, [Drm::Widevine, irdeto]);
    }

    #[test]
    fn the_server_and_tenant_come_from_the_cpix_url() {
        assert_eq!(
            server_and_tenant("http://127.0.0.1:8080/acme/cpix").unwrap(),
            ("http://127.0.0.1:8080".to_owned(), "acme".to_owned())
        );
        assert_eq!(
            server_and_tenant("https://keys.example.com/acme-2/speke/v2?x=1#f").unwrap(),
            ("https://keys.example.com".to_owned(), "acme-2".to_owned())
        );
        for bad in [
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080",
            "acme/cpix",
        ] {
            assert!(server_and_tenant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bare_name_without_an_admin_token_says_what_to_pass() {
        let empty =
            std::env::temp_dir().join(format!("keyplex-client-admin-token-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let _ = std::fs::remove_file(empty.join("admin-token"));
        let dir = empty.to_str().unwrap();
        let mut opts = options(&["--drm", "irdeto", "--data", dir]);
        opts.admin_token = None; // whatever KEYPLEX_ADMIN_TOKEN the test runs with
        let err = AdminAccess::of(&opts, "irdeto")
            .err()
            .expect("no token anywhere")
            .to_string();
        assert!(
            err.contains("pass --drm irdeto:SYSTEM-ID, or an admin token")
                && err.contains("admin-token"),
            "{err}"
        );
        // The data directory's admin-token file, as `keyplex admin` finds it.
        std::fs::write(empty.join("admin-token"), "from-the-data-dir\n").unwrap();
        let access = AdminAccess::of(&opts, "irdeto").unwrap();
        assert_eq!(access.token, "from-the-data-dir");
        assert_eq!(
            (access.server.as_str(), access.tenant.as_str()),
            ("http://127.0.0.1:1", "acme")
        );
        let given = options(&["--drm", "irdeto", "--data", dir, "--admin-token", "given"]);
        assert_eq!(AdminAccess::of(&given, "irdeto").unwrap().token, "given");
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn the_request_names_one_key_per_track_type_with_rules_and_period() {
        let q = KeyQuery::from_options(&options(&[
            "--drm",
            "widevine,fairplay",
            "--track-types",
            "SD,AUDIO",
            "--period",
            "3",
        ]))
        .unwrap();
        let kids = [KeyId::from_bytes([1; 16]), KeyId::from_bytes([2; 16])];
        let doc = build_request(&q, &kids);
        let xml = keyplex_cpix::write_document(&doc);
        // The request is a valid CPIX document that reads back the same.
        let back = keyplex_cpix::read_document(xml.as_bytes()).unwrap();
        back.validate_references().unwrap();
        assert_eq!(back.content_id.as_deref(), Some("movie-1"));
        assert_eq!(back.content_keys.as_ref().unwrap().len(), 2);
        let rules = back.usage_rules.as_ref().unwrap();
        assert_eq!(rules[0].intended_track_type.as_deref(), Some("SD"));
        assert_eq!(rules[1].intended_track_type.as_deref(), Some("AUDIO"));
        assert_eq!(rules[1].key_period_filters[0].period_id, "period-3");
        assert_eq!(back.periods.as_ref().unwrap()[0].index, Some(3));
        let drms = back.drm_systems.as_ref().unwrap();
        assert_eq!(drms.len(), 4, "one DRMSystem per DRM and key");
        assert_eq!(
            drms[0].pssh.as_deref(),
            Some(""),
            "Widevine asks for a PSSH"
        );
        assert!(drms[2].pssh.is_none(), "FairPlay has none");
        assert_eq!(drms[2].uri_ext_x_key.as_deref(), Some(""));
        // One key for all tracks: no rule at all.
        let q = KeyQuery::from_options(&options(&[])).unwrap();
        assert!(build_request(&q, &kids[..1]).usage_rules.is_none());
    }

    #[test]
    fn packager_args_list_labelled_keys_and_boxes() {
        let k = keys(vec![key("SD", 0x10), key("AUDIO", 0x20)]);
        let args = packager_args(&k, &[Drm::Widevine, Drm::PlayReady], false);
        assert_eq!(
            args,
            [
                "--enable_raw_key_encryption",
                "--keys",
                &format!(
                    "label=SD:key_id={}:key={}:iv={},label=AUDIO:key_id={}:key={}:iv={}",
                    "10".repeat(16),
                    "11".repeat(16),
                    "12".repeat(16),
                    "20".repeat(16),
                    "21".repeat(16),
                    "22".repeat(16)
                ),
                "--protection_scheme",
                "cenc",
                "--pssh",
                "aa10bb10aa20bb20",
            ]
        );
        let generated = packager_args(&k, &[Drm::Widevine, Drm::ClearKey], true);
        assert_eq!(
            &generated[5..],
            ["--protection_systems", "Widevine,CommonSystem"]
        );
        // ALL is Shaka's default key (empty label); FairPlay adds its key URI.
        let mut all = key("ALL", 0x30);
        all.fairplay = Some(DrmOutput {
            key_uri: Some("skd://abc".into()),
            ..DrmOutput::default()
        });
        let args = packager_args(&keys(vec![all]), &[Drm::FairPlay], false);
        assert!(args[2].starts_with("label=:key_id=3030"));
        assert_eq!(&args[args.len() - 2..], ["--hls_key_uri", "skd://abc"]);
    }

    #[test]
    fn client_kids_are_stable_and_distinct_per_content_track_and_period() {
        let hd = TrackType::parse("HD").unwrap();
        let sd = TrackType::parse("SD").unwrap();
        let a = client_kid("movie-1", &hd, None);
        assert_eq!(a, client_kid("movie-1", &hd, None), "the same every run");
        assert_eq!(a.to_string(), client_kid("movie-1", &hd, None).to_string());
        for other in [
            client_kid("movie-2", &hd, None),
            client_kid("movie-1", &sd, None),
            client_kid("movie-1", &hd, Some(0)),
            client_kid("movie-1", &hd, Some(1)),
        ] {
            assert_ne!(a, other);
        }
        let uuid = a.to_string();
        assert_eq!(uuid.as_bytes()[14], b'8', "UUIDv8: {uuid}");
        assert!(
            matches!(uuid.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "{uuid}"
        );
    }

    #[test]
    fn uri_attribute_reads_ext_x_key() {
        assert_eq!(
            uri_attribute(r#"#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://abc",KEYFORMAT="com.apple.streamingkeydelivery""#).as_deref(),
            Some("skd://abc")
        );
        assert_eq!(uri_attribute("#EXT-X-KEY:METHOD=NONE"), None);
    }
}

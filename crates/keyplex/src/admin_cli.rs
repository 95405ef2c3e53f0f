//! `keyplex admin …` and `keyplex audit …`: the admin API (`/admin/v1`, docs/operators.md)
//! from the command line. Every command is one or two HTTP calls; answers are printed as JSON
//! (the audit trail as a table unless `--json`).

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::out::{noteln, outln};

#[derive(Args, Clone)]
pub struct Connection {
    /// The keyplex server.
    #[arg(
        long,
        env = "KEYPLEX_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// The admin token (`[admin] token`, or the generated `<data_dir>/admin-token`).
    #[arg(
        long,
        env = "KEYPLEX_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// A file holding the admin token (e.g. `keyplex-data/admin-token`).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// The server's data directory, whose `admin-token` is used when no token is given
    /// (default `./keyplex-data`, as `keyplex serve` uses).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Tenants: list, show, create, disable, enable.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// A tenant's credentials: list, add, revoke.
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// A tenant's DRM systems (Irdeto, Conax, …): list, show, put, remove.
    DrmSystems {
        #[command(subcommand)]
        command: DrmSystemsCommand,
    },
    /// A tenant's contents and their keys' metadata (never key values).
    Contents {
        #[command(subcommand)]
        command: ContentsCommand,
    },
    /// Write a tenant's keys to a bundle encrypted to an RSA public key (backup).
    Export {
        /// The tenant id.
        tenant: String,
        /// The operator's RSA public key (PEM `PUBLIC KEY` or `CERTIFICATE`, ≥ 2048 bits).
        #[arg(long)]
        public_key: PathBuf,
        /// Where to write the bundle (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Restore keys from a bundle into a tenant (identical keys already there are skipped;
    /// a conflicting key refuses the whole bundle).
    Import {
        /// The tenant id.
        tenant: String,
        /// The bundle `admin export` wrote.
        #[arg(long)]
        bundle: PathBuf,
        /// The operator's RSA private key (unencrypted PKCS#8 PEM).
        #[arg(long)]
        private_key: PathBuf,
    },
    /// Master key operations.
    MasterKey {
        #[command(subcommand)]
        command: MasterKeyCommand,
    },
    /// Counts behind the dashboard.
    Stats {
        /// Only this tenant's counts (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// 300, 900, 3600, 21600 or 86400 seconds.
        #[arg(long, default_value_t = 900)]
        window: u64,
    },
}

#[derive(Subcommand)]
pub enum TenantsCommand {
    /// Every tenant: its id, where it is defined, whether it is disabled, its credentials.
    List,
    /// One tenant.
    Show {
        /// The tenant id.
        id: String,
    },
    /// Create a tenant; `--settings` takes the fields of a `[tenants.x]` table as JSON.
    Create {
        /// The new tenant's id (`[a-z0-9_-]`, not a reserved word).
        id: String,
        /// The tenant's settings as JSON, e.g. `{"kid_override": true,
        /// "crypto_period_seconds": 60}` (credentials go through `credentials add`).
        #[arg(long, value_name = "JSON")]
        settings: Option<String>,
    },
    /// Refuse every packager and player request of the tenant (its keys stay).
    Disable {
        /// The tenant id.
        id: String,
    },
    /// Serve a disabled tenant again.
    Enable {
        /// The tenant id.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// A tenant's credentials (never their secrets).
    List {
        /// The tenant id.
        tenant: String,
    },
    /// Add a credential: `--type basic --set user=packager` (a password is generated and
    /// printed once when none is set), `--type sigv4 --set access_key_id=… --set
    /// secret_access_key=…`, `--type jwt --set-file rs256_public_key_pem=key.pem`, …
    Add {
        /// The tenant id.
        tenant: String,
        /// basic, jwt, sigv4, widevine_signer, get_token, licence_jwt or enc_token.
        #[arg(long = "type")]
        kind: String,
        /// A field of the credential, `name=value`.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// A field read from a file, `name=path` (PEM keys).
        #[arg(long = "set-file", value_name = "NAME=PATH")]
        set_file: Vec<String>,
    },
    /// Revoke a credential: refused at once.
    Revoke {
        /// The tenant id.
        tenant: String,
        /// The credential id (`cred_…`, from `credentials list`).
        id: String,
    },
}

#[derive(Subcommand)]
pub enum DrmSystemsCommand {
    /// The DRM systems a tenant defines (configuration file and admin API).
    List {
        /// The tenant id.
        tenant: String,
    },
    /// One definition.
    Show {
        /// The tenant id.
        tenant: String,
        /// The definition's name.
        name: String,
    },
    /// Define or change a DRM system (answered from the next key request on). The fields
    /// are those of a `[[tenants.x.drm_systems]]` table (docs/integrations.md), from
    /// `--file` (JSON) and/or the flags below (a flag wins over the file).
    Put(Box<DrmSystemPut>),
    /// Remove a definition (its system id is unknown again from the next request on).
    Remove {
        /// The tenant id.
        tenant: String,
        /// The definition's name.
        name: String,
    },
}

/// The fields of `admin drm-systems put`.
#[derive(Args)]
pub struct DrmSystemPut {
    /// The tenant id.
    tenant: String,
    /// The definition's name (`[a-z0-9][a-z0-9_-]*`).
    name: String,
    /// A JSON file with the definition's fields.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// The DASH-IF system id (8-4-4-4-12 hex digits).
    #[arg(long)]
    system_id: Option<String>,
    /// Replace the signaling of the built-in system with this id.
    #[arg(long = "override")]
    override_builtin: bool,
    /// PSSH box version: 0, or 1 (lists the key ids).
    #[arg(long)]
    pssh_version: Option<u8>,
    /// Template of the PSSH data, e.g. `{kid_base64}`.
    #[arg(long)]
    pssh_data: Option<String>,
    /// How the expanded template becomes bytes: utf8, base64 or hex.
    #[arg(long)]
    pssh_data_encoding: Option<String>,
    /// The DASH `ContentProtection@value`.
    #[arg(long)]
    dash_value: Option<String>,
    /// The HLS `KEYFORMAT` (the system has HLS signaling only with it).
    #[arg(long)]
    hls_keyformat: Option<String>,
    /// Template of the HLS key URI (default: the PSSH box as a data URI).
    #[arg(long)]
    hls_uri: Option<String>,
    /// The licence URL, `{la_url}` in templates.
    #[arg(long)]
    la_url: Option<String>,
    /// A GET-style form (`dash`, `hls`) whose answers include the system; repeatable.
    #[arg(long = "format", value_name = "FORMAT")]
    formats: Vec<String>,
}

#[derive(Subcommand)]
pub enum ContentsCommand {
    /// A tenant's contents, with how many keys each has and when they were made.
    List {
        /// The tenant id.
        tenant: String,
        /// Only content ids that contain this text.
        #[arg(long)]
        search: Option<String>,
        /// The `next` of the previous page.
        #[arg(long)]
        after: Option<String>,
        /// Contents per page (default 50, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// A content's keys: key id, track type, period, origin — never key values.
    Keys {
        /// The tenant id.
        tenant: String,
        /// The content id.
        content_id: String,
    },
    /// A content's licence rules: shown by default, replaced with --set or --set-file,
    /// removed with --delete (the tenant's default then applies).
    Policy {
        /// The tenant id.
        tenant: String,
        /// The content id.
        content_id: String,
        /// The new rules as JSON, e.g. '{"security_level":{"SD":3,"HD":1},"hdcp":"HDCP_V2_2",
        /// "persistent":false,"licence_duration_seconds":600}'.
        #[arg(long, conflicts_with_all = ["set_file", "delete"])]
        set: Option<String>,
        /// The new rules from a JSON file.
        #[arg(long, conflicts_with = "delete")]
        set_file: Option<PathBuf>,
        /// Remove the content's own rules.
        #[arg(long)]
        delete: bool,
    },
}

#[derive(Subcommand)]
pub enum MasterKeyCommand {
    /// Generate a new master key and re-seal every stored key and credential under it,
    /// online. The previous key file is kept as `master.key.retired-<fingerprint>`.
    Rotate,
}

#[derive(Args)]
pub struct AuditArgs {
    /// Only this tenant's events.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this content's events.
    #[arg(long)]
    content_id: Option<String>,
    /// key.created, key.delivered, licence.granted, licence.denied, admin.…
    #[arg(long)]
    action: Option<String>,
    /// RFC 3339 time or Unix seconds.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time or Unix seconds.
    #[arg(long)]
    until: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print the events as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Where [`find_admin_token`] found the admin token, or where it looked last.
pub(crate) enum AdminToken {
    Found(String),
    /// None was given and the data directory has no `admin-token` file (this one).
    Missing(PathBuf),
}

/// The admin token: the one given, else the content of `token_file`, else — next to the
/// server — the `admin-token` `keyplex serve` generated in its data directory (`data`,
/// default `./keyplex-data`, as `keyplex serve` uses). Shared by `keyplex admin`, `keyplex
/// audit` and `keyplex client` (which asks the admin API for a tenant's DRM definitions).
pub(crate) fn find_admin_token(
    token: Option<&str>,
    token_file: Option<&std::path::Path>,
    data: Option<&std::path::Path>,
) -> Result<AdminToken> {
    if let Some(token) = token {
        return Ok(AdminToken::Found(token.to_owned()));
    }
    if let Some(path) = token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(AdminToken::Found(token.trim().to_owned()));
    }
    let dir = data.map_or_else(|| PathBuf::from("keyplex-data"), std::path::Path::to_owned);
    let path = dir.join("admin-token");
    Ok(match std::fs::read_to_string(&path) {
        Ok(token) => AdminToken::Found(token.trim().to_owned()),
        Err(_) => AdminToken::Missing(path),
    })
}

impl Api {
    fn new(connection: &Connection) -> Result<Self> {
        let found = find_admin_token(
            connection.token.as_deref(),
            connection.token_file.as_deref(),
            connection.data.as_deref(),
        )?;
        let token = match found {
            AdminToken::Found(token) => token,
            AdminToken::Missing(path) => bail!(
                "the admin token is needed: --token, KEYPLEX_ADMIN_TOKEN, --token-file, or run next to the server's data directory ({} not found; --data DIR names another)",
                path.display()
            ),
        };
        Ok(Self {
            http: reqwest::Client::new(),
            base: connection.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(text);
            bail!("{} {path}: {detail}", status.as_u16());
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the server's answer is not JSON")
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.call(reqwest::Method::GET, path, query, None).await
    }
}

fn segment(s: &str) -> String {
    // Ids are [A-Za-z0-9_.:-]: nothing to escape but refuse what would change the path.
    s.replace(['/', '?', '#'], "_")
}

fn print(value: &Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

fn credential_body(kind: &str, set: &[String], set_file: &[String]) -> Result<Value> {
    let mut body = serde_json::Map::new();
    body.insert("type".into(), Value::String(kind.to_owned()));
    for pair in set {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected NAME=VALUE"))?;
        body.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    for pair in set_file {
        let (name, path) = pair
            .split_once('=')
            .with_context(|| format!("--set-file {pair:?}: expected NAME=PATH"))?;
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        body.insert(name.to_owned(), Value::String(text));
    }
    Ok(Value::Object(body))
}

pub async fn run(connection: &Connection, command: AdminCommand) -> Result<()> {
    use reqwest::Method;
    let api = Api::new(connection)?;
    match command {
        AdminCommand::Tenants { command } => match command {
            TenantsCommand::List => print(&api.get("/admin/v1/tenants", &[]).await?),
            TenantsCommand::Show { id } => print(
                &api.get(&format!("/admin/v1/tenants/{}", segment(&id)), &[])
                    .await?,
            ),
            TenantsCommand::Create { id, settings } => {
                let settings: Value = match settings {
                    Some(text) => serde_json::from_str(&text).context("--settings is not JSON")?,
                    None => json!({}),
                };
                let body = json!({ "id": id, "settings": settings });
                print(
                    &api.call(Method::POST, "/admin/v1/tenants", &[], Some(body))
                        .await?,
                )
            }
            TenantsCommand::Disable { id } => {
                let path = format!("/admin/v1/tenants/{}", segment(&id));
                print(
                    &api.call(Method::PATCH, &path, &[], Some(json!({"disabled": true})))
                        .await?,
                )
            }
            TenantsCommand::Enable { id } => {
                let path = format!("/admin/v1/tenants/{}", segment(&id));
                print(
                    &api.call(Method::PATCH, &path, &[], Some(json!({"disabled": false})))
                        .await?,
                )
            }
        },
        AdminCommand::Credentials { command } => match command {
            CredentialsCommand::List { tenant } => print(
                &api.get(
                    &format!("/admin/v1/tenants/{}/credentials", segment(&tenant)),
                    &[],
                )
                .await?,
            ),
            CredentialsCommand::Add {
                tenant,
                kind,
                set,
                set_file,
            } => {
                let body = credential_body(&kind, &set, &set_file)?;
                let path = format!("/admin/v1/tenants/{}/credentials", segment(&tenant));
                print(&api.call(Method::POST, &path, &[], Some(body)).await?)
            }
            CredentialsCommand::Revoke { tenant, id } => {
                let path = format!(
                    "/admin/v1/tenants/{}/credentials/{}",
                    segment(&tenant),
                    segment(&id)
                );
                api.call(Method::DELETE, &path, &[], None).await?;
                outln!("revoked {id}")?;
                Ok(())
            }
        },
        AdminCommand::DrmSystems { command } => drm_systems(&api, command).await,
        AdminCommand::Contents { command } => match command {
            ContentsCommand::List {
                tenant,
                search,
                after,
                limit,
            } => {
                let mut query = Vec::new();
                if let Some(s) = search {
                    query.push(("search", s));
                }
                if let Some(a) = after {
                    query.push(("after", a));
                }
                if let Some(l) = limit {
                    query.push(("limit", l.to_string()));
                }
                let path = format!("/admin/v1/tenants/{}/contents", segment(&tenant));
                print(&api.get(&path, &query).await?)
            }
            ContentsCommand::Keys { tenant, content_id } => {
                let path = format!(
                    "/admin/v1/tenants/{}/contents/{}/keys",
                    segment(&tenant),
                    segment(&content_id)
                );
                print(&api.get(&path, &[]).await?)
            }
            ContentsCommand::Policy {
                tenant,
                content_id,
                set,
                set_file,
                delete,
            } => {
                let path = format!(
                    "/admin/v1/tenants/{}/contents/{}/licence-policy",
                    segment(&tenant),
                    segment(&content_id)
                );
                let text = match (set, set_file) {
                    (Some(text), _) => Some(text),
                    (None, Some(file)) => Some(
                        std::fs::read_to_string(&file)
                            .with_context(|| format!("cannot read {}", file.display()))?,
                    ),
                    (None, None) => None,
                };
                if delete {
                    api.call(Method::DELETE, &path, &[], None).await?;
                    outln!("removed the licence policy of {content_id}")?;
                    Ok(())
                } else if let Some(text) = text {
                    let body: Value =
                        serde_json::from_str(&text).context("the licence policy is not JSON")?;
                    print(&api.call(Method::PUT, &path, &[], Some(body)).await?)
                } else {
                    print(&api.get(&path, &[]).await?)
                }
            }
        },
        AdminCommand::Export {
            tenant,
            public_key,
            out,
        } => {
            let pem = std::fs::read_to_string(&public_key)
                .with_context(|| format!("cannot read {}", public_key.display()))?;
            let path = format!("/admin/v1/tenants/{}/export", segment(&tenant));
            let bundle = api
                .call(
                    Method::POST,
                    &path,
                    &[],
                    Some(json!({ "public_key_pem": pem })),
                )
                .await?;
            let text = serde_json::to_string_pretty(&bundle)?;
            match out {
                Some(out) => {
                    std::fs::write(&out, text + "\n")
                        .with_context(|| format!("cannot write {}", out.display()))?;
                    noteln!(
                        "wrote {} keys of tenant {tenant} to {}",
                        bundle.get("keys").and_then(Value::as_u64).unwrap_or(0),
                        out.display()
                    );
                }
                None => outln!("{text}")?,
            }
            Ok(())
        }
        AdminCommand::Import {
            tenant,
            bundle,
            private_key,
        } => {
            let bundle: Value = serde_json::from_str(
                &std::fs::read_to_string(&bundle)
                    .with_context(|| format!("cannot read {}", bundle.display()))?,
            )
            .context("the bundle is not JSON")?;
            let pem = std::fs::read_to_string(&private_key)
                .with_context(|| format!("cannot read {}", private_key.display()))?;
            let path = format!("/admin/v1/tenants/{}/import", segment(&tenant));
            let body = json!({ "bundle": bundle, "private_key_pem": pem });
            print(&api.call(Method::POST, &path, &[], Some(body)).await?)
        }
        AdminCommand::MasterKey {
            command: MasterKeyCommand::Rotate,
        } => print(
            &api.call(Method::POST, "/admin/v1/master-key/rotate", &[], None)
                .await?,
        ),
        AdminCommand::Stats { tenant, window } => {
            let mut query = vec![("window", window.to_string())];
            if let Some(t) = tenant {
                query.push(("tenant", t));
            }
            print(&api.get("/admin/v1/stats", &query).await?)
        }
    }
}

async fn drm_systems(api: &Api, command: DrmSystemsCommand) -> Result<()> {
    use reqwest::Method;
    let path = |tenant: &str, name: Option<&str>| {
        let list = format!("/admin/v1/tenants/{}/drm-systems", segment(tenant));
        name.map_or_else(|| list.clone(), |n| format!("{list}/{}", segment(n)))
    };
    match command {
        DrmSystemsCommand::List { tenant } => print(&api.get(&path(&tenant, None), &[]).await?),
        DrmSystemsCommand::Show { tenant, name } => {
            print(&api.get(&path(&tenant, Some(&name)), &[]).await?)
        }
        DrmSystemsCommand::Put(put) => {
            let DrmSystemPut {
                tenant,
                name,
                file,
                system_id,
                override_builtin,
                pssh_version,
                pssh_data,
                pssh_data_encoding,
                dash_value,
                hls_keyformat,
                hls_uri,
                la_url,
                formats,
            } = *put;
            let mut body = match &file {
                Some(file) => serde_json::from_str::<Value>(
                    &std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                )
                .with_context(|| format!("{} is not JSON", file.display()))?,
                None => json!({}),
            };
            let Some(fields) = body.as_object_mut() else {
                bail!("the definition must be a JSON object");
            };
            let mut set = |field: &str, value: Option<Value>| {
                if let Some(value) = value {
                    fields.insert(field.to_owned(), value);
                }
            };
            set("system_id", system_id.map(Value::String));
            set("override", override_builtin.then_some(Value::Bool(true)));
            set("pssh_version", pssh_version.map(Value::from));
            set("pssh_data", pssh_data.map(Value::String));
            set("pssh_data_encoding", pssh_data_encoding.map(Value::String));
            set("dash_value", dash_value.map(Value::String));
            set("hls_keyformat", hls_keyformat.map(Value::String));
            set("hls_uri", hls_uri.map(Value::String));
            set("la_url", la_url.map(Value::String));
            set("formats", (!formats.is_empty()).then(|| json!(formats)));
            print(
                &api.call(Method::PUT, &path(&tenant, Some(&name)), &[], Some(body))
                    .await?,
            )
        }
        DrmSystemsCommand::Remove { tenant, name } => {
            api.call(Method::DELETE, &path(&tenant, Some(&name)), &[], None)
                .await?;
            outln!("removed {name}")?;
            Ok(())
        }
    }
}

pub async fn audit(connection: &Connection, args: AuditArgs) -> Result<()> {
    let api = Api::new(connection)?;
    let mut query = vec![("limit", args.limit.to_string())];
    for (name, value) in [
        ("tenant", args.tenant),
        ("content_id", args.content_id),
        ("action", args.action),
        ("since", args.since),
        ("until", args.until),
    ] {
        if let Some(value) = value {
            query.push((name, value));
        }
    }
    let answer = api.get("/admin/v1/audit", &query).await?;
    if args.json {
        return print(&answer);
    }
    let events = answer
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text = |e: &Value, field: &str| {
        e.get(field)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    let mut rows = vec![
        [
            "TIME",
            "TENANT",
            "ACTION",
            "INTERFACE",
            "CREDENTIAL",
            "CLIENT",
            "CONTENT",
            "OUTCOME",
            "KEY IDS",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for e in &events {
        let kids: Vec<&str> = e
            .get("key_ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut row: Vec<String> = [
            "at",
            "tenant",
            "action",
            "interface",
            "credential",
            "client",
            "content_id",
            "outcome",
        ]
        .iter()
        .map(|field| text(e, field))
        .collect();
        row.push(kids.join(","));
        rows.push(row);
    }
    for line in table(&rows) {
        outln!("{line}")?;
    }
    Ok(())
}

/// Widest cell a column gets before it is cut (with `…`); the last column is never cut.
const MAX_COLUMN: usize = 40;

/// `rows` (the first is the header) as lines of aligned columns, each as wide as its widest
/// cell (up to [`MAX_COLUMN`]), so that long values never push the columns after them.
fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let cell = |row: &Vec<String>, i: usize| -> String {
        let text = row.get(i).map_or("", String::as_str);
        if i + 1 < columns && text.chars().count() > MAX_COLUMN {
            let cut = keyplex_types::truncate_chars(text, MAX_COLUMN - 1);
            format!("{cut}…")
        } else {
            text.to_owned()
        }
    };
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|r| cell(r, i).chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let text = cell(row, i);
                line.push_str(&text);
                if i + 1 < columns {
                    let pad = width.saturating_sub(text.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod table_tests {
    use super::table;

    #[test]
    fn columns_stay_aligned_whatever_the_lengths() {
        let rows: Vec<Vec<String>> = [
            vec!["TIME", "ACTION", "KIDS"],
            vec!["2026-12-06T05:00:00Z", "key.created", "a,b"],
            vec![
                "2026-12-06T05:00:01Z",
                "admin.master_key_rotated.something-long",
                "c",
            ],
            vec!["t", &"x".repeat(60), "d"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(str::to_owned).collect())
        .collect();
        let lines = table(&rows);
        // Where a column starts on screen: characters, not bytes (`…` is three bytes).
        let column = |line: &str, text: &str| line[..line.rfind(text).unwrap()].chars().count();
        let kids_at = column(&lines[0], "KIDS");
        for (line, kids) in lines.iter().zip(["KIDS", "a,b", "c", "d"]) {
            assert_eq!(column(line, kids), kids_at, "{lines:#?}");
        }
        assert!(
            lines[3].contains('…'),
            "a 60-character cell is cut: {}",
            lines[3]
        );
    }
}

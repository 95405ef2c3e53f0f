//! The `keyplex` command: a thin shell over the library crates.

mod admin_cli;
mod client;
mod out;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use keyplex_server::config::Config;
use keyplex_server::setup;

use crate::out::{noteln, outln};

/// mimalloc instead of the system allocator: request handling allocates many small buffers
/// (XML, base64, PSSH), and glibc's malloc/free was ~18% of CPU in the CPIX benchmark.
/// Built with `no_thp` (workspace Cargo.toml): mimalloc otherwise asks for transparent huge
/// pages on its arenas, and each 2 MiB page counts as resident however little of it is used —
/// ~27 MiB of a 90 MiB peak under load with a million stored keys, for no throughput gain
/// (bench/README.md). On hosts whose THP mode is `always`, `MIMALLOC_ALLOW_THP=0` does the same.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keyplex",
    version,
    about = "Multi-DRM key server and licence service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (no config: 127.0.0.1:8080, SQLite in ./keyplex-data, a `demo` tenant).
    Serve {
        /// `text` (default) or `json`: one JSON object per event, for log shippers.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// TOML configuration file.
        #[arg(long, env = "KEYPLEX_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (overrides `[server] listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory (overrides `[server] data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Bring the store's schema up to date and exit (safe to run from several nodes at once).
    Migrate {
        /// TOML configuration file (its `database_url`, else `<data_dir>/keyplex.sqlite`).
        #[arg(long, env = "KEYPLEX_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory (overrides `[server] data_dir`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The store to migrate: `postgres://…` or `sqlite://PATH` (overrides the config).
        #[arg(long, env = "KEYPLEX_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Work with whole stores.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Work with PSSH boxes.
    Pssh {
        #[command(subcommand)]
        command: PsshCommand,
    },
    /// The packager side: ask a CPIX key server for keys and signaling.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// The operator side: tenants, credentials, contents, backups, master key (the admin
    /// API, /admin/v1).
    Admin {
        #[command(flatten)]
        connection: admin_cli::Connection,
        #[command(subcommand)]
        command: admin_cli::AdminCommand,
    },
    /// Print a shell completion script: `keyplex completions bash > /etc/bash_completion.d/keyplex`
    /// (zsh: into a directory of `$fpath` as `_keyplex`; fish: `~/.config/fish/completions/keyplex.fish`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Who created, fetched or was refused which keys, when (the audit trail).
    Audit {
        #[command(flatten)]
        connection: admin_cli::Connection,
        #[command(flatten)]
        args: admin_cli::AuditArgs,
    },
}

/// How `serve` writes its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every tenant, credential, key and audit event of one store into another (e.g.
    /// SQLite into PostgreSQL), then read every key back from the target and compare. Stop
    /// the servers writing to the source first. Running it again copies only what is new.
    Copy {
        /// The store to read: `sqlite://PATH` or `postgres://…`.
        #[arg(long)]
        from: String,
        /// The store to write: `postgres://…` or `sqlite://PATH`.
        #[arg(long)]
        to: String,
        /// The master key file both stores are sealed under (else `KEYPLEX_MASTER_KEY`, else
        /// the configuration's master key).
        #[arg(long)]
        master_key_file: Option<PathBuf>,
        /// TOML configuration file, for its master key settings.
        #[arg(long, env = "KEYPLEX_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Ask for one key per track type and the chosen DRMs' signaling; print them as JSON
    /// (key id, key and IV in hex and base64; per DRM the pssh with and without its box
    /// header; the FairPlay key URI).
    Cpix(client::ClientOptions),
    /// Print an entitlement token (HS256 JWT) as an operator's portal would sign it, for
    /// trying players and licences: `--secret` is the tenant's `licence_jwt` HS256 secret.
    Token {
        /// The tenant's licence HS256 secret (or KEYPLEX_LICENCE_SECRET).
        #[arg(long, env = "KEYPLEX_LICENCE_SECRET", hide_env_values = true)]
        secret: String,
        /// The viewer (`sub`).
        #[arg(long, default_value = "viewer-1")]
        sub: String,
        /// Content ids the token entitles (comma separated).
        #[arg(long, value_delimiter = ',', required = true)]
        contents: Vec<String>,
        /// Seconds until it expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Ask as `client cpix` does and print Shaka Packager raw-key arguments for the keys.
    PackagerArgs {
        #[command(flatten)]
        options: client::ClientOptions,
        /// Let the packager build the DRM signaling (`--protection_systems`) instead of
        /// passing keyplex's pssh boxes (`--pssh`).
        #[arg(long)]
        generate_signaling: bool,
    },
}

#[derive(Subcommand)]
enum PsshCommand {
    /// Print a PSSH box (or several, or a bare PlayReady Object / Widevine PSSH data) in
    /// readable form. Accepts base64 or hex.
    Decode {
        /// The box, base64 or hex.
        input: String,
    },
}

fn main() -> ExitCode {
    match run_command(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        // `keyplex audit | head -1`: the reader has what it wanted.
        Err(e) if out::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes on one line: a user error is not a crash, so no
            // backtrace, whatever RUST_BACKTRACE says (anyhow's `{:?}` would print one).
            noteln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(command: Command) -> Result<()> {
    match command {
        Command::Serve {
            log_format,
            config,
            listen,
            data,
        } => serve(log_format, config, listen, data),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "keyplex", &mut script);
            outln!("{}", String::from_utf8_lossy(&script).trim_end())?;
            Ok(())
        }
        Command::Migrate {
            config,
            data,
            database_url,
        } => block_on(migrate(config, data, database_url)),
        Command::Store {
            command:
                StoreCommand::Copy {
                    from,
                    to,
                    master_key_file,
                    config,
                },
        } => block_on(store_copy(&from, &to, master_key_file, config)),
        Command::Pssh {
            command: PsshCommand::Decode { input },
        } => pssh_decode(&input),
        Command::Client { command } => client_command(command),
        Command::Admin {
            connection,
            command,
        } => block_on(admin_cli::run(&connection, command)),
        Command::Audit { connection, args } => block_on(admin_cli::audit(&connection, args)),
    }
}

fn block_on(f: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    })
}

async fn migrate(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    database_url: Option<String>,
) -> Result<()> {
    let mut config = load_config(config.as_ref())?;
    if let Some(data) = data {
        config.server.data_dir = data;
    }
    setup::apply_database_url_env(&mut config, database_url);
    let location = setup::store_location(&config)?;
    if let keyplex_store::StoreLocation::Sqlite(path) = &location
        && let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        setup::ensure_data_dir(dir)?;
    }
    location
        .migrate()
        .await
        .with_context(|| format!("migrating {}", location.redacted()))?;
    outln!("keyplex: {} is up to date", location.redacted())?;
    Ok(())
}

async fn store_copy(
    from: &str,
    to: &str,
    master_key_file: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<()> {
    let mut config = load_config(config.as_ref())?;
    if let Some(file) = master_key_file {
        config.server.master_key_file = Some(file);
    }
    let env_key = std::env::var("KEYPLEX_MASTER_KEY").ok();
    let key_path = config
        .server
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.server.data_dir.join("master.key"));
    // Copying never creates a master key: one that does not exist seals nothing yet.
    let master = match env_key {
        Some(hex) => keyplex_store::MasterKey::from_hex(hex.trim())
            .map_err(|e| anyhow::anyhow!("KEYPLEX_MASTER_KEY: {e}"))?,
        None => keyplex_store::MasterKey::load(&key_path)
            .with_context(|| format!("reading the master key {}", key_path.display()))?,
    };
    let from = keyplex_store::StoreLocation::parse(from).context("--from")?;
    let to = keyplex_store::StoreLocation::parse(to).context("--to")?;
    if from == to {
        anyhow::bail!("--from and --to are the same store");
    }
    let source = from
        .open(master.clone())
        .await
        .with_context(|| format!("opening {}", from.redacted()))?;
    let target = to
        .open(master)
        .await
        .with_context(|| format!("opening {}", to.redacted()))?;
    let report = keyplex_store::copy_store(source.as_ref(), target.as_ref())
        .await
        .with_context(|| format!("copying {} into {}", from.redacted(), to.redacted()))?;
    outln!(
        "{}",
        serde_json::json!({
            "from": from.redacted(),
            "to": to.redacted(),
            "tenants_copied": report.tenants_copied,
            "credentials_copied": report.credentials_copied,
            "drm_systems_copied": report.drm_systems_copied,
            "keys_copied": report.keys_copied,
            "keys_already_present": report.keys_already_present,
            "keys_verified": report.keys_verified,
            "audit_events_copied": report.audit_events_copied,
            "content_policies_copied": report.content_policies_copied,
            "audit_skipped": report.audit_skipped,
        })
    )?;
    Ok(())
}

fn client_command(command: ClientCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match command {
        ClientCommand::Token {
            secret,
            sub,
            contents,
            ttl,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let claims = serde_json::json!({
                "sub": sub,
                "contents": contents,
                "iat": now,
                "exp": now.saturating_add(ttl),
            });
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .context("signing the token")?;
            outln!("{token}")?;
        }
        ClientCommand::Cpix(options) => {
            let (_, keys) = runtime.block_on(client::fetch(&options))?;
            outln!("{}", serde_json::to_string_pretty(&keys)?)?;
        }
        ClientCommand::PackagerArgs {
            options,
            generate_signaling,
        } => {
            let (query, keys) = runtime.block_on(client::fetch(&options))?;
            for note in client::packager_notes(&keys) {
                noteln!("note: {note}");
            }
            outln!(
                "{}",
                client::packager_args(&keys, &query.drms, generate_signaling).join(" ")
            )?;
        }
    }
    Ok(())
}

fn pssh_decode(input: &str) -> Result<()> {
    let compact: String = input.split_whitespace().collect();
    let bytes = if compact.len().is_multiple_of(2) && compact.chars().all(|c| c.is_ascii_hexdigit())
    {
        hex::decode(&compact).context("invalid hex")?
    } else {
        keyplex_types::decode_base64_lenient(&compact).context("input is neither base64 nor hex")?
    };
    let text = keyplex_drm::describe::describe_pssh(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    outln!("{text}")?;
    Ok(())
}

fn serve(
    log_format: LogFormat,
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    data: Option<PathBuf>,
) -> Result<()> {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYPLEX_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,tower_http=warn,sqlx::postgres::notice=warn")
    });
    match log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .init(),
        // Colour only for a person at a terminal: log files and shippers get plain text,
        // and NO_COLOR (no-color.org) turns it off everywhere.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .with_env_filter(filter)
            .init(),
    }
    let mut config = load_config(config_path.as_ref())?;
    setup::apply_database_url_env(&mut config, std::env::var("KEYPLEX_DATABASE_URL").ok());
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(data) = data {
        config.server.data_dir = data;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}

async fn run(mut config: Config) -> Result<()> {
    // Bind before anything is created: a busy port must not leave a half-made data
    // directory (a master key, credentials nobody saw) behind.
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    setup::ensure_data_dir(&config.server.data_dir)?;
    let env_key = std::env::var("KEYPLEX_MASTER_KEY").ok();
    let (master, source, created) =
        setup::load_master_key_with_source(&config, env_key.as_deref())?;
    if let Some(path) = created {
        tracing::warn!(path = %path.display(), "created a new master key: back it up, keys cannot be read without it");
    }
    let demo = setup::add_demo_tenant(&mut config)?;
    let admin_token = setup::ensure_admin_token(&mut config)?;
    let state = setup::open_state_with(&config, master, source).await?;
    let addr = listener.local_addr()?;
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    if let Some(demo) = demo {
        if demo.created {
            // Printed once, on the start that creates them (kept in the data dir afterwards).
            banner(format_args!(
                "keyplex: created tenant `demo` with HTTP Basic user `{}` password `{}`",
                demo.user, demo.password
            ));
            banner(format_args!(
                "keyplex: try  curl -u {}:{} -X POST --data-binary @request.xml {scheme}://{addr}/demo/cpix",
                demo.user, demo.password
            ));
        } else {
            banner(format_args!(
                "keyplex: tenant `demo` (credentials in {}/demo-credentials)",
                config.server.data_dir.display()
            ));
        }
    }
    match admin_token {
        // Printed once, like the demo credentials.
        Some((token, true)) => banner(format_args!(
            "keyplex: admin token (for /ui/ and `keyplex admin`): {token}  (kept in {}/admin-token)",
            config.server.data_dir.display()
        )),
        Some((_, false)) => banner(format_args!(
            "keyplex: dashboard at {scheme}://{addr}/ui/ (admin token in {}/admin-token)",
            config.server.data_dir.display()
        )),
        None => {}
    }
    let store = setup::store_location(&config)?.redacted();
    let shutdown = shutdown_signal()?;
    tracing::info!(%addr, %scheme, %store, data_dir = %config.server.data_dir.display(), "keyplex listening");
    keyplex_server::serve_with_listener(state, listener, shutdown).await?;
    tracing::info!("keyplex stopped: every connection answered, the store closed");
    Ok(())
}

/// A line of the server's start-up banner. The server goes on when standard output is closed
/// (`keyplex serve | head -1`): what the banner says is also in the data directory.
fn banner(args: std::fmt::Arguments<'_>) {
    let _ = out::line(args);
}

/// Resolves on SIGINT or SIGTERM. The handlers are registered when this is called, not when
/// the future is first polled: a SIGTERM that arrives right after the "listening" line must
/// drain the server, not kill it with the default action.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        let signal = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal,
            "shutting down: no new connections, finishing the requests in flight"
        );
    })
}

#[cfg(test)]
mod help_tests {
    use super::Cli;

    /// Every command and every flag or argument says in one line what it is for.
    #[test]
    fn every_command_and_flag_has_a_help_line() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help" && sub.get_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let command = <Cli as clap::CommandFactory>::command();
        let mut missing = Vec::new();
        walk(&command, "keyplex", &mut missing);
        assert!(missing.is_empty(), "no help line: {missing:#?}");
    }
}

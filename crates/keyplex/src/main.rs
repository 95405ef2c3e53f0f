//! The `keyplex` command: a thin shell over the library crates.

mod admin_cli;
mod client;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use clap::{Parser, Subcommand};
use keyplex_server::config::Config;
use keyplex_server::setup;

/// mimalloc instead of the system allocator: request handling allocates many small buffers
/// (XML, base64, PSSH), and glibc's malloc/free was ~18% of CPU in the CPIX benchmark.
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
    /// Who created, fetched or was refused which keys, when (the audit trail).
    Audit {
        #[command(flatten)]
        connection: admin_cli::Connection,
        #[command(flatten)]
        args: admin_cli::AuditArgs,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Ask for one key per track type and the chosen DRMs' signaling; print them as JSON
    /// (key id, key and IV in hex and base64; per DRM the pssh with and without its box
    /// header; the FairPlay key URI).
    Cpix(client::ClientOptions),
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
    Decode { input: String },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data,
        } => serve(config, listen, data),
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

fn client_command(command: ClientCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match command {
        ClientCommand::Cpix(options) => {
            let keys = runtime.block_on(client::fetch(&options))?;
            println!("{}", serde_json::to_string_pretty(&keys)?);
        }
        ClientCommand::PackagerArgs {
            options,
            generate_signaling,
        } => {
            let keys = runtime.block_on(client::fetch(&options))?;
            let query = client::KeyQuery::from_options(&options)?;
            for note in client::packager_notes(&keys) {
                eprintln!("note: {note}");
            }
            println!(
                "{}",
                client::packager_args(&keys, &query.drms, generate_signaling).join(" ")
            );
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
        let std = base64::engine::general_purpose::STANDARD.decode(&compact);
        let url =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(compact.trim_end_matches('='));
        std.or(url).context("input is neither base64 nor hex")?
    };
    let text = keyplex_drm::describe::describe_pssh(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{text}");
    Ok(())
}

fn serve(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    data: Option<PathBuf>,
) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYPLEX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn")),
        )
        .init();
    let mut config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
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
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    if let Some(demo) = demo {
        if demo.created {
            // Printed once, on the start that creates them (kept in the data dir afterwards).
            println!(
                "keyplex: created tenant `demo` with HTTP Basic user `{}` password `{}`",
                demo.user, demo.password
            );
            println!(
                "keyplex: try  curl -u {}:{} -X POST --data-binary @request.xml http://{addr}/demo/cpix",
                demo.user, demo.password
            );
        } else {
            println!(
                "keyplex: tenant `demo` (credentials in {}/demo-credentials)",
                config.server.data_dir.display()
            );
        }
    }
    match admin_token {
        // Printed once, like the demo credentials.
        Some((token, true)) => println!(
            "keyplex: admin token (for /ui/ and `keyplex admin`): {token}  (kept in {}/admin-token)",
            config.server.data_dir.display()
        ),
        Some((_, false)) => println!(
            "keyplex: dashboard at http://{addr}/ui/ (admin token in {}/admin-token)",
            config.server.data_dir.display()
        ),
        None => {}
    }
    tracing::info!(%addr, data_dir = %config.server.data_dir.display(), "keyplex listening");
    keyplex_server::serve_with_listener(state, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

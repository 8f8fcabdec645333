//! The `hearth` binary: parses the command line, loads configuration once, sets up logging and
//! hands over to `hearth-server`. Subcommands are the roles one binary plays.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod export;
mod import;

use clap::{Parser, Subcommand};
use hearth_server::config::LogFormat;
use hearth_server::{App, Config, SystemClock};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "hearth", version, about = "A FHIR R4 health platform backend in one binary")]
struct Cli {
    /// TOML configuration file (also HEARTH_CONFIG). HEARTH_* variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve the HTTP API (FHIR at /fhir) until SIGINT/SIGTERM.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Deliver notifications from the outbox (no HTTP) until SIGINT/SIGTERM; any number of
    /// workers and servers may share one database (set `notify.worker = false` on the servers
    /// to leave delivery to these).
    Worker,
    /// Administration tasks on the configured database.
    Admin {
        #[command(subcommand)]
        task: AdminTask,
    },
    /// Load NDJSON files and Bundles (files or directories, recursively) into the configured
    /// database, or into a running server with --url.
    Import {
        /// Files or directories (*.json Bundles or resources, *.ndjson one resource per line).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// FHIR base URL of a running server (e.g. http://127.0.0.1:8080/fhir) instead of the
        /// configured database.
        #[arg(long)]
        url: Option<String>,
        /// Access token for --url (an admin's or an account allowed to write what is imported).
        #[arg(long, requires = "url")]
        token: Option<String>,
        /// Where failures and their reasons are written (NDJSON).
        #[arg(long, default_value = "import-failures.ndjson")]
        failures: PathBuf,
        /// Do not turn plain POSTs of Organization/Practitioner/Location into conditional creates
        /// on their first identifier.
        #[arg(long)]
        no_dedupe: bool,
    },
    /// Write the live resources of the configured database as NDJSON, one file per type.
    Export {
        /// Output directory (created if missing).
        #[arg(long, default_value = "hearth-export")]
        dir: PathBuf,
        /// Only these types (comma-separated).
        #[arg(long, value_delimiter = ',')]
        types: Option<Vec<String>>,
        /// Only resources updated at or after this instant (e.g. 2024-01-31T10:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminTask {
    /// Create an administrator account. The password is read from HEARTH_ADMIN_PASSWORD or,
    /// when that is unset, from the first line of standard input.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
    /// Add a new access-token signing key and make it the active one (tokens signed with older
    /// keys stay valid until they expire).
    RotateKeys,
    /// Recompute the audit trail's hash chain; names the first link that does not match and
    /// exits non-zero if there is one.
    VerifyAudit,
    /// Print the database's plan for a search, e.g.
    /// `hearth admin explain-search 'Observation?patient=123&code=http://loinc.org|8867-4'`:
    /// which indexes it uses, to see why a search is slow.
    ExplainSearch {
        /// A type-level search as written after the FHIR base URL.
        search: String,
    },
}

fn read_password() -> Result<String, String> {
    if let Ok(p) = std::env::var("HEARTH_ADMIN_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        return Err("no password: set HEARTH_ADMIN_PASSWORD or write it to standard input".into());
    }
    Ok(p)
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.log_level).map_err(|e| format!("invalid log_level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout);
    let result = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot initialise logging: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = Config::load(cli.config.as_deref(), &env).map_err(|e| e.to_string())?;
    init_logging(&config)?;
    match cli.command {
        Command::Migrate => {
            hearth_server::app::open_store(&config).await.map_err(|e| e.to_string())?.close().await;
            tracing::info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { paths, url, token, failures, no_dedupe } => {
            let target = match url {
                Some(url) => {
                    let mut headers = reqwest::header::HeaderMap::new();
                    if let Some(token) = token {
                        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                            .map_err(|_| "--token is not a valid header value".to_owned())?;
                        headers.insert(reqwest::header::AUTHORIZATION, value);
                    }
                    let client = reqwest::Client::builder()
                        .default_headers(headers)
                        .build()
                        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
                    import::Target::Http { client, base: url.trim_end_matches('/').to_owned() }
                }
                None => import::Target::Direct(Arc::new(
                    App::start(config, Arc::new(SystemClock)).await.map_err(|e| e.to_string())?,
                )),
            };
            let ok = import::run(target, &paths, failures, !no_dedupe).await?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Export { dir, types, since } => {
            let since = match since {
                Some(s) => Some(
                    hearth_server::fhir::query::parse_instant(&s)
                        .ok_or_else(|| format!("--since {s:?} is not an instant such as 2024-01-31T10:00:00Z"))?,
                ),
                None => None,
            };
            let store = hearth_server::app::open_store(&config).await.map_err(|e| e.to_string())?;
            let result = export::run(store.clone(), &dir, types, since).await;
            store.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Admin { task } => {
            let app = Arc::new(App::start(config, Arc::new(SystemClock)).await.map_err(|e| e.to_string())?);
            let result = match task {
                AdminTask::CreateAdmin { email } => {
                    let password = read_password()?;
                    hearth_server::auth::routes::create_admin(&app, &email, password)
                        .await
                        .map(|id| println!("created admin account {id}"))
                        .map_err(|e| format!("{} ({})", e.message, e.code))
                }
                AdminTask::RotateKeys => app
                    .auth
                    .rotate(&*app.db, app.clock.now())
                    .await
                    .map(|kid| println!("new active signing key {kid}"))
                    .map_err(|e| e.to_string()),
                AdminTask::VerifyAudit => match hearth_server::audit::verify(&app).await {
                    Ok(hearth_server::audit::Verdict::Intact(n)) => {
                        println!("audit trail intact: {n} events, every link matches");
                        Ok(())
                    }
                    Ok(hearth_server::audit::Verdict::Broken { seq, event_id, reason }) => {
                        Err(format!("audit trail broken at link {seq} (AuditEvent {event_id}): {reason}"))
                    }
                    Err(e) => Err(format!("cannot read the audit trail: {e}")),
                },
                AdminTask::ExplainSearch { search } => hearth_server::fhir::search::explain(&app, &search)
                    .await
                    .map(|plan| plan.iter().for_each(|line| println!("{line}"))),
            };
            app.store.close().await;
            app.audit_store.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Worker => {
            let app = Arc::new(App::start(config, Arc::new(SystemClock)).await.map_err(|e| e.to_string())?);
            let id = hearth_server::notify::worker::worker_id();
            tracing::info!(backend = app.store.backend(), worker = %id, "notification worker running");
            tokio::select! {
                () = hearth_server::notify::worker::run(app.clone(), id) => {}
                () = shutdown_signal() => tracing::info!("shutdown requested; stopping the worker"),
            }
            app.store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let listen = config.listen;
            let app = Arc::new(App::start(config, Arc::new(SystemClock)).await.map_err(|e| e.to_string())?);
            let listener =
                tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(backend = app.store.backend(), "listening on http://{addr} (FHIR base http://{addr}/fhir)");
            hearth_server::serve(app, listener, shutdown_signal()).await.map_err(|e| format!("server error: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hearth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("hearth: {message}");
            ExitCode::FAILURE
        }
    }
}

//! The `hearth` binary: parses the command line, loads configuration once, sets up logging and
//! hands over to `hearth-server`. Subcommands are the roles one binary plays.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod export;
mod import;

/// See the `mimalloc` entry in Cargo.toml (measured in docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve {
        /// Address to listen on: HOST:PORT (127.0.0.1:8080, 0.0.0.0:8080) or a bare port;
        /// overrides `listen` / HEARTH_LISTEN.
        #[arg(long)]
        listen: Option<String>,
    },
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
        /// Import Bundle entries exactly as written: no PUT to the id of a `urn:uuid:` fullUrl and
        /// no conditional create on an identifier (so importing again may duplicate).
        #[arg(long)]
        no_dedupe: bool,
        /// Where finished files are recorded, so that a stopped import resumes where it stopped.
        #[arg(long, default_value = "import-progress.ndjson")]
        progress: PathBuf,
        /// Ignore an earlier, interrupted run's progress and import every file again.
        #[arg(long)]
        restart: bool,
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
    /// Create an administrator account. The password is read from HEARTH_ADMIN_PASSWORD, else
    /// asked without echo on a terminal, else read from the first line of standard input.
    CreateAdmin {
        /// The administrator's e-mail address, which is also their sign-in name.
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
    /// Print a new random 256-bit encryption key (64 hex digits) for a key file.
    GenerateKey,
    /// Re-encrypt the data at rest under the first key of the configured key file (the others
    /// are the older keys that open it now); running servers keep serving. See the README.
    RotateKey,
    /// Write a consistent backup of the database while servers keep serving (encrypted when a
    /// key is configured).
    Backup {
        /// The backup file to write (the audit trail goes beside it as FILE.audit).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into the configured database (servers stopped). Checks the backup's
    /// checksum and integrity first; refuses a database holding data without --force.
    Restore {
        /// The backup file made by `hearth admin backup`.
        #[arg(long)]
        from: PathBuf,
        /// Replace a database that holds data.
        #[arg(long)]
        force: bool,
        /// A key file with the key the backup was made under, when it is no longer configured.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

/// An error with its causes ("cannot open the database: …: the configured key does not open it").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The database-level admin tasks (encryption keys, backup, restore): they open the database
/// themselves, not through `App`. Each covers both parts of the data: the record and the audit
/// trail (`hearth-audit.db` beside the SQLite file, schema `hearth_audit` on PostgreSQL); a
/// backup `FILE` of the record has its audit trail in `FILE.audit`.
async fn storage_task(config: &Config, task: AdminTask) -> Result<(), String> {
    use hearth_server::config::Database;
    let keys = config.encryption_keys().map_err(|e| e.to_string())?;
    let ring = keys.as_ref().map(|k| k.load()).transpose().map_err(|e| e.to_string())?;
    let now = chrono::Utc::now().timestamp_millis();
    let database = config.database().map_err(|e| e.to_string())?;
    let pg = |url: String, schema: Option<&'static str>| {
        let keys = keys.clone();
        async move {
            let options = hearth_store_postgres::PostgresOptions { keys, ..Default::default() };
            let store = match schema {
                None => hearth_store_postgres::PostgresStore::connect(&url, &options).await,
                Some(s) => hearth_store_postgres::PostgresStore::connect_schema(&url, &options, s).await,
            }
            .map_err(|e| chain(&e))?;
            store.migrate().await.map_err(|e| chain(&e))?;
            Ok::<_, String>(store)
        }
    };
    let report = |m: hearth_store_sql::backup::Manifest| {
        let key = m.key_id.as_deref().map_or("not encrypted".to_owned(), |k| format!("encrypted under key {k}"));
        format!(
            "{} backup, schema {}, {} payload bytes (sha256 {}), {key}",
            m.backend, m.schema_version, m.payload_bytes, m.payload_sha256
        )
    };
    let audit_file = |f: &std::path::Path| PathBuf::from(format!("{}.audit", f.display()));
    // (what, SQLite file or PostgreSQL schema, backup file suffix)
    let parts: [(&str, Option<&'static str>, bool); 2] =
        [("the record", None, false), ("the audit trail", Some(hearth_server::app::AUDIT_SCHEMA), true)];
    for (what, schema, audit) in parts {
        let sqlite_path = |path: &std::path::Path| {
            if audit { hearth_server::app::audit_sqlite_path(path) } else { path.to_path_buf() }
        };
        match (&task, &database) {
            (AdminTask::RotateKey, db) => {
                let ring = ring
                    .as_ref()
                    .ok_or("no encryption key is configured (encryption_key_file or HEARTH_ENCRYPTION_KEY)")?;
                match db {
                    Database::Sqlite(path) => {
                        let (old, new) =
                            hearth_store_sqlite::rotate_key(&sqlite_path(path), ring).await.map_err(|e| chain(&e))?;
                        if old == new {
                            println!("{what}: already encrypted under key {new}");
                        } else {
                            println!("{what}: re-encrypted from key {old} to key {new}");
                        }
                    }
                    Database::Postgres(url) => {
                        let store = pg(url.expose().clone(), schema).await?;
                        let r = hearth_store_postgres::rotate_key(&store, now).await.map_err(|e| chain(&e))?;
                        println!(
                            "{what}: master key {}: re-wrapped {} data keys, new data key {}, re-encrypted {} resource versions",
                            ring.current().id(),
                            r.rewrapped,
                            r.data_key,
                            r.reencrypted
                        );
                        hearth_store::ResourceStore::close(&store).await;
                    }
                }
            }
            (AdminTask::Backup { out }, db) => {
                let out = if audit { audit_file(out) } else { out.clone() };
                let m = match db {
                    Database::Sqlite(path) => hearth_store_sqlite::backup(&sqlite_path(path), ring.as_ref(), &out, now)
                        .await
                        .map_err(|e| chain(&e))?,
                    Database::Postgres(url) => {
                        let store = pg(url.expose().clone(), schema).await?;
                        let m = hearth_store_postgres::backup(&store, &out, now).await.map_err(|e| chain(&e))?;
                        hearth_store::ResourceStore::close(&store).await;
                        m
                    }
                };
                println!("{what}: wrote {}: {}", out.display(), report(m));
            }
            (AdminTask::Restore { from, force, key_file }, db) => {
                let from = if audit { audit_file(from) } else { from.clone() };
                if audit && !from.exists() {
                    println!("{what}: no {} (a backup from before the audit trail); left as it is", from.display());
                    continue;
                }
                let old = key_file
                    .clone()
                    .map(|f| hearth_store_sql::crypt::KeySource::File(f).load())
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let m = match db {
                    Database::Sqlite(path) => {
                        hearth_store_sqlite::restore(&sqlite_path(path), ring.as_ref(), old.as_ref(), &from, *force)
                            .await
                            .map_err(|e| chain(&e))?
                    }
                    Database::Postgres(url) => {
                        let store = pg(url.expose().clone(), schema).await?;
                        let m = hearth_store_postgres::restore(&store, old.as_ref(), &from, *force)
                            .await
                            .map_err(|e| chain(&e))?;
                        hearth_store::ResourceStore::close(&store).await;
                        m
                    }
                };
                println!("{what}: restored {}: {}", from.display(), report(m));
            }
            _ => return Err("not a storage task".into()),
        }
    }
    Ok(())
}

/// The new administrator's password: `HEARTH_ADMIN_PASSWORD`, else typed at a prompt without
/// echo (twice) when standard input is a terminal, else the first line of standard input (a
/// pipe). Never waits silently: a terminal gets a prompt, anything else is read at once.
fn read_password() -> Result<String, String> {
    if let Ok(p) = std::env::var("HEARTH_ADMIN_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        let ask =
            |prompt: &str| rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password: {e}"));
        let first = ask("Password for the new administrator (12+ characters, not shown): ")?;
        if first.is_empty() {
            return Err("no password given".into());
        }
        if ask("The same password again: ")? != first {
            return Err("the two passwords differ; nothing was created".into());
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        return Err(
            "no password: set HEARTH_ADMIN_PASSWORD, pipe it to standard input, or run on a terminal to be asked"
                .into(),
        );
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
    // Say which database a command works on (serve says it in its banner), so a command run
    // from another directory cannot silently create and use a second, empty one.
    let opens_store = !matches!(
        cli.command,
        Command::Serve { .. } | Command::Admin { task: AdminTask::GenerateKey } | Command::Import { url: Some(_), .. }
    );
    if opens_store {
        eprintln!("hearth: database {}", describe_database(&config));
    }
    match cli.command {
        Command::Migrate => {
            hearth_server::app::open_store(&config).await.map_err(|e| chain(&e))?.close().await;
            tracing::info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { paths, url, token, failures, no_dedupe, progress, restart } => {
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
                    App::start(config, Arc::new(SystemClock)).await.map_err(|e| chain(&e))?,
                )),
            };
            Ok(match import::run(target, &paths, failures, !no_dedupe, progress, restart).await? {
                import::Outcome::Done => ExitCode::SUCCESS,
                import::Outcome::Failures => ExitCode::FAILURE,
                import::Outcome::Interrupted => ExitCode::from(130),
            })
        }
        Command::Export { dir, types, since } => {
            let since = match since {
                Some(s) => Some(
                    hearth_server::fhir::query::parse_instant(&s)
                        .ok_or_else(|| format!("--since {s:?} is not an instant such as 2024-01-31T10:00:00Z"))?,
                ),
                None => None,
            };
            let store = hearth_server::app::open_store(&config).await.map_err(|e| chain(&e))?;
            let result = export::run(store.clone(), &dir, types, since).await;
            store.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Admin { task: AdminTask::GenerateKey } => {
            let key = hearth_store_sql::crypt::MasterKey::generate().map_err(|e| e.to_string())?;
            println!("{}", key.to_hex().as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            task: task @ (AdminTask::RotateKey | AdminTask::Backup { .. } | AdminTask::Restore { .. }),
        } => storage_task(&config, task).await.map(|()| ExitCode::SUCCESS),
        Command::Admin { task } => {
            let app = Arc::new(App::start(config, Arc::new(SystemClock)).await.map_err(|e| chain(&e))?);
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
                AdminTask::VerifyAudit => match hearth_server::audit::verify(&app.trail).await {
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
                _ => Err("this task does not run inside the app".into()),
            };
            app.store.close().await;
            app.audit_store.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Worker => {
            let app = Arc::new(App::start(config, Arc::new(SystemClock)).await.map_err(|e| e.to_string())?);
            let id = hearth_server::notify::worker::worker_id();
            tracing::info!(backend = app.store.backend(), worker = %id, "notification worker running");
            let planner =
                Arc::new(hearth_server::medication::Medication::new(Arc::clone(app.ctx()), Arc::clone(&app.notify)));
            let alarms = Arc::new(hearth_server::alarms::Alarms::new(Arc::clone(app.ctx()), Arc::clone(&app.notify)));
            let wellness = Arc::new(hearth_wellness::Wellness::new(
                Arc::clone(app.ctx()),
                app.config.wellness.clone(),
                Arc::clone(&app.notify),
            ));
            tokio::select! {
                () = hearth_server::notify::worker::run(app.notifications.clone(), id) => {}
                () = planner.run_reminders() => {}
                () = alarms.run_planner() => {}
                () = wellness.run_planner() => {}
                () = shutdown_signal() => tracing::info!("shutdown requested; stopping the worker"),
            }
            app.store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen } => {
            let mut config = config;
            if let Some(listen) = listen {
                config.listen = hearth_server::config::parse_listen(&listen).map_err(|e| format!("--listen: {e}"))?;
            }
            let listen = config.listen;
            let app = Arc::new(App::start(config, Arc::new(SystemClock)).await.map_err(|e| chain(&e))?);
            let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                format!("cannot listen on {listen}: {e} (another process may hold the port; choose one with --listen)")
            })?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(backend = app.store.backend(), "listening on http://{addr} (FHIR base http://{addr}/fhir)");
            let admins = hearth_store_sql::identity::count_role(&*app.db, "admin").await.unwrap_or(1);
            eprintln!("{}", banner(&app.config, addr, admins == 0));
            hearth_server::serve(app, listener, shutdown_signal()).await.map_err(|e| format!("server error: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where this process keeps its data, in words (never a database password).
fn describe_database(config: &Config) -> String {
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match config.database() {
        Ok(hearth_server::config::Database::Sqlite(path)) => format!(
            "SQLite {} (audit trail {})",
            absolute(&path).display(),
            absolute(&hearth_server::app::audit_sqlite_path(&path)).display()
        ),
        Ok(hearth_server::config::Database::Postgres(url)) => {
            // postgres://user:password@host:port/db?… → host:port/db
            let rest = url.expose().split_once("://").map_or("", |(_, r)| r);
            let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
            format!("PostgreSQL {}", rest.split('?').next().unwrap_or(rest))
        }
        Err(e) => format!("(invalid database configuration: {e})"),
    }
}

/// What `serve` tells the person who started it: where the data is, where to point a client, and
/// what to do first on a new database.
fn banner(config: &Config, addr: std::net::SocketAddr, no_admin: bool) -> String {
    let base = config.base_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let mut out = format!(
        "hearth {} is serving\n  data:     {}\n  data dir: {}\n  FHIR:     {base}/fhir  (capabilities: {base}/fhir/metadata)\n  API docs: {base}/api/docs\n  home:     {base}/",
        env!("CARGO_PKG_VERSION"),
        describe_database(config),
        std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone()).display(),
    );
    if no_admin {
        out.push_str(
            "\n  next:     no administrator yet; create one (another terminal, same directory and configuration):\n            hearth admin create-admin --email you@example.org",
        );
    }
    out
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand and every option says what it is for in `--help`.
    #[test]
    fn every_command_and_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "hearth", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }
}

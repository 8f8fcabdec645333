//! The application state: everything a request may use, built once at start-up and shared by
//! reference. There are no global statics; tests build as many `App`s as they like.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hearth_fhir::Model;
use hearth_search::{Compartments, Registry};
use hearth_store::ResourceStore;
use hearth_store_postgres::{PostgresOptions, PostgresStore};
use hearth_store_sql::Db;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use hearth_workflow::{Ctx, CtxParts};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::config::{Config, ConfigError, Database};

pub use hearth_workflow::{Clock, SystemClock};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(
        "the data directory {path} is not writable by this user ({source}); give it to the account running hearth or choose another with HEARTH_DATA_DIR"
    )]
    NotWritable { path: String, source: std::io::Error },
    #[error("cannot open the database file {path}: {source}")]
    OpenFile { path: String, source: hearth_store::StoreError },
    #[error("cannot open the database: {0}")]
    Store(#[from] hearth_store::StoreError),
    #[error("cannot load the FHIR R4 definitions: {0}")]
    Model(String),
    #[error("cannot load the search parameters: {0}")]
    Search(String),
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("cannot load the auth pepper: {0}")]
    Pepper(String),
    #[error("cannot set up notifications: {0}")]
    Notify(#[from] crate::notify::NotifySetupError),
}

/// The edge's state: the workflows' shared [`Ctx`] (store, clock, registry, caller resolution,
/// audit hook; `App` dereferences to it) and what only the edge uses.
pub struct App {
    ctx: Arc<Ctx>,
    pub config: Config,
    /// Signing keys, password hashing and the patient compartment scheme; also the
    /// [`hearth_workflow::Authenticate`] of `ctx`.
    pub auth: Arc<crate::auth::Auth>,
    /// Wakes this process's reindex worker when a job is queued here
    /// (`crate::fhir::search_parameters::worker`).
    pub reindex_wakeup: tokio::sync::Notify,
    /// The queue to the audit trail's writer (`crate::audit`); `ctx.audit` is the same.
    pub auditor: Arc<crate::audit::Auditor>,
    pub audit_db: Arc<dyn Db>,
    /// The audit trail: its writer and indexer, middleware state and access log.
    pub trail: Arc<crate::audit::AuditTrail>,
    /// Bulk Data export (`$export`): its jobs' state and this process's worker wake-up.
    pub bulk_export: Arc<crate::bulk_export::BulkExport>,
    /// This app's own metrics registry (not the process-global recorder).
    pub metrics: Arc<PrometheusRecorder>,
    pub started_at: DateTime<Utc>,
    /// Rate limiters of this process.
    pub limits: crate::auth::limits::Limits,
    /// Notification channels, templates and the worker's wake-up (login codes go through it too).
    pub notify: Arc<crate::notify::Notifier>,
    /// The notifications workflow (its routes and worker) over `notify`.
    pub notifications: Arc<crate::notify::Notifications>,
    /// The scheduling workflow: mounted by `workflows.rs`, and committing the `/fhir` writes
    /// of Appointments (`hearth_scheduling::fhir_writes`).
    pub scheduling: Arc<hearth_scheduling::Scheduling>,
}

impl std::ops::Deref for App {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for App {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

/// Opens the configured database and applies migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn ResourceStore>, StartError> {
    Ok(open_database(config).await?.0)
}

/// Opens the configured database, applies migrations, and answers it as both the resource
/// store and the identity tables.
pub async fn open_database(config: &Config) -> Result<(Arc<dyn ResourceStore>, Arc<dyn Db>), StartError> {
    match config.database()? {
        Database::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|source| StartError::DataDir { path: dir.display().to_string(), source })?;
            }
            let options = SqliteOptions { keys: config.encryption_keys()?, ..SqliteOptions::default() };
            let store = Arc::new(open_sqlite(&path, &options).await?);
            store.migrate().await?;
            Ok((store.clone(), store))
        }
        Database::Postgres(url) => {
            let options = PostgresOptions { keys: config.encryption_keys()?, ..PostgresOptions::default() };
            let store = Arc::new(PostgresStore::connect(url.expose(), &options).await?);
            store.migrate().await?;
            Ok((store.clone(), store))
        }
    }
}

/// Opens a SQLite file, saying which file and why when it cannot: a directory this user may not
/// write is named as such (SQLite's own words are "unable to open database file").
async fn open_sqlite(path: &std::path::Path, options: &SqliteOptions) -> Result<SqliteStore, StartError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let shown = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    // SQLite needs to create its journal files beside the database, so the directory itself must
    // be writable, not only the file.
    let probe = dir.join(format!(".hearth-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(source) => return Err(StartError::NotWritable { path: shown(dir), source }),
    }
    hearth_store_sqlite::private_files(path).map_err(|source| StartError::NotWritable { path: shown(path), source })?;
    SqliteStore::open(path, options).await.map_err(|source| StartError::OpenFile { path: shown(path), source })
}

/// Makes `dir` (the data directory) reachable by this account only (0700): what Hearth keeps
/// there (databases, the auth pepper, bulk exports, uploads) is health data or secrets.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens the audit trail's store beside the configured database, migrated: on SQLite a second
/// file next to it (`hearth.db` → `hearth-audit.db`), on PostgreSQL the schema `hearth_audit` of
/// the same database.
/// The audit trail's SQLite file beside the database file `path` (`hearth.db` → `hearth-audit.db`).
pub fn audit_sqlite_path(path: &std::path::Path) -> std::path::PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "hearth".into());
    path.with_file_name(format!("{stem}-audit.db"))
}

/// The PostgreSQL schema of the audit trail.
pub const AUDIT_SCHEMA: &str = "hearth_audit";

pub async fn open_audit_database(config: &Config) -> Result<(Arc<dyn ResourceStore>, Arc<dyn Db>), StartError> {
    match config.database()? {
        Database::Sqlite(path) => {
            let audit = audit_sqlite_path(&path);
            let options = SqliteOptions { keys: config.encryption_keys()?, ..SqliteOptions::default() };
            let store = Arc::new(open_sqlite(&audit, &options).await?);
            store.migrate().await?;
            Ok((store.clone(), store))
        }
        Database::Postgres(url) => {
            let options =
                PostgresOptions { max_connections: 4, keys: config.encryption_keys()?, ..PostgresOptions::default() };
            let store = Arc::new(PostgresStore::connect_schema(url.expose(), &options, AUDIT_SCHEMA).await?);
            store.migrate().await?;
            Ok((store.clone(), store))
        }
    }
}

impl App {
    /// Builds the app from configuration: database (migrated), R4 model, metrics.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<App, StartError> {
        private_dir(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
        let (store, db) = open_database(&config).await?;
        let (audit_store, audit_db) = open_audit_database(&config).await?;
        let auditor = Arc::new(crate::audit::Auditor::new(Arc::clone(&clock), config.audit.wait_for_commit));
        let model = Model::r4().map_err(|e| StartError::Model(e.to_string()))?;
        let metrics = PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            .map_err(|e| StartError::Metrics(e.to_string()))?
            .build_recorder();
        let metrics = Arc::new(metrics);
        let started_at = clock.now();
        let mut registry = Registry::r4(&model).map_err(|e| StartError::Search(e.to_string()))?;
        crate::fhir::registry::load_stored(&*store, &mut registry).await?;
        let compartments = Compartments::r4().map_err(|e| StartError::Search(e.to_string()))?;
        let scheme = Arc::new(crate::auth::patient_scheme(&compartments));
        let pepper = crate::auth::load_pepper(&config).map_err(StartError::Pepper)?;
        let auth = Arc::new(crate::auth::Auth::load(&*db, scheme, pepper, started_at).await?);
        let limits = crate::auth::limits::Limits::new(&config);
        let notify = Arc::new(
            crate::notify::Notifier::start(&config.notify, &config.data_dir, config.base_url.as_deref(), &*db).await?,
        );
        let ctx = Ctx::new(CtxParts {
            store,
            db,
            audit_store: Arc::new(auditor.trail(audit_store)),
            model: Arc::new(model),
            registry,
            compartments,
            clock,
            authenticator: Arc::clone(&auth) as Arc<dyn hearth_workflow::Authenticate>,
            audit: Arc::clone(&auditor) as Arc<dyn hearth_workflow::RecordAudit>,
            metrics: Arc::clone(&metrics) as Arc<dyn metrics::Recorder + Send + Sync>,
            base_url: config.base_url.clone(),
            listen: config.listen,
        });
        let ctx = Arc::new(ctx);
        let notifications = Arc::new(crate::notify::Notifications::new(Arc::clone(&ctx), Arc::clone(&notify)));
        let scheduling = Arc::new(hearth_scheduling::Scheduling::new(
            Arc::clone(&ctx),
            config.scheduling.clone(),
            Arc::clone(&notify),
        ));
        let bulk_export = Arc::new(crate::bulk_export::BulkExport::new(
            Arc::clone(&ctx),
            config.data_dir.clone(),
            config.encryption_keys()?,
        ));
        let trail =
            Arc::new(crate::audit::AuditTrail::new(Arc::clone(&ctx), Arc::clone(&auditor), Arc::clone(&audit_db)));
        Ok(App {
            ctx,
            config,
            auth,
            reindex_wakeup: tokio::sync::Notify::new(),
            auditor,
            audit_db,
            trail,
            bulk_export,
            metrics,
            started_at,
            limits,
            notify,
            notifications,
            scheduling,
        })
    }

    /// The workflows' shared context, for a workflow's state.
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }
}

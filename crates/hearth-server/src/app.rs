//! The application state: everything a request may use, built once at start-up and shared by
//! reference. There are no global statics; tests build as many `App`s as they like.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use hearth_fhir::Model;
use hearth_search::{Compartments, Registry};
use hearth_store::{Guarded, ResourceStore};
use hearth_store_postgres::{PostgresOptions, PostgresStore};
use hearth_store_sql::Db;
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::config::{Config, ConfigError, Database};

/// The source of "now". Handlers and the store never read the system clock directly, so tests
/// can pin time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
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

pub struct App {
    pub config: Config,
    /// The raw store: for internal jobs acting for the system and for health checks. Request
    /// handlers use [`App::store_for`] with their caller's access, or [`App::system`].
    pub store: Arc<dyn ResourceStore>,
    /// The same database, for the identity tables.
    pub db: Arc<dyn Db>,
    /// Signing keys, password hashing and the patient compartment scheme.
    pub auth: crate::auth::Auth,
    pub model: Arc<Model>,
    /// The search parameters in force: the R4 ones plus SearchParameter resources stored here.
    /// Replaced as a whole (copy on write) when a SearchParameter is written; never held
    /// across an await.
    registry: RwLock<Arc<Registry>>,
    pub compartments: Compartments,
    /// Background jobs of this process (`$reindex`).
    pub jobs: crate::jobs::Jobs,
    /// The queue to the audit trail's writer (`crate::audit`).
    pub audit: crate::audit::Auditor,
    /// The audit trail's own store (AuditEvents and their hash chain), apart from the record.
    pub audit_store: Arc<dyn ResourceStore>,
    pub audit_db: Arc<dyn Db>,
    /// Wakes this process's export worker when a job is queued here.
    pub export_wakeup: tokio::sync::Notify,
    pub clock: Arc<dyn Clock>,
    /// This app's own metrics registry (not the process-global recorder).
    pub metrics: PrometheusRecorder,
    pub started_at: DateTime<Utc>,
    /// Rate limiters of this process.
    pub limits: crate::auth::web::Limits,
    /// Notification channels, templates and the worker's wake-up (login codes go through it too).
    pub notify: crate::notify::Notifier,
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
            let store = Arc::new(SqliteStore::open(&path, &options).await?);
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
            let store = Arc::new(SqliteStore::open(&audit, &options).await?);
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
        let (store, db) = open_database(&config).await?;
        let (audit_store, audit_db) = open_audit_database(&config).await?;
        let audit = crate::audit::Auditor::default();
        let model = Model::r4().map_err(|e| StartError::Model(e.to_string()))?;
        let metrics = PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            .map_err(|e| StartError::Metrics(e.to_string()))?
            .build_recorder();
        let started_at = clock.now();
        let mut registry = Registry::r4(&model).map_err(|e| StartError::Search(e.to_string()))?;
        crate::fhir::search_parameters::load_stored(&*store, &mut registry).await?;
        let compartments = Compartments::r4().map_err(|e| StartError::Search(e.to_string()))?;
        let scheme = Arc::new(crate::auth::patient_scheme(&compartments));
        let pepper = crate::auth::otp::load_pepper(&config).map_err(StartError::Pepper)?;
        let auth = crate::auth::Auth::load(&*db, scheme, pepper, started_at).await?;
        let limits = crate::auth::web::Limits::new(&config);
        let notify = crate::notify::Notifier::start(&config, &*db).await?;
        Ok(App {
            config,
            store,
            db,
            auth,
            model: Arc::new(model),
            registry: RwLock::new(Arc::new(registry)),
            compartments,
            jobs: crate::jobs::Jobs::default(),
            audit_store: Arc::new(audit.trail(audit_store)),
            audit,
            audit_db,
            export_wakeup: tokio::sync::Notify::new(),
            clock,
            metrics,
            started_at,
            limits,
            notify,
        })
    }

    /// The store as the system sees it (everything): internal work, and definitional lookups
    /// (ValueSets, CodeSystems) that hold no one's record.
    pub fn system(&self) -> Guarded {
        Guarded::new(Arc::clone(&self.store), hearth_store::Access::system()).with_audit(Arc::clone(&self.audit_store))
    }

    /// The store as `caller` may see it.
    pub fn store_for(&self, caller: &crate::auth::Caller) -> Guarded {
        let store =
            Guarded::new(Arc::clone(&self.store), caller.access.clone()).with_audit(Arc::clone(&self.audit_store));
        match &caller.audit {
            Some(slip) => store.witnessed(Arc::clone(slip) as Arc<dyn hearth_store::Witness>),
            None => store,
        }
    }

    /// The search parameters in force now.
    pub fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the registry (after a SearchParameter write committed).
    pub fn set_registry(&self, registry: Registry) {
        let mut guard = match self.registry.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(registry);
    }
}

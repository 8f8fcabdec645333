//! Typed configuration, loaded once at start-up.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file (`--config` or
//! `HEARTH_CONFIG`), then `HEARTH_*` environment variables. Unknown TOML keys and unknown
//! `HEARTH_*` variables are errors, so a typo never silently falls back to a default.
//! Secrets (the database URL may carry a password) are wrapped in [`Secret`] and never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hearth_store_sql::crypt::{KeyRing, KeySource};
use serde::Deserialize;

pub use hearth_documents::s3::S3Config as DocumentsS3Config;
pub use hearth_documents::{DocumentsConfig, Storage as DocumentStorage};
pub use hearth_intake::IntakeConfig;
pub use hearth_journal::JournalConfig;
pub use hearth_medication::MedicationConfig;
pub use hearth_notifications::config::{EmailConfig, FcmConfig, NotifyConfig, SmsConfig, WebPushConfig};
pub use hearth_registry::RegistryConfig;
pub use hearth_rights::{ErasureMode, RightsConfig};
pub use hearth_scheduling::SchedulingConfig;
pub use hearth_selfcare::SelfcareConfig;
pub use hearth_telehealth::TelehealthConfig;
pub use hearth_wellness::WellnessConfig;
pub use hearth_workflow::Secret;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Where the embedded database and other local state live.
    pub data_dir: PathBuf,
    /// Overrides the embedded SQLite database: `sqlite://path` or `postgres://user:pass@host:port/db`.
    pub database_url: Option<Secret<String>>,
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info` or `hearth_server=debug,info`.
    pub log_level: String,
    /// Largest accepted request body in bytes; larger bodies get `413` with an OperationOutcome.
    pub max_body_bytes: usize,
    /// Public base URL (scheme://host[:port]) used in `Location` and bundle links. When absent it
    /// is derived from the request's `Host` header over plain HTTP.
    pub base_url: Option<String>,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Authentication and abuse protection (the `[auth]` table).
    pub auth: AuthConfig,
    /// Encryption at rest: a file holding the master key as 64 hex digits (256 bits), one key per
    /// line; the first encrypts, later lines are older keys still accepted during a rotation.
    pub encryption_key_file: Option<PathBuf>,
    /// The same as `HEARTH_ENCRYPTION_KEY` (environment only, never the TOML file).
    #[serde(skip)]
    pub encryption_key: Option<Secret<String>>,
    /// Notifications: the outbox worker and the channels (the `[notify]` table).
    pub notify: NotifyConfig,
    /// Data rights: how erasure requests are decided and what holds them (the `[rights]` table).
    pub rights: RightsConfig,
    /// Appointments: reminders, the late-cancellation window (the `[scheduling]` table).
    pub scheduling: SchedulingConfig,
    /// The patient and provider registry: invitations to claim a record (the `[registry]` table).
    pub registry: RegistryConfig,
    /// The audit trail (the `[audit]` table).
    pub audit: AuditConfig,
    /// Patient intake: the numbers the emergency safety message names (the `[intake]` table).
    pub intake: IntakeConfig,
    /// Documents: blob storage, upload limits, the virus scan (the `[documents]` table).
    pub documents: DocumentsConfig,
    /// Self-care: when an unacknowledged alert escalates (the `[selfcare]` table).
    pub selfcare: SelfcareConfig,
    /// Medications: when a refill notice goes out (the `[medication]` table).
    pub medication: MedicationConfig,
    /// The patient journal: the dictation size limit, the NLP job's interval (the `[journal]` table).
    pub journal: JournalConfig,
    /// Wellness: the default local time of the daily summary (the `[wellness]` table).
    pub wellness: WellnessConfig,
    /// Telehealth: when rooms open, tickets, the reconnect grace, STUN/TURN (the `[telehealth]` table).
    pub telehealth: TelehealthConfig,
}

/// The `[audit]` table (see `hearth_server::audit`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Answer a request only once its AuditEvent is committed (`true`), or once it is queued for
    /// the next group commit (`false`, the default: a crash or power loss can lose the events of
    /// requests answered in the last moments before it; a graceful stop loses none, and once a
    /// commit of the trail fails every request waits for its own until one succeeds).
    pub wait_for_commit: bool,
}

/// The `[auth]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Clinicians must enrol TOTP before they get a full session (admins always must).
    pub require_mfa_for_clinicians: bool,
    /// General API limit per user (per client IP when anonymous): a token bucket refilled at this
    /// many requests per minute.
    pub api_requests_per_minute: u32,
    /// The bucket's size: requests a user may make at once (default: `api_requests_per_minute`).
    pub api_burst: Option<u32>,
    /// Other buckets for the tokens of one OAuth client (`[auth.client_limits."client-id"]`): a
    /// bulk loader or a sync job may get more than people's apps.
    pub client_limits: std::collections::BTreeMap<String, ClientLimit>,
    /// Limit on login, OTP and refresh attempts, per client IP and per account, per minute.
    pub auth_attempts_per_minute: u32,
    /// Origins (`scheme://host[:port]`) allowed to call the API from a browser (CORS). Empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// The server key for keyed hashes of recovery and login codes: hex of at least 32 bytes.
    /// When absent, a random one is created in `<data_dir>/auth-pepper` on first start; set it
    /// explicitly when several hosts share one database.
    pub pepper: Option<Secret<String>>,
}

/// The API bucket of one OAuth client's tokens (per user of that client).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientLimit {
    pub requests_per_minute: u32,
    /// Default: `requests_per_minute`.
    pub burst: Option<u32>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            require_mfa_for_clinicians: false,
            // Sized for FHIR clients (a loader running 1,000 requests in a minute, a sync job, a
            // dashboard); sign-in attempts keep their own strict limit.
            api_requests_per_minute: 1_200,
            api_burst: None,
            client_limits: std::collections::BTreeMap::new(),
            auth_attempts_per_minute: 20,
            cors_allowed_origins: Vec::new(),
            pepper: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("hearth-data"),
            database_url: None,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            max_body_bytes: 16 * 1024 * 1024,
            base_url: None,
            shutdown_grace_secs: 30,
            auth: AuthConfig::default(),
            notify: NotifyConfig::default(),
            scheduling: SchedulingConfig::default(),
            registry: RegistryConfig::default(),
            encryption_key_file: None,
            encryption_key: None,
            rights: RightsConfig::default(),
            audit: AuditConfig::default(),
            intake: IntakeConfig::default(),
            documents: DocumentsConfig::default(),
            selfcare: SelfcareConfig::default(),
            medication: MedicationConfig::default(),
            journal: JournalConfig::default(),
            wellness: WellnessConfig::default(),
            telehealth: TelehealthConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {var}: {message}")]
    Env { var: String, message: String },
    #[error("unknown environment variable {0} (known: {KNOWN_VARS})")]
    UnknownVar(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

const KNOWN_VARS: &str = "HEARTH_CONFIG, HEARTH_LISTEN, HEARTH_DATA_DIR, HEARTH_DATABASE_URL, HEARTH_LOG_FORMAT, \
HEARTH_LOG_LEVEL, HEARTH_MAX_BODY_BYTES, HEARTH_BASE_URL, HEARTH_SHUTDOWN_GRACE_SECS, \
HEARTH_AUTH_REQUIRE_MFA_FOR_CLINICIANS, HEARTH_AUTH_API_REQUESTS_PER_MINUTE, HEARTH_AUTH_API_BURST, HEARTH_AUTH_AUTH_ATTEMPTS_PER_MINUTE, \
HEARTH_AUTH_CORS_ALLOWED_ORIGINS, HEARTH_AUTH_PEPPER, HEARTH_ENCRYPTION_KEY_FILE, HEARTH_ENCRYPTION_KEY, \
HEARTH_ADMIN_PASSWORD, HEARTH_RIGHTS_ERASURE, HEARTH_RIGHTS_RETENTION_DAYS, HEARTH_AUDIT_WAIT_FOR_COMMIT, HEARTH_REGISTRY_INVITE_TTL_HOURS, \
HEARTH_INTAKE_EMERGENCY_NUMBER, HEARTH_INTAKE_AMBULANCE_NUMBER, HEARTH_INTAKE_CHAT_BASE_URL, HEARTH_INTAKE_CHAT_MODEL, \
HEARTH_INTAKE_CHAT_API_KEY, HEARTH_INTAKE_CHAT_TIMEOUT_MS, HEARTH_INTAKE_TRANSCRIPTION_BASE_URL, \
HEARTH_INTAKE_TRANSCRIPTION_MODEL, HEARTH_INTAKE_TRANSCRIPTION_API_KEY, HEARTH_INTAKE_TRANSCRIPTION_TIMEOUT_MS, \
HEARTH_INTAKE_VOICE_MAX_BYTES, \
HEARTH_DOCUMENTS_STORAGE, HEARTH_DOCUMENTS_MAX_UPLOAD_BYTES, \
HEARTH_DOCUMENTS_CLAMD, HEARTH_DOCUMENTS_S3_ENDPOINT, HEARTH_DOCUMENTS_S3_BUCKET, HEARTH_DOCUMENTS_S3_REGION, \
HEARTH_DOCUMENTS_S3_ACCESS_KEY_ID, HEARTH_DOCUMENTS_S3_SECRET_ACCESS_KEY, HEARTH_DOCUMENTS_S3_PREFIX, \
HEARTH_SELFCARE_ESCALATE_AFTER_MINUTES, HEARTH_MEDICATION_REFILL_NOTICE_DAYS, \
HEARTH_JOURNAL_MAX_AUDIO_BYTES, HEARTH_JOURNAL_NLP_INTERVAL_SECS, HEARTH_JOURNAL_TRANSCRIPTION_BASE_URL, \
HEARTH_JOURNAL_TRANSCRIPTION_MODEL, HEARTH_JOURNAL_TRANSCRIPTION_API_KEY, HEARTH_JOURNAL_TRANSCRIPTION_TIMEOUT_MS, \
HEARTH_SELFCARE_ESCALATE_AFTER_MINUTES, HEARTH_MEDICATION_REFILL_NOTICE_DAYS, HEARTH_WELLNESS_SUMMARY_TIME, \
HEARTH_TELEHEALTH_OPEN_MINUTES_BEFORE, HEARTH_TELEHEALTH_CLOSE_MINUTES_AFTER, HEARTH_TELEHEALTH_TICKET_SECS, \
HEARTH_TELEHEALTH_RECONNECT_GRACE_SECS, HEARTH_TELEHEALTH_STUN_URLS, HEARTH_TELEHEALTH_TURN_URLS, \
HEARTH_TELEHEALTH_TURN_SECRET, HEARTH_TELEHEALTH_TURN_TTL_SECS";

/// A comma-separated list of URLs (STUN/TURN servers).
fn url_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect()
}

/// A listening address: `HOST:PORT` (`127.0.0.1:8080`, `0.0.0.0:8080`, `[::1]:8080`), or a bare
/// port meaning loopback (`8080` → `127.0.0.1:8080`).
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value.parse().map_err(|_| {
        format!(
            "`{value}` is not an address to listen on: write HOST:PORT, e.g. 127.0.0.1:8080 (this machine only), \
             0.0.0.0:8080 (every interface) or [::1]:8080, or a bare port such as 8080"
        )
    })
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("expected `true` or `false`, got `{other}`")),
    }
}

/// A TOML error as position + reason. Never toml's own rendering: it quotes the offending line,
/// which may hold a secret such as a database password.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let reason = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {reason}")
        }
        None => reason.to_owned(),
    }
}

/// Where the database lives, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` URL (may carry a password).
    Postgres(Secret<String>),
}

impl Config {
    /// Loads the configuration: defaults, then `file` (or `HEARTH_CONFIG`), then `HEARTH_*` vars.
    /// The environment is a parameter so tests never touch the process environment.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let from_env = env.iter().find(|(k, _)| k == "HEARTH_CONFIG").map(|(_, v)| PathBuf::from(v));
        let file = file.map(Path::to_path_buf).or(from_env);
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                toml::from_str::<Config>(&text)
                    .map_err(|e| ConfigError::Parse { path, message: describe(&e, &text) })?
            }
            None => Config::default(),
        };
        for (key, value) in env {
            if !key.starts_with("HEARTH_") {
                continue;
            }
            let bad = |message: String| ConfigError::Env { var: key.clone(), message };
            match key.as_str() {
                // Read by `hearth admin create-admin`, not configuration.
                "HEARTH_CONFIG" | "HEARTH_ADMIN_PASSWORD" => {}
                "HEARTH_LISTEN" => config.listen = parse_listen(value).map_err(bad)?,
                "HEARTH_DATA_DIR" => config.data_dir = PathBuf::from(value),
                "HEARTH_DATABASE_URL" => config.database_url = Some(Secret::new(value.clone())),
                "HEARTH_LOG_FORMAT" => {
                    config.log_format = match value.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        other => return Err(bad(format!("expected `text` or `json`, got `{other}`"))),
                    }
                }
                "HEARTH_LOG_LEVEL" => config.log_level = value.clone(),
                "HEARTH_MAX_BODY_BYTES" => config.max_body_bytes = value.parse().map_err(|e| bad(format!("{e}")))?,
                "HEARTH_BASE_URL" => config.base_url = Some(value.clone()),
                "HEARTH_SHUTDOWN_GRACE_SECS" => {
                    config.shutdown_grace_secs = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_AUTH_REQUIRE_MFA_FOR_CLINICIANS" => {
                    config.auth.require_mfa_for_clinicians = parse_bool(value).map_err(bad)?
                }
                "HEARTH_AUTH_API_REQUESTS_PER_MINUTE" => {
                    config.auth.api_requests_per_minute = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_AUTH_API_BURST" => {
                    config.auth.api_burst = Some(value.parse().map_err(|e| bad(format!("{e}")))?)
                }
                "HEARTH_AUTH_AUTH_ATTEMPTS_PER_MINUTE" => {
                    config.auth.auth_attempts_per_minute = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_AUTH_CORS_ALLOWED_ORIGINS" => {
                    config.auth.cors_allowed_origins =
                        value.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect()
                }
                "HEARTH_AUTH_PEPPER" => config.auth.pepper = Some(Secret::new(value.clone())),
                "HEARTH_ENCRYPTION_KEY_FILE" => config.encryption_key_file = Some(PathBuf::from(value)),
                "HEARTH_ENCRYPTION_KEY" => config.encryption_key = Some(Secret::new(value.clone())),
                "HEARTH_RIGHTS_ERASURE" => {
                    config.rights.erasure = match value.as_str() {
                        "admin-approval" => ErasureMode::AdminApproval,
                        "immediate" => ErasureMode::Immediate,
                        other => return Err(bad(format!("expected `admin-approval` or `immediate`, got `{other}`"))),
                    }
                }
                "HEARTH_AUDIT_WAIT_FOR_COMMIT" => config.audit.wait_for_commit = parse_bool(value).map_err(bad)?,
                "HEARTH_INTAKE_EMERGENCY_NUMBER" => config.intake.emergency_number = value.clone(),
                "HEARTH_INTAKE_AMBULANCE_NUMBER" => config.intake.ambulance_number = value.clone(),
                "HEARTH_INTAKE_CHAT_BASE_URL" => config.intake.chat.base_url = value.clone(),
                "HEARTH_INTAKE_CHAT_MODEL" => config.intake.chat.model = value.clone(),
                "HEARTH_INTAKE_CHAT_API_KEY" => config.intake.chat.api_key = value.clone(),
                "HEARTH_INTAKE_CHAT_TIMEOUT_MS" => {
                    config.intake.chat.timeout_ms = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_INTAKE_TRANSCRIPTION_BASE_URL" => config.intake.transcription.base_url = value.clone(),
                "HEARTH_INTAKE_TRANSCRIPTION_MODEL" => config.intake.transcription.model = value.clone(),
                "HEARTH_INTAKE_TRANSCRIPTION_API_KEY" => config.intake.transcription.api_key = value.clone(),
                "HEARTH_INTAKE_TRANSCRIPTION_TIMEOUT_MS" => {
                    config.intake.transcription.timeout_ms = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_INTAKE_VOICE_MAX_BYTES" => {
                    config.intake.voice_max_bytes = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_SELFCARE_ESCALATE_AFTER_MINUTES" => {
                    config.selfcare.escalate_after_minutes = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_WELLNESS_SUMMARY_TIME" => config.wellness.summary_time = value.to_owned(),
                "HEARTH_MEDICATION_REFILL_NOTICE_DAYS" => {
                    config.medication.refill_notice_days = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_JOURNAL_MAX_AUDIO_BYTES" => {
                    config.journal.max_audio_bytes = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_JOURNAL_NLP_INTERVAL_SECS" => {
                    config.journal.nlp_interval_secs = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_JOURNAL_TRANSCRIPTION_BASE_URL" => config.journal.transcription.base_url = value.clone(),
                "HEARTH_JOURNAL_TRANSCRIPTION_MODEL" => config.journal.transcription.model = value.clone(),
                "HEARTH_JOURNAL_TRANSCRIPTION_API_KEY" => config.journal.transcription.api_key = value.clone(),
                "HEARTH_JOURNAL_TRANSCRIPTION_TIMEOUT_MS" => {
                    config.journal.transcription.timeout_ms = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_TELEHEALTH_OPEN_MINUTES_BEFORE" => {
                    config.telehealth.open_minutes_before = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_TELEHEALTH_CLOSE_MINUTES_AFTER" => {
                    config.telehealth.close_minutes_after = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_TELEHEALTH_TICKET_SECS" => {
                    config.telehealth.ticket_secs = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_TELEHEALTH_RECONNECT_GRACE_SECS" => {
                    config.telehealth.reconnect_grace_secs = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_TELEHEALTH_STUN_URLS" => config.telehealth.stun_urls = url_list(value),
                "HEARTH_TELEHEALTH_TURN_URLS" => config.telehealth.turn_urls = url_list(value),
                "HEARTH_TELEHEALTH_TURN_SECRET" => config.telehealth.turn_secret = Some(Secret::new(value.clone())),
                "HEARTH_TELEHEALTH_TURN_TTL_SECS" => {
                    config.telehealth.turn_ttl_secs = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_RIGHTS_RETENTION_DAYS" => {
                    config.rights.retention_days = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_DOCUMENTS_STORAGE" => {
                    config.documents.storage = match value.as_str() {
                        "local" => DocumentStorage::Local,
                        "s3" => DocumentStorage::S3,
                        other => return Err(bad(format!("expected `local` or `s3`, got `{other}`"))),
                    }
                }
                "HEARTH_DOCUMENTS_MAX_UPLOAD_BYTES" => {
                    config.documents.max_upload_bytes = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                "HEARTH_DOCUMENTS_CLAMD" => config.documents.clamd = Some(value.clone()),
                "HEARTH_DOCUMENTS_S3_ENDPOINT"
                | "HEARTH_DOCUMENTS_S3_BUCKET"
                | "HEARTH_DOCUMENTS_S3_REGION"
                | "HEARTH_DOCUMENTS_S3_ACCESS_KEY_ID"
                | "HEARTH_DOCUMENTS_S3_SECRET_ACCESS_KEY"
                | "HEARTH_DOCUMENTS_S3_PREFIX" => {
                    let s3 = config.documents.s3.get_or_insert_with(|| hearth_documents::s3::S3Config {
                        endpoint: String::new(),
                        bucket: String::new(),
                        region: "us-east-1".into(),
                        access_key_id: String::new(),
                        secret_access_key: Secret::new(String::new()),
                        prefix: String::new(),
                    });
                    match key.as_str() {
                        "HEARTH_DOCUMENTS_S3_ENDPOINT" => s3.endpoint = value.clone(),
                        "HEARTH_DOCUMENTS_S3_BUCKET" => s3.bucket = value.clone(),
                        "HEARTH_DOCUMENTS_S3_REGION" => s3.region = value.clone(),
                        "HEARTH_DOCUMENTS_S3_ACCESS_KEY_ID" => s3.access_key_id = value.clone(),
                        "HEARTH_DOCUMENTS_S3_SECRET_ACCESS_KEY" => s3.secret_access_key = Secret::new(value.clone()),
                        _ => s3.prefix = value.clone(),
                    }
                }
                "HEARTH_REGISTRY_INVITE_TTL_HOURS" => {
                    config.registry.invite_ttl_hours = value.parse().map_err(|e| bad(format!("{e}")))?
                }
                _ => return Err(ConfigError::UnknownVar(key.clone())),
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid("max_body_bytes must be at least 1024".into()));
        }
        if let Some(base) = &self.base_url
            && (!(base.starts_with("http://") || base.starts_with("https://")) || base.ends_with('/'))
        {
            return Err(ConfigError::Invalid(
                "base_url must start with http:// or https:// and not end with '/'".into(),
            ));
        }
        if self.auth.api_requests_per_minute == 0 || self.auth.auth_attempts_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "auth.api_requests_per_minute and auth.auth_attempts_per_minute must be at least 1".into(),
            ));
        }
        if self.auth.api_burst == Some(0) {
            return Err(ConfigError::Invalid("auth.api_burst must be at least 1".into()));
        }
        for (client, limit) in &self.auth.client_limits {
            if limit.requests_per_minute == 0 || limit.burst == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "auth.client_limits.\"{client}\": requests_per_minute and burst must be at least 1"
                )));
            }
        }
        for origin in &self.auth.cors_allowed_origins {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && http::HeaderValue::from_str(origin).is_ok();
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "auth.cors_allowed_origins: `{origin}` is not an origin (scheme://host[:port])"
                )));
            }
        }
        if let Some(p) = &self.auth.pepper {
            // Never echo it.
            if self.pepper_bytes(p).is_none() {
                return Err(ConfigError::Invalid("auth.pepper must be hex of at least 32 bytes".into()));
            }
        }
        let sc = &self.scheduling;
        if sc.reminder_offsets_minutes.iter().any(|m| *m == 0 || *m > 60 * 24 * 60) || sc.max_search_days == 0 {
            return Err(ConfigError::Invalid(
                "scheduling.reminder_offsets_minutes must be 1 to 86400 and scheduling.max_search_days at least 1"
                    .into(),
            ));
        }
        self.registry.validate().map_err(ConfigError::Invalid)?;
        self.selfcare.validate().map_err(ConfigError::Invalid)?;
        self.medication.validate().map_err(ConfigError::Invalid)?;
        self.journal.validate().map_err(ConfigError::Invalid)?;
        self.wellness.validate().map_err(ConfigError::Invalid)?;
        self.telehealth.check().map_err(ConfigError::Invalid)?;
        let n = &self.notify;
        if n.poll_interval_ms == 0 || n.max_attempts == 0 || n.send_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "notify.poll_interval_ms, notify.max_attempts and notify.send_timeout_ms must be at least 1".into(),
            ));
        }
        if n.lease_secs.saturating_mul(1000) <= n.send_timeout_ms {
            return Err(ConfigError::Invalid("notify.lease_secs must be longer than notify.send_timeout_ms".into()));
        }
        if n.default_time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::Invalid("notify.default_time_zone is not an IANA time zone".into()));
        }
        if let Some(e) = &n.email
            && !matches!(e.security.as_str(), "starttls" | "tls" | "none")
        {
            return Err(ConfigError::Invalid("notify.email.security must be starttls, tls or none".into()));
        }
        if let Some(s) = &n.sms
            && s.messaging_service_sid.is_none()
            && s.from.is_none()
        {
            return Err(ConfigError::Invalid("notify.sms needs messaging_service_sid or from".into()));
        }
        self.intake.check().map_err(ConfigError::Invalid)?;
        self.documents.check().map_err(ConfigError::Invalid)?;
        self.database()?;
        self.encryption_keys()?;
        Ok(())
    }

    /// The master keys of encryption at rest, or `None` when none is configured. The key file is
    /// read here (and again by a store that follows a rotation); errors never quote it.
    pub fn encryption_keys(&self) -> Result<Option<KeySource>, ConfigError> {
        match (&self.encryption_key_file, &self.encryption_key) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid(
                "set either encryption_key_file (HEARTH_ENCRYPTION_KEY_FILE) or HEARTH_ENCRYPTION_KEY, not both".into(),
            )),
            (Some(path), None) => {
                let source = KeySource::File(path.clone());
                source.load().map_err(|e| ConfigError::Invalid(e.to_string()))?;
                Ok(Some(source))
            }
            (None, Some(key)) => {
                let ring = KeyRing::parse(key.expose())
                    .map_err(|e| ConfigError::Invalid(format!("HEARTH_ENCRYPTION_KEY: {e}")))?;
                Ok(Some(KeySource::Fixed(ring)))
            }
            (None, None) => Ok(None),
        }
    }

    /// The configured pepper's bytes (`None` when it is not hex of at least 32 bytes).
    pub fn pepper_bytes(&self, p: &Secret<String>) -> Option<Vec<u8>> {
        let s = p.expose().trim();
        if !s.len().is_multiple_of(2) || s.len() < 64 {
            return None;
        }
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
    }

    /// Resolves which database to use.
    pub fn database(&self) -> Result<Database, ConfigError> {
        match &self.database_url {
            None => Ok(Database::Sqlite(self.data_dir.join("hearth.db"))),
            Some(url) => {
                let url = url.expose();
                if let Some(path) = url.strip_prefix("sqlite://") {
                    if path.is_empty() {
                        return Err(ConfigError::Invalid("database_url sqlite:// needs a file path".into()));
                    }
                    Ok(Database::Sqlite(PathBuf::from(path)))
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    Ok(Database::Postgres(Secret::new(url.clone())))
                } else {
                    // Never echo the URL: it may contain a password.
                    Err(ConfigError::Invalid("database_url must start with sqlite:// or postgres://".into()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_document_limit_fhir_cannot_describe_is_refused() {
        let at_most = Config::load(None, &env(&[("HEARTH_DOCUMENTS_MAX_UPLOAD_BYTES", "2147483647")])).unwrap();
        assert_eq!(at_most.documents.max_upload_bytes, 2_147_483_647);
        let e = Config::load(None, &env(&[("HEARTH_DOCUMENTS_MAX_UPLOAD_BYTES", "3221225472")])).unwrap_err();
        assert!(e.to_string().contains("unsignedInt"), "{e}");
    }

    #[test]
    fn defaults_are_zero_config() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database().unwrap(), Database::Sqlite(PathBuf::from("hearth-data/hearth.db")));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn listen_addresses_take_a_bare_port_and_explain_the_form() {
        assert_eq!(parse_listen("8081").unwrap().to_string(), "127.0.0.1:8081");
        assert_eq!(parse_listen("0.0.0.0:9000").unwrap().to_string(), "0.0.0.0:9000");
        assert_eq!(parse_listen("[::1]:9000").unwrap().to_string(), "[::1]:9000");
        let e = parse_listen("localhost").unwrap_err();
        assert!(e.contains("HOST:PORT") && e.contains("127.0.0.1:8080"), "{e}");
        let e = Config::load(None, &env(&[("HEARTH_LISTEN", "80800")])).unwrap_err().to_string();
        assert!(e.contains("HEARTH_LISTEN") && e.contains("HOST:PORT"), "{e}");
        let e = Config::load(None, &env(&[("HEARTH_DEV_MODE", "1")])).unwrap_err().to_string();
        assert!(e.contains("unknown environment variable HEARTH_DEV_MODE") && !e.contains("HEARTH_DEV_MODE,"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_unknown_vars_fail() {
        let dir = std::env::temp_dir().join(format!("hearth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nlog_format = \"json\"\n").unwrap();
        let c = Config::load(Some(&file), &env(&[("HEARTH_LISTEN", "127.0.0.1:9001"), ("PATH", "/bin")])).unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.log_format, LogFormat::Json);

        let err = Config::load(None, &env(&[("HEARTH_LISTN", "x")])).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownVar(v) if v == "HEARTH_LISTN"));

        std::fs::write(&file, "lissen = \"127.0.0.1:9000\"\n").unwrap();
        assert!(matches!(Config::load(Some(&file), &[]), Err(ConfigError::Parse { .. })));

        // A syntax error on a line holding a secret reports where, never what.
        std::fs::write(&file, "log_level = \"info\"\ndatabase_url = \"postgres://u:hunter2@h/db\n").unwrap();
        let err = Config::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn auth_keys_load_from_file_and_env() {
        let c = Config::load(None, &[]).unwrap();
        assert!(!c.auth.require_mfa_for_clinicians);
        assert_eq!(c.auth.api_requests_per_minute, 1_200);
        let dir = std::env::temp_dir().join(format!("hearth-config-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(
            &file,
            "[auth]\nrequire_mfa_for_clinicians = true\ncors_allowed_origins = [\"https://app.example\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &env(&[("HEARTH_AUTH_API_REQUESTS_PER_MINUTE", "7")])).unwrap();
        assert!(c.auth.require_mfa_for_clinicians);
        assert_eq!(c.auth.cors_allowed_origins, vec!["https://app.example".to_owned()]);
        assert_eq!(c.auth.api_requests_per_minute, 7);
        std::fs::write(&file, "[auth]\nrequire_mfa_for_clinician = true\n").unwrap();
        assert!(matches!(Config::load(Some(&file), &[]), Err(ConfigError::Parse { .. })));
        let err = Config::load(None, &env(&[("HEARTH_AUTH_REQUIRE_MFA_FOR_CLINICIANS", "yes")])).unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{err}");
        let err = Config::load(None, &env(&[("HEARTH_AUTH_PEPPER", "abcd")])).unwrap_err();
        assert!(!err.to_string().contains("abcd"), "{err}");
        let c = Config::load(None, &env(&[("HEARTH_AUTH_PEPPER", &"ab".repeat(32))])).unwrap();
        assert!(!format!("{c:?}").contains("abab"));
    }

    #[test]
    fn api_buckets_per_oauth_client_load_from_the_file() {
        let dir = std::env::temp_dir().join(format!("hearth-config-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(
            &file,
            "[auth]\napi_burst = 300\n[auth.client_limits.\"nightly-sync\"]\nrequests_per_minute = 6000\nburst = 2000\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &env(&[("HEARTH_AUTH_API_BURST", "400")])).unwrap();
        assert_eq!(c.auth.api_burst, Some(400));
        assert_eq!(
            c.auth.client_limits.get("nightly-sync"),
            Some(&ClientLimit { requests_per_minute: 6000, burst: Some(2000) })
        );
        std::fs::write(&file, "[auth.client_limits.x]\nrequests_per_minute = 0\n").unwrap();
        assert!(matches!(Config::load(Some(&file), &[]), Err(ConfigError::Invalid(_))));
        std::fs::write(&file, "[auth.client_limits.x]\nrequests_per_minit = 5\n").unwrap();
        assert!(matches!(Config::load(Some(&file), &[]), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn encryption_keys_come_from_a_file_or_the_environment() {
        let key = "0123456789abcdef".repeat(4);
        assert!(Config::load(None, &[]).unwrap().encryption_keys().unwrap().is_none());
        let c = Config::load(None, &env(&[("HEARTH_ENCRYPTION_KEY", &key)])).unwrap();
        assert!(c.encryption_keys().unwrap().is_some());
        assert!(!format!("{c:?}").contains("89abcdef"));
        let err = Config::load(None, &env(&[("HEARTH_ENCRYPTION_KEY", "0123abcd")])).unwrap_err().to_string();
        assert!(err.contains("64 hex digits") && !err.contains("0123abcd"), "{err}");
        let dir = std::env::temp_dir().join(format!("hearth-config-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, format!("# hearth key\n{key}\n")).unwrap();
        let toml = dir.join("hearth.toml");
        std::fs::write(&toml, format!("encryption_key_file = {:?}\n", file.display().to_string())).unwrap();
        let c = Config::load(Some(&toml), &[]).unwrap();
        assert!(c.encryption_keys().unwrap().is_some());
        let both = env(&[("HEARTH_ENCRYPTION_KEY", &key)]);
        assert!(matches!(Config::load(Some(&toml), &both), Err(ConfigError::Invalid(_))));
        std::fs::write(&toml, "encryption_key = \"x\"\n").unwrap();
        assert!(matches!(Config::load(Some(&toml), &[]), Err(ConfigError::Parse { .. })));
        let missing = env(&[("HEARTH_ENCRYPTION_KEY_FILE", "/nonexistent/hearth.key")]);
        assert!(Config::load(None, &missing).unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::load(None, &env(&[("HEARTH_DATABASE_URL", "sqlite:///tmp/p@ssw0rd.db")])).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("p@ssw0rd"), "{printed}");
        let err = Config::load(None, &env(&[("HEARTH_DATABASE_URL", "mysql://u:hunter2@h/db")])).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn notify_table_parses_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("hearth-config-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        let text = "[notify]\nworker = false\nmax_attempts = 5\n\n[notify.email]\nhost = \"smtp.example.org\"\n\
                    username = \"hearth\"\npassword = \"pw\"\nfrom = \"Hearth <no-reply@example.org>\"\n\n[notify.sms]\n\
                    account_sid = \"AC1\"\nauth_token = \"tok\"\nmessaging_service_sid = \"MG1\"\n\n\
                    [notify.webpush]\nsubject = \"mailto:ops@example.org\"\n\n[notify.fcm]\n\
                    service_account_file = \"/etc/hearth/sa.json\"\n";
        std::fs::write(&file, text).unwrap();
        let c = Config::load(Some(&file), &[]).unwrap();
        assert!(!c.notify.worker);
        let email = c.notify.email.as_ref().unwrap();
        assert_eq!((email.port, email.security.as_str()), (587, "starttls"));
        assert_eq!(c.notify.sms.as_ref().unwrap().api_base, "https://api.twilio.com");
        assert_eq!(c.notify.fcm.as_ref().unwrap().api_base, "https://fcm.googleapis.com");
        assert!(!format!("{c:?}").contains("tok\""), "secrets never print");
        for bad in [
            "[notify.email]\nhost = \"h\"\nfrom = \"a@b.c\"\nsecurity = \"ssl3\"\n",
            "[notify.sms]\naccount_sid = \"AC1\"\nauth_token = \"t\"\n",
            "[notify]\ndefault_time_zone = \"Mars/Base\"\n",
            "[notify]\nlease_secs = 1\nsend_timeout_ms = 5000\n",
            "[notify]\nsmtp = true\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(Config::load(Some(&file), &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn rights_come_from_the_file_or_the_environment() {
        let c = Config::load(None, &[]).unwrap();
        assert_eq!((c.rights.erasure, c.rights.retention_days), (ErasureMode::AdminApproval, 0));
        let dir = std::env::temp_dir().join(format!("hearth-config-rights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "[rights]\nerasure = \"immediate\"\nretention_days = 3650\n").unwrap();
        let c = Config::load(Some(&file), &[]).unwrap();
        assert_eq!((c.rights.erasure, c.rights.retention_days), (ErasureMode::Immediate, 3650));
        let c = Config::load(
            Some(&file),
            &env(&[("HEARTH_RIGHTS_ERASURE", "admin-approval"), ("HEARTH_RIGHTS_RETENTION_DAYS", "7")]),
        )
        .unwrap();
        assert_eq!((c.rights.erasure, c.rights.retention_days), (ErasureMode::AdminApproval, 7));
        assert!(Config::load(None, &env(&[("HEARTH_RIGHTS_ERASURE", "never")])).is_err());
        std::fs::write(&file, "[rights]\nerasure = \"whenever\"\n").unwrap();
        assert!(Config::load(Some(&file), &[]).is_err());
    }

    #[test]
    fn registry_table_parses_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("hearth-config-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "[registry]\ninvite_ttl_hours = 72\n").unwrap();
        let c = Config::load(Some(&file), &[]).unwrap();
        assert_eq!(c.registry.invite_ttl_hours, 72);
        assert_eq!(Config::default().registry.invite_ttl_hours, 24);
        let e = [("HEARTH_REGISTRY_INVITE_TTL_HOURS".to_owned(), "48".to_owned())];
        assert_eq!(Config::load(None, &e).unwrap().registry.invite_ttl_hours, 48);
        for bad in [
            "[registry]\ninvite_ttl_hours = 0\n",
            "[registry]\ninvites = true\n",
            "[registry]\nclaim_url = \"ftp://x\"\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(Config::load(Some(&file), &[]).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn wellness_table_parses_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("hearth-config-wellness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "[wellness]\nsummary_time = \"06:30\"\n").unwrap();
        assert_eq!(Config::load(Some(&file), &[]).unwrap().wellness.summary_time, "06:30");
        assert_eq!(Config::default().wellness.summary_time, "07:00");
        let e = [("HEARTH_WELLNESS_SUMMARY_TIME".to_owned(), "21:05".to_owned())];
        assert_eq!(Config::load(None, &e).unwrap().wellness.summary_time, "21:05");
        for bad in ["24:00", "7:00", "noon"] {
            let e = [("HEARTH_WELLNESS_SUMMARY_TIME".to_owned(), bad.to_owned())];
            assert!(Config::load(None, &e).is_err(), "{bad}");
        }
        std::fs::write(&file, "[wellness]\nsummary = \"07:00\"\n").unwrap();
        assert!(Config::load(Some(&file), &[]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn selfcare_table_parses_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("hearth-config-selfcare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "[selfcare]\nescalate_after_minutes = 30\n").unwrap();
        assert_eq!(Config::load(Some(&file), &[]).unwrap().selfcare.escalate_after_minutes, 30);
        assert_eq!(Config::default().selfcare.escalate_after_minutes, 15);
        let e = [("HEARTH_SELFCARE_ESCALATE_AFTER_MINUTES".to_owned(), "5".to_owned())];
        assert_eq!(Config::load(None, &e).unwrap().selfcare.escalate_after_minutes, 5);
        let e = [("HEARTH_SELFCARE_ESCALATE_AFTER_MINUTES".to_owned(), "0".to_owned())];
        assert!(Config::load(None, &e).is_err());
        for bad in ["[selfcare]\nescalate_after_minutes = 1441\n", "[selfcare]\nescalate = true\n"] {
            std::fs::write(&file, bad).unwrap();
            assert!(Config::load(Some(&file), &[]).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn journal_table_parses_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("hearth-config-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "[journal]\nmax_audio_bytes = 2048\nnlp_interval_secs = 5\n").unwrap();
        let c = Config::load(Some(&file), &[]).unwrap();
        assert_eq!((c.journal.max_audio_bytes, c.journal.nlp_interval_secs), (2048, 5));
        let e = [("HEARTH_JOURNAL_NLP_INTERVAL_SECS".to_owned(), "7".to_owned())];
        assert_eq!(Config::load(None, &e).unwrap().journal.nlp_interval_secs, 7);
        let e = [("HEARTH_JOURNAL_MAX_AUDIO_BYTES".to_owned(), "10".to_owned())];
        assert!(Config::load(None, &e).is_err());
        std::fs::write(&file, "[journal]\nnlp = 1\n").unwrap();
        assert!(Config::load(Some(&file), &[]).is_err());
        std::fs::write(&file, "[journal.transcription]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"w\"\n")
            .unwrap();
        assert_eq!(Config::load(Some(&file), &[]).unwrap().journal.transcription.model, "w");
        let e = [("HEARTH_JOURNAL_TRANSCRIPTION_BASE_URL".to_owned(), "http://127.0.0.1:9/v1".to_owned())];
        assert!(Config::load(None, &e).is_err(), "a URL needs a model");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn telehealth_table_and_variables_parse_and_are_checked() {
        let d = Config::default().telehealth;
        assert_eq!((d.open_minutes_before, d.ticket_secs, d.reconnect_grace_secs), (15, 60, 30));
        let c = Config::load(
            None,
            &env(&[
                ("HEARTH_TELEHEALTH_OPEN_MINUTES_BEFORE", "10"),
                ("HEARTH_TELEHEALTH_STUN_URLS", "stun:turn.example.org:3478"),
                (
                    "HEARTH_TELEHEALTH_TURN_URLS",
                    "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349",
                ),
                ("HEARTH_TELEHEALTH_TURN_SECRET", "a-long-enough-turn-secret"),
            ]),
        )
        .unwrap();
        assert_eq!(c.telehealth.open_minutes_before, 10);
        assert_eq!(c.telehealth.turn_urls.len(), 2);
        assert!(!format!("{:?}", c.telehealth).contains("a-long-enough-turn-secret"));
        for bad in [
            env(&[("HEARTH_TELEHEALTH_TURN_URLS", "turn:turn.example.org:3478")]),
            env(&[("HEARTH_TELEHEALTH_STUN_URLS", "http://turn.example.org")]),
            env(&[("HEARTH_TELEHEALTH_TICKET_SECS", "0")]),
            env(&[("HEARTH_TELEHEALTH_RECONNECT_GRACE_SECS", "-1")]),
        ] {
            assert!(Config::load(None, &bad).is_err());
        }
    }

    #[test]
    fn medication_table_parses_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("hearth-config-medication-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "[medication]\nrefill_notice_days = 7\n").unwrap();
        assert_eq!(Config::load(Some(&file), &[]).unwrap().medication.refill_notice_days, 7);
        assert_eq!(Config::default().medication.refill_notice_days, 3);
        let e = [("HEARTH_MEDICATION_REFILL_NOTICE_DAYS".to_owned(), "0".to_owned())];
        assert_eq!(Config::load(None, &e).unwrap().medication.refill_notice_days, 0);
        let e = [("HEARTH_MEDICATION_REFILL_NOTICE_DAYS".to_owned(), "91".to_owned())];
        assert!(Config::load(None, &e).is_err());
        for bad in ["[medication]\nrefill_notice_days = -1\n", "[medication]\nrefill = 3\n"] {
            std::fs::write(&file, bad).unwrap();
            assert!(Config::load(Some(&file), &[]).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn intake_table_parses_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("hearth-config-intake-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "[intake]\nemergency_number = \"999\"\nambulance_number = \"\"\n").unwrap();
        let c = Config::load(Some(&file), &[]).unwrap();
        assert_eq!((c.intake.emergency_number.as_str(), c.intake.ambulance_number.as_str()), ("999", ""));
        assert_eq!(c.intake.safety().ambulance_number, None);
        let d = Config::default().intake;
        assert_eq!((d.emergency_number.as_str(), d.ambulance_number.as_str()), ("112", "108"));
        let c = Config::load(None, &env(&[("HEARTH_INTAKE_AMBULANCE_NUMBER", "102")])).unwrap();
        assert_eq!(c.intake.ambulance_number, "102");
        // The optional model providers: a table or variables; a URL needs a model; the key
        // never shows in Debug.
        std::fs::write(
            &file,
            "[intake.chat]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\napi_key = \"sk-secret\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &env(&[("HEARTH_INTAKE_TRANSCRIPTION_TIMEOUT_MS", "2500")])).unwrap();
        assert_eq!((c.intake.chat.model.as_str(), c.intake.chat.timeout_ms), ("m", 8000));
        assert_eq!(c.intake.transcription.timeout_ms, 2500);
        assert!(!format!("{c:?}").contains("sk-secret"));
        let bad_chat = env(&[("HEARTH_INTAKE_CHAT_BASE_URL", "ftp://x")]);
        assert!(Config::load(None, &bad_chat).is_err());
        let no_model = env(&[("HEARTH_INTAKE_TRANSCRIPTION_BASE_URL", "http://127.0.0.1:9/v1")]);
        assert!(Config::load(None, &no_model).is_err());
        assert!(Config::load(None, &env(&[("HEARTH_INTAKE_VOICE_MAX_BYTES", "10")])).is_err());
        for bad in ["[intake]\nemergency_number = \"call us\"\n", "[intake]\nnumber = \"112\"\n"] {
            std::fs::write(&file, bad).unwrap();
            assert!(Config::load(Some(&file), &[]).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn scheduling_table_parses_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("hearth-config-scheduling-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hearth.toml");
        std::fs::write(&file, "[scheduling]\nreminder_offsets_minutes = [2880, 60]\nlate_cancel_hours = 48\n").unwrap();
        let c = Config::load(Some(&file), &[]).unwrap();
        assert_eq!(c.scheduling.reminder_offsets_minutes, [2880, 60]);
        assert_eq!((c.scheduling.late_cancel_hours, c.scheduling.max_search_days), (48, 62));
        assert_eq!(Config::default().scheduling.reminder_offsets_minutes, [1440, 120]);
        for bad in [
            "[scheduling]\nreminder_offsets_minutes = [0]\n",
            "[scheduling]\nmax_search_days = 0\n",
            "[scheduling]\nreminders = true\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(Config::load(Some(&file), &[]).is_err(), "{bad}");
        }
    }
}

//! The `[notify]` configuration table.

use std::path::PathBuf;

use hearth_workflow::Secret;
use serde::Deserialize;

/// The `[notify]` table. Without `[notify.email]` / `[notify.sms]`, e-mail and SMS are written
/// to the local file outbox (`outbox_dir`); without `[notify.fcm]` there is no mobile push.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Run the outbox worker inside `hearth serve` (turn off when `hearth worker` processes do it).
    pub worker: bool,
    /// How often an idle worker looks for due rows (it is also woken by enqueues in its process).
    pub poll_interval_ms: u64,
    /// A claimed row's lease: after it, a row whose worker died is claimed again.
    pub lease_secs: u64,
    /// Longest wait for one provider request.
    pub send_timeout_ms: u64,
    /// Attempts per message before it is `failed`.
    pub max_attempts: u32,
    /// Retry delay after attempt n: `retry_base_secs * 2^(n-1)`, capped, with jitter (half to full).
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// The local outbox for e-mail and SMS when no provider is configured; default `<data_dir>/outbox`.
    pub outbox_dir: Option<PathBuf>,
    /// Time zone (IANA) and language (`en`, `hi`) of users who have not set theirs.
    pub default_time_zone: String,
    pub default_language: String,
    /// Accept `http://` Web Push endpoints (tests against a loopback push service only).
    pub allow_insecure_push_endpoints: bool,
    pub email: Option<EmailConfig>,
    pub sms: Option<SmsConfig>,
    pub webpush: WebPushConfig,
    pub fcm: Option<FcmConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            worker: true,
            poll_interval_ms: 1000,
            lease_secs: 60,
            send_timeout_ms: 30_000,
            max_attempts: 8,
            retry_base_secs: 30,
            retry_max_secs: 3600,
            outbox_dir: None,
            default_time_zone: "UTC".into(),
            default_language: "en".into(),
            allow_insecure_push_endpoints: false,
            email: None,
            sms: None,
            webpush: WebPushConfig::default(),
            fcm: None,
        }
    }
}

/// `[notify.email]`: an SMTP relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default), `tls` (implicit, port 465) or `none` (a local relay only).
    #[serde(default = "default_smtp_security")]
    pub security: String,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// `Hearth <no-reply@example.org>`
    pub from: String,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_smtp_security() -> String {
    "starttls".into()
}

/// `[notify.sms]`: a Twilio-compatible REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    #[serde(default = "default_twilio_base")]
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: Secret<String>,
    /// Send through a Messaging Service (preferred) or `from` a number.
    pub messaging_service_sid: Option<String>,
    pub from: Option<String>,
    /// The public URL of `/api/v1/notifications/twilio/status` exactly as Twilio calls it (the
    /// signature covers it); when absent, no delivery reports are asked for.
    pub status_callback_url: Option<String>,
}

fn default_twilio_base() -> String {
    "https://api.twilio.com".into()
}

/// `[notify.webpush]`: the VAPID key pair is generated on first start and kept in the database.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebPushConfig {
    /// The VAPID contact (`mailto:` or `https:`); default `base_url`, else `mailto:postmaster@localhost`.
    pub subject: Option<String>,
}

/// `[notify.fcm]`: Firebase Cloud Messaging HTTP v1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// The service account's JSON key file.
    pub service_account_file: PathBuf,
    #[serde(default = "default_fcm_base")]
    pub api_base: String,
}

fn default_fcm_base() -> String {
    "https://fcm.googleapis.com".into()
}

//! The delivery channels, each behind [`Channel`]: SMTP e-mail, Twilio SMS, Web Push, FCM, the
//! local file outbox (the offline default for e-mail and SMS) and an in-memory sink.
//!
//! A channel sends one rendered message and classifies failure: [`SendError::Retry`] (timeouts,
//! `429`, `5xx`: the outbox tries again later), [`SendError::Bounced`] (the recipient was refused),
//! [`SendError::Failed`] (permanent) and [`SendError::Gone`] (the push subscription no longer
//! exists and must be deleted). Error texts hold statuses and provider codes, never addresses or
//! message content, because they are stored and shown to admins.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::fcm;
use crate::http::{Http, HttpError, basic};
use crate::templates::Rendered;
use crate::webpush::{self, VapidKey};

/// Where a channel delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    Email,
    Sms,
    WebPush,
    Fcm,
    InApp,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 5] =
        [ChannelKind::Email, ChannelKind::Sms, ChannelKind::WebPush, ChannelKind::Fcm, ChannelKind::InApp];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Sms => "sms",
            ChannelKind::WebPush => "webpush",
            ChannelKind::Fcm => "fcm",
            ChannelKind::InApp => "in_app",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What a notification is about; preferences are per category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Appointment,
    Medication,
    Security,
    Results,
    Announcement,
    Emergency,
    /// Alarms the user set for themselves (`hearth-alarms`).
    Alarm,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Appointment,
        Category::Medication,
        Category::Security,
        Category::Results,
        Category::Announcement,
        Category::Emergency,
        Category::Alarm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Appointment => "appointment",
            Category::Medication => "medication",
            Category::Security => "security",
            Category::Results => "results",
            Category::Announcement => "announcement",
            Category::Emergency => "emergency",
            Category::Alarm => "alarm",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Security codes and emergency alerts: sent through quiet hours and cannot be turned off.
    pub fn is_critical(self) -> bool {
        matches!(self, Category::Security | Category::Emergency)
    }

    /// Sent through the recipient's quiet hours: the critical categories, and alarms (an alarm
    /// is a time the user chose to be woken or reminded at; quiet hours must not hold it). Unlike
    /// the critical ones, alarms can still be turned off per channel (and each alarm disabled).
    pub fn passes_quiet_hours(self) -> bool {
        self.is_critical() || self == Category::Alarm
    }

    /// Web Push `Urgency` (RFC 8030 section 5.3).
    pub fn urgency(self) -> &'static str {
        match self {
            // An alarm rings at the time the user chose: delivered now, not when convenient.
            Category::Security | Category::Emergency | Category::Alarm => "high",
            Category::Appointment | Category::Medication => "normal",
            Category::Results | Category::Announcement => "low",
        }
    }
}

/// A recipient address on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Email(String),
    Phone(String),
    WebPush { endpoint: String, p256dh: String, auth: String },
    Fcm { token: String },
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The outbox id: the same on every attempt, so it doubles as the provider-side
    /// idempotency token (e-mail `Message-ID`, Web Push `Topic`, FCM collapse key).
    pub id: String,
    pub category: Category,
    pub to: Address,
    pub content: Rendered,
    /// Seconds a push service may hold the message.
    pub ttl_secs: u32,
}

impl Outgoing {
    /// A 32-character URL-safe token derived from the id (Web Push `Topic`, at most 32 chars).
    pub fn topic(&self) -> String {
        self.id.chars().filter(char::is_ascii_alphanumeric).take(32).collect()
    }
}

/// The provider took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub provider_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("temporary failure: {0}")]
    Retry(String),
    #[error("permanent failure: {0}")]
    Failed(String),
    #[error("refused by the recipient's server: {0}")]
    Bounced(String),
    #[error("the subscription no longer exists: {0}")]
    Gone(String),
}

#[async_trait::async_trait]
pub trait Channel: Send + Sync + 'static {
    fn kind(&self) -> ChannelKind;
    /// A name for logs and the admin view (`smtp`, `twilio`, `file`…).
    fn provider(&self) -> &'static str;
    async fn send(&self, message: &Outgoing, now: DateTime<Utc>) -> Result<Accepted, SendError>;
}

fn http_error(e: &HttpError) -> SendError {
    match e {
        HttpError::Request(_) => SendError::Failed("invalid request".into()),
        other => SendError::Retry(other.to_string()),
    }
}

fn status_error(status: u16, detail: &str) -> SendError {
    let what = if detail.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status} {detail}") };
    match status {
        408 | 429 | 500..=599 => SendError::Retry(what),
        _ => SendError::Failed(what),
    }
}

// ---------------------------------------------------------------- e-mail over SMTP

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Implicit TLS (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    StartTls,
    /// Plain text: only for a relay on loopback or a trusted local network.
    None,
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `Hearth <no-reply@example.org>`
    pub from: String,
    pub timeout: Duration,
}

pub struct SmtpChannel {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
    domain: String,
}

impl SmtpChannel {
    pub fn new(s: &SmtpSettings) -> Result<SmtpChannel, String> {
        use lettre::AsyncSmtpTransport as T;
        let builder = match s.security {
            SmtpSecurity::Tls => T::<lettre::Tokio1Executor>::relay(&s.host).map_err(|e| e.to_string())?,
            SmtpSecurity::StartTls => {
                T::<lettre::Tokio1Executor>::starttls_relay(&s.host).map_err(|e| e.to_string())?
            }
            SmtpSecurity::None => T::<lettre::Tokio1Executor>::builder_dangerous(&s.host),
        };
        let mut builder = builder.port(s.port).timeout(Some(s.timeout));
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(u.clone(), p.clone()));
        }
        let from: lettre::message::Mailbox = s.from.parse().map_err(|_| "notify.email.from is not a mailbox")?;
        let domain = from.email.domain().to_owned();
        Ok(SmtpChannel { transport: builder.build(), from, domain })
    }
}

#[async_trait::async_trait]
impl Channel for SmtpChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }
    fn provider(&self) -> &'static str {
        "smtp"
    }
    async fn send(&self, m: &Outgoing, _now: DateTime<Utc>) -> Result<Accepted, SendError> {
        use lettre::AsyncTransport;
        let Address::Email(to) = &m.to else { return Err(SendError::Failed("not an e-mail address".into())) };
        let to: lettre::message::Mailbox = to.parse().map_err(|_| SendError::Bounced("invalid address".into()))?;
        let message_id = format!("<{}@{}>", m.id, self.domain);
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.content.subject.clone())
            .message_id(Some(message_id.clone()))
            .multipart(lettre::message::MultiPart::alternative_plain_html(
                m.content.text.clone(),
                m.content.html.clone(),
            ))
            .map_err(|_| SendError::Failed("cannot build the message".into()))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(Accepted { provider_id: Some(message_id) }),
            Err(e) => {
                let code = e.status().map(|c| c.to_string()).unwrap_or_default();
                if e.is_permanent() {
                    Err(SendError::Bounced(format!("SMTP {code}")))
                } else if e.is_transient() {
                    Err(SendError::Retry(format!("SMTP {code}")))
                } else if e.is_timeout() {
                    Err(SendError::Retry("SMTP timed out".into()))
                } else {
                    Err(SendError::Retry("SMTP connection failed".into()))
                }
            }
        }
    }
}

// ---------------------------------------------------------------- SMS through Twilio

#[derive(Clone)]
pub struct TwilioSettings {
    /// `https://api.twilio.com` (a compatible API or a test peer elsewhere).
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: String,
    pub messaging_service_sid: Option<String>,
    pub from: Option<String>,
    /// Where Twilio posts delivery status (our `/api/v1/notifications/twilio/status`).
    pub status_callback: Option<String>,
}

pub struct TwilioChannel {
    http: Http,
    s: TwilioSettings,
}

impl TwilioChannel {
    pub fn new(http: Http, s: TwilioSettings) -> TwilioChannel {
        TwilioChannel { http, s }
    }
}

#[async_trait::async_trait]
impl Channel for TwilioChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }
    fn provider(&self) -> &'static str {
        "twilio"
    }
    async fn send(&self, m: &Outgoing, _now: DateTime<Utc>) -> Result<Accepted, SendError> {
        let Address::Phone(to) = &m.to else { return Err(SendError::Failed("not a phone number".into())) };
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.s.api_base.trim_end_matches('/'),
            self.s.account_sid
        );
        let mut form: Vec<(&str, &str)> = vec![("To", to), ("Body", &m.content.sms)];
        if let Some(ms) = &self.s.messaging_service_sid {
            form.push(("MessagingServiceSid", ms));
        } else if let Some(from) = &self.s.from {
            form.push(("From", from));
        }
        if let Some(cb) = &self.s.status_callback {
            form.push(("StatusCallback", cb));
        }
        let auth = [("authorization", basic(&self.s.account_sid, &self.s.auth_token))];
        let resp = self.http.post_form(&url, &auth, &form).await.map_err(|e| http_error(&e))?;
        let status = resp.status;
        let body = resp.json();
        if (200..300).contains(&status) {
            let sid = body.get("sid").and_then(Value::as_str).map(str::to_owned);
            return Ok(Accepted { provider_id: sid });
        }
        let code = body.get("code").and_then(Value::as_i64).map(|c| format!("code {c}")).unwrap_or_default();
        // 21211 invalid 'To', 21610 unsubscribed recipient, 21614 not a mobile number.
        match body.get("code").and_then(Value::as_i64) {
            Some(21211 | 21610 | 21614) => Err(SendError::Bounced(format!("HTTP {status} {code}"))),
            _ => Err(status_error(status, &code)),
        }
    }
}

// ---------------------------------------------------------------- Web Push

pub struct WebPushChannel {
    http: Http,
    key: VapidKey,
    /// VAPID `sub`: `mailto:` or `https:` contact of the operator.
    subject: String,
    /// Accept `http://` endpoints (tests against a loopback push service only).
    allow_http: bool,
}

impl WebPushChannel {
    pub fn new(http: Http, key: VapidKey, subject: String, allow_http: bool) -> WebPushChannel {
        WebPushChannel { http, key, subject, allow_http }
    }
}

/// Whether a subscription endpoint may be used: https (or http when allowed), with a host.
pub fn endpoint_allowed(endpoint: &str, allow_http: bool) -> bool {
    let ok_scheme = endpoint.starts_with("https://") || (allow_http && endpoint.starts_with("http://"));
    ok_scheme && webpush::origin(endpoint).is_some() && endpoint.len() <= 2048
}

#[async_trait::async_trait]
impl Channel for WebPushChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WebPush
    }
    fn provider(&self) -> &'static str {
        "webpush"
    }
    async fn send(&self, m: &Outgoing, now: DateTime<Utc>) -> Result<Accepted, SendError> {
        let Address::WebPush { endpoint, p256dh, auth } = &m.to else {
            return Err(SendError::Failed("not a push subscription".into()));
        };
        if !endpoint_allowed(endpoint, self.allow_http) {
            return Err(SendError::Gone("endpoint not allowed".into()));
        }
        let audience = webpush::origin(endpoint).ok_or_else(|| SendError::Gone("bad endpoint".into()))?;
        let b64 = |s: &str| data_encoding::BASE64URL_NOPAD.decode(s.trim_end_matches('=').as_bytes());
        let (Ok(p256dh), Ok(auth)) = (b64(p256dh), b64(auth)) else {
            return Err(SendError::Gone("subscription keys are not base64url".into()));
        };
        let payload = json!({
            "id": m.id,
            "category": m.category.as_str(),
            "title": m.content.subject,
            "body": m.content.sms,
        });
        let body = webpush::encrypt(payload.to_string().as_bytes(), &p256dh, &auth)
            .map_err(|e| SendError::Gone(e.to_string()))?;
        let exp = now.timestamp() + 12 * 3600;
        let headers = [
            ("ttl", m.ttl_secs.to_string()),
            ("urgency", m.category.urgency().to_owned()),
            ("topic", m.topic()),
            ("content-encoding", "aes128gcm".to_owned()),
            ("content-type", "application/octet-stream".to_owned()),
            ("authorization", self.key.authorization(&audience, &self.subject, exp)),
        ];
        let resp = self.http.send(http::Method::POST, endpoint, &headers, body).await.map_err(|e| http_error(&e))?;
        let status = resp.status;
        let location = resp.header("location");
        match status {
            200..=299 => Ok(Accepted { provider_id: location }),
            404 | 410 => Err(SendError::Gone(format!("HTTP {status}"))),
            _ => Err(status_error(status, "")),
        }
    }
}

// ---------------------------------------------------------------- FCM HTTP v1

pub struct FcmChannel {
    http: Http,
    signer: fcm::Signer,
    /// `https://fcm.googleapis.com`
    api_base: String,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl FcmChannel {
    pub fn new(http: Http, signer: fcm::Signer, api_base: String) -> FcmChannel {
        FcmChannel { http, signer, api_base, token: tokio::sync::Mutex::new(None) }
    }

    async fn access_token(&self, now: DateTime<Utc>) -> Result<String, SendError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let assertion = self.signer.assertion(now.timestamp()).map_err(SendError::Failed)?;
        let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())];
        let resp = self.http.post_form(&self.signer.account.token_uri, &[], &form).await.map_err(|e| http_error(&e))?;
        let status = resp.status;
        if !(200..300).contains(&status) {
            return Err(status_error(status, "from the token endpoint"));
        }
        let body = resp.json();
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| SendError::Retry("no access_token".into()))?
            .to_owned();
        let secs = body.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        *cached = Some((token.clone(), Instant::now() + Duration::from_secs(secs.saturating_sub(60))));
        Ok(token)
    }
}

#[async_trait::async_trait]
impl Channel for FcmChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Fcm
    }
    fn provider(&self) -> &'static str {
        "fcm"
    }
    async fn send(&self, m: &Outgoing, now: DateTime<Utc>) -> Result<Accepted, SendError> {
        let Address::Fcm { token } = &m.to else { return Err(SendError::Failed("not an FCM token".into())) };
        let access = self.access_token(now).await?;
        let high = m.category.is_critical();
        let message = json!({"message": {
            "token": token,
            "notification": {"title": m.content.subject, "body": m.content.sms},
            "data": {"notification_id": m.id, "category": m.category.as_str()},
            "android": {"ttl": format!("{}s", m.ttl_secs), "priority": if high { "high" } else { "normal" },
                        "collapse_key": m.topic()},
            "apns": {"headers": {"apns-priority": if high { "10" } else { "5" }, "apns-collapse-id": m.topic()}},
        }});
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.api_base.trim_end_matches('/'),
            self.signer.account.project_id
        );
        let auth = [("authorization", format!("Bearer {access}"))];
        let resp = self.http.post_json(&url, &auth, &message).await.map_err(|e| http_error(&e))?;
        let status = resp.status;
        let body = resp.json();
        if (200..300).contains(&status) {
            return Ok(Accepted { provider_id: body.get("name").and_then(Value::as_str).map(str::to_owned) });
        }
        let code = body
            .pointer("/error/details/0/errorCode")
            .or_else(|| body.pointer("/error/status"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if status == 401 {
            *self.token.lock().await = None;
        }
        match (status, code.as_str()) {
            (404, _) | (_, "UNREGISTERED") => Err(SendError::Gone(format!("HTTP {status} {code}"))),
            _ => Err(status_error(status, &code)),
        }
    }
}

// ---------------------------------------------------------------- local outbox and memory

/// The offline default for e-mail and SMS: each message is a file under `dir/<channel>/`
/// (`<id>.eml` or `<id>.txt`, mode 0600), written atomically and named by the outbox id, so a
/// repeated attempt rewrites the same file. For development and air-gapped installs; the files
/// hold the message text (login codes included), so the directory is as private as the database.
pub struct FileChannel {
    kind: ChannelKind,
    dir: PathBuf,
}

impl FileChannel {
    pub fn new(kind: ChannelKind, dir: PathBuf) -> FileChannel {
        FileChannel { kind, dir }
    }
}

fn address_text(a: &Address) -> String {
    match a {
        Address::Email(s) | Address::Phone(s) => s.clone(),
        Address::WebPush { endpoint, .. } => endpoint.clone(),
        Address::Fcm { token } => token.clone(),
    }
}

#[async_trait::async_trait]
impl Channel for FileChannel {
    fn kind(&self) -> ChannelKind {
        self.kind
    }
    fn provider(&self) -> &'static str {
        "file"
    }
    async fn send(&self, m: &Outgoing, now: DateTime<Utc>) -> Result<Accepted, SendError> {
        let dir = self.dir.join(self.kind.as_str());
        let io = |_| SendError::Retry("cannot write the local outbox".into());
        // Messages name people: the outbox directories are private to this account (0700).
        let mut builder = tokio::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(&dir).await.map_err(io)?;
        let to = address_text(&m.to);
        let (name, text) = match self.kind {
            ChannelKind::Email => (
                format!("{}.eml", m.topic()),
                format!(
                    "Date: {}\r\nTo: {to}\r\nSubject: {}\r\nMessage-ID: <{}@hearth.local>\r\n\r\n{}\r\n",
                    now.to_rfc2822(),
                    m.content.subject,
                    m.id,
                    m.content.text
                ),
            ),
            _ => (format!("{}.txt", m.topic()), format!("To: {to}\n\n{}\n", m.content.sms)),
        };
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut f = options.open(&tmp).await.map_err(io)?;
        tokio::io::AsyncWriteExt::write_all(&mut f, text.as_bytes()).await.map_err(io)?;
        f.sync_all().await.map_err(io)?;
        tokio::fs::rename(&tmp, dir.join(&name)).await.map_err(io)?;
        Ok(Accepted { provider_id: Some(name) })
    }
}

/// One message a [`MemoryChannel`] kept.
#[derive(Debug, Clone)]
pub struct MemoryMessage {
    pub id: String,
    pub channel: ChannelKind,
    pub category: Category,
    /// The e-mail address, phone number, push endpoint or FCM token.
    pub to: String,
    pub subject: String,
    pub text: String,
    pub sms: String,
}

/// Keeps every message in memory, in order (embedding programs and tests).
#[derive(Default)]
pub struct MemoryChannel {
    messages: Mutex<Vec<MemoryMessage>>,
}

impl MemoryChannel {
    pub fn messages(&self) -> Vec<MemoryMessage> {
        match self.messages.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The six-digit code in the newest message to `to`.
    pub fn last_code(&self, to: &str) -> Option<String> {
        let messages = self.messages();
        let m = messages.iter().rev().find(|m| m.to == to)?;
        let digits: Vec<char> = m.text.chars().collect();
        digits
            .windows(6)
            .enumerate()
            .find(|(i, w)| {
                w.iter().all(char::is_ascii_digit)
                    && !digits.get(i + 6).is_some_and(char::is_ascii_digit)
                    && !(*i > 0 && digits.get(i - 1).is_some_and(char::is_ascii_digit))
            })
            .map(|(_, w)| w.iter().collect())
    }

    /// A channel of `kind` that records into this memory.
    pub fn as_channel(self: &Arc<Self>, kind: ChannelKind) -> Arc<dyn Channel> {
        Arc::new(MemoryKind { kind, memory: Arc::clone(self) })
    }
}

struct MemoryKind {
    kind: ChannelKind,
    memory: Arc<MemoryChannel>,
}

#[async_trait::async_trait]
impl Channel for MemoryKind {
    fn kind(&self) -> ChannelKind {
        self.kind
    }
    fn provider(&self) -> &'static str {
        "memory"
    }
    async fn send(&self, m: &Outgoing, _now: DateTime<Utc>) -> Result<Accepted, SendError> {
        let message = MemoryMessage {
            id: m.id.clone(),
            channel: self.kind,
            category: m.category,
            to: address_text(&m.to),
            subject: m.content.subject.clone(),
            text: m.content.text.clone(),
            sms: m.content.sms.clone(),
        };
        match self.memory.messages.lock() {
            Ok(mut v) => v.push(message),
            Err(p) => p.into_inner().push(message),
        }
        Ok(Accepted { provider_id: Some(format!("memory-{}", m.id)) })
    }
}

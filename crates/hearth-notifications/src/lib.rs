//! Notifications: the outbox API (enqueue inside the caller's transaction, cancel by key or key
//! prefix), the channels in force, preferences and quiet hours, the worker (`worker.rs`), the
//! routes (`routes.rs`) and staff messages (`send.rs`).
//!
//! A notification is addressed to an account and a category; [`enqueue`] turns it into one
//! outbox row per channel the account's preferences enable (one per push subscription), in the
//! transaction it is given, so it commits with the change that causes it. [`enqueue_for_patient`]
//! addresses a patient instead: one fan-out row that the worker, when it is due, expands into
//! the rows of the accounts the patient and their caregivers have *then* (someone who signs up
//! after an appointment was booked is still reminded). [`enqueue_direct`]
//! sends to a fixed address on one channel (login codes: the user asked for that address).
//! Preferences are checked again at send time (a channel turned off since is skipped), quiet
//! hours are applied at send time in the user's time zone (critical categories go through).

pub mod config;
pub mod routes;
pub mod send;
pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use hearth_notify::channel::{
    FcmChannel, FileChannel, SmtpChannel, SmtpSecurity, SmtpSettings, TwilioChannel, TwilioSettings, WebPushChannel,
};
use hearth_notify::webpush::VapidKey;
use hearth_notify::{Category, Channel, ChannelKind, Lang, Templates};
use hearth_store::StoreError;
use hearth_store_sql::notify::{self as sql, NewOutbox, SettingsRow};
use hearth_store_sql::{Db, identity};
use serde_json::{Map, Value};

use hearth_workflow::{Ctx, Mount, Workflow};

use crate::config::NotifyConfig;

/// A notification to an account, fanned out over the channels its preferences enable.
#[derive(Debug, Clone)]
pub struct Notice {
    /// The idempotency key: enqueueing the same key again adds nothing; `cancel` takes it.
    pub key: String,
    pub account_id: String,
    pub category: Category,
    /// One of [`hearth_notify::templates::TEMPLATES`].
    pub template: String,
    pub args: Map<String, Value>,
    /// Not before this instant (reminders); `None`: now.
    pub not_before: Option<DateTime<Utc>>,
}

/// A notification to a patient: one outbox row now, resolved to accounts when it is due.
#[derive(Debug, Clone)]
pub struct PatientNotice {
    /// The idempotency key of the fan-out row (at most 250 characters); its expansions are keyed
    /// `<key>#<account>`, and [`cancel`] of the key cancels both.
    pub key: String,
    pub patient_id: String,
    pub category: Category,
    /// One of [`hearth_notify::templates::TEMPLATES`].
    pub template: String,
    pub args: Map<String, Value>,
    /// Not before this instant (reminders, scheduled messages); `None`: now.
    pub not_before: Option<DateTime<Utc>>,
    /// Only these channels (each account's preferences still apply); `None`: every channel.
    pub channels: Option<Vec<ChannelKind>>,
    /// Also the caregiver accounts linked to the patient at send time.
    pub include_caregivers: bool,
}

/// What a fan-out row carries in its `args` column: the template's arguments and the choices
/// applied when it is expanded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FanOut {
    args: Map<String, Value>,
    channels: Option<Vec<String>>,
    caregivers: bool,
}

/// A message to a fixed address on one channel.
#[derive(Debug, Clone)]
pub struct DirectNotice {
    pub key: String,
    pub account_id: Option<String>,
    pub channel: ChannelKind,
    /// An e-mail address (lower-cased) or an E.164 phone number.
    pub to: String,
    pub category: Category,
    pub template: String,
    pub args: Map<String, Value>,
    /// The language to render in, when the cause knows it (a clinic's invitation: the language
    /// staff chose or the patient's preferred one). `None`: the account's language, else the
    /// server's default.
    pub language: Option<Lang>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("unknown template `{0}`")]
    Template(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a category × channel is when the user has not chosen: everything on, except SMS for
/// results and announcements (SMS costs money and results belong in the app), and SMS and
/// e-mail for alarms (an alarm rings in the app and as a push; the user may turn SMS on).
pub fn default_enabled(category: Category, channel: ChannelKind) -> bool {
    let off = match channel {
        ChannelKind::Sms => matches!(category, Category::Results | Category::Announcement | Category::Alarm),
        ChannelKind::Email => category == Category::Alarm,
        _ => false,
    };
    !off
}

/// A user's notification settings with defaults applied.
#[derive(Debug, Clone)]
pub struct UserSettings {
    pub time_zone: Tz,
    pub language: Lang,
    pub quiet: Option<hearth_notify::quiet::QuietHours>,
}

/// The channels, templates and wake-ups of this process.
pub struct Notifier {
    pub templates: Templates,
    channels: RwLock<HashMap<ChannelKind, Arc<dyn Channel>>>,
    /// The VAPID public key browsers subscribe with.
    pub vapid_public_key: String,
    /// Wakes this process's worker after a commit that enqueued something.
    pub wakeup: tokio::sync::Notify,
    /// In-app deliveries of this process (`account id`, `notification id`), for WebSockets.
    pub live: tokio::sync::broadcast::Sender<(String, String)>,
    default_tz: Tz,
    default_lang: Lang,
    /// The `[notify]` settings it was built from (the worker's timings, attempts).
    pub config: NotifyConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifySetupError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn outbox_dir(config: &NotifyConfig, data_dir: &Path) -> PathBuf {
    config.outbox_dir.clone().unwrap_or_else(|| data_dir.join("outbox"))
}

impl Notifier {
    /// Builds the channels from configuration; loads (or, first, creates) the VAPID key. The
    /// local file outbox is under `data_dir` unless configured; `base_url` is the Web Push
    /// contact when none is configured.
    pub async fn start(
        config: &NotifyConfig,
        data_dir: &Path,
        base_url: Option<&str>,
        db: &dyn Db,
    ) -> Result<Notifier, NotifySetupError> {
        let n = config;
        let bad = NotifySetupError::Config;
        let templates = Templates::load().map_err(|e| bad(e.to_string()))?;
        let http = hearth_notify::http::Http::new(Duration::from_millis(n.send_timeout_ms)).map_err(bad)?;
        let mut channels: HashMap<ChannelKind, Arc<dyn Channel>> = HashMap::new();
        let dir = outbox_dir(config, data_dir);
        match &n.email {
            Some(e) => {
                let security = match e.security.as_str() {
                    "tls" => SmtpSecurity::Tls,
                    "none" => SmtpSecurity::None,
                    _ => SmtpSecurity::StartTls,
                };
                let settings = SmtpSettings {
                    host: e.host.clone(),
                    port: e.port,
                    security,
                    username: e.username.clone(),
                    password: e.password.as_ref().map(|p| p.expose().clone()),
                    from: e.from.clone(),
                    timeout: Duration::from_millis(n.send_timeout_ms),
                };
                channels.insert(ChannelKind::Email, Arc::new(SmtpChannel::new(&settings).map_err(bad)?));
            }
            None => {
                channels.insert(ChannelKind::Email, Arc::new(FileChannel::new(ChannelKind::Email, dir.clone())));
            }
        }
        match &n.sms {
            Some(s) => {
                let settings = TwilioSettings {
                    api_base: s.api_base.clone(),
                    account_sid: s.account_sid.clone(),
                    auth_token: s.auth_token.expose().clone(),
                    messaging_service_sid: s.messaging_service_sid.clone(),
                    from: s.from.clone(),
                    status_callback: s.status_callback_url.clone(),
                };
                channels.insert(ChannelKind::Sms, Arc::new(TwilioChannel::new(http.clone(), settings)));
            }
            None => {
                channels.insert(ChannelKind::Sms, Arc::new(FileChannel::new(ChannelKind::Sms, dir)));
            }
        }
        let fresh = VapidKey::generate().map_err(|e| bad(e.to_string()))?;
        let stored = identity::setting_init(db, "vapid_private_key", &fresh.private_b64()).await?;
        let vapid = VapidKey::from_private_b64(&stored).map_err(|e| bad(format!("stored VAPID key: {e}")))?;
        let vapid_public_key = vapid.public_b64();
        let subject = n
            .webpush
            .subject
            .clone()
            .or_else(|| base_url.map(str::to_owned))
            .unwrap_or_else(|| "mailto:postmaster@localhost".into());
        channels.insert(
            ChannelKind::WebPush,
            Arc::new(WebPushChannel::new(http.clone(), vapid, subject, n.allow_insecure_push_endpoints)),
        );
        if let Some(f) = &n.fcm {
            let json = std::fs::read_to_string(&f.service_account_file)
                .map_err(|e| bad(format!("{}: {e}", f.service_account_file.display())))?;
            let signer = hearth_notify::fcm::Signer::from_json(&json).map_err(|e| bad(e.to_string()))?;
            channels.insert(ChannelKind::Fcm, Arc::new(FcmChannel::new(http, signer, f.api_base.clone())));
        }
        let (live, _) = tokio::sync::broadcast::channel(256);
        Ok(Notifier {
            templates,
            channels: RwLock::new(channels),
            vapid_public_key,
            wakeup: tokio::sync::Notify::new(),
            live,
            default_tz: n.default_time_zone.parse().unwrap_or(chrono_tz::UTC),
            default_lang: Lang::parse(&n.default_language),
            config: config.clone(),
        })
    }

    /// The channel of `kind` in force (`None`: not configured; in-app is not a channel).
    pub fn channel(&self, kind: ChannelKind) -> Option<Arc<dyn Channel>> {
        match self.channels.read() {
            Ok(c) => c.get(&kind).cloned(),
            Err(p) => p.into_inner().get(&kind).cloned(),
        }
    }

    /// Turns a channel off (an embedding program without, say, an SMS gateway, or a test): what
    /// needs it then answers that it is unavailable instead of queueing messages that cannot leave.
    pub fn remove_channel(&self, kind: ChannelKind) {
        match self.channels.write() {
            Ok(mut c) => c.remove(&kind),
            Err(p) => p.into_inner().remove(&kind),
        };
    }

    /// Replaces a channel (an embedding program's gateway, or a test's).
    pub fn set_channel(&self, kind: ChannelKind, channel: Arc<dyn Channel>) {
        match self.channels.write() {
            Ok(mut c) => c.insert(kind, channel),
            Err(p) => p.into_inner().insert(kind, channel),
        };
    }

    /// Whether messages of `kind` can leave (in-app always; others when a channel is set, which
    /// for e-mail and SMS includes the local file outbox when no provider is configured).
    pub fn available(&self, kind: ChannelKind) -> bool {
        kind == ChannelKind::InApp || self.channel(kind).is_some()
    }

    /// Call after the transaction that enqueued commits.
    pub fn wake(&self) {
        self.wakeup.notify_one();
    }

    /// A user's settings with the defaults for what is not set.
    pub async fn settings(&self, db: &dyn Db, account_id: &str) -> Result<UserSettings, StoreError> {
        let row = sql::settings(db, account_id).await?;
        Ok(self.with_defaults(row.as_ref()))
    }

    pub fn with_defaults(&self, row: Option<&SettingsRow>) -> UserSettings {
        let time_zone = row.and_then(|r| r.time_zone.parse().ok()).unwrap_or(self.default_tz);
        let language = row.map_or(self.default_lang, |r| Lang::parse(&r.language));
        let quiet = row.and_then(|r| match (r.quiet_start, r.quiet_end) {
            (Some(s), Some(e)) => Some(hearth_notify::quiet::QuietHours {
                start: u16::try_from(s).unwrap_or(0),
                end: u16::try_from(e).unwrap_or(0),
            }),
            _ => None,
        });
        UserSettings { time_zone, language, quiet }
    }
}

/// Sets `account`'s time zone (the zone its quiet hours, reminders and alarms follow), keeping
/// its other settings; on `db` (give it the caller's transaction). The profile sets it.
pub async fn set_time_zone(notifier: &Notifier, db: &dyn Db, account_id: &str, tz: Tz) -> Result<(), StoreError> {
    let row = match sql::settings(db, account_id).await? {
        Some(mut r) => {
            r.time_zone = tz.name().to_owned();
            r
        }
        None => SettingsRow {
            time_zone: tz.name().to_owned(),
            language: notifier.default_lang.as_str().to_owned(),
            quiet_start: None,
            quiet_end: None,
        },
    };
    sql::set_settings(db, account_id, &row).await
}

/// Whether `account` wants `category` on `channel` (stored choice, else the default).
pub async fn enabled(
    db: &dyn Db,
    account_id: &str,
    category: Category,
    channel: ChannelKind,
) -> Result<bool, StoreError> {
    let stored = sql::preferences(db, account_id).await?;
    Ok(stored
        .iter()
        .find(|(c, ch, _)| c == category.as_str() && ch == channel.as_str())
        .map_or_else(|| default_enabled(category, channel), |(_, _, on)| *on))
}

fn check_template(name: &str) -> Result<(), EnqueueError> {
    if hearth_notify::templates::TEMPLATES.contains(&name) {
        Ok(())
    } else {
        Err(EnqueueError::Template(name.to_owned()))
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Enqueues `notice` on `db` (give it the caller's transaction, a `TxDb`): one row per enabled,
/// available channel with an address. Answers how many rows were new. Wake the worker after
/// the commit ([`Notifier::wake`]).
pub async fn enqueue(
    notifier: &Notifier,
    db: &dyn Db,
    notice: &Notice,
    now: DateTime<Utc>,
) -> Result<usize, EnqueueError> {
    enqueue_on(notifier, db, notice, None, now).await
}

/// [`enqueue`] on `only` these channels (`None`: all).
pub(crate) async fn enqueue_on(
    notifier: &Notifier,
    db: &dyn Db,
    notice: &Notice,
    only: Option<&[ChannelKind]>,
    now: DateTime<Utc>,
) -> Result<usize, EnqueueError> {
    check_template(&notice.template)?;
    if notice.key.is_empty() || notice.key.len() > 300 {
        return Err(EnqueueError::Invalid("the idempotency key must have 1 to 300 characters".into()));
    }
    let Some(account) = identity::account_by_id(db, &notice.account_id).await? else {
        return Err(EnqueueError::Invalid("no such account".into()));
    };
    let stored = sql::preferences(db, &account.id).await?;
    let on = |ch: ChannelKind| {
        stored
            .iter()
            .find(|(c, k, _)| c == notice.category.as_str() && k == ch.as_str())
            .map_or_else(|| default_enabled(notice.category, ch), |(_, _, e)| *e)
    };
    let args = Value::Object(notice.args.clone()).to_string();
    let not_before = notice.not_before.unwrap_or(now).timestamp_millis();
    let mut rows: Vec<(ChannelKind, Option<String>)> = Vec::new();
    for ch in ChannelKind::ALL {
        if !on(ch) || !notifier.available(ch) || only.is_some_and(|o| !o.contains(&ch)) {
            continue;
        }
        match ch {
            ChannelKind::Email if account.email.is_none() => {}
            ChannelKind::Sms if account.phone.is_none() => {}
            ChannelKind::WebPush | ChannelKind::Fcm => {
                let kind = if ch == ChannelKind::WebPush { "webpush" } else { "fcm" };
                for s in sql::subscriptions_of(db, &account.id).await?.into_iter().filter(|s| s.kind == kind) {
                    rows.push((ch, Some(s.id)));
                }
            }
            _ => rows.push((ch, None)),
        }
    }
    let mut added = 0;
    for (ch, destination) in rows {
        let row = NewOutbox {
            id: new_id(),
            idem_key: notice.key.clone(),
            account_id: Some(account.id.clone()),
            channel: ch.as_str().to_owned(),
            destination,
            category: notice.category.as_str().to_owned(),
            template: notice.template.clone(),
            args: args.clone(),
            max_attempts: i64::from(notifier.config.max_attempts),
            not_before,
            now: now.timestamp_millis(),
            language: None,
        };
        if sql::enqueue(db, &row).await? {
            added += 1;
        }
    }
    Ok(added)
}

/// Enqueues a notice to a patient as one fan-out row on `db` (give it the caller's transaction);
/// true if the row is new (false: this key was enqueued before). The accounts are found when it
/// is due (see the worker). Wake the worker after the commit.
pub async fn enqueue_for_patient(
    notifier: &Notifier,
    db: &dyn Db,
    notice: &PatientNotice,
    now: DateTime<Utc>,
) -> Result<bool, EnqueueError> {
    check_template(&notice.template)?;
    if notice.key.is_empty() || notice.key.len() > 250 {
        return Err(EnqueueError::Invalid("the idempotency key must have 1 to 250 characters".into()));
    }
    if !hearth_workflow::fhir::valid_id(&notice.patient_id) {
        return Err(EnqueueError::Invalid("not a Patient id".into()));
    }
    let fan = FanOut {
        args: notice.args.clone(),
        channels: notice.channels.as_ref().map(|c| c.iter().map(|k| k.as_str().to_owned()).collect()),
        caregivers: notice.include_caregivers,
    };
    let args = serde_json::to_string(&fan).map_err(|e| EnqueueError::Invalid(e.to_string()))?;
    let row = NewOutbox {
        id: new_id(),
        idem_key: notice.key.clone(),
        account_id: None,
        channel: sql::FANOUT_CHANNEL.to_owned(),
        destination: Some(format!("Patient/{}", notice.patient_id)),
        category: notice.category.as_str().to_owned(),
        template: notice.template.clone(),
        args,
        max_attempts: i64::from(notifier.config.max_attempts),
        not_before: notice.not_before.unwrap_or(now).timestamp_millis(),
        now: now.timestamp_millis(),
        language: None,
    };
    Ok(sql::enqueue(db, &row).await?)
}

/// How many accounts a fan-out row reached and how many rows it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expanded {
    pub accounts: usize,
    pub rows: usize,
}

/// Expands a fan-out row on `db` (the worker's transaction): the patient's accounts and, if
/// asked, the caregivers linked to the patient, as they are now, each through [`enqueue_on`]
/// (their preferences, the row's channel subset) under `<key>#<account>`, due now.
pub(crate) async fn expand(
    notifier: &Notifier,
    db: &dyn Db,
    row: &sql::OutboxRow,
    now: DateTime<Utc>,
) -> Result<Expanded, EnqueueError> {
    let bad = |m: &str| EnqueueError::Invalid(m.to_owned());
    let patient =
        row.destination.as_deref().and_then(|d| d.strip_prefix("Patient/")).ok_or_else(|| bad("not a patient row"))?;
    let category = Category::parse(&row.category).ok_or_else(|| bad("unknown category"))?;
    let fan: FanOut = serde_json::from_str(&row.args).map_err(|_| bad("the fan-out arguments do not parse"))?;
    let only: Option<Vec<ChannelKind>> = fan.channels.map(|c| c.iter().filter_map(|k| ChannelKind::parse(k)).collect());
    let mut accounts = identity::accounts_of(db, &format!("Patient/{patient}")).await?;
    if fan.caregivers {
        accounts.extend(identity::caregivers_of(db, patient).await?);
    }
    let mut seen = std::collections::BTreeSet::new();
    accounts.retain(|a| seen.insert(a.clone()));
    let mut rows = 0;
    for account in &accounts {
        let notice = Notice {
            key: format!("{}{}{account}", row.idem_key, sql::EXPANSION_SEPARATOR),
            account_id: account.clone(),
            category,
            template: row.template.clone(),
            args: fan.args.clone(),
            not_before: None,
        };
        rows += enqueue_on(notifier, db, &notice, only.as_deref(), now).await?;
    }
    Ok(Expanded { accounts: accounts.len(), rows })
}

/// Enqueues a message to a fixed e-mail address or phone number (one row).
pub async fn enqueue_direct(
    notifier: &Notifier,
    db: &dyn Db,
    n: &DirectNotice,
    now: DateTime<Utc>,
) -> Result<bool, EnqueueError> {
    check_template(&n.template)?;
    if !matches!(n.channel, ChannelKind::Email | ChannelKind::Sms) {
        return Err(EnqueueError::Invalid("a direct message goes by e-mail or SMS".into()));
    }
    let row = NewOutbox {
        id: new_id(),
        idem_key: n.key.clone(),
        account_id: n.account_id.clone(),
        channel: n.channel.as_str().to_owned(),
        destination: Some(n.to.clone()),
        category: n.category.as_str().to_owned(),
        template: n.template.clone(),
        args: Value::Object(n.args.clone()).to_string(),
        max_attempts: i64::from(notifier.config.max_attempts),
        not_before: now.timestamp_millis(),
        now: now.timestamp_millis(),
        language: n.language.map(|l| l.as_str().to_owned()),
    };
    Ok(sql::enqueue(db, &row).await?)
}

/// Cancels what is still queued under `key`, including a patient notice's fan-out row and its
/// queued expansions.
pub async fn cancel(db: &dyn Db, key: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
    sql::cancel(db, key, now.timestamp_millis()).await
}

/// Cancels what is still queued under every key that starts with `prefix` (e.g. all reminders
/// of a cancelled appointment, whatever offsets were in force when they were written).
pub async fn cancel_prefix(db: &dyn Db, prefix: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
    sql::cancel_prefix(db, prefix, now.timestamp_millis()).await
}

/// The outbox backlog for monitoring: rows due and not yet taken by a worker, and how long the
/// oldest of them has waited (zero when none).
pub async fn backlog(db: &dyn Db, now: DateTime<Utc>) -> Result<(u64, std::time::Duration), StoreError> {
    let now = now.timestamp_millis();
    let (count, oldest) = sql::backlog(db, now).await?;
    let waited = oldest.map(|t| now.saturating_sub(t).max(0)).unwrap_or(0);
    Ok((u64::try_from(count).unwrap_or(0), std::time::Duration::from_millis(u64::try_from(waited).unwrap_or(0))))
}

/// Enqueues in a transaction of its own and wakes the worker (a cause with no transaction).
pub async fn send(app: &Notifications, notice: &Notice) -> Result<usize, EnqueueError> {
    let tx = sql::TxDb::begin(&*app.db).await?;
    let n = enqueue(&app.notifier, &tx, notice, app.clock.now()).await?;
    tx.commit().await?;
    app.notifier.wake();
    Ok(n)
}

/// The notifications workflow's state: the shared context and this process's [`Notifier`].
pub struct Notifications {
    ctx: Arc<Ctx>,
    pub notifier: Arc<Notifier>,
}

impl Notifications {
    pub fn new(ctx: Arc<Ctx>, notifier: Arc<Notifier>) -> Notifications {
        Notifications { ctx, notifier }
    }
}

impl std::ops::Deref for Notifications {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Notifications {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

impl Workflow for Notifications {
    /// Devices, the inbox, preferences and delivery callbacks: no one's clinical record, so only
    /// refusals are audit events. Staff messages (`send.rs`) read patients: every request is one.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: send::router().with_state(Arc::clone(&self)),
            refusals_audited: routes::router().with_state(self),
            fhir_operations: axum::Router::new(),
            openapi: {
                let mut api = <routes::Api as utoipa::OpenApi>::openapi();
                api.merge(<send::Api as utoipa::OpenApi>::openapi());
                api
            },
        }
    }
}

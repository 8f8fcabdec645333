//! The outbox worker: claims due rows (a lease per row), sends each through its channel and
//! records the outcome. Runs inside `hearth serve` (unless `notify.worker = false`) and as
//! `hearth worker`; any number of workers may share one database.
//!
//! Delivery is at least once towards the provider and exactly once in our records: a worker that
//! dies after the provider accepted but before it recorded `sent` leaves the row `sending`; after
//! the lease it is claimed and sent again with the same outbox id, which every channel passes as
//! the provider-side idempotency token (e-mail `Message-ID`, Web Push `Topic`, FCM collapse key;
//! the in-app insert and the file outbox are idempotent by id). A late result of the dead attempt
//! is refused (`finish` checks owner and attempt), so one row ends in one final state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use hearth_notify::{Address, Category, ChannelKind, Lang, Outgoing, SendError};
use hearth_store_sql::identity;
use hearth_store_sql::notify::{self as sql, InboxRow, OutboxRow, Outcome};
use serde_json::{Map, Value};

use crate::Notifications;

/// Rows one claim takes and sends at once: a process killed mid-claim may have sent up to this many
/// messages it had no time to record, which go out again after the lease (at least once).
pub const BATCH: i64 = 16;

/// A worker id for leases: unique per worker task.
pub fn worker_id() -> String {
    format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

/// Runs a worker until the task is dropped.
pub async fn run(app: Arc<Notifications>, id: String) {
    let poll = Duration::from_millis(app.notifier.config.poll_interval_ms);
    tracing::info!(worker = %id, "notification worker started");
    loop {
        match run_once(&app, &id).await {
            Ok(0) => {
                tokio::select! {
                    () = app.notifier.wakeup.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(worker = %id, error = %e, "notification worker: claiming failed");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

/// Claims one batch and processes it (concurrently); answers how many rows it claimed.
pub async fn run_once(app: &Arc<Notifications>, id: &str) -> Result<usize, hearth_store::StoreError> {
    let now = app.clock.now();
    let lease = TimeDelta::seconds(i64::try_from(app.notifier.config.lease_secs).unwrap_or(60));
    // The claim and its attempt rows commit together (on PostgreSQL the claimed rows stay locked
    // against other claimers until then).
    let tx = sql::TxDb::begin(&*app.db).await?;
    let rows = sql::claim(&tx, id, now.timestamp_millis(), (now + lease).timestamp_millis(), BATCH).await?;
    tx.commit().await?;
    let n = rows.len();
    let mut set = tokio::task::JoinSet::new();
    for row in rows {
        let app = Arc::clone(app);
        let id = id.to_owned();
        set.spawn(async move { process(&app, &id, row).await });
    }
    while set.join_next().await.is_some() {}
    Ok(n)
}

fn backoff(app: &Notifications, attempt: i64) -> TimeDelta {
    let base = app.notifier.config.retry_base_secs.saturating_mul(1000);
    let cap = app.notifier.config.retry_max_secs.saturating_mul(1000);
    let shift = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let full = base.saturating_mul(1u64 << shift).min(cap);
    // "Equal jitter": half fixed, half random, so retries of many rows spread out.
    let mut r = [0u8; 8];
    let random = if getrandom::fill(&mut r).is_ok() { u64::from_le_bytes(r) } else { 0 };
    let half = full / 2;
    let jitter = if half == 0 { 0 } else { random % (half + 1) };
    TimeDelta::milliseconds(i64::try_from(half + jitter).unwrap_or(i64::MAX / 2))
}

fn done(status: &'static str, provider: Option<&str>, provider_id: Option<String>, error: Option<String>) -> Outcome {
    Outcome::Final { status, provider: provider.map(str::to_owned), provider_id, error }
}

/// A fan-out row (a notice to a patient): its expansions and its own final state commit in one
/// transaction, which `finish_in` lets commit only while this worker still holds the row's
/// attempt and nobody cancelled it. A patient with no account (and no caregiver) yet is recorded
/// as `cancelled` with that reason: a row for nobody is not retried.
async fn fan_out(app: &Arc<Notifications>, worker: &str, row: &OutboxRow) {
    let now = app.clock.now();
    let expanded = async {
        let tx = sql::TxDb::begin(&*app.db).await.map_err(|e| e.to_string())?;
        let n = crate::expand(&app.notifier, &tx, row, now).await.map_err(|e| e.to_string())?;
        let outcome = if n.accounts == 0 {
            done("cancelled", None, None, Some("the patient has no account and no caregiver yet".into()))
        } else {
            let reached = format!("{} accounts, {} messages", n.accounts, n.rows);
            done("delivered", Some("fan-out"), Some(reached), None)
        };
        let at = app.clock.now().timestamp_millis();
        if sql::finish_in(&tx, &row.id, worker, row.attempts, &outcome, at).await.map_err(|e| e.to_string())? {
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(Some(n))
        } else {
            Ok(None)
        }
    }
    .await;
    let status = match expanded {
        Ok(Some(n)) => {
            if n.rows > 0 {
                app.notifier.wake();
            }
            if n.accounts == 0 { "cancelled" } else { "delivered" }
        }
        Ok(None) => {
            tracing::info!(notification_id = %row.id, "fan-out row cancelled or its lease lost; nothing expanded");
            return;
        }
        Err(error) => {
            let outcome = if row.attempts >= row.max_attempts {
                done("failed", None, None, Some(format!("gave up after {} attempts: {error}", row.attempts)))
            } else {
                Outcome::Retry { not_before: (now + backoff(app, row.attempts)).timestamp_millis(), error }
            };
            let at = app.clock.now().timestamp_millis();
            if let Err(e) = sql::finish(&*app.db, &row.id, worker, row.attempts, &outcome, at).await {
                tracing::error!(notification_id = %row.id, error = %e, "recording a fan-out failure failed");
            }
            if matches!(outcome, Outcome::Retry { .. }) { "retry" } else { "failed" }
        }
    };
    metrics::with_local_recorder(&*app.metrics, || {
        metrics::counter!("hearth_notifications_total", "channel" => sql::FANOUT_CHANNEL, "status" => status)
            .increment(1);
    });
    tracing::info!(notification_id = %row.id, channel = sql::FANOUT_CHANNEL, attempt = row.attempts, status, "notification fan-out");
}

async fn process(app: &Arc<Notifications>, worker: &str, row: OutboxRow) {
    if row.channel == sql::FANOUT_CHANNEL {
        return fan_out(app, worker, &row).await;
    }
    let started = Instant::now();
    let now = app.clock.now();
    let outcome = match decide(app, &row, now).await {
        Ok(o) => o,
        Err(e) => Outcome::Retry { not_before: (now + backoff(app, row.attempts)).timestamp_millis(), error: e },
    };
    let outcome = match outcome {
        Outcome::Retry { error, .. } if row.attempts >= row.max_attempts => {
            done("failed", None, None, Some(format!("gave up after {} attempts: {error}", row.attempts)))
        }
        o => o,
    };
    let (status, error) = match &outcome {
        Outcome::Final { status, error, .. } => (*status, error.clone()),
        Outcome::Retry { error, .. } => ("retry", Some(error.clone())),
        Outcome::Defer { .. } => ("deferred", None),
    };
    match sql::finish(&*app.db, &row.id, worker, row.attempts, &outcome, app.clock.now().timestamp_millis()).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(notification_id = %row.id, "notification lease lost before the result was recorded");
            return;
        }
        Err(e) => {
            tracing::error!(notification_id = %row.id, error = %e, "recording a notification result failed");
            return;
        }
    }
    let channel = row.channel.clone();
    let elapsed = started.elapsed().as_secs_f64();
    metrics::with_local_recorder(&*app.metrics, || {
        metrics::counter!("hearth_notifications_total", "channel" => channel.clone(), "status" => status).increment(1);
        metrics::histogram!("hearth_notification_send_seconds", "channel" => channel).record(elapsed);
    });
    // The provider's error text is kept with the attempt (admin view), not logged: a provider may
    // quote the address it refused, and addresses are personal data.
    tracing::info!(
        notification_id = %row.id,
        channel = %row.channel,
        attempt = row.attempts,
        status,
        failed = error.is_some(),
        "notification attempt"
    );
}

/// What to do with a claimed row. `Err` is a storage failure (retried).
async fn decide(app: &Arc<Notifications>, row: &OutboxRow, now: DateTime<Utc>) -> Result<Outcome, String> {
    let db = &*app.db;
    let (Some(category), Some(kind)) = (Category::parse(&row.category), ChannelKind::parse(&row.channel)) else {
        return Ok(done("failed", None, None, Some("unknown category or channel".into())));
    };
    if row.attempts > row.max_attempts {
        return Ok(done("failed", None, None, Some("too many attempts".into())));
    }
    let account = match &row.account_id {
        Some(id) => identity::account_by_id(db, id).await.map_err(|e| e.to_string())?,
        None => None,
    };
    let settings = match &account {
        Some(a) => app.notifier.settings(db, &a.id).await.map_err(|e| e.to_string())?,
        None => app.notifier.with_defaults(None),
    };
    if !category.passes_quiet_hours()
        && let Some(q) = settings.quiet
        && let Some(until) = hearth_notify::quiet::deferred_until(now, settings.time_zone, q)
    {
        return Ok(Outcome::Defer { not_before: until.timestamp_millis() });
    }
    // A fanned-out row follows the preference as it is now; a direct one (a login code) does not.
    if (row.destination.is_none() || matches!(kind, ChannelKind::WebPush | ChannelKind::Fcm))
        && let Some(a) = &account
        && !super::enabled(db, &a.id, category, kind).await.map_err(|e| e.to_string())?
    {
        return Ok(done("cancelled", None, None, Some("turned off in the preferences".into())));
    }
    // A patient's consent on contact by SMS or e-mail (crate::consent), as it is now; critical
    // messages (login codes the patient asked for, emergency alerts) are not held back by it.
    if !category.is_critical()
        && let Some(channel) = match kind {
            ChannelKind::Sms => Some("sms"),
            ChannelKind::Email => Some("email"),
            _ => None,
        }
        && let Some(patient) =
            account.as_ref().and_then(|a| a.fhir_user.as_deref()).and_then(|u| u.strip_prefix("Patient/"))
        && !hearth_consent::contact_allowed(app, patient, channel, now).await.map_err(|e| e.to_string())?
    {
        return Ok(done("cancelled", None, None, Some(format!("the patient refused contact by {channel}"))));
    }
    let args: Map<String, Value> = serde_json::from_str(&row.args).unwrap_or_default();
    // The row's own language (set by its cause) wins over the account's and the default.
    let language = row.language.as_deref().map_or(settings.language, Lang::parse);
    let content = match app.notifier.templates.render(&row.template, language, &args, settings.time_zone) {
        Ok(c) => c,
        Err(e) => return Ok(done("failed", None, None, Some(e.to_string()))),
    };
    let mut subscription = None;
    let to = match kind {
        ChannelKind::InApp => {
            let Some(a) = &account else { return Ok(done("failed", None, None, Some("no account".into()))) };
            let item = InboxRow {
                id: row.id.clone(),
                account_id: a.id.clone(),
                category: row.category.clone(),
                title: content.subject.clone(),
                body: content.text.clone(),
                created_at: row.created_at,
                read_at: None,
            };
            sql::inbox_insert(db, &item).await.map_err(|e| e.to_string())?;
            let _ = app.notifier.live.send((a.id.clone(), row.id.clone()));
            return Ok(done("delivered", Some("in_app"), Some(row.id.clone()), None));
        }
        ChannelKind::Email => {
            match row.destination.clone().or_else(|| account.as_ref().and_then(|a| a.email.clone())) {
                Some(e) => Address::Email(e),
                None => return Ok(done("failed", None, None, Some("no e-mail address".into()))),
            }
        }
        ChannelKind::Sms => match row.destination.clone().or_else(|| account.as_ref().and_then(|a| a.phone.clone())) {
            Some(p) => Address::Phone(p),
            None => return Ok(done("failed", None, None, Some("no phone number".into()))),
        },
        ChannelKind::WebPush | ChannelKind::Fcm => {
            let sub = match &row.destination {
                Some(id) => sql::subscription(db, id).await.map_err(|e| e.to_string())?,
                None => None,
            };
            let Some(sub) = sub else {
                return Ok(done("cancelled", None, None, Some("the subscription was removed".into())));
            };
            let address = if kind == ChannelKind::WebPush {
                Address::WebPush {
                    endpoint: sub.endpoint.clone(),
                    p256dh: sub.p256dh.clone().unwrap_or_default(),
                    auth: sub.auth.clone().unwrap_or_default(),
                }
            } else {
                Address::Fcm { token: sub.endpoint.clone() }
            };
            subscription = Some(sub.id);
            address
        }
    };
    let Some(channel) = app.notifier.channel(kind) else {
        return Ok(done("failed", None, None, Some("the channel is not configured".into())));
    };
    let provider = channel.provider();
    let ttl = if category.is_critical() { 600 } else { 86_400 };
    let message = Outgoing { id: row.id.clone(), category, to, content, ttl_secs: ttl };
    let timeout = Duration::from_millis(app.notifier.config.send_timeout_ms);
    let retry =
        |error: String| Outcome::Retry { not_before: (now + backoff(app, row.attempts)).timestamp_millis(), error };
    Ok(match tokio::time::timeout(timeout, channel.send(&message, now)).await {
        Err(_) => retry("timed out".into()),
        Ok(Ok(accepted)) => done("sent", Some(provider), accepted.provider_id, None),
        Ok(Err(SendError::Retry(e))) => retry(e),
        Ok(Err(SendError::Failed(e))) => done("failed", Some(provider), None, Some(e)),
        Ok(Err(SendError::Bounced(e))) => done("bounced", Some(provider), None, Some(e)),
        Ok(Err(SendError::Gone(e))) => {
            if let Some(id) = subscription {
                sql::subscription_delete(db, &id).await.map_err(|e| e.to_string())?;
                tracing::info!(subscription_id = %id, "push subscription gone; deleted");
            }
            done("failed", Some(provider), None, Some(format!("subscription gone ({e}); deleted")))
        }
    })
}

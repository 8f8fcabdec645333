//! Delivery: each alarm's rings are written to the notification outbox ahead of time, one key
//! per occurrence, so they leave when due whatever worker is up then, and a planner that runs
//! again (another worker, a restart) writes nothing twice.
//!
//! - The key of one ring is `alarm:<id>:r<revision>:<instant ms>`. The revision goes up when
//!   the alarm is edited, disabled or deleted (its pending rings are cancelled by the prefix
//!   `alarm:<id>:` in the same transaction) and when the zone it follows changes, so the new
//!   rings are never refused as duplicates of cancelled keys.
//! - [`plan_on`] writes the rings of `[max(planned_until, now), now + HORIZON)` and moves
//!   `planned_until`, with an `alarm_occurrences` row per ring (what the notifications list
//!   shows once its instant has passed), all in the caller's transaction. It first moves the plan
//!   only if the alarm is still at the revision read, so a plan racing an edit commits nothing.
//! - The routes plan an alarm when it is created or edited (so one set for a minute from now
//!   rings); the worker's [`plan`] tops every enabled alarm up every [`PLAN_EVERY`] and replans
//!   an alarm whose account changed zone.
//! - Rings missed while no planner ran (the time passed before it was written) are not sent
//!   late: an alarm an hour late is not the alarm the user set.
//!
//! Alarms go out under the notification category `alarm`: quiet hours do not hold them (the user
//! chose the time; `Category::passes_quiet_hours`), each channel can be turned off in the
//! preferences, and by default they ring in the app and by push, not by SMS or e-mail.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use hearth_notifications::{Notice, Notifier};
use hearth_notify::Category;
use hearth_store::StoreError;
use hearth_store_sql::Db;
use hearth_store_sql::alarms::{self as sql, AlarmRow, OccurrenceRow};
use hearth_store_sql::notify::TxDb;
use serde_json::{Map, json};

use crate::Alarms;
use crate::model::{occurrences, parse_local};
use crate::rrule::Rrule;

/// How far ahead rings are written.
pub const HORIZON: TimeDelta = TimeDelta::hours(48);
/// How often the worker plans.
pub const PLAN_EVERY: Duration = Duration::from_secs(60);
/// Alarms read per batch of one pass.
const BATCH: i64 = 500;

/// The idempotency-key prefix of every ring of `alarm`.
pub fn key_prefix(alarm: &str) -> String {
    format!("alarm:{alarm}:")
}

/// The idempotency key of one ring.
pub fn key(alarm: &str, revision: i64, at: DateTime<Utc>) -> String {
    format!("{}r{revision}:{}", key_prefix(alarm), at.timestamp_millis())
}

/// The zone an alarm rings in: its own, else the account's (its notification settings, which
/// the profile's time zone sets), else the server's default.
pub async fn zone_of(notifier: &Notifier, db: &dyn Db, row: &AlarmRow) -> Result<Tz, StoreError> {
    if let Some(tz) = row.time_zone.as_deref().and_then(crate::model::parse_zone) {
        return Ok(tz);
    }
    Ok(notifier.settings(db, &row.account_id).await?.time_zone)
}

/// The stored start and rule of an alarm (they were checked when written; a row that no longer
/// parses rings nowhere rather than failing every pass).
pub fn schedule_of(row: &AlarmRow) -> Option<(chrono::NaiveDateTime, Option<Rrule>)> {
    let start = parse_local(&row.start_local)?;
    let rule = match row.rrule.as_deref() {
        Some(r) => Some(Rrule::parse(r).ok()?),
        None => None,
    };
    Some((start, rule))
}

/// Cancels `alarm`'s rings still ahead of `now` (outbox rows and occurrence rows), on `tx`.
pub async fn cancel_pending(tx: &dyn Db, alarm: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    hearth_notifications::cancel_prefix(tx, &key_prefix(alarm), now).await?;
    sql::delete_pending(tx, alarm, now.timestamp_millis()).await?;
    Ok(())
}

/// Writes `row`'s rings up to `now + HORIZON` on `tx` (see the module docs). `None`: the alarm
/// changed since `row` was read (roll back); else how many rings were new.
pub async fn plan_on(
    notifier: &Notifier,
    tx: &dyn Db,
    row: &AlarmRow,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Option<usize>, StoreError> {
    let until = now + HORIZON;
    if !sql::set_planned(tx, &row.id, row.revision, tz.name(), until.timestamp_millis()).await? {
        return Ok(None);
    }
    if !row.enabled {
        return Ok(Some(0));
    }
    let Some((start, rule)) = schedule_of(row) else { return Ok(Some(0)) };
    let from = DateTime::from_timestamp_millis(row.planned_until).unwrap_or(now).max(now);
    let mut written = 0;
    for at in occurrences(start, rule.as_ref(), tz, from, until) {
        let mut args = Map::new();
        args.insert("kind".into(), json!(row.kind));
        let notice = Notice {
            key: key(&row.id, row.revision, at),
            account_id: row.account_id.clone(),
            category: Category::Alarm,
            template: "alarm".into(),
            args,
            not_before: Some(at),
        };
        hearth_notifications::enqueue(notifier, tx, &notice, now).await.map_err(|e| match e {
            hearth_notifications::EnqueueError::Store(s) => s,
            other => StoreError::Database(Box::new(other)),
        })?;
        let occurrence = OccurrenceRow {
            id: uuid::Uuid::now_v7().to_string(),
            alarm_id: row.id.clone(),
            account_id: row.account_id.clone(),
            revision: row.revision,
            at: at.timestamp_millis(),
            kind: row.kind.clone(),
            label: row.label.clone(),
            read_at: None,
        };
        if sql::insert_occurrence(tx, &occurrence).await? {
            written += 1;
        }
    }
    Ok(Some(written))
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planned {
    /// Rings newly written.
    pub written: usize,
    /// Alarms replanned because the zone they follow changed.
    pub replanned: usize,
}

/// One planning pass at `now`: every enabled alarm is topped up to `now + HORIZON`.
pub async fn plan(app: &Alarms, now: DateTime<Utc>) -> Result<Planned, StoreError> {
    let mut out = Planned::default();
    let until = (now + HORIZON).timestamp_millis();
    loop {
        let batch = sql::due_for_planning(&*app.db, until, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        let mut progressed = false;
        for mut row in batch {
            let tz = zone_of(&app.notifier, &*app.db, &row).await?;
            let tx = TxDb::begin(&*app.db).await?;
            if row.planned_zone.as_deref().is_some_and(|z| z != tz.name()) {
                if !sql::bump_revision(&tx, &row.id, row.revision, now.timestamp_millis()).await? {
                    continue;
                }
                cancel_pending(&tx, &row.id, now).await?;
                row.revision += 1;
                row.planned_until = now.timestamp_millis();
                out.replanned += 1;
            }
            if let Some(n) = plan_on(&app.notifier, &tx, &row, tz, now).await? {
                tx.commit().await?;
                out.written += n;
                progressed = true;
            }
        }
        // Every row of a batch changed under us (edits racing the planner): the next pass retries.
        if !progressed {
            break;
        }
    }
    if out.written > 0 {
        app.notifier.wake();
    }
    Ok(out)
}

/// Plans every [`PLAN_EVERY`] until the task is dropped.
pub async fn run(app: Arc<Alarms>) {
    loop {
        let now = app.clock.now();
        if let Err(e) = plan(&app, now).await {
            tracing::error!(error = %e, "alarms: planning failed");
        }
        tokio::time::sleep(PLAN_EVERY).await;
    }
}

//! Dose reminders: written to the notification outbox ahead of time, one fan-out row per dose
//! to the patient's accounts, due at the dose's instant in the patient's time zone.
//!
//! The planner ([`plan`]) runs in the worker every [`PLAN_EVERY`]: for each active schedule
//! it writes the reminders of the doses up to [`HORIZON`] ahead that are not written yet. Its
//! state per schedule is a row of `medication_reminder_plans` (how far ahead, for which schedule
//! version and time zone, under which generation):
//! - a reminder's idempotency key is `med-reminder:<schedule>:g<generation>:<instant ms>`: a
//!   planner that runs again (another worker, a restart after a crash between the outbox write
//!   and the plan row, which commit together anyway) writes nothing twice;
//! - when the schedule changes (a new version) or the patient's time zone changes, its pending
//!   reminders are cancelled (`cancel_prefix`) and written again under the next generation from
//!   now, so the new times are not refused as duplicates of cancelled keys;
//! - a schedule no longer active has its pending reminders cancelled and its plan forgotten.
//!
//! The patient's time zone is their (first) account's notification setting, else the server's
//! default zone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use hearth_notifications::{Notifier, PatientNotice};
use hearth_notify::Category;
use hearth_store::{Access, Guarded, StoreError};
use hearth_store_sql::medication::{self as sql, PlanRow};
use hearth_store_sql::notify::TxDb;
use serde_json::{Map, Value, json};

use crate::Medication;
use crate::doses::doses;
use crate::schedule::schedule_out;

/// How far ahead reminders are written.
pub const HORIZON: TimeDelta = TimeDelta::hours(48);
/// How often the worker plans.
pub const PLAN_EVERY: Duration = Duration::from_secs(60);
/// Most active schedules one pass reads.
const MAX_SCHEDULES: usize = 100_000;

/// The idempotency-key prefix of a schedule's reminders.
pub fn key_prefix(schedule: &str) -> String {
    format!("med-reminder:{schedule}:")
}

/// The idempotency key of one reminder.
pub fn key(schedule: &str, generation: i64, at: DateTime<Utc>) -> String {
    format!("{}g{generation}:{}", key_prefix(schedule), at.timestamp_millis())
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planned {
    /// Reminders newly written.
    pub written: usize,
    /// Schedules replanned (changed, or the patient moved zone).
    pub replanned: usize,
    /// Schedules ended (their pending reminders cancelled).
    pub ended: usize,
}

/// The patient's time zone: their first account's setting, else the server's default.
pub async fn time_zone(app: &Medication, notifier: &Notifier, patient: &str) -> Result<Tz, StoreError> {
    let accounts = hearth_store_sql::identity::accounts_of(&*app.db, &format!("Patient/{patient}")).await?;
    let row = match accounts.first() {
        Some(a) => Some(notifier.settings(&*app.db, a).await?),
        None => None,
    };
    Ok(row.map_or_else(|| notifier.with_defaults(None).time_zone, |s| s.time_zone))
}

/// One planning pass at `now`.
pub async fn plan(app: &Medication, notifier: &Notifier, now: DateTime<Utc>) -> Result<Planned, StoreError> {
    let store = Guarded::new(Arc::clone(&app.store), Access::system());
    let mut out = Planned::default();
    let mut active = HashSet::new();
    for rt in ["MedicationStatement", "MedicationRequest"] {
        let found = app.search_all(&store, rt, &[("status".to_owned(), "active".to_owned())], MAX_SCHEDULES).await?;
        for v in found {
            let Some(body) = v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else { continue };
            let Some(patient) = body
                .pointer("/subject/reference")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("Patient/"))
                .map(str::to_owned)
            else {
                continue;
            };
            let Some(schedule) = schedule_out(rt, &v.id, &body) else { continue };
            active.insert(schedule.reference.clone());
            let tz = time_zone(app, notifier, &patient).await?;
            let fingerprint = format!("{}|{}", v.version_id, tz.name());
            let tx = TxDb::begin(&*app.db).await?;
            let previous = sql::plan(&tx, &schedule.reference).await?;
            let (generation, from) = match &previous {
                Some(p) if p.fingerprint == fingerprint => {
                    (p.generation, DateTime::from_timestamp_millis(p.planned_until).unwrap_or(now).max(now))
                }
                Some(p) => {
                    hearth_notifications::cancel_prefix(&tx, &key_prefix(&schedule.reference), now).await?;
                    out.replanned += 1;
                    (p.generation + 1, now)
                }
                None => (1, now),
            };
            let until = now + HORIZON;
            for dose in doses(&schedule, tz, from, until) {
                let mut args = Map::new();
                args.insert("count".into(), json!(1));
                let notice = PatientNotice {
                    key: key(&schedule.reference, generation, dose.at),
                    patient_id: patient.clone(),
                    category: Category::Medication,
                    template: "medication-reminder".into(),
                    args,
                    not_before: Some(dose.at),
                    channels: None,
                    include_caregivers: false,
                };
                if hearth_notifications::enqueue_for_patient(notifier, &tx, &notice, now)
                    .await
                    .map_err(|e| StoreError::Database(Box::new(e)))?
                {
                    out.written += 1;
                }
            }
            let row = PlanRow {
                schedule: schedule.reference.clone(),
                patient,
                fingerprint,
                generation,
                planned_until: until.max(from).timestamp_millis(),
            };
            sql::put_plan(&tx, &row).await?;
            tx.commit().await?;
        }
    }
    for p in sql::plans(&*app.db).await? {
        if active.contains(&p.schedule) {
            continue;
        }
        let tx = TxDb::begin(&*app.db).await?;
        hearth_notifications::cancel_prefix(&tx, &key_prefix(&p.schedule), now).await?;
        sql::delete_plan(&tx, &p.schedule).await?;
        tx.commit().await?;
        out.ended += 1;
    }
    if out.written > 0 {
        notifier.wakeup.notify_one();
    }
    Ok(out)
}

/// Plans every [`PLAN_EVERY`] until the task is dropped.
pub async fn run(app: Arc<Medication>) {
    loop {
        let now = app.clock.now();
        if let Err(e) = plan(&app, &app.notifier, now).await {
            tracing::error!(error = %e, "medication reminders: planning failed");
        }
        tokio::time::sleep(PLAN_EVERY).await;
    }
}

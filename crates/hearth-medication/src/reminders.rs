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
//! - a schedule no longer active has its pending reminders cancelled and its plan forgotten;
//! - a schedule with a counted supply whose refill prediction runs out within
//!   `medication.refill_notice_days` gets one `medication-refill` notice, keyed
//!   `med-refill:<schedule>:<when the supply was counted>`: once per supply cycle, whatever the
//!   number of passes, workers or restarts (the outbox refuses a key it has seen).
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
use hearth_store::{Access, Guarded, StoreError, Version};
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
/// Most dose logs read for one patient's refill prediction.
const MAX_LOGS: usize = 10_000;

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
    /// Refill notices newly written.
    pub refills: usize,
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

/// The idempotency key of a schedule's refill notice for the supply counted at `since`: one per
/// supply cycle (a new count, by an edit that gives `quantity`, starts the next cycle).
pub fn refill_key(schedule: &str, since: DateTime<Utc>) -> String {
    format!("med-refill:{schedule}:{}", since.timestamp_millis())
}

/// One planning pass at `now`.
pub async fn plan(app: &Medication, notifier: &Notifier, now: DateTime<Utc>) -> Result<Planned, StoreError> {
    let store = Guarded::new(Arc::clone(&app.store), Access::system());
    let mut out = Planned::default();
    let mut active = HashSet::new();
    for rt in ["MedicationStatement", "MedicationRequest"] {
        let found = app.search_all(&store, rt, &[("status".to_owned(), "active".to_owned())], MAX_SCHEDULES).await?;
        for v in found {
            if let Some(reference) = plan_one(app, notifier, &store, rt, &v, now, &mut out).await? {
                active.insert(reference);
            }
        }
    }
    for p in sql::plans(&*app.db).await? {
        if active.contains(&p.schedule) {
            continue;
        }
        forget(app, &p.schedule, now).await?;
        out.ended += 1;
    }
    if out.written > 0 {
        notifier.wakeup.notify_one();
    }
    Ok(out)
}

/// Cancels a schedule's queued reminders and forgets its plan (a stopped schedule; the pass
/// does the same for any schedule no longer active).
pub async fn forget(app: &Medication, schedule: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    let tx = TxDb::begin(&*app.db).await?;
    hearth_notifications::cancel_prefix(&tx, &key_prefix(schedule), now).await?;
    sql::delete_plan(&tx, schedule).await?;
    tx.commit().await
}

/// Plans one schedule version now (an edit replans at once rather than at the next pass).
pub async fn replan(
    app: &Medication,
    resource_type: &str,
    v: &Version,
    now: DateTime<Utc>,
) -> Result<Planned, StoreError> {
    let store = Guarded::new(Arc::clone(&app.store), Access::system());
    let mut out = Planned::default();
    plan_one(app, &app.notifier, &store, resource_type, v, now, &mut out).await?;
    if out.written > 0 {
        app.notifier.wakeup.notify_one();
    }
    Ok(out)
}

/// Plans one active schedule: its reminders up to [`HORIZON`] and, when its supply runs low,
/// its refill notice. The schedule's reference, or `None` for a body that is not a schedule.
async fn plan_one(
    app: &Medication,
    notifier: &Notifier,
    store: &Guarded,
    rt: &str,
    v: &Version,
    now: DateTime<Utc>,
    out: &mut Planned,
) -> Result<Option<String>, StoreError> {
    let Some(body) = v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else { return Ok(None) };
    let Some(patient) = body
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    let Some(schedule) = schedule_out(rt, &v.id, &body) else { return Ok(None) };
    if schedule.status != "active" {
        forget(app, &schedule.reference, now).await?;
        return Ok(None);
    }
    let tz = time_zone(app, notifier, &patient).await?;
    let refill = refill_notice(app, store, &schedule, &patient, tz, now).await?;
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
    let mut notices: Vec<PatientNotice> = doses(&schedule, tz, from, until)
        .into_iter()
        .map(|dose| {
            let mut args = Map::new();
            args.insert("count".into(), json!(1));
            PatientNotice {
                key: key(&schedule.reference, generation, dose.at),
                patient_id: patient.clone(),
                category: Category::Medication,
                template: "medication-reminder".into(),
                args,
                not_before: Some(dose.at),
                channels: None,
                include_caregivers: false,
            }
        })
        .collect();
    notices.extend(refill);
    for notice in &notices {
        if hearth_notifications::enqueue_for_patient(notifier, &tx, notice, now)
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?
        {
            if notice.template == "medication-refill" {
                out.refills += 1;
            } else {
                out.written += 1;
            }
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
    Ok(Some(schedule.reference))
}

/// The refill notice a schedule with a counted supply is due, when the supply runs out within
/// the configured days: keyed by the supply cycle, so it is written once per cycle.
async fn refill_notice(
    app: &Medication,
    store: &Guarded,
    schedule: &crate::schedule::ScheduleOut,
    patient: &str,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Option<PatientNotice>, StoreError> {
    let days = app.config.refill_notice_days;
    let since = schedule.quantity_since.as_deref().and_then(hearth_workflow::fhir::parse_instant);
    let (Some(quantity), Some(since)) = (schedule.quantity, since) else { return Ok(None) };
    if days == 0 || schedule.as_needed {
        return Ok(None);
    }
    let found = app
        .search_all(
            store,
            "MedicationAdministration",
            &[("subject".to_owned(), format!("Patient/{patient}"))],
            MAX_LOGS,
        )
        .await?;
    let logs: Vec<crate::schedule::LogOut> = found
        .iter()
        .filter_map(|v| {
            let body = v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok())?;
            Some(crate::schedule::log_out(&v.id, &body))
        })
        .collect();
    let refill = crate::refill::predict(schedule, tz, quantity, since, &logs, now);
    let Some(runs_out) = refill.runs_out.as_deref().and_then(hearth_workflow::fhir::parse_instant) else {
        return Ok(None);
    };
    if runs_out > now + TimeDelta::days(i64::from(days)) {
        return Ok(None);
    }
    // Whole days left, rounded up (a dose this afternoon it cannot cover is "1 day").
    let left = (runs_out - now).num_minutes().max(0);
    let mut args = Map::new();
    args.insert("days".into(), json!((left + 24 * 60 - 1) / (24 * 60)));
    Ok(Some(PatientNotice {
        key: refill_key(&schedule.reference, since),
        patient_id: patient.to_owned(),
        category: Category::Medication,
        template: "medication-refill".into(),
        args,
        not_before: None,
        channels: None,
        include_caregivers: false,
    }))
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

//! Appointments written through plain FHIR (`POST`/`PUT`/`PATCH`/`DELETE /fhir/Appointment…`,
//! and inside transaction Bundles): the edge writes them in a `GuardedTx` marked
//! [`hearth_store::GuardedTx::booking_on_commit`], which cannot commit by itself while it holds
//! an Appointment; [`commit`] claims the time they hold in the same transaction and commits it.
//!
//! Decisions:
//! - An Appointment holds its practitioners' time while its status is `pending`, `booked`,
//!   `arrived` or `checked-in`: the 5-minute cells from its `start` (rounded down) to its `end`
//!   (rounded up) of every `Practitioner` participant, claimed in `sched_claims` exactly as an
//!   app booking claims them. Any other status (`cancelled`, `noshow`, `fulfilled`, `proposed`,
//!   …) and a deletion hold nothing. A FHIR client chooses its own times: they need not be a
//!   slot of a schedule (an EMR books what the clinic agreed), but they must be free.
//! - A write that leaves the appointment's cells as they were (a changed comment, a status
//!   between two holding ones, an end moved earlier) keeps its claims, reminders and buffer.
//!   Otherwise the old cells are released and the new ones claimed; a cell another appointment
//!   holds rolls the whole transaction back with `409` naming that appointment and the time.
//! - Reminders follow the start: a new or moved holding appointment gets them (as
//!   `booking::enqueue_reminders` writes them for the app), one that stops holding or moves
//!   loses the queued ones. Freed time that is still ahead is offered to the waitlist and the
//!   clinic is told of changes made by a patient or caregiver, as for app bookings.
//! - A patient booking (or moving) through FHIR while an intake emergency red flag is active on
//!   their record is refused (`422`), as the app refuses their routine self-booking; staff
//!   still book for them.
//! - At most 24 hours per appointment: a longer one is refused (`422`), it would claim
//!   hundreds of cells for what is not a visit.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hearth_store::{GuardedTx, Version};
use hearth_store_sql::notify::TxDb;
use hearth_store_sql::scheduling::{self as sql, CELL_MS};
use hearth_workflow::Caller;
use hearth_workflow::error::{FhirError, Issue};
use serde_json::Value;

use super::booking::{emergency_flagged, enqueue_reminders, fhir_error, notify_clinic, offer_freed, reminder_prefix};
use super::{instant, json_of, ref_id};
use crate::Scheduling;

/// The statuses in which an Appointment holds its practitioners' time.
const HOLDING: [&str; 4] = ["pending", "booked", "arrived", "checked-in"];
/// The longest appointment that may hold time, in cells (24 hours).
const MAX_CELLS: i64 = 24 * 12;

/// Commits `tx`, a `/fhir` write by `caller`: first, when it wrote Appointments, claims and
/// releases their time, rewrites their reminders and offers freed time, all in `tx`. An error
/// leaves nothing written.
pub async fn commit(app: &Scheduling, caller: &Caller, mut tx: GuardedTx) -> Result<(), FhirError> {
    let booked = tx.take_booked();
    if booked.is_empty() {
        return Ok(tx.commit().await?);
    }
    // The last version of each appointment is what commits.
    let mut last: Vec<&Version> = Vec::new();
    for v in booked.iter().rev() {
        if !last.iter().any(|l| l.id == v.id) {
            last.push(v);
        }
    }
    last.reverse();
    let db = TxDb::from_guarded(tx)?;
    for v in last {
        apply(app, &db, caller, v).await?;
    }
    db.commit().await?;
    app.notifier.wake();
    Ok(())
}

/// What a version of an Appointment holds: its practitioners, start and end, patient.
struct Holding {
    practitioners: Vec<String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    patient: Option<String>,
}

fn holding(a: &Value) -> Result<Option<Holding>, FhirError> {
    let status = a.get("status").and_then(Value::as_str).unwrap_or_default();
    if !HOLDING.contains(&status) {
        return Ok(None);
    }
    let participants = a.get("participant").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let practitioners: Vec<String> =
        participants.iter().filter_map(|p| ref_id(p, "/actor/reference", "Practitioner")).map(str::to_owned).collect();
    if practitioners.is_empty() {
        return Ok(None);
    }
    let at = |k: &str| a.get(k).and_then(Value::as_str).and_then(hearth_workflow::fhir::parse_instant);
    let (Some(start), Some(end)) = (at("start"), at("end")) else {
        return Err(unprocessable(
            "a pending or booked Appointment with a practitioner needs `start` and `end` (instants)",
        ));
    };
    if end <= start {
        return Err(unprocessable("`end` must be after `start`"));
    }
    let patient = participants.iter().find_map(|p| ref_id(p, "/actor/reference", "Patient")).map(str::to_owned);
    Ok(Some(Holding { practitioners, start, end, patient }))
}

fn unprocessable(msg: &str) -> FhirError {
    FhirError::new(StatusCode::UNPROCESSABLE_ENTITY, Issue::error("business-rule", msg))
}

/// The cells `[start, end)` covers, rounded out to whole cells.
fn cells_of(h: &Holding) -> Result<Vec<i64>, FhirError> {
    let first = h.start.timestamp_millis().div_euclid(CELL_MS);
    let last = (h.end.timestamp_millis() + CELL_MS - 1).div_euclid(CELL_MS);
    if last - first > MAX_CELLS {
        return Err(unprocessable("an Appointment that holds a practitioner's time may last at most 24 hours"));
    }
    Ok((first..last).map(|c| c * CELL_MS).collect())
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

async fn apply(app: &Scheduling, db: &TxDb, caller: &Caller, v: &Version) -> Result<(), FhirError> {
    let id = &v.id;
    let new = match v.body {
        Some(_) => holding(&json_of(v).map_err(fhir_error)?)?,
        None => None,
    };
    let mut wanted: BTreeSet<(String, i64)> = BTreeSet::new();
    if let Some(h) = &new {
        for cell in cells_of(h)? {
            for p in &h.practitioners {
                wanted.insert((p.clone(), cell));
            }
        }
    }
    // The time cells held (a schedule's day places, keyed `<practitioner>#<date>`, are not time:
    // they stay while the time does, and go with it).
    let old: BTreeSet<(String, i64)> = sql::held(db, id).await?.into_iter().filter(|(p, _)| !p.contains('#')).collect();
    let first = |s: &BTreeSet<(String, i64)>| s.iter().map(|(_, c)| *c).min();
    // Unchanged: the same first cell and nothing beyond what is held (see the module docs).
    if !wanted.is_empty() && first(&wanted) == first(&old) && wanted.is_subset(&old) {
        return Ok(());
    }
    if wanted.is_empty() && old.is_empty() {
        return Ok(());
    }
    if let (Some(h), hearth_auth::Role::Patient) = (&new, caller.role)
        && let Some(patient) = &h.patient
        && emergency_flagged(app, &app.store_for(caller), patient).await.map_err(fhir_error)?
    {
        return Err(unprocessable(
            "your intake answers need urgent care: call the emergency number or contact the clinic instead of booking",
        ));
    }
    sql::release(db, id).await?;
    if let Some(h) = &new {
        for p in &h.practitioners {
            let cells: Vec<i64> = wanted.iter().filter(|(q, _)| q == p).map(|(_, c)| *c).collect();
            if !sql::claim(db, p, &cells, id).await? {
                return Err(taken(db, p, &cells, id).await);
            }
        }
    }
    let now = app.clock.now();
    let moved = first(&wanted) != first(&old);
    if moved && !old.is_empty() {
        hearth_notifications::cancel_prefix(db, &reminder_prefix(id), now).await?;
    }
    if let (true, Some(h)) = (moved, &new)
        && let Some(patient) = &h.patient
    {
        enqueue_reminders(app, db, id, patient, h.start).await.map_err(fhir_error)?;
    }
    // Freed time per practitioner, as one span from its first to its last freed cell.
    let practitioners: BTreeSet<&String> = old.iter().map(|(p, _)| p).collect();
    for p in practitioners {
        let freed: Vec<i64> =
            old.iter().filter(|(q, c)| q == p && !wanted.contains(&(p.clone(), *c))).map(|(_, c)| *c).collect();
        if let (Some(s), Some(e)) = (freed.iter().min(), freed.iter().max())
            && at(*s) > now
        {
            offer_freed(app, db, p, at(*s), at(*e + CELL_MS)).await.map_err(fhir_error)?;
        }
    }
    let change = match (&new, old.is_empty()) {
        (Some(_), true) => "booked",
        (Some(_), false) => "rescheduled",
        (None, _) => "cancelled",
    };
    if let Some(p) = new.as_ref().and_then(|h| h.practitioners.first()).or(old.iter().map(|(p, _)| p).next()) {
        let when = new.as_ref().map_or_else(|| first(&old).map_or(now, at), |h| h.start);
        notify_clinic(app, db, caller, p, &format!("appointment-change:{id}:{}", v.version_id), change, when)
            .await
            .map_err(fhir_error)?;
    }
    Ok(())
}

/// The `409` for a claim of `cells` of `practitioner` that found one taken: names the
/// appointment holding it and the time.
async fn taken(db: &TxDb, practitioner: &str, cells: &[i64], id: &str) -> FhirError {
    let (from, to) = (cells.first().copied().unwrap_or_default(), cells.last().copied().unwrap_or_default() + CELL_MS);
    let holder =
        sql::claimed(db, practitioner, from, to).await.ok().and_then(|held| held.into_iter().find(|(_, a)| a != id));
    let msg = match holder {
        Some((cell, other)) => format!(
            "Practitioner/{practitioner} is not free at {}: Appointment/{other} holds that time",
            instant(at(cell))
        ),
        None => format!(
            "Practitioner/{practitioner} is not free between {} and {}: another booking holds that time",
            instant(at(from)),
            instant(at(to))
        ),
    };
    FhirError::new(StatusCode::CONFLICT, Issue::error("conflict", msg).at("Appointment.participant"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use serde_json::json;

    #[test]
    fn only_holding_statuses_with_a_practitioner_hold_time() {
        let a = |status: &str| {
            json!({"status": status, "start": "2026-12-01T09:02:00Z", "end": "2026-12-01T09:31:00Z",
                   "participant": [{"actor": {"reference": "Practitioner/p1"}}, {"actor": {"reference": "Patient/x"}}]})
        };
        let h = holding(&a("booked")).ok().flatten();
        assert!(h.as_ref().is_some_and(|h| h.patient.as_deref() == Some("x")));
        let cells = h.map(|h| cells_of(&h).unwrap_or_default()).unwrap_or_default();
        // 09:00 (rounded down) to 09:35 (rounded up): seven cells.
        assert_eq!(cells.len(), 7);
        assert!(holding(&a("cancelled")).ok().flatten().is_none());
        assert!(holding(&a("proposed")).ok().flatten().is_none());
        let no_end = json!({"status": "booked", "start": "2026-12-01T09:00:00Z",
                            "participant": [{"actor": {"reference": "Practitioner/p1"}}]});
        assert!(holding(&no_end).is_err());
    }

    #[test]
    fn a_day_long_appointment_is_the_longest() {
        let h = |hours: i64| Holding {
            practitioners: vec!["p".into()],
            start: at(0),
            end: at(0) + Duration::hours(hours),
            patient: None,
        };
        assert!(cells_of(&h(24)).is_ok());
        assert!(cells_of(&h(25)).is_err());
    }
}

//! Booking (`/api/v1/appointments`, `Appointment/$find`, `Appointment/$book`): atomic booking,
//! recurring series, reschedule, cancel, no-show, check-in, the waitlist, and the reminders and
//! clinic notices that commit with each change.
//!
//! Decisions:
//! - Who books for whom: a patient for themselves, a caregiver for the patients they reach,
//!   clinicians and admins for anyone they reach. The Appointment is written through the
//!   caller's own `GuardedTx`, which enforces exactly that reach.
//! - Exactly one of concurrent bookings of overlapping time wins: the claimed 5-minute cells
//!   (`hearth_store_sql::scheduling::claim`) are inserted in the Appointment's transaction and
//!   a conflict rolls everything back (`409 slot_taken` with up to five alternatives).
//! - Reminders (`scheduling.reminder_offsets_minutes`, default 24 h and 2 h before) are
//!   patient-addressed notices (`hearth_notifications::enqueue_for_patient`, one outbox row per
//!   offset) with `not_before`, written in the same transaction, keyed
//!   `appointment-reminder:<id>:<start ms>:<offset>`: a retried booking adds nothing, a
//!   reschedule writes new keys, and cancelling cancels every queued key of the appointment
//!   (`cancel_prefix`, which also takes the rows a reminder was already expanded into). When one
//!   is due, the notification worker sends it to the patient's accounts and the caregiver
//!   accounts linked to the patient *at that time*. Channels, preferences, quiet hours and
//!   contact consent are the worker's at send time. A reminder whose time has passed at booking
//!   is not written.
//! - A recurring booking (`repeat`: count and interval in days, at the same local wall-clock
//!   time in the schedule's zone) is all or nothing; each occurrence is its own Appointment
//!   with its own reminders, linked by a series extension.
//! - A cancellation less than `scheduling.late_cancel_hours` before the start is recorded as
//!   late (an extension on the Appointment). Cancelling or rescheduling frees the time, which
//!   is offered, in the same transaction, to the oldest waitlist entry whose window holds it.
//! - A patient whose record holds an active intake red-flag `Flag` of urgency `emergency`
//!   (code system `urn:hearth:red-flag`, extension `urn:hearth:extension:intake-urgency`) may
//!   not book themselves a `ROUTINE` or `CHECKUP` visit (`422 urgent_care_required`): the
//!   intake told them to seek emergency care. Staff still book for them. The Flag is read as
//!   FHIR through the caller's view; nothing reaches into the intake's tables.
//! - Check-in (from two hours before the start until its end) marks the Appointment `arrived`
//!   and creates its `Encounter` (`arrived`; class `AMB`, or `VR` when the visit is virtual).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use hearth_auth::Role;
use hearth_notify::Category;
use hearth_store::interactions;
use hearth_store::{Guarded, Version};
use hearth_store_sql::identity;
use hearth_store_sql::notify::TxDb;
use hearth_store_sql::scheduling as sql;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::schedules::{FreeSlot, StoredSchedule, free_slots, schedules_of};
use super::slots::{self, AppointmentType};
use super::{
    EXT, V2_0276, bad, conflict, forbidden, instant, is_staff, json_of, not_found, read_json, ref_id, search_all,
};
use crate::Scheduling;
use hearth_notifications::{self as notify, Notice, PatientNotice};
use hearth_workflow::error::{ApiError, FhirError};
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

pub fn router() -> axum::Router<Arc<Scheduling>> {
    axum::Router::new()
        .route("/api/v1/appointments", axum::routing::get(list).post(book))
        .route("/api/v1/appointments/{id}", axum::routing::get(get_one))
        .route("/api/v1/appointments/{id}/cancel", axum::routing::post(cancel))
        .route("/api/v1/appointments/{id}/reschedule", axum::routing::post(reschedule))
        .route("/api/v1/appointments/{id}/no-show", axum::routing::post(no_show))
        .route("/api/v1/appointments/{id}/check-in", axum::routing::post(check_in))
        .route("/api/v1/waitlist", axum::routing::get(waitlist).post(join_waitlist))
        .route("/api/v1/waitlist/{id}", axum::routing::delete(leave_waitlist))
}

const CANCEL_REASON: &str = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason";
/// The codes of R4's appointment-cancellation-reason code system.
const CANCEL_CODES: [&str; 32] = [
    "pat",
    "pat-crs",
    "pat-cpp",
    "pat-dec",
    "pat-fb",
    "pat-lt",
    "pat-mt",
    "pat-mv",
    "pat-preg",
    "pat-swl",
    "pat-ucp",
    "prov",
    "prov-pers",
    "prov-dch",
    "prov-edu",
    "prov-hosp",
    "prov-labs",
    "prov-mri",
    "prov-onc",
    "maint",
    "meds-inc",
    "other",
    "oth-cms",
    "oth-err",
    "oth-fin",
    "oth-iv",
    "oth-int",
    "oth-mu",
    "oth-room",
    "oth-oerr",
    "oth-swie",
    "oth-weath",
];

/// A series: the same time every `intervalDays`, `count` times in all.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Repeat {
    #[schema(example = 4)]
    pub count: u32,
    #[schema(example = 7)]
    pub interval_days: u32,
}

/// A booking: a free slot from the slot search.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"practitioner": "123", "start": "2026-12-01T09:00:00Z", "type": "ROUTINE", "patient": "456", "reason": "knee pain"}))]
pub struct BookBody {
    /// The practitioner's id (or `Practitioner/<id>`).
    #[serde(deserialize_with = "hearth_workflow::refs::practitioner")]
    pub practitioner: String,
    /// The slot's start (RFC 3339).
    #[schema(example = "2026-12-01T09:00:00Z")]
    pub start: String,
    /// `CHECKUP`, `EMERGENCY`, `FOLLOWUP`, `ROUTINE` or `WALKIN`.
    #[serde(rename = "type")]
    #[schema(example = "ROUTINE")]
    pub appointment_type: String,
    /// The patient's id (or `Patient/<id>`); patients book for themselves and leave it out.
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_patient")]
    pub patient: Option<String>,
    /// The schedule's id, when the practitioner has several.
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_schedule")]
    pub schedule: Option<String>,
    /// Free text for the clinic; never part of a message.
    pub reason: Option<String>,
    /// A video or phone visit.
    #[serde(default, rename = "virtual")]
    pub is_virtual: bool,
    /// Book a series.
    pub repeat: Option<Repeat>,
}

/// Why a booking failed.
pub enum BookError {
    Api(ApiError),
    /// The time is taken (or no longer free): the alternatives offered instead.
    Taken(Vec<FreeSlot>),
}

impl From<ApiError> for BookError {
    fn from(e: ApiError) -> Self {
        BookError::Api(e)
    }
}

impl From<hearth_store::StoreError> for BookError {
    fn from(e: hearth_store::StoreError) -> Self {
        BookError::Api(e.into())
    }
}

fn enqueue_error(e: notify::EnqueueError) -> ApiError {
    match e {
        notify::EnqueueError::Store(s) => s.into(),
        other => ApiError::internal(other.to_string()),
    }
}

impl BookError {
    fn into_response(self) -> Response {
        match self {
            BookError::Api(e) => e.into_response(),
            BookError::Taken(alternatives) => (
                StatusCode::CONFLICT,
                Json(json!({"error": {
                    "code": "slot_taken",
                    "message": "that time is no longer free; see the alternatives",
                    "alternatives": alternatives.iter().map(FreeSlot::view).collect::<Vec<_>>(),
                }})),
            )
                .into_response(),
        }
    }
}

/// The patient a caller books for: patients themselves (only), others must name one.
fn patient_for(caller: &Caller, named: Option<&str>) -> Result<String, ApiError> {
    match (caller.role, named) {
        (Role::Patient, named) => {
            let own = caller.own_patient().ok_or_else(|| forbidden("this account has no patient record"))?;
            match named {
                Some(n) if n != own => Err(forbidden("patients book for themselves")),
                _ => Ok(own.to_owned()),
            }
        }
        (_, Some(n)) if hearth_workflow::fhir::valid_id(n) => Ok(n.to_owned()),
        (_, Some(_)) => Err(bad("invalid_booking", "`patient` must be a resource id")),
        (_, None) => Err(bad("invalid_booking", "name the `patient` to book for")),
    }
}

/// The schedule and type under which `start` is a slot (ignoring bookings).
fn slot_of<'a>(
    schedules: &'a [StoredSchedule],
    schedule: Option<&str>,
    code: &str,
    start: DateTime<Utc>,
) -> Option<(&'a StoredSchedule, &'a AppointmentType)> {
    schedules.iter().filter(|s| schedule.is_none_or(|id| id == s.id)).find_map(|s| {
        let ty = s.availability.appointment_type(code)?;
        s.availability.candidates(ty, start, start + Duration::milliseconds(1)).first().map(|_| (s, ty))
    })
}

/// Up to five free slots of the same practitioner and type in the week from `around`.
async fn alternatives(
    app: &Scheduling,
    practitioner: &str,
    code: &str,
    around: DateTime<Utc>,
) -> Result<Vec<FreeSlot>, ApiError> {
    let from = around.max(app.clock.now());
    let mut found = free_slots(app, practitioner, None, Some(code), from, from + Duration::days(7)).await?;
    found.truncate(5);
    Ok(found)
}

/// The occurrences of a booking: the start, then every `interval_days` at the same local time.
fn occurrences(
    s: &StoredSchedule,
    start: DateTime<Utc>,
    repeat: Option<&Repeat>,
) -> Result<Vec<DateTime<Utc>>, ApiError> {
    let Some(r) = repeat else { return Ok(vec![start]) };
    if !(2..=52).contains(&r.count) || !(1..=365).contains(&r.interval_days) {
        return Err(bad("invalid_booking", "repeat: count 2 to 52, intervalDays 1 to 365"));
    }
    let tz = s.availability.time_zone;
    let local = start.with_timezone(&tz);
    let minute = local.time().signed_duration_since(chrono::NaiveTime::MIN).num_minutes();
    let minute = u32::try_from(minute).map_err(|_| ApiError::internal("negative local time"))?;
    let mut out = Vec::new();
    for k in 0..r.count {
        let date = local.date_naive() + Duration::days(i64::from(k * r.interval_days));
        out.push(slots::instant(tz, date, minute, true).ok_or_else(|| ApiError::internal("no such local time"))?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn appointment(
    patient: &str,
    practitioner: &str,
    schedule: &StoredSchedule,
    ty: &AppointmentType,
    start: DateTime<Utc>,
    reason: Option<&str>,
    is_virtual: bool,
    series: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let mut extension = vec![
        json!({"url": format!("{EXT}appointment-schedule"), "valueReference": {"reference": format!("Schedule/{}", schedule.id)}}),
    ];
    if is_virtual {
        extension.push(json!({"url": format!("{EXT}appointment-virtual"), "valueBoolean": true}));
    }
    if let Some(s) = series {
        extension.push(json!({"url": format!("{EXT}appointment-series"), "valueString": s}));
    }
    let mut participant = vec![
        json!({"actor": {"reference": format!("Patient/{patient}")}, "required": "required", "status": "accepted"}),
        json!({"actor": {"reference": format!("Practitioner/{practitioner}")}, "required": "required", "status": "accepted"}),
    ];
    if let Some(l) = &schedule.body.location {
        participant.push(json!({"actor": {"reference": format!("Location/{l}")}, "required": "information-only", "status": "accepted"}));
    }
    let mut a = json!({
        "resourceType": "Appointment",
        "extension": extension,
        "status": "booked",
        "appointmentType": {"coding": [{"system": V2_0276, "code": ty.code}]},
        "start": instant(start),
        "end": instant(start + Duration::minutes(i64::from(ty.minutes))),
        "minutesDuration": ty.minutes,
        "created": instant(now),
        "participant": participant,
    });
    if let Some(r) = reason
        && let Some(o) = a.as_object_mut()
    {
        o.insert("reasonCode".into(), json!([{"text": r}]));
    }
    a
}

/// The app API's view of an Appointment (the FHIR resource is `/fhir/Appointment/<id>`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AppointmentView<'a> {
    id: &'a str,
    /// Changes with every change.
    version: u64,
    /// `booked`, `arrived`, `fulfilled`, `cancelled` or `noshow`.
    #[schema(value_type = Option<String>, example = "booked")]
    status: Option<&'a Value>,
    #[schema(value_type = Option<String>, example = "2026-12-01T09:00:00Z")]
    start: Option<&'a Value>,
    #[schema(value_type = Option<String>, example = "2026-12-01T09:30:00Z")]
    end: Option<&'a Value>,
    /// The appointment type code.
    #[serde(rename = "type")]
    #[schema(value_type = Option<String>, example = "ROUTINE")]
    kind: Option<&'a Value>,
    /// The Patient id.
    patient: Option<String>,
    /// The Practitioner id.
    practitioner: Option<String>,
    /// The Location id.
    location: Option<String>,
    /// The Schedule id.
    schedule: Option<String>,
    /// The series it belongs to, if booked as one.
    #[schema(value_type = Option<String>)]
    series: Option<Value>,
    /// A video or phone visit.
    #[serde(rename = "virtual")]
    #[schema(value_type = bool)]
    is_virtual: Value,
    /// Why (for the clinic; never in messages).
    #[schema(value_type = Option<String>)]
    reason: Option<&'a Value>,
    /// Once cancelled: the reason code and whether it was inside the late-cancel window.
    cancellation: Option<Cancellation<'a>>,
    /// A series booking only: every occurrence, the first included.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<AppointmentView>>, no_recursion)]
    occurrences: Option<Vec<Value>>,
}

/// How an appointment was cancelled.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Cancellation<'a> {
    /// An appointment-cancellation-reason code.
    #[schema(value_type = Option<String>, example = "pat")]
    code: Option<&'a Value>,
    /// Cancelled inside the late-cancel window.
    #[schema(value_type = bool)]
    late: Value,
}

/// The appointments found.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AppointmentList<'a> {
    /// By start.
    appointments: Vec<AppointmentView<'a>>,
}

/// A check-in: the appointment and the Encounter it opened.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CheckedIn<'a> {
    appointment: AppointmentView<'a>,
    #[schema(value_type = super::encounters::EncounterView)]
    encounter: Value,
}

/// A waitlist entry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WaitEntry {
    id: String,
    /// The Practitioner id.
    practitioner: String,
    /// The Patient id.
    patient: String,
    /// Any slot starting from…
    earliest: Option<String>,
    /// …until.
    latest: Option<String>,
    /// The start of the slot offered to this entry, once one was.
    offered: Option<String>,
}

/// Waitlist entries, oldest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Waitlist {
    waitlist: Vec<WaitEntry>,
}

/// The app API's view of an Appointment, as JSON.
pub fn view(id: &str, version: u64, a: &Value) -> Value {
    json!(appointment_view(id, version, a))
}

fn appointment_view<'a>(id: &'a str, version: u64, a: &'a Value) -> AppointmentView<'a> {
    let ext = |name: &str| {
        a.get("extension").and_then(Value::as_array).and_then(|e| {
            e.iter().find(|x| x.get("url").and_then(Value::as_str) == Some(format!("{EXT}{name}").as_str())).cloned()
        })
    };
    let actor = |prefix: &str| {
        a.get("participant").and_then(Value::as_array).and_then(|ps| {
            ps.iter().find_map(|p| {
                p.pointer("/actor/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix(prefix))
                    .map(str::to_owned)
            })
        })
    };
    AppointmentView {
        id,
        version,
        status: a.get("status"),
        start: a.get("start"),
        end: a.get("end"),
        kind: a.pointer("/appointmentType/coding/0/code"),
        patient: actor("Patient/"),
        practitioner: actor("Practitioner/"),
        location: actor("Location/"),
        schedule: ext("appointment-schedule").and_then(|e| {
            e.pointer("/valueReference/reference")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("Schedule/"))
                .map(str::to_owned)
        }),
        series: ext("appointment-series").and_then(|e| e.get("valueString").cloned()),
        is_virtual: ext("appointment-virtual").and_then(|e| e.get("valueBoolean").cloned()).unwrap_or(json!(false)),
        reason: a.pointer("/reasonCode/0/text"),
        cancellation: a.get("cancelationReason").map(|c| Cancellation {
            code: c.pointer("/coding/0/code"),
            late: ext("appointment-late-cancellation")
                .and_then(|e| e.get("valueBoolean").cloned())
                .unwrap_or(json!(false)),
        }),
        occurrences: None,
    }
}

pub(crate) fn reminder_prefix(id: &str) -> String {
    format!("appointment-reminder:{id}:")
}

/// The reminders for an appointment at `start`, on `db` (the booking's transaction): one
/// patient-addressed notice per offset, which the notification worker resolves when it is due
/// to the patient's account(s) and the caregivers linked to the patient *then* (each account's
/// preferences apply), so someone who signs up after the booking is still reminded.
pub(crate) async fn enqueue_reminders(
    app: &Scheduling,
    db: &TxDb,
    id: &str,
    patient: &str,
    start: DateTime<Utc>,
) -> Result<(), ApiError> {
    let now = app.clock.now();
    for offset in &app.config.reminder_offsets_minutes {
        let at = start - Duration::minutes(i64::from(*offset));
        if at <= now {
            continue;
        }
        let mut args = Map::new();
        args.insert("when".into(), json!(instant(start)));
        let notice = PatientNotice {
            key: format!("{}{}:{offset}", reminder_prefix(id), start.timestamp_millis()),
            patient_id: patient.to_owned(),
            category: Category::Appointment,
            template: "appointment-reminder".into(),
            args,
            not_before: Some(at),
            channels: None,
            include_caregivers: true,
        };
        notify::enqueue_for_patient(&app.notifier, db, &notice, now).await.map_err(enqueue_error)?;
    }
    Ok(())
}

/// Tells the practitioner's account(s) of a change a patient (or caregiver) made.
pub(crate) async fn notify_clinic(
    app: &Scheduling,
    db: &TxDb,
    caller: &Caller,
    practitioner: &str,
    key: &str,
    change: &str,
    when: DateTime<Utc>,
) -> Result<(), ApiError> {
    if is_staff(caller) {
        return Ok(());
    }
    let now = app.clock.now();
    for account in identity::accounts_of(db, &format!("Practitioner/{practitioner}")).await? {
        let mut args = Map::new();
        args.insert("when".into(), json!(instant(when)));
        args.insert("change".into(), json!(change));
        let notice = Notice {
            key: format!("{key}:{account}"),
            account_id: account,
            category: Category::Appointment,
            template: "appointment-change".into(),
            args,
            not_before: None,
        };
        notify::enqueue(&app.notifier, db, &notice, now).await.map_err(enqueue_error)?;
    }
    Ok(())
}

/// Offers freed time `[start, end)` to the next patient waiting for the practitioner.
pub(crate) async fn offer_freed(
    app: &Scheduling,
    db: &TxDb,
    practitioner: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(), ApiError> {
    let now = app.clock.now();
    let Some(entry) =
        sql::wait_offer(db, practitioner, start.timestamp_millis(), end.timestamp_millis(), now.timestamp_millis())
            .await?
    else {
        return Ok(());
    };
    let accounts = match &entry.account_id {
        Some(a) => vec![a.clone()],
        None => identity::accounts_of(db, &format!("Patient/{}", entry.patient)).await?,
    };
    for account in accounts {
        let mut args = Map::new();
        args.insert("when".into(), json!(instant(start)));
        let notice = Notice {
            key: format!("waitlist-offer:{}:{}:{account}", entry.id, start.timestamp_millis()),
            account_id: account,
            category: Category::Appointment,
            template: "appointment-offer".into(),
            args,
            not_before: None,
        };
        notify::enqueue(&app.notifier, db, &notice, now).await.map_err(enqueue_error)?;
    }
    Ok(())
}

/// Claims the time of an appointment at `start` (its cells, and a place of its local day when the
/// schedule limits appointments per day); false when taken, and the caller must roll back.
async fn claim(
    db: &TxDb,
    practitioner: &str,
    schedule: &StoredSchedule,
    ty: &AppointmentType,
    start: DateTime<Utc>,
    appointment: &str,
) -> Result<bool, ApiError> {
    if !sql::claim(db, practitioner, &slots::cells(start, ty), appointment).await? {
        return Ok(false);
    }
    let Some(max) = schedule.availability.rules.max_per_day else { return Ok(true) };
    let day = start.with_timezone(&schedule.availability.time_zone).date_naive().format("%Y-%m-%d").to_string();
    Ok(sql::claim_day(db, practitioner, &day, max, appointment).await?)
}

/// Appointment types a patient may not book for themselves while an intake emergency is open.
const SELF_BOOK_BLOCKED_TYPES: [&str; 2] = ["ROUTINE", "CHECKUP"];
/// The code system of intake red flags on a `Flag`, and the extension holding its urgency
/// (written by the intake workflow; read here as FHIR, never from its tables).
const RED_FLAG_SYSTEM: &str = "urn:hearth:red-flag";
const URGENCY_EXTENSION: &str = "urn:hearth:extension:intake-urgency";

/// Whether `patient`'s record holds an active intake red-flag `Flag` of urgency `emergency`,
/// as `store` (the caller's view) reads it.
pub(crate) async fn emergency_flagged(app: &Scheduling, store: &Guarded, patient: &str) -> Result<bool, ApiError> {
    let flags = search_all(
        app,
        store,
        "Flag",
        // R4 has no status search parameter on Flag: the status is checked below.
        &[("patient", format!("Patient/{patient}")), ("_count", "100".to_owned())],
        500,
    )
    .await?;
    Ok(flags.iter().filter_map(|v| json_of(v).ok()).any(|f| {
        let active = f.get("status").and_then(Value::as_str) == Some("active");
        let red_flag = f
            .pointer("/code/coding")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c.get("system").and_then(Value::as_str) == Some(RED_FLAG_SYSTEM)));
        let emergency = f.get("extension").and_then(Value::as_array).is_some_and(|es| {
            es.iter().any(|e| {
                e.get("url").and_then(Value::as_str) == Some(URGENCY_EXTENSION)
                    && e.get("valueCode").and_then(Value::as_str) == Some("emergency")
            })
        });
        active && red_flag && emergency
    }))
}

/// Books `body` for `caller`: the Appointment(s), their claims, reminders and the clinic's
/// notice in one transaction.
pub async fn book_for(app: &Scheduling, caller: &Caller, body: &BookBody) -> Result<Vec<Version>, BookError> {
    if !hearth_workflow::fhir::valid_id(&body.practitioner)
        || body.schedule.as_deref().is_some_and(|s| !hearth_workflow::fhir::valid_id(s))
    {
        return Err(bad("invalid_booking", "`practitioner` and `schedule` must be resource ids").into());
    }
    if body.reason.as_deref().is_some_and(|r| !super::plain_text(r, 1000)) {
        return Err(bad("invalid_booking", "`reason` is 1 to 1000 characters").into());
    }
    let patient = patient_for(caller, body.patient.as_deref())?;
    let start = super::parse_instant(&body.start, "start")?;
    let store = app.store_for(caller);
    if read_json(&store, "Patient", &patient).await?.is_none() {
        return Err(not_found("patient").into());
    }
    if caller.role == Role::Patient
        && SELF_BOOK_BLOCKED_TYPES.contains(&body.appointment_type.as_str())
        && emergency_flagged(app, &store, &patient).await?
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "urgent_care_required",
            "your intake answers need urgent care: call the emergency number or contact the clinic instead of booking a routine visit",
        )
        .into());
    }
    let schedules = schedules_of(app, &body.practitioner, None).await?;
    let (schedule, ty) =
        slot_of(&schedules, body.schedule.as_deref(), &body.appointment_type, start).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_a_slot",
                "that start is not a slot of this practitioner for that appointment type",
            )
        })?;
    let starts = occurrences(schedule, start, body.repeat.as_ref())?;
    let now = app.clock.now();
    // Rules and the time booked so far (the claims below are what decides a race).
    for s in &starts {
        let free = free_slots(
            app,
            &body.practitioner,
            schedule.body.service.as_deref(),
            Some(&ty.code),
            *s,
            *s + Duration::milliseconds(1),
        )
        .await?;
        if !free.iter().any(|f| f.schedule == schedule.id && f.slot.start == *s) {
            if slot_of(&schedules, Some(&schedule.id), &ty.code, *s).is_none() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not_a_slot",
                    "an occurrence of the series is not a slot",
                )
                .into());
            }
            return Err(BookError::Taken(alternatives(app, &body.practitioner, &ty.code, *s).await?));
        }
    }
    let series = (starts.len() > 1).then(|| uuid::Uuid::now_v7().to_string());
    let mut tx = store.begin().await?.scheduling();
    let mut written = Vec::new();
    for s in &starts {
        let resource = appointment(
            &patient,
            &body.practitioner,
            schedule,
            ty,
            *s,
            body.reason.as_deref(),
            body.is_virtual,
            series.as_deref(),
            now,
        );
        super::check(app, "Appointment", &resource)?;
        let write = hearth_workflow::fhir::write_of(app, "Appointment", uuid::Uuid::now_v7().to_string(), resource);
        written.push(interactions::create(&mut tx, write, now).await?);
    }
    let db = TxDb::from_guarded(tx)?;
    for (v, s) in written.iter().zip(&starts) {
        if !claim(&db, &body.practitioner, schedule, ty, *s, &v.id).await? {
            drop(db);
            return Err(BookError::Taken(alternatives(app, &body.practitioner, &ty.code, *s).await?));
        }
        enqueue_reminders(app, &db, &v.id, &patient, *s).await?;
    }
    if let (Some(first), Some(s)) = (written.first(), starts.first()) {
        notify_clinic(
            app,
            &db,
            caller,
            &body.practitioner,
            &format!("appointment-change:{}:1", first.id),
            "booked",
            *s,
        )
        .await?;
    }
    db.commit().await?;
    app.notifier.wake();
    Ok(written)
}

#[utoipa::path(post, path = "/api/v1/appointments", tag = "scheduling",
    request_body(content = BookBody, description = "A slot from the slot search: practitioner, start, type; `patient` (not for patients, who book for themselves), optional `schedule`, `reason` (kept in the record, never in messages), `virtual`, and `repeat` ({count, intervalDays}) for a series",
        example = json!({"practitioner": "123", "start": "2026-12-01T09:00:00Z", "type": "ROUTINE", "reason": "follow-up of blood pressure"})),
    responses(
        (status = 201, description = "Booked (all occurrences of a series); reminders are queued", body = AppointmentView),
        (status = 400, description = "Malformed request (`invalid_booking`)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Booking for someone this caller may not book for", body = ErrorEnvelope),
        (status = 404, description = "No such patient within reach", body = ErrorEnvelope),
        (status = 409, description = "The time is taken; `error.alternatives` lists free slots", body = ErrorEnvelope,
         example = json!({"error": {"code": "slot_taken", "message": "that time is no longer free; see the alternatives", "alternatives": [{"start": "2026-12-01T09:30:00Z", "end": "2026-12-01T10:00:00Z", "practitioner": "123", "schedule": "…", "type": "ROUTINE", "location": null, "service": null}]}})),
        (status = 422, description = "Not a slot of the practitioner's schedules (`not_a_slot`, `urgent_care_required`)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn book(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Response {
    let body: BookBody = match super::body_of(&bytes) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match book_for(&app, &caller, &body).await {
        Ok(written) => {
            let views: Vec<Value> =
                written.iter().filter_map(|v| json_of(v).ok().map(|j| view(&v.id, v.version_id, &j))).collect();
            let mut first = views.first().cloned().unwrap_or(Value::Null);
            if views.len() > 1
                && let Some(o) = first.as_object_mut()
            {
                o.insert("occurrences".into(), Value::Array(views));
            }
            (StatusCode::CREATED, Json(first)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// An appointment the caller reaches, with its current version.
async fn load(store: &Guarded, id: &str) -> Result<(Version, Value), ApiError> {
    read_json(store, "Appointment", id).await?.ok_or_else(|| not_found("appointment"))
}

#[utoipa::path(get, path = "/api/v1/appointments/{id}", tag = "scheduling",
    params(("id" = String, Path, description = "The appointment's id")),
    responses(
        (status = 200, description = "The appointment", body = AppointmentView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such appointment within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn get_one(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (v, a) = load(&app.store_for(&caller), &id).await?;
    Ok(Json(view(&v.id, v.version_id, &a)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_patient")]
    patient: Option<String>,
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_practitioner")]
    practitioner: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/appointments", tag = "scheduling",
    params(
        ("patient" = Option<String>, Query, description = "A patient's id (a patient's own by default)"),
        ("practitioner" = Option<String>, Query, description = "A practitioner's id"),
    ),
    responses(
        (status = 200, description = "Appointments within the caller's reach, by start", body = AppointmentList),
        (status = 400, description = "Neither patient nor practitioner given", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let patient = q.patient.or_else(|| caller.own_patient().map(str::to_owned));
    let mut pairs = vec![("_sort", "date".to_owned())];
    match (&patient, &q.practitioner) {
        (None, None) => return Err(bad("invalid_query", "give `patient` or `practitioner`")),
        (p, pr) => {
            for (key, ty, id) in [("patient", "Patient", p), ("practitioner", "Practitioner", pr)] {
                if let Some(id) = id {
                    if !hearth_workflow::fhir::valid_id(id) {
                        return Err(bad("invalid_query", format!("`{key}` must be a resource id")));
                    }
                    pairs.push(("actor", format!("{ty}/{id}")));
                }
            }
        }
    }
    let found = search_all(&app, &app.store_for(&caller), "Appointment", &pairs, 500).await?;
    let bodies: Vec<(&Version, Value)> = found.iter().filter_map(|v| json_of(v).ok().map(|a| (v, a))).collect();
    let appointments = bodies.iter().map(|(v, a)| appointment_view(&v.id, v.version_id, a)).collect();
    Ok(Json(json!(AppointmentList { appointments })))
}

/// Why the appointment is cancelled (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// A code of the appointment-cancellation-reason code system (default `pat` from a patient
    /// or caregiver, `prov` from staff).
    reason: Option<String>,
}

fn body_or_default<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { super::body_of(bytes) }
}

fn set(a: &mut Value, key: &str, v: Value) {
    if let Some(o) = a.as_object_mut() {
        o.insert(key.into(), v);
    }
}

fn push_extension(a: &mut Value, ext: Value) {
    if let Some(o) = a.as_object_mut() {
        match o.get_mut("extension").and_then(Value::as_array_mut) {
            Some(list) => list.push(ext),
            None => {
                o.insert("extension".into(), json!([ext]));
            }
        }
    }
}

fn start_of(a: &Value) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let at = |k: &str| {
        a.get(k)
            .and_then(Value::as_str)
            .and_then(hearth_workflow::fhir::parse_instant)
            .ok_or_else(|| ApiError::internal("appointment without start/end"))
    };
    Ok((at("start")?, at("end")?))
}

fn practitioner_of(a: &Value) -> Result<String, ApiError> {
    a.get("participant")
        .and_then(Value::as_array)
        .and_then(|ps| ps.iter().find_map(|p| ref_id(p, "/actor/reference", "Practitioner")))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::internal("appointment without practitioner"))
}

fn patient_of(a: &Value) -> Result<String, ApiError> {
    a.get("participant")
        .and_then(Value::as_array)
        .and_then(|ps| ps.iter().find_map(|p| ref_id(p, "/actor/reference", "Patient")))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::internal("appointment without patient"))
}

#[utoipa::path(post, path = "/api/v1/appointments/{id}/cancel", tag = "scheduling",
    params(("id" = String, Path, description = "The appointment's id")),
    request_body(content = CancelBody, description = "Optional `reason`: an appointment-cancellation-reason code", example = json!({"reason": "pat-swl"})),
    responses(
        (status = 200, description = "Cancelled; pending reminders cancelled, the time offered to the waitlist; `cancellation.late` inside the late-cancel window", body = AppointmentView),
        (status = 400, description = "Unknown reason code (`invalid_reason`)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such appointment within reach", body = ErrorEnvelope),
        (status = 409, description = "Not booked, or already started", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_status", "message": "only a booked appointment that has not started can be cancelled"}})),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: CancelBody = body_or_default(&bytes)?;
    let code = body.reason.unwrap_or_else(|| if is_staff(&caller) { "prov" } else { "pat" }.to_owned());
    if !CANCEL_CODES.contains(&code.as_str()) {
        return Err(bad("invalid_reason", "`reason` must be an appointment-cancellation-reason code"));
    }
    let now = app.clock.now();
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(not_found("appointment"));
    }
    let store = app.store_for(&caller);
    let mut tx = store.begin().await?.scheduling();
    let (v, mut a) = super::read_in(&mut tx, "Appointment", &id, "appointment").await?;
    let (start, end) = start_of(&a)?;
    if a.get("status").and_then(Value::as_str) != Some("booked") || now >= start {
        return Err(conflict("invalid_status", "only a booked appointment that has not started can be cancelled"));
    }
    let late = now > start - Duration::hours(i64::from(app.config.late_cancel_hours));
    set(&mut a, "status", json!("cancelled"));
    set(&mut a, "cancelationReason", json!({"coding": [{"system": CANCEL_REASON, "code": code}]}));
    push_extension(&mut a, json!({"url": format!("{EXT}appointment-late-cancellation"), "valueBoolean": late}));
    super::check(&app, "Appointment", &a)?;
    let practitioner = practitioner_of(&a)?;
    let write = hearth_workflow::fhir::write_of(&app, "Appointment", id.clone(), a);
    let written = interactions::update(&mut tx, write, Some(v.version_id), now).await?;
    let db = TxDb::from_guarded(tx)?;
    sql::release(&db, &id).await?;
    notify::cancel_prefix(&db, &reminder_prefix(&id), now).await?;
    notify_clinic(
        &app,
        &db,
        &caller,
        &practitioner,
        &format!("appointment-change:{id}:{}", written.version.version_id),
        "cancelled",
        start,
    )
    .await?;
    offer_freed(&app, &db, &practitioner, start, end).await?;
    db.commit().await?;
    app.notifier.wake();
    let a = json_of(&written.version)?;
    Ok(Json(view(&id, written.version.version_id, &a)))
}

/// The new time.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleBody {
    /// A free slot's start of the same practitioner and type (RFC 3339).
    #[schema(example = "2026-12-02T10:00:00Z")]
    start: String,
}

#[utoipa::path(post, path = "/api/v1/appointments/{id}/reschedule", tag = "scheduling",
    params(("id" = String, Path, description = "The appointment's id")),
    request_body(content = RescheduleBody, description = "The new start (a free slot of the same practitioner and type)", example = json!({"start": "2026-12-02T10:00:00Z"})),
    responses(
        (status = 200, description = "Moved (a new version); reminders rewritten for the new time, the old time offered to the waitlist", body = AppointmentView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such appointment within reach", body = ErrorEnvelope),
        (status = 409, description = "Not booked, or the new time is taken (`error.alternatives`)", body = ErrorEnvelope),
        (status = 422, description = "Not a slot (`not_a_slot`)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn reschedule(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    match reschedule_inner(&app, &caller, &id, &bytes).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn reschedule_inner(app: &Scheduling, caller: &Caller, id: &str, bytes: &[u8]) -> Result<Value, BookError> {
    let body: RescheduleBody = super::body_of(bytes)?;
    let new_start = super::parse_instant(&body.start, "start")?;
    let now = app.clock.now();
    let store = app.store_for(caller);
    let (_, current) = load(&store, id).await?;
    let practitioner = practitioner_of(&current)?;
    let patient = patient_of(&current)?;
    let code = current.pointer("/appointmentType/coding/0/code").and_then(Value::as_str).unwrap_or_default().to_owned();
    let schedule_id = current
        .get("extension")
        .and_then(Value::as_array)
        .and_then(|e| {
            e.iter()
                .find(|x| x.get("url").and_then(Value::as_str) == Some(format!("{EXT}appointment-schedule").as_str()))
        })
        .and_then(|e| ref_id(e, "/valueReference/reference", "Schedule"))
        .map(str::to_owned);
    let schedules = schedules_of(app, &practitioner, None).await?;
    let (schedule, ty) = slot_of(&schedules, schedule_id.as_deref(), &code, new_start).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_slot",
            "that start is not a slot of this appointment's schedule",
        )
    })?;
    let mut tx = store.begin().await?.scheduling();
    let (v, mut a) = super::read_in(&mut tx, "Appointment", id, "appointment").await?;
    let (old_start, old_end) = start_of(&a)?;
    if a.get("status").and_then(Value::as_str) != Some("booked") || now >= old_start {
        return Err(
            conflict("invalid_status", "only a booked appointment that has not started can be rescheduled").into()
        );
    }
    set(&mut a, "start", json!(instant(new_start)));
    set(&mut a, "end", json!(instant(new_start + Duration::minutes(i64::from(ty.minutes)))));
    super::check(app, "Appointment", &a)?;
    let write = hearth_workflow::fhir::write_of(app, "Appointment", id.to_owned(), a);
    let written = interactions::update(&mut tx, write, Some(v.version_id), now).await?;
    let db = TxDb::from_guarded(tx)?;
    sql::release(&db, id).await?;
    // The rules too (notice, horizon, per-day limit), as seen before this transaction.
    let free = schedule.availability.free(
        ty,
        new_start,
        new_start + Duration::milliseconds(1),
        now,
        &sql::claimed(
            &db,
            &practitioner,
            (new_start - Duration::days(2)).timestamp_millis(),
            (new_start + Duration::days(2)).timestamp_millis(),
        )
        .await?,
    );
    if free.is_empty() || !claim(&db, &practitioner, schedule, ty, new_start, id).await? {
        drop(db);
        return Err(BookError::Taken(alternatives(app, &practitioner, &code, new_start).await?));
    }
    notify::cancel_prefix(&db, &reminder_prefix(id), now).await?;
    enqueue_reminders(app, &db, id, &patient, new_start).await?;
    notify_clinic(
        app,
        &db,
        caller,
        &practitioner,
        &format!("appointment-change:{id}:{}", written.version.version_id),
        "rescheduled",
        new_start,
    )
    .await?;
    offer_freed(app, &db, &practitioner, old_start, old_end).await?;
    db.commit().await?;
    app.notifier.wake();
    let a = json_of(&written.version)?;
    Ok(view(id, written.version.version_id, &a))
}

/// Moves an appointment from `booked` to `to`, optionally with an Encounter created in the same
/// transaction.
#[utoipa::path(post, path = "/api/v1/appointments/{id}/no-show", tag = "scheduling",
    params(("id" = String, Path, description = "The appointment's id")),
    responses(
        (status = 200, description = "Marked `noshow`; pending reminders cancelled", body = AppointmentView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Only clinicians and admins mark no-shows", body = ErrorEnvelope),
        (status = 404, description = "No such appointment within reach", body = ErrorEnvelope),
        (status = 409, description = "Not booked, or not started yet", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn no_show(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !is_staff(&caller) {
        return Err(forbidden("only clinicians and admins mark no-shows"));
    }
    let now = app.clock.now();
    let mut tx = app.store_for(&caller).begin().await?.scheduling();
    let (v, mut a) = super::read_in(&mut tx, "Appointment", &id, "appointment").await?;
    let (start, _) = start_of(&a)?;
    if a.get("status").and_then(Value::as_str) != Some("booked") || now < start {
        return Err(conflict("invalid_status", "only a booked appointment whose start has passed can be a no-show"));
    }
    set(&mut a, "status", json!("noshow"));
    let write = hearth_workflow::fhir::write_of(&app, "Appointment", id.clone(), a);
    let written = interactions::update(&mut tx, write, Some(v.version_id), now).await?;
    let db = TxDb::from_guarded(tx)?;
    notify::cancel_prefix(&db, &reminder_prefix(&id), now).await?;
    db.commit().await?;
    let a = json_of(&written.version)?;
    Ok(Json(view(&id, written.version.version_id, &a)))
}

#[utoipa::path(post, path = "/api/v1/appointments/{id}/check-in", tag = "scheduling",
    params(("id" = String, Path, description = "The appointment's id")),
    responses(
        (status = 200, description = "Appointment `arrived` and its Encounter (`arrived`) created in one transaction", body = CheckedIn,
         example = json!({"appointment": {"id": "…", "status": "arrived"}, "encounter": {"id": "…", "status": "arrived", "class": "AMB"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such appointment within reach", body = ErrorEnvelope),
        (status = 409, description = "Not booked, or outside the check-in window (two hours before the start until its end)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn check_in(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = app.clock.now();
    let mut tx = app.store_for(&caller).begin().await?.scheduling();
    let (v, mut a) = super::read_in(&mut tx, "Appointment", &id, "appointment").await?;
    let (start, end) = start_of(&a)?;
    if a.get("status").and_then(Value::as_str) != Some("booked") {
        return Err(conflict("invalid_status", "only a booked appointment can be checked in"));
    }
    if now < start - Duration::hours(2) || now > end {
        return Err(conflict("check_in_window", "check-in opens two hours before the start and closes at its end"));
    }
    set(&mut a, "status", json!("arrived"));
    let is_virtual = view(&id, 0, &a).get("virtual").and_then(Value::as_bool).unwrap_or(false);
    let encounter = super::encounters::from_appointment(&id, &a, is_virtual, now)?;
    super::check(&app, "Encounter", &encounter)?;
    let write = hearth_workflow::fhir::write_of(&app, "Appointment", id.clone(), a);
    let written = interactions::update(&mut tx, write, Some(v.version_id), now).await?;
    let e_write = hearth_workflow::fhir::write_of(&app, "Encounter", uuid::Uuid::now_v7().to_string(), encounter);
    let e = interactions::create(&mut tx, e_write, now).await?;
    tx.commit().await?;
    let a = json_of(&written.version)?;
    Ok(Json(json!({
        "appointment": view(&id, written.version.version_id, &a),
        "encounter": super::encounters::view(&e.id, e.version_id, &json_of(&e)?),
    })))
}

/// Wait for a slot with a practitioner between two instants.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitBody {
    /// The practitioner's id (or `Practitioner/<id>`).
    #[serde(deserialize_with = "hearth_workflow::refs::practitioner")]
    practitioner: String,
    /// The patient's id; patients wait for themselves and leave it out.
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_patient")]
    patient: Option<String>,
    /// RFC 3339.
    #[schema(example = "2026-12-01T00:00:00Z")]
    earliest: String,
    /// RFC 3339.
    #[schema(example = "2026-12-08T00:00:00Z")]
    latest: String,
}

fn wait_view(w: &sql::WaitRow) -> WaitEntry {
    let t = |ms: i64| DateTime::from_timestamp_millis(ms).map(instant);
    WaitEntry {
        id: w.id.clone(),
        practitioner: w.practitioner.clone(),
        patient: w.patient.clone(),
        earliest: t(w.earliest),
        latest: t(w.latest),
        offered: w.offered_start.and_then(t),
    }
}

#[utoipa::path(post, path = "/api/v1/waitlist", tag = "scheduling",
    request_body(content = WaitBody, description = "Wait for a slot with a practitioner between two instants; a freed slot in that window is offered (a notification) to the oldest entry first",
        example = json!({"practitioner": "123", "earliest": "2026-12-01T00:00:00Z", "latest": "2026-12-08T00:00:00Z"})),
    responses(
        (status = 201, description = "On the waitlist", body = WaitEntry),
        (status = 400, description = "Malformed request", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such patient within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn join_waitlist(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: WaitBody = super::body_of(&bytes)?;
    let patient = patient_for(&caller, body.patient.as_deref())?;
    if !hearth_workflow::fhir::valid_id(&body.practitioner) {
        return Err(bad("invalid_booking", "`practitioner` must be a resource id"));
    }
    let (earliest, latest) =
        (super::parse_instant(&body.earliest, "earliest")?, super::parse_instant(&body.latest, "latest")?);
    if latest <= earliest {
        return Err(bad("invalid_range", "`latest` must be after `earliest`"));
    }
    if read_json(&app.store_for(&caller), "Patient", &patient).await?.is_none() {
        return Err(not_found("patient"));
    }
    let row = sql::WaitRow {
        id: uuid::Uuid::now_v7().to_string(),
        practitioner: body.practitioner,
        patient,
        account_id: (caller.role == Role::Patient).then(|| caller.account.id.clone()),
        earliest: earliest.timestamp_millis(),
        latest: latest.timestamp_millis(),
        created_at: app.clock.now().timestamp_millis(),
        offered_at: None,
        offered_start: None,
    };
    sql::wait_insert(&*app.db, &row).await?;
    Ok((StatusCode::CREATED, Json(wait_view(&row))).into_response())
}

/// The patient ids a caller's waitlist view covers (`None`: everyone).
fn wait_scope(caller: &Caller) -> Option<Vec<String>> {
    match &caller.access.reach {
        hearth_store::Reach::All => None,
        hearth_store::Reach::Patients { set: hearth_store::PatientSet::Ids(ids), .. } => Some(ids.to_vec()),
        // An organisation's clinicians see the entries of the patients they book for; without
        // a list here, only those they themselves reach by id.
        hearth_store::Reach::Patients { set: hearth_store::PatientSet::Organization { also, .. }, .. } => {
            Some(also.clone())
        }
    }
}

#[utoipa::path(get, path = "/api/v1/waitlist", tag = "scheduling",
    responses(
        (status = 200, description = "Waitlist entries of the patients within reach, oldest first", body = Waitlist),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn waitlist(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Value>, ApiError> {
    let rows = sql::wait_list(&*app.db, wait_scope(&caller).as_deref()).await?;
    Ok(Json(json!(Waitlist { waitlist: rows.iter().map(wait_view).collect() })))
}

#[utoipa::path(delete, path = "/api/v1/waitlist/{id}", tag = "scheduling",
    params(("id" = String, Path, description = "The entry's id")),
    responses(
        (status = 204, description = "Off the waitlist"),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such entry within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn leave_waitlist(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let rows = sql::wait_list(&*app.db, wait_scope(&caller).as_deref()).await?;
    if !rows.iter().any(|r| r.id == id) || !sql::wait_delete(&*app.db, &id).await? {
        return Err(not_found("waitlist entry"));
    }
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ FHIR operations

pub(crate) fn fhir_error(e: ApiError) -> FhirError {
    let code = match e.status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::CONFLICT => "conflict",
        StatusCode::UNAUTHORIZED => "login",
        s if s.is_server_error() => "exception",
        _ => "invalid",
    };
    if e.status.is_server_error() {
        return FhirError::internal(e.message);
    }
    FhirError::new(e.status, hearth_workflow::error::Issue::error(code, e.message))
}

fn book_error(e: BookError) -> FhirError {
    match e {
        BookError::Api(e) => fhir_error(e),
        BookError::Taken(alternatives) => {
            let list: Vec<String> = alternatives.iter().map(|a| instant(a.slot.start)).collect();
            FhirError::new(
                StatusCode::CONFLICT,
                hearth_workflow::error::Issue::error(
                    "conflict",
                    format!(
                        "that time is no longer free; free starts nearby: {}",
                        if list.is_empty() { "none".into() } else { list.join(", ") }
                    ),
                ),
            )
        }
    }
}

fn not_appointment(resource_type: &str) -> Result<(), FhirError> {
    if resource_type == "Appointment" {
        Ok(())
    } else {
        Err(FhirError::not_found(format!("no operation of that name on {resource_type}")))
    }
}

/// `GET /fhir/Appointment/$find?practitioner=&start=&end=[&service=][&type=]`: free slots as a
/// searchset Bundle of `Slot` resources (computed, not stored, so without ids).
pub async fn find_op(
    State(app): State<Arc<Scheduling>>,
    Path(resource_type): Path<String>,
    // Any signed-in caller: slots are not patient data.
    _caller: Caller,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Response, FhirError> {
    not_appointment(&resource_type)?;
    let get = |k: &str| q.get(k).cloned();
    let practitioner =
        get("practitioner").ok_or_else(|| FhirError::bad_request("required", "`practitioner` is required"))?;
    let (start, end) = (
        get("start").ok_or_else(|| FhirError::bad_request("required", "`start` is required"))?,
        get("end").ok_or_else(|| FhirError::bad_request("required", "`end` is required"))?,
    );
    if let Some(unknown) = q.keys().find(|k| !["practitioner", "service", "start", "end", "type"].contains(&k.as_str()))
    {
        return Err(FhirError::bad_request("not-supported", format!("unknown parameter `{unknown}`")));
    }
    if !hearth_workflow::fhir::valid_id(&practitioner) {
        return Err(FhirError::bad_request("invalid", "`practitioner` must be a resource id"));
    }
    let (from, to) = super::schedules::range(&app, &start, &end).map_err(fhir_error)?;
    let found = free_slots(&app, &practitioner, get("service").as_deref(), get("type").as_deref(), from, to)
        .await
        .map_err(fhir_error)?;
    let entries: Vec<Value> = found
        .iter()
        .map(|f| {
            json!({"resource": {
                "resourceType": "Slot",
                "schedule": {"reference": format!("Schedule/{}", f.schedule)},
                "status": "free",
                "start": instant(f.slot.start),
                "end": instant(f.slot.end),
                "appointmentType": {"coding": [{"system": V2_0276, "code": f.appointment_type}]},
            }, "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(([(axum::http::header::CONTENT_TYPE, "application/fhir+json")], bundle.to_string()).into_response())
}

/// `POST /fhir/Appointment/$book` with an `Appointment` (or a `Parameters` whose `appointment`
/// parameter holds one) naming a Patient and a Practitioner participant, `start` and an
/// `appointmentType` (HL7 v2 0276): books it exactly as the app API does.
pub async fn book_op(
    State(app): State<Arc<Scheduling>>,
    Path(resource_type): Path<String>,
    caller: Caller,
    bytes: axum::body::Bytes,
) -> Result<Response, FhirError> {
    not_appointment(&resource_type)?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| FhirError::bad_request("structure", e.to_string()))?;
    let a = match body.get("resourceType").and_then(Value::as_str) {
        Some("Appointment") => body.clone(),
        Some("Parameters") => body
            .get("parameter")
            .and_then(Value::as_array)
            .and_then(|ps| ps.iter().find(|p| p.get("name").and_then(Value::as_str) == Some("appointment")))
            .and_then(|p| p.get("resource").cloned())
            .ok_or_else(|| FhirError::bad_request("required", "the `appointment` parameter is required"))?,
        _ => return Err(FhirError::bad_request("invalid", "send an Appointment or Parameters")),
    };
    let actor = |ty: &str| {
        a.get("participant")
            .and_then(Value::as_array)
            .and_then(|ps| ps.iter().find_map(|p| ref_id(p, "/actor/reference", ty)))
            .map(str::to_owned)
    };
    let body = BookBody {
        practitioner: actor("Practitioner")
            .ok_or_else(|| FhirError::bad_request("required", "a Practitioner participant is required"))?,
        start: a
            .get("start")
            .and_then(Value::as_str)
            .ok_or_else(|| FhirError::bad_request("required", "`start` is required"))?
            .to_owned(),
        appointment_type: a
            .pointer("/appointmentType/coding/0/code")
            .and_then(Value::as_str)
            .ok_or_else(|| FhirError::bad_request("required", "`appointmentType` (HL7 v2 0276) is required"))?
            .to_owned(),
        patient: actor("Patient"),
        schedule: None,
        reason: a.pointer("/reasonCode/0/text").and_then(Value::as_str).map(str::to_owned),
        is_virtual: false,
        repeat: None,
    };
    let written = book_for(&app, &caller, &body).await.map_err(book_error)?;
    let v = written.first().ok_or_else(|| FhirError::internal("a booking wrote nothing"))?;
    let text = v.body.as_deref().unwrap_or_default().to_owned();
    Ok((
        StatusCode::CREATED,
        [
            (axum::http::header::CONTENT_TYPE, "application/fhir+json".to_owned()),
            (axum::http::header::ETAG, format!("W/\"{}\"", v.version_id)),
        ],
        text,
    )
        .into_response())
}

//! Scheduling, encounters and clinical notes (issue 8): availability (`schedules.rs`), slot
//! computation (`slots.rs`, pure), booking with reminders (`booking.rs`), encounters
//! (`encounters.rs`) and letters and notes (`letters.rs`). FHIR resources are the record; the
//! app API on top is task-oriented, like `consent.rs`.
//!
//! Decisions:
//! - Availability is a FHIR `Schedule` (actor: the `Practitioner`, and the `Location` and
//!   `HealthcareService` it is for) whose weekly hours, appointment types, exceptions and
//!   booking rules are extensions (`urn:hearth:extension:schedule-*`): R4 has no element for a
//!   time zone or for durations per appointment type. A `PractitionerRole` written with it states the weekly
//!   hours and closures in FHIR's own elements for other readers. Slots are computed from it on demand and
//!   never stored; `Appointment/$find` answers them as `Slot` resources that are not kept.
//! - A booking is one transaction: the `Appointment` (written through the caller's
//!   `GuardedTx`, so reach and attribution apply), then, on the same transaction handed on as
//!   a `TxDb` (`TxDb::from_guarded`), the practitioner's claimed 5-minute cells
//!   (`sched_claims`, primary key `(practitioner, cell)`), the patient's reminders and the
//!   clinic's notice. Overlapping bookings cannot both commit on either backend or across
//!   processes; the loser gets `409 slot_taken` with alternatives.
//! - Schedules are not in a patient compartment, so clinicians bound to an organisation could
//!   not write them through their own reach: the app checks that the caller is that
//!   practitioner or an admin, then writes with an unrestricted reach attributed to the caller.
//! - Message texts name a time and nothing else (no practitioner, reason or diagnosis).

pub mod booking;
pub mod encounters;
pub mod fhir_writes;
pub mod letters;
pub mod schedules;
pub mod slots;

use std::sync::Arc;

use axum::http::StatusCode;
use hearth_auth::Role;
use hearth_store::{Access, Current, Grants, Guarded, Reach, Version};
use serde_json::Value;

use hearth_notifications::Notifier;
use hearth_workflow::error::ApiError;
use hearth_workflow::{Caller, Ctx, Mount, Workflow};
use serde::Deserialize;

pub use booking::{book_op, find_op};

pub(crate) const V2_0276: &str = "http://terminology.hl7.org/CodeSystem/v2-0276";
pub(crate) const EXT: &str = "urn:hearth:extension:";

/// The routes on patient data (appointments, encounters, letters): mounted under the audit
/// layer, one AuditEvent per request naming the patients it touched.
/// The scheduling workflow's state: the shared context, its settings, and the notifications
/// API it enqueues reminders through.
pub struct Scheduling {
    ctx: Arc<Ctx>,
    pub config: SchedulingConfig,
    pub notifier: Arc<Notifier>,
}

impl Scheduling {
    pub fn new(ctx: Arc<Ctx>, config: SchedulingConfig, notifier: Arc<Notifier>) -> Scheduling {
        Scheduling { ctx, config, notifier }
    }
}

impl std::ops::Deref for Scheduling {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Scheduling {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    schedules::list,
    schedules::get_one,
    schedules::create,
    schedules::replace,
    schedules::available,
    booking::book,
    booking::list,
    booking::get_one,
    booking::cancel,
    booking::reschedule,
    booking::no_show,
    booking::check_in,
    booking::waitlist,
    booking::join_waitlist,
    booking::leave_waitlist,
    encounters::create,
    encounters::list,
    encounters::get_one,
    encounters::update,
    letters::create,
    letters::list,
    letters::get_one,
    letters::update,
    letters::versions,
    letters::create_note,
    letters::list_notes,
))]
struct Api;

impl Workflow for Scheduling {
    /// Appointments, encounters and letters are patient data (every request audited);
    /// availability and slot search are not (refusals audited); `Appointment/$find` and
    /// `$book` are FHIR operations under `/fhir`.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: axum::Router::new()
                .merge(booking::router())
                .merge(encounters::router())
                .merge(letters::router())
                .with_state(Arc::clone(&self)),
            refusals_audited: schedules::router().with_state(Arc::clone(&self)),
            fhir_operations: axum::Router::new()
                .route("/{type}/$find", axum::routing::get(find_op))
                .route("/{type}/$book", axum::routing::post(book_op))
                .with_state(self),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}

/// The `[scheduling]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulingConfig {
    /// Reminders before each appointment, in minutes (default 24 h and 2 h). A reminder whose
    /// time has already passed at booking is not sent.
    pub reminder_offsets_minutes: Vec<u32>,
    /// A cancellation less than this many hours before the start is recorded as late.
    pub late_cancel_hours: u32,
    /// The longest range one slot search may cover, in days.
    pub max_search_days: u32,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        SchedulingConfig { reminder_offsets_minutes: vec![24 * 60, 120], late_cancel_hours: 24, max_search_days: 62 }
    }
}

pub(crate) fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

pub(crate) fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg)
}

pub(crate) fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

pub(crate) fn conflict(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, msg)
}

pub(crate) fn body_of<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| bad("invalid_body", e.to_string()))
}

/// The current version of `resource_type/id` inside `tx` and its JSON; `404 {what}` when the
/// caller cannot see it or it is gone.
pub(crate) async fn read_in(
    tx: &mut hearth_store::GuardedTx,
    resource_type: &str,
    id: &str,
    what: &str,
) -> Result<(Version, Value), ApiError> {
    match tx.read(resource_type, id).await? {
        hearth_store::Current::Found(v) => {
            let json = json_of(&v)?;
            Ok((v, json))
        }
        _ => Err(not_found(what)),
    }
}

pub(crate) fn json_of(v: &Version) -> Result<Value, ApiError> {
    v.body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| ApiError::internal("stored resource is not JSON"))
}

pub(crate) fn is_staff(caller: &Caller) -> bool {
    matches!(caller.role, Role::Clinician | Role::Admin)
}

/// The caller's own `Practitioner` id (clinicians).
pub(crate) fn own_practitioner(caller: &Caller) -> Option<&str> {
    caller.account.fhir_user.as_deref().and_then(|u| u.strip_prefix("Practitioner/"))
}

/// The store with an unrestricted reach, attributed to the caller, for writes the app has
/// authorised itself (schedules; see the module docs).
pub(crate) fn acting_for(app: &Scheduling, caller: &Caller) -> Guarded {
    let access =
        Access { reach: Reach::All, grants: Grants::all(), actor: Some(caller.account.id.clone()), audit: false };
    let store = Guarded::new(Arc::clone(&app.store), access);
    match &caller.audit {
        Some(slip) => store.witnessed(Arc::clone(slip) as Arc<dyn hearth_store::Witness>),
        None => store,
    }
}

/// Validates a resource built by the app API against R4 (a failure is our bug: 500).
pub(crate) fn check(app: &Scheduling, resource_type: &str, resource: &Value) -> Result<(), ApiError> {
    hearth_workflow::fhir::validate(app, resource_type, resource).map_err(|e| {
        ApiError::internal(format!(
            "the {resource_type} built for the app API does not validate: {:?}",
            e.issues.first().map(|i| &i.diagnostics)
        ))
    })
}

/// A live resource the caller may read, as JSON with its version.
pub(crate) async fn read_json(
    store: &Guarded,
    resource_type: &str,
    id: &str,
) -> Result<Option<(Version, Value)>, ApiError> {
    if !hearth_workflow::fhir::valid_id(id) {
        return Ok(None);
    }
    match store.read(resource_type, id).await? {
        Current::Found(v) => {
            let j = json_of(&v)?;
            Ok(Some((v, j)))
        }
        _ => Ok(None),
    }
}

/// `Type/id` → `id` when the reference is of that type.
pub(crate) fn ref_id<'a>(v: &'a Value, pointer: &str, resource_type: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(resource_type))
        .and_then(|r| r.strip_prefix('/'))
}

pub(crate) fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn parse_instant(s: &str, field: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    hearth_workflow::fhir::parse_instant(s).filter(|_| s.contains('T')).ok_or_else(|| {
        bad("invalid_time", format!("`{field}` must be an instant with a time zone, e.g. 2026-12-01T09:00:00Z"))
    })
}

/// Every live match of a search the store view `store` may see (at most `limit`).
pub(crate) async fn search_all(
    app: &Scheduling,
    store: &Guarded,
    resource_type: &str,
    pairs: &[(&str, String)],
    limit: usize,
) -> Result<Vec<Version>, ApiError> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    let query = app
        .registry()
        .parse_query(&[resource_type], &pairs, hearth_search::Handling::Strict)
        .map_err(|e| ApiError::internal(format!("scheduling search does not parse: {e:?}")))?;
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let request = hearth_store::SearchRequest {
            query: query.clone(),
            access: Access::system(),
            compartment: None,
            cursor,
            count_total: false,
        };
        let page = store.search(request).await?;
        out.extend(page.matches);
        match page.next {
            Some(next) if out.len() < limit => cursor = Some(next),
            _ => return Ok(out),
        }
    }
}

/// Whether `s` can be a FHIR `string`: some text, no control characters but tab, CR and LF, at
/// most `max` bytes. (What the app API puts into resources is checked here, so that a resource
/// failing validation afterwards is our bug, never the caller's text.)
pub(crate) fn plain_text(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
}

/// Whether `s` can be a FHIR `code`: no leading, trailing or repeated whitespace.
pub(crate) fn fhir_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.trim() == s
        && !s.contains("  ")
        && !s.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' '))
}

/// Whether `s` is an absolute URI a coding's `system` may hold.
pub(crate) fn system_uri(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://") || s.starts_with("urn:"))
        && s.len() <= 500
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

//! Data rights (issue 7; GDPR art. 15, 17 and 20, DPDPA ss. 11–12): a patient downloads their
//! whole record, reads a plain summary of it, and asks for it to be erased; administrators
//! decide erasure requests and place legal holds.
//!
//! Decisions:
//! - **Who.** `/api/v1/me/data` and `/summary` serve a patient account their own record, and a
//!   caregiver account the record of a patient it acts for (`?patient=<id>`, within the
//!   caregiver's reach as consent and admin grants define it; outside it answers `404`). Staff
//!   use `Patient/{id}/$everything`. Only the patient asks for erasure (it is irreversible and
//!   removes their own account); caregivers cannot.
//! - **Download = the `$everything` reach, as a `collection` Bundle.** The patient, every member
//!   of their Patient compartment and the resources those reference (practitioners,
//!   organisations, medications), each once, read page by page through the caller's
//!   [`hearth_store::Guarded`] view and streamed (memory stays at one page, whatever the size
//!   of the record). It is sent as an attachment. The first page is read before the answer
//!   starts, so an error is a clean JSON error; a failure after that cuts the stream short (the
//!   JSON is then incomplete, which a client notices).
//! - **Summary = readable HTML**, self-contained (inline style, no script, no external
//!   resource), every value escaped; the newest [`summary::SUMMARY_ROWS`] of each section with a count
//!   of the rest. It is sent as an attachment too; served inline the API's CSP (`default-src
//!   'none'`) applies, so it shows unstyled and nothing in it could ever run.
//! - Both are PHI reads under the audit middleware: one `AuditEvent` per request naming the
//!   patient (learnt from the store view, like every FHIR read).
//! - **Erasure is decided by an administrator by default** (`[rights] erasure =
//!   "admin-approval"`): the patient's request is recorded (`requested`), an administrator
//!   executes or refuses it. With `erasure = "immediate"` the server executes it at once on the
//!   patient's behalf, as the system, unless a hold applies (then the request is recorded as
//!   `refused` with the hold's reason and the answer is `409 legal_hold`). One pending request
//!   per patient.
//! - **Legal holds**: an administrator's hold on a patient (with a reason), and the retention
//!   period `[rights] retention_days` (a record with any write in that many days is held; `0`
//!   turns it off). A held erasure answers `409` with the code `legal_hold` and the reason, and
//!   changes nothing.
//! - **What erasure removes and keeps** is the store's (`hearth_store::ErasurePlan`): all
//!   versions, bodies and index rows of the patient's record, the patient's login accounts
//!   and what is kept for them; a tombstone per resource (a deletion marker by the executing
//!   account) stays, so reads answer `410 Gone`. It runs in one transaction. Afterwards the
//!   freed space is purged where the backend can (SQLite: the WAL is checkpointed and
//!   truncated; freed pages were zeroed). AuditEvents stay: they hold no clinical content, live
//!   in their own store, and are the proof of who accessed the record. Backups and bulk export
//!   files made before the erasure keep their copies until they are deleted (README, "Data
//!   rights").
//! - **Its record**: the request row (`completed`, who executed it, when, how many resources;
//!   the patient's free-text reason is cleared) and an `AuditEvent` (DICOM 110110 "Patient
//!   Record", ISO 21089 lifecycle `destroy`, action `D`) naming the patient, the request, the
//!   account that asked and the one that executed, with counts only. Placing and lifting a hold
//!   are `hold`/`unhold` lifecycle events.

pub mod download;
pub mod erasure;
pub mod summary;

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use hearth_store::{Compartment, Current, Guarded};
use serde_json::{Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::{Caller, Ctx, Mount, Workflow};
use serde::Deserialize;

/// The data-rights workflow's state: the shared context and its settings.
pub struct Rights {
    ctx: Arc<Ctx>,
    pub config: RightsConfig,
}

impl Rights {
    pub fn new(ctx: Arc<Ctx>, config: RightsConfig) -> Rights {
        Rights { ctx, config }
    }
}

impl std::ops::Deref for Rights {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Rights {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    download::download,
    summary::summary,
    erasure::request_erasure,
    erasure::my_requests,
    erasure::list_requests,
    erasure::execute,
    erasure::refuse,
    erasure::get_hold,
    erasure::place_hold,
    erasure::lift_hold,
))]
struct Api;

impl Workflow for Rights {
    /// Every request reads or changes someone's record: each is an audit event.
    fn mount(self: Arc<Self>) -> Mount {
        Mount { audited: router().with_state(self), openapi: <Api as utoipa::OpenApi>::openapi(), ..Mount::default() }
    }
}

/// How a patient's erasure request is decided.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ErasureMode {
    /// An administrator executes or refuses each request (erasure is irreversible).
    #[default]
    AdminApproval,
    /// The server executes a request at once unless a hold applies.
    Immediate,
}

/// The `[rights]` table (see the crate docs).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RightsConfig {
    /// `admin-approval` (default) or `immediate`.
    pub erasure: ErasureMode,
    /// Retention hold: a record with any write in the last this many days is not erased
    /// (`0`: no retention hold).
    pub retention_days: u32,
}

fn router() -> axum::Router<Arc<Rights>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/me/data", get(download::download))
        .route("/api/v1/me/data/summary", get(summary::summary))
        .route("/api/v1/me/erasure", get(erasure::my_requests).post(erasure::request_erasure))
        .route("/api/v1/admin/erasure-requests", get(erasure::list_requests))
        .route("/api/v1/admin/erasure-requests/{id}/execute", post(erasure::execute))
        .route("/api/v1/admin/erasure-requests/{id}/refuse", post(erasure::refuse))
        .route(
            "/api/v1/admin/patients/{id}/legal-hold",
            get(erasure::get_hold).post(erasure::place_hold).delete(erasure::lift_hold),
        )
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

fn bad_query(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", msg)
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn instant_ms(ms: i64) -> Value {
    DateTime::from_timestamp_millis(ms).map_or(Value::Null, |t| json!(instant(t)))
}

/// The patient whose record the caller asks for: a patient's own, or for a caregiver the
/// `patient` parameter (reach is checked by the store when it is read).
fn subject(caller: &Caller, raw: Option<&str>) -> Result<String, ApiError> {
    let mut asked = None;
    for (k, v) in hearth_workflow::fhir::pairs(raw) {
        match k.as_str() {
            "patient" if hearth_workflow::fhir::valid_id(&v) => asked = Some(v),
            "patient" => return Err(not_found("patient record")),
            other => return Err(bad_query(format!("unknown parameter '{other}' (patient)"))),
        }
    }
    match (caller.role, caller.own_patient()) {
        (hearth_auth::Role::Patient, Some(own)) => match asked {
            Some(p) if p != own => Err(not_found("patient record")),
            _ => Ok(own.to_owned()),
        },
        (hearth_auth::Role::Caregiver, _) => {
            asked.ok_or_else(|| bad_query("a caregiver names the patient: ?patient=<Patient id>"))
        }
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this is for patients and their caregivers; staff use Patient/{id}/$everything",
        )),
    }
}

/// The Patient resource, read through the caller's view (which also names it to the audit slip).
async fn patient_of(store: &Guarded, id: &str) -> Result<Value, ApiError> {
    match store.read("Patient", id).await? {
        Current::Found(v) => v
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .ok_or_else(|| ApiError::internal("stored Patient is not JSON")),
        Current::Deleted(_) => Err(ApiError::new(StatusCode::GONE, "gone", "this patient record was deleted")),
        Current::NotFound => Err(not_found("patient record")),
    }
}

fn compartment(app: &Rights, patient: &str) -> Result<Compartment, ApiError> {
    let params = app
        .compartments
        .members("Patient")
        .ok_or_else(|| ApiError::internal("the Patient compartment is not defined"))?
        .to_vec();
    Ok(Compartment { owner_type: "Patient".into(), owner_id: patient.to_owned(), params })
}

fn attachment(resp: &mut Response, content_type: &'static str, filename: &str) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

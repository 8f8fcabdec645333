//! Staff messages: `POST /api/v1/notifications/send` (and `POST /api/push/send`, the path one of
//! the systems Hearth replaces used). A clinician or an admin writes a title and a message to a
//! patient, a list of patients, the Patient members of a FHIR `Group` or every patient an
//! `Organization` manages, and by default to their caregivers too.
//!
//! Decisions:
//! - Every patient is read through the caller's store view, so reach is the store's: a single
//!   `patient` out of reach is `404` (existence is private), a listed patient or Group member out
//!   of reach is skipped and counted; an organisation's patients are searched through the view,
//!   so those out of reach are simply not found. The route is audited: the request's audit event
//!   names every patient the view read.
//! - Each addressed patient becomes one patient notice (`staff-message` template, keyed
//!   `staff-send:<caller account>:<Idempotency-Key or a new id>:<patient>`), resolved to accounts
//!   when it is due like a reminder; a retried request with the same `Idempotency-Key` adds
//!   nothing (`already_queued` counts what was there).
//! - Categories: `announcement`, `results`, `appointment`, `medication`. `security` and
//!   `emergency` pass quiet hours and cannot be turned off, so a free-text message may not borrow
//!   them.
//! - Text is plain: the title at most 120 characters, no control characters; the message at most
//!   2000 characters, line breaks and tabs allowed, no other control characters. E-mail HTML is
//!   made by escaping (see `hearth_notify::templates`); SMS and push carry the title only.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use hearth_auth::Role;
use hearth_notify::{Category, ChannelKind};
use hearth_store::{Current, Guarded};
use hearth_store_sql::notify::TxDb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::{EnqueueError, Notifications, PatientNotice};
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

/// At most this many patients in `patients`.
pub const MAX_LISTED: usize = 500;
/// At most this many patients a Group or an organisation resolves to.
pub const MAX_RESOLVED: usize = 5000;
const MAX_TITLE: usize = 120;
const MAX_MESSAGE: usize = 2000;
const MAX_IDEMPOTENCY_KEY: usize = 64;
const CATEGORIES: [Category; 4] =
    [Category::Announcement, Category::Results, Category::Appointment, Category::Medication];

pub(crate) fn router() -> axum::Router<Arc<Notifications>> {
    axum::Router::new().route("/api/v1/notifications/send", post(send)).route("/api/push/send", post(push_send))
}

/// Who a staff message is for: exactly one of these keys.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Recipients {
    /// One Patient id (out of reach: `404`).
    Patient(String),
    /// 1 to 500 Patient ids (out of reach: skipped and counted).
    Patients(Vec<String>),
    /// A `Group` id: its active members that are Patients.
    Group(String),
    /// An `Organization` id: every patient whose `managingOrganization` it is.
    Organization(String),
}

/// A staff message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": {"group": "diabetes-clinic"}, "category": "announcement", "title": "Clinic closed on Monday", "message": "The clinic is closed on Monday 14 December. Your appointments that day will be moved; we will write to you.", "channels": ["in_app", "email"], "not_before": "2026-12-10T04:30:00Z"}))]
pub struct SendRequest {
    pub to: Recipients,
    /// Also each patient's caregivers (default true).
    #[serde(default = "yes")]
    pub include_caregivers: bool,
    /// `announcement`, `results`, `appointment` or `medication`.
    pub category: String,
    /// Plain text, 1 to 120 characters, no control characters (SMS and push show only this).
    pub title: String,
    /// Plain text, 1 to 2000 characters; line breaks allowed.
    pub message: String,
    /// Only these channels (`email`, `sms`, `webpush`, `fcm`, `in_app`); each recipient's
    /// preferences still apply. Default: every channel.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// Send at this instant (RFC 3339, at most a year ahead); default now.
    #[serde(default)]
    pub not_before: Option<String>,
}

fn yes() -> bool {
    true
}

/// What a send did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"key": "staff-send:0190…:retry-7", "patients": 2, "skipped_out_of_reach": 1, "queued": 2, "already_queued": 0, "include_caregivers": true, "not_before": "2026-12-10T04:30:00Z"}))]
pub struct SendAnswer {
    /// The idempotency key of this send (each patient's notice is `<key>:<patient>`).
    pub key: String,
    /// Patients addressed.
    pub patients: usize,
    /// Listed patients or Group members the caller does not reach (or that do not exist).
    pub skipped_out_of_reach: usize,
    /// Patient notices queued by this request.
    pub queued: usize,
    /// Patient notices an earlier request with the same `Idempotency-Key` had queued.
    pub already_queued: usize,
    pub include_caregivers: bool,
    /// When the messages go out.
    pub not_before: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what} (or not in your reach)"))
}

fn plain(s: &str, max: usize, lines: bool) -> bool {
    !s.trim().is_empty()
        && s.chars().count() <= max
        && !s.chars().any(|c| c.is_control() && !(lines && matches!(c, '\n' | '\r' | '\t')))
}

fn patient_id(id: &str) -> Result<&str, ApiError> {
    let id = id.strip_prefix("Patient/").unwrap_or(id);
    if hearth_workflow::fhir::valid_id(id) {
        Ok(id)
    } else {
        Err(bad("invalid_recipients", format!("`{}` is not a Patient id", id.chars().take(70).collect::<String>())))
    }
}

/// The validated parts of a request.
struct Checked {
    category: Category,
    channels: Option<Vec<ChannelKind>>,
    not_before: DateTime<Utc>,
    key: String,
}

fn check(app: &Notifications, caller: &Caller, headers: &HeaderMap, body: &SendRequest) -> Result<Checked, ApiError> {
    let category = Category::parse(&body.category).ok_or_else(|| {
        bad("invalid_category", "category must be one of announcement, results, appointment, medication")
    })?;
    if !CATEGORIES.contains(&category) {
        return Err(bad(
            "category_not_allowed",
            "security and emergency messages pass quiet hours and cannot be turned off; staff messages use announcement, results, appointment or medication",
        ));
    }
    if !plain(&body.title, MAX_TITLE, false) {
        return Err(bad("invalid_title", "title must be 1 to 120 characters of plain text without control characters"));
    }
    if !plain(&body.message, MAX_MESSAGE, true) {
        return Err(bad(
            "invalid_message",
            "message must be 1 to 2000 characters of plain text (line breaks allowed, no other control characters)",
        ));
    }
    let channels = match &body.channels {
        None => None,
        Some(list) => {
            let parsed: Option<Vec<ChannelKind>> = list.iter().map(|c| ChannelKind::parse(c)).collect();
            match parsed {
                Some(p) if !p.is_empty() => Some(p),
                _ => {
                    return Err(bad(
                        "invalid_channels",
                        "channels must be a non-empty subset of email, sms, webpush, fcm, in_app",
                    ));
                }
            }
        }
    };
    let now = app.clock.now();
    let not_before = match &body.not_before {
        None => now,
        Some(s) => {
            let t = hearth_workflow::fhir::parse_instant(s).filter(|_| s.contains('T')).ok_or_else(|| {
                bad("invalid_time", "not_before must be an instant with a time zone, e.g. 2026-12-10T04:30:00Z")
            })?;
            if t > now + TimeDelta::days(366) {
                return Err(bad("invalid_time", "not_before may be at most a year ahead"));
            }
            t.max(now)
        }
    };
    let token = match headers.get("idempotency-key") {
        None => uuid::Uuid::now_v7().to_string(),
        Some(v) => {
            let k = v.to_str().unwrap_or_default();
            if k.is_empty()
                || k.len() > MAX_IDEMPOTENCY_KEY
                || !k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
            {
                return Err(bad(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 64 characters of letters, digits, '-', '_', '.', ':'",
                ));
            }
            k.to_owned()
        }
    };
    Ok(Checked { category, channels, not_before, key: format!("staff-send:{}:{token}", caller.account.id) })
}

/// Whether the caller's view can read `Patient/id` (the read names it to the audit slip).
async fn reachable(store: &Guarded, id: &str) -> Result<bool, ApiError> {
    Ok(matches!(store.read("Patient", id).await?, Current::Found(_)))
}

async fn read(store: &Guarded, resource_type: &str, id: &str) -> Result<Option<Value>, ApiError> {
    if !hearth_workflow::fhir::valid_id(id) {
        return Err(bad("invalid_recipients", format!("not a {resource_type} id")));
    }
    match store.read(resource_type, id).await? {
        Current::Found(v) => Ok(v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())),
        _ => Ok(None),
    }
}

/// The patients addressed (in reach, de-duplicated, in order) and how many were skipped.
async fn resolve(app: &Notifications, store: &Guarded, to: &Recipients) -> Result<(Vec<String>, usize), ApiError> {
    let candidates: Vec<String> = match to {
        Recipients::Patient(id) => {
            let id = patient_id(id)?;
            if !reachable(store, id).await? {
                return Err(not_found("patient"));
            }
            return Ok((vec![id.to_owned()], 0));
        }
        Recipients::Patients(ids) => {
            if ids.is_empty() {
                return Err(bad("invalid_recipients", "patients must list at least one Patient id"));
            }
            if ids.len() > MAX_LISTED {
                return Err(bad("too_many_patients", format!("patients may list at most {MAX_LISTED} Patient ids")));
            }
            ids.iter().map(|i| patient_id(i).map(str::to_owned)).collect::<Result<_, _>>()?
        }
        Recipients::Group(id) => {
            let group = read(store, "Group", id).await?.ok_or_else(|| not_found("group"))?;
            let members: Vec<String> = group
                .get("member")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter(|m| m.get("inactive").and_then(Value::as_bool) != Some(true))
                        .filter_map(|m| m.pointer("/entity/reference").and_then(Value::as_str))
                        .filter_map(|r| r.strip_prefix("Patient/"))
                        .filter(|r| hearth_workflow::fhir::valid_id(r))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if members.len() > MAX_RESOLVED {
                return Err(bad(
                    "too_many_patients",
                    format!("a group sent to may have at most {MAX_RESOLVED} members"),
                ));
            }
            members
        }
        Recipients::Organization(id) => {
            read(store, "Organization", id).await?.ok_or_else(|| not_found("organization"))?;
            let pairs = [("organization".to_owned(), id.clone())];
            let found = app.search_all(store, "Patient", &pairs, MAX_RESOLVED + 1).await?;
            if found.len() > MAX_RESOLVED {
                return Err(bad(
                    "too_many_patients",
                    format!("an organisation sent to may have at most {MAX_RESOLVED} patients"),
                ));
            }
            // Found by the caller's own search: in reach by construction.
            let mut seen = BTreeSet::new();
            let ids = found.into_iter().map(|v| v.id).filter(|i| seen.insert(i.clone())).collect();
            return Ok((ids, 0));
        }
    };
    let mut seen = BTreeSet::new();
    let (mut ids, mut skipped) = (Vec::new(), 0);
    for id in candidates {
        if !seen.insert(id.clone()) {
            continue;
        }
        if reachable(store, &id).await? {
            ids.push(id);
        } else {
            skipped += 1;
        }
    }
    Ok((ids, skipped))
}

fn enqueue_error(e: EnqueueError) -> ApiError {
    match e {
        EnqueueError::Store(s) => s.into(),
        EnqueueError::Invalid(m) => bad("invalid_recipients", m),
        EnqueueError::Template(t) => ApiError::internal(format!("template {t} is missing")),
    }
}

async fn handle(
    app: Arc<Notifications>,
    caller: Caller,
    headers: HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    if !matches!(caller.role, Role::Clinician | Role::Admin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "staff messages are sent by clinicians and administrators",
        ));
    }
    let body: SendRequest =
        serde_json::from_slice(bytes).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let c = check(&app, &caller, &headers, &body)?;
    let store = app.store_for(&caller);
    let (patients, skipped) = resolve(&app, &store, &body.to).await?;
    let mut args = Map::new();
    args.insert("title".into(), json!(body.title.trim()));
    args.insert("message".into(), json!(body.message.trim()));
    let now = app.clock.now();
    let tx = TxDb::begin(&*app.db).await?;
    let (mut queued, mut already) = (0, 0);
    for p in &patients {
        let notice = PatientNotice {
            key: format!("{}:{p}", c.key),
            patient_id: p.clone(),
            category: c.category,
            template: "staff-message".into(),
            args: args.clone(),
            not_before: Some(c.not_before),
            channels: c.channels.clone(),
            include_caregivers: body.include_caregivers,
        };
        if crate::enqueue_for_patient(&app.notifier, &tx, &notice, now).await.map_err(enqueue_error)? {
            queued += 1;
        } else {
            already += 1;
        }
    }
    tx.commit().await?;
    app.notifier.wake();
    let answer = SendAnswer {
        key: c.key,
        patients: patients.len(),
        skipped_out_of_reach: skipped,
        queued,
        already_queued: already,
        include_caregivers: body.include_caregivers,
        not_before: c.not_before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

#[utoipa::path(post, path = "/api/v1/notifications/send", tag = "notifications", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 64 of [A-Za-z0-9-_.:]; a request retried with the same key queues nothing twice")),
    request_body(content = SendRequest, description = "A staff message to patients (and their caregivers)"),
    responses((status = 202, description = "Queued: one patient notice per patient addressed, resolved to accounts when it is sent", body = SendAnswer),
        (status = 400, description = "Bad input: invalid_body, invalid_recipients, too_many_patients, invalid_category, category_not_allowed, invalid_title, invalid_message, invalid_channels, invalid_time, invalid_idempotency_key", body = ErrorEnvelope,
            example = json!({"error": {"code": "invalid_message", "message": "message must be 1 to 2000 characters of plain text (line breaks allowed, no other control characters)"}})),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician or an administrator", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "staff messages are sent by clinicians and administrators"}})),
        (status = 404, description = "The patient, group or organisation is not in the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such group (or not in your reach)"}}))))]
pub(crate) async fn send(
    State(app): State<Arc<Notifications>>,
    ApiCaller(caller): ApiCaller,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    handle(app, caller, headers, &bytes).await
}

#[utoipa::path(post, path = "/api/push/send", tag = "notifications", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "As for /api/v1/notifications/send")),
    request_body(content = SendRequest, description = "The same as /api/v1/notifications/send (the path one of the replaced systems used)"),
    responses((status = 202, description = "Queued", body = SendAnswer),
        (status = 400, description = "Bad input (stable codes as for /api/v1/notifications/send)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_category", "message": "category must be one of announcement, results, appointment, medication"}})),
        (status = 401, description = "No valid token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician or an administrator", body = ErrorEnvelope),
        (status = 404, description = "The patient, group or organisation is not in the caller's reach", body = ErrorEnvelope)))]
pub(crate) async fn push_send(
    State(app): State<Arc<Notifications>>,
    ApiCaller(caller): ApiCaller,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    handle(app, caller, headers, &bytes).await
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(send, push_send), components(schemas(SendRequest, SendAnswer, Recipients)))]
pub(crate) struct Api;

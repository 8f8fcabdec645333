//! Erasure requests, their execution or refusal, and legal holds.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_store::{Access, Current, Erased, Erasure, ErasurePlan, Guarded, Hold};
use hearth_store_sql::erase::{self, HoldRow, RequestRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{bad_query, compartment, instant, instant_ms, not_found, patient_of};
use crate::ErasureMode;
use crate::Rights;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller, require_admin};

/// Longest accepted reason (request, refusal, hold), in characters.
const MAX_REASON: usize = 1000;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";

/// Why: optional for a patient's erasure request, required to refuse one or place a hold.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Reason {
    /// At most 1,000 characters; shown to the patient when a request is refused.
    #[schema(example = "I am moving to another provider")]
    reason: Option<String>,
}

/// An erasure request and, once decided, its outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureRequest {
    /// The request's id.
    id: String,
    /// The record to erase (`Patient/<id>`).
    #[schema(example = "Patient/0193a9d4-5b1e-7c2a-9f10-3a1b2c3d4e5f")]
    patient: String,
    /// The account that asked.
    requested_by: String,
    /// The patient's reason, if they gave one.
    reason: Option<String>,
    /// `requested`, `refused` or `completed`.
    #[schema(example = "requested")]
    status: String,
    /// When it was asked (RFC 3339).
    requested_at: Option<String>,
    /// When it was executed or refused.
    decided_at: Option<String>,
    /// The administrator who decided (`null` when the server executed it at once).
    decided_by: Option<String>,
    /// Why it was refused.
    decision: Option<String>,
    /// How many resources were erased (once completed).
    resources_erased: Option<i64>,
}

/// Erasure requests, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErasureRequests {
    requests: Vec<ErasureRequest>,
}

/// A legal hold: while it stands, the patient's record cannot be erased.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegalHold {
    /// `Patient/<id>`.
    patient: String,
    /// Why the record is held.
    #[schema(example = "litigation 2026-17")]
    reason: String,
    /// The administrator who placed it.
    placed_by: String,
    /// When (RFC 3339).
    placed_at: Option<String>,
}

fn text_instant(ms: i64) -> Option<String> {
    instant_ms(ms).as_str().map(str::to_owned)
}

/// An optional JSON body `{"reason": "…"}` (an empty body is no reason).
fn reason_of(bytes: &[u8], required: bool) -> Result<Option<String>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", m);
    let body: Reason = if bytes.iter().all(u8::is_ascii_whitespace) {
        Reason::default()
    } else {
        serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?
    };
    let reason = body.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON) {
        return Err(bad(format!("reason: at most {MAX_REASON} characters")));
    }
    if required && reason.is_none() {
        return Err(bad("give a `reason`".into()));
    }
    Ok(reason)
}

fn request_json(r: &RequestRow) -> ErasureRequest {
    ErasureRequest {
        id: r.id.clone(),
        patient: format!("Patient/{}", r.patient_id),
        requested_by: r.requested_by.clone(),
        reason: r.reason.clone(),
        status: r.status.clone(),
        requested_at: text_instant(r.requested_at),
        decided_at: r.decided_at.and_then(text_instant),
        decided_by: r.decided_by.clone(),
        decision: r.decision.clone(),
        resources_erased: r.resources,
    }
}

fn held(hold: &Hold, app: &Rights) -> ApiError {
    let message = match hold {
        Hold::Legal(reason) => format!("the record is under a legal hold: {reason}"),
        Hold::Retention(at) => format!(
            "the record is held for the retention period of {} days (last written {})",
            app.config.retention_days,
            instant(*at)
        ),
    };
    ApiError::new(StatusCode::CONFLICT, "legal_hold", message)
}

/// Who an event names: an account (identifier, role; no address, since the record of an
/// erasure must not keep one), or the server itself.
fn agent(account: Option<(&str, &str)>, requestor: bool) -> Value {
    match account {
        Some((id, role)) => json!({
            "who": {"identifier": {"system": "urn:hearth:account", "value": id}},
            "role": [{"coding": [{"system": "urn:hearth:role", "code": role}], "text": role}],
            "requestor": requestor,
        }),
        None => json!({"who": {"display": "Hearth"}, "requestor": requestor}),
    }
}

/// A record-lifecycle `AuditEvent` about `patient` (no content: ids, counts, the outcome).
fn lifecycle_event(
    code: &str,
    display: &str,
    action: &str,
    patient: &str,
    agents: Vec<Value>,
    description: String,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": LIFECYCLE, "code": code, "display": display}],
        "action": action,
        "recorded": instant(now),
        "outcome": "0",
        "outcomeDesc": description,
        "agent": agents,
        "source": {"observer": {"display": "Hearth"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": [{
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
        }],
    })
}

async fn record(app: &Rights, event: Value) -> Result<(), ApiError> {
    app.audit.record(event).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record a data-rights event in the audit trail");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "done, but its audit event could not be written; the request record shows the outcome",
        )
    })
}

/// Runs an erasure request through `store` (an administrator's view, or the system's in
/// immediate mode); `executor` is who the event names as having carried it out.
async fn run_erasure(
    app: &Rights,
    store: &Guarded,
    request: &RequestRow,
    executor: Option<(&str, &str)>,
) -> Result<Result<Erased, Hold>, ApiError> {
    let now = app.clock.now();
    let days = app.config.retention_days;
    let plan = ErasurePlan {
        patient: request.patient_id.clone(),
        params: compartment(app, &request.patient_id)?.params,
        retain_after: (days > 0).then(|| now - chrono::Duration::days(i64::from(days))),
        request: request.id.clone(),
        now,
    };
    let mut tx = store.begin().await?;
    let erased = match tx.erase_patient(&plan).await {
        Ok(Erasure::Done(e)) => e,
        Ok(Erasure::Held(hold)) => return Ok(Err(hold)),
        Ok(Erasure::NoSuchPatient) => return Err(not_found("patient record")),
        Err(hearth_store::StoreError::Conflict) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "erasure_not_pending",
                "this request is no longer pending",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    if let Err(e) = app.store.purge_freed().await {
        tracing::warn!(error = %e, "the space freed by an erasure could not be purged yet");
    }
    let description = format!(
        "erasure request {} (requested {}): {} resources and {} versions erased, {} login accounts removed, {} resources kept as part of other patients' records",
        request.id,
        instant_ms(request.requested_at).as_str().unwrap_or_default(),
        erased.resources,
        erased.versions,
        erased.accounts,
        erased.kept_shared
    );
    let agents = vec![agent(executor, true), agent(Some((request.requested_by.as_str(), "patient")), false)];
    let event = lifecycle_event("destroy", "Destroy/Delete", "D", &request.patient_id, agents, description, now);
    record(app, event).await?;
    tracing::info!(request = %request.id, resources = erased.resources, "erasure executed");
    Ok(Ok(erased))
}

#[utoipa::path(post, path = "/api/v1/me/erasure", tag = "data rights",
    request_body(content = Reason, description = "Optional: why (`reason`, at most 1,000 characters)", example = json!({"reason": "I am moving to another provider"})),
    responses(
        (status = 202, description = "Recorded; an administrator executes or refuses it (admin-approval mode)", body = ErasureRequest,
         example = json!({"id": "…", "patient": "Patient/…", "requestedBy": "…", "reason": "…", "status": "requested", "requestedAt": "2026-11-29T10:00:00.000Z", "decidedAt": null, "decidedBy": null, "decision": null, "resourcesErased": null})),
        (status = 200, description = "Executed at once (immediate mode): the record is erased and this account removed", body = ErasureRequest),
        (status = 400, description = "Malformed body", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "reason: at most 1000 characters"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a patient account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "erasure is requested by the patient"}})),
        (status = 409, description = "A request is already pending, or (immediate mode) a hold applies (`erasure_pending`)", body = ErrorEnvelope, example = json!({"error": {"code": "legal_hold", "message": "the record is under a legal hold: litigation 2026-17"}})),
    ),
    security(("bearer" = [])))]
pub async fn request_erasure(
    State(app): State<Arc<Rights>>,
    ApiCaller(caller): ApiCaller,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let (hearth_auth::Role::Patient, Some(patient)) = (caller.role, caller.own_patient()) else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "erasure is requested by the patient"));
    };
    let patient = patient.to_owned();
    let reason = reason_of(&bytes, false)?;
    patient_of(&app.store_for(&caller), &patient).await?;
    let now = app.clock.now();
    let mut request = RequestRow {
        id: uuid::Uuid::now_v7().to_string(),
        patient_id: patient.clone(),
        requested_by: caller.account.id.clone(),
        reason,
        status: "requested".into(),
        requested_at: now.timestamp_millis(),
        decided_at: None,
        decided_by: None,
        decision: None,
        resources: None,
    };
    erase::insert_request(&*app.db, &request).await.map_err(|e| match e {
        hearth_store::StoreError::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "erasure_pending",
            "an erasure request of this record is already pending",
        ),
        e => e.into(),
    })?;
    if app.config.erasure == ErasureMode::AdminApproval {
        return Ok((StatusCode::ACCEPTED, Json(request_json(&request))).into_response());
    }
    // Immediate mode: the configuration is the decision; the server executes it as the system
    // (no acting account: the tombstones and the request's decision are the server's).
    let system = Guarded::new(Arc::clone(&app.store), Access::system());
    match run_erasure(&app, &system, &request, None).await? {
        Ok(_) => {}
        Err(hold) => {
            let err = held(&hold, &app);
            erase::refuse_request(&*app.db, &request.id, None, &err.message, app.clock.now().timestamp_millis())
                .await?;
            return Err(err);
        }
    }
    let done = erase::request(&*app.db, &request.id).await?;
    if let Some(done) = done {
        request = done;
    }
    Ok((StatusCode::OK, Json(request_json(&request))).into_response())
}

#[utoipa::path(get, path = "/api/v1/me/erasure", tag = "data rights",
    responses(
        (status = 200, description = "The signed-in patient's erasure requests, newest first", body = ErasureRequests, example = json!({"requests": []})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a patient account", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn my_requests(
    State(app): State<Arc<Rights>>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<ErasureRequests>, ApiError> {
    let (hearth_auth::Role::Patient, Some(patient)) = (caller.role, caller.own_patient()) else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "erasure is requested by the patient"));
    };
    let found = erase::requests(&*app.db, None, Some(patient), 100).await?;
    Ok(Json(ErasureRequests { requests: found.iter().map(request_json).collect() }))
}

#[utoipa::path(get, path = "/api/v1/admin/erasure-requests", tag = "data rights",
    params(
        ("status" = Option<String>, Query, description = "`requested`, `refused` or `completed`"),
        ("patient" = Option<String>, Query, description = "Only this Patient id's requests"),
    ),
    responses(
        (status = 200, description = "Erasure requests, newest first (at most 500)", body = ErasureRequests, example = json!({"requests": []})),
        (status = 400, description = "Bad query", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "status must be requested, refused or completed"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not an administrator", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}})),
    ),
    security(("bearer" = [])))]
pub async fn list_requests(
    State(app): State<Arc<Rights>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<ErasureRequests>, ApiError> {
    require_admin(&caller)?;
    let (mut status, mut patient) = (None, None);
    for (k, v) in hearth_workflow::fhir::pairs(raw.as_deref()) {
        match k.as_str() {
            "status" if matches!(v.as_str(), "requested" | "refused" | "completed") => status = Some(v),
            "status" => return Err(bad_query("status must be requested, refused or completed")),
            "patient" => patient = Some(v),
            other => return Err(bad_query(format!("unknown parameter '{other}' (status, patient)"))),
        }
    }
    let found = erase::requests(&*app.db, status.as_deref(), patient.as_deref(), 500).await?;
    Ok(Json(ErasureRequests { requests: found.iter().map(request_json).collect() }))
}

async fn pending(app: &Rights, id: &str) -> Result<RequestRow, ApiError> {
    let request = erase::request(&*app.db, id).await?.ok_or_else(|| not_found("erasure request"))?;
    if request.status != "requested" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "erasure_not_pending",
            format!("this request is already {}", request.status),
        ));
    }
    Ok(request)
}

#[utoipa::path(post, path = "/api/v1/admin/erasure-requests/{id}/execute", tag = "data rights",
    params(("id" = String, Path, description = "The erasure request")),
    responses(
        (status = 200, description = "Erased: the completed request (counts of what was removed)", body = ErasureRequest),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not an administrator (with the audit scope)", body = ErrorEnvelope),
        (status = 404, description = "No such request (or its patient no longer exists)", body = ErrorEnvelope),
        (status = 409, description = "Held (`legal_hold`, nothing changed) or no longer pending (`erasure_not_pending`)", body = ErrorEnvelope,
         example = json!({"error": {"code": "legal_hold", "message": "the record is under a legal hold: litigation 2026-17"}})),
    ),
    security(("bearer" = [])))]
pub async fn execute(
    State(app): State<Arc<Rights>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<ErasureRequest>, ApiError> {
    require_admin(&caller)?;
    let request = pending(&app, &id).await?;
    let store = app.store_for(&caller);
    // Names the patient to this request's own audit event (and checks the record exists).
    store.read("Patient", &request.patient_id).await?;
    let executor = Some((caller.account.id.as_str(), caller.role.as_str()));
    if let Err(hold) = run_erasure(&app, &store, &request, executor).await? {
        return Err(held(&hold, &app));
    }
    let done = erase::request(&*app.db, &id).await?.ok_or_else(|| not_found("erasure request"))?;
    Ok(Json(request_json(&done)))
}

#[utoipa::path(post, path = "/api/v1/admin/erasure-requests/{id}/refuse", tag = "data rights",
    params(("id" = String, Path, description = "The erasure request")),
    request_body(content = Reason, description = "Why (`reason`, required; shown to the patient)", example = json!({"reason": "records must be kept for the open insurance claim"})),
    responses(
        (status = 200, description = "Refused", body = ErasureRequest),
        (status = 400, description = "No reason", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "give a `reason`"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not an administrator", body = ErrorEnvelope),
        (status = 404, description = "No such request", body = ErrorEnvelope),
        (status = 409, description = "No longer pending", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn refuse(
    State(app): State<Arc<Rights>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<ErasureRequest>, ApiError> {
    require_admin(&caller)?;
    let reason = reason_of(&bytes, true)?.unwrap_or_default();
    let request = pending(&app, &id).await?;
    // Names the patient to this request's audit event.
    app.store_for(&caller).read("Patient", &request.patient_id).await?;
    let now = app.clock.now().timestamp_millis();
    if !erase::refuse_request(&*app.db, &id, Some(&caller.account.id), &reason, now).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "erasure_not_pending", "this request is no longer pending"));
    }
    let done = erase::request(&*app.db, &id).await?.ok_or_else(|| not_found("erasure request"))?;
    Ok(Json(request_json(&done)))
}

fn hold_json(h: &HoldRow) -> LegalHold {
    LegalHold {
        patient: format!("Patient/{}", h.patient_id),
        reason: h.reason.clone(),
        placed_by: h.placed_by.clone(),
        placed_at: text_instant(h.placed_at),
    }
}

/// The patient of a hold path, checked to exist through the admin's view.
async fn held_patient(app: &Rights, caller: &Caller, id: &str) -> Result<(), ApiError> {
    require_admin(caller)?;
    if !hearth_workflow::fhir::valid_id(id) {
        return Err(not_found("patient record"));
    }
    match app.store_for(caller).read("Patient", id).await? {
        Current::NotFound => Err(not_found("patient record")),
        _ => Ok(()),
    }
}

#[utoipa::path(get, path = "/api/v1/admin/patients/{id}/legal-hold", tag = "data rights",
    params(("id" = String, Path, description = "The Patient id")),
    responses(
        (status = 200, description = "The hold", body = LegalHold, example = json!({"patient": "Patient/…", "reason": "litigation 2026-17", "placedBy": "…", "placedAt": "2026-11-29T10:00:00.000Z"})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not an administrator", body = ErrorEnvelope),
        (status = 404, description = "No such patient, or no hold", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such legal hold"}})),
    ),
    security(("bearer" = [])))]
pub async fn get_hold(
    State(app): State<Arc<Rights>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<LegalHold>, ApiError> {
    held_patient(&app, &caller, &id).await?;
    let hold = erase::hold(&*app.db, &id).await?.ok_or_else(|| not_found("legal hold"))?;
    Ok(Json(hold_json(&hold)))
}

#[utoipa::path(post, path = "/api/v1/admin/patients/{id}/legal-hold", tag = "data rights",
    params(("id" = String, Path, description = "The Patient id")),
    request_body(content = Reason, description = "Why (`reason`, required)", example = json!({"reason": "litigation 2026-17"})),
    responses(
        (status = 200, description = "Placed (or its reason replaced)", body = LegalHold),
        (status = 400, description = "No reason", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not an administrator", body = ErrorEnvelope),
        (status = 404, description = "No such patient", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn place_hold(
    State(app): State<Arc<Rights>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<LegalHold>, ApiError> {
    held_patient(&app, &caller, &id).await?;
    let reason = reason_of(&bytes, true)?.unwrap_or_default();
    let now = app.clock.now();
    let hold = HoldRow {
        patient_id: id.clone(),
        reason,
        placed_by: caller.account.id.clone(),
        placed_at: now.timestamp_millis(),
    };
    erase::place_hold(&*app.db, &hold).await?;
    let agents = vec![agent(Some((caller.account.id.as_str(), caller.role.as_str())), true)];
    record(&app, lifecycle_event("hold", "Hold", "U", &id, agents, "legal hold placed".into(), now)).await?;
    Ok(Json(hold_json(&hold)))
}

#[utoipa::path(delete, path = "/api/v1/admin/patients/{id}/legal-hold", tag = "data rights",
    params(("id" = String, Path, description = "The Patient id")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not an administrator", body = ErrorEnvelope),
        (status = 404, description = "No such patient, or no hold", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn lift_hold(
    State(app): State<Arc<Rights>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    held_patient(&app, &caller, &id).await?;
    if !erase::lift_hold(&*app.db, &id).await? {
        return Err(not_found("legal hold"));
    }
    let now = app.clock.now();
    let agents = vec![agent(Some((caller.account.id.as_str(), caller.role.as_str())), true)];
    record(&app, lifecycle_event("unhold", "Unhold", "U", &id, agents, "legal hold lifted".into(), now)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_optional_bounded_and_strict() {
        assert_eq!(reason_of(b"", false).ok(), Some(None));
        assert_eq!(reason_of(br#"{"reason":" moving "}"#, false).ok(), Some(Some("moving".into())));
        assert!(reason_of(b"{}", true).is_err());
        assert!(reason_of(br#"{"why":"x"}"#, false).is_err());
        let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(MAX_REASON + 1));
        assert!(reason_of(long.as_bytes(), false).is_err());
    }
}

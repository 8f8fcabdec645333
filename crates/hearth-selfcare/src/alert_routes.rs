//! `/api/v1/health/alerts`: the alerts raised from a patient's readings, their acknowledgement,
//! and the settings a clinician keeps for a patient (SpO2 scale 2, personal thresholds).
//!
//! Who: whoever reaches the patient through the store (the patient, their caregivers, staff
//! within reach) sees the alerts and the settings; a caregiver or staff member acknowledges an
//! alert (not the patient: an alert is a call for someone else to look, and a patient who is
//! unwell must not be able to stop its escalation alone); only clinicians and admins set the
//! settings. Anyone else gets `404` (existence stays private).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hearth_auth::Role;
use hearth_store::{Current, Guarded, StoreError};
use hearth_store_sql::notify::TxDb;
use hearth_store_sql::selfcare::{self as sql, AlertRow, SettingsRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;

use crate::Selfcare;
use crate::alerts::{Threshold, check_thresholds};
use crate::vitals::instant;

/// Most alerts one list answers.
const MAX_LIST: i64 = 200;

pub(crate) fn router() -> axum::Router<Arc<Selfcare>> {
    axum::Router::new()
        .route("/api/v1/health/alerts", axum::routing::get(list))
        .route("/api/v1/health/alerts/settings", axum::routing::get(get_settings).put(put_settings))
        .route("/api/v1/health/alerts/{id}/acknowledge", axum::routing::post(acknowledge))
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn no_alert() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such alert")
}

/// Whether `store` reaches Patient `id`.
async fn reaches(store: &Guarded, id: &str) -> Result<bool, ApiError> {
    match store.read("Patient", id).await {
        Ok(Current::Found(_)) => Ok(true),
        Ok(_) | Err(StoreError::Forbidden(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What raised an alert.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct AlertDetail {
    /// `news2`, `qsofa` or `threshold`.
    score: Option<String>,
    /// The aggregate score (NEWS2, qSOFA).
    total: Option<i64>,
    /// NEWS2 clinical risk.
    risk: Option<String>,
    /// NEWS2: each parameter's score.
    parts: Option<std::collections::BTreeMap<String, i64>>,
    /// NEWS2: scored on SpO2 scale 2.
    spo2_scale2: Option<bool>,
    /// A threshold: the parameter, the reading and the limit it passed.
    parameter: Option<String>,
    value: Option<f64>,
    above: Option<f64>,
    below: Option<f64>,
    /// The rule's source (the publication, or the patient's clinician).
    source: Option<String>,
}

/// An alert as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertView {
    id: String,
    patient: String,
    /// `news2`, `qsofa` or `threshold:<parameter>`.
    rule: String,
    /// NEWS2: `low_medium`, `medium`, `high`; qSOFA: `sepsis_alert`; a threshold: `above`, `below`.
    level: String,
    score: Option<i64>,
    /// What raised it, e.g. "NEWS2 11 (high clinical risk)".
    summary: String,
    /// What raised it in full (the scores of each parameter, or the reading and its limit).
    detail: AlertDetail,
    /// `open` (nobody acknowledged it yet), `escalated` (open past its escalation time: the
    /// second wave went out), `acknowledged`, `resolved` (a later set no longer raises it).
    status: &'static str,
    /// The FHIR `Flag` that records it in the chart.
    flag: String,
    raised_at: String,
    last_seen: String,
    escalate_at: String,
    acknowledged_by: Option<String>,
    acknowledged_at: Option<String>,
    resolved_at: Option<String>,
}

fn at(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map(instant).unwrap_or_default()
}

fn view(a: AlertRow, now: DateTime<Utc>) -> AlertView {
    let detail: Value = serde_json::from_str(&a.detail).unwrap_or(Value::Null);
    let status = match a.status.as_str() {
        "resolved" => "resolved",
        "acknowledged" => "acknowledged",
        _ if now.timestamp_millis() >= a.escalate_at => "escalated",
        _ => "open",
    };
    AlertView {
        summary: detail.get("summary").and_then(Value::as_str).unwrap_or_default().to_owned(),
        detail: detail.get("detail").and_then(|d| serde_json::from_value(d.clone()).ok()).unwrap_or_default(),
        id: a.id,
        patient: a.patient,
        rule: a.rule,
        level: a.level,
        score: a.score,
        status,
        flag: a.flag,
        raised_at: at(a.raised_at),
        last_seen: at(a.last_seen),
        escalate_at: at(a.escalate_at),
        acknowledged_by: a.acknowledged_by,
        acknowledged_at: a.acknowledged_at.map(at),
        resolved_at: a.resolved_at.map(at),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    patient: Option<String>,
    /// `live` (default: open, escalated, acknowledged) or `all`.
    status: Option<String>,
}

/// Alerts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertsOut {
    alerts: Vec<AlertView>,
}

#[utoipa::path(get, path = "/api/v1/health/alerts", tag = "selfcare",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record (a patient), else every patient the caller reaches"),
        ("status" = Option<String>, Query, description = "`live` (default: not resolved) or `all`"),
    ),
    responses(
        (status = 200, description = "The alerts, newest first (at most 200)", body = AlertsOut,
         example = json!({"alerts": [{"id": "0193…", "patient": "0190…", "rule": "news2", "level": "high", "score": 9, "summary": "NEWS2 9 (high clinical risk)", "detail": {"score": "news2", "total": 9, "risk": "high", "parts": {"respiratory_rate": 3, "spo2": 3, "air_or_oxygen": 0, "systolic_bp": 2, "heart_rate": 1, "consciousness": 0, "temperature": 0}, "spo2_scale2": false, "parameter": null, "value": null, "above": null, "below": null, "source": "Royal College of Physicians. NEWS2, 2017"}, "status": "open", "flag": "0193…", "raised_at": "2026-12-07T08:05:00.000Z", "last_seen": "2026-12-07T08:05:00.000Z", "escalate_at": "2026-12-07T08:20:00.000Z", "acknowledged_by": null, "acknowledged_at": null, "resolved_at": null}]})),
        (status = 400, description = "Bad parameters (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "status is live or all"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(app): State<Arc<Selfcare>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AlertsOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let all = match q.status.as_deref() {
        None | Some("live") => false,
        Some("all") => true,
        Some(_) => return Err(bad("invalid_query", "status is live or all")),
    };
    let store = app.store_for(&caller);
    let now = app.clock.now();
    let named = q.patient.as_deref().or(caller.own_patient());
    let rows = match named {
        Some(p) => {
            let id = crate::routes::patient_of(&store, &caller, Some(p)).await?;
            sql::list_alerts(&*app.db, Some(&id), all, MAX_LIST).await?
        }
        None => {
            // Everyone's, kept to the patients this caller reaches.
            let mut seen: HashMap<String, bool> = HashMap::new();
            let mut kept = Vec::new();
            for a in sql::list_alerts(&*app.db, None, all, MAX_LIST * 5).await? {
                let ok = match seen.get(&a.patient) {
                    Some(ok) => *ok,
                    None => {
                        let ok = reaches(&store, &a.patient).await?;
                        seen.insert(a.patient.clone(), ok);
                        ok
                    }
                };
                if ok && kept.len() < MAX_LIST as usize {
                    kept.push(a);
                }
            }
            kept
        }
    };
    Ok(Json(AlertsOut { alerts: rows.into_iter().map(|a| view(a, now)).collect() }))
}

#[utoipa::path(post, path = "/api/v1/health/alerts/{id}/acknowledge", tag = "selfcare",
    params(("id" = String, Path, description = "The alert id")),
    responses(
        (status = 200, description = "Acknowledged (or it already was): its second wave, if not yet sent, is cancelled", body = AlertView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "A patient cannot acknowledge their own alert: a caregiver or the care team does (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "a caregiver or the care team acknowledges an alert"}})),
        (status = 404, description = "No such alert, or its patient is outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such alert"}})),
        (status = 409, description = "The alert is resolved: nothing to acknowledge (`alert_resolved`)", body = ErrorEnvelope, example = json!({"error": {"code": "alert_resolved", "message": "this alert is resolved"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn acknowledge(
    State(app): State<Arc<Selfcare>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, ApiError> {
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(no_alert());
    }
    let Some(alert) = sql::alert(&*app.db, &id).await? else { return Err(no_alert()) };
    let store = app.store_for(&caller);
    if !reaches(&store, &alert.patient).await? {
        return Err(no_alert());
    }
    if caller.role == Role::Patient {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a caregiver or the care team acknowledges an alert",
        ));
    }
    if alert.status == "resolved" {
        return Err(ApiError::new(StatusCode::CONFLICT, "alert_resolved", "this alert is resolved"));
    }
    let now = app.clock.now();
    let tx = TxDb::begin(&*app.db).await?;
    if sql::acknowledge_alert(&tx, &id, &caller.account.id, now.timestamp_millis()).await? {
        hearth_notifications::cancel_prefix(&tx, &crate::alerting::escalation_prefix(&id), now).await?;
    }
    tx.commit().await?;
    let alert = sql::alert(&*app.db, &id).await?.ok_or_else(no_alert)?;
    Ok(Json(view(alert, now)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatientParam {
    patient: Option<String>,
}

/// What a clinician set for a patient's alerts.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsIn {
    /// Score SpO2 on NEWS2 scale 2 (target 88–92 %, e.g. hypercapnic respiratory failure):
    /// only a clinician decides this.
    spo2_scale2: bool,
    /// Personal thresholds (at most one per parameter); a reading beyond one raises an alert.
    #[serde(default)]
    thresholds: Vec<Threshold>,
}

/// A patient's alert settings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SettingsOut {
    patient: String,
    spo2_scale2: bool,
    thresholds: Vec<Threshold>,
    /// The account of the clinician who set them (told of the patient's alerts); null: never set.
    set_by: Option<String>,
    updated_at: Option<String>,
}

fn settings_out(patient: String, row: Option<SettingsRow>) -> SettingsOut {
    match row {
        Some(r) => SettingsOut {
            patient,
            spo2_scale2: r.spo2_scale2,
            thresholds: serde_json::from_str(&r.thresholds).unwrap_or_default(),
            set_by: Some(r.set_by),
            updated_at: Some(at(r.updated_at)),
        },
        None => SettingsOut { patient, spo2_scale2: false, thresholds: Vec::new(), set_by: None, updated_at: None },
    }
}

#[utoipa::path(get, path = "/api/v1/health/alerts/settings", tag = "selfcare",
    params(("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record")),
    responses(
        (status = 200, description = "The patient's alert settings (defaults when none were set: scale 1, no thresholds)", body = SettingsOut),
        (status = 400, description = "No patient named and the caller is not a patient (`patient_required`), or an unknown parameter (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "patient_required", "message": "name the patient (`patient`)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_settings(
    State(app): State<Arc<Selfcare>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<PatientParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SettingsOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let store = app.store_for(&caller);
    let patient = crate::routes::patient_of(&store, &caller, q.patient.as_deref()).await?;
    let row = sql::settings(&*app.db, &patient).await?;
    Ok(Json(settings_out(patient, row)))
}

#[utoipa::path(put, path = "/api/v1/health/alerts/settings", tag = "selfcare",
    params(("patient" = String, Query, description = "The Patient id")),
    request_body(content = SettingsIn, description = "SpO2 scale 2 and the personal thresholds (canonical units: mm[Hg], /min, %, Cel, mg/dL, kg); replaces what was set. Parameters: systolic_bp, diastolic_bp, heart_rate, respiratory_rate, spo2, body_temperature, blood_glucose, body_weight",
        example = json!({"spo2_scale2": false, "thresholds": [{"parameter": "systolic_bp", "above": 160}]})),
    responses(
        (status = 200, description = "Set; later readings are judged with them", body = SettingsOut),
        (status = 400, description = "Invalid settings (stable code: invalid_body, invalid_threshold, patient_required, invalid_query)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_threshold", "message": "thresholds[0]: give `above`, `below` or both"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Only a clinician or an admin sets them (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "only the care team sets alert settings"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn put_settings(
    State(app): State<Arc<Selfcare>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<PatientParam>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> Result<Json<SettingsOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let store = app.store_for(&caller);
    let patient = crate::routes::patient_of(&store, &caller, q.patient.as_deref()).await?;
    if !matches!(caller.role, Role::Clinician | Role::Admin) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only the care team sets alert settings"));
    }
    let input: SettingsIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    check_thresholds(&input.thresholds).map_err(|m| bad("invalid_threshold", m))?;
    let row = SettingsRow {
        patient: patient.clone(),
        spo2_scale2: input.spo2_scale2,
        thresholds: serde_json::to_string(&input.thresholds).map_err(ApiError::internal)?,
        set_by: caller.account.id.clone(),
        updated_at: app.clock.now().timestamp_millis(),
    };
    sql::put_settings(&*app.db, &row).await?;
    Ok(Json(settings_out(patient, Some(row))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_alert_past_its_time_shows_as_escalated() {
        let row = AlertRow {
            id: "a".into(),
            patient: "p".into(),
            rule: "news2".into(),
            severity: 3,
            level: "high".into(),
            score: Some(9),
            detail: r#"{"summary": "NEWS2 9", "detail": {}}"#.into(),
            flag: "f".into(),
            status: "open".into(),
            raised_at: 0,
            last_seen: 0,
            escalate_at: 1000,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_at: None,
        };
        let t = |ms| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
        assert_eq!(view(row.clone(), t(999)).status, "open");
        assert_eq!(view(row.clone(), t(1000)).status, "escalated");
        assert_eq!(view(AlertRow { status: "acknowledged".into(), ..row }, t(5000)).status, "acknowledged");
    }
}

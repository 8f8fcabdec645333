//! Encounters (`/api/v1/encounters`) over FHIR `Encounter`.
//!
//! Decisions:
//! - The lifecycle is `planned → arrived → in-progress → finished`, with `cancelled` from any
//!   state before `finished`; skipping `arrived` (planned → in-progress) is allowed, going back
//!   is not, and a finished or cancelled encounter is closed to changes (`409`
//!   `invalid_transition` / `encounter_closed`). Each change appends the state left to
//!   `statusHistory`; `period.start` is set on entering `in-progress` (or `arrived`), `period.end` on
//!   closing. Finishing an encounter made at check-in marks its Appointment `fulfilled` in the
//!   same transaction.
//! - Class is v3-ActCode `AMB` (ambulatory) or `VR` (virtual). A virtual encounter carries its
//!   video room as an extension (`urn:hearth:extension:encounter-video-room`, a URL) that the
//!   telehealth component fills in; until then `videoRoom` is `null`.
//! - Only clinicians and admins create or change encounters (check-in creates one for the
//!   patient); everyone reads those within their reach.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_store::{Current, Version, interactions};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    EXT, bad, conflict, forbidden, instant, is_staff, json_of, not_found, own_practitioner, read_json, ref_id,
    search_all,
};
use crate::Scheduling;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

pub fn router() -> axum::Router<Arc<Scheduling>> {
    axum::Router::new()
        .route("/api/v1/encounters", axum::routing::get(list).post(create))
        .route("/api/v1/encounters/{id}", axum::routing::get(get_one).put(update))
}

const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const DIAGNOSIS_ROLE: &str = "http://terminology.hl7.org/CodeSystem/diagnosis-role";
const DIAGNOSIS_ROLES: [&str; 7] = ["AD", "DD", "CC", "CM", "pre-op", "post-op", "billing"];
const VIDEO_ROOM: &str = "encounter-video-room";

fn class(is_virtual: bool) -> Value {
    if is_virtual {
        json!({"system": ACT_CODE, "code": "VR", "display": "virtual"})
    } else {
        json!({"system": ACT_CODE, "code": "AMB", "display": "ambulatory"})
    }
}

fn participant(practitioner: &str) -> Value {
    json!({"type": [{"coding": [{"system": PARTICIPATION, "code": "PPRF", "display": "primary performer"}]}],
           "individual": {"reference": format!("Practitioner/{practitioner}")}})
}

/// The Encounter a check-in creates for an Appointment (status `arrived`).
pub fn from_appointment(id: &str, a: &Value, is_virtual: bool, now: DateTime<Utc>) -> Result<Value, ApiError> {
    let actors: Vec<&str> = a
        .get("participant")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    let patient = actors
        .iter()
        .find(|r| r.starts_with("Patient/"))
        .ok_or_else(|| ApiError::internal("appointment without patient"))?;
    let mut e = json!({
        "resourceType": "Encounter",
        "status": "arrived",
        "class": class(is_virtual),
        "subject": {"reference": patient},
        "participant": actors.iter().filter_map(|r| r.strip_prefix("Practitioner/")).map(participant).collect::<Vec<_>>(),
        "appointment": [{"reference": format!("Appointment/{id}")}],
        "period": {"start": instant(now)},
    });
    if let (Some(reason), Some(o)) = (a.get("reasonCode"), e.as_object_mut()) {
        o.insert("reasonCode".into(), reason.clone());
    }
    if let (Some(l), Some(o)) = (actors.iter().find(|r| r.starts_with("Location/")), e.as_object_mut()) {
        o.insert("location".into(), json!([{"location": {"reference": l}}]));
    }
    Ok(e)
}

/// The app API's view of an Encounter (the FHIR resource is `/fhir/Encounter/<id>`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncounterView<'a> {
    id: &'a str,
    /// Changes with every change.
    version: u64,
    /// `planned`, `arrived`, `in-progress`, `finished` or `cancelled`.
    #[schema(value_type = Option<String>, example = "arrived")]
    status: Option<&'a Value>,
    /// `AMB` (ambulatory) or `VR` (virtual).
    #[schema(example = "AMB")]
    class: Option<&'a str>,
    #[serde(rename = "virtual")]
    is_virtual: bool,
    /// The video room of a virtual encounter.
    #[schema(value_type = Option<String>)]
    video_room: Option<Value>,
    /// The Patient id.
    patient: Option<&'a str>,
    /// Practitioner ids.
    practitioners: Vec<&'a str>,
    /// The Appointment id, when it came from a check-in.
    appointment: Option<&'a str>,
    /// FHIR CodeableConcepts.
    #[schema(value_type = Option<Vec<CodeableConcept>>)]
    reason: Option<&'a Value>,
    diagnoses: Vec<DiagnosisView<'a>>,
    /// FHIR `Period` (`start`, `end`).
    #[schema(value_type = Option<Period>)]
    period: Option<&'a Value>,
}

/// A diagnosis of an encounter.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DiagnosisView<'a> {
    /// The Condition id.
    condition: Option<&'a str>,
    /// A diagnosis-role code (`AD`, `DD`, `CC`, …).
    #[serde(rename = "use")]
    #[schema(value_type = Option<String>)]
    role: Option<&'a Value>,
    #[schema(value_type = Option<u32>)]
    rank: Option<&'a Value>,
}

/// A FHIR `CodeableConcept`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The shape of stored FHIR data, for the description.
pub struct CodeableConcept {
    coding: Option<Vec<Coded>>,
    /// Free text (an appointment's reason arrives as text).
    text: Option<String>,
}

/// A FHIR `Period`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The shape of stored FHIR data, for the description.
pub struct Period {
    start: Option<String>,
    end: Option<String>,
}

/// Encounters, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EncounterList<'a> {
    encounters: Vec<EncounterView<'a>>,
}

/// The app API's view of an Encounter, as JSON.
pub fn view(id: &str, version: u64, e: &Value) -> Value {
    json!(encounter_view(id, version, e))
}

fn encounter_view<'a>(id: &'a str, version: u64, e: &'a Value) -> EncounterView<'a> {
    let video = e.get("extension").and_then(Value::as_array).and_then(|x| {
        x.iter()
            .find(|x| x.get("url").and_then(Value::as_str) == Some(format!("{EXT}{VIDEO_ROOM}").as_str()))
            .and_then(|x| x.get("valueUrl").cloned())
    });
    let code = e.pointer("/class/code").and_then(Value::as_str);
    EncounterView {
        id,
        version,
        status: e.get("status"),
        class: code,
        is_virtual: code == Some("VR"),
        video_room: video,
        patient: ref_id(e, "/subject/reference", "Patient"),
        practitioners: e
            .get("participant")
            .and_then(Value::as_array)
            .map(|ps| ps.iter().filter_map(|p| ref_id(p, "/individual/reference", "Practitioner")).collect())
            .unwrap_or_default(),
        appointment: ref_id(e, "/appointment/0/reference", "Appointment"),
        reason: e.get("reasonCode"),
        diagnoses: e
            .get("diagnosis")
            .and_then(Value::as_array)
            .map(|ds| {
                ds.iter()
                    .map(|d| DiagnosisView {
                        condition: ref_id(d, "/condition/reference", "Condition"),
                        role: d.pointer("/use/coding/0/code"),
                        rank: d.get("rank"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        period: e.get("period"),
    }
}

/// Whether `from → to` is a step of the lifecycle.
pub fn allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("planned", "arrived" | "in-progress" | "cancelled")
            | ("arrived", "in-progress" | "cancelled")
            | ("in-progress", "finished" | "cancelled")
    )
}

/// A coding: `system` and `code` (and a `display`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Coded {
    #[schema(example = "http://snomed.info/sct")]
    system: String,
    #[schema(example = "271737000")]
    code: String,
    display: Option<String>,
}

/// A diagnosis to record on an encounter.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Diagnosis {
    /// The Condition id (of the same patient).
    condition: String,
    /// A diagnosis-role code (`AD` admission, `DD` discharge, `CC` chief complaint, …).
    #[serde(rename = "use")]
    role: Option<String>,
    /// 1 for the principal diagnosis.
    rank: Option<u32>,
}

/// An encounter without an appointment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBody {
    /// The patient's id (or `Patient/<id>`).
    #[serde(deserialize_with = "hearth_workflow::refs::patient")]
    patient: String,
    /// Practitioner ids; default: the calling clinician.
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_practitioners")]
    practitioners: Option<Vec<String>>,
    /// `planned` or `in-progress` (default).
    status: Option<String>,
    #[serde(default, rename = "virtual")]
    is_virtual: bool,
    #[serde(default)]
    reason: Vec<Coded>,
    #[serde(default)]
    diagnoses: Vec<Diagnosis>,
}

/// Changes to an encounter; what is left out stays.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateBody {
    /// The next step of planned → arrived → in-progress → finished, or `cancelled`.
    status: Option<String>,
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_practitioners")]
    practitioners: Option<Vec<String>>,
    reason: Option<Vec<Coded>>,
    diagnoses: Option<Vec<Diagnosis>>,
    /// The video room of a virtual encounter (set by the telehealth component).
    video_room: Option<String>,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    bad("invalid_encounter", msg)
}

fn reason_json(reason: &[Coded]) -> Result<Value, ApiError> {
    let mut out = Vec::new();
    for r in reason {
        if !super::system_uri(&r.system)
            || !super::fhir_code(&r.code)
            || r.display.as_deref().is_some_and(|d| !super::plain_text(d, 1000))
        {
            return Err(invalid("a reason is a coding: `system` (e.g. http://snomed.info/sct) and `code`"));
        }
        let mut c = json!({"system": r.system, "code": r.code});
        if let (Some(d), Some(o)) = (&r.display, c.as_object_mut()) {
            o.insert("display".into(), json!(d));
        }
        out.push(json!({"coding": [c]}));
    }
    Ok(Value::Array(out))
}

async fn diagnoses_json(app: &Scheduling, caller: &Caller, patient: &str, ds: &[Diagnosis]) -> Result<Value, ApiError> {
    let store = app.store_for(caller);
    let mut out = Vec::new();
    for d in ds {
        let role = d.role.as_deref().unwrap_or("billing");
        if !DIAGNOSIS_ROLES.contains(&role) {
            return Err(invalid(format!("diagnosis `use` must be one of {DIAGNOSIS_ROLES:?} (diagnosis-role)")));
        }
        let (_, c) = read_json(&store, "Condition", &d.condition).await?.ok_or_else(|| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_condition", "no such Condition within reach")
        })?;
        if ref_id(&c, "/subject/reference", "Patient") != Some(patient) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_condition",
                "that Condition is another patient's",
            ));
        }
        let mut x = json!({"condition": {"reference": format!("Condition/{}", d.condition)}, "use": {"coding": [{"system": DIAGNOSIS_ROLE, "code": role}]}});
        if let (Some(rank), Some(o)) = (d.rank, x.as_object_mut()) {
            if rank == 0 {
                return Err(invalid("a diagnosis rank starts at 1"));
            }
            o.insert("rank".into(), json!(rank));
        }
        out.push(x);
    }
    Ok(Value::Array(out))
}

fn practitioners_of(caller: &Caller, given: Option<&[String]>) -> Result<Vec<String>, ApiError> {
    match given {
        Some(list) if !list.is_empty() => {
            if list.iter().any(|p| !hearth_workflow::fhir::valid_id(p)) {
                return Err(invalid("practitioners are resource ids"));
            }
            Ok(list.to_vec())
        }
        _ => own_practitioner(caller)
            .map(|p| vec![p.to_owned()])
            .ok_or_else(|| invalid("name the `practitioners` taking part")),
    }
}

fn set(e: &mut Value, key: &str, v: Value) {
    if let Some(o) = e.as_object_mut() {
        if v.as_array().is_some_and(Vec::is_empty) {
            o.remove(key);
        } else {
            o.insert(key.into(), v);
        }
    }
}

#[utoipa::path(post, path = "/api/v1/encounters", tag = "encounters",
    request_body(content = CreateBody, description = "An encounter without an appointment (check-in creates those with one): patient, practitioners (default: the caller), status `planned` or `in-progress`, `virtual`, reason codings and diagnoses (Condition ids with a diagnosis-role `use`)",
        example = json!({"patient": "123", "status": "in-progress", "reason": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}]})),
    responses(
        (status = 201, description = "Created", body = EncounterView),
        (status = 400, description = "Malformed request (`invalid_encounter`, `unknown_condition`)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician or admin", body = ErrorEnvelope),
        (status = 404, description = "No such patient within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !is_staff(&caller) {
        return Err(forbidden("only clinicians and admins record encounters"));
    }
    let body: CreateBody = super::body_of(&bytes)?;
    let status = body.status.as_deref().unwrap_or("planned");
    if !matches!(status, "planned" | "in-progress") {
        return Err(invalid("a new encounter is `planned` or `in-progress`"));
    }
    if read_json(&app.store_for(&caller), "Patient", &body.patient).await?.is_none() {
        return Err(not_found("patient"));
    }
    let now = app.clock.now();
    let practitioners = practitioners_of(&caller, body.practitioners.as_deref())?;
    let mut e = json!({
        "resourceType": "Encounter",
        "status": status,
        "class": class(body.is_virtual),
        "subject": {"reference": format!("Patient/{}", body.patient)},
        "participant": practitioners.iter().map(|p| participant(p)).collect::<Vec<_>>(),
    });
    if status == "in-progress" {
        set(&mut e, "period", json!({"start": instant(now)}));
    }
    set(&mut e, "reasonCode", reason_json(&body.reason)?);
    set(&mut e, "diagnosis", diagnoses_json(&app, &caller, &body.patient, &body.diagnoses).await?);
    super::check(&app, "Encounter", &e)?;
    let id = uuid::Uuid::now_v7().to_string();
    let write = hearth_workflow::fhir::write_of(&app, "Encounter", id.clone(), e);
    let v = hearth_store::interactions::ResourceStoreExt::create(&app.store_for(&caller), write, now).await?;
    Ok((StatusCode::CREATED, Json(view(&id, v.version_id, &json_of(&v)?))).into_response())
}

#[utoipa::path(get, path = "/api/v1/encounters/{id}", tag = "encounters",
    params(("id" = String, Path, description = "The encounter's id")),
    responses(
        (status = 200, description = "The encounter", body = EncounterView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such encounter within reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn get_one(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (v, e) = read_json(&app.store_for(&caller), "Encounter", &id).await?.ok_or_else(|| not_found("encounter"))?;
    Ok(Json(view(&v.id, v.version_id, &e)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_patient")]
    patient: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/encounters", tag = "encounters",
    params(("patient" = Option<String>, Query, description = "A patient's id (a patient's own by default)")),
    responses(
        (status = 200, description = "The patient's encounters within reach, newest first", body = EncounterList),
        (status = 400, description = "No patient given", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let patient = q
        .patient
        .or_else(|| caller.own_patient().map(str::to_owned))
        .ok_or_else(|| bad("invalid_query", "give `patient`"))?;
    if !hearth_workflow::fhir::valid_id(&patient) {
        return Err(bad("invalid_query", "`patient` must be a resource id"));
    }
    let found = search_all(
        &app,
        &app.store_for(&caller),
        "Encounter",
        &[("subject", format!("Patient/{patient}")), ("_sort", "-_lastUpdated".to_owned())],
        500,
    )
    .await?;
    let views = found.iter().filter_map(|v| json_of(v).ok().map(|e| (v, e))).collect::<Vec<(&Version, Value)>>();
    let encounters = views.iter().map(|(v, e)| encounter_view(&v.id, v.version_id, e)).collect();
    Ok(Json(json!(EncounterList { encounters })))
}

#[utoipa::path(put, path = "/api/v1/encounters/{id}", tag = "encounters",
    params(("id" = String, Path, description = "The encounter's id")),
    request_body(content = UpdateBody, description = "Any of: `status` (the next step of planned → arrived → in-progress → finished, or cancelled), `practitioners`, `reason`, `diagnoses`, `videoRoom` (virtual encounters)",
        example = json!({"status": "finished", "diagnoses": [{"condition": "456", "use": "DD", "rank": 1}]})),
    responses(
        (status = 200, description = "Changed (a new version)", body = EncounterView),
        (status = 400, description = "Malformed request (`invalid_encounter`, `unknown_condition`)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician or admin", body = ErrorEnvelope),
        (status = 404, description = "No such encounter within reach", body = ErrorEnvelope),
        (status = 409, description = "Not a step of the lifecycle, or the encounter is closed", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_transition", "message": "an encounter goes from finished to nothing else"}})),
    ),
    security(("bearer" = [])))]
pub async fn update(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    if !is_staff(&caller) {
        return Err(forbidden("only clinicians and admins change encounters"));
    }
    let body: UpdateBody = super::body_of(&bytes)?;
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(not_found("encounter"));
    }
    let now = app.clock.now();
    let mut tx = app.store_for(&caller).begin().await?.scheduling();
    let (v, mut e) = super::read_in(&mut tx, "Encounter", &id, "encounter").await?;
    let from = e.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
    if matches!(from.as_str(), "finished" | "cancelled" | "entered-in-error") {
        return Err(conflict("encounter_closed", format!("the encounter is {from} and closed to changes")));
    }
    let patient = ref_id(&e, "/subject/reference", "Patient")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::internal("encounter without patient"))?;
    if let Some(to) = body.status.as_deref()
        && to != from
    {
        if !allowed(&from, to) {
            return Err(conflict(
                "invalid_transition",
                format!(
                    "an encounter cannot go from {from} to {to} (planned → arrived → in-progress → finished, or cancelled)"
                ),
            ));
        }
        let since = e
            .pointer("/statusHistory")
            .and_then(Value::as_array)
            .and_then(|h| h.last())
            .and_then(|h| h.pointer("/period/end").cloned());
        let mut history = e.get("statusHistory").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut period = json!({"end": instant(now)});
        if let (Some(s), Some(o)) = (since.or_else(|| e.pointer("/period/start").cloned()), period.as_object_mut()) {
            o.insert("start".into(), s);
        }
        history.push(json!({"status": from, "period": period}));
        set(&mut e, "statusHistory", Value::Array(history));
        set(&mut e, "status", json!(to));
        let mut p = e.get("period").cloned().unwrap_or_else(|| json!({}));
        if let Some(o) = p.as_object_mut() {
            if matches!(to, "arrived" | "in-progress") && !o.contains_key("start") {
                o.insert("start".into(), json!(instant(now)));
            }
            if matches!(to, "finished" | "cancelled") {
                o.entry("start").or_insert_with(|| json!(instant(now)));
                o.insert("end".into(), json!(instant(now)));
            }
        }
        set(&mut e, "period", p);
    }
    if let Some(ps) = body.practitioners.as_deref() {
        let ps = practitioners_of(&caller, Some(ps))?;
        set(&mut e, "participant", Value::Array(ps.iter().map(|p| participant(p)).collect()));
    }
    if let Some(r) = &body.reason {
        set(&mut e, "reasonCode", reason_json(r)?);
    }
    if let Some(ds) = &body.diagnoses {
        set(&mut e, "diagnosis", diagnoses_json(&app, &caller, &patient, ds).await?);
    }
    if let Some(room) = &body.video_room {
        if e.pointer("/class/code").and_then(Value::as_str) != Some("VR") {
            return Err(invalid("only a virtual encounter has a video room"));
        }
        if !room.starts_with("https://") || !super::system_uri(room) {
            return Err(invalid("`videoRoom` is an https URL"));
        }
        let mut ext: Vec<Value> = e.get("extension").and_then(Value::as_array).cloned().unwrap_or_default();
        ext.retain(|x| x.get("url").and_then(Value::as_str) != Some(format!("{EXT}{VIDEO_ROOM}").as_str()));
        ext.push(json!({"url": format!("{EXT}{VIDEO_ROOM}"), "valueUrl": room}));
        set(&mut e, "extension", Value::Array(ext));
    }
    super::check(&app, "Encounter", &e)?;
    let finished = e.get("status").and_then(Value::as_str) == Some("finished") && from != "finished";
    let appointment = ref_id(&e, "/appointment/0/reference", "Appointment").map(str::to_owned);
    let write = hearth_workflow::fhir::write_of(&app, "Encounter", id.clone(), e);
    let written = interactions::update(&mut tx, write, Some(v.version_id), now).await?;
    if finished
        && let Some(aid) = appointment
        && let Current::Found(av) = tx.read("Appointment", &aid).await?
    {
        let mut a = json_of(&av)?;
        if a.get("status").and_then(Value::as_str) == Some("arrived") {
            set(&mut a, "status", json!("fulfilled"));
            let write = hearth_workflow::fhir::write_of(&app, "Appointment", aid, a);
            interactions::update(&mut tx, write, Some(av.version_id), now).await?;
        }
    }
    tx.commit().await?;
    Ok(Json(view(&id, written.version.version_id, &json_of(&written.version)?)))
}

//! `/api/v1/medication`: check a list for interactions, add and list schedules, record and list
//! dose logs. Every read and write goes through the caller's guarded store view (the patient,
//! their caregivers, staff within reach), so every touch is on the request's audit slip.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hearth_auth::Role;
use hearth_store::{Current, Guarded, StoreError, Version, interactions as store_ops};
use serde::Serialize;
use serde_json::{Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

use crate::Medication;
use crate::interactions::{Allergy, Drug, Finding, Knowledge, Resolved, Severity};
use crate::schedule::{
    IssueOf, LogIn, LogOut, MedicationIn, ScheduleIn, ScheduleOut, log_out, medication_of, schedule_out,
};

/// Most drugs one check takes.
pub const MAX_DRUGS: usize = 50;
/// Most active medications, allergies or logs read for one patient.
const MAX_READ: usize = 1000;

pub(crate) fn router() -> axum::Router<Arc<Medication>> {
    axum::Router::new()
        .route("/api/v1/medication/interactions", axum::routing::get(check))
        .route("/api/v1/medication/schedules", axum::routing::get(schedules).post(add_schedule))
        .route("/api/v1/medication/schedules/{id}", axum::routing::put(edit_schedule))
        .route("/api/v1/medication/schedules/{id}/stop", axum::routing::post(stop_schedule))
        .route("/api/v1/medication/logs", axum::routing::get(logs).post(add_log))
        .route("/api/v1/medication/adherence", axum::routing::get(adherence_of))
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn kb() -> Result<&'static Knowledge, ApiError> {
    Knowledge::builtin().map_err(ApiError::internal)
}

fn body_of(v: &Version) -> Option<Value> {
    v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())
}

fn pairs(items: &[(&str, String)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// The patient a request is about: the one named, else a patient caller's own record; it must
/// be readable through the caller's store view (else `404`, existence stays private).
async fn patient_of(store: &Guarded, caller: &Caller, named: Option<&str>) -> Result<String, ApiError> {
    Ok(hearth_workflow::fhir::requested_patient(store, caller, named).await?.0)
}

fn no_schedule() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such schedule")
}

/// One of `patient`'s schedules by reference (`MedicationStatement/{id}` or
/// `MedicationRequest/{id}`), read through the caller's view: (type, id, body). Malformed is
/// `400 invalid_schedule`; unknown, out of reach or another patient's is `404 not_found`.
async fn schedule_of<'r>(
    store: &Guarded,
    reference: &'r str,
    patient: &str,
) -> Result<(&'r str, &'r str, Value), ApiError> {
    let (rt, sid) = reference
        .split_once('/')
        .filter(|(rt, id)| {
            matches!(*rt, "MedicationStatement" | "MedicationRequest") && hearth_workflow::fhir::valid_id(id)
        })
        .ok_or_else(|| bad("invalid_schedule", "`schedule` is MedicationStatement/{id} or MedicationRequest/{id}"))?;
    let body = match store.read(rt, sid).await {
        Ok(Current::Found(v)) => body_of(&v).ok_or_else(no_schedule)?,
        Ok(_) | Err(StoreError::Forbidden(_)) => return Err(no_schedule()),
        Err(e) => return Err(e.into()),
    };
    if body.pointer("/subject/reference").and_then(Value::as_str) != Some(format!("Patient/{patient}").as_str()) {
        return Err(no_schedule());
    }
    Ok((rt, sid, body))
}

/// The caller's FHIR identity when it is one a resource may name as author or source.
fn fhir_user(caller: &Caller) -> Option<&str> {
    caller
        .account
        .fhir_user
        .as_deref()
        .filter(|u| ["Patient/", "Practitioner/", "RelatedPerson/"].iter().any(|p| u.starts_with(p)))
}

/// The patient's active schedules (statements and requests): (reference, medication).
async fn active_medications(
    app: &Medication,
    store: &Guarded,
    patient: &str,
) -> Result<Vec<(String, MedicationIn)>, ApiError> {
    let mut out = Vec::new();
    for rt in ["MedicationStatement", "MedicationRequest"] {
        let found = app
            .search_all(
                store,
                rt,
                &pairs(&[("subject", format!("Patient/{patient}")), ("status", "active".to_owned())]),
                MAX_READ,
            )
            .await?;
        for v in found {
            if let Some(m) = body_of(&v).as_ref().and_then(medication_of) {
                out.push((format!("{rt}/{}", v.id), m));
            }
        }
    }
    Ok(out)
}

/// The patient's allergies that are not resolved, inactive or refuted.
async fn allergies_of(app: &Medication, store: &Guarded, patient: &str) -> Result<Vec<Allergy>, ApiError> {
    let kb = kb()?;
    let found = app
        .search_all(store, "AllergyIntolerance", &pairs(&[("patient", format!("Patient/{patient}"))]), MAX_READ)
        .await?;
    let mut out = Vec::new();
    for v in found {
        let Some(r) = body_of(&v) else { continue };
        let clinical = r.pointer("/clinicalStatus/coding/0/code").and_then(Value::as_str);
        let verification = r.pointer("/verificationStatus/coding/0/code").and_then(Value::as_str);
        if matches!(clinical, Some("inactive" | "resolved"))
            || matches!(verification, Some("refuted" | "entered-in-error"))
        {
            continue;
        }
        let Some(code) = r.get("code") else { continue };
        let rxnorm = code.get("coding").and_then(Value::as_array).and_then(|cs| {
            cs.iter()
                .find(|c| c.get("system").and_then(Value::as_str) == Some(crate::interactions::RXNORM))
                .and_then(|c| c.get("code").and_then(Value::as_str))
        });
        let name = code
            .get("text")
            .and_then(Value::as_str)
            .or_else(|| code.pointer("/coding/0/display").and_then(Value::as_str));
        let substance = kb.resolve(&Drug { code: rxnorm.map(str::to_owned), name: name.map(str::to_owned) });
        if substance.is_unknown() {
            continue;
        }
        out.push(Allergy {
            id: v.id.clone(),
            substance,
            low_criticality: r.get("criticality").and_then(Value::as_str) == Some("low"),
        });
    }
    Ok(out)
}

/// One medication of a check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DrugOut {
    /// Its place in the list checked (asked drugs first, then the patient's active medications).
    index: usize,
    /// As asked, or the schedule's medication.
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rxnorm: Option<String>,
    /// The patient's schedule this is (`MedicationStatement/…`), for their active medications.
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<String>,
    /// Ingredients recognised (empty: the sets do not know this drug, so nothing could be checked).
    ingredients: Vec<String>,
}

/// The answer to a check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CheckOut {
    drugs: Vec<DrugOut>,
    /// Every interaction between the drugs, and every allergy a drug meets; most severe first.
    findings: Vec<Finding>,
    /// The most severe finding's severity, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    highest: Option<Severity>,
}

fn drug_out(kb: &Knowledge, index: usize, m: &MedicationIn, schedule: Option<String>, r: &Resolved) -> DrugOut {
    DrugOut {
        index,
        name: m.name.clone(),
        rxnorm: m.rxnorm.clone(),
        schedule,
        ingredients: if r.ingredients.is_empty() {
            r.own_terms.iter().cloned().collect()
        } else {
            r.ingredients.iter().filter_map(|s| kb.ingredient_name(s)).map(str::to_owned).collect()
        },
    }
}

fn parse_drug(value: &str) -> Result<MedicationIn, ApiError> {
    let m = match value.strip_prefix("rxnorm:") {
        Some(code) => MedicationIn { name: format!("RxNorm {code}"), rxnorm: Some(code.to_owned()) },
        None => MedicationIn { name: value.to_owned(), rxnorm: None },
    };
    m.check().map_err(|e| bad(e.code, e.message))?;
    Ok(m)
}

#[utoipa::path(get, path = "/api/v1/medication/interactions", tag = "medication",
    params(
        ("drug" = Vec<String>, Query, description = "A drug to check, repeated (2 to 50 in all with the patient's): a name (`ibuprofen`, `Advil`, `Warfarin 5 mg tablet`) or `rxnorm:CODE`"),
        ("patient" = Option<String>, Query, description = "Also check against this patient's active medications and allergies (read, audited; nothing is saved)"),
    ),
    responses(
        (status = 200, description = "The findings, most severe first (an empty list: no known interaction). Drugs the sets do not know are listed with no ingredients", body = CheckOut,
         example = json!({"drugs": [{"index": 0, "name": "warfarin", "ingredients": ["warfarin"]}, {"index": 1, "name": "ibuprofen", "ingredients": ["ibuprofen"]}],
             "findings": [{"kind": "interaction", "rule": "pddi-warfarin-nsaids", "severity": "danger", "a": 0, "b": 1, "description": "Potential drug-drug interaction between warfarin and an NSAID: increased risk of bleeding…", "mechanism": "NSAIDs have antiplatelet effects…", "recommendation": "…use an alternative such as acetaminophen…", "source": "HL7 PDDI-CDS, PlanDefinition warfarin-nsaids-cds-sign"}], "highest": "danger"})),
        (status = 400, description = "No drug, more than 50, an unknown parameter (`invalid_query`), or a bad drug (`invalid_medication`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "give 1 to 50 `drug` parameters"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn check(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<CheckOut>, ApiError> {
    let mut asked = Vec::new();
    let mut patient = None;
    for (k, v) in hearth_workflow::fhir::pairs(raw.as_deref()) {
        match k.as_str() {
            "drug" => asked.push(parse_drug(&v)?),
            "patient" if patient.is_none() => patient = Some(v),
            _ => return Err(bad("invalid_query", format!("unknown or repeated parameter `{k}`"))),
        }
    }
    if asked.is_empty() || asked.len() > MAX_DRUGS {
        return Err(bad("invalid_query", format!("give 1 to {MAX_DRUGS} `drug` parameters")));
    }
    let kb = kb()?;
    let mut list: Vec<(MedicationIn, Option<String>)> = asked.into_iter().map(|m| (m, None)).collect();
    let mut allergies = Vec::new();
    if let Some(p) = patient {
        let store = app.store_for(&caller);
        let patient = patient_of(&store, &caller, Some(&p)).await?;
        for (r, m) in active_medications(&app, &store, &patient).await?.into_iter().take(MAX_DRUGS) {
            list.push((m, Some(r)));
        }
        allergies = allergies_of(&app, &store, &patient).await?;
    }
    let resolved: Vec<Resolved> = list.iter().map(|(m, _)| kb.resolve(&m.drug())).collect();
    let mut findings = kb.interactions(&resolved);
    for (i, r) in resolved.iter().enumerate() {
        findings.extend(kb.allergies(i, r, &allergies));
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.a.cmp(&b.a)).then(a.b.cmp(&b.b)));
    let highest = findings.first().map(|f| f.severity);
    let drugs =
        list.iter().zip(&resolved).enumerate().map(|(i, ((m, s), r))| drug_out(kb, i, m, s.clone(), r)).collect();
    Ok(Json(CheckOut { drugs, findings, highest }))
}

/// A schedule was added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AddedOut {
    schedule: ScheduleOut,
    /// What the checks found (acknowledged or overridden), each recorded as a `DetectedIssue`.
    findings: Vec<Finding>,
    /// `DetectedIssue/{id}` per finding.
    detected_issues: Vec<String>,
}

/// A refusal that carries the findings: the error envelope plus `findings`.
fn refused(code: &'static str, message: String, findings: &[Finding]) -> Response {
    (StatusCode::CONFLICT, Json(json!({"error": {"code": code, "message": message}, "findings": findings})))
        .into_response()
}

#[utoipa::path(post, path = "/api/v1/medication/schedules", tag = "medication",
    request_body(content = ScheduleIn, description = "A medication and when to take it. A clinician's schedule is a `MedicationRequest` (an order); anyone else's (the patient, their caregiver) a `MedicationStatement`. The new medication is checked against the patient's active medications and allergies first",
        example = json!({"medication": {"name": "Ibuprofen 400 mg tablet", "rxnorm": "5640"}, "dose": {"value": 400, "unit": "mg"}, "route": "oral", "times": ["08:00", "20:00"], "start": "2026-12-07", "end": "2026-12-14"})),
    responses(
        (status = 201, description = "Added; any finding was acknowledged (patient, caregiver) or overridden (clinician) and is recorded as a DetectedIssue", body = AddedOut),
        (status = 400, description = "Invalid schedule, nothing written (stable code: invalid_body, patient_required, invalid_medication, invalid_dose, invalid_route, invalid_instructions, invalid_timing, invalid_date, invalid_taper, invalid_quantity, invalid_override, invalid_resource)", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_timing", "message": "give `times` or `every_hours`, or set `as_needed`"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not add to this patient's record (`forbidden`), or a non-clinician sent `override_reason` (`override_forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "override_forbidden", "message": "only a clinician overrides a finding"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 409, description = "Nothing written; the body also carries `findings`. `interaction_warning`: an interaction or allergy was found and the patient or caregiver has not acknowledged it (send again with `acknowledge: true`); `override_required`: a clinician's order meets a `danger` finding and needs `override_reason`", body = ErrorEnvelope,
         example = json!({"error": {"code": "interaction_warning", "message": "ibuprofen: danger: Potential drug-drug interaction between warfarin and an NSAID…"}, "findings": []})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn add_schedule(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: ScheduleIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, input.patient.as_deref()).await?;
    let sched = input.check().map_err(|e| bad(e.code, e.message))?;
    let clinician = caller.role == Role::Clinician;
    if input.override_reason.is_some() && !clinician {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "override_forbidden", "only a clinician overrides a finding"));
    }
    let (current, new_index, findings) = check_new(&app, &store, &patient, &sched.medication, None).await?;
    if let Some(refusal) =
        gate(&findings, &sched.medication.name, clinician, input.acknowledge, input.override_reason.as_deref())
    {
        return Ok(refusal);
    }
    let now = app.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let author = fhir_user(&caller);
    let (rt, resource) = if clinician {
        ("MedicationRequest", sched.request(&patient, author.filter(|a| a.starts_with("Practitioner/")), now))
    } else {
        ("MedicationStatement", sched.statement(&patient, author, now))
    };
    let reference = format!("{rt}/{id}");
    hearth_workflow::fhir::validate(&app, rt, &resource)
        .map_err(|e| bad("invalid_resource", format!("the {rt} does not validate: {}", e.describe())))?;
    let override_reason = input.override_reason.as_deref().filter(|_| clinician);
    let issues = issues_for(&app, &patient, &reference, &findings, &current, new_index, author, override_reason, now)?;
    let mut tx = store.begin().await?;
    store_ops::create(&mut tx, hearth_workflow::fhir::write_of(&app, rt, id.clone(), resource.clone()), now).await?;
    for (iid, issue) in &issues {
        store_ops::create(
            &mut tx,
            hearth_workflow::fhir::write_of(&app, "DetectedIssue", iid.clone(), issue.clone()),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    let schedule =
        schedule_out(rt, &id, &resource).ok_or_else(|| ApiError::internal("a schedule without a medication"))?;
    let detected_issues = issues.iter().map(|(iid, _)| format!("DetectedIssue/{iid}")).collect();
    Ok((StatusCode::CREATED, Json(AddedOut { schedule, findings, detected_issues })).into_response())
}

/// What the checks find for `medication` among the patient's active medications (all but
/// `except`, the schedule being edited) and their allergies: the other medications, the new
/// one's index among them, and the findings that involve it, most severe first.
async fn check_new(
    app: &Medication,
    store: &Guarded,
    patient: &str,
    medication: &MedicationIn,
    except: Option<&str>,
) -> Result<(Vec<(String, MedicationIn)>, usize, Vec<Finding>), ApiError> {
    let kb = kb()?;
    let current: Vec<(String, MedicationIn)> = active_medications(app, store, patient)
        .await?
        .into_iter()
        .filter(|(r, _)| Some(r.as_str()) != except)
        .collect();
    let allergies = allergies_of(app, store, patient).await?;
    let mut resolved: Vec<Resolved> = current.iter().map(|(_, m)| kb.resolve(&m.drug())).collect();
    let new_index = resolved.len();
    resolved.push(kb.resolve(&medication.drug()));
    let new_med = resolved.last().cloned().unwrap_or_default();
    let mut findings: Vec<Finding> =
        kb.interactions(&resolved).into_iter().filter(|f| f.a == new_index || f.b == Some(new_index)).collect();
    findings.extend(kb.allergies(new_index, &new_med, &allergies));
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok((current, new_index, findings))
}

/// The refusal the findings call for, if any: a patient or caregiver who has not acknowledged
/// them (`interaction_warning`), a clinician meeting a `danger` finding without an override
/// reason (`override_required`).
fn gate(
    findings: &[Finding],
    name: &str,
    clinician: bool,
    acknowledge: bool,
    override_reason: Option<&str>,
) -> Option<Response> {
    if findings.is_empty() {
        return None;
    }
    let summary = findings
        .iter()
        .map(|f| format!("{name}: {}: {}", f.severity.as_str(), f.description))
        .collect::<Vec<_>>()
        .join(" | ");
    if clinician {
        if findings.iter().any(|f| f.severity == Severity::Danger) && override_reason.is_none() {
            return Some(refused("override_required", summary, findings));
        }
    } else if !acknowledge {
        return Some(refused("interaction_warning", summary, findings));
    }
    None
}

/// One validated `DetectedIssue` (with its new id) per finding against the schedule `reference`.
#[allow(clippy::too_many_arguments)]
fn issues_for(
    app: &Medication,
    patient: &str,
    reference: &str,
    findings: &[Finding],
    current: &[(String, MedicationIn)],
    new_index: usize,
    author: Option<&str>,
    override_reason: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let mut issues = Vec::with_capacity(findings.len());
    for f in findings {
        let mut implicated = vec![reference.to_owned()];
        if f.kind == "allergy" {
            implicated.push(f.source.split(';').next().unwrap_or_default().to_owned());
        } else if let Some((other, _)) =
            [Some(f.a), f.b].into_iter().flatten().find(|i| *i != new_index).and_then(|i| current.get(i))
        {
            implicated.push(other.clone());
        }
        let issue = IssueOf { patient, finding: f, implicated, author, override_reason, now }.resource();
        hearth_workflow::fhir::validate(app, "DetectedIssue", &issue)
            .map_err(|e| bad("invalid_resource", format!("the DetectedIssue does not validate: {}", e.describe())))?;
        issues.push((uuid::Uuid::now_v7().to_string(), issue));
    }
    Ok(issues)
}

/// A schedule by id (a `MedicationStatement` or a `MedicationRequest`), read through the caller's
/// view: (type, current version, body, patient id). Unknown or out of reach is `404 not_found`.
async fn find_schedule(store: &Guarded, id: &str) -> Result<(&'static str, Version, Value, String), ApiError> {
    if !hearth_workflow::fhir::valid_id(id) {
        return Err(no_schedule());
    }
    for rt in ["MedicationStatement", "MedicationRequest"] {
        match store.read(rt, id).await {
            Ok(Current::Found(v)) => {
                let body = body_of(&v).ok_or_else(no_schedule)?;
                let patient = body
                    .pointer("/subject/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("Patient/"))
                    .map(str::to_owned)
                    .ok_or_else(no_schedule)?;
                return Ok((rt, v, body, patient));
            }
            Ok(_) | Err(StoreError::Forbidden(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(no_schedule())
}

/// Who changes a schedule: a clinician's order by a clinician; the patient's own statement by
/// the patient or a caregiver linked to them (who may add one on their behalf). The store's
/// reach decides which patients each of them reaches.
fn may_change(caller: &Caller, resource_type: &str) -> Result<(), ApiError> {
    let allowed = match resource_type {
        "MedicationRequest" => caller.role == Role::Clinician,
        _ => matches!(caller.role, Role::Patient | Role::Caregiver),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_changeable",
            "a clinician's order is changed by a clinician; the patient's own medication by the patient or their caregiver",
        ))
    }
}

fn not_active() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "not_active", "the schedule is no longer active")
}

/// A schedule was changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChangedOut {
    schedule: ScheduleOut,
    /// When the medication changed: what the checks found (acknowledged or overridden), each
    /// recorded as a `DetectedIssue`.
    findings: Vec<Finding>,
    /// `DetectedIssue/{id}` per finding.
    detected_issues: Vec<String>,
}

#[utoipa::path(put, path = "/api/v1/medication/schedules/{id}", tag = "medication",
    params(("id" = String, Path, description = "The schedule's id (of its `MedicationStatement` or `MedicationRequest`)")),
    request_body(content = ScheduleIn, description = "The whole schedule as it is from now (dose, route, times, days, end, tapering, as-needed). A new `quantity` is the supply counted now and starts a new refill cycle; without one the earlier count stands. A different medication is checked again against the patient's other active medications and allergies. Queued reminders are cancelled and the schedule replanned at once",
        example = json!({"medication": {"name": "Metformin 500 mg tablet", "rxnorm": "6809"}, "dose": {"value": 500, "unit": "mg"}, "times": ["09:00", "21:00"], "start": "2026-12-07"})),
    responses(
        (status = 200, description = "Changed", body = ChangedOut),
        (status = 400, description = "Invalid schedule, nothing written (stable code: invalid_body, patient_mismatch, invalid_medication, invalid_dose, invalid_route, invalid_instructions, invalid_timing, invalid_date, invalid_taper, invalid_quantity, invalid_override, invalid_resource)", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_timing", "message": "give `times` or `every_hours`, or set `as_needed`"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "A clinician's order changed by someone else or the patient's statement by a clinician (`not_changeable`), the caller may read but not write this record (`forbidden`), or a non-clinician sent `override_reason` (`override_forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_changeable", "message": "a clinician's order is changed by a clinician"}})),
        (status = 404, description = "Unknown schedule, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such schedule"}})),
        (status = 409, description = "Nothing written. `not_active`: the schedule was stopped; `version_conflict`: it changed meanwhile, read it again; `interaction_warning` / `override_required` (the body also carries `findings`): as when adding", body = ErrorEnvelope,
         example = json!({"error": {"code": "not_active", "message": "the schedule is no longer active"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn edit_schedule(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: ScheduleIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let store = app.store_for(&caller);
    let (rt, version, old, patient) = find_schedule(&store, &id).await?;
    may_change(&caller, rt)?;
    if input.patient.as_deref().is_some_and(|p| p != patient) {
        return Err(bad("patient_mismatch", "a schedule stays with its patient"));
    }
    let mut sched = input.check().map_err(|e| bad(e.code, e.message))?;
    let clinician = caller.role == Role::Clinician;
    if input.override_reason.is_some() && !clinician {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "override_forbidden", "only a clinician overrides a finding"));
    }
    let previous = schedule_out(rt, &id, &old).ok_or_else(no_schedule)?;
    if previous.status != "active" {
        return Err(not_active());
    }
    let now = app.clock.now();
    if sched.quantity.is_some() {
        sched.quantity_counted = Some(now);
    } else {
        sched.quantity = previous.quantity;
        sched.quantity_counted = previous.quantity_since.as_deref().and_then(hearth_workflow::fhir::parse_instant);
    }
    let reference = format!("{rt}/{id}");
    // A change at drug level (other ingredients) is checked again; a new dose or time is not.
    let kb = kb()?;
    let (findings, issues) = if kb.resolve(&previous.medication.drug()) == kb.resolve(&sched.medication.drug()) {
        (Vec::new(), Vec::new())
    } else {
        let (current, new_index, findings) =
            check_new(&app, &store, &patient, &sched.medication, Some(&reference)).await?;
        if let Some(refusal) =
            gate(&findings, &sched.medication.name, clinician, input.acknowledge, input.override_reason.as_deref())
        {
            return Ok(refusal);
        }
        let override_reason = input.override_reason.as_deref().filter(|_| clinician);
        let issues = issues_for(
            &app,
            &patient,
            &reference,
            &findings,
            &current,
            new_index,
            fhir_user(&caller),
            override_reason,
            now,
        )?;
        (findings, issues)
    };
    // The author and first assertion stay the original's.
    let first = |p: &str| old.pointer(p).and_then(Value::as_str).and_then(hearth_workflow::fhir::parse_instant);
    let resource = if rt == "MedicationRequest" {
        let requester = old.pointer("/requester/reference").and_then(Value::as_str);
        sched.request(&patient, requester, first("/authoredOn").unwrap_or(now))
    } else {
        let source = old.pointer("/informationSource/reference").and_then(Value::as_str);
        sched.statement(&patient, source, first("/dateAsserted").unwrap_or(now))
    };
    hearth_workflow::fhir::validate(&app, rt, &resource)
        .map_err(|e| bad("invalid_resource", format!("the {rt} does not validate: {}", e.describe())))?;
    let mut tx = store.begin().await?;
    let written = store_ops::update(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, rt, id.clone(), resource.clone()),
        Some(version.version_id),
        now,
    )
    .await?;
    for (iid, issue) in &issues {
        store_ops::create(
            &mut tx,
            hearth_workflow::fhir::write_of(&app, "DetectedIssue", iid.clone(), issue.clone()),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    // Cancel the queued reminders and write the new ones now; should this fail, the worker's next
    // pass does the same (the new version no longer matches the plan's fingerprint).
    if let Err(e) = crate::reminders::replan(&app, rt, &written.version, now).await {
        tracing::warn!(error = %e, schedule = %reference, "medication: replanning after an edit failed");
    }
    let schedule =
        schedule_out(rt, &id, &resource).ok_or_else(|| ApiError::internal("a schedule without a medication"))?;
    let detected_issues = issues.iter().map(|(iid, _)| format!("DetectedIssue/{iid}")).collect();
    Ok((StatusCode::OK, Json(ChangedOut { schedule, findings, detected_issues })).into_response())
}

/// Why a schedule is stopped.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopIn {
    /// 1–500 printable characters (`side effects`, `course finished`, `prescriber's advice`).
    reason: String,
}

/// A schedule was stopped.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StoppedOut {
    schedule: ScheduleOut,
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/medication/schedules/{id}/stop", tag = "medication",
    params(("id" = String, Path, description = "The schedule's id (of its `MedicationStatement` or `MedicationRequest`)")),
    request_body(content = StopIn, description = "Why it is stopped (kept as the resource's `statusReason`)", example = json!({"reason": "Stomach upset"})),
    responses(
        (status = 200, description = "Stopped: the `MedicationStatement` or `MedicationRequest` is `stopped` with the reason, and its queued reminders are cancelled", body = StoppedOut),
        (status = 400, description = "Nothing written (stable code: invalid_body, invalid_reason, invalid_resource)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_reason", "message": "`reason`: 1 to 500 printable characters"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "A clinician's order stopped by someone else or the patient's statement by a clinician (`not_changeable`), or the caller may read but not write this record (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_changeable", "message": "a clinician's order is changed by a clinician"}})),
        (status = 404, description = "Unknown schedule, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such schedule"}})),
        (status = 409, description = "Already stopped (`not_active`), or changed meanwhile (`version_conflict`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_active", "message": "the schedule is no longer active"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn stop_schedule(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: StopIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let store = app.store_for(&caller);
    let (rt, version, mut resource, _) = find_schedule(&store, &id).await?;
    may_change(&caller, rt)?;
    if !hearth_workflow::fhir::is_display_text(&input.reason, 500) {
        return Err(bad("invalid_reason", "`reason`: 1 to 500 printable characters"));
    }
    if resource.get("status").and_then(Value::as_str) != Some("active") {
        return Err(not_active());
    }
    let reason = json!({"text": input.reason});
    if let Some(o) = resource.as_object_mut() {
        o.insert("status".into(), json!("stopped"));
        // A statement's statusReason is a list, a request's one concept.
        o.insert("statusReason".into(), if rt == "MedicationRequest" { reason } else { json!([reason]) });
    }
    hearth_workflow::fhir::validate(&app, rt, &resource)
        .map_err(|e| bad("invalid_resource", format!("the {rt} does not validate: {}", e.describe())))?;
    let now = app.clock.now();
    let mut tx = store.begin().await?;
    store_ops::update(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, rt, id.clone(), resource.clone()),
        Some(version.version_id),
        now,
    )
    .await?;
    tx.commit().await?;
    let reference = format!("{rt}/{id}");
    // None of its reminders go out now; should this fail, the worker's next pass cancels them.
    if let Err(e) = crate::reminders::forget(&app, &reference, now).await {
        tracing::warn!(error = %e, schedule = %reference, "medication: cancelling reminders after a stop failed");
    }
    let schedule =
        schedule_out(rt, &id, &resource).ok_or_else(|| ApiError::internal("a schedule without a medication"))?;
    Ok(Json(StoppedOut { schedule, reason: input.reason }).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatientParam {
    patient: Option<String>,
}

/// A patient's schedules.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SchedulesOut {
    patient: String,
    /// Active statements and requests.
    schedules: Vec<ScheduleOut>,
}

#[utoipa::path(get, path = "/api/v1/medication/schedules", tag = "medication",
    params(("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record")),
    responses(
        (status = 200, description = "The patient's active schedules (their own statements and clinicians' orders)", body = SchedulesOut),
        (status = 400, description = "No patient named and the caller is not a patient (`patient_required`), or an unknown parameter (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "patient_required", "message": "name the patient (`patient`)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn schedules(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    query: Result<axum::extract::Query<PatientParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SchedulesOut>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let mut out = Vec::new();
    for rt in ["MedicationStatement", "MedicationRequest"] {
        let found = app
            .search_all(
                &store,
                rt,
                &pairs(&[("subject", format!("Patient/{patient}")), ("status", "active".to_owned())]),
                MAX_READ,
            )
            .await?;
        out.extend(found.iter().filter_map(|v| schedule_out(rt, &v.id, &body_of(v)?)));
    }
    Ok(Json(SchedulesOut { patient, schedules: out }))
}

#[utoipa::path(post, path = "/api/v1/medication/logs", tag = "medication",
    request_body(content = LogIn, description = "A dose taken, skipped or late, against one of the patient's schedules; stored as a `MedicationAdministration`",
        example = json!({"schedule": "MedicationStatement/0190…", "status": "taken", "at": "2026-12-07T08:05:00+05:30", "scheduled_for": "2026-12-07T08:00:00+05:30"})),
    responses(
        (status = 201, description = "Recorded", body = LogOut),
        (status = 400, description = "Invalid log, nothing written (stable code: invalid_body, patient_required, invalid_schedule, invalid_status, invalid_time, invalid_resource)", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_status", "message": "`status` is taken, skipped or late"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not add to this patient's record", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "Unknown patient or schedule, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such schedule"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn add_log(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: LogIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, input.patient.as_deref()).await?;
    let now = app.clock.now();
    let log = input.check(now).map_err(|e| bad(e.code, e.message))?;
    let (rt, sid, sched) = schedule_of(&store, &input.schedule, &patient).await?;
    let medication = medication_of(&sched).ok_or_else(no_schedule)?;
    let reference = format!("{rt}/{sid}");
    let resource = log.administration(&patient, &reference, &medication, fhir_user(&caller));
    hearth_workflow::fhir::validate(&app, "MedicationAdministration", &resource).map_err(|e| {
        bad("invalid_resource", format!("the MedicationAdministration does not validate: {}", e.describe()))
    })?;
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = store.begin().await?;
    store_ops::create(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, "MedicationAdministration", id.clone(), resource.clone()),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(log_out(&id, &resource))).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsParams {
    patient: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A patient's dose logs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LogsOut {
    patient: String,
    /// Oldest first.
    logs: Vec<LogOut>,
}

#[utoipa::path(get, path = "/api/v1/medication/logs", tag = "medication",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("from" = Option<String>, Query, description = "From this instant (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Before this instant (RFC 3339)"),
    ),
    responses(
        (status = 200, description = "The patient's dose logs in the range, oldest first", body = LogsOut),
        (status = 400, description = "No patient named and the caller is not a patient (`patient_required`), a bad instant (`invalid_time`), or an unknown parameter (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_time", "message": "`from` is not an RFC 3339 instant"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn logs(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    query: Result<axum::extract::Query<LogsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LogsOut>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let instant = |v: &Option<String>, name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        v.as_deref()
            .map(|s| {
                hearth_workflow::fhir::parse_instant(s)
                    .ok_or_else(|| bad("invalid_time", format!("`{name}` is not an RFC 3339 instant")))
            })
            .transpose()
    };
    let (from, to) = (instant(&q.from, "from")?, instant(&q.to, "to")?);
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let mut search = vec![("subject", format!("Patient/{patient}")), ("_sort", "effective-time".to_owned())];
    if let Some(f) = from {
        search.push(("effective-time", format!("ge{}", f.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))));
    }
    if let Some(t) = to {
        search.push(("effective-time", format!("lt{}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))));
    }
    let found = app.search_all(&store, "MedicationAdministration", &pairs(&search), MAX_READ).await?;
    let logs = found.iter().filter_map(|v| Some(log_out(&v.id, &body_of(v)?))).collect();
    Ok(Json(LogsOut { patient, logs }))
}

/// Most days one adherence report covers.
pub const MAX_ADHERENCE_DAYS: i64 = 366;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdherenceParams {
    patient: Option<String>,
    schedule: String,
    from: Option<String>,
    to: Option<String>,
}

/// Adherence of one schedule over a period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AdherenceOut {
    patient: String,
    schedule: String,
    from: String,
    to: String,
    /// The zone the dose times were computed in (the patient's).
    time_zone: String,
    adherence: crate::adherence::Adherence,
    /// When the schedule was added with a `quantity`: what is left now and when it runs out.
    #[serde(skip_serializing_if = "Option::is_none")]
    refill: Option<crate::refill::Refill>,
}

#[utoipa::path(get, path = "/api/v1/medication/adherence", tag = "medication",
    params(
        ("schedule" = String, Query, description = "`MedicationStatement/{id}` or `MedicationRequest/{id}`"),
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("from" = Option<String>, Query, description = "From this instant (RFC 3339); default 30 days before `to`"),
        ("to" = Option<String>, Query, description = "Before this instant (RFC 3339); default and at most now"),
    ),
    responses(
        (status = 200, description = "Doses due, on time, late, skipped and missed; proportion on time; PDC from the logs (days on which every dose due was taken); for a schedule added with a `quantity`, the refill prediction (remaining, and the first dose it cannot cover)", body = AdherenceOut,
         example = json!({"patient": "0190…", "schedule": "MedicationStatement/0190…", "from": "2026-11-07T00:00:00Z", "to": "2026-12-07T00:00:00Z", "time_zone": "Asia/Kolkata",
             "adherence": {"due": 60, "on_time": 50, "late": 4, "skipped": 2, "missed": 4, "proportion_on_time": 0.833, "days_due": 30, "days_covered": 25, "pdc": 0.833}})),
        (status = 400, description = "No patient named and the caller is not a patient (`patient_required`), a bad schedule reference (`invalid_schedule`), a bad instant or a range over 366 days (`invalid_time`), or an unknown parameter (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_time", "message": "`from` is not an RFC 3339 instant"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient or schedule, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such schedule"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn adherence_of(
    State(app): State<Arc<Medication>>,
    ApiCaller(caller): ApiCaller,
    query: Result<axum::extract::Query<AdherenceParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AdherenceOut>, ApiError> {
    let axum::extract::Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let now = app.clock.now();
    let instant = |v: &Option<String>, name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        v.as_deref()
            .map(|s| {
                hearth_workflow::fhir::parse_instant(s)
                    .ok_or_else(|| bad("invalid_time", format!("`{name}` is not an RFC 3339 instant")))
            })
            .transpose()
    };
    let to = instant(&q.to, "to")?.unwrap_or(now).min(now);
    let from = instant(&q.from, "from")?.unwrap_or(to - chrono::TimeDelta::days(30));
    if from >= to || to - from > chrono::TimeDelta::days(MAX_ADHERENCE_DAYS) {
        return Err(bad(
            "invalid_time",
            format!("`from` is before `to` (and before now), at most {MAX_ADHERENCE_DAYS} days"),
        ));
    }
    let (rt, sid, body) = schedule_of(&store, &q.schedule, &patient).await?;
    let schedule = schedule_out(rt, sid, &body).ok_or_else(no_schedule)?;
    let tz = crate::reminders::time_zone(&app, &app.notifier, &patient).await?;
    let found = app
        .search_all(
            &store,
            "MedicationAdministration",
            &pairs(&[("subject", format!("Patient/{patient}")), ("_sort", "effective-time".to_owned())]),
            10 * MAX_READ,
        )
        .await?;
    let logs: Vec<LogOut> = found.iter().filter_map(|v| Some(log_out(&v.id, &body_of(v)?))).collect();
    let adherence = crate::adherence::adherence(&schedule, tz, from, to, &logs);
    let since = schedule.quantity_since.as_deref().and_then(hearth_workflow::fhir::parse_instant);
    let refill =
        schedule.quantity.zip(since).map(|(q, since)| crate::refill::predict(&schedule, tz, q, since, &logs, now));
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(Json(AdherenceOut {
        patient,
        schedule: schedule.reference,
        from: fmt(from),
        to: fmt(to),
        time_zone: tz.name().to_owned(),
        adherence,
        refill,
    }))
}

//! The personal health record view (issue 22, item 5): one patient's problems, medications,
//! allergies, immunisations, recent results and documents, and one result's history for a chart,
//! read from the FHIR record through the caller's guarded store view — so the patient, their
//! caregivers and the clinicians they share with see it, nobody else (`404`), and each request is
//! an audit event naming the patient. Only `final` results count: proposals read from a document
//! appear once confirmed or corrected.

use hearth_workflow::openapi::ErrorEnvelope;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use serde::Serialize;
use serde_json::Value;

use crate::Documents;
use crate::lab::Catalog;
use crate::results::{LOINC, LabResult, result_of, search};
use crate::routes::{Document, bad, document_of, not_found, subject};

/// One entry of a summary list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: String,
    /// The FHIR resource type (`Condition`, `MedicationRequest`, `MedicationStatement`, …).
    pub resource_type: String,
    /// What it is, as its code's text or display.
    pub display: String,
    /// Its clinical status (problems, allergies) or status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When: onset, authored, recorded or given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// A patient's record at a glance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PhrSummary)]
pub struct Summary {
    pub patient: String,
    pub problems: Vec<Entry>,
    pub medications: Vec<Entry>,
    pub allergies: Vec<Entry>,
    pub immunizations: Vec<Entry>,
    /// The 20 newest final laboratory results.
    pub results: Vec<LabResult>,
    /// The 10 newest documents.
    pub documents: Vec<Document>,
}

fn concept_text(c: Option<&Value>) -> Option<String> {
    let c = c?;
    c.get("text")
        .or_else(|| c.pointer("/coding/0/display"))
        .or_else(|| c.pointer("/coding/0/code"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn entry(r: &Value) -> Option<Entry> {
    let resource_type = r.get("resourceType")?.as_str()?.to_owned();
    let s = |p: &str| r.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let display = concept_text(r.get("code"))
        .or_else(|| concept_text(r.get("medicationCodeableConcept")))
        .or_else(|| concept_text(r.get("vaccineCode")))
        .or_else(|| s("/medicationReference/display"))
        .unwrap_or_else(|| "(not named)".to_owned());
    let status = s("/clinicalStatus/coding/0/code").or_else(|| s("/status"));
    let date = [
        "/onsetDateTime",
        "/recordedDate",
        "/authoredOn",
        "/effectiveDateTime",
        "/occurrenceDateTime",
        "/dateAsserted",
    ]
    .iter()
    .find_map(|p| s(p));
    Some(Entry { id: s("/id")?, resource_type, display, status, date })
}

fn pairs(list: &[(&str, String)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// The asked patient and the other allowed parameters.
type Params = (Option<String>, Vec<(String, String)>);

/// The `patient` parameter and nothing else unknown.
fn patient_param(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
    let mut patient = None;
    let mut rest = Vec::new();
    for (k, v) in hearth_workflow::fhir::pairs(raw) {
        if k == "patient" {
            if !hearth_workflow::fhir::valid_id(&v) {
                return Err(not_found("patient record"));
            }
            patient = Some(v);
        } else if allowed.contains(&k.as_str()) {
            rest.push((k, v));
        } else {
            return Err(bad("invalid_query", format!("unknown parameter '{k}' (patient, {})", allowed.join(", "))));
        }
    }
    Ok((patient, rest))
}

#[utoipa::path(get, path = "/api/v1/phr/summary", tag = "phr",
    params(("patient" = Option<String>, Query, description = "The Patient id (a patient's own record when omitted by a patient)")),
    responses(
        (status = 200, description = "Problems, medications, allergies, immunisations, recent final results and documents", body = Summary),
        (status = 400, description = "invalid_query: an unknown parameter; missing_patient: staff name the patient", body = ErrorEnvelope),
        (status = 404, description = "not_found: no such patient within the caller's reach (the attempt is audited)", body = ErrorEnvelope),
        (status = 410, description = "gone: the patient record was deleted", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn summary(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Summary>, ApiError> {
    let (asked, _) = patient_param(raw.as_deref(), &[])?;
    let store = app.store_for(&caller);
    let patient = subject(&store, &caller, asked.as_deref()).await?;
    let me = format!("Patient/{patient}");
    let list = |t: &'static str, by: &'static str, count: &'static str| {
        let store = &store;
        let app = &app;
        let me = me.clone();
        async move {
            let found =
                search(app, store, t, &pairs(&[(by, me), ("_sort", "-_lastUpdated".into()), ("_count", count.into())]))
                    .await?;
            Ok::<Vec<Entry>, ApiError>(found.iter().filter_map(entry).collect())
        }
    };
    let problems = list("Condition", "subject", "50").await?;
    let mut medications = list("MedicationRequest", "subject", "50").await?;
    medications.extend(list("MedicationStatement", "subject", "50").await?);
    let allergies = list("AllergyIntolerance", "patient", "50").await?;
    let immunizations = list("Immunization", "patient", "50").await?;
    let results = search(
        &app,
        &store,
        "Observation",
        &pairs(&[
            ("subject", me.clone()),
            ("category", "laboratory".into()),
            ("status", "final".into()),
            ("_sort", "-date".into()),
            ("_count", "20".into()),
        ]),
    )
    .await?
    .iter()
    .filter_map(result_of)
    .collect();
    let documents = search(
        &app,
        &store,
        "DocumentReference",
        &pairs(&[("subject", me.clone()), ("_sort", "-date".into()), ("_count", "10".into())]),
    )
    .await?
    .iter()
    .filter_map(document_of)
    .collect();
    Ok(axum::Json(Summary { patient, problems, medications, allergies, immunizations, results, documents }))
}

/// One point of a result's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// The Observation id.
    pub id: String,
    pub effective: Option<String>,
    /// In the history's `unit` when it converts (conventional ↔ SI), else as recorded.
    pub value: f64,
    pub unit: String,
    /// As recorded, when it was converted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_unit: Option<String>,
    /// `H` or `L` as recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<String>,
    /// The DocumentReference it was read from, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
}

/// A reference range in the history's unit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Range {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    pub unit: String,
}

/// One result's history, oldest first, for a chart.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"code": "4548-4", "name": "Glycated hemoglobin (HbA1c)", "unit": "% of total Hb",
    "reference_range": {"low": 4.0, "high": 5.6, "unit": "% of total Hb"},
    "points": [{"id": "o1", "effective": "2026-05-02", "value": 7.1, "unit": "% of total Hb"}]}))]
pub struct History {
    /// LOINC code.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The unit the points are in: the analyte's conventional unit when the catalogue knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The newest recorded reference range, in `unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_range: Option<Range>,
    pub points: Vec<Point>,
}

#[utoipa::path(get, path = "/api/v1/phr/results", tag = "phr",
    params(
        ("code" = String, Query, description = "The LOINC code (`4548-4`, or `http://loinc.org|4548-4`)"),
        ("patient" = Option<String>, Query, description = "The Patient id (a patient's own record when omitted by a patient)"),
    ),
    responses(
        (status = 200, description = "The final results with this code, oldest first, with the reference range", body = History),
        (status = 400, description = "invalid_query: no or a malformed code, or an unknown parameter; missing_patient: staff name the patient", body = ErrorEnvelope),
        (status = 404, description = "not_found: no such patient within the caller's reach (the attempt is audited)", body = ErrorEnvelope),
        (status = 410, description = "gone: the patient record was deleted", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn results(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<History>, ApiError> {
    let (asked, rest) = patient_param(raw.as_deref(), &["code"])?;
    let code = match rest.as_slice() {
        [(_, c)] => c.strip_prefix(&format!("{LOINC}|")).unwrap_or(c).to_owned(),
        _ => return Err(bad("invalid_query", "name one LOINC code (code=4548-4)")),
    };
    if code.is_empty() || code.len() > 16 || !code.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(bad("invalid_query", "code is a LOINC code such as 4548-4"));
    }
    let store = app.store_for(&caller);
    let patient = subject(&store, &caller, asked.as_deref()).await?;
    let found = search(
        &app,
        &store,
        "Observation",
        &pairs(&[
            ("subject", format!("Patient/{patient}")),
            ("code", format!("{LOINC}|{code}")),
            ("status", "final".into()),
            ("_sort", "date".into()),
            ("_count", "100".into()),
        ]),
    )
    .await?;
    let catalog = Catalog::builtin().map_err(ApiError::internal)?;
    let analyte = catalog.analyte(&code);
    let convert = |v: f64, u: &str| catalog.to_conventional(&code, v, u);
    let mut points = Vec::new();
    let mut range = None;
    for o in &found {
        let (Some(id), Some(value)) =
            (o.get("id").and_then(Value::as_str), o.pointer("/valueQuantity/value").and_then(Value::as_f64))
        else {
            continue;
        };
        let recorded_unit = o.pointer("/valueQuantity/unit").and_then(Value::as_str).unwrap_or_default().to_owned();
        let (shown, unit, converted) = match convert(value, &recorded_unit) {
            Some((v, u)) => {
                let changed = u != recorded_unit;
                (v, u, changed)
            }
            None => (value, recorded_unit.clone(), false),
        };
        let low = o.pointer("/referenceRange/0/low/value").and_then(Value::as_f64);
        let high = o.pointer("/referenceRange/0/high/value").and_then(Value::as_f64);
        if low.is_some() || high.is_some() {
            let ru = o
                .pointer("/referenceRange/0/low/unit")
                .or_else(|| o.pointer("/referenceRange/0/high/unit"))
                .and_then(Value::as_str)
                .unwrap_or(&recorded_unit)
                .to_owned();
            let conv = |x: Option<f64>| x.map(|x| convert(x, &ru).map_or(x, |(v, _)| v));
            let unit = convert(0.0, &ru).map_or(ru.clone(), |(_, u)| u);
            range = Some(Range { low: conv(low), high: conv(high), unit });
        }
        points.push(Point {
            id: id.to_owned(),
            effective: o.get("effectiveDateTime").and_then(Value::as_str).map(str::to_owned),
            value: shown,
            unit,
            recorded_value: converted.then_some(value),
            recorded_unit: converted.then_some(recorded_unit),
            interpretation: o.pointer("/interpretation/0/coding/0/code").and_then(Value::as_str).map(str::to_owned),
            document: o
                .pointer("/derivedFrom/0/reference")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("DocumentReference/"))
                .map(str::to_owned),
        });
    }
    let name = analyte.map(|a| a.name.clone()).or_else(|| found.first().and_then(|o| concept_text(o.get("code"))));
    Ok(axum::Json(History {
        code,
        name,
        unit: analyte.map(|a| a.conventional.clone()).or_else(|| points.first().map(|p| p.unit.clone())),
        reference_range: range,
        points,
    }))
}

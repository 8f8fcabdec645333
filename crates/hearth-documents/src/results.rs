//! Results proposed from a read lab report (issue 22, item 4): after a document's text is read,
//! [`propose`] turns the results [`crate::lab::extract`] finds into `preliminary` Observations
//! tagged as extracted, `derivedFrom` the DocumentReference, each page's with a Provenance naming
//! the document and the page. The patient or a clinician they share with confirms
//! (`final`), corrects (a new value, then `final`) or rejects (`entered-in-error`) each one; only
//! `final` results count (the PHR view reads only those).

use hearth_workflow::openapi::ErrorEnvelope;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use hearth_store::{Current, Guarded};
use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Documents;
use crate::lab::{Catalog, Extracted, Flag};
use crate::routes::{bad, not_found};

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
/// The tag on every Observation proposed from a document.
pub const EXTRACTED_SYSTEM: &str = "urn:hearth:extracted";
pub const EXTRACTED_CODE: &str = "document";
/// The page of the document a result was read on (on the Observation and the Provenance entity).
pub const PAGE_EXTENSION: &str = "urn:hearth:document-page";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

fn quantity(value: f64, unit: &str) -> Value {
    let mut q = serde_json::Map::new();
    q.insert("value".into(), json!(value));
    q.insert("unit".into(), json!(unit));
    if let Some(code) = crate::lab::ucum(unit) {
        q.insert("system".into(), json!(UCUM));
        q.insert("code".into(), json!(code));
    }
    Value::Object(q)
}

fn interpretation(flag: Flag) -> Value {
    json!([{"coding": [{"system": INTERPRETATION, "code": flag.code(), "display": flag.display()}]}])
}

/// The flag of `value` against an Observation's first reference range.
fn flag_against(value: f64, obs: &Value) -> Option<Flag> {
    let low = obs.pointer("/referenceRange/0/low/value").and_then(Value::as_f64);
    let high = obs.pointer("/referenceRange/0/high/value").and_then(Value::as_f64);
    match (low, high) {
        (Some(l), _) if value < l => Some(Flag::Low),
        (_, Some(h)) if value > h => Some(Flag::High),
        _ => None,
    }
}

/// The proposed Observation for one extracted result.
pub fn observation(id: &str, patient: &str, document: &str, effective: &str, e: &Extracted) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("resourceType".into(), json!("Observation"));
    o.insert("id".into(), json!(id));
    o.insert(
        "meta".into(),
        json!({"tag": [{"system": EXTRACTED_SYSTEM, "code": EXTRACTED_CODE,
            "display": "Read from a document; counts once confirmed"}]}),
    );
    o.insert("extension".into(), json!([{"url": PAGE_EXTENSION, "valuePositiveInt": e.page}]));
    o.insert("status".into(), json!("preliminary"));
    o.insert(
        "category".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory", "display": "Laboratory"}]}]),
    );
    o.insert(
        "code".into(),
        json!({"coding": [{"system": LOINC, "code": e.loinc, "display": e.name}], "text": e.label}),
    );
    o.insert("subject".into(), json!({"reference": format!("Patient/{patient}")}));
    o.insert("effectiveDateTime".into(), json!(effective));
    o.insert("valueQuantity".into(), quantity(e.value, &e.unit));
    if let Some(flag) = e.flag {
        o.insert("interpretation".into(), interpretation(flag));
    }
    if e.low.is_some() || e.high.is_some() {
        let mut r = serde_json::Map::new();
        if let Some(l) = e.low {
            r.insert("low".into(), quantity(l, &e.unit));
        }
        if let Some(h) = e.high {
            r.insert("high".into(), quantity(h, &e.unit));
        }
        if let Some(t) = &e.range {
            r.insert("text".into(), json!(t));
        }
        o.insert("referenceRange".into(), json!([r]));
    }
    o.insert("derivedFrom".into(), json!([{"reference": format!("DocumentReference/{document}")}]));
    Value::Object(o)
}

/// Searches `resource_type` through `store` with `pairs`; the bodies found.
pub(crate) async fn search(
    app: &Documents,
    store: &Guarded,
    resource_type: &str,
    pairs: &[(String, String)],
) -> Result<Vec<Value>, ApiError> {
    let query = app
        .registry()
        .parse_query(&[resource_type], pairs, hearth_search::Handling::Strict)
        .map_err(|e| ApiError::internal(format!("a documents query does not parse: {e:?}")))?;
    let request = hearth_store::SearchRequest {
        query,
        access: store.access().clone(),
        compartment: None,
        cursor: None,
        count_total: false,
    };
    let page = store.search(request).await?;
    Ok(page.matches.iter().filter_map(|v| v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())).collect())
}

/// Proposes the results found in document `id`'s text, as the system, once per document (a
/// document with proposals already gets none again). Answers how many were proposed.
pub(crate) async fn propose(docs: &Documents, id: &str, text: &str) -> Result<usize, String> {
    let catalog = Catalog::builtin()?;
    let found = crate::lab::extract(text, catalog);
    if found.is_empty() {
        return Ok(0);
    }
    let store = docs.system();
    let Current::Found(doc) = store.read("DocumentReference", id).await.map_err(|e| e.to_string())? else {
        return Ok(0);
    };
    let doc: Value = doc.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or("not JSON")?;
    let Some(patient) =
        doc.pointer("/subject/reference").and_then(Value::as_str).and_then(|r| r.strip_prefix("Patient/"))
    else {
        return Ok(0);
    };
    let pairs = [("derived-from".to_owned(), format!("DocumentReference/{id}")), ("_count".to_owned(), "1".to_owned())];
    if !search(docs, &store, "Observation", &pairs).await.map_err(|e| e.message)?.is_empty() {
        return Ok(0);
    }
    // The report's own date when the uploader gave one, else when it was uploaded.
    let effective = doc
        .pointer("/context/period/start")
        .or_else(|| doc.get("date"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let now = docs.clock.now();
    let mut writes = Vec::new();
    let mut pages: std::collections::BTreeMap<usize, Vec<String>> = std::collections::BTreeMap::new();
    for e in &found {
        let oid = uuid::Uuid::now_v7().to_string();
        let body = observation(&oid, patient, id, &effective, e);
        hearth_workflow::fhir::validate(docs, "Observation", &body).map_err(|err| {
            format!("a proposed Observation does not validate: {:?}", err.issues.first().map(|i| &i.diagnostics))
        })?;
        pages.entry(e.page).or_default().push(oid.clone());
        writes.push(hearth_workflow::fhir::write_of(docs, "Observation", oid, body));
    }
    for (page, targets) in &pages {
        let pid = uuid::Uuid::now_v7().to_string();
        let body = json!({
            "resourceType": "Provenance",
            "id": pid,
            "target": targets.iter().map(|t| json!({"reference": format!("Observation/{t}")})).collect::<Vec<_>>(),
            "recorded": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "DERIVE", "display": "derive"}],
                         "text": "results read from a lab report's text"},
            "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler", "display": "Assembler"}]},
                       "who": {"display": "Hearth document reader"}}],
            "entity": [{"role": "source",
                        "what": {"reference": format!("DocumentReference/{id}"), "display": format!("page {page}")},
                        "extension": [{"url": PAGE_EXTENSION, "valuePositiveInt": page}]}],
        });
        hearth_workflow::fhir::validate(docs, "Provenance", &body).map_err(|err| {
            format!("a Provenance does not validate: {:?}", err.issues.first().map(|i| &i.diagnostics))
        })?;
        writes.push(hearth_workflow::fhir::write_of(docs, "Provenance", pid, body));
    }
    let mut tx = store.begin().await.map_err(|e| e.to_string())?;
    for w in writes {
        hearth_store::interactions::create(&mut tx, w, now).await.map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(found.len())
}

/// A proposed or confirmed result as the app API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0190c1d2-7a6b-7c3d-9e8f-0a1b2c3d4e5f", "status": "preliminary", "code": "4548-4",
    "name": "Glycated hemoglobin (HbA1c)", "label": "HbA1c", "value": 7.8, "unit": "%", "low": 4.0, "high": 5.6,
    "interpretation": "H", "page": 1, "effective": "2026-11-30"}))]
pub struct LabResult {
    /// The Observation id.
    pub id: String,
    /// `preliminary` (proposed), `final` (confirmed or corrected) or `entered-in-error` (rejected).
    pub status: String,
    /// LOINC code.
    pub code: String,
    /// The catalogue's name.
    pub name: String,
    /// As the report printed it.
    pub label: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// `H` or `L` when outside the reference range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<String>,
    /// The page of the document it was read on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    pub effective: Option<String>,
}

pub(crate) fn result_of(o: &Value) -> Option<LabResult> {
    Some(LabResult {
        id: o.get("id")?.as_str()?.to_owned(),
        status: o.get("status")?.as_str()?.to_owned(),
        code: o.pointer("/code/coding/0/code")?.as_str()?.to_owned(),
        name: o.pointer("/code/coding/0/display").and_then(Value::as_str).unwrap_or_default().to_owned(),
        label: o.pointer("/code/text").and_then(Value::as_str).unwrap_or_default().to_owned(),
        value: o.pointer("/valueQuantity/value").and_then(Value::as_f64),
        unit: o.pointer("/valueQuantity/unit").and_then(Value::as_str).map(str::to_owned),
        low: o.pointer("/referenceRange/0/low/value").and_then(Value::as_f64),
        high: o.pointer("/referenceRange/0/high/value").and_then(Value::as_f64),
        interpretation: o.pointer("/interpretation/0/coding/0/code").and_then(Value::as_str).map(str::to_owned),
        page: o
            .get("extension")
            .and_then(Value::as_array)
            .and_then(|x| x.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(PAGE_EXTENSION)))
            .and_then(|e| e.get("valuePositiveInt"))
            .and_then(Value::as_u64),
        effective: o.get("effectiveDateTime").and_then(Value::as_str).map(str::to_owned),
    })
}

/// The results read from one document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LabResults {
    pub results: Vec<LabResult>,
}

/// What to do with a proposed result.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"action": "correct", "value": 7.2, "unit": "%"}))]
pub struct ReviewBody {
    /// `confirm` (as read), `correct` (with `value`, optionally `unit`) or `reject`.
    pub action: String,
    /// The right value (`correct` only).
    pub value: Option<f64>,
    /// The right unit (`correct` only; the read unit when left out).
    pub unit: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/documents/{id}/results", tag = "documents",
    params(("id" = String, Path, description = "The DocumentReference id")),
    responses(
        (status = 200, description = "The results read from the document, proposed and reviewed, in reading order", body = LabResults),
        (status = 404, description = "not_found: no such document within the caller's reach", body = ErrorEnvelope),
        (status = 410, description = "gone: the document was deleted", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<axum::Json<LabResults>, ApiError> {
    let store = app.store_for(&caller);
    crate::routes::reference(&store, &id).await?;
    let pairs = [
        ("derived-from".to_owned(), format!("DocumentReference/{id}")),
        ("_sort".to_owned(), "_id".to_owned()),
        ("_count".to_owned(), "500".to_owned()),
    ];
    let found = search(&app, &store, "Observation", &pairs).await?;
    Ok(axum::Json(LabResults { results: found.iter().filter_map(result_of).collect() }))
}

#[utoipa::path(post, path = "/api/v1/documents/{id}/results/{result}", tag = "documents",
    params(("id" = String, Path, description = "The DocumentReference id"),
        ("result" = String, Path, description = "The proposed Observation's id")),
    request_body = ReviewBody,
    responses(
        (status = 200, description = "Confirmed or corrected (now `final`), or rejected (`entered-in-error`)", body = LabResult),
        (status = 400, description = "invalid_body, invalid_action, invalid_value, invalid_unit: a malformed review", body = ErrorEnvelope),
        (status = 403, description = "forbidden: the caller may read but not change this record", body = ErrorEnvelope),
        (status = 404, description = "not_found: no such document or result within the caller's reach", body = ErrorEnvelope),
        (status = 409, description = "already_reviewed: the result was confirmed, corrected or rejected already; conflict: it changed meanwhile", body = ErrorEnvelope),
        (status = 410, description = "gone: the document was deleted", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn review(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    Path((id, result)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<axum::Json<LabResult>, ApiError> {
    let body: ReviewBody = serde_json::from_slice(&body).map_err(|e| bad("invalid_body", e.to_string()))?;
    let store = app.store_for(&caller);
    crate::routes::reference(&store, &id).await?;
    if !hearth_workflow::fhir::valid_id(&result) {
        return Err(not_found("result"));
    }
    let current = match store.read("Observation", &result).await? {
        Current::Found(v) => v,
        _ => return Err(not_found("result")),
    };
    let mut obs: Value = current
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| ApiError::internal("stored Observation is not JSON"))?;
    if obs.pointer("/derivedFrom/0/reference").and_then(Value::as_str) != Some(&format!("DocumentReference/{id}")) {
        return Err(not_found("result"));
    }
    if obs.get("status").and_then(Value::as_str) != Some("preliminary") {
        return Err(ApiError::new(StatusCode::CONFLICT, "already_reviewed", "this result was reviewed already"));
    }
    let Some(o) = obs.as_object_mut() else { return Err(ApiError::internal("an Observation is not an object")) };
    match body.action.as_str() {
        "confirm" | "reject" if body.value.is_some() || body.unit.is_some() => {
            return Err(bad("invalid_body", "value and unit go only with the correct action"));
        }
        "confirm" => {
            o.insert("status".into(), json!("final"));
        }
        "reject" => {
            o.insert("status".into(), json!("entered-in-error"));
        }
        "correct" => {
            let value = body
                .value
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad("invalid_value", "a correction gives the right value, a number"))?;
            let unit = match &body.unit {
                Some(u) => {
                    let u = u.trim();
                    if u.is_empty() || u.len() > 32 || u.chars().any(char::is_control) {
                        return Err(bad("invalid_unit", "unit is a short text such as mg/dL"));
                    }
                    u.to_owned()
                }
                None => {
                    o.get("valueQuantity").and_then(|q| q.get("unit")).and_then(Value::as_str).unwrap_or("").to_owned()
                }
            };
            o.insert("valueQuantity".into(), quantity(value, &unit));
            o.insert("status".into(), json!("final"));
            o.remove("interpretation");
            let same_unit = obs
                .pointer("/referenceRange/0/low/unit")
                .or_else(|| obs.pointer("/referenceRange/0/high/unit"))
                .and_then(Value::as_str)
                .is_none_or(|u| crate::lab::unit_key(u) == crate::lab::unit_key(&unit));
            if let Some(flag) = flag_against(value, &obs).filter(|_| same_unit)
                && let Some(o) = obs.as_object_mut()
            {
                o.insert("interpretation".into(), interpretation(flag));
            }
        }
        _ => return Err(bad("invalid_action", "action is confirm, correct or reject")),
    }
    hearth_workflow::fhir::validate(&app, "Observation", &obs)
        .map_err(|e| bad("invalid_value", format!("{:?}", e.issues.first().map(|i| &i.diagnostics))))?;
    let now = app.clock.now();
    let mut tx = store.begin().await?;
    let write = hearth_workflow::fhir::write_of(&app, "Observation", result.clone(), obs);
    let version = hearth_store::interactions::update(&mut tx, write, Some(current.version_id), now).await.map_err(
        |e| match e {
            hearth_store::StoreError::VersionConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "the result changed meanwhile; read it again")
            }
            other => other.into(),
        },
    )?;
    tx.commit().await?;
    let stored: Value =
        version.version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    result_of(&stored).map(axum::Json).ok_or_else(|| ApiError::internal("a stored Observation does not read back"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_proposal_reads_back_as_a_result() {
        let e = Extracted {
            loinc: "4548-4".into(),
            name: "Glycated hemoglobin (HbA1c)".into(),
            label: "HbA1c".into(),
            value: 7.8,
            unit: "%".into(),
            low: Some(4.0),
            high: Some(5.6),
            range: Some("4.0-5.6".into()),
            flag: Some(Flag::High),
            page: 2,
        };
        let o = observation("o1", "p1", "d1", "2026-11-30", &e);
        assert_eq!(o["valueQuantity"]["code"], "%");
        assert_eq!(o["derivedFrom"][0]["reference"], "DocumentReference/d1");
        let r = result_of(&o).unwrap();
        assert_eq!(
            (r.value, r.interpretation.as_deref(), r.page, r.status.as_str()),
            (Some(7.8), Some("H"), Some(2), "preliminary")
        );
        assert_eq!(flag_against(3.0, &o), Some(Flag::Low));
        assert_eq!(flag_against(5.0, &o), None);
    }
}

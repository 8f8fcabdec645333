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
//!   resource), every value escaped; the newest [`SUMMARY_ROWS`] of each section with a count
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

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use hearth_notify::templates::escape_html;
use hearth_store::{Access, Compartment, Current, Erased, Erasure, ErasurePlan, EverythingRequest, Guarded, Hold};
use hearth_store_sql::erase::{self, HoldRow, RequestRow};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::{ApiCaller, Caller, require_admin};
use crate::config::ErasureMode;
use crate::error::ApiError;

/// Resources per page of the download.
const PAGE: u32 = 200;
/// Rows per section of the summary.
pub const SUMMARY_ROWS: u32 = 100;
/// Longest accepted reason (request, refusal, hold), in characters.
const MAX_REASON: usize = 1000;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";

pub fn router() -> axum::Router<Arc<App>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/me/data", get(download))
        .route("/api/v1/me/data/summary", get(summary))
        .route("/api/v1/me/erasure", get(my_requests).post(request_erasure))
        .route("/api/v1/admin/erasure-requests", get(list_requests))
        .route("/api/v1/admin/erasure-requests/{id}/execute", post(execute))
        .route("/api/v1/admin/erasure-requests/{id}/refuse", post(refuse))
        .route("/api/v1/admin/patients/{id}/legal-hold", get(get_hold).post(place_hold).delete(lift_hold))
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
    for (k, v) in crate::fhir::query::pairs(raw) {
        match k.as_str() {
            "patient" if crate::fhir::valid_id(&v) => asked = Some(v),
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

fn compartment(app: &App, patient: &str) -> Result<Compartment, ApiError> {
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

// ---------------------------------------------------------------------------------------------
// Download

/// Where the download stream stands.
enum Stream {
    /// The first page is read; the Bundle's head is next.
    Start(hearth_store::SearchPage),
    /// Between pages: the cursor of the next one.
    Next(String),
    Done,
}

fn entries(base: &str, page: &hearth_store::SearchPage, first: &mut bool) -> String {
    let mut out = String::new();
    for v in &page.matches {
        let Some(body) = &v.body else { continue };
        if !*first {
            out.push(',');
        }
        *first = false;
        let full_url = Value::String(format!("{base}/{}/{}", v.resource_type, v.id));
        out.push_str(&format!(r#"{{"fullUrl":{full_url},"resource":{body}}}"#));
    }
    out
}

#[utoipa::path(get, path = "/api/v1/me/data", tag = "data rights",
    params(("patient" = Option<String>, Query, description = "A caregiver names the patient they act for; a patient's own record otherwise")),
    responses(
        (status = 200, description = "Everything in the record as a FHIR `collection` Bundle (attachment)", content_type = "application/fhir+json",
         example = json!({"resourceType": "Bundle", "type": "collection", "timestamp": "2026-11-29T10:00:00.000Z", "entry": [{"fullUrl": "https://hearth.example/fhir/Patient/…", "resource": {"resourceType": "Patient"}}]})),
        (status = 400, description = "Unknown parameter, or a caregiver without `patient`", body = Object, example = json!({"error": {"code": "invalid_query", "message": "unknown parameter 'x' (patient)"}})),
        (status = 401, description = "No or an invalid access token", body = Object, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not a patient or caregiver account", body = Object, example = json!({"error": {"code": "forbidden", "message": "this is for patients and their caregivers; staff use Patient/{id}/$everything"}})),
        (status = 404, description = "No such record within the caller's reach", body = Object, example = json!({"error": {"code": "not_found", "message": "no such patient record"}})),
    ),
    security(("bearer" = [])))]
pub async fn download(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let patient = subject(&caller, raw.as_deref())?;
    let store = app.store_for(&caller);
    patient_of(&store, &patient).await?;
    let request = |cursor: Option<String>| -> Result<EverythingRequest, ApiError> {
        Ok(EverythingRequest {
            access: store.access().clone(),
            compartment: compartment(&app, &patient)?,
            types: Vec::new(),
            since: None,
            cursor,
            count: PAGE,
        })
    };
    let first = store.everything(request(None)?).await?;
    let template = request(None)?;
    let base = crate::fhir::http::base_url(&app, &headers);
    let now = app.clock.now();
    let head = format!(
        r#"{{"resourceType":"Bundle","id":"{}","meta":{{"lastUpdated":"{}"}},"type":"collection","timestamp":"{}","entry":["#,
        uuid::Uuid::now_v7(),
        instant(now),
        instant(now)
    );
    let state = (Stream::Start(first), store, template, base, head, true);
    let body = futures_util::stream::unfold(state, |(stream, store, template, base, head, mut first)| async move {
        let (chunk, next) = match stream {
            Stream::Done => return None,
            Stream::Start(page) => {
                let mut chunk = head.clone();
                chunk.push_str(&entries(&base, &page, &mut first));
                (chunk, page.next)
            }
            Stream::Next(cursor) => {
                let request = EverythingRequest { cursor: Some(cursor), ..template.clone() };
                match store.everything(request).await {
                    Ok(page) => (entries(&base, &page, &mut first), page.next),
                    Err(e) => {
                        tracing::error!(error = %e, "the record download stopped on a storage error");
                        let err = std::io::Error::other("storage error");
                        return Some((Err(err), (Stream::Done, store, template, base, head, first)));
                    }
                }
            }
        };
        let (chunk, stream) = match next {
            Some(cursor) => (chunk, Stream::Next(cursor)),
            None => (chunk + "]}", Stream::Done),
        };
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), (stream, store, template, base, head, first)))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let date = now.format("%Y-%m-%d");
    attachment(&mut resp, crate::error::FHIR_JSON, &format!("hearth-record-{date}.json"));
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Summary

/// A CodeableConcept as text: its `text`, else the first coding's display, else its code.
fn concept(v: Option<&Value>) -> String {
    let Some(v) = v else { return String::new() };
    if let Some(t) = v.get("text").and_then(Value::as_str) {
        return t.to_owned();
    }
    let codings = v.get("coding").and_then(Value::as_array).into_iter().flatten();
    for c in codings.clone() {
        if let Some(d) = c.get("display").and_then(Value::as_str) {
            return d.to_owned();
        }
    }
    codings.filter_map(|c| c.get("code").and_then(Value::as_str)).next().unwrap_or_default().to_owned()
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// The first of `keys` present: a date/time, or the start of a period.
fn when(r: &Value, keys: &[&str]) -> String {
    for k in keys {
        match r.get(*k) {
            Some(Value::String(s)) => return s.clone(),
            Some(p @ Value::Object(_)) => {
                if let Some(s) = p.get("start").and_then(Value::as_str) {
                    return s.to_owned();
                }
            }
            _ => {}
        }
    }
    String::new()
}

fn quantity(q: &Value) -> String {
    let value = text_of(q.get("value"));
    let unit = q.get("unit").or_else(|| q.get("code")).and_then(Value::as_str).unwrap_or_default();
    let comparator = q.get("comparator").and_then(Value::as_str).unwrap_or_default();
    format!("{comparator}{value} {unit}").trim().to_owned()
}

/// An Observation's (or component's) value with its unit.
fn observed(o: &Value) -> String {
    if let Some(q) = o.get("valueQuantity") {
        return quantity(q);
    }
    if let Some(c) = o.get("valueCodeableConcept") {
        return concept(Some(c));
    }
    for k in ["valueString", "valueBoolean", "valueInteger", "valueDateTime", "valueTime"] {
        if let Some(v) = o.get(k) {
            return text_of(Some(v));
        }
    }
    let parts: Vec<String> = o
        .get("component")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| format!("{}: {}", concept(c.get("code")), observed(c)))
        .collect();
    parts.join("; ")
}

struct Section {
    title: &'static str,
    types: &'static [(&'static str, &'static str)],
    head: &'static [&'static str],
    row: fn(&Value) -> Vec<String>,
}

const SECTIONS: [Section; 6] = [
    Section {
        title: "Conditions",
        types: &[("Condition", "-recorded-date")],
        head: &["Condition", "Clinical status", "Onset", "Recorded"],
        row: |r| {
            vec![
                concept(r.get("code")),
                concept(r.get("clinicalStatus")),
                when(r, &["onsetDateTime", "onsetPeriod", "onsetString"]),
                when(r, &["recordedDate"]),
            ]
        },
    },
    Section {
        title: "Medications",
        types: &[("MedicationRequest", "-authoredon"), ("MedicationStatement", "-effective")],
        head: &["Medication", "Status", "Date", "Instructions"],
        row: |r| {
            let medication = match r.get("medicationCodeableConcept") {
                Some(c) => concept(Some(c)),
                None => text_of(r.pointer("/medicationReference/display")),
            };
            vec![
                medication,
                text_of(r.get("status")),
                when(r, &["authoredOn", "effectiveDateTime", "effectivePeriod", "dateAsserted"]),
                text_of(r.pointer("/dosageInstruction/0/text").or_else(|| r.pointer("/dosage/0/text"))),
            ]
        },
    },
    Section {
        title: "Allergies and intolerances",
        types: &[("AllergyIntolerance", "-date")],
        head: &["Substance", "Criticality", "Clinical status", "Reaction"],
        row: |r| {
            vec![
                concept(r.get("code")),
                text_of(r.get("criticality")),
                concept(r.get("clinicalStatus")),
                concept(r.pointer("/reaction/0/manifestation/0")),
            ]
        },
    },
    Section {
        title: "Immunizations",
        types: &[("Immunization", "-date")],
        head: &["Vaccine", "Date", "Status"],
        row: |r| {
            vec![
                concept(r.get("vaccineCode")),
                when(r, &["occurrenceDateTime", "occurrenceString"]),
                text_of(r.get("status")),
            ]
        },
    },
    Section {
        title: "Recent observations",
        types: &[("Observation", "-date")],
        head: &["Observation", "Value", "Date"],
        row: |r| {
            vec![concept(r.get("code")), observed(r), when(r, &["effectiveDateTime", "effectivePeriod", "issued"])]
        },
    },
    Section {
        title: "Encounters",
        types: &[("Encounter", "-date")],
        head: &["Encounter", "Class", "Date", "Reason"],
        row: |r| {
            vec![
                concept(r.pointer("/type/0")),
                text_of(r.pointer("/class/display").or_else(|| r.pointer("/class/code"))),
                when(r, &["period"]),
                concept(r.pointer("/reasonCode/0")),
            ]
        },
    },
];

fn demographics(p: &Value) -> Vec<(&'static str, String)> {
    let names = p.get("name").and_then(Value::as_array).cloned().unwrap_or_default();
    let name = names
        .iter()
        .find(|n| n.get("use").and_then(Value::as_str) == Some("official"))
        .or_else(|| names.first())
        .map(|n| {
            if let Some(t) = n.get("text").and_then(Value::as_str) {
                return t.to_owned();
            }
            let mut parts: Vec<String> = Vec::new();
            for key in ["prefix", "given"] {
                parts.extend(
                    n.get(key)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned),
                );
            }
            parts.extend(n.get("family").and_then(Value::as_str).map(str::to_owned));
            parts.join(" ")
        })
        .unwrap_or_default();
    let telecom: Vec<String> = p
        .get("telecom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| format!("{} {}", text_of(t.get("system")), text_of(t.get("value"))).trim().to_owned())
        .collect();
    let address: Vec<String> = p
        .get("address")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            let mut parts: Vec<String> = a
                .get("line")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            for k in ["city", "state", "postalCode", "country"] {
                parts.extend(a.get(k).and_then(Value::as_str).map(str::to_owned));
            }
            parts.join(", ")
        })
        .collect();
    vec![
        ("Name", name),
        ("Date of birth", text_of(p.get("birthDate"))),
        ("Gender", text_of(p.get("gender"))),
        ("Contact", telecom.join("; ")),
        ("Address", address.join("; ")),
    ]
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee;vertical-align:top}\
dt{font-weight:600}dd{margin:0 0 .5rem 0}.note{color:#555;font-size:.9rem}";

#[utoipa::path(get, path = "/api/v1/me/data/summary", tag = "data rights",
    params(("patient" = Option<String>, Query, description = "A caregiver names the patient they act for")),
    responses(
        (status = 200, description = "A readable, self-contained HTML summary of the record (attachment): demographics, conditions, medications, allergies, immunizations, recent observations with units, encounters", content_type = "text/html"),
        (status = 400, description = "Unknown parameter, or a caregiver without `patient`", body = Object, example = json!({"error": {"code": "invalid_query", "message": "a caregiver names the patient: ?patient=<Patient id>"}})),
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not a patient or caregiver account", body = Object),
        (status = 404, description = "No such record within the caller's reach", body = Object),
    ),
    security(("bearer" = [])))]
pub async fn summary(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let patient = subject(&caller, raw.as_deref())?;
    let store = app.store_for(&caller);
    let resource = patient_of(&store, &patient).await?;
    let now = app.clock.now();
    let mut html = String::with_capacity(16 * 1024);
    html.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Health record summary</title>",
    );
    html.push_str(&format!("<style>{STYLE}</style></head><body>\n<h1>Health record summary</h1>\n"));
    html.push_str(&format!(
        "<p class=\"note\">Prepared by Hearth on {} for record Patient/{}. Each section lists the most recent entries; the complete record is the FHIR download (<code>GET /api/v1/me/data</code>).</p>\n",
        escape_html(&instant(now)),
        escape_html(&patient)
    ));
    html.push_str("<section><h2>About you</h2><dl>");
    for (label, value) in demographics(&resource) {
        let value = if value.is_empty() { "not recorded".to_owned() } else { value };
        html.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape_html(label), escape_html(&value)));
    }
    html.push_str("</dl></section>\n");
    let registry = app.registry();
    for section in &SECTIONS {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut total = 0u64;
        for (ty, sort) in section.types {
            let pairs = vec![
                ("patient".to_owned(), format!("Patient/{patient}")),
                ("_sort".to_owned(), (*sort).to_owned()),
                ("_count".to_owned(), SUMMARY_ROWS.to_string()),
            ];
            let query = registry
                .parse_query(&[*ty], &pairs, hearth_search::Handling::Strict)
                .map_err(|e| ApiError::internal(format!("the summary query for {ty} does not parse: {e:?}")))?;
            let request = hearth_store::SearchRequest {
                query,
                access: Access::system(),
                compartment: None,
                cursor: None,
                count_total: true,
            };
            // `Guarded::search` replaces the access with the caller's.
            let page = store.search(request).await?;
            total += page.total.unwrap_or(0);
            for v in &page.matches {
                let r: Value = v.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
                rows.push((section.row)(&r));
            }
        }
        html.push_str(&format!("<section><h2>{}</h2>", escape_html(section.title)));
        if rows.is_empty() {
            html.push_str("<p>None recorded.</p></section>\n");
            continue;
        }
        html.push_str("<table><thead><tr>");
        for h in section.head {
            html.push_str(&format!("<th>{}</th>", escape_html(h)));
        }
        html.push_str("</tr></thead><tbody>");
        for row in &rows {
            html.push_str("<tr>");
            for cell in row {
                html.push_str(&format!("<td>{}</td>", escape_html(cell)));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>");
        if total > rows.len() as u64 {
            html.push_str(&format!("<p class=\"note\">Showing {} of {total}.</p>", rows.len()));
        }
        html.push_str("</section>\n");
    }
    html.push_str("</body></html>\n");
    let mut resp = (StatusCode::OK, html).into_response();
    attachment(&mut resp, "text/html; charset=utf-8", &format!("hearth-summary-{}.html", now.format("%Y-%m-%d")));
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Erasure

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
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

fn request_json(r: &RequestRow) -> Value {
    json!({
        "id": r.id,
        "patient": format!("Patient/{}", r.patient_id),
        "requestedBy": r.requested_by,
        "reason": r.reason,
        "status": r.status,
        "requestedAt": instant_ms(r.requested_at),
        "decidedAt": r.decided_at.map_or(Value::Null, instant_ms),
        "decidedBy": r.decided_by,
        "decision": r.decision,
        "resourcesErased": r.resources,
    })
}

fn held(hold: &Hold, app: &App) -> ApiError {
    let message = match hold {
        Hold::Legal(reason) => format!("the record is under a legal hold: {reason}"),
        Hold::Retention(at) => format!(
            "the record is held for the retention period of {} days (last written {})",
            app.config.rights.retention_days,
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

async fn record(app: &App, event: Value) -> Result<(), ApiError> {
    app.audit.record(app, event).await.map_err(|e| {
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
    app: &App,
    store: &Guarded,
    request: &RequestRow,
    executor: Option<(&str, &str)>,
) -> Result<Result<Erased, Hold>, ApiError> {
    let now = app.clock.now();
    let days = app.config.rights.retention_days;
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
    request_body(content = Object, description = "Optional: why (`reason`, at most 1,000 characters)", example = json!({"reason": "I am moving to another provider"})),
    responses(
        (status = 202, description = "Recorded; an administrator executes or refuses it (admin-approval mode)", body = Object,
         example = json!({"id": "…", "patient": "Patient/…", "requestedBy": "…", "reason": "…", "status": "requested", "requestedAt": "2026-11-29T10:00:00.000Z", "decidedAt": null, "decidedBy": null, "decision": null, "resourcesErased": null})),
        (status = 200, description = "Executed at once (immediate mode): the record is erased and this account removed", body = Object),
        (status = 400, description = "Malformed body", body = Object, example = json!({"error": {"code": "invalid_body", "message": "reason: at most 1000 characters"}})),
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not a patient account", body = Object, example = json!({"error": {"code": "forbidden", "message": "erasure is requested by the patient"}})),
        (status = 409, description = "A request is already pending, or (immediate mode) a hold applies", body = Object, example = json!({"error": {"code": "legal_hold", "message": "the record is under a legal hold: litigation 2026-17"}})),
    ),
    security(("bearer" = [])))]
pub async fn request_erasure(
    State(app): State<Arc<App>>,
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
    if app.config.rights.erasure == ErasureMode::AdminApproval {
        return Ok((StatusCode::ACCEPTED, Json(request_json(&request))).into_response());
    }
    // Immediate mode: the configuration is the decision; the server executes it as the system,
    // on the patient's behalf.
    let system =
        Guarded::new(Arc::clone(&app.store), Access { actor: Some(caller.account.id.clone()), ..Access::system() });
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
        (status = 200, description = "The signed-in patient's erasure requests, newest first", body = Object, example = json!({"requests": []})),
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not a patient account", body = Object),
    ),
    security(("bearer" = [])))]
pub async fn my_requests(State(app): State<Arc<App>>, ApiCaller(caller): ApiCaller) -> Result<Json<Value>, ApiError> {
    let (hearth_auth::Role::Patient, Some(patient)) = (caller.role, caller.own_patient()) else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "erasure is requested by the patient"));
    };
    let found = erase::requests(&*app.db, None, Some(patient), 100).await?;
    Ok(Json(json!({"requests": found.iter().map(request_json).collect::<Vec<_>>()})))
}

#[utoipa::path(get, path = "/api/v1/admin/erasure-requests", tag = "data rights",
    params(
        ("status" = Option<String>, Query, description = "`requested`, `refused` or `completed`"),
        ("patient" = Option<String>, Query, description = "Only this Patient id's requests"),
    ),
    responses(
        (status = 200, description = "Erasure requests, newest first (at most 500)", body = Object, example = json!({"requests": []})),
        (status = 400, description = "Bad query", body = Object, example = json!({"error": {"code": "invalid_query", "message": "status must be requested, refused or completed"}})),
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not an administrator", body = Object, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}})),
    ),
    security(("bearer" = [])))]
pub async fn list_requests(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let (mut status, mut patient) = (None, None);
    for (k, v) in crate::fhir::query::pairs(raw.as_deref()) {
        match k.as_str() {
            "status" if matches!(v.as_str(), "requested" | "refused" | "completed") => status = Some(v),
            "status" => return Err(bad_query("status must be requested, refused or completed")),
            "patient" => patient = Some(v),
            other => return Err(bad_query(format!("unknown parameter '{other}' (status, patient)"))),
        }
    }
    let found = erase::requests(&*app.db, status.as_deref(), patient.as_deref(), 500).await?;
    Ok(Json(json!({"requests": found.iter().map(request_json).collect::<Vec<_>>()})))
}

async fn pending(app: &App, id: &str) -> Result<RequestRow, ApiError> {
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
        (status = 200, description = "Erased: the completed request (counts of what was removed)", body = Object),
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not an administrator (with the audit scope)", body = Object),
        (status = 404, description = "No such request (or its patient no longer exists)", body = Object),
        (status = 409, description = "Held (`legal_hold`, nothing changed) or no longer pending (`erasure_not_pending`)", body = Object,
         example = json!({"error": {"code": "legal_hold", "message": "the record is under a legal hold: litigation 2026-17"}})),
    ),
    security(("bearer" = [])))]
pub async fn execute(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
    request_body(content = Object, description = "Why (`reason`, required; shown to the patient)", example = json!({"reason": "records must be kept for the open insurance claim"})),
    responses(
        (status = 200, description = "Refused", body = Object),
        (status = 400, description = "No reason", body = Object, example = json!({"error": {"code": "invalid_body", "message": "give a `reason`"}})),
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not an administrator", body = Object),
        (status = 404, description = "No such request", body = Object),
        (status = 409, description = "No longer pending", body = Object),
    ),
    security(("bearer" = [])))]
pub async fn refuse(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
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

fn hold_json(h: &HoldRow) -> Value {
    json!({
        "patient": format!("Patient/{}", h.patient_id),
        "reason": h.reason,
        "placedBy": h.placed_by,
        "placedAt": instant_ms(h.placed_at),
    })
}

/// The patient of a hold path, checked to exist through the admin's view.
async fn held_patient(app: &App, caller: &Caller, id: &str) -> Result<(), ApiError> {
    require_admin(caller)?;
    if !crate::fhir::valid_id(id) {
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
        (status = 200, description = "The hold", body = Object, example = json!({"patient": "Patient/…", "reason": "litigation 2026-17", "placedBy": "…", "placedAt": "2026-11-29T10:00:00.000Z"})),
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not an administrator", body = Object),
        (status = 404, description = "No such patient, or no hold", body = Object, example = json!({"error": {"code": "not_found", "message": "no such legal hold"}})),
    ),
    security(("bearer" = [])))]
pub async fn get_hold(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    held_patient(&app, &caller, &id).await?;
    let hold = erase::hold(&*app.db, &id).await?.ok_or_else(|| not_found("legal hold"))?;
    Ok(Json(hold_json(&hold)))
}

#[utoipa::path(post, path = "/api/v1/admin/patients/{id}/legal-hold", tag = "data rights",
    params(("id" = String, Path, description = "The Patient id")),
    request_body(content = Object, description = "Why (`reason`, required)", example = json!({"reason": "litigation 2026-17"})),
    responses(
        (status = 200, description = "Placed (or its reason replaced)", body = Object),
        (status = 400, description = "No reason", body = Object),
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not an administrator", body = Object),
        (status = 404, description = "No such patient", body = Object),
    ),
    security(("bearer" = [])))]
pub async fn place_hold(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
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
        (status = 401, description = "No or an invalid access token", body = Object),
        (status = 403, description = "Not an administrator", body = Object),
        (status = 404, description = "No such patient, or no hold", body = Object),
    ),
    security(("bearer" = [])))]
pub async fn lift_hold(
    State(app): State<Arc<App>>,
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
    fn observation_values_keep_their_units() {
        let bp = json!({"component": [
            {"code": {"text": "Systolic"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"code": "8462-4", "display": "Diastolic"}]}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}
        ]});
        assert_eq!(observed(&bp), "Systolic: 120 mm[Hg]; Diastolic: 80 mm[Hg]");
        assert_eq!(observed(&json!({"valueQuantity": {"value": 7.2, "code": "%", "comparator": "<"}})), "<7.2 %");
        assert_eq!(observed(&json!({"valueCodeableConcept": {"coding": [{"code": "POS"}]}})), "POS");
    }

    #[test]
    fn names_prefer_the_official_one() {
        let p = json!({"name": [{"use": "nickname", "given": ["Bee"]}, {"use": "official", "prefix": ["Dr."], "given": ["Ada", "M."], "family": "Lovelace"}]});
        assert_eq!(demographics(&p).first().map(|(_, v)| v.as_str()), Some("Dr. Ada M. Lovelace"));
    }

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

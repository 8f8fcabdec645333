//! `GET /api/v1/me/data/summary`: a readable, self-contained HTML summary of the record.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hearth_notify::templates::escape_html;
use hearth_store::Access;
use serde_json::Value;

use super::{attachment, instant, patient_of, subject};
use crate::Rights;
use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;

/// Rows per section of the summary.
pub const SUMMARY_ROWS: u32 = 100;

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
        (status = 400, description = "Unknown parameter, or a caregiver without `patient`", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "a caregiver names the patient: ?patient=<Patient id>"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a patient or caregiver account", body = ErrorEnvelope),
        (status = 404, description = "No such record within the caller's reach", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn summary(
    State(app): State<Arc<Rights>>,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

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
}

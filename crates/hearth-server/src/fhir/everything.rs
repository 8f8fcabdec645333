//! `Patient/{id}/$everything` (GET, or POST with a `Parameters` body or a query string): the
//! patient, every member of its Patient compartment, and the resources they reference (e.g.
//! Practitioner, Organization, Medication), each exactly once over all pages. `_since` keeps
//! resources updated at or after the instant, `_type` restricts the types, `_count` sizes pages
//! whose `next` links carry an opaque cursor.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_store::{Compartment, Current, EverythingRequest};
use serde_json::{Value, json};

use super::http::{base_url, negotiate};
use super::http::{check_id, check_type};
use super::query::{self, DEFAULT_PAGE, MAX_PAGE, parse_instant};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{FHIR_JSON, FhirError, Issue};

pub async fn everything_get(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    run(&app, &app.store_for(&caller), &headers, &ty, &id, query::pairs(q.as_deref())).await
}

pub async fn everything_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, FhirError> {
    let mut pairs = query::pairs(q.as_deref());
    if !body.is_empty() {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| FhirError::bad_request("invalid", "the body must be a FHIR Parameters resource"))?;
        pairs.extend(parameters(&v)?);
    }
    run(&app, &app.store_for(&caller), &headers, &ty, &id, pairs).await
}

/// `(name, value)` pairs of a `Parameters` body (primitive values only).
fn parameters(v: &Value) -> Result<Vec<(String, String)>, FhirError> {
    if v.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(FhirError::bad_request("invalid", "the body must be a FHIR Parameters resource"));
    }
    let mut out = Vec::new();
    for p in v.get("parameter").and_then(Value::as_array).into_iter().flatten() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        let value = p.as_object().and_then(|o| {
            o.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        });
        match value {
            Some(value) => out.push((name.to_owned(), value)),
            None => return Err(FhirError::bad_request("invalid", format!("parameter `{name}` needs a value"))),
        }
    }
    Ok(out)
}

async fn run(
    app: &App,
    store: &hearth_store::Guarded,
    headers: &HeaderMap,
    ty: &str,
    id: &str,
    pairs: Vec<(String, String)>,
) -> Result<Response, FhirError> {
    check_type(app, ty)?;
    if ty != "Patient" {
        return Err(FhirError::new(
            StatusCode::NOT_FOUND,
            Issue::error("not-supported", "$everything is supported on Patient only"),
        ));
    }
    check_id(id)?;
    let mut types: Vec<String> = Vec::new();
    let mut since = None;
    let mut count = DEFAULT_PAGE;
    let mut cursor = None;
    let mut format = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "_type" => {
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !app.model.is_resource_type(t) {
                        return Err(FhirError::bad_request("invalid", format!("_type: unknown resource type `{t}`")));
                    }
                    types.push(t.to_owned());
                }
            }
            "_since" => {
                since = Some(parse_instant(v).ok_or_else(|| {
                    FhirError::bad_request("invalid", "_since must be an instant such as 2024-01-31T10:00:00Z")
                })?);
            }
            "_count" => {
                let n: u32 =
                    v.parse().map_err(|_| FhirError::bad_request("invalid", "_count must be a positive integer"))?;
                count = n.clamp(1, MAX_PAGE);
            }
            "_cursor" => cursor = Some(v.clone()),
            "_format" => format = Some(v.clone()),
            "_pretty" => {}
            other => {
                return Err(FhirError::bad_request(
                    "not-supported",
                    format!("$everything does not support the parameter `{other}`"),
                ));
            }
        }
    }
    negotiate(headers, format.as_deref())?;
    match store.read("Patient", id).await? {
        Current::Found(_) => {}
        Current::Deleted(_) => {
            return Err(FhirError::new(StatusCode::GONE, Issue::error("deleted", format!("Patient/{id} was deleted"))));
        }
        Current::NotFound => return Err(FhirError::not_found(format!("Patient/{id} does not exist"))),
    }
    let members = app
        .compartments
        .members("Patient")
        .ok_or_else(|| FhirError::internal("the Patient compartment is not defined"))?;
    let params: Vec<(String, Vec<String>)> = members.iter().map(|(t, ps)| (t.clone(), ps.clone())).collect();
    let compartment = Compartment { owner_type: "Patient".into(), owner_id: id.to_owned(), params };
    let request = EverythingRequest {
        access: store.access().clone(),
        compartment,
        types: types.clone(),
        since,
        cursor: cursor.clone(),
        count,
    };
    let page = store.everything(request).await?;

    let base = base_url(app, headers);
    let mut qs = form_urlencoded::Serializer::new(String::new());
    if !types.is_empty() {
        qs.append_pair("_type", &types.join(","));
    }
    if let Some(s) = since {
        qs.append_pair("_since", &s.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    qs.append_pair("_count", &count.to_string());
    let qs = qs.finish();
    let path = format!("{base}/Patient/{id}/$everything");
    let mut links = vec![json!({"relation": "self", "url": match &cursor {
        Some(c) => format!("{path}?{qs}&_cursor={c}"),
        None => format!("{path}?{qs}"),
    }})];
    if cursor.is_some() {
        links.push(json!({"relation": "first", "url": format!("{path}?{qs}")}));
    }
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": format!("{path}?{qs}&_cursor={next}")}));
    }
    let mut entries = Vec::with_capacity(page.matches.len());
    for v in &page.matches {
        let Some(body) = &v.body else { return Err(FhirError::internal("$everything returned a deleted resource")) };
        let full_url = Value::String(format!("{base}/{}/{}", v.resource_type, v.id));
        entries.push(format!(r#"{{"fullUrl":{full_url},"resource":{body},"search":{{"mode":"match"}}}}"#));
    }
    let out = super::search::searchset_text(app, page.total, links, &entries);
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    Ok(resp)
}

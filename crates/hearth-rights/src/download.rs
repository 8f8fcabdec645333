//! `GET /api/v1/me/data`: the record as a `collection` Bundle, streamed page by page.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use hearth_store::EverythingRequest;
use serde_json::Value;

use super::{attachment, compartment, instant, patient_of, subject};
use crate::Rights;
use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::{ErrorEnvelope, FhirResource};

/// Resources per page of the download.
const PAGE: u32 = 200;

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
        (status = 200, description = "Everything in the record as a FHIR `collection` Bundle (attachment)", content_type = "application/fhir+json", body = FhirResource,
         example = json!({"resourceType": "Bundle", "type": "collection", "timestamp": "2026-11-29T10:00:00.000Z", "entry": [{"fullUrl": "https://hearth.example/fhir/Patient/…", "resource": {"resourceType": "Patient"}}]})),
        (status = 400, description = "Unknown parameter, or a caregiver without `patient`", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "unknown parameter 'x' (patient)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not a patient or caregiver account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this is for patients and their caregivers; staff use Patient/{id}/$everything"}})),
        (status = 404, description = "No such record within the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient record"}})),
    ),
    security(("bearer" = [])))]
pub async fn download(
    State(app): State<Arc<Rights>>,
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
    let base = app.fhir_base(&headers);
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
    attachment(&mut resp, hearth_workflow::error::FHIR_JSON, &format!("hearth-record-{date}.json"));
    Ok(resp)
}

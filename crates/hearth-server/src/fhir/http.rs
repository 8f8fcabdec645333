//! FHIR HTTP conventions: content negotiation, ETag/If-Match, Prefer, Last-Modified, the body
//! extractor, and how a stored version becomes a response.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_store::Version;
use serde_json::Value;

use crate::app::App;
use crate::error::{FHIR_JSON, FhirError, Issue, fhir_json, operation_outcome};

/// `Prefer: return=...`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// `Prefer: handling=...` (strict unless the client asks for lenient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    #[default]
    Strict,
    Lenient,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Prefer {
    pub return_: Return,
    pub handling: Handling,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Prefer {
        let mut p = Prefer::default();
        for value in headers.get_all("prefer") {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split([',', ';']) {
                match token.trim().replace(' ', "").as_str() {
                    "return=minimal" => p.return_ = Return::Minimal,
                    "return=representation" => p.return_ = Return::Representation,
                    "return=OperationOutcome" => p.return_ = Return::OperationOutcome,
                    "handling=lenient" => p.handling = Handling::Lenient,
                    "handling=strict" => p.handling = Handling::Strict,
                    // Unknown preferences are ignored, as RFC 7240 requires.
                    _ => {}
                }
            }
        }
        p
    }
}

pub fn etag(version_id: u64) -> String {
    format!("W/\"{version_id}\"")
}

/// Parses an entity tag as sent in `If-Match` / `If-None-Match`: `W/"3"` or `"3"`.
pub fn parse_etag(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    raw.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, FhirError> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(parse_etag)
            .map(Some)
            .ok_or_else(|| FhirError::bad_request("invalid", "If-Match must be a version ETag such as W/\"3\"")),
    }
}

pub fn http_date(t: DateTime<Utc>) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::from(t))
}

fn is_json_media(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(essence.as_str(), "application/fhir+json" | "application/json" | "application/json+fhir")
}

/// Checks `_format` and `Accept`: only JSON is produced; asking for anything else is `406`.
pub fn negotiate(headers: &HeaderMap, format: Option<&str>) -> Result<(), FhirError> {
    let not_acceptable = |what: &str| {
        FhirError::new(
            StatusCode::NOT_ACCEPTABLE,
            Issue::error("not-supported", format!("{what}: this server produces application/fhir+json only")),
        )
    };
    if let Some(f) = format {
        if !(f == "json" || is_json_media(f)) {
            return Err(not_acceptable("unsupported _format"));
        }
        return Ok(());
    }
    let Some(accept) = headers.get(header::ACCEPT) else { return Ok(()) };
    let accept = accept.to_str().unwrap_or("");
    let acceptable = accept.split(',').any(|item| {
        let essence = item.split(';').next().unwrap_or("").trim();
        essence.is_empty() || essence == "*/*" || essence == "application/*" || is_json_media(essence)
    });
    if acceptable { Ok(()) } else { Err(not_acceptable("unsupported Accept")) }
}

/// The request body of a FHIR write: size-limited, JSON content type, parsed to an object.
pub struct FhirBody(pub Value);

impl FromRequest<Arc<App>> for FhirBody {
    type Rejection = FhirError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let value =
            read_json_body(req, app.config.max_body_bytes, is_json_media, "application/fhir+json or application/json")
                .await?;
        if !value.is_object() {
            return Err(FhirError::bad_request("structure", "the body must be a JSON object (a FHIR resource)"));
        }
        Ok(FhirBody(value))
    }
}

/// The body of a `PATCH`: a JSON Patch document (`application/json-patch+json`) or a FHIRPath
/// Patch `Parameters` resource (`application/fhir+json`).
pub enum PatchBody {
    Json(Value),
    FhirPath(Value),
}

impl FromRequest<Arc<App>> for PatchBody {
    type Rejection = FhirError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let media = |ct: &str| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(media);
        let fhirpath = matches!(ct.as_deref(), Some("application/fhir+json" | "application/json"));
        let accepts = |ct: &str| {
            matches!(media(ct).as_str(), "application/json-patch+json" | "application/fhir+json" | "application/json")
        };
        let expected = "application/json-patch+json (JSON Patch) or application/fhir+json (FHIRPath Patch Parameters)";
        let body = read_json_body(req, app.config.max_body_bytes, accepts, expected).await?;
        Ok(if fhirpath { PatchBody::FhirPath(body) } else { PatchBody::Json(body) })
    }
}

/// Reads a size-limited JSON body whose media type passes `accepts`; FHIR JSON rules apply
/// (no duplicate keys).
async fn read_json_body(
    req: Request,
    limit: usize,
    accepts: impl Fn(&str) -> bool,
    expected: &str,
) -> Result<Value, FhirError> {
    match req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("")) {
        Some(ct) if accepts(ct) => {}
        _ => {
            return Err(FhirError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Issue::error("not-supported", format!("Content-Type must be {expected}")),
            ));
        }
    }
    let too_large = || {
        FhirError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Issue::error("too-costly", format!("request body exceeds the limit of {limit} bytes")),
        )
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = s.source();
        }
        FhirError::bad_request("incomplete", "the request body could not be read")
    })?;
    // serde_json messages give a position and a category, never the content.
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| FhirError::bad_request("structure", format!("the body is not valid JSON: {e}")))?;
    hearth_fhir::strict_json::check_no_duplicate_keys(&bytes)
        .map_err(|m| FhirError::bad_request("structure", format!("the body is not valid FHIR JSON: {m}")))?;
    Ok(value)
}

/// What a successful write or read answers, shaped by `Prefer: return`.
pub fn version_response(
    status: StatusCode,
    version: &Version,
    base: &str,
    prefer: Return,
    location: bool,
    outcome_message: &str,
) -> Response {
    let mut resp = match (prefer, &version.body) {
        (Return::Representation, Some(body)) => {
            let mut r = (status, Body::from(body.to_string())).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
            r
        }
        (Return::OperationOutcome, _) => fhir_json(
            status,
            &operation_outcome(&[Issue { severity: "information", ..Issue::error("informational", outcome_message) }]),
        ),
        _ => status.into_response(),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(version.version_id)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(version.last_updated)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if location {
        let url = format!("{base}/{}/{}/_history/{}", version.resource_type, version.id, version.version_id);
        if let Ok(v) = HeaderValue::from_str(&url) {
            h.insert(header::LOCATION, v);
        }
    }
    resp
}

/// The FHIR base URL for links: configured, or derived from the `Host` header.
pub fn base_url(app: &App, headers: &HeaderMap) -> String {
    app.fhir_base(headers)
}

pub(crate) use hearth_workflow::fhir::{check_id, check_type};

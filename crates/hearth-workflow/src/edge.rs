//! The HTTP edge's error answers: every refusal leaves in the form of its API, including the ones
//! the framework makes before any handler runs (unknown path, method, undecodable query or body,
//! an over-long request target).

use axum::body::HttpBody;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, FhirError, Issue};

/// The longest request target (path and query string) served, in bytes: enough for a search of
/// [`hearth_search::MAX_VALUES`] UUIDs; a longer one is `414` with an OperationOutcome (FHIR) or
/// the error envelope (app). A long search fits in the body of `POST …/_search`. (Past 64 KiB
/// the HTTP library itself answers `414`, before any of Hearth's code runs.)
pub const MAX_URI_BYTES: usize = 48 * 1024;

fn is_fhir(path: &str) -> bool {
    path == "/fhir" || path.starts_with("/fhir/")
}

/// An error answer in the form of its API: an OperationOutcome under `/fhir`, the app's error
/// envelope elsewhere; its code follows from the status.
fn refusal(fhir: bool, status: StatusCode, message: String) -> Response {
    if fhir {
        let code = match status.as_u16() {
            401 => "login",
            403 => "forbidden",
            404 => "not-found",
            405 | 406 | 415 => "not-supported",
            408 => "timeout",
            409 | 412 => "conflict",
            410 => "deleted",
            413 => "too-costly",
            414 | 431 => "too-long",
            422 => "processing",
            429 => "throttled",
            500..=599 => "exception",
            _ => "invalid",
        };
        FhirError::new(status, Issue::error(code, message)).into_response()
    } else {
        let code = match status.as_u16() {
            400 if message.contains("query string") => "invalid_query",
            400 if message.contains("URL") || message.contains("path") => "invalid_path",
            400 | 422 => "invalid_body",
            401 => "unauthenticated",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            406 => "not_acceptable",
            408 => "timeout",
            409 => "conflict",
            413 => "payload_too_large",
            414 => "uri_too_long",
            415 => "unsupported_media_type",
            429 => "rate_limited",
            431 => "headers_too_large",
            503 => "unavailable",
            500..=599 => "internal",
            _ => "bad_request",
        };
        ApiError::new(status, code, message).into_response()
    }
}

/// Keeps every error answer in the form of its API. The framework answers some refusals itself —
/// an unknown path (404) or method (405) with an empty body, a query string or body its
/// extractors cannot decode with `text/plain` — and a request target over [`MAX_URI_BYTES`] is
/// refused here: each leaves as an OperationOutcome under `/fhir`, the error envelope elsewhere,
/// with the framework's text as the message and its headers (`Allow`, …) kept.
pub async fn error_bodies(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let fhir = is_fhir(path);
    // Plain-text refusals are rewritten on the two APIs only: the sign-in pages (`/oauth/…`)
    // answer people in a browser.
    let api = fhir || path.starts_with("/api/");
    let head = req.method() == Method::HEAD;
    let length = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return refusal(
            fhir,
            StatusCode::URI_TOO_LONG,
            format!(
                "the request URL is {length} bytes; at most {MAX_URI_BYTES} are accepted (send a long search as POST …/_search)"
            ),
        );
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if head || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let plain = api && content_type.starts_with("text/plain");
    let empty = content_type.is_empty() && resp.body().size_hint().exact() == Some(0);
    if !plain && !empty {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let message = if plain {
        match axum::body::to_bytes(body, 4096).await {
            Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        }
    } else {
        match status {
            StatusCode::NOT_FOUND => "no such path".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED => {
                "this method is not allowed on this path (see the Allow header)".to_owned()
            }
            _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
        }
    };
    let mut out = refusal(fhir, status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH && !out.headers().contains_key(name) {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

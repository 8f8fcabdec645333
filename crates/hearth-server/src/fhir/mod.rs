//! The FHIR R4 REST API under `/fhir`.

pub mod bundle;
mod capability;
mod everything;
pub mod http;
mod interactions;
pub use hearth_workflow::fhir as query;
pub mod registry;
pub mod search;
pub mod search_parameters;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::App;
use crate::error::{FhirError, Issue};
use interactions as i;
pub use interactions::write_of;

/// The FHIR API, with the operations the workflows add (`Appointment/$find`, …) merged in.
pub fn router(app: Arc<App>, operations: Vec<Router>) -> Router {
    let api = Router::new()
        .route("/", get(search::search_system).post(bundle::batch_or_transaction))
        .route("/_search", post(search::search_system_post))
        .route("/metadata", get(i::metadata))
        .route("/.well-known/smart-configuration", get(crate::auth::smart::configuration))
        .route("/_history", get(i::history_system))
        .route("/$reindex", post(search_parameters::reindex_system))
        .route("/$reindex/{job}", get(search_parameters::reindex_status))
        .route(
            "/{type}",
            get(search::search_type).post(i::create).put(i::conditional_update).delete(i::conditional_delete),
        )
        .route("/{type}/_search", post(search::search_type_post))
        .route("/{type}/$reindex", post(search_parameters::reindex_type))
        .route("/{type}/_history", get(i::history_type))
        .route("/{type}/{id}", get(i::read).put(i::update).delete(i::delete).patch(i::patch))
        .route("/{type}/{id}/_history", get(i::history_instance))
        .route("/{type}/{id}/$everything", get(everything::everything_get).post(everything::everything_post))
        .route("/{type}/{id}/{compartment}", get(search::search_compartment))
        .route("/{type}/{id}/_history/{vid}", get(i::vread))
        .with_state(app);
    operations.into_iter().fold(api, Router::merge).fallback(unknown_route).layer(middleware::from_fn(outcome_guard))
}

/// `[base]/` is `[base]` and `[base]/Patient/` is `[base]/Patient`, for every interaction (several
/// clients and test suites add the slash): trailing slashes of a path under `/fhir` are dropped
/// before routing, the query kept.
pub async fn trailing_slash(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/fhir/") && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let rebuilt = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = rebuilt.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    next.run(req).await
}

async fn unknown_route() -> FhirError {
    FhirError::new(StatusCode::NOT_FOUND, Issue::error("not-supported", "no FHIR interaction matches this URL"))
}

/// Guarantees every FHIR error leaves as an OperationOutcome, including rejections produced by the
/// router itself (405 Method Not Allowed, path decoding failures).
async fn outcome_guard(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_fhir_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/fhir+json"));
    if status.as_u16() < 400 || is_fhir_json {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("not-supported", "this interaction is not supported at this URL".to_owned()),
        StatusCode::NOT_FOUND => ("not-found", "not found".to_owned()),
        s if s.is_server_error() => ("exception", "internal server error".to_owned()),
        s => ("invalid", format!("the request was rejected ({})", s.canonical_reason().unwrap_or("error"))),
    };
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut out = FhirError::new(status, Issue::error(code, message)).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

//! The one error type of each API surface.
//!
//! - [`FhirError`] leaves the FHIR API as an `OperationOutcome` (`application/fhir+json`).
//! - [`ApiError`] leaves the app API as `{"error": {"code": "<stable_code>", "message": "..."}}`.
//!
//! Server-side failures (5xx) carry a generic message and the request id only; the cause is
//! logged here, once, without resource content.
//!
//! Storage error → HTTP status:
//!
//! | `StoreError`        | status | OperationOutcome code |
//! |---------------------|--------|-----------------------|
//! | `VersionConflict`   | 412    | `conflict`            |
//! | `Conflict`          | 409    | `duplicate`           |
//! | `MultipleMatches`   | 412    | `multiple-matches`    |
//! | `IdMismatch`        | 400    | `invalid`             |
//! | `Forbidden`         | 403    | `forbidden`           |
//! | `InvalidSearch`     | 400    | `invalid`             |
//! | `Unavailable`       | 503    | `transient`           |
//! | `Corrupt`           | 500    | `exception`           |
//! | `Database`          | 500    | `exception`           |

pub use axum::http::StatusCode;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use hearth_store::StoreError;
use serde_json::{Value, json};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone)]
pub struct Issue {
    pub severity: &'static str,
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Vec<String>,
}

impl Issue {
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue { severity: "error", code, diagnostics: diagnostics.into(), expression: Vec::new() }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression.push(expression.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut v = serde_json::Map::new();
        v.insert("severity".into(), json!(self.severity));
        v.insert("code".into(), json!(self.code));
        v.insert("diagnostics".into(), json!(self.diagnostics));
        if !self.expression.is_empty() {
            v.insert("expression".into(), json!(self.expression));
        }
        Value::Object(v)
    }
}

pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}

/// An error on the FHIR API.
#[derive(Debug)]
pub struct FhirError {
    pub status: StatusCode,
    pub issues: Vec<Issue>,
    /// The cause of a server-side failure, logged once and never sent.
    internal: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// A `WWW-Authenticate` challenge (RFC 6750) for a `401`.
    challenge: Option<String>,
}

impl FhirError {
    pub fn new(status: StatusCode, issue: Issue) -> FhirError {
        FhirError { status, issues: vec![issue], internal: None, challenge: None }
    }

    pub fn with_issues(status: StatusCode, issues: Vec<Issue>) -> FhirError {
        FhirError { status, issues, internal: None, challenge: None }
    }

    /// The issues' diagnostics (and a server-side cause), for command-line reports.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.issues.iter().map(|i| i.diagnostics.clone()).collect();
        if let Some(cause) = &self.internal {
            parts.push(cause.to_string());
        }
        format!("{}: {}", self.status.as_u16(), parts.join("; "))
    }

    pub fn bad_request(code: &'static str, msg: impl Into<String>) -> FhirError {
        FhirError::new(StatusCode::BAD_REQUEST, Issue::error(code, msg))
    }

    pub fn not_found(msg: impl Into<String>) -> FhirError {
        FhirError::new(StatusCode::NOT_FOUND, Issue::error("not-found", msg))
    }

    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> FhirError {
        FhirError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            issues: vec![Issue::error(
                "exception",
                "internal server error; the server log has details under this request's id",
            )],
            internal: Some(cause.into()),
            challenge: None,
        }
    }

    /// The same error with a `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: String) -> FhirError {
        self.challenge = Some(challenge);
        self
    }
}

impl From<StoreError> for FhirError {
    fn from(e: StoreError) -> FhirError {
        match e {
            StoreError::VersionConflict { expected, current } => FhirError::new(
                StatusCode::PRECONDITION_FAILED,
                Issue::error(
                    "conflict",
                    match current {
                        Some(c) => format!("If-Match names version {expected} but the current version is {c}"),
                        None => format!("If-Match names version {expected} but the resource has no current version"),
                    },
                ),
            ),
            StoreError::Conflict => FhirError::new(
                StatusCode::CONFLICT,
                Issue::error("duplicate", "a resource with this id already exists"),
            ),
            StoreError::MultipleMatches(n) => FhirError::new(
                StatusCode::PRECONDITION_FAILED,
                Issue::error(
                    "multiple-matches",
                    format!("the search criteria matched {n} resources; they must match at most one"),
                ),
            ),
            StoreError::InvalidSearch(message) => FhirError::bad_request("invalid", message),
            StoreError::Forbidden(message) => FhirError::new(StatusCode::FORBIDDEN, Issue::error("forbidden", message)),
            StoreError::IdMismatch => FhirError::bad_request(
                "invalid",
                "the resource id does not match the id of the resource found by the search criteria",
            ),
            StoreError::Unavailable(cause) => FhirError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                issues: vec![Issue::error("transient", "the database is busy or unavailable; retry later")],
                internal: Some(cause),
                challenge: None,
            },
            other @ (StoreError::Corrupt(_) | StoreError::Database(_)) => FhirError::internal(other),
        }
    }
}

fn log_cause(status: StatusCode, cause: Option<&(dyn std::error::Error + Send + Sync)>) {
    if let Some(cause) = cause {
        // Error chains from the store name tables and codes, never resource content.
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(status = status.as_u16(), error = %chain, "request failed");
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        log_cause(self.status, self.internal.as_deref());
        let mut resp = fhir_json(self.status, &operation_outcome(&self.issues));
        add_challenge(&mut resp, self.challenge.as_deref());
        resp
    }
}

/// A FHIR JSON response with the right content type.
pub fn fhir_json(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    resp
}

/// An error on the app (non-FHIR) API, with a stable machine-readable code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429/503).
    pub retry_after: Option<u64>,
    internal: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// A `WWW-Authenticate` challenge (RFC 6750) for a `401`.
    challenge: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None, internal: None, challenge: None }
    }

    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal server error; the server log has details under this request's id".into(),
            retry_after: None,
            internal: Some(cause.into()),
            challenge: None,
        }
    }

    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "a dependency is unavailable".into(),
            retry_after: None,
            internal: Some(cause.into()),
            challenge: None,
        }
    }
}

impl ApiError {
    /// The same error with a `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: String) -> ApiError {
        self.challenge = Some(challenge);
        self
    }
}

fn add_challenge(resp: &mut Response, challenge: Option<&str>) {
    if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        log_cause(self.status, self.internal.as_deref());
        let body = crate::openapi::ErrorEnvelope {
            error: crate::openapi::ErrorDetail {
                code: self.code.into(),
                message: self.message,
                alternatives: None,
                candidates: None,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        add_challenge(&mut resp, self.challenge.as_deref());
        resp
    }
}

/// A storage failure on the app API.
pub fn api_store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict => ApiError::new(StatusCode::CONFLICT, "conflict", "this already exists"),
        // A workflow's read-then-write lost a race with another request: the caller's to retry.
        StoreError::VersionConflict { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "version_conflict",
            "this was changed by another request at the same moment: read it again and retry",
        ),
        StoreError::Forbidden(message) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
        StoreError::Unavailable(cause) => ApiError::unavailable(cause),
        // A search the caller's input made impossible (a tampered or stale paging cursor): theirs.
        StoreError::InvalidSearch(message) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message),
        other => ApiError::internal(other),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        api_store_error(e)
    }
}

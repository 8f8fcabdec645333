//! The FHIR helpers a workflow that writes resources needs.

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use hearth_store::Write;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::{FhirError, Issue};

/// Most validation issues reported for one resource (the rest are summarised).
const MAX_ISSUES: usize = 100;

/// FHIR `id`: 1–64 of `[A-Za-z0-9\-\.]`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// An instant as search and history parameters take it: RFC 3339 (a space standing for a `+`
/// that a query string decoded), or a bare date meaning its midnight UTC.
pub fn parse_instant(value: &str) -> Option<DateTime<Utc>> {
    let fixed = value.replace(' ', "+");
    if let Ok(t) = DateTime::parse_from_rfc3339(&fixed) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(&fixed, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|dt| dt.and_utc())
}

/// A write of `resource`, with its search index entries computed by the registry in force.
pub fn write_of(ctx: &Ctx, resource_type: &str, id: String, resource: Value) -> Write {
    let index = ctx.registry().index(&resource);
    Write { resource_type: resource_type.to_owned(), id, resource, index }
}

/// Validates a resource body for a write to `resource_type` against the R4 model (the FHIR API
/// adds its own checks for definitional resources such as SearchParameter).
pub fn validate(ctx: &Ctx, resource_type: &str, body: &Value) -> Result<(), FhirError> {
    match body.get("resourceType").and_then(Value::as_str) {
        Some(rt) if rt == resource_type => {}
        Some(rt) => {
            return Err(FhirError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("invalid", format!("resourceType `{rt}` does not match the URL type `{resource_type}`"))
                    .at("resourceType"),
            ));
        }
        None => {
            return Err(FhirError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("required", "the resource has no resourceType").at("resourceType"),
            ));
        }
    }
    let found = ctx.model.validate(body);
    if found.is_empty() {
        return Ok(());
    }
    let total = found.len();
    let mut issues: Vec<Issue> = found
        .into_iter()
        .take(MAX_ISSUES)
        .map(|i| Issue {
            severity: i.severity.as_str(),
            code: i.code.as_str(),
            diagnostics: i.message,
            expression: vec![i.expression],
        })
        .collect();
    if total > MAX_ISSUES {
        issues.push(Issue::error("too-costly", format!("{} further issues not shown", total - MAX_ISSUES)));
    }
    // Only errors block a write; warnings alone pass.
    if issues.iter().any(|i| matches!(i.severity, "error" | "fatal")) {
        Err(FhirError::with_issues(StatusCode::BAD_REQUEST, issues))
    } else {
        Ok(())
    }
}

/// Splits a raw query string into decoded `(name, value)` pairs, in order.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The URL names a resource type of the R4 model (else `404 not-supported`).
pub fn check_type(ctx: &Ctx, resource_type: &str) -> Result<(), FhirError> {
    if ctx.model.is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::NOT_FOUND,
            Issue::error("not-supported", format!("unknown resource type `{resource_type}`")),
        ))
    }
}

/// The URL names a valid FHIR id (else `400 invalid`).
pub fn check_id(id: &str) -> Result<(), FhirError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(FhirError::bad_request("invalid", "resource id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'"))
    }
}

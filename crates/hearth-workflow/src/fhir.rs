//! The FHIR helpers a workflow that writes resources needs.

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use hearth_store::Write;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::{FhirError, Issue};

/// Most validation issues reported for one resource (the rest are summarised).
const MAX_ISSUES: usize = 100;

/// At most this many items in any one array of a resource written (a Bundle's `entry` aside, which
/// its own limits bound): 10,000 names, identifiers or components is no record a person has, and
/// every item is indexed and validated. More is refused with `422` `too-costly`.
pub const MAX_REPEATS: usize = 10_000;

/// The path (FHIRPath-like, e.g. `Patient.name`) and length of the first array in `body` with more
/// than [`MAX_REPEATS`] items.
fn over_long_array(resource_type: &str, body: &Value) -> Option<(String, usize)> {
    let mut stack: Vec<(String, &Value)> = vec![(resource_type.to_owned(), body)];
    while let Some((path, v)) = stack.pop() {
        match v {
            Value::Array(items) => {
                let exempt = resource_type == "Bundle" && path == "Bundle.entry";
                if items.len() > MAX_REPEATS && !exempt {
                    return Some((path, items.len()));
                }
                stack.extend(items.iter().map(|item| (path.clone(), item)));
            }
            Value::Object(fields) => {
                stack.extend(fields.iter().map(|(k, item)| (format!("{path}.{k}"), item)));
            }
            _ => {}
        }
    }
    None
}

/// The rules of `contained` the model does not check: dom-2 (a contained resource contains no
/// resources) and one id per contained resource (references `#id` name exactly one).
fn contained_rules(body: &Value) -> Result<(), FhirError> {
    let Some(contained) = body.get("contained").and_then(Value::as_array) else { return Ok(()) };
    let mut ids = std::collections::HashSet::with_capacity(contained.len());
    for (i, c) in contained.iter().enumerate() {
        let at = format!("contained[{i}]");
        if c.get("contained").is_some() {
            return Err(FhirError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("invariant", "a contained resource cannot contain resources (dom-2)").at(at),
            ));
        }
        if let Some(id) = c.get("id").and_then(Value::as_str)
            && !ids.insert(id)
        {
            return Err(FhirError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("invariant", format!("contained id `{id}` is used by more than one contained resource"))
                    .at(at),
            ));
        }
    }
    Ok(())
}

/// Whether `s` is fit for a person's name or similar display text: some text, at most `max`
/// characters, no control characters and no bidirectional embedding, override or isolate
/// controls (U+202A–U+202E, U+2066–U+2069), which can make a name display as another.
pub fn is_display_text(s: &str, max: usize) -> bool {
    !s.trim().is_empty()
        && s.chars().count() <= max
        && !s.chars().any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
}

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
    if let Some((path, n)) = over_long_array(resource_type, body) {
        return Err(FhirError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Issue::error("too-costly", format!("{path} has {n} items; at most {MAX_REPEATS} are accepted")).at(path),
        ));
    }
    contained_rules(body)?;
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

/// A `urn:uuid:` or `urn:oid:` reference names an entry of the Bundle it came in (its `fullUrl`):
/// left in a resource written on its own, or in a Bundle entry no `fullUrl` matched, it names
/// nothing anyone can resolve and is refused rather than stored verbatim. A Bundle resource
/// (a document or message) keeps them: they name its own entries.
pub fn local_references_resolved(resource_type: &str, body: &Value) -> Result<(), FhirError> {
    if resource_type == "Bundle" {
        return Ok(());
    }
    let mut stack: Vec<(String, &Value)> = vec![(resource_type.to_owned(), body)];
    while let Some((path, v)) = stack.pop() {
        match v {
            Value::Object(fields) => {
                for (k, item) in fields {
                    if k == "reference"
                        && let Value::String(r) = item
                        && (r.starts_with("urn:uuid:") || r.starts_with("urn:oid:"))
                    {
                        return Err(FhirError::new(
                            StatusCode::BAD_REQUEST,
                            Issue::error("invalid", format!("reference `{r}` names no entry of a Bundle this came in"))
                                .at(format!("{path}.reference")),
                        ));
                    }
                    stack.push((format!("{path}.{k}"), item));
                }
            }
            Value::Array(items) => stack.extend(items.iter().map(|item| (path.clone(), item))),
            _ => {}
        }
    }
    Ok(())
}

// History parameters of the FHIR API (search parameters are parsed by hearth-search).

/// Parameters that only shape the response and may appear anywhere.
fn is_format_param(name: &str) -> bool {
    matches!(name, "_format" | "_pretty")
}

/// The most entries one page may hold; larger `_count` values are reduced to it.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryParams {
    pub since: Option<DateTime<Utc>>,
    pub count: u32,
    pub cursor: Option<i64>,
}

pub fn history_params(pairs: &[(String, String)]) -> Result<HistoryParams, FhirError> {
    let mut p = HistoryParams { since: None, count: DEFAULT_PAGE, cursor: None };
    for (name, value) in pairs {
        match name.as_str() {
            "_since" => {
                p.since = Some(parse_instant(value).ok_or_else(|| {
                    FhirError::bad_request("invalid", "_since must be an instant such as 2024-01-31T10:00:00Z")
                })?);
            }
            "_count" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| FhirError::bad_request("invalid", "_count must be a non-negative integer"))?;
                p.count = n.min(MAX_PAGE);
            }
            "_cursor" => {
                p.cursor = Some(
                    value
                        .parse()
                        .map_err(|_| FhirError::bad_request("invalid", "_cursor is not a valid page cursor"))?,
                );
            }
            n if is_format_param(n) => {}
            other => {
                return Err(FhirError::bad_request(
                    "not-supported",
                    format!("parameter `{other}` is not supported on history (supported: _since, _count)"),
                ));
            }
        }
    }
    Ok(p)
}

/// The patient an app request is about: the one `named` (`{id}` or `Patient/{id}`), else a
/// patient caller's own record. It must be readable through the caller's guarded view: an id
/// that is malformed, unknown or outside the caller's reach is the same `404 not_found`, so a
/// record's existence stays private; no patient at all is `400 patient_required`. Answers the id
/// and the current version (the workflows' one way to resolve `?patient=`).
pub async fn requested_patient(
    store: &hearth_store::Guarded,
    caller: &crate::Caller,
    named: Option<&str>,
) -> Result<(String, hearth_store::Version), crate::error::ApiError> {
    use crate::error::ApiError;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such patient");
    let id = match named.or(caller.own_patient()) {
        Some(id) => id.strip_prefix("Patient/").unwrap_or(id).to_owned(),
        None => return Err(ApiError::new(StatusCode::BAD_REQUEST, "patient_required", "name the patient (`patient`)")),
    };
    if !valid_id(&id) {
        return Err(not_found());
    }
    match store.read("Patient", &id).await {
        Ok(hearth_store::Current::Found(v)) => Ok((id, v)),
        Ok(_) | Err(hearth_store::StoreError::Forbidden(_)) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_unencoded_plus() {
        let t = parse_instant("2024-01-01T10:00:00 01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-01T09:00:00+00:00");
        assert!(parse_instant("yesterday").is_none());
        assert_eq!(parse_instant("2024-02-03").unwrap().to_rfc3339(), "2024-02-03T00:00:00+00:00");
    }

    #[test]
    fn history_parameters_are_checked() {
        let p = |q: &str| history_params(&pairs(Some(q)));
        assert_eq!(p("_count=5000").unwrap().count, MAX_PAGE);
        assert_eq!(p("_format=json").unwrap().count, DEFAULT_PAGE);
        assert!(p("_count=-1").is_err());
        assert!(p("_cursor=abc").is_err());
        assert!(p("name=x").is_err());
    }
}

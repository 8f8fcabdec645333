//! The shared pieces of the app API's OpenAPI description, and the rule it must keep.
//!
//! - [`ErrorEnvelope`]: the one schema of every app error (`{"error": {"code", "message"}}`);
//!   routes name it as the body of their 4xx/5xx answers (`body = ErrorEnvelope`).
//! - [`FhirResource`]: a FHIR R4 resource (an object with `resourceType`), for app endpoints
//!   that take or return one.
//! - [`problems`]: what is missing from a description for a developer to call every app
//!   operation from it alone (typed bodies, a tag, security). The integration tests run it on
//!   `/api/openapi.json`; a workflow may run it on its own [`crate::Mount::openapi`].

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};

/// The body of every app API error.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no such appointment"}}))]
pub struct ErrorEnvelope {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code for programs and a sentence for people.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`snake_case`); it never changes for the same condition.
    /// Codes every operation may answer: `unauthenticated` and `invalid_token` (401, with
    /// `WWW-Authenticate`), `token_expired` (401), `mfa_required` (401/403), `forbidden` (403),
    /// `csrf_failed` (403, cookie sessions), `not_found` (404), `invalid_body` (400/422),
    /// `conflict` (409), `gone` (410: the patient record was deleted), `rate_limited` (429, with
    /// `Retry-After`), `internal` (500, the server log has details under the request's
    /// `X-Request-Id`), `unavailable` (503), `audit_unavailable` (503: the change is done but its
    /// audit event could not be written yet). Each operation documents the codes of its own
    /// refusals in its answers' descriptions and examples.
    #[schema(example = "not_found")]
    pub code: Cow<'static, str>,
    /// What happened and, where there is one, what to do about it (English).
    #[schema(example = "no such appointment")]
    pub message: String,
    /// `slot_taken` only: free slots near the one asked for (as the slot search gives them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alternatives: Option<Vec<Value>>,
    /// `probable_duplicate` only: the patients the new one may be (`id`, `name`, `birthDate`,
    /// `reasons`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<Value>>,
}

/// A FHIR R4 resource as JSON: an object whose `resourceType` names its type; its other
/// elements are those the R4 specification defines for that type (see `/fhir/metadata`).
pub struct FhirResource;

impl utoipa::PartialSchema for FhirResource {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "A FHIR R4 resource (https://hl7.org/fhir/R4/resourcelist.html); `resourceType` names \
                 its type and the other elements are those R4 defines for that type.",
            ))
            .property(
                "resourceType",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("The resource's type, such as `Patient` or `Appointment`"))
                    .examples(["Patient"]),
            )
            .required("resourceType")
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("The server-assigned logical id"))
                    .examples(["0193a9d4-5b1e-7c2a-9f10-3a1b2c3d4e5f"]),
            )
            .property(
                "meta",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some("`versionId` and `lastUpdated` as the server recorded them"))
                    .property("versionId", ObjectBuilder::new().schema_type(Type::String))
                    .property("lastUpdated", ObjectBuilder::new().schema_type(Type::String)),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .examples([json!({"resourceType": "Patient", "id": "0193a9d4-5b1e-7c2a-9f10-3a1b2c3d4e5f",
                "meta": {"versionId": "1", "lastUpdated": "2026-12-01T09:30:00Z"},
                "name": [{"family": "Okafor", "given": ["Ada"]}], "birthDate": "1980-04-02"})])
            .into()
    }
}

impl ToSchema for FhirResource {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("FhirResource")
    }
}

/// The value at a JSON pointer, or `null`.
fn field<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    const NULL: &Value = &Value::Null;
    v.pointer(pointer).unwrap_or(NULL)
}

/// Whether a media type carries JSON.
fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json") || media.starts_with("application/json;")
}

/// Why a schema does not say what the JSON looks like, or `None` when it does. `$ref`s must
/// name a component; bare `{"type": "object"}` and empty schemas are untyped; arrays need typed
/// items; objects and compositions are checked all the way down.
fn untyped(schema: &Value, components: &Value, depth: usize) -> Option<String> {
    if depth > 32 {
        return None;
    }
    let Some(obj) = schema.as_object() else {
        return Some("not a schema object".into());
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        return match components.get(name) {
            Some(_) => None,
            None => Some(format!("`$ref` to {r}, which is not among the components")),
        };
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(parts) = obj.get(key).and_then(Value::as_array) {
            return parts.iter().find_map(|p| untyped(p, components, depth + 1));
        }
    }
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return Some("a schema without a type".into());
    }
    if types.contains(&"object") {
        let props = obj.get("properties").and_then(Value::as_object);
        let extra = obj.get("additionalProperties");
        if props.is_none() && extra.is_none() {
            return Some("a bare `{\"type\": \"object\"}` (no properties)".into());
        }
        if let Some(p) = props {
            for (name, s) in p {
                if let Some(why) = untyped_member(s, components, depth) {
                    return Some(format!("property `{name}`: {why}"));
                }
            }
        }
        if let Some(s @ Value::Object(_)) = extra
            && let Some(why) = untyped_member(s, components, depth)
        {
            return Some(format!("additionalProperties: {why}"));
        }
    }
    if types.contains(&"array") {
        match obj.get("items") {
            Some(items) => {
                if let Some(why) = untyped_member(items, components, depth) {
                    return Some(format!("items: {why}"));
                }
            }
            None => return Some("an array without `items`".into()),
        }
    }
    None
}

/// A member of an object or array may be any JSON value (`{}`, such as a `serde_json::Value`
/// field) where that is what it is; what it must not be is a bare object.
fn untyped_member(schema: &Value, components: &Value, depth: usize) -> Option<String> {
    if schema.as_object().is_some_and(|o| o.is_empty() || (o.len() == 1 && o.contains_key("description"))) {
        return None;
    }
    untyped(schema, components, depth + 1)
}

/// The methods an OpenAPI path item may hold operations under.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Everything `spec` (an OpenAPI 3 document as JSON) lacks for a developer to call each
/// operation under `/api/` from it alone, one line each (empty when nothing is missing):
///
/// - a tag (the workflow it belongs to);
/// - at least one 2xx answer (`101` for a WebSocket), and for each 2xx answer other than `204`/`202` a content type, or documented headers when it has no body (tus);
///   a JSON content type has a typed schema; each 4xx/5xx answer has a body, the shared ErrorEnvelope
///   (or an OperationOutcome for a FHIR media type);
/// - a JSON request body, where there is one, has a typed schema;
/// - an operation that answers `401` names its `security` (`[{}]` when it takes no credential
///   but answers `401` for wrong ones, such as a password login);
/// - every `4xx`/`5xx` JSON answer is the shared error envelope (`$ref` to `ErrorEnvelope`);
/// - every component schema is typed (no bare `{"type": "object"}`).
pub fn problems(spec: &Value) -> Vec<String> {
    let components = field(spec, "/components/schemas");
    let mut out = Vec::new();
    if let Some(schemas) = components.as_object() {
        for (name, s) in schemas {
            if let Some(why) = untyped(s, components, 0) {
                out.push(format!("component schema {name}: {why}"));
            }
        }
    }
    let Some(paths) = field(spec, "/paths").as_object() else {
        out.push("no paths".into());
        return out;
    };
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/api/")) {
        for method in METHODS {
            let Some(op) = item.get(method).filter(|o| o.is_object()) else {
                continue;
            };
            let at = format!("{} {path}", method.to_uppercase());
            if field(op, "/tags").as_array().is_none_or(Vec::is_empty) {
                out.push(format!("{at}: no tag"));
            }
            if let Some(content) = field(op, "/requestBody/content").as_object() {
                for (media, c) in content.iter().filter(|(m, _)| is_json(m)) {
                    match c.get("schema") {
                        None => out.push(format!("{at}: request body {media} has no schema")),
                        Some(s) => {
                            if let Some(why) = untyped(s, components, 0) {
                                out.push(format!("{at}: request body {media} is {why}"));
                            }
                        }
                    }
                }
            } else if op.get("requestBody").is_some() {
                out.push(format!("{at}: a request body without content"));
            }
            let responses = field(op, "/responses").as_object();
            let mut success = 0;
            for (status, r) in responses.into_iter().flatten() {
                let content = r.get("content").and_then(Value::as_object);
                if status.starts_with('2') || status == "101" {
                    success += 1;
                    // An answer without a body says what it carries in its headers (tus: `Location`,
                    // `Upload-Offset`), unless its status means no body.
                    let headers = r.get("headers").and_then(Value::as_object).is_some_and(|h| !h.is_empty());
                    if content.is_none_or(serde_json::Map::is_empty)
                        && !headers
                        && !matches!(status.as_str(), "101" | "202" | "204")
                    {
                        out.push(format!("{at}: answer {status} has no content type"));
                    }
                } else if (status.starts_with('4') || status.starts_with('5'))
                    && content.is_none_or(serde_json::Map::is_empty)
                {
                    out.push(format!("{at}: answer {status} has no body (the ErrorEnvelope)"));
                }
                for (media, c) in content.into_iter().flatten().filter(|(m, _)| is_json(m)) {
                    let Some(s) = c.get("schema") else {
                        out.push(format!("{at}: answer {status} {media} has no schema"));
                        continue;
                    };
                    if status.starts_with('4') || status.starts_with('5') {
                        if field(s, "/$ref") != "#/components/schemas/ErrorEnvelope" && !media.contains("fhir") {
                            out.push(format!("{at}: answer {status} is not the shared ErrorEnvelope"));
                        }
                    } else if let Some(why) = untyped(s, components, 0) {
                        out.push(format!("{at}: answer {status} {media} is {why}"));
                    }
                }
            }
            if success == 0 {
                out.push(format!("{at}: no 2xx (or 101 Switching Protocols) answer"));
            }
            let answers_401 = responses.is_some_and(|r| r.contains_key("401"));
            if answers_401 && field(op, "/security").as_array().is_none_or(Vec::is_empty) {
                out.push(format!("{at}: answers 401 but names no security scheme"));
            }
        }
    }
    out
}

/// The same rule for a description still being built (a workflow's own `Mount::openapi`).
pub fn problems_of(doc: &utoipa::openapi::OpenApi) -> Vec<String> {
    match serde_json::to_value(doc) {
        Ok(v) => problems(&v),
        Err(e) => vec![format!("cannot serialise the description: {e}")],
    }
}

/// How `value` (a real answer or request body) differs from `schema` as `spec` describes it,
/// one line each (empty when it conforms): a missing required field, a field the schema does
/// not name (unless `additionalProperties` allows it), or a value of another JSON type. It keeps
/// the description honest where an answer is built as JSON rather than from its documented type.
pub fn mismatches(value: &Value, schema: &Value, spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    conform(value, schema, spec, "$", &mut out, 0);
    out
}

fn conform(value: &Value, schema: &Value, spec: &Value, at: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r.strip_prefix('#').and_then(|p| spec.pointer(p));
        match target {
            Some(t) => conform(value, t, spec, at, out, depth + 1),
            None => out.push(format!("{at}: `$ref` {r} names no component")),
        }
        return;
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        // `allOf` (a flattened struct): the fields of every part together.
        let mut merged = serde_json::Map::new();
        let mut required = Vec::new();
        for p in parts {
            let p = resolve(p, spec);
            if let Some(props) = p.get("properties").and_then(Value::as_object) {
                merged.extend(props.clone());
            }
            required.extend(p.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
        }
        let whole = json!({"type": "object", "properties": merged, "required": required});
        conform(value, &whole, spec, at, out, depth + 1);
        return;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(parts) = schema.get(key).and_then(Value::as_array) {
            let fits = parts.iter().any(|p| {
                let mut o = Vec::new();
                conform(value, p, spec, at, &mut o, depth + 1);
                o.is_empty()
            });
            if !fits {
                out.push(format!("{at}: fits none of the {key} alternatives"));
            }
            return;
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return, // any value
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
    if !fits {
        out.push(format!("{at}: {actual}, documented as {}", types.join(" or ")));
        return;
    }
    match value {
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
            {
                if !fields.contains_key(name) {
                    out.push(format!("{at}: the required `{name}` is missing"));
                }
            }
            let extra = schema.get("additionalProperties");
            for (name, v) in fields {
                match props.and_then(|p| p.get(name)) {
                    Some(s) => conform(v, s, spec, &format!("{at}.{name}"), out, depth + 1),
                    None => match extra {
                        Some(Value::Bool(true)) => {}
                        Some(s @ Value::Object(_)) => conform(v, s, spec, &format!("{at}.{name}"), out, depth + 1),
                        _ => out.push(format!("{at}: `{name}` is not documented")),
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    conform(v, s, spec, &format!("{at}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn resolve<'a>(schema: &'a Value, spec: &'a Value) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|p| spec.pointer(p))
        .unwrap_or(schema)
}

/// The schema `spec` documents for the JSON answer `status` of `method path` (`path` as in the
/// description, with `{…}` parameters).
pub fn answer_schema<'a>(spec: &'a Value, method: &str, path: &str, status: u16) -> Option<&'a Value> {
    let op = spec.get("paths")?.get(path)?.get(method)?;
    let content = op.get("responses")?.get(status.to_string())?.get("content")?.as_object()?;
    content.iter().find(|(m, _)| is_json(m)).and_then(|(_, c)| c.get("schema"))
}

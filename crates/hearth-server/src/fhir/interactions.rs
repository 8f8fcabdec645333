//! The FHIR RESTful interactions: create, read, vread, update, delete (plain and conditional),
//! history at three levels, and capabilities. Handlers parse and validate; the store decides.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_store::interactions as ix;
use hearth_store::{ConditionalCreate, Current, Deleted, Guarded, GuardedTx, HistoryQuery, HistoryScope, Version};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::http::{
    FhirBody, PatchBody, Prefer, base_url, check_id, check_type, etag, http_date, if_match, negotiate, version_response,
};
use super::{capability, query, search, search_parameters};
use crate::app::App;
use crate::auth::Caller;
use crate::error::{FhirError, Issue, fhir_json};

pub use hearth_workflow::fhir::write_of;

pub(super) fn new_id() -> String {
    // Time-ordered ids keep B-tree inserts local.
    uuid::Uuid::now_v7().to_string()
}

fn format_param(q: &[(String, String)]) -> Option<&str> {
    q.iter().find(|(k, _)| k == "_format").map(|(_, v)| v.as_str())
}

/// Validates a resource body for a write to `resource_type`: the R4 model, and the registry's
/// own checks of a SearchParameter.
pub(crate) fn validate(app: &App, resource_type: &str, body: &Value) -> Result<(), FhirError> {
    hearth_workflow::fhir::validate(app, resource_type, body)?;
    if resource_type == "SearchParameter" { search_parameters::check(app, body) } else { Ok(()) }
}

/// A write transaction of a `/fhir` interaction: it may write Appointments, and then only
/// [`commit`] commits it (see `hearth_scheduling::fhir_writes`).
pub(super) async fn begin(store: &Guarded) -> Result<GuardedTx, FhirError> {
    Ok(store.begin().await?.booking_on_commit())
}

/// Commits a `/fhir` write transaction: the scheduling workflow first claims the time of the
/// Appointments it wrote, in the same transaction.
pub(super) async fn commit(app: &App, caller: &Caller, tx: GuardedTx) -> Result<(), FhirError> {
    hearth_scheduling::fhir_writes::commit(&app.scheduling, caller, tx).await
}

/// What follows a committed write of `resource_type` (a SearchParameter changes the registry).
pub(super) async fn after_write(app: &Arc<App>, resource_type: &str) -> Result<(), FhirError> {
    if resource_type == "SearchParameter" {
        search_parameters::changed(app).await?;
    }
    Ok(())
}

pub async fn metadata(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let q = query::pairs(q.as_deref());
    negotiate(&headers, format_param(&q))?;
    let base = base_url(&app, &headers);
    Ok(fhir_json(StatusCode::OK, &capability::capability_statement(&app.model, &app.registry(), &base, app.started_at)))
}

pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    negotiate(&headers, None)?;
    validate(&app, &resource_type, &body)?;
    hearth_workflow::fhir::local_references_resolved(&resource_type, &body)?;
    let prefer = Prefer::from_headers(&headers);
    let base = base_url(&app, &headers);
    let now = app.clock.now();
    // FHIR: on create the server assigns the id and ignores any id in the body.
    let write = write_of(&app, &resource_type, new_id(), body);
    match headers.get("if-none-exist") {
        None => {
            let mut tx = begin(&store).await?;
            let v = ix::create(&mut tx, write, now).await?;
            commit(&app, &caller, tx).await?;
            after_write(&app, &resource_type).await?;
            Ok(version_response(StatusCode::CREATED, &v, &base, prefer.return_, true, "created"))
        }
        Some(raw) => {
            let raw = raw.to_str().map_err(|_| FhirError::bad_request("invalid", "If-None-Exist is not valid text"))?;
            let raw = raw.trim_start_matches('?');
            let raw = raw.split_once('?').map_or(raw, |(_, q)| q);
            let criteria = search::criteria(&app, &resource_type, &query::pairs(Some(raw))).await?;
            let mut tx = begin(&store).await?;
            let outcome = ix::create_unless_exists(&mut tx, &criteria, write, now).await?;
            commit(&app, &caller, tx).await?;
            match outcome {
                ConditionalCreate::Created(v) => {
                    after_write(&app, &resource_type).await?;
                    Ok(version_response(StatusCode::CREATED, &v, &base, prefer.return_, true, "created"))
                }
                ConditionalCreate::Exists(v) => Ok(version_response(
                    StatusCode::OK,
                    &v,
                    &base,
                    prefer.return_,
                    true,
                    "a matching resource exists; nothing was created",
                )),
            }
        }
    }
}

pub async fn read(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    check_id(&id)?;
    let q = query::pairs(q.as_deref());
    negotiate(&headers, format_param(&q))?;
    match store.read(&resource_type, &id).await? {
        Current::Found(v) => {
            if not_modified(&headers, &v) {
                let mut r = StatusCode::NOT_MODIFIED.into_response();
                if let Ok(e) = etag(v.version_id).parse() {
                    r.headers_mut().insert(header::ETAG, e);
                }
                return Ok(r);
            }
            Ok(version_response(StatusCode::OK, &v, "", super::http::Return::Representation, false, ""))
        }
        Current::Deleted(v) => {
            let mut r = FhirError::new(
                StatusCode::GONE,
                Issue::error("deleted", format!("{resource_type}/{id} was deleted (version {})", v.version_id)),
            )
            .into_response();
            if let Ok(e) = etag(v.version_id).parse() {
                r.headers_mut().insert(header::ETAG, e);
            }
            Ok(r)
        }
        Current::NotFound => Err(FhirError::not_found(format!("{resource_type}/{id} does not exist"))),
    }
}

/// Conditional read by `If-None-Match` (version ETag) or `If-Modified-Since`.
fn not_modified(headers: &HeaderMap, v: &Version) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|h| h.to_str().ok()) {
        return inm.split(',').any(|t| t.trim() == "*" || super::http::parse_etag(t) == Some(v.version_id));
    }
    if let Some(ims) = headers.get(header::IF_MODIFIED_SINCE).and_then(|h| h.to_str().ok())
        && let Ok(since) = httpdate::parse_http_date(ims)
    {
        let since = chrono::DateTime::<chrono::Utc>::from(since);
        return v.last_updated.timestamp() <= since.timestamp();
    }
    false
}

pub async fn vread(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((resource_type, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    check_id(&id)?;
    let q = query::pairs(q.as_deref());
    negotiate(&headers, format_param(&q))?;
    let version: u64 =
        vid.parse().map_err(|_| FhirError::not_found(format!("{resource_type}/{id} has no version `{vid}`")))?;
    match store.read_version(&resource_type, &id, version).await? {
        Some(v) if v.is_deletion() => Err(FhirError::new(
            StatusCode::GONE,
            Issue::error("deleted", format!("version {version} of {resource_type}/{id} is a deletion")),
        )),
        Some(v) => Ok(version_response(StatusCode::OK, &v, "", super::http::Return::Representation, false, "")),
        None => Err(FhirError::not_found(format!("{resource_type}/{id} has no version {version}"))),
    }
}

pub async fn update(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    check_id(&id)?;
    negotiate(&headers, None)?;
    let if_match = if_match(&headers)?;
    validate(&app, &resource_type, &body)?;
    hearth_workflow::fhir::local_references_resolved(&resource_type, &body)?;
    match body.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(FhirError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("invalid", format!("the body's id `{body_id}` does not match the URL id `{id}`")).at("id"),
            ));
        }
        None => {
            return Err(FhirError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("required", "an update must carry the resource id matching the URL").at("id"),
            ));
        }
    }
    let prefer = Prefer::from_headers(&headers);
    let base = base_url(&app, &headers);
    let mut tx = begin(&store).await?;
    let written = ix::update(&mut tx, write_of(&app, &resource_type, id, body), if_match, app.clock.now()).await?;
    commit(&app, &caller, tx).await?;
    after_write(&app, &resource_type).await?;
    let (status, msg) = if written.created { (StatusCode::CREATED, "created") } else { (StatusCode::OK, "updated") };
    Ok(version_response(status, &written.version, &base, prefer.return_, written.created, msg))
}

/// `PATCH` with a JSON Patch document or a FHIRPath Patch `Parameters` resource. The read, the patch, the validation of the result and the
/// write happen in one store transaction, so a concurrent writer cannot slip in between. A patch
/// that cannot be applied, or whose result is not a valid resource of the same type and id,
/// answers `422`.
pub async fn patch(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    patch: PatchBody,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    check_id(&id)?;
    negotiate(&headers, None)?;
    let if_match = if_match(&headers)?;
    let prefer = Prefer::from_headers(&headers);
    let base = base_url(&app, &headers);
    let mut tx = begin(&store).await?;
    let current = match tx.read(&resource_type, &id).await? {
        Current::Found(v) => v,
        Current::Deleted(_) => {
            return Err(FhirError::new(
                StatusCode::GONE,
                Issue::error("deleted", format!("{resource_type}/{id} was deleted")),
            ));
        }
        Current::NotFound => return Err(FhirError::not_found(format!("{resource_type}/{id} does not exist"))),
    };
    let body = current.body.as_deref().ok_or_else(|| FhirError::internal("live version without a body"))?;
    let doc: Value =
        serde_json::from_str(body).map_err(|e| FhirError::internal(format!("stored body is not JSON: {e}")))?;
    let unprocessable = |code, msg: String| FhirError::new(StatusCode::UNPROCESSABLE_ENTITY, Issue::error(code, msg));
    // A patch without operations would write a new version identical to the current one.
    let empty = match &patch {
        PatchBody::Json(p) => p.as_array().is_some_and(Vec::is_empty),
        PatchBody::FhirPath(p) => p.get("parameter").and_then(Value::as_array).is_none_or(Vec::is_empty),
    };
    if empty {
        return Err(unprocessable("processing", "the patch has no operations".into()));
    }
    let patched = match &patch {
        PatchBody::Json(p) => hearth_fhir::json_patch::apply(&doc, p)
            .map_err(|e| unprocessable("processing", format!("the patch cannot be applied: {e}")))?,
        PatchBody::FhirPath(p) => {
            let now =
                hearth_fhirpath::DateTime::parse(&app.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .ok_or_else(|| FhirError::internal("clock time is not a FHIRPath dateTime"))?;
            app.registry()
                .fhirpath_patch(&doc, p, now)
                .map_err(|e| unprocessable("processing", format!("the patch cannot be applied: {e}")))?
        }
    };
    if patched.get("resourceType") != doc.get("resourceType") || patched.get("id") != doc.get("id") {
        return Err(unprocessable("processing", "a patch must not change resourceType or id".into()));
    }
    validate(&app, &resource_type, &patched)
        .and_then(|()| hearth_workflow::fhir::local_references_resolved(&resource_type, &patched))
        .map_err(|e| FhirError::with_issues(StatusCode::UNPROCESSABLE_ENTITY, e.issues))?;
    // Without If-Match the version just read is the precondition: the write is atomic with the read.
    let precondition = if_match.or(Some(current.version_id));
    let written =
        ix::update(&mut tx, write_of(&app, &resource_type, id, patched), precondition, app.clock.now()).await?;
    commit(&app, &caller, tx).await?;
    after_write(&app, &resource_type).await?;
    Ok(version_response(StatusCode::OK, &written.version, &base, prefer.return_, false, "patched"))
}

pub async fn conditional_update(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    FhirBody(body): FhirBody,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    negotiate(&headers, None)?;
    let if_match = if_match(&headers)?;
    let criteria = search::criteria(&app, &resource_type, &query::pairs(q.as_deref())).await?;
    validate(&app, &resource_type, &body)?;
    hearth_workflow::fhir::local_references_resolved(&resource_type, &body)?;
    let client_id = body.get("id").and_then(Value::as_str).map(str::to_owned);
    let id_from_client = client_id.is_some();
    let id = client_id.unwrap_or_else(new_id);
    let prefer = Prefer::from_headers(&headers);
    let base = base_url(&app, &headers);
    let mut tx = begin(&store).await?;
    let write = write_of(&app, &resource_type, id, body);
    let written = ix::update_matching(&mut tx, &criteria, write, id_from_client, if_match, app.clock.now()).await?;
    commit(&app, &caller, tx).await?;
    after_write(&app, &resource_type).await?;
    let (status, msg) = if written.created { (StatusCode::CREATED, "created") } else { (StatusCode::OK, "updated") };
    Ok(version_response(status, &written.version, &base, prefer.return_, written.created, msg))
}

fn deleted_response(v: &Version) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(e) = etag(v.version_id).parse() {
        r.headers_mut().insert(header::ETAG, e);
    }
    if let Ok(lm) = http_date(v.last_updated).parse() {
        r.headers_mut().insert(header::LAST_MODIFIED, lm);
    }
    r
}

pub async fn delete(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    check_id(&id)?;
    let if_match = if_match(&headers)?;
    let mut tx = begin(&store).await?;
    let deleted = ix::delete(&mut tx, &resource_type, &id, if_match, app.clock.now()).await?;
    commit(&app, &caller, tx).await?;
    match deleted {
        Deleted::Deleted(v) => {
            after_write(&app, &resource_type).await?;
            Ok(deleted_response(&v))
        }
        Deleted::AlreadyDeleted => Ok(StatusCode::NO_CONTENT.into_response()),
        Deleted::NotFound => Err(FhirError::not_found(format!("{resource_type}/{id} does not exist"))),
    }
}

pub async fn conditional_delete(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(resource_type): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    let criteria = search::criteria(&app, &resource_type, &query::pairs(q.as_deref())).await?;
    let mut tx = begin(&store).await?;
    let deleted = ix::delete_matching(&mut tx, &criteria, false, app.clock.now()).await?;
    commit(&app, &caller, tx).await?;
    match deleted.first() {
        Some(v) => {
            after_write(&app, &resource_type).await?;
            Ok(deleted_response(v))
        }
        None => Err(FhirError::not_found("no resource matches the criteria")),
    }
}

#[derive(Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

#[derive(Serialize)]
struct EntryRequest {
    method: &'static str,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryResponse {
    status: &'static str,
    etag: String,
    last_modified: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryEntry<'a> {
    full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    request: EntryRequest,
    response: EntryResponse,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryBundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    link: Vec<Link>,
    // FHIR JSON forbids empty arrays: an empty page has no `entry` at all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<HistoryEntry<'a>>,
}

async fn history(
    app: &App,
    store: &Guarded,
    headers: &HeaderMap,
    scope: HistoryScope,
    raw_query: Option<&str>,
) -> Result<Response, FhirError> {
    let pairs = query::pairs(raw_query);
    negotiate(headers, format_param(&pairs))?;
    let params = query::history_params(&pairs)?;
    let base = base_url(app, headers);
    let path = match &scope {
        HistoryScope::System => format!("{base}/_history"),
        HistoryScope::Type(t) => format!("{base}/{t}/_history"),
        HistoryScope::Instance { resource_type, id } => format!("{base}/{resource_type}/{id}/_history"),
    };
    let page = store
        .history(&HistoryQuery {
            scope: scope.clone(),
            since: params.since,
            before: params.cursor,
            count: params.count,
        })
        .await?;
    // Every resource has at least one version, so only an empty page can mean "no such resource"
    // (it may also mean `_since`/the cursor filtered everything out): check only then.
    if let (true, HistoryScope::Instance { resource_type, id }) = (page.entries.is_empty(), &scope)
        && let Current::NotFound = store.read(resource_type, id).await?
    {
        return Err(FhirError::not_found(format!("{resource_type}/{id} does not exist")));
    }

    let link_to = |cursor: Option<i64>| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("_count", &params.count.to_string());
        if let Some(since) = params.since {
            s.append_pair("_since", &since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        if let Some(c) = cursor {
            s.append_pair("_cursor", &c.to_string());
        }
        format!("{path}?{}", s.finish())
    };
    let mut link = vec![Link { relation: "self", url: link_to(params.cursor) }];
    if let Some(next) = page.next {
        link.push(Link { relation: "next", url: link_to(Some(next)) });
    }
    if params.cursor.is_some() {
        link.push(Link { relation: "first", url: link_to(None) });
    }

    let mut entry = Vec::with_capacity(page.entries.len());
    for v in &page.entries {
        let resource = match &v.body {
            Some(body) => Some(
                serde_json::from_str::<&RawValue>(body)
                    .map_err(|e| FhirError::internal(format!("stored body is not JSON: {e}")))?,
            ),
            None => None,
        };
        let (method, url, status) = match v.method {
            hearth_store::Method::Post => ("POST", v.resource_type.clone(), "201 Created"),
            hearth_store::Method::Put => (
                "PUT",
                format!("{}/{}", v.resource_type, v.id),
                if v.version_id == 1 { "201 Created" } else { "200 OK" },
            ),
            hearth_store::Method::Delete => ("DELETE", format!("{}/{}", v.resource_type, v.id), "204 No Content"),
        };
        entry.push(HistoryEntry {
            full_url: format!("{base}/{}/{}", v.resource_type, v.id),
            resource,
            request: EntryRequest { method, url },
            response: EntryResponse {
                status,
                etag: etag(v.version_id),
                last_modified: v.last_updated.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
        });
    }
    let bundle = HistoryBundle { resource_type: "Bundle", kind: "history", link, entry };
    let text = serde_json::to_string(&bundle).map_err(FhirError::internal)?;
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static(crate::error::FHIR_JSON));
    Ok(r)
}

pub async fn history_system(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    history(&app, &store, &headers, HistoryScope::System, q.as_deref()).await
}

pub async fn history_type(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    history(&app, &store, &headers, HistoryScope::Type(resource_type), q.as_deref()).await
}

pub async fn history_instance(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    check_id(&id)?;
    history(&app, &store, &headers, HistoryScope::Instance { resource_type, id }, q.as_deref()).await
}

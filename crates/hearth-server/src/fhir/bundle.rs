//! `POST /fhir` with a `batch` or `transaction` Bundle.
//!
//! A transaction runs in one store transaction: all entries succeed or nothing is visible (the
//! database transaction is only committed after the last entry). Processing follows FHIR:
//! 1. every POST gets its id up front (or, with `ifNoneExist`, the id of the one existing match),
//!    and each entry's `fullUrl` is mapped to its `Type/id`;
//! 2. conditional references (`Patient?identifier=...`) are resolved to exactly one match;
//! 3. every `reference` in every resource that names a mapped `fullUrl` (e.g. `urn:uuid:...`) or a
//!    conditional reference is rewritten to `Type/id`;
//! 4. entries run in the order DELETE, POST, PUT, GET, and the response lists them in request order.
//!
//! Steps 1–3 and the search index of every resource (FHIRPath over each SearchParameter, the
//! costly part) are first worked out *before* the write transaction, against the caller's read
//! view (`plan`), so that the single writer is held only for writing rows. Inside the
//! transaction steps 1–3 run again (conditional matches are looked up where they count), with
//! the same ids; an entry whose resource came out the same reuses its planned index, any other
//! (a conditional match that changed in between) is indexed again there. The outcome is what it
//! would be without the plan, only sooner.
//!
//! A batch runs each entry on its own (its own transaction); a failing entry gets its status and
//! an OperationOutcome in the response and does not affect the others. Batch entries cannot refer
//! to each other by `fullUrl` (FHIR forbids interdependent batch entries).
//!
//! Supported entry requests: POST `Type`, PUT `Type/id` and `Type?criteria`, DELETE `Type/id` and
//! `Type?criteria`, GET `Type/id` and `Type/id/_history/vid`. Anything else is refused with `400`
//! (for a transaction, the whole Bundle).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_store::interactions as ix;
use hearth_store::{Current, Deleted, Guarded, GuardedTx, Version};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::http::{FhirBody, Prefer, Return, base_url, etag, negotiate};
use super::http::{check_id, check_type};
use super::interactions::{new_id, validate, write_of};
use super::query;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{FHIR_JSON, FhirError, Issue, operation_outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    /// FHIR transaction processing order.
    fn rank(self) -> u8 {
        match self {
            Verb::Delete => 0,
            Verb::Post => 1,
            Verb::Put => 2,
            Verb::Get => 3,
        }
    }
}

#[derive(Debug, Clone)]
enum Target {
    Type(String),
    Instance(String, String),
    Version(String, String, u64),
    Conditional(String, Vec<(String, String)>),
}

#[derive(Debug, Clone)]
struct Entry {
    index: usize,
    full_url: Option<String>,
    verb: Verb,
    target: Target,
    resource: Option<Value>,
    if_none_exist: Option<String>,
    if_match: Option<u64>,
}

/// What one entry produced.
struct Outcome {
    status: StatusCode,
    version: Option<Version>,
    with_location: bool,
}

fn entry_error(index: usize, e: FhirError) -> FhirError {
    let FhirError { status, issues, .. } = e;
    FhirError::with_issues(
        status,
        issues
            .into_iter()
            .map(|mut i| {
                i.diagnostics = format!("Bundle.entry[{index}]: {}", i.diagnostics);
                if i.expression.is_empty() {
                    i.expression.push(format!("Bundle.entry[{index}]"));
                }
                i
            })
            .collect(),
    )
}

fn parse_target(url: &str, base: &str) -> Result<Target, FhirError> {
    let url = url.strip_prefix(base).map(|u| u.trim_start_matches('/')).unwrap_or(url);
    if url.contains("://") {
        return Err(FhirError::bad_request("not-supported", "request.url must be relative to this server's base"));
    }
    let (path, raw_query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (segments.as_slice(), raw_query) {
        ([ty], None) => Ok(Target::Type((*ty).to_owned())),
        ([ty], Some(q)) => Ok(Target::Conditional((*ty).to_owned(), query::pairs(Some(q)))),
        ([ty, id], None) => Ok(Target::Instance((*ty).to_owned(), (*id).to_owned())),
        ([ty, id, "_history", vid], None) => {
            let vid = vid.parse().map_err(|_| FhirError::bad_request("invalid", "version id must be a number"))?;
            Ok(Target::Version((*ty).to_owned(), (*id).to_owned(), vid))
        }
        _ => Err(FhirError::bad_request("not-supported", "request.url is not a supported entry request")),
    }
}

fn parse_entries(app: &App, bundle: &Value, base: &str, first_index: usize) -> Result<Vec<Entry>, FhirError> {
    let Some(items) = bundle.get("entry").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for (offset, item) in items.iter().enumerate() {
        let index = first_index + offset;
        let parse = || -> Result<Entry, FhirError> {
            let request =
                item.get("request").ok_or_else(|| FhirError::bad_request("required", "every entry needs a request"))?;
            let verb = match request.get("method").and_then(Value::as_str) {
                Some("GET") => Verb::Get,
                Some("POST") => Verb::Post,
                Some("PUT") => Verb::Put,
                Some("DELETE") => Verb::Delete,
                Some(other) => {
                    return Err(FhirError::bad_request(
                        "not-supported",
                        format!("request.method {other} is not supported in bundles"),
                    ));
                }
                None => return Err(FhirError::bad_request("required", "request.method is required")),
            };
            let url = request
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| FhirError::bad_request("required", "request.url is required"))?;
            let target = parse_target(url, base)?;
            let ty = match &target {
                Target::Type(t) | Target::Instance(t, _) | Target::Version(t, _, _) | Target::Conditional(t, _) => t,
            };
            check_type(app, ty)?;
            if let Target::Instance(_, id) | Target::Version(_, id, _) = &target {
                check_id(id)?;
            }
            let valid = matches!(
                (verb, &target),
                (Verb::Post, Target::Type(_))
                    | (Verb::Put | Verb::Delete, Target::Instance(..) | Target::Conditional(..))
                    | (Verb::Get, Target::Instance(..) | Target::Version(..))
            );
            if !valid {
                return Err(FhirError::bad_request(
                    "not-supported",
                    "this combination of request.method and request.url is not supported in bundles",
                ));
            }
            let resource = item.get("resource").cloned();
            if matches!(verb, Verb::Post | Verb::Put) {
                let r = resource
                    .as_ref()
                    .ok_or_else(|| FhirError::bad_request("required", "POST and PUT entries need a resource"))?;
                validate(app, ty, r)?;
                if let (Verb::Put, Target::Instance(_, id)) = (verb, &target)
                    && r.get("id").and_then(Value::as_str) != Some(id.as_str())
                {
                    return Err(FhirError::bad_request("invalid", "the resource id must match request.url"));
                }
            }
            let if_match = match request.get("ifMatch").and_then(Value::as_str) {
                Some(raw) => Some(super::http::parse_etag(raw).ok_or_else(|| {
                    FhirError::bad_request("invalid", "request.ifMatch must be a version ETag such as W/\"3\"")
                })?),
                None => None,
            };
            Ok(Entry {
                index,
                full_url: item.get("fullUrl").and_then(Value::as_str).map(str::to_owned),
                verb,
                target,
                resource,
                if_none_exist: request.get("ifNoneExist").and_then(Value::as_str).map(str::to_owned),
                if_match,
            })
        };
        out.push(parse().map_err(|e| entry_error(index, e))?);
    }
    Ok(out)
}

/// Visits every `reference` string in a resource.
fn for_each_reference(
    value: &mut Value,
    f: &mut dyn FnMut(&mut String) -> Result<(), FhirError>,
) -> Result<(), FhirError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if k == "reference" => f(s)?,
                    other => for_each_reference(other, f)?,
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| for_each_reference(v, f)),
        _ => Ok(()),
    }
}

/// Where conditional matches are looked up: in the write transaction (what counts), or while
/// planning before it, in the caller's read view.
enum Lookup<'a> {
    Tx(&'a mut GuardedTx),
    Read(&'a Guarded),
}

impl Lookup<'_> {
    async fn find(&mut self, criteria: &hearth_search::SearchQuery, limit: u32) -> Result<Vec<Version>, FhirError> {
        Ok(match self {
            Lookup::Tx(tx) => tx.find(criteria, limit).await?,
            Lookup::Read(store) => store.find(criteria, limit).await?,
        })
    }
}

/// Resolves a conditional reference (`Type?criteria`) to exactly one resource.
async fn resolve_conditional(app: &App, look: &mut Lookup<'_>, reference: &str) -> Result<String, FhirError> {
    let (ty, q) = reference.split_once('?').unwrap_or((reference, ""));
    check_type(app, ty)?;
    let criteria = super::search::criteria(app, ty, &query::pairs(Some(q))).await?;
    let matches = look.find(&criteria, 2).await?;
    match matches.as_slice() {
        [one] => Ok(format!("{}/{}", one.resource_type, one.id)),
        [] => Err(FhirError::new(
            StatusCode::PRECONDITION_FAILED,
            Issue::error("not-found", format!("the conditional reference {ty}?… matches no resource")),
        )),
        _ => Err(FhirError::new(
            StatusCode::PRECONDITION_FAILED,
            Issue::error("multiple-matches", format!("the conditional reference {ty}?… matches several resources")),
        )),
    }
}

/// The ids a transaction gives its POST entries (by entry index): chosen once, while planning,
/// and kept inside the transaction.
type Ids = HashMap<usize, String>;

/// An entry's resource as planned and its search index.
struct Planned {
    resource: Value,
    index: Vec<hearth_search::IndexEntry>,
}

/// What the plan worked out before the write transaction (see the module documentation).
struct Plan {
    registry: Arc<hearth_search::Registry>,
    entries: HashMap<usize, Planned>,
}

/// Steps 1–3 and the index of each resource, against the caller's read view. A plan is only
/// a head start: whatever goes wrong here (a conditional reference that matches nothing yet)
/// is left for the transaction to find and answer.
async fn plan(app: &App, store: &Guarded, entries: &[Entry], ids: &mut Ids) -> Plan {
    let registry = app.registry();
    let Ok((resolved, _)) = resolve(app, &mut Lookup::Read(store), entries.to_vec(), ids).await else {
        return Plan { registry, entries: HashMap::new() };
    };
    // Indexing is CPU work of tens of milliseconds for a patient's Bundle: done on the blocking
    // pool, so the runtime's few threads stay free to drive the transaction that holds the
    // writer (measured: indexing on the runtime threads left the writer waiting for them).
    let on = Arc::clone(&registry);
    let indexed = tokio::task::spawn_blocking(move || {
        resolved
            .into_iter()
            .filter_map(|e| match (e.verb, e.resource) {
                (Verb::Post | Verb::Put, Some(resource)) => {
                    let index = on.index(&resource);
                    Some((e.index, Planned { resource, index }))
                }
                _ => None,
            })
            .collect()
    })
    .await;
    Plan { registry, entries: indexed.unwrap_or_default() }
}

impl Plan {
    /// The write of an entry: its planned index when the resource is still the planned one
    /// (and the search parameters have not changed since), else indexed now.
    fn write(&mut self, app: &App, index: usize, ty: &str, id: String, resource: Value) -> hearth_store::Write {
        match self.entries.remove(&index) {
            Some(p) if p.resource == resource && Arc::ptr_eq(&self.registry, &app.registry()) => {
                hearth_store::Write { resource_type: ty.to_owned(), id, resource, index: p.index }
            }
            _ => write_of(app, ty, id, resource),
        }
    }
}

/// POST ids (conditional creates: the existing match) of the entries, taken from or recorded
/// in `ids`.
type Assigned = HashMap<usize, (String, Option<Version>)>;

/// Steps 1–3: ids, the fullUrl map, conditional references; answers the entries with their
/// references rewritten.
async fn resolve(
    app: &App,
    look: &mut Lookup<'_>,
    entries: Vec<Entry>,
    ids: &mut Ids,
) -> Result<(Vec<Entry>, Assigned), FhirError> {
    // 1. Ids for POSTs (or the existing match for conditional creates) and the fullUrl map.
    let mut mapping: HashMap<String, String> = HashMap::new();
    let mut assigned: Assigned = HashMap::new();
    let mut touched = HashSet::new();
    let mut id_for = |index: usize| ids.entry(index).or_insert_with(new_id).clone();
    for e in &entries {
        match (&e.verb, &e.target) {
            (Verb::Post, Target::Type(ty)) => {
                let (id, existing) = match &e.if_none_exist {
                    None => (id_for(e.index), None),
                    Some(cond) => {
                        let cond = cond.split_once('?').map_or(cond.as_str(), |(_, q)| q);
                        let criteria = super::search::criteria(app, ty, &query::pairs(Some(cond)))
                            .await
                            .map_err(|x| entry_error(e.index, x))?;
                        let mut found = look.find(&criteria, 2).await?;
                        match found.len() {
                            0 => (id_for(e.index), None),
                            1 => {
                                let v = found.pop().ok_or_else(|| FhirError::internal("match vanished"))?;
                                (v.id.clone(), Some(v))
                            }
                            n => {
                                return Err(entry_error(e.index, hearth_store::StoreError::MultipleMatches(n).into()));
                            }
                        }
                    }
                };
                if let Some(full) = &e.full_url {
                    mapping.insert(full.clone(), format!("{ty}/{id}"));
                }
                assigned.insert(e.index, (id, existing));
            }
            (Verb::Put | Verb::Delete, Target::Instance(ty, id)) => {
                if !touched.insert((ty.clone(), id.clone())) {
                    return Err(entry_error(
                        e.index,
                        FhirError::bad_request("invalid", format!("{ty}/{id} is the target of more than one entry")),
                    ));
                }
                if let (Verb::Put, Some(full)) = (e.verb, &e.full_url) {
                    mapping.insert(full.clone(), format!("{ty}/{id}"));
                }
            }
            _ => {}
        }
    }

    // 2–3. Rewrite references: mapped fullUrls and conditional references.
    let mut entries = entries;
    for e in &mut entries {
        let index = e.index;
        let Some(resource) = e.resource.as_mut() else { continue };
        let mut conditional = Vec::new();
        for_each_reference(resource, &mut |r| {
            if let Some(target) = mapping.get(r.as_str()) {
                *r = target.clone();
            } else if r.contains('?') && !r.contains("://") {
                conditional.push(r.clone());
            }
            Ok(())
        })?;
        for reference in conditional {
            let resolved = resolve_conditional(app, look, &reference).await.map_err(|x| entry_error(index, x))?;
            for_each_reference(resource, &mut |r| {
                if *r == reference {
                    *r = resolved.clone();
                }
                Ok(())
            })?;
        }
        if let Some(ty) = resource.get("resourceType").and_then(Value::as_str) {
            hearth_workflow::fhir::local_references_resolved(ty, resource).map_err(|x| entry_error(index, x))?;
        }
    }

    Ok((entries, assigned))
}

/// Runs entries inside one store transaction (the caller commits), with the ids and indexes
/// of `plan` where they still hold.
async fn run(
    app: &App,
    tx: &mut GuardedTx,
    entries: Vec<Entry>,
    ids: &mut Ids,
    plan: &mut Plan,
) -> Result<Vec<(usize, Outcome)>, FhirError> {
    let now = app.clock.now();
    let (mut entries, mut assigned) = resolve(app, &mut Lookup::Tx(tx), entries, ids).await?;
    // 4. Execute in FHIR order.
    entries.sort_by_key(|e| (e.verb.rank(), e.index));
    let mut results = Vec::with_capacity(entries.len());
    for e in entries {
        let index = e.index;
        let outcome = run_one(app, tx, e, &mut assigned, now, plan).await.map_err(|x| entry_error(index, x))?;
        results.push((index, outcome));
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(results)
}

async fn run_one(
    app: &App,
    tx: &mut GuardedTx,
    e: Entry,
    assigned: &mut Assigned,
    now: chrono::DateTime<chrono::Utc>,
    plan: &mut Plan,
) -> Result<Outcome, FhirError> {
    let ok = |status, version| Outcome { status, version: Some(version), with_location: false };
    match (e.verb, e.target, e.resource) {
        (Verb::Post, Target::Type(ty), Some(resource)) => {
            let (id, existing) = assigned.remove(&e.index).unwrap_or_else(|| (new_id(), None));
            if let Some(v) = existing {
                return Ok(ok(StatusCode::OK, v));
            }
            let v = ix::create(tx, plan.write(app, e.index, &ty, id, resource), now).await?;
            Ok(Outcome { status: StatusCode::CREATED, version: Some(v), with_location: true })
        }
        (Verb::Put, Target::Instance(ty, id), Some(resource)) => {
            let w = ix::update(tx, plan.write(app, e.index, &ty, id, resource), e.if_match, now).await?;
            let status = if w.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(Outcome { status, version: Some(w.version), with_location: w.created })
        }
        (Verb::Put, Target::Conditional(ty, pairs), Some(resource)) => {
            let criteria = super::search::criteria(app, &ty, &pairs).await?;
            let client_id = resource.get("id").and_then(Value::as_str).map(str::to_owned);
            let from_client = client_id.is_some();
            let write = plan.write(app, e.index, &ty, client_id.unwrap_or_else(new_id), resource);
            let w = ix::update_matching(tx, &criteria, write, from_client, e.if_match, now).await?;
            let status = if w.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(Outcome { status, version: Some(w.version), with_location: w.created })
        }
        (Verb::Delete, Target::Instance(ty, id), _) => match ix::delete(tx, &ty, &id, e.if_match, now).await? {
            Deleted::Deleted(v) => Ok(ok(StatusCode::NO_CONTENT, v)),
            Deleted::AlreadyDeleted => {
                Ok(Outcome { status: StatusCode::NO_CONTENT, version: None, with_location: false })
            }
            Deleted::NotFound => Err(FhirError::not_found(format!("{ty}/{id} does not exist"))),
        },
        (Verb::Delete, Target::Conditional(ty, pairs), _) => {
            let criteria = super::search::criteria(app, &ty, &pairs).await?;
            let deleted = ix::delete_matching(tx, &criteria, false, now).await?;
            match deleted.into_iter().next() {
                Some(v) => Ok(ok(StatusCode::NO_CONTENT, v)),
                None => Err(FhirError::not_found("no resource matches the criteria")),
            }
        }
        (Verb::Get, Target::Instance(ty, id), _) => match tx.read(&ty, &id).await? {
            Current::Found(v) => Ok(ok(StatusCode::OK, v)),
            Current::Deleted(_) => {
                Err(FhirError::new(StatusCode::GONE, Issue::error("deleted", format!("{ty}/{id} was deleted"))))
            }
            Current::NotFound => Err(FhirError::not_found(format!("{ty}/{id} does not exist"))),
        },
        (Verb::Get, Target::Version(ty, id, vid), _) => match tx.read(&ty, &id).await? {
            // The reach is judged on the current version (see `hearth_store::Guarded`).
            Current::NotFound => Err(FhirError::not_found(format!("{ty}/{id} does not exist"))),
            _ => match app.store.read_version(&ty, &id, vid).await? {
                Some(v) if !v.is_deletion() => Ok(ok(StatusCode::OK, v)),
                _ => Err(FhirError::not_found(format!("{ty}/{id} has no readable version {vid}"))),
            },
        },
        _ => Err(FhirError::bad_request("not-supported", "unsupported entry request")),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryResponse {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    response: EntryResponse,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseBundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    // FHIR JSON forbids empty arrays: an empty page has no `entry` at all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<ResponseEntry<'a>>,
}

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

enum Slot {
    Done(Outcome),
    Failed(FhirError),
}

fn response(kind: &'static str, slots: &[Slot], base: &str, prefer: Return) -> Result<Response, FhirError> {
    let mut entry = Vec::with_capacity(slots.len());
    for slot in slots {
        entry.push(match slot {
            Slot::Done(o) => {
                let v = o.version.as_ref();
                let resource = match (prefer, v.and_then(|v| v.body.as_deref())) {
                    (Return::Representation, Some(body)) => Some(
                        serde_json::from_str::<&RawValue>(body)
                            .map_err(|e| FhirError::internal(format!("stored body is not JSON: {e}")))?,
                    ),
                    _ => None,
                };
                ResponseEntry {
                    full_url: v.map(|v| format!("{base}/{}/{}", v.resource_type, v.id)),
                    resource,
                    response: EntryResponse {
                        status: status_line(o.status),
                        location: v
                            .filter(|_| o.with_location)
                            .map(|v| format!("{}/{}/_history/{}", v.resource_type, v.id, v.version_id)),
                        etag: v.map(|v| etag(v.version_id)),
                        last_modified: v.map(|v| v.last_updated.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                        outcome: None,
                    },
                }
            }
            Slot::Failed(e) => ResponseEntry {
                full_url: None,
                resource: None,
                response: EntryResponse {
                    status: status_line(e.status),
                    location: None,
                    etag: None,
                    last_modified: None,
                    outcome: Some(operation_outcome(&e.issues)),
                },
            },
        });
    }
    let text =
        serde_json::to_string(&ResponseBundle { resource_type: "Bundle", kind, entry }).map_err(FhirError::internal)?;
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(FHIR_JSON));
    Ok(r)
}

pub async fn batch_or_transaction(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    negotiate(&headers, None)?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            Issue::error("invalid", "POST to the base accepts only a Bundle").at("resourceType"),
        ));
    }
    // A transaction is validated as a whole up front; a batch validates each entry on its own
    // so that one bad entry fails alone.
    if body.get("type").and_then(Value::as_str) == Some("transaction") {
        validate(&app, "Bundle", &body)?;
    }
    let base = base_url(&app, &headers);
    let prefer = Prefer::from_headers(&headers).return_;
    let resp = run_bundle(&app, &store, &caller, &body, &base, prefer).await;
    // SearchParameter entries change the registry once the Bundle has committed.
    let touches =
        |e: &Value| e.pointer("/request/url").and_then(Value::as_str).is_some_and(|u| u.starts_with("SearchParameter"));
    if resp.is_ok() && body.get("entry").and_then(Value::as_array).is_some_and(|es| es.iter().any(touches)) {
        super::interactions::after_write(&app, "SearchParameter").await?;
    }
    resp
}

async fn run_bundle(
    app: &App,
    store: &Guarded,
    caller: &Caller,
    body: &Value,
    base: &str,
    prefer: super::http::Return,
) -> Result<Response, FhirError> {
    unique_full_urls(body)?;
    match body.get("type").and_then(Value::as_str) {
        Some("transaction") => {
            let slots = run_transaction(app, store, Some(caller), body, base).await?;
            response("transaction-response", &slots, base, prefer)
        }
        Some("batch") => {
            let slots = run_batch(app, store, Some(caller), body, base).await;
            response("batch-response", &slots, base, prefer)
        }
        _ => Err(FhirError::new(
            StatusCode::BAD_REQUEST,
            Issue::error("invalid", "POST to the base accepts only Bundles of type batch or transaction")
                .at("Bundle.type"),
        )),
    }
}

/// bdl-7: a `fullUrl` names one entry (entries of the same resource in different versions aside),
/// or references to it would resolve to whichever entry came last.
fn unique_full_urls(bundle: &Value) -> Result<(), FhirError> {
    let Some(items) = bundle.get("entry").and_then(Value::as_array) else { return Ok(()) };
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(url) = item.get("fullUrl").and_then(Value::as_str) else { continue };
        let version = item.pointer("/resource/meta/versionId").and_then(Value::as_str);
        if !seen.insert((url, version)) {
            return Err(FhirError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("invalid", format!("fullUrl {url} is given to more than one entry (bdl-7)"))
                    .at(format!("Bundle.entry[{i}].fullUrl")),
            ));
        }
    }
    Ok(())
}

/// A transaction Bundle in one store transaction: every entry's outcome, or the first error
/// (then nothing was written).
async fn run_transaction(
    app: &App,
    store: &Guarded,
    caller: Option<&Caller>,
    body: &Value,
    base: &str,
) -> Result<Vec<Slot>, FhirError> {
    let entries = parse_entries(app, body, base, 0)?;
    let results = plan_and_run(app, store, caller, entries).await?;
    Ok(results.into_iter().map(|(_, o)| Slot::Done(o)).collect())
}

/// Plans `entries` (before taking the write lock), then runs them in one transaction and
/// commits it.
/// `caller` is `None` for `hearth import` (the system's access).
async fn plan_and_run(
    app: &App,
    store: &Guarded,
    caller: Option<&Caller>,
    entries: Vec<Entry>,
) -> Result<Vec<(usize, Outcome)>, FhirError> {
    let mut ids = Ids::new();
    let mut plan = plan(app, store, &entries, &mut ids).await;
    let results = match caller {
        Some(caller) => {
            let mut tx = super::interactions::begin(store).await?;
            let results = run(app, &mut tx, entries, &mut ids, &mut plan).await?;
            super::interactions::commit(app, caller, tx).await?;
            results
        }
        // `hearth import`: historical Appointments claim no time (docs/ARCHITECTURE.md).
        None => {
            let mut tx = store.begin().await?;
            let results = run(app, &mut tx, entries, &mut ids, &mut plan).await?;
            tx.commit().await?;
            results
        }
    };
    Ok(results)
}

/// A batch Bundle: each entry in its own transaction, failures per entry.
async fn run_batch(app: &App, store: &Guarded, caller: Option<&Caller>, body: &Value, base: &str) -> Vec<Slot> {
    let items = body.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
    let mut slots = Vec::with_capacity(items);
    for index in 0..items {
        // Parse each entry on its own so one bad entry does not sink the batch.
        let single = body
            .get("entry")
            .and_then(|e| e.get(index))
            .map(|e| serde_json::json!({"resourceType": "Bundle", "type": "batch", "entry": [e]}));
        let outcome = async {
            let single = single.ok_or_else(|| FhirError::internal("entry vanished"))?;
            let entries = parse_entries(app, &single, base, index)?;
            let mut results = plan_and_run(app, store, caller, entries).await?;
            results.pop().map(|(_, o)| o).ok_or_else(|| FhirError::internal("no result"))
        }
        .await;
        slots.push(match outcome {
            Ok(o) => Slot::Done(o),
            Err(e) => Slot::Failed(e),
        });
    }
    slots
}

/// What one entry of an imported Bundle did.
#[derive(Debug)]
pub enum EntryResult {
    Created,
    Updated,
    /// A conditional create matched an existing resource; nothing was written.
    Existing,
    Failed(FhirError),
}

/// Loads a Bundle without HTTP (`hearth import` on the database itself, an operator's act: it
/// runs with the system's access): a `transaction` as one transaction (all or
/// nothing), a `batch` entry by entry, a `collection` entry by entry as update-as-create (with
/// its id) or create. Answers one result per entry, or the error that refused a transaction.
pub async fn import_bundle(app: &Arc<App>, body: &Value, base: &str) -> Result<Vec<EntryResult>, FhirError> {
    let kind = body.get("type").and_then(Value::as_str);
    let converted;
    let body = if kind == Some("collection") {
        let entries: Vec<Value> = body
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                let resource = e.get("resource").cloned().unwrap_or(Value::Null);
                let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
                let request = match resource.get("id").and_then(Value::as_str) {
                    Some(id) => serde_json::json!({"method": "PUT", "url": format!("{ty}/{id}")}),
                    None => serde_json::json!({"method": "POST", "url": ty}),
                };
                let mut entry = serde_json::json!({"resource": resource, "request": request});
                if let (Some(full), Some(map)) = (e.get("fullUrl"), entry.as_object_mut()) {
                    map.insert("fullUrl".into(), full.clone());
                }
                entry
            })
            .collect();
        converted = serde_json::json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
        &converted
    } else {
        body
    };
    let slots = match body.get("type").and_then(Value::as_str) {
        Some("transaction") => {
            validate(app, "Bundle", body)?;
            run_transaction(app, &app.system(), None, body, base).await?
        }
        Some("batch") => run_batch(app, &app.system(), None, body, base).await,
        _ => {
            return Err(FhirError::bad_request(
                "invalid",
                "only transaction, batch and collection Bundles can be imported",
            ));
        }
    };
    let method = |i: usize| {
        body.get("entry")
            .and_then(|e| e.get(i))
            .and_then(|e| e.pointer("/request/method"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let touched_parameters = slots.iter().any(
        |s| matches!(s, Slot::Done(o) if o.version.as_ref().is_some_and(|v| v.resource_type == "SearchParameter")),
    );
    let results = slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| match slot {
            Slot::Failed(e) => EntryResult::Failed(e),
            Slot::Done(o) if o.status == StatusCode::CREATED => EntryResult::Created,
            Slot::Done(_) if method(i) == "POST" => EntryResult::Existing,
            Slot::Done(_) => EntryResult::Updated,
        })
        .collect();
    if touched_parameters {
        super::interactions::after_write(app, "SearchParameter").await?;
    }
    Ok(results)
}

/// Loads one resource without HTTP (`hearth import` of an NDJSON line): update-as-create when it
/// has an id, create otherwise, in its own transaction.
pub async fn import_resource(app: &Arc<App>, resource: Value) -> Result<EntryResult, FhirError> {
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| FhirError::bad_request("required", "the resource has no resourceType"))?
        .to_owned();
    check_type(app, &ty)?;
    validate(app, &ty, &resource)?;
    let now = app.clock.now();
    let mut tx = app.system().begin().await?;
    let result = match resource.get("id").and_then(Value::as_str).map(str::to_owned) {
        Some(id) => {
            check_id(&id)?;
            let w = ix::update(&mut tx, write_of(app, &ty, id, resource), None, now).await?;
            if w.created { EntryResult::Created } else { EntryResult::Updated }
        }
        None => {
            ix::create(&mut tx, write_of(app, &ty, new_id(), resource), now).await?;
            EntryResult::Created
        }
    };
    tx.commit().await?;
    super::interactions::after_write(app, &ty).await?;
    Ok(result)
}

//! FHIR search over HTTP: type, system and compartment searches (GET and `POST _search`), the
//! searchset Bundle, and the criteria of conditional interactions.
//!
//! The query language is parsed by `hearth-search` against the live registry (the official R4
//! parameters plus SearchParameter resources stored on this server); the store compiles and runs
//! it. What needs data the parser does not have is resolved here first, over the store:
//! `:in`/`:not-in` (ValueSets stored on the server), token `:above`/`:below` (CodeSystem
//! hierarchies stored on the server), reference `:above`/`:below` (following the same
//! reference parameter up or down), and absolute references to this server's own base URL.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_search::{
    Clause, Handling as ParseHandling, ReferenceValue, SearchQuery, Summary, Test, TokenSystem, TokenValue, Total,
};
use hearth_store::{Compartment, Guarded, SearchPage, SearchRequest, Version};
use serde_json::{Map, Value, json};

use super::http::{Handling, Prefer, base_url, negotiate};
use super::http::{check_id, check_type};
use super::query;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{FHIR_JSON, FhirError, Issue};

/// Most codes a `:in`, `:below` or `:above` may expand to before the search is refused.
const MAX_EXPANSION: usize = 10_000;
/// Most levels a reference `:above`/`:below` follows.
const MAX_HIERARCHY_DEPTH: usize = 32;

/// Parameters of ours, outside the FHIR query language: the page cursor and output format.
fn split_own(pairs: Vec<(String, String)>) -> (Vec<(String, String)>, Option<String>, Option<String>) {
    let mut cursor = None;
    let mut format = None;
    let mut rest = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match k.as_str() {
            "_cursor" => cursor = Some(v),
            "_format" => format = Some(v),
            "_pretty" => {}
            _ => rest.push((k, v)),
        }
    }
    (rest, cursor, format)
}

fn search_error(e: hearth_search::SearchError) -> FhirError {
    let code = match e.kind {
        k if k.ignorable() => "not-supported",
        hearth_search::SearchErrorKind::TooCostly => "too-costly",
        _ => "invalid",
    };
    let issue = Issue::error(code, e.to_string());
    let issue = if e.param.is_empty() { issue } else { issue.at(e.param.clone()) };
    FhirError::new(StatusCode::BAD_REQUEST, issue)
}

/// The criteria of a conditional interaction (`If-None-Exist`, conditional update/delete, a
/// conditional reference in a Bundle): strict (an unknown or unsupported parameter is `400`,
/// never a broader match), at least one filter, resolved like a search.
pub async fn criteria(app: &App, resource_type: &str, pairs: &[(String, String)]) -> Result<SearchQuery, FhirError> {
    let (pairs, _, _) = split_own(pairs.to_vec());
    let registry = app.registry();
    let mut q = registry.parse_query(&[resource_type], &pairs, ParseHandling::Strict).map_err(search_error)?;
    if q.clauses.is_empty() {
        return Err(FhirError::bad_request("invalid", "conditional interactions need at least one search criterion"));
    }
    resolve(app, None, &mut q).await?;
    Ok(q)
}

/// Where a search runs.
enum Scope {
    Type(String),
    System,
    Compartment { owner_type: String, owner_id: String, target: Option<String> },
}

pub async fn search_type(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    run(&app, &store, &headers, Scope::Type(resource_type), query::pairs(q.as_deref())).await
}

pub async fn search_type_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &resource_type)?;
    let pairs = form_pairs(&headers, q.as_deref(), &body)?;
    run(&app, &store, &headers, Scope::Type(resource_type), pairs).await
}

pub async fn search_system(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    run(&app, &store, &headers, Scope::System, query::pairs(q.as_deref())).await
}

pub async fn search_system_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    let pairs = form_pairs(&headers, q.as_deref(), &body)?;
    run(&app, &store, &headers, Scope::System, pairs).await
}

pub async fn search_compartment(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((owner_type, owner_id, target)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let store = app.store_for(&caller);
    check_type(&app, &owner_type)?;
    check_id(&owner_id)?;
    let target = if target == "*" {
        None
    } else {
        check_type(&app, &target)?;
        Some(target)
    };
    run(&app, &store, &headers, Scope::Compartment { owner_type, owner_id, target }, query::pairs(q.as_deref())).await
}

/// `POST _search`: parameters from the form body (`application/x-www-form-urlencoded`) and the
/// query string together.
fn form_pairs(headers: &HeaderMap, raw_query: Option<&str>, body: &Bytes) -> Result<Vec<(String, String)>, FhirError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !body.is_empty() && !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Issue::error("not-supported", "POST _search takes an application/x-www-form-urlencoded body"),
        ));
    }
    let mut pairs = query::pairs(raw_query);
    pairs.extend(form_urlencoded::parse(body).into_owned());
    Ok(pairs)
}

async fn run(
    app: &App,
    store: &Guarded,
    headers: &HeaderMap,
    scope: Scope,
    pairs: Vec<(String, String)>,
) -> Result<Response, FhirError> {
    let (pairs, cursor, format) = split_own(pairs);
    negotiate(headers, format.as_deref())?;
    let prefer = Prefer::from_headers(headers);
    let handling = match prefer.handling {
        Handling::Lenient => ParseHandling::Lenient,
        Handling::Strict => ParseHandling::Strict,
    };
    let base = base_url(app, headers);
    let registry = app.registry();

    let (types, compartment, path): (Vec<String>, Option<Compartment>, String) = match &scope {
        Scope::Type(t) => (vec![t.clone()], None, format!("{base}/{t}")),
        Scope::System => (Vec::new(), None, base.clone()),
        Scope::Compartment { owner_type, owner_id, target } => {
            let members = app.compartments.members(owner_type).ok_or_else(|| {
                FhirError::bad_request("not-supported", format!("no compartment is defined for {owner_type}"))
            })?;
            let params: Vec<(String, Vec<String>)> = members
                .iter()
                .filter(|(ty, _)| target.as_ref().is_none_or(|t| t == ty))
                .map(|(ty, ps)| (ty.clone(), ps.clone()))
                .collect();
            let types = match target {
                Some(t) => vec![t.clone()],
                None => params.iter().map(|(t, _)| t.clone()).collect(),
            };
            let c = Compartment { owner_type: owner_type.clone(), owner_id: owner_id.clone(), params };
            let path = format!("{base}/{owner_type}/{owner_id}/{}", target.as_deref().unwrap_or("*"));
            (types, Some(c), path)
        }
    };
    let type_refs: Vec<&str> = types.iter().map(String::as_str).collect();
    let mut query = registry.parse_query(&type_refs, &pairs, handling).map_err(search_error)?;
    if let Scope::Compartment { target: None, .. } = scope {
        // `Patient/x/*`: every member type, even when `_type` narrows it.
        if query.type_filter.is_empty() {
            query.type_filter = types.clone();
        }
    }
    resolve(app, Some(&base), &mut query).await?;

    let count_total = match (query.summary, query.total) {
        (Some(Summary::Count), _) => true,
        (_, Some(Total::None)) => false,
        _ => true,
    };
    if query.summary == Some(Summary::Count) {
        query.count = 0;
    }
    let request =
        SearchRequest { query, access: store.access().clone(), compartment, cursor: cursor.clone(), count_total };
    let page = store.search(request.clone()).await?;
    let bundle = searchset(app, &request.query, &page, &base, &path, cursor.is_some())?;
    let mut resp = (StatusCode::OK, bundle).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    Ok(resp)
}

/// Builds the searchset Bundle text. Stored bodies are copied in as they are unless
/// `_summary`/`_elements` shape them.
fn searchset(
    app: &App,
    query: &SearchQuery,
    page: &SearchPage,
    base: &str,
    path: &str,
    paged: bool,
) -> Result<String, FhirError> {
    let qs = query.to_query_string();
    let link = |cursor: Option<&str>| match cursor {
        Some(c) => format!("{path}?{qs}&_cursor={c}"),
        None => format!("{path}?{qs}"),
    };
    let mut links = vec![json!({"relation": "self", "url": link(None)})];
    if paged {
        links.push(json!({"relation": "first", "url": link(None)}));
    }
    if let Some(prev) = &page.previous {
        links.push(json!({"relation": "previous", "url": link(Some(prev))}));
    }
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": link(Some(next))}));
    }
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    if !query.ignored.is_empty() {
        notes.push(format!("ignored parameters: {}", query.ignored.join(", ")));
    }
    if page.includes_truncated {
        notes.push("included resources were cut at the include limit".to_owned());
    }
    if !notes.is_empty() {
        let outcome = crate::error::operation_outcome(
            &notes
                .into_iter()
                .map(|n| Issue { severity: "warning", ..Issue::error("informational", n) })
                .collect::<Vec<_>>(),
        );
        entries.push(format!(r#"{{"resource":{outcome},"search":{{"mode":"outcome"}}}}"#));
    }
    for (mode, versions) in [("match", &page.matches), ("include", &page.included)] {
        for v in versions {
            entries.push(entry(app, query, v, base, mode)?);
        }
    }
    Ok(searchset_text(app, page.total, links, &entries))
}

/// A searchset Bundle's text: the head (id, meta, total, links) serialised once, and the entries,
/// already JSON, appended as they are (stored bodies are never re-parsed).
pub(super) fn searchset_text(app: &App, total: Option<u64>, links: Vec<Value>, entries: &[String]) -> String {
    let mut head = Map::new();
    head.insert("resourceType".into(), json!("Bundle"));
    head.insert("id".into(), json!(uuid::Uuid::now_v7().to_string()));
    head.insert(
        "meta".into(),
        json!({"lastUpdated": app.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
    );
    head.insert("type".into(), json!("searchset"));
    if let Some(total) = total {
        head.insert("total".into(), json!(total));
    }
    head.insert("link".into(), Value::Array(links));
    let mut out = Value::Object(head).to_string();
    out.pop();
    // FHIR JSON forbids empty arrays: an empty page has no `entry` at all.
    if !entries.is_empty() {
        out.push_str(r#","entry":["#);
        out.push_str(&entries.join(","));
        out.push(']');
    }
    out.push('}');
    out
}

fn entry(app: &App, query: &SearchQuery, v: &Version, base: &str, mode: &str) -> Result<String, FhirError> {
    let Some(body) = &v.body else { return Err(FhirError::internal("search returned a deleted resource")) };
    let full_url = format!("{base}/{}/{}", v.resource_type, v.id);
    let resource = if mode == "match" && (query.summary.is_some() || !query.elements.is_empty()) {
        let value: Value = serde_json::from_str(body).map_err(FhirError::internal)?;
        shape(app, value, query.summary, &query.elements).to_string()
    } else {
        body.to_string()
    };
    Ok(format!(r#"{{"fullUrl":{},"resource":{resource},"search":{{"mode":"{mode}"}}}}"#, Value::String(full_url)))
}

/// `_summary` and `_elements` on one resource (top-level elements), marked SUBSETTED.
fn shape(app: &App, value: Value, summary: Option<Summary>, elements: &[String]) -> Value {
    let Value::Object(map) = value else { return value };
    let ty = map.get("resourceType").and_then(Value::as_str).unwrap_or("").to_owned();
    let keep = |k: &str| -> bool {
        if matches!(k, "resourceType" | "id" | "meta") {
            return true;
        }
        let child = app.model.child(&ty, k);
        let mandatory = child.as_ref().is_some_and(|c| c.element.min() > 0);
        if !elements.is_empty() {
            return mandatory || elements.iter().any(|e| e == k);
        }
        match summary {
            Some(Summary::True) => child.as_ref().is_some_and(|c| c.element.is_summary()),
            Some(Summary::Text) => k == "text" || mandatory,
            Some(Summary::Data) => k != "text",
            _ => true,
        }
    };
    if matches!(summary, None | Some(Summary::False)) && elements.is_empty() {
        return Value::Object(map);
    }
    let before = map.len();
    let mut out: Map<String, Value> = map.into_iter().filter(|(k, _)| keep(k)).collect();
    if out.len() == before {
        return Value::Object(out);
    }
    let meta = out.entry("meta").or_insert_with(|| json!({}));
    if let Value::Object(meta) = meta {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Value::Array(tags) = tags {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "subsetted"
            }));
        }
    }
    Value::Object(out)
}

/// Resolves what the parser leaves to the server (see the module docs), in place.
async fn resolve(app: &App, base: Option<&str>, query: &mut SearchQuery) -> Result<(), FhirError> {
    let base = base.map(|b| format!("{b}/"));
    let types = query.resource_types.clone();
    for clause in &mut query.clauses {
        resolve_clause(app, base.as_deref(), &types, clause).await?;
    }
    Ok(())
}

async fn resolve_clause(app: &App, base: Option<&str>, types: &[String], clause: &mut Clause) -> Result<(), FhirError> {
    // References written as absolute URLs to this server are local references.
    if let (Some(base), Test::Reference { values, .. } | Test::ReferenceAbove(values) | Test::ReferenceBelow(values)) =
        (base, &mut clause.test)
    {
        for v in values.iter_mut() {
            if let ReferenceValue::Url { url, version } = v
                && let Some(rest) = url.strip_prefix(base)
                && let Some((ty, id)) = rest.split_once('/')
                && !id.contains('/')
                && app.model.is_resource_type(ty)
            {
                *v = ReferenceValue::Local {
                    target_type: Some(ty.to_owned()),
                    id: id.to_owned(),
                    version: version.take(),
                };
            }
        }
    }
    let name = clause.key();
    let test = std::mem::replace(&mut clause.test, Test::Missing(false));
    clause.test = match test {
        Test::In(urls) => Test::Token(expand_value_sets(app, &name, &urls).await?),
        Test::NotIn(urls) => Test::NotToken(expand_value_sets(app, &name, &urls).await?),
        Test::TokenBelow(values) => Test::Token(subsumption(app, &name, &values, true).await?),
        Test::TokenAbove(values) => Test::Token(subsumption(app, &name, &values, false).await?),
        Test::ReferenceBelow(values) if clause.path.is_empty() => {
            hierarchy(app, types, &name, &clause.param, values, true).await?
        }
        Test::ReferenceAbove(values) if clause.path.is_empty() => {
            hierarchy(app, types, &name, &clause.param, values, false).await?
        }
        other => other,
    };
    Ok(())
}

/// A stored resource found by its canonical `url`.
async fn by_url(app: &App, resource_type: &str, url: &str) -> Result<Option<Value>, FhirError> {
    let registry = app.registry();
    let q = registry
        .parse_query(&[resource_type], &[("url".to_owned(), hearth_search::escape(url))], ParseHandling::Strict)
        .map_err(search_error)?;
    let found = app.system().find(&q, 1).await?;
    match found.into_iter().next().and_then(|v| v.body) {
        Some(body) => Ok(Some(serde_json::from_str(&body).map_err(FhirError::internal)?)),
        None => Ok(None),
    }
}

fn too_many(name: &str) -> FhirError {
    FhirError::bad_request("too-costly", format!("`{name}` expands to more than {MAX_EXPANSION} codes"))
}

/// The codes of stored ValueSets: `expansion.contains` (nested), else `compose.include` concepts
/// (or whole code systems), minus `compose.exclude` concepts.
async fn expand_value_sets(app: &App, name: &str, urls: &[String]) -> Result<Vec<TokenValue>, FhirError> {
    let mut out = BTreeSet::new();
    for url in urls {
        let vs = by_url(app, "ValueSet", url).await?.ok_or_else(|| {
            FhirError::bad_request(
                "not-found",
                format!("`{name}`: no ValueSet with url {url} is stored on this server"),
            )
        })?;
        if let Some(contains) = vs.pointer("/expansion/contains").and_then(Value::as_array) {
            collect_contains(contains, &mut out);
        } else {
            let mut excluded = BTreeSet::new();
            for (key, set) in [("include", &mut out), ("exclude", &mut excluded)] {
                for inc in vs.pointer(&format!("/compose/{key}")).and_then(Value::as_array).into_iter().flatten() {
                    let system = inc.get("system").and_then(Value::as_str).map(str::to_owned);
                    match inc.get("concept").and_then(Value::as_array) {
                        Some(concepts) => {
                            for c in concepts {
                                if let Some(code) = c.get("code").and_then(Value::as_str) {
                                    set.insert((system.clone(), Some(code.to_owned())));
                                }
                            }
                        }
                        None if key == "include" => {
                            if let Some(s) = system {
                                set.insert((Some(s), None));
                            }
                        }
                        None => {}
                    }
                }
            }
            out.retain(|c| !excluded.contains(c));
        }
        if out.len() > MAX_EXPANSION {
            return Err(too_many(name));
        }
    }
    Ok(out
        .into_iter()
        .map(|(system, code)| TokenValue { system: system.map_or(TokenSystem::Any, TokenSystem::Is), code })
        .collect())
}

fn collect_contains(items: &[Value], out: &mut BTreeSet<(Option<String>, Option<String>)>) {
    for c in items {
        if let Some(code) = c.get("code").and_then(Value::as_str) {
            out.insert((c.get("system").and_then(Value::as_str).map(str::to_owned), Some(code.to_owned())));
        }
        if let Some(nested) = c.get("contains").and_then(Value::as_array) {
            collect_contains(nested, out);
        }
    }
}

/// Token `:below` (the code and its descendants) and `:above` (the code and its ancestors) in a
/// CodeSystem stored on this server, following `concept.concept` nesting.
async fn subsumption(app: &App, name: &str, values: &[TokenValue], below: bool) -> Result<Vec<TokenValue>, FhirError> {
    let mut out = Vec::new();
    for v in values {
        let (TokenSystem::Is(system), Some(code)) = (&v.system, &v.code) else {
            return Err(FhirError::bad_request(
                "invalid",
                format!("`{name}` needs a value of the form system|code (the code system decides subsumption)"),
            ));
        };
        let cs = by_url(app, "CodeSystem", system).await?.ok_or_else(|| {
            FhirError::bad_request(
                "not-supported",
                format!("`{name}`: no CodeSystem {system} is stored on this server, so subsumption is unknown"),
            )
        })?;
        // parent of each code, from the nesting
        let mut parent: HashMap<String, Option<String>> = HashMap::new();
        fn walk(concepts: &[Value], up: Option<&str>, parent: &mut HashMap<String, Option<String>>) {
            for c in concepts {
                if let Some(code) = c.get("code").and_then(Value::as_str) {
                    parent.insert(code.to_owned(), up.map(str::to_owned));
                    if let Some(kids) = c.get("concept").and_then(Value::as_array) {
                        walk(kids, Some(code), parent);
                    }
                }
            }
        }
        walk(cs.get("concept").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]), None, &mut parent);
        let codes: Vec<String> = if below {
            parent
                .keys()
                .filter(|c| {
                    let mut cur = Some((*c).clone());
                    let mut steps = 0;
                    while let Some(x) = cur {
                        if &x == code {
                            return true;
                        }
                        steps += 1;
                        if steps > parent.len() {
                            break;
                        }
                        cur = parent.get(&x).cloned().flatten();
                    }
                    false
                })
                .cloned()
                .collect()
        } else {
            let mut chain = vec![code.clone()];
            let mut cur = parent.get(code).cloned().flatten();
            while let Some(x) = cur {
                if chain.contains(&x) || chain.len() > parent.len() {
                    break;
                }
                cur = parent.get(&x).cloned().flatten();
                chain.push(x);
            }
            chain
        };
        if codes.is_empty() {
            out.push(v.clone());
        }
        out.extend(codes.into_iter().map(|c| TokenValue { system: TokenSystem::Is(system.clone()), code: Some(c) }));
        if out.len() > MAX_EXPANSION {
            return Err(too_many(name));
        }
    }
    Ok(out)
}

/// Reference `:below` / `:above` on a hierarchical reference parameter (e.g. `Location.partof`):
/// the value plus its descendants (resources pointing at it through the same parameter, level by
/// level) or its ancestors (what it points at through that parameter), as a plain reference test.
///
/// `name` is the parameter as written (taken before the clause's test was moved out of it).
async fn hierarchy(
    app: &App,
    types: &[String],
    name: &str,
    param: &str,
    values: Vec<ReferenceValue>,
    below: bool,
) -> Result<Test, FhirError> {
    let [ty] = types else {
        return Err(FhirError::bad_request("not-supported", format!("`{name}` needs a type-level search")));
    };
    let registry = app.registry();
    let mut found: BTreeSet<String> = BTreeSet::new();
    for v in &values {
        match v {
            ReferenceValue::Local { target_type, id, .. } if target_type.as_ref().is_none_or(|t| t == ty) => {
                found.insert(id.clone());
            }
            _ => {
                return Err(FhirError::bad_request(
                    "invalid",
                    format!("`{name}` takes references to {ty} resources on this server"),
                ));
            }
        }
    }
    let mut frontier: Vec<String> = found.iter().cloned().collect();
    for _ in 0..MAX_HIERARCHY_DEPTH {
        if frontier.is_empty() {
            break;
        }
        let mut next = Vec::new();
        if below {
            // In lists a search takes (hearth_search::MAX_VALUES); the frontier may be longer.
            for chunk in frontier.chunks(hearth_search::MAX_VALUES) {
                let value = chunk.iter().map(|id| format!("{ty}/{}", hearth_search::escape(id))).collect::<Vec<_>>();
                let q = registry
                    .parse_query(&[ty.as_str()], &[(param.to_owned(), value.join(","))], ParseHandling::Strict)
                    .map_err(search_error)?;
                for v in app.system().find(&q, MAX_EXPANSION as u32 + 1).await? {
                    next.push(v.id);
                }
            }
        } else {
            for id in &frontier {
                let hearth_store::Current::Found(v) = app.system().read(ty, id).await? else { continue };
                let Some(body) = v.body else { continue };
                let resource: Value = serde_json::from_str(&body).map_err(FhirError::internal)?;
                for e in registry.index(&resource) {
                    if e.param == param
                        && let hearth_search::IndexValue::Reference { target_type, target_id: Some(t), .. } = e.value
                        && target_type.as_ref().is_none_or(|x| x == ty)
                    {
                        next.push(t);
                    }
                }
            }
        }
        frontier = next.into_iter().filter(|id| found.insert(id.clone())).collect();
        if found.len() > MAX_EXPANSION {
            return Err(too_many(name));
        }
    }
    Ok(Test::Reference {
        type_modifier: None,
        values: found
            .into_iter()
            .map(|id| ReferenceValue::Local { target_type: Some(ty.clone()), id, version: None })
            .collect(),
    })
}

/// The database's plan for a type-level search written as in a URL after the base
/// (`Observation?patient=123&code=http://loinc.org|8867-4`), run as the system: what
/// `hearth admin explain-search` prints.
pub async fn explain(app: &App, search: &str) -> Result<Vec<String>, String> {
    let (resource_type, raw) = search.split_once('?').unwrap_or((search, ""));
    let fail = |e: FhirError| e.issues.iter().map(|i| i.diagnostics.clone()).collect::<Vec<_>>().join("; ");
    check_type(app, resource_type).map_err(fail)?;
    let (pairs, _, _) = split_own(query::pairs(Some(raw)));
    let registry = app.registry();
    let mut query =
        registry.parse_query(&[resource_type], &pairs, ParseHandling::Strict).map_err(|e| fail(search_error(e)))?;
    resolve(app, None, &mut query).await.map_err(fail)?;
    let request = SearchRequest {
        query,
        access: hearth_store::Access::system(),
        compartment: None,
        cursor: None,
        count_total: false,
    };
    app.store.explain_search(&request).await.map_err(|e| fail(e.into()))
}

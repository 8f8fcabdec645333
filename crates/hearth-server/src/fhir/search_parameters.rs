//! SearchParameter resources stored on the server, and `$reindex`.
//!
//! A SearchParameter written through the API is checked (it must compile and not clash with an
//! existing code) before the write, and after the write commits the registry is rebuilt from the
//! R4 parameters plus every stored SearchParameter, and the resources of its base types are
//! reindexed in the background, so the parameter finds existing data too. `$reindex` (system or
//! type level) runs the same job on request; `GET /fhir/$reindex/{job}` reports its progress.
//!
//! With several processes on one PostgreSQL database, another process picks up a new parameter
//! when it restarts (documented in docs/POSTGRES.md); the index rows themselves are shared.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_search::{Handling, Registry};
use hearth_store::{SearchRequest, StoreError};
use serde_json::{Value, json};

use super::http::base_url;
use super::http::check_type;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{FhirError, Issue, fhir_json};
use crate::jobs::{Job, Status};

const BATCH: u32 = 500;
/// At most this many index rows written in one reindex transaction (a resource's rows are never split).
const ROWS_PER_TX: usize = 5_000;

/// Checks a SearchParameter about to be written: it must be one the registry can honour.
pub fn check(app: &App, resource: &Value) -> Result<(), FhirError> {
    let mut registry = (*app.registry()).clone();
    registry.add(resource).map_err(|e| FhirError::bad_request("invalid", format!("SearchParameter: {e}")))
}

/// After a SearchParameter write committed: rebuild the registry from the stored parameters and
/// reindex the resource types they apply to.
pub async fn changed(app: &Arc<App>) -> Result<(), FhirError> {
    let mut registry = Registry::r4(&app.model).map_err(FhirError::internal)?;
    let stored = super::registry::stored(&*app.store).await?;
    let mut types = Vec::new();
    for sp in &stored {
        if registry.add(sp).is_ok() {
            for base in sp.get("base").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if app.model.is_resource_type(base) && !types.iter().any(|t| t == base) {
                    types.push(base.to_owned());
                }
            }
        }
    }
    app.set_registry(registry);
    if !types.is_empty() {
        start(app, Some(types)).await?;
    }
    Ok(())
}

/// Starts a reindex job of `types` (every type when `None`) and returns it.
async fn start(app: &Arc<App>, types: Option<Vec<String>>) -> Result<Arc<Job>, FhirError> {
    let registry = app.registry();
    let refs: Vec<&str> = types.iter().flatten().map(String::as_str).collect();
    let query = registry
        .parse_query(&refs, &[("_count".into(), "0".into())], Handling::Strict)
        .map_err(|e| FhirError::bad_request("invalid", e.to_string()))?;
    let total = app
        .system()
        .search(SearchRequest {
            query,
            access: hearth_store::Access::system(),
            compartment: None,
            cursor: None,
            count_total: true,
        })
        .await?
        .total;
    let job = app.jobs.create("reindex", total, app.clock.now());
    let (app, job2) = (Arc::clone(app), Arc::clone(&job));
    tokio::spawn(async move {
        let status = match reindex(&app, types.as_deref(), &job2).await {
            Ok(()) => Status::Done,
            Err(e) => {
                tracing::error!(job = %job2.id, error = %e, "reindex failed");
                Status::Failed("the reindex stopped on a storage error; start it again".into())
            }
        };
        job2.finish(status, app.clock.now());
    });
    Ok(job)
}

/// Rewrites the index rows of every live resource of `types`, in batches. The index of a batch
/// (FHIRPath over every parameter: the costly part) is worked out on a blocking thread before
/// its write transaction, so the single writer is held only to write rows; a transaction holds
/// at most [`ROWS_PER_TX`] index rows, and the job yields between them, so ordinary writes, the
/// outbox worker and the export claimer get the database in between (issue 26: a resource with
/// very many elements used to hold it for seconds). A resource written meanwhile keeps the rows
/// its own write made (`reindex` changes nothing when the version moved on).
async fn reindex(app: &App, types: Option<&[String]>, job: &Job) -> Result<(), StoreError> {
    let mut after = 0;
    loop {
        let batch = app.store.scan(types, after, BATCH).await?;
        let Some((last, _)) = batch.last() else { return Ok(()) };
        after = *last;
        let n = batch.len() as u64;
        let registry = app.registry();
        let indexed = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .filter_map(|(_, v)| {
                    let resource = serde_json::from_str::<Value>(v.body.as_deref()?).ok()?;
                    let entries = registry.index(&resource);
                    Some((v.resource_type, v.id, v.version_id, entries))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?;
        let mut pending = indexed.into_iter().peekable();
        while pending.peek().is_some() {
            let mut tx = app.store.begin().await?;
            let mut rows = 0;
            while rows < ROWS_PER_TX
                && let Some((ty, id, version, entries)) = pending.next()
            {
                rows += entries.len().max(1);
                tx.reindex(&ty, &id, version, &entries).await?;
            }
            tx.commit().await?;
            tokio::task::yield_now().await;
        }
        job.add_processed(n);
    }
}

fn kicked_off(app: &App, headers: &HeaderMap, job: &Job) -> Response {
    let url = format!("{}/$reindex/{}", base_url(app, headers), job.id);
    let outcome = crate::error::operation_outcome(&[Issue {
        severity: "information",
        ..Issue::error("informational", "reindex started; poll the Content-Location URL for progress")
    }]);
    let mut resp = fhir_json(StatusCode::ACCEPTED, &outcome);
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    resp
}

/// Reindexing touches every record and costs the whole server: administrators with unrestricted
/// access only (a clinician without an organisation reaches everything, but runs no server jobs).
fn require_system(caller: &Caller) -> Result<(), FhirError> {
    if caller.role == hearth_auth::Role::Admin && caller.access.is_unrestricted() {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::FORBIDDEN,
            crate::error::Issue::error("forbidden", "$reindex needs an administrator with unrestricted access"),
        ))
    }
}

/// `POST /fhir/$reindex`
pub async fn reindex_system(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    require_system(&caller)?;
    let job = start(&app, None).await?;
    Ok(kicked_off(&app, &headers, &job))
}

/// `POST /fhir/{type}/$reindex`
pub async fn reindex_type(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    require_system(&caller)?;
    check_type(&app, &resource_type)?;
    let job = start(&app, Some(vec![resource_type])).await?;
    Ok(kicked_off(&app, &headers, &job))
}

/// `GET /fhir/$reindex/{job}`: `202` with `X-Progress` while running, then `200` with a
/// Parameters summary (or `500`-free failure report).
pub async fn reindex_status(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    require_system(&caller)?;
    let job = app.jobs.get(&id).ok_or_else(|| FhirError::not_found("no such job (jobs do not outlive a restart)"))?;
    let processed = job.processed();
    let progress = match job.total {
        Some(t) => format!("{processed} of {t} resources"),
        None => format!("{processed} resources"),
    };
    let (status, state) = match job.status() {
        Status::Running => (StatusCode::ACCEPTED, "in-progress".to_owned()),
        Status::Done => (StatusCode::OK, "completed".to_owned()),
        Status::Failed(m) => (StatusCode::OK, format!("failed: {m}")),
    };
    let mut parameter = vec![
        json!({"name": "status", "valueString": state}),
        json!({"name": "processed", "valueInteger": processed}),
        json!({"name": "started", "valueInstant": job.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
    ];
    if let Some(t) = job.total {
        parameter.push(json!({"name": "total", "valueInteger": t}));
    }
    if let Some(f) = job.finished() {
        parameter
            .push(json!({"name": "finished", "valueInstant": f.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}));
    }
    let mut resp = fhir_json(status, &json!({"resourceType": "Parameters", "parameter": parameter}));
    if let Ok(v) = HeaderValue::from_str(&progress) {
        resp.headers_mut().insert("x-progress", v);
    }
    Ok(resp.into_response())
}

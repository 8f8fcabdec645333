//! `/api/v1/tracking/{kind}` and `/api/v1/meditation/sessions`: record one entry, list a
//! patient's entries newest first in a date range, a page at a time. Entries are FHIR
//! `Observation`s written and read through the caller's guarded store view.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_store::{Guarded, SearchRequest, Version, interactions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

use crate::Wellness;
use crate::catalog::Catalog;
use crate::entry::{self, EntryIn, EntryOut, Kind};

/// The most entries one page holds.
pub const MAX_PAGE: u32 = 200;
const DEFAULT_PAGE: u32 = 50;

pub(crate) fn router() -> axum::Router<Arc<Wellness>> {
    axum::Router::new()
        .route("/api/v1/tracking/{kind}", axum::routing::get(list).post(record))
        .route("/api/v1/meditation/sessions", axum::routing::get(list_meditation).post(record_meditation))
}

pub(crate) fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

pub(crate) fn catalog() -> Result<&'static Catalog, ApiError> {
    Catalog::builtin().map_err(ApiError::internal)
}

/// The patient a request is about (see `hearth_workflow::fhir::requested_patient`).
pub(crate) async fn patient_of(store: &Guarded, caller: &Caller, named: Option<&str>) -> Result<String, ApiError> {
    Ok(hearth_workflow::fhir::requested_patient(store, caller, named).await?.0)
}

pub(crate) fn body_of(v: &Version) -> Option<Value> {
    v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())
}

fn log_kind(kind: &str) -> Result<Kind, ApiError> {
    Kind::parse(kind).filter(|k| *k != Kind::Meditation).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_kind",
            "the kinds are food, water, sleep, exercise and mood (meditation: /api/v1/meditation/sessions)",
        )
    })
}

/// The resource's reference of the caller, when it is one an Observation may name as performer.
fn performer(caller: &Caller) -> Option<&str> {
    caller
        .account
        .fhir_user
        .as_deref()
        .filter(|u| ["Patient/", "Practitioner/", "RelatedPerson/"].iter().any(|p| u.starts_with(p)))
}

/// The body a stored entry and a new one are compared by (what the request said: an entry sent
/// without `effective` means "now", which is later when it is sent again).
fn comparable(v: &Value, timed: bool) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
        o.remove("meta");
        o.remove("performer");
        if !timed {
            o.remove("effectiveDateTime");
        }
    }
    v
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= 200 && !k.chars().any(char::is_control) => {
                Ok(Some(k.to_owned()))
            }
            _ => Err(bad("invalid_idempotency_key", "Idempotency-Key must be 1–200 printable characters")),
        },
    }
}

/// Records one entry (the handlers of both paths).
async fn record_kind(
    app: &Wellness,
    caller: &Caller,
    kind: Kind,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    let input: EntryIn =
        serde_json::from_slice(body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let cat = catalog()?;
    let now = app.clock.now();
    // The patient first: someone who does not reach them learns nothing from validation.
    let store = app.store_for(caller);
    let patient = patient_of(&store, caller, input.patient.as_deref()).await?;
    let checked = entry::check(cat, kind, &input, now).map_err(|r| bad(r.code, r.message))?;
    let obs = entry::observation(cat, &checked, &patient, performer(caller)).map_err(ApiError::internal)?;
    hearth_workflow::fhir::validate(app, "Observation", &obs)
        .map_err(|e| bad("invalid_resource", format!("the Observation does not validate: {}", e.describe())))?;
    // With an Idempotency-Key the id is the key's (per account and kind): sent again, it lands
    // on the entry written the first time.
    let id = match &key {
        Some(k) => {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(
                format!("{}\u{0}{}\u{0}{k}", caller.account.id, kind.as_str()).as_bytes(),
            );
            let hex = data_encoding::HEXLOWER.encode(&digest);
            format!("wl-{}", hex.get(..40).unwrap_or(&hex))
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let mut tx = store.begin().await?;
    if key.is_some()
        && let Ok(hearth_store::Current::Found(existing)) = tx.read("Observation", &id).await
    {
        drop(tx);
        let stored = body_of(&existing).ok_or_else(|| ApiError::internal("a stored entry does not parse"))?;
        let timed = input.effective.is_some() || kind == Kind::Sleep;
        if comparable(&stored, timed) != comparable(&obs, timed) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another entry",
            ));
        }
        let out =
            entry::entry_of(cat, &id, &stored).ok_or_else(|| ApiError::internal("a stored entry is unreadable"))?;
        return Ok((StatusCode::OK, [("idempotent-replayed", "true")], Json(out)).into_response());
    }
    let write = hearth_workflow::fhir::write_of(app, "Observation", id.clone(), obs);
    let version = interactions::create(&mut tx, write, now).await?;
    tx.commit().await?;
    crate::daily::enrol(app, &patient, now).await;
    let stored = body_of(&version).ok_or_else(|| ApiError::internal("a stored entry does not parse"))?;
    let out = entry::entry_of(cat, &id, &stored).ok_or_else(|| ApiError::internal("a stored entry is unreadable"))?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    patient: Option<String>,
    from: Option<String>,
    to: Option<String>,
    count: Option<u32>,
    cursor: Option<String>,
}

/// A page of entries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WellnessEntries)]
pub(crate) struct EntriesOut {
    patient: String,
    kind: Kind,
    /// Newest first.
    entries: Vec<EntryOut>,
    /// Pass as `cursor` (with the same other parameters) for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// An instant parameter: RFC 3339 or a date (its midnight UTC).
pub(crate) fn instant_param(v: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|v| {
        hearth_workflow::fhir::parse_instant(v)
            .ok_or_else(|| bad("invalid_range", format!("`{name}` must be RFC 3339 or a date")))
    })
    .transpose()
}

/// Runs one search of `resource_type` with `pairs` through `store`, one page from `cursor`.
pub(crate) async fn search_page(
    app: &Wellness,
    store: &Guarded,
    resource_type: &str,
    pairs: &[(String, String)],
    cursor: Option<String>,
) -> Result<hearth_store::SearchPage, ApiError> {
    let query = app
        .registry()
        .parse_query(&[resource_type], pairs, hearth_search::Handling::Strict)
        .map_err(|e| ApiError::internal(format!("{resource_type} search does not parse: {e:?}")))?;
    let request =
        SearchRequest { query, access: store.access().clone(), compartment: None, cursor, count_total: false };
    Ok(store.search(request).await?)
}

async fn list_kind(app: &Wellness, caller: &Caller, kind: Kind, q: ListParams) -> Result<EntriesOut, ApiError> {
    let cat = catalog()?;
    let from = instant_param(q.from.as_deref(), "from")?;
    let to = instant_param(q.to.as_deref(), "to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(bad("invalid_range", "`from` must be before `to`"));
    }
    let count = q.count.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&count) {
        return Err(bad("invalid_query", format!("`count` is 1 to {MAX_PAGE}")));
    }
    if q.cursor.as_deref().is_some_and(|c| c.is_empty() || c.len() > 1000) {
        return Err(bad("invalid_query", "not a page cursor"));
    }
    let store = app.store_for(caller);
    let patient = patient_of(&store, caller, q.patient.as_deref()).await?;
    let code = entry::code_of(cat, kind).map_err(ApiError::internal)?;
    let mut pairs = vec![
        ("subject".to_owned(), format!("Patient/{patient}")),
        ("code".to_owned(), format!("{}|{}", code.system, code.code)),
        ("_sort".to_owned(), "-date".to_owned()),
        ("_count".to_owned(), count.to_string()),
    ];
    if let Some(f) = from {
        pairs.push(("date".to_owned(), format!("ge{}", entry::instant(f))));
    }
    if let Some(t) = to {
        pairs.push(("date".to_owned(), format!("lt{}", entry::instant(t))));
    }
    let page = search_page(app, &store, "Observation", &pairs, q.cursor).await?;
    let entries = page.matches.iter().filter_map(|v| entry::entry_of(cat, &v.id, &body_of(v)?)).collect();
    Ok(EntriesOut { patient, kind, entries, next: page.next })
}

#[utoipa::path(post, path = "/api/v1/tracking/{kind}", tag = "wellness",
    params(
        ("kind" = String, Path, description = "food, water, sleep, exercise or mood"),
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the sender's choosing (1–200 characters): the same entry sent again with it is answered `200` with the entry written the first time (header `Idempotent-Replayed: true`), not written twice; the same key with another entry is refused (`422 idempotency_key_reused`)"),
    ),
    request_body(content = EntryIn, description = "One entry. Food: `description` and/or `energy_kcal`, macronutrients in g, `meal`; water: `volume_ml`; sleep: `start`, `end` and the stages in minutes; exercise: `duration_minutes`, `activity`, `energy_kcal`, `distance_m`; mood: `score` 1–5 and `tags`",
        example = json!({"start": "2027-01-13T23:00:00+05:30", "end": "2027-01-14T06:30:00+05:30", "deep_minutes": 90, "light_minutes": 250, "rem_minutes": 80, "awake_minutes": 20})),
    responses(
        (status = 201, description = "Recorded as a FHIR Observation (LOINC where it has a code, else urn:hearth:wellness; UCUM units)", body = EntryOut,
         example = json!({"id": "0190…", "kind": "water", "effective": "2027-01-14T04:00:00.000Z", "volume_ml": 250})),
        (status = 200, description = "Sent again with its Idempotency-Key: the entry written the first time", body = EntryOut),
        (status = 400, description = "Invalid entry, nothing written (stable code: invalid_body, missing_field, field_not_allowed, invalid_value, invalid_time, invalid_resource, invalid_idempotency_key, patient_required)", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_value", "message": "`volume_ml` must be 1 to 5000 mL"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not record this patient's entries (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "Unknown patient or outside the caller's reach (`not_found`), or an unknown kind (`unknown_kind`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 409, description = "The same Idempotency-Key was being recorded at the same moment (`conflict`)", body = ErrorEnvelope, example = json!({"error": {"code": "conflict", "message": "this already exists"}})),
        (status = 422, description = "The Idempotency-Key was used before for another entry (`idempotency_key_reused`)", body = ErrorEnvelope, example = json!({"error": {"code": "idempotency_key_reused", "message": "this Idempotency-Key was used for another entry"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn record(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let kind = log_kind(&kind)?;
    record_kind(&app, &caller, kind, &headers, &body).await
}

#[utoipa::path(get, path = "/api/v1/tracking/{kind}", tag = "wellness",
    params(
        ("kind" = String, Path, description = "food, water, sleep, exercise or mood"),
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("from" = Option<String>, Query, description = "Entries at or after (RFC 3339 or a date)"),
        ("to" = Option<String>, Query, description = "Entries before (RFC 3339 or a date)"),
        ("count" = Option<u32>, Query, description = "Entries per page, 1 to 200 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next` of the page before"),
    ),
    responses(
        (status = 200, description = "A page of entries, newest first", body = EntriesOut,
         example = json!({"patient": "0190…", "kind": "water", "entries": [{"id": "0190…", "kind": "water", "effective": "2027-01-14T04:00:00.000Z", "volume_ml": 250}], "next": "…"})),
        (status = 400, description = "Bad parameters (stable code: invalid_query, invalid_range, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_range", "message": "`from` must be before `to`"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient or outside the caller's reach (`not_found`), or an unknown kind (`unknown_kind`)", body = ErrorEnvelope, example = json!({"error": {"code": "unknown_kind", "message": "the kinds are food, water, sleep, exercise and mood"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    Path(kind): Path<String>,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EntriesOut>, ApiError> {
    let kind = log_kind(&kind)?;
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    Ok(Json(list_kind(&app, &caller, kind, q).await?))
}

#[utoipa::path(post, path = "/api/v1/meditation/sessions", tag = "wellness",
    params(("Idempotency-Key" = Option<String>, Header, description = "As for `/api/v1/tracking/{kind}`")),
    request_body(content = EntryIn, description = "A session: `duration_minutes` (required), `technique`, `effective` (its end)",
        example = json!({"duration_minutes": 15, "technique": "breathing", "effective": "2027-01-14T06:45:00+05:30"})),
    responses(
        (status = 201, description = "Recorded as a FHIR Observation (urn:hearth:wellness#meditation, minutes)", body = EntryOut,
         example = json!({"id": "0190…", "kind": "meditation", "effective": "2027-01-14T01:15:00.000Z", "duration_minutes": 15, "technique": "breathing"})),
        (status = 200, description = "Sent again with its Idempotency-Key: the session written the first time", body = EntryOut),
        (status = 400, description = "Invalid session, nothing written (stable code: invalid_body, missing_field, field_not_allowed, invalid_value, invalid_time, invalid_resource, invalid_idempotency_key, patient_required)", body = ErrorEnvelope,
         example = json!({"error": {"code": "missing_field", "message": "a meditation entry needs `duration_minutes`"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not record this patient's sessions (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "Unknown patient or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 409, description = "The same Idempotency-Key was being recorded at the same moment (`conflict`)", body = ErrorEnvelope, example = json!({"error": {"code": "conflict", "message": "this already exists"}})),
        (status = 422, description = "The Idempotency-Key was used before for another session (`idempotency_key_reused`)", body = ErrorEnvelope, example = json!({"error": {"code": "idempotency_key_reused", "message": "this Idempotency-Key was used for another entry"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn record_meditation(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    record_kind(&app, &caller, Kind::Meditation, &headers, &body).await
}

#[utoipa::path(get, path = "/api/v1/meditation/sessions", tag = "wellness",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("from" = Option<String>, Query, description = "Sessions at or after (RFC 3339 or a date)"),
        ("to" = Option<String>, Query, description = "Sessions before (RFC 3339 or a date)"),
        ("count" = Option<u32>, Query, description = "Sessions per page, 1 to 200 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next` of the page before"),
    ),
    responses(
        (status = 200, description = "A page of sessions, newest first", body = EntriesOut),
        (status = 400, description = "Bad parameters (stable code: invalid_query, invalid_range, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "`count` is 1 to 200"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list_meditation(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EntriesOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    Ok(Json(list_kind(&app, &caller, Kind::Meditation, q).await?))
}

//! `/api/v1/health`: record vitals (one or a batch), the latest reading per kind, a history
//! (raw or aggregated). Every read and write goes through the caller's guarded store view, so
//! who may see or record a patient's readings is the store's access rule (the patient, their
//! caregivers, staff within reach), and every touch is on the request's audit slip.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use hearth_store::{Current, Guarded, Version, interactions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

use crate::Selfcare;
use crate::vitals::{Bucket, Catalog, DeviceIn, LOINC, ReadingIn, Resolution, aggregate, instant};

/// Most readings in one batch.
pub const MAX_BATCH: usize = 1000;
/// Most raw readings a history reads before it asks for a narrower range.
pub const MAX_HISTORY: usize = 50_000;
/// The longest history range, in days.
pub const MAX_RANGE_DAYS: i64 = 400;

pub(crate) fn router() -> axum::Router<Arc<Selfcare>> {
    axum::Router::new()
        .route("/api/v1/health", axum::routing::get(latest))
        .route("/api/v1/health/vitals", axum::routing::post(record))
        .route("/api/v1/health/history", axum::routing::get(history))
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn catalog() -> Result<&'static Catalog, ApiError> {
    Catalog::builtin().map_err(ApiError::internal)
}

/// The patient a request is about: the one named, else a patient caller's own record; it must
/// be readable through the caller's store view (else `404`, existence stays private).
pub(crate) async fn patient_of(store: &Guarded, caller: &Caller, named: Option<&str>) -> Result<String, ApiError> {
    Ok(hearth_workflow::fhir::requested_patient(store, caller, named).await?.0)
}

/// A batch of readings.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VitalsIn {
    /// The Patient id; default the caller's own record (a patient).
    #[serde(default)]
    patient: Option<String>,
    /// The device (or app) the readings came from; kept on each Observation.
    #[serde(default)]
    device: Option<DeviceIn>,
    /// 1 to 1000 readings.
    readings: Vec<ReadingIn>,
}

/// What happened to one reading.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReadingOut {
    /// Its place in the batch.
    index: usize,
    /// The Observation id.
    id: String,
    kind: String,
    /// `created`, or `duplicate` (the same reading was recorded before; nothing written).
    status: &'static str,
    /// Outside the plausible range: kept, flagged (`meta.tag` `implausible`).
    implausible: bool,
}

/// What a batch did to an alert.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertChange {
    /// The alert id (`GET /api/v1/health/alerts`).
    id: String,
    /// `news2`, `qsofa` or `threshold:<parameter>`.
    rule: String,
    /// `raised` (new: the patient, caregivers and care team are notified), `ongoing` (the
    /// live alert still holds: nobody is notified again) or `resolved`.
    change: &'static str,
}

/// The answer to a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VitalsOut {
    patient: String,
    created: usize,
    duplicates: usize,
    readings: Vec<ReadingOut>,
    /// The alerts the batch raised, kept or resolved (NEWS2 and qSOFA over the latest complete
    /// set, personal thresholds).
    alerts: Vec<AlertChange>,
}

#[utoipa::path(post, path = "/api/v1/health/vitals", tag = "selfcare",
    params(("Idempotency-Key" = Option<String>, Header, description = "A key of the sender's choosing (1–200 characters) for the whole batch: the same request sent again with it is answered as the first time (header `Idempotent-Replayed: true`) and not applied again; the same key with another body is refused")),
    request_body(content = VitalsIn, description = "One reading or a device batch (up to 1000). Units are converted on input (°F→°C, mmol/L→mg/dL, lb→kg, m/in→cm). The whole batch is refused if any reading is impossible; a re-sent reading (same device reading id, or same kind, time, values and device) is a duplicate and not written again",
        example = json!({"patient": "0190…", "device": {"manufacturer": "Omron", "model": "HEM-7120", "source_app": "Hearth app"},
            "readings": [{"kind": "blood_pressure", "systolic": 128, "diastolic": 84, "effective": "2026-12-07T08:00:00+05:30"},
                         {"kind": "body_temperature", "value": 99.1, "unit": "[degF]", "effective": "2026-12-07T08:01:00+05:30"}]})),
    responses(
        (status = 201, description = "At least one reading was recorded", body = VitalsOut,
         example = json!({"patient": "0190…", "created": 2, "duplicates": 0, "readings": [{"index": 0, "id": "3f2a…", "kind": "blood_pressure", "status": "created", "implausible": false}]})),
        (status = 200, description = "Every reading was a duplicate: nothing written", body = VitalsOut),
        (status = 400, description = "Invalid batch, nothing written (stable code: invalid_body, patient_required, batch_size, unknown_kind, unknown_unit, invalid_value, impossible_value, invalid_time, invalid_resource, invalid_idempotency_key); the message names the reading (`readings[3]: …`)", body = ErrorEnvelope,
         example = json!({"error": {"code": "impossible_value", "message": "readings[0]: spo2: the value is outside what a living person can have (1–100 %)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not record this patient's readings", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 409, description = "The same reading, alert or Idempotency-Key was being recorded at the same moment by another request: send again (`conflict`)", body = ErrorEnvelope, example = json!({"error": {"code": "conflict", "message": "this already exists"}})),
        (status = 422, description = "The Idempotency-Key was used before with another body or patient (`idempotency_key_reused`)", body = ErrorEnvelope, example = json!({"error": {"code": "idempotency_key_reused", "message": "this Idempotency-Key was used for another request"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn record(
    State(app): State<Arc<Selfcare>>,
    ApiCaller(caller): ApiCaller,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= 200 && !k.chars().any(char::is_control) => Some(k.to_owned()),
            _ => return Err(bad("invalid_idempotency_key", "Idempotency-Key must be 1–200 printable characters")),
        },
    };
    let input: VitalsIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    if input.readings.is_empty() || input.readings.len() > MAX_BATCH {
        return Err(bad("batch_size", format!("send 1 to {MAX_BATCH} readings")));
    }
    if let Some(d) = &input.device {
        d.check().map_err(|e| bad(e.code, format!("device: {}", e.message)))?;
    }
    let cat = catalog()?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, input.patient.as_deref()).await?;
    // A batch sent again with its Idempotency-Key is answered as the first time, not applied again.
    let request_hash = data_encoding::HEXLOWER.encode(&<sha2::Sha256 as sha2::Digest>::digest(&body));
    if let Some(k) = &key
        && let Some(done) = hearth_store_sql::selfcare::batch(&*app.db, &caller.account.id, k).await?
    {
        if done.request_hash != request_hash || done.patient != patient {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another request",
            ));
        }
        let status =
            u16::try_from(done.status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
        let body: Value = serde_json::from_str(&done.response).map_err(ApiError::internal)?;
        return Ok((status, [("idempotent-replayed", "true")], Json(body)).into_response());
    }
    let performer = caller
        .account
        .fhir_user
        .as_deref()
        .filter(|u| ["Patient/", "Practitioner/", "RelatedPerson/"].iter().any(|p| u.starts_with(p)));
    // Everything is checked before anything is written: a refused batch leaves nothing behind.
    let mut planned = Vec::with_capacity(input.readings.len());
    let mut seen = HashSet::new();
    for (i, r) in input.readings.iter().enumerate() {
        let reading = cat.parse(r).map_err(|e| bad(e.code, format!("readings[{i}]: {}", e.message)))?;
        let identity = cat.identity(&patient, &reading, input.device.as_ref());
        // The id follows from the identity: a re-sent reading lands on the same id.
        let id = crate::vitals::Catalog::reading_id(&reading, &identity);
        let obs = cat
            .observation(&patient, &reading, input.device.as_ref(), performer)
            .map_err(|e| bad(e.code, format!("readings[{i}]: {}", e.message)))?;
        hearth_workflow::fhir::validate(&app, "Observation", &obs).map_err(|e| {
            bad("invalid_resource", format!("readings[{i}]: the Observation does not validate: {}", e.describe()))
        })?;
        let first = seen.insert(id.clone());
        planned.push((i, reading, id, obs, first));
    }
    let now = app.clock.now();
    // The alerts the batch decides, judged before the write from what is stored and the batch.
    let settings =
        crate::alerting::settings_of(hearth_store_sql::selfcare::settings(&*app.db, &patient).await?.as_ref());
    let batch: Vec<&crate::vitals::Reading> = planned.iter().map(|p| &p.1).collect();
    let (actions, patient_body) = if crate::alerting::batch_matters(cat, &settings, &batch) {
        let latest = crate::alerting::latest(&app, &store, cat, &patient, &settings, &batch).await?;
        let live = hearth_store_sql::selfcare::live_alerts(&*app.db, &patient).await?;
        let rules = crate::scores::EarlyWarning::builtin().map_err(ApiError::internal)?;
        let body = match store.read("Patient", &patient).await? {
            Current::Found(v) => body_of(&v).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (crate::alerting::plan(rules, &latest, &settings, &live)?, body)
    } else {
        (Vec::new(), Value::Null)
    };
    // Flags of new alerts are created even for a patient-side caller (the patient's own readings
    // raised them); changing one stays the care team's.
    let mut tx = store.begin().await?.safety_record();
    let device = input.device.as_ref().map(|d| crate::vitals::device_resource(&patient, d));
    let device_id = input.device.as_ref().map(|d| crate::vitals::device_id(&patient, d));
    if let Some(body) = &device {
        hearth_workflow::fhir::validate(&app, "Device", body)
            .map_err(|e| bad("invalid_resource", format!("device: the Device does not validate: {}", e.describe())))?;
    }
    let mut out = Vec::with_capacity(planned.len());
    let mut new_ids = Vec::new();
    let mut created = 0;
    // The numeric values of the new readings, for the aggregate buckets.
    let mut points: Vec<(String, DateTime<Utc>, f64)> = Vec::new();
    // One look-up for the whole batch; a reading whose Observation was deleted is written again
    // as its next version.
    let ids: Vec<String> = planned.iter().filter(|p| p.4).map(|p| p.2.clone()).collect();
    let stored = tx.current_many("Observation", &ids).await?;
    for (index, reading, id, obs, first) in planned {
        let previous = stored.get(&id).copied();
        let exists = !first || previous.is_some_and(|c| !c.deleted);
        if !exists {
            let write = hearth_workflow::fhir::write_of(&app, "Observation", id.clone(), obs);
            interactions::put(&mut tx, write, previous, hearth_store::Method::Post, now).await?;
            created += 1;
            new_ids.push(id.clone());
            points.extend(reading.values.iter().map(|(k, v)| (k.clone(), reading.effective, *v)));
        }
        out.push(ReadingOut {
            index,
            id,
            kind: reading.kind,
            status: if exists { "duplicate" } else { "created" },
            implausible: reading.implausible,
        });
    }
    // A batch of nothing new changes no alert.
    let actions = if created > 0 { actions } else { Vec::new() };
    let alerts = actions
        .iter()
        .map(|a| {
            let (id, rule, change) = a.describe();
            AlertChange { id: id.to_owned(), rule: rule.to_owned(), change }
        })
        .collect();
    let duplicates = out.len() - created;
    let status = if created > 0 { StatusCode::CREATED } else { StatusCode::OK };
    let answer = VitalsOut { patient: patient.clone(), created, duplicates, readings: out, alerts };
    {
        crate::alerting::write_flags(&app, &mut tx, &patient, &actions, now).await?;
        let db = hearth_store_sql::notify::TxDb::from_guarded(tx)?;
        let conflict = |what: &str| {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} was being recorded at the same moment by another request: send again"),
            )
        };
        if !crate::alerting::apply(&app, &db, &patient, &patient_body, &settings, &actions, now).await? {
            drop(db);
            return Err(conflict("an alert for this patient"));
        }
        let adds: Vec<hearth_store_sql::selfcare::BucketAdd> = crate::vitals::rollups(&points)
            .into_iter()
            .map(|r| hearth_store_sql::selfcare::BucketAdd {
                patient: patient.clone(),
                kind: r.kind,
                resolution: r.resolution.name(),
                start: r.start.timestamp_millis(),
                min: r.min,
                max: r.max,
                sum: r.sum,
                count: i64::try_from(r.count).unwrap_or(i64::MAX),
            })
            .collect();
        hearth_store_sql::selfcare::add_buckets(&db, &adds).await?;
        if let Some(k) = &key {
            let row = hearth_store_sql::selfcare::BatchRow {
                account: caller.account.id.clone(),
                idem_key: k.clone(),
                patient: patient.clone(),
                request_hash,
                status: i64::from(status.as_u16()),
                response: serde_json::to_string(&answer).map_err(ApiError::internal)?,
                created_at: now.timestamp_millis(),
            };
            if !hearth_store_sql::selfcare::insert_batch(&db, &row).await? {
                drop(db);
                return Err(conflict("a batch with this Idempotency-Key"));
            }
        }
        db.commit().await?;
        // The device and the batch's Provenance (see `device_records`).
        if let (Some(body), Some(dev)) = (device, device_id.as_deref().filter(|_| !new_ids.is_empty())) {
            // The readings are committed: a failure here is logged, not answered (a retry would
            // find every reading a duplicate and never write them).
            if let Err(e) = device_records(&app, dev, body, &new_ids, performer, now).await {
                tracing::warn!(code = e.code, "a device batch's Device or Provenance was not written");
            }
        }
        if !actions.is_empty() {
            app.notifier.wake();
            crate::alerting::close_flags(&app, &actions, now).await;
        }
    }
    Ok((status, Json(answer)).into_response())
}

/// After a device batch commits: the patient's physical device as one `Device` resource
/// (created with its first batch) and the batch's `Provenance` (the Observations it created, by
/// the device and the sender). Written by the system: a patient-side caller may not create
/// Devices or Provenances, and the caller was already proven to record this patient's readings.
async fn device_records(
    app: &Selfcare,
    device_id: &str,
    device: Value,
    created: &[String],
    performer: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let store = app.system();
    let mut tx = store.begin().await?;
    if tx.current("Device", device_id).await?.is_none_or(|c| c.deleted) {
        let write = hearth_workflow::fhir::write_of(app, "Device", device_id.to_owned(), device);
        interactions::create(&mut tx, write, now).await?;
    }
    let body = crate::vitals::provenance(created, device_id, performer, now);
    hearth_workflow::fhir::validate(app, "Provenance", &body).map_err(|e| ApiError::internal(e.describe()))?;
    let write = hearth_workflow::fhir::write_of(app, "Provenance", uuid::Uuid::now_v7().to_string(), body);
    interactions::create(&mut tx, write, now).await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatientParam {
    patient: Option<String>,
}

/// The latest reading of one kind.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Latest {
    kind: String,
    /// The Observation id.
    id: String,
    effective: Option<String>,
    /// The value in `unit` (every kind but blood pressure).
    value: Option<f64>,
    /// Blood pressure, mm[Hg].
    systolic: Option<f64>,
    /// Blood pressure, mm[Hg].
    diastolic: Option<f64>,
    /// A coded kind's answer (`A`…`U` for consciousness, `air`/`oxygen`).
    code: Option<String>,
    /// UCUM (empty for a coded kind).
    unit: String,
    implausible: bool,
}

/// The latest reading per kind.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LatestOut {
    patient: String,
    /// One entry per kind that has a reading.
    latest: Vec<Latest>,
}

fn quantity(v: &Value) -> Option<(f64, String)> {
    let q = v.get("valueQuantity")?;
    Some((q.get("value")?.as_f64()?, q.get("code").or(q.get("unit"))?.as_str()?.to_owned()))
}

fn component(v: &Value, code: &str) -> Option<f64> {
    v.get("component")?
        .as_array()?
        .iter()
        .find(|c| {
            c.pointer("/code/coding")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|x| x.get("code").and_then(Value::as_str) == Some(code)))
        })
        .and_then(|c| c.pointer("/valueQuantity/value"))
        .and_then(Value::as_f64)
}

fn body_of(v: &Version) -> Option<Value> {
    v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())
}

fn implausible(v: &Value) -> bool {
    v.pointer("/meta/tag").and_then(Value::as_array).is_some_and(|t| {
        t.iter().any(|t| {
            t.get("system").and_then(Value::as_str) == Some(crate::vitals::FLAG_SYSTEM)
                && t.get("code").and_then(Value::as_str) == Some("implausible")
        })
    })
}

fn latest_of(cat: &Catalog, kind: &str, v: &Version) -> Option<Latest> {
    let body = body_of(v)?;
    let effective = body.get("effectiveDateTime").and_then(Value::as_str).map(str::to_owned);
    let flagged = implausible(&body);
    if cat.coded(kind).is_some() {
        return Some(Latest {
            kind: kind.to_owned(),
            id: v.id.clone(),
            effective,
            value: None,
            systolic: None,
            diastolic: None,
            code: Some(body.pointer("/valueCodeableConcept/text")?.as_str()?.to_owned()),
            unit: String::new(),
            implausible: flagged,
        });
    }
    if let Some(p) = cat.panel(kind) {
        let codes: Vec<&str> = p.components.iter().filter_map(|c| cat.kind(c)).map(|k| k.loinc.as_str()).collect();
        let unit = p.components.first().and_then(|c| cat.kind(c)).map(|k| k.unit.clone()).unwrap_or_default();
        return Some(Latest {
            kind: kind.to_owned(),
            id: v.id.clone(),
            effective,
            value: None,
            systolic: codes.first().and_then(|c| component(&body, c)),
            diastolic: codes.get(1).and_then(|c| component(&body, c)),
            code: None,
            unit,
            implausible: flagged,
        });
    }
    let (value, unit) = quantity(&body)?;
    Some(Latest {
        kind: kind.to_owned(),
        id: v.id.clone(),
        effective,
        value: Some(value),
        systolic: None,
        diastolic: None,
        code: None,
        unit,
        implausible: flagged,
    })
}

fn pairs(items: &[(&str, String)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

#[utoipa::path(get, path = "/api/v1/health", tag = "selfcare",
    params(("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record")),
    responses(
        (status = 200, description = "The latest reading of each kind that has one", body = LatestOut,
         example = json!({"patient": "0190…", "latest": [{"kind": "heart_rate", "id": "3f2a…", "effective": "2026-12-07T02:30:00.000Z", "value": 72, "systolic": null, "diastolic": null, "unit": "/min", "implausible": false}]})),
        (status = 400, description = "No patient named and the caller is not a patient (`patient_required`), or an unknown parameter (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "patient_required", "message": "name the patient (`patient`)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn latest(
    State(app): State<Arc<Selfcare>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<PatientParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LatestOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let cat = catalog()?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let mut latest = Vec::new();
    for kind in cat.reading_kinds() {
        let Some((system, code)) = cat.code_of(kind) else { continue };
        let found = app
            .search_all(
                &store,
                "Observation",
                &pairs(&[
                    ("subject", format!("Patient/{patient}")),
                    ("code", format!("{system}|{code}")),
                    ("_sort", "-date".to_owned()),
                    ("_count", "1".to_owned()),
                ]),
                1,
            )
            .await?;
        if let Some(entry) = found.first().and_then(|v| latest_of(cat, kind, v)) {
            latest.push(entry);
        }
    }
    Ok(Json(LatestOut { patient, latest }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    patient: Option<String>,
    kind: String,
    from: Option<String>,
    to: Option<String>,
    resolution: Option<Resolution>,
}

/// One series of a history (blood pressure has two).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Series {
    /// The measured kind (`systolic_bp`, `diastolic_bp` for blood pressure).
    kind: String,
    /// UCUM.
    unit: String,
    buckets: Vec<Bucket>,
}

/// A history for charts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryOut {
    patient: String,
    kind: String,
    resolution: Resolution,
    from: String,
    to: String,
    series: Vec<Series>,
}

#[utoipa::path(get, path = "/api/v1/health/history", tag = "selfcare",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("kind" = String, Query, description = "heart_rate, respiratory_rate, spo2, body_temperature, blood_pressure, blood_glucose, body_weight, body_height, steps"),
        ("from" = Option<String>, Query, description = "Start (inclusive), RFC 3339 or a date; default 30 days before `to`"),
        ("to" = Option<String>, Query, description = "End (exclusive), RFC 3339 or a date; default now"),
        ("resolution" = Option<Resolution>, Query, description = "raw (default), minute, hour or day: min/mean/max per UTC bucket"),
    ),
    responses(
        (status = 200, description = "The readings in the range, oldest first", body = HistoryOut,
         example = json!({"patient": "0190…", "kind": "heart_rate", "resolution": "hour", "from": "2026-12-06T00:00:00.000Z", "to": "2026-12-07T00:00:00.000Z",
             "series": [{"kind": "heart_rate", "unit": "/min", "buckets": [{"start": "2026-12-06T08:00:00.000Z", "min": 60, "mean": 70, "max": 80, "count": 2}]}]})),
        (status = 400, description = "Bad parameters (stable code: invalid_query, unknown_kind, invalid_range, patient_required, history_too_large)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_range", "message": "`from` must be before `to`, at most 400 days apart"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn history(
    State(app): State<Arc<Selfcare>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let cat = catalog()?;
    let numeric: Vec<&str> = cat.reading_kinds().into_iter().filter(|k| cat.coded(k).is_none()).collect();
    let (_, code) = cat
        .code_of(&q.kind)
        .filter(|_| numeric.contains(&q.kind.as_str()))
        .ok_or_else(|| bad("unknown_kind", format!("kind is one of {}", numeric.join(", "))))?;
    let instant_of = |s: &Option<String>, name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        s.as_deref()
            .map(|v| {
                hearth_workflow::fhir::parse_instant(v)
                    .ok_or_else(|| bad("invalid_range", format!("`{name}` must be RFC 3339 or a date")))
            })
            .transpose()
    };
    let to = instant_of(&q.to, "to")?.unwrap_or_else(|| app.clock.now());
    let from = instant_of(&q.from, "from")?.unwrap_or(to - TimeDelta::days(30));
    if from >= to || to - from > TimeDelta::days(MAX_RANGE_DAYS) {
        return Err(bad("invalid_range", format!("`from` must be before `to`, at most {MAX_RANGE_DAYS} days apart")));
    }
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let parts: Vec<String> = match cat.panel(&q.kind) {
        Some(p) => p.components.clone(),
        None => vec![q.kind.clone()],
    };
    let resolution = q.resolution.unwrap_or(Resolution::Raw);
    if resolution != Resolution::Raw {
        // From the buckets kept up to date on write: whole buckets whose start lies in the range.
        let mut series = Vec::new();
        for part in &parts {
            let Some(def) = cat.kind(part) else { continue };
            let rows = hearth_store_sql::selfcare::buckets(
                &*app.db,
                &patient,
                part,
                resolution.name(),
                from.timestamp_millis(),
                to.timestamp_millis(),
                i64::try_from(MAX_HISTORY + 1).unwrap_or(i64::MAX),
            )
            .await?;
            if rows.len() > MAX_HISTORY {
                return Err(bad(
                    "history_too_large",
                    format!(
                        "more than {MAX_HISTORY} buckets in the range: ask for a shorter one or a wider resolution"
                    ),
                ));
            }
            let buckets = rows
                .into_iter()
                .filter(|b| b.4 > 0)
                .map(|(start, min, max, sum, count)| Bucket {
                    start: DateTime::<Utc>::from_timestamp_millis(start).map(instant).unwrap_or_default(),
                    min,
                    mean: sum / count as f64,
                    max,
                    count: u64::try_from(count).unwrap_or(0),
                })
                .collect();
            series.push(Series { kind: part.clone(), unit: def.unit.clone(), buckets });
        }
        return Ok(Json(HistoryOut {
            patient,
            kind: q.kind,
            resolution,
            from: instant(from),
            to: instant(to),
            series,
        }));
    }
    let found = app
        .search_all(
            &store,
            "Observation",
            &pairs(&[
                ("subject", format!("Patient/{patient}")),
                ("code", format!("{LOINC}|{code}")),
                ("date", format!("ge{}", instant(from))),
                ("date", format!("lt{}", instant(to))),
                ("_count", "1000".to_owned()),
            ]),
            MAX_HISTORY + 1,
        )
        .await?;
    if found.len() > MAX_HISTORY {
        return Err(bad(
            "history_too_large",
            format!("more than {MAX_HISTORY} readings in the range: ask for a shorter one"),
        ));
    }
    let bodies: Vec<(DateTime<Utc>, Value)> = found
        .iter()
        .filter_map(body_of)
        .filter_map(|b| {
            let t =
                b.get("effectiveDateTime").and_then(Value::as_str).and_then(hearth_workflow::fhir::parse_instant)?;
            Some((t, b))
        })
        .collect();
    let mut series = Vec::new();
    for part in parts {
        let Some(def) = cat.kind(&part) else { continue };
        let points: Vec<(DateTime<Utc>, f64)> = bodies
            .iter()
            .filter_map(|(t, b)| {
                let v = if cat.panel(&q.kind).is_some() { component(b, &def.loinc) } else { quantity(b).map(|q| q.0) };
                v.map(|v| (*t, v))
            })
            .collect();
        series.push(Series { kind: part.clone(), unit: def.unit.clone(), buckets: aggregate(&points, resolution) });
    }
    Ok(Json(HistoryOut { patient, kind: q.kind, resolution, from: instant(from), to: instant(to), series }))
}

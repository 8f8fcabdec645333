//! `/api/v1/alarms`: the caller's own alarms (any role) and the list of the ones that rang.
//!
//! Every query names the caller's account, so another account's alarm or ring is `404` (its
//! existence stays private). Each route is audited by the edge (an alarm's label may be
//! clinical). A change and its outbox rows commit in one transaction.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use hearth_store_sql::alarms::{self as sql, AlarmRow, OccurrenceRow};
use hearth_store_sql::notify::TxDb;
use serde::Serialize;

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

use crate::Alarms;
use crate::model::{AlarmIn, Checked, format_local};
use crate::planner::{cancel_pending, plan_on, schedule_of, zone_of};

/// Most alarms per account.
pub const MAX_ALARMS: i64 = 100;
/// Default and largest page of the notifications list.
const PAGE: i64 = 20;
const MAX_PAGE: i64 = 100;

pub(crate) fn router() -> axum::Router<Arc<Alarms>> {
    axum::Router::new()
        .route("/api/v1/alarms", axum::routing::get(list).post(create))
        .route("/api/v1/alarms/notifications", axum::routing::get(notifications))
        .route("/api/v1/alarms/notifications/{id}/read", axum::routing::post(read))
        .route("/api/v1/alarms/{id}", axum::routing::get(one).put(replace).delete(remove))
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

fn conflict() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", "the alarm changed meanwhile; send again")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn from_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(rfc3339).unwrap_or_default()
}

/// An alarm as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0193a1b2-…", "label": "Metformin after breakfast", "kind": "medication", "at": "2026-12-08T08:00:00", "rrule": "FREQ=DAILY", "time_zone": "Asia/Kolkata", "time_zone_source": "account", "enabled": true, "next": "2026-12-08T02:30:00Z", "created": "2026-12-07T10:00:00Z", "updated": "2026-12-07T10:00:00Z"}))]
pub(crate) struct AlarmOut {
    id: String,
    label: String,
    /// `medication`, `water` or `custom`.
    kind: String,
    /// The first (or only) ring, local wall-clock time in `time_zone`.
    at: String,
    /// The RFC 5545 rule it repeats by; absent: rings once.
    #[serde(skip_serializing_if = "Option::is_none")]
    rrule: Option<String>,
    /// The zone it rings in now.
    time_zone: String,
    /// `alarm`: its own zone; `account`: the account's, followed when it changes.
    time_zone_source: String,
    enabled: bool,
    /// The next ring (UTC), if enabled and there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    created: String,
    updated: String,
}

fn alarm_out(row: &AlarmRow, tz: Tz, now: DateTime<Utc>) -> AlarmOut {
    let next = if row.enabled {
        schedule_of(row).and_then(|(start, rule)| crate::model::next_after(start, rule.as_ref(), tz, now))
    } else {
        None
    };
    AlarmOut {
        id: row.id.clone(),
        label: row.label.clone(),
        kind: row.kind.clone(),
        at: row.start_local.clone(),
        rrule: row.rrule.clone(),
        time_zone: tz.name().to_owned(),
        time_zone_source: if row.time_zone.is_some() { "alarm" } else { "account" }.to_owned(),
        enabled: row.enabled,
        next: next.map(rfc3339),
        created: from_ms(row.created_at),
        updated: from_ms(row.updated_at),
    }
}

/// The caller's alarms.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlarmsOut {
    /// Oldest first (at most 100).
    alarms: Vec<AlarmOut>,
}

fn parse_body(body: &[u8]) -> Result<Checked, ApiError> {
    let input: AlarmIn =
        serde_json::from_slice(body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    input.check().map_err(|e| bad(e.code, e.message))
}

/// A one-off alarm whose time has passed would never ring: refused rather than kept silent.
fn check_future(c: &Checked, row_tz: Tz, now: DateTime<Utc>) -> Result<(), ApiError> {
    if c.enabled && c.rrule.is_none() && crate::rrule::instant(c.start, row_tz) < now {
        return Err(bad("time_in_past", "a one-off alarm's time has passed: give a later `at` or an `rrule`"));
    }
    Ok(())
}

async fn zone_for(app: &Alarms, caller: &Caller, c: &Checked) -> Result<Tz, ApiError> {
    match c.time_zone {
        Some(tz) => Ok(tz),
        None => Ok(app.notifier.settings(&*app.db, &caller.account.id).await?.time_zone),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[utoipa::path(get, path = "/api/v1/alarms", tag = "alarms",
    responses(
        (status = 200, description = "The caller's alarms, oldest first", body = AlarmsOut),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(app): State<Arc<Alarms>>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<AlarmsOut>, ApiError> {
    let now = app.clock.now();
    let rows = sql::of_account(&*app.db, &caller.account.id, MAX_ALARMS).await?;
    let mut alarms = Vec::with_capacity(rows.len());
    for row in &rows {
        let tz = zone_of(&app.notifier, &*app.db, row).await?;
        alarms.push(alarm_out(row, tz, now));
    }
    Ok(Json(AlarmsOut { alarms }))
}

#[utoipa::path(post, path = "/api/v1/alarms", tag = "alarms",
    request_body(content = AlarmIn, description = "A new alarm. The RRULE subset: FREQ=DAILY, WEEKLY or MONTHLY; INTERVAL (1-1000); BYDAY (MO…SU, no ordinals); BYHOUR; BYMINUTE; COUNT (1-10000) or UNTIL (YYYYMMDD or YYYYMMDDTHHMMSSZ); WKST=MO"),
    responses(
        (status = 201, description = "Created; its rings for the next 48 hours are already in the notification outbox", body = AlarmOut),
        (status = 400, description = "Nothing written. Stable codes: invalid_body, invalid_label, invalid_kind, invalid_time, invalid_time_zone, invalid_rrule (the message names the part), unsupported_rrule (a part RFC 5545 has that this subset does not), time_in_past (a one-off alarm in the past), too_many_alarms (100 per account)", body = ErrorEnvelope,
         example = json!({"error": {"code": "unsupported_rrule", "message": "RRULE part not supported: FREQ=YEARLY (DAILY, WEEKLY or MONTHLY) (supported: …)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(app): State<Arc<Alarms>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let c = parse_body(&body)?;
    let now = app.clock.now();
    let tz = zone_for(&app, &caller, &c).await?;
    check_future(&c, tz, now)?;
    let tx = TxDb::begin(&*app.db).await?;
    if sql::count(&tx, &caller.account.id).await? >= MAX_ALARMS {
        return Err(bad("too_many_alarms", format!("an account has at most {MAX_ALARMS} alarms")));
    }
    let row = AlarmRow {
        id: uuid::Uuid::now_v7().to_string(),
        account_id: caller.account.id.clone(),
        kind: c.kind.as_str().to_owned(),
        label: c.label,
        enabled: c.enabled,
        start_local: format_local(c.start),
        rrule: c.rrule.map(|(text, _)| text),
        time_zone: c.time_zone.map(|z| z.name().to_owned()),
        revision: 1,
        planned_zone: None,
        planned_until: now.timestamp_millis(),
        created_at: now.timestamp_millis(),
        updated_at: now.timestamp_millis(),
    };
    sql::insert(&tx, &row).await?;
    let written = plan_on(&app.notifier, &tx, &row, tz, now).await?.ok_or_else(conflict)?;
    tx.commit().await?;
    if written > 0 {
        app.notifier.wake();
    }
    Ok((StatusCode::CREATED, Json(alarm_out(&row, tz, now))).into_response())
}

#[utoipa::path(get, path = "/api/v1/alarms/{id}", tag = "alarms",
    params(("id" = String, Path, description = "The alarm")),
    responses(
        (status = 200, description = "The alarm", body = AlarmOut),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "No such alarm of the caller's (`not_found`; another account's alarm is not found either)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such alarm"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn one(
    State(app): State<Arc<Alarms>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<AlarmOut>, ApiError> {
    if !valid_id(&id) {
        return Err(not_found("alarm"));
    }
    let row = sql::get(&*app.db, &caller.account.id, &id).await?.ok_or_else(|| not_found("alarm"))?;
    let tz = zone_of(&app.notifier, &*app.db, &row).await?;
    Ok(Json(alarm_out(&row, tz, app.clock.now())))
}

#[utoipa::path(put, path = "/api/v1/alarms/{id}", tag = "alarms",
    params(("id" = String, Path, description = "The alarm")),
    request_body(content = AlarmIn, description = "The whole alarm as it is to be (absent `enabled`: true). Its pending rings are cancelled and written again from the new settings"),
    responses(
        (status = 200, description = "Replaced; the old pending rings are cancelled, the new ones written", body = AlarmOut),
        (status = 400, description = "Nothing changed. Stable codes: invalid_body, invalid_label, invalid_kind, invalid_time, invalid_time_zone, invalid_rrule, unsupported_rrule, time_in_past", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_rrule", "message": "invalid RRULE: BYHOUR: `25` is not 0 to 23"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "No such alarm of the caller's (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such alarm"}})),
        (status = 409, description = "The alarm changed meanwhile (`conflict`): send again", body = ErrorEnvelope, example = json!({"error": {"code": "conflict", "message": "the alarm changed meanwhile; send again"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn replace(
    State(app): State<Arc<Alarms>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AlarmOut>, ApiError> {
    if !valid_id(&id) {
        return Err(not_found("alarm"));
    }
    let old = sql::get(&*app.db, &caller.account.id, &id).await?.ok_or_else(|| not_found("alarm"))?;
    let c = parse_body(&body)?;
    let now = app.clock.now();
    let tz = zone_for(&app, &caller, &c).await?;
    check_future(&c, tz, now)?;
    let row = AlarmRow {
        kind: c.kind.as_str().to_owned(),
        label: c.label,
        enabled: c.enabled,
        start_local: format_local(c.start),
        rrule: c.rrule.map(|(text, _)| text),
        time_zone: c.time_zone.map(|z| z.name().to_owned()),
        revision: old.revision + 1,
        planned_zone: None,
        planned_until: now.timestamp_millis(),
        updated_at: now.timestamp_millis(),
        ..old
    };
    let tx = TxDb::begin(&*app.db).await?;
    // Only over the revision read: two edits at once must not both plan under one revision
    // (the second's rings would be refused as duplicates of the first's cancelled keys).
    if !sql::update(&tx, &row).await? {
        return Err(match sql::get(&tx, &caller.account.id, &id).await? {
            Some(_) => conflict(),
            None => not_found("alarm"),
        });
    }
    cancel_pending(&tx, &row.id, now).await?;
    let written = plan_on(&app.notifier, &tx, &row, tz, now).await?.ok_or_else(conflict)?;
    tx.commit().await?;
    if written > 0 {
        app.notifier.wake();
    }
    Ok(Json(alarm_out(&row, tz, now)))
}

#[utoipa::path(delete, path = "/api/v1/alarms/{id}", tag = "alarms",
    params(("id" = String, Path, description = "The alarm")),
    responses(
        (status = 204, description = "Deleted; its pending rings are cancelled (the ones that rang stay in the notifications list)"),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "No such alarm of the caller's (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such alarm"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn remove(
    State(app): State<Arc<Alarms>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !valid_id(&id) {
        return Err(not_found("alarm"));
    }
    let now = app.clock.now();
    let tx = TxDb::begin(&*app.db).await?;
    if !sql::delete(&tx, &caller.account.id, &id).await? {
        return Err(not_found("alarm"));
    }
    cancel_pending(&tx, &id, now).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One ring of one of the caller's alarms.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0193a1c4-…", "alarm": "0193a1b2-…", "label": "Metformin after breakfast", "kind": "medication", "at": "2026-12-08T02:30:00Z", "read": false}))]
pub(crate) struct NotificationOut {
    id: String,
    /// The alarm that rang (it may have been deleted since).
    alarm: String,
    /// The label and kind it rang with.
    label: String,
    kind: String,
    /// When it rang (UTC).
    at: String,
    read: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_at: Option<String>,
}

fn notification_out(o: &OccurrenceRow) -> NotificationOut {
    NotificationOut {
        id: o.id.clone(),
        alarm: o.alarm_id.clone(),
        label: o.label.clone(),
        kind: o.kind.clone(),
        at: from_ms(o.at),
        read: o.read_at.is_some(),
        read_at: o.read_at.map(from_ms),
    }
}

/// A page of rings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NotificationsOut {
    /// Newest first.
    notifications: Vec<NotificationOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

fn parse_cursor(s: &str) -> Option<(i64, String)> {
    let (at, id) = s.split_once('.')?;
    let at = at.parse::<i64>().ok()?;
    valid_id(id).then(|| (at, id.to_owned()))
}

#[utoipa::path(get, path = "/api/v1/alarms/notifications", tag = "alarms",
    params(
        ("unread" = Option<bool>, Query, description = "`true`: only the rings not yet marked read"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "The previous page's `next_cursor`"),
    ),
    responses(
        (status = 200, description = "The caller's alarms that rang (their time has come), newest first, with read state", body = NotificationsOut),
        (status = 400, description = "An unknown or repeated parameter, a bad `unread`, `limit` or `cursor` (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "limit must be 1 to 100"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn notifications(
    State(app): State<Arc<Alarms>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<NotificationsOut>, ApiError> {
    let (mut unread, mut limit, mut cursor) = (None, None, None);
    for (k, v) in hearth_workflow::fhir::pairs(raw.as_deref()) {
        match k.as_str() {
            "unread" if unread.is_none() => {
                unread = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("invalid_query", "unread must be true or false")),
                })
            }
            "limit" if limit.is_none() => {
                limit = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| bad("invalid_query", format!("limit must be 1 to {MAX_PAGE}")))?,
                )
            }
            "cursor" if cursor.is_none() => {
                cursor = Some(parse_cursor(&v).ok_or_else(|| bad("invalid_query", "cursor is not one this API gave"))?)
            }
            _ => return Err(bad("invalid_query", format!("unknown or repeated parameter `{k}`"))),
        }
    }
    let limit = limit.unwrap_or(PAGE);
    let now = app.clock.now().timestamp_millis();
    let before = cursor.as_ref().map(|(at, id)| (*at, id.as_str()));
    let mut rows =
        sql::fired(&*app.db, &caller.account.id, now, unread.unwrap_or(false), before, limit.saturating_add(1)).await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more { rows.last().map(|o| format!("{}.{}", o.at, o.id)) } else { None };
    Ok(Json(NotificationsOut { notifications: rows.iter().map(notification_out).collect(), next_cursor }))
}

#[utoipa::path(post, path = "/api/v1/alarms/notifications/{id}/read", tag = "alarms",
    params(("id" = String, Path, description = "The ring (a notification's `id`)")),
    responses(
        (status = 200, description = "Marked read (again: unchanged, the first `read_at` stays)", body = NotificationOut),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "No such ring of the caller's alarms, or not rung yet (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such notification"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn read(
    State(app): State<Arc<Alarms>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<NotificationOut>, ApiError> {
    if !valid_id(&id) {
        return Err(not_found("notification"));
    }
    let now = app.clock.now().timestamp_millis();
    let row = sql::mark_read(&*app.db, &caller.account.id, &id, now).await?.ok_or_else(|| not_found("notification"))?;
    Ok(Json(notification_out(&row)))
}

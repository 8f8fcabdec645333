//! The daily summary: `GET /api/v1/summaries/daily?date=`, the patient's summary settings
//! (`GET/PUT /api/v1/summaries/settings`), and the planner that writes yesterday's summary at the
//! patient's local time.
//!
//! - A patient is enrolled (a `wellness_summary_plans` row) by their first log or goal, or by
//!   setting the summary time. The row holds the chosen local time (else `[wellness]
//!   summary_time`), the last day summarised and when the planner should look again.
//! - Each pass takes the enrolled patients due now; for one whose local time (the zone of their
//!   account's notification settings, as alarms and medication read it) has passed the summary
//!   time, it summarises yesterday (local) in their language and writes, in one transaction, the
//!   `Composition` (id from patient, day and language, so a second planner writes nothing new),
//!   the outbox notice (in-app and e-mail, key `wellness-summary:<patient>:<day>`) and the row's
//!   new state. The notification worker delivers it.
//! - Everything read is FHIR through a store view: the logs, the vital-sign Observations,
//!   `Flag`s (alerts), `MedicationAdministration`s (doses taken or skipped) and `Goal`s. The
//!   planner reads as the system (a job); the route as the caller.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use hearth_notifications::{PatientNotice, UserSettings};
use hearth_notify::{Category, ChannelKind};
use hearth_store::{Guarded, StoreError, interactions};
use hearth_store_sql::wellness as sql;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;

use crate::Wellness;
use crate::catalog::{Catalog, LOINC};
use crate::entry::{self, EntryOut, Kind, instant};
use crate::logs::{bad, body_of, catalog, patient_of};
use crate::summary::{self, Figures, GoalDay, Insight, Section};

/// How often the planner looks.
pub const PLAN_EVERY: Duration = Duration::from_secs(60);
/// Patients per planner batch.
const BATCH: i64 = 200;
/// Most records of one kind a summary reads.
const MAX_READ: usize = 20_000;

pub(crate) fn router() -> axum::Router<Arc<Wellness>> {
    axum::Router::new()
        .route("/api/v1/summaries/daily", axum::routing::get(daily))
        .route("/api/v1/summaries/settings", axum::routing::get(get_settings).put(put_settings))
}

/// `HH:MM`.
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    if s.len() != 5 {
        return None;
    }
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

pub(crate) fn parse_day(s: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad("invalid_date", "`date` must be YYYY-MM-DD"))
}

/// The patient's time zone and language: their first account's notification settings, else the
/// server's defaults.
pub(crate) async fn settings_of(app: &Wellness, patient: &str) -> Result<UserSettings, StoreError> {
    let accounts = hearth_store_sql::identity::accounts_of(&*app.db, &format!("Patient/{patient}")).await?;
    match accounts.first() {
        Some(a) => app.notifier.settings(&*app.db, a).await,
        None => Ok(app.notifier.with_defaults(None)),
    }
}

/// Enrols the patient in daily summaries (after a write committed: a failure is logged, the
/// write stands and the next one enrols).
pub(crate) async fn enrol(app: &Wellness, patient: &str, now: DateTime<Utc>) {
    if let Err(e) = sql::enrol(&*app.db, patient, now.timestamp_millis()).await {
        tracing::warn!(error = %e, "wellness: cannot enrol a patient in daily summaries");
    }
}

/// The UTC instant of a local day's `time` in `tz` (a time the clocks skip is taken an hour later).
fn at_local(day: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let naive = day.and_time(time);
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(naive + TimeDelta::hours(1))).earliest())
        .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc))
}

fn pairs(items: &[(&str, String)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// The logs and step counts of the local days `first..=last`.
pub(crate) async fn load(
    app: &Wellness,
    store: &Guarded,
    patient: &str,
    first: NaiveDate,
    last: NaiveDate,
    tz: Tz,
) -> Result<(Vec<EntryOut>, Vec<(DateTime<Utc>, f64)>), ApiError> {
    let cat = catalog()?;
    let from = at_local(first, NaiveTime::MIN, tz);
    let to = at_local(last + TimeDelta::days(1), NaiveTime::MIN, tz);
    let mut codes: Vec<String> = Vec::new();
    for k in Kind::ALL {
        let c = entry::code_of(cat, k).map_err(ApiError::internal)?;
        codes.push(format!("{}|{}", c.system, c.code));
    }
    let steps = cat.code("steps").map_err(ApiError::internal)?;
    codes.push(format!("{}|{}", steps.system, steps.code));
    let found = app
        .search_all(
            store,
            "Observation",
            &pairs(&[
                ("subject", format!("Patient/{patient}")),
                ("code", codes.join(",")),
                ("date", format!("ge{}", instant(from))),
                ("date", format!("lt{}", instant(to))),
                ("_count", "1000".to_owned()),
            ]),
            MAX_READ,
        )
        .await?;
    let mut entries = Vec::new();
    let mut step_counts = Vec::new();
    for v in &found {
        let Some(body) = body_of(v) else { continue };
        if let Some(e) = entry::entry_of(cat, &v.id, &body) {
            // A sleep period that began before the range but ends in it counts; one that ends
            // after does not belong to these days.
            if entry_instant(&e).is_some_and(|t| t >= from && t < to) {
                entries.push(e);
            }
        } else if let (Some(t), Some(n)) = (
            body.get("effectiveDateTime").and_then(Value::as_str).and_then(hearth_workflow::fhir::parse_instant),
            body.pointer("/valueQuantity/value").and_then(Value::as_f64),
        ) {
            step_counts.push((t, n));
        }
    }
    Ok((entries, step_counts))
}

fn entry_instant(e: &EntryOut) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&e.effective).ok().map(|t| t.with_timezone(&Utc))
}

/// The vital-sign readings of the day as (LOINC, value), blood pressure split in two.
async fn vitals(
    app: &Wellness,
    store: &Guarded,
    cat: &Catalog,
    patient: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(String, f64)>, ApiError> {
    let mut codes: Vec<String> = Vec::new();
    for v in &cat.vitals {
        let c = v.component_of.as_deref().unwrap_or(&v.code);
        let c = format!("{LOINC}|{c}");
        if !codes.contains(&c) {
            codes.push(c);
        }
    }
    let found = app
        .search_all(
            store,
            "Observation",
            &pairs(&[
                ("subject", format!("Patient/{patient}")),
                ("code", codes.join(",")),
                ("date", format!("ge{}", instant(from))),
                ("date", format!("lt{}", instant(to))),
                ("_count", "1000".to_owned()),
            ]),
            MAX_READ,
        )
        .await?;
    let mut out = Vec::new();
    for v in &found {
        let Some(body) = body_of(v) else { continue };
        let code = body.pointer("/code/coding/0/code").and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(x) = body.pointer("/valueQuantity/value").and_then(Value::as_f64) {
            out.push((code, x));
        }
        for c in body.get("component").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            if let (Some(cc), Some(x)) = (
                c.pointer("/code/coding/0/code").and_then(Value::as_str),
                c.pointer("/valueQuantity/value").and_then(Value::as_f64),
            ) {
                out.push((cc.to_owned(), x));
            }
        }
    }
    Ok(out)
}

/// A day's summary as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DailySummary)]
pub(crate) struct DailyOut {
    patient: String,
    /// The local day summarised.
    date: String,
    /// `en` or `hi`.
    language: String,
    time_zone: String,
    title: String,
    figures: Figures,
    goals: Vec<GoalDay>,
    insights: Vec<Insight>,
    sections: Vec<Section>,
    /// The sections as one plain text (what the e-mail says).
    text: String,
    /// The id of the `Composition` the planner stored for this day and language, when it has.
    composition: Option<String>,
}

/// The id of a day's summary Composition.
pub fn composition_id(patient: &str, day: NaiveDate, lang: &str) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{patient}\u{0}{day}\u{0}{lang}").as_bytes());
    let hex = data_encoding::HEXLOWER.encode(&digest);
    format!("ds-{}", hex.get(..40).unwrap_or(&hex))
}

/// Builds the summary of `day` in `lang` from what `store` shows of the patient.
async fn build(
    app: &Wellness,
    store: &Guarded,
    patient: &str,
    day: NaiveDate,
    lang: &str,
    tz: Tz,
) -> Result<DailyOut, ApiError> {
    let cat = catalog()?;
    let from = at_local(day, NaiveTime::MIN, tz);
    let to = at_local(day + TimeDelta::days(1), NaiveTime::MIN, tz);
    let first = day - TimeDelta::days(cat.baseline.days.max(crate::goals::STREAK_DAYS));
    let (entries, steps) = load(app, store, patient, first, day, tz).await?;
    let days = summary::by_day(&entries, &steps, tz);
    let todays: Vec<&EntryOut> =
        entries.iter().filter(|e| entry_instant(e).is_some_and(|t| summary::local_day(t, tz) == day)).collect();
    let mut figures = summary::figures_of(&todays, days.get(&day).and_then(|m| m.get("steps")));
    figures.vitals = summary::vital_stats(cat, lang, &vitals(app, store, cat, patient, from, to).await?);
    let range = |name: &str| {
        pairs(&[
            ("patient", format!("Patient/{patient}")),
            (name, format!("ge{}", instant(from))),
            (name, format!("lt{}", instant(to))),
        ])
    };
    // Alerts raised that day: a Flag whose period starts in it (one still open from before
    // matches the search too, and is not counted again).
    let flags = app.search_all(store, "Flag", &range("date"), MAX_READ).await?;
    let raised = flags
        .iter()
        .filter_map(body_of)
        .filter_map(|b| {
            b.pointer("/period/start").and_then(Value::as_str).and_then(hearth_workflow::fhir::parse_instant)
        })
        .filter(|t| *t >= from && *t < to)
        .count();
    figures.alerts = u32::try_from(raised).unwrap_or(u32::MAX);
    let doses = app.search_all(store, "MedicationAdministration", &range("effective-time"), MAX_READ).await?;
    for d in &doses {
        match body_of(d).as_ref().and_then(|b| b.get("status")).and_then(Value::as_str) {
            Some("completed") => figures.doses_taken += 1,
            Some("not-done") => figures.doses_skipped += 1,
            _ => {}
        }
    }
    let goals = crate::goals::active_goals(app, store, patient).await?;
    let (insights, goal_days) = summary::insights(cat, lang, &days, day, &goals);
    let sections = summary::sections(cat, lang, &figures, &insights);
    let id = composition_id(patient, day, lang);
    let composition = match store.read("Composition", &id).await {
        Ok(hearth_store::Current::Found(_)) => Some(id),
        _ => None,
    };
    Ok(DailyOut {
        patient: patient.to_owned(),
        date: day.to_string(),
        language: lang.to_owned(),
        time_zone: tz.name().to_owned(),
        title: cat.text(lang, "title", &[("day", day.to_string())]),
        figures,
        goals: goal_days,
        insights,
        text: summary::plain_text(&sections),
        sections,
        composition,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DailyParams {
    patient: Option<String>,
    date: Option<String>,
    lang: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/summaries/daily", tag = "wellness",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("date" = Option<String>, Query, description = "The local day (YYYY-MM-DD, the patient's time zone); default yesterday"),
        ("lang" = Option<String>, Query, description = "`en` or `hi`; default the patient's language"),
    ),
    responses(
        (status = 200, description = "The day's summary: figures, goals, insights against the patient's own 14-day baseline, and the text in the language; `composition` names the Composition the planner stored and sent",
         body = DailyOut,
         example = json!({"patient": "0190…", "date": "2027-01-14", "language": "en", "time_zone": "Asia/Kolkata", "title": "Your daily summary for 2027-01-14",
             "figures": {"vitals": [], "alerts": 0, "doses_taken": 2, "doses_skipped": 0, "steps": 8000, "exercise_minutes": 30, "exercise_sessions": 1, "active_energy_kcal": null, "sleep_minutes": 420, "deep_sleep_minutes": null, "light_sleep_minutes": null, "rem_sleep_minutes": null, "awake_minutes": null, "water_ml": 2000, "water_entries": 8, "mood": 4, "mood_entries": 1, "mood_tags": [], "meditation_minutes": 15, "meditation_sessions": 1, "food_entries": 0, "energy_kcal": null, "carbohydrate_g": null, "protein_g": null, "fat_g": null},
             "goals": [], "insights": [{"code": "water_ml_above_baseline", "text": "Water (mL): 2000, 25% above your usual 1600 (last 14 days)."}],
             "sections": [{"code": "water", "title": "Water", "text": "Drank 2000 mL."}], "text": "Water\nDrank 2000 mL.", "composition": "ds-…"})),
        (status = 400, description = "Bad parameters (stable code: invalid_query, invalid_date, invalid_language, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_date", "message": "`date` must be YYYY-MM-DD"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn daily(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<DailyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DailyOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let lang = match q.lang.as_deref() {
        None => None,
        Some(l @ ("en" | "hi")) => Some(l.to_owned()),
        Some(_) => return Err(bad("invalid_language", "`lang` is en or hi")),
    };
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let settings = settings_of(&app, &patient).await?;
    let today = summary::local_day(app.clock.now(), settings.time_zone);
    let day = match q.date.as_deref() {
        Some(d) => parse_day(d)?,
        None => today - TimeDelta::days(1),
    };
    if day > today {
        return Err(bad("invalid_date", "`date` cannot be after today"));
    }
    let lang = lang.unwrap_or_else(|| settings.language.as_str().to_owned());
    Ok(Json(build(&app, &store, &patient, day, &lang, settings.time_zone).await?))
}

/// A patient's summary settings.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SummarySettingsIn)]
pub(crate) struct SummarySettings {
    /// The Patient id (in a request: default the caller's own record).
    #[serde(default)]
    patient: Option<String>,
    /// Local time (`HH:MM`) yesterday's summary is sent; `null`: the server's default.
    #[serde(default)]
    time: Option<String>,
    /// Whether summaries are written and sent (default true).
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatientParam {
    patient: Option<String>,
}

/// A patient's settings as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SummarySettingsOut)]
pub(crate) struct SettingsOut {
    patient: String,
    /// The local time summaries are sent (the patient's choice, else the server's default).
    time: String,
    /// Whether the time is the patient's choice.
    chosen: bool,
    enabled: bool,
    time_zone: String,
    /// The last day summarised, when one was.
    last_day: Option<String>,
}

fn settings_out(app: &Wellness, patient: String, row: Option<&sql::PlanRow>, tz: Tz) -> SettingsOut {
    let chosen = row.and_then(|r| r.summary_time.clone());
    SettingsOut {
        patient,
        time: chosen.clone().unwrap_or_else(|| app.config.summary_time.clone()),
        chosen: chosen.is_some(),
        enabled: row.is_none_or(|r| r.enabled),
        time_zone: tz.name().to_owned(),
        last_day: row.and_then(|r| r.last_day.clone()),
    }
}

#[utoipa::path(get, path = "/api/v1/summaries/settings", tag = "wellness",
    params(("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record")),
    responses(
        (status = 200, description = "When the patient's daily summary is sent", body = SettingsOut,
         example = json!({"patient": "0190…", "time": "07:00", "chosen": false, "enabled": true, "time_zone": "Asia/Kolkata", "last_day": "2027-01-14"})),
        (status = 400, description = "Bad parameters (stable code: invalid_query, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "patient_required", "message": "name the patient (`patient`)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_settings(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<PatientParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SettingsOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let row = sql::get(&*app.db, &patient).await?;
    let tz = settings_of(&app, &patient).await?.time_zone;
    Ok(Json(settings_out(&app, patient, row.as_ref(), tz)))
}

#[utoipa::path(put, path = "/api/v1/summaries/settings", tag = "wellness",
    request_body(content = SummarySettings, description = "The local time and whether summaries are sent (enrols the patient)", example = json!({"time": "08:30", "enabled": true})),
    responses(
        (status = 200, description = "The settings now", body = SettingsOut),
        (status = 400, description = "Invalid settings (stable code: invalid_body, invalid_time, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_time", "message": "`time` must be HH:MM"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Only the patient or their caregiver sets this (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "only the patient or their caregiver sets when summaries are sent"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn put_settings(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Json<SettingsOut>, ApiError> {
    let input: SummarySettings =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, input.patient.as_deref()).await?;
    if !matches!(caller.account.role.as_str(), "patient" | "caregiver") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the patient or their caregiver sets when summaries are sent",
        ));
    }
    if let Some(t) = &input.time
        && parse_time(t).is_none()
    {
        return Err(bad("invalid_time", "`time` must be HH:MM"));
    }
    let now = app.clock.now();
    sql::set(&*app.db, &patient, input.time.as_deref(), input.enabled.unwrap_or(true), now.timestamp_millis()).await?;
    let row = sql::get(&*app.db, &patient).await?;
    let tz = settings_of(&app, &patient).await?.time_zone;
    Ok(Json(settings_out(&app, patient, row.as_ref(), tz)))
}

/// What one planner pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planned {
    /// Summaries written (and queued for delivery).
    pub written: usize,
    /// Patients looked at whose time had not come or whose day was done.
    pub waiting: usize,
}

/// One planner pass at `now` (see the module docs). A patient whose summary fails is logged
/// (by code, never content) and looked at again in 15 minutes; the others go on.
pub async fn plan(app: &Wellness, now: DateTime<Utc>) -> Result<Planned, ApiError> {
    let mut out = Planned::default();
    let default_time = parse_time(&app.config.summary_time).unwrap_or(NaiveTime::MIN);
    let rows = sql::due(&*app.db, now.timestamp_millis(), BATCH).await?;
    for row in rows {
        match plan_one(app, &row, now, default_time).await {
            Ok(true) => out.written += 1,
            Ok(false) => out.waiting += 1,
            Err(e) => {
                tracing::error!(code = e.code, "wellness: a daily summary failed");
                let later = now + TimeDelta::minutes(15);
                sql::mark(&*app.db, &row.patient_id, row.last_day.as_deref(), later.timestamp_millis()).await?;
            }
        }
    }
    if out.written > 0 {
        app.notifier.wake();
    }
    Ok(out)
}

/// One patient: waits for their time (false), or writes yesterday's summary (true).
async fn plan_one(
    app: &Wellness,
    row: &sql::PlanRow,
    now: DateTime<Utc>,
    default_time: NaiveTime,
) -> Result<bool, ApiError> {
    let settings = settings_of(app, &row.patient_id).await?;
    let tz = settings.time_zone;
    let time = row.summary_time.as_deref().and_then(parse_time).unwrap_or(default_time);
    let today = summary::local_day(now, tz);
    let due_today = at_local(today, time, tz);
    let day = today - TimeDelta::days(1);
    let done = row.last_day.as_deref().is_some_and(|d| d >= day.to_string().as_str());
    if now < due_today || done {
        let next = if now < due_today { due_today } else { at_local(today + TimeDelta::days(1), time, tz) };
        sql::mark(&*app.db, &row.patient_id, row.last_day.as_deref(), next.timestamp_millis()).await?;
        return Ok(false);
    }
    let lang = settings.language.as_str();
    let store = app.system();
    let summary = build(app, &store, &row.patient_id, day, lang, tz).await?;
    let cat = catalog()?;
    let composition = summary::composition(cat, &row.patient_id, day, lang, &summary.title, &summary.sections, now)
        .map_err(ApiError::internal)?;
    hearth_workflow::fhir::validate(app, "Composition", &composition)
        .map_err(|e| ApiError::internal(format!("a summary Composition does not validate: {}", e.describe())))?;
    let id = composition_id(&row.patient_id, day, lang);
    let mut tx = store.begin().await?;
    if tx.current("Composition", &id).await?.is_none() {
        let write = hearth_workflow::fhir::write_of(app, "Composition", id.clone(), composition);
        interactions::create(&mut tx, write, now).await?;
    }
    let db = hearth_store_sql::notify::TxDb::from_guarded(tx)?;
    let mut args = Map::new();
    args.insert("day".into(), json!(day.to_string()));
    args.insert("summary".into(), json!(summary.text));
    let notice = PatientNotice {
        key: format!("wellness-summary:{}:{day}", row.patient_id),
        patient_id: row.patient_id.clone(),
        category: Category::Results,
        template: "daily-summary".into(),
        args,
        not_before: None,
        channels: Some(vec![ChannelKind::InApp, ChannelKind::Email]),
        include_caregivers: false,
    };
    hearth_notifications::enqueue_for_patient(&app.notifier, &db, &notice, now)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let next = at_local(today + TimeDelta::days(1), time, tz);
    sql::mark(&db, &row.patient_id, Some(&day.to_string()), next.timestamp_millis()).await?;
    db.commit().await?;
    Ok(true)
}

/// Plans every [`PLAN_EVERY`] until the task is dropped.
pub(crate) async fn run(app: Arc<Wellness>) {
    loop {
        let now = app.clock.now();
        if let Err(e) = plan(&app, now).await {
            tracing::error!(code = e.code, "wellness: daily summaries failed");
        }
        tokio::time::sleep(PLAN_EVERY).await;
    }
}

//! `/api/v1/goals`: a patient's measurable wellness goals as FHIR `Goal`s (category `wellness`,
//! the measure's code and a target quantity with `>=` or `<=`), with the day's progress computed
//! from the logs and the streak of days met.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::TimeDelta;
use hearth_store::interactions;
use serde::{Deserialize, Serialize};

use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;

use crate::Wellness;
use crate::catalog::{GOAL_CATEGORY, WELLNESS_SYSTEM};
use crate::logs::{bad, body_of, catalog, patient_of};
use crate::summary::{self, GoalDef, METRICS};

/// Most wellness goals a patient has.
pub const MAX_GOALS: usize = 50;
/// How far back a streak is counted (days).
pub const STREAK_DAYS: i64 = 90;

pub(crate) fn router() -> axum::Router<Arc<Wellness>> {
    axum::Router::new().route("/api/v1/goals", axum::routing::get(list).post(create))
}

/// A new goal.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"metric": "water_ml", "target": 2000}))]
#[schema(as = WellnessGoalIn)]
pub(crate) struct GoalIn {
    /// The Patient id; default the caller's own record.
    #[serde(default)]
    patient: Option<String>,
    /// sleep_minutes, steps, exercise_minutes, water_ml, mood, meditation_minutes or energy_kcal (a day's total; mood: the day's mean).
    metric: String,
    /// The day's target, above 0 (at most 1,000,000).
    target: f64,
    /// `at_least` (default) or `at_most`.
    #[serde(default)]
    direction: Option<String>,
    /// In words (1–200 characters); default the metric and target.
    #[serde(default)]
    description: Option<String>,
}

/// A goal with the day's progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WellnessGoalProgress)]
pub(crate) struct GoalOut {
    #[serde(flatten)]
    goal: GoalDef,
    /// The local day the progress is for.
    date: String,
    /// The day's total (mood: mean) so far; absent when nothing was logged.
    value: Option<f64>,
    /// `value` as a percentage of the target (0 when nothing was logged).
    percent: f64,
    met: bool,
    /// Consecutive days met, ending on `date` if it is met, else on the day before (up to 90).
    streak: u32,
}

/// A patient's goals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WellnessGoals)]
pub(crate) struct GoalsOut {
    patient: String,
    time_zone: String,
    goals: Vec<GoalOut>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GoalsParams {
    patient: Option<String>,
    date: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/goals", tag = "wellness",
    request_body(content = GoalIn, description = "A measurable daily goal", example = json!({"metric": "steps", "target": 8000})),
    responses(
        (status = 201, description = "Stored as a FHIR Goal (category wellness, target.measure the metric's code, target.detailQuantity with comparator)", body = GoalOut,
         example = json!({"id": "0190…", "metric": "water_ml", "target": 2000, "unit": "mL", "direction": "at_least", "description": "Drink water", "status": "active", "date": "2027-01-15", "value": null, "percent": 0, "met": false, "streak": 0})),
        (status = 400, description = "Invalid goal, nothing written (stable code: invalid_body, unknown_metric, invalid_value, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "unknown_metric", "message": "metric is one of sleep_minutes, steps, …"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not set this patient's goals (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 409, description = "The patient has 50 wellness goals already (`too_many_goals`)", body = ErrorEnvelope, example = json!({"error": {"code": "too_many_goals", "message": "at most 50 wellness goals"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<GoalOut>), ApiError> {
    let input: GoalIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, input.patient.as_deref()).await?;
    if !METRICS.contains(&input.metric.as_str()) {
        return Err(bad("unknown_metric", format!("metric is one of {}", METRICS.join(", "))));
    }
    if !input.target.is_finite() || input.target <= 0.0 || input.target > 1_000_000.0 {
        return Err(bad("invalid_value", "target must be above 0 and at most 1000000"));
    }
    let direction = input.direction.clone().unwrap_or_else(|| "at_least".into());
    if !["at_least", "at_most"].contains(&direction.as_str()) {
        return Err(bad("invalid_value", "direction is at_least or at_most"));
    }
    if let Some(d) = &input.description
        && !hearth_workflow::fhir::is_display_text(d, 200)
    {
        return Err(bad("invalid_value", "description must be 1 to 200 characters without control characters"));
    }
    let cat = catalog()?;
    let existing = goals_of(&app, &store, &patient).await?;
    if existing.len() >= MAX_GOALS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_goals",
            format!("at most {MAX_GOALS} wellness goals"),
        ));
    }
    let now = app.clock.now();
    let settings = crate::daily::settings_of(&app, &patient).await?;
    let today = summary::local_day(now, settings.time_zone);
    let (_, unit) = summary::metric_code(&input.metric).unwrap_or(("", ""));
    let goal = GoalDef {
        id: uuid::Uuid::now_v7().to_string(),
        metric: input.metric.clone(),
        target: input.target,
        unit: unit.to_owned(),
        direction,
        description: input.description.clone().unwrap_or_default(),
        status: "active".into(),
    };
    let mut resource = summary::goal_resource(cat, &goal, &patient, today).map_err(ApiError::internal)?;
    if goal.description.is_empty()
        && let Some(d) = resource.pointer_mut("/description/text")
    {
        *d = serde_json::json!(format!(
            "{} {} {}",
            goal.metric,
            if goal.direction == "at_most" { "<=" } else { ">=" },
            input.target
        ));
    }
    hearth_workflow::fhir::validate(&app, "Goal", &resource)
        .map_err(|e| bad("invalid_value", format!("the Goal does not validate: {}", e.describe())))?;
    let mut tx = store.begin().await?;
    let write = hearth_workflow::fhir::write_of(&app, "Goal", goal.id.clone(), resource);
    let version = interactions::create(&mut tx, write, now).await?;
    tx.commit().await?;
    crate::daily::enrol(&app, &patient, now).await;
    let stored = body_of(&version).and_then(|b| summary::goal_of(&goal.id, &b)).unwrap_or(goal);
    let mut out = progress(&app, &store, &patient, settings.time_zone, today, vec![stored]).await?;
    let one = out.pop().ok_or_else(|| ApiError::internal("the new goal vanished"))?;
    Ok((StatusCode::CREATED, Json(one)))
}

/// The patient's wellness goals.
async fn goals_of(app: &Wellness, store: &hearth_store::Guarded, patient: &str) -> Result<Vec<GoalDef>, ApiError> {
    let found = app
        .search_all(
            store,
            "Goal",
            &[
                ("patient".to_owned(), format!("Patient/{patient}")),
                ("category".to_owned(), format!("{WELLNESS_SYSTEM}|{GOAL_CATEGORY}")),
            ],
            MAX_GOALS + 1,
        )
        .await?;
    Ok(found.iter().filter_map(|v| summary::goal_of(&v.id, &body_of(v)?)).collect())
}

/// Public to the daily summary: the patient's active goals (through `store`).
pub(crate) async fn active_goals(
    app: &Wellness,
    store: &hearth_store::Guarded,
    patient: &str,
) -> Result<Vec<GoalDef>, ApiError> {
    Ok(goals_of(app, store, patient).await?.into_iter().filter(|g| g.status == "active").collect())
}

async fn progress(
    app: &Wellness,
    store: &hearth_store::Guarded,
    patient: &str,
    tz: chrono_tz::Tz,
    day: chrono::NaiveDate,
    goals: Vec<GoalDef>,
) -> Result<Vec<GoalOut>, ApiError> {
    let (entries, steps) = crate::daily::load(app, store, patient, day - TimeDelta::days(STREAK_DAYS), day, tz).await?;
    let days = summary::by_day(&entries, &steps, tz);
    Ok(goals
        .into_iter()
        .map(|g| {
            let value = days.get(&day).and_then(|m| m.get(&g.metric));
            let met = summary::met(&g, value);
            let end = if met { day } else { day - TimeDelta::days(1) };
            let streak = summary::streak(&g, &days, end, STREAK_DAYS);
            let percent = value.map_or(0.0, |v| ((v / g.target) * 1000.0).round() / 10.0);
            GoalOut { goal: g, date: day.to_string(), value, percent, met, streak }
        })
        .collect())
}

#[utoipa::path(get, path = "/api/v1/goals", tag = "wellness",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("date" = Option<String>, Query, description = "The local day (YYYY-MM-DD) progress is for; default today in the patient's time zone"),
    ),
    responses(
        (status = 200, description = "The patient's wellness goals with the day's progress and streaks", body = GoalsOut,
         example = json!({"patient": "0190…", "time_zone": "Asia/Kolkata", "goals": [{"id": "0190…", "metric": "water_ml", "target": 2000, "unit": "mL", "direction": "at_least", "description": "Drink water", "status": "active", "date": "2027-01-15", "value": 1500, "percent": 75, "met": false, "streak": 3}]})),
        (status = 400, description = "Bad parameters (stable code: invalid_query, invalid_date, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_date", "message": "`date` must be YYYY-MM-DD"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<GoalsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<GoalsOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let settings = crate::daily::settings_of(&app, &patient).await?;
    let day = match q.date.as_deref() {
        Some(d) => crate::daily::parse_day(d)?,
        None => summary::local_day(app.clock.now(), settings.time_zone),
    };
    let goals = goals_of(&app, &store, &patient).await?;
    let goals = progress(&app, &store, &patient, settings.time_zone, day, goals).await?;
    Ok(Json(GoalsOut { patient, time_zone: settings.time_zone.name().to_owned(), goals }))
}

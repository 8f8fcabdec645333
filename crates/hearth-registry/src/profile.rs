//! `/api/v1/profile`: the patient's own profile — demographics, language, time zone, preferred
//! units and goals — on their `Patient` and `Goal` resources, through the caller's guarded store
//! (authorization in the storage API; every request audited).
//!
//! - The time zone and units are Patient extensions under `urn:hearth:extension:` (`time-zone`,
//!   a `valueCode` IANA name; `units`, with `system`, `glucose` and `temperature` sub-extensions).
//!   Setting the zone also sets it on the notification settings of every account of the patient,
//!   in the same transaction: that is the zone medication reminders, quiet hours and alarms use,
//!   and the one `GET` answers (the extension only for a record without an account).
//! - Goals are FHIR `Goal`s of the patient (`description.text`, `target[0].detailString`,
//!   `target[0].dueDate`, `lifecycleStatus`); a goal with an `id` is updated, one without is
//!   created; goals not named are left as they are.
//! - `PUT` is the patient's, for their own record, and changes what the demographics update lets
//!   a patient change (phone, e-mail, address, language) plus zone, units and goals; a caregiver
//!   reads a linked patient's profile (`?patient=`) but does not change it (`403
//!   profile_read_only`), nor does staff here (they use `/api/v1/patients/{id}/demographics`).
//! - Patient and Goals and the zone commit in one transaction: a refusal writes nothing.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use chrono_tz::Tz;
use hearth_auth::Role;
use hearth_store::{Current, Guarded, StoreError, interactions};
use hearth_store_sql::notify::TxDb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

use crate::patients::{AddressIn, PatientSummary};
use crate::{Registry, bad, json_of, not_found};

/// The extension holding the patient's IANA time zone.
pub const EXT_TIME_ZONE: &str = "urn:hearth:extension:time-zone";
/// The extension holding the patient's preferred units.
pub const EXT_UNITS: &str = "urn:hearth:extension:units";
/// Most goals a profile answers or a change names.
const MAX_GOALS: usize = 50;
const GOAL_STATUSES: [&str; 9] =
    ["proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled", "entered-in-error", "rejected"];

pub(crate) fn router() -> axum::Router<Arc<Registry>> {
    axum::Router::new().route("/api/v1/profile", axum::routing::get(profile).put(update_profile))
}

/// Preferred units.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"system": "metric", "glucose": "mmol/L", "temperature": "Cel"}))]
pub(crate) struct Units {
    /// `metric` or `imperial` (weights, heights).
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    /// `mg/dL` or `mmol/L`.
    #[serde(skip_serializing_if = "Option::is_none")]
    glucose: Option<String>,
    /// UCUM: `Cel` or `[degF]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<String>,
}

impl Units {
    fn check(&self) -> Result<(), ApiError> {
        let ok = |v: &Option<String>, allowed: &[&str]| v.as_deref().is_none_or(|v| allowed.contains(&v));
        if ok(&self.system, &["metric", "imperial"])
            && ok(&self.glucose, &["mg/dL", "mmol/L"])
            && ok(&self.temperature, &["Cel", "[degF]"])
        {
            Ok(())
        } else {
            Err(bad(
                "invalid_units",
                "units: system metric or imperial, glucose mg/dL or mmol/L, temperature Cel or [degF]",
            ))
        }
    }

    fn extension(&self) -> Value {
        let mut parts = Vec::new();
        for (url, v) in [("system", &self.system), ("glucose", &self.glucose), ("temperature", &self.temperature)] {
            if let Some(v) = v {
                parts.push(json!({"url": url, "valueCode": v}));
            }
        }
        json!({"url": EXT_UNITS, "extension": parts})
    }

    fn of(p: &Value) -> Units {
        let part = |name: &str| {
            extension(p, EXT_UNITS)
                .and_then(|e| e.get("extension"))
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x.get("url").and_then(Value::as_str) == Some(name)))
                .and_then(|x| x.get("valueCode"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Units { system: part("system"), glucose: part("glucose"), temperature: part("temperature") }
    }
}

/// A goal as sent.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct GoalIn {
    /// An existing goal of the patient to change; absent: a new goal.
    id: Option<String>,
    /// What the goal is (1 to 500 characters).
    description: String,
    /// The target in words (`HbA1c below 7 %`).
    target: Option<String>,
    /// `YYYY-MM-DD`.
    due: Option<String>,
    /// FHIR `Goal.lifecycleStatus`; default `active`.
    status: Option<String>,
}

/// A goal as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct GoalOut {
    id: String,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    due: Option<String>,
    status: String,
}

/// A change to the profile: any subset.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"language": "hi", "timeZone": "Asia/Kolkata", "units": {"glucose": "mmol/L"}, "goals": [{"description": "Walk 30 minutes a day", "due": "2027-03-01"}]}))]
pub(crate) struct ProfileIn {
    phone: Option<String>,
    email: Option<String>,
    address: Option<AddressIn>,
    /// BCP-47 (`hi`, `hi-Latn`).
    language: Option<String>,
    /// An IANA zone.
    time_zone: Option<String>,
    units: Option<Units>,
    goals: Option<Vec<GoalIn>>,
}

/// The profile.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileOut {
    /// The demographics, as `/api/v1/patients/{id}/demographics` answers them.
    #[schema(value_type = PatientSummary)]
    demographics: Value,
    /// The zone the patient's reminders and alarms follow.
    time_zone: String,
    units: Units,
    goals: Vec<GoalOut>,
}

fn extension<'a>(p: &'a Value, url: &str) -> Option<&'a Value> {
    p.get("extension")?.as_array()?.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

fn set_extension(p: &mut Value, url: &str, value: Value) {
    let Some(o) = p.as_object_mut() else { return };
    let list = o.entry("extension").or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut() {
        a.retain(|e| e.get("url").and_then(Value::as_str) != Some(url));
        a.push(value);
    }
}

fn goal_out(id: &str, g: &Value) -> GoalOut {
    let s = |ptr: &str| g.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
    GoalOut {
        id: id.to_owned(),
        description: s("/description/text").unwrap_or_default(),
        target: s("/target/0/detailString"),
        due: s("/target/0/dueDate"),
        status: s("/lifecycleStatus").unwrap_or_default(),
    }
}

async fn goals_of(app: &Registry, store: &Guarded, patient: &str) -> Result<Vec<GoalOut>, ApiError> {
    let found =
        app.search_all(store, "Goal", &[("patient".to_owned(), format!("Patient/{patient}"))], MAX_GOALS).await?;
    let mut out = Vec::new();
    for v in &found {
        out.push(goal_out(&v.id, &json_of(v)?));
    }
    Ok(out)
}

async fn answer(
    app: &Registry,
    store: &Guarded,
    caller: &Caller,
    patient: &str,
    version: &hearth_store::Version,
) -> Result<ProfileOut, ApiError> {
    let p = json_of(version)?;
    // The zone in force: the patient's account's notification zone (what reminders, quiet
    // hours and alarms follow; `PUT /api/v1/notifications/preferences` may have changed it
    // since), else the Patient's extension (a record without an account), else the default.
    let account = match caller.own_patient() {
        Some(own) if own == patient => Some(caller.account.id.clone()),
        _ => hearth_store_sql::identity::accounts_of(&*app.db, &format!("Patient/{patient}")).await?.into_iter().next(),
    };
    let zone = match (account, extension(&p, EXT_TIME_ZONE).and_then(|e| e.get("valueCode")).and_then(Value::as_str)) {
        (Some(a), _) => app.notifier.settings(&*app.db, &a).await?.time_zone.name().to_owned(),
        (None, Some(z)) => z.to_owned(),
        (None, None) => app.notifier.with_defaults(None).time_zone.name().to_owned(),
    };
    Ok(ProfileOut {
        demographics: crate::patients::summary(version, &p),
        time_zone: zone,
        units: Units::of(&p),
        goals: goals_of(app, store, patient).await?,
    })
}

#[utoipa::path(get, path = "/api/v1/profile", tag = "registry",
    params(("patient" = Option<String>, Query, description = "A linked patient (caregivers, staff within reach); default the caller's own record")),
    responses(
        (status = 200, description = "The profile", body = ProfileOut),
        (status = 400, description = "No patient: a caller without a record of their own names one (`patient_required`), or an unknown parameter (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "patient_required", "message": "name the patient (`patient`)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown, or not the caller's to see (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn profile(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<ProfileOut>, ApiError> {
    let mut named = None;
    for (k, v) in hearth_workflow::fhir::pairs(raw.as_deref()) {
        match k.as_str() {
            "patient" if named.is_none() => named = Some(v),
            _ => return Err(bad("invalid_query", format!("unknown or repeated parameter `{k}`"))),
        }
    }
    let store = app.store_for(&caller);
    let (patient, version) = hearth_workflow::fhir::requested_patient(&store, &caller, named.as_deref()).await?;
    Ok(Json(answer(&app, &store, &caller, &patient, &version).await?))
}

fn check_goal(g: &GoalIn) -> Result<(), ApiError> {
    let d = g.description.trim();
    if d.is_empty() || d.chars().count() > 500 || g.target.as_deref().is_some_and(|t| t.chars().count() > 500) {
        return Err(bad("invalid_goal", "a goal's description (and target) is 1 to 500 characters"));
    }
    if let Some(due) = &g.due
        && chrono::NaiveDate::parse_from_str(due, "%Y-%m-%d").is_err()
    {
        return Err(bad("invalid_date", format!("due `{due}` is not a date YYYY-MM-DD")));
    }
    if let Some(s) = &g.status
        && !GOAL_STATUSES.contains(&s.as_str())
    {
        return Err(bad("invalid_goal", format!("status `{s}` is not a Goal lifecycleStatus")));
    }
    if g.id.as_deref().is_some_and(|id| !hearth_workflow::fhir::valid_id(id)) {
        return Err(bad("invalid_goal", "a goal id is a FHIR id"));
    }
    Ok(())
}

fn goal_resource(patient: &str, g: &GoalIn) -> Value {
    let mut r = json!({
        "resourceType": "Goal",
        "lifecycleStatus": g.status.as_deref().unwrap_or("active"),
        "description": {"text": g.description.trim()},
        "subject": {"reference": format!("Patient/{patient}")},
    });
    let mut target = Map::new();
    if let Some(t) = &g.target {
        target.insert("detailString".into(), json!(t));
    }
    if let Some(d) = &g.due {
        target.insert("dueDate".into(), json!(d));
    }
    if !target.is_empty()
        && let Some(o) = r.as_object_mut()
    {
        o.insert("target".into(), json!([target]));
    }
    r
}

#[utoipa::path(put, path = "/api/v1/profile", tag = "registry",
    request_body(content = ProfileIn, description = "Any subset. The patient changes their own phone, email, address, language, time zone, units and goals (name, birth date and gender are the clinic's: /api/v1/patients/{id}/demographics). Everything is written in one transaction"),
    responses(
        (status = 200, description = "The profile as it now is", body = ProfileOut),
        (status = 400, description = "Nothing written. Stable codes: invalid_body, invalid_time_zone, invalid_units, invalid_goal (a bad description, status or id, or a goal that is not the patient's), invalid_date, and those of the demographics update (invalid_phone, invalid_email, invalid_address, invalid_language)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_time_zone", "message": "`Mars/Base` is not an IANA time zone"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not a patient changing their own profile (`profile_read_only`: caregivers and staff read it)", body = ErrorEnvelope, example = json!({"error": {"code": "profile_read_only", "message": "only the patient changes their profile"}})),
        (status = 404, description = "The caller's record is gone (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn update_profile(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Json<ProfileOut>, ApiError> {
    let patient = match (caller.role, caller.own_patient()) {
        (Role::Patient, Some(p)) => p.to_owned(),
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "profile_read_only",
                "only the patient changes their profile",
            ));
        }
    };
    let input: ProfileIn = crate::body_of(&body)?;
    let zone: Option<Tz> = match input.time_zone.as_deref() {
        None => None,
        Some(z) => {
            Some(z.parse::<Tz>().map_err(|_| bad("invalid_time_zone", format!("`{z}` is not an IANA time zone")))?)
        }
    };
    if let Some(u) = &input.units {
        u.check()?;
    }
    let goals = input.goals.clone().unwrap_or_default();
    if goals.len() > MAX_GOALS {
        return Err(bad("invalid_goal", format!("at most {MAX_GOALS} goals in one change")));
    }
    for g in &goals {
        check_goal(g)?;
    }
    let now = app.clock.now();
    let store = app.store_for(&caller);
    let mut tx = store.begin().await?;
    let current = match tx.read("Patient", &patient).await? {
        Current::Found(v) => v,
        _ => return Err(not_found("patient")),
    };
    let mut p = json_of(&current)?;
    crate::patients::apply_contact(&mut p, input.phone, input.email, input.address, input.language, now.date_naive())?;
    if let Some(z) = zone {
        set_extension(&mut p, EXT_TIME_ZONE, json!({"url": EXT_TIME_ZONE, "valueCode": z.name()}));
    }
    if let Some(u) = &input.units {
        set_extension(&mut p, EXT_UNITS, u.extension());
    }
    crate::check(&app, "Patient", &p)?;
    let write = hearth_workflow::fhir::write_of(&app, "Patient", patient.clone(), p);
    interactions::update(&mut tx, write, Some(current.version_id), now).await?;
    for g in &goals {
        let resource = goal_resource(&patient, g);
        crate::check(&app, "Goal", &resource)?;
        match &g.id {
            Some(id) => {
                let existing = match tx.read("Goal", id).await {
                    Ok(Current::Found(v)) => json_of(&v)?,
                    Ok(_) | Err(StoreError::Forbidden(_)) => {
                        return Err(bad("invalid_goal", format!("no goal {id} of this patient")));
                    }
                    Err(e) => return Err(e.into()),
                };
                if existing.pointer("/subject/reference").and_then(Value::as_str)
                    != Some(format!("Patient/{patient}").as_str())
                {
                    return Err(bad("invalid_goal", format!("no goal {id} of this patient")));
                }
                let write = hearth_workflow::fhir::write_of(&app, "Goal", id.clone(), resource);
                interactions::update(&mut tx, write, None, now).await?;
            }
            None => {
                let write = hearth_workflow::fhir::write_of(&app, "Goal", uuid::Uuid::now_v7().to_string(), resource);
                interactions::create(&mut tx, write, now).await?;
            }
        }
    }
    let tx = TxDb::from_guarded(tx)?;
    if let Some(z) = zone {
        for account in hearth_store_sql::identity::accounts_of(&tx, &format!("Patient/{patient}")).await? {
            hearth_notifications::set_time_zone(&app.notifier, &tx, &account, z).await?;
        }
    }
    tx.commit().await?;
    let store = app.store_for(&caller);
    let (patient, version) = hearth_workflow::fhir::requested_patient(&store, &caller, None).await?;
    Ok(Json(answer(&app, &store, &caller, &patient, &version).await?))
}

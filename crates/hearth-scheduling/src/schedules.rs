//! Availability as FHIR `Schedule`s (`/api/v1/schedules`) and the slot search over them
//! (`GET /api/v1/appointments/slots/available`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use hearth_store::Version;
use hearth_store::interactions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::slots::{self, AppointmentType, Availability, Exception, Hours, Rules, Slot, Window};
use super::{EXT, V2_0276, bad, forbidden, not_found, own_practitioner, read_json, search_all};
use crate::Scheduling;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

pub fn router() -> axum::Router<Arc<Scheduling>> {
    axum::Router::new()
        .route("/api/v1/schedules", axum::routing::get(list).post(create))
        .route("/api/v1/schedules/{id}", axum::routing::get(get_one).put(replace))
        .route("/api/v1/appointments/slots/available", axum::routing::get(available))
}

const APPOINTMENT_TYPES: [&str; 5] = ["CHECKUP", "EMERGENCY", "FOLLOWUP", "ROUTINE", "WALKIN"];

/// The app API's form of a schedule: a practitioner's weekly hours in their time zone, the
/// appointment types offered, one-off exceptions and the booking rules.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"practitioner": "123", "timeZone": "Europe/London", "hours": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}], "types": [{"code": "ROUTINE", "minutes": 30, "buffer": 5}], "exceptions": [{"date": "2026-12-24", "available": false}], "rules": {"maxDaysAhead": 60, "minNoticeMinutes": 120, "maxPerDay": 12}}))]
pub struct ScheduleBody {
    /// The practitioner's id (or `Practitioner/<id>`).
    #[serde(deserialize_with = "hearth_workflow::refs::practitioner")]
    pub practitioner: String,
    /// IANA time zone the hours are in.
    #[schema(example = "Asia/Kolkata")]
    pub time_zone: String,
    /// A Location id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "hearth_workflow::refs::opt_location")]
    pub location: Option<String>,
    /// A HealthcareService id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "hearth_workflow::refs::opt_healthcare_service")]
    pub service: Option<String>,
    pub hours: Vec<HoursBody>,
    pub types: Vec<TypeBody>,
    #[serde(default)]
    pub exceptions: Vec<ExceptionBody>,
    #[serde(default)]
    pub rules: RulesBody,
}

/// Weekly hours.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoursBody {
    /// `mon` … `sun`.
    #[schema(example = json!(["mon", "tue"]))]
    pub days: Vec<String>,
    /// `HH:MM` on a 5-minute boundary.
    #[schema(example = "09:00")]
    pub start: String,
    #[schema(example = "17:00")]
    pub end: String,
}

/// An appointment type offered.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeBody {
    /// HL7 v2 table 0276: `CHECKUP`, `EMERGENCY`, `FOLLOWUP`, `ROUTINE` or `WALKIN`.
    #[schema(example = "ROUTINE")]
    pub code: String,
    /// Length in minutes (a multiple of 5).
    #[schema(example = 30)]
    pub minutes: u32,
    /// Minutes kept free after each.
    #[serde(default)]
    pub buffer: u32,
}

/// A one-off change: a day off, or other hours on a day.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionBody {
    /// `YYYY-MM-DD`.
    #[schema(example = "2026-12-24")]
    pub date: String,
    /// `false`: not available (all day, or `start`–`end`); `true`: available `start`–`end` only.
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// Booking rules.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RulesBody {
    /// How far ahead slots are offered.
    #[schema(example = 90)]
    pub max_days_ahead: u32,
    /// The least notice a booking needs.
    #[schema(example = 60)]
    pub min_notice_minutes: u32,
    /// At most this many appointments a day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_day: Option<u32>,
}

/// A stored schedule: its id and its form.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView<'a> {
    /// The FHIR Schedule id.
    id: &'a str,
    #[serde(flatten)]
    body: &'a ScheduleBody,
}

/// Schedules.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleList<'a> {
    schedules: Vec<ScheduleView<'a>>,
}

/// A free slot.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotView<'a> {
    #[schema(example = "2026-12-01T09:00:00Z")]
    start: String,
    #[schema(example = "2026-12-01T09:30:00Z")]
    end: String,
    /// The Practitioner id.
    practitioner: &'a str,
    /// The Schedule id.
    schedule: &'a str,
    /// The appointment type code.
    #[serde(rename = "type")]
    #[schema(example = "ROUTINE")]
    kind: &'a str,
    /// The Location id.
    location: Option<&'a str>,
    /// The HealthcareService id.
    service: Option<&'a str>,
}

/// Free slots, in time order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotList<'a> {
    slots: Vec<SlotView<'a>>,
}

impl Default for RulesBody {
    fn default() -> Self {
        let r = Rules::default();
        RulesBody {
            max_days_ahead: r.max_days_ahead,
            min_notice_minutes: r.min_notice_minutes,
            max_per_day: r.max_per_day,
        }
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    bad("invalid_schedule", msg)
}

fn window(start: &str, end: &str) -> Result<Window, ApiError> {
    let parse = |s: &str| {
        slots::parse_time(s)
            .filter(|m| m % 5 == 0)
            .ok_or_else(|| invalid(format!("`{s}` is not a time HH:MM on a 5-minute boundary")))
    };
    let (start, end) = (parse(start)?, parse(end)?);
    if start >= end {
        return Err(invalid("a window's end must be after its start"));
    }
    Ok(Window { start, end })
}

impl ScheduleBody {
    /// Parses the rules (checked: codes, multiples of 5 minutes, windows).
    pub fn availability(&self) -> Result<Availability, ApiError> {
        let time_zone: Tz = self.time_zone.parse().map_err(|_| invalid("timeZone is not an IANA time zone"))?;
        let mut hours = Vec::new();
        for h in &self.hours {
            let days = h
                .days
                .iter()
                .map(|d| slots::parse_day(d).ok_or_else(|| invalid(format!("`{d}` is not a day (mon … sun)"))))
                .collect::<Result<Vec<_>, _>>()?;
            if days.is_empty() {
                return Err(invalid("weekly hours need at least one day"));
            }
            hours.push(Hours { days, window: window(&h.start, &h.end)? });
        }
        if self.types.is_empty() {
            return Err(invalid("a schedule offers at least one appointment type"));
        }
        let mut types: Vec<AppointmentType> = Vec::new();
        for t in &self.types {
            if !APPOINTMENT_TYPES.contains(&t.code.as_str()) {
                return Err(invalid(format!(
                    "appointment type `{}` is not one of {APPOINTMENT_TYPES:?} (HL7 v2 0276)",
                    t.code
                )));
            }
            if t.minutes == 0 || t.minutes % 5 != 0 || t.buffer % 5 != 0 || t.minutes + t.buffer > 24 * 60 {
                return Err(invalid(
                    "minutes and buffer are multiples of 5 (minutes at least 5, together at most a day)",
                ));
            }
            if types.iter().any(|x| x.code == t.code) {
                return Err(invalid(format!("appointment type `{}` is listed twice", t.code)));
            }
            types.push(AppointmentType { code: t.code.clone(), minutes: t.minutes, buffer: t.buffer });
        }
        let mut exceptions = Vec::new();
        for e in &self.exceptions {
            let date = NaiveDate::parse_from_str(&e.date, "%Y-%m-%d")
                .map_err(|_| invalid(format!("`{}` is not a date YYYY-MM-DD", e.date)))?;
            let w = match (&e.start, &e.end) {
                (Some(s), Some(t)) => Some(window(s, t)?),
                (None, None) if !e.available => None,
                _ => return Err(invalid("an exception gives both start and end (a closure may give neither)")),
            };
            exceptions.push(Exception { date, available: e.available, window: w });
        }
        let r = &self.rules;
        if r.max_days_ahead == 0 || r.max_days_ahead > 3660 || r.max_per_day == Some(0) {
            return Err(invalid("rules: maxDaysAhead 1 to 3660, maxPerDay at least 1"));
        }
        let rules = Rules {
            max_days_ahead: r.max_days_ahead,
            min_notice_minutes: r.min_notice_minutes,
            max_per_day: r.max_per_day,
        };
        for (what, id) in [
            ("practitioner", Some(&self.practitioner)),
            ("location", self.location.as_ref()),
            ("service", self.service.as_ref()),
        ] {
            if let Some(id) = id
                && !hearth_workflow::fhir::valid_id(id)
            {
                return Err(invalid(format!("`{what}` must be a resource id")));
            }
        }
        Ok(Availability { time_zone, hours, types, exceptions, rules })
    }

    /// The FHIR `Schedule` recording it.
    fn to_fhir(&self, role: &str) -> Value {
        let ext = |name: &str, parts: Vec<Value>| json!({"url": format!("{EXT}schedule-{name}"), "extension": parts});
        let part = |url: &str, key: &str, value: Value| {
            let mut m = serde_json::Map::new();
            m.insert("url".into(), json!(url));
            m.insert(key.into(), value);
            Value::Object(m)
        };
        let time = |s: &str| format!("{s}:00").replace("24:00:00", "23:59:59");
        let mut extension = vec![json!({"url": format!("{EXT}schedule-time-zone"), "valueCode": self.time_zone})];
        for h in &self.hours {
            let mut parts: Vec<Value> = h.days.iter().map(|d| part("day", "valueCode", json!(d))).collect();
            parts.push(part("start", "valueTime", json!(time(&h.start))));
            parts.push(part("end", "valueTime", json!(time(&h.end))));
            extension.push(ext("hours", parts));
        }
        for t in &self.types {
            extension.push(ext(
                "appointment-type",
                vec![
                    part("type", "valueCoding", json!({"system": V2_0276, "code": t.code})),
                    part("minutes", "valuePositiveInt", json!(t.minutes)),
                    part("buffer", "valueUnsignedInt", json!(t.buffer)),
                ],
            ));
        }
        for e in &self.exceptions {
            let mut parts =
                vec![part("date", "valueDate", json!(e.date)), part("available", "valueBoolean", json!(e.available))];
            if let (Some(s), Some(t)) = (&e.start, &e.end) {
                parts.push(part("start", "valueTime", json!(time(s))));
                parts.push(part("end", "valueTime", json!(time(t))));
            }
            extension.push(ext("exception", parts));
        }
        let mut rules = vec![
            part("maxDaysAhead", "valuePositiveInt", json!(self.rules.max_days_ahead)),
            part("minNoticeMinutes", "valueUnsignedInt", json!(self.rules.min_notice_minutes)),
        ];
        if let Some(m) = self.rules.max_per_day {
            rules.push(part("maxPerDay", "valuePositiveInt", json!(m)));
        }
        extension.push(ext("booking-rules", rules));
        let mut actor = vec![
            json!({"reference": format!("Practitioner/{}", self.practitioner)}),
            json!({"reference": format!("PractitionerRole/{role}")}),
        ];
        if let Some(l) = &self.location {
            actor.push(json!({"reference": format!("Location/{l}")}));
        }
        if let Some(s) = &self.service {
            actor.push(json!({"reference": format!("HealthcareService/{s}")}));
        }
        json!({
            "resourceType": "Schedule",
            "extension": extension,
            "active": true,
            "serviceType": self.types.iter().map(|t| json!({"coding": [{"system": V2_0276, "code": t.code}]})).collect::<Vec<_>>(),
            "actor": actor,
        })
    }

    /// Reads a stored `Schedule` back (None: not one of ours).
    pub fn from_fhir(s: &Value) -> Option<ScheduleBody> {
        let exts = s.get("extension")?.as_array()?;
        let named = |name: &str| {
            let url = format!("{EXT}schedule-{name}");
            exts.iter().filter(move |e| e.get("url").and_then(Value::as_str) == Some(url.as_str()))
        };
        let parts = |e: &Value, url: &str, key: &str| -> Vec<Value> {
            e.get("extension")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|p| p.get("url").and_then(Value::as_str) == Some(url))
                        .filter_map(|p| p.get(key).cloned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let one = |e: &Value, url: &str, key: &str| parts(e, url, key).into_iter().next();
        let hhmm = |v: Option<Value>| -> Option<String> {
            let t = v?.as_str()?.to_owned();
            Some(if t == "23:59:59" { "24:00".to_owned() } else { t.get(..5)?.to_owned() })
        };
        let time_zone = named("time-zone").next()?.get("valueCode")?.as_str()?.to_owned();
        let mut hours = Vec::new();
        for e in named("hours") {
            let days = parts(e, "day", "valueCode").iter().filter_map(|d| d.as_str().map(str::to_owned)).collect();
            hours.push(HoursBody {
                days,
                start: hhmm(one(e, "start", "valueTime"))?,
                end: hhmm(one(e, "end", "valueTime"))?,
            });
        }
        let mut types = Vec::new();
        for e in named("appointment-type") {
            let code = one(e, "type", "valueCoding")?.get("code")?.as_str()?.to_owned();
            let minutes = u32::try_from(one(e, "minutes", "valuePositiveInt")?.as_u64()?).ok()?;
            let buffer = u32::try_from(one(e, "buffer", "valueUnsignedInt")?.as_u64()?).ok()?;
            types.push(TypeBody { code, minutes, buffer });
        }
        let mut exceptions = Vec::new();
        for e in named("exception") {
            exceptions.push(ExceptionBody {
                date: one(e, "date", "valueDate")?.as_str()?.to_owned(),
                available: one(e, "available", "valueBoolean")?.as_bool()?,
                start: hhmm(one(e, "start", "valueTime")),
                end: hhmm(one(e, "end", "valueTime")),
            });
        }
        let r = named("booking-rules").next()?;
        let num = |url: &str, key: &str| one(r, url, key).and_then(|v| v.as_u64()).and_then(|n| u32::try_from(n).ok());
        let rules = RulesBody {
            max_days_ahead: num("maxDaysAhead", "valuePositiveInt")?,
            min_notice_minutes: num("minNoticeMinutes", "valueUnsignedInt")?,
            max_per_day: num("maxPerDay", "valuePositiveInt"),
        };
        let actors: Vec<&str> =
            s.get("actor")?.as_array()?.iter().filter_map(|a| a.get("reference")?.as_str()).collect();
        let of = |prefix: &str| actors.iter().find_map(|a| a.strip_prefix(prefix)).map(str::to_owned);
        Some(ScheduleBody {
            practitioner: of("Practitioner/")?,
            time_zone,
            location: of("Location/"),
            service: of("HealthcareService/"),
            hours,
            types,
            exceptions,
            rules,
        })
    }
}

impl ScheduleBody {
    /// The `PractitionerRole` stating the same availability in FHIR's own elements (weekly
    /// `availableTime`, closures as `notAvailable` periods), for systems that read those; the
    /// Schedule's extensions remain what slots are computed from (R4 has no time zone here).
    fn practitioner_role(&self, a: &Availability) -> Value {
        let time = |m: u32| if m >= 24 * 60 { "23:59:59".to_owned() } else { format!("{}:00", slots::format_time(m)) };
        let available: Vec<Value> = a
            .hours
            .iter()
            .map(|h| {
                json!({"daysOfWeek": h.days.iter().map(|d| slots::day_code(*d)).collect::<Vec<_>>(),
                       "availableStartTime": time(h.window.start), "availableEndTime": time(h.window.end)})
            })
            .collect();
        let not_available: Vec<Value> = a
            .exceptions
            .iter()
            .filter(|e| !e.available)
            .filter_map(|e| {
                let w = e.window.unwrap_or(Window { start: 0, end: 24 * 60 });
                let start = slots::instant(a.time_zone, e.date, w.start, true)?;
                let end = slots::instant(a.time_zone, e.date, w.end, false)?;
                Some(json!({"description": "Not available", "during": {"start": super::instant(start), "end": super::instant(end)}}))
            })
            .collect();
        let mut role = json!({
            "resourceType": "PractitionerRole",
            "active": true,
            "practitioner": {"reference": format!("Practitioner/{}", self.practitioner)},
        });
        if let Some(o) = role.as_object_mut() {
            if let Some(l) = &self.location {
                o.insert("location".into(), json!([{"reference": format!("Location/{l}")}]));
            }
            if let Some(svc) = &self.service {
                o.insert("healthcareService".into(), json!([{"reference": format!("HealthcareService/{svc}")}]));
            }
            if !available.is_empty() {
                o.insert("availableTime".into(), Value::Array(available));
            }
            if !not_available.is_empty() {
                o.insert("notAvailable".into(), Value::Array(not_available));
            }
        }
        role
    }
}

/// A stored schedule, parsed.
#[derive(Debug, Clone)]
pub struct StoredSchedule {
    pub id: String,
    pub body: ScheduleBody,
    pub availability: Availability,
}

fn stored(v: &Version) -> Option<StoredSchedule> {
    let j: Value = serde_json::from_str(v.body.as_deref()?).ok()?;
    if j.get("active").and_then(Value::as_bool) == Some(false) {
        return None;
    }
    let body = ScheduleBody::from_fhir(&j)?;
    let availability = body.availability().ok()?;
    Some(StoredSchedule { id: v.id.clone(), body, availability })
}

/// The active schedules of a practitioner (optionally for one service), read as the system:
/// availability is not patient data.
pub async fn schedules_of(
    app: &Scheduling,
    practitioner: &str,
    service: Option<&str>,
) -> Result<Vec<StoredSchedule>, ApiError> {
    let found =
        search_all(app, &app.system(), "Schedule", &[("actor", format!("Practitioner/{practitioner}"))], 200).await?;
    Ok(found
        .iter()
        .filter_map(stored)
        .filter(|s| service.is_none_or(|svc| s.body.service.as_deref() == Some(svc)))
        .collect())
}

fn view<'a>(id: &'a str, body: &'a ScheduleBody) -> ScheduleView<'a> {
    ScheduleView { id, body }
}

/// Only the practitioner themselves and admins manage a practitioner's availability.
fn may_manage(caller: &Caller, practitioner: &str) -> Result<(), ApiError> {
    match caller.role {
        hearth_auth::Role::Admin => Ok(()),
        hearth_auth::Role::Clinician if own_practitioner(caller) == Some(practitioner) => Ok(()),
        _ => Err(forbidden("a practitioner's availability is managed by that practitioner or an admin")),
    }
}

async fn practitioner_exists(app: &Scheduling, id: &str) -> Result<(), ApiError> {
    match read_json(&app.system(), "Practitioner", id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_practitioner", "no such practitioner")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(deserialize_with = "hearth_workflow::refs::practitioner")]
    practitioner: String,
}

#[utoipa::path(get, path = "/api/v1/schedules", tag = "scheduling",
    params(("practitioner" = String, Query, description = "The practitioner's id")),
    responses(
        (status = 200, description = "The practitioner's active schedules", body = ScheduleList,
         example = json!({"schedules": [{"id": "…", "practitioner": "…", "timeZone": "Europe/London", "hours": [{"days": ["mon", "tue"], "start": "09:00", "end": "17:00"}], "types": [{"code": "ROUTINE", "minutes": 30, "buffer": 0}], "exceptions": [], "rules": {"maxDaysAhead": 90, "minNoticeMinutes": 60}}]})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(_caller): ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    if !hearth_workflow::fhir::valid_id(&q.practitioner) {
        return Err(bad("invalid_query", "`practitioner` must be a resource id"));
    }
    let found = schedules_of(&app, &q.practitioner, None).await?;
    Ok(Json(json!(ScheduleList { schedules: found.iter().map(|s| view(&s.id, &s.body)).collect() })))
}

#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "scheduling",
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such schedule", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such schedule"}})),
    ),
    security(("bearer" = [])))]
pub async fn get_one(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(_caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (v, _) = read_json(&app.system(), "Schedule", &id).await?.ok_or_else(|| not_found("schedule"))?;
    let s = stored(&v).ok_or_else(|| not_found("schedule"))?;
    Ok(Json(json!(view(&s.id, &s.body))))
}

#[utoipa::path(post, path = "/api/v1/schedules", tag = "scheduling",
    request_body(content = ScheduleBody, description = "Weekly hours in the practitioner's time zone, appointment types (HL7 v2 0276 codes) with minutes and buffer, one-off exceptions and booking rules; times HH:MM on 5-minute boundaries",
        example = json!({"practitioner": "123", "timeZone": "Europe/London", "hours": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}], "types": [{"code": "ROUTINE", "minutes": 30, "buffer": 5}], "exceptions": [{"date": "2026-12-24", "available": false}], "rules": {"maxDaysAhead": 60, "minNoticeMinutes": 120, "maxPerDay": 12}})),
    responses(
        (status = 201, description = "Stored as a FHIR Schedule", body = ScheduleView),
        (status = 400, description = "Malformed schedule", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_schedule", "message": "timeZone is not an IANA time zone"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Neither that practitioner nor an admin", body = ErrorEnvelope),
        (status = 422, description = "No such practitioner (`unknown_practitioner`)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: ScheduleBody = super::body_of(&bytes)?;
    body.availability()?;
    may_manage(&caller, &body.practitioner)?;
    practitioner_exists(&app, &body.practitioner).await?;
    let availability = body.availability()?;
    let (id, role_id) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
    let (resource, role) = (body.to_fhir(&role_id), body.practitioner_role(&availability));
    super::check(&app, "Schedule", &resource)?;
    super::check(&app, "PractitionerRole", &role)?;
    let now = app.clock.now();
    let mut tx = super::acting_for(&app, &caller).begin().await?;
    interactions::create(&mut tx, hearth_workflow::fhir::write_of(&app, "PractitionerRole", role_id, role), now)
        .await?;
    interactions::create(&mut tx, hearth_workflow::fhir::write_of(&app, "Schedule", id.clone(), resource), now).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view(&id, &body))).into_response())
}

#[utoipa::path(put, path = "/api/v1/schedules/{id}", tag = "scheduling",
    params(("id" = String, Path, description = "The schedule's id")),
    request_body(content = ScheduleBody, description = "The whole schedule, as for POST"),
    responses((status = 422, description = "No such practitioner (`unknown_practitioner`)", body = ErrorEnvelope), 
        (status = 200, description = "Replaced (a new version of the Schedule); booked appointments stay", body = ScheduleView),
        (status = 400, description = "Malformed schedule", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Neither that practitioner nor an admin", body = ErrorEnvelope),
        (status = 404, description = "No such schedule", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn replace(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: ScheduleBody = super::body_of(&bytes)?;
    body.availability()?;
    let (v, _) = read_json(&app.system(), "Schedule", &id).await?.ok_or_else(|| not_found("schedule"))?;
    let old = stored(&v).ok_or_else(|| not_found("schedule"))?;
    may_manage(&caller, &old.body.practitioner)?;
    if body.practitioner != old.body.practitioner {
        return Err(invalid("a schedule stays with its practitioner"));
    }
    let availability = body.availability()?;
    let old_role = v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()).and_then(|j| {
        j.get("actor")?
            .as_array()?
            .iter()
            .find_map(|a| a.get("reference")?.as_str()?.strip_prefix("PractitionerRole/").map(str::to_owned))
    });
    let role_id = old_role.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let (resource, role) = (body.to_fhir(&role_id), body.practitioner_role(&availability));
    super::check(&app, "Schedule", &resource)?;
    super::check(&app, "PractitionerRole", &role)?;
    let now = app.clock.now();
    let mut tx = super::acting_for(&app, &caller).begin().await?;
    interactions::update(&mut tx, hearth_workflow::fhir::write_of(&app, "PractitionerRole", role_id, role), None, now)
        .await?;
    interactions::update(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, "Schedule", id.clone(), resource),
        Some(v.version_id),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!(view(&id, &body))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotQuery {
    #[serde(deserialize_with = "hearth_workflow::refs::practitioner")]
    pub practitioner: String,
    #[serde(default, deserialize_with = "hearth_workflow::refs::opt_healthcare_service")]
    pub service: Option<String>,
    pub from: String,
    pub to: String,
    #[serde(rename = "type")]
    pub appointment_type: Option<String>,
}

/// One free slot as the app API shows it.
#[derive(Debug, Clone)]
pub struct FreeSlot {
    pub schedule: String,
    pub practitioner: String,
    pub location: Option<String>,
    pub service: Option<String>,
    pub appointment_type: String,
    pub slot: Slot,
}

impl FreeSlot {
    pub fn view(&self) -> Value {
        json!(self.slot_view())
    }

    fn slot_view(&self) -> SlotView<'_> {
        SlotView {
            start: super::instant(self.slot.start),
            end: super::instant(self.slot.end),
            practitioner: &self.practitioner,
            schedule: &self.schedule,
            kind: &self.appointment_type,
            location: self.location.as_deref(),
            service: self.service.as_deref(),
        }
    }
}

/// The free slots of a practitioner in `[from, to)` across their schedules (of one service, of
/// one type, when given), in time order.
pub async fn free_slots(
    app: &Scheduling,
    practitioner: &str,
    service: Option<&str>,
    appointment_type: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<FreeSlot>, ApiError> {
    let schedules = schedules_of(app, practitioner, service).await?;
    let now = app.clock.now();
    // Claims of the whole local days around the range (the per-day limit counts them).
    let claimed = hearth_store_sql::scheduling::claimed(
        &*app.db,
        practitioner,
        (from - Duration::days(2)).timestamp_millis(),
        (to + Duration::days(2)).timestamp_millis(),
    )
    .await?;
    let mut out = Vec::new();
    for s in &schedules {
        for ty in s.availability.types.iter().filter(|t| appointment_type.is_none_or(|c| c == t.code)) {
            for slot in s.availability.free(ty, from, to, now, &claimed) {
                out.push(FreeSlot {
                    schedule: s.id.clone(),
                    practitioner: practitioner.to_owned(),
                    location: s.body.location.clone(),
                    service: s.body.service.clone(),
                    appointment_type: ty.code.clone(),
                    slot,
                });
            }
        }
    }
    out.sort_by(|a, b| a.slot.cmp(&b.slot).then_with(|| a.schedule.cmp(&b.schedule)));
    Ok(out)
}

/// Checks a search range: `from < to`, at most `scheduling.max_search_days`.
pub fn range(app: &Scheduling, from: &str, to: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let from = super::parse_instant(from, "from")?;
    let to = super::parse_instant(to, "to")?;
    if to <= from {
        return Err(bad("invalid_range", "`to` must be after `from`"));
    }
    if to - from > Duration::days(i64::from(app.config.max_search_days)) {
        return Err(bad("invalid_range", format!("one search covers at most {} days", app.config.max_search_days)));
    }
    Ok((from, to))
}

#[utoipa::path(get, path = "/api/v1/appointments/slots/available", tag = "scheduling",
    params(
        ("practitioner" = String, Query, description = "The practitioner's id"),
        ("service" = Option<String>, Query, description = "Only schedules of this HealthcareService"),
        ("from" = String, Query, description = "Instant (with zone) the slots start at or after"),
        ("to" = String, Query, description = "Instant (with zone) the slots start before"),
        ("type" = Option<String>, Query, description = "Appointment type (HL7 v2 0276 code)"),
    ),
    responses(
        (status = 200, description = "Free slots in time order, computed from the schedules, the booking rules and the booked time", body = SlotList,
         example = json!({"slots": [{"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:30:00Z", "practitioner": "…", "schedule": "…", "type": "ROUTINE", "location": null, "service": null}]})),
        (status = 400, description = "Bad range or parameters", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_range", "message": "`to` must be after `from`"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn available(
    State(app): State<Arc<Scheduling>>,
    ApiCaller(_caller): ApiCaller,
    Query(q): Query<SlotQuery>,
) -> Result<Json<Value>, ApiError> {
    if !hearth_workflow::fhir::valid_id(&q.practitioner)
        || q.service.as_deref().is_some_and(|s| !hearth_workflow::fhir::valid_id(s))
    {
        return Err(bad("invalid_query", "`practitioner` and `service` must be resource ids"));
    }
    let (from, to) = range(&app, &q.from, &q.to)?;
    let found =
        free_slots(&app, &q.practitioner, q.service.as_deref(), q.appointment_type.as_deref(), from, to).await?;
    Ok(Json(json!(SlotList { slots: found.iter().map(FreeSlot::slot_view).collect() })))
}

//! `/api/v1/emergency`: contacts, the alert, and "I am safe".

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use hearth_notifications::{DirectNotice, EnqueueError, Notice};
use hearth_notify::{Category, ChannelKind};
use hearth_store::{Current, Guarded, GuardedTx, StoreError, Version, interactions};
use hearth_store_sql::notify::TxDb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

use crate::Emergency;

/// The tag system marking what this workflow writes (`contact`, `alert`).
pub const TAG_SYSTEM: &str = "urn:hearth:emergency";
/// A press within this many minutes of the last sending of an active alert sends nothing again.
pub const REPEAT_WINDOW_MINUTES: i64 = 10;
/// How far to look for facilities around the position.
pub const SEARCH_RADIUS_KM: u32 = 50;
/// How many facilities an alert answers, nearest first.
pub const NEAREST: usize = 5;
/// Most emergency contacts per patient.
const MAX_CONTACTS: usize = 20;
/// The extension on the Flag holding the last sending's instant and round.
const EXT_SENT: &str = "urn:hearth:emergency:last-sent";
const EXT_ROUND: &str = "urn:hearth:emergency:round";
const EXT_POSITION: &str = "urn:hearth:emergency:position";
const ROLE_CODES: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";

pub(crate) fn router() -> axum::Router<Arc<Emergency>> {
    axum::Router::new()
        .route("/api/v1/emergency/contacts", axum::routing::get(contacts).post(add_contact))
        .route("/api/v1/emergency/alert", axum::routing::post(alert))
        .route("/api/v1/emergency/alert/{id}/cancel", axum::routing::post(cancel))
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

fn enqueue_error(e: EnqueueError) -> ApiError {
    match e {
        EnqueueError::Store(s) => s.into(),
        other => ApiError::internal(other.to_string()),
    }
}

fn conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::VersionConflict { .. } => {
            ApiError::new(StatusCode::CONFLICT, "conflict", "the alert changed meanwhile: send again")
        }
        other => other.into(),
    }
}

fn body_of(v: &Version) -> Option<Value> {
    v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())
}

fn pairs(items: &[(&str, String)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn tag(code: &str) -> Value {
    json!({"tag": [{"system": TAG_SYSTEM, "code": code}]})
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An OpenStreetMap link to a position (zoom 16: streets and house numbers).
pub fn map_url(lat: f64, lon: f64) -> String {
    format!("https://www.openstreetmap.org/?mlat={lat:.6}&mlon={lon:.6}#map=16/{lat:.6}/{lon:.6}")
}

/// The patient a request is about (named, else the caller's own record), readable through the
/// caller's view (else `404`), with its current body.
async fn patient_of(store: &Guarded, caller: &Caller, named: Option<&str>) -> Result<(String, Value), ApiError> {
    let (id, v) = hearth_workflow::fhir::requested_patient(store, caller, named).await?;
    Ok((id, body_of(&v).unwrap_or(Value::Null)))
}

/// How the patient is named in a message: the first name's text, else given + family.
fn display_name(patient: &Value) -> String {
    let Some(name) = patient.pointer("/name/0") else { return "A Hearth user".into() };
    if let Some(t) = name.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()) {
        return t.trim().to_owned();
    }
    let mut parts: Vec<&str> =
        name.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    parts.extend(name.get("family").and_then(Value::as_str));
    let joined = parts.join(" ");
    if joined.trim().is_empty() { "A Hearth user".into() } else { joined }
}

fn valid_phone(p: &str) -> bool {
    let Some(digits) = p.strip_prefix('+') else { return false };
    (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

/// A relationship word to a v3-RoleCode (the codes R4's RelatedPerson.relationship binds to).
fn role_code(word: &str) -> Option<(&'static str, &'static str)> {
    Some(match word.trim().to_ascii_lowercase().as_str() {
        "spouse" | "husband" | "wife" => ("SPS", "spouse"),
        "partner" | "domestic partner" => ("DOMPART", "domestic partner"),
        "mother" => ("MTH", "mother"),
        "father" => ("FTH", "father"),
        "parent" => ("PRN", "parent"),
        "son" => ("SONC", "son"),
        "daughter" => ("DAUC", "daughter"),
        "child" => ("CHILD", "child"),
        "brother" => ("BRO", "brother"),
        "sister" => ("SIS", "sister"),
        "sibling" => ("SIB", "sibling"),
        "friend" => ("FRND", "unrelated friend"),
        "neighbour" | "neighbor" => ("NBOR", "neighbor"),
        "family" | "family member" => ("FAMMEMB", "family member"),
        _ => return None,
    })
}

/// An emergency contact.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ContactOut {
    /// The RelatedPerson id.
    id: String,
    name: String,
    /// E.164.
    phone: String,
    /// As given (`mother`, `neighbour`, …).
    relationship: String,
}

/// The patient's emergency contacts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ContactsOut {
    patient: String,
    contacts: Vec<ContactOut>,
}

fn contact_of(v: &Version) -> Option<ContactOut> {
    let b = body_of(v)?;
    Some(ContactOut {
        id: v.id.clone(),
        name: b.pointer("/name/0/text").and_then(Value::as_str).unwrap_or_default().to_owned(),
        phone: b
            .get("telecom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|t| t.get("system").and_then(Value::as_str) == Some("phone"))
            .and_then(|t| t.get("value"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        relationship: b.pointer("/relationship/0/text").and_then(Value::as_str).unwrap_or_default().to_owned(),
    })
}

async fn contacts_of(app: &Emergency, store: &Guarded, patient: &str) -> Result<Vec<Version>, ApiError> {
    Ok(app
        .search_all(
            store,
            "RelatedPerson",
            &pairs(&[
                ("patient", format!("Patient/{patient}")),
                ("_tag", format!("{TAG_SYSTEM}|contact")),
                ("active", "true".into()),
                ("_count", "100".into()),
            ]),
            MAX_CONTACTS + 1,
        )
        .await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatientParam {
    patient: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/emergency/contacts", tag = "emergency",
    params(("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record")),
    responses(
        (status = 200, description = "The patient's emergency contacts, oldest first", body = ContactsOut,
         example = json!({"patient": "0190…", "contacts": [{"id": "0191…", "name": "Asha Rao", "phone": "+919812345678", "relationship": "sister"}]})),
        (status = 400, description = "No patient named and the caller is not a patient (`patient_required`), or an unknown parameter (`invalid_query`)", body = ErrorEnvelope, example = json!({"error": {"code": "patient_required", "message": "name the patient (`patient`)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn contacts(
    State(app): State<Arc<Emergency>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<PatientParam>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ContactsOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let store = app.store_for(&caller);
    let (patient, _) = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let found = contacts_of(&app, &store, &patient).await?;
    Ok(Json(ContactsOut { patient, contacts: found.iter().filter_map(contact_of).collect() }))
}

/// A new emergency contact.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContactIn {
    /// The Patient id; default the caller's own record (a patient).
    #[serde(default)]
    patient: Option<String>,
    /// 1 to 200 characters.
    name: String,
    /// E.164 (`+919812345678`): the alert's SMS goes here.
    phone: String,
    /// `spouse`, `mother`, `friend`, `neighbour`… (coded as v3-RoleCode when known; kept as text).
    relationship: String,
}

#[utoipa::path(post, path = "/api/v1/emergency/contacts", tag = "emergency",
    request_body(content = ContactIn, description = "A person to alert in an emergency (stored as a FHIR RelatedPerson)",
        example = json!({"name": "Asha Rao", "phone": "+919812345678", "relationship": "sister"})),
    responses(
        (status = 201, description = "The contact was added", body = ContactOut,
         example = json!({"id": "0191…", "name": "Asha Rao", "phone": "+919812345678", "relationship": "sister"})),
        (status = 400, description = "Invalid contact (stable code: invalid_body, patient_required, invalid_name, invalid_phone, invalid_relationship, too_many_contacts, invalid_resource)", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_phone", "message": "the phone must be E.164, like +919812345678"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not change this patient's record (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 409, description = "A concurrent change (`conflict`): send again", body = ErrorEnvelope, example = json!({"error": {"code": "conflict", "message": "this already exists"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn add_contact(
    State(app): State<Arc<Emergency>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: ContactIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    // Who first: a patient outside the caller's reach is `404` whatever the body says.
    let store = app.store_for(&caller);
    let (patient, _) = patient_of(&store, &caller, input.patient.as_deref()).await?;
    let name = input.name.trim();
    if !hearth_workflow::fhir::is_display_text(name, 200) || name.is_empty() {
        return Err(bad("invalid_name", "the name must have 1 to 200 characters"));
    }
    let phone = input.phone.trim();
    if !valid_phone(phone) {
        return Err(bad("invalid_phone", "the phone must be E.164, like +919812345678"));
    }
    let relationship = input.relationship.trim();
    if relationship.is_empty() || !hearth_workflow::fhir::is_display_text(relationship, 100) {
        return Err(bad("invalid_relationship", "the relationship must have 1 to 100 characters"));
    }
    if contacts_of(&app, &store, &patient).await?.len() >= MAX_CONTACTS {
        return Err(bad("too_many_contacts", format!("at most {MAX_CONTACTS} emergency contacts")));
    }
    let mut concept = json!({"text": relationship});
    if let (Some((code, display)), Some(o)) = (role_code(relationship), concept.as_object_mut()) {
        o.insert("coding".into(), json!([{"system": ROLE_CODES, "code": code, "display": display}]));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let resource = json!({
        "resourceType": "RelatedPerson",
        "id": id,
        "meta": tag("contact"),
        "active": true,
        "patient": {"reference": format!("Patient/{patient}")},
        "relationship": [concept],
        "name": [{"text": name}],
        "telecom": [{"system": "phone", "value": phone, "use": "mobile"}],
    });
    hearth_workflow::fhir::validate(&app, "RelatedPerson", &resource)
        .map_err(|e| bad("invalid_resource", format!("the RelatedPerson does not validate: {}", e.describe())))?;
    let mut tx = store.begin().await?;
    interactions::create(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, "RelatedPerson", id.clone(), resource),
        app.clock.now(),
    )
    .await?;
    tx.commit().await?;
    let out = ContactOut { id, name: name.to_owned(), phone: phone.to_owned(), relationship: relationship.to_owned() };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// A GPS position (WGS84 degrees).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Position {
    latitude: f64,
    longitude: f64,
    /// Accuracy radius in metres, as the device reports it.
    #[serde(default)]
    accuracy_m: Option<f64>,
}

/// The emergency button.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertIn {
    /// The Patient id; default the caller's own record (a patient).
    #[serde(default)]
    patient: Option<String>,
    /// Where the patient is, if the device knows.
    #[serde(default)]
    position: Option<Position>,
}

/// A facility near the position.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Facility {
    /// The Location id.
    id: String,
    name: String,
    /// Great-circle distance from the position, metres.
    distance_m: u64,
    phone: Option<String>,
    address: Option<String>,
    /// An OpenStreetMap link to the facility.
    map_url: String,
}

/// Who was told.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Notified {
    /// Emergency contacts messaged (SMS, or their account's channels).
    contacts: usize,
    /// Care-team and caregiver accounts notified.
    care_team: usize,
}

/// The alert as it stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertOut {
    /// The Flag id (cancel with it).
    id: String,
    patient: String,
    /// `active` or `cancelled`.
    status: String,
    /// True when this press only updated an alert sent moments ago (nothing was sent again).
    repeated: bool,
    notified: Notified,
    /// An OpenStreetMap link to the position, when one was given.
    map_url: Option<String>,
    /// The nearest facilities (FHIR `Location`s within 50 km), nearest first; empty without a position.
    facilities: Vec<Facility>,
}

struct Recipients {
    /// (RelatedPerson id, phone, account with that verified phone)
    contacts: Vec<(String, String, Option<String>)>,
    care_team: Vec<String>,
    practitioners: Vec<String>,
}

async fn recipients(
    db: &dyn hearth_store_sql::Db,
    patient: &str,
    patient_body: &Value,
    contacts: &[Version],
) -> Result<Recipients, ApiError> {
    let mut out = Recipients { contacts: Vec::new(), care_team: Vec::new(), practitioners: Vec::new() };
    for c in contacts.iter().filter_map(contact_of) {
        if valid_phone(&c.phone) {
            let account = hearth_store_sql::identity::account_by_phone(db, &c.phone).await?.map(|a| a.id);
            out.contacts.push((c.id, c.phone, account));
        }
    }
    let own: BTreeSet<String> =
        hearth_store_sql::identity::accounts_of(db, &format!("Patient/{patient}")).await?.into_iter().collect();
    let mut team: Vec<String> = hearth_store_sql::identity::caregivers_of(db, patient).await?;
    for gp in patient_body.get("generalPractitioner").and_then(Value::as_array).into_iter().flatten() {
        if let Some(r) = gp.get("reference").and_then(Value::as_str).filter(|r| r.starts_with("Practitioner/")) {
            out.practitioners.push(r.to_owned());
            team.extend(hearth_store_sql::identity::accounts_of(db, r).await?);
        }
    }
    let has_clinician = !out.practitioners.is_empty();
    if !has_clinician
        && let Some(org) = patient_body
            .pointer("/managingOrganization/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Organization/"))
    {
        team.extend(hearth_store_sql::emergency::clinicians_of(db, org).await?);
    }
    let contact_accounts: BTreeSet<&String> = out.contacts.iter().filter_map(|c| c.2.as_ref()).collect();
    let mut seen = BTreeSet::new();
    team.retain(|a| !own.contains(a) && !contact_accounts.contains(a) && seen.insert(a.clone()));
    out.care_team = team;
    Ok(out)
}

/// Enqueues `template` to every recipient under keys `<key>:…`; answers (contacts, care team).
async fn notify_all(
    app: &Emergency,
    db: &TxDb,
    r: &Recipients,
    key: &str,
    template: &str,
    args: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<(usize, usize), ApiError> {
    let mut contacts = 0;
    for (rp, phone, account) in &r.contacts {
        let sent = match account {
            Some(account) => {
                let notice = Notice {
                    key: format!("{key}:contact:{rp}"),
                    account_id: account.clone(),
                    category: Category::Emergency,
                    template: template.to_owned(),
                    args: args.clone(),
                    not_before: None,
                };
                hearth_notifications::enqueue(&app.notifier, db, &notice, now).await.map_err(enqueue_error)? > 0
            }
            None => {
                if !app.notifier.available(ChannelKind::Sms) {
                    continue;
                }
                let notice = DirectNotice {
                    key: format!("{key}:contact:{rp}"),
                    account_id: None,
                    channel: ChannelKind::Sms,
                    to: phone.clone(),
                    category: Category::Emergency,
                    template: template.to_owned(),
                    args: args.clone(),
                    language: None,
                };
                hearth_notifications::enqueue_direct(&app.notifier, db, &notice, now).await.map_err(enqueue_error)?
            }
        };
        contacts += usize::from(sent);
    }
    let mut team = 0;
    for account in &r.care_team {
        let notice = Notice {
            key: format!("{key}:team:{account}"),
            account_id: account.clone(),
            category: Category::Emergency,
            template: template.to_owned(),
            args: args.clone(),
            not_before: None,
        };
        let rows = hearth_notifications::enqueue(&app.notifier, db, &notice, now).await.map_err(enqueue_error)?;
        team += usize::from(rows > 0);
    }
    Ok((contacts, team))
}

fn communication(patient: &str, flag: &str, recipients: Vec<Value>, text: &str, now: DateTime<Utc>) -> Value {
    let mut c = json!({
        "resourceType": "Communication",
        "id": uuid::Uuid::now_v7().to_string(),
        "meta": tag("alert"),
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "alert"}]}],
        "priority": "stat",
        "subject": {"reference": format!("Patient/{patient}")},
        "about": [{"reference": format!("Flag/{flag}")}],
        "sent": instant(now),
        "payload": [{"contentString": text}],
    });
    if !recipients.is_empty()
        && let Some(o) = c.as_object_mut()
    {
        o.insert("recipient".into(), Value::Array(recipients));
    }
    c
}

/// Writes one Communication per contact and one for the care team.
async fn record_communications(
    app: &Emergency,
    tx: &mut GuardedTx,
    patient: &str,
    flag: &str,
    r: &Recipients,
    text: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let mut all: Vec<Vec<Value>> =
        r.contacts.iter().map(|(rp, _, _)| vec![json!({"reference": format!("RelatedPerson/{rp}")})]).collect();
    all.push(r.practitioners.iter().map(|p| json!({"reference": p})).collect());
    for recipients in all {
        let c = communication(patient, flag, recipients, text, now);
        let id = c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        hearth_workflow::fhir::validate(app, "Communication", &c).map_err(|e| ApiError::internal(e.describe()))?;
        interactions::create(tx, hearth_workflow::fhir::write_of(app, "Communication", id, c), now).await?;
    }
    Ok(())
}

fn ext_str<'a>(flag: &'a Value, url: &str) -> Option<&'a Value> {
    flag.get("extension").and_then(Value::as_array)?.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

fn set_ext(flag: &mut Value, url: &str, value: Value) {
    let Some(o) = flag.as_object_mut() else { return };
    let list = o.entry("extension").or_insert_with(|| Value::Array(Vec::new()));
    if let Some(a) = list.as_array_mut() {
        a.retain(|e| e.get("url").and_then(Value::as_str) != Some(url));
        let mut e = Map::new();
        e.insert("url".into(), json!(url));
        if let Some(v) = value.as_object() {
            e.extend(v.clone());
        }
        a.push(Value::Object(e));
    }
}

fn position_ext(p: &Position) -> Value {
    let mut parts = vec![
        json!({"url": "latitude", "valueDecimal": p.latitude}),
        json!({"url": "longitude", "valueDecimal": p.longitude}),
    ];
    if let Some(a) = p.accuracy_m {
        parts.push(json!({"url": "accuracy", "valueDecimal": a}));
    }
    json!({"extension": parts})
}

async fn facilities(app: &Emergency, p: &Position) -> Result<Vec<Facility>, ApiError> {
    // Facilities are the clinic's directory, nobody's record: read as the system.
    let found = app
        .search_all(
            &app.system(),
            "Location",
            &pairs(&[
                ("near", format!("{}|{}|{SEARCH_RADIUS_KM}|km", p.latitude, p.longitude)),
                ("_count", "200".into()),
            ]),
            200,
        )
        .await?;
    let mut out: Vec<(f64, Facility)> = found
        .iter()
        .filter_map(|v| {
            let b = body_of(v)?;
            let lat = b.pointer("/position/latitude")?.as_f64()?;
            let lon = b.pointer("/position/longitude")?.as_f64()?;
            if b.get("status").and_then(Value::as_str).is_some_and(|s| s != "active") {
                return None;
            }
            let d = hearth_search::geo::distance_m(p.latitude, p.longitude, lat, lon);
            let phone = b
                .get("telecom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|t| t.get("system").and_then(Value::as_str) == Some("phone"))
                .and_then(|t| t.get("value"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let address = b.pointer("/address/text").and_then(Value::as_str).map(str::to_owned).or_else(|| {
                let lines: Vec<&str> = b
                    .pointer("/address/line")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .chain(b.pointer("/address/city").and_then(Value::as_str))
                    .collect();
                (!lines.is_empty()).then(|| lines.join(", "))
            });
            Some((
                d,
                Facility {
                    id: v.id.clone(),
                    name: b.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    distance_m: d.round().max(0.0) as u64,
                    phone,
                    address,
                    map_url: map_url(lat, lon),
                },
            ))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(out.into_iter().take(NEAREST).map(|(_, f)| f).collect())
}

#[utoipa::path(post, path = "/api/v1/emergency/alert", tag = "emergency",
    request_body(content = AlertIn, description = "The emergency button, with the device's position if it has one",
        example = json!({"position": {"latitude": 28.6139, "longitude": 77.2090, "accuracy_m": 25}})),
    responses(
        (status = 201, description = "A new alert: every contact and the care team were notified at critical priority", body = AlertOut,
         example = json!({"id": "0192…", "patient": "0190…", "status": "active", "repeated": false, "notified": {"contacts": 2, "care_team": 1},
             "map_url": "https://www.openstreetmap.org/?mlat=28.613900&mlon=77.209000#map=16/28.613900/77.209000",
             "facilities": [{"id": "0185…", "name": "City Hospital", "distance_m": 1200, "phone": "+911123456789", "address": "1 Ring Road, New Delhi", "map_url": "https://www.openstreetmap.org/?mlat=28.620000&mlon=77.210000#map=16/28.620000/77.210000"}]})),
        (status = 200, description = "The alert was already active: updated (position); sent again only when the last sending is older than the repeat window (10 minutes)", body = AlertOut),
        (status = 400, description = "Invalid request (stable code: invalid_body, patient_required, invalid_position)", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_position", "message": "latitude must be within ±90 and longitude within ±180 degrees"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not act on this patient's record (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 409, description = "A concurrent change to the alert (`conflict`): press again", body = ErrorEnvelope, example = json!({"error": {"code": "conflict", "message": "this already exists"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn alert(
    State(app): State<Arc<Emergency>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: AlertIn = if body.iter().all(u8::is_ascii_whitespace) {
        AlertIn { patient: None, position: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?
    };
    let store = app.store_for(&caller);
    let (patient, patient_body) = patient_of(&store, &caller, input.patient.as_deref()).await?;
    if let Some(p) = &input.position
        && (!hearth_search::geo::valid_position(p.latitude, p.longitude)
            || p.accuracy_m.is_some_and(|a| !a.is_finite() || a < 0.0))
    {
        return Err(bad("invalid_position", "latitude must be within ±90 and longitude within ±180 degrees"));
    }
    let contacts = contacts_of(&app, &store, &patient).await?;
    let now = app.clock.now();
    let active = app
        .search_all(
            &store,
            "Flag",
            &pairs(&[
                ("patient", format!("Patient/{patient}")),
                ("_tag", format!("{TAG_SYSTEM}|alert")),
                ("_sort", "-_lastUpdated".into()),
                ("_count", "20".into()),
            ]),
            20,
        )
        .await?;
    // R4 has no `status` search on Flag: the newest alerts are read and the active one kept
    // (an alert is active for minutes to hours, so it is among the newest).
    let existing = active
        .iter()
        .filter_map(|v| body_of(v).map(|b| (v.id.clone(), v.version_id, b)))
        .find(|(_, _, b)| b.get("status").and_then(Value::as_str) == Some("active"));
    let map = input.position.map(|p| map_url(p.latitude, p.longitude));
    let (id, mut flag, round, resend, created, read_version) = match existing {
        Some((id, version, flag)) => {
            let last = ext_str(&flag, EXT_SENT)
                .and_then(|e| e.get("valueInstant"))
                .and_then(Value::as_str)
                .and_then(hearth_workflow::fhir::parse_instant);
            let round =
                ext_str(&flag, EXT_ROUND).and_then(|e| e.get("valueInteger")).and_then(Value::as_u64).unwrap_or(1);
            let resend = last.is_none_or(|t| now - t >= TimeDelta::minutes(REPEAT_WINDOW_MINUTES));
            let round = if resend { round + 1 } else { round };
            (id, flag, round, resend, false, Some(version))
        }
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            let flag = json!({
                "resourceType": "Flag",
                "id": id,
                "meta": tag("alert"),
                "status": "active",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety", "display": "Safety"}]}],
                "code": {"text": "Emergency alert raised by the emergency button"},
                "subject": {"reference": format!("Patient/{patient}")},
                "period": {"start": instant(now)},
            });
            (id, flag, 1, true, true, None)
        }
    };
    if let Some(p) = &input.position {
        set_ext(&mut flag, EXT_POSITION, position_ext(p));
    }
    if resend {
        set_ext(&mut flag, EXT_SENT, json!({"valueInstant": instant(now)}));
        set_ext(&mut flag, EXT_ROUND, json!({"valueInteger": round}));
    }
    hearth_workflow::fhir::validate(&app, "Flag", &flag)
        .map_err(|e| ApiError::internal(format!("the Flag does not validate: {}", e.describe())))?;
    // Who is told is read before the transaction (identity tables, not the record).
    let r = if resend { Some(recipients(&*app.db, &patient, &patient_body, &contacts).await?) } else { None };
    // The store keeps Flags for the care team (a patient may not write one through FHIR): the
    // caller's reach to the patient was checked above; the alert is recorded as the system.
    let mut tx = app.system().begin().await?;
    let write = hearth_workflow::fhir::write_of(&app, "Flag", id.clone(), flag);
    match read_version {
        None => {
            interactions::create(&mut tx, write, now).await?;
        }
        Some(v) => {
            interactions::update(&mut tx, write, Some(v), now).await.map_err(conflict)?;
        }
    }
    let mut notified = Notified { contacts: 0, care_team: 0 };
    if let Some(r) = &r {
        let text = match &map {
            Some(m) => format!("Emergency alert sent to the patient's emergency contacts and care team. Position: {m}"),
            None => {
                "Emergency alert sent to the patient's emergency contacts and care team. No position shared.".to_owned()
            }
        };
        record_communications(&app, &mut tx, &patient, &id, r, &text, now).await?;
        let db = TxDb::from_guarded(tx)?;
        let mut args = Map::new();
        args.insert("name".into(), json!(display_name(&patient_body)));
        args.insert("located".into(), json!(if map.is_some() { "yes" } else { "no" }));
        args.insert("map".into(), json!(map.clone().unwrap_or_default()));
        let key = format!("emergency:{id}:alert:{round}");
        let (c, t) = notify_all(&app, &db, r, &key, "emergency-help", &args, now).await?;
        notified = Notified { contacts: c, care_team: t };
        db.commit().await?;
    } else {
        tx.commit().await?;
    }
    if resend {
        app.notifier.wake();
    }
    let facilities = match &input.position {
        Some(p) => facilities(&app, p).await?,
        None => Vec::new(),
    };
    let out = AlertOut { id, patient, status: "active".into(), repeated: !resend, notified, map_url: map, facilities };
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(out)).into_response())
}

/// "I am safe": the alert is closed and everyone it reached is told.
#[utoipa::path(post, path = "/api/v1/emergency/alert/{id}/cancel", tag = "emergency",
    params(("id" = String, Path, description = "The alert (Flag) id")),
    responses(
        (status = 200, description = "The alert is cancelled; everyone alerted was told the patient is safe (a second cancel tells no one again)", body = AlertOut,
         example = json!({"id": "0192…", "patient": "0190…", "status": "cancelled", "repeated": false, "notified": {"contacts": 2, "care_team": 1}, "map_url": null, "facilities": []})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not act on this patient's record (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "No such alert, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such alert"}})),
        (status = 409, description = "A concurrent change to the alert (`conflict`): send again", body = ErrorEnvelope, example = json!({"error": {"code": "conflict", "message": "the alert changed meanwhile"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn cancel(
    State(app): State<Arc<Emergency>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<AlertOut>, ApiError> {
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(not_found("alert"));
    }
    let store = app.store_for(&caller);
    let (version, mut flag) = match store.read("Flag", &id).await {
        Ok(Current::Found(v)) => (v.version_id, body_of(&v).ok_or_else(|| not_found("alert"))?),
        Ok(_) | Err(StoreError::Forbidden(_)) => return Err(not_found("alert")),
        Err(e) => return Err(e.into()),
    };
    let ours = flag
        .pointer("/meta/tag")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|t| t.get("system").and_then(Value::as_str) == Some(TAG_SYSTEM)));
    let patient = flag
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_owned);
    let (true, Some(patient)) = (ours, patient) else { return Err(not_found("alert")) };
    let (_, patient_body) = patient_of(&store, &caller, Some(&patient)).await?;
    if flag.get("status").and_then(Value::as_str) != Some("active") {
        return Ok(Json(AlertOut {
            id,
            patient,
            status: "cancelled".into(),
            repeated: true,
            notified: Notified { contacts: 0, care_team: 0 },
            map_url: None,
            facilities: Vec::new(),
        }));
    }
    let now = app.clock.now();
    if let Some(o) = flag.as_object_mut() {
        o.insert("status".into(), json!("inactive"));
        let start = o.get("period").and_then(|p| p.get("start")).cloned().unwrap_or_else(|| json!(instant(now)));
        o.insert("period".into(), json!({"start": start, "end": instant(now)}));
    }
    let contacts = contacts_of(&app, &store, &patient).await?;
    let r = recipients(&*app.db, &patient, &patient_body, &contacts).await?;
    // As the alert: recorded as the system once the caller's view has read the Flag and patient.
    let mut tx = app.system().begin().await?;
    interactions::update(&mut tx, hearth_workflow::fhir::write_of(&app, "Flag", id.clone(), flag), Some(version), now)
        .await
        .map_err(conflict)?;
    record_communications(
        &app,
        &mut tx,
        &patient,
        &id,
        &r,
        "The patient cancelled the emergency alert: they are safe.",
        now,
    )
    .await?;
    let db = TxDb::from_guarded(tx)?;
    let mut args = Map::new();
    args.insert("name".into(), json!(display_name(&patient_body)));
    let (c, t) = notify_all(&app, &db, &r, &format!("emergency:{id}:safe"), "emergency-safe", &args, now).await?;
    db.commit().await?;
    app.notifier.wake();
    Ok(Json(AlertOut {
        id,
        patient,
        status: "cancelled".into(),
        repeated: false,
        notified: Notified { contacts: c, care_team: t },
        map_url: None,
        facilities: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_relationships_and_map_links() {
        assert!(valid_phone("+919812345678"));
        assert!(!valid_phone("09812345678") && !valid_phone("+0123456789") && !valid_phone("+91 98123"));
        assert_eq!(role_code("Mother"), Some(("MTH", "mother")));
        assert_eq!(role_code("colleague"), None);
        assert_eq!(
            map_url(28.6139, 77.209),
            "https://www.openstreetmap.org/?mlat=28.613900&mlon=77.209000#map=16/28.613900/77.209000"
        );
        assert_eq!(display_name(&json!({"name": [{"given": ["Ravi", "K"], "family": "Rao"}]})), "Ravi K Rao");
        assert_eq!(display_name(&json!({})), "A Hearth user");
    }
}

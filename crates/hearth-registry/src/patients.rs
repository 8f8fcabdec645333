//! `/api/v1/patients`: create with duplicate checks, read, search, demographics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_auth::Role;
use hearth_store::interactions;
use hearth_store::{Current, Guarded, StoreError, Version};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

use crate::{ABHA_ADDRESS_SYSTEM, ABHA_NUMBER_SYSTEM, Registry, bad, body_of, ids, json_of, not_found, plain_text};

const BCP47: &str = "urn:ietf:bcp:47";

pub(crate) fn router() -> axum::Router<Arc<Registry>> {
    axum::Router::new()
        .route("/api/v1/patients", axum::routing::get(search).post(create))
        .route("/api/v1/patients/{id}", axum::routing::get(get_one))
        .route("/api/v1/patients/{id}/demographics", axum::routing::get(demographics).put(update_demographics))
}

/// A postal address as the app takes it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = Address, example = json!({"line": ["12 MG Road"], "city": "Bengaluru", "state": "Karnataka", "postalCode": "560001", "country": "IN"}))]
pub(crate) struct AddressIn {
    /// Street lines.
    #[serde(default)]
    line: Vec<String>,
    city: Option<String>,
    district: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
    /// ISO 3166 alpha-2; default `IN`.
    country: Option<String>,
}

/// The demographic fields, as sent (create and update share them; on update a field left out
/// keeps its value and an empty string removes it).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PatientFields)]
pub(crate) struct Fields {
    /// Given names (required on create, with `family`).
    given: Option<Vec<String>>,
    family: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(example = "1984-03-07")]
    birth_date: Option<String>,
    /// `male`, `female`, `other` or `unknown`.
    gender: Option<String>,
    /// A 10-digit Indian mobile number in any spelling, or E.164; stored as E.164.
    #[schema(example = "98765 43210")]
    phone: Option<String>,
    email: Option<String>,
    address: Option<AddressIn>,
    /// The 14-digit ABHA number (`12-3456-7890-1234`).
    abha_number: Option<String>,
    /// The ABHA address (`name@abdm`).
    abha_address: Option<String>,
    /// BCP-47, such as `hi` or `hi-Latn`.
    language: Option<String>,
    /// Create only: the managing organisation (default: a clinician's own).
    organization: Option<String>,
    /// Create only: create even when probable duplicates exist.
    force: Option<bool>,
}

/// A change: `None` leaves a value, `Some(None)` removes it, `Some(Some(v))` sets it.
type Change<T> = Option<Option<T>>;

/// The fields checked and normalised.
#[derive(Debug, Default)]
struct Checked {
    name: Option<(Vec<String>, Option<String>)>,
    birth_date: Change<String>,
    gender: Change<String>,
    phone: Change<String>,
    email: Change<String>,
    address: Change<Value>,
    abha_number: Change<String>,
    abha_address: Change<String>,
    language: Change<String>,
}

fn opt_text(v: &Option<String>) -> Option<Option<&str>> {
    v.as_deref().map(|s| if s.trim().is_empty() { None } else { Some(s.trim()) })
}

fn check_fields(f: &Fields, today: chrono::NaiveDate) -> Result<Checked, ApiError> {
    let mut c = Checked::default();
    if f.given.is_some() || f.family.is_some() {
        let given: Vec<String> =
            f.given.iter().flatten().map(|g| g.trim().to_owned()).filter(|g| !g.is_empty()).collect();
        let family = f.family.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        if given.is_empty() && family.is_none() {
            return Err(bad("invalid_name", "a name needs a given or a family name"));
        }
        if given.len() > 5 || !given.iter().chain(family.iter()).all(|n| plain_text(n, 100)) {
            return Err(bad("invalid_name", "at most 5 given names; each name part 1 to 100 characters"));
        }
        c.name = Some((given, family));
    }
    c.birth_date = opt_text(&f.birth_date)
        .map(|v| {
            v.map(|d| {
                let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .ok()
                    .filter(|d| d.format("%Y-%m-%d").to_string().len() == 10)
                    .ok_or_else(|| bad("invalid_birth_date", "birthDate must be a date YYYY-MM-DD"))?;
                if date > today {
                    return Err(bad("invalid_birth_date", "birthDate is in the future"));
                }
                Ok(date.format("%Y-%m-%d").to_string())
            })
            .transpose()
        })
        .transpose()?;
    c.gender = opt_text(&f.gender)
        .map(|v| {
            v.map(|g| match g {
                "male" | "female" | "other" | "unknown" => Ok(g.to_owned()),
                _ => Err(bad("invalid_gender", "gender is male, female, other or unknown")),
            })
            .transpose()
        })
        .transpose()?;
    c.phone = checked(
        opt_text(&f.phone),
        ids::phone,
        "invalid_phone",
        "phone must be a 10-digit Indian mobile number (starting 6 to 9, optionally with 0, 91 or +91) or an E.164 number starting with +",
    )?;
    c.email = checked(opt_text(&f.email), ids::email, "invalid_email", "not a valid e-mail address")?;
    c.abha_number = checked(
        opt_text(&f.abha_number),
        ids::abha_number,
        "invalid_abha_number",
        "an ABHA number is 14 digits, written XX-XXXX-XXXX-XXXX or without dashes",
    )?;
    c.abha_address = checked(
        opt_text(&f.abha_address),
        ids::abha_address,
        "invalid_abha_address",
        "an ABHA address is name@abdm or name@sbx; the name has 8 to 18 lower-case letters and digits with at most one . or _ not at either end",
    )?;
    c.language = checked(
        opt_text(&f.language),
        ids::language,
        "invalid_language",
        "language is a BCP-47 tag such as en, hi or hi-Latn",
    )?;
    if let Some(a) = &f.address {
        c.address = Some(address(a)?);
    }
    Ok(c)
}

/// A text field checked by `valid` when given (`Some(None)`: given blank, which removes it),
/// else `400` with `code` and `message`.
fn checked(
    field: Option<Option<&str>>,
    valid: fn(&str) -> Option<String>,
    code: &'static str,
    message: &str,
) -> Result<Option<Option<String>>, ApiError> {
    field.map(|v| v.map(|x| valid(x).ok_or_else(|| bad(code, message))).transpose()).transpose()
}

fn address(a: &AddressIn) -> Result<Option<Value>, ApiError> {
    let invalid = |m: &str| bad("invalid_address", m.to_owned());
    let mut out = Map::new();
    let lines: Vec<&str> = a.line.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    if lines.len() > 4 || !lines.iter().all(|l| plain_text(l, 200)) {
        return Err(invalid("at most 4 address lines of up to 200 characters"));
    }
    if !lines.is_empty() {
        out.insert("line".into(), json!(lines));
    }
    for (key, value) in [("city", &a.city), ("district", &a.district), ("state", &a.state)] {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            if !plain_text(v, 100) {
                return Err(invalid("city, district and state are up to 100 characters"));
            }
            out.insert(key.into(), json!(v));
        }
    }
    let country = a.country.as_deref().map(str::trim).filter(|c| !c.is_empty()).unwrap_or("IN").to_ascii_uppercase();
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(invalid("country is an ISO 3166 two-letter code, e.g. IN"));
    }
    if let Some(pin) = a.postal_code.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        let pin: String = pin.chars().filter(|c| *c != ' ').collect();
        let ok = if country == "IN" {
            pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()) && !pin.starts_with('0')
        } else {
            plain_text(&pin, 20)
        };
        if !ok {
            return Err(invalid("an Indian PIN code is 6 digits not starting with 0"));
        }
        out.insert("postalCode".into(), json!(pin));
    }
    if out.is_empty() {
        return Ok(None);
    }
    out.insert("country".into(), json!(country));
    Ok(Some(Value::Object(out)))
}

fn set(p: &mut Value, key: &str, value: Option<Value>) {
    if let Some(obj) = p.as_object_mut() {
        match value {
            Some(v) => {
                obj.insert(key.into(), v);
            }
            None => {
                obj.remove(key);
            }
        }
    }
}

/// Replaces the array entries of `key` for which `mine` holds by `new` (kept in order).
fn replace_entries(p: &mut Value, key: &str, mine: impl Fn(&Value) -> bool, new: Option<Value>) {
    let mut entries: Vec<Value> = p
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|e| !mine(e)).cloned().collect())
        .unwrap_or_default();
    entries.extend(new);
    set(p, key, if entries.is_empty() { None } else { Some(Value::Array(entries)) });
}

/// A patient's own change of their contact details and language (`PUT /api/v1/profile`): the
/// checks and FHIR shape of the demographics update.
pub(crate) fn apply_contact(
    p: &mut Value,
    phone: Option<String>,
    email: Option<String>,
    address: Option<AddressIn>,
    language: Option<String>,
    today: chrono::NaiveDate,
) -> Result<(), ApiError> {
    let f = Fields { phone, email, address, language, ..Fields::default() };
    let c = check_fields(&f, today)?;
    apply(p, &c);
    Ok(())
}

fn apply(p: &mut Value, c: &Checked) {
    if let Some((given, family)) = &c.name {
        let mut name = Map::new();
        name.insert("use".into(), json!("official"));
        if let Some(f) = family {
            name.insert("family".into(), json!(f));
        }
        if !given.is_empty() {
            name.insert("given".into(), json!(given));
        }
        set(p, "name", Some(json!([name])));
    }
    if let Some(v) = &c.birth_date {
        set(p, "birthDate", v.as_ref().map(|d| json!(d)));
    }
    if let Some(v) = &c.gender {
        set(p, "gender", v.as_ref().map(|g| json!(g)));
    }
    for (system, change) in [("phone", &c.phone), ("email", &c.email)] {
        if let Some(v) = change {
            let entry = v.as_ref().map(|value| {
                if system == "phone" {
                    json!({"system": "phone", "value": value, "use": "mobile"})
                } else {
                    json!({"system": "email", "value": value})
                }
            });
            replace_entries(p, "telecom", |e| e.get("system").and_then(Value::as_str) == Some(system), entry);
        }
    }
    if let Some(v) = &c.address {
        set(p, "address", v.as_ref().map(|a| json!([a])));
    }
    for (system, change) in [(ABHA_NUMBER_SYSTEM, &c.abha_number), (ABHA_ADDRESS_SYSTEM, &c.abha_address)] {
        if let Some(v) = change {
            let entry = v.as_ref().map(|value| json!({"system": system, "value": value}));
            replace_entries(p, "identifier", |e| e.get("system").and_then(Value::as_str) == Some(system), entry);
        }
    }
    if let Some(v) = &c.language {
        set(
            p,
            "communication",
            v.as_ref().map(|l| json!([{"language": {"coding": [{"system": BCP47, "code": l}]}, "preferred": true}])),
        );
    }
}

fn str_at<'a>(p: &'a Value, pointer: &str) -> Option<&'a str> {
    p.pointer(pointer).and_then(Value::as_str)
}

fn entry_value<'a>(p: &'a Value, key: &str, system: &str) -> Option<&'a str> {
    p.get(key)?
        .as_array()?
        .iter()
        .find(|e| e.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
}

/// The display name of a Patient: its first name entry's given names and family.
fn display_name(p: &Value) -> String {
    let Some(n) = p.pointer("/name/0") else { return String::new() };
    if let Some(t) = n.get("text").and_then(Value::as_str) {
        return t.to_owned();
    }
    let mut parts: Vec<&str> = n
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    parts.extend(n.get("family").and_then(Value::as_str));
    parts.join(" ")
}

/// The folded names of every name entry of a Patient.
fn folded_names(p: &Value) -> Vec<String> {
    p.get("name")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .map(|n| {
                    let mut parts: Vec<&str> = n
                        .get("given")
                        .and_then(Value::as_array)
                        .map(|g| g.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    parts.extend(n.get("family").and_then(Value::as_str));
                    ids::fold_name(&parts.join(" "))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The app's view of a Patient (the FHIR resource stays available under `/fhir/Patient/<id>`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PatientSummary<'a> {
    /// The Patient id.
    id: &'a str,
    /// The version, as in the `ETag` (`W/"<version>"`); send it back as `If-Match` to change.
    #[schema(example = "1")]
    version: String,
    /// Given and family names as one line.
    #[schema(example = "Asha Rao")]
    name: String,
    #[schema(value_type = Vec<String>)]
    given: Value,
    #[schema(value_type = Option<String>)]
    family: Option<&'a Value>,
    #[schema(value_type = Option<String>, example = "1984-03-07")]
    birth_date: Option<&'a Value>,
    #[schema(value_type = Option<String>)]
    gender: Option<&'a Value>,
    /// E.164.
    #[schema(example = "+919876543210")]
    phone: Option<&'a str>,
    email: Option<&'a str>,
    #[schema(value_type = Option<AddressIn>)]
    address: Option<&'a Value>,
    abha_number: Option<&'a str>,
    abha_address: Option<&'a str>,
    language: Option<&'a str>,
    /// The managing Organization id.
    organization: Option<&'a str>,
    #[schema(value_type = Option<bool>)]
    active: Option<&'a Value>,
}

/// A page of patients.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PatientPage<'a> {
    patients: Vec<PatientSummary<'a>>,
    /// The `cursor` of the next page; `null` on the last.
    next: Option<String>,
}

/// The app's view of a Patient, as JSON.
pub(crate) fn summary(v: &Version, p: &Value) -> Value {
    json!(patient_summary(v, p))
}

fn patient_summary<'a>(v: &'a Version, p: &'a Value) -> PatientSummary<'a> {
    let name = p.pointer("/name/0");
    PatientSummary {
        id: &v.id,
        version: v.version_id.to_string(),
        name: display_name(p),
        given: name.and_then(|n| n.get("given")).cloned().unwrap_or_else(|| json!([])),
        family: name.and_then(|n| n.get("family")),
        birth_date: p.get("birthDate"),
        gender: p.get("gender"),
        phone: entry_value(p, "telecom", "phone"),
        email: entry_value(p, "telecom", "email"),
        address: p.pointer("/address/0"),
        abha_number: entry_value(p, "identifier", ABHA_NUMBER_SYSTEM),
        abha_address: entry_value(p, "identifier", ABHA_ADDRESS_SYSTEM),
        language: str_at(p, "/communication/0/language/coding/0/code"),
        organization: str_at(p, "/managingOrganization/reference").and_then(|r| r.strip_prefix("Organization/")),
        active: p.get("active"),
    }
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""))
}

fn with_etag(status: StatusCode, version: u64, body: Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(header::ETAG, etag(version));
    resp
}

/// Why a candidate matched.
const BY_NAME: &str = "name_birthdate";
const BY_PHONE: &str = "phone";
const BY_ABHA: &str = "abha_number";

/// The probable duplicates of a new patient the caller may see: three searches through the
/// caller's store view (name and birth date, phone, ABHA number), each one page of at most 20.
async fn duplicates(app: &Registry, store: &Guarded, c: &Checked) -> Result<Vec<Value>, ApiError> {
    let mut found: Vec<(Version, Value, Vec<&'static str>)> = Vec::new();
    let mut add = |hits: Vec<Version>, why: &'static str, keep: &dyn Fn(&Value) -> bool| -> Result<(), ApiError> {
        for v in hits {
            let p = json_of(&v)?;
            if !keep(&p) {
                continue;
            }
            match found.iter_mut().find(|(f, _, _)| f.id == v.id) {
                Some((_, _, reasons)) => reasons.push(why),
                None => found.push((v, p, vec![why])),
            }
        }
        Ok(())
    };
    let count = ("_count", "20".to_owned());
    if let (Some((given, family)), Some(Some(birth))) = (&c.name, &c.birth_date) {
        let wanted = ids::fold_name(&given.iter().chain(family.iter()).cloned().collect::<Vec<_>>().join(" "));
        let first = wanted.split(' ').next().unwrap_or_default().to_owned();
        let mut pairs = vec![("birthdate", birth.clone()), count.clone()];
        match family {
            Some(f) => pairs.push(("family", f.clone())),
            None => pairs.push(("name", first)),
        }
        let (hits, _) = crate::page(store, crate::query(app, "Patient", &pairs)?, None).await?;
        add(hits, BY_NAME, &|p| folded_names(p).contains(&wanted))?;
    }
    if let Some(Some(phone)) = &c.phone {
        let (hits, _) =
            crate::page(store, crate::query(app, "Patient", &[("phone", phone.clone()), count.clone()])?, None).await?;
        add(hits, BY_PHONE, &|_| true)?;
    }
    if let Some(Some(abha)) = &c.abha_number {
        let pairs = [("identifier", format!("{ABHA_NUMBER_SYSTEM}|{abha}")), count.clone()];
        let (hits, _) = crate::page(store, crate::query(app, "Patient", &pairs)?, None).await?;
        add(hits, BY_ABHA, &|_| true)?;
    }
    Ok(found
        .into_iter()
        .map(|(v, p, reasons)| {
            json!({"id": v.id, "name": display_name(&p), "birthDate": p.get("birthDate"), "reasons": reasons})
        })
        .collect())
}

fn own_organization(caller: &Caller) -> Option<&str> {
    (caller.role == Role::Clinician).then_some(caller.account.organization.as_deref()).flatten()
}

#[utoipa::path(post, path = "/api/v1/patients", tag = "registry",
    request_body(content = Fields, description = "A new patient (staff only). Names, `birthDate`, `gender`, `phone` (Indian mobile or E.164), `email`, `address`, `abhaNumber`, `abhaAddress`, `language` (BCP-47), `organization` (default: a clinician's own); `force: true` creates even with probable duplicates",
        example = json!({"given": ["Asha"], "family": "Rao", "birthDate": "1984-03-07", "gender": "female", "phone": "98765 43210", "email": "asha@example.org",
            "address": {"line": ["12 MG Road"], "city": "Bengaluru", "state": "Karnataka", "postalCode": "560001"},
            "abhaNumber": "12-3456-7890-1234", "abhaAddress": "asha.rao84@abdm", "language": "hi"})),
    responses(
        (status = 201, description = "Created; `ETag` carries the version", body = PatientSummary,
         example = json!({"id": "0190…", "version": "1", "name": "Asha Rao", "given": ["Asha"], "family": "Rao", "birthDate": "1984-03-07", "gender": "female", "phone": "+919876543210", "email": "asha@example.org", "address": {"line": ["12 MG Road"], "city": "Bengaluru", "state": "Karnataka", "postalCode": "560001", "country": "IN"}, "abhaNumber": "12-3456-7890-1234", "abhaAddress": "asha.rao84@abdm", "language": "hi", "organization": null, "active": true})),
        (status = 400, description = "Invalid field (stable code: invalid_body, invalid_name, invalid_birth_date, invalid_gender, invalid_phone, invalid_email, invalid_address, invalid_abha_number, invalid_abha_address, invalid_language, invalid_organization) (`invalid_resource`)", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_phone", "message": "phone must be a 10-digit Indian mobile number …"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not staff, or the patient would be outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for clinicians and administrators"}})),
        (status = 409, description = "Probable duplicates the caller can see (send `force: true` to create anyway)", body = ErrorEnvelope,
         example = json!({"error": {"code": "probable_duplicate", "message": "probable duplicates exist", "candidates": [{"id": "0190…", "name": "Asha Rao", "birthDate": "1984-03-07", "reasons": ["name_birthdate", "phone"]}]}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    crate::require_staff(&caller)?;
    let req: Fields = body_of(&bytes)?;
    let now = app.clock.now();
    let c = check_fields(&req, now.date_naive())?;
    if c.name.is_none() {
        return Err(bad("invalid_name", "a name needs a given or a family name"));
    }
    let organization = match req.organization.as_deref() {
        Some(o) if hearth_workflow::fhir::valid_id(o) => Some(o.to_owned()),
        Some(_) => return Err(bad("invalid_organization", "organization must be an Organization id")),
        None => own_organization(&caller).map(str::to_owned),
    };
    let store = app.store_for(&caller);
    if req.force != Some(true) {
        let candidates = duplicates(&app, &store, &c).await?;
        if !candidates.is_empty() {
            return Ok((
                StatusCode::CONFLICT,
                Json(json!({"error": {
                    "code": "probable_duplicate",
                    "message": "probable duplicates exist; check them, or send force: true to create anyway",
                    "candidates": candidates,
                }})),
            )
                .into_response());
        }
    }
    let mut p = json!({"resourceType": "Patient", "active": true});
    apply(&mut p, &c);
    if let Some(o) = &organization {
        set(&mut p, "managingOrganization", Some(json!({"reference": format!("Organization/{o}")})));
    }
    crate::check(&app, "Patient", &p)?;
    let write = hearth_workflow::fhir::write_of(&app, "Patient", uuid::Uuid::now_v7().to_string(), p);
    // A clinician bound to an organisation reaches the patients it manages, but the storage API
    // checks reach before the new Patient exists: the app checks that the record is managed by
    // the caller's own organisation and writes it with an unrestricted reach attributed to the
    // caller (as scheduling does for Schedules).
    let writer = match own_organization(&caller) {
        Some(own) if organization.as_deref() == Some(own) => acting_for(&app, &caller),
        Some(_) => return Err(crate::forbidden("a clinician creates patients managed by their own organization")),
        None => store,
    };
    let mut tx = writer.begin().await?;
    let v = interactions::create(&mut tx, write, now).await?;
    tx.commit().await?;
    let p = json_of(&v)?;
    Ok(with_etag(StatusCode::CREATED, v.version_id, summary(&v, &p)))
}

/// The store with an unrestricted reach, attributed to the caller, for a write the app has
/// authorised itself.
fn acting_for(app: &Registry, caller: &Caller) -> Guarded {
    let access = hearth_store::Access {
        reach: hearth_store::Reach::All,
        grants: hearth_store::Grants::all(),
        actor: Some(caller.account.id.clone()),
        audit: false,
    };
    let store = Guarded::new(Arc::clone(&app.store), access);
    match &caller.audit {
        Some(slip) => store.witnessed(Arc::clone(slip) as Arc<dyn hearth_store::Witness>),
        None => store,
    }
}

/// The Patient `id` as the caller's store view has it (404 outside reach or unknown).
async fn read_patient(store: &Guarded, id: &str) -> Result<(Version, Value), ApiError> {
    if !hearth_workflow::fhir::valid_id(id) {
        return Err(not_found("patient"));
    }
    match store.read("Patient", id).await? {
        Current::Found(v) => {
            let p = json_of(&v)?;
            Ok((v, p))
        }
        _ => Err(not_found("patient")),
    }
}

/// Staff, the patient themself, or another caller whose reach holds the record (a caregiver).
fn may_read(caller: &Caller, id: &str) -> bool {
    caller.role != Role::Patient || caller.own_patient() == Some(id)
}

#[utoipa::path(get, path = "/api/v1/patients/{id}", tag = "registry",
    params(("id" = String, Path, description = "The Patient id")),
    responses(
        (status = 200, description = "The patient (within the caller's reach); `ETag` carries the version", body = PatientSummary,
         example = json!({"id": "0190…", "version": "2", "name": "Asha Rao", "birthDate": "1984-03-07", "phone": "+919876543210", "abhaNumber": "12-3456-7890-1234"})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_one(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !may_read(&caller, &id) {
        return Err(not_found("patient"));
    }
    let (v, p) = read_patient(&app.store_for(&caller), &id).await?;
    Ok(with_etag(StatusCode::OK, v.version_id, summary(&v, &p)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParams {
    q: Option<String>,
    phone: Option<String>,
    identifier: Option<String>,
    cursor: Option<String>,
    count: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/patients", tag = "registry",
    params(
        ("q" = Option<String>, Query, description = "Words that start any part of a name (every word must match)"),
        ("phone" = Option<String>, Query, description = "A phone number in any accepted spelling (normalised to E.164)"),
        ("identifier" = Option<String>, Query, description = "An ABHA number, an ABHA address, or a FHIR token `system|value`"),
        ("cursor" = Option<String>, Query, description = "The `next` cursor of the previous page"),
        ("count" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)"),
    ),
    responses(
        (status = 200, description = "One page of matching patients within the caller's reach", body = PatientPage,
         example = json!({"patients": [{"id": "0190…", "version": "1", "name": "Asha Rao", "birthDate": "1984-03-07"}], "next": "opaque-cursor"})),
        (status = 400, description = "Invalid parameter (invalid_query, invalid_phone, invalid_identifier, invalid_cursor)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_phone", "message": "…"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not staff", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for clinicians and administrators"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn search(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    crate::require_staff(&caller)?;
    let Query(params) = params.map_err(|e| bad("invalid_query", e.body_text()))?;
    let count = params.count.unwrap_or(20);
    if !(1..=100).contains(&count) {
        return Err(bad("invalid_query", "count is 1 to 100"));
    }
    let mut pairs: Vec<(&str, String)> = vec![("_count", count.to_string())];
    if let Some(q) = params.q.as_deref().filter(|q| !q.trim().is_empty()) {
        let words = ids::fold_name(q);
        if q.len() > 200 || words.split(' ').count() > 5 {
            return Err(bad("invalid_query", "q is at most 5 words and 200 characters"));
        }
        pairs.extend(words.split(' ').filter(|w| !w.is_empty()).map(|w| ("name", w.to_owned())));
    }
    if let Some(phone) = params.phone.as_deref() {
        let e164 = ids::phone(phone).ok_or_else(|| bad("invalid_phone", "not a phone number we accept"))?;
        pairs.push(("phone", e164));
    }
    if let Some(identifier) = params.identifier.as_deref() {
        let token = if let Some(n) = ids::abha_number(identifier) {
            format!("{ABHA_NUMBER_SYSTEM}|{n}")
        } else if let Some(a) = ids::abha_address(identifier) {
            format!("{ABHA_ADDRESS_SYSTEM}|{a}")
        } else if plain_text(identifier, 300) {
            identifier.trim().to_owned()
        } else {
            return Err(bad("invalid_identifier", "identifier is an ABHA number or address, or system|value"));
        };
        pairs.push(("identifier", token));
    }
    let query = crate::query(&app, "Patient", &pairs)?;
    let cursor = params.cursor.filter(|c| !c.is_empty());
    let (hits, next) = crate::page(&app.store_for(&caller), query, cursor).await?;
    let bodies = hits.iter().map(json_of).collect::<Result<Vec<_>, _>>()?;
    let patients = hits.iter().zip(&bodies).map(|(v, p)| patient_summary(v, p)).collect();
    Ok(Json(json!(PatientPage { patients, next })))
}

#[utoipa::path(get, path = "/api/v1/patients/{id}/demographics", tag = "registry",
    params(("id" = String, Path, description = "The Patient id")),
    responses(
        (status = 200, description = "The demographics (the patient's own, or any within a staff member's reach); `ETag: W/\"<version>\"`", body = PatientSummary,
         example = json!({"id": "0190…", "version": "3", "name": "Asha Rao", "phone": "+919876543210", "email": "asha@example.org", "language": "hi"})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown, or not the caller's to see", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn demographics(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    get_one(State(app), ApiCaller(caller), Path(id)).await
}

/// The version an `If-Match` header names (`W/"3"`, `"3"` or `3`).
fn if_match(headers: &HeaderMap) -> Result<u64, ApiError> {
    let raw = headers.get(header::IF_MATCH).ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "version_required",
            "send If-Match with the version you read (the ETag)",
        )
    })?;
    raw.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad("invalid_if_match", "If-Match is W/\"<version>\""))
}

#[utoipa::path(put, path = "/api/v1/patients/{id}/demographics", tag = "registry",
    params(("id" = String, Path, description = "The Patient id"),
           ("If-Match" = String, Header, description = "The version read, as its ETag W/\"<version>\"")),
    request_body(content = Fields, description = "The fields to change (others keep their value; an empty string removes one). A patient may change `phone`, `email`, `address` and `language` of their own record; staff any field of a patient within reach",
        example = json!({"phone": "+91-98765-43210", "language": "hi-Latn", "address": {"line": ["4 Park Street"], "city": "Kolkata", "postalCode": "700016"}})),
    responses(
        (status = 200, description = "The new version", body = PatientSummary, example = json!({"id": "0190…", "version": "4", "phone": "+919876543210", "language": "hi-Latn"})),
        (status = 400, description = "Invalid field (stable codes as for create) (`invalid_if_match`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_phone", "message": "…"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not allowed to change this record or this field", body = ErrorEnvelope, example = json!({"error": {"code": "field_not_allowed", "message": "patients change their contact details and language only"}})),
        (status = 404, description = "Unknown, or not the caller's to see", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 412, description = "Someone changed the record since the version in If-Match", body = ErrorEnvelope, example = json!({"error": {"code": "version_conflict", "message": "the record changed since version 3 (now 4): read it again"}})),
        (status = 428, description = "No If-Match", body = ErrorEnvelope, example = json!({"error": {"code": "version_required", "message": "send If-Match with the version you read (the ETag)"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn update_demographics(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let own = caller.role == Role::Patient && caller.own_patient() == Some(id.as_str());
    if !own && !crate::is_staff(&caller) {
        return Err(if caller.role == Role::Patient {
            not_found("patient")
        } else {
            crate::forbidden("demographics are changed by the patient or by staff")
        });
    }
    let fields: Fields = body_of(&bytes)?;
    if fields.organization.is_some() || fields.force.is_some() {
        return Err(bad("invalid_body", "organization and force belong to creating a patient"));
    }
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(not_found("patient"));
    }
    if own
        && (fields.given.is_some()
            || fields.family.is_some()
            || fields.birth_date.is_some()
            || fields.gender.is_some()
            || fields.abha_number.is_some()
            || fields.abha_address.is_some())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "field_not_allowed",
            "patients change their contact details (phone, email, address) and language only; ask the clinic for the rest",
        ));
    }
    let expected = if_match(&headers)?;
    let now = app.clock.now();
    let c = check_fields(&fields, now.date_naive())?;
    let store = app.store_for(&caller);
    let mut tx = store.begin().await?;
    let current = match tx.read("Patient", &id).await? {
        Current::Found(v) => v,
        _ => return Err(not_found("patient")),
    };
    let mut p = json_of(&current)?;
    let mut c = c;
    // A name change that sends only the given or only the family name keeps the other part.
    if let Some((given, family)) = &mut c.name {
        if fields.given.is_none() {
            *given = p
                .pointer("/name/0/given")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
        }
        if fields.family.is_none() {
            *family = str_at(&p, "/name/0/family").map(str::to_owned);
        }
    }
    apply(&mut p, &c);
    if p.get("name").is_none() {
        return Err(bad("invalid_name", "a patient keeps a name"));
    }
    crate::check(&app, "Patient", &p)?;
    let write = hearth_workflow::fhir::write_of(&app, "Patient", id, p);
    let written = interactions::update(&mut tx, write, Some(expected), now).await.map_err(|e| match e {
        StoreError::VersionConflict { expected, current } => ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "version_conflict",
            format!(
                "the record changed since version {expected} (now {}): read it again",
                current.map_or_else(|| "gone".to_owned(), |c| c.to_string())
            ),
        ),
        other => other.into(),
    })?;
    tx.commit().await?;
    let p = json_of(&written.version)?;
    Ok(with_etag(StatusCode::OK, written.version.version_id, summary(&written.version, &p)))
}

//! `/api/v1/providers`: the provider directory, a `Practitioner` and a `PractitionerRole` each.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hearth_store::interactions;
use hearth_store::{Current, Version};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, require_admin};

use crate::{NUCC, Registry, SNOMED, bad, body_of, ids, json_of, plain_text};

pub(crate) fn router() -> axum::Router<Arc<Registry>> {
    axum::Router::new().route("/api/v1/providers", axum::routing::get(list).post(create))
}

/// A specialty: a SNOMED CT concept or a NUCC taxonomy code.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SpecialtyIn {
    /// `snomed`, `nucc`, or the system URI of either.
    #[schema(example = "snomed")]
    system: String,
    #[schema(example = "394801008")]
    code: String,
    #[schema(example = "Trauma and orthopaedics")]
    display: Option<String>,
}

/// A new provider: a Practitioner and its PractitionerRole.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewProvider {
    #[serde(default)]
    given: Vec<String>,
    family: Option<String>,
    /// Such as `Dr`.
    #[serde(default)]
    prefix: Vec<String>,
    phone: Option<String>,
    email: Option<String>,
    specialty: SpecialtyIn,
    /// An Organization id (optional).
    organization: Option<String>,
    /// A Location id (optional).
    location: Option<String>,
}

/// A specialty coding: SNOMED CT (a concept id: 6 to 18 digits, no leading zero) or NUCC
/// (a taxonomy code: 3 digits, 6 digits or capitals, then `X`, e.g. `207X00000X`).
fn specialty(s: &SpecialtyIn) -> Result<Value, ApiError> {
    let system = match s.system.as_str() {
        "snomed" | SNOMED => SNOMED,
        "nucc" | NUCC => NUCC,
        _ => return Err(bad("invalid_specialty", "specialty.system is snomed or nucc")),
    };
    let code = s.code.trim();
    let ok = if system == SNOMED {
        (6..=18).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) && !code.starts_with('0')
    } else {
        nucc_code(code)
    };
    if !ok {
        return Err(bad(
            "invalid_specialty",
            if system == SNOMED {
                "a SNOMED CT concept id is 6 to 18 digits"
            } else {
                "a NUCC taxonomy code is 10 characters like 207X00000X"
            },
        ));
    }
    let mut coding = Map::new();
    coding.insert("system".into(), json!(system));
    coding.insert("code".into(), json!(code));
    if let Some(d) = s.display.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        if !plain_text(d, 200) {
            return Err(bad("invalid_specialty", "specialty.display is up to 200 characters"));
        }
        coding.insert("display".into(), json!(d));
    }
    Ok(json!({"coding": [coding]}))
}

fn nucc_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 10
        && b.iter().take(3).all(u8::is_ascii_digit)
        && b.iter().skip(3).take(6).all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        && b.last() == Some(&b'X')
}

fn reference_id<'a>(v: &'a Value, pointer: &str, ty: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).and_then(|r| r.strip_prefix(ty)).and_then(|r| r.strip_prefix('/'))
}

/// A provider in the directory.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Provider<'a> {
    /// The Practitioner id.
    id: Option<String>,
    /// The PractitionerRole id (what appointments and schedules name).
    role_id: &'a str,
    #[schema(example = "Dr Meera Iyer")]
    name: String,
    /// The specialty coding (`system`, `code`, `display`).
    #[schema(value_type = Option<Coding>)]
    specialty: Option<&'a Value>,
    /// The Organization id.
    organization: Option<&'a str>,
    /// The Location id.
    location: Option<&'a str>,
    #[schema(value_type = Option<bool>)]
    active: Option<&'a Value>,
}

/// A FHIR `Coding`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // The shape of a stored coding, for the description.
struct Coding {
    #[schema(example = "http://snomed.info/sct")]
    system: Option<String>,
    #[schema(example = "394801008")]
    code: Option<String>,
    display: Option<String>,
}

/// A page of the directory.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ProviderPage<'a> {
    providers: Vec<Provider<'a>>,
    /// The `cursor` of the next page; `null` on the last.
    next: Option<String>,
}

fn provider_json<'a>(practitioner: Option<(&Version, &Value)>, role: &'a Version, r: &'a Value) -> Provider<'a> {
    let p = practitioner.map(|(_, p)| p);
    let name = p.and_then(|p| p.pointer("/name/0"));
    let mut parts: Vec<&str> = Vec::new();
    for key in ["prefix", "given"] {
        parts.extend(
            name.and_then(|n| n.get(key)).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str),
        );
    }
    parts.extend(name.and_then(|n| n.get("family")).and_then(Value::as_str));
    Provider {
        id: practitioner
            .map(|(v, _)| v.id.clone())
            .or_else(|| reference_id(r, "/practitioner/reference", "Practitioner").map(str::to_owned)),
        role_id: &role.id,
        name: parts.join(" "),
        specialty: r.pointer("/specialty/0/coding/0"),
        organization: reference_id(r, "/organization/reference", "Organization"),
        location: reference_id(r, "/location/0/reference", "Location"),
        active: r.get("active"),
    }
}

#[utoipa::path(post, path = "/api/v1/providers", tag = "registry",
    request_body(content = NewProvider, description = "A provider (admins only): the Practitioner's name and contact, and the PractitionerRole's specialty (SNOMED CT or NUCC), organisation and location",
        example = json!({"prefix": ["Dr"], "given": ["Meera"], "family": "Iyer", "phone": "98450 12345", "specialty": {"system": "snomed", "code": "394801008", "display": "Trauma and orthopaedics"}, "organization": "0190…"})),
    responses(
        (status = 201, description = "The provider", body = Provider,
         example = json!({"id": "0190…", "roleId": "0190…", "name": "Dr Meera Iyer", "specialty": {"system": "http://snomed.info/sct", "code": "394801008", "display": "Trauma and orthopaedics"}, "organization": "0190…", "location": null, "active": true})),
        (status = 400, description = "Invalid field (invalid_body, invalid_name, invalid_specialty, invalid_phone, invalid_email, invalid_reference) (`invalid_resource`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_specialty", "message": "specialty.system is snomed or nucc"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not an administrator", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}})),
        (status = 422, description = "The organisation or location does not exist", body = ErrorEnvelope, example = json!({"error": {"code": "unknown_reference", "message": "no such Organization"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let req: NewProvider = body_of(&bytes)?;
    let given: Vec<&str> = req.given.iter().map(|g| g.trim()).filter(|g| !g.is_empty()).collect();
    let prefix: Vec<&str> = req.prefix.iter().map(|g| g.trim()).filter(|g| !g.is_empty()).collect();
    let family = req.family.as_deref().map(str::trim).filter(|f| !f.is_empty());
    if (given.is_empty() && family.is_none())
        || given.len() > 5
        || prefix.len() > 3
        || !given.iter().chain(prefix.iter()).chain(family.iter()).all(|n| plain_text(n, 100))
    {
        return Err(bad("invalid_name", "a provider needs a given or family name (each part up to 100 characters)"));
    }
    let specialty = specialty(&req.specialty)?;
    let mut telecom = Vec::new();
    if let Some(p) = req.phone.as_deref() {
        let e164 = ids::phone(p).ok_or_else(|| bad("invalid_phone", "not a phone number we accept"))?;
        telecom.push(json!({"system": "phone", "value": e164, "use": "work"}));
    }
    if let Some(e) = req.email.as_deref() {
        let e = ids::email(e).ok_or_else(|| bad("invalid_email", "not a valid e-mail address"))?;
        telecom.push(json!({"system": "email", "value": e, "use": "work"}));
    }
    let store = app.store_for(&caller);
    for (ty, id) in [("Organization", &req.organization), ("Location", &req.location)] {
        if let Some(id) = id {
            if !hearth_workflow::fhir::valid_id(id) {
                return Err(bad("invalid_reference", format!("{} must be a {ty} id", ty.to_lowercase())));
            }
            if !matches!(store.read(ty, id).await?, Current::Found(_)) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_reference",
                    format!("no such {ty}"),
                ));
            }
        }
    }
    let mut name = Map::new();
    if let Some(f) = family {
        name.insert("family".into(), json!(f));
    }
    if !given.is_empty() {
        name.insert("given".into(), json!(given));
    }
    if !prefix.is_empty() {
        name.insert("prefix".into(), json!(prefix));
    }
    let mut practitioner = json!({"resourceType": "Practitioner", "active": true, "name": [name]});
    if !telecom.is_empty()
        && let Some(o) = practitioner.as_object_mut()
    {
        o.insert("telecom".into(), Value::Array(telecom));
    }
    let practitioner_id = uuid::Uuid::now_v7().to_string();
    let mut role = json!({
        "resourceType": "PractitionerRole",
        "active": true,
        "practitioner": {"reference": format!("Practitioner/{practitioner_id}")},
        "specialty": [specialty],
    });
    if let Some(o) = role.as_object_mut() {
        if let Some(org) = &req.organization {
            o.insert("organization".into(), json!({"reference": format!("Organization/{org}")}));
        }
        if let Some(loc) = &req.location {
            o.insert("location".into(), json!([{"reference": format!("Location/{loc}")}]));
        }
    }
    crate::check(&app, "Practitioner", &practitioner)?;
    crate::check(&app, "PractitionerRole", &role)?;
    let now = app.clock.now();
    let mut tx = store.begin().await?;
    let pv = interactions::create(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, "Practitioner", practitioner_id, practitioner),
        now,
    )
    .await?;
    let rv = interactions::create(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, "PractitionerRole", uuid::Uuid::now_v7().to_string(), role),
        now,
    )
    .await?;
    tx.commit().await?;
    let (p, r) = (json_of(&pv)?, json_of(&rv)?);
    Ok((StatusCode::CREATED, Json(provider_json(Some((&pv, &p)), &rv, &r))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// A specialty code, or `system|code`.
    specialty: Option<String>,
    cursor: Option<String>,
    count: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/providers", tag = "registry",
    params(
        ("specialty" = Option<String>, Query, description = "Only this specialty: a code, or `system|code`"),
        ("cursor" = Option<String>, Query, description = "The `next` cursor of the previous page"),
        ("count" = Option<u32>, Query, description = "Page size, 1 to 100 (default 50)"),
    ),
    responses(
        (status = 200, description = "One page of the directory (any signed-in user)", body = ProviderPage,
         example = json!({"providers": [{"id": "0190…", "roleId": "0190…", "name": "Dr Meera Iyer", "specialty": {"system": "http://snomed.info/sct", "code": "394801008", "display": "Trauma and orthopaedics"}, "organization": null, "location": null, "active": true}], "next": null})),
        (status = 400, description = "Invalid parameter (invalid_query, invalid_cursor)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "count is 1 to 100"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| bad("invalid_query", e.body_text()))?;
    let count = params.count.unwrap_or(50);
    if !(1..=100).contains(&count) {
        return Err(bad("invalid_query", "count is 1 to 100"));
    }
    let mut pairs: Vec<(&str, String)> = vec![("_count", count.to_string())];
    if let Some(s) = params.specialty.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if !plain_text(s, 300) || s.contains(',') {
            return Err(bad("invalid_query", "specialty is one code or system|code"));
        }
        let s = s.replace("snomed|", &format!("{SNOMED}|")).replace("nucc|", &format!("{NUCC}|"));
        pairs.push(("specialty", s));
    }
    let store = app.store_for(&caller);
    let (roles, next) = crate::page(&store, crate::query(&app, "PractitionerRole", &pairs)?, params.cursor).await?;
    let roles: Vec<(Version, Value)> =
        roles.into_iter().map(|v| json_of(&v).map(|j| (v, j))).collect::<Result<_, _>>()?;
    // The practitioners of the page in one search, not one read per role.
    let mut ids: Vec<&str> =
        roles.iter().filter_map(|(_, r)| reference_id(r, "/practitioner/reference", "Practitioner")).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut practitioners: Vec<(Version, Value)> = Vec::new();
    if !ids.is_empty() {
        let q = crate::query(&app, "Practitioner", &[("_id", ids.join(",")), ("_count", "100".to_owned())])?;
        let (found, _) = crate::page(&store, q, None).await?;
        practitioners = found.into_iter().map(|v| json_of(&v).map(|j| (v, j))).collect::<Result<_, _>>()?;
    }
    let providers: Vec<Provider> = roles
        .iter()
        .map(|(rv, r)| {
            let pid = reference_id(r, "/practitioner/reference", "Practitioner");
            let p = practitioners.iter().find(|(v, _)| Some(v.id.as_str()) == pid).map(|(v, j)| (v, j));
            provider_json(p, rv, r)
        })
        .collect();
    Ok(Json(json!(ProviderPage { providers, next })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(system: &str, code: &str) -> Result<Value, ApiError> {
        specialty(&SpecialtyIn { system: system.into(), code: code.into(), display: None })
    }

    #[test]
    fn specialties_are_snomed_or_nucc_codes() {
        assert_eq!(spec("snomed", "394801008").unwrap()["coding"][0]["system"], SNOMED);
        assert_eq!(spec(SNOMED, "394801008").unwrap()["coding"][0]["code"], "394801008");
        assert_eq!(spec("nucc", "207X00000X").unwrap()["coding"][0]["system"], NUCC);
        assert!(spec("nucc", "207Q00000X").is_ok());
        for (system, code) in [
            ("snomed", "12345"),
            ("snomed", "0394801008"),
            ("snomed", "39480100X"),
            ("nucc", "207X00000"),
            ("nucc", "207x00000x"),
            ("nucc", "A07X00000X"),
            ("icd10", "M54.5"),
        ] {
            assert_eq!(spec(system, code).unwrap_err().code, "invalid_specialty", "{system} {code}");
        }
    }
}

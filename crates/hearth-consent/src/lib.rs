//! Consent (issue 7): FHIR `Consent` resources a patient manages through `/api/v1/me/consents`.
//!
//! Decisions:
//! - Three kinds, each one FHIR `Consent` in the patient's record (category LOINC 59284-0
//!   "Patient Consent", `performer` = the patient, `provision.period` = the dates given):
//!   - `share`: permit `access` to the record for one practitioner, organisation or caregiver
//!     account (scope `patient-privacy`, `provision.actor` with role `IRCP`; a caregiver account
//!     is named by an identifier `urn:hearth:account|<id>`). Access decisions read active shares
//!     on every request ([`shared_with`]): a clinician bound to an organisation reaches its
//!     patients *and* those who share with them or their organisation; a caregiver reaches the
//!     patients an admin linked *and* those who share with them. A clinician without an
//!     organisation already reaches everyone, so a share changes nothing for them.
//!   - `contact`: permit or deny contact by `sms` or `email` (scope `patient-privacy`, policy
//!     `OPTIN`/`OPTOUT`; the channel is `provision.code` `urn:hearth:contact-channel|sms`, as no
//!     official code system names a contact channel).
//!     Read by notifications through [`contact_allowed`]; without a consent, contact is allowed.
//!   - `research`: permit or deny research use (scope `research`, policy `OPTIN`/`OPTOUT`).
//! - Revoking sets `status` to `inactive` (a new version; the history keeps the old one); it
//!   takes effect on the next request, since nothing caches the decision.
//! - Periods are dates (`YYYY-MM-DD`, inclusive) or instants; a consent outside its period is not
//!   in force.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_store::interactions::ResourceStoreExt;
use hearth_store::{Current, StoreError, Version};
use hearth_store_sql::identity;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller, Ctx, Mount, Workflow};

const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ACCOUNT: &str = "urn:hearth:account";
const CHANNEL: &str = "urn:hearth:contact-channel";

/// The consent workflow's state: the shared context (it needs nothing else).
pub struct Consents {
    ctx: Arc<Ctx>,
}

impl Consents {
    pub fn new(ctx: Arc<Ctx>) -> Consents {
        Consents { ctx }
    }
}

impl std::ops::Deref for Consents {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Consents {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, give, revoke))]
struct Api;

impl Workflow for Consents {
    /// `/api/v1/me/consents`: every request is an audit event (it reads or changes the record).
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: router().with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}

fn router() -> axum::Router<Arc<Consents>> {
    axum::Router::new()
        .route("/api/v1/me/consents", axum::routing::get(list).post(give))
        .route("/api/v1/me/consents/{id}", axum::routing::delete(revoke))
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_consent", msg)
}

fn own_patient(caller: &Caller) -> Result<String, ApiError> {
    caller
        .own_patient()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "forbidden", "consents are managed by patient accounts"))
}

/// A consent to record.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "share", "with": "Practitioner/123", "start": "2026-12-01", "end": "2027-05-31"}))]
struct Give {
    /// `share` (access to the record for `with`), `contact` (by `channel`) or `research`.
    #[schema(example = "share")]
    kind: String,
    /// `share`: `Practitioner/<id>`, `Organization/<id>` or `account:<caregiver account id>`.
    with: Option<String>,
    /// `contact`: `sms` or `email`.
    channel: Option<String>,
    /// `contact` and `research`: permit (`true`) or refuse (`false`).
    allow: Option<bool>,
    /// First day (`YYYY-MM-DD`) or instant in force; from now when absent.
    start: Option<String>,
    /// Last day (inclusive) or instant in force; open-ended when absent.
    end: Option<String>,
}

/// One of the patient's consents, as the app API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsentSummary {
    /// The FHIR `Consent` id.
    id: String,
    /// `share`, `contact` or `research`.
    #[schema(example = "share")]
    kind: &'static str,
    /// `share`: whom (`Practitioner/<id>`, `Organization/<id>` or `account:<id>`).
    with: Option<String>,
    /// `contact`: `sms` or `email`.
    channel: Option<String>,
    /// `contact`/`research`: permitted (`true`) or refused (`false`); `null` for a share.
    allow: Option<bool>,
    /// Start of the period in force.
    start: Option<String>,
    /// End of the period in force.
    end: Option<String>,
    /// `active`, or `inactive` once revoked.
    #[schema(example = "active")]
    status: Option<String>,
    /// Active and within its period now.
    in_force: bool,
    /// When it was recorded.
    recorded: Option<String>,
}

/// The signed-in patient's consents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConsentList {
    /// Newest first.
    consents: Vec<ConsentSummary>,
}

/// A period bound: a date (its start, or for `end` its last instant) or an instant.
fn bound(value: &str, end: bool) -> Option<DateTime<Utc>> {
    if let Some(t) = hearth_workflow::fhir::parse_instant(value) {
        return Some(t);
    }
    let d = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    let t = if end { d.and_hms_milli_opt(23, 59, 59, 999)? } else { d.and_hms_opt(0, 0, 0)? };
    Some(t.and_utc())
}

fn consent(patient: &str, give: &Give, now: DateTime<Utc>) -> Result<Value, ApiError> {
    let mut period = serde_json::Map::new();
    for (key, value, end) in [("start", &give.start, false), ("end", &give.end, true)] {
        if let Some(v) = value {
            bound(v, end).ok_or_else(|| bad(format!("{key} must be a date (YYYY-MM-DD) or an instant")))?;
            period.insert(key.into(), json!(v));
        }
    }
    if let (Some(s), Some(e)) =
        (give.start.as_deref().and_then(|s| bound(s, false)), give.end.as_deref().and_then(|e| bound(e, true)))
        && e < s
    {
        return Err(bad("end is before start"));
    }
    let policy =
        |allow: bool| json!({"coding": [{"system": ACT_CODE, "code": if allow { "OPTIN" } else { "OPTOUT" }}]});
    let (scope, rule, provision) = match give.kind.as_str() {
        "share" => {
            if give.channel.is_some() || give.allow.is_some() {
                return Err(bad("a share takes `with`, `start` and `end` only"));
            }
            let with = give.with.as_deref().ok_or_else(|| bad("a share needs `with`"))?;
            let reference = match with.split_once('/') {
                Some(("Practitioner" | "Organization", id)) if hearth_workflow::fhir::valid_id(id) => {
                    json!({"reference": with})
                }
                _ => match with.strip_prefix("account:") {
                    Some(id) if !id.is_empty() => json!({"identifier": {"system": ACCOUNT, "value": id}}),
                    _ => return Err(bad("`with` must be Practitioner/<id>, Organization/<id> or account:<id>")),
                },
            };
            let mut p = json!({
                "type": "permit",
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                           "reference": reference}],
                "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
            });
            if let Some(obj) = p.as_object_mut()
                && !period.is_empty()
            {
                obj.insert("period".into(), Value::Object(period.clone()));
            }
            ("patient-privacy", policy(true), p)
        }
        "contact" | "research" => {
            if give.with.is_some() {
                return Err(bad("`with` belongs to a share"));
            }
            let allow = give.allow.ok_or_else(|| bad("say `allow`: true or false"))?;
            let mut p = serde_json::Map::new();
            p.insert("type".into(), json!(if allow { "permit" } else { "deny" }));
            if !period.is_empty() {
                p.insert("period".into(), Value::Object(period.clone()));
            }
            if give.kind == "contact" {
                let channel = give.channel.as_deref().ok_or_else(|| bad("a contact consent needs `channel`"))?;
                if channel != "sms" && channel != "email" {
                    return Err(bad("channel must be sms or email"));
                }
                p.insert("code".into(), json!([{"coding": [{"system": CHANNEL, "code": channel}]}]));
                ("patient-privacy", policy(allow), Value::Object(p))
            } else {
                if give.channel.is_some() {
                    return Err(bad("`channel` belongs to a contact consent"));
                }
                ("research", policy(allow), Value::Object(p))
            }
        }
        other => return Err(bad(format!("unknown kind {other:?} (share, contact, research)"))),
    };
    Ok(json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": scope}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "performer": [{"reference": format!("Patient/{patient}")}],
        "policyRule": rule,
        "provision": provision,
    }))
}

/// Whether a stored Consent is in force at `now`: active and within its period.
fn in_force(c: &Value, now: DateTime<Utc>) -> bool {
    if c.get("status").and_then(Value::as_str) != Some("active") {
        return false;
    }
    let at = |key: &str, end: bool| {
        c.pointer(&format!("/provision/period/{key}")).and_then(Value::as_str).and_then(|v| bound(v, end))
    };
    at("start", false).is_none_or(|s| s <= now) && at("end", true).is_none_or(|e| now <= e)
}

/// The summary the app API shows.
fn summary(v: &Version, now: DateTime<Utc>) -> ConsentSummary {
    let c: Value = v.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    let scope = c.pointer("/scope/coding/0/code").and_then(Value::as_str).unwrap_or_default();
    let kind = if scope == "research" {
        "research"
    } else if c.pointer("/provision/code").is_some() {
        "contact"
    } else {
        "share"
    };
    let actor = c.pointer("/provision/actor/0/reference");
    let with = actor.and_then(|r| r.get("reference")).and_then(Value::as_str).map(str::to_owned).or_else(|| {
        actor.and_then(|r| r.pointer("/identifier/value")).and_then(Value::as_str).map(|id| format!("account:{id}"))
    });
    let text = |pointer: &str| c.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    ConsentSummary {
        id: v.id.clone(),
        kind,
        with,
        channel: text("/provision/code/0/coding/0/code"),
        allow: c.pointer("/provision/type").and_then(Value::as_str).map(|t| t == "permit"),
        start: text("/provision/period/start"),
        end: text("/provision/period/end"),
        status: text("/status"),
        in_force: in_force(&c, now),
        recorded: text("/dateTime"),
    }
}

/// The live Consents matching a search, as the system reads them.
async fn consents(ctx: &Ctx, pairs: Vec<(String, String)>) -> Result<Vec<Version>, StoreError> {
    ctx.search_all(&ctx.system(), "Consent", &pairs, usize::MAX).await
}

/// The patients who share their record, in force at `now`, with any of `actors`
/// (`Practitioner/…`, `Organization/…`) or with the account `account`.
pub async fn shared_with(
    ctx: &Ctx,
    actors: &[String],
    account: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let base = || {
        vec![
            ("status".to_owned(), "active".to_owned()),
            ("scope".to_owned(), format!("{CONSENT_SCOPE}|patient-privacy")),
            ("_count".to_owned(), "500".to_owned()),
        ]
    };
    let mut found = Vec::new();
    if !actors.is_empty() {
        let mut by_reference = base();
        by_reference.push(("actor".to_owned(), actors.join(",")));
        found.extend(consents(ctx, by_reference).await?);
    }
    let mut by_account = base();
    by_account.push(("actor:identifier".to_owned(), format!("{ACCOUNT}|{account}")));
    found.extend(consents(ctx, by_account).await?);
    let mut patients: Vec<String> = found
        .iter()
        .filter_map(|v| v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()))
        .filter(|c| in_force(c, now) && c.pointer("/provision/type").and_then(Value::as_str) == Some("permit"))
        .filter_map(|c| {
            c.pointer("/patient/reference")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("Patient/"))
                .map(str::to_owned)
        })
        .collect();
    patients.sort();
    patients.dedup();
    Ok(patients)
}

/// Whether `patient` may be contacted over `channel` (`sms`/`email`) at `now`: the most recent
/// consent in force for that channel decides; without one, contact is allowed.
pub async fn contact_allowed(ctx: &Ctx, patient: &str, channel: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let found = consents(
        ctx,
        vec![
            ("patient".to_owned(), format!("Patient/{patient}")),
            ("status".to_owned(), "active".to_owned()),
            ("_sort".to_owned(), "-date,-_id".to_owned()),
            ("_count".to_owned(), "100".to_owned()),
        ],
    )
    .await?;
    for v in &found {
        let Some(c) = v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else { continue };
        let on_channel = c.pointer("/provision/code/0/coding/0/code").and_then(Value::as_str) == Some(channel)
            && c.pointer("/provision/code/0/coding/0/system").and_then(Value::as_str) == Some(CHANNEL);
        if on_channel && in_force(&c, now) {
            return Ok(c.pointer("/provision/type").and_then(Value::as_str) == Some("permit"));
        }
    }
    Ok(true)
}

#[utoipa::path(get, path = "/api/v1/me/consents", tag = "consents",
    responses(
        (status = 200, description = "The signed-in patient's consents, newest first", body = ConsentList,
         example = json!({"consents": [{"id": "…", "kind": "share", "with": "Practitioner/…", "channel": null, "allow": true, "start": "2026-01-01", "end": null, "status": "active", "inForce": true, "recorded": "2026-11-29T10:00:00Z"}]})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not a patient account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "consents are managed by patient accounts"}})),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<Consents>>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<ConsentList>, ApiError> {
    let patient = own_patient(&caller)?;
    let found = consents(
        &app,
        vec![
            ("patient".to_owned(), format!("Patient/{patient}")),
            // Ids are time-ordered (UUIDv7): the tie-break within a millisecond.
            ("_sort".to_owned(), "-date,-_id".to_owned()),
            ("_count".to_owned(), "200".to_owned()),
        ],
    )
    .await?;
    let now = app.clock.now();
    Ok(Json(ConsentList { consents: found.iter().map(|v| summary(v, now)).collect() }))
}

#[utoipa::path(post, path = "/api/v1/me/consents", tag = "consents",
    request_body(content = Give, description = "`kind`: `share` (with `with`: `Practitioner/<id>`, `Organization/<id>` or `account:<id>`), `contact` (with `channel`: `sms`|`email` and `allow`) or `research` (with `allow`); optional `start`/`end` dates",
        example = json!({"kind": "share", "with": "Practitioner/123", "start": "2026-12-01", "end": "2027-05-31"})),
    responses(
        (status = 201, description = "Recorded and in force from `start`", body = ConsentSummary),
        (status = 400, description = "Malformed consent, or a share with no such practitioner, organization or caregiver account (invalid_consent)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_consent", "message": "a share needs `with`"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a patient account", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn give(
    State(app): State<Arc<Consents>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let patient = own_patient(&caller)?;
    let give: Give = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))?;
    let now = app.clock.now();
    let resource = consent(&patient, &give, now)?;
    if let Some(with) = &give.with {
        share_target_exists(&app, with).await?;
    }
    hearth_workflow::fhir::validate(&app, "Consent", &resource).map_err(|e| {
        ApiError::internal(format!(
            "the Consent built for the app API does not validate: {:?}",
            e.issues.first().map(|i| &i.diagnostics)
        ))
    })?;
    let write = hearth_workflow::fhir::write_of(&app, "Consent", uuid::Uuid::now_v7().to_string(), resource);
    let version = app.store_for(&caller).create(write, now).await?;
    Ok((StatusCode::CREATED, Json(summary(&version, now))).into_response())
}

/// A share names someone who is there: a live Practitioner or Organization, or a caregiver
/// account (a share with nobody would silently grant access to whoever later takes that id).
async fn share_target_exists(ctx: &Ctx, with: &str) -> Result<(), ApiError> {
    if let Some(id) = with.strip_prefix("account:") {
        let account = identity::account_by_id(&*ctx.db, id).await?;
        return match account {
            Some(a) if a.role == "caregiver" => Ok(()),
            _ => Err(bad(format!("there is no caregiver account {id}"))),
        };
    }
    let (ty, id) = with
        .split_once('/')
        .ok_or_else(|| bad("`with` must be Practitioner/<id>, Organization/<id> or account:<id>"))?;
    match ctx.system().read(ty, id).await? {
        Current::Found(_) => Ok(()),
        _ => Err(bad(format!("there is no {ty}/{id}"))),
    }
}

#[utoipa::path(delete, path = "/api/v1/me/consents/{id}", tag = "consents",
    params(("id" = String, Path, description = "The consent's id")),
    responses(
        (status = 200, description = "Revoked (status inactive), effective at once", body = ConsentSummary),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a patient account", body = ErrorEnvelope),
        (status = 404, description = "No such consent of this patient", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such consent"}})),
    ),
    security(("bearer" = [])))]
pub async fn revoke(
    State(app): State<Arc<Consents>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<ConsentSummary>, ApiError> {
    let patient = own_patient(&caller)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such consent");
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(not_found());
    }
    let store = app.store_for(&caller);
    let Current::Found(current) = store.read("Consent", &id).await? else { return Err(not_found()) };
    let mut c: Value = current
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| ApiError::internal("stored Consent is not JSON"))?;
    if c.pointer("/patient/reference").and_then(Value::as_str) != Some(format!("Patient/{patient}").as_str()) {
        return Err(not_found());
    }
    if let Some(obj) = c.as_object_mut() {
        obj.insert("status".into(), json!("inactive"));
    }
    let now = app.clock.now();
    let write = hearth_workflow::fhir::write_of(&app, "Consent", id, c);
    let written = store.update(write, Some(current.version_id), now).await?;
    Ok(Json(summary(&written.version, now)))
}

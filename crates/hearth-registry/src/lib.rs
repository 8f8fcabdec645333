//! Patient and provider registry (issue 17, part 1): the app API over FHIR `Patient`,
//! `Practitioner` and `PractitionerRole`, with Indian identifiers and invitations to claim a
//! record. See `docs/REGISTRY.md` for the decisions; in short:
//!
//! - Patients are created by staff (clinicians, admins) from a typed body. Probable duplicates —
//!   the same folded name and birth date, the same phone, or the same ABHA number — are found
//!   with three FHIR searches through the caller's own store view (so only within the caller's
//!   reach; existence outside it stays private) and answered `409 probable_duplicate` with the
//!   candidates, unless `force` is set.
//! - A clinician bound to an organisation creates patients managed by that organisation (the
//!   storage API refuses a Patient outside the caller's reach).
//! - Demographics (`/patients/{id}/demographics`): the patient reads and changes their own
//!   contact details and language; staff read and change any patient within reach, names,
//!   birth date, gender and identifiers included. Each change is a new Patient version, guarded
//!   by `If-Match` (`412 version_conflict` when someone else wrote first).
//! - Providers: a `Practitioner` and a `PractitionerRole` (specialty SNOMED CT or NUCC) written in
//!   one transaction by an admin; every signed-in user may list them (directories are shared).
//! - Profile (`/api/v1/profile`, `profile.rs`): the patient's own contact details, language,
//!   time zone and units (Patient extensions) and goals (`Goal`s), written in one transaction;
//!   the zone is also the patient's accounts' notification zone.
//! - Invitations: a single-use code, stored only as its keyed hash under the server pepper, sent
//!   through the notification outbox in the transaction that records it; a claim creates a
//!   `patient` account linked to the record and spends the code in one transaction.

#![forbid(unsafe_code)]

pub mod ids;
mod invites;
mod patients;
pub mod profile;
mod providers;

use std::sync::Arc;

use axum::http::StatusCode;
use hearth_auth::Role;
use hearth_auth::password::{PasswordHasher, PasswordPolicy};
use hearth_notifications::Notifier;
use hearth_store::Version;
use hearth_workflow::error::ApiError;
use hearth_workflow::{Caller, Ctx, Mount, Workflow};
use serde::Deserialize;
use serde_json::Value;

/// The system of the ABHA number in `Patient.identifier`, as the ABDM FHIR implementation
/// guide's Patient examples write it (value `XX-XXXX-XXXX-XXXX`).
pub const ABHA_NUMBER_SYSTEM: &str = "https://healthid.ndhm.gov.in";
/// The system of the ABHA address in `Patient.identifier` (Hearth's own: no official system URI
/// for the address was found in the ABDM profiles we could consult).
pub const ABHA_ADDRESS_SYSTEM: &str = "urn:hearth:abha-address";
/// SNOMED CT, for specialties.
pub const SNOMED: &str = "http://snomed.info/sct";
/// The NUCC Health Care Provider Taxonomy, for specialties.
pub const NUCC: &str = "http://nucc.org/provider-taxonomy";

/// What a claim needs from the edge's identity code: the pepper the invitation codes are hashed
/// under, and the password hasher and policy accounts are created with. Given by the edge
/// (`workflows.rs`), never read from the `Ctx`, so a workflow cannot reach other secrets.
#[derive(Clone)]
pub struct Credentials {
    pub pepper: hearth_auth::Pepper,
    pub hasher: PasswordHasher,
    pub policy: PasswordPolicy,
}

/// The registry workflow's state.
pub struct Registry {
    ctx: Arc<Ctx>,
    pub config: RegistryConfig,
    pub notifier: Arc<Notifier>,
    credentials: Credentials,
}

impl Registry {
    pub fn new(ctx: Arc<Ctx>, config: RegistryConfig, notifier: Arc<Notifier>, credentials: Credentials) -> Registry {
        Registry { ctx, config, notifier, credentials }
    }
}

impl std::ops::Deref for Registry {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Registry {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

/// The `[registry]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// How long an invitation to claim a record stays valid, in hours (1 to 720).
    pub invite_ttl_hours: u32,
    /// The page of the web app where a patient claims a record; the code is appended as
    /// `?code=…`. Default: `<base_url>/claim` (else the request's host).
    pub claim_url: Option<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { invite_ttl_hours: 24, claim_url: None }
    }
}

impl RegistryConfig {
    /// Checks the values (the edge's `Config::validate` calls it).
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=720).contains(&self.invite_ttl_hours) {
            return Err("registry.invite_ttl_hours must be 1 to 720".into());
        }
        if let Some(u) = &self.claim_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err("registry.claim_url must be an http(s) URL".into());
        }
        Ok(())
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    patients::create,
    patients::get_one,
    patients::search,
    patients::demographics,
    patients::update_demographics,
    invites::invite,
    invites::claim,
    profile::profile,
    profile::update_profile,
    providers::list,
    providers::create,
))]
struct Api;

impl Workflow for Registry {
    /// Patients and invitations are someone's record (every request audited); the provider
    /// directory is not (refusals audited).
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: axum::Router::new()
                .merge(patients::router())
                .merge(invites::router())
                .merge(profile::router())
                .with_state(Arc::clone(&self)),
            refusals_audited: providers::router().with_state(self),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}

pub(crate) fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

pub(crate) fn forbidden(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg)
}

pub(crate) fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

pub(crate) fn body_of<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))
}

pub(crate) fn is_staff(caller: &Caller) -> bool {
    matches!(caller.role, Role::Clinician | Role::Admin)
}

pub(crate) fn require_staff(caller: &Caller) -> Result<(), ApiError> {
    if is_staff(caller) { Ok(()) } else { Err(forbidden("this operation is for clinicians and administrators")) }
}

pub(crate) fn json_of(v: &Version) -> Result<Value, ApiError> {
    v.body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or_else(|| ApiError::internal("stored resource is not JSON"))
}

/// Validates a resource built by the app API against R4. The input was checked field by field
/// before, so a failure here is reported as bad input of the field the model names, never a 500.
pub(crate) fn check(app: &Registry, resource_type: &str, resource: &Value) -> Result<(), ApiError> {
    hearth_workflow::fhir::validate(app, resource_type, resource).map_err(|e| {
        let detail = e.issues.first().map(|i| format!("{}: {}", i.expression.join(", "), i.diagnostics));
        bad("invalid_resource", detail.unwrap_or_else(|| "the resource does not validate".into()))
    })
}

/// Whether `s` can go into a FHIR `string`: some text, no control characters (nor bidirectional
/// overrides, see [`hearth_workflow::fhir::is_display_text`]), at most `max` bytes.
pub(crate) fn plain_text(s: &str, max: usize) -> bool {
    s.len() <= max && hearth_workflow::fhir::is_display_text(s, max)
}

/// A search the app builds itself; one that does not parse is our bug.
pub(crate) fn query(
    app: &Registry,
    resource_type: &str,
    pairs: &[(&str, String)],
) -> Result<hearth_search::SearchQuery, ApiError> {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    app.registry()
        .parse_query(&[resource_type], &pairs, hearth_search::Handling::Strict)
        .map_err(|e| ApiError::internal(format!("registry search does not parse: {e:?}")))
}

/// One page of a search through `store`: the matches and the cursor of the next page.
pub(crate) async fn page(
    store: &hearth_store::Guarded,
    query: hearth_search::SearchQuery,
    cursor: Option<String>,
) -> Result<(Vec<Version>, Option<String>), ApiError> {
    let request = hearth_store::SearchRequest {
        query,
        access: store.access().clone(),
        compartment: None,
        cursor,
        count_total: false,
    };
    let page = store.search(request).await.map_err(|e| match e {
        hearth_store::StoreError::InvalidSearch(_) => bad("invalid_cursor", "the cursor is not valid for this search"),
        other => other.into(),
    })?;
    Ok((page.matches, page.next))
}

pub(crate) fn rng() -> hearth_auth::rand_core::UnwrapErr<getrandom::SysRng> {
    hearth_auth::rand_core::UnwrapErr(getrandom::SysRng)
}

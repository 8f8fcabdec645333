//! Identity at the edge: who is calling, and the [`Access`] they hand to the store.
//!
//! - [`Auth`] holds the access-token signing keys (persisted in the database so every process
//!   signs with the same active key and verifies every key; rotation adds a key without logging
//!   anyone out) and the password hasher and policy.
//! - [`Caller`] is the authenticated principal of a request (an extractor: a FHIR or app handler
//!   that takes a `Caller` cannot run for an anonymous request, which gets `401`).
//! - [`Caller::access`] is the authorization proof for the store (see `hearth_store::access`):
//!   resolved per request from the token *and* the account row, so a deleted account, a changed
//!   organisation or a revoked caregiver grant takes effect at once, not when the token expires.
//!
//! Two-factor policy: TOTP is mandatory for admins (and for clinicians when
//! `auth.require_mfa_for_clinicians`). Such an account that has not enrolled yet gets, at login,
//! an access token with the single scope [`MFA_SETUP_SCOPE`] and no refresh token: every
//! endpoint refuses it with `403 mfa_enrollment_required` except `totp/enroll`, `totp/confirm`
//! and `me` (the [`EnrolCaller`] extractor). The policy is applied where tokens are issued
//! (login, OTP login, refresh), so a token signed by other means (tests, the CLI) is unaffected.
//!
//! Decisions: app logins get the scope `user/*.cruds` narrowed by the role's reach (a patient
//! reaches their own record, a caregiver the records granted to them, a clinician their
//! organisation's patients or everyone when no organisation is set, an admin everything). A client
//! may ask for fewer scopes and for a `patient/` launch context (SMART); it can never widen them.

pub mod mfa;
pub mod otp;
pub mod routes;
pub mod smart;
pub mod web;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use hearth_auth::Role;
use hearth_auth::scope::{Interaction, Scope, ScopeContext, ScopeSet};
use hearth_auth::token::{AccessClaims, KeyRing, TokenKey, TokenSettings};
use hearth_store::{Access, Grants, PatientScheme, PatientSet, Reach, StoreError, TypeGrant};
use hearth_store_sql::Db;
use hearth_store_sql::identity::{self, AccountRow};

use crate::app::App;
use crate::error::{ApiError, FhirError, Issue};

/// The system CSPRNG, as `hearth-auth` wants it.
pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Resource types that are nobody's record: any signed-in user may read them (directories,
/// terminology, definitions, schedules to book from). Patients never write them.
pub const SHARED_TYPES: [&str; 21] = [
    "ActivityDefinition",
    "CodeSystem",
    "ConceptMap",
    "Endpoint",
    "HealthcareService",
    "Location",
    "Medication",
    "MedicationKnowledge",
    "NamingSystem",
    "Organization",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Questionnaire",
    "Schedule",
    "SearchParameter",
    "Slot",
    "StructureDefinition",
    "Substance",
    "ValueSet",
    "CapabilityStatement",
];

const ACTIVE_KID: &str = "active_signing_kid";

/// The only scope of the token an account gets while it must still enrol TOTP.
pub const MFA_SETUP_SCOPE: &str = "hearth/mfa-setup";

/// Whether an account of `role` must have TOTP before it gets a full session.
pub fn mfa_required(app: &App, role: Role) -> bool {
    match role {
        Role::Admin => true,
        Role::Clinician => app.config.auth.require_mfa_for_clinicians,
        Role::Patient | Role::Caregiver => false,
    }
}

fn is_setup_token(claims: &AccessClaims) -> bool {
    claims.scope.split_whitespace().any(|s| s == MFA_SETUP_SCOPE)
}

pub struct Auth {
    keys: RwLock<Arc<KeyRing>>,
    pub settings: TokenSettings,
    pub hasher: hearth_auth::password::PasswordHasher,
    pub policy: hearth_auth::password::PasswordPolicy,
    pub scheme: Arc<PatientScheme>,
    /// The key of the keyed hashes of recovery and login codes.
    pub pepper: hearth_auth::Pepper,
    /// The per-type grants of each scope string seen (see [`grants_for`]).
    grants: std::sync::Mutex<std::collections::HashMap<(String, ScopeContext), Grants>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key: {0}")]
    Key(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// Loads every stored signing key into a ring whose active key is the one the database names.
async fn load_ring(db: &dyn Db) -> Result<Option<KeyRing>, AuthSetupError> {
    let Some(active) = identity::setting(db, ACTIVE_KID).await? else { return Ok(None) };
    let mut keys = Vec::new();
    for (kid, der) in identity::signing_keys(db).await? {
        let der = unhex(&der).ok_or_else(|| AuthSetupError::Key(format!("key {kid} is not hex")))?;
        let key = TokenKey::from_pkcs8_der(&der).map_err(|e| AuthSetupError::Key(e.to_string()))?;
        keys.push(key);
    }
    let Some(pos) = keys.iter().position(|k| k.kid().as_str() == active) else {
        return Err(AuthSetupError::Key("the active signing key is missing from signing_keys".into()));
    };
    let active_key = keys.swap_remove(pos);
    let mut ring = KeyRing::new(active_key);
    for key in keys {
        ring.insert(key).map_err(|e| AuthSetupError::Key(e.to_string()))?;
    }
    Ok(Some(ring))
}

async fn store_key(db: &dyn Db, key: &TokenKey, now: DateTime<Utc>) -> Result<(), AuthSetupError> {
    let der = key.to_pkcs8_der().map_err(|e| AuthSetupError::Key(e.to_string()))?;
    identity::insert_signing_key(db, key.kid().as_str(), &hex(der.expose()), now.timestamp_millis()).await?;
    Ok(())
}

impl Auth {
    /// Loads the signing keys, creating the first one on a new database (the first process to
    /// get there wins; the others load its key).
    pub async fn load(
        db: &dyn Db,
        scheme: Arc<PatientScheme>,
        pepper: hearth_auth::Pepper,
        now: DateTime<Utc>,
    ) -> Result<Auth, AuthSetupError> {
        let ring = match load_ring(db).await? {
            Some(ring) => ring,
            None => {
                let key = TokenKey::generate(&mut rng());
                store_key(db, &key, now).await?;
                identity::setting_init(db, ACTIVE_KID, key.kid().as_str()).await?;
                load_ring(db).await?.ok_or_else(|| AuthSetupError::Key("no active signing key".into()))?
            }
        };
        Ok(Auth {
            keys: RwLock::new(Arc::new(ring)),
            settings: TokenSettings::new("hearth", "hearth"),
            hasher: hearth_auth::password::PasswordHasher::new(),
            policy: hearth_auth::password::PasswordPolicy::new(),
            scheme,
            pepper,
            grants: std::sync::Mutex::default(),
        })
    }

    pub fn keys(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(k) => Arc::clone(&k),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Re-reads the keys (another process rotated them).
    pub async fn reload(&self, db: &dyn Db) -> Result<(), AuthSetupError> {
        if let Some(ring) = load_ring(db).await? {
            let mut guard = match self.keys.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *guard = Arc::new(ring);
        }
        Ok(())
    }

    /// Adds a new signing key and makes it the active one; older keys keep verifying tokens
    /// already issued.
    pub async fn rotate(&self, db: &dyn Db, now: DateTime<Utc>) -> Result<String, AuthSetupError> {
        let key = TokenKey::generate(&mut rng());
        let kid = key.kid().as_str().to_owned();
        store_key(db, &key, now).await?;
        identity::setting_set(db, ACTIVE_KID, &kid).await?;
        self.reload(db).await?;
        Ok(kid)
    }
}

/// Why a request is not authenticated. Every token failure looks the same to the client.
#[derive(Debug)]
pub enum AuthFailure {
    Missing,
    Invalid,
    /// An enrolment-only token on any other endpoint.
    MfaSetupOnly,
    Store(StoreError),
}

/// The authenticated principal of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: AccountRow,
    pub role: Role,
    pub claims: AccessClaims,
    pub scopes: ScopeSet,
    pub access: Access,
    /// The audit slip of the request (FHIR requests), told what the caller's store view touches.
    pub audit: Option<Arc<crate::audit::AuditSlip>>,
}

impl Caller {
    /// The FHIR `Patient` id an account of role `patient` is linked to.
    pub fn own_patient(&self) -> Option<&str> {
        self.account.fhir_user.as_deref().and_then(|u| u.strip_prefix("Patient/"))
    }
}

/// The scope an app login gets when it does not ask for less.
pub const DEFAULT_SCOPE: &str = "user/*.cruds openid fhirUser offline_access";

fn type_grant(app: &App, scopes: &ScopeSet, context: ScopeContext, interaction: Interaction) -> TypeGrant {
    let mut allowed = BTreeSet::new();
    let mut all = true;
    for t in app.model.resource_types() {
        if scopes.permits(context, t, interaction) {
            allowed.insert(t.to_owned());
        } else {
            all = false;
        }
    }
    if all { TypeGrant::All } else { TypeGrant::Only(allowed) }
}

/// The grants of a token's scopes: the same for every token with the same scope string (the
/// resource types are fixed for the process), so worked out once per scope string — five
/// passes over every resource type were the largest CPU cost of a read after the signature.
fn grants_for(app: &App, scope: &str, scopes: &ScopeSet, context: ScopeContext) -> Grants {
    let key = (scope.to_owned(), context);
    if let Some(g) = app.auth.grants.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return g;
    }
    let grants = Grants {
        create: type_grant(app, scopes, context, Interaction::Create),
        read: type_grant(app, scopes, context, Interaction::Read),
        update: type_grant(app, scopes, context, Interaction::Update),
        delete: type_grant(app, scopes, context, Interaction::Delete),
        search: type_grant(app, scopes, context, Interaction::Search),
    };
    if let Ok(mut m) = app.auth.grants.lock() {
        // Scope strings come from tokens this server signed: few; bound the memory anyway.
        if m.len() >= 1024 {
            m.clear();
        }
        m.insert(key, grants.clone());
    }
    grants
}

/// The store access of an account holding a token with these scopes.
pub async fn access_for(
    app: &App,
    account: &AccountRow,
    role: Role,
    claims: &AccessClaims,
) -> Result<(ScopeSet, Access), StoreError> {
    let (scopes, _) = ScopeSet::parse_lenient(&claims.scope);
    let clinical = |ctx: ScopeContext| scopes.iter().any(|s| matches!(s, Scope::Clinical(c) if c.context == ctx));
    let scheme = Arc::clone(&app.auth.scheme);
    let (context, reach) = if clinical(ScopeContext::User) {
        let reach = match role {
            Role::Admin => Reach::All,
            Role::Clinician => match &account.organization {
                Some(org) => {
                    // Its organisation's patients, and those who share their record with this
                    // clinician or the organisation (crate::consent).
                    let mut actors = vec![format!("Organization/{org}")];
                    actors.extend(account.fhir_user.iter().filter(|u| u.starts_with("Practitioner/")).cloned());
                    let also = crate::consent::shared_with(app, &actors, &account.id, app.clock.now()).await?;
                    Reach::Patients { set: PatientSet::Organization { org: org.clone(), also }, scheme }
                }
                None => Reach::All,
            },
            Role::Patient => {
                let own = account.fhir_user.as_deref().and_then(|u| u.strip_prefix("Patient/"));
                Reach::Patients { set: PatientSet::Ids(own.map(str::to_owned).into_iter().collect()), scheme }
            }
            Role::Caregiver => {
                let mut ids = identity::caregiver_patients(&*app.db, &account.id).await?;
                let actors: Vec<String> = account.fhir_user.iter().cloned().collect();
                ids.extend(crate::consent::shared_with(app, &actors, &account.id, app.clock.now()).await?);
                ids.sort();
                ids.dedup();
                Reach::Patients { set: PatientSet::Ids(ids), scheme }
            }
        };
        (ScopeContext::User, reach)
    } else {
        // `patient/` scopes reach the launch patient only (none: shared types only).
        let ids = claims.patient.iter().cloned().collect();
        (ScopeContext::Patient, Reach::Patients { set: PatientSet::Ids(ids), scheme })
    };
    let grants = grants_for(app, &claims.scope, &scopes, context);
    // The audit trail: admins only, and only when their token's scopes let them read it.
    let audit = role == Role::Admin
        && context == ScopeContext::User
        && scopes.permits(context, hearth_store::AUDIT_TYPE, Interaction::Search);
    Ok((scopes, Access { reach, grants, actor: Some(account.id.clone()), audit }))
}

/// Resolves the bearer token of a request into a [`Caller`] (refusing enrolment-only tokens).
pub async fn authenticate(app: &App, parts: &Parts) -> Result<Caller, AuthFailure> {
    authenticate_headers(app, &parts.headers, false).await
}

/// Verifies a bearer token's signature and expiry only (no database): its subject, for rate
/// limiting.
pub fn token_subject(app: &App, headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    app.auth.keys().verify(&app.auth.settings, token.trim(), app.clock.now()).ok().map(|c| c.sub)
}

/// Resolves the bearer token in `headers`; `allow_setup` admits enrolment-only tokens.
pub async fn authenticate_headers(
    app: &App,
    headers: &axum::http::HeaderMap,
    allow_setup: bool,
) -> Result<Caller, AuthFailure> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else { return Err(AuthFailure::Missing) };
    let value = value.to_str().map_err(|_| AuthFailure::Invalid)?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(AuthFailure::Invalid),
    };
    let now = app.clock.now();
    let claims = match app.auth.keys().verify(&app.auth.settings, token, now) {
        Ok(c) => c,
        Err(hearth_auth::token::TokenError::UnknownKid) => {
            // Another process may have rotated the keys: look once more.
            app.auth.reload(&*app.db).await.map_err(|_| AuthFailure::Invalid)?;
            app.auth.keys().verify(&app.auth.settings, token, now).map_err(|_| AuthFailure::Invalid)?
        }
        Err(_) => return Err(AuthFailure::Invalid),
    };
    if !allow_setup && is_setup_token(&claims) {
        return Err(AuthFailure::MfaSetupOnly);
    }
    let account = identity::account_by_id(&*app.db, &claims.sub)
        .await
        .map_err(AuthFailure::Store)?
        .ok_or(AuthFailure::Invalid)?;
    let role: Role = account.role.parse().map_err(|_| AuthFailure::Invalid)?;
    if role != claims.role {
        return Err(AuthFailure::Invalid);
    }
    let (scopes, access) = access_for(app, &account, role, &claims).await.map_err(AuthFailure::Store)?;
    Ok(Caller { account, role, claims, scopes, access, audit: None })
}

impl From<AuthFailure> for FhirError {
    fn from(f: AuthFailure) -> FhirError {
        match f {
            AuthFailure::Missing => FhirError::new(
                StatusCode::UNAUTHORIZED,
                Issue::error("login", "authentication required: send an access token as `Authorization: Bearer …`"),
            ),
            AuthFailure::Invalid => {
                FhirError::new(StatusCode::UNAUTHORIZED, Issue::error("login", "the access token is not valid"))
            }
            AuthFailure::MfaSetupOnly => FhirError::new(
                StatusCode::FORBIDDEN,
                Issue::error(
                    "forbidden",
                    "mfa_enrollment_required: this token may only enrol TOTP (POST /api/v1/auth/totp/enroll)",
                ),
            ),
            AuthFailure::Store(e) => e.into(),
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> ApiError {
        match f {
            AuthFailure::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "authentication required: send an access token as `Authorization: Bearer …`",
            ),
            AuthFailure::Invalid => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is not valid")
            }
            AuthFailure::MfaSetupOnly => ApiError::new(
                StatusCode::FORBIDDEN,
                "mfa_enrollment_required",
                "two-factor enrolment required: this token may only enrol TOTP (POST /api/v1/auth/totp/enroll)",
            ),
            AuthFailure::Store(e) => crate::error::api_store_error(e),
        }
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, FhirError> {
        let mut caller = authenticate(app, parts).await.map_err(FhirError::from)?;
        if let Some(slip) = parts.extensions.get::<Arc<crate::audit::AuditSlip>>() {
            slip.identify(&caller);
            caller.audit = Some(Arc::clone(slip));
        }
        Ok(caller)
    }
}

/// [`Caller`] for the app API (errors as the JSON envelope).
pub struct ApiCaller(pub Caller);

impl FromRequestParts<Arc<App>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<ApiCaller, ApiError> {
        let mut caller = authenticate(app, parts).await.map_err(ApiError::from)?;
        // App endpoints on patient data run under the audit middleware too (`crate::audit`).
        if let Some(slip) = parts.extensions.get::<Arc<crate::audit::AuditSlip>>() {
            slip.identify(&caller);
            caller.audit = Some(Arc::clone(slip));
        }
        Ok(ApiCaller(caller))
    }
}

/// [`ApiCaller`] that also admits the enrolment-only token (TOTP enrolment and `me`).
pub struct EnrolCaller(pub Caller);

impl FromRequestParts<Arc<App>> for EnrolCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<EnrolCaller, ApiError> {
        let mut caller = authenticate_headers(app, &parts.headers, true).await.map_err(ApiError::from)?;
        if let Some(slip) = parts.extensions.get::<Arc<crate::audit::AuditSlip>>() {
            slip.identify(&caller);
            caller.audit = Some(Arc::clone(slip));
        }
        Ok(EnrolCaller(caller))
    }
}

/// The Patient compartment and shared types as the store wants them.
pub fn patient_scheme(compartments: &hearth_search::Compartments) -> PatientScheme {
    PatientScheme {
        compartment: compartments.members("Patient").map(<[_]>::to_vec).unwrap_or_default(),
        shared: SHARED_TYPES.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Whether a `Caller` may use an operation restricted to admins.
pub fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this operation is for administrators"))
    }
}

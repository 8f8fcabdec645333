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

pub mod limits;
pub mod mfa;
pub mod otp;
pub mod phone;
pub mod routes;
pub mod smart;
pub mod web;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use hearth_auth::scope::{Interaction, Scope, ScopeContext, ScopeSet};
use hearth_auth::token::{AccessClaims, KeyRing, TokenKey, TokenSettings};
use hearth_auth::{Pepper, Role};
use hearth_store::{Access, Grants, PatientScheme, PatientSet, Reach, StoreError, TypeGrant};
use hearth_store_sql::Db;
use hearth_store_sql::identity::{self, AccountRow};

use hearth_workflow::ApiError;
pub use hearth_workflow::{ApiCaller, AuthFailure, Caller, EnrolCaller, require_admin};
use hearth_workflow::{Authenticate, Ctx};

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
pub fn mfa_required(config: &crate::config::Config, role: Role) -> bool {
    match role {
        Role::Admin => true,
        Role::Clinician => config.auth.require_mfa_for_clinicians,
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
    /// Backend-services JWK Sets fetched from a client's `jwks_uri`: URL → (fetched at, ms; set).
    pub jwks_cache: std::sync::Mutex<std::collections::HashMap<String, (i64, Arc<serde_json::Value>)>>,
}

/// The `sub` prefix of a SMART Backend Services token: the subject is the client, not an account.
pub const CLIENT_SUBJECT: &str = hearth_workflow::SERVICE_SUBJECT;

/// The account a backend-services client acts as: no password, no e-mail, no FHIR user; its
/// reach and grants come from its `system/` scopes alone ([`Authenticate`] below).
pub fn service_account(client_id: &str) -> AccountRow {
    AccountRow {
        id: format!("{CLIENT_SUBJECT}{client_id}"),
        email: None,
        phone: None,
        phone_pending: None,
        password_hash: None,
        role: Role::Clinician.as_str().to_owned(),
        fhir_user: None,
        organization: None,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: 0,
    }
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
    /// Verifies a bearer token's signature and expiry only (no database): its claims (subject and
    /// OAuth client), for rate limiting.
    pub fn token_claims(&self, headers: &axum::http::HeaderMap, now: DateTime<Utc>) -> Option<AccessClaims> {
        let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.keys().verify(&self.settings, token.trim(), now).ok()
    }

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
            jwks_cache: std::sync::Mutex::default(),
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

/// A pepper from configuration, else from `<data_dir>/auth-pepper` (created on first start).
pub fn load_pepper(config: &crate::config::Config) -> Result<Pepper, String> {
    if let Some(p) = &config.auth.pepper {
        let bytes = config.pepper_bytes(p).ok_or("auth.pepper must be hex of at least 32 bytes")?;
        return Pepper::new(bytes).map_err(|e| e.to_string());
    }
    let path = config.data_dir.join("auth-pepper");
    std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no system randomness: {e}"))?;
    let fresh = hex(&key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut f) => {
            std::io::Write::write_all(&mut f, fresh.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            f.sync_all().map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = unhex(text.trim()).filter(|b| b.len() >= 32).ok_or("the auth-pepper file is not 32+ bytes of hex")?;
    Pepper::new(bytes).map_err(|e| e.to_string())
}

/// A JSON request body of the auth routes (`400 invalid_body` with serde's reason otherwise).
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Only an object: serde would read a struct from an array too (`[null, null]`, in field order).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_body",
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_body", format!("invalid request body: {e}"))
    })
}

/// The scope an app login gets when it does not ask for less.
pub const DEFAULT_SCOPE: &str = "user/*.cruds openid fhirUser offline_access";

fn type_grant(
    model: &hearth_fhir::Model,
    scopes: &ScopeSet,
    context: ScopeContext,
    interaction: Interaction,
) -> TypeGrant {
    let mut allowed = BTreeSet::new();
    let mut all = true;
    for t in model.resource_types() {
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
fn grants_for(ctx: &Ctx, auth: &Auth, scope: &str, scopes: &ScopeSet, context: ScopeContext) -> Grants {
    let key = (scope.to_owned(), context);
    if let Some(g) = auth.grants.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return g;
    }
    let grants = Grants {
        create: type_grant(&ctx.model, scopes, context, Interaction::Create),
        read: type_grant(&ctx.model, scopes, context, Interaction::Read),
        update: type_grant(&ctx.model, scopes, context, Interaction::Update),
        delete: type_grant(&ctx.model, scopes, context, Interaction::Delete),
        search: type_grant(&ctx.model, scopes, context, Interaction::Search),
    };
    if let Ok(mut m) = auth.grants.lock() {
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
    ctx: &Ctx,
    auth: &Auth,
    account: &AccountRow,
    role: Role,
    claims: &AccessClaims,
) -> Result<(ScopeSet, Access), StoreError> {
    let (scopes, _) = ScopeSet::parse_lenient(&claims.scope);
    let clinical = |want: ScopeContext| scopes.iter().any(|s| matches!(s, Scope::Clinical(c) if c.context == want));
    let scheme = Arc::clone(&auth.scheme);
    let (context, reach) = if clinical(ScopeContext::User) {
        let reach = match role {
            Role::Admin => Reach::All,
            Role::Clinician => match &account.organization {
                Some(org) => {
                    // Its organisation's patients, and those who share their record with this
                    // clinician or the organisation (crate::consent).
                    let mut actors = vec![format!("Organization/{org}")];
                    actors.extend(account.fhir_user.iter().filter(|u| u.starts_with("Practitioner/")).cloned());
                    let also = hearth_consent::shared_with(ctx, &actors, &account.id, ctx.clock.now()).await?;
                    Reach::Patients { set: PatientSet::Organization { org: org.clone(), also }, scheme }
                }
                None => Reach::All,
            },
            Role::Patient => {
                let own = account.fhir_user.as_deref().and_then(|u| u.strip_prefix("Patient/"));
                Reach::Patients { set: PatientSet::Ids(own.map(str::to_owned).into_iter().collect()), scheme }
            }
            Role::Caregiver => {
                let mut ids = identity::caregiver_patients(&*ctx.db, &account.id).await?;
                let actors: Vec<String> = account.fhir_user.iter().cloned().collect();
                ids.extend(hearth_consent::shared_with(ctx, &actors, &account.id, ctx.clock.now()).await?);
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
    let grants = grants_for(ctx, auth, &claims.scope, &scopes, context);
    // The audit trail: admins only, and only when their token's scopes let them read it.
    let audit = role == Role::Admin
        && context == ScopeContext::User
        && scopes.permits(context, hearth_store::AUDIT_TYPE, Interaction::Search);
    Ok((scopes, Access { reach, grants, actor: Some(account.id.clone()), audit }))
}

/// A token this server signed whose time is up is told apart from any other refusal (its
/// signature was checked first), so a client knows to refresh rather than to sign in again.
fn failure(e: hearth_auth::token::TokenError) -> AuthFailure {
    match e {
        hearth_auth::token::TokenError::Expired => AuthFailure::Expired,
        _ => AuthFailure::Invalid,
    }
}

/// Resolves the bearer token in `headers` (signature, expiry, the account as it is now, its
/// access); `allow_setup` admits enrolment-only tokens.
#[async_trait::async_trait]
impl Authenticate for Auth {
    async fn authenticate(
        &self,
        ctx: &Ctx,
        headers: &axum::http::HeaderMap,
        allow_setup: bool,
    ) -> Result<Caller, AuthFailure> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else { return Err(AuthFailure::Missing) };
        let value = value.to_str().map_err(|_| AuthFailure::Invalid)?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(AuthFailure::Invalid),
        };
        let now = ctx.clock.now();
        let claims = match self.keys().verify(&self.settings, token, now) {
            Ok(c) => c,
            Err(hearth_auth::token::TokenError::UnknownKid) => {
                // Another process may have rotated the keys: look once more.
                self.reload(&*ctx.db).await.map_err(|_| AuthFailure::Invalid)?;
                self.keys().verify(&self.settings, token, now).map_err(failure)?
            }
            Err(e) => return Err(failure(e)),
        };
        if !allow_setup && is_setup_token(&claims) {
            return Err(AuthFailure::MfaSetupOnly);
        }
        // SMART tokens can be revoked (RFC 7009); app sign-ins end with logout instead.
        if claims.client_id.is_some()
            && hearth_store_sql::oauth::is_revoked(&*ctx.db, &claims.jti).await.map_err(AuthFailure::Store)?
        {
            return Err(AuthFailure::Invalid);
        }
        if let Some(client) = claims.sub.strip_prefix(CLIENT_SUBJECT) {
            // A backend service: the client must still be registered; its system/ scopes decide.
            if claims.client_id.as_deref() != Some(client)
                || hearth_store_sql::oauth::client_by_id(&*ctx.db, client).await.map_err(AuthFailure::Store)?.is_none()
            {
                return Err(AuthFailure::Invalid);
            }
            let (scopes, _) = ScopeSet::parse_lenient(&claims.scope);
            let grants = grants_for(ctx, self, &claims.scope, &scopes, ScopeContext::System);
            let access = Access { reach: Reach::All, grants, actor: Some(claims.sub.clone()), audit: false };
            let account = service_account(client);
            return Ok(Caller { account, role: claims.role, claims, scopes, access, audit: None });
        }
        let account = identity::account_by_id(&*ctx.db, &claims.sub)
            .await
            .map_err(AuthFailure::Store)?
            .ok_or(AuthFailure::Invalid)?;
        let role: Role = account.role.parse().map_err(|_| AuthFailure::Invalid)?;
        if role != claims.role {
            return Err(AuthFailure::Invalid);
        }
        let (scopes, access) = access_for(ctx, self, &account, role, &claims).await.map_err(AuthFailure::Store)?;
        Ok(Caller { account, role, claims, scopes, access, audit: None })
    }
}

/// The Patient compartment and shared types as the store wants them.
pub fn patient_scheme(compartments: &hearth_search::Compartments) -> PatientScheme {
    PatientScheme {
        compartment: compartments.members("Patient").map(<[_]>::to_vec).unwrap_or_default(),
        shared: SHARED_TYPES.iter().map(|s| (*s).to_owned()).collect(),
    }
}

//! The account API under `/api/v1/auth` (JSON; errors as the `{"error":{code,message}}` envelope).
//!
//! Decisions:
//! - `register` is patient self-service: it creates a patient account *and* its FHIR `Patient`
//!   (name, birth date, gender, contact), linked as the account's `fhirUser`. Staff accounts are
//!   created by an admin (`POST /api/v1/admin/accounts`) or by `hearth admin create-admin`.
//! - Phones (see [`super::phone`]): `register` takes an optional `phone`, normalised and kept
//!   unverified (`phone_pending`) until its code is entered; an admin's `phone` is verified at once
//!   (`409 phone_taken` when another account has it). `me` shows `phone` and `phoneVerified`.
//! - A wrong e-mail and a wrong password get the same answer, after the same Argon2 work.
//! - After 5 consecutive failures an account is locked for 1 minute, doubling with every further
//!   failure up to a day (`429` with `Retry-After`); a success resets the count.
//! - Two-factor: an account with TOTP enabled must add `code` (a current TOTP code or an unused
//!   recovery code) to `login`; without it the answer is `401 mfa_required` and no tokens, with a
//!   wrong one `401 totp_invalid` (counted like a wrong password). An account that must have 2FA
//!   but has not enrolled gets an enrolment-only token (see [`super::MFA_SETUP_SCOPE`]).
//! - Browser mode: `"cookie": true` in `login`, `otp/verify` or `refresh` puts the refresh token in
//!   an `HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth` cookie instead of the body, plus a
//!   readable `__Host-hearth-csrf` cookie. A `refresh` or `logout` authenticated by that cookie must
//!   repeat the CSRF cookie in `X-CSRF-Token` (`403 csrf_failed` otherwise); requests that send
//!   the refresh token in the body (bearer clients) need none.
//! - Refresh rotation marks the presented token used with a conditional update that only one
//!   request can win; the loser is treated as reuse and the family is revoked (the two-step
//!   "mark used, then insert the child" can at worst lose the session, never fork it).

use hearth_workflow::openapi::ErrorEnvelope;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use hearth_auth::Role;
use hearth_auth::password::{AccountIdentity, PasswordHash};
use hearth_auth::refresh::{self, FamilyId, RefreshDecision, RefreshRecord};
use hearth_auth::scope::ScopeSet;
use hearth_auth::token::AccessGrant;
use hearth_store_sql::identity::{self, AccountRow, RefreshRow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::web::{
    REFRESH_COOKIE, check_auth, clear_session_cookies, client_ip, cookie, require_csrf, set_session_cookies,
};
use super::{ApiCaller, DEFAULT_SCOPE, EnrolCaller, MFA_SETUP_SCOPE, mfa_required, require_admin, rng};
use crate::app::App;
use crate::error::ApiError;

pub fn router() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh_token))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/admin/accounts", post(create_account).get(list_accounts))
        .route("/api/v1/admin/accounts/{id}/totp/reset", post(admin_reset_totp))
        .route("/api/v1/admin/caregivers", post(grant_caregiver))
        .route("/.well-known/jwks.json", get(jwks))
}

/// Locks after this many consecutive failures.
const LOCK_AFTER: i64 = 5;

/// Sets a member of a JSON object (our own objects, built just above).
fn set(target: &mut Value, key: &str, value: Value) {
    if let Some(object) = target.as_object_mut() {
        object.insert(key.to_owned(), value);
    }
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn invalid_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong e-mail or password")
}

fn normalize_email(email: &str) -> Result<String, ApiError> {
    let e = email.trim().to_lowercase();
    // One `@`, a local part, and a domain of two or more non-empty labels (`a@@b.c`, `a@b..c` and
    // `a@b.c.` are no addresses a message reaches).
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && !d.contains('@') && d.contains('.') && d.split('.').all(|label| !label.is_empty())
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(e) } else { Err(bad("invalid_email", "not a valid e-mail address")) }
}

async fn hash_password(app: &Arc<App>, password: String) -> Result<PasswordHash, ApiError> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || app.auth.hasher.hash(&mut rng(), &password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

fn check_policy(app: &App, password: &str, email: &str, name: Option<&str>) -> Result<(), ApiError> {
    app.auth
        .policy
        .check(password, &AccountIdentity { email: Some(email), name })
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, r.code(), r.message()))
}

/// A sign-in account as the app API shows it (never its password, second factor or codes).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"id": "0193a9d4-…", "email": "asha@example.org", "phone": "+919876543210", "phoneVerified": true, "role": "patient", "fhirUser": "Patient/0193a9d4-…", "organization": null, "totpEnabled": false}))]
pub(crate) struct AccountView {
    id: String,
    email: Option<String>,
    /// The verified phone (E.164), else the one waiting for its code.
    phone: Option<String>,
    /// Whether `phone` is verified (sign-in by SMS code works only then).
    phone_verified: bool,
    /// `patient`, `caregiver`, `clinician` or `admin`.
    #[schema(example = "patient")]
    role: String,
    /// The FHIR resource this account is (`Patient/<id>`, `Practitioner/<id>`, …).
    fhir_user: Option<String>,
    /// The Organization id a staff account belongs to.
    organization: Option<String>,
    /// Two-factor sign-in (TOTP) is on.
    totp_enabled: bool,
    /// A new phone waiting for its code while another is verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_pending: Option<String>,
    /// `GET /api/v1/auth/me` only: the access token's scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// `GET /api/v1/auth/me` only: the token's `patient` launch context.
    #[serde(skip_serializing_if = "Option::is_none")]
    patient: Option<String>,
}

/// Tokens, as the login, OTP, refresh and SMART token endpoints answer them (RFC 6749 §5.1).
/// In browser mode (`cookie: true`) `refresh_token` is not in the body: it is in the HttpOnly
/// refresh cookie, with a CSRF cookie whose value goes in `X-CSRF-Token`.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"access_token": "eyJ…", "token_type": "Bearer", "expires_in": 900, "refresh_token": "…", "scope": "user/*.cruds openid fhirUser offline_access"}))]
#[allow(dead_code)] // The shape of the token answers (built as JSON by each grant); a test checks real answers against it.
pub(crate) struct TokenResponse {
    /// A signed JWT (EdDSA) for `Authorization: Bearer …`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    token_type: String,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    expires_in: i64,
    /// Single use: each refresh rotates it; presenting a used one revokes its whole family.
    refresh_token: Option<String>,
    /// The granted scope (space-separated).
    scope: String,
    /// The launch context's Patient id, when the scope is `patient/…`.
    patient: Option<String>,
    /// OpenID Connect ID token (SMART clients asking for `openid`).
    id_token: Option<String>,
    /// An admin (or clinician, where required) without two-factor sign-in: this token only
    /// reaches `totp/enroll`, `totp/confirm` and `me`, and there is no refresh token.
    mfa_enrollment_required: Option<bool>,
}

fn account_view(a: &AccountRow) -> AccountView {
    AccountView {
        id: a.id.clone(),
        email: a.email.clone(),
        // The verified phone, else the one waiting for its code; `phonePending` when both exist.
        phone: a.phone.clone().or_else(|| a.phone_pending.clone()),
        phone_verified: a.phone.is_some(),
        role: a.role.clone(),
        fhir_user: a.fhir_user.clone(),
        organization: a.organization.clone(),
        totp_enabled: a.totp_enabled,
        phone_pending: a.phone.as_ref().and(a.phone_pending.clone()),
        scope: None,
        patient: None,
    }
}

fn new_account(email: String, hash: PasswordHash, role: Role, now: DateTime<Utc>) -> AccountRow {
    AccountRow {
        id: uuid::Uuid::now_v7().to_string(),
        email: Some(email),
        phone: None,
        phone_pending: None,
        password_hash: Some(hash.into_string()),
        role: role.as_str().to_owned(),
        fhir_user: None,
        organization: None,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: now.timestamp_millis(),
    }
}

/// Patient self-registration.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Register {
    #[schema(example = "asha@example.org")]
    email: String,
    /// Checked against the password policy (length, breached and obvious passwords).
    #[schema(example = "a long passphrase")]
    password: String,
    #[schema(example = "Asha")]
    given: String,
    #[schema(example = "Rao")]
    family: String,
    /// `YYYY-MM-DD`.
    #[serde(rename = "birthDate")]
    birth_date: Option<String>,
    /// `male`, `female`, `other` or `unknown`.
    gender: Option<String>,
    /// Kept unverified (`phone_pending`) until confirmed with `POST /api/v1/auth/phone`.
    phone: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "accounts",
    request_body(content = Register, description = "Patient self-registration: creates the account and its FHIR Patient",
        example = json!({"email": "asha@example.org", "password": "a long passphrase", "given": "Asha", "family": "Rao", "birthDate": "1984-03-07", "gender": "female", "phone": "098765 43210"})),
    responses((status = 201, description = "The account, linked to its Patient (fhirUser); a phone given is unverified until its code is entered", body = AccountView,
        example = json!({"id": "…", "email": "asha@example.org", "phone": "+919876543210", "phoneVerified": false, "role": "patient", "fhirUser": "Patient/…"})),
        (status = 400, description = "Invalid body (stable error code) (`invalid_patient`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 409, description = "The e-mail is taken", body = ErrorEnvelope, example = json!({"error": {"code": "email_taken", "message": "an account with this e-mail already exists"}}))))]
pub(crate) async fn register(State(app): State<Arc<App>>, bytes: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: Register = super::json_body(&bytes)?;
    let email = normalize_email(&req.email)?;
    let phone = req.phone.as_deref().map(super::phone::normalize).transpose()?;
    if req.given.trim().is_empty() || req.family.trim().is_empty() {
        return Err(bad("invalid_name", "given and family name are required"));
    }
    if ![&req.given, &req.family].iter().all(|n| hearth_workflow::fhir::is_display_text(n, 100)) {
        return Err(bad(
            "invalid_name",
            "each name is 1 to 100 characters, without control or text-direction override characters",
        ));
    }
    if let Some(d) = &req.birth_date {
        let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .filter(|_| d.len() == 10)
            .ok_or_else(|| bad("invalid_birth_date", "birthDate must be a date YYYY-MM-DD"))?;
        if date > app.clock.now().date_naive() {
            return Err(bad("invalid_birth_date", "birthDate is in the future"));
        }
    }
    let full_name = format!("{} {}", req.given.trim(), req.family.trim());
    check_policy(&app, &req.password, &email, Some(&full_name))?;
    let mut patient = json!({
        "resourceType": "Patient",
        "active": true,
        "name": [{"family": req.family.trim(), "given": [req.given.trim()]}],
        "telecom": [{"system": "email", "value": email}],
    });
    if let Some(d) = &req.birth_date {
        set(&mut patient, "birthDate", json!(d));
    }
    if let Some(g) = &req.gender {
        set(&mut patient, "gender", json!(g));
    }
    let issues = app.model.validate(&patient);
    if let Some(first) = issues.first() {
        return Err(bad("invalid_patient", format!("{}: {}", first.expression, first.message)));
    }
    let hash = hash_password(&app, req.password).await?;
    let now = app.clock.now();
    let mut account = new_account(email, hash, Role::Patient, now);
    account.phone_pending = phone;
    let patient_id = uuid::Uuid::now_v7().to_string();
    account.fhir_user = Some(format!("Patient/{patient_id}"));
    identity::insert_account(&*app.db, &account).await.map_err(|e| match e {
        hearth_store::StoreError::Conflict => {
            ApiError::new(StatusCode::CONFLICT, "email_taken", "an account with this e-mail already exists")
        }
        other => other.into(),
    })?;
    let write = hearth_workflow::fhir::write_of(&app, "Patient", patient_id, patient);
    hearth_store::interactions::ResourceStoreExt::update(&app.system(), write, None, now).await?;
    Ok((StatusCode::CREATED, Json(account_view(&account))).into_response())
}

/// A password sign-in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Login {
    #[schema(example = "asha@example.org")]
    email: String,
    #[schema(example = "a long passphrase")]
    password: String,
    /// Fewer scopes than the default (never more).
    scope: Option<String>,
    /// A `patient/` launch context: a Patient the account may reach.
    patient: Option<String>,
    /// The second factor when the account has TOTP: a current code or an unused recovery code.
    code: Option<String>,
    /// Browser mode: the refresh token as an HttpOnly cookie, with a CSRF cookie.
    #[serde(default)]
    cookie: bool,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "accounts",
    request_body(content = Login, description = "Password login; `code` is the TOTP (or a recovery code) when 2FA is on; `scope`/`patient` narrow the token; `cookie: true` for browser mode",
        example = json!({"email": "asha@example.org", "password": "a long passphrase", "code": "123456"})),
    responses((status = 200, description = "Access and refresh tokens (an admin without 2FA gets an enrolment-only token)", body = TokenResponse, example = json!({"access_token": "eyJ…", "token_type": "Bearer", "expires_in": 900, "refresh_token": "…", "scope": "user/*.cruds openid fhirUser offline_access"})),
        (status = 401, description = "Wrong e-mail or password, or `mfa_required`", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_credentials", "message": "wrong e-mail or password"}})),
        (status = 400, description = "Invalid body (stable error code) (`invalid_scope`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 429, description = "Rate limited or locked; see Retry-After (`account_locked`)", body = ErrorEnvelope, example = json!({"error": {"code": "rate_limited", "message": "too many requests"}}))),
    security(()))]
pub(crate) async fn login(
    State(app): State<Arc<App>>,
    ext: Extensions,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut account = None;
    let result = login_checked(&app, &ext, &bytes, &mut account).await;
    sign_in_event(&app, &ext, account.as_ref(), result.as_ref().err()).await;
    result
}

/// Records the outcome of a sign-in (password or code) in the audit trail.
pub(crate) async fn sign_in_event(
    app: &App,
    ext: &Extensions,
    account: Option<&identity::AccountRow>,
    error: Option<&ApiError>,
) {
    let detail = error.map_or_else(|| "signed in".to_owned(), |e| e.code.to_string());
    let event = crate::audit::security_event(
        crate::audit::SecurityEvent::Login,
        account,
        &client_ip(ext),
        error.is_none(),
        &detail,
        app.clock.now(),
    );
    crate::audit::security(&app.auditor, event).await;
}

async fn login_checked(
    app: &Arc<App>,
    ext: &Extensions,
    bytes: &[u8],
    seen: &mut Option<identity::AccountRow>,
) -> Result<Response, ApiError> {
    let app = Arc::clone(app);
    let req: Login = super::json_body(bytes)?;
    let now = app.clock.now();
    let email = req.email.trim().to_lowercase();
    check_auth(&app, &[format!("login-ip:{}", client_ip(ext)), format!("login:{email}")])?;
    let account = identity::account_by_email(&*app.db, &email).await?;
    seen.clone_from(&account);
    let Some(account) = account else {
        let app2 = Arc::clone(&app);
        let pw = req.password.clone();
        tokio::task::spawn_blocking(move || app2.auth.hasher.dummy_verify(&pw)).await.map_err(ApiError::internal)?;
        return Err(invalid_credentials());
    };
    if let Some(until) = account.locked_until.filter(|u| *u > now.timestamp_millis()) {
        return Err(locked(until, now));
    }
    let Some(stored) = account.password_hash.clone() else { return Err(invalid_credentials()) };
    let app2 = Arc::clone(&app);
    let pw = req.password.clone();
    let verified =
        tokio::task::spawn_blocking(move || app2.auth.hasher.verify(&pw, &PasswordHash::from_stored(stored)))
            .await
            .map_err(ApiError::internal)?;
    if verified.is_err() {
        record_failure(&app, &account.id, now).await?;
        return Err(invalid_credentials());
    }
    if account.totp_enabled {
        let Some(code) = req.code.as_deref() else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "mfa_required",
                "this account uses two-factor authentication: send `code` (authenticator or recovery code) with the password",
            ));
        };
        if let Err(e) = super::mfa::check_second_factor(&app, &account, code, now).await {
            if e.status == StatusCode::UNAUTHORIZED {
                record_failure(&app, &account.id, now).await?;
            }
            return Err(e);
        }
    }
    identity::record_login_success(&*app.db, &account.id).await?;
    let role: Role = account.role.parse().map_err(|_| ApiError::internal("stored account has an unknown role"))?;
    if !account.totp_enabled && mfa_required(&app.config, role) {
        return Ok(Json(setup_token(&app, &account, role, now)?).into_response());
    }
    let (scope, patient) = granted_scope(&app, &account, role, req.scope.as_deref(), req.patient.as_deref()).await?;
    let tokens = issue_tokens(&app, &account, role, scope, patient, None, None, now).await?;
    Ok(token_response(tokens, req.cookie))
}

/// Counts a failed login and locks the account progressively.
async fn record_failure(app: &App, account_id: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
    let failures = identity::record_login_failure(&*app.db, account_id).await?;
    if failures >= LOCK_AFTER {
        let minutes = 1i64 << (failures - LOCK_AFTER).min(11);
        let until = now + TimeDelta::minutes(minutes.min(24 * 60));
        identity::lock_account(&*app.db, account_id, until.timestamp_millis()).await?;
    }
    Ok(())
}

/// The enrolment-only answer: an access token with [`MFA_SETUP_SCOPE`] and no refresh token.
fn setup_token(app: &App, account: &AccountRow, role: Role, now: DateTime<Utc>) -> Result<Value, ApiError> {
    let grant = AccessGrant {
        subject: account.id.clone(),
        role,
        scope: MFA_SETUP_SCOPE.to_owned(),
        patient: None,
        fhir_user: account.fhir_user.clone(),
        client_id: None,
    };
    let access = app.auth.keys().issue(&app.auth.settings, grant, now, &mut rng()).map_err(ApiError::internal)?;
    Ok(json!({
        "access_token": access.token.expose(),
        "token_type": "Bearer",
        "expires_in": (access.expires_at - now).num_seconds(),
        "scope": MFA_SETUP_SCOPE,
        "mfa_enrollment_required": true,
    }))
}

/// Tokens for a full session with the default scope (the OTP login).
pub(crate) async fn full_tokens(
    app: &App,
    account: &AccountRow,
    role: Role,
    scope: Option<String>,
    patient: Option<String>,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let scope = scope.unwrap_or_else(|| DEFAULT_SCOPE.to_owned());
    issue_tokens(app, account, role, scope, patient, None, None, now).await
}

/// The token answer: as JSON, or in browser mode with the refresh token moved to its cookie.
pub(crate) fn token_response(mut tokens: Value, cookie_mode: bool) -> Response {
    if !cookie_mode {
        return Json(tokens).into_response();
    }
    let refresh = tokens.as_object_mut().and_then(|o| o.remove("refresh_token"));
    let csrf = hearth_auth::csrf::generate(&mut rng());
    let mut resp = Json(tokens).into_response();
    if let Some(Value::String(refresh)) = refresh {
        set_session_cookies(&mut resp, &refresh, &csrf);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn locked(until_ms: i64, now: DateTime<Utc>) -> ApiError {
    let secs = (until_ms - now.timestamp_millis()).max(1000) / 1000;
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "account_locked",
        format!("too many failed logins; try again in {secs} s"),
    );
    e.retry_after = Some(u64::try_from(secs).unwrap_or(1));
    e
}

/// The scope a login gets: the default, or the subset asked for; with a patient context when
/// asked and the account may reach that patient.
async fn granted_scope(
    app: &App,
    account: &AccountRow,
    role: Role,
    asked: Option<&str>,
    patient: Option<&str>,
) -> Result<(String, Option<String>), ApiError> {
    let scope = match asked {
        None => DEFAULT_SCOPE.to_owned(),
        Some(text) => {
            let set = ScopeSet::parse(text).map_err(|errs| {
                bad("invalid_scope", errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
            })?;
            // Any clinical scope is a subset of `user/*.cruds` (or, for `patient/`, of the same
            // data narrowed to one patient the account reaches).
            set.to_string()
        }
    };
    let patient = match patient {
        None => None,
        Some(id) => {
            if !hearth_workflow::fhir::valid_id(id) {
                return Err(bad("invalid_patient", "not a valid Patient id"));
            }
            let claims = probe_claims(account, role);
            let (_, access) = super::access_for(app, &app.auth, account, role, &claims).await?;
            let ok = access.reach == hearth_store::Reach::All || app.store.in_reach(&access, "Patient", id).await?;
            if !ok {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this account may not act for that patient",
                ));
            }
            Some(id.to_owned())
        }
    };
    Ok((scope, patient))
}

/// Claims with the default scope, to compute an account's own reach.
pub(super) fn probe_claims(account: &AccountRow, role: Role) -> hearth_auth::token::AccessClaims {
    hearth_auth::token::AccessClaims {
        iss: String::new(),
        sub: account.id.clone(),
        aud: String::new(),
        iat: 0,
        exp: 0,
        jti: String::new(),
        role,
        scope: DEFAULT_SCOPE.to_owned(),
        patient: None,
        fhir_user: account.fhir_user.clone(),
        client_id: None,
    }
}

/// An access token for `account` as a token-endpoint answer (`access_token`, `token_type`,
/// `expires_in`, `scope`, and `patient` for a patient launch context).
pub(super) fn access_answer(
    app: &App,
    account: &AccountRow,
    role: Role,
    scope: &str,
    patient: Option<&str>,
    client: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let grant = AccessGrant {
        subject: account.id.clone(),
        role,
        scope: scope.to_owned(),
        patient: patient.map(str::to_owned),
        fhir_user: account.fhir_user.clone(),
        client_id: client.map(str::to_owned),
    };
    let access = app.auth.keys().issue(&app.auth.settings, grant, now, &mut rng()).map_err(ApiError::internal)?;
    let mut out = json!({
        "access_token": access.token.expose(),
        "token_type": "Bearer",
        "expires_in": (access.expires_at - now).num_seconds(),
        "scope": scope,
    });
    if let Some(p) = patient {
        set(&mut out, "patient", json!(p));
    }
    Ok(out)
}

/// [`access_answer`] plus a refresh token: a new family, or the next token of `family`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn issue_tokens(
    app: &App,
    account: &AccountRow,
    role: Role,
    scope: String,
    patient: Option<String>,
    family: Option<FamilyId>,
    client: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let mut out = access_answer(app, account, role, &scope, patient.as_deref(), client, now)?;
    let issued = match family {
        None => refresh::start_family(&mut rng(), now),
        Some(f) => refresh::rotate(&mut rng(), &f, now),
    };
    identity::insert_refresh(
        &*app.db,
        &RefreshRow {
            hash: super::hex(issued.hash.as_bytes()),
            family: issued.record.family.as_str().to_owned(),
            account_id: account.id.clone(),
            scope,
            patient,
            expires_at: issued.record.expires_at.timestamp_millis(),
            used: false,
            revoked: false,
            created_at: now.timestamp_millis(),
        },
    )
    .await?;
    set(&mut out, "refresh_token", json!(issued.token.expose()));
    Ok(out)
}

/// A refresh: the token in the body, or (browser mode) the cookie plus `X-CSRF-Token`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshReq {
    /// Bearer clients send it here; browsers send the cookie instead (and `X-CSRF-Token`).
    refresh_token: Option<String>,
    /// Answer in browser mode (implied when the token came from the cookie).
    #[serde(default)]
    cookie: bool,
}

fn invalid_grant() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_grant", "the refresh token is not valid; log in again")
}

/// The refresh token of a request: from the body, else from the cookie (then CSRF-checked).
/// Answers the token and whether it came from the cookie.
fn presented_refresh(headers: &HeaderMap, in_body: Option<String>) -> Result<Option<(String, bool)>, ApiError> {
    if let Some(t) = in_body {
        return Ok(Some((t, false)));
    }
    match cookie(headers, REFRESH_COOKIE).filter(|c| !c.is_empty()) {
        Some(t) => {
            require_csrf(headers)?;
            Ok(Some((t, true)))
        }
        None => Ok(None),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "accounts",
    request_body(content = RefreshReq, description = "The refresh token (or, in browser mode, the refresh cookie plus X-CSRF-Token); each use rotates it, reuse revokes the family",
        example = json!({"refresh_token": "…"})),
    responses((status = 200, description = "New tokens", body = TokenResponse, example = json!({"access_token": "eyJ…", "token_type": "Bearer", "expires_in": 900, "refresh_token": "…", "scope": "user/*.cruds openid fhirUser offline_access"})),
        (status = 401, description = "Invalid, expired, revoked or reused", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_grant", "message": "the refresh token is not valid; log in again"}})),
        (status = 403, description = "Cookie mode without a matching CSRF header", body = ErrorEnvelope, example = json!({"error": {"code": "csrf_failed", "message": "…"}})), (status = 429, description = "Rate limited or locked; see Retry-After", body = ErrorEnvelope, example = json!({"error": {"code": "rate_limited", "message": "too many requests"}}))),
    security((), ("refreshCookie" = [], "csrfHeader" = [])))]
pub(crate) async fn refresh_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ext: Extensions,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: RefreshReq = if bytes.is_empty() { RefreshReq::default() } else { super::json_body(&bytes)? };
    check_auth(&app, &[format!("refresh-ip:{}", client_ip(&ext))])?;
    let Some((presented, via_cookie)) = presented_refresh(&headers, req.refresh_token)? else {
        return Err(bad("invalid_body", "send refresh_token, or the refresh cookie with X-CSRF-Token"));
    };
    let cookie_mode = via_cookie || req.cookie;
    let tokens = refresh_with(&app, &presented, None).await?;
    Ok(token_response(tokens, cookie_mode))
}

/// Rotates a presented refresh token (with reuse detection) and issues new tokens. `client` is
/// the OAuth client the token must have been issued to (`None`: an app login's token), so a
/// token never works for another client or on the other endpoint.
pub(super) async fn refresh_with(app: &App, presented: &str, client: Option<&str>) -> Result<Value, ApiError> {
    let now = app.clock.now();
    let hash = refresh::hash_presented(presented).map_err(|_| invalid_grant())?;
    let hash = super::hex(hash.as_bytes());
    let Some(row) = identity::refresh_by_hash(&*app.db, &hash).await? else { return Err(invalid_grant()) };
    check_auth(app, &[format!("refresh:{}", row.account_id)])?;
    if hearth_store_sql::oauth::family_client(&*app.db, &row.family).await?.as_deref() != client {
        return Err(invalid_grant());
    }
    let record = RefreshRecord {
        family: FamilyId::from_stored(row.family.clone()),
        used: row.used,
        revoked: row.revoked,
        expires_at: DateTime::from_timestamp_millis(row.expires_at).unwrap_or(now),
    };
    match refresh::decide(&record, now) {
        RefreshDecision::Rotate => {
            if !identity::mark_refresh_used(&*app.db, &hash).await? {
                // Someone else used it in the meantime: a replay.
                identity::revoke_family(&*app.db, &row.family).await?;
                return Err(invalid_grant());
            }
        }
        RefreshDecision::ReuseDetected { revoke_family } => {
            identity::revoke_family(&*app.db, revoke_family.as_str()).await?;
            tracing::warn!(account = %row.account_id, "refresh token reuse detected; family revoked");
            return Err(invalid_grant());
        }
        RefreshDecision::Expired | RefreshDecision::Revoked => return Err(invalid_grant()),
    }
    let Some(account) = identity::account_by_id(&*app.db, &row.account_id).await? else { return Err(invalid_grant()) };
    let role: Role = account.role.parse().map_err(|_| invalid_grant())?;
    if !account.totp_enabled && mfa_required(&app.config, role) {
        // 2FA became mandatory (or was disabled) after this session began: log in again.
        identity::revoke_family(&*app.db, &row.family).await?;
        return Err(invalid_grant());
    }
    issue_tokens(app, &account, role, row.scope, row.patient, Some(record.family), client, now).await
}

/// What to sign out.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LogoutReq {
    /// This session's refresh token (browser mode: the cookie).
    refresh_token: Option<String>,
    /// Revoke every session of the account.
    #[serde(default)]
    everywhere: bool,
}

/// Ends a session. Authenticated by the bearer token, or (browser mode, no bearer token) by the
/// refresh cookie plus `X-CSRF-Token`.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "accounts",
    request_body(content = LogoutReq, description = "End this session (its refresh token) or every session", example = json!({"refresh_token": "…", "everywhere": false})),
    responses((status = 204, description = "Revoked"), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})), (status = 400, description = "Invalid body (stable error code)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}}))),
    security(("bearer" = []), ("refreshCookie" = [], "csrfHeader" = [])))]
pub(crate) async fn logout(
    State(app): State<Arc<App>>,
    ext: Extensions,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: LogoutReq =
        if bytes.is_empty() { LogoutReq { refresh_token: None, everywhere: false } } else { super::json_body(&bytes)? };
    let caller = match app.authenticate(&headers, true).await {
        Ok(c) => Some(c),
        Err(super::AuthFailure::Missing) => None,
        Err(e) => return Err(e.into()),
    };
    let presented = presented_refresh(&headers, req.refresh_token)?;
    let row = match &presented {
        Some((token, _)) => {
            let hash = refresh::hash_presented(token).map_err(|_| invalid_grant())?;
            identity::refresh_by_hash(&*app.db, &super::hex(hash.as_bytes())).await?
        }
        None => None,
    };
    let account_id = match (&caller, &row) {
        (Some(c), _) => c.account.id.clone(),
        (None, Some(r)) if presented.as_ref().is_some_and(|(_, via_cookie)| *via_cookie) => r.account_id.clone(),
        (None, _) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "authentication required: a bearer token, or the refresh cookie with X-CSRF-Token",
            ));
        }
    };
    if req.everywhere {
        identity::revoke_account_refresh(&*app.db, &account_id).await?;
    } else if presented.is_some() {
        if let Some(row) = row.filter(|r| r.account_id == account_id) {
            identity::revoke_family(&*app.db, &row.family).await?;
        }
    } else {
        return Err(bad("invalid_body", "send the refresh_token to end, or everywhere: true"));
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if presented.as_ref().is_some_and(|(_, via_cookie)| *via_cookie) {
        clear_session_cookies(&mut resp);
    }
    let account = match caller {
        Some(c) => Some(c.account),
        None => identity::account_by_id(&*app.db, &account_id).await?,
    };
    let detail = if req.everywhere { "signed out everywhere" } else { "signed out" };
    let event = crate::audit::security_event(
        crate::audit::SecurityEvent::Logout,
        account.as_ref(),
        &client_ip(&ext),
        true,
        detail,
        app.clock.now(),
    );
    crate::audit::security(&app.auditor, event).await;
    Ok(resp)
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "accounts",
    responses((status = 200, description = "The signed-in account and its token's scope", body = AccountView,
        example = json!({"id": "…", "email": "asha@example.org", "phone": "+919876543210", "phoneVerified": true, "role": "patient", "fhirUser": "Patient/…", "totpEnabled": false, "scope": "user/*.cruds"})), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}}))),
    security(("bearer" = [])))]
pub(crate) async fn me(EnrolCaller(caller): EnrolCaller) -> Json<AccountView> {
    let mut out = account_view(&caller.account);
    out.scope = Some(caller.claims.scope.clone());
    out.patient = caller.claims.patient.clone();
    Json(out)
}

/// An account made by an administrator.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateAccount {
    #[schema(example = "dr.rao@example.org")]
    email: String,
    password: String,
    /// `patient`, `caregiver`, `clinician` or `admin`.
    #[schema(example = "clinician")]
    role: String,
    /// `Patient/<id>`, `Practitioner/<id>`, `RelatedPerson/<id>` or `Person/<id>`.
    #[serde(rename = "fhirUser")]
    fhir_user: Option<String>,
    /// The Organization id of a staff account (limits a clinician to its patients).
    organization: Option<String>,
    /// Verified from the start: staff checked it with the person.
    phone: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/admin/accounts", tag = "administration",
    request_body(content = CreateAccount, description = "Create a staff, patient or caregiver account (admins only)",
        example = json!({"email": "dr.rao@example.org", "password": "a long passphrase", "role": "clinician", "fhirUser": "Practitioner/…", "organization": "…", "phone": "+91 98765 43210"})),
    responses((status = 201, description = "The account", body = AccountView), (status = 400, description = "Invalid body (stable error code) (`invalid_role`, `invalid_fhir_user`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})), (status = 403, description = "Not allowed for this account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}})),
        (status = 409, description = "The e-mail (`email_taken`) or phone (`phone_taken`) is on another account", body = ErrorEnvelope, example = json!({"error": {"code": "phone_taken", "message": "another account has this phone number"}}))),
    security(("bearer" = [])))]
pub(crate) async fn create_account(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let req: CreateAccount = super::json_body(&bytes)?;
    let role: Role =
        req.role.parse().map_err(|_| bad("invalid_role", "role must be patient, clinician, admin or caregiver"))?;
    let email = normalize_email(&req.email)?;
    let phone = req.phone.as_deref().map(super::phone::normalize).transpose()?;
    check_policy(&app, &req.password, &email, None)?;
    if let Some(u) = &req.fhir_user {
        let ok = u.split_once('/').is_some_and(|(t, id)| {
            matches!(t, "Patient" | "Practitioner" | "RelatedPerson" | "Person") && hearth_workflow::fhir::valid_id(id)
        });
        if !ok {
            return Err(bad(
                "invalid_fhir_user",
                "fhirUser must be Patient/…, Practitioner/…, RelatedPerson/… or Person/…",
            ));
        }
    }
    if let Some(o) = &req.organization
        && !hearth_workflow::fhir::valid_id(o)
    {
        return Err(bad("invalid_organization", "organization must be an Organization id"));
    }
    let hash = hash_password(&app, req.password).await?;
    let mut account = new_account(email, hash, role, app.clock.now());
    account.fhir_user = req.fhir_user;
    account.organization = req.organization;
    account.phone = phone;
    if let Some(p) = &account.phone
        && identity::account_by_phone(&*app.db, p).await?.is_some()
    {
        return Err(ApiError::new(StatusCode::CONFLICT, "phone_taken", "another account has this phone number"));
    }
    identity::insert_account(&*app.db, &account).await.map_err(|e| match e {
        hearth_store::StoreError::Conflict => {
            ApiError::new(StatusCode::CONFLICT, "email_taken", "an account with this e-mail already exists")
        }
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(account_view(&account))).into_response())
}

/// The accounts, for the admin console.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AccountList {
    /// By e-mail, at most 500.
    accounts: Vec<AccountView>,
}

#[utoipa::path(get, path = "/api/v1/admin/accounts", tag = "administration",
    responses((status = 200, description = "Every account by e-mail, at most 500 (no password, second factor or codes)", body = AccountList),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not an administrator (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}}))),
    security(("bearer" = [])))]
pub(crate) async fn list_accounts(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<AccountList>, ApiError> {
    require_admin(&caller)?;
    let rows = identity::list_accounts(&*app.db, 500).await?;
    Ok(Json(AccountList { accounts: rows.iter().map(account_view).collect() }))
}

#[utoipa::path(post, path = "/api/v1/admin/accounts/{id}/totp/reset", tag = "administration",
    params(("id" = String, Path, description = "The account's id")),
    responses((status = 200, description = "TOTP and the recovery codes are gone and every session of the account is ended: its next sign-in is by password (and enrolment, where 2FA is required)", body = AccountView),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not an administrator (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}})),
        (status = 404, description = "No such account (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such account"}}))),
    security(("bearer" = [])))]
/// An administrator resets a lost second factor (a clinician with a new phone): recorded in the
/// audit trail as a change of security attributes by the administrator, naming the account.
pub(crate) async fn admin_reset_totp(
    State(app): State<Arc<App>>,
    ext: axum::http::Extensions,
    ApiCaller(caller): ApiCaller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    require_admin(&caller)?;
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such account");
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(missing());
    }
    let account = identity::account_by_id(&*app.db, &id).await?.ok_or_else(missing)?;
    hearth_store_sql::mfa::totp_disable(&*app.db, &account.id).await?;
    identity::revoke_account_refresh(&*app.db, &account.id).await?;
    // The administrator is the agent (the requestor); the account changed is named in the outcome.
    let detail = format!("TOTP of account {} reset by an administrator", account.id);
    super::mfa::second_factor_event(&app, &ext, &caller.account, true, &detail).await;
    let after = identity::account_by_id(&*app.db, &id).await?.unwrap_or(account);
    Ok(Json(account_view(&after)))
}

/// A caregiver grant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GrantCaregiver {
    /// The caregiver account's id.
    caregiver: String,
    /// The Patient id they may act for.
    patient: String,
}

#[utoipa::path(post, path = "/api/v1/admin/caregivers", tag = "administration",
    request_body(content = GrantCaregiver, description = "Let a caregiver account act for a patient (admins only)", example = json!({"caregiver": "<account id>", "patient": "<Patient id>"})),
    responses((status = 204, description = "Granted"), (status = 400, description = "Invalid body (stable error code) (`not_a_caregiver`, `invalid_patient`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})), (status = 403, description = "Not allowed for this account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}})), (status = 404, description = "No such account", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn grant_caregiver(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    let req: GrantCaregiver = super::json_body(&bytes)?;
    let Some(account) = identity::account_by_id(&*app.db, &req.caregiver).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such account"));
    };
    if account.role != Role::Caregiver.as_str() {
        return Err(bad("not_a_caregiver", "the account is not a caregiver account"));
    }
    if !hearth_workflow::fhir::valid_id(&req.patient) {
        return Err(bad("invalid_patient", "not a valid Patient id"));
    }
    identity::grant_caregiver(&*app.db, &account.id, &req.patient, app.clock.now().timestamp_millis()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "accounts",
    responses((status = 200, description = "The public keys that verify access tokens (EdDSA)", body = Object)))]
pub(crate) async fn jwks(State(app): State<Arc<App>>) -> Response {
    let mut resp = Json(app.auth.keys().jwks()).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

/// Creates an admin account (the CLI's `hearth admin create-admin`).
pub async fn create_admin(app: &Arc<App>, email: &str, password: String) -> Result<String, ApiError> {
    let email = normalize_email(email)?;
    check_policy(app, &password, &email, None)?;
    let hash = hash_password(app, password).await?;
    let account = new_account(email, hash, Role::Admin, app.clock.now());
    identity::insert_account(&*app.db, &account).await.map_err(|e| match e {
        hearth_store::StoreError::Conflict => {
            ApiError::new(StatusCode::CONFLICT, "email_taken", "an account with this e-mail already exists")
        }
        other => other.into(),
    })?;
    Ok(account.id)
}

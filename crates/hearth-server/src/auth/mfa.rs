//! TOTP two-factor authentication (RFC 6238): `POST /api/v1/auth/totp/enroll`, `totp/confirm`,
//! `totp/disable`, and the second-factor check `login` uses.
//!
//! - `enroll` (an account whose TOTP is not enabled) stores a fresh secret, unconfirmed, and
//!   answers the `otpauth://` URI, the base32 secret and the URI as a QR code (SVG). Enrolling
//!   again before confirming replaces the secret.
//! - `confirm {code}` enables TOTP when the code matches, records the code's step (so it cannot
//!   log in a second time) and answers ten one-time recovery codes, shown once; only their keyed
//!   hashes are stored (`recovery_codes`).
//! - `disable {password, code}` re-authenticates with the password and a current code (or a
//!   recovery code), then forgets the secret and the recovery codes. For roles where 2FA is
//!   mandatory it also ends every session of the account, so the next login is enrolment-only.
//! - A code is accepted once: the step is recorded with a conditional update
//!   (`totp_last_step < step`), so a replayed or concurrently reused code is refused
//!   (`totp_replayed`). A recovery code is spent by deleting its row.
//!
//! The secret is kept in `accounts.totp_secret` as base32 (not yet encrypted at rest).

use hearth_workflow::openapi::ErrorEnvelope;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_auth::password::PasswordHash;
use hearth_auth::recovery::{self, RecoveryCodeHash};
use hearth_auth::totp::{self, TotpError, TotpSecret};
use hearth_store_sql::identity::{self, AccountRow};
use hearth_store_sql::mfa;
use serde::Deserialize;

use super::{ApiCaller, EnrolCaller, hex, mfa_required, rng, unhex};
use crate::app::App;
use crate::error::ApiError;

/// The issuer shown in authenticator apps.
const ISSUER: &str = "Hearth";

fn totp_error(status: StatusCode, e: TotpError) -> ApiError {
    ApiError::new(status, e.code(), e.to_string())
}

fn stored_secret(account: &AccountRow) -> Result<TotpSecret, ApiError> {
    let text = account.totp_secret.as_deref().ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "totp_not_enrolled", "start with POST /api/v1/auth/totp/enroll")
    })?;
    TotpSecret::from_base32(text).map_err(ApiError::internal)
}

fn to_i64(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// Checks a second factor for an account with TOTP enabled: a 6-digit code (its step then
/// recorded, atomically) or an unused recovery code (then spent). Refusals are `401` with
/// `totp_invalid`, `totp_replayed` or `totp_malformed`.
pub async fn check_second_factor(
    app: &App,
    account: &AccountRow,
    code: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() == totp::DIGITS as usize && compact.bytes().all(|b| b.is_ascii_digit()) {
        let secret = stored_secret(account)?;
        let last = account.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let step = totp::verify(&secret, &compact, now, last).map_err(|e| totp_error(StatusCode::UNAUTHORIZED, e))?;
        if !mfa::totp_use_step(&*app.db, &account.id, to_i64(step)).await? {
            return Err(totp_error(StatusCode::UNAUTHORIZED, TotpError::Replayed));
        }
        return Ok(());
    }
    if compact.len() > 64 {
        return Err(totp_error(StatusCode::UNAUTHORIZED, TotpError::MalformedCode));
    }
    let stored = mfa::recovery_hashes(&*app.db, &account.id).await?;
    let hashes: Vec<RecoveryCodeHash> = stored
        .iter()
        .filter_map(|h| unhex(h).and_then(|b| <[u8; 32]>::try_from(b).ok()))
        .map(RecoveryCodeHash::from_bytes)
        .collect();
    let Some(index) = recovery::find_match(&app.auth.pepper, code, &hashes) else {
        return Err(totp_error(StatusCode::UNAUTHORIZED, TotpError::Mismatch));
    };
    let Some(hash) = hashes.get(index) else { return Err(totp_error(StatusCode::UNAUTHORIZED, TotpError::Mismatch)) };
    if !mfa::consume_recovery_code(&*app.db, &account.id, &hex(hash.as_bytes())).await? {
        return Err(totp_error(StatusCode::UNAUTHORIZED, TotpError::Replayed));
    }
    Ok(())
}

async fn enroll_checked(State(app): State<Arc<App>>, EnrolCaller(caller): EnrolCaller) -> Result<Response, ApiError> {
    let account = &caller.account;
    if account.totp_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_already_enabled",
            "two-factor authentication is already enabled; disable it first to enrol a new device",
        ));
    }
    let secret = TotpSecret::generate(&mut rng());
    let base32 = secret.to_base32();
    let label = account.email.clone().or_else(|| account.phone.clone()).unwrap_or_else(|| account.id.clone());
    let label = label.replace(':', "_");
    let uri = totp::provisioning_uri(&secret, ISSUER, &label).map_err(ApiError::internal)?;
    let svg = totp::qr_svg(uri.expose()).map_err(ApiError::internal)?;
    if !mfa::totp_begin_enrolment(&*app.db, &account.id, base32.expose()).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_already_enabled",
            "two-factor authentication is enabled",
        ));
    }
    let mut resp = Json(Enrolment {
        otpauth_uri: uri.expose(),
        secret: base32.expose(),
        qr_svg: &svg,
        issuer: ISSUER,
        digits: totp::DIGITS,
        period: totp::PERIOD,
    })
    .into_response();
    resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[utoipa::path(post, path = "/api/v1/auth/totp/enroll", tag = "two-factor",
    responses((status = 409, description = "Two-factor sign-in is already on (`totp_already_enabled`)", body = ErrorEnvelope), (status = 200, description = "A new TOTP secret, its otpauth:// URI and a QR code (SVG)", body = Enrolment,
        example = json!({"secret": "JBSWY3DPEHPK3PXP", "otpauth_uri": "otpauth://totp/Hearth:asha@example.org?…", "qr_svg": "<svg …>"})), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}}))),
    security(("bearer" = [])))]
pub(crate) async fn enroll(
    State(app): State<Arc<App>>,
    ext: axum::http::Extensions,
    EnrolCaller(caller): EnrolCaller,
) -> Result<Response, ApiError> {
    let account = caller.account.clone();
    let result = enroll_checked(State(Arc::clone(&app)), EnrolCaller(caller)).await;
    let detail = result.as_ref().err().map_or_else(|| "TOTP enrolment started".to_owned(), |e| e.code.to_string());
    second_factor_event(&app, &ext, &account, result.is_ok(), &detail).await;
    result
}

/// A TOTP enrolment begun: add it to an authenticator app, then confirm with a code.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Enrolment<'a> {
    /// The `otpauth://totp/…` URI (what the QR code holds).
    otpauth_uri: &'a str,
    /// The shared secret, base32, for typing in by hand.
    secret: &'a str,
    /// The QR code as an SVG document.
    qr_svg: &'a str,
    #[schema(example = "Hearth")]
    issuer: &'a str,
    #[schema(example = 6)]
    digits: u32,
    /// Seconds per code.
    #[schema(example = 30)]
    period: u64,
}

/// Two-factor sign-in switched on.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Enabled<'a> {
    /// Always `true`.
    totp_enabled: bool,
    /// Ten single-use recovery codes, shown this once.
    recovery_codes: Vec<&'a str>,
}

/// A code from the authenticator app.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Confirm {
    #[schema(example = "123456")]
    code: String,
}

async fn confirm_checked(
    State(app): State<Arc<App>>,
    EnrolCaller(caller): EnrolCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: Confirm = super::json_body(&bytes)?;
    let account = &caller.account;
    if account.totp_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_already_enabled",
            "two-factor authentication is enabled",
        ));
    }
    let secret = stored_secret(account)?;
    let now = app.clock.now();
    let step = totp::verify(&secret, &req.code, now, None).map_err(|e| totp_error(StatusCode::BAD_REQUEST, e))?;
    let Some(stored) = account.totp_secret.as_deref() else { return Err(ApiError::internal("secret vanished")) };
    if !mfa::totp_confirm(&*app.db, &account.id, stored, to_i64(step)).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_enrolment_changed",
            "the enrolment changed meanwhile; enrol again",
        ));
    }
    let codes = recovery::generate(&mut rng(), &app.auth.pepper);
    let hashes: Vec<String> = codes.hashes.iter().map(|h| hex(h.as_bytes())).collect();
    mfa::replace_recovery_codes(&*app.db, &account.id, &hashes, now.timestamp_millis()).await?;
    let shown: Vec<&str> = codes.codes.iter().map(|c| c.expose().as_str()).collect();
    let mut resp = Json(Enabled { totp_enabled: true, recovery_codes: shown }).into_response();
    resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[utoipa::path(post, path = "/api/v1/auth/totp/confirm", tag = "two-factor",
    request_body(content = Confirm, description = "A current code from the authenticator app", example = json!({"code": "123456"})),
    responses((status = 409, description = "The enrolment changed (another enrolment started) since this code's secret was shown (`totp_enrolment_changed`)", body = ErrorEnvelope), (status = 200, description = "2FA is on; ten one-time recovery codes (shown once)", body = Enabled), (status = 400, description = "Invalid body (stable error code) (`totp_not_enrolled`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}}))),
    security(("bearer" = [])))]
pub(crate) async fn confirm(
    State(app): State<Arc<App>>,
    ext: axum::http::Extensions,
    EnrolCaller(caller): EnrolCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let account = caller.account.clone();
    let result = confirm_checked(State(Arc::clone(&app)), EnrolCaller(caller), bytes).await;
    let detail = result.as_ref().err().map_or_else(|| "TOTP enabled".to_owned(), |e| e.code.to_string());
    second_factor_event(&app, &ext, &account, result.is_ok(), &detail).await;
    result
}

/// Re-authentication to switch two-factor sign-in off.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Disable {
    password: String,
    /// A current TOTP code (or a recovery code).
    #[schema(example = "123456")]
    code: String,
}

async fn disable_checked(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let req: Disable = super::json_body(&bytes)?;
    let account = &caller.account;
    if !account.totp_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "totp_not_enabled",
            "two-factor authentication is not enabled",
        ));
    }
    let wrong = || ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong password");
    let Some(stored) = account.password_hash.clone() else { return Err(wrong()) };
    let app2 = Arc::clone(&app);
    let verified =
        tokio::task::spawn_blocking(move || app2.auth.hasher.verify(&req.password, &PasswordHash::from_stored(stored)))
            .await
            .map_err(ApiError::internal)?;
    if verified.is_err() {
        identity::record_login_failure(&*app.db, &account.id).await?;
        return Err(wrong());
    }
    check_second_factor(&app, account, &req.code, app.clock.now()).await?;
    mfa::totp_disable(&*app.db, &account.id).await?;
    if mfa_required(&app.config, caller.role) {
        identity::revoke_account_refresh(&*app.db, &account.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/totp/disable", tag = "two-factor",
    request_body(content = Disable, description = "Re-authentication: the password and a current code", example = json!({"password": "…", "code": "123456"})),
    responses((status = 204, description = "2FA is off"), (status = 400, description = "Invalid body (stable error code) (`totp_not_enabled`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}}))),
    security(("bearer" = [])))]
pub(crate) async fn disable(
    State(app): State<Arc<App>>,
    ext: axum::http::Extensions,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let account = caller.account.clone();
    let result = disable_checked(State(Arc::clone(&app)), ApiCaller(caller), bytes).await;
    let detail = result.as_ref().err().map_or_else(|| "TOTP disabled".to_owned(), |e| e.code.to_string());
    second_factor_event(&app, &ext, &account, result.is_ok(), &detail).await;
    result
}

pub(crate) async fn second_factor_event(
    app: &App,
    ext: &axum::http::Extensions,
    account: &hearth_store_sql::identity::AccountRow,
    success: bool,
    detail: &str,
) {
    let event = crate::audit::security_event(
        crate::audit::SecurityEvent::SecondFactorChanged,
        Some(account),
        &crate::auth::web::client_ip(ext),
        success,
        detail,
        app.clock.now(),
    );
    crate::audit::security(&app.auditor, event).await;
}

/// The TOTP enrolment routes.
pub fn router() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/api/v1/auth/totp/enroll", axum::routing::post(enroll))
        .route("/api/v1/auth/totp/confirm", axum::routing::post(confirm))
        .route("/api/v1/auth/totp/disable", axum::routing::post(disable))
}

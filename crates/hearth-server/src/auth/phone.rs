//! A signed-in user's own phone number: `POST /api/v1/auth/phone {phone}` sends a code to it,
//! `POST /api/v1/auth/phone/verify {code}` confirms it.
//!
//! Decisions:
//! - An account's `phone` is always a **verified** number: unique, the only one that signs in by
//!   OTP or receives SMS. A number the user typed (here or at registration) waits in
//!   `phone_pending` until its code is entered; it is not unique, so an unverified claim can
//!   neither block the number's owner nor reveal whether the number has an account. A number set
//!   by staff (`POST /api/v1/admin/accounts`, a clinic's invitation) is verified from the start:
//!   staff checked it with the person.
//! - The send step answers the same `202` whether or not another account holds the number
//!   verified, and sends the code either way (the same work, the same timing). Only `verify`, after
//!   the right code proves the caller holds the phone, answers `409 phone_taken`; the code is
//!   spent either way.
//! - The code is the login-code machinery (`hearth_auth::otp`: six digits, keyed hash under the
//!   pepper, 10 minutes, 5 attempts) stored in `login_otps` under `phone-verify:<account id>`, a key
//!   no sign-in can present, so a verification code never signs anyone in. Its SMS goes through
//!   the outbox in the same transaction that records the pending number.
//! - The OTP request limits apply: 5 sends per 15 minutes per number and per account, and the
//!   per-IP auth limit; `verify` counts attempts per account and per IP like `otp/verify`.
//! - No SMS channel (`Notifier::available`) → `503 sms_unavailable`, nothing recorded.
//! - Nothing here logs the number.

use hearth_workflow::openapi::ErrorEnvelope;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hearth_notify::ChannelKind;
use hearth_store_sql::identity;
use serde::Deserialize;

use super::ApiCaller;
use super::otp::require_sms;
use super::web::{check_auth, client_ip, too_many};
use crate::app::App;
use crate::error::ApiError;

/// The phone in the shape of a request body, normalised (`400 invalid_phone` otherwise).
pub(crate) fn normalize(input: &str) -> Result<String, ApiError> {
    hearth_auth::phone::normalize(input).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_phone",
            "not a phone number we accept: an Indian mobile, or + and the country code",
        )
    })
}

fn key(account_id: &str) -> String {
    format!("phone-verify:{account_id}")
}

/// The phone to put on the account.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SendBody {
    /// A 10-digit Indian mobile number in any spelling, or E.164.
    #[schema(example = "098765 43210")]
    phone: String,
}

/// The account's phone, verified.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PhoneVerified {
    /// E.164.
    #[schema(example = "+919876543210")]
    phone: String,
    /// Always `true`.
    phone_verified: bool,
}

#[utoipa::path(post, path = "/api/v1/auth/phone", tag = "accounts",
    request_body(content = SendBody, description = "Send a 6-digit code to the phone the caller wants on their account", example = json!({"phone": "098765 43210"})),
    responses((status = 202, description = "The code is on its way (the same answer whether or not the number is on another account)", body = super::otp::CodeRequested, example = json!({"status": "sent", "message": "a code is on its way to this number"})),
        (status = 400, description = "Not a phone number we accept", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_phone", "message": "not a phone number we accept: an Indian mobile, or + and the country code"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorEnvelope, example = json!({"error": {"code": "rate_limited", "message": "too many requests"}})),
        (status = 503, description = "SMS is not configured", body = ErrorEnvelope, example = json!({"error": {"code": "sms_unavailable", "message": "SMS is not configured on this server, so no code can be sent by text message"}}))),
    security(("bearer" = [])))]
pub(crate) async fn send(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    ext: axum::http::Extensions,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: SendBody = super::json_body(&bytes)?;
    let phone = normalize(&req.phone)?;
    require_sms(&app)?;
    let account_id = caller.account.id.clone();
    check_auth(&app, &[format!("otp-request-ip:{}", client_ip(&ext))])?;
    app.limits.otp_destination.check(&phone).map_err(too_many)?;
    app.limits.otp_destination.check(&key(&account_id)).map_err(too_many)?;
    let now = app.clock.now();
    let tx = hearth_store_sql::notify::TxDb::begin(&*app.db).await?;
    identity::set_phone_pending(&tx, &account_id, &phone).await?;
    super::otp::put_code(&app, &tx, &key(&account_id), &account_id, ChannelKind::Sms, &phone, now).await?;
    tx.commit().await?;
    app.notify.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(super::otp::CodeRequested { status: "sent", message: "a code is on its way to this number" }),
    )
        .into_response())
}

/// The code sent to the new phone.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    #[schema(example = "482913")]
    code: String,
}

fn code_invalid() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "otp_invalid", "the code is wrong, expired or used up; request a new one")
}

#[utoipa::path(post, path = "/api/v1/auth/phone/verify", tag = "accounts",
    request_body(content = VerifyBody, description = "The code sent by `POST /api/v1/auth/phone` (10 minutes, 5 attempts)", example = json!({"code": "482913"})),
    responses((status = 200, description = "The phone is the account's verified phone", body = PhoneVerified, example = json!({"phone": "+919876543210", "phoneVerified": true})),
        (status = 400, description = "Invalid body", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})),
        (status = 401, description = "Wrong, expired or exhausted code (or no access token)", body = ErrorEnvelope, example = json!({"error": {"code": "otp_invalid", "message": "the code is wrong, expired or used up; request a new one"}})),
        (status = 409, description = "Another account has this phone", body = ErrorEnvelope, example = json!({"error": {"code": "phone_taken", "message": "another account has this phone number"}})),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorEnvelope, example = json!({"error": {"code": "rate_limited", "message": "too many requests"}}))),
    security(("bearer" = [])))]
pub(crate) async fn verify(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    ext: axum::http::Extensions,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: VerifyBody = super::json_body(&bytes)?;
    let account_id = caller.account.id.clone();
    let key = key(&account_id);
    check_auth(&app, &[format!("otp-verify-ip:{}", client_ip(&ext)), format!("otp-verify:{key}")])?;
    let now = app.clock.now();
    if !super::otp::spend_code(&app, &key, &req.code, now).await? {
        return Err(code_invalid());
    }
    // The number the code was sent to: recorded with the code, in one transaction.
    let account = identity::account_by_id(&*app.db, &account_id).await?;
    let Some(phone) = account.and_then(|a| a.phone_pending) else { return Err(code_invalid()) };
    if !identity::verify_phone(&*app.db, &account_id, &phone).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, "phone_taken", "another account has this phone number"));
    }
    Ok(Json(PhoneVerified { phone, phone_verified: true }).into_response())
}

/// The phone routes.
pub fn router() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/api/v1/auth/phone", axum::routing::post(send))
        .route("/api/v1/auth/phone/verify", axum::routing::post(verify))
}

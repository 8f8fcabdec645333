//! Patient login by one-time code: `POST /api/v1/auth/otp/request {email|phone}` and
//! `POST /api/v1/auth/otp/verify {email|phone, code}`.
//!
//! - Phones are normalised by `hearth_auth::phone::normalize` (the registry's rules) and only an
//!   account's *verified* phone (`accounts.phone`; see `super::phone`) receives codes or signs in:
//!   a number still waiting for its verification code gets the same `202` and no SMS.
//! - With no SMS channel a phone request answers `503 sms_unavailable` for every number, before
//!   any look-up (so it reveals nothing); e-mail requests are unaffected.
//! - `request` always answers `202` with the same body, at once: looking the account up, issuing
//!   the code and sending it run in a background task, so neither the answer nor its timing tells
//!   whether the address has an account. Only **patient** accounts get codes (staff log in with a
//!   password and TOTP).
//! - Codes are six digits, stored only as a keyed hash (`login_otps`, one per destination, a new
//!   request replacing the old one), valid 10 minutes, 5 attempts (`hearth_auth::otp`). Each
//!   attempt is counted *before* the comparison with a conditional update, so parallel guesses
//!   cannot exceed the limit; the right code is consumed by a delete only one request can win.
//! - Every refusal of `verify` is the same `401 otp_invalid` (wrong, expired, used up, or no code
//!   for that address), again so nothing is revealed about accounts.
//! - Codes leave through the notification outbox (`crate::notify`) as a critical `security`
//!   message to the address given, written in the same transaction as the code's hash: through
//!   quiet hours, never to the log (without a configured provider, to the local file outbox).

use hearth_workflow::openapi::ErrorEnvelope;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hearth_auth::Role;
use hearth_auth::otp::{self, OtpDecision, OtpHash, OtpRecord};
use hearth_store_sql::identity;
use hearth_store_sql::mfa;
use serde::Deserialize;
use serde_json::json;

use super::web::{check_auth, client_ip, too_many};
use super::{hex, rng, unhex};
use crate::app::App;
use crate::error::ApiError;

/// How a code travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpChannel {
    Email,
    Sms,
}

impl OtpChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            OtpChannel::Email => "email",
            OtpChannel::Sms => "sms",
        }
    }
}

/// A normalised destination: lower-cased e-mail or E.164 phone (`hearth_auth::phone::normalize`,
/// the registry's rules: Indian mobiles in any usual spelling, other countries after `+`).
fn destination(email: Option<&str>, phone: Option<&str>) -> Result<(OtpChannel, String), ApiError> {
    let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "invalid_destination", m.to_owned());
    match (email, phone) {
        (Some(e), None) => {
            let e = e.trim().to_lowercase();
            let ok = e.len() <= 254
                && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                && !e.chars().any(|c| c.is_whitespace() || c.is_control());
            if ok { Ok((OtpChannel::Email, e)) } else { Err(bad("not a valid e-mail address")) }
        }
        (None, Some(p)) => hearth_auth::phone::normalize(p)
            .map(|p| (OtpChannel::Sms, p))
            .ok_or_else(|| bad("not a phone number we accept (E.164, or an Indian mobile)")),
        _ => Err(bad("send exactly one of email or phone")),
    }
}

/// Where to send a sign-in code: exactly one of `email` and `phone`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    email: Option<String>,
    /// A 10-digit Indian mobile number in any spelling, or E.164.
    #[schema(example = "+919876543210")]
    phone: Option<String>,
}

/// A code request taken (the same answer whether or not the address is on an account).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CodeRequested {
    /// `accepted` (sign-in codes) or `sent` (phone verification).
    #[schema(example = "accepted")]
    pub(crate) status: &'static str,
    pub(crate) message: &'static str,
}

#[utoipa::path(post, path = "/api/v1/auth/otp/request", tag = "patient sign-in",
    request_body(content = RequestBody, description = "Send a 6-digit code to a patient's phone or e-mail", example = json!({"phone": "+919876543210"})),
    responses((status = 202, description = "Always the same answer, whether or not an account exists", body = CodeRequested), (status = 400, description = "Invalid body (stable error code) (`invalid_destination`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 429, description = "Rate limited or locked; see Retry-After", body = ErrorEnvelope, example = json!({"error": {"code": "rate_limited", "message": "too many requests"}})),
        (status = 503, description = "A phone was given and SMS is not configured", body = ErrorEnvelope, example = json!({"error": {"code": "sms_unavailable", "message": "SMS is not configured on this server, so no code can be sent by text message"}}))))]
pub(crate) async fn request(
    State(app): State<Arc<App>>,
    ext: axum::http::Extensions,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: RequestBody = super::json_body(&bytes)?;
    let (channel, to) = destination(req.email.as_deref(), req.phone.as_deref())?;
    if channel == OtpChannel::Sms {
        // Before any look-up: the same answer for every number.
        require_sms(&app)?;
    }
    check_auth(&app, &[format!("otp-request-ip:{}", client_ip(&ext))])?;
    app.limits.otp_destination.check(&to).map_err(too_many)?;
    let task_app = Arc::clone(&app);
    tokio::spawn(async move {
        if let Err(e) = issue_and_send(&task_app, channel, to).await {
            tracing::error!(error = %e, "issuing a login code failed");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(CodeRequested { status: "accepted", message: "if an account has this address, a code is on its way" }),
    )
        .into_response())
}

/// `503 sms_unavailable` unless an SMS channel is configured.
pub(crate) fn require_sms(app: &App) -> Result<(), ApiError> {
    if app.notify.available(hearth_notify::ChannelKind::Sms) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sms_unavailable",
            "SMS is not configured on this server, so no code can be sent by text message",
        ))
    }
}

/// Issues a code under `key` (its keyed hash in `login_otps`) and queues its message to `to` on
/// `channel`, both on `tx` (the caller commits, then wakes the worker): the login codes of
/// `otp/request` and the phone-verification codes of `auth/phone` are the same machinery.
pub(crate) async fn put_code(
    app: &App,
    tx: &hearth_store_sql::notify::TxDb,
    key: &str,
    account_id: &str,
    channel: hearth_notify::ChannelKind,
    to: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let issued = otp::issue(&mut rng(), &app.auth.pepper, now);
    mfa::otp_put(
        tx,
        key,
        &hex(issued.record.code_hash.as_bytes()),
        issued.record.expires_at.timestamp_millis(),
        now.timestamp_millis(),
    )
    .await?;
    let mut args = serde_json::Map::new();
    args.insert("code".into(), json!(issued.code.expose()));
    args.insert("minutes".into(), json!(10));
    let notice = crate::notify::DirectNotice {
        key: format!("otp/{}", uuid::Uuid::new_v4()),
        account_id: Some(account_id.to_owned()),
        channel,
        to: to.to_owned(),
        category: hearth_notify::Category::Security,
        template: "otp-code".into(),
        args,
        language: None,
    };
    crate::notify::enqueue_direct(&app.notify, tx, &notice, now).await.map_err(ApiError::internal)?;
    Ok(())
}

/// Checks `code` against the code stored under `key` and spends it: `true` only for the right
/// code, in time, within its attempts (each call reserves an attempt first, so parallel guesses
/// cannot exceed them); an expired code is removed.
pub(crate) async fn spend_code(
    app: &App,
    key: &str,
    code: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, ApiError> {
    let Some(attempt) = mfa::otp_reserve_attempt(&*app.db, key, i64::from(otp::MAX_ATTEMPTS)).await? else {
        return Ok(false);
    };
    let hash = unhex(&attempt.code_hash)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ApiError::internal("stored OTP hash is not 32 bytes of hex"))?;
    let record = OtpRecord {
        code_hash: OtpHash::from_bytes(hash),
        expires_at: chrono::DateTime::from_timestamp_millis(attempt.expires_at).unwrap_or(now),
        failed_attempts: u32::try_from(attempt.earlier_attempts).unwrap_or(otp::MAX_ATTEMPTS),
    };
    match otp::check(&app.auth.pepper, &record, code, now) {
        OtpDecision::Valid => Ok(mfa::otp_consume(&*app.db, key, &attempt.code_hash).await?),
        OtpDecision::Expired => {
            mfa::otp_delete(&*app.db, key).await?;
            Ok(false)
        }
        OtpDecision::Invalid { .. } | OtpDecision::Locked => Ok(false),
    }
}

async fn issue_and_send(app: &App, channel: OtpChannel, to: String) -> Result<(), String> {
    let account = match channel {
        OtpChannel::Email => identity::account_by_email(&*app.db, &to).await,
        OtpChannel::Sms => identity::account_by_phone(&*app.db, &to).await,
    }
    .map_err(|e| e.to_string())?;
    let Some(account) = account.filter(|a| a.role == Role::Patient.as_str()) else { return Ok(()) };
    let now = app.clock.now();
    // The code and its message commit together: no code without its message, and the other way.
    let tx = hearth_store_sql::notify::TxDb::begin(&*app.db).await.map_err(|e| e.to_string())?;
    let kind = match channel {
        OtpChannel::Email => hearth_notify::ChannelKind::Email,
        OtpChannel::Sms => hearth_notify::ChannelKind::Sms,
    };
    put_code(app, &tx, &to, &account.id, kind, &to, now).await.map_err(|e| format!("{}: {}", e.code, e.message))?;
    tx.commit().await.map_err(|e| e.to_string())?;
    app.notify.wake();
    Ok(())
}

/// The code, with the address it was sent to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    email: Option<String>,
    #[schema(example = "+919876543210")]
    phone: Option<String>,
    #[schema(example = "482913")]
    code: String,
    /// Browser mode: the refresh token as an HttpOnly cookie (see `login`).
    #[serde(default)]
    cookie: bool,
}

fn otp_invalid() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "otp_invalid", "the code is wrong, expired or used up; request a new one")
}

#[utoipa::path(post, path = "/api/v1/auth/otp/verify", tag = "patient sign-in",
    request_body(content = VerifyBody, description = "The code (10 minutes, 5 attempts)", example = json!({"phone": "+919876543210", "code": "482913"})),
    responses((status = 200, description = "Tokens", body = super::routes::TokenResponse, example = json!({"access_token": "eyJ…", "token_type": "Bearer", "expires_in": 900, "refresh_token": "…", "scope": "user/*.cruds openid fhirUser offline_access"})),
        (status = 401, description = "Wrong, expired or exhausted code", body = ErrorEnvelope, example = json!({"error": {"code": "otp_invalid", "message": "…"}})), (status = 400, description = "Invalid body (stable error code) (`invalid_destination`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 429, description = "Rate limited or locked; see Retry-After", body = ErrorEnvelope, example = json!({"error": {"code": "rate_limited", "message": "too many requests"}}))),
    security(()))]
pub(crate) async fn verify(
    State(app): State<Arc<App>>,
    ext: axum::http::Extensions,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut account = None;
    let result = verify_checked(&app, &ext, &bytes, &mut account).await;
    super::routes::sign_in_event(&app, &ext, account.as_ref(), result.as_ref().err()).await;
    result
}

async fn verify_checked(
    app: &Arc<App>,
    ext: &axum::http::Extensions,
    bytes: &[u8],
    seen: &mut Option<hearth_store_sql::identity::AccountRow>,
) -> Result<Response, ApiError> {
    let app = Arc::clone(app);
    let req: VerifyBody = super::json_body(bytes)?;
    let (channel, to) = destination(req.email.as_deref(), req.phone.as_deref())?;
    check_auth(&app, &[format!("otp-verify-ip:{}", client_ip(ext)), format!("otp-verify:{to}")])?;
    let now = app.clock.now();
    if !spend_code(&app, &to, &req.code, now).await? {
        return Err(otp_invalid());
    }
    let account = match channel {
        OtpChannel::Email => identity::account_by_email(&*app.db, &to).await?,
        OtpChannel::Sms => identity::account_by_phone(&*app.db, &to).await?,
    };
    let Some(account) = account.filter(|a| a.role == Role::Patient.as_str()) else { return Err(otp_invalid()) };
    *seen = Some(account.clone());
    identity::record_login_success(&*app.db, &account.id).await?;
    let tokens = super::routes::full_tokens(&app, &account, Role::Patient, None, None, now).await?;
    Ok(super::routes::token_response(tokens, req.cookie))
}

/// The patient OTP sign-in routes.
pub fn router() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/api/v1/auth/otp/request", axum::routing::post(request))
        .route("/api/v1/auth/otp/verify", axum::routing::post(verify))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_normalised_or_refused() {
        assert_eq!(destination(Some(" Ann@Example.org "), None).unwrap().1, "ann@example.org");
        assert_eq!(destination(None, Some("+44 (20) 7946-0958")).unwrap().1, "+442079460958");
        assert!(destination(None, Some("07946 0958")).is_err());
        assert_eq!(destination(None, Some("098765 43210")).unwrap().1, "+919876543210");
        assert!(destination(Some("a@b.c"), Some("+4420794609")).is_err());
        assert!(destination(None, None).is_err());
        assert!(destination(Some("nope"), None).is_err());
    }
}

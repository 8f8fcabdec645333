//! Invitations to claim a record: `POST /api/v1/patients/{id}/invite` (staff) and
//! `POST /api/v1/patients/claim` (anyone holding a code).
//!
//! - The code (16 characters, `hearth_auth::invite`) is stored only as its keyed hash under the
//!   server pepper; it reaches the patient through the notification outbox, enqueued in the
//!   transaction that records the invitation (no invitation without its message, nor the
//!   reverse). A new invitation ends the patient's earlier unspent ones.
//! - A claim finds the invitation by the hash of the presented code: a wrong code and an unknown
//!   one are the same `invite_invalid`; a spent one is `invite_used`, an expired one
//!   `invite_expired` (only the holder of a real code learns either). The account is created and
//!   the invitation spent in one transaction, the spend a conditional update only one claim wins.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_auth::Role;
use hearth_auth::password::AccountIdentity;
use hearth_notifications::{self as notify, DirectNotice};
use hearth_notify::{Category, ChannelKind, Lang};
use hearth_store::{Current, StoreError};
use hearth_store_sql::identity::{self, AccountRow};
use hearth_store_sql::notify::TxDb;
use hearth_store_sql::registry::{self as sql, InviteRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;

use crate::{Registry, bad, body_of, ids, json_of, not_found};

pub(crate) fn router() -> axum::Router<Arc<Registry>> {
    axum::Router::new()
        .route("/api/v1/patients/{id}/invite", axum::routing::post(invite))
        .route("/api/v1/patients/claim", axum::routing::post(claim))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry_value(p: &Value, system: &str) -> Option<String> {
    p.get("telecom")?
        .as_array()?
        .iter()
        .find(|e| e.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|e| e.get("value"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn enqueue_error(e: notify::EnqueueError) -> ApiError {
    match e {
        notify::EnqueueError::Store(s) => s.into(),
        other => ApiError::internal(other.to_string()),
    }
}

/// `+91******3210`, `a***@example.org`: enough for staff to recognise where it went.
fn masked(to: &str) -> String {
    match to.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => {
            let n = to.chars().count();
            to.chars().enumerate().map(|(i, c)| if i < 3 || i + 4 >= n { c } else { '*' }).collect()
        }
    }
}

/// How to send an invitation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    /// `sms` (to the record's phone) or `email` (to its e-mail).
    #[schema(example = "sms")]
    channel: String,
    /// The message's language (a BCP-47 tag: `en`, `hi`, `hi-Latn`); default: the patient's
    /// preferred `communication` language, else the clinic's default.
    #[schema(example = "hi")]
    language: Option<String>,
}

/// An invitation sent (the code itself is never shown).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Invitation {
    id: String,
    /// The Patient id.
    patient: String,
    /// `sms` or `email`.
    channel: String,
    /// Where it went, masked.
    #[schema(example = "+91******3210")]
    to: String,
    /// The message's language (BCP-47) when asked for or known from the record; absent, the
    /// clinic's default.
    #[schema(example = "hi")]
    language: Option<String>,
    /// When the code stops working (RFC 3339).
    expires_at: String,
}

/// A record claimed: the new patient account and how it signs in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Claimed {
    account: ClaimedAccount,
    /// `password` or `otp`.
    #[schema(example = "password")]
    sign_in: &'static str,
}

/// The patient account a claim created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ClaimedAccount {
    id: String,
    email: Option<String>,
    /// E.164.
    phone: Option<String>,
    /// Always `patient`.
    role: String,
    /// `Patient/<id>`.
    #[serde(rename = "fhirUser")]
    fhir_user: Option<String>,
}

/// The patient's preferred language: the `communication` entry marked `preferred` (else the
/// first), its BCP-47 coding (else any code).
fn preferred_language(p: &Value) -> Option<String> {
    let entries = p.get("communication")?.as_array()?;
    let entry = entries
        .iter()
        .find(|e| e.get("preferred").and_then(Value::as_bool) == Some(true))
        .or_else(|| entries.first())?;
    let codings = entry.pointer("/language/coding")?.as_array()?;
    codings
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some("urn:ietf:bcp:47"))
        .or_else(|| codings.first())
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str)
        .and_then(ids::language)
}

#[utoipa::path(post, path = "/api/v1/patients/{id}/invite", tag = "registry",
    params(("id" = String, Path, description = "The Patient id")),
    request_body(content = InviteBody, description = "Send the patient a single-use code and link to claim their record (staff only), by `sms` (to the record's phone) or `email` (to its e-mail), in `language` (else the patient's preferred language, else the clinic's default)",
        example = json!({"channel": "sms", "language": "hi"})),
    responses(
        (status = 201, description = "Recorded and queued; the code itself is never shown", body = Invitation,
         example = json!({"id": "0190…", "patient": "0190…", "channel": "sms", "to": "+91******3210", "language": "hi", "expiresAt": "2026-12-02T09:00:00Z"})),
        (status = 400, description = "Invalid body (invalid_body, invalid_channel, invalid_language)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_channel", "message": "channel is sms or email"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not staff", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for clinicians and administrators"}})),
        (status = 404, description = "Unknown, or outside the caller's reach", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 409, description = "The record already has an account", body = ErrorEnvelope, example = json!({"error": {"code": "already_claimed", "message": "this record already has an account"}})),
        (status = 422, description = "The record has no phone (or e-mail) to send to", body = ErrorEnvelope, example = json!({"error": {"code": "no_destination", "message": "the record has no phone number"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn invite(
    State(app): State<Arc<Registry>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    crate::require_staff(&caller)?;
    let req: InviteBody = body_of(&bytes)?;
    let channel = match req.channel.as_str() {
        "sms" => ChannelKind::Sms,
        "email" => ChannelKind::Email,
        _ => return Err(bad("invalid_channel", "channel is sms or email")),
    };
    let asked = match req.language.as_deref() {
        Some(l) => Some(
            ids::language(l)
                .ok_or_else(|| bad("invalid_language", "language is a BCP-47 tag such as en, hi or hi-Latn"))?,
        ),
        None => None,
    };
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(not_found("patient"));
    }
    let Current::Found(v) = app.store_for(&caller).read("Patient", &id).await? else {
        return Err(not_found("patient"));
    };
    let p = json_of(&v)?;
    // The language the message goes in: asked for, else the patient's, else the clinic's
    // default (the worker's, for a row without one).
    let language = asked.or_else(|| preferred_language(&p));
    if !sql::accounts_linked(&*app.db, &format!("Patient/{id}")).await?.is_empty() {
        return Err(ApiError::new(StatusCode::CONFLICT, "already_claimed", "this record already has an account"));
    }
    let to = match channel {
        ChannelKind::Sms => entry_value(&p, "phone").and_then(|ph| ids::phone(&ph)),
        _ => entry_value(&p, "email").and_then(|e| ids::email(&e)),
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_destination",
            if channel == ChannelKind::Sms {
                "the record has no valid phone number"
            } else {
                "the record has no valid e-mail address"
            },
        )
    })?;
    let now = app.clock.now();
    let hours = app.config.invite_ttl_hours;
    let expires = now + chrono::TimeDelta::hours(i64::from(hours));
    let issued = hearth_auth::invite::issue(&mut crate::rng(), &app.credentials.pepper);
    let base = match &app.config.claim_url {
        Some(u) => u.clone(),
        None => {
            let fhir = app.fhir_base(&headers);
            format!("{}/claim", fhir.strip_suffix("/fhir").unwrap_or(&fhir))
        }
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let link = format!("{base}{sep}code={}", issued.code.expose());
    let row = InviteRow {
        id: uuid::Uuid::now_v7().to_string(),
        patient: id.clone(),
        code_hash: hex(&issued.hash),
        channel: req.channel.clone(),
        created_by: caller.account.id.clone(),
        created_at: now.timestamp_millis(),
        expires_at: expires.timestamp_millis(),
        used_at: None,
        account_id: None,
    };
    let mut args = serde_json::Map::new();
    args.insert("code".into(), json!(issued.code.expose()));
    args.insert("link".into(), json!(link));
    args.insert("hours".into(), json!(hours));
    let notice = DirectNotice {
        key: format!("registry-invite:{}", row.id),
        account_id: None,
        channel,
        to: to.clone(),
        category: Category::Security,
        template: "registry-invite".into(),
        args,
        language: language.as_deref().map(Lang::parse),
    };
    let tx = TxDb::begin(&*app.db).await?;
    sql::insert(&tx, &row).await?;
    notify::enqueue_direct(&app.notifier, &tx, &notice, now).await.map_err(enqueue_error)?;
    tx.commit().await?;
    app.notifier.wake();
    Ok((
        StatusCode::CREATED,
        Json(Invitation {
            id: row.id,
            patient: id,
            channel: req.channel,
            to: masked(&to),
            language: language.clone(),
            expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }),
    )
        .into_response())
}

/// A claim: the invitation's code and either a new `password` or `otp: true`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    /// The code from the invitation.
    #[schema(example = "k7mq-2xbd-9hw4-a3ce")]
    code: String,
    /// A new password (sign-in with the record's e-mail).
    password: Option<String>,
    /// Sign in later with one-time codes to the record's phone or e-mail instead of a password.
    #[serde(default)]
    otp: bool,
}

fn invalid() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invite_invalid",
        "this code is not valid; check it or ask the clinic for a new one",
    )
}

fn used() -> ApiError {
    ApiError::new(StatusCode::GONE, "invite_used", "this invitation has already been used")
}

fn expired() -> ApiError {
    ApiError::new(StatusCode::GONE, "invite_expired", "this invitation has expired; ask the clinic for a new one")
}

#[utoipa::path(post, path = "/api/v1/patients/claim", tag = "registry",
    request_body(content = ClaimBody, description = "Claim a record with the code of an invitation: either a new `password` (sign in with the record's e-mail; the password policy applies) or `otp: true` (sign in with one-time codes to the record's phone or e-mail)",
        example = json!({"code": "k7mq-2xbd-9hw4-a3ce", "password": "a long passphrase of mine"})),
    responses(
        (status = 201, description = "A patient account linked to the record", body = Claimed,
         example = json!({"account": {"id": "0190…", "email": "asha@example.org", "phone": "+919876543210", "role": "patient", "fhirUser": "Patient/0190…"}, "signIn": "password"})),
        (status = 400, description = "Wrong or unknown code (`invite_invalid`, the same answer for both), bad body (`invalid_body`, `invalid_claim`) or a password the policy refuses", body = ErrorEnvelope,
         example = json!({"error": {"code": "invite_invalid", "message": "this code is not valid; check it or ask the clinic for a new one"}})),
        (status = 409, description = "The record already has an account, or its e-mail or phone belongs to another account", body = ErrorEnvelope, example = json!({"error": {"code": "account_exists", "message": "an account already uses this record's e-mail or phone"}})),
        (status = 410, description = "The invitation was used (`invite_used`) or has expired (`invite_expired`)", body = ErrorEnvelope, example = json!({"error": {"code": "invite_used", "message": "this invitation has already been used"}})),
        (status = 422, description = "A password needs an e-mail on the record (`email_required`); OTP needs a phone or e-mail (`no_contact`)", body = ErrorEnvelope, example = json!({"error": {"code": "email_required", "message": "…"}})),
    ))]
pub(crate) async fn claim(State(app): State<Arc<Registry>>, bytes: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: ClaimBody = body_of(&bytes)?;
    if req.password.is_some() == req.otp {
        return Err(bad("invalid_claim", "send either a new password or otp: true"));
    }
    let hash = hearth_auth::invite::hash(&app.credentials.pepper, &req.code).ok_or_else(invalid)?;
    let now = app.clock.now();
    let row = sql::by_hash(&*app.db, &hex(&hash)).await?.ok_or_else(invalid)?;
    if row.used_at.is_some() {
        return Err(used());
    }
    if row.expires_at <= now.timestamp_millis() {
        return Err(expired());
    }
    // The claimant is not signed in: the record is read for the system, for this one purpose.
    let Current::Found(v) = app.system().read("Patient", &row.patient).await? else { return Err(invalid()) };
    let p = json_of(&v)?;
    let fhir_user = format!("Patient/{}", row.patient);
    if !sql::accounts_linked(&*app.db, &fhir_user).await?.is_empty() {
        return Err(ApiError::new(StatusCode::CONFLICT, "already_claimed", "this record already has an account"));
    }
    let email = entry_value(&p, "email").and_then(|e| ids::email(&e));
    let phone = entry_value(&p, "phone").and_then(|ph| ids::phone(&ph));
    let password_hash = match req.password {
        Some(password) => {
            let Some(email) = email.as_deref() else {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "email_required",
                    "signing in with a password needs an e-mail address on the record; use otp: true or ask the clinic to add one",
                ));
            };
            let name = p.pointer("/name/0/family").and_then(Value::as_str);
            app.credentials
                .policy
                .check(&password, &AccountIdentity { email: Some(email), name })
                .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, r.code(), r.message()))?;
            let hasher = app.credentials.hasher.clone();
            let hashed = tokio::task::spawn_blocking(move || hasher.hash(&mut crate::rng(), &password))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            Some(hashed.into_string())
        }
        None => {
            if email.is_none() && phone.is_none() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "no_contact",
                    "one-time codes need a phone number or e-mail address on the record",
                ));
            }
            None
        }
    };
    let account = AccountRow {
        id: uuid::Uuid::now_v7().to_string(),
        email,
        phone,
        phone_pending: None,
        password_hash,
        role: Role::Patient.as_str().to_owned(),
        fhir_user: Some(fhir_user),
        organization: None,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: now.timestamp_millis(),
    };
    let tx = TxDb::begin(&*app.db).await?;
    if !sql::spend(&tx, &row.id, &account.id, now.timestamp_millis()).await? {
        drop(tx);
        return Err(match sql::by_hash(&*app.db, &row.code_hash).await? {
            Some(r) if r.used_at.is_some() => used(),
            _ => expired(),
        });
    }
    identity::insert_account(&tx, &account).await.map_err(|e| match e {
        StoreError::Conflict => ApiError::new(
            StatusCode::CONFLICT,
            "account_exists",
            "an account already uses this record's e-mail or phone; sign in with it",
        ),
        other => other.into(),
    })?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Claimed {
            account: ClaimedAccount {
                id: account.id,
                email: account.email,
                phone: account.phone,
                role: account.role,
                fhir_user: account.fhir_user,
            },
            sign_in: if req.otp { "otp" } else { "password" },
        }),
    )
        .into_response())
}

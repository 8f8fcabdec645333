//! The authenticated principal of a request, as extractors a workflow's handlers take.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use hearth_auth::Role;
use hearth_auth::scope::ScopeSet;
use hearth_auth::token::AccessClaims;
use hearth_store::{Access, StoreError, Witness};
use hearth_store_sql::identity::AccountRow;

use crate::ctx::Ctx;
use crate::error::{ApiError, FhirError, Issue};

/// The authenticated principal of a request.
#[derive(Clone)]
pub struct Caller {
    pub account: AccountRow,
    pub role: Role,
    pub claims: AccessClaims,
    pub scopes: ScopeSet,
    /// The authorization proof the store checks (see `hearth_store::access`).
    pub access: Access,
    /// The audit slip of the request (audited routes), told what the caller's store view touches.
    pub audit: Option<Arc<dyn AuditHook>>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("account", &self.account.id)
            .field("role", &self.role)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// The FHIR `Patient` id an account of role `patient` is linked to.
    pub fn own_patient(&self) -> Option<&str> {
        self.account.fhir_user.as_deref().and_then(|u| u.strip_prefix("Patient/"))
    }
}

/// The per-request audit record the edge's audit middleware puts in the request's extensions:
/// the extractor names the caller on it, and the caller's store view tells it what was read.
pub trait AuditHook: Witness + Send + Sync {
    fn identify(&self, caller: &Caller);
}

/// Why a request has no caller.
#[derive(Debug)]
pub enum AuthFailure {
    Missing,
    Invalid,
    /// A token this server signed whose time is up: refresh it.
    Expired,
    /// An enrolment-only token on any other endpoint.
    MfaSetupOnly,
    Store(StoreError),
}

/// How the edge turns a request's headers into a [`Caller`] (token, account, access).
#[async_trait::async_trait]
pub trait Authenticate: Send + Sync {
    /// `allow_setup` admits the enrolment-only token (TOTP enrolment and `me`).
    async fn authenticate(&self, ctx: &Ctx, headers: &HeaderMap, allow_setup: bool) -> Result<Caller, AuthFailure>;
}

/// The `WWW-Authenticate` challenge of a refusal (RFC 6750 section 3): none for a token that is
/// valid but only allows TOTP enrolment (that is a `403`).
fn challenge(f: &AuthFailure) -> Option<String> {
    let error = |description: &str| {
        format!("Bearer realm=\"hearth\", error=\"invalid_token\", error_description=\"{description}\"")
    };
    match f {
        AuthFailure::Missing => Some("Bearer realm=\"hearth\"".to_owned()),
        AuthFailure::Invalid => Some(error("the access token is not valid")),
        AuthFailure::Expired => Some(error("the access token expired")),
        AuthFailure::MfaSetupOnly | AuthFailure::Store(_) => None,
    }
}

const EXPIRED: &str = "the access token has expired: get a new one with POST /api/v1/auth/refresh (or sign in again)";

impl From<AuthFailure> for FhirError {
    fn from(f: AuthFailure) -> FhirError {
        let challenge = challenge(&f);
        let e = match f {
            AuthFailure::Missing => FhirError::new(
                StatusCode::UNAUTHORIZED,
                Issue::error("login", "authentication required: send an access token as `Authorization: Bearer …`"),
            ),
            AuthFailure::Invalid => {
                FhirError::new(StatusCode::UNAUTHORIZED, Issue::error("login", "the access token is not valid"))
            }
            AuthFailure::Expired => FhirError::new(StatusCode::UNAUTHORIZED, Issue::error("expired", EXPIRED)),
            AuthFailure::MfaSetupOnly => FhirError::new(
                StatusCode::FORBIDDEN,
                Issue::error(
                    "forbidden",
                    "mfa_enrollment_required: this token may only enrol TOTP (POST /api/v1/auth/totp/enroll)",
                ),
            ),
            AuthFailure::Store(e) => e.into(),
        };
        match challenge {
            Some(c) => e.with_challenge(c),
            None => e,
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> ApiError {
        let challenge = challenge(&f);
        let e = match f {
            AuthFailure::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "authentication required: send an access token as `Authorization: Bearer …`",
            ),
            AuthFailure::Invalid => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is not valid")
            }
            AuthFailure::Expired => ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", EXPIRED),
            AuthFailure::MfaSetupOnly => ApiError::new(
                StatusCode::FORBIDDEN,
                "mfa_enrollment_required",
                "two-factor enrolment required: this token may only enrol TOTP (POST /api/v1/auth/totp/enroll)",
            ),
            AuthFailure::Store(e) => crate::error::api_store_error(e),
        };
        match challenge {
            Some(c) => e.with_challenge(c),
            None => e,
        }
    }
}

async fn extract(parts: &Parts, ctx: &Ctx, allow_setup: bool) -> Result<Caller, AuthFailure> {
    let mut caller = ctx.authenticate(&parts.headers, allow_setup).await?;
    if let Some(slip) = parts.extensions.get::<Arc<dyn AuditHook>>() {
        slip.identify(&caller);
        caller.audit = Some(Arc::clone(slip));
    }
    Ok(caller)
}

/// A [`Caller`] for FHIR handlers (errors as `OperationOutcome`).
impl<S> FromRequestParts<Arc<S>> for Caller
where
    S: AsRef<Ctx> + Send + Sync + 'static,
{
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<Caller, FhirError> {
        extract(parts, (**state).as_ref(), false).await.map_err(FhirError::from)
    }
}

/// The `sub` prefix of a SMART Backend Services token: the subject is the client, not an account.
pub const SERVICE_SUBJECT: &str = "client:";

/// [`Caller`] for the app API (errors as the JSON envelope). A SMART backend-services token is
/// refused here (`403 forbidden`): its `system/` scopes speak of FHIR resources, and the app
/// API's workflows decide by role, which a service does not have; it uses the FHIR API.
pub struct ApiCaller(pub Caller);

impl<S> FromRequestParts<Arc<S>> for ApiCaller
where
    S: AsRef<Ctx> + Send + Sync + 'static,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<ApiCaller, ApiError> {
        let caller = extract(parts, (**state).as_ref(), false).await.map_err(ApiError::from)?;
        if caller.claims.sub.starts_with(SERVICE_SUBJECT) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a backend-services token is for the FHIR API, not the app API",
            ));
        }
        Ok(ApiCaller(caller))
    }
}

/// [`ApiCaller`] that also admits a backend-services token: for the OAuth endpoints
/// (introspection) a service may call about its own tokens.
pub struct TokenCaller(pub Caller);

impl<S> FromRequestParts<Arc<S>> for TokenCaller
where
    S: AsRef<Ctx> + Send + Sync + 'static,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<TokenCaller, ApiError> {
        extract(parts, (**state).as_ref(), false).await.map(TokenCaller).map_err(ApiError::from)
    }
}

/// [`ApiCaller`] that also admits the enrolment-only token (TOTP enrolment and `me`).
pub struct EnrolCaller(pub Caller);

impl<S> FromRequestParts<Arc<S>> for EnrolCaller
where
    S: AsRef<Ctx> + Send + Sync + 'static,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<EnrolCaller, ApiError> {
        extract(parts, (**state).as_ref(), true).await.map(EnrolCaller).map_err(ApiError::from)
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

/// The address a request came from (its TCP peer), for audit events and rate limits.
pub fn client_ip(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

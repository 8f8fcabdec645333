//! SMART on FHIR (App Launch 2.x, standalone launch) for third-party apps: discovery, client
//! registration by an admin, the OAuth 2.0 authorization-code flow with PKCE, and the token
//! endpoint.
//!
//! - `GET /.well-known/smart-configuration` (also under `/fhir`): the endpoints and capabilities.
//! - `POST|GET /api/v1/admin/oauth/clients`, `DELETE …/{client_id}`: admin registration. A
//!   confidential client gets a 256-bit random secret, shown once; only its SHA-256 is stored
//!   (a high-entropy secret needs no slow hash).
//! - `GET /oauth/authorize`: validates the request and renders a server-side login + consent page
//!   (no JavaScript); `POST /oauth/authorize` checks the CSRF token (hidden field = cookie), the
//!   credentials, the launch patient, and redirects back with a one-time code (60 s, stored as its
//!   SHA-256, bound to the client, redirect URI, PKCE challenge, granted scopes, account, patient).
//! - `POST /oauth/token`: `authorization_code` (PKCE S256 mandatory) and `refresh_token` (the app
//!   login's rotation with reuse detection, bound to the client), and `client_credentials` for
//!   SMART Backend Services (a `private_key_jwt` assertion checked by `hearth_auth::assertion`
//!   against the client's JWK Set, its `jti` spent once), with RFC 6749 JSON errors.
//! - `POST /oauth/introspect` (RFC 7662, for a signed-in caller) and `POST /oauth/revoke`
//!   (RFC 7009, always `200`).
//!
//! Decisions:
//! - Until the `redirect_uri` is known to be one the client registered (exact string match), an
//!   error is shown on the page; after that it goes back to the app as `error=`.
//! - Granted scopes = requested ∩ what the client may have (a requested scope is kept when one of
//!   the client's scopes covers it); unknown or unsupported scopes are silently dropped (RFC 6749
//!   §3.3), and the token answer says what was granted. With `openid` the answer carries an
//!   OpenID Connect ID token (EdDSA, same keys as the JWKS; `iss` is the FHIR base URL, as the
//!   smart-configuration's `issuer` says), with `fhirUser` it names the user's FHIR resource.
//! - A refresh token is issued only with `offline_access`. Its family is bound to the client.
//! - A replayed code is refused and revokes the refresh tokens issued from it.
//! - Accounts with two-factor authentication cannot use this page yet (refused, never bypassed).

use hearth_workflow::openapi::ErrorEnvelope;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, TimeDelta, Utc};
use hearth_auth::Role;
use hearth_auth::password::PasswordHash;
use hearth_auth::pkce::{self, ChallengeMethod};
use hearth_auth::rand_core::Rng;
use hearth_auth::refresh::FamilyId;
use hearth_auth::scope::{ClinicalScope, ResourceScope, Scope, ScopeContext, ScopeSet};
use hearth_notify::templates::escape_html as escape;
use hearth_store_sql::identity::{self, AccountRow};
use hearth_store_sql::oauth::{self, ClientRow, CodeRow};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::routes::{access_answer, issue_tokens, probe_claims, refresh_with};
use super::{ApiCaller, require_admin, rng};
use crate::app::App;
use crate::error::ApiError;

pub fn router() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/.well-known/smart-configuration", get(configuration))
        .route("/oauth/authorize", get(authorize_page).post(authorize_submit))
        .route("/oauth/token", post(token))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revoke", post(revoke))
        .route("/api/v1/admin/oauth/clients", get(list_clients).post(create_client))
        .route("/api/v1/admin/oauth/clients/{client_id}", delete(delete_client))
}

/// How long an authorization code lives.
const CODE_TTL: TimeDelta = TimeDelta::seconds(60);
/// The cookie carrying the consent form's CSRF token (`__Host-`: Secure, Path=/, no Domain).
const CSRF_COOKIE: &str = "__Host-hearth-oauth-csrf";
/// Locks after this many consecutive failures (as the app login).
const LOCK_AFTER: i64 = 5;
/// Longest parameter value accepted (scope strings, state, URIs).
const MAX_PARAM: usize = 4096;

const CAPABILITIES: [&str; 12] = [
    "launch-standalone",
    "sso-openid-connect",
    "client-public",
    "client-confidential-symmetric",
    "context-standalone-patient",
    "permission-offline",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "authorize-post",
    "client-confidential-asymmetric",
];

const SCOPES_SUPPORTED: [&str; 18] = [
    "system/*.cruds",
    "system/*.rs",
    "system/*.read",
    "system/*.*",
    "openid",
    "fhirUser",
    "launch/patient",
    "offline_access",
    "patient/*.cruds",
    "patient/*.rs",
    "patient/*.read",
    "patient/*.write",
    "patient/*.*",
    "user/*.cruds",
    "user/*.rs",
    "user/*.read",
    "user/*.write",
    "user/*.*",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// 256 random bits, hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Constant-time equality of two strings of public length.
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's origin (the FHIR base without `/fhir`).
fn origin(app: &App, headers: &HeaderMap) -> String {
    let base = crate::fhir::http::base_url(app, headers);
    base.strip_suffix("/fhir").map_or_else(|| base.clone(), str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Discovery

/// `GET /.well-known/smart-configuration`.
#[utoipa::path(get, path = "/.well-known/smart-configuration", tag = "SMART on FHIR",
    responses((status = 200, description = "SMART App Launch discovery (endpoints, PKCE S256, scopes, capabilities)", body = Object)))]
pub(crate) async fn configuration(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let origin = origin(&app, &headers);
    let body = json!({
        "authorization_endpoint": format!("{origin}/oauth/authorize"),
        "token_endpoint": format!("{origin}/oauth/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": hearth_auth::assertion::ALGORITHMS,
        "introspection_endpoint": format!("{origin}/oauth/introspect"),
        "revocation_endpoint": format!("{origin}/oauth/revoke"),
        "jwks_uri": format!("{origin}/.well-known/jwks.json"),
        "issuer": crate::fhir::http::base_url(&app, &headers),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": CAPABILITIES,
    });
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

// ---------------------------------------------------------------------------------------------
// Client registration

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// A SMART app to register.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Growth charts", "redirect_uris": ["https://app.example.org/callback"], "confidential": false, "scope": "launch/patient patient/*.rs openid fhirUser offline_access"}))]
struct NewClient {
    #[schema(example = "Growth charts")]
    name: String,
    /// `https://…`, `http://` on a loopback host, or a private-use scheme with a dot (RFC 8252).
    redirect_uris: Vec<String>,
    /// A confidential client gets a secret (shown once); a public one uses PKCE alone.
    #[serde(default)]
    confidential: bool,
    /// The scopes the client may ever be granted (space-separated); `system/` scopes only for a
    /// backend service.
    scope: String,
    /// A backend service (SMART Backend Services, `private_key_jwt`): its public keys as a JWK
    /// Set (RS384 or ES384 keys), or the https URL it publishes them at. No redirect URIs needed.
    #[serde(default)]
    jwks: Option<JwkSet>,
    #[serde(default)]
    jwks_uri: Option<String>,
}

/// A backend service's public keys (RFC 7517 JWK Set; members other than these are ignored).
#[derive(serde::Serialize, Deserialize, utoipa::ToSchema)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// One public key: RSA (`n`, `e`) for RS384 or EC P-384 (`crv`, `x`, `y`) for ES384.
#[derive(serde::Serialize, Deserialize, utoipa::ToSchema)]
struct Jwk {
    #[schema(example = "EC")]
    kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
}

/// An acceptable redirect URI: `https://host…`, `http://` on a loopback host, or a private-use
/// scheme with a dot (RFC 8252 §7.1); never a fragment, whitespace or control character.
fn valid_redirect_uri(uri: &str) -> bool {
    if uri.is_empty()
        || uri.len() > 2000
        || uri.contains('#')
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let host_ok = |rest: &str| {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        !host.is_empty() && !host.contains('@')
    };
    if let Some(rest) = uri.strip_prefix("https://") {
        return host_ok(rest);
    }
    if let Some(rest) = uri.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let name = if host.starts_with('[') {
            host.split_inclusive(']').next().unwrap_or("")
        } else {
            host.split(':').next().unwrap_or("")
        };
        return matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    }
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            scheme.contains('.')
                && scheme.starts_with(|c: char| c.is_ascii_lowercase())
                && scheme.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
        }
        None => false,
    }
}

/// Parses the scopes a client may be granted; refuses what this server does not implement.
fn client_scopes(app: &App, text: &str, backend: bool) -> Result<ScopeSet, ApiError> {
    let set = ScopeSet::parse_with(text, &|t| app.model.is_resource_type(t))
        .map_err(|errs| bad("invalid_scope", errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
    for s in set.iter() {
        let ok = match s {
            Scope::Clinical(c) => (c.context == ScopeContext::System) == backend,
            Scope::LaunchPatient | Scope::OfflineAccess | Scope::OpenId | Scope::FhirUser => true,
            _ => false,
        };
        if !ok {
            return Err(bad(
                "unsupported_scope",
                format!(
                    "scope {s} is not supported (clinical patient/ and user/ scopes, launch/patient, \
                     openid, fhirUser and offline_access are; a backend service with keys has system/ scopes only)"
                ),
            ));
        }
    }
    if set.is_empty() {
        return Err(bad("invalid_scope", "a client needs at least one scope"));
    }
    Ok(set)
}

fn redirect_uris_of(client: &ClientRow) -> Vec<String> {
    serde_json::from_str(&client.redirect_uris).unwrap_or_default()
}

/// A registered SMART app.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ClientView<'a> {
    client_id: &'a str,
    name: &'a str,
    redirect_uris: Vec<String>,
    confidential: bool,
    /// The scopes it may ever be granted (space-separated).
    scope: &'a str,
    created_at: Option<String>,
    /// Registration only, of a confidential client: its secret, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

/// The registered apps.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ClientList<'a> {
    clients: Vec<ClientView<'a>>,
}

fn client_json(c: &ClientRow) -> ClientView<'_> {
    ClientView {
        client_id: &c.id,
        name: &c.name,
        redirect_uris: redirect_uris_of(c),
        confidential: c.confidential,
        scope: &c.scope,
        created_at: DateTime::from_timestamp_millis(c.created_at).map(|d| d.to_rfc3339()),
        client_secret: None,
    }
}

#[utoipa::path(post, path = "/api/v1/admin/oauth/clients", tag = "SMART on FHIR",
    request_body(content = NewClient, description = "Register an app (admins only); a confidential client's secret is returned once",
        example = json!({"name": "Vitals app", "redirect_uris": ["https://app.example.org/callback"], "confidential": false, "scopes": "launch/patient patient/*.rs offline_access"})),
    responses((status = 201, description = "The client", body = ClientView), (status = 400, description = "Invalid body (stable error code) (`invalid_scope`, `invalid_redirect_uri`, `invalid_jwks`)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_body", "message": "invalid request body"}})), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})), (status = 403, description = "Not allowed for this account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}}))),
    security(("bearer" = [])))]
pub(crate) async fn create_client(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let req: NewClient =
        serde_json::from_slice(&bytes).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(bad("invalid_name", "name must be 1 to 200 printable characters"));
    }
    let backend = req.jwks.is_some() || req.jwks_uri.is_some();
    if let Some(j) = &req.jwks
        && (j.keys.is_empty() || j.keys.len() > 20)
    {
        return Err(bad("invalid_jwks", "jwks must be a JWK Set: {\"keys\": [...]} with 1 to 20 keys"));
    }
    if let Some(u) = &req.jwks_uri
        && !(u.starts_with("https://") || (u.starts_with("http://") && valid_redirect_uri(u)))
    {
        return Err(bad("invalid_jwks", "jwks_uri must be an https:// URL (http:// only on a loopback host)"));
    }
    if backend && (req.confidential || !req.redirect_uris.is_empty()) {
        return Err(bad("invalid_jwks", "a backend service authenticates with its keys: no secret, no redirect_uris"));
    }
    if !backend && (req.redirect_uris.is_empty() || req.redirect_uris.len() > 20) {
        return Err(bad("invalid_redirect_uri", "give 1 to 20 redirect_uris"));
    }
    if let Some(badly) = req.redirect_uris.iter().find(|u| !valid_redirect_uri(u)) {
        return Err(bad(
            "invalid_redirect_uri",
            format!(
                "redirect URI {badly:?} is not allowed: use https://…, http:// on localhost/127.0.0.1/[::1], or a \
                 private-use scheme like com.example.app:/callback; no fragment"
            ),
        ));
    }
    let scope = client_scopes(&app, &req.scope, backend)?;
    let secret = req.confidential.then(random_token);
    let row = ClientRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        redirect_uris: json!(req.redirect_uris).to_string(),
        confidential: req.confidential,
        secret_hash: secret.as_deref().map(sha256_hex),
        scope: scope.to_string(),
        created_by: caller.account.id.clone(),
        created_at: app.clock.now().timestamp_millis(),
    };
    oauth::insert_client(&*app.db, &row).await?;
    if backend {
        let jwks = req.jwks.as_ref().map(|j| json!(j).to_string());
        oauth::set_client_keys(&*app.db, &row.id, jwks.as_deref(), req.jwks_uri.as_deref()).await?;
    }
    tracing::info!(client_id = %row.id, confidential = row.confidential, "OAuth client registered");
    let mut out = client_json(&row);
    out.client_secret = secret;
    let mut resp = (StatusCode::CREATED, Json(out)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[utoipa::path(get, path = "/api/v1/admin/oauth/clients", tag = "SMART on FHIR",
    responses((status = 200, description = "Registered clients (never their secrets)", body = ClientList), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})), (status = 403, description = "Not allowed for this account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}}))),
    security(("bearer" = [])))]
pub(crate) async fn list_clients(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let clients = oauth::clients(&*app.db).await?;
    Ok(Json(json!(ClientList { clients: clients.iter().map(client_json).collect() })))
}

#[utoipa::path(delete, path = "/api/v1/admin/oauth/clients/{client_id}", tag = "SMART on FHIR",
    params(("client_id" = String, Path)),
    responses((status = 204, description = "Deleted; its pending codes stop working"), (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})), (status = 403, description = "Not allowed for this account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this operation is for administrators"}})), (status = 404, description = "No such client", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn delete_client(
    State(app): State<Arc<App>>,
    ApiCaller(caller): ApiCaller,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if oauth::delete_client(&*app.db, &client_id).await? {
        tracing::info!(client_id = %client_id, "OAuth client deleted; its refresh tokens are revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such client"))
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// Form or query parameters; a repeated parameter is an error (RFC 6749 §3.1).
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(text: &[u8]) -> Result<Params, String> {
        let mut map = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(text) {
            if v.len() > MAX_PARAM {
                return Err(format!("parameter {k} is too long"));
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(format!("parameter {k} is repeated"));
            }
        }
        Ok(Params(map))
    }

    /// A non-empty value.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

// ---------------------------------------------------------------------------------------------
// The authorization endpoint

/// A validated authorization request.
struct AuthRequest {
    client: ClientRow,
    redirect_uri: String,
    state: String,
    challenge: String,
    aud: String,
    /// OpenID Connect `nonce`, echoed in the id_token.
    nonce: Option<String>,
    /// Requested ∩ allowed for the client.
    scope: ScopeSet,
}

/// Why an authorization request is refused.
enum Refusal {
    /// Shown on the page (the redirect URI is not trusted yet, or the user must retry).
    Page { status: StatusCode, message: String },
    /// Sent back to the app.
    Redirect { uri: String, state: Option<String>, error: &'static str, description: String },
}

fn page_error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal::Page { status, message: message.into() }
}

/// Whether one of the client's scopes covers a requested scope.
fn covered(allowed: &ScopeSet, wanted: &Scope) -> bool {
    allowed.iter().any(|a| match (a, wanted) {
        (Scope::Clinical(a), Scope::Clinical(w)) => clinical_covers(a, w),
        (a, w) => a == w,
    })
}

fn clinical_covers(a: &ClinicalScope, w: &ClinicalScope) -> bool {
    let resource = match (&a.resource, &w.resource) {
        (ResourceScope::Any, _) => true,
        (ResourceScope::Type(x), ResourceScope::Type(y)) => x == y,
        (ResourceScope::Type(_), ResourceScope::Any) => false,
    };
    a.context == w.context
        && resource
        && a.permissions.contains(w.permissions)
        && (a.query.is_empty() || a.query == w.query)
}

async fn validate(app: &App, headers: &HeaderMap, p: &Params) -> Result<AuthRequest, Refusal> {
    let Some(client_id) = p.get("client_id") else {
        return Err(page_error(StatusCode::BAD_REQUEST, "The request names no client (client_id is missing)."));
    };
    let client = oauth::client_by_id(&*app.db, client_id)
        .await
        .map_err(|_| page_error(StatusCode::SERVICE_UNAVAILABLE, "The server could not check the app; try again."))?
        .ok_or_else(|| page_error(StatusCode::BAD_REQUEST, "This app is not registered with this server."))?;
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return Err(page_error(StatusCode::BAD_REQUEST, "The request has no redirect_uri."));
    };
    if !redirect_uris_of(&client).iter().any(|u| u == redirect_uri) {
        return Err(page_error(
            StatusCode::BAD_REQUEST,
            "The redirect_uri is not one this app registered; the sign-in cannot continue.",
        ));
    }
    let redirect_uri = redirect_uri.to_owned();
    let state = p.get("state").map(str::to_owned);
    let back = |error: &'static str, description: String| Refusal::Redirect {
        uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description,
    };
    if p.get("response_type") != Some("code") {
        return Err(back("unsupported_response_type", "response_type must be code".into()));
    }
    let Some(state_value) = state.clone() else {
        return Err(back("invalid_request", "state is required".into()));
    };
    ChallengeMethod::parse(p.get("code_challenge_method")).map_err(|e| back("invalid_request", e.to_string()))?;
    let challenge = p.get("code_challenge").unwrap_or("");
    pkce::validate_challenge(challenge).map_err(|e| back("invalid_request", e.to_string()))?;
    let base = crate::fhir::http::base_url(app, headers);
    let aud = p.get("aud").unwrap_or("");
    if aud.trim_end_matches('/') != base {
        return Err(back("invalid_request", format!("aud must be this server's FHIR base URL, {base}")));
    }
    let allowed = ScopeSet::parse_lenient(&client.scope).0;
    let (requested, _) = ScopeSet::parse_lenient_with(p.get("scope").unwrap_or(""), &|t| app.model.is_resource_type(t));
    let mut scope = ScopeSet::default();
    for s in requested.iter().filter(|s| covered(&allowed, s)) {
        scope.insert(s.clone());
    }
    if !scope.iter().any(|s| matches!(s, Scope::Clinical(_))) {
        return Err(back("invalid_scope", "none of the requested clinical scopes is allowed for this app".into()));
    }
    Ok(AuthRequest {
        client,
        redirect_uri,
        state: state_value,
        challenge: challenge.to_owned(),
        aud: aud.to_owned(),
        nonce: p.get("nonce").filter(|n| !n.is_empty() && n.len() <= 512).map(str::to_owned),
        scope,
    })
}

fn redirect_to(uri: &str, params: &[(&str, &str)]) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{sep}{}", query.finish());
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut().insert(header::LOCATION, v);
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        // Registered URIs have no control characters, so this is unreachable in practice.
        Err(_) => html(StatusCode::BAD_REQUEST, &error_page("The redirect URI cannot be used."), None),
    }
}

fn refusal_response(r: Refusal) -> Response {
    match r {
        Refusal::Page { status, message } => html(status, &error_page(&message), None),
        Refusal::Redirect { uri, state, error, description } => {
            let mut params = vec![("error", error), ("error_description", description.as_str())];
            if let Some(s) = &state {
                params.push(("state", s.as_str()));
            }
            redirect_to(&uri, &params)
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}\
label{display:block;margin:.6rem 0}input[type=email],input[type=password],input[type=text]{width:100%;padding:.4rem}\
.error{color:#a00;font-weight:bold}code{background:#eee;padding:0 .2rem}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>{body}</body></html>",
        escape(title),
        escape(title)
    )
}

fn error_page(message: &str) -> String {
    page("Sign-in error", &format!("<p class=\"error\">{}</p>", escape(message)))
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Clinical(c) => {
            let what = match &c.resource {
                ResourceScope::Any => "all data".to_owned(),
                ResourceScope::Type(t) => format!("{t} data"),
            };
            let whose = match c.context {
                ScopeContext::Patient => "of the selected patient",
                _ => "you can access",
            };
            let mut verbs = Vec::new();
            let p = c.permissions;
            for (flag, verb) in [
                (hearth_auth::scope::Permissions::CREATE, "create"),
                (hearth_auth::scope::Permissions::READ, "read"),
                (hearth_auth::scope::Permissions::UPDATE, "update"),
                (hearth_auth::scope::Permissions::DELETE, "delete"),
                (hearth_auth::scope::Permissions::SEARCH, "search"),
            ] {
                if p.contains(flag) {
                    verbs.push(verb);
                }
            }
            format!("{} {what} {whose}", verbs.join(", "))
        }
        Scope::LaunchPatient => "know which patient is selected".to_owned(),
        Scope::OfflineAccess => "keep access after you close the app (until you revoke it)".to_owned(),
        Scope::OpenId => "know who you are (your account id)".to_owned(),
        Scope::FhirUser => "know your FHIR record (Patient or Practitioner)".to_owned(),
        other => other.to_string(),
    }
}

fn consent_page(req: &AuthRequest, csrf: &str, error: Option<&str>, email: &str) -> String {
    let mut body = String::new();
    if let Some(e) = error {
        body.push_str(&format!("<p class=\"error\">{}</p>", escape(e)));
    }
    body.push_str(&format!("<p>The app <strong>{}</strong> asks to:</p><ul>", escape(&req.client.name)));
    for s in req.scope.iter() {
        body.push_str(&format!("<li>{} (<code>{}</code>)</li>", escape(&describe(s)), escape(&s.to_string())));
    }
    body.push_str("</ul><form method=\"post\" action=\"/oauth/authorize\">");
    let scope = req.scope.to_string();
    for (name, value) in [
        ("response_type", "code"),
        ("client_id", req.client.id.as_str()),
        ("redirect_uri", req.redirect_uri.as_str()),
        ("scope", scope.as_str()),
        ("state", req.state.as_str()),
        ("code_challenge", req.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("aud", req.aud.as_str()),
        ("csrf_token", csrf),
    ] {
        body.push_str(&format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value)));
    }
    if let Some(nonce) = &req.nonce {
        body.push_str(&format!("<input type=\"hidden\" name=\"nonce\" value=\"{}\">", escape(nonce)));
    }
    body.push_str(&format!(
        "<label>E-mail <input type=\"email\" name=\"email\" autocomplete=\"username\" required value=\"{}\"></label>\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>",
        escape(email)
    ));
    if req.scope.contains(&Scope::LaunchPatient) {
        body.push_str(
            "<label>Patient id (staff only; patients share their own record) \
             <input type=\"text\" name=\"patient\" autocomplete=\"off\"></label>",
        );
    }
    body.push_str(
        "<p><button type=\"submit\" name=\"decision\" value=\"allow\">Sign in and allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button></p></form>",
    );
    page("Sign in to share your health data", &body)
}

fn html(status: StatusCode, body: &str, cookie: Option<&str>) -> Response {
    let mut resp = (status, body.to_owned()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    resp
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `GET /oauth/authorize`: the login and consent page.
#[utoipa::path(get, path = "/oauth/authorize", tag = "SMART on FHIR",
    params(("response_type" = String, Query), ("client_id" = String, Query), ("redirect_uri" = String, Query), ("scope" = String, Query),
        ("state" = String, Query), ("code_challenge" = String, Query), ("code_challenge_method" = String, Query), ("aud" = String, Query)),
    responses((status = 200, description = "The sign-in and consent page", content_type = "text/html"),
        (status = 400, description = "Unknown client or unregistered redirect_uri (never redirects)", content_type = "text/html"),
        (status = 303, description = "Redirect back with `error=` for other invalid requests")))]
pub(crate) async fn authorize_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return html(StatusCode::BAD_REQUEST, &error_page(&e), None),
    };
    let req = match validate(&app, &headers, &params).await {
        Ok(r) => r,
        Err(r) => return refusal_response(r),
    };
    let csrf = hearth_auth::csrf::generate(&mut rng());
    let set_cookie = format!("{CSRF_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=1800");
    html(StatusCode::OK, &consent_page(&req, &csrf, None, ""), Some(&set_cookie))
}

/// Why the credentials on the form were refused (shown on the form again).
async fn check_credentials(app: &Arc<App>, email: &str, password: &str) -> Result<AccountRow, (StatusCode, String)> {
    let now = app.clock.now();
    let wrong = || (StatusCode::UNAUTHORIZED, "Wrong e-mail or password.".to_owned());
    let unavailable = || (StatusCode::SERVICE_UNAVAILABLE, "The server is busy; try again.".to_owned());
    let email = email.trim().to_lowercase();
    let account = identity::account_by_email(&*app.db, &email).await.map_err(|_| unavailable())?;
    let pw = password.to_owned();
    let Some(account) = account else {
        let app2 = Arc::clone(app);
        tokio::task::spawn_blocking(move || app2.auth.hasher.dummy_verify(&pw)).await.map_err(|_| unavailable())?;
        return Err(wrong());
    };
    if account.locked_until.is_some_and(|u| u > now.timestamp_millis()) {
        return Err((StatusCode::TOO_MANY_REQUESTS, "Too many failed sign-ins; try again later.".to_owned()));
    }
    let Some(stored) = account.password_hash.clone() else { return Err(wrong()) };
    let app2 = Arc::clone(app);
    let verified =
        tokio::task::spawn_blocking(move || app2.auth.hasher.verify(&pw, &PasswordHash::from_stored(stored)))
            .await
            .map_err(|_| unavailable())?;
    if verified.is_err() {
        let failures = identity::record_login_failure(&*app.db, &account.id).await.map_err(|_| unavailable())?;
        if failures >= LOCK_AFTER {
            let minutes = 1i64 << (failures - LOCK_AFTER).min(11);
            let until = now + TimeDelta::minutes(minutes.min(24 * 60));
            identity::lock_account(&*app.db, &account.id, until.timestamp_millis()).await.map_err(|_| unavailable())?;
        }
        return Err(wrong());
    }
    identity::record_login_success(&*app.db, &account.id).await.map_err(|_| unavailable())?;
    if account.totp_enabled {
        return Err((
            StatusCode::FORBIDDEN,
            "This account uses two-factor authentication, which app sign-in does not support yet.".to_owned(),
        ));
    }
    Ok(account)
}

/// The launch patient: a patient's own record, or a Patient id a staff user may reach.
async fn launch_patient(
    app: &App,
    account: &AccountRow,
    role: Role,
    field: Option<&str>,
) -> Result<String, (StatusCode, String)> {
    let unavailable = || (StatusCode::SERVICE_UNAVAILABLE, "The server is busy; try again.".to_owned());
    if role == Role::Patient {
        return account
            .fhir_user
            .as_deref()
            .and_then(|u| u.strip_prefix("Patient/"))
            .map(str::to_owned)
            .ok_or((StatusCode::FORBIDDEN, "This account is not linked to a patient record.".to_owned()));
    }
    let Some(id) = field.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err((StatusCode::BAD_REQUEST, "Enter the id of the patient the app should open.".to_owned()));
    };
    if !hearth_workflow::fhir::valid_id(id) {
        return Err((StatusCode::BAD_REQUEST, "That is not a valid Patient id.".to_owned()));
    }
    let claims = probe_claims(account, role);
    let (_, access) = super::access_for(app, &app.auth, account, role, &claims).await.map_err(|_| unavailable())?;
    let ok = access.reach == hearth_store::Reach::All
        || app.store.in_reach(&access, "Patient", id).await.map_err(|_| unavailable())?;
    if ok {
        Ok(id.to_owned())
    } else {
        Err((StatusCode::FORBIDDEN, "You may not open that patient's record.".to_owned()))
    }
}

/// `POST /oauth/authorize`: the submitted login and consent form.
#[utoipa::path(post, path = "/oauth/authorize", tag = "SMART on FHIR",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "The page's form: credentials, CSRF token, patient choice, approve or deny"),
    responses((status = 303, description = "Redirect to the app with `code` and `state` (or `error=access_denied`)"),
        (status = 200, description = "The page again with an error (wrong password, patient not reachable)", content_type = "text/html")))]
pub(crate) async fn authorize_submit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let params = match Params::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return html(StatusCode::BAD_REQUEST, &error_page(&e), None),
    };
    let req = match validate(&app, &headers, &params).await {
        Ok(r) => r,
        Err(r) => return refusal_response(r),
    };
    let csrf = params.get("csrf_token").unwrap_or("");
    if hearth_auth::csrf::verify(Some(csrf), cookie(&headers, CSRF_COOKIE).as_deref()).is_err() {
        return html(
            StatusCode::BAD_REQUEST,
            &error_page("This sign-in form has expired or was not sent from this server; start again from the app."),
            None,
        );
    }
    if params.get("decision") == Some("deny") {
        return redirect_to(
            &req.redirect_uri,
            &[("error", "access_denied"), ("error_description", "the user denied access"), ("state", &req.state)],
        );
    }
    let email = params.get("email").unwrap_or("");
    let retry = |status: StatusCode, message: &str| html(status, &consent_page(&req, csrf, Some(message), email), None);
    let account = match check_credentials(&app, email, params.get("password").unwrap_or("")).await {
        Ok(a) => a,
        Err((status, message)) => return retry(status, &message),
    };
    let Ok(role) = account.role.parse::<Role>() else {
        return retry(StatusCode::FORBIDDEN, "This account cannot sign in to apps.");
    };
    let patient = if req.scope.contains(&Scope::LaunchPatient) {
        match launch_patient(&app, &account, role, params.get("patient")).await {
            Ok(p) => Some(p),
            Err((status, message)) => return retry(status, &message),
        }
    } else {
        None
    };
    let code = random_token();
    let now = app.clock.now();
    let row = CodeRow {
        hash: sha256_hex(&code),
        client_id: req.client.id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.challenge.clone(),
        scope: req.scope.to_string(),
        account_id: account.id.clone(),
        patient,
        nonce: req.nonce.clone(),
        expires_at: (now + CODE_TTL).timestamp_millis(),
        used: false,
        family: None,
        created_at: now.timestamp_millis(),
    };
    // Spent and expired codes are kept a day (a replay within it still revokes), then purged.
    let purged = oauth::purge_codes(&*app.db, (now - TimeDelta::days(1)).timestamp_millis()).await;
    if let Err(e) = oauth::insert_code(&*app.db, &row).await.and(purged.map(|_| ())) {
        tracing::error!(error = %e, "storing an authorization code failed");
        return html(StatusCode::SERVICE_UNAVAILABLE, &error_page("The server is busy; try again."), None);
    }
    tracing::info!(client_id = %req.client.id, account = %account.id, "authorization code issued");
    redirect_to(&req.redirect_uri, &[("code", &code), ("state", &req.state)])
}

// ---------------------------------------------------------------------------------------------
// The token endpoint

/// An RFC 6749 §5.2 error.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

/// The body of an RFC 6749 §5.2 error (the token endpoint's own format, not the app API's envelope).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "invalid_grant", "error_description": "the code is not valid"}))]
struct OAuthErrorBody<'a> {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client` or `unsupported_grant_type`.
    error: &'a str,
    /// What went wrong, for the developer.
    error_description: &'a str,
}

fn oauth_error(error: &'static str, description: impl Into<String>) -> OAuthError {
    let status = if error == "invalid_client" { StatusCode::UNAUTHORIZED } else { StatusCode::BAD_REQUEST };
    OAuthError { status, error, description: description.into() }
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// What the token endpoint answers with when it fails.
enum TokenFailure {
    OAuth(OAuthError),
    /// A server-side failure (logged by `ApiError`).
    Server(ApiError),
}

impl From<OAuthError> for TokenFailure {
    fn from(e: OAuthError) -> Self {
        TokenFailure::OAuth(e)
    }
}

impl From<ApiError> for TokenFailure {
    fn from(e: ApiError) -> Self {
        if e.status.is_server_error() {
            TokenFailure::Server(e)
        } else if e.code == "invalid_grant" {
            TokenFailure::OAuth(oauth_error("invalid_grant", e.message))
        } else {
            TokenFailure::OAuth(oauth_error("invalid_request", e.message))
        }
    }
}

impl From<hearth_store::StoreError> for TokenFailure {
    fn from(e: hearth_store::StoreError) -> Self {
        TokenFailure::from(ApiError::from(e))
    }
}

impl IntoResponse for TokenFailure {
    fn into_response(self) -> Response {
        match self {
            TokenFailure::Server(e) => no_store(e.into_response()),
            TokenFailure::OAuth(e) => {
                let mut resp = (e.status, Json(OAuthErrorBody { error: e.error, error_description: &e.description }))
                    .into_response();
                if e.status == StatusCode::UNAUTHORIZED {
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hearth\""));
                }
                no_store(resp)
            }
        }
    }
}

fn form_decode(text: &str) -> String {
    form_urlencoded::parse(format!("v={text}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Authenticates the client (RFC 6749 §2.3): HTTP Basic or form fields for confidential clients,
/// `client_id` alone for public ones.
async fn authenticate_client(app: &App, headers: &HeaderMap, p: &Params) -> Result<ClientRow, TokenFailure> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| oauth_error("invalid_client", "malformed Authorization header"))?;
            let Some((scheme, creds)) = v.split_once(' ') else {
                return Err(oauth_error("invalid_client", "malformed Authorization header").into());
            };
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(oauth_error("invalid_client", "use HTTP Basic client authentication").into());
            }
            let decoded = data_encoding::BASE64
                .decode(creds.trim().as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| oauth_error("invalid_client", "malformed Basic credentials"))?;
            let (id, secret) =
                decoded.split_once(':').ok_or_else(|| oauth_error("invalid_client", "malformed Basic credentials"))?;
            Some((form_decode(id), form_decode(secret)))
        }
    };
    let (id, secret) = match basic {
        Some((id, secret)) => {
            if p.get("client_secret").is_some() {
                return Err(oauth_error("invalid_request", "use one client authentication method, not two").into());
            }
            if p.get("client_id").is_some_and(|form_id| form_id != id) {
                return Err(oauth_error("invalid_client", "client_id does not match the Basic credentials").into());
            }
            (id, Some(secret))
        }
        None => {
            let Some(id) = p.get("client_id") else {
                return Err(oauth_error("invalid_client", "client authentication is required").into());
            };
            (id.to_owned(), p.get("client_secret").map(str::to_owned))
        }
    };
    let Some(client) = oauth::client_by_id(&*app.db, &id).await? else {
        return Err(oauth_error("invalid_client", "unknown client or wrong secret").into());
    };
    if client.confidential {
        let ok = match (&secret, &client.secret_hash) {
            (Some(s), Some(h)) => ct_eq(&sha256_hex(s), h),
            _ => false,
        };
        if !ok {
            return Err(oauth_error("invalid_client", "unknown client or wrong secret").into());
        }
    }
    Ok(client)
}

/// `POST /oauth/token`.
#[utoipa::path(post, path = "/oauth/token", tag = "SMART on FHIR",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "grant_type=authorization_code (code, redirect_uri, code_verifier, client_id) or refresh_token; confidential clients authenticate with HTTP Basic or client_secret"),
    responses((status = 200, description = "Tokens with `scope`, `patient` for launch/patient, and an OpenID Connect `id_token` for openid", body = super::routes::TokenResponse),
        (status = 400, description = "RFC 6749 error (`invalid_grant`, `invalid_request`, …)", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`", body = OAuthErrorBody)))]
pub(crate) async fn token(State(app): State<Arc<App>>, headers: HeaderMap, bytes: axum::body::Bytes) -> Response {
    match token_inner(&app, &headers, &bytes).await {
        Ok(body) => no_store(Json(body).into_response()),
        Err(e) => e.into_response(),
    }
}

async fn token_inner(app: &Arc<App>, headers: &HeaderMap, bytes: &[u8]) -> Result<Value, TokenFailure> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(oauth_error("invalid_request", "send the request as application/x-www-form-urlencoded").into());
    }
    let p = Params::parse(bytes).map_err(|e| oauth_error("invalid_request", e))?;
    if p.get("grant_type") == Some("client_credentials") {
        return client_credentials(app, headers, &p).await;
    }
    let client = authenticate_client(app, headers, &p).await?;
    match p.get("grant_type") {
        Some("authorization_code") => {
            let issuer = crate::fhir::http::base_url(app, headers);
            code_grant(app, &issuer, &client, &p).await
        }
        Some("refresh_token") => {
            let Some(presented) = p.get("refresh_token") else {
                return Err(oauth_error("invalid_request", "refresh_token is required").into());
            };
            Ok(refresh_with(app, presented, Some(&client.id)).await?)
        }
        Some(_) => {
            Err(oauth_error("unsupported_grant_type", "use authorization_code, refresh_token or client_credentials")
                .into())
        }
        None => Err(oauth_error("invalid_request", "grant_type is required").into()),
    }
}

async fn code_grant(app: &Arc<App>, issuer: &str, client: &ClientRow, p: &Params) -> Result<Value, TokenFailure> {
    let (Some(code), Some(redirect_uri), Some(verifier)) =
        (p.get("code"), p.get("redirect_uri"), p.get("code_verifier"))
    else {
        return Err(oauth_error("invalid_request", "code, redirect_uri and code_verifier are required").into());
    };
    let invalid = |msg: &str| TokenFailure::from(oauth_error("invalid_grant", msg));
    let hash = sha256_hex(code);
    let Some(row) = oauth::code_by_hash(&*app.db, &hash).await? else {
        return Err(invalid("the authorization code is not valid"));
    };
    if row.client_id != client.id {
        return Err(invalid("the authorization code was issued to another client"));
    }
    // Spend the code before anything else: one exchange at most, whatever its outcome.
    if !oauth::mark_code_used(&*app.db, &hash).await? {
        if let Some(family) = &row.family {
            identity::revoke_family(&*app.db, family).await?;
        }
        tracing::warn!(client_id = %client.id, "authorization code replayed; tokens issued from it are revoked");
        return Err(invalid("the authorization code was already used"));
    }
    let now = app.clock.now();
    if row.expires_at <= now.timestamp_millis() {
        return Err(invalid("the authorization code has expired"));
    }
    if row.redirect_uri != redirect_uri {
        return Err(invalid("redirect_uri does not match the authorization request"));
    }
    pkce::verify_s256(&row.code_challenge, verifier).map_err(|e| invalid(&e.to_string()))?;
    let Some(account) = identity::account_by_id(&*app.db, &row.account_id).await? else {
        return Err(invalid("the account no longer exists"));
    };
    let role: Role = account.role.parse().map_err(|_| invalid("the account cannot use apps"))?;
    let scope = ScopeSet::parse_lenient(&row.scope).0;
    let mut out = if scope.contains(&Scope::OfflineAccess) {
        let family = FamilyId::generate(&mut rng());
        oauth::insert_family(&*app.db, family.as_str(), &client.id, now.timestamp_millis()).await?;
        oauth::set_code_family(&*app.db, &hash, family.as_str()).await?;
        issue_tokens(app, &account, role, row.scope.clone(), row.patient.clone(), Some(family), Some(&client.id), now)
            .await?
    } else {
        access_answer(app, &account, role, &row.scope, row.patient.as_deref(), Some(&client.id), now)?
    };
    if scope.contains(&Scope::OpenId) {
        let id_token = id_token(app, issuer, client, &account, &scope, row.nonce.as_deref(), now)?;
        if let Some(o) = out.as_object_mut() {
            o.insert("id_token".into(), json!(id_token));
        }
    }
    Ok(out)
}

/// An OpenID Connect ID token for the signed-in user: `sub` is the account, `aud` the client,
/// and with `fhirUser` granted, the user's FHIR resource as an absolute URL (SMART App Launch).
fn id_token(
    app: &App,
    issuer: &str,
    client: &ClientRow,
    account: &AccountRow,
    scope: &ScopeSet,
    nonce: Option<&str>,
    now: DateTime<Utc>,
) -> Result<String, TokenFailure> {
    let mut claims = json!({
        "iss": issuer,
        "sub": account.id,
        "aud": client.id,
        "iat": now.timestamp(),
        "exp": (now + hearth_auth::token::DEFAULT_TTL).timestamp(),
    });
    if let Some(o) = claims.as_object_mut() {
        if let Some(n) = nonce {
            o.insert("nonce".into(), json!(n));
        }
        if scope.contains(&Scope::FhirUser)
            && let Some(user) = &account.fhir_user
        {
            o.insert("fhirUser".into(), json!(format!("{issuer}/{user}")));
        }
    }
    let token = app.auth.keys().sign_id_token(&claims).map_err(|e| TokenFailure::Server(ApiError::internal(e)))?;
    Ok(token.expose().clone())
}

// ---------------------------------------------------------------------------------------------
// SMART Backend Services, token introspection (RFC 7662) and revocation (RFC 7009)

/// How long a JWK Set fetched from a client's `jwks_uri` is used before it is fetched again.
const JWKS_TTL_MS: i64 = 5 * 60 * 1000;

/// The client's JWK Set: registered by value, or fetched from its `jwks_uri` (cached).
async fn client_jwks(app: &App, client_id: &str) -> Result<Arc<Value>, TokenFailure> {
    let refuse = |why: &str| TokenFailure::from(oauth_error("invalid_client", why));
    let Some((jwks, uri)) = oauth::client_keys(&*app.db, client_id).await? else {
        return Err(refuse("this client has no registered keys (it is not a backend service)"));
    };
    if let Some(j) = jwks {
        return serde_json::from_str(&j).map(Arc::new).map_err(|_| refuse("the registered JWK Set is not JSON"));
    }
    let uri = uri.ok_or_else(|| refuse("this client has no registered keys"))?;
    let now = app.clock.now().timestamp_millis();
    let cached = app.auth.jwks_cache.lock().ok().and_then(|m| m.get(&uri).cloned());
    if let Some((at, set)) = cached
        && now - at < JWKS_TTL_MS
    {
        return Ok(set);
    }
    let http = hearth_notify::http::Http::new(std::time::Duration::from_secs(5)).map_err(ApiError::internal)?;
    let resp = http
        .send(axum::http::Method::GET, &uri, &[("accept", "application/json".to_owned())], Vec::new())
        .await
        .map_err(|_| refuse("the client's jwks_uri could not be fetched"))?;
    let set: Value = serde_json::from_slice(&resp.body)
        .ok()
        .filter(|_| resp.status == 200)
        .ok_or_else(|| refuse("the client's jwks_uri did not answer a JWK Set"))?;
    let set = Arc::new(set);
    if let Ok(mut m) = app.auth.jwks_cache.lock() {
        if m.len() >= 256 {
            m.clear();
        }
        m.insert(uri, (now, Arc::clone(&set)));
    }
    Ok(set)
}

/// `grant_type=client_credentials` with a `private_key_jwt` assertion (SMART Backend Services):
/// an access token for the client itself with the `system/` scopes requested that it may have.
async fn client_credentials(app: &Arc<App>, headers: &HeaderMap, p: &Params) -> Result<Value, TokenFailure> {
    if p.get("client_assertion_type") != Some(hearth_auth::assertion::JWT_BEARER) {
        return Err(oauth_error(
            "invalid_client",
            "client_credentials needs a private_key_jwt client assertion (client_assertion_type jwt-bearer)",
        )
        .into());
    }
    let Some(jwt) = p.get("client_assertion") else {
        return Err(oauth_error("invalid_request", "client_assertion is required").into());
    };
    let Some(id) = hearth_auth::assertion::issuer(jwt) else {
        return Err(oauth_error("invalid_client", "the client assertion names no issuer").into());
    };
    if p.get("client_id").is_some_and(|c| c != id) {
        return Err(oauth_error("invalid_client", "client_id does not match the client assertion").into());
    }
    let Some(client) = oauth::client_by_id(&*app.db, &id).await? else {
        return Err(oauth_error("invalid_client", "unknown client").into());
    };
    let jwks = client_jwks(app, &client.id).await?;
    let endpoint = format!("{}/oauth/token", origin(app, headers));
    let now = app.clock.now();
    let verified = hearth_auth::assertion::verify(jwt, &jwks, &client.id, &endpoint, now)
        .map_err(|e| oauth_error("invalid_client", e.to_string()))?;
    let (exp, at) = (verified.exp.timestamp_millis(), now.timestamp_millis());
    if !oauth::spend_assertion_jti(&*app.db, &client.id, &verified.jti, exp, at).await? {
        tracing::warn!(client_id = %client.id, "client assertion replayed");
        return Err(oauth_error("invalid_client", "this client assertion (its jti) was used before").into());
    }
    let Some(requested) = p.get("scope") else {
        return Err(oauth_error("invalid_request", "scope is required").into());
    };
    let allowed = ScopeSet::parse_lenient(&client.scope).0;
    let (wanted, _) = ScopeSet::parse_lenient_with(requested, &|t| app.model.is_resource_type(t));
    let mut granted = ScopeSet::default();
    for s in wanted.iter() {
        if matches!(s, Scope::Clinical(c) if c.context == ScopeContext::System) && covered(&allowed, s) {
            granted.insert(s.clone());
        }
    }
    if granted.is_empty() {
        return Err(
            oauth_error("invalid_scope", "none of the requested scopes is a system/ scope of this client").into()
        );
    }
    let account = super::service_account(&client.id);
    Ok(access_answer(app, &account, Role::Clinician, &granted.to_string(), None, Some(&client.id), now)?)
}

/// The claims of a token this server signed that is still good: not expired, not revoked, its
/// subject (account or client) still there.
async fn live_claims(app: &App, token: &str) -> Result<Option<hearth_auth::token::AccessClaims>, ApiError> {
    let Ok(claims) = app.auth.keys().verify(&app.auth.settings, token, app.clock.now()) else { return Ok(None) };
    if oauth::is_revoked(&*app.db, &claims.jti).await? {
        return Ok(None);
    }
    let exists = match claims.sub.strip_prefix(super::CLIENT_SUBJECT) {
        Some(client) => oauth::client_by_id(&*app.db, client).await?.is_some(),
        None => identity::account_by_id(&*app.db, &claims.sub).await?.is_some(),
    };
    Ok(exists.then_some(claims))
}

/// `POST /oauth/introspect` (RFC 7662), for an authenticated caller (a bearer token): whether
/// `token` is active and, when it is, what it grants; `{"active": false}` for anything else.
#[utoipa::path(post, path = "/oauth/introspect", tag = "SMART on FHIR",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token=<access token>"),
    responses(
        (status = 200, description = "`active` and, for an active token, scope, client_id, sub, exp, iat, iss, token_type, patient, fhirUser", body = Object),
        (status = 400, description = "No `token` parameter (`invalid_request`)", body = Object),
        (status = 401, description = "The caller's own bearer token is missing or invalid (`unauthenticated`)", body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub(crate) async fn introspect(
    State(app): State<Arc<App>>,
    hearth_workflow::TokenCaller(_caller): hearth_workflow::TokenCaller,
    bytes: axum::body::Bytes,
) -> Response {
    let p = match Params::parse(&bytes) {
        Ok(p) => p,
        Err(e) => return TokenFailure::from(oauth_error("invalid_request", e)).into_response(),
    };
    let Some(token) = p.get("token") else {
        return TokenFailure::from(oauth_error("invalid_request", "token is required")).into_response();
    };
    let claims = match live_claims(&app, token).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let body = match claims {
        None => json!({"active": false}),
        Some(c) => {
            let mut out = json!({"active": true, "scope": c.scope, "sub": c.sub, "exp": c.exp, "iat": c.iat,
                "iss": c.iss, "token_type": "Bearer"});
            for (k, v) in [("client_id", c.client_id), ("patient", c.patient), ("fhirUser", c.fhir_user)] {
                if let (Some(v), Some(o)) = (v, out.as_object_mut()) {
                    o.insert(k.into(), json!(v));
                }
            }
            out
        }
    };
    no_store(Json(body).into_response())
}

/// `POST /oauth/revoke` (RFC 7009): revokes a SMART access token (one issued to a client) until
/// it would expire; answers `200` whatever the token was, so nothing is learnt from it.
#[utoipa::path(post, path = "/oauth/revoke", tag = "SMART on FHIR",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token=<access token>"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "No `token` parameter (`invalid_request`)", body = Object)))]
pub(crate) async fn revoke(State(app): State<Arc<App>>, bytes: axum::body::Bytes) -> Response {
    let Some(token) = Params::parse(&bytes).ok().and_then(|p| p.get("token").map(str::to_owned)) else {
        return TokenFailure::from(oauth_error("invalid_request", "token is required")).into_response();
    };
    let now = app.clock.now();
    if let Ok(Some(c)) = live_claims(&app, &token).await
        && c.client_id.is_some()
        && let Err(e) = oauth::revoke_token(&*app.db, &c.jti, c.exp.saturating_mul(1000), now.timestamp_millis()).await
    {
        return ApiError::from(e).into_response();
    }
    no_store(StatusCode::OK.into_response())
}

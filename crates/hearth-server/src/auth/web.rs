//! Abuse protection and browser plumbing at the edge: rate limits, the client address, cookies
//! and the CSRF double submit, CORS and security headers.
//!
//! Rate limits are GCRA token buckets ([`RateLimiter`]) in a map **per process**: with several
//! processes behind a load balancer each enforces its own budget (the effective limit is
//! multiplied by the process count). They run on the monotonic clock, not the app clock, so a
//! pinned test clock neither freezes nor resets them. Limits in force:
//!
//! | what | key | budget |
//! |---|---|---|
//! | every request under `/fhir` and `/api` | the token's subject (and OAuth client), else the client IP | a bucket of `auth.api_burst` (default: the rate) refilled at `auth.api_requests_per_minute` (1,200); `auth.client_limits."<client>"` for an OAuth client's tokens |
//! | `login`, `otp/request`, `otp/verify`, `refresh` | client IP, and account (e-mail, phone or account id) | `auth.auth_attempts_per_minute` (20) each |
//! | `otp/request` | the destination | 5 per 15 minutes |
//!
//! The client IP is the TCP peer: behind a reverse proxy every client shares the proxy's
//! budget (forwarded headers are not trusted).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::config::Config;
use crate::error::{ApiError, FhirError, Issue};

pub use super::limits::{Limits, RateLimiter};

fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// `429 rate_limited` with `Retry-After`.
pub fn too_many(wait: Duration) -> ApiError {
    let secs = retry_secs(wait).max(1);
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; try again in {secs} s"),
    );
    e.retry_after = Some(secs);
    e
}

/// Checks every key against the auth limiter (all are counted; the first refusal wins).
pub fn check_auth(app: &App, keys: &[String]) -> Result<(), ApiError> {
    let mut worst: Option<Duration> = None;
    for key in keys {
        if let Err(wait) = app.limits.auth.check(key) {
            worst = Some(worst.map_or(wait, |w| w.max(wait)));
        }
    }
    worst.map_or(Ok(()), |w| Err(too_many(w)))
}

/// The TCP peer's address, or `unknown` when the server was not started with connect info.
pub use hearth_workflow::client_ip;

/// The general API limit (per user, else per IP).
pub async fn api_limit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let limited = path.starts_with("/fhir") || path.starts_with("/api/");
    if !limited || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let claims = app.auth.token_claims(req.headers(), app.clock.now());
    let client = claims.as_ref().and_then(|c| c.client_id.as_deref());
    let key = match (&claims, client) {
        (Some(c), Some(client)) => format!("user:{}|client:{client}", c.sub),
        (Some(c), None) => format!("user:{}", c.sub),
        (None, _) => format!("ip:{}", client_ip(req.extensions())),
    };
    match app.limits.api_for(client).check(&key) {
        Ok(()) => next.run(req).await,
        Err(wait) if path.starts_with("/fhir") => {
            let secs = retry_secs(wait).max(1);
            let mut resp = FhirError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Issue::error("throttled", format!("too many requests; try again in {secs} s")),
            )
            .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
        Err(wait) => too_many(wait).into_response(),
    }
}

/// The API reference page: its script and styles are files of this server (`/api/docs/docs.js`,
/// `/api/docs/docs.css`), never inline; its "try it" calls this origin only.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every response; HSTS when the public base URL is https.
pub async fn security_headers(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let docs = req.uri().path() == "/api/docs";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A page that brings its own policy (the web screens, hearth_web::PAGE_CSP) keeps it.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(if docs { DOCS_CSP } else { API_CSP }));
    }
    if app.config.base_url.as_deref().is_some_and(|b| b.starts_with("https://")) {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    resp
}

/// The CORS layer for the configured allow-list (`None`: no cross-origin access at all).
pub fn cors(config: &Config) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if config.auth.cors_allowed_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> =
        config.auth.cors_allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let allow = [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        HeaderName::from_static("if-none-exist"),
        HeaderName::from_static("prefer"),
        HeaderName::from_static(hearth_auth::csrf::HEADER_NAME),
    ];
    let expose = [
        header::LOCATION,
        header::ETAG,
        header::CONTENT_LOCATION,
        header::LAST_MODIFIED,
        header::RETRY_AFTER,
        HeaderName::from_static("x-request-id"),
    ];
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers(allow)
            .expose_headers(expose)
            .allow_credentials(true)
            .max_age(Duration::from_secs(600)),
    )
}

/// The refresh-token cookie of browser sessions (sent only to the auth endpoints).
pub const REFRESH_COOKIE: &str = "__Secure-hearth-refresh";
const REFRESH_MAX_AGE: i64 = 7 * 24 * 3600;

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// The double-submit check for a request authenticated by cookie: `403 csrf_failed` unless the
/// `X-CSRF-Token` header repeats the CSRF cookie.
pub fn require_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let header_value = headers.get(hearth_auth::csrf::HEADER_NAME).and_then(|v| v.to_str().ok());
    let cookie_value = cookie(headers, hearth_auth::csrf::COOKIE_NAME);
    hearth_auth::csrf::verify(header_value, cookie_value.as_deref()).map_err(|e| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            format!("{e}: send the {} cookie's value as X-CSRF-Token", hearth_auth::csrf::COOKIE_NAME),
        )
    })
}

fn set_cookie(resp: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Sets the refresh cookie (HttpOnly) and a fresh CSRF cookie (readable by the page's script).
pub fn set_session_cookies(resp: &mut Response, refresh_token: &str, csrf: &str) {
    set_cookie(
        resp,
        format!(
            "{REFRESH_COOKIE}={refresh_token}; Path=/api/v1/auth; Max-Age={REFRESH_MAX_AGE}; HttpOnly; Secure; SameSite=Strict"
        ),
    );
    set_cookie(
        resp,
        format!(
            "{}={csrf}; Path=/; Max-Age={REFRESH_MAX_AGE}; Secure; SameSite=Strict",
            hearth_auth::csrf::COOKIE_NAME
        ),
    );
}

/// Expires both session cookies.
pub fn clear_session_cookies(resp: &mut Response) {
    set_cookie(resp, format!("{REFRESH_COOKIE}=; Path=/api/v1/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict"));
    set_cookie(resp, format!("{}=; Path=/; Max-Age=0; Secure; SameSite=Strict", hearth_auth::csrf::COOKIE_NAME));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_refuses_with_the_wait() {
        let l = RateLimiter::new(3, Duration::from_secs(60));
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(l.check("b").is_ok(), "keys are independent");
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; __Secure-hearth-refresh=xyz"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, REFRESH_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}

//! The web (issue 24): the clinic's screens at `/` and the patient's app at `/app`, served by the
//! binary with every asset embedded.
//!
//! Decisions (docs/WEB.md has the reasons):
//! - Pages are server-rendered HTML written in Rust with one escaping helper, no template engine;
//!   texts come from Fluent catalogues in English and Hindi ([`i18n`]). A page holds no record:
//!   one hand-written script (`assets/web.js`) signs in through the app API's cookie mode and
//!   fills the page by calling the same app API every client uses, so authorization, audit and
//!   business rules stay in the workflow crates.
//! - Every page has a Content Security Policy without `'unsafe-inline'`: scripts and styles are
//!   files of this server; the page's texts travel as a JSON data block the script parses.
//! - The language is `?lang=` (remembered in the `hearth-lang` cookie), else that cookie, else the
//!   browser's `Accept-Language`, else English.
//! - The patient's app is a PWA: a manifest and a service worker (`/app/sw.js`, scope `/app`)
//!   that keeps the shell and the last answers of the API's reads for offline reading; signing
//!   out empties that cache.

#![forbid(unsafe_code)]

pub mod i18n;
pub mod page;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hearth_workflow::{Mount, Workflow};
use serde_json::json;

pub use i18n::{Catalogue, CatalogueError, Lang};

/// The policy of every page: nothing inline, nothing from another origin.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; manifest-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// The cookie that remembers the chosen language (not a secret; readable by the page).
pub const LANG_COOKIE: &str = "hearth-lang";

/// The web's state: the catalogues, parsed once.
pub struct Web {
    catalogue: Catalogue,
}

impl Web {
    pub fn new() -> Result<Web, CatalogueError> {
        Ok(Web { catalogue: Catalogue::load()? })
    }
}

impl Workflow for Web {
    fn mount(self: Arc<Self>) -> Mount {
        let pages = Router::new()
            .route("/", get(home))
            .route("/signin", get(sign_in))
            .route("/patients/{id}", get(chart))
            .route("/intake/{id}", get(intake))
            .route("/alerts", get(alerts))
            .route("/admin", get(admin))
            .route("/app", get(app))
            .route("/app/", get(app))
            .route("/app/manifest.webmanifest", get(manifest))
            .route("/app/sw.js", get(service_worker))
            .route("/web/web.js", get(script))
            .route("/web/app.css", get(style))
            .route("/web/icon.svg", get(icon))
            .with_state(self);
        Mount { refusals_audited: pages, openapi: <ApiDoc as utoipa::OpenApi>::openapi(), ..Mount::default() }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(home))]
struct ApiDoc;

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// `?lang=` from a raw query string.
fn lang_param(query: Option<&str>) -> Option<Lang> {
    query?.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == "lang").map(|(_, v)| Lang::parse(v))
}

/// The page's language and, when `?lang=` chose it, the cookie that remembers the choice.
fn language(headers: &HeaderMap, query: Option<&str>) -> (Lang, Option<HeaderValue>) {
    if let Some(lang) = lang_param(query) {
        let set =
            HeaderValue::from_str(&format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax", lang.as_str()))
                .ok();
        return (lang, set);
    }
    if let Some(c) = cookie(headers, LANG_COOKIE) {
        return (Lang::parse(c), None);
    }
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let first = accept.split(',').next().unwrap_or("").split(';').next().unwrap_or("").trim();
    (Lang::parse(first), None)
}

fn html(body: String, set_lang: Option<HeaderValue>) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Language, Cookie"));
    if let Some(c) = set_lang {
        h.insert(header::SET_COOKIE, c);
    }
    r
}

/// The front door: the clinic's screen for a browser; for a client that asks for JSON, what this
/// server is and where its APIs are.
#[utoipa::path(get, path = "/", tag = "documentation",
    responses((status = 200, description = "The clinic's screen (HTML), or with `Accept: application/json` links to the FHIR API, its capabilities, the app API reference and health checks", body = Object,
        example = json!({"name": "Hearth", "version": "0.1.0", "fhir": "/fhir", "capabilities": "/fhir/metadata", "api_docs": "/api/docs", "openapi": "/api/openapi.json", "health": "/healthz", "clinic": "/", "patient_app": "/app"}))))]
async fn home(State(web): State<Arc<Web>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    if wants_json {
        return axum::Json(json!({
            "name": "Hearth",
            "version": env!("CARGO_PKG_VERSION"),
            "fhir": "/fhir",
            "capabilities": "/fhir/metadata",
            "api_docs": "/api/docs",
            "openapi": "/api/openapi.json",
            "health": "/healthz",
            "clinic": "/",
            "patient_app": "/app",
        }))
        .into_response();
    }
    let (lang, set) = language(&headers, query.as_deref());
    html(page::clinic(&web.catalogue, lang), set)
}

async fn sign_in(State(web): State<Arc<Web>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (lang, set) = language(&headers, query.as_deref());
    html(page::sign_in(&web.catalogue, lang), set)
}

/// Ids as the store makes them (UUIDs) or as FHIR allows (`[A-Za-z0-9.-]{1,64}`).
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

async fn chart(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !is_fhir_id(&id) {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    }
    let (lang, set) = language(&headers, query.as_deref());
    html(page::chart(&web.catalogue, lang, &id), set)
}

async fn intake(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !is_fhir_id(&id) {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    }
    let (lang, set) = language(&headers, query.as_deref());
    html(page::intake(&web.catalogue, lang, &id), set)
}

async fn alerts(State(web): State<Arc<Web>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (lang, set) = language(&headers, query.as_deref());
    html(page::alerts(&web.catalogue, lang), set)
}

async fn admin(State(web): State<Arc<Web>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (lang, set) = language(&headers, query.as_deref());
    html(page::admin(&web.catalogue, lang), set)
}

async fn app(State(web): State<Arc<Web>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (lang, set) = language(&headers, query.as_deref());
    html(page::app(&web.catalogue, lang), set)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load: a new binary's assets are seen at once (they are small).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../assets/web.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("../assets/app.css"))
}

async fn icon() -> Response {
    asset("image/svg+xml", include_str!("../assets/icon.svg"))
}

async fn manifest() -> Response {
    asset("application/manifest+json", include_str!("../assets/manifest.webmanifest"))
}

/// Served at `/app/sw.js`, whose default scope would be `/app/`: the header lets it control
/// `/app` itself too.
async fn service_worker() -> Response {
    let mut r = asset("text/javascript; charset=utf-8", include_str!("../assets/sw.js"));
    r.headers_mut().insert("service-worker-allowed", HeaderValue::from_static("/app"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_the_query_then_the_cookie_then_the_browser() {
        let mut h = HeaderMap::new();
        assert_eq!(language(&h, None).0, Lang::En);
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("hi-IN,hi;q=0.9,en;q=0.8"));
        assert_eq!(language(&h, None).0, Lang::Hi);
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; hearth-lang=en"));
        assert_eq!(language(&h, None).0, Lang::En);
        let (lang, set) = language(&h, Some("x=1&lang=hi"));
        assert_eq!(lang, Lang::Hi);
        assert!(set.unwrap().to_str().unwrap().starts_with("hearth-lang=hi; Path=/"));
    }

    #[test]
    fn chart_ids_are_fhir_ids() {
        assert!(is_fhir_id("0193b2c4-7d1e-7a00-8000-000000000001"));
        assert!(!is_fhir_id("") && !is_fhir_id("a/b") && !is_fhir_id("<x>") && !is_fhir_id(&"a".repeat(65)));
    }

    #[test]
    fn the_policy_allows_nothing_inline() {
        assert!(!PAGE_CSP.contains("unsafe"));
        assert!(PAGE_CSP.contains("script-src 'self'") && PAGE_CSP.contains("style-src 'self'"));
    }
}

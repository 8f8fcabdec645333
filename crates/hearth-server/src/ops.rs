//! Operational and documentation endpoints: liveness, readiness, Prometheus metrics, and the
//! OpenAPI description of the non-FHIR API (rendered without any CDN); and the background
//! keeper of the database planner's statistics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use utoipa::OpenApi;

use crate::app::App;
use crate::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hearth app API",
        description = "The non-FHIR surface of Hearth. The FHIR R4 API lives under /fhir and is described by GET /fhir/metadata."
    ),
    paths(
        healthz, readyz, metrics, openapi_json, docs, docs_script, docs_style,
        crate::auth::routes::register, crate::auth::routes::login, crate::auth::routes::refresh_token,
        crate::auth::routes::logout, crate::auth::routes::me, crate::auth::routes::create_account,
        crate::auth::routes::grant_caregiver, crate::auth::routes::jwks, crate::auth::routes::list_accounts,
        crate::auth::routes::admin_reset_totp,
        crate::auth::mfa::enroll, crate::auth::mfa::confirm, crate::auth::mfa::disable,
        crate::auth::otp::request, crate::auth::otp::verify,
        crate::auth::phone::send, crate::auth::phone::verify,
        crate::auth::smart::configuration, crate::auth::smart::authorize_page, crate::auth::smart::authorize_submit,
        crate::auth::smart::token, crate::auth::smart::create_client, crate::auth::smart::list_clients,
        crate::auth::smart::delete_client, crate::auth::smart::introspect, crate::auth::smart::revoke,
    ),
    components(schemas(ErrorEnvelope, hearth_workflow::openapi::FhirResource)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// The security schemes the operations name: `bearer` (`Authorization: Bearer <JWT>`, every
/// authenticated call) and, for browser sessions, the refresh cookie with its CSRF header.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The `access_token` from `POST /api/v1/auth/login` (or `/oauth/token`), valid for \
                         minutes; renew it with `POST /api/v1/auth/refresh`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "refreshCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::web::REFRESH_COOKIE,
                "Browser sessions (`\"cookie\": true` at login): the refresh token in an HttpOnly cookie, \
                 sent only to the auth endpoints; always together with `csrfHeader`.",
            ))),
        );
        components.add_security_scheme(
            "csrfHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                hearth_auth::csrf::HEADER_NAME,
                &format!(
                    "The double submit of browser sessions: the value of the `{}` cookie, repeated in this \
                     header on every request the refresh cookie authenticates.",
                    hearth_auth::csrf::COOKIE_NAME
                ),
            ))),
        );
    }
}

/// The answer of the health checks.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(example = "ok")]
    status: &'static str,
    /// Readiness only: the record store's backend, `sqlite` or `postgres`.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'static str>,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", database: None })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Health, example = json!({"status": "ready", "database": "sqlite"})),
        (status = 503, description = "The database is unreachable", body = ErrorEnvelope,
         example = json!({"error": {"code": "unavailable", "message": "a dependency is unavailable"}}))))]
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Health>, ApiError> {
    app.store.ping().await.map_err(ApiError::unavailable)?;
    Ok(Json(Health { status: "ready", database: Some(app.store.backend()) }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let pool = app.store.pool_stats();
    // The outbox is shared by every process: each reports the same backlog (alert on `max`).
    let backlog = match crate::notify::backlog(&*app.db, app.clock.now()).await {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e, "cannot measure the notification outbox backlog");
            None
        }
    };
    metrics::with_local_recorder(&*app.metrics, || {
        let labels = [("backend", app.store.backend())];
        metrics::gauge!("hearth_db_pool_connections", &labels).set(f64::from(pool.size));
        metrics::gauge!("hearth_db_pool_idle_connections", &labels).set(f64::from(pool.idle));
        metrics::gauge!("hearth_audit_failing").set(if app.auditor.is_failing() { 1.0 } else { 0.0 });
        if let Some((due, waited)) = backlog {
            metrics::gauge!("hearth_outbox_due").set(due as f64);
            metrics::gauge!("hearth_outbox_oldest_due_seconds").set(waited.as_secs_f64());
        }
    });
    let mut r = app.metrics.handle().render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0), as `/api/openapi.json` serves it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A description of the served JSON, never built.
pub struct OpenApiDocument {
    /// The OpenAPI version, `3.1.0`.
    #[schema(example = "3.1.0")]
    openapi: String,
    /// Title, version and description of this API.
    info: Value,
    /// Every operation, by path and then by lower-case HTTP method.
    paths: std::collections::BTreeMap<String, Value>,
    /// The shared schemas (`ErrorEnvelope`, `FhirResource`, the request and answer types) and
    /// security schemes.
    components: Value,
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 description of the app API", body = OpenApiDocument)))]
pub async fn openapi_json(spec: Arc<Result<String, String>>) -> Response {
    match &*spec {
        Ok(text) => {
            let mut r = (StatusCode::OK, text.clone()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => ApiError::internal(e.clone()).into_response(),
    }
}

/// The description of the edge's own endpoints and every mounted workflow's, as JSON.
/// Two workflows naming different schemas alike would lose one of them in the merge (the first
/// wins), so answers would be described by the other's schema: that is refused here (and so in
/// the tests that fetch the document).
pub fn spec(mounts: &[hearth_workflow::Mount]) -> Result<String, String> {
    let mut doc = ApiDoc::openapi();
    for m in mounts {
        if let (Some(have), Some(adding)) = (doc.components.as_ref(), m.openapi.components.as_ref()) {
            for (name, schema) in &adding.schemas {
                if have.schemas.get(name).is_some_and(|existing| existing != schema) {
                    return Err(format!(
                        "two workflows describe different schemas named `{name}`: rename one (#[schema(as = …)])"
                    ));
                }
            }
        }
        doc.merge(m.openapi.clone());
    }
    doc.to_json().map_err(|e| e.to_string())
}

/// The API reference: a page that renders `/api/openapi.json` (operations with their
/// parameters, bodies, schemas and examples) and sends a request with a pasted access token.
/// Self-contained: no CDN, no external fonts; its script and styles are files of this server,
/// so the page's Content-Security-Policy needs no `'unsafe-inline'`.
#[utoipa::path(get, path = "/api/docs", tag = "documentation",
    responses((status = 200, description = "The API reference page", content_type = "text/html")))]
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs/docs.html"))
}

/// The script of the API reference page (vanilla JavaScript, no dependencies).
#[utoipa::path(get, path = "/api/docs/docs.js", tag = "documentation",
    responses((status = 200, description = "The page's script", content_type = "text/javascript")))]
pub async fn docs_script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("docs/docs.js"))
}

/// The styles of the API reference page.
#[utoipa::path(get, path = "/api/docs/docs.css", tag = "documentation",
    responses((status = 200, description = "The page's styles", content_type = "text/css")))]
pub async fn docs_style() -> Response {
    asset("text/css; charset=utf-8", include_str!("docs/docs.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// How often the planner-statistics keeper looks at how much the tables changed.
const STATISTICS_EVERY: std::time::Duration = std::time::Duration::from_secs(20);

/// Keeps the query planner's statistics current while the server runs: every 20 s it asks
/// each store to re-analyse the tables that changed by more than a tenth since their last
/// analysis (`ResourceStore::refresh_statistics`; PostgreSQL only, a no-op on SQLite). Without
/// it a freshly loaded PostgreSQL database answers searches with plans made for empty tables
/// until autovacuum gets round to it. Failures are logged and retried on the next tick.
pub async fn statistics_keeper(app: Arc<App>) {
    let mut tick = tokio::time::interval(STATISTICS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (name, store) in [("record", &app.store), ("audit", &app.audit_store)] {
            match store.refresh_statistics(false).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(store = name, tables = n, "planner statistics refreshed"),
                Err(e) => tracing::warn!(store = name, error = %e, "cannot refresh planner statistics"),
            }
        }
    }
}

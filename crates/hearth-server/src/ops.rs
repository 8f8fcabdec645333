//! Operational and documentation endpoints: liveness, readiness, Prometheus metrics, and the
//! OpenAPI description of the non-FHIR API (rendered without any CDN); and the background
//! keeper of the database planner's statistics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::app::App;
use crate::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hearth app API",
        description = "The non-FHIR surface of Hearth. The FHIR R4 API lives under /fhir and is described by GET /fhir/metadata."
    ),
    paths(
        healthz, readyz, metrics, openapi_json,
        crate::auth::routes::register, crate::auth::routes::login, crate::auth::routes::refresh_token,
        crate::auth::routes::logout, crate::auth::routes::me, crate::auth::routes::create_account,
        crate::auth::routes::grant_caregiver, crate::auth::routes::jwks,
        crate::auth::mfa::enroll, crate::auth::mfa::confirm, crate::auth::mfa::disable,
        crate::auth::otp::request, crate::auth::otp::verify,
        crate::auth::smart::configuration, crate::auth::smart::authorize_page, crate::auth::smart::authorize_submit,
        crate::auth::smart::token, crate::auth::smart::create_client, crate::auth::smart::list_clients,
        crate::auth::smart::delete_client,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The `bearer` security scheme the authenticated operations name (`Authorization: Bearer <JWT>`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Object, example = json!({"status": "ready", "database": "sqlite"})),
        (status = 503, description = "The database is unreachable", body = Object,
         example = json!({"error": {"code": "unavailable", "message": "a dependency is unavailable"}}))))]
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    app.store.ping().await.map_err(ApiError::unavailable)?;
    Ok(Json(json!({ "status": "ready", "database": app.store.backend() })))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let pool = app.store.pool_stats();
    metrics::with_local_recorder(&*app.metrics, || {
        let labels = [("backend", app.store.backend())];
        metrics::gauge!("hearth_db_pool_connections", &labels).set(f64::from(pool.size));
        metrics::gauge!("hearth_db_pool_idle_connections", &labels).set(f64::from(pool.idle));
    });
    let mut r = app.metrics.handle().render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 description of the app API", body = Object)))]
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
pub fn spec(mounts: &[hearth_workflow::Mount]) -> Result<String, String> {
    let mut doc = ApiDoc::openapi();
    for m in mounts {
        doc.merge(m.openapi.clone());
    }
    doc.to_json().map_err(|e| e.to_string())
}

/// A self-contained API reference page: no CDN, no external fonts; it reads /api/openapi.json.
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
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

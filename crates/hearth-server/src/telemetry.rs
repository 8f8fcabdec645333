//! The assembled router with its cross-cutting layers (request id, tracing, metrics) and the
//! server loop with graceful shutdown.
//!
//! Logs carry the request id, method, matched route template, status and latency: never the
//! concrete URL (query strings and ids in paths can carry PHI), headers or bodies.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::app::App;
use crate::{fhir, ops};

fn route_of(req: &Request) -> String {
    req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned())
}

async fn record_metrics(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = route_of(&req);
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let elapsed = start.elapsed().as_secs_f64();
    metrics::with_local_recorder(&*app.metrics, || {
        metrics::counter!("hearth_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("hearth_http_request_duration_seconds", "method" => method, "route" => route)
            .record(elapsed);
    });
    resp
}

/// The whole HTTP surface of Hearth.
pub fn router(app: Arc<App>) -> Router {
    let mut mounts = crate::workflows::mount(&app);
    let spec = Arc::new(ops::spec(&mounts));
    let operations = mounts.iter_mut().map(|m| std::mem::take(&mut m.fhir_operations)).collect();
    let fhir = fhir::router(app.clone(), operations);
    let edge = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/api/openapi.json", get(move || ops::openapi_json(Arc::clone(&spec))))
        .route("/api/docs", get(ops::docs))
        .route("/api/docs/docs.js", get(ops::docs_script))
        .route("/api/docs/docs.css", get(ops::docs_style))
        .merge(
            Router::new()
                .merge(crate::auth::routes::router())
                .merge(crate::auth::mfa::router())
                .merge(crate::auth::otp::router())
                .merge(crate::auth::phone::router())
                .merge(crate::auth::smart::router())
                .layer(middleware::from_fn_with_state(app.trail.clone(), crate::audit::denials_layer)),
        )
        .with_state(app.clone())
        .nest("/fhir", fhir.layer(middleware::from_fn_with_state(app.trail.clone(), crate::audit::fhir_layer)));
    // Each workflow's routes, under the audit middleware that fits them.
    let router = mounts.into_iter().fold(edge, |router, m| {
        router
            .merge(m.audited.layer(middleware::from_fn_with_state(app.trail.clone(), crate::audit::fhir_layer)))
            .merge(
                m.refusals_audited
                    .layer(middleware::from_fn_with_state(app.trail.clone(), crate::audit::denials_layer)),
            )
    });
    let router = router
        .layer(middleware::from_fn_with_state(app.clone(), crate::auth::web::api_limit))
        .layer(middleware::from_fn(hearth_workflow::edge::error_bodies))
        .layer(middleware::from_fn_with_state(app.clone(), record_metrics))
        .layer(middleware::from_fn_with_state(app.clone(), crate::auth::web::security_headers));
    let router = match crate::auth::web::cors(&app.config) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let router = router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id =
                        req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
                    tracing::info_span!("request", %request_id, method = %req.method(), route = %route_of(req))
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    // Before routing (a layer on the router itself runs after it): `[base]/…/` is `[base]/…`.
    Router::new().fallback_service(tower::Layer::layer(&middleware::from_fn(fhir::trailing_slash), router))
}

/// Serves until `shutdown` completes, then stops accepting connections and gives in-flight
/// requests up to the configured grace period before returning. Closes the store last.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(app.config.shutdown_grace_secs);
    let (signalled_tx, mut signalled_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutdown requested; draining in-flight requests");
        let _ = signalled_tx.send(true);
    };
    // The export worker of this process: claims queued $export jobs from the database.
    let worker = tokio::spawn(crate::bulk_export::worker(app.bulk_export.clone()));
    // The reindex worker: queued and interrupted $reindex jobs, from any process.
    let reindexer = tokio::spawn(crate::fhir::search_parameters::worker(app.clone()));
    let auditor = tokio::spawn(crate::audit::writer(app.trail.clone()));
    let audit_indexer = tokio::spawn(crate::audit::indexer(app.trail.clone()));
    let statistics = tokio::spawn(crate::ops::statistics_keeper(app.clone()));
    // The notification outbox worker, unless separate `hearth worker` processes do that.
    let notifier = app.config.notify.worker.then(|| {
        tokio::spawn(crate::notify::worker::run(app.notifications.clone(), crate::notify::worker::worker_id()))
    });
    // Medication reminders are written ahead by the worker too (idempotent across workers).
    let reminders = app.config.notify.worker.then(|| {
        let planner = std::sync::Arc::new(hearth_medication::Medication::with_config(
            std::sync::Arc::clone(app.ctx()),
            app.config.medication.clone(),
            std::sync::Arc::clone(&app.notify),
        ));
        tokio::spawn(planner.run_reminders())
    });
    // So are alarms' rings.
    let alarms = app.config.notify.worker.then(|| {
        let planner = std::sync::Arc::new(hearth_alarms::Alarms::new(
            std::sync::Arc::clone(app.ctx()),
            std::sync::Arc::clone(&app.notify),
        ));
        tokio::spawn(planner.run_planner())
    });
    let wellness = app.config.notify.worker.then(|| tokio::spawn(crate::workflows::wellness(&app).run_planner()));
    let service = router(app.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let listener = axum::serve::ListenerExt::tap_io(listener, |s: &mut tokio::net::TcpStream| {
        let _ = s.set_nodelay(true);
    });
    let server = axum::serve(listener, service).with_graceful_shutdown(shutdown);
    let deadline = async move {
        while !*signalled_rx.borrow() {
            if signalled_rx.changed().await.is_err() {
                // The server finished without a signal; never fire.
                std::future::pending::<()>().await;
            }
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        res = server => res?,
        () = deadline => tracing::warn!(grace_secs = grace.as_secs(), "grace period expired; abandoning in-flight requests"),
    }
    worker.abort();
    reindexer.abort();
    // Every request has finished: journal what they queued and index it (what cannot be
    // indexed now stays in the journal for the next start).
    match tokio::time::timeout(Duration::from_secs(10), app.auditor.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the last audit events"),
        Err(_) => tracing::error!("the last audit events were not written within 10 s"),
    }
    auditor.abort();
    audit_indexer.abort();
    statistics.abort();
    if let Some(r) = reminders {
        r.abort();
    }
    if let Some(a) = alarms {
        a.abort();
    }
    if let Some(w) = wellness {
        w.abort();
    }
    if let Some(n) = notifier {
        n.abort();
    }
    app.store.close().await;
    app.audit_store.close().await;
    tracing::info!("stopped");
    Ok(())
}

//! The care workflows this binary serves: each is its own crate, given its state here and
//! mounted in one line (see "How to add a workflow" in docs/ARCHITECTURE.md).

use std::sync::Arc;

use hearth_workflow::{Mount, Workflow};

use crate::app::App;

/// Every workflow's routes and OpenAPI description.
pub fn mount(app: &App) -> Vec<Mount> {
    vec![
        Arc::new(hearth_consent::Consents::new(Arc::clone(app.ctx()))).mount(),
        Arc::clone(&app.notifications).mount(),
        Arc::clone(&app.trail).mount(),
        Arc::clone(&app.bulk_export).mount(),
        Arc::new(hearth_rights::Rights::new(Arc::clone(app.ctx()), app.config.rights.clone())).mount(),
        Arc::clone(&app.scheduling).mount(),
        Arc::new(hearth_registry::Registry::new(
            Arc::clone(app.ctx()),
            app.config.registry.clone(),
            Arc::clone(&app.notify),
            hearth_registry::Credentials {
                pepper: app.auth.pepper.clone(),
                hasher: app.auth.hasher.clone(),
                policy: app.auth.policy.clone(),
            },
        ))
        .mount(),
        documents(app),
        Arc::new(hearth_intake::Intakes::new(
            Arc::clone(app.ctx()),
            app.config.intake.clone(),
            Arc::clone(&app.notify),
        ))
        .mount(),
        Arc::new(hearth_selfcare::Selfcare::new(
            Arc::clone(app.ctx()),
            app.config.selfcare.clone(),
            Arc::clone(&app.notify),
        ))
        .mount(),
        Arc::new(hearth_medication::Medication::with_config(
            Arc::clone(app.ctx()),
            app.config.medication.clone(),
            Arc::clone(&app.notify),
        ))
        .mount(),
        Arc::new(hearth_emergency::Emergency::new(Arc::clone(app.ctx()), Arc::clone(&app.notify))).mount(),
        Arc::new(hearth_alarms::Alarms::new(Arc::clone(app.ctx()), Arc::clone(&app.notify))).mount(),
        Arc::new(hearth_journal::Journal::new(Arc::clone(app.ctx()), app.config.journal.clone())).mount(),
        wellness(app).mount(),
        Arc::new(hearth_telehealth::Telehealth::new(Arc::clone(app.ctx()), app.config.telehealth.clone())).mount(),
        web(),
    ]
}

/// The wellness workflow (its routes, and the daily-summary planner the worker runs).
pub fn wellness(app: &App) -> Arc<hearth_wellness::Wellness> {
    let config = app.config.wellness.clone();
    Arc::new(hearth_wellness::Wellness::new(Arc::clone(app.ctx()), config, Arc::clone(&app.notify)))
}

/// The web screens at `/` and `/app`. Their catalogues are compiled in (a unit test loads them);
/// should one still fail to load, that is logged loudly and the API is served without screens.
fn web() -> Mount {
    match hearth_web::Web::new() {
        Ok(web) => Arc::new(web).mount(),
        Err(e) => {
            tracing::error!(error = %e, "the web screens cannot start");
            Mount::default()
        }
    }
}

/// The documents workflow over the data dir and the encryption key ring. Its settings and the key
/// source were checked when the configuration was loaded; what is left to fail is building the
/// TLS client for S3, which is logged loudly and leaves the documents routes unmounted.
fn documents(app: &App) -> Mount {
    let keys = app.config.encryption_keys().ok().flatten();
    match hearth_documents::Documents::new(
        Arc::clone(app.ctx()),
        app.config.documents.clone(),
        &app.config.data_dir,
        keys,
    ) {
        Ok(docs) => Arc::new(docs).mount(),
        Err(e) => {
            tracing::error!(error = %e, "the documents workflow cannot start");
            Mount::default()
        }
    }
}

//! Hearth medications (issue 18, items 3 and 4).
//!
//! Built so far: the interaction and allergy checks ([`interactions`], pure: the HL7 PDDI-CDS
//! rules and 176 curated pairs as data, matched by RxNorm code, name or synonym at ingredient
//! level); schedules and dose logs as FHIR resources ([`schedule`], pure); dose times in the
//! patient's zone ([`doses`], pure, DST-correct) and adherence ([`adherence`], pure); the
//! reminder and refill-notice planner the worker runs ([`reminders`]); e-prescriptions
//! ([`prescription`], pure; `prescribe.rs`); and the app API (`routes.rs`):
//! `GET /api/v1/medication/interactions`, `GET/POST /api/v1/medication/schedules`,
//! `PUT /api/v1/medication/schedules/{id}`, `POST /api/v1/medication/schedules/{id}/stop`,
//! `GET/POST /api/v1/medication/logs`, `GET /api/v1/medication/adherence`,
//! `POST /api/v1/medication/prescriptions`, `GET /api/v1/medication/prescriptions/{id}`. See
//! `docs/MEDICATION.md` for what is built and what is not yet.
#![forbid(unsafe_code)]

pub mod adherence;
pub mod doses;
pub mod interactions;
mod prescribe;
pub mod prescription;
pub mod refill;
pub mod reminders;
mod routes;
pub mod schedule;

use std::sync::Arc;

use hearth_workflow::{Ctx, Mount, Workflow};

/// The `[medication]` table.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MedicationConfig {
    /// Days before a counted supply runs out that the patient gets one `medication-refill`
    /// notice (0 to 90; 0: none).
    pub refill_notice_days: u32,
}

impl Default for MedicationConfig {
    fn default() -> Self {
        MedicationConfig { refill_notice_days: 3 }
    }
}

impl MedicationConfig {
    /// Checks the values (the configuration's `validate` calls it).
    pub fn validate(&self) -> Result<(), String> {
        if self.refill_notice_days > 90 {
            return Err("medication.refill_notice_days must be 0 to 90".into());
        }
        Ok(())
    }
}

/// The medication workflow's state.
pub struct Medication {
    ctx: Arc<Ctx>,
    pub config: MedicationConfig,
    /// The notifications API reminders are enqueued through (and the patients' time zones read).
    pub notifier: Arc<hearth_notifications::Notifier>,
}

impl Medication {
    /// With the default settings.
    pub fn new(ctx: Arc<Ctx>, notifier: Arc<hearth_notifications::Notifier>) -> Medication {
        Medication::with_config(ctx, MedicationConfig::default(), notifier)
    }

    pub fn with_config(
        ctx: Arc<Ctx>,
        config: MedicationConfig,
        notifier: Arc<hearth_notifications::Notifier>,
    ) -> Medication {
        Medication { ctx, config, notifier }
    }

    /// The reminder planner over this state, every [`reminders::PLAN_EVERY`] until dropped (the
    /// worker runs it beside the notification worker).
    pub async fn run_reminders(self: Arc<Self>) {
        reminders::run(self).await;
    }
}

impl std::ops::Deref for Medication {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Medication {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    routes::check,
    routes::schedules,
    routes::add_schedule,
    routes::edit_schedule,
    routes::stop_schedule,
    prescribe::sign,
    prescribe::fetch,
    routes::logs,
    routes::add_log,
    routes::adherence_of
))]
struct Api;

impl Workflow for Medication {
    /// Every route reads or writes a patient's medications (or may, with `patient`): all `audited`.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: routes::router()
                .route("/api/v1/medication/prescriptions", axum::routing::post(prescribe::sign))
                .route("/api/v1/medication/prescriptions/{id}", axum::routing::get(prescribe::fetch))
                .with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}

//! Hearth wellness (issue 19, items 1 and 3): a patient's daily logs, goals and the daily summary.
//!
//! - [`catalog`] (pure): the codes (LOINC where it has one, else `urn:hearth:wellness`), choices,
//!   limits, insight rules with their sources and the en/hi texts, from `data/wellness.json`.
//! - [`entry`] (pure): a log entry checked and turned into a FHIR `Observation`, and back.
//! - [`summary`] (pure): a day's figures, the 14-day baseline, goals met and streaks, the
//!   insights and the plain-language text in en and hi, and the `Composition` that keeps it.
//! - `logs.rs`: `GET/POST /api/v1/tracking/{food,water,sleep,exercise,mood}` and
//!   `GET/POST /api/v1/meditation/sessions` (date ranges, paging by cursor, Idempotency-Key).
//! - `goals.rs`: `GET/POST /api/v1/goals` (`Goal`s with category `wellness`, progress from the
//!   logs, streaks).
//! - `daily.rs`: `GET /api/v1/summaries/daily?date=`, `GET/PUT /api/v1/summaries/settings`,
//!   and the planner that writes each enrolled patient's summary of yesterday at their local
//!   time, as a `Composition` plus in-app and e-mail notices through the outbox.
//! - [`chat`]: the care-team chat (`/api/v1/chat/…`): `Communication`s, read receipts, a
//!   WebSocket per thread, and red-flag screening through the intake's engine.
//!
//! Every read and write of a record goes through the caller's guarded store view (the patient,
//! their caregivers, staff within reach; another patient sees `404`), so who may log or read is
//! the store's access rule and every touch is on the request's audit slip. The one table
//! (`wellness_summary_plans`, migration 0027) is reached only through `hearth_store_sql::wellness`.
//! The chat's read receipts are a second table of the same migration (`wellness_chat_reads`).
//! Medication doses, vital signs and alerts are read as FHIR resources (`MedicationAdministration`,
//! vital-sign `Observation`s, `Flag`s), never through another workflow's tables.
//! See `docs/WELLNESS.md`.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod chat;
mod daily;
pub mod entry;
mod goals;
mod logs;
pub mod summary;

use std::sync::Arc;

use hearth_notifications::Notifier;
use hearth_workflow::{Ctx, Mount, Workflow};
use serde::Deserialize;

pub use daily::{PLAN_EVERY, Planned, plan};

/// The `[wellness]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WellnessConfig {
    /// The local time (`HH:MM`, the patient's zone) a daily summary of yesterday is written and
    /// sent, unless the patient chose another.
    pub summary_time: String,
}

impl Default for WellnessConfig {
    fn default() -> Self {
        WellnessConfig { summary_time: "07:00".into() }
    }
}

impl WellnessConfig {
    /// Checks the values (the configuration's `validate` calls it).
    pub fn validate(&self) -> Result<(), String> {
        daily::parse_time(&self.summary_time)
            .map(|_| ())
            .ok_or_else(|| "wellness.summary_time must be HH:MM (00:00 to 23:59)".to_owned())
    }
}

/// The wellness workflow's state.
pub struct Wellness {
    ctx: Arc<Ctx>,
    pub config: WellnessConfig,
    /// Summaries go out through it; accounts' time zones and languages are read from it.
    pub notifier: Arc<Notifier>,
    /// This process's chat frames (patient id, JSON frame) for the open sockets of each thread.
    pub live: tokio::sync::broadcast::Sender<(String, serde_json::Value)>,
}

impl Wellness {
    pub fn new(ctx: Arc<Ctx>, config: WellnessConfig, notifier: Arc<Notifier>) -> Wellness {
        Wellness { ctx, config, notifier, live: tokio::sync::broadcast::channel(256).0 }
    }

    /// The daily-summary planner, every [`PLAN_EVERY`] until dropped (the worker runs it).
    pub async fn run_planner(self: Arc<Self>) {
        daily::run(self).await;
    }
}

impl std::ops::Deref for Wellness {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Wellness {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    logs::list,
    logs::record,
    logs::list_meditation,
    logs::record_meditation,
    goals::list,
    goals::create,
    daily::daily,
    daily::get_settings,
    daily::put_settings,
    chat::send,
    chat::history,
    chat::read,
    chat::socket
))]
struct Api;

impl Workflow for Wellness {
    /// Every route reads or writes a patient's record: all `audited`.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: logs::router()
                .merge(goals::router())
                .merge(daily::router())
                .merge(chat::router())
                .with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_description_keeps_the_rule() {
        let doc = <super::Api as utoipa::OpenApi>::openapi();
        assert_eq!(hearth_workflow::openapi::problems_of(&doc), Vec::<String>::new());
    }
}

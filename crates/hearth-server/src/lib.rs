//! Hearth's HTTP edge: configuration, the [`App`] state, the FHIR REST API and operational
//! endpoints. The binary (`crates/hearth`) only parses the command line and calls in here.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub use hearth_config as config;
pub use hearth_workflow::error;
pub mod fhir;
mod ops;
mod telemetry;
mod workflows;

pub use app::{App, Clock, StartError, SystemClock};
pub use config::Config;
/// The workflow crates this edge mounts, as the binary and its tests reach them.
pub use hearth_alarms as alarms;
pub use hearth_audit as audit;
pub use hearth_bulk_export as bulk_export;
pub use hearth_consent as consent;
pub use hearth_intake as intake;
pub use hearth_medication as medication;
pub use hearth_notifications as notify;
pub use hearth_registry as registry;
pub use hearth_rights as rights;
pub use hearth_scheduling as scheduling;
/// The base every workflow builds on (context, caller, errors, FHIR helpers).
pub use hearth_workflow as workflow;
pub use telemetry::{router, serve};

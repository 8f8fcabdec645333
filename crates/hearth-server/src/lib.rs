//! Hearth's HTTP edge: configuration, the [`App`] state, the FHIR REST API and operational
//! endpoints. The binary (`crates/hearth`) only parses the command line and calls in here.

#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod consent;
pub mod error;
pub mod fhir;
pub mod jobs;
pub mod notify;
mod ops;
pub mod rights;
pub mod scheduling;
mod telemetry;

pub use app::{App, Clock, StartError, SystemClock};
pub use config::Config;
pub use telemetry::{router, serve};

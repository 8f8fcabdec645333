//! Hearth's one integration-test binary: every test drives the real HTTP server.

// Tests may panic: that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod consent;

mod alarms;
mod api_properties;
mod architecture;
mod audit;
mod auth;
mod authz_matrix;
mod backup;
mod bundles;
mod conditional;
mod crash;
mod crud;
mod documents;
mod emergency;
mod encounters;
mod encryption;
mod errors;
mod examples;
mod export;
mod history;
mod hostile;
mod import;
mod intake;
mod intake_model;
mod interop;
mod journal;
mod lab_results;
mod medication;
mod mfa;
mod notify;
mod notify_peers;
mod notify_send;
mod openapi;
mod ops;
mod patch;
mod phone;
mod process;
mod profile;
mod registry;
mod rights;
mod scheduling;
mod search;
mod search_vectors;
mod selfcare;
mod selfcare_alerts;
mod smart;
mod telehealth;
mod web;
mod wellness;

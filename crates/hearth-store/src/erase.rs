//! What erasing a patient's record (issue 7, data rights) asks of the store, and what it
//! answers. The decisions are the server's (`hearth-server/src/rights/`); the store does the
//! one transaction:
//!
//! - **What is erased**: the `Patient` itself; every resource that lies in its Patient
//!   compartment (the official CompartmentDefinition) *and names no other patient* through a
//!   compartment parameter (an Observation performed by one patient about another, or a Group
//!   of several patients, is also someone else's record and is kept); every deleted resource
//!   of a compartment type whose stored versions reference `Patient/<id>` and no other patient
//!   (a deleted resource has no index rows any more, so its bodies are read); and the `Binary`
//!   resources the erased ones reference (as a reference or a `Binary/<id>` URL). `Patient`
//!   resources that merely link to this one and the shared resources the record references
//!   (Practitioners, Organizations, Medications) are not erased.
//! - **How**: every version row of each such resource is deleted (bodies, and on PostgreSQL
//!   their ciphertext, with them), all its index rows are deleted, and one *tombstone* version
//!   is written: a deletion marker (no body) attributed to the executing account. The
//!   `resources` row stays, pointing at it, so a read answers `410 Gone`, `vread` of every
//!   earlier version `404`, history shows only the marker, and no search, `$everything` or
//!   export returns it.
//! - **Accounts**: every account whose `fhirUser` is the Patient is removed with its refresh
//!   tokens, recovery codes, authorization codes, login codes, notification outbox rows (queued
//!   messages are cancelled by their removal), inbox, preferences, settings and push
//!   subscriptions; caregiver grants for the patient are removed.
//! - **Holds**: a legal hold on the patient, or (retention) a record with activity after the
//!   given instant, refuses the erasure and changes nothing.

use chrono::{DateTime, Utc};

use crate::MemberParams;

/// The erasure to run.
#[derive(Debug, Clone)]
pub struct ErasurePlan {
    /// The `Patient` id.
    pub patient: String,
    /// The Patient CompartmentDefinition: per type, the parameters that place a resource in it.
    pub params: MemberParams,
    /// Retention: refuse when any resource of the record was written after this instant.
    pub retain_after: Option<DateTime<Utc>>,
    /// The erasure request this completes (marked `completed` in the same transaction).
    pub request: String,
    pub now: DateTime<Utc>,
}

/// Why an erasure may not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// An admin placed a legal hold on the patient, with this reason.
    Legal(String),
    /// The record has activity within the configured retention period (last write).
    Retention(DateTime<Utc>),
}

/// What an erasure removed (counts only: the answer holds no content).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Resources tombstoned (the Patient included).
    pub resources: u64,
    /// Version rows deleted.
    pub versions: u64,
    /// Resources of the compartment kept because they also belong to another patient's record.
    pub kept_shared: u64,
    /// Login accounts removed.
    pub accounts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    Done(Erased),
    Held(Hold),
    /// No such `Patient` was ever stored.
    NoSuchPatient,
}

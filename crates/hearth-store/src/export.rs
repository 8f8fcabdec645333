//! What `Patient/$everything` and bulk export ask of the store: the everything page, the
//! export scan (keyset over `rid`), and export job rows (claimed once, with a lease).

use chrono::{DateTime, Utc};

use crate::{Access, Compartment};

/// `Patient/{id}/$everything`: the patient, the members of its compartment, and the resources
/// they (or the patient) reference, in that order and each once, paged by an opaque cursor.
#[derive(Debug, Clone)]
pub struct EverythingRequest {
    /// What the caller reaches: every phase is narrowed to it (set by [`crate::Guarded::everything`]).
    pub access: Access,
    /// The patient's compartment (owner and the member parameters per type).
    pub compartment: Compartment,
    /// Only these types (`_type`); empty = every type.
    pub types: Vec<String>,
    /// Only resources with `lastUpdated >= since` (`_since`).
    pub since: Option<DateTime<Utc>>,
    /// The cursor of a `next` link, as the store produced it.
    pub cursor: Option<String>,
    /// Page size.
    pub count: u32,
}

/// Which patients a Patient- or Group-level export covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patients {
    /// Every patient (Patient-level export).
    All,
    /// These patient ids (Group members).
    Ids(Vec<String>),
}

/// Per resource type, the reference parameters that place a resource in a patient's compartment.
pub type MemberParams = Vec<(String, Vec<String>)>;

/// One batch of an export: live current resources after position `after`, in `rid` order.
#[derive(Debug, Clone)]
pub struct ExportScan {
    /// Only these types; `None` = every type.
    pub types: Option<Vec<String>>,
    /// Only resources with `lastUpdated >= since`.
    pub since: Option<DateTime<Utc>>,
    /// Restrict to patients and the members of their compartments (the member parameters per
    /// type); `None` = system level.
    pub patients: Option<(Patients, MemberParams)>,
    pub after: i64,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        match s {
            "pending" => Some(JobStatus::Pending),
            "running" => Some(JobStatus::Running),
            "done" => Some(JobStatus::Done),
            "failed" => Some(JobStatus::Failed),
            _ => None,
        }
    }
}

/// Which worker claims a job row: the table of durable background jobs holds `$export` runs and
/// reindex runs (`$reindex`, SearchParameter changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Export,
    Reindex,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Export => "export",
            JobKind::Reindex => "reindex",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "export" => Some(JobKind::Export),
            "reindex" => Some(JobKind::Reindex),
            _ => None,
        }
    }
}

/// An export job row. `request` and `result` are JSON texts the server owns (the store does not
/// interpret them).
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub request: String,
    pub created_at: DateTime<Utc>,
    pub transaction_time: DateTime<Utc>,
    /// The worker holding the lease, while running.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// A short progress text (`X-Progress`).
    pub progress: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
}

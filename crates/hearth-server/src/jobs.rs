//! Background jobs of this process, with progress a client can poll (`$reindex` today).
//!
//! Decision: a reindex job lives in the memory of the process that runs it. It is idempotent
//! (it rewrites index rows from stored resources), so a job lost to a restart is simply started
//! again; its status URL then answers 404. Jobs that must survive restarts or be claimed by
//! another process (bulk export, notifications) are rows in the database instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Running,
    Done,
    Failed(String),
}

#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub kind: &'static str,
    pub started: DateTime<Utc>,
    /// Resources expected, when known at the start.
    pub total: Option<u64>,
    pub processed: AtomicU64,
    status: Mutex<Status>,
    finished: Mutex<Option<DateTime<Utc>>>,
}

impl Job {
    pub fn status(&self) -> Status {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn finished(&self) -> Option<DateTime<Utc>> {
        match self.finished.lock() {
            Ok(f) => *f,
            Err(p) => *p.into_inner(),
        }
    }

    pub fn finish(&self, status: Status, at: DateTime<Utc>) {
        match self.status.lock() {
            Ok(mut s) => *s = status,
            Err(p) => *p.into_inner() = status,
        }
        match self.finished.lock() {
            Ok(mut f) => *f = Some(at),
            Err(p) => *p.into_inner() = Some(at),
        }
    }

    pub fn add_processed(&self, n: u64) {
        self.processed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

impl Jobs {
    pub fn create(&self, kind: &'static str, total: Option<u64>, now: DateTime<Utc>) -> Arc<Job> {
        let job = Arc::new(Job {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            started: now,
            total,
            processed: AtomicU64::new(0),
            status: Mutex::new(Status::Running),
            finished: Mutex::new(None),
        });
        match self.jobs.lock() {
            Ok(mut m) => m.insert(job.id.clone(), Arc::clone(&job)),
            Err(p) => p.into_inner().insert(job.id.clone(), Arc::clone(&job)),
        };
        job
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        match self.jobs.lock() {
            Ok(m) => m.get(id).cloned(),
            Err(p) => p.into_inner().get(id).cloned(),
        }
    }

    /// Whether any job of `kind` is still running.
    pub fn running(&self, kind: &str) -> bool {
        let check = |m: &HashMap<String, Arc<Job>>| m.values().any(|j| j.kind == kind && j.status() == Status::Running);
        match self.jobs.lock() {
            Ok(m) => check(&m),
            Err(p) => check(&p.into_inner()),
        }
    }
}

use thiserror::Error;

/// Failures of the storage API. The HTTP edge maps each to a status (see `hearth-server::error`).
#[derive(Debug, Error)]
pub enum StoreError {
    /// `If-Match` named a version that is not the current one (or the resource does not exist).
    #[error("version conflict: expected version {expected}, current is {current:?}")]
    VersionConflict { expected: u64, current: Option<u64> },
    /// A create used an id that is already taken.
    #[error("resource already exists")]
    Conflict,
    /// Conditional operation criteria matched more than one resource.
    #[error("criteria matched {0} resources")]
    MultipleMatches(usize),
    /// Conditional update: the body's id differs from the matched resource's id.
    #[error("resource id does not match the resource found by the criteria")]
    IdMismatch,
    /// A search the store cannot run as asked (an invalid paging cursor, a modifier that needs
    /// terminology the caller did not resolve): the client's fault (400). The message is safe to
    /// show and names no data.
    #[error("{0}")]
    InvalidSearch(String),
    /// The caller's [`crate::Access`] does not allow the interaction (403). The message names
    /// the interaction and type, never data.
    #[error("{0}")]
    Forbidden(String),
    /// The database could not be reached or is busy beyond the timeout.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data that cannot be decoded: a bug or corruption, never user error.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

//! The store's errors.

use crate::model::{WorkloadId, WorkloadState};
use std::path::PathBuf;

/// A store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused or failed an operation (I/O, lock timeout, constraint).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file-system operation on the database's directory or a system file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Neither `XDG_DATA_HOME` nor `HOME` names a usable directory for the default database.
    #[error("no data directory: set XDG_DATA_HOME or HOME, or pass --db PATH")]
    NoDataDir,
    /// SQLite would not switch the database to WAL journal mode.
    #[error("{}: journal mode is {mode:?}, WAL is required", path.display())]
    NotWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// The database was written by a newer gantry whose schema this binary does not know.
    #[error(
        "database schema version {found} is newer than this gantry supports ({supported}); use a newer gantry"
    )]
    SchemaTooNew {
        /// The database's `user_version`.
        found: i64,
        /// The newest version this binary knows.
        supported: i64,
    },
    /// A schema migration failed; the database was left at the previous version.
    #[error("schema migration to version {version} failed: {source}")]
    Migration {
        /// The version that failed.
        version: i64,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// No row with this id or name.
    #[error("{what} {id} not found")]
    NotFound {
        /// What was looked for (`workload`, `queue`, `token`).
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// A row with this name exists already.
    #[error("{what} {id} already exists; remove it first")]
    AlreadyExists {
        /// What was added (`webhook`).
        what: &'static str,
        /// Its name.
        id: String,
    },
    /// Compare-and-set failed: the workload is not in the state the caller expected.
    #[error("workload {id} is {actual}, not {expected}")]
    Conflict {
        /// The workload.
        id: WorkloadId,
        /// The state the caller expected.
        expected: WorkloadState,
        /// The state it is in.
        actual: WorkloadState,
    },
    /// The lifecycle does not allow this transition (see [`WorkloadState::can_become`]).
    #[error("workload {id}: {from} -> {to} is not an allowed transition")]
    IllegalTransition {
        /// The workload.
        id: WorkloadId,
        /// Its state.
        from: WorkloadState,
        /// The requested state.
        to: WorkloadState,
    },
    /// An idempotency key was reused for a submission that differs from the first one.
    #[error(
        "idempotency key {key:?} was already used by workload {existing} for a different submission"
    )]
    IdempotencyMismatch {
        /// The key.
        key: String,
        /// The workload the key belongs to.
        existing: WorkloadId,
    },
    /// Only finished workloads may be deleted.
    #[error("workload {id} is {state}: only a finished workload can be deleted")]
    NotFinished {
        /// The workload.
        id: WorkloadId,
        /// Its state.
        state: WorkloadState,
    },
    /// An argument is out of range or malformed.
    #[error("{field}: {problem}")]
    Invalid {
        /// The argument or field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A stored value could not be decoded (hand-edited or damaged database).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A value could not be encoded as JSON.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// `PRAGMA integrity_check` reported problems.
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

impl Error {
    /// An [`Error::Invalid`] for `field`.
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            problem: problem.into(),
        }
    }
}

//! The executor's errors.

use std::io;
use std::path::PathBuf;

/// Why the executor could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The workload id cannot name a log directory.
    #[error(
        "invalid workload id {0:?}: use 1 to 200 of A-Z a-z 0-9 . _ : - and do not start with a dot"
    )]
    InvalidId(String),
    /// The command line is empty.
    #[error("nothing to run: the command is empty")]
    EmptyCommand,
    /// An environment variable name cannot be passed to a process.
    #[error("invalid environment variable name {0:?}: it must be non-empty, without '=' or NUL")]
    InvalidEnvName(String),
    /// A GPU UUID cannot be put in a comma-separated list.
    #[error("invalid GPU UUID {0:?}: it must be non-empty, without ',' or whitespace")]
    InvalidGpuUuid(String),
    /// The working directory is missing or not a directory.
    #[error("working directory {path}: {reason}")]
    WorkingDir {
        /// The directory asked for.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The spec asks for a container image, which the local executor cannot run.
    #[error("the local executor runs plain processes and cannot run the container image {0:?}")]
    ImageUnsupported(String),
    /// The spec has no `run` section, or its duration fields cannot be read.
    #[error("workload spec: {0}")]
    Spec(String),
    /// This attempt already has log or state files: attempts are never interleaved.
    #[error(
        "attempt {attempt} of workload {id} already has files in {dir}: use a new attempt number"
    )]
    AttemptExists {
        /// The workload.
        id: String,
        /// The attempt number that was reused.
        attempt: u32,
        /// The workload's log directory.
        dir: PathBuf,
    },
    /// A recorded process of the workload still runs, so its files are kept.
    #[error("workload {id} attempt {attempt} still runs: stop it before removing its files")]
    StillRunning {
        /// The workload.
        id: String,
        /// The attempt that runs.
        attempt: u32,
    },
    /// The program could not be started (not found, not executable, bad user, limit refused...).
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program named by the command.
        program: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A file or directory of the executor could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A pid or exit record exists but cannot be read.
    #[error("bad record {path}: {reason}")]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `start` was called outside a tokio runtime.
    #[error("the executor needs a tokio runtime (with I/O and time enabled) to supervise children")]
    NoRuntime,
    /// The supervising task ended without reporting an exit (its runtime shut down).
    #[error("the supervisor of workload {id} attempt {attempt} stopped before the child exited")]
    SupervisorGone {
        /// The workload.
        id: String,
        /// The attempt.
        attempt: u32,
    },
}

impl ExecError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ExecError::Io {
            path: path.into(),
            source,
        }
    }
}

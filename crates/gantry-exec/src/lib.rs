//! Gantry's local process executor, used by `gantry serve` (Linux only).
//!
//! - [`launch`]: [`Launch`], what to run: command, env, working dir, GPUs, limits, user, timeout.
//! - [`run`]: [`start`] spawns a child in its own process group with its GPUs made visible and its
//!   output in log files; [`Running`] cancels it and waits for its [`Exit`].
//! - [`record`]: the files under `<log_dir>/<id>/`: `<attempt>.stdout`, `.stderr`, `.pid`, `.exit`.
//! - [`reconcile`]: after a restart, finds children again from their pid records ([`Adopted`]).
//! - [`retry`]: retry backoff and TTL as pure functions, and [`cleanup`] of a workload's files.
//! - [`logs`]: [`read_log`] and [`Follow`] for `gantry logs [-f]`.

#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("gantry-exec supports Linux only (process groups, /proc, setrlimit)");

pub mod error;
pub mod launch;
pub mod logs;
pub mod reconcile;
pub mod record;
pub mod retry;
pub mod run;

pub use error::ExecError;
pub use launch::{AssignedGpu, DEFAULT_GRACE, Launch, Limits, RunAs};
pub use logs::{Follow, LogChunk, read_log};
pub use reconcile::{Adopted, Reconciled, reconcile};
pub use record::{AttemptPaths, ExitRecord, PidRecord, Stream};
pub use retry::{Backoff, cleanup, expired, next_attempt};
pub use run::{Exit, Running, start};

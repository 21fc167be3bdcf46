//! Finding children again after a server restart: [`reconcile`] and [`Adopted`].
//!
//! A restarted server is no longer the parent of the children it started, so it cannot reap them or
//! learn their exit status. It finds them by their pid records (pid plus start time plus boot id, so a
//! recycled pid is never mistaken for ours) and then watches them by polling `/proc`. If the old server
//! saw the exit, it wrote `<attempt>.exit` and the outcome is known ([`Reconciled::Finished`]); if the
//! child ends while the new server watches it, its exit code is unknown ([`Exit::unknown`]); if the
//! child is gone and no exit was recorded, the attempt is [`Reconciled::Lost`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep};

use crate::error::ExecError;
use crate::record::{
    AttemptPaths, ExitRecord, PidRecord, recorded_attempts, unix_ms, write_atomic,
};
use crate::run::{Exit, signal_group};

/// What became of a workload the store believed running.
#[derive(Clone, Debug)]
pub enum Reconciled {
    /// Its latest attempt still runs; watch or stop it through the handle.
    Found(Adopted),
    /// Its latest attempt ended and the exit was recorded.
    Finished {
        /// The attempt.
        attempt: u32,
        /// Its exit.
        exit: Exit,
        /// When the exit was recorded.
        finished_at: SystemTime,
    },
    /// Nothing of it runs and no exit was recorded (or its records are unreadable).
    Lost {
        /// The latest attempt with a pid record, if any.
        attempt: Option<u32>,
        /// Why it counts as lost.
        reason: String,
    },
}

/// Checks each workload id against its latest attempt's records under `log_dir`.
///
/// An unsafe id, a missing or unreadable record, another boot, a dead pid or a pid now used by
/// another process all give [`Reconciled::Lost`] with the reason.
pub fn reconcile<S: AsRef<str>>(log_dir: &std::path::Path, ids: &[S]) -> Vec<(String, Reconciled)> {
    ids.iter()
        .map(|id| {
            let id = id.as_ref();
            (id.to_string(), reconcile_one(log_dir, id))
        })
        .collect()
}

fn reconcile_one(log_dir: &std::path::Path, id: &str) -> Reconciled {
    let lost = |attempt, reason: String| Reconciled::Lost { attempt, reason };
    let attempt = match recorded_attempts(log_dir, id) {
        Ok(attempts) => match attempts.last() {
            Some(&a) => a,
            None => return lost(None, "no pid record".to_string()),
        },
        Err(e) => return lost(None, e.to_string()),
    };
    let paths = match AttemptPaths::new(log_dir, id, attempt) {
        Ok(p) => p,
        Err(e) => return lost(Some(attempt), e.to_string()),
    };
    match ExitRecord::read(&paths.exit) {
        Ok(Some(r)) => {
            return Reconciled::Finished {
                attempt,
                finished_at: r.finished_at(),
                exit: r.exit,
            };
        }
        Ok(None) => {}
        Err(e) => return lost(Some(attempt), e.to_string()),
    }
    let record = match PidRecord::read(&paths.pid) {
        Ok(r) => r,
        Err(e) => return lost(Some(attempt), e.to_string()),
    };
    if record.is_alive() {
        Reconciled::Found(Adopted {
            workload_id: id.to_string(),
            attempt,
            record,
            paths,
            flags: Arc::default(),
        })
    } else {
        lost(
            Some(attempt),
            format!(
                "process {} is gone and no exit was recorded (the server stopped before it)",
                record.pid
            ),
        )
    }
}

/// What an [`Adopted`] child was stopped for.
#[derive(Debug, Default)]
struct Flags {
    timed_out: AtomicBool,
    cancelled: AtomicBool,
}

/// A child found again after a restart: not our child any more, so it is watched by polling.
///
/// Clones share the same state; stopping through one is seen by the others' [`Adopted::wait`].
#[derive(Clone, Debug)]
pub struct Adopted {
    /// The workload id.
    pub workload_id: String,
    /// The attempt.
    pub attempt: u32,
    /// Its pid record.
    pub record: PidRecord,
    /// Its files.
    pub paths: AttemptPaths,
    flags: Arc<Flags>,
}

impl Adopted {
    /// Whether the main process still runs (same pid and start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        self.record.is_alive()
    }

    /// Time since the attempt started, on the wall clock (to re-arm a timeout after a restart).
    pub fn elapsed(&self, now: SystemTime) -> Duration {
        now.duration_since(self.record.started_at())
            .unwrap_or_default()
    }

    /// Polls every `poll` until the main process is gone; records and returns an exit whose code
    /// and signal are unknown (with the timeout or cancel flags if [`Adopted::stop`] was used).
    pub async fn wait(&self, poll: Duration) -> Result<Exit, ExecError> {
        while self.is_alive() {
            sleep(poll).await;
        }
        if let Some(r) = ExitRecord::read(&self.paths.exit)? {
            return Ok(r.exit);
        }
        let now = SystemTime::now();
        let exit = Exit {
            code: None,
            signal: None,
            timed_out: self.flags.timed_out.load(Ordering::SeqCst),
            cancelled: self.flags.cancelled.load(Ordering::SeqCst),
            duration: self.elapsed(now),
        };
        let record = ExitRecord {
            exit: exit.clone(),
            finished_unix_ms: unix_ms(now),
        };
        write_atomic(&self.paths.exit, &record.to_text())?;
        Ok(exit)
    }

    /// Stops it: SIGTERM to its group, up to `grace` (polling every `poll`), then SIGKILL.
    ///
    /// `timed_out` says whether this is a timeout (else a cancel), for the exit [`Adopted::wait`]
    /// records. The group is signalled only while the main process is verified alive: leftovers of an
    /// already-exited main process are not reached after a restart.
    pub async fn stop(&self, grace: Duration, poll: Duration, timed_out: bool) {
        let flag = if timed_out {
            &self.flags.timed_out
        } else {
            &self.flags.cancelled
        };
        flag.store(true, Ordering::SeqCst);
        if !self.is_alive() {
            return;
        }
        signal_group(self.record.pgid, libc::SIGTERM);
        let kill_at = Instant::now() + grace;
        while Instant::now() < kill_at {
            if !self.is_alive() {
                return;
            }
            sleep(poll.min(kill_at.saturating_duration_since(Instant::now()))).await;
        }
        if self.is_alive() {
            signal_group(self.record.pgid, libc::SIGKILL);
        }
    }
}

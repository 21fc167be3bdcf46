//! Runs many (trace, policy, seed) replays in parallel on all cores.

use crate::run::{Prepared, RunError, RunResult};
use gantry_core::Policy;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One replay to run: which prepared trace, policy and seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// Index into the prepared traces.
    pub trace: usize,
    /// The policy.
    pub policy: Policy,
    /// The seed.
    pub seed: u64,
}

/// A finished job: its result and how long it took (wall clock, for reporting only).
pub type Finished = Result<(RunResult, Duration), RunError>;

/// Runs `jobs` on `threads` worker threads; results come back in job order, whatever the scheduling.
pub fn run_grid(
    traces: &[Prepared<'_>],
    jobs: &[Job],
    inflate: f64,
    threads: usize,
    on_done: &(dyn Fn() + Sync),
) -> Vec<Finished> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Finished>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let start = Instant::now();
                    let outcome = traces[job.trace]
                        .run(job.policy, job.seed, inflate)
                        .map(|r| (r, start.elapsed()));
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(outcome);
                    }
                    on_done();
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.expect("every job index below len is taken by exactly one worker"))
        .collect()
}

//! The preempt stage: when a workload cannot start, evict the cheapest set of running workloads that
//! makes room, or none.
//!
//! Candidates are running workloads that are preemptible and of strictly lower priority than the
//! preemptor (never equal or higher). They are tried in order of cost: borrowed (reclaimable) capacity
//! first, then lowest priority, then least progress lost (most recently started), then id. Victims are
//! released one by one until the preemptor fits; then, most expensive first, each victim is given back
//! its exact placement if the preemptor still fits without it. The result is minimal: no victim can be
//! spared. Fewer victims follow from trying the cheapest first and sparing every one not needed.

use super::admit::DIMS;
use super::cluster::{LiveCluster, ReplicaPlacement};
use super::workload::WorkloadId;

/// A running workload, as preemption and backfill see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Running {
    /// The workload.
    pub id: WorkloadId,
    /// Its priority value.
    pub priority: i64,
    /// Whether it may be evicted.
    pub preemptible: bool,
    /// Admitted on borrowed quota.
    pub reclaimable: bool,
    /// Start time.
    pub started: u64,
    /// Expected end time, when its runtime is known.
    pub expected_end: Option<u64>,
    /// Queue index.
    pub queue: usize,
    /// What it uses, summed over replicas (quota dimensions).
    pub usage: [u64; DIMS],
    /// Its replicas.
    pub placements: Vec<ReplicaPlacement>,
}

/// Cost order of a victim: smaller is evicted first.
pub fn victim_cost(r: &Running) -> (bool, i64, std::cmp::Reverse<u64>, WorkloadId) {
    (
        !r.reclaimable,
        r.priority,
        std::cmp::Reverse(r.started),
        r.id,
    )
}

/// The candidates for a preemptor of `priority`, cheapest first.
pub fn candidates<'a>(
    running: impl Iterator<Item = &'a Running>,
    priority: i64,
) -> Vec<&'a Running> {
    let mut c: Vec<&Running> = running
        .filter(|r| r.preemptible && r.priority < priority)
        .collect();
    c.sort_by_key(|r| victim_cost(r));
    c
}

fn release_all(cluster: &mut LiveCluster, r: &Running) -> bool {
    for (i, p) in r.placements.iter().enumerate() {
        if cluster.release(p).is_err() {
            for q in r.placements[..i].iter().rev() {
                let _ = cluster.allocate(q);
            }
            return false;
        }
    }
    true
}

fn restore(cluster: &mut LiveCluster, r: &Running) -> bool {
    for (i, p) in r.placements.iter().enumerate() {
        if cluster.allocate(p).is_err() {
            for q in r.placements[..i].iter().rev() {
                let _ = cluster.release(q);
            }
            return false;
        }
    }
    true
}

/// Chooses victims among `candidates` (cheapest first) so that `fits` holds; on success their capacity
/// is released in `cluster` and their indices in `candidates` are returned, else nothing changes.
///
/// `fits(cluster, victims)` must leave the cluster as it found it (a tentative placement then undo).
pub fn choose_victims(
    cluster: &mut LiveCluster,
    candidates: &[&Running],
    fits: &mut dyn FnMut(&mut LiveCluster, &[usize]) -> bool,
) -> Option<Vec<usize>> {
    let mut victims: Vec<usize> = Vec::new();
    let mut found = false;
    for (i, c) in candidates.iter().enumerate() {
        if !release_all(cluster, c) {
            continue;
        }
        victims.push(i);
        if fits(cluster, &victims) {
            found = true;
            break;
        }
    }
    if !found {
        for &i in victims.iter().rev() {
            let _ = restore(cluster, candidates[i]);
        }
        return None;
    }
    // Spare every victim that is not needed, most expensive first.
    let mut k = victims.len();
    while k > 0 {
        k -= 1;
        let i = victims[k];
        if !restore(cluster, candidates[i]) {
            continue;
        }
        let without: Vec<usize> = victims.iter().copied().filter(|&v| v != i).collect();
        if fits(cluster, &without) {
            victims = without;
        } else {
            let _ = release_all(cluster, candidates[i]);
        }
    }
    Some(victims)
}

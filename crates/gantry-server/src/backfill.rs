//! Head-of-line reservation with backfill on this machine, so a large workload is not starved by a
//! stream of small ones.
//!
//! The first workload in order that passes admission but does not fit (the head) reserves the GPUs it
//! would get once enough running work has ended: running work is released in the order it is expected
//! to end (its start plus its time limit; work without a limit last, oldest first) until the head fits,
//! and the head's placement there is the reservation, due at the latest end among what was released
//! (unknown when any of it has no time limit). Later workloads may still start (backfill) where they
//! do not touch the reserved GPUs, or anywhere if their own time limit ends by the reservation's time.
//! Pure: time is an input.

use crate::schedule::{Machine, Taken, Work, occupied};
use gantry_core::engine::{Engine, EngineConfig};
use gantry_core::model::{GpuDemand, GpuSet, Pod};
use gantry_core::{Cluster, Policy, Rng};

/// The GPUs held for the head-of-line workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The workload they are held for.
    pub head: i64,
    /// When it can start at the latest (ms), if every workload it waits for has a time limit.
    pub at_ms: Option<i64>,
    /// The GPUs (machine slots) and milli it will take.
    pub taken: Vec<Taken>,
}

impl Reservation {
    /// Whether `w`, starting at `now_ms`, ends by the time the reservation is due.
    pub fn ends_in_time(&self, w: &Work, now_ms: i64) -> bool {
        match (self.at_ms, w.limit_ms) {
            (Some(at), Some(limit)) => now_ms.saturating_add(limit) <= at,
            _ => false,
        }
    }

    /// Why `w`, which would fit now, waits instead.
    pub fn reason(&self, nodes: usize) -> String {
        let gpus = self
            .taken
            .iter()
            .map(|t| t.slot.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let when = match self.at_ms {
            Some(at) => format!("it starts at the latest {}", crate::explain::utc(at)),
            None => "its start is unknown: work without a time limit holds them".to_string(),
        };
        format!(
            "0/{nodes} nodes can take it without delaying wl-{head}, first in line, which has GPU(s) {gpus} reserved ({when}); a time limit ending before then would let it start now",
            head = self.head
        )
    }
}

/// When `w` (running) is expected to end: its start plus its time limit.
fn expected_end(w: &Work) -> Option<i64> {
    Some(w.started_at?.saturating_add(w.limit_ms?))
}

/// The reservation for `head`, which does not fit beside `holders` now; `None` when it would not fit
/// even with every holder gone (a constraint, not capacity, holds it) or it needs no GPU.
pub fn reserve(
    machine: &Machine,
    holders: &[(Work, Vec<Taken>)],
    head: &Work,
    policy: Policy,
) -> Option<Reservation> {
    if matches!(head.pod.gpu, GpuDemand::None) {
        return None;
    }
    let mut order: Vec<&(Work, Vec<Taken>)> = holders.iter().collect();
    // Known ends first, earliest first; then the rest, oldest start first; then by id.
    order.sort_by_key(|(w, _)| {
        (
            expected_end(w).is_none(),
            expected_end(w).unwrap_or(0),
            w.started_at.unwrap_or(i64::MAX),
            w.id,
        )
    });
    let mut engine = Engine::new(policy, EngineConfig::default());
    let mut rng = Rng::new(0);
    for released in 1..=order.len() {
        let kept: Vec<(Work, Vec<Taken>)> = order[released..]
            .iter()
            .map(|(w, t)| (w.clone(), t.clone()))
            .collect();
        let (cluster, slots_of) = occupied(machine, &kept);
        let Ok(p) = engine.schedule(&cluster, &head.pod, &mut rng) else {
            continue;
        };
        let gone = &order[..released];
        let at_ms = gone
            .iter()
            .map(|(w, _)| expected_end(w))
            .collect::<Option<Vec<i64>>>()
            .and_then(|ends| ends.into_iter().max());
        let milli = head.pod.gpu.milli_per_gpu();
        let taken = p
            .gpus
            .iter()
            .map(|g| Taken {
                slot: slots_of[p.node][g],
                milli,
            })
            .collect();
        return Some(Reservation {
            head: head.id,
            at_ms,
            taken,
        });
    }
    None
}

/// `cluster` with the reservation's GPUs held: what is free of each now is taken by a phantom, so
/// that later work placed on the result leaves them to the head.
pub fn guarded(cluster: &Cluster, slots_of: &[Vec<usize>], r: &Reservation) -> Cluster {
    let mut out = cluster.clone();
    for t in &r.taken {
        let Some((node, local)) = slots_of
            .iter()
            .enumerate()
            .find_map(|(n, v)| Some((n, v.iter().position(|&s| s == t.slot)?)))
        else {
            continue;
        };
        let free = out.nodes()[node].gpu_free[local];
        let hold = free.min(t.milli as u16);
        if hold == 0 {
            continue;
        }
        let pod = Pod {
            cpu_milli: 0,
            memory_mib: 0,
            gpu: if hold >= 1000 {
                GpuDemand::Whole(1)
            } else {
                GpuDemand::Share(hold)
            },
            models: Default::default(),
        };
        let _ = out.commit(node, &pod, GpuSet(1 << local));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(id: i64, gpus: u8, started_at: Option<i64>, limit_ms: Option<i64>) -> Work {
        let mut w = crate::schedule::test_work(id, 0, GpuDemand::Whole(gpus));
        w.started_at = started_at;
        w.limit_ms = limit_ms;
        w
    }

    fn on(slots: &[usize]) -> Vec<Taken> {
        crate::schedule::test_whole(slots)
    }

    #[test]
    fn the_head_reserves_what_frees_first_and_says_when() {
        let m = crate::schedule::test_machine(4, "H100-80GB", 64_000, 256 * 1024);
        // GPU 0 ends at 5 000, GPU 1 at 9 000, GPU 2 has no limit, GPU 3 is free.
        let holders = [
            (work(1, 1, Some(0), Some(5_000)), on(&[0])),
            (work(2, 1, Some(0), Some(9_000)), on(&[1])),
            (work(3, 1, Some(0), None), on(&[2])),
        ];
        let r = reserve(&m, &holders, &work(9, 2, None, None), Policy::BestFit).expect("reserved");
        assert_eq!(
            r.at_ms,
            Some(5_000),
            "GPU 0 ends first; with GPU 3 that is two"
        );
        let mut slots: Vec<usize> = r.taken.iter().map(|t| t.slot).collect();
        slots.sort();
        assert_eq!(slots, [0, 3]);
        // Four GPUs: everything must go, one without a limit: the time is unknown.
        let r = reserve(&m, &holders, &work(9, 4, None, None), Policy::BestFit).expect("reserved");
        assert_eq!(r.at_ms, None);
        assert_eq!(r.taken.len(), 4);
        // Eight GPUs never fit this machine: no reservation.
        assert_eq!(
            reserve(&m, &holders, &work(9, 8, None, None), Policy::BestFit),
            None
        );
    }

    #[test]
    fn backfill_is_allowed_only_when_it_ends_in_time() {
        let r = Reservation {
            head: 9,
            at_ms: Some(10_000),
            taken: on(&[0]),
        };
        assert!(r.ends_in_time(&work(5, 1, None, Some(4_000)), 6_000));
        assert!(!r.ends_in_time(&work(5, 1, None, Some(4_001)), 6_000));
        assert!(
            !r.ends_in_time(&work(5, 1, None, None), 0),
            "no limit: never in time"
        );
        let unknown = Reservation { at_ms: None, ..r };
        assert!(!unknown.ends_in_time(&work(5, 1, None, Some(1)), 0));
    }

    #[test]
    fn the_guard_holds_only_what_is_free_of_the_reserved_gpus() {
        let m = crate::schedule::test_machine(4, "H100-80GB", 64_000, 256 * 1024);
        let holders = [(work(1, 1, Some(0), Some(5_000)), on(&[0]))];
        let (cluster, slots_of) = occupied(&m, &holders);
        let r = Reservation {
            head: 9,
            at_ms: Some(5_000),
            taken: on(&[0, 1]),
        };
        let g = guarded(&cluster, &slots_of, &r);
        let free = &g.nodes()[0].gpu_free[..4];
        assert_eq!(free, [0, 0, 1000, 1000]);
        // A two-GPU job fits beside the reservation (GPUs 2, 3), a three-GPU one does not.
        let mut engine = Engine::new(Policy::BestFit, EngineConfig::default());
        let mut rng = Rng::new(0);
        assert!(
            engine
                .schedule(&g, &work(5, 2, None, None).pod, &mut rng)
                .is_ok()
        );
        assert!(
            engine
                .schedule(&g, &work(5, 3, None, None).pod, &mut rng)
                .is_err()
        );
    }
}

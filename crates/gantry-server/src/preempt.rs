//! Preemption on this machine: when a waiting workload cannot fit, the cheapest set of running,
//! preemptible workloads whose stopping lets it fit, or why there is none. A victim is of strictly
//! lower priority, or (reclaim) runs on quota its queue borrowed from the cohort while the waiting
//! workload is within its own queue's guarantee, whatever the priorities.
//!
//! Cooperative: the runner stops each victim with SIGTERM and SIGKILLs it only after the grace
//! period (a workload checkpoints on SIGTERM), so the preemptor starts once the victims have gone; a
//! victim is requeued, not failed. A workload that has run less than the minimum runtime is not a
//! victim yet. Victims are tried cheapest first (borrowed quota, then lowest priority, then least
//! progress lost: the most recently started, then the newest id); once the preemptor fits, every victim it still fits without
//! is spared, most expensive first, so no victim is stopped needlessly. Pure: time is an input.

use crate::schedule::{Machine, Taken, Work, occupied};
use gantry_core::engine::{Engine, EngineConfig};
use gantry_core::{Policy, Rng};
use std::collections::{HashMap, HashSet};

/// A running workload with what preemption needs to know of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// What it needs (id, priority, pod).
    pub work: Work,
    /// The GPUs it holds.
    pub taken: Vec<Taken>,
    /// Whether it may be preempted (`preemptible` in its spec).
    pub preemptible: bool,
    /// When its current attempt started, ms.
    pub started_at: i64,
    /// Its queue uses more than its guarantee (borrowed from the cohort): reclaimable.
    pub borrowed: bool,
}

/// The rules the operator sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Whether higher-priority work may stop lower-priority work at all.
    pub enabled: bool,
    /// How long a workload runs before it may be preempted, ms.
    pub min_runtime_ms: i64,
}

impl Default for Rules {
    /// On, after one minute of runtime.
    fn default() -> Self {
        Rules {
            enabled: true,
            min_runtime_ms: 60_000,
        }
    }
}

/// What preemption decided for one waiting workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preemption {
    /// Stop these workloads (ids, cheapest first); then it fits.
    Evict(Vec<i64>),
    /// It fits once the workloads already stopping for it have gone (ids).
    AwaitStopping(Vec<i64>),
    /// Stopping lower-priority work would make room, but not before `at_ms` (minimum runtime).
    NotYet {
        /// The earliest time enough of them may be stopped.
        at_ms: i64,
    },
    /// Nothing to do: the reason.
    No(String),
}

impl Preemption {
    /// The waiting reason's preemption part, for people (`ids` printed as `wl-N`).
    pub fn describe(&self, grace_s: u64) -> String {
        let names = |ids: &[i64]| {
            ids.iter()
                .map(|i| format!("wl-{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Preemption::Evict(ids) => format!(
                "preempting {} (SIGTERM, SIGKILL after {grace_s}s)",
                names(ids)
            ),
            Preemption::AwaitStopping(ids) => {
                format!("waiting for preempted {} to stop", names(ids))
            }
            Preemption::NotYet { at_ms } => format!(
                "lower-priority work may be preempted from {} (minimum runtime)",
                crate::explain::utc(*at_ms)
            ),
            Preemption::No(why) => why.clone(),
        }
    }
}

/// What preemption looks at: the machine, what runs on it, what is already being stopped, and when.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// The machine.
    pub machine: &'a Machine,
    /// The running workloads.
    pub holders: &'a [Holder],
    /// Victims already being stopped, each with the workload it is stopped for.
    pub stopping: &'a HashMap<i64, i64>,
    /// The placement strategy (what "fits" means).
    pub policy: Policy,
    /// Now, ms.
    pub now_ms: i64,
    /// The operator's rules.
    pub rules: Rules,
}

/// The workload preemption makes room for.
#[derive(Debug, Clone, Copy)]
pub struct Preemptor<'a> {
    /// What it needs.
    pub work: &'a Work,
    /// Its queue admits it within the guarantee: it may reclaim quota other queues borrowed.
    pub within_guarantee: bool,
}

/// Decides preemption for `preemptor`, which does not fit beside the holders.
///
/// Holders already being stopped for it are released in the check; those being stopped for other
/// workloads stay held and are never its victims.
pub fn decide(s: &Situation<'_>, who: Preemptor<'_>) -> Preemption {
    let preemptor = who.work;
    let (machine, policy, rules, now_ms) = (s.machine, s.policy, s.rules, s.now_ms);
    let holders = s.holders;
    if !rules.enabled {
        return Preemption::No("preemption is off on this server".into());
    }
    let stopping_for_it: HashSet<i64> = s
        .stopping
        .iter()
        .filter(|(_, p)| **p == preemptor.id)
        .map(|(v, _)| *v)
        .collect();
    let stopping_for_others: HashSet<i64> = s
        .stopping
        .iter()
        .filter(|(_, p)| **p != preemptor.id)
        .map(|(v, _)| *v)
        .collect();
    let awaiting: Vec<i64> = holders
        .iter()
        .map(|h| h.work.id)
        .filter(|id| stopping_for_it.contains(id))
        .collect();
    let kept: Vec<&Holder> = holders
        .iter()
        .filter(|h| !stopping_for_it.contains(&h.work.id))
        .collect();
    if fits(machine, &kept, preemptor, policy) {
        return match awaiting.is_empty() {
            false => Preemption::AwaitStopping(awaiting),
            true => Preemption::No("it fits without stopping anything".into()),
        };
    }
    let mut candidates: Vec<&Holder> = kept
        .iter()
        .copied()
        .filter(|h| {
            let reclaim = who.within_guarantee && h.borrowed && h.work.queue != preemptor.queue;
            h.preemptible
                && (h.work.priority < preemptor.priority || reclaim)
                && !stopping_for_others.contains(&h.work.id)
        })
        .collect();
    if candidates.is_empty() {
        return Preemption::No(
            if kept.iter().any(|h| h.work.priority < preemptor.priority) {
                "no lower-priority running workload is preemptible".into()
            } else {
                "no lower-priority work runs".into()
            },
        );
    }
    // Cheapest first: borrowed, then lowest priority, then the most recently started, then the newest.
    candidates.sort_by(|a, b| {
        b.borrowed
            .cmp(&a.borrowed)
            .then(a.work.priority.cmp(&b.work.priority))
            .then(b.started_at.cmp(&a.started_at))
            .then(b.work.id.cmp(&a.work.id))
    });
    let eligible_at = |h: &Holder| h.started_at.saturating_add(rules.min_runtime_ms);
    let (now_ok, later): (Vec<&Holder>, Vec<&Holder>) =
        candidates.iter().partition(|h| eligible_at(h) <= now_ms);
    if let Some(victims) = cheapest(machine, &kept, &now_ok, preemptor, policy) {
        return Preemption::Evict(victims);
    }
    // Not now: when enough younger ones have passed the minimum runtime, in the order they do.
    let mut later = later;
    later.sort_by_key(|h| eligible_at(h));
    let mut pool = now_ok;
    for h in later {
        pool.push(h);
        if cheapest(machine, &kept, &pool, preemptor, policy).is_some() {
            return Preemption::NotYet {
                at_ms: eligible_at(h),
            };
        }
    }
    Preemption::No("stopping every lower-priority preemptible workload would not make room".into())
}

/// The victims among `pool` (cheapest first) that let `preemptor` fit, none spared needlessly.
fn cheapest(
    machine: &Machine,
    kept: &[&Holder],
    pool: &[&Holder],
    preemptor: &Work,
    policy: Policy,
) -> Option<Vec<i64>> {
    let mut out: HashSet<i64> = HashSet::new();
    let without = |out: &HashSet<i64>| -> Vec<&Holder> {
        kept.iter()
            .copied()
            .filter(|h| !out.contains(&h.work.id))
            .collect()
    };
    let mut fit = false;
    for h in pool {
        out.insert(h.work.id);
        if fits(machine, &without(&out), preemptor, policy) {
            fit = true;
            break;
        }
    }
    if !fit {
        return None;
    }
    // Spare the most expensive first, each one the preemptor still fits without stopping.
    let chosen: Vec<i64> = pool
        .iter()
        .map(|h| h.work.id)
        .filter(|id| out.contains(id))
        .collect();
    for id in chosen.iter().rev() {
        out.remove(id);
        if !fits(machine, &without(&out), preemptor, policy) {
            out.insert(*id);
        }
    }
    Some(chosen.into_iter().filter(|id| out.contains(id)).collect())
}

fn fits(machine: &Machine, holders: &[&Holder], w: &Work, policy: Policy) -> bool {
    let running: Vec<(Work, Vec<Taken>)> = holders
        .iter()
        .map(|h| (h.work.clone(), h.taken.clone()))
        .collect();
    let (cluster, _) = occupied(machine, &running);
    Engine::new(policy, EngineConfig::default())
        .schedule(&cluster, &w.pod, &mut Rng::new(0))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::model::GpuDemand;

    fn machine(gpus: u32) -> Machine {
        crate::schedule::test_machine(gpus, "H100-80GB", 64_000, 256 * 1024)
    }

    fn work(id: i64, priority: i64, gpus: u8) -> Work {
        crate::schedule::test_work(id, priority, GpuDemand::Whole(gpus))
    }

    fn holder(id: i64, priority: i64, slots: &[usize], started_at: i64) -> Holder {
        Holder {
            work: work(id, priority, slots.len() as u8),
            taken: crate::schedule::test_whole(slots),
            preemptible: true,
            started_at,
            borrowed: false,
        }
    }

    const RULES: Rules = Rules {
        enabled: true,
        min_runtime_ms: 60_000,
    };
    const NOW: i64 = 1_000_000;

    fn decide_with(
        holders: &[Holder],
        preemptor: &Work,
        stopping: &[(i64, i64)],
        rules: Rules,
    ) -> Preemption {
        let stopping: HashMap<i64, i64> = stopping.iter().copied().collect();
        let m = machine(4);
        let s = Situation {
            machine: &m,
            holders,
            stopping: &stopping,
            policy: Policy::BestFit,
            now_ms: NOW,
            rules,
        };
        decide(
            &s,
            Preemptor {
                work: preemptor,
                within_guarantee: false,
            },
        )
    }

    fn decide_now(holders: &[Holder], preemptor: &Work, stopping_for_it: &[i64]) -> Preemption {
        let stopping: Vec<(i64, i64)> =
            stopping_for_it.iter().map(|v| (*v, preemptor.id)).collect();
        decide_with(holders, preemptor, &stopping, RULES)
    }

    #[test]
    fn the_cheapest_sufficient_victims_are_chosen_and_none_needlessly() {
        // 4 GPUs: 1 (prio 100, one GPU), 2 (prio 100, one GPU, started later), 3 (prio 500, two GPUs).
        let holders = [
            holder(1, 100, &[0], 0),
            holder(2, 100, &[1], 10),
            holder(3, 500, &[2, 3], 0),
        ];
        // Needs 2 GPUs at priority 1000: the two cheap ones suffice; the 500 one is spared.
        let mut got = match decide_now(&holders, &work(9, 1000, 2), &[]) {
            Preemption::Evict(v) => v,
            other => panic!("{other:?}"),
        };
        got.sort();
        assert_eq!(got, [1, 2]);
        // Needs 1 GPU: only the most recently started of the lowest priority (least progress lost).
        assert_eq!(
            decide_now(&holders, &work(9, 1000, 1), &[]),
            Preemption::Evict(vec![2])
        );
        // Needs 3 GPUs: tried cheapest first (2, 1) which is not enough, then 3; then 2 and 1 are
        // spared in turn if possible: with 3 stopped (2 GPUs) one more GPU is needed, so one of the
        // cheap ones stays stopped.
        let got = match decide_now(&holders, &work(9, 1000, 3), &[]) {
            Preemption::Evict(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.contains(&3));
    }

    #[test]
    fn equal_or_higher_priority_and_non_preemptible_work_is_never_a_victim() {
        let mut holders = [holder(1, 1000, &[0, 1], 0), holder(2, 100, &[2, 3], 0)];
        holders[1].preemptible = false;
        assert_eq!(
            decide_now(&holders, &work(9, 1000, 2), &[]),
            Preemption::No("no lower-priority running workload is preemptible".into())
        );
        holders[1].preemptible = true;
        assert_eq!(
            decide_now(&holders, &work(9, 1000, 2), &[]),
            Preemption::Evict(vec![2])
        );
        // Needing all four GPUs, the equal-priority one would have to go too: no.
        assert_eq!(
            decide_now(&holders, &work(9, 1000, 4), &[]),
            Preemption::No(
                "stopping every lower-priority preemptible workload would not make room".into()
            )
        );
    }

    #[test]
    fn young_work_waits_for_its_minimum_runtime() {
        let holders = [holder(1, 100, &[0, 1, 2, 3], NOW - 20_000)];
        assert_eq!(
            decide_now(&holders, &work(9, 1000, 1), &[]),
            Preemption::NotYet {
                at_ms: NOW + 40_000
            }
        );
    }

    #[test]
    fn victims_already_stopping_are_awaited_not_added_to() {
        let holders = [holder(1, 100, &[0, 1], 0), holder(2, 100, &[2, 3], 0)];
        assert_eq!(
            decide_now(&holders, &work(9, 1000, 2), &[1]),
            Preemption::AwaitStopping(vec![1])
        );
        // Stopping for another workload: neither released nor a victim for this one.
        assert_eq!(
            decide_with(&holders, &work(9, 1000, 2), &[(1, 8)], RULES),
            Preemption::Evict(vec![2])
        );
    }

    #[test]
    fn a_queue_within_its_guarantee_reclaims_borrowed_quota_whatever_the_priority() {
        let on = |mut h: Holder, q: &str, borrowed: bool| {
            h.work.queue = q.into();
            h.borrowed = borrowed;
            h
        };
        // Equal priorities: team a holds all four GPUs, two of them borrowed from b's guarantee.
        let holders = [
            on(holder(1, 100, &[0], 0), "a", true),
            on(holder(2, 100, &[1], 10), "a", true),
            on(holder(3, 100, &[2, 3], 0), "a", true),
        ];
        let mut b = work(9, 100, 1);
        b.queue = "b".into();
        let m = machine(4);
        let none = HashMap::new();
        let s = Situation {
            machine: &m,
            holders: &holders,
            stopping: &none,
            policy: Policy::BestFit,
            now_ms: NOW,
            rules: RULES,
        };
        let within = |work: &Work, within_guarantee| {
            decide(
                &s,
                Preemptor {
                    work,
                    within_guarantee,
                },
            )
        };
        assert_eq!(
            within(&b, true),
            Preemption::Evict(vec![2]),
            "the most recent borrowed one"
        );
        // Beyond its guarantee b cannot reclaim, and equal priority is no reason to preempt.
        assert!(matches!(within(&b, false), Preemption::No(_)));
        // A queue never reclaims from itself.
        b.queue = "a".into();
        assert!(matches!(within(&b, true), Preemption::No(_)));
    }

    #[test]
    fn off_means_off() {
        let holders = [holder(1, 100, &[0, 1, 2, 3], 0)];
        let rules = Rules {
            enabled: false,
            ..RULES
        };
        let got = decide_with(&holders, &work(9, 1000, 1), &[], rules);
        assert_eq!(
            got,
            Preemption::No("preemption is off on this server".into())
        );
    }
}

//! The admit stage: queue quotas and borrowing inside a cohort.
//!
//! Quota dimensions are GPU milli, CPU milli and memory MiB. A queue *governs* a dimension when its
//! guarantee or its borrowing limit names it; ungoverned dimensions are unlimited. In a governed dimension
//! a queue may use up to `guaranteed + borrowingLimit` (an absent limit is unlimited inside a cohort and 0
//! without one). Use above the guarantee is *borrowed*: it must also fit the cohort's capacity (the sum of
//! its queues' guarantees plus the capacity no queue is guaranteed), and a workload admitted with any
//! borrowed amount is tagged reclaimable, so preemption takes it first.
//! When the cluster declares no queues, every queue is unlimited.

use crate::spec::QueueSpec;
use std::collections::BTreeMap;

/// Number of quota dimensions (GPU milli, CPU milli, memory MiB).
pub const DIMS: usize = 3;

/// Dimension names, for messages.
pub const DIM_NAMES: [&str; DIMS] = ["gpu milli", "cpu milli", "memory MiB"];

/// A queue's quotas and current usage.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueState {
    /// Name.
    pub name: String,
    /// Cohort it borrows in, if any.
    pub cohort: Option<String>,
    /// Fair-share weight.
    pub weight: f64,
    /// Guarantee per dimension (`None` = not governed by a guarantee).
    pub guaranteed: [Option<u64>; DIMS],
    /// Borrowing limit per dimension (`None` = not declared).
    pub borrowing_limit: [Option<u64>; DIMS],
    /// What its running workloads use.
    pub usage: [u64; DIMS],
}

impl QueueState {
    /// A queue with no quota (every dimension unlimited).
    pub fn unlimited(name: &str) -> Self {
        QueueState {
            name: name.to_string(),
            cohort: None,
            weight: 1.0,
            guaranteed: [None; DIMS],
            borrowing_limit: [None; DIMS],
            usage: [0; DIMS],
        }
    }

    /// From a (validated) queue spec; unreadable amounts count as absent.
    pub fn from_spec(q: &QueueSpec) -> Self {
        let quota = |x: Option<&crate::spec::Quota>| -> [Option<u64>; DIMS] {
            match x {
                None => [None; DIMS],
                Some(q) => [
                    q.gpus.as_ref().and_then(|g| g.milli().ok()),
                    q.cpu.as_ref().and_then(|c| c.milli().ok()),
                    q.memory.as_ref().and_then(|m| m.mib().ok()),
                ],
            }
        };
        QueueState {
            name: q.name.clone(),
            cohort: q.cohort.clone(),
            weight: if q.weight > 0.0 { q.weight } else { 1.0 },
            guaranteed: quota(Some(&q.guaranteed)),
            borrowing_limit: quota(q.borrowing_limit.as_ref()),
            usage: [0; DIMS],
        }
    }

    /// True when dimension `d` is governed.
    pub fn governs(&self, d: usize) -> bool {
        self.guaranteed[d].is_some() || self.borrowing_limit[d].is_some()
    }

    /// The guarantee in dimension `d` (0 when only a limit is declared).
    pub fn guarantee(&self, d: usize) -> u64 {
        self.guaranteed[d].unwrap_or(0)
    }

    /// The most it may use in dimension `d` (`u64::MAX` = unlimited).
    pub fn cap(&self, d: usize) -> u64 {
        if !self.governs(d) {
            return u64::MAX;
        }
        let limit = match (self.borrowing_limit[d], &self.cohort) {
            (Some(l), _) => l,
            (None, Some(_)) => u64::MAX,
            (None, None) => 0,
        };
        self.guarantee(d).saturating_add(limit)
    }
}

/// The result of admission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Within the guarantee.
    Guaranteed,
    /// Partly borrowed: reclaimable.
    Borrowed,
    /// Over quota; the reason names the queue, the dimension and the amounts.
    Refused(String),
}

/// Every queue, by name.
#[derive(Clone, Debug, Default)]
pub struct Queues {
    /// The queues, in declaration order.
    pub list: Vec<QueueState>,
    by_name: BTreeMap<String, usize>,
    /// True when the cluster declares queues (workloads must name one of them).
    pub enforced: bool,
    /// Capacity per dimension no queue is guaranteed.
    pub unassigned: [u64; DIMS],
}

impl Queues {
    /// Queues of a cluster with capacity `totals`; none declared = unlimited queues made on demand.
    pub fn new(specs: &[QueueSpec], totals: [u64; DIMS]) -> Self {
        let mut q = Queues {
            enforced: !specs.is_empty(),
            ..Queues::default()
        };
        for s in specs {
            q.add(QueueState::from_spec(s));
        }
        for (d, total) in totals.iter().enumerate() {
            let g: u64 = q.list.iter().map(|x| x.guarantee(d)).sum();
            q.unassigned[d] = total.saturating_sub(g);
        }
        q
    }

    fn add(&mut self, s: QueueState) -> usize {
        self.by_name.insert(s.name.clone(), self.list.len());
        self.list.push(s);
        self.list.len() - 1
    }

    /// The index of queue `name`; when queues are not enforced an unlimited one is created.
    pub fn resolve(&mut self, name: &str) -> Option<usize> {
        match self.by_name.get(name) {
            Some(&i) => Some(i),
            None if !self.enforced => Some(self.add(QueueState::unlimited(name))),
            None => None,
        }
    }

    /// The index of queue `name`, if known.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Usage of the queues of `cohort` in dimension `d`, and their guarantees.
    fn cohort_sums(&self, cohort: &str, d: usize, released: &[[u64; DIMS]]) -> (u64, u64) {
        let mut usage = 0u64;
        let mut guarantee = 0u64;
        for (i, s) in self.list.iter().enumerate() {
            if s.cohort.as_deref() == Some(cohort) {
                let back = released.get(i).map_or(0, |r| r[d]);
                usage = usage.saturating_add(s.usage[d].saturating_sub(back));
                guarantee = guarantee.saturating_add(s.guarantee(d));
            }
        }
        (usage, guarantee)
    }

    /// Whether queue `q` may take `demand` more, if `released[i]` of queue i's usage were given back
    /// (missing entries: nothing released).
    pub fn admit(&self, q: usize, demand: [u64; DIMS], released: &[[u64; DIMS]]) -> Admission {
        let Some(s) = self.list.get(q) else {
            return Admission::Refused(format!("no queue #{q}"));
        };
        let mut borrowed = false;
        for d in 0..DIMS {
            if !s.governs(d) || demand[d] == 0 {
                continue;
            }
            let back = released.get(q).map_or(0, |r| r[d]);
            let after = s.usage[d].saturating_sub(back).saturating_add(demand[d]);
            let cap = s.cap(d);
            if after > cap {
                return Admission::Refused(format!(
                    "queue {}: {} would be {after}, over guarantee {} + borrowing limit {}",
                    s.name,
                    DIM_NAMES[d],
                    s.guarantee(d),
                    cap - s.guarantee(d)
                ));
            }
            if after > s.guarantee(d) {
                borrowed = true;
                if let Some(c) = &s.cohort {
                    let (usage, guarantee) = self.cohort_sums(c, d, released);
                    let capacity = guarantee.saturating_add(self.unassigned[d]);
                    if usage.saturating_add(demand[d]) > capacity {
                        return Admission::Refused(format!(
                            "queue {}: cohort {c} has no {} left to lend ({} of {} in use)",
                            s.name, DIM_NAMES[d], usage, capacity
                        ));
                    }
                }
            }
        }
        if borrowed {
            Admission::Borrowed
        } else {
            Admission::Guaranteed
        }
    }

    /// Dominant-resource share of queue `q` over its weight (usage / capacity, the largest dimension).
    pub fn share(&self, q: usize, totals: [u64; DIMS]) -> f64 {
        let Some(s) = self.list.get(q) else {
            return 0.0;
        };
        let dominant = (0..DIMS)
            .filter(|&d| totals[d] > 0)
            .map(|d| s.usage[d] as f64 / totals[d] as f64)
            .fold(0.0, f64::max);
        dominant / s.weight
    }

    /// Queues over `guarantee + borrowing limit` in some dimension, as messages (must stay empty).
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.list {
            for (d, name) in DIM_NAMES.iter().enumerate() {
                if s.usage[d] > s.cap(d) {
                    out.push(format!(
                        "queue {}: {} {} over cap {}",
                        s.name,
                        name,
                        s.usage[d],
                        s.cap(d)
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, cohort: Option<&str>, gpus: Option<u64>, limit: Option<u64>) -> QueueState {
        QueueState {
            cohort: cohort.map(str::to_string),
            guaranteed: [gpus, None, None],
            borrowing_limit: [limit, None, None],
            ..QueueState::unlimited(name)
        }
    }

    fn queues(list: Vec<QueueState>, total_gpus: u64) -> Queues {
        let mut out = Queues {
            enforced: true,
            ..Queues::default()
        };
        for s in list {
            out.add(s);
        }
        let g: u64 = out.list.iter().map(|s| s.guarantee(0)).sum();
        out.unassigned = [total_gpus.saturating_sub(g), 0, 0];
        out
    }

    const GPU: [u64; DIMS] = [1000, 0, 0];

    #[test]
    fn guarantee_then_borrowing_then_the_limit() {
        let mut qs = queues(vec![q("a", Some("c"), Some(8000), Some(4000))], 16000);
        assert_eq!(qs.admit(0, [8000, 0, 0], &[]), Admission::Guaranteed);
        qs.list[0].usage[0] = 8000;
        assert_eq!(qs.admit(0, GPU, &[]), Admission::Borrowed);
        qs.list[0].usage[0] = 12000;
        let Admission::Refused(why) = qs.admit(0, GPU, &[]) else {
            panic!("over the limit must be refused");
        };
        assert!(
            why.contains("guarantee 8000 + borrowing limit 4000"),
            "{why}"
        );
        // Giving back one GPU of its own makes room again.
        assert_eq!(qs.admit(0, GPU, &[GPU]), Admission::Borrowed);
    }

    #[test]
    fn no_cohort_means_no_borrowing_and_no_quota_means_unlimited() {
        let qs = queues(
            vec![
                q("solo", None, Some(2000), None),
                QueueState::unlimited("free"),
            ],
            8000,
        );
        assert_eq!(qs.list[0].cap(0), 2000);
        assert!(matches!(
            qs.admit(0, [3000, 0, 0], &[]),
            Admission::Refused(_)
        ));
        assert_eq!(qs.admit(1, [1_000_000, 0, 0], &[]), Admission::Guaranteed);
    }

    #[test]
    fn borrowing_stops_at_the_cohort_capacity_but_guarantees_do_not() {
        let mut qs = queues(
            vec![
                q("a", Some("c"), Some(4000), None),
                q("b", Some("c"), Some(4000), None),
            ],
            8000,
        );
        qs.list[0].usage[0] = 8000; // a borrowed all of b's idle guarantee
        assert!(matches!(qs.admit(0, GPU, &[]), Admission::Refused(r) if r.contains("cohort c")));
        // b is within its guarantee: admitted (preemption reclaims a's borrowed GPUs).
        assert_eq!(qs.admit(1, GPU, &[]), Admission::Guaranteed);
        assert!(qs.violations().is_empty());
        assert!((qs.share(0, [8000, 1, 1]) - 1.0).abs() < 1e-9);
    }
}

//! Queue quotas and fair share on this machine: which pending work its queue admits, and in which
//! order queues take turns.
//!
//! The rules are the engine's (`gantry_core::live::admit`): quota dimensions are GPU milli, CPU milli
//! and memory MiB; a queue may use its guarantee, plus what it may borrow inside its cohort (up to its
//! borrowing limit, while the cohort has capacity left); a dimension a queue names no amount for is not
//! limited. With no queues declared every queue is unlimited. The fair-share standing of a queue is
//! the dominant share of the machine its running work holds, over its weight: lower goes first among
//! work of equal priority. Pure: no clock, no I/O.

use crate::schedule::{Machine, Work};
use gantry_core::live::admit::{Admission, DIMS, Queues};
use gantry_core::model::GpuDemand;
use gantry_core::spec::QueueSpec;
use std::collections::HashMap;

/// What one workload uses, per quota dimension (GPU milli, CPU milli, memory MiB).
pub fn usage(work: &Work) -> [u64; DIMS] {
    let gpu = match work.pod.gpu {
        GpuDemand::None => 0,
        GpuDemand::Share(m) => u64::from(m),
        GpuDemand::Whole(n) => u64::from(n) * 1000,
    };
    [gpu, work.pod.cpu_milli, work.pod.memory_mib]
}

/// The machine's capacity per quota dimension.
pub fn totals(machine: &Machine) -> [u64; DIMS] {
    [
        machine.slots.len() as u64 * 1000,
        machine.cpu_milli,
        machine.memory_mib,
    ]
}

/// The queues with what their running work uses now.
#[derive(Debug, Clone)]
pub struct Quotas {
    queues: Queues,
    totals: [u64; DIMS],
}

impl Quotas {
    /// `specs` (empty = every queue unlimited) on `machine`, charged with `running`.
    pub fn new(specs: &[QueueSpec], machine: &Machine, running: &[Work]) -> Self {
        let totals = totals(machine);
        let mut q = Quotas {
            queues: Queues::new(specs, totals),
            totals,
        };
        for w in running {
            q.charge(w);
        }
        q
    }

    /// No quotas at all (every queue unlimited, no usage): for forecasts that ignore admission.
    pub fn unlimited(machine: &Machine) -> Self {
        Quotas::new(&[], machine, &[])
    }

    fn index(&mut self, queue: &str) -> Option<usize> {
        self.queues.resolve(queue)
    }

    /// Whether `work`'s queue admits it now; the refusal names the queue, the dimension and amounts.
    pub fn admit(&mut self, work: &Work) -> Result<(), String> {
        let Some(q) = self.index(&work.queue) else {
            return Err(format!(
                "queue {:?} is not declared on this server (see GET /api/queues)",
                work.queue
            ));
        };
        match self.queues.admit(q, usage(work), &[]) {
            Admission::Refused(why) => Err(why),
            Admission::Guaranteed | Admission::Borrowed => Ok(()),
        }
    }

    /// Whether `work` fits its queue's guarantee now (no borrowing needed).
    pub fn within_guarantee(&mut self, work: &Work) -> bool {
        self.index(&work.queue)
            .is_some_and(|q| self.queues.admit(q, usage(work), &[]) == Admission::Guaranteed)
    }

    /// Whether queue `name` uses more than its guarantee in a dimension it governs (borrowed).
    pub fn borrowing(&self, name: &str) -> bool {
        self.queues
            .get(name)
            .and_then(|i| self.queues.list.get(i))
            .is_some_and(|s| (0..DIMS).any(|d| s.governs(d) && s.usage[d] > s.guarantee(d)))
    }

    /// Counts `work` as running in its queue.
    pub fn charge(&mut self, work: &Work) {
        let Some(q) = self.index(&work.queue) else {
            return;
        };
        if let Some(s) = self.queues.list.get_mut(q) {
            for (u, x) in s.usage.iter_mut().zip(usage(work)) {
                *u = u.saturating_add(x);
            }
        }
    }

    /// Each queue's fair-share standing: dominant share of the machine in use, over its weight.
    pub fn shares(&self) -> Shares {
        self.queues
            .list
            .iter()
            .enumerate()
            // Bounded weights keep this finite; the clamp keeps JSON numbers even if not.
            .map(|(i, s)| (s.name.clone(), self.queues.share(i, self.totals).min(1e12)))
            .collect()
    }

    /// What queue `name` uses now, per dimension (zero for an unknown queue).
    pub fn used(&self, name: &str) -> [u64; DIMS] {
        self.queues
            .get(name)
            .and_then(|i| self.queues.list.get(i))
            .map_or([0; DIMS], |s| s.usage)
    }
}

/// Fair-share standing per queue name (absent = 0: a queue with nothing running).
pub type Shares = HashMap<String, f64>;

/// The shares of `specs`' queues with `running` work on `machine`.
pub fn shares(specs: &[QueueSpec], machine: &Machine, running: &[Work]) -> Shares {
    Quotas::new(specs, machine, running).shares()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::spec::Quota;

    fn machine(gpus: u32) -> Machine {
        crate::schedule::test_machine(gpus, "H100-80GB", 64_000, 256 * 1024)
    }

    fn work(id: i64, queue: &str, gpus: u8) -> Work {
        let mut w = crate::schedule::test_work(id, 0, GpuDemand::Whole(gpus));
        w.queue = queue.into();
        w
    }

    fn queue(name: &str, gpus: &str, cohort: Option<&str>, limit: Option<&str>) -> QueueSpec {
        let mut q = QueueSpec::named(name);
        q.guaranteed = Quota {
            gpus: Some(gpus.into()),
            ..Quota::default()
        };
        q.cohort = cohort.map(str::to_string);
        q.borrowing_limit = limit.map(|l| Quota {
            gpus: Some(l.into()),
            ..Quota::default()
        });
        q
    }

    #[test]
    fn a_queue_gets_its_guarantee_and_no_more_without_a_cohort() {
        let m = machine(8);
        let specs = [
            queue("research", "2", None, None),
            queue("prod", "6", None, None),
        ];
        let mut q = Quotas::new(&specs, &m, &[work(1, "research", 1)]);
        assert_eq!(q.admit(&work(2, "research", 1)), Ok(()));
        q.charge(&work(2, "research", 1));
        let refused = q.admit(&work(3, "research", 1)).unwrap_err();
        assert_eq!(
            refused,
            "queue research: gpu milli would be 3000, over guarantee 2000 + borrowing limit 0"
        );
        // CPU and memory are not governed: only GPUs were given an amount.
        assert_eq!(q.used("research"), [2000, 2000, 2048]);
        assert!(q.admit(&work(4, "prod", 6)).is_ok());
        // An undeclared queue is refused once queues are declared.
        assert!(
            q.admit(&work(5, "nope", 1))
                .unwrap_err()
                .contains("\"nope\"")
        );
    }

    #[test]
    fn a_cohort_lends_unused_guarantees_up_to_the_borrowing_limit() {
        let m = machine(8);
        let specs = [
            queue("a", "4", Some("lab"), Some("2")),
            queue("b", "4", Some("lab"), None),
        ];
        let mut q = Quotas::new(&specs, &m, &[work(1, "a", 4)]);
        assert!(q.admit(&work(2, "a", 2)).is_ok(), "borrows 2 of b's");
        let refused = q.admit(&work(3, "a", 3)).unwrap_err();
        assert!(
            refused.contains("over guarantee 4000 + borrowing limit 2000"),
            "{refused}"
        );
        // b has no limit in the cohort: all of the machine, while a leaves it room.
        q.charge(&work(2, "a", 2));
        assert!(q.admit(&work(4, "b", 2)).is_ok());
        assert!(q.borrowing("a") && !q.borrowing("b"));
        assert!(q.within_guarantee(&work(4, "b", 2)));
        assert!(!q.within_guarantee(&work(4, "a", 1)));
        // Within its own guarantee b is admitted even while a borrows (the GPUs may still be busy);
        // above it, b borrows, and the cohort has nothing left to lend.
        assert!(q.admit(&work(5, "b", 4)).is_ok());
        let refused = q.admit(&work(5, "b", 5)).unwrap_err();
        assert!(
            refused.contains("cohort lab has no gpu milli left"),
            "{refused}"
        );
    }

    #[test]
    fn no_queues_declared_means_unlimited_and_shares_follow_usage_over_weight() {
        let m = machine(4);
        let mut q = Quotas::new(&[], &m, &[work(1, "x", 2)]);
        assert!(q.admit(&work(2, "x", 4)).is_ok());
        assert!(q.admit(&work(3, "y", 4)).is_ok());
        let s = q.shares();
        assert_eq!(s["x"], 0.5);
        let mut heavy = queue("h", "0", None, None);
        heavy.weight = 2.0;
        heavy.guaranteed = Quota::default();
        let s = shares(
            &[heavy, QueueSpec::named("l")],
            &m,
            &[work(1, "h", 2), work(2, "l", 1)],
        );
        assert_eq!(s["h"], 0.25, "half the GPUs over weight 2");
        assert_eq!(s["l"], 0.25);
    }
}

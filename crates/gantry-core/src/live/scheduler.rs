//! The scheduler: pending and running workloads, queues, and one scheduling cycle through the stages.
//!
//! A cycle at time `now` takes pending workloads in [`order`](super::order) (re-checking a workload's
//! key when it comes up, since fair shares change as work starts), and for each: [`admit`](super::admit)
//! (how many replicas the queue's quota allows), [`gang`](super::gang) placement (filter, score, pick
//! devices per replica), else [`preempt`](super::preempt), else a [`backfill`](super::backfill)
//! reservation if it is the first to be blocked. Later workloads avoid the reserved nodes unless they end
//! before the reservation. Workloads evicted in a cycle wait for the next one.
//!
//! Within a cycle capacity only shrinks until a preemption frees some, and there is at most one
//! reservation, so a shape (with its gang minimum, and whether the reserved nodes are barred to it) that
//! failed once fails again: that answer is memoised until the next preemption.

use super::admit::{Admission, DIMS, Queues};
use super::backfill::{Reservation, blocked_nodes, reserve};
use super::cluster::{LiveCluster, ReplicaPlacement};
use super::error::LiveError;
use super::filter::static_check;
use super::gang::{place_gang, undo};
use super::order::{AgingRule, OrderKey, effective_priority, next_class_above, order_key};
use super::preempt::{Running, candidates, choose_victims};
use super::select::Selector;
use super::workload::{Workload, WorkloadId};
use crate::frag::TargetWorkload;
use crate::policies::gantry::GantryInputs;
use crate::spec::{ClusterSpec, QueueSpec};
use crate::{Policy, Rng};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Settings of the scheduler.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Default placement strategy.
    pub policy: Policy,
    /// Expected workload for fragmentation-aware strategies.
    pub target: TargetWorkload,
    /// What the `gantry` strategy knows from history.
    pub gantry: GantryInputs,
    /// Aging against starvation.
    pub aging: AgingRule,
    /// Whether higher-priority work may evict lower-priority work.
    pub preemption: bool,
    /// Whether the head-of-line workload gets a reservation.
    pub backfill: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            policy: Policy::Gantry,
            target: TargetWorkload::default(),
            gantry: GantryInputs::default(),
            aging: AgingRule::default(),
            preemption: true,
            backfill: true,
        }
    }
}

/// What a cycle did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CycleOutcome {
    /// Workloads started, in the order they started.
    pub started: Vec<WorkloadId>,
    /// (victim, preemptor) pairs; victims are pending again.
    pub preempted: Vec<(WorkloadId, WorkloadId)>,
    /// The head-of-line reservation, if one was made.
    pub reservation: Option<Reservation>,
    /// How many of `started` started before the reservation was made (the rest had to respect it).
    pub started_before_reservation: usize,
    /// Pending workloads considered.
    pub considered: usize,
}

enum Attempt {
    Started,
    Preempted(Vec<WorkloadId>),
    Waiting { reason: String, placement: bool },
}

/// Pending and running workloads on a live cluster.
#[derive(Clone, Debug)]
pub struct Scheduler {
    cluster: LiveCluster,
    config: SchedulerConfig,
    selector: Selector,
    queues: Queues,
    classes: Vec<i64>,
    totals: [u64; DIMS],
    workloads: Vec<Workload>,
    queue_of: Vec<usize>,
    shape_of: Vec<u32>,
    pending: BTreeSet<WorkloadId>,
    running: BTreeMap<WorkloadId, Running>,
    reasons: BTreeMap<WorkloadId, String>,
    /// Running preemptible workloads per priority value (a cheap "any victim below p?" test).
    preemptible: BTreeMap<i64, usize>,
}

impl Scheduler {
    /// A scheduler for `cluster` with `queues` (empty = unlimited queues) and priority class values.
    pub fn new(
        cluster: LiveCluster,
        queues: &[QueueSpec],
        mut classes: Vec<i64>,
        config: SchedulerConfig,
    ) -> Self {
        classes.sort_unstable();
        classes.dedup();
        let totals = cluster.totals();
        Scheduler {
            selector: Selector::new(config.policy, config.target.clone(), config.gantry.clone()),
            queues: Queues::new(queues, totals),
            cluster,
            config,
            classes,
            totals,
            workloads: Vec::new(),
            queue_of: Vec::new(),
            shape_of: Vec::new(),
            pending: BTreeSet::new(),
            running: BTreeMap::new(),
            reasons: BTreeMap::new(),
            preemptible: BTreeMap::new(),
        }
    }

    /// A scheduler for a cluster spec (validated here).
    pub fn from_spec(spec: &ClusterSpec, config: SchedulerConfig) -> Result<Self, LiveError> {
        let cluster = LiveCluster::from_spec(spec)?;
        let classes = spec
            .effective_priority_classes()
            .iter()
            .map(|c| c.value)
            .collect();
        Ok(Scheduler::new(cluster, &spec.queues, classes, config))
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The live cluster.
    pub fn cluster(&self) -> &LiveCluster {
        &self.cluster
    }

    /// Mutable access to the cluster for health and cordon changes (allocations go through the stages).
    pub fn cluster_mut(&mut self) -> &mut LiveCluster {
        &mut self.cluster
    }

    /// The queues with their usage.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Workload `id`.
    pub fn workload(&self, id: WorkloadId) -> Option<&Workload> {
        self.workloads.get(id as usize)
    }

    /// Every workload submitted, by id.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// Pending workload ids.
    pub fn pending(&self) -> &BTreeSet<WorkloadId> {
        &self.pending
    }

    /// Running workloads.
    pub fn running(&self) -> &BTreeMap<WorkloadId, Running> {
        &self.running
    }

    /// Why a pending workload is not running (from the last cycle that considered it).
    pub fn reason(&self, id: WorkloadId) -> Option<&str> {
        self.reasons.get(&id).map(String::as_str)
    }

    /// The queue index of workload `id`.
    pub fn queue_of(&self, id: WorkloadId) -> Option<usize> {
        self.queue_of.get(id as usize).copied()
    }

    /// Adds a pending workload; its queue must exist when the cluster declares queues.
    pub fn submit(&mut self, w: Workload) -> Result<WorkloadId, LiveError> {
        let q = self
            .queues
            .resolve(&w.queue)
            .ok_or_else(|| LiveError::UnknownQueue {
                workload: w.name.clone(),
                queue: w.queue.clone(),
            })?;
        let id = self.workloads.len() as WorkloadId;
        self.shape_of.push(self.selector.shape(&w));
        self.queue_of.push(q);
        self.workloads.push(w);
        self.pending.insert(id);
        Ok(id)
    }

    /// Ends running workload `id` (finished, failed or cancelled) and frees what it held.
    pub fn finish(&mut self, id: WorkloadId) -> Result<Running, LiveError> {
        let r = self.running.remove(&id).ok_or(LiveError::NoSuch {
            what: "running workload",
            index: id as usize,
        })?;
        for p in &r.placements {
            self.cluster.release(p)?;
        }
        self.uncharge(&r);
        Ok(r)
    }

    /// Drops pending workload `id` (cancelled before it started).
    pub fn cancel_pending(&mut self, id: WorkloadId) -> bool {
        self.reasons.remove(&id);
        self.pending.remove(&id)
    }

    fn uncharge(&mut self, r: &Running) {
        let count = self
            .preemptible
            .get_mut(&r.priority)
            .filter(|_| r.preemptible);
        if let Some(c) = count {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.preemptible.remove(&r.priority);
            }
        }
        if let Some(q) = self.queues.list.get_mut(r.queue) {
            for (u, x) in q.usage.iter_mut().zip(r.usage) {
                *u = u.saturating_sub(x);
            }
        }
    }

    fn key(&self, id: WorkloadId, now: u64) -> OrderKey {
        let w = &self.workloads[id as usize];
        let next = next_class_above(&self.classes, w.priority);
        let eff = effective_priority(
            w.priority,
            next,
            now.saturating_sub(w.submitted),
            self.config.aging,
        );
        let share = self.queues.share(self.queue_of[id as usize], self.totals);
        order_key(eff, share, w.submitted, id)
    }

    /// The most replicas (gang minimum..=replicas) the queue admits now, with the admission; 0 and the
    /// refusal when not even the gang minimum fits the quota.
    fn admissible(&self, id: WorkloadId, released: &[[u64; DIMS]]) -> (u32, Admission) {
        let w = &self.workloads[id as usize];
        let q = self.queue_of[id as usize];
        let per = w.replica_usage();
        let mut refusal = Admission::Refused(String::new());
        for k in (w.gang_minimum..=w.replicas).rev() {
            let demand = per.map(|x| x.saturating_mul(u64::from(k)));
            match self.queues.admit(q, demand, released) {
                Admission::Refused(r) => refusal = Admission::Refused(r),
                a => return (k, a),
            }
        }
        (0, refusal)
    }

    fn start(&mut self, id: WorkloadId, placed: Vec<ReplicaPlacement>, now: u64) {
        let w = &self.workloads[id as usize];
        let q = self.queue_of[id as usize];
        let usage = w
            .replica_usage()
            .map(|x| x.saturating_mul(placed.len() as u64));
        let reclaimable = self.queues.admit(q, usage, &[]) == Admission::Borrowed;
        if let Some(s) = self.queues.list.get_mut(q) {
            for (u, x) in s.usage.iter_mut().zip(usage) {
                *u = u.saturating_add(x);
            }
        }
        if w.preemptible {
            *self.preemptible.entry(w.priority).or_default() += 1;
        }
        let r = Running {
            id,
            priority: w.priority,
            preemptible: w.preemptible,
            reclaimable,
            started: now,
            expected_end: w.expected_end(now),
            queue: q,
            usage,
            placements: placed,
        };
        self.running.insert(id, r);
        self.pending.remove(&id);
        self.reasons.remove(&id);
    }

    /// One scheduling cycle at time `now`.
    pub fn cycle(&mut self, now: u64, rng: &mut Rng) -> CycleOutcome {
        let mut out = CycleOutcome::default();
        // Each queue's pending work in (effective priority, age) order: fixed within the cycle. The next
        // workload is the best queue head, keyed with the queue's current fair share.
        let mut lanes: BTreeMap<usize, Vec<OrderKey>> = BTreeMap::new();
        for &id in &self.pending {
            lanes
                .entry(self.queue_of[id as usize])
                .or_default()
                .push(self.key(id, now));
        }
        let mut lanes: Vec<std::iter::Peekable<std::vec::IntoIter<OrderKey>>> = lanes
            .into_values()
            .map(|mut v| {
                v.sort_unstable_by_key(|k| (k.neg_priority, k.submitted, k.id));
                v.into_iter().peekable()
            })
            .collect();
        let mut failed: HashMap<(u32, u32, bool), String> = HashMap::new();
        let mut evicted: BTreeSet<WorkloadId> = BTreeSet::new();
        let mut reservation: Option<Reservation> = None;
        let mut head_of_line_seen = false;
        loop {
            let mut best: Option<(OrderKey, usize)> = None;
            for (l, lane) in lanes.iter_mut().enumerate() {
                if let Some(k) = lane.peek() {
                    let current = self.key(k.id, now);
                    if best.is_none_or(|(b, _)| current < b) {
                        best = Some((current, l));
                    }
                }
            }
            let Some((_, l)) = best else {
                break;
            };
            let Some(k) = lanes[l].next() else {
                break;
            };
            let id = k.id;
            if !self.pending.contains(&id) || evicted.contains(&id) {
                continue;
            }
            out.considered += 1;
            match self.attempt(id, now, rng, reservation.as_ref(), &mut failed) {
                Attempt::Started => out.started.push(id),
                Attempt::Preempted(victims) => {
                    out.started.push(id);
                    for v in victims {
                        out.preempted.push((v, id));
                        evicted.insert(v);
                    }
                    failed.clear();
                }
                Attempt::Waiting { reason, placement } => {
                    self.reasons.insert(id, reason);
                    if placement && !head_of_line_seen && self.config.backfill {
                        head_of_line_seen = true;
                        let running: Vec<&Running> = self.running.values().collect();
                        out.started_before_reservation = out.started.len();
                        reservation = reserve(
                            &self.cluster,
                            &self.selector,
                            &self.workloads[id as usize],
                            id,
                            &running,
                            rng,
                        );
                    }
                }
            }
        }
        out.reservation = reservation;
        out
    }

    fn attempt(
        &mut self,
        id: WorkloadId,
        now: u64,
        rng: &mut Rng,
        reservation: Option<&Reservation>,
        failed: &mut HashMap<(u32, u32, bool), String>,
    ) -> Attempt {
        let shape = self.shape_of[id as usize];
        let empty = BTreeSet::new();
        let (limit, admission) = self.admissible(id, &[]);
        let w = &self.workloads[id as usize];
        let blocked = reservation
            .and_then(|r| blocked_nodes(r, w, now))
            .unwrap_or(&empty);
        // One reservation per cycle, so "blocked or not" completes the memo key.
        let memo = (shape, w.gang_minimum, !blocked.is_empty());
        let reason = if let Admission::Refused(r) = admission {
            Err(r)
        } else if let Some(r) = failed.get(&memo) {
            Ok(r.clone())
        } else {
            match place_gang(
                &mut self.cluster,
                &mut self.selector,
                w,
                shape,
                limit,
                blocked,
                rng,
            ) {
                Ok(placed) => {
                    self.start(id, placed, now);
                    return Attempt::Started;
                }
                Err(why) => {
                    let r = why.to_string();
                    failed.insert(memo, r.clone());
                    Ok(r)
                }
            }
        };
        let quota_blocked = reason.is_err();
        let victims = if self.config.preemption {
            self.preempt(id, now, rng, quota_blocked, blocked)
        } else {
            None
        };
        if let Some(victims) = victims {
            return Attempt::Preempted(victims);
        }
        match reason {
            Ok(r) => Attempt::Waiting {
                reason: r,
                placement: true,
            },
            Err(r) => Attempt::Waiting {
                reason: r,
                placement: false,
            },
        }
    }

    /// Tries to start `id` by evicting lower-priority work; returns the victims.
    fn preempt(
        &mut self,
        id: WorkloadId,
        now: u64,
        rng: &mut Rng,
        quota_blocked: bool,
        blocked: &BTreeSet<u32>,
    ) -> Option<Vec<WorkloadId>> {
        let w = &self.workloads[id as usize];
        // No preemptible workload below this priority: nothing to evict.
        self.preemptible.range(..w.priority).next()?;
        let q = self.queue_of[id as usize];
        let cohort = self.queues.list.get(q).and_then(|s| s.cohort.clone());
        let nodes = self.cluster.nodes();
        let relevant = |r: &Running| {
            let same_cohort = r.queue == q
                || (cohort.is_some()
                    && self
                        .queues
                        .list
                        .get(r.queue)
                        .and_then(|s| s.cohort.as_ref())
                        == cohort.as_ref());
            if quota_blocked {
                return same_cohort;
            }
            r.placements.iter().any(|p| {
                nodes
                    .get(p.node as usize)
                    .is_some_and(|n| static_check(n, w).is_ok())
            })
        };
        let owned: Vec<Running> = candidates(self.running.values(), w.priority)
            .into_iter()
            .filter(|r| relevant(r))
            .cloned()
            .collect();
        if owned.is_empty() {
            return None;
        }
        let w = w.clone();
        let shape = self.shape_of[id as usize];
        let refs: Vec<&Running> = owned.iter().collect();
        let queue_count = self.queues.list.len();
        let mut last_ok: Option<Vec<ReplicaPlacement>> = None;
        let victims = {
            let selector = &mut self.selector;
            let queues = &self.queues;
            let mut fits = |cl: &mut LiveCluster, victims: &[usize]| -> bool {
                let mut released = vec![[0u64; DIMS]; queue_count];
                for &v in victims {
                    let r = refs[v];
                    if let Some(x) = released.get_mut(r.queue) {
                        for (a, b) in x.iter_mut().zip(r.usage) {
                            *a = a.saturating_add(b);
                        }
                    }
                }
                let demand = w
                    .replica_usage()
                    .map(|x| x.saturating_mul(u64::from(w.gang_minimum)));
                if let Admission::Refused(_) = queues.admit(q, demand, &released) {
                    return false;
                }
                match place_gang(cl, selector, &w, shape, w.gang_minimum, blocked, rng) {
                    Ok(placed) => {
                        undo(cl, &placed);
                        last_ok = Some(placed);
                        true
                    }
                    Err(_) => false,
                }
            };
            choose_victims(&mut self.cluster, &refs, &mut fits)?
        };
        let placed = last_ok?;
        let mut ids = Vec::with_capacity(victims.len());
        for &v in &victims {
            let vid = refs[v].id;
            if let Some(r) = self.running.remove(&vid) {
                self.uncharge(&r);
                self.pending.insert(vid);
                self.reasons
                    .insert(vid, format!("preempted by {} at {now}", w.name));
                ids.push(vid);
            }
        }
        for (i, p) in placed.iter().enumerate() {
            if self.cluster.allocate(p).is_err() {
                undo(&mut self.cluster, &placed[..i]);
                return Some(ids);
            }
        }
        self.start(id, placed, now);
        Some(ids)
    }

    /// Queues over their caps, as messages (must stay empty).
    pub fn quota_violations(&self) -> Vec<String> {
        self.queues.violations()
    }
}

//! One replay of a trace under one policy and seed, following the openb protocol.

use crate::metrics::{ArrivalPoint, unallocated_curve};
use crate::openb::Trace;
use crate::plan::PlanError;
use crate::protocol;
use gantry_core::engine::PlaceError;
use gantry_core::frag::TargetWorkload;
use gantry_core::policies::gantry::GantryInputs;
use gantry_core::{Cluster, Engine, EngineConfig, Policy, Rng};
use std::collections::BTreeMap;

/// The outcome of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The policy.
    pub policy: Policy,
    /// The seed.
    pub seed: u64,
    /// Pods that arrived (after inflation).
    pub pods: usize,
    /// Pods that fit nowhere.
    pub failed: usize,
    /// Cluster GPU capacity, milli.
    pub capacity_milli: u64,
    /// One point per arrival.
    pub points: Vec<ArrivalPoint>,
    /// Unallocated GPU % per integer arrived %.
    pub curve: BTreeMap<u32, f64>,
}

/// A run that could not complete (the engine refused its own decision: a bug, reported not hidden).
#[derive(Debug, thiserror::Error)]
#[error("seed {seed}, pod #{index}: {source}")]
pub struct RunError {
    /// The seed.
    pub seed: u64,
    /// Arrival index of the pod.
    pub index: usize,
    /// The engine's error.
    pub source: PlaceError,
}

/// What a run needs besides policy and seed, computed once per trace.
pub struct Prepared<'a> {
    /// The trace.
    pub trace: &'a Trace,
    /// Pods in name order.
    pub sorted: Vec<&'a crate::openb::TracePod>,
    /// The target workload for fragmentation-aware policies.
    pub target: TargetWorkload,
    /// What the `gantry` policy learns from the trace's pods (share prices, CPU per GPU).
    pub gantry: GantryInputs,
    /// Cluster GPU capacity in milli.
    pub capacity_milli: u64,
}

impl<'a> Prepared<'a> {
    /// Prepares `trace` for replay; its own pods are the history policies learn from.
    pub fn new(trace: &'a Trace) -> Result<Self, PlanError> {
        Self::with_history(trace, trace)
    }

    /// Prepares `trace` for replay with `history`'s pods as what `fgd` and `gantry` learn from (its
    /// pod shapes, share prices and CPU per GPU); `history` must use the same node list.
    pub fn with_history(trace: &'a Trace, history: &Trace) -> Result<Self, PlanError> {
        let capacity_milli = trace
            .nodes
            .iter()
            .map(|n| u64::from(n.gpu_count) * 1000)
            .sum();
        Ok(Prepared {
            trace,
            sorted: protocol::by_name(trace),
            target: protocol::target_workload(history),
            gantry: crate::plan::gantry_inputs(history.pods.iter().map(|p| &p.pod))?,
            capacity_milli,
        })
    }

    /// The arrival order of one seed (the first draws of that seed's RNG), independent of the policy.
    pub fn arrivals(&self, seed: u64, inflate: f64) -> Vec<&'a crate::openb::TracePod> {
        let mut rng = Rng::new(seed);
        protocol::arrivals(&self.sorted, self.capacity_milli, inflate, &mut rng)
            .into_iter()
            .map(|i| self.sorted[i])
            .collect()
    }

    /// Lower bound on unallocated GPU % at arrival `x` for one seed's arrivals (see [`crate::bound`]).
    pub fn lower_bound(
        &self,
        seed: u64,
        inflate: f64,
        x: i64,
    ) -> Result<Option<f64>, crate::bound::BoundError> {
        let arrivals = self.arrivals(seed, inflate);
        crate::bound::unallocated_lower_bound(&self.trace.nodes, &arrivals, self.capacity_milli, x)
    }

    /// Replays the trace once: seeded shuffle, inflation, seeded node order, then one pod at a time.
    pub fn run(&self, policy: Policy, seed: u64, inflate: f64) -> Result<RunResult, RunError> {
        let mut rng = Rng::new(seed);
        let arrivals = protocol::arrivals(&self.sorted, self.capacity_milli, inflate, &mut rng);
        let order = protocol::node_order(self.trace.nodes.len(), &mut rng);
        let specs = order.iter().map(|&i| self.trace.nodes[i].clone()).collect();
        let mut cluster = Cluster::new(self.trace.models.clone(), specs);
        let mut engine = Engine::new(
            policy,
            EngineConfig {
                target: self.target.clone(),
                gantry: self.gantry.clone(),
            },
        );
        let mut points = Vec::with_capacity(arrivals.len());
        let (mut arrived, mut allocated, mut failed) = (0u64, 0u64, 0usize);
        for (index, &p) in arrivals.iter().enumerate() {
            let pod = &self.sorted[p].pod;
            arrived += u64::from(pod.gpu.total_milli());
            match engine.place(&mut cluster, pod, &mut rng) {
                Ok(_) => allocated += u64::from(pod.gpu.total_milli()),
                Err(PlaceError::Unschedulable(_)) => failed += 1,
                Err(source) => {
                    return Err(RunError {
                        seed,
                        index,
                        source,
                    });
                }
            }
            points.push(ArrivalPoint {
                arrived_milli: arrived,
                allocated_milli: allocated,
            });
        }
        debug_assert_eq!(allocated, cluster.gpu_allocated());
        let curve = unallocated_curve(&points, self.capacity_milli);
        Ok(RunResult {
            policy,
            seed,
            pods: arrivals.len(),
            failed,
            capacity_milli: self.capacity_milli,
            points,
            curve,
        })
    }
}

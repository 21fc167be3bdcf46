//! The scheduling engine: filter, score, select, pick devices, commit.
//!
//! Pure and deterministic: the caller passes the cluster and the RNG. Scores of [`Selection::MaxScore`]
//! policies depend only on (node state, pod shape), so the engine caches them per node version; one
//! placement invalidates one node, and a decision costs one cheap pass over the nodes.

use crate::cluster::{Cluster, CommitError};
use crate::devices;
use crate::filter::{Rejection, filter};
use crate::frag::TargetWorkload;
use crate::model::{GpuDemand, GpuSet, Pod};
use crate::policies::{Policy, ScoreContext, Selection, fgd, gantry};
use crate::rng::Rng;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

/// Inputs of the engine that are not the cluster: the expected workload for fragmentation-aware policies.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Expected pod shapes and frequencies (empty: fragmentation-aware policies see no target).
    pub target: TargetWorkload,
    /// What the `gantry` policy knows from history (default: nothing, so only FGD's class counts).
    pub gantry: gantry::GantryInputs,
}

/// Where a pod goes: node index, GPUs, and the winning score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Placement {
    /// Index of the node in the cluster.
    pub node: usize,
    /// The GPUs it takes on that node.
    pub gpus: GpuSet,
    /// The winning score (0 for policies without scores).
    pub score: f64,
    /// How many nodes passed the filters.
    pub feasible: u32,
}

/// A pod no node can take, with how many nodes each filter rejected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unschedulable {
    /// Nodes considered.
    pub nodes: u32,
    /// For each failed filter: its name, how many nodes it rejected, and one example rejection.
    pub rejections: Vec<(&'static str, u32, Rejection)>,
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes can take the pod", self.nodes)?;
        for (i, (_, count, example)) in self.rejections.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{count} node(s) {example}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unschedulable {}

/// Why `place` failed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// No node fits.
    #[error("{0}")]
    Unschedulable(Unschedulable),
    /// The commit was refused (an engine bug: the filter and commit disagree).
    #[error(transparent)]
    Commit(#[from] CommitError),
}

#[derive(Clone, Copy, Default)]
struct CacheEntry {
    version: u32,
    score: f64,
}

/// Score memo per (pod shape, node), valid while the node's version is unchanged.
#[derive(Default)]
struct ScoreCache {
    cluster_id: u64,
    shapes: HashMap<(u64, u64, GpuDemand), usize>,
    tables: Vec<Vec<CacheEntry>>,
}

impl ScoreCache {
    fn table(&mut self, cluster: &Cluster, pod: &Pod) -> &mut Vec<CacheEntry> {
        if self.cluster_id != cluster.id() {
            self.shapes.clear();
            self.tables.clear();
            self.cluster_id = cluster.id();
        }
        let next = self.tables.len();
        let index = *self
            .shapes
            .entry((pod.cpu_milli, pod.memory_mib, pod.gpu))
            .or_insert(next);
        if index == next {
            self.tables
                .push(vec![CacheEntry::default(); cluster.nodes().len()]);
        }
        &mut self.tables[index]
    }
}

/// The placement engine for one policy.
pub struct Engine {
    policy: Policy,
    config: EngineConfig,
    cache: ScoreCache,
    cursor: usize,
    feasible: Vec<u32>,
}

impl Engine {
    /// An engine placing with `policy`.
    pub fn new(policy: Policy, config: EngineConfig) -> Self {
        Engine {
            policy,
            config,
            cache: ScoreCache::default(),
            cursor: 0,
            feasible: Vec::new(),
        }
    }

    /// The policy in use.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Chooses a node and GPUs for `pod` without changing the cluster.
    pub fn schedule(
        &mut self,
        cluster: &Cluster,
        pod: &Pod,
        rng: &mut Rng,
    ) -> Result<Placement, Unschedulable> {
        let ctx = ScoreContext {
            target: &self.config.target,
            max_cpu_milli: cluster.max_cpu_milli(),
            max_gpu_milli: cluster.max_gpu_milli(),
            gantry: &self.config.gantry,
        };
        let nodes = cluster.nodes();
        let mut rejections: Vec<(&'static str, u32, Rejection)> = Vec::new();
        self.feasible.clear();
        for (i, node) in nodes.iter().enumerate() {
            match filter(node, pod) {
                Ok(()) => self.feasible.push(i as u32),
                Err(r) => match rejections.iter_mut().find(|e| e.0 == r.filter_name()) {
                    Some(e) => e.1 += 1,
                    None => rejections.push((r.filter_name(), 1, r)),
                },
            }
        }
        if self.feasible.is_empty() {
            return Err(Unschedulable {
                nodes: nodes.len() as u32,
                rejections,
            });
        }
        let feasible = self.feasible.len() as u32;
        let (node, score) = match self.policy.selection() {
            Selection::Random => {
                let j = rng.below(u64::from(feasible)) as usize;
                (self.feasible[j] as usize, 0.0)
            }
            Selection::RoundRobin => {
                let n = nodes.len();
                let cursor = self.cursor % n;
                let i = self
                    .feasible
                    .iter()
                    .map(|&i| i as usize)
                    .min_by_key(|&i| (i + n - cursor) % n)
                    .unwrap_or(0);
                (i, 0.0)
            }
            Selection::MaxScore => {
                let policy = self.policy;
                let table = self.cache.table(cluster, pod);
                let mut best: Option<(usize, f64)> = None;
                for &i in &self.feasible {
                    let i = i as usize;
                    let version = cluster.version(i);
                    let entry = &mut table[i];
                    if entry.version != version {
                        *entry = CacheEntry {
                            version,
                            score: policy.score(&nodes[i], pod, &ctx),
                        };
                    }
                    if best.is_none_or(|(_, b)| entry.score > b) {
                        best = Some((i, entry.score));
                    }
                }
                best.unwrap_or((self.feasible[0] as usize, 0.0))
            }
        };
        let chosen = &nodes[node];
        let gpus = match (self.policy.share_rule(), pod.gpu) {
            (None, GpuDemand::Share(_)) => {
                let gpu = match self.policy {
                    Policy::Gantry => gantry::score_and_gpu(chosen, pod, &ctx).1,
                    _ => fgd::score_and_gpu(chosen, pod, &self.config.target).1,
                };
                gpu.map_or(GpuSet(0), GpuSet::one)
            }
            (rule, demand) => devices::pick(
                chosen,
                demand,
                rule.unwrap_or(devices::ShareRule::BestFit),
                rng,
            ),
        };
        Ok(Placement {
            node,
            gpus,
            score,
            feasible,
        })
    }

    /// Schedules `pod` and commits it to the cluster.
    pub fn place(
        &mut self,
        cluster: &mut Cluster,
        pod: &Pod,
        rng: &mut Rng,
    ) -> Result<Placement, PlaceError> {
        let placement = self
            .schedule(cluster, pod, rng)
            .map_err(PlaceError::Unschedulable)?;
        cluster.commit(placement.node, pod, placement.gpus)?;
        self.cursor = placement.node + 1;
        Ok(placement)
    }
}

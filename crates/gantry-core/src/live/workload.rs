//! Workloads in the resolved form the stages use: priority value, queue, replicas and gang minimum,
//! per-replica demand and placement constraints, all parsed and checked.

use super::error::LiveError;
use crate::Policy;
use crate::model::{GpuDemand, GpuModels, ModelSet, Pod};
use crate::spec::{
    ClusterSpec, LabelExpression, PreferredTerm, RunMode, SpotPolicy, Toleration, Topology,
    ValidationContext, WorkloadSpec,
};
use std::collections::BTreeMap;

/// Index of a workload in a [`Scheduler`](super::Scheduler).
pub type WorkloadId = u32;

/// What one replica asks of GPUs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Demand {
    /// No GPU.
    None,
    /// A fraction of one GPU (1..=999 milli) with the GPU memory it needs (MiB, 0 = no memory budget).
    Share {
        /// Milli of one GPU.
        milli: u16,
        /// GPU memory in MiB.
        memory_mib: u64,
    },
    /// Whole GPUs on one node.
    Whole {
        /// How many.
        count: u8,
    },
    /// One MIG instance of this profile (e.g. `3g.40gb`).
    Mig {
        /// The profile name.
        profile: String,
    },
}

impl Demand {
    /// GPU milli this demand charges to a queue (a MIG instance: its memory slices over 8).
    pub fn gpu_milli(&self) -> u64 {
        match self {
            Demand::None => 0,
            Demand::Share { milli, .. } => u64::from(*milli),
            Demand::Whole { count } => u64::from(*count) * 1000,
            Demand::Mig { profile } => mig_milli(profile),
        }
    }
}

/// GPU milli charged to a queue for a MIG profile: its compute slices (the number before `g`) over 7,
/// rounded up, so a `7g` instance counts as one GPU and a `1g` as 143 milli.
fn mig_milli(profile: &str) -> u64 {
    let compute: u64 = profile
        .split('g')
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    (compute * 1000).div_ceil(7)
}

/// A workload ready for scheduling.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Name (unique among the scheduler's workloads).
    pub name: String,
    /// Queue it is charged to.
    pub queue: String,
    /// Priority class name.
    pub priority_class: String,
    /// Priority value (higher runs first).
    pub priority: i64,
    /// Replicas it asks for.
    pub replicas: u32,
    /// Replicas that must start together (1..=replicas).
    pub gang_minimum: u32,
    /// CPU per replica, milli-cores.
    pub cpu_milli: u64,
    /// Memory per replica, MiB.
    pub memory_mib: u64,
    /// GPU demand per replica.
    pub demand: Demand,
    /// Allowed GPU models (empty = any).
    pub models: ModelSet,
    /// Least memory of each GPU, MiB (0 = any).
    pub min_gpu_memory_mib: u64,
    /// No other GPU work on the node while it runs.
    pub exclusive: bool,
    /// Node labels that must match exactly.
    pub node_selector: BTreeMap<String, String>,
    /// Label expressions every node must satisfy.
    pub required: Vec<LabelExpression>,
    /// Label expressions that add their weight to a node's score.
    pub preferred: Vec<PreferredTerm>,
    /// Tolerated taints.
    pub tolerations: Vec<Toleration>,
    /// GPU locality.
    pub topology: Topology,
    /// Spot capacity policy.
    pub spot: SpotPolicy,
    /// Whether higher-priority work may evict it.
    pub preemptible: bool,
    /// Time limit in seconds, if any.
    pub timeout_secs: Option<u64>,
    /// Strategy override.
    pub strategy: Option<Policy>,
    /// Submission time, seconds.
    pub submitted: u64,
    /// Known runtime (a time limit or an estimate), used for backfill reservations.
    pub expected_runtime: Option<u64>,
}

impl Workload {
    /// A workload of `replicas` identical engine pods (no constraints beyond the pod's models).
    pub fn from_pod(name: &str, queue: &str, priority: i64, pod: &Pod, replicas: u32) -> Self {
        let demand = match pod.gpu {
            GpuDemand::None => Demand::None,
            GpuDemand::Share(m) => Demand::Share {
                milli: m,
                memory_mib: 0,
            },
            GpuDemand::Whole(k) => Demand::Whole { count: k },
        };
        Workload {
            name: name.to_string(),
            queue: queue.to_string(),
            priority_class: String::new(),
            priority,
            replicas: replicas.max(1),
            gang_minimum: replicas.max(1),
            cpu_milli: pod.cpu_milli,
            memory_mib: pod.memory_mib,
            demand,
            models: pod.models,
            min_gpu_memory_mib: 0,
            exclusive: false,
            node_selector: BTreeMap::new(),
            required: Vec::new(),
            preferred: Vec::new(),
            tolerations: Vec::new(),
            topology: Topology::Any,
            spot: SpotPolicy::Never,
            preemptible: true,
            timeout_secs: None,
            strategy: None,
            submitted: 0,
            expected_runtime: None,
        }
    }

    /// Validates `spec` against `cluster` and resolves it; `models` must be the live cluster's table.
    pub fn from_spec(
        spec: &WorkloadSpec,
        cluster: &ClusterSpec,
        models: &GpuModels,
        submitted: u64,
    ) -> Result<Self, LiveError> {
        let ctx = ValidationContext::new(Some(cluster), RunMode::Simulation);
        spec.validate(&ctx).map_err(LiveError::Spec)?;
        let gpu = spec.resources.gpu.as_ref();
        let pod = match gpu.and_then(|g| g.mig.as_ref()) {
            // `pod()` refuses MIG; resolve the rest without the GPU part.
            Some(_) => {
                let mut s = spec.clone();
                if let Some(g) = s.resources.gpu.as_mut() {
                    g.mig = None;
                    g.count = Some(1);
                }
                s.pod(models).map_err(LiveError::Spec)?
            }
            None => spec.pod(models).map_err(LiveError::Spec)?,
        };
        let mut w = Workload::from_pod(&spec.name, spec.queue_name(), 0, &pod, 1);
        let priority = cluster
            .priority_value(spec.priority_class.as_deref())
            .unwrap_or(0);
        w.priority = priority;
        w.priority_class = match &spec.priority_class {
            Some(c) => c.clone(),
            None => cluster
                .effective_priority_classes()
                .iter()
                .find(|c| c.global_default)
                .map_or_else(String::new, |c| c.name.clone()),
        };
        let replicas = u32::try_from(spec.replicas.max(1)).unwrap_or(1);
        w.replicas = replicas;
        w.gang_minimum = spec
            .gang_minimum
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(replicas)
            .clamp(1, replicas);
        if let Some(g) = gpu {
            let mem = |q: &Option<crate::spec::MemoryQuantity>| {
                q.as_ref().and_then(|m| m.mib().ok()).unwrap_or(0)
            };
            w.min_gpu_memory_mib = mem(&g.min_memory);
            w.exclusive = g.exclusive;
            if let Some(p) = &g.mig {
                w.demand = Demand::Mig { profile: p.clone() };
            } else if let Demand::Share { milli, .. } = w.demand {
                w.demand = Demand::Share {
                    milli,
                    memory_mib: mem(&g.memory),
                };
            }
        }
        let pl = &spec.placement;
        w.node_selector = pl.node_selector.clone();
        w.required = pl.affinity.required.clone();
        w.preferred = pl.affinity.preferred.clone();
        w.tolerations = pl.tolerations.clone();
        w.topology = pl.topology;
        w.spot = spec.spot;
        w.preemptible = spec.preemptible;
        w.timeout_secs = spec.timeout.as_ref().and_then(|d| d.seconds().ok());
        w.strategy = spec
            .strategy
            .as_deref()
            .and_then(|s| Policy::from_name(s).ok());
        w.submitted = submitted;
        w.expected_runtime = w.timeout_secs;
        Ok(w)
    }

    /// The engine pod of one replica, for strategy scores (a MIG instance counts as a share of its
    /// compute slices).
    pub fn pod(&self) -> Pod {
        let gpu = match &self.demand {
            Demand::None => GpuDemand::None,
            Demand::Share { milli, .. } => GpuDemand::Share(*milli),
            Demand::Whole { count } => GpuDemand::Whole(*count),
            Demand::Mig { profile } => {
                GpuDemand::Share(u16::try_from(mig_milli(profile).min(999)).unwrap_or(999))
            }
        };
        Pod {
            cpu_milli: self.cpu_milli,
            memory_mib: self.memory_mib,
            gpu,
            models: self.models,
        }
    }

    /// A key equal for workloads whose replicas any node treats identically (demand and constraints).
    pub fn shape_key(&self) -> String {
        format!(
            "{}|{}|{:?}|{:?}|{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.cpu_milli,
            self.memory_mib,
            self.demand,
            self.models,
            self.min_gpu_memory_mib,
            self.exclusive,
            self.node_selector,
            self.required,
            self.preferred,
            self.tolerations,
            self.topology,
            self.spot,
            self.strategy
        )
    }

    /// Resources of one replica as (GPU milli, CPU milli, memory MiB), the quota dimensions.
    pub fn replica_usage(&self) -> [u64; 3] {
        [self.demand.gpu_milli(), self.cpu_milli, self.memory_mib]
    }

    /// When it would end if started at `start`, when its runtime is known.
    pub fn expected_end(&self, start: u64) -> Option<u64> {
        self.expected_runtime.map(|r| start.saturating_add(r))
    }
}

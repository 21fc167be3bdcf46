//! Builders shared by the live-scheduler tests: small clusters and workloads written by hand.

#![allow(dead_code)]

use gantry_core::Rng;
use gantry_core::live::{CycleOutcome, Scheduler, SchedulerConfig, Workload, WorkloadId};
use gantry_core::spec::{
    ClusterSpec, GpuRequest, MemoryQuantity, MigMode, MilliQuantity, NodeDescription, NodeGpus,
    Pool, QueueSpec, Quota, Resources, WorkloadSpec,
};
use std::collections::BTreeMap;

/// A node with `count` GPUs of `model` (80Gi each), 64 cores, 512Gi.
pub fn gpu_node(name: &str, model: &str, count: i64) -> NodeDescription {
    NodeDescription {
        name: name.to_string(),
        labels: BTreeMap::new(),
        taints: Vec::new(),
        pool: Pool::OnDemand,
        cpu: MilliQuantity::from("64"),
        memory: MemoryQuantity::from("512Gi"),
        gpus: Some(NodeGpus {
            model: model.to_string(),
            count,
            memory: Some(MemoryQuantity::from("80Gi")),
            mig: MigMode::Disabled,
            nvlink_groups: Vec::new(),
        }),
    }
}

/// A node whose A100 80GB GPUs are in MIG mode.
pub fn mig_node(name: &str, count: i64) -> NodeDescription {
    let mut n = gpu_node(name, "A100-80GB", count);
    if let Some(g) = n.gpus.as_mut() {
        g.mig = MigMode::Enabled;
    }
    n
}

/// A queue with a GPU guarantee, in `cohort`, with an optional GPU borrowing limit.
pub fn queue(name: &str, cohort: Option<&str>, gpus: u64, limit: Option<u64>) -> QueueSpec {
    let mut q = QueueSpec::named(name);
    q.cohort = cohort.map(str::to_string);
    q.guaranteed = Quota {
        gpus: Some(MilliQuantity::from(gpus.to_string().as_str())),
        cpu: None,
        memory: None,
    };
    q.borrowing_limit = limit.map(|l| Quota {
        gpus: Some(MilliQuantity::from(l.to_string().as_str())),
        cpu: None,
        memory: None,
    });
    q
}

/// A cluster of `nodes` with `queues` and the shipped priority classes.
pub fn cluster(nodes: Vec<NodeDescription>, queues: Vec<QueueSpec>) -> ClusterSpec {
    ClusterSpec {
        priority_classes: Vec::new(),
        queues,
        nodes,
    }
}

/// A workload of whole GPUs (1 core, 1Gi per replica).
pub fn job(name: &str, class: &str, queue: &str, gpus: i64) -> WorkloadSpec {
    let mut w = WorkloadSpec::named(name);
    w.priority_class = Some(class.to_string());
    w.queue = Some(queue.to_string());
    w.resources = Resources {
        cpu: Some(MilliQuantity::from("1")),
        memory: Some(MemoryQuantity::from("1Gi")),
        shm: None,
        gpu: Some(GpuRequest {
            count: Some(gpus),
            ..GpuRequest::default()
        }),
    };
    w
}

/// A workload of one MIG instance.
pub fn mig_job(name: &str, profile: &str) -> WorkloadSpec {
    let mut w = job(name, "low-priority-batch", "default", 1);
    if let Some(g) = w.resources.gpu.as_mut() {
        g.count = None;
        g.mig = Some(profile.to_string());
    }
    w
}

/// The high, medium and low shipped classes.
pub const HIGH: &str = "high-priority-training";
/// Medium.
pub const MEDIUM: &str = "medium-priority-inference";
/// Low.
pub const LOW: &str = "low-priority-batch";

/// A scheduler plus its cluster spec and RNG.
pub struct Harness {
    /// The scheduler.
    pub s: Scheduler,
    /// The spec it was built from.
    pub spec: ClusterSpec,
    /// The RNG.
    pub rng: Rng,
}

impl Harness {
    /// A harness on `spec` with the default configuration.
    pub fn new(spec: ClusterSpec) -> Self {
        Self::with(spec, SchedulerConfig::default())
    }

    /// A harness with `config`.
    pub fn with(spec: ClusterSpec, config: SchedulerConfig) -> Self {
        let s = Scheduler::from_spec(&spec, config).expect("valid cluster");
        Harness {
            s,
            spec,
            rng: Rng::new(7),
        }
    }

    /// Submits `w` at `now` with a known runtime.
    pub fn submit(&mut self, w: &WorkloadSpec, now: u64, runtime: Option<u64>) -> WorkloadId {
        let mut r = Workload::from_spec(w, &self.spec, &self.s.cluster().models, now)
            .expect("valid workload");
        r.expected_runtime = runtime;
        self.s.submit(r).expect("known queue")
    }

    /// Runs a cycle at `now`.
    pub fn cycle(&mut self, now: u64) -> CycleOutcome {
        self.s.cycle(now, &mut self.rng)
    }

    /// The node names and device labels of running workload `id`.
    pub fn devices(&self, id: WorkloadId) -> Vec<String> {
        let nodes = self.s.cluster().nodes();
        self.s.running()[&id]
            .placements
            .iter()
            .flat_map(|p| {
                p.devices
                    .iter()
                    .map(|d| format!("{}:{}", nodes[p.node as usize].name, d.label()))
            })
            .collect()
    }
}

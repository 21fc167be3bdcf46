//! The scheduling-cycle benchmark: a large live cluster and a long pending queue, built
//! deterministically from a seed; the caller times [`Scheduler::cycle`].
//!
//! Cluster: `nodes` nodes of 8 GPUs (80 GB), 96 cores, 1 TiB, in four models (A100-40GB, A100-80GB,
//! H100-80GB, L40S) and two zones, NVLink in two groups of four. Queues: four in one cohort, each
//! guaranteed a quarter of the GPUs and allowed to borrow a quarter more. Pending workloads: 40 % shares
//! of 250 or 500 milli, 30 % one GPU, 12 % two, 8 % four (NVLink), 5 % eight, 5 % CPU-only; priorities
//! high 10 %, medium 30 %, low 60 %; a fifth restricted to one model, a tenth to one zone.

use crate::scenario::ScenarioError;
use gantry_core::Rng;
use gantry_core::live::{Scheduler, SchedulerConfig, Workload};
use gantry_core::model::{GpuDemand, ModelSet, Pod};
use gantry_core::spec::{
    ClusterSpec, MemoryQuantity, MigMode, MilliQuantity, NodeDescription, NodeGpus, Pool,
    QueueSpec, Quota, Topology,
};
use std::collections::BTreeMap;

const MODELS: [&str; 4] = ["A100-40GB", "A100-80GB", "H100-80GB", "L40S"];
const QUEUES: [&str; 4] = ["q0", "q1", "q2", "q3"];

/// The benchmark cluster of `nodes` 8-GPU nodes.
pub fn bench_cluster(nodes: usize) -> ClusterSpec {
    let gpus_per_queue = (nodes * 8 / 4).to_string();
    let queues = QUEUES
        .iter()
        .map(|q| {
            let mut s = QueueSpec::named(q);
            s.cohort = Some("all".into());
            s.guaranteed = Quota {
                gpus: Some(MilliQuantity::from(gpus_per_queue.as_str())),
                cpu: None,
                memory: None,
            };
            s.borrowing_limit = Some(Quota {
                gpus: Some(MilliQuantity::from(gpus_per_queue.as_str())),
                cpu: None,
                memory: None,
            });
            s
        })
        .collect();
    let nodes = (0..nodes)
        .map(|i| NodeDescription {
            name: format!("node-{i:05}"),
            labels: BTreeMap::from([("zone".to_string(), ["a", "b"][i % 2].to_string())]),
            taints: Vec::new(),
            pool: Pool::OnDemand,
            cpu: MilliQuantity::from("96"),
            memory: MemoryQuantity::from("1Ti"),
            gpus: Some(NodeGpus {
                model: MODELS[(i / 2) % 4].to_string(),
                count: 8,
                memory: Some(MemoryQuantity::from("80Gi")),
                mig: MigMode::Disabled,
                nvlink_groups: vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]],
            }),
        })
        .collect();
    ClusterSpec {
        priority_classes: Vec::new(),
        queues,
        nodes,
    }
}

/// A scheduler on the benchmark cluster with `pending` workloads submitted at time 0.
pub fn bench_scheduler(
    nodes: usize,
    pending: usize,
    seed: u64,
    config: SchedulerConfig,
) -> Result<Scheduler, ScenarioError> {
    let spec = bench_cluster(nodes);
    let mut s = Scheduler::from_spec(&spec, config)?;
    let models: Vec<_> = MODELS
        .iter()
        .filter_map(|m| s.cluster().models.get(m))
        .collect();
    let mut rng = Rng::new(seed);
    for i in 0..pending {
        let r = rng.below(100);
        let gpu = match r {
            0..40 => GpuDemand::Share(if rng.below(2) == 0 { 250 } else { 500 }),
            40..70 => GpuDemand::Whole(1),
            70..82 => GpuDemand::Whole(2),
            82..90 => GpuDemand::Whole(4),
            90..95 => GpuDemand::Whole(8),
            _ => GpuDemand::None,
        };
        let per_gpu = gpu.total_milli().max(250) as u64;
        let mut set = ModelSet::ANY;
        let pick = (gpu != GpuDemand::None && rng.below(5) == 0)
            .then(|| models.get(rng.below(models.len() as u64) as usize))
            .flatten();
        if let Some(&m) = pick {
            set.insert(m);
        }
        let pod = Pod {
            cpu_milli: per_gpu * 8,
            memory_mib: per_gpu * 64,
            gpu,
            models: set,
        };
        let priority = match rng.below(10) {
            0 => 1000,
            1..4 => 500,
            _ => 100,
        };
        let queue = QUEUES[rng.below(4) as usize];
        let mut w = Workload::from_pod(&format!("w{i}"), queue, priority, &pod, 1);
        w.priority_class = match priority {
            1000 => "high-priority-training",
            500 => "medium-priority-inference",
            _ => "low-priority-batch",
        }
        .to_string();
        if gpu == GpuDemand::Whole(4) {
            w.topology = Topology::Nvlink;
        }
        if rng.below(10) == 0 {
            w.node_selector
                .insert("zone".into(), ["a", "b"][rng.below(2) as usize].into());
        }
        w.expected_runtime = Some(600 + rng.below(7200));
        s.submit(w)?;
    }
    Ok(s)
}

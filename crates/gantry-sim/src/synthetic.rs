//! A built-in synthetic cluster and workload, so the simulator runs with nothing outside the repo.
//!
//! Cluster (80 nodes, 368 GPUs): 8 x (8 H100-80GB, 128 cores, 1 TiB), 16 x (8 A100-80GB, 96 cores,
//! 768 GiB), 32 x (4 T4, 64 cores, 256 GiB), 24 x (2 V100, 32 cores, 128 GiB).
//! Workload (420 pods from a fixed seed, about 99 % of GPU capacity, shaped like openb): 12 % CPU-only, 40 % sharing pods of
//! 100..700 milli, 40 % one whole GPU, 4 % two, 2 % four, 2 % eight; 15 % of GPU pods pin a model
//! (one whose nodes have enough GPUs, in proportion to its GPUs).

use crate::openb::{Trace, TracePod};
use gantry_core::Rng;
use gantry_core::model::{GpuDemand, GpuModels, ModelSet, NodeSpec, Pod};

/// Seed of the built-in workload (fixed: the synthetic trace is the same on every machine).
pub const SYNTHETIC_SEED: u64 = 20_261_125;

/// Pods in the built-in workload.
const PODS: usize = 420;

/// The built-in synthetic trace.
pub fn synthetic_trace() -> Trace {
    let mut models = GpuModels::default();
    let mut nodes = Vec::new();
    let groups: [(&str, u32, u8, u64, u64); 4] = [
        ("H100-80GB", 8, 8, 128_000, 1_048_576),
        ("A100-80GB", 16, 8, 96_000, 786_432),
        ("T4", 32, 4, 64_000, 262_144),
        ("V100", 24, 2, 32_000, 131_072),
    ];
    for (model, count, gpus, cpu, mem) in groups {
        let id = models.intern(model).expect("four models fit the table");
        for i in 0..count {
            nodes.push(NodeSpec {
                name: format!("{}-{i:02}", model.to_lowercase()),
                cpu_milli: cpu,
                memory_mib: mem,
                gpu_count: gpus,
                gpu_model: Some(id),
            });
        }
    }
    // A pinned pod names a model whose nodes can hold its GPU count, weighted by that model's GPUs.
    let pick_model = |k: u8, rng: &mut Rng| -> &str {
        let fits = groups.iter().filter(|g| g.2 >= k);
        let total: u64 = fits.clone().map(|g| u64::from(g.1) * u64::from(g.2)).sum();
        let mut ticket = rng.below(total);
        for g in fits {
            let w = u64::from(g.1) * u64::from(g.2);
            if ticket < w {
                return g.0;
            }
            ticket -= w;
        }
        groups[0].0
    };
    let mut rng = Rng::new(SYNTHETIC_SEED);
    let shares = [100u16, 250, 300, 460, 500, 700];
    let mut pods = Vec::with_capacity(PODS);
    for i in 0..PODS {
        let roll = rng.below(100);
        let (gpu, cpu_per_gpu) = match roll {
            0..=11 => (GpuDemand::None, 0),
            12..=51 => (
                GpuDemand::Share(shares[rng.below(shares.len() as u64) as usize]),
                4000,
            ),
            52..=91 => (GpuDemand::Whole(1), 8000),
            92..=95 => (GpuDemand::Whole(2), 8000),
            96..=97 => (GpuDemand::Whole(4), 8000),
            _ => (GpuDemand::Whole(8), 8000),
        };
        let cpu_milli = match gpu {
            GpuDemand::None => 1000 * (1 + rng.below(16)),
            GpuDemand::Whole(k) => cpu_per_gpu * u64::from(k),
            _ => cpu_per_gpu,
        };
        let mut allowed = ModelSet::ANY;
        let mut spec = String::new();
        if gpu != GpuDemand::None && rng.below(100) < 15 {
            let name = pick_model(gpu.gpu_count() as u8, &mut rng);
            allowed.insert(models.get(name).expect("interned above"));
            spec = name.to_string();
        }
        pods.push(TracePod {
            name: format!("synthetic-pod-{i:04}"),
            pod: Pod {
                cpu_milli,
                memory_mib: cpu_milli * 4,
                gpu,
                models: allowed,
            },
            gpu_spec: spec,
        });
    }
    Trace {
        name: "synthetic".into(),
        models,
        nodes,
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_trace_is_fixed_and_fills_most_of_the_cluster() {
        let a = synthetic_trace();
        let b = synthetic_trace();
        assert_eq!(a.pods, b.pods);
        assert_eq!(a.nodes.len(), 80);
        let gpus: u32 = a.nodes.iter().map(|n| u32::from(n.gpu_count)).sum();
        assert_eq!(gpus, 368);
        let demand: u32 = a.pods.iter().map(|p| p.pod.gpu.total_milli()).sum();
        // The workload asks for a large part of the cluster; the protocol inflates it to 130 %.
        assert!(demand > 368_000 / 2 && demand < 2 * 368_000, "{demand}");
    }
}

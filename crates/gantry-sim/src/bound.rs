//! An offline lower bound on unallocated GPUs: what no scheduler, even one that knows every pod in
//! advance and may move them freely, can beat.
//!
//! Relaxation: nodes are pooled by type (model, GPUs, CPU, memory per node); pods are grouped by
//! (CPU, memory, GPU demand, allowed models); a group may go to a pool only if one node of the pool could
//! hold one of its pods. A linear program then packs pods fractionally into the pools' total GPU milli,
//! CPU and memory, maximising allocated GPU milli. Dropping integrality (pods split across nodes,
//! shares across GPUs) only adds freedom, so the optimum is an upper bound on what any placement of
//! the same pods allocates, and 100 % minus it is a lower bound on unallocated GPU %.

use crate::metrics::arrived_pct;
use crate::openb::TracePod;
use gantry_core::model::{GpuDemand, ModelId, ModelSet, NodeSpec, Pod};
use minilp::{ComparisonOp, OptimizationDirection, Problem};
use std::collections::HashMap;

/// The LP could not be solved (it always has the all-zero solution, so this is a solver failure).
#[derive(Debug, thiserror::Error)]
#[error("bound LP failed: {0}")]
pub struct BoundError(String);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PoolKey {
    model: Option<ModelId>,
    gpus: u8,
    cpu: u64,
    memory: u64,
}

/// Most GPU milli any placement of `pods` on `nodes` can allocate (an upper bound, by LP relaxation).
pub fn max_allocatable_milli(nodes: &[NodeSpec], pods: &[&Pod]) -> Result<f64, BoundError> {
    let mut pools: HashMap<PoolKey, u64> = HashMap::new();
    for n in nodes.iter().filter(|n| n.gpu_count > 0) {
        let key = PoolKey {
            model: n.gpu_model,
            gpus: n.gpu_count,
            cpu: n.cpu_milli,
            memory: n.memory_mib,
        };
        *pools.entry(key).or_default() += 1;
    }
    let mut pools: Vec<(PoolKey, u64)> = pools.into_iter().collect();
    pools.sort_by_key(|(k, _)| (k.model, k.gpus, k.cpu, k.memory));
    let mut groups: HashMap<(u64, u64, GpuDemand, ModelSet), u64> = HashMap::new();
    for p in pods.iter().filter(|p| p.gpu != GpuDemand::None) {
        *groups
            .entry((p.cpu_milli, p.memory_mib, p.gpu, p.models))
            .or_default() += 1;
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by_key(|((cpu, mem, gpu, models), _)| {
        (
            *cpu,
            *mem,
            gpu.total_milli(),
            gpu.gpu_count(),
            models.iter().map(|m| m.0).collect::<Vec<_>>(),
        )
    });
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let mut per_pool: Vec<Vec<(minilp::Variable, f64, f64, f64)>> = vec![Vec::new(); pools.len()];
    for ((cpu, mem, gpu, models), count) in &groups {
        let milli = f64::from(gpu.total_milli());
        let mut vars = Vec::new();
        for (i, (pool, _)) in pools.iter().enumerate() {
            let fits = pool.model.is_some_and(|m| models.allows(m))
                && u32::from(pool.gpus) >= gpu.gpu_count()
                && pool.cpu >= *cpu
                && pool.memory >= *mem;
            if fits {
                let v = lp.add_var(milli, (0.0, *count as f64));
                per_pool[i].push((v, milli, *cpu as f64, *mem as f64));
                vars.push((v, 1.0));
            }
        }
        if vars.len() > 1 {
            lp.add_constraint(&vars, ComparisonOp::Le, *count as f64);
        }
    }
    for (i, (pool, count)) in pools.iter().enumerate() {
        if per_pool[i].is_empty() {
            continue;
        }
        let n = *count as f64;
        let gpu: Vec<_> = per_pool[i].iter().map(|&(v, g, _, _)| (v, g)).collect();
        let cpu: Vec<_> = per_pool[i].iter().map(|&(v, _, c, _)| (v, c)).collect();
        let mem: Vec<_> = per_pool[i].iter().map(|&(v, _, _, m)| (v, m)).collect();
        lp.add_constraint(&gpu, ComparisonOp::Le, n * f64::from(pool.gpus) * 1000.0);
        lp.add_constraint(&cpu, ComparisonOp::Le, n * pool.cpu as f64);
        lp.add_constraint(&mem, ComparisonOp::Le, n * pool.memory as f64);
    }
    lp.solve()
        .map(|s| s.objective())
        .map_err(|e| BoundError(e.to_string()))
}

/// Lower bound on the published metric "unallocated GPU % at arrival X" for one arrival order.
///
/// The points at X are those whose arrived % rounds to X (or X-1..X+1 when none do). At each such
/// point, allocation is at most the demand arrived so far and at most the LP optimum for every pod
/// arrived up to the bucket's last point; the bound is 100 minus the mean of that.
pub fn unallocated_lower_bound(
    nodes: &[NodeSpec],
    arrivals: &[&TracePod],
    capacity_milli: u64,
    x: i64,
) -> Result<Option<f64>, BoundError> {
    let mut prefix = Vec::with_capacity(arrivals.len());
    let mut sum = 0u64;
    for p in arrivals {
        sum += u64::from(p.pod.gpu.total_milli());
        prefix.push(sum);
    }
    let pick = |lo: i64, hi: i64| -> Vec<usize> {
        (0..prefix.len())
            .filter(|&i| (lo..=hi).contains(&arrived_pct(prefix[i], capacity_milli)))
            .collect()
    };
    let mut points = pick(x, x);
    if points.is_empty() {
        points = pick(x - 1, x + 1);
    }
    let Some(&last) = points.last() else {
        return Ok(None);
    };
    let pods: Vec<&Pod> = arrivals[..=last].iter().map(|p| &p.pod).collect();
    let best = max_allocatable_milli(nodes, &pods)?;
    let cap = capacity_milli as f64;
    let mean = points
        .iter()
        .map(|&i| (prefix[i] as f64).min(best) / cap * 100.0)
        .sum::<f64>()
        / points.len() as f64;
    Ok(Some((100.0 - mean).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::model::GpuModels;

    fn node(name: &str, model: ModelId, gpus: u8, cpu: u64) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            cpu_milli: cpu,
            memory_mib: 1 << 20,
            gpu_count: gpus,
            gpu_model: Some(model),
        }
    }

    #[test]
    fn model_pinned_demand_beyond_its_pool_is_not_allocatable() {
        let mut models = GpuModels::default();
        let (a, b) = (models.intern("A").unwrap(), models.intern("B").unwrap());
        let nodes = [node("a", a, 2, 64_000), node("b", b, 2, 64_000)];
        let mut only_a = ModelSet::ANY;
        only_a.insert(a);
        let pinned = Pod {
            cpu_milli: 1000,
            memory_mib: 1,
            gpu: GpuDemand::Whole(1),
            models: only_a,
        };
        // Three 1-GPU pods pinned to A (2 GPUs): at most 2,000 milli.
        let pods = [&pinned, &pinned, &pinned];
        assert!((max_allocatable_milli(&nodes, &pods).unwrap() - 2000.0).abs() < 1e-6);
        // An 8-GPU pod fits no 2-GPU node at all.
        let big = Pod {
            gpu: GpuDemand::Whole(8),
            models: ModelSet::ANY,
            ..pinned
        };
        assert!(max_allocatable_milli(&nodes, &[&big]).unwrap().abs() < 1e-6);
    }

    #[test]
    fn cpu_limits_what_fits() {
        let mut models = GpuModels::default();
        let a = models.intern("A").unwrap();
        let nodes = [node("a", a, 4, 8_000)];
        let hungry = Pod {
            cpu_milli: 4_000,
            memory_mib: 1,
            gpu: GpuDemand::Share(500),
            models: ModelSet::ANY,
        };
        // CPU allows two of the four pods: 1,000 milli of the 4,000.
        let pods = [&hungry, &hungry, &hungry, &hungry];
        assert!((max_allocatable_milli(&nodes, &pods).unwrap() - 1000.0).abs() < 1e-6);
    }
}

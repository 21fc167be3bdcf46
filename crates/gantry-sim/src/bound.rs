//! An offline lower bound on unallocated GPUs: what no scheduler, even one that knows every pod in
//! advance and may move them freely, can beat.
//!
//! Relaxation (a linear program, solved exactly): whole-GPU pods are packed fractionally into pools
//! of identical nodes (model, GPUs, CPU, memory), within each pool's total GPUs, CPU and memory and
//! only where one node of the pool could hold one pod. Sharing pods keep their one real constraint
//! that a fractional packing loses: shares on one GPU sum to at most 1000 milli. They are packed as
//! *GPU configurations* (multisets of share sizes that fit one GPU, all maximal ones enumerated),
//! any GPU of the cluster may take a configuration, and a slot may stay empty. Everything a real
//! placement must respect beyond this (CPU and memory of sharing pods, model constraints of shares,
//! integrality) is dropped, so the LP optimum is an upper bound on what any placement allocates, and
//! 100 % minus it is a lower bound on unallocated GPU %.

use crate::metrics::arrived_pct;
use crate::openb::TracePod;
use gantry_core::model::{GPU_MILLI, GpuDemand, ModelId, ModelSet, NodeSpec, Pod};
use minilp::{ComparisonOp, LinearExpr, OptimizationDirection, Problem};
use std::collections::{BTreeMap, HashMap};

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

/// Every maximal multiset of `sizes` (ascending, distinct) that fits in one GPU: no size fits beside it.
pub(crate) fn maximal_configs(sizes: &[u32]) -> Vec<Vec<u32>> {
    fn walk(sizes: &[u32], i: usize, left: u32, counts: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
        if i == sizes.len() {
            if sizes.first().is_none_or(|&s| left < s) {
                out.push(counts.clone());
            }
            return;
        }
        let mut k = 0;
        while k * sizes[i] <= left {
            counts.push(k);
            walk(sizes, i + 1, left - k * sizes[i], counts, out);
            counts.pop();
            k += 1;
        }
    }
    let mut out = Vec::new();
    walk(sizes, 0, GPU_MILLI, &mut Vec::new(), &mut out);
    out
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
    let total_gpus: f64 = pools
        .iter()
        .map(|(k, n)| (u64::from(k.gpus) * n) as f64)
        .sum();
    let mut whole: HashMap<(u64, u64, u8, ModelSet), u64> = HashMap::new();
    let mut shares: BTreeMap<u32, u64> = BTreeMap::new();
    for p in pods {
        match p.gpu {
            GpuDemand::None => {}
            GpuDemand::Share(m) => *shares.entry(u32::from(m)).or_default() += 1,
            GpuDemand::Whole(k) => {
                *whole
                    .entry((p.cpu_milli, p.memory_mib, k, p.models))
                    .or_default() += 1
            }
        }
    }
    let mut whole: Vec<_> = whole.into_iter().collect();
    whole.sort_by_key(|((cpu, mem, k, models), _)| {
        (
            *cpu,
            *mem,
            *k,
            models.iter().map(|m| m.0).collect::<Vec<_>>(),
        )
    });
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let mut gpus_used = LinearExpr::empty();
    let mut per_pool: Vec<Vec<(minilp::Variable, f64, f64, f64)>> = vec![Vec::new(); pools.len()];
    for ((cpu, mem, k, models), count) in &whole {
        let milli = f64::from(*k) * f64::from(GPU_MILLI);
        let mut vars = Vec::new();
        for (i, (pool, _)) in pools.iter().enumerate() {
            let fits = pool.model.is_some_and(|m| models.allows(m))
                && pool.gpus >= *k
                && pool.cpu >= *cpu
                && pool.memory >= *mem;
            if fits {
                let v = lp.add_var(milli, (0.0, *count as f64));
                per_pool[i].push((v, f64::from(*k), *cpu as f64, *mem as f64));
                gpus_used.add(v, f64::from(*k));
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
        lp.add_constraint(&gpu, ComparisonOp::Le, n * f64::from(pool.gpus));
        lp.add_constraint(&cpu, ComparisonOp::Le, n * pool.cpu as f64);
        lp.add_constraint(&mem, ComparisonOp::Le, n * pool.memory as f64);
    }
    let sizes: Vec<u32> = shares.keys().copied().collect();
    let mut used_of_size: Vec<LinearExpr> = sizes.iter().map(|_| LinearExpr::empty()).collect();
    for config in maximal_configs(&sizes) {
        let milli: u32 = config.iter().zip(&sizes).map(|(k, s)| k * s).sum();
        let v = lp.add_var(f64::from(milli), (0.0, f64::INFINITY));
        gpus_used.add(v, 1.0);
        for (j, &k) in config.iter().enumerate() {
            if k > 0 {
                used_of_size[j].add(v, f64::from(k));
            }
        }
    }
    for ((size, count), mut used) in shares.iter().zip(used_of_size) {
        // An empty slot of this size: it counts against the configuration's milli.
        let empty = lp.add_var(-f64::from(*size), (0.0, f64::INFINITY));
        used.add(empty, -1.0);
        lp.add_constraint(used, ComparisonOp::Le, *count as f64);
    }
    lp.add_constraint(gpus_used, ComparisonOp::Le, total_gpus);
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
    fn shares_that_cannot_pair_each_take_a_gpu() {
        let mut models = GpuModels::default();
        let a = models.intern("A").unwrap();
        let nodes = [node("a", a, 4, 64_000)];
        let share = |m| Pod {
            cpu_milli: 1,
            memory_mib: 1,
            gpu: GpuDemand::Share(m),
            models: ModelSet::ANY,
        };
        // Five 600-milli shares: no two fit one GPU, so 4 GPUs hold 4 of them: 2,400 milli, although
        // their 3,000 milli total is below the 4,000 capacity.
        let big = share(600);
        let pods = [&big, &big, &big, &big, &big];
        assert!((max_allocatable_milli(&nodes, &pods).unwrap() - 2400.0).abs() < 1e-6);
        // A 400 pairs with a 600: four 600s and one 400 fill 3,400 milli.
        let small = share(400);
        let pods = [&big, &big, &big, &big, &big, &small];
        assert!((max_allocatable_milli(&nodes, &pods).unwrap() - 2800.0).abs() < 1e-6);
    }

    #[test]
    fn maximal_configs_leave_no_room_for_another_share() {
        let configs = maximal_configs(&[300, 600]);
        // 3x300 (100 left), 1x300+1x600 (100 left); 0x300+1x600 leaves 400 >= 300, not maximal.
        assert_eq!(configs, vec![vec![1, 1], vec![3, 0]]);
    }

    #[test]
    fn cpu_limits_what_fits() {
        let mut models = GpuModels::default();
        let a = models.intern("A").unwrap();
        let nodes = [node("a", a, 4, 8_000)];
        let hungry = Pod {
            cpu_milli: 4_000,
            memory_mib: 1,
            gpu: GpuDemand::Whole(1),
            models: ModelSet::ANY,
        };
        // CPU allows two of the four 1-GPU pods: 2,000 milli of the 4,000.
        let pods = [&hungry, &hungry, &hungry, &hungry];
        assert!((max_allocatable_milli(&nodes, &pods).unwrap() - 2000.0).abs() < 1e-6);
    }
}

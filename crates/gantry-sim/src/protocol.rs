//! The published openb experiment protocol: arrival order, inflation, node order, target workload.

use crate::openb::{Trace, TracePod};
use gantry_core::Rng;
use gantry_core::frag::{DEFAULT_COVERAGE_PCT, Shape, TargetWorkload};
use std::collections::HashMap;

/// The pods of a trace in name order (the order the published tool samples from).
pub fn by_name(trace: &Trace) -> Vec<&TracePod> {
    let mut pods: Vec<&TracePod> = trace.pods.iter().collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    pods
}

/// Arrival order for one seed: the shuffled trace, then inflated (or trimmed) to `inflate` x GPU capacity.
///
/// Inflation draws pods uniformly with replacement from the name-sorted trace and appends them while
/// `total + drawn pod's per-GPU milli <= target` (the published stopping rule); a trace above the
/// target loses uniformly random pods until it is at or below it. Returns indices into `sorted`.
pub fn arrivals(
    sorted: &[&TracePod],
    capacity_milli: u64,
    inflate: f64,
    rng: &mut Rng,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sorted.len()).collect();
    rng.shuffle(&mut order);
    let target = inflate * capacity_milli as f64;
    let total_of = |i: usize| u64::from(sorted[i].pod.gpu.total_milli());
    let mut total: u64 = order.iter().map(|&i| total_of(i)).sum();
    if (total as f64) > target {
        while (total as f64) > target && !order.is_empty() {
            let k = rng.below(order.len() as u64) as usize;
            total -= total_of(order.remove(k));
        }
    } else if (total as f64) < target && !sorted.is_empty() {
        loop {
            let i = rng.below(sorted.len() as u64) as usize;
            let per_gpu = u64::from(sorted[i].pod.gpu.milli_per_gpu());
            if (total + per_gpu) as f64 > target {
                break;
            }
            total += total_of(i);
            order.push(i);
        }
    }
    order
}

/// A seeded permutation of node indices: the order in which score ties are broken.
pub fn node_order(nodes: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes).collect();
    rng.shuffle(&mut order);
    order
}

/// The published target workload of a trace: its pod shapes (CPU, per-GPU milli, GPU count, model
/// text) ranked by count, ties by larger shape first, kept until they cover 95 % of pods.
pub fn target_workload(trace: &Trace) -> TargetWorkload {
    // Keyed like the published tool: CPU, per-GPU milli, GPU count and the model text as written.
    type Key<'a> = (u64, u32, u32, &'a str);
    let mut counts: HashMap<Key<'_>, (Shape, u64)> = HashMap::new();
    for p in &trace.pods {
        let shape = Shape::of(&p.pod);
        let key = (
            shape.cpu_milli,
            shape.milli_per_gpu,
            shape.gpu_count,
            p.gpu_spec.as_str(),
        );
        counts.entry(key).or_insert((shape, 0)).1 += 1;
    }
    let mut ranked: Vec<(&Key<'_>, &(Shape, u64))> = counts.iter().collect();
    ranked.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| b.0.cmp(a.0)));
    let ranked: Vec<(Shape, u64)> = ranked.into_iter().map(|(_, &v)| v).collect();
    TargetWorkload::from_ranked_counts(&ranked, trace.pods.len() as u64, DEFAULT_COVERAGE_PCT)
}

//! `binpack`: the most allocated node after placement, averaged over CPU, memory and GPU.
//!
//! score = 100 x mean over resources r the node has of (capacity_r - free_r + request_r) / capacity_r.

use super::ScoreContext;
use crate::model::{Node, Pod};

/// Per-resource (used-after, capacity) pairs for the resources the node has.
pub(crate) fn used_after(node: &Node, pod: &Pod) -> impl Iterator<Item = (f64, f64)> {
    let cpu = (
        (node.spec.cpu_milli - node.cpu_free + pod.cpu_milli) as f64,
        node.spec.cpu_milli as f64,
    );
    let mem = (
        (node.spec.memory_mib - node.memory_free + pod.memory_mib) as f64,
        node.spec.memory_mib as f64,
    );
    let gpu = (
        f64::from(node.gpu_allocated() + pod.gpu.total_milli()),
        f64::from(node.gpu_capacity()),
    );
    [cpu, mem, gpu].into_iter().filter(|&(_, cap)| cap > 0.0)
}

/// Mean used fraction after placement, in percent.
pub fn score(node: &Node, pod: &Pod, _ctx: &ScoreContext<'_>) -> f64 {
    let (sum, n) = used_after(node, pod).fold((0.0, 0.0), |(s, n), (u, c)| (s + u / c, n + 1.0));
    if n == 0.0 { 0.0 } else { 100.0 * sum / n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuSet;
    use crate::policies::testing::*;

    #[test]
    fn fuller_node_scores_higher() {
        let mut cluster = cluster_of(&[(8000, &[1000; 2]), (8000, &[1000; 2])]);
        cluster
            .commit(1, &whole_pod(4000, 1), GpuSet::one(0))
            .unwrap();
        let ctx = ctx_for(&cluster);
        let pod = whole_pod(2000, 1);
        // Node 0 after: cpu 2/8, mem 0 (memory 0 requested of 65536), gpu 1/2 -> (0.25+0+0.5)/3.
        assert!((score(&cluster.nodes()[0], &pod, &ctx) - 25.0).abs() < 1e-9);
        // Node 1 after: cpu 6/8, mem 0, gpu 2/2 -> (0.75+0+1)/3.
        assert!((score(&cluster.nodes()[1], &pod, &ctx) - 175.0 / 3.0).abs() < 1e-9);
    }
}

//! `spread`: the least allocated node after placement, averaged over CPU, memory and GPU.
//!
//! score = 100 x mean over resources of (free_r - request_r) / capacity_r; a sharing pod takes the GPU
//! with most free.

use super::ScoreContext;
use super::binpack::used_after;
use crate::model::{Node, Pod};

/// Mean free fraction after placement, in percent.
pub fn score(node: &Node, pod: &Pod, _ctx: &ScoreContext<'_>) -> f64 {
    let (sum, n) =
        used_after(node, pod).fold((0.0, 0.0), |(s, n), (u, c)| (s + (c - u) / c, n + 1.0));
    if n == 0.0 { 0.0 } else { 100.0 * sum / n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuSet;
    use crate::policies::testing::*;

    #[test]
    fn emptier_node_scores_higher() {
        let mut cluster = cluster_of(&[(8000, &[1000; 2]), (8000, &[1000; 2])]);
        cluster
            .commit(1, &whole_pod(4000, 1), GpuSet::one(0))
            .unwrap();
        let ctx = ctx_for(&cluster);
        let pod = whole_pod(2000, 1);
        assert!((score(&cluster.nodes()[0], &pod, &ctx) - 75.0).abs() < 1e-9);
        assert!((score(&cluster.nodes()[1], &pod, &ctx) - 125.0 / 3.0).abs() < 1e-9);
    }
}

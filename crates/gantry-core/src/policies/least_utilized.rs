//! `least_utilized`: the node whose GPUs are least used; a sharing pod takes the GPU with most free.
//!
//! score = 100 x gpu_free / gpu_capacity of the node (in simulation, allocation stands for utilisation);
//! nodes without GPUs score by free CPU instead.

use super::ScoreContext;
use crate::model::{Node, Pod};

/// Percentage of the node's GPU (or, without GPUs, CPU) capacity that is free.
pub fn score(node: &Node, _pod: &Pod, _ctx: &ScoreContext<'_>) -> f64 {
    match node.gpu_capacity() {
        0 if node.spec.cpu_milli == 0 => 0.0,
        0 => 100.0 * node.cpu_free as f64 / node.spec.cpu_milli as f64,
        cap => 100.0 * f64::from(node.gpu_free_total()) / f64::from(cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuSet;
    use crate::policies::testing::*;

    #[test]
    fn emptier_node_scores_higher() {
        let mut cluster = cluster_of(&[(64000, &[1000; 4]), (64000, &[1000; 4])]);
        cluster
            .commit(0, &whole_pod(1000, 1), GpuSet::one(0))
            .unwrap();
        let ctx = ctx_for(&cluster);
        let pod = share_pod(1000, 300);
        assert_eq!(score(&cluster.nodes()[0], &pod, &ctx), 75.0);
        assert_eq!(score(&cluster.nodes()[1], &pod, &ctx), 100.0);
    }
}

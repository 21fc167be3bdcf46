//! `bestfit`: least leftover after placement, 0.5 CPU + 0.5 GPU, each over the largest node's capacity.
//!
//! score = trunc(100 x (1 - (0.5 (cpu_free - cpu_req)/Cmax + 0.5 (gpu_free - gpu_req)/Gmax))).

use super::ScoreContext;
use crate::model::{Node, Pod};

/// The published BestFit score of `pod` on `node`.
pub fn score(node: &Node, pod: &Pod, ctx: &ScoreContext<'_>) -> f64 {
    let cmax = ctx.max_cpu_milli as f64;
    let gmax = f64::from(ctx.max_gpu_milli.max(1));
    let cpu_left = node.cpu_free as f64 - pod.cpu_milli as f64;
    let gpu_left = f64::from(node.gpu_free_total()) - f64::from(pod.gpu.total_milli());
    let mut raw = 0.0 + (cpu_left / cmax) * 0.5;
    raw += (gpu_left / gmax) * 0.5;
    ((1.0 - raw) * 100.0).trunc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::testing::*;

    #[test]
    fn tighter_node_scores_higher() {
        // Cmax = 64000, Gmax = 8000.
        let cluster = cluster_of(&[(64000, &[1000; 8]), (32000, &[1000; 2])]);
        let ctx = ctx_for(&cluster);
        let pod = whole_pod(16000, 1);
        // Node 0: 0.5*48/64 + 0.5*7/8 = 0.375 + 0.4375 = 0.8125 -> 18.75 -> 18.
        assert_eq!(score(&cluster.nodes()[0], &pod, &ctx), 18.0);
        // Node 1: 0.5*16/64 + 0.5*1/8 = 0.125 + 0.0625 -> 81.25 -> 81.
        assert_eq!(score(&cluster.nodes()[1], &pod, &ctx), 81.0);
    }
}

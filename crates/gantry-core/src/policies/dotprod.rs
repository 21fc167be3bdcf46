//! `dotprod`: prefer the node whose free (CPU, GPU) vector is least aligned with the request.
//!
//! score = trunc(100 x (1 - (cpu_free/Cmax x cpu_req/Cmax + gpu_free/Gmax x gpu_req/Gmax) / 2)),
//! with Cmax, Gmax the largest node's CPU and GPU capacity (published DotProduct, merged GPU dimension).

use super::ScoreContext;
use crate::model::{Node, Pod};

/// The published DotProd score of `pod` on `node`.
pub fn score(node: &Node, pod: &Pod, ctx: &ScoreContext<'_>) -> f64 {
    let cmax = ctx.max_cpu_milli as f64;
    let gmax = f64::from(ctx.max_gpu_milli.max(1));
    let node_v = [
        node.cpu_free as f64 / cmax,
        f64::from(node.gpu_free_total()) / gmax,
    ];
    let pod_v = [
        pod.cpu_milli as f64 / cmax,
        f64::from(pod.gpu.total_milli()) / gmax,
    ];
    let dot = 0.0 + node_v[0] * pod_v[0] + node_v[1] * pod_v[1];
    (100.0 * (1.0 - dot / 2.0)).trunc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::testing::*;

    #[test]
    fn less_aligned_node_scores_higher() {
        // Cmax = 64000, Gmax = 4000 (largest node). Pod: 16000 CPU, 1 GPU.
        let cluster = cluster_of(&[(64000, &[1000; 4]), (16000, &[1000])]);
        let ctx = ctx_for(&cluster);
        let pod = whole_pod(16000, 1);
        // Node 0: dot = 1*0.25 + 1*0.25 = 0.5 -> 100*(1-0.25) = 75.
        assert_eq!(score(&cluster.nodes()[0], &pod, &ctx), 75.0);
        // Node 1: dot = 0.25*0.25 + 0.25*0.25 = 0.125 -> 100*(1-0.0625) = 93.75 -> 93.
        assert_eq!(score(&cluster.nodes()[1], &pod, &ctx), 93.0);
    }
}

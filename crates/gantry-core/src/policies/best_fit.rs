//! `best_fit`: the node and GPU where the pod leaves the least free GPU behind (just enough share).
//!
//! Sharing pod: score = -(free milli left on the best-fitting GPU); whole-GPU pod: -(idle GPUs left
//! on the node) x 1000; CPU-only pod: -(CPU milli left). Ties go to the earlier node.

use super::ScoreContext;
use crate::devices::{ShareRule, share_gpu};
use crate::model::{GpuDemand, Node, Pod};
use crate::rng::Rng;

/// Negative leftover after placing `pod` on `node`: higher means a tighter fit.
pub fn score(node: &Node, pod: &Pod, _ctx: &ScoreContext<'_>) -> f64 {
    match pod.gpu {
        GpuDemand::Share(m) => {
            // BestFit share choice is deterministic: the RNG is never drawn.
            let mut unused = Rng::new(0);
            share_gpu(node, u32::from(m), ShareRule::BestFit, &mut unused)
                .map_or(f64::NEG_INFINITY, |g| -f64::from(node.gpus()[g] - m))
        }
        GpuDemand::Whole(k) => -(f64::from(node.fully_free_gpus()) - f64::from(k)) * 1000.0,
        GpuDemand::None => -(node.cpu_free.saturating_sub(pod.cpu_milli) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuSet;
    use crate::policies::testing::*;

    #[test]
    fn tightest_gpu_wins() {
        let mut cluster = cluster_of(&[(64000, &[1000; 2]), (64000, &[1000; 2])]);
        cluster
            .commit(1, &share_pod(1000, 600), GpuSet::one(1))
            .unwrap();
        let ctx = ctx_for(&cluster);
        let pod = share_pod(1000, 300);
        // Node 0: best GPU leaves 700; node 1: GPU1 (400 free) leaves 100.
        assert_eq!(score(&cluster.nodes()[0], &pod, &ctx), -700.0);
        assert_eq!(score(&cluster.nodes()[1], &pod, &ctx), -100.0);
        assert_eq!(
            score(&cluster.nodes()[0], &whole_pod(1000, 1), &ctx),
            -1000.0
        );
        assert_eq!(score(&cluster.nodes()[1], &whole_pod(1000, 1), &ctx), 0.0);
    }
}

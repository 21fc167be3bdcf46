//! `gpuclustering`: prefer nodes already running pods of the same GPU request kind, then fuller nodes.
//!
//! base = 25 x (Gmax - gpu_free) / Gmax (integer); + 75 if the node runs only pods of the pod's kind,
//! + 50 if it runs that kind among others, + 25 if it runs no GPU pod, + 0 otherwise. CPU-only pods score 0.

use super::ScoreContext;
use crate::model::{Node, Pod};

/// The published GpuClustering score of `pod` on `node`.
pub fn score(node: &Node, pod: &Pod, ctx: &ScoreContext<'_>) -> f64 {
    let Some(kind) = pod.gpu.kind_index() else {
        return 0.0;
    };
    let gmax = i64::from(ctx.max_gpu_milli.max(1));
    let base = 25 * (gmax - i64::from(node.gpu_free_total())) / gmax;
    let kinds = node.gpu_pods_by_kind.iter().filter(|&&c| c > 0).count();
    let bonus = if node.gpu_pods_by_kind[kind] > 0 {
        if kinds == 1 { 75 } else { 50 }
    } else if kinds == 0 {
        25
    } else {
        0
    };
    (base + bonus) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuSet;
    use crate::policies::testing::*;

    #[test]
    fn same_kind_beats_idle_beats_other_kind() {
        let mut cluster = cluster_of(&[
            (64000, &[1000; 8]),
            (64000, &[1000; 8]),
            (64000, &[1000; 8]),
        ]);
        let share = share_pod(1000, 500);
        let whole = whole_pod(1000, 1);
        cluster.commit(0, &share, GpuSet::one(0)).unwrap();
        cluster.commit(2, &whole, GpuSet::one(0)).unwrap();
        let ctx = ctx_for(&cluster);
        let n = cluster.nodes();
        // Node 0: 7500 free of 8000 -> base 25*500/8000 = 1; only sharing pods -> +75.
        assert_eq!(score(&n[0], &share, &ctx), 76.0);
        // Node 1: idle -> base 0 + 25.
        assert_eq!(score(&n[1], &share, &ctx), 25.0);
        // Node 2: 7000 free -> base 3; runs another kind only -> +0.
        assert_eq!(score(&n[2], &share, &ctx), 3.0);
        assert_eq!(score(&n[0], &whole_pod(1000, 0), &ctx), 0.0);
    }
}

//! `gantry`: Gantry's default: FGD's fragmentation classes, refined inside each class.
//!
//! Like FGD, a placement's class is trunc(100 x sigmoid((F_before - F_after) / 1000)), where F is the
//! node's expected GPU fragment against the target workload (see `frag`); the highest class wins and,
//! inside a class, the earliest node in cluster order (a first fit, which packs). Two refinements
//! break ties *inside* a class, never across classes:
//! - a CPU-only pod prefers the node with the least free GPU milli: its CPU is then taken where no
//!   idle GPU can be stranded by it (score = class - 0.5 x free GPU milli / largest node's GPU milli);
//! - a sharing pod takes, among the node's GPUs in the best class, the one whose exact fragment
//!   change is best (FGD takes the lowest index).

use super::ScoreContext;
use super::fgd::{fitting_gpus, fragment, fragment_after, score_class};
use crate::model::{GpuDemand, Node, Pod};

/// The gantry score of `pod` on `node` and, for a sharing pod, the GPU it takes there.
pub fn score_and_gpu(node: &Node, pod: &Pod, ctx: &ScoreContext<'_>) -> (f64, Option<usize>) {
    let target = ctx.target;
    let before = fragment(node, target);
    match pod.gpu {
        GpuDemand::Share(m) => {
            let mut best: Option<(f64, f64, usize)> = None;
            for i in fitting_gpus(node, m) {
                let after = fragment_after(node, pod, Some(i), target);
                let class = score_class(before, after);
                if best.is_none_or(|(c, a, _)| class > c || (class == c && after < a)) {
                    best = Some((class, after, i));
                }
            }
            best.map_or((0.0, None), |(c, _, i)| (c, Some(i)))
        }
        GpuDemand::Whole(_) => (
            score_class(before, fragment_after(node, pod, None, target)),
            None,
        ),
        GpuDemand::None => {
            let class = score_class(before, fragment_after(node, pod, None, target));
            let free = f64::from(node.gpu_free_total()) / f64::from(ctx.max_gpu_milli.max(1));
            (class - 0.5 * free, None)
        }
    }
}

/// The gantry score of `pod` on a feasible `node` (higher is better).
pub fn score(node: &Node, pod: &Pod, ctx: &ScoreContext<'_>) -> f64 {
    score_and_gpu(node, pod, ctx).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig, PlaceError};
    use crate::frag::{Shape, TargetWorkload};
    use crate::model::ModelSet;
    use crate::policies::Policy;
    use crate::policies::testing::*;
    use crate::rng::Rng;

    /// Node 0: two idle GPUs and 8 cores; node 1: both GPUs taken, 32 cores free.
    fn cpu_trap() -> crate::cluster::Cluster {
        cluster_of(&[(8000, &[1000, 1000]), (32000, &[0, 0])])
    }

    #[test]
    fn cpu_only_pod_goes_where_no_idle_gpu_is_stranded() {
        let cluster = cpu_trap();
        let ctx = ctx_for(&cluster);
        let cpu_pod = whole_pod(6000, 0);
        // Empty target: both nodes are in the same class (F = 0 before and after: 50).
        // Node 0 keeps 2,000 of 2,000 GPU milli free: 50 - 0.5 x 2000/2000 = 49.5; node 1: 50.
        assert_eq!(score(&cluster.nodes()[0], &cpu_pod, &ctx), 49.5);
        assert_eq!(score(&cluster.nodes()[1], &cpu_pod, &ctx), 50.0);
    }

    #[test]
    fn fgd_strands_two_gpus_where_gantry_places_everything() {
        // A CPU-only pod, then two 1-GPU pods that each need 4 cores.
        let pods = [whole_pod(6000, 0), whole_pod(4000, 1), whole_pod(4000, 1)];
        let run = |policy: Policy| {
            let mut cluster = cpu_trap();
            let already = cluster.gpu_allocated();
            let mut engine = Engine::new(policy, EngineConfig::default());
            let mut rng = Rng::new(1);
            let placed = pods
                .iter()
                .filter(|p| match engine.place(&mut cluster, p, &mut rng) {
                    Ok(_) => true,
                    Err(PlaceError::Unschedulable(_)) => false,
                    Err(e) => panic!("engine refused its own decision: {e}"),
                })
                .count();
            (placed, cluster.gpu_allocated() - already)
        };
        // FGD ties and takes node 0 (first in order): 2 cores left, both GPU pods fail.
        assert_eq!(run(Policy::Fgd), (1, 0));
        // gantry puts the CPU pod on the GPU-full node 1; both GPU pods fit on node 0.
        assert_eq!(run(Policy::Gantry), (3, 2000));
    }

    #[test]
    fn sharing_pod_takes_the_gpu_with_the_least_exact_fragment_inside_its_class() {
        // Target: 300-milli shares (CPU 1 core). Free: GPU0 700, GPU1 650.
        let shape = Shape {
            cpu_milli: 1000,
            milli_per_gpu: 300,
            gpu_count: 1,
            models: ModelSet::ANY,
        };
        let target = TargetWorkload {
            shapes: vec![(shape, 1.0)],
        };
        let cluster = cluster_of(&[(64000, &[700, 650])]);
        let ctx = ScoreContext {
            target: &target,
            ..ctx_for(&cluster)
        };
        let node = &cluster.nodes()[0];
        let pod = share_pod(1000, 300);
        // Before: nothing stranded (both GPUs fit a 300). On GPU0: [400, 650] strands nothing: class
        // trunc(100 sigmoid(0)) = 50, exact F 0. On GPU1: [700, 350] strands nothing either: 50, F 0.
        // Same class and same exact F: the lower index wins, as in FGD.
        assert_eq!(score_and_gpu(node, &pod, &ctx), (50.0, Some(0)));
        // A 400 share: GPU0 -> [300, 650]: F 0; GPU1 -> [700, 250]: 250 stranded -> class
        // trunc(100 sigmoid(-0.25)) = 43. GPU0 wins on class.
        let (class, gpu) = score_and_gpu(node, &share_pod(1000, 400), &ctx);
        assert_eq!((class, gpu), (50.0, Some(0)));
        // A 380 share: GPU0 -> [320, 650]: F 0 -> 50; GPU1 -> [700, 270]: F 270 -> 43: GPU0.
        // A 360 share: GPU0 -> [340, 650]: 50; GPU1 -> [700, 290]: F 290 -> trunc(42.8) = 42.
        assert_eq!(score_and_gpu(node, &share_pod(1000, 360), &ctx).1, Some(0));
    }
}

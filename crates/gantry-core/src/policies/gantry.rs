//! `gantry`: Gantry's default: least expected waste, measured against a packing plan from history.
//!
//! Two regrets, in GPUs, computed from the node alone (so the engine caches them per node version):
//! - **Share regret.** From the history of sharing pods, an offline plan prices each share size
//!   (`price[s]`: the fraction of a GPU an s-milli pod costs in the best packing of that history,
//!   the dual of a cutting-stock LP; 810 costs 1, 470 costs 0.5, a 160 that fills what an 810
//!   leaves costs 0). `fill[r]` is the most price a gap of r milli can still hold. Putting an
//!   s-milli pod on a GPU with f milli free gives up `fill[f] - price[s] - fill[f - s] >= 0`: zero
//!   when the pod follows the plan, positive when it spoils a gap the plan needs.
//! - **CPU regret.** A node keeps its GPUs usable only while it keeps about `rho` milli-CPU per free
//!   GPU milli (rho: CPU per GPU milli of GPU pods in history). Stranded(n) = max(0, free GPU milli -
//!   free CPU / rho) / 1000; the regret is how much the placement grows it.
//!
//! score = -1e5 x round(share regret + CPU regret, 0.001) + class, where class is FGD's
//! trunc(100 x sigmoid((F_before - F_after) / 1000)) (`frag`). Regret decides; FGD's class decides
//! among equal regrets; inside a class the earliest node in cluster order wins (a first fit), except
//! that a CPU-only pod prefers the node with the least free GPU milli (- 0.5 x free / largest node's).
//! A sharing pod takes the GPU of its node with the best (regret, class, exact F_after).

use super::ScoreContext;
use super::fgd::{fitting_gpus, fragment, fragment_after, score_class};
use crate::model::{GPU_MILLI, GpuDemand, Node, Pod};

/// What `gantry` knows from history: share prices, the fill value of every gap, CPU per GPU milli.
#[derive(Clone, Debug, PartialEq)]
pub struct GantryInputs {
    /// Price (in GPUs) of a share of each size 0..=1000 milli; `None` for sizes not in the plan.
    price: Vec<Option<f64>>,
    /// Most total price a gap of each size 0..=1000 milli can hold.
    fill: Vec<f64>,
    /// CPU milli that GPU pods ask per GPU milli (0 = no CPU regret).
    cpu_per_gpu_milli: f64,
}

impl Default for GantryInputs {
    fn default() -> Self {
        GantryInputs::new(&[], 0.0)
    }
}

impl GantryInputs {
    /// Inputs from share prices `(milli, price in GPUs)` and the CPU milli asked per GPU milli.
    pub fn new(prices: &[(u16, f64)], cpu_per_gpu_milli: f64) -> Self {
        let size = GPU_MILLI as usize + 1;
        let mut price = vec![None; size];
        for &(s, p) in prices {
            if let Some(slot) = price.get_mut(usize::from(s)).filter(|_| s > 0) {
                *slot = Some(p.max(0.0));
            }
        }
        // Unbounded knapsack over the priced sizes: the best total price that fits in r milli.
        let mut fill = vec![0.0f64; size];
        for r in 1..size {
            let mut best = fill[r - 1];
            for (s, p) in price.iter().enumerate().take(r + 1).skip(1) {
                if let Some(p) = p {
                    best = best.max(p + fill[r - s]);
                }
            }
            fill[r] = best;
        }
        GantryInputs {
            price,
            fill,
            cpu_per_gpu_milli: if cpu_per_gpu_milli.is_finite() {
                cpu_per_gpu_milli.max(0.0)
            } else {
                0.0
            },
        }
    }

    /// Plan value given up by putting `share` milli on a GPU with `free` milli (0 if unpriced).
    pub fn share_regret(&self, free: u16, share: u16) -> f64 {
        let (f, s) = (usize::from(free), usize::from(share));
        match self.price.get(s).copied().flatten() {
            Some(p) if s <= f && f < self.fill.len() => {
                (self.fill[f] - p - self.fill[f - s]).max(0.0)
            }
            _ => 0.0,
        }
    }

    /// GPUs of a node that its free CPU can no longer feed (in GPUs).
    pub fn stranded(&self, cpu_free: u64, gpu_free_milli: u32) -> f64 {
        if self.cpu_per_gpu_milli <= 0.0 {
            return 0.0;
        }
        (f64::from(gpu_free_milli) - cpu_free as f64 / self.cpu_per_gpu_milli).max(0.0)
            / f64::from(GPU_MILLI)
    }

    /// How much placing `pod` on `node` grows the node's stranded GPUs.
    pub fn cpu_regret(&self, node: &Node, pod: &Pod) -> f64 {
        let gpu_free = node.gpu_free_total();
        let before = self.stranded(node.cpu_free, gpu_free);
        let after = self.stranded(
            node.cpu_free.saturating_sub(pod.cpu_milli),
            gpu_free.saturating_sub(pod.gpu.total_milli()),
        );
        (after - before).max(0.0)
    }
}

/// Regret dominates the class: one regret step (0.001 GPU) outweighs any class difference (0..=99).
fn combine(regret: f64, class: f64) -> f64 {
    -(regret * 1000.0).round() * 100.0 + class
}

/// The gantry score of `pod` on `node` and, for a sharing pod, the GPU it takes there.
pub fn score_and_gpu(node: &Node, pod: &Pod, ctx: &ScoreContext<'_>) -> (f64, Option<usize>) {
    let (target, inputs) = (ctx.target, ctx.gantry);
    let before = fragment(node, target);
    let cpu_regret = inputs.cpu_regret(node, pod);
    match pod.gpu {
        GpuDemand::Share(m) => {
            let mut best: Option<(f64, f64, usize)> = None;
            for i in fitting_gpus(node, m) {
                let after = fragment_after(node, pod, Some(i), target);
                let regret = cpu_regret + inputs.share_regret(node.gpus()[i], m);
                let score = combine(regret, score_class(before, after));
                if best.is_none_or(|(b, a, _)| score > b || (score == b && after < a)) {
                    best = Some((score, after, i));
                }
            }
            best.map_or((f64::NEG_INFINITY, None), |(s, _, i)| (s, Some(i)))
        }
        GpuDemand::Whole(_) => {
            let class = score_class(before, fragment_after(node, pod, None, target));
            (combine(cpu_regret, class), None)
        }
        GpuDemand::None => {
            let class = score_class(before, fragment_after(node, pod, None, target));
            let free = f64::from(node.gpu_free_total()) / f64::from(ctx.max_gpu_milli.max(1));
            (combine(cpu_regret, class) - 0.5 * free, None)
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

    fn engine_run(
        policy: Policy,
        mut cluster: crate::cluster::Cluster,
        config: EngineConfig,
        pods: &[crate::model::Pod],
    ) -> usize {
        let mut engine = Engine::new(policy, config);
        let mut rng = Rng::new(7);
        pods.iter()
            .filter(|p| match engine.place(&mut cluster, p, &mut rng) {
                Ok(_) => true,
                Err(PlaceError::Unschedulable(_)) => false,
                Err(e) => panic!("engine refused its own decision: {e}"),
            })
            .count()
    }

    #[test]
    fn fill_and_share_regret_by_hand() {
        let inputs = GantryInputs::new(&[(300, 1.0 / 3.0), (500, 0.5), (700, 2.0 / 3.0)], 0.0);
        // fill: the best total price in a gap. 200: nothing fits. 700: a 700 or 300+300 (2/3).
        // 1000: 700+300, 500+500 or 3x300 (1).
        assert_eq!(inputs.fill[200], 0.0);
        assert!((inputs.fill[700] - 2.0 / 3.0).abs() < 1e-12);
        assert!((inputs.fill[1000] - 1.0).abs() < 1e-12);
        // 500 on a 700 gap: 2/3 - 1/2 - fill(200) = 1/6 given up; on an idle GPU: 1 - 1/2 - 1/2 = 0.
        assert!((inputs.share_regret(700, 500) - 1.0 / 6.0).abs() < 1e-12);
        assert!(inputs.share_regret(1000, 500).abs() < 1e-12);
        // 300 completing a 700 left by... a 700 gap taking a 700: exact fill, nothing given up.
        assert!(inputs.share_regret(700, 700).abs() < 1e-12);
        // Unpriced sizes carry no regret.
        assert_eq!(inputs.share_regret(1000, 123), 0.0);
    }

    #[test]
    fn fgd_spoils_a_gap_the_plan_needs_where_gantry_places_everything() {
        // One node: GPU0 has a 300 share (700 free), GPU1 is idle. Expected shapes 300, 500, 700.
        let shape = |milli| {
            (
                Shape {
                    cpu_milli: 1000,
                    milli_per_gpu: milli,
                    gpu_count: 1,
                    models: ModelSet::ANY,
                },
                1.0 / 3.0,
            )
        };
        let target = TargetWorkload {
            shapes: vec![shape(300), shape(500), shape(700)],
        };
        let config = |gantry| EngineConfig {
            target: target.clone(),
            gantry,
        };
        let pods = [
            share_pod(1000, 500),
            share_pod(1000, 700),
            share_pod(1000, 500),
        ];
        // FGD: the 500 on GPU0 (700 free -> 200 left: F 200, class 45) and on GPU1 (F 500/3, class
        // 45) tie, and the lower index wins; the 700 then takes GPU1 and the second 500 fits nowhere.
        let fgd = engine_run(
            Policy::Fgd,
            cluster_of(&[(64000, &[700, 1000])]),
            config(GantryInputs::default()),
            &pods,
        );
        assert_eq!(fgd, 2);
        // gantry, with prices 300: 1/3, 500: 1/2, 700: 2/3 (the plan pairs 500+500 and 700+300):
        // the 500 on GPU0 gives up 1/6, on GPU1 nothing -> GPU1; the 700 fills GPU0; the 500 GPU1.
        let prices = [(300, 1.0 / 3.0), (500, 0.5), (700, 2.0 / 3.0)];
        let gantry = engine_run(
            Policy::Gantry,
            cluster_of(&[(64000, &[700, 1000])]),
            config(GantryInputs::new(&prices, 0.0)),
            &pods,
        );
        assert_eq!(gantry, 3);
    }

    #[test]
    fn gantry_keeps_cpu_for_a_cpu_poor_nodes_gpus() {
        // Node 0: 2 GPUs, 16 cores; node 1: 2 GPUs, 64 cores. GPU pods ask 8 cores per GPU (rho = 8).
        let cluster = || cluster_of(&[(16000, &[1000, 1000]), (64000, &[1000, 1000])]);
        let pods = [
            whole_pod(14000, 1),
            whole_pod(8000, 1),
            whole_pod(8000, 1),
            whole_pod(8000, 1),
        ];
        // FGD (empty target: all ties) puts the 14-core pod on node 0, whose last GPU is left with 2
        // cores: the fourth pod fits nowhere.
        assert_eq!(
            engine_run(Policy::Fgd, cluster(), EngineConfig::default(), &pods),
            3
        );
        // gantry: on node 0 it would strand 1000 - 2000/8 = 750 milli (regret 0.75), on node 1
        // nothing: node 1. The 8-core pods then fit both nodes: all four placed.
        let config = EngineConfig {
            gantry: GantryInputs::new(&[], 8.0),
            ..EngineConfig::default()
        };
        assert_eq!(engine_run(Policy::Gantry, cluster(), config, &pods), 4);
    }
}

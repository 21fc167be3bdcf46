//! `fgd`: fragmentation gradient descent (Weng et al., USENIX ATC '23), as published.
//!
//! Place where the node's expected fragment (see `frag`) grows least:
//! score = trunc(100 x sigmoid((F_before - F_after) / 1000)). A sharing pod tries every fitting GPU
//! and takes the best (lowest index on equal truncated scores); whole-GPU pods take the lowest-index idle GPUs.

use super::ScoreContext;
use crate::frag::{FragView, TargetWorkload, node_fragment};
use crate::model::{GPU_MILLI, GpuDemand, MAX_GPUS_PER_NODE, Node, Pod};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The published score of a fragment change: trunc(100 x sigmoid((F_before - F_after) / 1000)).
pub fn score_class(before: f64, after: f64) -> f64 {
    (sigmoid((before - after) / 1000.0) * 100.0).trunc()
}

/// `node`'s expected fragment after `pod` lands on it (a sharing pod on GPU `share_gpu`).
pub fn fragment_after(
    node: &Node,
    pod: &Pod,
    share_gpu: Option<usize>,
    target: &TargetWorkload,
) -> f64 {
    let count = node.gpus().len();
    let mut gpus = [0u16; MAX_GPUS_PER_NODE];
    gpus[..count].copy_from_slice(node.gpus());
    match (pod.gpu, share_gpu) {
        (GpuDemand::Share(m), Some(i)) => gpus[i] -= m,
        (GpuDemand::Whole(k), _) => {
            // Idle GPUs are interchangeable for the fragment: take any k of them.
            let mut left = k;
            for g in gpus[..count].iter_mut() {
                if left > 0 && u32::from(*g) == GPU_MILLI {
                    *g = 0;
                    left -= 1;
                }
            }
        }
        _ => {}
    }
    let cpu_after = node.cpu_free.saturating_sub(pod.cpu_milli);
    node_fragment(view(node, cpu_after, &gpus[..count]), target)
}

fn view<'a>(node: &Node, cpu_free: u64, gpus: &'a [u16]) -> FragView<'a> {
    FragView {
        model: node.spec.gpu_model,
        cpu_free,
        gpus,
    }
}

/// Expected fragment of `node` as it is now.
pub fn fragment(node: &Node, target: &TargetWorkload) -> f64 {
    node_fragment(view(node, node.cpu_free, node.gpus()), target)
}

/// The GPUs of `node` a sharing pod of `milli` fits on.
pub fn fitting_gpus(node: &Node, milli: u16) -> impl Iterator<Item = usize> + '_ {
    node.gpus()
        .iter()
        .enumerate()
        .filter(move |&(_, &f)| f >= milli)
        .map(|(i, _)| i)
}

/// The FGD score of `pod` on `node` and, for a sharing pod, the GPU that achieves it.
pub fn score_and_gpu(node: &Node, pod: &Pod, target: &TargetWorkload) -> (f64, Option<usize>) {
    let before = fragment(node, target);
    match pod.gpu {
        GpuDemand::Share(m) => {
            let mut best: Option<(f64, usize)> = None;
            for i in fitting_gpus(node, m) {
                let s = score_class(before, fragment_after(node, pod, Some(i), target));
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, i));
                }
            }
            best.map_or((0.0, None), |(s, i)| (s, Some(i)))
        }
        _ => (
            score_class(before, fragment_after(node, pod, None, target)),
            None,
        ),
    }
}

/// The published FGD score of `pod` on `node`.
pub fn score(node: &Node, pod: &Pod, ctx: &ScoreContext<'_>) -> f64 {
    score_and_gpu(node, pod, ctx.target).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frag::Shape;
    use crate::model::ModelSet;
    use crate::policies::testing::*;

    fn shape(cpu: u64, milli: u32, count: u32) -> Shape {
        Shape {
            cpu_milli: cpu,
            milli_per_gpu: milli,
            gpu_count: count,
            models: ModelSet::ANY,
        }
    }

    #[test]
    fn sharing_pod_goes_where_it_strands_least() {
        // Target: half 500-milli shares, half whole GPUs. Node GPUs free: 1000, 600.
        let target = TargetWorkload {
            shapes: vec![(shape(1000, 500, 1), 0.5), (shape(1000, 1000, 1), 0.5)],
        };
        let cluster = cluster_of(&[(64000, &[1000, 600])]);
        let node = &cluster.nodes()[0];
        // Before: share shape strands nothing; whole shape fits GPU0, strands GPU1's 600 -> F = 300.
        assert!((fragment(node, &target) - 300.0).abs() < 1e-9);
        // A 600 share on GPU1 leaves [1000, 0]: F = 0 -> delta +300 -> trunc(100 sigmoid(0.3)) = 57.
        // On GPU0 it leaves [400, 600]: share shape: fits GPU1, strands 400 (0.5*400 = 200);
        // whole shape: no idle GPU -> all 1000 stranded (500) -> F = 700 -> delta -400 -> 40.
        let (s, gpu) = score_and_gpu(node, &share_pod(1000, 600), &target);
        assert_eq!(gpu, Some(1));
        assert_eq!(s, 57.0);
    }

    #[test]
    fn whole_gpu_pod_prefers_node_it_empties_cleanly() {
        let target = TargetWorkload {
            shapes: vec![(shape(1000, 1000, 2), 1.0)],
        };
        // Node 0: two idle GPUs (placing 2 leaves nothing); node 1: three idle (placing 2 strands one).
        let cluster = cluster_of(&[(64000, &[1000, 1000]), (64000, &[1000, 1000, 1000])]);
        let pod = whole_pod(1000, 2);
        let (a, _) = score_and_gpu(&cluster.nodes()[0], &pod, &target);
        let (b, _) = score_and_gpu(&cluster.nodes()[1], &pod, &target);
        // Node 0: F 0 -> 0: sigmoid(0) = 0.5 -> 50. Node 1: F 0 -> 1000 -> sigmoid(-1) -> 26.
        assert_eq!((a, b), (50.0, 26.0));
    }
}

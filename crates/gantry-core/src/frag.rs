//! GPU fragmentation against a target workload (the quantity FGD minimises).
//!
//! The target workload is the set of pod shapes expected to arrive, with their frequencies. For a node
//! and a shape, the fragment is the idle GPU milli the shape cannot use: all of it when the shape cannot
//! run on the node at all (model not allowed, not enough CPU, too few fitting GPUs, or a CPU-only shape),
//! otherwise the idle milli on GPUs whose free milli is below what the shape needs per GPU.

use crate::model::{ModelId, ModelSet, Pod};
use std::collections::HashMap;

/// A pod shape as the fragmentation measure sees it (memory plays no part).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// CPU in milli-cores.
    pub cpu_milli: u64,
    /// Milli-GPU needed on each GPU (0 for CPU-only shapes).
    pub milli_per_gpu: u32,
    /// GPUs needed (0 for CPU-only shapes).
    pub gpu_count: u32,
    /// Allowed GPU models.
    pub models: ModelSet,
}

impl Shape {
    /// The shape of a pod.
    pub fn of(pod: &Pod) -> Shape {
        Shape {
            cpu_milli: pod.cpu_milli,
            milli_per_gpu: pod.gpu.milli_per_gpu(),
            gpu_count: pod.gpu.gpu_count(),
            models: pod.models,
        }
    }
}

/// Expected pod shapes with their probabilities (summing to 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetWorkload {
    /// Shapes, most frequent first, with their probability.
    pub shapes: Vec<(Shape, f64)>,
}

/// Share of pods (percent) the most frequent shapes must cover in the published target workload.
pub const DEFAULT_COVERAGE_PCT: u64 = 95;

impl TargetWorkload {
    /// Keeps the most frequent shapes of `ranked` (sorted by count, descending) until they cover
    /// `coverage_pct` % of `total` pods (the shape that crosses the line is kept), then renormalises.
    pub fn from_ranked_counts(ranked: &[(Shape, u64)], total: u64, coverage_pct: u64) -> Self {
        if total == 0 {
            return TargetWorkload::default();
        }
        let expected = (coverage_pct * total) as f64 / 100.0;
        let total_f = total as f64;
        let mut cum = 0u64;
        let mut shapes = Vec::new();
        for &(shape, count) in ranked {
            if cum as f64 >= expected {
                break;
            }
            cum += count;
            shapes.push((shape, count as f64 / total_f));
        }
        if shapes.len() < ranked.len() {
            let covered = cum as f64 / total_f;
            for s in &mut shapes {
                s.1 /= covered;
            }
        }
        TargetWorkload { shapes }
    }

    /// The target workload of a pod history: shapes ranked by count, ties by larger shape first.
    pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>, coverage_pct: u64) -> Self {
        let mut counts: HashMap<Shape, u64> = HashMap::new();
        let mut total = 0;
        for p in pods {
            *counts.entry(Shape::of(p)).or_default() += 1;
            total += 1;
        }
        let mut ranked: Vec<(Shape, u64)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| {
            b.1.cmp(&a.1).then_with(|| {
                let key = |s: &Shape| {
                    (
                        s.cpu_milli,
                        s.milli_per_gpu,
                        s.gpu_count,
                        s.models.iter().collect::<Vec<_>>(),
                    )
                };
                key(&b.0).cmp(&key(&a.0))
            })
        });
        Self::from_ranked_counts(&ranked, total, coverage_pct)
    }
}

/// The parts of a node that fragmentation depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragView<'a> {
    /// The node's GPU model.
    pub model: Option<ModelId>,
    /// Free CPU in milli.
    pub cpu_free: u64,
    /// Free milli per GPU.
    pub gpus: &'a [u16],
}

/// Expected GPU fragment (milli) of a node: the sum over target shapes of p x fragment(node, shape).
pub fn node_fragment(view: FragView<'_>, target: &TargetWorkload) -> f64 {
    let total: u32 = view.gpus.iter().map(|&f| u32::from(f)).sum();
    if total == 0 {
        return 0.0;
    }
    let total_f = f64::from(total);
    // Accumulated in the published tool's order: unusable (Q1, Q4, XL, XR, no access) and partial (Q2).
    let mut whole_node = 0.0;
    let mut partial = 0.0;
    for &(shape, p) in &target.shapes {
        let usable = shape.milli_per_gpu > 0
            && view.model.is_some_and(|m| shape.models.allows(m))
            && view.cpu_free >= shape.cpu_milli;
        if !usable {
            whole_node += p * total_f;
            continue;
        }
        let mut fitting = 0u32;
        let mut stranded = 0u32;
        for &f in view.gpus {
            let f = u32::from(f);
            if f >= shape.milli_per_gpu {
                fitting += 1;
            } else {
                stranded += f;
            }
        }
        if fitting >= shape.gpu_count {
            partial += p * f64::from(stranded);
        } else {
            whole_node += p * total_f;
        }
    }
    partial + whole_node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(cpu: u64, milli: u32, count: u32) -> Shape {
        Shape {
            cpu_milli: cpu,
            milli_per_gpu: milli,
            gpu_count: count,
            models: ModelSet::ANY,
        }
    }

    #[test]
    fn coverage_keeps_the_crossing_shape_and_renormalises() {
        let ranked = [
            (shape(1, 500, 1), 60),
            (shape(2, 1000, 1), 30),
            (shape(3, 1000, 2), 10),
        ];
        // 95 % of 100 = 95: 60 then 90 (< 95) then 100 crosses, so all three are kept, unchanged.
        let t = TargetWorkload::from_ranked_counts(&ranked, 100, 95);
        assert_eq!(t.shapes.len(), 3);
        assert!((t.shapes[0].1 - 0.6).abs() < 1e-12);
        // 80 %: 60, then 90 crosses 80: two kept, renormalised over 0.9.
        let t = TargetWorkload::from_ranked_counts(&ranked, 100, 80);
        assert_eq!(t.shapes.len(), 2);
        assert!((t.shapes[0].1 - 0.6 / 0.9).abs() < 1e-12);
        assert!((t.shapes[1].1 - 0.3 / 0.9).abs() < 1e-12);
    }

    #[test]
    fn fragment_matches_hand_computation() {
        // Node: model 0, 8 CPU free, GPUs with 1000, 300, 0 free (total 1300).
        let gpus = [1000u16, 300, 0];
        let view = FragView {
            model: Some(ModelId(0)),
            cpu_free: 8000,
            gpus: &gpus,
        };
        let mut t4 = ModelSet::ANY;
        t4.insert(ModelId(1));
        let target = TargetWorkload {
            shapes: vec![
                (shape(4000, 500, 1), 0.4), // fits GPU0; GPU1 (300) strands 300 -> 0.4*300 = 120
                (shape(4000, 1000, 2), 0.2), // one idle GPU, needs 2 -> all 1300 stranded -> 260
                (shape(16000, 100, 1), 0.1), // not enough CPU -> 130
                (shape(1000, 0, 0), 0.1),   // CPU-only -> 130
                (
                    Shape {
                        models: t4,
                        ..shape(1000, 100, 1)
                    },
                    0.2,
                ), // model not allowed -> 260
            ],
        };
        let f = node_fragment(view, &target);
        assert!(
            (f - (120.0 + 260.0 + 130.0 + 130.0 + 260.0)).abs() < 1e-9,
            "{f}"
        );
    }

    #[test]
    fn cpu_only_shape_strands_every_idle_gpu() {
        // An idle 8-GPU node against a sharing shape and a CPU-only shape.
        let gpus = [1000u16; 8];
        let view = FragView {
            model: Some(ModelId(0)),
            cpu_free: 96000,
            gpus: &gpus,
        };
        let target = TargetWorkload {
            shapes: vec![(shape(6000, 465, 1), 0.5), (shape(1000, 0, 0), 0.5)],
        };
        // Idle GPUs strand nothing for the sharing shape; the CPU-only shape strands all 8000.
        assert!((node_fragment(view, &target) - 4000.0).abs() < 1e-9);
    }
}

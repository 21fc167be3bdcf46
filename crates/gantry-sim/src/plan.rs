//! What the `gantry` policy learns from a pod history: share prices and CPU per GPU milli.
//!
//! Share prices are the optimal dual of the cutting-stock LP that packs the history's sharing pods
//! into as few GPUs as possible: maximise sum over sizes s of count(s) x price(s) subject to, for
//! every maximal multiset of sizes that fits one GPU, the sum of its prices <= 1 GPU. A size's price
//! is then the fraction of a GPU it costs in the best packing, waste included.

use crate::bound::maximal_configs;
use gantry_core::model::{GpuDemand, Pod};
use gantry_core::policies::gantry::GantryInputs;
use minilp::{ComparisonOp, OptimizationDirection, Problem};
use std::collections::BTreeMap;

/// The pricing LP could not be solved (it is always feasible and bounded: a solver failure).
#[derive(Debug, thiserror::Error)]
#[error("share pricing LP failed: {0}")]
pub struct PlanError(String);

/// Price (in GPUs) of each share size in the best packing of `pods`' sharing pods.
pub fn share_prices<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Result<Vec<(u16, f64)>, PlanError> {
    let mut counts: BTreeMap<u16, u64> = BTreeMap::new();
    for p in pods {
        if let GpuDemand::Share(m) = p.gpu {
            *counts.entry(m).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return Ok(Vec::new());
    }
    let sizes: Vec<u32> = counts.keys().map(|&m| u32::from(m)).collect();
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let prices: Vec<_> = counts
        .values()
        .map(|&c| lp.add_var(c as f64, (0.0, 1.0)))
        .collect();
    for config in maximal_configs(&sizes) {
        let terms: Vec<_> = config
            .iter()
            .zip(&prices)
            .filter(|(k, _)| **k > 0)
            .map(|(&k, &v)| (v, f64::from(k)))
            .collect();
        lp.add_constraint(&terms, ComparisonOp::Le, 1.0);
    }
    let solution = lp.solve().map_err(|e| PlanError(e.to_string()))?;
    Ok(counts
        .keys()
        .zip(&prices)
        .map(|(&m, &v)| (m, (solution[v] * 1e6).round() / 1e6 + 0.0))
        .collect())
}

/// CPU milli that GPU pods in `pods` ask per GPU milli (0 when there are none).
pub fn cpu_per_gpu_milli<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> f64 {
    let (mut cpu, mut gpu) = (0u64, 0u64);
    for p in pods.into_iter().filter(|p| p.gpu != GpuDemand::None) {
        cpu += p.cpu_milli;
        gpu += u64::from(p.gpu.total_milli());
    }
    if gpu == 0 {
        0.0
    } else {
        cpu as f64 / gpu as f64
    }
}

/// The `gantry` policy's inputs learnt from `pods`.
pub fn gantry_inputs<'a>(
    pods: impl IntoIterator<Item = &'a Pod> + Clone,
) -> Result<GantryInputs, PlanError> {
    let prices = share_prices(pods.clone())?;
    Ok(GantryInputs::new(&prices, cpu_per_gpu_milli(pods)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::ModelSet;

    fn share(m: u16) -> Pod {
        Pod {
            cpu_milli: 1000,
            memory_mib: 1,
            gpu: GpuDemand::Share(m),
            models: ModelSet::ANY,
        }
    }

    #[test]
    fn prices_follow_the_best_packing() {
        // 10 x 800 and 2 x 150: every 800 takes its own GPU (price 1); two 150s fill the gaps of
        // two 800s for free (price 0). 10 x 450: two to a GPU, 0.5 each.
        let mut pods: Vec<Pod> = Vec::new();
        pods.extend(std::iter::repeat_n(share(800), 10));
        pods.extend(std::iter::repeat_n(share(150), 2));
        pods.extend(std::iter::repeat_n(share(450), 10));
        let prices = share_prices(&pods).unwrap();
        assert_eq!(prices, vec![(150, 0.0), (450, 0.5), (800, 1.0)]);
    }

    #[test]
    fn cpu_per_gpu_ignores_cpu_only_pods() {
        let cpu_only = Pod {
            gpu: GpuDemand::None,
            cpu_milli: 64_000,
            ..share(1)
        };
        let whole = Pod {
            gpu: GpuDemand::Whole(2),
            cpu_milli: 16_000,
            ..share(1)
        };
        let pods = [cpu_only, whole, share(500)];
        // (16,000 + 1,000) CPU over (2,000 + 500) GPU milli.
        assert!((cpu_per_gpu_milli(&pods) - 6.8).abs() < 1e-12);
    }
}

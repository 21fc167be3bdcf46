//! The pick-devices stage: which GPUs of the chosen node a pod takes.

use crate::model::{GPU_MILLI, GpuDemand, GpuSet, Node};
use crate::rng::Rng;

/// How a policy chooses the GPU of a sharing pod (whole-GPU pods always take the lowest-index idle GPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareRule {
    /// The fitting GPU with the least free milli (lowest index on ties).
    BestFit,
    /// The fitting GPU with the most free milli (lowest index on ties).
    MostFree,
    /// The lowest-index fitting GPU.
    FirstFit,
    /// A uniformly random fitting GPU.
    Random,
}

/// The `count` lowest-index GPUs with nothing allocated (empty if there are fewer).
pub fn lowest_idle(node: &Node, count: u32) -> GpuSet {
    let mut set = 0u16;
    let mut taken = 0;
    for (i, &f) in node.gpus().iter().enumerate() {
        if taken == count {
            break;
        }
        if u32::from(f) == GPU_MILLI {
            set |= 1 << i;
            taken += 1;
        }
    }
    if taken == count {
        GpuSet(set)
    } else {
        GpuSet(0)
    }
}

/// The GPU a sharing pod of `milli` takes under `rule`, if any fits.
pub fn share_gpu(node: &Node, milli: u32, rule: ShareRule, rng: &mut Rng) -> Option<usize> {
    let fitting = node
        .gpus()
        .iter()
        .enumerate()
        .filter(|&(_, &f)| u32::from(f) >= milli)
        .map(|(i, &f)| (i, f));
    match rule {
        ShareRule::BestFit => fitting.fold(None, |best: Option<(usize, u16)>, (i, f)| match best {
            Some((_, bf)) if bf <= f => best,
            _ => Some((i, f)),
        }),
        ShareRule::MostFree => {
            fitting.fold(None, |best: Option<(usize, u16)>, (i, f)| match best {
                Some((_, bf)) if bf >= f => best,
                _ => Some((i, f)),
            })
        }
        ShareRule::FirstFit => fitting.take(1).last(),
        ShareRule::Random => {
            let n = fitting.clone().count();
            if n == 0 {
                None
            } else {
                let j = rng.below(n as u64) as usize;
                fitting.clone().nth(j)
            }
        }
    }
    .map(|(i, _)| i)
}

/// The GPUs `demand` takes on `node` under `rule` (empty for CPU-only pods or when nothing fits).
pub fn pick(node: &Node, demand: GpuDemand, rule: ShareRule, rng: &mut Rng) -> GpuSet {
    match demand {
        GpuDemand::None => GpuSet(0),
        GpuDemand::Whole(k) => lowest_idle(node, u32::from(k)),
        GpuDemand::Share(m) => {
            share_gpu(node, u32::from(m), rule, rng).map_or(GpuSet(0), GpuSet::one)
        }
    }
}

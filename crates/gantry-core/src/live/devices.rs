//! The pick-devices stage: which GPUs, share or MIG slice of the chosen node a replica takes.
//!
//! - Whole GPUs: inside one NVLink group when one has enough idle GPUs (the group with the fewest idle
//!   GPUs that suffices, so larger groups stay whole), lowest indices first; otherwise (topology not
//!   `nvlink`) the lowest-index idle GPUs.
//! - A share: best fit, the fitting GPU with the least free milli (lowest index on ties).
//! - A MIG instance: the (GPU, start slice) after which the largest profile still placeable on the node
//!   is largest, then the sum over GPUs of the largest placeable profile is largest (so a partly used
//!   GPU is filled before an idle one is split), then the most (profile, start) placements left on that
//!   GPU, then the lowest GPU and start.

use super::cluster::{Device, LiveGpu, LiveNode};
use super::filter::fit_check;
use super::workload::{Demand, Workload};
use crate::model::GPU_MILLI;
use crate::spec::Topology;
use crate::spec::mig::{self, MigInstance, MigProfile, MigTable};
use std::collections::BTreeMap;

/// The devices one replica of `w` takes on `node`, or `None` when it does not fit.
pub fn pick(node: &LiveNode, w: &Workload) -> Option<Vec<Device>> {
    fit_check(node, w).ok()?;
    match &w.demand {
        Demand::None => Some(Vec::new()),
        Demand::Whole { count } => whole(node, u32::from(*count), w.topology),
        Demand::Share { milli, memory_mib } => share(node, *milli, *memory_mib),
        Demand::Mig { profile } => {
            let table = node.mig_table?;
            let p = table.profile(profile)?;
            mig_slice(node, table, p)
        }
    }
}

fn whole(node: &LiveNode, count: u32, topology: Topology) -> Option<Vec<Device>> {
    let mut by_group: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
    for (i, g) in node.gpus.iter().enumerate() {
        if g.idle() {
            by_group.entry(g.nvlink_group).or_default().push(i);
        }
    }
    let in_group = by_group
        .values()
        .filter(|v| v.len() as u32 >= count)
        .min_by_key(|v| (v.len(), v[0]));
    let chosen: Vec<usize> = match in_group {
        Some(v) => v.iter().copied().take(count as usize).collect(),
        None if topology != Topology::Nvlink => {
            let mut all: Vec<usize> = by_group.values().flatten().copied().collect();
            all.sort_unstable();
            all.into_iter().take(count as usize).collect()
        }
        None => return None,
    };
    if chosen.len() as u32 != count {
        return None;
    }
    Some(
        chosen
            .into_iter()
            .map(|i| Device::Gpu {
                index: i as u8,
                milli: GPU_MILLI as u16,
                memory_mib: node.gpus[i].memory_free_mib,
            })
            .collect(),
    )
}

fn share(node: &LiveNode, milli: u16, memory_mib: u64) -> Option<Vec<Device>> {
    let best = node
        .gpus
        .iter()
        .enumerate()
        .filter(|(_, g)| g.free_milli >= milli && g.memory_free_mib >= memory_mib)
        .min_by_key(|(i, g)| (g.free_milli, *i))?;
    Some(vec![Device::Gpu {
        index: best.0 as u8,
        milli,
        memory_mib,
    }])
}

/// Size of a profile for comparisons: memory slices first, then compute slices.
fn size(p: &MigProfile) -> u32 {
    u32::from(p.memory_slices) * 8 + u32::from(p.compute_slices)
}

/// The size of the largest profile of `table` that still fits next to `placed` (0 when none).
pub fn largest_placeable(table: &MigTable, placed: &[MigInstance]) -> u32 {
    table
        .profiles
        .iter()
        .filter(|p| !mig::legal_starts_with(p, placed).is_empty())
        .map(size)
        .max()
        .unwrap_or(0)
}

fn mig_slice(node: &LiveNode, table: &MigTable, p: &'static MigProfile) -> Option<Vec<Device>> {
    let now: Vec<u32> = node
        .gpus
        .iter()
        .map(|g| largest_placeable(table, &g.mig))
        .collect();
    let mut best: Option<((u32, u32, usize), usize, u8)> = None;
    for (i, g) in node.gpus.iter().enumerate() {
        for start in mig::legal_starts_with(p, &g.mig) {
            let after = with_instance(g, p, start);
            let here = largest_placeable(table, &after.mig);
            let node_max = now
                .iter()
                .enumerate()
                .map(|(j, &s)| if j == i { here } else { s })
                .max()
                .unwrap_or(0);
            let total: u32 = now.iter().sum::<u32>() - now[i] + here;
            let key = (node_max, total, placements_left(table, &after.mig));
            if best.is_none_or(|(k, _, _)| key > k) {
                best = Some((key, i, start));
            }
        }
    }
    best.map(|(_, i, start)| {
        vec![Device::Mig {
            index: i as u8,
            profile: p,
            start,
        }]
    })
}

/// How many (profile, start) placements are still legal next to `placed`.
fn placements_left(table: &MigTable, placed: &[MigInstance]) -> usize {
    table
        .profiles
        .iter()
        .map(|p| mig::legal_starts_with(p, placed).len())
        .sum()
}

fn with_instance(g: &LiveGpu, profile: &'static MigProfile, start: u8) -> LiveGpu {
    let mut g = g.clone();
    let at = g.mig.partition_point(|m| m.start < start);
    g.mig.insert(at, MigInstance { profile, start });
    g
}

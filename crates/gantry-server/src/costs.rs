//! Cost accounting for the standalone server: the store's workloads turned into usage intervals
//! for `gantry_cost::analyse`.
//!
//! First approximation, stated in docs/cost.md:
//! - a workload's interval is its last run, `started_at .. finished_at` (or `now` while it runs);
//!   earlier attempts of a retried or requeued workload are not yet read from the audit log;
//! - the GPU model of each assigned GPU comes from this machine's slots (by UUID, else index); a GPU
//!   no slot matches is charged as model `unknown` (reported, not priced);
//! - the pool is `on-demand`;
//! - utilisation: for a running workload, the mean of its GPUs' current telemetry; finished
//!   workloads have no utilisation figure and so are never counted idle.

use crate::schedule::Machine;
use gantry_cost::{GpuFraction, Pool, Usage};
use gantry_gpu::GpuSnapshot;
use gantry_store::{AssignedGpu, Workload, WorkloadState};

/// The GPU fraction one assigned GPU holds: MIG compute slices of 7, a milli-share, or the whole GPU.
pub fn fraction_of(gpu: &AssignedGpu) -> GpuFraction {
    if let Some(mig) = &gpu.mig {
        let slices: u32 = mig
            .profile
            .split_once('g')
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(7);
        return GpuFraction::mig_slices(slices);
    }
    match gpu.milli {
        Some(m) => GpuFraction::milli(m),
        None => GpuFraction::whole(),
    }
}

/// One usage interval per assigned GPU of every workload that ran (or runs) with GPUs.
pub fn usage_of(
    workloads: &[Workload],
    machine: &Machine,
    snapshots: &[GpuSnapshot],
    now_ms: i64,
) -> Vec<Usage> {
    let mut out = Vec::new();
    for w in workloads {
        let Some(start) = w.started_at else { continue };
        let end = if w.state == WorkloadState::Running {
            Some(now_ms)
        } else {
            w.finished_at
        };
        let Some(end) = end.filter(|&e| e > start) else {
            continue;
        };
        let Some(assignment) = &w.assignment else {
            continue;
        };
        for gpu in assignment.replicas.iter().flat_map(|r| r.gpus.iter()) {
            let slot = machine
                .slots
                .iter()
                .find(|s| gpu.uuid.as_deref() == Some(s.uuid.as_str()))
                .or_else(|| machine.slots.iter().find(|s| s.index == gpu.index));
            let utilization = if w.state == WorkloadState::Running {
                snapshots
                    .iter()
                    .find(|s| slot.is_some_and(|slot| slot.uuid == s.device.uuid))
                    .and_then(|s| s.telemetry.utilization_gpu_pct)
                    .map(f64::from)
            } else {
                None
            };
            out.push(Usage {
                workload: w.id.to_string(),
                owner: w.owner.clone(),
                queue: w.queue.clone(),
                model: slot.map_or_else(|| "unknown".to_string(), |s| s.model.clone()),
                pool: Pool::OnDemand,
                gpu_fraction: fraction_of(gpu),
                start_ms: start,
                end_ms: end,
                mean_utilization: utilization,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::MigSlice;

    #[test]
    fn fractions_of_whole_shares_and_mig() {
        let whole = AssignedGpu::default();
        let share = AssignedGpu {
            milli: Some(250),
            ..AssignedGpu::default()
        };
        let mig = AssignedGpu {
            mig: Some(MigSlice {
                profile: "3g.40gb".into(),
                start: 4,
                uuid: None,
            }),
            ..AssignedGpu::default()
        };
        assert_eq!(fraction_of(&whole), GpuFraction::whole());
        assert_eq!(fraction_of(&share), GpuFraction::milli(250));
        assert_eq!(fraction_of(&mig), GpuFraction::mig_slices(3));
    }
}

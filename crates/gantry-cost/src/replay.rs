//! Checking right-sizing advice by replay: the window's jobs are run again in Gantry's scenario
//! simulator (`gantry_sim::scenario::simulate` over the live scheduler), at their observed start
//! times and for their observed durations, on this machine's GPUs of their model, once as submitted
//! and once with the advised requests. The figure reported for each is the GPUs those jobs need at
//! the peak: the fewest GPUs of the model on which the simulator starts every job at its observed
//! time (found by bisection over the GPU count, up to the machine's). So "frees N GPUs" is the
//! difference of two simulated results, not an estimate.
//!
//! The replay uses the `gpupacking` strategy (partly used GPUs first), no preemption and no
//! backfill, and constrains GPUs only (not CPU or memory). For MIG advice the GPUs are in MIG mode in
//! the second run.

use gantry_core::Policy;
use gantry_core::live::{Scheduler, SchedulerConfig, Workload};
use gantry_core::spec::{
    ClusterSpec, MemoryQuantity, MigMode, MilliQuantity, NodeDescription, NodeGpus, WorkloadSpec,
};
use gantry_sim::scenario::{ScenarioReport, SimWorkload, simulate};
use std::collections::BTreeMap;

/// Most GPUs one replay node holds (a node spec allows at most 8).
const GPUS_PER_NODE: u32 = 8;

/// The machine's GPUs of one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayGpus {
    /// Model key, `H100-80GB`.
    pub model: String,
    /// How many.
    pub count: u32,
    /// Memory of each, MiB.
    pub memory_mib: u64,
}

/// What one job asks of a GPU in a replay.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Request {
    /// Whole GPUs.
    Whole(u32),
    /// A share of one GPU, with the GPU memory it needs.
    Share {
        /// Milli of the GPU.
        milli: u32,
        /// GPU memory, MiB.
        memory_mib: u64,
    },
    /// One MIG instance of this profile.
    Mig(String),
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Whole(1) => f.write_str("1 whole GPU"),
            Request::Whole(n) => write!(f, "{n} whole GPUs"),
            Request::Share { milli, memory_mib } => {
                write!(f, "share {milli}m ({} GiB)", memory_mib.div_ceil(1024))
            }
            Request::Mig(p) => f.write_str(p),
        }
    }
}

/// One observed run: when it held its GPU(s), and what it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayJob {
    /// A unique name.
    pub name: String,
    /// Observed start, Unix ms.
    pub start_ms: i64,
    /// Observed end, Unix ms.
    pub end_ms: i64,
    /// Its request.
    pub request: Request,
}

/// The two replays compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayOutcome {
    /// GPUs busy at the peak with the jobs as submitted.
    pub gpus_before: u32,
    /// GPUs busy at the peak with the advised requests.
    pub gpus_after: u32,
    /// `gpus_before - gpus_after` (0 when the advice frees nothing).
    pub gpus_freed: u32,
    /// Jobs that could not start at their observed time with the advised requests.
    pub delayed_after: u32,
    /// For advice to move to another GPU model: that model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_model: Option<String>,
    /// For advice to move to another GPU model: the GPUs of it the jobs need at the peak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_gpus: Option<u32>,
}

/// A replay that could not be set up (an advised request the simulator refuses).
#[derive(Debug, thiserror::Error)]
#[error("replay: {0}")]
pub struct ReplayError(pub String);

/// Replays `before` and `after` (the same runs, with their two requests) on `gpus` and compares the
/// peaks; times are taken from `origin_ms` in whole seconds.
pub fn compare(
    gpus: &ReplayGpus,
    before: &[ReplayJob],
    after: &[ReplayJob],
    origin_ms: i64,
) -> Result<ReplayOutcome, ReplayError> {
    let mig_after = after.iter().any(|j| matches!(j.request, Request::Mig(_)));
    let b = needed(gpus, before, false, origin_ms)?;
    let a = needed(gpus, after, mig_after, origin_ms)?;
    Ok(ReplayOutcome {
        gpus_before: b.peak,
        gpus_after: a.peak,
        gpus_freed: b.peak.saturating_sub(a.peak),
        delayed_after: a.delayed,
        ..ReplayOutcome::default()
    })
}

/// Replays `jobs` as submitted on `from` and the same jobs on `to` (another GPU model): every GPU
/// of `from` they needed is freed; `target_gpus` is what they need of `to`.
pub fn compare_move(
    from: &ReplayGpus,
    to: &ReplayGpus,
    jobs: &[ReplayJob],
    origin_ms: i64,
) -> Result<ReplayOutcome, ReplayError> {
    let b = needed(from, jobs, false, origin_ms)?;
    let a = needed(to, jobs, false, origin_ms)?;
    Ok(ReplayOutcome {
        gpus_before: b.peak,
        gpus_after: 0,
        gpus_freed: b.peak,
        delayed_after: a.delayed,
        target_model: Some(to.model.clone()),
        target_gpus: Some(a.peak),
    })
}

/// The fewest of `gpus` on which every job starts at its time (`delayed` 0), by bisection; when
/// even all of them do not suffice, all of them with the jobs delayed there.
pub fn needed(
    gpus: &ReplayGpus,
    jobs: &[ReplayJob],
    mig: bool,
    origin_ms: i64,
) -> Result<Peak, ReplayError> {
    let most = gpus.count.max(1);
    let with = |count: u32| {
        let g = ReplayGpus {
            count,
            ..gpus.clone()
        };
        run(&g, jobs, mig, origin_ms)
    };
    if jobs.is_empty() {
        return Ok(Peak {
            peak: 0,
            delayed: 0,
        });
    }
    let all = with(most)?;
    if all.delayed > 0 {
        return Ok(Peak {
            peak: most,
            delayed: all.delayed,
        });
    }
    let (mut lo, mut hi) = (1, most);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if with(mid)?.delayed == 0 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Peak {
        peak: lo,
        delayed: 0,
    })
}

/// The peak of busy GPUs of one replay, and how many jobs did not start at their time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peak {
    /// GPUs busy at the peak.
    pub peak: u32,
    /// Jobs started late or never.
    pub delayed: u32,
}

/// Replays `jobs` on `gpus` (in MIG mode when `mig`): the GPUs busy at the peak (a GPU is busy while
/// anything, a share or a MIG instance, is placed on it) and the jobs that did not start on time.
pub fn run(
    gpus: &ReplayGpus,
    jobs: &[ReplayJob],
    mig: bool,
    origin_ms: i64,
) -> Result<Peak, ReplayError> {
    let cluster = cluster(gpus, mig);
    let scheduler = Scheduler::from_spec(
        &cluster,
        SchedulerConfig {
            policy: Policy::GpuPacking,
            preemption: false,
            backfill: false,
            ..SchedulerConfig::default()
        },
    )
    .map_err(|e| ReplayError(e.to_string()))?;
    let models = scheduler.cluster().models.clone();
    let mut sims = Vec::with_capacity(jobs.len());
    for (i, j) in jobs.iter().enumerate() {
        let spec = spec_of(&format!("job-{i}"), &gpus.model, &j.request)?;
        let workload = Workload::from_spec(&spec, &cluster, &models, 0)
            .map_err(|e| ReplayError(format!("{}: {e}", j.name)))?;
        let arrival = u64::try_from((j.start_ms - origin_ms).max(0) / 1000).unwrap_or(0);
        let duration = u64::try_from((j.end_ms - j.start_ms).max(1)).unwrap_or(1);
        sims.push(SimWorkload {
            workload,
            arrival,
            duration: duration.div_ceil(1000),
        });
    }
    let report = simulate(scheduler, sims, 0).map_err(|e| ReplayError(e.to_string()))?;
    Ok(peak_of(&report))
}

/// The replay cluster: `gpus.count` GPUs of the model in nodes of at most 8, CPU and memory ample.
fn cluster(gpus: &ReplayGpus, mig: bool) -> ClusterSpec {
    let mut nodes = Vec::new();
    let mut left = gpus.count.max(1);
    while left > 0 {
        let n = left.min(GPUS_PER_NODE);
        left -= n;
        nodes.push(NodeDescription {
            name: format!("replay-{}", nodes.len()),
            labels: Default::default(),
            taints: Vec::new(),
            pool: Default::default(),
            cpu: MilliQuantity::from_milli(1_000_000),
            memory: MemoryQuantity::from_mib(1 << 24),
            gpus: Some(NodeGpus {
                model: gpus.model.clone(),
                count: i64::from(n),
                memory: Some(MemoryQuantity::from_mib(gpus.memory_mib.max(1))),
                mig: if mig {
                    MigMode::Enabled
                } else {
                    MigMode::Disabled
                },
                nvlink_groups: Vec::new(),
            }),
        });
    }
    ClusterSpec {
        priority_classes: Vec::new(),
        queues: Vec::new(),
        nodes,
    }
}

/// A minimal spec asking `request` of `model`.
fn spec_of(name: &str, model: &str, request: &Request) -> Result<WorkloadSpec, ReplayError> {
    let gpu = match request {
        Request::Whole(n) => serde_json::json!({"count": n, "models": [model]}),
        Request::Share { milli, memory_mib } => serde_json::json!({
            "share": milli, "memory": format!("{memory_mib}Mi"), "models": [model]
        }),
        Request::Mig(profile) => serde_json::json!({"mig": profile, "models": [model]}),
    };
    serde_json::from_value(serde_json::json!({"name": name, "resources": {"gpu": gpu}}))
        .map_err(|e| ReplayError(format!("{name}: {e}")))
}

/// Busy GPUs at the peak of a simulated run, from each job's start, end and devices.
fn peak_of(report: &ScenarioReport) -> Peak {
    // (time, 0 = end before 1 = start at the same instant, gpu key)
    let mut changes: Vec<(u64, u8, String)> = Vec::new();
    let mut delayed = 0;
    for w in &report.workloads {
        let Some(started) = w.started else {
            delayed += 1;
            continue;
        };
        if started > w.submitted {
            delayed += 1;
        }
        let mut keys: Vec<String> = w
            .gpus
            .iter()
            .map(|label| label.splitn(3, ':').take(2).collect::<Vec<_>>().join(":"))
            .collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            changes.push((started, 1, k.clone()));
            if let Some(end) = w.finished {
                changes.push((end, 0, k));
            }
        }
    }
    changes.sort();
    let mut held: BTreeMap<String, u32> = BTreeMap::new();
    let mut peak = 0;
    for (_, kind, key) in changes {
        let n = held.entry(key).or_default();
        if kind == 1 {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
        let busy = held.values().filter(|&&c| c > 0).count() as u32;
        peak = peak.max(busy);
    }
    Peak { peak, delayed }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn h100(count: u32) -> ReplayGpus {
        ReplayGpus {
            model: "H100-80GB".into(),
            count,
            memory_mib: 81_559,
        }
    }

    fn jobs(n: usize, request: Request, stagger_ms: i64) -> Vec<ReplayJob> {
        (0..n)
            .map(|i| ReplayJob {
                name: format!("wl-{i}"),
                start_ms: i as i64 * stagger_ms,
                end_ms: i as i64 * stagger_ms + 2 * H,
                request: request.clone(),
            })
            .collect()
    }

    #[test]
    fn twelve_overlapping_jobs_moved_to_3g_free_six_gpus() {
        let before = jobs(12, Request::Whole(1), 0);
        let after = jobs(12, Request::Mig("3g.40gb".into()), 0);
        let out = compare(&h100(16), &before, &after, 0).unwrap();
        assert_eq!(
            out,
            ReplayOutcome {
                gpus_before: 12,
                gpus_after: 6,
                gpus_freed: 6,
                delayed_after: 0,
                ..ReplayOutcome::default()
            }
        );
    }

    #[test]
    fn jobs_that_never_overlap_free_nothing() {
        // One job at a time: one GPU before, one GPU (a slice of it) after.
        let before = jobs(4, Request::Whole(1), 3 * H);
        let after = jobs(4, Request::Mig("1g.10gb".into()), 3 * H);
        let out = compare(&h100(4), &before, &after, 0).unwrap();
        assert_eq!((out.gpus_before, out.gpus_after, out.gpus_freed), (1, 1, 0));
    }

    #[test]
    fn shares_pack_onto_fewer_gpus() {
        let before = jobs(4, Request::Whole(1), 0);
        let after = jobs(
            4,
            Request::Share {
                milli: 500,
                memory_mib: 8_000,
            },
            0,
        );
        let out = compare(&h100(4), &before, &after, 0).unwrap();
        assert_eq!((out.gpus_before, out.gpus_after, out.gpus_freed), (4, 2, 2));
    }

    #[test]
    fn a_job_that_cannot_be_placed_is_counted_as_delayed() {
        // Two whole-GPU jobs at once on one GPU: the second waits for the first.
        let p = run(&h100(1), &jobs(2, Request::Whole(1), 0), false, 0).unwrap();
        let q = needed(&h100(1), &jobs(2, Request::Whole(1), 0), false, 0).unwrap();
        assert_eq!(p, q);
        // With MIG the scheduler spreads instances to keep large profiles placeable, so the jobs are
        // on four GPUs when eight are free, but two GPUs are enough.
        let mig = jobs(4, Request::Mig("3g.40gb".into()), 0);
        assert_eq!(run(&h100(8), &mig, true, 0).unwrap().peak, 4);
        assert_eq!(needed(&h100(8), &mig, true, 0).unwrap().peak, 2);
        assert_eq!(
            p,
            Peak {
                peak: 1,
                delayed: 1
            }
        );
    }

    #[test]
    fn moving_to_another_model_frees_every_gpu_it_held() {
        let l4 = ReplayGpus {
            model: "L4-24GB".into(),
            count: 4,
            memory_mib: 23_034,
        };
        let out = compare_move(&h100(4), &l4, &jobs(3, Request::Whole(1), 0), 0).unwrap();
        assert_eq!((out.gpus_before, out.gpus_after, out.gpus_freed), (3, 0, 3));
        assert_eq!(out.target_gpus, Some(3));
        assert_eq!(out.delayed_after, 0);
        // Two L4s for three jobs at once: one waits.
        let two = ReplayGpus { count: 2, ..l4 };
        let out = compare_move(&h100(4), &two, &jobs(3, Request::Whole(1), 0), 0).unwrap();
        assert_eq!(out.delayed_after, 1);
    }
}

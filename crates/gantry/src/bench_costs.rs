//! `gantry bench costs`: what the cost accounting costs on a long telemetry history.
//!
//! Builds a temporary store holding a deterministic synthetic history through the store's public
//! API (workloads submitted, placed, run, preempted and retried, finished, with their audit events
//! and assignments; one telemetry sample per GPU and holder every 2 seconds), then times the same
//! functions the server runs for `GET /api/costs/analysis`, `GET /api/costs/findings` and the
//! budget check (the month-to-date spend), and reports the database's size.

use anyhow::{Context, bail};
use clap::Args;
use gantry_server::costs::{
    Catalogue, GroupBy, ROLLUP_AFTER_MS, Window, analyse, history_of, usage_of_store,
};
use gantry_server::schedule::{Machine, Slot};
use gantry_store::{
    AssignedGpu, Assignment, GpuSample, NewWorkload, ReplicaAssignment, Store, Transition,
    TransitionRequest, UnixMillis, WorkloadId, WorkloadState,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::time::Instant;

/// Options of `gantry bench costs`.
#[derive(Args, Debug)]
pub struct BenchCostsArgs {
    /// GPUs on the machine (every fourth one is shared by two 500-milli workloads).
    #[arg(long, default_value_t = 16)]
    gpus: u32,
    /// Days of history, ending at the bench's fixed "now" (2026-03-31 12:00 UTC).
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// About how many workloads run over the history.
    #[arg(long, default_value_t = 20_000)]
    workloads: u32,
    /// Timed runs of each measure; the best and the median are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Directory for the temporary database (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// Seed of the synthetic history.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep every raw sample (skip the server's hourly rollup into minutes), to measure the
    /// unrolled path.
    #[arg(long)]
    raw: bool,
}

/// The bench's "now": 2026-03-31 12:00 UTC, so the month-to-date window is 30.5 days long.
const NOW_MS: UnixMillis = 1_774_958_400_000;
/// The server's poll interval.
const POLL_MS: i64 = 2_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const QUEUES: [&str; 4] = ["research", "training", "serving", "batch"];

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.unit() * (hi - lo) as f64) as i64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Succeeded,
    Failed,
    /// Preempted and requeued: the workload runs again later, on another lane.
    Preempted,
    /// Still running at "now".
    Open,
}

/// One attempt of one synthetic workload on one lane.
#[derive(Clone, Debug)]
struct Run {
    workload: usize,
    lane: usize,
    gpu: u32,
    milli: u32,
    start: i64,
    end: i64,
    ending: Ending,
}

/// One synthetic workload: who, where it is charged, how busy it keeps its GPU.
#[derive(Clone, Debug)]
struct Synthetic {
    owner: String,
    queue: &'static str,
    milli: u32,
    /// Mean utilisation, percent.
    utilization: f64,
    /// Memory in use, bytes.
    memory: u64,
    /// Its first run's start (it is submitted in the hour before).
    first_start: i64,
}

/// The whole synthetic history: workloads and their runs, by start time.
struct Plan {
    workloads: Vec<Synthetic>,
    runs: Vec<Run>,
}

/// Lanes: each GPU runs one workload at a time, every fourth GPU two 500-milli ones.
fn lanes(gpus: u32) -> Vec<(u32, u32)> {
    (0..gpus)
        .flat_map(|g| {
            if g % 4 == 3 {
                vec![(g, 500), (g, 500)]
            } else {
                vec![(g, 1000)]
            }
        })
        .collect()
}

/// Plans the history: each lane takes the next workload (a requeued one first) after a short gap.
fn plan(args: &BenchCostsArgs) -> Plan {
    let mut rng = Rng(args.seed);
    let lanes = lanes(args.gpus);
    let from = NOW_MS - i64::from(args.days) * DAY;
    let per_lane = (f64::from(args.workloads) / lanes.len() as f64).max(1.0);
    let cycle = (i64::from(args.days) * DAY) as f64 / per_lane;
    let mut free: BinaryHeap<Reverse<(i64, usize)>> =
        (0..lanes.len()).map(|l| Reverse((from, l))).collect();
    let mut requeued: Vec<(usize, i64)> = Vec::new();
    let mut workloads: Vec<Synthetic> = Vec::new();
    let mut runs = Vec::new();
    while let Some(Reverse((at, lane))) = free.pop() {
        let (gpu, milli) = lanes[lane];
        let start = at + (cycle * 0.2 * rng.unit()) as i64 + rng.between(0, 1_000);
        if start >= NOW_MS {
            continue;
        }
        let retry = requeued
            .iter()
            .position(|&(w, ready)| workloads[w].milli == milli && ready <= start);
        let workload = match retry {
            Some(i) => requeued.swap_remove(i).0,
            None => {
                let busy = rng.unit() >= 0.25;
                workloads.push(Synthetic {
                    owner: format!("user{}", rng.between(0, 8)),
                    queue: QUEUES[rng.between(0, 4) as usize],
                    milli,
                    utilization: if busy {
                        rng.between(55, 95) as f64
                    } else {
                        rng.between(1, 12) as f64
                    },
                    memory: rng.between(8, 70) as u64 * (1 << 30),
                    first_start: start,
                });
                workloads.len() - 1
            }
        };
        let length = (cycle * (0.1 + 1.4 * rng.unit())) as i64 + rng.between(0, MINUTE);
        let roll = rng.unit();
        let (end, ending) = if start + length >= NOW_MS {
            (NOW_MS, Ending::Open)
        } else if roll < 0.05 {
            requeued.push((workload, start + length + rng.between(MINUTE, 20 * MINUTE)));
            (start + length, Ending::Preempted)
        } else if roll < 0.15 {
            (start + length, Ending::Failed)
        } else {
            (start + length, Ending::Succeeded)
        };
        runs.push(Run {
            workload,
            lane,
            gpu,
            milli,
            start,
            end,
            ending,
        });
        if ending != Ending::Open {
            free.push(Reverse((end, lane)));
        }
    }
    runs.sort_by_key(|r| (r.start, r.gpu));
    Plan { workloads, runs }
}

fn gpu_uuid(g: u32) -> String {
    format!("GPU-bench-{g:02}")
}

fn machine(gpus: u32) -> Machine {
    Machine {
        name: "bench".into(),
        slots: (0..gpus)
            .map(|i| Slot {
                index: i,
                uuid: gpu_uuid(i),
                model: "H100-80GB".into(),
                healthy: true,
            })
            .collect(),
        cpu_milli: 256_000,
        memory_mib: 2 << 20,
    }
}

fn assignment(gpu: u32, milli: u32) -> Assignment {
    Assignment {
        replicas: vec![ReplicaAssignment {
            node: "bench".into(),
            gpus: vec![AssignedGpu {
                index: gpu,
                uuid: Some(gpu_uuid(gpu)),
                milli: (milli < 1000).then_some(milli),
                mig: None,
            }],
        }],
    }
}

fn new_workload(i: usize, w: &Synthetic) -> anyhow::Result<NewWorkload> {
    let gpu = if w.milli < 1000 {
        serde_json::json!({"count": 1, "share": w.milli})
    } else {
        serde_json::json!({"count": 1})
    };
    let spec = serde_json::from_value(serde_json::json!({
        "name": format!("bench-{i}"),
        "queue": w.queue,
        "resources": {"gpu": gpu},
        "run": {"command": ["train.sh"]},
    }))
    .context("synthetic spec")?;
    Ok(NewWorkload::from_spec(spec, &w.owner, 0))
}

/// What the store is asked to do at one instant, in order.
#[derive(Default)]
struct Moment {
    submit: Vec<usize>,
    transitions: Vec<(usize, WorkloadState, Transition)>,
}

/// Writes the workloads, their transitions (each at its own instant) and assignments.
fn write_workloads(store: &mut Store, plan: &Plan) -> anyhow::Result<usize> {
    use WorkloadState::*;
    let mut at: BTreeMap<i64, Moment> = BTreeMap::new();
    for (i, w) in plan.workloads.iter().enumerate() {
        let hour = w.first_start.div_euclid(HOUR) * HOUR;
        at.entry(hour).or_default().submit.push(i);
    }
    for r in &plan.runs {
        let starts = &mut at.entry(r.start).or_default().transitions;
        starts.push((
            r.workload,
            Pending,
            Transition::to(Scheduled).assignment(assignment(r.gpu, r.milli)),
        ));
        starts.push((r.workload, Scheduled, Transition::to(Running)));
        let ends = &mut at.entry(r.end).or_default().transitions;
        match r.ending {
            Ending::Open => {}
            Ending::Succeeded => ends.push((r.workload, Running, Transition::to(Succeeded))),
            Ending::Failed => {
                ends.push((r.workload, Running, Transition::to(Failed).exit_code(1)));
            }
            Ending::Preempted => {
                ends.push((
                    r.workload,
                    Running,
                    Transition::to(Preempted).reason("bench"),
                ));
                ends.push((r.workload, Preempted, Transition::to(Pending)));
            }
        }
    }
    let mut ids: Vec<Option<WorkloadId>> = vec![None; plan.workloads.len()];
    let mut events = 0;
    for (now, todo) in at {
        if !todo.submit.is_empty() {
            let batch = todo
                .submit
                .iter()
                .map(|&i| new_workload(i, &plan.workloads[i]))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let stored = store.submit_batch(&batch, "bench", now)?;
            for (&i, w) in todo.submit.iter().zip(stored) {
                ids[i] = Some(w.id);
            }
            events += batch.len();
        }
        if !todo.transitions.is_empty() {
            let requests = todo
                .transitions
                .into_iter()
                .map(|(i, from, change)| {
                    Ok(TransitionRequest {
                        id: ids[i].context("a run before its submission")?,
                        from,
                        change,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for outcome in store.transition_many(&requests, "scheduler", now)? {
                outcome.context("synthetic transition")?;
                events += 1;
            }
        }
    }
    Ok(events)
}

/// Writes one sample per GPU and holder every poll, an hour per transaction; calls `after_hour`
/// with the end of each hour written (the server's hourly maintenance).
fn write_samples(
    store: &mut Store,
    plan: &Plan,
    gpus: u32,
    days: u32,
    ids: &[WorkloadId],
    mut after_hour: impl FnMut(&mut Store, i64) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let from = NOW_MS - i64::from(days) * DAY;
    let lanes = lanes(gpus);
    let mut by_lane: Vec<Vec<&Run>> = vec![Vec::new(); lanes.len()];
    for r in &plan.runs {
        by_lane[r.lane].push(r);
    }
    let mut lanes_of_gpu: Vec<Vec<usize>> = vec![Vec::new(); gpus as usize];
    for (l, &(g, _)) in lanes.iter().enumerate() {
        lanes_of_gpu[g as usize].push(l);
    }
    let mut next = vec![0usize; lanes.len()];
    let uuids: Vec<String> = (0..gpus).map(gpu_uuid).collect();
    let mut written = 0u64;
    let mut batch: Vec<GpuSample> = Vec::with_capacity(40_000);
    let mut t = from.div_euclid(POLL_MS) * POLL_MS + POLL_MS;
    let mut hour_end = (t.div_euclid(HOUR) + 1) * HOUR;
    while t < NOW_MS {
        for (g, uuid) in uuids.iter().enumerate() {
            let mut held = false;
            for &l in &lanes_of_gpu[g] {
                let runs = &by_lane[l];
                while next[l] < runs.len() && runs[next[l]].end <= t {
                    next[l] += 1;
                }
                let Some(r) = runs.get(next[l]).filter(|r| r.start <= t) else {
                    continue;
                };
                held = true;
                let w = &plan.workloads[r.workload];
                let noise = (mix((t as u64) ^ ((r.workload as u64) << 20)) % 1000) as f64 / 100.0;
                batch.push(GpuSample {
                    at: t,
                    gpu_uuid: uuid.clone(),
                    workload: Some(ids[r.workload]),
                    held_milli: Some(r.milli),
                    utilization_pct: Some((w.utilization + noise - 5.0).clamp(0.0, 100.0)),
                    memory_used_bytes: Some(w.memory),
                    power_watts: Some(100.0 + 5.0 * w.utilization),
                    temperature_c: Some(35.0 + w.utilization / 3.0),
                });
            }
            if !held {
                batch.push(GpuSample {
                    at: t,
                    gpu_uuid: uuid.clone(),
                    workload: None,
                    held_milli: None,
                    utilization_pct: Some(0.0),
                    memory_used_bytes: Some(0),
                    power_watts: Some(70.0),
                    temperature_c: Some(30.0),
                });
            }
        }
        t += POLL_MS;
        if t >= hour_end || t >= NOW_MS {
            written += store.record_samples(&batch)? as u64;
            batch.clear();
            after_hour(store, hour_end.min(NOW_MS))?;
            hour_end += HOUR;
        }
    }
    Ok(written)
}

/// Best and median of `repeat` runs of `f`, in seconds, and its last result.
fn time<T>(
    repeat: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(f64, f64, T)> {
    let mut times = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat {
        let start = Instant::now();
        last = Some(f()?);
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let out = last.context("no run")?;
    Ok((times[0], times[times.len() / 2], out))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Runs `gantry bench costs`.
pub fn run(args: BenchCostsArgs) -> anyhow::Result<()> {
    if args.gpus == 0 || args.gpus > 1024 {
        bail!("--gpus: must be 1 to 1024");
    }
    if args.days == 0 || args.days > 35 {
        bail!("--days: must be 1 to 35 (the samples' retention)");
    }
    if args.workloads == 0 {
        bail!("--workloads: must be at least 1");
    }
    if args.repeat == 0 {
        bail!("--repeat: must be at least 1");
    }
    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("temporary directory")?;
    let path = dir.path().join("costs.db");
    let mut store = Store::open(&path)?;
    let built = Instant::now();
    let plan = plan(&args);
    let events = write_workloads(&mut store, &plan)?;
    let workloads_s = built.elapsed().as_secs_f64();
    let ids: Vec<WorkloadId> = (1..=plan.workloads.len() as i64)
        .map(|n| WorkloadId::from_raw(n).context("id"))
        .collect::<anyhow::Result<_>>()?;
    let raw = args.raw;
    let samples = write_samples(
        &mut store,
        &plan,
        args.gpus,
        args.days,
        &ids,
        |s, hour_end| {
            // The server's hourly maintenance: samples older than an hour become minutes.
            if !raw {
                s.roll_up_samples(hour_end - ROLLUP_AFTER_MS)?;
            }
            Ok(())
        },
    )?;
    let build_s = built.elapsed().as_secs_f64();
    drop(store);
    let store = Store::open(&path)?;
    let size = file_size(&path) + file_size(&path.with_extension("db-wal"));
    println!(
        "history: {} GPUs x {} days, {} workloads, {} runs, {} events, {} samples written; \
         built in {:.1} s (workloads {:.1} s); {}; database {:.1} MiB",
        args.gpus,
        args.days,
        plan.workloads.len(),
        plan.runs.len(),
        events,
        samples,
        build_s,
        workloads_s,
        if args.raw {
            "raw samples kept"
        } else {
            "rolled up into minutes after an hour"
        },
        size as f64 / (1 << 20) as f64
    );
    let machine = machine(args.gpus);
    let prices = Catalogue::default();
    let memory: BTreeMap<String, u64> = (0..args.gpus).map(|g| (gpu_uuid(g), 81_559)).collect();
    println!(
        "{:<34} {:>10} {:>10}  result",
        "measure", "best s", "median s"
    );
    for days in [30i64, 7] {
        if days > i64::from(args.days) && days != 7 {
            continue;
        }
        let window = Window {
            from_ms: NOW_MS - days * DAY,
            to_ms: NOW_MS,
        };
        let (best, median, h) = time(args.repeat, || Ok(history_of(&store, None, window)?))?;
        println!(
            "{:<34} {:>10.3} {:>10.3}  {} workloads, {} sample buckets",
            format!("  of which history read {days}d"),
            best,
            median,
            h.workloads.len(),
            h.buckets.len()
        );
        let (best, median, a) = time(args.repeat, || {
            let usage = usage_of_store(&store, &machine, None, window)?;
            Ok(analyse(&usage, window, &prices, GroupBy::Queue, 30.0)?)
        })?;
        println!(
            "{:<34} {:>10.3} {:>10.3}  total {} idle {} ({:.1} GPU-h)",
            format!("cost analysis {days}d (by queue)"),
            best,
            median,
            a.total,
            a.idle_total,
            a.gpu_hours
        );
        let (best, median, f) = time(args.repeat, || {
            let history = history_of(&store, None, window)?;
            Ok(gantry_server::findings::compute(
                &history, &machine, &memory, window, &prices, 30.0,
            ))
        })?;
        println!(
            "{:<34} {:>10.3} {:>10.3}  {} underused GPUs, {} right-sizing, {} spot",
            format!("findings {days}d"),
            best,
            median,
            f.underused_gpus.len(),
            f.right_sizing.len(),
            f.spot_candidates.len()
        );
    }
    let (best, median, spend) = time(args.repeat, || {
        Ok(gantry_server::alerts::month_spend_of(
            &store, &machine, &prices, NOW_MS,
        )?)
    })?;
    let cents: u64 = spend.cents_by_queue.values().sum();
    println!(
        "{:<34} {:>10.3} {:>10.3}  {} queues, {}.{:02} {}",
        format!("budget check ({} to date)", spend.month.label),
        best,
        median,
        spend.cents_by_queue.len(),
        cents / 100,
        cents % 100,
        spend.currency
    );
    Ok(())
}

//! Dynamic simulation: workloads arrive at given times, run for given durations, and the live scheduler
//! ([`gantry_core::live::Scheduler`]) places them cycle by cycle (a cycle at every arrival or end).
//!
//! Inputs: a cluster and a list of [`ScenarioWorkload`]s (a [`WorkloadSpec`] plus `arrival` and
//! `duration`, simulation-only fields kept out of the spec), or an openb trace whose creation and
//! deletion times give arrivals and runtimes ([`openb_scenario`]). The scheduler is told each workload's
//! runtime (its duration, capped by its `timeout`) for backfill reservations, as if estimates were exact.
//! A preempted workload goes back to the queue and later restarts from the beginning.
//!
//! Output: [`ScenarioReport`]: every workload's fate, and a summary (makespan, queueing delay per
//! priority class and per queue, mean JCT, GPU allocation over time, preemptions, quota violations).

use crate::openb::{TraceError, read_trace};
use crate::svg::{Series, line_chart};
use gantry_core::Rng;
use gantry_core::live::{LiveCluster, LiveError, Scheduler, SchedulerConfig, Workload, WorkloadId};
use gantry_core::spec::{ClusterSpec, Duration, WorkloadSpec};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write;
use std::path::Path;

/// A workload of a simulation file: a workload spec plus when it arrives and how long it runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioWorkload {
    /// The workload.
    #[serde(flatten)]
    pub spec: WorkloadSpec,
    /// When it is submitted, from the start of the simulation: `"0"`, `"90s"`, `"2h"`.
    pub arrival: Duration,
    /// How long it runs once started: `"30m"`.
    pub duration: Duration,
    /// Fields neither the spec nor the simulation knows (reported as errors).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde::de::IgnoredAny>,
}

/// What went wrong preparing or running a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A workload or the cluster is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The live scheduler refused something.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// An openb file could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// A resolved workload with its arrival time and runtime, in seconds.
#[derive(Clone, Debug)]
pub struct SimWorkload {
    /// The workload (its `submitted` is set at arrival).
    pub workload: Workload,
    /// Arrival time.
    pub arrival: u64,
    /// Runtime once started.
    pub duration: u64,
}

/// Resolves scenario workloads against `cluster`; every problem is reported as `[i].path: problem`.
pub fn resolve(
    cluster: &ClusterSpec,
    live: &LiveCluster,
    items: &[ScenarioWorkload],
) -> Result<Vec<SimWorkload>, ScenarioError> {
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    let mut names = BTreeMap::new();
    for (i, s) in items.iter().enumerate() {
        for k in s.unknown.keys() {
            problems.push(format!("[{i}].{k}: unknown field"));
        }
        if let Some(first) = names.insert(s.spec.name.clone(), i) {
            problems.push(format!(
                "[{i}].name: {:?} is already the name of [{first}]",
                s.spec.name
            ));
        }
        let arrival = s
            .arrival
            .seconds()
            .map_err(|e| format!("[{i}].arrival: {e}"));
        let duration = s
            .duration
            .seconds()
            .map_err(|e| format!("[{i}].duration: {e}"));
        let w = Workload::from_spec(&s.spec, cluster, &live.models, 0);
        match (arrival, duration, w) {
            (Ok(arrival), Ok(duration), Ok(workload)) => out.push(SimWorkload {
                workload,
                arrival,
                duration,
            }),
            (a, d, w) => {
                problems.extend(a.err());
                problems.extend(d.err());
                match w {
                    Err(LiveError::Spec(errors)) => {
                        problems.extend(errors.into_iter().map(|e| format!("[{i}].{e}")));
                    }
                    Err(e) => problems.push(format!("[{i}]: {e}")),
                    Ok(_) => {}
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ScenarioError::Invalid(problems.join("\n")))
    }
}

/// The openb trace as a scenario: its cluster, and each pod as a one-replica workload arriving at its
/// `creation_time` and running `deletion_time - creation_time` seconds; `LS` pods get priority 500,
/// others 100 (preemptible); all in queue `default`.
pub fn openb_scenario(
    nodes: &Path,
    pods: &Path,
) -> Result<(LiveCluster, Vec<SimWorkload>), ScenarioError> {
    let trace = read_trace(nodes, pods)?;
    let times = read_times(pods)?;
    if times.len() != trace.pods.len() {
        return Err(ScenarioError::Invalid(format!(
            "{}: {} pods but {} time rows",
            pods.display(),
            trace.pods.len(),
            times.len()
        )));
    }
    let cluster = LiveCluster::from_node_specs(trace.models.clone(), &trace.nodes);
    let t0 = times.iter().map(|t| t.0).min().unwrap_or(0);
    let out = trace
        .pods
        .iter()
        .zip(&times)
        .map(|(p, &(created, deleted, ls))| {
            let priority = if ls { 500 } else { 100 };
            let mut w = Workload::from_pod(&p.name, "default", priority, &p.pod, 1);
            w.priority_class = if ls { "ls" } else { "be" }.to_string();
            SimWorkload {
                workload: w,
                arrival: created - t0,
                duration: deleted.saturating_sub(created).max(1),
            }
        })
        .collect();
    Ok((cluster, out))
}

/// (creation, deletion, qos is LS) per pod row of an openb pod list.
fn read_times(path: &Path) -> Result<Vec<(u64, u64, bool)>, ScenarioError> {
    let bad =
        |line: u64, m: String| ScenarioError::Invalid(format!("{}:{line}: {m}", path.display()));
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| ScenarioError::Invalid(format!("{}: {e}", path.display())))?;
    let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                bad(
                    1,
                    format!("missing column {name:?} (needed for arrivals and runtimes)"),
                )
            })
    };
    let (c_created, c_deleted) = (col("creation_time")?, col("deletion_time")?);
    let c_qos = headers.iter().position(|h| h.trim() == "qos");
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(0, e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let num = |c: usize, name: &str| -> Result<u64, ScenarioError> {
            let raw = record.get(c).unwrap_or("").trim();
            raw.parse().map_err(|_| {
                bad(
                    line,
                    format!("column {name:?}: expected seconds, got {raw:?}"),
                )
            })
        };
        let created = num(c_created, "creation_time")?;
        let deleted = num(c_deleted, "deletion_time")?;
        let ls = c_qos
            .and_then(|c| record.get(c))
            .is_some_and(|q| q.trim() == "LS");
        out.push((created, deleted, ls));
    }
    Ok(out)
}

/// One workload's fate.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadReport {
    /// Name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// Priority class name (empty when none).
    pub priority_class: String,
    /// Priority value.
    pub priority: i64,
    /// `succeeded`, `failed` (stopped at its `timeout`), `pending` (waiting at the end, never started or
    /// preempted) or `running`.
    pub state: String,
    /// The node(s) of its last run, comma separated.
    pub node: Option<String>,
    /// Devices of its last run: `node:gpu` or `node:gpu:profile@start` for MIG.
    pub gpus: Vec<String>,
    /// Arrival time, seconds.
    pub submitted: u64,
    /// First start, seconds.
    pub started: Option<u64>,
    /// End, seconds.
    pub finished: Option<u64>,
    /// Times it was preempted.
    pub preemptions: u32,
    /// Why it is waiting (never started or preempted) or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Mean and percentiles of queueing delays, seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DelayStats {
    /// Workloads counted.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One sample of the cluster over time (taken after each cycle).
#[derive(Clone, Debug, Serialize)]
pub struct TimePoint {
    /// Time, seconds.
    pub time: u64,
    /// GPUs allocated (MIG instances by their memory slices).
    pub allocated_gpus: f64,
    /// Allocated % of GPU capacity.
    pub allocated_pct: f64,
    /// Pending workloads.
    pub pending: usize,
    /// GPUs in use per queue.
    pub per_queue: BTreeMap<String, f64>,
}

/// The summary of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Placement strategy.
    pub policy: String,
    /// First arrival to last end, seconds.
    pub makespan: u64,
    /// Queueing delay (first start - arrival) per priority class.
    pub queueing_delay_by_priority: BTreeMap<String, DelayStats>,
    /// Queueing delay per queue.
    pub queueing_delay_by_queue: BTreeMap<String, DelayStats>,
    /// Mean job completion time (end - arrival) of finished workloads, seconds.
    pub mean_jct: f64,
    /// Workloads that finished.
    pub finished: usize,
    /// Workloads that never started.
    pub never_started: usize,
    /// Preemptions.
    pub preemptions: usize,
    /// Times a queue was found over guarantee + borrowing limit after a cycle (must be 0).
    pub quota_violations: usize,
    /// Mean allocated % of GPU capacity over time (time-weighted, first arrival to makespan).
    pub mean_allocated_pct: f64,
    /// GPU allocation over time.
    pub gpu_allocation: Vec<TimePoint>,
}

/// Everything a scenario run reports.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    /// Every workload, in input order.
    pub workloads: Vec<WorkloadReport>,
    /// The summary.
    pub summary: Summary,
}

struct Record {
    id: Option<WorkloadId>,
    started: Option<u64>,
    finished: Option<u64>,
    state: &'static str,
    preemptions: u32,
    generation: u32,
    last: Vec<String>,
    nodes: Vec<String>,
}

/// Runs the scenario on `scheduler` (fresh: nothing submitted) with `seed` for randomised strategies.
pub fn simulate(
    mut scheduler: Scheduler,
    workloads: Vec<SimWorkload>,
    seed: u64,
) -> Result<ScenarioReport, ScenarioError> {
    let mut rng = Rng::new(seed);
    let mut arrivals: Vec<usize> = (0..workloads.len()).collect();
    arrivals.sort_by_key(|&i| (workloads[i].arrival, i));
    let mut records: Vec<Record> = workloads
        .iter()
        .map(|_| Record {
            id: None,
            started: None,
            finished: None,
            state: "pending",
            preemptions: 0,
            generation: 0,
            last: Vec::new(),
            nodes: Vec::new(),
        })
        .collect();
    let mut index_of: BTreeMap<WorkloadId, usize> = BTreeMap::new();
    let mut ends: BinaryHeap<Reverse<(u64, usize, u32)>> = BinaryHeap::new();
    let mut next = 0usize;
    let mut timeline: Vec<TimePoint> = Vec::new();
    let mut preemptions = 0usize;
    let mut violations = 0usize;
    let capacity = scheduler.cluster().totals()[0] as f64 / 1000.0;
    loop {
        let t_arrival = arrivals.get(next).map(|&i| workloads[i].arrival);
        let t_end = ends.peek().map(|Reverse((t, _, _))| *t);
        let now = match (t_arrival, t_end) {
            (None, None) => break,
            (Some(a), None) => a,
            (None, Some(e)) => e,
            (Some(a), Some(e)) => a.min(e),
        };
        while let Some(&Reverse((t, i, generation))) = ends.peek() {
            if t != now {
                break;
            }
            ends.pop();
            let r = &mut records[i];
            if r.generation != generation || r.state != "running" {
                continue;
            }
            if let Some(id) = r.id {
                scheduler.finish(id)?;
            }
            r.finished = Some(now);
            let limit = workloads[i].workload.timeout_secs;
            r.state = if limit.is_some_and(|l| l < workloads[i].duration) {
                "failed"
            } else {
                "succeeded"
            };
        }
        while next < arrivals.len() && workloads[arrivals[next]].arrival == now {
            let i = arrivals[next];
            let sw = &workloads[i];
            let mut w = sw.workload.clone();
            w.submitted = now;
            let run = w.timeout_secs.map_or(sw.duration, |l| l.min(sw.duration));
            w.expected_runtime = Some(run);
            let id = scheduler.submit(w)?;
            records[i].id = Some(id);
            index_of.insert(id, i);
            next += 1;
        }
        let outcome = scheduler.cycle(now, &mut rng);
        for &(victim, _) in &outcome.preempted {
            if let Some(&i) = index_of.get(&victim) {
                let r = &mut records[i];
                r.preemptions += 1;
                r.generation += 1;
                r.state = "pending";
                preemptions += 1;
            }
        }
        for &id in &outcome.started {
            let Some(&i) = index_of.get(&id) else {
                continue;
            };
            let sw = &workloads[i];
            let run = sw
                .workload
                .timeout_secs
                .map_or(sw.duration, |l| l.min(sw.duration));
            let r = &mut records[i];
            r.started.get_or_insert(now);
            r.state = "running";
            if let Some(running) = scheduler.running().get(&id) {
                let nodes = scheduler.cluster().nodes();
                r.last.clear();
                r.nodes.clear();
                for p in &running.placements {
                    let name = nodes.get(p.node as usize).map_or("?", |n| n.name.as_str());
                    if !r.nodes.iter().any(|n| n == name) {
                        r.nodes.push(name.to_string());
                    }
                    r.last
                        .extend(p.devices.iter().map(|d| format!("{name}:{}", d.label())));
                }
            }
            ends.push(Reverse((now.saturating_add(run), i, r.generation)));
        }
        violations += scheduler.quota_violations().len();
        let per_queue: BTreeMap<String, f64> = scheduler
            .queues()
            .list
            .iter()
            .map(|q| (q.name.clone(), q.usage[0] as f64 / 1000.0))
            .collect();
        let allocated = scheduler.cluster().gpu_allocated_milli() as f64 / 1000.0;
        timeline.push(TimePoint {
            time: now,
            allocated_gpus: allocated,
            allocated_pct: if capacity > 0.0 {
                100.0 * allocated / capacity
            } else {
                0.0
            },
            pending: scheduler.pending().len(),
            per_queue,
        });
    }
    let reports: Vec<WorkloadReport> = workloads
        .iter()
        .zip(&records)
        .map(|(sw, r)| {
            let w = &sw.workload;
            let never = r.started.is_none();
            WorkloadReport {
                name: w.name.clone(),
                queue: w.queue.clone(),
                priority_class: w.priority_class.clone(),
                priority: w.priority,
                state: r.state.to_string(),
                node: (!r.nodes.is_empty()).then(|| r.nodes.join(",")),
                gpus: r.last.clone(),
                submitted: sw.arrival,
                started: r.started,
                finished: r.finished,
                preemptions: r.preemptions,
                reason: if r.state == "failed" {
                    Some(format!(
                        "timed out after {} s",
                        w.timeout_secs.unwrap_or_default()
                    ))
                } else if never || r.state == "pending" {
                    r.id.and_then(|id| scheduler.reason(id))
                        .map(str::to_string)
                        .or_else(|| Some("never considered".to_string()))
                } else {
                    None
                },
            }
        })
        .collect();
    let summary = summarize(
        &reports,
        timeline,
        preemptions,
        violations,
        scheduler_policy(&scheduler),
    );
    Ok(ScenarioReport {
        workloads: reports,
        summary,
    })
}

fn scheduler_policy(s: &Scheduler) -> String {
    s.config().policy.name().to_string()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Mean and percentiles of `values`.
pub fn delay_stats(mut values: Vec<f64>) -> DelayStats {
    values.sort_by(f64::total_cmp);
    let count = values.len();
    let mean = if count == 0 {
        0.0
    } else {
        values.iter().sum::<f64>() / count as f64
    };
    DelayStats {
        count,
        mean,
        p50: percentile(&values, 50.0),
        p95: percentile(&values, 95.0),
        p99: percentile(&values, 99.0),
    }
}

fn summarize(
    reports: &[WorkloadReport],
    timeline: Vec<TimePoint>,
    preemptions: usize,
    quota_violations: usize,
    policy: String,
) -> Summary {
    let mut by_priority: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut by_queue: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut jct = Vec::new();
    for r in reports {
        if let Some(s) = r.started {
            let d = s.saturating_sub(r.submitted) as f64;
            let class = if r.priority_class.is_empty() {
                r.priority.to_string()
            } else {
                r.priority_class.clone()
            };
            by_priority.entry(class).or_default().push(d);
            by_queue.entry(r.queue.clone()).or_default().push(d);
        }
        if let Some(f) = r.finished {
            jct.push(f.saturating_sub(r.submitted) as f64);
        }
    }
    let first = reports.iter().map(|r| r.submitted).min().unwrap_or(0);
    let last = reports
        .iter()
        .filter_map(|r| r.finished)
        .max()
        .unwrap_or(first);
    let makespan = last.saturating_sub(first);
    let mut weighted = 0.0;
    for pair in timeline.windows(2) {
        weighted += pair[0].allocated_pct * (pair[1].time - pair[0].time) as f64;
    }
    let span = timeline
        .last()
        .map_or(0, |l| l.time)
        .saturating_sub(timeline.first().map_or(0, |f| f.time));
    Summary {
        policy,
        makespan,
        queueing_delay_by_priority: by_priority
            .into_iter()
            .map(|(k, v)| (k, delay_stats(v)))
            .collect(),
        queueing_delay_by_queue: by_queue
            .into_iter()
            .map(|(k, v)| (k, delay_stats(v)))
            .collect(),
        mean_jct: if jct.is_empty() {
            0.0
        } else {
            jct.iter().sum::<f64>() / jct.len() as f64
        },
        finished: reports.iter().filter(|r| r.finished.is_some()).count(),
        never_started: reports.iter().filter(|r| r.started.is_none()).count(),
        preemptions,
        quota_violations,
        mean_allocated_pct: if span > 0 {
            weighted / span as f64
        } else {
            0.0
        },
        gpu_allocation: timeline,
    }
}

/// The timeline as CSV: `time,allocated_gpus,allocated_pct,pending,<queue>...`.
pub fn timeline_csv(report: &ScenarioReport) -> String {
    let queues: Vec<&String> = report
        .summary
        .gpu_allocation
        .last()
        .map(|p| p.per_queue.keys().collect())
        .unwrap_or_default();
    let mut out = String::from("time,allocated_gpus,allocated_pct,pending");
    for q in &queues {
        let _ = write!(out, ",gpus_{q}");
    }
    out.push('\n');
    for p in &report.summary.gpu_allocation {
        let _ = write!(
            out,
            "{},{:.3},{:.3},{}",
            p.time, p.allocated_gpus, p.allocated_pct, p.pending
        );
        for q in &queues {
            let _ = write!(out, ",{:.3}", p.per_queue.get(*q).copied().unwrap_or(0.0));
        }
        out.push('\n');
    }
    out
}

/// The workloads as CSV.
pub fn workloads_csv(report: &ScenarioReport) -> String {
    let mut out = String::from(
        "name,queue,priority_class,priority,state,node,gpus,submitted,started,finished,preemptions,reason\n",
    );
    let opt = |x: Option<u64>| x.map_or(String::new(), |v| v.to_string());
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for w in &report.workloads {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            quote(&w.name),
            quote(&w.queue),
            quote(&w.priority_class),
            w.priority,
            w.state,
            quote(w.node.as_deref().unwrap_or("")),
            quote(&w.gpus.join(" ")),
            w.submitted,
            opt(w.started),
            opt(w.finished),
            w.preemptions,
            quote(w.reason.as_deref().unwrap_or(""))
        );
    }
    out
}

/// Step-shaped points (a value holds until the next sample).
fn steps(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        if let Some(&(_, prev)) = out.last() {
            out.push((x, prev));
        }
        out.push((x, y));
    }
    out
}

/// SVG charts: (`gpus-per-queue.svg`, `queue-length.svg`), time in hours.
pub fn charts(report: &ScenarioReport) -> (String, String) {
    let tl = &report.summary.gpu_allocation;
    let x0 = tl.first().map_or(0.0, |p| p.time as f64 / 3600.0);
    let mut x1 = tl.last().map_or(1.0, |p| p.time as f64 / 3600.0);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let queues: Vec<String> = tl
        .last()
        .map(|p| p.per_queue.keys().cloned().collect())
        .unwrap_or_default();
    let series: Vec<Series<'_>> = queues
        .iter()
        .map(|q| Series {
            label: q,
            points: steps(tl.iter().map(|p| {
                (
                    p.time as f64 / 3600.0,
                    p.per_queue.get(q).copied().unwrap_or(0.0),
                )
            })),
        })
        .collect();
    let gpus = line_chart("GPUs in use per queue", "hours", "GPUs", (x0, x1), &series);
    let pending = [Series {
        label: "pending",
        points: steps(
            tl.iter()
                .map(|p| (p.time as f64 / 3600.0, p.pending as f64)),
        ),
    }];
    let queue = line_chart(
        "Queue length",
        "hours",
        "pending workloads",
        (x0, x1),
        &pending,
    );
    (gpus, queue)
}

/// Builds a scheduler for a cluster spec with `config`.
pub fn scheduler_for(
    spec: &ClusterSpec,
    config: SchedulerConfig,
) -> Result<Scheduler, ScenarioError> {
    Ok(Scheduler::from_spec(spec, config)?)
}

//! `GET /api/workloads/{id}/explain`: why a workload waits and when it will start, or where it
//! runs and why that node won.
//!
//! A waiting workload is explained by the stage that holds it (admission, the filters with how
//! many nodes each rejected and why, or its spec), its position in its queue and overall (the
//! runner's order), and an estimated start from a forward simulation: the runner's own placement
//! step ([`schedule::plan`]) is run again each time a workload is expected to end, running work
//! ending at its start plus its time limit (or, without one, the median runtime of earlier runs of
//! the same owner, queue and name). A placed workload is explained by its node, GPUs and start, and
//! the policy's scores of the machine's nodes for its spec, computed when asked.
//!
//! [`explain`] is pure: the state and the time are inputs.

use crate::admission::{self, Quotas, Shares};
use crate::api::{Shared, need, principal, workload_id};
use crate::error::{ApiError, ErrorBody};
use crate::runner::{limit_ms, now_ms, taken_of, work_of};
use crate::schedule::{self, Decision, Machine, Taken, Work};
use axum::extract::{Path, Request, State};
use axum::routing::get;
use axum::{Json, Router};
use gantry_core::filter::{Rejection, filter};
use gantry_core::model::{GpuModels, ModelSet, Pod};
use gantry_core::policies::ScoreContext;
use gantry_core::spec::QueueSpec;
use gantry_core::{EngineConfig, Policy};
use gantry_store::{ListQuery, Order, UnixMillis, Workload, WorkloadId, WorkloadState};
use serde::Serialize;
use std::collections::HashMap;
use utoipa::{OpenApi, ToSchema};

/// How the basis of an exact start begins.
const AT_THE_LATEST: &str = "at the latest: ";
/// How the basis of an estimated start begins.
const ESTIMATED: &str = "estimated: ";
/// How many pending workloads ahead of one the simulation places at most.
const MAX_AHEAD: usize = 1_000;
/// How many pending workloads after it the simulation places too (they may take GPUs first).
const MAX_BEHIND: usize = 200;
/// How many forward steps the simulation takes before it gives up (each step ends a workload).
const MAX_STEPS: usize = 2_000;
/// How many nodes `topScores` lists.
const TOP_SCORES: usize = 3;
/// How many earlier runs of a workload are read to learn runtimes.
const HISTORY: usize = 2_000;

/// Why a workload waits, or where it runs.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Workload id (`wl-<n>`).
    pub id: String,
    /// Its state (`pending`, `running`, ...).
    pub state: String,
    /// What holds it or where it is: `admission`, `filter`, `spec`, `placing` (fits now),
    /// `scheduled`, `running` or `finished`.
    pub stage: String,
    /// The explanation for people, several lines.
    pub summary: String,
    /// Why it waits, one entry per stage and filter.
    pub reasons: Vec<Reason>,
    /// Its place in the order of pending work (waiting workloads only).
    pub position: Option<Position>,
    /// When it is expected to start (waiting workloads only).
    pub estimated_start: Option<EstimatedStart>,
    /// Where it runs or ran (placed workloads only).
    pub placement: Option<PlacementView>,
}

/// One reason a workload waits.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reason {
    /// The stage: `admission`, `filter`, `spec` or `preemption`.
    pub stage: String,
    /// The filter (`gpu_model`, `gpu_count`, `gpu_free`, `cpu`, `memory`), for the filter stage.
    pub filter: Option<String>,
    /// How many nodes this reason rejected (0 when it is not about nodes).
    pub nodes: u32,
    /// What failed, e.g. `1 free GPU, needs 2`.
    pub reason: String,
}

/// Place of a pending workload in the runner's order (1 = next).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// Among the pending workloads of its queue.
    pub queue: u32,
    /// Among all pending workloads.
    pub overall: u32,
}

/// How much an estimated start can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Every workload it waits for has a time limit: it starts at the latest then.
    Exact,
    /// Some runtimes are learnt from earlier runs.
    Estimate,
    /// Something it waits for has no time limit and no history.
    Unknown,
}

/// The expected start of a waiting workload.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EstimatedStart {
    /// When, Unix ms (null when unknown).
    pub at_ms: Option<i64>,
    /// Seconds from now (null when unknown).
    pub in_seconds: Option<i64>,
    /// How sure it is.
    pub confidence: Confidence,
    /// What it is based on, one sentence.
    pub basis: String,
}

/// A node and the policy's score of it for a workload.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeScore {
    /// Engine node (`<machine>/<model>`).
    pub node: String,
    /// The policy's score (higher wins).
    pub score: f64,
}

/// Where a workload runs or ran.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementView {
    /// Engine node (`<machine>/<model>`; the machine for CPU-only work).
    pub node: String,
    /// GPUs as `index:uuid` (`index:uuid:milli` for a share).
    pub gpus: Vec<String>,
    /// When it started, Unix ms.
    pub started_at_ms: Option<i64>,
    /// The feasible nodes' scores for its spec, best first, computed now with its own GPUs free.
    pub top_scores: Vec<NodeScore>,
}

/// The server's state at one instant: everything [`explain`] reads.
pub struct Snapshot<'a> {
    /// This machine.
    pub machine: &'a Machine,
    /// The active placement policy.
    pub policy: Policy,
    /// Workloads holding GPUs (scheduled or running).
    pub running: &'a [Workload],
    /// Pending workloads.
    pub pending: &'a [Workload],
    /// Finished workloads to learn runtimes from (the succeeded ones count).
    pub history: &'a [Workload],
    /// The runner's reasons for pending workloads it could not start.
    pub waiting: &'a HashMap<WorkloadId, String>,
    /// Running workloads being preempted (raw id), with the time each is gone at the latest (ms).
    pub stopping: &'a HashMap<i64, UnixMillis>,
    /// The declared queues (empty = every queue unlimited).
    pub queues: &'a [QueueSpec],
    /// Now, Unix ms.
    pub now_ms: UnixMillis,
}

/// How long a workload is expected to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runtime {
    /// Its time limit, ms (it is stopped then).
    Limit(i64),
    /// The median of `runs` earlier runs, ms.
    Typical { ms: i64, runs: usize },
    /// Nothing known.
    Unknown,
}

/// How long `w` runs: its time limit, else the median runtime of succeeded runs of the same owner,
/// queue and name in `history`.
fn runtime(w: &Workload, history: &[Workload]) -> Runtime {
    if let Some(ms) = limit_ms(w) {
        return Runtime::Limit(ms);
    }
    let mut runs: Vec<i64> = history
        .iter()
        .filter(|h| {
            h.id != w.id
                && h.state == WorkloadState::Succeeded
                && h.owner == w.owner
                && h.queue == w.queue
                && h.name == w.name
        })
        .filter_map(|h| Some(h.finished_at? - h.started_at?))
        .filter(|d| *d >= 0)
        .collect();
    if runs.is_empty() {
        return Runtime::Unknown;
    }
    runs.sort_unstable();
    let n = runs.len();
    let ms = if n % 2 == 1 {
        runs[n / 2]
    } else {
        (runs[n / 2 - 1] + runs[n / 2]) / 2
    };
    Runtime::Typical { ms, runs: n }
}

/// What a reason held back for the head-of-line reservation says (see [`crate::backfill`]).
const RESERVED_FOR: &str = "nodes can take it without delaying wl-";

/// True when the runner's reason is not the engine's (`0/N nodes ...`): admission held it.
fn is_admission(reason: &str) -> bool {
    !reason.starts_with("0/")
}

/// `pending` in the runner's order ([`schedule::order_key`]: priority, the queue's fair-share
/// standing, submission, id), over stored workloads so that those the engine cannot take keep their
/// place too.
fn ordered<'a>(pending: &'a [Workload], shares: &Shares) -> Vec<&'a Workload> {
    let mut order: Vec<&Workload> = pending.iter().collect();
    order.sort_by_key(|w| order_key(w, shares));
    order
}

/// Where `w` sorts in the runner's order (smaller first).
fn order_key(w: &Workload, shares: &Shares) -> (std::cmp::Reverse<i64>, u64, i64, i64) {
    let share = shares.get(&w.queue).copied().unwrap_or(0.0);
    schedule::order_key(w.priority, share, w.submitted_at, w.id.raw())
}

/// Each queue's fair-share standing with the snapshot's running work.
fn standing(snap: &Snapshot<'_>) -> Shares {
    let models = snap.machine.models();
    let running: Vec<Work> = snap
        .running
        .iter()
        .filter_map(|w| work_of(w, &models).ok())
        .collect();
    admission::shares(snap.queues, snap.machine, &running)
}

/// `n node(s)`.
fn nodes_text(n: u32) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

/// The allowed models of `set` by name (`[A100-40GB, H100-80GB]`).
fn model_names(set: ModelSet, models: &GpuModels) -> String {
    let names: Vec<&str> = set.iter().map(|m| models.name(m)).collect();
    format!("[{}]", names.join(", "))
}

/// One rejection in words, naming the resource and the constraint.
pub fn rejection_text(r: &Rejection, pod: &Pod, models: &GpuModels) -> String {
    let plural = |n: u32, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    match *r {
        Rejection::Cpu { need, free } => format!("{free}m CPU free, needs {need}m"),
        Rejection::Memory { need, free } => format!("{free} MiB memory free, needs {need} MiB"),
        Rejection::GpuModel { node_model: None } => "no GPU".into(),
        Rejection::GpuModel {
            node_model: Some(_),
        } => {
            format!("model not in {}", model_names(pod.models, models))
        }
        Rejection::GpuCount { need, has } => {
            format!("{}, needs {need}", plural(has, "GPU in all", "GPUs in all"))
        }
        Rejection::GpuFree {
            need,
            milli_per_gpu,
            fitting,
        } => {
            if milli_per_gpu >= 1000 {
                format!("{}, needs {need}", plural(fitting, "free GPU", "free GPUs"))
            } else {
                format!(
                    "{} with {milli_per_gpu}m free, needs {need}",
                    plural(fitting, "GPU", "GPUs")
                )
            }
        }
    }
}

/// The filter stage over `nodes` for `pod`: for each (filter, reason), how many nodes it rejected.
pub fn filter_reasons(nodes: &[gantry_core::Node], pod: &Pod, models: &GpuModels) -> Vec<Reason> {
    let mut out: Vec<Reason> = Vec::new();
    for node in nodes {
        let Err(r) = filter(node, pod) else { continue };
        let (name, text) = (r.filter_name(), rejection_text(&r, pod, models));
        match out
            .iter_mut()
            .find(|x| x.filter.as_deref() == Some(name) && x.reason == text)
        {
            Some(x) => x.nodes += 1,
            None => out.push(Reason {
                stage: "filter".into(),
                filter: Some(name.into()),
                nodes: 1,
                reason: text,
            }),
        }
    }
    out
}

/// The reasons as one line: `2 nodes: model ... not in [...]; 1 node: 1 free GPU, needs 2`.
pub fn reasons_line(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(|r| {
            if r.nodes > 0 {
                format!("{}: {}", nodes_text(r.nodes), r.reason)
            } else {
                r.reason.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A workload in the simulation that holds GPUs until `end`.
struct Holding {
    id: WorkloadId,
    work: Work,
    taken: Vec<Taken>,
    /// Expected end, ms (None: unknown).
    end: Option<i64>,
    runtime: Runtime,
}

/// The outcome of the forward simulation for one workload.
struct Forecast {
    start: EstimatedStart,
    /// The pending workloads placed ahead of it in the first cycle, with their GPUs (what the
    /// filters see at its turn).
    ahead_now: Vec<(Work, Vec<Taken>)>,
    /// Whether it fits in the first cycle.
    fits_now: bool,
}

/// `ms` as `1h 5m`, `9m 30s` or `45s`.
pub fn span(ms: i64) -> String {
    let s = (ms.max(0) + 999) / 1000;
    let (d, h, m, sec) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    // The two largest units, the second left out when zero: `1h`, `1h 5m`, `9m 30s`.
    let two = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua} {b}{ub}")
        }
    };
    if d > 0 {
        two(d, "d", h, "h")
    } else if h > 0 {
        two(h, "h", m, "m")
    } else if m > 0 {
        two(m, "m", sec, "s")
    } else {
        format!("{sec}s")
    }
}

/// Unix ms as `2026-11-25 23:10:00 UTC`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

/// A list of ids, at most three named.
fn some_ids(ids: &[WorkloadId]) -> String {
    let mut names: Vec<String> = ids.iter().take(3).map(|i| i.to_string()).collect();
    if ids.len() > 3 {
        names.push(format!("{} more", ids.len() - 3));
    }
    names.join(", ")
}

/// Runs the runner's placement forward from `snap` until `target` starts.
fn forecast(target: &Workload, target_work: &Work, snap: &Snapshot<'_>) -> Forecast {
    let now = snap.now_ms;
    let models = snap.machine.models();
    let by_id: HashMap<i64, &Workload> = snap.pending.iter().map(|w| (w.id.raw(), w)).collect();
    let mut active: Vec<Holding> = snap
        .running
        .iter()
        .filter_map(|w| {
            let work = work_of(w, &models).ok()?;
            let started = w.started_at.unwrap_or(now);
            // A workload being preempted is gone by its SIGKILL deadline.
            let rt = match snap.stopping.get(&w.id.raw()) {
                Some(gone) => Runtime::Limit(gone.saturating_sub(started).max(0)),
                None => runtime(w, snap.history),
            };
            let end = match rt {
                Runtime::Limit(ms) | Runtime::Typical { ms, .. } => {
                    Some(started.saturating_add(ms).max(now))
                }
                Runtime::Unknown => None,
            };
            Some(Holding {
                id: w.id,
                work,
                taken: taken_of(w, snap.machine),
                end,
                runtime: rt,
            })
        })
        .collect();
    // Pending work the runner places: not held by admission, with a spec the engine can take; all
    // of it ahead of the target (at most MAX_AHEAD) and the next MAX_BEHIND, which may take GPUs
    // it cannot use yet.
    let shares = standing(snap);
    let order: Vec<&Workload> = ordered(snap.pending, &shares)
        .into_iter()
        .filter(|w| w.id != target.id && !snap.waiting.get(&w.id).is_some_and(|r| is_admission(r)))
        .collect();
    let ahead = order
        .iter()
        .take_while(|w| order_key(w, &shares) < order_key(target, &shares))
        .count();
    if ahead > MAX_AHEAD {
        return Forecast {
            start: EstimatedStart {
                at_ms: None,
                in_seconds: None,
                confidence: Confidence::Unknown,
                basis: format!(
                    "{ahead} workloads are ahead of it: more than the {MAX_AHEAD} simulated"
                ),
            },
            ahead_now: Vec::new(),
            fits_now: false,
        };
    }
    let mut queue: Vec<Work> = order
        .iter()
        .take(ahead + MAX_BEHIND)
        .filter_map(|w| work_of(w, &models).ok())
        .collect();
    queue.push(target_work.clone());
    let mut waited: Vec<(WorkloadId, Runtime)> = Vec::new();
    let mut ahead_now = Vec::new();
    let mut t = now;
    for step in 0..MAX_STEPS {
        let holding: Vec<(Work, Vec<Taken>)> = active
            .iter()
            .map(|h| (h.work.clone(), h.taken.clone()))
            .collect();
        let held: Vec<Work> = holding.iter().map(|(w, _)| w.clone()).collect();
        let mut quotas = Quotas::new(snap.queues, snap.machine, &held);
        let decisions = schedule::plan(snap.machine, &holding, &queue, snap.policy, &mut quotas, t);
        let mut before_target = true;
        for (raw, decision) in decisions {
            if raw == target.id.raw() {
                if matches!(decision, Decision::Place(_)) {
                    return Forecast {
                        start: found(t, now, &waited),
                        ahead_now,
                        fits_now: step == 0,
                    };
                }
                before_target = false;
                continue;
            }
            let Decision::Place(taken) = decision else {
                continue;
            };
            let Some(w) = by_id.get(&raw) else { continue };
            let Some(pos) = queue.iter().position(|q| q.id == raw) else {
                continue;
            };
            let mut work = queue.remove(pos);
            work.started_at = Some(t);
            if step == 0 && before_target {
                ahead_now.push((work.clone(), taken.clone()));
            }
            let rt = runtime(w, snap.history);
            let end = match rt {
                Runtime::Limit(ms) | Runtime::Typical { ms, .. } => Some(t.saturating_add(ms)),
                Runtime::Unknown => None,
            };
            active.push(Holding {
                id: w.id,
                work,
                taken,
                end,
                runtime: rt,
            });
        }
        let Some(next) = active.iter().filter_map(|h| h.end).min() else {
            let unknown: Vec<WorkloadId> = active.iter().map(|h| h.id).collect();
            let basis = if unknown.is_empty() {
                "it does not fit on this machine even when every GPU is free".to_string()
            } else {
                format!(
                    "it waits for {} with no time limit and no finished run of the same owner, queue and name to learn from",
                    some_ids(&unknown)
                )
            };
            return Forecast {
                start: EstimatedStart {
                    at_ms: None,
                    in_seconds: None,
                    confidence: Confidence::Unknown,
                    basis,
                },
                ahead_now,
                fits_now: false,
            };
        };
        t = t.max(next);
        let (done, rest): (Vec<Holding>, Vec<Holding>) =
            active.into_iter().partition(|h| h.end == Some(next));
        waited.extend(done.iter().map(|h| (h.id, h.runtime)));
        active = rest;
    }
    Forecast {
        start: EstimatedStart {
            at_ms: None,
            in_seconds: None,
            confidence: Confidence::Unknown,
            basis: format!("more than {MAX_STEPS} workloads end before it could start"),
        },
        ahead_now,
        fits_now: false,
    }
}

/// The start at `t`, after the workloads in `waited` ended.
fn found(t: i64, now: i64, waited: &[(WorkloadId, Runtime)]) -> EstimatedStart {
    let at = EstimatedStart {
        at_ms: Some(t),
        in_seconds: Some((t - now + 999).max(0) / 1000),
        confidence: Confidence::Exact,
        basis: String::new(),
    };
    if waited.is_empty() {
        return EstimatedStart {
            basis: "it fits now: the next scheduling cycle starts it".into(),
            ..at
        };
    }
    let ids: Vec<WorkloadId> = waited.iter().map(|w| w.0).collect();
    let learnt: Vec<usize> = waited
        .iter()
        .filter_map(|w| match w.1 {
            Runtime::Typical { runs, .. } => Some(runs),
            _ => None,
        })
        .collect();
    if learnt.is_empty() {
        EstimatedStart {
            confidence: Confidence::Exact,
            basis: format!(
                "{AT_THE_LATEST}it waits for {} to end, and each is stopped at its time limit",
                some_ids(&ids)
            ),
            ..at
        }
    } else {
        EstimatedStart {
            confidence: Confidence::Estimate,
            basis: format!(
                "{ESTIMATED}it waits for {} to end; {} of them have no time limit, so their runtime is the median of earlier runs of the same owner, queue and name ({} runs)",
                some_ids(&ids),
                learnt.len(),
                learnt.iter().sum::<usize>()
            ),
            ..at
        }
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ...
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The GPUs of `w` as the API shows them (`index:uuid`, `index:uuid:milli`).
fn gpu_texts(w: &Workload) -> Vec<String> {
    w.assignment
        .iter()
        .flat_map(|a| a.replicas.iter().flat_map(|r| r.gpus.iter()))
        .map(|g| match (g.uuid.as_deref(), g.milli) {
            (Some(u), Some(m)) => format!("{}:{u}:{m}", g.index),
            (Some(u), None) => format!("{}:{u}", g.index),
            (None, _) => g.index.to_string(),
        })
        .collect()
}

/// Where `w` is placed and the policy's scores of the nodes for it (now, its own GPUs free).
fn placement(w: &Workload, snap: &Snapshot<'_>) -> PlacementView {
    let models = snap.machine.models();
    let others: Vec<(Work, Vec<Taken>)> = snap
        .running
        .iter()
        .filter(|r| r.id != w.id)
        .filter_map(|r| Some((work_of(r, &models).ok()?, taken_of(r, snap.machine))))
        .collect();
    let (cluster, slots_of) = schedule::occupied(snap.machine, &others);
    let taken = taken_of(w, snap.machine);
    let node = taken
        .first()
        .and_then(|t| slots_of.iter().position(|v| v.contains(&t.slot)))
        .and_then(|i| cluster.nodes().get(i))
        .map(|n| n.spec.name.clone())
        .or_else(|| {
            w.assignment
                .as_ref()
                .and_then(|a| a.replicas.first())
                .map(|r| r.node.clone())
        })
        .unwrap_or_else(|| snap.machine.name.clone());
    let mut top_scores = Vec::new();
    if let Ok(work) = work_of(w, &models) {
        let config = EngineConfig::default();
        let ctx = ScoreContext {
            target: &config.target,
            max_cpu_milli: cluster.max_cpu_milli(),
            max_gpu_milli: cluster.max_gpu_milli(),
            gantry: &config.gantry,
        };
        top_scores = cluster
            .nodes()
            .iter()
            .filter(|n| filter(n, &work.pod).is_ok())
            .map(|n| NodeScore {
                node: n.spec.name.clone(),
                score: snap.policy.score(n, &work.pod, &ctx),
            })
            // JSON has no infinities.
            .filter(|s| s.score.is_finite())
            .collect();
        // Stable: equal scores keep cluster order, as the engine's tie-break does.
        top_scores.sort_by(|a, b| b.score.total_cmp(&a.score));
        top_scores.truncate(TOP_SCORES);
    }
    PlacementView {
        node,
        gpus: gpu_texts(w),
        started_at_ms: w.started_at,
        top_scores,
    }
}

/// Explains `w` against `snap`.
pub fn explain(w: &Workload, snap: &Snapshot<'_>) -> Explanation {
    let base = Explanation {
        id: w.id.to_string(),
        state: w.state.as_str().to_string(),
        stage: String::new(),
        summary: String::new(),
        reasons: Vec::new(),
        position: None,
        estimated_start: None,
        placement: None,
    };
    match w.state {
        WorkloadState::Pending | WorkloadState::Admitted => explain_waiting(w, snap, base),
        _ => explain_placed(w, snap, base),
    }
}

fn explain_waiting(w: &Workload, snap: &Snapshot<'_>, mut out: Explanation) -> Explanation {
    let now = snap.now_ms;
    let models = snap.machine.models();
    let order = ordered(snap.pending, &standing(snap));
    let overall = order.iter().position(|p| p.id == w.id).map_or(
        // Not in the list read (it changed meanwhile): after everything.
        order.len() + 1,
        |i| i + 1,
    );
    let queue = order
        .iter()
        .filter(|p| p.queue == w.queue)
        .position(|p| p.id == w.id)
        .map_or(
            order.iter().filter(|p| p.queue == w.queue).count() + 1,
            |i| i + 1,
        );
    let position = Position {
        queue: u32::try_from(queue).unwrap_or(u32::MAX),
        overall: u32::try_from(overall).unwrap_or(u32::MAX),
    };
    out.position = Some(position.clone());
    let mut lines = Vec::new();
    let head = format!("{} ({}) is {}", w.id, w.name, w.state.as_str());
    let position_line = format!(
        "Position: {} in queue {}, {} overall (of {} pending).",
        ordinal(position.queue),
        w.queue,
        ordinal(position.overall),
        snap.pending.len().max(overall)
    );
    let work = match work_of(w, &models) {
        Ok(work) => work,
        Err(why) => {
            out.stage = "spec".into();
            out.reasons.push(Reason {
                stage: "spec".into(),
                filter: None,
                nodes: 0,
                reason: why.clone(),
            });
            out.estimated_start = Some(EstimatedStart {
                at_ms: None,
                in_seconds: None,
                confidence: Confidence::Unknown,
                basis: "its spec cannot be placed on this machine".into(),
            });
            lines.push(format!("{head}: its spec cannot be placed here."));
            lines.push(format!("  {why}"));
            lines.push(position_line);
            lines.push("Estimated start: never, unless this machine changes.".into());
            out.summary = lines.join("\n");
            return out;
        }
    };
    if let Some(reason) = snap.waiting.get(&w.id).filter(|r| is_admission(r)) {
        out.stage = "admission".into();
        out.reasons.push(Reason {
            stage: "admission".into(),
            filter: None,
            nodes: 0,
            reason: reason.clone(),
        });
        out.estimated_start = Some(EstimatedStart {
            at_ms: None,
            in_seconds: None,
            confidence: Confidence::Unknown,
            basis: format!("admission holds it: {reason}"),
        });
        lines.push(format!("{head}: held at admission."));
        lines.push(format!("  {reason}"));
        lines.push(position_line);
        lines.push("Estimated start: unknown until admission lets it through.".into());
        out.summary = lines.join("\n");
        return out;
    }
    let forecast = forecast(w, &work, snap);
    let held = snap
        .waiting
        .get(&w.id)
        .filter(|r| r.contains(RESERVED_FOR))
        .filter(|_| !forecast.fits_now);
    if forecast.fits_now {
        out.stage = "placing".into();
        lines.push(format!(
            "{head}: it fits now; the next scheduling cycle starts it."
        ));
    } else if let Some(reason) = held {
        // It fits, but only on GPUs the head of the queue has reserved.
        out.stage = "reservation".into();
        lines.push(format!("{head}: held back for the head of the queue."));
        lines.push(format!("  {reason}"));
        out.reasons.push(Reason {
            stage: "reservation".into(),
            filter: None,
            nodes: 0,
            reason: reason.clone(),
        });
    } else {
        out.stage = "filter".into();
        let models = snap.machine.models();
        let mut holding: Vec<(Work, Vec<Taken>)> = snap
            .running
            .iter()
            .filter_map(|r| Some((work_of(r, &models).ok()?, taken_of(r, snap.machine))))
            .collect();
        holding.extend(forecast.ahead_now.iter().cloned());
        let (cluster, _) = schedule::occupied(snap.machine, &holding);
        let nodes_total = cluster.nodes().len();
        out.reasons = filter_reasons(cluster.nodes(), &work.pod, &models);
        if out.reasons.is_empty() {
            // Every node passes the filters now: capacity freed since the last cycle.
            lines.push(format!(
                "{head}: a node can take it now; the next scheduling cycle decides."
            ));
        } else {
            lines.push(format!("{head}: held at the filter stage."));
            lines.push(format!(
                "  0/{nodes_total} nodes can take it: {}",
                reasons_line(&out.reasons)
            ));
        }
        let busy = out
            .reasons
            .iter()
            .any(|r| matches!(r.filter.as_deref(), Some("gpu_free" | "cpu" | "memory")));
        let lower = snap
            .running
            .iter()
            .filter(|r| r.priority < w.priority)
            .count();
        let decided = snap
            .waiting
            .get(&w.id)
            .and_then(|r| r.split_once("; preemption: "))
            .map(|(_, p)| p.to_string());
        let reason = match decided.filter(|_| busy) {
            Some(reason) => Some(reason),
            None if busy && lower > 0 => Some(format!(
                "{lower} lower-priority running workload(s) hold resources it needs; the next scheduling cycle decides whether to preempt"
            )),
            None => None,
        };
        if let Some(reason) = reason {
            lines.push(format!("  preemption: {reason}"));
            out.reasons.push(Reason {
                stage: "preemption".into(),
                filter: None,
                nodes: 0,
                reason,
            });
        }
    }
    lines.push(position_line);
    let start = forecast.start;
    lines.push(match (start.confidence, start.at_ms) {
        (_, None) => format!("Estimated start: unknown ({}).", start.basis),
        (Confidence::Exact, Some(at)) if at <= now => {
            "Estimated start: now (within the next scheduling cycle).".to_string()
        }
        (Confidence::Exact, Some(at)) => format!(
            "Estimated start: at the latest {} (in {}). Exact: {}.",
            utc(at),
            span(at - now),
            start
                .basis
                .strip_prefix(AT_THE_LATEST)
                .unwrap_or(&start.basis)
        ),
        (_, Some(at)) => format!(
            "Estimated start: about {} (in {}). Estimate: {}.",
            utc(at),
            span(at - now),
            start.basis.strip_prefix(ESTIMATED).unwrap_or(&start.basis)
        ),
    });
    out.estimated_start = Some(start);
    out.summary = lines.join("\n");
    out
}

fn explain_placed(w: &Workload, snap: &Snapshot<'_>, mut out: Explanation) -> Explanation {
    let now = snap.now_ms;
    let head = format!("{} ({}) is {}", w.id, w.name, w.state.as_str());
    let mut lines = Vec::new();
    if w.assignment.is_none() {
        out.stage = "finished".into();
        let why = w.reason.as_deref().unwrap_or("no reason recorded");
        lines.push(format!("{head}: it never started ({why})."));
        out.summary = lines.join("\n");
        return out;
    }
    let p = placement(w, snap);
    let gpus = if p.gpus.is_empty() {
        "no GPU".to_string()
    } else {
        format!("GPUs {}", p.gpus.join(", "))
    };
    out.stage = match w.state {
        WorkloadState::Scheduled => "scheduled",
        WorkloadState::Running => "running",
        _ => "finished",
    }
    .into();
    match (w.state, w.started_at) {
        (WorkloadState::Scheduled, _) => {
            lines.push(format!("{head}: placed on {}, {gpus}; starting.", p.node));
        }
        (WorkloadState::Running, Some(s)) => {
            lines.push(format!(
                "{head} on {}, {gpus}, since {} ({} ago).",
                p.node,
                utc(s),
                span(now - s)
            ));
            lines.push(match runtime(w, snap.history) {
                Runtime::Limit(ms) => format!(
                    "It ends at the latest {} (time limit {}).",
                    utc(s.saturating_add(ms)),
                    span(ms)
                ),
                Runtime::Typical { ms, runs } => format!(
                    "No time limit; earlier runs took {} (median of {runs}), so it should end about {}.",
                    span(ms),
                    utc(s.saturating_add(ms).max(now))
                ),
                Runtime::Unknown => {
                    "No time limit and no earlier run: its end is unknown.".to_string()
                }
            });
        }
        (_, started) => {
            let ran = match (started, w.finished_at) {
                (Some(s), Some(f)) => format!(", ran {} from {}", span(f - s), utc(s)),
                _ => String::new(),
            };
            let why = w
                .reason
                .as_deref()
                .map_or(String::new(), |r| format!(" ({r})"));
            lines.push(format!("{head}{why}{ran} on {}, {gpus}.", p.node));
        }
    }
    if matches!(snap.policy, Policy::Random | Policy::RoundRobin) {
        lines.push(format!(
            "Why there: the {} policy picks among the nodes that fit without scoring them.",
            snap.policy.name()
        ));
    } else if p.top_scores.is_empty() {
        lines.push("Why there: no node fits its spec now, so there is nothing to score.".into());
    } else {
        let scores: Vec<String> = p
            .top_scores
            .iter()
            .map(|s| format!("{} {}", s.node, s.score))
            .collect();
        lines.push(format!(
            "Why there: the {} policy scores (computed now, with its own GPUs free; highest wins): {}.",
            snap.policy.name(),
            scores.join(", ")
        ));
    }
    out.placement = Some(p);
    out.summary = lines.join("\n");
    out
}

/// Routes behind the auth layer.
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/api/workloads/{id}/explain", get(explain_workload))
}

/// Reads the workloads in `state` in pages, at most `cap`.
fn list_all(
    s: &gantry_store::Store,
    state: WorkloadState,
    order: Order,
    cap: usize,
) -> gantry_store::Result<Vec<Workload>> {
    let mut out = Vec::new();
    let mut q = ListQuery {
        state: Some(state),
        limit: 1000,
        order,
        ..ListQuery::default()
    };
    loop {
        let page = s.list(&q)?;
        out.extend(page.items);
        match page.next {
            Some(next) if out.len() < cap => q.after = Some(next),
            _ => break,
        }
    }
    out.truncate(cap);
    Ok(out)
}

/// Why a workload waits and when it will start, or where it runs and why there.
#[utoipa::path(get, path = "/api/workloads/{id}/explain", params(("id" = String, Path, description = "wl-<n>", pattern = "^wl-[1-9][0-9]{0,17}$", example = "wl-1")),
    responses((status = 200, body = Explanation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn explain_workload(
    State(state): State<Shared>,
    Path(raw): Path<String>,
    req: Request,
) -> Result<Json<Explanation>, ApiError> {
    let p = principal(req.extensions());
    need(&p, crate::auth::Permission::ReadWorkloads)?;
    let id = workload_id(&raw)?;
    let (w, running, pending, history) = state
        .db
        .read(move |s| {
            let Some(w) = s.get(id)? else {
                return Ok(None);
            };
            let running = s.running()?;
            let pending = list_all(s, WorkloadState::Pending, Order::OldestFirst, 20_000)?;
            let history = list_all(s, WorkloadState::Succeeded, Order::NewestFirst, HISTORY)?;
            Ok(Some((w, running, pending, history)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workload {id} not found")))?;
    if !p.owns_or_oversees(&w.owner) {
        // Not revealed to other submitters: as if it did not exist.
        return Err(ApiError::not_found(format!("workload {id} not found")));
    }
    let waiting: HashMap<WorkloadId, String> = pending
        .iter()
        .filter_map(|p| Some((p.id, state.runner.waiting_reason(p.id)?)))
        .collect();
    let (machine, policy, now) = (state.runner.machine(), state.runner.policy(), now_ms());
    let stopping = state.runner.stopping();
    let queues = state.runner.queues();
    // The simulation is CPU work: off the async threads.
    let explanation = tokio::task::spawn_blocking(move || {
        let snap = Snapshot {
            machine: &machine,
            policy,
            running: &running,
            pending: &pending,
            history: &history,
            waiting: &waiting,
            stopping: &stopping,
            queues: &queues,
            now_ms: now,
        };
        explain(&w, &snap)
    })
    .await
    .map_err(|e| ApiError::internal(format!("explain failed: {e}")))?;
    Ok(Json(explanation))
}

/// The OpenAPI description of [`routes`].
#[derive(OpenApi)]
#[openapi(
    paths(explain_workload),
    components(schemas(
        Explanation,
        Reason,
        Position,
        Confidence,
        EstimatedStart,
        NodeScore,
        PlacementView
    ))
)]
pub(crate) struct Doc;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Slot;
    use gantry_core::spec::WorkloadSpec;
    use gantry_store::{AssignedGpu, Assignment, ReplicaAssignment};

    const MIN: i64 = 60_000;
    /// A fixed instant (2026-11-25 00:00:00 UTC) the tests count from.
    const T0: i64 = 1_795_564_800_000;

    fn machine(models: &[&str]) -> Machine {
        Machine {
            name: "box".into(),
            slots: models
                .iter()
                .enumerate()
                .map(|(i, m)| Slot {
                    index: i as u32,
                    uuid: format!("GPU-{i}"),
                    model: m.to_string(),
                    healthy: true,
                })
                .collect(),
            cpu_milli: 64_000,
            memory_mib: 256 * 1024,
        }
    }

    /// A workload `id` named `name` asking for `gpu` (JSON), with an optional time limit.
    fn workload(id: i64, name: &str, gpu: serde_json::Value, timeout: Option<&str>) -> Workload {
        let mut spec = serde_json::json!({"name": name, "resources": {"gpu": gpu},
                                          "run": {"command": ["true"]}});
        if let Some(t) = timeout {
            spec["timeout"] = t.into();
        }
        let spec: WorkloadSpec = serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}"));
        Workload {
            id: WorkloadId::from_raw(id).unwrap_or_else(|| panic!("id {id}")),
            name: name.into(),
            owner: "alice".into(),
            queue: "default".into(),
            priority: 0,
            state: WorkloadState::Pending,
            spec,
            assignment: None,
            attempts: 0,
            exit_code: None,
            reason: None,
            submitted_at: T0 + id,
            started_at: None,
            finished_at: None,
            updated_at: T0 + id,
            idempotency_key: None,
        }
    }

    /// `w` running since `started` on GPU slots `slots` of [`machine`].
    fn running(mut w: Workload, started: i64, slots: &[u32]) -> Workload {
        w.state = WorkloadState::Running;
        w.started_at = Some(started);
        w.attempts = 1;
        w.assignment = Some(Assignment {
            replicas: vec![ReplicaAssignment {
                node: "box".into(),
                gpus: slots
                    .iter()
                    .map(|&i| AssignedGpu {
                        index: i,
                        uuid: Some(format!("GPU-{i}")),
                        milli: None,
                        mig: None,
                    })
                    .collect(),
            }],
        });
        w
    }

    /// A succeeded run of `name` that took `minutes`.
    fn finished_run(id: i64, name: &str, minutes: i64) -> Workload {
        let mut w = workload(id, name, serde_json::json!({"count": 1}), None);
        w.state = WorkloadState::Succeeded;
        w.started_at = Some(T0 - 100 * MIN);
        w.finished_at = Some(T0 - 100 * MIN + minutes * MIN);
        w
    }

    static NONE_STOPPING: std::sync::LazyLock<HashMap<i64, i64>> =
        std::sync::LazyLock::new(HashMap::new);

    fn snapshot<'a>(
        m: &'a Machine,
        run: &'a [Workload],
        pending: &'a [Workload],
        history: &'a [Workload],
        waiting: &'a HashMap<WorkloadId, String>,
        now: i64,
    ) -> Snapshot<'a> {
        Snapshot {
            machine: m,
            policy: Policy::BestFit,
            running: run,
            pending,
            history,
            waiting,
            stopping: &NONE_STOPPING,
            queues: &[],
            now_ms: now,
        }
    }

    #[test]
    fn time_limits_give_an_exact_start_at_the_later_end() {
        let m = machine(&["H100-80GB"; 2]);
        let gpu1 = serde_json::json!({"count": 1});
        // Started at T0 with 10 min, and at T0+5 min with 30 min: they end at T0+10 and T0+35.
        let run = [
            running(workload(1, "a", gpu1.clone(), Some("10m")), T0, &[0]),
            running(workload(2, "b", gpu1, Some("30m")), T0 + 5 * MIN, &[1]),
        ];
        let pending = [workload(3, "big", serde_json::json!({"count": 2}), None)];
        let waiting = HashMap::new();
        let now = T0 + 6 * MIN;
        let x = explain(
            &pending[0],
            &snapshot(&m, &run, &pending, &[], &waiting, now),
        );
        assert_eq!(x.stage, "filter");
        let s = x.estimated_start.clone().unwrap_or_else(|| panic!("{x:?}"));
        assert_eq!(s.at_ms, Some(T0 + 35 * MIN));
        assert_eq!(s.in_seconds, Some(29 * 60));
        assert_eq!(s.confidence, Confidence::Exact);
        assert!(s.basis.contains("at the latest"), "{}", s.basis);
        assert!(s.basis.contains("wl-1, wl-2"), "{}", s.basis);
        assert_eq!(
            x.position,
            Some(Position {
                queue: 1,
                overall: 1
            })
        );
        assert!(
            x.summary
                .contains("at the latest 2026-11-25 00:35:00 UTC (in 29m). Exact: it waits"),
            "{}",
            x.summary
        );
        // One free GPU then none: the filter names the count.
        assert_eq!(
            reasons_line(&x.reasons),
            "1 node: 0 free GPUs, needs 2",
            "{x:?}"
        );
    }

    #[test]
    fn history_gives_an_estimate_and_nothing_gives_unknown() {
        let m = machine(&["H100-80GB"; 2]);
        let gpu1 = serde_json::json!({"count": 1});
        let run = [
            running(workload(1, "a", gpu1.clone(), None), T0, &[0]),
            running(workload(2, "b", gpu1, None), T0, &[1]),
        ];
        let pending = [workload(3, "big", serde_json::json!({"count": 2}), None)];
        // a: 4 and 6 min (median 5); b: 10, 20, 30 min (median 20).
        let history = [
            finished_run(10, "a", 4),
            finished_run(11, "a", 6),
            finished_run(12, "b", 10),
            finished_run(13, "b", 30),
            finished_run(14, "b", 20),
        ];
        let waiting = HashMap::new();
        let now = T0 + MIN;
        let snap = snapshot(&m, &run, &pending, &history, &waiting, now);
        let s = explain(&pending[0], &snap)
            .estimated_start
            .unwrap_or_else(|| panic!("no estimate"));
        assert_eq!(s.at_ms, Some(T0 + 20 * MIN));
        assert_eq!(s.in_seconds, Some(19 * 60));
        assert_eq!(s.confidence, Confidence::Estimate);
        assert!(s.basis.contains("median"), "{}", s.basis);

        // Without history only a's end is known: b's is not, so neither is the start.
        let history = [finished_run(10, "a", 4)];
        let snap = snapshot(&m, &run, &pending, &history, &waiting, now);
        let x = explain(&pending[0], &snap);
        let s = x.estimated_start.unwrap_or_else(|| panic!("no estimate"));
        assert_eq!(s.confidence, Confidence::Unknown);
        assert_eq!((s.at_ms, s.in_seconds), (None, None));
        assert!(s.basis.contains("wl-2"), "{}", s.basis);
        assert!(
            x.summary.contains("Estimated start: unknown"),
            "{}",
            x.summary
        );
    }

    #[test]
    fn work_ahead_is_placed_first_and_counts_in_the_position() {
        let m = machine(&["H100-80GB"; 2]);
        let run = [running(
            workload(1, "a", serde_json::json!({"count": 2}), Some("10m")),
            T0,
            &[0, 1],
        )];
        // wl-2 (2 GPUs, 1 h) is ahead of wl-3 in the same queue: wl-3 starts when wl-2 ends.
        let mut ahead = workload(2, "ahead", serde_json::json!({"count": 2}), Some("1h"));
        ahead.queue = "other".into();
        let mut pending = vec![
            ahead,
            workload(3, "mine", serde_json::json!({"count": 1}), None),
        ];
        // A higher-priority workload submitted later goes first.
        let mut urgent = workload(4, "urgent", serde_json::json!({"count": 1}), Some("5m"));
        urgent.priority = 100;
        pending.push(urgent);
        let waiting = HashMap::new();
        let snap = snapshot(&m, &run, &pending, &[], &waiting, T0);
        let x = explain(&pending[1], &snap);
        assert_eq!(
            x.position,
            Some(Position {
                queue: 2,
                overall: 3
            })
        );
        // At T0+10: urgent (1 GPU, 5 min) starts; ahead (2 GPUs) does not fit and reserves both
        // GPUs for T0+15; mine (1 GPU, no time limit) may not take the free one (it would delay
        // ahead), so it starts when ahead's hour ends: T0+75, exact.
        let s = x.estimated_start.unwrap_or_else(|| panic!("no estimate"));
        assert_eq!(s.at_ms, Some(T0 + 75 * MIN), "{}", s.basis);
        assert_eq!(s.confidence, Confidence::Exact);
        let x = explain(&pending[0], &snap);
        // ahead starts as soon as urgent's 5 minutes end: the reservation keeps mine off its GPUs.
        let s = x.estimated_start.unwrap_or_else(|| panic!("no estimate"));
        assert_eq!(s.at_ms, Some(T0 + 15 * MIN), "{}", s.basis);
        assert_eq!(s.confidence, Confidence::Exact, "{}", s.basis);
    }

    #[test]
    fn the_filter_text_counts_nodes_per_reason() {
        let m = machine(&["H100-80GB", "L4", "T4", "A100-40GB", "A100-40GB"]);
        let run = [running(
            workload(
                1,
                "hold",
                serde_json::json!({"count": 1, "models": ["A100-40GB"]}),
                None,
            ),
            T0,
            &[3],
        )];
        let pending = [workload(
            2,
            "wants-a100",
            serde_json::json!({"count": 2, "models": ["A100-40GB"]}),
            None,
        )];
        let waiting = HashMap::new();
        let x = explain(
            &pending[0],
            &snapshot(&m, &run, &pending, &[], &waiting, T0),
        );
        assert_eq!(x.stage, "filter");
        assert_eq!(
            reasons_line(&x.reasons),
            "3 nodes: model not in [A100-40GB]; 1 node: 1 free GPU, needs 2"
        );
        assert_eq!(x.reasons[0].filter.as_deref(), Some("gpu_model"));
        assert_eq!(x.reasons[0].nodes, 3);
        assert_eq!(x.reasons[1].filter.as_deref(), Some("gpu_free"));
        assert!(
            x.summary.contains("0/4 nodes can take it: 3 nodes: model"),
            "{}",
            x.summary
        );
        // A share asks for free milli, not free GPUs.
        let pod = Pod {
            cpu_milli: 0,
            memory_mib: 0,
            gpu: gantry_core::GpuDemand::Share(600),
            models: ModelSet::ANY,
        };
        let r = Rejection::GpuFree {
            need: 1,
            milli_per_gpu: 600,
            fitting: 0,
        };
        assert_eq!(
            rejection_text(&r, &pod, &m.models()),
            "0 GPUs with 600m free, needs 1"
        );
    }

    #[test]
    fn admission_and_fits_now_are_their_own_stages() {
        let m = machine(&["H100-80GB"; 2]);
        let pending = [workload(1, "w", serde_json::json!({"count": 1}), None)];
        let mut waiting = HashMap::new();
        let snap = snapshot(&m, &[], &pending, &[], &waiting, T0);
        let x = explain(&pending[0], &snap);
        assert_eq!(x.stage, "placing");
        let s = x.estimated_start.unwrap_or_else(|| panic!("no estimate"));
        assert_eq!((s.at_ms, s.confidence), (Some(T0), Confidence::Exact));

        waiting.insert(
            pending[0].id,
            "queue default is over its hard budget cap".to_string(),
        );
        let snap = snapshot(&m, &[], &pending, &[], &waiting, T0);
        let x = explain(&pending[0], &snap);
        assert_eq!(x.stage, "admission");
        assert_eq!(x.reasons[0].stage, "admission");
        assert!(x.reasons[0].reason.contains("budget"));
        assert_eq!(
            x.estimated_start.map(|s| s.confidence),
            Some(Confidence::Unknown)
        );
    }

    #[test]
    fn a_running_workload_shows_its_node_and_the_scores() {
        let m = machine(&["H100-80GB", "H100-80GB", "A100-40GB", "A100-40GB"]);
        let run = [running(
            workload(1, "r", serde_json::json!({"count": 1}), Some("1h")),
            T0,
            &[2],
        )];
        let waiting = HashMap::new();
        let snap = snapshot(&m, &run, &[], &[], &waiting, T0 + 5 * MIN);
        let x = explain(&run[0], &snap);
        assert_eq!(x.stage, "running");
        let p = x.placement.unwrap_or_else(|| panic!("no placement"));
        assert_eq!(p.node, "box/A100-40GB");
        assert_eq!(p.gpus, vec!["2:GPU-2".to_string()]);
        assert_eq!(p.started_at_ms, Some(T0));
        // Both nodes fit a 1-GPU spec; scores are best first.
        assert_eq!(p.top_scores.len(), 2, "{:?}", p.top_scores);
        assert!(p.top_scores[0].score >= p.top_scores[1].score);
        assert!(
            x.summary.contains("since 2026-11-25 00:00:00 UTC (5m ago)"),
            "{}",
            x.summary
        );
        assert!(
            x.summary.contains("at the latest 2026-11-25 01:00:00 UTC"),
            "{}",
            x.summary
        );
        assert!(x.summary.contains("best_fit"), "{}", x.summary);
        assert_eq!(x.position, None);
        assert_eq!(x.estimated_start, None);
    }

    #[test]
    fn a_long_queue_is_simulated_to_its_end_or_refused() {
        let m = machine(&["H100-80GB"; 2]);
        let gpu1 = serde_json::json!({"count": 1});
        // 1000 one-minute jobs ahead on 2 GPUs: two start each minute, so the 1001st at 500 min.
        let mut pending: Vec<Workload> = (1..=1000)
            .map(|i| workload(i, "step", gpu1.clone(), Some("1m")))
            .collect();
        pending.push(workload(1001, "last", gpu1.clone(), None));
        let waiting = HashMap::new();
        let snap = snapshot(&m, &[], &pending, &[], &waiting, T0);
        let started = std::time::Instant::now();
        let x = explain(&pending[1000], &snap);
        eprintln!("1000 ahead simulated in {:?}", started.elapsed());
        let s = x.estimated_start.unwrap_or_else(|| panic!("no estimate"));
        assert_eq!(s.at_ms, Some(T0 + 500 * MIN));
        assert_eq!(s.confidence, Confidence::Exact);
        assert_eq!(x.position.map(|p| p.overall), Some(1001));
        // One more ahead is past what is simulated: unknown, and said so.
        pending.insert(0, workload(1002, "first", gpu1, Some("1m")));
        pending[0].submitted_at = T0 - 1;
        let snap = snapshot(&m, &[], &pending, &[], &waiting, T0);
        let s = explain(&pending[1001], &snap)
            .estimated_start
            .unwrap_or_else(|| panic!("no estimate"));
        assert_eq!(s.confidence, Confidence::Unknown);
        assert!(s.basis.contains("1001 workloads are ahead"), "{}", s.basis);
    }

    #[test]
    fn dates_and_spans_read_well() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(T0 + 35 * MIN + 7_000), "2026-11-25 00:35:07 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(span(45_000), "45s");
        assert_eq!(span(29 * MIN), "29m");
        assert_eq!(span(29 * MIN + 3_000), "29m 3s");
        assert_eq!(span(60 * MIN), "1h");
        assert_eq!(span(65 * MIN), "1h 5m");
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(23), "23rd");
    }
}

//! `GET /api/costs/findings`: what to change, with the money it saves. Underused GPUs, right-sizing
//! advice checked by replaying the window in the simulator, and spot-tolerant work that ran on
//! on-demand capacity (see `gantry_cost::findings` and docs/cost.md).

use crate::api::{Shared, need, principal, query_error};
use crate::auth::{Permission, Role};
use crate::costs::{History, load_history, runs_of, usage_of_history};
use crate::error::{ApiError, ErrorBody};
use crate::runner::now_ms;
use crate::schedule::Machine;
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::routing::get;
use gantry_core::spec::SpotPolicy;
use gantry_cost::findings::model_memory_mib;
use gantry_cost::{Catalogue, ReplayGpus, Request as GpuRequest, Usage, Window, WorkloadFacts};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Routes behind the auth layer.
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/api/costs/findings", get(findings))
}

/// The OpenAPI description of [`routes`].
#[derive(OpenApi)]
#[openapi(
    paths(findings),
    components(schemas(Findings, UnderusedGpuView, RightSizingView, ReplayView, SpotView))
)]
pub(crate) struct Doc;

/// Query of `GET /api/costs/findings`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FindingsParams {
    /// How far back from now: `24h`, `7d`, `30d`, ... (default `7d`).
    #[param(
        pattern = "^\\s*(0*[1-9][0-9]{0,5}w([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?|0*[1-9][0-9]{0,5}d([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?|0*[1-9][0-9]{0,5}h([0-9]{1,6}m)?([0-9]{1,6}s)?|0*[1-9][0-9]{0,5}m([0-9]{1,6}s)?|0*[1-9][0-9]{0,5}s)\\s*$"
    )]
    pub window: Option<String>,
    /// Utilisation percentage under which a GPU counts as underused (default 30).
    #[param(minimum = 0, maximum = 100)]
    pub idle_threshold: Option<f64>,
}

/// A GPU whose mean utilisation over its allocated time was under the threshold.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnderusedGpuView {
    /// GPU UUID.
    pub gpu: String,
    /// Model key.
    pub model: String,
    /// Mean utilisation over its allocated time, percent.
    pub mean_utilization: f64,
    /// GPU-hours allocated in the window.
    pub allocated_hours: f64,
    /// Cost of the allocated time under the threshold (decimal string).
    pub idle_cost: String,
    /// `idleCost` scaled to 30 days.
    pub monthly_waste: String,
}

/// What the simulator's two replays of the window found.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayView {
    /// GPUs the jobs need at peak as submitted.
    pub gpus_before: u32,
    /// GPUs they need at peak with the advice.
    pub gpus_after: u32,
    /// The difference.
    pub gpus_freed: u32,
    /// Runs that would not have started on time with the advice.
    pub delayed_after: u32,
    /// For a move to another GPU model: that model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_model: Option<String>,
    /// For a move to another GPU model: the GPUs of it the runs need at peak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_gpus: Option<u32>,
}

/// Workloads with the same right-sizing advice.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RightSizingView {
    /// Workload ids.
    pub workloads: Vec<String>,
    /// Their request now (`H100-80GB: 1 whole GPU`).
    pub from: String,
    /// The advised request (`3g.40gb`, `share 200m (5 GiB)`).
    pub to: String,
    /// Saving per month at the window's usage (decimal string).
    pub saving_per_month: String,
    /// The replay that checked it.
    pub replay: ReplayView,
    /// The advice in one sentence.
    pub message: String,
}

/// A spot-tolerant workload that ran on on-demand capacity.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpotView {
    /// Workload id.
    pub workload: String,
    /// Queue.
    pub queue: String,
    /// Its on-demand cost in the window.
    pub on_demand_cost: String,
    /// The same time at the spot price.
    pub spot_cost: String,
    /// The difference scaled to 30 days.
    pub saving_per_month: String,
}

/// Findings over a window.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Findings {
    /// The window asked for (`7d`).
    pub window: String,
    /// Window start, Unix ms.
    pub from_ms: i64,
    /// Window end (the request's time), Unix ms.
    pub to_ms: i64,
    /// Currency of every amount.
    pub currency: String,
    /// The threshold used, percent.
    pub idle_threshold: f64,
    /// Underused GPUs, most idle cost first.
    pub underused_gpus: Vec<UnderusedGpuView>,
    /// Right-sizing advice, most GPUs freed first.
    pub right_sizing: Vec<RightSizingView>,
    /// Spot candidates, most saving first.
    pub spot_candidates: Vec<SpotView>,
}

/// Underused GPUs, right-sizing advice (checked by replaying the window in the simulator) and spot
/// candidates over a window. A submitter sees findings about its own workloads only.
#[utoipa::path(get, path = "/api/costs/findings", params(FindingsParams), responses((status = 200, body = Findings), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn findings(
    State(state): State<Shared>,
    query: Result<Query<FindingsParams>, QueryRejection>,
    req: Request,
) -> Result<Json<Findings>, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::ReadCluster)?;
    let Query(q) = query.map_err(query_error)?;
    let (window_text, window, idle_threshold) =
        crate::costs::window_params(q.window, q.idle_threshold, now_ms())?;
    let Window { from_ms, to_ms } = window;
    let owner = (p.role == Role::Submitter).then(|| p.name.clone());
    let history = load_history(&state, owner, window).await?;
    let machine = state.runner.machine();
    let memory: BTreeMap<String, u64> = crate::api::lock(&state.gpus)
        .snapshots
        .iter()
        .map(|s| (s.device.uuid.clone(), s.device.memory_total_mib))
        .collect();
    let catalogue = state.prices.clone();
    let report = tokio::task::spawn_blocking(move || {
        compute(
            &history,
            &machine,
            &memory,
            window,
            &catalogue,
            idle_threshold,
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("findings: {e}")))?;
    Ok(Json(Findings {
        window: window_text,
        from_ms,
        to_ms,
        currency: state.prices.currency().to_string(),
        idle_threshold,
        ..report
    }))
}

/// The findings of a loaded history (pure; the replays run here).
pub fn compute(
    history: &History,
    machine: &Machine,
    memory_by_uuid: &BTreeMap<String, u64>,
    window: Window,
    catalogue: &Catalogue,
    idle_threshold: f64,
) -> Findings {
    let usage = usage_of_history(history, machine, window);
    let facts = facts_of(history, &usage, window);
    let inventory = inventory_of(machine, memory_by_uuid);
    let underused = gantry_cost::underused_gpus(&usage, window, catalogue, idle_threshold);
    let advice = gantry_cost::right_sizing(&facts, &usage, &inventory, window, catalogue);
    let spot = gantry_cost::spot_candidates(&facts, &usage, window, catalogue);
    Findings {
        window: String::new(),
        from_ms: window.from_ms,
        to_ms: window.to_ms,
        currency: catalogue.currency().to_string(),
        idle_threshold,
        underused_gpus: underused
            .into_iter()
            .map(|g| UnderusedGpuView {
                gpu: g.gpu,
                model: g.model,
                mean_utilization: g.mean_utilization,
                allocated_hours: g.allocated_hours,
                idle_cost: g.idle_cost.to_string(),
                monthly_waste: g.monthly_waste.to_string(),
            })
            .collect(),
        right_sizing: advice
            .into_iter()
            .map(|a| RightSizingView {
                workloads: a.workloads,
                from: a.from,
                to: a.to,
                saving_per_month: a.saving_per_month.to_string(),
                replay: ReplayView {
                    gpus_before: a.replay.gpus_before,
                    gpus_after: a.replay.gpus_after,
                    gpus_freed: a.replay.gpus_freed,
                    delayed_after: a.replay.delayed_after,
                    target_model: a.replay.target_model,
                    target_gpus: a.replay.target_gpus,
                },
                message: a.message,
            })
            .collect(),
        spot_candidates: spot
            .into_iter()
            .map(|s| SpotView {
                workload: s.workload,
                queue: s.queue,
                on_demand_cost: s.on_demand_cost.to_string(),
                spot_cost: s.spot_cost.to_string(),
                saving_per_month: s.saving_per_month.to_string(),
            })
            .collect(),
    }
}

/// Each workload's facts: the model it ran on, its request, peak memory, runs and spot policy.
fn facts_of(history: &History, usage: &[Usage], window: Window) -> Vec<WorkloadFacts> {
    let mut model_of: BTreeMap<&str, &str> = BTreeMap::new();
    for u in usage {
        model_of.entry(&u.workload).or_insert(&u.model);
    }
    history
        .workloads
        .iter()
        .filter_map(|w| {
            let id = w.id.to_string();
            let model = model_of.get(id.as_str())?.to_string();
            let gpu = w.spec.resources.gpu.as_ref()?;
            let request = if let Some(p) = &gpu.mig {
                GpuRequest::Mig(p.clone())
            } else if let Some(m) = gpu.share {
                GpuRequest::Share {
                    milli: u32::try_from(m).unwrap_or(0),
                    memory_mib: gpu.memory.as_ref().and_then(|q| q.mib().ok()).unwrap_or(0),
                }
            } else {
                let per_replica = u32::try_from(gpu.count.unwrap_or(1)).unwrap_or(1);
                GpuRequest::Whole(
                    per_replica.saturating_mul(u32::try_from(w.spec.replicas.max(1)).unwrap_or(1)),
                )
            };
            let events = history.events.get(&w.id).map_or(&[][..], Vec::as_slice);
            Some(WorkloadFacts {
                queue: w.queue.clone(),
                model,
                request,
                peak_memory_mib: history
                    .peak_memory
                    .get(&w.id)
                    .map(|b| b.div_ceil(1024 * 1024)),
                runs: runs_of(w, events, window.to_ms),
                spot_tolerant: w.spec.spot != SpotPolicy::Never,
                id,
            })
        })
        .collect()
}

/// The machine's GPUs per model, with their memory (from telemetry, else from the model key).
fn inventory_of(machine: &Machine, memory_by_uuid: &BTreeMap<String, u64>) -> Vec<ReplayGpus> {
    let mut out: Vec<ReplayGpus> = Vec::new();
    for s in &machine.slots {
        let memory = memory_by_uuid
            .get(&s.uuid)
            .copied()
            .filter(|&m| m > 0)
            .unwrap_or_else(|| model_memory_mib(&s.model));
        match out.iter_mut().find(|g| g.model == s.model) {
            Some(g) => g.count += 1,
            None => out.push(ReplayGpus {
                model: s.model.clone(),
                count: 1,
                memory_mib: memory,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_store::{
        AssignedGpu, Assignment, Event, ReplicaAssignment, SampleBucket, Workload, WorkloadId,
        WorkloadState, actions,
    };

    const H: i64 = 3_600_000;

    fn machine() -> Machine {
        crate::schedule::test_machine(4, "H100-80GB", 8000, 65536)
    }

    fn workload(id: i64, gpu: u32, spot: &str) -> (Workload, Vec<Event>) {
        let spec = serde_json::from_value(serde_json::json!({
            "name": format!("w{id}"), "resources": {"gpu": {"count": 1}}, "spot": spot,
            "run": {"command": ["true"]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let wid = WorkloadId::from_raw(id).unwrap_or_else(|| panic!("id"));
        let w = Workload {
            id: wid,
            name: format!("w{id}"),
            owner: "ann".into(),
            queue: "research".into(),
            priority: 0,
            state: WorkloadState::Succeeded,
            spec,
            assignment: Some(Assignment {
                replicas: vec![ReplicaAssignment {
                    node: "box".into(),
                    gpus: vec![AssignedGpu {
                        index: gpu,
                        uuid: Some(format!("GPU-{gpu}")),
                        ..AssignedGpu::default()
                    }],
                }],
            }),
            attempts: 1,
            exit_code: Some(0),
            reason: None,
            submitted_at: 0,
            started_at: Some(0),
            finished_at: Some(2 * H),
            updated_at: 2 * H,
            idempotency_key: None,
        };
        let t = |seq, from, to, at| Event {
            seq,
            workload: Some(wid),
            subject: None,
            actor: "scheduler".into(),
            action: actions::TRANSITION.into(),
            from_state: Some(from),
            to_state: Some(to),
            reason: None,
            at,
        };
        let events = vec![
            t(1, WorkloadState::Scheduled, WorkloadState::Running, 0),
            t(2, WorkloadState::Running, WorkloadState::Succeeded, 2 * H),
        ];
        (w, events)
    }

    /// Four H100 jobs at once for 2 h, each peaking at 30 GiB and idle at 10 %: every GPU is
    /// underused, the four move to 3g.40gb (two to a GPU: 4 GPUs -> 2), and the spot-tolerant one
    /// is a spot candidate.
    #[test]
    fn findings_of_a_small_history() {
        let mut h = History {
            bucket_ms: H,
            ..History::default()
        };
        for i in 0..4 {
            let (w, e) = workload(i + 1, i as u32, if i == 0 { "allow" } else { "never" });
            h.events.insert(w.id, e);
            h.peak_memory.insert(w.id, 30 * 1024 * 1024 * 1024);
            for b in [0, H] {
                h.buckets.push(SampleBucket {
                    start: b,
                    gpu_uuid: format!("GPU-{i}"),
                    workload: Some(w.id),
                    held_milli: Some(1000),
                    mean_utilization_pct: Some(10.0),
                    max_memory_used_bytes: Some(30 * 1024 * 1024 * 1024),
                    count: 1800,
                });
            }
            h.workloads.push(w);
        }
        let catalogue = Catalogue::from_yaml(
            "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 7.00, source: t, date: 2026-01-01}\n  - {model: H100-80GB, pool: spot, per_gpu_hour: 2.80, source: t, date: 2026-01-01}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let window = Window {
            from_ms: 0,
            to_ms: 24 * H,
        };
        let f = compute(&h, &machine(), &BTreeMap::new(), window, &catalogue, 30.0);
        assert_eq!(f.underused_gpus.len(), 4);
        // 2 h x 7.00 = 14.00 idle per GPU; x 30 = 420.00 a month.
        assert_eq!(f.underused_gpus[0].idle_cost, "14.00");
        assert_eq!(f.underused_gpus[0].monthly_waste, "420.00");
        assert_eq!(f.right_sizing.len(), 1);
        let a = &f.right_sizing[0];
        assert_eq!(a.to, "3g.40gb");
        assert_eq!(
            (
                a.replay.gpus_before,
                a.replay.gpus_after,
                a.replay.gpus_freed
            ),
            (4, 2, 2)
        );
        // 4 x 14.00 x 4/7 = 32.00 a day = 960.00 a month.
        assert_eq!(a.saving_per_month, "960.00");
        assert_eq!(f.spot_candidates.len(), 1);
        assert_eq!(f.spot_candidates[0].workload, "wl-1");
        // 2 h: 14.00 on demand, 5.60 at spot; 8.40 a day = 252.00 a month.
        assert_eq!(f.spot_candidates[0].saving_per_month, "252.00");
    }
}

//! Cost in CRD status: the controller's side of [`crate::cost`].
//!
//! - Prices: the ConfigMap of [`PricesConfigMap`] is read at most every [`PRICES_RECHECK`] (parsed only
//!   when its `resourceVersion` changed); a bad file is logged and reported as a Warning Event
//!   (`InvalidPrices`) on the ConfigMap, once per version, and the last good catalogue stays in force.
//! - `GPUWorkload.status.cost`: computed when the workload finishes, and while it runs at most once
//!   per [`COST_REFRESH`] (the controller requeues running workloads that often).
//! - `GPUQueue.status.spentThisMonth`: the month-to-date cost of the queue's workloads, rewritten after
//!   one of its workloads' cost changed, at most once per [`COST_REFRESH`] per queue (at once when a
//!   workload finished), and only when it changed.

use super::{Context, FIELD_MANAGER};
use crate::cost::{NodeGpuMap, month_name, queue_spend, workload_cost};
use crate::crd::{GPUNode, GPUQueue, GPUQueueStatus, GPUWorkload, GPUWorkloadStatus};
use crate::keys;
use crate::prices::PriceUpdate;
use gantry_cost::Catalogue;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tracing::{info, warn};

/// Least time between two cost updates of a running workload (and of a queue's spend).
pub const COST_REFRESH: Duration = Duration::from_secs(60);
/// Least time between two reads of the prices ConfigMap.
pub const PRICES_RECHECK: Duration = Duration::from_secs(30);

/// Whether `since` is at least `every` before `now`.
fn elapsed(since: Timestamp, now: Timestamp, every: Duration) -> bool {
    now.duration_since(since) >= SignedDuration::try_from(every).unwrap_or(SignedDuration::MAX)
}

/// The prices in force, re-reading the ConfigMap when [`PRICES_RECHECK`] has passed since the last
/// read (or `force`). A failed read keeps the catalogue in force.
pub async fn refresh_prices(ctx: &Context, force: bool) -> Catalogue {
    let now = (ctx.clock)();
    let due = force
        || ctx
            .prices
            .lock()
            .map(|p| p.1.is_none_or(|t| elapsed(t, now, PRICES_RECHECK)))
            .unwrap_or(true);
    if due {
        let source = &ctx.prices_source;
        match source.fetch(ctx.client.clone()).await {
            Ok(cm) => {
                let update = match ctx.prices.lock() {
                    Ok(mut p) => {
                        p.1 = Some(now);
                        p.0.apply(cm.as_ref(), &source.key)
                    }
                    Err(_) => PriceUpdate::Unchanged,
                };
                match update {
                    PriceUpdate::Unchanged => {}
                    PriceUpdate::Loaded => info!(
                        configmap = %format!("{}/{}", source.namespace, source.name),
                        "prices loaded (merged over the shipped defaults)"
                    ),
                    PriceUpdate::Defaults => info!(
                        configmap = %format!("{}/{}", source.namespace, source.name),
                        "no prices in the ConfigMap: the shipped defaults are in force"
                    ),
                    PriceUpdate::Invalid(problem) => {
                        warn!(
                            configmap = %format!("{}/{}", source.namespace, source.name),
                            "invalid prices, keeping the last good ones: {problem}"
                        );
                        if let Some(cm) = &cm {
                            let ev = Event {
                                type_: EventType::Warning,
                                reason: "InvalidPrices".into(),
                                note: Some(format!(
                                    "{problem}; the last good prices stay in force"
                                )),
                                action: "LoadPrices".into(),
                                secondary: None,
                            };
                            if let Err(e) = ctx.recorder.publish(&ev, &cm.object_ref(&())).await {
                                warn!("publishing event InvalidPrices: {e}");
                            }
                        }
                    }
                }
            }
            Err(e) => warn!("reading the prices ConfigMap: {e}"),
        }
    }
    ctx.prices
        .lock()
        .map(|p| p.0.catalogue.clone())
        .unwrap_or_default()
}

/// The GPUs of every node: `GPUNode` statuses and the `gantry.dev/gpu-model` labels of Nodes, cached
/// for [`COST_REFRESH`] unless one of `needed` is missing from the cache.
async fn node_gpus(ctx: &Context, needed: &BTreeSet<String>) -> Result<NodeGpuMap, kube::Error> {
    let now = (ctx.clock)();
    if let Ok(cache) = ctx.node_gpus.lock()
        && let Some((at, map)) = cache.as_ref()
        && !elapsed(*at, now, COST_REFRESH)
        && needed.iter().all(|n| map.nodes.contains_key(n))
    {
        return Ok(map.clone());
    }
    let gpu_nodes = Api::<GPUNode>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default().labels(keys::NODE_GPU_MODEL))
        .await?
        .items;
    let map = NodeGpuMap::from_objects(&gpu_nodes, &nodes);
    if let Ok(mut cache) = ctx.node_gpus.lock() {
        *cache = Some((now, map.clone()));
    }
    Ok(map)
}

/// Whether the workload's cost is due: it ran, and either it finished after the cost was last
/// computed, or it runs and [`COST_REFRESH`] has passed.
fn cost_due(status: &GPUWorkloadStatus, now: Timestamp) -> bool {
    if status.start_time.is_none() {
        return false;
    }
    let updated = status
        .cost
        .as_ref()
        .and_then(|c| c.updated_at.parse::<Timestamp>().ok());
    let Some(updated) = updated else {
        return true;
    };
    if status.phase.is_some_and(|p| p.is_finished()) {
        let done = status
            .completion_time
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok());
        return done.is_some_and(|d| updated < d);
    }
    elapsed(updated, now, COST_REFRESH)
}

/// Sets `status.cost` when it is due ([`cost_due`]); returns whether it changed. A failed read of
/// the nodes is logged and leaves the cost as it was (tried again on the next pass).
pub async fn update_workload_cost(
    ctx: &Context,
    wl: &GPUWorkload,
    status: &mut GPUWorkloadStatus,
    now: Timestamp,
) -> bool {
    if !cost_due(status, now) {
        return false;
    }
    let needed: BTreeSet<String> = status
        .replicas
        .iter()
        .filter_map(|r| r.node.clone())
        .collect();
    let gpus = match node_gpus(ctx, &needed).await {
        Ok(g) => g,
        Err(e) => {
            warn!(workload = %wl.name_any(), "reading GPU models for the cost: {e}");
            return false;
        }
    };
    let catalogue = refresh_prices(ctx, false).await;
    let mut current = wl.clone();
    current.status = Some(status.clone());
    let cost = workload_cost(&current, &gpus, &catalogue, now);
    let changed = cost != status.cost;
    status.cost = cost;
    changed
}

/// The queue status for `spend` (the month-to-date analysis of its workloads).
fn queue_status(spend: &gantry_cost::Analysis, now: Timestamp) -> GPUQueueStatus {
    let priced = spend.groups.iter().any(|g| g.cost.is_some()) || spend.groups.is_empty();
    GPUQueueStatus {
        spent_this_month: priced.then(|| spend.total.to_string()),
        currency: Some(spend.currency.clone()),
        month: Some(month_name(now)),
        gpu_hours: (spend.gpu_hours * 10_000.0).round() / 10_000.0,
        unpriced_models: spend.unknown_models(),
        updated_at: Some(now.to_string()),
    }
}

/// Rewrites queue `name`'s month-to-date spend when due (`force`, or [`COST_REFRESH`] since the last
/// write) and changed. A queue without a `GPUQueue` object has no status to write. Failures are logged.
pub async fn update_queue_spend(ctx: &Context, name: &str, now: Timestamp, force: bool) {
    let due = force
        || ctx
            .queue_spend_at
            .lock()
            .map(|m| m.get(name).is_none_or(|t| elapsed(*t, now, COST_REFRESH)))
            .unwrap_or(true);
    if !due {
        return;
    }
    if let Err(e) = write_queue_spend(ctx, name, now).await {
        warn!(queue = %name, "updating the month-to-date spend: {e}");
    }
}

async fn write_queue_spend(ctx: &Context, name: &str, now: Timestamp) -> Result<(), kube::Error> {
    let queues: Api<GPUQueue> = Api::all(ctx.client.clone());
    let Some(queue) = queues.get_opt(name).await? else {
        return Ok(());
    };
    let workloads = Api::<GPUWorkload>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let needed: BTreeSet<String> = workloads
        .iter()
        .filter(|w| w.spec.queue_name() == name)
        .filter_map(|w| w.status.as_ref())
        .flat_map(|s| s.replicas.iter().filter_map(|r| r.node.clone()))
        .collect();
    let gpus = node_gpus(ctx, &needed).await?;
    let catalogue = refresh_prices(ctx, false).await;
    let spend = queue_spend(name, &workloads, &gpus, &catalogue, now);
    let status = queue_status(&spend, now);
    let same = queue.status.as_ref().is_some_and(|s| {
        GPUQueueStatus {
            updated_at: status.updated_at.clone(),
            ..s.clone()
        } == status
    });
    if let Ok(mut m) = ctx.queue_spend_at.lock() {
        m.insert(name.to_string(), now);
    }
    if same {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": GPUQueue::api_version(&()),
        "kind": GPUQueue::kind(&()),
        "metadata": {"name": name},
        "status": status,
    });
    queues
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::WorkloadCost;
    use crate::crd::WorkloadPhase;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn status(phase: WorkloadPhase, cost_at: Option<&str>) -> GPUWorkloadStatus {
        GPUWorkloadStatus {
            phase: Some(phase),
            start_time: Some("2026-11-25T10:00:00Z".into()),
            completion_time: phase
                .is_finished()
                .then(|| "2026-11-25T11:00:00Z".to_string()),
            cost: cost_at.map(|at| WorkloadCost {
                updated_at: at.into(),
                ..WorkloadCost::default()
            }),
            ..GPUWorkloadStatus::default()
        }
    }

    #[test]
    fn cost_is_due_at_most_once_a_minute_while_running_and_once_at_the_end() {
        let now = t("2026-11-25T10:30:00Z");
        assert!(cost_due(&status(WorkloadPhase::Running, None), now));
        assert!(!cost_due(
            &status(WorkloadPhase::Running, Some("2026-11-25T10:29:30Z")),
            now
        ));
        assert!(cost_due(
            &status(WorkloadPhase::Running, Some("2026-11-25T10:29:00Z")),
            now
        ));
        // Finished after the last update: due once, then final.
        let later = t("2026-11-25T12:00:00Z");
        assert!(cost_due(
            &status(WorkloadPhase::Succeeded, Some("2026-11-25T10:59:00Z")),
            later
        ));
        assert!(!cost_due(
            &status(WorkloadPhase::Succeeded, Some("2026-11-25T11:00:00Z")),
            later
        ));
        // Never started: no cost.
        let mut never = status(WorkloadPhase::Failed, None);
        never.start_time = None;
        assert!(!cost_due(&never, later));
    }
}

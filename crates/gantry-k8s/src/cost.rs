//! Cost of GPU workloads on Kubernetes, with the standalone server's arithmetic: usage intervals
//! ([`Usage`]) built from each workload's assignment, priced by [`gantry_cost::analyse`] (exact
//! integer arithmetic, rounded once to the cent, unknown models reported and never priced at zero).
//!
//! - A replica's GPUs are the scheduler's `gantry.dev/assigned-gpus` annotation mirrored in
//!   `status.replicas[].gpus`: `0,1` (whole GPUs), `2:250` (a 250-milli share), `3:3g.40gb@4` (a MIG
//!   instance of 3 compute slices of 7). Without it, the spec's demand (count, share or MIG profile).
//! - A GPU's model is the node's `GPUNode` status (`gpus[index].model`), else the Node's
//!   `gantry.dev/gpu-model` label, else `unknown` (unpriced).
//! - The interval is `status.startTime` to `status.completionTime`, or to now while it runs.
//! - Owner is the namespace; workload keys are `namespace/name`. Pool is on-demand.

use crate::crd::{GPUNode, GPUWorkload, GPUWorkloadSpec, WorkloadCost};
use crate::keys;
use gantry_cost::{Analysis, Catalogue, GpuFraction, GroupBy, Pool, Usage, Window, analyse};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::civil::Time;
use k8s_openapi::jiff::tz::TimeZone;
use kube::ResourceExt;
use serde::Serialize;
use std::collections::BTreeMap;

/// The price catalogue and grouping of [`cost_report`], for callers without a `gantry-cost` dependency.
pub use gantry_cost::{Catalogue as PriceCatalogue, GroupBy as CostGroupBy};

/// Model name for a GPU whose node says nothing about its model (always unpriced).
pub const UNKNOWN_MODEL: &str = "unknown";

/// One GPU of a node, from its `GPUNode` status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuInfo {
    /// Model key (`H100-80GB`).
    pub model: String,
    /// Device UUID.
    pub uuid: String,
    /// Last reported utilisation, percent.
    pub utilization: Option<f64>,
}

/// What is known of one node's GPUs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeGpus {
    /// The GPUs by index, from the `GPUNode` status.
    pub gpus: Vec<GpuInfo>,
    /// The node's `gantry.dev/gpu-model` label (when it has no `GPUNode` entries).
    pub label_model: Option<String>,
}

/// The GPUs of every node, by node name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeGpuMap {
    /// Node name to its GPUs.
    pub nodes: BTreeMap<String, NodeGpus>,
}

impl NodeGpuMap {
    /// From the `GPUNode`s (node: `spec.nodeName`, else the object's name) and the Nodes' labels.
    pub fn from_objects(gpu_nodes: &[GPUNode], nodes: &[Node]) -> NodeGpuMap {
        let mut map = NodeGpuMap::default();
        for n in nodes {
            if let Some(model) = n.labels().get(keys::NODE_GPU_MODEL) {
                map.nodes.entry(n.name_any()).or_default().label_model = Some(model.clone());
            }
        }
        for g in gpu_nodes {
            let name = g.spec.node_name.clone().unwrap_or_else(|| g.name_any());
            let mut devices: Vec<_> = g.status.iter().flat_map(|s| s.gpus.iter()).collect();
            devices.sort_by_key(|d| d.index);
            map.nodes.entry(name).or_default().gpus = devices
                .into_iter()
                .map(|d| GpuInfo {
                    model: d.model.clone(),
                    uuid: d.uuid.clone(),
                    utilization: d.utilization,
                })
                .collect();
        }
        map
    }

    /// The model of GPU `index` on `node` (`None` index: the node's first GPU), [`UNKNOWN_MODEL`]
    /// when nothing says.
    pub fn model(&self, node: &str, index: Option<usize>) -> String {
        let Some(n) = self.nodes.get(node) else {
            return UNKNOWN_MODEL.to_string();
        };
        index
            .and_then(|i| n.gpus.get(i))
            .or_else(|| n.gpus.first())
            .map(|g| g.model.clone())
            .filter(|m| !m.trim().is_empty())
            .or_else(|| n.label_model.clone())
            .unwrap_or_else(|| UNKNOWN_MODEL.to_string())
    }

    /// GPU `index` of `node`, when its `GPUNode` lists it.
    pub fn gpu(&self, node: &str, index: Option<usize>) -> Option<&GpuInfo> {
        self.nodes.get(node)?.gpus.get(index?)
    }
}

/// One assigned GPU: its index on the node (absent when unknown) and the fraction held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssignedFraction {
    /// GPU index on the node.
    pub index: Option<usize>,
    /// The part of that GPU held.
    pub fraction: GpuFraction,
}

/// Compute slices of a MIG profile (`3g.40gb` is 3 of 7); `None` when it is not a profile.
fn mig_slices(profile: &str) -> Option<u32> {
    profile.split_once('g').and_then(|(n, _)| n.parse().ok())
}

/// Parses an assigned-GPUs annotation (`0,1`, `2:250`, `3:3g.40gb@4`); `None` when malformed.
pub fn parse_assigned(text: &str) -> Option<Vec<AssignedFraction>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (index, rest) = match part.split_once(':') {
            Some((i, r)) => (i, Some(r)),
            None => (part, None),
        };
        let index: usize = index.parse().ok()?;
        let fraction = match rest {
            None => GpuFraction::whole(),
            Some(r) if r.contains('@') => {
                let (profile, _) = r.split_once('@')?;
                GpuFraction::mig_slices(mig_slices(profile)?)
            }
            Some(r) => GpuFraction::milli(r.parse().ok()?),
        };
        out.push(AssignedFraction {
            index: Some(index),
            fraction,
        });
    }
    Some(out)
}

/// One replica's GPUs as its spec asks for them (when the assignment is not known).
pub fn demanded(spec: &GPUWorkloadSpec) -> Vec<AssignedFraction> {
    let Some(g) = &spec.resources.gpu else {
        return Vec::new();
    };
    let one = |fraction| AssignedFraction {
        index: None,
        fraction,
    };
    if let Some(c) = g.count {
        return (0..c.max(0)).map(|_| one(GpuFraction::whole())).collect();
    }
    if let Some(s) = g.share {
        return vec![one(GpuFraction::milli(u32::try_from(s).unwrap_or(0)))];
    }
    if let Some(slices) = g.mig.as_deref().and_then(mig_slices) {
        return vec![one(GpuFraction::mig_slices(slices))];
    }
    Vec::new()
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn ms(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// The workload's key in cost reports: `namespace/name`.
pub fn workload_key(wl: &GPUWorkload) -> String {
    format!("{}/{}", wl.namespace().unwrap_or_default(), wl.name_any())
}

/// The usage intervals of a workload: one per assigned GPU of each bound replica, from its start to
/// its completion (or `now` while it runs). Utilisation is the node's current figure while it runs.
pub fn usage_of(wl: &GPUWorkload, gpus: &NodeGpuMap, now: Timestamp) -> Vec<Usage> {
    let Some(status) = &wl.status else {
        return Vec::new();
    };
    let Some(start) = status.start_time.as_deref().and_then(ms) else {
        return Vec::new();
    };
    let finished = status.phase.is_some_and(|p| p.is_finished());
    let end = if finished {
        status.completion_time.as_deref().and_then(ms)
    } else {
        Some(now.as_millisecond())
    };
    let Some(end) = end.filter(|&e| e > start) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in &status.replicas {
        let Some(node) = r.node.as_deref() else {
            continue;
        };
        let held = r
            .gpus
            .as_deref()
            .and_then(parse_assigned)
            .unwrap_or_else(|| demanded(&wl.spec));
        for a in held {
            let gpu = gpus.gpu(node, a.index);
            out.push(Usage {
                workload: workload_key(wl),
                owner: wl.namespace().unwrap_or_default(),
                queue: wl.spec.queue_name().to_string(),
                model: gpus.model(node, a.index),
                gpu: gpu.map(|g| g.uuid.clone()).unwrap_or_default(),
                pool: Pool::OnDemand,
                gpu_fraction: a.fraction,
                start_ms: start,
                end_ms: end,
                mean_utilization: if finished {
                    None
                } else {
                    gpu.and_then(|g| g.utilization)
                },
            });
        }
    }
    out
}

/// Idle threshold used where only totals matter (it does not change a total).
const NO_IDLE: f64 = 0.0;

/// GPU-hours rounded to 4 decimals (0.36 s of one GPU), so the status does not carry float noise.
fn round_hours(h: f64) -> f64 {
    (h * 10_000.0).round() / 10_000.0
}

/// The workload's cost now (`None` when it never ran). `amount` is absent when nothing could be priced.
pub fn workload_cost(
    wl: &GPUWorkload,
    gpus: &NodeGpuMap,
    catalogue: &Catalogue,
    now: Timestamp,
) -> Option<WorkloadCost> {
    let status = wl.status.as_ref()?;
    let start = status.start_time.as_deref().and_then(ms)?;
    let usage = usage_of(wl, gpus, now);
    let end = usage.iter().map(|u| u.end_ms).max().unwrap_or(start);
    let window = Window {
        from_ms: start,
        to_ms: end.max(start + 1),
    };
    let a = analyse(&usage, window, catalogue, GroupBy::Workload, NO_IDLE).ok()?;
    let priced = a.groups.iter().any(|g| g.cost.is_some());
    Some(WorkloadCost {
        gpu_hours: round_hours(a.gpu_hours),
        amount: priced.then(|| a.total.to_string()),
        currency: a.currency.clone(),
        unpriced_models: a.unknown_models(),
        updated_at: now.to_string(),
    })
}

/// The first instant of `now`'s calendar month, UTC.
pub fn month_start(now: Timestamp) -> Timestamp {
    let date = now.to_zoned(TimeZone::UTC).date().first_of_month();
    date.to_datetime(Time::midnight())
        .to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(now)
}

/// `now`'s calendar month, `YYYY-MM` (UTC).
pub fn month_name(now: Timestamp) -> String {
    now.to_zoned(TimeZone::UTC).strftime("%Y-%m").to_string()
}

/// A queue's spend over `[month start, now)`: the cost of its workloads' usage clipped to the month.
pub fn queue_spend(
    queue: &str,
    workloads: &[GPUWorkload],
    gpus: &NodeGpuMap,
    catalogue: &Catalogue,
    now: Timestamp,
) -> Analysis {
    let usage: Vec<Usage> = workloads
        .iter()
        .filter(|w| w.spec.queue_name() == queue)
        .flat_map(|w| usage_of(w, gpus, now))
        .collect();
    let window = Window {
        from_ms: month_start(now).as_millisecond(),
        to_ms: now.as_millisecond(),
    };
    let window = Window {
        to_ms: window.to_ms.max(window.from_ms + 1),
        ..window
    };
    match analyse(&usage, window, catalogue, GroupBy::Queue, NO_IDLE) {
        Ok(a) => a,
        // The window is never empty and the threshold is in range: this arm is not reached.
        Err(_) => empty_analysis(window, catalogue),
    }
}

/// An analysis with nothing in it.
fn empty_analysis(window: Window, catalogue: &Catalogue) -> Analysis {
    Analysis {
        window,
        group_by: GroupBy::Queue,
        currency: catalogue.currency().to_string(),
        idle_threshold: NO_IDLE,
        total: gantry_cost::Money::default(),
        idle_total: gantry_cost::Money::default(),
        gpu_hours: 0.0,
        groups: Vec::new(),
        unpriced: Vec::new(),
    }
}

/// One group of [`CostReport`] (the fields of `GET /api/costs/analysis`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostReportGroup {
    /// The queue, owner (namespace), workload (`namespace/name`) or GPU model.
    pub key: String,
    /// Its cost; null when none of its usage could be priced.
    pub cost: Option<String>,
    /// The part of `cost` on GPUs under the idle threshold.
    pub idle_cost: Option<String>,
    /// GPU-hours held in the window.
    pub gpu_hours: f64,
    /// The part of `gpu_hours` without a price.
    pub unpriced_gpu_hours: f64,
}

/// Usage of a model without a price (the fields of `GET /api/costs/analysis`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostReportUnpriced {
    /// The model key.
    pub model: String,
    /// The pool.
    pub pool: String,
    /// GPU-hours on it in the window.
    pub gpu_hours: f64,
    /// The workloads that used it.
    pub workloads: Vec<String>,
}

/// A cost analysis in the JSON shape of the standalone server's `GET /api/costs/analysis`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostReport {
    /// The window asked for (`7d`).
    pub window: String,
    /// Window start, Unix ms (inclusive).
    pub from_ms: i64,
    /// Window end, Unix ms (exclusive).
    pub to_ms: i64,
    /// What the groups are keyed by.
    pub group_by: String,
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// The idle threshold used, percent.
    pub idle_threshold: f64,
    /// Total cost of priced usage.
    pub total: String,
    /// Idle part of the total.
    pub idle_total: String,
    /// GPU-hours in the window, priced or not.
    pub gpu_hours: f64,
    /// The groups, most expensive first.
    pub groups: Vec<CostReportGroup>,
    /// Models with usage but no price.
    pub unknown_models: Vec<String>,
    /// That usage in detail.
    pub unpriced: Vec<CostReportUnpriced>,
}

/// What [`cost_report`] refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    /// The window text is not a duration, or is zero.
    #[error("--window: {0}")]
    Window(String),
    /// The idle threshold is not a percentage, or the window is empty.
    #[error("{0}")]
    Account(#[from] gantry_cost::AccountError),
}

/// The cost of `workloads` over the `window` (`7d`) ending `now`, grouped by `group_by`.
pub fn cost_report(
    workloads: &[GPUWorkload],
    gpus: &NodeGpuMap,
    catalogue: &Catalogue,
    window: &str,
    group_by: GroupBy,
    idle_threshold: f64,
    now: Timestamp,
) -> Result<CostReport, ReportError> {
    let secs = gantry_core::spec::Duration(window.to_string())
        .seconds()
        .map_err(|e| ReportError::Window(format!("{window:?}: {e}")))?;
    if secs == 0 {
        return Err(ReportError::Window(
            "must be longer than zero (e.g. 7d)".into(),
        ));
    }
    let to_ms = now.as_millisecond();
    let from_ms =
        to_ms.saturating_sub(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    let usage: Vec<Usage> = workloads
        .iter()
        .flat_map(|w| usage_of(w, gpus, now))
        .collect();
    let a = analyse(
        &usage,
        Window { from_ms, to_ms },
        catalogue,
        group_by,
        idle_threshold,
    )?;
    Ok(CostReport {
        window: window.to_string(),
        from_ms,
        to_ms,
        group_by: group_by.to_string(),
        currency: a.currency.clone(),
        idle_threshold,
        total: a.total.to_string(),
        idle_total: a.idle_total.to_string(),
        gpu_hours: a.gpu_hours,
        unknown_models: a.unknown_models(),
        groups: a
            .groups
            .into_iter()
            .map(|g| CostReportGroup {
                key: g.key,
                cost: g.cost.map(|m| m.to_string()),
                idle_cost: g.idle_cost.map(|m| m.to_string()),
                gpu_hours: g.gpu_hours,
                unpriced_gpu_hours: g.unpriced_gpu_hours,
            })
            .collect(),
        unpriced: a
            .unpriced
            .into_iter()
            .map(|u| CostReportUnpriced {
                model: u.model,
                pool: u.pool.to_string(),
                gpu_hours: u.gpu_hours,
                workloads: u.workloads,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        GPUDeviceStatus, GPUNodeSpec, GPUNodeStatus, GPUWorkloadStatus, ReplicaStatus,
        WorkloadPhase,
    };

    const START: &str = "2026-11-25T10:00:00Z";

    fn at(text: &str) -> Timestamp {
        text.parse().expect("time")
    }

    /// Prices of 2.00 per GPU-hour for H100 and A100 (on-demand), the rest the shipped defaults.
    fn catalogue() -> Catalogue {
        Catalogue::with_overrides(
            "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 2.00, source: t, date: 2026-11-01}\n  - {model: A100-80GB, pool: on-demand, per_gpu_hour: 2.00, source: t, date: 2026-11-01}\n",
        )
        .expect("prices")
    }

    fn node(name: &str, model: &str, count: u32, util: Option<f64>) -> GPUNode {
        let mut n = GPUNode::new(name, GPUNodeSpec::default());
        n.status = Some(GPUNodeStatus {
            gpus: (0..count)
                .map(|i| GPUDeviceStatus {
                    index: i,
                    model: model.into(),
                    utilization: util,
                    healthy: true,
                    ..GPUDeviceStatus::default()
                })
                .collect(),
            gpu_count: count,
            ..GPUNodeStatus::default()
        });
        n
    }

    fn gpus() -> NodeGpuMap {
        NodeGpuMap::from_objects(
            &[
                node("h100-a", "H100-80GB", 8, Some(90.0)),
                node("a100-a", "A100-80GB", 8, Some(5.0)),
                node("b999", "B999-1TB", 8, None),
            ],
            &[],
        )
    }

    /// A workload of `queue` on `node` with `assigned` GPUs, started at [`START`], finished at `end`
    /// (running when `None`).
    fn workload(
        name: &str,
        queue: &str,
        gpu: &str,
        node: &str,
        assigned: &str,
        end: Option<&str>,
    ) -> GPUWorkload {
        let spec: GPUWorkloadSpec = serde_saphyr::from_str(&format!(
            "queue: {queue}\nresources: {{gpu: {gpu}}}\ntemplate: {{spec: {{containers: [{{name: m, image: x}}]}}}}\n"
        ))
        .expect("spec");
        let mut w = GPUWorkload::new(name, spec);
        w.metadata.namespace = Some("ml".into());
        w.status = Some(GPUWorkloadStatus {
            phase: Some(if end.is_some() {
                WorkloadPhase::Succeeded
            } else {
                WorkloadPhase::Running
            }),
            start_time: Some(START.into()),
            completion_time: end.map(str::to_string),
            replicas: vec![ReplicaStatus {
                index: 0,
                pod: format!("{name}-0"),
                phase: Some("Running".into()),
                node: Some(node.into()),
                gpus: Some(assigned.into()),
            }],
            ..GPUWorkloadStatus::default()
        });
        w
    }

    fn cost(w: &GPUWorkload, now: &str) -> WorkloadCost {
        workload_cost(w, &gpus(), &catalogue(), at(now)).expect("cost")
    }

    #[test]
    fn assigned_annotations_parse_to_fractions() {
        let a = parse_assigned("0,1").expect("whole");
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].index, Some(1));
        assert_eq!(a[0].fraction, GpuFraction::whole());
        assert_eq!(
            parse_assigned("2:250").expect("share")[0].fraction,
            GpuFraction::milli(250)
        );
        assert_eq!(
            parse_assigned("3:3g.40gb@4").expect("mig")[0].fraction,
            GpuFraction::mig_slices(3)
        );
        assert_eq!(parse_assigned("x"), None);
        assert_eq!(parse_assigned("1:half"), None);
    }

    #[test]
    fn two_h100_for_90_minutes_at_2_is_6() {
        let w = workload(
            "train",
            "research",
            "{count: 2}",
            "h100-a",
            "0,1",
            Some("2026-11-25T11:30:00Z"),
        );
        let c = cost(&w, "2026-11-25T12:00:00Z");
        assert_eq!(c.amount.as_deref(), Some("6.00"));
        assert_eq!(c.gpu_hours, 3.0);
        assert_eq!(c.currency, "USD");
        assert!(c.unpriced_models.is_empty());
    }

    #[test]
    fn a_share_is_charged_its_fraction() {
        // 250 milli of an H100 for 4 h = 1 GPU-h = 2.00.
        let w = workload(
            "chat",
            "serving",
            "{share: 250}",
            "h100-a",
            "5:250",
            Some("2026-11-25T14:00:00Z"),
        );
        let c = cost(&w, "2026-11-25T15:00:00Z");
        assert_eq!(c.amount.as_deref(), Some("2.00"));
        assert_eq!(c.gpu_hours, 1.0);
    }

    #[test]
    fn a_mig_slice_for_7_hours_is_3_gpu_hours() {
        let w = workload(
            "nb",
            "lab",
            "{mig: 3g.40gb}",
            "a100-a",
            "2:3g.40gb@4",
            Some("2026-11-25T17:00:00Z"),
        );
        let c = cost(&w, "2026-11-25T18:00:00Z");
        assert_eq!(c.gpu_hours, 3.0);
        assert_eq!(c.amount.as_deref(), Some("6.00"));
        // Without the annotation, the spec's profile gives the same fraction.
        let mut bare = w.clone();
        if let Some(s) = bare.status.as_mut() {
            s.replicas[0].gpus = None;
        }
        assert_eq!(cost(&bare, "2026-11-25T18:00:00Z").gpu_hours, 3.0);
    }

    #[test]
    fn unknown_models_are_reported_not_priced_at_zero() {
        let w = workload(
            "big",
            "research",
            "{count: 1}",
            "b999",
            "0",
            Some("2026-11-25T11:00:00Z"),
        );
        let c = cost(&w, "2026-11-25T12:00:00Z");
        assert_eq!(c.amount, None, "not 0.00");
        assert_eq!(c.unpriced_models, ["B999-1TB"]);
        assert_eq!(c.gpu_hours, 1.0);
        // A node nothing is known about.
        let w = workload(
            "lost",
            "research",
            "{count: 1}",
            "nowhere",
            "0",
            Some("2026-11-25T11:00:00Z"),
        );
        assert_eq!(
            cost(&w, "2026-11-25T12:00:00Z").unpriced_models,
            [UNKNOWN_MODEL]
        );
    }

    #[test]
    fn a_running_workload_costs_up_to_now_and_never_started_costs_nothing() {
        let w = workload("run", "research", "{count: 1}", "h100-a", "0", None);
        let c = cost(&w, "2026-11-25T10:30:00Z");
        assert_eq!(c.amount.as_deref(), Some("1.00"));
        assert_eq!(c.updated_at, "2026-11-25T10:30:00Z");
        let mut never = w;
        if let Some(s) = never.status.as_mut() {
            s.start_time = None;
        }
        assert_eq!(
            workload_cost(&never, &gpus(), &catalogue(), at(START)),
            None
        );
    }

    #[test]
    fn node_labels_name_the_model_when_there_is_no_gpunode() {
        let mut n = Node::default();
        n.metadata.name = Some("l".into());
        n.metadata.labels = Some(BTreeMap::from([(
            keys::NODE_GPU_MODEL.to_string(),
            "H100-80GB".to_string(),
        )]));
        let map = NodeGpuMap::from_objects(&[], &[n]);
        assert_eq!(map.model("l", Some(3)), "H100-80GB");
        assert_eq!(map.model("m", Some(0)), UNKNOWN_MODEL);
    }

    #[test]
    fn queue_spend_is_month_to_date() {
        let now = at("2026-11-25T12:00:00Z");
        assert_eq!(month_start(now), at("2026-11-01T00:00:00Z"));
        assert_eq!(month_name(now), "2026-11");
        let mut last_month = workload(
            "old",
            "research",
            "{count: 1}",
            "h100-a",
            "0",
            Some("2026-11-01T01:00:00Z"),
        );
        // Started 2 h before the month: only its 1 h in November counts.
        if let Some(s) = last_month.status.as_mut() {
            s.start_time = Some("2026-10-31T23:00:00Z".into());
        }
        let all = [
            last_month,
            workload(
                "train",
                "research",
                "{count: 2}",
                "h100-a",
                "0,1",
                Some("2026-11-25T11:30:00Z"),
            ),
            workload(
                "other",
                "serving",
                "{count: 1}",
                "h100-a",
                "2",
                Some("2026-11-25T11:00:00Z"),
            ),
            workload("big", "research", "{count: 1}", "b999", "0", None),
        ];
        let a = queue_spend("research", &all, &gpus(), &catalogue(), now);
        // 1 h x 2.00 + 3 GPU-h x 2.00 = 8.00; the B999 hours are unpriced, not in the sum.
        assert_eq!(a.total.to_string(), "8.00");
        assert_eq!(a.unknown_models(), ["B999-1TB"]);
        assert_eq!(a.gpu_hours, 1.0 + 3.0 + 2.0);
        let s = queue_spend("serving", &all, &gpus(), &catalogue(), now);
        assert_eq!(s.total.to_string(), "2.00");
    }

    #[test]
    fn report_groups_add_up_and_idle_uses_node_utilisation() {
        let now = at("2026-11-25T12:00:00Z");
        let all = [
            workload(
                "train",
                "research",
                "{count: 2}",
                "h100-a",
                "0,1",
                Some("2026-11-25T11:30:00Z"),
            ),
            // Running on an A100 node at 5 % utilisation: idle.
            workload("nb", "lab", "{count: 1}", "a100-a", "0", None),
            workload("big", "lab", "{count: 1}", "b999", "0", None),
        ];
        let r = cost_report(&all, &gpus(), &catalogue(), "7d", GroupBy::Queue, 30.0, now)
            .expect("report");
        assert_eq!(r.total, "10.00");
        assert_eq!(r.idle_total, "4.00");
        let sum: u64 = r
            .groups
            .iter()
            .filter_map(|g| g.cost.as_deref())
            .map(|c| c.replace('.', "").parse::<u64>().unwrap_or(0))
            .sum();
        assert_eq!(sum, 1000);
        assert_eq!(r.unknown_models, ["B999-1TB"]);
        assert_eq!(r.unpriced[0].workloads, ["ml/big"]);
        assert_eq!(r.group_by, "queue");
        assert!(matches!(
            cost_report(&all, &gpus(), &catalogue(), "0s", GroupBy::Queue, 30.0, now),
            Err(ReportError::Window(_))
        ));
        assert!(matches!(
            cost_report(
                &all,
                &gpus(),
                &catalogue(),
                "soon",
                GroupBy::Queue,
                30.0,
                now
            ),
            Err(ReportError::Window(_))
        ));
    }
}

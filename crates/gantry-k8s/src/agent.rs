//! The node agent (`gantry k8s agent`, one Pod per GPU node from a DaemonSet).
//!
//! At start it discovers the node's GPUs with `gantry-gpu` (NVML, captured nvidia-smi XML, or simulated
//! devices; without a driver: zero GPUs and one log line). Every interval it polls telemetry and
//!
//! 1. server-side-applies the `GPUNode` named after the node (creating it, owned by the Node, when it
//!    is absent): [`node_status`] turns the snapshots into [`GPUNodeStatus`]; a GPU whose health is
//!    failed (XID, uncorrectable ECC, lost) is `healthy: false` with the reason, so the scheduler stops
//!    placing on it;
//! 2. patches the Node's labels ([`node_labels`]: model, count, memory tier, utilisation tier) only when
//!    they differ from what the Node carries ([`label_patch`]);
//! 3. refreshes `/metrics` ([`render_metrics`]) with DCGM-exporter names and labels (`gpu`, `UUID`,
//!    `device`, `modelName`, `Hostname`), so stock GPU dashboards work, plus `gantry_agent_*` metrics.
//!
//! The pure parts are plain functions with unit tests; the API part ([`Agent::sync`]) is tested in
//! `tests/agent.rs` against a fake API server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gantry_gpu::{DiscoverOptions, GpuDevice, GpuHealth, GpuSnapshot};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::crd::{GPUDeviceStatus, GPUNode, GPUNodeSpec, GPUNodeStatus};
use crate::keys;

/// Field manager of the agent's server-side applies and patches.
pub const FIELD_MANAGER: &str = "gantry-agent";

/// The agent's node labels, in the order they are written.
pub const AGENT_LABELS: [&str; 4] = [
    keys::NODE_GPU_MODEL,
    keys::NODE_GPU_COUNT,
    keys::NODE_GPU_MEMORY,
    keys::NODE_UTILIZATION,
];

/// What can stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// GPU discovery failed for something the user asked for (a bad `--simulate-gpus` spec, an XML file).
    #[error("GPU discovery: {0}")]
    Gpu(#[from] gantry_gpu::GpuError),
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A value could not be turned into JSON.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The metrics server could not listen or stopped.
    #[error("metrics server on {addr}: {source}")]
    Metrics {
        /// The address it was asked to listen on.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The agent was started without a node name.
    #[error("no node name: set NODE_NAME from the Pod's spec.nodeName (fieldRef)")]
    NoNodeName,
}

/// How to run the agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The Node this agent runs on (from `NODE_NAME`, the downward API's `spec.nodeName`).
    pub node_name: String,
    /// How to discover GPUs (`--simulate-gpus`, nvidia-smi XML, NVML library path).
    pub discover: DiscoverOptions,
    /// Time between two polls and syncs.
    pub interval: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub metrics_addr: SocketAddr,
}

use gantry_gpu::sold_gb;
pub use gantry_gpu::{model_key, model_key_of};

/// The `gantry.dev/gpu-memory` tier of a GPU: the largest of `16g`, `24g`, `40g`, `48g`, `80g`, `141g`
/// it reaches (so a selector on a tier never lands on less memory), or `<GB>g` below 16 GB.
pub fn memory_tier(memory_mib: u64) -> String {
    let gb = sold_gb(memory_mib);
    [141u64, 80, 48, 40, 24, 16]
        .into_iter()
        .find(|t| gb >= *t)
        .map_or_else(|| format!("{gb}g"), |t| format!("{t}g"))
}

/// The `gantry.dev/utilization-tier` of a mean utilisation in percent: `idle` (<10), `low` (<40),
/// `medium` (<75), `high`.
pub fn utilization_tier(percent: f64) -> &'static str {
    if percent < 10.0 {
        "idle"
    } else if percent < 40.0 {
        "low"
    } else if percent < 75.0 {
        "medium"
    } else {
        "high"
    }
}

/// One GPU's entry in the `GPUNode` status: failed health is `healthy: false` with the reason; a
/// degraded GPU stays healthy with the reason prefixed `degraded: `.
pub fn device_status(snapshot: &GpuSnapshot) -> GPUDeviceStatus {
    let (healthy, reason) = match &snapshot.health {
        GpuHealth::Ok => (true, None),
        GpuHealth::Degraded { reason } => (true, Some(format!("degraded: {reason}"))),
        GpuHealth::Failed { reason } => (false, Some(reason.clone())),
    };
    let t = &snapshot.telemetry;
    GPUDeviceStatus {
        index: snapshot.device.index,
        uuid: snapshot.device.uuid.clone(),
        model: model_key(&snapshot.device),
        memory_mib: snapshot.device.memory_total_mib,
        healthy,
        reason,
        utilization: t.utilization_gpu_pct.map(f64::from),
        memory_used_mib: t.memory_used_mib,
        temperature_c: t.temperature_c.map(f64::from),
        power_w: t.power_draw_w,
        mig_enabled: snapshot.device.mig.enabled,
    }
}

/// The `GPUNode` status for one poll: every GPU, the driver version, the time and the backend name.
pub fn node_status(
    snapshots: &[GpuSnapshot],
    backend: &str,
    driver_version: Option<&str>,
    updated_at: Option<String>,
) -> GPUNodeStatus {
    GPUNodeStatus {
        gpus: snapshots.iter().map(device_status).collect(),
        gpu_count: u32::try_from(snapshots.len()).unwrap_or(u32::MAX),
        driver_version: driver_version.map(str::to_string),
        updated_at,
        backend: backend.to_string(),
    }
}

/// The agent's node labels for one poll, each key of [`AGENT_LABELS`] with its value or `None` to remove
/// it: the model (`mixed` when the GPUs differ), the count, the memory tier of the smallest GPU and the
/// utilisation tier of the mean utilisation; with no GPUs only the count (`0`) remains.
pub fn node_labels(snapshots: &[GpuSnapshot]) -> BTreeMap<String, Option<String>> {
    let models: Vec<String> = snapshots.iter().map(|s| model_key(&s.device)).collect();
    let model = match models.split_first() {
        None => None,
        Some((first, rest)) if rest.iter().all(|m| m == first) => Some(label_value(first)),
        Some(_) => Some("mixed".to_string()),
    };
    let memory = snapshots
        .iter()
        .map(|s| s.device.memory_total_mib)
        .min()
        .map(memory_tier);
    let utils: Vec<f64> = snapshots
        .iter()
        .filter_map(|s| s.telemetry.utilization_gpu_pct.map(f64::from))
        .collect();
    let utilization = (!utils.is_empty())
        .then(|| utilization_tier(utils.iter().sum::<f64>() / utils.len() as f64).to_string());
    BTreeMap::from([
        (keys::NODE_GPU_MODEL.to_string(), model),
        (
            keys::NODE_GPU_COUNT.to_string(),
            Some(snapshots.len().to_string()),
        ),
        (keys::NODE_GPU_MEMORY.to_string(), memory),
        (keys::NODE_UTILIZATION.to_string(), utilization),
    ])
}

/// A valid label value from free text: characters other than `[A-Za-z0-9._-]` become `-`, trimmed to
/// 63 characters and to alphanumeric ends.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The JSON merge patch that brings a Node's labels to `desired` (`None` = remove), or `None` when
/// they already agree.
pub fn label_patch(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, Option<String>>,
) -> Option<Value> {
    let mut changes = serde_json::Map::new();
    for (key, want) in desired {
        if current.get(key) != want.as_ref() {
            changes.insert(key.clone(), want.clone().map_or(Value::Null, Value::String));
        }
    }
    (!changes.is_empty()).then(|| json!({ "metadata": { "labels": changes } }))
}

/// Removes `null` members from objects, recursively (an apply leaves out what it does not set).
pub fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// The server-side-apply body for a `GPUNode`'s status subresource.
pub fn status_apply_body(node_name: &str, status: &GPUNodeStatus) -> Result<Value, Error> {
    let ar = gpunode_resource();
    Ok(json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": { "name": node_name },
        "status": strip_nulls(serde_json::to_value(status)?),
    }))
}

/// A new `GPUNode` named after the node, naming it in its spec and owned by it (deleted with the Node).
pub fn new_gpunode(node: &Node) -> Result<Value, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let ar = gpunode_resource();
    let spec = GPUNodeSpec {
        node_name: Some(name.clone()),
    };
    let mut metadata = json!({ "name": name });
    if let Some(uid) = &node.metadata.uid {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "v1",
            "kind": "Node",
            "name": name,
            "uid": uid,
        }]);
    }
    Ok(json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": metadata,
        "spec": strip_nulls(serde_json::to_value(&spec)?),
    }))
}

fn gpunode_resource() -> ApiResource {
    ApiResource::erase::<GPUNode>(&())
}

/// One GPU sample's labels, as dcgm-exporter writes them.
fn dcgm_labels(device: &GpuDevice, hostname: &str) -> String {
    format!(
        "gpu=\"{}\",UUID=\"{}\",device=\"nvidia{}\",modelName=\"{}\",Hostname=\"{}\"",
        device.index,
        escape(&device.uuid),
        device.index,
        escape(&device.name),
        escape(hostname)
    )
}

/// Escapes a label value for the Prometheus text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `/metrics` text (Prometheus exposition format 0.0.4): DCGM-exporter names and labels per GPU
/// (utilisation %, framebuffer used/free MiB, temperature °C, power W, last XID), and
/// `gantry_agent_gpus`, `gantry_agent_gpu_healthy`. A reading the backend does not report is left out.
pub fn render_metrics(snapshots: &[GpuSnapshot], hostname: &str) -> String {
    type Reading = fn(&GpuSnapshot) -> Option<f64>;
    let families: [(&str, &str, Reading); 7] = [
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", |s| {
            s.telemetry.utilization_gpu_pct.map(f64::from)
        }),
        (
            "DCGM_FI_DEV_MEM_COPY_UTIL",
            "Memory utilization (in %).",
            |s| s.telemetry.utilization_memory_pct.map(f64::from),
        ),
        (
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB).",
            |s| s.telemetry.memory_used_mib.map(|v| v as f64),
        ),
        (
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB).",
            |s| {
                s.telemetry.memory_free_mib.map(|v| v as f64).or_else(|| {
                    s.telemetry
                        .memory_used_mib
                        .map(|u| s.device.memory_total_mib.saturating_sub(u) as f64)
                })
            },
        ),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", |s| {
            s.telemetry.temperature_c.map(f64::from)
        }),
        ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", |s| {
            s.telemetry.power_draw_w
        }),
        (
            "DCGM_FI_DEV_XID_ERRORS",
            "Value of the last XID error encountered.",
            |s| Some(s.telemetry.xid_events.last().map_or(0.0, |e| e.xid as f64)),
        ),
    ];
    let mut out = String::new();
    for (name, help, read) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in snapshots {
            if let Some(v) = read(s) {
                let _ = writeln!(out, "{name}{{{}}} {v}", dcgm_labels(&s.device, hostname));
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP gantry_agent_gpus GPUs discovered on this node.\n# TYPE gantry_agent_gpus gauge\n\
         gantry_agent_gpus{{Hostname=\"{}\"}} {}",
        escape(hostname),
        snapshots.len()
    );
    let _ = writeln!(
        out,
        "# HELP gantry_agent_gpu_healthy 1 when the GPU may receive work, 0 after an XID/ECC failure.\n\
         # TYPE gantry_agent_gpu_healthy gauge"
    );
    for s in snapshots {
        let _ = writeln!(
            out,
            "gantry_agent_gpu_healthy{{{}}} {}",
            dcgm_labels(&s.device, hostname),
            u8::from(!s.health.is_failed())
        );
    }
    out
}

/// What one [`Agent::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncOutcome {
    /// The `GPUNode` was absent and has been created.
    pub created: bool,
    /// The Node's labels were patched (they had changed).
    pub labels_patched: bool,
}

/// The API side of the agent: the node's `GPUNode` status and the Node's labels.
pub struct Agent {
    nodes: Api<Node>,
    gpunodes: Api<DynamicObject>,
    node_name: String,
}

impl Agent {
    /// An agent for `node_name` talking through `client`.
    pub fn new(client: kube::Client, node_name: &str) -> Self {
        Agent {
            nodes: Api::all(client.clone()),
            gpunodes: Api::all_with(client, &gpunode_resource()),
            node_name: node_name.to_string(),
        }
    }

    /// One sync: reads the Node, applies the `GPUNode` status (creating the `GPUNode` first when the
    /// apply says it is absent), and patches the Node's labels when they changed.
    pub async fn sync(
        &self,
        status: &GPUNodeStatus,
        labels: &BTreeMap<String, Option<String>>,
    ) -> Result<SyncOutcome, Error> {
        let mut outcome = SyncOutcome::default();
        let node = self.nodes.get(&self.node_name).await?;
        let body = status_apply_body(&self.node_name, status)?;
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match self
            .gpunodes
            .patch_status(&self.node_name, &pp, &Patch::Apply(&body))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.is_not_found() => {
                let object: DynamicObject = serde_json::from_value(new_gpunode(&node)?)?;
                match self.gpunodes.create(&PostParams::default(), &object).await {
                    Ok(_) => outcome.created = true,
                    // Another agent (a restarted Pod) created it meanwhile: fine.
                    Err(kube::Error::Api(e)) if e.is_already_exists() || e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                self.gpunodes
                    .patch_status(&self.node_name, &pp, &Patch::Apply(&body))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        let current = node.metadata.labels.clone().unwrap_or_default();
        if let Some(patch) = label_patch(&current, labels) {
            self.nodes
                .patch(
                    &self.node_name,
                    &PatchParams {
                        field_manager: Some(FIELD_MANAGER.to_string()),
                        ..PatchParams::default()
                    },
                    &Patch::Merge(&patch),
                )
                .await?;
            outcome.labels_patched = true;
        }
        Ok(outcome)
    }
}

/// The current time as RFC 3339 in UTC, to the second.
fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// Serves `/metrics`, `/healthz` (always 200 while serving) and `/readyz` (200 after the first
/// successful sync) on `listener`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: watch::Receiver<String>,
    ready: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = metrics.borrow().clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let is_ready = *ready.borrow();
                async move {
                    if is_ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not synced yet")
                    }
                }
            }),
        );
    axum::serve(listener, app).await
}

/// Runs the agent until the metrics server fails: discovery, then a poll and sync every interval. A
/// failed sync is logged and retried at the next tick.
pub async fn run(client: kube::Client, opts: AgentOptions) -> Result<(), Error> {
    if opts.node_name.is_empty() {
        return Err(Error::NoNodeName);
    }
    let mut discovery = gantry_gpu::discover(&opts.discover)?;
    tracing::info!(node = %opts.node_name, backend = %discovery.backend(), "{}", discovery.note());
    for w in discovery.warnings() {
        tracing::warn!("{w}");
    }
    let listener = tokio::net::TcpListener::bind(opts.metrics_addr)
        .await
        .map_err(|source| Error::Metrics {
            addr: opts.metrics_addr,
            source,
        })?;
    let (metrics_tx, metrics_rx) = watch::channel(String::new());
    let (ready_tx, ready_rx) = watch::channel(false);
    let mut server = tokio::spawn(serve_metrics(listener, metrics_rx, ready_rx));
    let agent = Agent::new(client, &opts.node_name);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(opts.interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            res = &mut server => {
                let source = match res {
                    Ok(Ok(())) => std::io::Error::other("stopped"),
                    Ok(Err(e)) => e,
                    Err(e) => std::io::Error::other(e.to_string()),
                };
                return Err(Error::Metrics { addr: opts.metrics_addr, source });
            }
        }
        // The simulated backend turns allocations into load; the agent does not track them (yet).
        let snapshots = discovery.poll(started.elapsed().as_secs_f64(), &[]);
        metrics_tx.send_replace(render_metrics(&snapshots, &opts.node_name));
        let status = node_status(
            &snapshots,
            discovery.backend().name(),
            discovery.driver_version(),
            Some(now_rfc3339()),
        );
        for s in snapshots.iter().filter(|s| s.health.is_failed()) {
            tracing::warn!(gpu = s.device.index, uuid = %s.device.uuid, health = ?s.health, "GPU unhealthy");
        }
        match agent.sync(&status, &node_labels(&snapshots)).await {
            Ok(outcome) => {
                if outcome.created {
                    tracing::info!(node = %opts.node_name, "created GPUNode");
                }
                if outcome.labels_patched {
                    tracing::info!(node = %opts.node_name, "updated node labels");
                }
                ready_tx.send_replace(true);
            }
            Err(e) => tracing::warn!(node = %opts.node_name, "sync failed, retrying: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_gpu::{GpuTelemetry, MigMode, XidEvent};

    fn device(index: u32, name: &str, mib: u64) -> GpuDevice {
        GpuDevice {
            index,
            uuid: format!("GPU-{index}"),
            name: name.into(),
            memory_total_mib: mib,
            mig: MigMode::default(),
            mig_devices: Vec::new(),
            pci_bus_id: String::new(),
            nvlink_peers: Vec::new(),
            compute_capability: None,
        }
    }

    fn snap(index: u32, util: Option<u32>, health: GpuHealth) -> GpuSnapshot {
        GpuSnapshot {
            device: device(index, "NVIDIA H100 80GB HBM3", 81_559),
            telemetry: GpuTelemetry {
                utilization_gpu_pct: util,
                memory_used_mib: Some(1_000),
                temperature_c: Some(41),
                power_draw_w: Some(120.5),
                ..GpuTelemetry::default()
            },
            health,
        }
    }

    #[test]
    fn model_keys_and_memory_tiers() {
        assert_eq!(
            model_key(&device(0, "NVIDIA H100 80GB HBM3", 81_559)),
            "H100-80GB"
        );
        assert_eq!(
            model_key(&device(0, "NVIDIA A100-SXM4-40GB", 40_960)),
            "A100-40GB"
        );
        assert_eq!(model_key(&device(0, "Tesla T4", 15_360)), "T4-16GB");
        assert_eq!(model_key(&device(0, "Mystery GPU", 1)), "Mystery GPU");
        assert_eq!(memory_tier(81_559), "80g");
        assert_eq!(memory_tier(143_771), "141g");
        assert_eq!(memory_tier(40_960), "40g");
        assert_eq!(memory_tier(46_068), "48g");
        assert_eq!(memory_tier(23_034), "24g");
        assert_eq!(memory_tier(32_768), "24g");
        assert_eq!(memory_tier(15_360), "16g");
        assert_eq!(memory_tier(8_192), "8g");
    }

    #[test]
    fn utilization_tiers_have_the_documented_bounds() {
        assert_eq!(utilization_tier(0.0), "idle");
        assert_eq!(utilization_tier(9.9), "idle");
        assert_eq!(utilization_tier(10.0), "low");
        assert_eq!(utilization_tier(39.9), "low");
        assert_eq!(utilization_tier(40.0), "medium");
        assert_eq!(utilization_tier(74.9), "medium");
        assert_eq!(utilization_tier(75.0), "high");
        assert_eq!(utilization_tier(100.0), "high");
    }

    #[test]
    fn failed_gpus_are_unhealthy_with_the_reason() {
        let s = node_status(
            &[
                snap(0, Some(50), GpuHealth::Ok),
                snap(
                    1,
                    None,
                    GpuHealth::Failed {
                        reason: "XID 79: GPU has fallen off the bus".into(),
                    },
                ),
                snap(
                    2,
                    Some(5),
                    GpuHealth::Degraded {
                        reason: "thermal slowdown".into(),
                    },
                ),
            ],
            "simulated",
            Some("560.35.03"),
            Some("2026-11-25T21:00:00Z".into()),
        );
        assert_eq!(s.backend, "simulated");
        assert_eq!(s.gpu_count, 3, "the GPUs printer column");
        assert_eq!(s.driver_version.as_deref(), Some("560.35.03"));
        assert_eq!(s.gpus.len(), 3);
        let g0 = &s.gpus[0];
        assert!(g0.healthy && g0.reason.is_none());
        assert_eq!(g0.model, "H100-80GB");
        assert_eq!(g0.memory_mib, 81_559);
        assert_eq!(g0.utilization, Some(50.0));
        assert_eq!(g0.temperature_c, Some(41.0));
        assert_eq!(g0.power_w, Some(120.5));
        assert_eq!(g0.memory_used_mib, Some(1_000));
        assert!(!g0.mig_enabled);
        assert!(!s.gpus[1].healthy);
        assert_eq!(
            s.gpus[1].reason.as_deref(),
            Some("XID 79: GPU has fallen off the bus")
        );
        assert_eq!(s.gpus[1].utilization, None);
        assert!(s.gpus[2].healthy);
        assert_eq!(
            s.gpus[2].reason.as_deref(),
            Some("degraded: thermal slowdown")
        );
    }

    /// The GPUNode `GPUs` printer column reads a field the agent writes (it once read a label the agent
    /// puts only on the Node).
    #[test]
    fn gpus_printer_column_reads_what_the_agent_writes() {
        use kube::CustomResourceExt;
        let crd = GPUNode::crd();
        let column = crd.spec.versions[0]
            .additional_printer_columns
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|c| c.name == "GPUs")
            .map(|c| c.json_path.clone())
            .unwrap_or_default();
        let status = node_status(
            &[
                snap(0, Some(1), GpuHealth::Ok),
                snap(1, Some(1), GpuHealth::Ok),
            ],
            "simulated",
            None,
            None,
        );
        let object = json!({ "status": serde_json::to_value(&status).unwrap_or_default() });
        let mut value = &object;
        for part in column.trim_start_matches('.').split('.') {
            value = &value[part];
        }
        assert_eq!(value, &json!(2), "column {column} of {object}");
    }

    #[test]
    fn labels_from_devices() {
        let l = node_labels(&[
            snap(0, Some(80), GpuHealth::Ok),
            snap(1, Some(60), GpuHealth::Ok),
        ]);
        let get = |k: &str| l.get(k).cloned().flatten();
        assert_eq!(get(keys::NODE_GPU_MODEL).as_deref(), Some("H100-80GB"));
        assert_eq!(get(keys::NODE_GPU_COUNT).as_deref(), Some("2"));
        assert_eq!(get(keys::NODE_GPU_MEMORY).as_deref(), Some("80g"));
        assert_eq!(get(keys::NODE_UTILIZATION).as_deref(), Some("medium"));

        let mut mixed = snap(1, None, GpuHealth::Ok);
        mixed.device = device(1, "NVIDIA A100-SXM4-40GB", 40_960);
        let l = node_labels(&[snap(0, None, GpuHealth::Ok), mixed]);
        assert_eq!(l[keys::NODE_GPU_MODEL].as_deref(), Some("mixed"));
        assert_eq!(l[keys::NODE_GPU_MEMORY].as_deref(), Some("40g"));
        assert_eq!(l[keys::NODE_UTILIZATION], None);

        let none = node_labels(&[]);
        assert_eq!(none.len(), 4);
        assert_eq!(none[keys::NODE_GPU_COUNT].as_deref(), Some("0"));
        assert!(none[keys::NODE_GPU_MODEL].is_none());
        assert_eq!(label_value("Mystery GPU (rev 2)"), "Mystery-GPU--rev-2");
    }

    #[test]
    fn label_patch_only_when_changed() {
        let desired = node_labels(&[snap(0, Some(5), GpuHealth::Ok)]);
        let mut current: BTreeMap<String, String> = desired
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        current.insert("kubernetes.io/hostname".into(), "n1".into());
        assert_eq!(label_patch(&current, &desired), None);
        current.insert(keys::NODE_UTILIZATION.into(), "high".into());
        assert_eq!(
            label_patch(&current, &desired),
            Some(json!({"metadata": {"labels": {"gantry.dev/utilization-tier": "idle"}}}))
        );
        // Removing a label the agent no longer sets.
        let gone = node_labels(&[]);
        let p = label_patch(&current, &gone).unwrap_or_default();
        assert_eq!(p["metadata"]["labels"]["gantry.dev/gpu-model"], Value::Null);
        assert_eq!(p["metadata"]["labels"]["gantry.dev/gpu-count"], "0");
        assert!(
            p["metadata"]["labels"]
                .get("kubernetes.io/hostname")
                .is_none()
        );
    }

    #[test]
    fn metrics_use_dcgm_names_and_labels() {
        let mut failed = snap(
            1,
            Some(0),
            GpuHealth::Failed {
                reason: "XID 48".into(),
            },
        );
        failed.telemetry.xid_events = vec![XidEvent { xid: 48, count: 1 }];
        let text = render_metrics(&[snap(0, Some(37), GpuHealth::Ok), failed], "gpu-node-1");
        let labels0 = "gpu=\"0\",UUID=\"GPU-0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-node-1\"";
        for line in [
            "# TYPE DCGM_FI_DEV_GPU_UTIL gauge".to_string(),
            format!("DCGM_FI_DEV_GPU_UTIL{{{labels0}}} 37"),
            format!("DCGM_FI_DEV_FB_USED{{{labels0}}} 1000"),
            format!("DCGM_FI_DEV_FB_FREE{{{labels0}}} 80559"),
            format!("DCGM_FI_DEV_GPU_TEMP{{{labels0}}} 41"),
            format!("DCGM_FI_DEV_POWER_USAGE{{{labels0}}} 120.5"),
            format!("DCGM_FI_DEV_XID_ERRORS{{{labels0}}} 0"),
            format!("gantry_agent_gpu_healthy{{{labels0}}} 1"),
            "gantry_agent_gpus{Hostname=\"gpu-node-1\"} 2".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.contains("DCGM_FI_DEV_XID_ERRORS{gpu=\"1\""));
        assert!(text.contains("gantry_agent_gpu_healthy{gpu=\"1\","));
        assert!(
            text.lines()
                .any(|l| l.starts_with("gantry_agent_gpu_healthy{gpu=\"1\"") && l.ends_with(" 0"))
        );
        // No utilisation memory reading: the family is announced but has no sample.
        assert!(!text.contains("DCGM_FI_DEV_MEM_COPY_UTIL{"));
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn apply_body_leaves_out_nulls() {
        let s = node_status(&[snap(0, None, GpuHealth::Ok)], "nvml", None, None);
        let body = status_apply_body("n1", &s).unwrap_or_default();
        assert_eq!(body["apiVersion"], "gantry.dev/v1alpha1");
        assert_eq!(body["kind"], "GPUNode");
        assert_eq!(body["metadata"]["name"], "n1");
        assert!(body["status"].get("driverVersion").is_none());
        assert!(body["status"]["gpus"][0].get("utilization").is_none());
        assert_eq!(body["status"]["gpus"][0]["memoryMib"], 81_559);
    }
}

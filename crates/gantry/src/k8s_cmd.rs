//! `gantry k8s ...`: the Kubernetes mode's components and tools, and `gantry bench k8s`.

use anyhow::Context;
use clap::{Args, Subcommand};
use gantry_gpu::DiscoverOptions;
use gantry_k8s::{agent, controller, crd, labels, manifests, scheduler};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `gantry k8s` subcommands.
#[derive(Subcommand, Debug)]
pub enum K8sCommand {
    /// Print the GPUWorkload, GPUQueue and GPUNode CRDs (YAML).
    Crds,
    /// Print the deployment manifests (namespace, CRDs, RBAC, controller, scheduler, agent, monitoring).
    Render(RenderArgs),
    /// Run the controller: GPUWorkloads into Pods, admission by queue quota, status, finalizer.
    Controller(ControllerArgs),
    /// Run the GPU-aware scheduler: binds Pods with `schedulerName: gantry`.
    Scheduler(SchedulerArgs),
    /// Run the node agent: GPU discovery and telemetry into GPUNode status, node labels, DCGM metrics.
    Agent(AgentArgs),
    /// What GPU time cost over a window, per queue, owner (namespace), workload or model, from the
    /// GPUWorkloads' status and the prices ConfigMap (the table and JSON of `gantry costs`).
    Costs(CostsArgs),
    /// Why a GPUWorkload waits (the quota holding it, per-filter node counts, its position and an
    /// estimated start) or where it runs: its phase and its conditions' messages.
    Explain {
        /// The GPUWorkload's name.
        name: String,
        /// Its namespace (default: the kubeconfig's).
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Label (and taint) the nodes that have GPUs, from their allocatable `nvidia.com/gpu`.
    LabelNodes {
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Options of `gantry k8s render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// Namespace of the components.
    #[arg(long, default_value = "gantry-system")]
    namespace: String,
    /// Container image of the components.
    #[arg(long, default_value = "ghcr.io/gantry-dev/gantry:0.1.0")]
    image: String,
    /// Leave out the ServiceMonitor, PrometheusRule and Grafana dashboard (no Prometheus Operator).
    #[arg(long)]
    no_monitoring: bool,
    /// Leave out the CRDs.
    #[arg(long)]
    no_crds: bool,
}

/// Options of `gantry k8s controller`.
#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "gantry-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "gantry-controller")]
    lease_name: String,
    /// Where `/healthz` and `/readyz` listen.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    #[command(flatten)]
    prices: PricesArgs,
}

/// Where the prices ConfigMap is.
#[derive(Args, Debug)]
pub struct PricesArgs {
    /// ConfigMap holding the prices file (the format of `gantry serve --prices`), merged over the
    /// shipped defaults; absent = the defaults.
    #[arg(long, default_value = gantry_k8s::prices::DEFAULT_NAME)]
    prices_configmap: String,
    /// Namespace of the prices ConfigMap.
    #[arg(long, env = "POD_NAMESPACE", default_value = "gantry-system")]
    prices_namespace: String,
    /// Key of the prices file in the ConfigMap.
    #[arg(long, default_value = gantry_k8s::prices::DEFAULT_KEY)]
    prices_key: String,
}

impl PricesArgs {
    fn configmap(&self) -> gantry_k8s::prices::PricesConfigMap {
        gantry_k8s::prices::PricesConfigMap {
            namespace: self.prices_namespace.clone(),
            name: self.prices_configmap.clone(),
            key: self.prices_key.clone(),
        }
    }
}

/// Options of `gantry k8s costs`.
#[derive(Args, Debug)]
pub struct CostsArgs {
    /// Group by `queue`, `owner` (namespace), `workload` or `model`.
    #[arg(long = "by", default_value = "queue", value_parser = ["queue", "owner", "workload", "model"])]
    by: String,
    /// How far back from now: `1h`, `24h`, `7d`, `30d`, ...
    #[arg(long, default_value = "7d")]
    window: String,
    /// GPU utilisation (%) under which allocated time counts as idle.
    #[arg(long, default_value_t = 30.0)]
    idle_threshold: f64,
    /// Only the GPUWorkloads of this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// A local prices file instead of the ConfigMap (merged over the shipped defaults).
    #[arg(long)]
    prices: Option<PathBuf>,
    #[command(flatten)]
    configmap: PricesArgs,
    /// Print JSON (the shape of `GET /api/costs/analysis`).
    #[arg(long)]
    json: bool,
}

/// Options of `gantry k8s scheduler`.
#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// Placement strategy (see `gantry strategies`).
    #[arg(long, default_value = "gantry")]
    strategy: String,
    /// Schedule only Pods of this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// Where `/metrics` and `/healthz` listen.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
}

/// Options of `gantry k8s agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// This node's name (the DaemonSet passes the downward API's spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Seconds between telemetry syncs (`10s` or `10`).
    #[arg(long, default_value = "10s")]
    interval: String,
    /// Where `/metrics` (DCGM-compatible), `/healthz` and `/readyz` listen.
    #[arg(long, default_value = "0.0.0.0:9400")]
    metrics_addr: SocketAddr,
    /// Simulated GPUs instead of NVML (see `gantry serve --simulate-gpus`).
    #[arg(long)]
    simulate_gpus: Option<String>,
    /// Seed of simulated telemetry.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Read captured `nvidia-smi -q -x` output instead of NVML.
    #[arg(long)]
    nvidia_smi_xml: Option<PathBuf>,
    /// Load NVML from this path instead of `libnvidia-ml.so.1`.
    #[arg(long)]
    nvml_library: Option<PathBuf>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("no Kubernetes credentials (in-cluster service account or KUBECONFIG)")
}

fn parse_secs(s: &str) -> anyhow::Result<Duration> {
    let n = s.trim().trim_end_matches('s');
    let secs: f64 = n
        .parse()
        .with_context(|| format!("--interval: {s:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        anyhow::bail!("--interval: {s:?} must be between 0.1s and 3600s");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs `gantry k8s ...`.
pub fn run(cmd: K8sCommand) -> anyhow::Result<()> {
    match cmd {
        K8sCommand::Crds => {
            print!("{}", crd::crds_yaml());
            Ok(())
        }
        K8sCommand::Render(a) => {
            let out = manifests::render_with(&manifests::RenderOptions {
                namespace: a.namespace,
                image: a.image,
                monitoring: !a.no_monitoring,
                crds: !a.no_crds,
            })?;
            print!("{out}");
            Ok(())
        }
        K8sCommand::Controller(a) => {
            crate::server_cmd::init_tracing();
            let identity = std::env::var("POD_NAME")
                .or_else(|_| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .map(|h| h.trim().to_string())
                })
                .unwrap_or_else(|_| format!("gantry-controller-{}", std::process::id()));
            runtime()?.block_on(async move {
                let client = client().await?;
                tokio::spawn(health_only(a.metrics_addr));
                controller::run(
                    client,
                    controller::ControllerOptions {
                        namespace: a.namespace,
                        lease_name: a.lease_name,
                        lease_namespace: a.lease_namespace,
                        identity,
                        prices: a.prices.configmap(),
                    },
                )
                .await?;
                Ok(())
            })
        }
        K8sCommand::Scheduler(a) => {
            crate::server_cmd::init_tracing();
            let strategy = gantry_core::Policy::from_name(&a.strategy).context("--strategy")?;
            runtime()?.block_on(async move {
                let client = client().await?;
                scheduler::run(
                    client,
                    scheduler::SchedulerOptions {
                        strategy,
                        namespace: a.namespace,
                        metrics_addr: Some(a.metrics_addr),
                    },
                )
                .await?;
                Ok(())
            })
        }
        K8sCommand::Agent(a) => {
            crate::server_cmd::init_tracing();
            let interval = parse_secs(&a.interval)?;
            runtime()?.block_on(async move {
                let client = client().await?;
                agent::run(
                    client,
                    agent::AgentOptions {
                        node_name: a.node_name,
                        discover: DiscoverOptions {
                            simulate: a.simulate_gpus,
                            seed: a.seed,
                            nvidia_smi_xml: a.nvidia_smi_xml,
                            nvml_library: a.nvml_library,
                            ..DiscoverOptions::default()
                        },
                        interval,
                        metrics_addr: a.metrics_addr,
                    },
                )
                .await?;
                Ok(())
            })
        }
        K8sCommand::Costs(a) => costs(a),
        K8sCommand::Explain { name, namespace } => runtime()?.block_on(async move {
            let client = client().await?;
            let api: kube::Api<gantry_k8s::crd::GPUWorkload> = match namespace.as_deref() {
                Some(ns) => kube::Api::namespaced(client, ns),
                None => kube::Api::default_namespaced(client),
            };
            let w = api
                .get_opt(&name)
                .await?
                .with_context(|| format!("GPUWorkload {name:?} not found"))?;
            print!("{}", explain_text(&w));
            Ok(())
        }),
        K8sCommand::LabelNodes { dry_run } => runtime()?.block_on(async move {
            let client = client().await?;
            for line in labels::label_nodes(client, dry_run).await? {
                println!("{line}");
            }
            Ok(())
        }),
    }
}

/// `/healthz` and `/readyz` for a component without metrics of its own (the controller).
async fn health_only(addr: SocketAddr) {
    let (_m, metrics) = tokio::sync::watch::channel(String::new());
    let (_r, ready) = tokio::sync::watch::channel(true);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            if let Err(e) = agent::serve_metrics(listener, metrics, ready).await {
                eprintln!("gantry: health endpoint stopped: {e}");
            }
        }
        Err(e) => eprintln!("gantry: cannot listen for health probes on {addr}: {e}"),
    }
}

/// Options of `gantry bench k8s`.
#[derive(Args, Debug)]
pub struct BenchK8sArgs {
    /// Fake GPU nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pending Pods.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Bind over loopback HTTP to a fake API server instead of an in-process fake.
    #[arg(long)]
    http: bool,
}

/// Runs `gantry bench k8s`: pods bound per second by the scheduler against a fake API.
pub fn bench(a: BenchK8sArgs) -> anyhow::Result<()> {
    let report = runtime()?.block_on(async move {
        if a.http {
            scheduler::bench_http(a.nodes, a.pods)
                .await
                .map_err(anyhow::Error::from)
        } else {
            Ok(scheduler::bench(a.nodes, a.pods).await)
        }
    })?;
    println!(
        "{} nodes, {} pending pods: {} bound in {:.3} s ({:.3} s deciding) = {:.0} pods/s ({})",
        report.nodes,
        report.pods,
        report.bound,
        report.total_secs,
        report.decide_secs,
        report.pods_per_sec,
        if a.http {
            "loopback HTTP fake API"
        } else {
            "in-process fake API"
        }
    );
    Ok(())
}

/// `gantry submit --kube FILE`: creates the `GPUWorkload` objects of a YAML file (one or several
/// documents) through the kubeconfig's cluster.
pub fn submit_kube(yaml: &str, namespace: Option<&str>) -> anyhow::Result<()> {
    use gantry_k8s::crd::GPUWorkload;
    use kube::api::{Api, PostParams};
    let docs: Vec<GPUWorkload> = serde_saphyr::from_multiple(yaml).map_err(|e| {
        anyhow::anyhow!("not GPUWorkload YAML (apiVersion gantry.dev/v1alpha1): {e}")
    })?;
    if docs.is_empty() {
        anyhow::bail!("no GPUWorkload in the file");
    }
    for wl in &docs {
        if let Err(errors) = wl.spec.validate(wl.metadata.name.as_deref().unwrap_or("")) {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            anyhow::bail!(
                "{}: {}",
                wl.metadata.name.as_deref().unwrap_or("?"),
                text.join("; ")
            );
        }
    }
    runtime()?.block_on(async move {
        let client = client().await?;
        for wl in docs {
            let ns = wl
                .metadata
                .namespace
                .clone()
                .or_else(|| namespace.map(str::to_string))
                .unwrap_or_else(|| client.default_namespace().to_string());
            let api: Api<GPUWorkload> = Api::namespaced(client.clone(), &ns);
            let created = api.create(&PostParams::default(), &wl).await?;
            println!(
                "gpuworkload/{} created in {ns}",
                created.metadata.name.as_deref().unwrap_or("?")
            );
        }
        Ok(())
    })
}

/// `gantry k8s explain`: a GPUWorkload's phase, then each condition with its reason and message.
fn explain_text(w: &gantry_k8s::crd::GPUWorkload) -> String {
    let status = w.status.clone().unwrap_or_default();
    let mut out = format!(
        "{}/{}: {}\n",
        w.metadata.namespace.as_deref().unwrap_or("default"),
        w.metadata.name.as_deref().unwrap_or(""),
        status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Pending".into())
    );
    if let Some(m) = &status.message {
        out.push_str(&format!("  {m}\n"));
    }
    for c in &status.conditions {
        out.push_str(&format!(
            "  {}={} ({}): {}\n",
            c.type_,
            c.status,
            c.reason.as_deref().unwrap_or("-"),
            c.message.as_deref().unwrap_or("")
        ));
    }
    out
}

/// `gantry workloads --kube`: the `GPUWorkload`s of a namespace (or all), as a table.
pub fn workloads_kube(namespace: Option<&str>, json: bool) -> anyhow::Result<()> {
    use gantry_k8s::crd::GPUWorkload;
    use kube::api::{Api, ListParams};
    runtime()?.block_on(async move {
        let client = client().await?;
        let api: Api<GPUWorkload> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let list = api.list(&ListParams::default()).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&list.items)?);
            return Ok(());
        }
        println!(
            "{:<16} {:<28} {:<10} {:<12} {:<14} NODE",
            "NAMESPACE", "NAME", "PHASE", "QUEUE", "GPUS"
        );
        for w in list.items {
            let status = w.status.clone().unwrap_or_default();
            println!(
                "{:<16} {:<28} {:<10} {:<12} {:<14} {}",
                w.metadata.namespace.as_deref().unwrap_or(""),
                w.metadata.name.as_deref().unwrap_or(""),
                status
                    .phase
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "Pending".into()),
                w.spec.queue.as_deref().unwrap_or("default"),
                status.gpus.as_deref().unwrap_or("-"),
                status.node.as_deref().unwrap_or("-"),
            );
        }
        Ok(())
    })
}

/// `gantry k8s costs`: the cost report of the cluster's GPUWorkloads.
fn costs(a: CostsArgs) -> anyhow::Result<()> {
    use gantry_k8s::cost::{NodeGpuMap, cost_report};
    use gantry_k8s::crd::{GPUNode, GPUWorkload};
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, ListParams};
    let group_by: gantry_k8s::cost::CostGroupBy =
        a.by.parse()
            .map_err(|e: String| anyhow::anyhow!("--by: {e}"))?;
    if !(0.0..=100.0).contains(&a.idle_threshold) {
        anyhow::bail!("--idle-threshold: must be a percentage between 0 and 100");
    }
    match gantry_core::spec::Duration(a.window.clone()).seconds() {
        Ok(0) => anyhow::bail!("--window: must be longer than zero (e.g. 7d)"),
        Ok(_) => {}
        Err(e) => anyhow::bail!("--window: {:?}: {e}", a.window),
    }
    let local = match &a.prices {
        Some(path) => Some(gantry_k8s::cost::PriceCatalogue::load(path).context("--prices")?),
        None => None,
    };
    let report = runtime()?.block_on(async move {
        let client = client().await?;
        let workloads: Api<GPUWorkload> = match &a.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let workloads = workloads
            .list(&ListParams::default())
            .await
            .context("listing GPUWorkloads")?
            .items;
        let gpu_nodes = Api::<GPUNode>::all(client.clone())
            .list(&ListParams::default())
            .await
            .context("listing GPUNodes (GPU models)")?
            .items;
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default().labels(gantry_k8s::keys::NODE_GPU_MODEL))
            .await
            .context("listing Nodes (GPU model labels)")?
            .items;
        let catalogue = match local {
            Some(c) => c,
            None => {
                let source = a.configmap.configmap();
                let cm = source.fetch(client.clone()).await.with_context(|| {
                    format!(
                        "reading ConfigMap {}/{} (or pass --prices FILE)",
                        source.namespace, source.name
                    )
                })?;
                let mut book = gantry_k8s::prices::PriceBook::default();
                if let gantry_k8s::prices::PriceUpdate::Invalid(problem) =
                    book.apply(cm.as_ref(), &source.key)
                {
                    anyhow::bail!(
                        "the prices in ConfigMap {}/{} are invalid: {problem}",
                        source.namespace,
                        source.name
                    );
                }
                book.catalogue
            }
        };
        let gpus = NodeGpuMap::from_objects(&gpu_nodes, &nodes);
        let now = k8s_openapi::jiff::Timestamp::now();
        Ok::<_, anyhow::Error>(cost_report(
            &workloads,
            &gpus,
            &catalogue,
            &a.window,
            group_by,
            a.idle_threshold,
            now,
        )?)
    })?;
    let v = serde_json::to_value(&report)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", crate::costs_cmd::table(&v, KUBE_PRICES));
    }
    Ok(())
}

/// Where prices are set in Kubernetes.
const KUBE_PRICES: &str = "to the prices ConfigMap, `gantry-prices`";

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_k8s::cost::{NodeGpuMap, cost_report};
    use gantry_k8s::crd::{
        GPUWorkload, GPUWorkloadSpec, GPUWorkloadStatus, ReplicaStatus, WorkloadPhase,
    };

    fn finished(name: &str, queue: &str, node: &str, gpus: &str) -> GPUWorkload {
        let spec: GPUWorkloadSpec = serde_saphyr::from_str(&format!(
            "queue: {queue}\nresources: {{gpu: {{count: 1}}}}\ntemplate: {{spec: {{containers: [{{name: m, image: x}}]}}}}\n"
        ))
        .expect("spec");
        let mut w = GPUWorkload::new(name, spec);
        w.metadata.namespace = Some("ml".into());
        w.status = Some(GPUWorkloadStatus {
            phase: Some(WorkloadPhase::Succeeded),
            start_time: Some("2026-11-25T10:00:00Z".into()),
            completion_time: Some("2026-11-25T11:30:00Z".into()),
            replicas: vec![ReplicaStatus {
                node: Some(node.into()),
                gpus: Some(gpus.into()),
                ..ReplicaStatus::default()
            }],
            ..GPUWorkloadStatus::default()
        });
        w
    }

    /// The phase, then every condition with its reason and the scheduler's whole text.
    #[test]
    fn explain_prints_the_phase_and_each_condition() {
        let mut w = finished("big", "research", "n1", "0");
        if let Some(s) = w.status.as_mut() {
            s.phase = Some(WorkloadPhase::Admitted);
            s.conditions = vec![
                gantry_k8s::crd::WorkloadCondition {
                    type_: "Admitted".into(),
                    status: "True".into(),
                    reason: Some("QuotaAvailable".into()),
                    message: Some("queue research: 0 + 2 of 8 GPU(s)".into()),
                    last_transition_time: None,
                },
                gantry_k8s::crd::WorkloadCondition {
                    type_: "Scheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some("0 of 1 replica(s) bound; 0/2 nodes can take it: 2 node(s): needs 2 GPUs, has 1. Position 1 of 1 in queue research, 1 of 1 overall (order: priority, then age); estimated start at the latest 2026-11-26T00:50:00Z (exact: ...).".into()),
                    last_transition_time: None,
                },
            ];
        }
        let text = explain_text(&w);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ml/big: Admitted");
        assert_eq!(
            lines[1],
            "  Admitted=True (QuotaAvailable): queue research: 0 + 2 of 8 GPU(s)"
        );
        assert!(
            lines[2].starts_with(
                "  Scheduled=False (Unschedulable): 0 of 1 replica(s) bound; 0/2 nodes"
            ) && lines[2].contains("estimated start at the latest 2026-11-26T00:50:00Z"),
            "{text}"
        );
        assert_eq!(lines.len(), 3);
    }

    /// The same table as `gantry costs`, from the cluster's workloads: 2 H100s for 90 min at 2.00 =
    /// 6.00; a GPU of an unknown model is listed, not priced at zero.
    #[test]
    fn kube_costs_table_has_the_columns_of_gantry_costs() {
        let mut labels = k8s_openapi::api::core::v1::Node::default();
        labels.metadata.name = Some("h100".into());
        labels.metadata.labels = Some(
            [(
                gantry_k8s::keys::NODE_GPU_MODEL.to_string(),
                "H100-80GB".to_string(),
            )]
            .into(),
        );
        let gpus = NodeGpuMap::from_objects(&[], &[labels]);
        let catalogue = gantry_k8s::cost::PriceCatalogue::with_overrides(
            "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 2.00, source: t, date: 2026-11-01}\n",
        )
        .expect("prices");
        let workloads = [
            finished("train", "research", "h100", "0,1"),
            finished("odd", "lab", "elsewhere", "0"),
        ];
        let report = cost_report(
            &workloads,
            &gpus,
            &catalogue,
            "7d",
            gantry_k8s::cost::CostGroupBy::Queue,
            30.0,
            "2026-11-25T12:00:00Z".parse().expect("time"),
        )
        .expect("report");
        let t = crate::costs_cmd::table(&serde_json::to_value(&report).expect("json"), KUBE_PRICES);
        assert!(
            t.starts_with("Cost over the last 7d (idle = GPU utilisation under 30%), in USD\n"),
            "{t}"
        );
        assert!(t.contains("QUEUE"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("research") && l.contains("6.00") && l.contains("3.00")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("lab") && l.contains("unpriced")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("TOTAL") && l.contains("6.00")),
            "{t}"
        );
        assert!(t.contains("No price for: unknown"), "{t}");
    }
}

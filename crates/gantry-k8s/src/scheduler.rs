//! The GPU-aware scheduler (`gantry k8s scheduler`): binds Pods with `schedulerName: gantry`.
//!
//! Two layers:
//!
//! - [`Model`] (`scheduler/model.rs`): pure. Nodes, `GPUNode` status and Pods go in as the watchers see
//!   them; [`Model::schedule`] returns [`Decision`]s (bind, unschedulable with the engine's explanation,
//!   preempt). Placement is gantry-core's `live/` engine (equivalence classes, filters with explanations,
//!   the active strategy, device picking, preemption victims); see the model's docs.
//! - [`Binder`] and [`run`]: the thin I/O layer. Watches Nodes, Pods (all of them, to charge bound Pods'
//!   usage) and `GPUNode`s, feeds the model, executes its decisions through the API and reports the
//!   outcome back (a failed bind rolls the model back).
//!
//! API semantics:
//!
//! - **Binding** is one `POST pods/<name>/binding` whose metadata carries the
//!   [`ASSIGNED_GPUS`](crate::keys::ASSIGNED_GPUS) annotation and the Pod's UID: the API server copies a
//!   Binding's annotations onto the Pod in the same update (`setPodHostAndAnnotations`), so the node and
//!   the GPU indices are written atomically, and the UID precondition refuses a re-created namesake.
//! - A **409/404** on a bind (already bound, or gone) drops the Pod from the queue; the watch tells the
//!   truth. Other errors roll back and retry on the next pass.
//! - **Gangs** (same workload label, gang minimum N > 1) are placed in one decision, all or none. If a
//!   bind fails midway the Pods of the gang already bound are **deleted**, so the controller re-creates
//!   them and the gang is placed again as a whole (a half-bound gang would hold GPUs and never start).
//! - **Preemption** deletes the victims (whole gangs, all of strictly lower priority) with an Event on
//!   each naming the preemptor; the preemptor stays pending until they are gone, then is placed first.
//! - An **Event** (`FailedScheduling`) explains each unschedulable Pod, once per change of explanation.
//!   The Pod's `PodScheduled=False` condition adds where it stands ([`outlook`]): its position among the
//!   pending Pods in the scheduler's order, in its queue and overall, and an estimated start from a
//!   forward simulation (running Pods end by `activeDeadlineSeconds`: "at the latest"; else "unknown"
//!   with the reason). The condition is rewritten whenever that changes; the time is an input of
//!   [`Model::schedule`].

mod bench;
mod model;
pub mod outlook;
mod quantity;

pub use bench::{
    BenchReport, bench, bench_http, fake_api, fake_nodes, fake_pods, gpu_node, pending_pod,
};
pub use model::{
    BindDecision, Decision, GpuDeviceView, GpuNodeView, Model, PodKey, PodRef, assigned_label,
};

use crate::crd::GPUNode;
use crate::keys;
use futures::{StreamExt, stream};
use gantry_core::Policy;
use k8s_openapi::api::core::v1::{Binding, Event, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The component name on Events.
pub const COMPONENT: &str = "gantry-scheduler";
/// Binds (and Event/delete calls) in flight at once.
const CONCURRENCY: usize = 64;

/// Settings of [`run`].
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// The default placement strategy (a Pod's strategy annotation overrides it).
    pub strategy: Policy,
    /// Only schedule pending Pods of this namespace (usage is tracked in all).
    pub namespace: Option<String>,
    /// Serve Prometheus metrics at `http://<addr>/metrics`.
    pub metrics_addr: Option<SocketAddr>,
}

/// What can stop the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The metrics listener could not start.
    #[error("metrics listener on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Every watch stream ended.
    #[error("watch streams ended")]
    WatchEnded,
}

/// The scheduler's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    /// Seconds from a Pod first seen pending to its bind.
    pub latency: Histogram,
    /// Pods bound.
    pub bound: Counter,
    /// Placements that failed (unschedulable decisions and failed binds).
    pub failed: Counter,
    /// Pods deleted by preemption.
    pub preempted: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gantry_scheduler");
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let bound = Counter::default();
        let failed = Counter::default();
        let preempted = Counter::default();
        registry.register(
            "scheduling_latency_seconds",
            "Seconds from a Pod first seen pending to its binding",
            latency.clone(),
        );
        registry.register("pods_bound", "Pods bound", bound.clone());
        registry.register(
            "failed_placements",
            "Unschedulable decisions and failed binds",
            failed.clone(),
        );
        registry.register(
            "pods_preempted",
            "Pods deleted by preemption",
            preempted.clone(),
        );
        Metrics {
            registry,
            latency,
            bound,
            failed,
            preempted,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

/// What [`Binder::execute`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecReport {
    /// Pods bound.
    pub bound: usize,
    /// Binds refused or failed (rolled back).
    pub bind_failed: usize,
    /// Events created.
    pub events: usize,
    /// Pods deleted (preemption victims, and gang members after a failed gang bind).
    pub deleted: usize,
    /// Pods whose `PodScheduled=False` (`Unschedulable`) condition was written.
    pub conditions: usize,
}

/// An Event to create: the Pod, type, reason, message.
type EventArgs = (PodRef, String, String, String);

/// The I/O layer: executes [`Decision`]s through the API and reports outcomes back to the [`Model`].
pub struct Binder {
    client: Client,
    metrics: Arc<Metrics>,
    first_seen: HashMap<PodKey, Instant>,
    cycle_start: Instant,
}

enum BindOutcome {
    Bound,
    /// Already bound elsewhere or gone (409/404).
    Gone,
    Failed(String),
}

impl Binder {
    /// A binder using `client`, recording into `metrics`.
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        Binder {
            client,
            metrics,
            first_seen: HashMap::new(),
            cycle_start: Instant::now(),
        }
    }

    /// Marks the start of a scheduling pass: the latency of a Pod bound in its first pass is counted
    /// from here.
    pub fn begin_cycle(&mut self) {
        self.cycle_start = Instant::now();
    }

    /// Notes that `key` was seen pending now (for the latency histogram), if not already noted.
    pub fn seen_pending(&mut self, key: &str) {
        if !self.first_seen.contains_key(key) {
            self.first_seen.insert(key.to_string(), Instant::now());
        }
    }
}

async fn bind(client: Client, b: BindDecision) -> (BindDecision, BindOutcome) {
    let api: Api<Pod> = Api::namespaced(client, &b.pod.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(b.pod.name.clone()),
            namespace: Some(b.pod.namespace.clone()),
            uid: b.pod.uid.clone(),
            annotations: Some(BTreeMap::from([(
                keys::ASSIGNED_GPUS.to_string(),
                b.assigned_gpus.clone(),
            )])),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(b.node.clone()),
            ..ObjectReference::default()
        },
    };
    let r: Result<serde_json::Value, kube::Error> = api
        .create_subresource("binding", &b.pod.name, &PostParams::default(), &binding)
        .await;
    let o = match r {
        Ok(_) => BindOutcome::Bound,
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => BindOutcome::Gone,
        Err(e) => BindOutcome::Failed(e.to_string()),
    };
    (b, o)
}

async fn event(
    client: Client,
    pod: PodRef,
    type_: String,
    reason: String,
    message: String,
) -> bool {
    let api: Api<Event> = Api::namespaced(client, &pod.namespace);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut message = message;
    if message.len() > 1000 {
        let mut cut = 1000;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let ev = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", pod.name)),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: pod.uid.clone(),
            ..ObjectReference::default()
        },
        type_: Some(type_),
        reason: Some(reason),
        message: Some(message),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        reporting_component: Some(COMPONENT.into()),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        ..Event::default()
    };
    match api.create(&PostParams::default(), &ev).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("event on {}: {e}", pod.key());
            false
        }
    }
}

/// The text of an unschedulable Pod's condition: why, then where it stands (position, estimated start).
pub fn condition_message(message: &str, outlook: &str) -> String {
    if outlook.is_empty() {
        message.to_string()
    } else {
        format!("{message}. {outlook}")
    }
}

/// Writes the Pod's `PodScheduled=False` condition, reason `Unschedulable`, with the explanation
/// (as kube-scheduler does); the controller mirrors it into the `GPUWorkload`'s `Scheduled` condition.
async fn mark_unschedulable(client: Client, pod: PodRef, message: String) -> bool {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": now,
    }]}});
    match api
        .patch_status(
            &pod.name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => true,
        // Gone meanwhile: nothing to explain.
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        Err(e) => {
            tracing::warn!("condition on {}: {e}", pod.key());
            false
        }
    }
}

async fn delete(client: Client, pod: PodRef) -> bool {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let dp = DeleteParams {
        preconditions: pod.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name, &dp).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
        Err(e) => {
            tracing::warn!("delete {}: {e}", pod.key());
            false
        }
    }
}

impl Binder {
    /// Executes `decisions` (binds concurrently) and reports every outcome back to `model`.
    pub async fn execute(&mut self, model: &mut Model, decisions: Vec<Decision>) -> ExecReport {
        let mut report = ExecReport::default();
        let mut binds: Vec<(usize, BindDecision)> = Vec::new();
        let mut gangs: Vec<Option<String>> = Vec::new();
        let mut events: Vec<EventArgs> = Vec::new();
        let mut deletes: Vec<PodRef> = Vec::new();
        let mut unschedulable: Vec<(PodRef, String)> = Vec::new();
        for d in decisions {
            match d {
                Decision::Bind { pods, gang } => {
                    let g = gangs.len();
                    gangs.push(gang);
                    binds.extend(pods.into_iter().map(|p| (g, p)));
                }
                Decision::Unschedulable {
                    pods,
                    message,
                    outlook,
                    event,
                } => {
                    let condition = condition_message(&message, &outlook);
                    for p in pods {
                        self.seen_pending(&p.key());
                        unschedulable.push((p.clone(), condition.clone()));
                        if event {
                            self.metrics.failed.inc();
                            events.push((
                                p,
                                "Warning".into(),
                                "FailedScheduling".into(),
                                message.clone(),
                            ));
                        }
                    }
                }
                Decision::Preempt {
                    preemptor,
                    priority,
                    victims,
                } => {
                    self.seen_pending(&preemptor.key());
                    let names: Vec<String> = victims.iter().map(PodRef::key).collect();
                    events.push((
                        preemptor.clone(),
                        "Normal".to_string(),
                        "Preempting".to_string(),
                        format!(
                            "preempting {} to make room: {}",
                            names.len(),
                            names.join(", ")
                        ),
                    ));
                    for v in victims {
                        events.push((
                            v.clone(),
                            "Normal".to_string(),
                            "Preempted".to_string(),
                            format!(
                                "preempted by {} (priority {priority}) of scheduler {}",
                                preemptor.key(),
                                keys::SCHEDULER_NAME
                            ),
                        ));
                        deletes.push(v);
                    }
                }
            }
        }
        // Binds, concurrently.
        let client = self.client.clone();
        let outcomes: Vec<(usize, BindDecision, BindOutcome)> = stream::iter(binds)
            .map(move |(g, b)| {
                let fut = bind(client.clone(), b);
                async move {
                    let (b, o) = fut.await;
                    (g, b, o)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut gang_failed: HashSet<usize> = HashSet::new();
        let mut gang_bound: HashMap<usize, Vec<PodRef>> = HashMap::new();
        for (g, b, o) in outcomes {
            let key = b.pod.key();
            match o {
                BindOutcome::Bound => {
                    report.bound += 1;
                    self.metrics.bound.inc();
                    let started = self.first_seen.remove(&key).unwrap_or(self.cycle_start);
                    self.metrics
                        .latency
                        .observe(started.elapsed().as_secs_f64());
                    gang_bound.entry(g).or_default().push(b.pod);
                }
                BindOutcome::Gone => {
                    report.bind_failed += 1;
                    self.metrics.failed.inc();
                    model.forget(&key, true);
                    gang_failed.insert(g);
                }
                BindOutcome::Failed(e) => {
                    tracing::warn!("bind {key} to {}: {e}", b.node);
                    report.bind_failed += 1;
                    self.metrics.failed.inc();
                    model.forget(&key, false);
                    gang_failed.insert(g);
                }
            }
        }
        // A gang bound only in part: delete the bound members so the controller re-creates them.
        for g in gang_failed {
            let Some(Some(name)) = gangs.get(g) else {
                continue;
            };
            for p in gang_bound.remove(&g).unwrap_or_default() {
                events.push((
                    p.clone(),
                    "Warning".to_string(),
                    "GangBindFailed".to_string(),
                    format!("another pod of gang {name} could not be bound; deleting this one so the gang is placed again as a whole"),
                ));
                deletes.push(p);
            }
        }
        let client = self.client.clone();
        report.events = stream::iter(events)
            .map(move |(p, t, r, m): EventArgs| event(client.clone(), p, t, r, m))
            .buffer_unordered(CONCURRENCY)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        let client = self.client.clone();
        report.conditions = stream::iter(unschedulable)
            .map(move |(p, m)| mark_unschedulable(client.clone(), p, m))
            .buffer_unordered(CONCURRENCY)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        for p in &deletes {
            model.mark_terminating(&p.key());
        }
        let client = self.client.clone();
        report.deleted = stream::iter(deletes)
            .map(move |p| delete(client.clone(), p))
            .buffer_unordered(CONCURRENCY)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        self.metrics.preempted.inc_by(report.deleted as u64);
        report
    }
}

/// A watch input of the scheduler.
enum Input {
    Node(Box<watcher::Event<Node>>),
    Pod(Box<watcher::Event<Pod>>),
    GpuNode(Box<watcher::Event<GPUNode>>),
}

/// The Node a `GPUNode` describes: `spec.nodeName`, else its own name.
fn gpu_node_target(o: &GPUNode) -> Option<String> {
    o.spec.node_name.clone().or_else(|| o.metadata.name.clone())
}

fn gpu_node_view(o: &GPUNode) -> GpuNodeView {
    o.status.as_ref().map(GpuNodeView::from).unwrap_or_default()
}

/// Buffers of a re-list in progress (objects seen since `Init`).
#[derive(Default)]
struct Relist {
    nodes: Option<HashSet<String>>,
    pods: Option<HashSet<PodKey>>,
    synced_nodes: bool,
    synced_pods: bool,
}

fn pod_key(p: &Pod) -> PodKey {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

/// Applies one watch input to the model; returns whether anything may have changed.
fn apply(model: &mut Model, relist: &mut Relist, input: Input) {
    match input {
        Input::Node(e) => match *e {
            watcher::Event::Init => relist.nodes = Some(HashSet::new()),
            watcher::Event::InitApply(n) | watcher::Event::Apply(n) => {
                if let (Some(set), Some(name)) = (relist.nodes.as_mut(), &n.metadata.name) {
                    set.insert(name.clone());
                }
                model.apply_node(&n);
            }
            watcher::Event::Delete(n) => {
                if let Some(name) = &n.metadata.name {
                    model.delete_node(name);
                }
            }
            watcher::Event::InitDone => {
                if let Some(set) = relist.nodes.take() {
                    model.retain_nodes(&set);
                }
                relist.synced_nodes = true;
            }
        },
        Input::Pod(e) => match *e {
            watcher::Event::Init => relist.pods = Some(HashSet::new()),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                if let Some(set) = relist.pods.as_mut() {
                    set.insert(pod_key(&p));
                }
                model.apply_pod(&p);
            }
            watcher::Event::Delete(p) => model.delete_pod(
                p.metadata.namespace.as_deref().unwrap_or("default"),
                p.metadata.name.as_deref().unwrap_or(""),
            ),
            watcher::Event::InitDone => {
                if let Some(set) = relist.pods.take() {
                    model.retain_pods(&set);
                }
                relist.synced_pods = true;
            }
        },
        Input::GpuNode(e) => match *e {
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                if let Some(name) = gpu_node_target(&o) {
                    model.apply_gpu_node(&name, gpu_node_view(&o));
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(name) = gpu_node_target(&o) {
                    model.delete_gpu_node(&name);
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        },
    }
}

/// Serves `GET /metrics` (and `/healthz`) in the background.
async fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<(), Error> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Metrics { addr, source })?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.encode() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server: {e}");
        }
    });
    Ok(())
}

/// The event, or `None` after logging the watch error (the watcher retries with backoff).
fn logged<T>(e: Result<T, watcher::Error>, what: &str) -> Option<T> {
    match e {
        Ok(e) => Some(e),
        Err(err) => {
            tracing::warn!("watch {what}: {err}");
            None
        }
    }
}

/// Runs the scheduler until the watches end: watch, decide, bind, repeat.
pub async fn run(client: Client, opts: SchedulerOptions) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = opts.metrics_addr {
        serve_metrics(addr, metrics.clone()).await?;
    }
    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .filter_map(|e| std::future::ready(logged(e, "nodes").map(|e| Input::Node(Box::new(e)))));
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .filter_map(|e| std::future::ready(logged(e, "pods").map(|e| Input::Pod(Box::new(e)))));
    let gpu_nodes = watcher(
        Api::<GPUNode>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(|e| std::future::ready(logged(e, "GPUNodes").map(|e| Input::GpuNode(Box::new(e)))));
    let mut all = stream::select_all([nodes.boxed(), pods.boxed(), gpu_nodes.boxed()]);
    tokio::spawn(async move {
        while let Some(i) = all.next().await {
            if tx.send(i).await.is_err() {
                break;
            }
        }
    });
    let mut model = Model::new(opts.strategy, opts.namespace);
    let mut binder = Binder::new(client, metrics);
    let mut relist = Relist::default();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            i = rx.recv() => {
                let Some(i) = i else { return Err(Error::WatchEnded) };
                apply(&mut model, &mut relist, i);
                while let Ok(i) = rx.try_recv() {
                    apply(&mut model, &mut relist, i);
                }
            }
            _ = tick.tick() => {}
        }
        if !(relist.synced_nodes && relist.synced_pods) {
            continue;
        }
        binder.begin_cycle();
        let decisions = model.schedule(k8s_openapi::jiff::Timestamp::now().as_second());
        if decisions.is_empty() {
            continue;
        }
        let r = binder.execute(&mut model, decisions).await;
        tracing::debug!(
            "bound {} (failed {}), {} events, {} deleted",
            r.bound,
            r.bind_failed,
            r.events,
            r.deleted
        );
    }
}

//! The controller (`gantry k8s controller`): turns [`GPUWorkload`]s into Pods and mirrors them back.
//!
//! A kube-runtime [`Controller`] on `GPUWorkload`s owning Pods calls [`reconcile`] (errors go to
//! [`error_policy`], which requeues with exponential backoff). Only the holder of the Lease
//! ([`lease`]) runs it, so two controller replicas are safe.
//!
//! One reconcile of a workload:
//! 1. Deleted: delete its Pods, then remove the `gantry.dev/cleanup` finalizer. Otherwise add the
//!    finalizer if missing.
//! 2. Finished (Succeeded/Failed): the phase is final; after `ttlAfterFinished` its Pods are deleted.
//! 3. Invalid spec: phase Failed, reason `InvalidSpec`.
//! 4. Not yet admitted: the queue rule of [`admit`]; while refused it stays Pending with the reason in
//!    the `Admitted` condition and is looked at again every 30 s.
//! 5. Admitted: every missing replica Pod is created in this pass (a gang's Pods are created
//!    together; the scheduler binds all or none). Create-if-absent: a 409 answer means the Pod exists.
//! 6. Failed Pods are deleted and recreated while `status.retriesUsed < spec.retries` (Job
//!    `backoffLimit` semantics); then the workload fails with `BackoffLimitExceeded`.
//! 7. Pod phases, nodes and the scheduler's GPU annotation are mirrored into the status (conditions
//!    `Admitted`, `Scheduled`, `Running`, `Completed`), written with server-side apply only when it
//!    changed: reconciling twice issues no write.
//!
//! Events (`events.k8s.io`) are published on admission, Pod creation, retries, start and finish.
//!
//! Cost ([`billing`]): `status.cost` of a workload that ran (when it finishes, and at most once a
//! minute while it runs, so running workloads are requeued every [`billing::COST_REFRESH`]) and the
//! month-to-date `status.spentThisMonth` of its `GPUQueue`, priced from the prices ConfigMap.

pub mod billing;
pub mod lease;

use crate::crd::{
    GPUQueue, GPUQueueSpec, GPUWorkload, GPUWorkloadSpec, GPUWorkloadStatus, ReplicaStatus,
    WorkloadCondition, WorkloadPhase,
};
use crate::keys;
use crate::pods::{PodError, pod_name, pods_for, selector};
use futures::StreamExt;
use gantry_core::spec::{PriorityClass, Quota};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use lease::{LEASE_DURATION, LeaseLock, RENEW_EVERY};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// Field manager of the controller's server-side applies.
pub const FIELD_MANAGER: &str = "gantry-controller";
/// How often a Pending (not admitted) workload is looked at again.
pub const PENDING_RECHECK: Duration = Duration::from_secs(30);
/// How often a live workload is looked at without any change.
pub const RESYNC: Duration = Duration::from_secs(300);

/// What `gantry k8s controller` is given.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Watch only this namespace (absent = all namespaces).
    pub namespace: Option<String>,
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// This replica's identity in the Lease (usually the Pod name).
    pub identity: String,
    /// The ConfigMap holding the operator's prices.
    pub prices: crate::prices::PricesConfigMap,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Pods could not be built from the workload.
    #[error("building Pods: {0}")]
    Pods(#[from] PodError),
    /// The workload has no namespace.
    #[error("GPUWorkload {0} has no namespace")]
    NoNamespace(String),
}

/// A source of the current time (fixed in tests).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// The current time.
    pub clock: Clock,
    /// Priority values by class name (the shipped defaults).
    pub priorities: BTreeMap<String, i64>,
    /// Consecutive failures per workload, for the backoff of [`error_policy`].
    failures: Mutex<HashMap<String, u32>>,
    /// Held from reading the queue's usage until the decision is written, so that workloads
    /// reconciled concurrently cannot both take the last quota.
    admission: tokio::sync::Mutex<()>,
    /// Where the prices are.
    pub prices_source: crate::prices::PricesConfigMap,
    /// The prices in force and when the ConfigMap was last read.
    prices: Mutex<(crate::prices::PriceBook, Option<Timestamp>)>,
    /// GPU models of the nodes, with when they were read.
    node_gpus: Mutex<Option<(Timestamp, crate::cost::NodeGpuMap)>>,
    /// When each queue's month-to-date spend was last computed.
    queue_spend_at: Mutex<HashMap<String, Timestamp>>,
}

impl Context {
    /// A context reporting events as `gantry-controller` instance `identity`, on the system clock.
    pub fn new(client: Client, identity: &str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: Some(identity.to_string()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            clock: Arc::new(Timestamp::now),
            priorities: PriorityClass::defaults()
                .into_iter()
                .map(|c| (c.name, c.value))
                .collect(),
            failures: Mutex::new(HashMap::new()),
            admission: tokio::sync::Mutex::new(()),
            prices_source: crate::prices::PricesConfigMap::default(),
            prices: Mutex::new((crate::prices::PriceBook::default(), None)),
            node_gpus: Mutex::new(None),
            queue_spend_at: Mutex::new(HashMap::new()),
        }
    }

    /// The same context reading prices from `source`.
    pub fn with_prices(mut self, source: crate::prices::PricesConfigMap) -> Self {
        self.prices_source = source;
        self
    }

    /// The same context on `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The priority value of a workload (0 for none or an unknown class).
    pub fn priority(&self, spec: &GPUWorkloadSpec) -> i64 {
        spec.priority_class
            .as_ref()
            .and_then(|c| self.priorities.get(c))
            .copied()
            .unwrap_or(0)
    }

    /// Publishes an event about `wl`; a failure is logged, never fatal.
    async fn event(&self, wl: &GPUWorkload, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &wl.object_ref(&())).await {
            warn!(workload = %wl.name_any(), "publishing event {reason}: {e}");
        }
    }

    /// Key of a workload in the failure counts.
    fn key(wl: &GPUWorkload) -> String {
        format!("{}/{}", wl.namespace().unwrap_or_default(), wl.name_any())
    }
}

/// Runs the controller until its watch ends: waits for the Lease, reconciles while holding it, and
/// stops reconciling (then waits again) as soon as a renewal fails.
pub async fn run(client: Client, opts: ControllerOptions) -> Result<(), Error> {
    let lock = LeaseLock::new(
        client.clone(),
        &opts.lease_namespace,
        &opts.lease_name,
        &opts.identity,
    );
    let ctx =
        Arc::new(Context::new(client.clone(), &opts.identity).with_prices(opts.prices.clone()));
    loop {
        loop {
            match lock.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!("leader election: {e}"),
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
        info!(identity = %opts.identity, "leading: reconciling GPUWorkloads");
        billing::refresh_prices(&ctx, true).await;
        let (workloads, pods): (Api<GPUWorkload>, Api<Pod>) = match &opts.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let controller = Controller::new(workloads, watcher::Config::default())
            .owns(pods, watcher::Config::default().labels(keys::WORKLOAD))
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|res| async move {
                if let Err(e) = res {
                    warn!("reconcile: {e}");
                }
            });
        let hold = async {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match lock.try_acquire_or_renew().await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => return,
                    Err(e) => {
                        warn!("renewing the Lease: {e}");
                        // Stop one renewal period before others may take over.
                        if last_renewal.elapsed() + RENEW_EVERY >= LEASE_DURATION {
                            return;
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = controller => return Ok(()),
            () = hold => warn!(identity = %opts.identity, "lost the Lease: stopped reconciling"),
        }
    }
}

/// Requeues a failed reconcile after 5 s, doubling per consecutive failure up to 5 minutes.
pub fn error_policy(wl: Arc<GPUWorkload>, err: &Error, ctx: Arc<Context>) -> Action {
    let n = match ctx.failures.lock() {
        Ok(mut m) => {
            let n = m.entry(Context::key(&wl)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    warn!(workload = %wl.name_any(), failures = n, "reconcile failed: {err}");
    Action::requeue(backoff(n))
}

/// The delay after `failures` consecutive failures: 5 s × 2^(failures-1), at most 300 s.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// Reconciles one workload (see the module documentation for the steps).
pub async fn reconcile(wl: Arc<GPUWorkload>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = wl.name_any();
    let ns = wl
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let workloads: Api<GPUWorkload> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let action = reconcile_inner(&wl, &ctx, &workloads, &pods_api).await?;
    if let Ok(mut m) = ctx.failures.lock() {
        m.remove(&Context::key(&wl));
    }
    Ok(action)
}

/// Whether the workload carries the controller's finalizer.
fn has_finalizer(wl: &GPUWorkload) -> bool {
    wl.finalizers().iter().any(|f| f == keys::FINALIZER)
}

/// Sets the finalizer list (merge patch guarded by the resourceVersion: a concurrent change is a 409).
async fn set_finalizers(
    api: &Api<GPUWorkload>,
    wl: &GPUWorkload,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": wl.resource_version()}
    });
    api.patch(
        &wl.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

/// Lists the workload's Pods.
async fn list_pods(api: &Api<Pod>, name: &str) -> Result<Vec<Pod>, kube::Error> {
    Ok(api
        .list(&ListParams::default().labels(&selector(name)))
        .await?
        .items)
}

/// Deletes a Pod; one already gone is fine.
async fn delete_pod(api: &Api<Pod>, name: &str) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The steps of [`reconcile`].
async fn reconcile_inner(
    wl: &GPUWorkload,
    ctx: &Context,
    workloads: &Api<GPUWorkload>,
    pods_api: &Api<Pod>,
) -> Result<Action, Error> {
    let name = wl.name_any();
    if wl.metadata.deletion_timestamp.is_some() {
        if has_finalizer(wl) {
            let pods = list_pods(pods_api, &name).await?;
            for p in &pods {
                delete_pod(pods_api, &p.name_any()).await?;
            }
            let rest: Vec<String> = wl
                .finalizers()
                .iter()
                .filter(|f| *f != keys::FINALIZER)
                .cloned()
                .collect();
            set_finalizers(workloads, wl, rest).await?;
            info!(workload = %name, pods = pods.len(), "cleaned up");
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer(wl) {
        let mut all = wl.finalizers().to_vec();
        all.push(keys::FINALIZER.to_string());
        set_finalizers(workloads, wl, all).await?;
    }

    let now = (ctx.clock)();
    let mut written = wl.status.clone();
    let mut status = written.clone().unwrap_or_default();
    status.gpus = Some(gpus_text(&wl.spec));
    status.observed_generation = wl.metadata.generation;
    let mut action = Action::requeue(RESYNC);
    let mut pods = list_pods(pods_api, &name).await?;

    if status.phase.is_some_and(WorkloadPhase::is_finished) {
        action = ttl_cleanup(wl, &status, &pods, pods_api, now).await?;
    } else if let Err(problems) = wl.spec.validate(&name) {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let msg = text.join("; ");
        finish(&mut status, WorkloadPhase::Failed, "InvalidSpec", &msg, now);
        ctx.event(wl, EventType::Warning, "InvalidSpec", msg).await;
        action = Action::await_change();
    } else {
        let admitted = condition_is(&status, "Admitted", "True") || !pods.is_empty();
        if !admitted {
            let _one_at_a_time = ctx.admission.lock().await;
            match admission(ctx, wl).await? {
                Decision::Admit(msg) => {
                    set_condition(&mut status, "Admitted", "True", "QuotaAvailable", &msg, now);
                    status.phase = Some(WorkloadPhase::Admitted);
                    status.reason = None;
                    status.message = None;
                    // Written before the lock is released: the next decision counts this one.
                    write_status(workloads, wl, &written, &status).await?;
                    written = Some(status.clone());
                    ctx.event(wl, EventType::Normal, "Admitted", msg).await;
                }
                Decision::Wait { reason, message } => {
                    let before = status.reason.clone();
                    set_condition(&mut status, "Admitted", "False", reason, &message, now);
                    status.phase = Some(WorkloadPhase::Pending);
                    status.reason = Some(reason.to_string());
                    status.message = Some(message.clone());
                    write_status(workloads, wl, &written, &status).await?;
                    if before.as_deref() != Some(reason) {
                        ctx.event(wl, EventType::Normal, reason, message).await;
                    }
                    return Ok(Action::requeue(PENDING_RECHECK));
                }
            }
        }
        create_missing(wl, ctx, pods_api, &mut pods).await?;
        retry_failed(wl, ctx, pods_api, &mut pods, &mut status, now).await?;
        if !status.phase.is_some_and(WorkloadPhase::is_finished) {
            mirror(wl, ctx, &pods, &mut status, now).await;
        }
        if status.phase == Some(WorkloadPhase::Running) {
            action = Action::requeue(billing::COST_REFRESH);
        }
    }
    let cost_changed = billing::update_workload_cost(ctx, wl, &mut status, now).await;
    write_status(workloads, wl, &written, &status).await?;
    if cost_changed {
        let finished = status.phase.is_some_and(WorkloadPhase::is_finished);
        billing::update_queue_spend(ctx, wl.spec.queue_name(), now, finished).await;
    }
    Ok(action)
}

/// Creates every replica Pod that does not exist yet; a 409 answer means it exists already.
async fn create_missing(
    wl: &GPUWorkload,
    ctx: &Context,
    api: &Api<Pod>,
    pods: &mut Vec<Pod>,
) -> Result<(), Error> {
    let existing: BTreeSet<String> = pods.iter().map(ResourceExt::name_any).collect();
    let mut created = 0;
    for pod in pods_for(wl, ctx.priority(&wl.spec))? {
        if existing.contains(&pod.name_any()) {
            continue;
        }
        match api.create(&PostParams::default(), &pod).await {
            Ok(p) => {
                pods.push(p);
                created += 1;
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    if created > 0 {
        let msg = format!(
            "created {created} Pod(s) with schedulerName {}",
            keys::SCHEDULER_NAME
        );
        ctx.event(wl, EventType::Normal, "PodsCreated", msg).await;
    }
    Ok(())
}

/// Deletes failed Pods for a retry while retries are left (they are recreated on the next pass);
/// otherwise fails the workload.
async fn retry_failed(
    wl: &GPUWorkload,
    ctx: &Context,
    api: &Api<Pod>,
    pods: &mut Vec<Pod>,
    status: &mut GPUWorkloadStatus,
    now: Timestamp,
) -> Result<(), Error> {
    let failed: Vec<String> = pods
        .iter()
        .filter(|p| pod_phase(p) == Some("Failed"))
        .map(ResourceExt::name_any)
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    if status.retries_used < wl.spec.retries {
        for name in &failed {
            delete_pod(api, name).await?;
        }
        pods.retain(|p| !failed.contains(&p.name_any()));
        status.retries_used += 1;
        let msg = format!(
            "retry {} of {}: recreating {}",
            status.retries_used,
            wl.spec.retries,
            failed.join(", ")
        );
        ctx.event(wl, EventType::Warning, "Retrying", msg).await;
    } else {
        let msg = format!(
            "{} failed after {} retries",
            failed.join(", "),
            status.retries_used
        );
        finish(
            status,
            WorkloadPhase::Failed,
            "BackoffLimitExceeded",
            &msg,
            now,
        );
        ctx.event(wl, EventType::Warning, "Failed", msg).await;
    }
    Ok(())
}

/// Deletes the Pods of a finished workload once `ttlAfterFinished` has passed since completion.
async fn ttl_cleanup(
    wl: &GPUWorkload,
    status: &GPUWorkloadStatus,
    pods: &[Pod],
    api: &Api<Pod>,
    now: Timestamp,
) -> Result<Action, Error> {
    let ttl = wl
        .spec
        .ttl_after_finished
        .as_ref()
        .and_then(|t| t.seconds().ok());
    let done = status
        .completion_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let (Some(ttl), Some(done)) = (ttl, done) else {
        return Ok(Action::await_change());
    };
    let due = done + SignedDuration::from_secs(i64::try_from(ttl).unwrap_or(i64::MAX / 2));
    if now < due {
        let wait = due.duration_since(now).unsigned_abs();
        return Ok(Action::requeue(wait.max(Duration::from_secs(1))));
    }
    for p in pods {
        delete_pod(api, &p.name_any()).await?;
    }
    Ok(Action::await_change())
}

/// Writes the status with server-side apply when it differs from the one last `written`.
async fn write_status(
    api: &Api<GPUWorkload>,
    wl: &GPUWorkload,
    written: &Option<GPUWorkloadStatus>,
    new: &GPUWorkloadStatus,
) -> Result<(), kube::Error> {
    if written.as_ref() == Some(new) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": GPUWorkload::api_version(&()),
        "kind": GPUWorkload::kind(&()),
        "metadata": {"name": wl.name_any()},
        "status": new,
    });
    api.patch_status(
        &wl.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// A Pod's phase.
fn pod_phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Mirrors the Pods into the status: replicas, nodes, GPUs, conditions, phase and times.
async fn mirror(
    wl: &GPUWorkload,
    ctx: &Context,
    pods: &[Pod],
    status: &mut GPUWorkloadStatus,
    now: Timestamp,
) {
    let name = wl.name_any();
    let n = wl.spec.replicas.max(0);
    let by_name: BTreeMap<String, &Pod> = pods.iter().map(|p| (p.name_any(), p)).collect();
    status.replicas = (0..n)
        .filter_map(|i| {
            let pod = pod_name(&name, i);
            let p = by_name.get(&pod)?;
            Some(ReplicaStatus {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                pod,
                phase: pod_phase(p).map(str::to_string),
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                gpus: p.annotations().get(keys::ASSIGNED_GPUS).cloned(),
            })
        })
        .collect();
    let nodes: BTreeSet<&str> = status
        .replicas
        .iter()
        .filter_map(|r| r.node.as_deref())
        .collect();
    status.node = (!nodes.is_empty()).then(|| nodes.into_iter().collect::<Vec<_>>().join(","));
    let count = |phase: &str| {
        status
            .replicas
            .iter()
            .filter(|r| r.phase.as_deref() == Some(phase))
            .count() as i64
    };
    let (running, succeeded) = (count("Running"), count("Succeeded"));
    let bound = status.replicas.iter().filter(|r| r.node.is_some()).count() as i64;
    if bound == n && n > 0 {
        let msg = format!("all {n} replica(s) bound");
        set_condition(status, "Scheduled", "True", "AllReplicasBound", &msg, now);
    } else if let Some(why) = unschedulable_message(pods) {
        // The scheduler's explanation: per filter, how many nodes it rejected and why.
        let msg = format!("{bound} of {n} replica(s) bound; {why}");
        set_condition(status, "Scheduled", "False", "Unschedulable", &msg, now);
    } else {
        let msg = format!("{bound} of {n} replica(s) bound");
        set_condition(
            status,
            "Scheduled",
            "False",
            "WaitingForScheduler",
            &msg,
            now,
        );
    }
    let was = status.phase;
    if succeeded == n && n > 0 {
        // Finished between two passes without being seen running: its Pods say when it started
        // (the cost needs it).
        if status.start_time.is_none() {
            status.start_time = pods
                .iter()
                .filter_map(|p| p.status.as_ref()?.start_time.as_ref())
                .map(|t| t.0)
                .min()
                .map(|t| t.to_string());
        }
        finish(
            status,
            WorkloadPhase::Succeeded,
            "Succeeded",
            "every replica succeeded",
            now,
        );
        set_condition(status, "Running", "False", "Completed", "finished", now);
        ctx.event(
            wl,
            EventType::Normal,
            "Succeeded",
            "every replica succeeded".into(),
        )
        .await;
    } else if running > 0 && running + succeeded >= wl.spec.gang() {
        status.phase = Some(WorkloadPhase::Running);
        let msg = format!("{running} of {n} replica(s) running");
        set_condition(status, "Running", "True", "GangRunning", &msg, now);
        if status.start_time.is_none() {
            let started = pods
                .iter()
                .filter_map(|p| p.status.as_ref()?.start_time.as_ref())
                .map(|t| t.0)
                .min()
                .unwrap_or(now);
            status.start_time = Some(started.to_string());
        }
        if was != Some(WorkloadPhase::Running) {
            ctx.event(wl, EventType::Normal, "Started", msg).await;
        }
    } else {
        status.phase = Some(WorkloadPhase::Admitted);
        let msg = format!("{running} of {n} replica(s) running");
        set_condition(status, "Running", "False", "WaitingForPods", &msg, now);
    }
}

/// Why the scheduler cannot place an unbound Pod of the workload: the message of its
/// `PodScheduled=False` condition with reason `Unschedulable` (the first such Pod, by name).
pub fn unschedulable_message(pods: &[Pod]) -> Option<String> {
    let mut pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.spec.as_ref().is_none_or(|s| s.node_name.is_none()))
        .collect();
    pods.sort_by_key(|p| p.name_any());
    pods.into_iter().find_map(|p| {
        p.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })?
            .message
            .clone()
    })
}

/// Marks the workload finished with `phase` and `reason`.
fn finish(
    status: &mut GPUWorkloadStatus,
    phase: WorkloadPhase,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    status.phase = Some(phase);
    status.reason = Some(reason.to_string());
    status.message = Some(message.to_string());
    if status.completion_time.is_none() {
        status.completion_time = Some(now.to_string());
    }
    set_condition(status, "Completed", "True", reason, message, now);
}

/// Whether condition `type_` has `value`.
fn condition_is(status: &GPUWorkloadStatus, type_: &str, value: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == value)
}

/// Sets a condition; its `lastTransitionTime` changes only when its status does.
pub fn set_condition(
    status: &mut GPUWorkloadStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let fresh = WorkloadCondition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_transition_time: Some(now.to_string()),
    };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let since = if c.status == value {
                c.last_transition_time.clone()
            } else {
                fresh.last_transition_time.clone()
            };
            *c = WorkloadCondition {
                last_transition_time: since,
                ..fresh
            };
        }
        None => status.conditions.push(fresh),
    }
}

/// GPUs of one replica in milli: count × 1000, the share, or a MIG instance's compute slices / 7.
pub fn replica_gpu_milli(spec: &GPUWorkloadSpec) -> u64 {
    let Some(g) = &spec.resources.gpu else {
        return 0;
    };
    if let Some(c) = g.count {
        return u64::try_from(c).unwrap_or(0) * 1000;
    }
    if let Some(s) = g.share {
        return u64::try_from(s).unwrap_or(0);
    }
    if let Some(profile) = &g.mig {
        let slices: u64 = profile
            .split('g')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        return slices * 1000 / 7;
    }
    0
}

/// GPUs of the whole workload in milli (all replicas).
pub fn workload_gpu_milli(spec: &GPUWorkloadSpec) -> u64 {
    replica_gpu_milli(spec) * u64::try_from(spec.replicas).unwrap_or(0)
}

/// The GPUs column: `8`, `0.5`, `2x mig-1g.10gb`.
fn gpus_text(spec: &GPUWorkloadSpec) -> String {
    if let Some(mig) = spec.resources.gpu.as_ref().and_then(|g| g.mig.as_ref()) {
        return format!("{}x mig-{mig}", spec.replicas);
    }
    let milli = workload_gpu_milli(spec);
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{}", milli as f64 / 1000.0)
    }
}

/// The outcome of admission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted, with why.
    Admit(String),
    /// Not yet: the condition reason and message.
    Wait {
        /// `QueueNotFound`, `QuotaExceeded` or `HigherPriorityPending`.
        reason: &'static str,
        /// Human-readable detail.
        message: String,
    },
}

/// Whether a workload holds quota: admitted and not finished.
fn holds_quota(w: &GPUWorkload) -> bool {
    w.status.as_ref().is_some_and(|s| {
        condition_is(s, "Admitted", "True") && !s.phase.is_some_and(WorkloadPhase::is_finished)
    })
}

/// Whether a workload waits for admission.
fn is_pending(w: &GPUWorkload) -> bool {
    !holds_quota(w)
        && !w
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(WorkloadPhase::is_finished)
}

/// Milli of a quota's GPUs (absent = `absent`).
fn quota_gpus(q: Option<&Quota>, absent: Option<u64>) -> Option<u64> {
    match q.and_then(|q| q.gpus.as_ref()) {
        Some(g) => Some(g.milli().unwrap_or(0)),
        None => absent,
    }
}

/// The GPU cap of a queue in milli (`None` = unlimited): `guaranteed.gpus` plus the borrowing limit.
///
/// The borrowing limit is `borrowingLimit.gpus`; with no `borrowingLimit` (or no `gpus` in it) a queue
/// in a cohort may borrow without limit and a queue without a cohort borrows nothing.
pub fn queue_cap(q: &GPUQueueSpec) -> Option<u64> {
    let guaranteed = quota_gpus(Some(&q.guaranteed), Some(0)).unwrap_or(0);
    let borrow = match (&q.borrowing_limit, &q.cohort) {
        (Some(b), _) if b.gpus.is_some() => quota_gpus(Some(b), None),
        (_, Some(_)) => None,
        (_, None) => Some(0),
    };
    borrow.map(|b| guaranteed + b)
}

/// The admission rule (pure): a workload is admitted into its queue when the GPUs of the queue's
/// admitted, unfinished workloads plus its own fit the queue's cap ([`queue_cap`]), and no pending
/// workload of the same queue with a higher priority would fit first. A missing GPUQueue named
/// `default` admits everything; any other missing queue keeps the workload pending. All replicas are
/// admitted together (gang: all or nothing).
pub fn admit(
    wl: &GPUWorkload,
    queue: Option<&GPUQueueSpec>,
    all: &[GPUWorkload],
    priority: impl Fn(&GPUWorkloadSpec) -> i64,
) -> Decision {
    let qname = wl.spec.queue_name();
    let demand = workload_gpu_milli(&wl.spec);
    let Some(queue) = queue else {
        if qname == "default" {
            return Decision::Admit(
                "no GPUQueue \"default\": the default queue is unlimited".into(),
            );
        }
        return Decision::Wait {
            reason: "QueueNotFound",
            message: format!("GPUQueue {qname:?} does not exist"),
        };
    };
    let same = |w: &&GPUWorkload| {
        w.spec.queue_name() == qname
            && (w.namespace(), w.name_any()) != (wl.namespace(), wl.name_any())
    };
    let used: u64 = all
        .iter()
        .filter(same)
        .filter(|w| holds_quota(w))
        .map(|w| workload_gpu_milli(&w.spec))
        .sum();
    let cap = queue_cap(queue);
    let fits = |d: u64| cap.is_none_or(|c| used + d <= c);
    let show = |m: u64| format!("{}", m as f64 / 1000.0);
    let position = || {
        let (at, of) = admission_position(wl, all, &priority);
        format!(
            "position {at} of {of} waiting for admission in queue {qname} (order: priority, then age)"
        )
    };
    if !fits(demand) {
        return Decision::Wait {
            reason: "QuotaExceeded",
            message: format!(
                "needs {} GPU(s); queue {qname} uses {} of {} (its guaranteed quota plus borrowing limit); {}",
                show(demand),
                show(used),
                cap.map_or("unlimited".into(), show),
                position()
            ),
        };
    }
    let mine = priority(&wl.spec);
    if let Some(first) = all
        .iter()
        .filter(same)
        .filter(|w| is_pending(w) && priority(&w.spec) > mine)
        .find(|w| fits(workload_gpu_milli(&w.spec)) && workload_gpu_milli(&w.spec) > 0)
        .filter(|_| demand > 0)
    {
        return Decision::Wait {
            reason: "HigherPriorityPending",
            message: format!(
                "{} has a higher priority and goes first; {}",
                first.name_any(),
                position()
            ),
        };
    }
    Decision::Admit(format!(
        "queue {qname}: {} + {} of {} GPU(s)",
        show(used),
        show(demand),
        cap.map_or("unlimited".into(), show)
    ))
}

/// Where `wl` stands among the workloads of its queue waiting for admission (itself included), in
/// admission order: priority, then age, then namespace and name. `(position, how many wait)`.
pub fn admission_position(
    wl: &GPUWorkload,
    all: &[GPUWorkload],
    priority: impl Fn(&GPUWorkloadSpec) -> i64,
) -> (usize, usize) {
    let key = |w: &GPUWorkload| {
        (
            std::cmp::Reverse(priority(&w.spec)),
            w.metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
            w.namespace().unwrap_or_default(),
            w.name_any(),
        )
    };
    let mine = key(wl);
    let others: Vec<_> = all
        .iter()
        .filter(|w| {
            w.spec.queue_name() == wl.spec.queue_name()
                && (w.namespace(), w.name_any()) != (wl.namespace(), wl.name_any())
                && is_pending(w)
        })
        .map(key)
        .collect();
    let ahead = others.iter().filter(|k| **k < mine).count();
    (ahead + 1, others.len() + 1)
}

/// Reads the queue and every workload, then applies [`admit`].
async fn admission(ctx: &Context, wl: &GPUWorkload) -> Result<Decision, Error> {
    let queues: Api<GPUQueue> = Api::all(ctx.client.clone());
    let queue = queues.get_opt(wl.spec.queue_name()).await?;
    let all: Api<GPUWorkload> = Api::all(ctx.client.clone());
    let list = all.list(&ListParams::default()).await?.items;
    Ok(admit(wl, queue.as_ref().map(|q| &q.spec), &list, |s| {
        ctx.priority(s)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GPUWorkloadSpec;

    fn wl(name: &str, yaml: &str) -> GPUWorkload {
        let spec: GPUWorkloadSpec = serde_saphyr::from_str(&format!(
            "{yaml}\ntemplate: {{spec: {{containers: [{{name: m, image: x}}]}}}}\n"
        ))
        .expect("spec");
        let mut w = GPUWorkload::new(name, spec);
        w.metadata.namespace = Some("ml".into());
        w
    }

    fn admitted(mut w: GPUWorkload) -> GPUWorkload {
        let mut s = GPUWorkloadStatus::default();
        set_condition(
            &mut s,
            "Admitted",
            "True",
            "QuotaAvailable",
            "",
            Timestamp::UNIX_EPOCH,
        );
        s.phase = Some(WorkloadPhase::Running);
        w.status = Some(s);
        w
    }

    fn queue(yaml: &str) -> GPUQueueSpec {
        serde_saphyr::from_str(yaml).expect("queue")
    }

    fn prio(s: &GPUWorkloadSpec) -> i64 {
        match s.priority_class.as_deref() {
            Some("high") => 10,
            _ => 0,
        }
    }

    #[test]
    fn gpu_amounts() {
        assert_eq!(
            workload_gpu_milli(&wl("a", "replicas: 2\nresources: {gpu: {count: 4}}").spec),
            8000
        );
        assert_eq!(
            replica_gpu_milli(&wl("a", "resources: {gpu: {share: 250}}").spec),
            250
        );
        assert_eq!(
            replica_gpu_milli(&wl("a", "resources: {gpu: {mig: 3g.40gb}}").spec),
            428
        );
        assert_eq!(
            gpus_text(&wl("a", "resources: {gpu: {share: 500}}").spec),
            "0.5"
        );
    }

    #[test]
    fn queue_caps() {
        assert_eq!(queue_cap(&queue("guaranteed: {gpus: 8}")), Some(8000));
        assert_eq!(queue_cap(&queue("guaranteed: {gpus: 8}\ncohort: c")), None);
        assert_eq!(
            queue_cap(&queue(
                "guaranteed: {gpus: 8}\ncohort: c\nborrowingLimit: {gpus: 4}"
            )),
            Some(12000)
        );
        assert_eq!(queue_cap(&queue("{}")), Some(0));
    }

    #[test]
    fn quota_admits_until_full_then_waits() {
        let q = queue("guaranteed: {gpus: 8}");
        let a = admitted(wl("a", "queue: q\nresources: {gpu: {count: 4}}"));
        let b = wl("b", "queue: q\nreplicas: 2\nresources: {gpu: {count: 2}}");
        assert!(matches!(
            admit(&b, Some(&q), &[a.clone(), b.clone()], prio),
            Decision::Admit(_)
        ));
        let c = wl("c", "queue: q\nreplicas: 2\nresources: {gpu: {count: 4}}");
        let d = admit(&c, Some(&q), &[a.clone(), c.clone()], prio);
        assert!(
            matches!(
                d,
                Decision::Wait {
                    reason: "QuotaExceeded",
                    ..
                }
            ),
            "{d:?}"
        );
        // Another queue's usage does not count.
        let other = admitted(wl("o", "queue: other\nresources: {gpu: {count: 8}}"));
        assert!(matches!(
            admit(&b, Some(&q), &[other], prio),
            Decision::Admit(_)
        ));
        // Finished workloads hold no quota.
        let mut done = a;
        if let Some(s) = done.status.as_mut() {
            s.phase = Some(WorkloadPhase::Succeeded);
        }
        assert!(matches!(
            admit(&c, Some(&q), &[done], prio),
            Decision::Admit(_)
        ));
    }

    #[test]
    fn missing_queue_and_priority_order() {
        let w = wl("w", "queue: nope\nresources: {gpu: {count: 1}}");
        assert!(matches!(
            admit(&w, None, &[], prio),
            Decision::Wait {
                reason: "QueueNotFound",
                ..
            }
        ));
        let d = wl("d", "resources: {gpu: {count: 1}}");
        assert!(matches!(admit(&d, None, &[], prio), Decision::Admit(_)));
        let q = queue("guaranteed: {gpus: 4}");
        let low = wl("low", "queue: q\nresources: {gpu: {count: 2}}");
        let high = wl(
            "high",
            "queue: q\npriorityClass: high\nresources: {gpu: {count: 2}}",
        );
        let all = [low.clone(), high.clone()];
        let dl = admit(&low, Some(&q), &all, prio);
        assert!(
            matches!(
                dl,
                Decision::Wait {
                    reason: "HigherPriorityPending",
                    ..
                }
            ),
            "{dl:?}"
        );
        assert!(matches!(
            admit(&high, Some(&q), &all, prio),
            Decision::Admit(_)
        ));
    }

    #[test]
    fn a_held_workload_says_which_quota_and_its_place_in_the_queue() {
        let q = queue("guaranteed: {gpus: 4}");
        let full = admitted(wl("full", "queue: q\nresources: {gpu: {count: 4}}"));
        let created = |mut w: GPUWorkload, secs: i64| {
            w.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Timestamp::from_second(secs).expect("time"),
                ));
            w
        };
        let old = created(wl("old", "queue: q\nresources: {gpu: {count: 2}}"), 100);
        let new = created(wl("new", "queue: q\nresources: {gpu: {count: 2}}"), 200);
        let urgent = created(
            wl(
                "urgent",
                "queue: q\npriorityClass: high\nresources: {gpu: {count: 2}}",
            ),
            300,
        );
        let elsewhere = wl("elsewhere", "queue: other\nresources: {gpu: {count: 2}}");
        let all = [full, old.clone(), new.clone(), urgent.clone(), elsewhere];
        // Order: urgent (priority), then old, then new (age); other queues do not count.
        assert_eq!(admission_position(&urgent, &all, prio), (1, 3));
        assert_eq!(admission_position(&old, &all, prio), (2, 3));
        assert_eq!(admission_position(&new, &all, prio), (3, 3));
        let Decision::Wait { reason, message } = admit(&new, Some(&q), &all, prio) else {
            panic!("admitted over quota");
        };
        assert_eq!(reason, "QuotaExceeded");
        assert_eq!(
            message,
            "needs 2 GPU(s); queue q uses 4 of 4 (its guaranteed quota plus borrowing limit); \
             position 3 of 3 waiting for admission in queue q (order: priority, then age)"
        );
    }

    #[test]
    fn conditions_keep_transition_time_while_unchanged() {
        let mut s = GPUWorkloadStatus::default();
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = t0 + SignedDuration::from_secs(60);
        set_condition(&mut s, "Running", "False", "WaitingForPods", "0 of 1", t0);
        set_condition(&mut s, "Running", "False", "WaitingForPods", "0 of 1", t1);
        assert_eq!(
            s.conditions[0].last_transition_time.as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        set_condition(&mut s, "Running", "True", "GangRunning", "1 of 1", t1);
        assert_eq!(
            s.conditions[0].last_transition_time.as_deref(),
            Some("1970-01-01T00:01:00Z")
        );
        assert_eq!(s.conditions.len(), 1);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}

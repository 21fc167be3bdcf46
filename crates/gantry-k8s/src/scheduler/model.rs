//! The scheduler's in-memory model and its decisions, with no I/O: Nodes, `GPUNode` status and Pods go
//! in (as the watchers see them), [`Decision`]s come out of [`Model::schedule`].
//!
//! The placement engine is gantry-core's time-aware scheduler (`live/`): a [`LiveCluster`] holds the
//! nodes and what bound Pods use, a [`Selector`] filters and scores equivalence classes of nodes with the
//! active strategy, [`devices::pick`] chooses GPUs, [`choose_victims`] picks preemption victims. A Pod is
//! one replica; a gang is the Pods of one workload with a gang minimum above one.
//!
//! Decisions are *assumed*: a Pod the model decides to bind is charged to its node at once, so the next
//! decision sees it; [`Model::forget`] rolls an assumption back when the bind fails, and the watch event
//! of the bound Pod confirms it.

use super::outlook::{self, Holder, Waiter};
use super::quantity::{cpu_milli, memory_mib};
use crate::keys;
use gantry_core::frag::TargetWorkload;
use gantry_core::live::cluster::UNKNOWN_GPU_MEMORY_MIB;
use gantry_core::live::devices;
use gantry_core::live::filter::static_check;
use gantry_core::live::gang::undo;
use gantry_core::live::preempt::{Running, candidates, choose_victims};
use gantry_core::live::select::Selector;
use gantry_core::live::{Demand, Device, Explanation, LiveCluster, ReplicaPlacement, Workload};
use gantry_core::model::{GpuModels, ModelSet};
use gantry_core::policies::gantry::GantryInputs;
use gantry_core::spec::{
    ClusterSpec, LabelExpression, LabelOperator, MAX_NODE_GPUS, MemoryQuantity, MigMode,
    MilliQuantity, NodeDescription, NodeGpus, Pool, Taint, TaintEffect, Toleration,
    TolerationOperator, Topology,
};
use gantry_core::{Policy, Rng};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A Pod's identity: `namespace/name`.
pub type PodKey = String;

/// What the scheduler needs of a Pod to address it in the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (a precondition on bind and delete), when known.
    pub uid: Option<String>,
}

impl PodRef {
    /// `namespace/name`.
    pub fn key(&self) -> PodKey {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One Pod to bind: where, and the value of the assigned-GPUs annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindDecision {
    /// The Pod.
    pub pod: PodRef,
    /// The node's name.
    pub node: String,
    /// The [`keys::ASSIGNED_GPUS`] value: `0,1` (whole GPUs), `2:500` (a share), `3:1g.10gb@6` (MIG).
    pub assigned_gpus: String,
}

/// What the I/O layer should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind these Pods (one Pod, or a gang that must be bound all together).
    Bind {
        /// The Pods.
        pods: Vec<BindDecision>,
        /// The gang (`namespace/workload`), when the Pods are one.
        gang: Option<String>,
    },
    /// These Pods cannot be placed now; `message` explains which filter rejected how many nodes.
    Unschedulable {
        /// The Pods (one, or a gang's pending Pods).
        pods: Vec<PodRef>,
        /// The explanation, for an Event.
        message: String,
        /// Where they stand: position in the order and estimated start (for the Pod's condition).
        outlook: String,
        /// Whether `message` is new for these Pods (an Event is due; otherwise only the outlook moved).
        event: bool,
    },
    /// Delete `victims` so that `preemptor` fits once they are gone.
    Preempt {
        /// The Pod that needs the room.
        preemptor: PodRef,
        /// Its priority.
        priority: i64,
        /// The Pods to delete (all of lower priority).
        victims: Vec<PodRef>,
    },
}

/// The part of a `GPUNode` status the scheduler reads (the agent writes it; see `crd.rs`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuNodeView {
    /// The node's GPUs.
    #[serde(default)]
    pub gpus: Vec<GpuDeviceView>,
}

/// One GPU of a [`GpuNodeView`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuDeviceView {
    /// Index on the node.
    #[serde(default)]
    pub index: u32,
    /// Model, e.g. `H100-80GB`.
    #[serde(default)]
    pub model: String,
    /// Memory, MiB.
    #[serde(default)]
    pub memory_mib: u64,
    /// False after XID/ECC errors: nothing new is placed on it.
    #[serde(default = "yes")]
    pub healthy: bool,
    /// MIG mode.
    #[serde(default)]
    pub mig_enabled: bool,
}

impl From<&crate::crd::GPUNodeStatus> for GpuNodeView {
    fn from(s: &crate::crd::GPUNodeStatus) -> Self {
        GpuNodeView {
            gpus: s
                .gpus
                .iter()
                .map(|g| GpuDeviceView {
                    index: g.index,
                    model: g.model.clone(),
                    memory_mib: g.memory_mib,
                    healthy: g.healthy,
                    mig_enabled: g.mig_enabled,
                })
                .collect(),
        }
    }
}

fn yes() -> bool {
    true
}

/// A node as the model keeps it (from its `Node` object).
#[derive(Clone, Debug, PartialEq)]
struct NodeInfo {
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    cordoned: bool,
    ready: bool,
    cpu_milli: u64,
    memory_mib: u64,
    gpu_count: u32,
    mig_resources: bool,
}

/// A Pod as the model keeps it.
#[derive(Clone, Debug)]
struct PodInfo {
    pod: PodRef,
    node: Option<String>,
    ours: bool,
    terminating: bool,
    finished: bool,
    priority: i64,
    created: i64,
    cpu_milli: u64,
    memory_mib: u64,
    demand: Demand,
    models: Vec<String>,
    node_selector: BTreeMap<String, String>,
    required: Vec<LabelExpression>,
    tolerations: Vec<Toleration>,
    strategy: Option<Policy>,
    gang: Option<(String, u32)>,
    workload: Option<String>,
    replica: u32,
    assigned: Option<String>,
    /// Its queue (the controller's annotation; `default` without one).
    queue: String,
    /// When it started (`status.startTime`, else when it was bound), Unix seconds.
    started: Option<i64>,
    /// `spec.activeDeadlineSeconds`: the kubelet stops it that long after its start.
    deadline: Option<i64>,
}

impl PodInfo {
    fn pending(&self) -> bool {
        self.node.is_none() && self.ours && !self.terminating && !self.finished
    }

    fn holds_resources(&self) -> bool {
        self.node.is_some() && !self.finished
    }
}

/// The scheduler's view of the cluster, and the decision logic over it.
pub struct Model {
    namespace: Option<String>,
    nodes: BTreeMap<String, NodeInfo>,
    gpu_nodes: HashMap<String, GpuNodeView>,
    pods: HashMap<PodKey, PodInfo>,
    cluster: LiveCluster,
    index: HashMap<String, u32>,
    names: Vec<String>,
    stale: bool,
    selector: Selector,
    rng: Rng,
    /// Pods charged to the cluster (bound, or assumed bound), with what they take.
    placed: HashMap<PodKey, ReplicaPlacement>,
    /// Pods decided here whose binding is not yet seen in a watch event: node and assigned GPUs.
    assumed: HashMap<PodKey, (String, String)>,
    /// The last unschedulable message per Pod (an Event only when it changes).
    reasons: HashMap<PodKey, String>,
    /// The last outlook (position, estimated start) per waiting Pod (its condition changes with it).
    outlooks: HashMap<PodKey, String>,
    /// When this model decided to bind a Pod (its start until the Pod says otherwise).
    bound_at: HashMap<PodKey, i64>,
    /// The time of the pass in progress, Unix seconds.
    now: i64,
    /// Preemptor -> the victims it waits for.
    nominated: HashMap<PodKey, BTreeSet<PodKey>>,
}

impl Model {
    /// An empty model placing with `policy`; `namespace` limits which pending Pods it schedules.
    pub fn new(policy: Policy, namespace: Option<String>) -> Self {
        Model {
            namespace,
            nodes: BTreeMap::new(),
            gpu_nodes: HashMap::new(),
            pods: HashMap::new(),
            cluster: LiveCluster::from_node_specs(GpuModels::default(), &[]),
            index: HashMap::new(),
            names: Vec::new(),
            stale: true,
            selector: Selector::new(policy, TargetWorkload::default(), GantryInputs::default()),
            rng: Rng::new(0x6761_6e74_7279),
            placed: HashMap::new(),
            assumed: HashMap::new(),
            reasons: HashMap::new(),
            outlooks: HashMap::new(),
            bound_at: HashMap::new(),
            now: 0,
            nominated: HashMap::new(),
        }
    }

    /// Adds or updates a Node.
    pub fn apply_node(&mut self, node: &Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        let info = node_info(node);
        if self.nodes.get(&name) == Some(&info) {
            return;
        }
        self.nodes.insert(name, info);
        self.stale = true;
    }

    /// Removes a Node.
    pub fn delete_node(&mut self, name: &str) {
        if self.nodes.remove(name).is_some() {
            self.stale = true;
        }
    }

    /// Keeps only the named Nodes (after a re-list).
    pub fn retain_nodes(&mut self, names: &HashSet<String>) {
        let before = self.nodes.len();
        self.nodes.retain(|n, _| names.contains(n));
        self.stale |= before != self.nodes.len();
    }

    /// Adds or updates the `GPUNode` status of node `name`.
    pub fn apply_gpu_node(&mut self, name: &str, status: GpuNodeView) {
        if self.gpu_nodes.get(name) == Some(&status) {
            return;
        }
        self.gpu_nodes.insert(name.to_string(), status);
        self.stale = true;
    }

    /// Removes the `GPUNode` status of node `name`.
    pub fn delete_gpu_node(&mut self, name: &str) {
        if self.gpu_nodes.remove(name).is_some() {
            self.stale = true;
        }
    }

    /// Adds or updates a Pod (bound or not).
    pub fn apply_pod(&mut self, pod: &Pod) {
        let Some(info) = pod_info(pod) else {
            return;
        };
        let key = info.pod.key();
        if let Some(old) = self.pods.get(&key)
            && old.pod.uid != info.pod.uid
            && old.pod.uid.is_some()
        {
            // A new Pod under the same name: the old one is gone.
            self.remove_pod(&key);
        }
        let assumed = self.assumed.contains_key(&key);
        if assumed && info.node.is_none() && !info.terminating && !info.finished {
            // Our binding is in flight; keep the assumption.
            self.pods.insert(key, info);
            return;
        }
        self.assumed.remove(&key);
        let keep = match (self.placed.get(&key), &info.node) {
            (Some(p), Some(n)) => {
                !info.finished && self.index.get(n) == Some(&p.node) && !self.stale
            }
            _ => false,
        };
        if !keep && let Some(p) = self.placed.remove(&key) {
            let _ = self.cluster.release(&p);
        }
        if info.node.is_some() {
            self.reasons.remove(&key);
            self.outlooks.remove(&key);
        }
        let charge = !keep && info.holds_resources();
        self.pods.insert(key.clone(), info);
        if charge && !self.stale {
            self.charge(&key);
        }
    }

    /// Removes a Pod.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        self.remove_pod(&format!("{namespace}/{name}"));
    }

    /// Keeps only the named Pods (after a re-list).
    pub fn retain_pods(&mut self, keys: &HashSet<PodKey>) {
        let gone: Vec<PodKey> = self
            .pods
            .keys()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            self.remove_pod(&k);
        }
    }

    fn remove_pod(&mut self, key: &str) {
        self.pods.remove(key);
        self.assumed.remove(key);
        self.reasons.remove(key);
        self.outlooks.remove(key);
        self.bound_at.remove(key);
        self.nominated.remove(key);
        if let Some(p) = self.placed.remove(key) {
            let _ = self.cluster.release(&p);
        }
    }

    /// Rolls back the assumption that `key` was bound (its bind failed); it is pending again unless the
    /// API said it is gone or bound elsewhere (`gone`), in which case the watch will tell the truth.
    pub fn forget(&mut self, key: &str, gone: bool) {
        self.bound_at.remove(key);
        if self.assumed.remove(key).is_some()
            && let Some(p) = self.placed.remove(key)
        {
            let _ = self.cluster.release(&p);
        }
        if gone && let Some(p) = self.pods.get_mut(key) {
            // Not ours to place any more until a watch event says otherwise.
            p.ours = false;
        }
    }

    /// Marks a victim as terminating (its delete was sent); it keeps its resources until it is gone.
    pub fn mark_terminating(&mut self, key: &str) {
        if let Some(p) = self.pods.get_mut(key) {
            p.terminating = true;
        }
    }

    /// Number of nodes known.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Pods waiting to be placed by this scheduler.
    pub fn pending_count(&self) -> usize {
        self.pods
            .iter()
            .filter(|(k, p)| p.pending() && !self.assumed.contains_key(*k) && self.in_scope(p))
            .count()
    }

    fn in_scope(&self, p: &PodInfo) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| *ns == p.pod.namespace)
    }

    /// Rebuilds the live cluster from the nodes, `GPUNode` health and every Pod holding resources.
    fn rebuild(&mut self) {
        let mut spec = ClusterSpec::default();
        let mut names = Vec::new();
        let mut blocked: Vec<(u32, Vec<u32>)> = Vec::new();
        let mut flags: Vec<(bool, bool)> = Vec::new();
        for (name, n) in &self.nodes {
            if n.cpu_milli == 0 || n.memory_mib == 0 {
                continue;
            }
            let gpu = self.gpu_nodes.get(name);
            let (desc, unhealthy) = node_description(names.len(), n, gpu);
            if !unhealthy.is_empty() {
                blocked.push((names.len() as u32, unhealthy));
            }
            flags.push((n.ready, n.cordoned));
            spec.nodes.push(desc);
            names.push(name.clone());
        }
        let cluster = match LiveCluster::from_spec(&spec) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("node model rejected: {e}");
                LiveCluster::from_node_specs(GpuModels::default(), &[])
            }
        };
        self.cluster = cluster;
        self.index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        self.names = names;
        for (i, (ready, cordoned)) in flags.into_iter().enumerate() {
            if !ready {
                let _ = self.cluster.set_healthy(i, false);
            }
            if cordoned {
                let _ = self.cluster.set_cordoned(i, true);
            }
        }
        // An unhealthy GPU is charged as fully used by nobody.
        for (node, gpus) in blocked {
            let Some(n) = self.cluster.nodes().get(node as usize) else {
                continue;
            };
            let devices: Vec<Device> = gpus
                .iter()
                .filter_map(|&g| {
                    let gpu = n.gpus.get(g as usize)?;
                    Some(Device::Gpu {
                        index: u8::try_from(g).ok()?,
                        milli: gpu.free_milli,
                        memory_mib: gpu.memory_free_mib,
                    })
                })
                .collect();
            let p = ReplicaPlacement {
                node,
                cpu_milli: 0,
                memory_mib: 0,
                devices,
                exclusive: false,
                kind: None,
            };
            let _ = self.cluster.allocate(&p);
        }
        self.selector = self.selector.fresh();
        self.placed.clear();
        self.stale = false;
        let mut holders: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(k, p)| p.holds_resources() || self.assumed.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        // Pods with an annotation first, so the GPUs they name are free.
        holders.sort_by_key(|k| {
            (
                self.pods.get(k).is_none_or(|p| p.assigned.is_none()),
                k.clone(),
            )
        });
        for k in holders {
            self.charge(&k);
        }
        // Assumptions whose node vanished are dropped (the Pod is pending again).
        let placed = &self.placed;
        self.assumed.retain(|k, _| placed.contains_key(k));
    }

    /// Charges a Pod that holds resources (bound, or assumed with its placement known) to its node.
    fn charge(&mut self, key: &str) {
        let Some(p) = self.pods.get(key) else {
            return;
        };
        let assumed = self.assumed.get(key);
        let Some(node) = p
            .node
            .as_ref()
            .or(assumed.map(|a| &a.0))
            .and_then(|n| self.index.get(n))
            .copied()
        else {
            return;
        };
        let assigned = p.assigned.as_deref().or(assumed.map(|a| a.1.as_str()));
        let w = self.workload(p);
        let kind = w.pod().gpu.kind_index();
        let base = ReplicaPlacement {
            node,
            cpu_milli: p.cpu_milli,
            memory_mib: p.memory_mib,
            devices: Vec::new(),
            exclusive: false,
            kind,
        };
        let Some(n) = self.cluster.nodes().get(node as usize) else {
            return;
        };
        let mut tries = Vec::new();
        if let Some(a) = assigned.and_then(|a| parse_assigned(a, n)) {
            tries.push(a);
        }
        if let Some(d) = devices::pick(n, &w) {
            tries.push(d);
        }
        for devices in tries {
            let placement = ReplicaPlacement {
                devices,
                ..base.clone()
            };
            if self.cluster.allocate(&placement).is_ok() {
                self.placed.insert(key.to_string(), placement);
                return;
            }
        }
        // Over-committed by someone else: charge what still fits, CPU and memory capped.
        let n = &self.cluster.nodes()[node as usize];
        let placement = ReplicaPlacement {
            cpu_milli: base.cpu_milli.min(n.cpu_free),
            memory_mib: base.memory_mib.min(n.memory_free),
            ..base
        };
        tracing::warn!("pod {key} over-commits node {}", self.names[node as usize]);
        if self.cluster.allocate(&placement).is_ok() {
            self.placed.insert(key.to_string(), placement);
        }
    }

    /// The engine workload of one Pod (one replica), resolved against the live cluster's GPU models.
    fn workload(&self, p: &PodInfo) -> Workload {
        let mut models = ModelSet::default();
        for m in &p.models {
            if let Some(id) = self.cluster.models.get(m) {
                models.insert(id);
            }
        }
        Workload {
            name: p.pod.key(),
            queue: String::new(),
            priority_class: String::new(),
            priority: p.priority,
            replicas: 1,
            gang_minimum: 1,
            cpu_milli: p.cpu_milli,
            memory_mib: p.memory_mib,
            demand: p.demand.clone(),
            models,
            min_gpu_memory_mib: 0,
            exclusive: false,
            node_selector: p.node_selector.clone(),
            required: p.required.clone(),
            preferred: Vec::new(),
            tolerations: p.tolerations.clone(),
            topology: Topology::Any,
            spot: gantry_core::spec::SpotPolicy::Allow,
            preemptible: true,
            timeout_secs: None,
            strategy: p.strategy,
            submitted: u64::try_from(p.created).unwrap_or(0),
            expected_runtime: None,
        }
    }

    /// Why a Pod can never be placed whatever the nodes' state, if so (a model nobody has).
    fn impossible(&self, p: &PodInfo) -> Option<String> {
        if p.demand != Demand::None
            && !p.models.is_empty()
            && p.models
                .iter()
                .all(|m| self.cluster.models.get(m).is_none())
        {
            return Some(format!(
                "0/{} nodes can take it: no node has GPU model {}",
                self.names.len(),
                p.models.join(" or ")
            ));
        }
        None
    }

    /// One scheduling pass over every pending Pod, highest priority first, then oldest; `now` (Unix
    /// seconds) is the time the estimated starts of the Pods that must wait count from.
    pub fn schedule(&mut self, now: i64) -> Vec<Decision> {
        self.now = now;
        if self.stale {
            self.rebuild();
        }
        let mut out = Vec::new();
        // Units: a lone Pod, or a gang's pending Pods.
        let mut gangs: BTreeMap<String, Vec<PodKey>> = BTreeMap::new();
        let mut units: Vec<Unit> = Vec::new();
        for (k, p) in &self.pods {
            if !p.pending() || self.assumed.contains_key(k) || !self.in_scope(p) {
                continue;
            }
            match &p.gang {
                Some((g, _)) => gangs.entry(g.clone()).or_default().push(k.clone()),
                None => units.push((-p.priority, p.created, k.clone(), vec![k.clone()], None)),
            }
        }
        for (g, mut members) in gangs {
            members.sort_by_key(|k| {
                self.pods
                    .get(k)
                    .map_or((0, String::new()), |p| (p.replica, k.clone()))
            });
            let Some(first) = members.first().and_then(|k| self.pods.get(k)) else {
                continue;
            };
            let minimum = first.gang.as_ref().map_or(1, |x| x.1);
            let head = members
                .iter()
                .filter_map(|k| self.pods.get(k))
                .map(|p| (-p.priority, p.created))
                .min()
                .unwrap_or((0, 0));
            units.push((
                head.0,
                head.1,
                members[0].clone(),
                members,
                Some((g, minimum)),
            ));
        }
        units.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        let mut memo = Memo::default();
        // Units still pending after this pass (waiting or preempting), in order, and the waiting ones.
        let mut still: Vec<usize> = Vec::new();
        let mut waiting: Vec<(usize, Vec<PodRef>, String)> = Vec::new();
        for (i, (_, _, _, members, gang)) in units.iter().enumerate() {
            match self.attempt(members, gang.clone(), &mut memo, &mut out) {
                Attempt::Placed => {}
                Attempt::Preempting => still.push(i),
                Attempt::Waiting { pods, message } => {
                    still.push(i);
                    waiting.push((still.len() - 1, pods, message));
                }
            }
        }
        if waiting.is_empty() {
            return out;
        }
        let outlooks = self.outlooks(&units, &still, now);
        for (i, pods, message) in waiting {
            let outlook = outlooks.get(i).cloned().unwrap_or_default();
            self.unschedulable(pods, message, outlook, &mut out);
        }
        out
    }

    /// The outlook text (position, estimated start) of each unit in `still` (indices into `units`, in
    /// the scheduler's order), from a forward simulation of this model's placement.
    fn outlooks(&self, units: &[Unit], still: &[usize], now: i64) -> Vec<String> {
        let queue_of = |i: usize| -> String {
            units[i]
                .3
                .first()
                .and_then(|k| self.pods.get(k))
                .map_or_else(String::new, |p| p.queue.clone())
        };
        let queues: Vec<String> = still.iter().map(|&i| queue_of(i)).collect();
        let mut holders: Vec<Holder> = self
            .placed
            .iter()
            .filter_map(|(k, placement)| {
                let p = self.pods.get(k)?;
                let end = if p.terminating {
                    Some(now)
                } else {
                    p.deadline.map(|d| {
                        let start = p.started.or(self.bound_at.get(k).copied()).unwrap_or(now);
                        start.saturating_add(d.max(0))
                    })
                };
                Some(Holder {
                    name: k.clone(),
                    placements: vec![placement.clone()],
                    end,
                })
            })
            .collect();
        holders.sort_by(|a, b| (a.end, &a.name).cmp(&(b.end, &b.name)));
        let mut waiters: Vec<Waiter> = still
            .iter()
            .take(outlook::MAX_AHEAD)
            .map(|&i| self.waiter(&units[i]))
            .collect();
        // Units past what is simulated only need a place in the list.
        waiters.extend(still.iter().skip(outlook::MAX_AHEAD).map(|_| Waiter {
            works: Vec::new(),
            need: 1,
            deadline: None,
        }));
        let starts = outlook::forecast(
            &self.cluster,
            &self.selector,
            &self.rng,
            holders,
            &waiters,
            now,
        );
        let total = still.len();
        starts
            .iter()
            .enumerate()
            .map(|(pos, start)| {
                let q = &queues[pos];
                let in_queue = queues[..pos].iter().filter(|x| *x == q).count() + 1;
                let queue_total = queues.iter().filter(|x| *x == q).count();
                outlook::text(q, (in_queue, queue_total), (pos + 1, total), start, now)
            })
            .collect()
    }

    /// A unit as the forward simulation places it: its pending Pods' workloads and how many must fit
    /// together (no workloads when it cannot be placed as it is).
    fn waiter(&self, unit: &Unit) -> Waiter {
        let infos: Vec<&PodInfo> = unit
            .3
            .iter()
            .filter_map(|k| self.pods.get(k))
            .filter(|p| !self.assumed.contains_key(&p.pod.key()))
            .collect();
        let need = match &unit.4 {
            Some((g, minimum)) => {
                let running = self
                    .pods
                    .iter()
                    .filter(|(k, p)| {
                        p.workload.as_deref() == Some(g.as_str())
                            && !p.terminating
                            && self.placed.contains_key(*k)
                    })
                    .count() as u32;
                minimum.saturating_sub(running).max(1)
            }
            None => 1,
        };
        let placeable = !infos.is_empty()
            && infos.len() as u32 >= need
            && infos.first().is_some_and(|p| self.impossible(p).is_none());
        Waiter {
            works: if placeable {
                infos.iter().map(|p| self.workload(p)).collect()
            } else {
                Vec::new()
            },
            need,
            deadline: infos.first().and_then(|p| p.deadline),
        }
    }

    fn attempt(
        &mut self,
        members: &[PodKey],
        gang: Option<(String, u32)>,
        memo_: &mut Memo,
        out: &mut Vec<Decision>,
    ) -> Attempt {
        let infos: Vec<PodInfo> = members
            .iter()
            .filter_map(|k| self.pods.get(k).cloned())
            .collect();
        let Some(first) = infos.first() else {
            return Attempt::Placed;
        };
        let refs: Vec<PodRef> = infos.iter().map(|p| p.pod.clone()).collect();
        // How many must be placed together.
        let need = match &gang {
            Some((g, minimum)) => {
                let running = self
                    .pods
                    .iter()
                    .filter(|(k, p)| {
                        p.workload.as_deref() == Some(g.as_str())
                            && !p.terminating
                            && self.placed.contains_key(*k)
                    })
                    .count() as u32;
                let need = minimum.saturating_sub(running).max(1);
                if (infos.len() as u32) < need {
                    let message = format!(
                        "gang {g} needs {need} more pod(s) placed together, {} exist yet",
                        infos.len()
                    );
                    return Attempt::Waiting {
                        pods: refs,
                        message,
                    };
                }
                need
            }
            None => 1,
        };
        if let Some(message) = self.impossible(first) {
            return Attempt::Waiting {
                pods: refs,
                message,
            };
        }
        let works: Vec<Workload> = infos.iter().map(|p| self.workload(p)).collect();
        let shapes: Vec<u32> = works.iter().map(|w| self.selector.shape(w)).collect();
        let memo = (shapes[0], need);
        let homogeneous = shapes.iter().all(|&s| s == shapes[0]);
        let known = if homogeneous {
            memo_.failed.get(&memo).cloned()
        } else {
            None
        };
        let why = match known {
            Some(why) => why,
            None => match self.place(&works, &shapes, need) {
                Ok(placements) => {
                    let mut pods = Vec::with_capacity(placements.len());
                    for (p, placement) in infos.iter().zip(placements) {
                        let key = p.pod.key();
                        let node = self.names[placement.node as usize].clone();
                        let assigned_gpus = assigned_label(&placement.devices);
                        self.assumed
                            .insert(key.clone(), (node.clone(), assigned_gpus.clone()));
                        pods.push(BindDecision {
                            pod: p.pod.clone(),
                            node,
                            assigned_gpus,
                        });
                        self.placed.insert(key.clone(), placement);
                        self.bound_at.insert(key.clone(), self.now);
                        self.reasons.remove(&key);
                        self.outlooks.remove(&key);
                        self.nominated.remove(&key);
                    }
                    out.push(Decision::Bind {
                        pods,
                        gang: gang.map(|g| g.0),
                    });
                    return Attempt::Placed;
                }
                Err(why) => {
                    let why = match &gang {
                        Some((g, _)) => {
                            format!("gang {g} needs {need} pod(s) placed together: {why}")
                        }
                        None => why.to_string(),
                    };
                    if homogeneous {
                        memo_.failed.insert(memo, why.clone());
                    }
                    why
                }
            },
        };
        let key = first.pod.key();
        // Still waiting for earlier victims to go: do not evict more.
        if let Some(victims) = self.nominated.get(&key) {
            if victims.iter().any(|v| self.pods.contains_key(v)) {
                let message = format!(
                    "{why}; waiting for {} preempted pod(s) to terminate",
                    victims
                        .iter()
                        .filter(|v| self.pods.contains_key(*v))
                        .count()
                );
                return Attempt::Waiting {
                    pods: refs,
                    message,
                };
            }
            self.nominated.remove(&key);
        }
        let pmemo = (memo.0, memo.1, first.priority);
        let tried = homogeneous && memo_.no_victims.contains(&pmemo);
        let victims = if tried {
            None
        } else {
            self.preempt(&works, &shapes, need, first.priority)
        };
        if victims.is_none() && homogeneous {
            memo_.no_victims.insert(pmemo);
        }
        if let Some(victims) = victims {
            // Capacity changes once the victims go: forget what failed.
            memo_.failed.clear();
            memo_.no_victims.clear();
            for v in &victims {
                self.mark_terminating(&v.key());
            }
            self.nominated
                .insert(key, victims.iter().map(PodRef::key).collect());
            out.push(Decision::Preempt {
                preemptor: first.pod.clone(),
                priority: first.priority,
                victims,
            });
            return Attempt::Preempting;
        }
        Attempt::Waiting {
            pods: refs,
            message: why,
        }
    }

    /// Emits an unschedulable decision for the Pods whose explanation or outlook changed.
    fn unschedulable(
        &mut self,
        pods: Vec<PodRef>,
        message: String,
        outlook: String,
        out: &mut Vec<Decision>,
    ) {
        let mut event = false;
        let fresh: Vec<PodRef> = pods
            .into_iter()
            .filter(|p| {
                let key = p.key();
                let new_reason = self.reasons.get(&key) != Some(&message);
                event |= new_reason;
                new_reason || self.outlooks.get(&key) != Some(&outlook)
            })
            .collect();
        if fresh.is_empty() {
            return;
        }
        for p in &fresh {
            self.reasons.insert(p.key(), message.clone());
            self.outlooks.insert(p.key(), outlook.clone());
        }
        out.push(Decision::Unschedulable {
            pods: fresh,
            message,
            outlook,
            event,
        });
    }

    /// Places the Pods in order (each decision sees the ones before); keeps them if at least `need` fit,
    /// else undoes every tentative allocation (as `live::gang` does).
    fn place(
        &mut self,
        works: &[Workload],
        shapes: &[u32],
        need: u32,
    ) -> Result<Vec<ReplicaPlacement>, Explanation> {
        place_all(
            &mut self.cluster,
            &mut self.selector,
            &mut self.rng,
            works,
            shapes,
            need,
        )
    }

    /// The cheapest set of lower-priority Pods (whole gangs) whose deletion makes room, if any.
    fn preempt(
        &mut self,
        works: &[Workload],
        shapes: &[u32],
        need: u32,
        priority: i64,
    ) -> Option<Vec<PodRef>> {
        let w0 = works.first()?;
        // Victim units: a gang's placed Pods together, else one Pod.
        let mut units: BTreeMap<String, (i64, i64, Vec<PodKey>)> = BTreeMap::new();
        for (k, p) in &self.pods {
            if p.terminating || self.assumed.contains_key(k) || p.priority >= priority {
                continue;
            }
            let Some(placement) = self.placed.get(k) else {
                continue;
            };
            let unit = p.workload.clone().unwrap_or_else(|| k.clone());
            let e = units
                .entry(unit)
                .or_insert((p.priority, p.created, Vec::new()));
            e.0 = e.0.max(p.priority);
            e.1 = e.1.max(p.created);
            let _ = placement;
            e.2.push(k.clone());
        }
        let nodes = self.cluster.nodes();
        let mut running: Vec<Running> = Vec::new();
        let mut members: Vec<Vec<PodKey>> = Vec::new();
        for (_, (prio, created, keys)) in units {
            let placements: Vec<ReplicaPlacement> = keys
                .iter()
                .filter_map(|k| self.placed.get(k).cloned())
                .collect();
            let relevant = placements.iter().any(|p| {
                nodes
                    .get(p.node as usize)
                    .is_some_and(|n| static_check(n, w0).is_ok())
            });
            if !relevant || prio >= priority {
                continue;
            }
            running.push(Running {
                id: members.len() as u32,
                priority: prio,
                preemptible: true,
                reclaimable: false,
                started: u64::try_from(created).unwrap_or(0),
                expected_end: None,
                queue: 0,
                usage: [0; 3],
                placements,
            });
            members.push(keys);
        }
        let refs = candidates(running.iter(), priority);
        if refs.is_empty() {
            return None;
        }
        let selector = &mut self.selector;
        let rng = &mut self.rng;
        let mut fits = |cl: &mut LiveCluster, _: &[usize]| -> bool {
            match place_all(cl, selector, rng, works, shapes, need) {
                Ok(placed) => {
                    undo(cl, &placed);
                    true
                }
                Err(_) => false,
            }
        };
        let chosen = choose_victims(&mut self.cluster, &refs, &mut fits)?;
        // The victims keep running until they are gone: give their capacity back for now.
        let mut victims = Vec::new();
        for &i in &chosen {
            let r = refs[i];
            for p in &r.placements {
                let _ = self.cluster.allocate(p);
            }
            for k in &members[r.id as usize] {
                if let Some(p) = self.pods.get(k) {
                    victims.push(p.pod.clone());
                }
            }
        }
        Some(victims)
    }

    /// The node each charged Pod is placed on with what it takes (for checks and reports).
    pub fn placements(&self) -> Vec<(PodKey, String, String)> {
        self.placed
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    self.names[p.node as usize].clone(),
                    assigned_label(&p.devices),
                )
            })
            .collect()
    }
}

/// A unit of scheduling: (-priority, creation, first key, the Pods, the gang and its minimum).
type Unit = (i64, i64, PodKey, Vec<PodKey>, Option<(String, u32)>);

/// What became of one unit in a pass.
enum Attempt {
    /// Bound (or nothing left to place).
    Placed,
    /// Victims are being deleted to make room for it.
    Preempting,
    /// It waits: the Pods and why.
    Waiting {
        /// Its pending Pods.
        pods: Vec<PodRef>,
        /// Why they cannot be placed now.
        message: String,
    },
}

/// What failed earlier in one pass (capacity only shrinks within a pass until a preemption).
#[derive(Default)]
struct Memo {
    /// (shape, pods needed) -> explanation.
    failed: HashMap<(u32, u32), String>,
    /// (shape, pods needed, priority) with no set of victims.
    no_victims: HashSet<(u32, u32, i64)>,
}

/// Places `works` in order on `cluster`; keeps them if at least `need` fit, else undoes them all.
pub(super) fn place_all(
    cluster: &mut LiveCluster,
    selector: &mut Selector,
    rng: &mut Rng,
    works: &[Workload],
    shapes: &[u32],
    need: u32,
) -> Result<Vec<ReplicaPlacement>, Explanation> {
    let none = BTreeSet::new();
    let mut placed = Vec::with_capacity(works.len());
    let mut failure = Explanation::default();
    for (w, &shape) in works.iter().zip(shapes) {
        let node = match selector.select(cluster, w, shape, None, &none, rng) {
            Ok(n) => n,
            Err(why) => {
                failure = why;
                break;
            }
        };
        let Some(devices) = cluster
            .nodes()
            .get(node as usize)
            .and_then(|n| devices::pick(n, w))
        else {
            break;
        };
        let p = ReplicaPlacement {
            node,
            cpu_milli: w.cpu_milli,
            memory_mib: w.memory_mib,
            devices,
            exclusive: false,
            kind: w.pod().gpu.kind_index(),
        };
        if cluster.allocate(&p).is_err() {
            break;
        }
        placed.push(p);
    }
    if placed.len() as u32 >= need {
        return Ok(placed);
    }
    undo(cluster, &placed);
    Err(failure)
}

/// The annotation value for `devices`: `0,1`, `2:500`, `3:1g.10gb@6`.
pub fn assigned_label(devices: &[Device]) -> String {
    devices
        .iter()
        .map(|d| match *d {
            Device::Gpu { index, milli, .. } if milli < 1000 => format!("{index}:{milli}"),
            _ => d.label(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses an assigned-GPUs annotation against node `n`; `None` when it does not make sense there.
fn parse_assigned(text: &str, n: &gantry_core::live::LiveNode) -> Option<Vec<Device>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (index, rest) = match part.split_once(':') {
            Some((i, r)) => (i, Some(r)),
            None => (part, None),
        };
        let index: u8 = index.parse().ok()?;
        let gpu = n.gpus.get(usize::from(index))?;
        match rest {
            None => out.push(Device::Gpu {
                index,
                milli: 1000,
                memory_mib: gpu.memory_mib,
            }),
            Some(r) if r.contains('@') => {
                let (profile, start) = r.split_once('@')?;
                let profile = n.mig_table?.profile(profile)?;
                out.push(Device::Mig {
                    index,
                    profile,
                    start: start.parse().ok()?,
                });
            }
            Some(r) => {
                let milli: u16 = r.parse().ok()?;
                if milli == 0 || milli > 1000 {
                    return None;
                }
                out.push(Device::Gpu {
                    index,
                    milli,
                    memory_mib: 0,
                });
            }
        }
    }
    Some(out)
}

fn node_info(node: &Node) -> NodeInfo {
    let status = node.status.as_ref();
    let alloc = status.and_then(|s| s.allocatable.as_ref());
    let get = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.as_str());
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_none_or(|c| c.status == "True");
    let spec = node.spec.as_ref();
    let taints = spec
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    let effect = match t.effect.as_str() {
                        "NoSchedule" => TaintEffect::NoSchedule,
                        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
                        "NoExecute" => TaintEffect::NoExecute,
                        _ => return None,
                    };
                    Some(Taint {
                        key: t.key.clone(),
                        value: t.value.clone().filter(|v| !v.is_empty()),
                        effect,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    NodeInfo {
        labels: node.metadata.labels.clone().unwrap_or_default(),
        taints,
        cordoned: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        ready,
        cpu_milli: get("cpu").and_then(cpu_milli).unwrap_or(0),
        memory_mib: get("memory").map_or(Some(0), memory_mib_floor).unwrap_or(0),
        gpu_count: get(keys::NVIDIA_GPU)
            .and_then(cpu_milli)
            .map_or(0, |m| u32::try_from(m / 1000).unwrap_or(u32::MAX)),
        mig_resources: alloc
            .is_some_and(|a| a.keys().any(|k| k.starts_with(keys::NVIDIA_MIG_PREFIX))),
    }
}

fn memory_mib_floor(q: &str) -> Option<u64> {
    super::quantity::parse(q).map(|b| (b / (1024.0 * 1024.0)).floor() as u64)
}

/// The engine's description of node number `i` (named `n<i>`: Kubernetes names may be longer than the
/// engine allows) and its unhealthy GPU indices.
fn node_description(
    i: usize,
    n: &NodeInfo,
    gpu: Option<&GpuNodeView>,
) -> (NodeDescription, Vec<u32>) {
    let view = gpu.filter(|g| !g.gpus.is_empty());
    let mut count = n.gpu_count;
    let mig = view.is_some_and(|v| v.gpus.iter().any(|g| g.mig_enabled)) || n.mig_resources;
    if mig && count == 0 {
        count = view.map_or(0, |v| v.gpus.len() as u32);
    }
    let count = count.min(MAX_NODE_GPUS as u32);
    let model = view
        .and_then(|v| v.gpus.first())
        .map(|g| g.model.clone())
        .filter(|m| !m.trim().is_empty())
        .or_else(|| n.labels.get(keys::NODE_GPU_MODEL).cloned())
        .or_else(|| n.labels.get("nvidia.com/gpu.product").cloned())
        .unwrap_or_else(|| "unknown".to_string());
    let memory = view
        .and_then(|v| v.gpus.iter().map(|g| g.memory_mib).filter(|&m| m > 0).min())
        .filter(|&m| m < UNKNOWN_GPU_MEMORY_MIB);
    let unhealthy: Vec<u32> = view
        .map(|v| {
            v.gpus
                .iter()
                .filter(|g| !g.healthy && g.index < count)
                .map(|g| g.index)
                .collect()
        })
        .unwrap_or_default();
    let mig_ok = mig && gantry_core::spec::mig::table_for_model(&model).is_some();
    let gpus = (count > 0).then(|| NodeGpus {
        model,
        count: i64::from(count),
        memory: memory.map(MemoryQuantity::from_mib),
        mig: if mig_ok {
            MigMode::Enabled
        } else {
            MigMode::default()
        },
        nvlink_groups: Vec::new(),
    });
    let desc = NodeDescription {
        name: format!("n{i}"),
        labels: n
            .labels
            .iter()
            .filter(|(k, _)| !k.is_empty() && !k.chars().any(char::is_whitespace))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        taints: n.taints.clone(),
        pool: Pool::default(),
        cpu: MilliQuantity::from_milli(n.cpu_milli),
        memory: MemoryQuantity::from_mib(n.memory_mib),
        gpus,
    };
    (desc, unhealthy)
}

/// Sum over containers, at least the largest init container, plus overhead (Kubernetes' rule).
fn pod_requests(spec: &PodSpec, resource: &str) -> u64 {
    let parse = |q: &str| -> Option<u64> {
        if resource == "memory" {
            memory_mib(q)
        } else {
            cpu_milli(q)
        }
    };
    let one = |c: &k8s_openapi::api::core::v1::Container| -> u64 {
        let r = c.resources.as_ref();
        r.and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(resource))
            .or_else(|| {
                r.and_then(|r| r.limits.as_ref())
                    .and_then(|m| m.get(resource))
            })
            .and_then(|q| parse(&q.0))
            .unwrap_or(0)
    };
    let sum: u64 = spec.containers.iter().map(one).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(one)
        .max()
        .unwrap_or(0);
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| parse(&q.0))
        .unwrap_or(0);
    sum.max(init) + overhead
}

fn pod_info(pod: &Pod) -> Option<PodInfo> {
    let meta = &pod.metadata;
    let name = meta.name.clone()?;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let spec = pod.spec.as_ref()?;
    let ann = meta.annotations.as_ref();
    let a = |k: &str| ann.and_then(|m| m.get(k)).map(String::as_str);
    let labels = meta.labels.as_ref();
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    let priority = a(keys::PRIORITY)
        .and_then(|p| p.trim().parse().ok())
        .or(spec.priority.map(i64::from))
        .unwrap_or(0);
    let whole = pod_requests(spec, keys::NVIDIA_GPU) / 1000;
    let mig = spec
        .containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.limits.as_ref())
        .flat_map(|l| l.keys())
        .find_map(|k| k.strip_prefix(keys::NVIDIA_MIG_PREFIX).map(str::to_string));
    let share = a(keys::GPU_SHARE).and_then(|s| s.trim().parse::<u16>().ok());
    let demand = match (share, mig) {
        (Some(m), _) if (1..1000).contains(&m) => Demand::Share {
            milli: m,
            memory_mib: 0,
        },
        (_, Some(profile)) => Demand::Mig { profile },
        _ if whole > 0 => Demand::Whole {
            count: u8::try_from(whole).unwrap_or(u8::MAX),
        },
        _ => Demand::None,
    };
    let tolerations = spec
        .tolerations
        .iter()
        .flatten()
        .map(|t| Toleration {
            key: t.key.clone().unwrap_or_default(),
            operator: match t.operator.as_deref() {
                Some("Exists") => TolerationOperator::Exists,
                _ => TolerationOperator::Equal,
            },
            value: t.value.clone().filter(|v| !v.is_empty()),
            effect: match t.effect.as_deref() {
                Some("NoSchedule") => Some(TaintEffect::NoSchedule),
                Some("PreferNoSchedule") => Some(TaintEffect::PreferNoSchedule),
                Some("NoExecute") => Some(TaintEffect::NoExecute),
                _ => None,
            },
        })
        .collect();
    // Required node affinity: the first term (terms are ORed; one term is the common case, and
    // honouring only the first never places a Pod where the kubelet would refuse it).
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .and_then(|s| s.node_selector_terms.first())
        .and_then(|t| t.match_expressions.as_ref())
        .map(|es| {
            es.iter()
                .filter_map(|e| {
                    let operator = match e.operator.as_str() {
                        "In" => LabelOperator::In,
                        "NotIn" => LabelOperator::NotIn,
                        "Exists" => LabelOperator::Exists,
                        "DoesNotExist" => LabelOperator::DoesNotExist,
                        "Gt" => LabelOperator::Gt,
                        "Lt" => LabelOperator::Lt,
                        _ => return None,
                    };
                    Some(LabelExpression {
                        key: e.key.clone(),
                        operator,
                        values: e.values.clone().unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let workload = labels
        .and_then(|l| l.get(keys::WORKLOAD))
        .map(|w| format!("{namespace}/{w}"));
    let minimum = a(keys::GANG_MINIMUM)
        .and_then(|g| g.trim().parse::<u32>().ok())
        .unwrap_or(1);
    let gang = workload
        .clone()
        .filter(|_| minimum > 1)
        .map(|w| (w, minimum));
    Some(PodInfo {
        pod: PodRef {
            namespace,
            name,
            uid: meta.uid.clone(),
        },
        node: spec.node_name.clone().filter(|n| !n.is_empty()),
        ours: spec.scheduler_name.as_deref() == Some(keys::SCHEDULER_NAME),
        terminating: meta.deletion_timestamp.is_some(),
        finished: phase == "Succeeded" || phase == "Failed",
        priority,
        created: meta
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        cpu_milli: pod_requests(spec, "cpu"),
        memory_mib: pod_requests(spec, "memory"),
        demand,
        models: a(keys::GPU_MODELS)
            .map(|m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        required,
        tolerations,
        strategy: a(keys::STRATEGY).and_then(|s| Policy::from_name(s).ok()),
        gang,
        workload,
        replica: labels
            .and_then(|l| l.get(keys::REPLICA))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        assigned: a(keys::ASSIGNED_GPUS).map(str::to_string),
        queue: a(keys::QUEUE).unwrap_or("default").to_string(),
        started: started(pod),
        deadline: spec.active_deadline_seconds,
    })
}

/// When a Pod started: `status.startTime`, else when it was bound (`PodScheduled=True`), Unix seconds.
fn started(pod: &Pod) -> Option<i64> {
    let status = pod.status.as_ref()?;
    status
        .start_time
        .as_ref()
        .map(|t| t.0.as_second())
        .or_else(|| {
            status
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")?
                .last_transition_time
                .as_ref()
                .map(|t| t.0.as_second())
        })
}

//! The workload spec: what to run, how much of what, where it may go, and how it is treated.
//!
//! ```yaml
//! name: finetune-llama
//! kind: training
//! priorityClass: high-priority-training
//! queue: research
//! replicas: 4
//! gangMinimum: 4
//! resources:
//!   cpu: "16"
//!   memory: 128Gi
//!   shm: 16Gi
//!   gpu: {count: 2, models: [H100-80GB], exclusive: true}
//! placement:
//!   nodeSelector: {gantry.dev/pool: training}
//!   tolerations: [{key: dedicated, operator: Equal, value: training, effect: NoSchedule}]
//!   topology: nvlink
//! timeout: 2d
//! run: {command: [python, train.py], args: [--epochs, "3"]}
//! ```

use super::cluster::{ClusterSpec, PriorityClass, TaintEffect};
use super::mig::{self, MigTable};
use super::units::{Duration, MemoryQuantity, MilliQuantity};
use super::{MAX_NODE_GPUS, Problems, SpecError, join};
use crate::model::{GpuDemand, GpuModels, ModelSet, Pod};
use crate::policies::Policy;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Serde default of `replicas`.
fn one() -> i64 {
    1
}

/// Serde default of `preemptible`.
fn yes() -> bool {
    true
}

/// Leaves `replicas: 1` out when writing.
fn is_one(n: &i64) -> bool {
    *n == 1
}

/// Leaves `preemptible: true` out when writing.
fn is_true(b: &bool) -> bool {
    *b
}

/// Leaves default values out when writing.
fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// A workload: one or more identical replicas, scheduled together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Name: lowercase letters, digits, '-' and '.', at most 63 characters; unique in a file.
    #[cfg_attr(
        feature = "schema",
        schemars(pattern(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"))
    )]
    pub name: String,
    /// What sort of work it is (default `batch`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: WorkloadKind,
    /// Priority class name (see the cluster's `priorityClasses`); absent = the default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    /// Queue it is charged to (absent = `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Number of identical replicas (default 1); resources are per replica.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub replicas: i64,
    /// Replicas that must start together, 1..=replicas (absent = all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub gang_minimum: Option<i64>,
    /// What each replica needs.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: Resources,
    /// Where replicas may and would rather go.
    #[serde(default, skip_serializing_if = "is_default")]
    pub placement: Placement,
    /// Whether higher-priority work may evict it (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub preemptible: bool,
    /// Whether it may run on spot capacity (default `never`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub spot: SpotPolicy,
    /// Longest run before it is stopped, e.g. `"2h"`; absent = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Times a failed run is retried (0..=100, default 0).
    #[serde(default, skip_serializing_if = "is_default")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 100)))]
    pub retries: i64,
    /// How long a finished workload is kept before deletion, e.g. `"1d"`; absent = kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_after_finished: Option<Duration>,
    /// Placement strategy for this workload instead of the scheduler's (see `gantry strategies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// How to start it (standalone: the process; Kubernetes: the container image and command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunSpec>,
}

/// What sort of work a workload is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Model training: long, often multi-GPU and gang-scheduled.
    Training,
    /// Serving: long-running, latency-sensitive.
    Inference,
    /// Image, video or 3D generation jobs.
    AssetGeneration,
    /// Finite offline jobs (the default).
    #[default]
    Batch,
    /// Notebooks and shells, with a person waiting.
    Interactive,
}

/// Per-replica resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// CPU cores: `"4"`, `0.5` or `"500m"` (absent = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<MilliQuantity>,
    /// Memory: `"16Gi"`, `"500M"` (absent = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryQuantity>,
    /// Shared memory (`/dev/shm`), part of `memory`: `"8Gi"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm: Option<MemoryQuantity>,
    /// GPU demand (absent = CPU only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRequest>,
}

/// GPU demand: exactly one of `count`, `share` or `mig`, plus constraints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GpuRequest {
    /// Whole GPUs on one node (1..=8, or the largest node's count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 8)))]
    pub count: Option<i64>,
    /// A fraction of one GPU in milli (1..=999; 1000 would be `count: 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 999)))]
    pub share: Option<i64>,
    /// GPU memory the share needs, e.g. `"8Gi"` (only with `share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryQuantity>,
    /// A MIG profile, e.g. `1g.10gb` or `3g.40gb` (valid for the allowed models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<String>,
    /// Allowed GPU models (empty = any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Least total memory of each GPU, e.g. `"40Gi"` (not with `mig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory: Option<MemoryQuantity>,
    /// The node runs no other GPU work while this runs (only with `count`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub exclusive: bool,
}

/// Where replicas may go (hard rules) and would rather go (weights).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Placement {
    /// Labels a node must have, exactly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Label expressions: required (all must hold) and preferred (weighted).
    #[serde(default, skip_serializing_if = "is_default")]
    pub affinity: Affinity,
    /// Taints this workload tolerates (Kubernetes semantics).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// GPU locality: `any` (default), `same-node` (all replicas on one node), `nvlink`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub topology: Topology,
}

/// Node affinity by label expressions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Affinity {
    /// Every expression must hold on the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<LabelExpression>,
    /// Nodes matching a term gain its weight in scoring.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred: Vec<PreferredTerm>,
}

/// A weighted preference: nodes matching all its expressions gain `weight`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreferredTerm {
    /// Weight, 1..=100.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 100)))]
    pub weight: i64,
    /// Expressions that must all hold for the weight to count.
    #[serde(default)]
    pub match_expressions: Vec<LabelExpression>,
}

/// A test on one node label, as in Kubernetes node affinity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelExpression {
    /// Label key.
    pub key: String,
    /// How the label is tested.
    pub operator: LabelOperator,
    /// Values: one or more for In/NotIn, none for Exists/DoesNotExist, one integer for Gt/Lt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A label test operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum LabelOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's integer value is greater than the one value.
    Gt,
    /// The label's integer value is less than the one value.
    Lt,
}

/// A toleration of node taints (Kubernetes semantics).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    /// Taint key; empty with `Exists` tolerates every taint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// `Equal` (default: key and value match) or `Exists` (key matches; no value).
    #[serde(default, skip_serializing_if = "is_default")]
    pub operator: TolerationOperator,
    /// Taint value to match (with `Equal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Taint effect to match (absent = every effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
}

/// How a toleration matches a taint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum TolerationOperator {
    /// Key and value must equal the taint's.
    #[default]
    Equal,
    /// The key must equal the taint's (or be empty: any key); no value.
    Exists,
}

/// GPU locality a workload needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// No constraint (the default).
    #[default]
    Any,
    /// All replicas on one node.
    SameNode,
    /// Each replica's GPUs in one NVLink group (needs `count` of 2 or more).
    Nvlink,
}

/// Whether a workload may use spot (reclaimable) capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SpotPolicy {
    /// Never on spot nodes (the default).
    #[default]
    Never,
    /// Spot nodes allowed, no preference.
    Allow,
    /// Spot nodes preferred when they fit.
    Prefer,
    /// Only spot nodes.
    Require,
}

/// How to start a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunSpec {
    /// Program and its first arguments, not run through a shell: `[python, train.py]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Further arguments, appended to `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables (gantry sets `CUDA_VISIBLE_DEVICES` itself).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Absolute working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Container image (required on Kubernetes; optional standalone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Where a workload will run, which decides what `run` must hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMode {
    /// `gantry serve`: needs `run.command`.
    #[default]
    Standalone,
    /// Kubernetes: needs `run.image`.
    Kubernetes,
    /// `gantry simulate`: `run` is ignored.
    Simulation,
}

/// What a workload is validated against.
#[derive(Clone, Copy, Debug, Default)]
pub struct ValidationContext<'a> {
    /// The cluster, when known: its priority classes, queues, GPU models and node sizes.
    pub cluster: Option<&'a ClusterSpec>,
    /// Where it will run.
    pub mode: RunMode,
}

impl<'a> ValidationContext<'a> {
    /// Validation against `cluster` for `mode`.
    pub fn new(cluster: Option<&'a ClusterSpec>, mode: RunMode) -> Self {
        ValidationContext { cluster, mode }
    }

    /// The priority classes in force: the cluster's, or the shipped defaults.
    pub fn priority_classes(&self) -> Cow<'a, [PriorityClass]> {
        match self.cluster {
            Some(c) => c.effective_priority_classes(),
            None => Cow::Owned(PriorityClass::defaults()),
        }
    }
}

/// Environment variables gantry sets from the assigned devices.
const RESERVED_ENV: [&str; 2] = ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"];

impl WorkloadSpec {
    /// A minimal workload called `name` (one replica, nothing requested).
    pub fn named(name: &str) -> Self {
        WorkloadSpec {
            name: name.to_string(),
            kind: WorkloadKind::default(),
            priority_class: None,
            queue: None,
            replicas: 1,
            gang_minimum: None,
            resources: Resources::default(),
            placement: Placement::default(),
            preemptible: true,
            spot: SpotPolicy::default(),
            timeout: None,
            retries: 0,
            ttl_after_finished: None,
            strategy: None,
            run: None,
        }
    }

    /// The queue it is charged to (`default` when none is named).
    pub fn queue_name(&self) -> &str {
        self.queue.as_deref().unwrap_or("default")
    }

    /// Checks every field; returns all problems found, each naming its field.
    pub fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), Vec<SpecError>> {
        let mut p = Problems::default();
        p.name("name", &self.name);
        self.check_scheduling(&mut p, ctx);
        self.check_resources(&mut p, ctx);
        self.check_placement(&mut p);
        self.check_lifecycle(&mut p);
        self.check_run(&mut p, ctx.mode);
        p.finish()
    }

    /// Translates the demand of one replica into an engine [`Pod`] (after validation).
    ///
    /// MIG profiles have no engine representation yet and are refused; unknown GPU model names too.
    pub fn pod(&self, models: &GpuModels) -> Result<Pod, Vec<SpecError>> {
        let mut p = Problems::default();
        let r = &self.resources;
        let cpu_milli = r
            .cpu
            .as_ref()
            .and_then(|q| p.milli("resources.cpu", q))
            .unwrap_or(0);
        let memory_mib = r
            .memory
            .as_ref()
            .and_then(|q| p.mib("resources.memory", q))
            .unwrap_or(0);
        let mut set = ModelSet::ANY;
        let mut gpu = GpuDemand::None;
        if let Some(g) = &r.gpu {
            for (i, m) in g.models.iter().enumerate() {
                match models.get(m) {
                    Some(id) => set.insert(id),
                    None => p.add(
                        format!("resources.gpu.models[{i}]"),
                        format!("no node has GPU model {m:?}"),
                    ),
                }
            }
            gpu = match (g.count, g.share, &g.mig) {
                (Some(c), None, None) if (1..=MAX_NODE_GPUS).contains(&c) => {
                    GpuDemand::Whole(c as u8)
                }
                (None, Some(s), None) if (1..1000).contains(&s) => GpuDemand::Share(s as u16),
                (None, None, Some(_)) => {
                    p.add(
                        "resources.gpu.mig",
                        "MIG placement is not supported by the engine yet",
                    );
                    GpuDemand::None
                }
                _ => {
                    p.add(
                        "resources.gpu",
                        "invalid GPU demand (validate the workload first)",
                    );
                    GpuDemand::None
                }
            };
        }
        p.finish().map(|()| Pod {
            cpu_milli,
            memory_mib,
            gpu,
            models: set,
        })
    }

    /// Priority class, queue, replicas and gang, strategy, spot.
    fn check_scheduling(&self, p: &mut Problems, ctx: &ValidationContext<'_>) {
        if let Some(pc) = &self.priority_class {
            let classes = ctx.priority_classes();
            if !classes.iter().any(|c| c.name == *pc) {
                let known: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
                p.add(
                    "priorityClass",
                    format!("unknown priority class {pc:?}; known: {}", known.join(", ")),
                );
            }
        }
        let queue = self.queue_name();
        if queue.is_empty() {
            p.add(
                "queue",
                "must not be empty (leave it out for the default queue)",
            );
        }
        // Checked only when the cluster declares queues.
        let queues = ctx.cluster.map_or(&[][..], |c| &c.queues[..]);
        if !queues.is_empty() && !queue.is_empty() && !queues.iter().any(|q| q.name == queue) {
            let known: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
            let what = if self.queue.is_none() {
                "no queue given and the cluster has no queue named \"default\"".to_string()
            } else {
                format!("unknown queue {queue:?}")
            };
            p.add("queue", format!("{what}; known: {}", known.join(", ")));
        }
        if self.replicas < 1 {
            p.add(
                "replicas",
                format!("must be at least 1, got {}", self.replicas),
            );
        } else if self.replicas > 1 && ctx.mode == RunMode::Standalone {
            p.add(
                "replicas",
                format!(
                    "the standalone server runs one process per workload, got {}: ask for more GPUs \
                     with resources.gpu.count (one process sees them all), or run multi-replica gangs \
                     in Kubernetes mode",
                    self.replicas
                ),
            );
        }
        if let Some(g) = self.gang_minimum {
            if g < 1 {
                p.add("gangMinimum", format!("must be at least 1, got {g}"));
            } else if self.replicas >= 1 && g > self.replicas {
                p.add(
                    "gangMinimum",
                    format!(
                        "gang minimum {g} is above replicas ({}): it can never be met",
                        self.replicas
                    ),
                );
            }
        }
        if let Some(Err(e)) = self.strategy.as_deref().map(Policy::from_name) {
            p.add("strategy", e);
        }
        let no_spot_nodes = ctx
            .cluster
            .is_some_and(|c| !c.nodes.iter().any(|n| n.pool == super::Pool::Spot));
        if self.spot == SpotPolicy::Require && no_spot_nodes {
            p.add(
                "spot",
                "require: the cluster has no spot nodes, so it could never run",
            );
        }
    }

    /// CPU, memory, shm and the GPU request.
    fn check_resources(&self, p: &mut Problems, ctx: &ValidationContext<'_>) {
        let r = &self.resources;
        let cpu = r.cpu.as_ref().and_then(|q| p.milli("resources.cpu", q));
        let memory = r.memory.as_ref().and_then(|q| p.mib("resources.memory", q));
        let shm = r.shm.as_ref().and_then(|q| p.mib("resources.shm", q));
        match (shm, memory) {
            (Some(shm), Some(memory)) if shm > memory => p.add(
                "resources.shm",
                format!(
                    "{} of shared memory is more than the workload's memory ({}); shm is part of memory",
                    show_mib(shm),
                    show_mib(memory)
                ),
            ),
            _ => {}
        }
        let (max_cpu, max_mem) = ctx
            .cluster
            .map_or((None, None), ClusterSpec::largest_node_cpu_memory);
        match (cpu, max_cpu) {
            (Some(c), Some(max)) if c > max => p.add(
                "resources.cpu",
                format!(
                    "{} cores is more than the largest node has ({})",
                    show_cores(c),
                    show_cores(max)
                ),
            ),
            _ => {}
        }
        match (memory, max_mem) {
            (Some(m), Some(max)) if m > max => p.add(
                "resources.memory",
                format!(
                    "{} is more than the largest node has ({})",
                    show_mib(m),
                    show_mib(max)
                ),
            ),
            _ => {}
        }
        if let Some(gpu) = &r.gpu {
            gpu.check(p, "resources.gpu", ctx);
        }
    }

    /// Node selector, affinity, tolerations, topology.
    fn check_placement(&self, p: &mut Problems) {
        let pl = &self.placement;
        for key in pl.node_selector.keys() {
            p.label_key("placement.nodeSelector", key);
        }
        for (i, e) in pl.affinity.required.iter().enumerate() {
            e.check(p, &format!("placement.affinity.required[{i}]"));
        }
        for (i, t) in pl.affinity.preferred.iter().enumerate() {
            let path = format!("placement.affinity.preferred[{i}]");
            if !(1..=100).contains(&t.weight) {
                p.add(
                    join(&path, "weight"),
                    format!("must be between 1 and 100, got {}", t.weight),
                );
            }
            if t.match_expressions.is_empty() {
                p.add(
                    join(&path, "matchExpressions"),
                    "needs at least one expression",
                );
            }
            for (j, e) in t.match_expressions.iter().enumerate() {
                e.check(p, &format!("{path}.matchExpressions[{j}]"));
            }
        }
        for (i, t) in pl.tolerations.iter().enumerate() {
            let path = format!("placement.tolerations[{i}]");
            match t.operator {
                TolerationOperator::Exists => {
                    if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                        p.add(
                            join(&path, "value"),
                            "must be empty when operator is Exists (Exists matches any value)",
                        );
                    }
                }
                TolerationOperator::Equal => {
                    if t.key.is_empty() {
                        p.add(
                            join(&path, "key"),
                            "operator Equal needs a key (to tolerate every taint, use operator: Exists with no key)",
                        );
                    }
                }
            }
            if !t.key.is_empty() && t.key.chars().any(char::is_whitespace) {
                p.add(join(&path, "key"), "must not contain spaces");
            }
        }
        if pl.topology == Topology::Nvlink {
            let count = self.resources.gpu.as_ref().and_then(|g| g.count);
            if count.is_none_or(|c| c < 2) {
                p.add(
                    "placement.topology",
                    "nvlink links a replica's GPUs: it needs resources.gpu.count of 2 or more",
                );
            }
        }
    }

    /// Timeout, retries, TTL.
    fn check_lifecycle(&self, p: &mut Problems) {
        let timeout = self.timeout.as_ref().and_then(|t| p.seconds("timeout", t));
        if timeout == Some(0) {
            p.add(
                "timeout",
                "must be longer than 0s (leave it out for no limit)",
            );
        }
        if self.retries < 0 {
            p.add(
                "retries",
                format!("must not be negative, got {}", self.retries),
            );
        } else if self.retries > 100 {
            p.add(
                "retries",
                format!("must be at most 100, got {}", self.retries),
            );
        }
        if let Some(t) = &self.ttl_after_finished {
            p.seconds("ttlAfterFinished", t);
        }
    }

    /// What `run` must hold in `mode`.
    fn check_run(&self, p: &mut Problems, mode: RunMode) {
        let Some(run) = &self.run else {
            match mode {
                RunMode::Standalone => p.add(
                    "run",
                    "a standalone workload needs run.command: the program to start",
                ),
                RunMode::Kubernetes => p.add("run", "a Kubernetes workload needs run.image"),
                RunMode::Simulation => {}
            }
            return;
        };
        if run.command.is_empty() && mode == RunMode::Standalone {
            p.add(
                "run.command",
                "must name the program to run, e.g. [python, train.py]",
            );
        }
        if run.command.first().is_some_and(|c| c.trim().is_empty()) {
            p.add("run.command[0]", "the program name must not be empty");
        }
        match run.image.as_deref() {
            Some(i) if i.trim().is_empty() => p.add("run.image", "must not be empty"),
            None if mode == RunMode::Kubernetes => {
                p.add("run.image", "a Kubernetes workload needs a container image")
            }
            _ => {}
        }
        if let Some(dir) = run.working_dir.as_ref().filter(|d| !d.starts_with('/')) {
            p.add(
                "run.workingDir",
                format!("{dir:?} must be an absolute path"),
            );
        }
        for key in run.env.keys() {
            let path = format!("run.env.{key}");
            let valid = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                p.add(
                    path,
                    format!("{key:?} is not a valid variable name (letters, digits, '_', not starting with a digit)"),
                );
            } else if RESERVED_ENV.contains(&key.as_str()) {
                p.add(
                    path,
                    "is set by gantry from the assigned GPUs; leave it out",
                );
            }
        }
    }
}

impl GpuRequest {
    /// One of count/share/mig, their ranges, models, memory, exclusive, MIG.
    fn check(&self, p: &mut Problems, base: &str, ctx: &ValidationContext<'_>) {
        let f = |field: &str| join(base, field);
        let given: Vec<&str> = [
            ("count", self.count.is_some()),
            ("share", self.share.is_some()),
            ("mig", self.mig.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| *n)
        .collect();
        match given.len() {
            0 => p.add(
                base,
                "set one of count (whole GPUs), share (milli of one GPU) or mig (a MIG profile)",
            ),
            1 => {}
            _ => p.add(
                base,
                format!("{} are alternatives: set exactly one", given.join(" and ")),
            ),
        }

        // Nodes whose GPUs a whole-GPU or shared request may use (when the cluster is known): an allowed
        // model, not in MIG mode (MIG GPUs are only handed out as MIG instances).
        let allowed =
            |model: &str| self.models.is_empty() || self.models.iter().any(|m| m == model);
        let candidates: Option<Vec<&super::NodeGpus>> = ctx.cluster.map(|c| {
            c.nodes
                .iter()
                .filter_map(|n| n.gpus.as_ref())
                .filter(|g| allowed(&g.model) && g.mig == super::MigMode::Disabled)
                .collect()
        });

        for (i, m) in self.models.iter().enumerate() {
            let path = format!("{base}.models[{i}]");
            if m.trim().is_empty() {
                p.add(path, "must not be empty");
            } else if self.models[..i].contains(m) {
                p.add(path, format!("{m:?} is listed twice"));
            } else if let Some(cluster) = ctx.cluster {
                let known = cluster.gpu_models();
                if !known.contains(m.as_str()) {
                    let list: Vec<&str> = known.into_iter().collect();
                    p.add(
                        path,
                        format!(
                            "no node in the cluster has GPU model {m:?}; its models: {}",
                            if list.is_empty() {
                                "none".to_string()
                            } else {
                                list.join(", ")
                            }
                        ),
                    );
                }
            }
        }

        if let Some(c) = self.count {
            if c < 1 {
                p.add(f("count"), format!("must be at least 1, got {c}"));
            } else if let Some(nodes) = &candidates {
                let largest = nodes.iter().map(|g| g.count).max().unwrap_or(0);
                if largest == 0 {
                    p.add(
                        f("count"),
                        "no node in the cluster has whole (non-MIG) GPUs of an allowed model",
                    );
                } else if c > largest {
                    p.add(
                        f("count"),
                        format!("{c} GPUs is more than the largest allowed node has ({largest}); a replica runs on one node"),
                    );
                }
            } else if c > MAX_NODE_GPUS {
                p.add(
                    f("count"),
                    format!("{c} GPUs is more than one node holds ({MAX_NODE_GPUS}); a replica runs on one node"),
                );
            }
        }

        if let Some(s) = self.share {
            if s < 1 {
                p.add(
                    f("share"),
                    format!("must be between 1 and 999 milli of one GPU, got {s}"),
                );
            } else if s == 1000 {
                p.add(f("share"), "1000 is a whole GPU: use count: 1 instead");
            } else if s > 1000 {
                p.add(
                    f("share"),
                    format!("{s} is over 1000 (one whole GPU): a share is 1..999 milli of one GPU; use count for whole GPUs"),
                );
            }
        }

        if let Some(m) = &self.memory {
            if self.share.is_none() {
                p.add(
                    f("memory"),
                    "GPU memory is given only with a share; for whole GPUs use minMemory",
                );
            }
            if let Some(mib) = p.mib(&f("memory"), m) {
                if mib == 0 {
                    p.add(
                        f("memory"),
                        "must be more than 0 (leave it out for no limit)",
                    );
                } else if let Some(max) = candidates
                    .as_ref()
                    .and_then(|n| n.iter().filter_map(|g| g.memory_mib()).max())
                    .filter(|&max| mib > max)
                {
                    p.add(
                        f("memory"),
                        format!(
                            "{} is more than any allowed GPU has ({})",
                            show_mib(mib),
                            show_mib(max)
                        ),
                    );
                }
            }
        }

        if let Some(m) = &self.min_memory {
            if self.mig.is_some() {
                p.add(
                    f("minMemory"),
                    "a MIG profile fixes the memory; leave minMemory out",
                );
            }
            if let Some(mib) = p.mib(&f("minMemory"), m) {
                if mib == 0 {
                    p.add(f("minMemory"), "must be more than 0 (leave it out for any)");
                } else if let Some(nodes) = &candidates {
                    let known: Vec<u64> = nodes.iter().filter_map(|g| g.memory_mib()).collect();
                    if !known.is_empty() && known.iter().all(|&x| x < mib) {
                        p.add(
                            f("minMemory"),
                            format!(
                                "no allowed GPU in the cluster has {} (largest: {})",
                                show_mib(mib),
                                show_mib(known.iter().copied().max().unwrap_or(0))
                            ),
                        );
                    }
                }
            }
        }

        if self.exclusive && self.count.is_none() {
            p.add(
                f("exclusive"),
                "exclusive needs whole GPUs (count); a share or MIG instance shares its GPU by design",
            );
        }

        if let Some(profile) = &self.mig {
            self.check_mig(p, base, profile, ctx);
        }
    }

    /// The profile exists for the allowed models (or the cluster's MIG GPUs, or any table).
    fn check_mig(&self, p: &mut Problems, base: &str, profile: &str, ctx: &ValidationContext<'_>) {
        let path = join(base, "mig");
        if profile.trim().is_empty() {
            p.add(path, "must name a MIG profile, e.g. 1g.10gb");
            return;
        }
        // The tables of the GPUs it may land on: the allowed models, else the cluster's MIG GPUs.
        let mut tables: Vec<(&str, &'static MigTable)> = Vec::new();
        if !self.models.is_empty() {
            for (i, m) in self.models.iter().enumerate() {
                match mig::table_for_model(m) {
                    Some(t) => tables.push((m.as_str(), t)),
                    None => p.add(
                        format!("{base}.models[{i}]"),
                        format!(
                            "{m:?} has no known MIG profiles (MIG models: A100-40GB, A100-80GB, H100-80GB)"
                        ),
                    ),
                }
            }
        } else if let Some(cluster) = ctx.cluster {
            let mig_gpus = cluster
                .nodes
                .iter()
                .filter_map(|n| n.gpus.as_ref())
                .filter(|g| g.mig == super::MigMode::Enabled);
            for g in mig_gpus {
                match mig::table_for_model(&g.model) {
                    Some(t) if !tables.iter().any(|(_, x)| x.model == t.model) => {
                        tables.push((g.model.as_str(), t))
                    }
                    _ => {}
                }
            }
            if tables.is_empty() {
                p.add(path, "no node in the cluster has MIG enabled");
                return;
            }
        } else {
            tables.extend(mig::TABLES.iter().map(|t| (t.model, *t)));
        }
        if tables.is_empty() {
            return;
        }
        if !self.models.is_empty() {
            // Every allowed model must offer the profile.
            for (model, t) in &tables {
                if t.profile(profile).is_none() {
                    p.add(
                        path.clone(),
                        format!(
                            "unknown MIG profile {profile:?} for {model}; its profiles: {}",
                            t.profile_names()
                        ),
                    );
                }
            }
        } else if !tables.iter().any(|(_, t)| t.profile(profile).is_some()) {
            let known: Vec<String> = tables
                .iter()
                .map(|(m, t)| format!("{m}: {}", t.profile_names()))
                .collect();
            p.add(
                path.clone(),
                format!(
                    "unknown MIG profile {profile:?}; known: {}",
                    known.join("; ")
                ),
            );
        }
        // With allowed models and a cluster: some node of those models must be in MIG mode.
        let mig_node_missing = ctx.cluster.is_some_and(|cluster| {
            !self.models.is_empty()
                && !cluster
                    .nodes
                    .iter()
                    .filter_map(|n| n.gpus.as_ref())
                    .any(|g| g.mig == super::MigMode::Enabled && self.models.contains(&g.model))
        });
        if mig_node_missing {
            p.add(path, "no node of the allowed models has MIG enabled");
        }
    }
}

impl LabelExpression {
    /// Key present; values as the operator needs.
    fn check(&self, p: &mut Problems, path: &str) {
        p.label_key(&join(path, "key"), &self.key);
        let values = join(path, "values");
        match self.operator {
            LabelOperator::In | LabelOperator::NotIn => {
                if self.values.is_empty() {
                    p.add(
                        values,
                        format!("{:?} needs at least one value", self.operator),
                    );
                }
            }
            LabelOperator::Exists | LabelOperator::DoesNotExist => {
                if !self.values.is_empty() {
                    p.add(values, format!("must be empty for {:?}", self.operator));
                }
            }
            LabelOperator::Gt | LabelOperator::Lt => {
                if self.values.len() != 1 || self.values[0].trim().parse::<i64>().is_err() {
                    p.add(
                        values,
                        format!("{:?} needs exactly one integer value", self.operator),
                    );
                }
            }
        }
    }
}

/// Validates a list of workloads (a workloads file): each one, plus unique names. Paths start `[i].`.
pub fn validate_workloads(
    workloads: &[WorkloadSpec],
    ctx: &ValidationContext<'_>,
) -> Result<(), Vec<SpecError>> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, w) in workloads.iter().enumerate() {
        let prefix = format!("[{i}]");
        if let Err(e) = w.validate(ctx) {
            errors.extend(e.into_iter().map(|e| e.under(&prefix)));
        }
        match seen.get(w.name.as_str()) {
            Some(first) => errors.push(SpecError::new(
                format!("{prefix}.name"),
                format!("{:?} is already the name of [{first}]", w.name),
            )),
            None if !w.name.is_empty() => {
                seen.insert(&w.name, i);
            }
            None => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A memory size for messages: `16Gi` when whole, else `1500Mi`.
fn show_mib(mib: u64) -> String {
    MemoryQuantity::from_mib(mib).0
}

/// A CPU amount for messages: `4` or `0.5`.
fn show_cores(milli: u64) -> String {
    match milli % 1000 {
        0 => (milli / 1000).to_string(),
        _ => format!("{}", milli as f64 / 1000.0),
    }
}

impl ClusterSpec {
    /// The GPU model names of the cluster's nodes.
    pub fn gpu_models(&self) -> BTreeSet<&str> {
        self.nodes
            .iter()
            .filter_map(|n| n.gpus.as_ref())
            .map(|g| g.model.as_str())
            .collect()
    }

    /// The largest readable node CPU (milli) and memory (MiB), if any node declares them.
    pub fn largest_node_cpu_memory(&self) -> (Option<u64>, Option<u64>) {
        let cpu = self.nodes.iter().filter_map(|n| n.cpu.milli().ok()).max();
        let mem = self.nodes.iter().filter_map(|n| n.memory.mib().ok()).max();
        (cpu, mem)
    }
}

#[cfg(test)]
mod tests {
    use super::super::cluster::{MigMode, NodeDescription, NodeGpus, Pool, QueueSpec};
    use super::*;

    fn gpu_workload() -> WorkloadSpec {
        let mut w = WorkloadSpec::named("train");
        w.resources.gpu = Some(GpuRequest {
            count: Some(2),
            ..GpuRequest::default()
        });
        w.run = Some(RunSpec {
            command: vec!["python".into(), "train.py".into()],
            ..RunSpec::default()
        });
        w
    }

    fn ctx() -> ValidationContext<'static> {
        ValidationContext::default()
    }

    /// The paths of the problems `w` has (empty when valid).
    fn paths_in(w: &WorkloadSpec, ctx: &ValidationContext<'_>) -> Vec<String> {
        match w.validate(ctx) {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.path).collect(),
        }
    }

    /// Asserts that `w` has exactly one problem, at `path`.
    fn only(w: &WorkloadSpec, path: &str) {
        only_in(w, &ctx(), path);
    }

    fn only_in(w: &WorkloadSpec, ctx: &ValidationContext<'_>, path: &str) {
        let errors = w.validate(ctx).err().unwrap_or_default();
        assert_eq!(
            errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            [path],
            "{errors:?}"
        );
    }

    fn gpu(w: &mut WorkloadSpec) -> &mut GpuRequest {
        w.resources.gpu.as_mut().unwrap()
    }

    fn cluster() -> ClusterSpec {
        let node =
            |name: &str, model: &str, count: i64, mig: MigMode, pool: Pool| NodeDescription {
                name: name.into(),
                labels: BTreeMap::new(),
                taints: Vec::new(),
                pool,
                cpu: "64".into(),
                memory: "512Gi".into(),
                gpus: Some(NodeGpus {
                    model: model.into(),
                    count,
                    memory: Some("80Gi".into()),
                    mig,
                    nvlink_groups: Vec::new(),
                }),
            };
        ClusterSpec {
            priority_classes: Vec::new(),
            queues: vec![QueueSpec::named("research"), QueueSpec::named("default")],
            nodes: vec![
                node("h0", "H100-80GB", 8, MigMode::Disabled, Pool::OnDemand),
                node("a0", "A100-80GB", 4, MigMode::Enabled, Pool::OnDemand),
            ],
        }
    }

    #[test]
    fn a_plain_workload_is_valid() {
        assert_eq!(paths_in(&gpu_workload(), &ctx()), Vec::<String>::new());
        let c = cluster();
        assert_eq!(
            paths_in(
                &gpu_workload(),
                &ValidationContext::new(Some(&c), RunMode::Standalone)
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn name_must_be_a_dns_label() {
        let mut w = gpu_workload();
        w.name = "Train Job".into();
        only(&w, "name");
    }

    #[test]
    fn replicas_and_gang_minimum() {
        let mut w = gpu_workload();
        w.replicas = 0;
        only(&w, "replicas");
        w.replicas = -3;
        only(&w, "replicas");
        w.replicas = 2;
        // One process per workload standalone: more replicas are refused there, accepted elsewhere.
        only(&w, "replicas");
        let sim = ValidationContext::new(None, RunMode::Simulation);
        assert!(w.validate(&sim).is_ok());
        w.gang_minimum = Some(3);
        only_in(&w, &sim, "gangMinimum");
        w.gang_minimum = Some(0);
        only_in(&w, &sim, "gangMinimum");
        w.gang_minimum = Some(2);
        assert!(w.validate(&sim).is_ok());
    }

    #[test]
    fn unknown_priority_class_is_checked_against_the_defaults_or_the_cluster() {
        let mut w = gpu_workload();
        w.priority_class = Some("low-priority-batch".into());
        assert!(w.validate(&ctx()).is_ok());
        w.priority_class = Some("urgent".into());
        only(&w, "priorityClass");
        let mut c = cluster();
        c.priority_classes = vec![PriorityClass {
            name: "urgent".into(),
            value: 5000,
            global_default: false,
            description: None,
        }];
        assert!(
            w.validate(&ValidationContext::new(Some(&c), RunMode::Standalone))
                .is_ok()
        );
        w.priority_class = Some("low-priority-batch".into());
        only_in(
            &w,
            &ValidationContext::new(Some(&c), RunMode::Standalone),
            "priorityClass",
        );
    }

    #[test]
    fn queue_must_exist_when_the_cluster_declares_queues() {
        let c = cluster();
        let cx = ValidationContext::new(Some(&c), RunMode::Standalone);
        let mut w = gpu_workload();
        w.queue = Some("research".into());
        assert!(w.validate(&cx).is_ok());
        w.queue = Some("nope".into());
        only_in(&w, &cx, "queue");
        w.queue = Some(String::new());
        only(&w, "queue");
    }

    #[test]
    fn cpu_memory_and_shm_are_checked() {
        let mut w = gpu_workload();
        w.resources.cpu = Some("-1".into());
        only(&w, "resources.cpu");
        w.resources.cpu = Some("4 cores".into());
        only(&w, "resources.cpu");
        w.resources.cpu = Some("500m".into());
        w.resources.memory = Some("1024".into());
        only(&w, "resources.memory");
        w.resources.memory = Some("8Gi".into());
        w.resources.shm = Some("16Gi".into());
        only(&w, "resources.shm");
        w.resources.shm = Some("-1Gi".into());
        only(&w, "resources.shm");
        w.resources.shm = Some("2Gi".into());
        assert!(w.validate(&ctx()).is_ok());
        let c = cluster();
        let cx = ValidationContext::new(Some(&c), RunMode::Standalone);
        w.resources.cpu = Some("65".into());
        only_in(&w, &cx, "resources.cpu");
        w.resources.cpu = None;
        w.resources.memory = Some("1Ti".into());
        w.resources.shm = None;
        only_in(&w, &cx, "resources.memory");
    }

    #[test]
    fn gpu_demand_is_exactly_one_of_count_share_mig() {
        let mut w = gpu_workload();
        gpu(&mut w).count = None;
        only(&w, "resources.gpu");
        gpu(&mut w).count = Some(1);
        gpu(&mut w).share = Some(500);
        only(&w, "resources.gpu");
    }

    #[test]
    fn gpu_count_is_bounded() {
        let mut w = gpu_workload();
        gpu(&mut w).count = Some(0);
        only(&w, "resources.gpu.count");
        gpu(&mut w).count = Some(-2);
        only(&w, "resources.gpu.count");
        gpu(&mut w).count = Some(9);
        only(&w, "resources.gpu.count");
        gpu(&mut w).count = Some(8);
        assert!(w.validate(&ctx()).is_ok());
        // Against the cluster: the largest node of an allowed model.
        let c = cluster();
        let cx = ValidationContext::new(Some(&c), RunMode::Standalone);
        assert!(w.validate(&cx).is_ok());
        gpu(&mut w).count = Some(9);
        only_in(&w, &cx, "resources.gpu.count");
        // The only A100-80GB node is in MIG mode: no whole GPUs of that model.
        gpu(&mut w).count = Some(1);
        gpu(&mut w).models = vec!["A100-80GB".into()];
        only_in(&w, &cx, "resources.gpu.count");
        gpu(&mut w).models = vec!["H100-80GB".into()];
        assert!(w.validate(&cx).is_ok());
        // A cluster whose largest non-MIG node has 4 GPUs refuses 6, which is fine without a cluster.
        let mut small = cluster();
        small.nodes[0].gpus.as_mut().unwrap().count = 4;
        gpu(&mut w).models.clear();
        gpu(&mut w).count = Some(6);
        assert!(w.validate(&ctx()).is_ok());
        only_in(
            &w,
            &ValidationContext::new(Some(&small), RunMode::Standalone),
            "resources.gpu.count",
        );
    }

    #[test]
    fn share_is_between_1_and_999() {
        let mut w = gpu_workload();
        gpu(&mut w).count = None;
        for bad in [0, -5, 1000, 1200] {
            gpu(&mut w).share = Some(bad);
            only(&w, "resources.gpu.share");
        }
        for good in [1, 250, 999] {
            gpu(&mut w).share = Some(good);
            assert!(w.validate(&ctx()).is_ok(), "{good}");
        }
    }

    #[test]
    fn gpu_memory_goes_with_a_share_only() {
        let mut w = gpu_workload();
        gpu(&mut w).memory = Some("8Gi".into());
        only(&w, "resources.gpu.memory");
        gpu(&mut w).count = None;
        gpu(&mut w).share = Some(250);
        assert!(w.validate(&ctx()).is_ok());
        gpu(&mut w).memory = Some("0".into());
        only(&w, "resources.gpu.memory");
        gpu(&mut w).memory = Some("8GB".into());
        only(&w, "resources.gpu.memory");
        let c = cluster();
        gpu(&mut w).memory = Some("100Gi".into());
        only_in(
            &w,
            &ValidationContext::new(Some(&c), RunMode::Standalone),
            "resources.gpu.memory",
        );
    }

    #[test]
    fn min_memory_models_and_exclusive() {
        let mut w = gpu_workload();
        gpu(&mut w).min_memory = Some("0Gi".into());
        only(&w, "resources.gpu.minMemory");
        gpu(&mut w).min_memory = Some("40Gi".into());
        assert!(w.validate(&ctx()).is_ok());
        let c = cluster();
        let cx = ValidationContext::new(Some(&c), RunMode::Standalone);
        gpu(&mut w).min_memory = Some("96Gi".into());
        only_in(&w, &cx, "resources.gpu.minMemory");
        gpu(&mut w).min_memory = None;

        gpu(&mut w).models = vec!["H100-80GB".into(), "H100-80GB".into()];
        only(&w, "resources.gpu.models[1]");
        gpu(&mut w).models = vec!["".into()];
        only(&w, "resources.gpu.models[0]");
        gpu(&mut w).models = vec!["T4".into()];
        assert!(w.validate(&ctx()).is_ok(), "no cluster: any model name");
        let errors = paths_in(&w, &cx);
        assert!(
            errors.contains(&"resources.gpu.models[0]".to_string()),
            "{errors:?}"
        );
        gpu(&mut w).models.clear();

        gpu(&mut w).exclusive = true;
        assert!(w.validate(&ctx()).is_ok());
        gpu(&mut w).count = None;
        gpu(&mut w).share = Some(300);
        only(&w, "resources.gpu.exclusive");
    }

    #[test]
    fn mig_profiles_are_checked_against_the_models() {
        let mut w = gpu_workload();
        gpu(&mut w).count = None;
        gpu(&mut w).mig = Some("3g.40gb".into());
        assert!(w.validate(&ctx()).is_ok());
        gpu(&mut w).mig = Some("5g.50gb".into());
        only(&w, "resources.gpu.mig");
        // 3g.40gb exists on 80GB parts, not on A100 40GB.
        gpu(&mut w).mig = Some("3g.40gb".into());
        gpu(&mut w).models = vec!["A100-40GB".into()];
        only(&w, "resources.gpu.mig");
        gpu(&mut w).models = vec!["H100-80GB".into(), "A100-80GB".into()];
        assert!(w.validate(&ctx()).is_ok());
        gpu(&mut w).models = vec!["T4".into()];
        only(&w, "resources.gpu.models[0]");
        gpu(&mut w).models.clear();
        gpu(&mut w).mig = Some(" ".into());
        only(&w, "resources.gpu.mig");
        gpu(&mut w).mig = Some("1g.10gb".into());
        gpu(&mut w).min_memory = Some("10Gi".into());
        only(&w, "resources.gpu.minMemory");
        gpu(&mut w).min_memory = None;
        // Against the cluster: only the A100-80GB node has MIG enabled.
        let c = cluster();
        let cx = ValidationContext::new(Some(&c), RunMode::Standalone);
        assert!(w.validate(&cx).is_ok());
        gpu(&mut w).models = vec!["H100-80GB".into()];
        only_in(&w, &cx, "resources.gpu.mig");
        gpu(&mut w).models.clear();
        gpu(&mut w).mig = Some("1g.5gb".into());
        only_in(&w, &cx, "resources.gpu.mig");
    }

    #[test]
    fn affinity_expressions_and_weights() {
        let mut w = gpu_workload();
        let expr = |op, values: &[&str]| LabelExpression {
            key: "zone".into(),
            operator: op,
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        w.placement.affinity.required = vec![expr(LabelOperator::In, &["a"])];
        w.placement.affinity.preferred = vec![PreferredTerm {
            weight: 50,
            match_expressions: vec![expr(LabelOperator::Exists, &[])],
        }];
        assert!(w.validate(&ctx()).is_ok());
        w.placement.affinity.preferred[0].weight = 0;
        only(&w, "placement.affinity.preferred[0].weight");
        w.placement.affinity.preferred[0].weight = 101;
        only(&w, "placement.affinity.preferred[0].weight");
        w.placement.affinity.preferred[0].weight = 100;
        w.placement.affinity.preferred[0].match_expressions.clear();
        only(&w, "placement.affinity.preferred[0].matchExpressions");
        w.placement.affinity.preferred[0].match_expressions =
            vec![expr(LabelOperator::DoesNotExist, &["x"])];
        only(
            &w,
            "placement.affinity.preferred[0].matchExpressions[0].values",
        );
        w.placement.affinity.preferred.clear();
        w.placement.affinity.required = vec![expr(LabelOperator::NotIn, &[])];
        only(&w, "placement.affinity.required[0].values");
        w.placement.affinity.required = vec![expr(LabelOperator::Gt, &["x"])];
        only(&w, "placement.affinity.required[0].values");
        w.placement.affinity.required = vec![expr(LabelOperator::Lt, &["4"])];
        assert!(w.validate(&ctx()).is_ok());
        w.placement.affinity.required[0].key = String::new();
        only(&w, "placement.affinity.required[0].key");
        w.placement.affinity.required.clear();
        w.placement.node_selector.insert(String::new(), "x".into());
        only(&w, "placement.nodeSelector");
    }

    #[test]
    fn tolerations_follow_kubernetes_rules() {
        let mut w = gpu_workload();
        w.placement.tolerations = vec![Toleration {
            key: "dedicated".into(),
            operator: TolerationOperator::Exists,
            value: Some("training".into()),
            effect: Some(TaintEffect::NoSchedule),
        }];
        only(&w, "placement.tolerations[0].value");
        w.placement.tolerations[0].value = None;
        assert!(w.validate(&ctx()).is_ok());
        w.placement.tolerations[0].key = String::new();
        assert!(
            w.validate(&ctx()).is_ok(),
            "Exists with no key tolerates all"
        );
        w.placement.tolerations[0].operator = TolerationOperator::Equal;
        only(&w, "placement.tolerations[0].key");
        w.placement.tolerations[0].key = "bad key".into();
        only(&w, "placement.tolerations[0].key");
    }

    #[test]
    fn nvlink_needs_a_multi_gpu_count() {
        let mut w = gpu_workload();
        w.placement.topology = Topology::Nvlink;
        assert!(w.validate(&ctx()).is_ok());
        gpu(&mut w).count = Some(1);
        only(&w, "placement.topology");
        w.placement.topology = Topology::SameNode;
        assert!(w.validate(&ctx()).is_ok());
    }

    #[test]
    fn spot_require_needs_spot_nodes() {
        let mut w = gpu_workload();
        w.spot = SpotPolicy::Require;
        assert!(w.validate(&ctx()).is_ok());
        let mut c = cluster();
        only_in(
            &w,
            &ValidationContext::new(Some(&c), RunMode::Standalone),
            "spot",
        );
        c.nodes[0].pool = Pool::Spot;
        assert!(
            w.validate(&ValidationContext::new(Some(&c), RunMode::Standalone))
                .is_ok()
        );
    }

    #[test]
    fn timeout_retries_ttl_and_strategy() {
        let mut w = gpu_workload();
        w.timeout = Some("0s".into());
        only(&w, "timeout");
        w.timeout = Some("30".into());
        only(&w, "timeout");
        w.timeout = Some("2h".into());
        w.retries = -1;
        only(&w, "retries");
        w.retries = 101;
        only(&w, "retries");
        w.retries = 3;
        w.ttl_after_finished = Some("-1d".into());
        only(&w, "ttlAfterFinished");
        w.ttl_after_finished = Some("0".into());
        w.strategy = Some("fastest".into());
        only(&w, "strategy");
        w.strategy = Some("fgd".into());
        assert!(w.validate(&ctx()).is_ok());
    }

    #[test]
    fn run_depends_on_the_mode() {
        let mut w = gpu_workload();
        let k8s = ValidationContext::new(None, RunMode::Kubernetes);
        let sim = ValidationContext::new(None, RunMode::Simulation);
        only_in(&w, &k8s, "run.image");
        w.run.as_mut().unwrap().command.clear();
        only(&w, "run.command");
        w.run = None;
        only(&w, "run");
        only_in(&w, &k8s, "run");
        assert!(w.validate(&sim).is_ok());
        w.run = Some(RunSpec {
            command: vec![" ".into()],
            image: Some("".into()),
            working_dir: Some("work".into()),
            env: [
                ("CUDA_VISIBLE_DEVICES".to_string(), "0".to_string()),
                ("1BAD".to_string(), "x".to_string()),
                ("GOOD_1".to_string(), "x".to_string()),
            ]
            .into(),
            ..RunSpec::default()
        });
        let mut got = paths_in(&w, &sim);
        got.sort();
        assert_eq!(
            got,
            [
                "run.command[0]",
                "run.env.1BAD",
                "run.env.CUDA_VISIBLE_DEVICES",
                "run.image",
                "run.workingDir"
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut w = gpu_workload();
        w.replicas = 2;
        w.gang_minimum = Some(3);
        w.priority_class = Some("nope".into());
        gpu(&mut w).count = None;
        gpu(&mut w).share = Some(1200);
        w.retries = -1;
        let mut got = paths_in(&w, &ctx());
        got.sort();
        assert_eq!(
            got,
            [
                "gangMinimum",
                "priorityClass",
                "replicas",
                "resources.gpu.share",
                "retries"
            ]
        );
    }

    #[test]
    fn lists_prefix_paths_and_catch_duplicate_names() {
        let a = gpu_workload();
        let mut b = gpu_workload();
        b.retries = -1;
        let errors = validate_workloads(&[a, b], &ctx()).unwrap_err();
        let got: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(got, ["[1].retries", "[1].name"]);
        assert!(errors[1].problem.contains("[0]"));
    }

    #[test]
    fn pod_translates_whole_and_shared_demands() {
        let mut models = GpuModels::default();
        let h100 = models.intern("H100-80GB").unwrap();
        let mut w = gpu_workload();
        w.resources.cpu = Some("4".into());
        w.resources.memory = Some("16Gi".into());
        gpu(&mut w).models = vec!["H100-80GB".into()];
        let pod = w.pod(&models).unwrap();
        assert_eq!(
            (pod.cpu_milli, pod.memory_mib, pod.gpu),
            (4000, 16384, GpuDemand::Whole(2))
        );
        assert!(pod.models.allows(h100) && !pod.models.is_any());
        gpu(&mut w).count = None;
        gpu(&mut w).share = Some(250);
        assert_eq!(w.pod(&models).unwrap().gpu, GpuDemand::Share(250));
        gpu(&mut w).share = None;
        gpu(&mut w).mig = Some("1g.10gb".into());
        assert!(w.pod(&models).is_err());
        assert_eq!(
            WorkloadSpec::named("cpu").pod(&models).unwrap().gpu,
            GpuDemand::None
        );
    }
}

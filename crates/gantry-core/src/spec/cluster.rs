//! The cluster description: nodes and their GPUs, priority classes, and queues with quotas.
//!
//! ```yaml
//! priorityClasses:            # absent: the shipped defaults (high-priority-training 1000, ...)
//!   - {name: high-priority-training, value: 1000}
//! queues:
//!   - name: research
//!     cohort: ml
//!     weight: 2
//!     guaranteed: {gpus: 8, cpu: "64", memory: 512Gi}
//!     borrowingLimit: {gpus: 8}
//! nodes:
//!   - name: h100-0
//!     labels: {zone: a}
//!     taints: [{key: dedicated, value: training, effect: NoSchedule}]
//!     pool: on-demand
//!     cpu: "192"
//!     memory: 2Ti
//!     gpus: {model: H100-80GB, count: 8, memory: 80Gi, mig: disabled, nvlinkGroups: [[0,1,2,3,4,5,6,7]]}
//! ```

use super::mig;
use super::units::{MemoryQuantity, MilliQuantity};
use super::{MAX_NODE_GPUS, Problems, SpecError, join};
use crate::model::{GpuModels, NodeSpec};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Serde default of a queue `weight`.
fn one_f64() -> f64 {
    1.0
}

/// Leaves `weight: 1` out when writing.
fn is_one_f64(x: &f64) -> bool {
    *x == 1.0
}

/// Leaves default values out when writing.
fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// A cluster: its nodes, priority classes and queues.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Named priorities; absent or empty = the shipped defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_classes: Vec<PriorityClass>,
    /// Queues with quotas; empty = no queue checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueSpec>,
    /// The nodes, in tie-break order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeDescription>,
}

/// A named priority with its value (higher runs first and may preempt lower).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PriorityClass {
    /// Name that workloads give as `priorityClass`.
    pub name: String,
    /// Value, at most 1,000,000,000 (as in Kubernetes).
    pub value: i64,
    /// The class of workloads that name none (at most one class).
    #[serde(default, skip_serializing_if = "is_default")]
    pub global_default: bool,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The smallest fair-share weight a queue may have.
pub const MIN_WEIGHT: f64 = 0.001;
/// The largest fair-share weight a queue may have.
pub const MAX_WEIGHT: f64 = 1000.0;

/// A queue: a team's guaranteed quota, what it may borrow, and its fair-share weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueSpec {
    /// Queue name, as workloads give it.
    pub name: String,
    /// Queues in the same cohort lend each other unused guaranteed quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// Fair-share weight, more than 0 (default 1).
    #[serde(default = "one_f64", skip_serializing_if = "is_one_f64")]
    pub weight: f64,
    /// Always available to this queue (absent fields = 0).
    #[serde(default, skip_serializing_if = "is_default")]
    pub guaranteed: Quota,
    /// Most it may borrow from its cohort beyond `guaranteed` (absent = unlimited; absent field = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<Quota>,
}

/// An amount of GPUs, CPU and memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Quota {
    /// GPUs, fractions allowed: `8`, `2.5`, `"500m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<MilliQuantity>,
    /// CPU cores: `"64"`, `"500m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<MilliQuantity>,
    /// Memory: `"512Gi"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryQuantity>,
}

/// A node: identity, labels and taints, capacity pool, CPU, memory and GPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeDescription {
    /// Node name, unique in the cluster.
    pub name: String,
    /// Labels, for selectors and affinity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Taints: only workloads that tolerate them may land here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Capacity pool (default `on-demand`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub pool: Pool,
    /// Allocatable CPU cores: `"96"`, `"95500m"`.
    pub cpu: MilliQuantity,
    /// Allocatable memory: `"1Ti"`.
    pub memory: MemoryQuantity,
    /// GPUs (absent = a CPU-only node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<NodeGpus>,
}

/// The GPUs of a node: all of one model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeGpus {
    /// Model name, e.g. `H100-80GB`, `A100-40GB`, `L4` (MIG tables are found by this name).
    pub model: String,
    /// Number of GPUs, 1..=8.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 8)))]
    pub count: i64,
    /// Memory of each GPU, e.g. `"80Gi"` (needed for GPU-memory constraints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryQuantity>,
    /// Whether the GPUs are in MIG mode (partitioned into instances by the scheduler).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mig: MigMode,
    /// Groups of GPU indices joined by NVLink, e.g. `[[0,1,2,3],[4,5,6,7]]`; empty = none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nvlink_groups: Vec<Vec<i64>>,
}

/// A node taint: repels workloads that do not tolerate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What happens to workloads that do not tolerate it.
    pub effect: TaintEffect,
}

/// A taint's effect (Kubernetes names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum TaintEffect {
    /// New workloads that do not tolerate it are not placed.
    NoSchedule,
    /// Placement avoids the node when it can.
    PreferNoSchedule,
    /// Not placed, and running ones are evicted.
    NoExecute,
}

/// Where a node's capacity comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    /// Ordinary capacity (the default).
    #[default]
    OnDemand,
    /// Reclaimable at any time; only for workloads whose spot policy allows it.
    Spot,
    /// Reserved (committed) capacity.
    Reserved,
}

/// Whether a node's GPUs are partitioned with MIG.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MigMode {
    /// Whole GPUs and shares (the default).
    #[default]
    Disabled,
    /// MIG instances only (A100 40GB/80GB, H100 80GB).
    Enabled,
}

impl PriorityClass {
    /// The shipped defaults: `high-priority-training` 1000, `medium-priority-inference` 500,
    /// `low-priority-batch` 100.
    pub fn defaults() -> Vec<PriorityClass> {
        [
            (
                "high-priority-training",
                1000,
                "training that must not wait",
            ),
            (
                "medium-priority-inference",
                500,
                "serving and interactive work",
            ),
            ("low-priority-batch", 100, "batch work that fills idle GPUs"),
        ]
        .into_iter()
        .map(|(name, value, what)| PriorityClass {
            name: name.to_string(),
            value,
            global_default: false,
            description: Some(what.to_string()),
        })
        .collect()
    }
}

impl QueueSpec {
    /// A queue called `name`: weight 1, no guarantee, no cohort.
    pub fn named(name: &str) -> Self {
        QueueSpec {
            name: name.to_string(),
            cohort: None,
            weight: 1.0,
            guaranteed: Quota::default(),
            borrowing_limit: None,
        }
    }
}

impl NodeGpus {
    /// Memory of each GPU in MiB, when declared and readable.
    pub fn memory_mib(&self) -> Option<u64> {
        self.memory.as_ref().and_then(|m| m.mib().ok())
    }
}

impl ClusterSpec {
    /// The priority classes in force: the declared ones, or the shipped defaults when none are.
    pub fn effective_priority_classes(&self) -> Cow<'_, [PriorityClass]> {
        if self.priority_classes.is_empty() {
            Cow::Owned(PriorityClass::defaults())
        } else {
            Cow::Borrowed(&self.priority_classes)
        }
    }

    /// The value of priority class `name`; `None` = the global default class (0 if there is none).
    pub fn priority_value(&self, name: Option<&str>) -> Option<i64> {
        let classes = self.effective_priority_classes();
        match name {
            Some(n) => classes.iter().find(|c| c.name == n).map(|c| c.value),
            None => Some(
                classes
                    .iter()
                    .find(|c| c.global_default)
                    .map_or(0, |c| c.value),
            ),
        }
    }

    /// Checks every field; returns all problems found, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut p = Problems::default();
        self.check_priority_classes(&mut p);
        self.check_queues(&mut p);
        self.check_nodes(&mut p);
        p.finish()
    }

    /// The engine's node specs, in file order (after validation); GPU model names are interned in `models`.
    ///
    /// MIG-enabled GPUs are given to the engine as whole GPUs until it places MIG instances.
    pub fn node_specs(&self, models: &mut GpuModels) -> Result<Vec<NodeSpec>, Vec<SpecError>> {
        self.validate()?;
        let mut p = Problems::default();
        let mut out = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let path = format!("nodes[{i}]");
            let cpu_milli = p.milli(&join(&path, "cpu"), &n.cpu).unwrap_or(0);
            let memory_mib = p.mib(&join(&path, "memory"), &n.memory).unwrap_or(0);
            let (gpu_count, gpu_model) = match &n.gpus {
                None => (0, None),
                Some(g) => match models.intern(&g.model) {
                    Ok(id) => (u8::try_from(g.count).unwrap_or(0), Some(id)),
                    Err(e) => {
                        p.add(join(&path, "gpus.model"), e);
                        (0, None)
                    }
                },
            };
            out.push(NodeSpec {
                name: n.name.clone(),
                cpu_milli,
                memory_mib,
                gpu_count,
                gpu_model,
            });
        }
        p.finish().map(|()| out)
    }

    /// Names unique and valid, values in range, at most one global default.
    fn check_priority_classes(&self, p: &mut Problems) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut default: Option<usize> = None;
        for (i, c) in self.priority_classes.iter().enumerate() {
            let path = format!("priorityClasses[{i}]");
            p.name(&join(&path, "name"), &c.name);
            if let Some(first) = seen.get(c.name.as_str()) {
                p.add(
                    join(&path, "name"),
                    format!(
                        "{:?} is already declared at priorityClasses[{first}]",
                        c.name
                    ),
                );
            } else {
                seen.insert(&c.name, i);
            }
            if !(i64::from(i32::MIN)..=1_000_000_000).contains(&c.value) {
                p.add(
                    join(&path, "value"),
                    format!(
                        "must be between {} and 1000000000, got {}",
                        i32::MIN,
                        c.value
                    ),
                );
            }
            if c.global_default {
                match default {
                    Some(first) => p.add(
                        join(&path, "globalDefault"),
                        format!("priorityClasses[{first}] is already the global default"),
                    ),
                    None => default = Some(i),
                }
            }
        }
    }

    /// Names unique, weights positive, quotas readable, guarantees backed by GPUs.
    fn check_queues(&self, p: &mut Problems) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut guaranteed_gpus: u64 = 0;
        for (i, q) in self.queues.iter().enumerate() {
            let path = format!("queues[{i}]");
            p.name(&join(&path, "name"), &q.name);
            if let Some(first) = seen.get(q.name.as_str()) {
                p.add(
                    join(&path, "name"),
                    format!("{:?} is already declared at queues[{first}]", q.name),
                );
            } else {
                seen.insert(&q.name, i);
            }
            if let Some(c) = &q.cohort {
                p.name(&join(&path, "cohort"), c);
            }
            if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&q.weight) {
                p.add(
                    join(&path, "weight"),
                    format!(
                        "must be between {MIN_WEIGHT} and {MAX_WEIGHT}, got {}",
                        q.weight
                    ),
                );
            }
            if let Some(g) = q.guaranteed.check(p, &join(&path, "guaranteed")) {
                guaranteed_gpus = guaranteed_gpus.saturating_add(g);
            }
            if let Some(limit) = &q.borrowing_limit {
                let lpath = join(&path, "borrowingLimit");
                limit.check(p, &lpath);
                if q.cohort.is_none() {
                    p.add(
                        lpath,
                        "the queue has no cohort to borrow from; set cohort or leave borrowingLimit out",
                    );
                }
            }
        }
        // Guarantees must be backed by GPUs that exist (when the nodes are described here).
        let total: u64 = self
            .nodes
            .iter()
            .filter_map(|n| n.gpus.as_ref())
            .filter_map(|g| u64::try_from(g.count).ok())
            .sum::<u64>()
            * 1000;
        if !self.nodes.is_empty() && guaranteed_gpus > total {
            p.add(
                "queues",
                format!(
                    "guaranteed GPUs add up to {} but the nodes have {}",
                    MilliQuantity::from_milli(guaranteed_gpus),
                    total / 1000
                ),
            );
        }
    }

    /// Names unique, labels and taints, capacity, GPUs.
    fn check_nodes(&self, p: &mut Problems) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let path = format!("nodes[{i}]");
            p.name(&join(&path, "name"), &n.name);
            if let Some(first) = seen.get(n.name.as_str()) {
                p.add(
                    join(&path, "name"),
                    format!("{:?} is already declared at nodes[{first}]", n.name),
                );
            } else {
                seen.insert(&n.name, i);
            }
            for key in n.labels.keys() {
                p.label_key(&join(&path, "labels"), key);
            }
            for (j, t) in n.taints.iter().enumerate() {
                p.label_key(&format!("{path}.taints[{j}].key"), &t.key);
            }
            if p.milli(&join(&path, "cpu"), &n.cpu) == Some(0) {
                p.add(join(&path, "cpu"), "must be more than 0");
            }
            if p.mib(&join(&path, "memory"), &n.memory) == Some(0) {
                p.add(join(&path, "memory"), "must be more than 0");
            }
            if let Some(g) = &n.gpus {
                g.check(p, &join(&path, "gpus"));
            }
        }
    }
}

impl Quota {
    /// Checks the amounts; returns the GPUs in milli (0 when absent) when readable.
    fn check(&self, p: &mut Problems, path: &str) -> Option<u64> {
        if let Some(c) = &self.cpu {
            p.milli(&join(path, "cpu"), c);
        }
        if let Some(m) = &self.memory {
            p.mib(&join(path, "memory"), m);
        }
        match &self.gpus {
            Some(g) => p.milli(&join(path, "gpus"), g),
            None => Some(0),
        }
    }
}

impl NodeGpus {
    /// Model, count, memory, MIG support and NVLink groups.
    fn check(&self, p: &mut Problems, path: &str) {
        if self.model.trim().is_empty() {
            p.add(
                join(path, "model"),
                "must name the GPU model, e.g. H100-80GB",
            );
        }
        if !(1..=MAX_NODE_GPUS).contains(&self.count) {
            p.add(
                join(path, "count"),
                format!(
                    "must be between 1 and {MAX_NODE_GPUS}, got {} (leave gpus out for a CPU-only node)",
                    self.count
                ),
            );
        }
        let memory = self
            .memory
            .as_ref()
            .and_then(|m| p.mib(&join(path, "memory"), m));
        if memory == Some(0) {
            p.add(join(path, "memory"), "must be more than 0");
        }
        if self.mig == MigMode::Enabled && mig::table_for_model(&self.model).is_none() {
            p.add(
                join(path, "mig"),
                format!(
                    "{:?} has no known MIG profiles (MIG models: A100-40GB, A100-80GB, H100-80GB)",
                    self.model
                ),
            );
        }
        let mut owner: BTreeMap<i64, usize> = BTreeMap::new();
        for (j, group) in self.nvlink_groups.iter().enumerate() {
            let gpath = format!("{path}.nvlinkGroups[{j}]");
            if group.len() < 2 {
                p.add(gpath.clone(), "an NVLink group joins at least 2 GPUs");
            }
            for (k, &gpu) in group.iter().enumerate() {
                let ipath = format!("{gpath}[{k}]");
                if gpu < 0 || gpu >= self.count {
                    p.add(
                        ipath,
                        format!("GPU index {gpu} is outside 0..{} of this node", self.count),
                    );
                } else if let Some(first) = owner.get(&gpu) {
                    p.add(
                        ipath,
                        format!("GPU {gpu} is already in nvlinkGroups[{first}]"),
                    );
                } else {
                    owner.insert(gpu, j);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeDescription {
        NodeDescription {
            name: name.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            pool: Pool::OnDemand,
            cpu: "64".into(),
            memory: "512Gi".into(),
            gpus: Some(NodeGpus {
                model: "H100-80GB".into(),
                count: 8,
                memory: Some("80Gi".into()),
                mig: MigMode::Disabled,
                nvlink_groups: vec![(0..4).collect(), (4..8).collect()],
            }),
        }
    }

    fn valid() -> ClusterSpec {
        let mut research = QueueSpec::named("research");
        research.cohort = Some("ml".into());
        research.guaranteed.gpus = Some("8".into());
        research.borrowing_limit = Some(Quota {
            gpus: Some("4".into()),
            ..Quota::default()
        });
        ClusterSpec {
            priority_classes: Vec::new(),
            queues: vec![research, QueueSpec::named("default")],
            nodes: vec![node("n0"), node("n1")],
        }
    }

    fn paths(c: &ClusterSpec) -> Vec<String> {
        match c.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.path).collect(),
        }
    }

    fn only(c: &ClusterSpec, path: &str) {
        assert_eq!(paths(c), [path]);
    }

    #[test]
    fn a_valid_cluster_passes_and_converts() {
        let c = valid();
        assert_eq!(paths(&c), Vec::<String>::new());
        let mut models = GpuModels::default();
        let specs = c.node_specs(&mut models).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "n0");
        assert_eq!(specs[0].cpu_milli, 64_000);
        assert_eq!(specs[0].memory_mib, 512 * 1024);
        assert_eq!(specs[0].gpu_count, 8);
        assert_eq!(specs[0].gpu_model, models.get("H100-80GB"));
        let mut cpu_only = node("c0");
        cpu_only.gpus = None;
        let c = ClusterSpec {
            nodes: vec![cpu_only],
            ..ClusterSpec::default()
        };
        let specs = c.node_specs(&mut models).unwrap();
        assert_eq!((specs[0].gpu_count, specs[0].gpu_model), (0, None));
    }

    #[test]
    fn node_specs_refuses_an_invalid_cluster() {
        let mut c = valid();
        c.nodes[1].name = "n0".into();
        let errors = c.node_specs(&mut GpuModels::default()).unwrap_err();
        assert_eq!(errors[0].path, "nodes[1].name");
    }

    #[test]
    fn priority_classes_default_and_resolve() {
        let c = valid();
        assert_eq!(c.effective_priority_classes().len(), 3);
        assert_eq!(c.priority_value(Some("high-priority-training")), Some(1000));
        assert_eq!(
            c.priority_value(Some("medium-priority-inference")),
            Some(500)
        );
        assert_eq!(c.priority_value(Some("low-priority-batch")), Some(100));
        assert_eq!(c.priority_value(Some("nope")), None);
        assert_eq!(c.priority_value(None), Some(0));
        let mut c = valid();
        c.priority_classes = vec![PriorityClass {
            name: "normal".into(),
            value: 10,
            global_default: true,
            description: None,
        }];
        assert_eq!(c.priority_value(None), Some(10));
        assert_eq!(c.priority_value(Some("low-priority-batch")), None);
    }

    #[test]
    fn priority_class_rules() {
        let class = |name: &str, value, global_default| PriorityClass {
            name: name.into(),
            value,
            global_default,
            description: None,
        };
        let mut c = valid();
        c.priority_classes = vec![class("a", 1, true), class("a", 2, false)];
        only(&c, "priorityClasses[1].name");
        c.priority_classes = vec![class("a", 1, true), class("b", 2, true)];
        only(&c, "priorityClasses[1].globalDefault");
        c.priority_classes = vec![class("a", 2_000_000_000, false)];
        only(&c, "priorityClasses[0].value");
        c.priority_classes = vec![class("Bad Name", 1, false)];
        only(&c, "priorityClasses[0].name");
    }

    #[test]
    fn queue_rules() {
        let mut c = valid();
        c.queues[1].name = "research".into();
        only(&c, "queues[1].name");
        let mut c = valid();
        c.queues[0].weight = 0.0;
        only(&c, "queues[0].weight");
        c.queues[0].weight = f64::NAN;
        only(&c, "queues[0].weight");
        c.queues[0].weight = 5e-324;
        only(&c, "queues[0].weight");
        c.queues[0].weight = 1e6;
        only(&c, "queues[0].weight");
        let mut c = valid();
        c.queues[0].guaranteed.cpu = Some("-4".into());
        only(&c, "queues[0].guaranteed.cpu");
        c.queues[0].guaranteed.cpu = None;
        c.queues[0].guaranteed.memory = Some("12".into());
        only(&c, "queues[0].guaranteed.memory");
        c.queues[0].guaranteed.memory = None;
        c.queues[0].guaranteed.gpus = Some("-1".into());
        only(&c, "queues[0].guaranteed.gpus");
        let mut c = valid();
        c.queues[0].borrowing_limit = Some(Quota {
            gpus: Some("x".into()),
            ..Quota::default()
        });
        only(&c, "queues[0].borrowingLimit.gpus");
        let mut c = valid();
        c.queues[0].cohort = None;
        only(&c, "queues[0].borrowingLimit");
        // A cohort nobody else names is fine.
        let mut c = valid();
        c.queues[1].cohort = Some("elsewhere".into());
        assert_eq!(paths(&c), Vec::<String>::new());
        // Guarantees above the cluster's GPUs.
        let mut c = valid();
        c.queues[1].guaranteed.gpus = Some("8.5".into());
        only(&c, "queues");
    }

    #[test]
    fn node_rules() {
        let mut c = valid();
        c.nodes[1].name = "n0".into();
        only(&c, "nodes[1].name");
        let mut c = valid();
        c.nodes[0].cpu = "0".into();
        only(&c, "nodes[0].cpu");
        c.nodes[0].cpu = "-8".into();
        only(&c, "nodes[0].cpu");
        let mut c = valid();
        c.nodes[0].memory = "0Gi".into();
        only(&c, "nodes[0].memory");
        let mut c = valid();
        c.nodes[0].labels.insert("".into(), "x".into());
        only(&c, "nodes[0].labels");
        let mut c = valid();
        c.nodes[0].taints.push(Taint {
            key: "".into(),
            value: None,
            effect: TaintEffect::NoSchedule,
        });
        only(&c, "nodes[0].taints[0].key");
    }

    #[test]
    fn gpu_rules() {
        fn gpus(c: &mut ClusterSpec) -> &mut NodeGpus {
            c.nodes[0].gpus.as_mut().unwrap()
        }
        let mut c = valid();
        for bad in [0, -1, 9] {
            gpus(&mut c).count = bad;
            gpus(&mut c).nvlink_groups.clear();
            only(&c, "nodes[0].gpus.count");
        }
        let mut c = valid();
        gpus(&mut c).model = " ".into();
        only(&c, "nodes[0].gpus.model");
        let mut c = valid();
        gpus(&mut c).memory = Some("-80Gi".into());
        only(&c, "nodes[0].gpus.memory");
        let mut c = valid();
        gpus(&mut c).mig = MigMode::Enabled;
        assert_eq!(paths(&c), Vec::<String>::new());
        gpus(&mut c).model = "L4".into();
        only(&c, "nodes[0].gpus.mig");
        let mut c = valid();
        gpus(&mut c).nvlink_groups = vec![vec![0, 1], vec![1, 2]];
        only(&c, "nodes[0].gpus.nvlinkGroups[1][0]");
        gpus(&mut c).nvlink_groups = vec![vec![0, 8]];
        only(&c, "nodes[0].gpus.nvlinkGroups[0][1]");
        gpus(&mut c).nvlink_groups = vec![vec![-1, 0]];
        only(&c, "nodes[0].gpus.nvlinkGroups[0][0]");
        gpus(&mut c).nvlink_groups = vec![vec![3]];
        only(&c, "nodes[0].gpus.nvlinkGroups[0]");
    }
}

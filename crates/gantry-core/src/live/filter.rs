//! The filter stage: can a node take one replica of a workload right now, and if not, which filter says
//! no and why. [`static_check`] looks only at what never changes (health aside); [`fit_check`] at free
//! capacity. [`Explanation`] aggregates rejections over the nodes: "3 nodes: taint ...".

use super::cluster::LiveNode;
use super::workload::{Demand, Workload};
use crate::model::GPU_MILLI;
use crate::spec::mig;
use crate::spec::{
    LabelExpression, LabelOperator, Pool, SpotPolicy, Taint, TaintEffect, Toleration,
    TolerationOperator, Topology,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Why a node cannot take a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "filter", rename_all = "snake_case")]
pub enum Rejection {
    /// The node is unhealthy.
    Unhealthy,
    /// The node is cordoned.
    Cordoned,
    /// A NoSchedule/NoExecute taint the workload does not tolerate.
    Taint {
        /// Taint key.
        key: String,
        /// Taint value.
        value: Option<String>,
        /// Taint effect.
        effect: TaintEffect,
    },
    /// The node's pool is not allowed by the spot policy.
    Pool {
        /// The node's pool.
        pool: Pool,
    },
    /// A node-selector label is missing or different.
    NodeSelector {
        /// Label key.
        key: String,
        /// Wanted value.
        want: String,
    },
    /// A required affinity expression does not match.
    Affinity {
        /// Label key.
        key: String,
        /// Operator.
        operator: LabelOperator,
    },
    /// The node has no GPU.
    NoGpu,
    /// The node's GPU model is not allowed.
    GpuModel,
    /// MIG demand on a non-MIG node, or a whole/share demand on a MIG node.
    MigMode {
        /// True when the node is in MIG mode.
        node_mig: bool,
    },
    /// The node's MIG table has no such profile.
    MigProfile {
        /// The profile.
        profile: String,
    },
    /// The node's GPUs have less memory than required.
    GpuMemory {
        /// MiB required.
        need: u64,
        /// MiB each GPU has.
        has: u64,
    },
    /// The node has fewer GPUs (or a smaller NVLink group) than needed, even when idle.
    GpuCount {
        /// GPUs needed.
        need: u32,
        /// GPUs it has (in one NVLink group when the topology asks for NVLink).
        has: u32,
    },
    /// Not enough CPU (free, or allocatable when `free` equals the capacity).
    Cpu {
        /// Milli needed.
        need: u64,
        /// Milli free.
        free: u64,
    },
    /// Not enough memory.
    Memory {
        /// MiB needed.
        need: u64,
        /// MiB free.
        free: u64,
    },
    /// An exclusive workload holds the node, or this one needs it idle.
    Exclusive,
    /// Not enough GPUs with enough free milli and memory (in one NVLink group when required).
    GpuFree {
        /// GPUs needed.
        need: u32,
        /// Milli needed on each.
        milli_per_gpu: u32,
        /// GPUs that have it.
        fitting: u32,
    },
    /// No free MIG slice range for the profile.
    MigSlice {
        /// The profile.
        profile: String,
    },
    /// The node is reserved for a head-of-line workload this one would delay.
    Reserved,
}

impl Rejection {
    /// Stable name of the filter, for grouping.
    pub fn filter_name(&self) -> &'static str {
        match self {
            Rejection::Unhealthy => "health",
            Rejection::Cordoned => "cordon",
            Rejection::Taint { .. } => "taint",
            Rejection::Pool { .. } => "pool",
            Rejection::NodeSelector { .. } => "node_selector",
            Rejection::Affinity { .. } => "affinity",
            Rejection::NoGpu => "no_gpu",
            Rejection::GpuModel => "gpu_model",
            Rejection::MigMode { .. } => "mig_mode",
            Rejection::MigProfile { .. } => "mig_profile",
            Rejection::GpuMemory { .. } => "gpu_memory",
            Rejection::GpuCount { .. } => "gpu_count",
            Rejection::Cpu { .. } => "cpu",
            Rejection::Memory { .. } => "memory",
            Rejection::Exclusive => "exclusive",
            Rejection::GpuFree { .. } => "gpu_free",
            Rejection::MigSlice { .. } => "mig_slice",
            Rejection::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Unhealthy => write!(f, "node unhealthy"),
            Rejection::Cordoned => write!(f, "node cordoned"),
            Rejection::Taint { key, value, effect } => {
                let v = value.as_deref().map_or(String::new(), |v| format!("={v}"));
                write!(f, "taint {key}{v}:{effect:?} not tolerated")
            }
            Rejection::Pool { pool } => write!(f, "pool {pool:?} not allowed by the spot policy"),
            Rejection::NodeSelector { key, want } => {
                write!(f, "node selector {key}={want} does not match")
            }
            Rejection::Affinity { key, operator } => {
                write!(
                    f,
                    "required affinity on {key:?} ({operator:?}) does not match"
                )
            }
            Rejection::NoGpu => write!(f, "no GPU"),
            Rejection::GpuModel => write!(f, "GPU model not allowed"),
            Rejection::MigMode { node_mig: true } => write!(f, "GPUs are in MIG mode"),
            Rejection::MigMode { node_mig: false } => write!(f, "GPUs are not in MIG mode"),
            Rejection::MigProfile { profile } => write!(f, "MIG profile {profile} not offered"),
            Rejection::GpuMemory { need, has } => {
                write!(f, "GPU memory {has} MiB, needs {need} MiB")
            }
            Rejection::GpuCount { need, has } => write!(f, "needs {need} GPUs, has {has}"),
            Rejection::Cpu { need, free } => write!(f, "cpu: needs {need}m, {free}m free"),
            Rejection::Memory { need, free } => {
                write!(f, "memory: needs {need} MiB, {free} MiB free")
            }
            Rejection::Exclusive => write!(f, "exclusive use conflict"),
            Rejection::GpuFree {
                need,
                milli_per_gpu,
                fitting,
            } => write!(
                f,
                "needs {need} GPU(s) with {milli_per_gpu}m free, {fitting} have it"
            ),
            Rejection::MigSlice { profile } => write!(f, "no free slices for {profile}"),
            Rejection::Reserved => write!(f, "reserved for the head-of-line workload"),
        }
    }
}

/// Rejections aggregated over the nodes: how many nodes each filter rejected, with an example.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Nodes considered.
    pub nodes: u32,
    /// (filter name, nodes it rejected, one example), in first-seen order.
    pub rejections: Vec<(&'static str, u32, Rejection)>,
}

impl Explanation {
    /// Counts `count` nodes rejected by `r`, cloning it only when it is the filter's first example.
    pub fn add_ref(&mut self, r: &Rejection, count: u32) {
        self.nodes += count;
        match self.rejections.iter_mut().find(|e| e.0 == r.filter_name()) {
            Some(e) => e.1 += count,
            None => self.rejections.push((r.filter_name(), count, r.clone())),
        }
    }

    /// Counts `count` nodes rejected by `r`.
    pub fn add(&mut self, r: Rejection, count: u32) {
        self.nodes += count;
        match self.rejections.iter_mut().find(|e| e.0 == r.filter_name()) {
            Some(e) => e.1 += count,
            None => self.rejections.push((r.filter_name(), count, r)),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes can take it", self.nodes)?;
        for (i, (_, count, example)) in self.rejections.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{count} node(s): {example}")?;
        }
        Ok(())
    }
}

/// True when toleration `t` tolerates taint `taint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let key = match t.operator {
        TolerationOperator::Exists => t.key.is_empty() || t.key == taint.key,
        TolerationOperator::Equal => t.key == taint.key && t.value == taint.value,
    };
    key && t.effect.is_none_or(|e| e == taint.effect)
}

/// True when `labels` satisfy the expression.
pub fn label_matches(labels: &BTreeMap<String, String>, e: &LabelExpression) -> bool {
    let v = labels.get(&e.key);
    let num = |s: &str| s.trim().parse::<i64>().ok();
    match e.operator {
        LabelOperator::In => v.is_some_and(|v| e.values.contains(v)),
        LabelOperator::NotIn => v.is_none_or(|v| !e.values.contains(v)),
        LabelOperator::Exists => v.is_some(),
        LabelOperator::DoesNotExist => v.is_none(),
        LabelOperator::Gt | LabelOperator::Lt => {
            match (
                v.and_then(|v| num(v)),
                e.values.first().and_then(|x| num(x)),
            ) {
                (Some(a), Some(b)) if e.operator == LabelOperator::Gt => a > b,
                (Some(a), Some(b)) => a < b,
                _ => false,
            }
        }
    }
}

/// GPUs a replica needs on one node.
fn gpu_count(w: &Workload) -> u32 {
    match &w.demand {
        Demand::None => 0,
        Demand::Whole { count } => u32::from(*count),
        Demand::Share { .. } | Demand::Mig { .. } => 1,
    }
}

/// Size of the largest NVLink group of the node.
fn largest_nvlink_group(node: &LiveNode) -> u32 {
    let mut sizes: BTreeMap<u8, u32> = BTreeMap::new();
    for g in &node.gpus {
        *sizes.entry(g.nvlink_group).or_default() += 1;
    }
    sizes.values().copied().max().unwrap_or(0)
}

/// The checks that do not depend on free capacity: health, cordon, taints, pool, selector, affinity,
/// GPU model, MIG mode and profile, GPU memory, GPU count and NVLink group size, node size.
pub fn static_check(node: &LiveNode, w: &Workload) -> Result<(), Rejection> {
    if !node.healthy {
        return Err(Rejection::Unhealthy);
    }
    if node.cordoned {
        return Err(Rejection::Cordoned);
    }
    for taint in &node.taints {
        if taint.effect != TaintEffect::PreferNoSchedule
            && !w.tolerations.iter().any(|t| tolerates(t, taint))
        {
            return Err(Rejection::Taint {
                key: taint.key.clone(),
                value: taint.value.clone(),
                effect: taint.effect,
            });
        }
    }
    let pool_ok = match w.spot {
        SpotPolicy::Never => node.pool != Pool::Spot,
        SpotPolicy::Allow | SpotPolicy::Prefer => true,
        SpotPolicy::Require => node.pool == Pool::Spot,
    };
    if !pool_ok {
        return Err(Rejection::Pool { pool: node.pool });
    }
    for (key, want) in &w.node_selector {
        if node.labels.get(key) != Some(want) {
            return Err(Rejection::NodeSelector {
                key: key.clone(),
                want: want.clone(),
            });
        }
    }
    for e in &w.required {
        if !label_matches(&node.labels, e) {
            return Err(Rejection::Affinity {
                key: e.key.clone(),
                operator: e.operator,
            });
        }
    }
    if w.cpu_milli > node.cpu_milli {
        return Err(Rejection::Cpu {
            need: w.cpu_milli,
            free: node.cpu_milli,
        });
    }
    if w.memory_mib > node.memory_mib {
        return Err(Rejection::Memory {
            need: w.memory_mib,
            free: node.memory_mib,
        });
    }
    if w.demand == Demand::None {
        return Ok(());
    }
    let Some(model) = node.model.filter(|_| !node.gpus.is_empty()) else {
        return Err(Rejection::NoGpu);
    };
    if !w.models.allows(model) {
        return Err(Rejection::GpuModel);
    }
    match (&w.demand, node.mig_table) {
        (Demand::Mig { profile }, Some(table)) => {
            if table.profile(profile).is_none() {
                return Err(Rejection::MigProfile {
                    profile: profile.clone(),
                });
            }
        }
        (Demand::Mig { .. }, None) => return Err(Rejection::MigMode { node_mig: false }),
        (_, Some(_)) => return Err(Rejection::MigMode { node_mig: true }),
        (_, None) => {}
    }
    let gpu_memory = node.gpus.first().map_or(0, |g| g.memory_mib);
    let need_memory = match w.demand {
        Demand::Share { memory_mib, .. } => w.min_gpu_memory_mib.max(memory_mib),
        _ => w.min_gpu_memory_mib,
    };
    if need_memory > gpu_memory {
        return Err(Rejection::GpuMemory {
            need: need_memory,
            has: gpu_memory,
        });
    }
    let need = gpu_count(w);
    let has = if w.topology == Topology::Nvlink && need > 1 {
        largest_nvlink_group(node)
    } else {
        node.gpus.len() as u32
    };
    if need > has {
        return Err(Rejection::GpuCount { need, has });
    }
    Ok(())
}

/// Idle GPUs usable together: in one NVLink group when the topology asks for it, else anywhere.
pub fn usable_idle_gpus(node: &LiveNode, w: &Workload) -> u32 {
    if w.topology == Topology::Nvlink {
        let mut idle: BTreeMap<u8, u32> = BTreeMap::new();
        for g in node.gpus.iter().filter(|g| g.idle()) {
            *idle.entry(g.nvlink_group).or_default() += 1;
        }
        idle.values().copied().max().unwrap_or(0)
    } else {
        node.gpus.iter().filter(|g| g.idle()).count() as u32
    }
}

/// The checks on free capacity: CPU, memory, exclusive use, GPUs, shares and GPU memory, MIG slices.
pub fn fit_check(node: &LiveNode, w: &Workload) -> Result<(), Rejection> {
    if w.cpu_milli > node.cpu_free {
        return Err(Rejection::Cpu {
            need: w.cpu_milli,
            free: node.cpu_free,
        });
    }
    if w.memory_mib > node.memory_free {
        return Err(Rejection::Memory {
            need: w.memory_mib,
            free: node.memory_free,
        });
    }
    if w.demand == Demand::None {
        return Ok(());
    }
    if node.exclusive_held || (w.exclusive && node.gpus.iter().any(|g| !g.idle())) {
        return Err(Rejection::Exclusive);
    }
    match &w.demand {
        Demand::None => Ok(()),
        Demand::Whole { count } => {
            let fitting = usable_idle_gpus(node, w);
            if fitting < u32::from(*count) {
                return Err(Rejection::GpuFree {
                    need: u32::from(*count),
                    milli_per_gpu: GPU_MILLI,
                    fitting,
                });
            }
            Ok(())
        }
        Demand::Share { milli, memory_mib } => {
            let fitting = node
                .gpus
                .iter()
                .filter(|g| g.free_milli >= *milli && g.memory_free_mib >= *memory_mib)
                .count() as u32;
            if fitting == 0 {
                return Err(Rejection::GpuFree {
                    need: 1,
                    milli_per_gpu: u32::from(*milli),
                    fitting,
                });
            }
            Ok(())
        }
        Demand::Mig { profile } => {
            let p = node.mig_table.and_then(|t| t.profile(profile));
            let free = p.is_some_and(|p| {
                node.gpus
                    .iter()
                    .any(|g| !mig::legal_starts_with(p, &g.mig).is_empty())
            });
            if free {
                Ok(())
            } else {
                Err(Rejection::MigSlice {
                    profile: profile.clone(),
                })
            }
        }
    }
}

/// Both stages: static first, then fit.
pub fn filter(node: &LiveNode, w: &Workload) -> Result<(), Rejection> {
    static_check(node, w)?;
    fit_check(node, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect,
        }
    }

    fn tol(key: &str, op: TolerationOperator, value: Option<&str>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op,
            value: value.map(str::to_string),
            effect: None,
        }
    }

    #[test]
    fn tolerations_follow_kubernetes_rules() {
        let t = taint("dedicated", Some("training"), TaintEffect::NoSchedule);
        use TolerationOperator::{Equal, Exists};
        assert!(tolerates(&tol("dedicated", Equal, Some("training")), &t));
        assert!(!tolerates(&tol("dedicated", Equal, Some("serving")), &t));
        assert!(tolerates(&tol("dedicated", Exists, None), &t));
        assert!(tolerates(&tol("", Exists, None), &t));
        let mut only_execute = tol("dedicated", Exists, None);
        only_execute.effect = Some(TaintEffect::NoExecute);
        assert!(!tolerates(&only_execute, &t));
    }

    #[test]
    fn label_expressions() {
        let labels: BTreeMap<String, String> =
            [("zone".into(), "a".into()), ("gen".into(), "9".into())].into();
        let e = |key: &str, operator, values: &[&str]| LabelExpression {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        use LabelOperator::*;
        assert!(label_matches(&labels, &e("zone", In, &["a", "b"])));
        assert!(!label_matches(&labels, &e("zone", NotIn, &["a"])));
        assert!(label_matches(&labels, &e("rack", NotIn, &["x"])));
        assert!(label_matches(&labels, &e("zone", Exists, &[])));
        assert!(label_matches(&labels, &e("rack", DoesNotExist, &[])));
        assert!(label_matches(&labels, &e("gen", Gt, &["8"])));
        assert!(!label_matches(&labels, &e("gen", Lt, &["8"])));
        assert!(!label_matches(&labels, &e("zone", Gt, &["1"])));
    }

    #[test]
    fn explanations_count_nodes_per_filter() {
        let mut x = Explanation::default();
        x.add(Rejection::Cordoned, 2);
        x.add_ref(&Rejection::Cpu { need: 4, free: 1 }, 3);
        x.add(Rejection::Cordoned, 1);
        assert_eq!(
            x.to_string(),
            "0/6 nodes can take it: 3 node(s): node cordoned; 3 node(s): cpu: needs 4m, 1m free"
        );
    }
}

//! The live cluster: nodes with labels, taints, pool, health and GPUs (free milli, free GPU memory, MIG
//! instances, NVLink group). [`LiveCluster::allocate`] and [`LiveCluster::release`] are the only
//! mutations; each re-checks fit and moves the node to the equivalence class of its new state.

use super::error::LiveError;
use super::groups::{Groups, StateKey};
use crate::model::{GPU_MILLI, GpuModels, MAX_GPUS_PER_NODE, ModelId, Node, NodeSpec};
use crate::spec::mig::{self, MigInstance, MigProfile, MigTable};
use crate::spec::{ClusterSpec, MigMode, Pool, Taint};
use std::collections::BTreeMap;

/// GPU memory assumed when a node does not declare it: large enough for any request.
pub const UNKNOWN_GPU_MEMORY_MIB: u64 = 1 << 40;

/// One GPU of a live node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveGpu {
    /// NVLink group id (GPUs in the same group are linked).
    pub nvlink_group: u8,
    /// Total GPU memory, MiB ([`UNKNOWN_GPU_MEMORY_MIB`] when not declared).
    pub memory_mib: u64,
    /// Free milli (1000 = idle).
    pub free_milli: u16,
    /// Free GPU memory, MiB.
    pub memory_free_mib: u64,
    /// MIG instances placed on it, sorted by start slice.
    pub mig: Vec<MigInstance>,
}

impl LiveGpu {
    /// True when nothing runs on it.
    pub fn idle(&self) -> bool {
        u32::from(self.free_milli) == GPU_MILLI && self.mig.is_empty()
    }
}

/// A node of the live cluster.
#[derive(Clone, Debug)]
pub struct LiveNode {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// Capacity pool.
    pub pool: Pool,
    /// False when the node (or its GPUs) failed: nothing new is placed.
    pub healthy: bool,
    /// True when cordoned by an operator: nothing new is placed.
    pub cordoned: bool,
    /// Allocatable CPU, milli.
    pub cpu_milli: u64,
    /// Free CPU, milli.
    pub cpu_free: u64,
    /// Allocatable memory, MiB.
    pub memory_mib: u64,
    /// Free memory, MiB.
    pub memory_free: u64,
    /// GPU model, when it has GPUs.
    pub model: Option<ModelId>,
    /// MIG table, when its GPUs are in MIG mode.
    pub mig_table: Option<&'static MigTable>,
    /// The GPUs.
    pub gpus: Vec<LiveGpu>,
    /// True while an exclusive workload runs here.
    pub exclusive_held: bool,
    /// Placed replicas by GPU request kind (0 = shares and MIG, k = k whole GPUs).
    pub pods_by_kind: [u16; MAX_GPUS_PER_NODE + 1],
    /// Placed replicas.
    pub pod_count: u32,
    /// Static class id (equal for nodes with equal static description).
    pub class: u32,
    /// Current equivalence class (see [`super::groups`]).
    pub group: u32,
}

impl LiveNode {
    /// The engine's view of this node, for strategy scores (MIG GPUs: free milli by free slices).
    pub fn engine_view(&self) -> Node {
        let count = self.gpus.len().min(MAX_GPUS_PER_NODE);
        let mut node = Node::new(NodeSpec {
            name: String::new(),
            cpu_milli: self.cpu_milli,
            memory_mib: self.memory_mib,
            gpu_count: count as u8,
            gpu_model: self.model,
        });
        node.cpu_free = self.cpu_free;
        node.memory_free = self.memory_free;
        for (i, g) in self.gpus.iter().take(count).enumerate() {
            let used: u32 = g
                .mig
                .iter()
                .map(|m| u32::from(m.profile.memory_slices))
                .sum();
            let mig_free = GPU_MILLI.saturating_sub(used * GPU_MILLI / 8);
            node.gpu_free[i] = if self.exclusive_held {
                0
            } else {
                (u32::from(g.free_milli).min(mig_free)) as u16
            };
        }
        node.gpu_pods_by_kind = self.pods_by_kind;
        node.pod_count = self.pod_count;
        node
    }

    /// GPU milli allocated on this node (MIG instances by memory slices).
    pub fn gpu_allocated_milli(&self) -> u64 {
        self.gpus
            .iter()
            .map(|g| {
                let mig: u64 = g
                    .mig
                    .iter()
                    .map(|m| u64::from(m.profile.memory_slices) * 125)
                    .sum();
                u64::from(GPU_MILLI - u32::from(g.free_milli)) + mig
            })
            .sum()
    }

    fn state_key(&self) -> StateKey {
        let flags = u8::from(self.healthy)
            | (u8::from(self.cordoned) << 1)
            | (u8::from(self.exclusive_held) << 2);
        StateKey {
            class: self.class,
            flags,
            cpu_free: self.cpu_free,
            memory_free: self.memory_free,
            pods_by_kind: self.pods_by_kind,
            pod_count: self.pod_count,
            gpus: self
                .gpus
                .iter()
                .map(|g| {
                    (
                        g.free_milli,
                        g.memory_free_mib,
                        g.mig.iter().map(|m| (m.profile.id, m.start)).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// What one replica takes on a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// Milli and GPU memory of GPU `index` (a whole GPU: 1000 and all of its memory).
    Gpu {
        /// GPU index on the node.
        index: u8,
        /// Milli taken.
        milli: u16,
        /// GPU memory taken, MiB.
        memory_mib: u64,
    },
    /// A MIG instance on GPU `index`.
    Mig {
        /// GPU index on the node.
        index: u8,
        /// The profile.
        profile: &'static MigProfile,
        /// First memory slice.
        start: u8,
    },
}

impl Device {
    /// `3` for a GPU, `3:1g.10gb@6` for a MIG instance.
    pub fn label(&self) -> String {
        match self {
            Device::Gpu { index, .. } => index.to_string(),
            Device::Mig {
                index,
                profile,
                start,
            } => format!("{index}:{}@{start}", profile.name),
        }
    }
}

/// Where one replica runs and what it takes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaPlacement {
    /// Node index.
    pub node: u32,
    /// CPU, milli.
    pub cpu_milli: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// GPUs, shares or MIG instances.
    pub devices: Vec<Device>,
    /// Whether it holds the node exclusively.
    pub exclusive: bool,
    /// GPU request kind (see [`LiveNode::pods_by_kind`]); `None` for CPU-only.
    pub kind: Option<usize>,
}

/// Nodes with their allocations and equivalence classes.
#[derive(Clone, Debug)]
pub struct LiveCluster {
    /// GPU model names.
    pub models: GpuModels,
    nodes: Vec<LiveNode>,
    groups: Groups,
    max_cpu_milli: u64,
    max_gpu_milli: u32,
}

/// Builds a node's static class key (everything a filter or score reads that never changes).
fn class_key(n: &LiveNode) -> String {
    let gpus: Vec<(u8, u64)> = n
        .gpus
        .iter()
        .map(|g| (g.nvlink_group, g.memory_mib))
        .collect();
    format!(
        "{:?}|{:?}|{:?}|{}|{}|{:?}|{:?}|{:?}",
        n.labels,
        n.taints,
        n.pool,
        n.cpu_milli,
        n.memory_mib,
        n.model,
        n.mig_table.map(|t| t.model),
        gpus
    )
}

impl LiveCluster {
    fn from_nodes(models: GpuModels, mut nodes: Vec<LiveNode>) -> Self {
        let mut classes: BTreeMap<String, u32> = BTreeMap::new();
        let mut groups = Groups::default();
        for (i, n) in nodes.iter_mut().enumerate() {
            let next = classes.len() as u32;
            n.class = *classes.entry(class_key(n)).or_insert(next);
            n.group = groups.insert(i as u32, n.state_key());
        }
        let max_cpu_milli = nodes.iter().map(|n| n.cpu_milli).max().unwrap_or(0);
        let max_gpu_milli = nodes
            .iter()
            .map(|n| n.gpus.len() as u32 * GPU_MILLI)
            .max()
            .unwrap_or(0);
        LiveCluster {
            models,
            nodes,
            groups,
            max_cpu_milli,
            max_gpu_milli,
        }
    }

    /// A live cluster of a validated [`ClusterSpec`], nothing allocated.
    pub fn from_spec(spec: &ClusterSpec) -> Result<Self, LiveError> {
        let mut models = GpuModels::default();
        let specs = spec.node_specs(&mut models).map_err(LiveError::Spec)?;
        let mut nodes = Vec::with_capacity(specs.len());
        for (d, s) in spec.nodes.iter().zip(&specs) {
            let mut n = blank_node(s);
            n.labels = d.labels.clone();
            n.taints = d.taints.clone();
            n.pool = d.pool;
            if let Some(g) = &d.gpus {
                let memory = g.memory_mib().unwrap_or(UNKNOWN_GPU_MEMORY_MIB);
                if g.mig == MigMode::Enabled {
                    n.mig_table = mig::table_for_model(&g.model);
                }
                for (i, gpu) in n.gpus.iter_mut().enumerate() {
                    gpu.memory_mib = memory;
                    gpu.memory_free_mib = memory;
                    let group = g
                        .nvlink_groups
                        .iter()
                        .position(|grp| grp.contains(&(i as i64)));
                    gpu.nvlink_group = match group {
                        Some(k) => k as u8,
                        None => 100 + i as u8,
                    };
                }
            }
            nodes.push(n);
        }
        Ok(Self::from_nodes(models, nodes))
    }

    /// A live cluster of plain engine node specs (no labels or taints, unknown GPU memory, all GPUs of a
    /// node in one NVLink group), as read from openb traces.
    pub fn from_node_specs(models: GpuModels, specs: &[NodeSpec]) -> Self {
        Self::from_nodes(models, specs.iter().map(blank_node).collect())
    }

    /// The nodes, in tie-break order.
    pub fn nodes(&self) -> &[LiveNode] {
        &self.nodes
    }

    /// The equivalence classes.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// Largest node CPU (milli), for normalising scores.
    pub fn max_cpu_milli(&self) -> u64 {
        self.max_cpu_milli
    }

    /// Largest node GPU capacity (milli), for normalising scores.
    pub fn max_gpu_milli(&self) -> u32 {
        self.max_gpu_milli
    }

    /// Capacity per quota dimension: GPU milli, CPU milli, memory MiB.
    pub fn totals(&self) -> [u64; 3] {
        let mut t = [0u64; 3];
        for n in &self.nodes {
            t[0] += n.gpus.len() as u64 * u64::from(GPU_MILLI);
            t[1] += n.cpu_milli;
            t[2] += n.memory_mib;
        }
        t
    }

    /// GPU milli allocated in the cluster.
    pub fn gpu_allocated_milli(&self) -> u64 {
        self.nodes.iter().map(LiveNode::gpu_allocated_milli).sum()
    }

    /// Marks node `index` healthy or not.
    pub fn set_healthy(&mut self, index: usize, healthy: bool) -> Result<(), LiveError> {
        self.node_mut(index)?.healthy = healthy;
        self.rekey(index);
        Ok(())
    }

    /// Cordons (or uncordons) node `index`.
    pub fn set_cordoned(&mut self, index: usize, cordoned: bool) -> Result<(), LiveError> {
        self.node_mut(index)?.cordoned = cordoned;
        self.rekey(index);
        Ok(())
    }

    fn node_mut(&mut self, index: usize) -> Result<&mut LiveNode, LiveError> {
        self.nodes.get_mut(index).ok_or(LiveError::NoSuch {
            what: "node",
            index,
        })
    }

    fn rekey(&mut self, index: usize) {
        let n = &self.nodes[index];
        self.groups.remove(index as u32, n.group);
        let key = n.state_key();
        let g = self.groups.insert(index as u32, key);
        self.nodes[index].group = g;
    }

    /// Takes what `p` describes; re-checks every resource and changes nothing on error.
    pub fn allocate(&mut self, p: &ReplicaPlacement) -> Result<(), LiveError> {
        let index = p.node as usize;
        let n = self.node_mut(index)?;
        let misfit = |what| LiveError::DoesNotFit {
            node: n.name.clone(),
            what,
        };
        if p.cpu_milli > n.cpu_free {
            return Err(misfit("cpu"));
        }
        if p.memory_mib > n.memory_free {
            return Err(misfit("memory"));
        }
        if !p.devices.is_empty() && n.exclusive_held {
            return Err(misfit("exclusive"));
        }
        if p.exclusive && n.gpus.iter().any(|g| !g.idle()) {
            return Err(misfit("exclusive"));
        }
        // Check every device against a copy of the GPU states, then apply.
        let mut gpus = n.gpus.clone();
        for d in &p.devices {
            match *d {
                Device::Gpu {
                    index,
                    milli,
                    memory_mib,
                } => {
                    let g = gpus
                        .get_mut(usize::from(index))
                        .ok_or_else(|| misfit("gpu index"))?;
                    if n.mig_table.is_some()
                        || g.free_milli < milli
                        || g.memory_free_mib < memory_mib
                    {
                        return Err(misfit("gpu free"));
                    }
                    g.free_milli -= milli;
                    g.memory_free_mib -= memory_mib;
                }
                Device::Mig {
                    index,
                    profile,
                    start,
                } => {
                    let g = gpus
                        .get_mut(usize::from(index))
                        .ok_or_else(|| misfit("gpu index"))?;
                    if n.mig_table.is_none()
                        || !mig::legal_starts_with(profile, &g.mig).contains(&start)
                    {
                        return Err(misfit("mig slice"));
                    }
                    let at = g.mig.partition_point(|m| m.start < start);
                    g.mig.insert(at, MigInstance { profile, start });
                }
            }
        }
        n.gpus = gpus;
        n.cpu_free -= p.cpu_milli;
        n.memory_free -= p.memory_mib;
        n.exclusive_held |= p.exclusive;
        if let Some(k) = p.kind {
            n.pods_by_kind[k.min(MAX_GPUS_PER_NODE)] += 1;
        }
        n.pod_count += 1;
        self.rekey(index);
        Ok(())
    }

    /// Gives back what [`LiveCluster::allocate`] took for `p`; changes nothing on error.
    pub fn release(&mut self, p: &ReplicaPlacement) -> Result<(), LiveError> {
        let index = p.node as usize;
        let n = self.node_mut(index)?;
        let bad = |what| LiveError::BadRelease {
            node: n.name.clone(),
            what,
        };
        if n.cpu_free.saturating_add(p.cpu_milli) > n.cpu_milli {
            return Err(bad("cpu"));
        }
        if n.memory_free.saturating_add(p.memory_mib) > n.memory_mib {
            return Err(bad("memory"));
        }
        let mut gpus = n.gpus.clone();
        for d in &p.devices {
            match *d {
                Device::Gpu {
                    index,
                    milli,
                    memory_mib,
                } => {
                    let g = gpus
                        .get_mut(usize::from(index))
                        .ok_or_else(|| bad("gpu index"))?;
                    if u32::from(g.free_milli) + u32::from(milli) > GPU_MILLI
                        || g.memory_free_mib.saturating_add(memory_mib) > g.memory_mib
                    {
                        return Err(bad("gpu free"));
                    }
                    g.free_milli += milli;
                    g.memory_free_mib += memory_mib;
                }
                Device::Mig { index, start, .. } => {
                    let g = gpus
                        .get_mut(usize::from(index))
                        .ok_or_else(|| bad("gpu index"))?;
                    let at = g
                        .mig
                        .iter()
                        .position(|m| m.start == start)
                        .ok_or_else(|| bad("mig slice"))?;
                    g.mig.remove(at);
                }
            }
        }
        n.gpus = gpus;
        n.cpu_free += p.cpu_milli;
        n.memory_free += p.memory_mib;
        if p.exclusive {
            n.exclusive_held = false;
        }
        if let Some(k) = p.kind {
            let k = k.min(MAX_GPUS_PER_NODE);
            n.pods_by_kind[k] = n.pods_by_kind[k].saturating_sub(1);
        }
        n.pod_count = n.pod_count.saturating_sub(1);
        self.rekey(index);
        Ok(())
    }
}

fn blank_node(s: &NodeSpec) -> LiveNode {
    let count = usize::from(s.gpu_count).min(MAX_GPUS_PER_NODE);
    LiveNode {
        name: s.name.clone(),
        labels: BTreeMap::new(),
        taints: Vec::new(),
        pool: Pool::OnDemand,
        healthy: true,
        cordoned: false,
        cpu_milli: s.cpu_milli,
        cpu_free: s.cpu_milli,
        memory_mib: s.memory_mib,
        memory_free: s.memory_mib,
        model: s.gpu_model,
        mig_table: None,
        gpus: vec![
            LiveGpu {
                nvlink_group: 0,
                memory_mib: UNKNOWN_GPU_MEMORY_MIB,
                free_milli: GPU_MILLI as u16,
                memory_free_mib: UNKNOWN_GPU_MEMORY_MIB,
                mig: Vec::new(),
            };
            count
        ],
        exclusive_held: false,
        pods_by_kind: [0; MAX_GPUS_PER_NODE + 1],
        pod_count: 0,
        class: 0,
        group: 0,
    }
}

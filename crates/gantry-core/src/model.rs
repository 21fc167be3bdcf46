//! The cluster model: GPU models, nodes with their free capacity, and pod requests.

use serde::{Deserialize, Serialize};

/// Most GPUs one node may hold.
pub const MAX_GPUS_PER_NODE: usize = 16;

/// A whole GPU, in milli-GPU.
pub const GPU_MILLI: u32 = 1000;

/// Index of a GPU model in a [`GpuModels`] table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModelId(pub u8);

/// A set of GPU models; the empty set means "any model".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelSet(u64);

impl ModelSet {
    /// The unconstrained set: every model is allowed.
    pub const ANY: ModelSet = ModelSet(0);

    /// Adds a model to the set.
    pub fn insert(&mut self, model: ModelId) {
        self.0 |= 1u64 << model.0;
    }

    /// True when no model constraint is set.
    pub fn is_any(self) -> bool {
        self.0 == 0
    }

    /// True when a GPU of `model` satisfies this constraint.
    pub fn allows(self, model: ModelId) -> bool {
        self.0 == 0 || self.0 & (1u64 << model.0) != 0
    }

    /// The models in the set, in id order.
    pub fn iter(self) -> impl Iterator<Item = ModelId> {
        (0..64u8)
            .filter(move |i| self.0 & (1u64 << i) != 0)
            .map(ModelId)
    }
}

/// Interns GPU model names ("A100-80GB", "T4") into compact [`ModelId`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuModels {
    names: Vec<String>,
}

/// The model table is full (64 distinct models).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many distinct GPU models (at most 64), cannot add {0:?}")]
pub struct TooManyModels(pub String);

impl GpuModels {
    /// The id of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> Result<ModelId, TooManyModels> {
        if let Some(id) = self.get(name) {
            return Ok(id);
        }
        if self.names.len() >= 64 {
            return Err(TooManyModels(name.to_string()));
        }
        self.names.push(name.to_string());
        Ok(ModelId((self.names.len() - 1) as u8))
    }

    /// The id of `name`, if known.
    pub fn get(&self, name: &str) -> Option<ModelId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| ModelId(i as u8))
    }

    /// The name of a model id.
    pub fn name(&self, id: ModelId) -> &str {
        self.names.get(id.0 as usize).map_or("?", String::as_str)
    }

    /// Number of known models.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no model is known.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What a pod asks of GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GpuDemand {
    /// No GPU (a CPU-only pod).
    None,
    /// A fractional share of one GPU, in milli (1..=999).
    Share(u16),
    /// This many whole GPUs (1..=MAX_GPUS_PER_NODE).
    Whole(u8),
}

impl GpuDemand {
    /// The request kind index used by [`Node::gpu_pods_by_kind`] (None for CPU-only pods).
    pub fn kind_index(self) -> Option<usize> {
        match self {
            GpuDemand::None => None,
            GpuDemand::Share(_) => Some(0),
            GpuDemand::Whole(k) => Some(usize::from(k)),
        }
    }

    /// Total GPU demand in milli-GPU.
    pub fn total_milli(self) -> u32 {
        match self {
            GpuDemand::None => 0,
            GpuDemand::Share(m) => u32::from(m),
            GpuDemand::Whole(k) => u32::from(k) * GPU_MILLI,
        }
    }

    /// Number of GPUs touched (a share touches one).
    pub fn gpu_count(self) -> u32 {
        match self {
            GpuDemand::None => 0,
            GpuDemand::Share(_) => 1,
            GpuDemand::Whole(k) => u32::from(k),
        }
    }

    /// Milli-GPU needed on each GPU touched.
    pub fn milli_per_gpu(self) -> u32 {
        match self {
            GpuDemand::None => 0,
            GpuDemand::Share(m) => u32::from(m),
            GpuDemand::Whole(_) => GPU_MILLI,
        }
    }
}

/// A request to place: CPU, memory, GPU demand and allowed GPU models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pod {
    /// CPU in milli-cores.
    pub cpu_milli: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPU demand.
    pub gpu: GpuDemand,
    /// Allowed GPU models (empty = any).
    pub models: ModelSet,
}

/// Static description of a node: capacity and GPU model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Allocatable CPU in milli-cores.
    pub cpu_milli: u64,
    /// Allocatable memory in MiB.
    pub memory_mib: u64,
    /// Number of GPUs (all of one model).
    pub gpu_count: u8,
    /// GPU model, when the node has GPUs.
    pub gpu_model: Option<ModelId>,
}

/// A node with its free capacity; the engine's unit of placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The static description.
    pub spec: NodeSpec,
    /// Free CPU in milli-cores.
    pub cpu_free: u64,
    /// Free memory in MiB.
    pub memory_free: u64,
    /// Free milli of each GPU (only the first `spec.gpu_count` entries are used).
    pub gpu_free: [u16; MAX_GPUS_PER_NODE],
    /// Pods placed here, by GPU request kind: index 0 = sharing pods, k = pods of k whole GPUs.
    pub gpu_pods_by_kind: [u16; MAX_GPUS_PER_NODE + 1],
    /// Number of pods placed here (CPU-only pods included).
    pub pod_count: u32,
}

impl Node {
    /// A node with nothing allocated.
    pub fn new(spec: NodeSpec) -> Self {
        let mut gpu_free = [0u16; MAX_GPUS_PER_NODE];
        let count = usize::from(spec.gpu_count).min(MAX_GPUS_PER_NODE);
        for f in &mut gpu_free[..count] {
            *f = GPU_MILLI as u16;
        }
        Node {
            cpu_free: spec.cpu_milli,
            memory_free: spec.memory_mib,
            gpu_free,
            gpu_pods_by_kind: [0; MAX_GPUS_PER_NODE + 1],
            pod_count: 0,
            spec,
        }
    }

    /// Free milli of the node's GPUs.
    pub fn gpus(&self) -> &[u16] {
        &self.gpu_free[..usize::from(self.spec.gpu_count)]
    }

    /// Sum of free GPU milli on the node.
    pub fn gpu_free_total(&self) -> u32 {
        self.gpus().iter().map(|&f| u32::from(f)).sum()
    }

    /// Number of GPUs with nothing allocated.
    pub fn fully_free_gpus(&self) -> u32 {
        self.gpus()
            .iter()
            .filter(|&&f| u32::from(f) == GPU_MILLI)
            .count() as u32
    }

    /// GPU milli allocated on the node.
    pub fn gpu_allocated(&self) -> u32 {
        self.gpu_capacity() - self.gpu_free_total()
    }

    /// Total GPU capacity in milli.
    pub fn gpu_capacity(&self) -> u32 {
        u32::from(self.spec.gpu_count) * GPU_MILLI
    }
}

/// Which GPUs of a node a placement takes (bit i = GPU i).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuSet(pub u16);

impl GpuSet {
    /// The GPU indices in the set.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_GPUS_PER_NODE).filter(move |i| self.0 & (1 << i) != 0)
    }

    /// A set of one GPU.
    pub fn one(index: usize) -> Self {
        GpuSet(1 << index)
    }

    /// Number of GPUs in the set.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// True when the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

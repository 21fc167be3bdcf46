//! The cluster: nodes and their allocations; the only place that mutates free capacity.

use crate::model::{GpuDemand, GpuModels, GpuSet, Node, NodeSpec, Pod};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_CLUSTER_ID: AtomicU64 = AtomicU64::new(1);

/// A commit that does not fit the node (a bug in the caller: commit only what the filter accepted).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommitError {
    /// No such node.
    #[error("node index {0} out of range")]
    NoSuchNode(usize),
    /// The pod does not fit the node or the chosen GPUs.
    #[error("pod does not fit node {node}: {what}")]
    DoesNotFit {
        /// The node name.
        node: String,
        /// Which resource.
        what: &'static str,
    },
}

/// Nodes with their allocations, plus a per-node version bumped on every change.
#[derive(Debug)]
pub struct Cluster {
    id: u64,
    /// GPU model names.
    pub models: GpuModels,
    nodes: Vec<Node>,
    versions: Vec<u32>,
    max_cpu_milli: u64,
    max_gpu_milli: u32,
}

impl Clone for Cluster {
    fn clone(&self) -> Self {
        Cluster {
            id: NEXT_CLUSTER_ID.fetch_add(1, Ordering::Relaxed),
            models: self.models.clone(),
            nodes: self.nodes.clone(),
            versions: self.versions.clone(),
            max_cpu_milli: self.max_cpu_milli,
            max_gpu_milli: self.max_gpu_milli,
        }
    }
}

impl Cluster {
    /// An empty-allocation cluster of these nodes, in this order (the order breaks score ties).
    pub fn new(models: GpuModels, specs: Vec<NodeSpec>) -> Self {
        let nodes: Vec<Node> = specs.into_iter().map(Node::new).collect();
        let max_cpu_milli = nodes.iter().map(|n| n.spec.cpu_milli).max().unwrap_or(0);
        let max_gpu_milli = nodes.iter().map(Node::gpu_capacity).max().unwrap_or(0);
        Cluster {
            id: NEXT_CLUSTER_ID.fetch_add(1, Ordering::Relaxed),
            models,
            versions: vec![1; nodes.len()],
            nodes,
            max_cpu_milli,
            max_gpu_milli,
        }
    }

    /// Identity of this cluster value (score caches are bound to one cluster).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The nodes, in tie-break order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Version of node `i`; changes whenever its allocations change.
    pub fn version(&self, i: usize) -> u32 {
        self.versions[i]
    }

    /// Largest node CPU capacity (milli), for normalising scores.
    pub fn max_cpu_milli(&self) -> u64 {
        self.max_cpu_milli
    }

    /// Largest node GPU capacity (milli), for normalising scores.
    pub fn max_gpu_milli(&self) -> u32 {
        self.max_gpu_milli
    }

    /// Total GPU capacity of the cluster, in milli.
    pub fn gpu_capacity(&self) -> u64 {
        self.nodes.iter().map(|n| u64::from(n.gpu_capacity())).sum()
    }

    /// GPU milli allocated in the cluster.
    pub fn gpu_allocated(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| u64::from(n.gpu_allocated()))
            .sum()
    }

    /// Takes `pod`'s resources on node `index`, on the GPUs `gpus`; nothing changes on error.
    pub fn commit(&mut self, index: usize, pod: &Pod, gpus: GpuSet) -> Result<(), CommitError> {
        let node = self
            .nodes
            .get_mut(index)
            .ok_or(CommitError::NoSuchNode(index))?;
        let misfit = |what| CommitError::DoesNotFit {
            node: node.spec.name.clone(),
            what,
        };
        if pod.cpu_milli > node.cpu_free {
            return Err(misfit("cpu"));
        }
        if pod.memory_mib > node.memory_free {
            return Err(misfit("memory"));
        }
        let per_gpu = pod.gpu.milli_per_gpu();
        if gpus.len() != pod.gpu.gpu_count() {
            return Err(misfit("gpu count"));
        }
        for g in gpus.iter() {
            if g >= usize::from(node.spec.gpu_count) || u32::from(node.gpu_free[g]) < per_gpu {
                return Err(misfit("gpu free"));
            }
        }
        if pod.gpu != GpuDemand::None {
            match node.spec.gpu_model {
                Some(m) if pod.models.allows(m) => {}
                _ => return Err(misfit("gpu model")),
            }
        }
        node.cpu_free -= pod.cpu_milli;
        node.memory_free -= pod.memory_mib;
        for g in gpus.iter() {
            node.gpu_free[g] -= per_gpu as u16;
        }
        if let Some(k) = pod.gpu.kind_index() {
            node.gpu_pods_by_kind[k] += 1;
        }
        node.pod_count += 1;
        self.versions[index] = self.versions[index].wrapping_add(1).max(1);
        Ok(())
    }

    /// Gives back what [`Cluster::commit`] took for `pod` on node `index` and GPUs `gpus`.
    pub fn release(&mut self, index: usize, pod: &Pod, gpus: GpuSet) -> Result<(), CommitError> {
        let node = self
            .nodes
            .get_mut(index)
            .ok_or(CommitError::NoSuchNode(index))?;
        let per_gpu = pod.gpu.milli_per_gpu();
        let over = |what| CommitError::DoesNotFit {
            node: node.spec.name.clone(),
            what,
        };
        if node.cpu_free + pod.cpu_milli > node.spec.cpu_milli {
            return Err(over("cpu"));
        }
        if node.memory_free + pod.memory_mib > node.spec.memory_mib {
            return Err(over("memory"));
        }
        for g in gpus.iter() {
            if g >= usize::from(node.spec.gpu_count)
                || u32::from(node.gpu_free[g]) + per_gpu > crate::model::GPU_MILLI
            {
                return Err(over("gpu free"));
            }
        }
        node.cpu_free += pod.cpu_milli;
        node.memory_free += pod.memory_mib;
        for g in gpus.iter() {
            node.gpu_free[g] += per_gpu as u16;
        }
        if let Some(k) = pod.gpu.kind_index() {
            node.gpu_pods_by_kind[k] = node.gpu_pods_by_kind[k].saturating_sub(1);
        }
        node.pod_count = node.pod_count.saturating_sub(1);
        self.versions[index] = self.versions[index].wrapping_add(1).max(1);
        Ok(())
    }
}

//! The filter stage: can this pod run on this node right now, and if not, why.

use crate::model::{GpuDemand, ModelId, Node, Pod};
use serde::Serialize;
use std::fmt;

/// Why a node cannot take a pod: the resource and the constraint that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "resource", rename_all = "snake_case")]
pub enum Rejection {
    /// Not enough free CPU.
    Cpu {
        /// Milli-cores requested.
        need: u64,
        /// Milli-cores free on the node.
        free: u64,
    },
    /// Not enough free memory.
    Memory {
        /// MiB requested.
        need: u64,
        /// MiB free on the node.
        free: u64,
    },
    /// The node's GPU model is not among the pod's allowed models (or it has no GPU).
    GpuModel {
        /// The node's GPU model, if any.
        node_model: Option<ModelId>,
    },
    /// The node has fewer GPUs than the pod asks for, even when empty.
    GpuCount {
        /// GPUs requested.
        need: u32,
        /// GPUs the node has.
        has: u32,
    },
    /// Not enough GPUs with enough free milli right now.
    GpuFree {
        /// GPUs requested.
        need: u32,
        /// Milli needed on each of them.
        milli_per_gpu: u32,
        /// GPUs that have that much free.
        fitting: u32,
    },
}

impl Rejection {
    /// Short stable name of the failed filter, for grouping ("cpu", "gpu_free", ...).
    pub fn filter_name(&self) -> &'static str {
        match self {
            Rejection::Cpu { .. } => "cpu",
            Rejection::Memory { .. } => "memory",
            Rejection::GpuModel { .. } => "gpu_model",
            Rejection::GpuCount { .. } => "gpu_count",
            Rejection::GpuFree { .. } => "gpu_free",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Rejection::Cpu { need, free } => write!(f, "cpu: needs {need}m, {free}m free"),
            Rejection::Memory { need, free } => {
                write!(f, "memory: needs {need} MiB, {free} MiB free")
            }
            Rejection::GpuModel { node_model: None } => write!(f, "gpu model: node has no GPU"),
            Rejection::GpuModel {
                node_model: Some(m),
            } => write!(f, "gpu model: node model #{} not allowed", m.0),
            Rejection::GpuCount { need, has } => {
                write!(f, "gpu count: needs {need} GPUs, node has {has}")
            }
            Rejection::GpuFree {
                need,
                milli_per_gpu,
                fitting,
            } => write!(
                f,
                "gpu free: needs {need} GPU(s) with {milli_per_gpu}m free, {fitting} have it"
            ),
        }
    }
}

/// Number of GPUs of `node` with at least `milli` free.
pub fn gpus_with_free(node: &Node, milli: u32) -> u32 {
    node.gpus()
        .iter()
        .filter(|&&f| u32::from(f) >= milli)
        .count() as u32
}

/// Checks every constraint of `pod` against `node`; the first failure is returned.
pub fn filter(node: &Node, pod: &Pod) -> Result<(), Rejection> {
    if pod.cpu_milli > node.cpu_free {
        return Err(Rejection::Cpu {
            need: pod.cpu_milli,
            free: node.cpu_free,
        });
    }
    if pod.memory_mib > node.memory_free {
        return Err(Rejection::Memory {
            need: pod.memory_mib,
            free: node.memory_free,
        });
    }
    if pod.gpu == GpuDemand::None {
        return Ok(());
    }
    match node.spec.gpu_model {
        Some(m) if pod.models.allows(m) => {}
        other => return Err(Rejection::GpuModel { node_model: other }),
    }
    let need = pod.gpu.gpu_count();
    let has = u32::from(node.spec.gpu_count);
    if need > has {
        return Err(Rejection::GpuCount { need, has });
    }
    let milli_per_gpu = pod.gpu.milli_per_gpu();
    let fitting = gpus_with_free(node, milli_per_gpu);
    if fitting < need {
        return Err(Rejection::GpuFree {
            need,
            milli_per_gpu,
            fitting,
        });
    }
    Ok(())
}

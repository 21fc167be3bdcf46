//! Label, annotation and resource names shared by the controller, the scheduler and the agent.

/// The scheduler name Pods carry (`spec.schedulerName`).
pub const SCHEDULER_NAME: &str = "gantry";
/// API group of the custom resources.
pub const GROUP: &str = "gantry.dev";
/// Label: the `GPUWorkload` a Pod belongs to (its name; the namespace is the Pod's).
pub const WORKLOAD: &str = "gantry.dev/workload";
/// Label: the replica index of a Pod in its workload (`0`, `1`, ...).
pub const REPLICA: &str = "gantry.dev/replica";
/// Annotation: replicas that must be bound together (gang minimum), as a decimal number.
pub const GANG_MINIMUM: &str = "gantry.dev/gang-minimum";
/// Annotation: the workload's queue.
pub const QUEUE: &str = "gantry.dev/queue";
/// Annotation: the workload's priority value (decimal).
pub const PRIORITY: &str = "gantry.dev/priority";
/// Annotation: for a sharing Pod, the share of one GPU in milli (1..999); absent for whole GPUs.
pub const GPU_SHARE: &str = "gantry.dev/gpu-share";
/// Annotation: allowed GPU models, comma separated (absent = any).
pub const GPU_MODELS: &str = "gantry.dev/gpu-models";
/// Annotation: the placement strategy override for this workload.
pub const STRATEGY: &str = "gantry.dev/strategy";
/// Annotation the scheduler writes on a bound Pod: the GPU indices (and milli) it chose, `0,1` or `2:500`.
pub const ASSIGNED_GPUS: &str = "gantry.dev/assigned-gpus";
/// Finalizer the controller puts on `GPUWorkload`s.
pub const FINALIZER: &str = "gantry.dev/cleanup";
/// Node label: GPU model (agent).
pub const NODE_GPU_MODEL: &str = "gantry.dev/gpu-model";
/// Node label: GPU count (agent).
pub const NODE_GPU_COUNT: &str = "gantry.dev/gpu-count";
/// Node label: GPU memory tier, `16g`, `24g`, `40g`, `48g`, `80g`, `141g` (agent).
pub const NODE_GPU_MEMORY: &str = "gantry.dev/gpu-memory";
/// Node label: utilisation tier `idle` (<10 %), `low` (<40 %), `medium` (<75 %), `high` (agent).
pub const NODE_UTILIZATION: &str = "gantry.dev/utilization-tier";
/// Extended resource of the NVIDIA device plugin for whole GPUs.
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
/// Prefix of the NVIDIA device plugin's MIG resources (`nvidia.com/mig-3g.40gb`).
pub const NVIDIA_MIG_PREFIX: &str = "nvidia.com/mig-";
/// Node label: a GPU node (`true`), set by `gantry k8s label-nodes`; the agent DaemonSet selects on it.
pub const NODE_GPU_NODE: &str = "gantry.dev/gpu-node";

//! Gantry on Kubernetes: the `GPUWorkload`, `GPUQueue` and `GPUNode` custom resources, the controller
//! that turns workloads into Pods, the GPU-aware scheduler that binds them, and the node agent.
//!
//! The pieces talk only through the API server: the controller writes Pods carrying the labels and
//! annotations of [`keys`]; the scheduler reads them (and `GPUNode` status written by the agent) and
//! binds; the agent writes `GPUNode` status and node labels.

pub mod agent;
pub mod controller;
pub mod cost;
pub mod crd;
pub mod keys;
pub mod labels;
pub mod manifests;
pub mod pods;
pub mod prices;
pub mod scheduler;

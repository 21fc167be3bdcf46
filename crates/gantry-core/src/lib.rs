//! Gantry's model and scheduling engine.
//!
//! Pure: no I/O, no clock, no global RNG. Time and randomness are inputs. The stages of a decision are
//! [`filter`] (can the node take the pod, and if not why), [`policies`] (score each feasible node),
//! [`devices`] (which GPUs of the chosen node), and [`Cluster::commit`](cluster::Cluster::commit).

pub mod cluster;
pub mod devices;
pub mod engine;
pub mod filter;
pub mod frag;
pub mod live;
pub mod model;
pub mod policies;
pub mod rng;
pub mod spec;

pub use cluster::Cluster;
pub use engine::{Engine, EngineConfig, Placement, Unschedulable};
pub use model::{GpuDemand, GpuModels, ModelId, ModelSet, Node, NodeSpec, Pod};
pub use policies::Policy;
pub use rng::Rng;

//! The time-aware scheduler: a live cluster, resolved workloads, and the named stages of a scheduling
//! cycle. Used by the simulator's scenarios now and by the server later.
//!
//! Pure like the rest of the engine: time (`now`, in seconds) and randomness ([`crate::Rng`]) are inputs.
//! One idea per file:
//!
//! - [`cluster`]: [`LiveCluster`]: nodes with labels, taints, pool, health, and GPUs with free milli, GPU
//!   memory, MIG slice occupancy and NVLink group; `allocate` / `release` are the only mutations.
//! - [`groups`]: equivalence classes of nodes in identical state, so a decision scans classes, not nodes.
//! - [`workload`]: [`Workload`], the resolved form of a [`WorkloadSpec`](crate::spec::WorkloadSpec).
//! - [`order`]: priority, then fair share, then age, with aging.
//! - [`admit`]: queue quotas and cohort borrowing.
//! - [`filter`]: can this node take one replica, and if not, which filter says no and why.
//! - [`score`]: the strategy's score plus preferred-affinity weights.
//! - [`select`]: the scan over equivalence classes that picks a node per the strategy's selection rule.
//! - [`devices`]: which GPUs, shares or MIG slices of the chosen node.
//! - [`gang`]: all replicas (at least the gang minimum) in one decision, or none.
//! - [`preempt`]: the cheapest set of lower-priority victims that makes room.
//! - [`backfill`]: the head-of-line reservation and the rule for work that may jump ahead of it.
//! - [`scheduler`]: [`Scheduler`], the state (pending, running, queues) and one cycle through the stages.
//!
//! A new stage is a new file here with a function over [`LiveCluster`] and [`Workload`], called from
//! [`Scheduler::cycle`] in [`scheduler`].

pub mod admit;
pub mod backfill;
pub mod cluster;
pub mod devices;
pub mod error;
pub mod filter;
pub mod gang;
pub mod groups;
pub mod order;
pub mod preempt;
pub mod scheduler;
pub mod score;
pub mod select;
pub mod workload;

pub use cluster::{Device, LiveCluster, LiveGpu, LiveNode, ReplicaPlacement};
pub use error::LiveError;
pub use filter::{Explanation, Rejection};
pub use scheduler::{CycleOutcome, Scheduler, SchedulerConfig};
pub use workload::{Demand, Workload, WorkloadId};

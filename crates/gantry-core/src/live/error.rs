//! Errors of the live scheduler.

use crate::spec::SpecError;

/// What can go wrong building or changing the live state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveError {
    /// The cluster or a workload spec is invalid; every problem names its field.
    #[error("invalid spec: {}", join_errors(.0))]
    Spec(Vec<SpecError>),
    /// An allocation does not fit the node (a caller bug: allocate only what the filter accepted).
    #[error("allocation does not fit node {node}: {what}")]
    DoesNotFit {
        /// The node's name.
        node: String,
        /// Which resource.
        what: &'static str,
    },
    /// A release gives back more than was taken.
    #[error("release does not match node {node}: {what}")]
    BadRelease {
        /// The node's name.
        node: String,
        /// Which resource.
        what: &'static str,
    },
    /// A node or workload index that does not exist.
    #[error("no {what} with index {index}")]
    NoSuch {
        /// `node` or `workload`.
        what: &'static str,
        /// The index.
        index: usize,
    },
    /// A workload names a queue the cluster does not declare.
    #[error("workload {workload:?}: unknown queue {queue:?}")]
    UnknownQueue {
        /// The workload.
        workload: String,
        /// The queue it names.
        queue: String,
    },
}

fn join_errors(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

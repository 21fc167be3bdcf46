//! The user-facing specs: workloads ([`WorkloadSpec`]) and the cluster ([`ClusterSpec`]), one serde type
//! family for every home of the engine (simulator, standalone server, Kubernetes CRDs).
//!
//! Conventions:
//! - Field names are camelCase (`gangMinimum`, `ttlAfterFinished`), as in Kubernetes; unknown fields are
//!   refused. Gantry's own enum values are kebab-case (`asset-generation`, `same-node`, `on-demand`);
//!   values borrowed from Kubernetes keep its spelling (`In`, `Exists`, `NoSchedule`).
//! - Quantities are text, parsed and checked by the validators (see [`units`]): CPU `"500m"` / `"4"` /
//!   `0.5` (milli-cores), memory `"16Gi"` / `"500M"` (MiB, a unit is required), durations `"30m"` / `"2h"` /
//!   `"1d"`. Counts are signed integers so that a negative value reaches validation and is reported
//!   against its field like every other problem.
//! - `validate` collects every problem, each a [`SpecError`] naming the field's path
//!   (`resources.gpu.share`, `nodes[2].gpus.count`) and the problem in plain words. Nothing panics on input.
//!
//! Files: [`workload`] (the workload spec and its validation), [`cluster`] (nodes, priority classes,
//! queues, and the conversion to engine [`NodeSpec`](crate::model::NodeSpec)s), [`mig`] (MIG profile
//! tables and slice placement), [`units`] (quantity parsing). With the `schema` feature, `schema`
//! generates JSON Schemas of both.

pub mod cluster;
pub mod mig;
#[cfg(feature = "schema")]
pub mod schema;
pub mod template;
pub mod units;
pub mod workload;

pub use cluster::{
    ClusterSpec, MigMode, NodeDescription, NodeGpus, Pool, PriorityClass, QueueSpec, Quota, Taint,
    TaintEffect,
};
pub use units::{Duration, MemoryQuantity, MilliQuantity, UnitError};
pub use workload::{
    Affinity, GpuRequest, LabelExpression, LabelOperator, Placement, PreferredTerm, Resources,
    RunMode, RunSpec, SpotPolicy, Toleration, TolerationOperator, Topology, ValidationContext,
    WorkloadKind, WorkloadSpec, validate_workloads,
};

use std::fmt;

/// Most GPUs a node may declare, and a workload may ask for without a cluster to check against.
pub const MAX_NODE_GPUS: i64 = 8;

/// One problem in a spec: the field's path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct SpecError {
    /// Path of the field, e.g. `resources.gpu.share` or `[3].placement.tolerations[0].value`.
    pub path: String,
    /// The problem, in plain words.
    pub problem: String,
}

impl SpecError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        SpecError {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// The same problem with `prefix` put before its path (`[2]` + `name` = `[2].name`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = join(prefix, &self.path);
        self
    }
}

/// `base.field`, or `field` when `base` is empty; an index field (`[2]`) attaches without a dot.
pub(crate) fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else if field.is_empty() {
        base.to_string()
    } else if field.starts_with('[') {
        format!("{base}{field}")
    } else {
        format!("{base}.{field}")
    }
}

/// Collects the problems found while validating.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<SpecError>);

impl Problems {
    /// Records a problem at `path`.
    pub fn add(&mut self, path: impl Into<String>, problem: impl fmt::Display) {
        self.0.push(SpecError::new(path, problem.to_string()));
    }

    /// `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), Vec<SpecError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    /// Checks a DNS-label-like name (lowercase letters, digits, `-`, `.`; starts and ends alphanumeric).
    pub fn name(&mut self, path: &str, name: &str) {
        if name.is_empty() {
            self.add(path, "must not be empty");
        } else if name.len() > 63 {
            self.add(path, format!("{name:?} is longer than 63 characters"));
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
        {
            self.add(
                path,
                format!(
                    "{name:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
                ),
            );
        }
    }

    /// Checks a label or taint key: not empty, no whitespace.
    pub fn label_key(&mut self, path: &str, key: &str) {
        if key.is_empty() {
            self.add(path, "label key must not be empty");
        } else if key.chars().any(char::is_whitespace) {
            self.add(path, format!("label key {key:?} must not contain spaces"));
        }
    }

    /// Parses a CPU/GPU amount, recording a problem if it is unreadable.
    pub fn milli(&mut self, path: &str, q: &MilliQuantity) -> Option<u64> {
        q.milli().map_err(|e| self.add(path, e)).ok()
    }

    /// Parses a memory size, recording a problem if it is unreadable.
    pub fn mib(&mut self, path: &str, q: &MemoryQuantity) -> Option<u64> {
        q.mib().map_err(|e| self.add(path, e)).ok()
    }

    /// Parses a duration, recording a problem if it is unreadable.
    pub fn seconds(&mut self, path: &str, d: &Duration) -> Option<u64> {
        d.seconds().map_err(|e| self.add(path, e)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_fields_and_indices() {
        assert_eq!(join("", "name"), "name");
        assert_eq!(join("[2]", "name"), "[2].name");
        assert_eq!(join("nodes", "[1]"), "nodes[1]");
        assert_eq!(join("a", ""), "a");
        let e = SpecError::new("resources.cpu", "is empty").under("[0]");
        assert_eq!(e.to_string(), "[0].resources.cpu: is empty");
    }

    #[test]
    fn names_follow_dns_label_rules() {
        let mut p = Problems::default();
        p.name("a", "train-llm.v2");
        p.name("b", "");
        p.name("c", "Train");
        p.name("d", "-x");
        p.name("e", &"x".repeat(64));
        let paths: Vec<_> = p.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["b", "c", "d", "e"]);
    }
}

//! Placement policies: one module per policy, each a score function; this file is the registry.
//!
//! To add a policy: write `policies/<name>.rs` with `pub fn score(node, pod, ctx) -> f64` and its tests,
//! add a [`Policy`] variant, and one row to [`POLICIES`].

pub mod best_fit;
pub mod bestfit;
pub mod binpack;
pub mod dotprod;
pub mod fgd;
pub mod gantry;
pub mod gpuclustering;
pub mod gpupacking;
pub mod least_utilized;
pub mod priority;
pub mod random;
pub mod round_robin;
pub mod spread;

use crate::devices::ShareRule;
use crate::frag::TargetWorkload;
use crate::model::{Node, Pod};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Cluster-wide inputs a score may use besides the node and the pod.
#[derive(Clone, Copy, Debug)]
pub struct ScoreContext<'a> {
    /// The expected workload (pod shapes and frequencies), for fragmentation-aware policies.
    pub target: &'a TargetWorkload,
    /// Largest node CPU capacity in the cluster (milli).
    pub max_cpu_milli: u64,
    /// Largest node GPU capacity in the cluster (milli).
    pub max_gpu_milli: u32,
    /// What the `gantry` policy knows from history (share prices, CPU per GPU).
    pub gantry: &'a gantry::GantryInputs,
}

/// A placement policy, selectable by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Gantry's default: least expected waste against a plan from history, then FGD's class.
    Gantry,
    /// Published: any feasible node at random.
    Random,
    /// Published: least aligned free/requested (CPU, GPU) vectors.
    #[serde(rename = "dotprod")]
    DotProd,
    /// Published: nodes already running the same GPU request kind.
    #[serde(rename = "gpuclustering")]
    GpuClustering,
    /// Published: partly used GPUs first, then busy nodes, then idle ones.
    #[serde(rename = "gpupacking")]
    GpuPacking,
    /// Published: least CPU+GPU leftover.
    #[serde(rename = "bestfit")]
    BestFitPublished,
    /// Published: fragmentation gradient descent.
    Fgd,
    /// Lowest GPU utilisation.
    LeastUtilized,
    /// Just enough free GPU share.
    BestFit,
    /// Strict node order, first fit.
    Priority,
    /// Rotate through nodes.
    RoundRobin,
    /// Most allocated node.
    Binpack,
    /// Least allocated node.
    Spread,
}

/// How the engine chooses among feasible nodes for a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Highest score, earliest node on ties; scores depend only on the node and the pod (cacheable).
    MaxScore,
    /// Uniformly random feasible node.
    Random,
    /// First feasible node at or after the rotating cursor.
    RoundRobin,
}

/// A registry row: name, one-line description, and whether it is a published openb baseline.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInfo {
    /// The policy.
    pub policy: Policy,
    /// The name users type.
    pub name: &'static str,
    /// One line saying what it prefers.
    pub summary: &'static str,
    /// True for the six policies of the published openb experiments.
    pub published: bool,
}

/// Every policy, in the order `gantry strategies` lists them.
pub const POLICIES: &[PolicyInfo] = &[
    PolicyInfo {
        policy: Policy::Gantry,
        name: "gantry",
        summary: "the default: least expected waste against a packing plan from history (share prices, CPU per GPU), then FGD's fragmentation class",
        published: false,
    },
    PolicyInfo {
        policy: Policy::Fgd,
        name: "fgd",
        summary: "fragmentation gradient descent: the node and GPU where expected GPU fragmentation grows least (published FGD)",
        published: true,
    },
    PolicyInfo {
        policy: Policy::BestFitPublished,
        name: "bestfit",
        summary: "least leftover after placement, 0.5 CPU + 0.5 GPU over the largest node's capacity (published BestFit)",
        published: true,
    },
    PolicyInfo {
        policy: Policy::GpuPacking,
        name: "gpupacking",
        summary: "partly used GPUs first (least free first), then nodes with few idle GPUs, then idle nodes (published GpuPacking)",
        published: true,
    },
    PolicyInfo {
        policy: Policy::GpuClustering,
        name: "gpuclustering",
        summary: "nodes already running pods of the same GPU request size, then fuller nodes (published GpuClustering)",
        published: true,
    },
    PolicyInfo {
        policy: Policy::DotProd,
        name: "dotprod",
        summary: "least alignment between the node's free (CPU, GPU) vector and the request (published DotProd)",
        published: true,
    },
    PolicyInfo {
        policy: Policy::Random,
        name: "random",
        summary: "any feasible node, uniformly at random (published Random)",
        published: true,
    },
    PolicyInfo {
        policy: Policy::LeastUtilized,
        name: "least_utilized",
        summary: "the node with the lowest GPU utilisation (in simulation: lowest allocated share); shares go to the emptiest GPU",
        published: false,
    },
    PolicyInfo {
        policy: Policy::BestFit,
        name: "best_fit",
        summary: "just enough: the GPU (and node) left with the least free share after placement",
        published: false,
    },
    PolicyInfo {
        policy: Policy::Priority,
        name: "priority",
        summary: "strict node priority order, first fit",
        published: false,
    },
    PolicyInfo {
        policy: Policy::RoundRobin,
        name: "round_robin",
        summary: "rotate through nodes: the next feasible node after the last one used",
        published: false,
    },
    PolicyInfo {
        policy: Policy::Binpack,
        name: "binpack",
        summary: "the most allocated node after placement (mean of CPU, memory, GPU)",
        published: false,
    },
    PolicyInfo {
        policy: Policy::Spread,
        name: "spread",
        summary: "the least allocated node after placement (mean of CPU, memory, GPU); shares go to the emptiest GPU",
        published: false,
    },
];

/// A policy name that is not in the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy {name:?}; known policies: {known}")]
pub struct UnknownPolicy {
    /// The name given.
    pub name: String,
    /// The known names, comma separated.
    pub known: String,
}

impl Policy {
    /// The policy called `name`.
    pub fn from_name(name: &str) -> Result<Policy, UnknownPolicy> {
        POLICIES
            .iter()
            .find(|p| p.name == name.trim())
            .map(|p| p.policy)
            .ok_or_else(|| UnknownPolicy {
                name: name.to_string(),
                known: POLICIES
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The registry row of this policy.
    pub fn info(self) -> &'static PolicyInfo {
        POLICIES
            .iter()
            .find(|p| p.policy == self)
            .expect("every policy has a registry row")
    }

    /// The name users type.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// How the engine selects a node under this policy.
    pub fn selection(self) -> Selection {
        match self {
            Policy::Random => Selection::Random,
            Policy::RoundRobin => Selection::RoundRobin,
            _ => Selection::MaxScore,
        }
    }

    /// How a sharing pod's GPU is chosen on the selected node (FGD chooses by its own score).
    pub fn share_rule(self) -> Option<ShareRule> {
        match self {
            Policy::Fgd | Policy::Gantry => None,
            Policy::Random => Some(ShareRule::Random),
            Policy::LeastUtilized | Policy::Spread => Some(ShareRule::MostFree),
            _ => Some(ShareRule::BestFit),
        }
    }

    /// The score of `pod` on a feasible `node` (higher is better).
    pub fn score(self, node: &Node, pod: &Pod, ctx: &ScoreContext<'_>) -> f64 {
        match self {
            Policy::Random | Policy::RoundRobin => 0.0,
            Policy::DotProd => dotprod::score(node, pod, ctx),
            Policy::GpuClustering => gpuclustering::score(node, pod, ctx),
            Policy::GpuPacking => gpupacking::score(node, pod, ctx),
            Policy::BestFitPublished => bestfit::score(node, pod, ctx),
            Policy::Fgd => fgd::score(node, pod, ctx),
            Policy::Gantry => gantry::score(node, pod, ctx),
            Policy::LeastUtilized => least_utilized::score(node, pod, ctx),
            Policy::BestFit => best_fit::score(node, pod, ctx),
            Policy::Priority => priority::score(node, pod, ctx),
            Policy::Binpack => binpack::score(node, pod, ctx),
            Policy::Spread => spread::score(node, pod, ctx),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::from_name(s)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small hand-built clusters for policy tests.
    use super::ScoreContext;
    use crate::cluster::Cluster;
    use crate::frag::TargetWorkload;
    use crate::model::{GpuDemand, GpuModels, ModelSet, NodeSpec, Pod};

    /// A cluster of one-model nodes: (CPU milli, free milli per GPU); memory 65536 MiB each.
    pub fn cluster_of(nodes: &[(u64, &[u16])]) -> Cluster {
        let mut models = GpuModels::default();
        let model = models.intern("G").unwrap();
        let specs = nodes
            .iter()
            .enumerate()
            .map(|(i, (cpu, gpus))| NodeSpec {
                name: format!("n{i}"),
                cpu_milli: *cpu,
                memory_mib: 65536,
                gpu_count: gpus.len() as u8,
                gpu_model: Some(model),
            })
            .collect();
        let mut cluster = Cluster::new(models, specs);
        for (i, (_, gpus)) in nodes.iter().enumerate() {
            for (g, &free) in gpus.iter().enumerate() {
                if free < 1000 {
                    let used = Pod {
                        cpu_milli: 0,
                        memory_mib: 0,
                        gpu: GpuDemand::Share(1000 - free),
                        models: ModelSet::ANY,
                    };
                    cluster
                        .commit(i, &used, crate::model::GpuSet::one(g))
                        .unwrap();
                }
            }
        }
        cluster
    }

    /// Context with an empty target workload and the cluster's largest capacities.
    pub fn ctx_for(cluster: &Cluster) -> ScoreContext<'static> {
        static EMPTY: TargetWorkload = TargetWorkload { shapes: Vec::new() };
        static NO_HISTORY: std::sync::OnceLock<super::gantry::GantryInputs> =
            std::sync::OnceLock::new();
        ScoreContext {
            target: &EMPTY,
            max_cpu_milli: cluster.max_cpu_milli(),
            max_gpu_milli: cluster.max_gpu_milli(),
            gantry: NO_HISTORY.get_or_init(Default::default),
        }
    }

    /// A sharing pod.
    pub fn share_pod(cpu: u64, milli: u16) -> Pod {
        Pod {
            cpu_milli: cpu,
            memory_mib: 0,
            gpu: GpuDemand::Share(milli),
            models: ModelSet::ANY,
        }
    }

    /// A pod of `count` whole GPUs (0 = CPU-only).
    pub fn whole_pod(cpu: u64, count: u8) -> Pod {
        let gpu = if count == 0 {
            GpuDemand::None
        } else {
            GpuDemand::Whole(count)
        };
        Pod {
            cpu_milli: cpu,
            memory_mib: 0,
            gpu,
            models: ModelSet::ANY,
        }
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<&str> = super::POLICIES.iter().map(|p| p.name).collect();
        for p in super::POLICIES {
            assert_eq!(super::Policy::from_name(p.name).unwrap(), p.policy);
            assert_eq!(p.policy.name(), p.name);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), super::POLICIES.len());
        assert!(
            super::Policy::from_name("nope")
                .unwrap_err()
                .to_string()
                .contains("fgd")
        );
    }
}

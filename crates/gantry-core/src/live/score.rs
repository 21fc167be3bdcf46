//! The score stage: the strategy's score of the node (the engine's [`Policy::score`] on the node's
//! engine view), plus the workload's preferred-affinity weights, plus soft pool and taint preferences.
//!
//! Strategy scores are on their own scales (the `gantry` and `fgd` classes run 0..100); a preferred term
//! adds its weight (1..100) when all its expressions match, so a strong preference can outweigh a
//! fragmentation class. `spot: prefer` adds [`SPOT_PREFER_BONUS`] on spot nodes; an untolerated
//! `PreferNoSchedule` taint subtracts [`PREFER_NO_SCHEDULE_PENALTY`].

use super::cluster::LiveNode;
use super::filter::{label_matches, tolerates};
use super::workload::Workload;
use crate::Policy;
use crate::policies::ScoreContext;
use crate::spec::{Pool, SpotPolicy, TaintEffect};

/// Added on spot nodes for a workload whose spot policy is `prefer`.
pub const SPOT_PREFER_BONUS: f64 = 50.0;

/// Subtracted per untolerated `PreferNoSchedule` taint.
pub const PREFER_NO_SCHEDULE_PENALTY: f64 = 50.0;

/// Sum of the weights of the preferred terms whose expressions all match the node.
pub fn preferred_weight(node: &LiveNode, w: &Workload) -> i64 {
    w.preferred
        .iter()
        .filter(|t| {
            t.match_expressions
                .iter()
                .all(|e| label_matches(&node.labels, e))
        })
        .map(|t| t.weight)
        .sum()
}

/// Pool and taint preferences (see the module doc).
pub fn soft_terms(node: &LiveNode, w: &Workload) -> f64 {
    let mut s = 0.0;
    if w.spot == SpotPolicy::Prefer && node.pool == Pool::Spot {
        s += SPOT_PREFER_BONUS;
    }
    for taint in &node.taints {
        if taint.effect == TaintEffect::PreferNoSchedule
            && !w.tolerations.iter().any(|t| tolerates(t, taint))
        {
            s -= PREFER_NO_SCHEDULE_PENALTY;
        }
    }
    s
}

/// The node's score for one replica of `w` under `policy`: strategy + preferred weights + soft terms.
pub fn score(node: &LiveNode, w: &Workload, policy: Policy, ctx: &ScoreContext<'_>) -> f64 {
    let strategy = policy.score(&node.engine_view(), &w.pod(), ctx);
    strategy + preferred_weight(node, w) as f64 + soft_terms(node, w)
}

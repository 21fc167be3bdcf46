//! `priority`: strict node priority order, first fit: the first feasible node in the cluster's order wins.
//!
//! Every node scores 0; the engine's tie-break (earliest node) makes it first fit.

use super::ScoreContext;
use crate::model::{Node, Pod};

/// Constant score: order alone decides.
pub fn score(_node: &Node, _pod: &Pod, _ctx: &ScoreContext<'_>) -> f64 {
    0.0
}

#[cfg(test)]
mod tests {
    use crate::engine::Engine;
    use crate::policies::Policy;
    use crate::policies::testing::*;
    use crate::rng::Rng;

    #[test]
    fn first_feasible_node_in_order() {
        let cluster = cluster_of(&[(1000, &[1000]), (8000, &[1000]), (8000, &[1000; 8])]);
        let mut engine = Engine::new(Policy::Priority, Default::default());
        let placed = engine
            .schedule(&cluster, &share_pod(2000, 100), &mut Rng::new(0))
            .unwrap();
        assert_eq!(placed.node, 1);
    }
}

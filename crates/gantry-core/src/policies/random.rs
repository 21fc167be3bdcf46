//! `random`: any feasible node, uniformly; a sharing pod takes a uniformly random fitting GPU.
//!
//! The engine draws the node itself (see `engine::select`); there is no score.

#[cfg(test)]
mod tests {
    use crate::policies::Policy;
    use crate::policies::testing::*;

    #[test]
    fn picks_every_feasible_node_sometimes_and_never_an_infeasible_one() {
        // Node 1 is too small for the pod; nodes 0 and 2 are equally likely.
        let mut cluster = cluster_of(&[(8000, &[1000, 1000]), (1000, &[1000]), (8000, &[1000])]);
        let pod = share_pod(2000, 500);
        let mut hits = [0u32; 3];
        let mut engine = crate::engine::Engine::new(Policy::Random, Default::default());
        let mut rng = crate::rng::Rng::new(3);
        for _ in 0..400 {
            let placed = engine.schedule(&cluster, &pod, &mut rng).unwrap();
            hits[placed.node] += 1;
        }
        assert_eq!(hits[1], 0);
        assert!(hits[0] > 150 && hits[2] > 150, "{hits:?}");
        // The cluster was never changed by schedule().
        cluster
            .commit(0, &pod, crate::model::GpuSet::one(0))
            .unwrap();
    }
}

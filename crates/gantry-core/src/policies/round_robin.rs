//! `round_robin`: rotate through the nodes: the first feasible node after the last one chosen.
//!
//! The engine keeps the cursor; score = -(distance from the cursor in node order).

#[cfg(test)]
mod tests {
    use crate::engine::Engine;
    use crate::policies::Policy;
    use crate::policies::testing::*;
    use crate::rng::Rng;

    #[test]
    fn rotates_and_skips_infeasible_nodes() {
        let mut cluster = cluster_of(&[
            (8000, &[1000]),
            (1000, &[1000]),
            (8000, &[1000]),
            (8000, &[1000]),
        ]);
        let mut engine = Engine::new(Policy::RoundRobin, Default::default());
        let mut rng = Rng::new(0);
        let pod = share_pod(2000, 100);
        let mut order = Vec::new();
        for _ in 0..4 {
            let p = engine.place(&mut cluster, &pod, &mut rng).unwrap();
            order.push(p.node);
        }
        assert_eq!(order, vec![0, 2, 3, 0]);
    }
}

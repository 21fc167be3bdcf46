//! Invariants of the engine over random clusters and pods, for every policy.

use gantry_core::filter::filter;
use gantry_core::frag::TargetWorkload;
use gantry_core::model::{GPU_MILLI, GpuDemand, GpuModels, ModelSet, NodeSpec, Pod};
use gantry_core::policies::POLICIES;
use gantry_core::{Cluster, Engine, EngineConfig, Rng};

fn random_cluster(rng: &mut Rng) -> Cluster {
    let mut models = GpuModels::default();
    let ids: Vec<_> = ["A", "B", "C"]
        .iter()
        .map(|m| models.intern(m).unwrap())
        .collect();
    let n = 3 + rng.below(20) as usize;
    let specs = (0..n)
        .map(|i| {
            let gpus = [0u8, 1, 2, 4, 8][rng.below(5) as usize];
            NodeSpec {
                name: format!("n{i}"),
                cpu_milli: 4000 * (1 + rng.below(32)),
                memory_mib: 8192 * (1 + rng.below(64)),
                gpu_count: gpus,
                gpu_model: (gpus > 0).then(|| ids[rng.below(3) as usize]),
            }
        })
        .collect();
    Cluster::new(models, specs)
}

fn random_pod(rng: &mut Rng) -> Pod {
    let gpu = match rng.below(10) {
        0 => GpuDemand::None,
        1..=4 => GpuDemand::Share(1 + rng.below(999) as u16),
        _ => GpuDemand::Whole([1u8, 1, 1, 2, 4, 8][rng.below(6) as usize]),
    };
    let mut models = ModelSet::ANY;
    if rng.below(4) == 0 {
        models.insert(gantry_core::ModelId(rng.below(3) as u8));
    }
    Pod {
        cpu_milli: 500 * (1 + rng.below(32)),
        memory_mib: 1024 * (1 + rng.below(64)),
        gpu,
        models,
    }
}

#[test]
fn no_policy_ever_over_allocates_or_breaks_a_constraint() {
    for seed in 0..40u64 {
        let mut rng = Rng::new(seed);
        let base = random_cluster(&mut rng);
        let pods: Vec<Pod> = (0..300).map(|_| random_pod(&mut rng)).collect();
        let target = TargetWorkload::from_pods(&pods, 95);
        for info in POLICIES {
            let mut cluster = base.clone();
            let mut engine = Engine::new(
                info.policy,
                EngineConfig {
                    target: target.clone(),
                    gantry: gantry_inputs(),
                },
            );
            let mut rng = Rng::new(seed ^ 0xABCD);
            let mut placed_cpu = vec![0u64; cluster.nodes().len()];
            for pod in &pods {
                let before = cluster.nodes().to_vec();
                match engine.place(&mut cluster, pod, &mut rng) {
                    Ok(p) => {
                        let node = &before[p.node];
                        assert!(
                            filter(node, pod).is_ok(),
                            "{}: placed on a node the filter rejects",
                            info.name
                        );
                        match pod.gpu {
                            GpuDemand::None => assert!(p.gpus.is_empty()),
                            GpuDemand::Share(m) => {
                                assert_eq!(p.gpus.len(), 1, "{}: a share spans one GPU", info.name);
                                let g = p.gpus.iter().next().unwrap();
                                assert!(node.gpus()[g] >= m);
                            }
                            GpuDemand::Whole(k) => {
                                assert_eq!(p.gpus.len(), u32::from(k));
                                for g in p.gpus.iter() {
                                    assert_eq!(
                                        u32::from(node.gpus()[g]),
                                        GPU_MILLI,
                                        "{}: whole GPUs only",
                                        info.name
                                    );
                                }
                            }
                        }
                        if pod.gpu != GpuDemand::None {
                            assert!(
                                pod.models.allows(node.spec.gpu_model.unwrap()),
                                "{}: model constraint",
                                info.name
                            );
                        }
                        placed_cpu[p.node] += pod.cpu_milli;
                    }
                    Err(gantry_core::engine::PlaceError::Unschedulable(u)) => {
                        assert!(
                            before.iter().all(|n| filter(n, pod).is_err()),
                            "{}: said unschedulable but a node fits",
                            info.name
                        );
                        let rejected: u32 = u.rejections.iter().map(|r| r.1).sum();
                        assert_eq!(rejected as usize, before.len());
                    }
                    Err(e) => panic!("{}: {e}", info.name),
                }
                for (i, n) in cluster.nodes().iter().enumerate() {
                    assert!(n.cpu_free <= n.spec.cpu_milli && n.memory_free <= n.spec.memory_mib);
                    assert!(n.gpus().iter().all(|&f| u32::from(f) <= GPU_MILLI));
                    assert_eq!(n.spec.cpu_milli - n.cpu_free, placed_cpu[i]);
                }
            }
        }
    }
}

#[test]
fn same_seed_same_decisions() {
    let run = |seed: u64| {
        let mut rng = Rng::new(seed);
        let mut cluster = random_cluster(&mut rng);
        let pods: Vec<Pod> = (0..200).map(|_| random_pod(&mut rng)).collect();
        let target = TargetWorkload::from_pods(&pods, 95);
        let mut out = Vec::new();
        for info in POLICIES {
            let mut engine = Engine::new(
                info.policy,
                EngineConfig {
                    target: target.clone(),
                    gantry: gantry_inputs(),
                },
            );
            for pod in &pods {
                out.push(
                    engine
                        .place(&mut cluster, pod, &mut rng)
                        .ok()
                        .map(|p| (p.node, p.gpus, p.score.to_bits())),
                );
            }
        }
        out
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn commit_refuses_what_does_not_fit_and_changes_nothing() {
    let mut models = GpuModels::default();
    let a = models.intern("A").unwrap();
    let spec = NodeSpec {
        name: "n".into(),
        cpu_milli: 4000,
        memory_mib: 1024,
        gpu_count: 2,
        gpu_model: Some(a),
    };
    let mut cluster = Cluster::new(models, vec![spec]);
    let before = cluster.nodes().to_vec();
    let big = Pod {
        cpu_milli: 8000,
        memory_mib: 1,
        gpu: GpuDemand::None,
        models: ModelSet::ANY,
    };
    assert!(
        cluster
            .commit(0, &big, gantry_core::model::GpuSet(0))
            .is_err()
    );
    let share = Pod {
        cpu_milli: 1,
        memory_mib: 1,
        gpu: GpuDemand::Share(600),
        models: ModelSet::ANY,
    };
    cluster
        .commit(0, &share, gantry_core::model::GpuSet::one(0))
        .unwrap();
    // A second 600 share on the same GPU would over-allocate it.
    let after_one = cluster.nodes().to_vec();
    assert!(
        cluster
            .commit(0, &share, gantry_core::model::GpuSet::one(0))
            .is_err()
    );
    assert_eq!(cluster.nodes(), &after_one[..]);
    assert_ne!(cluster.nodes(), &before[..]);
    assert!(
        cluster
            .commit(3, &share, gantry_core::model::GpuSet::one(0))
            .is_err()
    );
}

/// Share prices and a CPU ratio like those of openb, so `gantry` runs with every term active.
fn gantry_inputs() -> gantry_core::policies::gantry::GantryInputs {
    gantry_core::policies::gantry::GantryInputs::new(
        &[(250, 0.25), (300, 0.3333), (500, 0.5), (800, 1.0)],
        10.0,
    )
}

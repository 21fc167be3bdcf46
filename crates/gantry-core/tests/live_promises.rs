//! The platform engineer's promises, as scenarios with hand-computed outcomes: each team gets its
//! guarantee and borrows when others are idle, training outranks batch, inference is never starved, a
//! 4-GPU job never half-starts; plus backfill, NVLink locality, MIG slice choice and explanations.

mod live;

use gantry_core::live::order::{AgingRule, effective_priority};
use gantry_core::spec::{LabelExpression, LabelOperator, Taint, TaintEffect};
use live::*;

#[test]
fn each_team_gets_its_guarantee_and_borrows_when_others_are_idle() {
    // 16 GPUs; teams a and b are each guaranteed 8 in cohort c.
    let spec = cluster(
        vec![
            gpu_node("n0", "H100-80GB", 8),
            gpu_node("n1", "H100-80GB", 8),
        ],
        vec![
            queue("a", Some("c"), 8, None),
            queue("b", Some("c"), 8, None),
        ],
    );
    let mut h = Harness::new(spec);
    // b is idle: a's 16 one-GPU batch jobs all start, 8 on its guarantee and 8 borrowed.
    let a: Vec<_> = (0..16)
        .map(|i| h.submit(&job(&format!("a{i}"), LOW, "a", 1), 0, None))
        .collect();
    let out = h.cycle(0);
    assert_eq!(out.started.len(), 16);
    let borrowed: Vec<_> = a
        .iter()
        .filter(|id| h.s.running()[id].reclaimable)
        .collect();
    assert_eq!(borrowed, a[8..].iter().collect::<Vec<_>>());
    // b asks for its guarantee (at training priority): exactly a's 8 borrowed jobs are reclaimed.
    let b: Vec<_> = (0..8)
        .map(|i| h.submit(&job(&format!("b{i}"), HIGH, "b", 1), 10, None))
        .collect();
    let out = h.cycle(10);
    assert_eq!(out.started, b);
    let mut victims: Vec<_> = out.preempted.iter().map(|(v, _)| *v).collect();
    victims.sort_unstable();
    assert_eq!(victims, a[8..].to_vec());
    let usage = |q: &str| {
        h.s.queues()
            .list
            .iter()
            .find(|x| x.name == q)
            .unwrap()
            .usage[0]
    };
    assert_eq!((usage("a"), usage("b")), (8000, 8000));
    assert!(h.s.quota_violations().is_empty());
}

#[test]
fn equal_priority_never_preempts() {
    let spec = cluster(vec![gpu_node("n0", "H100-80GB", 2)], Vec::new());
    let mut h = Harness::new(spec);
    h.submit(&job("x", LOW, "default", 2), 0, None);
    h.cycle(0);
    let y = h.submit(&job("y", LOW, "default", 1), 1, None);
    let out = h.cycle(1);
    assert!(out.started.is_empty() && out.preempted.is_empty());
    assert!(
        h.s.reason(y).unwrap().contains("1 node(s)"),
        "{:?}",
        h.s.reason(y)
    );
}

#[test]
fn training_outranks_batch_and_evicts_only_what_it_needs() {
    let spec = cluster(vec![gpu_node("n0", "H100-80GB", 8)], Vec::new());
    let mut h = Harness::new(spec);
    // Eight 1-GPU batch jobs, started at t = 0..7 on GPUs 0..7.
    let batch: Vec<_> = (0..8u64)
        .map(|t| {
            let id = h.submit(&job(&format!("b{t}"), LOW, "default", 1), t, None);
            h.cycle(t);
            id
        })
        .collect();
    assert_eq!(h.s.running().len(), 8);
    // A 4-GPU training job: the four most recently started (least progress lost) give way.
    let train = h.submit(&job("train", HIGH, "default", 4), 100, None);
    let out = h.cycle(100);
    assert_eq!(out.started, vec![train]);
    let mut victims: Vec<_> = out.preempted.iter().map(|(v, _)| *v).collect();
    victims.sort_unstable();
    assert_eq!(victims, batch[4..].to_vec());
    assert_eq!(h.devices(train), ["n0:4", "n0:5", "n0:6", "n0:7"]);
    // The victims wait (nothing is free) and are pending again with a reason.
    assert!(batch[4..].iter().all(|v| h.s.pending().contains(v)));
}

#[test]
fn inference_is_never_starved() {
    let spec = cluster(vec![gpu_node("n0", "A100-80GB", 2)], Vec::new());
    let mut h = Harness::new(spec);
    h.submit(&job("b0", LOW, "default", 1), 0, None);
    h.submit(&job("b1", LOW, "default", 1), 0, None);
    h.cycle(0);
    let mut serve = job("serve", MEDIUM, "default", 1);
    if let Some(g) = serve.resources.gpu.as_mut() {
        g.count = None;
        g.share = Some(500);
    }
    let inf = h.submit(&serve, 5, None);
    let out = h.cycle(5);
    assert_eq!(out.started, vec![inf]);
    assert_eq!(out.preempted.len(), 1);
    // A stream of batch work keeps arriving; it never displaces the inference workload.
    for t in 6..50 {
        h.submit(&job(&format!("more{t}"), LOW, "default", 1), t, None);
        let out = h.cycle(t);
        assert!(out.preempted.iter().all(|(v, _)| *v != inf));
        assert!(h.s.running().contains_key(&inf));
    }
    // Aging lifts waiting batch work within its class but never to the next class (500).
    let rule = AgingRule::default();
    assert_eq!(effective_priority(100, Some(500), 600, rule), 110);
    assert_eq!(effective_priority(100, Some(500), 3600 * 100, rule), 499);
}

#[test]
fn a_four_gpu_gang_never_half_starts() {
    let spec = cluster(
        vec![
            gpu_node("n0", "H100-80GB", 4),
            gpu_node("n1", "H100-80GB", 4),
        ],
        Vec::new(),
    );
    let mut h = Harness::new(spec);
    let mut small = job("small", HIGH, "default", 1);
    small.preemptible = false;
    let small = h.submit(&small, 0, None);
    h.cycle(0);
    let mut gang = job("gang", HIGH, "default", 4);
    gang.replicas = 2;
    gang.gang_minimum = Some(2);
    let g = h.submit(&gang, 1, None);
    let out = h.cycle(1);
    assert!(out.started.is_empty());
    // Not one replica holds a GPU: only `small`'s GPU is allocated.
    assert_eq!(h.s.cluster().gpu_allocated_milli(), 1000);
    assert!(h.s.reason(g).is_some());
    h.s.finish(small).unwrap();
    let out = h.cycle(2);
    assert_eq!(out.started, vec![g]);
    assert_eq!(
        h.devices(g),
        [
            "n0:0", "n0:1", "n0:2", "n0:3", "n1:0", "n1:1", "n1:2", "n1:3"
        ]
    );
}

#[test]
fn backfill_never_delays_the_reserved_head_of_line() {
    let spec = cluster(vec![gpu_node("n0", "H100-80GB", 4)], Vec::new());
    let mut h = Harness::new(spec);
    h.submit(&job("a", LOW, "default", 2), 0, Some(100));
    h.cycle(0);
    // B needs all 4 GPUs: reserved for t = 100 when A ends. C ends at 51, before; D at 501, after.
    let b = h.submit(&job("b", LOW, "default", 4), 1, Some(100));
    let c = h.submit(&job("c", LOW, "default", 1), 1, Some(50));
    let d = h.submit(&job("d", LOW, "default", 1), 1, Some(500));
    let out = h.cycle(1);
    let r = out.reservation.expect("head-of-line reservation");
    assert_eq!((r.workload, r.start), (b, 100));
    assert_eq!(out.started, vec![c]);
    assert!(h.s.pending().contains(&d));
    assert!(
        h.s.reason(d).unwrap().contains("reserved"),
        "{:?}",
        h.s.reason(d)
    );
}

#[test]
fn multi_gpu_replicas_stay_inside_one_nvlink_group() {
    let mut n = gpu_node("n0", "H100-80GB", 8);
    if let Some(g) = n.gpus.as_mut() {
        g.nvlink_groups = vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]];
    }
    let mut h = Harness::new(cluster(vec![n], Vec::new()));
    let one = h.submit(&job("one", LOW, "default", 1), 0, None);
    h.cycle(0);
    assert_eq!(h.devices(one), ["n0:0"]);
    let mut four = job("four", LOW, "default", 4);
    four.placement.topology = gantry_core::spec::Topology::Nvlink;
    let four = h.submit(&four, 1, None);
    let three = h.submit(&job("three", LOW, "default", 3), 1, None);
    h.cycle(1);
    assert_eq!(h.devices(four), ["n0:4", "n0:5", "n0:6", "n0:7"]);
    assert_eq!(h.devices(three), ["n0:1", "n0:2", "n0:3"]);
}

#[test]
fn mig_slices_keep_larger_profiles_placeable() {
    let mut h = Harness::new(cluster(vec![mig_node("m0", 2)], Vec::new()));
    // A 1g.10gb on an empty A100 80GB goes to slice 6: slices 0-5 still take a 4g.40gb.
    let a = h.submit(&mig_job("a", "1g.10gb"), 0, None);
    h.cycle(0);
    assert_eq!(h.devices(a), ["m0:0:1g.10gb@6"]);
    // A 4g.40gb then fits beside it (start 0), on the same GPU.
    let b = h.submit(&mig_job("b", "4g.40gb"), 1, None);
    h.cycle(1);
    assert_eq!(h.devices(b), ["m0:0:4g.40gb@0"]);
    // A 7g.80gb still has the untouched second GPU.
    let c = h.submit(&mig_job("c", "7g.80gb"), 2, None);
    h.cycle(2);
    assert_eq!(h.devices(c), ["m0:1:7g.80gb@0"]);
    // Nothing else fits a 3g.40gb now, and the reason names the MIG filter.
    let d = h.submit(&mig_job("d", "3g.40gb"), 3, None);
    h.cycle(3);
    assert!(
        h.s.reason(d)
            .unwrap()
            .contains("no free slices for 3g.40gb")
    );
}

#[test]
fn rejections_name_the_filter_and_count_nodes() {
    let mut tainted = gpu_node("t0", "H100-80GB", 8);
    tainted.taints = vec![Taint {
        key: "dedicated".into(),
        value: Some("training".into()),
        effect: TaintEffect::NoSchedule,
    }];
    let mut zoned = gpu_node("z0", "H100-80GB", 8);
    zoned.labels.insert("zone".into(), "b".into());
    let mut h = Harness::new(cluster(
        vec![tainted, zoned, gpu_node("z1", "H100-80GB", 8)],
        Vec::new(),
    ));
    let mut w = job("w", LOW, "default", 1);
    w.placement.affinity.required = vec![LabelExpression {
        key: "zone".into(),
        operator: LabelOperator::In,
        values: vec!["a".into()],
    }];
    let id = h.submit(&w, 0, None);
    h.cycle(0);
    let reason = h.s.reason(id).unwrap();
    assert_eq!(
        reason,
        "0/3 nodes can take it: 1 node(s): taint dedicated=training:NoSchedule not tolerated; \
         2 node(s): required affinity on \"zone\" (In) does not match"
    );
}

#[test]
fn preferences_pools_health_and_exclusive_use() {
    let mut spot = gpu_node("spot", "H100-80GB", 8);
    spot.pool = gantry_core::spec::Pool::Spot;
    let plain = gpu_node("plain", "H100-80GB", 8);
    let mut fast = gpu_node("fast", "H100-80GB", 8);
    fast.labels.insert("network".into(), "infiniband".into());
    let mut h = Harness::new(cluster(vec![spot, plain, fast], Vec::new()));
    // Preferred affinity (weight 80) outweighs node order: "fast" rather than "plain".
    let mut pref = job("pref", LOW, "default", 1);
    pref.placement.affinity.preferred = vec![gantry_core::spec::PreferredTerm {
        weight: 80,
        match_expressions: vec![LabelExpression {
            key: "network".into(),
            operator: LabelOperator::In,
            values: vec!["infiniband".into()],
        }],
    }];
    let pref = h.submit(&pref, 0, None);
    // Spot policy `never` (the default) keeps work off the spot node; `require` puts it there.
    let mut on_spot = job("on-spot", LOW, "default", 1);
    on_spot.spot = gantry_core::spec::SpotPolicy::Require;
    let on_spot = h.submit(&on_spot, 0, None);
    // Exclusive: the whole node, and nothing else joins it.
    let mut excl = job("excl", LOW, "default", 2);
    if let Some(g) = excl.resources.gpu.as_mut() {
        g.exclusive = true;
    }
    let excl = h.submit(&excl, 0, None);
    h.cycle(0);
    assert_eq!(h.devices(pref), ["fast:0"]);
    assert_eq!(h.devices(on_spot), ["spot:0"]);
    assert_eq!(h.devices(excl), ["plain:0", "plain:1"]);
    let other = h.submit(&job("other", LOW, "default", 1), 1, None);
    h.cycle(1);
    assert_eq!(h.devices(other), ["fast:1"], "not beside the exclusive job");
    // An unhealthy node takes nothing new, and the reason says so.
    h.s.cluster_mut().set_healthy(2, false).unwrap();
    let late = h.submit(&job("late", LOW, "default", 4), 2, None);
    h.cycle(2);
    let reason = h.s.reason(late).unwrap();
    assert!(reason.contains("1 node(s): node unhealthy"), "{reason}");
    assert!(
        reason.contains("1 node(s): exclusive use conflict"),
        "{reason}"
    );
    assert!(
        reason.contains("1 node(s): pool Spot not allowed"),
        "{reason}"
    );
}

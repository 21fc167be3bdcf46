//! Property tests of the live scheduler over random clusters and workloads (the project's own
//! deterministic RNG; every case is reproducible from its seed). After every cycle:
//! - nothing is over-allocated, the cluster's free capacity equals capacity minus what running workloads
//!   hold, and MIG instances never overlap;
//! - gangs are atomic: a running workload holds between its gang minimum and its replicas, a pending one
//!   nothing;
//! - no queue exceeds guarantee + borrowing limit;
//! - preemption only evicts preemptible, strictly lower-priority work, and (for one-replica preemptors
//!   without quotas) every victim was needed;
//! - no pending workload (one replica or gang minimum 1) could start now on free capacity without
//!   delaying the head-of-line reservation, and nothing started after the reservation delays it.

mod live;

use gantry_core::Rng;
use gantry_core::live::admit::Admission;
use gantry_core::live::backfill::blocked_nodes;
use gantry_core::live::gang::place_gang;
use gantry_core::live::preempt::Running;
use gantry_core::live::select::Selector;
use gantry_core::live::{Device, LiveCluster, Scheduler, SchedulerConfig, Workload, WorkloadId};
use gantry_core::spec::{ClusterSpec, SpotPolicy, Topology, WorkloadSpec};
use live::*;
use std::collections::{BTreeMap, BTreeSet};

fn random_cluster(rng: &mut Rng, with_queues: bool) -> ClusterSpec {
    let mut nodes = Vec::new();
    for i in 0..2 + rng.below(5) {
        let name = format!("n{i}");
        let mut n = match rng.below(5) {
            0 => mig_node(&name, 1 + rng.below(2) as i64),
            1 => {
                let mut n = gpu_node(&name, "A100-40GB", 8);
                n.gpus.as_mut().unwrap().nvlink_groups = vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]];
                n
            }
            2 => gpu_node(&name, "H100-80GB", [2, 4, 8][rng.below(3) as usize]),
            3 => gpu_node(&name, "H100-80GB", 1),
            _ => {
                let mut n = gpu_node(&name, "A100-40GB", 4);
                n.gpus = None;
                n
            }
        };
        n.cpu = gantry_core::spec::MilliQuantity::from(["16", "32", "64"][rng.below(3) as usize]);
        nodes.push(n);
    }
    let gpus: u64 = nodes
        .iter()
        .filter_map(|n| n.gpus.as_ref())
        .map(|g| g.count as u64)
        .sum();
    let queues = if with_queues {
        vec![
            queue("a", Some("c"), gpus / 3, Some(gpus / 4 + 1)),
            queue("b", Some("c"), gpus / 3, None),
            queue("default", None, gpus / 4, None),
        ]
    } else {
        Vec::new()
    };
    cluster(nodes, queues)
}

fn random_workload(rng: &mut Rng, i: usize) -> WorkloadSpec {
    let class = [HIGH, MEDIUM, LOW][rng.below(3) as usize];
    let q = ["a", "b", "default"][rng.below(3) as usize];
    let mut w = match rng.below(6) {
        0 => mig_job(
            "x",
            ["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"][rng.below(5) as usize],
        ),
        1 => {
            let mut w = job("x", class, q, 1);
            let g = w.resources.gpu.as_mut().unwrap();
            g.count = None;
            g.share = Some(100 + 100 * rng.below(9) as i64);
            w
        }
        2 => {
            let mut w = job("x", class, q, 1);
            w.resources.gpu = None;
            w
        }
        _ => job("x", class, q, [1, 1, 2, 4, 8][rng.below(5) as usize]),
    };
    w.name = format!("w{i}");
    w.priority_class = Some(class.to_string());
    w.queue = Some(q.to_string());
    w.resources.cpu = Some(gantry_core::spec::MilliQuantity::from(
        ["1", "4", "8"][rng.below(3) as usize],
    ));
    w.replicas = 1 + rng.below(3) as i64;
    w.gang_minimum = Some(1 + rng.below(w.replicas as u64) as i64);
    w.preemptible = rng.below(4) != 0;
    if rng.below(4) == 0 {
        w.placement.topology = Topology::Nvlink;
    }
    if rng.below(5) == 0 {
        w.placement.topology = Topology::SameNode;
    }
    w.spot = SpotPolicy::Never;
    w
}

/// Recomputes every node's allocation from the running workloads and compares with the cluster.
fn check_allocations(s: &Scheduler) {
    let cluster = s.cluster();
    let mut cpu: BTreeMap<u32, u64> = BTreeMap::new();
    let mut milli: BTreeMap<(u32, u8), u32> = BTreeMap::new();
    let mut slices: BTreeMap<(u32, u8), u8> = BTreeMap::new();
    for r in s.running().values() {
        let w = s.workload(r.id).unwrap();
        let n = r.placements.len() as u32;
        assert!(
            n >= w.gang_minimum && n <= w.replicas,
            "{}: {n} replicas placed, gang {}..={}",
            w.name,
            w.gang_minimum,
            w.replicas
        );
        if w.topology == Topology::SameNode {
            let nodes: BTreeSet<u32> = r.placements.iter().map(|p| p.node).collect();
            assert_eq!(nodes.len(), 1, "{}: same-node replicas split", w.name);
        }
        for p in &r.placements {
            *cpu.entry(p.node).or_default() += p.cpu_milli;
            for d in &p.devices {
                match *d {
                    Device::Gpu {
                        index, milli: m, ..
                    } => {
                        *milli.entry((p.node, index)).or_default() += u32::from(m);
                    }
                    Device::Mig {
                        index,
                        profile,
                        start,
                    } => {
                        let mask = profile.mask_at(start).0;
                        let used = slices.entry((p.node, index)).or_default();
                        assert_eq!(*used & mask, 0, "MIG instances overlap");
                        *used |= mask;
                    }
                }
            }
        }
    }
    for (i, node) in cluster.nodes().iter().enumerate() {
        let i = i as u32;
        let used = cpu.get(&i).copied().unwrap_or(0);
        assert!(
            used <= node.cpu_milli,
            "cpu over-allocated on {}",
            node.name
        );
        assert_eq!(
            node.cpu_free,
            node.cpu_milli - used,
            "cpu books on {}",
            node.name
        );
        for (g, gpu) in node.gpus.iter().enumerate() {
            let m = milli.get(&(i, g as u8)).copied().unwrap_or(0);
            assert!(m <= 1000, "GPU over-allocated on {}", node.name);
            assert_eq!(
                u32::from(gpu.free_milli),
                1000 - m,
                "gpu books on {}",
                node.name
            );
            let mask = gpu
                .mig
                .iter()
                .fold(0u8, |acc, x| acc | x.profile.mask_at(x.start).0);
            assert_eq!(mask, slices.get(&(i, g as u8)).copied().unwrap_or(0));
        }
    }
}

/// True when `w` (one replica, or gang minimum 1) could start now without delaying `blocked` nodes.
fn could_start(s: &Scheduler, id: WorkloadId, blocked: &BTreeSet<u32>) -> bool {
    let w = s.workload(id).unwrap();
    let q = s.queue_of(id).unwrap();
    if let Admission::Refused(_) = s.queues().admit(q, w.replica_usage(), &[]) {
        return false;
    }
    let mut scratch: LiveCluster = s.cluster().clone();
    let mut sel = Selector::new(s.config().policy, Default::default(), Default::default());
    let one = Workload {
        gang_minimum: 1,
        replicas: 1,
        ..w.clone()
    };
    let shape = sel.shape(&one);
    place_gang(
        &mut scratch,
        &mut sel,
        &one,
        shape,
        1,
        blocked,
        &mut Rng::new(1),
    )
    .is_ok()
}

/// Runs one random case; returns (started, preempted, reservations) for the coverage check.
fn run_case(seed: u64, with_queues: bool) -> [usize; 3] {
    let mut seen = [0usize; 3];
    let mut rng = Rng::new(seed);
    let spec = random_cluster(&mut rng, with_queues);
    let mut h = Harness::with(spec, SchedulerConfig::default());
    let mut next = 0usize;
    for t in 0..40u64 {
        // Some running work ends.
        let running: Vec<WorkloadId> = h.s.running().keys().copied().collect();
        for id in running {
            if rng.below(5) == 0 {
                h.s.finish(id).unwrap();
            }
        }
        for _ in 0..rng.below(4) {
            let w = random_workload(&mut rng, next);
            next += 1;
            let runtime = (rng.below(3) != 0).then(|| 1 + rng.below(20));
            let Ok(mut r) = Workload::from_spec(&w, &h.spec, &h.s.cluster().models, t) else {
                continue; // e.g. a MIG profile no node offers, or more GPUs than any node has
            };
            r.expected_runtime = runtime;
            h.s.submit(r).unwrap();
        }
        let before: BTreeMap<WorkloadId, Running> = h.s.running().clone();
        let out = h.cycle(t);
        seen[0] += out.started.len();
        seen[1] += out.preempted.len();
        seen[2] += usize::from(out.reservation.is_some());
        check_allocations(&h.s);
        assert!(
            h.s.quota_violations().is_empty(),
            "{:?}",
            h.s.quota_violations()
        );
        // Queue usage, recomputed from what runs, never exceeds guarantee + borrowing limit.
        let mut usage = vec![[0u64; 3]; h.s.queues().list.len()];
        for r in h.s.running().values() {
            for (u, x) in usage[r.queue].iter_mut().zip(r.usage) {
                *u += x;
            }
        }
        for (q, u) in h.s.queues().list.iter().zip(&usage) {
            assert_eq!(&q.usage, u, "seed {seed}: queue {} books", q.name);
            for (d, x) in u.iter().enumerate() {
                assert!(*x <= q.cap(d), "seed {seed}: queue {} over its cap", q.name);
            }
        }
        // Work started after the head-of-line reservation never delays it: off the reserved nodes, or
        // expected to end by the reserved start.
        if let Some(r) = &out.reservation {
            for &id in &out.started[out.started_before_reservation..] {
                let w = h.s.workload(id).unwrap();
                let on_reserved = h.s.running()[&id]
                    .placements
                    .iter()
                    .any(|p| r.nodes.contains(&p.node));
                let ends_in_time = w.expected_end(t).is_some_and(|e| e <= r.start);
                assert!(
                    !on_reserved || ends_in_time,
                    "seed {seed} t {t}: {} delays the reservation of {}",
                    w.name,
                    r.workload
                );
            }
        }
        let preemptors: BTreeSet<WorkloadId> = out.preempted.iter().map(|p| p.1).collect();
        for &(victim, by) in &out.preempted {
            let v = &before[&victim];
            let p = h.s.workload(by).unwrap();
            assert!(
                v.preemptible,
                "seed {seed}: evicted a non-preemptible workload"
            );
            assert!(
                v.priority < p.priority,
                "seed {seed}: victim not strictly lower"
            );
        }
        // Every victim was needed (one one-replica preemptor, no quotas).
        if preemptors.len() == 1 && !with_queues {
            let by = *preemptors.iter().next().unwrap();
            let p = h.s.workload(by).unwrap().clone();
            if p.replicas == 1 {
                for &(victim, _) in &out.preempted {
                    let mut scratch = h.s.cluster().clone();
                    for pl in &h.s.running()[&by].placements {
                        scratch.release(pl).unwrap();
                    }
                    if before[&victim]
                        .placements
                        .iter()
                        .try_for_each(|pl| scratch.allocate(pl))
                        .is_err()
                    {
                        continue;
                    }
                    let mut sel =
                        Selector::new(h.s.config().policy, Default::default(), Default::default());
                    let shape = sel.shape(&p);
                    let fits = place_gang(
                        &mut scratch,
                        &mut sel,
                        &p,
                        shape,
                        1,
                        &BTreeSet::new(),
                        &mut Rng::new(1),
                    );
                    assert!(fits.is_err(), "seed {seed}: victim {victim} was not needed");
                }
            }
        }
        // Nothing that could start now is left waiting (cycles without preemption).
        if out.preempted.is_empty() {
            let empty = BTreeSet::new();
            for &id in h.s.pending() {
                let w = h.s.workload(id).unwrap();
                if w.gang_minimum != 1 && w.replicas != 1 {
                    continue;
                }
                let blocked = match &out.reservation {
                    Some(r) if r.workload != id => blocked_nodes(r, w, t).unwrap_or(&empty),
                    _ => &empty,
                };
                assert!(
                    !could_start(&h.s, id, blocked),
                    "seed {seed} t {t}: {} waits ({:?}) though it fits",
                    w.name,
                    h.s.reason(id)
                );
            }
        }
    }
    seen
}

/// Runs `seeds` and checks that starts, preemptions and reservations all happened.
fn run_cases(seeds: std::ops::Range<u64>, with_queues: bool) {
    let mut total = [0usize; 3];
    for seed in seeds {
        let seen = run_case(seed, with_queues);
        for (t, s) in total.iter_mut().zip(seen) {
            *t += s;
        }
    }
    eprintln!("started, preempted, reservations: {total:?}");
    assert!(total.iter().all(|&x| x > 0), "coverage: {total:?}");
}

#[test]
fn invariants_hold_on_random_clusters_without_queues() {
    run_cases(0..40, false);
}

#[test]
fn invariants_hold_on_random_clusters_with_queues() {
    run_cases(100..140, true);
}

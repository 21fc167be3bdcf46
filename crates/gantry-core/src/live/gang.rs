//! The gang stage: a workload's replicas start together or not at all.
//!
//! Replicas are placed one after another on the live cluster, each decision seeing the ones before it
//! (tentative allocations with an undo log, the cheap equivalent of placing on a scratch copy). If at
//! least the gang minimum fit, they are kept (up to `limit` replicas); otherwise every tentative
//! allocation is undone, so the cluster is exactly as before.

use super::cluster::{LiveCluster, ReplicaPlacement};
use super::devices;
use super::filter::{Explanation, Rejection};
use super::select::Selector;
use super::workload::Workload;
use crate::Rng;
use crate::spec::Topology;
use std::collections::BTreeSet;

/// Places between `w.gang_minimum` and `limit` replicas of `w`, or none; returns what was placed.
pub fn place_gang(
    cluster: &mut LiveCluster,
    sel: &mut Selector,
    w: &Workload,
    shape: u32,
    limit: u32,
    blocked: &BTreeSet<u32>,
    rng: &mut Rng,
) -> Result<Vec<ReplicaPlacement>, Explanation> {
    let mut placed: Vec<ReplicaPlacement> = Vec::new();
    let mut failure: Option<Explanation> = None;
    let kind = w.pod().gpu.kind_index();
    for _ in 0..limit.max(1) {
        let only = match (w.topology, placed.first()) {
            (Topology::SameNode, Some(p)) => Some(p.node),
            _ => None,
        };
        let node = match sel.select(cluster, w, shape, only, blocked, rng) {
            Ok(n) => n,
            Err(why) => {
                failure = Some(why);
                break;
            }
        };
        let devices = cluster
            .nodes()
            .get(node as usize)
            .and_then(|n| devices::pick(n, w));
        let Some(devices) = devices else {
            let mut why = Explanation::default();
            why.add(Rejection::Exclusive, 1);
            failure = Some(why);
            break;
        };
        let p = ReplicaPlacement {
            node,
            cpu_milli: w.cpu_milli,
            memory_mib: w.memory_mib,
            exclusive: w.exclusive && !devices.is_empty(),
            devices,
            kind,
        };
        if cluster.allocate(&p).is_err() {
            failure = Some(Explanation::default());
            break;
        }
        placed.push(p);
    }
    if placed.len() as u32 >= w.gang_minimum.min(limit.max(1)) {
        return Ok(placed);
    }
    undo(cluster, &placed);
    Err(failure.unwrap_or_default())
}

/// Releases tentative allocations, last first.
pub fn undo(cluster: &mut LiveCluster, placed: &[ReplicaPlacement]) {
    for p in placed.iter().rev() {
        // Releasing what was just allocated cannot fail; nothing else to do if it did.
        let _ = cluster.release(p);
    }
}

//! The backfill stage: the head-of-line workload (the first in order that cannot start, even by
//! preemption) gets a reservation: the earliest time at which it would fit if running work ended when
//! expected (start + known runtime or time limit), and the nodes it would use then. Later workloads may
//! still start now, but only where they cannot delay it: on nodes outside the reservation, or anywhere
//! if they are expected to end by the reserved start.

use super::cluster::LiveCluster;
use super::filter::filter;
use super::gang::place_gang;
use super::preempt::Running;
use super::select::Selector;
use super::workload::{Workload, WorkloadId};
use crate::Rng;
use serde::Serialize;
use std::collections::BTreeSet;

/// A reservation for a head-of-line workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reservation {
    /// The workload.
    pub workload: WorkloadId,
    /// When it is expected to start.
    pub start: u64,
    /// Nodes it would use.
    pub nodes: BTreeSet<u32>,
}

/// The reservation for `w` (which does not fit now), replaying expected ends of `running` on a scratch
/// copy of the cluster; a placement is retried only when a released node could take a replica. `None`
/// when it would not fit even after every running workload with a known end has ended.
pub fn reserve(
    cluster: &LiveCluster,
    sel: &Selector,
    w: &Workload,
    id: WorkloadId,
    running: &[&Running],
    rng: &Rng,
) -> Option<Reservation> {
    let mut ends: Vec<(u64, &Running)> = running
        .iter()
        .filter_map(|r| r.expected_end.map(|e| (e, *r)))
        .collect();
    if ends.is_empty() {
        return None;
    }
    ends.sort_by_key(|(e, r)| (*e, r.id));
    let mut scratch = cluster.clone();
    let mut sel = sel.fresh();
    let mut rng = rng.clone();
    let shape = sel.shape(w);
    let none = BTreeSet::new();
    let mut i = 0;
    while i < ends.len() {
        let t = ends[i].0;
        let mut touched: Vec<u32> = Vec::new();
        while i < ends.len() && ends[i].0 == t {
            for p in &ends[i].1.placements {
                let _ = scratch.release(p);
                touched.push(p.node);
            }
            i += 1;
        }
        // Only a node that just gained capacity can change the answer.
        let nodes = scratch.nodes();
        if !touched.iter().any(|&n| {
            nodes
                .get(n as usize)
                .is_some_and(|node| filter(node, w).is_ok())
        }) {
            continue;
        }
        if let Ok(placed) = place_gang(
            &mut scratch,
            &mut sel,
            w,
            shape,
            w.replicas,
            &none,
            &mut rng,
        ) {
            return Some(Reservation {
                workload: id,
                start: t,
                nodes: placed.iter().map(|p| p.node).collect(),
            });
        }
    }
    None
}

/// The nodes `w`, starting at `now`, must avoid so as not to delay `r` (empty if it ends in time).
pub fn blocked_nodes<'a>(r: &'a Reservation, w: &Workload, now: u64) -> Option<&'a BTreeSet<u32>> {
    match w.expected_end(now) {
        Some(end) if end <= r.start => None,
        _ => Some(&r.nodes),
    }
}

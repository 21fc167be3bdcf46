//! Equivalence classes of nodes: nodes with the same static description (labels, taints, pool, sizes,
//! GPU layout) and the same allocation state answer every filter and score identically, so a decision
//! evaluates one representative per class and takes its lowest-index member (the tie-break order).
//!
//! A class's state never changes: a node whose allocation changes moves to the class of its new state.
//! Filter results and scores can therefore be memoised per (workload shape, class) without invalidation.

use std::collections::{BTreeSet, HashMap};

/// One GPU's state in a key: free milli, free memory, MIG instances as (profile id, start), sorted.
pub type GpuState = (u16, u64, Vec<(u8, u8)>);

/// The full state of a node that filters and scores can see, plus its static class.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StateKey {
    /// Static class (labels, taints, pool, capacity, GPU layout).
    pub class: u32,
    /// Health, cordon and exclusive-hold bits.
    pub flags: u8,
    /// Free CPU, milli.
    pub cpu_free: u64,
    /// Free memory, MiB.
    pub memory_free: u64,
    /// Placed replicas by GPU request kind (0 = shares, k = k whole GPUs).
    pub pods_by_kind: [u16; crate::model::MAX_GPUS_PER_NODE + 1],
    /// Placed replicas.
    pub pod_count: u32,
    /// Per GPU: free milli, free memory, MIG instances as (profile id, start), sorted.
    pub gpus: Vec<GpuState>,
}

/// One class: its state and its member nodes.
#[derive(Clone, Debug)]
pub struct Group {
    /// The shared state.
    pub key: StateKey,
    /// Member node indices, ascending.
    pub members: BTreeSet<u32>,
    /// Position in the active list, when it has members.
    active_at: Option<usize>,
}

/// Every class seen so far, and the list of those with members.
#[derive(Clone, Debug, Default)]
pub struct Groups {
    index: HashMap<StateKey, u32>,
    groups: Vec<Group>,
    active: Vec<u32>,
}

impl Groups {
    /// Puts node `node` in the class of `key`, creating it if new; returns the class id.
    pub fn insert(&mut self, node: u32, key: StateKey) -> u32 {
        let next = self.groups.len() as u32;
        let id = *self.index.entry(key.clone()).or_insert(next);
        if id == next {
            self.groups.push(Group {
                key,
                members: BTreeSet::new(),
                active_at: None,
            });
        }
        let g = &mut self.groups[id as usize];
        g.members.insert(node);
        if g.active_at.is_none() {
            g.active_at = Some(self.active.len());
            self.active.push(id);
        }
        id
    }

    /// Takes node `node` out of class `id`.
    pub fn remove(&mut self, node: u32, id: u32) {
        let Some(g) = self.groups.get_mut(id as usize) else {
            return;
        };
        g.members.remove(&node);
        if !g.members.is_empty() {
            return;
        }
        if let Some(at) = g.active_at.take() {
            self.active.swap_remove(at);
            if let Some(&moved) = self.active.get(at) {
                self.groups[moved as usize].active_at = Some(at);
            }
        }
    }

    /// Ids of the classes that have members (in no particular order).
    pub fn active(&self) -> &[u32] {
        &self.active
    }

    /// Class `id`.
    pub fn get(&self, id: u32) -> Option<&Group> {
        self.groups.get(id as usize)
    }

    /// Number of classes ever created (class ids are below this).
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when no class exists.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(class: u32, cpu_free: u64) -> StateKey {
        StateKey {
            class,
            flags: 1,
            cpu_free,
            memory_free: 0,
            pods_by_kind: [0; crate::model::MAX_GPUS_PER_NODE + 1],
            pod_count: 0,
            gpus: Vec::new(),
        }
    }

    #[test]
    fn identical_nodes_share_a_class_and_empty_classes_leave_the_active_list() {
        let mut g = Groups::default();
        let a = g.insert(0, key(0, 8));
        let b = g.insert(1, key(0, 8));
        let c = g.insert(2, key(1, 8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(g.active().len(), 2);
        g.remove(0, a);
        assert_eq!(g.active().len(), 2);
        g.remove(1, a);
        assert_eq!(g.active(), &[c]);
        // The class survives empty and is reused by the same state.
        assert_eq!(g.insert(5, key(0, 8)), a);
        assert_eq!(g.get(a).map(|x| x.members.first().copied()), Some(Some(5)));
        assert_eq!(g.len(), 2);
    }
}

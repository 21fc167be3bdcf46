//! Node selection over equivalence classes: filter and score one representative per class (memoised
//! per workload shape and class, valid forever since a class's state never changes), then take the best
//! class's lowest-index member that is not reserved. Ties go to the lowest node index, as in the engine.

use super::cluster::LiveCluster;
use super::filter::{Explanation, Rejection, filter};
use super::score::score;
use super::workload::Workload;
use crate::frag::TargetWorkload;
use crate::policies::gantry::GantryInputs;
use crate::policies::{ScoreContext, Selection};
use crate::{Policy, Rng};
use std::collections::{BTreeSet, HashMap};

/// Most memo cells kept before the memo is cleared.
const MAX_CELLS: usize = 1 << 24;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell {
    Unknown,
    Score(f64),
    Rejected(u32),
}

/// Chooses nodes for replicas; owns the per-(shape, class) memo.
#[derive(Clone, Debug)]
pub struct Selector {
    /// The default strategy (a workload's `strategy` overrides it).
    pub policy: Policy,
    /// Expected workload for fragmentation-aware strategies.
    pub target: TargetWorkload,
    /// What the `gantry` strategy knows from history.
    pub gantry: GantryInputs,
    shapes: HashMap<String, u32>,
    tables: Vec<Vec<Cell>>,
    rejections: Vec<Vec<Rejection>>,
    cells: usize,
    cursor: usize,
}

impl Selector {
    /// A selector for `policy` with the expected workload `target` and the `gantry` inputs.
    pub fn new(policy: Policy, target: TargetWorkload, gantry: GantryInputs) -> Self {
        Selector {
            policy,
            target,
            gantry,
            shapes: HashMap::new(),
            tables: Vec::new(),
            rejections: Vec::new(),
            cells: 0,
            cursor: 0,
        }
    }

    /// The same policy and target with an empty memo (for scratch clusters, whose class ids differ).
    pub fn fresh(&self) -> Self {
        Selector::new(self.policy, self.target.clone(), self.gantry.clone())
    }

    /// The shape id of `w` (equal for workloads every node treats alike).
    pub fn shape(&mut self, w: &Workload) -> u32 {
        let next = self.shapes.len() as u32;
        let id = *self.shapes.entry(w.shape_key()).or_insert(next);
        if id == next {
            self.tables.push(Vec::new());
            self.rejections.push(Vec::new());
        }
        id
    }

    fn cell(&mut self, cluster: &LiveCluster, w: &Workload, shape: u32, group: u32) -> Cell {
        if self.cells > MAX_CELLS {
            for t in &mut self.tables {
                t.clear();
            }
            for r in &mut self.rejections {
                r.clear();
            }
            self.cells = 0;
        }
        let s = shape as usize;
        let table = &mut self.tables[s];
        if table.len() <= group as usize {
            let len = cluster.groups().len().max(group as usize + 1);
            self.cells += len - table.len();
            table.resize(len, Cell::Unknown);
        }
        if table[group as usize] != Cell::Unknown {
            return table[group as usize];
        }
        let Some(first) = cluster
            .groups()
            .get(group)
            .and_then(|g| g.members.first().copied())
        else {
            return Cell::Unknown;
        };
        let node = &cluster.nodes()[first as usize];
        let cell = match filter(node, w) {
            Ok(()) => {
                let ctx = ScoreContext {
                    target: &self.target,
                    max_cpu_milli: cluster.max_cpu_milli(),
                    max_gpu_milli: cluster.max_gpu_milli(),
                    gantry: &self.gantry,
                };
                Cell::Score(score(node, w, w.strategy.unwrap_or(self.policy), &ctx))
            }
            Err(r) => {
                let pool = &mut self.rejections[s];
                pool.push(r);
                Cell::Rejected(pool.len() as u32 - 1)
            }
        };
        self.tables[s][group as usize] = cell;
        cell
    }

    /// The node for one replica of `w` (shape `shape`): `only` restricts to one node (same-node
    /// topology); `blocked` nodes are reserved for a head-of-line workload.
    pub fn select(
        &mut self,
        cluster: &LiveCluster,
        w: &Workload,
        shape: u32,
        only: Option<u32>,
        blocked: &BTreeSet<u32>,
        rng: &mut Rng,
    ) -> Result<u32, Explanation> {
        let mut why = Explanation::default();
        if let Some(n) = only {
            let Some(node) = cluster.nodes().get(n as usize) else {
                return Err(why);
            };
            return match filter(node, w) {
                Ok(()) if !blocked.contains(&n) => Ok(n),
                Ok(()) => {
                    why.add(Rejection::Reserved, 1);
                    Err(why)
                }
                Err(r) => {
                    why.add(r, 1);
                    Err(why)
                }
            };
        }
        let policy = w.strategy.unwrap_or(self.policy);
        // (score, node, group, unblocked members)
        let mut best: Option<(f64, u32)> = None;
        let mut feasible: Vec<(u32, u32)> = Vec::new();
        let groups = cluster.groups();
        for &g in groups.active() {
            let Some(group) = groups.get(g) else {
                continue;
            };
            match self.cell(cluster, w, shape, g) {
                Cell::Unknown => {}
                Cell::Rejected(r) => {
                    let count = group.members.len() as u32;
                    why.add_ref(&self.rejections[shape as usize][r as usize], count);
                }
                Cell::Score(s) => {
                    let node = if blocked.is_empty() {
                        group.members.first().copied()
                    } else {
                        group.members.iter().copied().find(|m| !blocked.contains(m))
                    };
                    let Some(node) = node else {
                        why.add(Rejection::Reserved, group.members.len() as u32);
                        continue;
                    };
                    match policy.selection() {
                        Selection::MaxScore => {
                            if best.is_none_or(|(bs, bn)| s > bs || (s == bs && node < bn)) {
                                best = Some((s, node));
                            }
                        }
                        Selection::Random | Selection::RoundRobin => feasible.push((g, node)),
                    }
                }
            }
        }
        let chosen = match policy.selection() {
            Selection::MaxScore => best.map(|(_, n)| n),
            Selection::Random => {
                feasible.sort_unstable_by_key(|&(_, n)| n);
                let nodes: Vec<u32> = feasible
                    .iter()
                    .flat_map(|&(g, _)| {
                        cluster
                            .groups()
                            .get(g)
                            .map(|x| x.members.iter().copied().collect::<Vec<_>>())
                            .unwrap_or_default()
                    })
                    .filter(|m| !blocked.contains(m))
                    .collect();
                if nodes.is_empty() {
                    None
                } else {
                    Some(nodes[rng.below(nodes.len() as u64) as usize])
                }
            }
            Selection::RoundRobin => {
                let n = cluster.nodes().len().max(1);
                let cursor = (self.cursor % n) as u32;
                feasible
                    .iter()
                    .filter_map(|&(g, first)| {
                        let members = &cluster.groups().get(g)?.members;
                        members
                            .range(cursor..)
                            .copied()
                            .find(|m| !blocked.contains(m))
                            .or(Some(first))
                    })
                    .min_by_key(|&i| (i as usize + n - cursor as usize) % n)
            }
        };
        match chosen {
            Some(n) => {
                self.cursor = n as usize + 1;
                Ok(n)
            }
            None => Err(why),
        }
    }
}

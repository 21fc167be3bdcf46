//! The standalone scheduler's placement step: this machine as engine nodes, pending work in order.
//!
//! The machine's GPUs are grouped by model (the engine's node has one GPU model); each group is one
//! engine node holding its share of the machine's CPU and memory, in proportion to its GPUs. Running
//! workloads are committed first, then pending ones are placed in order: priority (higher first),
//! then the queue's fair-share standing, then submission time, then id; each is first admitted by its
//! queue's quota ([`crate::admission`]); a workload that does not fit waits with the engine's reason
//! (filters and node counts). The first one that does not fit reserves the GPUs it will get
//! ([`crate::backfill`]); later ones still start beside the reservation, or on it if their time limit
//! ends before it is due.

use crate::admission::{Quotas, Shares};
use crate::backfill::{self, Reservation};
use gantry_core::engine::{Engine, EngineConfig};
use gantry_core::model::{GpuDemand, GpuModels, GpuSet, NodeSpec, Pod};
use gantry_core::{Cluster, Policy, Rng};

/// One GPU of the machine as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Device index (`CUDA_VISIBLE_DEVICES` order).
    pub index: u32,
    /// Device UUID.
    pub uuid: String,
    /// Model key, e.g. `H100-80GB` (what workload specs name in `resources.gpu.models`).
    pub model: String,
    /// Whether it may take new work (health).
    pub healthy: bool,
}

/// The machine: its GPUs, CPU and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Node name used in assignments.
    pub name: String,
    /// GPUs.
    pub slots: Vec<Slot>,
    /// Allocatable CPU, milli-cores.
    pub cpu_milli: u64,
    /// Allocatable memory, MiB.
    pub memory_mib: u64,
}

pub use gantry_gpu::model_key;

/// One GPU a workload takes: the slot and the milli it uses there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Index into `Machine::slots`.
    pub slot: usize,
    /// Milli of that GPU (1000 for a whole GPU).
    pub milli: u32,
}

/// A workload to place, or already running.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    /// Store id, opaque here.
    pub id: i64,
    /// Priority value (higher first).
    pub priority: i64,
    /// Submission time, ms.
    pub submitted_at: i64,
    /// Its queue.
    pub queue: String,
    /// Its time limit, ms (it is stopped then).
    pub limit_ms: Option<i64>,
    /// When its current attempt started, ms (running work only).
    pub started_at: Option<i64>,
    /// What one replica needs, in engine terms.
    pub pod: Pod,
}

/// The outcome for one pending workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start it on these GPUs.
    Place(Vec<Taken>),
    /// It does not fit; why (the engine's explanation).
    Wait(String),
    /// It does not fit (why), and it is first in line: GPUs are now reserved for it.
    Reserved(String),
    /// Its queue's quota does not admit it now; why.
    Refused(String),
    /// It would fit, but only on GPUs reserved for the head-of-line workload (see [`crate::backfill`]).
    Held(String),
}

struct Layout {
    cluster: Cluster,
    /// For each engine node, the machine slots of its GPUs in order.
    slots_of: Vec<Vec<usize>>,
}

impl Machine {
    /// The GPU model names of this machine, interned for specs (`spec.pod(&models)`).
    pub fn models(&self) -> GpuModels {
        let mut models = GpuModels::default();
        for s in &self.slots {
            // More than 64 distinct models on one machine cannot happen; ignore the overflow.
            let _ = models.intern(&s.model);
        }
        models
    }

    /// The engine nodes of this machine: GPUs grouped by model (at most 16 a node), as (model,
    /// slot indices); empty without GPUs.
    pub fn groups(&self) -> Vec<(String, Vec<usize>)> {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|(m, v)| *m == s.model && v.len() < 16)
            {
                Some((_, v)) => v.push(i),
                None => groups.push((s.model.clone(), vec![i])),
            }
        }
        groups
    }

    /// The CPU (milli) and memory (MiB) of a node holding `gpus` of the machine's GPUs: its share
    /// in proportion to its GPUs.
    pub fn node_share(&self, gpus: usize) -> (u64, u64) {
        let total = self.slots.len().max(1) as u64;
        (
            self.cpu_milli * gpus as u64 / total,
            self.memory_mib * gpus as u64 / total,
        )
    }

    fn layout(&self) -> Layout {
        let models = self.models();
        let groups = self.groups();
        let specs: Vec<NodeSpec> = if groups.is_empty() {
            vec![NodeSpec {
                name: self.name.clone(),
                cpu_milli: self.cpu_milli,
                memory_mib: self.memory_mib,
                gpu_count: 0,
                gpu_model: None,
            }]
        } else {
            groups
                .iter()
                .map(|(model, v)| {
                    let (cpu_milli, memory_mib) = self.node_share(v.len());
                    NodeSpec {
                        name: format!("{}/{model}", self.name),
                        cpu_milli,
                        memory_mib,
                        gpu_count: v.len() as u8,
                        gpu_model: models.get(model),
                    }
                })
                .collect()
        };
        let slots_of = if groups.is_empty() {
            vec![Vec::new()]
        } else {
            groups.into_iter().map(|(_, v)| v).collect()
        };
        Layout {
            cluster: Cluster::new(models, specs),
            slots_of,
        }
    }
}

fn gpu_set(layout: &Layout, node: usize, taken: &[Taken]) -> Option<GpuSet> {
    let mut set = 0u16;
    for t in taken {
        let local = layout.slots_of[node].iter().position(|&s| s == t.slot)?;
        set |= 1 << local;
    }
    Some(GpuSet(set))
}

/// The machine's engine nodes with `running` work (and unhealthy GPUs) committed, as the next
/// placement sees them, with the machine slots of each node's GPUs in order.
pub fn occupied(machine: &Machine, running: &[(Work, Vec<Taken>)]) -> (Cluster, Vec<Vec<usize>>) {
    let mut layout = machine.layout();
    // Unhealthy GPUs take no new work: hold them with a phantom whole-GPU pod.
    for (slot, s) in machine.slots.iter().enumerate() {
        if !s.healthy
            && let Some(node) = layout.slots_of.iter().position(|v| v.contains(&slot))
            && let Some(set) = gpu_set(&layout, node, &[Taken { slot, milli: 1000 }])
        {
            let hold = Pod {
                cpu_milli: 0,
                memory_mib: 0,
                gpu: GpuDemand::Whole(1),
                models: Default::default(),
            };
            let _ = layout.cluster.commit(node, &hold, set);
        }
    }
    for (work, taken) in running {
        let node = taken
            .first()
            .and_then(|t| layout.slots_of.iter().position(|v| v.contains(&t.slot)))
            .unwrap_or(0);
        if let Some(set) = gpu_set(&layout, node, taken) {
            // A running workload that no longer fits (GPUs gone) is simply not counted.
            let _ = layout.cluster.commit(node, &work.pod, set);
        }
    }
    (layout.cluster, layout.slots_of)
}

/// The key pending work is tried in, smallest first: priority (higher first), then its queue's
/// fair-share standing (lower first, see [`crate::admission`]), then submission time, then id.
pub fn order_key(
    priority: i64,
    share: f64,
    submitted_at: i64,
    id: i64,
) -> (std::cmp::Reverse<i64>, u64, i64, i64) {
    // Shares are in [0, ∞); a fixed-point key keeps the order total and deterministic.
    let share = (share.max(0.0) * 1e9).min(u64::MAX as f64) as u64;
    (std::cmp::Reverse(priority), share, submitted_at, id)
}

/// `pending` in placement order ([`order_key`]) given each queue's standing.
pub fn in_order<'a>(pending: &'a [Work], shares: &Shares) -> Vec<&'a Work> {
    let mut order: Vec<&Work> = pending.iter().collect();
    order.sort_by_key(|w| {
        let share = shares.get(&w.queue).copied().unwrap_or(0.0);
        order_key(w.priority, share, w.submitted_at, w.id)
    });
    order
}

/// Decides which `pending` workloads start now (at `now_ms`), given what `running` holds, under
/// `policy`: each first admitted by its queue's quota (`quotas`, charged with `running`; what starts
/// is charged), then placed; the first that does not fit reserves GPUs ([`crate::backfill`]) that
/// later work may use only if it ends in time.
pub fn plan(
    machine: &Machine,
    running: &[(Work, Vec<Taken>)],
    pending: &[Work],
    policy: Policy,
    quotas: &mut Quotas,
    now_ms: i64,
) -> Vec<(i64, Decision)> {
    let (cluster, slots_of) = occupied(machine, running);
    let mut layout = Layout { cluster, slots_of };
    let shares = quotas.shares();
    let order = in_order(pending, &shares);
    let mut engine = Engine::new(policy, EngineConfig::default());
    let mut rng = Rng::new(0);
    let mut out = Vec::with_capacity(order.len());
    // What holds GPUs, this cycle's placements included (for the reservation).
    let mut holders: Vec<(Work, Vec<Taken>)> = running.to_vec();
    // The reservation, with the cluster as later work sees it and an engine for that cluster (the
    // engine memoises scores per node version, so each cluster gets its own).
    let mut reserved: Option<(Reservation, Cluster, Engine)> = None;
    for w in order {
        if let Err(why) = quotas.admit(w) {
            out.push((w.id, Decision::Refused(why)));
            continue;
        }
        let guard = reserved
            .as_mut()
            .filter(|(r, _, _)| !r.ends_in_time(w, now_ms));
        let chosen = match guard {
            Some((_, g, guard_engine)) => guard_engine.schedule(g, &w.pod, &mut rng),
            None => engine.schedule(&layout.cluster, &w.pod, &mut rng),
        };
        match chosen {
            Ok(p) => {
                if layout.cluster.commit(p.node, &w.pod, p.gpus).is_err() {
                    // Cannot happen (the guarded cluster only has less free); wait rather than
                    // over-allocate if it ever did.
                    out.push((w.id, Decision::Wait("0/1 nodes: placement refused".into())));
                    continue;
                }
                if let Some((_, g, _)) = reserved.as_mut() {
                    // Fails only where the reservation already holds those GPUs.
                    let _ = g.commit(p.node, &w.pod, p.gpus);
                }
                quotas.charge(w);
                let milli = w.pod.gpu.milli_per_gpu();
                let taken: Vec<Taken> = p
                    .gpus
                    .iter()
                    .map(|g| Taken {
                        slot: layout.slots_of[p.node][g],
                        milli,
                    })
                    .collect();
                let mut started = w.clone();
                started.started_at = Some(now_ms);
                holders.push((started, taken.clone()));
                out.push((w.id, Decision::Place(taken)));
            }
            Err(e) => {
                let fits_unguarded = reserved.is_some()
                    && engine.schedule(&layout.cluster, &w.pod, &mut rng).is_ok();
                match &reserved {
                    Some((r, _, _)) if fits_unguarded => {
                        let nodes = layout.cluster.nodes().len();
                        out.push((w.id, Decision::Held(r.reason(nodes))));
                    }
                    Some(_) => out.push((w.id, Decision::Wait(e.to_string()))),
                    None => match backfill::reserve(machine, &holders, w, policy) {
                        Some(r) => {
                            let g = backfill::guarded(&layout.cluster, &layout.slots_of, &r);
                            reserved = Some((r, g, Engine::new(policy, EngineConfig::default())));
                            out.push((w.id, Decision::Reserved(e.to_string())));
                        }
                        None => out.push((w.id, Decision::Wait(e.to_string()))),
                    },
                }
            }
        }
    }
    out
}

/// A machine of `gpus` healthy GPUs of `model` with `cpu_milli` and `memory_mib`, for tests.
#[cfg(test)]
pub(crate) fn test_machine(gpus: u32, model: &str, cpu_milli: u64, memory_mib: u64) -> Machine {
    Machine {
        name: "box".into(),
        slots: (0..gpus)
            .map(|i| Slot {
                index: i,
                uuid: format!("GPU-{i}"),
                model: model.into(),
                healthy: true,
            })
            .collect(),
        cpu_milli,
        memory_mib,
    }
}

/// Pending work `id` (submitted at `id` ms, queue `default`, no time limit) needing `gpu`, one CPU
/// core and 1 GiB, for tests.
/// Whole GPUs on these machine slots, for tests.
#[cfg(test)]
pub(crate) fn test_whole(slots: &[usize]) -> Vec<Taken> {
    slots
        .iter()
        .map(|&slot| Taken { slot, milli: 1000 })
        .collect()
}

#[cfg(test)]
pub(crate) fn test_work(id: i64, priority: i64, gpu: GpuDemand) -> Work {
    Work {
        id,
        priority,
        submitted_at: id,
        queue: "default".into(),
        limit_ms: None,
        started_at: None,
        pod: Pod {
            cpu_milli: 1000,
            memory_mib: 1024,
            gpu,
            models: Default::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::model::ModelSet;

    fn machine(models: &[&str]) -> Machine {
        Machine {
            name: "box".into(),
            slots: models
                .iter()
                .enumerate()
                .map(|(i, m)| Slot {
                    index: i as u32,
                    uuid: format!("GPU-{i}"),
                    model: m.to_string(),
                    healthy: true,
                })
                .collect(),
            cpu_milli: 64_000,
            memory_mib: 256 * 1024,
        }
    }

    fn work(id: i64, priority: i64, gpu: GpuDemand) -> Work {
        test_work(id, priority, gpu)
    }

    #[test]
    fn priority_first_and_whole_gpus_never_shared() {
        let m = machine(&["H100-80GB"; 4]);
        let pending = [
            work(1, 100, GpuDemand::Whole(2)),
            work(2, 1000, GpuDemand::Whole(3)),
            work(3, 100, GpuDemand::Share(500)),
        ];
        let d = plan(
            &m,
            &[],
            &pending,
            Policy::BestFit,
            &mut Quotas::unlimited(&m),
            0,
        );
        // The 3-GPU high-priority job goes first; the 2-GPU job then does not fit; the share does.
        assert_eq!(d[0].0, 2);
        assert!(matches!(&d[0].1, Decision::Place(t) if t.len() == 3));
        assert_eq!(d[1].0, 1);
        assert!(
            matches!(&d[1].1, Decision::Reserved(why) if why.contains("0/1 nodes")),
            "{d:?}"
        );
        assert!(matches!(&d[2].1, Decision::Place(t) if t.len() == 1 && t[0].milli == 500));
    }

    #[test]
    fn running_work_and_unhealthy_gpus_are_held() {
        let mut m = machine(&["A100-40GB"; 2]);
        m.slots[1].healthy = false;
        let running = [(
            work(9, 0, GpuDemand::Whole(1)),
            vec![Taken {
                slot: 0,
                milli: 1000,
            }],
        )];
        let d = plan(
            &m,
            &running,
            &[work(1, 0, GpuDemand::Whole(1))],
            Policy::BestFit,
            &mut Quotas::unlimited(&m),
            0,
        );
        assert!(matches!(&d[0].1, Decision::Reserved(_)), "{d:?}");
    }

    #[test]
    fn mixed_models_are_separate_nodes_and_models_are_honoured() {
        let m = machine(&["H100-80GB", "H100-80GB", "A100-40GB"]);
        let models = m.models();
        let mut only_a100 = ModelSet::ANY;
        only_a100.insert(models.get("A100-40GB").unwrap());
        let mut w = work(1, 0, GpuDemand::Whole(1));
        w.pod.models = only_a100;
        let d = plan(
            &m,
            &[],
            &[w],
            Policy::BestFit,
            &mut Quotas::unlimited(&m),
            0,
        );
        assert_eq!(
            d[0].1,
            Decision::Place(vec![Taken {
                slot: 2,
                milli: 1000
            }])
        );
    }

    #[test]
    fn quotas_hold_work_and_the_queue_with_less_goes_first() {
        use gantry_core::spec::{QueueSpec, Quota};
        let m = machine(&["H100-80GB"; 4]);
        let mut research = QueueSpec::named("research");
        research.guaranteed = Quota {
            gpus: Some("1".into()),
            ..Quota::default()
        };
        let specs = [research, QueueSpec::named("prod")];
        let on = |mut w: Work, q: &str| {
            w.queue = q.into();
            w
        };
        // prod already runs 2 GPUs; research 0. Equal priority: research's later submission goes
        // first (lower share), its second job is over quota, prod's waits for GPUs.
        let running = [(
            on(work(9, 0, GpuDemand::Whole(2)), "prod"),
            test_whole(&[0, 1]),
        )];
        let running_work: Vec<Work> = running.iter().map(|(w, _)| w.clone()).collect();
        let mut quotas = Quotas::new(&specs, &m, &running_work);
        let pending = [
            on(work(1, 0, GpuDemand::Whole(2)), "prod"),
            on(work(2, 0, GpuDemand::Whole(1)), "research"),
            on(work(3, 0, GpuDemand::Whole(1)), "research"),
        ];
        let d = plan(&m, &running, &pending, Policy::BestFit, &mut quotas, 0);
        let ids: Vec<i64> = d.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [2, 3, 1], "research (share 0) before prod (share 0.5)");
        assert!(matches!(&d[0].1, Decision::Place(t) if t.len() == 1));
        assert!(
            matches!(&d[1].1, Decision::Refused(why) if why.starts_with("queue research: gpu milli would be 2000")),
            "{d:?}"
        );
        assert!(
            matches!(&d[2].1, Decision::Reserved(why) if why.starts_with("0/1 nodes")),
            "{d:?}"
        );
        assert_eq!(quotas.used("research")[0], 1000, "what started is charged");
    }

    #[test]
    fn the_first_blocked_workload_reserves_and_only_work_that_ends_in_time_backfills() {
        let m = machine(&["H100-80GB"; 4]);
        // wl-9 holds GPUs 0 and 1 until 10 minutes (started at 0 with a 10-minute limit).
        let mut holder = work(9, 0, GpuDemand::Whole(2));
        holder.started_at = Some(0);
        holder.limit_ms = Some(600_000);
        let running = [(holder, test_whole(&[0, 1]))];
        let big = work(1, 0, GpuDemand::Whole(4));
        let endless = work(2, 0, GpuDemand::Whole(1));
        let mut short = work(3, 0, GpuDemand::Whole(1));
        short.limit_ms = Some(300_000);
        let mut too_long = work(4, 0, GpuDemand::Whole(1));
        too_long.limit_ms = Some(900_000);
        let pending = [big, endless, short, too_long];
        let d = plan(
            &m,
            &running,
            &pending,
            Policy::BestFit,
            &mut Quotas::unlimited(&m),
            0,
        );
        assert!(
            matches!(&d[0].1, Decision::Reserved(w) if w.starts_with("0/1 nodes")),
            "{d:?}"
        );
        for i in [1, 3] {
            assert!(
                matches!(&d[i].1, Decision::Held(w) if w.contains("without delaying wl-1, first in line")),
                "{:?}",
                d[i]
            );
        }
        assert!(
            matches!(&d[2].1, Decision::Place(t) if t.len() == 1),
            "{d:?}"
        );
        // With no reservation possible (8 GPUs never fit), nothing is held back.
        let pending = [
            work(1, 0, GpuDemand::Whole(8)),
            work(2, 0, GpuDemand::Whole(1)),
        ];
        let d = plan(
            &m,
            &running,
            &pending,
            Policy::BestFit,
            &mut Quotas::unlimited(&m),
            0,
        );
        assert!(matches!(&d[1].1, Decision::Place(_)), "{d:?}");
    }
}

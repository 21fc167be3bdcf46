//! Where a waiting Pod stands: its position in the scheduler's order and an estimated start from a
//! forward simulation of the model's own placement (pure; the time is an input).
//!
//! The simulation copies the live cluster as the pass left it, then steps from one expected end to the
//! next: a running Pod ends at its start plus `activeDeadlineSeconds` (the kubelet stops it then), a
//! terminating Pod ends now, and a Pod with no deadline never ends as far as the simulation knows. At
//! each end the waiting units are tried again in the scheduler's order (priority, then age), each one
//! placed starting its own deadline. Every end it uses is an upper bound, so a start found is "at the
//! latest" that time (unless higher-priority Pods arrive meanwhile); a unit still waiting when no known
//! end is left gets "unknown" with the reason.

use super::model::place_all;
use gantry_core::Rng;
use gantry_core::live::filter::static_check;
use gantry_core::live::gang::undo;
use gantry_core::live::select::Selector;
use gantry_core::live::{LiveCluster, ReplicaPlacement, Workload};
use std::collections::HashSet;

/// How many waiting units (Pods or gangs) the simulation places at most; later ones are "unknown".
pub const MAX_AHEAD: usize = 100;
/// How many expected ends the simulation steps through before it gives up.
pub const MAX_STEPS: usize = 1_000;
/// How many Pod names an explanation lists.
const NAMED: usize = 3;

/// A Pod that holds resources in the simulation until `end` (Unix seconds; `None`: unknown).
#[derive(Clone, Debug)]
pub struct Holder {
    /// `namespace/name`.
    pub name: String,
    /// What it takes (already charged to the cluster handed to [`forecast`]).
    pub placements: Vec<ReplicaPlacement>,
    /// When it ends at the latest.
    pub end: Option<i64>,
}

/// A waiting unit in the scheduler's order: a Pod, or a gang's pending Pods.
#[derive(Clone, Debug)]
pub struct Waiter {
    /// The replicas to place (empty: it can never be placed as it is).
    pub works: Vec<Workload>,
    /// How many of them must be placed together.
    pub need: u32,
    /// Its `activeDeadlineSeconds`: once started it ends at the latest that much later.
    pub deadline: Option<i64>,
}

/// The estimated start of one waiting unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// It starts at the latest at `at` (Unix seconds), once the named Pods have ended.
    AtTheLatest {
        /// When.
        at: i64,
        /// The Pods that end before it starts (in order of their ends).
        waited: Vec<String>,
    },
    /// Unknown, with why.
    Unknown(String),
}

/// The estimated start of every waiter (in the same order), simulated forward from `now` on a copy of
/// `cluster` (which holds the `holders`' placements).
pub fn forecast(
    cluster: &LiveCluster,
    selector: &Selector,
    rng: &Rng,
    holders: Vec<Holder>,
    waiters: &[Waiter],
    now: i64,
) -> Vec<Start> {
    let mut scratch = cluster.clone();
    let mut sel = selector.fresh();
    let mut rng = rng.clone();
    let simulated = waiters.len().min(MAX_AHEAD);
    let shapes: Vec<Vec<u32>> = waiters[..simulated]
        .iter()
        .map(|w| w.works.iter().map(|x| sel.shape(x)).collect())
        .collect();
    let mut active = holders;
    for h in &mut active {
        h.end = h.end.map(|e| e.max(now));
    }
    let mut ended: Vec<String> = Vec::new();
    // Per waiter: (start, how many Pods had ended by then).
    let mut started: Vec<Option<(i64, usize)>> = vec![None; simulated];
    let mut left = waiters[..simulated]
        .iter()
        .filter(|w| !w.works.is_empty())
        .count();
    let mut steps = 0;
    let mut t = now;
    while left > 0 && steps < MAX_STEPS {
        let Some(next) = active.iter().filter_map(|h| h.end).min() else {
            break;
        };
        steps += 1;
        t = t.max(next);
        let (done, rest): (Vec<Holder>, Vec<Holder>) =
            active.into_iter().partition(|h| h.end == Some(next));
        active = rest;
        for h in done {
            undo(&mut scratch, &h.placements);
            ended.push(h.name);
        }
        // Capacity only shrinks within a step: a shape that failed stays failed.
        let mut failed: HashSet<(Vec<u32>, u32)> = HashSet::new();
        for (i, w) in waiters[..simulated].iter().enumerate() {
            if started[i].is_some() || w.works.is_empty() {
                continue;
            }
            let memo = (shapes[i].clone(), w.need);
            if failed.contains(&memo) {
                continue;
            }
            match place_all(
                &mut scratch,
                &mut sel,
                &mut rng,
                &w.works,
                &shapes[i],
                w.need,
            ) {
                Ok(placements) => {
                    started[i] = Some((t, ended.len()));
                    left -= 1;
                    active.push(Holder {
                        name: w.works[0].name.clone(),
                        placements,
                        end: w.deadline.map(|d| t.saturating_add(d.max(0))),
                    });
                }
                Err(_) => {
                    failed.insert(memo);
                }
            }
        }
    }
    waiters
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i >= simulated {
                return Start::Unknown(format!(
                    "{i} pending ahead of it: more than the {MAX_AHEAD} simulated"
                ));
            }
            if w.works.is_empty() {
                return Start::Unknown("it cannot be placed as it is".into());
            }
            if let Some((at, n)) = started[i] {
                return Start::AtTheLatest {
                    at,
                    waited: ended[..n].to_vec(),
                };
            }
            if steps >= MAX_STEPS {
                return Start::Unknown(format!(
                    "more than {MAX_STEPS} pod ends before it could start"
                ));
            }
            let unknown = blockers(&scratch, &active, &w.works[0]);
            if unknown.is_empty() {
                Start::Unknown(
                    "it does not fit even after every pod with a time limit has ended".into(),
                )
            } else {
                Start::Unknown(format!(
                    "it waits for {} with no time limit (activeDeadlineSeconds)",
                    names(&unknown)
                ))
            }
        })
        .collect()
}

/// The Pods with no known end on nodes that could take `w` (by its static constraints).
fn blockers(cluster: &LiveCluster, active: &[Holder], w: &Workload) -> Vec<String> {
    let nodes = cluster.nodes();
    active
        .iter()
        .filter(|h| h.end.is_none())
        .filter(|h| {
            h.placements.iter().any(|p| {
                nodes
                    .get(p.node as usize)
                    .is_some_and(|n| static_check(n, w).is_ok())
            })
        })
        .map(|h| h.name.clone())
        .collect()
}

/// `a`, `a, b`, or `a, b, c and 4 more`.
pub fn names(all: &[String]) -> String {
    let shown = all[..all.len().min(NAMED)].join(", ");
    if all.len() > NAMED {
        format!("{shown} and {} more", all.len() - NAMED)
    } else {
        shown
    }
}

/// Unix seconds as RFC 3339 (`2026-11-26T01:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map_or_else(|_| format!("@{secs}"), |t| t.to_string())
}

/// The outlook text of a waiting unit: its position and estimated start.
pub fn text(
    queue: &str,
    in_queue: (usize, usize),
    overall: (usize, usize),
    start: &Start,
    now: i64,
) -> String {
    let position = format!(
        "Position {} of {} in queue {queue}, {} of {} overall (order: priority, then age)",
        in_queue.0, in_queue.1, overall.0, overall.1
    );
    let estimate = match start {
        Start::AtTheLatest { at, waited } if *at <= now || waited.is_empty() => format!(
            "estimated start: now (it waits for {} to end, past its time limit or terminating)",
            names(waited)
        ),
        Start::AtTheLatest { at, waited } => format!(
            "estimated start at the latest {} (exact: it waits for {} to end, each stopped at its activeDeadlineSeconds; later only if higher-priority pods arrive)",
            rfc3339(*at),
            names(waited)
        ),
        Start::Unknown(why) => format!("estimated start unknown ({why})"),
    };
    format!("{position}; {estimate}.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::scheduler::{Decision, Model, gpu_node, pending_pod};
    use gantry_core::Policy;
    use k8s_openapi::api::core::v1::{Pod, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// 2026-11-26T00:00:00Z.
    const NOW: i64 = 1_795_651_200;

    fn pod(name: &str, gpus: u32, priority: i64, deadline: Option<i64>) -> Pod {
        let mut p = pending_pod("ml", name, 1000, 1024, gpus, None);
        p.metadata
            .annotations
            .get_or_insert_default()
            .insert(keys::PRIORITY.into(), priority.to_string());
        p.spec.get_or_insert_default().active_deadline_seconds = deadline;
        p
    }

    /// A Pod of priority 100 (nothing here preempts it) running on `node-a` since `started`.
    fn running(name: &str, gpus: u32, started: i64, deadline: Option<i64>) -> Pod {
        let mut p = pod(name, gpus, 100, deadline);
        p.spec.get_or_insert_default().node_name = Some("node-a".into());
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            start_time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(started).expect("time"),
            )),
            ..PodStatus::default()
        });
        p
    }

    /// The outlook of each Pod the pass could not place, by name.
    fn outlooks(gpus: u32, pods: &[Pod]) -> std::collections::BTreeMap<String, String> {
        let mut model = Model::new(Policy::Gantry, None);
        model.apply_node(&gpu_node("node-a", "H100-80GB", gpus, 96, 1024));
        for p in pods {
            model.apply_pod(p);
        }
        model
            .schedule(NOW)
            .into_iter()
            .filter_map(|d| match d {
                Decision::Unschedulable { pods, outlook, .. } => {
                    Some((pods[0].name.clone(), outlook))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn later_work_that_fits_a_freed_gpu_goes_first_and_delays_the_big_one() {
        // Two GPUs: r1 ends at +100 s, r2 at +300 s. x (2 GPUs, priority 5) is first in order but
        // needs both; y (1 GPU, 1000 s limit) takes the GPU freed at +100 s, as the scheduler's
        // greedy pass does, so x starts when y ends: +100 + 1000 = +1100 s.
        let o = outlooks(
            2,
            &[
                running("r1", 1, NOW - 500, Some(600)),
                running("r2", 1, NOW - 100, Some(400)),
                pod("x", 2, 5, Some(50)),
                pod("y", 1, 1, Some(1000)),
            ],
        );
        assert_eq!(
            o["x"],
            "Position 1 of 2 in queue default, 1 of 2 overall (order: priority, then age); \
             estimated start at the latest 2026-11-26T00:18:20Z (exact: it waits for ml/r1, ml/r2, \
             ml/y to end, each stopped at its activeDeadlineSeconds; later only if higher-priority \
             pods arrive)."
        );
        assert!(
            o["y"].contains("2 of 2 overall")
                && o["y"].contains(
                    "at the latest 2026-11-26T00:01:40Z (exact: it waits for ml/r1 to end"
                ),
            "{}",
            o["y"]
        );
    }

    #[test]
    fn a_pod_past_its_deadline_frees_its_gpu_now() {
        let o = outlooks(
            1,
            &[
                running("late", 1, NOW - 1000, Some(100)),
                pod("next", 1, 0, None),
            ],
        );
        assert!(
            o["next"].ends_with(
                "estimated start: now (it waits for ml/late to end, past its time limit or terminating)."
            ),
            "{}",
            o["next"]
        );
    }

    #[test]
    fn only_the_first_hundred_waiting_are_simulated() {
        let mut pods = vec![running("r", 1, NOW, Some(60))];
        pods.extend((0..MAX_AHEAD + 2).map(|i| pod(&format!("w{i:03}"), 1, 0, Some(60))));
        let o = outlooks(1, &pods);
        assert_eq!(o.len(), MAX_AHEAD + 2);
        // The 100th waits for r and the 99 before it, a minute each.
        assert!(
            o["w099"].contains("100 of 102 overall")
                && o["w099"].contains("at the latest 2026-11-26T01:40:00Z"),
            "{}",
            o["w099"]
        );
        assert!(
            o["w101"].ends_with(
                "estimated start unknown (101 pending ahead of it: more than the 100 simulated)."
            ),
            "{}",
            o["w101"]
        );
    }

    #[test]
    fn names_are_listed_up_to_three() {
        let n = |k: usize| (0..k).map(|i| format!("p{i}")).collect::<Vec<_>>();
        assert_eq!(names(&n(1)), "p0");
        assert_eq!(names(&n(3)), "p0, p1, p2");
        assert_eq!(names(&n(5)), "p0, p1, p2 and 2 more");
        assert_eq!(rfc3339(NOW + 3000), "2026-11-26T00:50:00Z");
    }
}

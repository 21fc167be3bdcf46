//! Findings with advice, pure functions over the window's usage and facts about its workloads:
//!
//! - [`underused_gpus`]: GPUs whose mean utilisation over the time they were allocated is under the
//!   threshold, with the idle cost and the projected monthly waste;
//! - [`right_sizing`]: workloads whose peak GPU memory fits a MIG profile of their GPU (or, on a GPU
//!   without MIG, a share of it), grouped by advice, each group checked by replaying its runs in the
//!   simulator ([`crate::replay`]) with and without the advice;
//! - [`spot_candidates`]: spot-tolerant workloads that ran on on-demand capacity, with what the same
//!   time costs at the spot price.
//!
//! Amounts are exact until one half-up rounding to the cent. "Per month" is the window's amount
//! scaled to 30 days: `amount x 30 d / window length`.

use crate::account::{MS_PER_HOUR, Money, Usage, Window, exact_cost, gpu_time, hours, is_idle};
use crate::prices::{Catalogue, Pool};
use crate::replay::{self, ReplayGpus, ReplayJob, ReplayOutcome, Request};
use gantry_core::spec::mig;
use serde::Serialize;
use std::collections::BTreeMap;

/// Thirty days in milliseconds: what "per month" means.
pub const MONTH_MS: u128 = 30 * 24 * MS_PER_HOUR;

/// Headroom over the peak memory a right-sized request keeps, percent.
pub const MEMORY_HEADROOM_PCT: u64 = 10;

/// Largest share advised on a GPU without MIG, milli (a larger share frees too little to matter).
pub const MAX_ADVISED_SHARE: u32 = 500;

/// A GPU under the utilisation threshold over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnderusedGpu {
    /// The GPU's UUID.
    pub gpu: String,
    /// Its model key.
    pub model: String,
    /// Mean utilisation over its allocated time (weighted by the GPU fraction held), percent.
    pub mean_utilization: f64,
    /// GPU-hours allocated in the window (shares and slices count their fraction).
    pub allocated_hours: f64,
    /// Cost of the allocated time spent under the threshold.
    pub idle_cost: Money,
    /// `idle_cost` scaled to 30 days.
    pub monthly_waste: Money,
}

/// One workload's facts for right-sizing and spot advice.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadFacts {
    /// Id (`wl-3`).
    pub id: String,
    /// Queue.
    pub queue: String,
    /// GPU model key it ran on.
    pub model: String,
    /// What it asked for.
    pub request: Request,
    /// Peak GPU memory used while it held its GPU, MiB (`None`: no telemetry).
    pub peak_memory_mib: Option<u64>,
    /// Its runs, `[start, end)` Unix ms (every attempt).
    pub runs: Vec<(i64, i64)>,
    /// Whether its spec lets it run on spot capacity.
    pub spot_tolerant: bool,
}

/// A group of workloads with the same advice, checked by replay.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RightSizing {
    /// The workloads (ids).
    pub workloads: Vec<String>,
    /// What they ask for now, e.g. `H100-80GB: 1 whole GPU`.
    pub from: String,
    /// What they would ask for, e.g. `3g.40gb`.
    pub to: String,
    /// Cost saved per month at the window's usage.
    pub saving_per_month: Money,
    /// The two replays of the window.
    pub replay: ReplayOutcome,
    /// The advice in one sentence.
    pub message: String,
}

/// A spot-tolerant workload that ran on on-demand capacity.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpotCandidate {
    /// Id.
    pub workload: String,
    /// Queue.
    pub queue: String,
    /// What its on-demand time cost in the window.
    pub on_demand_cost: Money,
    /// What the same time costs at the spot price.
    pub spot_cost: Money,
    /// The difference, scaled to 30 days.
    pub saving_per_month: Money,
}

/// `exact` (units of [`EXACT_PER_CENT`] per cent) over `window`, scaled to 30 days and rounded.
fn monthly(exact: u128, window: Window) -> Money {
    let span = u128::try_from(window.to_ms - window.from_ms)
        .unwrap_or(1)
        .max(1);
    Money::from_exact(exact * MONTH_MS / span)
}

#[derive(Default)]
struct GpuAcc {
    model: String,
    time: u128,
    util_weighted: f64,
    util_weight: f64,
    idle: u128,
}

/// GPUs whose mean utilisation over their allocated time in `window` is under `idle_threshold`
/// percent, most idle cost first. Only GPUs with a utilisation figure are judged; usage with no GPU
/// UUID is skipped.
pub fn underused_gpus(
    usage: &[Usage],
    window: Window,
    catalogue: &Catalogue,
    idle_threshold: f64,
) -> Vec<UnderusedGpu> {
    let mut gpus: BTreeMap<&str, GpuAcc> = BTreeMap::new();
    for u in usage.iter().filter(|u| !u.gpu.is_empty()) {
        let time = gpu_time(u, window);
        if time == 0 {
            continue;
        }
        let acc = gpus.entry(&u.gpu).or_default();
        acc.model.clone_from(&u.model);
        acc.time += time;
        if let Some(m) = u.mean_utilization {
            acc.util_weighted += m * time as f64;
            acc.util_weight += time as f64;
        }
        if is_idle(u, idle_threshold) {
            acc.idle += exact_cost(u, window, catalogue).unwrap_or(0);
        }
    }
    let mut out: Vec<UnderusedGpu> = gpus
        .into_iter()
        .filter(|(_, a)| a.util_weight > 0.0)
        .map(|(gpu, a)| UnderusedGpu {
            gpu: gpu.to_string(),
            model: a.model,
            mean_utilization: a.util_weighted / a.util_weight,
            allocated_hours: hours(a.time),
            idle_cost: Money::from_exact(a.idle),
            monthly_waste: monthly(a.idle, window),
        })
        .filter(|g| g.mean_utilization < idle_threshold)
        .collect();
    out.sort_by(|a, b| b.idle_cost.cmp(&a.idle_cost).then(a.gpu.cmp(&b.gpu)));
    out
}

/// The advised request for a workload on `model` with `memory_mib` per GPU that used at most
/// `peak_mib`, with the fraction of its cost it saves as (numerator, denominator); `None` when
/// nothing smaller fits. Only one-GPU requests are advised on.
pub fn advise(
    request: &Request,
    model: &str,
    memory_mib: u64,
    peak_mib: u64,
) -> Option<(Request, u128, u128)> {
    if *request != Request::Whole(1) {
        return None;
    }
    let need = peak_mib + (peak_mib * MEMORY_HEADROOM_PCT).div_ceil(100);
    if let Some(table) = mig::table_for_model(model) {
        let profile = table
            .profiles
            .iter()
            .filter(|p| !p.media_extensions && p.compute_slices < mig::COMPUTE_SLICES)
            .filter(|p| u64::from(p.memory_mib) >= need)
            .min_by_key(|p| (p.memory_mib, p.compute_slices))?;
        let saved = u128::from(mig::COMPUTE_SLICES - profile.compute_slices);
        return Some((
            Request::Mig(profile.name.to_string()),
            saved,
            u128::from(mig::COMPUTE_SLICES),
        ));
    }
    if memory_mib == 0 {
        return None;
    }
    let tenths = (need * 10).div_ceil(memory_mib).max(1);
    let milli = u32::try_from(tenths * 100).ok()?;
    (milli <= MAX_ADVISED_SHARE).then(|| {
        (
            Request::Share {
                milli,
                memory_mib: need,
            },
            u128::from(1000 - milli),
            1000,
        )
    })
}

/// What to change: a smaller request on the same GPU model, or the same request on another model.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Advice {
    /// A MIG profile or share of the same model.
    Resize(Request),
    /// Another GPU model whose memory holds the peak and whose GPU-hour is cheaper.
    Move(String),
}

/// (model, request now, advice): workloads with the same key form one group.
type AdviceKey = (String, Request, Advice);

/// The cheapest other model (on the machine or in the catalogue's on-demand prices) whose memory
/// holds `need_mib`, with the exact cost the workload's `usage` would have had on it less what it
/// cost; `None` when no model saves anything.
fn best_move(
    model: &str,
    need_mib: u64,
    usage: &[&Usage],
    inventory: &[ReplayGpus],
    window: Window,
    catalogue: &Catalogue,
) -> Option<(String, u128)> {
    let now: u128 = usage
        .iter()
        .map(|u| exact_cost(u, window, catalogue).ok())
        .sum::<Option<u128>>()?;
    let mut candidates: Vec<(String, u64, bool)> = inventory
        .iter()
        .map(|g| (g.model.clone(), g.memory_mib, true))
        .collect();
    for (m, pool, _) in catalogue.entries() {
        if pool == Pool::OnDemand && !candidates.iter().any(|c| c.0 == m) {
            candidates.push((m.to_string(), model_memory_mib(m), false));
        }
    }
    candidates
        .into_iter()
        .filter(|(m, memory, _)| m != model && *memory >= need_mib)
        .filter_map(|(m, _, on_machine)| {
            let there: u128 = usage
                .iter()
                .map(|u| {
                    let moved = Usage {
                        model: m.clone(),
                        ..(*u).clone()
                    };
                    exact_cost(&moved, window, catalogue).ok()
                })
                .sum::<Option<u128>>()?;
            (there < now).then(|| (now - there, on_machine, m))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2)))
        .map(|(saved, _, m)| (m, saved))
}

/// Right-sizing advice for `workloads`: for each one-GPU workload with a known peak memory, the
/// advice that saves the most of a smaller request on its model ([`advise`]) and a move to another
/// model; grouped by (model, request, advice), each group replayed on this machine's GPUs
/// (`inventory`; a model not in it gets as many GPUs as runs). Sorted by GPUs freed, then saving.
pub fn right_sizing(
    workloads: &[WorkloadFacts],
    usage: &[Usage],
    inventory: &[ReplayGpus],
    window: Window,
    catalogue: &Catalogue,
) -> Vec<RightSizing> {
    let mut usage_of: BTreeMap<&str, Vec<&Usage>> = BTreeMap::new();
    for u in usage {
        usage_of.entry(&u.workload).or_default().push(u);
    }
    let gpus_of = |model: &str, runs: usize| {
        inventory
            .iter()
            .find(|g| g.model == model)
            .cloned()
            .unwrap_or_else(|| ReplayGpus {
                model: model.to_string(),
                count: u32::try_from(runs).unwrap_or(u32::MAX),
                memory_mib: model_memory_mib(model),
            })
    };
    let mut groups: BTreeMap<AdviceKey, Vec<(&WorkloadFacts, u128)>> = BTreeMap::new();
    for w in workloads {
        let Some(peak) = w.peak_memory_mib else {
            continue;
        };
        if w.request != Request::Whole(1) {
            continue;
        }
        let own = usage_of.get(w.id.as_str()).cloned().unwrap_or_default();
        let cost: u128 = own
            .iter()
            .map(|u| exact_cost(u, window, catalogue).unwrap_or(0))
            .sum();
        let memory = gpus_of(&w.model, 1).memory_mib;
        let resize = advise(&w.request, &w.model, memory, peak)
            .map(|(r, num, den)| (Advice::Resize(r), cost * num / den));
        let need = peak + (peak * MEMORY_HEADROOM_PCT).div_ceil(100);
        let moved = best_move(&w.model, need, &own, inventory, window, catalogue)
            .map(|(m, saved)| (Advice::Move(m), saved));
        let best = match (resize, moved) {
            (Some(r), Some(m)) => Some(if m.1 > r.1 { m } else { r }),
            (r, m) => r.or(m),
        };
        let Some((advice, saved)) = best else {
            continue;
        };
        groups
            .entry((w.model.clone(), w.request.clone(), advice))
            .or_default()
            .push((w, saved));
    }
    let mut out = Vec::new();
    for ((model, request, advice), members) in groups {
        let mut before = Vec::new();
        let mut after = Vec::new();
        for (w, _) in &members {
            for (i, &(start, end)) in w.runs.iter().enumerate() {
                let (start, end) = (start.max(window.from_ms), end.min(window.to_ms));
                if end <= start {
                    continue;
                }
                let job = |request: &Request| ReplayJob {
                    name: format!("{}#{i}", w.id),
                    start_ms: start,
                    end_ms: end,
                    request: request.clone(),
                };
                before.push(job(&request));
                if let Advice::Resize(r) = &advice {
                    after.push(job(r));
                }
            }
        }
        if before.is_empty() {
            continue;
        }
        let gpus = gpus_of(&model, before.len());
        let (outcome, to) = match &advice {
            Advice::Resize(r) => (
                replay::compare(&gpus, &before, &after, window.from_ms),
                r.to_string(),
            ),
            Advice::Move(target) => {
                let there = gpus_of(target, before.len());
                (
                    replay::compare_move(&gpus, &there, &before, window.from_ms),
                    format!("{target}: {request}"),
                )
            }
        };
        let Ok(outcome) = outcome else {
            continue;
        };
        let saving = monthly(members.iter().map(|(_, s)| s).sum(), window);
        let ids: Vec<String> = members.iter().map(|(w, _)| w.id.clone()).collect();
        let on_machine = |m: &str| inventory.iter().find(|g| g.model == m).map(|g| g.count);
        let message = message(
            &ids,
            &model,
            &advice,
            &outcome,
            saving,
            catalogue.currency(),
            on_machine,
        );
        out.push(RightSizing {
            workloads: ids,
            from: format!("{model}: {request}"),
            to,
            saving_per_month: saving,
            replay: outcome,
            message,
        });
    }
    out.sort_by(|a, b| {
        b.replay
            .gpus_freed
            .cmp(&a.replay.gpus_freed)
            .then(b.saving_per_month.cmp(&a.saving_per_month))
            .then(a.to.cmp(&b.to))
    });
    out
}

/// The advice in one sentence, from the replay's figures.
fn message(
    ids: &[String],
    model: &str,
    advice: &Advice,
    r: &ReplayOutcome,
    saving: Money,
    currency: &str,
    on_machine: impl Fn(&str) -> Option<u32>,
) -> String {
    let jobs = if ids.len() == 1 {
        "this job".to_string()
    } else {
        format!("these {} jobs", ids.len())
    };
    let gpus = |n: u32| if n == 1 { "GPU" } else { "GPUs" };
    let mut text = if let Advice::Move(target) = advice {
        let need = r.target_gpus.unwrap_or(0);
        let have = match on_machine(target) {
            Some(n) => format!("this machine has {n}"),
            None => "none on this machine".to_string(),
        };
        format!(
            "moving {jobs} to {target} frees {} {model} {} at peak ({} -> 0 in the replay); they need {need} {target} {} ({have}), saving {saving} {currency}/month",
            r.gpus_freed,
            gpus(r.gpus_freed),
            r.gpus_before,
            gpus(need)
        )
    } else if r.gpus_freed > 0 {
        let advice = match advice {
            Advice::Resize(a) => a.to_string(),
            Advice::Move(m) => m.clone(),
        };
        format!(
            "moving {jobs} to {advice} frees {} {model} {} at peak ({} -> {} in the replay), saving {saving} {currency}/month",
            r.gpus_freed,
            gpus(r.gpus_freed),
            r.gpus_before,
            r.gpus_after
        )
    } else {
        let advice = match advice {
            Advice::Resize(a) => a.to_string(),
            Advice::Move(m) => m.clone(),
        };
        format!(
            "moving {jobs} to {advice} frees no {model} GPU at peak ({} -> {} in the replay); it saves {saving} {currency}/month in charged cost only",
            r.gpus_before, r.gpus_after
        )
    };
    if r.delayed_after > 0 {
        text.push_str(&format!(
            ", but {} run(s) would not have started on time",
            r.delayed_after
        ));
    }
    text
}

/// The memory of a model from its key (`H100-80GB` -> 80 GiB), MiB; 0 when the key has none.
pub fn model_memory_mib(model: &str) -> u64 {
    model
        .rsplit_once('-')
        .and_then(|(_, m)| m.strip_suffix("GB"))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |gb| gb * 1024)
}

/// Spot-tolerant workloads with on-demand usage in `window` whose model has a spot price, most
/// saving first.
pub fn spot_candidates(
    workloads: &[WorkloadFacts],
    usage: &[Usage],
    window: Window,
    catalogue: &Catalogue,
) -> Vec<SpotCandidate> {
    let mut out = Vec::new();
    for w in workloads.iter().filter(|w| w.spot_tolerant) {
        let mut on_demand = 0u128;
        let mut spot = 0u128;
        let mut priced = true;
        for u in usage
            .iter()
            .filter(|u| u.workload == w.id && u.pool == Pool::OnDemand)
        {
            let as_spot = Usage {
                pool: Pool::Spot,
                ..u.clone()
            };
            match (
                exact_cost(u, window, catalogue),
                exact_cost(&as_spot, window, catalogue),
            ) {
                (Ok(a), Ok(b)) => {
                    on_demand += a;
                    spot += b;
                }
                _ => priced = false,
            }
        }
        if !priced || on_demand == 0 {
            continue;
        }
        out.push(SpotCandidate {
            workload: w.id.clone(),
            queue: w.queue.clone(),
            on_demand_cost: Money::from_exact(on_demand),
            spot_cost: Money::from_exact(spot),
            saving_per_month: monthly(on_demand.saturating_sub(spot), window),
        });
    }
    out.sort_by(|a, b| {
        b.saving_per_month
            .cmp(&a.saving_per_month)
            .then(a.workload.cmp(&b.workload))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::GpuFraction;

    const H: i64 = 3_600_000;

    fn catalogue() -> Catalogue {
        Catalogue::from_yaml(
            "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 7.00, source: t, date: 2026-01-01}\n  - {model: H100-80GB, pool: spot, per_gpu_hour: 2.80, source: t, date: 2026-01-01}\n  - {model: L4-24GB, pool: on-demand, per_gpu_hour: 1.00, source: t, date: 2026-01-01}\n",
        )
        .unwrap()
    }

    fn usage(
        workload: &str,
        gpu: &str,
        model: &str,
        start: i64,
        end: i64,
        util: Option<f64>,
    ) -> Usage {
        Usage {
            workload: workload.into(),
            owner: "o".into(),
            queue: "q".into(),
            model: model.into(),
            gpu: gpu.into(),
            pool: Pool::OnDemand,
            gpu_fraction: GpuFraction::whole(),
            start_ms: start,
            end_ms: end,
            mean_utilization: util,
        }
    }

    fn day() -> Window {
        Window {
            from_ms: 0,
            to_ms: 24 * H,
        }
    }

    #[test]
    fn an_underused_gpu_shows_its_idle_cost_and_monthly_waste() {
        // GPU-a: 2 h at 10 % then 1 h at 70 %: mean (2x10 + 1x70) / 3 = 30 % -> not under 30.
        // GPU-b: 3 h at 5 % then 1 h at 65 %: mean 20 % -> underused; idle 3 h x 7.00 = 21.00;
        // monthly: 21.00 x 30 d / 1 d = 630.00.
        let u = [
            usage("w1", "GPU-a", "H100-80GB", 0, 2 * H, Some(10.0)),
            usage("w1", "GPU-a", "H100-80GB", 2 * H, 3 * H, Some(70.0)),
            usage("w2", "GPU-b", "H100-80GB", 0, 3 * H, Some(5.0)),
            usage("w2", "GPU-b", "H100-80GB", 3 * H, 4 * H, Some(65.0)),
            usage("w3", "GPU-c", "H100-80GB", 0, 4 * H, None),
        ];
        let found = underused_gpus(&u, day(), &catalogue(), 30.0);
        assert_eq!(found.len(), 1, "{found:?}");
        let b = &found[0];
        assert_eq!(b.gpu, "GPU-b");
        assert_eq!(b.mean_utilization, 20.0);
        assert_eq!(b.allocated_hours, 4.0);
        assert_eq!(b.idle_cost.to_string(), "21.00");
        assert_eq!(b.monthly_waste.to_string(), "630.00");
        // A higher threshold catches GPU-a too (its 2 idle hours: 14.00).
        let more = underused_gpus(&u, day(), &catalogue(), 31.0);
        assert_eq!(more.len(), 2);
        assert_eq!(more[1].gpu, "GPU-a");
        assert_eq!(more[1].idle_cost.to_string(), "14.00");
    }

    #[test]
    fn advice_takes_the_smallest_profile_with_headroom() {
        let whole = Request::Whole(1);
        // 30 GiB peak + 10 % = 33 GiB: 3g.40gb (40,448 MiB), saving 4/7.
        assert_eq!(
            advise(&whole, "H100-80GB", 81_559, 30 * 1024),
            Some((Request::Mig("3g.40gb".into()), 4, 7))
        );
        // 9 GiB + 10 % = 9.9 GiB = 10,138 MiB > 1g.10gb's 9,984: 1g.20gb.
        assert_eq!(
            advise(&whole, "H100-80GB", 81_559, 9 * 1024).map(|a| a.0),
            Some(Request::Mig("1g.20gb".into()))
        );
        // 70 GiB + 10 % fits no profile under 7g.
        assert_eq!(advise(&whole, "H100-80GB", 81_559, 70 * 1024), None);
        // No MIG on an L4: a share of 24 GiB: 4 GiB + 10 % = 4,506 MiB -> 2 tenths -> 200m.
        assert_eq!(
            advise(&whole, "L4-24GB", 24 * 1024, 4 * 1024),
            Some((
                Request::Share {
                    milli: 200,
                    memory_mib: 4_506
                },
                800,
                1000
            ))
        );
        // More than half of an L4: not worth a share.
        assert_eq!(advise(&whole, "L4-24GB", 24 * 1024, 14 * 1024), None);
        // Multi-GPU and shares are not advised on.
        assert_eq!(advise(&Request::Whole(2), "H100-80GB", 81_559, 1024), None);
    }

    fn facts(id: &str, start: i64, end: i64, peak_gib: u64) -> WorkloadFacts {
        WorkloadFacts {
            id: id.into(),
            queue: "q".into(),
            model: "H100-80GB".into(),
            request: Request::Whole(1),
            peak_memory_mib: Some(peak_gib * 1024),
            runs: vec![(start, end)],
            spot_tolerant: false,
        }
    }

    #[test]
    fn right_sizing_groups_jobs_and_the_replay_confirms_the_gpus_freed() {
        // Four jobs at once, 2 h each, peak 30 GiB: 3g.40gb; two fit a GPU, so 4 GPUs -> 2.
        // Cost 4 x 2 h x 7.00 = 56.00 a day; saved 4/7 = 32.00 a day = 960.00 a month.
        let ws: Vec<WorkloadFacts> = (0..4)
            .map(|i| facts(&format!("wl-{i}"), 0, 2 * H, 30))
            .collect();
        let u: Vec<Usage> = (0..4)
            .map(|i| {
                usage(
                    &format!("wl-{i}"),
                    &format!("GPU-{i}"),
                    "H100-80GB",
                    0,
                    2 * H,
                    Some(50.0),
                )
            })
            .collect();
        let inventory = [ReplayGpus {
            model: "H100-80GB".into(),
            count: 8,
            memory_mib: 81_559,
        }];
        let advice = right_sizing(&ws, &u, &inventory, day(), &catalogue());
        assert_eq!(advice.len(), 1, "{advice:?}");
        let a = &advice[0];
        assert_eq!(a.workloads, vec!["wl-0", "wl-1", "wl-2", "wl-3"]);
        assert_eq!(a.from, "H100-80GB: 1 whole GPU");
        assert_eq!(a.to, "3g.40gb");
        assert_eq!(a.saving_per_month.to_string(), "960.00");
        assert_eq!(
            (
                a.replay.gpus_before,
                a.replay.gpus_after,
                a.replay.gpus_freed
            ),
            (4, 2, 2)
        );
        assert!(
            a.message
                .starts_with("moving these 4 jobs to 3g.40gb frees 2 H100-80GB GPUs"),
            "{}",
            a.message
        );
    }

    #[test]
    fn advice_that_frees_nothing_says_so() {
        // Two jobs one after the other: one GPU before and after.
        let ws = vec![facts("wl-1", 0, H, 5), facts("wl-2", 2 * H, 3 * H, 5)];
        let u = vec![
            usage("wl-1", "GPU-0", "H100-80GB", 0, H, Some(50.0)),
            usage("wl-2", "GPU-0", "H100-80GB", 2 * H, 3 * H, Some(50.0)),
        ];
        let inventory = [ReplayGpus {
            model: "H100-80GB".into(),
            count: 2,
            memory_mib: 81_559,
        }];
        let advice = right_sizing(&ws, &u, &inventory, day(), &catalogue());
        assert_eq!(advice.len(), 1);
        assert_eq!(advice[0].to, "1g.10gb");
        assert_eq!(advice[0].replay.gpus_freed, 0);
        assert!(
            advice[0].message.contains("frees no H100-80GB GPU"),
            "{}",
            advice[0].message
        );
        // 2 h x 7.00 x 6/7 = 12.00 a day.
        assert_eq!(advice[0].saving_per_month.to_string(), "360.00");
    }

    #[test]
    fn spot_tolerant_work_on_demand_is_priced_at_spot() {
        // 5 h on an H100: 35.00 on demand, 14.00 at spot; saving 21.00 a day = 630.00 a month.
        let mut w = facts("wl-9", 0, 5 * H, 10);
        w.spot_tolerant = true;
        let never = facts("wl-8", 0, 5 * H, 10);
        let u = vec![
            usage("wl-9", "GPU-0", "H100-80GB", 0, 5 * H, None),
            usage("wl-8", "GPU-1", "H100-80GB", 0, 5 * H, None),
        ];
        let found = spot_candidates(&[w, never], &u, day(), &catalogue());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].workload, "wl-9");
        assert_eq!(found[0].on_demand_cost.to_string(), "35.00");
        assert_eq!(found[0].spot_cost.to_string(), "14.00");
        assert_eq!(found[0].saving_per_month.to_string(), "630.00");
        // A model with no spot price is not listed (not priced at zero).
        let mut l4 = facts("wl-7", 0, H, 1);
        l4.spot_tolerant = true;
        let u = vec![usage("wl-7", "GPU-2", "L4-24GB", 0, H, None)];
        assert!(spot_candidates(&[l4], &u, day(), &catalogue()).is_empty());
    }

    #[test]
    fn model_memory_comes_from_the_key() {
        assert_eq!(model_memory_mib("H100-80GB"), 80 * 1024);
        assert_eq!(model_memory_mib("mystery"), 0);
    }

    #[test]
    fn a_cheaper_model_that_holds_the_peak_wins_and_is_replayed_on_it() {
        // Peak 4 GiB (+10 % = 4.4 GiB): a 1g.10gb slice would cost 7.00 / 7 = 1.00 an hour, a
        // T4-16GB 0.50: the move saves more. Three jobs at once, 2 h each: 3 x 2 x 6.50 = 39.00 a
        // day = 1170.00 a month. The machine has two T4s: one run would have waited.
        let c = Catalogue::from_yaml(
            "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 7.00, source: t, date: 2026-01-01}\n  - {model: T4-16GB, pool: on-demand, per_gpu_hour: 0.50, source: t, date: 2026-01-01}\n",
        )
        .unwrap();
        let ws: Vec<WorkloadFacts> = (0..3)
            .map(|i| facts(&format!("wl-{i}"), 0, 2 * H, 4))
            .collect();
        let u: Vec<Usage> = (0..3)
            .map(|i| {
                usage(
                    &format!("wl-{i}"),
                    &format!("GPU-{i}"),
                    "H100-80GB",
                    0,
                    2 * H,
                    Some(50.0),
                )
            })
            .collect();
        let inventory = [
            ReplayGpus {
                model: "H100-80GB".into(),
                count: 4,
                memory_mib: 81_559,
            },
            ReplayGpus {
                model: "T4-16GB".into(),
                count: 2,
                memory_mib: 15_360,
            },
        ];
        let advice = right_sizing(&ws, &u, &inventory, day(), &c);
        assert_eq!(advice.len(), 1, "{advice:?}");
        let a = &advice[0];
        assert_eq!(a.to, "T4-16GB: 1 whole GPU");
        assert_eq!(a.saving_per_month.to_string(), "1170.00");
        assert_eq!(
            (
                a.replay.gpus_before,
                a.replay.gpus_after,
                a.replay.gpus_freed
            ),
            (3, 0, 3)
        );
        assert_eq!(a.replay.target_gpus, Some(2));
        assert_eq!(a.replay.delayed_after, 1);
        assert!(
            a.message.contains("frees 3 H100-80GB GPUs")
                && a.message.contains("this machine has 2")
                && a.message
                    .contains("1 run(s) would not have started on time"),
            "{}",
            a.message
        );
    }
}

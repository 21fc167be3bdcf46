//! Cost accounting over a window, exact to the micro-unit and rounded to the cent so that the
//! displayed parts add up to the displayed whole.
//!
//! Each [`Usage`] interval is clipped to the window `[from, to)` and charged
//! `hours x gpu_fraction x price per GPU-hour`. All arithmetic is in integers: an interval's cost is
//! held exactly in units of 1 / (3,600,000 ms x 7,000 parts) of a micro-unit, so sums are exact and
//! only the final figures are rounded, once, to cents. The total is rounded half-up; the groups are
//! then rounded with the largest-remainder method so their cents add up to the total's exactly (the
//! same, independently, for the idle cost).
//!
//! An interval that crosses a price change (the catalogue's price history of its model and pool) is
//! cut there, each piece charged the price in force over it.
//!
//! Idle cost has interval granularity: an interval whose mean GPU utilisation is under the
//! threshold is idle in full; an interval with no utilisation figure is never counted as idle. The
//! server cuts each holding into the sample buckets of its telemetry history, so idle is counted
//! where it happened.
//! Usage of a model (or pool) the catalogue has no price for is not dropped and not priced at zero:
//! it is listed in [`Analysis::unpriced`] and its group shows `cost: null` if nothing in it was priced.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::prices::{Catalogue, Pool};

pub(crate) const MS_PER_HOUR: u128 = 3_600_000;
/// A GPU is 7,000 parts: a milli-share is 7 parts, a MIG compute slice (of 7) is 1,000.
pub(crate) const PARTS_PER_GPU: u32 = 7_000;
/// Exact units per cent: 3.6e6 ms x 7,000 parts x 10,000 micro-units.
pub(crate) const EXACT_PER_CENT: u128 = MS_PER_HOUR * PARTS_PER_GPU as u128 * 10_000;

/// The part of a GPU a usage holds, exactly: whole GPUs, a milli-share, or MIG compute slices of 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuFraction {
    parts: u32,
}

impl GpuFraction {
    /// `n` whole GPUs.
    pub fn gpus(n: u32) -> GpuFraction {
        GpuFraction {
            parts: n * PARTS_PER_GPU,
        }
    }
    /// One whole GPU.
    pub fn whole() -> GpuFraction {
        GpuFraction::gpus(1)
    }
    /// A share of `milli` thousandths of a GPU (clamped to one GPU).
    pub fn milli(milli: u32) -> GpuFraction {
        GpuFraction {
            parts: milli.min(1000) * 7,
        }
    }
    /// A MIG instance of `slices` compute slices out of 7 (clamped to 7).
    pub fn mig_slices(slices: u32) -> GpuFraction {
        GpuFraction {
            parts: slices.min(7) * 1000,
        }
    }
    /// The fraction as a number of GPUs (`0.25`).
    pub fn as_f64(self) -> f64 {
        self.parts as f64 / PARTS_PER_GPU as f64
    }
    /// The fraction in 7,000ths of a GPU.
    pub fn parts(self) -> u32 {
        self.parts
    }
}

impl Serialize for GpuFraction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

/// One interval during which a workload held (a fraction of) a GPU of one model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Usage {
    pub workload: String,
    pub owner: String,
    pub queue: String,
    /// The GPU model key, as `gantry_gpu::model_key` spells it (`H100-80GB`).
    pub model: String,
    /// The GPU's UUID (empty when unknown).
    pub gpu: String,
    pub pool: Pool,
    pub gpu_fraction: GpuFraction,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Mean GPU utilisation over the interval, in percent; `None` when unknown (never idle).
    pub mean_utilization: Option<f64>,
}

/// The window `[from_ms, to_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// What the groups are keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Queue,
    Owner,
    Workload,
    Model,
}

impl GroupBy {
    pub const ALL: [GroupBy; 4] = [
        GroupBy::Queue,
        GroupBy::Owner,
        GroupBy::Workload,
        GroupBy::Model,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Queue => "queue",
            GroupBy::Owner => "owner",
            GroupBy::Workload => "workload",
            GroupBy::Model => "model",
        }
    }

    fn key(self, u: &Usage) -> &str {
        match self {
            GroupBy::Queue => &u.queue,
            GroupBy::Owner => &u.owner,
            GroupBy::Workload => &u.workload,
            GroupBy::Model => &u.model,
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<GroupBy, String> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not one of queue, owner, workload, model"))
    }
}

/// An amount in cents (hundredths of the currency unit); serialised as a decimal string, `"3.00"`,
/// so that no script reads it back through a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money {
    pub cents: u64,
}

impl Money {
    /// An exact amount (units of [`EXACT_PER_CENT`] per cent) rounded half-up to the cent.
    pub(crate) fn from_exact(exact: u128) -> Money {
        Money {
            cents: u64::try_from((exact + EXACT_PER_CENT / 2) / EXACT_PER_CENT).unwrap_or(u64::MAX),
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.cents / 100, self.cents % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One group's share of the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    /// `None` when nothing in the group could be priced (only unknown models).
    pub cost: Option<Money>,
    pub idle_cost: Option<Money>,
    /// GPU-hours held in the window (fractions counted as such), priced or not.
    pub gpu_hours: f64,
    /// The part of `gpu_hours` with no price (listed in [`Analysis::unpriced`]).
    pub unpriced_gpu_hours: f64,
}

/// Usage that could not be priced: a model (or pool) missing from the catalogue.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnpricedUsage {
    pub model: String,
    pub pool: Pool,
    pub gpu_hours: f64,
    pub workloads: Vec<String>,
}

/// The result of [`analyse`]. `total` is the sum of the groups' `cost`, to the cent; the same for
/// `idle_total` and `idle_cost`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    pub window: Window,
    pub group_by: GroupBy,
    pub currency: String,
    pub idle_threshold: f64,
    pub total: Money,
    pub idle_total: Money,
    pub gpu_hours: f64,
    pub groups: Vec<Group>,
    pub unpriced: Vec<UnpricedUsage>,
}

impl Analysis {
    /// The distinct unknown model keys, sorted.
    pub fn unknown_models(&self) -> Vec<String> {
        let mut models: Vec<String> = self.unpriced.iter().map(|u| u.model.clone()).collect();
        models.sort();
        models.dedup();
        models
    }
}

/// Inputs [`analyse`] refuses.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the window is empty or reversed ({from_ms} .. {to_ms})")]
    Window { from_ms: i64, to_ms: i64 },
    #[error("the idle threshold must be a percentage between 0 and 100")]
    IdleThreshold,
}

#[derive(Default)]
struct Acc {
    cost: u128,
    idle: u128,
    priced: bool,
    /// ms x parts
    gpu_time: u128,
    unpriced_time: u128,
}

/// Costs `usage` over `window`, grouped by `group_by`; `idle_threshold` is a utilisation percentage.
pub fn analyse(
    usage: &[Usage],
    window: Window,
    catalogue: &Catalogue,
    group_by: GroupBy,
    idle_threshold: f64,
) -> Result<Analysis, AccountError> {
    if window.to_ms <= window.from_ms {
        return Err(AccountError::Window {
            from_ms: window.from_ms,
            to_ms: window.to_ms,
        });
    }
    if !(0.0..=100.0).contains(&idle_threshold) {
        return Err(AccountError::IdleThreshold);
    }
    let mut groups: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut unpriced: BTreeMap<(&str, Pool), (u128, Vec<String>)> = BTreeMap::new();
    for u in usage {
        let start = u.start_ms.max(window.from_ms);
        let end = u.end_ms.min(window.to_ms);
        if end <= start || u.gpu_fraction.parts == 0 {
            continue;
        }
        let time = (end - start) as u128 * u.gpu_fraction.parts as u128;
        let acc = groups.entry(group_by.key(u)).or_default();
        acc.gpu_time += time;
        match exact_cost(u, window, catalogue) {
            Ok(cost) => {
                acc.cost += cost;
                acc.priced = true;
                if is_idle(u, idle_threshold) {
                    acc.idle += cost;
                }
            }
            Err(_) => {
                acc.unpriced_time += time;
                let entry = unpriced.entry((&u.model, u.pool)).or_default();
                entry.0 += time;
                if !entry.1.contains(&u.workload) {
                    entry.1.push(u.workload.clone());
                }
            }
        }
    }
    let exact_costs: Vec<u128> = groups.values().map(|a| a.cost).collect();
    let exact_idle: Vec<u128> = groups.values().map(|a| a.idle).collect();
    let (total, cents) = apportion(&exact_costs, None);
    let (idle_total, idle_cents) = apportion(&exact_idle, Some(&cents));
    let mut out: Vec<Group> = groups
        .iter()
        .zip(cents.iter().zip(&idle_cents))
        .map(|((key, acc), (&c, &i))| Group {
            key: key.to_string(),
            cost: acc.priced.then_some(Money { cents: c }),
            idle_cost: acc.priced.then_some(Money { cents: i }),
            gpu_hours: hours(acc.gpu_time),
            unpriced_gpu_hours: hours(acc.unpriced_time),
        })
        .collect();
    out.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.key.cmp(&b.key)));
    Ok(Analysis {
        window,
        group_by,
        currency: catalogue.currency().to_string(),
        idle_threshold,
        total: Money { cents: total },
        idle_total: Money { cents: idle_total },
        gpu_hours: hours(groups.values().map(|a| a.gpu_time).sum()),
        groups: out,
        unpriced: unpriced
            .into_iter()
            .map(|((model, pool), (time, workloads))| UnpricedUsage {
                model: model.to_string(),
                pool,
                gpu_hours: hours(time),
                workloads,
            })
            .collect(),
    })
}

/// Whether `u` counts as idle under `idle_threshold` percent (never when its utilisation is unknown).
pub(crate) fn is_idle(u: &Usage, idle_threshold: f64) -> bool {
    u.mean_utilization.is_some_and(|m| m < idle_threshold)
}

/// The exact cost of `u` clipped to `window` (units of [`EXACT_PER_CENT`] per cent), cut at the
/// price changes of its model and pool.
pub(crate) fn exact_cost(
    u: &Usage,
    window: Window,
    catalogue: &Catalogue,
) -> Result<u128, crate::prices::UnknownModel> {
    let start = u.start_ms.max(window.from_ms);
    let end = u.end_ms.min(window.to_ms);
    if end <= start {
        return Ok(0);
    }
    Ok(catalogue
        .pieces(&u.model, u.pool, start, end)?
        .into_iter()
        .map(|(a, b, price)| {
            (b - a) as u128 * u.gpu_fraction.parts as u128 * price.micros_per_gpu_hour as u128
        })
        .sum())
}

/// Time `[start, end)` clipped to `window`, in ms x parts of `u`'s fraction.
pub(crate) fn gpu_time(u: &Usage, window: Window) -> u128 {
    let start = u.start_ms.max(window.from_ms);
    let end = u.end_ms.min(window.to_ms);
    if end <= start {
        0
    } else {
        (end - start) as u128 * u.gpu_fraction.parts as u128
    }
}

pub(crate) fn hours(ms_parts: u128) -> f64 {
    ms_parts as f64 / (MS_PER_HOUR as f64 * PARTS_PER_GPU as f64)
}

/// Rounds exact amounts to cents: the total half-up, then each part down, and the cents left over
/// to the parts with the largest remainders (the earliest part first on a tie), so that the parts'
/// cents add up to the total's exactly. With `caps` (the groups' rounded cost, when rounding their
/// idle part), a part is first given a cent only where that keeps it within its cap, so a group's
/// idle cost does not show more than its cost (unless no other part has a remainder to take it).
fn apportion(exact: &[u128], caps: Option<&[u64]>) -> (u64, Vec<u64>) {
    let sum: u128 = exact.iter().sum();
    let total = (sum + EXACT_PER_CENT / 2) / EXACT_PER_CENT;
    let mut cents: Vec<u128> = exact.iter().map(|v| v / EXACT_PER_CENT).collect();
    let floor_sum: u128 = cents.iter().sum();
    let mut left = total - floor_sum;
    let fits = |i: usize| caps.is_none_or(|c| cents[i] < u128::from(c[i]));
    let mut order: Vec<(bool, u128, usize)> = (0..exact.len())
        .filter(|&i| !exact[i].is_multiple_of(EXACT_PER_CENT))
        .map(|i| (fits(i), exact[i] % EXACT_PER_CENT, i))
        .collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    for (_, _, i) in order {
        if left == 0 {
            break;
        }
        cents[i] += 1;
        left -= 1;
    }
    debug_assert_eq!(left, 0);
    (total as u64, cents.into_iter().map(|c| c as u64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn catalogue() -> Catalogue {
        Catalogue::from_yaml(
            "prices:\n  - {model: G-80GB, pool: on-demand, per_gpu_hour: 2.00, source: test, date: 2026-01-01}\n  - {model: C-1GB, pool: on-demand, per_gpu_hour: 0.01, source: test, date: 2026-01-01}\n",
        )
        .unwrap()
    }

    fn usage(
        workload: &str,
        queue: &str,
        model: &str,
        f: GpuFraction,
        start: i64,
        end: i64,
    ) -> Usage {
        Usage {
            workload: workload.into(),
            owner: format!("{queue}-owner"),
            queue: queue.into(),
            model: model.into(),
            gpu: String::new(),
            pool: Pool::OnDemand,
            gpu_fraction: f,
            start_ms: start,
            end_ms: end,
            mean_utilization: None,
        }
    }

    fn window(hours: i64) -> Window {
        Window {
            from_ms: 0,
            to_ms: hours * H,
        }
    }

    fn run(u: &[Usage], w: Window, by: GroupBy) -> Analysis {
        analyse(u, w, &catalogue(), by, 30.0).unwrap()
    }

    fn cost(a: &Analysis, key: &str) -> u64 {
        a.groups
            .iter()
            .find(|g| g.key == key)
            .unwrap()
            .cost
            .unwrap()
            .cents
    }

    fn assert_adds_up(a: &Analysis) {
        let parts: u64 = a
            .groups
            .iter()
            .filter_map(|g| g.cost)
            .map(|m| m.cents)
            .sum();
        let idle: u64 = a
            .groups
            .iter()
            .filter_map(|g| g.idle_cost)
            .map(|m| m.cents)
            .sum();
        assert_eq!(parts, a.total.cents);
        assert_eq!(idle, a.idle_total.cents);
        for g in &a.groups {
            assert!(g.idle_cost <= g.cost, "{g:?}");
        }
    }

    #[test]
    fn a_whole_gpu_for_an_hour_and_a_half_at_two_per_hour_is_three() {
        let a = run(
            &[usage(
                "w",
                "q",
                "G-80GB",
                GpuFraction::whole(),
                0,
                3 * H / 2,
            )],
            window(24),
            GroupBy::Workload,
        );
        assert_eq!(a.total.to_string(), "3.00");
        assert_eq!(a.groups[0].gpu_hours, 1.5);
        assert_eq!(a.currency, "USD");
        assert_adds_up(&a);
    }

    #[test]
    fn a_quarter_share_for_two_hours_is_one() {
        let a = run(
            &[usage("w", "q", "G-80GB", GpuFraction::milli(250), 0, 2 * H)],
            window(24),
            GroupBy::Queue,
        );
        assert_eq!(a.total.to_string(), "1.00");
        assert_eq!(a.groups[0].gpu_hours, 0.5);
    }

    #[test]
    fn a_mig_slice_is_charged_its_sevenths() {
        // 3 slices of 7 for 7 hours at 2.00 = 3 GPU-hours = 6.00, exactly.
        let a = run(
            &[usage(
                "w",
                "q",
                "G-80GB",
                GpuFraction::mig_slices(3),
                0,
                7 * H,
            )],
            window(24),
            GroupBy::Queue,
        );
        assert_eq!(a.total.to_string(), "6.00");
    }

    #[test]
    fn an_interval_crossing_the_window_edges_is_clipped() {
        let w = Window {
            from_ms: 10 * H,
            to_ms: 20 * H,
        };
        let u = [
            usage("early", "q", "G-80GB", GpuFraction::whole(), 9 * H, 11 * H), // 1 h inside
            usage(
                "late",
                "q",
                "G-80GB",
                GpuFraction::whole(),
                19 * H + H / 2,
                30 * H,
            ), // 0.5 h inside
            usage("outside", "q", "G-80GB", GpuFraction::whole(), 0, 10 * H),   // ends at the edge
        ];
        let a = run(&u, w, GroupBy::Workload);
        assert_eq!(cost(&a, "early"), 200);
        assert_eq!(cost(&a, "late"), 100);
        assert!(a.groups.iter().all(|g| g.key != "outside"));
        assert_eq!(a.total.cents, 300);
    }

    #[test]
    fn a_price_override_changes_one_model_only() {
        let over = Catalogue::with_overrides(
            "prices:\n  - {model: T4-16GB, pool: on-demand, per_gpu_hour: 1.00, source: contract, date: 2026-01-01}\n",
        )
        .unwrap();
        let defaults = Catalogue::default();
        let u = [
            usage("t4", "q", "T4-16GB", GpuFraction::whole(), 0, H),
            usage("h100", "q", "H100-80GB", GpuFraction::whole(), 0, H),
        ];
        let by_default = analyse(&u, window(1), &defaults, GroupBy::Model, 30.0).unwrap();
        let overridden = analyse(&u, window(1), &over, GroupBy::Model, 30.0).unwrap();
        assert_eq!(cost(&overridden, "T4-16GB"), 100);
        assert_ne!(cost(&by_default, "T4-16GB"), 100);
        assert_eq!(
            cost(&overridden, "H100-80GB"),
            cost(&by_default, "H100-80GB")
        );
    }

    #[test]
    fn parts_add_up_to_the_total_with_awkward_thirds() {
        // Three workloads each cost a third of a cent: exact 0.333.. + 0.333.. + 0.333.. = 1 cent.
        // Rounded alone each would show 0.00 and the total 0.01; the largest remainder gives the
        // cent to one of them.
        let third = H / 3; // 20 minutes at 0.01 per hour = 1/3 cent
        let u: Vec<Usage> = ["a", "b", "c"]
            .iter()
            .map(|w| usage(w, w, "C-1GB", GpuFraction::whole(), 0, third))
            .collect();
        let a = run(&u, window(1), GroupBy::Workload);
        assert_eq!(a.total.cents, 1);
        assert_adds_up(&a);
        let mut shown: Vec<u64> = a.groups.iter().map(|g| g.cost.unwrap().cents).collect();
        shown.sort();
        assert_eq!(shown, vec![0, 0, 1]);

        // Two thirds each: 2/3 + 2/3 + 2/3 = 2 cents; naive rounding would show 1+1+1 = 3.
        let u: Vec<Usage> = ["a", "b", "c"]
            .iter()
            .map(|w| usage(w, w, "C-1GB", GpuFraction::whole(), 0, 2 * third))
            .collect();
        let a = run(&u, window(1), GroupBy::Queue);
        assert_eq!(a.total.cents, 2);
        assert_adds_up(&a);

        // Many odd shares over many workloads still add up, by every grouping.
        let u: Vec<Usage> = (0..50)
            .map(|i| {
                let mut x = usage(
                    &format!("w{i}"),
                    ["q1", "q2", "q3"][i % 3],
                    "G-80GB",
                    GpuFraction::milli(1 + 37 * i as u32 % 1000),
                    0,
                    1_234_567 + 7_777 * i as i64,
                );
                x.owner = ["ann", "bob"][i % 2].into();
                x.mean_utilization = Some((i * 7 % 100) as f64);
                x
            })
            .collect();
        for by in GroupBy::ALL {
            assert_adds_up(&run(&u, window(24), by));
        }
    }

    #[test]
    fn idle_cost_is_the_part_under_the_threshold() {
        let mut busy = usage("busy", "q", "G-80GB", GpuFraction::whole(), 0, H);
        busy.mean_utilization = Some(85.0);
        let mut idle = usage("idle", "q", "G-80GB", GpuFraction::whole(), 0, 2 * H);
        idle.mean_utilization = Some(12.5);
        let unknown = usage("unknown", "q", "G-80GB", GpuFraction::whole(), 0, H);
        let a = run(&[busy, idle, unknown], window(24), GroupBy::Workload);
        assert_eq!(a.total.cents, 800);
        assert_eq!(a.idle_total.cents, 400);
        let idle_of = |k: &str| {
            a.groups
                .iter()
                .find(|g| g.key == k)
                .unwrap()
                .idle_cost
                .unwrap()
                .cents
        };
        assert_eq!(idle_of("idle"), 400);
        assert_eq!(idle_of("busy"), 0);
        assert_eq!(idle_of("unknown"), 0);
        assert_adds_up(&a);
    }

    #[test]
    fn unknown_models_are_reported_not_priced_at_zero() {
        let u = [
            usage("known", "q", "G-80GB", GpuFraction::whole(), 0, H),
            usage("mystery", "q", "B999-1TB", GpuFraction::whole(), 0, 2 * H),
        ];
        let a = run(&u, window(24), GroupBy::Workload);
        assert_eq!(a.unknown_models(), vec!["B999-1TB".to_string()]);
        assert_eq!(a.unpriced[0].gpu_hours, 2.0);
        assert_eq!(a.unpriced[0].workloads, vec!["mystery".to_string()]);
        let mystery = a.groups.iter().find(|g| g.key == "mystery").unwrap();
        assert_eq!(mystery.cost, None);
        assert_eq!(mystery.gpu_hours, 2.0);
        assert_eq!(a.total.cents, 200);
        assert_eq!(a.gpu_hours, 3.0);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["total"], "2.00");
        assert!(
            json["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["cost"].is_null())
        );
        // A queue mixing both shows the priced part and says how much is unpriced.
        let by_queue = run(&u, window(24), GroupBy::Queue);
        assert_eq!(by_queue.groups[0].cost.unwrap().cents, 200);
        assert_eq!(by_queue.groups[0].unpriced_gpu_hours, 2.0);
    }

    #[test]
    fn the_worked_example_of_docs_cost_md() {
        let mut wl1 = usage(
            "wl-1",
            "research",
            "G-80GB",
            GpuFraction::whole(),
            0,
            3 * H / 2,
        );
        wl1.mean_utilization = Some(85.0);
        let wl2 = usage(
            "wl-2",
            "research",
            "G-80GB",
            GpuFraction::milli(250),
            0,
            2 * H,
        );
        let mut wl3 = usage("wl-3", "serving", "G-80GB", GpuFraction::whole(), 0, 2 * H);
        wl3.mean_utilization = Some(12.0);
        let a = run(&[wl1, wl2, wl3], window(24), GroupBy::Queue);
        let rows: Vec<(String, String, String, f64)> = a
            .groups
            .iter()
            .map(|g| {
                let money = |m: Option<Money>| m.unwrap().to_string();
                (
                    g.key.clone(),
                    money(g.cost),
                    money(g.idle_cost),
                    g.gpu_hours,
                )
            })
            .collect();
        let row =
            |k: &str, c: &str, i: &str, h: f64| (k.to_string(), c.to_string(), i.to_string(), h);
        assert_eq!(
            rows,
            vec![
                row("research", "4.00", "0.00", 2.0),
                row("serving", "4.00", "4.00", 2.0)
            ]
        );
        assert_eq!(
            (a.total.to_string(), a.idle_total.to_string()),
            ("8.00".into(), "4.00".into())
        );
    }

    #[test]
    fn a_group_never_shows_more_idle_than_cost() {
        // a: 0.6 cent, all idle. b: 0.5 cent idle + 0.2 cent busy. The cost total, 1.3 -> 1 cent,
        // goes to b (remainder 0.7 > 0.6); the idle total, 1.1 -> 1 cent, would go to a by
        // remainder alone (0.6 > 0.5), showing a idle 0.01 of cost 0.00; it goes to b instead.
        let at = |w: &str, start: i64, tenths: i64, util: f64| {
            let mut x = usage(
                w,
                w,
                "C-1GB",
                GpuFraction::whole(),
                start,
                start + H * tenths / 10,
            );
            x.mean_utilization = Some(util);
            x
        };
        let u = [at("a", 0, 6, 1.0), at("b", 0, 5, 1.0), at("b", H, 2, 99.0)];
        let a = run(&u, window(2), GroupBy::Workload);
        assert_eq!((a.total.cents, a.idle_total.cents), (1, 1));
        let b = a.groups.iter().find(|g| g.key == "b").unwrap();
        assert_eq!((b.cost.unwrap().cents, b.idle_cost.unwrap().cents), (1, 1));
        assert_adds_up(&a);
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(
            analyse(
                &[],
                Window {
                    from_ms: 5,
                    to_ms: 5
                },
                &catalogue(),
                GroupBy::Queue,
                30.0
            )
            .is_err()
        );
        assert_eq!(
            analyse(&[], window(1), &catalogue(), GroupBy::Queue, 130.0),
            Err(AccountError::IdleThreshold)
        );
        assert!("team".parse::<GroupBy>().unwrap_err().contains("team"));
        assert_eq!("owner".parse::<GroupBy>(), Ok(GroupBy::Owner));
    }

    #[test]
    fn a_price_change_mid_window_splits_the_interval() {
        // 2.00 until 1970-01-02, 3.00 from then. A whole GPU from 22:00 on day 1 to 02:00 on day 2:
        // 2 h x 2.00 + 2 h x 3.00 = 10.00; a quarter share over the same time: 2.50.
        let c = Catalogue::from_yaml(
            "prices:\n  - {model: G-80GB, pool: on-demand, per_gpu_hour: 2.00, source: t, date: 1970-01-01}\n  - {model: G-80GB, pool: on-demand, per_gpu_hour: 3.00, source: t, date: 1970-01-02}\n",
        )
        .unwrap();
        let u = [
            usage("whole", "a", "G-80GB", GpuFraction::whole(), 22 * H, 26 * H),
            usage(
                "share",
                "b",
                "G-80GB",
                GpuFraction::milli(250),
                22 * H,
                26 * H,
            ),
        ];
        let a = analyse(&u, window(48), &c, GroupBy::Workload, 30.0).unwrap();
        assert_eq!(cost(&a, "whole"), 1000);
        assert_eq!(cost(&a, "share"), 250);
        assert_eq!(a.total.cents, 1250);
        assert_adds_up(&a);
        // A window ending before the change sees only the old price.
        let early = Window {
            from_ms: 0,
            to_ms: 24 * H,
        };
        let a = analyse(&u, early, &c, GroupBy::Workload, 30.0).unwrap();
        assert_eq!(cost(&a, "whole"), 400);
    }

    #[test]
    fn a_preemption_mid_hour_charges_each_attempt_its_time() {
        // Attempt 1 on a whole GPU 00:10-00:35 (preempted), attempt 2 on a 3g MIG slice
        // 00:50-01:30: 25 min x 2.00 + 40 min x 3/7 x 2.00 = 0.8333.. + 0.5714.. = 1.4047.. -> 1.40.
        let u = [
            usage("w", "q", "G-80GB", GpuFraction::whole(), H / 6, H * 35 / 60),
            usage(
                "w",
                "q",
                "G-80GB",
                GpuFraction::mig_slices(3),
                H * 50 / 60,
                H * 3 / 2,
            ),
            usage("x", "r", "G-80GB", GpuFraction::milli(500), 0, H),
        ];
        let a = run(&u, window(2), GroupBy::Workload);
        assert_eq!(cost(&a, "w"), 140);
        assert_eq!(cost(&a, "x"), 100);
        assert_eq!(a.total.cents, 240);
        let hours_w = a.groups.iter().find(|g| g.key == "w").unwrap().gpu_hours;
        assert!((hours_w - (25.0 / 60.0 + 40.0 / 60.0 * 3.0 / 7.0)).abs() < 1e-12);
        for by in GroupBy::ALL {
            assert_adds_up(&run(&u, window(2), by));
        }
    }
}

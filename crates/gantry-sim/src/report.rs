//! Reports of replays: the JSON summary per (trace, policy), the per-arrival CSV and the SVG chart.

use crate::metrics::{mean_sd, median};
use crate::run::RunResult;
use crate::svg::{Series, line_chart};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Arrival percentages reported in summaries.
pub const REPORTED_ARRIVALS: [u32; 5] = [90, 100, 110, 120, 130];

/// Mean and sample standard deviation over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MeanSd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub sd: f64,
}

/// One run in a summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    /// The seed.
    pub seed: u64,
    /// Pods that arrived.
    pub pods: usize,
    /// Pods that fit nowhere.
    pub failed: usize,
    /// Wall-clock milliseconds of the run (0 when timings are off).
    pub elapsed_ms: u64,
    /// Unallocated GPU % at the reported arrival percentages reached.
    pub unallocated_gpu_pct_at: BTreeMap<u32, f64>,
}

/// The summary of one policy on one trace over several seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyReport {
    /// Policy name.
    pub policy: String,
    /// Trace name.
    pub trace: String,
    /// Seeds run.
    pub seeds: Vec<u64>,
    /// Inflation ratio of the arrivals.
    pub inflate: f64,
    /// Mean and sd over seeds of unallocated GPU % at each reported arrival %.
    pub unallocated_gpu_pct_at: BTreeMap<u32, MeanSd>,
    /// Median over seeds of unallocated GPU % at each arrival % from 75 on.
    pub median_curve: BTreeMap<u32, f64>,
    /// Per-seed results.
    pub runs: Vec<RunSummary>,
}

/// Summarises the runs of one policy on one trace.
pub fn summarize(
    trace: &str,
    inflate: f64,
    runs: &[(RunResult, Duration)],
    timings: bool,
) -> PolicyReport {
    let policy = runs
        .first()
        .map_or_else(String::new, |r| r.0.policy.name().to_string());
    let at = |x: u32| -> Vec<f64> {
        runs.iter()
            .filter_map(|(r, _)| r.curve.get(&x).copied())
            .collect()
    };
    let unallocated_gpu_pct_at = REPORTED_ARRIVALS
        .iter()
        .filter_map(|&x| {
            let v = at(x);
            (!v.is_empty()).then(|| {
                let (mean, sd) = mean_sd(&v);
                (x, MeanSd { mean, sd })
            })
        })
        .collect();
    let last = runs
        .iter()
        .filter_map(|(r, _)| r.curve.keys().next_back().copied())
        .min()
        .unwrap_or(0);
    let median_curve = (75..=last)
        .filter_map(|x| {
            let v = at(x);
            (v.len() == runs.len()).then(|| (x, median(&v)))
        })
        .collect();
    PolicyReport {
        policy,
        trace: trace.to_string(),
        seeds: runs.iter().map(|(r, _)| r.seed).collect(),
        inflate,
        unallocated_gpu_pct_at,
        median_curve,
        runs: runs
            .iter()
            .map(|(r, elapsed)| RunSummary {
                seed: r.seed,
                pods: r.pods,
                failed: r.failed,
                elapsed_ms: if timings {
                    elapsed.as_millis() as u64
                } else {
                    0
                },
                unallocated_gpu_pct_at: REPORTED_ARRIVALS
                    .iter()
                    .filter_map(|&x| r.curve.get(&x).map(|&v| (x, v)))
                    .collect(),
            })
            .collect(),
    }
}

/// Per-arrival CSV of runs: `policy,seed,arrival,arrived_milli,allocated_milli,arrived_pct,unallocated_pct`.
pub fn arrivals_csv(runs: &[&RunResult]) -> String {
    let mut out = String::from(
        "policy,seed,arrival,arrived_milli,allocated_milli,arrived_pct,unallocated_pct\n",
    );
    for r in runs {
        let cap = r.capacity_milli as f64;
        for (i, p) in r.points.iter().enumerate() {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{:.4},{:.4}",
                r.policy.name(),
                r.seed,
                i + 1,
                p.arrived_milli,
                p.allocated_milli,
                p.arrived_milli as f64 / cap * 100.0,
                100.0 - p.allocated_milli as f64 / cap * 100.0
            );
        }
    }
    out
}

/// Curve CSV: `policy,arrived_pct,median_unallocated_pct` from the reports' median curves.
pub fn curve_csv(reports: &[&PolicyReport]) -> String {
    let mut out = String::from("policy,arrived_pct,median_unallocated_pct\n");
    for r in reports {
        for (x, v) in &r.median_curve {
            let _ = writeln!(out, "{},{x},{v:.4}", r.policy);
        }
    }
    out
}

/// SVG chart of the median unallocated GPU % against arrived % (75..130), one line per policy.
pub fn curve_svg(trace: &str, reports: &[&PolicyReport]) -> String {
    let series: Vec<Series<'_>> = reports
        .iter()
        .map(|r| Series {
            label: &r.policy,
            points: r
                .median_curve
                .iter()
                .map(|(&x, &y)| (f64::from(x), y))
                .collect(),
        })
        .collect();
    line_chart(
        &format!("openb {trace}: unallocated GPU % (median over seeds)"),
        "arrived GPU demand (% of capacity)",
        "unallocated GPU %",
        (75.0, 130.0),
        &series,
    )
}

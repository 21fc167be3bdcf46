//! `gantry reproduce`: the openb reproduction table: our results beside the published ones.

use crate::seeds::{parse_policies, parse_seeds};
use crate::simulate::progress;
use anyhow::{Context, bail};
use clap::Args;
use gantry_core::Policy;
use gantry_sim::grid::{Job, run_grid};
use gantry_sim::metrics::mean_sd;
use gantry_sim::openb::read_trace;
use gantry_sim::published::published_at_100;
use gantry_sim::report::summarize;
use gantry_sim::run::Prepared;
use std::path::PathBuf;

/// Options of `gantry reproduce`.
#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// Folder with `openb_node_list_gpu_node.csv` and `openb_pod_list_*.csv`.
    #[arg(long, value_name = "DIR")]
    traces: PathBuf,
    /// Policies (default: the six published ones).
    #[arg(long, default_value = "published")]
    policy: String,
    /// Seeds.
    #[arg(long, default_value = "42-51")]
    seeds: String,
    /// Print a Markdown table (for docs/benchmarks.md).
    #[arg(long)]
    markdown: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Exit with an error when a cell differs from the published mean by more than this many points.
    #[arg(long, value_name = "POINTS")]
    check: Option<f64>,
    /// Arrival percentages to tabulate, one table each (published values exist at 100 only).
    #[arg(long, default_value = "100", value_delimiter = ',')]
    at: Vec<u32>,
    /// Add a column with the offline lower bound on unallocated GPU % (see `gantry bound`).
    #[arg(long)]
    bound: bool,
    /// Learn from this trace's pods (e.g. `default`) for every trace, instead of each trace's own.
    #[arg(long, value_name = "TRACE")]
    history: Option<String>,
    /// Traces held out while designing `gantry`, comma separated: summarised separately.
    #[arg(long, value_delimiter = ',')]
    held_out: Vec<String>,
}

/// Runs `gantry reproduce`.
pub fn run(args: ReproduceArgs) -> anyhow::Result<()> {
    let policies = parse_policies(&args.policy)?;
    let seeds = parse_seeds(&args.seeds)?;
    let nodes = args.traces.join("openb_node_list_gpu_node.csv");
    let mut pod_files: Vec<PathBuf> = std::fs::read_dir(&args.traces)
        .with_context(|| format!("--traces: cannot read {}", args.traces.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("openb_pod_list_") && n.ends_with(".csv"))
        })
        .collect();
    pod_files.sort();
    if pod_files.is_empty() {
        bail!(
            "--traces: no openb_pod_list_*.csv in {}",
            args.traces.display()
        );
    }
    let traces = pod_files
        .iter()
        .map(|p| read_trace(&nodes, p))
        .collect::<Result<Vec<_>, _>>()?;
    let history = match &args.history {
        Some(name) => Some(traces.iter().find(|t| &t.name == name).with_context(|| {
            format!(
                "--history: no trace named {name:?} in {}",
                args.traces.display()
            )
        })?),
        None => None,
    };
    let prepared = traces
        .iter()
        .map(|t| Prepared::with_history(t, history.unwrap_or(t)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut jobs = Vec::new();
    for t in 0..traces.len() {
        for &policy in &policies {
            jobs.extend(seeds.iter().map(|&seed| Job {
                trace: t,
                policy,
                seed,
            }));
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = progress(jobs.len());
    let started = std::time::Instant::now();
    let finished = run_grid(&prepared, &jobs, 1.3, threads, &|| bar.inc(1));
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let mut results = Vec::with_capacity(finished.len());
    for f in finished {
        results.push(f.context("simulation run failed")?);
    }
    let mut worst: f64 = 0.0;
    let bounds: Vec<Vec<Option<f64>>> = if args.bound {
        prepared
            .iter()
            .map(|p| {
                args.at
                    .iter()
                    .map(|&x| {
                        let per_seed = seeds
                            .iter()
                            .map(|&seed| p.lower_bound(seed, 1.3, i64::from(x)))
                            .collect::<Result<Vec<_>, _>>()?;
                        let per_seed: Vec<f64> = per_seed.into_iter().flatten().collect();
                        Ok((!per_seed.is_empty()).then(|| mean_sd(&per_seed).0))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let reports: Vec<_> = results
        .chunks(seeds.len())
        .enumerate()
        .map(|(g, chunk)| summarize(&traces[g / policies.len()].name, 1.3, chunk, true))
        .collect();
    let gantry = policies.iter().position(|&p| p == Policy::Gantry);
    for (xi, &x) in args.at.iter().enumerate() {
        let mut header: Vec<String> = Vec::new();
        if args.bound {
            header.push("bound".into());
        }
        header.extend(policies.iter().map(|p| p.name().to_string()));
        if gantry.is_some() && x == 100 {
            header.push("gantry vs published fgd".into());
        }
        println!("Unallocated GPU % at {x} % arrival");
        if args.markdown {
            println!("| trace | {} |", header.join(" | "));
            println!("|---|{}", "---|".repeat(header.len()));
        } else {
            print!("{:<12}", "trace");
            for h in &header {
                print!(" {h:>24}");
            }
            println!();
        }
        let mut ratios: Vec<(bool, f64)> = Vec::new();
        for (t, trace) in traces.iter().enumerate() {
            let held = args.held_out.iter().any(|h| h == &trace.name);
            let mut cells: Vec<String> = Vec::new();
            if args.bound {
                cells.push(bounds[t][xi].map_or("-".into(), |b| format!("{b:.2}")));
            }
            for (p, policy) in policies.iter().enumerate() {
                let report = &reports[t * policies.len() + p];
                let ours = report.unallocated_gpu_pct_at.get(&x).copied();
                let published = if x == 100 {
                    published_at_100(&trace.name, policy.name())
                } else {
                    None
                };
                cells.push(match (ours, published) {
                    (Some(o), Some(pb)) => {
                        worst = worst.max((o.mean - pb).abs());
                        format!(
                            "{:.2} ± {:.2} ({:.2}, {:+.2})",
                            o.mean,
                            o.sd,
                            pb,
                            o.mean - pb
                        )
                    }
                    (Some(o), None) => format!("{:.2} ± {:.2}", o.mean, o.sd),
                    (None, _) => "-".to_string(),
                });
            }
            if let Some(g) = gantry
                && x == 100
            {
                let ours = reports[t * policies.len() + g]
                    .unallocated_gpu_pct_at
                    .get(&100);
                let cell = match (ours, published_at_100(&trace.name, "fgd")) {
                    (Some(o), Some(fgd)) => {
                        let r = o.mean / fgd - 1.0;
                        ratios.push((held, r));
                        format!("{:+.1} %", r * 100.0)
                    }
                    _ => "-".into(),
                };
                cells.push(cell);
            }
            let name = if held {
                format!("{} (held out)", trace.name)
            } else {
                trace.name.clone()
            };
            if args.markdown {
                println!("| {name} | {} |", cells.join(" | "));
            } else {
                print!("{name:<12}");
                for c in &cells {
                    print!(" {c:>24}");
                }
                println!();
            }
        }
        if !ratios.is_empty() {
            let mean = |held: Option<bool>| {
                let v: Vec<f64> = ratios
                    .iter()
                    .filter(|(h, _)| held.is_none_or(|want| *h == want))
                    .map(|(_, r)| *r)
                    .collect();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:+.1} %", mean_sd(&v).0 * 100.0)
                }
            };
            println!();
            println!(
                "gantry vs published fgd at 100 %, mean over traces: all {}, design {}, held out {}",
                mean(None),
                mean(Some(false)),
                mean(Some(true))
            );
        }
        println!();
    }
    println!(
        "cells: mean ± sd over {} seeds (published mean, ours - published); largest |difference| from published {:.2} points; {} runs in {:.1} s on {} threads",
        seeds.len(),
        worst,
        results.len(),
        elapsed.as_secs_f64(),
        threads
    );
    if let Some(limit) = args.check
        && worst > limit
    {
        bail!(
            "largest difference from the published results is {worst:.2} points, above --check {limit}"
        );
    }
    Ok(())
}

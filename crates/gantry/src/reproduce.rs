//! `gantry reproduce`: the openb reproduction table: our results beside the published ones.

use crate::seeds::{parse_policies, parse_seeds};
use crate::simulate::progress;
use anyhow::{Context, bail};
use clap::Args;
use gantry_sim::grid::{Job, run_grid};
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
    let prepared: Vec<Prepared<'_>> = traces.iter().map(Prepared::new).collect();
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
    let header: Vec<String> = policies.iter().map(|p| p.name().to_string()).collect();
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
    for (g, chunk) in results.chunks(seeds.len()).enumerate() {
        let (t, p) = (g / policies.len(), g % policies.len());
        let report = summarize(&traces[t].name, 1.3, chunk, true);
        let ours = report.unallocated_gpu_pct_at.get(&100).copied();
        let published = published_at_100(&traces[t].name, policies[p].name());
        let cell = match (ours, published) {
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
        };
        if p == 0 {
            if args.markdown {
                print!("| {} |", traces[t].name);
            } else {
                print!("{:<12}", traces[t].name);
            }
        }
        if args.markdown {
            print!(" {cell} |");
        } else {
            print!(" {cell:>24}");
        }
        if p + 1 == policies.len() {
            println!();
        }
    }
    println!();
    println!(
        "cells: ours mean ± sd over {} seeds at 100 % arrival (published mean, ours - published); largest |difference| {:.2} points; {} runs in {:.1} s on {} threads",
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

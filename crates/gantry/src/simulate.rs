//! `gantry simulate`: trace replay under the openb protocol, with JSON, CSV and SVG reports.

use crate::seeds::{parse_policies, parse_seeds};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gantry_sim::grid::{Job, run_grid};
use gantry_sim::openb::{Trace, read_trace};
use gantry_sim::report::{
    PolicyReport, REPORTED_ARRIVALS, arrivals_csv, curve_csv, curve_svg, summarize,
};
use gantry_sim::run::{Prepared, RunResult};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options shared by every trace source.
#[derive(Args, Clone, Debug)]
pub struct SimOptions {
    /// Placement policies, comma separated (`published` = the six published ones, `all` = every one).
    #[arg(long, default_value = "gantry")]
    pub policy: String,
    /// Seeds: a range `42-51`, a list `1,2,3`, or one seed.
    #[arg(long, default_value = "42-51")]
    pub seeds: String,
    /// Inflate arrivals to this multiple of the cluster's GPU capacity (the published protocol uses 1.3).
    #[arg(long, default_value_t = 1.3)]
    pub inflate: f64,
    /// Print one JSON object per (trace, policy) on stdout (an array when there are several).
    #[arg(long)]
    pub json: bool,
    /// Write per-arrival CSVs, the median curve CSV and an SVG chart per trace into this folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Report elapsed_ms as 0, so the same seeds give byte-identical output.
    #[arg(long)]
    pub no_timings: bool,
}

/// `gantry simulate`: a trace source (default: the built-in synthetic trace) and options.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimulateArgs {
    #[command(subcommand)]
    source: Option<Source>,
    #[command(flatten)]
    opts: SimOptions,
}

#[derive(Subcommand, Debug)]
enum Source {
    /// Replay openb CSV traces (Alibaba cluster-trace-gpu-v2023) under the published protocol.
    Openb {
        /// Node list CSV (`sn,cpu_milli,memory_mib,gpu,model`).
        #[arg(long, value_name = "FILE")]
        nodes: PathBuf,
        /// Pod list CSV(s); repeat or comma-separate to run several traces on the same cluster.
        #[arg(long, value_name = "FILE", value_delimiter = ',', required = true)]
        pods: Vec<PathBuf>,
        #[command(flatten)]
        opts: SimOptions,
    },
    /// Dynamic simulation: arrivals, durations, queues, gangs, preemption and backfill.
    Scenario(crate::scenario::ScenarioArgs),
    /// Replay the built-in synthetic cluster and workload (the default).
    Synthetic {
        #[command(flatten)]
        opts: SimOptions,
    },
}

/// Loads the traces a simulate or bench command names (the synthetic one when none).
pub fn load_traces(nodes: Option<&Path>, pods: &[PathBuf]) -> anyhow::Result<Vec<Trace>> {
    match nodes {
        None => Ok(vec![gantry_sim::synthetic::synthetic_trace()]),
        Some(nodes) => pods
            .iter()
            .map(|p| read_trace(nodes, p).map_err(anyhow::Error::from))
            .collect(),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs `gantry simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let (nodes, pods, opts) = match args.source {
        Some(Source::Openb { nodes, pods, opts }) => (Some(nodes), pods, opts),
        Some(Source::Synthetic { opts }) => (None, Vec::new(), opts),
        Some(Source::Scenario(a)) => return crate::scenario::run(a),
        None => (None, Vec::new(), args.opts),
    };
    if !(opts.inflate.is_finite() && opts.inflate > 0.0 && opts.inflate <= 10.0) {
        bail!(
            "--inflate: must be a number in (0, 10], got {}",
            opts.inflate
        );
    }
    let policies = parse_policies(&opts.policy)?;
    let seeds = parse_seeds(&opts.seeds)?;
    let traces = load_traces(nodes.as_deref(), &pods)?;
    let prepared = traces
        .iter()
        .map(Prepared::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut jobs = Vec::new();
    for t in 0..prepared.len() {
        for &policy in &policies {
            for &seed in &seeds {
                jobs.push(Job {
                    trace: t,
                    policy,
                    seed,
                });
            }
        }
    }
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = progress(jobs.len());
    let finished = run_grid(&prepared, &jobs, opts.inflate, threads, &|| bar.inc(1));
    bar.finish_and_clear();
    let mut results: Vec<(RunResult, Duration)> = Vec::with_capacity(finished.len());
    for f in finished {
        results.push(f.context("simulation run failed")?);
    }
    let mut reports = Vec::new();
    let per_group = seeds.len();
    for (g, chunk) in results.chunks(per_group).enumerate() {
        let trace = &traces[g / policies.len()];
        reports.push((
            g / policies.len(),
            summarize(&trace.name, opts.inflate, chunk, !opts.no_timings),
        ));
    }
    if let Some(dir) = &opts.out {
        write_outputs(dir, &traces, &results, &reports, per_group * policies.len())?;
    }
    if opts.json {
        let only: Vec<&PolicyReport> = reports.iter().map(|(_, r)| r).collect();
        let text = if only.len() == 1 {
            serde_json::to_string_pretty(only[0])?
        } else {
            serde_json::to_string_pretty(&only)?
        };
        println!("{text}");
    } else {
        print_table(&traces, &prepared, &reports, &seeds, opts.inflate);
    }
    Ok(())
}

fn print_table(
    traces: &[Trace],
    prepared: &[Prepared<'_>],
    reports: &[(usize, PolicyReport)],
    seeds: &[u64],
    inflate: f64,
) {
    for (t, trace) in traces.iter().enumerate() {
        println!(
            "trace {}: {} nodes, {} GPUs, {} pods; arrivals inflated to {:.0} % of GPU capacity; {} seed(s)",
            trace.name,
            trace.nodes.len(),
            prepared[t].capacity_milli / 1000,
            trace.pods.len(),
            inflate * 100.0,
            seeds.len()
        );
        print!("  {:<15}", "unallocated %");
        for x in REPORTED_ARRIVALS {
            print!(" {:>13}", format!("@{x}% arrived"));
        }
        println!(" {:>8} {:>9}", "failed", "ms/run");
        for (_, r) in reports.iter().filter(|(i, _)| *i == t) {
            print!("  {:<15}", r.policy);
            for x in REPORTED_ARRIVALS {
                let cell = r.unallocated_gpu_pct_at.get(&x).map_or_else(
                    || "-".to_string(),
                    |m| format!("{:.2} ± {:.2}", m.mean, m.sd),
                );
                print!(" {cell:>13}");
            }
            let n = r.runs.len().max(1) as f64;
            let failed = r.runs.iter().map(|x| x.failed as f64).sum::<f64>() / n;
            let ms = r.runs.iter().map(|x| x.elapsed_ms as f64).sum::<f64>() / n;
            println!(" {failed:>8.0} {ms:>9.0}");
        }
    }
}

fn write_outputs(
    dir: &Path,
    traces: &[Trace],
    results: &[(RunResult, Duration)],
    reports: &[(usize, PolicyReport)],
    per_trace: usize,
) -> anyhow::Result<()> {
    for (t, trace) in traces.iter().enumerate() {
        let tdir = dir.join(&trace.name);
        std::fs::create_dir_all(&tdir)
            .with_context(|| format!("--out: cannot create {}", tdir.display()))?;
        let mine: Vec<&PolicyReport> = reports
            .iter()
            .filter(|(i, _)| *i == t)
            .map(|(_, r)| r)
            .collect();
        let runs = &results[t * per_trace..(t + 1) * per_trace];
        for r in &mine {
            let of_policy: Vec<&RunResult> = runs
                .iter()
                .map(|(x, _)| x)
                .filter(|x| x.policy.name() == r.policy)
                .collect();
            write(
                &tdir.join(format!("{}.arrivals.csv", r.policy)),
                &arrivals_csv(&of_policy),
            )?;
        }
        write(&tdir.join("curve.csv"), &curve_csv(&mine))?;
        write(
            &tdir.join("unallocated.svg"),
            &curve_svg(&trace.name, &mine),
        )?;
        write(
            &tdir.join("summary.json"),
            &serde_json::to_string_pretty(&mine)?,
        )?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

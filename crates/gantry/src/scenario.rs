//! `gantry simulate scenario`: dynamic simulation with arrivals, durations, queues, gangs, preemption
//! and backfill, on a cluster file and a workloads file (or an openb trace with its time columns).

use crate::specs::read_yaml;
use anyhow::{Context, bail};
use clap::Args;
use gantry_core::Policy;
use gantry_core::live::{Scheduler, SchedulerConfig};
use gantry_core::spec::ClusterSpec;
use gantry_sim::scenario::{
    ScenarioReport, ScenarioWorkload, charts, openb_scenario, resolve, simulate, timeline_csv,
    workloads_csv,
};
use std::path::{Path, PathBuf};

/// Options of `gantry simulate scenario`.
#[derive(Args, Debug)]
pub struct ScenarioArgs {
    /// Cluster YAML (nodes, priority classes, queues).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "nodes",
        conflicts_with = "nodes"
    )]
    cluster: Option<PathBuf>,
    /// Workloads YAML: a list of workload specs, each with `arrival` and `duration`.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    workloads: Option<PathBuf>,
    /// openb node list CSV (openb mode: arrivals and runtimes from the pod list's time columns).
    #[arg(long, value_name = "FILE", requires = "pods")]
    nodes: Option<PathBuf>,
    /// openb pod list CSV (with `creation_time,deletion_time`).
    #[arg(long, value_name = "FILE")]
    pods: Option<PathBuf>,
    /// Placement strategy (see `gantry strategies`).
    #[arg(long, default_value = "gantry")]
    policy: String,
    /// Seed for randomised strategies.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print one JSON object (`workloads`, `summary`) on stdout.
    #[arg(long)]
    json: bool,
    /// Write workloads.csv, timeline.csv, gpus-per-queue.svg, queue-length.svg and report.json here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs `gantry simulate scenario`.
pub fn run(args: ScenarioArgs) -> anyhow::Result<()> {
    let policy = Policy::from_name(&args.policy).map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    let config = SchedulerConfig {
        policy,
        ..SchedulerConfig::default()
    };
    let report = match (&args.cluster, &args.nodes) {
        (Some(cluster), _) => {
            let Some(workloads) = &args.workloads else {
                bail!("--workloads FILE is required with --cluster");
            };
            run_files(cluster, workloads, config, args.seed)?
        }
        (None, Some(nodes)) => {
            let Some(pods) = &args.pods else {
                bail!("--pods FILE is required with --nodes");
            };
            let (cluster, workloads) = openb_scenario(nodes, pods)?;
            let scheduler = Scheduler::new(cluster, &[], vec![100, 500], config);
            simulate(scheduler, workloads, args.seed)?
        }
        (None, None) => bail!("give --cluster and --workloads, or --nodes and --pods"),
    };
    if let Some(dir) = &args.out {
        write_outputs(dir, &report)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn run_files(
    cluster: &Path,
    workloads: &Path,
    config: SchedulerConfig,
    seed: u64,
) -> anyhow::Result<ScenarioReport> {
    let spec: ClusterSpec = match read_yaml(cluster)? {
        Ok(s) => s,
        Err(e) => bail!("{e}"),
    };
    if let Err(errors) = spec.validate() {
        for e in &errors {
            eprintln!("{}: {e}", cluster.display());
        }
        bail!("{}: {} problem(s)", cluster.display(), errors.len());
    }
    let items: Vec<ScenarioWorkload> = match read_yaml(workloads)? {
        Ok(s) => s,
        Err(e) => bail!("{e}"),
    };
    let scheduler = Scheduler::from_spec(&spec, config)?;
    let resolved = resolve(&spec, scheduler.cluster(), &items).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            e.to_string()
                .lines()
                .map(|l| format!("{}: {l}", workloads.display()))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    Ok(simulate(scheduler, resolved, seed)?)
}

fn write_outputs(dir: &Path, report: &ScenarioReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--out: cannot create {}", dir.display()))?;
    let (gpus, queue) = charts(report);
    for (name, text) in [
        ("workloads.csv", workloads_csv(report)),
        ("timeline.csv", timeline_csv(report)),
        ("gpus-per-queue.svg", gpus),
        ("queue-length.svg", queue),
        ("report.json", serde_json::to_string_pretty(report)?),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_summary(report: &ScenarioReport) {
    let s = &report.summary;
    println!(
        "policy {}: {} workloads, {} finished, {} never started; makespan {} s, mean JCT {:.0} s, \
         mean allocation {:.1} %, {} preemption(s), {} quota violation(s)",
        s.policy,
        report.workloads.len(),
        s.finished,
        s.never_started,
        s.makespan,
        s.mean_jct,
        s.mean_allocated_pct,
        s.preemptions,
        s.quota_violations
    );
    println!(
        "  {:<28} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "queueing delay (s)", "count", "mean", "p50", "p95", "p99"
    );
    let rows = s
        .queueing_delay_by_priority
        .iter()
        .map(|(k, v)| (format!("class {k}"), v))
        .chain(
            s.queueing_delay_by_queue
                .iter()
                .map(|(k, v)| (format!("queue {k}"), v)),
        );
    for (name, d) in rows {
        println!(
            "  {:<28} {:>6} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            name, d.count, d.mean, d.p50, d.p95, d.p99
        );
    }
    for w in report.workloads.iter().filter(|w| w.started.is_none()) {
        println!(
            "  never started: {} ({})",
            w.name,
            w.reason.as_deref().unwrap_or("")
        );
    }
}

/// Options of `gantry bench scenario`.
#[derive(Args, Debug)]
pub struct BenchScenarioArgs {
    /// Nodes (8 GPUs each).
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Pending workloads.
    #[arg(long, default_value_t = 100_000)]
    pending: usize,
    /// Placement strategy.
    #[arg(long, default_value = "gantry")]
    policy: String,
    /// Seed of the workload mix.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Cycles to time (each on a fresh scheduler); the best and the median are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// Runs `gantry bench scenario`: times one scheduling cycle over the whole pending queue.
pub fn bench(args: BenchScenarioArgs) -> anyhow::Result<()> {
    if args.repeat == 0 {
        bail!("--repeat: must be at least 1");
    }
    let policy = Policy::from_name(&args.policy).map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    let config = SchedulerConfig {
        policy,
        ..SchedulerConfig::default()
    };
    println!(
        "{:>7} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10} {:>13} {:>13}",
        "nodes",
        "gpus",
        "pending",
        "placed",
        "waiting",
        "classes",
        "best ms",
        "median ms",
        "us/placed",
        "us/considered"
    );
    let mut times = Vec::with_capacity(args.repeat);
    let mut last = None;
    for _ in 0..args.repeat {
        let mut s = gantry_sim::scenario_bench::bench_scheduler(
            args.nodes,
            args.pending,
            args.seed,
            config.clone(),
        )?;
        let mut rng = gantry_core::Rng::new(args.seed);
        let start = std::time::Instant::now();
        let out = s.cycle(0, &mut rng);
        times.push(start.elapsed().as_secs_f64());
        last = Some((out, s.cluster().groups().active().len(), s.pending().len()));
    }
    times.sort_by(f64::total_cmp);
    let (best, median) = (times[0], times[times.len() / 2]);
    if let Some((out, classes, waiting)) = last {
        let placed = out.started.len().max(1) as f64;
        println!(
            "{:>7} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10.1} {:>10.1} {:>13.2} {:>13.2}",
            args.nodes,
            args.nodes * 8,
            args.pending,
            out.started.len(),
            waiting,
            classes,
            best * 1e3,
            median * 1e3,
            median * 1e6 / placed,
            median * 1e6 / out.considered.max(1) as f64
        );
    }
    Ok(())
}

//! `gantry bench`: engine speed on a trace: wall time per replay and per placement decision.

use crate::seeds::{parse_policies, parse_seeds};
use crate::simulate::load_traces;
use anyhow::bail;
use clap::{Args, Subcommand};
use gantry_sim::run::Prepared;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `gantry bench`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// Node list CSV (default: the built-in synthetic trace).
    #[arg(long, value_name = "FILE", requires = "pods")]
    nodes: Option<PathBuf>,
    /// Pod list CSV(s), comma separated.
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pods: Vec<PathBuf>,
    /// Policies, comma separated.
    #[arg(long, default_value = "gantry")]
    policy: String,
    /// Seeds, one replay each.
    #[arg(long, default_value = "42")]
    seeds: String,
    /// Inflation ratio.
    #[arg(long, default_value_t = 1.3)]
    inflate: f64,
    /// Replays per (trace, policy, seed); the best and the median are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// What `gantry bench` measures besides trace replays.
#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// One live scheduling cycle: a large cluster, a long pending queue (see gantry_sim::scenario_bench).
    Scenario(crate::scenario::BenchScenarioArgs),
    /// The standalone server: durable submissions/s, end-to-end jobs/s, list latency (loopback HTTP).
    Serve(crate::bench_serve::BenchServeArgs),
    /// The Kubernetes scheduler: pods bound per second against a fake API (5,000 nodes by default).
    K8s(crate::k8s_cmd::BenchK8sArgs),
    /// Cost accounting on a long telemetry history: cost analysis, findings, budget check, size.
    Costs(crate::bench_costs::BenchCostsArgs),
}

/// Runs `gantry bench`: replays one at a time on one thread and reports their times.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        Some(BenchWhat::Scenario(a)) => return crate::scenario::bench(a),
        Some(BenchWhat::Serve(a)) => return crate::bench_serve::run(a),
        Some(BenchWhat::K8s(a)) => return crate::k8s_cmd::bench(a),
        Some(BenchWhat::Costs(a)) => return crate::bench_costs::run(a),
        None => {}
    }
    if args.repeat == 0 {
        bail!("--repeat: must be at least 1");
    }
    let policies = parse_policies(&args.policy)?;
    let seeds = parse_seeds(&args.seeds)?;
    let traces = load_traces(args.nodes.as_deref(), &args.pods)?;
    println!(
        "{:<12} {:<15} {:>6} {:>7} {:>10} {:>10} {:>12}",
        "trace", "policy", "seed", "pods", "best ms", "median ms", "us/decision"
    );
    for trace in &traces {
        let prepared = Prepared::new(trace)?;
        for &policy in &policies {
            for &seed in &seeds {
                let mut times = Vec::with_capacity(args.repeat);
                let mut pods = 0;
                for _ in 0..args.repeat {
                    let start = Instant::now();
                    let r = prepared.run(policy, seed, args.inflate)?;
                    times.push(start.elapsed().as_secs_f64());
                    pods = r.pods;
                }
                times.sort_by(f64::total_cmp);
                let best = times[0];
                let median = times[times.len() / 2];
                println!(
                    "{:<12} {:<15} {:>6} {:>7} {:>10.1} {:>10.1} {:>12.2}",
                    trace.name,
                    policy.name(),
                    seed,
                    pods,
                    best * 1e3,
                    median * 1e3,
                    median * 1e6 / pods.max(1) as f64
                );
            }
        }
    }
    Ok(())
}

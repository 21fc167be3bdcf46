//! `gantry bound`: the offline lower bound on unallocated GPU % per trace and seed.

use crate::seeds::parse_seeds;
use crate::simulate::load_traces;
use anyhow::Context;
use clap::Args;
use gantry_sim::metrics::mean_sd;
use gantry_sim::run::Prepared;
use std::path::PathBuf;

/// Options of `gantry bound`.
#[derive(Args, Debug)]
pub struct BoundArgs {
    /// Node list CSV (default: the built-in synthetic trace).
    #[arg(long, value_name = "FILE", requires = "pods")]
    nodes: Option<PathBuf>,
    /// Pod list CSV(s), comma separated.
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    pods: Vec<PathBuf>,
    /// Seeds.
    #[arg(long, default_value = "42-51")]
    seeds: String,
    /// Inflation ratio.
    #[arg(long, default_value_t = 1.3)]
    inflate: f64,
    /// Arrival percentages to bound, comma separated.
    #[arg(long, default_value = "100,130", value_delimiter = ',')]
    at: Vec<i64>,
    /// Print JSON: one object per trace with the per-seed bounds.
    #[arg(long)]
    json: bool,
}

/// Runs `gantry bound`.
pub fn run(args: BoundArgs) -> anyhow::Result<()> {
    let seeds = parse_seeds(&args.seeds)?;
    let traces = load_traces(args.nodes.as_deref(), &args.pods)?;
    let mut out = Vec::new();
    for trace in &traces {
        let prepared = Prepared::new(trace)?;
        let mut row = serde_json::Map::new();
        row.insert("trace".into(), trace.name.clone().into());
        row.insert("seeds".into(), seeds.clone().into());
        let mut line = format!("{:<12}", trace.name);
        for &x in &args.at {
            let mut per_seed = Vec::new();
            for &seed in &seeds {
                let b = prepared
                    .lower_bound(seed, args.inflate, x)
                    .with_context(|| format!("{} seed {seed}", trace.name))?;
                per_seed.extend(b);
            }
            let (mean, sd) = mean_sd(&per_seed);
            line.push_str(&format!("  @{x}%: {mean:.2} ± {sd:.2}"));
            row.insert(
                x.to_string(),
                serde_json::json!({"mean": mean, "sd": sd, "per_seed": per_seed}),
            );
        }
        if args.json {
            out.push(serde_json::Value::Object(row));
        } else {
            println!("{line}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

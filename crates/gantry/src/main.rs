//! `gantry`: the command-line entry point; each subcommand dispatches to a library crate.

mod bench;
mod bound;
mod reproduce;
mod seeds;
mod simulate;
mod specs;

use clap::{Parser, Subcommand};

/// Gantry: a GPU workload scheduler.
#[derive(Parser)]
#[command(name = "gantry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the placement strategies with a one-line description.
    Strategies,
    /// Replay a trace on a modelled cluster (no arguments: the built-in synthetic trace).
    Simulate(simulate::SimulateArgs),
    /// Reproduce the published openb results: our table beside theirs.
    Reproduce(reproduce::ReproduceArgs),
    /// Offline lower bound on unallocated GPU % (LP relaxation that knows every pod in advance).
    Bound(bound::BoundArgs),
    /// Measure engine speed: per-run and per-decision time of replays.
    Bench(bench::BenchArgs),
    /// Check workload and cluster YAML; print every problem as `FILE: path.to.field: problem`.
    Validate(specs::ValidateArgs),
    /// Print the JSON Schema of a workload spec or of a cluster file.
    Schema(specs::SchemaArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Strategies => {
            for p in gantry_core::policies::POLICIES {
                let tag = if p.published { " [published]" } else { "" };
                println!("{:<15} {}{tag}", p.name, p.summary);
            }
            Ok(())
        }
        Command::Simulate(args) => simulate::run(args),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Bound(args) => bound::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Validate(args) => specs::validate(args),
        Command::Schema(args) => specs::schema(args),
    }
}

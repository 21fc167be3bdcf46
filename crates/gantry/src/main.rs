//! `gantry`: the command-line entry point; each subcommand dispatches to a library crate.

mod bench;
mod bench_costs;
mod bench_serve;
mod bound;
mod budget_cmd;
mod client;
mod costs_cmd;
mod explain_cmd;
mod k8s_cmd;
mod queue_cmd;
mod reproduce;
mod scenario;
mod seeds;
mod server_cmd;
mod simulate;
mod specs;
mod template_cmd;
mod watch;

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
    /// Run the standalone scheduler for this machine (HTTP API, executor, store).
    Serve(server_cmd::ServeArgs),
    /// Run a server on simulated GPUs with a small mixed workload; prints the URL.
    Demo(server_cmd::DemoArgs),
    /// Create, list or revoke API tokens (on the server's database).
    #[command(subcommand)]
    Token(server_cmd::TokenCommand),
    /// Submit a workload: a YAML spec file, `-` for stdin, or `--gpus N -- COMMAND...`.
    Submit(client::SubmitArgs),
    /// Show one workload: state, placement, events.
    Status(client::IdArgs),
    /// Why a workload waits and when it will start, or where it runs and why there.
    Explain(explain_cmd::ExplainArgs),
    /// List workloads (filters: --state, --queue, --owner).
    Workloads(client::ListArgs),
    /// Print a workload's log (`-f` to follow).
    Logs(client::LogsArgs),
    /// Cancel a workload (a running one gets SIGTERM, then SIGKILL after the grace period).
    Cancel(client::IdArgs),
    /// Show or switch the active placement strategy.
    Strategy(client::StrategyArgs),
    /// What GPU time cost over a window, per queue, owner, workload or model, and its idle part.
    Costs(costs_cmd::CostsArgs),
    /// Queues: guaranteed quotas, cohorts with borrowing limits, fair-share weights: `set`, `list`, `delete`.
    #[command(subcommand)]
    Queue(queue_cmd::QueueCommand),
    /// Monthly budgets per queue: `set`, `list`, `delete`.
    #[command(subcommand)]
    Budget(budget_cmd::BudgetCommand),
    /// Webhooks alerts are posted to (Slack, Teams, JSON): `add`, `list`, `remove`.
    #[command(subcommand)]
    Webhook(budget_cmd::WebhookCommand),
    /// Recent alerts (budget crossings, GPU health) and their delivery state.
    Alerts(budget_cmd::AlertsArgs),
    /// Show this machine's GPUs: telemetry, health, who holds them.
    Nodes(client::ShowArgs),
    /// Check that the server is live and ready.
    Health(client::ShowArgs),
    /// Print a workload spec to start from (`--kind`, `--from-description`).
    Template(template_cmd::TemplateArgs),
    /// Live terminal view: GPUs with utilisation bars, the queue, running work (`q` quits).
    Watch(watch::WatchArgs),
    /// Kubernetes mode: CRDs, manifests, controller, scheduler, node agent, node labelling.
    #[command(subcommand)]
    K8s(k8s_cmd::K8sCommand),
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
        Command::Serve(args) => server_cmd::run(args),
        Command::Demo(args) => server_cmd::demo(args),
        Command::Token(cmd) => server_cmd::token(cmd),
        Command::Submit(args) => client::submit(args),
        Command::Status(args) => client::status(args),
        Command::Explain(args) => explain_cmd::run(args),
        Command::Workloads(args) => client::workloads(args),
        Command::Logs(args) => client::logs(args),
        Command::Cancel(args) => client::cancel(args),
        Command::Strategy(args) => client::strategy(args),
        Command::Costs(args) => costs_cmd::run(args),
        Command::Queue(cmd) => queue_cmd::queue(cmd),
        Command::Budget(cmd) => budget_cmd::budget(cmd),
        Command::Webhook(cmd) => budget_cmd::webhook(cmd),
        Command::Alerts(args) => budget_cmd::alerts(args),
        Command::Nodes(args) => client::nodes(args),
        Command::Health(args) => client::health(args),
        Command::Template(args) => template_cmd::run(args),
        Command::Watch(args) => watch::run(args),
        Command::K8s(cmd) => k8s_cmd::run(cmd),
    }
}

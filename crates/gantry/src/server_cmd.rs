//! `gantry serve`, `gantry demo` and `gantry token`: run the standalone server and manage its tokens.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gantry_gpu::DiscoverOptions;
use gantry_server::preempt::Rules;
use gantry_server::serve::{ServeConfig, serve};
use gantry_store::{Role, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `gantry serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Database file (default: $XDG_DATA_HOME/gantry/gantry.db or ~/.local/share/gantry/gantry.db).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Where workload logs go (default: `logs/` beside the database).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Serve without tokens (only on a loopback address): every caller is the local admin.
    #[arg(long)]
    no_auth: bool,
    /// Simulated GPUs instead of the machine's, e.g. `2xH100-80GB,4xA100-40GB`
    /// (grammar: `[COUNTx]MODEL[-MEMGB]`, comma separated; models H100 H200 A100 L40S L4 A10 T4 V100).
    #[arg(long, value_name = "SPEC")]
    simulate_gpus: Option<String>,
    /// Faults for the simulated GPUs, e.g. `1:xid=79@5s,2:temp=95@0s,3:ecc=2@10s` (grammar:
    /// `INDEX:FAULT[@TIME]`, comma separated; faults xid=CODE ecc=COUNT temp=C lost; time after start).
    #[arg(long, value_name = "SPEC", requires = "simulate_gpus")]
    simulate_faults: Option<String>,
    /// Run workloads as this uid:gid when the server runs as root (default 65534:65534, nobody).
    #[arg(long, value_name = "UID:GID")]
    run_as: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when a workload is cancelled or times out.
    #[arg(long, default_value_t = 10)]
    grace: u64,
    /// Allocatable CPU cores (default: the host's).
    #[arg(long)]
    cpus: Option<u32>,
    /// Allocatable memory in GiB (default: the host's).
    #[arg(long)]
    memory_gib: Option<u64>,
    /// Seconds between checks of finished workloads against their `ttlAfterFinished`.
    #[arg(long, default_value_t = 30, hide = true)]
    ttl_sweep_secs: u64,
    /// A prices file (YAML, see docs/cost.md) merged over the shipped GPU price catalogue.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Write dcgm-exporter's per-GPU job mapping files here (its `--hpc-job-mapping-dir`): one file
    /// per GPU index listing the workload ids on it, so DCGM's series get an `hpc_job` label.
    #[arg(long, value_name = "DIR")]
    hpc_job_mapping_dir: Option<PathBuf>,
    /// Alert when a GPU is at or above this temperature (C).
    #[arg(long, default_value_t = 85, value_name = "C")]
    alert_temperature: i32,
    /// Alert when an allocated GPU stays under this utilisation (%) for `--alert-idle-hours`.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    alert_idle_utilization: f64,
    /// How long an allocated GPU must stay idle before it alerts (hours).
    #[arg(long, default_value_t = 4.0, value_name = "HOURS")]
    alert_idle_hours: f64,
    /// Tries per webhook delivery before giving up (retried with exponential backoff).
    #[arg(long, default_value_t = 12)]
    alert_attempts: u32,
    /// How often each queue's spend this month is checked against its budget (seconds); the hard cap
    /// and budget alerts follow a crossing within this time.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    budget_check_interval: u64,
    /// Seconds a workload runs before higher-priority work may preempt it (SIGTERM, `--grace`,
    /// SIGKILL; then it is requeued).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    preemption_min_runtime: u64,
    /// Never stop running work for higher-priority work (it waits instead).
    #[arg(long)]
    no_preemption: bool,
}

/// The alert loop's settings from the `--alert-*` flags.
fn alert_config(args: &ServeArgs) -> anyhow::Result<gantry_server::alerts::AlertConfig> {
    if !(0.0..=100.0).contains(&args.alert_idle_utilization) {
        bail!("--alert-idle-utilization: must be a percentage between 0 and 100");
    }
    if !(args.alert_idle_hours.is_finite() && args.alert_idle_hours >= 0.0) {
        bail!("--alert-idle-hours: must be a number of hours of at least 0");
    }
    if args.budget_check_interval == 0 {
        bail!("--budget-check-interval: must be at least 1 second");
    }
    if args.alert_attempts == 0 {
        bail!("--alert-attempts: must be at least 1");
    }
    Ok(gantry_server::alerts::AlertConfig {
        temperature_c: args.alert_temperature,
        idle_below_pct: args.alert_idle_utilization,
        idle_for: Duration::from_secs_f64(args.alert_idle_hours * 3600.0),
        max_attempts: args.alert_attempts,
        budget_interval: Duration::from_secs(args.budget_check_interval),
        ..Default::default()
    })
}

fn db_path(db: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match db {
        Some(p) => Ok(p),
        None => Ok(gantry_store::default_path()?),
    }
}

fn parse_run_as(s: &str) -> anyhow::Result<gantry_exec::RunAs> {
    let (u, g) = s
        .split_once(':')
        .context("--run-as: expected UID:GID, e.g. 65534:65534")?;
    Ok(gantry_exec::RunAs {
        uid: u.parse().context("--run-as: UID is not a number")?,
        gid: g.parse().context("--run-as: GID is not a number")?,
    })
}

fn config(args: ServeArgs) -> anyhow::Result<ServeConfig> {
    let db = db_path(args.db)?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--db: cannot create {}", dir.display()))?;
    }
    let log_dir = args.log_dir.unwrap_or_else(|| {
        db.parent()
            .map_or_else(|| PathBuf::from("logs"), |d| d.join("logs"))
    });
    // SAFETY-free check of our own effective uid via /proc: root runs workloads as nobody by default.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let run_as = match (args.run_as, root) {
        (Some(s), _) => Some(parse_run_as(&s)?),
        (None, true) => Some(gantry_exec::RunAs {
            uid: 65534,
            gid: 65534,
        }),
        (None, false) => None,
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    Ok(ServeConfig {
        listen: args.listen,
        db,
        log_dir,
        auth: !args.no_auth,
        gpus: DiscoverOptions {
            simulate: args.simulate_gpus,
            simulate_faults: args.simulate_faults,
            seed: 42,
            ..DiscoverOptions::default()
        },
        run_as,
        grace: Duration::from_secs(args.grace),
        node_name: host,
        cpu_milli: args.cpus.map(|c| u64::from(c) * 1000),
        memory_mib: args.memory_gib.map(|g| g * 1024),
        ttl_sweep: Duration::from_secs(args.ttl_sweep_secs.max(1)),
        prices: args.prices,
        hpc_job_mapping_dir: args.hpc_job_mapping_dir,
        preemption: Rules {
            enabled: !args.no_preemption,
            min_runtime_ms: i64::try_from(args.preemption_min_runtime.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        },
    })
}

/// Logs to stderr, filtered by `GANTRY_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Runs `gantry serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let alerts = alert_config(&args)?;
    let config = config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(gantry_server::serve::serve_with_alerts(
        config, alerts, None,
    ))?;
    Ok(())
}

/// Options of `gantry demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Simulated GPUs.
    #[arg(long, default_value = "4xH100-80GB,2xA100-40GB")]
    simulate_gpus: String,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
}

/// The demo's mixed workload: (name, kind, priority class, gpu YAML, seconds it runs).
const DEMO: &[(&str, &str, &str, &str, u32)] = &[
    (
        "train-llm-7b",
        "training",
        "high-priority-training",
        "count: 4",
        40,
    ),
    (
        "finetune-vision",
        "training",
        "high-priority-training",
        "count: 2",
        30,
    ),
    (
        "chat-inference",
        "inference",
        "medium-priority-inference",
        "share: 500",
        60,
    ),
    (
        "embed-inference",
        "inference",
        "medium-priority-inference",
        "share: 250",
        45,
    ),
    (
        "render-assets",
        "asset-generation",
        "low-priority-batch",
        "count: 1",
        20,
    ),
    (
        "nightly-eval",
        "batch",
        "low-priority-batch",
        "count: 2",
        25,
    ),
    (
        "notebook-alice",
        "interactive",
        "medium-priority-inference",
        "share: 300",
        50,
    ),
    ("sweep-lr-1", "batch", "low-priority-batch", "count: 1", 15),
    ("sweep-lr-2", "batch", "low-priority-batch", "count: 1", 15),
    ("sweep-lr-3", "batch", "low-priority-batch", "count: 1", 15),
];

/// Runs `gantry demo`: a server on simulated GPUs in a temporary directory, fed a mixed workload.
pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    init_tracing();
    let dir = std::env::temp_dir().join(format!("gantry-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = config(ServeArgs {
        listen: args.listen,
        db: Some(dir.join("gantry.db")),
        log_dir: Some(dir.join("logs")),
        no_auth: true,
        simulate_gpus: Some(args.simulate_gpus.clone()),
        simulate_faults: None,
        run_as: None,
        grace: 5,
        cpus: Some(64),
        memory_gib: Some(512),
        ttl_sweep_secs: 30,
        prices: None,
        hpc_job_mapping_dir: None,
        alert_temperature: 85,
        alert_idle_utilization: 5.0,
        alert_idle_hours: 4.0,
        alert_attempts: 12,
        budget_check_interval: 30,
        preemption_min_runtime: 60,
        no_preemption: false,
    })?;
    if !config.listen.ip().is_loopback() {
        bail!("--listen: the demo runs without tokens, so it only listens on loopback");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve(config, Some(tx)));
        let addr = rx.await.context("the server did not start")?;
        let url = format!("http://{addr}");
        println!("gantry demo: {} simulated GPUs ({}) at {url}", args.simulate_gpus, dir.display());
        println!("  dashboard: {url}/    API docs: {url}/docs    metrics: {url}/metrics");
        println!("  try: GANTRY_SERVER={url} gantry workloads   |   gantry nodes   |   gantry logs <id> -f");
        let client = crate::client::Client::new(&url, None);
        for (name, kind, class, gpu, secs) in DEMO {
            let yaml = format!(
                "name: {name}\nkind: {kind}\npriorityClass: {class}\nresources:\n  cpu: 2\n  memory: 4Gi\n  gpu: {{{gpu}}}\nrun:\n  command: [sh, -c, 'for i in $(seq {secs}); do echo \"{name} step $i on GPUs $CUDA_VISIBLE_DEVICES\"; sleep 1; done']\n"
            );
            let c = client.clone();
            let w = tokio::task::spawn_blocking(move || c.submit_yaml(&yaml, None)).await??;
            println!("  submitted {:<16} {}  {}", w["name"].as_str().unwrap_or(""), w["id"].as_str().unwrap_or(""), w["state"].as_str().unwrap_or(""));
        }
        match args.seconds {
            Some(s) => {
                tokio::time::sleep(Duration::from_secs(s)).await;
                Ok(())
            }
            None => match server.await {
                Ok(r) => Ok(r?),
                Err(e) => Err(anyhow::anyhow!("server task failed: {e}")),
            },
        }
    })
}

/// `gantry token ...`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// Who it is for (the owner of what it submits).
        #[arg(long)]
        name: String,
        /// admin, operator, submitter or viewer.
        #[arg(long)]
        role: String,
        /// Database file (as for `gantry serve`).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// List tokens (never their secrets).
    List {
        /// Database file.
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id (from `gantry token list`).
        id: i64,
        /// Database file.
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

/// Runs `gantry token ...` directly on the database (works with the server running: WAL).
pub fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    let now = gantry_server::runner::now_ms();
    match cmd {
        TokenCommand::Create { name, role, db } => {
            let role: Role = role.parse().context("--role")?;
            let path = db_path(db)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut store = Store::open(&path)?;
            let t = store.create_token(&name, role, gantry_store::random_secret()?, "cli", now)?;
            println!("{}", t.secret);
            eprintln!(
                "token {} for {} ({}): keep it secret; it is not shown again",
                t.info.id, t.info.name, t.info.role
            );
        }
        TokenCommand::List { db } => {
            let store = Store::open(db_path(db)?)?;
            println!("{:>5}  {:<20} {:<10} state", "id", "name", "role");
            for t in store.tokens()? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{:>5}  {:<20} {:<10} {state}", t.id, t.name, t.role);
            }
        }
        TokenCommand::Revoke { id, db } => {
            let mut store = Store::open(db_path(db)?)?;
            let t = store.revoke_token(id, "cli", now)?;
            println!("revoked token {} ({})", t.id, t.name);
        }
    }
    Ok(())
}

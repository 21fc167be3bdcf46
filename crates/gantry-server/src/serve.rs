//! Starting the server: store, GPUs, the live loop, telemetry, and HTTP.

use crate::api::{self, AppState, GpuView};
use crate::db::Db;
use crate::metrics::{Metrics, gpu_labels};
use crate::runner::{Runner, RunnerConfig};
use crate::schedule::{Machine, Slot, model_key};
use gantry_core::Policy;
use gantry_core::spec::{ClusterSpec, MemoryQuantity, MilliQuantity, NodeDescription, NodeGpus};
use gantry_exec::{Backoff, RunAs};
use gantry_gpu::{Allocation, DiscoverOptions, discover};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Database file.
    pub db: PathBuf,
    /// Where workload logs go.
    pub log_dir: PathBuf,
    /// Require bearer tokens (false only on a loopback address).
    pub auth: bool,
    /// GPU discovery options (`--simulate-gpus`).
    pub gpus: DiscoverOptions,
    /// Run workloads as this user when the server is root.
    pub run_as: Option<RunAs>,
    /// Grace between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Node name in assignments (default: the host name).
    pub node_name: String,
    /// Allocatable CPU (milli) and memory (MiB); default: the host's.
    pub cpu_milli: Option<u64>,
    /// Allocatable memory in MiB.
    pub memory_mib: Option<u64>,
    /// How often finished workloads are checked against their TTL.
    pub ttl_sweep: Duration,
    /// A prices file merged over the shipped price catalogue (`--prices FILE`); `None` = the defaults.
    pub prices: Option<PathBuf>,
    /// Where to write the per-GPU job mapping files dcgm-exporter reads (`--hpc-job-mapping-dir`).
    pub hpc_job_mapping_dir: Option<PathBuf>,
    /// Whether and when higher-priority work may stop lower-priority work.
    pub preemption: crate::preempt::Rules,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `--no-auth` on an address other than loopback.
    #[error("--no-auth is only allowed on a loopback address, not {0}")]
    NoAuthOffLoopback(SocketAddr),
    /// The store could not be opened.
    #[error("store {path}: {source}")]
    Store {
        /// The database path.
        path: PathBuf,
        /// Why.
        source: crate::db::DbError,
    },
    /// GPU discovery failed (a bad `--simulate-gpus`, an unreadable XML file).
    #[error(transparent)]
    Gpu(#[from] gantry_gpu::GpuError),
    /// The prices file could not be read or is invalid (the message names the field).
    #[error("--prices {path}: {source}")]
    Prices {
        /// The file.
        path: PathBuf,
        /// Why.
        source: gantry_cost::CatalogueError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(std::io::Error),
    /// The job mapping directory could not be created.
    #[error("--hpc-job-mapping-dir: {0}")]
    JobMap(#[from] crate::jobmap::JobMapError),
    /// The log directory could not be created.
    #[error("log directory {path}: {source}")]
    LogDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The host's CPU (milli) and memory (MiB).
pub fn host_resources() -> (u64, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    (cpus * 1000, mem_kib / 1024)
}

/// This machine as a cluster description, for validating submissions: the same nodes as the
/// scheduler's (`Machine::groups`), each with its share of the CPU and memory.
pub fn cluster_of(machine: &Machine) -> ClusterSpec {
    let groups = machine.groups();
    let nodes = if groups.is_empty() {
        vec![NodeDescription {
            name: machine.name.clone(),
            labels: Default::default(),
            taints: Vec::new(),
            pool: Default::default(),
            cpu: MilliQuantity::from_milli(machine.cpu_milli),
            memory: MemoryQuantity::from_mib(machine.memory_mib.max(1)),
            gpus: None,
        }]
    } else {
        groups
            .into_iter()
            .enumerate()
            .map(|(i, (model, slots))| {
                let (cpu, memory) = machine.node_share(slots.len());
                NodeDescription {
                    name: format!("{}-{i}", machine.name),
                    labels: Default::default(),
                    taints: Vec::new(),
                    pool: Default::default(),
                    cpu: MilliQuantity::from_milli(cpu),
                    memory: MemoryQuantity::from_mib(memory.max(1)),
                    gpus: Some(NodeGpus {
                        model,
                        count: slots.len() as i64,
                        memory: None,
                        mig: Default::default(),
                        nvlink_groups: Vec::new(),
                    }),
                }
            })
            .collect()
    };
    ClusterSpec {
        priority_classes: Vec::new(),
        queues: Vec::new(),
        nodes,
    }
}

/// Runs `gantry serve` until Ctrl-C or SIGTERM; `ready` gets the bound address.
pub async fn serve(
    config: ServeConfig,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    serve_with_alerts(config, crate::alerts::AlertConfig::default(), ready).await
}

/// [`serve`] with the alert loop's settings (health thresholds, retries).
pub async fn serve_with_alerts(
    config: ServeConfig,
    alerts: crate::alerts::AlertConfig,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    if !config.auth && !config.listen.ip().is_loopback() {
        return Err(ServeError::NoAuthOffLoopback(config.listen));
    }
    let prices = match &config.prices {
        Some(path) => gantry_cost::Catalogue::load(path).map_err(|source| ServeError::Prices {
            path: path.clone(),
            source,
        })?,
        None => gantry_cost::Catalogue::default(),
    };
    std::fs::create_dir_all(&config.log_dir).map_err(|source| ServeError::LogDir {
        path: config.log_dir.clone(),
        source,
    })?;
    let db = Db::open(&config.db).map_err(|source| ServeError::Store {
        path: config.db.clone(),
        source,
    })?;
    let jobmap = match &config.hpc_job_mapping_dir {
        Some(dir) => Some(crate::jobmap::JobMap::create(dir)?),
        None => None,
    };
    let mut discovery = discover(&config.gpus)?;
    if !discovery.note().is_empty() {
        tracing::warn!("{}", discovery.note());
    }
    let (host_cpu, host_mem) = host_resources();
    let machine = Machine {
        name: config.node_name.clone(),
        slots: discovery
            .devices()
            .iter()
            .map(|d| Slot {
                index: d.index,
                uuid: d.uuid.clone(),
                model: model_key(d),
                healthy: true,
            })
            .collect(),
        cpu_milli: config.cpu_milli.unwrap_or(host_cpu),
        memory_mib: config.memory_mib.unwrap_or(host_mem),
    };
    let cluster = cluster_of(&machine);
    let stored = db.read(|s| s.strategy()).await.ok().flatten();
    let policy = stored
        .as_deref()
        .and_then(|n| Policy::from_name(n).ok())
        .unwrap_or(Policy::Gantry);
    let runner = Runner::new(
        db.clone(),
        machine.clone(),
        policy,
        RunnerConfig {
            log_dir: config.log_dir.clone(),
            run_as: config.run_as,
            grace: config.grace,
            backoff: Backoff::default(),
            ttl_sweep: config.ttl_sweep,
            preemption: config.preemption,
        },
    );
    // The declared queues (with their quotas) before the first cycle.
    match db.read(|s| s.queues()).await {
        Ok(stored) => runner.set_queues(stored.iter().map(gantry_store::Queue::to_spec).collect()),
        Err(e) => {
            tracing::error!(error = %e, "could not read the queues; every queue is unlimited")
        }
    }
    let state = Arc::new(AppState {
        db: db.clone(),
        runner: runner.clone(),
        metrics: Metrics::new(),
        gpus: Mutex::new(GpuView {
            backend: discovery.backend().name().to_string(),
            note: discovery.note().to_string(),
            snapshots: Vec::new(),
            ready: false,
        }),
        auth: config.auth,
        cluster,
        prices,
    });
    state.metrics.gpu_total.set(machine.slots.len() as i64);
    // Budgets before the first cycle, so that a capped queue's work is not admitted after a restart.
    if let Err(e) = crate::alerts::evaluate_budgets(&state, crate::runner::now_ms()).await {
        tracing::warn!(error = %e, "budget check failed");
    }
    tokio::spawn(runner.clone().run());
    tokio::spawn(crate::alerts::run(state.clone(), alerts));
    // Telemetry: poll the GPUs every 2 s, feed health to the scheduler and values to metrics.
    let telemetry_state = state.clone();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        loop {
            poll_once(
                &telemetry_state,
                &mut discovery,
                started.elapsed().as_secs_f64(),
                jobmap.as_ref(),
            )
            .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let app = api::router(state.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Http)?;
    tracing::info!(%addr, auth = config.auth, "gantry serve listening");
    if let Some(tx) = ready {
        let _ = tx.send(addr);
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(ServeError::Http)
}

async fn poll_once(
    state: &Arc<AppState>,
    discovery: &mut gantry_gpu::Discovery,
    t: f64,
    jobmap: Option<&crate::jobmap::JobMap>,
) {
    let running = state.db.read(|s| s.running()).await.unwrap_or_default();
    let mut held: HashMap<u32, u32> = HashMap::new();
    for w in &running {
        for g in w
            .assignment
            .iter()
            .flat_map(|a| a.replicas.iter().flat_map(|r| r.gpus.iter()))
        {
            *held.entry(g.index).or_default() += g.milli.unwrap_or(1000);
        }
    }
    let allocations: Vec<Allocation> = held
        .into_iter()
        .map(|(index, milli)| Allocation {
            index,
            share_milli: milli.min(1000),
        })
        .collect();
    let snapshots = discovery.poll(t, &allocations);
    let m = &state.metrics;
    let mut health = HashMap::new();
    let mut available = 0;
    for s in &snapshots {
        let labels = gpu_labels(s.device.index, &s.device.uuid, &model_key(&s.device));
        if let Some(u) = s.telemetry.utilization_gpu_pct {
            m.gpu_utilization.get_or_create(&labels).set(f64::from(u));
        }
        if let Some(mem) = s.telemetry.memory_used_mib {
            m.gpu_memory_used_bytes
                .get_or_create(&labels)
                .set(mem as f64 * 1024.0 * 1024.0);
        }
        if let Some(c) = s.telemetry.temperature_c {
            m.gpu_temperature_celsius
                .get_or_create(&labels)
                .set(f64::from(c));
        }
        if let Some(w) = s.telemetry.power_draw_w {
            m.gpu_power_watts.get_or_create(&labels).set(w);
        }
        let ok = !s.health.is_failed();
        health.insert(s.device.uuid.clone(), ok);
        if ok && !allocations.iter().any(|a| a.index == s.device.index) {
            available += 1;
        }
    }
    m.gpu_available.set(available);
    // Per-workload GPU series, allocation, cost; and the job mapping files for dcgm-exporter.
    let holdings = crate::metrics::holdings_of(&running);
    m.observe_holdings(&holdings, &snapshots, &state.prices, t);
    if let Some(map) = jobmap
        && let Err(e) = map.write(&crate::jobmap::jobs_by_gpu(&holdings))
    {
        tracing::warn!("{e}");
    }
    state.runner.set_health(&health);
    if let Ok(counts) = state.db.read(|s| s.counts_by_state_and_queue()).await {
        m.workloads.clear();
        for c in counts {
            m.workloads
                .get_or_create(&vec![
                    ("state".into(), c.state.to_string()),
                    ("queue".into(), c.queue),
                ])
                .set(c.count as i64);
        }
    }
    m.preemptions.inc_by(state.runner.take_preemptions());
    let (waits, cycles) = state.runner.take_observations();
    for w in waits {
        m.queue_wait_seconds.observe(w);
    }
    for c in cycles {
        m.scheduling_duration_seconds.observe(c);
    }
    crate::costs::record_poll(state, &running, &snapshots).await;
    let mut view = state.gpus.lock().unwrap_or_else(|e| e.into_inner());
    view.snapshots = snapshots;
    view.ready = true;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_sees_the_nodes_the_scheduler_places_on() {
        let slot = |i: u32, model: &str| Slot {
            index: i,
            uuid: format!("GPU-{i}"),
            model: model.into(),
            healthy: true,
        };
        let machine = Machine {
            name: "box".into(),
            slots: vec![
                slot(0, "H100-80GB"),
                slot(1, "H100-80GB"),
                slot(2, "H100-80GB"),
                slot(3, "A100-40GB"),
            ],
            cpu_milli: 8000,
            memory_mib: 64 * 1024,
        };
        let cluster = cluster_of(&machine);
        let sizes: Vec<(i64, u64, u64)> = cluster
            .nodes
            .iter()
            .map(|n| {
                (
                    n.gpus.as_ref().map_or(0, |g| g.count),
                    n.cpu.milli().unwrap(),
                    n.memory.mib().unwrap(),
                )
            })
            .collect();
        // Each node holds its share of the CPU and memory, as in `schedule::plan`'s layout.
        assert_eq!(sizes, vec![(3, 6000, 48 * 1024), (1, 2000, 16 * 1024)]);
        assert_eq!(
            cluster.largest_node_cpu_memory(),
            (Some(6000), Some(48 * 1024))
        );
    }
}

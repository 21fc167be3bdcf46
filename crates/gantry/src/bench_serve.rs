//! `gantry bench serve`: the standalone server's throughput and latency, measured over loopback HTTP
//! against a real server on a temporary database (durable acknowledgements, real child processes).

use crate::client::Client;
use anyhow::{Context, bail};
use clap::Args;
use gantry_core::spec::WorkloadSpec;
use gantry_gpu::DiscoverOptions;
use gantry_server::serve::{ServeConfig, serve};
use gantry_store::{NewWorkload, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Options of `gantry bench serve`.
#[derive(Args, Debug)]
pub struct BenchServeArgs {
    /// Submissions for the submission-rate phase.
    #[arg(long, default_value_t = 4000)]
    submissions: usize,
    /// Concurrent HTTP clients submitting.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Trivial jobs (`true`) for the end-to-end phase.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Workloads stored for the list-latency phase.
    #[arg(long, default_value_t = 100_000)]
    stored: usize,
    /// List requests timed.
    #[arg(long, default_value_t = 500)]
    requests: usize,
}

struct Server {
    url: String,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start(dir: tempfile::TempDir, gpus: &str) -> anyhow::Result<Server> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let config = ServeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        db: dir.path().join("g.db"),
        log_dir: dir.path().join("logs"),
        auth: false,
        gpus: DiscoverOptions {
            simulate: Some(gpus.to_string()),
            seed: 1,
            ..DiscoverOptions::default()
        },
        run_as: None,
        grace: Duration::from_secs(1),
        node_name: "bench".into(),
        cpu_milli: Some(1_000_000),
        memory_mib: Some(4 << 20),
        ttl_sweep: Duration::from_secs(30),
        prices: None,
        hpc_job_mapping_dir: None,
        preemption: Default::default(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        if let Err(e) = serve(config, Some(tx)).await {
            eprintln!("bench server: {e}");
        }
    });
    let addr = rt.block_on(rx).context("the server did not start")?;
    Ok(Server {
        url: format!("http://{addr}"),
        rt,
        _dir: dir,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn count_state(client: &Client, state: &str) -> anyhow::Result<u64> {
    let v = client.get("/api/monitoring/metrics")?;
    Ok(v["workloads"][state]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|c| c.as_u64()).sum()))
}

/// Runs `gantry bench serve`.
pub fn run(a: BenchServeArgs) -> anyhow::Result<()> {
    if a.clients == 0 || a.submissions == 0 || a.jobs == 0 || a.requests == 0 {
        bail!("--clients, --submissions, --jobs and --requests must be at least 1");
    }
    println!(
        "machine: {} CPUs; release build recommended",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // 1. Sustained durable submissions: jobs that wait (each wants all 8 GPUs; one runs).
    let server = start(tempfile::tempdir()?, "8xH100-80GB")?;
    let body = "name: wait\nresources:\n  gpu: {count: 8}\nrun:\n  command: [sleep, \"600\"]\n";
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..a.clients)
        .map(|c| {
            let client = Client::new(&server.url, None);
            let per = a.submissions / a.clients + usize::from(c < a.submissions % a.clients);
            let done = done.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let t = Instant::now();
                    client.submit_yaml(body, Some(&format!("c{c}-{i}")))?;
                    lat.push(t.elapsed().as_secs_f64());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in threads {
        lat.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    println!(
        "submissions: {} from {} clients in {secs:.2} s = {:.0}/s durable (p50 {:.2} ms, p99 {:.2} ms per request)",
        a.submissions,
        a.clients,
        a.submissions as f64 / secs,
        percentile(&lat, 0.5) * 1e3,
        percentile(&lat, 0.99) * 1e3
    );
    drop(server);

    // 2. End to end: trivial jobs (`true`, no GPU) from submission to recorded success.
    let server = start(tempfile::tempdir()?, "8xH100-80GB")?;
    let body = "name: t\nrun:\n  command: [\"true\"]\n";
    let client = Client::new(&server.url, None);
    let started = Instant::now();
    let per = a.jobs.div_ceil(a.clients);
    let threads: Vec<_> = (0..a.clients)
        .map(|c| {
            let client = Client::new(&server.url, None);
            let n = per.min(a.jobs.saturating_sub(c * per));
            std::thread::spawn(move || -> anyhow::Result<()> {
                for _ in 0..n {
                    client.submit_yaml(body, None)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let submitted = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ok = count_state(&client, "succeeded")?;
        let failed = count_state(&client, "failed")?;
        if ok + failed >= a.jobs as u64 {
            if failed > 0 {
                bail!("{failed} trivial jobs failed");
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("only {ok} of {} jobs succeeded in 300 s", a.jobs);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "end to end: {} jobs `true` submitted in {submitted:.2} s, all succeeded after {secs:.2} s = {:.0} jobs/s",
        a.jobs,
        a.jobs as f64 / secs
    );
    drop(server);

    // 3. List latency with many workloads stored (filled directly in the store, then served).
    let dir = tempfile::tempdir()?;
    fill(&dir.path().join("g.db"), a.stored)?;
    let server = start(dir, "8xH100-80GB")?;
    let client = Client::new(&server.url, None);
    for (what, path) in [
        (
            "GET /api/workloads (first page of 100)",
            "/api/workloads".to_string(),
        ),
        (
            "GET /api/workloads?state=pending&limit=100",
            "/api/workloads?state=pending&limit=100".to_string(),
        ),
        (
            "GET /api/workloads?after=wl-50000 (cursor)",
            "/api/workloads?after=wl-50000&limit=100".to_string(),
        ),
    ] {
        let mut lat = Vec::with_capacity(a.requests);
        for _ in 0..a.requests {
            let t = Instant::now();
            let v = client.get(&path)?;
            lat.push(t.elapsed().as_secs_f64());
            if v["items"].as_array().map_or(0, Vec::len) == 0 {
                bail!("{what}: empty page");
            }
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "{what} with {} stored: p50 {:.2} ms, p99 {:.2} ms ({} requests)",
            a.stored,
            percentile(&lat, 0.5) * 1e3,
            percentile(&lat, 0.99) * 1e3,
            a.requests
        );
    }
    server.rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn fill(path: &Path, n: usize) -> anyhow::Result<()> {
    let mut store = Store::open(path)?;
    let spec: WorkloadSpec = serde_json::from_value(serde_json::json!({
        "name": "stored",
        "resources": {"gpu": {"count": 8}},
        "run": {"command": ["sleep", "600"]}
    }))?;
    let batch: Vec<NewWorkload> = (0..1000)
        .map(|_| NewWorkload::from_spec(spec.clone(), "bench", 0))
        .collect();
    let mut left = n;
    while left > 0 {
        let k = left.min(batch.len());
        store.submit_batch(&batch[..k], "bench", gantry_server::runner::now_ms())?;
        left -= k;
    }
    Ok(())
}

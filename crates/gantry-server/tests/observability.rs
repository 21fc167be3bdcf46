//! The observability stack under deploy/ names only metrics that exist: every metric in every query of
//! the Grafana dashboard and every expression of the Prometheus rules is either exported by `gantry
//! serve` (read from the exposition of a real `Metrics` registry with a sample in every family) or a
//! DCGM field dcgm-exporter exports (listed below), or a series Prometheus makes itself (`up`).

use gantry_core::spec::WorkloadKind;
use gantry_cost::Catalogue;
use gantry_gpu::{GpuDevice, GpuHealth, GpuSnapshot, GpuTelemetry, XidEvent};
use gantry_server::metrics::{Holding, Metrics, gpu_labels};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// dcgm-exporter's names the dashboard and rules use (its default counters).
const DCGM: &[&str] = &[
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_XID_ERRORS",
];

/// Series Prometheus itself records for every target.
const PROMETHEUS: &[&str] = &["up"];

/// Words of PromQL that are not metric names: aggregations, keywords, literals.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The metric names a PromQL expression selects (Grafana's `$variables` allowed).
fn metric_names(expr: &str) -> BTreeSet<String> {
    // label_values(metric, label) and label_values(label): Grafana template queries.
    if let Some(inner) = expr
        .trim()
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return match inner.rsplit_once(',') {
            Some((selector, _label)) => metric_names(selector),
            None => BTreeSet::new(),
        };
    }
    // Drop string literals, label matchers, ranges and the label lists of grouping modifiers.
    let mut plain = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if !escaped && d == c {
                        break;
                    }
                    escaped = d == '\\' && !escaped;
                }
                plain.push(' ');
            }
            '{' => {
                // Label matchers, whose quoted values may hold any character.
                let mut quote = None;
                let mut escaped = false;
                for d in chars.by_ref() {
                    match quote {
                        Some(q) => {
                            if !escaped && d == q {
                                quote = None;
                            }
                            escaped = d == '\\' && !escaped;
                        }
                        None if d == '"' || d == '\'' || d == '`' => quote = Some(d),
                        None if d == '}' => break,
                        None => {}
                    }
                }
                plain.push(' ');
            }
            '[' => {
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                }
                plain.push(' ');
            }
            _ => plain.push(c),
        }
    }
    let mut names = BTreeSet::new();
    let bytes: Vec<char> = plain.chars().collect();
    let mut i = 0;
    let mut skip_list = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() || c == '.' {
            // A number, with its exponent or duration unit (`1e3`, `5m`).
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c == '$' {
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let mut j = i;
            while j < bytes.len() && bytes[j].is_whitespace() {
                j += 1;
            }
            let call = j < bytes.len() && bytes[j] == '(';
            let lower = word.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                // Its parenthesised label list follows.
                skip_list = call;
            } else if !call && !PROMQL_WORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && skip_list {
            while i < bytes.len() && bytes[i] != ')' {
                i += 1;
            }
            skip_list = false;
        }
        i += 1;
    }
    names
}

/// Every `expr` in a Grafana dashboard (panels, rows' panels) and every templating query.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((format!("panel {title:?} {}", t["refId"]), e.to_string()));
                }
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        if let Some(q) = q {
            out.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    out
}

/// Every rule expression in a Prometheus rules file, and the names its recording rules define.
fn rule_exprs(text: &str) -> (Vec<(String, String)>, BTreeSet<String>) {
    let doc: Value = serde_saphyr::from_str(text).expect("rules file is YAML");
    let mut exprs = Vec::new();
    let mut recorded = BTreeSet::new();
    for g in doc["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            if let Some(rec) = r["record"].as_str() {
                recorded.insert(rec.to_string());
            }
            let expr = r["expr"].as_str().expect("every rule has an expr");
            exprs.push((format!("rule {name}"), expr.to_string()));
        }
    }
    (exprs, recorded)
}

/// The sample names `gantry serve` exports, from the exposition of a registry with every family
/// holding a sample (a family without one prints nothing).
fn exported() -> BTreeSet<String> {
    let m = Metrics::new();
    let labels = gpu_labels(0, "GPU-0", "H100-80GB");
    m.gpu_total.set(1);
    m.gpu_available.set(1);
    m.gpu_utilization.get_or_create(&labels).set(1.0);
    m.gpu_memory_used_bytes.get_or_create(&labels).set(1.0);
    m.gpu_temperature_celsius.get_or_create(&labels).set(1.0);
    m.gpu_power_watts.get_or_create(&labels).set(1.0);
    m.workloads
        .get_or_create(&vec![
            ("state".into(), "running".into()),
            ("queue".into(), "q".into()),
        ])
        .set(1);
    m.scheduling_duration_seconds.observe(0.001);
    m.queue_wait_seconds.observe(1.0);
    m.submissions.inc();
    m.set_budget_used_ratio("q", 0.5);
    let snapshot = GpuSnapshot {
        device: GpuDevice {
            index: 0,
            uuid: "GPU-0".into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_total_mib: 81_559,
            mig: Default::default(),
            mig_devices: Vec::new(),
            pci_bus_id: "00000000:01:00.0".into(),
            nvlink_peers: Vec::new(),
            compute_capability: None,
        },
        telemetry: GpuTelemetry {
            utilization_gpu_pct: Some(50),
            memory_used_mib: Some(10),
            power_draw_w: Some(100.0),
            ecc: gantry_gpu::EccCounts {
                volatile_uncorrected: Some(0),
                aggregate_uncorrected: Some(0),
            },
            xid_events: vec![XidEvent { xid: 79, count: 1 }],
            ..Default::default()
        },
        health: GpuHealth::Ok,
    };
    let mystery = GpuSnapshot {
        device: GpuDevice {
            index: 1,
            uuid: "GPU-1".into(),
            name: "Mystery Accelerator".into(),
            ..snapshot.device.clone()
        },
        ..snapshot.clone()
    };
    let holding = |gpu: u32| Holding {
        workload: format!("wl-{}", gpu + 1),
        queue: "q".into(),
        owner: "o".into(),
        kind: gantry_server::metrics::kind_name(WorkloadKind::Training),
        gpu_index: gpu,
        gpu_uuid: Some(format!("GPU-{gpu}")),
        fraction: gantry_cost::GpuFraction::whole(),
    };
    let holdings = [holding(0), holding(1)];
    let snaps = [snapshot, mystery];
    m.observe_holdings(&holdings, &snaps, &Catalogue::default(), 0.0);
    m.observe_holdings(&holdings, &snaps, &Catalogue::default(), 10.0);
    let text = m.render();
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty()) {
            names.insert(name.to_string());
        }
    }
    names
}

fn unknown(queries: &[(String, String)], known: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (place, expr) in queries {
        for name in metric_names(expr) {
            if !known.contains(&name) {
                out.push((place.clone(), name));
            }
        }
    }
    out
}

fn known(recorded: &BTreeSet<String>) -> BTreeSet<String> {
    let mut k = exported();
    k.extend(DCGM.iter().map(|s| s.to_string()));
    k.extend(PROMETHEUS.iter().map(|s| s.to_string()));
    k.extend(recorded.iter().cloned());
    k
}

#[test]
fn promql_metric_names_are_found_and_nothing_else() {
    let got = metric_names(
        r#"sum by (queue, owner) (rate(gantry_cost_total{queue=~"$queue", x="a}b"}[$__rate_interval])) * 3600
           / on (queue) group_left (owner) gantry_budget_used_ratio offset 5m > bool 1e3
           and histogram_quantile(0.95, sum without (le) (rate(my:recorded_series[5m])))"#,
    );
    let want: BTreeSet<String> = [
        "gantry_cost_total",
        "gantry_budget_used_ratio",
        "my:recorded_series",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        metric_names("label_values(gantry_workloads{state=\"pending\"}, queue)"),
        BTreeSet::from(["gantry_workloads".to_string()])
    );
    assert!(metric_names("label_values(queue)").is_empty());
}

#[test]
fn a_query_naming_a_metric_we_do_not_export_is_caught() {
    let k = known(&BTreeSet::new());
    let queries = vec![
        ("ok".to_string(), "sum(gantry_cost_total)".to_string()),
        (
            "bad".to_string(),
            "avg(gantry_gpu_utilisation) / DCGM_FI_DEV_GPU_UTIL".to_string(),
        ),
    ];
    assert_eq!(
        unknown(&queries, &k),
        vec![("bad".to_string(), "gantry_gpu_utilisation".to_string())]
    );
}

#[test]
fn the_exposition_has_the_per_workload_cost_and_budget_families() {
    let names = exported();
    for n in [
        "gantry_workload_gpu_utilization",
        "gantry_workload_gpu_memory_used_bytes",
        "gantry_workload_gpu_power_watts",
        "gantry_workload_gpu_allocated",
        "gantry_gpu_allocated",
        "gantry_gpu_health",
        "gantry_gpu_xid_errors",
        "gantry_gpu_ecc_uncorrected_errors",
        "gantry_cost_total",
        "gantry_unpriced_gpu_seconds_total",
        "gantry_budget_used_ratio",
        "gantry_queue_wait_seconds_bucket",
        "gantry_submissions_total",
    ] {
        assert!(names.contains(n), "{n} not exported: {names:?}");
    }
}

#[test]
fn every_dashboard_and_rule_query_names_only_exported_or_dcgm_metrics() {
    let dashboard_text = std::fs::read_to_string(deploy().join("grafana/dashboards/gantry.json"))
        .expect("deploy/grafana/dashboards/gantry.json");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("the dashboard is JSON");
    let mut queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "only {} queries found", queries.len());
    let mut recorded = BTreeSet::new();
    let mut rule_count = 0;
    let rules_dir = deploy().join("prometheus/rules");
    for entry in std::fs::read_dir(&rules_dir).expect("deploy/prometheus/rules") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let (exprs, rec) = rule_exprs(&std::fs::read_to_string(&path).expect("rules file"));
            rule_count += exprs.len();
            queries.extend(exprs);
            recorded.extend(rec);
        }
    }
    assert!(rule_count >= 8, "only {rule_count} rules found");
    // Every query names at least one metric (an extractor that finds nothing would pass anything).
    for (place, expr) in &queries {
        assert!(
            !metric_names(expr).is_empty(),
            "{place}: no metric found in {expr}"
        );
    }
    let bad = unknown(&queries, &known(&recorded));
    assert!(
        bad.is_empty(),
        "queries name metrics nobody exports: {bad:#?}"
    );
    // Both sources appear: the per-GPU panels work on gantry's metrics and on DCGM's.
    let all: BTreeSet<String> = queries.iter().flat_map(|(_, e)| metric_names(e)).collect();
    for n in [
        "gantry_gpu_utilization",
        "DCGM_FI_DEV_GPU_UTIL",
        "gantry_cost_total",
        "gantry_budget_used_ratio",
    ] {
        assert!(all.contains(n), "{n} is used by no query");
    }
}

// ---------------------------------------------------------------------------------------------
// End to end: the real server (in process, real HTTP on loopback, simulated GPUs, real SQLite).
// ---------------------------------------------------------------------------------------------

/// One HTTP/1.1 request with `Connection: close`: (status, body).
fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

/// Polls `f` every 200 ms for up to `secs` seconds.
fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_running_workload_gets_its_series_its_cost_and_a_job_mapping_file_until_it_ends() {
    use gantry_server::serve::{ServeConfig, serve};
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = dir.path().join("jobs");
    let config = ServeConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        db: dir.path().join("g.db"),
        log_dir: dir.path().join("logs"),
        auth: false,
        gpus: gantry_gpu::DiscoverOptions {
            simulate: Some("2xH100-80GB".into()),
            seed: 7,
            ..Default::default()
        },
        run_as: None,
        grace: std::time::Duration::from_secs(1),
        node_name: "obs".into(),
        cpu_milli: Some(8000),
        memory_mib: Some(16 * 1024),
        ttl_sweep: std::time::Duration::from_secs(30),
        prices: None,
        hpc_job_mapping_dir: Some(jobs.clone()),
        preemption: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        if let Err(e) = serve(config, Some(tx)).await {
            eprintln!("server: {e}");
        }
    });
    let addr = rt.block_on(rx).expect("the server started");
    assert!(
        jobs.is_dir(),
        "the job mapping directory is created at start"
    );

    let spec = r#"{"name":"obs","kind":"training","resources":{"gpu":{"count":1}},"run":{"command":["sleep","60"]}}"#;
    let (status, body) = http(addr, "POST", "/api/workloads", spec);
    assert_eq!(status, 201, "{body}");
    let w: Value = serde_json::from_str(&body).expect("JSON");
    let id = w["id"].as_str().expect("an id").to_string();

    // Its GPU's mapping file names it (dcgm-exporter's format: the index as file name, ids by line).
    let mut gpu_file = None;
    wait_until(20, "the job mapping file", || {
        gpu_file = std::fs::read_dir(&jobs)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t == format!("{id}\n")));
        gpu_file.is_some()
    });
    let gpu_file = gpu_file.expect("found").path();
    let index = gpu_file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a name")
        .to_string();
    assert!(index == "0" || index == "1", "{index}");

    // The per-workload series join the GPU to the workload; cost accrues at the H100's price.
    let series = format!("gantry_workload_gpu_utilization{{gpu=\"{index}\",uuid=\"GPU-");
    let holder = format!("workload=\"{id}\",queue=\"default\",owner=\"local\",kind=\"training\"}}");
    let mut metrics = String::new();
    wait_until(20, "per-workload series and a cost", || {
        metrics = http(addr, "GET", "/metrics", "").1;
        let joined = metrics
            .lines()
            .any(|l| l.starts_with(&series) && l.contains(&holder));
        let cost = metrics
            .lines()
            .find(|l| l.starts_with("gantry_cost_total{") && l.contains("owner=\"local\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        joined && cost > 0.0
    });
    assert!(
        metrics.contains(&format!("gantry_gpu_allocated{{gpu=\"{index}\"")),
        "{metrics}"
    );

    // Cancelled: the file goes and so do its series.
    let (status, body) = http(addr, "POST", &format!("/api/workloads/{id}/cancel"), "");
    assert!(status == 200 || status == 202, "{status} {body}");
    wait_until(20, "the file and the series to go", || {
        let m = http(addr, "GET", "/metrics", "").1;
        !gpu_file.exists() && !m.contains(&format!("workload=\"{id}\""))
    });
    rt.shutdown_background();
}

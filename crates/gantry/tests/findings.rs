//! `GET /api/costs/findings` and `gantry costs findings` end to end: the real binary on loopback with
//! simulated GPUs (`2xH100-80GB,2xA100-40GB`), real child processes, and the telemetry samples the
//! server records while they run.

#[path = "server/harness.rs"]
mod harness;

use harness::{Server, text, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

/// A spec running `sleep SECS` on one whole GPU of `model`, with spot policy `spot`.
fn job(name: &str, model: &str, spot: &str, secs: u32) -> Value {
    json!({"name": name, "spot": spot,
           "resources": {"gpu": {"count": 1, "models": [model]}},
           "run": {"command": ["sleep", secs.to_string()]}})
}

fn amount(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
}

#[test]
fn findings_over_http_and_the_cli() {
    let server = Server::no_auth();
    let http = server.http();
    let tolerant = http.submit(&job("tolerant", "H100-80GB", "allow", 5));
    let strict = http.submit(&job("strict", "A100-40GB", "never", 5));
    for id in [&tolerant, &strict] {
        let w = http.wait_state(id, &["succeeded", "failed"], Duration::from_secs(30));
        assert_eq!(w["state"], "succeeded", "{w}");
    }

    // The poll loop recorded samples naming the holders: the accounting finds both workloads'
    // GPUs, and at a threshold of 100 % every allocated GPU is underused.
    let f = wait_for(
        Duration::from_secs(15),
        "underused GPUs from samples",
        || {
            let r = http.get("/api/costs/findings?window=1h&idle_threshold=100");
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.json();
            (v["underusedGpus"].as_array().map_or(0, Vec::len) == 2).then_some(v)
        },
    );
    assert_eq!(f["window"], "1h");
    assert_eq!(f["currency"], "USD");
    assert_eq!(f["idleThreshold"], 100.0);
    assert!(f["toMs"].as_i64().unwrap() - f["fromMs"].as_i64().unwrap() == 3_600_000);
    let models: Vec<&str> = f["underusedGpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["model"].as_str().unwrap())
        .collect();
    assert!(
        models.contains(&"H100-80GB") && models.contains(&"A100-40GB"),
        "{f}"
    );
    for g in f["underusedGpus"].as_array().unwrap() {
        assert!(g["gpu"].as_str().unwrap().starts_with("GPU-"), "{g}");
        assert!(g["meanUtilization"].as_f64().unwrap() < 100.0, "{g}");
        assert!(g["allocatedHours"].as_f64().unwrap() > 0.0, "{g}");
        assert!(amount(&g["monthlyWaste"]) >= amount(&g["idleCost"]), "{g}");
    }
    // Only the spot-tolerant workload is a spot candidate, and spot is cheaper.
    let spot = f["spotCandidates"].as_array().unwrap();
    assert_eq!(spot.len(), 1, "{f}");
    assert_eq!(spot[0]["workload"], tolerant.as_str());
    assert_eq!(spot[0]["queue"], "default");
    assert!(amount(&spot[0]["spotCost"]) <= amount(&spot[0]["onDemandCost"]));
    assert!(amount(&spot[0]["savingPerMonth"]) > 0.0, "{f}");
    assert!(f["rightSizing"].is_array());

    // The simulated GPUs run at 85-98 % of their allocation: nothing is underused at 30 %.
    let r = http.get("/api/costs/findings?window=1h");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["underusedGpus"], json!([]));
    assert_eq!(r.json()["idleThreshold"], 30.0);

    // Bad query parameters: a 400 naming the field.
    for (query, field) in [
        ("window=soon", "window"),
        ("window=0s", "window"),
        ("idle_threshold=150", "idle_threshold"),
        ("idle_threshold=-1", "idle_threshold"),
        ("idle_threshold=lots", "idle_threshold"),
    ] {
        let r = http.get(&format!("/api/costs/findings?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(
            r.api_error().1.as_deref(),
            Some(field),
            "{query}: {}",
            r.body
        );
    }
    let r = http.get("/api/costs/findings?group_by=queue");
    assert_eq!(r.status, 400, "{}", r.body);

    // The cost analysis charges both runs, priced.
    let r = http.get("/api/costs/analysis?window=1h&group_by=workload");
    assert_eq!(r.status, 200, "{}", r.body);
    let keys: Vec<String> = r.json()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap().to_string())
        .collect();
    assert!(
        keys.contains(&tolerant) && keys.contains(&strict),
        "{keys:?}"
    );

    // The CLI: JSON for scripts, sections for people.
    let out = server.cli(
        &[
            "costs",
            "findings",
            "--window",
            "1h",
            "--idle-threshold",
            "100",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["spotCandidates"][0]["workload"], tolerant.as_str());
    let out = server.cli(&["costs", "findings", "--window", "1h"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("GPUs under 30% utilisation:\n  none"), "{t}");
    assert!(t.contains("Right-sizing"), "{t}");
    assert!(t.contains(&tolerant), "{t}");
    // `gantry costs` itself still works beside the subcommand.
    let out = server.cli(&["costs", "--window", "1h"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("TOTAL"));
    let out = server.cli(&["costs", "findings", "--window", "never"], None);
    assert!(!out.status.success());
}

/// A workload that fails its first attempt after 3 s and succeeds in its second (3 s): the cost
/// analysis charges both attempts (about 6 s of GPU time), not only the last run.
#[test]
fn every_attempt_is_charged() {
    let server = Server::no_auth();
    let http = server.http();
    let mark = server.work().join("first-attempt-done");
    let script = format!(
        "if [ -f {m} ]; then sleep 3; else touch {m}; sleep 3; exit 1; fi",
        m = mark.display()
    );
    let id = http.submit(&json!({"name": "flaky", "retries": 1,
        "resources": {"gpu": {"count": 1, "models": ["H100-80GB"]}},
        "run": {"command": ["sh", "-c", script]}}));
    let w = http.wait_state(&id, &["succeeded"], Duration::from_secs(40));
    assert_eq!(w["attempts"], 2, "{w}");
    let last_run_ms = w["finishedAt"].as_i64().unwrap() - w["startedAt"].as_i64().unwrap();
    let r = http.get("/api/costs/analysis?window=1h&group_by=workload");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let group = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    let held_ms = group["gpu_hours"].as_f64().unwrap() * 3_600_000.0;
    assert!(held_ms >= 5_900.0, "{held_ms} ms held: {v}");
    assert!(
        held_ms > last_run_ms as f64 + 2_500.0,
        "{held_ms} vs last run {last_run_ms}"
    );
    // Both attempts ran on an H100 (the first one's GPU is known from the samples): all priced.
    assert_eq!(group["unpriced_gpu_hours"], 0.0, "{v}");
}

//! `GET /api/costs/analysis` and `gantry costs` end to end: the real `gantry serve` (simulated
//! `2xH100-80GB,2xA100-40GB`) with a `--prices` file, two short workloads, and the groups checked
//! to add up to the total to the cent by every grouping.

#[path = "server/harness.rs"]
mod harness;

use harness::{Opts, Server, bin, free_port, text};
use serde_json::{Value, json};
use std::time::Duration;

/// Prices high enough that a sub-second workload costs whole cents: H100 one dollar a second.
const PRICES: &str = "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 3600, source: test, date: 2026-01-01}\n  - {model: A100-40GB, pool: on-demand, per_gpu_hour: 1800, source: test, date: 2026-01-01}\n";

fn cents(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not an amount: {v}"));
    let (units, hundredths) = s.split_once('.').expect("a decimal amount");
    assert_eq!(hundredths.len(), 2, "{s}");
    units.parse::<u64>().unwrap() * 100 + hundredths.parse::<u64>().unwrap()
}

fn prices_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.yaml");
    std::fs::write(&path, PRICES).unwrap();
    (dir, path.display().to_string())
}

fn job(name: &str, model: &str) -> Value {
    json!({"name": name, "resources": {"gpu": {"count": 1, "models": [model]}},
           "run": {"command": ["sh", "-c", "sleep 0.4"]}})
}

fn assert_adds_up(v: &Value) {
    let groups = v["groups"].as_array().expect("groups");
    let sum: u64 = groups
        .iter()
        .filter(|g| !g["cost"].is_null())
        .map(|g| cents(&g["cost"]))
        .sum();
    let idle: u64 = groups
        .iter()
        .filter(|g| !g["idle_cost"].is_null())
        .map(|g| cents(&g["idle_cost"]))
        .sum();
    assert_eq!(sum, cents(&v["total"]), "{v}");
    assert_eq!(idle, cents(&v["idle_total"]), "{v}");
}

#[test]
fn the_analysis_adds_up_by_every_grouping_and_names_bad_parameters() {
    let (_prices_dir, prices) = prices_file();
    let server = Server::start(Opts {
        no_auth: true,
        extra: vec!["--grace".into(), "1".into(), "--prices".into(), prices],
    });
    let http = server.http();
    let a = http.submit(&job("on-h100", "H100-80GB"));
    let b = http.submit(&job("on-a100", "A100-40GB"));
    for id in [&a, &b] {
        http.wait_state(id, &["succeeded"], Duration::from_secs(30));
    }

    let r = http.get("/api/costs/analysis?window=1h&group_by=workload");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["currency"], "USD");
    assert_eq!(v["window"], "1h");
    assert_eq!(v["unknown_models"], json!([]));
    assert_adds_up(&v);
    let total = cents(&v["total"]);
    // At least 0.4 s on an H100 ($1/s) and 0.4 s on an A100 ($0.50/s).
    assert!(total >= 60, "{v}");
    let keys: Vec<&str> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["key"].as_str())
        .collect();
    assert!(
        keys.contains(&a.as_str()) && keys.contains(&b.as_str()),
        "{v}"
    );

    for by in ["queue", "owner", "model"] {
        let r = http.get(&format!("/api/costs/analysis?window=1h&group_by={by}"));
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_adds_up(&v);
        assert_eq!(
            cents(&v["total"]),
            total,
            "finished work costs the same by {by}"
        );
    }
    let by_model = http
        .get("/api/costs/analysis?window=24h&group_by=model")
        .json();
    let models: Vec<&str> = by_model["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["key"].as_str())
        .collect();
    assert_eq!(models.len(), 2, "{by_model}");
    assert!(
        models.contains(&"H100-80GB") && models.contains(&"A100-40GB"),
        "{by_model}"
    );

    let r = http.get("/api/costs/analysis?group_by=team");
    let (_, field) = r.api_error();
    assert_eq!(r.status, 400);
    assert_eq!(field.as_deref(), Some("group_by"), "{}", r.body);
    let (_, field) = http.get("/api/costs/analysis?window=soon").api_error();
    assert_eq!(field.as_deref(), Some("window"));
    let (_, field) = http
        .get("/api/costs/analysis?idle_threshold=150")
        .api_error();
    assert_eq!(field.as_deref(), Some("idle_threshold"));

    // The CLI: JSON for scripts, a table for people.
    let out = server.cli(
        &["costs", "--by", "model", "--window", "1h", "--json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cents(&v["total"]), total);
    let out = server.cli(&["costs", "--window", "1h"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("TOTAL")), "{table}");
    assert!(table.contains("default"), "{table}");
}

#[test]
fn a_submitter_sees_only_its_own_cost() {
    let (_prices_dir, prices) = prices_file();
    let server = Server::start(Opts {
        no_auth: false,
        extra: vec!["--grace".into(), "1".into(), "--prices".into(), prices],
    });
    let (_, alice) = server.token("alice", "submitter");
    let (_, bob) = server.token("bob", "submitter");
    let (_, ops) = server.token("ops", "operator");
    let a = server
        .http_as(&alice)
        .submit(&job("alice-job", "H100-80GB"));
    let b = server.http_as(&bob).submit(&job("bob-job", "H100-80GB"));
    for id in [&a, &b] {
        server
            .http_as(&ops)
            .wait_state(id, &["succeeded"], Duration::from_secs(30));
    }
    let mine = server
        .http_as(&alice)
        .get("/api/costs/analysis?window=1h&group_by=owner")
        .json();
    let owners: Vec<&str> = mine["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["key"].as_str())
        .collect();
    assert_eq!(owners, vec!["alice"], "{mine}");
    let all = server
        .http_as(&ops)
        .get("/api/costs/analysis?window=1h&group_by=owner")
        .json();
    assert_eq!(all["groups"].as_array().unwrap().len(), 2, "{all}");
    assert_adds_up(&all);
    assert_eq!(server.http().get("/api/costs/analysis").status, 401);
}

#[test]
fn a_bad_prices_file_stops_the_server_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.yaml");
    std::fs::write(
        &prices,
        "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: -2, source: test, date: 2026-01-01}\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--no-auth",
            "--simulate-gpus",
            "1xH100-80GB",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--db")
        .arg(dir.path().join("g.db"))
        .arg("--prices")
        .arg(&prices)
        .env("GANTRY_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("gantry serve runs");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("prices[0].per_gpu_hour"), "{err}");
}

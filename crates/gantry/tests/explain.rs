//! `GET /api/workloads/{id}/explain` and `gantry explain` end to end: the real binary on loopback
//! with simulated GPUs (`2xH100-80GB,2xA100-40GB`: one engine node per model), real child
//! processes and a real SQLite store (the harness of `server.rs`, included, not edited).

#[path = "server/harness.rs"]
mod harness;

use harness::{Server, text, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

/// A spec holding `count` GPUs of `model` while it sleeps, with an optional time limit.
fn holder(name: &str, model: &str, count: u32, timeout: Option<&str>) -> Value {
    let mut spec = json!({"name": name, "resources": {"gpu": {"count": count, "models": [model]}},
                          "run": {"command": ["sleep", "60"]}});
    if let Some(t) = timeout {
        spec["timeout"] = json!(t);
    }
    spec
}

/// The explanation of `id` once `ready` holds for it.
fn explain_when(
    http: &harness::Http,
    id: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(Duration::from_secs(15), what, || {
        let r = http.get(&format!("/api/workloads/{id}/explain"));
        assert_eq!(r.status, 200, "explain {id}: {}", r.body);
        let v = r.json();
        ready(&v).then_some(v)
    })
}

#[test]
fn explains_waiting_and_running_work_over_http_and_the_cli() {
    let server = Server::no_auth();
    let http = server.http();

    // Both A100s held for up to 10 minutes.
    let blocker = http.submit(&holder("hold-a100", "A100-40GB", 2, Some("10m")));
    let b = http.wait_state(&blocker, &["running"], Duration::from_secs(15));
    let blocker_start = b["startedAt"].as_i64().expect("startedAt");

    // Two A100 jobs wait behind it, the first with a 5-minute limit.
    let first = http.submit(&holder("wants-a100", "A100-40GB", 2, Some("5m")));
    let second = http.submit(&holder("wants-a100-too", "A100-40GB", 2, None));

    // The first: held at the filter stage, each node's rejection counted and named.
    let x = explain_when(&http, &first, "first held at the filter", |v| {
        v["stage"] == "filter"
    });
    assert_eq!(x["id"], first.as_str());
    assert_eq!(x["state"], "pending");
    let reasons = x["reasons"].as_array().expect("reasons");
    let by_filter = |f: &str| {
        reasons
            .iter()
            .find(|r| r["filter"] == f)
            .unwrap_or_else(|| panic!("no {f} reason in {x}"))
    };
    assert_eq!(by_filter("gpu_model")["nodes"], 1);
    assert_eq!(by_filter("gpu_model")["reason"], "model not in [A100-40GB]");
    assert_eq!(by_filter("gpu_free")["nodes"], 1);
    assert_eq!(by_filter("gpu_free")["reason"], "0 free GPUs, needs 2");
    let summary = x["summary"].as_str().expect("summary");
    assert!(
        summary.contains(
            "0/2 nodes can take it: 1 node: model not in [A100-40GB]; 1 node: 0 free GPUs, needs 2"
        ),
        "{summary}"
    );
    assert_eq!(x["position"], json!({"queue": 1, "overall": 1}));
    // It starts when the blocker's 10-minute limit ends, at the latest.
    let start = &x["estimatedStart"];
    assert_eq!(start["confidence"], "exact", "{x}");
    assert_eq!(start["atMs"].as_i64(), Some(blocker_start + 600_000), "{x}");
    let in_s = start["inSeconds"].as_i64().expect("inSeconds");
    assert!((570..=600).contains(&in_s), "{in_s}");
    assert!(summary.contains("at the latest"), "{summary}");
    assert!(x["placement"].is_null());

    // The second: behind the first, starts when the first's 5 minutes end after that.
    let y = explain_when(&http, &second, "second held", |v| v["stage"] == "filter");
    assert_eq!(y["position"], json!({"queue": 2, "overall": 2}));
    assert_eq!(y["estimatedStart"]["confidence"], "exact", "{y}");
    assert_eq!(
        y["estimatedStart"]["atMs"].as_i64(),
        Some(blocker_start + 600_000 + 300_000),
        "{y}"
    );

    // The running blocker: where, since when, and the scores (only the A100 node fits it).
    let z = explain_when(&http, &blocker, "blocker running", |v| {
        v["stage"] == "running"
    });
    let p = &z["placement"];
    assert!(
        p["node"]
            .as_str()
            .is_some_and(|n| n.ends_with("/A100-40GB")),
        "{z}"
    );
    assert_eq!(p["gpus"].as_array().map(Vec::len), Some(2), "{z}");
    assert_eq!(p["startedAtMs"].as_i64(), Some(blocker_start));
    let scores = p["topScores"].as_array().expect("topScores");
    assert_eq!(scores.len(), 1, "{z}");
    assert_eq!(scores[0]["node"], p["node"]);
    assert!(z["position"].is_null() && z["estimatedStart"].is_null());
    assert!(
        z["summary"]
            .as_str()
            .is_some_and(|s| s.contains("Why there")),
        "{z}"
    );

    // Bad and unknown ids.
    let r = http.get("/api/workloads/nope/explain");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.api_error().1.as_deref(), Some("id"), "{}", r.body);
    let r = http.get("/api/workloads/wl-999999/explain");
    assert_eq!(r.status, 404, "{}", r.body);

    // The CLI prints the summary, or the JSON.
    let out = server.cli(&["explain", &first], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("held at the filter stage"), "{printed}");
    assert!(
        printed.contains("Position: 1st in queue default"),
        "{printed}"
    );
    let out = server.cli(&["explain", &blocker, "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["stage"], "running");
    let out = server.cli(&["explain", "wl-999999"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));

    // The document describes the route.
    let doc = http.get("/openapi.json").json();
    assert!(
        doc["paths"]["/api/workloads/{id}/explain"]["get"].is_object(),
        "explain missing from the OpenAPI document"
    );
    server.kill_workloads();
}

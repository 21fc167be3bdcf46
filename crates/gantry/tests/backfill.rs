//! Head-of-line reservation and backfill in `gantry serve`, end to end: a large workload is not
//! starved by small ones. The real binary on loopback with simulated GPUs (`2xH100-80GB,2xA100-40GB`),
//! real child processes and a real store (the harness of `server.rs`, included, not edited).

#[path = "server/harness.rs"]
mod harness;

use harness::{Server, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `sleep 60` on `count` GPUs of `model`, with an optional time limit.
fn job(name: &str, model: &str, count: u32, timeout: Option<&str>) -> Value {
    let mut spec = json!({"name": name, "resources": {"gpu": {"count": count, "models": [model]}},
                          "run": {"command": ["sleep", "60"]}});
    if let Some(t) = timeout {
        spec["timeout"] = json!(t);
    }
    spec
}

#[test]
fn the_first_blocked_workload_reserves_gpus_and_only_work_that_ends_in_time_backfills() {
    let server = Server::no_auth();
    let http = server.http();
    // One H100 busy for at most 2 minutes; the other free.
    let holder = http.submit(&job("holder", "H100-80GB", 1, Some("2m")));
    http.wait_state(&holder, &["running"], secs(10));
    // Needs both H100s: waits, and reserves them.
    let big = http.submit(&job("big", "H100-80GB", 2, None));
    // One H100, no time limit: it would fit on the free H100 but would delay big: held.
    let endless = http.submit(&job("endless", "H100-80GB", 1, None));
    let reason = wait_for(secs(10), "the reservation reason", || {
        http.workload(&endless)["reason"]
            .as_str()
            .filter(|r| r.contains("without delaying"))
            .map(str::to_string)
    });
    assert!(
        reason.contains(&format!("without delaying {big}, first in line"))
            && reason.contains("starts at the latest"),
        "{reason}"
    );
    let e = http
        .get(&format!("/api/workloads/{endless}/explain"))
        .json();
    assert_eq!(e["stage"], "reservation", "{e}");
    // One H100 for at most 30 s: ends before the holder's limit, so it backfills the free H100.
    let short = http.submit(&job("short", "H100-80GB", 1, Some("30s")));
    http.wait_state(&short, &["running"], secs(10));
    // Work on the A100s is not affected by the H100 reservation.
    let other = http.submit(&job("other", "A100-40GB", 1, None));
    http.wait_state(&other, &["running"], secs(10));
    assert_eq!(http.workload(&endless)["state"], "pending");
    assert_eq!(http.workload(&big)["state"], "pending");
    // big's estimated start is exact: the later of the two limits (the holder's 2 minutes).
    let e = http.get(&format!("/api/workloads/{big}/explain")).json();
    assert_eq!(e["estimatedStart"]["confidence"], "exact", "{e}");
    let in_s = e["estimatedStart"]["inSeconds"].as_i64().unwrap_or(-1);
    assert!((100..=120).contains(&in_s), "{e}");
    for id in [&holder, &big, &endless, &short, &other] {
        http.cancel(id);
    }
}

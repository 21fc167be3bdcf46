//! Cooperative preemption in `gantry serve`, end to end: the real binary on loopback with simulated
//! GPUs (`2xH100-80GB,2xA100-40GB`), real child processes that checkpoint on SIGTERM, a real store
//! (the harness of `server.rs`, included, not edited).

#[path = "server/harness.rs"]
mod harness;

use harness::{Opts, Server, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A spec on `count` GPUs of `model` at `class` running `sh -c script`.
fn spec(name: &str, class: &str, model: &str, count: u32, script: &str) -> Value {
    json!({"name": name, "priorityClass": class,
           "resources": {"gpu": {"count": count, "models": [model]}},
           "run": {"command": ["sh", "-c", script]}})
}

/// A server without auth with this grace and minimum runtime before preemption (seconds).
fn server(grace: u32, min_runtime: u32) -> Server {
    Server::start(Opts {
        no_auth: true,
        extra: vec![
            "--grace".into(),
            grace.to_string(),
            "--preemption-min-runtime".into(),
            min_runtime.to_string(),
        ],
    })
}

/// The (from, to, reason) of each event of `id`.
fn history(http: &harness::Http, id: &str) -> Vec<(String, String, String)> {
    http.events(id)
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            (s("fromState"), s("toState"), s("reason"))
        })
        .collect()
}

#[test]
fn higher_priority_work_preempts_the_cheapest_victim_which_checkpoints_and_is_requeued() {
    let server = server(5, 0);
    let http = server.http();
    let work = server.work();
    let ckpt = work.join("ckpt");
    // Low priority on both H100s; on SIGTERM it writes a checkpoint and exits 0.
    let script = format!(
        "echo attempt >> {w}/attempts; trap 'echo saved >> {c}; exit 0' TERM; while :; do sleep 0.1; done",
        w = work.display(),
        c = ckpt.display()
    );
    let batch = http.submit(&spec(
        "batch",
        "low-priority-batch",
        "H100-80GB",
        2,
        &script,
    ));
    http.wait_state(&batch, &["running"], secs(10));
    // Low priority on both A100s, but not preemptible.
    let mut pinned = spec("pinned", "low-priority-batch", "A100-40GB", 2, "sleep 60");
    pinned["preemptible"] = json!(false);
    let pinned = http.submit(&pinned);
    http.wait_state(&pinned, &["running"], secs(10));
    // The attempts file exists once the trap is set.
    wait_for(secs(10), "the batch job started", || {
        std::fs::read_to_string(work.join("attempts")).ok()
    });

    // High priority on the H100s: the batch job is stopped, checkpoints and is requeued.
    let urgent = http.submit(&spec(
        "urgent",
        "high-priority-training",
        "H100-80GB",
        2,
        "sleep 60",
    ));
    let w = http.wait_state(&urgent, &["running"], secs(15));
    assert_eq!(w["attempts"], 1);
    assert_eq!(
        std::fs::read_to_string(&ckpt).expect("the victim checkpointed"),
        "saved\n"
    );
    let w = http.wait_state(&batch, &["pending"], secs(5));
    assert_eq!(w["attempts"], 1, "{w}");
    let h = history(&http, &batch);
    let tail: Vec<_> = h.iter().rev().take(2).rev().cloned().collect();
    assert_eq!(
        tail,
        [
            (
                "running".to_string(),
                "preempted".to_string(),
                format!("preempted by {urgent}")
            ),
            (
                "preempted".to_string(),
                "pending".to_string(),
                "requeued after preemption".to_string()
            )
        ],
        "{h:?}"
    );
    // It now waits for the H100s, which higher-priority work holds: no preemption back.
    let reason = wait_for(secs(5), "a waiting reason", || {
        http.workload(&batch)["reason"]
            .as_str()
            .filter(|r| r.starts_with("waiting: "))
            .map(str::to_string)
    });
    assert!(!reason.contains("preempting"), "{reason}");
    assert_eq!(http.workload(&pinned)["state"], "running");

    // High priority on the A100s: the only holder may not be preempted, and explain says so.
    let blocked = http.submit(&spec(
        "blocked",
        "high-priority-training",
        "A100-40GB",
        2,
        "true",
    ));
    let e = wait_for(secs(10), "explain with the preemption stage", || {
        let r = http.get(&format!("/api/workloads/{blocked}/explain"));
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        v["reasons"]
            .as_array()?
            .iter()
            .find(|r| {
                r["stage"] == "preemption"
                    && !r["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("the next scheduling cycle decides")
            })
            .map(|_| v.clone())
    });
    let stage = e["reasons"]
        .as_array()
        .and_then(|rs| rs.iter().rev().find(|r| r["stage"] == "preemption"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        stage["reason"], "no lower-priority running workload is preemptible",
        "{e}"
    );
    assert_eq!(http.workload(&pinned)["state"], "running");

    // Metrics count the one preemption.
    let count = wait_for(secs(10), "gantry_preemptions_total", || {
        http.get("/metrics")
            .body
            .lines()
            .find(|l| l.starts_with("gantry_preemptions_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|v| *v >= 1.0)
    });
    assert_eq!(count, 1.0);

    // Once the urgent job is cancelled the batch job runs again, a second attempt.
    assert_eq!(
        http.cancel(&urgent).status,
        202,
        "a running workload is being stopped"
    );
    let w = http.wait_state(&batch, &["running"], secs(15));
    assert_eq!(w["attempts"], 2, "{w}");
    wait_for(secs(10), "the second attempt started", || {
        let a = std::fs::read_to_string(work.join("attempts")).ok()?;
        (a.lines().count() == 2).then_some(())
    });
    for id in [&batch, &pinned, &blocked] {
        http.cancel(id);
    }
}

#[test]
fn work_younger_than_the_minimum_runtime_is_not_preempted_and_the_wait_says_until_when() {
    let server = server(1, 3600);
    let http = server.http();
    let low = http.submit(&spec(
        "low",
        "low-priority-batch",
        "H100-80GB",
        2,
        "sleep 60",
    ));
    http.wait_state(&low, &["running"], secs(10));
    let high = http.submit(&spec(
        "high",
        "high-priority-training",
        "H100-80GB",
        1,
        "true",
    ));
    let reason = wait_for(secs(10), "a waiting reason", || {
        http.workload(&high)["reason"]
            .as_str()
            .filter(|r| r.contains("preemption"))
            .map(str::to_string)
    });
    assert!(
        reason.contains("lower-priority work may be preempted from")
            && reason.contains("(minimum runtime)"),
        "{reason}"
    );
    std::thread::sleep(secs(2));
    assert_eq!(http.workload(&low)["state"], "running");
    assert_eq!(http.workload(&high)["state"], "pending");
    for id in [&low, &high] {
        http.cancel(id);
    }
}

#[test]
fn a_victim_that_ignores_sigterm_is_killed_after_the_grace_and_explain_says_when_the_preemptor_starts()
 {
    let server = server(3, 0);
    let http = server.http();
    // Ignores SIGTERM (so does its sleep, which inherits the disposition): only SIGKILL ends it.
    let stubborn = http.submit(&spec(
        "stubborn",
        "low-priority-batch",
        "H100-80GB",
        2,
        "trap '' TERM; sleep 60",
    ));
    http.wait_state(&stubborn, &["running"], secs(10));
    let urgent = http.submit(&spec(
        "urgent",
        "high-priority-training",
        "H100-80GB",
        2,
        "sleep 60",
    ));
    // While the victim is being stopped, the preemptor's explanation names it and gives an exact
    // latest start: the victim's SIGKILL deadline.
    let e = wait_for(secs(5), "explain while the victim stops", || {
        let v = http.get(&format!("/api/workloads/{urgent}/explain")).json();
        let decided = v["reasons"].as_array()?.iter().any(|r| {
            r["stage"] == "preemption"
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.contains(stubborn.as_str()) && !t.contains("next"))
        });
        decided.then_some(v)
    });
    assert_eq!(e["estimatedStart"]["confidence"], "exact", "{e}");
    let in_s = e["estimatedStart"]["inSeconds"].as_i64().unwrap_or(-1);
    assert!((0..=3).contains(&in_s), "{e}");
    assert_eq!(http.workload(&stubborn)["state"], "running");
    // SIGKILL after the grace; then the preemptor runs and the victim is requeued.
    http.wait_state(&urgent, &["running"], secs(10));
    let w = http.wait_state(&stubborn, &["pending"], secs(5));
    assert_eq!(w["attempts"], 1, "{w}");
    let last = http.events(&stubborn);
    assert!(
        last.iter()
            .any(|e| e["toState"] == "preempted" && e["reason"] == format!("preempted by {urgent}")),
        "{last:?}"
    );
    for id in [&stubborn, &urgent] {
        http.cancel(id);
    }
}

//! `gantry serve` end to end: the real binary on a free loopback port with a temporary database and
//! simulated GPUs (`2xH100-80GB,2xA100-40GB`), talked to over HTTP and through the CLI.
//!
//! Lifecycle (real child processes, logs, cancel, timeout, retry), bad input on every route, auth
//! and roles on every route, crash safety (`kill -9` during 500 submissions), restarts while
//! workloads run, metrics and the OpenAPI document, and the CLI's commands and exit codes.

#[path = "server/harness.rs"]
mod harness;

use harness::{Http, Opts, Server, group_alive, kill_group, text, wait_for};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `n` seconds.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A JSON spec running `sh -c SCRIPT` on `gpus` whole GPUs (0: none).
fn sh(name: &str, script: &str, gpus: u32) -> Value {
    let mut spec = json!({"name": name, "run": {"command": ["sh", "-c", script]}});
    if gpus > 0 {
        spec["resources"] = json!({"gpu": {"count": gpus}});
    }
    spec
}

/// A workload holding both GPUs of one model for a minute, so that later work of that model waits.
fn blocker(model: &str) -> Value {
    json!({"name": format!("hold-{}", model.to_lowercase()), "resources": {"gpu": {"count": 2, "models": [model]}},
           "run": {"command": ["sleep", "60"]}})
}

/// The (from, to) state pairs of a workload's events, in order.
fn transitions(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["fromState"].as_str().unwrap_or("-").to_string(),
                e["toState"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn log(http: &Http, id: &str, stream: &str) -> String {
    let r = http.get(&format!("/api/workloads/{id}/logs?stream={stream}"));
    assert_eq!(r.status, 200, "logs {id}: {}", r.body);
    r.body
}

// ---------------------------------------------------------------------------------------------
// 1. Lifecycle
// ---------------------------------------------------------------------------------------------

#[test]
fn json_and_yaml_submissions_run_a_real_child_to_success() {
    let server = Server::no_auth();
    let http = server.http();

    let r = http.post_json(
        "/api/workloads",
        &sh("hello-json", "echo hi $CUDA_VISIBLE_DEVICES", 1).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let first = r.json();
    assert_eq!(first["state"], "pending", "acknowledged before it runs");
    assert_eq!(first["owner"], "local");
    let json_id = first["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/workloads/{json_id}/status").as_str())
    );

    let yaml = "name: hello-yaml\nresources:\n  gpu:\n    count: 1\nrun:\n  command: [sh, -c, 'echo hi $CUDA_VISIBLE_DEVICES; echo warn >&2']\n";
    let r = http.post_yaml("/api/workloads/submit", yaml);
    assert_eq!(r.status, 201, "{}", r.body);
    let yaml_id = r.json()["id"].as_str().unwrap().to_string();
    assert_ne!(json_id, yaml_id);

    for id in [&json_id, &yaml_id] {
        let w = http.wait_state(id, &["succeeded", "failed"], secs(15));
        assert_eq!(w["state"], "succeeded", "{w}");
        assert_eq!(w["exitCode"], 0);
        assert_eq!(w["attempts"], 1);
        assert!(w["startedAt"].as_i64().unwrap() >= w["submittedAt"].as_i64().unwrap());
        assert!(w["finishedAt"].as_i64().unwrap() >= w["startedAt"].as_i64().unwrap());
        // The child saw exactly the GPU it was given (index:uuid), by UUID.
        let gpus = w["gpus"].as_array().unwrap();
        assert_eq!(gpus.len(), 1, "{w}");
        let uuid = gpus[0].as_str().unwrap().split(':').nth(1).unwrap();
        assert!(uuid.starts_with("GPU-"), "{uuid}");
        let out = log(&http, id, "stdout");
        assert_eq!(out, format!("hi {uuid}\n"));
        let r = http.get(&format!("/api/workloads/{id}/logs"));
        assert_eq!(r.header("x-workload-state"), Some("succeeded"));
        assert_eq!(
            r.header("x-next-offset"),
            Some(out.len().to_string().as_str())
        );
        assert_eq!(
            transitions(&http.events(id)),
            pairs(&[
                ("-", "pending"),
                ("pending", "scheduled"),
                ("scheduled", "running"),
                ("running", "succeeded"),
            ])
        );
    }
    assert_eq!(log(&http, &yaml_id, "stderr"), "warn\n");
    // An offset past the start gives the rest of the log.
    let r = http.get(&format!("/api/workloads/{json_id}/logs?offset=3"));
    assert!(r.body.starts_with("GPU-"), "{}", r.body);
    // The events of a submission name who did it.
    let events = http.events(&json_id);
    assert_eq!(events[0]["actor"], "local");
    assert_eq!(events[0]["action"], "submitted");
    assert_eq!(events[3]["actor"], "scheduler");
}

#[test]
fn failures_retries_timeouts_and_cancels() {
    let server = Server::no_auth();
    let http = server.http();
    let counter = server.work().join("attempts");

    let failing = http.submit(&sh("fails", "echo oops >&2; exit 3", 0));
    let retry_script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo attempt $n; [ $n -ge 3 ]",
        c = counter.display()
    );
    let mut retried = sh("flaky", &retry_script, 0);
    retried["retries"] = json!(2);
    let retried = http.submit(&retried);
    let mut slow = sh("slow", "sleep 30", 1);
    slow["timeout"] = json!("1s");
    let timed_out = http.submit(&slow);
    let to_cancel = http.submit(&sh("long", "sleep 30", 1));

    // A failing command ends failed with its exit code and stderr in the log.
    let w = http.wait_state(&failing, &["failed", "succeeded"], secs(10));
    assert_eq!(w["state"], "failed", "{w}");
    assert_eq!(w["exitCode"], 3);
    assert_eq!(w["reason"], "exit 3");
    assert_eq!(w["attempts"], 1);
    assert_eq!(log(&http, &failing, "stderr"), "oops\n");

    // Cancel of a running sleep: 202, then cancelled within the grace (1 s), its group gone.
    http.wait_state(&to_cancel, &["running"], secs(10));
    let (pgid, _) = server.pid_record(&to_cancel, 1).expect("a pid record");
    assert!(group_alive(pgid));
    let asked = Instant::now();
    let r = http.cancel(&to_cancel);
    assert_eq!(r.status, 202, "{}", r.body);
    let w = http.wait_state(&to_cancel, &["cancelled", "failed", "succeeded"], secs(5));
    assert_eq!(w["state"], "cancelled", "{w}");
    assert!(asked.elapsed() < secs(3), "took {:?}", asked.elapsed());
    assert!(!group_alive(pgid), "the cancelled group still runs");
    let last = http.events(&to_cancel).pop().unwrap();
    assert_eq!(
        (last["fromState"].as_str(), last["toState"].as_str()),
        (Some("running"), Some("cancelled"))
    );

    // A 1 s timeout on sleep 30 ends failed with reason timeout, and the group is gone.
    let w = http.wait_state(&timed_out, &["failed", "succeeded", "cancelled"], secs(10));
    assert_eq!(w["state"], "failed", "{w}");
    assert_eq!(w["reason"], "timeout");
    let took = w["finishedAt"].as_i64().unwrap() - w["startedAt"].as_i64().unwrap();
    assert!((900..5000).contains(&took), "ran {took} ms");
    let (pgid, _) = server.pid_record(&timed_out, 1).expect("a pid record");
    assert!(!group_alive(pgid), "the timed-out group still runs");

    // retries: 2 with a command that fails twice, then succeeds: 3 attempts, each with its log.
    let w = http.wait_state(&retried, &["succeeded"], secs(15));
    assert_eq!(w["attempts"], 3, "{w}");
    assert_eq!(w["exitCode"], 0);
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
    assert_eq!(log(&http, &retried, "stdout"), "attempt 3\n");
    let r = http.get(&format!("/api/workloads/{retried}/logs?attempt=1"));
    assert_eq!(r.body, "attempt 1\n");
    let t = transitions(&http.events(&retried));
    let cycle = [
        ("pending", "scheduled"),
        ("scheduled", "running"),
        ("running", "failed"),
        ("failed", "pending"),
    ];
    let mut expected = vec![("-", "pending")];
    expected.extend(cycle);
    expected.extend(cycle);
    expected.extend([
        ("pending", "scheduled"),
        ("scheduled", "running"),
        ("running", "succeeded"),
    ]);
    assert_eq!(t, pairs(&expected));

    // Cancel of a pending workload is immediate; cancel of a finished one is 409 and changes nothing.
    http.submit(&blocker("H100-80GB"));
    let waiting = http.submit(
        &json!({"name": "waits", "resources": {"gpu": {"count": 2, "models": ["H100-80GB"]}},
                                      "run": {"command": ["true"]}}),
    );
    let w = wait_for(secs(10), "a waiting reason", || {
        let w = http.workload(&waiting);
        w["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("waiting:"))
            .then_some(w)
    });
    assert_eq!(w["state"], "pending");
    let r = http.cancel(&waiting);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "cancelled");
    assert_eq!(http.workload(&waiting)["state"], "cancelled");
    assert_eq!(
        transitions(&http.events(&waiting)),
        pairs(&[("-", "pending"), ("pending", "cancelled")])
    );
    for id in [&failing, &retried, &waiting, &to_cancel] {
        let before = http.events(id).len();
        let r = http.cancel(id);
        assert_eq!(r.status, 409, "{id}: {}", r.body);
        assert_eq!(r.api_error().0, "conflict");
        assert_eq!(http.events(id).len(), before);
    }
    // The blocked work never ran.
    assert_eq!(http.workload(&waiting)["attempts"], 0);
}

#[test]
fn concurrent_submissions_with_one_idempotency_key_store_one_workload() {
    let server = Server::no_auth();
    let spec = sh("same", "true", 0).to_string();
    let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (http, spec) = (server.http(), spec.clone());
                scope.spawn(move || {
                    let hdr = [
                        ("Content-Type", "application/json"),
                        ("Idempotency-Key", "one"),
                    ];
                    let r = http.request("POST", "/api/workloads", &hdr, spec.as_bytes());
                    (r.status, r.json()["id"].as_str().unwrap_or("").to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = statuses.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "exactly one 201: {statuses:?}");
    assert!(
        statuses.iter().all(|(s, _)| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    let ids: HashSet<&str> = statuses.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), 1, "{statuses:?}");
    let http = server.http();
    assert_eq!(http.count(), 1);
    let metrics = http.get("/metrics").body;
    assert!(
        metrics.contains("gantry_submissions_total 1\n"),
        "{metrics}"
    );
    // The same key for a different submission is refused, naming the header.
    let other = sh("other", "true", 0).to_string();
    let hdr = [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "one"),
    ];
    let r = http.request("POST", "/api/workloads", &hdr, other.as_bytes());
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.api_error().1.as_deref(), Some("Idempotency-Key"));
    assert_eq!(http.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// 2. Bad input
// ---------------------------------------------------------------------------------------------

/// One bad request and what must come back: status, and the field it names (if one is to blame).
struct Bad {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    field: Option<&'static str>,
}

fn bad(
    method: &'static str,
    path: &str,
    content_type: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    field: Option<&'static str>,
) -> Bad {
    Bad {
        method,
        path: path.to_string(),
        content_type,
        body: body.into(),
        status,
        field,
    }
}

/// Bad requests for every route, and the index of the one sent with a too-long `Idempotency-Key`.
/// The server runs with `--cpus 2 --memory-gib 8`: each of its two GPU nodes has 1 core and 4 GiB.
#[rustfmt::skip]
fn bad_cases(done: &str, pending: &str) -> (Vec<Bad>, usize) {
    const J: &str = "application/json";
    const Y: &str = "application/yaml";
    let w = "/api/workloads";
    let valid = r#"{"name": "a", "run": {"command": ["true"]}}"#;
    let huge = format!(r#"{{"name": "a", "run": {{"command": ["true"], "args": ["{}"]}}}}"#, "x".repeat(1 << 20));
    let mut cases = vec![
        // Malformed bodies.
        bad("POST", w, J, "{not json", 400, None),
        bad("POST", w, J, "", 400, None),
        bad("POST", w, J, "[]", 400, None),
        bad("POST", w, J, "\"a string\"", 400, None),
        bad("POST", w, J, format!("{valid} trailing"), 400, None),
        bad("POST", w, J, format!("{valid}{valid}"), 400, None),
        bad("POST", w, Y, "name: [unclosed\n", 400, None),
        bad("POST", w, Y, "", 400, None),
        bad("POST", w, Y, vec![0xff, 0xfe, b'a'], 400, None),
        // Wrong types, unknown fields, missing fields: the field is named.
        bad("POST", w, J, r#"{"name": "a", "replicas": "x", "run": {"command": ["true"]}}"#, 400, Some("replicas")),
        bad("POST", w, Y, "name: a\nreplicas: x\nrun: {command: [\"true\"]}\n", 400, Some("replicas")),
        bad("POST", w, J, r#"{"name": 5, "run": {"command": ["true"]}}"#, 400, Some("name")),
        bad("POST", w, J, r#"{"name": "a", "resources": {"gpu": {"count": "two"}}, "run": {"command": ["true"]}}"#, 400, Some("resources.gpu.count")),
        bad("POST", w, Y, "name: a\nresources: {gpu: {count: two}}\nrun: {command: [\"true\"]}\n", 400, Some("resources.gpu.count")),
        bad("POST", w, J, r#"{"name": "a", "bogus": 1, "run": {"command": ["true"]}}"#, 400, Some("bogus")),
        bad("POST", w, Y, "name: a\nbogus: 1\nrun: {command: [\"true\"]}\n", 400, Some("bogus")),
        bad("POST", w, J, r#"{"name": "a", "resources": {"gpu": {"count": 1, "colour": "red"}}, "run": {"command": ["true"]}}"#, 400, Some("resources.gpu.colour")),
        bad("POST", w, Y, "name: a\nresources: {gpu: {count: 1, colour: red}}\nrun: {command: [\"true\"]}\n", 400, Some("resources.gpu.colour")),
        bad("POST", w, J, r#"{"run": {"command": ["true"]}}"#, 400, Some("name")),
        bad("POST", w, Y, "run: {command: [\"true\"]}\n", 400, Some("name")),
        // Valid syntax, invalid values.
        bad("POST", w, J, r#"{"name": "a", "resources": {"gpu": {"share": 1200}}, "run": {"command": ["true"]}}"#, 400, Some("resources.gpu.share")),
        bad("POST", w, Y, "name: a\nresources: {gpu: {share: 1200}}\nrun: {command: [\"true\"]}\n", 400, Some("resources.gpu.share")),
        bad("POST", w, J, r#"{"name": "a", "gangMinimum": 2, "run": {"command": ["true"]}}"#, 400, Some("gangMinimum")),
        // One process per workload here: more replicas are refused, not silently run once.
        bad("POST", w, J, r#"{"name": "a", "replicas": 3, "run": {"command": ["true"]}}"#, 400, Some("replicas")),
        bad("POST", w, J, r#"{"name": "a", "resources": {"gpu": {"count": 3}}, "run": {"command": ["true"]}}"#, 400, Some("resources.gpu.count")),
        bad("POST", w, J, r#"{"name": "a", "resources": {"cpu": "2"}, "run": {"command": ["true"]}}"#, 400, Some("resources.cpu")),
        bad("POST", w, J, r#"{"name": "a", "resources": {"memory": "6Gi"}, "run": {"command": ["true"]}}"#, 400, Some("resources.memory")),
        bad("POST", w, J, r#"{"name": "a", "timeout": "forever", "run": {"command": ["true"]}}"#, 400, Some("timeout")),
        bad("POST", w, J, r#"{"name": "a", "retries": -1, "run": {"command": ["true"]}}"#, 400, Some("retries")),
        bad("POST", w, J, r#"{"name": "a", "priorityClass": "nope", "run": {"command": ["true"]}}"#, 400, Some("priorityClass")),
        bad("POST", w, J, r#"{"name": "a"}"#, 400, Some("run")),
        bad("POST", w, J, r#"{"name": "a", "run": {"command": ["true"], "workingDir": "relative"}}"#, 400, Some("run.workingDir")),
        // Too large.
        bad("POST", w, J, huge.clone(), 413, None),
        bad("POST", "/api/workloads/submit", Y, huge.clone(), 413, None),
        bad("PUT", "/api/scheduler/strategy", J, huge, 413, None),
        // Bad ids.
        bad("GET", "/api/workloads/xyz/status", J, "", 400, Some("id")),
        bad("GET", "/api/workloads/wl-/status", J, "", 400, Some("id")),
        bad("GET", "/api/workloads/wl-99999999999999999999999/status", J, "", 400, Some("id")),
        bad("GET", "/api/workloads/wl-999999/status", J, "", 404, None),
        bad("GET", "/api/workloads/xyz/logs", J, "", 400, Some("id")),
        bad("GET", "/api/workloads/wl-999999/logs", J, "", 404, None),
        bad("POST", "/api/workloads/xyz/cancel", J, "", 400, Some("id")),
        bad("POST", "/api/workloads/wl-999999/cancel", J, "", 404, None),
        // Bad query parameters.
        bad("GET", "/api/workloads?state=nope", J, "", 400, Some("state")),
        bad("GET", "/api/workloads?limit=0", J, "", 400, Some("limit")),
        bad("GET", "/api/workloads?limit=100000", J, "", 400, Some("limit")),
        bad("GET", "/api/workloads?limit=x", J, "", 400, Some("limit")),
        bad("GET", "/api/workloads?order=sideways", J, "", 400, Some("order")),
        bad("GET", "/api/workloads?after=zz", J, "", 400, Some("after")),
        bad("GET", "/api/workloads?bogus=1", J, "", 400, Some("bogus")),
        bad("GET", &format!("/api/workloads/{done}/logs?stream=stdin"), J, "", 400, Some("stream")),
        bad("GET", &format!("/api/workloads/{done}/logs?offset=-1"), J, "", 400, Some("offset")),
        bad("GET", &format!("/api/workloads/{done}/logs?bogus=1"), J, "", 400, Some("bogus")),
        bad("GET", &format!("/api/workloads/{done}/logs?attempt=7"), J, "", 404, None),
        bad("GET", &format!("/api/workloads/{pending}/logs"), J, "", 404, None),
        // Strategy changes.
        bad("PUT", "/api/scheduler/strategy", J, r#"{"strategy": "nope"}"#, 400, Some("strategy")),
        bad("PUT", "/api/scheduler/strategy", J, r#"{"strategy": 3}"#, 400, Some("strategy")),
        bad("PUT", "/api/scheduler/strategy", J, r#"{"strategy": "best_fit", "x": 1}"#, 400, Some("x")),
        bad("PUT", "/api/scheduler/strategy", J, r#"{}"#, 400, Some("strategy")),
        bad("PUT", "/api/scheduler/strategy", J, "{", 400, None),
        bad("PUT", "/api/scheduler/strategy", J, "", 400, None),
        // Unknown routes and methods.
        bad("GET", "/api/nope", J, "", 404, None),
        bad("GET", "/nope", J, "", 404, None),
        bad("POST", &format!("/api/workloads/{done}/restart"), J, "", 404, None),
        bad("DELETE", "/api/workloads", J, "", 405, None),
        bad("POST", "/api/scheduler/strategy", J, "{}", 405, None),
        bad("PUT", "/api/gpu/resources", J, "{}", 405, None),
    ];
    // An idempotency key that is too long.
    cases.push(bad("POST", w, J, valid, 400, Some("Idempotency-Key")));
    let key_case = cases.len() - 1;
    (cases, key_case)
}

#[test]
fn bad_input_on_every_route_is_a_4xx_naming_the_field_and_changes_nothing() {
    let server = Server::start(Opts {
        no_auth: true,
        extra: ["--grace", "1", "--cpus", "2", "--memory-gib", "8"]
            .map(String::from)
            .to_vec(),
    });
    let http = server.http();
    let done = http.submit(&sh("ok", "echo fine", 0));
    http.wait_state(&done, &["succeeded"], secs(10));
    let pending_spec = json!({"name": "never", "resources": {"gpu": {"count": 2, "models": ["A100-40GB"]}},
                              "run": {"command": ["true"]}});
    http.submit(&blocker("A100-40GB"));
    let pending = http.submit(&pending_spec);
    let strategy_before = http.get("/api/scheduler/strategy").json()["strategy"].clone();

    let (cases, key_case) = bad_cases(&done, &pending);

    let count_before = http.count();
    let events_before: usize = [&done, &pending]
        .iter()
        .map(|id| http.events(id).len())
        .sum();
    let long_key = "k".repeat(201);
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut headers = vec![("Content-Type", c.content_type)];
        if i == key_case {
            headers.push(("Idempotency-Key", long_key.as_str()));
        }
        let r = http.request(c.method, &c.path, &headers, &c.body);
        let shown = String::from_utf8_lossy(&c.body[..c.body.len().min(80)]).into_owned();
        if r.status != c.status {
            failures.push(format!(
                "{} {} {shown:?}: status {} (want {}): {}",
                c.method, c.path, r.status, c.status, r.body
            ));
            continue;
        }
        let v: Value = match serde_json::from_str(&r.body) {
            Ok(v) => v,
            Err(_) => {
                failures.push(format!(
                    "{} {} {shown:?}: not JSON: {:?}",
                    c.method, c.path, r.body
                ));
                continue;
            }
        };
        if !r
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            failures.push(format!(
                "{} {}: content type {:?}",
                c.method,
                c.path,
                r.header("content-type")
            ));
        }
        let e = &v["error"];
        if !e["code"].is_string() || e["message"].as_str().is_none_or(str::is_empty) {
            failures.push(format!(
                "{} {} {shown:?}: bad error shape: {}",
                c.method, c.path, r.body
            ));
        }
        if let Some(field) = c.field
            && e["field"].as_str() != Some(field)
        {
            failures.push(format!(
                "{} {} {shown:?}: field {:?} (want {field:?}): {}",
                c.method, c.path, e["field"], r.body
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing changed: no workload, no event, the same strategy; the server still answers.
    assert_eq!(http.count(), count_before);
    let events_after: usize = [&done, &pending]
        .iter()
        .map(|id| http.events(id).len())
        .sum();
    assert_eq!(events_after, events_before);
    assert_eq!(
        http.get("/api/scheduler/strategy").json()["strategy"],
        strategy_before
    );
    assert_eq!(http.workload(&pending)["state"], "pending");
    assert_eq!(http.get("/healthz").status, 200);
    // A body just under the limit is read (and judged on its content).
    let near = format!(
        r#"{{"name": "{}", "run": {{"command": ["true"]}}}}"#,
        "x".repeat((1 << 20) - 100)
    );
    let r = http.post_json("/api/workloads", &near);
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(200)]);
    assert_eq!(r.api_error().1.as_deref(), Some("name"));
}

// ---------------------------------------------------------------------------------------------
// 3. Auth and roles
// ---------------------------------------------------------------------------------------------

/// Every API route, as (method, path, body) with a valid body where one is needed.
fn routes(own: &str, done: &str) -> Vec<(&'static str, String, String)> {
    let spec =
        json!({"name": "role-probe", "resources": {"gpu": {"count": 2, "models": ["A100-40GB"]}},
                      "run": {"command": ["true"]}})
        .to_string();
    vec![
        ("GET", "/api/gpu/resources".into(), String::new()),
        ("GET", "/api/workloads".into(), String::new()),
        ("POST", "/api/workloads".into(), spec.clone()),
        ("POST", "/api/workloads/submit".into(), spec),
        (
            "GET",
            format!("/api/workloads/{done}/status"),
            String::new(),
        ),
        ("GET", format!("/api/workloads/{done}/logs"), String::new()),
        (
            "POST",
            format!("/api/workloads/{own}/cancel"),
            String::new(),
        ),
        ("GET", "/api/scheduler/strategy".into(), String::new()),
        (
            "PUT",
            "/api/scheduler/strategy".into(),
            r#"{"strategy": "gantry"}"#.into(),
        ),
        ("GET", "/api/monitoring/metrics".into(), String::new()),
        ("GET", "/api/queues".into(), String::new()),
        // Declared and removed again, so that later submissions need not name a queue.
        (
            "PUT",
            "/api/queues/probe".into(),
            r#"{"guaranteed": {"gpus": 1}}"#.into(),
        ),
        ("DELETE", "/api/queues/probe".into(), String::new()),
    ]
}

/// Whether `role` may call the route (from `auth::allows` and each handler's permission).
fn allowed(role: &str, method: &str, path: &str) -> bool {
    let submit =
        method == "POST" && path.starts_with("/api/workloads") && !path.ends_with("/cancel");
    let cancel = path.ends_with("/cancel");
    let operate = method == "PUT" || method == "DELETE";
    match role {
        "admin" | "operator" => true,
        "submitter" => !operate,
        "viewer" => !(submit || cancel || operate),
        _ => false,
    }
}

#[test]
fn auth_and_roles_on_every_route() {
    let mut server = Server::start(Opts {
        no_auth: false,
        extra: vec!["--grace".into(), "1".into()],
    });
    let mut tokens: BTreeMap<&str, String> = BTreeMap::new();
    for (name, role) in [
        ("root", "admin"),
        ("ops", "operator"),
        ("alice", "submitter"),
        ("bob", "submitter"),
        ("eve", "viewer"),
    ] {
        tokens.insert(name, server.token(name, role).1);
    }
    let (revoked_id, revoked) = server.token("gone", "admin");
    server.revoke(revoked_id);
    let as_ = |name: &str| server.http_as(&tokens[name]);
    let anon = server.http();

    // Open routes answer without a token.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(anon.get(path).status, 200, "{path}");
    }

    // Work owned by alice and bob: a finished one (for logs) and pending ones (for cancel).
    let (alice, bob) = (as_("alice"), as_("bob"));
    alice.submit(&blocker("A100-40GB"));
    let alice_done = alice.submit(&sh("alice-done", "echo alice", 0));
    alice.wait_state(&alice_done, &["succeeded"], secs(10));
    let pending = |h: &Http, name: &str| {
        h.submit(
            &json!({"name": name, "resources": {"gpu": {"count": 2, "models": ["A100-40GB"]}},
                         "run": {"command": ["true"]}}),
        )
    };
    let bob_pending = pending(&bob, "bob-waits");

    // No token, a garbage token, a malformed header, a revoked token: 401 on every /api route.
    let probe_routes = routes(&bob_pending, &alice_done);
    let count_before = as_("root").count();
    for (method, path, body) in &probe_routes {
        for (what, header) in [
            ("no token", None),
            ("garbage", Some("Bearer not-a-token".to_string())),
            ("basic", Some(format!("Basic {}", tokens["root"]))),
            ("revoked", Some(format!("Bearer {revoked}"))),
        ] {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(h) = &header {
                headers.push(("Authorization", h.as_str()));
            }
            let r = anon.request(method, path, &headers, body.as_bytes());
            assert_eq!(r.status, 401, "{what}: {method} {path}: {}", r.body);
            assert_eq!(r.api_error().0, "unauthorized");
        }
    }
    assert_eq!(as_("root").count(), count_before, "401s changed nothing");

    // Every role on every route; each allowed cancel gets its own fresh pending workload.
    for (name, role) in [
        ("root", "admin"),
        ("ops", "operator"),
        ("alice", "submitter"),
        ("eve", "viewer"),
    ] {
        let h = as_(name);
        let own = if role == "viewer" {
            bob_pending.clone()
        } else {
            pending(&h, &format!("{name}-waits"))
        };
        for (method, path, body) in routes(&own, &alice_done) {
            let before = as_("root").count();
            let r = h.request(
                method,
                &path,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            );
            if allowed(role, method, &path) {
                assert!(
                    (200..300).contains(&r.status),
                    "{role} {method} {path}: want 2xx, got {}: {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(r.status, 403, "{role} {method} {path}: {}", r.body);
                assert_eq!(r.api_error().0, "forbidden");
                assert_eq!(as_("root").count(), before, "a 403 changed nothing");
            }
        }
    }
    assert_eq!(
        as_("root").get("/api/scheduler/strategy").json()["strategy"],
        "gantry"
    );

    // Submitters see and cancel only their own work.
    let bob_w = bob.workload(&bob_pending);
    assert_eq!(bob_w["owner"], "bob");
    for path in [
        format!("/api/workloads/{bob_pending}/status"),
        format!("/api/workloads/{alice_done}/logs"),
    ] {
        let who = if path.contains(&bob_pending) {
            &alice
        } else {
            &bob
        };
        let r = who.get(&path);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    let r = alice.cancel(&bob_pending);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(bob.workload(&bob_pending)["state"], "pending");
    for query in ["", "?owner=bob", "?owner=root&state=pending"] {
        let v = alice.get(&format!("/api/workloads{query}")).json();
        let owners: HashSet<&str> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["owner"].as_str().unwrap())
            .collect();
        assert_eq!(owners, HashSet::from(["alice"]), "alice lists {query:?}");
    }
    let mine = alice.all_workloads().len();
    let all = as_("eve").all_workloads();
    assert!(all.len() > mine, "a viewer sees everyone's work");
    assert!(all.iter().any(|w| w["owner"] == "bob"));
    // A viewer reads bob's work but cannot cancel it; an operator can.
    assert_eq!(
        as_("eve")
            .get(&format!("/api/workloads/{bob_pending}/status"))
            .status,
        200
    );
    assert_eq!(as_("eve").cancel(&bob_pending).status, 403);
    let r = as_("ops").cancel(&bob_pending);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bob.workload(&bob_pending)["state"], "cancelled");
    let last = bob.events(&bob_pending).pop().unwrap();
    assert_eq!(last["actor"], "ops", "the audit log names who cancelled");
    // Idempotency keys are per owner: the same key from two submitters gives two workloads.
    let spec = sh("keyed", "true", 0).to_string();
    let hdr = [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "same-key"),
    ];
    let a = alice.request("POST", "/api/workloads", &hdr, spec.as_bytes());
    let b = bob.request("POST", "/api/workloads", &hdr, spec.as_bytes());
    assert_eq!((a.status, b.status), (201, 201), "{} {}", a.body, b.body);
    assert_ne!(a.json()["id"], b.json()["id"]);

    // Revoking a token while the server runs takes effect at once.
    let (ops2_id, ops2) = server.token("ops2", "operator");
    assert_eq!(server.http_as(&ops2).get("/api/queues").status, 200);
    server.revoke(ops2_id);
    assert_eq!(server.http_as(&ops2).get("/api/queues").status, 401);

    // The CLI passes GANTRY_TOKEN; without it the server's 401 is a failure (exit 1).
    let out = server.cli(&["workloads", "--json"], Some(&tokens["alice"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = server.cli(&["workloads"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));

    // Tokens survive a restart (stored hashed in the database, not in memory).
    server.restart();
    assert_eq!(
        server
            .http_as(&tokens["alice"])
            .get("/api/workloads")
            .status,
        200
    );
    assert_eq!(server.http_as(&revoked).get("/api/workloads").status, 401);
    let secret_on_disk = std::fs::read(server.db()).unwrap();
    let needle = tokens["alice"].as_bytes();
    assert!(
        !secret_on_disk.windows(needle.len()).any(|w| w == needle),
        "a token secret is stored in clear"
    );

    // --no-auth refuses anything but loopback.
    for listen in ["0.0.0.0", "[::]"] {
        let port = harness::free_port();
        let out = std::process::Command::new(harness::bin())
            .args([
                "serve",
                "--no-auth",
                "--listen",
                &format!("{listen}:{port}"),
                "--simulate-gpus",
                harness::GPUS,
                "--db",
            ])
            .arg(server.dir().join("noauth.db"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "--no-auth on {listen} started");
        let err = text(&out.stderr);
        assert!(err.contains("loopback"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Crash safety
// ---------------------------------------------------------------------------------------------

#[test]
fn kill_9_during_500_submissions_loses_and_duplicates_nothing() {
    let mut server = Server::no_auth();
    let http = server.http();
    // Hold every GPU, so that the GPU half of the submissions waits (and stays pending).
    let holders = [
        http.submit(&blocker("H100-80GB")),
        http.submit(&blocker("A100-40GB")),
    ];
    for h in &holders {
        http.wait_state(h, &["running"], secs(10));
    }

    const TOTAL: usize = 500;
    const THREADS: usize = 4;
    let spec = |i: usize| {
        if i.is_multiple_of(2) {
            json!({"name": format!("c{i}"), "run": {"command": ["true"]}})
        } else {
            json!({"name": format!("c{i}"), "resources": {"gpu": {"count": 1}}, "run": {"command": ["true"]}})
        }
        .to_string()
    };
    let acked: Arc<Mutex<HashMap<usize, String>>> = Arc::default();
    let acks = Arc::new(AtomicUsize::new(0));
    let server_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (http, acked, acks, errors, stop) = (
                Http::new(&server.url(), None),
                acked.clone(),
                acks.clone(),
                server_errors.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                for i in (t..TOTAL).step_by(THREADS) {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let key = format!("crash-{i}");
                    let hdr = [
                        ("Content-Type", "application/json"),
                        ("Idempotency-Key", key.as_str()),
                    ];
                    match http.try_request("POST", "/api/workloads", &hdr, spec(i).as_bytes()) {
                        Ok(r) if (200..300).contains(&r.status) => {
                            let id = r.json()["id"].as_str().unwrap().to_string();
                            acked.lock().unwrap().insert(i, id);
                            acks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => errors
                            .lock()
                            .unwrap()
                            .push(format!("{i}: {} {}", r.status, r.body)),
                        // The server is gone: what was not acknowledged need not exist.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    wait_for(secs(30), "200 acknowledged submissions", || {
        (acks.load(Ordering::SeqCst) >= 200).then_some(())
    });
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        server_errors.lock().unwrap().is_empty(),
        "{:?}",
        server_errors.lock().unwrap()
    );
    assert!(
        acked.len() >= 200 && acked.len() < TOTAL,
        "killed mid-flight: {} acks",
        acked.len()
    );

    server.restart();
    let http = server.http();
    // Every acknowledged submission is there exactly once, under its id.
    let all = http.all_workloads();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for w in &all {
        *ids.entry(w["id"].as_str().unwrap().to_string())
            .or_default() += 1;
        *names
            .entry(w["name"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(ids.values().all(|&n| n == 1), "an id is listed twice");
    for (i, id) in &acked {
        assert_eq!(ids.get(id), Some(&1), "acknowledged {id} (c{i}) is missing");
        assert_eq!(
            names.get(&format!("c{i}")),
            Some(&1),
            "c{i} stored {:?} times",
            names.get(&format!("c{i}"))
        );
        assert_eq!(http.workload(id)["name"], format!("c{i}"));
    }
    assert!(
        names.values().all(|&n| n == 1),
        "a submission was stored twice"
    );
    assert!(all.len() <= TOTAL + holders.len());

    // Submitting every key again: acknowledged ones give the same id with 200; the rest are stored
    // now (or were stored but not acknowledged); in the end every key is there exactly once.
    for i in 0..TOTAL {
        let key = format!("crash-{i}");
        let hdr = [
            ("Content-Type", "application/json"),
            ("Idempotency-Key", key.as_str()),
        ];
        let r = http.request("POST", "/api/workloads", &hdr, spec(i).as_bytes());
        assert!(
            r.status == 200 || r.status == 201,
            "{key}: {} {}",
            r.status,
            r.body
        );
        if let Some(id) = acked.get(&i) {
            assert_eq!(r.status, 200, "{key} again");
            assert_eq!(r.json()["id"].as_str(), Some(id.as_str()), "{key} again");
        }
    }
    let all = http.all_workloads();
    assert_eq!(all.len(), TOTAL + holders.len());
    let names: HashSet<&str> = all.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), all.len());

    // Consistent states once the restart settles: nothing scheduled; the holders were found again
    // and still run (their processes are alive), so the GPU half still waits; the rest finished.
    let all = wait_for(secs(30), "the restart to settle", || {
        let all = http.all_workloads();
        all.iter()
            .all(|w| {
                let cpu_only = w["spec"]["resources"].is_null();
                let s = w["state"].as_str().unwrap();
                s != "scheduled" && !(cpu_only && (s == "running" || s == "pending"))
            })
            .then_some(all)
    });
    for w in &all {
        let (id, state) = (w["id"].as_str().unwrap(), w["state"].as_str().unwrap());
        let name = w["name"].as_str().unwrap();
        if name.starts_with("hold-") {
            assert_eq!(state, "running", "{w}");
            let (pgid, _) = server.pid_record(id, 1).unwrap();
            assert!(group_alive(pgid), "{id} running without a process");
        } else if w["spec"]["resources"].is_null() {
            assert!(["succeeded", "lost", "failed"].contains(&state), "{w}");
            if state == "failed" {
                assert_eq!(w["reason"], "exit unknown", "{w}");
            }
        } else {
            assert_eq!(state, "pending", "{w}");
            assert_eq!(w["attempts"], 0, "{w}");
        }
    }
    let succeeded = all.iter().filter(|w| w["state"] == "succeeded").count();
    assert!(succeeded >= TOTAL / 2 - 10, "only {succeeded} succeeded");
}

// ---------------------------------------------------------------------------------------------
// 5. Restart while workloads run
// ---------------------------------------------------------------------------------------------

#[test]
fn restart_while_running_finds_children_again_or_retries_the_lost() {
    let mut server = Server::no_auth();
    let http = server.http();
    let dir = server.work();
    // Found again: still runs across the restart; its exit code cannot be observed by a server that
    // is not its parent, so it ends "exit unknown", and with retries: 1 the next attempt succeeds.
    let mut found = sh(
        "found",
        &format!(
            "if [ -e {m} ]; then echo second; exit 0; fi; touch {m}; echo first; sleep 3",
            m = dir.join("found.marker").display()
        ),
        1,
    );
    found["retries"] = json!(1);
    let found = http.submit(&found);
    // Found again with no retries left: ends (not running forever), attempts 1.
    let once = http.submit(&sh("once", "sleep 3", 0));
    // Found again, then cancelled: the cancel reaches a process the new server did not start.
    let stopped = http.submit(&sh("stopped", "sleep 30", 0));
    // Lost: its process is killed while the server is down; retries: 1 runs it again.
    let mut lost = sh(
        "lost",
        &format!(
            "if [ -e {m} ]; then echo second; exit 0; fi; touch {m}; sleep 30",
            m = dir.join("lost.marker").display()
        ),
        1,
    );
    lost["retries"] = json!(1);
    let lost = http.submit(&lost);
    // Lost with no retries: ends lost.
    let gone = http.submit(&sh("gone", "sleep 30", 1));
    for id in [&found, &once, &stopped, &lost, &gone] {
        http.wait_state(id, &["running"], secs(10));
    }
    server.kill9();
    for id in [&lost, &gone] {
        let (pgid, _) = server.pid_record(id, 1).unwrap();
        kill_group(pgid);
        wait_for(secs(5), "the group to die", || {
            (!group_alive(pgid)).then_some(())
        });
    }
    server.restart();
    let http = server.http();

    // Right after the restart: the survivors are running again (attempt 1), the killed ones lost.
    for id in [&found, &once, &stopped] {
        let w = http.workload(id);
        assert_eq!(
            (w["state"].as_str(), w["attempts"].as_i64()),
            (Some("running"), Some(1)),
            "{w}"
        );
    }
    let (pgid, _) = server.pid_record(&stopped, 1).unwrap();
    assert_eq!(http.cancel(&stopped).status, 202);
    http.wait_state(&stopped, &["cancelled"], secs(5));
    assert!(!group_alive(pgid), "the cancelled group still runs");
    let w = http.wait_state(&gone, &["lost"], secs(5));
    assert!(
        w["reason"]
            .as_str()
            .unwrap()
            .contains("lost across a restart"),
        "{w}"
    );

    let w = http.wait_state(&lost, &["succeeded", "failed", "lost"], secs(15));
    assert_eq!(
        (w["state"].as_str(), w["attempts"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{w}"
    );
    assert_eq!(log(&http, &lost, "stdout"), "second\n");
    let t = transitions(&http.events(&lost));
    assert!(t.contains(&("running".into(), "lost".into())), "{t:?}");
    assert!(t.contains(&("lost".into(), "pending".into())), "{t:?}");

    let w = http.wait_state(&found, &["succeeded"], secs(15));
    assert_eq!(w["attempts"], 2, "{w}");
    let r = http.get(&format!("/api/workloads/{found}/logs?attempt=1"));
    assert_eq!(r.body, "first\n");
    assert_eq!(log(&http, &found, "stdout"), "second\n");

    let w = http.wait_state(&once, &["succeeded", "failed", "lost"], secs(10));
    assert_eq!(w["attempts"], 1, "{w}");

    // Nothing is left running or forgotten.
    assert_eq!(http.workload(&gone)["state"], "lost");
    assert!(
        http.all_workloads()
            .iter()
            .all(|w| !["running", "scheduled", "pending"].contains(&w["state"].as_str().unwrap()))
    );
}

#[test]
fn a_restart_during_the_retry_backoff_still_retries() {
    let mut server = Server::no_auth();
    let http = server.http();
    let marker = server.work().join("retry.marker");
    let mut spec = sh(
        "retry-after-restart",
        &format!(
            "if [ -e {m} ]; then exit 0; fi; touch {m}; exit 1",
            m = marker.display()
        ),
        0,
    );
    spec["retries"] = json!(1);
    let id = http.submit(&spec);
    // The first attempt fails; the retry is due about 1 s later. Kill the server before it.
    http.wait_state(&id, &["failed"], secs(10));
    server.kill9();
    server.restart();
    let http = server.http();
    let w = http.wait_state(&id, &["succeeded"], secs(10));
    assert_eq!(w["attempts"], 2, "{w}");
}

#[test]
fn a_timeout_still_holds_for_a_child_found_again_after_a_restart() {
    let mut server = Server::no_auth();
    let http = server.http();
    let mut spec = sh("bounded", "sleep 30", 1);
    spec["timeout"] = json!("3s");
    let id = http.submit(&spec);
    http.wait_state(&id, &["running"], secs(10));
    server.kill9();
    server.restart();
    let http = server.http();
    assert_eq!(http.workload(&id)["state"], "running");
    let w = http.wait_state(&id, &["failed", "succeeded", "lost"], secs(10));
    assert_eq!(
        (w["state"].as_str(), w["reason"].as_str()),
        (Some("failed"), Some("timeout")),
        "{w}"
    );
    let (pgid, _) = server.pid_record(&id, 1).unwrap();
    assert!(!group_alive(pgid));
}

// ---------------------------------------------------------------------------------------------
// 6. Metrics, OpenAPI, docs
// ---------------------------------------------------------------------------------------------

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_openapi_and_docs() {
    let server = Server::no_auth();
    let http = server.http();
    let id = http.submit(&sh("busy", "sleep 30", 1));
    http.wait_state(&id, &["running"], secs(10));
    let done = http.submit(&sh("quick", "true", 0));
    http.wait_state(&done, &["succeeded"], secs(10));

    let text = wait_for(secs(10), "metrics after a telemetry poll", || {
        let r = http.get("/metrics");
        assert_eq!(r.status, 200);
        let t = r.body;
        (metric(&t, "gantry_gpu_available") == Some(3.0)
            && t.contains("gantry_workloads{state=\"running\",queue=\"default\"} 1"))
        .then_some(t)
    });
    assert_eq!(metric(&text, "gantry_gpu_total"), Some(4.0), "{text}");
    assert!(
        text.contains("gantry_workloads{state=\"succeeded\",queue=\"default\"} 1"),
        "{text}"
    );
    let util: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gantry_gpu_utilization{"))
        .collect();
    assert_eq!(util.len(), 4, "{text}");
    for (i, model) in ["H100-80GB", "H100-80GB", "A100-40GB", "A100-40GB"]
        .iter()
        .enumerate()
    {
        let l = util
            .iter()
            .find(|l| l.contains(&format!("gpu=\"{i}\"")))
            .unwrap_or_else(|| panic!("gpu {i}: {text}"));
        assert!(
            l.contains("uuid=\"GPU-") && l.contains(&format!("model=\"{model}\"")),
            "{l}"
        );
        let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.0..=100.0).contains(&v), "{l}");
    }
    assert!(
        metric(&text, "gantry_scheduling_duration_seconds_count").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("gantry_scheduling_duration_seconds_bucket{le="),
        "{text}"
    );
    assert!(
        metric(&text, "gantry_queue_wait_seconds_count").unwrap() >= 2.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE gantry_queue_wait_seconds histogram"),
        "{text}"
    );

    let r = http.get("/openapi.json");
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/workloads",
        "/api/workloads/{id}/status",
        "/api/workloads/{id}/logs",
        "/api/workloads/{id}/cancel",
        "/api/scheduler/strategy",
        "/api/gpu/resources",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "no path {path}");
    }
    assert!(doc["paths"]["/api/workloads"]["post"].is_object());
    assert!(doc["paths"]["/api/workloads"]["get"].is_object());
    let spec = &doc["components"]["schemas"]["WorkloadSpec"];
    assert!(spec["properties"]["resources"].is_object(), "{spec}");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every reference points at a schema the document has.
    let body = doc.to_string();
    let mut refs = HashSet::new();
    for part in body.split("\"$ref\":\"").skip(1) {
        refs.insert(part.split('"').next().unwrap().to_string());
    }
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("odd $ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {r}"
        );
    }

    let r = http.get("/docs");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/html"),
        "{:?}",
        r.headers
    );
    assert!(r.body.to_lowercase().contains("swagger"), "{}", r.body);
    let r = http.get("/api/monitoring/metrics").json();
    assert_eq!(
        (r["gpuTotal"].as_u64(), r["gpuAvailable"].as_u64()),
        (Some(4), Some(3)),
        "{r}"
    );
    let r = http.get("/api/gpu/resources").json();
    let held: Vec<&Value> = r["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| !g["allocations"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0]["allocations"][0]["workload"].as_str(),
        Some(id.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// 7. CLI against the server
// ---------------------------------------------------------------------------------------------

#[test]
fn cli_commands_and_exit_codes() {
    let mut server = Server::no_auth();
    let ok = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "exit {:?}: {}{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };

    let out = ok(&server.cli(
        &["submit", "--gpus", "1", "--", "sh", "-c", "echo cli"],
        None,
    ));
    let id = out.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("wl-"), "{out}");
    let status = wait_for(secs(10), "the CLI's workload to succeed", || {
        let v: Value =
            serde_json::from_str(&ok(&server.cli(&["status", &id, "--json"], None))).unwrap();
        (v["workload"]["state"] == "succeeded").then_some(v)
    });
    assert_eq!(status["workload"]["exitCode"], 0);
    assert!(status["events"].as_array().unwrap().len() >= 4);
    assert_eq!(ok(&server.cli(&["logs", &id], None)), "cli\n");
    let human = ok(&server.cli(&["status", &id], None));
    assert!(
        human.contains("succeeded") && human.contains("events:"),
        "{human}"
    );
    let list: Value =
        serde_json::from_str(&ok(&server.cli(&["workloads", "--json"], None))).unwrap();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == id.as_str())
    );
    let table = ok(&server.cli(&["workloads", "--state", "succeeded"], None));
    assert!(table.contains(&id), "{table}");
    let table = ok(&server.cli(&["workloads", "--state", "running"], None));
    assert!(!table.contains(&id), "{table}");

    // A YAML file and stdin.
    let file = server.dir().join("w.yaml");
    std::fs::write(&file, "name: from-file\nrun:\n  command: [\"true\"]\n").unwrap();
    let out = ok(&server.cli(&["submit", file.to_str().unwrap(), "--json"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "from-file");

    // Cancel: a running one, then a finished one (a server error: exit 1).
    let out = ok(&server.cli(
        &[
            "submit", "--gpus", "1", "--name", "long", "--", "sleep", "30",
        ],
        None,
    ));
    let long = out.split_whitespace().next().unwrap().to_string();
    server.http().wait_state(&long, &["running"], secs(10));
    let out = ok(&server.cli(&["cancel", &long], None));
    assert!(out.contains(&long), "{out}");
    server.http().wait_state(&long, &["cancelled"], secs(5));
    let out = server.cli(&["cancel", &long], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("409"), "{}", text(&out.stderr));

    // logs -f on work that has not started yet waits for it, then follows it to its end.
    let http = server.http();
    let holder = http.submit(&blocker("H100-80GB"));
    http.wait_state(&holder, &["running"], secs(10));
    let spec = json!({"name": "followed", "resources": {"gpu": {"count": 2, "models": ["H100-80GB"]}},
                      "run": {"command": ["sh", "-c", "echo a; sleep 1; echo b"]}});
    let followed = http.submit(&spec);
    let follow = std::process::Command::new(harness::bin())
        .args(["logs", "-f", &followed, "--server", &server.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(http.workload(&followed)["state"], "pending");
    assert_eq!(http.cancel(&holder).status, 202);
    let out = follow.wait_with_output().unwrap();
    assert_eq!(ok(&out), "a\nb\n");
    assert_eq!(http.workload(&followed)["state"], "succeeded");

    // Strategy: switch, show, and it survives a restart.
    assert_eq!(
        ok(&server.cli(&["strategy", "best_fit"], None)).trim(),
        "best_fit"
    );
    assert_eq!(ok(&server.cli(&["strategy"], None)).trim(), "best_fit");
    server.restart();
    assert_eq!(ok(&server.cli(&["strategy"], None)).trim(), "best_fit");
    let out = server.cli(&["strategy", "nope"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("strategy"),
        "{}",
        text(&out.stderr)
    );

    // Nodes and health.
    let nodes = ok(&server.cli(&["nodes"], None));
    let rows: Vec<&str> = nodes
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 4, "{nodes}");
    let v: Value = serde_json::from_str(&ok(&server.cli(&["nodes", "--json"], None))).unwrap();
    assert_eq!(v["gpus"].as_array().unwrap().len(), 4);
    assert_eq!(v["backend"], "simulated");
    ok(&server.cli(&["health"], None));

    // Exit codes: usage 2; server errors and an unreachable server 1.
    for args in [
        &["submit", "--bogus"][..],
        &["status"],
        &["frobnicate"],
        &["workloads", "--limit", "x"],
    ] {
        let out = server.cli(args, None);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    for args in [
        &["cancel", "wl-999999"][..],
        &["status", "xyz"],
        &["logs", "wl-999999"],
        &["workloads", "--state", "nope"],
    ] {
        let out = server.cli(args, None);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = server.cli(&["status", "xyz"], None);
    assert!(
        text(&out.stderr).contains("id"),
        "the field is named: {}",
        text(&out.stderr)
    );
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    let out = std::process::Command::new(harness::bin())
        .args(["health", "--server", &dead])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // A template from a description is a valid one-element workloads file with 2 GPUs.
    let out = ok(&std::process::Command::new(harness::bin())
        .args([
            "template",
            "--from-description",
            "fine-tune a 7 billion parameter model on 2 GPUs",
        ])
        .output()
        .unwrap());
    let spec: Value = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(spec["resources"]["gpu"]["count"], 2, "{out}");
    let indented: String = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("- {l}\n")
            } else {
                format!("  {l}\n")
            }
        })
        .collect();
    let file = server.dir().join("template.yaml");
    std::fs::write(&file, &indented).unwrap();
    ok(&std::process::Command::new(harness::bin())
        .args(["validate", "--workloads", file.to_str().unwrap()])
        .output()
        .unwrap());
}

/// `ttlAfterFinished`: a finished workload and its logs are deleted once the TTL has passed; one
/// without a TTL stays; the audit log keeps the history.
#[test]
fn finished_workloads_go_after_their_ttl() {
    let server = Server::start(Opts {
        no_auth: true,
        extra: vec![
            "--grace".into(),
            "1".into(),
            "--ttl-sweep-secs".into(),
            "1".into(),
        ],
    });
    let http = server.http();
    let mut spec = sh("short-lived", "echo bye", 0);
    spec["ttlAfterFinished"] = json!("1s");
    let gone = http.submit(&spec);
    let kept = http.submit(&sh("kept", "echo stay", 0));
    http.wait_state(&gone, &["succeeded"], secs(10));
    http.wait_state(&kept, &["succeeded"], secs(10));
    assert!(
        server.logs().join(&gone).exists(),
        "logs exist while it is kept"
    );
    wait_for(secs(10), "the TTL sweep to delete the workload", || {
        (http.get(&format!("/api/workloads/{gone}/status")).status == 404).then_some(())
    });
    assert!(
        !server.logs().join(&gone).exists(),
        "its logs are removed with it"
    );
    assert_eq!(
        http.get(&format!("/api/workloads/{kept}/status")).status,
        200
    );
}

//! Queues in `gantry serve`, end to end: quotas hold work at admission, fair share orders equal
//! priorities, the routes refuse bad input naming the field, roles apply, and queues survive a
//! restart. The real binary on loopback with simulated GPUs (`2xH100-80GB,2xA100-40GB`), real child
//! processes and a real store (the harness of `server.rs`, included, not edited).

#[path = "server/harness.rs"]
mod harness;

use harness::{Http, Opts, Server, bin, text, wait_for};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A spec in `queue` on `count` H100s running `sh -c script`.
fn on_h100(name: &str, queue: &str, count: u32, script: &str) -> Value {
    json!({"name": name, "queue": queue,
           "resources": {"gpu": {"count": count, "models": ["H100-80GB"]}},
           "run": {"command": ["sh", "-c", script]}})
}

fn put(http: &Http, name: &str, body: &Value) -> harness::Resp {
    http.request(
        "PUT",
        &format!("/api/queues/{name}"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn queue_view(http: &Http, name: &str) -> Option<Value> {
    let r = http.get("/api/queues");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()?
        .iter()
        .find(|q| q["name"] == name)
        .cloned()
}

#[test]
fn a_quota_holds_work_at_admission_survives_a_restart_and_blocks_deleting_a_busy_queue() {
    let mut server = Server::no_auth();
    let http = server.http();
    assert_eq!(http.get("/api/queues").json(), json!([]));
    let r = put(&http, "research", &json!({"guaranteed": {"gpus": 1}}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["declared"], true);
    let r = put(
        &http,
        "default",
        &json!({"guaranteed": {"gpus": 2}, "weight": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Bad input: 400 naming the field, nothing stored.
    for (name, body, field) in [
        (
            "research",
            json!({"guaranteed": {"gpus": "lots"}}),
            "guaranteed.gpus",
        ),
        ("research", json!({"weight": 0}), "weight"),
        (
            "research",
            json!({"borrowingLimit": {"gpus": 1}}),
            "borrowingLimit",
        ),
        (
            "research",
            json!({"guaranteed": {"gpus": 3}}),
            "guaranteed.gpus",
        ),
        ("research", json!({"colour": "red"}), "colour"),
        (
            "research",
            json!({"guaranteed": {"gpus": 1, "tpus": 2}}),
            "guaranteed.tpus",
        ),
        ("Bad_Name", json!({}), "name"),
    ] {
        let r = put(&http, name, &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(
            r.api_error().1.as_deref(),
            Some(field),
            "{body}: {}",
            r.body
        );
    }
    assert_eq!(
        queue_view(&http, "research").expect("research")["guaranteed"],
        json!({"gpus": "1"})
    );
    // The sum of guarantees (1 + 2 + 2) would exceed the 4 GPUs.
    let r = put(&http, "extra", &json!({"guaranteed": {"gpus": 2}}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("guaranteed GPUs add up to 5"), "{}", r.body);

    // Queues are declared: a workload must name one of them.
    let r = http.post_json(
        "/api/workloads",
        &on_h100("lost", "nope", 1, "true").to_string(),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.api_error().1.as_deref(), Some("queue"));

    // research may hold 1 GPU: the second job waits at admission though GPUs are free.
    let first = http.submit(&on_h100("r1", "research", 1, "sleep 60"));
    http.wait_state(&first, &["running"], secs(10));
    let second = http.submit(&on_h100("r2", "research", 1, "sleep 60"));
    let want =
        "waiting: queue research: gpu milli would be 2000, over guarantee 1000 + borrowing limit 0";
    wait_for(secs(10), "the admission reason", || {
        (http.workload(&second)["reason"] == want).then_some(())
    });
    let e = http.get(&format!("/api/workloads/{second}/explain")).json();
    assert_eq!(e["stage"], "admission", "{e}");
    let q = queue_view(&http, "research").expect("research");
    assert_eq!(
        (q["running"].clone(), q["pending"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(q["used"]["gpus"], 1.0);
    // Work in the default queue still runs beside it.
    let other = http.submit(&on_h100("d1", "default", 1, "sleep 60"));
    http.wait_state(&other, &["running"], secs(10));

    // After kill -9 and a restart the quota still holds.
    server.restart();
    let http = server.http();
    std::thread::sleep(secs(2));
    assert_eq!(http.workload(&second)["state"], "pending");
    wait_for(secs(10), "the admission reason after the restart", || {
        (http.workload(&second)["reason"] == want).then_some(())
    });

    // A busy queue cannot be deleted; an idle one can.
    let r = http.request("DELETE", "/api/queues/research", &[], b"");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("2 unfinished"), "{}", r.body);
    // Cancelling the running job lets the waiting one in.
    http.cancel(&first);
    http.wait_state(&second, &["running"], secs(15));
    http.cancel(&second);
    http.wait_state(&second, &["cancelled"], secs(10));
    let r = http.request("DELETE", "/api/queues/research", &[], b"");
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(queue_view(&http, "research").is_none());
    let r = http.request("DELETE", "/api/queues/research", &[], b"");
    assert_eq!(r.status, 404, "{}", r.body);
    http.cancel(&other);
}

#[test]
fn among_equal_priorities_the_queue_using_less_goes_first() {
    let server = Server::no_auth();
    let http = server.http();
    // a already runs on one H100; a short job of ops holds the other.
    let a_running = http.submit(&on_h100("a-run", "a", 1, "sleep 60"));
    http.wait_state(&a_running, &["running"], secs(10));
    let blocker = http.submit(&on_h100("ops", "ops", 1, "sleep 3"));
    http.wait_state(&blocker, &["running"], secs(10));
    // a's next job is submitted before b's; b uses nothing, so b goes first.
    let a_next = http.submit(&on_h100("a-next", "a", 1, "sleep 60"));
    std::thread::sleep(Duration::from_millis(50));
    let b_next = http.submit(&on_h100("b-next", "b", 1, "sleep 60"));
    let e = http.get(&format!("/api/workloads/{b_next}/explain")).json();
    assert_eq!(e["position"]["overall"], 1, "{e}");
    http.wait_state(&b_next, &["running"], secs(15));
    assert_eq!(http.workload(&a_next)["state"], "pending");
    let shares: Vec<(String, f64)> = http
        .get("/api/queues")
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap_or("").to_string(),
                q["share"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    assert!(shares.contains(&("a".into(), 0.25)), "{shares:?}");
    assert!(shares.contains(&("b".into(), 0.25)), "{shares:?}");
    for id in [&a_running, &a_next, &b_next] {
        http.cancel(id);
    }
}

#[test]
fn only_operators_change_queues_and_the_cli_sets_and_lists_them() {
    let server = Server::start(Opts {
        no_auth: false,
        extra: vec!["--grace".into(), "1".into()],
    });
    let (_, submitter) = server.token("sam", "submitter");
    let (_, operator) = server.token("olga", "operator");
    let r = put(
        &server.http_as(&submitter),
        "research",
        &json!({"guaranteed": {"gpus": 1}}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let cli = |token: &str, args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .env("GANTRY_SERVER", server.url())
            .env("GANTRY_TOKEN", token)
            .output()
            .expect("gantry runs");
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, out, err) = cli(
        &operator,
        &[
            "queue",
            "set",
            "research",
            "--gpus",
            "2",
            "--cohort",
            "lab",
            "--borrow-gpus",
            "1",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("research") && out.contains("gpus=2"), "{out}");
    let (code, out, _) = cli(&submitter, &["queue", "list"]);
    assert_eq!(code, Some(0));
    let line = out
        .lines()
        .find(|l| l.starts_with("research"))
        .unwrap_or_default();
    assert!(line.contains("lab") && line.contains("gpus=1"), "{out}");
    let (code, _, err) = cli(&submitter, &["queue", "delete", "research"]);
    assert_eq!(code, Some(1), "{err}");
    let (code, out, err) = cli(&operator, &["queue", "set", "research", "--weight", "0"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("weight"), "{err}");
    let (code, _, err) = cli(&operator, &["queue", "delete", "research"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_queue_within_its_guarantee_reclaims_what_another_queue_borrowed() {
    let server = Server::start(Opts {
        no_auth: true,
        extra: ["--grace", "1", "--preemption-min-runtime", "0"]
            .map(String::from)
            .to_vec(),
    });
    let http = server.http();
    for q in ["a", "b"] {
        let r = put(
            &http,
            q,
            &json!({"guaranteed": {"gpus": 2}, "cohort": "lab"}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let one_gpu = |name: &str, queue: &str| {
        json!({"name": name, "queue": queue, "resources": {"gpu": {"count": 1}},
               "run": {"command": ["sleep", "60"]}})
    };
    // a takes all four GPUs: two of its own, two borrowed from b's idle guarantee.
    let mut a_jobs = Vec::new();
    for i in 0..4 {
        let id = http.submit(&one_gpu(&format!("a{i}"), "a"));
        http.wait_state(&id, &["running"], secs(10));
        a_jobs.push(id);
    }
    // b wants one of its guaranteed GPUs back: equal priority, yet a borrowed job is stopped.
    let b = http.submit(&one_gpu("b0", "b"));
    http.wait_state(&b, &["running"], secs(15));
    let victims: Vec<&String> = a_jobs
        .iter()
        .filter(|id| http.workload(id)["state"] == "pending")
        .collect();
    assert_eq!(victims.len(), 1, "exactly one borrowed job reclaimed");
    let events = http.events(victims[0]);
    assert!(
        events
            .iter()
            .any(|e| e["toState"] == "preempted" && e["reason"] == format!("preempted by {b}")),
        "{events:?}"
    );
    // The victim now waits at admission: the cohort has nothing left to lend.
    let reason = wait_for(secs(10), "the victim's admission reason", || {
        http.workload(victims[0])["reason"]
            .as_str()
            .filter(|r| r.contains("cohort lab has no gpu milli left"))
            .map(str::to_string)
    });
    assert!(reason.starts_with("waiting: queue a:"), "{reason}");
    for id in a_jobs.iter().chain([&b]) {
        http.cancel(id);
    }
}

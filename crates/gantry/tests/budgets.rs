//! Budgets and alerts end to end: the real `gantry serve` (simulated GPUs, a `--prices` file that
//! makes an H100 cost one dollar a second) and a real HTTP receiver on loopback (a small HTTP/1.1
//! server on a std `TcpListener`, in `server/receiver.rs`) that records every webhook POST.
//!
//! A budget crossing is delivered once per threshold in each format; a receiver that fails twice
//! gets the alert on the third try and only once; a `kill -9` between the crossing and the
//! delivery still delivers exactly once after the restart; a hard cap keeps new work of a queue
//! over budget waiting (saying why) while other queues run; bad input is refused naming the field,
//! and webhook URLs are shown whole to admins only.

#[path = "server/harness.rs"]
mod harness;
#[path = "server/receiver.rs"]
mod receiver;

use harness::{Http, Opts, Resp, Server, free_port, text, wait_for};
use receiver::{Hit, Receiver};
use serde_json::{Value, json};
use std::time::Duration;

/// H100 at 3600 USD per GPU-hour: one dollar a second.
const PRICES: &str = "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 3600, source: test, date: 2026-01-01}\n  - {model: A100-40GB, pool: on-demand, per_gpu_hour: 0.01, source: test, date: 2026-01-01}\n";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A server with the test prices, without tokens unless `auth`.
fn server(auth: bool) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.yaml");
    std::fs::write(&path, PRICES).unwrap();
    let s = Server::start(Opts {
        no_auth: !auth,
        extra: vec![
            "--grace".into(),
            "1".into(),
            "--budget-check-interval".into(),
            "1".into(),
            "--prices".into(),
            path.display().to_string(),
        ],
    });
    (dir, s)
}

fn put_json(http: &Http, path: &str, body: &Value) -> Resp {
    http.request(
        "PUT",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn add_webhook(http: &Http, name: &str, url: &str, format: &str) {
    let r = http.post_json(
        "/api/webhooks",
        &json!({"name": name, "url": url, "format": format}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A workload in `queue` holding one GPU of `model` for `seconds`.
fn hold(queue: &str, model: &str, seconds: u32) -> Value {
    json!({"name": format!("{queue}-job"), "queue": queue,
           "resources": {"gpu": {"count": 1, "models": [model]}},
           "run": {"command": ["sleep", seconds.to_string()]}})
}

fn alerts(http: &Http) -> Vec<Value> {
    let r = http.get("/api/alerts");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().cloned().unwrap_or_default()
}

#[test]
fn a_crossing_is_delivered_once_per_threshold_in_each_format_even_to_a_flaky_receiver() {
    let (_prices, mut server) = server(false);
    let http = server.http();
    let port = free_port();
    let receiver = Receiver::start(port);
    let base = format!("http://127.0.0.1:{port}");
    add_webhook(&http, "chat", &format!("{base}/slack"), "slack");
    add_webhook(&http, "teams", &format!("{base}/teams"), "teams");
    add_webhook(&http, "generic", &format!("{base}/json"), "json");
    add_webhook(&http, "flaky", &format!("{base}/flaky"), "json");
    // Three dollars a month: 50 % after 1.5 s of an H100, 80 % after 2.4 s, 100 % after 3 s.
    let r = put_json(&http, "/api/budgets/ml", &json!({"monthly": 3.0}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["thresholds"], json!([50, 80, 100]));
    let job = http.submit(&hold("ml", "H100-80GB", 120));
    http.wait_state(&job, &["running"], secs(15));

    let all_in = |r: &Receiver| {
        ["/slack", "/teams", "/json", "/flaky"]
            .iter()
            .all(|p| r.delivered(p).len() >= 3)
            .then_some(())
    };
    wait_for(secs(40), "three alerts delivered to every webhook", || {
        all_in(&receiver)
    });
    // A few more rounds of the alert loop (every 2 s), then a restart: nothing is sent again.
    std::thread::sleep(secs(5));
    server.restart();
    std::thread::sleep(secs(5));

    let suffixes = |bodies: &[Value], key: &str| -> Vec<String> {
        let mut v: Vec<String> = bodies
            .iter()
            .map(|b| {
                let k = b[key].as_str().unwrap_or_else(|| panic!("{key} in {b}"));
                k.rsplit(':').next().unwrap().to_string()
            })
            .collect();
        v.sort();
        v
    };
    let json_bodies = receiver.delivered("/json");
    assert_eq!(json_bodies.len(), 3, "{json_bodies:?}");
    assert_eq!(suffixes(&json_bodies, "dedupeKey"), ["100", "50", "80"]);
    for b in &json_bodies {
        assert!(
            b["dedupeKey"].as_str().unwrap().starts_with("budget:ml:"),
            "{b}"
        );
        assert_eq!(b["kind"], "budget");
        assert_eq!(b["payload"]["queue"], "ml");
        assert_eq!(b["payload"]["currency"], "USD");
    }
    let slack = receiver.delivered("/slack");
    assert_eq!(slack.len(), 3, "{slack:?}");
    for b in &slack {
        assert!(b["text"].as_str().unwrap().contains("Queue ml"), "{b}");
        assert_eq!(b["blocks"][0]["type"], "header", "{b}");
    }
    let mut slack_thresholds: Vec<String> = slack
        .iter()
        .map(|b| b["blocks"][0]["text"]["text"].as_str().unwrap().to_string())
        .collect();
    slack_thresholds.sort();
    slack_thresholds.dedup();
    assert_eq!(
        slack_thresholds.len(),
        3,
        "one per threshold: {slack_thresholds:?}"
    );
    let teams = receiver.delivered("/teams");
    assert_eq!(teams.len(), 3, "{teams:?}");
    for b in &teams {
        assert_eq!(b["@type"], "MessageCard", "{b}");
        assert!(
            b["title"].as_str().unwrap().contains("Queue ml reached"),
            "{b}"
        );
    }
    // The flaky receiver: two 500s then a 200 for each alert, and nothing after the 200.
    let flaky_hits: Vec<Hit> = receiver
        .hits()
        .into_iter()
        .filter(|h| h.path == "/flaky")
        .collect();
    assert_eq!(flaky_hits.len(), 9, "{flaky_hits:?}");
    for key in flaky_hits.iter().map(|h| h.body["dedupeKey"].clone()) {
        let statuses: Vec<u16> = flaky_hits
            .iter()
            .filter(|h| h.body["dedupeKey"] == key)
            .map(|h| h.status)
            .collect();
        assert_eq!(statuses, [500, 500, 200], "{key}");
    }
    // The store agrees: three budget alerts, each delivered to all four webhooks.
    let http = server.http();
    let list = alerts(&http);
    assert_eq!(list.len(), 3, "{list:?}");
    for a in &list {
        let d = a["deliveries"].as_array().unwrap();
        assert_eq!(d.len(), 4, "{a}");
        assert!(d.iter().all(|d| d["state"] == "delivered"), "{a}");
        let flaky = d.iter().find(|d| d["webhook"] == "flaky").unwrap();
        assert_eq!(flaky["attempts"], 3, "{a}");
        let chat = d.iter().find(|d| d["webhook"] == "chat").unwrap();
        assert_eq!(chat["attempts"], 1, "{a}");
    }
    // The budget view and the metric say where the queue stands.
    let b = http.get("/api/budgets").json()[0].clone();
    assert_eq!(b["queue"], "ml");
    assert_eq!(b["crossed"], json!([50, 80, 100]));
    assert_eq!(b["over"], true);
    assert_eq!(b["capped"], false, "no hard cap asked");
    let metrics = http.get("/metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gantry_budget_used_ratio{queue=\"ml\"}")),
        "{metrics}"
    );
    // The CLI shows the same.
    let out = server.cli(&["alerts"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("[budget] Queue ml reached 100%"), "{shown}");
    assert!(shown.contains("flaky: delivered after 3 tries"), "{shown}");
    let out = server.cli(&["budget", "list"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("over budget"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_kill_between_crossing_and_delivery_still_delivers_exactly_once() {
    let (_prices, mut server) = server(false);
    let http = server.http();
    // The receiver is down at first: connections are refused.
    let port = free_port();
    add_webhook(
        &http,
        "pager",
        &format!("http://127.0.0.1:{port}/hook"),
        "json",
    );
    let r = put_json(
        &http,
        "/api/budgets/ml",
        &json!({"monthly": 2.0, "thresholds": [50]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    http.submit(&hold("ml", "H100-80GB", 120));
    // The crossing is recorded and its delivery has failed at least once.
    let failed = wait_for(secs(30), "a failed delivery attempt", || {
        alerts(&http).into_iter().find(|a| {
            a["deliveries"][0]["attempts"].as_u64() >= Some(1)
                && a["deliveries"][0]["state"] == "pending"
        })
    });
    assert!(
        failed["deliveries"][0]["lastError"].as_str().is_some(),
        "{failed}"
    );
    server.kill9();
    let receiver = Receiver::start(port);
    server.restart();
    let http = server.http();
    wait_for(secs(30), "the delivery after the restart", || {
        (!receiver.delivered("/hook").is_empty()).then_some(())
    });
    std::thread::sleep(secs(5));
    let got = receiver.hits();
    assert_eq!(got.len(), 1, "exactly one delivery: {got:?}");
    assert!(
        got[0].body["dedupeKey"].as_str().unwrap().ends_with(":50"),
        "{got:?}"
    );
    let list = alerts(&http);
    assert_eq!(list.len(), 1, "{list:?}");
    let d = &list[0]["deliveries"][0];
    assert_eq!(d["state"], "delivered", "{d}");
    assert!(d["attempts"].as_u64().unwrap() >= 2, "{d}");
}

#[test]
fn a_hard_cap_holds_new_work_of_a_queue_over_budget_while_others_run() {
    let (_prices, server) = server(false);
    let http = server.http();
    let r = put_json(
        &http,
        "/api/budgets/capped",
        &json!({"monthly": 1.0, "thresholds": [100], "hardCap": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let first = http.submit(&hold("capped", "H100-80GB", 120));
    http.wait_state(&first, &["running"], secs(15));
    wait_for(secs(30), "the queue capped", || {
        let b = http.get("/api/budgets").json()[0].clone();
        (b["capped"] == true).then_some(())
    });
    let held = http.submit(&hold("capped", "A100-40GB", 1));
    let other = http.submit(&hold("other", "A100-40GB", 1));
    http.wait_state(&other, &["succeeded"], secs(20));
    let w = http.workload(&held);
    assert_eq!(w["state"], "pending", "{w}");
    let reason = w["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("waiting: queue capped is over its monthly budget (spent "),
        "{reason}"
    );
    assert!(reason.ends_with(" of 1 USD); hard cap on"), "{reason}");
    // Running work is not stopped.
    assert_eq!(http.workload(&first)["state"], "running");
    // A larger budget lifts the cap at once.
    let r = put_json(
        &http,
        "/api/budgets/capped",
        &json!({"monthly": 100000.0, "thresholds": [100], "hardCap": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["capped"], false);
    http.wait_state(&held, &["running", "succeeded"], secs(15));
}

#[test]
fn bad_input_names_the_field_roles_apply_and_urls_are_redacted() {
    let (_prices, server) = server(true);
    let (_, admin) = server.token("boss", "admin");
    let (_, operator) = server.token("ops", "operator");
    let (_, viewer) = server.token("eve", "viewer");
    let ops = server.http_as(&operator);
    for (body, field) in [
        (json!({"monthly": -1.0}), "monthly"),
        (
            json!({"monthly": 5.0, "thresholds": [80, 50]}),
            "thresholds",
        ),
        (json!({"monthly": 5.0, "thresholds": [0]}), "thresholds"),
        (json!({"monthly": 5.0, "thresholds": [1001]}), "thresholds"),
        (json!({"monthly": 5.0, "thresholds": []}), "thresholds"),
        (json!({"monthly": "lots"}), "monthly"),
        (json!({}), "monthly"),
    ] {
        let r = put_json(&ops, "/api/budgets/ml", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(
            r.api_error().1.as_deref(),
            Some(field),
            "{body}: {}",
            r.body
        );
    }
    // Unknown fields are refused too.
    let r = put_json(
        &ops,
        "/api/budgets/ml",
        &json!({"monthly": 5.0, "hardcap": true}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("hardcap"), "{}", r.body);
    let secret = "https://hooks.slack.com/services/T000/B000/SECRET";
    for (body, field) in [
        (
            json!({"name": "x", "url": "ftp://h/x", "format": "json"}),
            "url",
        ),
        (
            json!({"name": "x", "url": "hooks.slack.com/x", "format": "json"}),
            "url",
        ),
        (
            json!({"name": "x", "url": secret, "format": "discord"}),
            "format",
        ),
        (
            json!({"name": "", "url": secret, "format": "slack"}),
            "name",
        ),
        (
            json!({"name": "a b", "url": secret, "format": "slack"}),
            "name",
        ),
        (json!({"url": secret, "format": "slack"}), "name"),
    ] {
        let r = ops.post_json("/api/webhooks", &body.to_string());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(
            r.api_error().1.as_deref(),
            Some(field),
            "{body}: {}",
            r.body
        );
    }
    // A viewer reads but may not change anything.
    let eve = server.http_as(&viewer);
    let r = put_json(&eve, "/api/budgets/ml", &json!({"monthly": 5.0}));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = eve.post_json(
        "/api/webhooks",
        &json!({"name": "x", "url": secret, "format": "slack"}).to_string(),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(eve.get("/api/budgets").status, 200);
    assert_eq!(eve.get("/api/alerts").status, 200);
    assert_eq!(
        eve.get("/api/alerts?limit=0").api_error().1.as_deref(),
        Some("limit")
    );

    // The CLI as an operator: set, list, add a webhook.
    let out = server.cli(
        &[
            "budget",
            "set",
            "ml",
            "--monthly",
            "500",
            "--thresholds",
            "25,75",
            "--hard-cap",
        ],
        Some(&operator),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("25,75"), "{}", text(&out.stdout));
    let out = server.cli(&["budget", "list", "--json"], Some(&viewer));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["queue"], "ml");
    assert_eq!(listed[0]["monthly"], 500.0);
    assert_eq!(listed[0]["thresholds"], json!([25, 75]));
    assert_eq!(listed[0]["hardCap"], true);
    assert_eq!(listed[0]["spent"], "0.00");
    let out = server.cli(
        &["webhook", "add", "chat", secret, "--format", "slack"],
        Some(&operator),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A second webhook of the same name is a conflict, not a bad request.
    let r = ops.post_json(
        "/api/webhooks",
        &json!({"name": "chat", "url": secret, "format": "json"}).to_string(),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.api_error().1.as_deref(), Some("name"), "{}", r.body);
    let out = server.cli(
        &[
            "budget",
            "set",
            "ml",
            "--monthly",
            "5",
            "--thresholds",
            "75,25",
        ],
        Some(&operator),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("thresholds"),
        "{}",
        text(&out.stderr)
    );

    // The URL: whole for the admin, scheme and host for everyone else.
    let hooks = server.http_as(&admin).get("/api/webhooks").json();
    assert_eq!(hooks[0]["url"], secret);
    assert_eq!(hooks[0]["redacted"], false);
    for token in [&operator, &viewer] {
        let out = server.cli(&["webhook", "list"], Some(token));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("https://hooks.slack.com/…"), "{shown}");
    }
    // Remove and delete; a second time is a 404.
    let out = server.cli(&["webhook", "remove", "chat"], Some(&operator));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = server.cli(&["budget", "delete", "ml"], Some(&operator));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = server.cli(&["budget", "delete", "ml"], Some(&operator));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    assert_eq!(
        ops.request("DELETE", "/api/webhooks/chat", &[], b"").status,
        404
    );
    assert!(
        ops.get("/api/budgets")
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
}

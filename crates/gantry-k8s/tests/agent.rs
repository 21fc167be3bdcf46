//! The node agent's API side against a faithful fake of the API server: `tower_test::mock::pair()`
//! handed to `kube::Client::new(svc, "default")`, every request checked (method, path, query, content
//! type, body) and answered as a real API server would (404 Status for an absent object, the object
//! for a create or apply). Simulated GPUs (`gantry-gpu`) with an injected XID show the unhealthy path.

use std::collections::BTreeMap;

use gantry_gpu::{DiscoverOptions, SimFault};
use gantry_k8s::agent::{self, Agent, AgentOptions, Error, SyncOutcome};
use gantry_k8s::keys;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tower_test::mock::{Handle, SendResponse};

type FakeApi = Handle<Request<Body>, Response<Body>>;

/// One request the fake API server received.
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
    reply: SendResponse<Response<Body>>,
}

async fn next(api: &mut FakeApi) -> Seen {
    let (req, reply) = api.next_request().await.expect("the agent sent a request");
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.expect("request body");
    Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        },
        reply,
    }
}

fn respond(reply: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("JSON");
    reply.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .expect("response"),
    );
}

fn node(name: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "uid": "uid-of-node", "labels": labels },
    })
}

fn not_found(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": format!("gpunodes.gantry.dev \"{name}\" not found"),
        "reason": "NotFound", "code": 404,
    })
}

/// Two simulated H100s; GPU 1 has had XID 79 (fallen off the bus).
fn snapshots() -> Vec<gantry_gpu::GpuSnapshot> {
    let mut d = gantry_gpu::discover(&DiscoverOptions {
        simulate: Some("2xH100-80GB".into()),
        seed: 3,
        ..DiscoverOptions::default()
    })
    .expect("simulated discovery");
    d.inject_fault(1, SimFault::Xid(79)).expect("inject");
    d.poll(30.0, &[])
}

#[tokio::test]
async fn first_sync_creates_the_gpunode_applies_status_and_labels() {
    let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let snaps = snapshots();
    let status = agent::node_status(
        &snaps,
        "simulated",
        None,
        Some("2026-11-25T21:00:00Z".into()),
    );
    let labels = agent::node_labels(&snaps);
    let expected_status = serde_json::to_value(&status).expect("status JSON");

    let fake = tokio::spawn(async move {
        let mut current = BTreeMap::new();
        current.insert("kubernetes.io/hostname".to_string(), "gpu-1".to_string());
        current.insert(keys::NODE_GPU_COUNT.to_string(), "8".to_string());

        let r = next(&mut api).await;
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/api/v1/nodes/gpu-1")
        );
        respond(r.reply, StatusCode::OK, &node("gpu-1", &current));

        // Server-side apply of the status: absent, so 404.
        let r = next(&mut api).await;
        assert_eq!(r.method, "PATCH");
        assert_eq!(r.path, "/apis/gantry.dev/v1alpha1/gpunodes/gpu-1/status");
        assert!(r.query.contains("fieldManager=gantry-agent"), "{}", r.query);
        assert!(r.query.contains("force=true"), "{}", r.query);
        assert_eq!(r.content_type, "application/apply-patch+yaml");
        let apply = r.body.clone();
        respond(r.reply, StatusCode::NOT_FOUND, &not_found("gpu-1"));

        // Create, owned by the Node.
        let r = next(&mut api).await;
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/apis/gantry.dev/v1alpha1/gpunodes")
        );
        assert_eq!(
            r.body,
            json!({
                "apiVersion": "gantry.dev/v1alpha1",
                "kind": "GPUNode",
                "metadata": {
                    "name": "gpu-1",
                    "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Node", "name": "gpu-1", "uid": "uid-of-node"
                    }],
                },
                "spec": { "nodeName": "gpu-1" },
            })
        );
        let mut created = r.body.clone();
        created["metadata"]["uid"] = json!("uid-of-gpunode");
        respond(r.reply, StatusCode::CREATED, &created);

        // The apply again, the same body, now accepted.
        let r = next(&mut api).await;
        assert_eq!(r.path, "/apis/gantry.dev/v1alpha1/gpunodes/gpu-1/status");
        assert_eq!(r.body, apply);
        let mut applied = created.clone();
        applied["status"] = r.body["status"].clone();
        respond(r.reply, StatusCode::OK, &applied);

        // Labels changed: a merge patch with only the agent's keys.
        let r = next(&mut api).await;
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("PATCH", "/api/v1/nodes/gpu-1")
        );
        assert_eq!(r.content_type, "application/merge-patch+json");
        assert!(r.query.contains("fieldManager=gantry-agent"), "{}", r.query);
        let mut patched = node("gpu-1", &current);
        patched["metadata"]["labels"] = r.body["metadata"]["labels"].clone();
        let label_patch = r.body.clone();
        respond(r.reply, StatusCode::OK, &patched);
        (apply, label_patch)
    });

    let agent = Agent::new(client, "gpu-1");
    let outcome = agent.sync(&status, &labels).await.expect("sync");
    assert_eq!(
        outcome,
        SyncOutcome {
            created: true,
            labels_patched: true
        }
    );
    drop(agent);
    let (apply, label_patch) = fake.await.expect("fake API server");

    assert_eq!(
        apply,
        json!({
            "apiVersion": "gantry.dev/v1alpha1",
            "kind": "GPUNode",
            "metadata": { "name": "gpu-1" },
            "status": expected_status,
        })
    );
    let gpus = apply["status"]["gpus"].as_array().expect("gpus");
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0]["healthy"], true);
    assert_eq!(gpus[0]["model"], "H100-80GB");
    assert!(gpus[0].get("reason").is_none());
    assert_eq!(gpus[1]["healthy"], false, "XID 79 makes GPU 1 unhealthy");
    assert!(
        gpus[1]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("79"),
        "{}",
        gpus[1]
    );
    assert_eq!(apply["status"]["backend"], "simulated");
    assert_eq!(apply["status"]["updatedAt"], "2026-11-25T21:00:00Z");

    let l = &label_patch["metadata"]["labels"];
    assert_eq!(l[keys::NODE_GPU_MODEL], "H100-80GB");
    assert_eq!(l[keys::NODE_GPU_COUNT], "2");
    assert_eq!(l[keys::NODE_GPU_MEMORY], "80g");
    assert!(l[keys::NODE_UTILIZATION].is_string());
    assert!(l.get("kubernetes.io/hostname").is_none(), "only our keys");
}

#[tokio::test]
async fn steady_state_applies_status_and_leaves_unchanged_labels_alone() {
    let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let snaps = snapshots();
    let status = agent::node_status(&snaps, "simulated", Some("560.35.03"), None);
    let labels = agent::node_labels(&snaps);
    let current: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();

    let fake = tokio::spawn(async move {
        let r = next(&mut api).await;
        assert_eq!(r.method, "GET");
        respond(r.reply, StatusCode::OK, &node("gpu-1", &current));
        let r = next(&mut api).await;
        assert_eq!(r.method, "PATCH");
        assert_eq!(r.path, "/apis/gantry.dev/v1alpha1/gpunodes/gpu-1/status");
        assert_eq!(r.body["status"]["driverVersion"], "560.35.03");
        let mut obj = r.body.clone();
        obj["spec"] = json!({});
        respond(r.reply, StatusCode::OK, &obj);
        // Nothing else: the client is dropped after the sync, so the fake sees the end.
        assert!(
            api.next_request().await.is_none(),
            "no label patch expected"
        );
    });

    let agent = Agent::new(client, "gpu-1");
    let outcome = agent.sync(&status, &labels).await.expect("sync");
    assert_eq!(outcome, SyncOutcome::default());
    drop(agent);
    fake.await.expect("fake API server");
}

#[tokio::test]
async fn api_errors_other_than_not_found_are_returned() {
    let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let fake = tokio::spawn(async move {
        let r = next(&mut api).await;
        respond(r.reply, StatusCode::OK, &node("gpu-1", &BTreeMap::new()));
        let r = next(&mut api).await;
        respond(
            r.reply,
            StatusCode::FORBIDDEN,
            &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "message": "forbidden", "reason": "Forbidden", "code": 403}),
        );
    });
    let agent = Agent::new(client, "gpu-1");
    let err = agent
        .sync(
            &agent::node_status(&[], "none", None, None),
            &agent::node_labels(&[]),
        )
        .await
        .expect_err("403 is an error");
    assert!(matches!(err, Error::Kube(_)), "{err}");
    fake.await.expect("fake API server");
}

#[tokio::test]
async fn run_refuses_bad_options_before_touching_the_api() {
    let (svc, _api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let opts = AgentOptions {
        node_name: String::new(),
        discover: DiscoverOptions::default(),
        interval: std::time::Duration::from_secs(1),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
    };
    let e = agent::run(client.clone(), opts.clone())
        .await
        .expect_err("no node");
    assert!(matches!(e, Error::NoNodeName), "{e}");
    let bad = AgentOptions {
        node_name: "n".into(),
        discover: DiscoverOptions {
            simulate: Some("3xH101".into()),
            ..DiscoverOptions::default()
        },
        ..opts
    };
    let e = agent::run(client, bad).await.expect_err("bad spec");
    assert!(matches!(e, Error::Gpu(_)), "{e}");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn metrics_server_serves_dcgm_text_and_probes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (metrics_tx, metrics_rx) = watch::channel(String::new());
    let (ready_tx, ready_rx) = watch::channel(false);
    let server = tokio::spawn(agent::serve_metrics(listener, metrics_rx, ready_rx));

    assert!(http_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
    metrics_tx.send_replace(agent::render_metrics(&snapshots(), "gpu-1"));
    ready_tx.send_replace(true);
    assert!(http_get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    let m = http_get(addr, "/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(m.contains("text/plain; version=0.0.4"), "{m}");
    assert!(
        m.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-"),
        "{m}"
    );
    assert!(
        m.contains("modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-1\"}"),
        "{m}"
    );
    assert!(m.contains("DCGM_FI_DEV_XID_ERRORS{gpu=\"1\""), "{m}");
    server.abort();
}

/// `run` end to end for one tick: simulated GPUs discovered, their status applied to the node's GPUNode
/// and the labels patched, through the same fake API server.
#[tokio::test]
async fn run_discovers_and_syncs_on_the_first_tick() {
    let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let opts = AgentOptions {
        node_name: "sim-1".into(),
        discover: DiscoverOptions {
            simulate: Some("4xA100-40GB".into()),
            seed: 1,
            ..DiscoverOptions::default()
        },
        interval: std::time::Duration::from_secs(3600),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
    };
    let agent = tokio::spawn(agent::run(client, opts));

    let r = next(&mut api).await;
    assert_eq!(r.path, "/api/v1/nodes/sim-1");
    respond(r.reply, StatusCode::OK, &node("sim-1", &BTreeMap::new()));
    let r = next(&mut api).await;
    assert_eq!(r.path, "/apis/gantry.dev/v1alpha1/gpunodes/sim-1/status");
    let status = r.body["status"].clone();
    let mut obj = r.body.clone();
    obj["spec"] = json!({ "nodeName": "sim-1" });
    respond(r.reply, StatusCode::OK, &obj);
    let r = next(&mut api).await;
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("PATCH", "/api/v1/nodes/sim-1")
    );
    let labels = r.body["metadata"]["labels"].clone();
    respond(r.reply, StatusCode::OK, &node("sim-1", &BTreeMap::new()));
    agent.abort();

    assert_eq!(status["backend"], "simulated");
    assert_eq!(status["gpus"].as_array().map(Vec::len), Some(4));
    assert_eq!(status["gpus"][3]["model"], "A100-40GB");
    assert!(
        status["updatedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );
    assert_eq!(labels[keys::NODE_GPU_MODEL], "A100-40GB");
    assert_eq!(labels[keys::NODE_GPU_COUNT], "4");
    assert_eq!(labels[keys::NODE_GPU_MEMORY], "40g");
}

//! `gantry bench k8s`: Pods bound per second through the whole scheduler path (model, decision, the
//! Binding request through the kube client) against an in-process fake API server that answers at once.

use super::{Binder, Metrics, Model};
use crate::keys;
use gantry_core::Policy;
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::client::Body;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What [`bench`] measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BenchReport {
    /// Nodes in the fake cluster.
    pub nodes: usize,
    /// Pending Pods submitted.
    pub pods: usize,
    /// Pods bound.
    pub bound: usize,
    /// Seconds spent deciding (the model alone).
    pub decide_secs: f64,
    /// Seconds from the first decision to the last binding answered.
    pub total_secs: f64,
    /// Pods bound per second over `total_secs`.
    pub pods_per_sec: f64,
    /// Binding requests the fake API received.
    pub bind_requests: usize,
    /// How the client reached the fake: `in-process` (a tower service) or `http` (loopback HTTP/1.1).
    pub transport: &'static str,
}

/// A kube client talking to an in-process fake API that answers every request at once, as the real API
/// server would on success: `201` with a `Status` for a binding, `201` for an Event, `200` for a delete,
/// `404` for anything else. The counter counts binding requests.
pub fn fake_api() -> (Client, Arc<AtomicUsize>) {
    let binds = Arc::new(AtomicUsize::new(0));
    let counter = binds.clone();
    let svc = tower::service_fn(move |req: http::Request<Body>| {
        let counter = counter.clone();
        async move {
            let path = req.uri().path().to_string();
            let method = req.method().clone();
            let (status, body) = if method == http::Method::POST && path.ends_with("/binding") {
                counter.fetch_add(1, Ordering::Relaxed);
                (
                    201,
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}"#
                        .to_string(),
                )
            } else if method == http::Method::POST && path.ends_with("/events") {
                (
                    201,
                    r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"e","namespace":"default"},"involvedObject":{}}"#
                        .to_string(),
                )
            } else if method == http::Method::DELETE {
                (
                    200,
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":200}"#
                        .to_string(),
                )
            } else {
                (
                    404,
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404}"#
                        .to_string(),
                )
            };
            let mut resp = http::Response::new(Body::from(body.into_bytes()));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
            Ok::<_, Infallible>(resp)
        }
    });
    (Client::new(svc, "default"), binds)
}

fn quantities(items: &[(&str, String)]) -> BTreeMap<String, Quantity> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.clone())))
        .collect()
}

/// A Ready GPU node: `gpus` of `model`, with CPU and memory allocatable.
pub fn gpu_node(name: &str, model: &str, gpus: u32, cpu: u32, memory_gi: u32) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                keys::NODE_GPU_MODEL.to_string(),
                model.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(quantities(&[
                ("cpu", cpu.to_string()),
                ("memory", format!("{memory_gi}Gi")),
                (keys::NVIDIA_GPU, gpus.to_string()),
                ("pods", "110".into()),
            ])),
            ..NodeStatus::default()
        }),
    }
}

/// A pending Pod for the gantry scheduler: CPU milli, memory MiB, whole GPUs or a share (milli).
pub fn pending_pod(
    namespace: &str,
    name: &str,
    cpu_milli: u64,
    memory_mib: u64,
    gpus: u32,
    share: Option<u16>,
) -> Pod {
    let mut requests = vec![
        ("cpu", format!("{cpu_milli}m")),
        ("memory", format!("{memory_mib}Mi")),
    ];
    if gpus > 0 {
        requests.push((keys::NVIDIA_GPU, gpus.to_string()));
    }
    let mut annotations = BTreeMap::new();
    if let Some(s) = share {
        annotations.insert(keys::GPU_SHARE.to_string(), s.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid: Some(format!("uid-{namespace}-{name}")),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            scheduler_name: Some(keys::SCHEDULER_NAME.into()),
            containers: vec![Container {
                name: "main".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&requests)),
                    limits: Some(quantities(&requests)),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// `count` nodes: even ones 8x H100-80GB (96 CPU, 1 TiB), odd ones 4x A100-40GB (64 CPU, 512 GiB).
pub fn fake_nodes(count: usize) -> Vec<Node> {
    (0..count)
        .map(|i| {
            if i % 2 == 0 {
                gpu_node(&format!("gpu-{i:05}"), "H100-80GB", 8, 96, 1024)
            } else {
                gpu_node(&format!("gpu-{i:05}"), "A100-40GB", 4, 64, 512)
            }
        })
        .collect()
}

/// `count` pending Pods of a fixed mix: 1, 2 or 4 whole GPUs, shares of 250/500 milli, CPU-only.
pub fn fake_pods(count: usize) -> Vec<Pod> {
    (0..count)
        .map(|i| {
            let name = format!("p-{i:06}");
            match i % 10 {
                0..=3 => pending_pod("bench", &name, 8000, 65536, 1, None),
                4 => pending_pod("bench", &name, 16000, 131072, 2, None),
                5 => pending_pod("bench", &name, 24000, 262144, 4, None),
                6 | 7 => pending_pod("bench", &name, 2000, 16384, 0, Some(500)),
                8 => pending_pod("bench", &name, 1000, 8192, 0, Some(250)),
                _ => pending_pod("bench", &name, 2000, 4096, 0, None),
            }
        })
        .collect()
}

/// Places and binds `pods` pending Pods on `nodes` fake GPU nodes through the in-process fake API.
pub async fn bench(nodes: usize, pods: usize) -> BenchReport {
    let (client, binds) = fake_api();
    run_bench(client, binds, nodes, pods, "in-process").await
}

/// The same over real HTTP: a loopback HTTP/1.1 server (axum) answers bindings at once, so the figure
/// includes the client's connection pool, request encoding and response parsing on both sides.
pub async fn bench_http(nodes: usize, pods: usize) -> std::io::Result<BenchReport> {
    use axum::routing::post;
    let binds = Arc::new(AtomicUsize::new(0));
    let counter = binds.clone();
    let app = axum::Router::new().route(
        "/api/v1/namespaces/{ns}/pods/{name}/binding",
        post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let ok = serde_json::from_slice::<serde_json::Value>(&body)
                    .is_ok_and(|b| b["target"]["name"].is_string());
                counter.fetch_add(1, Ordering::Relaxed);
                let code = if ok { 201 } else { 400 };
                (
                    axum::http::StatusCode::from_u16(code).unwrap_or_default(),
                    [("content-type", "application/json")],
                    format!(
                        r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"{}","code":{code}}}"#,
                        if ok { "Success" } else { "Failure" }
                    ),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let uri: http::Uri = format!("http://{addr}")
        .parse()
        .map_err(std::io::Error::other)?;
    let client = Client::try_from(kube::Config::new(uri)).map_err(std::io::Error::other)?;
    let report = run_bench(client, binds, nodes, pods, "http").await;
    server.abort();
    Ok(report)
}

async fn run_bench(
    client: Client,
    binds: Arc<AtomicUsize>,
    nodes: usize,
    pods: usize,
    transport: &'static str,
) -> BenchReport {
    let mut model = Model::new(Policy::Gantry, None);
    for n in fake_nodes(nodes) {
        model.apply_node(&n);
    }
    for p in fake_pods(pods) {
        model.apply_pod(&p);
    }
    let mut binder = Binder::new(client, Arc::new(Metrics::new()));
    let start = Instant::now();
    let mut decide = 0.0;
    let mut bound = 0;
    // Batches as the run loop sees them: decide, bind, repeat until nothing changes.
    loop {
        let t = Instant::now();
        binder.begin_cycle();
        let decisions = model.schedule(k8s_openapi::jiff::Timestamp::now().as_second());
        decide += t.elapsed().as_secs_f64();
        let binds_in = decisions
            .iter()
            .filter(|d| matches!(d, super::Decision::Bind { .. }))
            .count();
        if binds_in == 0 {
            break;
        }
        bound += binder.execute(&mut model, decisions).await.bound;
    }
    let total = start.elapsed().as_secs_f64();
    BenchReport {
        nodes,
        pods,
        bound,
        decide_secs: decide,
        total_secs: total,
        pods_per_sec: if total > 0.0 {
            bound as f64 / total
        } else {
            0.0
        },
        bind_requests: binds.load(Ordering::Relaxed),
        transport,
    }
}

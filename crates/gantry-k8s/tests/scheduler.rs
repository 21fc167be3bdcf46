//! Scheduler tests: the pure decision layer ([`Model`]) fed Node/Pod objects directly, and the I/O layer
//! ([`Binder`]) against a faithful fake of the API at the HTTP boundary.
//!
//! The fake (`FakeApi`) is a tower service handed to `kube::Client::new`, answering as the real API server
//! does for what the scheduler calls: `POST pods/<name>/binding` sets `spec.nodeName` and copies the
//! Binding's annotations onto the Pod (201), refuses a Pod already bound or with another UID (409) or
//! missing (404); `POST events` stores the Event (201); `DELETE pods/<name>` removes the Pod (200, else
//! 404); `PATCH pods/<name>/status` (strategic merge) replaces or adds `status.conditions` by type (200,
//! else 404). The tests then feed the fake's Pods back to the model, as the watch would.

use gantry_core::Policy;
use gantry_k8s::keys;
use gantry_k8s::scheduler::{
    Binder, Decision, GpuDeviceView, GpuNodeView, Metrics, Model, fake_nodes, fake_pods, gpu_node,
    pending_pod,
};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// The time of every scheduling pass in these tests: 2026-11-26T00:00:00Z.
const NOW: i64 = 1_795_651_200;

#[derive(Default)]
struct FakeApi {
    nodes: Vec<Node>,
    pods: HashMap<String, Pod>,
    events: Vec<Event>,
    deleted: Vec<String>,
    bindings: Vec<Value>,
    /// Pods whose binding is answered 409 whatever their state (bound by someone else meanwhile).
    conflict: HashSet<String>,
}

fn status(code: u16, reason: &str) -> String {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},
        "status": if code < 300 {"Success"} else {"Failure"},
        "reason": reason, "message": reason, "code": code})
    .to_string()
}

type Reply = http::Response<BoxBody<bytes::Bytes, Infallible>>;

fn list(kind: &str, items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
        .to_string()
}

fn fake_client(state: Arc<Mutex<FakeApi>>) -> Client {
    let svc = tower::service_fn(move |req: http::Request<Body>| {
        let state = state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes().to_vec())
                .unwrap_or_default();
            let path = parts.uri.path().to_string();
            let query = parts.uri.query().unwrap_or("").to_string();
            if parts.method == http::Method::GET && query.contains("watch=true") {
                // A watch that stays open with no changes.
                let body = StreamBody::new(futures::stream::pending::<
                    Result<http_body::Frame<bytes::Bytes>, Infallible>,
                >());
                return Ok::<Reply, Infallible>(http::Response::new(BoxBody::new(body)));
            }
            let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let mut st = state.lock().expect("fake state");
            let (code, body) = match (parts.method.as_str(), segs.as_slice()) {
                ("POST", ["api", "v1", "namespaces", ns, "pods", name, "binding"]) => {
                    let b: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    st.bindings.push(b.clone());
                    let key = format!("{ns}/{name}");
                    let uid = b["metadata"]["uid"].as_str().map(str::to_string);
                    let conflict = st.conflict.contains(&key);
                    match st.pods.get_mut(&key) {
                        None => (404, status(404, "NotFound")),
                        Some(_) if conflict => (409, status(409, "Conflict")),
                        Some(p) => {
                            let spec = p.spec.get_or_insert_default();
                            if spec.node_name.is_some() || (uid.is_some() && uid != p.metadata.uid)
                            {
                                (409, status(409, "Conflict"))
                            } else {
                                spec.node_name = b["target"]["name"].as_str().map(str::to_string);
                                if let Some(a) = b["metadata"]["annotations"].as_object() {
                                    let ann = p.metadata.annotations.get_or_insert_default();
                                    for (k, v) in a {
                                        ann.insert(k.clone(), v.as_str().unwrap_or("").to_string());
                                    }
                                }
                                (201, status(201, ""))
                            }
                        }
                    }
                }
                ("POST", ["api", "v1", "namespaces", _, "events"]) => {
                    match serde_json::from_slice::<Event>(&bytes) {
                        Ok(e) => {
                            st.events.push(e);
                            (201, String::from_utf8_lossy(&bytes).to_string())
                        }
                        Err(_) => (400, status(400, "BadRequest")),
                    }
                }
                ("PATCH", ["api", "v1", "namespaces", ns, "pods", name, "status"]) => {
                    let patch: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    match st.pods.get_mut(&format!("{ns}/{name}")) {
                        None => (404, status(404, "NotFound")),
                        Some(p) => {
                            let conditions = p
                                .status
                                .get_or_insert_default()
                                .conditions
                                .get_or_insert_default();
                            for c in patch["status"]["conditions"]
                                .as_array()
                                .into_iter()
                                .flatten()
                            {
                                let Ok(c) = serde_json::from_value::<
                                    k8s_openapi::api::core::v1::PodCondition,
                                >(c.clone()) else {
                                    continue;
                                };
                                match conditions.iter_mut().find(|x| x.type_ == c.type_) {
                                    Some(x) => *x = c,
                                    None => conditions.push(c),
                                }
                            }
                            (200, serde_json::to_string(&p).unwrap_or_default())
                        }
                    }
                }
                ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
                    let key = format!("{ns}/{name}");
                    match st.pods.remove(&key) {
                        Some(p) => {
                            st.deleted.push(key);
                            (200, serde_json::to_string(&p).unwrap_or_default())
                        }
                        None => (404, status(404, "NotFound")),
                    }
                }
                ("GET", ["api", "v1", "nodes"]) => {
                    let items = st.nodes.iter().map(|n| json!(n)).collect();
                    (200, list("NodeList", items))
                }
                ("GET", ["api", "v1", "pods"]) => {
                    let items = st.pods.values().map(|p| json!(p)).collect();
                    (200, list("PodList", items))
                }
                ("GET", ["apis", "gantry.dev", "v1alpha1", "gpunodes"]) => (
                    200,
                    json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "GPUNodeList",
                        "metadata": {"resourceVersion": "1"}, "items": []})
                    .to_string(),
                ),
                _ => (404, status(404, "NotFound")),
            };
            let mut resp = http::Response::new(BoxBody::new(Full::new(bytes::Bytes::from(body))));
            *resp.status_mut() = http::StatusCode::from_u16(code).expect("status");
            Ok::<Reply, Infallible>(resp)
        }
    });
    Client::new(svc, "default")
}

struct Harness {
    api: Arc<Mutex<FakeApi>>,
    model: Model,
    binder: Binder,
}

impl Harness {
    fn new(nodes: &[Node], pods: Vec<Pod>) -> Self {
        let api = Arc::new(Mutex::new(FakeApi::default()));
        let mut model = Model::new(Policy::Gantry, None);
        for n in nodes {
            model.apply_node(n);
        }
        {
            let mut st = api.lock().expect("state");
            for p in pods {
                model.apply_pod(&p);
                st.pods.insert(key(&p), p);
            }
        }
        let binder = Binder::new(fake_client(api.clone()), Arc::new(Metrics::new()));
        Harness { api, model, binder }
    }

    fn add_pod(&mut self, p: Pod) {
        self.model.apply_pod(&p);
        self.api.lock().expect("state").pods.insert(key(&p), p);
    }

    /// Feeds the fake's state back to the model, as the Pod watch would.
    fn watch(&mut self) {
        let st = self.api.lock().expect("state");
        for p in st.pods.values() {
            self.model.apply_pod(p);
        }
        for k in &st.deleted {
            let (ns, name) = k.split_once('/').expect("key");
            self.model.delete_pod(ns, name);
        }
    }

    /// Schedules and executes until nothing more is bound; returns every decision made.
    async fn settle(&mut self) -> Vec<Decision> {
        let mut all = Vec::new();
        for _ in 0..50 {
            let decisions = self.model.schedule(NOW);
            if decisions.is_empty() {
                break;
            }
            all.extend(decisions.clone());
            let r = self.binder.execute(&mut self.model, decisions).await;
            self.watch();
            if r.bound == 0 && r.deleted == 0 {
                break;
            }
        }
        all
    }

    fn pod(&self, key: &str) -> Option<Pod> {
        self.api.lock().expect("state").pods.get(key).cloned()
    }

    fn node_of(&self, key: &str) -> Option<String> {
        self.pod(key)?.spec?.node_name
    }
}

fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

fn annotate(mut p: Pod, k: &str, v: &str) -> Pod {
    p.metadata
        .annotations
        .get_or_insert_default()
        .insert(k.into(), v.into());
    p
}

fn gang_pod(name: &str, workload: &str, replica: u32, minimum: u32, gpus: u32) -> Pod {
    let mut p = pending_pod("ml", name, 4000, 32768, gpus, None);
    let labels = p.metadata.labels.get_or_insert_default();
    labels.insert(keys::WORKLOAD.into(), workload.into());
    labels.insert(keys::REPLICA.into(), replica.to_string());
    annotate(p, keys::GANG_MINIMUM, &minimum.to_string())
}

fn qty(n: &Node, k: &str) -> String {
    n.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(k))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

/// Parses `8000m`, `8`, `65536Mi`, `1024Gi` (what the fixtures use).
fn units(q: &str) -> u64 {
    if let Some(m) = q.strip_suffix('m') {
        m.parse().expect("milli")
    } else if let Some(g) = q.strip_suffix("Gi") {
        g.parse::<u64>().expect("Gi") * 1024
    } else if let Some(m) = q.strip_suffix("Mi") {
        m.parse().expect("Mi")
    } else {
        q.parse::<u64>().expect("number") * 1000
    }
}

fn request(p: &Pod, k: &str) -> u64 {
    p.spec.as_ref().expect("spec").containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(k))
        .map_or(0, |q| units(&q.0))
}

#[tokio::test(flavor = "current_thread")]
async fn binds_1000_pods_on_500_gpu_nodes_without_overcommit() {
    let nodes = fake_nodes(500);
    let mut pods = fake_pods(1000);
    // Every 7th pod asks for A100s only; 5 pods ask for 16 GPUs (no node has that many).
    for (i, p) in pods.iter_mut().enumerate() {
        if i % 7 == 0 {
            *p = annotate(p.clone(), keys::GPU_MODELS, "A100-40GB");
        }
    }
    for i in 0..5 {
        pods.push(pending_pod(
            "bench",
            &format!("huge-{i}"),
            1000,
            1024,
            16,
            None,
        ));
    }
    let mut h = Harness::new(&nodes, pods.clone());
    let decisions = h.settle().await;

    let by_name: HashMap<String, &Node> = nodes
        .iter()
        .map(|n| (n.metadata.name.clone().expect("name"), n))
        .collect();
    // Independent accounting from the fake API's bound Pods.
    let mut cpu: HashMap<String, u64> = HashMap::new();
    let mut mem: HashMap<String, u64> = HashMap::new();
    let mut gpu_milli: HashMap<(String, u32), u32> = HashMap::new();
    let mut whole: HashMap<(String, u32), u32> = HashMap::new();
    let mut bound = 0;
    for p in &pods {
        let k = key(p);
        let huge = k.contains("huge");
        let Some(node) = h.node_of(&k) else {
            assert!(huge, "{k} fits somewhere but was not bound");
            continue;
        };
        assert!(!huge, "{k} cannot fit anywhere");
        bound += 1;
        let n = by_name[&node];
        let model = n.metadata.labels.as_ref().expect("labels")[keys::NODE_GPU_MODEL].clone();
        let ann = h
            .pod(&k)
            .and_then(|p| p.metadata.annotations)
            .unwrap_or_default();
        let asks_gpu = request(p, keys::NVIDIA_GPU) > 0 || ann.contains_key(keys::GPU_SHARE);
        if ann.contains_key(keys::GPU_MODELS) && asks_gpu {
            assert_eq!(model, "A100-40GB", "{k} on {node}");
        }
        *cpu.entry(node.clone()).or_default() += request(p, "cpu");
        *mem.entry(node.clone()).or_default() += request(p, "memory");
        let gpus_asked = request(p, keys::NVIDIA_GPU) / 1000;
        let share: Option<u32> = ann.get(keys::GPU_SHARE).and_then(|s| s.parse().ok());
        let assigned = ann.get(keys::ASSIGNED_GPUS).cloned().unwrap_or_default();
        let entries: Vec<&str> = assigned.split(',').filter(|s| !s.is_empty()).collect();
        let count: u32 = qty(n, keys::NVIDIA_GPU).parse().expect("gpus");
        match share {
            Some(s) => {
                assert_eq!(entries.len(), 1, "{k}: {assigned}");
                let (i, m) = entries[0].split_once(':').expect("share entry");
                let i: u32 = i.parse().expect("index");
                assert_eq!(m.parse::<u32>().expect("milli"), s);
                assert!(i < count);
                *gpu_milli.entry((node.clone(), i)).or_default() += s;
            }
            None => {
                assert_eq!(entries.len() as u64, gpus_asked, "{k}: {assigned}");
                for e in entries {
                    let i: u32 = e.parse().expect("whole index");
                    assert!(i < count);
                    *gpu_milli.entry((node.clone(), i)).or_default() += 1000;
                    *whole.entry((node.clone(), i)).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(bound, 1000);
    for (node, used) in &cpu {
        assert!(*used <= units(&qty(by_name[node], "cpu")), "cpu on {node}");
    }
    for (node, used) in &mem {
        assert!(
            *used <= units(&qty(by_name[node], "memory")),
            "memory on {node}"
        );
    }
    for ((node, i), used) in &gpu_milli {
        assert!(*used <= 1000, "GPU {i} of {node} at {used} milli");
    }
    for ((node, i), n) in &whole {
        assert_eq!(*n, 1, "GPU {i} of {node} given whole {n} times");
    }
    // The impossible pods got one explanation each, naming the GPU-count filter.
    let unsched: Vec<&String> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Unschedulable { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert!(!unsched.is_empty());
    assert!(
        unsched
            .iter()
            .all(|m| m.contains("0/500 nodes") && m.contains("needs 16 GPUs"))
    );
    let st = h.api.lock().expect("state");
    assert_eq!(st.bindings.len(), 1000);
    assert_eq!(
        st.events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .count(),
        5
    );
}

#[tokio::test(flavor = "current_thread")]
async fn binding_request_shape() {
    let (svc, mut handle) = tower_test::mock::pair::<http::Request<Body>, http::Response<Body>>();
    let client = Client::new(svc, "default");
    let mut model = Model::new(Policy::Gantry, None);
    model.apply_node(&gpu_node("node-a", "H100-80GB", 8, 96, 1024));
    model.apply_pod(&pending_pod("ml", "train-0", 4000, 8192, 2, None));
    let decisions = model.schedule(NOW);
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/ml/pods/train-0/binding"
        );
        let body = req.into_body().collect().await.expect("body").to_bytes();
        let b: Value = serde_json::from_slice(&body).expect("json");
        let mut resp = http::Response::new(Body::from(status(201, "").into_bytes()));
        *resp.status_mut() = http::StatusCode::CREATED;
        send.send_response(resp);
        b
    });
    let mut binder = Binder::new(client, Arc::new(Metrics::new()));
    let r = binder.execute(&mut model, decisions).await;
    let b = server.await.expect("server");
    assert_eq!(r.bound, 1);
    assert_eq!(b["kind"], "Binding");
    assert_eq!(b["apiVersion"], "v1");
    assert_eq!(b["metadata"]["name"], "train-0");
    assert_eq!(b["metadata"]["uid"], "uid-ml-train-0");
    assert_eq!(b["metadata"]["annotations"][keys::ASSIGNED_GPUS], "0,1");
    assert_eq!(b["target"]["kind"], "Node");
    assert_eq!(b["target"]["name"], "node-a");
}

#[tokio::test(flavor = "current_thread")]
async fn conflict_on_binding_drops_the_pod_and_rolls_back() {
    let nodes = [gpu_node("node-a", "H100-80GB", 1, 16, 64)];
    let mut h = Harness::new(&nodes, vec![pending_pod("ml", "a", 1000, 1024, 1, None)]);
    h.api.lock().expect("state").conflict.insert("ml/a".into());
    let decisions = h.model.schedule(NOW);
    assert_eq!(decisions.len(), 1);
    let r = h.binder.execute(&mut h.model, decisions).await;
    assert_eq!((r.bound, r.bind_failed), (0, 1));
    // Dropped from the queue, and its GPU is free again for the next Pod.
    assert_eq!(h.model.pending_count(), 0);
    assert!(h.model.placements().is_empty());
    h.add_pod(pending_pod("ml", "b", 1000, 1024, 1, None));
    h.settle().await;
    assert_eq!(h.node_of("ml/b").as_deref(), Some("node-a"));
    assert_eq!(h.node_of("ml/a"), None);
}

#[tokio::test(flavor = "current_thread")]
async fn unschedulable_pod_gets_one_event_with_the_explanation() {
    let nodes = [
        gpu_node("node-a", "H100-80GB", 8, 96, 1024),
        gpu_node("node-b", "A100-40GB", 4, 64, 512),
    ];
    let p = annotate(
        pending_pod("ml", "big", 1000, 1024, 6, None),
        keys::GPU_MODELS,
        "A100-40GB",
    );
    let mut h = Harness::new(&nodes, vec![p]);
    h.settle().await;
    h.settle().await;
    let st = h.api.lock().expect("state");
    assert_eq!(st.events.len(), 1, "rate-limited to one per state");
    let e = &st.events[0];
    assert_eq!(e.reason.as_deref(), Some("FailedScheduling"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.involved_object.name.as_deref(), Some("big"));
    let m = e.message.clone().unwrap_or_default();
    assert!(m.starts_with("0/2 nodes can take it"), "{m}");
    assert!(m.contains("1 node(s): GPU model not allowed"), "{m}");
    assert!(m.contains("1 node(s): needs 6 GPUs, has 4"), "{m}");
    // The same text on the Pod's PodScheduled condition, which the controller mirrors into the
    // GPUWorkload's Scheduled condition.
    let pod = &st.pods["ml/big"];
    let c = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .expect("a PodScheduled condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    // The condition adds where it stands: nothing ahead, and no node can ever take it.
    let text = c.message.clone().unwrap_or_default();
    assert_eq!(
        text,
        format!(
            "{m}. Position 1 of 1 in queue default, 1 of 1 overall (order: priority, then age); \
             estimated start unknown (it does not fit even after every pod with a time limit has ended)."
        )
    );
    assert_eq!(
        gantry_k8s::controller::unschedulable_message(std::slice::from_ref(pod)),
        Some(text)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn gang_binds_all_or_none() {
    let mut h = Harness::new(
        &[
            gpu_node("node-a", "H100-80GB", 8, 96, 1024),
            gpu_node("node-b", "H100-80GB", 8, 96, 1024),
        ],
        (0..3)
            .map(|i| gang_pod(&format!("g-{i}"), "g", i, 3, 8))
            .collect(),
    );
    let d = h.settle().await;
    assert!(
        matches!(&d[0], Decision::Unschedulable { pods, message, .. } if pods.len() == 3 && message.contains("gang ml/g"))
    );
    assert!((0..3).all(|i| h.node_of(&format!("ml/g-{i}")).is_none()));
    assert!(
        h.model.placements().is_empty(),
        "nothing held by a failed gang"
    );
    // A third node: all three bound in one decision.
    h.model
        .apply_node(&gpu_node("node-c", "H100-80GB", 8, 96, 1024));
    let d = h.settle().await;
    assert!(
        matches!(&d[0], Decision::Bind { pods, gang: Some(g) } if pods.len() == 3 && g == "ml/g")
    );
    let nodes: HashSet<String> = (0..3)
        .filter_map(|i| h.node_of(&format!("ml/g-{i}")))
        .collect();
    assert_eq!(nodes.len(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn gang_bind_failing_midway_deletes_the_bound_members() {
    let mut h = Harness::new(
        &[
            gpu_node("node-a", "H100-80GB", 8, 96, 1024),
            gpu_node("node-b", "H100-80GB", 8, 96, 1024),
        ],
        (0..2)
            .map(|i| gang_pod(&format!("g-{i}"), "g", i, 2, 8))
            .collect(),
    );
    h.api
        .lock()
        .expect("state")
        .conflict
        .insert("ml/g-1".into());
    let d = h.model.schedule(NOW);
    let r = h.binder.execute(&mut h.model, d).await;
    assert_eq!((r.bound, r.bind_failed, r.deleted), (1, 1, 1));
    let st = h.api.lock().expect("state");
    assert_eq!(st.deleted, vec!["ml/g-0".to_string()]);
    assert!(
        st.events
            .iter()
            .any(|e| e.reason.as_deref() == Some("GangBindFailed"))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn preemption_deletes_lower_priority_pod_and_names_the_preemptor() {
    let nodes = [gpu_node("node-a", "H100-80GB", 8, 96, 1024)];
    let low = annotate(
        pending_pod("ml", "low", 1000, 1024, 8, None),
        keys::PRIORITY,
        "10",
    );
    let mut h = Harness::new(&nodes, vec![low]);
    h.settle().await;
    assert_eq!(h.node_of("ml/low").as_deref(), Some("node-a"));
    // Equal priority: no preemption.
    h.add_pod(annotate(
        pending_pod("ml", "peer", 1000, 1024, 8, None),
        keys::PRIORITY,
        "10",
    ));
    let d = h.settle().await;
    assert!(d.iter().all(|d| !matches!(d, Decision::Preempt { .. })));
    assert!(h.api.lock().expect("state").deleted.is_empty());
    h.api.lock().expect("state").pods.remove("ml/peer");
    h.model.delete_pod("ml", "peer");
    // Higher priority: the low one is deleted, with an Event naming the preemptor; then it binds.
    h.add_pod(annotate(
        pending_pod("ml", "high", 1000, 1024, 8, None),
        keys::PRIORITY,
        "1000",
    ));
    let d = h.settle().await;
    assert!(d.iter().any(|d| matches!(d, Decision::Preempt { victims, .. } if victims.len() == 1 && victims[0].name == "low")));
    {
        let st = h.api.lock().expect("state");
        assert_eq!(st.deleted, vec!["ml/low".to_string()]);
        let e = st
            .events
            .iter()
            .find(|e| e.reason.as_deref() == Some("Preempted"))
            .expect("preempted event");
        assert_eq!(e.involved_object.name.as_deref(), Some("low"));
        assert!(e.message.as_deref().unwrap_or("").contains("ml/high"));
    }
    assert_eq!(h.node_of("ml/high").as_deref(), Some("node-a"));
}

#[test]
fn bound_pods_annotations_and_unhealthy_gpus_are_respected() {
    let mut model = Model::new(Policy::Gantry, None);
    model.apply_node(&gpu_node("node-a", "H100-80GB", 4, 96, 1024));
    // GPU 1 is unhealthy (agent), GPU 0 is held by a Pod bound earlier.
    model.apply_gpu_node(
        "node-a",
        GpuNodeView {
            gpus: (0..4)
                .map(|i| GpuDeviceView {
                    index: i,
                    model: "H100-80GB".into(),
                    memory_mib: 81559,
                    healthy: i != 1,
                    mig_enabled: false,
                })
                .collect(),
        },
    );
    let mut held = annotate(
        pending_pod("ml", "held", 1000, 1024, 1, None),
        keys::ASSIGNED_GPUS,
        "0",
    );
    held.spec.as_mut().expect("spec").node_name = Some("node-a".into());
    model.apply_pod(&held);
    model.apply_pod(&annotate(
        pending_pod("ml", "two", 1000, 1024, 2, None),
        keys::PRIORITY,
        "5",
    ));
    model.apply_pod(&pending_pod("ml", "one-more", 1000, 1024, 1, None));
    let d = model.schedule(NOW);
    let binds: BTreeMap<String, String> = d
        .iter()
        .flat_map(|d| match d {
            Decision::Bind { pods, .. } => pods.clone(),
            _ => Vec::new(),
        })
        .map(|b| (b.pod.name, b.assigned_gpus))
        .collect();
    assert_eq!(binds.get("two").map(String::as_str), Some("2,3"));
    assert!(
        !binds.contains_key("one-more"),
        "GPUs 0 (held) and 1 (unhealthy) are not free"
    );
}

#[test]
fn priority_then_age_order() {
    let mut model = Model::new(Policy::Gantry, None);
    model.apply_node(&gpu_node("node-a", "H100-80GB", 1, 96, 1024));
    model.apply_pod(&annotate(
        pending_pod("ml", "a-low", 1000, 1024, 1, None),
        keys::PRIORITY,
        "1",
    ));
    model.apply_pod(&annotate(
        pending_pod("ml", "z-high", 1000, 1024, 1, None),
        keys::PRIORITY,
        "100",
    ));
    let d = model.schedule(NOW);
    assert!(matches!(&d[0], Decision::Bind { pods, .. } if pods[0].pod.name == "z-high"));
}

#[tokio::test(flavor = "current_thread")]
async fn bench_binds_every_pod_through_the_fake_api() {
    let r = gantry_k8s::scheduler::bench(200, 400).await;
    assert_eq!(r.bound, 400);
    assert_eq!(r.bind_requests, 400);
    assert!(r.pods_per_sec > 0.0);
    let r = gantry_k8s::scheduler::bench_http(100, 200)
        .await
        .expect("loopback server");
    assert_eq!((r.bound, r.bind_requests, r.transport), (200, 200, "http"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_lists_watches_and_binds_pending_pods() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    {
        let mut st = api.lock().expect("state");
        st.nodes = fake_nodes(4);
        for p in fake_pods(12) {
            st.pods.insert(key(&p), p);
        }
        // A pod for another scheduler is left alone.
        let mut other = pending_pod("ml", "other", 100, 100, 0, None);
        other.spec.as_mut().expect("spec").scheduler_name = Some("default-scheduler".into());
        st.pods.insert(key(&other), other);
    }
    let client = fake_client(api.clone());
    let opts = gantry_k8s::scheduler::SchedulerOptions {
        strategy: Policy::Gantry,
        namespace: None,
        metrics_addr: None,
    };
    let task = tokio::spawn(gantry_k8s::scheduler::run(client, opts));
    let mut bound = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        bound = api.lock().expect("state").bindings.len();
        if bound >= 12 {
            break;
        }
    }
    task.abort();
    assert_eq!(bound, 12);
    let st = api.lock().expect("state");
    assert!(
        st.pods["bench/p-000000"]
            .spec
            .as_ref()
            .expect("spec")
            .node_name
            .is_some()
    );
    assert!(
        st.pods["ml/other"]
            .spec
            .as_ref()
            .expect("spec")
            .node_name
            .is_none()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn node_added_later_rebuilds_the_model_with_bound_pods_charged() {
    let pods = (0..8)
        .map(|i| pending_pod("ml", &format!("one-{i}"), 1000, 1024, 1, None))
        .collect();
    let mut h = Harness::new(&[gpu_node("node-a", "H100-80GB", 8, 96, 1024)], pods);
    h.settle().await;
    assert!((0..8).all(|i| h.node_of(&format!("ml/one-{i}")).as_deref() == Some("node-a")));
    // A new node: the model is rebuilt from the Nodes and the bound Pods' annotations.
    h.model
        .apply_node(&gpu_node("node-b", "A100-40GB", 4, 64, 512));
    h.add_pod(pending_pod("ml", "late", 1000, 1024, 1, None));
    h.settle().await;
    assert_eq!(h.node_of("ml/late").as_deref(), Some("node-b"));
    // A bound Pod ends: its GPU (and only it) is free again on node-a.
    let gpu = h
        .pod("ml/one-3")
        .and_then(|p| p.metadata.annotations)
        .and_then(|a| a.get(keys::ASSIGNED_GPUS).cloned())
        .expect("assigned");
    h.api.lock().expect("state").pods.remove("ml/one-3");
    h.model.delete_pod("ml", "one-3");
    h.add_pod(annotate(
        pending_pod("ml", "h100", 1000, 1024, 1, None),
        keys::GPU_MODELS,
        "H100-80GB",
    ));
    h.add_pod(annotate(
        pending_pod("ml", "h100-too", 1000, 1024, 1, None),
        keys::GPU_MODELS,
        "H100-80GB",
    ));
    h.settle().await;
    assert_eq!(h.node_of("ml/h100").as_deref(), Some("node-a"));
    let got = h
        .pod("ml/h100")
        .and_then(|p| p.metadata.annotations)
        .and_then(|a| a.get(keys::ASSIGNED_GPUS).cloned());
    assert_eq!(got, Some(gpu));
    assert_eq!(h.node_of("ml/h100-too"), None, "node-a is full again");
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_count_binds_and_failures() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let mut model = Model::new(Policy::Gantry, None);
    model.apply_node(&gpu_node("node-a", "H100-80GB", 1, 16, 64));
    for p in [
        pending_pod("ml", "fits", 1000, 1024, 1, None),
        pending_pod("ml", "waits", 1000, 1024, 1, None),
    ] {
        model.apply_pod(&p);
        api.lock().expect("state").pods.insert(key(&p), p);
    }
    let metrics = Arc::new(Metrics::new());
    let mut binder = Binder::new(fake_client(api), metrics.clone());
    let d = model.schedule(NOW);
    binder.execute(&mut model, d).await;
    let text = metrics.encode();
    assert!(
        text.contains("gantry_scheduler_pods_bound_total 1"),
        "{text}"
    );
    assert!(
        text.contains("gantry_scheduler_failed_placements_total 1"),
        "{text}"
    );
    assert!(
        text.contains("gantry_scheduler_scheduling_latency_seconds_count 1"),
        "{text}"
    );
}

/// A Pod of `gpus` whole GPUs running on `node` since `started` (Unix seconds), stopped by the kubelet
/// `deadline` seconds after its start when set (`activeDeadlineSeconds`, from the workload's timeout).
fn running_pod(name: &str, node: &str, gpus: u32, started: i64, deadline: Option<i64>) -> Pod {
    let mut p = pending_pod("ml", name, 1000, 1024, gpus, None);
    let spec = p.spec.as_mut().expect("spec");
    spec.node_name = Some(node.into());
    spec.active_deadline_seconds = deadline;
    p.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Running".into()),
        start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(started).expect("time"),
        )),
        ..Default::default()
    });
    p
}

/// A pending Pod of `gpus` whole GPUs with `activeDeadlineSeconds` `deadline`.
fn pending_with_deadline(name: &str, gpus: u32, deadline: Option<i64>) -> Pod {
    let mut p = pending_pod("ml", name, 1000, 1024, gpus, None);
    p.spec.as_mut().expect("spec").active_deadline_seconds = deadline;
    p
}

/// The message of a Pod's `PodScheduled=False` condition in the fake API.
fn condition(h: &Harness, key: &str) -> String {
    h.pod(key)
        .and_then(|p| p.status?.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.message)
        .unwrap_or_default()
}

fn failed_events(h: &Harness, name: &str) -> usize {
    h.api
        .lock()
        .expect("state")
        .events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.involved_object.name.as_deref() == Some(name)
        })
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn waiting_pods_get_their_position_and_start_at_the_latest() {
    // One GPU, held by `a` since 10 minutes ago with a 1 h deadline: it ends by 00:50:00.
    let nodes = [gpu_node("node-a", "H100-80GB", 1, 16, 64)];
    let a = running_pod("a", "node-a", 1, NOW - 600, Some(3600));
    let mut h = Harness::new(
        &nodes,
        vec![
            a,
            pending_with_deadline("b", 1, Some(1800)),
            pending_with_deadline("c", 1, Some(600)),
        ],
    );
    h.settle().await;
    let b = condition(&h, "ml/b");
    assert!(b.starts_with("0/1 nodes can take it: 1 node(s): "), "{b}");
    assert!(
        b.contains(
            "Position 1 of 2 in queue default, 1 of 2 overall (order: priority, then age); \
             estimated start at the latest 2026-11-26T00:50:00Z (exact: it waits for ml/a to end"
        ),
        "{b}"
    );
    // `c` comes after `b`, which runs at most 30 min from 00:50.
    let c = condition(&h, "ml/c");
    assert!(
        c.contains(
            "Position 2 of 2 in queue default, 2 of 2 overall (order: priority, then age); \
             estimated start at the latest 2026-11-26T01:20:00Z (exact: it waits for ml/a, ml/b to end"
        ),
        "{c}"
    );
    // The Events carry only the filter text, once.
    assert_eq!((failed_events(&h, "b"), failed_events(&h, "c")), (1, 1));
    let e = h
        .api
        .lock()
        .expect("state")
        .events
        .iter()
        .find(|e| e.involved_object.name.as_deref() == Some("c"))
        .and_then(|e| e.message.clone())
        .unwrap_or_default();
    assert!(
        e.starts_with("0/1 nodes can take it") && !e.contains("Position"),
        "{e}"
    );

    // `a` hits its deadline and is gone at 00:50: `b` is bound then and `c` moves up; its condition
    // says so, with no second Event (the filter text is the same).
    h.api
        .lock()
        .expect("state")
        .deleted
        .push("ml/a".to_string());
    h.api.lock().expect("state").pods.remove("ml/a");
    h.watch();
    let later = NOW + 3000;
    let d = h.model.schedule(later);
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::Bind { pods, .. } if pods[0].pod.name == "b")),
        "{d:?}"
    );
    h.binder.execute(&mut h.model, d).await;
    h.watch();
    let d = h.model.schedule(later);
    h.binder.execute(&mut h.model, d).await;
    let c = condition(&h, "ml/c");
    assert!(
        c.contains(
            "Position 1 of 1 in queue default, 1 of 1 overall (order: priority, then age); \
             estimated start at the latest 2026-11-26T01:20:00Z (exact: it waits for ml/b to end"
        ),
        "{c}"
    );
    assert_eq!(failed_events(&h, "c"), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_pod_behind_one_without_deadline_has_an_unknown_start_with_the_reason() {
    let nodes = [gpu_node("node-a", "H100-80GB", 1, 16, 64)];
    let mut h = Harness::new(
        &nodes,
        vec![
            running_pod("forever", "node-a", 1, NOW - 600, None),
            pending_with_deadline("b", 1, Some(1800)),
        ],
    );
    h.settle().await;
    let b = condition(&h, "ml/b");
    assert!(
        b.ends_with(
            "Position 1 of 1 in queue default, 1 of 1 overall (order: priority, then age); \
             estimated start unknown (it waits for ml/forever with no time limit (activeDeadlineSeconds))."
        ),
        "{b}"
    );
}

#[test]
fn position_counts_the_queue_and_follows_priority() {
    let mut model = Model::new(Policy::Gantry, None);
    model.apply_node(&gpu_node("node-a", "H100-80GB", 1, 16, 64));
    // Of a higher priority than any waiting Pod: nothing is preempted.
    model.apply_pod(&annotate(
        running_pod("a", "node-a", 1, NOW, Some(60)),
        keys::PRIORITY,
        "100",
    ));
    for (name, queue, priority) in [
        ("x", "research", "1"),
        ("y", "prod", "1"),
        ("z", "research", "9"),
    ] {
        let p = annotate(pending_with_deadline(name, 1, Some(60)), keys::QUEUE, queue);
        model.apply_pod(&annotate(p, keys::PRIORITY, priority));
    }
    let d = model.schedule(NOW);
    let outlook = |name: &str| {
        d.iter()
            .find_map(|d| match d {
                Decision::Unschedulable { pods, outlook, .. } if pods[0].name == name => {
                    Some(outlook.clone())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    // Order: z (priority 9), then x, y by name. Each runs at most 60 s after the one before.
    assert!(
        outlook("z").starts_with("Position 1 of 2 in queue research, 1 of 3 overall"),
        "{}",
        outlook("z")
    );
    assert!(outlook("z").contains("at the latest 2026-11-26T00:01:00Z"));
    assert!(outlook("x").starts_with("Position 2 of 2 in queue research, 2 of 3 overall"));
    assert!(outlook("x").contains("at the latest 2026-11-26T00:02:00Z"));
    assert!(outlook("y").starts_with("Position 1 of 1 in queue prod, 3 of 3 overall"));
    assert!(outlook("y").contains("at the latest 2026-11-26T00:03:00Z"));
}

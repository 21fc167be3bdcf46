//! Controller and leader-election tests against a faithful fake of the Kubernetes API.
//!
//! The fake sits at the HTTP boundary: `tower_test::mock::pair()` is the transport of a real
//! `kube::Client`, and a task answers every request the way the API server does for the calls the
//! controller makes: object storage with `resourceVersion`s and uids, label-selector lists (namespaced
//! and all-namespaces), create (409 AlreadyExists), replace (409 Conflict on a stale
//! `resourceVersion`), JSON merge patch (with the optimistic-concurrency check), server-side apply of
//! `status` (one field manager owns all of it, so apply replaces it), delete (an object with
//! finalizers only gets a `deletionTimestamp`; it goes when the last finalizer is removed), 404
//! Status bodies, and injected one-shot failures. Every request is logged as `METHOD path`.

use gantry_k8s::controller::lease::LeaseLock;
use gantry_k8s::controller::{Context, ControllerOptions, reconcile, run};
use gantry_k8s::crd::{GPUWorkload, WorkloadPhase};
use gantry_k8s::keys;
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// One stored object.
#[derive(Clone, Debug)]
struct Obj {
    prefix: String,
    ns: Option<String>,
    plural: String,
    name: String,
    value: Value,
}

/// The fake API server's state.
#[derive(Default)]
struct State {
    objects: Vec<Obj>,
    rv: u64,
    log: Vec<String>,
    /// One-shot failures: (method, path suffix, code, reason).
    failures: Vec<(Method, String, u16, String)>,
    /// Every change, for watches: (resourceVersion, event type, object).
    changes: Vec<(u64, &'static str, Obj)>,
}

/// A parsed request path.
struct Target {
    prefix: String,
    ns: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match segs.first() {
        Some(&"api") => (format!("/api/{}", segs.get(1)?), &segs[2..]),
        Some(&"apis") => (
            format!("/apis/{}/{}", segs.get(1)?, segs.get(2)?),
            &segs[3..],
        ),
        _ => return None,
    };
    let (ns, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Some(Target {
        prefix,
        ns,
        plural: rest.first()?.to_string(),
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

fn status_body(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Whether `labels` match a selector of `k=v` and `k` (exists) terms.
fn matches(labels: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels.get(k).and_then(Value::as_str) == Some(v),
            None => labels.get(term).is_some(),
        })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2C", ",")
        })
    })
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn find(&self, t: &Target, name: &str) -> Option<usize> {
        self.objects.iter().position(|o| {
            o.prefix == t.prefix && o.ns == t.ns && o.plural == t.plural && o.name == name
        })
    }

    /// Stores an object as the API server would (uid, resourceVersion, creation time).
    fn insert(&mut self, path: &str, mut value: Value) -> Value {
        let t = parse_path(path).expect("collection path");
        let name = value["metadata"]["name"].as_str().unwrap_or("").to_string();
        let rv = self.next_rv();
        let meta = &mut value["metadata"];
        meta["resourceVersion"] = json!(rv);
        if meta.get("uid").is_none() {
            meta["uid"] = json!(format!("uid-{name}-{rv}"));
        }
        meta["creationTimestamp"] = json!("2026-11-25T11:00:00Z");
        if meta.get("generation").is_none() {
            meta["generation"] = json!(1);
        }
        if let Some(ns) = &t.ns {
            meta["namespace"] = json!(ns);
        }
        let obj = Obj {
            prefix: t.prefix,
            ns: t.ns,
            plural: t.plural,
            name,
            value: value.clone(),
        };
        self.changes.push((self.rv, "ADDED", obj.clone()));
        self.objects.push(obj);
        value
    }

    /// Records a change of object `i` (after its resourceVersion was bumped).
    fn changed(&mut self, i: usize, kind: &'static str) {
        let obj = self.objects[i].clone();
        self.changes.push((self.rv, kind, obj));
    }

    /// Watch events of a collection after resourceVersion `since`, one JSON object a line.
    fn events_since(&self, t: &Target, since: u64, selector: &str) -> String {
        let mut out = String::new();
        for (rv, kind, o) in &self.changes {
            if *rv > since
                && o.prefix == t.prefix
                && o.plural == t.plural
                && (t.ns.is_none() || o.ns == t.ns)
                && matches(&o.value["metadata"]["labels"], selector)
            {
                out.push_str(&json!({"type": kind, "object": o.value}).to_string());
                out.push('\n');
            }
        }
        out
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        ctype: &str,
        body: &[u8],
    ) -> (u16, Value) {
        self.log.push(format!("{method} {path}"));
        if let Some(i) = self
            .failures
            .iter()
            .position(|(m, p, _, _)| m == method && path.ends_with(p.as_str()))
        {
            let (_, _, code, reason) = self.failures.remove(i);
            return status_body(code, &reason, "injected failure");
        }
        let Some(t) = parse_path(path) else {
            return status_body(404, "NotFound", "unknown path");
        };
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match (method.clone(), &t.name) {
            (Method::GET, None) => {
                let sel = query_param(query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|o| o.prefix == t.prefix && o.plural == t.plural)
                    .filter(|o| t.ns.is_none() || o.ns == t.ns)
                    .filter(|o| matches(&o.value["metadata"]["labels"], &sel))
                    .map(|o| o.value.clone())
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List",
                             "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
                )
            }
            (Method::GET, Some(name)) => match self.find(&t, name) {
                Some(i) => (200, self.objects[i].value.clone()),
                None => status_body(404, "NotFound", &format!("{} {name} not found", t.plural)),
            },
            (Method::POST, None) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                if self.find(&t, &name).is_some() {
                    return status_body(409, "AlreadyExists", &format!("{name} already exists"));
                }
                (201, self.insert(path, body))
            }
            (Method::PUT, Some(name)) => {
                let Some(i) = self.find(&t, name) else {
                    return status_body(404, "NotFound", "not found");
                };
                if body["metadata"]["resourceVersion"]
                    != self.objects[i].value["metadata"]["resourceVersion"]
                {
                    return status_body(409, "Conflict", "the object has been modified");
                }
                let mut value = body;
                value["metadata"]["resourceVersion"] = json!(self.next_rv());
                self.objects[i].value = value.clone();
                self.changed(i, "MODIFIED");
                (200, value)
            }
            (Method::PATCH, Some(name)) => {
                let Some(i) = self.find(&t, name) else {
                    return status_body(404, "NotFound", "not found");
                };
                let mut value = self.objects[i].value.clone();
                if ctype.contains("apply-patch") {
                    // One field manager owns all of status: applying it replaces it.
                    value["status"] = body["status"].clone();
                } else {
                    if let Some(rv) = body["metadata"].get("resourceVersion")
                        && *rv != value["metadata"]["resourceVersion"]
                    {
                        return status_body(409, "Conflict", "the object has been modified");
                    }
                    let mut patch = body;
                    if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                    if t.sub.as_deref() == Some("status") {
                        patch = json!({"status": patch["status"].clone()});
                    }
                    merge(&mut value, &patch);
                }
                value["metadata"]["resourceVersion"] = json!(self.next_rv());
                let gone = value["metadata"].get("deletionTimestamp").is_some()
                    && value["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(Vec::is_empty);
                self.objects[i].value = value.clone();
                if gone {
                    self.changed(i, "DELETED");
                    self.objects.remove(i);
                } else {
                    self.changed(i, "MODIFIED");
                }
                (200, value)
            }
            (Method::DELETE, Some(name)) => {
                let Some(i) = self.find(&t, name) else {
                    return status_body(404, "NotFound", &format!("{name} not found"));
                };
                let has_finalizers = self.objects[i].value["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if has_finalizers {
                    let rv = self.next_rv();
                    let v = &mut self.objects[i].value;
                    v["metadata"]["deletionTimestamp"] = json!("2026-11-25T12:00:00Z");
                    v["metadata"]["resourceVersion"] = json!(rv);
                    let v = v.clone();
                    self.changed(i, "MODIFIED");
                    (200, v)
                } else {
                    self.rv += 1;
                    self.changed(i, "DELETED");
                    (200, self.objects.remove(i).value)
                }
            }
            _ => status_body(405, "MethodNotAllowed", "not supported by the fake"),
        }
    }
}

/// A client wired to the fake, and the fake's state.
fn fake() -> (Client, Arc<Mutex<State>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let ctype = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let query = parts.uri.query().unwrap_or("").to_string();
            if parts.method == Method::GET && query.contains("watch=true") {
                // A watch answers with the changes after its resourceVersion, newline-delimited,
                // then ends (as a watch window does); the client watches again from the last one.
                let st = st.clone();
                let path = parts.uri.path().to_string();
                tokio::spawn(async move {
                    let since: u64 = query_param(&query, "resourceVersion")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let selector = query_param(&query, "labelSelector").unwrap_or_default();
                    let mut body = String::new();
                    for _ in 0..25 {
                        if let Some(t) = parse_path(&path) {
                            body = st.lock().expect("state").events_since(&t, since, &selector);
                        }
                        if !body.is_empty() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    let resp = Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(Body::from(body.into_bytes()))
                        .expect("response");
                    send.send_response(resp);
                });
                continue;
            }
            let (code, value) = st.lock().expect("state").handle(
                &parts.method,
                parts.uri.path(),
                &query,
                &ctype,
                &bytes,
            );
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()))
                .expect("response");
            send.send_response(resp);
        }
    });
    (Client::new(svc, "default"), state)
}

const NOW: &str = "2026-11-25T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("time")
}

fn context(client: Client) -> Arc<Context> {
    Arc::new(Context::new(client, "controller-0").with_clock(Arc::new(now)))
}

const WORKLOADS: &str = "/apis/gantry.dev/v1alpha1/namespaces/ml/gpuworkloads";
const PODS: &str = "/api/v1/namespaces/ml/pods";
const QUEUES: &str = "/apis/gantry.dev/v1alpha1/gpuqueues";

fn add_workload(state: &Arc<Mutex<State>>, name: &str, spec: Value) {
    let obj = json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "GPUWorkload",
                     "metadata": {"name": name}, "spec": spec});
    state.lock().expect("state").insert(WORKLOADS, obj);
}

fn add_queue(state: &Arc<Mutex<State>>, name: &str, spec: Value) {
    let obj = json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "GPUQueue",
                     "metadata": {"name": name}, "spec": spec});
    state.lock().expect("state").insert(QUEUES, obj);
}

/// The workload as stored now.
fn get_workload(state: &Arc<Mutex<State>>, name: &str) -> Option<GPUWorkload> {
    let st = state.lock().expect("state");
    st.objects
        .iter()
        .find(|o| o.plural == "gpuworkloads" && o.name == name)
        .map(|o| serde_json::from_value(o.value.clone()).expect("workload"))
}

fn pods(state: &Arc<Mutex<State>>) -> Vec<Pod> {
    let st = state.lock().expect("state");
    st.objects
        .iter()
        .filter(|o| o.plural == "pods")
        .map(|o| serde_json::from_value(o.value.clone()).expect("pod"))
        .collect()
}

fn pod_value(state: &Arc<Mutex<State>>, name: &str) -> Value {
    let st = state.lock().expect("state");
    st.objects
        .iter()
        .find(|o| o.plural == "pods" && o.name == name)
        .map(|o| o.value.clone())
        .expect("pod")
}

fn set_pod(state: &Arc<Mutex<State>>, name: &str, patch: Value) {
    let mut st = state.lock().expect("state");
    if let Some(i) = st
        .objects
        .iter()
        .position(|o| o.plural == "pods" && o.name == name)
    {
        let rv = st.next_rv();
        merge(&mut st.objects[i].value, &patch);
        st.objects[i].value["metadata"]["resourceVersion"] = json!(rv);
        st.changed(i, "MODIFIED");
    }
}

/// Takes the request log (writes only: everything but GET).
fn writes(state: &Arc<Mutex<State>>) -> Vec<String> {
    let mut st = state.lock().expect("state");
    std::mem::take(&mut st.log)
        .into_iter()
        .filter(|l| !l.starts_with("GET ") && !l.contains("/events"))
        .collect()
}

async fn reconcile_named(state: &Arc<Mutex<State>>, ctx: &Arc<Context>, name: &str) {
    let wl = get_workload(state, name).expect("workload exists");
    reconcile(Arc::new(wl), ctx.clone())
        .await
        .expect("reconcile");
}

fn training() -> Value {
    json!({
        "kind": "training", "queue": "research", "replicas": 2, "gangMinimum": 2,
        "priorityClass": "high-priority-training",
        "resources": {"cpu": "8", "memory": "64Gi", "shm": "8Gi", "gpu": {"count": 4}},
        "template": {"spec": {"containers": [{"name": "train", "image": "ghcr.io/acme/train:1"}]}}
    })
}

#[tokio::test]
async fn reconcile_creates_all_gang_pods_and_twice_changes_nothing() {
    let (client, state) = fake();
    let ctx = context(client);
    add_queue(&state, "research", json!({"guaranteed": {"gpus": 16}}));
    add_workload(&state, "train", training());
    reconcile_named(&state, &ctx, "train").await;

    let w = writes(&state);
    assert_eq!(
        w,
        [
            format!("PATCH {WORKLOADS}/train"),
            format!("PATCH {WORKLOADS}/train/status"),
            format!("POST {PODS}"),
            format!("POST {PODS}"),
            format!("PATCH {WORKLOADS}/train/status"),
        ]
    );
    let pods = pods(&state);
    assert_eq!(pods.len(), 2);
    for (i, p) in pods.iter().enumerate() {
        assert_eq!(
            p.metadata.name.as_deref(),
            Some(format!("train-{i}").as_str())
        );
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.scheduler_name.as_deref(), Some("gantry"));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("high-priority-training")
        );
        let limits = spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert_eq!(limits[keys::NVIDIA_GPU].0, "4");
        let ann = p.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(ann[keys::GANG_MINIMUM], "2");
        assert_eq!(ann[keys::PRIORITY], "1000");
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("GPUWorkload", Some(true))
        );
    }
    let wl = get_workload(&state, "train").expect("workload");
    assert!(
        wl.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == keys::FINALIZER))
    );
    let status = wl.status.as_ref().expect("status");
    assert_eq!(status.phase, Some(WorkloadPhase::Admitted));
    assert_eq!(status.gpus.as_deref(), Some("8"));
    let admitted = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Admitted")
        .expect("Admitted");
    assert_eq!(
        (admitted.status.as_str(), admitted.reason.as_deref()),
        ("True", Some("QuotaAvailable"))
    );

    let reasons: Vec<String> = {
        let st = state.lock().expect("state");
        st.objects
            .iter()
            .filter(|o| o.plural == "events")
            .filter_map(|o| o.value["reason"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(reasons, ["Admitted", "PodsCreated"]);

    // Reconciling again: no create, no patch.
    reconcile_named(&state, &ctx, "train").await;
    assert_eq!(writes(&state), Vec::<String>::new());
}

#[tokio::test]
async fn create_conflict_counts_as_already_exists() {
    let (client, state) = fake();
    let ctx = context(client);
    add_queue(&state, "research", json!({"guaranteed": {"gpus": 16}}));
    add_workload(&state, "train", training());
    state.lock().expect("state").failures.push((
        Method::POST,
        "/pods".into(),
        409,
        "AlreadyExists".into(),
    ));
    reconcile_named(&state, &ctx, "train").await;
    // The first create was answered 409: treated as existing, the second Pod still created.
    assert_eq!(pods(&state).len(), 1);
    assert_eq!(
        get_workload(&state, "train")
            .and_then(|w| w.status)
            .and_then(|s| s.phase),
        Some(WorkloadPhase::Admitted)
    );
}

#[tokio::test]
async fn deletion_removes_pods_then_the_finalizer() {
    let (client, state) = fake();
    let ctx = context(client);
    add_queue(&state, "research", json!({"guaranteed": {"gpus": 16}}));
    add_workload(&state, "train", training());
    reconcile_named(&state, &ctx, "train").await;
    writes(&state);
    // kubectl delete: the finalizer keeps it, with a deletionTimestamp.
    let (code, _) = state.lock().expect("state").handle(
        &Method::DELETE,
        &format!("{WORKLOADS}/train"),
        "",
        "",
        b"",
    );
    assert_eq!(code, 200);
    writes(&state);
    reconcile_named(&state, &ctx, "train").await;
    assert_eq!(
        writes(&state),
        [
            format!("DELETE {PODS}/train-0"),
            format!("DELETE {PODS}/train-1"),
            format!("PATCH {WORKLOADS}/train"),
        ]
    );
    assert!(pods(&state).is_empty());
    assert!(
        get_workload(&state, "train").is_none(),
        "gone once the finalizer is removed"
    );
}

#[tokio::test]
async fn status_mirrors_a_running_pod() {
    let (client, state) = fake();
    let ctx = context(client);
    add_workload(
        &state,
        "chat",
        json!({"kind": "inference", "resources": {"gpu": {"share": 250}},
               "template": {"spec": {"containers": [{"name": "s", "image": "vllm"}]}}}),
    );
    reconcile_named(&state, &ctx, "chat").await;
    assert_eq!(
        pod_value(&state, "chat-0")["metadata"]["annotations"][keys::GPU_SHARE],
        "250"
    );
    set_pod(
        &state,
        "chat-0",
        json!({"metadata": {"annotations": {keys::ASSIGNED_GPUS: "2:250"}},
               "spec": {"nodeName": "gpu-node-3"},
               "status": {"phase": "Running", "startTime": "2026-11-25T11:59:00Z"}}),
    );
    writes(&state);
    reconcile_named(&state, &ctx, "chat").await;
    let s = get_workload(&state, "chat")
        .and_then(|w| w.status)
        .expect("status");
    assert_eq!(s.phase, Some(WorkloadPhase::Running));
    assert_eq!(s.node.as_deref(), Some("gpu-node-3"));
    assert_eq!(s.gpus.as_deref(), Some("0.25"));
    assert_eq!(s.replicas[0].gpus.as_deref(), Some("2:250"));
    assert_eq!(s.start_time.as_deref(), Some("2026-11-25T11:59:00Z"));
    let cond = |t: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(
        cond("Scheduled"),
        Some(("True".into(), Some("AllReplicasBound".into())))
    );
    assert_eq!(
        cond("Running"),
        Some(("True".into(), Some("GangRunning".into())))
    );
    assert_eq!(writes(&state), [format!("PATCH {WORKLOADS}/chat/status")]);
}

#[tokio::test]
async fn the_schedulers_explanation_reaches_the_scheduled_condition() {
    let (client, state) = fake();
    let ctx = context(client);
    add_workload(
        &state,
        "big",
        json!({"resources": {"gpu": {"count": 2}},
               "template": {"spec": {"containers": [{"name": "t", "image": "trainer"}]}}}),
    );
    reconcile_named(&state, &ctx, "big").await;
    // Before the scheduler has said anything: waiting for it.
    let reason = |state: &Arc<Mutex<State>>| {
        get_workload(state, "big")
            .and_then(|w| w.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Scheduled"))
            .map(|c| (c.reason, c.message))
    };
    assert_eq!(
        reason(&state).and_then(|r| r.0).as_deref(),
        Some("WaitingForScheduler")
    );
    // The scheduler marks the Pod unschedulable with its per-filter explanation, its position and
    // its estimated start (the text the scheduler's tests check it writes).
    let why = gantry_k8s::scheduler::condition_message(
        "0/7 nodes can take it: 5 node(s): GPU model not allowed; 2 node(s): needs 2 GPU(s) with 1000m free, 1 have it",
        "Position 1 of 2 in queue default, 3 of 4 overall (order: priority, then age); \
         estimated start at the latest 2026-11-26T00:50:00Z (exact: it waits for ml/a to end, each \
         stopped at its activeDeadlineSeconds; later only if higher-priority pods arrive).",
    );
    set_pod(
        &state,
        "big-0",
        json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
               "status": "False", "reason": "Unschedulable", "message": why}]}}),
    );
    reconcile_named(&state, &ctx, "big").await;
    let (r, m) = reason(&state).expect("a Scheduled condition");
    assert_eq!(r.as_deref(), Some("Unschedulable"));
    assert_eq!(
        m.as_deref(),
        Some(format!("0 of 1 replica(s) bound; {why}").as_str())
    );
    let m = m.unwrap_or_default();
    assert!(
        m.contains("Position 1 of 2 in queue default")
            && m.contains("estimated start at the latest 2026-11-26T00:50:00Z"),
        "{m}"
    );
}

#[tokio::test]
async fn quota_exhaustion_keeps_the_workload_pending() {
    let (client, state) = fake();
    let ctx = context(client);
    add_queue(&state, "research", json!({"guaranteed": {"gpus": 8}}));
    add_workload(&state, "first", training());
    reconcile_named(&state, &ctx, "first").await;
    add_workload(&state, "second", training());
    writes(&state);
    reconcile_named(&state, &ctx, "second").await;
    assert_eq!(pods(&state).len(), 2, "only the first workload's Pods");
    let s = get_workload(&state, "second")
        .and_then(|w| w.status)
        .expect("status");
    assert_eq!(s.phase, Some(WorkloadPhase::Pending));
    assert_eq!(s.reason.as_deref(), Some("QuotaExceeded"));
    let admitted = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Admitted")
        .expect("Admitted");
    assert_eq!(admitted.status, "False");
    assert!(
        admitted
            .message
            .as_deref()
            .is_some_and(|m| m.contains("uses 8 of 8")
                && m.contains("position 1 of 1 waiting for admission in queue research")),
        "{admitted:?}"
    );
    assert!(!writes(&state).iter().any(|w| w.starts_with("POST")));
    // A missing queue also keeps it pending.
    let mut spec = training();
    spec["queue"] = json!("nope");
    add_workload(&state, "lost", spec);
    reconcile_named(&state, &ctx, "lost").await;
    let s = get_workload(&state, "lost")
        .and_then(|w| w.status)
        .expect("status");
    assert_eq!(s.reason.as_deref(), Some("QueueNotFound"));
}

#[tokio::test]
async fn failed_pods_are_retried_then_the_workload_fails() {
    let (client, state) = fake();
    let ctx = context(client);
    let mut spec = training();
    spec["queue"] = json!(null);
    spec["replicas"] = json!(1);
    spec["gangMinimum"] = json!(1);
    spec["retries"] = json!(1);
    add_workload(&state, "job", spec);
    reconcile_named(&state, &ctx, "job").await;
    set_pod(&state, "job-0", json!({"status": {"phase": "Failed"}}));
    writes(&state);
    reconcile_named(&state, &ctx, "job").await;
    assert_eq!(
        writes(&state),
        [
            format!("DELETE {PODS}/job-0"),
            format!("PATCH {WORKLOADS}/job/status")
        ]
    );
    assert_eq!(
        get_workload(&state, "job")
            .and_then(|w| w.status)
            .map(|s| s.retries_used),
        Some(1)
    );
    reconcile_named(&state, &ctx, "job").await;
    assert_eq!(pods(&state).len(), 1, "recreated");
    set_pod(&state, "job-0", json!({"status": {"phase": "Failed"}}));
    reconcile_named(&state, &ctx, "job").await;
    let s = get_workload(&state, "job")
        .and_then(|w| w.status)
        .expect("status");
    assert_eq!(s.phase, Some(WorkloadPhase::Failed));
    assert_eq!(s.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(s.completion_time.as_deref(), Some(NOW));
}

#[tokio::test]
async fn finished_pods_are_deleted_after_the_ttl() {
    let (client, state) = fake();
    let mut spec = training();
    spec["queue"] = json!(null);
    spec["replicas"] = json!(1);
    spec["gangMinimum"] = json!(1);
    spec["ttlAfterFinished"] = json!("10m");
    add_workload(&state, "job", spec);
    let ctx = context(client.clone());
    reconcile_named(&state, &ctx, "job").await;
    set_pod(&state, "job-0", json!({"status": {"phase": "Succeeded"}}));
    reconcile_named(&state, &ctx, "job").await;
    assert_eq!(
        get_workload(&state, "job")
            .and_then(|w| w.status)
            .and_then(|s| s.phase),
        Some(WorkloadPhase::Succeeded)
    );
    // Before the TTL: kept.
    reconcile_named(&state, &ctx, "job").await;
    assert_eq!(pods(&state).len(), 1);
    // 11 minutes later: deleted.
    let later = Arc::new(
        Context::new(client, "controller-0")
            .with_clock(Arc::new(|| now() + SignedDuration::from_mins(11))),
    );
    writes(&state);
    reconcile_named(&state, &later, "job").await;
    assert!(pods(&state).is_empty());
    assert_eq!(writes(&state), [format!("DELETE {PODS}/job-0")]);
}

#[tokio::test]
async fn invalid_spec_fails_with_a_reason() {
    let (client, state) = fake();
    let ctx = context(client);
    add_workload(
        &state,
        "bad",
        json!({"resources": {"gpu": {"count": 2, "share": 100}},
               "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}),
    );
    reconcile_named(&state, &ctx, "bad").await;
    let s = get_workload(&state, "bad")
        .and_then(|w| w.status)
        .expect("status");
    assert_eq!(s.phase, Some(WorkloadPhase::Failed));
    assert_eq!(s.reason.as_deref(), Some("InvalidSpec"));
    assert!(
        s.message
            .as_deref()
            .is_some_and(|m| m.contains("resources.gpu"))
    );
    assert!(pods(&state).is_empty());
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/gantry-system/leases";

#[tokio::test]
async fn lease_acquire_renew_and_conflict() {
    let (client, state) = fake();
    let a = LeaseLock::new(client.clone(), "gantry-system", "gantry-controller", "a");
    let b = LeaseLock::new(client, "gantry-system", "gantry-controller", "b");
    let t0 = now();
    // a creates the Lease.
    assert!(a.try_acquire_or_renew_at(t0).await.expect("acquire"));
    assert_eq!(writes(&state), [format!("POST {LEASES}")]);
    // b sees a valid Lease held by a.
    assert!(
        !b.try_acquire_or_renew_at(t0 + SignedDuration::from_secs(5))
            .await
            .expect("b")
    );
    assert!(writes(&state).is_empty());
    // a renews.
    assert!(
        a.try_acquire_or_renew_at(t0 + SignedDuration::from_secs(5))
            .await
            .expect("renew")
    );
    assert_eq!(writes(&state), [format!("PUT {LEASES}/gantry-controller")]);
    // A renewal answered 409 (someone wrote in between): a is not leader.
    state.lock().expect("state").failures.push((
        Method::PUT,
        "/gantry-controller".into(),
        409,
        "Conflict".into(),
    ));
    assert!(
        !a.try_acquire_or_renew_at(t0 + SignedDuration::from_secs(10))
            .await
            .expect("conflict")
    );
    // a stops renewing; after 15 s b takes over.
    assert!(
        !b.try_acquire_or_renew_at(t0 + SignedDuration::from_secs(15))
            .await
            .expect("b")
    );
    assert!(
        b.try_acquire_or_renew_at(t0 + SignedDuration::from_secs(21))
            .await
            .expect("take")
    );
    let lease = {
        let st = state.lock().expect("state");
        st.objects
            .iter()
            .find(|o| o.plural == "leases")
            .map(|o| o.value.clone())
            .expect("lease")
    };
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
    // Two candidates racing with the same stale read: the second write is a 409, not a second leader.
    let stale =
        serde_json::from_value::<k8s_openapi::api::coordination::v1::Lease>(lease).expect("lease");
    assert!(
        b.try_acquire_or_renew_at(t0 + SignedDuration::from_secs(25))
            .await
            .expect("renew b")
    );
    let mut st = state.lock().expect("state");
    let stale_rv = stale.metadata.resource_version.clone().unwrap_or_default();
    let (code, body) = st.handle(
        &Method::PUT,
        &format!("{LEASES}/gantry-controller"),
        "",
        "application/json",
        &serde_json::to_vec(
            &json!({"metadata": {"name": "gantry-controller", "resourceVersion": stale_rv},
                                     "spec": {"holderIdentity": "c"}}),
        )
        .expect("json"),
    );
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn options(identity: &str) -> ControllerOptions {
    ControllerOptions {
        namespace: None,
        lease_name: "gantry-controller".into(),
        lease_namespace: "gantry-system".into(),
        identity: identity.into(),
        prices: gantry_k8s::prices::PricesConfigMap::default(),
    }
}

#[tokio::test]
async fn run_leads_then_reconciles_from_watch_events() {
    let (client, state) = fake();
    add_queue(&state, "research", json!({"guaranteed": {"gpus": 16}}));
    add_workload(&state, "train", training());
    let task = tokio::spawn(run(client, options("controller-0")));
    eventually("both gang Pods created", || pods(&state).len() == 2).await;
    eventually("status Admitted", || {
        get_workload(&state, "train")
            .and_then(|w| w.status)
            .and_then(|s| s.phase)
            == Some(WorkloadPhase::Admitted)
    })
    .await;
    // The scheduler binds and the kubelet starts both Pods: watch events drive the status.
    for i in 0..2 {
        set_pod(
            &state,
            &format!("train-{i}"),
            json!({"spec": {"nodeName": format!("node-{i}")}, "status": {"phase": "Running"}}),
        );
    }
    eventually("status Running on both nodes", || {
        get_workload(&state, "train")
            .and_then(|w| w.status)
            .is_some_and(|s| {
                s.phase == Some(WorkloadPhase::Running)
                    && s.node.as_deref() == Some("node-0,node-1")
            })
    })
    .await;
    let lease_holder = {
        let st = state.lock().expect("state");
        st.objects
            .iter()
            .find(|o| o.plural == "leases")
            .map(|o| o.value["spec"]["holderIdentity"].clone())
    };
    assert_eq!(lease_holder, Some(json!("controller-0")));
    task.abort();
}

#[tokio::test]
async fn run_does_not_reconcile_without_the_lease() {
    let (client, state) = fake();
    let held = Timestamp::now().to_string();
    state.lock().expect("state").insert(
        LEASES,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "gantry-controller"},
               "spec": {"holderIdentity": "controller-1", "leaseDurationSeconds": 15,
                        "acquireTime": held, "renewTime": held}}),
    );
    add_workload(&state, "train", training());
    writes(&state);
    let task = tokio::spawn(run(client, options("controller-0")));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    task.abort();
    let log = std::mem::take(&mut state.lock().expect("state").log);
    assert_eq!(
        log,
        [format!("GET {LEASES}/gantry-controller")],
        "only the Lease is read"
    );
    assert!(pods(&state).is_empty());
}

#[tokio::test]
async fn concurrent_reconciles_cannot_both_take_the_last_quota() {
    let (client, state) = fake();
    let ctx = context(client);
    add_queue(&state, "research", json!({"guaranteed": {"gpus": 8}}));
    add_workload(&state, "a", training());
    add_workload(&state, "b", training());
    let a = Arc::new(get_workload(&state, "a").expect("a"));
    let b = Arc::new(get_workload(&state, "b").expect("b"));
    let (ra, rb) = tokio::join!(reconcile(a, ctx.clone()), reconcile(b, ctx.clone()));
    ra.expect("a");
    rb.expect("b");
    let phases: Vec<Option<WorkloadPhase>> = ["a", "b"]
        .iter()
        .map(|n| {
            get_workload(&state, n)
                .and_then(|w| w.status)
                .and_then(|s| s.phase)
        })
        .collect();
    let admitted = phases
        .iter()
        .filter(|p| **p == Some(WorkloadPhase::Admitted))
        .count();
    assert_eq!(admitted, 1, "{phases:?}");
    assert!(phases.contains(&Some(WorkloadPhase::Pending)));
    assert_eq!(pods(&state).len(), 2);
}

// ---- Cost: prices from a ConfigMap, cost in GPUWorkload and GPUQueue status ----

const CONFIGMAPS: &str = "/api/v1/namespaces/gantry-system/configmaps";
const GPUNODES: &str = "/apis/gantry.dev/v1alpha1/gpunodes";

/// Prices of 2.00 per H100-hour (the rest: the shipped defaults).
const H100_AT_2: &str = "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 2.00, source: contract, date: 2026-11-01}\n";

fn add_prices(state: &Arc<Mutex<State>>, text: &str) {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "gantry-prices"}, "data": {"prices.yaml": text}});
    state.lock().expect("state").insert(CONFIGMAPS, obj);
}

/// Replaces the prices file (a new resourceVersion, as an edit of the ConfigMap gives).
fn edit_prices(state: &Arc<Mutex<State>>, text: &str) {
    let mut st = state.lock().expect("state");
    if let Some(i) = st
        .objects
        .iter()
        .position(|o| o.plural == "configmaps" && o.name == "gantry-prices")
    {
        let rv = st.next_rv();
        st.objects[i].value["data"]["prices.yaml"] = json!(text);
        st.objects[i].value["metadata"]["resourceVersion"] = json!(rv);
        st.changed(i, "MODIFIED");
    }
}

fn add_gpu_node(state: &Arc<Mutex<State>>, name: &str, model: &str, count: u32) {
    let gpus: Vec<Value> = (0..count)
        .map(|i| {
            json!({"index": i, "uuid": format!("GPU-{name}-{i}"), "model": model,
                        "memoryMib": 81559, "healthy": true})
        })
        .collect();
    let obj = json!({"apiVersion": "gantry.dev/v1alpha1", "kind": "GPUNode",
                     "metadata": {"name": name}, "spec": {},
                     "status": {"gpus": gpus, "gpuCount": count, "backend": "simulated"}});
    state.lock().expect("state").insert(GPUNODES, obj);
}

fn h100_price(c: &gantry_cost::Catalogue) -> Option<u64> {
    c.price("H100-80GB", gantry_cost::Pool::OnDemand)
        .ok()
        .map(|p| p.micros_per_gpu_hour)
}

fn context_at(client: Client, at: &'static str) -> Arc<Context> {
    Arc::new(
        Context::new(client, "controller-0")
            .with_clock(Arc::new(move || at.parse().expect("time"))),
    )
}

#[tokio::test]
async fn configmap_prices_are_merged_reloaded_and_a_bad_edit_keeps_the_last_good() {
    use gantry_k8s::controller::billing::refresh_prices;
    let (client, state) = fake();
    // No ConfigMap: the shipped defaults.
    let ctx = context(client.clone());
    let defaults = gantry_cost::Catalogue::default();
    assert_eq!(refresh_prices(&ctx, true).await, defaults);

    add_prices(&state, H100_AT_2);
    let c = refresh_prices(&ctx, true).await;
    assert_eq!(h100_price(&c), Some(2_000_000));
    assert_eq!(
        c.price("L4-24GB", gantry_cost::Pool::OnDemand).ok(),
        defaults.price("L4-24GB", gantry_cost::Pool::OnDemand).ok(),
        "entries the ConfigMap does not name keep the defaults"
    );
    // Within the recheck period the ConfigMap is not read again.
    state.lock().expect("state").log.clear();
    refresh_prices(&ctx, false).await;
    assert!(state.lock().expect("state").log.is_empty());

    // A bad edit: reported on the ConfigMap, the last good prices stay.
    edit_prices(
        &state,
        "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: lots, source: x, date: 2026-11-01}\n",
    );
    let c = refresh_prices(&ctx, true).await;
    assert_eq!(h100_price(&c), Some(2_000_000));
    let events: Vec<Value> = {
        let st = state.lock().expect("state");
        st.objects
            .iter()
            .filter(|o| o.plural == "events" && o.value["reason"] == "InvalidPrices")
            .map(|o| o.value.clone())
            .collect()
    };
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["regarding"]["kind"], "ConfigMap");
    assert_eq!(events[0]["regarding"]["name"], "gantry-prices");
    // Read again unchanged: not reported twice.
    refresh_prices(&ctx, true).await;
    let count = state
        .lock()
        .expect("state")
        .objects
        .iter()
        .filter(|o| o.plural == "events" && o.value["reason"] == "InvalidPrices")
        .count();
    assert_eq!(count, 1);
    // Fixed: the new prices are in force.
    edit_prices(&state, &H100_AT_2.replace("2.00", "2.50"));
    assert_eq!(
        h100_price(&refresh_prices(&ctx, true).await),
        Some(2_500_000)
    );
}

#[tokio::test]
async fn workload_and_queue_status_carry_the_cost() {
    let (client, state) = fake();
    add_prices(&state, H100_AT_2);
    add_gpu_node(&state, "gpu-node-1", "H100-80GB", 8);
    add_queue(&state, "research", json!({"guaranteed": {"gpus": 16}}));
    let mut spec = training();
    spec["replicas"] = json!(1);
    spec["gangMinimum"] = json!(1);
    spec["resources"]["gpu"] = json!({"count": 2});
    add_workload(&state, "train", spec);
    let at_11 = context_at(client.clone(), "2026-11-25T11:00:00Z");
    reconcile_named(&state, &at_11, "train").await;
    set_pod(
        &state,
        "train-0",
        json!({"metadata": {"annotations": {keys::ASSIGNED_GPUS: "0,1"}},
               "spec": {"nodeName": "gpu-node-1"},
               "status": {"phase": "Running", "startTime": "2026-11-25T10:30:00Z"}}),
    );
    writes(&state);
    // Running for 30 min on 2 H100s at 2.00: 2.00 so far; the queue's month-to-date spend follows.
    reconcile_named(&state, &at_11, "train").await;
    let cost = |state: &Arc<Mutex<State>>| {
        get_workload(state, "train")
            .and_then(|w| w.status)
            .and_then(|s| s.cost)
            .expect("status.cost")
    };
    let c = cost(&state);
    assert_eq!(
        (c.amount.as_deref(), c.gpu_hours, c.currency.as_str()),
        (Some("2.00"), 1.0, "USD")
    );
    assert_eq!(c.updated_at, "2026-11-25T11:00:00Z");
    let queue_status = |state: &Arc<Mutex<State>>| {
        let st = state.lock().expect("state");
        st.objects
            .iter()
            .find(|o| o.plural == "gpuqueues" && o.name == "research")
            .map(|o| o.value["status"].clone())
            .unwrap_or(Value::Null)
    };
    let q = queue_status(&state);
    assert_eq!(q["spentThisMonth"], "2.00");
    assert_eq!(
        (q["currency"].as_str(), q["month"].as_str()),
        (Some("USD"), Some("2026-11"))
    );
    assert_eq!(
        writes(&state),
        [
            format!("PATCH {WORKLOADS}/train/status"),
            format!("PATCH {QUEUES}/research/status"),
        ]
    );
    // Again within the minute: no write.
    reconcile_named(&state, &at_11, "train").await;
    assert_eq!(writes(&state), Vec::<String>::new());

    // It finishes at 12:00 (the controller's clock): 90 min on 2 H100s = 6.00, final.
    set_pod(&state, "train-0", json!({"status": {"phase": "Succeeded"}}));
    let at_12 = context_at(client.clone(), NOW);
    reconcile_named(&state, &at_12, "train").await;
    let c = cost(&state);
    assert_eq!((c.amount.as_deref(), c.gpu_hours), (Some("6.00"), 3.0));
    assert_eq!(queue_status(&state)["spentThisMonth"], "6.00");
    // Final: a later pass does not recompute it.
    let at_13 = context_at(client.clone(), "2026-11-25T13:00:00Z");
    writes(&state);
    reconcile_named(&state, &at_13, "train").await;
    assert_eq!(cost(&state).updated_at, NOW);
    assert!(
        !writes(&state).iter().any(|w| w.contains("/status")),
        "no status write after the final cost"
    );

    // A workload on a node nothing says the model of: unpriced, not zero, and not in the spend.
    let mut spec = training();
    spec["replicas"] = json!(1);
    spec["gangMinimum"] = json!(1);
    spec["resources"]["gpu"] = json!({"count": 1});
    add_workload(&state, "mystery", spec);
    reconcile_named(&state, &at_13, "mystery").await;
    set_pod(
        &state,
        "mystery-0",
        json!({"metadata": {"annotations": {keys::ASSIGNED_GPUS: "0"}},
               "spec": {"nodeName": "unlabelled-node"},
               "status": {"phase": "Succeeded", "startTime": "2026-11-25T12:00:00Z"}}),
    );
    reconcile_named(&state, &at_13, "mystery").await;
    let c = get_workload(&state, "mystery")
        .and_then(|w| w.status)
        .and_then(|s| s.cost)
        .expect("cost");
    assert_eq!(c.amount, None, "not priced at zero");
    assert_eq!(c.unpriced_models, ["unknown"]);
    let q = queue_status(&state);
    assert_eq!(q["spentThisMonth"], "6.00");
    assert_eq!(q["unpricedModels"], json!(["unknown"]));
}

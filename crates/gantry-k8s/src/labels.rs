//! `gantry k8s label-nodes`: finds GPU nodes (allocatable `nvidia.com/gpu` or `nvidia.com/mig-*` above
//! zero) and gives each the labels and the taint Gantry expects, before any agent runs:
//!
//! - `gantry.dev/gpu-node=true` (the agent DaemonSet selects on it);
//! - where absent, `gantry.dev/gpu-count` (allocatable GPUs) and, from NVIDIA GPU Feature Discovery's
//!   `nvidia.com/gpu.product` and `nvidia.com/gpu.memory` labels when present, `gantry.dev/gpu-model`
//!   and `gantry.dev/gpu-memory` (the agent keeps all three up to date afterwards);
//! - the taint `nvidia.com/gpu=present:NoSchedule` unless the node has a taint with that key, so only
//!   Pods that tolerate it (Gantry's, which the controller gives the toleration) land there.
//!
//! Labels and taints already there are never changed or removed. With `dry_run` nothing is written.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::agent::{memory_tier, model_key_of};
use crate::keys;

/// Field manager of the label and taint patches.
pub const FIELD_MANAGER: &str = "gantry-label-nodes";
/// Value of the GPU taint `label-nodes` adds (key `nvidia.com/gpu`, effect `NoSchedule`).
pub const GPU_TAINT_VALUE: &str = "present";
/// Label of NVIDIA GPU Feature Discovery: the product name (`NVIDIA-H100-80GB-HBM3`).
pub const GFD_PRODUCT: &str = "nvidia.com/gpu.product";
/// Label of NVIDIA GPU Feature Discovery: memory per GPU in MiB.
pub const GFD_MEMORY: &str = "nvidia.com/gpu.memory";

/// Why labelling failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The node kept changing under us.
    #[error("node {0} changed during each of 3 attempts to patch it; run again")]
    Conflict(String),
}

/// What a GPU node lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// The node's name.
    pub node: String,
    /// GPUs allocatable (whole GPUs plus MIG devices).
    pub gpus: u64,
    /// Labels to add.
    pub labels: BTreeMap<String, String>,
    /// Whether to add the `nvidia.com/gpu=present:NoSchedule` taint.
    pub taint: bool,
}

impl NodePlan {
    /// Whether the node already has everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && !self.taint
    }

    /// One line saying what is (or, with `dry_run`, would be) done.
    pub fn describe(&self, dry_run: bool) -> String {
        if self.is_empty() {
            return format!("{}: {} GPU(s), up to date", self.node, self.gpus);
        }
        let mut parts = Vec::new();
        if !self.labels.is_empty() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            parts.push(format!("label {}", labels.join(", ")));
        }
        if self.taint {
            parts.push(format!(
                "taint {}={GPU_TAINT_VALUE}:NoSchedule",
                keys::NVIDIA_GPU
            ));
        }
        format!(
            "{}: {} GPU(s), {}{}",
            self.node,
            self.gpus,
            if dry_run { "would " } else { "" },
            parts.join("; ")
        )
    }
}

/// GPUs a node offers: allocatable `nvidia.com/gpu` plus every `nvidia.com/mig-*` (0 when none or
/// unreadable).
pub fn allocatable_gpus(node: &Node) -> u64 {
    let Some(alloc) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) else {
        return 0;
    };
    alloc
        .iter()
        .filter(|(k, _)| k.as_str() == keys::NVIDIA_GPU || k.starts_with(keys::NVIDIA_MIG_PREFIX))
        .filter_map(|(_, q)| q.0.trim().parse::<u64>().ok())
        .sum()
}

/// What a node lacks, or `None` for a node without GPUs.
pub fn plan_node(node: &Node) -> Option<NodePlan> {
    let gpus = allocatable_gpus(node);
    if gpus == 0 {
        return None;
    }
    let have = node.metadata.labels.clone().unwrap_or_default();
    let mut want = BTreeMap::new();
    want.insert(keys::NODE_GPU_NODE.to_string(), "true".to_string());
    want.insert(keys::NODE_GPU_COUNT.to_string(), gpus.to_string());
    let memory_mib = have.get(GFD_MEMORY).and_then(|m| m.parse::<u64>().ok());
    if let (Some(product), Some(mib)) = (have.get(GFD_PRODUCT), memory_mib) {
        let model = crate::agent::label_value(&model_key_of(&product.replace('-', " "), mib));
        if !model.is_empty() {
            want.insert(keys::NODE_GPU_MODEL.to_string(), model);
        }
    }
    if let Some(mib) = memory_mib {
        want.insert(keys::NODE_GPU_MEMORY.to_string(), memory_tier(mib));
    }
    let labels = want
        .into_iter()
        .filter(|(k, v)| match have.get(k) {
            // gpu-node must say true; the agent's labels are left as they are once set.
            Some(current) => k == keys::NODE_GPU_NODE && current != v,
            None => true,
        })
        .collect();
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == keys::NVIDIA_GPU));
    Some(NodePlan {
        node: node.metadata.name.clone().unwrap_or_default(),
        gpus,
        labels,
        taint: !tainted,
    })
}

/// The merge patch that carries out `plan` on `node`: the labels, and with a new taint the node's whole
/// taint list plus its `resourceVersion` (a merge patch replaces lists; the version makes a concurrent
/// change a 409 instead of a lost taint).
pub fn patch_body(node: &Node, plan: &NodePlan) -> Value {
    let mut body = json!({ "metadata": { "labels": plan.labels } });
    if plan.taint {
        let mut taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        taints.push(Taint {
            key: keys::NVIDIA_GPU.to_string(),
            value: Some(GPU_TAINT_VALUE.to_string()),
            effect: "NoSchedule".to_string(),
            time_added: None,
        });
        body["spec"] = json!({ "taints": taints });
        if let Some(rv) = &node.metadata.resource_version {
            body["metadata"]["resourceVersion"] = json!(rv);
        }
    }
    body
}

/// Labels and taints every GPU node (see the module docs); returns one line per GPU node saying what
/// was done (or, with `dry_run`, what would be, writing nothing). A conflicting concurrent change is
/// retried from a fresh read, up to 3 times.
pub async fn label_nodes(client: kube::Client, dry_run: bool) -> Result<Vec<String>, Error> {
    let nodes: Api<Node> = Api::all(client);
    let mut lines = Vec::new();
    for node in nodes.list(&ListParams::default()).await? {
        let Some(plan) = plan_node(&node) else {
            continue;
        };
        if dry_run || plan.is_empty() {
            lines.push(plan.describe(dry_run));
            continue;
        }
        let mut current = node;
        let mut plan = plan;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let pp = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            match nodes
                .patch(&plan.node, &pp, &Patch::Merge(patch_body(&current, &plan)))
                .await
            {
                Ok(_) => {
                    lines.push(plan.describe(false));
                    break;
                }
                Err(kube::Error::Api(e)) if e.is_conflict() && attempts < 3 => {
                    current = nodes.get(&plan.node).await?;
                    match plan_node(&current) {
                        Some(p) if !p.is_empty() => plan = p,
                        Some(p) => {
                            lines.push(p.describe(false));
                            break;
                        }
                        None => break,
                    }
                }
                Err(kube::Error::Api(e)) if e.is_conflict() => {
                    return Err(Error::Conflict(plan.node));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;

    fn node(name: &str, gpus: Option<&str>, labels: Value, taints: Value) -> Node {
        let mut alloc = json!({ "cpu": "64", "memory": "512Gi" });
        if let Some(g) = gpus {
            alloc[keys::NVIDIA_GPU] = json!(g);
        }
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": name, "labels": labels, "resourceVersion": "7" },
            "spec": { "taints": taints },
            "status": { "allocatable": alloc },
        }))
        .unwrap()
    }

    #[test]
    fn plans_only_for_gpu_nodes_and_only_what_is_missing() {
        assert_eq!(plan_node(&node("cpu", None, json!({}), json!([]))), None);
        assert_eq!(
            plan_node(&node("zero", Some("0"), json!({}), json!([]))),
            None
        );

        let gfd = json!({ GFD_PRODUCT: "NVIDIA-H100-80GB-HBM3", GFD_MEMORY: "81559" });
        let p = plan_node(&node("g1", Some("8"), gfd, json!([]))).unwrap();
        assert_eq!(p.gpus, 8);
        assert!(p.taint);
        assert_eq!(p.labels[keys::NODE_GPU_NODE], "true");
        assert_eq!(p.labels[keys::NODE_GPU_COUNT], "8");
        assert_eq!(p.labels[keys::NODE_GPU_MODEL], "H100-80GB");
        assert_eq!(p.labels[keys::NODE_GPU_MEMORY], "80g");
        assert_eq!(
            p.describe(true),
            "g1: 8 GPU(s), would label gantry.dev/gpu-count=8, gantry.dev/gpu-memory=80g, \
             gantry.dev/gpu-model=H100-80GB, gantry.dev/gpu-node=true; taint nvidia.com/gpu=present:NoSchedule"
        );

        // Already labelled by the agent (different count: MIG) and tainted by someone else.
        let done = node(
            "g2",
            Some("4"),
            json!({ keys::NODE_GPU_NODE: "true", keys::NODE_GPU_COUNT: "7" }),
            json!([{ "key": "nvidia.com/gpu", "effect": "NoExecute" }]),
        );
        let p = plan_node(&done).unwrap();
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(p.describe(false), "g2: 4 GPU(s), up to date");
    }

    #[test]
    fn taint_patch_keeps_existing_taints_and_pins_the_version() {
        let n = node(
            "g1",
            Some("2"),
            json!({}),
            json!([{ "key": "dedicated", "value": "ml", "effect": "NoSchedule" }]),
        );
        let p = plan_node(&n).unwrap();
        let body = patch_body(&n, &p);
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(
            body["spec"]["taints"],
            json!([
                { "key": "dedicated", "value": "ml", "effect": "NoSchedule" },
                { "key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule" },
            ])
        );
        assert_eq!(body["metadata"]["labels"][keys::NODE_GPU_NODE], "true");
    }

    fn reply(send: tower_test::mock::SendResponse<Response<Body>>, code: StatusCode, body: Value) {
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }

    /// Against a fake API server (tower-test): list, a 409 on the first patch, re-read, patch again.
    #[tokio::test]
    async fn label_nodes_patches_gpu_nodes_and_retries_conflicts() {
        let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let gpu = serde_json::to_value(node("g1", Some("2"), json!({}), json!([]))).unwrap();
        let cpu = serde_json::to_value(node("c1", None, json!({}), json!([]))).unwrap();
        let fake = tokio::spawn(async move {
            let (req, send) = api.next_request().await.unwrap();
            assert_eq!(
                (req.method().as_str(), req.uri().path()),
                ("GET", "/api/v1/nodes")
            );
            reply(
                send,
                StatusCode::OK,
                json!({ "apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [gpu, cpu] }),
            );
            let (req, send) = api.next_request().await.unwrap();
            assert_eq!(
                (req.method().as_str(), req.uri().path()),
                ("PATCH", "/api/v1/nodes/g1")
            );
            reply(
                send,
                StatusCode::CONFLICT,
                json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure",
                        "reason": "Conflict", "code": 409, "message": "modified" }),
            );
            let (req, send) = api.next_request().await.unwrap();
            assert_eq!(
                (req.method().as_str(), req.uri().path()),
                ("GET", "/api/v1/nodes/g1")
            );
            let mut fresh = gpu.clone();
            fresh["metadata"]["resourceVersion"] = json!("8");
            reply(send, StatusCode::OK, fresh.clone());
            let (req, send) = api.next_request().await.unwrap();
            assert_eq!(req.method().as_str(), "PATCH");
            let body: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(body["metadata"]["resourceVersion"], "8");
            reply(send, StatusCode::OK, fresh);
            assert!(api.next_request().await.is_none());
        });
        let lines = label_nodes(client, false).await.unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("g1: 2 GPU(s), label "), "{lines:?}");
        fake.await.unwrap();
    }

    #[tokio::test]
    async fn dry_run_writes_nothing() {
        let (svc, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let gpu = serde_json::to_value(node("g1", Some("1"), json!({}), json!([]))).unwrap();
        let fake = tokio::spawn(async move {
            let (_, send) = api.next_request().await.unwrap();
            reply(
                send,
                StatusCode::OK,
                json!({ "apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [gpu] }),
            );
            assert!(api.next_request().await.is_none(), "dry run must not write");
        });
        let lines = label_nodes(client, true).await.unwrap();
        assert!(lines[0].contains("would label"), "{lines:?}");
        fake.await.unwrap();
    }
}

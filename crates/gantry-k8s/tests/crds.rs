//! Golden and structural tests of the generated CRDs.
//!
//! Regenerate the golden file with `GANTRY_UPDATE_GOLDEN=1 cargo test -p gantry-k8s --test crds`,
//! then review the diff by eye.

use gantry_k8s::crd::{GPUWorkloadSpec, crds, crds_yaml};
use serde_json::Value;
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with the golden file `name` (or rewrites it when asked).
fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("GANTRY_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set GANTRY_UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(expected, actual, "{} differs", path.display());
}

#[test]
fn crds_match_golden_file() {
    check_golden("crds.yaml", &crds_yaml());
}

/// Walks a schema: every node with properties or items has a type (or int-or-string /
/// preserve-unknown-fields), and none uses a keyword a structural schema forbids at that place.
fn check_structural(path: &str, schema: &Value, problems: &mut Vec<String>) {
    let Some(map) = schema.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    for bad in [
        "$ref",
        "$defs",
        "definitions",
        "$schema",
        "const",
        "uniqueItems",
    ] {
        if map.contains_key(bad) {
            problems.push(format!("{path}: has {bad}"));
        }
    }
    if let Some(f) = map.get("format").and_then(Value::as_str)
        && !["int32", "int64", "float", "double", "date-time"].contains(&f)
    {
        problems.push(format!("{path}: format {f}"));
    }
    if map.get("additionalProperties") == Some(&Value::Bool(false)) {
        problems.push(format!("{path}: additionalProperties false"));
    }
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match map.get("type") {
        Some(Value::String(t)) => {
            if !["object", "array", "string", "integer", "number", "boolean"].contains(&t.as_str())
            {
                problems.push(format!("{path}: type {t}"));
            }
        }
        Some(other) => problems.push(format!("{path}: type {other} is not one string")),
        None if int_or_string || preserve => {}
        None => problems.push(format!("{path}: no type")),
    }
    for key in ["anyOf", "oneOf", "allOf", "not"] {
        if map.contains_key(key) && !int_or_string {
            problems.push(format!("{path}: {key} without int-or-string"));
        }
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        if map.get("type").and_then(Value::as_str) != Some("object") {
            problems.push(format!("{path}: properties on a non-object"));
        }
        for (k, v) in props {
            check_structural(&format!("{path}.{k}"), v, problems);
        }
    }
    if let Some(items) = map.get("items") {
        check_structural(&format!("{path}[]"), items, problems);
    }
    if let Some(extra) = map.get("additionalProperties")
        && extra.is_object()
    {
        check_structural(&format!("{path}{{}}"), extra, problems);
    }
}

#[test]
fn schemas_are_structural() {
    let crds = crds().expect("crds");
    assert_eq!(crds.len(), 3);
    for crd in &crds {
        let value = serde_json::to_value(crd).expect("json");
        let text = value.to_string();
        assert!(!text.contains("$ref"), "{}: $ref", crd.spec.names.kind);
        for version in value["spec"]["versions"].as_array().expect("versions") {
            let schema = &version["schema"]["openAPIV3Schema"];
            let mut problems = Vec::new();
            check_structural(&crd.spec.names.kind, schema, &mut problems);
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }
}

#[test]
fn names_scopes_and_columns() {
    let crds = crds().expect("crds");
    let by_kind = |k: &str| {
        crds.iter()
            .find(|c| c.spec.names.kind == k)
            .unwrap_or_else(|| panic!("{k}"))
    };
    let w = by_kind("GPUWorkload");
    assert_eq!(w.spec.group, "gantry.dev");
    assert_eq!(w.spec.scope, "Namespaced");
    assert_eq!(w.spec.names.plural, "gpuworkloads");
    assert_eq!(
        w.spec.names.short_names.as_deref(),
        Some(&["gw".to_string(), "gpuw".to_string()][..])
    );
    let v = &w.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    let cols: Vec<&str> = v
        .additional_printer_columns
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["Phase", "Queue", "GPUs", "Node", "Cost", "Age"]);
    assert!(v.subresources.as_ref().is_some_and(|s| s.status.is_some()));
    let column = |crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
                  name: &str| {
        crd.spec.versions[0]
            .additional_printer_columns
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.json_path.clone())
    };
    assert_eq!(column(w, "Cost").as_deref(), Some(".status.cost.amount"));
    let q = by_kind("GPUQueue");
    assert_eq!(q.spec.scope, "Cluster");
    assert!(
        q.spec.versions[0]
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some()),
        "the controller writes GPUQueue status"
    );
    assert_eq!(
        column(q, "Spent").as_deref(),
        Some(".status.spentThisMonth")
    );
    let n = by_kind("GPUNode");
    assert_eq!(column(n, "GPUs").as_deref(), Some(".status.gpuCount"));
    assert_eq!(n.spec.scope, "Cluster");
    assert_eq!(
        n.spec.names.short_names.as_deref(),
        Some(&["gn".to_string()][..])
    );
}

#[test]
fn workload_yaml_round_trips_and_validates() {
    let yaml = r#"
kind: training
queue: research
replicas: 2
gangMinimum: 2
resources: {cpu: "8", memory: 64Gi, shm: 8Gi, gpu: {count: 4}}
template:
  spec:
    containers: [{name: train, image: "ghcr.io/acme/train:1"}]
"#;
    let spec: GPUWorkloadSpec = serde_saphyr::from_str(yaml).expect("parse");
    assert_eq!(spec.replicas, 2);
    assert!(spec.preemptible);
    spec.validate("train").expect("valid");
    let mut bad = spec.clone();
    bad.resources.gpu.as_mut().expect("gpu").share = Some(500);
    bad.template.spec.as_mut().expect("spec").containers[0].image = None;
    let errs = bad.validate("train").expect_err("invalid");
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"resources.gpu"), "{paths:?}");
    assert!(
        paths.contains(&"template.spec.containers[0].image"),
        "{paths:?}"
    );
}

/// A workload as the API server returns it (name, namespace, uid set).
fn workload(name: &str, yaml: &str) -> gantry_k8s::crd::GPUWorkload {
    let spec: GPUWorkloadSpec = serde_saphyr::from_str(yaml).expect("spec");
    let mut w = gantry_k8s::crd::GPUWorkload::new(name, spec);
    w.metadata.namespace = Some("ml".into());
    w.metadata.uid = Some(format!("{name}-uid"));
    w
}

/// The Pods of `w` as YAML documents.
fn pods_yaml(w: &gantry_k8s::crd::GPUWorkload, priority: i64) -> String {
    let pods = gantry_k8s::pods::pods_for(w, priority).expect("pods");
    let mut out = String::new();
    for p in pods {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&p).expect("yaml"));
    }
    out
}

#[test]
fn training_gang_pods_match_golden_file() {
    let w = workload(
        "train-llm",
        r#"
kind: training
priorityClass: high-priority-training
queue: research
replicas: 2
gangMinimum: 2
resources: {cpu: "16", memory: 128Gi, shm: 16Gi, gpu: {count: 4, models: [H100-80GB]}}
placement:
  nodeSelector: {gantry.dev/pool: training}
  affinity:
    required: [{key: topology.kubernetes.io/zone, operator: In, values: [zone-a]}]
    preferred: [{weight: 50, matchExpressions: [{key: gantry.dev/utilization-tier, operator: In, values: [idle]}]}]
  tolerations: [{key: dedicated, operator: Equal, value: training, effect: NoSchedule}]
timeout: 2d
retries: 2
strategy: gantry
template:
  metadata: {labels: {app: train-llm}}
  spec:
    containers:
    - name: trainer
      image: ghcr.io/acme/train:1.4
      command: [torchrun, train.py]
      volumeMounts: [{name: checkpoints, mountPath: /ckpt}]
    - name: sidecar
      image: ghcr.io/acme/uploader:1
    volumes:
    - name: checkpoints
      persistentVolumeClaim: {claimName: checkpoints}
"#,
    );
    check_golden("pod-training.yaml", &pods_yaml(&w, 1000));
}

#[test]
fn inference_share_pod_matches_golden_file() {
    let w = workload(
        "chat",
        r#"
kind: inference
priorityClass: medium-priority-inference
resources: {cpu: 500m, memory: 8Gi, gpu: {share: 250, memory: 10Gi}}
template:
  spec:
    containers: [{name: server, image: "vllm/vllm-openai:v0.6", ports: [{containerPort: 8000}]}]
"#,
    );
    let text = pods_yaml(&w, 500);
    assert!(
        !text.contains("nvidia.com/gpu:"),
        "a share takes no whole GPU"
    );
    check_golden("pod-inference-share.yaml", &text);
}

#[test]
fn mig_pod_matches_golden_file() {
    let w = workload(
        "notebook",
        r#"
kind: interactive
resources: {cpu: "2", memory: 16Gi, shm: 1Gi, gpu: {mig: 1g.10gb, models: [A100-80GB]}}
ttlAfterFinished: 1h
template:
  spec:
    containers: [{name: lab, image: "jupyter/base-notebook:latest"}]
"#,
    );
    let text = pods_yaml(&w, 0);
    assert!(
        text.contains("nvidia.com/mig-1g.10gb: '1'")
            || text.contains("nvidia.com/mig-1g.10gb: \"1\""),
        "{text}"
    );
    check_golden("pod-mig.yaml", &text);
}

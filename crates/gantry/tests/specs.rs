//! `gantry validate` and `gantry schema` end to end: the examples pass, every bad field is named, YAML
//! errors name the line and field, and the schemas are JSON naming the top-level fields.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gantry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .output()
        .expect("gantry runs")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Writes `text` to a fresh temporary file and returns its path.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gantry-specs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn no_panic(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_examples_validate_cleanly() {
    let workloads = example("workloads.yaml");
    let cluster = example("cluster.yaml");
    let out = gantry(&[
        "validate",
        "--workloads",
        &workloads,
        "--cluster",
        &cluster,
        "--mode",
        "simulation",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.contains("cluster.yaml: ok (5 nodes, 3 queues, 4 priority classes)"),
        "{text}"
    );
    assert!(text.contains("workloads.yaml: ok (7 workloads)"), "{text}");
    // Without the cluster, against the shipped defaults.
    let out = gantry(&[
        "validate",
        "--workloads",
        &workloads,
        "--mode",
        "simulation",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    // `gantry serve` runs one process per workload: the multi-replica gangs are refused there.
    let out = gantry(&["validate", "--workloads", &workloads]);
    assert!(!out.status.success());
    let text = stdout(&out) + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("[0].replicas: the standalone server runs one process per workload, got 2"),
        "{text}"
    );
    let out = gantry(&["validate", "--cluster", &cluster]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn every_bad_field_is_reported_with_file_and_path() {
    let bad = temp_file(
        "bad-workloads.yaml",
        "\
- name: too-big-share
  resources:
    gpu: {share: 1200}
  run: {command: [x]}
- name: gang
  replicas: 2
  gangMinimum: 3
  run: {command: [x]}
- name: prio
  priorityClass: urgent
  run: {command: [x]}
- name: mig
  resources:
    gpu: {mig: 5g.50gb}
  run: {command: [x]}
",
    );
    let file = bad.to_string_lossy().into_owned();
    for cluster in [None, Some(example("cluster.yaml"))] {
        let mut args = vec![
            "validate",
            "--workloads",
            file.as_str(),
            "--mode",
            "simulation",
        ];
        if let Some(c) = &cluster {
            args.extend(["--cluster", c.as_str()]);
        }
        let out = gantry(&args);
        assert_eq!(out.status.code(), Some(1));
        no_panic(&out);
        let text = stdout(&out);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(file.as_str()))
            .collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (line, field) in lines.iter().zip([
            "[0].resources.gpu.share",
            "[1].gangMinimum",
            "[2].priorityClass",
            "[3].resources.gpu.mig",
        ]) {
            assert!(line.starts_with(&format!("{file}: {field}: ")), "{line}");
        }
        assert!(String::from_utf8_lossy(&out.stderr).contains("4 problems found"));
    }
}

#[test]
fn cluster_problems_name_their_fields() {
    let bad = temp_file(
        "bad-cluster.yaml",
        "\
queues:
  - {name: a, weight: 0, guaranteed: {gpus: -1}}
nodes:
  - {name: n0, cpu: 8, memory: 64Gi, gpus: {model: T4, count: 9, mig: enabled}}
  - {name: n0, cpu: 0, memory: 64}
",
    );
    let file = bad.to_string_lossy().into_owned();
    let out = gantry(&["validate", "--cluster", &file]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for field in [
        "queues[0].weight",
        "queues[0].guaranteed.gpus",
        "nodes[0].gpus.count",
        "nodes[0].gpus.mig",
        "nodes[1].name",
        "nodes[1].cpu",
        "nodes[1].memory",
    ] {
        assert!(
            text.contains(&format!("{file}: {field}: ")),
            "{field}: {text}"
        );
    }
}

#[test]
fn yaml_errors_name_line_and_field_without_panicking() {
    let cases = [
        (
            "unknown-field.yaml",
            "- name: a\n  resources:\n    gpu:\n      cont: 3\n",
            ":4:7: [0].resources.gpu.cont: unknown field `cont`",
        ),
        (
            "wrong-type.yaml",
            "- name: a\n  replicas: many\n",
            ":2:13: [0].replicas: ",
        ),
        (
            "syntax.yaml",
            "- name: a\n  resources: {gpu: {count: 1}\n",
            ":2:14: ",
        ),
        (
            "bad-enum.yaml",
            "- name: a\n  kind: trainin\n",
            ":2:9: [0].kind: unknown variant `trainin`",
        ),
        ("not-a-list.yaml", "name: a\n", ":1:1: "),
    ];
    for (name, text, expected) in cases {
        let file = temp_file(name, text).to_string_lossy().into_owned();
        let out = gantry(&["validate", "--workloads", &file]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        no_panic(&out);
        let first = stdout(&out).lines().next().unwrap_or_default().to_string();
        assert!(
            first.starts_with(&format!("{file}{expected}")),
            "{name}: {first}"
        );
    }
    let out = gantry(&["validate", "--workloads", "/nonexistent/workloads.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    no_panic(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/workloads.yaml")
    );
}

#[test]
fn kubernetes_mode_needs_images() {
    let out = gantry(&[
        "validate",
        "--workloads",
        &example("workloads.yaml"),
        "--mode",
        "kubernetes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("[0].run.image: "), "{text}");
    assert!(
        !text.contains("[1].run.image"),
        "chat-inference has an image: {text}"
    );
    let out = gantry(&[
        "validate",
        "--workloads",
        &example("workloads.yaml"),
        "--mode",
        "simulation",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn schemas_are_json_naming_the_top_level_fields() {
    let out = gantry(&["schema", "workload"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["title"], "WorkloadSpec");
    let props = v["properties"].as_object().expect("properties");
    for field in [
        "name",
        "kind",
        "priorityClass",
        "queue",
        "replicas",
        "gangMinimum",
        "resources",
        "placement",
        "preemptible",
        "spot",
        "timeout",
        "retries",
        "ttlAfterFinished",
        "strategy",
        "run",
    ] {
        assert!(props.contains_key(field), "{field}");
    }
    let gpu = &v["$defs"]["GpuRequest"]["properties"];
    assert_eq!(gpu["share"]["maximum"], 999);
    assert!(gpu["mig"].is_object() && gpu["count"].is_object());
    let default = gantry(&["schema"]);
    assert_eq!(default.stdout, out.stdout, "workload is the default");

    let out = gantry(&["schema", "cluster"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let mut keys: Vec<&String> = v["properties"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["nodes", "priorityClasses", "queues"]);
    assert!(v["$defs"]["NodeGpus"]["properties"]["nvlinkGroups"].is_object());
}

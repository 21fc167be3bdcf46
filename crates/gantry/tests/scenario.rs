//! `gantry simulate scenario` end to end on the examples: the JSON shape, hand-checked outcomes of the
//! example, determinism, the `--out` files, and a bad field reported with its path.

use std::path::PathBuf;
use std::process::Command;

fn gantry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("gantry runs")
}

fn example(name: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "..", "examples", name]
        .iter()
        .collect();
    p.display().to_string()
}

#[test]
fn example_scenario_json_has_every_field_and_keeps_the_promises() {
    let (c, w) = (example("cluster.yaml"), example("scenario-workloads.yaml"));
    let args = [
        "simulate",
        "scenario",
        "--cluster",
        &c,
        "--workloads",
        &w,
        "--json",
    ];
    let a = gantry(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, gantry(&args).stdout, "deterministic");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let workloads = v["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 9);
    for x in workloads {
        for key in [
            "name",
            "queue",
            "priority",
            "state",
            "node",
            "gpus",
            "submitted",
            "started",
            "finished",
            "preemptions",
        ] {
            assert!(x.get(key).is_some(), "{key} missing in {x}");
        }
    }
    let by = |name: &str| {
        workloads
            .iter()
            .find(|x| x["name"] == name)
            .unwrap()
            .clone()
    };
    // The gang starts whole, at its arrival, on one NVLinked node (8 GPUs).
    let ft = by("finetune-llama");
    assert_eq!(ft["started"], 1800);
    assert_eq!(ft["gpus"].as_array().unwrap().len(), 8);
    // Training outranks the batch sweep: pretrain-small (8 GPUs, research over quota) evicts it.
    assert_eq!(by("pretrain-small")["started"], 2700);
    assert_eq!(by("sweep-0")["preemptions"], 1);
    // Critical inference takes the spot A100s at once, evicting batch frames.
    assert_eq!(by("search-ranker")["started"], 3600);
    assert_eq!(by("render-frames")["preemptions"], 1);
    // MIG: the 3g.40gb goes to slices 4-7 so that a 4g.40gb still fits at 0.
    assert_eq!(by("embed-corpus")["gpus"][0], "a100-mig-0:0:3g.40gb@4");
    let s = &v["summary"];
    assert_eq!(s["quota_violations"], 0);
    assert_eq!(s["preemptions"], 2);
    for key in [
        "makespan",
        "queueing_delay_by_priority",
        "queueing_delay_by_queue",
        "mean_jct",
        "gpu_allocation",
    ] {
        assert!(s.get(key).is_some(), "summary.{key} missing");
    }
    let p = &s["queueing_delay_by_priority"]["high-priority-training"];
    for key in ["mean", "p50", "p95", "p99"] {
        assert!(p[key].is_number());
    }
}

#[test]
fn scenario_out_writes_csv_and_svg() {
    let dir = std::env::temp_dir().join(format!("gantry-scenario-{}", std::process::id()));
    let (c, w) = (example("cluster.yaml"), example("scenario-workloads.yaml"));
    let d = dir.display().to_string();
    let out = gantry(&[
        "simulate",
        "scenario",
        "--cluster",
        &c,
        "--workloads",
        &w,
        "--out",
        &d,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "workloads.csv",
        "timeline.csv",
        "gpus-per-queue.svg",
        "queue-length.svg",
        "report.json",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!text.is_empty(), "{f} empty");
    }
    let timeline = std::fs::read_to_string(dir.join("timeline.csv")).unwrap();
    assert!(timeline.starts_with("time,allocated_gpus,allocated_pct,pending,gpus_default"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scenario_reports_bad_fields_with_their_path() {
    let dir = std::env::temp_dir().join(format!("gantry-scenario-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("w.yaml");
    std::fs::write(
        &file,
        "- name: a\n  arrival: 5x\n  duration: 1h\n  resources: {gpu: {share: 1200}}\n- name: b\n  arrival: \"0\"\n  duration: 1h\n  colour: red\n",
    )
    .unwrap();
    let c = example("cluster.yaml");
    let f = file.display().to_string();
    let out = gantry(&["simulate", "scenario", "--cluster", &c, "--workloads", &f]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[0].arrival:"), "{err}");
    assert!(err.contains("[0].resources.gpu.share:"), "{err}");
    assert!(err.contains("[1].colour: unknown field"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

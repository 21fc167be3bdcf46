//! The `gantry` binary end to end: simulate, JSON shape, determinism, outputs, and argument errors.

use std::process::Command;

fn gantry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .output()
        .expect("gantry runs")
}

#[test]
fn simulate_json_has_the_documented_keys_and_is_deterministic() {
    let args = [
        "simulate",
        "--policy",
        "fgd,bestfit",
        "--seeds",
        "1-3",
        "--json",
        "--no-timings",
    ];
    let a = gantry(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = gantry(&args);
    assert_eq!(a.stdout, b.stdout, "same seeds, byte-identical JSON");
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let arr = v.as_array().expect("two policies give an array");
    assert_eq!(arr.len(), 2);
    let fgd = &arr[0];
    assert_eq!(fgd["policy"], "fgd");
    assert_eq!(fgd["trace"], "synthetic");
    assert_eq!(fgd["seeds"], serde_json::json!([1, 2, 3]));
    for x in ["90", "100", "110", "120", "130"] {
        let cell = &fgd["unallocated_gpu_pct_at"][x];
        assert!(
            cell["mean"].is_number() && cell["sd"].is_number(),
            "{x}: {cell}"
        );
    }
    let run = &fgd["runs"][0];
    assert_eq!(run["seed"], 1);
    assert!(run["pods"].as_u64().unwrap() > 420);
    assert!(run["failed"].is_u64() && run["elapsed_ms"] == 0);
    assert!(run["unallocated_gpu_pct_at"]["100"].is_number());
    let c = gantry(&[
        "simulate",
        "--policy",
        "fgd,bestfit",
        "--seeds",
        "4-6",
        "--json",
        "--no-timings",
    ]);
    assert_ne!(a.stdout, c.stdout, "other seeds, other results");
}

#[test]
fn out_dir_gets_csv_and_svg() {
    let dir = std::env::temp_dir().join(format!("gantry-out-{}", std::process::id()));
    let out = gantry(&[
        "simulate",
        "--policy",
        "fgd,random",
        "--seeds",
        "1-2",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(dir.join("synthetic/unallocated.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
    let csv = std::fs::read_to_string(dir.join("synthetic/fgd.arrivals.csv")).unwrap();
    assert!(csv.starts_with("policy,seed,arrival,"));
    assert!(csv.lines().count() > 800);
    let curve = std::fs::read_to_string(dir.join("synthetic/curve.csv")).unwrap();
    assert!(curve.contains("random,100,"));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("fgd") && table.contains("@100% arrived"));
}

#[test]
fn strategies_lists_every_policy_once() {
    let out = gantry(&["strategies"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "fgd",
        "bestfit",
        "gpupacking",
        "gpuclustering",
        "dotprod",
        "random",
        "least_utilized",
        "best_fit",
        "priority",
        "round_robin",
        "binpack",
        "spread",
    ] {
        assert_eq!(
            text.lines()
                .filter(|l| l.split_whitespace().next() == Some(name))
                .count(),
            1,
            "{name}"
        );
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = gantry(&["simulate", "--policy", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--policy") && err.contains("unknown policy \"nope\""),
        "{err}"
    );
    let out = gantry(&["simulate", "--seeds", "9-1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("backwards"));
    let out = gantry(&["simulate", "--inflate=-1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--inflate"));
    let out = gantry(&[
        "simulate",
        "openb",
        "--nodes",
        "/nonexistent/nodes.csv",
        "--pods",
        "/nonexistent/pods.csv",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/nodes.csv"));
}

//! The dynamic simulation on tiny inputs with outcomes computed by hand: an openb trace with time
//! columns, and a scenario workload parsed with its simulation-only fields.

use gantry_core::live::{Scheduler, SchedulerConfig};
use gantry_sim::scenario::{ScenarioWorkload, delay_stats, openb_scenario, simulate};

#[test]
fn openb_times_become_arrivals_and_runtimes() {
    let dir = std::env::temp_dir().join(format!("gantry-openb-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nodes = dir.join("openb_node_list_gpu_node.csv");
    let pods = dir.join("openb_pod_list_tiny.csv");
    std::fs::write(
        &nodes,
        "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,V100M16\n",
    )
    .unwrap();
    // Two whole GPUs: p0 (0..100) and p1 (10..60) run at once; p2 (20) needs both GPUs and waits for
    // p0 to end at 100 (p1 ended at 60), then runs 30 s: 100..130.
    std::fs::write(
        &pods,
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
         p0,1000,1024,1,1000,,BE,Running,1000,1100,1000\n\
         p1,1000,1024,1,1000,,LS,Running,1010,1060,1010\n\
         p2,1000,1024,2,1000,,BE,Running,1020,1050,\n",
    )
    .unwrap();
    let (cluster, workloads) = openb_scenario(&nodes, &pods).unwrap();
    assert_eq!(
        workloads
            .iter()
            .map(|w| (w.arrival, w.duration))
            .collect::<Vec<_>>(),
        [(0, 100), (10, 50), (20, 30)]
    );
    let scheduler = Scheduler::new(cluster, &[], vec![100, 500], SchedulerConfig::default());
    let report = simulate(scheduler, workloads, 1).unwrap();
    let got: Vec<_> = report
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w.started, w.finished))
        .collect();
    assert_eq!(
        got,
        [
            ("p0", Some(0), Some(100)),
            ("p1", Some(10), Some(60)),
            ("p2", Some(100), Some(130))
        ]
    );
    let s = &report.summary;
    assert_eq!(s.makespan, 130);
    assert_eq!(s.queueing_delay_by_priority["be"].mean, 40.0); // (0 + 80) / 2
    assert_eq!(s.queueing_delay_by_priority["ls"].p99, 0.0);
    assert!((s.mean_jct - (100.0 + 50.0 + 110.0) / 3.0).abs() < 1e-9);
    assert_eq!(s.quota_violations, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scenario_workloads_carry_arrival_and_duration_beside_the_spec() {
    let w: ScenarioWorkload = serde_json::from_str(
        r#"{"name": "a", "queue": "q", "resources": {"gpu": {"count": 2}}, "arrival": "90s", "duration": "1h"}"#,
    )
    .unwrap();
    assert_eq!(w.spec.name, "a");
    assert_eq!(w.spec.queue.as_deref(), Some("q"));
    assert_eq!(w.arrival.seconds(), Ok(90));
    assert_eq!(w.duration.seconds(), Ok(3600));
    assert!(w.unknown.is_empty());
    let odd: ScenarioWorkload =
        serde_json::from_str(r#"{"name": "b", "arrival": "0", "duration": "1m", "colour": 1}"#)
            .unwrap();
    assert_eq!(odd.unknown.keys().collect::<Vec<_>>(), ["colour"]);
}

#[test]
fn percentiles_are_nearest_rank() {
    let d = delay_stats((1..=100).map(f64::from).collect());
    assert_eq!(
        (d.count, d.mean, d.p50, d.p95, d.p99),
        (100, 50.5, 50.0, 95.0, 99.0)
    );
    assert_eq!(delay_stats(Vec::new()).count, 0);
}

//! Parse tests on the real output of one H100 80GB HBM3 (driver 580.159.04), kept in
//! `../shared/fixtures/nvidia/h100-80gb-hbm3/` beside the repository.

use std::path::PathBuf;

use gantry_gpu::smi::{
    TopoConnection, parse_mig_profiles, parse_query_gpu_csv, parse_smi_xml, parse_topo,
};
use gantry_gpu::{
    BackendKind, DiscoverOptions, EccCounts, GpuError, GpuHealth, MigMode, derive_health, discover,
    nvml,
};

const UUID: &str = "GPU-4b3706a0-35e1-e5a9-6e20-d52d4b5ec44a";
const NAME: &str = "NVIDIA H100 80GB HBM3";
const BUS: &str = "00000000:00:06.0";

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/nvidia/h100-80gb-hbm3")
        .join(name)
}

/// The fixture's text; a missing file fails the test naming the path.
fn fixture(name: &str) -> String {
    let path = fixture_path(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => panic!(
            "fixture {} not readable ({e}); these tests need the shared/ folder beside the repository",
            path.display()
        ),
    }
}

/// The line of pynvml.txt starting with `prefix`, without the prefix.
fn pynvml(prefix: &str) -> String {
    let text = fixture("pynvml.txt");
    match text.lines().find_map(|l| l.strip_prefix(prefix)) {
        Some(rest) => rest.trim().to_string(),
        None => panic!("pynvml.txt has no line starting with {prefix:?}"),
    }
}

#[test]
fn xml_report() {
    let report = parse_smi_xml(&fixture("nvidia-smi-q.xml"), "nvidia-smi-q.xml").unwrap();
    assert_eq!(report.driver_version.as_deref(), Some("580.159.04"));
    assert_eq!(report.cuda_version.as_deref(), Some("13.0"));
    assert_eq!(report.gpus.len(), 1);
    let d = &report.gpus[0].device;
    assert_eq!(d.index, 0);
    assert_eq!(d.uuid, UUID);
    assert_eq!(d.name, NAME);
    assert_eq!(d.memory_total_mib, 81559);
    assert_eq!(
        d.mig,
        MigMode {
            enabled: false,
            pending: false
        }
    );
    assert!(d.mig_devices.is_empty());
    assert_eq!(d.pci_bus_id, BUS);
    assert!(d.nvlink_peers.is_empty());
    assert_eq!(d.compute_capability, None, "the XML does not carry it");

    let t = &report.gpus[0].telemetry;
    assert_eq!(t.utilization_gpu_pct, Some(0));
    assert_eq!(t.utilization_memory_pct, Some(0));
    assert_eq!(t.memory_used_mib, Some(0));
    assert_eq!(t.memory_free_mib, Some(81079));
    assert_eq!(t.temperature_c, Some(34));
    // T.Limit form: 34 C now, 53 C below T.Limit, slowdown at -2 C margin: 34 + 53 + 2.
    assert_eq!(t.temperature_slowdown_c, Some(89));
    assert!(!t.thermal_slowdown_active);
    assert_eq!(t.power_draw_w, Some(121.68));
    assert_eq!(t.power_limit_w, Some(700.0));
    assert_eq!(
        t.ecc,
        EccCounts {
            volatile_uncorrected: Some(0),
            aggregate_uncorrected: Some(0)
        }
    );
    assert!(t.xid_events.is_empty());
    assert!(t.processes.is_empty());
    assert!(!t.gpu_lost);
    assert_eq!(derive_health(t), GpuHealth::Ok);
}

#[test]
fn query_gpu_csv() {
    let gpus = parse_query_gpu_csv(&fixture("query-gpu.csv"), "query-gpu.csv").unwrap();
    assert_eq!(gpus.len(), 1);
    let (d, t) = (&gpus[0].device, &gpus[0].telemetry);
    assert_eq!(d.index, 0);
    assert_eq!(d.uuid, UUID);
    assert_eq!(d.name, NAME);
    assert_eq!(d.pci_bus_id, BUS);
    assert_eq!(d.memory_total_mib, 81559);
    assert!(!d.mig.enabled);
    assert_eq!(t.memory_used_mib, Some(0));
    assert_eq!(t.memory_free_mib, Some(81079));
    assert_eq!(t.utilization_gpu_pct, Some(0));
    assert_eq!(t.utilization_memory_pct, Some(0));
    assert_eq!(t.temperature_c, Some(34));
    assert_eq!(t.power_draw_w, Some(121.75));
    assert_eq!(t.power_limit_w, Some(700.0));
    assert_eq!(t.ecc.volatile_uncorrected, Some(0));
    assert_eq!(t.ecc.aggregate_uncorrected, None, "not queried");
    assert_eq!(derive_health(t), GpuHealth::Ok);
}

/// The NVML conversions give, from pynvml's raw numbers for the same GPU, what nvidia-smi printed.
#[test]
fn nvml_raw_values_agree_with_nvidia_smi() {
    let xml = parse_smi_xml(&fixture("nvidia-smi-q.xml"), "nvidia-smi-q.xml").unwrap();
    let smi = &xml.gpus[0];

    let identity = pynvml("0 ");
    assert_eq!(identity, format!("{NAME} {UUID}"));

    let mem: Vec<u64> = pynvml("mem ")
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(nvml::mib(mem[0]), smi.device.memory_total_mib);

    let limit_mw: u32 = pynvml("nvmlDeviceGetEnforcedPowerLimit ").parse().unwrap();
    assert_eq!(Some(nvml::watts(limit_mw)), smi.telemetry.power_limit_w);
    let draw_mw: u32 = pynvml("nvmlDeviceGetPowerUsage ").parse().unwrap();
    assert!((nvml::watts(draw_mw) - 121.732).abs() < 1e-9);

    assert_eq!(pynvml("nvmlDeviceGetMigMode "), "[0, 0]");
    assert_eq!(nvml::mig_mode(0, 0), smi.device.mig);

    let temp: i32 = pynvml("temp ").parse().unwrap();
    assert_eq!(Some(temp), smi.telemetry.temperature_c);

    assert!(pynvml("nvmlDeviceGetPciInfo ").contains(&format!("busId: {BUS})")));
    assert_eq!(pynvml("nvmlDeviceGetCudaComputeCapability "), "(9, 0)");
    assert_eq!(pynvml("ecc "), "0");
    assert_eq!(pynvml("nvmlDeviceGetComputeRunningProcesses "), "[]");
    assert_eq!(pynvml("nvmlDeviceGetMaxMigDeviceCount "), "0");
}

#[test]
fn topology() {
    let topo = parse_topo(&fixture("topo.txt"), "topo.txt").unwrap();
    assert_eq!(topo.gpus.len(), 1);
    let g = &topo.gpus[0];
    assert_eq!(g.index, 0);
    assert!(g.peers.is_empty());
    assert!(
        !g.peers
            .iter()
            .any(|(_, c)| matches!(c, TopoConnection::NvLink { .. }))
    );
    assert_eq!(g.cpu_affinity.as_deref(), Some("0-15"));
    assert_eq!(g.numa_affinity.as_deref(), Some("0"));
    assert!(topo.nvlink_peers(0).is_empty());
}

#[test]
fn mig_profiles() {
    let profiles = parse_mig_profiles(&fixture("mig-profiles.txt"), "mig-profiles.txt").unwrap();
    let summary: Vec<(&str, u32, u32, u32)> = profiles
        .iter()
        .map(|p| (p.name.as_str(), p.id, p.instances_free, p.instances_total))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("1g.10gb", 19, 7, 7),
            ("1g.10gb+me", 20, 1, 1),
            ("1g.20gb", 15, 4, 4),
            ("2g.20gb", 14, 3, 3),
            ("3g.40gb", 9, 2, 2),
            ("4g.40gb", 5, 1, 1),
            ("7g.80gb", 0, 1, 1),
        ]
    );
    let first = &profiles[0];
    assert_eq!(first.gpu, 0);
    assert_eq!(first.memory_gib, 9.75);
    assert_eq!(first.memory_mib, 9984);
    assert!(!first.p2p);
    assert_eq!(
        (
            first.sm, first.dec, first.enc, first.ce, first.jpeg, first.ofa
        ),
        (16, 1, 0, Some(1), Some(1), Some(0))
    );
    let full = &profiles[6];
    assert_eq!(full.memory_mib, 81152);
    assert_eq!(
        (full.sm, full.dec, full.enc, full.ce, full.jpeg, full.ofa),
        (132, 7, 0, Some(8), Some(7), Some(1))
    );

    // pynvml's GPU instance profiles (NVML id, slices, memory MiB, instances) match the table:
    // every one has a profile with the same slice count, instance count and memory (within the
    // table's two-decimal GiB rounding).
    let text = fixture("pynvml.txt");
    let nvml_profiles: Vec<Vec<u64>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("gi-profile "))
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(nvml_profiles.len(), profiles.len());
    for p in &nvml_profiles {
        let (slices, memory, count) = (p[1], p[2], p[3]);
        assert!(
            profiles
                .iter()
                .any(|q| q.name.starts_with(&format!("{slices}g."))
                    && u64::from(q.instances_total) == count
                    && q.memory_mib.abs_diff(memory) <= 8),
            "no table profile for pynvml gi-profile {p:?}"
        );
    }
}

#[test]
fn discovery_from_captured_xml_and_topology() {
    let opts = DiscoverOptions {
        nvidia_smi_xml: Some(fixture_path("nvidia-smi-q.xml")),
        nvidia_smi_topo: Some(fixture_path("topo.txt")),
        ..DiscoverOptions::default()
    };
    let mut d = discover(&opts).unwrap();
    assert_eq!(d.backend(), BackendKind::NvidiaSmiXml);
    assert_eq!(d.driver_version(), Some("580.159.04"));
    assert_eq!(d.devices().len(), 1);
    assert_eq!(d.nvlink_groups(), vec![vec![0]]);
    assert!(d.note().starts_with("read 1 GPU from nvidia-smi XML "));
    let snapshots = d.poll(0.0, &[]);
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0].device.uuid, UUID);
    assert_eq!(snapshots[0].health, GpuHealth::Ok);
    assert!(d.warnings().is_empty());
}

#[test]
fn missing_capture_names_the_path() {
    let opts = DiscoverOptions {
        nvidia_smi_xml: Some("/nonexistent/nvidia-smi-q.xml".into()),
        ..DiscoverOptions::default()
    };
    let e = discover(&opts).unwrap_err();
    assert!(matches!(e, GpuError::Io { .. }));
    assert!(
        e.to_string()
            .starts_with("cannot read /nonexistent/nvidia-smi-q.xml: "),
        "{e}"
    );
}

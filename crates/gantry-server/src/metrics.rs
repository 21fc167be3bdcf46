//! Prometheus metrics of the standalone server, in the text exposition format at `/metrics`.
//!
//! Per-GPU series carry `gpu` (the index, as DCGM's `gpu` label), `uuid` and `model`; per-workload GPU
//! series add `workload`, `queue`, `owner` and `kind` of the workload holding the GPU (one series per
//! workload on a shared GPU, each with the GPU's whole reading). The per-workload families are cleared
//! and filled again on every poll, so a finished workload's series disappear.

use crate::costs::fraction_of;
use gantry_core::spec::WorkloadKind;
use gantry_cost::{Catalogue, GpuFraction, Pool};
use gantry_gpu::{GpuHealth, GpuSnapshot, model_key};
use gantry_store::Workload;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// Label pairs of a metric sample.
pub type Labels = Vec<(String, String)>;

/// A gauge family holding floating-point values.
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;
/// A counter family holding floating-point values.
type FloatCounters = Family<Labels, Counter<f64, AtomicU64>>;

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// GPUs on this machine.
    pub gpu_total: Gauge,
    /// Healthy GPUs with nothing allocated.
    pub gpu_available: Gauge,
    /// Utilisation per GPU, percent.
    pub gpu_utilization: Family<Labels, Gauge<f64, AtomicU64>>,
    /// GPU memory used per GPU, bytes.
    pub gpu_memory_used_bytes: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Temperature per GPU, degrees Celsius.
    pub gpu_temperature_celsius: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Power draw per GPU, watts.
    pub gpu_power_watts: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Workloads by state and queue.
    pub workloads: Family<Labels, Gauge>,
    /// Time of one scheduling cycle.
    pub scheduling_duration_seconds: Histogram,
    /// Time from submission to start.
    pub queue_wait_seconds: Histogram,
    /// Accepted submissions.
    pub submissions: Counter,
    /// Running workloads stopped and requeued for higher-priority work.
    pub preemptions: Counter,
    /// Health per GPU: 0 ok, 1 degraded (usable, alert), 2 failed (no new work).
    pub gpu_health: Family<Labels, Gauge>,
    /// Critical XID errors per GPU and XID code, seen since the server started.
    pub gpu_xid_errors: Family<Labels, Gauge>,
    /// Uncorrectable ECC errors per GPU since the driver loaded.
    pub gpu_ecc_uncorrected_errors: Family<Labels, Gauge>,
    /// Fraction of each GPU allocated to running workloads (0 to 1).
    pub gpu_allocated: FloatGauges,
    /// Fraction of a GPU a workload holds, per workload and GPU.
    pub workload_gpu_allocated: FloatGauges,
    /// Utilisation of the GPU a workload holds, percent.
    pub workload_gpu_utilization: FloatGauges,
    /// GPU memory used on the GPU a workload holds, bytes.
    pub workload_gpu_memory_used_bytes: FloatGauges,
    /// Power draw of the GPU a workload holds, watts.
    pub workload_gpu_power_watts: FloatGauges,
    /// Cost of the GPUs running workloads held, by queue, owner and currency (exposed as `_total`).
    pub cost: FloatCounters,
    /// GPU-seconds held on models the price catalogue does not know, by queue, owner and model.
    pub unpriced_gpu_seconds: FloatCounters,
    /// Spend this month over the monthly budget, per queue (set by the budgets module).
    pub budget_used_ratio: FloatGauges,
    /// Seconds of the previous cost poll, so each poll charges only its own interval.
    cost_clock: Mutex<Option<f64>>,
}

/// One GPU (or a share or MIG slice of it) a running workload holds, with who holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Holding {
    /// Workload id (`wl-<n>`).
    pub workload: String,
    /// Queue it is charged to.
    pub queue: String,
    /// Who submitted it.
    pub owner: String,
    /// The spec's kind (`training`, `inference`, ...).
    pub kind: &'static str,
    /// GPU index on this machine.
    pub gpu_index: u32,
    /// GPU UUID, when the assignment recorded it.
    pub gpu_uuid: Option<String>,
    /// The part of the GPU it holds.
    pub fraction: GpuFraction,
}

/// The name a workload kind has in specs (`asset-generation`).
pub fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Training => "training",
        WorkloadKind::Inference => "inference",
        WorkloadKind::AssetGeneration => "asset-generation",
        WorkloadKind::Batch => "batch",
        WorkloadKind::Interactive => "interactive",
    }
}

/// Every GPU the given (running) workloads hold, one entry per assigned GPU of each replica.
pub fn holdings_of(running: &[Workload]) -> Vec<Holding> {
    running
        .iter()
        .flat_map(|w| {
            w.assignment
                .iter()
                .flat_map(|a| a.replicas.iter().flat_map(|r| r.gpus.iter()))
                .map(move |g| Holding {
                    workload: w.id.to_string(),
                    queue: w.queue.clone(),
                    owner: w.owner.clone(),
                    kind: kind_name(w.spec.kind),
                    gpu_index: g.index,
                    gpu_uuid: g.uuid.clone(),
                    fraction: fraction_of(g),
                })
        })
        .collect()
}

/// The snapshot of the GPU a holding names: by UUID when it has one, else by index.
fn snapshot_of<'a>(h: &Holding, snapshots: &'a [GpuSnapshot]) -> Option<&'a GpuSnapshot> {
    match &h.gpu_uuid {
        Some(uuid) => snapshots.iter().find(|s| &s.device.uuid == uuid),
        None => snapshots.iter().find(|s| s.device.index == h.gpu_index),
    }
}

/// 0 ok, 1 degraded, 2 failed.
fn health_value(h: &GpuHealth) -> i64 {
    match h {
        GpuHealth::Ok => 0,
        GpuHealth::Degraded { .. } => 1,
        GpuHealth::Failed { .. } => 2,
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            gpu_total: Gauge::default(),
            gpu_available: Gauge::default(),
            gpu_utilization: Family::default(),
            gpu_memory_used_bytes: Family::default(),
            gpu_temperature_celsius: Family::default(),
            gpu_power_watts: Family::default(),
            workloads: Family::default(),
            scheduling_duration_seconds: Histogram::new(exponential_buckets(1e-5, 4.0, 10)),
            queue_wait_seconds: Histogram::new(exponential_buckets(0.01, 4.0, 12)),
            submissions: Counter::default(),
            preemptions: Counter::default(),
            gpu_health: Family::default(),
            gpu_xid_errors: Family::default(),
            gpu_ecc_uncorrected_errors: Family::default(),
            gpu_allocated: Family::default(),
            workload_gpu_allocated: Family::default(),
            workload_gpu_utilization: Family::default(),
            workload_gpu_memory_used_bytes: Family::default(),
            workload_gpu_power_watts: Family::default(),
            cost: Family::default(),
            unpriced_gpu_seconds: Family::default(),
            budget_used_ratio: Family::default(),
            cost_clock: Mutex::new(None),
            registry: Registry::default(),
        };
        registry.register(
            "gantry_gpu_total",
            "GPUs on this machine",
            m.gpu_total.clone(),
        );
        registry.register(
            "gantry_gpu_available",
            "Healthy GPUs with nothing allocated",
            m.gpu_available.clone(),
        );
        registry.register(
            "gantry_gpu_utilization",
            "GPU utilisation, percent",
            m.gpu_utilization.clone(),
        );
        registry.register(
            "gantry_gpu_memory_used_bytes",
            "GPU memory in use, bytes",
            m.gpu_memory_used_bytes.clone(),
        );
        registry.register(
            "gantry_gpu_temperature_celsius",
            "GPU temperature, degrees Celsius",
            m.gpu_temperature_celsius.clone(),
        );
        registry.register(
            "gantry_gpu_power_watts",
            "GPU power draw, watts",
            m.gpu_power_watts.clone(),
        );
        registry.register(
            "gantry_workloads",
            "Workloads by state and queue",
            m.workloads.clone(),
        );
        registry.register(
            "gantry_scheduling_duration_seconds",
            "Duration of one scheduling cycle",
            m.scheduling_duration_seconds.clone(),
        );
        registry.register(
            "gantry_queue_wait_seconds",
            "Time from submission to start",
            m.queue_wait_seconds.clone(),
        );
        registry.register(
            "gantry_submissions",
            "Accepted workload submissions",
            m.submissions.clone(),
        );
        registry.register(
            "gantry_preemptions",
            "Running workloads stopped and requeued for higher-priority work",
            m.preemptions.clone(),
        );
        registry.register(
            "gantry_gpu_health",
            "GPU health: 0 ok, 1 degraded (usable, alert), 2 failed (no new work)",
            m.gpu_health.clone(),
        );
        registry.register(
            "gantry_gpu_xid_errors",
            "Critical XID errors per GPU and XID code since the server started",
            m.gpu_xid_errors.clone(),
        );
        registry.register(
            "gantry_gpu_ecc_uncorrected_errors",
            "Uncorrectable ECC errors per GPU since the driver loaded",
            m.gpu_ecc_uncorrected_errors.clone(),
        );
        registry.register(
            "gantry_gpu_allocated",
            "Fraction of the GPU allocated to running workloads, 0 to 1",
            m.gpu_allocated.clone(),
        );
        registry.register(
            "gantry_workload_gpu_allocated",
            "Fraction of the GPU the workload holds, 0 to 1",
            m.workload_gpu_allocated.clone(),
        );
        registry.register(
            "gantry_workload_gpu_utilization",
            "Utilisation of the GPU the workload holds, percent (a shared GPU's whole reading)",
            m.workload_gpu_utilization.clone(),
        );
        registry.register(
            "gantry_workload_gpu_memory_used_bytes",
            "GPU memory in use on the GPU the workload holds, bytes (a shared GPU's whole reading)",
            m.workload_gpu_memory_used_bytes.clone(),
        );
        registry.register(
            "gantry_workload_gpu_power_watts",
            "Power draw of the GPU the workload holds, watts (a shared GPU's whole reading)",
            m.workload_gpu_power_watts.clone(),
        );
        registry.register(
            "gantry_cost",
            "Cost of the GPUs running workloads held: fraction x on-demand price per hour x time",
            m.cost.clone(),
        );
        registry.register(
            "gantry_unpriced_gpu_seconds",
            "GPU-seconds held on GPU models the price catalogue has no price for",
            m.unpriced_gpu_seconds.clone(),
        );
        registry.register(
            "gantry_budget_used_ratio",
            "Spend this month over the queue's monthly budget (1 = budget reached)",
            m.budget_used_ratio.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Sets a queue's `gantry_budget_used_ratio` (spend this month / monthly budget).
    pub fn set_budget_used_ratio(&self, queue: &str, ratio: f64) {
        self.budget_used_ratio
            .get_or_create(&vec![("queue".into(), queue.into())])
            .set(ratio);
    }

    /// One poll at `t` seconds (any monotonic origin): GPU health and allocation, the per-workload GPU
    /// series (cleared and filled again), and the cost of what each holding held since the previous
    /// poll (none on the first), at the on-demand price of its GPU's model.
    pub fn observe_holdings(
        &self,
        holdings: &[Holding],
        snapshots: &[GpuSnapshot],
        prices: &Catalogue,
        t: f64,
    ) {
        let dt = {
            let mut last = self.cost_clock.lock().unwrap_or_else(|e| e.into_inner());
            let dt = last.map_or(0.0, |prev| (t - prev).max(0.0));
            *last = Some(t);
            dt
        };
        self.gpu_allocated.clear();
        self.workload_gpu_allocated.clear();
        self.workload_gpu_utilization.clear();
        self.workload_gpu_memory_used_bytes.clear();
        self.workload_gpu_power_watts.clear();
        self.gpu_xid_errors.clear();
        for s in snapshots {
            let labels = gpu_labels(s.device.index, &s.device.uuid, &model_key(&s.device));
            self.gpu_health
                .get_or_create(&labels)
                .set(health_value(&s.health));
            let mut allocated = 0.0;
            for h in holdings {
                if snapshot_of(h, snapshots).is_some_and(|o| o.device.uuid == s.device.uuid) {
                    allocated += h.fraction.as_f64();
                }
            }
            self.gpu_allocated
                .get_or_create(&labels)
                .set(allocated.min(1.0));
            for x in &s.telemetry.xid_events {
                let mut l = labels.clone();
                l.push(("xid".into(), x.xid.to_string()));
                self.gpu_xid_errors
                    .get_or_create(&l)
                    .set(i64::try_from(x.count).unwrap_or(i64::MAX));
            }
            if let Some(n) = s.telemetry.ecc.volatile_uncorrected {
                self.gpu_ecc_uncorrected_errors
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let currency = prices.currency().to_string();
        for h in holdings {
            let snapshot = snapshot_of(h, snapshots);
            let model = snapshot.map_or_else(|| "unknown".to_string(), |s| model_key(&s.device));
            let uuid = snapshot.map_or_else(
                || h.gpu_uuid.clone().unwrap_or_default(),
                |s| s.device.uuid.clone(),
            );
            let mut labels = gpu_labels(h.gpu_index, &uuid, &model);
            labels.extend([
                ("workload".into(), h.workload.clone()),
                ("queue".into(), h.queue.clone()),
                ("owner".into(), h.owner.clone()),
                ("kind".into(), h.kind.to_string()),
            ]);
            self.workload_gpu_allocated
                .get_or_create(&labels)
                .inc_by(h.fraction.as_f64());
            if let Some(s) = snapshot {
                if let Some(u) = s.telemetry.utilization_gpu_pct {
                    self.workload_gpu_utilization
                        .get_or_create(&labels)
                        .set(f64::from(u));
                }
                if let Some(mem) = s.telemetry.memory_used_mib {
                    self.workload_gpu_memory_used_bytes
                        .get_or_create(&labels)
                        .set(mem as f64 * 1024.0 * 1024.0);
                }
                if let Some(w) = s.telemetry.power_draw_w {
                    self.workload_gpu_power_watts.get_or_create(&labels).set(w);
                }
            }
            let gpu_seconds = h.fraction.as_f64() * dt;
            match prices.price(&model, Pool::OnDemand) {
                Ok(price) => {
                    let per_hour =
                        price.micros_per_gpu_hour as f64 / gantry_cost::prices::MICROS as f64;
                    self.cost
                        .get_or_create(&vec![
                            ("queue".into(), h.queue.clone()),
                            ("owner".into(), h.owner.clone()),
                            ("currency".into(), currency.clone()),
                        ])
                        .inc_by(per_hour * gpu_seconds / 3600.0);
                }
                Err(_) => {
                    self.unpriced_gpu_seconds
                        .get_or_create(&vec![
                            ("queue".into(), h.queue.clone()),
                            ("owner".into(), h.owner.clone()),
                            ("model".into(), model.clone()),
                        ])
                        .inc_by(gpu_seconds);
                }
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Labels for a per-GPU sample.
pub fn gpu_labels(index: u32, uuid: &str, model: &str) -> Labels {
    vec![
        ("gpu".into(), index.to_string()),
        ("uuid".into(), uuid.into()),
        ("model".into(), model.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_required_metric() {
        let m = Metrics::new();
        m.gpu_total.set(2);
        m.gpu_utilization
            .get_or_create(&gpu_labels(0, "GPU-x", "H100"))
            .set(37.5);
        m.workloads
            .get_or_create(&vec![
                ("state".into(), "running".into()),
                ("queue".into(), "default".into()),
            ])
            .set(3);
        m.scheduling_duration_seconds.observe(0.0002);
        let text = m.render();
        for name in [
            "gantry_gpu_total 2",
            "gantry_gpu_available",
            "gantry_gpu_utilization{gpu=\"0\",uuid=\"GPU-x\",model=\"H100\"} 37.5",
            "gantry_workloads{state=\"running\",queue=\"default\"} 3",
            "gantry_scheduling_duration_seconds_bucket",
            "gantry_queue_wait_seconds_count",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    fn snapshot(index: u32, util: u32, health: GpuHealth) -> GpuSnapshot {
        GpuSnapshot {
            device: gantry_gpu::GpuDevice {
                index,
                uuid: format!("GPU-{index}"),
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_total_mib: 81_559,
                mig: Default::default(),
                mig_devices: Vec::new(),
                pci_bus_id: format!("00000000:0{index}:00.0"),
                nvlink_peers: Vec::new(),
                compute_capability: None,
            },
            telemetry: gantry_gpu::GpuTelemetry {
                utilization_gpu_pct: Some(util),
                memory_used_mib: Some(1024),
                power_draw_w: Some(350.0),
                xid_events: vec![gantry_gpu::XidEvent { xid: 79, count: 2 }],
                ..Default::default()
            },
            health,
        }
    }

    fn running(
        id: i64,
        queue: &str,
        owner: &str,
        kind: WorkloadKind,
        gpus: &[(u32, Option<u32>)],
    ) -> Workload {
        let mut spec = gantry_core::spec::WorkloadSpec::named(&format!("w{id}"));
        spec.kind = kind;
        Workload {
            id: gantry_store::WorkloadId::from_raw(id).unwrap(),
            name: format!("w{id}"),
            owner: owner.into(),
            queue: queue.into(),
            priority: 0,
            state: gantry_store::WorkloadState::Running,
            spec,
            assignment: Some(gantry_store::Assignment {
                replicas: vec![gantry_store::ReplicaAssignment {
                    node: "box".into(),
                    gpus: gpus
                        .iter()
                        .map(|&(index, milli)| gantry_store::AssignedGpu {
                            index,
                            uuid: Some(format!("GPU-{index}")),
                            milli,
                            mig: None,
                        })
                        .collect(),
                }],
            }),
            attempts: 1,
            exit_code: None,
            reason: None,
            submitted_at: 0,
            started_at: Some(0),
            finished_at: None,
            updated_at: 0,
            idempotency_key: None,
        }
    }

    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn workload_series_join_the_gpu_reading_to_its_holder_and_vanish_when_it_finishes() {
        let m = Metrics::new();
        let prices = Catalogue::default();
        let snaps = vec![
            snapshot(0, 80, GpuHealth::Ok),
            snapshot(1, 10, GpuHealth::Ok),
        ];
        let train = running(1, "research", "alice", WorkloadKind::Training, &[(0, None)]);
        let infer = running(2, "prod", "bob", WorkloadKind::Inference, &[(1, Some(250))]);
        let holdings = holdings_of(&[train.clone(), infer]);
        m.observe_holdings(&holdings, &snaps, &prices, 0.0);
        let text = m.render();
        let train_labels = "{gpu=\"0\",uuid=\"GPU-0\",model=\"H100-80GB\",workload=\"wl-1\",queue=\"research\",owner=\"alice\",kind=\"training\"}";
        assert_eq!(
            value(
                &text,
                &format!("gantry_workload_gpu_utilization{train_labels}")
            ),
            Some(80.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                &format!("gantry_workload_gpu_memory_used_bytes{train_labels}")
            ),
            Some(1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(
            value(
                &text,
                &format!("gantry_workload_gpu_power_watts{train_labels}")
            ),
            Some(350.0)
        );
        assert_eq!(
            value(
                &text,
                "gantry_workload_gpu_allocated{gpu=\"1\",uuid=\"GPU-1\",model=\"H100-80GB\",workload=\"wl-2\",queue=\"prod\",owner=\"bob\",kind=\"inference\"}"
            ),
            Some(0.25)
        );
        assert_eq!(value(&text, "gantry_gpu_allocated{gpu=\"1\""), Some(0.25));
        assert_eq!(
            value(
                &text,
                "gantry_gpu_xid_errors{gpu=\"0\",uuid=\"GPU-0\",model=\"H100-80GB\",xid=\"79\"}"
            ),
            Some(2.0)
        );
        // wl-2 finishes: its series go; wl-1's stay.
        m.observe_holdings(&holdings_of(&[train]), &snaps, &prices, 2.0);
        let text = m.render();
        assert!(!text.contains("workload=\"wl-2\""), "{text}");
        assert!(text.contains("workload=\"wl-1\""));
        assert_eq!(value(&text, "gantry_gpu_allocated{gpu=\"1\""), Some(0.0));
    }

    #[test]
    fn cost_counter_adds_fraction_times_price_times_interval() {
        let m = Metrics::new();
        // H100-80GB at 7.20 an hour (the shipped default overridden, so the figure is hand-checkable).
        let prices = Catalogue::with_overrides(
            "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 7.20, date: 2026-01-01, source: test}\n",
        )
        .unwrap();
        let snaps = vec![
            snapshot(0, 50, GpuHealth::Ok),
            snapshot(
                1,
                50,
                GpuHealth::Failed {
                    reason: "xid 79".into(),
                },
            ),
        ];
        let w = running(
            1,
            "research",
            "alice",
            WorkloadKind::Batch,
            &[(0, None), (1, Some(500))],
        );
        let holdings = holdings_of(&[w]);
        let cost = || {
            m.cost
                .get_or_create(&vec![
                    ("queue".into(), "research".into()),
                    ("owner".into(), "alice".into()),
                    ("currency".into(), "USD".into()),
                ])
                .get()
        };
        m.observe_holdings(&holdings, &snaps, &prices, 100.0);
        assert_eq!(cost(), 0.0, "the first poll has no interval to charge");
        // 10 s later: (1 + 0.5) GPU x 7.20/h x 10 s / 3600 s/h = 0.03.
        m.observe_holdings(&holdings, &snaps, &prices, 110.0);
        assert!((cost() - 0.03).abs() < 1e-12, "{}", cost());
        // A further 60 s: + 1.5 x 7.20 x 60 / 3600 = 0.18, total 0.21; monotone.
        m.observe_holdings(&holdings, &snaps, &prices, 170.0);
        assert!((cost() - 0.21).abs() < 1e-12, "{}", cost());
        let text = m.render();
        assert!(
            text.contains(
                "gantry_cost_total{queue=\"research\",owner=\"alice\",currency=\"USD\"} 0.21"
            ),
            "{text}"
        );
        assert_eq!(value(&text, "gantry_gpu_health{gpu=\"1\""), Some(2.0));
        assert_eq!(value(&text, "gantry_gpu_health{gpu=\"0\""), Some(0.0));
    }

    #[test]
    fn gpu_time_on_an_unpriced_model_is_counted_not_priced_at_zero() {
        let m = Metrics::new();
        let mut snap = snapshot(0, 50, GpuHealth::Ok);
        snap.device.name = "Mystery Accelerator".into();
        let holdings = holdings_of(&[running(1, "q", "carol", WorkloadKind::Batch, &[(0, None)])]);
        m.observe_holdings(
            &holdings,
            std::slice::from_ref(&snap),
            &Catalogue::default(),
            0.0,
        );
        m.observe_holdings(&holdings, &[snap], &Catalogue::default(), 30.0);
        let text = m.render();
        assert_eq!(
            value(
                &text,
                "gantry_unpriced_gpu_seconds_total{queue=\"q\",owner=\"carol\",model=\"Mystery Accelerator\"}"
            ),
            Some(30.0),
            "{text}"
        );
        assert!(!text.contains("gantry_cost_total{"), "{text}");
    }

    #[test]
    fn budget_ratio_is_registered_and_settable() {
        let m = Metrics::new();
        m.set_budget_used_ratio("research", 0.8);
        assert!(
            m.render()
                .contains("gantry_budget_used_ratio{queue=\"research\"} 0.8")
        );
    }
}

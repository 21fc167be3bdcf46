//! Prometheus metrics of the standalone server, in the text exposition format at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Label pairs of a metric sample.
pub type Labels = Vec<(String, String)>;

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
        Metrics { registry, ..m }
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
}

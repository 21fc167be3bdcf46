//! Health from telemetry: ECC, XID and temperature rules.
//!
//! | signal | result |
//! |---|---|
//! | the GPU is lost (fell off the bus, stopped answering) | `Failed` |
//! | XID 48, 64, 79, 95, 119, 120 | `Failed` (the GPU needs a reset or replacement) |
//! | XID 63, 74, 92, 94 | `Degraded` |
//! | other XIDs (13, 31, 43, 45, ...: usually the application's fault) | no effect |
//! | volatile uncorrectable ECC errors > 0 | `Failed` (since driver load: reset the GPU) |
//! | aggregate uncorrectable ECC errors > 0 (volatile 0) | `Degraded` (lifetime history) |
//! | temperature at or above the slowdown threshold, or thermal slowdown active | `Degraded` |
//! | ECC not supported or off (`None`) | no effect: a GPU without ECC is not unhealthy |
//!
//! The worst finding wins; the reason lists every finding of that severity, separated by `; `.

use crate::types::{GpuHealth, GpuTelemetry};

/// How serious an XID code is for scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XidSeverity {
    /// Usually the application's fault; the GPU is fine.
    Ignore,
    /// The GPU works but something is wrong.
    Degraded,
    /// The GPU needs a reset or replacement before new work.
    Failed,
}

/// Classifies an XID code and names it.
pub fn xid_severity(xid: u64) -> (XidSeverity, &'static str) {
    match xid {
        48 => (XidSeverity::Failed, "double-bit ECC error"),
        63 => (
            XidSeverity::Degraded,
            "ECC page retirement or row remapping recorded",
        ),
        64 => (
            XidSeverity::Failed,
            "ECC page retirement or row remapping failed",
        ),
        74 => (XidSeverity::Degraded, "NVLink error"),
        79 => (XidSeverity::Failed, "GPU has fallen off the bus"),
        92 => (XidSeverity::Degraded, "high single-bit ECC error rate"),
        94 => (XidSeverity::Degraded, "contained ECC error"),
        95 => (XidSeverity::Failed, "uncontained ECC error"),
        119 => (XidSeverity::Failed, "GSP RPC timeout"),
        120 => (XidSeverity::Failed, "GSP error"),
        _ => (XidSeverity::Ignore, "application or informational error"),
    }
}

/// Derives a GPU's health from its telemetry (rules in the module documentation).
pub fn derive_health(t: &GpuTelemetry) -> GpuHealth {
    let mut failed: Vec<String> = Vec::new();
    let mut degraded: Vec<String> = Vec::new();

    if t.gpu_lost {
        failed.push("GPU lost (fell off the bus or stopped answering)".to_string());
    }
    for event in &t.xid_events {
        let (severity, what) = xid_severity(event.xid);
        let text = if event.count > 1 {
            format!("XID {} ({what}) x{}", event.xid, event.count)
        } else {
            format!("XID {} ({what})", event.xid)
        };
        match severity {
            XidSeverity::Failed => failed.push(text),
            XidSeverity::Degraded => degraded.push(text),
            XidSeverity::Ignore => {}
        }
    }
    match (t.ecc.volatile_uncorrected, t.ecc.aggregate_uncorrected) {
        (Some(v), _) if v > 0 => failed.push(format!(
            "{v} uncorrectable ECC error{} since driver load",
            plural(v)
        )),
        (_, Some(a)) if a > 0 => degraded.push(format!(
            "{a} uncorrectable ECC error{} in the GPU's lifetime",
            plural(a)
        )),
        _ => {}
    }
    match (t.temperature_c, t.temperature_slowdown_c) {
        (Some(temp), Some(limit)) if temp >= limit => degraded.push(format!(
            "temperature {temp} C at or above slowdown threshold {limit} C"
        )),
        _ if t.thermal_slowdown_active => degraded.push("thermal slowdown active".to_string()),
        _ => {}
    }

    if !failed.is_empty() {
        GpuHealth::Failed {
            reason: failed.join("; "),
        }
    } else if !degraded.is_empty() {
        GpuHealth::Degraded {
            reason: degraded.join("; "),
        }
    } else {
        GpuHealth::Ok
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EccCounts, XidEvent};

    fn healthy() -> GpuTelemetry {
        GpuTelemetry {
            temperature_c: Some(40),
            temperature_slowdown_c: Some(89),
            ecc: EccCounts {
                volatile_uncorrected: Some(0),
                aggregate_uncorrected: Some(0),
            },
            ..GpuTelemetry::default()
        }
    }

    fn xid(xid: u64) -> XidEvent {
        XidEvent { xid, count: 1 }
    }

    #[test]
    fn clean_gpu_is_ok() {
        assert_eq!(derive_health(&healthy()), GpuHealth::Ok);
    }

    #[test]
    fn no_ecc_support_is_not_unhealthy() {
        let t = GpuTelemetry {
            ecc: EccCounts::default(),
            ..healthy()
        };
        assert_eq!(derive_health(&t), GpuHealth::Ok);
        // Nothing known at all is not unhealthy either.
        assert_eq!(derive_health(&GpuTelemetry::default()), GpuHealth::Ok);
    }

    #[test]
    fn volatile_uncorrectable_ecc_fails() {
        let mut t = healthy();
        t.ecc.volatile_uncorrected = Some(2);
        t.ecc.aggregate_uncorrected = Some(2);
        assert_eq!(
            derive_health(&t),
            GpuHealth::Failed {
                reason: "2 uncorrectable ECC errors since driver load".into()
            }
        );
    }

    #[test]
    fn aggregate_uncorrectable_ecc_degrades() {
        let mut t = healthy();
        t.ecc.aggregate_uncorrected = Some(1);
        assert_eq!(
            derive_health(&t),
            GpuHealth::Degraded {
                reason: "1 uncorrectable ECC error in the GPU's lifetime".into()
            }
        );
    }

    #[test]
    fn serious_xids_fail_or_degrade() {
        for code in [48, 64, 79, 95, 119, 120] {
            let t = GpuTelemetry {
                xid_events: vec![xid(code)],
                ..healthy()
            };
            assert!(derive_health(&t).is_failed(), "XID {code}");
        }
        for code in [63, 74, 92, 94] {
            let t = GpuTelemetry {
                xid_events: vec![xid(code)],
                ..healthy()
            };
            assert!(
                matches!(derive_health(&t), GpuHealth::Degraded { .. }),
                "XID {code}"
            );
        }
        for code in [13, 31, 43, 45] {
            let t = GpuTelemetry {
                xid_events: vec![xid(code)],
                ..healthy()
            };
            assert_eq!(derive_health(&t), GpuHealth::Ok, "XID {code}");
        }
    }

    #[test]
    fn worst_finding_wins_and_reasons_are_listed() {
        let t = GpuTelemetry {
            xid_events: vec![XidEvent { xid: 74, count: 3 }, xid(79), xid(48), xid(13)],
            temperature_c: Some(95),
            ..healthy()
        };
        assert_eq!(
            derive_health(&t),
            GpuHealth::Failed {
                reason: "XID 79 (GPU has fallen off the bus); XID 48 (double-bit ECC error)".into()
            }
        );
        let t = GpuTelemetry {
            xid_events: vec![XidEvent { xid: 74, count: 3 }],
            temperature_c: Some(95),
            ..healthy()
        };
        assert_eq!(
            derive_health(&t),
            GpuHealth::Degraded {
                reason:
                    "XID 74 (NVLink error) x3; temperature 95 C at or above slowdown threshold 89 C"
                        .into()
            }
        );
    }

    #[test]
    fn temperature_rules() {
        let mut t = healthy();
        t.temperature_c = Some(88);
        assert_eq!(derive_health(&t), GpuHealth::Ok);
        t.temperature_c = Some(89);
        assert!(matches!(derive_health(&t), GpuHealth::Degraded { .. }));
        // Throttling reported without a known threshold.
        let t = GpuTelemetry {
            thermal_slowdown_active: true,
            temperature_slowdown_c: None,
            ..healthy()
        };
        assert_eq!(
            derive_health(&t),
            GpuHealth::Degraded {
                reason: "thermal slowdown active".into()
            }
        );
    }

    #[test]
    fn lost_gpu_fails() {
        let t = GpuTelemetry {
            gpu_lost: true,
            ..GpuTelemetry::default()
        };
        assert!(derive_health(&t).is_failed());
    }
}

//! Simulated GPUs: the `--simulate-gpus` grammar, the model catalogue, and deterministic telemetry.
//!
//! Grammar (whitespace around entries is ignored; model names and the `x` are case-insensitive):
//!
//! ```text
//! spec   := entry ( "," entry )*
//! entry  := [ COUNT "x" ] MODEL [ "-" MEMORY "GB" ]
//! COUNT  := decimal integer, at least 1 (default 1)
//! MODEL  := H100 | H200 | A100 | L40S | L4 | A10 | T4 | V100
//! MEMORY := one of the model's sizes (default: the first listed)
//! ```
//!
//! Sizes: H100 80, H200 141, A100 40 or 80, L40S 48, L4 24, A10 24, T4 16, V100 16 or 32. At most 16 GPUs
//! in all. Examples: `2xH100-80GB,4xA100-40GB`, `H100` (one H100 80GB), `8xl4`.
//!
//! Devices are numbered in spec order. GPUs of one entry of an NVLink model (H100, H200, A100, V100) are
//! NVLinked to each other, as on one HGX board. UUIDs and bus ids follow from the seed and the index.
//!
//! Telemetry is a pure function of (seed, `t`, allocations, injected faults): no clock, no global RNG.
//! An allocated GPU runs at about 85-98 % of its allocated share, an idle one at 0-1 %; memory used
//! follows the share; temperature and power follow utilisation between the model's idle and loaded
//! values. Noise is hashed from (seed, GPU, channel, 10-second bucket) and interpolated within a bucket.

use crate::error::GpuError;
use crate::faults::{FaultKind, ScheduledFault};
use crate::types::{
    Allocation, ComputeCapability, EccCounts, GpuDevice, GpuTelemetry, MigMode, NvLinkPeer,
    XidEvent,
};

/// The most GPUs a spec may ask for.
pub const MAX_SIMULATED_GPUS: u32 = 16;

/// A GPU model the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimModel {
    /// Family as written in a spec, e.g. `H100`.
    pub family: &'static str,
    /// Memory size as written in a spec, GB.
    pub memory_gb: u32,
    /// Product name as NVML reports it.
    pub product_name: &'static str,
    /// Total memory, MiB, as nvidia-smi reports it (approximately, for models not measured here).
    pub memory_mib: u64,
    /// Default power limit, W.
    pub power_limit_w: f64,
    /// Idle power draw, W.
    pub idle_power_w: f64,
    /// Idle temperature, C.
    pub idle_temp_c: f64,
    /// Temperature at full load, C.
    pub load_temp_c: f64,
    /// Hardware slowdown threshold, C.
    pub slowdown_c: i32,
    /// CUDA compute capability.
    pub compute_capability: (u32, u32),
    /// NVLink links per GPU (0 = none).
    pub nvlink_links: u32,
}

/// The catalogue, in the order of the grammar; the first size of a family is its default.
///
/// H100 80GB figures (memory, power limit, idle power and temperature, slowdown threshold) are from
/// the real H100 output in `shared/fixtures/nvidia/h100-80gb-hbm3/`; the rest are typical data-sheet
/// and nvidia-smi values.
pub const SIM_MODELS: &[SimModel] = &[
    SimModel {
        family: "H100",
        memory_gb: 80,
        product_name: "NVIDIA H100 80GB HBM3",
        memory_mib: 81559,
        power_limit_w: 700.0,
        idle_power_w: 121.0,
        idle_temp_c: 34.0,
        load_temp_c: 72.0,
        slowdown_c: 89,
        compute_capability: (9, 0),
        nvlink_links: 18,
    },
    SimModel {
        family: "H200",
        memory_gb: 141,
        product_name: "NVIDIA H200",
        memory_mib: 143771,
        power_limit_w: 700.0,
        idle_power_w: 118.0,
        idle_temp_c: 33.0,
        load_temp_c: 73.0,
        slowdown_c: 89,
        compute_capability: (9, 0),
        nvlink_links: 18,
    },
    SimModel {
        family: "A100",
        memory_gb: 40,
        product_name: "NVIDIA A100-SXM4-40GB",
        memory_mib: 40960,
        power_limit_w: 400.0,
        idle_power_w: 55.0,
        idle_temp_c: 31.0,
        load_temp_c: 68.0,
        slowdown_c: 89,
        compute_capability: (8, 0),
        nvlink_links: 12,
    },
    SimModel {
        family: "A100",
        memory_gb: 80,
        product_name: "NVIDIA A100-SXM4-80GB",
        memory_mib: 81920,
        power_limit_w: 400.0,
        idle_power_w: 62.0,
        idle_temp_c: 32.0,
        load_temp_c: 69.0,
        slowdown_c: 89,
        compute_capability: (8, 0),
        nvlink_links: 12,
    },
    SimModel {
        family: "L40S",
        memory_gb: 48,
        product_name: "NVIDIA L40S",
        memory_mib: 46068,
        power_limit_w: 350.0,
        idle_power_w: 35.0,
        idle_temp_c: 30.0,
        load_temp_c: 70.0,
        slowdown_c: 90,
        compute_capability: (8, 9),
        nvlink_links: 0,
    },
    SimModel {
        family: "L4",
        memory_gb: 24,
        product_name: "NVIDIA L4",
        memory_mib: 23034,
        power_limit_w: 72.0,
        idle_power_w: 16.0,
        idle_temp_c: 32.0,
        load_temp_c: 72.0,
        slowdown_c: 92,
        compute_capability: (8, 9),
        nvlink_links: 0,
    },
    SimModel {
        family: "A10",
        memory_gb: 24,
        product_name: "NVIDIA A10",
        memory_mib: 23028,
        power_limit_w: 150.0,
        idle_power_w: 20.0,
        idle_temp_c: 31.0,
        load_temp_c: 71.0,
        slowdown_c: 92,
        compute_capability: (8, 6),
        nvlink_links: 0,
    },
    SimModel {
        family: "T4",
        memory_gb: 16,
        product_name: "Tesla T4",
        memory_mib: 15360,
        power_limit_w: 70.0,
        idle_power_w: 10.0,
        idle_temp_c: 33.0,
        load_temp_c: 70.0,
        slowdown_c: 93,
        compute_capability: (7, 5),
        nvlink_links: 0,
    },
    SimModel {
        family: "V100",
        memory_gb: 16,
        product_name: "Tesla V100-SXM2-16GB",
        memory_mib: 16160,
        power_limit_w: 300.0,
        idle_power_w: 40.0,
        idle_temp_c: 33.0,
        load_temp_c: 70.0,
        slowdown_c: 87,
        compute_capability: (7, 0),
        nvlink_links: 6,
    },
    SimModel {
        family: "V100",
        memory_gb: 32,
        product_name: "Tesla V100-SXM2-32GB",
        memory_mib: 32510,
        power_limit_w: 300.0,
        idle_power_w: 42.0,
        idle_temp_c: 33.0,
        load_temp_c: 70.0,
        slowdown_c: 87,
        compute_capability: (7, 0),
        nvlink_links: 6,
    },
];

/// One parsed spec entry: a count of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimEntry {
    /// How many GPUs.
    pub count: u32,
    /// Which model.
    pub model: &'static SimModel,
}

/// Parses a `--simulate-gpus` spec (grammar in the module documentation).
pub fn parse_spec(spec: &str) -> Result<Vec<SimEntry>, GpuError> {
    if spec.trim().is_empty() {
        return Err(spec_error(
            spec,
            "empty spec; expected e.g. 2xH100-80GB,4xA100-40GB",
        ));
    }
    let mut entries = Vec::new();
    let mut total: u32 = 0;
    for raw in spec.split(',') {
        let token = raw.trim();
        let entry = parse_entry(token)?;
        total = total.saturating_add(entry.count);
        if total > MAX_SIMULATED_GPUS {
            return Err(spec_error(
                token,
                format!(
                    "brings the total to {total} GPUs; at most {MAX_SIMULATED_GPUS} may be simulated"
                ),
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn spec_error(token: &str, problem: impl Into<String>) -> GpuError {
    GpuError::Spec {
        token: token.to_string(),
        problem: problem.into(),
    }
}

fn parse_entry(token: &str) -> Result<SimEntry, GpuError> {
    if token.is_empty() {
        return Err(spec_error(
            token,
            "empty entry (two commas in a row, or a comma at an end)",
        ));
    }
    let digits = token.bytes().take_while(u8::is_ascii_digit).count();
    let (count, model_part) = if digits == 0 {
        (1, token)
    } else {
        let rest = &token[digits..];
        let Some(model_part) = rest.strip_prefix(['x', 'X']) else {
            return Err(spec_error(
                token,
                "expected COUNTxMODEL after the count, e.g. 2xH100-80GB",
            ));
        };
        let count: u32 = token[..digits]
            .parse()
            .map_err(|_| spec_error(token, format!("count {} is too large", &token[..digits])))?;
        if count == 0 {
            return Err(spec_error(token, "count must be at least 1"));
        }
        (count, model_part)
    };
    let (family, memory) = match model_part.split_once('-') {
        Some((family, memory)) => (family, Some(memory)),
        None => (model_part, None),
    };
    if family.is_empty() {
        return Err(spec_error(token, "missing model name, e.g. 2xH100-80GB"));
    }
    let variants: Vec<&'static SimModel> = SIM_MODELS
        .iter()
        .filter(|m| m.family.eq_ignore_ascii_case(family))
        .collect();
    let Some(default) = variants.first().copied() else {
        return Err(spec_error(
            token,
            format!("unknown model {family:?} (known: {})", known_families()),
        ));
    };
    let model = match memory {
        None => default,
        Some(memory) => {
            let sizes = variants
                .iter()
                .map(|m| format!("{}GB", m.memory_gb))
                .collect::<Vec<_>>()
                .join(", ");
            let upper = memory.to_ascii_uppercase();
            let Some(number) = upper.strip_suffix("GB") else {
                return Err(spec_error(
                    token,
                    format!(
                        "memory {memory:?} must be written as <N>GB (known for {}: {sizes})",
                        default.family
                    ),
                ));
            };
            let found = number
                .parse::<u32>()
                .ok()
                .and_then(|gb| variants.iter().find(|m| m.memory_gb == gb));
            match found {
                Some(m) => *m,
                None => {
                    return Err(spec_error(
                        token,
                        format!(
                            "unknown memory size {memory} for {} (known: {sizes})",
                            default.family
                        ),
                    ));
                }
            }
        }
    };
    Ok(SimEntry { count, model })
}

fn known_families() -> String {
    let mut families: Vec<&str> = Vec::new();
    for m in SIM_MODELS {
        if !families.contains(&m.family) {
            families.push(m.family);
        }
    }
    families.join(", ")
}

/// A fault to inject into a simulated GPU, to exercise health handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// Record an XID error.
    Xid(u64),
    /// Add uncorrectable ECC errors (volatile and aggregate).
    EccUncorrectable(u64),
    /// Run the GPU above its slowdown threshold.
    Overheat,
    /// The GPU falls off the bus.
    Lost,
    /// Remove every injected fault.
    Clear,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Faults {
    xids: Vec<XidEvent>,
    ecc_uncorrectable: u64,
    overheat: bool,
    lost: bool,
    temperature_c: Option<i32>,
}

impl Faults {
    /// Adds one fault (as `inject` does for a [`SimFault`]).
    fn apply(&mut self, fault: SimFault) {
        match fault {
            SimFault::Xid(xid) => match self.xids.iter_mut().find(|e| e.xid == xid) {
                Some(e) => e.count = e.count.saturating_add(1),
                None => self.xids.push(XidEvent { xid, count: 1 }),
            },
            SimFault::EccUncorrectable(n) => {
                self.ecc_uncorrectable = self.ecc_uncorrectable.saturating_add(n)
            }
            SimFault::Overheat => self.overheat = true,
            SimFault::Lost => self.lost = true,
            SimFault::Clear => *self = Faults::default(),
        }
    }
}

/// Simulated GPUs built from a spec and a seed.
#[derive(Debug, Clone)]
pub struct SimulatedBackend {
    seed: u64,
    devices: Vec<GpuDevice>,
    models: Vec<&'static SimModel>,
    faults: Vec<Faults>,
    scheduled: Vec<ScheduledFault>,
}

impl SimulatedBackend {
    /// Parses `spec` and builds its devices; the seed fixes UUIDs and telemetry noise.
    pub fn new(spec: &str, seed: u64) -> Result<Self, GpuError> {
        let entries = parse_spec(spec)?;
        let mut devices = Vec::new();
        let mut models = Vec::new();
        let mut index: u32 = 0;
        for entry in &entries {
            let first = index;
            let group: Vec<u32> = (first..first + entry.count).collect();
            for &i in &group {
                let m = entry.model;
                let nvlink_peers = if m.nvlink_links == 0 {
                    Vec::new()
                } else {
                    group
                        .iter()
                        .filter(|&&j| j != i)
                        .map(|&j| NvLinkPeer {
                            peer_index: Some(j),
                            remote_bus_id: Some(sim_bus_id(j)),
                            active_links: m.nvlink_links,
                        })
                        .collect()
                };
                devices.push(GpuDevice {
                    index: i,
                    uuid: sim_uuid(seed, i),
                    name: m.product_name.to_string(),
                    memory_total_mib: m.memory_mib,
                    mig: MigMode::default(),
                    mig_devices: Vec::new(),
                    pci_bus_id: sim_bus_id(i),
                    nvlink_peers,
                    compute_capability: Some(ComputeCapability {
                        major: m.compute_capability.0,
                        minor: m.compute_capability.1,
                    }),
                });
                models.push(m);
            }
            index += entry.count;
        }
        let faults = vec![Faults::default(); devices.len()];
        Ok(SimulatedBackend {
            seed,
            devices,
            models,
            faults,
            scheduled: Vec::new(),
        })
    }

    /// The simulated devices.
    pub fn devices(&self) -> &[GpuDevice] {
        &self.devices
    }

    /// Applies a fault to GPU `index`.
    pub fn inject(&mut self, index: u32, fault: SimFault) -> Result<(), GpuError> {
        let faults = self
            .faults
            .get_mut(index as usize)
            .ok_or(GpuError::NoSuchGpu(index))?;
        faults.apply(fault);
        Ok(())
    }

    /// Schedules faults (a parsed `--simulate-faults` spec): each applies from its `at_s` on, in
    /// addition to injected ones. Errors if one names a GPU that does not exist.
    pub fn schedule(&mut self, faults: Vec<ScheduledFault>) -> Result<(), GpuError> {
        if let Some(f) = faults
            .iter()
            .find(|f| f.index as usize >= self.devices.len())
        {
            return Err(GpuError::NoSuchGpu(f.index));
        }
        self.scheduled = faults;
        Ok(())
    }

    /// The faults of GPU `index` at time `t`: the injected ones plus the scheduled ones due by `t`.
    fn faults_at(&self, index: u32, injected: &Faults, t: f64) -> Faults {
        let mut faults = injected.clone();
        for f in self
            .scheduled
            .iter()
            .filter(|f| f.index == index && f.at_s <= t)
        {
            match f.kind {
                FaultKind::Xid(xid) => faults.apply(SimFault::Xid(xid)),
                FaultKind::EccUncorrectable(n) => faults.apply(SimFault::EccUncorrectable(n)),
                FaultKind::Temperature(c) => faults.temperature_c = Some(c),
                FaultKind::Lost => faults.apply(SimFault::Lost),
            }
        }
        faults
    }

    /// Telemetry of every device at time `t` (seconds) under `allocations`; pure and deterministic.
    pub fn telemetry(&self, t: f64, allocations: &[Allocation]) -> Vec<GpuTelemetry> {
        let t = if t.is_finite() && t > 0.0 { t } else { 0.0 };
        self.devices
            .iter()
            .zip(&self.models)
            .zip(&self.faults)
            .map(|((device, model), faults)| {
                let share_milli: u64 = allocations
                    .iter()
                    .filter(|a| a.index == device.index)
                    .map(|a| u64::from(a.share_milli))
                    .sum();
                let share = (share_milli.min(1000) as f64) / 1000.0;
                let faults = self.faults_at(device.index, faults, t);
                self.one(device.index, model, &faults, share, t)
            })
            .collect()
    }

    fn one(&self, index: u32, m: &SimModel, faults: &Faults, share: f64, t: f64) -> GpuTelemetry {
        let noise = |channel: u64| value_noise(self.seed, index, channel, t);
        if faults.lost {
            return GpuTelemetry {
                gpu_lost: true,
                xid_events: faults.xids.clone(),
                ..GpuTelemetry::default()
            };
        }
        let util = if share > 0.0 {
            (share * (85.0 + 13.0 * noise(0))).clamp(1.0, 100.0)
        } else {
            noise(0)
        };
        let util_mem = if share > 0.0 {
            share * (35.0 + 45.0 * noise(1))
        } else {
            0.0
        };
        let used_mib = if share > 0.0 {
            ((m.memory_mib as f64) * share * (0.55 + 0.35 * noise(2))).round() as u64
        } else {
            0
        };
        let used_mib = used_mib.min(m.memory_mib);
        let load = util / 100.0;
        let mut temperature =
            m.idle_temp_c + (m.load_temp_c - m.idle_temp_c) * load + 2.0 * noise(3) - 1.0;
        if faults.overheat {
            temperature = f64::from(m.slowdown_c) + 3.0;
        }
        if let Some(c) = faults.temperature_c {
            temperature = f64::from(c);
        }
        let power =
            (m.idle_power_w + (m.power_limit_w * 0.95 - m.idle_power_w) * load + 4.0 * noise(4)
                - 2.0)
                .clamp(0.0, m.power_limit_w);
        let ecc = faults.ecc_uncorrectable;
        GpuTelemetry {
            utilization_gpu_pct: Some(util.round() as u32),
            utilization_memory_pct: Some(util_mem.round() as u32),
            memory_used_mib: Some(used_mib),
            memory_free_mib: Some(m.memory_mib - used_mib),
            temperature_c: Some(temperature.round() as i32),
            temperature_slowdown_c: Some(m.slowdown_c),
            thermal_slowdown_active: faults.overheat
                || faults.temperature_c.is_some_and(|c| c >= m.slowdown_c),
            power_draw_w: Some((power * 100.0).round() / 100.0),
            power_limit_w: Some(m.power_limit_w),
            ecc: EccCounts {
                volatile_uncorrected: Some(ecc),
                aggregate_uncorrected: Some(ecc),
            },
            xid_events: faults.xids.clone(),
            gpu_lost: false,
            processes: Vec::new(),
        }
    }
}

fn sim_bus_id(index: u32) -> String {
    format!("00000000:{:02X}:00.0", 0x10 + index)
}

fn sim_uuid(seed: u64, index: u32) -> String {
    let a = splitmix64(seed ^ 0x5EED_0000_0000_0000 ^ u64::from(index));
    let b = splitmix64(a);
    format!(
        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from (seed, GPU, channel, bucket).
fn hash_unit(seed: u64, index: u32, channel: u64, bucket: u64) -> f64 {
    let h = splitmix64(
        splitmix64(splitmix64(seed ^ u64::from(index).rotate_left(32)) ^ channel) ^ bucket,
    );
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Smooth noise in [0, 1): hashed per 10-second bucket, linearly interpolated inside it.
fn value_noise(seed: u64, index: u32, channel: u64, t: f64) -> f64 {
    const BUCKET_S: f64 = 10.0;
    let x = t / BUCKET_S;
    let k = x.floor();
    let frac = x - k;
    // `as` saturates for huge values, so no overflow.
    let k = k as u64;
    let a = hash_unit(seed, index, channel, k);
    let b = hash_unit(seed, index, channel, k.saturating_add(1));
    a + (b - a) * frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::derive_health;
    use crate::types::GpuHealth;

    fn err(spec: &str) -> String {
        match parse_spec(spec) {
            Ok(v) => panic!("{spec:?} parsed as {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn summary(spec: &str) -> Vec<(u32, &'static str, u32)> {
        parse_spec(spec)
            .unwrap()
            .iter()
            .map(|e| (e.count, e.model.family, e.model.memory_gb))
            .collect()
    }

    #[test]
    fn valid_specs() {
        assert_eq!(
            summary("2xH100-80GB,4xA100-40GB"),
            vec![(2, "H100", 80), (4, "A100", 40)]
        );
        assert_eq!(summary("H100"), vec![(1, "H100", 80)]);
        assert_eq!(summary("a100"), vec![(1, "A100", 40)]);
        assert_eq!(
            summary(" 2XA100-80gb , v100-32GB "),
            vec![(2, "A100", 80), (1, "V100", 32)]
        );
        assert_eq!(summary("V100"), vec![(1, "V100", 16)]);
        assert_eq!(
            summary("H200-141GB,L40S-48GB,L4-24GB,A10-24GB,T4-16GB,V100-16GB"),
            vec![
                (1, "H200", 141),
                (1, "L40S", 48),
                (1, "L4", 24),
                (1, "A10", 24),
                (1, "T4", 16),
                (1, "V100", 16)
            ]
        );
        assert_eq!(summary("16xT4"), vec![(16, "T4", 16)]);
        assert_eq!(summary("8xL4,8xA10"), vec![(8, "L4", 24), (8, "A10", 24)]);
    }

    #[test]
    fn every_invalid_spec_names_token_and_problem() {
        assert_eq!(
            err(""),
            r#"invalid --simulate-gpus entry "": empty spec; expected e.g. 2xH100-80GB,4xA100-40GB"#
        );
        assert_eq!(
            err("2xH100,,T4"),
            r#"invalid --simulate-gpus entry "": empty entry (two commas in a row, or a comma at an end)"#
        );
        assert_eq!(
            err("2xH101"),
            r#"invalid --simulate-gpus entry "2xH101": unknown model "H101" (known: H100, H200, A100, L40S, L4, A10, T4, V100)"#
        );
        assert_eq!(
            err("0xH100"),
            r#"invalid --simulate-gpus entry "0xH100": count must be at least 1"#
        );
        assert_eq!(
            err("2H100"),
            r#"invalid --simulate-gpus entry "2H100": expected COUNTxMODEL after the count, e.g. 2xH100-80GB"#
        );
        assert_eq!(
            err("99999999999xH100"),
            r#"invalid --simulate-gpus entry "99999999999xH100": count 99999999999 is too large"#
        );
        assert_eq!(
            err("2x"),
            r#"invalid --simulate-gpus entry "2x": missing model name, e.g. 2xH100-80GB"#
        );
        assert_eq!(
            err("H100-40GB"),
            r#"invalid --simulate-gpus entry "H100-40GB": unknown memory size 40GB for H100 (known: 80GB)"#
        );
        assert_eq!(
            err("A100-80"),
            r#"invalid --simulate-gpus entry "A100-80": memory "80" must be written as <N>GB (known for A100: 40GB, 80GB)"#
        );
        assert_eq!(
            err("A100-xGB"),
            r#"invalid --simulate-gpus entry "A100-xGB": unknown memory size xGB for A100 (known: 40GB, 80GB)"#
        );
        assert_eq!(
            err("8xH100,9xT4"),
            r#"invalid --simulate-gpus entry "9xT4": brings the total to 17 GPUs; at most 16 may be simulated"#
        );
        assert_eq!(
            err("17xL4"),
            r#"invalid --simulate-gpus entry "17xL4": brings the total to 17 GPUs; at most 16 may be simulated"#
        );
    }

    #[test]
    fn devices_follow_the_spec() {
        let b = SimulatedBackend::new("2xH100-80GB,A100-40GB,T4", 7).unwrap();
        let d = b.devices();
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(d[0].memory_total_mib, 81559);
        assert_eq!(d[2].name, "NVIDIA A100-SXM4-40GB");
        assert_eq!(d[3].name, "Tesla T4");
        assert_eq!(
            d.iter().map(|d| d.index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        // The two H100s are NVLinked; the lone A100 and the T4 have no peers.
        assert_eq!(d[0].nvlink_peers.len(), 1);
        assert_eq!(d[0].nvlink_peers[0].peer_index, Some(1));
        assert_eq!(d[0].nvlink_peers[0].active_links, 18);
        assert!(d[2].nvlink_peers.is_empty() && d[3].nvlink_peers.is_empty());
        assert_eq!(
            crate::types::nvlink_groups(d),
            vec![vec![0, 1], vec![2], vec![3]]
        );
        // UUIDs: well formed, distinct, fixed by the seed.
        for dev in d {
            assert!(
                dev.uuid.starts_with("GPU-") && dev.uuid.len() == 40,
                "{}",
                dev.uuid
            );
        }
        let mut uuids: Vec<_> = d.iter().map(|d| d.uuid.clone()).collect();
        uuids.dedup();
        assert_eq!(uuids.len(), 4);
        let again = SimulatedBackend::new("2xH100-80GB,A100-40GB,T4", 7).unwrap();
        assert_eq!(again.devices(), d);
        let other = SimulatedBackend::new("2xH100-80GB,A100-40GB,T4", 8).unwrap();
        assert_ne!(other.devices()[0].uuid, d[0].uuid);
    }

    #[test]
    fn telemetry_is_deterministic() {
        let b = SimulatedBackend::new("2xH100-80GB,4xA100-40GB", 42).unwrap();
        let alloc = [
            Allocation {
                index: 0,
                share_milli: 1000,
            },
            Allocation {
                index: 3,
                share_milli: 500,
            },
        ];
        for t in [0.0, 1.5, 37.25, 86_400.0, 1e18, -5.0, f64::NAN] {
            assert_eq!(b.telemetry(t, &alloc), b.telemetry(t, &alloc), "t = {t}");
        }
        // A fresh backend with the same spec and seed gives the same readings.
        let c = SimulatedBackend::new("2xH100-80GB,4xA100-40GB", 42).unwrap();
        assert_eq!(b.telemetry(123.0, &alloc), c.telemetry(123.0, &alloc));
        // Another seed gives other noise.
        let d = SimulatedBackend::new("2xH100-80GB,4xA100-40GB", 43).unwrap();
        assert_ne!(b.telemetry(123.0, &alloc), d.telemetry(123.0, &alloc));
    }

    #[test]
    fn load_follows_allocation() {
        let b = SimulatedBackend::new("2xH100-80GB", 1).unwrap();
        let alloc = [Allocation {
            index: 0,
            share_milli: 1000,
        }];
        for step in 0..100 {
            let t = f64::from(step) * 7.3;
            let tel = b.telemetry(t, &alloc);
            let (busy, idle) = (&tel[0], &tel[1]);
            let u = busy.utilization_gpu_pct.unwrap();
            assert!((85..=98).contains(&u), "busy util {u}");
            assert!(idle.utilization_gpu_pct.unwrap() <= 1);
            assert!(busy.memory_used_mib.unwrap() > 40_000);
            assert_eq!(idle.memory_used_mib, Some(0));
            assert_eq!(
                busy.memory_used_mib.unwrap() + busy.memory_free_mib.unwrap(),
                81559
            );
            assert!(busy.temperature_c.unwrap() > idle.temperature_c.unwrap() + 20);
            assert!(busy.power_draw_w.unwrap() > 500.0 && busy.power_draw_w.unwrap() <= 700.0);
            let idle_w = idle.power_draw_w.unwrap();
            assert!((115.0..=130.0).contains(&idle_w), "idle power {idle_w}");
            assert_eq!(derive_health(busy), GpuHealth::Ok);
            assert_eq!(derive_health(idle), GpuHealth::Ok);
        }
        // Half a GPU: about half the load; shares on one GPU add up, capped at a whole GPU.
        let half = b.telemetry(
            50.0,
            &[Allocation {
                index: 1,
                share_milli: 500,
            }],
        );
        let u = half[1].utilization_gpu_pct.unwrap();
        assert!((42..=49).contains(&u), "half util {u}");
        let over = b.telemetry(
            50.0,
            &[
                Allocation {
                    index: 1,
                    share_milli: 700,
                },
                Allocation {
                    index: 1,
                    share_milli: 700,
                },
                // Unknown GPU: ignored.
                Allocation {
                    index: 9,
                    share_milli: 1000,
                },
            ],
        );
        let whole = b.telemetry(
            50.0,
            &[Allocation {
                index: 1,
                share_milli: 1000,
            }],
        );
        assert_eq!(over, whole);
    }

    #[test]
    fn noise_is_continuous_in_time() {
        let b = SimulatedBackend::new("H100", 3).unwrap();
        let alloc = [Allocation {
            index: 0,
            share_milli: 1000,
        }];
        let mut prev = b.telemetry(0.0, &alloc)[0].utilization_gpu_pct.unwrap();
        for step in 1..600 {
            let u = b.telemetry(f64::from(step) * 0.5, &alloc)[0]
                .utilization_gpu_pct
                .unwrap();
            assert!(u.abs_diff(prev) <= 2, "jump {prev} -> {u}");
            prev = u;
        }
    }

    #[test]
    fn scheduled_faults_apply_from_their_time_on() {
        let mut b = SimulatedBackend::new("4xH100-80GB", 5).unwrap();
        let spec = "1:xid=79@5s,2:temp=95@0s,3:ecc=2@10s,0:xid=13@1s,0:lost@60s";
        b.schedule(crate::faults::parse_faults(spec, 4).unwrap())
            .unwrap();
        let health =
            |t: f64| -> Vec<GpuHealth> { b.telemetry(t, &[]).iter().map(derive_health).collect() };
        let at0 = health(0.0);
        assert_eq!(at0[1], GpuHealth::Ok);
        assert_eq!(
            at0[2],
            GpuHealth::Degraded {
                reason: "temperature 95 C at or above slowdown threshold 89 C".into()
            }
        );
        assert!(b.telemetry(0.0, &[])[2].thermal_slowdown_active);
        assert_eq!(at0[3], GpuHealth::Ok);
        assert_eq!(health(4.999)[1], GpuHealth::Ok);
        for t in [5.0, 9.0, 10.0, 3600.0] {
            assert_eq!(
                health(t)[1],
                GpuHealth::Failed {
                    reason: "XID 79 (GPU has fallen off the bus)".into()
                },
                "t = {t}"
            );
            // Applied from the spec, not accumulated per poll: one event however often it is read.
            assert_eq!(
                b.telemetry(t, &[])[1].xid_events,
                vec![XidEvent { xid: 79, count: 1 }]
            );
        }
        assert_eq!(health(9.9)[3], GpuHealth::Ok);
        let tel = b.telemetry(10.0, &[]);
        assert_eq!(tel[3].ecc.volatile_uncorrected, Some(2));
        assert_eq!(
            derive_health(&tel[3]),
            GpuHealth::Failed {
                reason: "2 uncorrectable ECC errors since driver load".into()
            }
        );
        // An application XID shows in telemetry but leaves the GPU healthy; then it is lost.
        assert_eq!(tel[0].xid_events, vec![XidEvent { xid: 13, count: 1 }]);
        assert_eq!(derive_health(&tel[0]), GpuHealth::Ok);
        assert!(b.telemetry(60.0, &[])[0].gpu_lost);
        assert!(health(60.0)[0].is_failed());
        // Deterministic: the same backend and time read the same, a fresh one too.
        let mut c = SimulatedBackend::new("4xH100-80GB", 5).unwrap();
        c.schedule(crate::faults::parse_faults(spec, 4).unwrap())
            .unwrap();
        assert_eq!(b.telemetry(12.5, &[]), c.telemetry(12.5, &[]));
        // Scheduled faults add to injected ones; clearing the injected ones keeps the schedule.
        c.inject(1, SimFault::Xid(79)).unwrap();
        assert_eq!(
            c.telemetry(6.0, &[])[1].xid_events,
            vec![XidEvent { xid: 79, count: 2 }]
        );
        c.inject(1, SimFault::Clear).unwrap();
        assert_eq!(
            c.telemetry(6.0, &[])[1].xid_events,
            vec![XidEvent { xid: 79, count: 1 }]
        );
        assert!(matches!(
            c.schedule(vec![crate::faults::ScheduledFault {
                index: 4,
                kind: crate::faults::FaultKind::Lost,
                at_s: 0.0
            }]),
            Err(GpuError::NoSuchGpu(4))
        ));
    }

    #[test]
    fn injected_faults_show_in_health() {
        let mut b = SimulatedBackend::new("4xA100-80GB", 5).unwrap();
        b.inject(0, SimFault::Xid(79)).unwrap();
        b.inject(1, SimFault::EccUncorrectable(2)).unwrap();
        b.inject(2, SimFault::Overheat).unwrap();
        b.inject(3, SimFault::Lost).unwrap();
        let tel = b.telemetry(10.0, &[]);
        assert_eq!(
            derive_health(&tel[0]),
            GpuHealth::Failed {
                reason: "XID 79 (GPU has fallen off the bus)".into()
            }
        );
        assert!(derive_health(&tel[1]).is_failed());
        assert_eq!(
            derive_health(&tel[2]),
            GpuHealth::Degraded {
                reason: "temperature 92 C at or above slowdown threshold 89 C".into()
            }
        );
        assert!(derive_health(&tel[3]).is_failed());
        b.inject(0, SimFault::Xid(79)).unwrap();
        assert_eq!(
            b.telemetry(10.0, &[])[0].xid_events,
            vec![XidEvent { xid: 79, count: 2 }]
        );
        b.inject(0, SimFault::Clear).unwrap();
        assert_eq!(derive_health(&b.telemetry(10.0, &[])[0]), GpuHealth::Ok);
        assert!(matches!(
            b.inject(4, SimFault::Overheat),
            Err(GpuError::NoSuchGpu(4))
        ));
    }
}

//! Plain data: devices, telemetry, health and snapshots.
//!
//! Every value a backend may not know is an `Option` (`None` = not reported, "N/A" or "Not Supported").

use serde::{Deserialize, Serialize};

/// A physical GPU as discovered: identity and static facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// Index in NVML / nvidia-smi order (PCI bus order); what `CUDA_VISIBLE_DEVICES=0` means by default.
    pub index: u32,
    /// The GPU's UUID, `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub uuid: String,
    /// The product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Total framebuffer memory in MiB.
    pub memory_total_mib: u64,
    /// MIG mode: current and pending (after the next GPU reset).
    pub mig: MigMode,
    /// MIG devices (slices) when MIG is enabled; empty otherwise.
    pub mig_devices: Vec<MigDevice>,
    /// PCI bus id, normalised to `DDDDDDDD:BB:DD.F` upper-case (`00000000:00:06.0`).
    pub pci_bus_id: String,
    /// Where this GPU's active NVLinks lead, one entry per far end.
    pub nvlink_peers: Vec<NvLinkPeer>,
    /// CUDA compute capability, where the backend reports it.
    pub compute_capability: Option<ComputeCapability>,
}

/// MIG mode of a GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigMode {
    /// MIG is enabled now.
    pub enabled: bool,
    /// MIG will be enabled after the next GPU reset.
    pub pending: bool,
}

/// One MIG device (a GPU instance with its compute instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigDevice {
    /// The MIG device's UUID (`MIG-...`), for `CUDA_VISIBLE_DEVICES`; nvidia-smi's XML does not report it.
    pub uuid: Option<String>,
    /// The profile, e.g. `1g.10gb`, where known.
    pub profile: Option<String>,
    /// The slice's memory in MiB, where known.
    pub memory_mib: Option<u64>,
    /// GPU instance id, where known.
    pub gpu_instance_id: Option<u32>,
    /// Compute instance id, where known.
    pub compute_instance_id: Option<u32>,
}

/// The far end of one or more active NVLinks of a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvLinkPeer {
    /// Index of the peer GPU when the links end at another GPU of this machine.
    pub peer_index: Option<u32>,
    /// PCI bus id of the far end (a GPU or an NVSwitch), where the backend reports it.
    pub remote_bus_id: Option<String>,
    /// Number of active links to this far end.
    pub active_links: u32,
}

/// CUDA compute capability, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeCapability {
    /// Major version (9 for Hopper).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

/// Live readings of one GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuTelemetry {
    /// Percent of the sample period a kernel was running.
    pub utilization_gpu_pct: Option<u32>,
    /// Percent of the sample period device memory was read or written.
    pub utilization_memory_pct: Option<u32>,
    /// Framebuffer memory in use, MiB (without the driver's reserve where the backend separates it).
    pub memory_used_mib: Option<u64>,
    /// Framebuffer memory free, MiB.
    pub memory_free_mib: Option<u64>,
    /// GPU die temperature, degrees C.
    pub temperature_c: Option<i32>,
    /// Temperature at which the GPU starts hardware slowdown, degrees C.
    pub temperature_slowdown_c: Option<i32>,
    /// The clocks are being reduced for thermal reasons right now.
    pub thermal_slowdown_active: bool,
    /// Power draw, W.
    pub power_draw_w: Option<f64>,
    /// Enforced power limit, W.
    pub power_limit_w: Option<f64>,
    /// Uncorrectable ECC errors (volatile and aggregate); `None` = no ECC or not supported.
    pub ecc: EccCounts,
    /// Critical XID errors seen since discovery began, one entry per XID code.
    pub xid_events: Vec<XidEvent>,
    /// The GPU has fallen off the bus or stopped answering.
    pub gpu_lost: bool,
    /// Processes using the GPU for compute.
    pub processes: Vec<GpuProcess>,
}

/// Uncorrectable ECC error counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EccCounts {
    /// Since the driver was loaded; `None` where ECC is off or not supported.
    pub volatile_uncorrected: Option<u64>,
    /// Over the GPU's lifetime; `None` where ECC is off or not supported.
    pub aggregate_uncorrected: Option<u64>,
}

/// A critical XID error code and how often it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct XidEvent {
    /// The XID code (see NVIDIA's XID catalogue).
    pub xid: u64,
    /// How many times it was seen.
    pub count: u64,
}

/// A process running on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcess {
    /// Operating-system process id.
    pub pid: u32,
    /// GPU memory it uses, MiB, where reported.
    pub used_memory_mib: Option<u64>,
}

/// Whether a GPU should receive work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GpuHealth {
    /// Nothing wrong is known.
    Ok,
    /// Usable, but something is wrong (prefer other GPUs, alert).
    Degraded {
        /// Why.
        reason: String,
    },
    /// Do not place work here (reset or replace the GPU).
    Failed {
        /// Why.
        reason: String,
    },
}

impl GpuHealth {
    /// True for [`GpuHealth::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, GpuHealth::Ok)
    }

    /// True for [`GpuHealth::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, GpuHealth::Failed { .. })
    }
}

/// One GPU at one poll: what it is, what it reads, and its health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSnapshot {
    /// Identity and static facts.
    pub device: GpuDevice,
    /// The readings.
    pub telemetry: GpuTelemetry,
    /// Health derived from the readings.
    pub health: GpuHealth,
}

/// Work the scheduler has placed on a GPU: the simulated backend turns this into load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// GPU index.
    pub index: u32,
    /// Requested share in milli-GPU (1000 = a whole GPU); several allocations on one GPU add up.
    pub share_milli: u32,
}

/// Normalises a PCI bus id to `DDDDDDDD:BB:DD.F` upper-case; text of another shape is upper-cased only.
pub fn normalize_bus_id(bus_id: &str) -> String {
    let id = bus_id.trim().to_ascii_uppercase();
    let mut parts = id.splitn(2, ':');
    match (parts.next(), parts.next()) {
        // `BB:DD.F` after a domain of 4 (legacy) or 8 hex digits.
        (Some(domain), Some(rest))
            if rest.len() == 7
                && !domain.is_empty()
                && domain.len() <= 8
                && domain.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            format!("{domain:0>8}:{rest}")
        }
        _ => id,
    }
}

/// Groups GPUs that can reach each other over NVLink, directly or through a shared NVSwitch.
///
/// Returns groups of GPU indices, each sorted, ordered by their lowest index; a GPU without NVLink is
/// a group of its own.
pub fn nvlink_groups(devices: &[GpuDevice]) -> Vec<Vec<u32>> {
    let n = devices.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let position = |index: u32| devices.iter().position(|d| d.index == index);
    let gpu_bus_ids: Vec<String> = devices
        .iter()
        .map(|d| normalize_bus_id(&d.pci_bus_id))
        .collect();
    // Far ends that are not GPUs of this machine (NVSwitches), with the first GPU seen attached.
    let mut switches: Vec<(String, usize)> = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        for peer in &d.nvlink_peers {
            let target = match (peer.peer_index.and_then(position), &peer.remote_bus_id) {
                (Some(j), _) => Some(j),
                (None, Some(bus)) => {
                    let bus = normalize_bus_id(bus);
                    if let Some(j) = gpu_bus_ids.iter().position(|b| *b == bus) {
                        Some(j)
                    } else if let Some((_, j)) = switches.iter().find(|(b, _)| *b == bus) {
                        Some(*j)
                    } else {
                        switches.push((bus, i));
                        None
                    }
                }
                (None, None) => None,
            };
            if let Some(j) = target {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let root = find(&mut parent, i);
        match groups.iter_mut().find(|(r, _)| *r == root) {
            Some((_, g)) => g.push(d.index),
            None => groups.push((root, vec![d.index])),
        }
    }
    let mut groups: Vec<Vec<u32>> = groups
        .into_iter()
        .map(|(_, mut g)| {
            g.sort_unstable();
            g
        })
        .collect();
    groups.sort();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(index: u32, bus: &str, peers: Vec<NvLinkPeer>) -> GpuDevice {
        GpuDevice {
            index,
            uuid: format!("GPU-{index}"),
            name: "test".into(),
            memory_total_mib: 1,
            mig: MigMode::default(),
            mig_devices: vec![],
            pci_bus_id: bus.into(),
            nvlink_peers: peers,
            compute_capability: None,
        }
    }

    fn to_bus(bus: &str) -> NvLinkPeer {
        NvLinkPeer {
            peer_index: None,
            remote_bus_id: Some(bus.into()),
            active_links: 4,
        }
    }

    #[test]
    fn bus_ids_are_normalised() {
        assert_eq!(normalize_bus_id("0000:3b:00.0"), "00000000:3B:00.0");
        assert_eq!(normalize_bus_id("00000000:00:06.0"), "00000000:00:06.0");
        assert_eq!(normalize_bus_id(" 0001:c1:00.0 "), "00000001:C1:00.0");
        assert_eq!(normalize_bus_id("weird"), "WEIRD");
    }

    #[test]
    fn groups_through_direct_links_and_switches() {
        let devices = vec![
            // 0 and 1 linked directly, by bus id.
            dev(0, "00000000:01:00.0", vec![to_bus("0000:02:00.0")]),
            dev(1, "00000000:02:00.0", vec![to_bus("00000000:01:00.0")]),
            // 2 and 3 share an NVSwitch.
            dev(2, "00000000:03:00.0", vec![to_bus("00000000:A0:00.0")]),
            dev(3, "00000000:04:00.0", vec![to_bus("00000000:a0:00.0")]),
            // 4 alone.
            dev(4, "00000000:05:00.0", vec![]),
        ];
        assert_eq!(
            nvlink_groups(&devices),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
    }

    #[test]
    fn health_serialises_with_a_state_tag() {
        let h = GpuHealth::Degraded {
            reason: "hot".into(),
        };
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, r#"{"state":"degraded","reason":"hot"}"#);
        assert_eq!(serde_json::from_str::<GpuHealth>(&json).unwrap(), h);
    }
}

//! The NVML backend: `nvml-wrapper`, with `libnvidia-ml.so.1` loaded at run time.
//!
//! A missing library or driver is a clean [`GpuError::NvmlInit`], never a panic. Every reading that a
//! GPU does not support (`NotSupported`, e.g. ECC on a GPU without it) becomes `None`, which the
//! health rules treat as "nothing wrong known". XID errors come from an NVML event set registered for
//! critical XID events at discovery and drained (without waiting) at every poll; a GPU that reports
//! `GpuLost` on any call is marked lost.
//!
//! MIG devices: UUID, memory, and the profile taken from the MIG device's name
//! (`NVIDIA H100 80GB HBM3 MIG 1g.10gb`); nvml-wrapper 0.13 does not expose GPU/compute instance ids.

use std::fmt;
use std::path::Path;

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    EccCounter, MemoryError, TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, EventSet, Nvml};

use crate::error::GpuError;
use crate::types::{
    ComputeCapability, EccCounts, GpuDevice, GpuProcess, GpuTelemetry, MigDevice, MigMode,
    NvLinkPeer, XidEvent, normalize_bus_id,
};

/// NVML's limit on NVLinks per GPU (`NVML_NVLINK_MAX_LINKS`).
const NVLINK_MAX_LINKS: u32 = 18;

/// Most events drained in one poll, so a storm cannot stall polling.
const MAX_EVENTS_PER_POLL: usize = 1024;

/// `NVML_DEVICE_MIG_ENABLE`.
const MIG_ENABLED: u32 = 1;

/// GPUs read through NVML.
pub struct NvmlBackend {
    nvml: &'static Nvml,
    handles: Vec<Device<'static>>,
    devices: Vec<GpuDevice>,
    slowdown_c: Vec<Option<i32>>,
    xids: Vec<Vec<XidEvent>>,
    events: Option<EventSet<'static>>,
    driver_version: Option<String>,
    warnings: Vec<String>,
}

impl fmt::Debug for NvmlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvmlBackend")
            .field("devices", &self.devices)
            .field("driver_version", &self.driver_version)
            .field("xid_events", &self.events.is_some())
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// Turns an NVML initialisation failure into a one-line explanation.
fn init_error(e: NvmlError) -> GpuError {
    GpuError::NvmlInit(match e {
        NvmlError::LibloadingError(e) => format!("no NVIDIA driver found ({e})"),
        NvmlError::LibraryNotFound => "no NVIDIA driver found (NVML library not found)".into(),
        NvmlError::DriverNotLoaded => {
            "NVIDIA driver not loaded (libnvidia-ml is present but the kernel driver is not running)"
                .into()
        }
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".into(),
        other => format!("NVML initialisation failed: {other}"),
    })
}

fn call_error(call: &'static str, e: NvmlError) -> GpuError {
    GpuError::Nvml {
        call,
        message: e.to_string(),
    }
}

impl NvmlBackend {
    /// Loads NVML (from `library`, else `libnvidia-ml.so.1` on the loader path) and reads every GPU.
    ///
    /// The `Nvml` handle is leaked on success so that device handles and the XID event set can live in
    /// this value without borrowing; it is one small allocation per successful call, and discovery is
    /// done once per process.
    pub fn init(library: Option<&Path>) -> Result<Self, GpuError> {
        let nvml = match library {
            Some(path) => Nvml::builder().lib_path(path.as_os_str()).init(),
            None => Nvml::init(),
        }
        .map_err(init_error)?;
        let nvml: &'static Nvml = Box::leak(Box::new(nvml));
        let count = nvml
            .device_count()
            .map_err(|e| call_error("device_count", e))?;
        let mut warnings = Vec::new();
        let mut handles = Vec::new();
        let mut devices = Vec::new();
        let mut slowdown_c = Vec::new();
        for i in 0..count {
            let handle = match nvml.device_by_index(i) {
                Ok(h) => h,
                Err(e) => {
                    warnings.push(format!("GPU {i} skipped: {e}"));
                    continue;
                }
            };
            match read_device(&handle, i) {
                Ok(d) => {
                    devices.push(d);
                    slowdown_c.push(
                        handle
                            .temperature_threshold(TemperatureThreshold::Slowdown)
                            .ok()
                            .and_then(|t| i32::try_from(t).ok()),
                    );
                    handles.push(handle);
                }
                Err(e) => warnings.push(format!("GPU {i} skipped: {e}")),
            }
        }
        resolve_peer_indices(&mut devices);
        let events = match xid_event_set(nvml, &handles) {
            Ok(set) => set,
            Err(e) => {
                warnings.push(format!("XID events unavailable: {e}"));
                None
            }
        };
        let xids = vec![Vec::new(); devices.len()];
        Ok(NvmlBackend {
            nvml,
            handles,
            devices,
            slowdown_c,
            xids,
            events,
            driver_version: nvml.sys_driver_version().ok(),
            warnings,
        })
    }

    /// The GPUs found.
    pub fn devices(&self) -> &[GpuDevice] {
        &self.devices
    }

    /// The driver version, e.g. `580.159.04`.
    pub fn driver_version(&self) -> Option<&str> {
        self.driver_version.as_deref()
    }

    /// Problems met during discovery (skipped GPUs, no XID events).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Reads every GPU's telemetry now, after draining pending XID events.
    pub fn telemetry(&mut self) -> Vec<GpuTelemetry> {
        self.drain_events();
        self.handles
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let mut t = read_telemetry(h);
                t.temperature_slowdown_c = self.slowdown_c.get(i).copied().flatten();
                t.xid_events = self.xids.get(i).cloned().unwrap_or_default();
                t
            })
            .collect()
    }

    fn drain_events(&mut self) {
        let Some(set) = &self.events else { return };
        for _ in 0..MAX_EVENTS_PER_POLL {
            match set.wait(0) {
                Ok(event) => {
                    if !event.event_type.contains(EventTypes::CRITICAL_XID_ERROR) {
                        continue;
                    }
                    let Some(XidError::Value(xid)) = event.event_data else {
                        continue;
                    };
                    let Ok(uuid) = event.device.uuid() else {
                        continue;
                    };
                    if let Some(i) = self.devices.iter().position(|d| d.uuid == uuid) {
                        record_xid(&mut self.xids[i], xid);
                    }
                }
                // Timeout: nothing pending. Anything else: try again at the next poll.
                Err(_) => break,
            }
        }
    }

    /// NVML's version string, e.g. `13.580.159.04`.
    pub fn nvml_version(&self) -> Option<String> {
        self.nvml.sys_nvml_version().ok()
    }
}

fn record_xid(list: &mut Vec<XidEvent>, xid: u64) {
    match list.iter_mut().find(|e| e.xid == xid) {
        Some(e) => e.count = e.count.saturating_add(1),
        None => list.push(XidEvent { xid, count: 1 }),
    }
}

#[cfg(target_os = "linux")]
fn xid_event_set(
    nvml: &'static Nvml,
    handles: &[Device<'static>],
) -> Result<Option<EventSet<'static>>, String> {
    let mut set = nvml.create_event_set().map_err(|e| e.to_string())?;
    let mut registered = 0;
    for h in handles {
        let supported = h
            .supported_event_types()
            .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR));
        if supported {
            set = h
                .register_events(EventTypes::CRITICAL_XID_ERROR, set)
                .map_err(|e| e.to_string())?;
            registered += 1;
        }
    }
    Ok((registered > 0).then_some(set))
}

#[cfg(not(target_os = "linux"))]
fn xid_event_set(
    _nvml: &'static Nvml,
    _handles: &[Device<'static>],
) -> Result<Option<EventSet<'static>>, String> {
    Err("NVML events are only available on Linux".into())
}

/// Bytes to MiB.
pub fn mib(bytes: u64) -> u64 {
    bytes / (1024 * 1024)
}

/// NVML milliwatts to watts.
pub fn watts(milliwatts: u32) -> f64 {
    f64::from(milliwatts) / 1000.0
}

/// NVML's raw MIG mode pair (current, pending) to [`MigMode`].
pub fn mig_mode(current: u32, pending: u32) -> MigMode {
    MigMode {
        enabled: current == MIG_ENABLED,
        pending: pending == MIG_ENABLED,
    }
}

/// The profile at the end of a MIG device's name, e.g. `1g.10gb` from `NVIDIA H100 80GB HBM3 MIG 1g.10gb`.
pub fn mig_profile_from_name(name: &str) -> Option<String> {
    let (_, profile) = name.rsplit_once("MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty()).then(|| profile.to_string())
}

fn read_device(h: &Device<'static>, index: u32) -> Result<GpuDevice, GpuError> {
    let uuid = h.uuid().map_err(|e| call_error("uuid", e))?;
    let name = h.name().map_err(|e| call_error("name", e))?;
    let memory_total_mib = h
        .memory_info()
        .map(|m| mib(m.total))
        .map_err(|e| call_error("memory_info", e))?;
    let pci_bus_id = h
        .pci_info()
        .map(|p| normalize_bus_id(&p.bus_id))
        .map_err(|e| call_error("pci_info", e))?;
    let mig = h
        .mig_mode()
        .map(|m| mig_mode(m.current, m.pending))
        .unwrap_or_default();
    let mut mig_devices = Vec::new();
    if mig.enabled {
        let max = h.mig_device_count().unwrap_or(0);
        for i in 0..max {
            // Empty slots answer NotFound.
            let Ok(m) = h.mig_device_by_index(i) else {
                continue;
            };
            mig_devices.push(MigDevice {
                uuid: m.uuid().ok(),
                profile: m.name().ok().as_deref().and_then(mig_profile_from_name),
                memory_mib: m.memory_info().ok().map(|i| mib(i.total)),
                gpu_instance_id: None,
                compute_instance_id: None,
            });
        }
    }
    let compute_capability = h.cuda_compute_capability().ok().and_then(|c| {
        Some(ComputeCapability {
            major: u32::try_from(c.major).ok()?,
            minor: u32::try_from(c.minor).ok()?,
        })
    });
    Ok(GpuDevice {
        index,
        uuid,
        name,
        memory_total_mib,
        mig,
        mig_devices,
        pci_bus_id,
        nvlink_peers: read_nvlinks(h),
        compute_capability,
    })
}

/// Active links grouped by far end (remote PCI bus id).
fn read_nvlinks(h: &Device<'static>) -> Vec<NvLinkPeer> {
    let mut peers: Vec<NvLinkPeer> = Vec::new();
    for link in 0..NVLINK_MAX_LINKS {
        let l = h.link_wrapper_for(link);
        match l.is_active() {
            Ok(true) => {
                let remote = l
                    .remote_pci_info()
                    .ok()
                    .map(|p| normalize_bus_id(&p.bus_id));
                match peers.iter_mut().find(|p| p.remote_bus_id == remote) {
                    Some(p) => p.active_links += 1,
                    None => peers.push(NvLinkPeer {
                        peer_index: None,
                        remote_bus_id: remote,
                        active_links: 1,
                    }),
                }
            }
            Ok(false) => {}
            // No NVLink on this GPU at all.
            Err(NvmlError::NotSupported) if link == 0 => break,
            Err(_) => {}
        }
    }
    peers
}

/// Sets `peer_index` where a link's far end is another GPU of this machine.
pub(crate) fn resolve_peer_indices(devices: &mut [GpuDevice]) {
    let buses: Vec<(String, u32)> = devices
        .iter()
        .map(|d| (d.pci_bus_id.clone(), d.index))
        .collect();
    for d in devices.iter_mut() {
        for p in &mut d.nvlink_peers {
            if let Some(remote) = &p.remote_bus_id {
                p.peer_index = buses.iter().find(|(b, _)| b == remote).map(|(_, i)| *i);
            }
        }
    }
}

/// A reading, or `None` when it failed; `GpuLost` is remembered in `lost`.
fn reading<T>(r: Result<T, NvmlError>, lost: &mut bool) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(NvmlError::GpuLost) => {
            *lost = true;
            None
        }
        Err(_) => None,
    }
}

fn read_telemetry(h: &Device<'static>) -> GpuTelemetry {
    let mut lost = false;
    let utilization = reading(h.utilization_rates(), &mut lost);
    let memory = reading(h.memory_info(), &mut lost);
    let temperature_c = reading(h.temperature(TemperatureSensor::Gpu), &mut lost)
        .and_then(|t| i32::try_from(t).ok());
    let power_draw_w = reading(h.power_usage(), &mut lost).map(watts);
    let power_limit_w = reading(h.enforced_power_limit(), &mut lost).map(watts);
    let volatile = reading(
        h.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile),
        &mut lost,
    );
    let aggregate = reading(
        h.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate),
        &mut lost,
    );
    let throttle = reading(h.current_throttle_reasons(), &mut lost);
    let processes = reading(h.running_compute_processes(), &mut lost)
        .unwrap_or_default()
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            used_memory_mib: match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(mib(bytes)),
                UsedGpuMemory::Unavailable => None,
            },
        })
        .collect();
    GpuTelemetry {
        utilization_gpu_pct: utilization.as_ref().map(|u| u.gpu),
        utilization_memory_pct: utilization.as_ref().map(|u| u.memory),
        memory_used_mib: memory.as_ref().map(|m| mib(m.used)),
        memory_free_mib: memory.as_ref().map(|m| mib(m.free)),
        temperature_c,
        temperature_slowdown_c: None,
        thermal_slowdown_active: throttle.is_some_and(|t| {
            t.intersects(
                ThrottleReasons::HW_THERMAL_SLOWDOWN | ThrottleReasons::SW_THERMAL_SLOWDOWN,
            )
        }),
        power_draw_w,
        power_limit_w,
        ecc: EccCounts {
            volatile_uncorrected: volatile,
            aggregate_uncorrected: aggregate,
        },
        xid_events: Vec::new(),
        gpu_lost: lost,
        processes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_clean_error() {
        let path = Path::new("/nonexistent/libnvidia-ml.so.1");
        let e = NvmlBackend::init(Some(path)).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, GpuError::NvmlInit(_)), "{e:?}");
        assert!(
            text.starts_with("no NVIDIA driver found (/nonexistent/libnvidia-ml.so.1: "),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn conversions() {
        assert_eq!(mib(85_520_809_984), 81559);
        assert_eq!(watts(700_000), 700.0);
        assert_eq!(mig_mode(0, 0), MigMode::default());
        assert_eq!(
            mig_mode(1, 0),
            MigMode {
                enabled: true,
                pending: false
            }
        );
        assert_eq!(
            mig_profile_from_name("NVIDIA H100 80GB HBM3 MIG 1g.10gb").as_deref(),
            Some("1g.10gb")
        );
        assert_eq!(
            mig_profile_from_name("NVIDIA A100-SXM4-40GB MIG 3g.20gb+me").as_deref(),
            Some("3g.20gb+me")
        );
        assert_eq!(mig_profile_from_name("NVIDIA H100 80GB HBM3"), None);
    }

    #[test]
    fn peer_indices_follow_bus_ids() {
        let mk = |index: u32, bus: &str, remote: &str| GpuDevice {
            index,
            uuid: format!("GPU-{index}"),
            name: "x".into(),
            memory_total_mib: 1,
            mig: MigMode::default(),
            mig_devices: vec![],
            pci_bus_id: bus.into(),
            nvlink_peers: vec![NvLinkPeer {
                peer_index: None,
                remote_bus_id: Some(remote.into()),
                active_links: 2,
            }],
            compute_capability: None,
        };
        let mut devices = vec![
            mk(0, "00000000:01:00.0", "00000000:02:00.0"),
            mk(1, "00000000:02:00.0", "00000000:01:00.0"),
            mk(2, "00000000:03:00.0", "00000000:A0:00.0"),
        ];
        resolve_peer_indices(&mut devices);
        assert_eq!(devices[0].nvlink_peers[0].peer_index, Some(1));
        assert_eq!(devices[1].nvlink_peers[0].peer_index, Some(0));
        assert_eq!(devices[2].nvlink_peers[0].peer_index, None);
    }

    #[test]
    fn xids_are_counted_per_code() {
        let mut list = Vec::new();
        record_xid(&mut list, 79);
        record_xid(&mut list, 13);
        record_xid(&mut list, 79);
        assert_eq!(
            list,
            vec![
                XidEvent { xid: 79, count: 2 },
                XidEvent { xid: 13, count: 1 }
            ]
        );
    }
}

//! Gantry's GPU discovery and telemetry.
//!
//! [`discover`] finds the machine's GPUs through one of three backends and returns a [`Discovery`];
//! [`Discovery::poll`] then reads every GPU's telemetry as a [`GpuSnapshot`]: the [`GpuDevice`]
//! (index, UUID, model, memory, MIG mode and devices, PCI bus, NVLink peers, compute capability),
//! its [`GpuTelemetry`] (utilisation, memory, temperature, power, ECC, XID events, processes) and its
//! [`GpuHealth`] derived by [`health::derive_health`] (ECC, XID and thermal rules).
//!
//! # Backends, in the order `discover` tries them
//!
//! 1. **`simulated`**, when [`DiscoverOptions::simulate`] is set (`--simulate-gpus SPEC`): devices
//!    from the spec, with telemetry that is a pure function of the seed, the time `t` and the
//!    allocations passed to `poll` (no clock, no global RNG). For demos and tests.
//! 2. **`nvidia-smi-xml`**, when [`DiscoverOptions::nvidia_smi_xml`] names a file of captured
//!    `nvidia-smi -q -x` output (re-read at every poll), optionally with `nvidia-smi topo -m`
//!    output for NVLink. For replaying another machine's output and for tests. The [`smi`] module
//!    also parses `--query-gpu` CSV and `mig -lgip` tables.
//! 3. **`nvml`**: NVML through `nvml-wrapper`, `libnvidia-ml.so.1` loaded at run time, so the binary
//!    builds and starts without a driver. XID errors come from an NVML event set.
//! 4. Otherwise **`none`**: zero GPUs and a one-line note such as
//!    `no NVIDIA driver found (libnvidia-ml.so.1: cannot open shared object file: No such file or
//!    directory); continuing with 0 GPUs`.
//!
//! A bad simulation spec or an unreadable XML file is an error (the user asked for it); a missing
//! driver is not.
//!
//! # The `--simulate-gpus` grammar
//!
//! ```text
//! spec   := entry ( "," entry )*
//! entry  := [ COUNT "x" ] MODEL [ "-" MEMORY "GB" ]      e.g. 2xH100-80GB, 4xA100-40GB, H100
//! COUNT  := integer >= 1 (default 1); at most 16 GPUs in all
//! MODEL  := H100 | H200 | A100 | L40S | L4 | A10 | T4 | V100   (case-insensitive)
//! MEMORY := H100 80 | H200 141 | A100 40, 80 | L40S 48 | L4 24 | A10 24 | T4 16 | V100 16, 32
//!           (default: the first size listed)
//! ```
//!
//! Errors name the entry and the problem, e.g.
//! `invalid --simulate-gpus entry "H100-40GB": unknown memory size 40GB for H100 (known: 80GB)`.
//! Details of the simulated telemetry are in [`sim`].
//!
//! # The `--simulate-faults` grammar
//!
//! ```text
//! spec  := entry ( "," entry )*
//! entry := INDEX ":" ( "xid=" CODE | "ecc=" COUNT | "temp=" CELSIUS | "lost" ) [ "@" TIME ]
//! TIME  := seconds after start, unit ms | s | m (default s; default time 0s)
//! ```
//!
//! e.g. `1:xid=79@5s,2:temp=95@0s,3:ecc=2@10s`: the simulated GPU shows the fault in its telemetry
//! from that time on, and [`health::derive_health`] judges it as it judges real data. Details and
//! errors in [`faults`].

#![warn(missing_docs)]

pub mod error;
pub mod faults;
pub mod health;
pub mod model;
pub mod nvml;
pub mod sim;
pub mod smi;
pub mod types;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use error::GpuError;
pub use faults::{FaultKind, ScheduledFault, parse_faults};
pub use health::derive_health;
pub use model::{model_key, model_key_of, sold_gb};
pub use nvml::NvmlBackend;
pub use sim::{SimFault, SimulatedBackend};
pub use smi::SmiXmlBackend;
pub use types::{
    Allocation, ComputeCapability, EccCounts, GpuDevice, GpuHealth, GpuProcess, GpuSnapshot,
    GpuTelemetry, MigDevice, MigMode, NvLinkPeer, XidEvent, nvlink_groups,
};

/// What [`discover`] should use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// A `--simulate-gpus` spec; when set, the simulated backend is used.
    pub simulate: Option<String>,
    /// A `--simulate-faults` spec (see [`faults`]): faults the simulated GPUs get at given times.
    pub simulate_faults: Option<String>,
    /// Seed for simulated UUIDs and telemetry noise.
    pub seed: u64,
    /// A file of captured `nvidia-smi -q -x` output; when set (and `simulate` is not), it is used.
    pub nvidia_smi_xml: Option<PathBuf>,
    /// A file of captured `nvidia-smi topo -m` output, for NVLink peers with `nvidia_smi_xml`.
    pub nvidia_smi_topo: Option<PathBuf>,
    /// Where to load NVML from instead of `libnvidia-ml.so.1` on the loader path.
    pub nvml_library: Option<PathBuf>,
}

/// Which backend a [`Discovery`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// NVML through nvml-wrapper.
    Nvml,
    /// Captured `nvidia-smi -q -x` output.
    NvidiaSmiXml,
    /// Simulated devices.
    Simulated,
    /// No GPUs.
    None,
}

impl BackendKind {
    /// The backend's name: `nvml`, `nvidia-smi-xml`, `simulated` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Nvml => "nvml",
            BackendKind::NvidiaSmiXml => "nvidia-smi-xml",
            BackendKind::Simulated => "simulated",
            BackendKind::None => "none",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
enum Backend {
    Nvml(Box<NvmlBackend>),
    SmiXml(Box<SmiXmlBackend>),
    Simulated(SimulatedBackend),
    None,
}

/// The result of [`discover`]: the devices, the backend that found them, and a one-line note.
#[derive(Debug)]
pub struct Discovery {
    backend: Backend,
    devices: Vec<GpuDevice>,
    note: String,
    warnings: Vec<String>,
    driver_version: Option<String>,
}

/// Finds the GPUs: simulated if a spec is given, else captured nvidia-smi XML if a file is given, else
/// NVML, else zero GPUs with a note saying why.
///
/// Errors only for what the caller asked for explicitly: an invalid spec, an unreadable or invalid
/// XML or topology file. A missing driver gives `Ok` with zero GPUs.
pub fn discover(opts: &DiscoverOptions) -> Result<Discovery, GpuError> {
    if let Some(spec) = &opts.simulate {
        let mut sim = SimulatedBackend::new(spec, opts.seed)?;
        let devices = sim.devices().to_vec();
        let mut note = format!(
            "simulating {} GPU{} from {spec:?} (seed {})",
            devices.len(),
            if devices.len() == 1 { "" } else { "s" },
            opts.seed
        );
        if let Some(faults) = &opts.simulate_faults {
            sim.schedule(parse_faults(faults, devices.len())?)?;
            note.push_str(&format!(" with faults {faults:?}"));
        }
        return Ok(Discovery {
            backend: Backend::Simulated(sim),
            devices,
            note,
            warnings: Vec::new(),
            driver_version: None,
        });
    }
    if let Some(faults) = &opts.simulate_faults {
        return Err(GpuError::FaultSpec {
            token: faults.clone(),
            problem: "faults need simulated GPUs (--simulate-gpus)".into(),
        });
    }
    if let Some(xml) = &opts.nvidia_smi_xml {
        let smi = SmiXmlBackend::open(xml, opts.nvidia_smi_topo.as_deref())?;
        let devices: Vec<GpuDevice> = smi.report().gpus.iter().map(|g| g.device.clone()).collect();
        let note = format!(
            "read {} GPU{} from nvidia-smi XML {}",
            devices.len(),
            if devices.len() == 1 { "" } else { "s" },
            xml.display()
        );
        return Ok(Discovery {
            driver_version: smi.report().driver_version.clone(),
            backend: Backend::SmiXml(Box::new(smi)),
            devices,
            note,
            warnings: Vec::new(),
        });
    }
    match NvmlBackend::init(opts.nvml_library.as_deref()) {
        Ok(nvml) => {
            let devices = nvml.devices().to_vec();
            let driver_version = nvml.driver_version().map(str::to_string);
            let note = format!(
                "NVML: {} GPU{} (driver {})",
                devices.len(),
                if devices.len() == 1 { "" } else { "s" },
                driver_version.as_deref().unwrap_or("unknown")
            );
            Ok(Discovery {
                warnings: nvml.warnings().to_vec(),
                backend: Backend::Nvml(Box::new(nvml)),
                devices,
                note,
                driver_version,
            })
        }
        Err(e) => Ok(Discovery {
            backend: Backend::None,
            devices: Vec::new(),
            note: format!("{e}; continuing with 0 GPUs"),
            warnings: Vec::new(),
            driver_version: None,
        }),
    }
}

impl Discovery {
    /// The GPUs found, by index.
    pub fn devices(&self) -> &[GpuDevice] {
        &self.devices
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        match self.backend {
            Backend::Nvml(_) => BackendKind::Nvml,
            Backend::SmiXml(_) => BackendKind::NvidiaSmiXml,
            Backend::Simulated(_) => BackendKind::Simulated,
            Backend::None => BackendKind::None,
        }
    }

    /// One line saying what discovery did, for the log.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Problems that did not stop discovery (a GPU skipped, XID events unavailable, a failed re-read).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The NVIDIA driver version, where known.
    pub fn driver_version(&self) -> Option<&str> {
        self.driver_version.as_deref()
    }

    /// GPUs reachable from each other over NVLink, as groups of indices (see [`nvlink_groups`]).
    pub fn nvlink_groups(&self) -> Vec<Vec<u32>> {
        nvlink_groups(&self.devices)
    }

    /// Reads every GPU now. `t` (seconds) and `allocations` drive the simulated backend only; the
    /// others read the hardware (or the file) and ignore them.
    pub fn poll(&mut self, t: f64, allocations: &[Allocation]) -> Vec<GpuSnapshot> {
        let telemetry: Vec<GpuTelemetry> = match &mut self.backend {
            Backend::Simulated(sim) => sim.telemetry(t, allocations),
            Backend::Nvml(nvml) => nvml.telemetry(),
            Backend::SmiXml(smi) => {
                smi.refresh();
                if let Some(e) = smi.last_error() {
                    let warning =
                        format!("re-reading nvidia-smi XML failed, keeping the last report: {e}");
                    if !self.warnings.contains(&warning) {
                        self.warnings.push(warning);
                    }
                }
                self.devices = smi.report().gpus.iter().map(|g| g.device.clone()).collect();
                smi.report()
                    .gpus
                    .iter()
                    .map(|g| g.telemetry.clone())
                    .collect()
            }
            Backend::None => Vec::new(),
        };
        self.devices
            .iter()
            .zip(telemetry)
            .map(|(device, telemetry)| GpuSnapshot {
                device: device.clone(),
                health: derive_health(&telemetry),
                telemetry,
            })
            .collect()
    }

    /// Injects a fault into simulated GPU `index` (errors with any other backend).
    pub fn inject_fault(&mut self, index: u32, fault: SimFault) -> Result<(), GpuError> {
        let backend = self.backend().name();
        match &mut self.backend {
            Backend::Simulated(sim) => sim.inject(index, fault),
            _ => Err(GpuError::WrongBackend {
                operation: "fault injection",
                backend,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_discovery_and_poll() {
        let opts = DiscoverOptions {
            simulate: Some("2xH100-80GB,4xA100-40GB".into()),
            seed: 9,
            ..DiscoverOptions::default()
        };
        let mut d = discover(&opts).unwrap();
        assert_eq!(d.backend(), BackendKind::Simulated);
        assert_eq!(d.backend().name(), "simulated");
        assert_eq!(d.devices().len(), 6);
        assert_eq!(
            d.note(),
            r#"simulating 6 GPUs from "2xH100-80GB,4xA100-40GB" (seed 9)"#
        );
        assert_eq!(d.nvlink_groups(), vec![vec![0, 1], vec![2, 3, 4, 5]]);
        let alloc = [Allocation {
            index: 2,
            share_milli: 1000,
        }];
        let a = d.poll(60.0, &alloc);
        let b = discover(&opts).unwrap().poll(60.0, &alloc);
        assert_eq!(a, b, "same seed and time give identical snapshots");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert!(a.iter().all(|s| s.health.is_ok()));
        assert!(a[2].telemetry.utilization_gpu_pct.unwrap() >= 85);
        d.inject_fault(1, SimFault::Xid(48)).unwrap();
        assert!(d.poll(61.0, &alloc)[1].health.is_failed());
    }

    #[test]
    fn discovery_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Discovery>();
    }

    #[test]
    fn bad_spec_is_an_error() {
        let opts = DiscoverOptions {
            simulate: Some("3xH101".into()),
            ..DiscoverOptions::default()
        };
        let e = discover(&opts).unwrap_err();
        assert!(
            matches!(e, GpuError::Spec { ref token, .. } if token == "3xH101"),
            "{e}"
        );
    }

    #[test]
    fn simulated_faults_through_discovery() {
        let opts = DiscoverOptions {
            simulate: Some("4xH100-80GB".into()),
            simulate_faults: Some("1:xid=79@2s".into()),
            ..DiscoverOptions::default()
        };
        let mut d = discover(&opts).unwrap();
        assert!(
            d.note().ends_with(r#" with faults "1:xid=79@2s""#),
            "{}",
            d.note()
        );
        assert!(d.poll(1.0, &[]).iter().all(|s| s.health.is_ok()));
        let later = d.poll(2.0, &[]);
        assert!(later[1].health.is_failed());
        assert!(later[0].health.is_ok() && later[2].health.is_ok());

        let bad_index = DiscoverOptions {
            simulate_faults: Some("4:lost".into()),
            ..opts.clone()
        };
        assert_eq!(
            discover(&bad_index).unwrap_err().to_string(),
            r#"invalid --simulate-faults entry "4:lost": no GPU 4 (4 simulated, indices from 0)"#
        );
        let without_sim = DiscoverOptions {
            simulate: None,
            nvml_library: Some("/nonexistent/libnvidia-ml.so.1".into()),
            ..opts
        };
        assert_eq!(
            discover(&without_sim).unwrap_err().to_string(),
            r#"invalid --simulate-faults entry "1:xid=79@2s": faults need simulated GPUs (--simulate-gpus)"#
        );
    }

    #[test]
    fn missing_driver_gives_zero_gpus_and_one_line() {
        let opts = DiscoverOptions {
            nvml_library: Some("/nonexistent/libnvidia-ml.so.1".into()),
            ..DiscoverOptions::default()
        };
        let mut d = discover(&opts).unwrap();
        assert_eq!(d.backend(), BackendKind::None);
        assert!(d.devices().is_empty());
        assert!(d.poll(0.0, &[]).is_empty());
        assert_eq!(
            d.note(),
            "no NVIDIA driver found (/nonexistent/libnvidia-ml.so.1: cannot open shared object file: \
             No such file or directory); continuing with 0 GPUs"
        );
        let e = d.inject_fault(0, SimFault::Lost).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fault injection needs the simulated backend; this discovery uses none"
        );
    }

    /// With the default library name: on a machine without a driver (this one, CI) the clean note; on a
    /// GPU machine, real GPUs. Either way no panic and one line.
    #[test]
    fn default_nvml_never_panics() {
        let mut d = discover(&DiscoverOptions::default()).unwrap();
        println!("{}", d.note());
        assert!(!d.note().contains('\n'));
        match d.backend() {
            BackendKind::None => {
                assert!(d.devices().is_empty());
                assert!(
                    d.note().ends_with("; continuing with 0 GPUs"),
                    "{}",
                    d.note()
                );
            }
            BackendKind::Nvml => {
                let snapshots = d.poll(0.0, &[]);
                assert_eq!(snapshots.len(), d.devices().len());
                for s in &snapshots {
                    println!("{}", serde_json::to_string(s).unwrap_or_default());
                }
            }
            other => panic!("unexpected backend {other}"),
        }
    }
}

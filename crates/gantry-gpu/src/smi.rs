//! nvidia-smi output: `-q -x` XML, `--query-gpu=... --format=csv`, `topo -m` and `mig -lgip`.
//!
//! XML is read with `roxmltree`: a read-only DOM with one small dependency (`memchr`), which suits a
//! 30 KB document read by element path, with many optional elements that differ between driver
//! generations. `quick-xml` with serde would need a struct per element group and custom handling of
//! "N/A" and `None` text for the same result, and pulls in more code.
//!
//! What nvidia-smi's XML does not carry: NVLink (use `topo -m`, [`parse_topo`]), compute capability,
//! XID events, and MIG device UUIDs and profile names.

use std::path::{Path, PathBuf};

use roxmltree::{Document, Node, ParsingOptions};
use serde::{Deserialize, Serialize};

use crate::error::GpuError;
use crate::types::{
    ComputeCapability, EccCounts, GpuDevice, GpuProcess, GpuTelemetry, MigDevice, MigMode,
    NvLinkPeer, normalize_bus_id,
};

/// One GPU as nvidia-smi reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SmiGpu {
    /// Identity and static facts.
    pub device: GpuDevice,
    /// Readings at the time of the report.
    pub telemetry: GpuTelemetry,
}

/// A parsed `nvidia-smi -q -x` report.
#[derive(Debug, Clone, PartialEq)]
pub struct SmiReport {
    /// Driver version, e.g. `580.159.04`.
    pub driver_version: Option<String>,
    /// CUDA version the driver supports, e.g. `13.0`.
    pub cuda_version: Option<String>,
    /// The GPUs, in report order (which is NVML index order).
    pub gpus: Vec<SmiGpu>,
}

/// Limit on XML nodes, against runaway input (a real report has a few thousand per GPU).
const XML_NODES_LIMIT: u32 = 1_000_000;

/// Parses `nvidia-smi -q -x` output; `source_name` names the input in errors.
pub fn parse_smi_xml(text: &str, source_name: &str) -> Result<SmiReport, GpuError> {
    let options = ParsingOptions {
        allow_dtd: true,
        nodes_limit: XML_NODES_LIMIT,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options)
        .map_err(|e| GpuError::parse(source_name, format!("not valid XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "nvidia_smi_log" {
        return Err(GpuError::parse(
            source_name,
            format!(
                "root element is <{}>, expected <nvidia_smi_log>",
                root.tag_name().name()
            ),
        ));
    }
    let mut gpus = Vec::new();
    for (position, gpu) in root
        .children()
        .filter(|n| n.has_tag_name("gpu"))
        .enumerate()
    {
        let index = u32::try_from(position)
            .map_err(|_| GpuError::parse(source_name, "too many <gpu> elements"))?;
        gpus.push(parse_xml_gpu(gpu, index, source_name)?);
    }
    Ok(SmiReport {
        driver_version: text_at(root, &["driver_version"]).map(str::to_string),
        cuda_version: text_at(root, &["cuda_version"]).map(str::to_string),
        gpus,
    })
}

fn parse_xml_gpu(gpu: Node, index: u32, source_name: &str) -> Result<SmiGpu, GpuError> {
    let what = || {
        format!(
            "<gpu> number {index} (id {:?})",
            gpu.attribute("id").unwrap_or("?")
        )
    };
    let required = |path: &[&str]| {
        text_at(gpu, path).ok_or_else(|| {
            GpuError::parse(
                source_name,
                format!("{}: missing or N/A <{}>", what(), path.join("/")),
            )
        })
    };
    let uuid = required(&["uuid"])?.to_string();
    let name = required(&["product_name"])?.to_string();
    let memory_total_mib =
        number_u64(required(&["fb_memory_usage", "total"])?).ok_or_else(|| {
            GpuError::parse(
                source_name,
                format!("{}: <fb_memory_usage/total> is not a number", what()),
            )
        })?;
    let pci_bus_id = text_at(gpu, &["pci", "pci_bus_id"])
        .or_else(|| gpu.attribute("id"))
        .map(normalize_bus_id)
        .ok_or_else(|| {
            GpuError::parse(
                source_name,
                format!("{}: no <pci/pci_bus_id> and no id attribute", what()),
            )
        })?;
    let mig = MigMode {
        enabled: is_enabled(text_at(gpu, &["mig_mode", "current_mig"])),
        pending: is_enabled(text_at(gpu, &["mig_mode", "pending_mig"])),
    };
    let mig_devices = child(gpu, "mig_devices")
        .map(|m| {
            m.children()
                .filter(|n| n.has_tag_name("mig_device"))
                .map(|d| MigDevice {
                    uuid: text_at(d, &["uuid"]).map(str::to_string),
                    profile: None,
                    memory_mib: text_at(d, &["fb_memory_usage", "total"]).and_then(number_u64),
                    gpu_instance_id: text_at(d, &["gpu_instance_id"]).and_then(number_u32),
                    compute_instance_id: text_at(d, &["compute_instance_id"]).and_then(number_u32),
                })
                .collect()
        })
        .unwrap_or_default();

    let device = GpuDevice {
        index,
        uuid,
        name,
        memory_total_mib,
        mig,
        mig_devices,
        pci_bus_id,
        nvlink_peers: Vec::new(),
        compute_capability: None,
    };

    let temperature_c = text_at(gpu, &["temperature", "gpu_temp"]).and_then(number_i32);
    let telemetry = GpuTelemetry {
        utilization_gpu_pct: text_at(gpu, &["utilization", "gpu_util"]).and_then(number_u32),
        utilization_memory_pct: text_at(gpu, &["utilization", "memory_util"]).and_then(number_u32),
        memory_used_mib: text_at(gpu, &["fb_memory_usage", "used"]).and_then(number_u64),
        memory_free_mib: text_at(gpu, &["fb_memory_usage", "free"]).and_then(number_u64),
        temperature_c,
        temperature_slowdown_c: slowdown_threshold(gpu, temperature_c),
        thermal_slowdown_active: thermal_slowdown_active(gpu),
        power_draw_w: power_reading(
            gpu,
            &["average_power_draw", "power_draw", "instant_power_draw"],
        ),
        power_limit_w: power_reading(
            gpu,
            &["enforced_power_limit", "current_power_limit", "power_limit"],
        ),
        ecc: xml_ecc(gpu),
        xid_events: Vec::new(),
        gpu_lost: false,
        processes: child(gpu, "processes")
            .map(|p| {
                p.children()
                    .filter(|n| n.has_tag_name("process_info"))
                    .filter_map(|info| {
                        Some(GpuProcess {
                            pid: text_at(info, &["pid"]).and_then(number_u32)?,
                            used_memory_mib: text_at(info, &["used_memory"]).and_then(number_u64),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    Ok(SmiGpu { device, telemetry })
}

/// The slowdown threshold: absolute (`gpu_temp_slow_threshold`, older drivers) or from the T.Limit
/// margins of newer drivers: slowdown begins when the margin to T.Limit (`gpu_temp_tlimit`) falls to
/// `gpu_temp_slow_tlimit_threshold`, i.e. at `temp + margin - slow_margin`.
fn slowdown_threshold(gpu: Node, temperature_c: Option<i32>) -> Option<i32> {
    if let Some(abs) =
        text_at(gpu, &["temperature", "gpu_temp_slow_threshold"]).and_then(number_i32)
    {
        return Some(abs);
    }
    let margin = text_at(gpu, &["temperature", "gpu_temp_tlimit"]).and_then(number_i32)?;
    let slow =
        text_at(gpu, &["temperature", "gpu_temp_slow_tlimit_threshold"]).and_then(number_i32)?;
    temperature_c?.checked_add(margin)?.checked_sub(slow)
}

fn thermal_slowdown_active(gpu: Node) -> bool {
    ["clocks_event_reasons", "clocks_throttle_reasons"]
        .iter()
        .filter_map(|group| child(gpu, group))
        .flat_map(|g| g.children().filter(Node::is_element))
        .any(|reason| {
            let tag = reason.tag_name().name();
            (tag.ends_with("hw_thermal_slowdown") || tag.ends_with("sw_thermal_slowdown"))
                && reason.text().map(str::trim) == Some("Active")
        })
}

fn power_reading(gpu: Node, names: &[&str]) -> Option<f64> {
    let group = child(gpu, "gpu_power_readings").or_else(|| child(gpu, "power_readings"))?;
    names
        .iter()
        .find_map(|name| text_at(group, &[name]).and_then(number_f64))
}

fn xml_ecc(gpu: Node) -> EccCounts {
    if !is_enabled(text_at(gpu, &["ecc_mode", "current_ecc"])) {
        return EccCounts::default();
    }
    let count = |which: &str| -> Option<u64> {
        let group = child(gpu, "ecc_errors").and_then(|e| child(e, which))?;
        let mut total: Option<u64> = None;
        for c in group.children().filter(Node::is_element) {
            let tag = c.tag_name().name();
            let value = if tag == "double_bit" {
                text_at(c, &["total"]).and_then(number_u64)
            } else if tag.contains("uncorrectable") {
                c.text().and_then(number_u64)
            } else {
                None
            };
            if let Some(v) = value {
                total = Some(total.unwrap_or(0).saturating_add(v));
            }
        }
        total
    };
    EccCounts {
        volatile_uncorrected: count("volatile"),
        aggregate_uncorrected: count("aggregate"),
    }
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name(name))
}

/// Trimmed text at a child path; `None` for missing, empty or not-available values.
fn text_at<'a>(node: Node<'a, '_>, path: &[&str]) -> Option<&'a str> {
    let mut n = node;
    for name in path {
        n = child(n, name)?;
    }
    n.text().map(str::trim).filter(|t| !not_available(t))
}

/// True for the placeholders nvidia-smi prints instead of a value.
fn not_available(value: &str) -> bool {
    let v = value.trim().trim_start_matches('[').trim_end_matches(']');
    v.is_empty()
        || v.eq_ignore_ascii_case("N/A")
        || v.eq_ignore_ascii_case("Not Supported")
        || v.eq_ignore_ascii_case("None")
        || v.eq_ignore_ascii_case("Unknown Error")
        || v.eq_ignore_ascii_case("Insufficient Permissions")
        || v.starts_with("Requested functionality has been deprecated")
}

fn is_enabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("Enabled"))
}

/// The number at the start of a value such as `81559 MiB`, `121.75 W`, `0 %` or `34 C`.
fn number_f64(value: &str) -> Option<f64> {
    let first = value.split_whitespace().next()?;
    let n: f64 = first.parse().ok()?;
    n.is_finite().then_some(n)
}

fn number_u64(value: &str) -> Option<u64> {
    let first = value.split_whitespace().next()?;
    first.parse().ok().or_else(|| {
        let f = number_f64(first)?;
        (f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
    })
}

fn number_u32(value: &str) -> Option<u32> {
    number_u64(value).and_then(|n| u32::try_from(n).ok())
}

fn number_i32(value: &str) -> Option<i32> {
    let first = value.split_whitespace().next()?;
    first.parse().ok()
}

/// The `--query-gpu` fields [`parse_query_gpu_csv`] understands, in the order of the fixture.
pub const QUERY_GPU_FIELDS: &str = "index,uuid,name,pci.bus_id,memory.total,memory.used,memory.free,\
utilization.gpu,utilization.memory,temperature.gpu,power.draw,power.limit,clocks.current.sm,\
clocks.current.memory,mig.mode.current,ecc.errors.uncorrected.volatile.total,compute_mode,driver_version";

/// Parses `nvidia-smi --query-gpu=FIELDS --format=csv` output (with its header line, units allowed).
///
/// Columns are found by header name, so any field order works; `index`, `uuid`, `name` and
/// `memory.total` are required. Also understood: `pci.bus_id`, `memory.used`, `memory.free`,
/// `utilization.gpu`, `utilization.memory`, `temperature.gpu`, `power.draw`, `power.limit`
/// (or `enforced.power.limit`), `mig.mode.current`, `mig.mode.pending`,
/// `ecc.errors.uncorrected.volatile.total`, `ecc.errors.uncorrected.aggregate.total`, `compute_cap`,
/// `clocks_event_reasons.hw_thermal_slowdown` (or `clocks_throttle_reasons.`). Others are ignored.
pub fn parse_query_gpu_csv(text: &str, source_name: &str) -> Result<Vec<SmiGpu>, GpuError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(GpuError::parse(
            source_name,
            "empty input, expected a header line",
        ));
    };
    let columns: Vec<String> = header
        .split(',')
        .map(|c| {
            let c = c.trim();
            // "memory.total [MiB]" -> "memory.total"
            c.split_once(" [").map_or(c, |(name, _)| name).to_string()
        })
        .collect();
    let find = |names: &[&str]| columns.iter().position(|c| names.contains(&c.as_str()));
    let require = |name: &str| {
        find(&[name]).ok_or_else(|| {
            GpuError::parse(
                source_name,
                format!(
                    "line 1: no {name:?} column (use --format=csv with a header and query {name})"
                ),
            )
        })
    };
    let (c_index, c_uuid, c_name, c_total) = (
        require("index")?,
        require("uuid")?,
        require("name")?,
        require("memory.total")?,
    );
    let c_bus = find(&["pci.bus_id"]);
    let c_used = find(&["memory.used"]);
    let c_free = find(&["memory.free"]);
    let c_util = find(&["utilization.gpu"]);
    let c_mutil = find(&["utilization.memory"]);
    let c_temp = find(&["temperature.gpu"]);
    let c_power = find(&["power.draw"]);
    let c_limit = find(&["enforced.power.limit", "power.limit"]);
    let c_mig = find(&["mig.mode.current"]);
    let c_mig_pending = find(&["mig.mode.pending"]);
    let c_ecc_v = find(&["ecc.errors.uncorrected.volatile.total"]);
    let c_ecc_a = find(&["ecc.errors.uncorrected.aggregate.total"]);
    let c_cc = find(&["compute_cap"]);
    let c_thermal = find(&[
        "clocks_event_reasons.hw_thermal_slowdown",
        "clocks_throttle_reasons.hw_thermal_slowdown",
    ]);

    let mut gpus = Vec::new();
    for (line_no, line) in lines {
        let line_no = line_no + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(GpuError::parse(
                source_name,
                format!(
                    "line {line_no}: {} values for {} columns",
                    cells.len(),
                    columns.len()
                ),
            ));
        }
        let cell = |c: Option<usize>| c.map(|c| cells[c]).filter(|v| !not_available(v));
        let bad = |c: usize, expected: &str| {
            GpuError::parse(
                source_name,
                format!(
                    "line {line_no}, column {:?}: {:?} is not {expected}",
                    columns[c], cells[c]
                ),
            )
        };
        let index = cell(Some(c_index))
            .and_then(number_u32)
            .ok_or_else(|| bad(c_index, "a GPU index"))?;
        let uuid = cell(Some(c_uuid))
            .ok_or_else(|| bad(c_uuid, "a UUID"))?
            .to_string();
        let name = cell(Some(c_name))
            .ok_or_else(|| bad(c_name, "a name"))?
            .to_string();
        let memory_total_mib = cell(Some(c_total))
            .and_then(number_u64)
            .ok_or_else(|| bad(c_total, "a memory size"))?;
        let compute_capability = cell(c_cc).and_then(|v| {
            let (major, minor) = v.split_once('.')?;
            Some(ComputeCapability {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
            })
        });
        let device = GpuDevice {
            index,
            uuid,
            name,
            memory_total_mib,
            mig: MigMode {
                enabled: is_enabled(cell(c_mig)),
                pending: is_enabled(cell(c_mig_pending)),
            },
            mig_devices: Vec::new(),
            pci_bus_id: cell(c_bus).map(normalize_bus_id).unwrap_or_default(),
            nvlink_peers: Vec::new(),
            compute_capability,
        };
        let telemetry = GpuTelemetry {
            utilization_gpu_pct: cell(c_util).and_then(number_u32),
            utilization_memory_pct: cell(c_mutil).and_then(number_u32),
            memory_used_mib: cell(c_used).and_then(number_u64),
            memory_free_mib: cell(c_free).and_then(number_u64),
            temperature_c: cell(c_temp).and_then(number_i32),
            temperature_slowdown_c: None,
            thermal_slowdown_active: cell(c_thermal) == Some("Active"),
            power_draw_w: cell(c_power).and_then(number_f64),
            power_limit_w: cell(c_limit).and_then(number_f64),
            ecc: EccCounts {
                volatile_uncorrected: cell(c_ecc_v).and_then(number_u64),
                aggregate_uncorrected: cell(c_ecc_a).and_then(number_u64),
            },
            xid_events: Vec::new(),
            gpu_lost: false,
            processes: Vec::new(),
        };
        gpus.push(SmiGpu { device, telemetry });
    }
    Ok(gpus)
}

/// How two GPUs are connected, as `nvidia-smi topo -m` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopoConnection {
    /// `NV#`: a bonded set of # NVLinks.
    NvLink {
        /// Number of links.
        links: u32,
    },
    /// `PIX`, `PXB`, `PHB`, `NODE`, `SYS` or another PCIe path code, as printed.
    Pcie(String),
}

/// One GPU row of `nvidia-smi topo -m`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopoGpu {
    /// GPU index (`GPU3` is 3).
    pub index: u32,
    /// Connection to each other GPU, by peer index.
    pub peers: Vec<(u32, TopoConnection)>,
    /// CPU affinity as printed, e.g. `0-15`.
    pub cpu_affinity: Option<String>,
    /// NUMA affinity as printed, e.g. `0`.
    pub numa_affinity: Option<String>,
}

/// The GPU part of `nvidia-smi topo -m`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// GPU rows in printed order.
    pub gpus: Vec<TopoGpu>,
}

impl Topology {
    /// NVLink peers of GPU `index`, as [`NvLinkPeer`]s (no bus ids: `topo -m` does not print them).
    pub fn nvlink_peers(&self, index: u32) -> Vec<NvLinkPeer> {
        self.gpus
            .iter()
            .find(|g| g.index == index)
            .map(|g| {
                g.peers
                    .iter()
                    .filter_map(|(peer, c)| match c {
                        TopoConnection::NvLink { links } => Some(NvLinkPeer {
                            peer_index: Some(*peer),
                            remote_bus_id: None,
                            active_links: *links,
                        }),
                        TopoConnection::Pcie(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fills each device's `nvlink_peers` from this topology.
    pub fn apply_to(&self, devices: &mut [GpuDevice]) {
        for d in devices {
            d.nvlink_peers = self.nvlink_peers(d.index);
        }
    }
}

/// Removes ANSI escape sequences (`topo -m` underlines its header).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn gpu_label(label: &str) -> Option<u32> {
    label.strip_prefix("GPU")?.parse().ok()
}

/// Parses `nvidia-smi topo -m`: the GPU-to-GPU matrix and each GPU's CPU and NUMA affinity.
pub fn parse_topo(text: &str, source_name: &str) -> Result<Topology, GpuError> {
    let lines: Vec<String> = text.lines().map(strip_ansi).collect();
    let Some((header_no, header)) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.split('\t').map(str::trim).any(|c| gpu_label(c).is_some()))
    else {
        return Err(GpuError::parse(
            source_name,
            "no header line with GPU columns",
        ));
    };
    let columns: Vec<&str> = header
        .split('\t')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    // The matrix columns (GPUs, then NICs) come first; the affinity columns follow.
    let width = columns
        .iter()
        .take_while(|c| gpu_label(c).is_some() || c.starts_with("NIC"))
        .count();
    let column_gpus: Vec<Option<u32>> = columns[..width].iter().map(|c| gpu_label(c)).collect();
    let mut gpus = Vec::new();
    for (no, line) in lines.iter().enumerate().skip(header_no + 1) {
        if line.trim_start().starts_with("Legend") {
            break;
        }
        let mut cells = line.split('\t').map(str::trim);
        let Some(index) = cells.next().and_then(gpu_label) else {
            continue;
        };
        let cells: Vec<&str> = cells.collect();
        if cells.len() < width {
            return Err(GpuError::parse(
                source_name,
                format!(
                    "line {}: GPU{index} has {} cells, expected at least {width}",
                    no + 1,
                    cells.len()
                ),
            ));
        }
        let mut peers = Vec::new();
        for (cell, peer) in cells[..width].iter().zip(&column_gpus) {
            let Some(peer) = *peer else { continue };
            if peer == index || *cell == "X" {
                continue;
            }
            let connection = match cell.strip_prefix("NV").map(str::parse::<u32>) {
                Some(Ok(links)) => TopoConnection::NvLink { links },
                _ => TopoConnection::Pcie((*cell).to_string()),
            };
            peers.push((peer, connection));
        }
        let extra = |i: usize| {
            cells
                .get(width + i)
                .filter(|v| !not_available(v))
                .map(|v| (*v).to_string())
        };
        gpus.push(TopoGpu {
            index,
            peers,
            cpu_affinity: extra(0),
            numa_affinity: extra(1),
        });
    }
    if gpus.is_empty() {
        return Err(GpuError::parse(source_name, "no GPU rows under the header"));
    }
    Ok(Topology { gpus })
}

/// One GPU instance profile from `nvidia-smi mig -lgip`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigProfile {
    /// GPU index the line is for.
    pub gpu: u32,
    /// Profile name without the `MIG ` prefix, e.g. `1g.10gb` or `1g.10gb+me`.
    pub name: String,
    /// Profile id (what `nvidia-smi mig -cgi ID` takes).
    pub id: u32,
    /// Instances that can still be created.
    pub instances_free: u32,
    /// Instances the GPU supports.
    pub instances_total: u32,
    /// Memory, GiB as printed (two decimals).
    pub memory_gib: f64,
    /// Memory, MiB (from the printed GiB, so within 8 MiB).
    pub memory_mib: u64,
    /// Peer-to-peer support.
    pub p2p: bool,
    /// Streaming multiprocessors.
    pub sm: u32,
    /// Decoders.
    pub dec: u32,
    /// Encoders.
    pub enc: u32,
    /// Copy engines (from the profile's second line).
    pub ce: Option<u32>,
    /// JPEG engines (second line).
    pub jpeg: Option<u32>,
    /// Optical flow accelerators (second line).
    pub ofa: Option<u32>,
}

/// Parses the table printed by `nvidia-smi mig -lgip` (GPU instance profiles).
pub fn parse_mig_profiles(text: &str, source_name: &str) -> Result<Vec<MigProfile>, GpuError> {
    let mut profiles: Vec<MigProfile> = Vec::new();
    let mut expect_second_line = false;
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let Some(inner) = line.strip_prefix('|').and_then(|l| l.strip_suffix('|')) else {
            expect_second_line = false;
            continue;
        };
        let tokens: Vec<&str> = inner.split_whitespace().collect();
        if tokens.get(1) == Some(&"MIG") {
            let bad = |what: &str| {
                GpuError::parse(
                    source_name,
                    format!("line {}: bad {what} in {line:?}", no + 1),
                )
            };
            if tokens.len() < 10 {
                return Err(bad("profile line (too few fields)"));
            }
            let num = |i: usize, what: &str| tokens[i].parse::<u32>().map_err(|_| bad(what));
            let (free, total) = tokens[4]
                .split_once('/')
                .ok_or_else(|| bad("Free/Total instances"))?;
            let memory_gib: f64 = tokens[5].parse().map_err(|_| bad("memory"))?;
            if !(memory_gib.is_finite() && memory_gib >= 0.0) {
                return Err(bad("memory"));
            }
            profiles.push(MigProfile {
                gpu: num(0, "GPU index")?,
                name: tokens[2].to_string(),
                id: num(3, "profile id")?,
                instances_free: free.parse().map_err(|_| bad("free instances"))?,
                instances_total: total.parse().map_err(|_| bad("total instances"))?,
                memory_gib,
                memory_mib: (memory_gib * 1024.0).round() as u64,
                p2p: tokens[6].eq_ignore_ascii_case("Yes"),
                sm: num(7, "SM count")?,
                dec: num(8, "DEC count")?,
                enc: num(9, "ENC count")?,
                ce: None,
                jpeg: None,
                ofa: None,
            });
            expect_second_line = true;
        } else if expect_second_line {
            expect_second_line = false;
            if let (Some(last), [ce, jpeg, ofa]) = (profiles.last_mut(), tokens.as_slice()) {
                last.ce = ce.parse().ok();
                last.jpeg = jpeg.parse().ok();
                last.ofa = ofa.parse().ok();
            }
        }
    }
    if profiles.is_empty() {
        return Err(GpuError::parse(source_name, "no MIG profile lines found"));
    }
    Ok(profiles)
}

/// Reads GPUs from captured `nvidia-smi -q -x` output in a file, re-read at every poll.
#[derive(Debug, Clone)]
pub struct SmiXmlBackend {
    xml_path: PathBuf,
    topology: Option<Topology>,
    report: SmiReport,
    last_error: Option<String>,
}

impl SmiXmlBackend {
    /// Reads and parses `xml_path`, and `topo_path` (`nvidia-smi topo -m` output) for NVLink peers.
    pub fn open(xml_path: &Path, topo_path: Option<&Path>) -> Result<Self, GpuError> {
        let topology = match topo_path {
            Some(p) => Some(parse_topo(&read(p)?, &p.display().to_string())?),
            None => None,
        };
        let mut report = parse_smi_xml(&read(xml_path)?, &xml_path.display().to_string())?;
        if let Some(topo) = &topology {
            apply_topology(topo, &mut report);
        }
        Ok(SmiXmlBackend {
            xml_path: xml_path.to_path_buf(),
            topology,
            report,
            last_error: None,
        })
    }

    /// The last good report.
    pub fn report(&self) -> &SmiReport {
        &self.report
    }

    /// Why the last re-read failed, if it did (the previous report is kept).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Re-reads the file; on failure keeps the previous report and records why.
    pub fn refresh(&mut self) {
        let name = self.xml_path.display().to_string();
        match read(&self.xml_path).and_then(|text| parse_smi_xml(&text, &name)) {
            Ok(mut report) => {
                if let Some(topo) = &self.topology {
                    apply_topology(topo, &mut report);
                }
                self.report = report;
                self.last_error = None;
            }
            Err(e) => self.last_error = Some(e.to_string()),
        }
    }
}

fn apply_topology(topo: &Topology, report: &mut SmiReport) {
    for gpu in &mut report.gpus {
        gpu.device.nvlink_peers = topo.nvlink_peers(gpu.device.index);
    }
}

/// Reads a whole text file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<String, GpuError> {
    std::fs::read_to_string(path).map_err(|source| GpuError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_not_values() {
        for v in [
            "N/A",
            "[N/A]",
            "[Not Supported]",
            "None",
            "",
            "Requested functionality has been deprecated",
        ] {
            assert!(not_available(v), "{v}");
        }
        assert!(!not_available("0"));
        assert_eq!(number_u64("81559 MiB"), Some(81559));
        assert_eq!(number_f64("121.75 W"), Some(121.75));
        assert_eq!(number_i32("-2 C"), Some(-2));
        assert_eq!(number_u32("0 %"), Some(0));
        assert_eq!(number_u64("N/A"), None);
        assert_eq!(number_f64("inf W"), None);
    }

    #[test]
    fn bad_xml_is_a_clean_error() {
        let e = parse_smi_xml("<nvidia_smi_log><gpu>", "x.xml").unwrap_err();
        assert!(e.to_string().starts_with("x.xml: not valid XML"), "{e}");
        let e = parse_smi_xml("<other/>", "x.xml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.xml: root element is <other>, expected <nvidia_smi_log>"
        );
        let e = parse_smi_xml(
            r#"<nvidia_smi_log><gpu id="00000000:01:00.0"><product_name>X</product_name></gpu></nvidia_smi_log>"#,
            "x.xml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"x.xml: <gpu> number 0 (id "00000000:01:00.0"): missing or N/A <uuid>"#
        );
    }

    /// A hand-written report in the shape of older drivers (absolute slowdown threshold, Volta-style
    /// ECC, `power_readings`, `clocks_throttle_reasons`), with a process and MIG pending; the fixture
    /// tests cover the real H100 output.
    #[test]
    fn older_driver_shapes() {
        let xml = r#"<?xml version="1.0" ?>
<nvidia_smi_log><driver_version>470.1</driver_version>
<gpu id="0000:3B:00.0">
  <product_name>Tesla V100-SXM2-16GB</product_name>
  <uuid>GPU-11111111-2222-3333-4444-555555555555</uuid>
  <mig_mode><current_mig>Disabled</current_mig><pending_mig>Enabled</pending_mig></mig_mode>
  <fb_memory_usage><total>16160 MiB</total><used>1000 MiB</used><free>15160 MiB</free></fb_memory_usage>
  <ecc_mode><current_ecc>Enabled</current_ecc></ecc_mode>
  <ecc_errors>
    <volatile><single_bit><total>7</total></single_bit><double_bit><device_memory>1</device_memory><total>1</total></double_bit></volatile>
    <aggregate><single_bit><total>9</total></single_bit><double_bit><total>3</total></double_bit></aggregate>
  </ecc_errors>
  <clocks_throttle_reasons><clocks_throttle_reason_hw_thermal_slowdown>Active</clocks_throttle_reason_hw_thermal_slowdown></clocks_throttle_reasons>
  <temperature><gpu_temp>80 C</gpu_temp><gpu_temp_slow_threshold>87 C</gpu_temp_slow_threshold></temperature>
  <power_readings><power_draw>250.5 W</power_draw><power_limit>300.00 W</power_limit><enforced_power_limit>290.00 W</enforced_power_limit></power_readings>
  <processes><process_info><pid>4242</pid><type>C</type><used_memory>990 MiB</used_memory></process_info></processes>
</gpu></nvidia_smi_log>"#;
        let report = parse_smi_xml(xml, "old.xml").unwrap();
        let g = &report.gpus[0];
        assert_eq!(g.device.pci_bus_id, "00000000:3B:00.0");
        assert_eq!(
            g.device.mig,
            MigMode {
                enabled: false,
                pending: true
            }
        );
        assert_eq!(g.telemetry.ecc.volatile_uncorrected, Some(1));
        assert_eq!(g.telemetry.ecc.aggregate_uncorrected, Some(3));
        assert_eq!(g.telemetry.temperature_slowdown_c, Some(87));
        assert!(g.telemetry.thermal_slowdown_active);
        assert_eq!(g.telemetry.power_draw_w, Some(250.5));
        assert_eq!(g.telemetry.power_limit_w, Some(290.0));
        assert_eq!(
            g.telemetry.processes,
            vec![GpuProcess {
                pid: 4242,
                used_memory_mib: Some(990)
            }]
        );
        // ECC off: no counts, whatever the elements say.
        let off = xml.replace(
            "<current_ecc>Enabled</current_ecc>",
            "<current_ecc>Disabled</current_ecc>",
        );
        let report = parse_smi_xml(&off, "old.xml").unwrap();
        assert_eq!(report.gpus[0].telemetry.ecc, EccCounts::default());
    }

    /// A hand-written 4-GPU `topo -m` matrix in nvidia-smi's layout (two NVLink pairs, a NIC column).
    #[test]
    fn topology_matrix_with_nvlink_pairs() {
        let text = "\t\u{1b}[4mGPU0\tGPU1\tGPU2\tGPU3\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\u{1b}[0m\n\
GPU0\t X \tNV12\tSYS\tSYS\tPXB\t0-31\t0\t\tN/A\n\
GPU1\tNV12\t X \tSYS\tSYS\tPXB\t0-31\t0\t\tN/A\n\
GPU2\tSYS\tSYS\t X \tNV4\tSYS\t32-63\t1\t\tN/A\n\
GPU3\tSYS\tSYS\tNV4\t X \tSYS\t32-63\t1\t\tN/A\n\
NIC0\tPXB\tPXB\tSYS\tSYS\t X \t\t\t\t\n\
\n\
Legend:\n\n  X    = Self\n";
        let topo = parse_topo(text, "topo").unwrap();
        assert_eq!(topo.gpus.len(), 4);
        assert_eq!(
            topo.gpus[0].peers,
            vec![
                (1, TopoConnection::NvLink { links: 12 }),
                (2, TopoConnection::Pcie("SYS".into())),
                (3, TopoConnection::Pcie("SYS".into())),
            ]
        );
        assert_eq!(topo.gpus[2].cpu_affinity.as_deref(), Some("32-63"));
        assert_eq!(topo.gpus[2].numa_affinity.as_deref(), Some("1"));
        assert_eq!(
            topo.nvlink_peers(3),
            vec![NvLinkPeer {
                peer_index: Some(2),
                remote_bus_id: None,
                active_links: 4
            }]
        );
        let mut devices: Vec<GpuDevice> = (0..4)
            .map(|i| GpuDevice {
                index: i,
                uuid: format!("GPU-{i}"),
                name: "x".into(),
                memory_total_mib: 1,
                mig: MigMode::default(),
                mig_devices: vec![],
                pci_bus_id: format!("00000000:0{i}:00.0"),
                nvlink_peers: vec![],
                compute_capability: None,
            })
            .collect();
        topo.apply_to(&mut devices);
        assert_eq!(
            crate::types::nvlink_groups(&devices),
            vec![vec![0, 1], vec![2, 3]]
        );
        assert!(parse_topo("nothing here", "t").is_err());
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        let e = parse_query_gpu_csv("index, name\n0, X\n", "q.csv").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"q.csv: line 1: no "uuid" column (use --format=csv with a header and query uuid)"#
        );
        let e = parse_query_gpu_csv(
            "index, uuid, name, memory.total [MiB]\n0, GPU-1, X, lots\n",
            "q.csv",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"q.csv: line 2, column "memory.total": "lots" is not a memory size"#
        );
        let e = parse_query_gpu_csv("index, uuid, name, memory.total [MiB]\n0, GPU-1\n", "q.csv")
            .unwrap_err();
        assert_eq!(e.to_string(), "q.csv: line 2: 2 values for 4 columns");
        assert!(parse_query_gpu_csv("", "q.csv").is_err());
    }
}

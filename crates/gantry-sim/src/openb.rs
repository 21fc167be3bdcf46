//! Reader for the openb trace CSVs (Alibaba `cluster-trace-gpu-v2023`): node lists and pod lists.

use gantry_core::model::{GpuDemand, GpuModels, MAX_GPUS_PER_NODE, ModelSet, NodeSpec, Pod};
use std::path::{Path, PathBuf};

/// A malformed or unreadable trace file, naming the file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The header lacks a required column.
    #[error("{path}:1: missing column {column:?} in header")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column that is missing.
        column: &'static str,
    },
    /// A row could not be split into fields.
    #[error("{path}:{line}: {message}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A field holds a bad value.
    #[error("{path}:{line}: column {column:?}: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The column's header name.
        column: &'static str,
        /// What is wrong with the value.
        message: String,
    },
    /// The trace has no rows.
    #[error("{path}: no rows")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// A pod row of a trace, with its name kept for reports.
#[derive(Clone, Debug, PartialEq)]
pub struct TracePod {
    /// The pod name from the trace.
    pub name: String,
    /// The request.
    pub pod: Pod,
    /// The allowed-models text as written (non-empty parts joined by `|`; empty = any).
    pub gpu_spec: String,
}

/// A cluster and a pod list read from openb CSVs.
#[derive(Clone, Debug)]
pub struct Trace {
    /// Trace name (the pod file's stem without `openb_pod_list_`).
    pub name: String,
    /// GPU model names.
    pub models: GpuModels,
    /// The nodes, in file order.
    pub nodes: Vec<NodeSpec>,
    /// The pods, in file order.
    pub pods: Vec<TracePod>,
}

struct Rows<'a> {
    path: &'a Path,
    headers: csv::StringRecord,
}

impl Rows<'_> {
    fn column(&self, name: &'static str) -> Result<usize, TraceError> {
        self.headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| TraceError::MissingColumn {
                path: self.path.to_path_buf(),
                column: name,
            })
    }
}

fn open(path: &Path) -> Result<(csv::Reader<std::fs::File>, csv::StringRecord), TraceError> {
    let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    Ok((reader, headers))
}

fn csv_error(path: &Path, e: csv::Error) -> TraceError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => TraceError::Io {
            path: path.to_path_buf(),
            source,
        },
        kind => TraceError::Row {
            path: path.to_path_buf(),
            line,
            message: format!("{kind:?}"),
        },
    }
}

struct Field<'a> {
    path: &'a Path,
    line: u64,
    record: &'a csv::StringRecord,
}

impl Field<'_> {
    fn err(&self, column: &'static str, message: String) -> TraceError {
        TraceError::Field {
            path: self.path.to_path_buf(),
            line: self.line,
            column,
            message,
        }
    }

    fn text(&self, index: usize) -> &str {
        self.record.get(index).unwrap_or("").trim()
    }

    fn uint(&self, index: usize, column: &'static str, max: u64) -> Result<u64, TraceError> {
        let raw = self.text(index);
        let value: u64 = raw.parse().map_err(|_| {
            self.err(
                column,
                format!("expected a non-negative integer, got {raw:?}"),
            )
        })?;
        if value > max {
            return Err(self.err(column, format!("{value} is above the maximum {max}")));
        }
        Ok(value)
    }
}

/// Reads an openb node list (`sn,cpu_milli,memory_mib,gpu,model`), interning GPU models into `models`.
pub fn read_nodes(path: &Path, models: &mut GpuModels) -> Result<Vec<NodeSpec>, TraceError> {
    let (mut reader, headers) = open(path)?;
    let rows = Rows {
        path,
        headers: headers.clone(),
    };
    let (c_sn, c_cpu, c_mem, c_gpu, c_model) = (
        rows.column("sn")?,
        rows.column("cpu_milli")?,
        rows.column("memory_mib")?,
        rows.column("gpu")?,
        rows.column("model")?,
    );
    let mut nodes = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let line = record.position().map_or(0, |p| p.line());
        let f = Field {
            path,
            line,
            record: &record,
        };
        let name = f.text(c_sn);
        if name.is_empty() {
            return Err(f.err("sn", "node name is empty".into()));
        }
        let cpu_milli = f.uint(c_cpu, "cpu_milli", u64::from(u32::MAX))?;
        let memory_mib = f.uint(c_mem, "memory_mib", u64::from(u32::MAX))?;
        let gpu_count = f.uint(c_gpu, "gpu", MAX_GPUS_PER_NODE as u64)? as u8;
        let model_name = f.text(c_model);
        let gpu_model = match (gpu_count, model_name) {
            (0, _) => None,
            (_, "") | (_, "nan") => {
                return Err(f.err("model", "a node with GPUs needs a GPU model".into()));
            }
            (_, m) => Some(
                models
                    .intern(m)
                    .map_err(|e| f.err("model", e.to_string()))?,
            ),
        };
        nodes.push(NodeSpec {
            name: name.to_string(),
            cpu_milli,
            memory_mib,
            gpu_count,
            gpu_model,
        });
    }
    if nodes.is_empty() {
        return Err(TraceError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(nodes)
}

/// Reads an openb pod list (`name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,...]`).
pub fn read_pods(path: &Path, models: &mut GpuModels) -> Result<Vec<TracePod>, TraceError> {
    let (mut reader, headers) = open(path)?;
    let rows = Rows {
        path,
        headers: headers.clone(),
    };
    let (c_name, c_cpu, c_mem, c_num, c_milli) = (
        rows.column("name")?,
        rows.column("cpu_milli")?,
        rows.column("memory_mib")?,
        rows.column("num_gpu")?,
        rows.column("gpu_milli")?,
    );
    let c_spec = rows.column("gpu_spec").ok();
    let mut pods = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let line = record.position().map_or(0, |p| p.line());
        let f = Field {
            path,
            line,
            record: &record,
        };
        let name = f.text(c_name).to_string();
        let cpu_milli = f.uint(c_cpu, "cpu_milli", u64::from(u32::MAX))?;
        let memory_mib = f.uint(c_mem, "memory_mib", u64::from(u32::MAX))?;
        let num_gpu = f.uint(c_num, "num_gpu", MAX_GPUS_PER_NODE as u64)?;
        let gpu_milli = f.uint(c_milli, "gpu_milli", 1000)?;
        let gpu = match (num_gpu, gpu_milli) {
            (0, _) => GpuDemand::None,
            (_, 0) => {
                return Err(f.err(
                    "gpu_milli",
                    "must be 1..=1000 when num_gpu is above 0".into(),
                ));
            }
            (1, m) if m < 1000 => GpuDemand::Share(m as u16),
            (k, 1000) => GpuDemand::Whole(k as u8),
            (k, m) => {
                return Err(f.err(
                    "gpu_milli",
                    format!("a pod with num_gpu = {k} must ask 1000 per GPU, got {m}"),
                ));
            }
        };
        let mut allowed = ModelSet::ANY;
        let mut parts: Vec<&str> = Vec::new();
        if let Some(c) = c_spec {
            let spec = f.text(c);
            if spec != "nan" {
                parts = spec
                    .split('|')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect();
            }
        }
        if gpu != GpuDemand::None {
            for m in &parts {
                let id = models
                    .intern(m)
                    .map_err(|e| f.err("gpu_spec", e.to_string()))?;
                allowed.insert(id);
            }
        } else {
            parts.clear();
        }
        pods.push(TracePod {
            name,
            pod: Pod {
                cpu_milli,
                memory_mib,
                gpu,
                models: allowed,
            },
            gpu_spec: parts.join("|"),
        });
    }
    if pods.is_empty() {
        return Err(TraceError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(pods)
}

/// The trace name of a pod file: `openb_pod_list_default.csv` gives `default`.
pub fn trace_name(pods_path: &Path) -> String {
    let stem = pods_path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    stem.strip_prefix("openb_pod_list_")
        .map_or(stem.clone(), str::to_string)
}

/// Reads a node list and a pod list into one [`Trace`].
pub fn read_trace(nodes_path: &Path, pods_path: &Path) -> Result<Trace, TraceError> {
    let mut models = GpuModels::default();
    let nodes = read_nodes(nodes_path, &mut models)?;
    let pods = read_pods(pods_path, &mut models)?;
    Ok(Trace {
        name: trace_name(pods_path),
        models,
        nodes,
        pods,
    })
}

//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in discovery, parsing and fault injection.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// An entry of a `--simulate-gpus` spec is invalid; `token` is the entry as written.
    #[error("invalid --simulate-gpus entry {token:?}: {problem}")]
    Spec {
        /// The offending entry (or the whole spec when it is empty).
        token: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An entry of a `--simulate-faults` spec is invalid; `token` is the entry as written.
    #[error("invalid --simulate-faults entry {token:?}: {problem}")]
    FaultSpec {
        /// The offending entry (or the whole spec when it is empty).
        token: String,
        /// What is wrong with it.
        problem: String,
    },
    /// NVML could not be initialised: the library is missing, or the driver refused.
    #[error("{0}")]
    NvmlInit(String),
    /// An NVML call failed after a successful initialisation.
    #[error("NVML {call}: {message}")]
    Nvml {
        /// The NVML call (wrapper method) that failed.
        call: &'static str,
        /// NVML's message.
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Tool output (nvidia-smi XML, CSV, topology, MIG profiles) could not be parsed.
    #[error("{source_name}: {message}")]
    Parse {
        /// Where the text came from (a path or a description such as `nvidia-smi -q -x`).
        source_name: String,
        /// What is wrong, with a line or element where known.
        message: String,
    },
    /// No GPU has this index.
    #[error("no GPU with index {0}")]
    NoSuchGpu(u32),
    /// The operation needs another backend (fault injection needs `simulated`).
    #[error("{operation} needs the simulated backend; this discovery uses {backend}")]
    WrongBackend {
        /// What was attempted.
        operation: &'static str,
        /// The backend in use.
        backend: &'static str,
    },
}

impl GpuError {
    /// Builds a [`GpuError::Parse`].
    pub(crate) fn parse(source_name: &str, message: impl Into<String>) -> Self {
        GpuError::Parse {
            source_name: source_name.to_string(),
            message: message.into(),
        }
    }
}

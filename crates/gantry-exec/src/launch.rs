//! What to run: [`Launch`], plain data, and its translation from a [`WorkloadSpec`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gantry_core::spec::{Duration as SpecDuration, WorkloadSpec};

use crate::error::ExecError;

/// Grace period between SIGTERM and SIGKILL when none is configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// One GPU (or MIG slice) assigned to a launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignedGpu {
    /// Index of the physical GPU on the node (the parent GPU for a MIG slice).
    pub index: u32,
    /// Device UUID: `GPU-...` for a whole GPU, `MIG-...` for a MIG slice.
    pub uuid: String,
}

/// Per-process resource limits, applied with `setrlimit` (soft = hard) just before `exec`.
///
/// Limits apply to each process of the workload, not to the workload as a whole (that needs
/// cgroups). `address_space` (`RLIMIT_AS`) breaks CUDA, which reserves far more virtual memory than it
/// uses: leave it unset for GPU workloads. A limit above the server's own hard limit is refused by the
/// kernel when the workload does not run as root, and `start` then fails with [`ExecError::Spawn`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Maximum virtual memory in bytes (`RLIMIT_AS`).
    pub address_space: Option<u64>,
    /// Maximum number of open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Maximum CPU time in seconds (`RLIMIT_CPU`); the kernel sends SIGXCPU, then SIGKILL.
    pub cpu_seconds: Option<u64>,
}

/// The unprivileged user and group a workload runs as (the server must be root to switch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id; supplementary groups are dropped.
    pub gid: u32,
}

/// Everything needed to start one attempt of one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Workload id; names the log directory `<log_dir>/<id>/`.
    pub workload_id: String,
    /// Attempt number (1 for the first run); each attempt has its own files.
    pub attempt: u32,
    /// Program and its first arguments, not run through a shell.
    pub command: Vec<String>,
    /// Further arguments, appended to `command`.
    pub args: Vec<String>,
    /// Variables added to the server's environment (gantry's own variables win over these).
    pub env: BTreeMap<String, String>,
    /// Working directory; the server's when `None`.
    pub working_dir: Option<PathBuf>,
    /// Assigned GPUs or MIG slices; empty means no GPU is visible.
    pub gpus: Vec<AssignedGpu>,
    /// Root of the executor's files: `<log_dir>/<id>/<attempt>.{stdout,stderr,pid,exit}`.
    pub log_dir: PathBuf,
    /// Resource limits for each process of the workload.
    pub limits: Limits,
    /// User to run as; `None` keeps the server's user.
    pub run_as: Option<RunAs>,
    /// Wall-clock limit for the attempt; then SIGTERM, `grace`, SIGKILL to the group.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL on timeout, and for leftovers after the main process exits.
    pub grace: Duration,
}

impl Launch {
    /// A launch of `argv` with nothing else set: no GPU, no limits, no timeout, the default grace.
    pub fn new(
        workload_id: impl Into<String>,
        attempt: u32,
        argv: impl IntoIterator<Item = impl Into<String>>,
        log_dir: impl Into<PathBuf>,
    ) -> Self {
        Launch {
            workload_id: workload_id.into(),
            attempt,
            command: argv.into_iter().map(Into::into).collect(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            gpus: Vec::new(),
            log_dir: log_dir.into(),
            limits: Limits::default(),
            run_as: None,
            timeout: None,
            grace: DEFAULT_GRACE,
        }
    }

    /// A launch from a workload spec's `run` section and `timeout`; GPUs, limits and user are left unset.
    ///
    /// Fails when the spec has no `run`, asks for a container image, or has an unreadable timeout.
    pub fn from_spec(
        spec: &WorkloadSpec,
        workload_id: impl Into<String>,
        attempt: u32,
        log_dir: impl Into<PathBuf>,
    ) -> Result<Self, ExecError> {
        let run = spec
            .run
            .as_ref()
            .ok_or_else(|| ExecError::Spec("`run` is missing".to_string()))?;
        if let Some(image) = &run.image {
            return Err(ExecError::ImageUnsupported(image.clone()));
        }
        let mut launch = Launch::new(workload_id, attempt, run.command.clone(), log_dir);
        launch.args = run.args.clone();
        launch.env = run.env.clone();
        launch.working_dir = run.working_dir.as_ref().map(PathBuf::from);
        launch.timeout = spec_duration(spec.timeout.as_ref(), "timeout")?;
        Ok(launch)
    }

    /// The full argument vector: `command` then `args`.
    pub fn argv(&self) -> Vec<&str> {
        self.command
            .iter()
            .chain(self.args.iter())
            .map(String::as_str)
            .collect()
    }

    /// The value of `CUDA_VISIBLE_DEVICES`: the assigned UUIDs joined by commas, `""` for none.
    pub fn cuda_visible_devices(&self) -> String {
        self.gpus
            .iter()
            .map(|g| g.uuid.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The value of `NVIDIA_VISIBLE_DEVICES`: the assigned UUIDs joined by commas, `void` for none.
    pub fn nvidia_visible_devices(&self) -> String {
        if self.gpus.is_empty() {
            "void".to_string()
        } else {
            self.cuda_visible_devices()
        }
    }

    /// The variables gantry sets for every workload, after (and over) `env`.
    ///
    /// `CUDA_VISIBLE_DEVICES`, `NVIDIA_VISIBLE_DEVICES`, `GANTRY_GPU_INDICES` (comma-joined indices),
    /// `GANTRY_WORKLOAD_ID` and `GANTRY_ATTEMPT`.
    pub fn gantry_env(&self) -> Vec<(&'static str, String)> {
        let indices = self
            .gpus
            .iter()
            .map(|g| g.index.to_string())
            .collect::<Vec<_>>()
            .join(",");
        vec![
            ("CUDA_VISIBLE_DEVICES", self.cuda_visible_devices()),
            ("NVIDIA_VISIBLE_DEVICES", self.nvidia_visible_devices()),
            ("GANTRY_GPU_INDICES", indices),
            ("GANTRY_WORKLOAD_ID", self.workload_id.clone()),
            ("GANTRY_ATTEMPT", self.attempt.to_string()),
        ]
    }

    /// Checks what can be checked before starting: id, command, env names, GPU UUIDs, working dir.
    pub fn validate(&self) -> Result<(), ExecError> {
        check_id(&self.workload_id)?;
        if self.command.first().is_none_or(|p| p.is_empty()) {
            return Err(ExecError::EmptyCommand);
        }
        if let Some(name) = self
            .env
            .keys()
            .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return Err(ExecError::InvalidEnvName(name.clone()));
        }
        if let Some(gpu) = self.gpus.iter().find(|g| {
            g.uuid.is_empty() || g.uuid.contains(',') || g.uuid.chars().any(char::is_whitespace)
        }) {
            return Err(ExecError::InvalidGpuUuid(gpu.uuid.clone()));
        }
        if let Some(dir) = &self.working_dir {
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(ExecError::WorkingDir {
                        path: dir.clone(),
                        reason: "not a directory".to_string(),
                    });
                }
                Err(e) => {
                    return Err(ExecError::WorkingDir {
                        path: dir.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The spec's `timeout`, `ttlAfterFinished` or similar as a [`Duration`]; `field` names it in errors.
pub fn spec_duration(
    value: Option<&SpecDuration>,
    field: &str,
) -> Result<Option<Duration>, ExecError> {
    value
        .map(|d| {
            d.seconds()
                .map(Duration::from_secs)
                .map_err(|e| ExecError::Spec(format!("{field}: {e}")))
        })
        .transpose()
}

/// The spec's `retries` as a count (negative values, which validation refuses, count as 0).
pub fn spec_retries(spec: &WorkloadSpec) -> u32 {
    u32::try_from(spec.retries.max(0)).unwrap_or(u32::MAX)
}

/// Checks that a workload id can safely name a directory under the log directory.
pub fn check_id(id: &str) -> Result<(), ExecError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ExecError::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_variables() {
        let mut l = Launch::new("w1", 1, ["true"], "/tmp");
        assert_eq!(l.cuda_visible_devices(), "");
        assert_eq!(l.nvidia_visible_devices(), "void");
        l.gpus = vec![
            AssignedGpu {
                index: 0,
                uuid: "GPU-a".into(),
            },
            AssignedGpu {
                index: 3,
                uuid: "MIG-b".into(),
            },
        ];
        assert_eq!(l.cuda_visible_devices(), "GPU-a,MIG-b");
        assert_eq!(l.nvidia_visible_devices(), "GPU-a,MIG-b");
        let env = l.gantry_env();
        assert!(env.contains(&("GANTRY_GPU_INDICES", "0,3".to_string())));
        assert!(env.contains(&("GANTRY_ATTEMPT", "1".to_string())));
    }

    #[test]
    fn ids_cannot_escape_the_log_directory() {
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b", "a\0b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["w1", "train-7b.2", "job:42", "A_b"] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
        assert!(check_id(&"x".repeat(201)).is_err());
    }

    #[test]
    fn validate_reports_bad_fields() {
        let mut l = Launch::new("w", 1, Vec::<String>::new(), "/tmp");
        assert!(matches!(l.validate(), Err(ExecError::EmptyCommand)));
        l.command = vec!["true".into()];
        l.env.insert("A=B".into(), "x".into());
        assert!(matches!(l.validate(), Err(ExecError::InvalidEnvName(_))));
        l.env.clear();
        l.gpus = vec![AssignedGpu {
            index: 0,
            uuid: "GPU-a,GPU-b".into(),
        }];
        assert!(matches!(l.validate(), Err(ExecError::InvalidGpuUuid(_))));
        l.gpus.clear();
        l.working_dir = Some("/no/such/dir".into());
        assert!(matches!(l.validate(), Err(ExecError::WorkingDir { .. })));
    }

    #[test]
    fn from_spec_takes_run_and_timeout() {
        let mut spec = WorkloadSpec::named("w");
        assert!(Launch::from_spec(&spec, "w", 1, "/tmp").is_err());
        spec.run = Some(gantry_core::spec::RunSpec {
            command: vec!["python".into(), "train.py".into()],
            args: vec!["--epochs".into(), "3".into()],
            working_dir: Some("/srv".into()),
            ..Default::default()
        });
        spec.timeout = Some(SpecDuration::from_secs(90));
        spec.retries = 2;
        let l = Launch::from_spec(&spec, "w", 1, "/tmp").unwrap();
        assert_eq!(l.argv(), ["python", "train.py", "--epochs", "3"]);
        assert_eq!(l.timeout, Some(Duration::from_secs(90)));
        assert_eq!(l.working_dir, Some(PathBuf::from("/srv")));
        assert_eq!(spec_retries(&spec), 2);
        spec.run.as_mut().unwrap().image = Some("pytorch:latest".into());
        assert!(matches!(
            Launch::from_spec(&spec, "w", 1, "/tmp"),
            Err(ExecError::ImageUnsupported(_))
        ));
    }
}

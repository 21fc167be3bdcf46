//! The per-GPU job mapping files dcgm-exporter reads with `--hpc-job-mapping-dir`, so DCGM's series
//! carry an `hpc_job` label naming the Gantry workload on each GPU.
//!
//! The format dcgm-exporter expects (its `hpcMapper` transformation): one plain file per GPU in the
//! directory, named by the GPU index (`0`, `1`, ...), holding the job ids on that GPU, one per line;
//! files whose name is not a number are ignored. A GPU with a file that lists no job loses its series
//! altogether, so a GPU that frees has its file removed, not emptied. Each file is written to a
//! temporary name that is not a number and renamed over the old one, so a reader sees the old list or
//! the new one, never half of one. The directory is Gantry's own: numbered files it does not want are
//! removed (also those left by an earlier run).

use crate::metrics::Holding;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file or the directory could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("hpc job mapping {path}: {source}")]
pub struct JobMapError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// The workload ids on each GPU index, each list sorted and without repeats.
pub fn jobs_by_gpu(holdings: &[Holding]) -> BTreeMap<u32, Vec<String>> {
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for h in holdings {
        out.entry(h.gpu_index).or_default().push(h.workload.clone());
    }
    for jobs in out.values_mut() {
        jobs.sort();
        jobs.dedup();
    }
    out
}

/// The text of one GPU's file: the job ids, one per line.
pub fn file_text(jobs: &[String]) -> String {
    jobs.iter().map(|j| format!("{j}\n")).collect()
}

/// A job mapping directory.
#[derive(Clone, Debug)]
pub struct JobMap {
    dir: PathBuf,
}

impl JobMap {
    /// The directory `dir`, created if missing.
    pub fn create(dir: impl Into<PathBuf>) -> Result<JobMap, JobMapError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| JobMapError {
            path: dir.clone(),
            source,
        })?;
        Ok(JobMap { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory say exactly `jobs`: a GPU's file is replaced (atomically) when its list
    /// changed, and the file of every GPU not in `jobs` is removed.
    pub fn write(&self, jobs: &BTreeMap<u32, Vec<String>>) -> Result<(), JobMapError> {
        for (index, list) in jobs.iter().filter(|(_, l)| !l.is_empty()) {
            let path = self.dir.join(index.to_string());
            let text = file_text(list);
            if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
                continue;
            }
            let tmp = self.dir.join(format!(".{index}.gantry-tmp"));
            let fail = |source| JobMapError {
                path: tmp.clone(),
                source,
            };
            let mut file = std::fs::File::create(&tmp).map_err(fail)?;
            file.write_all(text.as_bytes()).map_err(fail)?;
            drop(file);
            std::fs::rename(&tmp, &path).map_err(|source| JobMapError {
                path: path.clone(),
                source,
            })?;
        }
        let entries = std::fs::read_dir(&self.dir).map_err(|source| JobMapError {
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(index) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if jobs.get(&index).is_none_or(|l| l.is_empty()) {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(JobMapError { path, source }),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_cost::GpuFraction;

    fn holding(workload: &str, gpu: u32) -> Holding {
        Holding {
            workload: workload.into(),
            queue: "default".into(),
            owner: "alice".into(),
            kind: "batch",
            gpu_index: gpu,
            gpu_uuid: None,
            fraction: GpuFraction::milli(500),
        }
    }

    fn files(dir: &Path) -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn one_file_per_gpu_index_with_its_jobs_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let map = JobMap::create(dir.path().join("jobs")).unwrap();
        let jobs = jobs_by_gpu(&[
            holding("wl-7", 0),
            holding("wl-3", 0),
            holding("wl-7", 0),
            holding("wl-9", 2),
        ]);
        map.write(&jobs).unwrap();
        let got = files(map.dir());
        assert_eq!(
            got,
            BTreeMap::from([
                ("0".to_string(), "wl-3\nwl-7\n".to_string()),
                ("2".to_string(), "wl-9\n".to_string()),
            ])
        );
    }

    #[test]
    fn a_changed_list_replaces_the_file_and_a_freed_gpu_loses_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let map = JobMap::create(dir.path()).unwrap();
        // A file left by an earlier run, and one that is not a GPU's (kept).
        std::fs::write(dir.path().join("5"), "wl-1\n").unwrap();
        std::fs::write(dir.path().join("README"), "mine").unwrap();
        map.write(&jobs_by_gpu(&[holding("wl-1", 0), holding("wl-2", 1)]))
            .unwrap();
        let before = std::fs::metadata(dir.path().join("0")).unwrap();
        map.write(&jobs_by_gpu(&[holding("wl-1", 0), holding("wl-4", 1)]))
            .unwrap();
        let got = files(dir.path());
        assert_eq!(got.get("0").map(String::as_str), Some("wl-1\n"));
        assert_eq!(got.get("1").map(String::as_str), Some("wl-4\n"));
        assert!(!got.contains_key("5"), "stale file kept: {got:?}");
        assert_eq!(got.get("README").map(String::as_str), Some("mine"));
        // No temporary file is left behind, and an unchanged file is not rewritten.
        assert!(got.keys().all(|k| !k.contains("tmp")), "{got:?}");
        let after = std::fs::metadata(dir.path().join("0")).unwrap();
        assert_eq!(before.modified().unwrap(), after.modified().unwrap());
        // GPU 1 frees: its file goes (an empty file would hide the GPU's DCGM series).
        map.write(&jobs_by_gpu(&[holding("wl-1", 0)])).unwrap();
        assert!(!dir.path().join("1").exists());
        map.write(&BTreeMap::new()).unwrap();
        assert_eq!(files(dir.path()).keys().collect::<Vec<_>>(), vec!["README"]);
    }

    #[test]
    fn a_replaced_file_is_a_new_inode_renamed_into_place() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let map = JobMap::create(dir.path()).unwrap();
        map.write(&jobs_by_gpu(&[holding("wl-1", 3)])).unwrap();
        // A reader holding the old file open keeps reading the old list whole.
        let old = std::fs::File::open(dir.path().join("3")).unwrap();
        let old_inode = old.metadata().unwrap().ino();
        map.write(&jobs_by_gpu(&[holding("wl-2", 3)])).unwrap();
        let new_inode = std::fs::metadata(dir.path().join("3")).unwrap().ino();
        assert_ne!(old_inode, new_inode);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut &old, &mut text).unwrap();
        assert_eq!(text, "wl-1\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("3")).unwrap(),
            "wl-2\n"
        );
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = JobMap::create(&file).unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}

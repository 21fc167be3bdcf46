//! The executor's files on disk: where they are, the pid and exit records, and `/proc` probes.
//!
//! Layout: `<log_dir>/<id>/<attempt>.stdout`, `.stderr`, `.pid` (written right after the child starts)
//! and `.exit` (written by the supervising task when the child has exited). Records are small
//! `key=value` text files, written to a temporary name and renamed into place, so a reader never sees
//! half a record. They are not fsynced: they serve a restarted server, not a rebooted machine (after a
//! reboot every child is gone anyway, and the boot id in the pid record says so).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::ExecError;
use crate::launch::check_id;
use crate::run::Exit;

/// Which output stream of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The files of one attempt of one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptPaths {
    /// The workload's directory, `<log_dir>/<id>`.
    pub dir: PathBuf,
    /// Standard output, `<attempt>.stdout`.
    pub stdout: PathBuf,
    /// Standard error, `<attempt>.stderr`.
    pub stderr: PathBuf,
    /// The pid record, `<attempt>.pid`.
    pub pid: PathBuf,
    /// The exit record, `<attempt>.exit`.
    pub exit: PathBuf,
}

impl AttemptPaths {
    /// The files of `attempt` of workload `id` under `log_dir` (the id is checked, nothing is created).
    pub fn new(log_dir: &Path, id: &str, attempt: u32) -> Result<Self, ExecError> {
        let dir = workload_dir(log_dir, id)?;
        let file = |ext: &str| dir.join(format!("{attempt}.{ext}"));
        Ok(AttemptPaths {
            stdout: file("stdout"),
            stderr: file("stderr"),
            pid: file("pid"),
            exit: file("exit"),
            dir,
        })
    }

    /// The log file of `stream`.
    pub fn log(&self, stream: Stream) -> &Path {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }
}

/// The directory of workload `id`, `<log_dir>/<id>`, after checking that the id is a safe name.
pub fn workload_dir(log_dir: &Path, id: &str) -> Result<PathBuf, ExecError> {
    check_id(id)?;
    Ok(log_dir.join(id))
}

/// The attempt numbers that have a pid record under `<log_dir>/<id>`, ascending (empty if none).
pub fn recorded_attempts(log_dir: &Path, id: &str) -> Result<Vec<u32>, ExecError> {
    let dir = workload_dir(log_dir, id)?;
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ExecError::io(dir, e)),
    };
    let mut attempts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ExecError::io(&dir, e))?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_suffix(".pid"))
            .and_then(|s| s.parse::<u32>().ok())
        {
            attempts.push(n);
        }
    }
    attempts.sort_unstable();
    Ok(attempts)
}

/// What a restarted server needs to find a child again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidRecord {
    /// Process id of the workload's main process.
    pub pid: u32,
    /// Its process group id (equal to `pid`: the child leads its own group).
    pub pgid: u32,
    /// Its start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`), against pid reuse.
    pub start_ticks: u64,
    /// The kernel's boot id when it started (`/proc/sys/kernel/random/boot_id`); empty if unknown.
    pub boot_id: String,
    /// Wall-clock start time, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

impl PidRecord {
    /// The record as `key=value` lines.
    pub fn to_text(&self) -> String {
        format!(
            "pid={}\npgid={}\nstart_ticks={}\nboot_id={}\nstarted_unix_ms={}\n",
            self.pid, self.pgid, self.start_ticks, self.boot_id, self.started_unix_ms
        )
    }

    /// Reads a record written by [`PidRecord::to_text`]; `path` is only for the error.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ExecError> {
        let fields = Fields::new(text, path)?;
        Ok(PidRecord {
            pid: fields.number("pid")?,
            pgid: fields.number("pgid")?,
            start_ticks: fields.number("start_ticks")?,
            boot_id: fields.get("boot_id").unwrap_or_default().to_string(),
            started_unix_ms: fields.number("started_unix_ms")?,
        })
    }

    /// Reads the record at `path`.
    pub fn read(path: &Path) -> Result<Self, ExecError> {
        let text = fs::read_to_string(path).map_err(|e| ExecError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// The wall-clock start time.
    pub fn started_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_unix_ms)
    }

    /// Whether the recorded process still runs: same boot, same pid, same start time, not a zombie.
    pub fn is_alive(&self) -> bool {
        if !self.boot_id.is_empty() && boot_id().is_some_and(|b| b != self.boot_id) {
            return false;
        }
        proc_stat(self.pid).is_some_and(|s| s.start_ticks == self.start_ticks && s.is_running())
    }
}

/// An exit as read back from an `.exit` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitRecord {
    /// The exit.
    pub exit: Exit,
    /// When it was recorded, milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
}

impl ExitRecord {
    /// The record as `key=value` lines (an unknown code or signal is an empty value).
    pub fn to_text(&self) -> String {
        let opt = |v: Option<i32>| v.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "code={}\nsignal={}\ntimed_out={}\ncancelled={}\nduration_ms={}\nfinished_unix_ms={}\n",
            opt(self.exit.code),
            opt(self.exit.signal),
            self.exit.timed_out,
            self.exit.cancelled,
            self.exit.duration.as_millis(),
            self.finished_unix_ms
        )
    }

    /// Reads a record written by [`ExitRecord::to_text`]; `path` is only for the error.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ExecError> {
        let fields = Fields::new(text, path)?;
        Ok(ExitRecord {
            exit: Exit {
                code: fields.optional("code")?,
                signal: fields.optional("signal")?,
                timed_out: fields.flag("timed_out")?,
                cancelled: fields.flag("cancelled")?,
                duration: Duration::from_millis(fields.number("duration_ms")?),
            },
            finished_unix_ms: fields.number("finished_unix_ms")?,
        })
    }

    /// Reads the record at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, ExecError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ExecError::io(path, e)),
        }
    }

    /// When it was recorded.
    pub fn finished_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.finished_unix_ms)
    }
}

/// The `key=value` lines of a record.
struct Fields<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    path: &'a Path,
}

impl<'a> Fields<'a> {
    fn new(text: &'a str, path: &'a Path) -> Result<Self, ExecError> {
        let mut pairs = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| ExecError::BadRecord {
                path: path.to_path_buf(),
                reason: format!("line {line:?} is not key=value"),
            })?;
            pairs.push((k.trim(), v.trim()));
        }
        Ok(Fields { pairs, path })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn bad(&self, key: &str, what: &str) -> ExecError {
        ExecError::BadRecord {
            path: self.path.to_path_buf(),
            reason: format!("`{key}` {what}"),
        }
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T, ExecError> {
        let v = self.get(key).ok_or_else(|| self.bad(key, "is missing"))?;
        v.parse().map_err(|_| self.bad(key, "is not a number"))
    }

    fn optional(&self, key: &str) -> Result<Option<i32>, ExecError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| self.bad(key, "is not a number")),
        }
    }

    fn flag(&self, key: &str) -> Result<bool, ExecError> {
        match self.get(key) {
            Some("true") => Ok(true),
            Some("false") | None => Ok(false),
            Some(_) => Err(self.bad(key, "is not true or false")),
        }
    }
}

/// Writes `text` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), ExecError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, text).map_err(|e| ExecError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ExecError::io(path, e))
}

/// Milliseconds since the Unix epoch of `t` (0 before the epoch).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The fields of `/proc/<pid>/stat` the executor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Process state (`R`, `S`, `D`, `Z`, ...).
    pub state: char,
    /// Process group id.
    pub pgrp: i64,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

impl ProcStat {
    /// Whether the process is alive (not a zombie or dead).
    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Parses the text of a `/proc/<pid>/stat` file (the command name may hold spaces and parentheses).
    pub fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state); field N is fields[N - 3].
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start_ticks: fields.get(19)?.parse().ok()?,
        })
    }
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ProcStat::parse(&text)
}

/// The kernel's boot id, if readable (read once per process).
pub fn boot_id() -> Option<String> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_survives_odd_command_names() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = ProcStat::parse(text).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.start_ticks, 987654);
        assert!(s.is_running());
        assert!(ProcStat::parse("12 (x) Z 1").is_none());
    }

    #[test]
    fn our_own_stat_is_readable() {
        let s = proc_stat(std::process::id()).unwrap();
        assert!(s.is_running());
        assert!(s.start_ticks > 0);
    }

    #[test]
    fn records_round_trip() {
        let p = Path::new("x.pid");
        let r = PidRecord {
            pid: 10,
            pgid: 10,
            start_ticks: 99,
            boot_id: "abc".into(),
            started_unix_ms: 1234,
        };
        assert_eq!(PidRecord::parse(&r.to_text(), p).unwrap(), r);
        let e = ExitRecord {
            exit: Exit {
                code: None,
                signal: Some(9),
                timed_out: true,
                cancelled: false,
                duration: Duration::from_millis(1500),
            },
            finished_unix_ms: 77,
        };
        assert_eq!(ExitRecord::parse(&e.to_text(), p).unwrap(), e);
        assert!(PidRecord::parse("pid=x\n", p).is_err());
        assert!(PidRecord::parse("garbage", p).is_err());
        assert!(PidRecord::parse("", p).is_err());
    }
}

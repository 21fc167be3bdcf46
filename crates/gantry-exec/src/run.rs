//! Starting a child, supervising it, timeouts and cancel: [`start`], [`Running`], [`Exit`].
//!
//! Every workload leads its own process group, so signals go to the group: the workload's children
//! and grandchildren get them too (unless they leave the group with `setsid`/`setpgid`; only cgroups
//! would hold those). Stopping (timeout or cancel) is SIGTERM to the group, the grace period, then
//! SIGKILL to the group. When the main process exits, whatever is left of its group gets the same
//! sequence (with the launch's grace), and the exit is reported once the group is empty, so a reported
//! exit means the workload's processes are gone and its GPUs are free.
//!
//! Children are not killed when the server exits or drops a [`Running`]: a restarted server finds
//! them again with [`crate::reconcile`]. They also do not get the terminal's Ctrl-C, being in their
//! own group.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};

use crate::error::ExecError;
use crate::launch::{Launch, Limits};
use crate::record::{
    AttemptPaths, ExitRecord, PidRecord, boot_id, proc_stat, unix_ms, write_atomic,
};

/// How often the group is probed while waiting for leftovers of an exited main process.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Exit code of the main process, if it exited normally.
    pub code: Option<i32>,
    /// Signal that ended the main process, if one did.
    pub signal: Option<i32>,
    /// The executor stopped it because its timeout passed.
    pub timed_out: bool,
    /// It was cancelled.
    pub cancelled: bool,
    /// From start until the main process was reaped, on tokio's clock ([`tokio::time::Instant`],
    /// which tests may pause); for a child found again after a restart, on the wall clock.
    pub duration: Duration,
}

impl Exit {
    /// Whether the attempt succeeded: exit code 0, neither timed out nor cancelled.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled
    }

    /// Whether the outcome is unknown (neither code nor signal): a child found again after a
    /// restart whose exit nobody could observe.
    pub fn unknown(&self) -> bool {
        self.code.is_none() && self.signal.is_none()
    }
}

/// A started attempt: its identity, a way to cancel it, and its exit once it comes.
///
/// Clones share the same child; any of them may cancel or wait.
#[derive(Clone, Debug)]
pub struct Running {
    workload_id: String,
    attempt: u32,
    record: PidRecord,
    paths: AttemptPaths,
    control: mpsc::UnboundedSender<Duration>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Running {
    /// The workload id.
    pub fn workload_id(&self) -> &str {
        &self.workload_id
    }

    /// The attempt number.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Process id of the main process.
    pub fn pid(&self) -> u32 {
        self.record.pid
    }

    /// Process group id (equal to the pid).
    pub fn pgid(&self) -> u32 {
        self.record.pgid
    }

    /// The pid record written for this attempt.
    pub fn record(&self) -> &PidRecord {
        &self.record
    }

    /// The attempt's files.
    pub fn paths(&self) -> &AttemptPaths {
        &self.paths
    }

    /// Asks for a stop: SIGTERM to the group now, SIGKILL after `grace` if anything is left.
    ///
    /// Does nothing once the attempt has exited; a second cancel can only shorten the grace.
    pub fn cancel(&self, grace: Duration) {
        // A closed channel means the supervisor is done: nothing left to cancel.
        let _ = self.control.send(grace);
    }

    /// The exit, if the attempt has already ended.
    pub fn try_exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Waits for the attempt to end (main process reaped and its group empty).
    pub async fn wait(&self) -> Result<Exit, ExecError> {
        let mut rx = self.exit.clone();
        let gone = || ExecError::SupervisorGone {
            id: self.workload_id.clone(),
            attempt: self.attempt,
        };
        let seen = rx.wait_for(Option::is_some).await.map_err(|_| gone())?;
        seen.clone().ok_or_else(gone)
    }
}

/// Starts one attempt: checks the launch, creates its files, spawns the child in its own process
/// group, writes the pid record, and hands the child to a supervising task.
///
/// Must be called inside a tokio runtime with I/O and time enabled. The child gets the server's
/// environment, then `launch.env`, then gantry's variables ([`Launch::gantry_env`]); stdin is
/// `/dev/null`; stdout and stderr go to `<attempt>.stdout` and `<attempt>.stderr`. An attempt number
/// that already has files is refused ([`ExecError::AttemptExists`]), so attempts never interleave.
pub fn start(launch: &Launch) -> Result<Running, ExecError> {
    launch.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| ExecError::NoRuntime)?;
    let paths = AttemptPaths::new(&launch.log_dir, &launch.workload_id, launch.attempt)?;
    fs::create_dir_all(&paths.dir).map_err(|e| ExecError::io(&paths.dir, e))?;
    let exists = || ExecError::AttemptExists {
        id: launch.workload_id.clone(),
        attempt: launch.attempt,
        dir: paths.dir.clone(),
    };
    if paths.pid.exists() || paths.exit.exists() {
        return Err(exists());
    }
    let stdout = create_log(&paths.stdout).map_err(|e| match e {
        Some(e) => e,
        None => exists(),
    })?;
    let stderr = match create_log(&paths.stderr) {
        Ok(f) => f,
        Err(e) => {
            let _ = fs::remove_file(&paths.stdout);
            return Err(e.unwrap_or_else(exists));
        }
    };
    let remove_logs = || {
        let _ = fs::remove_file(&paths.stdout);
        let _ = fs::remove_file(&paths.stderr);
    };

    let argv = launch.argv();
    let program = argv.first().copied().unwrap_or_default().to_string();
    let mut cmd = Command::new(&program);
    cmd.args(argv.iter().skip(1))
        .envs(&launch.env)
        .envs(launch.gantry_env())
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(dir) = &launch.working_dir {
        cmd.current_dir(dir);
    }
    if let Some(user) = launch.run_as {
        cmd.gid(user.gid).uid(user.uid);
    }
    let limits = launch.limits;
    if limits != Limits::default() {
        // SAFETY: the closure only calls setrlimit, which is async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || apply_limits(&limits));
        }
    }

    let started = Instant::now();
    let started_wall = SystemTime::now();
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(source) => {
            remove_logs();
            return Err(ExecError::Spawn { program, source });
        }
    };
    let Some(pid) = child.id() else {
        // Only possible if the child was already reaped, which nothing here does.
        remove_logs();
        return Err(ExecError::Spawn {
            program,
            source: io::Error::other("the child has no pid"),
        });
    };
    // The child is ours and not yet reaped, so its /proc entry exists even if it already exited.
    let start_ticks = proc_stat(pid).map(|s| s.start_ticks).unwrap_or(0);
    let record = PidRecord {
        pid,
        pgid: pid,
        start_ticks,
        boot_id: boot_id().unwrap_or_default(),
        started_unix_ms: unix_ms(started_wall),
    };
    if let Err(e) = write_atomic(&paths.pid, &record.to_text()) {
        // A child no restarted server could find again is not allowed to run.
        signal_group(pid, libc::SIGKILL);
        drop(child); // tokio reaps dropped children in the background
        return Err(e);
    }

    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (exit_tx, exit_rx) = watch::channel(None);
    let supervisor = Supervisor {
        pgid: pid,
        started,
        timeout: launch.timeout,
        grace: launch.grace,
        exit_path: paths.exit.clone(),
    };
    runtime.spawn(supervisor.run(child, control_rx, exit_tx));
    Ok(Running {
        workload_id: launch.workload_id.clone(),
        attempt: launch.attempt,
        record,
        paths,
        control: control_tx,
        exit: exit_rx,
    })
}

/// Creates a log file that must not exist yet; `Err(None)` when it does.
fn create_log(path: &std::path::Path) -> Result<File, Option<ExecError>> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => None,
            _ => Some(ExecError::io(path, e)),
        })
}

/// Sets each configured limit, soft = hard. Runs in the child between fork and exec.
fn apply_limits(limits: &Limits) -> io::Result<()> {
    let wanted = [
        (libc::RLIMIT_AS, limits.address_space),
        (libc::RLIMIT_NOFILE, limits.open_files),
        (libc::RLIMIT_CPU, limits.cpu_seconds),
    ];
    for (resource, value) in wanted {
        if let Some(v) = value {
            let limit = libc::rlimit {
                rlim_cur: v as libc::rlim_t,
                rlim_max: v as libc::rlim_t,
            };
            // SAFETY: setrlimit reads the struct we pass and nothing else.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Sends `signal` to process group `pgid`; refuses groups 0 and 1 (ourselves, init). Returns false if
/// the group no longer exists.
pub(crate) fn signal_group(pgid: u32, signal: libc::c_int) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: killpg only sends a signal to a group that we name explicitly.
    unsafe { libc::killpg(pgid, signal) == 0 }
}

/// Whether a live (non-zombie) process is still in group `pgid`.
pub(crate) fn group_alive(pgid: u32) -> bool {
    if !signal_group(pgid, 0) {
        return false;
    }
    // Something answers, maybe only zombies waiting for their new parent: look for a live member.
    let Ok(entries) = fs::read_dir("/proc") else {
        return true;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .any(|s| s.pgrp == i64::from(pgid) && s.is_running())
}

/// Why the executor is stopping a child.
#[derive(Clone, Copy, Debug, Default)]
struct Stopping {
    timed_out: bool,
    cancelled: bool,
    kill_at: Option<Instant>,
    killed: bool,
}

impl Stopping {
    /// Starts (or shortens) the stop sequence: SIGTERM now unless already sent, SIGKILL at `now + grace`.
    fn begin(&mut self, pgid: u32, grace: Duration) {
        let at = Instant::now() + grace;
        if self.kill_at.is_none() {
            signal_group(pgid, libc::SIGTERM);
        }
        self.kill_at = Some(self.kill_at.map_or(at, |k| k.min(at)));
    }

    /// SIGKILL if the grace has passed; true once it was sent.
    fn kill_if_due(&mut self, pgid: u32) -> bool {
        if !self.killed && self.kill_at.is_some_and(|k| Instant::now() >= k) {
            signal_group(pgid, libc::SIGKILL);
            self.killed = true;
        }
        self.killed
    }
}

/// The task that owns a child until it has exited and its group is empty.
struct Supervisor {
    pgid: u32,
    started: Instant,
    timeout: Option<Duration>,
    grace: Duration,
    exit_path: std::path::PathBuf,
}

impl Supervisor {
    async fn run(
        self,
        mut child: Child,
        mut control: mpsc::UnboundedReceiver<Duration>,
        exit_tx: watch::Sender<Option<Exit>>,
    ) {
        let deadline = self.timeout.map(|t| self.started + t);
        let mut stop = Stopping::default();
        let mut control_open = true;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                () = sleep_opt(deadline), if !stop.timed_out && !stop.cancelled => {
                    stop.timed_out = true;
                    stop.begin(self.pgid, self.grace);
                }
                grace = control.recv(), if control_open => match grace {
                    Some(grace) => {
                        stop.cancelled = true;
                        stop.begin(self.pgid, grace);
                    }
                    None => control_open = false,
                },
                () = sleep_opt(stop.kill_at), if !stop.killed => {
                    stop.kill_if_due(self.pgid);
                }
            }
        };
        let duration = self.started.elapsed();

        // The main process is gone; its group may not be.
        if group_alive(self.pgid) {
            if stop.kill_at.is_none() {
                stop.begin(self.pgid, self.grace);
            }
            while group_alive(self.pgid) {
                while let Ok(grace) = control.try_recv() {
                    stop.cancelled = true;
                    stop.begin(self.pgid, grace);
                }
                if stop.kill_if_due(self.pgid) {
                    // SIGKILL cannot be refused; give the kernel a moment and stop probing.
                    for _ in 0..50 {
                        if !group_alive(self.pgid) {
                            break;
                        }
                        sleep(GROUP_POLL).await;
                    }
                    break;
                }
                sleep(GROUP_POLL).await;
            }
        }

        let (code, signal) = match status {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                (status.code(), status.signal())
            }
            Err(_) => (None, None),
        };
        let exit = Exit {
            code,
            signal,
            timed_out: stop.timed_out,
            cancelled: stop.cancelled,
            duration,
        };
        let record = ExitRecord {
            exit: exit.clone(),
            finished_unix_ms: unix_ms(SystemTime::now()),
        };
        // Without the record a restarted server reports this attempt lost; the exit is still
        // reported to this server below.
        let _ = write_atomic(&self.exit_path, &record.to_text());
        exit_tx.send_replace(Some(exit));
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

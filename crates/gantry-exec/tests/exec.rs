//! The executor against real processes: no mocks.

use std::fs;
use std::path::Path;
use std::time::Duration;

use gantry_exec::record::{ProcStat, boot_id, proc_stat};
use gantry_exec::{
    AssignedGpu, ExecError, Follow, Launch, Limits, PidRecord, Reconciled, RunAs, Stream, read_log,
    reconcile, start,
};
use tokio::time::{Instant, sleep};

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn launch(dir: &Path, id: &str, script: &str) -> Launch {
    let mut l = Launch::new(id, 1, sh(script), dir);
    l.grace = Duration::from_secs(2);
    l
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Waits (up to 5 s) until the file holds a line, returning its first line.
async fn first_line(path: &Path) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Some(line) = read(path).lines().next() {
            return line.to_string();
        }
        sleep(Duration::from_millis(10)).await;
    }
    panic!("nothing written to {}", path.display());
}

/// Whether a process with this pid is gone (or a zombie, for a parent that does not reap).
fn gone(pid: u32, was: Option<ProcStat>) -> bool {
    match proc_stat(pid) {
        None => true,
        Some(now) => !now.is_running() || was.is_some_and(|w| w.start_ticks != now.start_ticks),
    }
}

#[tokio::test]
async fn runs_to_completion_with_code_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let l = launch(dir.path(), "w1", "echo out; echo err >&2; exit 3");
    let r = start(&l).unwrap();
    assert_eq!(r.pgid(), r.pid());
    let exit = r.wait().await.unwrap();
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.signal, None);
    assert!(!exit.success() && !exit.timed_out && !exit.cancelled);
    assert_eq!(read(&dir.path().join("w1/1.stdout")), "out\n");
    assert_eq!(read(&dir.path().join("w1/1.stderr")), "err\n");
    let record = PidRecord::read(&dir.path().join("w1/1.pid")).unwrap();
    assert_eq!(record.pid, r.pid());
    assert!(record.start_ticks > 0);
    assert_eq!(r.try_exit(), Some(exit.clone()));
    // The exit is on disk for a restarted server.
    match &reconcile(dir.path(), &["w1"])[0].1 {
        Reconciled::Finished {
            attempt, exit: e, ..
        } => {
            assert_eq!(*attempt, 1);
            assert_eq!(e.code, Some(3));
        }
        other => panic!("{other:?}"),
    }

    let ok = start(&launch(dir.path(), "w2", "true")).unwrap();
    assert!(ok.wait().await.unwrap().success());
}

#[tokio::test]
async fn attempts_never_share_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = launch(dir.path(), "w", "echo $GANTRY_ATTEMPT");
    start(&l).unwrap().wait().await.unwrap();
    assert!(matches!(
        start(&l),
        Err(ExecError::AttemptExists { attempt: 1, .. })
    ));
    l.attempt = 2;
    start(&l).unwrap().wait().await.unwrap();
    assert_eq!(read(&dir.path().join("w/1.stdout")), "1\n");
    assert_eq!(read(&dir.path().join("w/2.stdout")), "2\n");
}

#[tokio::test]
async fn env_and_gpus_are_visible_to_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"echo "${CUDA_VISIBLE_DEVICES-unset}|$NVIDIA_VISIBLE_DEVICES|$GANTRY_GPU_INDICES|$GANTRY_WORKLOAD_ID|$GANTRY_ATTEMPT|$FOO""#;
    let mut l = launch(dir.path(), "gpu", script);
    l.attempt = 4;
    l.env.insert("FOO".into(), "bar baz".into());
    // A user's own value is overridden: gantry decides what is visible.
    l.env
        .insert("CUDA_VISIBLE_DEVICES".into(), "all-of-them".into());
    l.gpus = vec![
        AssignedGpu {
            index: 1,
            uuid: "GPU-1111".into(),
        },
        AssignedGpu {
            index: 2,
            uuid: "MIG-2222".into(),
        },
    ];
    start(&l).unwrap().wait().await.unwrap();
    assert_eq!(
        read(&dir.path().join("gpu/4.stdout")),
        "GPU-1111,MIG-2222|GPU-1111,MIG-2222|1,2|gpu|4|bar baz\n"
    );

    let none = launch(dir.path(), "cpu", script);
    start(&none).unwrap().wait().await.unwrap();
    assert_eq!(read(&dir.path().join("cpu/1.stdout")), "|void||cpu|1|\n");
}

#[tokio::test]
async fn working_dir_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut l = launch(dir.path(), "wd", "pwd");
    l.working_dir = Some(work.path().to_path_buf());
    start(&l).unwrap().wait().await.unwrap();
    let printed = read(&dir.path().join("wd/1.stdout"));
    assert_eq!(
        fs::canonicalize(printed.trim()).unwrap(),
        fs::canonicalize(work.path()).unwrap()
    );

    l.working_dir = Some(work.path().join("missing"));
    l.workload_id = "wd2".into();
    assert!(matches!(start(&l), Err(ExecError::WorkingDir { .. })));
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = launch(dir.path(), "slow", "sleep 100 & echo $!; sleep 100");
    l.timeout = Some(Duration::from_millis(300));
    l.grace = Duration::from_millis(500);
    let began = Instant::now();
    let r = start(&l).unwrap();
    let grandchild: u32 = first_line(&dir.path().join("slow/1.stdout"))
        .await
        .parse()
        .unwrap();
    let before = proc_stat(grandchild);
    assert_eq!(before.map(|s| s.pgrp), Some(i64::from(r.pgid())));
    let exit = r.wait().await.unwrap();
    assert!(exit.timed_out && !exit.cancelled);
    assert_eq!(exit.signal, Some(libc::SIGTERM));
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(gone(grandchild, before), "grandchild {grandchild} survived");
    assert!(gone(r.pid(), None));
}

#[tokio::test]
async fn cancel_lets_a_trapping_child_exit_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let l = launch(
        dir.path(),
        "trap",
        r#"trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done"#,
    );
    let r = start(&l).unwrap();
    first_line(&dir.path().join("trap/1.stdout")).await;
    let began = Instant::now();
    r.cancel(Duration::from_secs(5));
    let exit = r.wait().await.unwrap();
    assert!(exit.cancelled && !exit.timed_out);
    assert_eq!(exit.code, Some(7));
    assert!(began.elapsed() < Duration::from_secs(3), "waited for grace");
    assert_eq!(read(&dir.path().join("trap/1.stdout")), "ready\nbye\n");
}

#[tokio::test]
async fn cancel_kills_a_child_ignoring_sigterm_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let l = launch(
        dir.path(),
        "stubborn",
        "trap '' TERM; sleep 100 & echo $!; while :; do sleep 0.05; done",
    );
    let r = start(&l).unwrap();
    let grandchild: u32 = first_line(&dir.path().join("stubborn/1.stdout"))
        .await
        .parse()
        .unwrap();
    let before = proc_stat(grandchild);
    let began = Instant::now();
    let grace = Duration::from_millis(300);
    r.cancel(grace);
    let exit = r.wait().await.unwrap();
    let took = began.elapsed();
    assert!(exit.cancelled);
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert!(took >= grace && took < Duration::from_secs(3), "{took:?}");
    assert!(gone(grandchild, before));
}

#[tokio::test]
async fn leftovers_of_an_exited_main_process_are_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = launch(dir.path(), "stray", "sleep 100 & echo $!");
    l.grace = Duration::from_millis(300);
    let r = start(&l).unwrap();
    let exit = r.wait().await.unwrap();
    assert_eq!(exit.code, Some(0));
    assert!(exit.success());
    let stray: u32 = read(&dir.path().join("stray/1.stdout"))
        .trim()
        .parse()
        .unwrap();
    assert!(gone(stray, None), "stray {stray} survived the workload");
}

#[tokio::test]
async fn resource_limits_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = launch(dir.path(), "lim", "ulimit -n; ulimit -v; ulimit -t");
    l.limits = Limits {
        open_files: Some(123),
        address_space: Some(512 << 20),
        cpu_seconds: Some(60),
    };
    let exit = start(&l).unwrap().wait().await.unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(read(&dir.path().join("lim/1.stdout")), "123\n524288\n60\n");
}

#[tokio::test]
async fn runs_as_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: switching users needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut l = launch(dir.path(), "nobody", "id -u; id -g; id -G");
    l.run_as = Some(RunAs {
        uid: 65534,
        gid: 65534,
    });
    l.working_dir = Some("/".into());
    let exit = start(&l).unwrap().wait().await.unwrap();
    assert!(
        exit.success(),
        "{exit:?} {}",
        read(&dir.path().join("nobody/1.stderr"))
    );
    assert_eq!(
        read(&dir.path().join("nobody/1.stdout")),
        "65534\n65534\n65534\n"
    );
}

#[tokio::test]
async fn a_missing_command_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let l = Launch::new("nope", 1, ["/no/such/program", "x"], dir.path());
    let err = start(&l).unwrap_err();
    assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("/no/such/program") && text.contains("No such file"),
        "{text}"
    );
    // Nothing is left behind, so the same attempt can start once fixed.
    assert!(!dir.path().join("nope/1.stdout").exists());
    assert!(!dir.path().join("nope/1.pid").exists());
    let empty = Launch::new("nope", 1, Vec::<String>::new(), dir.path());
    assert!(matches!(start(&empty), Err(ExecError::EmptyCommand)));
    let bad_id = Launch::new("../etc", 1, ["true"], dir.path());
    assert!(matches!(start(&bad_id), Err(ExecError::InvalidId(_))));
}

#[tokio::test]
async fn reconcile_finds_live_children_and_loses_dead_ones() {
    let dir = tempfile::tempdir().unwrap();
    let live = start(&launch(dir.path(), "live", "sleep 100")).unwrap();
    let done = start(&launch(dir.path(), "done", "true")).unwrap();
    done.wait().await.unwrap();
    // As if the server died before it could record the exit.
    fs::remove_file(dir.path().join("done/1.exit")).unwrap();
    // A pid record whose pid now belongs to someone else (this test process).
    fs::create_dir_all(dir.path().join("reused")).unwrap();
    let me = proc_stat(std::process::id()).unwrap();
    let forged = PidRecord {
        pid: std::process::id(),
        pgid: std::process::id(),
        start_ticks: me.start_ticks + 1,
        boot_id: boot_id().unwrap_or_default(),
        started_unix_ms: 0,
    };
    fs::write(dir.path().join("reused/1.pid"), forged.to_text()).unwrap();

    let found = reconcile(dir.path(), &["live", "done", "reused", "never", "../x"]);
    let names: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(names, ["live", "done", "reused", "never", "../x"]);
    let Reconciled::Found(adopted) = &found[0].1 else {
        panic!("{:?}", found[0].1);
    };
    assert_eq!(adopted.record.pid, live.pid());
    assert_eq!(adopted.attempt, 1);
    assert!(adopted.is_alive());
    for (id, outcome) in &found[1..] {
        assert!(
            matches!(outcome, Reconciled::Lost { .. }),
            "{id}: {outcome:?}"
        );
    }
    assert!(matches!(
        found[1].1,
        Reconciled::Lost {
            attempt: Some(1),
            ..
        }
    ));

    // Stopping through the adopted handle reaches the process group.
    adopted
        .stop(Duration::from_secs(2), Duration::from_millis(20), false)
        .await;
    let exit = live.wait().await.unwrap();
    assert_eq!(exit.signal, Some(libc::SIGTERM));
    assert!(!adopted.is_alive());
}

#[tokio::test]
async fn an_adopted_child_is_watched_by_polling() {
    // A process that is not our child (a grandchild, reparented when its shell exits), with a pid
    // record written by hand: what a restarted server sees.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .args(["-c", "sleep 0.4 >/dev/null 2>&1 & echo $!"])
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let stat = proc_stat(pid).unwrap();
    let record = PidRecord {
        pid,
        pgid: u32::try_from(stat.pgrp).unwrap(),
        start_ticks: stat.start_ticks,
        boot_id: boot_id().unwrap_or_default(),
        started_unix_ms: 0,
    };
    fs::create_dir_all(dir.path().join("orphan")).unwrap();
    fs::write(dir.path().join("orphan/3.pid"), record.to_text()).unwrap();
    let found = reconcile(dir.path(), &["orphan"]);
    let Reconciled::Found(adopted) = &found[0].1 else {
        panic!("{:?}", found[0].1);
    };
    assert_eq!(adopted.attempt, 3);
    let exit = adopted.wait(Duration::from_millis(20)).await.unwrap();
    assert!(exit.unknown() && !exit.success());
    // The outcome is now recorded: a later reconcile reports it finished, with an unknown code.
    match &reconcile(dir.path(), &["orphan"])[0].1 {
        Reconciled::Finished {
            attempt: 3, exit, ..
        } => assert!(exit.unknown()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn logs_are_read_by_range_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let l = launch(
        dir.path(),
        "talk",
        "for i in 1 2 3 4 5; do echo line$i; sleep 0.03; done; echo oops >&2",
    );
    let r = start(&l).unwrap();
    let mut follow = Follow::new(
        dir.path(),
        "talk",
        1,
        Stream::Stdout,
        0,
        4,
        Duration::from_millis(10),
    )
    .unwrap();
    let mut seen = Vec::new();
    while let Some(chunk) = follow.next().await.unwrap() {
        assert!(chunk.len() <= 4);
        seen.extend(chunk);
    }
    assert_eq!(
        String::from_utf8(seen).unwrap(),
        "line1\nline2\nline3\nline4\nline5\n"
    );
    assert!(r.try_exit().is_some());

    let chunk = read_log(dir.path(), "talk", 1, Stream::Stdout, 6, 5).unwrap();
    assert_eq!(chunk.data, b"line2");
    assert_eq!(chunk.next_offset, 11);
    assert_eq!(chunk.size, 30);
    let end = read_log(dir.path(), "talk", 1, Stream::Stdout, 99, 5).unwrap();
    assert!(end.data.is_empty());
    let err = read_log(dir.path(), "talk", 1, Stream::Stderr, 0, 100).unwrap();
    assert_eq!(err.data, b"oops\n");
    assert!(read_log(dir.path(), "talk", 9, Stream::Stdout, 0, 100).is_err());
    assert!(read_log(dir.path(), "../talk", 1, Stream::Stdout, 0, 100).is_err());
}

#[tokio::test]
async fn cleanup_keeps_a_running_workload() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(&launch(dir.path(), "keep", "sleep 100")).unwrap();
    assert!(matches!(
        gantry_exec::cleanup(dir.path(), "keep"),
        Err(ExecError::StillRunning { .. })
    ));
    r.cancel(Duration::ZERO);
    r.wait().await.unwrap();
    assert!(gantry_exec::cleanup(dir.path(), "keep").unwrap());
    assert!(!dir.path().join("keep").exists());
}

//! The harness of the server tests: the real `gantry serve` as a child process on a free loopback
//! port with a temporary database, a small blocking HTTP client, the CLI, and `/proc` probes.
//!
//! A [`Server`] kills its process when dropped, and with it the process groups of the workloads it
//! started (found by their pid records), so a failing test leaves nothing behind.

#![allow(dead_code)]

use serde_json::Value;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The simulated GPUs every test server has: two nodes of two GPUs each.
pub const GPUS: &str = "2xH100-80GB,2xA100-40GB";

/// The `gantry` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gantry")
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` every 25 ms until it gives a value; panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
    /// Headers.
    pub headers: ureq::http::HeaderMap,
}

impl Resp {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks the documented error shape and a 4xx status; returns (code, field).
    pub fn api_error(&self) -> (String, Option<String>) {
        assert!(
            (400..500).contains(&self.status),
            "expected a 4xx, got {}: {}",
            self.status,
            self.body
        );
        let v = self.json();
        let e = &v["error"];
        let code = e["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error.code missing: {}", self.body));
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error.message missing: {}",
            self.body
        );
        let keys: Vec<&String> = e
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert!(
            keys.iter()
                .all(|k| ["code", "message", "field"].contains(&k.as_str())),
            "unexpected keys in {}",
            self.body
        );
        (code.to_string(), e["field"].as_str().map(str::to_string))
    }
}

/// A blocking HTTP client for one server, optionally with a bearer token.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    token: Option<String>,
}

impl Http {
    /// A client for `base` with `token`.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        Http {
            agent,
            base: base.to_string(),
            token: token.map(str::to_string),
        }
    }

    /// Sends a request; `Err` only when no answer came (connection refused, reset).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp, ureq::Error> {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.to_vec()).expect("a valid request");
        let mut resp = self.agent.run(req)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()?;
        Ok(Resp {
            status,
            body,
            headers,
        })
    }

    /// Sends a request and panics if no answer came.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
    }

    /// GET.
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    /// POST a JSON body.
    pub fn post_json(&self, path: &str, body: &str) -> Resp {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// POST a YAML body.
    pub fn post_yaml(&self, path: &str, body: &str) -> Resp {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/yaml")],
            body.as_bytes(),
        )
    }

    /// Submits a JSON spec and expects 201; returns the id.
    pub fn submit(&self, spec: &Value) -> String {
        let r = self.post_json("/api/workloads", &spec.to_string());
        assert_eq!(r.status, 201, "submit: {}", r.body);
        r.json()["id"].as_str().expect("an id").to_string()
    }

    /// POST /api/workloads/ID/cancel.
    pub fn cancel(&self, id: &str) -> Resp {
        self.request("POST", &format!("/api/workloads/{id}/cancel"), &[], b"")
    }

    /// The workload view of `id` (panics unless 200).
    pub fn workload(&self, id: &str) -> Value {
        let r = self.get(&format!("/api/workloads/{id}/status"));
        assert_eq!(r.status, 200, "status {id}: {}", r.body);
        r.json()["workload"].clone()
    }

    /// The events of `id`.
    pub fn events(&self, id: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/workloads/{id}/status"));
        assert_eq!(r.status, 200, "status {id}: {}", r.body);
        r.json()["events"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `id` is in one of `states`; returns its view.
    pub fn wait_state(&self, id: &str, states: &[&str], timeout: Duration) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let last = self.workload(id);
            if states.contains(&last["state"].as_str().unwrap_or("")) {
                return last;
            }
            assert!(
                Instant::now() < end,
                "{id} not in {states:?} after {timeout:?}: {last}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Every workload visible to this client, all pages, oldest first.
    pub fn all_workloads(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/api/workloads?limit=1000&order=oldest&after={a}"),
                None => "/api/workloads?limit=1000&order=oldest".to_string(),
            };
            let r = self.get(&path);
            assert_eq!(r.status, 200, "list: {}", r.body);
            let v = r.json();
            out.extend(v["items"].as_array().cloned().unwrap_or_default());
            match v["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => return out,
            }
        }
    }

    /// How many workloads this client sees.
    pub fn count(&self) -> usize {
        self.all_workloads().len()
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Serve without tokens.
    pub no_auth: bool,
    /// Further arguments (`--grace 1`).
    pub extra: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            no_auth: true,
            extra: vec!["--grace".into(), "1".into()],
        }
    }
}

/// A running `gantry serve` with its temporary directory.
pub struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    opts: Opts,
    /// The port of the current process.
    pub port: u16,
    starts: u32,
}

impl Server {
    /// Starts a server in a fresh temporary directory and waits until it is ready.
    pub fn start(opts: Opts) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("gantry-server-test")
            .tempdir()
            .expect("a temporary directory");
        // Workloads run as nobody when the tests run as root: they must reach `work/`.
        use std::os::unix::fs::PermissionsExt;
        let open =
            |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        open(dir.path(), 0o755).expect("chmod the temporary directory");
        std::fs::create_dir(dir.path().join("work")).expect("work directory");
        open(&dir.path().join("work"), 0o777).expect("chmod work");
        let mut s = Server {
            dir,
            child: None,
            opts,
            port: 0,
            starts: 0,
        };
        s.spawn();
        s
    }

    /// Starts a server without auth and with a 1 s grace.
    pub fn no_auth() -> Server {
        Server::start(Opts::default())
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A directory every workload may write to (markers, counters).
    pub fn work(&self) -> PathBuf {
        self.dir().join("work")
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.dir().join("g.db")
    }

    /// The workload log directory.
    pub fn logs(&self) -> PathBuf {
        self.dir().join("logs")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client without a token.
    pub fn http(&self) -> Http {
        Http::new(&self.url(), None)
    }

    /// A client with `token`.
    pub fn http_as(&self, token: &str) -> Http {
        Http::new(&self.url(), Some(token))
    }

    fn server_log(&self) -> PathBuf {
        self.dir().join(format!("server.{}.log", self.starts))
    }

    /// The server's output so far (for failure messages).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.server_log()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        self.port = free_port();
        let log = File::create(self.server_log()).expect("server log");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--db")
            .arg(self.db())
            .arg("--log-dir")
            .arg(self.logs())
            .arg("--simulate-gpus")
            .arg(GPUS)
            .args(&self.opts.extra)
            .env("GANTRY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log));
        if self.opts.no_auth {
            cmd.arg("--no-auth");
        }
        self.child = Some(cmd.spawn().expect("gantry serve starts"));
        let http = self.http();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("gantry serve exited with {status}:\n{}", self.output());
            }
            if let Ok(r) = http.try_request("GET", "/readyz", &[], b"")
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "gantry serve not ready after 20 s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `kill -9` the server (its workloads keep running in their own process groups).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same database and log directory (on a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Creates a token with the CLI on this server's database; returns (id, secret).
    pub fn token(&self, name: &str, role: &str) -> (i64, String) {
        let out = Command::new(bin())
            .args(["token", "create", "--name", name, "--role", role, "--db"])
            .arg(self.db())
            .output()
            .expect("gantry token create runs");
        assert!(out.status.success(), "token create: {}", text(&out.stderr));
        let secret = text(&out.stdout).trim().to_string();
        let err = text(&out.stderr);
        let id = err
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("token id in {err:?}"));
        (id, secret)
    }

    /// Revokes token `id` with the CLI.
    pub fn revoke(&self, id: i64) {
        let out = Command::new(bin())
            .args(["token", "revoke", &id.to_string(), "--db"])
            .arg(self.db())
            .output()
            .expect("gantry token revoke runs");
        assert!(out.status.success(), "token revoke: {}", text(&out.stderr));
    }

    /// Runs the CLI against this server (`GANTRY_SERVER`, and `GANTRY_TOKEN` if given).
    pub fn cli(&self, args: &[&str], token: Option<&str>) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("GANTRY_SERVER", self.url())
            .env_remove("GANTRY_TOKEN")
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("GANTRY_TOKEN", t);
        }
        cmd.output().expect("gantry runs")
    }

    /// The pid record of attempt `attempt` of `id`: (pid, start ticks).
    pub fn pid_record(&self, id: &str, attempt: u32) -> Option<(u32, u64)> {
        let text =
            std::fs::read_to_string(self.logs().join(id).join(format!("{attempt}.pid"))).ok()?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((u32::try_from(field("pgid")?).ok()?, field("start_ticks")?))
    }

    /// Kills the process groups of every recorded attempt whose main process is still ours.
    pub fn kill_workloads(&self) {
        let Ok(dirs) = std::fs::read_dir(self.logs()) else {
            return;
        };
        for d in dirs.flatten() {
            let Some(id) = d.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                let Some(attempt) = name.strip_suffix(".pid").and_then(|a| a.parse().ok()) else {
                    continue;
                };
                if let Some((pgid, ticks)) = self.pid_record(&id, attempt)
                    && proc_stat(pgid).is_some_and(|s| s.start_ticks == ticks && s.state != 'Z')
                {
                    kill_group(pgid);
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        self.kill_workloads();
    }
}

/// Lossy UTF-8.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Process group.
    pub pgrp: u32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// `/proc/PID/stat`, if the process exists.
pub fn proc_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// Whether any live (non-zombie) process is in group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .any(|s| s.pgrp == pgid && s.state != 'Z' && s.state != 'X')
}

/// SIGKILL to process group `pgid` (one this test started).
pub fn kill_group(pgid: u32) {
    if pgid > 1 {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
}

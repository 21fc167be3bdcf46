//! The CLI's side of the HTTP API: `gantry submit`, `status`, `workloads`, `logs`, `cancel`,
//! `strategy`, `nodes`, `health`. Tables for people, `--json` for scripts.

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is and who we are.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Server URL.
    #[arg(
        long,
        env = "GANTRY_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Bearer token (see `gantry token create`).
    #[arg(long, env = "GANTRY_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// An HTTP client for one server.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client for `base` (`http://host:port`) with an optional bearer token.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    /// A client from the command line's connection options.
    pub fn from(c: &Connection) -> Self {
        Client::new(&c.server, c.token.clone())
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    fn finish(
        &self,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> anyhow::Result<(u16, String, ureq::http::HeaderMap)> {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .context("reading the server's answer")?;
        if status >= 400 {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let e = &v["error"];
            let msg = e["message"].as_str().unwrap_or(text.trim());
            return Err(match e["field"].as_str() {
                Some(f) => anyhow!(
                    "{status} {}: {f}: {msg}",
                    e["code"].as_str().unwrap_or("error")
                ),
                None => anyhow!("{status} {}: {msg}", e["code"].as_str().unwrap_or("error")),
            });
        }
        Ok((status, text, headers))
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the gantry server at {}: {e} (start it with `gantry serve`, or set --server / GANTRY_SERVER)",
            self.base
        )
    }

    /// GET `path`, the body as text.
    pub fn get_text(&self, path: &str) -> anyhow::Result<(String, ureq::http::HeaderMap)> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| self.unreachable(e))?;
        let (_, text, headers) = self.finish(resp)?;
        Ok((text, headers))
    }

    /// GET `path` as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (text, _) = self.get_text(path)?;
        serde_json::from_str(&text).context("the server's answer is not JSON")
    }

    /// Sends `body` with `method` to `path`, the answer as JSON.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "PUT" => self.agent.put(url),
            _ => self.agent.post(url),
        };
        req = req.header("Content-Type", content_type);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send(body).map_err(|e| self.unreachable(e))?;
        let (_, text, _) = self.finish(resp)?;
        serde_json::from_str(&text).context("the server's answer is not JSON")
    }

    /// Submits a YAML workload spec.
    pub fn submit_yaml(&self, yaml: &str, key: Option<&str>) -> anyhow::Result<Value> {
        self.send("POST", "/api/workloads", "application/yaml", yaml, key)
    }
}

/// Options of `gantry submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// A YAML workload spec file, or `-` for stdin (or use `--gpus N -- COMMAND...`).
    file: Option<PathBuf>,
    /// Shorthand: this many whole GPUs for the command after `--`.
    #[arg(long)]
    gpus: Option<u32>,
    /// Shorthand: a share of one GPU in milli (1..999) instead of whole GPUs.
    #[arg(long, conflicts_with = "gpus")]
    share: Option<u32>,
    /// Shorthand: the workload's name (default: from the command).
    #[arg(long)]
    name: Option<String>,
    /// Shorthand: the queue.
    #[arg(long)]
    queue: Option<String>,
    /// Shorthand: the priority class.
    #[arg(long)]
    priority_class: Option<String>,
    /// Idempotency key: retrying with the same key never submits twice.
    #[arg(long)]
    key: Option<String>,
    /// Print the stored workload as JSON.
    #[arg(long)]
    json: bool,
    /// The command to run (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
    /// Submit `GPUWorkload` YAML to the Kubernetes cluster of the kubeconfig instead of a gantry server.
    #[arg(long)]
    kube: bool,
    /// With --kube: the namespace (default: the file's, else the kubeconfig's).
    #[arg(long, requires = "kube")]
    namespace: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn shorthand_yaml(a: &SubmitArgs) -> anyhow::Result<String> {
    if a.command.is_empty() {
        bail!(
            "give a spec file (or `-` for stdin), or a command after `--`, e.g. `gantry submit --gpus 2 -- python train.py`"
        );
    }
    let default_name: String = std::path::Path::new(&a.command[0])
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("job")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = a.name.clone().unwrap_or(default_name);
    let mut y = format!("name: {}\n", yaml_quote(&name));
    if let Some(q) = &a.queue {
        y.push_str(&format!("queue: {}\n", yaml_quote(q)));
    }
    if let Some(p) = &a.priority_class {
        y.push_str(&format!("priorityClass: {}\n", yaml_quote(p)));
    }
    match (a.gpus, a.share) {
        (Some(n), _) => y.push_str(&format!("resources:\n  gpu:\n    count: {n}\n")),
        (None, Some(s)) => y.push_str(&format!("resources:\n  gpu:\n    share: {s}\n")),
        (None, None) => {}
    }
    let argv: Vec<String> = a.command.iter().map(|c| yaml_quote(c)).collect();
    y.push_str(&format!("run:\n  command: [{}]\n", argv.join(", ")));
    if let Ok(dir) = std::env::current_dir() {
        y.push_str(&format!(
            "  workingDir: {}\n",
            yaml_quote(&dir.to_string_lossy())
        ));
    }
    Ok(y)
}

/// Runs `gantry submit`.
pub fn submit(a: SubmitArgs) -> anyhow::Result<()> {
    let yaml = match &a.file {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => shorthand_yaml(&a)?,
    };
    if a.kube {
        return crate::k8s_cmd::submit_kube(&yaml, a.namespace.as_deref());
    }
    let client = Client::from(&a.conn);
    let w = client.submit_yaml(&yaml, a.key.as_deref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&w)?);
    } else {
        println!(
            "{}  {}  {}",
            w["id"].as_str().unwrap_or("?"),
            w["name"].as_str().unwrap_or(""),
            w["state"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Options naming one workload.
#[derive(Args, Debug)]
pub struct IdArgs {
    /// Workload id (`wl-<n>`).
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

fn ms(v: &Value) -> String {
    v.as_i64().map_or("-".into(), |t| {
        let secs = t / 1000;
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        format!("{h:02}:{m:02}:{s:02}Z")
    })
}

/// Runs `gantry status ID`.
pub fn status(a: IdArgs) -> anyhow::Result<()> {
    let v = Client::from(&a.conn).get(&format!("/api/workloads/{}/status", a.id))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let w = &v["workload"];
    println!(
        "{} {} ({})",
        w["id"].as_str().unwrap_or(""),
        w["name"].as_str().unwrap_or(""),
        w["owner"].as_str().unwrap_or("")
    );
    println!("  state     {}", w["state"].as_str().unwrap_or(""));
    if let Some(r) = w["reason"].as_str() {
        println!("  reason    {r}");
    }
    println!(
        "  queue     {}   priority {}",
        w["queue"].as_str().unwrap_or(""),
        w["priority"]
    );
    println!(
        "  gpus      {}",
        w["gpus"]
            .as_array()
            .map(|g| g
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    println!("  attempts  {}   exit {}", w["attempts"], w["exitCode"]);
    println!(
        "  submitted {}   started {}   finished {}",
        ms(&w["submittedAt"]),
        ms(&w["startedAt"]),
        ms(&w["finishedAt"])
    );
    println!("  events:");
    for e in v["events"].as_array().into_iter().flatten() {
        println!(
            "    {}  {:<10} {:<12} {} -> {}  {}",
            ms(&e["at"]),
            e["actor"].as_str().unwrap_or(""),
            e["action"].as_str().unwrap_or(""),
            e["fromState"].as_str().unwrap_or("-"),
            e["toState"].as_str().unwrap_or("-"),
            e["reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Options of `gantry workloads`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this state (pending, running, succeeded, failed, cancelled, ...).
    #[arg(long)]
    state: Option<String>,
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only this owner.
    #[arg(long)]
    owner: Option<String>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// List the `GPUWorkload`s of the kubeconfig's cluster instead of a gantry server's workloads.
    #[arg(long)]
    kube: bool,
    /// With --kube: only this namespace (default: all).
    #[arg(long, requires = "kube")]
    namespace: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `gantry workloads`.
pub fn workloads(a: ListArgs) -> anyhow::Result<()> {
    if a.kube {
        return crate::k8s_cmd::workloads_kube(a.namespace.as_deref(), a.json);
    }
    let q = query(&[
        ("state", a.state.clone()),
        ("queue", a.queue.clone()),
        ("owner", a.owner.clone()),
        ("limit", Some(a.limit.to_string())),
    ]);
    let v = Client::from(&a.conn).get(&format!("/api/workloads{q}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<20} {:<10} {:<10} {:<10} {:>8}  GPUS / REASON",
        "ID", "NAME", "OWNER", "QUEUE", "STATE", "PRIORITY"
    );
    for w in v["items"].as_array().into_iter().flatten() {
        let gpus: Vec<&str> = w["gpus"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let tail = if gpus.is_empty() {
            w["reason"].as_str().unwrap_or("").to_string()
        } else {
            gpus.join(",")
        };
        println!(
            "{:<10} {:<20} {:<10} {:<10} {:<10} {:>8}  {}",
            w["id"].as_str().unwrap_or(""),
            w["name"].as_str().unwrap_or(""),
            w["owner"].as_str().unwrap_or(""),
            w["queue"].as_str().unwrap_or(""),
            w["state"].as_str().unwrap_or(""),
            w["priority"],
            tail
        );
    }
    Ok(())
}

/// Options of `gantry logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Workload id.
    id: String,
    /// Follow: keep printing as the log grows, until the workload ends.
    #[arg(short, long)]
    follow: bool,
    /// Standard error instead of standard output.
    #[arg(long)]
    stderr: bool,
    /// Attempt (default: the latest).
    #[arg(long)]
    attempt: Option<u32>,
    #[command(flatten)]
    conn: Connection,
}

/// Runs `gantry logs`.
pub fn logs(a: LogsArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let client = Client::from(&a.conn);
    let stream = if a.stderr { "stderr" } else { "stdout" };
    if a.follow {
        wait_until_started(&client, &a.id)?;
    }
    let mut offset = 0u64;
    loop {
        let q = query(&[
            ("stream", Some(stream.into())),
            ("offset", Some(offset.to_string())),
            ("attempt", a.attempt.map(|n| n.to_string())),
        ]);
        let (text, headers) = client.get_text(&format!("/api/workloads/{}/logs{q}", a.id))?;
        print!("{text}");
        std::io::stdout().flush()?;
        offset = headers
            .get("x-next-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(offset + text.len() as u64);
        let state = headers
            .get("x-workload-state")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let finished = matches!(
            state,
            "succeeded" | "failed" | "cancelled" | "preempted" | "lost"
        );
        if !a.follow || (finished && text.is_empty()) {
            return Ok(());
        }
        if text.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Waits while workload `id` has not started (pending, admitted, scheduled), for `logs -f`.
fn wait_until_started(client: &Client, id: &str) -> anyhow::Result<()> {
    loop {
        let v = client.get(&format!("/api/workloads/{id}/status"))?;
        let w = &v["workload"];
        let waiting = matches!(
            w["state"].as_str().unwrap_or(""),
            "pending" | "admitted" | "scheduled"
        );
        if !waiting || w["attempts"].as_u64().unwrap_or(0) > 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `gantry cancel ID`.
pub fn cancel(a: IdArgs) -> anyhow::Result<()> {
    let v = Client::from(&a.conn).send(
        "POST",
        &format!("/api/workloads/{}/cancel", a.id),
        "application/json",
        "{}",
        None,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let state = v["state"].as_str().unwrap_or("");
        let note = if state == "running" || state == "scheduled" {
            " (stopping: SIGTERM, then SIGKILL after the grace period)"
        } else {
            ""
        };
        println!("{} {state}{note}", v["id"].as_str().unwrap_or(&a.id));
    }
    Ok(())
}

/// Options of `gantry strategy`.
#[derive(Args, Debug)]
pub struct StrategyArgs {
    /// Switch to this strategy (operator or admin); without it, show the active one.
    name: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

/// Runs `gantry strategy [NAME]`.
pub fn strategy(a: StrategyArgs) -> anyhow::Result<()> {
    let client = Client::from(&a.conn);
    let v = match &a.name {
        Some(n) => client.send(
            "PUT",
            "/api/scheduler/strategy",
            "application/json",
            &serde_json::json!({"strategy": n}).to_string(),
            None,
        )?,
        None => client.get("/api/scheduler/strategy")?,
    };
    println!("{}", v["strategy"].as_str().unwrap_or(""));
    Ok(())
}

/// Options of commands that only print (`nodes`, `health`).
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Runs `gantry nodes`: this machine's GPUs with telemetry and holders.
pub fn nodes(a: ShowArgs) -> anyhow::Result<()> {
    let v = Client::from(&a.conn).get("/api/gpu/resources")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "backend: {}{}",
        v["backend"].as_str().unwrap_or(""),
        v["note"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    println!(
        "{:>3}  {:<12} {:>5} {:>9} {:>6} {:>6}  {:<10} HELD BY",
        "GPU", "MODEL", "UTIL", "MEM MiB", "TEMP", "POWER", "HEALTH"
    );
    for g in v["gpus"].as_array().into_iter().flatten() {
        let held: Vec<String> = g["allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| format!("{}({}m)", h["workload"].as_str().unwrap_or(""), h["milli"]))
            .collect();
        println!(
            "{:>3}  {:<12} {:>4}% {:>9} {:>5}C {:>5}W  {:<10} {}",
            g["index"],
            g["model"].as_str().unwrap_or(""),
            g["utilization"]
                .as_f64()
                .map_or("-".into(), |u| format!("{u:.0}")),
            g["memoryUsedMib"]
                .as_u64()
                .map_or("-".into(), |m| m.to_string()),
            g["temperatureC"]
                .as_f64()
                .map_or("-".into(), |t| format!("{t:.0}")),
            g["powerW"]
                .as_f64()
                .map_or("-".into(), |p| format!("{p:.0}")),
            g["health"].as_str().unwrap_or(""),
            held.join(" ")
        );
    }
    Ok(())
}

/// Runs `gantry health`: liveness and readiness of the server.
pub fn health(a: ShowArgs) -> anyhow::Result<()> {
    let client = Client::from(&a.conn);
    let live = client.get_text("/healthz").map(|t| t.0);
    let ready = client.get_text("/readyz").map(|t| t.0);
    if a.json {
        println!(
            "{}",
            serde_json::json!({"live": live.is_ok(), "ready": ready.is_ok(), "reason": ready.as_ref().err().map(|e| e.to_string())})
        );
    } else {
        println!("live:  {}", if live.is_ok() { "ok" } else { "no" });
        match &ready {
            Ok(_) => println!("ready: ok"),
            Err(e) => println!("ready: no ({e})"),
        }
    }
    if live.is_ok() && ready.is_ok() {
        Ok(())
    } else {
        bail!("the server is not healthy")
    }
}

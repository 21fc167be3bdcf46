//! The web dashboard: the page and its assets (embedded in the binary, served without a token), who
//! the caller is (`GET /api/whoami`), and the live feed the page draws from (`GET /api/events/stream`,
//! server-sent events carrying a snapshot of GPUs, queue and workloads every second).

use crate::api::{
    GpuResources, Shared, WorkloadView, gpu_list, need, principal, query_error, view,
};
use crate::auth::{Permission, Principal, allows};
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gantry_store::{ListQuery, Order, Workload, WorkloadState};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// How often the stream sends a snapshot.
pub const STREAM_INTERVAL: Duration = Duration::from_secs(1);

/// Every this many snapshots a stream checks again that its token is still valid (a revoked token
/// ends the stream).
const REVERIFY_EVERY: u64 = 5;

/// Most waiting workloads a snapshot lists.
const MAX_QUEUE: usize = 200;

/// Most finished workloads a snapshot lists.
const MAX_FINISHED: usize = 20;

/// An embedded file of the page: (name under `/assets/`, content type, bytes).
type Asset = (&'static str, &'static str, &'static [u8]);

/// The page's files, compiled into the binary (no CDN: the dashboard works offline).
const ASSETS: &[Asset] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/api.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard/charts.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/dashboard/favicon.svg"),
    ),
];

/// The page itself.
const INDEX_HTML: &str = include_str!("../assets/dashboard/index.html");

/// What the page may load: only this server (no inline script, no third party).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

/// Routes behind the auth layer.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/events/stream", get(events_stream))
}

/// The OpenAPI description of [`routes`].
#[derive(OpenApi)]
#[openapi(
    paths(whoami, events_stream),
    components(schemas(WhoAmI, Abilities, DashboardSnapshot, ClusterSummary, QueueEntry))
)]
pub(crate) struct Doc;

/// Routes that answer without a token (the page and its static assets).
pub(crate) fn open_routes() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

/// The dashboard page (the API calls it makes need a token when auth is on; the page is told
/// whether it is, so that it asks for one before calling).
async fn index(State(state): State<Shared>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        INDEX_HTML.replace("{{auth}}", if state.auth { "on" } else { "off" }),
    )
        .into_response()
}

/// One of the page's files.
async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::not_found(format!("no dashboard asset {name:?}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        *bytes,
    )
        .into_response())
}

/// What the caller may do, as the API decides it (the page shows only the controls it may use).
#[derive(Debug, Serialize, ToSchema)]
pub struct Abilities {
    /// May submit workloads.
    pub submit: bool,
    /// May cancel workloads (a submitter: its own).
    pub cancel: bool,
    /// May switch the strategy and change queues.
    pub operate: bool,
    /// May manage tokens.
    pub administer: bool,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// The token's name (`local` with auth off).
    pub name: String,
    /// Its role: `admin`, `operator`, `submitter` or `viewer`.
    pub role: String,
    /// Whether the server requires bearer tokens.
    pub auth: bool,
    /// What the role allows.
    pub can: Abilities,
}

fn whoami_of(p: &Principal, auth: bool) -> WhoAmI {
    WhoAmI {
        name: p.name.clone(),
        role: p.role.to_string(),
        auth,
        can: Abilities {
            submit: allows(p.role, Permission::Submit),
            cancel: allows(p.role, Permission::Cancel),
            operate: allows(p.role, Permission::Operate),
            administer: allows(p.role, Permission::Administer),
        },
    }
}

/// Who the caller is, whether auth is on, and what its role allows.
#[utoipa::path(get, path = "/api/whoami", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn whoami(State(state): State<Shared>, req: Request) -> Json<WhoAmI> {
    Json(whoami_of(&principal(req.extensions()), state.auth))
}

/// The cluster at a glance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSummary {
    /// GPU backend (`simulated`, `nvml`, ...).
    pub backend: String,
    /// GPUs on the machine.
    pub gpu_total: usize,
    /// GPUs held (wholly or in part) by a workload.
    pub gpu_busy: usize,
    /// Healthy GPUs holding nothing.
    pub gpu_free: usize,
    /// GPUs whose health is not `ok`.
    pub gpu_unhealthy: usize,
    /// Mean utilisation over the GPUs that report it, percent.
    pub mean_utilization: Option<f64>,
    /// GPU memory in use, MiB.
    pub memory_used_mib: u64,
    /// GPU memory in all, MiB.
    pub memory_total_mib: u64,
    /// Workloads waiting (pending or admitted), all owners.
    pub waiting: u64,
    /// Workloads scheduled or running, all owners.
    pub running: u64,
    /// Workloads finished (succeeded, failed, cancelled), all owners.
    pub finished: u64,
    /// The active strategy.
    pub strategy: String,
}

/// A waiting workload with its place in line.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntry {
    /// 1-based place among all waiting workloads, in the order the scheduler tries them.
    pub position: usize,
    /// 1-based place among the waiting workloads of its queue.
    pub queue_position: usize,
    /// The workload.
    pub workload: WorkloadView,
}

/// One event of the live stream: everything the dashboard shows, as the caller may see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardSnapshot {
    /// When it was taken, ms since the epoch.
    pub at_ms: i64,
    /// Totals.
    pub summary: ClusterSummary,
    /// Every GPU with live telemetry and holders.
    pub gpus: GpuResources,
    /// Waiting workloads in scheduling order (a submitter: its own, with their global places).
    pub queue: Vec<QueueEntry>,
    /// Scheduled and running workloads, oldest first.
    pub running: Vec<WorkloadView>,
    /// The most recently finished workloads, newest first.
    pub finished: Vec<WorkloadView>,
}

/// What the store says at one instant.
struct Read {
    waiting: Vec<Workload>,
    running: Vec<Workload>,
    finished: Vec<Workload>,
    counts: Vec<gantry_store::StateQueueCount>,
}

fn is_finished(s: WorkloadState) -> bool {
    matches!(
        s,
        WorkloadState::Succeeded | WorkloadState::Failed | WorkloadState::Cancelled
    )
}

/// Places the waiting workloads in the order the scheduler tries them (priority, then the queue's
/// fair-share standing in `shares`, then age, then id) and numbers them overall and per queue.
fn number_queue(
    mut waiting: Vec<Workload>,
    shares: &crate::admission::Shares,
) -> Vec<(usize, usize, Workload)> {
    waiting.sort_by_key(|w| {
        let share = shares.get(&w.queue).copied().unwrap_or(0.0);
        crate::schedule::order_key(w.priority, share, w.submitted_at, w.id.raw())
    });
    let mut per_queue: std::collections::HashMap<String, usize> = Default::default();
    waiting
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let n = per_queue.entry(w.queue.clone()).or_default();
            *n += 1;
            (i + 1, *n, w)
        })
        .collect()
}

/// Takes one snapshot as `who` may see it.
pub(crate) async fn snapshot(
    state: &Shared,
    who: &Principal,
) -> Result<DashboardSnapshot, ApiError> {
    let owner = (who.role == gantry_store::Role::Submitter).then(|| who.name.clone());
    let read = state
        .db
        .read(move |s| {
            let page = |state: WorkloadState, order: Order, owner: Option<String>, limit: u32| {
                s.list(&ListQuery {
                    state: Some(state),
                    owner,
                    limit,
                    order,
                    ..ListQuery::default()
                })
                .map(|p| p.items)
            };
            let max = gantry_store::MAX_PAGE_LIMIT;
            let mut waiting = page(WorkloadState::Pending, Order::OldestFirst, None, max)?;
            waiting.extend(page(
                WorkloadState::Admitted,
                Order::OldestFirst,
                None,
                max,
            )?);
            let mut finished = Vec::new();
            for st in WorkloadState::ALL.into_iter().filter(|s| is_finished(*s)) {
                finished.extend(page(
                    st,
                    Order::NewestFirst,
                    owner.clone(),
                    MAX_FINISHED as u32,
                )?);
            }
            Ok(Read {
                waiting,
                running: s.running()?,
                finished,
                counts: s.counts_by_state_and_queue()?,
            })
        })
        .await?;
    let gpus = gpu_list(state, &read.running);
    let visible = |w: &Workload| who.owns_or_oversees(&w.owner);
    let runner = &state.runner;
    let machine = runner.machine();
    let models = machine.models();
    let held: Vec<crate::schedule::Work> = read
        .running
        .iter()
        .filter_map(|w| crate::runner::work_of(w, &models).ok())
        .collect();
    let shares = crate::admission::shares(&runner.queues(), &machine, &held);
    let queue: Vec<QueueEntry> = number_queue(read.waiting, &shares)
        .into_iter()
        .filter(|(_, _, w)| visible(w))
        .take(MAX_QUEUE)
        .map(|(position, queue_position, w)| QueueEntry {
            position,
            queue_position,
            workload: view(&w, runner.waiting_reason(w.id)),
        })
        .collect();
    let running = read
        .running
        .iter()
        .filter(|w| visible(w))
        .map(|w| view(w, None))
        .collect();
    let mut finished: Vec<&Workload> = read.finished.iter().collect();
    finished.sort_by_key(|w| std::cmp::Reverse((w.finished_at.unwrap_or(w.updated_at), w.id)));
    let finished = finished
        .into_iter()
        .take(MAX_FINISHED)
        .map(|w| view(w, None))
        .collect();
    let count = |pred: &dyn Fn(WorkloadState) -> bool| {
        read.counts
            .iter()
            .filter(|c| pred(c.state))
            .map(|c| c.count)
            .sum::<u64>()
    };
    let utils: Vec<f64> = gpus.gpus.iter().filter_map(|g| g.utilization).collect();
    let summary = ClusterSummary {
        backend: gpus.backend.clone(),
        gpu_total: gpus.gpus.len(),
        gpu_busy: gpus
            .gpus
            .iter()
            .filter(|g| !g.allocations.is_empty())
            .count(),
        gpu_free: gpus
            .gpus
            .iter()
            .filter(|g| g.allocations.is_empty() && g.health == "ok")
            .count(),
        gpu_unhealthy: gpus.gpus.iter().filter(|g| g.health != "ok").count(),
        mean_utilization: (!utils.is_empty())
            .then(|| utils.iter().sum::<f64>() / utils.len() as f64),
        memory_used_mib: gpus.gpus.iter().filter_map(|g| g.memory_used_mib).sum(),
        memory_total_mib: gpus.gpus.iter().map(|g| g.memory_mib).sum(),
        waiting: count(&|s| matches!(s, WorkloadState::Pending | WorkloadState::Admitted)),
        running: count(&|s| matches!(s, WorkloadState::Scheduled | WorkloadState::Running)),
        finished: count(&is_finished),
        strategy: runner.policy().name().to_string(),
    };
    Ok(DashboardSnapshot {
        at_ms: crate::runner::now_ms(),
        summary,
        gpus,
        queue,
        running,
        finished,
    })
}

/// Query of `GET /api/events/stream`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Send one snapshot and end the stream (for scripts and probes); default false.
    pub once: Option<bool>,
}

/// Resolves when the process is asked to stop, so that open streams end and graceful shutdown
/// does not wait on them forever.
fn stopping() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    })
}

/// The state of one open stream.
struct Feed {
    state: Shared,
    who: Principal,
    first: Option<DashboardSnapshot>,
    once: bool,
    sent: u64,
    ended: bool,
    /// The bearer token to check again now and then (none with auth off).
    token: Option<String>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// The bearer token of a request, as the auth layer reads it.
fn bearer(headers: &header::HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?;
    Some(t.trim().to_string())
}

/// Whether `token` still holds (no token: auth is off; a store error counts as yes: the next
/// check decides).
async fn still_valid(state: Shared, token: Option<String>) -> bool {
    let Some(t) = token else {
        return true;
    };
    !matches!(state.db.read(move |s| s.verify_token(&t)).await, Ok(None))
}

fn event_of(snap: Result<DashboardSnapshot, ApiError>) -> Event {
    let event = snap.and_then(|s| {
        Event::default()
            .event("snapshot")
            .json_data(&s)
            .map_err(|e| ApiError::internal(e.to_string()))
    });
    event.unwrap_or_else(|e| Event::default().event("error").data(e.message))
}

/// Live updates for the dashboard: a `snapshot` event (a `DashboardSnapshot` as JSON) at once and
/// then every second, as the caller may see it; an `error` event (text) when one snapshot fails. A
/// token revoked while the stream is open ends it (after an `error` event starting `unauthorized`).
/// Read it with `fetch()` streaming so that the `Authorization` header is sent.
#[utoipa::path(get, path = "/api/events/stream", params(StreamParams),
    responses((status = 200, description = "server-sent events: `event: snapshot` with a DashboardSnapshot as `data`", content_type = "text/event-stream", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn events_stream(
    State(state): State<Shared>,
    query: Result<Query<StreamParams>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let who = principal(req.extensions());
    need(&who, Permission::ReadCluster)?;
    need(&who, Permission::ReadWorkloads)?;
    let Query(q) = query.map_err(query_error)?;
    // The first snapshot is taken before answering, so that a failing store is a plain error status.
    let first = snapshot(&state, &who).await?;
    let token = if state.auth {
        bearer(req.headers())
    } else {
        None
    };
    let feed = Feed {
        state,
        who,
        first: Some(first),
        once: q.once.unwrap_or(false),
        sent: 0,
        ended: false,
        token,
        stop: stopping(),
    };
    let events = futures_util::stream::unfold(feed, |mut f| async move {
        if f.ended || (f.once && f.sent > 0) {
            return None;
        }
        if f.sent > 0 {
            tokio::select! {
                _ = tokio::time::sleep(STREAM_INTERVAL) => {}
                _ = &mut f.stop => return None,
            }
            if f.sent % REVERIFY_EVERY == 0 && !still_valid(f.state.clone(), f.token.clone()).await
            {
                f.ended = true;
                let gone = Event::default()
                    .event("error")
                    .data("unauthorized: the token was revoked");
                return Some((Ok(gone), f));
            }
        }
        f.sent += 1;
        let snap = match f.first.take() {
            Some(s) => Ok(s),
            None => snapshot(&f.state, &f.who).await,
        };
        Some((Ok::<_, Infallible>(event_of(snap)), f))
    });
    let mut resp = Sse::new(events).into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{ServeConfig, serve};
    use gantry_gpu::DiscoverOptions;
    use std::net::SocketAddr;

    /// Starts the real server (simulated GPUs, temporary database, no auth) on a loopback port.
    async fn start(dir: &std::path::Path, auth: bool) -> SocketAddr {
        let config = ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: dir.join("g.db"),
            log_dir: dir.join("logs"),
            auth,
            gpus: DiscoverOptions {
                simulate: Some("2xH100-80GB".into()),
                seed: 1,
                ..DiscoverOptions::default()
            },
            run_as: None,
            grace: Duration::from_secs(1),
            node_name: "dash".into(),
            cpu_milli: Some(8000),
            memory_mib: Some(64 << 10),
            ttl_sweep: Duration::from_secs(30),
            prices: None,
            hpc_job_mapping_dir: None,
            preemption: Default::default(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = serve(config, Some(tx)).await {
                panic!("serve: {e}");
            }
        });
        rx.await
            .unwrap_or_else(|e| panic!("the server did not start: {e}"))
    }

    /// Sends `GET path` and reads until `done` says the text so far is enough, the server closes
    /// the connection, or 10 s pass.
    async fn get(addr: SocketAddr, path: &str, done: fn(&str) -> bool) -> String {
        get_as(addr, path, None, done).await
    }

    /// [`get`] with a bearer token.
    async fn get_as(
        addr: SocketAddr,
        path: &str,
        token: Option<&str>,
        done: fn(&str) -> bool,
    ) -> String {
        let path = path.to_string();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let read = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s =
                std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap_or_else(|e| panic!("timeout: {e}"));
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
            s.write_all(req.as_bytes())
                .unwrap_or_else(|e| panic!("write: {e}"));
            let mut out = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
                if done(&String::from_utf8_lossy(&out)) {
                    break;
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        });
        read.await.unwrap_or_else(|e| panic!("reader: {e}"))
    }

    fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
        let head = resp.split("\r\n\r\n").next()?;
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_its_assets_and_a_first_stream_event() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let addr = start(dir.path(), false).await;

        let page = get(addr, "/", |_| false).await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert_eq!(
            header(&page, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(header(&page, "content-security-policy").is_some_and(|c| c.contains("'self'")));
        assert!(page.contains("<script type=\"module\" src=\"/assets/app.js\">"));
        assert!(
            page.contains("<meta name=\"gantry-auth\" content=\"off\">"),
            "{page}"
        );

        // Every asset the page names is served with its type; an unknown one is a JSON 404.
        for (name, content_type, bytes) in ASSETS {
            let r = get(addr, &format!("/assets/{name}"), |_| false).await;
            assert!(r.starts_with("HTTP/1.1 200"), "{name}: {r}");
            assert_eq!(header(&r, "content-type"), Some(*content_type), "{name}");
            assert!(
                r.ends_with(std::str::from_utf8(bytes).unwrap_or("")),
                "{name}"
            );
        }
        let missing = get(addr, "/assets/nope.js", |_| false).await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        assert!(missing.contains("\"not_found\""), "{missing}");

        // With auth off the caller is the local admin.
        let me = get(addr, "/api/whoami", |_| false).await;
        assert!(me.starts_with("HTTP/1.1 200"), "{me}");
        let body: serde_json::Value =
            serde_json::from_str(me.split("\r\n\r\n").nth(1).unwrap_or(""))
                .unwrap_or_else(|e| panic!("{e}: {me}"));
        assert_eq!(body["name"], "local");
        assert_eq!(body["role"], "admin");
        assert_eq!(body["auth"], false);
        assert_eq!(body["can"]["operate"], true);

        // The stream answers as server-sent events and sends a snapshot at once.
        let started = std::time::Instant::now();
        let s = get(addr, "/api/events/stream", |t| {
            t.contains("\n\n") && t.contains("data:")
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "first event took {:?}",
            started.elapsed()
        );
        assert!(s.starts_with("HTTP/1.1 200"), "{s}");
        assert_eq!(header(&s, "content-type"), Some("text/event-stream"));
        let data = s
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("no data line in {s}"));
        assert!(s.contains("event: snapshot"), "{s}");
        let snap: serde_json::Value =
            serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
        assert_eq!(snap["summary"]["gpuTotal"], 2);
        assert_eq!(snap["gpus"]["gpus"].as_array().map(Vec::len), Some(2));
        assert_eq!(snap["summary"]["strategy"], "gantry");
        assert!(snap["queue"].as_array().is_some_and(Vec::is_empty));

        // `once` ends the stream after the first event; an unknown parameter is a 400 naming it.
        let once = get(addr, "/api/events/stream?once=true", |_| false).await;
        assert_eq!(once.matches("event: snapshot").count(), 1, "{once}");
        let bad = get(addr, "/api/events/stream?every=2", |_| false).await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
        assert!(bad.contains("\"field\":\"every\""), "{bad}");
    }

    #[test]
    fn the_document_describes_whoami_and_the_stream() {
        let doc = crate::api::openapi();
        let stream = &doc["paths"]["/api/events/stream"]["get"];
        assert!(
            stream["responses"]["200"]["content"]["text/event-stream"].is_object(),
            "{stream}"
        );
        assert_eq!(stream["parameters"][0]["name"], "once");
        assert_eq!(stream["parameters"][0]["in"], "query");
        assert!(doc["paths"]["/api/whoami"]["get"].is_object());
        for schema in [
            "DashboardSnapshot",
            "QueueEntry",
            "WhoAmI",
            "GpuResources",
            "WorkloadView",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_auth_the_page_is_open_the_feed_is_not_and_revoking_ends_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = dir.path().join("g.db");
        let (id, secret) = {
            let mut store = gantry_store::Store::open(&db).unwrap_or_else(|e| panic!("{e}"));
            let t = store
                .create_token("eve", gantry_store::Role::Viewer, [7; 32], "test", 0)
                .unwrap_or_else(|e| panic!("{e}"));
            (t.info.id, t.secret)
        };
        let addr = start(dir.path(), true).await;

        let page = get(addr, "/", |_| false).await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("<meta name=\"gantry-auth\" content=\"on\">"));
        let asset = get(addr, "/assets/app.js", |_| false).await;
        assert!(asset.starts_with("HTTP/1.1 200"), "{asset}");
        for path in ["/api/whoami", "/api/events/stream"] {
            let r = get(addr, path, |_| false).await;
            assert!(r.starts_with("HTTP/1.1 401"), "{path}: {r}");
        }
        let me = get_as(addr, "/api/whoami", Some(&secret), |_| false).await;
        assert!(me.contains("\"role\":\"viewer\""), "{me}");
        assert!(me.contains("\"auth\":true"), "{me}");
        assert!(
            me.contains(
                "\"can\":{\"submit\":false,\"cancel\":false,\"operate\":false,\"administer\":false}"
            ),
            "{me}"
        );

        // A viewer's stream runs until its token is revoked, then ends with an `unauthorized` event.
        let revoke = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut store = gantry_store::Store::open(&db).unwrap_or_else(|e| panic!("{e}"));
            store
                .revoke_token(id, "test", 1)
                .unwrap_or_else(|e| panic!("{e}"));
        });
        let started = std::time::Instant::now();
        let s = get_as(addr, "/api/events/stream", Some(&secret), |_| false).await;
        revoke.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(s.starts_with("HTTP/1.1 200"), "{s}");
        assert!(s.matches("event: snapshot").count() >= 2, "{s}");
        assert!(
            s.contains("event: error\ndata: unauthorized: the token was revoked"),
            "{s}"
        );
        let took = started.elapsed();
        assert!(
            took < STREAM_INTERVAL * (REVERIFY_EVERY as u32 + 3),
            "ended after {took:?}"
        );
    }

    #[test]
    fn the_queue_is_numbered_in_scheduling_order() {
        let spec: gantry_core::spec::WorkloadSpec =
            serde_json::from_value(serde_json::json!({"name": "w", "run": {"command": ["true"]}}))
                .unwrap_or_else(|e| panic!("{e}"));
        let w = |id: i64, queue: &str, priority: i64, at: i64| Workload {
            id: gantry_store::WorkloadId::from_raw(id).unwrap_or_else(|| panic!("id")),
            name: format!("w{id}"),
            owner: "o".into(),
            queue: queue.into(),
            priority,
            state: WorkloadState::Pending,
            spec: spec.clone(),
            assignment: None,
            attempts: 0,
            exit_code: None,
            reason: None,
            submitted_at: at,
            started_at: None,
            finished_at: None,
            updated_at: at,
            idempotency_key: None,
        };
        let numbered = number_queue(
            vec![
                w(1, "a", 0, 10),
                w(2, "b", 0, 5),
                w(3, "a", 100, 20),
                w(4, "a", 0, 10),
            ],
            &Default::default(),
        );
        let got: Vec<(usize, usize, String)> = numbered
            .iter()
            .map(|(p, q, w)| (*p, *q, w.name.clone()))
            .collect();
        let want = [(1, 1, "w3"), (2, 1, "w2"), (3, 2, "w1"), (4, 3, "w4")];
        assert_eq!(
            got,
            want.iter()
                .map(|(p, q, n)| (*p, *q, n.to_string()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn abilities_follow_the_role_matrix() {
        let of = |role| {
            whoami_of(
                &Principal {
                    name: "x".into(),
                    role,
                },
                true,
            )
            .can
        };
        let viewer = of(gantry_store::Role::Viewer);
        assert!(!viewer.submit && !viewer.cancel && !viewer.operate && !viewer.administer);
        let submitter = of(gantry_store::Role::Submitter);
        assert!(submitter.submit && submitter.cancel && !submitter.operate);
        let operator = of(gantry_store::Role::Operator);
        assert!(operator.operate && !operator.administer);
        assert!(of(gantry_store::Role::Admin).administer);
    }
}

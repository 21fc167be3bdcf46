//! The HTTP API: routes, auth, request parsing and the OpenAPI document.

use crate::auth::{Permission, Principal, Role, allows};
use crate::db::{Db, DbError};
use crate::error::{ApiError, ErrorBody, field_of, parse_json};
use crate::metrics::Metrics;
use crate::runner::{Runner, now_ms};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gantry_core::Policy;
use gantry_core::spec::{ClusterSpec, RunMode, ValidationContext, WorkloadSpec};
use gantry_gpu::GpuSnapshot;
use gantry_store::{
    ListQuery, NewWorkload, Order, Transition, Workload, WorkloadId, WorkloadState,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Largest request body accepted (a workload spec is a few KiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the GPU backend last reported.
#[derive(Clone, Debug, Default)]
pub struct GpuView {
    /// Backend name (`nvml`, `simulated`, `nvidia-smi-xml`, `none`).
    pub backend: String,
    /// The backend's one-line note (for example, no driver).
    pub note: String,
    /// Latest snapshot of every GPU.
    pub snapshots: Vec<GpuSnapshot>,
    /// Whether the backend has answered at least once.
    pub ready: bool,
}

/// Everything a handler needs.
pub struct AppState {
    /// The store.
    pub db: Db,
    /// The live loop.
    pub runner: Arc<Runner>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// GPUs as last polled.
    pub gpus: Mutex<GpuView>,
    /// Whether bearer tokens are required.
    pub auth: bool,
    /// This machine as a cluster description, for validating submissions.
    pub cluster: ClusterSpec,
    /// GPU prices (the shipped defaults with `--prices FILE` merged over them).
    pub prices: gantry_cost::Catalogue,
}

/// The state every handler shares.
pub(crate) type Shared = Arc<AppState>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        use gantry_store::Error as E;
        match e {
            DbError::Store(E::NotFound { what, id }) => {
                ApiError::not_found(format!("{what} {id} not found"))
            }
            DbError::Store(
                e @ (E::Conflict { .. } | E::IllegalTransition { .. } | E::NotFinished { .. }),
            ) => ApiError::conflict(e.to_string()),
            DbError::Store(e @ E::IdempotencyMismatch { .. }) => ApiError {
                status: StatusCode::CONFLICT,
                code: "idempotency_mismatch",
                message: e.to_string(),
                field: Some("Idempotency-Key".into()),
            },
            DbError::Store(E::Invalid { field, problem }) => ApiError::invalid(field, problem),
            DbError::Store(e @ E::AlreadyExists { .. }) => ApiError {
                status: StatusCode::CONFLICT,
                code: "already_exists",
                message: e.to_string(),
                field: Some("name".into()),
            },
            DbError::Stopped => ApiError::unavailable("the server is stopping"),
            other => ApiError::internal(format!("store: {other}")),
        }
    }
}

pub(crate) fn need(p: &Principal, permission: Permission) -> Result<(), ApiError> {
    if allows(p.role, permission) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role {} may not do this",
            p.role
        )))
    }
}

/// Resolves the caller from `Authorization: Bearer <token>` (or the local admin with auth off).
async fn authenticate(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let principal = if state.auth {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_string());
        let Some(token) = token else {
            return ApiError::unauthorized("missing bearer token (Authorization: Bearer <token>)")
                .into_response();
        };
        match state.db.read(move |s| s.verify_token(&token)).await {
            Ok(Some(info)) => Principal {
                name: info.name,
                role: info.role,
            },
            Ok(None) => return ApiError::unauthorized("invalid or revoked token").into_response(),
            Err(e) => return ApiError::from(e).into_response(),
        }
    } else {
        Principal::local()
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

pub(crate) fn principal(req_ext: &axum::http::Extensions) -> Principal {
    req_ext.get::<Principal>().cloned().unwrap_or(Principal {
        name: "anonymous".into(),
        role: Role::Viewer,
    })
}

/// The API router: everything but `/healthz`, `/readyz` and `/metrics` goes through the auth layer.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/api/gpu/resources", get(gpu_resources))
        .route("/api/workloads", post(submit).get(list_workloads))
        .route("/api/workloads/submit", post(submit))
        .route("/api/workloads/{id}/status", get(status))
        .route("/api/workloads/{id}/logs", get(logs))
        .route("/api/workloads/{id}/cancel", post(cancel))
        .route(
            "/api/scheduler/strategy",
            get(get_strategy).put(put_strategy),
        )
        .route("/api/monitoring/metrics", get(monitoring))
        .route("/api/costs/analysis", get(cost_analysis))
        .merge(crate::budgets::routes())
        .merge(crate::queues::routes())
        .merge(crate::findings::routes())
        .merge(crate::explain::routes())
        .merge(crate::dashboard::routes())
        // The API description too: with auth on, only the probes and /metrics answer without a token.
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .external_url_unchecked("/openapi.json", openapi()),
        )
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .merge(crate::dashboard::open_routes());
    api.merge(open)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                message: "this route does not take that method".into(),
                field: None,
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The caller, who must hold `permission`, and the request's JSON object body read as `T`.
pub(crate) async fn authorized_json<T: serde::de::DeserializeOwned>(
    req: Request,
    permission: Permission,
) -> Result<(Principal, T), ApiError> {
    let p = principal(req.extensions());
    need(&p, permission)?;
    let bytes = body(Bytes::from_request(req, &()).await)?;
    Ok((p, parse_json(&bytes)?))
}

pub(crate) fn body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    bytes.map_err(|e| ApiError {
        status: e.status(),
        code: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        },
        message: format!("{} (limit {MAX_BODY_BYTES} bytes)", e.body_text()),
        field: None,
    })
}

pub(crate) fn workload_id(raw: &str) -> Result<WorkloadId, ApiError> {
    raw.parse::<WorkloadId>()
        .map_err(|_| ApiError::invalid("id", format!("{raw:?} is not a workload id (wl-<number>)")))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers and the GPU backend has reported.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "not ready", body = ErrorBody)))]
async fn readyz(State(state): State<Shared>) -> Result<&'static str, ApiError> {
    state
        .db
        .read(|s| s.schema_version())
        .await
        .map_err(|e| ApiError::unavailable(format!("store not ready: {e}")))?;
    if !lock(&state.gpus).ready {
        return Err(ApiError::unavailable("GPU backend has not reported yet"));
    }
    Ok("ready")
}

/// Prometheus metrics, text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
async fn prometheus(State(state): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// One GPU: identity, telemetry, health and who holds it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuResource {
    /// Device index.
    pub index: u32,
    /// Device UUID.
    pub uuid: String,
    /// Model key (`H100-80GB`).
    pub model: String,
    /// Product name.
    pub name: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// `ok`, `degraded: ...` or `failed: ...`.
    pub health: String,
    /// Utilisation, percent.
    pub utilization: Option<f64>,
    /// Memory used, MiB.
    pub memory_used_mib: Option<u64>,
    /// Temperature, C.
    pub temperature_c: Option<f64>,
    /// Power, W.
    pub power_w: Option<f64>,
    /// Workloads holding it, with the milli each holds.
    pub allocations: Vec<GpuHolder>,
}

/// A workload holding (part of) a GPU.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuHolder {
    /// Workload id.
    pub workload: String,
    /// Owner.
    pub owner: String,
    /// Milli of the GPU it holds.
    pub milli: u32,
}

/// The machine's GPUs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuResources {
    /// Backend in use.
    pub backend: String,
    /// Backend note (e.g. no driver).
    pub note: String,
    /// GPUs.
    pub gpus: Vec<GpuResource>,
}

fn health_text(h: &gantry_gpu::GpuHealth) -> String {
    match h {
        gantry_gpu::GpuHealth::Ok => "ok".into(),
        gantry_gpu::GpuHealth::Degraded { reason } => format!("degraded: {reason}"),
        gantry_gpu::GpuHealth::Failed { reason } => format!("failed: {reason}"),
    }
}

/// The GPUs of this machine with live telemetry and holders.
#[utoipa::path(get, path = "/api/gpu/resources", responses((status = 200, body = GpuResources), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn gpu_resources(
    State(state): State<Shared>,
    req: Request,
) -> Result<Json<GpuResources>, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::ReadCluster)?;
    let running = state.db.read(|s| s.running()).await?;
    Ok(Json(gpu_list(&state, &running)))
}

/// The machine's GPUs with their latest telemetry and the workloads (of `running`) holding them.
pub(crate) fn gpu_list(state: &AppState, running: &[Workload]) -> GpuResources {
    let view = lock(&state.gpus).clone();
    let machine = state.runner.machine();
    let gpus = machine
        .slots
        .iter()
        .map(|slot| {
            let snap = view.snapshots.iter().find(|s| s.device.uuid == slot.uuid);
            let t = snap.map(|s| &s.telemetry);
            GpuResource {
                index: slot.index,
                uuid: slot.uuid.clone(),
                model: slot.model.clone(),
                name: snap.map_or(String::new(), |s| s.device.name.clone()),
                memory_mib: snap.map_or(0, |s| s.device.memory_total_mib),
                health: snap.map_or("unknown".into(), |s| health_text(&s.health)),
                utilization: t.and_then(|t| t.utilization_gpu_pct).map(f64::from),
                memory_used_mib: t.and_then(|t| t.memory_used_mib),
                temperature_c: t.and_then(|t| t.temperature_c).map(f64::from),
                power_w: t.and_then(|t| t.power_draw_w),
                allocations: running
                    .iter()
                    .flat_map(|w| {
                        w.assignment
                            .iter()
                            .flat_map(|a| a.replicas.iter().flat_map(|r| r.gpus.iter()))
                            .filter(|g| g.uuid.as_deref() == Some(slot.uuid.as_str()))
                            .map(|g| GpuHolder {
                                workload: w.id.to_string(),
                                owner: w.owner.clone(),
                                milli: g.milli.unwrap_or(1000),
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            }
        })
        .collect();
    GpuResources {
        backend: view.backend,
        note: view.note,
        gpus,
    }
}

/// A workload as the API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadView {
    /// Id (`wl-<n>`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner (the token's name).
    pub owner: String,
    /// Queue.
    pub queue: String,
    /// Priority value.
    pub priority: i64,
    /// State.
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Why it is in its state (or why it waits).
    pub reason: Option<String>,
    /// GPUs held: `index:uuid[:milli]`.
    pub gpus: Vec<String>,
    /// Submitted, ms since the epoch.
    pub submitted_at: i64,
    /// Started, ms.
    pub started_at: Option<i64>,
    /// Finished, ms.
    pub finished_at: Option<i64>,
    /// The spec as submitted.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

pub(crate) fn view(w: &Workload, waiting: Option<String>) -> WorkloadView {
    let gpus = w
        .assignment
        .iter()
        .flat_map(|a| a.replicas.iter().flat_map(|r| r.gpus.iter()))
        .map(|g| match (g.uuid.as_deref(), g.milli) {
            (Some(u), Some(m)) => format!("{}:{u}:{m}", g.index),
            (Some(u), None) => format!("{}:{u}", g.index),
            (None, _) => g.index.to_string(),
        })
        .collect();
    WorkloadView {
        id: w.id.to_string(),
        name: w.name.clone(),
        owner: w.owner.clone(),
        queue: w.queue.clone(),
        priority: w.priority,
        state: w.state.to_string(),
        attempts: w.attempts,
        exit_code: w.exit_code,
        reason: match (w.state, waiting) {
            (WorkloadState::Pending, Some(why)) => Some(format!("waiting: {why}")),
            _ => w.reason.clone(),
        },
        gpus,
        submitted_at: w.submitted_at,
        started_at: w.started_at,
        finished_at: w.finished_at,
        spec: serde_json::to_value(&w.spec).unwrap_or(serde_json::Value::Null),
    }
}

fn is_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"))
}

/// Parses a submission body: JSON, or YAML when the content type says so.
pub fn parse_spec(headers: &HeaderMap, bytes: &[u8]) -> Result<WorkloadSpec, ApiError> {
    if is_yaml(headers) {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("malformed_body", "YAML body is not UTF-8"))?;
        parse_yaml(text)
    } else {
        parse_json(bytes)
    }
}

/// Parses a YAML spec, naming the field of the first problem as `parse_json` does.
fn parse_yaml(text: &str) -> Result<WorkloadSpec, ApiError> {
    let mut path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, WorkloadSpec>(crate::strict::Strict(de)).map_err(
            |e| {
                path = e.path().to_string();
                e.into_inner()
            },
        )
    });
    let err = match parsed {
        Ok(spec) => return Ok(spec),
        Err(e) => e,
    };
    use serde_saphyr::MessageFormatter as _;
    let message = serde_saphyr::DefaultMessageFormatter.format_message(err.without_snippet());
    let place = err
        .location()
        .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
        .unwrap_or_default();
    let message = format!("malformed YAML{place}: {message}");
    match field_of(&path, &message) {
        Some(field) => Err(ApiError::invalid(field, message)),
        None => Err(ApiError::bad_request("malformed_body", message)),
    }
}

/// A query string that does not fit `T`: a 400 naming the parameter (unknown, or of the wrong type).
pub(crate) fn query_error(rejection: QueryRejection) -> ApiError {
    use std::error::Error as _;
    let mut source = rejection.source();
    while let Some(e) = source {
        if let Some(e) = e.downcast_ref::<serde_path_to_error::Error<serde::de::value::Error>>()
            && let Some(field) = field_of(&e.path().to_string(), &e.inner().to_string())
        {
            return ApiError::invalid(field, e.inner().to_string());
        }
        source = e.source();
    }
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// Submits a workload (JSON, or YAML with `Content-Type: application/yaml`). Acknowledged only once
/// durable. `Idempotency-Key` makes a retried submission return the first one.
#[utoipa::path(post, path = "/api/workloads", request_body(content = WorkloadSpecSchema, description = "A workload spec (see `gantry schema workload`)"),
    responses((status = 201, body = WorkloadView), (status = 200, description = "the same submission again (idempotency key)", body = WorkloadView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    params(("Idempotency-Key" = Option<String>, Header, description = "Client key making retries safe")), security(("bearer" = [])))]
async fn submit(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::Submit)?;
    let (parts, raw) = req.into_parts();
    let bytes =
        body(Bytes::from_request(axum::http::Request::from_parts(parts.clone(), raw), &()).await)?;
    let spec = parse_spec(&parts.headers, &bytes)?;
    // Declared queues take part: a workload must then name one of them.
    let queues = state.runner.queues();
    let with_queues;
    let cluster = if queues.is_empty() {
        &state.cluster
    } else {
        with_queues = ClusterSpec {
            queues,
            ..state.cluster.clone()
        };
        &with_queues
    };
    let ctx = ValidationContext::new(Some(cluster), RunMode::Standalone);
    if let Err(errors) = spec.validate(&ctx) {
        let first = &errors[0];
        let message = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::invalid(first.path.clone(), message));
    }
    let priority = state
        .cluster
        .priority_value(spec.priority_class.as_deref())
        .unwrap_or(0);
    let key = parts
        .headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))
        })
        .transpose()?;
    if let Some(k) = &key
        && (k.is_empty() || k.len() > 200)
    {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "must be 1..=200 characters",
        ));
    }
    let mut new = NewWorkload::from_spec(spec, &p.name, priority);
    if let Some(k) = key {
        new = new.with_key(k);
    }
    let submitted = state.db.submit(new, &p.name, now_ms()).await?;
    let stored = submitted.workload;
    if submitted.created {
        state.metrics.submissions.inc();
    }
    state.runner.poke();
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(view(&stored, None))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/workloads/{}/status", stored.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

use axum::extract::FromRequest;

/// The workload states a list can filter on (OpenAPI only: the handler parses the string).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateName {
    /// Submitted, waiting for admission.
    Pending,
    /// Admitted, waiting for placement.
    Admitted,
    /// Placed, not yet started.
    Scheduled,
    /// Its processes run.
    Running,
    /// Finished with success.
    Succeeded,
    /// Finished with failure.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Evicted for higher-priority work.
    Preempted,
    /// Not found after a restart.
    Lost,
}

/// The order of a workload list (OpenAPI only).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderName {
    /// Newest first.
    Newest,
    /// Oldest first.
    Oldest,
}

/// Which log stream to read (OpenAPI only).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The groupings of a cost analysis (OpenAPI only).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupByName {
    /// By queue.
    Queue,
    /// By owner.
    Owner,
    /// By workload.
    Workload,
    /// By GPU model.
    Model,
}

/// Filters of `GET /api/workloads`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this state.
    #[param(value_type = Option<StateName>, inline)]
    pub state: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this owner (a submitter always sees only its own).
    pub owner: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Continue after this id (the previous page's `next`).
    #[param(pattern = "^wl-[1-9][0-9]{0,17}$")]
    pub after: Option<String>,
    /// `newest` (default) or `oldest` first.
    #[param(value_type = Option<OrderName>, inline)]
    pub order: Option<String>,
}

/// A page of workloads.
#[derive(Serialize, ToSchema)]
pub struct WorkloadPage {
    /// The workloads.
    pub items: Vec<WorkloadView>,
    /// Cursor for the next page.
    pub next: Option<String>,
}

/// Lists workloads, newest first, with filters and a cursor.
#[utoipa::path(get, path = "/api/workloads", params(ListParams), responses((status = 200, body = WorkloadPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn list_workloads(
    State(state): State<Shared>,
    query: Result<Query<ListParams>, QueryRejection>,
    req: Request,
) -> Result<Json<WorkloadPage>, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::ReadWorkloads)?;
    let Query(q) = query.map_err(query_error)?;
    let state_filter = q
        .state
        .as_deref()
        .map(|s| {
            s.parse::<WorkloadState>()
                .map_err(|e| ApiError::invalid("state", e.to_string()))
        })
        .transpose()?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            workload_id(a)
                .map_err(|_| ApiError::invalid("after", format!("{a:?} is not a workload id")))
        })
        .transpose()?;
    let order = match q.order.as_deref() {
        None | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(o) => {
            return Err(ApiError::invalid(
                "order",
                format!("{o:?}: use newest or oldest"),
            ));
        }
    };
    let owner = if p.role == Role::Submitter {
        Some(p.name.clone())
    } else {
        q.owner
    };
    let query = ListQuery {
        state: state_filter,
        queue: q.queue,
        owner,
        limit: q.limit.unwrap_or(100),
        after,
        order,
    };
    let page = state.db.read(move |s| s.list(&query)).await?;
    Ok(Json(WorkloadPage {
        items: page
            .items
            .iter()
            .map(|w| view(w, state.runner.waiting_reason(w.id)))
            .collect(),
        next: page.next.map(|n| n.to_string()),
    }))
}

/// A workload's state and its history.
#[derive(Serialize, ToSchema)]
pub struct StatusView {
    /// The workload.
    pub workload: WorkloadView,
    /// Its audit events, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
}

async fn load_visible(state: &Shared, p: &Principal, raw: &str) -> Result<Workload, ApiError> {
    let id = workload_id(raw)?;
    let w = state
        .db
        .read(move |s| s.get(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workload {id} not found")))?;
    if !p.owns_or_oversees(&w.owner) {
        // Not revealed to other submitters: as if it did not exist.
        return Err(ApiError::not_found(format!("workload {id} not found")));
    }
    Ok(w)
}

/// One workload's state, placement, and events.
#[utoipa::path(get, path = "/api/workloads/{id}/status", params(("id" = String, Path, description = "wl-<n>", pattern = "^wl-[1-9][0-9]{0,17}$", example = "wl-1")), responses((status = 200, body = StatusView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn status(
    State(state): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<StatusView>, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::ReadWorkloads)?;
    let w = load_visible(&state, &p, &id).await?;
    let wid = w.id;
    let events = state.db.read(move |s| s.events(wid)).await?;
    Ok(Json(StatusView {
        workload: view(&w, state.runner.waiting_reason(w.id)),
        events: events
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect(),
    }))
}

/// Which log to read.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// `stdout` (default) or `stderr`.
    #[param(value_type = Option<StreamName>, inline)]
    pub stream: Option<String>,
    /// Attempt number (default: the latest).
    pub attempt: Option<u32>,
    /// Byte offset to start at (default 0).
    pub offset: Option<u64>,
    /// Most bytes to return (default and cap 1 MiB).
    #[param(value_type = Option<u64>)]
    pub max: Option<usize>,
}

/// A slice of a workload's log; `X-Next-Offset` says where to continue.
#[utoipa::path(get, path = "/api/workloads/{id}/logs", params(("id" = String, Path, description = "wl-<n>", pattern = "^wl-[1-9][0-9]{0,17}$", example = "wl-1"), LogParams), responses((status = 200, description = "log bytes", content_type = "text/plain", headers(("x-next-offset" = u64, description = "Byte offset to continue from"), ("x-workload-state" = String, description = "The workload's state when read"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn logs(
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<LogParams>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::ReadWorkloads)?;
    let Query(q) = query.map_err(query_error)?;
    let w = load_visible(&state, &p, &id).await?;
    let stream = match q.stream.as_deref() {
        None | Some("stdout") => gantry_exec::Stream::Stdout,
        Some("stderr") => gantry_exec::Stream::Stderr,
        Some(s) => {
            return Err(ApiError::invalid(
                "stream",
                format!("{s:?}: use stdout or stderr"),
            ));
        }
    };
    let attempt = q.attempt.unwrap_or(w.attempts);
    if attempt == 0 {
        return Err(ApiError::not_found(format!(
            "workload {} has not started yet",
            w.id
        )));
    }
    let log_dir = state.runner.log_dir().to_path_buf();
    let wid = w.id.to_string();
    let max = q.max.unwrap_or(1 << 20).clamp(1, 1 << 20);
    let offset = q.offset.unwrap_or(0);
    let chunk = tokio::task::spawn_blocking(move || {
        gantry_exec::read_log(&log_dir, &wid, attempt, stream, offset, max)
    })
    .await
    .map_err(|_| ApiError::internal("log reader failed"))?
    .map_err(|e| ApiError::not_found(format!("no log for attempt {attempt}: {e}")))?;
    let mut resp = (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        chunk.data,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&chunk.next_offset.to_string()) {
        resp.headers_mut().insert("x-next-offset", v);
    }
    if let Ok(v) = HeaderValue::from_str(&w.state.to_string()) {
        resp.headers_mut().insert("x-workload-state", v);
    }
    Ok(resp)
}

/// Cancels a workload: a pending one at once; a running one gets SIGTERM, then SIGKILL after the
/// grace period (202: it is cancelled when the process has exited).
#[utoipa::path(post, path = "/api/workloads/{id}/cancel", params(("id" = String, Path, description = "wl-<n>", pattern = "^wl-[1-9][0-9]{0,17}$", example = "wl-1")), responses((status = 200, body = WorkloadView), (status = 202, body = WorkloadView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn cancel(
    State(state): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::Cancel)?;
    let w = load_visible(&state, &p, &id).await?;
    match w.state {
        WorkloadState::Pending
        | WorkloadState::Admitted
        | WorkloadState::Preempted
        | WorkloadState::Lost => {
            let (wid, from, actor) = (w.id, w.state, p.name.clone());
            let done = state
                .db
                .write(move |s| {
                    s.transition(
                        wid,
                        from,
                        Transition::to(WorkloadState::Cancelled)
                            .reason(format!("cancelled by {actor}")),
                        &actor,
                        now_ms(),
                    )
                })
                .await?;
            Ok((StatusCode::OK, Json(view(&done, None))).into_response())
        }
        WorkloadState::Scheduled | WorkloadState::Running => {
            if state.runner.cancel_running(w.id) {
                Ok((StatusCode::ACCEPTED, Json(view(&w, None))).into_response())
            } else {
                Err(ApiError::conflict(format!(
                    "workload {} is {} but not yet started here; retry",
                    w.id, w.state
                )))
            }
        }
        s => Err(ApiError::conflict(format!(
            "workload {} is already {s}",
            w.id
        ))),
    }
}

/// The active placement strategy and the known ones.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct StrategyView {
    /// The active strategy.
    pub strategy: String,
    /// Every strategy name.
    #[serde(default, skip_deserializing)]
    pub available: Vec<String>,
}

/// A strategy change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyChange {
    /// A name from `gantry strategies` (surrounding whitespace is ignored).
    #[schema(
        pattern = "^\\s*(gantry|fgd|bestfit|gpupacking|gpuclustering|dotprod|random|least_utilized|best_fit|priority|round_robin|binpack|spread)\\s*$"
    )]
    pub strategy: String,
}

fn strategy_view(p: Policy) -> StrategyView {
    StrategyView {
        strategy: p.name().to_string(),
        available: gantry_core::policies::POLICIES
            .iter()
            .map(|i| i.name.to_string())
            .collect(),
    }
}

/// The active strategy.
#[utoipa::path(get, path = "/api/scheduler/strategy", responses((status = 200, body = StrategyView), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn get_strategy(
    State(state): State<Shared>,
    req: Request,
) -> Result<Json<StrategyView>, ApiError> {
    need(&principal(req.extensions()), Permission::ReadCluster)?;
    Ok(Json(strategy_view(state.runner.policy())))
}

/// Switches the active strategy (operator or admin); kept across restarts.
#[utoipa::path(put, path = "/api/scheduler/strategy", request_body = StrategyChange, responses((status = 200, body = StrategyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn put_strategy(
    State(state): State<Shared>,
    req: Request,
) -> Result<Json<StrategyView>, ApiError> {
    let (p, change): (_, StrategyChange) = authorized_json(req, Permission::Operate).await?;
    let policy = Policy::from_name(&change.strategy)
        .map_err(|e| ApiError::invalid("strategy", e.to_string()))?;
    let name = policy.name().to_string();
    let actor = p.name.clone();
    state
        .db
        .write(move |s| s.set_strategy(&name, &actor, now_ms()))
        .await?;
    state.runner.set_policy(policy);
    Ok(Json(strategy_view(policy)))
}

/// A summary for dashboards: GPUs and workloads.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// GPUs on the machine.
    pub gpu_total: usize,
    /// Healthy GPUs holding nothing.
    pub gpu_available: usize,
    /// Mean utilisation, percent.
    pub mean_utilization: Option<f64>,
    /// Workload counts: state -> queue -> count.
    #[schema(value_type = Object)]
    pub workloads: serde_json::Value,
    /// The active strategy.
    pub strategy: String,
}

/// GPU and workload summary.
#[utoipa::path(get, path = "/api/monitoring/metrics", responses((status = 200, body = Monitoring), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn monitoring(
    State(state): State<Shared>,
    req: Request,
) -> Result<Json<Monitoring>, ApiError> {
    need(&principal(req.extensions()), Permission::ReadCluster)?;
    let counts = state.db.read(|s| s.counts_by_state_and_queue()).await?;
    let running = state.db.read(|s| s.running()).await?;
    let machine = state.runner.machine();
    let view = lock(&state.gpus).clone();
    let busy: std::collections::HashSet<String> = running
        .iter()
        .flat_map(|w| {
            w.assignment
                .iter()
                .flat_map(|a| a.replicas.iter().flat_map(|r| r.gpus.iter()))
        })
        .filter_map(|g| g.uuid.clone())
        .collect();
    let available = machine
        .slots
        .iter()
        .filter(|s| s.healthy && !busy.contains(&s.uuid))
        .count();
    let utils: Vec<f64> = view
        .snapshots
        .iter()
        .filter_map(|s| s.telemetry.utilization_gpu_pct.map(f64::from))
        .collect();
    let mut by_state = serde_json::Map::new();
    for c in counts {
        let entry = by_state
            .entry(c.state.to_string())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(m) = entry {
            m.insert(c.queue, c.count.into());
        }
    }
    Ok(Json(Monitoring {
        gpu_total: machine.slots.len(),
        gpu_available: available,
        mean_utilization: (!utils.is_empty())
            .then(|| utils.iter().sum::<f64>() / utils.len() as f64),
        workloads: serde_json::Value::Object(by_state),
        strategy: state.runner.policy().name().to_string(),
    }))
}

/// Query of `GET /api/costs/analysis`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CostParams {
    /// How far back from now: `1h`, `24h`, `7d`, `30d`, ... (default `7d`).
    #[param(
        pattern = "^\\s*(0*[1-9][0-9]{0,5}w([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?|0*[1-9][0-9]{0,5}d([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?|0*[1-9][0-9]{0,5}h([0-9]{1,6}m)?([0-9]{1,6}s)?|0*[1-9][0-9]{0,5}m([0-9]{1,6}s)?|0*[1-9][0-9]{0,5}s)\\s*$"
    )]
    pub window: Option<String>,
    /// `queue` (default), `owner`, `workload` or `model`.
    #[param(value_type = Option<GroupByName>, inline)]
    pub group_by: Option<String>,
    /// Utilisation percentage under which allocated GPU time counts as idle (default 30).
    #[param(minimum = 0, maximum = 100)]
    pub idle_threshold: Option<f64>,
}

/// One group of a cost analysis. Amounts are decimal strings in `currency`, exact to the cent.
#[derive(Serialize, ToSchema)]
pub struct CostGroup {
    /// The queue, owner, workload id or GPU model.
    pub key: String,
    /// Its cost; null when none of its usage could be priced (unknown models only).
    pub cost: Option<String>,
    /// The part of `cost` spent on GPUs under the idle threshold.
    pub idle_cost: Option<String>,
    /// GPU-hours held in the window (a share or MIG slice counts its fraction).
    pub gpu_hours: f64,
    /// The part of `gpu_hours` on models without a price.
    pub unpriced_gpu_hours: f64,
}

/// Usage of a GPU model that has no price in the catalogue.
#[derive(Serialize, ToSchema)]
pub struct UnpricedView {
    /// The model key.
    pub model: String,
    /// The pool.
    pub pool: String,
    /// GPU-hours used on it in the window.
    pub gpu_hours: f64,
    /// The workloads that used it.
    pub workloads: Vec<String>,
}

/// Cost over a window: the groups' costs add up to `total` to the cent (and `idle_cost` to
/// `idle_total`).
#[derive(Serialize, ToSchema)]
pub struct CostAnalysis {
    /// The window asked for (`7d`).
    pub window: String,
    /// Window start, Unix ms (inclusive).
    pub from_ms: i64,
    /// Window end, Unix ms (exclusive): the time of the request.
    pub to_ms: i64,
    /// What the groups are keyed by.
    pub group_by: String,
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// The idle threshold used, percent.
    pub idle_threshold: f64,
    /// Total cost of priced usage, a decimal string (`"12.34"`).
    pub total: String,
    /// Idle part of the total.
    pub idle_total: String,
    /// GPU-hours in the window, priced or not.
    pub gpu_hours: f64,
    /// The groups, most expensive first.
    pub groups: Vec<CostGroup>,
    /// GPU models that had usage but no price (never priced at zero).
    pub unknown_models: Vec<String>,
    /// That usage in detail.
    pub unpriced: Vec<UnpricedView>,
}

/// Cost per queue, owner, workload or GPU model over a window, with its idle part. A submitter sees
/// only its own workloads' cost. See docs/cost.md for what each number means.
#[utoipa::path(get, path = "/api/costs/analysis", params(CostParams), responses((status = 200, body = CostAnalysis), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn cost_analysis(
    State(state): State<Shared>,
    query: Result<Query<CostParams>, QueryRejection>,
    req: Request,
) -> Result<Json<CostAnalysis>, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::ReadCluster)?;
    let Query(q) = query.map_err(query_error)?;
    let (window, span, idle_threshold) =
        crate::costs::window_params(q.window, q.idle_threshold, now_ms())?;
    let gantry_cost::Window { from_ms, to_ms } = span;
    let group_by: gantry_cost::GroupBy = q
        .group_by
        .as_deref()
        .unwrap_or("queue")
        .parse()
        .map_err(|e: String| ApiError::invalid("group_by", e))?;
    let owner = (p.role == Role::Submitter).then(|| p.name.clone());
    let usage = crate::costs::load_usage(&state, owner, span).await?;
    let analysis = gantry_cost::analyse(&usage, span, &state.prices, group_by, idle_threshold)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(CostAnalysis {
        window,
        from_ms,
        to_ms,
        group_by: group_by.to_string(),
        currency: analysis.currency.clone(),
        idle_threshold,
        total: analysis.total.to_string(),
        idle_total: analysis.idle_total.to_string(),
        gpu_hours: analysis.gpu_hours,
        unknown_models: analysis.unknown_models(),
        groups: analysis
            .groups
            .into_iter()
            .map(|g| CostGroup {
                key: g.key,
                cost: g.cost.map(|m| m.to_string()),
                idle_cost: g.idle_cost.map(|m| m.to_string()),
                gpu_hours: g.gpu_hours,
                unpriced_gpu_hours: g.unpriced_gpu_hours,
            })
            .collect(),
        unpriced: analysis
            .unpriced
            .into_iter()
            .map(|u| UnpricedView {
                model: u.model,
                pool: u.pool.to_string(),
                gpu_hours: u.gpu_hours,
                workloads: u.workloads,
            })
            .collect(),
    }))
}

/// Placeholder type naming the workload spec in the OpenAPI document (its schema is spliced in from
/// the JSON Schema generated from `WorkloadSpec`).
pub struct WorkloadSpecSchema;

impl utoipa::PartialSchema for WorkloadSpecSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::Ref::from_schema_name("WorkloadSpec").into()
    }
}

impl ToSchema for WorkloadSpecSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "WorkloadSpec".into()
    }
}

/// The OpenAPI document's skeleton, from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Gantry", description = "Gantry's standalone GPU scheduler API"),
    paths(healthz, readyz, prometheus, gpu_resources, submit, list_workloads, status, logs, cancel, get_strategy, put_strategy, monitoring, cost_analysis),
    components(schemas(ErrorBody, WorkloadView, WorkloadPage, StatusView, GpuResources, StrategyView, StrategyChange, Monitoring, CostAnalysis, CostGroup, UnpricedView)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI 3.1 document: the handlers' annotations plus the workload spec's generated schema.
pub fn openapi() -> serde_json::Value {
    let mut api = ApiDoc::openapi();
    api.merge(crate::budgets::Doc::openapi());
    api.merge(crate::queues::Doc::openapi());
    api.merge(crate::findings::Doc::openapi());
    api.merge(crate::explain::Doc::openapi());
    api.merge(crate::dashboard::Doc::openapi());
    let mut doc = serde_json::to_value(api).unwrap_or_default();
    let mut spec =
        serde_json::to_value(gantry_core::spec::schema::workload_schema()).unwrap_or_default();
    let defs = spec
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .and_then(|d| d.as_object().cloned())
        .unwrap_or_default();
    if let Some(o) = spec.as_object_mut() {
        o.remove("$schema");
    }
    // Re-point the schema's internal references at the document's components.
    let text = serde_json::to_string(&spec)
        .unwrap_or_default()
        .replace("#/$defs/", "#/components/schemas/");
    let spec: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        schemas.insert("WorkloadSpec".into(), spec);
        for (k, v) in defs {
            let text = serde_json::to_string(&v)
                .unwrap_or_default()
                .replace("#/$defs/", "#/components/schemas/");
            schemas.insert(k, serde_json::from_str(&text).unwrap_or_default());
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_body_must_be_a_mapping_or_object() {
        assert!(parse_yaml("name: a\nrun: {command: [\"true\"]}\n").is_ok());
        assert!(parse_json::<WorkloadSpec>(br#"{"name": "a"}"#).is_ok());
        for yaml in ["- a\n- {command: [\"true\"]}\n", "a\n", "[a]\n"] {
            let e = parse_yaml(yaml).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{yaml:?}");
        }
        assert!(parse_json::<WorkloadSpec>(br#"["a"]"#).is_err());
        // Nested structs as sequences are refused too, naming the field.
        for (body, field) in [
            (r#"{"name": "a", "resources": []}"#, "resources"),
            (
                r#"{"name": "a", "resources": {"gpu": [1]}}"#,
                "resources.gpu",
            ),
            (r#"{"name": "a", "run": [["true"]]}"#, "run"),
        ] {
            let e = parse_json::<WorkloadSpec>(body.as_bytes()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{body}: {}", e.message);
        }
        let e = parse_yaml("name: a\nresources: [1]\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("resources"), "{}", e.message);
    }
}

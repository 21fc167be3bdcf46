//! Queues over HTTP: `GET /api/queues`, `PUT|DELETE /api/queues/{name}`.
//!
//! A queue has a guaranteed quota (GPUs, CPU, memory), an optional cohort with a borrowing limit, and
//! a fair-share weight; [`crate::admission`] enforces them. Operators and admins change queues; every
//! role reads them. With no queue declared every queue is unlimited; once one is, submissions must
//! name a declared queue (a spec without `queue` means `default`). A queue with unfinished work
//! cannot be deleted.

use crate::admission::Quotas;
use crate::api::{Shared, authorized_json, need, principal};
use crate::auth::Permission;
use crate::error::{ApiError, ErrorBody};
use crate::runner::{now_ms, work_of};
use crate::schedule::Work;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use gantry_core::spec::{ClusterSpec, QueueSpec, Quota};
use gantry_store::{Queue, WorkloadState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{OpenApi, ToSchema};

/// Routes behind the auth layer.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/queues", get(list_queues))
        .route("/api/queues/{name}", put(put_queue).delete(delete_queue))
}

/// The OpenAPI description of [`routes`].
#[derive(OpenApi)]
#[openapi(
    paths(list_queues, put_queue, delete_queue),
    components(schemas(QueueChange, QuotaBody, QueueView, Amounts))
)]
pub(crate) struct Doc;

/// Amounts of a quota: each a number or a quantity string; absent = not limited by this quota
/// (OpenAPI only: the handler reads `gantry_core::spec::Quota`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct QuotaBody {
    /// GPUs, fractions allowed: `4`, `2.5`, `"500m"`.
    gpus: Option<serde_json::Value>,
    /// CPU cores: `16`, `"500m"`.
    cpu: Option<serde_json::Value>,
    /// Memory: `"64Gi"`.
    memory: Option<serde_json::Value>,
}

/// A queue to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueChange {
    /// Queues of one cohort lend each other unused guaranteed quota.
    #[serde(default)]
    pub cohort: Option<String>,
    /// Fair-share weight, 0.001 to 1000 (default 1).
    #[serde(default)]
    #[schema(minimum = 0.001, maximum = 1000)]
    pub weight: Option<f64>,
    /// Always available to this queue; a dimension it names no amount for is not limited.
    #[serde(default)]
    #[schema(value_type = Option<QuotaBody>)]
    pub guaranteed: Option<Quota>,
    /// Most it may borrow from its cohort beyond `guaranteed` (needs `cohort`; absent = unlimited).
    #[serde(default)]
    #[schema(value_type = Option<QuotaBody>)]
    pub borrowing_limit: Option<Quota>,
}

/// GPUs, CPU and memory in use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    /// GPUs (fractions for shares).
    pub gpus: f64,
    /// CPU, milli-cores.
    pub cpu_milli: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
}

/// A queue: its settings and where it stands now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// Name, as workloads give it.
    pub name: String,
    /// Declared (with quotas) or only named by workloads (unlimited).
    pub declared: bool,
    /// Cohort.
    pub cohort: Option<String>,
    /// Fair-share weight.
    pub weight: f64,
    /// Guaranteed quota.
    #[schema(value_type = Object)]
    pub guaranteed: Quota,
    /// Borrowing limit.
    #[schema(value_type = Option<Object>)]
    pub borrowing_limit: Option<Quota>,
    /// What its scheduled and running work uses.
    pub used: Amounts,
    /// Fair-share standing: dominant share of the machine in use over the weight (lower goes first).
    pub share: f64,
    /// Workloads scheduled or running.
    pub running: u64,
    /// Workloads pending.
    pub pending: u64,
}

/// The declared queues in the store, as specs.
pub(crate) async fn load(state: &Shared) -> Result<Vec<QueueSpec>, ApiError> {
    let stored = state.db.read(|s| s.queues()).await?;
    Ok(stored.iter().map(Queue::to_spec).collect())
}

/// Every declared queue, then every other queue that has work, with usage and counts.
#[utoipa::path(get, path = "/api/queues", responses((status = 200, body = Vec<QueueView>), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn list_queues(
    State(state): State<Shared>,
    req: Request,
) -> Result<Json<Vec<QueueView>>, ApiError> {
    need(&principal(req.extensions()), Permission::ReadCluster)?;
    Ok(Json(views(&state).await?))
}

async fn views(state: &Shared) -> Result<Vec<QueueView>, ApiError> {
    let (running, counts) = state
        .db
        .read(|s| Ok((s.running()?, s.counts_by_state_and_queue()?)))
        .await?;
    let specs = state.runner.queues();
    let machine = state.runner.machine();
    let models = machine.models();
    let held: Vec<Work> = running
        .iter()
        .filter_map(|w| work_of(w, &models).ok())
        .collect();
    let quotas = Quotas::new(&specs, &machine, &held);
    let shares = quotas.shares();
    let mut by_queue: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for c in counts {
        let e = by_queue.entry(c.queue.clone()).or_default();
        match c.state {
            WorkloadState::Scheduled | WorkloadState::Running => e.0 += c.count,
            WorkloadState::Pending | WorkloadState::Admitted => e.1 += c.count,
            _ => {}
        }
    }
    let undeclared = by_queue
        .iter()
        .filter(|(name, (r, p))| r + p > 0 && !specs.iter().any(|s| &s.name == *name))
        .map(|(name, _)| QueueSpec::named(name));
    let declared = specs.len();
    Ok(specs
        .iter()
        .cloned()
        .chain(undeclared)
        .enumerate()
        .map(|(i, q)| {
            let [gpu, cpu, mem] = quotas.used(&q.name);
            let (running, pending) = by_queue.get(&q.name).copied().unwrap_or_default();
            QueueView {
                declared: i < declared,
                share: shares.get(&q.name).copied().unwrap_or(0.0),
                used: Amounts {
                    gpus: gpu as f64 / 1000.0,
                    cpu_milli: cpu,
                    memory_mib: mem,
                },
                running,
                pending,
                name: q.name,
                cohort: q.cohort,
                weight: q.weight,
                guaranteed: q.guaranteed,
                borrowing_limit: q.borrowing_limit,
            }
        })
        .collect())
}

/// Creates or replaces a queue (operator or admin); checked against this machine and the other
/// queues (guarantees must fit the GPUs).
#[utoipa::path(put, path = "/api/queues/{name}", params(("name" = String, Path, description = "queue name: lower-case letters, digits, '-' and '.'", pattern = "^[a-z0-9]([-.a-z0-9]{0,61}[a-z0-9])?$")), request_body = QueueChange, responses((status = 200, body = QueueView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn put_queue(
    State(state): State<Shared>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Json<QueueView>, ApiError> {
    let (p, change): (_, QueueChange) = authorized_json(req, Permission::Operate).await?;
    let spec = QueueSpec {
        cohort: change.cohort,
        weight: change.weight.unwrap_or(1.0),
        guaranteed: change.guaranteed.unwrap_or_default(),
        borrowing_limit: change.borrowing_limit,
        name,
    };
    check(&state, &spec)?;
    let actor = p.name.clone();
    let queue = Queue::from_spec(spec.clone(), None);
    state
        .db
        .write(move |s| s.put_queue(&queue, &actor, now_ms()))
        .await?;
    state.runner.set_queues(load(&state).await?);
    views(&state)
        .await?
        .into_iter()
        .find(|v| v.name == spec.name)
        .map(Json)
        .ok_or_else(|| ApiError::internal("queue view missing"))
}

/// Validates `spec` with the other declared queues on this machine; errors name the body's field.
fn check(state: &Shared, spec: &QueueSpec) -> Result<(), ApiError> {
    let mut queues: Vec<QueueSpec> = state
        .runner
        .queues()
        .into_iter()
        .filter(|q| q.name != spec.name)
        .collect();
    queues.push(spec.clone());
    let at = queues.len() - 1;
    let cluster = ClusterSpec {
        queues,
        ..state.cluster.clone()
    };
    let Err(errors) = cluster.validate() else {
        return Ok(());
    };
    let own = format!("queues[{at}]");
    let mine: Vec<(String, String)> = errors
        .iter()
        .filter_map(|e| {
            let field = if e.path == "queues" {
                // The sum of the guarantees: this queue's GPUs are what changed.
                "guaranteed.gpus".to_string()
            } else {
                let rest = e.path.strip_prefix(&own)?;
                match rest.strip_prefix('.') {
                    Some(f) => f.to_string(),
                    None if rest.is_empty() => "name".to_string(),
                    None => return None,
                }
            };
            Some((field, e.problem.clone()))
        })
        .collect();
    match mine.first() {
        Some((field, _)) => Err(ApiError::invalid(
            field.clone(),
            mine.iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("; "),
        )),
        // Another stored queue is invalid (the machine changed): say so rather than hide it.
        None => Err(ApiError::invalid(
            "queues",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// Deletes a queue (operator or admin); refused while it has pending, scheduled or running work.
#[utoipa::path(delete, path = "/api/queues/{name}", params(("name" = String, Path, description = "queue name", pattern = "\\S")), responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
async fn delete_queue(
    State(state): State<Shared>,
    Path(name): Path<String>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::Operate)?;
    let counts = state.db.read(|s| s.counts_by_state_and_queue()).await?;
    let unfinished: u64 = counts
        .iter()
        .filter(|c| c.queue == name && !c.state.is_finished())
        .map(|c| c.count)
        .sum();
    if unfinished > 0 {
        return Err(ApiError::conflict(format!(
            "queue {name} has {unfinished} unfinished workload(s); cancel them or let them finish first"
        )));
    }
    let actor = p.name.clone();
    state
        .db
        .write(move |s| s.delete_queue(&name, &actor, now_ms()))
        .await?;
    state.runner.set_queues(load(&state).await?);
    Ok(StatusCode::NO_CONTENT)
}

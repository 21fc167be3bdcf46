//! Budgets, webhooks and alerts over HTTP: `/api/budgets`, `/api/webhooks`, `/api/alerts`.
//!
//! Admins and operators set budgets and webhooks; everyone reads budgets and alerts. A webhook URL
//! may hold a secret (Slack and Teams put the credential in the path), so only admins see it whole.

use crate::alerts::{self, money, standing};
use crate::api::{Shared, authorized_json, need, principal, query_error};
use crate::auth::{Permission, Role};
use crate::error::{ApiError, ErrorBody};
use crate::runner::now_ms;
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use gantry_store::{AlertWithDeliveries, Budget, DEFAULT_THRESHOLDS, Webhook, WebhookFormat};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Routes behind the auth layer.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/budgets", get(list_budgets))
        .route(
            "/api/budgets/{queue}",
            put(put_budget).delete(delete_budget),
        )
        .route("/api/webhooks", get(list_webhooks).post(add_webhook))
        .route("/api/webhooks/{name}", delete(remove_webhook))
        .route("/api/alerts", get(list_alerts))
}

/// The OpenAPI description of [`routes`].
#[derive(OpenApi)]
#[openapi(
    paths(
        list_budgets,
        put_budget,
        delete_budget,
        list_webhooks,
        add_webhook,
        remove_webhook,
        list_alerts
    ),
    components(schemas(
        BudgetChange,
        BudgetView,
        NewWebhook,
        WebhookView,
        AlertView,
        DeliveryView
    ))
)]
pub(crate) struct Doc;

/// An alert threshold: percent of the monthly budget, 1..=1000 (OpenAPI only).
#[derive(ToSchema)]
#[schema(minimum = 1, maximum = 1000)]
pub struct ThresholdPercent(pub u32);

/// A budget to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BudgetChange {
    /// Spending limit per calendar month (UTC) in the price catalogue's currency, at least 0.
    #[schema(minimum = 0)]
    pub monthly: f64,
    /// Alert thresholds, percent of `monthly`, strictly increasing, each 1..=1000 (default 50, 80, 100).
    #[serde(default)]
    #[schema(value_type = Option<Vec<ThresholdPercent>>, min_items = 1)]
    pub thresholds: Option<Vec<u32>>,
    /// Stop admitting new work from the queue once it is over budget (running work continues).
    #[serde(default)]
    pub hard_cap: bool,
}

/// A budget and where the queue stands this month.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    /// The queue.
    pub queue: String,
    /// Monthly limit.
    pub monthly: f64,
    /// Alert thresholds, percent.
    pub thresholds: Vec<u32>,
    /// Whether new work stops once over budget.
    pub hard_cap: bool,
    /// When it was last set, Unix ms.
    pub updated_at: i64,
    /// This month, `YYYY-MM` (UTC).
    pub month: String,
    /// Currency of the amounts.
    pub currency: String,
    /// Spent this month, a decimal string (`"12.34"`).
    pub spent: String,
    /// Spent over monthly (1 = reached); `null` for a zero budget with spend.
    pub used_ratio: Option<f64>,
    /// Thresholds reached this month.
    pub crossed: Vec<u32>,
    /// At or over the monthly amount.
    pub over: bool,
    /// Over budget with the hard cap on, as the scheduler enforces it now: new work from the queue
    /// waits (the alert loop refreshes this every few seconds).
    pub capped: bool,
}

/// The formats a webhook can post (OpenAPI only: the handler parses the string).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormatName {
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams incoming webhook.
    Teams,
    /// Plain JSON.
    Json,
}

/// A webhook to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewWebhook {
    /// Unique name: letters, digits, `.`, `_`, `-`, at most 64.
    #[schema(pattern = "^\\s*[A-Za-z0-9._-]{1,64}\\s*$")]
    pub name: String,
    /// `http://` or `https://` URL with a host.
    #[schema(pattern = "^\\s*https?://[A-Za-z0-9.-]+(:[0-9]{1,4})?(/[^\\s]*)?\\s*$")]
    pub url: String,
    /// `slack`, `teams` or `json`.
    #[schema(value_type = WebhookFormatName)]
    pub format: String,
}

/// A webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The URL; for callers other than admins only scheme and host (`https://hooks.slack.com/…`).
    pub url: String,
    /// Whether `url` is shortened.
    pub redacted: bool,
    /// `slack`, `teams` or `json`.
    pub format: String,
    /// When it was added, Unix ms.
    pub created_at: i64,
}

/// One alert's delivery to one webhook.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The webhook (`null` once removed).
    pub webhook: Option<String>,
    /// `delivered`, `pending` (retrying) or `failed` (gave up).
    pub state: String,
    /// Tries so far.
    pub attempts: u32,
    /// When it was delivered, Unix ms.
    pub delivered_at: Option<i64>,
    /// When the next try is due (pending only), Unix ms.
    pub next_attempt_at: Option<i64>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// An alert with its deliveries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    /// Row id.
    pub id: i64,
    /// Once per key (`budget:ml:2026-11:80`, `gpu:GPU-…:temperature:…`).
    pub dedupe_key: String,
    /// `budget`, `gpu.xid`, `gpu.ecc`, `gpu.temperature`, `gpu.idle`, `gpu.lost`.
    pub kind: String,
    /// One-line title.
    pub subject: String,
    /// Text.
    pub message: String,
    /// Details.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// When it was raised, Unix ms.
    pub created_at: i64,
    /// One per webhook that existed when it was raised.
    pub deliveries: Vec<DeliveryView>,
}

/// Query of `GET /api/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    /// How many, newest first (1..=500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The views of `budgets` with this month's spend.
async fn budget_views(state: &Shared, budgets: Vec<Budget>) -> Result<Vec<BudgetView>, ApiError> {
    if budgets.is_empty() {
        return Ok(Vec::new());
    }
    let spend = alerts::month_spend(state, now_ms()).await?;
    let capped = state.runner.capped();
    Ok(budgets
        .into_iter()
        .map(|b| {
            let spent = spend.cents_by_queue.get(&b.queue).copied().unwrap_or(0);
            let s = standing(&b, spent);
            BudgetView {
                capped: capped.contains_key(&b.queue),
                queue: b.queue,
                monthly: b.monthly,
                thresholds: b.thresholds,
                hard_cap: b.hard_cap,
                updated_at: b.updated_at,
                month: spend.month.label.clone(),
                currency: spend.currency.clone(),
                spent: money(spent),
                used_ratio: s.used_ratio.is_finite().then_some(s.used_ratio),
                crossed: s.crossed,
                over: s.over,
            }
        })
        .collect())
}

/// Every budget with the spend of this calendar month (UTC).
#[utoipa::path(get, path = "/api/budgets", responses((status = 200, body = Vec<BudgetView>), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn list_budgets(
    State(state): State<Shared>,
    req: Request,
) -> Result<Json<Vec<BudgetView>>, ApiError> {
    need(&principal(req.extensions()), Permission::ReadCluster)?;
    let budgets = state.db.read(|s| s.budgets()).await?;
    Ok(Json(budget_views(&state, budgets).await?))
}

/// Re-checks budgets now so that a new cap or threshold takes effect at once.
async fn recheck(state: &Shared) {
    if let Err(e) = alerts::evaluate_budgets(state, now_ms()).await {
        tracing::warn!(error = %e, "budget check failed");
    }
}

/// Sets the monthly budget of a queue (operator or admin).
#[utoipa::path(put, path = "/api/budgets/{queue}", params(("queue" = String, Path, description = "queue name", pattern = "\\S")), request_body = BudgetChange, responses((status = 200, body = BudgetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
async fn put_budget(
    State(state): State<Shared>,
    Path(queue): Path<String>,
    req: Request,
) -> Result<Json<BudgetView>, ApiError> {
    let (p, change): (_, BudgetChange) = authorized_json(req, Permission::Operate).await?;
    let budget = Budget {
        queue: queue.trim().to_string(),
        monthly: change.monthly,
        thresholds: change
            .thresholds
            .unwrap_or_else(|| DEFAULT_THRESHOLDS.to_vec()),
        hard_cap: change.hard_cap,
        updated_at: 0,
    };
    budget
        .validate()
        .map_err(|e| ApiError::from(crate::db::DbError::Store(e)))?;
    let actor = p.name.clone();
    let stored = state
        .db
        .write(move |s| s.put_budget(&budget, &actor, now_ms()))
        .await?;
    recheck(&state).await;
    let mut views = budget_views(&state, vec![stored]).await?;
    views
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::internal("budget view missing"))
}

/// Deletes the budget of a queue (operator or admin); its alerts stay.
#[utoipa::path(delete, path = "/api/budgets/{queue}", params(("queue" = String, Path, description = "queue name", pattern = "\\S")), responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn delete_budget(
    State(state): State<Shared>,
    Path(queue): Path<String>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::Operate)?;
    let actor = p.name.clone();
    state
        .db
        .write(move |s| s.delete_budget(&queue, &actor, now_ms()))
        .await?;
    recheck(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `url` with only its scheme and authority (host and port), for callers who may not see secrets.
pub fn redact(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => match (u.scheme_str(), u.host()) {
            (Some(scheme), Some(host)) => match u.port_u16() {
                Some(port) => format!("{scheme}://{host}:{port}/…"),
                None => format!("{scheme}://{host}/…"),
            },
            _ => "…".to_string(),
        },
        Err(_) => "…".to_string(),
    }
}

fn webhook_view(w: Webhook, admin: bool) -> WebhookView {
    WebhookView {
        id: w.id,
        redacted: !admin,
        url: if admin { w.url } else { redact(&w.url) },
        name: w.name,
        format: w.format.to_string(),
        created_at: w.created_at,
    }
}

/// Checks a webhook URL: `http` or `https` with a host.
pub fn check_url(url: &str) -> Result<(), ApiError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| ApiError::invalid("url", format!("not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(ApiError::invalid(
                "url",
                "must start with http:// or https://",
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", "must name a host"));
    }
    Ok(())
}

/// Every webhook (the URL in full for admins only).
#[utoipa::path(get, path = "/api/webhooks", responses((status = 200, body = Vec<WebhookView>), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn list_webhooks(
    State(state): State<Shared>,
    req: Request,
) -> Result<Json<Vec<WebhookView>>, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::ReadCluster)?;
    let admin = p.role == Role::Admin;
    let hooks = state.db.read(|s| s.webhooks()).await?;
    Ok(Json(
        hooks.into_iter().map(|w| webhook_view(w, admin)).collect(),
    ))
}

/// Adds a webhook (operator or admin); alerts raised from now on are posted to it.
#[utoipa::path(post, path = "/api/webhooks", request_body = NewWebhook, responses((status = 201, body = WebhookView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "a webhook with this name exists", body = ErrorBody)), security(("bearer" = [])))]
async fn add_webhook(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let (p, new): (_, NewWebhook) = authorized_json(req, Permission::Operate).await?;
    let name = new.name.trim().to_string();
    if name.is_empty() || name.len() > 64 {
        return Err(ApiError::invalid("name", "must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ApiError::invalid(
            "name",
            "may hold only letters, digits, '.', '_' and '-'",
        ));
    }
    let url = new.url.trim().to_string();
    check_url(&url)?;
    let format: WebhookFormat = new
        .format
        .parse()
        .map_err(|e: String| ApiError::invalid("format", e))?;
    let actor = p.name.clone();
    let stored = state
        .db
        .write(move |s| s.add_webhook(&name, &url, format, &actor, now_ms()))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(webhook_view(stored, p.role == Role::Admin)),
    )
        .into_response())
}

/// Removes a webhook (operator or admin) and its pending deliveries.
#[utoipa::path(delete, path = "/api/webhooks/{name}", params(("name" = String, Path, description = "webhook name")), responses((status = 204, description = "removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn remove_webhook(
    State(state): State<Shared>,
    Path(name): Path<String>,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let p = principal(req.extensions());
    need(&p, Permission::Operate)?;
    let actor = p.name.clone();
    state
        .db
        .write(move |s| s.remove_webhook(&name, &actor, now_ms()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn alert_view(a: AlertWithDeliveries) -> AlertView {
    AlertView {
        id: a.alert.id,
        dedupe_key: a.alert.dedupe_key,
        kind: a.alert.kind,
        subject: a.alert.subject,
        message: a.alert.message,
        payload: a.alert.payload,
        created_at: a.alert.created_at,
        deliveries: a
            .deliveries
            .into_iter()
            .map(|d| {
                let state = if d.delivered_at.is_some() {
                    "delivered"
                } else if d.gave_up_at.is_some() {
                    "failed"
                } else {
                    "pending"
                };
                DeliveryView {
                    webhook: d.webhook,
                    state: state.to_string(),
                    attempts: d.attempts,
                    delivered_at: d.delivered_at,
                    next_attempt_at: (state == "pending").then_some(d.next_attempt_at),
                    last_error: d.last_error,
                }
            })
            .collect(),
    }
}

/// Recent alerts, newest first, with the state of each delivery.
#[utoipa::path(get, path = "/api/alerts", params(AlertParams), responses((status = 200, body = Vec<AlertView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
async fn list_alerts(
    State(state): State<Shared>,
    query: Result<Query<AlertParams>, QueryRejection>,
    req: Request,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    need(&principal(req.extensions()), Permission::ReadCluster)?;
    let Query(q) = query.map_err(query_error)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 500"));
    }
    let list = state.db.read(move |s| s.recent_alerts(limit)).await?;
    Ok(Json(list.into_iter().map(alert_view).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_redacted() {
        assert!(check_url("https://hooks.slack.com/services/T0/B0/secret").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        for bad in [
            "ftp://x/y",
            "hooks.slack.com/x",
            "https:///path",
            "not a url",
            "",
        ] {
            let e = check_url(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("url"), "{bad}");
        }
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact("http://127.0.0.1:9000/x?token=s"),
            "http://127.0.0.1:9000/…"
        );
    }
}

//! The alert engine: budget crossings and GPU health rules become alerts in the store's outbox, and a
//! delivery loop posts them to webhooks (Slack, Microsoft Teams, generic JSON), retrying with
//! exponential backoff and deterministic jitter.
//!
//! Once per crossing: a budget alert's dedupe key is `budget:{queue}:{YYYY-MM}:{threshold}` and a
//! GPU alert belongs to an incident (`gpu:{uuid}:{rule}`) that stays open in the store while the
//! condition lasts, so neither repeats after a restart. Each alert gets one delivery row per webhook
//! in the same transaction; a delivery is marked delivered only after the receiver answered 2xx, so a
//! restart resumes pending deliveries and never re-sends delivered ones (a crash between the
//! receiver's answer and the mark can send that one delivery twice: at least once, never lost).

use crate::api::{AppState, lock};
use crate::db::DbError;
use crate::runner::now_ms;
use gantry_cost::GroupBy;
use gantry_gpu::GpuSnapshot;
use gantry_gpu::health::{XidSeverity, xid_severity};
use gantry_store::{Alert, Budget, DueDelivery, NewAlert, UnixMillis, WebhookFormat};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Settings of the alert loop.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertConfig {
    /// How often health is checked and due deliveries sent.
    pub interval: Duration,
    /// How often each queue's month-to-date spend is recomputed against its budget (it reads the
    /// month's accounting: every workload that ran, its audit log and the telemetry samples); a budget
    /// change re-checks at once.
    pub budget_interval: Duration,
    /// GPU temperature (C) at or above which a GPU is hot.
    pub temperature_c: i32,
    /// Utilisation (percent) under which an allocated GPU counts as idle.
    pub idle_below_pct: f64,
    /// How long an allocated GPU must stay idle before it alerts.
    pub idle_for: Duration,
    /// Tries per delivery before giving up.
    pub max_attempts: u32,
    /// The first retry's delay (doubling after each failure, with jitter).
    pub backoff_base: Duration,
    /// The longest delay between tries.
    pub backoff_max: Duration,
    /// Time limit of one webhook request (connect, send, answer).
    pub request_timeout: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            interval: Duration::from_secs(2),
            budget_interval: Duration::from_secs(30),
            temperature_c: 85,
            idle_below_pct: 5.0,
            idle_for: Duration::from_secs(4 * 3600),
            max_attempts: 12,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A calendar month in UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Month {
    /// `YYYY-MM`.
    pub label: String,
    /// Its first millisecond, Unix ms.
    pub start_ms: UnixMillis,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year and month of a day count since 1970-01-01.
fn year_month_of_days(z: i64) -> (i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m)
}

/// The UTC calendar month holding `now_ms`.
pub fn month_of(now_ms: UnixMillis) -> Month {
    let (y, m) = year_month_of_days(now_ms.div_euclid(86_400_000));
    Month {
        label: format!("{y:04}-{m:02}"),
        start_ms: days_from_civil(y, m, 1) * 86_400_000,
    }
}

/// Spend per queue this calendar month.
#[derive(Clone, Debug, PartialEq)]
pub struct MonthSpend {
    /// The month.
    pub month: Month,
    /// ISO 4217 currency of the amounts.
    pub currency: String,
    /// Cents spent per queue (queues with no priced usage are absent).
    pub cents_by_queue: HashMap<String, u64>,
}

/// What each queue spent from the start of this UTC month to `now`, by the cost accounting of
/// `GET /api/costs/analysis` (see docs/cost.md).
pub async fn month_spend(state: &AppState, now: UnixMillis) -> Result<MonthSpend, DbError> {
    let machine = state.runner.machine();
    let prices = state.prices.clone();
    state
        .db
        .read(move |s| month_spend_of(s, &machine, &prices, now))
        .await
}

/// [`month_spend`] read from a store directly (the budget check and `gantry bench costs`).
pub fn month_spend_of(
    s: &gantry_store::Store,
    machine: &crate::schedule::Machine,
    prices: &gantry_cost::Catalogue,
    now: UnixMillis,
) -> Result<MonthSpend, gantry_store::Error> {
    let month = month_of(now);
    let window = gantry_cost::Window {
        from_ms: month.start_ms,
        to_ms: now.max(month.start_ms + 1),
    };
    // The same accounting as `gantry costs`: every attempt, utilisation from the samples.
    let usage = crate::costs::usage_of_store(s, machine, None, window)?;
    let cents_by_queue = match gantry_cost::analyse(&usage, window, prices, GroupBy::Queue, 30.0) {
        Ok(a) => a
            .groups
            .into_iter()
            .filter_map(|g| Some((g.key, g.cost?.cents)))
            .collect(),
        // Unreachable: the window is never empty and the threshold is in range.
        Err(_) => HashMap::new(),
    };
    Ok(MonthSpend {
        month,
        currency: prices.currency().to_string(),
        cents_by_queue,
    })
}

/// Where a queue stands against its budget.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetStanding {
    /// Cents spent this month.
    pub spent_cents: u64,
    /// Spend over budget (1 = budget reached; infinite for a zero budget with spend).
    pub used_ratio: f64,
    /// The thresholds reached, in order.
    pub crossed: Vec<u32>,
    /// At or over the monthly amount.
    pub over: bool,
}

/// The standing of budget `b` given `spent_cents`. A threshold is reached once the spend is above
/// zero and at least `threshold` % of the monthly amount.
pub fn standing(b: &Budget, spent_cents: u64) -> BudgetStanding {
    let spent = spent_cents as f64;
    let used_ratio = if b.monthly > 0.0 {
        spent / 100.0 / b.monthly
    } else if spent_cents > 0 {
        f64::INFINITY
    } else {
        0.0
    };
    BudgetStanding {
        spent_cents,
        used_ratio,
        crossed: b
            .thresholds
            .iter()
            .copied()
            .filter(|&t| spent_cents > 0 && spent >= b.monthly * f64::from(t))
            .collect(),
        over: spent >= b.monthly * 100.0,
    }
}

/// An amount of cents as `12.34`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The waiting reason of a pending workload in a capped queue.
pub fn cap_reason(queue: &str, spent_cents: u64, monthly: f64, currency: &str) -> String {
    format!(
        "queue {queue} is over its monthly budget (spent {} of {monthly} {currency}); hard cap on",
        money(spent_cents)
    )
}

/// The alert of budget `b` reaching `threshold` in `month`.
fn budget_alert(
    b: &Budget,
    s: &BudgetStanding,
    threshold: u32,
    month: &Month,
    currency: &str,
) -> (String, String, String, Value) {
    let key = format!("budget:{}:{}:{threshold}", b.queue, month.label);
    let subject = format!(
        "Queue {} reached {threshold}% of its {} budget",
        b.queue, month.label
    );
    let mut message = format!(
        "Queue {} has spent {} {currency} of its monthly budget of {} {currency} in {} ({:.0}%).",
        b.queue,
        money(s.spent_cents),
        b.monthly,
        month.label,
        s.used_ratio.min(1e9) * 100.0
    );
    if b.hard_cap && s.over {
        message.push_str(" Hard cap on: no new work from this queue is admitted this month.");
    }
    let payload = json!({
        "queue": b.queue,
        "month": month.label,
        "threshold": threshold,
        "spent": money(s.spent_cents),
        "monthly": b.monthly,
        "currency": currency,
        "hardCap": b.hard_cap,
    });
    (key, subject, message, payload)
}

/// Checks every budget against this month's spend: raises an alert per threshold crossed (once per
/// key), sets `gantry_budget_used_ratio`, and hands the capped queues to the runner.
pub async fn evaluate_budgets(state: &AppState, now: UnixMillis) -> Result<(), DbError> {
    let budgets = state.db.read(|s| s.budgets()).await?;
    if budgets.is_empty() {
        state.runner.set_capped(HashMap::new());
        return Ok(());
    }
    let spend = month_spend(state, now).await?;
    let mut capped = HashMap::new();
    let mut alerts = Vec::new();
    for b in &budgets {
        let spent = spend.cents_by_queue.get(&b.queue).copied().unwrap_or(0);
        let s = standing(b, spent);
        state.metrics.set_budget_used_ratio(&b.queue, s.used_ratio);
        if b.hard_cap && s.over {
            capped.insert(
                b.queue.clone(),
                cap_reason(&b.queue, spent, b.monthly, &spend.currency),
            );
        }
        for &t in &s.crossed {
            alerts.push(budget_alert(b, &s, t, &spend.month, &spend.currency));
        }
    }
    state.runner.set_capped(capped);
    if !alerts.is_empty() {
        state
            .db
            .write(move |s| {
                for (key, subject, message, payload) in &alerts {
                    s.raise_alert(
                        &NewAlert {
                            dedupe_key: key,
                            kind: "budget",
                            subject,
                            message,
                            payload,
                        },
                        now,
                    )?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(())
}

/// Health rules.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthRules {
    /// Hot at or above this temperature, C.
    pub temperature_c: i32,
    /// Idle under this utilisation, percent.
    pub idle_below_pct: f64,
    /// Allocated and idle for this long alerts, ms.
    pub idle_for_ms: i64,
}

/// A GPU condition that is true now.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthFinding {
    /// `gpu:{uuid}:{rule}`: one alert per incident of this name.
    pub incident: String,
    /// The alert kind (`gpu.xid`, `gpu.ecc`, `gpu.temperature`, `gpu.idle`, `gpu.lost`).
    pub kind: &'static str,
    /// One-line title.
    pub subject: String,
    /// Text.
    pub message: String,
    /// Details.
    pub payload: Value,
}

/// The conditions true now on each GPU. `held` are the indices of GPUs work is placed on;
/// `idle_since` remembers since when each held GPU has been idle (updated here).
pub fn health_findings(
    snapshots: &[GpuSnapshot],
    held: &HashSet<u32>,
    idle_since: &mut HashMap<String, UnixMillis>,
    rules: &HealthRules,
    now: UnixMillis,
) -> Vec<HealthFinding> {
    let mut out = Vec::new();
    for s in snapshots {
        let uuid = &s.device.uuid;
        let t = &s.telemetry;
        let gpu = format!("GPU {} ({uuid})", s.device.index);
        let mut add = |rule: String, kind: &'static str, subject: String, message: String| {
            out.push(HealthFinding {
                incident: format!("gpu:{uuid}:{rule}"),
                kind,
                payload: json!({
                    "gpu": uuid,
                    "index": s.device.index,
                    "model": s.device.name,
                    "rule": rule,
                    "health": s.health,
                }),
                subject,
                message,
            });
        };
        if t.gpu_lost {
            add(
                "lost".into(),
                "gpu.lost",
                format!("{gpu} is lost"),
                format!(
                    "{gpu} fell off the bus or stopped answering; no new work is placed on it."
                ),
            );
        }
        for e in &t.xid_events {
            let (severity, what) = xid_severity(e.xid);
            if severity != XidSeverity::Ignore {
                add(
                    format!("xid-{}", e.xid),
                    "gpu.xid",
                    format!("{gpu}: XID {} ({what})", e.xid),
                    format!("{gpu} reported XID {} ({what}) {} time(s).", e.xid, e.count),
                );
            }
        }
        let (vol, agg) = (
            t.ecc.volatile_uncorrected.unwrap_or(0),
            t.ecc.aggregate_uncorrected.unwrap_or(0),
        );
        if vol > 0 || agg > 0 {
            add(
                "ecc".into(),
                "gpu.ecc",
                format!("{gpu}: uncorrectable ECC errors"),
                format!(
                    "{gpu} has {vol} uncorrectable ECC error(s) since driver load and {agg} in its lifetime."
                ),
            );
        }
        let hot = t.temperature_c.is_some_and(|c| c >= rules.temperature_c);
        if hot || t.thermal_slowdown_active {
            add(
                "temperature".into(),
                "gpu.temperature",
                format!("{gpu} is hot"),
                format!(
                    "{gpu} is at {} C (alert at {} C){}.",
                    t.temperature_c.map_or("?".to_string(), |c| c.to_string()),
                    rules.temperature_c,
                    if t.thermal_slowdown_active {
                        "; thermal slowdown active"
                    } else {
                        ""
                    }
                ),
            );
        }
        let idle = held.contains(&s.device.index)
            && t.utilization_gpu_pct
                .is_some_and(|u| f64::from(u) < rules.idle_below_pct);
        if idle {
            let since = *idle_since.entry(uuid.clone()).or_insert(now);
            if now - since >= rules.idle_for_ms {
                add(
                    "idle".into(),
                    "gpu.idle",
                    format!("{gpu} is allocated but idle"),
                    format!(
                        "{gpu} has been allocated but under {}% utilisation for {:.1} h.",
                        rules.idle_below_pct,
                        (now - since) as f64 / 3_600_000.0
                    ),
                );
            }
        } else {
            idle_since.remove(uuid);
        }
    }
    out
}

/// Raises an alert for each new health incident and closes the incidents of GPUs whose condition
/// cleared.
pub async fn evaluate_health(
    state: &AppState,
    rules: &HealthRules,
    idle_since: &mut HashMap<String, UnixMillis>,
    now: UnixMillis,
) -> Result<(), DbError> {
    let snapshots = lock(&state.gpus).snapshots.clone();
    if snapshots.is_empty() {
        return Ok(());
    }
    let running = state.db.read(|s| s.running()).await?;
    let held: HashSet<u32> = running
        .iter()
        .flat_map(|w| w.assignment.iter())
        .flat_map(|a| a.replicas.iter().flat_map(|r| r.gpus.iter()))
        .map(|g| g.index)
        .collect();
    let findings = health_findings(&snapshots, &held, idle_since, rules, now);
    // Still idle but not yet for long enough on this server's clock (it restarted): keep it open.
    let idle_now: HashSet<String> = idle_since.keys().map(|u| format!("gpu:{u}:idle")).collect();
    let gpus: Vec<String> = snapshots.iter().map(|s| s.device.uuid.clone()).collect();
    state
        .db
        .write(move |s| record_health(s, &findings, &gpus, &idle_now, now))
        .await?;
    Ok(())
}

/// Records `findings` in the store: closes the open incidents of `gpus` (GPUs reported now) that no
/// finding names (except those in `keep_open`), and opens an incident, with its alert, for each
/// finding not already open. Returns how many alerts were raised.
pub fn record_health(
    s: &mut gantry_store::Store,
    findings: &[HealthFinding],
    gpus: &[String],
    keep_open: &HashSet<String>,
    now: UnixMillis,
) -> Result<usize, gantry_store::Error> {
    let current: HashSet<&str> = findings.iter().map(|f| f.incident.as_str()).collect();
    let prefixes: Vec<String> = gpus.iter().map(|u| format!("gpu:{u}:")).collect();
    for open in s.open_incidents()? {
        if !current.contains(open.as_str())
            && !keep_open.contains(&open)
            && prefixes.iter().any(|p| open.starts_with(p))
        {
            s.close_incident(&open)?;
        }
    }
    let mut raised = 0;
    for f in findings {
        let key = format!("{}:{now}", f.incident);
        let alert = NewAlert {
            dedupe_key: &key,
            kind: f.kind,
            subject: &f.subject,
            message: &f.message,
            payload: &f.payload,
        };
        if s.open_incident(&f.incident, &alert, now)? {
            raised += 1;
        }
    }
    Ok(raised)
}

/// The body of `alert` for a webhook of `format`.
pub fn render(format: WebhookFormat, alert: &Alert) -> Value {
    match format {
        WebhookFormat::Slack => {
            let header: String = alert.subject.chars().take(150).collect();
            json!({
                "text": format!("{}\n{}", alert.subject, alert.message),
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": header}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": alert.message}},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": format!("gantry · {} · `{}`", alert.kind, alert.dedupe_key)}
                    ]}
                ]
            })
        }
        WebhookFormat::Teams => {
            let facts: Vec<Value> = alert
                .payload
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!({"name": k, "value": value})
                })
                .collect();
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": alert.subject,
                "themeColor": if alert.kind == "budget" { "FFA500" } else { "D13438" },
                "title": alert.subject,
                "text": alert.message,
                "sections": [{"activityTitle": format!("gantry · {}", alert.kind), "facts": facts}]
            })
        }
        WebhookFormat::Json => json!({
            "id": alert.id,
            "dedupeKey": alert.dedupe_key,
            "kind": alert.kind,
            "subject": alert.subject,
            "message": alert.message,
            "payload": alert.payload,
            "createdAt": alert.created_at,
        }),
    }
}

/// A 64-bit mix (SplitMix64's finaliser), for jitter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Delay before try `attempt + 1` after `attempt` failures (1-based): `base · 2^(attempt-1)`
/// capped at `max`, of which the upper half is jitter drawn from `seed` and `attempt` ("equal
/// jitter"): deterministic, spread between deliveries.
pub fn backoff(attempt: u32, seed: u64, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let half = full / 2;
    let span = (full - half).as_millis() as u64;
    let jitter = if span == 0 {
        0
    } else {
        mix(seed ^ u64::from(attempt).rotate_left(32)) % (span + 1)
    };
    half + Duration::from_millis(jitter)
}

/// The HTTP(S) client webhooks are posted with.
pub type WebhookClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for `http` and `https` URLs (the system's root certificates; with none found, https
/// deliveries fail and are retried, each failure recorded), connecting within `connect_timeout`.
pub fn webhook_client(connect_timeout: Duration) -> WebhookClient {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no system root certificates: https webhooks will fail");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                });
            match config {
                Ok(c) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(c),
                Err(e) => {
                    tracing::error!(error = %e, "TLS setup failed");
                    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                        rustls::ClientConfig::builder_with_protocol_versions(&[
                            &rustls::version::TLS13,
                        ])
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                    )
                }
            }
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// POSTs `body` as JSON to `url`; `Ok` on a 2xx answer, else the reason. The whole exchange is
/// bounded by `timeout`.
pub async fn post_json(
    client: &WebhookClient,
    url: &str,
    body: &Value,
    timeout: Duration,
) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let req = hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "gantry-alerts")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("bad request: {e}"))?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        })?;
        let status = resp.status();
        let text = Limited::new(resp.into_body(), 4096)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text: String = text.trim().chars().take(200).collect();
            Err(format!("HTTP {}: {text}", status.as_u16()))
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs_f64())),
    }
}

/// Sends every due delivery (concurrently) and records each outcome: delivered, or failed with the
/// next try after [`backoff`], or given up after `max_attempts`. Returns how many were delivered.
pub async fn deliver_due(state: &AppState, client: &WebhookClient, cfg: &AlertConfig) -> usize {
    let now = now_ms();
    let due = match state.db.read(move |s| s.due_deliveries(now, 100)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "reading due alert deliveries failed");
            return 0;
        }
    };
    if due.is_empty() {
        return 0;
    }
    let mut set = tokio::task::JoinSet::new();
    for d in due {
        let client = client.clone();
        let timeout = cfg.request_timeout;
        set.spawn(async move {
            let body = render(d.webhook.format, &d.alert);
            let r = post_json(&client, &d.webhook.url, &body, timeout).await;
            (d, r)
        });
    }
    let mut outcomes: Vec<(DueDelivery, Result<(), String>)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(o) = joined {
            outcomes.push(o);
        }
    }
    let cfg = cfg.clone();
    let done = now_ms();
    let result = state
        .db
        .write(move |s| {
            let mut delivered = 0;
            for (d, r) in &outcomes {
                match r {
                    Ok(()) => {
                        if s.mark_delivered(d.alert.id, d.webhook.id, done)? {
                            delivered += 1;
                        }
                    }
                    Err(why) => {
                        let attempt = d.attempts + 1;
                        let next = (attempt < cfg.max_attempts).then(|| {
                            let seed = (d.alert.id as u64) << 32 ^ d.webhook.id as u64;
                            done + backoff(attempt, seed, cfg.backoff_base, cfg.backoff_max)
                                .as_millis() as i64
                        });
                        s.mark_failed(d.alert.id, d.webhook.id, why, next, done)?;
                    }
                }
            }
            Ok(delivered)
        })
        .await;
    match result {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "recording alert deliveries failed");
            0
        }
    }
}

/// Runs the alert loop forever: every `cfg.interval`, budgets, health, then due deliveries.
pub async fn run(state: Arc<AppState>, cfg: AlertConfig) {
    let client = webhook_client(cfg.request_timeout);
    let rules = HealthRules {
        temperature_c: cfg.temperature_c,
        idle_below_pct: cfg.idle_below_pct,
        idle_for_ms: cfg.idle_for.as_millis() as i64,
    };
    let mut idle_since = HashMap::new();
    let budget_every = cfg.budget_interval.as_millis() as i64;
    let mut last_budget_check: Option<UnixMillis> = None;
    loop {
        let now = now_ms();
        if last_budget_check.is_none_or(|t| now - t >= budget_every) {
            last_budget_check = Some(now);
            if let Err(e) = evaluate_budgets(&state, now).await {
                tracing::warn!(error = %e, "budget check failed");
            }
        }
        if let Err(e) = evaluate_health(&state, &rules, &mut idle_since, now).await {
            tracing::warn!(error = %e, "GPU health alert check failed");
        }
        deliver_due(&state, &client, &cfg).await;
        tokio::time::sleep(cfg.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_gpu::{GpuDevice, GpuHealth, GpuTelemetry, XidEvent};

    #[test]
    fn months_are_utc_calendar_months() {
        // 2026-11-25T22:56:21Z
        let m = month_of(1_795_647_381_000);
        assert_eq!(m.label, "2026-11");
        assert_eq!(m.start_ms, 1_793_491_200_000); // 2026-11-01T00:00:00Z
        assert_eq!(month_of(0).label, "1970-01");
        assert_eq!(month_of(0).start_ms, 0);
        // The last millisecond of February in a leap year, and the first of March.
        let march = days_from_civil(2024, 3, 1) * 86_400_000;
        assert_eq!(month_of(march - 1).label, "2024-02");
        assert_eq!(month_of(march).label, "2024-03");
        assert_eq!(month_of(march).start_ms, march);
        assert_eq!(month_of(-1).label, "1969-12");
    }

    fn budget(monthly: f64, thresholds: &[u32]) -> Budget {
        Budget {
            queue: "ml".into(),
            monthly,
            thresholds: thresholds.to_vec(),
            hard_cap: true,
            updated_at: 0,
        }
    }

    #[test]
    fn standing_reaches_thresholds_exactly() {
        let b = budget(500.0, &[50, 80, 100]);
        let s = standing(&b, 24_999);
        assert!(s.crossed.is_empty());
        assert!(!s.over);
        assert_eq!(standing(&b, 25_000).crossed, vec![50]);
        assert_eq!(standing(&b, 40_000).crossed, vec![50, 80]);
        let full = standing(&b, 50_000);
        assert_eq!(full.crossed, vec![50, 80, 100]);
        assert!(full.over);
        assert!((full.used_ratio - 1.0).abs() < 1e-12);
        let zero = budget(0.0, &[50]);
        assert!(standing(&zero, 0).crossed.is_empty());
        assert!(standing(&zero, 0).over);
        assert_eq!(standing(&zero, 1).used_ratio, f64::INFINITY);
        assert_eq!(
            cap_reason("ml", 50_012, 500.0, "USD"),
            "queue ml is over its monthly budget (spent 500.12 of 500 USD); hard cap on"
        );
    }

    #[test]
    fn backoff_doubles_with_bounded_deterministic_jitter() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 1..=10u32 {
            let full = (base * 2u32.pow(attempt - 1)).min(max);
            for seed in 0..50u64 {
                let d = backoff(attempt, seed, base, max);
                assert!(d >= full / 2 && d <= full, "{attempt} {seed} {d:?}");
                assert_eq!(d, backoff(attempt, seed, base, max));
            }
        }
        let spread: HashSet<Duration> = (0..20).map(|s| backoff(3, s, base, max)).collect();
        assert!(spread.len() > 10);
        assert!(backoff(100, 7, base, max) <= max);
        assert!(backoff(100, 7, base, max) >= max / 2);
    }

    fn alert() -> Alert {
        Alert {
            id: 7,
            dedupe_key: "budget:ml:2026-11:80".into(),
            kind: "budget".into(),
            subject: "Queue ml reached 80% of its 2026-11 budget".into(),
            message: "Queue ml has spent 400.00 USD".into(),
            payload: json!({"queue": "ml", "threshold": 80}),
            created_at: 5,
        }
    }

    #[test]
    fn each_format_renders_its_shape() {
        let a = alert();
        let slack = render(WebhookFormat::Slack, &a);
        assert!(slack["text"].as_str().unwrap().contains("400.00 USD"));
        assert_eq!(slack["blocks"][0]["type"], "header");
        assert_eq!(slack["blocks"][0]["text"]["text"], a.subject);
        let teams = render(WebhookFormat::Teams, &a);
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["title"], a.subject);
        assert_eq!(
            teams["sections"][0]["facts"][1],
            json!({"name": "threshold", "value": "80"})
        );
        let generic = render(WebhookFormat::Json, &a);
        assert_eq!(generic["dedupeKey"], "budget:ml:2026-11:80");
        assert_eq!(generic["payload"]["threshold"], 80);
    }

    fn snapshot(index: u32, t: GpuTelemetry) -> GpuSnapshot {
        GpuSnapshot {
            device: GpuDevice {
                index,
                uuid: format!("GPU-{index}"),
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_total_mib: 81_559,
                mig: Default::default(),
                mig_devices: Vec::new(),
                pci_bus_id: String::new(),
                nvlink_peers: Vec::new(),
                compute_capability: None,
            },
            telemetry: t,
            health: GpuHealth::Ok,
        }
    }

    #[test]
    fn health_rules_find_xid_ecc_heat_and_long_idle() {
        let rules = HealthRules {
            temperature_c: 85,
            idle_below_pct: 5.0,
            idle_for_ms: 3_600_000,
        };
        let mut bad = GpuTelemetry {
            temperature_c: Some(90),
            utilization_gpu_pct: Some(50),
            xid_events: vec![
                XidEvent { xid: 79, count: 1 },
                XidEvent { xid: 13, count: 4 },
            ],
            ..GpuTelemetry::default()
        };
        bad.ecc.volatile_uncorrected = Some(2);
        let idle = GpuTelemetry {
            temperature_c: Some(40),
            utilization_gpu_pct: Some(1),
            ..GpuTelemetry::default()
        };
        let snaps = vec![
            snapshot(0, bad),
            snapshot(1, idle.clone()),
            snapshot(2, idle),
        ];
        let held: HashSet<u32> = [0, 1].into();
        let mut since = HashMap::new();
        let incidents =
            |f: Vec<HealthFinding>| -> Vec<String> { f.into_iter().map(|f| f.incident).collect() };
        let first = incidents(health_findings(&snaps, &held, &mut since, &rules, 0));
        assert_eq!(
            first,
            vec!["gpu:GPU-0:xid-79", "gpu:GPU-0:ecc", "gpu:GPU-0:temperature"]
        );
        // GPU 1 is held and idle: it alerts after an hour; GPU 2 is idle but not held.
        let later = incidents(health_findings(
            &snaps, &held, &mut since, &rules, 3_600_000,
        ));
        assert_eq!(later.last().map(String::as_str), Some("gpu:GPU-1:idle"));
        assert!(!later.iter().any(|i| i.starts_with("gpu:GPU-2")));
        // Released: the idle clock resets.
        let none: HashSet<u32> = [0].into();
        health_findings(&snaps, &none, &mut since, &rules, 3_700_000);
        assert!(!since.contains_key("GPU-1"));
    }

    #[test]
    fn a_health_incident_alerts_once_while_it_lasts_also_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let rules = HealthRules {
            temperature_c: 85,
            idle_below_pct: 5.0,
            idle_for_ms: 1_000,
        };
        let hot = GpuTelemetry {
            temperature_c: Some(91),
            utilization_gpu_pct: Some(90),
            ..GpuTelemetry::default()
        };
        let cool = GpuTelemetry {
            temperature_c: Some(50),
            utilization_gpu_pct: Some(90),
            ..GpuTelemetry::default()
        };
        let gpus = vec!["GPU-0".to_string(), "GPU-1".to_string()];
        let none = HashSet::new();
        let mut since = HashMap::new();
        let round =
            |s: &mut gantry_store::Store, t: &GpuTelemetry, since: &mut HashMap<_, _>, now| {
                let snaps = [snapshot(0, t.clone()), snapshot(1, cool.clone())];
                let f = health_findings(&snaps, &HashSet::new(), since, &rules, now);
                record_health(s, &f, &gpus, &none, now).unwrap()
            };
        {
            let mut s = gantry_store::Store::open(&path).unwrap();
            assert_eq!(round(&mut s, &hot, &mut since, 1_000), 1);
            assert_eq!(round(&mut s, &hot, &mut since, 3_000), 0);
        }
        // A restart while still hot: no new alert.
        let mut s = gantry_store::Store::open(&path).unwrap();
        assert_eq!(round(&mut s, &hot, &mut since, 5_000), 0);
        // Cooled down, then hot again: a new incident, a new alert.
        assert_eq!(round(&mut s, &cool, &mut since, 7_000), 0);
        assert!(s.open_incidents().unwrap().is_empty());
        assert_eq!(round(&mut s, &hot, &mut since, 9_000), 1);
        let kinds: Vec<(String, String)> = s
            .recent_alerts(10)
            .unwrap()
            .into_iter()
            .map(|a| (a.alert.kind, a.alert.dedupe_key))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    "gpu.temperature".into(),
                    "gpu:GPU-0:temperature:9000".into()
                ),
                (
                    "gpu.temperature".into(),
                    "gpu:GPU-0:temperature:1000".into()
                ),
            ]
        );
        // An incident of a GPU not reported this round is left alone; `keep_open` is kept.
        let keep: HashSet<String> = ["gpu:GPU-0:temperature".to_string()].into();
        record_health(&mut s, &[], &["GPU-9".into()], &none, 10_000).unwrap();
        record_health(&mut s, &[], &gpus, &keep, 10_000).unwrap();
        assert_eq!(s.open_incidents().unwrap(), vec!["gpu:GPU-0:temperature"]);
    }

    #[tokio::test]
    async fn requests_time_out_and_https_is_spoken() {
        // A receiver that accepts and never answers: the request ends at its time limit.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let hold = std::thread::spawn(move || {
            let conns: Vec<_> = silent.incoming().take(1).collect();
            std::thread::sleep(Duration::from_millis(1500));
            drop(conns);
        });
        let client = webhook_client(Duration::from_secs(2));
        let started = std::time::Instant::now();
        let e = post_json(
            &client,
            &format!("http://127.0.0.1:{port}/x"),
            &json!({}),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(e.starts_with("no answer within 0.3 s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(1));
        // https to a plain-HTTP server: the TLS handshake fails (it would pass over http).
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let plain_port = plain.local_addr().unwrap().port();
        let answer = std::thread::spawn(move || {
            use std::io::{Read, Write};
            for mut c in plain.incoming().take(2).flatten() {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        let url = |scheme: &str| format!("{scheme}://127.0.0.1:{plain_port}/x");
        assert_eq!(
            post_json(&client, &url("http"), &json!({}), Duration::from_secs(2)).await,
            Ok(())
        );
        let e = post_json(&client, &url("https"), &json!({}), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(!e.starts_with("no answer"), "{e}");
        answer.join().unwrap();
        hold.join().unwrap();
        // Nothing listens: the refusal is the recorded reason.
        let e = post_json(
            &client,
            &format!("http://127.0.0.1:{port}/x"),
            &json!({}),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert!(e.contains("onnect"), "{e}");
    }
}

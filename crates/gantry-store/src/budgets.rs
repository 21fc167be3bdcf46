//! Budgets per queue, webhooks, and the alert outbox: each alert is stored once per dedupe key, with
//! one delivery row per webhook written in the same transaction, so a crash between raising and
//! sending loses nothing and a restart never sends a delivered alert again.

use crate::error::{Error, Result};
use crate::model::UnixMillis;
use crate::store::{EventRow, Store, insert_event};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Schema version 3: `budgets`, `webhooks`, `alerts`, `alert_deliveries` and `alert_incidents`.
pub(crate) const MIGRATION: &str = r#"
CREATE TABLE budgets (
    queue        TEXT PRIMARY KEY NOT NULL,
    monthly      REAL    NOT NULL CHECK (monthly >= 0),
    thresholds   TEXT    NOT NULL CHECK (json_valid(thresholds)),
    hard_cap     INTEGER NOT NULL DEFAULT 0 CHECK (hard_cap IN (0, 1)),
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    url        TEXT    NOT NULL,
    format     TEXT    NOT NULL CHECK (format IN ('slack', 'teams', 'json')),
    created_at INTEGER NOT NULL
) STRICT;

-- One row per alert; dedupe_key makes "once per crossing" a UNIQUE constraint.
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    payload    TEXT    NOT NULL CHECK (json_valid(payload)),
    created_at INTEGER NOT NULL
) STRICT;

-- One row per (alert, webhook): pending until delivered_at is set; gave_up_at after the last try.
CREATE TABLE alert_deliveries (
    alert_id        INTEGER NOT NULL REFERENCES alerts (id),
    webhook_id      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    gave_up_at      INTEGER,
    last_error      TEXT,
    PRIMARY KEY (alert_id, webhook_id)
) STRICT;
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- Conditions (a hot GPU, an XID) open now: one alert per incident, also across restarts.
CREATE TABLE alert_incidents (
    incident  TEXT PRIMARY KEY NOT NULL,
    alert_key TEXT    NOT NULL,
    opened_at INTEGER NOT NULL
) STRICT;
"#;

/// Audit actions of this module.
pub mod budget_actions {
    /// A budget was created or replaced.
    pub const BUDGET_PUT: &str = "budget.put";
    /// A budget was deleted.
    pub const BUDGET_DELETE: &str = "budget.delete";
    /// A webhook was added.
    pub const WEBHOOK_ADD: &str = "webhook.add";
    /// A webhook was removed.
    pub const WEBHOOK_REMOVE: &str = "webhook.remove";
    /// An alert was raised (subject: its dedupe key).
    pub const ALERT_RAISED: &str = "alert.raised";
}

/// The actor of alert events.
pub const ALERTS_ACTOR: &str = "alerts";

/// The default alert thresholds, percent of the monthly budget.
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];

/// A queue's monthly budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// The queue's name.
    pub queue: String,
    /// Spending limit per calendar month (UTC), in the price catalogue's currency.
    pub monthly: f64,
    /// Alert thresholds, percent of `monthly`, strictly increasing, each 1..=1000.
    pub thresholds: Vec<u32>,
    /// Stop admitting new work from the queue once it is over budget.
    pub hard_cap: bool,
    /// When it was last set, Unix ms.
    pub updated_at: UnixMillis,
}

impl Budget {
    /// Checks the fields, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.queue.trim().is_empty() {
            return Err(Error::invalid("queue", "must not be empty"));
        }
        if !(self.monthly.is_finite() && self.monthly >= 0.0) {
            return Err(Error::invalid(
                "monthly",
                format!("{} is not a finite amount of at least 0", self.monthly),
            ));
        }
        if self.thresholds.is_empty() {
            return Err(Error::invalid(
                "thresholds",
                "must list at least one percentage",
            ));
        }
        if let Some(t) = self.thresholds.iter().find(|t| !(1..=1000).contains(*t)) {
            return Err(Error::invalid(
                "thresholds",
                format!("{t} is not a percentage between 1 and 1000"),
            ));
        }
        if self.thresholds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid("thresholds", "must be strictly increasing"));
        }
        Ok(())
    }
}

/// How a webhook wants its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Slack incoming webhook (`text` + Block Kit `blocks`).
    Slack,
    /// Microsoft Teams incoming webhook (MessageCard).
    Teams,
    /// The alert's fields as JSON.
    Json,
}

impl WebhookFormat {
    /// Every format, in display order.
    pub const ALL: [WebhookFormat; 3] = [
        WebhookFormat::Slack,
        WebhookFormat::Teams,
        WebhookFormat::Json,
    ];

    /// The name as stored and written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Slack => "slack",
            WebhookFormat::Teams => "teams",
            WebhookFormat::Json => "json",
        }
    }
}

impl fmt::Display for WebhookFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        WebhookFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not one of slack, teams, json"))
    }
}

/// A webhook alerts are posted to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Where to POST (may hold a secret).
    pub url: String,
    /// The message format.
    pub format: WebhookFormat,
    /// When it was added, Unix ms.
    pub created_at: UnixMillis,
}

/// An alert to raise.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert<'a> {
    /// Once per key: raising the same key again does nothing.
    pub dedupe_key: &'a str,
    /// What kind (`budget`, `gpu.temperature`, ...).
    pub kind: &'a str,
    /// One-line title.
    pub subject: &'a str,
    /// The text people read.
    pub message: &'a str,
    /// Machine-readable details.
    pub payload: &'a serde_json::Value,
}

/// A stored alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Row id.
    pub id: i64,
    /// Its dedupe key.
    pub dedupe_key: String,
    /// What kind.
    pub kind: String,
    /// One-line title.
    pub subject: String,
    /// The text people read.
    pub message: String,
    /// Machine-readable details.
    pub payload: serde_json::Value,
    /// When it was raised, Unix ms.
    pub created_at: UnixMillis,
}

/// One alert's delivery to one webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The alert.
    pub alert_id: i64,
    /// The webhook's id.
    pub webhook_id: i64,
    /// The webhook's name (`None` once it was removed).
    pub webhook: Option<String>,
    /// Tries so far.
    pub attempts: u32,
    /// When the next try is due, Unix ms (meaningless once delivered or given up).
    pub next_attempt_at: UnixMillis,
    /// When it was delivered.
    pub delivered_at: Option<UnixMillis>,
    /// When the last try failed and no more are made.
    pub gave_up_at: Option<UnixMillis>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// An alert with its deliveries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertWithDeliveries {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// One per webhook that existed when it was raised.
    pub deliveries: Vec<Delivery>,
}

/// A delivery that is due now: the alert, the webhook and the tries so far.
#[derive(Clone, Debug, PartialEq)]
pub struct DueDelivery {
    /// The alert.
    pub alert: Alert,
    /// The webhook.
    pub webhook: Webhook,
    /// Tries so far.
    pub attempts: u32,
}

const ALERT_COLUMNS: &str =
    "a.id, a.dedupe_key, a.kind, a.subject, a.message, a.payload, a.created_at";

fn read_budget(r: &Row<'_>) -> Result<Budget> {
    let queue: String = r.get(0)?;
    let thresholds: String = r.get(2)?;
    let thresholds = serde_json::from_str(&thresholds)
        .map_err(|e| Error::Corrupt(format!("budget {queue} thresholds: {e}")))?;
    Ok(Budget {
        monthly: r.get(1)?,
        thresholds,
        hard_cap: r.get(3)?,
        updated_at: r.get(4)?,
        queue,
    })
}

fn read_webhook(r: &Row<'_>, at: usize) -> Result<Webhook> {
    let format: String = r.get(at + 3)?;
    Ok(Webhook {
        id: r.get(at)?,
        name: r.get(at + 1)?,
        url: r.get(at + 2)?,
        format: format
            .parse()
            .map_err(|e: String| Error::Corrupt(format!("webhook format: {e}")))?,
        created_at: r.get(at + 4)?,
    })
}

fn read_alert(r: &Row<'_>) -> Result<Alert> {
    let id: i64 = r.get(0)?;
    let payload: String = r.get(5)?;
    Ok(Alert {
        dedupe_key: r.get(1)?,
        kind: r.get(2)?,
        subject: r.get(3)?,
        message: r.get(4)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| Error::Corrupt(format!("alert {id} payload: {e}")))?,
        created_at: r.get(6)?,
        id,
    })
}

/// Inserts the alert and one pending delivery per webhook, unless the key exists; true if new.
fn raise_in(conn: &Connection, a: &NewAlert<'_>, now: UnixMillis) -> Result<bool> {
    let payload = serde_json::to_string(a.payload).map_err(|source| Error::Encode {
        what: "alert payload",
        source,
    })?;
    let inserted = conn.execute(
        "INSERT INTO alerts (dedupe_key, kind, subject, message, payload, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (dedupe_key) DO NOTHING",
        params![a.dedupe_key, a.kind, a.subject, a.message, payload, now],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    let id = conn.last_insert_rowid();
    conn.execute(
        "INSERT INTO alert_deliveries (alert_id, webhook_id, next_attempt_at) \
         SELECT ?1, id, ?2 FROM webhooks",
        params![id, now],
    )?;
    insert_event(
        conn,
        &EventRow {
            subject: Some(a.dedupe_key),
            actor: ALERTS_ACTOR,
            action: budget_actions::ALERT_RAISED,
            reason: Some(a.subject),
            ..EventRow::default()
        },
        now,
    )?;
    Ok(true)
}

impl Store {
    /// Creates or replaces the budget of `b.queue`, with a `budget.put` event.
    pub fn put_budget(&mut self, b: &Budget, actor: &str, now: UnixMillis) -> Result<Budget> {
        b.validate()?;
        let thresholds = serde_json::to_string(&b.thresholds).map_err(|source| Error::Encode {
            what: "thresholds",
            source,
        })?;
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO budgets (queue, monthly, thresholds, hard_cap, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (queue) DO UPDATE SET monthly = ?2, \
             thresholds = ?3, hard_cap = ?4, updated_at = ?5",
            params![b.queue, b.monthly, thresholds, b.hard_cap, now],
        )?;
        let reason = format!(
            "monthly {} thresholds {thresholds} hard cap {}",
            b.monthly, b.hard_cap
        );
        insert_event(
            &tx,
            &EventRow {
                subject: Some(&b.queue),
                actor,
                action: budget_actions::BUDGET_PUT,
                reason: Some(&reason),
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(Budget {
            updated_at: now,
            ..b.clone()
        })
    }

    /// Every budget, by queue.
    pub fn budgets(&self) -> Result<Vec<Budget>> {
        let mut st = self.conn.prepare_cached(
            "SELECT queue, monthly, thresholds, hard_cap, updated_at FROM budgets ORDER BY queue",
        )?;
        st.query_and_then([], read_budget)?.collect()
    }

    /// Deletes the budget of `queue` with a `budget.delete` event ([`Error::NotFound`] if absent).
    pub fn delete_budget(&mut self, queue: &str, actor: &str, now: UnixMillis) -> Result<()> {
        let tx = self.write()?;
        if tx.execute("DELETE FROM budgets WHERE queue = ?1", [queue])? == 0 {
            return Err(Error::NotFound {
                what: "budget",
                id: queue.to_string(),
            });
        }
        insert_event(
            &tx,
            &EventRow {
                subject: Some(queue),
                actor,
                action: budget_actions::BUDGET_DELETE,
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Adds a webhook with a `webhook.add` event (the URL is not logged: it may hold a secret).
    /// [`Error::Invalid`] on `name` if one of that name exists.
    pub fn add_webhook(
        &mut self,
        name: &str,
        url: &str,
        format: WebhookFormat,
        actor: &str,
        now: UnixMillis,
    ) -> Result<Webhook> {
        if name.trim().is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        if url.trim().is_empty() {
            return Err(Error::invalid("url", "must not be empty"));
        }
        let tx = self.write()?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM webhooks WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(Error::AlreadyExists {
                what: "webhook",
                id: name.to_string(),
            });
        }
        tx.execute(
            "INSERT INTO webhooks (name, url, format, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, url, format.as_str(), now],
        )?;
        let id = tx.last_insert_rowid();
        insert_event(
            &tx,
            &EventRow {
                subject: Some(name),
                actor,
                action: budget_actions::WEBHOOK_ADD,
                reason: Some(format.as_str()),
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(Webhook {
            id,
            name: name.to_string(),
            url: url.to_string(),
            format,
            created_at: now,
        })
    }

    /// Every webhook, by name.
    pub fn webhooks(&self) -> Result<Vec<Webhook>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, url, format, created_at FROM webhooks ORDER BY name",
        )?;
        st.query_and_then([], |r| read_webhook(r, 0))?.collect()
    }

    /// Removes webhook `name` and its pending deliveries, with a `webhook.remove` event.
    pub fn remove_webhook(&mut self, name: &str, actor: &str, now: UnixMillis) -> Result<()> {
        let tx = self.write()?;
        let id: Option<i64> = tx
            .query_row("SELECT id FROM webhooks WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(id) = id else {
            return Err(Error::NotFound {
                what: "webhook",
                id: name.to_string(),
            });
        };
        tx.execute(
            "DELETE FROM alert_deliveries WHERE webhook_id = ?1 AND delivered_at IS NULL",
            [id],
        )?;
        tx.execute("DELETE FROM webhooks WHERE id = ?1", [id])?;
        insert_event(
            &tx,
            &EventRow {
                subject: Some(name),
                actor,
                action: budget_actions::WEBHOOK_REMOVE,
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Raises an alert once per `a.dedupe_key`: stores it with one pending delivery per webhook
    /// and an `alert.raised` event, in one transaction. True if it is new.
    pub fn raise_alert(&mut self, a: &NewAlert<'_>, now: UnixMillis) -> Result<bool> {
        if a.dedupe_key.is_empty() {
            return Err(Error::invalid("dedupeKey", "must not be empty"));
        }
        let tx = self.write()?;
        let new = raise_in(&tx, a, now)?;
        tx.commit()?;
        Ok(new)
    }

    /// Opens incident `incident` and raises `a` for it, unless that incident is already open (an
    /// open incident raises nothing more until [`Store::close_incident`]). True if newly opened.
    pub fn open_incident(
        &mut self,
        incident: &str,
        a: &NewAlert<'_>,
        now: UnixMillis,
    ) -> Result<bool> {
        let tx = self.write()?;
        let inserted = tx.execute(
            "INSERT INTO alert_incidents (incident, alert_key, opened_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (incident) DO NOTHING",
            params![incident, a.dedupe_key, now],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        raise_in(&tx, a, now)?;
        tx.commit()?;
        Ok(true)
    }

    /// The open incidents, by name.
    pub fn open_incidents(&self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT incident FROM alert_incidents ORDER BY incident")?;
        st.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()
            .map_err(Error::from)
    }

    /// Closes incident `incident` (its condition cleared); true if it was open.
    pub fn close_incident(&mut self, incident: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM alert_incidents WHERE incident = ?1",
            [incident],
        )? > 0)
    }

    /// The `limit` most recent alerts, newest first, each with its deliveries.
    pub fn recent_alerts(&self, limit: u32) -> Result<Vec<AlertWithDeliveries>> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts a ORDER BY a.id DESC LIMIT ?1");
        let mut st = self.conn.prepare_cached(&sql)?;
        let alerts: Vec<Alert> = st
            .query_and_then([limit], read_alert)?
            .collect::<Result<_>>()?;
        let mut ds = self.conn.prepare_cached(
            "SELECT d.alert_id, d.webhook_id, w.name, d.attempts, d.next_attempt_at, \
             d.delivered_at, d.gave_up_at, d.last_error FROM alert_deliveries d \
             LEFT JOIN webhooks w ON w.id = d.webhook_id WHERE d.alert_id = ?1 \
             ORDER BY d.webhook_id",
        )?;
        alerts
            .into_iter()
            .map(|alert| {
                let deliveries = ds
                    .query_map([alert.id], |r| {
                        Ok(Delivery {
                            alert_id: r.get(0)?,
                            webhook_id: r.get(1)?,
                            webhook: r.get(2)?,
                            attempts: r.get(3)?,
                            next_attempt_at: r.get(4)?,
                            delivered_at: r.get(5)?,
                            gave_up_at: r.get(6)?,
                            last_error: r.get(7)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(AlertWithDeliveries { alert, deliveries })
            })
            .collect()
    }

    /// Up to `limit` deliveries due at `now` (not delivered, not given up, next try at or before
    /// `now`), the earliest first.
    pub fn due_deliveries(&self, now: UnixMillis, limit: u32) -> Result<Vec<DueDelivery>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS}, w.id, w.name, w.url, w.format, w.created_at, d.attempts \
             FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id \
             JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.delivered_at IS NULL AND d.gave_up_at IS NULL AND d.next_attempt_at <= ?1 \
             ORDER BY d.next_attempt_at, d.alert_id, d.webhook_id LIMIT ?2"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        st.query_and_then(params![now, limit], |r| {
            Ok(DueDelivery {
                alert: read_alert(r)?,
                webhook: read_webhook(r, 7)?,
                attempts: r.get(12)?,
            })
        })?
        .collect()
    }

    /// Records a successful delivery (one more attempt). False if it was not pending (already
    /// delivered, or its webhook removed): the caller must not count it twice.
    pub fn mark_delivered(
        &mut self,
        alert_id: i64,
        webhook_id: i64,
        now: UnixMillis,
    ) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE alert_deliveries SET attempts = attempts + 1, delivered_at = ?3, \
             last_error = NULL WHERE alert_id = ?1 AND webhook_id = ?2 AND delivered_at IS NULL",
            params![alert_id, webhook_id, now],
        )? > 0)
    }

    /// Records a failed try: one more attempt, the error, and the next try at `next_attempt_at`
    /// (`None`: no more tries, given up at `now`).
    pub fn mark_failed(
        &mut self,
        alert_id: i64,
        webhook_id: i64,
        error: &str,
        next_attempt_at: Option<UnixMillis>,
        now: UnixMillis,
    ) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = ?3, \
             next_attempt_at = COALESCE(?4, next_attempt_at), \
             gave_up_at = CASE WHEN ?4 IS NULL THEN ?5 ELSE NULL END \
             WHERE alert_id = ?1 AND webhook_id = ?2 AND delivered_at IS NULL",
            params![alert_id, webhook_id, error, next_attempt_at, now],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("g.db")).unwrap();
        (dir, s)
    }

    fn budget(queue: &str, monthly: f64, thresholds: &[u32]) -> Budget {
        Budget {
            queue: queue.into(),
            monthly,
            thresholds: thresholds.to_vec(),
            hard_cap: false,
            updated_at: 0,
        }
    }

    #[test]
    fn budgets_put_list_replace_delete_with_events() {
        let (_d, mut s) = store();
        s.put_budget(&budget("ml", 500.0, &[50, 80, 100]), "ops", 10)
            .unwrap();
        let mut b = budget("ml", 900.0, &[90]);
        b.hard_cap = true;
        s.put_budget(&b, "ops", 20).unwrap();
        s.put_budget(&budget("cv", 0.0, &[100]), "ops", 30).unwrap();
        let all = s.budgets().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].queue, "cv");
        assert_eq!(
            all[1],
            Budget {
                updated_at: 20,
                ..b
            }
        );
        s.delete_budget("cv", "ops", 40).unwrap();
        assert!(matches!(
            s.delete_budget("cv", "ops", 41),
            Err(Error::NotFound { what: "budget", .. })
        ));
        let actions: Vec<String> = s
            .audit_log(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions
                .iter()
                .filter(|a| *a == budget_actions::BUDGET_PUT)
                .count(),
            3
        );
        assert!(actions.contains(&budget_actions::BUDGET_DELETE.to_string()));
    }

    #[test]
    fn budget_validation_names_the_field() {
        let (_d, mut s) = store();
        let field = |b: Budget| match b.validate() {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(budget("", 1.0, &[50])), "queue");
        assert_eq!(field(budget("q", -1.0, &[50])), "monthly");
        assert_eq!(field(budget("q", f64::NAN, &[50])), "monthly");
        assert_eq!(field(budget("q", 1.0, &[])), "thresholds");
        assert_eq!(field(budget("q", 1.0, &[0])), "thresholds");
        assert_eq!(field(budget("q", 1.0, &[1001])), "thresholds");
        assert_eq!(field(budget("q", 1.0, &[80, 50])), "thresholds");
        assert_eq!(field(budget("q", 1.0, &[50, 50])), "thresholds");
        assert!(
            s.put_budget(&budget("q", 1.0, &[80, 50]), "ops", 1)
                .is_err()
        );
        assert!(s.budgets().unwrap().is_empty());
    }

    #[test]
    fn an_alert_is_raised_once_per_key_with_a_delivery_per_webhook() {
        let (_d, mut s) = store();
        let slack = s
            .add_webhook(
                "chat",
                "http://127.0.0.1:9/x",
                WebhookFormat::Slack,
                "ops",
                1,
            )
            .unwrap();
        let json_hook = s
            .add_webhook(
                "pager",
                "https://example.com/h",
                WebhookFormat::Json,
                "ops",
                2,
            )
            .unwrap();
        assert!(
            s.add_webhook("chat", "http://x", WebhookFormat::Json, "ops", 3)
                .is_err()
        );
        let payload = json!({"queue": "ml", "threshold": 50});
        let a = NewAlert {
            dedupe_key: "budget:ml:2026-11:50",
            kind: "budget",
            subject: "ml at 50%",
            message: "spent 250 of 500",
            payload: &payload,
        };
        assert!(s.raise_alert(&a, 100).unwrap());
        assert!(!s.raise_alert(&a, 200).unwrap());
        let alerts = s.recent_alerts(10).unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].alert.payload, payload);
        assert_eq!(alerts[0].deliveries.len(), 2);
        let due = s.due_deliveries(100, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].webhook, slack);
        assert_eq!(due[1].webhook, json_hook);
        assert!(s.due_deliveries(99, 10).unwrap().is_empty());

        // The Slack one fails twice then succeeds; the JSON one succeeds at once.
        assert!(
            s.mark_failed(due[0].alert.id, slack.id, "HTTP 500", Some(1_100), 100)
                .unwrap()
        );
        assert!(
            s.mark_delivered(due[1].alert.id, json_hook.id, 100)
                .unwrap()
        );
        assert!(
            !s.mark_delivered(due[1].alert.id, json_hook.id, 101)
                .unwrap()
        );
        assert!(s.due_deliveries(1_000, 10).unwrap().is_empty());
        let again = s.due_deliveries(1_100, 10).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        s.mark_failed(again[0].alert.id, slack.id, "HTTP 500", Some(3_100), 1_100)
            .unwrap();
        s.mark_delivered(again[0].alert.id, slack.id, 3_100)
            .unwrap();
        assert!(s.due_deliveries(i64::MAX, 10).unwrap().is_empty());
        let d = &s.recent_alerts(10).unwrap()[0].deliveries;
        assert_eq!(d[0].attempts, 3);
        assert_eq!(d[0].delivered_at, Some(3_100));
        assert_eq!(d[0].last_error, None);
        assert_eq!(d[1].attempts, 1);
        assert_eq!(d[1].webhook.as_deref(), Some("pager"));
    }

    #[test]
    fn giving_up_and_removing_a_webhook_stop_deliveries() {
        let (_d, mut s) = store();
        let w = s
            .add_webhook("a", "http://127.0.0.1:9/", WebhookFormat::Teams, "ops", 1)
            .unwrap();
        s.add_webhook("b", "http://127.0.0.1:9/", WebhookFormat::Json, "ops", 1)
            .unwrap();
        let p = json!({});
        let a = NewAlert {
            dedupe_key: "k",
            kind: "test",
            subject: "s",
            message: "m",
            payload: &p,
        };
        s.raise_alert(&a, 5).unwrap();
        let id = s.recent_alerts(1).unwrap()[0].alert.id;
        s.mark_failed(id, w.id, "refused", None, 6).unwrap();
        let due = s.due_deliveries(i64::MAX, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].webhook.name, "b");
        s.remove_webhook("b", "ops", 7).unwrap();
        assert!(s.due_deliveries(i64::MAX, 10).unwrap().is_empty());
        assert_eq!(s.webhooks().unwrap(), vec![w]);
        let d = &s.recent_alerts(1).unwrap()[0].deliveries;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].gave_up_at, Some(6));
        assert!(matches!(
            s.remove_webhook("b", "ops", 8),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn an_open_incident_alerts_once_until_closed_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let p = json!({"gpu": "GPU-1"});
        let alert = |key: &'static str| NewAlert {
            dedupe_key: key,
            kind: "gpu.temperature",
            subject: "hot",
            message: "hot",
            payload: &p,
        };
        {
            let mut s = Store::open(&path).unwrap();
            assert!(
                s.open_incident("gpu:GPU-1:temperature", &alert("t1"), 1)
                    .unwrap()
            );
            assert!(
                !s.open_incident("gpu:GPU-1:temperature", &alert("t2"), 2)
                    .unwrap()
            );
        }
        let mut s = Store::open(&path).unwrap();
        assert!(
            !s.open_incident("gpu:GPU-1:temperature", &alert("t3"), 3)
                .unwrap()
        );
        assert_eq!(s.open_incidents().unwrap(), vec!["gpu:GPU-1:temperature"]);
        assert!(s.close_incident("gpu:GPU-1:temperature").unwrap());
        assert!(
            s.open_incident("gpu:GPU-1:temperature", &alert("t4"), 4)
                .unwrap()
        );
        let keys: Vec<String> = s
            .recent_alerts(10)
            .unwrap()
            .into_iter()
            .map(|a| a.alert.dedupe_key)
            .collect();
        assert_eq!(keys, vec!["t4", "t1"]);
    }
}

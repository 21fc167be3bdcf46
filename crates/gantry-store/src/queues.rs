//! Queues and settings.

use crate::error::{Error, Result};
use crate::model::{UnixMillis, actions};
use crate::store::{EventRow, Store, insert_event};
use gantry_core::spec::{QueueSpec, Quota};
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// Settings key of the active placement strategy.
pub const STRATEGY_KEY: &str = "strategy";

/// A stored queue: the cluster spec's queue fields plus a budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Queue {
    /// Name, as workloads give it.
    pub name: String,
    /// Cohort it lends to and borrows from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// Fair-share weight, more than 0.
    pub weight: f64,
    /// Always available to this queue.
    #[serde(default)]
    pub guaranteed: Quota,
    /// Most it may borrow beyond `guaranteed` (absent = unlimited in a cohort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<Quota>,
    /// Spending cap per calendar month in the price catalogue's currency (absent = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
}

impl Queue {
    /// A queue from a cluster spec's queue and a budget.
    pub fn from_spec(spec: QueueSpec, budget: Option<f64>) -> Queue {
        Queue {
            name: spec.name,
            cohort: spec.cohort,
            weight: spec.weight,
            guaranteed: spec.guaranteed,
            borrowing_limit: spec.borrowing_limit,
            budget,
        }
    }

    /// The cluster spec's form (without the budget).
    pub fn to_spec(&self) -> QueueSpec {
        QueueSpec {
            name: self.name.clone(),
            cohort: self.cohort.clone(),
            weight: self.weight,
            guaranteed: self.guaranteed.clone(),
            borrowing_limit: self.borrowing_limit.clone(),
        }
    }
}

/// Encodes a quota as JSON text.
fn quota_json(q: &Quota) -> Result<String> {
    serde_json::to_string(q).map_err(|source| Error::Encode {
        what: "quota",
        source,
    })
}

/// Reads a `queues` row.
fn read_queue(r: &Row<'_>) -> Result<Queue> {
    let name: String = r.get(0)?;
    let quota = |s: &str| {
        serde_json::from_str::<Quota>(s)
            .map_err(|e| Error::Corrupt(format!("queue {name} quota: {e}")))
    };
    let guaranteed: String = r.get(3)?;
    let borrowing: Option<String> = r.get(4)?;
    Ok(Queue {
        cohort: r.get(1)?,
        weight: r.get(2)?,
        guaranteed: quota(&guaranteed)?,
        borrowing_limit: borrowing.as_deref().map(quota).transpose()?,
        budget: r.get(5)?,
        name,
    })
}

impl Store {
    /// Creates or replaces queue `q.name`, with a `queue.put` event.
    pub fn put_queue(&mut self, q: &Queue, actor: &str, now: UnixMillis) -> Result<()> {
        if q.name.is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        if !(q.weight.is_finite() && q.weight > 0.0) {
            return Err(Error::invalid(
                "weight",
                format!("{} is not a finite number above 0", q.weight),
            ));
        }
        if let Some(b) = q.budget.filter(|b| !(b.is_finite() && *b >= 0.0)) {
            return Err(Error::invalid(
                "budget",
                format!("{b} is not a finite number of at least 0"),
            ));
        }
        let guaranteed = quota_json(&q.guaranteed)?;
        let borrowing = q.borrowing_limit.as_ref().map(quota_json).transpose()?;
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO queues (name, cohort, weight, guaranteed, borrowing_limit, budget) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET cohort = ?2, \
             weight = ?3, guaranteed = ?4, borrowing_limit = ?5, budget = ?6",
            params![q.name, q.cohort, q.weight, guaranteed, borrowing, q.budget],
        )?;
        insert_event(
            &tx,
            &EventRow {
                subject: Some(&q.name),
                actor,
                action: actions::QUEUE_PUT,
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The queue `name`, if stored.
    pub fn queue(&self, name: &str) -> Result<Option<Queue>> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, cohort, weight, guaranteed, borrowing_limit, budget FROM queues \
             WHERE name = ?1",
        )?;
        let mut rows = st.query([name])?;
        rows.next()?.map(read_queue).transpose()
    }

    /// Every queue, by name.
    pub fn queues(&self) -> Result<Vec<Queue>> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, cohort, weight, guaranteed, borrowing_limit, budget FROM queues \
             ORDER BY name",
        )?;
        st.query_and_then([], read_queue)?.collect()
    }

    /// Deletes queue `name` with a `queue.delete` event ([`Error::NotFound`] if absent). Its
    /// workloads keep the queue's name.
    pub fn delete_queue(&mut self, name: &str, actor: &str, now: UnixMillis) -> Result<()> {
        let tx = self.write()?;
        if tx.execute("DELETE FROM queues WHERE name = ?1", [name])? == 0 {
            return Err(Error::NotFound {
                what: "queue",
                id: name.to_string(),
            });
        }
        insert_event(
            &tx,
            &EventRow {
                subject: Some(name),
                actor,
                action: actions::QUEUE_DELETE,
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The value of setting `key`, if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?;
        Ok(st.query_row([key], |r| r.get(0)).optional()?)
    }

    /// Sets `key` to `value`, with a `setting.set` event whose reason is the new value.
    pub fn set_setting(
        &mut self,
        key: &str,
        value: &str,
        actor: &str,
        now: UnixMillis,
    ) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("key", "must not be empty"));
        }
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3",
            params![key, value, now],
        )?;
        insert_event(
            &tx,
            &EventRow {
                subject: Some(key),
                actor,
                action: actions::SETTING_SET,
                reason: Some(value),
                ..EventRow::default()
            },
            now,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The active placement strategy ([`STRATEGY_KEY`]), if set.
    pub fn strategy(&self) -> Result<Option<String>> {
        self.setting(STRATEGY_KEY)
    }

    /// Sets the active placement strategy (the caller checks that the name is known).
    pub fn set_strategy(&mut self, name: &str, actor: &str, now: UnixMillis) -> Result<()> {
        self.set_setting(STRATEGY_KEY, name, actor, now)
    }
}
